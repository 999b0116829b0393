//! Per-connection ALG state that does not fit the 160-byte record: the sequence skew of a
//! control connection whose payload a rewrite lengthened or shortened, and the parent
//! (control) connection of a data connection (shown by `dump-conntrack -m`).
//!
//! Shape: fixed buckets of [`SIDE_SLOTS`] entries, each bucket under its own spin lock,
//! hashed on the connection's pool index; no global lock, nothing allocated after
//! [`AlgSide::new`]. Only connections whose record has the ALG bits set are ever looked
//! up here (a bit in the record says so), so ordinary traffic never touches the table.
//! An entry is keyed by pool index and generation: once its connection is gone (the
//! caller's `alive` test) it is dead and its slot is reused by the next insert into the
//! bucket, the same lazy removal the expectation table uses. A full bucket refuses the
//! insert; the caller counts it and leaves the payload unchanged.
//!
//! The skew follows Linux's `nf_ct_seqadj`: per direction the sequence number of the
//! last rewritten segment (`pos`), the offset of segments up to it (`before`) and after
//! it (`after`), so a retransmission of the rewritten segment gets the offset it had the
//! first time, and the other direction's acknowledgements are moved back to match.

use super::super::key::ConnKey;
use super::super::sync::{CachePadded, SpinLock};

/// Entries per bucket.
pub const SIDE_SLOTS: usize = 4;

/// The skew of one direction (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skew {
    /// Sequence number (as the sender sent it) of the last segment whose length changed.
    pub pos: u32,
    /// Offset of segments starting at or before `pos`.
    pub before: i32,
    /// Offset of segments after `pos`.
    pub after: i32,
}

/// True when sequence number `a` is after `b` (mod 2^32).
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Skew {
    /// The offset to add to the sequence number `seq` of a segment sent in this
    /// direction.
    pub fn seq_offset(&self, seq: u32) -> i32 {
        if seq_after(seq, self.pos) {
            self.after
        } else {
            self.before
        }
    }

    /// The offset to add to the acknowledgement number `ack` of a segment sent the
    /// other way (acknowledging this direction's data as the receiver saw it).
    pub fn ack_offset(&self, ack: u32) -> i32 {
        if seq_after(ack.wrapping_sub(self.before as u32), self.pos) {
            -self.after
        } else {
            -self.before
        }
    }

    /// Records a rewrite of `delta` bytes in the segment starting at `seq` (Linux's
    /// `nf_ct_seqadj_set`): a new position moves `after` on; a retransmission of the
    /// segment already rewritten (same or earlier position) changes nothing.
    pub fn add(&mut self, seq: u32, delta: i32) {
        if delta == 0 {
            return;
        }
        if self.before == self.after || seq_after(seq, self.pos) {
            self.pos = seq;
            self.before = self.after;
            self.after = self.after.wrapping_add(delta);
        }
    }

    /// True when the direction has never been skewed.
    pub fn is_zero(&self) -> bool {
        self.before == 0 && self.after == 0
    }
}

/// One connection's entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideEntry {
    /// The connection's pool index and generation.
    pub idx: u32,
    pub gen: u32,
    /// Skew per direction (`DIR_ORIG`, `DIR_REPLY`).
    pub skew: [Skew; 2],
    /// The parent connection's original key (data connections).
    pub parent: Option<ConnKey>,
}

type Bucket = [Option<SideEntry>; SIDE_SLOTS];

/// Why an entry could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideFull;

/// The side table (see the module documentation).
pub struct AlgSide {
    buckets: Box<[CachePadded<SpinLock<Bucket>>]>,
}

impl AlgSide {
    /// A table of `n_buckets` buckets (rounded up to a power of two, at least 1).
    pub fn new(n_buckets: usize) -> AlgSide {
        let n = n_buckets.max(1).next_power_of_two();
        AlgSide {
            buckets: (0..n)
                .map(|_| CachePadded(SpinLock::new([None; SIDE_SLOTS])))
                .collect(),
        }
    }

    fn bucket(&self, idx: u32) -> Option<&SpinLock<Bucket>> {
        // Pool indices are dense: a multiplicative hash spreads neighbours.
        let h = (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let i = h as usize & (self.buckets.len() - 1);
        self.buckets.get(i).map(|b| &b.0)
    }

    /// Runs `f` on the entry of connection (`idx`, `gen`), creating it (dead entries of
    /// the bucket are reused) when `create`. `None` when there is none and it was not
    /// created (absent, or the bucket is full).
    pub fn with_entry<R>(
        &self,
        idx: u32,
        gen: u32,
        create: bool,
        alive: impl Fn(u32, u32) -> bool,
        f: impl FnOnce(&mut SideEntry) -> R,
    ) -> Result<Option<R>, SideFull> {
        let Some(b) = self.bucket(idx) else {
            return Err(SideFull);
        };
        let mut g = b.lock();
        let mut free = None;
        for (i, slot) in g.iter_mut().enumerate() {
            match slot {
                Some(e) if e.idx == idx && e.gen == gen => return Ok(Some(f(e))),
                Some(e) if !alive(e.idx, e.gen) => {
                    *slot = None;
                    free.get_or_insert(i);
                }
                None => {
                    free.get_or_insert(i);
                }
                Some(_) => {}
            }
        }
        if !create {
            return Ok(None);
        }
        let slot = free.and_then(|i| g.get_mut(i)).ok_or(SideFull)?;
        let e = slot.insert(SideEntry {
            idx,
            gen,
            ..SideEntry::default()
        });
        Ok(Some(f(e)))
    }

    /// A copy of the entry of (`idx`, `gen`), if any.
    pub fn get(&self, idx: u32, gen: u32) -> Option<SideEntry> {
        let g = self.bucket(idx)?.lock();
        g.iter()
            .flatten()
            .find(|e| e.idx == idx && e.gen == gen)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_moves_later_segments_and_not_retransmissions_of_the_rewritten_one() {
        let mut s = Skew::default();
        s.add(1000, 3);
        assert_eq!((s.seq_offset(1000), s.seq_offset(1020)), (0, 3));
        // The peer acknowledges 1020 + 3 (what it received): moved back by 3.
        assert_eq!(s.ack_offset(1023), -3);
        assert_eq!(s.ack_offset(1000), 0);
        // The same segment retransmitted and rewritten again: no double count.
        s.add(1000, 3);
        assert_eq!(s.seq_offset(1020), 3);
        // A second rewrite further on accumulates.
        s.add(2000, -1);
        assert_eq!((s.seq_offset(1500), s.seq_offset(2001)), (3, 2));
        // The receiver got the segment at 2000 + 3 (19 bytes instead of 20): its ack of
        // everything up to it is moved back by 3, of the segment itself by 2.
        assert_eq!(s.ack_offset(2003), -3);
        assert_eq!(s.ack_offset(2022), -2);
        // Wraps around the sequence space.
        let mut w = Skew::default();
        w.add(u32::MAX - 1, 5);
        assert_eq!(w.seq_offset(3), 5);
    }

    #[test]
    fn entries_are_per_generation_and_dead_ones_are_reused() {
        let t = AlgSide::new(1);
        for i in 0..SIDE_SLOTS as u32 {
            t.with_entry(i, 1, true, |_, _| true, |e| e.skew[0].add(1, 1))
                .unwrap();
        }
        assert_eq!(
            t.with_entry(99, 1, true, |_, _| true, |_| ()),
            Err(SideFull)
        );
        assert!(t.get(0, 2).is_none());
        assert_eq!(t.get(0, 1).unwrap().skew[0].after, 1);
        // Connection 0 generation 1 is gone: its slot is taken by the next insert.
        t.with_entry(99, 1, true, |i, _| i != 0, |e| e.parent = None)
            .unwrap();
        assert!(t.get(0, 1).is_none());
        assert!(t.get(99, 1).is_some());
        assert_eq!(t.with_entry(7, 1, false, |_, _| true, |_| ()), Ok(None));
    }
}
