//! `reload [--config FILE] [--flush-stale]`: swaps a new configuration into the running
//! gateway through its [`LiveConfig`] (see [`crate::control::reload`] for what changes,
//! what needs a restart and what happens to `ct-set-*` values).
//!
//! The answer comes once every worker runs the new version (a [`Job`] that checks once
//! per control tick, at most [`SWITCH_WAIT`]): a packet that arrives after `reload`
//! returned follows the new rules. A worker that has not switched by then (it switches
//! at its next burst; e.g. one blocked in a device's receive) is named on a `note:` line
//! and the answer comes anyway.
//!
//! With `--flush-stale`, the connections the new version would not create
//! ([`GatewayShared::would_create`]) are then deleted by a bounded [`Job`], a bounded
//! number of buckets per step (after the switch, so that no worker still creates
//! connections by the old rules behind the walk); at its end the SNAT pools of earlier
//! versions stop being answered for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::context::*;
use crate::conntrack::Hit;
use crate::pipeline::gateway::GatewayShared;

/// `reload` arguments: `--config FILE` (or `--config=FILE`), `--flush-stale`.
fn parse_reload(args: &[String]) -> Result<(Option<String>, bool), String> {
    let mut file = None;
    let mut flush = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--flush-stale" => flush = true,
            "--config" => {
                let f = it.next().ok_or_else(|| einval("--config needs a FILE"))?;
                file = Some(f.clone());
            }
            _ => match a.strip_prefix("--config=") {
                Some(f) if !f.is_empty() => file = Some(f.to_string()),
                _ => {
                    return Err(einval(format_args!(
                    "unexpected argument \"{}\" (usage: reload [--config FILE] [--flush-stale])",
                    a.escape_debug()
                )))
                }
            },
        }
    }
    Ok((file, flush))
}

pub(super) fn reload(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (file, flush) = parse_reload(args)?;
    let live = ctx
        .info
        .live()
        .ok_or("reload: this process has no gateway configuration")?;
    let (report, version) = live.reload(file.as_deref(), ctx)?;
    Ok(Outcome::Stream(Box::new(Switch {
        until: Instant::now() + SWITCH_WAIT,
        report: Some(report),
        flush: flush.then_some(FlushStale {
            cursor: 0,
            version,
            removed: 0,
        }),
    })))
}

/// How long `reload` waits for every worker to run the new version before it answers.
pub const SWITCH_WAIT: Duration = Duration::from_secs(2);

/// Waits for the workers to switch, then reports (and flushes with `--flush-stale`).
struct Switch {
    until: Instant,
    report: Option<String>,
    flush: Option<FlushStale>,
}

impl Job for Switch {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        if let Some(r) = &self.report {
            let behind = ctx.info.live().map_or(0, |l| l.workers_behind());
            if behind > 0 && Instant::now() < self.until {
                return Ok(Step::More);
            }
            out.push_str(r);
            if behind > 0 {
                out.push_str(&format!(
                    "note: {behind} workers still run the previous version after {} s \
                     (they switch at their next burst)\n",
                    SWITCH_WAIT.as_secs()
                ));
            }
            self.report = None;
        }
        match &mut self.flush {
            Some(f) => f.step(ctx, budget, out),
            None => Ok(Step::Done),
        }
    }
}

/// Deletes the connections `version` would not create, then drops the old pools.
struct FlushStale {
    cursor: usize,
    version: Arc<GatewayShared>,
    removed: u64,
}

impl FlushStale {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let mut victims: Vec<Hit> = Vec::new();
        let v = &self.version;
        let end = walk(ctx.conntrack, &mut self.cursor, budget, |idx, gen, s| {
            if !v.would_create(s) {
                victims.push(Hit { idx, dir: 0, gen });
            }
        });
        let mut w = ctx.conntrack.control_handle();
        for h in &victims {
            if w.remove(h) {
                self.removed += 1;
            }
        }
        if !end {
            return Ok(Step::More);
        }
        out.push_str(&format!("flushed {} stale connections\n", self.removed));
        if let Some(live) = ctx.info.live() {
            live.drop_old_pools()?;
        }
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_reload;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reload_arguments_are_config_file_and_flush_stale() {
        assert_eq!(parse_reload(&a(&[])), Ok((None, false)));
        assert_eq!(
            parse_reload(&a(&["--config", "/x.toml", "--flush-stale"])),
            Ok((Some("/x.toml".into()), true))
        );
        assert_eq!(
            parse_reload(&a(&["--config=/y.toml"])),
            Ok((Some("/y.toml".into()), false))
        );
        assert!(parse_reload(&a(&["--config"])).is_err());
        assert!(parse_reload(&a(&["zone=1"]))
            .unwrap_err()
            .contains("unexpected argument"));
    }
}
