//! Zones: per-zone connection counts, limits and timeout-policy overlays, plus the
//! per-zone membership lists that make limit accounting exact.
//!
//! Zone state lives in a read-mostly map: a fixed array of 65,536 once-set pointers, each
//! zone's record created on first use and never freed while the tracker lives, so workers
//! read a zone's limit and policy with plain atomic loads.
//!
//! # Exact limits
//!
//! A zone counts every connection in the table, expired or not. So that an expired but
//! not yet swept connection never blocks a new one, every connection is also linked into a
//! list of its zone (one list per worker shard, each with its own spin lock, touched only on
//! create and delete — never per packet, and not ordered by expiry). When a zone is at its
//! limit, the inserting worker walks up to [`RECLAIM_BUDGET`] entries from the head of the
//! zone's lists (oldest first), removes those that have expired, and moves the live ones it
//! looked at to the tail, so the next walk looks at others. The work is bounded; it finds
//! every expired connection of a zone that has at most `RECLAIM_BUDGET` connections per
//! shard, and in larger zones the oldest ones first.
//!
//! A zone's count is kept per shard ([`Credits`]): admitting a connection writes no line
//! that other workers write, and the limit stays exact (see [`super::credits`]).

use super::conn::{status, DIR_ORIG};
use super::credits::Credits;
use super::sync::{CachePadded, SpinLock};
use super::table::{ConnTable, Hit};
use super::timeouts::TimeoutPolicy;
use once_cell::race::OnceBox;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// End-of-list marker.
const NIL: u32 = u32::MAX;
/// Entries a reclaim walk looks at per shard.
pub const RECLAIM_BUDGET: usize = 64;
/// Number of zones.
pub const N_ZONES: usize = 1 << 16;

#[derive(Clone, Copy)]
struct ZoneList {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for ZoneList {
    fn default() -> Self {
        ZoneList {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// One zone's state.
pub struct Zone {
    /// Connections of the zone in the table (including expired, unswept ones), counted
    /// per shard.
    pub(crate) count: Credits,
    /// Explicit limit, or -1 to inherit the default.
    limit: AtomicI64,
    /// Timeout overrides of the zone.
    pub policy: TimeoutPolicy,
    lists: Box<[CachePadded<SpinLock<ZoneList>>]>,
}

impl Zone {
    fn new(shards: usize) -> Zone {
        Zone {
            count: Credits::new(shards),
            limit: AtomicI64::new(-1),
            policy: TimeoutPolicy::empty(),
            lists: (0..shards.max(1))
                .map(|_| CachePadded(SpinLock::new(ZoneList::default())))
                .collect(),
        }
    }

    /// Connections of the zone in the table.
    pub fn count(&self) -> u32 {
        self.count.count()
    }

    /// The zone's own limit, if set.
    pub fn explicit_limit(&self) -> Option<u32> {
        let l = self.limit.load(Ordering::Relaxed);
        (l >= 0).then_some(l as u32)
    }
}

/// The zone map.
pub struct Zones {
    /// One slot per zone, set once (by `get_or_create`, under `create`): a pointer that is
    /// null until then, so reading a slot is one acquire load, no lock. (An array of null
    /// pointers, as the `AtomicPtr`s before: the compiler makes it a zeroed allocation,
    /// which costs no resident memory until zones are used.)
    slots: Box<[OnceBox<Zone>]>,
    create: SpinLock<()>,
    /// Default limit for zones without their own; 0 = none.
    default_limit: AtomicU32,
    shards: usize,
}

impl Zones {
    /// A zone map whose zones have `shards` membership lists (one per worker).
    pub fn new(shards: usize) -> Zones {
        Zones {
            slots: (0..N_ZONES).map(|_| OnceBox::new()).collect(),
            create: SpinLock::new(()),
            default_limit: AtomicU32::new(0),
            shards: shards.max(1),
        }
    }

    /// Number of membership-list shards per zone.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The zone's record if it exists.
    #[inline(always)]
    pub fn get(&self, zone: u16) -> Option<&Zone> {
        self.slots[zone as usize].get()
    }

    /// The zone's record, created if needed (an allocation the first time a zone is used).
    pub fn get_or_create(&self, zone: u16) -> &Zone {
        if let Some(z) = self.get(zone) {
            return z;
        }
        // Creators are serialised, so a zone's record is built once.
        let _g = self.create.lock();
        self.slots[zone as usize].get_or_init(|| Box::new(Zone::new(self.shards)))
    }

    /// The default limit (0 = none).
    pub fn default_limit(&self) -> u32 {
        self.default_limit.load(Ordering::Relaxed)
    }

    /// Sets the default limit (0 = none).
    pub fn set_default_limit(&self, limit: u32) {
        self.default_limit.store(limit, Ordering::Relaxed);
        // Slots the shards reserved under the old limit must not admit past the new one.
        for (_, z) in self.existing() {
            z.count.collect();
        }
    }

    /// Sets a zone's own limit (0 admits nothing).
    pub fn set_limit(&self, zone: u16, limit: u32) {
        let z = self.get_or_create(zone);
        z.limit.store(limit as i64, Ordering::Relaxed);
        z.count.collect();
    }

    /// Removes a zone's own limit: it inherits the default again.
    pub fn del_limit(&self, zone: u16) {
        if let Some(z) = self.get(zone) {
            z.limit.store(-1, Ordering::Relaxed);
            z.count.collect();
        }
    }

    /// The limit in force for a zone: its own, else the default; `None` = unlimited.
    #[inline]
    pub fn effective_limit(&self, zone: &Zone) -> Option<u32> {
        match zone.limit.load(Ordering::Relaxed) {
            l if l >= 0 => Some(l as u32),
            _ => match self.default_limit() {
                0 => None,
                d => Some(d),
            },
        }
    }

    /// Zones that have their own limit, as (zone, limit, count).
    pub fn explicit_limits(&self) -> Vec<(u16, u32, u32)> {
        (0..N_ZONES)
            .filter_map(|z| {
                let zone = self.get(z as u16)?;
                Some((z as u16, zone.explicit_limit()?, zone.count()))
            })
            .collect()
    }

    /// Zones that exist (have been used), for iteration by the control plane.
    pub fn existing(&self) -> impl Iterator<Item = (u16, &Zone)> + '_ {
        (0..N_ZONES).filter_map(|z| self.get(z as u16).map(|zz| (z as u16, zz)))
    }

    /// Links record `idx` at the tail of the zone's list `shard`.
    pub(crate) fn link(&self, table: &ConnTable, zone: &Zone, shard: usize, idx: u32) {
        let shard = shard % zone.lists.len();
        let c = table.conn(idx);
        c.shard.store(shard as u8, Ordering::Relaxed);
        let mut l = zone.lists[shard].lock();
        // `idx` is not in any list yet; the links of this list's records are only touched
        // under its lock, which is held.
        Self::push_tail_locked(table, &mut l, idx);
    }

    /// Links record `idx` (in no list) at the tail of the list `l`, whose lock is held.
    fn push_tail_locked(table: &ConnTable, l: &mut ZoneList, idx: u32) {
        table.conn(idx).set_zlink(l.tail, NIL);
        if l.tail != NIL {
            table.conn(l.tail).zlink[1].store(idx, Ordering::Relaxed);
        } else {
            l.head = idx;
        }
        l.tail = idx;
        l.len += 1;
    }

    /// Prefetches the records linked before and after `idx` in its zone list, which
    /// [`Zones::unlink`] writes (links read without the list's lock: a stale one only
    /// wastes a prefetch).
    #[inline]
    pub(crate) fn prefetch_neighbours(table: &ConnTable, idx: u32) {
        for n in table.conn(idx).zlink() {
            if n != NIL {
                table.prefetch_record(n);
            }
        }
    }

    /// Unlinks record `idx` from its zone list.
    pub(crate) fn unlink(&self, table: &ConnTable, zone: &Zone, idx: u32) {
        let c = table.conn(idx);
        let shard = c.shard.load(Ordering::Relaxed) as usize % zone.lists.len();
        let mut l = zone.lists[shard].lock();
        Self::unlink_locked(table, &mut l, idx);
    }

    /// [`Zones::unlink`] for the records of `batch` (each linked, in a zone that exists),
    /// taking each list's lock once for a run of consecutive records in that list; calls
    /// `gone(zone, n)` once per run, with the run's length, after the lock is released.
    pub(crate) fn unlink_batch(
        &self,
        table: &ConnTable,
        batch: &[(u32, u32)],
        mut gone: impl FnMut(&Zone, u32),
    ) {
        // The zone and list of each record, read from the record (it still holds them).
        let list_of = |idx: u32| {
            let zone = self.get(table.key(idx, DIR_ORIG).zone)?;
            let shard = table.conn(idx).shard.load(Ordering::Relaxed) as usize;
            Some((zone, shard % zone.lists.len()))
        };
        let mut k = 0;
        while k < batch.len() {
            let Some((zone, shard)) = list_of(batch[k].0) else {
                k += 1;
                continue;
            };
            let start = k;
            {
                let mut l = zone.lists[shard].lock();
                while let Some(&(idx, _)) = batch.get(k) {
                    match list_of(idx) {
                        Some((z, s)) if std::ptr::eq(z, zone) && s == shard => {
                            Self::unlink_locked(table, &mut l, idx);
                            k += 1;
                        }
                        _ => break,
                    }
                }
            }
            gone(zone, (k - start) as u32);
        }
    }

    /// Unlinks record `idx` from the list `l`: the caller holds the lock of `l` and `idx`
    /// is linked in it.
    fn unlink_locked(table: &ConnTable, l: &mut ZoneList, idx: u32) {
        let [prev, next] = table.conn(idx).zlink();
        if prev != NIL {
            table.conn(prev).zlink[1].store(next, Ordering::Relaxed);
        } else {
            l.head = next;
        }
        if next != NIL {
            table.conn(next).zlink[0].store(prev, Ordering::Relaxed);
        } else {
            l.tail = prev;
        }
        table.conn(idx).set_zlink(NIL, NIL);
        l.len -= 1;
    }

    /// Looks at up to [`RECLAIM_BUDGET`] of the zone's oldest connections per shard
    /// (starting with `first_shard`) and writes the expired ones to `out`; live ones looked
    /// at move to their list's tail. Returns how many were written. The caller removes them
    /// (without holding any lock).
    pub(crate) fn expired_candidates(
        &self,
        table: &ConnTable,
        zone: &Zone,
        first_shard: usize,
        now: u64,
        out: &mut [Hit],
    ) -> usize {
        let mut n = 0;
        let shards = zone.lists.len();
        for s in 0..shards {
            let mut l = zone.lists[(first_shard + s) % shards].lock();
            let mut cur = l.head;
            let mut looked = 0;
            while cur != NIL && looked < RECLAIM_BUDGET.min(l.len as usize) && n < out.len() {
                let c = table.conn(cur);
                let next = c.zlink()[1];
                looked += 1;
                if c.status() == status::LIVE && c.expiry() <= now {
                    out[n] = Hit {
                        idx: cur,
                        dir: 0,
                        gen: c.gen(),
                    };
                    n += 1;
                } else if next != NIL {
                    // Rotate a live one to the tail so the next walk sees others.
                    Self::unlink_locked(table, &mut l, cur);
                    Self::push_tail_locked(table, &mut l, cur);
                }
                cur = next;
            }
            if n == out.len() {
                break;
            }
        }
        n
    }

    /// Number of connections linked in the zone's lists (for consistency checks).
    pub fn listed(&self, zone: &Zone) -> u32 {
        zone.lists.iter().map(|l| l.lock().len).sum()
    }
}
