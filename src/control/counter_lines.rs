//! Counter lines as ctgate prints them, and the rates it computes.
//!
//! Final counters are one line per port, then one line per worker, each a list of
//! `key=value` fields. The first fields are fixed (tests and tools rely on them); more may
//! follow:
//!
//! ```text
//! port=0 rx=10 tx=0 dropped=1 rx_missed=0 rx_nombuf=0 rx_errors=0 tx_errors=0
//! worker=0 lcore=1 rx=10 tx=9 dropped=1 drop_short_frame=1 drop_no_route=0 drop_tx_full=0 secs=0.51 rx_mpps=0.000 queues=0:0,1:0
//! ```
//!
//! A port's `rx`/`tx` are the device's counters; `dropped` counts frames that arrived on
//! the port and were dropped by a worker (any reason); the `rx_*`/`tx_errors` fields are
//! the device's own drops.
//!
//! The gateway mode prints two more lines, the tracker's counters ([`ct_line`]) and the
//! gateway's events ([`gateway_line`]):
//!
//! ```text
//! conntrack n_conns=2 created=5 expired=3 reclaimed=0 removed=0 refused_zone_limit=0 ...
//! gateway arp_replies=2 nd_adverts=1 echo_replies=2 arp_requests=1 nd_solicits=1 ...
//! ```

use std::fmt;
use std::fmt::Write as _;

use crate::conntrack::stats::CtCountersSnapshot;
use crate::pipeline::gateway::GatewayCountersSnapshot;
use crate::pipeline::{DropCounters, DropReason};

/// The gateway's event line: `gateway arp_replies=N nd_adverts=N ...` (frames the
/// gateway answered or generated, neighbour-table events and size).
pub fn gateway_line(g: &GatewayCountersSnapshot) -> String {
    format!(
        "gateway arp_replies={} nd_adverts={} echo_replies={} arp_requests={} nd_solicits={} time_exceeded={} neigh_learned={} held={} released={} neighbours={} neigh_failed={} frag_needed={} packet_too_big={} icmp_rate_limited={} fragmented={} fragments_out={}",
        g.arp_replies,
        g.nd_adverts,
        g.echo_replies,
        g.arp_requests,
        g.nd_solicits,
        g.time_exceeded,
        g.neigh_learned,
        g.held,
        g.released,
        g.neighbours,
        g.neigh_failed,
        g.frag_needed,
        g.packet_too_big,
        g.icmp_rate_limited,
        g.fragmented,
        g.fragments_out
    )
}

/// The tracker's final line: `conntrack n_conns=N` then every counter as `name=value`.
pub fn ct_line(n_conns: u32, c: &CtCountersSnapshot) -> String {
    let mut s = format!("conntrack n_conns={n_conns}");
    for (name, v) in c.fields() {
        let _ = write!(s, " {name}={v}");
    }
    s
}

/// Final counters of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortLine {
    pub port: u16,
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    pub rx_missed: u64,
    pub rx_nombuf: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

impl fmt::Display for PortLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "port={} rx={} tx={} dropped={} rx_missed={} rx_nombuf={} rx_errors={} tx_errors={}",
            self.port,
            self.rx,
            self.tx,
            self.dropped,
            self.rx_missed,
            self.rx_nombuf,
            self.rx_errors,
            self.tx_errors
        )
    }
}

/// Final counters of one worker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerLine {
    pub worker: usize,
    pub lcore: u32,
    pub rx: u64,
    pub tx: u64,
    pub drops: DropCounters,
    /// Seconds the poll loop ran.
    pub secs: f64,
    /// Of those, the seconds of its turns that found packets (the rest it polled empty
    /// queues): `busy_secs / secs` is the worker's load.
    pub busy_secs: f64,
    /// (port, queue) pairs it polled.
    pub queues: Vec<(u16, u16)>,
    /// Frames the worker's step generated (sent or dropped): with no frame held,
    /// `rx - dropped - consumed + generated = tx`.
    pub generated: u64,
    /// Frames the step kept a copy of (IP fragments held for reassembly; the copies
    /// leave as generated frames).
    pub consumed: u64,
}

impl fmt::Display for WorkerLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker={} lcore={} rx={} tx={} dropped={}",
            self.worker,
            self.lcore,
            self.rx,
            self.tx,
            self.drops.total()
        )?;
        for r in DropReason::ALL {
            write!(f, " drop_{}={}", r.name(), self.drops.get(r))?;
        }
        let queues: Vec<String> = self
            .queues
            .iter()
            .map(|(p, q)| format!("{p}:{q}"))
            .collect();
        write!(
            f,
            " secs={:.3} rx_mpps={:.3} queues={}",
            self.secs,
            mpps(self.rx, self.secs),
            if queues.is_empty() {
                "-".to_string()
            } else {
                queues.join(",")
            }
        )?;
        write!(
            f,
            " generated={} consumed={} busy_secs={:.3}",
            self.generated, self.consumed, self.busy_secs
        )
    }
}

/// Millions of packets per second; 0 for a zero or negative interval.
pub fn mpps(packets: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        packets as f64 / secs / 1e6
    } else {
        0.0
    }
}

/// Splits a counter line into its `key=value` fields (other words are skipped).
pub fn fields(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split_whitespace().filter_map(|w| w.split_once('='))
}

/// The value of field `key` in a counter line, as a number.
pub fn field_u64(line: &str, key: &str) -> Option<u64> {
    fields(line)
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_line_ends_with_the_failed_resolutions() {
        let g = GatewayCountersSnapshot {
            arp_requests: 7,
            neighbours: 2,
            neigh_failed: 3,
            ..Default::default()
        };
        let s = gateway_line(&g);
        assert!(s.starts_with("gateway arp_replies=0 "), "{s}");
        assert!(s.contains(" neighbours=2 neigh_failed=3 "), "{s}");
        assert!(
            s.ends_with(
                " frag_needed=0 packet_too_big=0 icmp_rate_limited=0 fragmented=0 fragments_out=0"
            ),
            "{s}"
        );
        assert_eq!(field_u64(&s, "arp_requests"), Some(7));
    }

    #[test]
    fn port_line_starts_with_the_contract_fields() {
        let l = PortLine {
            port: 1,
            rx: 10,
            tx: 9,
            dropped: 1,
            ..Default::default()
        };
        let s = l.to_string();
        assert!(s.starts_with("port=1 rx=10 tx=9 dropped=1 "), "{s}");
        assert_eq!(field_u64(&s, "tx"), Some(9));
        assert_eq!(field_u64(&s, "nope"), None);
    }

    #[test]
    fn worker_line_lists_every_drop_reason_and_the_rate() {
        let mut drops = DropCounters::default();
        drops.add(DropReason::ShortFrame, 2);
        let l = WorkerLine {
            worker: 0,
            lcore: 3,
            rx: 2_000_000,
            tx: 1_999_998,
            drops,
            secs: 2.0,
            queues: vec![(0, 0), (1, 0)],
            generated: 7,
            consumed: 3,
            busy_secs: 0.5,
        };
        let s = l.to_string();
        assert!(
            s.starts_with("worker=0 lcore=3 rx=2000000 tx=1999998 dropped=2 "),
            "{s}"
        );
        assert_eq!(field_u64(&s, "drop_short_frame"), Some(2));
        assert_eq!(field_u64(&s, "drop_tx_full"), Some(0));
        assert!(
            s.contains(" rx_mpps=1.000 queues=0:0,1:0 ")
                && s.ends_with(" generated=7 consumed=3 busy_secs=0.500"),
            "{s}"
        );
    }

    #[test]
    fn ct_line_lists_the_tracker_counters() {
        let c = CtCountersSnapshot {
            created: 5,
            expired: 3,
            ..Default::default()
        };
        let s = ct_line(2, &c);
        assert!(
            s.starts_with("conntrack n_conns=2 created=5 expired=3 "),
            "{s}"
        );
        assert_eq!(field_u64(&s, "refused_zone_limit"), Some(0));
    }

    #[test]
    fn mpps_of_nothing_is_zero() {
        assert_eq!(mpps(5, 0.0), 0.0);
        assert_eq!(mpps(3_000_000, 1.5), 2.0);
    }
}
