//! Tracker test support shared by the tracker's tests and the layers above: a small
//! tracker with a fixed hash seed, state flags from their text, the table as sorted OVS
//! dump lines, and [`SnatTo`], a stand-in for the NAT layer.
//!
//! conntrack sits below `nat` and may not import it, tests included: the tracker's NAT
//! machinery (one record per NATed connection, candidates checked and inserted under the
//! bucket locks, exhaustion refused and counted) is exercised here through [`SnatTo`];
//! what `nat::NatSpec` itself chooses (hashed pool addresses and port offsets, DNAT,
//! ICMP identifiers) is tested in `nat`.
//!
//! Test support only: the functions panic on what a test would never pass.
#![allow(clippy::panic)]

use super::key::ip_to_addr;
use super::{ConnKey, Conntrack, CtConfig, CtState, ReplyTuples};
use crate::dpdk::PageSize;

/// A tracker of `max` connections, default buckets, two workers, sequence checking on and
/// hash seed 7 (so bucket placement, and with it every dump, is the same each run).
pub fn tracker(max: u32) -> Conntrack {
    tracker_on(max, PageSize::Small)
}

/// [`tracker`] with its buckets and record pool on `pages`.
pub fn tracker_on(max: u32, pages: PageSize) -> Conntrack {
    Conntrack::with_pages(
        CtConfig {
            max_conns: max,
            n_buckets: 0,
            workers: 2,
            tcp_seq_check: true,
            hash_seed: Some(7),
        },
        pages,
    )
}

/// The state flags written as OVS prints them (`"trk,est,rpl"`).
pub fn st(s: &str) -> CtState {
    s.parse()
        .unwrap_or_else(|_| panic!("testct: {s:?} is not a state"))
}

/// Every connection as its OVS dump line, sorted.
pub fn dump(ct: &Conntrack) -> Vec<String> {
    let mut v: Vec<String> = ct
        .all_conns()
        .iter()
        .map(|c| c.ovs_line(false, 0))
        .collect();
    v.sort();
    v
}

/// Source NAT the simplest way: connections of the address's family leave from that one
/// address; TCP, UDP and SCTP keep their source port when it is in the range (all of
/// 1024–65535 when none is given), else take the range's ports in order; every other
/// protocol is translated by address only (one candidate).
pub struct SnatTo {
    addr: [u8; 16],
    family: u8,
    ports: (u16, u16),
}

impl SnatTo {
    /// `"192.0.2.1"`, `"192.0.2.1:2000-2003"`, `"[fd00::99]:2000-2003"` or `"…:6000"`.
    pub fn new(spec: &str) -> SnatTo {
        let (addr, ports) = match spec.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((a, p)) => (a, p.strip_prefix(':')),
                None => panic!("testct: {spec:?}: no closing ']'"),
            },
            None if spec.matches(':').count() > 1 => (spec, None),
            None => match spec.split_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (spec, None),
            },
        };
        let (addr, family) = ip_to_addr(
            addr.parse()
                .unwrap_or_else(|_| panic!("testct: {spec:?}: bad address")),
        );
        let port = |p: &str| -> u16 {
            p.parse()
                .unwrap_or_else(|_| panic!("testct: {spec:?}: bad port"))
        };
        let ports = match ports {
            None => (1024, 65535),
            Some(p) => match p.split_once('-') {
                Some((lo, hi)) => (port(lo), port(hi)),
                None => (port(p), port(p)),
            },
        };
        SnatTo {
            addr,
            family,
            ports,
        }
    }
}

impl ReplyTuples for SnatTo {
    fn flags(&self, orig: &ConnKey) -> u8 {
        if orig.family == self.family {
            CtState::SNAT
        } else {
            0
        }
    }

    fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
        let mut reply = orig.reversed();
        if orig.family != self.family {
            return (n == 0).then_some(reply);
        }
        reply.dst = self.addr;
        if !matches!(orig.proto, 6 | 17 | 132) {
            return (n == 0).then_some(reply);
        }
        let (lo, hi) = self.ports;
        let keeps = (lo..=hi).contains(&orig.sport);
        let i = match (n, keeps) {
            (0, true) => {
                reply.dport = orig.sport;
                return Some(reply);
            }
            (n, true) => n - 1,
            (n, false) => n,
        };
        reply.dport = u16::try_from(u32::from(lo) + i).ok().filter(|p| *p <= hi)?;
        Some(reply)
    }
}
