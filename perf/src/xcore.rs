//! How long a cache line takes to move between the two CPUs the benchmarks use, sampled
//! during a run and printed on its line (`xcore_ns`), so that a figure says which state
//! of the machine it was made in.
//!
//! On the development VM that time is not a constant: a line moves between its two
//! vCPUs in ~26–33 ns, ~160–175 ns or ~350–540 ns, each for seconds to minutes, loaded
//! or idle (the host, it seems, runs the two vCPUs on one core complex or apart). Whatever
//! crosses between the cores per packet (the generator's rings or memif buffers, two
//! threads' shared buckets) then costs several times as much: the same ctgate binary
//! forwarded 3.7–5.8 Mpps at 1M flows through memif in compare-ovs runs at ~170 ns and
//! 6.7–7.4 Mpps in runs at ~30 ns (perf/RESULTS.md, session 28).
//!
//! The probe: a thread on each CPU passing a counter on one cache line back and forth,
//! in batches; the median batch's time per one-way pass. A batch that a context switch
//! interrupted is an outlier the median ignores. During a run ([`Sampler`]) each probe
//! thread took 0.03–4.3 ms of its CPU from the run's thread there per sample (one a
//! second; `datapath`, measured with the threads' schedstat), most of it waiting for its
//! partner to be scheduled, which is why a thread whose partner does not answer yields.
//! Now and then most of a sample's batches are interrupted and the sample is far off
//! (949 and 9,163 ns seen among 155–190); the state can change within a run too, so a
//! run's figure is the median of its samples.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Round trips per batch (12–200 µs a batch at 30–500 ns a pass): enough to tell the
/// states apart, short so that sampling during a run takes little from it.
const ROUND_TRIPS: u64 = 200;
/// Batches; the median is taken.
const BATCHES: usize = 7;
/// The probe gives up (no figure) when a batch takes longer than this: the other CPU is
/// not running the responder (e.g. a real-time thread holds it).
const PATIENCE: Duration = Duration::from_millis(200);
/// Spins (tens of microseconds; a pass takes under one) after which a probe thread whose
/// partner is not answering gives its CPU back to the run's thread there (`sched_yield`)
/// rather than spin through the partner's wait for its own CPU.
const IDLE_SPINS: u32 = 4096;

#[repr(align(128))]
struct Line(AtomicU64);

/// The one-way time of a cache line between CPUs `a` and `b` in ns (the median of seven
/// batches of 200 round trips), or `None` when either CPU does not exist or the
/// responder on `b` did not answer within a batch's patience (200 ms).
pub fn transfer_ns(a: usize, b: usize) -> Option<f64> {
    // A CPU set holds 1,024 (`core_affinity` panics past it).
    if a == b || a.max(b) >= 1024 {
        return None;
    }
    // Not `core_affinity::get_core_ids`: it lists the calling thread's own CPUs, and a
    // benchmark's main thread is pinned to one. Pinning to a CPU that is not there fails.
    let (ca, cb) = (
        core_affinity::CoreId { id: a },
        core_affinity::CoreId { id: b },
    );
    let line = Line(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let ready = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The responder: answers each odd value with the next even one.
        s.spawn(|| {
            if !core_affinity::set_for_current(cb) {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            ready.store(true, Ordering::Release);
            let (mut want, mut spins) = (1u64, 0u32);
            while !stop.load(Ordering::Relaxed) {
                if line.0.load(Ordering::Acquire) == want {
                    line.0.store(want + 1, Ordering::Release);
                    want += 2;
                    spins = 0;
                } else {
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(IDLE_SPINS) {
                        std::thread::yield_now();
                    }
                }
                std::hint::spin_loop();
            }
        });
        let measured = s
            .spawn(|| {
                if !core_affinity::set_for_current(ca) {
                    return None;
                }
                // The responder pinned (or failed to be: then `stop`).
                while !ready.load(Ordering::Acquire) {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::yield_now();
                }
                let mut batches = Vec::with_capacity(BATCHES);
                let mut v = 0u64;
                for _ in 0..BATCHES {
                    let t0 = Instant::now();
                    for _ in 0..ROUND_TRIPS {
                        line.0.store(v + 1, Ordering::Release);
                        let mut spins = 0u32;
                        while line.0.load(Ordering::Acquire) != v + 2 {
                            spins = spins.wrapping_add(1);
                            // The clock only now and then: reading it costs about what
                            // is measured.
                            if spins.is_multiple_of(IDLE_SPINS) {
                                if stop.load(Ordering::Relaxed) || t0.elapsed() > PATIENCE {
                                    return None;
                                }
                                std::thread::yield_now();
                            }
                            std::hint::spin_loop();
                        }
                        v += 2;
                    }
                    batches.push(t0.elapsed().as_secs_f64() * 1e9 / (2 * ROUND_TRIPS) as f64);
                }
                batches.sort_by(f64::total_cmp);
                Some(batches[BATCHES / 2])
            })
            .join()
            .ok()
            .flatten();
        stop.store(true, Ordering::Relaxed);
        measured
    })
}

/// A figure as the result lines print it: whole ns, or `-` when there is none.
pub fn printed(ns: Option<f64>) -> String {
    ns.map_or("-".to_string(), |ns| format!("{ns:.0}"))
}

/// [`transfer_ns`] between CPUs 0 and 1 sampled every `every` on a thread of its own
/// while a run goes on.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<f64>>>,
}

impl Sampler {
    /// Starts sampling; the first sample is taken `every` after the start.
    pub fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xcore".into())
            .spawn(move || {
                let mut samples = Vec::new();
                let mut next = Instant::now() + every;
                // Asleep between samples (woken early by `finish`): a thread that woke
                // often would itself preempt the run's threads.
                while !seen.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= next {
                        samples.extend(transfer_ns(0, 1));
                        next = Instant::now() + every;
                    } else {
                        std::thread::park_timeout(next - now);
                    }
                }
                samples
            })
            .ok();
        Sampler { stop, thread }
    }

    /// Stops sampling: the median of the samples (of an even count the upper middle one),
    /// or `None` without any.
    pub fn finish(mut self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take()?;
        thread.thread().unpark();
        median_sample(thread.join().ok()?)
    }
}

/// The median of `samples`; of an even count the upper middle one, not the mean of the
/// two: a figure between two states would name neither.
fn median_sample(mut samples: Vec<f64>) -> Option<f64> {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied()
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_one_cpu_still_measures_between_two() {
        let ns = std::thread::spawn(|| {
            assert!(core_affinity::set_for_current(core_affinity::CoreId {
                id: 0
            }));
            transfer_ns(0, 1)
        })
        .join()
        .expect("the pinned thread");
        assert!(ns.is_some_and(|ns| ns >= 1.0), "{ns:?}");
    }

    #[test]
    fn a_runs_figure_is_one_of_its_samples_never_a_mean_of_two_states() {
        assert_eq!(median_sample(vec![30.0, 170.0]), Some(170.0));
        assert_eq!(median_sample(vec![170.0, 30.0, 31.0]), Some(31.0));
        assert_eq!(median_sample(vec![450.0, 30.0, 170.0, 31.0]), Some(170.0));
        assert_eq!(median_sample(Vec::new()), None);
    }

    #[test]
    fn a_sampler_gives_a_figure_once_it_sampled_and_none_before_its_first_sample() {
        let s = Sampler::start(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(200));
        assert!(s.finish().is_some_and(|ns| ns >= 1.0));
        // Stopped before its first sample.
        assert_eq!(Sampler::start(Duration::from_secs(60)).finish(), None);
    }

    #[test]
    fn a_cpu_that_does_not_exist_gives_no_figure() {
        assert_eq!(transfer_ns(0, usize::MAX), None);
        assert_eq!(transfer_ns(0, 1023), None);
        assert_eq!(transfer_ns(0, 0), None);
    }

    #[test]
    fn cpus_0_and_1_give_a_figure_of_a_line_transfer() {
        // The benchmarks need the two CPUs; so does this test.
        let ns = transfer_ns(0, 1).expect("a figure between CPUs 0 and 1");
        // More than a cache hit, less than a batch's patience.
        assert!(ns > 1.0 && ns < 100_000.0, "{ns}");
        let line: f64 = printed(Some(ns)).parse().expect("whole ns on the line");
        assert!(line >= 1.0, "{line}");
        assert_eq!(printed(None), "-");
        assert_eq!(printed(Some(26.6)), "27");
    }
}
