//! `bench=create`: new connections per second into fresh tables and refilled ones
//! (records recycled after a sweep), on one or more threads sharing one table.

use std::time::Instant;

use ctgate::conntrack::{Conntrack, CtState};

use super::measure::{on_threads, Meter, SpinGate, Usage};
use super::track::{counters_str, track_all};
use super::{tracker, Line, Plan, T0};
use crate::flow_frames::FrameBuf;

/// Creates the flows `0..n` split in `t` contiguous shares, one per thread, at `now`.
/// Returns the wall seconds and, per thread, its connections and usage.
fn fill(
    plan: &Plan,
    ct: &Conntrack,
    firsts: &FrameBuf,
    n: u32,
    t: usize,
    now: u64,
) -> Result<(f64, Vec<(u64, Usage)>), String> {
    let before = ct.n_conns();
    let gate = SpinGate::new(t);
    let res = on_threads(&plan.cores, t, |i| {
        let lo = n as usize * i / t;
        let hi = n as usize * (i + 1) / t;
        let mut w = ct.worker(i);
        let meter = Meter::start();
        // The wall time runs from the first start to the last end: start together.
        gate.wait();
        let t0 = Instant::now();
        let created = track_all(&mut w, firsts, lo..hi, now, CtState::NEW);
        let t1 = Instant::now();
        (t0, t1, created, (hi - lo) as u64, meter.stop())
    });
    let created: u64 = res.iter().map(|r| r.2).sum();
    if created != n as u64 || ct.n_conns() - before != n {
        return Err(format!(
            "create: {created} of {n} created ({} in the table; counters: {})",
            ct.n_conns(),
            counters_str(ct)
        ));
    }
    let start = res.iter().map(|r| r.0).min().expect("threads");
    let end = res.iter().map(|r| r.1).max().expect("threads");
    let per = res.iter().map(|r| (r.3, r.4)).collect();
    Ok(((end - start).as_secs_f64(), per))
}

/// New connections per second: fresh tables, filled again after a sweep, repeated until
/// the case's time is used. `base` is the one-thread (fresh, refill) rates.
pub(super) fn create_case(
    plan: &Plan,
    n: u32,
    t: usize,
    firsts: &FrameBuf,
    base: Option<(f64, f64)>,
) -> Result<(Line, (f64, f64)), String> {
    let (mut wall, mut rewall, mut swall) = (0.0, 0.0, 0.0);
    // Per thread and phase (fresh, refill): connections, wall and CPU seconds.
    let mut per = vec![[(0u64, 0.0f64, 0.0f64); 2]; t];
    let mut reps = 0u32;
    let mut preempted = 0u64;
    let mut backing = "";
    let case_start = Instant::now();
    let xcore = (t > 1).then(|| crate::xcore::Sampler::start(plan.xcore_every()));
    while reps == 0 || case_start.elapsed().as_secs_f64() < plan.secs {
        let ct = tracker(plan, n, t);
        backing = ct.table().backing().name();
        let (w, p) = fill(plan, &ct, firsts, n, t, T0)?;
        // Everything expires: the sweep removes all, the refill recycles the records.
        let later = T0 + 1_000_000_000;
        let s0 = Instant::now();
        let rep = ct.control_handle().sweep_all(later);
        swall += s0.elapsed().as_secs_f64();
        if rep.removed != n as usize || ct.n_conns() != 0 {
            return Err(format!(
                "create: the sweep removed {} of {n} ({} left)",
                rep.removed,
                ct.n_conns()
            ));
        }
        let (rw, rp) = fill(plan, &ct, firsts, n, t, later + 1)?;
        wall += w;
        rewall += rw;
        for (i, acc) in per.iter_mut().enumerate() {
            for (phase, res) in [&p, &rp].into_iter().enumerate() {
                let (conns, u) = res[i];
                acc[phase].0 += conns;
                acc[phase].1 += u.wall;
                acc[phase].2 += u.cpu;
                preempted += u.preempted;
            }
        }
        reps += 1;
    }
    let total = n as f64 * reps as f64;
    let (rate, rerate) = (total / wall, total / rewall);
    // Per-thread rates over wall time and over the thread's CPU time, summed over threads.
    let sum = |phase: usize, cpu: bool| -> f64 {
        per.iter()
            .map(|a| a[phase].0 as f64 / if cpu { a[phase].2 } else { a[phase].1 })
            .sum()
    };
    let mut l = Line::new("create")
        .i("conns", n as u64)
        .i("threads", t as u64)
        .i("conns_per_s", rate as u64)
        .i("refill_conns_per_s", rerate as u64)
        .i("oncpu_conns_per_s", sum(0, true) as u64)
        .i("oncpu_refill_conns_per_s", sum(1, true) as u64);
    if t > 1 {
        l = l
            .i("per_thread", (sum(0, false) / t as f64) as u64)
            .i("refill_per_thread", (sum(1, false) / t as f64) as u64);
        if let Some((b, rb)) = base {
            l = l
                .f("scaling", rate / b, 2)
                .f("refill_scaling", rerate / rb, 2);
        }
        // The threads share the table's lines: what moving one between their CPUs cost
        // during the case (`crate::xcore`).
        l = l.xcore(xcore.and_then(crate::xcore::Sampler::finish));
    } else {
        l = l.i("sweep_removed_per_s", (total / swall) as u64);
    }
    Ok((
        l.i("reps", reps as u64)
            .i("preempted", preempted)
            .s("backing", backing),
        (rate, rerate),
    ))
}
