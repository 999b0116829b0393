//! `bench=sweep`: lookups on one core while the control handle sweeps the whole table on
//! the other in bounded steps; the lookups' rate and burst-latency tail, alone and during
//! the sweep, and the sweep's pass time and longest step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::measure::Meter;
use super::track::{lookup_loop, warm_up};
use super::{tracker, Line, Plan, SEED, SWEEP_STEP, T0};
use crate::flow_frames::established_mix;
use crate::plot::Progress;

/// Lookups on one core while the control handle sweeps the table on the other.
/// `half`: half the connections have expired and the pass removes them; the lookups go to
/// the other half. Otherwise nothing has expired and passes repeat for the case's time.
pub(super) fn sweep_case(plan: &Plan, n: u32, half: bool, prog: &Progress) -> Result<Line, String> {
    let ct = tracker(plan, n, 1);
    // TCP established connections live 86,400 s: T1 is beyond that, so at T1 everything
    // warmed up at T0 has expired and everything warmed up at T1 has not.
    const T1: u64 = T0 + 100_000_000;
    let (lookup_flows, now) = if half {
        let even: Vec<u32> = (0..n).filter(|i| i % 2 == 0).collect();
        let odd: Vec<u32> = (0..n).filter(|i| i % 2 == 1).collect();
        prog.note(&format!("sweep conns={n}: warming up (half expiring)"));
        warm_up(&ct, &even, None, T0)?;
        warm_up(&ct, &odd, None, T1)?;
        (odd, T1)
    } else {
        prog.note(&format!("sweep conns={n}: warming up"));
        let all: Vec<u32> = (0..n).collect();
        warm_up(&ct, &all, None, T0)?;
        (all, T0)
    };
    let frames = established_mix(&lookup_flows, SEED);
    let new_hist = || Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
    let core = |i: usize| plan.cores.get(i % plan.cores.len().max(1)).copied();

    // Alone.
    let mut h_alone = new_hist();
    let alone = std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(c) = core(0) {
                core_affinity::set_for_current(c);
            }
            let mut w = ct.worker(0);
            lookup_loop(
                &mut w,
                &frames,
                0,
                true,
                now,
                plan.dur(),
                None,
                Some(&mut h_alone),
            )
        })
        .join()
        .expect("lookup thread")
    });

    // During the sweep.
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    let mut h_during = new_hist();
    let mut h_step = new_hist();
    let n_buckets = ct.table().n_buckets();
    let (during, (passes, pass_secs, removed, sweep_preempted)) = std::thread::scope(|s| {
        let lookups = s.spawn(|| {
            if let Some(c) = core(0) {
                core_affinity::set_for_current(c);
            }
            let mut w = ct.worker(0);
            barrier.wait();
            lookup_loop(
                &mut w,
                &frames,
                frames.len() / 2,
                true,
                now,
                Duration::MAX,
                Some(&stop),
                Some(&mut h_during),
            )
        });
        let sweeper = s.spawn(|| {
            if let Some(c) = core(1) {
                core_affinity::set_for_current(c);
            }
            let mut w = ct.control_handle();
            barrier.wait();
            let meter = Meter::start();
            let t0 = Instant::now();
            let (mut passes, mut removed, mut visited) = (0u32, 0usize, 0usize);
            loop {
                let ts = Instant::now();
                let rep = w.sweep_expired(now, SWEEP_STEP);
                h_step.saturating_record(ts.elapsed().as_nanos() as u64);
                removed += rep.removed;
                visited += rep.buckets;
                if visited >= n_buckets * (passes as usize + 1) {
                    passes += 1;
                    // One pass when it removes; otherwise repeat passes for the case's time.
                    if half || t0.elapsed() >= plan.dur() {
                        break;
                    }
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            (passes, secs, removed, meter.stop().preempted)
        });
        let d = lookups.join().expect("lookup thread");
        (d, sweeper.join().expect("sweep thread"))
    });
    let want_removed = if half { n as usize / 2 } else { 0 };
    if removed != want_removed || during.est != during.pkts || alone.est != alone.pkts {
        return Err(format!(
            "sweep conns={n}: removed {removed} (want {want_removed}); established \
             {} of {} alone, {} of {} during the sweep",
            alone.est, alone.pkts, during.est, during.pkts
        ));
    }
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    Ok(Line::new("sweep")
        .i("conns", n as u64)
        .s("expired", if half { "half" } else { "none" })
        .f("mpps_alone", alone.mpps(), 2)
        .f("mpps_during_sweep", during.mpps(), 2)
        .f("oncpu_mpps_alone", alone.oncpu_mpps(), 2)
        .f("oncpu_mpps_during_sweep", during.oncpu_mpps(), 2)
        .f("sweep_ms", pass_secs * 1e3 / passes as f64, 1)
        .i("passes", passes as u64)
        .i("removed", removed as u64)
        .i("step_buckets", SWEEP_STEP as u64)
        .f("max_step_us", us(&h_step, 1.0), 1)
        .f("p999_burst_us_alone", us(&h_alone, 0.999), 2)
        .f("p999_burst_us_during", us(&h_during, 0.999), 2)
        .f("max_burst_us_alone", us(&h_alone, 1.0), 1)
        .f("max_burst_us_during", us(&h_during, 1.0), 1)
        .i("preempted_alone", alone.use_.preempted)
        .i("preempted_during", during.use_.preempted)
        .i("preempted_sweeper", sweep_preempted))
}
