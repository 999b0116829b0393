//! The control lcore's loop, once the workers run: every tick it advances the tracker
//! clock, sweeps expired connections in bounded steps (paced so a full pass takes the
//! sweep interval), feeds the connection events to their consumers (the NAT logger; see
//! [`crate::control::event_consumers`]), serves the control socket, checks the stop conditions and once a
//! second prints the stats line. No step of a tick blocks: the socket is non-blocking and
//! every walk is bounded, so the loop answers within a tick; the wait between ticks is an
//! absolute sleep to the tick's deadline, which signals cannot stretch. While the sweep
//! is removing connections in numbers, it also runs between ticks, in steps a quarter
//! of a millisecond apart ([`SWEEP_STEP`]), so that it never holds its CPU for a whole
//! tick's work at once.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::thread::{clock_nanosleep_absolute, ClockId};
use rustix::time::{clock_gettime, Timespec};

use super::info::{port_drops, total_drops, Info};
use super::launch::WorkerHandle;
use super::metrics_render::{render, MetricsInput, NatUsage, NAT_USAGE_BUCKETS_PER_TICK};
use crate::config::Logging;
use crate::conntrack::events::wall_us;
use crate::conntrack::{Conntrack, CtWorker};
use crate::control::commands::ControlContext;
use crate::control::counter_lines::mpps;
use crate::control::event_consumers::Consumers;
use crate::control::metrics::{Exposition, MetricsServer};
use crate::control::natlog::NatLogger;
use crate::control::reload::LiveGateway;
use crate::control::run_options::RunOptions;
use crate::control::socket::{ControlServer, DEFAULT_BUDGET};
use crate::dpdk::{Lcore, Port, PortCaps, PortStats};
use crate::pipeline::worker::WorkerSnapshot;
use crate::pipeline::DropReason;

/// How often the control lcore wakes up (clock, sweep, control socket, stop conditions).
const TICK: Duration = Duration::from_millis(10);
/// At most this many buckets are swept per step (a tick's or one between ticks), so a
/// very short sweep interval on a large table cannot stall the control socket (about a
/// millisecond of work).
pub const MAX_SWEEP_BUCKETS_PER_TICK: usize = 65_536;
/// While the sweep removes connections in numbers (at least [`SWEEP_STEP_MIN_REMOVED`]
/// at its last step), it also runs between ticks, this far apart: a tick's share of the
/// sweep in eighty pieces instead of one. Under heavy churn a tick's sweep is milliseconds
/// of work (about 300 ns per removed connection: at a million expiring a second, 3 ms
/// every 10 ms), and on a CPU the control lcore shares (with a traffic generator, other
/// processes, the kernel's work) nothing else runs there for that long: a worker fed from
/// that CPU drains its queue and waits. In 1 ms steps (session 13: a third of a
/// millisecond of work each at a million a second) the connection-rate benchmark
/// (`ctgate-perf datapath --new-flows`, whose generator shares the control lcore's CPU)
/// gained 4% with TCP and 1–2% with UDP; in 250 µs steps (about 90 µs of work each)
/// another 5–6% (its worker waits 7–8% of its time instead of 17%), for 4% more of the
/// control lcore's CPU per removed connection (the wakeups); 100 µs steps cost 13% more
/// for no more gain (perf/RESULTS.md, sessions 13 and 15). Since then the worker got
/// faster and drains its queue sooner: in 125 µs steps TCP connections per second rose
/// 7–10% (ten of ten interleaved pairs; the worker busy 0.92–0.95 of its polls instead
/// of 0.85–0.91), UDP moved by −7% to +6% with no direction (session 26). Nothing else
/// of a tick (the control socket, the event consumers) runs more often.
const SWEEP_STEP: Duration = Duration::from_micros(125);
/// Removed connections at a sweep step that make the next one come after [`SWEEP_STEP`]
/// rather than at the next tick (a light churn keeps the tick's pace): 256 a millisecond.
const SWEEP_STEP_MIN_REMOVED: usize = 32;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopReason {
    Signal,
    Duration,
    Idle,
}

/// What the gateway mode adds to the control lcore.
pub(super) struct GatewayCtl {
    /// The configuration in force and the table versions published to the workers.
    pub live: Box<LiveGateway>,
    /// The Prometheus endpoint and the text it serves (rendered here once a second).
    pub metrics: Option<Box<(MetricsServer, Exposition)>>,
    /// The sync consumer when `[sync]` is configured (moved into the consumers when the
    /// loop starts).
    pub sync: Option<Box<crate::control::sync::consumer::SyncConsumer>>,
    pub ct: Arc<Conntrack>,
    pub server: ControlServer,
    pub sweep_interval_ms: AtomicU32,
    /// The workers' counters once they run (read by the `/ctgate/drops` telemetry
    /// command on DPDK's telemetry thread).
    pub worker_counters:
        Arc<std::sync::OnceLock<Vec<Arc<crate::pipeline::worker::WorkerCounters>>>>,
}

/// What the control loop reads.
pub(super) struct LoopEnv<'a> {
    pub opts: &'a RunOptions,
    pub ports: &'a [Port],
    pub caps: &'a [PortCaps],
    pub workers: &'a [WorkerHandle],
    pub signalled: &'a AtomicBool,
    /// Set by SIGHUP: reload the configuration in force.
    pub hangup: &'a AtomicBool,
    pub start: Instant,
    pub tsc_hz: u64,
    pub main_lcore: Lcore,
}

/// `CLOCK_MONOTONIC` (the clock of [`Instant`]) `d` from now.
fn deadline_after(d: Duration) -> Timespec {
    timespec_after(clock_gettime(ClockId::Monotonic), d)
}

/// `t` plus `d`.
fn timespec_after(t: Timespec, d: Duration) -> Timespec {
    let nanos = t.tv_nsec + i64::from(d.subsec_nanos());
    Timespec {
        tv_sec: t.tv_sec
            + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
            + nanos / 1_000_000_000,
        tv_nsec: nanos % 1_000_000_000,
    }
}

/// When the sweep's next step between ticks is due: [`SWEEP_STEP`] from `now`, if the last
/// step removed at least [`SWEEP_STEP_MIN_REMOVED`] connections and that comes before the
/// tick's deadline (else the next step is the tick's).
fn next_sweep_step(now: Timespec, removed: usize, tick_deadline: &Timespec) -> Option<Timespec> {
    if removed < SWEEP_STEP_MIN_REMOVED {
        return None;
    }
    let step = timespec_after(now, SWEEP_STEP);
    ((step.tv_sec, step.tv_nsec) < (tick_deadline.tv_sec, tick_deadline.tv_nsec)).then_some(step)
}

/// Sleeps until `deadline` on `CLOCK_MONOTONIC`. The sleep is absolute
/// (`clock_nanosleep(TIMER_ABSTIME)`): a signal that interrupts it (net_tap signals the
/// process for every received frame, tens of thousands a second under load) only makes
/// it sleep again to the same deadline, so it can neither be stretched by re-armed
/// remainders and timer slack nor last longer than the deadline.
fn sleep_until(deadline: &Timespec) {
    loop {
        match clock_nanosleep_absolute(ClockId::Monotonic, deadline) {
            Err(rustix::io::Errno::INTR) => continue,
            // Done, or an error that a retry would repeat (EINVAL): the tick goes on.
            _ => return,
        }
    }
}

pub(super) fn flush() {
    let _ = std::io::stdout().flush();
}

/// Milliseconds on the tracker clock: time since start, plus one so that no connection
/// ever has an expiry of 0.
pub(super) fn clock_ms(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.duration_since(start).as_millis()).unwrap_or(u64::MAX) + 1
}

/// Microseconds since `start` (the sweep pacer's clock).
fn clock_us(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.duration_since(start).as_micros()).unwrap_or(u64::MAX)
}

/// Paces the sweep: a full pass over the buckets per sweep interval, in bounded steps.
#[derive(Debug, Default)]
struct SweepPacer {
    /// Buckets owed (fractional), capped at one full pass.
    debt: f64,
    /// When `due` last ran, in microseconds of the run (steps come less than a
    /// millisecond apart).
    last_us: u64,
}

impl SweepPacer {
    /// Buckets to sweep at `now_us` (microseconds) for a table of `n_buckets` and
    /// `interval_ms`.
    fn due(&mut self, now_us: u64, n_buckets: usize, interval_ms: u32) -> usize {
        let elapsed = now_us.saturating_sub(self.last_us) as f64;
        self.last_us = now_us;
        let per_us = n_buckets as f64 / (f64::from(interval_ms.max(1)) * 1000.0);
        self.debt = (self.debt + elapsed * per_us).min(n_buckets as f64);
        (self.debt as usize).min(MAX_SWEEP_BUCKETS_PER_TICK)
    }

    fn done(&mut self, buckets: usize) {
        self.debt = (self.debt - buckets as f64).max(0.0);
    }
}

/// Ticks until a stop condition: clock, sweep and control socket (gateway mode), and a
/// stats line per second unless quiet.
pub(super) fn control_loop(env: &LoopEnv, mut gw: Option<&mut GatewayCtl>) -> StopReason {
    let args = env.opts;
    let start = env.start;
    let mut last_rx = 0u64;
    let mut last_activity = start;
    let mut next_report = start + Duration::from_secs(1);
    let mut prev: Vec<PortStats> = env
        .ports
        .iter()
        .map(|p| p.stats().unwrap_or_default())
        .collect();
    let mut prev_at = start;
    let mut next_metrics = start;
    let mut nat_usage = NatUsage::default();
    let mut prev_ct = gw.as_ref().map(|g| g.ct.counters()).unwrap_or_default();
    let ct_arc = gw.as_ref().map(|g| Arc::clone(&g.ct));
    let mut handle: Option<CtWorker<'_>> = ct_arc.as_deref().map(Conntrack::control_handle);
    let mut pacer = SweepPacer {
        debt: 0.0,
        last_us: 0,
    };
    // The event stream's consumers on this lcore, configured from the file in force and
    // again after each reload (a new generation).
    let mut consumers = Consumers::default();
    let mut consumers_gen = 0;
    if let Some(g) = gw.as_deref_mut() {
        consumers.push(Box::new(NatLogger::new(&g.ct, &Logging::default())));
        if let Some(mut s) = g.sync.take() {
            s.set_clock_origin(start);
            consumers.push(s);
        }
    }
    loop {
        let tick_deadline = deadline_after(TICK);
        let now = Instant::now();
        let mut busy = false;
        // Connections the tick's sweep step removed.
        let mut swept = 0;
        if let (Some(g), Some(h)) = (gw.as_deref_mut(), handle.as_mut()) {
            let now_ms = clock_ms(start, now);
            g.live.shared().set_now_ms(now_ms);
            g.live.reclaim();
            if env.hangup.swap(false, Ordering::Relaxed) {
                // SIGHUP: a reload of the file in force; the result goes to the log.
                match g.live.reload(None, &g.ct, &g.sweep_interval_ms) {
                    Ok(r) => print!("ctgate: SIGHUP: {}", r.report),
                    Err(e) => eprintln!("ctgate: SIGHUP: reload refused: {e}"),
                }
                flush();
            }
            let interval = g.sweep_interval_ms.load(Ordering::Relaxed);
            swept = sweep_step(g, h, &mut pacer, now_ms, clock_us(start, now));
            let generation = g.live.shared().generation();
            if generation != consumers_gen {
                consumers_gen = generation;
                let report = consumers.reconfigure(&g.ct, &g.live.config());
                if !report.is_empty() {
                    print!("ctgate: {report}");
                    flush();
                }
            }
            consumers.poll(&g.ct, wall_us());
            let info = Info {
                ports: env.ports,
                caps: env.caps,
                workers: env.workers,
                main_lcore: env.main_lcore,
                start: env.start,
                tsc_hz: env.tsc_hz,
                live: &g.live,
                socket: g.server.path().display().to_string(),
                sweep_interval_ms: interval,
                consumers: &consumers,
            };
            let cur = g.live.shared();
            let ctx = ControlContext {
                conntrack: &g.ct,
                sweep_interval_ms: &g.sweep_interval_ms,
                info: &info,
                ipf: Some(cur.ipf()),
                now: now_ms,
            };
            busy = g.server.poll(&ctx, DEFAULT_BUDGET).busy;
        }
        if let Some(g) = gw.as_deref() {
            if let Some(text) = g.metrics.as_deref().map(|m| &m.1) {
                nat_usage.step(&g.ct, clock_ms(start, now), NAT_USAGE_BUCKETS_PER_TICK);
                if now >= next_metrics {
                    next_metrics = now + Duration::from_secs(1);
                    let shared = g.live.shared();
                    let body = render(&MetricsInput {
                        ports: env.ports,
                        workers: env.workers,
                        tsc_hz: env.tsc_hz,
                        uptime_secs: now.duration_since(start).as_secs_f64(),
                        ct: &g.ct,
                        shared: &shared,
                        generation: g.live.origin().0,
                        nat: &nat_usage,
                        consumers: &consumers,
                    });
                    if let Ok(mut t) = text.lock() {
                        *t = body;
                    }
                }
            }
        }
        if env.signalled.load(Ordering::Relaxed) {
            return StopReason::Signal;
        }
        if gw.is_none() && env.hangup.swap(false, Ordering::Relaxed) {
            // The forwarding mode (the gateway mode reloads above, at its next tick when
            // the signal came after that check): nothing to reload.
            eprintln!("ctgate: SIGHUP ignored: the forwarding mode has no configuration to reload");
        }
        if args
            .duration
            .is_some_and(|d| now.duration_since(start) >= d)
        {
            return StopReason::Duration;
        }
        if let Some(idle) = args.exit_when_idle {
            let rx: u64 = env
                .workers
                .iter()
                .map(|w| w.counters.rx.load(Ordering::Relaxed))
                .sum();
            if rx != last_rx {
                last_rx = rx;
                last_activity = now;
            } else if now.duration_since(last_activity) >= idle {
                return StopReason::Idle;
            }
        }
        if now >= next_report {
            next_report += Duration::from_secs(1);
            if next_report < now {
                next_report = now + Duration::from_secs(1);
            }
            let secs = now.duration_since(prev_at).as_secs_f64();
            let snapshots: Vec<WorkerSnapshot> =
                env.workers.iter().map(|w| w.counters.snapshot()).collect();
            let mut line = format!("t={:.0}s", now.duration_since(start).as_secs_f64());
            for (p, old) in env.ports.iter().zip(prev.iter_mut()) {
                let s = p.stats().unwrap_or_default();
                let _ = write!(
                    line,
                    " | port={} rx={} tx={} dropped={} rx_mpps={:.3} tx_mpps={:.3} rx_missed={} rx_errors={}",
                    p.id(),
                    s.ipackets,
                    s.opackets,
                    port_drops(p.id(), &snapshots),
                    mpps(s.ipackets.saturating_sub(old.ipackets), secs),
                    mpps(s.opackets.saturating_sub(old.opackets), secs),
                    s.imissed,
                    s.ierrors,
                );
                *old = s;
            }
            if let Some(g) = gw.as_deref() {
                let c = g.ct.counters();
                let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
                let expired =
                    (c.expired + c.reclaimed).saturating_sub(prev_ct.expired + prev_ct.reclaimed);
                let _ = write!(
                    line,
                    " | conns={} created/s={:.0} expired/s={:.0}",
                    g.ct.n_conns(),
                    per_s(c.created.saturating_sub(prev_ct.created)),
                    per_s(expired),
                );
                prev_ct = c;
                let d = total_drops(&snapshots);
                let _ = write!(line, " | drops={}", d.total());
                for r in DropReason::ALL {
                    if d.get(r) > 0 {
                        let _ = write!(line, " {}={}", r.name(), d.get(r));
                    }
                }
            }
            prev_at = now;
            if !args.quiet {
                println!("{line}");
                flush();
            }
        }
        if !busy {
            if let (Some(g), Some(h)) = (gw.as_deref(), handle.as_mut()) {
                // The sweep between ticks, while it finds work (see SWEEP_STEP).
                while let Some(step) =
                    next_sweep_step(clock_gettime(ClockId::Monotonic), swept, &tick_deadline)
                {
                    sleep_until(&step);
                    let now = Instant::now();
                    let now_ms = clock_ms(start, now);
                    g.live.shared().set_now_ms(now_ms);
                    swept = sweep_step(g, h, &mut pacer, now_ms, clock_us(start, now));
                }
            }
            sleep_until(&tick_deadline);
        }
    }
}

/// One step of the sweep at `now_ms` (the tracker's clock), as much as the pacer says is
/// due at `now_us`; returns the connections it removed.
fn sweep_step(
    g: &GatewayCtl,
    h: &mut CtWorker<'_>,
    pacer: &mut SweepPacer,
    now_ms: u64,
    now_us: u64,
) -> usize {
    let interval = g.sweep_interval_ms.load(Ordering::Relaxed);
    let due = pacer.due(now_us, g.ct.table().n_buckets(), interval);
    if due == 0 {
        return 0;
    }
    let rep = h.sweep_expired(now_ms, due);
    pacer.done(rep.buckets);
    rep.removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets a fresh pacer hands out over `steps` steps `every_us` apart (a table of
    /// 1024 buckets, a pass per 1000 ms), each step's share swept in full.
    fn swept_in_steps(every_us: u64, steps: u64) -> usize {
        let mut p = SweepPacer::default();
        (1..=steps)
            .map(|t| {
                let d = p.due(t * every_us, 1024, 1000);
                p.done(d);
                d
            })
            .sum()
    }

    #[test]
    fn sweep_pacer_spreads_a_pass_over_the_interval_and_bounds_a_tick() {
        // 1024 buckets over 1000 ms: about 10 per 10 ms tick.
        let total = swept_in_steps(10_000, 100);
        assert!((1010..=1024).contains(&total), "{total}");
        // Steps an eighth of a millisecond apart (the sweep between ticks) get their
        // share too: the pacer's clock counts microseconds.
        let total = swept_in_steps(125, 8000);
        assert!((1020..=1024).contains(&total), "{total}");
        // A huge table and a tiny interval: capped per tick, debt capped at a pass.
        let mut p = SweepPacer::default();
        assert_eq!(p.due(10_000, 1 << 24, 1), MAX_SWEEP_BUCKETS_PER_TICK);
        assert!(p.debt <= (1u64 << 24) as f64);
    }

    #[test]
    fn the_sweep_steps_between_ticks_only_while_it_removes_in_numbers_and_before_the_tick() {
        let ts = |s: i64, ns: i64| Timespec {
            tv_sec: s,
            tv_nsec: ns,
        };
        let tick = ts(10, 5_000_000);
        // Busy: the next step an eighth of a millisecond on.
        let s = next_sweep_step(ts(10, 1_000_000), SWEEP_STEP_MIN_REMOVED, &tick).unwrap();
        assert_eq!((s.tv_sec, s.tv_nsec), (10, 1_125_000));
        // Across a second's boundary.
        let s = next_sweep_step(ts(9, 999_900_000), 5000, &ts(10, 9_000_000)).unwrap();
        assert_eq!((s.tv_sec, s.tv_nsec), (10, 25_000));
        // A light churn waits for the tick.
        assert!(next_sweep_step(ts(10, 1_000_000), SWEEP_STEP_MIN_REMOVED - 1, &tick).is_none());
        // No step at or past the tick's deadline: the tick sweeps then.
        assert!(next_sweep_step(ts(10, 4_875_000), 5000, &tick).is_none());
        assert!(next_sweep_step(ts(10, 4_900_000), 5000, &tick).is_none());
        assert!(next_sweep_step(ts(10, 4_874_999), 5000, &tick).is_some());
    }
}
