//! The gateway's shared, read-mostly state: the configured ports, the routes (connected
//! prefixes and configured routes, longest prefix first), the gateway's own addresses and
//! SNAT pools, the DNAT rules, the event counters, the neighbour table and the clock.
//!
//! Built from the config by [`GatewayShared::new`] and shared by every worker behind an
//! `Arc`. After construction a version's tables never change: a reload builds the next
//! version ([`GatewayShared::reconfigure`]) and publishes it ([`super::live`]). The
//! counters (relaxed atomics, rare events), the clock and the neighbour table (behind a
//! mutex, with a generation number the workers compare against their own copy) live in
//! the [`GatewayRuntime`] every version shares; only they are written.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::addr_set::{PrefixList4, RangeSet4};
use super::epoch::Epoch;
use super::neigh::{NeighMap, NeighState};
use super::ratelimit::TokenBucket;
use crate::config::{Config, Role};
use crate::conntrack::key::ip_to_addr;
use crate::conntrack::Conntrack;
use crate::ipf::Ipf;
use crate::nat::mapping::{Filtering, MappingHooks, Mappings};
use crate::nat::{NatRange, NatSpec};
use crate::pipeline::forward::MAX_PORTS;
use crate::pipeline::vlan::{VlanTable, MAX_IFACES};
use crate::pipeline::MacAddr;
use crate::wire::parse::{Family, L4Summary, ParsedPacket};

/// What a frame may carry beyond its IP packet: Ethernet and two VLAN tags.
pub const L2_ROOM: usize = 14 + 8;

/// The largest frame the gateway's buffers are sized for when its largest port MTU is
/// `mtu`: the held fragments' slots, and (in `control::run`) the mbufs' data room.
pub fn frame_room(mtu: u16) -> usize {
    usize::from(mtu) + L2_ROOM
}

/// The largest `mtu` of `cfg`'s ports.
pub fn max_mtu(cfg: &Config) -> u16 {
    cfg.ports
        .iter()
        .map(|p| p.mtu)
        .max()
        .unwrap_or(crate::config::MTU_DEFAULT)
}

/// SNAT pools (one per family) plus DNAT rules.
pub const MAX_NAT_SPECS: usize = 64;
/// Gateway event counters beyond the per-worker drop reasons (relaxed atomics, bumped on
/// rare events only: never per forwarded packet).
#[derive(Debug, Default)]
pub struct GatewayCounters {
    pub arp_replies: AtomicU64,
    pub nd_adverts: AtomicU64,
    pub echo_replies: AtomicU64,
    pub arp_requests: AtomicU64,
    pub nd_solicits: AtomicU64,
    pub time_exceeded: AtomicU64,
    pub neigh_learned: AtomicU64,
    pub held: AtomicU64,
    pub released: AtomicU64,
    /// Neighbour resolutions that failed (every request unanswered).
    pub neigh_failed: AtomicU64,
    /// ICMP "fragmentation needed" (type 3 code 4) sent about IPv4 packets with DF that
    /// did not fit their output port.
    pub frag_needed: AtomicU64,
    /// ICMPv6 "packet too big" sent about IPv6 packets that did not fit.
    pub packet_too_big: AtomicU64,
    /// Those two not sent because the input interface's bucket was empty.
    pub icmp_rate_limited: AtomicU64,
    /// IPv4 packets fragmented on egress (RFC 791), and the fragments made of them.
    pub fragmented: AtomicU64,
    pub fragments_out: AtomicU64,
}

/// A copy of [`GatewayCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayCountersSnapshot {
    pub arp_replies: u64,
    pub nd_adverts: u64,
    pub echo_replies: u64,
    pub arp_requests: u64,
    pub nd_solicits: u64,
    pub time_exceeded: u64,
    pub neigh_learned: u64,
    pub held: u64,
    pub released: u64,
    /// Entries in the neighbour table now.
    pub neighbours: u64,
    /// Neighbour resolutions that failed.
    pub neigh_failed: u64,
    pub frag_needed: u64,
    pub packet_too_big: u64,
    pub icmp_rate_limited: u64,
    pub fragmented: u64,
    pub fragments_out: u64,
}

pub(super) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A configured interface (a port's untagged one, or a VLAN sub-interface) as the
/// datapath needs it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Port {
    /// The interface id (the DPDK port for untagged interfaces; see
    /// [`crate::pipeline::vlan`]): what verdicts, generated frames and the neighbour
    /// table name.
    pub(super) id: u16,
    /// The DPDK port it is on.
    pub(super) dpdk: u16,
    /// Its VLAN id, for a sub-interface.
    pub(super) vlan: Option<u16>,
    pub(super) role: Role,
    pub(super) mac: MacAddr,
    pub(super) v4: Option<([u8; 16], u8)>,
    pub(super) v6: Option<([u8; 16], u8)>,
    pub(super) zone: u16,
    pub(super) static_mac: Option<MacAddr>,
    /// MSS clamping of TCP SYN and SYN/ACK segments entering or leaving here.
    pub(super) mss_clamp: Option<crate::config::MssClamp>,
    /// The largest IP packet sent or received here.
    pub(super) mtu: u16,
    /// The token bucket of the ICMP errors about MTU sent from here.
    pub(super) icmp_rate: u32,
    pub(super) icmp_burst: u32,
}

/// A route (connected ones have no `via`); `net` is the masked address.
#[derive(Clone, Copy, Debug)]
pub(super) struct RouteEntry {
    pub(super) family: u8,
    pub(super) net: u128,
    pub(super) len: u8,
    pub(super) port_idx: u8,
    pub(super) via: Option<[u8; 16]>,
}

pub(super) fn width(family: u8) -> u8 {
    if family == 4 {
        32
    } else {
        128
    }
}

/// The address as a number (IPv4: the low 32 bits).
#[inline]
pub(super) fn bits(family: u8, a: &[u8; 16]) -> u128 {
    if family == 4 {
        u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    } else {
        u128::from_be_bytes(*a)
    }
}

/// The netmask of a prefix length, as a number of the family's width.
pub(super) fn mask_of(family: u8, len: u8) -> u128 {
    let w = u32::from(width(family));
    let len = u32::from(len).min(w);
    if len == 0 {
        0
    } else {
        (u128::MAX >> (128 - w)) & (u128::MAX << (w - len))
    }
}

#[inline]
pub(super) fn prefix_of(family: u8, v: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        v >> (width(family) - len)
    }
}

pub(super) fn family_of(f: Family) -> u8 {
    f as u8
}

/// What all workers share: config-derived tables, the tracker, the neighbour table and
/// the clock.
///
/// One `GatewayShared` is one version of the configuration-derived tables; every
/// version of a run shares one [`GatewayRuntime`] (tracker, clock, counters, neighbour
/// table, the published version), reached through `Deref`. [`GatewayShared::reconfigure`]
/// builds the next version, [`super::live`] publishes it to the workers.
pub struct GatewayShared {
    /// What every version shares.
    pub(super) rt: Arc<GatewayRuntime>,
    /// This version's number (1 for the first).
    pub(super) generation: u64,
    /// The MACs of the configured ports (kept for the next version).
    pub(super) port_macs: Vec<(u16, MacAddr)>,
    pub(super) ports: Vec<Port>,
    /// `port_idx[id]`: index into `ports` of interface `id`, `u8::MAX` when not
    /// configured.
    pub(super) port_idx: [u8; MAX_IFACES],
    /// Routes by family as (network, mask, port index, via): longest prefix first; at
    /// equal length, connected before configured.
    pub(super) routes4: Vec<(u32, u32, u8, Option<[u8; 16]>)>,
    /// `routes4`'s (network, mask), in its order, searched eight at a time.
    pub(super) route_match4: PrefixList4,
    pub(super) routes6: Vec<(u128, u128, u8, Option<[u8; 16]>)>,
    /// The gateway's addresses and SNAT pools as inclusive ranges of numbers.
    pub(super) own4: RangeSet4,
    pub(super) own6: Vec<(u128, u128)>,
    /// Broadcast addresses of the connected IPv4 prefixes (ranges of one address).
    pub(super) bcast4: RangeSet4,
    /// SNAT spec index for IPv4 / IPv6, into `nat_specs`.
    pub(super) snat_v4: Option<u16>,
    pub(super) snat_v6: Option<u16>,
    /// SNAT pools (for ARP/NDP answers and "is this ours").
    pub(super) pools: Vec<NatRange>,
    /// DNAT rules: (proto, family, match address, match port, spec index).
    pub(super) dnat: Vec<(u8, u8, [u8; 16], u16, u16)>,
    pub(super) nat_specs: Vec<NatSpec>,
    /// Filtering of the IPv4 / IPv6 SNAT pool's mappings.
    pub(super) filter_v4: Filtering,
    pub(super) filter_v6: Filtering,
    pub(super) outside_new_allow: bool,
    pub(super) invalid_allow: bool,
}

/// The part of the gateway's shared state that outlives a configuration version: the
/// tracker, the clock, the event counters, the neighbour table, and the version the
/// workers are to switch to ([`super::live`]).
pub struct GatewayRuntime {
    pub(super) ct: Arc<Conntrack>,
    /// NAT mappings of TCP and UDP (SNAT's endpoint-independent mapping, hairpinning,
    /// filtering): one table per tracker, kept current by hooks installed on it, so they
    /// outlive configuration versions with the connections that hold them.
    pub(super) maps: Arc<Mappings>,
    pub(super) now: AtomicU64,
    /// When set, [`GatewayShared::now_ms`] reads the monotonic clock itself (ms since this
    /// instant, plus one): workers then never depend on the control lcore being scheduled
    /// to see time pass (expiry and reclaim-on-insert stay right when it is starved).
    pub(super) clock_start: std::sync::OnceLock<std::time::Instant>,
    pub(super) counters: GatewayCounters,
    pub(super) neigh: Mutex<NeighMap>,
    pub(super) neigh_gen: AtomicU64,
    /// When a worker last aged the neighbour table (ms): whichever worker sees it a
    /// second old takes the next turn (one compare-and-swap decides).
    pub(super) last_age: AtomicU64,
    /// IP fragment reassembly (`[fragments]`), shared by every worker.
    pub(super) ipf: Ipf,
    /// Publication of new versions to the workers.
    pub(super) epoch: Epoch<GatewayShared>,
    /// The largest frame the buffers were sized for at start ([`frame_room`] of the
    /// first version's largest MTU): a later version's MTUs must fit in it.
    pub(super) frame_room: usize,
    /// Per interface id: the bucket of its ICMP errors about MTU (kept across versions).
    pub(super) icmp_buckets: Box<[TokenBucket]>,
}

impl std::ops::Deref for GatewayShared {
    type Target = GatewayRuntime;

    fn deref(&self) -> &GatewayRuntime {
        &self.rt
    }
}

impl GatewayShared {
    /// Builds the tables from `cfg`. `port_macs` gives the MAC of every configured port.
    pub fn new(
        cfg: &Config,
        ct: Arc<Conntrack>,
        port_macs: &[(u16, MacAddr)],
    ) -> Result<Arc<GatewayShared>, String> {
        // One mapping table per tracker: a gateway built again on the same tracker keeps
        // the mappings its connections hold.
        let maps = match ct
            .hooks()
            .and_then(|h| h.as_any().downcast_ref::<MappingHooks>())
        {
            Some(h) => h.0.clone(),
            None => {
                let maps = Arc::new(Mappings::new(cfg.datapath.max_conns.min(1 << 20)));
                ct.set_hooks(Arc::new(MappingHooks(maps.clone())))
                    .map_err(|_| "the tracker has other connection hooks".to_string())?;
                maps
            }
        };
        // The gateway's policy admits the data connections its ALGs expect.
        ct.set_commit_related(true);
        let rt = Arc::new(GatewayRuntime {
            ct,
            maps,
            now: AtomicU64::new(0),
            clock_start: std::sync::OnceLock::new(),
            counters: GatewayCounters::default(),
            neigh: Mutex::new(NeighMap::default()),
            neigh_gen: AtomicU64::new(0),
            last_age: AtomicU64::new(0),
            ipf: Ipf::new(cfg.fragments, frame_room(max_mtu(cfg)))
                .map_err(|e| format!("[fragments]: {e}"))?,
            epoch: Epoch::new(1),
            frame_room: frame_room(max_mtu(cfg)),
            icmp_buckets: (0..MAX_IFACES).map(|_| TokenBucket::default()).collect(),
        });
        Self::build(cfg, rt, 1, port_macs, &[]).map(Arc::new)
    }

    /// The next version: the tables of `cfg` over this version's tracker, clock,
    /// counters and neighbour table (not yet published: see [`super::live`]).
    /// `keep_pools` are SNAT pools of earlier versions still answered for in ARP/NDP, so
    /// the replies of connections NATed to them still arrive.
    pub fn reconfigure(
        &self,
        cfg: &Config,
        keep_pools: &[NatRange],
    ) -> Result<GatewayShared, String> {
        Self::build(
            cfg,
            Arc::clone(&self.rt),
            self.generation + 1,
            &self.port_macs,
            keep_pools,
        )
    }

    /// This version's number (the first is 1).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The SNAT pools answered for in ARP/NDP (this version's and the kept ones).
    pub fn answered_pools(&self) -> &[NatRange] {
        &self.pools
    }

    fn build(
        cfg: &Config,
        rt: Arc<GatewayRuntime>,
        generation: u64,
        port_macs: &[(u16, MacAddr)],
        keep_pools: &[NatRange],
    ) -> Result<GatewayShared, String> {
        let mut ports = Vec::new();
        let mut port_idx = [u8::MAX; MAX_IFACES];
        let vlans = VlanTable::from_config(cfg)?;
        for (i, p) in cfg.ports.iter().enumerate() {
            if frame_room(p.mtu) > rt.frame_room {
                return Err(format!(
                    "port[{i}].mtu: {} is larger than the {} the buffers were sized for at start: raising it needs a restart",
                    p.mtu,
                    rt.frame_room - L2_ROOM
                ));
            }
            let id = vlans
                .iface_of(p.port, p.vlan)
                .filter(|_| usize::from(p.port) < MAX_PORTS)
                .ok_or_else(|| {
                    format!("port {} is beyond the {MAX_PORTS} ports supported", p.port)
                })?;
            let slot = port_idx
                .get_mut(usize::from(id))
                .ok_or_else(|| format!("interface {id} is beyond {MAX_IFACES}"))?;
            let mac = port_macs
                .iter()
                .find(|(id, _)| *id == p.port)
                .map(|(_, m)| *m)
                .ok_or_else(|| format!("no MAC address known for port {}", p.port))?;
            *slot = ports.len() as u8;
            ports.push(Port {
                id,
                dpdk: p.port,
                vlan: p.vlan,
                role: p.role,
                mac,
                v4: p.ipv4.map(|(a, l)| (ip_to_addr(IpAddr::V4(a)).0, l)),
                v6: p.ipv6.map(|(a, l)| (ip_to_addr(IpAddr::V6(a)).0, l)),
                zone: p.zone,
                static_mac: p.next_hop_mac.map(MacAddr),
                mss_clamp: p.mss_clamp,
                mtu: p.mtu,
                icmp_rate: p.icmp_rate,
                icmp_burst: p.icmp_burst,
            });
        }
        let mut routes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            for (fam, a) in [(4u8, p.v4), (6u8, p.v6)] {
                if let Some((addr, len)) = a {
                    routes.push((
                        true,
                        RouteEntry {
                            family: fam,
                            net: bits(fam, &addr) & mask_of(fam, len),
                            len,
                            port_idx: i as u8,
                            via: None,
                        },
                    ));
                }
            }
        }
        for r in &cfg.routes {
            let (via, vf) = ip_to_addr(r.via);
            let (net, nf) = ip_to_addr(r.prefix.addr);
            if vf != nf {
                return Err(format!(
                    "route {}: next hop {} of another family",
                    r.prefix, r.via
                ));
            }
            // The interface whose connected network holds the next hop (a port may have
            // VLAN sub-interfaces), else the port's untagged one.
            let on_link = ports
                .iter()
                .position(|p| GatewayShared::on_link(p, vf, &via))
                .map(|i| i as u8);
            let port_idx = on_link
                .or_else(|| {
                    port_idx
                        .get(usize::from(r.port))
                        .copied()
                        .filter(|&i| i != u8::MAX)
                })
                .ok_or_else(|| format!("route {}: port {} is not configured", r.prefix, r.port))?;
            routes.push((
                false,
                RouteEntry {
                    family: nf,
                    net: bits(nf, &net) & mask_of(nf, r.prefix.len),
                    len: r.prefix.len,
                    port_idx,
                    via: Some(via),
                },
            ));
        }
        routes.sort_by(|a, b| b.1.len.cmp(&a.1.len).then(b.0.cmp(&a.0)));
        let mut routes4 = Vec::new();
        let mut routes6 = Vec::new();
        for (_, r) in routes {
            let mask = mask_of(r.family, r.len);
            if r.family == 4 {
                routes4.push((r.net as u32, mask as u32, r.port_idx, r.via));
            } else {
                routes6.push((r.net, mask, r.port_idx, r.via));
            }
        }
        let mut own4 = Vec::new();
        let mut own6 = Vec::new();
        let mut bcast4 = Vec::new();
        for p in &ports {
            if let Some((a, len)) = p.v4 {
                let v = bits(4, &a) as u32;
                own4.push((v, v));
                if len < 31 {
                    let b = v | (u32::MAX >> len);
                    bcast4.push((b, b));
                }
            }
            if let Some((a, _)) = p.v6 {
                let v = bits(6, &a);
                own6.push((v, v));
            }
        }
        // The pools of this version and the kept ones are the gateway's own addresses.
        let kept = keep_pools.iter().filter(|k| !cfg.snat.contains(k));
        for r in cfg.snat.iter().chain(kept) {
            if r.family == 4 {
                own4.push((bits(4, &r.addr_min) as u32, bits(4, &r.addr_max) as u32));
            } else {
                own6.push((bits(6, &r.addr_min), bits(6, &r.addr_max)));
            }
        }

        let mut nat_specs = Vec::new();
        let mut snat_v4 = None;
        let mut snat_v6 = None;
        let mut filter_v4 = Filtering::default();
        let mut filter_v6 = Filtering::default();
        for (i, r) in cfg.snat.iter().enumerate() {
            let f = cfg.snat_filtering.get(i).copied().unwrap_or_default();
            if r.family == 4 {
                filter_v4 = f;
            } else {
                filter_v6 = f;
            }
            let slot = if r.family == 4 {
                &mut snat_v4
            } else {
                &mut snat_v6
            };
            if slot.is_some() {
                return Err(format!(
                    "more than one SNAT pool for IPv{} (one per family is supported)",
                    r.family
                ));
            }
            *slot = Some(nat_specs.len() as u16);
            nat_specs.push(NatSpec::snat(*r));
        }
        let mut dnat = Vec::new();
        for d in &cfg.dnat {
            let (a, f) = ip_to_addr(d.match_addr);
            if f != d.to.family {
                return Err(format!(
                    "DNAT rule {}:{}: target of another family",
                    d.match_addr, d.match_port
                ));
            }
            dnat.push((d.proto, f, a, d.match_port, nat_specs.len() as u16));
            nat_specs.push(NatSpec::dnat(d.to));
        }
        if nat_specs.len() > MAX_NAT_SPECS {
            return Err(format!(
                "{} DNAT rules: at most {} are supported",
                cfg.dnat.len(),
                MAX_NAT_SPECS - cfg.snat.len()
            ));
        }
        let mut pools = cfg.snat.clone();
        for k in keep_pools {
            if !pools.contains(k) {
                pools.push(*k);
            }
        }
        Ok(GatewayShared {
            rt,
            generation,
            port_macs: port_macs.to_vec(),
            ports,
            port_idx,
            route_match4: PrefixList4::new(&routes4.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>()),
            routes4,
            routes6,
            own4: RangeSet4::new(&own4),
            own6,
            bcast4: RangeSet4::new(&bcast4),
            snat_v4,
            snat_v6,
            pools,
            dnat,
            nat_specs,
            filter_v4,
            filter_v6,
            outside_new_allow: cfg.policy.outside_new_allow,
            invalid_allow: cfg.policy.invalid_allow,
        })
    }

    /// Sets the clock by hand (ms, monotonic), for a step without
    /// [`GatewayShared::run_clock_from`] (tests, benchmarks).
    pub fn set_now_ms(&self, now: u64) {
        self.now.store(now, Ordering::Relaxed);
    }

    /// From now on the clock is the monotonic clock: milliseconds since `start`, plus one
    /// (so it is never 0), the same value the control lcore computes from the same
    /// `start`. Only the first call has an effect.
    pub fn run_clock_from(&self, start: std::time::Instant) {
        let _ = self.clock_start.set(start);
    }

    /// The clock: the monotonic clock when [`GatewayShared::run_clock_from`] was called
    /// (one vDSO read, per burst), else the value last set by hand.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self.clock_start.get() {
            Some(start) => u64::try_from(start.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .saturating_add(1),
            None => self.now.load(Ordering::Relaxed),
        }
    }

    /// The event counters.
    pub fn counters(&self) -> GatewayCountersSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        GatewayCountersSnapshot {
            arp_replies: l(&c.arp_replies),
            nd_adverts: l(&c.nd_adverts),
            echo_replies: l(&c.echo_replies),
            arp_requests: l(&c.arp_requests),
            nd_solicits: l(&c.nd_solicits),
            time_exceeded: l(&c.time_exceeded),
            neigh_learned: l(&c.neigh_learned),
            held: l(&c.held),
            released: l(&c.released),
            neighbours: self.neigh_lock().len() as u64,
            neigh_failed: l(&c.neigh_failed),
            frag_needed: l(&c.frag_needed),
            packet_too_big: l(&c.packet_too_big),
            icmp_rate_limited: l(&c.icmp_rate_limited),
            fragmented: l(&c.fragmented),
            fragments_out: l(&c.fragments_out),
        }
    }

    /// The fragment reassembly module (settings, counters, `ipf-*` commands).
    pub fn ipf(&self) -> &Ipf {
        &self.ipf
    }

    /// The tracker.
    pub fn conntrack(&self) -> &Arc<Conntrack> {
        &self.ct
    }

    /// The neighbour table now: (port, address, MAC) of the resolved entries.
    pub fn neighbours(&self) -> Vec<(u16, IpAddr, MacAddr)> {
        let n = self.neigh_lock();
        n.iter()
            .filter(|e| e.resolved)
            .map(|e| {
                let ip = if !is_v6_addr(&e.addr) {
                    IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]])
                } else {
                    IpAddr::from(e.addr)
                };
                (e.port, ip, e.mac)
            })
            .collect()
    }

    pub(super) fn neigh_lock(&self) -> std::sync::MutexGuard<'_, NeighMap> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.neigh.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(super) fn port(&self, id: u16) -> Option<&Port> {
        let i = *self.port_idx.get(usize::from(id))?;
        self.ports.get(usize::from(i))
    }

    /// The interface a frame received on DPDK port `port` belongs to: the port's untagged
    /// interface, or the sub-interface of the VLAN whose tag the worker took off.
    #[inline]
    pub(super) fn iface(&self, port: u16, vlan: Option<u16>) -> Option<&Port> {
        match vlan {
            None => self.port(port).filter(|p| p.vlan.is_none()),
            Some(v) => self
                .ports
                .iter()
                .find(|p| p.dpdk == port && p.vlan == Some(v)),
        }
    }

    /// Does DPDK port `port` carry any interface (untagged or a VLAN's)?
    pub(super) fn has_port(&self, port: u16) -> bool {
        self.ports.iter().any(|p| p.dpdk == port)
    }

    /// Is `a` one of the gateway's own addresses (any port, any SNAT pool)?
    #[inline]
    pub(super) fn is_own(&self, family: u8, a: &[u8; 16]) -> bool {
        if family == 4 {
            let v = v4_num(a);
            self.own4.contains(v)
        } else {
            let v = u128::from_be_bytes(*a);
            self.own6.iter().any(|&(lo, hi)| lo <= v && v <= hi)
        }
    }

    #[inline]
    pub(super) fn in_pool(&self, family: u8, a: &[u8; 16]) -> bool {
        self.pools.iter().any(|r| {
            r.family == family
                && bits(family, a) >= bits(family, &r.addr_min)
                && bits(family, a) <= bits(family, &r.addr_max)
        })
    }

    /// Does port `p` answer ARP/NDP for `a`? Its own address, and on outside ports the
    /// SNAT pool addresses.
    pub(super) fn answers_for(&self, p: &Port, family: u8, a: &[u8; 16]) -> bool {
        let own = if family == 4 { p.v4 } else { p.v6 };
        own.is_some_and(|(x, _)| x == *a) || (p.role == Role::Outside && self.in_pool(family, a))
    }

    /// Longest-prefix route: the index of the route in the family's table. Always
    /// inlined: the call, with the registers the ingress pass spilled around it, cost it
    /// ~10 instructions per packet (the step as a whole 6: 1k UDP 1,381.9 -> 1,375.9).
    #[inline(always)]
    pub(super) fn route(&self, family: u8, dst: &[u8; 16]) -> Option<u8> {
        let i = if family == 4 {
            let v = v4_num(dst);
            self.route_match4.first(v)?
        } else {
            let v = u128::from_be_bytes(*dst);
            self.routes6.iter().position(|r| v & r.1 == r.0)?
        };
        Some(i as u8)
    }

    /// Route `i` of the family's table: (output port index, next hop if not direct).
    #[inline]
    pub(super) fn route_at(&self, family: u8, i: u8) -> Option<(u8, Option<&[u8; 16]>)> {
        let i = usize::from(i);
        if family == 4 {
            self.routes4.get(i).map(|r| (r.2, r.3.as_ref()))
        } else {
            self.routes6.get(i).map(|r| (r.2, r.3.as_ref()))
        }
    }

    /// Is `a` on a connected prefix of port `p`?
    pub(super) fn on_link(p: &Port, family: u8, a: &[u8; 16]) -> bool {
        let own = if family == 4 { p.v4 } else { p.v6 };
        own.is_some_and(|(x, len)| {
            prefix_of(family, bits(family, &x), len) == prefix_of(family, bits(family, a), len)
        })
    }

    /// Learns `mac` for (port, addr): updates an existing entry, and creates one when
    /// `create`. Bumps the generation when a worker's copy must change.
    pub(super) fn learn(&self, port: u16, addr: &[u8; 16], mac: [u8; 6], create: bool, now: u64) {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return;
        }
        let mut n = self.neigh_lock();
        let exists = n.get(port, addr).is_some();
        if !exists && !create {
            return;
        }
        if let Some((e, _)) = n.entry(port, addr) {
            let changed = !e.resolved || e.mac.0 != mac;
            let was = e.state(now);
            e.confirm(MacAddr(mac), now);
            if changed {
                bump(&self.counters.neigh_learned);
            }
            // Workers' copies must see a new MAC, and a stale or probing entry turned
            // reachable (else they would keep probing it).
            if changed || was != NeighState::Reachable {
                self.neigh_gen.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Forgets entries that aged out or whose resolution failed (counted).
    pub(super) fn age_neighbours(&self, now: u64) {
        let mut n = self.neigh_lock();
        let mut failed = 0;
        let removed = n.remove_if(|e| match e.dead(now) {
            Some(f) => {
                failed += u64::from(f);
                true
            }
            None => false,
        });
        drop(n);
        if failed > 0 {
            self.counters
                .neigh_failed
                .fetch_add(failed, Ordering::Relaxed);
        }
        if removed > 0 {
            self.neigh_gen.fetch_add(1, Ordering::Release);
        }
    }
}

pub(super) fn is_v6_addr(a: &[u8; 16]) -> bool {
    a[4..] != [0; 12]
}

pub(super) fn self_ct(sh: &GatewayShared) -> &Conntrack {
    &sh.ct
}

pub(super) fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// Multicast, broadcast, unspecified or link-local destinations (and link-local
/// sources over IPv6) are never forwarded.
#[inline]
pub(super) fn not_forwardable(fam: u8, p: &ParsedPacket) -> bool {
    if fam == 4 {
        p.dst[0] >= 224 || p.dst[..4] == [0; 4] || p.dst[0] == 127 || p.src[0] == 127
    } else {
        p.dst[0] == 0xff || is_link_local(&p.dst) || is_link_local(&p.src) || p.dst == [0; 16]
    }
}

/// The broadcast address of a connected IPv4 prefix (always inlined: once per packet).
#[inline(always)]
pub(super) fn is_directed_broadcast(sh: &GatewayShared, a: &[u8; 16]) -> bool {
    let v = v4_num(a);
    sh.bcast4.contains(v)
}

#[inline(always)]
pub(super) fn v4_num(a: &[u8; 16]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}

/// The NAT spec of the DNAT rule matching the packet, if any. The test for no rules at
/// all is inlined into the step; the search is a call.
#[inline(always)]
pub(super) fn dnat_match(sh: &GatewayShared, fam: u8, p: &ParsedPacket) -> Option<u16> {
    if sh.dnat.is_empty() {
        return None;
    }
    dnat_search(sh, fam, p)
}

/// [`dnat_match`]'s search of the rules, out of line.
#[inline(never)]
fn dnat_search(sh: &GatewayShared, fam: u8, p: &ParsedPacket) -> Option<u16> {
    let dport = match p.l4 {
        L4Summary::Tcp(t) => t.dport,
        L4Summary::Udp { dport, .. } => dport,
        _ => return None,
    };
    sh.dnat
        .iter()
        .find(|(pr, f, a, port, _)| *pr == p.proto && *f == fam && *a == p.dst && *port == dport)
        .map(|d| d.4)
}
