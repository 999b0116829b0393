//! One run of ctgate on the main (control) lcore, in either mode:
//!
//! * gateway mode (no `--pair`): the ports of the configuration, the connection tracker
//!   built from it, a [`GatewayStep`] per worker; the control lcore advances the tracker
//!   clock, sweeps expired connections at the configured interval in bounded steps, and
//!   serves the control socket;
//! * forwarding mode (`--pair A:B`): plain L2 forwarding between port pairs ([`Forward`]).
//!
//! In both:
//!
//! 1. list the ports EAL probed and plan queues ([`crate::pipeline::ports`] for pairs,
//!    [`gateway_plan`] for the gateway: every worker has a TX queue on every port);
//! 2. create one mempool per NUMA socket in use, configure and start the ports;
//! 3. launch one [`Worker`] per worker lcore;
//! 4. tick every 10 ms until SIGINT/SIGTERM, `--duration` or `--exit-when-idle` says
//!    stop, printing a stats line per second (unless `--quiet`);
//! 5. stop the workers, stop the ports, read their counters, close them and print the
//!    final counters ([`super::stats`]); the gateway adds the tracker's counters. The
//!    caller then runs `rte_eal_cleanup`.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use super::commands::{ControlContext, GatewayInfo};
use super::socket::{ControlServer, DEFAULT_BUDGET};
use super::stats::{ct_line, gateway_line, mpps, PortLine, WorkerLine};
use crate::cli::AppArgs;
use crate::config::{Config, Role};
use crate::conntrack::stats::CtCountersSnapshot;
use crate::conntrack::{Conntrack, CtConfig, CtWorker};
use crate::dpdk::{
    self, Eal, Lcore, Mempool, Port, PortCaps, PortStats, Tsc, BURST_SIZE, DEFAULT_MBUF_BUF_SIZE,
};
use crate::pipeline::forward::{Forward, MAX_PORTS};
use crate::pipeline::gateway::{GatewayShared, GatewayStep};
use crate::pipeline::ports::{default_pairs, plan, PortLimits, PortPlan, PortQueues, WorkerQueues};
use crate::pipeline::vlan::VlanTable;
use crate::pipeline::worker::{Worker, WorkerCounters, WorkerSnapshot};
use crate::pipeline::{DropCounters, DropReason, MacAddr, PacketStep};

/// RX/TX descriptors requested per queue (the device may adjust them).
const RX_DESC: u16 = 1024;
const TX_DESC: u16 = 1024;
/// Per-lcore mempool cache (DPDK's maximum is 512).
const MEMPOOL_CACHE: u32 = 256;
/// How often the control lcore wakes up (clock, sweep, control socket, stop conditions).
const TICK: Duration = Duration::from_millis(10);
/// At most this many buckets are swept per tick, so a very short sweep interval on a
/// large table cannot stall the control socket (about a millisecond of work).
pub const MAX_SWEEP_BUCKETS_PER_TICK: usize = 65_536;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Signal,
    Duration,
    Idle,
}

/// A launched worker as the control lcore sees it.
struct WorkerHandle {
    lcore: Lcore,
    counters: Arc<WorkerCounters>,
    queues: Vec<(u16, u16)>,
    tx: Vec<(u16, u16)>,
}

/// The datapath of a run.
enum Mode {
    Gateway(GatewayCtl),
    Forward(Forward),
}

/// What the gateway mode adds to the control lcore.
struct GatewayCtl {
    config: Config,
    ct: Arc<Conntrack>,
    shared: Arc<GatewayShared>,
    server: ControlServer,
    sweep_interval_ms: AtomicU32,
}

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
/// gateway's configuration; `None` selects the forwarding mode (`--pair`).
pub fn run(eal: &Eal, args: &AppArgs, config: Option<&Config>) -> Result<(), String> {
    run_report(eal, args, config, true).map(|_| ())
}

/// Counts runs in this process, so a second run names its mempool apart from the first.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// Prints to stdout when `$verbose`.
macro_rules! say {
    ($verbose:expr, $($arg:tt)*) => {
        if $verbose {
            println!($($arg)*);
        }
    };
}

/// [`run`], returning the final counters as a [`RunReport`]; with `verbose` false it
/// prints nothing to stdout (errors still go to stderr), so the caller owns stdout.
pub fn run_report(
    eal: &Eal,
    args: &AppArgs,
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

    let port_ids = dpdk::available_ports(eal);
    let mut caps = Vec::with_capacity(port_ids.len());
    for &id in &port_ids {
        caps.push(dpdk::port_caps(eal, id).map_err(|e| e.to_string())?);
    }
    let lcores = dpdk::worker_lcores(eal);
    let limits: Vec<PortLimits> = caps
        .iter()
        .map(|c| PortLimits {
            id: c.id,
            max_rx_queues: c.max_rx_queues,
            max_tx_queues: c.max_tx_queues,
            rss: c.supports_rss(),
        })
        .collect();
    let plan = match config {
        Some(cfg) => {
            check_ports(cfg, &port_ids)?;
            let ids: Vec<u16> = cfg.port_ids();
            gateway_plan(&limits, &ids, lcores.len())?
        }
        None => {
            let pairs = if args.pairs.is_empty() {
                default_pairs(&port_ids).map_err(|e| e.to_string())?
            } else {
                args.pairs.clone()
            };
            plan(&limits, &pairs, lcores.len()).map_err(|e| e.to_string())?
        }
    };

    let main_socket = dpdk::socket_of_lcore(eal, dpdk::main_lcore(eal));
    let socket_of = |id: u16| {
        caps.iter()
            .find(|c| c.id == id)
            .and_then(|c| c.socket)
            .unwrap_or(main_socket)
    };
    let pools = create_mempools(eal, &plan, &socket_of, args.mbufs.unwrap_or(0), run_no)?;

    // Configure every port in the plan; `ports` closes them on any early return.
    let mut ports: Vec<Port> = Vec::with_capacity(plan.ports.len());
    let mut macs: Vec<(u16, MacAddr)> = Vec::with_capacity(plan.ports.len());
    for pq in &plan.ports {
        let socket = socket_of(pq.id);
        let pool = pools
            .iter()
            .find(|(s, _)| *s == socket)
            .map(|(_, p)| *p)
            .ok_or_else(|| format!("no mempool for socket {socket}"))?;
        let conf = dpdk::PortConfig {
            rx_queues: pq.rx_queues,
            tx_queues: pq.tx_queues,
            rx_desc: RX_DESC,
            tx_desc: TX_DESC,
            rss: pq.rss,
        };
        let port = Port::configure(eal, pq.id, &conf, &pool).map_err(|e| e.to_string())?;
        let mac = MacAddr(port.mac().map_err(|e| e.to_string())?);
        let c = caps.iter().find(|c| c.id == pq.id);
        let tail = match config.and_then(|cfg| cfg.port(pq.id)) {
            Some(pc) => port_role_text(pc),
            None => format!("peer={}", pq.peer),
        };
        say!(
            verbose,
            "port {}: name={} driver={} mac={} socket={} rx_queues={} tx_queues={} rss={} {tail}",
            pq.id,
            c.map_or("?", |c| c.name.as_str()),
            c.map_or("?", |c| c.driver.as_str()),
            mac,
            socket,
            pq.rx_queues,
            pq.tx_queues,
            if pq.rss { "on" } else { "off" },
        );
        macs.push((pq.id, mac));
        ports.push(port);
    }

    // The mode's datapath state, built before the ports start.
    let mode = match config {
        Some(cfg) => {
            let ct = Arc::new(build_tracker(cfg, lcores.len()));
            let shared = GatewayShared::new(cfg, Arc::clone(&ct), &macs)?;
            let server = ControlServer::bind(&args.socket)?;
            // DPDK telemetry (/ctgate/stats, /ctgate/zones, /ctgate/buckets): useful, not
            // essential, so a failure is reported and the gateway runs on.
            if let Err(e) = dpdk::register_telemetry(eal, Arc::clone(&ct)) {
                eprintln!("ctgate: telemetry commands not registered: {e}");
            }
            Mode::Gateway(GatewayCtl {
                config: cfg.clone(),
                ct,
                shared,
                server,
                sweep_interval_ms: AtomicU32::new(cfg.datapath.sweep_interval_ms),
            })
        }
        None => Mode::Forward(Forward::new(&plan.pairs, &macs, args.next_hop_mac)?),
    };
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
            g.shared.run_clock_from(start);
            g.shared.set_now_ms(clock_ms(start, Instant::now()));
            // GatewayShared::new accepted the same table: it cannot fail here.
            let vlans = VlanTable::from_config(&g.config).unwrap_or_default();
            launch_workers(
                eal,
                &lcores,
                &plan,
                &ports,
                &stop,
                tsc_hz,
                verbose,
                |i, wq, w| {
                    let step = GatewayStep::new(Arc::clone(&g.shared), i);
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
    let reason = match launch_error {
        Some(_) => None,
        None => {
            match &gw {
                Some(g) => say!(
                    verbose,
                    "ctgate: gateway on {} ports with {} workers, config {}, control socket {} (Ctrl-C to stop)",
                    ports.len(),
                    workers.len(),
                    g.config.source,
                    g.server.path().display()
                ),
                None => say!(
                    verbose,
                    "ctgate: forwarding on {} ports with {} workers (Ctrl-C to stop)",
                    ports.len(),
                    workers.len()
                ),
            }
            flush();
            let env = LoopEnv {
                args,
                ports: &ports,
                caps: &caps,
                workers: &workers,
                signalled: &signalled,
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
    if let Some(e) = launch_error {
        return Err(e);
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(reason) = reason {
        say!(
            verbose,
            "ctgate: stopping ({})",
            match reason {
                StopReason::Signal => "signal",
                StopReason::Duration => "duration reached",
                StopReason::Idle => "input idle",
            }
        );
    }
    for (id, s) in &port_stats {
        say!(verbose, "{}", port_line(*id, s, &snapshots));
    }
    for (i, (w, snap)) in workers.iter().zip(&snapshots).enumerate() {
        say!(verbose, "{}", worker_line(i, w, snap, tsc_hz));
    }
    let conntrack = gw.as_ref().map(|g| (g.ct.n_conns(), g.ct.counters()));
    if let Some(g) = &gw {
        say!(verbose, "{}", ct_line(g.ct.n_conns(), &g.ct.counters()));
        say!(verbose, "{}", gateway_line(&g.shared.counters()));
    }
    flush();
    let report = RunReport {
        drops: total_drops(&snapshots),
        ports: port_stats,
        workers: snapshots,
        secs,
        tsc_hz,
        conntrack,
    };
    // Dropping `gw` closes the control socket and removes its file.
    drop(gw);
    if failed_workers.is_empty() {
        Ok(report)
    } else {
        Err(failed_workers.join("; "))
    }
}

/// The tracker as the configuration describes it: size, sequence checking, limits and
/// timeout overrides (seconds in the file, milliseconds in the tracker).
pub fn build_tracker(cfg: &Config, workers: usize) -> Conntrack {
    let ct = Conntrack::new(CtConfig {
        max_conns: cfg.datapath.max_conns,
        n_buckets: cfg.datapath.buckets,
        workers: workers.max(1),
        tcp_seq_check: cfg.datapath.tcp_seq_check,
        hash_seed: None,
    });
    ct.zones().set_default_limit(cfg.default_limit);
    for &(zone, limit) in &cfg.zone_limits {
        ct.zones().set_limit(zone, limit);
    }
    for &(attr, secs) in &cfg.timeouts {
        ct.default_policy().set_ms(attr, secs.saturating_mul(1000));
    }
    for (zone, list) in &cfg.zone_timeouts {
        let z = ct.zones().get_or_create(*zone);
        for &(attr, secs) in list {
            z.policy.set_ms(attr, secs.saturating_mul(1000));
        }
    }
    ct
}

/// Every port of the configuration must be among the ports DPDK probed.
fn check_ports(cfg: &Config, probed: &[u16]) -> Result<(), String> {
    let list = if probed.is_empty() {
        "none".to_string()
    } else {
        probed
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    for (i, p) in cfg.ports.iter().enumerate() {
        if !probed.contains(&p.port) {
            return Err(format!(
                "{}: port[{i}]: port {} ({}) does not exist: DPDK found ports {list}; give EAL one device per configured port, in port order (e.g. --vdev net_tap0,iface=ctg-in --vdev net_tap1,iface=ctg-out), or use --pair A:B for the plain forwarding mode",
                cfg.source,
                p.port,
                role_name(p.role),
            ));
        }
    }
    Ok(())
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Inside => "inside",
        Role::Outside => "outside",
    }
}

fn port_role_text(pc: &crate::config::PortConfig) -> String {
    let mut s = format!("role={} zone={}", role_name(pc.role), pc.zone);
    if let Some((a, l)) = pc.ipv4 {
        let _ = write!(s, " ipv4={a}/{l}");
    }
    if let Some((a, l)) = pc.ipv6 {
        let _ = write!(s, " ipv6={a}/{l}");
    }
    s
}

/// The gateway's queue plan: any port may send to any port (including the one a frame
/// came in on: ARP/NDP and echo replies), so every worker gets its own TX queue on every
/// port; RX queues are one per worker on RSS-capable ports, else one, dealt to the
/// workers round-robin, port-major.
pub fn gateway_plan(
    limits: &[PortLimits],
    ports: &[u16],
    workers: usize,
) -> Result<PortPlan, String> {
    if workers == 0 {
        return Err(
            "no worker lcore: give EAL at least two lcores (the first is the control lcore), e.g. -l 0,1"
                .into(),
        );
    }
    let want = u16::try_from(workers).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(ports.len());
    let mut ids = ports.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for &id in &ids {
        let l = limits
            .iter()
            .find(|l| l.id == id)
            .ok_or_else(|| format!("port {id} does not exist"))?;
        if usize::from(id) >= MAX_PORTS {
            return Err(format!(
                "port {id} is beyond the {MAX_PORTS} ports supported"
            ));
        }
        if l.max_tx_queues < want {
            return Err(format!(
                "port {id} has {} TX queues, fewer than the {workers} workers (each needs its own): use at most {} worker lcores",
                l.max_tx_queues, l.max_tx_queues
            ));
        }
        let rx = if l.rss { want.min(l.max_rx_queues) } else { 1 };
        if rx == 0 {
            return Err(format!("port {id} has no RX queue"));
        }
        out.push(PortQueues {
            id,
            peer: id,
            rx_queues: rx,
            tx_queues: want,
            rss: rx > 1,
        });
    }
    let mut ws = vec![WorkerQueues::default(); workers];
    let mut next = 0usize;
    for p in &out {
        for q in 0..p.rx_queues {
            ws[next % workers].rx.push((p.id, q));
            next += 1;
        }
    }
    for (w, wq) in ws.iter_mut().enumerate() {
        let q = u16::try_from(w).unwrap_or(u16::MAX);
        wq.tx = out.iter().map(|p| (p.id, q)).collect();
    }
    Ok(PortPlan {
        pairs: Vec::new(),
        ports: out,
        workers: ws,
    })
}

/// Launches one worker per lcore. `make(i, queues, new_worker)` builds worker `i`:
/// `new_worker(step)` makes the [`Worker`] over its queues, and `make` may adjust it.
/// Returns the launched workers and the first error.
#[allow(clippy::too_many_arguments)]
fn launch_workers<S, F>(
    eal: &Eal,
    lcores: &[Lcore],
    plan: &PortPlan,
    ports: &[Port],
    stop: &Arc<AtomicBool>,
    tsc_hz: u64,
    verbose: bool,
    mut make: F,
) -> (Vec<WorkerHandle>, Option<String>)
where
    S: PacketStep + 'static,
    F: FnMut(
        usize,
        &WorkerQueues,
        &mut dyn FnMut(S) -> Result<Worker<S>, String>,
    ) -> Result<Worker<S>, String>,
{
    let mut workers: Vec<WorkerHandle> = Vec::with_capacity(lcores.len());
    for (i, (&lcore, wq)) in lcores.iter().zip(&plan.workers).enumerate() {
        let counters = Arc::new(WorkerCounters::default());
        let mut new_worker = |step: S| {
            let rx = wq
                .rx
                .iter()
                .filter_map(|&(p, q)| ports.iter().find(|x| x.id() == p)?.rx_queue(q))
                .collect();
            let tx = wq
                .tx
                .iter()
                .filter_map(|&(p, q)| ports.iter().find(|x| x.id() == p)?.tx_queue(q))
                .collect();
            Worker::new(
                rx,
                tx,
                step,
                Arc::clone(&counters),
                Arc::clone(stop),
                tsc_hz,
            )
        };
        let worker = match make(i, wq, &mut new_worker) {
            Ok(w) => w,
            Err(e) => return (workers, Some(e)),
        };
        say!(
            verbose,
            "worker {i}: lcore={} rx={} tx={}",
            lcore.0,
            pairs_list(&wq.rx),
            pairs_list(&wq.tx)
        );
        if let Err(e) = dpdk::launch(eal, lcore, move || worker.run()) {
            return (workers, Some(e.to_string()));
        }
        workers.push(WorkerHandle {
            lcore,
            counters,
            queues: wq.rx.clone(),
            tx: wq.tx.clone(),
        });
    }
    (workers, None)
}

/// One mempool per NUMA socket that has ports, sized for every descriptor, TX buffer and
/// per-lcore cache that may hold an mbuf at once, and at least `at_least` (`--mbufs`).
fn create_mempools(
    eal: &Eal,
    plan: &PortPlan,
    socket_of: &dyn Fn(u16) -> u32,
    at_least: u32,
    run_no: u32,
) -> Result<Vec<(u32, Mempool)>, String> {
    let mut sockets: Vec<u32> = plan.ports.iter().map(|p| socket_of(p.id)).collect();
    sockets.sort_unstable();
    sockets.dedup();
    let workers = plan.workers.len() as u32;
    let mut pools = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let rings: u32 = plan
            .ports
            .iter()
            .filter(|p| socket_of(p.id) == socket)
            .map(|p| {
                u32::from(p.rx_queues) * u32::from(RX_DESC)
                    + u32::from(p.tx_queues) * u32::from(TX_DESC)
            })
            .sum();
        let in_flight =
            workers * (BURST_SIZE as u32 * (1 + plan.ports.len() as u32) + MEMPOOL_CACHE);
        let want = (rings + in_flight + 1024).max(8191).max(at_least);
        // Mempools are most compact at 2^n - 1 elements.
        let n = want
            .checked_next_power_of_two()
            .unwrap_or(want)
            .saturating_sub(1)
            .max(want);
        // Mempools live until EAL cleanup: a later run in the same process needs a new name.
        let name = if run_no == 0 {
            format!("ctgate_mbuf_s{socket}")
        } else {
            format!("ctgate_mbuf_s{socket}_r{run_no}")
        };
        let pool = Mempool::new(
            eal,
            &name,
            n,
            MEMPOOL_CACHE,
            DEFAULT_MBUF_BUF_SIZE,
            i32::try_from(socket).unwrap_or(-1),
        )
        .map_err(|e| e.to_string())?;
        pools.push((socket, pool));
    }
    Ok(pools)
}

fn report_links(ports: &[Port], caps: &[PortCaps]) {
    for p in ports {
        let name = caps
            .iter()
            .find(|c| c.id == p.id())
            .map_or("?", |c| c.name.as_str());
        match p.link() {
            Ok(l) => println!(
                "port {} ({name}): link {} {} Mbps",
                p.id(),
                if l.up { "up" } else { "down" },
                l.speed_mbps
            ),
            Err(e) => println!("port {} ({name}): link unknown ({e})", p.id()),
        }
    }
}

fn pairs_list(v: &[(u16, u16)]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|(p, q)| format!("{p}:{q}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn flush() {
    let _ = std::io::stdout().flush();
}

/// Milliseconds on the tracker clock: time since start, plus one so that no connection
/// ever has an expiry of 0.
fn clock_ms(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.duration_since(start).as_millis()).unwrap_or(u64::MAX) + 1
}

/// Sums the workers' drops of frames that arrived on `port`.
fn port_drops(port: u16, snapshots: &[WorkerSnapshot]) -> u64 {
    snapshots
        .iter()
        .filter_map(|s| s.port_drops.get(usize::from(port)))
        .sum()
}

fn port_line(port: u16, s: &PortStats, snapshots: &[WorkerSnapshot]) -> PortLine {
    PortLine {
        port,
        rx: s.ipackets,
        tx: s.opackets,
        dropped: port_drops(port, snapshots),
        rx_missed: s.imissed,
        rx_nombuf: s.rx_nombuf,
        rx_errors: s.ierrors,
        tx_errors: s.oerrors,
    }
}

fn worker_line(i: usize, w: &WorkerHandle, snap: &WorkerSnapshot, tsc_hz: u64) -> WorkerLine {
    WorkerLine {
        worker: i,
        lcore: w.lcore.0,
        rx: snap.rx,
        tx: snap.tx,
        drops: snap.drops,
        secs: snap.busy_tsc as f64 / tsc_hz.max(1) as f64,
        queues: w.queues.clone(),
        generated: snap.generated,
    }
}

/// Drops summed over the workers, by reason.
fn total_drops(snapshots: &[WorkerSnapshot]) -> DropCounters {
    let mut d = DropCounters::default();
    for s in snapshots {
        for r in DropReason::ALL {
            d.add(r, s.drops.get(r));
        }
    }
    d
}

/// What the control loop reads.
struct LoopEnv<'a> {
    args: &'a AppArgs,
    ports: &'a [Port],
    caps: &'a [PortCaps],
    workers: &'a [WorkerHandle],
    signalled: &'a AtomicBool,
    start: Instant,
    tsc_hz: u64,
    main_lcore: Lcore,
}

/// `show` and `stats` of the control socket, from the ports and the workers' counters.
struct Info<'a> {
    env: &'a LoopEnv<'a>,
    config: &'a Config,
    shared: &'a GatewayShared,
    socket: String,
    sweep_interval_ms: u32,
}

impl GatewayInfo for Info<'_> {
    fn show(&self) -> String {
        let env = self.env;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ctgate gateway: config {}, control socket {}",
            self.config.source, self.socket
        );
        for p in env.ports {
            let c = env.caps.iter().find(|c| c.id == p.id());
            let mac = p.mac().map(|m| MacAddr(m).to_string());
            let _ = write!(
                s,
                "port {}: name={} driver={} mac={} rx_queues={} tx_queues={}",
                p.id(),
                c.map_or("?", |c| c.name.as_str()),
                c.map_or("?", |c| c.driver.as_str()),
                mac.as_deref().unwrap_or("?"),
                p.rx_queue_count(),
                p.tx_queue_count(),
            );
            if let Some(pc) = self.config.port(p.id()) {
                let _ = write!(s, " {}", port_role_text(pc));
            }
            match p.link() {
                Ok(l) => {
                    let _ = writeln!(
                        s,
                        " link={} speed={}",
                        if l.up { "up" } else { "down" },
                        l.speed_mbps
                    );
                }
                Err(_) => s.push_str(" link=unknown\n"),
            }
        }
        let _ = writeln!(s, "control lcore: {}", env.main_lcore.0);
        for (i, w) in env.workers.iter().enumerate() {
            let _ = writeln!(
                s,
                "worker {i}: lcore={} rx={} tx={}",
                w.lcore.0,
                pairs_list(&w.queues),
                pairs_list(&w.tx)
            );
        }
        let _ = writeln!(s, "sweep interval: {} ms", self.sweep_interval_ms);
        let _ = writeln!(s, "uptime: {}s", env.start.elapsed().as_secs());
        s
    }

    fn stats(&self) -> String {
        let env = self.env;
        let snapshots: Vec<WorkerSnapshot> =
            env.workers.iter().map(|w| w.counters.snapshot()).collect();
        let mut s = String::new();
        for p in env.ports {
            let st = p.stats().unwrap_or_default();
            let _ = writeln!(s, "{}", port_line(p.id(), &st, &snapshots));
        }
        for (i, (w, snap)) in env.workers.iter().zip(&snapshots).enumerate() {
            let _ = writeln!(s, "{}", worker_line(i, w, snap, env.tsc_hz));
        }
        let d = total_drops(&snapshots);
        let _ = write!(s, "drops total={}", d.total());
        for r in DropReason::ALL {
            let _ = write!(s, " {}={}", r.name(), d.get(r));
        }
        s.push('\n');
        let _ = writeln!(s, "{}", gateway_line(&self.shared.counters()));
        s
    }

    fn version_extra(&self) -> Option<String> {
        Some(format!("{}\n", dpdk::dpdk_version()))
    }
}

/// Paces the sweep: a full pass over the buckets per sweep interval, in bounded steps.
#[derive(Debug, Default)]
struct SweepPacer {
    /// Buckets owed (fractional), capped at one full pass.
    debt: f64,
    last_ms: u64,
}

impl SweepPacer {
    /// Buckets to sweep at `now_ms` for a table of `n_buckets` and `interval_ms`.
    fn due(&mut self, now_ms: u64, n_buckets: usize, interval_ms: u32) -> usize {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.last_ms = now_ms;
        let per_ms = n_buckets as f64 / f64::from(interval_ms.max(1));
        self.debt = (self.debt + elapsed * per_ms).min(n_buckets as f64);
        (self.debt as usize).min(MAX_SWEEP_BUCKETS_PER_TICK)
    }

    fn done(&mut self, buckets: usize) {
        self.debt = (self.debt - buckets as f64).max(0.0);
    }
}

/// Ticks until a stop condition: clock, sweep and control socket (gateway mode), and a
/// stats line per second unless quiet.
fn control_loop(env: &LoopEnv, mut gw: Option<&mut GatewayCtl>) -> StopReason {
    let args = env.args;
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
    let mut prev_ct = gw.as_ref().map(|g| g.ct.counters()).unwrap_or_default();
    let ct_arc = gw.as_ref().map(|g| Arc::clone(&g.ct));
    let mut handle: Option<CtWorker<'_>> = ct_arc.as_deref().map(Conntrack::control_handle);
    let mut pacer = SweepPacer {
        debt: 0.0,
        last_ms: clock_ms(start, start),
    };
    loop {
        let now = Instant::now();
        let mut busy = false;
        if let (Some(g), Some(h)) = (gw.as_deref_mut(), handle.as_mut()) {
            let now_ms = clock_ms(start, now);
            g.shared.set_now_ms(now_ms);
            let interval = g.sweep_interval_ms.load(Ordering::Relaxed);
            let due = pacer.due(now_ms, g.ct.table().n_buckets(), interval);
            if due > 0 {
                let rep = h.sweep_expired(now_ms, due);
                pacer.done(rep.buckets);
            }
            let info = Info {
                env,
                config: &g.config,
                shared: &g.shared,
                socket: g.server.path().display().to_string(),
                sweep_interval_ms: interval,
            };
            let ctx = ControlContext {
                conntrack: &g.ct,
                sweep_interval_ms: &g.sweep_interval_ms,
                info: &info,
                now: now_ms,
            };
            busy = g.server.poll(&ctx, DEFAULT_BUDGET).busy;
        }
        if env.signalled.load(Ordering::Relaxed) {
            return StopReason::Signal;
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
                    " | port={} rx={} tx={} dropped={} rx_mpps={:.3} tx_mpps={:.3}",
                    p.id(),
                    s.ipackets,
                    s.opackets,
                    port_drops(p.id(), &snapshots),
                    mpps(s.ipackets.saturating_sub(old.ipackets), secs),
                    mpps(s.opackets.saturating_sub(old.opackets), secs),
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
            std::thread::sleep(TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(id: u16, q: u16, rss: bool) -> PortLimits {
        PortLimits {
            id,
            max_rx_queues: q,
            max_tx_queues: q,
            rss,
        }
    }

    #[test]
    fn gateway_plan_gives_every_worker_a_tx_queue_on_every_port() {
        let p = gateway_plan(&[lim(0, 1, false), lim(1, 1, false)], &[0, 1], 1).unwrap();
        assert_eq!(p.workers[0].rx, vec![(0, 0), (1, 0)]);
        assert_eq!(p.workers[0].tx, vec![(0, 0), (1, 0)]);
        let p = gateway_plan(&[lim(0, 8, false), lim(1, 8, false)], &[1, 0], 2).unwrap();
        assert_eq!(p.workers[0].rx, vec![(0, 0)]);
        assert_eq!(p.workers[1].rx, vec![(1, 0)]);
        assert_eq!(p.workers[1].tx, vec![(0, 1), (1, 1)]);
        assert!(p.ports.iter().all(|q| q.tx_queues == 2 && q.rx_queues == 1));
        let p = gateway_plan(&[lim(0, 8, true), lim(1, 8, true)], &[0, 1], 2).unwrap();
        assert_eq!(p.workers[1].rx, vec![(0, 1), (1, 1)]);
        let e = gateway_plan(&[lim(0, 1, false), lim(1, 1, false)], &[0, 1], 2).unwrap_err();
        assert!(e.contains("at most 1 worker"), "{e}");
        assert!(gateway_plan(&[lim(0, 1, false)], &[0, 1], 1).is_err());
        assert!(gateway_plan(&[lim(0, 1, false)], &[0], 0).is_err());
    }

    #[test]
    fn sweep_pacer_spreads_a_pass_over_the_interval_and_bounds_a_tick() {
        let mut p = SweepPacer::default();
        // 1024 buckets over 1000 ms: about 10 per 10 ms tick.
        let mut total = 0;
        for t in 1..=100u64 {
            let d = p.due(t * 10, 1024, 1000);
            p.done(d);
            total += d;
        }
        assert!((1010..=1024).contains(&total), "{total}");
        // A huge table and a tiny interval: capped per tick, debt capped at a pass.
        let mut p = SweepPacer::default();
        assert_eq!(p.due(10, 1 << 24, 1), MAX_SWEEP_BUCKETS_PER_TICK);
        assert!(p.debt <= (1u64 << 24) as f64);
    }

    #[test]
    fn tracker_follows_the_config() {
        let text = "[datapath]\nmax_conns = 1000\nbuckets = 256\ntcp_seq_check = false\n\
            [[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\nzone = 3\n\
            [[port]]\nport = 1\nrole = \"outside\"\nipv4 = \"192.0.2.1/24\"\n\
            [limits]\ndefault = 7\nzones = [{ zone = 3, limit = 2 }]\n\
            [timeouts]\nudp_first = 5\n[[timeouts.zone]]\nzone = 3\ntcp_established = 9\n";
        let cfg = Config::parse(text, "t.toml").unwrap();
        let ct = build_tracker(&cfg, 2);
        assert_eq!(ct.max_conns(), 1000);
        assert_eq!(ct.table().n_buckets(), 256);
        assert!(!ct.tcp_seq_check());
        assert_eq!(ct.zones().default_limit(), 7);
        assert_eq!(ct.zones().explicit_limits(), vec![(3, 2, 0)]);
        use crate::conntrack::TimeoutAttr;
        assert_eq!(
            ct.default_policy().get_ms(TimeoutAttr::UdpFirst),
            Some(5000)
        );
        assert_eq!(
            ct.zones()
                .get(3)
                .unwrap()
                .policy
                .get_ms(TimeoutAttr::TcpEstablished),
            Some(9000)
        );
    }

    #[test]
    fn missing_config_ports_are_named() {
        let cfg = Config::embedded().unwrap();
        assert!(check_ports(&cfg, &[0, 1]).is_ok());
        let e = check_ports(&cfg, &[0]).unwrap_err();
        assert!(
            e.contains("port[1]: port 1 (outside) does not exist: DPDK found ports 0"),
            "{e}"
        );
    }
}
