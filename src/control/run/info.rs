//! What the running process tells about itself: the final and on-demand counter lines of
//! ports and workers, and the control socket's `show`/`stats` ([`GatewayInfo`]) read
//! from the ports and the workers' counters.

use std::fmt::Write as _;
use std::time::Instant;

use super::launch::{pairs_list, WorkerHandle};
use super::setup::{port_role_text, vlan_lines};
use crate::control::commands::{GatewayInfo, LiveConfig};
use crate::control::counter_lines::{gateway_line, PortLine, WorkerLine};
use crate::control::reload::LiveGateway;
use crate::dpdk::{self, Lcore, Port, PortCaps, PortStats};
use crate::pipeline::worker::WorkerSnapshot;
use crate::pipeline::{DropCounters, DropReason, MacAddr};

/// Sums the workers' drops of frames that arrived on `port`.
pub(super) fn port_drops(port: u16, snapshots: &[WorkerSnapshot]) -> u64 {
    snapshots
        .iter()
        .filter_map(|s| s.port_drops.get(usize::from(port)))
        .sum()
}

pub(super) fn port_line(port: u16, s: &PortStats, snapshots: &[WorkerSnapshot]) -> PortLine {
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

pub(super) fn worker_line(
    i: usize,
    w: &WorkerHandle,
    snap: &WorkerSnapshot,
    tsc_hz: u64,
) -> WorkerLine {
    WorkerLine {
        worker: i,
        lcore: w.lcore.0,
        rx: snap.rx,
        tx: snap.tx,
        drops: snap.drops,
        secs: snap.run_tsc as f64 / tsc_hz.max(1) as f64,
        busy_secs: snap.busy_tsc as f64 / tsc_hz.max(1) as f64,
        queues: w.queues.clone(),
        generated: snap.generated,
        consumed: snap.consumed,
    }
}

/// Drops summed over the workers, by reason.
pub(super) fn total_drops(snapshots: &[WorkerSnapshot]) -> DropCounters {
    let mut d = DropCounters::default();
    for s in snapshots {
        for r in DropReason::ALL {
            d.add(r, s.drops.get(r));
        }
    }
    d
}

/// `show` and `stats` of the control socket, from the ports and the workers' counters.
pub(super) struct Info<'a> {
    pub ports: &'a [Port],
    pub caps: &'a [PortCaps],
    pub workers: &'a [WorkerHandle],
    pub main_lcore: Lcore,
    pub start: Instant,
    pub tsc_hz: u64,
    /// The configuration in force and its table versions (`reload` changes them).
    pub live: &'a LiveGateway,
    pub socket: String,
    pub sweep_interval_ms: u32,
    /// The control lcore's event consumers (their `stats` lines).
    pub consumers: &'a crate::control::event_consumers::Consumers,
}

impl GatewayInfo for Info<'_> {
    fn show(&self) -> String {
        let config = self.live.config();
        let config = &*config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ctgate gateway: config {}, control socket {}",
            config.source, self.socket
        );
        for p in self.ports {
            let c = self.caps.iter().find(|c| c.id == p.id());
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
            if let Some(pc) = config.port(p.id()) {
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
            for l in vlan_lines(config, p.id()) {
                let _ = writeln!(s, "{l}");
            }
        }
        let _ = writeln!(s, "control lcore: {}", self.main_lcore.0);
        for (i, w) in self.workers.iter().enumerate() {
            let _ = writeln!(
                s,
                "worker {i}: lcore={} rx={} tx={}",
                w.lcore.0,
                pairs_list(&w.queues),
                pairs_list(&w.tx)
            );
        }
        let _ = writeln!(s, "sweep interval: {} ms", self.sweep_interval_ms);
        let _ = writeln!(s, "uptime: {}s", self.start.elapsed().as_secs());
        s
    }

    fn stats(&self) -> String {
        let snapshots: Vec<WorkerSnapshot> =
            self.workers.iter().map(|w| w.counters.snapshot()).collect();
        let mut s = String::new();
        for p in self.ports {
            let st = p.stats().unwrap_or_default();
            let _ = writeln!(s, "{}", port_line(p.id(), &st, &snapshots));
        }
        for (i, (w, snap)) in self.workers.iter().zip(&snapshots).enumerate() {
            let _ = writeln!(s, "{}", worker_line(i, w, snap, self.tsc_hz));
        }
        let d = total_drops(&snapshots);
        let _ = write!(s, "drops total={}", d.total());
        for r in DropReason::ALL {
            let _ = write!(s, " {}={}", r.name(), d.get(r));
        }
        s.push('\n');
        let _ = writeln!(s, "{}", gateway_line(&self.live.shared().counters()));
        s.push_str(&self.consumers.stats_lines());
        s
    }

    fn sync_status(&self) -> Option<String> {
        self.consumers.status("sync")
    }

    fn version_extra(&self) -> Option<String> {
        Some(format!("{}\n", dpdk::dpdk_version()))
    }

    fn live(&self) -> Option<&dyn LiveConfig> {
        Some(self.live)
    }
}
