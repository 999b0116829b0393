//! One run of the gateway on the main (control) lcore:
//!
//! 1. list the ports EAL probed, pair them, plan queues ([`crate::pipeline::ports`]);
//! 2. create one mempool per NUMA socket in use, configure and start the ports;
//! 3. launch one [`Worker`] per worker lcore;
//! 4. print a stats line per second (unless `--quiet`) until SIGINT/SIGTERM,
//!    `--duration` or `--exit-when-idle` says stop;
//! 5. stop the workers, stop the ports, read their counters, close them and print the
//!    final counters ([`super::stats`]). The caller then runs `rte_eal_cleanup`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use super::stats::{mpps, PortLine, WorkerLine};
use crate::cli::AppArgs;
use crate::dpdk::{
    self, Eal, Lcore, Mempool, Port, PortCaps, PortConfig, PortStats, Tsc, BURST_SIZE,
    DEFAULT_MBUF_BUF_SIZE,
};
use crate::pipeline::forward::Forward;
use crate::pipeline::ports::{default_pairs, plan, PortLimits, PortPlan};
use crate::pipeline::worker::{Worker, WorkerCounters, WorkerSnapshot};
use crate::pipeline::MacAddr;

/// RX/TX descriptors requested per queue (the device may adjust them).
const RX_DESC: u16 = 1024;
const TX_DESC: u16 = 1024;
/// Per-lcore mempool cache (DPDK's maximum is 512).
const MEMPOOL_CACHE: u32 = 256;
/// How often the control lcore wakes up to check for a stop condition.
const TICK: Duration = Duration::from_millis(10);

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
}

/// Runs the gateway until it is told to stop; prints the final counters.
pub fn run(eal: &Eal, args: &AppArgs) -> Result<(), String> {
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
    let pairs = if args.pairs.is_empty() {
        default_pairs(&port_ids).map_err(|e| e.to_string())?
    } else {
        args.pairs.clone()
    };
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
    let plan = plan(&limits, &pairs, lcores.len()).map_err(|e| e.to_string())?;

    let main_socket = dpdk::socket_of_lcore(eal, dpdk::main_lcore(eal));
    let socket_of = |id: u16| {
        caps.iter()
            .find(|c| c.id == id)
            .and_then(|c| c.socket)
            .unwrap_or(main_socket)
    };
    let pools = create_mempools(eal, &plan, &socket_of)?;

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
        let conf = PortConfig {
            rx_queues: pq.rx_queues,
            tx_queues: pq.tx_queues,
            rx_desc: RX_DESC,
            tx_desc: TX_DESC,
            rss: pq.rss,
        };
        let port = Port::configure(eal, pq.id, &conf, &pool).map_err(|e| e.to_string())?;
        let mac = MacAddr(port.mac().map_err(|e| e.to_string())?);
        let c = caps.iter().find(|c| c.id == pq.id);
        println!(
            "port {}: name={} driver={} mac={} socket={} rx_queues={} tx_queues={} rss={} peer={}",
            pq.id,
            c.map_or("?", |c| c.name.as_str()),
            c.map_or("?", |c| c.driver.as_str()),
            mac,
            socket,
            pq.rx_queues,
            pq.tx_queues,
            if pq.rss { "on" } else { "off" },
            pq.peer
        );
        macs.push((pq.id, mac));
        ports.push(port);
    }
    let forward = Forward::new(&plan.pairs, &macs, args.next_hop_mac)?;
    for p in ports.iter_mut() {
        p.start().map_err(|e| e.to_string())?;
    }
    report_links(&ports, &caps);

    let stop = Arc::new(AtomicBool::new(false));
    let tsc_hz = Tsc::hz(eal);
    let mut workers: Vec<WorkerHandle> = Vec::with_capacity(lcores.len());
    let mut launch_error = None;
    for (i, (&lcore, wq)) in lcores.iter().zip(&plan.workers).enumerate() {
        let counters = Arc::new(WorkerCounters::default());
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
        let worker = Worker::new(
            rx,
            tx,
            forward.clone(),
            Arc::clone(&counters),
            Arc::clone(&stop),
            tsc_hz,
        );
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                launch_error = Some(e);
                break;
            }
        };
        println!(
            "worker {i}: lcore={} rx={} tx={}",
            lcore.0,
            pairs_list(&wq.rx),
            pairs_list(&wq.tx)
        );
        if let Err(e) = dpdk::launch(eal, lcore, move || worker.run()) {
            launch_error = Some(e.to_string());
            break;
        }
        workers.push(WorkerHandle {
            lcore,
            counters,
            queues: wq.rx.clone(),
        });
    }
    let reason = match launch_error {
        Some(_) => None,
        None => {
            println!(
                "ctgate: forwarding on {} ports with {} workers (Ctrl-C to stop)",
                ports.len(),
                workers.len()
            );
            flush();
            Some(control_loop(args, &ports, &workers, &signalled))
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
    for (id, s) in &port_stats {
        println!("{}", port_line(*id, s, &snapshots));
    }
    for (i, (w, snap)) in workers.iter().zip(&snapshots).enumerate() {
        let line = WorkerLine {
            worker: i,
            lcore: w.lcore.0,
            rx: snap.rx,
            tx: snap.tx,
            drops: snap.drops,
            secs: snap.busy_tsc as f64 / tsc_hz.max(1) as f64,
            queues: w.queues.clone(),
        };
        println!("{line}");
    }
    flush();
    if failed_workers.is_empty() {
        Ok(())
    } else {
        Err(failed_workers.join("; "))
    }
}

/// One mempool per NUMA socket that has ports, sized for every descriptor, TX buffer and
/// per-lcore cache that may hold an mbuf at once.
fn create_mempools(
    eal: &Eal,
    plan: &PortPlan,
    socket_of: &dyn Fn(u16) -> u32,
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
        let want = (rings + in_flight + 1024).max(8191);
        // Mempools are most compact at 2^n - 1 elements.
        let n = want
            .checked_next_power_of_two()
            .unwrap_or(want)
            .saturating_sub(1)
            .max(want);
        let name = format!("ctgate_mbuf_s{socket}");
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

/// Waits for a stop condition, printing a stats line per second unless quiet.
fn control_loop(
    args: &AppArgs,
    ports: &[Port],
    workers: &[WorkerHandle],
    signalled: &AtomicBool,
) -> StopReason {
    let start = Instant::now();
    let mut last_rx = 0u64;
    let mut last_activity = start;
    let mut next_report = start + Duration::from_secs(1);
    let mut prev: Vec<PortStats> = ports
        .iter()
        .map(|p| p.stats().unwrap_or_default())
        .collect();
    let mut prev_at = start;
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        if signalled.load(Ordering::Relaxed) {
            return StopReason::Signal;
        }
        if args
            .duration
            .is_some_and(|d| now.duration_since(start) >= d)
        {
            return StopReason::Duration;
        }
        if let Some(idle) = args.exit_when_idle {
            let rx: u64 = workers
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
            let secs = now.duration_since(prev_at).as_secs_f64();
            let snapshots: Vec<WorkerSnapshot> =
                workers.iter().map(|w| w.counters.snapshot()).collect();
            let mut line = format!("t={:.0}s", now.duration_since(start).as_secs_f64());
            for (p, old) in ports.iter().zip(prev.iter_mut()) {
                let s = p.stats().unwrap_or_default();
                line.push_str(&format!(
                    " | port={} rx={} tx={} dropped={} rx_mpps={:.3} tx_mpps={:.3}",
                    p.id(),
                    s.ipackets,
                    s.opackets,
                    port_drops(p.id(), &snapshots),
                    mpps(s.ipackets.saturating_sub(old.ipackets), secs),
                    mpps(s.opackets.saturating_sub(old.opackets), secs),
                ));
                *old = s;
            }
            prev_at = now;
            if !args.quiet {
                println!("{line}");
                flush();
            }
        }
    }
}
