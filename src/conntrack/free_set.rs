//! The record pool's returned records, as a bitmap handed out in address order.
//!
//! The sweep returns records in bucket order, which is random in the pool; a stack gave
//! them back to the next creations in that order, so each creation wrote a record on a
//! random line (and at 10M connections a random page): one more cache and TLB miss per
//! creation than creations into never-used records, which go in ascending order. Here a
//! returned record is a bit, and a batch is taken as the next set bits from a cursor that
//! moves on through the pool (next fit), so recycled records are handed out ascending
//! too: neighbouring lines and pages, in the order the hardware prefetcher follows.
//! Where connections of one timeout come and go at a steady rate, they tend to expire in
//! the order they were created, so the cursor tends to follow the oldest around the pool
//! (not measured apart; the gain is in perf/RESULTS.md, session 12).
//!
//! One bit per record (1.25 MB at 10M), and one summary bit per word of them, so a scan
//! skips 4,096 taken records per summary word: a batch costs at most a pass over the
//! summary (2,442 words at 10M records), in practice a few words.

/// A set of record indices below a fixed capacity; not synchronised (the pool holds it
/// under its lock).
pub struct FreeSet {
    /// Bit `i % 64` of word `i / 64`: record `i` is in the set.
    words: Vec<u64>,
    /// Bit `w % 64` of word `w / 64`: `words[w]` is not zero.
    summary: Vec<u64>,
    /// The word the next scan starts at.
    cursor: usize,
    len: usize,
    capacity: usize,
}

impl FreeSet {
    /// An empty set for indices below `capacity`. The bitmaps are zeroed allocations,
    /// committed by the kernel as they are first written.
    pub fn new(capacity: usize) -> FreeSet {
        let n_words = capacity.div_ceil(64);
        FreeSet {
            words: vec![0; n_words],
            summary: vec![0; n_words.div_ceil(64)],
            cursor: 0,
            len: 0,
            capacity,
        }
    }

    /// Records in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `idx`; returns false (and changes nothing) when it is out of range or
    /// already in the set.
    pub fn insert(&mut self, idx: u32) -> bool {
        if idx as usize >= self.capacity {
            return false;
        }
        let (w, bit) = (idx as usize / 64, 1u64 << (idx % 64));
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        if *word & bit != 0 {
            return false;
        }
        if *word == 0 {
            self.summary[w / 64] |= 1 << (w % 64);
        }
        *word |= bit;
        self.len += 1;
        true
    }

    /// Removes up to `max` indices, the next ones in address order from the cursor's
    /// word (wrapping once around the pool), and appends them to `out` in descending order,
    /// so that popping `out` hands them out ascending. Returns how many it took.
    pub fn take_into(&mut self, out: &mut Vec<u32>, max: usize) -> usize {
        let start = out.len();
        let n_summary = self.summary.len();
        if n_summary == 0 {
            return 0;
        }
        let first = self.cursor / 64;
        // The summary word the scan starts in is visited twice: from the cursor's bit
        // first, and (after wrapping) below it.
        let mut mask = !0u64 << (self.cursor % 64);
        for s in first..=first + n_summary {
            if out.len() - start >= max || self.len == 0 {
                break;
            }
            let mut sw = self.summary[s % n_summary] & mask;
            while sw != 0 && out.len() - start < max {
                let w = (s % n_summary) * 64 + sw.trailing_zeros() as usize;
                let word = &mut self.words[w];
                while *word != 0 && out.len() - start < max {
                    let b = word.trailing_zeros();
                    *word &= *word - 1;
                    out.push((w * 64) as u32 + b);
                }
                if *word == 0 {
                    self.summary[w / 64] &= !(1 << (w % 64));
                    sw &= sw - 1;
                    self.cursor = w + 1;
                } else {
                    self.cursor = w;
                }
            }
            mask = !0;
        }
        if self.cursor >= self.words.len() {
            self.cursor = 0;
        }
        let took = out.len() - start;
        self.len -= took;
        out[start..].reverse();
        took
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(s: &mut FreeSet, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        s.take_into(&mut out, max);
        out.reverse();
        out
    }

    #[test]
    fn records_returned_in_random_order_are_handed_out_ascending() {
        let mut s = FreeSet::new(10_000);
        // A fixed permutation of 0..10_000 (multiplication by a unit mod 10,000).
        for i in 0..10_000u32 {
            assert!(s.insert((i * 7_919) % 10_000));
        }
        assert_eq!(s.len(), 10_000);
        let mut all = Vec::new();
        while !s.is_empty() {
            let got = take(&mut s, 32);
            assert!(!got.is_empty());
            all.extend(got);
        }
        assert_eq!(all, (0..10_000).collect::<Vec<u32>>());
    }

    #[test]
    fn a_batch_continues_after_the_last_one_and_wraps_around_the_pool() {
        let mut s = FreeSet::new(300_000);
        for i in [5, 70, 4_200, 150_000, 299_999] {
            s.insert(i);
        }
        assert_eq!(take(&mut s, 2), vec![5, 70]);
        // Returned behind the cursor: handed out after the ones ahead of it.
        s.insert(6);
        assert_eq!(take(&mut s, 3), vec![4_200, 150_000, 299_999]);
        assert_eq!(take(&mut s, 3), vec![6]);
        assert!(s.is_empty());
        assert_eq!(take(&mut s, 3), Vec::<u32>::new());
    }

    #[test]
    fn a_batch_may_stop_inside_a_word_and_the_next_resumes_in_that_word() {
        let mut s = FreeSet::new(192);
        for i in 60..68 {
            s.insert(i);
        }
        assert_eq!(take(&mut s, 3), vec![60, 61, 62]);
        // The cursor is a word: what came back into that word goes first.
        s.insert(0);
        s.insert(130);
        assert_eq!(take(&mut s, 10), vec![0, 63, 64, 65, 66, 67, 130]);
        assert!(s.is_empty());
    }

    #[test]
    fn an_index_in_the_set_or_out_of_range_is_not_added_twice() {
        let mut s = FreeSet::new(100);
        assert!(s.insert(99));
        assert!(!s.insert(99));
        assert!(!s.insert(100));
        assert!(!s.insert(128));
        assert_eq!(s.len(), 1);
        assert_eq!(take(&mut s, 5), vec![99]);
    }

    #[test]
    fn out_is_appended_to_in_descending_order() {
        let mut s = FreeSet::new(64);
        for i in [3, 9, 40] {
            s.insert(i);
        }
        let mut out = vec![1000];
        assert_eq!(s.take_into(&mut out, 8), 3);
        assert_eq!(out, vec![1000, 40, 9, 3]);
    }
}
