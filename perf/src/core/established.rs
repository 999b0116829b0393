//! `bench=established`: lookups of established connections, burst prefetch on and off,
//! one thread or several (flows shared or disjoint).

use super::measure::{anon_huge_kib, on_threads};
use super::track::{lookup_loop, warm_up, LoopStats};
use super::{tracker, Line, Plan, SEED, T0};
use crate::flow_frames::{established_mix, FrameBuf};
use crate::plot::Progress;

/// Established-lookup cases of one connection count: one table, every flow established,
/// measured with each thread count and prefetch on/off.
pub(super) fn established_cases(
    plan: &Plan,
    n: u32,
    prog: &mut Progress,
    out: &impl Fn(Line),
) -> Result<(), String> {
    prog.note(&format!("established conns={n}: warming up"));
    let ct = tracker(plan, n, plan.max_threads());
    let backing = ct.table().backing().name();
    let flows: Vec<u32> = (0..n).collect();
    warm_up(&ct, &flows, None, T0)?;
    prog.note(&format!(
        "established conns={n}: building the shuffled frame mix (AnonHugePages {} KiB)",
        anon_huge_kib()
    ));
    let all = established_mix(&flows, SEED);
    let mut base: [Option<f64>; 2] = [None, None];
    let mut threads = plan.threads.clone();
    threads.sort_unstable();
    for &t in &threads {
        let mut halves: Vec<FrameBuf> = Vec::new();
        for (prefetch, shared) in plan.established_cases(t) {
            let sharing = if t == 1 {
                ""
            } else if shared {
                "shared"
            } else {
                "disjoint"
            };
            prog.case(&format!(
                "established conns={n} threads={t} prefetch={} {sharing}",
                if prefetch { "on" } else { "off" }
            ));
            if t > 1 && !shared && halves.is_empty() {
                // Contiguous shares: the warm-up created the flows in order, so each
                // thread's records are contiguous in the pool too (no false sharing of
                // record cache lines between the threads, as when each worker creates its
                // own connections from its own pool cache batches).
                halves = (0..t)
                    .map(|i| {
                        let share = &flows[flows.len() * i / t..flows.len() * (i + 1) / t];
                        established_mix(share, SEED + i as u64)
                    })
                    .collect();
            }
            let created_before = ct.counters().created;
            let xcore = (t > 1).then(|| crate::xcore::Sampler::start(plan.xcore_every()));
            let res = on_threads(&plan.cores, t, |i| {
                let mut w = ct.worker(i);
                let (frames, start) = match (t, shared) {
                    (1, _) | (_, true) => (&all, all.len() * i / t),
                    _ => (&halves[i], 0),
                };
                lookup_loop(&mut w, frames, start, prefetch, T0, plan.dur(), None, None)
            });
            let xcore = xcore.and_then(crate::xcore::Sampler::finish);
            let pkts: u64 = res.iter().map(|r| r.pkts).sum();
            let est: u64 = res.iter().map(|r| r.est).sum();
            if est != pkts || ct.counters().created != created_before {
                return Err(format!(
                    "established conns={n} threads={t}: only {est} of {pkts} packets were \
                     established ({} connections created during the run)",
                    ct.counters().created - created_before
                ));
            }
            let mpps: f64 = res.iter().map(LoopStats::mpps).sum();
            prog.note(&format!(
                "measured {pkts} packets in {:.2} s",
                res.iter().map(|r| r.use_.wall).fold(0.0, f64::max)
            ));
            let mut l = Line::new("established")
                .i("conns", n as u64)
                .i("threads", t as u64)
                .s("prefetch", if prefetch { "on" } else { "off" });
            if t > 1 {
                l = l.s("flows", sharing);
            }
            l = l.f("mpps", mpps, 2).f(
                "oncpu_mpps",
                res.iter().map(LoopStats::oncpu_mpps).sum::<f64>(),
                2,
            );
            let preempted: u64 = res.iter().map(|r| r.use_.preempted).sum();
            if t == 1 {
                base[prefetch as usize] = Some(mpps);
            } else {
                let min = res.iter().map(LoopStats::mpps).fold(f64::MAX, f64::min);
                l = l
                    .f("per_thread", mpps / t as f64, 2)
                    .f("per_thread_min", min, 2);
                if let Some(b) = base[prefetch as usize] {
                    l = l.f("scaling", mpps / b, 2);
                }
                l = l.xcore(xcore);
            }
            out(l.i("preempted", preempted).s("backing", backing));
        }
    }
    Ok(())
}
