//! The latency recorder: TSC ticks in, an HDR histogram of nanoseconds out.

use hdrhistogram::Histogram;

/// Largest latency recorded exactly: one hour (larger values count as this).
const MAX_NS: u64 = 3_600_000_000_000;

/// Latencies in nanoseconds (3 significant digits).
pub struct Latency {
    hist: Histogram<u64>,
    /// ns = ticks × mult >> 32 (rounded).
    mult: u128,
}

/// What a run reports of its latencies, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    /// A recorder for a TSC of `tsc_hz` ticks per second (`tsc_hz > 0`).
    pub fn new(tsc_hz: u64) -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds"),
            mult: (1_000_000_000u128 << 32) / u128::from(tsc_hz.max(1)),
        }
    }

    /// Records a latency of `ticks` TSC ticks.
    #[inline]
    pub fn record_ticks(&mut self, ticks: u64) {
        self.record_ns(((u128::from(ticks) * self.mult + (1 << 31)) >> 32) as u64);
    }

    /// Records a latency of `ns` nanoseconds (values above an hour count as an hour).
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.min(MAX_NS));
    }

    /// Forgets everything recorded (the end of the warmup).
    pub fn reset(&mut self) {
        self.hist.reset();
    }

    /// Count, min, median, 99th, 99.9th percentile and max (all 0 when empty).
    pub fn summary(&self) -> Summary {
        if self.hist.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.hist.len(),
            min: self.hist.min(),
            p50: self.hist.value_at_quantile(0.5),
            p99: self.hist.value_at_quantile(0.99),
            p999: self.hist.value_at_quantile(0.999),
            max: self.hist.max(),
        }
    }

    /// (percentile, microseconds) at 50, 90, 99, 99.9, 99.99 and 99.999, for a
    /// percentile plot on a "nines" axis (100 would lie at infinity there).
    pub fn curve(&self) -> Vec<(f64, f64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .iter()
            .map(|&p| (p, self.hist.value_at_percentile(p) as f64 / 1000.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_exactly_what_it_is_given() {
        let mut l = Latency::new(1_000_000_000);
        assert_eq!(l.summary(), Summary::default());
        // 1..=1000 µs, one each: with 3 significant digits every value is exact to 0.1%.
        for us in 1..=1000u64 {
            l.record_ns(us * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min, 1000);
        assert!(l.hist.equivalent(s.max, 1_000_000), "{s:?}");
        assert!(l.hist.equivalent(s.p50, 500_000), "{s:?}");
        assert!(l.hist.equivalent(s.p99, 990_000), "{s:?}");
        assert!(l.hist.equivalent(s.p999, 999_000), "{s:?}");
        assert!(s.min <= s.p50 && s.p50 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
        let c = l.curve();
        assert_eq!(c.len(), 6);
        assert_eq!(c[0], (50.0, s.p50 as f64 / 1000.0));
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        l.reset();
        assert_eq!(l.summary().count, 0);
    }

    #[test]
    fn ticks_are_converted_with_the_tsc_rate() {
        // 2.5 GHz: 2500 ticks are 1 µs.
        let mut l = Latency::new(2_500_000_000);
        l.record_ticks(2500);
        l.record_ticks(0);
        l.record_ticks(u64::MAX / 4); // saturates at an hour, no panic
        let s = l.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.min, 0);
        assert!(l.hist.equivalent(s.p50, 1000), "{s:?}");
        assert!(l.hist.equivalent(s.max, MAX_NS), "{s:?}");
    }
}
