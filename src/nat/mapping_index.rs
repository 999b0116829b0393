//! A hash index of the NAT mapping table ([`super::mapping`]): which mapping records a
//! hash leads to. The table has two of them, by inside endpoint and by outside endpoint.
//!
//! # Layout
//!
//! A [`Bucket`] is one 64-byte cache line: a lock word, the number of entries its chain
//! holds, how many of them are idle (their record has no connection: only these can be
//! dead, so a bucket whose count is zero needs no reaping), an overflow link, and
//! [`SLOTS`] entries of a 16-bit tag (high bits of the hash) and a record index. A scan
//! compares tags within the line and reads a record only when its tag matches. Entries
//! are kept packed: entry `k` of a chain is slot `k % SLOTS` of its `k / SLOTS`-th
//! bucket, a removed entry's place is taken by the last one, and an overflow bucket left
//! empty goes back to the overflow pool at once. Overflow buckets come from a bounded pool
//! of the index ([`Index::new`]); when it is used up an insert fails.
//!
//! # Concurrency
//!
//! Each bucket is a spin lock over its chain ([`Index::lock`] gives a [`Locked`] that
//! unlocks on drop); every read and write of a chain happens with its head bucket locked.
//! The fields are atomics (accessed relaxed, ordered by the lock's acquire and release),
//! so that all-zero memory is an empty, unlocked index ([`ZeroedPages`]). The overflow pool's lock is a leaf: taken with a bucket locked, nothing is
//! locked under it.

use crate::conntrack::sync::{prefetch, SpinLock};
use crate::dpdk::{PageSize, ZeroedPages};
use bytemuck::Zeroable;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

/// Entries per bucket.
pub const SLOTS: usize = 8;

/// One cache line of an index. All-zero bytes are an empty, unlocked bucket.
#[derive(Zeroable)]
#[repr(C, align(64))]
struct Bucket {
    lock: AtomicU32,
    /// Entries of the chain (head bucket only).
    len: AtomicU16,
    /// Entries of the chain whose record has no connection (head bucket only).
    idle: AtomicU16,
    /// Overflow bucket index + 1, 0 for none.
    next: AtomicU32,
    tags: [AtomicU16; SLOTS],
    idx: [AtomicU32; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// The overflow pool's free list: buckets never used start at `fresh`, freed ones are
/// chained from `head` (index + 1) through their `next`.
#[derive(Default)]
struct Free {
    fresh: u32,
    head: u32,
}

/// A bucket array with its overflow pool (see the module documentation).
pub struct Index {
    buckets: ZeroedPages<Bucket>,
    overflow: ZeroedPages<Bucket>,
    free: SpinLock<Free>,
    mask: usize,
}

impl Index {
    /// `n` buckets (a power of two), committed now, and `overflow` overflow buckets,
    /// committed as they are first used.
    pub fn new(n: usize, overflow: usize) -> Index {
        debug_assert!(n.is_power_of_two());
        let buckets = ZeroedPages::new(n, PageSize::Small);
        buckets.populate(0..n);
        Index {
            buckets,
            overflow: ZeroedPages::new(overflow, PageSize::Small),
            free: SpinLock::new(Free::default()),
            mask: n - 1,
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.mask + 1
    }

    /// Bytes of its arrays.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets) + std::mem::size_of_val(&*self.overflow)
    }

    /// The bucket of hash `h`.
    pub fn bucket_of(&self, h: u64) -> usize {
        h as usize & self.mask
    }

    /// Starts fetching bucket `b` (masked to the array) into the cache.
    pub fn prefetch(&self, b: usize) {
        if let Some(head) = self.buckets.get(b & self.mask) {
            prefetch(head);
        }
    }

    /// Calls `f` with the record index of each entry of bucket `b`'s first line whose tag
    /// is `tag`, read without the lock: a writer racing with it makes an answer stale, so
    /// it is only for prefetching, never for a lookup.
    pub fn peek(&self, b: usize, tag: u16, mut f: impl FnMut(u32)) {
        let Some(head) = self.buckets.get(b & self.mask) else {
            return;
        };
        let len = usize::from(head.len.load(Ordering::Relaxed)).min(SLOTS);
        for s in 0..len {
            if head.tags[s].load(Ordering::Relaxed) == tag {
                f(head.idx[s].load(Ordering::Relaxed));
            }
        }
    }

    /// Locks bucket `b` (masked to the array), spinning until it is free.
    pub fn lock(&self, b: usize) -> Locked<'_> {
        let head = &self.buckets[b & self.mask];
        loop {
            if head
                .lock
                .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Locked { ix: self, head };
            }
            while head.lock.load(Ordering::Relaxed) != 0 {
                std::hint::spin_loop();
            }
        }
    }

    /// Locks bucket `b` if it is free now.
    pub fn try_lock(&self, b: usize) -> Option<Locked<'_>> {
        let head = &self.buckets[b & self.mask];
        head.lock
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Locked { ix: self, head })
    }

    fn next_of(&self, b: &Bucket) -> Option<&Bucket> {
        let n = b.next.load(Ordering::Relaxed) as usize;
        n.checked_sub(1).and_then(|i| self.overflow.get(i))
    }

    fn alloc_overflow(&self) -> Option<u32> {
        let mut f = self.free.lock();
        if let Some(i) = f.head.checked_sub(1) {
            let b = self.overflow.get(i as usize)?;
            f.head = b.next.load(Ordering::Relaxed);
            b.next.store(0, Ordering::Relaxed);
            return Some(i);
        }
        if (f.fresh as usize) < self.overflow.len() {
            f.fresh += 1;
            return Some(f.fresh - 1);
        }
        None
    }

    fn free_overflow(&self, i: u32) {
        let mut f = self.free.lock();
        if let Some(b) = self.overflow.get(i as usize) {
            b.next.store(f.head, Ordering::Relaxed);
            f.head = i + 1;
        }
    }
}

/// Tag of hash `h` as stored in a bucket.
pub fn tag_of(h: u64) -> u16 {
    (h >> 48) as u16
}

/// A locked bucket of an [`Index`]: its chain's entries, by position `0..len()`.
pub struct Locked<'a> {
    ix: &'a Index,
    head: &'a Bucket,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.head.lock.store(0, Ordering::Release);
    }
}

impl Locked<'_> {
    /// Entries in the chain.
    pub fn len(&self) -> usize {
        usize::from(self.head.len.load(Ordering::Relaxed))
    }

    /// Entries whose record has no connection (as the caller keeps it).
    pub fn idle(&self) -> u16 {
        self.head.idle.load(Ordering::Relaxed)
    }

    /// One more (`up`) or one fewer idle entry.
    pub fn set_idle(&self, up: bool) {
        let i = self.idle();
        let i = if up {
            i.saturating_add(1)
        } else {
            i.saturating_sub(1)
        };
        self.head.idle.store(i, Ordering::Relaxed);
    }

    /// The bucket holding position `k` and `k`'s slot in it.
    fn slot(&self, k: usize) -> Option<(&Bucket, usize)> {
        let mut b = self.head;
        for _ in 0..k / SLOTS {
            b = self.ix.next_of(b)?;
        }
        Some((b, k % SLOTS))
    }

    /// The record index at position `k`.
    pub fn entry(&self, k: usize) -> Option<u32> {
        if k >= self.len() {
            return None;
        }
        let (b, s) = self.slot(k)?;
        Some(b.idx[s].load(Ordering::Relaxed))
    }

    /// The first position whose tag is `tag` and whose record index `hit` accepts, with
    /// that index.
    pub fn find(&self, tag: u16, mut hit: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let len = self.len();
        let mut b = self.head;
        let mut k = 0;
        while k < len {
            let s = k % SLOTS;
            if s == 0 && k > 0 {
                b = self.ix.next_of(b)?;
            }
            if b.tags[s].load(Ordering::Relaxed) == tag {
                let i = b.idx[s].load(Ordering::Relaxed);
                if hit(i) {
                    return Some((k, i));
                }
            }
            k += 1;
        }
        None
    }

    /// Adds the entry (`tag`, `idx`); false when the chain needs an overflow bucket and
    /// the pool has none left.
    pub fn insert(&self, tag: u16, idx: u32) -> bool {
        let len = self.len();
        if len >= usize::from(u16::MAX) {
            return false;
        }
        let (b, s) = if len > 0 && len.is_multiple_of(SLOTS) {
            let Some((last, _)) = self.slot(len - 1) else {
                return false;
            };
            let Some(n) = self.ix.alloc_overflow() else {
                return false;
            };
            last.next.store(n + 1, Ordering::Relaxed);
            match self.ix.overflow.get(n as usize) {
                Some(b) => (b, 0),
                None => return false,
            }
        } else {
            match self.slot(len) {
                Some(x) => x,
                None => return false,
            }
        };
        b.tags[s].store(tag, Ordering::Relaxed);
        b.idx[s].store(idx, Ordering::Relaxed);
        self.head.len.store(len as u16 + 1, Ordering::Relaxed);
        true
    }

    /// Removes the entry at position `k` (the last entry takes its place).
    pub fn remove(&self, k: usize) {
        let len = self.len();
        if k >= len {
            return;
        }
        let (Some((hole, hs)), Some((last, ls))) = (self.slot(k), self.slot(len - 1)) else {
            return;
        };
        hole.tags[hs].store(last.tags[ls].load(Ordering::Relaxed), Ordering::Relaxed);
        hole.idx[hs].store(last.idx[ls].load(Ordering::Relaxed), Ordering::Relaxed);
        self.head.len.store(len as u16 - 1, Ordering::Relaxed);
        // The last overflow bucket emptied: back to the pool.
        if len > SLOTS && (len - 1).is_multiple_of(SLOTS) {
            if let Some((prev, _)) = self.slot(len - 2) {
                let n = prev.next.swap(0, Ordering::Relaxed);
                if let Some(i) = n.checked_sub(1) {
                    self.ix.free_overflow(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_past_one_bucket_keeps_every_entry_and_returns_its_overflow_buckets() {
        let ix = Index::new(4, 2);
        let b = ix.lock(1);
        for i in 0..(3 * SLOTS) as u32 {
            assert!(b.insert(i as u16 % 3, i), "entry {i}");
        }
        assert!(!b.insert(0, 99), "the overflow pool is used up");
        assert_eq!(b.len(), 3 * SLOTS);
        assert_eq!(b.find(2, |i| i == 17), Some((17, 17)));
        assert_eq!(b.find(1, |i| i == 17), None, "wrong tag");
        // Remove from the front: the last entry fills each hole (23, then 22, …, 8).
        for _ in 0..2 * SLOTS {
            b.remove(0);
        }
        assert_eq!(b.len(), SLOTS);
        let mut left: Vec<u32> = (0..SLOTS).filter_map(|k| b.entry(k)).collect();
        left.sort();
        assert_eq!(left, (1..=SLOTS as u32).collect::<Vec<_>>());
        assert_eq!(b.entry(SLOTS), None);
        drop(b);
        // Both overflow buckets are free again: another bucket can grow two of them.
        let c = ix.lock(2);
        for i in 0..(3 * SLOTS) as u32 {
            assert!(c.insert(7, i), "entry {i} after the pool was given back");
        }
        assert!(ix.try_lock(2).is_none(), "held");
        drop(c);
        assert!(ix.try_lock(2).is_some());
    }

    #[test]
    fn a_peek_without_the_lock_sees_the_tagged_entries_of_the_first_line_only() {
        let ix = Index::new(4, 2);
        {
            let b = ix.lock(1);
            for i in 0..(SLOTS + 3) as u32 {
                assert!(b.insert(if i % 2 == 0 { 5 } else { 6 }, 100 + i));
            }
            b.remove(0);
            // Held: a peek does not wait for the lock.
            let mut seen = Vec::new();
            ix.peek(1, 5, |i| seen.push(i));
            seen.sort();
            // Entry 0 (100) went, the last (110, in the overflow bucket) took its slot;
            // 102…106 are the other tag-5 entries of the first line; 108 is in the
            // overflow bucket, which a peek does not follow.
            assert_eq!(seen, vec![102, 104, 106, 110]);
        }
        let mut other = Vec::new();
        ix.peek(2, 5, |i| other.push(i));
        ix.peek(1 + 4, 7, |i| other.push(i));
        assert!(other.is_empty(), "another bucket, another tag: {other:?}");
    }
}
