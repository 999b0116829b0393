//! `bench=memory`: bytes per connection, from the process's resident memory before and
//! after creating the connections.

use ctgate::conntrack::CtState;

use super::measure::rss_bytes;
use super::track::{counters_str, track_all};
use super::{tracker, Line, Plan, T0};
use crate::flow_frames::FrameBuf;

pub(super) fn memory_case(plan: &Plan, n: u32, firsts: &FrameBuf) -> Result<Line, String> {
    let before = rss_bytes()?;
    let ct = tracker(plan, n, 1);
    let empty = rss_bytes()?;
    let mut w = ct.worker(0);
    let created = track_all(&mut w, firsts, 0..firsts.len(), T0, CtState::NEW);
    let after = rss_bytes()?;
    if created != n as u64 || ct.n_conns() != n {
        return Err(format!(
            "memory: created {created} of {n} connections ({} in the table; counters: {})",
            ct.n_conns(),
            counters_str(&ct)
        ));
    }
    let buckets = ct.table().n_buckets() as u64;
    let backing = ct.table().backing().name();
    drop(w);
    drop(ct);
    Ok(Line::new("memory")
        .i("conns", n as u64)
        .f(
            "bytes_per_conn",
            after.saturating_sub(before) as f64 / n as f64,
            1,
        )
        .i("fixed_kib", empty.saturating_sub(before) / 1024)
        .i("buckets", buckets)
        .s("backing", backing))
}
