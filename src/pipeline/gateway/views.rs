//! What the show commands read from a running gateway version: its routes
//! (`route-show`), the neighbour table (`neigh-show`, `neigh-flush`) and its NAT rules
//! (`nat-show`), as plain values. Everything here runs on the control lcore; the
//! neighbour table is locked only to copy it (or, for a flush, to empty it).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::neigh::NeighState;
use super::shared::{is_v6_addr, GatewayShared};
use crate::conntrack::key::addr_to_ip;
use crate::nat::NatRange;
use crate::pipeline::MacAddr;

/// A route as the datapath uses it (connected prefixes and configured routes, in lookup
/// order: longest prefix first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    pub net: IpAddr,
    pub len: u8,
    /// The next hop; `None` for a connected prefix.
    pub via: Option<IpAddr>,
    /// The output interface's DPDK port and VLAN.
    pub port: u16,
    pub vlan: Option<u16>,
}

/// A neighbour table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighView {
    /// The interface id (the DPDK port for untagged interfaces).
    pub port: u16,
    pub addr: IpAddr,
    /// The MAC, once resolved.
    pub mac: Option<MacAddr>,
    /// `incomplete`, `reachable`, `stale` or `probe`.
    pub state: &'static str,
    /// Milliseconds since it was last confirmed (or, unresolved, since the last request).
    pub age_ms: u64,
}

/// A DNAT rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnatView {
    pub proto: u8,
    pub addr: IpAddr,
    pub port: u16,
    pub to: NatRange,
}

fn ip(a: &[u8; 16]) -> IpAddr {
    addr_to_ip(if is_v6_addr(a) { 6 } else { 4 }, a)
}

impl GatewayShared {
    /// The routes in lookup order, IPv4 first.
    pub fn route_views(&self) -> Vec<RouteView> {
        let mut out = Vec::new();
        let port = |i: u8| self.ports.get(usize::from(i)).map(|p| (p.dpdk, p.vlan));
        for &(net, mask, pi, via) in &self.routes4 {
            if let Some((port, vlan)) = port(pi) {
                out.push(RouteView {
                    net: IpAddr::from(net.to_be_bytes()),
                    len: mask.count_ones() as u8,
                    via: via.map(|v| addr_to_ip(4, &v)),
                    port,
                    vlan,
                });
            }
        }
        for &(net, mask, pi, via) in &self.routes6 {
            if let Some((port, vlan)) = port(pi) {
                out.push(RouteView {
                    net: IpAddr::from(net.to_be_bytes()),
                    len: mask.count_ones() as u8,
                    via: via.map(|v| addr_to_ip(6, &v)),
                    port,
                    vlan,
                });
            }
        }
        out
    }

    /// The neighbour table at `now` (ms on the gateway clock).
    pub fn neighbour_views(&self, now: u64) -> Vec<NeighView> {
        let n = self.neigh_lock();
        n.iter()
            .map(|e| {
                let since = if e.resolved {
                    e.updated_ms
                } else {
                    e.requested_ms
                };
                NeighView {
                    port: e.port,
                    addr: ip(&e.addr),
                    mac: e.resolved.then_some(e.mac),
                    state: match e.state(now) {
                        NeighState::Incomplete => "incomplete",
                        NeighState::Reachable => "reachable",
                        NeighState::Stale => "stale",
                        NeighState::Probe => "probe",
                    },
                    age_ms: if since == u64::MAX {
                        0
                    } else {
                        now.saturating_sub(since)
                    },
                }
            })
            .collect()
    }

    /// Empties the neighbour table (workers drop their copies at their next burst and
    /// resolve again); returns how many entries there were.
    pub fn flush_neighbours(&self) -> usize {
        let mut n = self.neigh_lock();
        let removed = n.remove_if(|_| true);
        drop(n);
        self.neigh_gen.fetch_add(1, Ordering::Release);
        removed
    }

    /// The configured SNAT pools, one per family.
    pub fn snat_pools(&self) -> Vec<NatRange> {
        [self.snat_v4, self.snat_v6]
            .into_iter()
            .flatten()
            .filter_map(|i| self.nat_specs.get(usize::from(i)).and_then(|s| s.snat))
            .collect()
    }

    /// The DNAT rules, in the configuration's order.
    pub fn dnat_views(&self) -> Vec<DnatView> {
        self.dnat
            .iter()
            .filter_map(|&(proto, fam, addr, port, spec)| {
                let to = self.nat_specs.get(usize::from(spec))?.dnat?;
                Some(DnatView {
                    proto,
                    addr: addr_to_ip(fam, &addr),
                    port,
                    to,
                })
            })
            .collect()
    }
}
