//! `bench=refuse`: new connections refused at the limit of a table full of live ones (a
//! flood at the limit): how many refused packets per second one thread gets through.
//!
//! The first half of the flows fill the table to its limit (`maxconns` = half), then the
//! second half are offered again and again with the clock moving one millisecond per
//! 1,000 packets, or per pass over the second half when it is smaller (a flood of about
//! 1 Mpps per worker, in the clock's eyes); nothing expires in the window (the clock
//! moves at most 20 s, less than every first-packet timeout), so every one is refused.

use std::time::Instant;

use ctgate::conntrack::CtState;

use super::track::{counters_str, track_all};
use super::{tracker, Line, Plan, T0};
use crate::flow_frames::FrameBuf;

/// Packets per millisecond of the clock.
const PER_MS: usize = 1_000;
/// The clock's advance at most (ms): below every first-packet timeout (30 s).
const MAX_MS: u64 = 20_000;

pub(super) fn refuse_case(plan: &Plan, n: u32, firsts: &FrameBuf) -> Result<Line, String> {
    let half = (n / 2).max(1);
    let ct = tracker(plan, n, 1);
    ct.set_max_conns(half)?;
    let mut w = ct.worker(0);
    let made = track_all(&mut w, firsts, 0..half as usize, T0, CtState::NEW);
    if made != u64::from(half) || ct.n_conns() != half {
        return Err(format!(
            "refuse: {made} of {half} created ({})",
            counters_str(&ct)
        ));
    }
    let rest = half as usize..firsts.len();
    let (mut offered, mut ms) = (0u64, 0u64);
    let t0 = Instant::now();
    'run: while t0.elapsed() < plan.dur() {
        let mut i = rest.start;
        while i < rest.end {
            let end = (i + PER_MS).min(rest.end);
            ms += 1;
            if track_all(&mut w, firsts, i..end, T0 + ms, 0) != 0 {
                return Err(format!(
                    "refuse: a creation past the limit ({})",
                    counters_str(&ct)
                ));
            }
            offered += (end - i) as u64;
            i = end;
            if ms >= MAX_MS {
                break 'run;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let c = ct.counters();
    if c.refused_max_conns != offered || c.reclaimed != 0 {
        return Err(format!(
            "refuse: {offered} offered, {} refused ({})",
            c.refused_max_conns,
            counters_str(&ct)
        ));
    }
    Ok(Line::new("refuse")
        .i("conns", u64::from(half))
        .i("refused", offered)
        .f("mpps", offered as f64 / secs / 1e6, 2)
        .f("ns_per_refusal", secs * 1e9 / offered as f64, 0)
        .s("backing", ct.table().backing().name()))
}
