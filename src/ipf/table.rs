//! The fragment table: datagrams being reassembled, in buckets that each have their own
//! spin lock, shaped like the connection table so that fragments of one datagram may
//! arrive on any worker.
//!
//! # Layout
//!
//! A bucket holds [`WAYS`] datagram lists inline. A list holds its fragments as a chain
//! of slots of the [`SlotStore`] sorted by data offset, with how many data bytes it holds,
//! where the datagram ends (once the last fragment is in) and when its first fragment
//! arrived. Each bucket also publishes, outside its lock, the arrival time of its oldest
//! list, so that finding the oldest datagram of the whole table (to purge it when
//! `max_frags` are held) reads one word per bucket and locks one bucket.
//!
//! # Invariants (under the bucket's lock)
//!
//! * A list with `count == 0` is free; a used list has at least one fragment.
//! * The chain of a list is sorted by start offset and its fragments do not overlap;
//!   `have` is the sum of their lengths, so the datagram is complete exactly when the first
//!   and last fragments are in and `have == total`.
//! * Every slot in a chain is claimed in the store and belongs to that chain only.
//!
//! # Locking
//!
//! A worker holds at most one bucket lock at a time (purging the oldest datagram of another
//! bucket happens before it locks its own), so there is no lock order to get wrong.

use super::key::{FragInfo, FragKey};
use super::store::SlotStore;
use spin::mutex::SpinMutex;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Datagram lists per bucket.
pub const WAYS: usize = 4;
/// End of a chain.
pub const NONE: u16 = u16::MAX;
/// Most fragments one datagram may have. Non-last fragments are at least 400 bytes of IP
/// packet (the clamp of the minimum fragment size), so a legitimate datagram of 65,535
/// bytes has fewer than 200; more is an attack and is refused.
pub const MAX_PER_DATAGRAM: usize = 256;

/// One datagram being reassembled.
#[derive(Clone, Copy, Debug, Default)]
pub struct List {
    pub key: FragKey,
    pub head: u16,
    pub count: u16,
    /// Data bytes held.
    pub have: u32,
    /// End of the datagram's data; 0 until the last fragment is in.
    pub total: u32,
    pub first_seen: bool,
    /// When the first of its fragments arrived (ms).
    pub created_ms: u64,
}

/// The per-list slots and their bucket.
pub struct Bucket {
    pub lists: SpinMutex<[List; WAYS]>,
    /// `created_ms` of the oldest used list, `u64::MAX` when none (written under the lock,
    /// read without it).
    pub oldest: AtomicU64,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            lists: SpinMutex::new([List::default(); WAYS]),
            oldest: AtomicU64::new(u64::MAX),
        }
    }

    /// Republishes the oldest arrival time after a change.
    pub fn refresh_oldest(&self, lists: &[List; WAYS]) {
        let oldest = lists
            .iter()
            .filter(|l| l.count > 0)
            .map(|l| l.created_ms)
            .min()
            .unwrap_or(u64::MAX);
        self.oldest.store(oldest, Ordering::Relaxed);
    }
}

/// Where one held fragment sits in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub start: u32,
    pub len: u32,
    pub last: bool,
    pub next: u16,
    /// Where its data starts in its stored frame.
    pub data_at: usize,
}

impl Meta {
    pub fn end(&self) -> u32 {
        self.start + self.len
    }
}

/// Buckets, the slot store and each slot's [`Meta`].
pub struct Table {
    pub buckets: Box<[Bucket]>,
    pub store: SlotStore,
    meta: Box<[SpinMutex<Meta>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// Where inserting a fragment into a list left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Linked in; the datagram is not complete.
    Held,
    /// Linked in and the datagram is complete.
    Complete,
    /// Same offset, length and last flag as a held fragment: not linked.
    Duplicate,
    /// Overlaps held data or contradicts the datagram's end: not linked.
    Overlap,
    /// The datagram already has [`MAX_PER_DATAGRAM`] fragments: not linked.
    TooMany,
}

impl Table {
    /// A table for `capacity` held fragments of at most `slot_bytes` bytes of frame each.
    pub fn new(capacity: usize, slot_bytes: usize) -> Table {
        let capacity = capacity.clamp(1, usize::from(NONE) - 1);
        let n_buckets = (capacity / 2).next_power_of_two().max(16);
        Table {
            buckets: (0..n_buckets).map(|_| Bucket::new()).collect(),
            store: SlotStore::new(capacity, slot_bytes),
            meta: (0..capacity)
                .map(|_| {
                    SpinMutex::new(Meta {
                        start: 0,
                        len: 0,
                        last: false,
                        next: NONE,
                        data_at: 0,
                    })
                })
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The bucket of `key`.
    pub fn bucket_of(&self, key: &FragKey) -> &Bucket {
        let h = self.hasher.hash_one(key) as usize;
        &self.buckets[h & (self.buckets.len() - 1)]
    }

    /// Slot `idx`'s metadata (a copy).
    pub fn meta(&self, idx: u16) -> Meta {
        self.meta.get(usize::from(idx)).map_or(
            Meta {
                start: 0,
                len: 0,
                last: false,
                next: NONE,
                data_at: 0,
            },
            |m| *m.lock(),
        )
    }

    fn set_meta(&self, idx: u16, m: Meta) {
        if let Some(slot) = self.meta.get(usize::from(idx)) {
            *slot.lock() = m;
        }
    }

    fn set_next(&self, idx: u16, next: u16) {
        if let Some(slot) = self.meta.get(usize::from(idx)) {
            slot.lock().next = next;
        }
    }

    /// Links the fragment stored in slot `idx` into `list` (sorted, checked for
    /// duplicates and overlaps). The caller owns `idx` until this returns anything but
    /// `Held`/`Complete`.
    pub fn insert(&self, list: &mut List, idx: u16, f: &FragInfo) -> Insert {
        let (s, e) = (f.start, f.start + f.len);
        let mut prev = NONE;
        let mut cur = list.head;
        let mut cur_meta = None;
        while cur != NONE {
            let m = self.meta(cur);
            if m.start >= s {
                cur_meta = Some(m);
                break;
            }
            prev = cur;
            cur = m.next;
        }
        if let Some(m) = cur_meta {
            if m.start == s && m.len == f.len && m.last == f.last {
                return Insert::Duplicate;
            }
        }
        let prev_end = if prev == NONE {
            0
        } else {
            self.meta(prev).end()
        };
        let overlap = (prev != NONE && prev_end > s)
            || cur_meta.is_some_and(|m| m.start < e)
            || (f.last && (list.total != 0 || cur_meta.is_some()))
            || (!f.last && list.total != 0 && e > list.total);
        if overlap {
            return Insert::Overlap;
        }
        if usize::from(list.count) >= MAX_PER_DATAGRAM {
            return Insert::TooMany;
        }
        self.set_meta(
            idx,
            Meta {
                start: s,
                len: f.len,
                last: f.last,
                next: cur,
                data_at: f.data_at,
            },
        );
        if prev == NONE {
            list.head = idx;
        } else {
            self.set_next(prev, idx);
        }
        list.count += 1;
        list.have += f.len;
        if s == 0 {
            list.first_seen = true;
        }
        if f.last {
            list.total = e;
        }
        if list.first_seen && list.total != 0 && list.have == list.total {
            Insert::Complete
        } else {
            Insert::Held
        }
    }

    /// Releases every fragment of `list` and marks it free; returns how many there were.
    pub fn free_list(&self, list: &mut List) -> u16 {
        let n = list.count;
        let mut cur = list.head;
        let mut guard = 0;
        while cur != NONE && guard < MAX_PER_DATAGRAM {
            let next = self.meta(cur).next;
            self.store.release(cur);
            cur = next;
            guard += 1;
        }
        *list = List::default();
        n
    }

    /// The slots of a complete `list` in datagram order, into `out`; returns how many.
    /// Leaves the slots claimed (they now belong to the caller) and `list` free.
    pub fn take_list(&self, list: &mut List, out: &mut [u16; MAX_PER_DATAGRAM]) -> usize {
        let mut n = 0;
        let mut cur = list.head;
        while cur != NONE && n < MAX_PER_DATAGRAM {
            out[n] = cur;
            n += 1;
            cur = self.meta(cur).next;
        }
        *list = List::default();
        n
    }
}
