//! The metrics the Prometheus endpoint serves ([`crate::control::metrics`]), rendered on
//! the control lcore once a second from what it already reads: ports' device counters,
//! the workers' published counters, the tracker, the zones, the fragment reassembler and
//! the configuration version in force. Names carry the `ctgate_` prefix, counters end in
//! `_total`, and what varies is a label (`port`, `worker`, `reason`, `zone`, `family`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::info::port_drops;
use super::launch::WorkerHandle;
use crate::conntrack::key::addr_to_ip;
use crate::conntrack::{Conntrack, CtState};
use crate::control::event_consumers::Consumers;
use crate::control::metrics::ExpositionWriter;
use crate::dpdk::Port;
use crate::pipeline::gateway::GatewayShared;
use crate::pipeline::worker::WorkerSnapshot;
use crate::pipeline::DropReason;

/// What the renderer reads.
pub(super) struct MetricsInput<'a> {
    pub ports: &'a [Port],
    pub workers: &'a [WorkerHandle],
    pub tsc_hz: u64,
    pub uptime_secs: f64,
    pub ct: &'a Conntrack,
    pub shared: &'a GatewayShared,
    pub generation: u64,
    pub nat: &'a NatUsage,
    /// The control lcore's event consumers (`ctgate_natlog_lost_total`, …).
    pub consumers: &'a Consumers,
}

/// Buckets the NAT usage count walks per control tick.
pub(super) const NAT_USAGE_BUCKETS_PER_TICK: usize = 16_384;

/// The SNAT ports in use per pool address and protocol, counted by a walk over the table
/// a bounded number of buckets per tick; the counts of the last complete pass are shown.
#[derive(Default)]
pub(super) struct NatUsage {
    cursor: usize,
    partial: BTreeMap<(IpAddr, &'static str), BTreeSet<u16>>,
    /// (address, protocol, ports in use) of the last complete pass.
    last: Vec<(IpAddr, &'static str, usize)>,
}

impl NatUsage {
    /// Walks the next `budget` buckets at `now` (ms on the tracker clock).
    pub(super) fn step(&mut self, ct: &Conntrack, now: u64, budget: usize) {
        let table = ct.table();
        let n = table.n_buckets();
        let end = self.cursor.saturating_add(budget.max(1)).min(n);
        let mut items: Vec<(u32, u32)> = Vec::new();
        for b in self.cursor..end {
            items.clear();
            table.for_each_in_bucket(b, |i, g| items.push((i, g)));
            for &(i, g) in &items {
                let Some(s) = ct.snapshot(i, g) else { continue };
                if s.nat & CtState::SNAT == 0 || s.expiry <= now {
                    continue;
                }
                let proto = match s.orig.proto {
                    6 => "tcp",
                    17 => "udp",
                    1 | 58 => "icmp",
                    _ => "other",
                };
                self.partial
                    .entry((addr_to_ip(s.reply.family, &s.reply.dst), proto))
                    .or_default()
                    .insert(s.reply.dport);
            }
        }
        self.cursor = end;
        if end >= n {
            self.cursor = 0;
            self.last = std::mem::take(&mut self.partial)
                .into_iter()
                .map(|((a, p), ports)| (a, p, ports.len()))
                .collect();
        }
    }
}

/// The exposition text.
pub(super) fn render(m: &MetricsInput) -> String {
    let mut w = ExpositionWriter::default();
    let snaps: Vec<WorkerSnapshot> = m.workers.iter().map(|w| w.counters.snapshot()).collect();

    let stats: Vec<(String, crate::dpdk::PortStats)> = m
        .ports
        .iter()
        .map(|p| (p.id().to_string(), p.stats().unwrap_or_default()))
        .collect();
    type Field = fn(&crate::dpdk::PortStats) -> u64;
    let port_families: [(&str, &str, Field); 8] = [
        ("rx_packets", "Packets received by the port.", |s| {
            s.ipackets
        }),
        ("tx_packets", "Packets sent by the port.", |s| s.opackets),
        ("rx_bytes", "Bytes received by the port.", |s| s.ibytes),
        ("tx_bytes", "Bytes sent by the port.", |s| s.obytes),
        (
            "rx_errors",
            "Erroneous packets received (device counter).",
            |s| s.ierrors,
        ),
        ("tx_errors", "Failed transmissions (device counter).", |s| {
            s.oerrors
        }),
        (
            "rx_missed",
            "Packets the device dropped for want of a descriptor.",
            |s| s.imissed,
        ),
        ("rx_nombuf", "Receive buffer allocation failures.", |s| {
            s.rx_nombuf
        }),
    ];
    for (name, help, f) in port_families {
        let n = format!("ctgate_port_{name}_total");
        w.family(&n, "counter", help);
        for (id, s) in &stats {
            w.sample(&n, &[("port", id)], f(s));
        }
    }
    w.family(
        "ctgate_port_dropped_total",
        "counter",
        "Frames received on the port that the workers dropped.",
    );
    for p in m.ports {
        let id = p.id().to_string();
        w.sample(
            "ctgate_port_dropped_total",
            &[("port", &id)],
            port_drops(p.id(), &snaps),
        );
    }

    w.family(
        "ctgate_drops_total",
        "counter",
        "Frames the workers dropped, by reason.",
    );
    for r in DropReason::ALL {
        let n: u64 = snaps.iter().map(|s| s.drops.get(r)).sum();
        w.sample("ctgate_drops_total", &[("reason", r.name())], n);
    }

    w.family(
        "ctgate_worker_rx_packets_total",
        "counter",
        "Frames a worker received.",
    );
    for (i, s) in snaps.iter().enumerate() {
        w.sample(
            "ctgate_worker_rx_packets_total",
            &[("worker", &i.to_string())],
            s.rx,
        );
    }
    w.family(
        "ctgate_worker_tx_packets_total",
        "counter",
        "Frames a worker sent.",
    );
    for (i, s) in snaps.iter().enumerate() {
        w.sample(
            "ctgate_worker_tx_packets_total",
            &[("worker", &i.to_string())],
            s.tx,
        );
    }
    let hz = m.tsc_hz.max(1) as f64;
    w.family(
        "ctgate_worker_busy_seconds_total",
        "counter",
        "Time a worker spent on bursts that carried packets.",
    );
    for (i, s) in snaps.iter().enumerate() {
        w.sample(
            "ctgate_worker_busy_seconds_total",
            &[("worker", &i.to_string())],
            s.busy_tsc as f64 / hz,
        );
    }
    w.family(
        "ctgate_worker_busy_ratio",
        "gauge",
        "Share of its poll loop's time a worker spent on turns that found packets (busy seconds over the loop's seconds).",
    );
    for (i, s) in snaps.iter().enumerate() {
        let share = if s.run_tsc > 0 {
            (s.busy_tsc as f64 / s.run_tsc as f64).min(1.0)
        } else {
            0.0
        };
        w.sample(
            "ctgate_worker_busy_ratio",
            &[("worker", &i.to_string())],
            share,
        );
    }

    w.family(
        "ctgate_conntrack_connections",
        "gauge",
        "Connections in the table.",
    );
    w.sample("ctgate_conntrack_connections", &[], m.ct.n_conns());
    w.family(
        "ctgate_conntrack_max_connections",
        "gauge",
        "The global connection limit.",
    );
    w.sample("ctgate_conntrack_max_connections", &[], m.ct.max_conns());
    let c = m.ct.counters();
    let fields = c.fields();
    w.family(
        "ctgate_conntrack_refused_total",
        "counter",
        "New connections the tracker refused, by reason.",
    );
    for (name, v) in &fields {
        if let Some(reason) = name.strip_prefix("refused_") {
            w.sample("ctgate_conntrack_refused_total", &[("reason", reason)], v);
        }
    }
    for (name, v) in &fields {
        if name.starts_with("refused_") {
            continue;
        }
        let n = format!("ctgate_conntrack_{name}_total");
        w.family(&n, "counter", &format!("Tracker counter '{name}'."));
        w.sample(&n, &[], v);
    }

    let zones = m.ct.zones();
    let existing: Vec<(u16, u32, u32)> = zones
        .existing()
        .map(|(z, zone)| (z, zone.count(), zones.effective_limit(zone).unwrap_or(0)))
        .collect();
    w.family("ctgate_zone_connections", "gauge", "Connections of a zone.");
    for (z, n, _) in &existing {
        w.sample("ctgate_zone_connections", &[("zone", &z.to_string())], n);
    }
    w.family(
        "ctgate_zone_limit",
        "gauge",
        "The connection limit in force for a zone (0: none).",
    );
    for (z, _, l) in &existing {
        w.sample("ctgate_zone_limit", &[("zone", &z.to_string())], l);
    }

    let st = m.shared.ipf().status();
    w.family(
        "ctgate_fragments_held",
        "gauge",
        "IP fragments held for reassembly.",
    );
    w.sample("ctgate_fragments_held", &[], st.n_frags);
    w.family(
        "ctgate_fragments_total",
        "counter",
        "IP fragments by what became of them, per family.",
    );
    for (fam, s) in [("ipv4", st.v4), ("ipv6", st.v6)] {
        for (event, v) in [
            ("accepted", s.accepted),
            ("completed", s.completed),
            ("expired", s.expired),
            ("too_small", s.too_small),
            ("overlapped", s.overlapped),
            ("purged", s.purged),
            ("duplicate", s.duplicate),
            ("invalid", s.invalid),
        ] {
            w.sample(
                "ctgate_fragments_total",
                &[("family", fam), ("event", event)],
                v,
            );
        }
    }

    w.family(
        "ctgate_nat_pool_addresses",
        "gauge",
        "Addresses of a configured SNAT pool.",
    );
    for p in m.shared.snat_pools() {
        let num = |a: &[u8; 16]| {
            if p.family == 4 {
                u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
            } else {
                u128::from_be_bytes(*a)
            }
        };
        let n = num(&p.addr_max).saturating_sub(num(&p.addr_min)) + 1;
        w.sample("ctgate_nat_pool_addresses", &[("pool", &p.to_string())], n);
    }
    w.family(
        "ctgate_nat_pool_ports_in_use",
        "gauge",
        "Translated source ports (ICMP identifiers) in use per SNAT address and protocol (last full table pass).",
    );
    for (a, proto, n) in &m.nat.last {
        w.sample(
            "ctgate_nat_pool_ports_in_use",
            &[("address", &a.to_string()), ("proto", proto)],
            n,
        );
    }
    w.family(
        "ctgate_config_generation",
        "gauge",
        "The configuration version in force (1 at start, one more per reload).",
    );
    w.sample("ctgate_config_generation", &[], m.generation);
    w.family(
        "ctgate_uptime_seconds",
        "gauge",
        "Seconds since the workers started.",
    );
    w.sample("ctgate_uptime_seconds", &[], m.uptime_secs);
    for (name, help, v) in m.consumers.metrics() {
        w.family(&name, "counter", &help);
        w.sample(&name, &[], v);
    }
    w.finish()
}
