//! What every command works with: the [`ControlContext`] it runs against (tracker, sweep
//! interval, the gateway's [`GatewayInfo`]), what executing gives ([`Outcome`], a
//! streamed [`Job`] stepped a bounded number of buckets at a time), the bounded table
//! walk the streamed commands share, and the small reply helpers.

use crate::conntrack::{ConnSnapshot, Conntrack};
use crate::pipeline::gateway::GatewayShared;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// What the gateway tells about itself, for `show`, `stats` and `version`. The gateway
/// implements it over its ports and workers; tests use a fake.
pub trait GatewayInfo {
    /// `show`: ports, lcores, queues, uptime. Full text, ending with a newline.
    fn show(&self) -> String;
    /// `stats`: per-port and per-worker counters and drop reasons. Full text, ending
    /// with a newline; the tracker's counters are appended after it.
    fn stats(&self) -> String;
    /// More version lines for `version` (e.g. the DPDK version), ending with a newline.
    fn version_extra(&self) -> Option<String> {
        None
    }
    /// The configuration in force, for `reload` (a gateway has one).
    fn live(&self) -> Option<&dyn LiveConfig> {
        None
    }
    /// `sync-status`: the sync peers and counters, when `[sync]` is configured.
    fn sync_status(&self) -> Option<String> {
        None
    }
}

/// The gateway's configuration in force, as the commands see it.
pub trait LiveConfig {
    /// Reads `file` (default: the file in force), validates it and swaps it in. Returns
    /// the report lines and the version now in force; on an error nothing changed.
    fn reload(
        &self,
        file: Option<&str>,
        ctx: &ControlContext,
    ) -> Result<(String, Arc<GatewayShared>), String>;
    /// Stops answering for SNAT pools no longer configured.
    fn drop_old_pools(&self) -> Result<(), String>;
    /// The configuration in force, its generation and load time.
    fn running(&self) -> Running;
    /// The table version in force.
    fn version(&self) -> Arc<GatewayShared>;
    /// Workers still running an older version than the one in force (they switch at
    /// their next burst).
    fn workers_behind(&self) -> usize {
        0
    }
}

/// The configuration in force (`config-show`).
pub struct Running {
    pub config: crate::config::Config,
    /// 1 for the configuration ctgate started with, one more per reload.
    pub generation: u64,
    /// When it was loaded, in seconds since the Unix epoch.
    pub loaded_unix: u64,
}

/// Everything a command may read or change. Built by the control loop for each
/// [`super::socket::ControlServer::poll`] call (it only holds references).
pub struct ControlContext<'a> {
    /// The tracker.
    pub conntrack: &'a Conntrack,
    /// The sweep interval in milliseconds (`ct-set-sweep-interval`); the control loop
    /// reads it to pace the sweep.
    pub sweep_interval_ms: &'a AtomicU32,
    /// Ports, lcores, counters.
    pub info: &'a dyn GatewayInfo,
    /// The gateway's fragment reassembly (`ipf-*` commands); `None` without a gateway.
    pub ipf: Option<&'a crate::ipf::Ipf>,
    /// Now on the tracker's clock (ms, the `now` given to `CtWorker::process`): gives
    /// `timeout=` and hides expired connections from dumps.
    pub now: u64,
}

/// What one step of a [`Job`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More to do.
    More,
    /// Finished; all output has been written.
    Done,
}

/// A command's work over the table, done a bounded number of buckets at a time. A job
/// holds no borrow and no lock between steps.
pub trait Job: Send {
    /// Walks at most `budget` buckets (at least one), appending output to `out`.
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String>;

    /// True for a job that streams as things happen (`events`): what a step produced
    /// is sent at once rather than gathered into large chunks.
    fn live(&self) -> bool {
        false
    }
}

/// What executing a command gives.
pub enum Outcome {
    /// The whole result (the output or an error).
    Done(Result<String, String>),
    /// Output to be produced step by step.
    Stream(Box<dyn Job>),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Outcome::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

pub(super) fn done(s: String) -> Outcome {
    Outcome::Done(Ok(s))
}

pub(super) fn fail(e: String) -> Outcome {
    Outcome::Done(Err(e))
}

/// An argument error as `dpctl_error` reports it with `EINVAL`.
pub(super) fn einval(msg: impl std::fmt::Display) -> String {
    format!("{msg} (Invalid argument)")
}

pub(super) fn ensure_newline(mut s: String) -> String {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------------------
// Walking the table.

/// Walks buckets `[*cursor, *cursor + budget)` (at least one), calling `f` with each
/// connection's index, generation and snapshot, with no lock held. Returns true when
/// the end of the table is reached.
pub(super) fn walk(
    ct: &Conntrack,
    cursor: &mut usize,
    budget: usize,
    mut f: impl FnMut(u32, u32, &ConnSnapshot),
) -> bool {
    let table = ct.table();
    let n = table.n_buckets();
    let end = cursor.saturating_add(budget.max(1)).min(n);
    let mut items: Vec<(u32, u32)> = Vec::with_capacity(32);
    for b in *cursor..end {
        items.clear();
        table.for_each_in_bucket(b, |idx, gen| items.push((idx, gen)));
        for &(idx, gen) in &items {
            if let Some(s) = ct.snapshot(idx, gen) {
                f(idx, gen, &s);
            }
        }
    }
    *cursor = end;
    end >= n
}

/// True when the connection has not expired (dumps and stats skip expired ones, as
/// OVS's `conntrack_dump_next` does).
pub(super) fn alive(s: &ConnSnapshot, now: u64) -> bool {
    s.expiry > now
}
