//! The expectation table: data connections announced by a control connection (an FTP
//! `PORT`/`227`/`EPRT`/`229`, a TFTP request) and not yet seen, as OVS's
//! `alg_expectations` (`expectation_create`, `expectation_lookup`, `expectation_clean`).
//!
//! Shape: like the connection table, fixed buckets each with its own short spin lock, no
//! global lock; an expectation hashes on its destination address, destination port,
//! zone, protocol and family only, so the exact-source and wildcard-source forms of one
//! key share a bucket and a lookup locks exactly one bucket. A lookup first reads an
//! atomic count and takes no lock at all while the table is empty (the common case of a
//! new connection). Nothing allocates after [`ExpTable::new`].
//!
//! Semantics (OVS's): the source port is always a wildcard, the source address
//! optionally; creating an expectation equal to a live one does nothing; an expectation
//! is not consumed when a data connection matches it (several data connections may use
//! one announcement) and lives as long as its parent connection. Parents are referred
//! to by their pool index and generation: an expectation whose parent is no longer live
//! (the caller's `alive` test) is invisible to lookups and dumps at once and its slot is
//! reclaimed by [`ExpTable::purge`] or by an insert that needs it, the same lazy removal
//! the connection table uses for expiry.
//!
//! Because the source address is not hashed, at most [`EXP_SLOTS`] expectations can exist
//! for one destination address, port, zone and protocol (whatever their sources); a
//! fifth is refused as a full bucket.
//!
//! Limits: a global maximum and a per-parent maximum (counted per parent pool slot and
//! generation, so a reused slot starts from zero); a full bucket refuses the insert.
//! Refusals are returned for the caller to count.

use super::super::key::{ConnKey, KeyHasher, KEY_WORDS};
use super::super::sync::{CachePadded, SpinLock};
use crate::dpdk::{PageSize, ZeroedPages};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Expectations per bucket.
pub const EXP_SLOTS: usize = 4;

/// Which helper created an expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    /// The FTP ALG.
    Ftp,
    /// The TFTP ALG.
    Tftp,
}

/// An expected data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The data connection's original-direction tuple: `sport` is ignored (wildcard);
    /// `src` is ignored when `src_wildcard`.
    pub key: ConnKey,
    /// The source address is a wildcard too.
    pub src_wildcard: bool,
    /// The parent connection's original-direction key (shown by the dump).
    pub parent: ConnKey,
    /// The parent's pool index and generation (its liveness decides this one's).
    pub parent_ref: (u32, u32),
    /// Address the data connection is translated to (OVS's `alg_nat_repl_addr`).
    pub nat_addr: [u8; 16],
    /// Translate the data connection's destination (true) or source (false).
    pub nat_dst: bool,
    /// The parent had NAT: the data connection gets `nat_addr` (else no NAT).
    pub nat_on: bool,
    /// Port translated to along with `nat_addr` (0: the port is kept).
    pub nat_port: u16,
    /// The parent's mark and label, inherited by the data connection.
    pub mark: u32,
    pub label: u128,
    /// Which helper created it.
    pub helper: Helper,
}

impl Expectation {
    /// True when `k` (a new connection's original-direction key) is this expected
    /// connection.
    pub fn matches(&self, k: &ConnKey) -> bool {
        k.dst == self.key.dst
            && k.dport == self.key.dport
            && k.zone == self.key.zone
            && k.proto == self.key.proto
            && k.family == self.key.family
            && (self.src_wildcard || k.src == self.key.src)
    }

    /// Same expectation (OVS's duplicate test on the key, with the wildcards).
    fn same(&self, o: &Expectation) -> bool {
        self.src_wildcard == o.src_wildcard && o.matches(&self.key)
    }
}

/// Why an expectation was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpRefused {
    /// The table holds its global maximum.
    Full,
    /// The parent holds its per-connection maximum.
    ParentFull,
    /// The expectation's bucket has no free slot.
    BucketFull,
}

type Bucket = [Option<Expectation>; EXP_SLOTS];

/// The expectation table (see the module documentation).
pub struct ExpTable {
    buckets: Box<[CachePadded<SpinLock<Bucket>>]>,
    /// Occupied slots (live or awaiting reclaim).
    count: AtomicU32,
    max: u32,
    per_parent_max: u32,
    /// Per parent pool slot: `generation << 32 | expectations`.
    per_parent: ZeroedPages<AtomicU64>,
    hasher: KeyHasher,
}

impl ExpTable {
    /// A table of `n_buckets` buckets (rounded up to a power of two, at least 1) holding
    /// at most `max` expectations, `per_parent_max` per parent, for parents whose pool
    /// indices are below `conn_capacity`.
    pub fn new(n_buckets: usize, max: u32, per_parent_max: u32, conn_capacity: u32) -> ExpTable {
        let n = n_buckets.max(1).next_power_of_two();
        ExpTable {
            buckets: (0..n)
                .map(|_| CachePadded(SpinLock::new([None; EXP_SLOTS])))
                .collect(),
            count: AtomicU32::new(0),
            max,
            per_parent_max,
            // Zeroed pages: committed only where a parent's count is first written.
            per_parent: ZeroedPages::new(conn_capacity as usize, PageSize::Small),
            hasher: KeyHasher::random(),
        }
    }

    /// Expectations held (including ones whose parent died and that await reclaim).
    pub fn len(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// True when the table holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The global maximum.
    pub fn max(&self) -> u32 {
        self.max
    }

    fn bucket_of(&self, k: &ConnKey) -> Option<&SpinLock<Bucket>> {
        let mut h = *k;
        h.src = [0; 16];
        h.sport = 0;
        let words: [u64; KEY_WORDS] = h.to_words();
        let i = self.hasher.hash_directed(&words) as usize & (self.buckets.len() - 1);
        self.buckets.get(i).map(|b| &b.0)
    }

    fn parent_add(&self, (idx, gen): (u32, u32)) -> Result<(), ExpRefused> {
        let Some(c) = self.per_parent.get(idx as usize) else {
            return Ok(());
        };
        let mut cur = c.load(Ordering::Relaxed);
        loop {
            let n = if (cur >> 32) as u32 == gen {
                cur as u32
            } else {
                0
            };
            if n >= self.per_parent_max {
                return Err(ExpRefused::ParentFull);
            }
            let new = u64::from(gen) << 32 | u64::from(n + 1);
            match c.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(x) => cur = x,
            }
        }
    }

    fn parent_sub(&self, (idx, gen): (u32, u32)) {
        if let Some(c) = self.per_parent.get(idx as usize) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                ((cur >> 32) as u32 == gen && cur as u32 > 0).then_some(cur - 1)
            });
        }
    }

    /// Expectations the parent at `parent_ref` holds now.
    pub fn parent_count(&self, (idx, gen): (u32, u32)) -> u32 {
        self.per_parent
            .get(idx as usize)
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|c| (c >> 32) as u32 == gen)
            .map_or(0, |c| c as u32)
    }

    /// Frees `slot` (its parent is dead), keeping the counts right.
    fn reclaim(&self, slot: &mut Option<Expectation>) {
        if let Some(e) = slot.take() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.parent_sub(e.parent_ref);
        }
    }

    /// Creates `e` unless an equal live expectation exists (`Ok(false)`). `alive(idx,
    /// gen)` says whether a parent connection is still live.
    pub fn insert(
        &self,
        e: Expectation,
        alive: impl Fn(u32, u32) -> bool,
    ) -> Result<bool, ExpRefused> {
        let Some(b) = self.bucket_of(&e.key) else {
            return Err(ExpRefused::BucketFull);
        };
        let mut g = b.lock();
        let mut free = None;
        for (i, slot) in g.iter_mut().enumerate() {
            if let Some(x) = slot {
                if !alive(x.parent_ref.0, x.parent_ref.1) {
                    self.reclaim(slot);
                } else if x.same(&e) {
                    return Ok(false);
                }
            }
            if slot.is_none() && free.is_none() {
                free = Some(i);
            }
        }
        let slot = free
            .and_then(|i| g.get_mut(i))
            .ok_or(ExpRefused::BucketFull)?;
        if self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(ExpRefused::Full);
        }
        if let Err(r) = self.parent_add(e.parent_ref) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(r);
        }
        *slot = Some(e);
        Ok(true)
    }

    /// The live expectation a new connection with original key `k` fulfils, if any; an
    /// exact-source expectation wins over a wildcard one. Takes no lock while the table
    /// is empty.
    pub fn lookup(&self, k: &ConnKey, alive: impl Fn(u32, u32) -> bool) -> Option<Expectation> {
        if self.is_empty() {
            return None;
        }
        let g = self.bucket_of(k)?.lock();
        let mut found: Option<Expectation> = None;
        for x in g.iter().flatten() {
            if x.matches(k) && alive(x.parent_ref.0, x.parent_ref.1) {
                if !x.src_wildcard {
                    return Some(*x);
                }
                found.get_or_insert(*x);
            }
        }
        found
    }

    /// Reclaims the slots of expectations whose parent is dead in buckets
    /// `start..start + n` (wrapping); returns how many. Meant for the control lcore's
    /// sweep, in bounded steps.
    pub fn purge(&self, start: usize, n: usize, alive: impl Fn(u32, u32) -> bool) -> usize {
        let mut removed = 0;
        let len = self.buckets.len();
        for i in 0..n.min(len) {
            if let Some(b) = self.buckets.get((start + i) % len) {
                let mut g = b.lock();
                for slot in g.iter_mut() {
                    if slot.is_some_and(|x| !alive(x.parent_ref.0, x.parent_ref.1)) {
                        self.reclaim(slot);
                        removed += 1;
                    }
                }
            }
        }
        removed
    }

    /// Number of buckets (for [`ExpTable::purge`]'s cursor).
    pub fn n_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Calls `f` for every live expectation (for the dump; copies one bucket at a time
    /// so `f` runs without a lock held).
    pub fn for_each(&self, alive: impl Fn(u32, u32) -> bool, mut f: impl FnMut(&Expectation)) {
        for b in self.buckets.iter() {
            let copy: Bucket = *b.lock();
            for x in copy.iter().flatten() {
                if alive(x.parent_ref.0, x.parent_ref.1) {
                    f(x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    fn key(src: u8, dst: u8, sport: u16, dport: u16, zone: u16) -> ConnKey {
        let mut k = ConnKey {
            sport,
            dport,
            zone,
            proto: 6,
            family: 4,
            ..ConnKey::default()
        };
        k.src[..4].copy_from_slice(&[10, 0, 0, src]);
        k.dst[..4].copy_from_slice(&[10, 0, 0, dst]);
        k
    }

    fn exp(src: u8, dst: u8, dport: u16, wc: bool, parent: (u32, u32)) -> Expectation {
        Expectation {
            key: key(src, dst, 0, dport, 0),
            src_wildcard: wc,
            parent: key(dst, src, 40000, 21, 0),
            parent_ref: parent,
            nat_addr: [0; 16],
            nat_dst: false,
            nat_on: false,
            nat_port: 0,
            mark: 7,
            label: 9,
            helper: Helper::Ftp,
        }
    }

    fn all_alive(_: u32, _: u32) -> bool {
        true
    }

    #[test]
    fn lookup_ignores_source_port_and_honours_source_wildcard_and_zone() {
        let t = ExpTable::new(64, 100, 8, 16);
        assert!(t.insert(exp(2, 1, 1025, false, (0, 1)), all_alive).unwrap());
        let hit = t.lookup(&key(2, 1, 20, 1025, 0), all_alive).unwrap();
        assert_eq!((hit.mark, hit.label, hit.parent_ref), (7, 9, (0, 1)));
        assert!(t.lookup(&key(2, 1, 61000, 1025, 0), all_alive).is_some());
        assert!(t.lookup(&key(3, 1, 20, 1025, 0), all_alive).is_none());
        assert!(t.lookup(&key(2, 1, 20, 1026, 0), all_alive).is_none());
        assert!(t.lookup(&key(2, 1, 20, 1025, 1), all_alive).is_none());
        assert!(t.insert(exp(0, 1, 2000, true, (1, 1)), all_alive).unwrap());
        assert!(t.lookup(&key(99, 1, 5, 2000, 0), all_alive).is_some());
        // Not consumed by a match (OVS keeps it until its parent goes).
        assert!(t.lookup(&key(2, 1, 20, 1025, 0), all_alive).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn exact_source_expectation_wins_over_wildcard() {
        let t = ExpTable::new(1, 100, 8, 16);
        t.insert(exp(0, 1, 69, true, (1, 1)), all_alive).unwrap();
        t.insert(exp(2, 1, 69, false, (2, 1)), all_alive).unwrap();
        assert_eq!(
            t.lookup(&key(2, 1, 9, 69, 0), all_alive)
                .unwrap()
                .parent_ref,
            (2, 1)
        );
        assert_eq!(
            t.lookup(&key(3, 1, 9, 69, 0), all_alive)
                .unwrap()
                .parent_ref,
            (1, 1)
        );
    }

    #[test]
    fn duplicate_expectation_is_not_added_twice() {
        let t = ExpTable::new(64, 100, 8, 16);
        assert_eq!(
            t.insert(exp(2, 1, 1025, false, (0, 1)), all_alive),
            Ok(true)
        );
        assert_eq!(
            t.insert(exp(2, 1, 1025, false, (0, 1)), all_alive),
            Ok(false)
        );
        assert_eq!((t.len(), t.parent_count((0, 1))), (1, 1));
    }

    #[test]
    fn global_and_per_parent_limits_refuse_and_count_right() {
        let t = ExpTable::new(1024, 3, 2, 16);
        assert_eq!(t.insert(exp(2, 1, 1, false, (0, 1)), all_alive), Ok(true));
        assert_eq!(t.insert(exp(2, 1, 2, false, (0, 1)), all_alive), Ok(true));
        assert_eq!(
            t.insert(exp(2, 1, 3, false, (0, 1)), all_alive),
            Err(ExpRefused::ParentFull)
        );
        assert_eq!(t.insert(exp(2, 1, 4, false, (1, 1)), all_alive), Ok(true));
        assert_eq!(
            t.insert(exp(2, 1, 5, false, (2, 1)), all_alive),
            Err(ExpRefused::Full)
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t.parent_count((0, 1)), 2);
        // The same pool slot reused by a new connection (generation 2) starts from zero
        // once the old expectations are reclaimed.
        let alive = |i: u32, g: u32| !(i == 0 && g == 1);
        assert_eq!(t.purge(0, t.n_buckets(), alive), 2);
        assert_eq!(t.insert(exp(2, 1, 6, false, (0, 2)), alive), Ok(true));
        assert_eq!(t.parent_count((0, 2)), 1);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn full_bucket_refuses() {
        let t = ExpTable::new(1, 100, 100, 16);
        for p in 0..EXP_SLOTS as u16 {
            t.insert(exp(2, 1, 100 + p, false, (0, 1)), all_alive)
                .unwrap();
        }
        assert_eq!(
            t.insert(exp(2, 1, 99, false, (0, 1)), all_alive),
            Err(ExpRefused::BucketFull)
        );
        assert_eq!(t.len(), EXP_SLOTS as u32);
    }

    #[test]
    fn expectations_of_a_dead_parent_vanish_and_are_reclaimed() {
        let t = ExpTable::new(1, 100, 100, 16);
        t.insert(exp(2, 1, 1025, false, (3, 1)), all_alive).unwrap();
        t.insert(exp(2, 1, 1026, false, (4, 1)), all_alive).unwrap();
        let dead3 = |i: u32, _: u32| i != 3;
        assert!(t.lookup(&key(2, 1, 20, 1025, 0), dead3).is_none());
        assert!(t.lookup(&key(2, 1, 20, 1026, 0), dead3).is_some());
        let mut seen = Vec::new();
        t.for_each(dead3, |e| seen.push(e.key.dport));
        assert_eq!(seen, vec![1026]);
        // An insert into the bucket reclaims the dead one's slot on its way.
        t.insert(exp(2, 1, 1027, false, (4, 1)), dead3).unwrap();
        assert_eq!((t.len(), t.parent_count((3, 1))), (2, 0));
        assert_eq!(t.purge(0, 1, |_, _| false), 2);
        assert!(t.is_empty());
        assert_eq!(t.parent_count((4, 1)), 0);
    }

    /// Created on one thread, met on another, with inserts from four threads at once:
    /// every expectation is found and the counts are exact. (8192 buckets for 500
    /// expectations: a bucket overflowing its 4 slots has a probability near 1e-5.)
    #[test]
    fn expectation_created_on_one_worker_is_met_on_another() {
        let t = Arc::new(ExpTable::new(8192, 10_000, 1_000, 8));
        let writers: Vec<_> = (0..4u32)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for p in 0..125u16 {
                        t.insert(
                            exp(w as u8, 1, w as u16 * 1000 + p, false, (w, 1)),
                            all_alive,
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in writers {
            h.join().unwrap();
        }
        let found = Arc::new(Mutex::new(HashSet::new()));
        let readers: Vec<_> = (0..4u8)
            .map(|w| {
                let (t, found) = (t.clone(), found.clone());
                std::thread::spawn(move || {
                    for p in 0..125u16 {
                        // Reader w looks for writer (w + 1)'s expectations.
                        let src = (w + 1) % 4;
                        let dport = u16::from(src) * 1000 + p;
                        if let Some(e) = t.lookup(&key(src, 1, 40000, dport, 0), all_alive) {
                            found.lock().unwrap().insert((e.parent_ref.0, e.key.dport));
                        }
                    }
                })
            })
            .collect();
        for h in readers {
            h.join().unwrap();
        }
        assert_eq!(found.lock().unwrap().len(), 500);
        assert_eq!(t.len(), 500);
        assert_eq!(t.parent_count((2, 1)), 125);
    }
}
