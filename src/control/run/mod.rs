//! One run of the ctgate process on the main (control) lcore, in either mode:
//!
//! * gateway mode (a configuration given): the ports of the configuration, the connection
//!   tracker built from it, a [`GatewayStep`] per worker; the control lcore advances the
//!   tracker clock, sweeps expired connections at the configured interval in bounded
//!   steps, and serves the control socket;
//! * forwarding mode (no configuration, `--pair A:B`): plain L2 forwarding between port
//!   pairs ([`Forward`]).
//!
//! In both, one file per phase:
//!
//! 1. [`setup`]: list the ports EAL probed and plan queues ([`crate::pipeline::ports`]
//!    for pairs, [`gateway_plan`] for the gateway: every worker has a TX queue on every
//!    port); create one mempool per NUMA socket in use, configure the ports;
//! 2. [`launch`]: start the ports, launch one [`Worker`] per worker lcore;
//! 3. [`control_loop`]: tick until SIGINT/SIGTERM, the duration or the idle limit says
//!    stop, printing a stats line per second (unless quiet); [`info`] is what the
//!    control socket's `show`/`stats` and the final counters read;
//! 4. here: stop the workers, stop the ports, read their counters, close them and print
//!    the final counters ([`crate::control::counter_lines`]); the gateway adds the
//!    tracker's counters. The caller then runs `rte_eal_cleanup`.
//!
//! What the run is told comes in [`RunOptions`] (the CLI fills them); nothing here reads
//! the command line.
//!
//! [`GatewayStep`]: crate::pipeline::gateway::GatewayStep
//! [`Worker`]: crate::pipeline::worker::Worker

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::Config;
use crate::conntrack::stats::CtCountersSnapshot;
use crate::control::counter_lines::{ct_line, gateway_line};
use crate::control::metrics::{Exposition, MetricsServer};
use crate::control::reload::LiveGateway;
use crate::control::socket::ControlServer;
use crate::control::sync::consumer::SyncConsumer;
use crate::control::telemetry_cmds;
use crate::dpdk::{self, Eal, Port, PortStats, Tsc};
use crate::pipeline::forward::Forward;
use crate::pipeline::gateway::{GatewayShared, GatewayStep};
use crate::pipeline::ports::{default_pairs, plan, PortLimits, PortPlan, WorkerQueues};
use crate::pipeline::vlan::VlanTable;
use crate::pipeline::worker::{WorkerCounters, WorkerSnapshot};
use crate::pipeline::{DropCounters, DropReason};

/// Prints to stdout when `$verbose`.
macro_rules! say {
    ($verbose:expr, $($arg:tt)*) => {
        if $verbose {
            println!($($arg)*);
        }
    };
}

mod control_loop;
mod info;
mod launch;
mod metrics_render;
mod setup;

pub use crate::control::run_options::RunOptions;
use control_loop::{clock_ms, control_loop, flush, GatewayCtl, LoopEnv, StopReason};
use info::{port_line, total_drops, worker_line};
use launch::{launch_workers, WorkerHandle};
pub use setup::{build_tracker, build_tracker_on, check_ports, gateway_plan, tracker_line};
use setup::{configure_ports, create_mempools, report_links};

/// What a run ends with: the final counters that [`run`] prints, for a caller that runs
/// the gateway in its own process (`ctgate-perf datapath`).
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// (port id, device counters), after the ports stopped.
    pub ports: Vec<(u16, PortStats)>,
    /// Each worker's final counters.
    pub workers: Vec<WorkerSnapshot>,
    /// Drops summed over the workers, by reason.
    pub drops: DropCounters,
    /// Seconds from the start of the workers to the stop.
    pub secs: f64,
    /// TSC ticks per second (for the workers' `busy_tsc`).
    pub tsc_hz: u64,
    /// Gateway mode: the tracker's connection count and counters at the end.
    pub conntrack: Option<(u32, CtCountersSnapshot)>,
}

/// Runs ctgate until it is told to stop; prints the final counters. `config` is the
/// gateway's configuration; `None` selects the forwarding mode (`opts.pairs`).
pub fn run(eal: &Eal, opts: &RunOptions, config: Option<&Config>) -> Result<(), String> {
    run_report(eal, opts, config, true).map(|_| ())
}

/// Counts runs in this process, so a second run names its mempool apart from the first.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// The datapath of a run.
// One value per run, never moved on a hot path: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Mode {
    Gateway(GatewayCtl),
    Forward(Forward),
}

/// [`run`], returning the final counters as a [`RunReport`]; with `verbose` false it
/// prints nothing to stdout (errors still go to stderr), so the caller owns stdout.
pub fn run_report(
    eal: &Eal,
    opts: &RunOptions,
    config: Option<&Config>,
    verbose: bool,
) -> Result<RunReport, String> {
    let run_no = RUNS.fetch_add(1, Ordering::Relaxed);
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // A second signal while shutting down ends the process at once (exit code 1).
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&signalled))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&signalled)))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    // SIGHUP reloads the configuration in force (gateway mode; ignored otherwise).
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGHUP, Arc::clone(&hangup))
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;

    let port_ids = dpdk::available_ports(eal);
    let mut caps = Vec::with_capacity(port_ids.len());
    for &id in &port_ids {
        caps.push(dpdk::port_caps(eal, id).map_err(|e| e.to_string())?);
    }
    let lcores = dpdk::worker_lcores(eal);
    let plan = plan_queues(opts, config, &port_ids, &caps, lcores.len())?;
    let main_socket = dpdk::socket_of_lcore(eal, dpdk::main_lcore(eal));
    let socket_of = |id: u16| {
        caps.iter()
            .find(|c| c.id == id)
            .and_then(|c| c.socket)
            .unwrap_or(main_socket)
    };
    let max_mtu = config.map_or(
        crate::config::MTU_DEFAULT,
        crate::pipeline::gateway::max_mtu,
    );
    let pools = create_mempools(
        eal,
        &plan,
        &socket_of,
        opts.mbufs.unwrap_or(0),
        run_no,
        max_mtu,
    )?;
    let (mut ports, macs) =
        configure_ports(eal, &plan, &caps, config, &pools, &socket_of, verbose)?;

    // The mode's datapath state, built before the ports start.
    let mode = match config {
        Some(cfg) => Mode::Gateway(gateway_ctl(eal, cfg, opts, lcores.len(), &macs)?),
        None => Mode::Forward(Forward::new(&plan.pairs, &macs, opts.next_hop_mac)?),
    };
    if let Mode::Gateway(g) = &mode {
        say!(verbose, "{}", tracker_line(&g.ct));
    }
    for p in ports.iter_mut() {
        p.start().map_err(|e| e.to_string())?;
    }
    if verbose {
        report_links(&ports, &caps);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tsc_hz = Tsc::hz(eal);
    let start = Instant::now();
    // A worker's mempool: the one of its first RX port's socket.
    let pool_of = |wq: &WorkerQueues| {
        let socket = wq.rx.first().map_or(main_socket, |&(p, _)| socket_of(p));
        pools
            .iter()
            .find(|(s, _)| *s == socket)
            .or(pools.first())
            .map(|(_, p)| *p)
    };
    let launched = match &mode {
        Mode::Gateway(g) => {
            // Workers read the monotonic clock themselves (the same ms since `start` as
            // the control lcore's): a starved control lcore cannot stop time for them.
            let shared = g.live.shared();
            shared.run_clock_from(start);
            shared.set_now_ms(clock_ms(start, Instant::now()));
            // GatewayShared::new accepted the same table: it cannot fail here. The VLAN
            // sub-interfaces cannot change on a reload.
            let vlans = VlanTable::from_config(&g.live.config()).unwrap_or_default();
            launch_workers(
                eal,
                &lcores,
                &plan,
                &ports,
                &stop,
                tsc_hz,
                verbose,
                |i, wq, w| {
                    let step = GatewayStep::new(Arc::clone(&shared), i);
                    let w = w(step)?.with_vlans(vlans.clone());
                    Ok(match pool_of(wq) {
                        Some(pool) => w.with_mempool(pool),
                        None => w,
                    })
                },
            )
        }
        Mode::Forward(f) => launch_workers(
            eal,
            &lcores,
            &plan,
            &ports,
            &stop,
            tsc_hz,
            verbose,
            |_, _, w| w(f.clone()),
        ),
    };
    let mut gw = match mode {
        Mode::Gateway(g) => Some(g),
        Mode::Forward(_) => None,
    };
    let (workers, launch_error) = launched;
    if let Some(g) = &gw {
        // From now on `/ctgate/drops` reads them.
        let _ = g
            .worker_counters
            .set(workers.iter().map(|w| Arc::clone(&w.counters)).collect());
    }
    let reason = match launch_error {
        Some(_) => None,
        None => {
            announce(verbose, gw.as_ref(), ports.len(), workers.len());
            let env = LoopEnv {
                opts,
                ports: &ports,
                caps: &caps,
                workers: &workers,
                signalled: &signalled,
                hangup: &hangup,
                start,
                tsc_hz,
                main_lcore: dpdk::main_lcore(eal),
            };
            Some(control_loop(&env, gw.as_mut()))
        }
    };

    // Shutdown: workers first (they flush their TX buffers), then the ports.
    stop.store(true, Ordering::SeqCst);
    let mut failed_workers = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let ret = dpdk::wait_lcore(eal, w.lcore);
        if ret != 0 {
            failed_workers.push(format!("worker {i} (lcore {}) returned {ret}", w.lcore.0));
        }
    }
    let snapshots: Vec<WorkerSnapshot> = workers.iter().map(|w| w.counters.snapshot()).collect();
    let port_stats = stop_ports(ports);
    if let Some(e) = launch_error {
        return Err(e);
    }
    let report = RunReport {
        drops: total_drops(&snapshots),
        secs: start.elapsed().as_secs_f64(),
        conntrack: gw.as_ref().map(|g| (g.ct.n_conns(), g.ct.counters())),
        ports: port_stats,
        workers: snapshots,
        tsc_hz,
    };
    if verbose {
        print_final(reason, &report, &workers, gw.as_ref());
    }
    // Dropping `gw` closes the control socket and removes its file.
    drop(gw);
    if failed_workers.is_empty() {
        Ok(report)
    } else {
        Err(failed_workers.join("; "))
    }
}

/// The queue plan of the mode: the gateway's (every configured port) or the pairs'.
fn plan_queues(
    opts: &RunOptions,
    config: Option<&Config>,
    port_ids: &[u16],
    caps: &[dpdk::PortCaps],
    workers: usize,
) -> Result<PortPlan, String> {
    let limits: Vec<PortLimits> = caps
        .iter()
        .map(|c| PortLimits {
            id: c.id,
            max_rx_queues: c.max_rx_queues,
            max_tx_queues: c.max_tx_queues,
            rss: c.supports_rss(),
        })
        .collect();
    match config {
        Some(cfg) => {
            check_ports(cfg, port_ids)?;
            let ids: Vec<u16> = cfg.port_ids();
            gateway_plan(&limits, &ids, workers)
        }
        None => {
            let pairs = if opts.pairs.is_empty() {
                default_pairs(port_ids).map_err(|e| e.to_string())?
            } else {
                opts.pairs.clone()
            };
            plan(&limits, &pairs, workers).map_err(|e| e.to_string())
        }
    }
}

/// The gateway mode's control state: the tracker, the workers' shared state, the
/// control socket and the DPDK telemetry commands.
fn gateway_ctl(
    eal: &Eal,
    cfg: &Config,
    opts: &RunOptions,
    workers: usize,
    macs: &[(u16, crate::pipeline::MacAddr)],
) -> Result<GatewayCtl, String> {
    // With hugepages (not --no-huge) the table asks the kernel's hugetlb pool too.
    let pages = if eal.has_hugepages() {
        dpdk::PageSize::Huge
    } else {
        dpdk::PageSize::Small
    };
    let ct = Arc::new(build_tracker_on(cfg, workers, pages));
    let shared = GatewayShared::new(cfg, Arc::clone(&ct), macs)?;
    let server = ControlServer::bind(&opts.socket)?;
    // DPDK telemetry (/ctgate/stats, /ctgate/zones, /ctgate/buckets, /ctgate/drops): useful, not
    // essential, so a failure is reported and the gateway runs on.
    let worker_counters: Arc<OnceLock<Vec<Arc<WorkerCounters>>>> = Arc::new(OnceLock::new());
    let counters = Arc::clone(&worker_counters);
    let totals: telemetry_cmds::TotalsFn = Arc::new(move || {
        let mut t = telemetry_cmds::WorkerTotals::default();
        for c in counters.get()? {
            let s = c.snapshot();
            t.rx += s.rx;
            t.tx += s.tx;
            t.generated += s.generated;
            t.consumed += s.consumed;
            for r in DropReason::ALL {
                t.drops.add(r, s.drops.get(r));
            }
        }
        Some(t)
    });
    if let Err(e) = dpdk::register_telemetry(
        eal,
        telemetry_cmds::COMMANDS,
        Arc::new(telemetry_cmds::handler(Arc::clone(&ct), totals)),
    ) {
        eprintln!("ctgate: telemetry commands not registered: {e}");
    }
    // The Prometheus endpoint, when configured: its own thread, fed once a second.
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let text: Exposition = Arc::new(std::sync::Mutex::new(String::new()));
            let server = MetricsServer::start(addr, Arc::clone(&text))?;
            Some(Box::new((server, text)))
        }
        None => None,
    };
    // State sync with the peers (docs/ha.md): its socket is bound now, so a taken
    // address is a start-up error.
    let sync = match &cfg.sync {
        Some(sc) => Some(Box::new(SyncConsumer::new(&ct, sc, Instant::now())?)),
        None => None,
    };
    Ok(GatewayCtl {
        metrics,
        sync,
        // A reload may change port MTUs where the device takes them while running.
        live: Box::new(
            LiveGateway::new(cfg.clone(), shared)
                .with_mtu_setter(|id, mtu| dpdk::set_mtu(id, mtu).map_err(|e| e.to_string())),
        ),
        ct,
        server,
        sweep_interval_ms: AtomicU32::new(cfg.datapath.sweep_interval_ms),
        worker_counters,
    })
}

/// The line that says the run is up.
fn announce(verbose: bool, gw: Option<&GatewayCtl>, ports: usize, workers: usize) {
    match gw {
        Some(g) => say!(
            verbose,
            "ctgate: gateway on {ports} ports with {workers} workers, config {}, control socket {} (Ctrl-C to stop)",
            g.live.config().source,
            g.server.path().display()
        ),
        None => say!(
            verbose,
            "ctgate: forwarding on {ports} ports with {workers} workers (Ctrl-C to stop)"
        ),
    }
    flush();
}

/// Stops and closes the ports; returns their final device counters.
fn stop_ports(mut ports: Vec<Port>) -> Vec<(u16, PortStats)> {
    let mut port_stats = Vec::with_capacity(ports.len());
    for p in ports.iter_mut() {
        if let Err(e) = p.stop() {
            eprintln!("ctgate: {e}");
        }
        port_stats.push((p.id(), p.stats().unwrap_or_default()));
    }
    for p in ports {
        if let Err(e) = p.close() {
            eprintln!("ctgate: {e}");
        }
    }
    port_stats
}

/// Prints why the run stopped and the final counters.
fn print_final(
    reason: Option<StopReason>,
    report: &RunReport,
    workers: &[WorkerHandle],
    gw: Option<&GatewayCtl>,
) {
    if let Some(reason) = reason {
        println!(
            "ctgate: stopping ({})",
            match reason {
                StopReason::Signal => "signal",
                StopReason::Duration => "duration reached",
                StopReason::Idle => "input idle",
            }
        );
    }
    for (id, s) in &report.ports {
        println!("{}", port_line(*id, s, &report.workers));
    }
    for (i, (w, snap)) in workers.iter().zip(&report.workers).enumerate() {
        println!("{}", worker_line(i, w, snap, report.tsc_hz));
    }
    if let Some(g) = gw {
        println!("{}", ct_line(g.ct.n_conns(), &g.ct.counters()));
        println!("{}", gateway_line(&g.live.shared().counters()));
    }
    flush();
}
