//! Exact connection limits counted per worker: the global `maxconns` count and each
//! zone's count, without a shared counter written on every creation.
//!
//! A [`Credits`] has one shared word, `reserved` (slots handed out), and one spare count
//! per shard (per worker, plus the control lcore), each on its own cache line. A shard
//! that admits a connection takes one of its own spare slots (an uncontended
//! compare-and-swap on a line only it writes, as a rule); when it has none it reserves a
//! batch from the shared word, so the shared line is written once per batch, not once
//! per connection. A removal gives its slot to the remover's spare; a spare that grows
//! past two batches returns one.
//!
//! # Invariants
//!
//! * `reserved` = connections counted + the sum of the spares (+ the few slots in flight
//!   between the two words inside `take`/`give`). So [`Credits::count`] is exact whenever
//!   no admission or removal is under way.
//! * `reserved` never grows past the limit: a batch is reserved only while the room left
//!   is more than a batch per shard, and then one slot at a time; so connections counted
//!   never exceed the limit.
//! * A refusal is exact: before refusing, the refused shard collects every shard's spare
//!   back into `reserved` and tries again, so a slot parked unused in another worker's
//!   spare never refuses a connection below the limit; and while another shard's
//!   collection is under way (slots out of a spare, not yet out of `reserved`) it tries
//!   again until that one ends. (Without that wait, two workers that found the room in
//!   the control lcore's spare at once refused connections below the limit: the second
//!   to collect found the spares empty and `reserved` not yet lowered.)
//! * Lowering a limit ([`Credits::collect`]) takes every spare back, so the spares handed
//!   out under the old limit cannot admit connections past the new one.

use super::sync::CachePadded;
use std::sync::atomic::{AtomicU32, Ordering};

/// Slots a shard reserves at once from the shared word.
const BATCH: u32 = 32;

/// A limited count kept per shard (see the module doc).
pub struct Credits {
    /// Slots handed out: counted connections plus the shards' spares.
    reserved: CachePadded<AtomicU32>,
    /// Collections under way ([`Credits::collect`]): the slots such a collection has
    /// taken out of a spare and not yet out of `reserved` make the room look smaller than
    /// it is, so a refusal waits for it to end (written only by collections, read only
    /// on the way to a refusal).
    collecting: AtomicU32,
    /// Per shard: slots reserved but not used yet.
    spare: Box<[CachePadded<AtomicU32>]>,
}

/// How many times a shard that found no room re-reads it while another shard's collection
/// is under way before it refuses (a collection takes well under a microsecond; this bounds
/// the wait when the collecting thread was preempted).
const COLLECT_WAIT_SPINS: u32 = 4096;

/// [`Credits::reserve_after_collections`], which [`Credits::refill`] calls through this
/// pointer. Written as a plain call (or as a loop in `refill`, or as a cold function of its
/// own), the same source made the compiler lay out the tracker's creation path (`miss`,
/// `process_burst_nat`) differently, and creation into a 1M-connection table ran 5.6%
/// slower (8.57–8.66 against 9.00–9.07 M/s, interleaved, the same instructions per
/// creation under callgrind); through the pointer, which the compiler still resolves and
/// inlines, the layout and the rate are as before the wait existed (perf/RESULTS.md,
/// session 26).
static AFTER_COLLECTIONS: fn(&Credits, usize, Option<u32>) -> bool =
    Credits::reserve_after_collections;

impl Credits {
    /// A count for `shards` shards, starting at zero.
    pub fn new(shards: usize) -> Credits {
        Credits {
            reserved: CachePadded(AtomicU32::new(0)),
            collecting: AtomicU32::new(0),
            spare: (0..shards.max(1))
                .map(|_| CachePadded(AtomicU32::new(0)))
                .collect(),
        }
    }

    #[inline(always)]
    fn spare(&self, shard: usize) -> &AtomicU32 {
        &self.spare[shard % self.spare.len()]
    }

    /// Counts one more for `shard` if that keeps the count within `limit` (`None`:
    /// unlimited). False means the count is at the limit.
    #[inline]
    pub fn take(&self, shard: usize, limit: Option<u32>) -> bool {
        let s = self.spare(shard);
        let mut c = s.load(Ordering::Relaxed);
        while c > 0 {
            match s.compare_exchange_weak(c, c - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        self.refill(shard, limit)
    }

    /// The shard's spare is empty: reserve from the shared word; at the limit, collect
    /// every shard's spare first (exact refusals).
    #[cold]
    #[inline(never)]
    fn refill(&self, shard: usize, limit: Option<u32>) -> bool {
        if self.reserve(shard, limit) {
            return true;
        }
        self.collect();
        self.reserve(shard, limit) || (AFTER_COLLECTIONS)(self, shard, limit)
    }

    /// [`Credits::refill`]'s second try failed: tries again while another shard's
    /// collection is under way.
    fn reserve_after_collections(&self, shard: usize, limit: Option<u32>) -> bool {
        for _ in 0..COLLECT_WAIT_SPINS {
            // No room is exact unless another shard's collection holds slots between the
            // spares and `reserved`. A collection this shard's `collect` followed is seen
            // here (the swaps' release and acquire); when none is under way, the ones
            // before have subtracted (the count's release and acquire) and the room read
            // after is exact.
            let busy = self.collecting.load(Ordering::Acquire);
            if self.reserve(shard, limit) {
                return true;
            }
            if busy == 0 {
                return false;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Reserves a batch (far from the limit) or one slot (near it) for `shard`, using one
    /// of them at once. False when `reserved` is at the limit.
    fn reserve(&self, shard: usize, limit: Option<u32>) -> bool {
        let room_for_batches = BATCH * (self.spare.len() as u32 + 1);
        let mut r = self.reserved.load(Ordering::Relaxed);
        loop {
            let want = match limit {
                None => BATCH,
                Some(l) => match l.saturating_sub(r) {
                    room if room >= room_for_batches => BATCH,
                    room => room.min(1),
                },
            };
            if want == 0 {
                return false;
            }
            match self.reserved.compare_exchange_weak(
                r,
                r + want,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if want > 1 {
                        self.spare(shard).fetch_add(want - 1, Ordering::Relaxed);
                    }
                    return true;
                }
                Err(now) => r = now,
            }
        }
    }

    /// Counts one less (a removal by `shard`, or an admission undone).
    #[inline]
    pub fn give(&self, shard: usize) {
        self.give_n(shard, 1);
    }

    /// [`Credits::give`] for `n` removals at once (the sweep's batch): one write of the
    /// shard's spare instead of `n`, and the batches past two returned to the shared word.
    #[inline]
    pub fn give_n(&self, shard: usize, n: u32) {
        if n == 0 {
            return;
        }
        let s = self.spare(shard);
        let mut c = s.fetch_add(n, Ordering::Relaxed) + n;
        while c >= 2 * BATCH {
            match s.compare_exchange(c, c - BATCH, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.reserved.fetch_sub(BATCH, Ordering::Relaxed);
                    c -= BATCH;
                }
                // Emptied by a collection (another shard's refusal, a lowered limit):
                // nothing left to return. (Only this shard's thread gives or takes here.)
                Err(_) => break,
            }
        }
    }

    /// Takes every shard's spare back into the shared word (before a refusal, and when a
    /// limit is lowered).
    pub fn collect(&self) {
        self.collecting.fetch_add(1, Ordering::AcqRel);
        for s in self.spare.iter() {
            let n = s.swap(0, Ordering::AcqRel);
            if n > 0 {
                self.reserved.fetch_sub(n, Ordering::Relaxed);
            }
        }
        self.collecting.fetch_sub(1, Ordering::Release);
    }

    /// The count: exact when no admission or removal is under way (see the module doc).
    pub fn count(&self) -> u32 {
        let spare: u32 = self.spare.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        self.reserved.load(Ordering::Relaxed).saturating_sub(spare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_several_shards_sum_to_the_total() {
        let c = Credits::new(3);
        for i in 0..100 {
            assert!(c.take(i % 3, None));
        }
        assert_eq!(c.count(), 100);
        // Removals by a shard that admitted none of them.
        for _ in 0..70 {
            c.give(2);
        }
        assert_eq!(c.count(), 30);
        for _ in 0..30 {
            c.give(0);
        }
        assert_eq!(c.count(), 0);
    }

    #[test]
    fn a_batch_given_at_once_counts_as_the_same_removals_one_by_one() {
        let (one, batched) = (Credits::new(3), Credits::new(3));
        for c in [&one, &batched] {
            for i in 0..1000 {
                assert!(c.take(i % 2, Some(1000)));
            }
            assert!(!c.take(0, Some(1000)));
        }
        // The control shard removes in batches of every size, the last one empty.
        let mut left = 1000;
        for n in [1u32, 16, 7, 64, 100, 31, 2, 300, 0] {
            for _ in 0..n {
                one.give(2);
            }
            batched.give_n(2, n);
            left -= n;
            for c in [&one, &batched] {
                assert_eq!(c.count(), left, "after a batch of {n}");
                // A spare never keeps two batches: the rest went back to the shared word.
                assert!(
                    c.spare(2).load(Ordering::Relaxed) < 2 * BATCH,
                    "batch of {n}"
                );
            }
            assert_eq!(
                batched.reserved.load(Ordering::Relaxed),
                one.reserved.load(Ordering::Relaxed)
            );
        }
        // What was given admits again, up to the limit and no further.
        for c in [&one, &batched] {
            for i in 0..(1000 - left) {
                assert!(c.take(i as usize % 2, Some(1000)), "slot {i}");
            }
            assert!(!c.take(2, Some(1000)));
            assert_eq!(c.count(), 1000);
        }
    }

    #[test]
    fn a_limit_is_reached_exactly_while_other_shards_hold_spares() {
        let c = Credits::new(2);
        // Shard 1 reserves a batch and uses one slot of it.
        assert!(c.take(1, Some(1000)));
        // Shard 0 takes the rest: the spare shard 1 holds must not refuse it early.
        for i in 0..999 {
            assert!(c.take(0, Some(1000)), "slot {i}");
        }
        assert!(!c.take(0, Some(1000)));
        assert!(!c.take(1, Some(1000)));
        assert_eq!(c.count(), 1000);
        c.give(1);
        assert!(c.take(0, Some(1000)));
        assert!(!c.take(1, Some(1000)));
    }

    #[test]
    fn a_lowered_limit_holds_once_spares_are_collected() {
        let c = Credits::new(2);
        assert!(c.take(0, Some(1000)));
        c.collect();
        for _ in 0..4 {
            assert!(c.take(1, Some(5)));
        }
        assert!(!c.take(0, Some(5)));
        assert_eq!(c.count(), 5);
    }

    #[test]
    fn threads_admitting_at_once_never_pass_the_limit_together() {
        let c = Credits::new(4);
        let admitted: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|shard| {
                    let c = &c;
                    s.spawn(move || (0..5000).filter(|_| c.take(shard, Some(7777))).count())
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().map_or(0, |n| n as u32))
                .collect()
        });
        assert_eq!(admitted.iter().sum::<u32>(), 7777);
        assert_eq!(c.count(), 7777);
    }

    #[test]
    fn shards_finding_the_room_in_another_shards_spare_at_once_are_never_refused() {
        // The whole room sits in shard 2's spare (the control lcore's sweep gave the
        // slots back) when shards 0 and 1 both need it: each collects, and the one whose
        // collection comes second finds the spares empty while the first still holds
        // the slots between the spare and `reserved`. It must wait, not refuse.
        const L: u32 = 64;
        for round in 0..2000 {
            let c = Credits::new(3);
            c.reserved.store(L, Ordering::Relaxed);
            c.spare[2].store(L, Ordering::Relaxed);
            let go = AtomicU32::new(0);
            let refused: Vec<usize> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|shard| {
                        let (c, go) = (&c, &go);
                        s.spawn(move || {
                            go.fetch_add(1, Ordering::AcqRel);
                            while go.load(Ordering::Acquire) < 2 {
                                std::hint::spin_loop();
                            }
                            (0..L / 2).filter(|_| !c.take(shard, Some(L))).count()
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or(usize::MAX))
                    .collect()
            });
            assert_eq!(refused, [0, 0], "round {round}");
            assert_eq!(c.count(), L, "round {round}");
            assert!(!c.take(0, Some(L)), "round {round}: past the limit");
        }
    }
}
