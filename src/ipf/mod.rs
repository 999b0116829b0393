//! IP fragment reassembly in front of the tracker, with Open vSwitch's `ipf` semantics
//! (`lib/ipf.c`): fragments are held until their datagram is complete, the datagram is
//! tracked as one packet, and then its *original* fragments go on, in order.
//!
//! # What is held, and what is refused
//!
//! [`Ipf::add`] takes one fragment (a frame `parse_frame` classified as
//! [`Fragment::First`] or [`Fragment::Later`]) and
//!
//! * refuses it when reassembly is off for its family, when it is not the last fragment
//!   and its IP packet is shorter than the family's minimum fragment size (`too small`),
//!   when its headers do not add up (data not a multiple of 8 before the end, no data,
//!   beyond 65,535 bytes), when it is a copy of a held fragment (duplicate), or when it
//!   overlaps held data or contradicts the datagram's end: then **the whole datagram** is
//!   dropped (`overlapped`; RFC 5722, and RFC 1858's tiny-fragment attack);
//! * otherwise copies it into pre-allocated storage (`accepted`); when `max_frags`
//!   fragments are held, the oldest incomplete datagram is purged first (`purged`);
//! * when that completes the datagram, returns a [`Datagram`]: the tracker's
//!   [`DatagramSummary`] (first fragment's L4 header, real length, L4 checksum over the
//!   whole datagram; a first fragment that does not hold the whole L4 header drops the
//!   datagram as `too small`, RFC 1858) and the original fragments in order (`completed`).
//!
//! An incomplete datagram expires [`FragSettings::timeout_ms`] after its first fragment
//! arrived (`expired`): found so by the next fragment of its key, or by
//! [`Ipf::expire`] which the control lcore calls.
//!
//! # Concurrency and memory
//!
//! The table is lock-striped (see [`table`]); the storage is a fixed set of slots claimed
//! through a lock-free bitmap (see [`store`]). Nothing is allocated after [`Ipf::new`];
//! counters and settings are atomics, changed at run time by the control socket. No
//! `unsafe`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![forbid(unsafe_code)]

pub mod format;
pub mod key;
pub mod store;
pub mod summary;
pub mod table;

#[cfg(test)]
mod tests;

use self::key::FragInfo;
pub use self::key::{extract, FragKey};
use self::store::Slot;
pub use self::summary::{DatagramSummary, SummaryError};
use self::table::{Insert, List, Table, MAX_PER_DATAGRAM, WAYS};
use crate::wire::parse::{Family, ParsedPacket};
use spin::mutex::SpinMutexGuard;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// OVS's defaults and bounds.
pub mod limits {
    /// Default minimum IPv4 fragment size (IP packet bytes), OVS `IPF_V4_FRAG_SIZE_MIN_DEF`.
    pub const MIN_FRAG_V4: u32 = 1200;
    /// Default minimum IPv6 fragment size, OVS `IPF_V6_FRAG_SIZE_MIN_DEF`.
    pub const MIN_FRAG_V6: u32 = 1280;
    /// Lowest minimum fragment size either family accepts.
    pub const MIN_FRAG_LOWEST: u32 = 400;
    /// Default number of fragments held.
    pub const MAX_FRAGS: u32 = 1000;
    /// Most fragments that can ever be held (the storage is sized for this).
    pub const MAX_FRAGS_CLAMP: u32 = 5000;
    /// Default lifetime of an incomplete datagram.
    pub const TIMEOUT_MS: u64 = 15_000;
}

/// The reassembly settings (config `[fragments]` and the `ipf-set-*` commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragSettings {
    pub enabled_v4: bool,
    pub enabled_v6: bool,
    pub min_frag_v4: u32,
    pub min_frag_v6: u32,
    pub max_frags: u32,
    pub timeout_ms: u64,
}

impl Default for FragSettings {
    fn default() -> FragSettings {
        FragSettings {
            enabled_v4: true,
            enabled_v6: true,
            min_frag_v4: limits::MIN_FRAG_V4,
            min_frag_v6: limits::MIN_FRAG_V6,
            max_frags: limits::MAX_FRAGS,
            timeout_ms: limits::TIMEOUT_MS,
        }
    }
}

/// A setting out of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingError {
    /// A minimum fragment size below [`limits::MIN_FRAG_LOWEST`] or above 65,535.
    MinFrag(u32),
    /// `max_frags` above [`limits::MAX_FRAGS_CLAMP`].
    MaxFrags(u32),
    /// A zero timeout.
    Timeout,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingError::MinFrag(n) => write!(
                f,
                "minimum fragment size {n} out of range ({}..=65535)",
                limits::MIN_FRAG_LOWEST
            ),
            SettingError::MaxFrags(n) => write!(
                f,
                "max fragments {n} out of range (0..={})",
                limits::MAX_FRAGS_CLAMP
            ),
            SettingError::Timeout => f.write_str("fragment timeout must be at least 1 ms"),
        }
    }
}

impl std::error::Error for SettingError {}

fn check_min_frag(n: u32) -> Result<u32, SettingError> {
    if (limits::MIN_FRAG_LOWEST..=65_535).contains(&n) {
        Ok(n)
    } else {
        Err(SettingError::MinFrag(n))
    }
}

impl FragSettings {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), SettingError> {
        check_min_frag(self.min_frag_v4)?;
        check_min_frag(self.min_frag_v6)?;
        if self.max_frags > limits::MAX_FRAGS_CLAMP {
            return Err(SettingError::MaxFrags(self.max_frags));
        }
        if self.timeout_ms == 0 {
            return Err(SettingError::Timeout);
        }
        Ok(())
    }
}

/// Per-family counters, OVS's `ipf-get-status` words plus two of ctgate's.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    completed: AtomicU64,
    expired: AtomicU64,
    too_small: AtomicU64,
    overlapped: AtomicU64,
    purged: AtomicU64,
    duplicate: AtomicU64,
    invalid: AtomicU64,
}

/// A snapshot of one family's counters (fragments, not datagrams).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyStats {
    /// Fragments taken into the table.
    pub accepted: u64,
    /// Fragments of datagrams that completed.
    pub completed: u64,
    /// Fragments of datagrams that expired incomplete.
    pub expired: u64,
    /// Non-last fragments below the minimum size, and first fragments without their whole
    /// L4 header (these drop their datagram).
    pub too_small: u64,
    /// Fragments dropped because of an overlap: the one that overlapped and those of its
    /// datagram held until then.
    pub overlapped: u64,
    /// Fragments of datagrams purged to make room (`max_frags`, or a full bucket).
    pub purged: u64,
    /// Exact copies of a held fragment, dropped (ctgate only; OVS counts them overlapped).
    pub duplicate: u64,
    /// Fragments whose headers do not add up, or that found no room (ctgate only).
    pub invalid: u64,
}

/// Everything `ipf-get-status` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpfStatus {
    pub settings: FragSettings,
    /// Fragments held now.
    pub n_frags: u32,
    pub v4: FamilyStats,
    pub v6: FamilyStats,
}

/// One datagram being reassembled, for `ipf-get-status -m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListInfo {
    pub key: FragKey,
    pub n_fragments: u16,
    pub first_seen: bool,
    pub last_seen: bool,
}

/// Why [`Ipf::add`] did not hold a fragment. The fragment is dropped by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Reassembly is off for its family (the caller treats the fragment as before: `inv`).
    Disabled,
    /// Below the minimum fragment size, or a first fragment without its L4 header.
    TooSmall,
    /// Overlapped held data: its whole datagram was dropped.
    Overlapped,
    /// A copy of a held fragment.
    Duplicate,
    /// Headers that do not add up, a frame larger than a storage slot, or no room.
    Invalid,
}

/// What [`Ipf::add`] did with a fragment. (`Complete` is large: it carries the datagram's
/// slot list by value, because boxing it would allocate per datagram.)
#[allow(clippy::large_enum_variant)]
pub enum Outcome<'a> {
    /// Held; its datagram is not complete yet.
    Held,
    /// Its datagram is complete.
    Complete(Datagram<'a>),
    /// Not held.
    Refused(Refusal),
}

impl std::fmt::Debug for Outcome<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Held => f.write_str("Held"),
            Outcome::Complete(d) => write!(f, "Complete({} fragments)", d.len()),
            Outcome::Refused(r) => write!(f, "Refused({r:?})"),
        }
    }
}

/// A completed datagram: its summary for the tracker and its original fragments, in
/// order, still in their storage slots. Dropping it returns the slots.
pub struct Datagram<'a> {
    ipf: &'a Ipf,
    slots: [u16; MAX_PER_DATAGRAM],
    n: usize,
    pub summary: DatagramSummary,
}

impl Datagram<'_> {
    /// Number of fragments.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Never true (a datagram has at least one fragment); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Fragment `i` (0 = the first), writable in place for NAT.
    pub fn fragment(&self, i: usize) -> Option<FragmentRef<'_>> {
        let idx = *self.slots.get(..self.n)?.get(i)?;
        let data_at = self.ipf.table.meta(idx).data_at;
        Some(FragmentRef {
            slot: self.ipf.table.store.slot(idx)?,
            data_at,
        })
    }
}

impl Datagram<'_> {
    /// Keeps the fragments held but lets go of the borrow, so the datagram can wait in a
    /// queue (until the worker's next service); [`Ipf::attach`] takes it back.
    pub fn detach(self) -> Detached {
        let d = Detached {
            slots: self.slots,
            n: self.n,
            summary: self.summary,
        };
        std::mem::forget(self);
        d
    }
}

/// A completed datagram's fragments, still held, without a borrow of its [`Ipf`]. Give
/// it back to [`Ipf::attach`] of the same module: its slots stay taken until then.
#[derive(Clone)]
pub struct Detached {
    slots: [u16; MAX_PER_DATAGRAM],
    n: usize,
    pub summary: DatagramSummary,
}

impl Drop for Datagram<'_> {
    fn drop(&mut self) {
        for &idx in self.slots.iter().take(self.n) {
            self.ipf.table.store.release(idx);
        }
        self.ipf.n_frags.fetch_sub(self.n as u32, Ordering::Relaxed);
    }
}

/// One held fragment's frame, locked for its owner.
pub struct FragmentRef<'a> {
    slot: SpinMutexGuard<'a, Slot>,
    data_at: usize,
}

impl FragmentRef<'_> {
    /// Where the fragment's data (what follows the fragment header) starts in the frame.
    pub fn data_at(&self) -> usize {
        self.data_at
    }
}

impl Deref for FragmentRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.slot.frame()
    }
}

impl DerefMut for FragmentRef<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.slot.frame_mut()
    }
}

/// The reassembly module: settings, counters, the fragment table and its storage.
pub struct Ipf {
    enabled: [AtomicBool; 2],
    min_frag: [AtomicU32; 2],
    max_frags: AtomicU32,
    timeout_ms: AtomicU64,
    n_frags: AtomicU32,
    counters: [Counters; 2],
    table: Table,
    sweep_cursor: AtomicUsize,
}

fn fam(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

fn fam_of_key(k: &FragKey) -> usize {
    usize::from(k.family == 6)
}

impl Ipf {
    /// A module holding at most [`limits::MAX_FRAGS_CLAMP`] fragments of at most
    /// `slot_bytes` bytes of frame each (the largest frame a port receives), all allocated
    /// now. `settings` must pass [`FragSettings::validate`].
    pub fn new(settings: FragSettings, slot_bytes: usize) -> Result<Ipf, SettingError> {
        Ipf::with_capacity(settings, limits::MAX_FRAGS_CLAMP as usize, slot_bytes)
    }

    /// As [`Ipf::new`] with storage for `capacity` fragments (tests use small tables).
    pub fn with_capacity(
        settings: FragSettings,
        capacity: usize,
        slot_bytes: usize,
    ) -> Result<Ipf, SettingError> {
        settings.validate()?;
        Ok(Ipf {
            enabled: [
                AtomicBool::new(settings.enabled_v4),
                AtomicBool::new(settings.enabled_v6),
            ],
            min_frag: [
                AtomicU32::new(settings.min_frag_v4),
                AtomicU32::new(settings.min_frag_v6),
            ],
            max_frags: AtomicU32::new(settings.max_frags),
            timeout_ms: AtomicU64::new(settings.timeout_ms),
            n_frags: AtomicU32::new(0),
            counters: Default::default(),
            table: Table::new(capacity, slot_bytes),
            sweep_cursor: AtomicUsize::new(0),
        })
    }

    /// True when fragments of `family` are reassembled.
    #[inline]
    pub fn enabled(&self, family: Family) -> bool {
        self.enabled[fam(family)].load(Ordering::Relaxed)
    }

    /// `ipf-set-enabled` / `ipf-set-disabled`.
    pub fn set_enabled(&self, family: Family, on: bool) {
        self.enabled[fam(family)].store(on, Ordering::Relaxed);
    }

    /// `ipf-set-min-frag`.
    pub fn set_min_frag(&self, family: Family, n: u32) -> Result<(), SettingError> {
        self.min_frag[fam(family)].store(check_min_frag(n)?, Ordering::Relaxed);
        Ok(())
    }

    /// `ipf-set-max-nfrags`.
    pub fn set_max_frags(&self, n: u32) -> Result<(), SettingError> {
        if n > limits::MAX_FRAGS_CLAMP {
            return Err(SettingError::MaxFrags(n));
        }
        self.max_frags.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// The reassembly timeout (a configuration reload; bounds checked by the caller).
    pub fn set_timeout_ms(&self, ms: u64) {
        self.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The current settings.
    pub fn settings(&self) -> FragSettings {
        FragSettings {
            enabled_v4: self.enabled[0].load(Ordering::Relaxed),
            enabled_v6: self.enabled[1].load(Ordering::Relaxed),
            min_frag_v4: self.min_frag[0].load(Ordering::Relaxed),
            min_frag_v6: self.min_frag[1].load(Ordering::Relaxed),
            max_frags: self.max_frags.load(Ordering::Relaxed),
            timeout_ms: self.timeout_ms.load(Ordering::Relaxed),
        }
    }

    /// Fragments held now (in the table or in completed datagrams not yet dropped).
    pub fn n_frags(&self) -> u32 {
        self.n_frags.load(Ordering::Relaxed)
    }

    /// Settings, fragments held and counters.
    pub fn status(&self) -> IpfStatus {
        let snap = |c: &Counters| FamilyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            too_small: c.too_small.load(Ordering::Relaxed),
            overlapped: c.overlapped.load(Ordering::Relaxed),
            purged: c.purged.load(Ordering::Relaxed),
            duplicate: c.duplicate.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
        };
        IpfStatus {
            settings: self.settings(),
            n_frags: self.n_frags(),
            v4: snap(&self.counters[0]),
            v6: snap(&self.counters[1]),
        }
    }

    fn count(&self, f: usize, which: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        if let Some(c) = self.counters.get(f) {
            which(c).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Frees `list` (held under its bucket's lock) and counts its fragments with `which`.
    fn drop_list(&self, list: &mut List, which: impl Fn(&Counters) -> &AtomicU64) {
        let f = fam_of_key(&list.key);
        let n = self.table.free_list(list);
        self.n_frags.fetch_sub(u32::from(n), Ordering::Relaxed);
        self.count(f, which, u64::from(n));
    }

    /// Takes one fragment `frame` (parsed as `p`) of zone `zone` at time `now_ms`.
    pub fn add(&self, frame: &[u8], p: &ParsedPacket, zone: u16, now_ms: u64) -> Outcome<'_> {
        let f = fam(p.family);
        if !self.enabled(p.family) {
            return Outcome::Refused(Refusal::Disabled);
        }
        let Ok(info) = extract(frame, p, zone) else {
            self.count(f, |c| &c.invalid, 1);
            return Outcome::Refused(Refusal::Invalid);
        };
        if !info.last && info.ip_len < self.min_frag[f].load(Ordering::Relaxed) as usize {
            self.count(f, |c| &c.too_small, 1);
            return Outcome::Refused(Refusal::TooSmall);
        }
        let Some(slot) = self.claim(frame, &info) else {
            self.count(f, |c| &c.invalid, 1);
            return Outcome::Refused(Refusal::Invalid);
        };
        self.insert(slot, &info, now_ms)
    }

    /// Makes room under `max_frags` (purging the oldest datagrams, with no bucket lock
    /// held), then stores the frame.
    fn claim(&self, frame: &[u8], info: &FragInfo) -> Option<u16> {
        let max = self.max_frags.load(Ordering::Relaxed);
        if max == 0 {
            return None;
        }
        for _ in 0..8 {
            if self.n_frags.load(Ordering::Relaxed) < max {
                break;
            }
            if !self.purge_oldest() {
                break;
            }
        }
        let frame = frame.get(..info.frame_len)?;
        match self.table.store.store(frame) {
            Some(idx) => Some(idx),
            None if frame.len() <= self.table.store.slot_bytes() => {
                // Every slot in use (completed datagrams not yet sent): purge once more.
                self.purge_oldest();
                self.table.store.store(frame)
            }
            None => None,
        }
    }

    /// Purges the table's oldest incomplete datagram; false when there is none.
    fn purge_oldest(&self) -> bool {
        let Some(b) = self
            .table
            .buckets
            .iter()
            .filter(|b| b.oldest.load(Ordering::Relaxed) != u64::MAX)
            .min_by_key(|b| b.oldest.load(Ordering::Relaxed))
        else {
            return false;
        };
        let mut lists = b.lists.lock();
        let oldest = lists
            .iter_mut()
            .filter(|l| l.count > 0)
            .min_by_key(|l| l.created_ms);
        let purged = match oldest {
            Some(l) => {
                self.drop_list(l, |c| &c.purged);
                true
            }
            None => false,
        };
        b.refresh_oldest(&lists);
        purged
    }

    fn insert(&self, slot: u16, info: &FragInfo, now_ms: u64) -> Outcome<'_> {
        let f = fam_of_key(&info.key);
        let timeout = self.timeout_ms.load(Ordering::Relaxed);
        let bucket = self.table.bucket_of(&info.key);
        let mut lists = bucket.lists.lock();
        // The datagram's list, unless it expired; else a free way; else the bucket's
        // oldest datagram makes room.
        let mut found = None;
        for (i, l) in lists.iter_mut().enumerate() {
            if l.count > 0 && l.key == info.key {
                if now_ms.saturating_sub(l.created_ms) >= timeout {
                    self.drop_list(l, |c| &c.expired);
                } else {
                    found = Some(i);
                }
                break;
            }
        }
        let way = match found {
            Some(i) => i,
            None => {
                let i = match lists.iter().position(|l| l.count == 0) {
                    Some(i) => i,
                    None => {
                        let (i, _) = lists
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, l)| l.created_ms)
                            .unwrap_or((0, &lists[0]));
                        self.drop_list(&mut lists[i % WAYS], |c| &c.purged);
                        i % WAYS
                    }
                };
                lists[i] = List {
                    key: info.key,
                    head: table::NONE,
                    created_ms: now_ms,
                    ..List::default()
                };
                i
            }
        };
        let list = &mut lists[way];
        let outcome = match self.table.insert(list, slot, info) {
            Insert::Held => {
                self.n_frags.fetch_add(1, Ordering::Relaxed);
                self.count(f, |c| &c.accepted, 1);
                Outcome::Held
            }
            Insert::Complete => {
                self.n_frags.fetch_add(1, Ordering::Relaxed);
                self.count(f, |c| &c.accepted, 1);
                let total = list.total;
                let mut slots = [0u16; MAX_PER_DATAGRAM];
                let n = self.table.take_list(list, &mut slots);
                self.complete(f, slots, n, total)
            }
            Insert::Duplicate => {
                self.table.store.release(slot);
                self.count(f, |c| &c.duplicate, 1);
                Outcome::Refused(Refusal::Duplicate)
            }
            Insert::Overlap => {
                self.table.store.release(slot);
                self.count(f, |c| &c.overlapped, 1);
                self.drop_list(list, |c| &c.overlapped);
                Outcome::Refused(Refusal::Overlapped)
            }
            Insert::TooMany => {
                self.table.store.release(slot);
                self.count(f, |c| &c.invalid, 1);
                Outcome::Refused(Refusal::Invalid)
            }
        };
        if list.count == 0 && !matches!(outcome, Outcome::Complete(_)) {
            // A list just created for a fragment that was not linked.
            *list = List::default();
        }
        bucket.refresh_oldest(&lists);
        outcome
    }

    /// Builds the datagram of `n` completed slots (which the caller now owns) or drops it
    /// when its first fragment does not carry the whole L4 header.
    fn complete(
        &self,
        f: usize,
        slots: [u16; MAX_PER_DATAGRAM],
        n: usize,
        total: u32,
    ) -> Outcome<'_> {
        let mut dg = Datagram {
            ipf: self,
            slots,
            n,
            summary: DatagramSummary {
                parsed: ParsedPacket::EMPTY,
                l4_checksum_ok: false,
                ip_len: 0,
            },
        };
        let mut rest_sum = 0u16;
        for i in 1..n {
            if let Some(frag) = dg.fragment(i) {
                let sum = crate::wire::checksum::data(frag.get(frag.data_at()..).unwrap_or(&[]));
                rest_sum = crate::wire::checksum::combine(&[rest_sum, sum]);
            }
        }
        let summary = dg
            .fragment(0)
            .ok_or(SummaryError::L4Header)
            .and_then(|first| summary::summarize(&first, first.data_at(), total, rest_sum));
        match summary {
            Ok(s) => {
                self.count(f, |c| &c.completed, n as u64);
                dg.summary = s;
                Outcome::Complete(dg)
            }
            Err(_) => {
                self.count(f, |c| &c.too_small, n as u64);
                drop(dg);
                Outcome::Refused(Refusal::TooSmall)
            }
        }
    }

    /// Drops incomplete datagrams older than the timeout in up to `max_buckets` buckets,
    /// resuming where the last call stopped (the control lcore's periodic work). Returns
    /// the fragments dropped.
    pub fn expire(&self, now_ms: u64, max_buckets: usize) -> u64 {
        let timeout = self.timeout_ms.load(Ordering::Relaxed);
        let nb = self.table.buckets.len();
        let start = self.sweep_cursor.load(Ordering::Relaxed) % nb;
        let mut dropped = 0u64;
        for k in 0..max_buckets.min(nb) {
            let b = &self.table.buckets[(start + k) % nb];
            let oldest = b.oldest.load(Ordering::Relaxed);
            if oldest == u64::MAX || now_ms.saturating_sub(oldest) < timeout {
                continue;
            }
            let mut lists = b.lists.lock();
            for l in lists.iter_mut() {
                if l.count > 0 && now_ms.saturating_sub(l.created_ms) >= timeout {
                    dropped += u64::from(l.count);
                    self.drop_list(l, |c| &c.expired);
                }
            }
            b.refresh_oldest(&lists);
        }
        self.sweep_cursor
            .store((start + max_buckets.min(nb)) % nb, Ordering::Relaxed);
        dropped
    }

    /// Takes back a [`Datagram::detach`]ed datagram of this module.
    pub fn attach(&self, d: Detached) -> Datagram<'_> {
        Datagram {
            ipf: self,
            slots: d.slots,
            n: d.n,
            summary: d.summary,
        }
    }

    /// The datagrams being reassembled (for `ipf-get-status -m`; control path only).
    pub fn lists(&self) -> Vec<ListInfo> {
        let mut out = Vec::new();
        for b in self.table.buckets.iter() {
            if b.oldest.load(Ordering::Relaxed) == u64::MAX {
                continue;
            }
            for l in b.lists.lock().iter().filter(|l| l.count > 0) {
                out.push(ListInfo {
                    key: l.key,
                    n_fragments: l.count,
                    first_seen: l.first_seen,
                    last_seen: l.total != 0,
                });
            }
        }
        out
    }

    /// Number of buckets (a full [`Ipf::expire`] pass).
    pub fn n_buckets(&self) -> usize {
        self.table.buckets.len()
    }
}
