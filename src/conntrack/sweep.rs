//! Cleanup without expiration lists: the control lcore walks the buckets in bounded
//! steps, resuming from a cursor (as Linux's `gc_worker`), and removes connections whose
//! absolute expiry time has passed. Workers never wait for it: each bucket is read under
//! its seqlock, and a removal locks only the two buckets of one connection, briefly.
//!
//! Expired connections are already invisible to lookups before the sweep reaches them
//! (lazy expiry on lookup), and an insert at a zone limit reclaims them itself; the sweep
//! only returns their memory and keeps counts low.

use super::events::DestroyReason;
use super::table::SLOTS;
use super::tracker::{CtWorker, OwnedCtWorker};
use super::zones::Zones;
use std::sync::atomic::Ordering;

/// Expired connections are removed in batches of at least this many (or at the step's
/// end): the lines each removal writes in other places (the other direction's bucket,
/// the zone-list neighbours) are prefetched when the walk finds the connection expired,
/// so that their misses overlap the walk on to the batch's end instead of stalling each
/// removal's locked operations in turn. (Prefetched all at once when the batch was full,
/// five or six lines a connection were more misses than the core tracks at a time: the
/// prefetches waited for each other, and then the removals for them. Issued as found,
/// the sweep alone removed 7–11% more a second at 1M connections, and `datapath
/// --new-flows`, whose control lcore shares a CPU with the generator, carried 16–38% more
/// UDP connections a second in seven of seven interleaved pairs; perf/RESULTS.md,
/// session 27.)
const REMOVE_BATCH: usize = 16;
/// How many buckets ahead of the walk its records are prefetched (the buckets
/// themselves twice as far ahead). A bucket's visit is short next to a miss to memory:
/// 8 ahead instead of 4 took a pass over 1M live connections from 17–18 ms to 16–17 ms,
/// 16 ahead no further, and the removals' own cost did not move (`ctgate-perf core
/// --only sweep --conns 1000000`, perf/RESULTS.md, session 21).
const RECORDS_AHEAD: usize = 8;

/// What one sweep step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Buckets visited.
    pub buckets: usize,
    /// Expired connections removed.
    pub removed: usize,
    /// True when this step reached the end of the table (a full pass completed).
    pub wrapped: bool,
}

impl CtWorker<'_> {
    /// Sweeps up to `max_buckets` buckets from the saved cursor, removing connections that
    /// expired at or before `now` (ms). Meant for the control lcore's handle.
    pub fn sweep_expired(&mut self, now: u64, max_buckets: usize) -> SweepReport {
        let ct = self.tracker();
        let shard = self.shard();
        let table = ct.table();
        let n = table.n_buckets();
        let start = ct.sweep_cursor.load(Ordering::Relaxed) % n;
        let todo = max_buckets.min(n);
        let mut rep = SweepReport::default();
        let mut expired: Vec<(u32, u32)> = Vec::with_capacity(REMOVE_BATCH + 2 * SLOTS);
        for i in 0..todo {
            let b = (start + i) % n;
            if b == n - 1 {
                rep.wrapped = true;
            }
            // The records of the buckets a few steps ahead, and the buckets further on.
            if i + RECORDS_AHEAD < todo {
                table.prefetch_bucket_records((b + RECORDS_AHEAD) % n);
            }
            if i + 2 * RECORDS_AHEAD < todo {
                table.prefetch_bucket_at((b + 2 * RECORDS_AHEAD) % n);
            }
            table.for_each_in_bucket(b, |idx, gen| {
                let c = table.conn(idx);
                if c.expiry() <= now && c.is_live(gen) {
                    expired.push((idx, gen));
                    // What the removal writes outside the buckets walked, fetched as soon
                    // as the connection is found expired, so that the misses overlap the
                    // walk on to the batch's end: the reply direction's bucket, the
                    // record's lock line and the zone-list neighbours, random lines each.
                    table.prefetch_removal(idx);
                    Zones::prefetch_neighbours(table, idx);
                    ct.prefetch_removal_hooks(idx, 0);
                }
            });
            if expired.len() >= REMOVE_BATCH || i + 1 == todo {
                // The hooks' second lines (a NAT mapping's record, behind its bucket).
                for &(idx, _) in &expired {
                    ct.prefetch_removal_hooks(idx, 1);
                }
                let ev = (shard, DestroyReason::Expired);
                rep.removed += ct.remove_batch(&mut expired, self.cache(), ev);
                expired.clear();
            }
            rep.buckets += 1;
        }
        ct.sweep_cursor.store((start + todo) % n, Ordering::Relaxed);
        if rep.wrapped && !ct.exp.is_empty() {
            // Once per pass: the slots of expectations whose parent went (they are
            // already invisible to lookups).
            ct.purge_expectations();
        }
        self.count_expired(rep.removed as u64);
        rep
    }

    /// Sweeps the whole table once.
    pub fn sweep_all(&mut self, now: u64) -> SweepReport {
        let n = self.tracker().table().n_buckets();
        self.tracker().sweep_cursor.store(0, Ordering::Relaxed);
        self.sweep_expired(now, n)
    }
}

impl OwnedCtWorker {
    /// See [`CtWorker::sweep_expired`].
    pub fn sweep_expired(&mut self, now: u64, max_buckets: usize) -> SweepReport {
        self.with_worker(|w| w.sweep_expired(now, max_buckets))
    }
}
