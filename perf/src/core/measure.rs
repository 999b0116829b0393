//! Measuring the calling thread on a shared machine: wall time, its own CPU time and
//! involuntary context switches ([`Meter`], [`Usage`]), threads pinned to cores and
//! released together ([`on_threads`], [`SpinGate`]), and the process's memory from
//! `/proc`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use core_affinity::CoreId;

/// Runs `f(t)` on `n` threads pinned to cores in order, all released together.
pub(super) fn on_threads<R: Send>(
    cores: &[CoreId],
    n: usize,
    f: impl Fn(usize) -> R + Sync,
) -> Vec<R> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                let core = (!cores.is_empty()).then(|| cores[t % cores.len()]);
                s.spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    barrier.wait();
                    f(t)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    })
}

/// A start line for threads that measure one short task together: each [`SpinGate::wait`]
/// spins until all have arrived, so they leave within a few hundred nanoseconds of each
/// other. [`on_threads`]'s barrier sleeps in the kernel and wakes its threads tens of
/// microseconds apart, which is most of a 1k-connection fill (~0.2 ms): a wall time from
/// the first thread's start to the last one's end then measured the wake-up, not the work.
pub(super) struct SpinGate {
    arrived: AtomicUsize,
    n: usize,
}

impl SpinGate {
    pub(super) fn new(n: usize) -> SpinGate {
        SpinGate {
            arrived: AtomicUsize::new(0),
            n,
        }
    }

    /// Arrives and spins until all `n` threads have.
    pub(super) fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < self.n {
            std::hint::spin_loop();
        }
    }
}

/// The number in the line `key: N [kB]` of the `/proc` file `path`.
fn proc_field(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

/// Involuntary context switches of the calling thread so far (0 if unknown). A measuring
/// thread that was preempted (by other processes on this shared machine) shows it here.
fn preemptions() -> u64 {
    proc_field("/proc/thread-self/status", "nonvoluntary_ctxt_switches").unwrap_or(0)
}

/// CPU time of the calling thread, in seconds (0 if the clock reads zero).
fn thread_cpu_secs() -> f64 {
    crate::step::thread_cpu_secs().unwrap_or(0.0)
}

/// Wall time, CPU time and involuntary context switches of the calling thread over a
/// measurement. On this shared 2-core machine another process sometimes runs on a
/// measuring thread's core; the CPU time and the preemption count show how much.
#[derive(Clone, Copy, Default)]
pub(super) struct Usage {
    pub(super) wall: f64,
    pub(super) cpu: f64,
    pub(super) preempted: u64,
}

/// Starts measuring the calling thread.
pub(super) struct Meter {
    t0: Instant,
    cpu0: f64,
    p0: u64,
}

impl Meter {
    pub(super) fn start() -> Meter {
        Meter {
            p0: preemptions(),
            cpu0: thread_cpu_secs(),
            t0: Instant::now(),
        }
    }

    pub(super) fn stop(&self) -> Usage {
        let wall = self.t0.elapsed().as_secs_f64();
        Usage {
            wall,
            cpu: thread_cpu_secs() - self.cpu0,
            preempted: preemptions() - self.p0,
        }
    }
}

/// Resident memory of the process, in bytes: `VmRSS` of `/proc/self/status` plus
/// `HugetlbPages` (the hugetlb pages it has touched, which `VmRSS` leaves out: without
/// them a tracker on `--pages huge` would look nearly free).
pub(super) fn rss_bytes() -> Result<u64, String> {
    let rss = proc_field("/proc/self/status", "VmRSS")
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_string())?;
    let huge = proc_field("/proc/self/status", "HugetlbPages").unwrap_or(0);
    Ok((rss + huge) * 1024)
}

/// Anonymous memory in huge pages (`AnonHugePages` of `/proc/self/smaps_rollup`), in KiB.
pub(super) fn anon_huge_kib() -> u64 {
    proc_field("/proc/self/smaps_rollup", "AnonHugePages").unwrap_or(0)
}
