//! A lock-free token bucket: the rate limit of the ICMP errors about MTU (fragmentation
//! needed, packet too big) an interface sends, as Linux's `icmp_msgs_per_sec` /
//! `icmp_msgs_burst`.
//!
//! # Invariants
//!
//! * The whole state is one 64-bit word (the time of the last refill in ms, 40 bits; the
//!   tokens in thousandths, 24 bits), changed by one compare-and-swap: any worker may take
//!   from the bucket without a lock, and no update is lost.
//! * Tokens grow by `rate` thousandths per millisecond (`rate` per second) up to `burst`
//!   whole tokens; one message takes a whole token. A bucket starts full.
//! * Only the slow path (a packet that does not fit its output port) takes from it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Milli-tokens fit in the low 24 bits: `burst` is at most 16,777 whole tokens.
const TOKEN_BITS: u32 = 24;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
/// One message's cost, in milli-tokens.
const COST: u64 = 1000;
/// The largest `burst` the word holds.
pub const MAX_BURST: u32 = (TOKEN_MASK / COST) as u32;
/// "Never refilled": the first take fills the bucket.
const FRESH: u64 = u64::MAX;

/// One interface's bucket.
#[derive(Debug)]
pub struct TokenBucket(AtomicU64);

impl Default for TokenBucket {
    fn default() -> Self {
        TokenBucket(AtomicU64::new(FRESH))
    }
}

impl TokenBucket {
    /// Takes one token at time `now_ms` from a bucket refilled at `rate` tokens per
    /// second up to `burst`: true when there was one (send), false when the bucket is
    /// empty (rate-limited). `rate == 0` never sends.
    pub fn take(&self, now_ms: u64, rate: u32, burst: u32) -> bool {
        if rate == 0 || burst == 0 {
            return false;
        }
        let cap = u64::from(burst.min(MAX_BURST)) * COST;
        let now = now_ms & (u64::MAX >> TOKEN_BITS);
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let tokens = if cur == FRESH {
                cap
            } else {
                let (last, have) = (cur >> TOKEN_BITS, cur & TOKEN_MASK);
                let gained = now.saturating_sub(last).saturating_mul(u64::from(rate));
                have.saturating_add(gained).min(cap)
            };
            let (ok, left) = match tokens.checked_sub(COST) {
                Some(l) => (true, l),
                None => (false, tokens),
            };
            let next = (now << TOKEN_BITS) | left;
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return ok,
                Err(c) => cur = c,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(b: &TokenBucket, now: u64, rate: u32, burst: u32, n: usize) -> usize {
        (0..n).filter(|_| b.take(now, rate, burst)).count()
    }

    #[test]
    fn a_full_bucket_sends_its_burst_then_refills_at_the_rate() {
        let b = TokenBucket::default();
        assert_eq!(sent(&b, 1000, 100, 5, 20), 5, "the burst");
        assert_eq!(sent(&b, 1000, 100, 5, 20), 0, "empty within the same ms");
        // 100/s: one token per 10 ms.
        assert_eq!(sent(&b, 1009, 100, 5, 20), 0);
        assert_eq!(sent(&b, 1010, 100, 5, 20), 1);
        assert_eq!(
            sent(&b, 1035, 100, 5, 20),
            2,
            "25 ms: 2.5 tokens, two whole"
        );
        assert_eq!(sent(&b, 1040, 100, 5, 20), 1, "the half token kept");
        // A long pause refills only up to the burst.
        assert_eq!(sent(&b, 100_000, 100, 5, 20), 5);
    }

    #[test]
    fn rate_zero_never_sends_and_a_huge_burst_is_capped() {
        let b = TokenBucket::default();
        assert_eq!(sent(&b, 5, 0, 50, 10), 0);
        let b = TokenBucket::default();
        assert_eq!(
            sent(&b, 5, 1, 1_000_000, 20_000),
            MAX_BURST as usize,
            "the burst is capped at what the word holds"
        );
    }

    #[test]
    fn over_a_second_the_long_run_rate_is_kept() {
        let b = TokenBucket::default();
        // 1000 tries per ms for one second at 1000/s, burst 50: 50 + 1000 sent.
        let mut n = 0;
        for ms in 0..=1000u64 {
            n += sent(&b, 10_000 + ms, 1000, 50, 1000);
        }
        assert_eq!(n, 50 + 1000);
    }

    #[test]
    fn workers_sharing_a_bucket_never_take_more_than_it_has() {
        let b = std::sync::Arc::new(TokenBucket::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || sent(&b, 7, 10, 40, 1000))
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 40);
    }
}
