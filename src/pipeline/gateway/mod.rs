//! The NAT gateway's worker step.
//!
//! # The seam with the control lcore (stable)
//!
//! ```text
//! let shared = GatewayShared::new(&cfg, ct.clone(), &port_macs)?;   // Arc<GatewayShared>
//! shared.run_clock_from(start);      // the clock: ms since `start` (+1), read per burst
//! shared.set_now_ms(ms);             // or, without run_clock_from: set by hand (tests)
//! let step = GatewayStep::new(shared.clone(), i);                // per worker i
//! let worker = Worker::new(rx, tx, step, counters, stop, tsc_hz)?
//!     .with_mempool(pool);                                       // for generated frames
//! shared.counters()                                              // GatewayCountersSnapshot
//! ```
//!
//! `Worker::with_mempool` (src/pipeline/worker.rs) gives the worker the mempool it copies
//! generated frames (ARP/NDP requests, ICMP time-exceeded) into; without it those frames
//! are counted as `drop_no_buffer` and never sent, so neighbours only resolve from their
//! own requests.
//!
//! # Per burst
//!
//! 1. Parse each frame once. ARP and NDP for the gateway's addresses (and the SNAT pool's,
//!    on outside ports) are answered in place and sent back out the input port; the
//!    sender is learned. Echo requests to the gateway's addresses are answered in place.
//!    Other ARP/NDP, multicast, broadcast and link-local traffic is consumed
//!    (`drop_local`); non-IP is `drop_not_ip`, unparsable IP `drop_malformed`.
//! 2. A forwarded packet whose TTL/hop limit would expire gets an ICMP time-exceeded
//!    (rate-limited to [`ICMP_ERRORS_PER_SEC`] per worker) and is `drop_ttl_expired`.
//! 3. The rest go through the tracker as one burst (`process_burst_nat`), in the input
//!    port's zone. Commit and NAT: from an inside port, a connection leaving by an
//!    outside port is committed with the family's SNAT pool (committed without NAT when it
//!    stays inside); from an outside port, only one a DNAT rule matches is committed, with
//!    that rule (or any, without NAT, with `policy.outside_new = "allow"`).
//! 4. Policy: refusals (`zone_limit`, `max_conns`, `nat_exhausted`); invalid
//!    (`invalid`, unless `policy.invalid = "allow"`); a new packet from outside that
//!    created nothing (`policy_denied`).
//! 5. NAT rewrite (`nat::apply`, incremental checksums, ICMP errors inner and outer),
//!    route on the translated destination (connected prefixes, then routes, longest
//!    prefix first), TTL/hop limit decrement, source MAC := output port's MAC, destination
//!    MAC := the neighbour's (static `next_hop_mac`, or the neighbour table). An
//!    unresolved neighbour gets an ARP request / neighbour solicitation (one per
//!    [`neigh::NEIGH_RETRY_MS`]) and the packet waits in a hold slot of its output port
//!    ([`HOLD_PER_PORT`] per port and worker) until the answer comes (then it is sent) or
//!    [`HOLD_TIMEOUT_MS`] pass (`drop_neigh_unresolved`); a full queue is
//!    `drop_hold_queue_full`.
//!
//! No heap allocation, lock or syscall per packet: the neighbour lookup reads the worker's
//! own copy of the table (the shared one is locked only to learn, on a miss, and for the
//! once-a-second aging), and all scratch space is allocated in [`GatewayStep::new`].

pub mod frames;
pub mod martian;
pub mod neigh;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::forward::MAX_PORTS;
use super::{DropReason, MacAddr, PacketStep, StepSink, Verdict};
use crate::config::{Config, Role};
use crate::conntrack::key::ip_to_addr;
use crate::conntrack::{Conntrack, CtState, OwnedCtWorker, PacketMeta, Refusal, ReplyTuples};
use crate::nat::{self, NatRange, NatSpec, Rewritten};
use crate::wire::parse::{Family, Fragment, L4Summary, ParseError, ParsedPacket};
use crate::wire::parse_frame_into;
use frames::*;
use neigh::*;

/// Packets the step hands the tracker at once.
pub const BURST: usize = 32;
/// Hold slots per output port and worker.
pub const HOLD_PER_PORT: usize = 16;
/// A held packet whose neighbour stays unresolved this long is dropped.
pub const HOLD_TIMEOUT_MS: u64 = 3_000;
/// ICMP errors (time exceeded) a worker sends per second at most.
pub const ICMP_ERRORS_PER_SEC: u32 = 100;
/// SNAT pools (one per family) plus DNAT rules.
pub const MAX_NAT_SPECS: usize = 64;
/// Generated frames pending per worker between two services.
const GEN_SLOTS: usize = 64;
/// Largest generated frame.
const GEN_LEN: usize = 256;

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
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A configured port as the datapath needs it.
#[derive(Clone, Copy, Debug)]
struct Port {
    id: u16,
    role: Role,
    mac: MacAddr,
    v4: Option<([u8; 16], u8)>,
    v6: Option<([u8; 16], u8)>,
    zone: u16,
    static_mac: Option<MacAddr>,
}

/// A route (connected ones have no `via`); `net` is the masked address.
#[derive(Clone, Copy, Debug)]
struct RouteEntry {
    family: u8,
    net: u128,
    len: u8,
    port_idx: u8,
    via: Option<[u8; 16]>,
}

fn width(family: u8) -> u8 {
    if family == 4 {
        32
    } else {
        128
    }
}

/// The address as a number (IPv4: the low 32 bits).
#[inline]
fn bits(family: u8, a: &[u8; 16]) -> u128 {
    if family == 4 {
        u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    } else {
        u128::from_be_bytes(*a)
    }
}

/// The netmask of a prefix length, as a number of the family's width.
fn mask_of(family: u8, len: u8) -> u128 {
    let w = u32::from(width(family));
    let len = u32::from(len).min(w);
    if len == 0 {
        0
    } else {
        (u128::MAX >> (128 - w)) & (u128::MAX << (w - len))
    }
}

#[inline]
fn prefix_of(family: u8, v: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        v >> (width(family) - len)
    }
}

fn family_of(f: Family) -> u8 {
    f as u8
}

/// What all workers share: config-derived tables, the tracker, the neighbour table and
/// the clock.
pub struct GatewayShared {
    ct: Arc<Conntrack>,
    now: AtomicU64,
    /// When set, [`GatewayShared::now_ms`] reads the monotonic clock itself (ms since this
    /// instant, plus one): workers then never depend on the control lcore being scheduled
    /// to see time pass (expiry and reclaim-on-insert stay right when it is starved).
    clock_start: std::sync::OnceLock<std::time::Instant>,
    counters: GatewayCounters,
    ports: Vec<Port>,
    /// `port_idx[id]`: index into `ports`, `u8::MAX` when not configured.
    port_idx: [u8; MAX_PORTS],
    /// Routes by family as (network, mask, port index, via): longest prefix first; at
    /// equal length, connected before configured.
    routes4: Vec<(u32, u32, u8, Option<[u8; 16]>)>,
    routes6: Vec<(u128, u128, u8, Option<[u8; 16]>)>,
    /// The gateway's addresses and SNAT pools as inclusive ranges of numbers.
    own4: Vec<(u32, u32)>,
    own6: Vec<(u128, u128)>,
    /// Broadcast addresses of the connected IPv4 prefixes.
    bcast4: Vec<u32>,
    /// SNAT spec index for IPv4 / IPv6, into `nat_specs`.
    snat_v4: Option<u16>,
    snat_v6: Option<u16>,
    /// SNAT pools (for ARP/NDP answers and "is this ours").
    pools: Vec<NatRange>,
    /// DNAT rules: (proto, family, match address, match port, spec index).
    dnat: Vec<(u8, u8, [u8; 16], u16, u16)>,
    nat_specs: Vec<NatSpec>,
    outside_new_allow: bool,
    invalid_allow: bool,
    neigh: Mutex<NeighMap>,
    neigh_gen: AtomicU64,
    /// When a worker last aged the neighbour table (ms): whichever worker sees it a
    /// second old takes the next turn (one compare-and-swap decides).
    last_age: AtomicU64,
}

impl GatewayShared {
    /// Builds the tables from `cfg`. `port_macs` gives the MAC of every configured port.
    pub fn new(
        cfg: &Config,
        ct: Arc<Conntrack>,
        port_macs: &[(u16, MacAddr)],
    ) -> Result<Arc<GatewayShared>, String> {
        let mut ports = Vec::new();
        let mut port_idx = [u8::MAX; MAX_PORTS];
        for p in &cfg.ports {
            let slot = port_idx.get_mut(usize::from(p.port)).ok_or_else(|| {
                format!("port {} is beyond the {MAX_PORTS} ports supported", p.port)
            })?;
            let mac = port_macs
                .iter()
                .find(|(id, _)| *id == p.port)
                .map(|(_, m)| *m)
                .ok_or_else(|| format!("no MAC address known for port {}", p.port))?;
            *slot = ports.len() as u8;
            ports.push(Port {
                id: p.port,
                role: p.role,
                mac,
                v4: p.ipv4.map(|(a, l)| (ip_to_addr(IpAddr::V4(a)).0, l)),
                v6: p.ipv6.map(|(a, l)| (ip_to_addr(IpAddr::V6(a)).0, l)),
                zone: p.zone,
                static_mac: p.next_hop_mac.map(MacAddr),
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
            let port_idx = *port_idx
                .get(usize::from(r.port))
                .filter(|&&i| i != u8::MAX)
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
                    bcast4.push(v | (u32::MAX >> len));
                }
            }
            if let Some((a, _)) = p.v6 {
                let v = bits(6, &a);
                own6.push((v, v));
            }
        }
        for r in &cfg.snat {
            if r.family == 4 {
                own4.push((bits(4, &r.addr_min) as u32, bits(4, &r.addr_max) as u32));
            } else {
                own6.push((bits(6, &r.addr_min), bits(6, &r.addr_max)));
            }
        }

        let mut nat_specs = Vec::new();
        let mut snat_v4 = None;
        let mut snat_v6 = None;
        for r in &cfg.snat {
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
        Ok(Arc::new(GatewayShared {
            ct,
            now: AtomicU64::new(0),
            clock_start: std::sync::OnceLock::new(),
            counters: GatewayCounters::default(),
            ports,
            port_idx,
            routes4,
            routes6,
            own4,
            own6,
            bcast4,
            snat_v4,
            snat_v6,
            pools: cfg.snat.clone(),
            dnat,
            nat_specs,
            outside_new_allow: cfg.policy.outside_new_allow,
            invalid_allow: cfg.policy.invalid_allow,
            neigh: Mutex::new(NeighMap::default()),
            neigh_gen: AtomicU64::new(0),
            last_age: AtomicU64::new(0),
        }))
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
        }
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

    fn neigh_lock(&self) -> std::sync::MutexGuard<'_, NeighMap> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.neigh.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn port(&self, id: u16) -> Option<&Port> {
        let i = *self.port_idx.get(usize::from(id))?;
        self.ports.get(usize::from(i))
    }

    /// Is `a` one of the gateway's own addresses (any port, any SNAT pool)?
    #[inline]
    fn is_own(&self, family: u8, a: &[u8; 16]) -> bool {
        if family == 4 {
            let v = v4_num(a);
            self.own4.iter().any(|&(lo, hi)| lo <= v && v <= hi)
        } else {
            let v = u128::from_be_bytes(*a);
            self.own6.iter().any(|&(lo, hi)| lo <= v && v <= hi)
        }
    }

    #[inline]
    fn in_pool(&self, family: u8, a: &[u8; 16]) -> bool {
        self.pools.iter().any(|r| {
            r.family == family
                && bits(family, a) >= bits(family, &r.addr_min)
                && bits(family, a) <= bits(family, &r.addr_max)
        })
    }

    /// Does port `p` answer ARP/NDP for `a`? Its own address, and on outside ports the
    /// SNAT pool addresses.
    fn answers_for(&self, p: &Port, family: u8, a: &[u8; 16]) -> bool {
        let own = if family == 4 { p.v4 } else { p.v6 };
        own.is_some_and(|(x, _)| x == *a) || (p.role == Role::Outside && self.in_pool(family, a))
    }

    /// Longest-prefix route: the index of the route in the family's table.
    #[inline]
    fn route(&self, family: u8, dst: &[u8; 16]) -> Option<u8> {
        let i = if family == 4 {
            let v = v4_num(dst);
            self.routes4.iter().position(|r| v & r.1 == r.0)?
        } else {
            let v = u128::from_be_bytes(*dst);
            self.routes6.iter().position(|r| v & r.1 == r.0)?
        };
        Some(i as u8)
    }

    /// Route `i` of the family's table: (output port index, next hop if not direct).
    #[inline]
    fn route_at(&self, family: u8, i: u8) -> Option<(u8, Option<&[u8; 16]>)> {
        let i = usize::from(i);
        if family == 4 {
            self.routes4.get(i).map(|r| (r.2, r.3.as_ref()))
        } else {
            self.routes6.get(i).map(|r| (r.2, r.3.as_ref()))
        }
    }

    /// Is `a` on a connected prefix of port `p`?
    fn on_link(p: &Port, family: u8, a: &[u8; 16]) -> bool {
        let own = if family == 4 { p.v4 } else { p.v6 };
        own.is_some_and(|(x, len)| {
            prefix_of(family, bits(family, &x), len) == prefix_of(family, bits(family, a), len)
        })
    }

    /// Learns `mac` for (port, addr): updates an existing entry, and creates one when
    /// `create`. Bumps the generation when a worker's copy must change.
    fn learn(&self, port: u16, addr: &[u8; 16], mac: [u8; 6], create: bool, now: u64) {
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
            e.mac = MacAddr(mac);
            e.resolved = true;
            e.updated_ms = now;
            if changed {
                bump(&self.counters.neigh_learned);
                self.neigh_gen.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Forgets entries that aged out.
    fn age_neighbours(&self, now: u64) {
        let mut n = self.neigh_lock();
        let removed = n.retain(|e| {
            if e.resolved {
                now.saturating_sub(e.updated_ms) >= NEIGH_TTL_MS
            } else {
                e.requested_ms == u64::MAX
                    || now.saturating_sub(e.requested_ms) >= NEIGH_INCOMPLETE_MS
            }
        });
        if removed > 0 {
            self.neigh_gen.fetch_add(1, Ordering::Release);
        }
    }
}

fn is_v6_addr(a: &[u8; 16]) -> bool {
    a[4..] != [0; 12]
}

/// A generated frame waiting for the worker.
struct GenFrame {
    port: u16,
    len: u16,
    buf: [u8; GEN_LEN],
}

/// A frame waiting for its neighbour.
#[derive(Clone, Copy, Default)]
struct Held {
    used: bool,
    out_port: u16,
    in_port: u16,
    family: u8,
    nh: [u8; 16],
    since: u64,
}

/// What the first pass decided for a frame.
#[derive(Clone, Copy)]
enum Pre {
    Done(Verdict),
    /// Tracked (its `PacketMeta` is the frame's): whether the destination is the
    /// gateway's, and the route of the destination when the first pass looked it up.
    Track {
        dst_own: bool,
        /// Route index, `u8::MAX` when not looked up.
        route: u8,
    },
}

/// One worker's gateway step.
pub struct GatewayStep {
    shared: Arc<GatewayShared>,
    ct: OwnedCtWorker,
    w: WorkerState,
}

/// The per-worker state, apart from the tracker handle (so both can be borrowed).
struct WorkerState {
    now: u64,
    neigh: NeighMap,
    neigh_gen: u64,
    held: Vec<Held>,
    n_held: usize,
    gen: Vec<GenFrame>,
    n_gen: usize,
    err_window: u64,
    err_count: u32,
    /// One per frame of the burst (always `BURST` long); frames are parsed straight into
    /// them, and those not tracked are skipped by the tracker.
    metas: Vec<PacketMeta>,
    pre: [Pre; BURST],
    /// The burst's parse errors (`None`: parsed into `metas[i]`), all taken before any
    /// is used.
    parse_err: [Option<ParseError>; BURST],
}

impl GatewayStep {
    /// The step of worker `worker_index` (its tracker shard).
    pub fn new(shared: Arc<GatewayShared>, worker_index: usize) -> GatewayStep {
        let ct = OwnedCtWorker::new(shared.ct.clone(), worker_index);
        let n_ports = shared.ports.len();
        let mut gen = Vec::with_capacity(GEN_SLOTS);
        for _ in 0..GEN_SLOTS {
            gen.push(GenFrame {
                port: 0,
                len: 0,
                buf: [0; GEN_LEN],
            });
        }
        GatewayStep {
            ct,
            w: WorkerState {
                now: 0,
                neigh: NeighMap::default(),
                neigh_gen: u64::MAX,
                held: vec![Held::default(); n_ports * HOLD_PER_PORT],
                n_held: 0,
                gen,
                n_gen: 0,
                err_window: 0,
                err_count: 0,
                metas: vec![PacketMeta::new(ParsedPacket::EMPTY, 0, false); BURST],
                pre: [Pre::Done(Verdict::Drop(DropReason::NoRoute)); BURST],
                parse_err: [None; BURST],
            },
            shared,
        }
    }

    /// The shared part.
    pub fn shared(&self) -> &Arc<GatewayShared> {
        &self.shared
    }

    fn chunk(&mut self, frames: &mut [&mut [u8]], in_port: u16, verdicts: &mut [Verdict]) {
        let sh = &*self.shared;
        let w = &mut self.w;
        let Some(port) = sh.port(in_port).copied() else {
            for v in verdicts.iter_mut() {
                *v = Verdict::Drop(DropReason::NoRoute);
            }
            return;
        };
        // Taken out while the burst is handled (no allocation: the vector moves), so the
        // metas are used in place while `w` is borrowed mutably.
        let mut metas = std::mem::take(&mut w.metas);
        let n = frames.len().min(metas.len());
        // Parse the whole burst first, straight into the metas: each result is read only
        // after the other frames' parses, never right after its own stores (reading a
        // just-written parse result cost a store-forwarding stall per packet, measured
        // with perf).
        for ((e, m), f) in w
            .parse_err
            .iter_mut()
            .zip(metas.iter_mut())
            .zip(frames.iter())
        {
            *e = parse_frame_into(f, &mut m.parsed).err();
        }
        let mut tracked = 0usize;
        for (i, (f, m)) in frames.iter_mut().zip(metas.iter_mut()).enumerate() {
            w.pre[i] = w.ingress(sh, f, &port, m, w.parse_err[i]);
            if matches!(w.pre[i], Pre::Track { .. }) {
                tracked += 1;
            } else {
                m.skip();
            }
        }
        if tracked > 0 {
            let mut refs: [&dyn ReplyTuples; MAX_NAT_SPECS] = [&NO_NAT; MAX_NAT_SPECS];
            for (r, s) in refs.iter_mut().zip(sh.nat_specs.iter()) {
                *r = s;
            }
            self.ct
                .process_burst_nat(&mut metas[..n], &refs[..sh.nat_specs.len()], w.now);
        }
        for (i, ((f, v), m)) in frames
            .iter_mut()
            .zip(verdicts.iter_mut())
            .zip(metas.iter())
            .enumerate()
        {
            *v = match w.pre[i] {
                Pre::Done(v) => v,
                Pre::Track { dst_own, route } => w.egress(sh, f, &port, m, dst_own, route),
            };
        }
        w.metas = metas;
    }
}

/// The NAT slot filler for unused entries (never selected).
static NO_NAT: NatSpec = NatSpec {
    snat: None,
    dnat: None,
};

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl WorkerState {
    /// Refreshes the worker's copy of the neighbour table if the shared one changed.
    #[inline]
    fn sync_neigh(&mut self, sh: &GatewayShared) {
        let g = sh.neigh_gen.load(Ordering::Acquire);
        if g != self.neigh_gen {
            let n = sh.neigh_lock();
            self.neigh.clone_from(&n);
            self.neigh_gen = g;
        }
    }

    fn gen_slot(&mut self) -> Option<&mut GenFrame> {
        let g = self.gen.get_mut(self.n_gen)?;
        self.n_gen += 1;
        Some(g)
    }

    fn push_gen(&mut self, port: u16, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let Some(g) = self.gen_slot() else {
            return false;
        };
        match f(&mut g.buf) {
            Some(len) => {
                g.port = port;
                g.len = len as u16;
                true
            }
            None => {
                self.n_gen -= 1;
                false
            }
        }
    }

    fn icmp_error_allowed(&mut self) -> bool {
        if self.now.saturating_sub(self.err_window) >= 1000 {
            self.err_window = self.now;
            self.err_count = 0;
        }
        if self.err_count >= ICMP_ERRORS_PER_SEC {
            return false;
        }
        self.err_count += 1;
        true
    }

    /// First pass over one frame: answers, drops, or queues it for the tracker.
    fn ingress(
        &mut self,
        sh: &GatewayShared,
        frame: &mut [u8],
        port: &Port,
        m: &mut PacketMeta,
        parse_err: Option<ParseError>,
    ) -> Pre {
        let Some(et) = be16(frame, 12) else {
            return Pre::Done(Verdict::Drop(DropReason::ShortFrame));
        };
        if et == ETHERTYPE_ARP {
            return Pre::Done(self.arp(sh, frame, port));
        }
        // Frames for other hosts (a flooded unicast) are not ours to route; group
        // addresses only carry NDP to us (below).
        let group = frame[0] & 1 != 0;
        if !group && frame[0..6] != port.mac.0 {
            return Pre::Done(Verdict::Drop(DropReason::Local));
        }
        match parse_err {
            None => {}
            Some(ParseError::TruncatedEthernet) => {
                return Pre::Done(Verdict::Drop(DropReason::ShortFrame))
            }
            Some(ParseError::NotIp) => return Pre::Done(Verdict::Drop(DropReason::NotIp)),
            Some(_) => return Pre::Done(Verdict::Drop(DropReason::Malformed)),
        }
        let p = &m.parsed;
        let fam = family_of(p.family);
        let dst_own = sh.is_own(fam, &p.dst);
        if let L4Summary::Icmp(i) = &p.l4 {
            if p.fragment == Fragment::None {
                let v6 = fam == 6;
                if v6 && (133..=137).contains(&i.icmp_type) {
                    return Pre::Done(self.ndp(sh, frame, p, port, i.icmp_type));
                }
                let echo_req = if v6 { 128 } else { 8 };
                if dst_own && !group && i.icmp_type == echo_req && i.code == 0 {
                    let ok = echo_reply_in_place(
                        frame,
                        v6,
                        usize::from(p.l3_offset),
                        usize::from(p.l4_offset),
                        port.mac,
                    );
                    if ok {
                        bump(&sh.counters.echo_replies);
                        return Pre::Done(Verdict::Forward(port.id));
                    }
                    return Pre::Done(Verdict::Drop(DropReason::Malformed));
                }
            }
        }
        if group || not_forwardable(fam, p) || (fam == 4 && is_directed_broadcast(sh, &p.dst)) {
            return Pre::Done(Verdict::Drop(DropReason::Local));
        }
        if !dst_own && p.ttl <= 1 {
            self.time_exceeded(sh, frame, p, port);
            return Pre::Done(Verdict::Drop(DropReason::TtlExpired));
        }
        // Commit and NAT.
        let mut route = u8::MAX;
        let (commit, nat) = match port.role {
            Role::Inside => {
                if dst_own {
                    // Only connections that already exist (none are created to us).
                    (false, None)
                } else {
                    let Some(ri) = sh.route(fam, &p.dst) else {
                        return Pre::Done(Verdict::Drop(DropReason::NoRoute));
                    };
                    route = ri;
                    let out_role = sh
                        .route_at(fam, ri)
                        .and_then(|r| sh.ports.get(usize::from(r.0)))
                        .map(|p| p.role);
                    let snat = if out_role == Some(Role::Outside) {
                        if fam == 4 {
                            sh.snat_v4
                        } else {
                            sh.snat_v6
                        }
                    } else {
                        None
                    };
                    (true, snat)
                }
            }
            Role::Outside => match dnat_match(sh, fam, p) {
                Some(spec) => (true, Some(spec)),
                None => (sh.outside_new_allow && !dst_own, None),
            },
        };
        m.prepare(port.zone, commit, nat);
        Pre::Track { dst_own, route }
    }

    /// Second pass: policy, NAT, route, TTL, MACs.
    fn egress(
        &mut self,
        sh: &GatewayShared,
        frame: &mut [u8],
        port: &Port,
        m: &PacketMeta,
        dst_own: bool,
        route: u8,
    ) -> Verdict {
        let r = &m.result;
        if let Some(refusal) = r.refused {
            return Verdict::Drop(match refusal {
                Refusal::ZoneLimit => DropReason::ZoneLimit,
                Refusal::MaxConns | Refusal::TableFull => DropReason::MaxConns,
                Refusal::NatExhausted | Refusal::TupleCollision => DropReason::NatExhausted,
            });
        }
        let st = r.state;
        if st.has(CtState::INV) {
            if !sh.invalid_allow {
                return Verdict::Drop(DropReason::Invalid);
            }
        } else if r.conn.is_none() {
            // Not part of any connection and none created: new traffic the policy did
            // not commit (from outside, or to the gateway itself).
            return Verdict::Drop(if port.role == Role::Outside {
                DropReason::PolicyDenied
            } else {
                DropReason::Local
            });
        }
        let p = &m.parsed;
        let rw = match nat::apply(frame, p, r, self_ct(sh)) {
            Ok(rw) => rw,
            Err(_) => return Verdict::Drop(DropReason::NatFailed),
        };
        let fam = family_of(p.family);
        let l3 = usize::from(p.l3_offset);
        // The first pass's findings hold unless NAT changed the destination.
        let mut dst = p.dst;
        let (dst_own, route) = if rw.has(Rewritten::DST_ADDR) {
            let (at, n) = if fam == 4 {
                (l3 + 16, 4)
            } else {
                (l3 + 24, 16)
            };
            match frame.get(at..at + n) {
                Some(b) => dst[..n].copy_from_slice(b),
                None => return Verdict::Drop(DropReason::NatFailed),
            }
            (sh.is_own(fam, &dst), sh.route(fam, &dst))
        } else if route != u8::MAX {
            (dst_own, Some(route))
        } else {
            (dst_own, sh.route(fam, &dst))
        };
        if dst_own {
            return Verdict::Drop(DropReason::Local);
        }
        let Some((out_idx, via)) = route.and_then(|i| sh.route_at(fam, i)) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let nh = via.unwrap_or(&dst);
        if p.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExpired);
        }
        if !decrement_ttl(frame, fam, l3) {
            return Verdict::Drop(DropReason::Malformed);
        }
        let Some(out) = sh.ports.get(usize::from(out_idx)) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if let Some(b) = frame.get_mut(6..12) {
            b.copy_from_slice(&out.mac.0);
        }
        match self.resolve(sh, out, fam, nh) {
            Ok(mac) => {
                if let Some(b) = frame.get_mut(0..6) {
                    b.copy_from_slice(&mac.0);
                }
                Verdict::Forward(out.id)
            }
            Err(reason) => {
                if reason != DropReason::NeighUnresolved {
                    return Verdict::Drop(reason);
                }
                self.hold(sh, out_idx, out, port.id, fam, nh)
            }
        }
    }

    /// The next hop's MAC, from the static config or the worker's copy of the table;
    /// on a miss, asks (rate-limited) and says `NeighUnresolved`.
    #[inline]
    fn resolve(
        &mut self,
        sh: &GatewayShared,
        out: &Port,
        fam: u8,
        nh: &[u8; 16],
    ) -> Result<MacAddr, DropReason> {
        if let Some(m) = out.static_mac {
            return Ok(m);
        }
        if let Some(e) = self.neigh.get(out.id, nh) {
            let age = self.now.saturating_sub(e.updated_ms);
            if e.resolved && age < NEIGH_TTL_MS {
                let mac = e.mac;
                if age >= NEIGH_REFRESH_MS && self.may_ask(e) {
                    // Still usable meanwhile: the answer only refreshes it.
                    let _ = self.ask_shared(sh, out, fam, nh);
                }
                return Ok(mac);
            }
            if !self.may_ask(e) {
                return Err(DropReason::NeighUnresolved);
            }
        }
        self.ask_shared(sh, out, fam, nh)
    }

    fn may_ask(&self, e: &NeighEntry) -> bool {
        e.requested_ms == u64::MAX || self.now.saturating_sub(e.requested_ms) >= NEIGH_RETRY_MS
    }

    /// The slow path: under the shared lock, take a fresh answer if some worker learned
    /// it, else send a request (once per retry interval over all workers).
    fn ask_shared(
        &mut self,
        sh: &GatewayShared,
        out: &Port,
        fam: u8,
        nh: &[u8; 16],
    ) -> Result<MacAddr, DropReason> {
        let own = if fam == 4 { out.v4 } else { out.v6 };
        let Some((src, _)) = own else {
            return Err(DropReason::NoRoute);
        };
        let now = self.now;
        let mut n = sh.neigh_lock();
        let Some((e, created)) = n.entry(out.id, nh) else {
            return Err(DropReason::NoBuffer);
        };
        let fresh = e.resolved && now.saturating_sub(e.updated_ms) < NEIGH_TTL_MS;
        let ask =
            e.requested_ms == u64::MAX || now.saturating_sub(e.requested_ms) >= NEIGH_RETRY_MS;
        let refresh_due = !fresh || now.saturating_sub(e.updated_ms) >= NEIGH_REFRESH_MS;
        if ask && refresh_due {
            e.requested_ms = now;
        }
        let copy = *e;
        drop(n);
        if created {
            sh.neigh_gen.fetch_add(1, Ordering::Release);
        }
        self.neigh.put(&copy);
        if ask && refresh_due {
            let sent = if fam == 4 {
                let mut spa = [0u8; 4];
                spa.copy_from_slice(&src[..4]);
                let mut tpa = [0u8; 4];
                tpa.copy_from_slice(&nh[..4]);
                self.push_gen(out.id, |b| arp_request(b, out.mac, spa, tpa))
            } else {
                self.push_gen(out.id, |b| ns_request(b, out.mac, &src, nh))
            };
            if sent {
                bump(if fam == 4 {
                    &sh.counters.arp_requests
                } else {
                    &sh.counters.nd_solicits
                });
            }
        }
        if fresh {
            Ok(copy.mac)
        } else {
            Err(DropReason::NeighUnresolved)
        }
    }

    fn hold(
        &mut self,
        sh: &GatewayShared,
        out_idx: u8,
        out: &Port,
        in_port: u16,
        fam: u8,
        nh: &[u8; 16],
    ) -> Verdict {
        let base = usize::from(out_idx) * HOLD_PER_PORT;
        let Some(slots) = self.held.get_mut(base..base + HOLD_PER_PORT) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        let Some(i) = slots.iter().position(|h| !h.used) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        slots[i] = Held {
            used: true,
            out_port: out.id,
            in_port,
            family: fam,
            nh: *nh,
            since: self.now,
        };
        self.n_held += 1;
        bump(&sh.counters.held);
        Verdict::Hold((base + i) as u16)
    }

    fn time_exceeded(&mut self, sh: &GatewayShared, frame: &[u8], p: &ParsedPacket, port: &Port) {
        if let L4Summary::Icmp(i) = &p.l4 {
            if i.is_error {
                return;
            }
        }
        if p.fragment == Fragment::Later || !self.icmp_error_allowed() {
            return;
        }
        let l3 = usize::from(p.l3_offset);
        let sent = if p.family == Family::V4 {
            let Some((src, _)) = port.v4 else { return };
            let mut s = [0u8; 4];
            s.copy_from_slice(&src[..4]);
            self.push_gen(port.id, |b| time_exceeded_v4(b, frame, l3, port.mac, s))
        } else {
            let Some((src, _)) = port.v6 else { return };
            self.push_gen(port.id, |b| time_exceeded_v6(b, frame, l3, port.mac, &src))
        };
        if sent {
            bump(&sh.counters.time_exceeded);
        }
    }

    fn arp(&mut self, sh: &GatewayShared, frame: &mut [u8], port: &Port) -> Verdict {
        let Some(a) = read_arp(frame) else {
            return Verdict::Drop(if frame.len() < ETH_LEN + ARP_LEN {
                DropReason::Malformed
            } else {
                DropReason::NotIp
            });
        };
        let mut spa = [0u8; 16];
        spa[..4].copy_from_slice(&a.spa);
        let mut tpa = [0u8; 16];
        tpa[..4].copy_from_slice(&a.tpa);
        let for_us = sh.answers_for(port, 4, &tpa);
        if a.spa != [0; 4] && GatewayShared::on_link(port, 4, &spa) && !sh.is_own(4, &spa) {
            // Requests for us create the entry (the host will talk to us); replies and
            // other traffic only update an entry we have (asked for).
            sh.learn(port.id, &spa, a.sha, for_us && a.op == 1, self.now);
        }
        if a.op == 1 && for_us && a.spa != [0; 4] && arp_reply_in_place(frame, &a, port.mac) {
            bump(&sh.counters.arp_replies);
            return Verdict::Forward(port.id);
        }
        Verdict::Drop(DropReason::Local)
    }

    fn ndp(
        &mut self,
        sh: &GatewayShared,
        frame: &mut [u8],
        p: &ParsedPacket,
        port: &Port,
        ty: u8,
    ) -> Verdict {
        let l3 = usize::from(p.l3_offset);
        let l4 = usize::from(p.l4_offset);
        let len = usize::from(p.l4_len);
        if p.ttl != 255 || p.vlans != 0 || len < 24 {
            return Verdict::Drop(DropReason::Local);
        }
        let Some(msg) = frame.get(l4..l4 + len) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let mut target = [0u8; 16];
        target.copy_from_slice(&msg[8..24]);
        // The link-layer address option of the given kind.
        let lladdr = |kind: u8| -> Option<[u8; 6]> {
            let mut o = 24;
            while o + 8 <= msg.len() {
                let olen = usize::from(msg[o + 1]) * 8;
                if olen == 0 {
                    return None;
                }
                if msg[o] == kind && olen == 8 {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&msg[o + 2..o + 8]);
                    return Some(m);
                }
                o += olen;
            }
            None
        };
        match ty {
            135 => {
                let for_us = sh.answers_for(port, 6, &target);
                let unspecified = p.src == [0; 16];
                if !unspecified {
                    if let Some(mac) = lladdr(1) {
                        if GatewayShared::on_link(port, 6, &p.src) || is_link_local(&p.src) {
                            sh.learn(port.id, &p.src, mac, for_us, self.now);
                        }
                    }
                }
                if !for_us || unspecified {
                    return Verdict::Drop(DropReason::Local);
                }
                let mut dst_mac = [0u8; 6];
                dst_mac.copy_from_slice(&frame[6..12]);
                let src = p.src;
                if len == 32 && frame.len() >= l3 + 40 + 32 && l3 == ETH_LEN {
                    // In place: the NS with one option has the NA's size.
                    if na_reply(frame, port.mac, dst_mac, &target, &src).is_some() {
                        bump(&sh.counters.nd_adverts);
                        return Verdict::Forward(port.id);
                    }
                } else if self.push_gen(port.id, |b| na_reply(b, port.mac, dst_mac, &target, &src))
                {
                    bump(&sh.counters.nd_adverts);
                }
                Verdict::Drop(DropReason::Local)
            }
            136 => {
                let mac = lladdr(2).or_else(|| {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&frame[6..12]);
                    Some(m)
                });
                if let Some(mac) = mac {
                    if GatewayShared::on_link(port, 6, &target) {
                        sh.learn(port.id, &target, mac, false, self.now);
                    }
                }
                Verdict::Drop(DropReason::Local)
            }
            _ => Verdict::Drop(DropReason::Local),
        }
    }

    /// Releases held frames whose neighbour resolved, drops the timed-out ones.
    fn service_held(&mut self, sh: &GatewayShared, sink: &mut dyn StepSink) {
        if self.n_held == 0 {
            return;
        }
        for i in 0..self.held.len() {
            let h = self.held[i];
            if !h.used {
                continue;
            }
            let Some(out) = sh.port(h.out_port).copied() else {
                continue;
            };
            match self.resolve(sh, &out, h.family, &h.nh) {
                Ok(mac) => {
                    sink.send_held(i as u16, h.out_port, mac);
                    bump(&sh.counters.released);
                }
                Err(r) => {
                    let timed_out = self.now.saturating_sub(h.since) >= HOLD_TIMEOUT_MS;
                    if r == DropReason::NeighUnresolved && !timed_out {
                        continue;
                    }
                    sink.drop_held(i as u16, DropReason::NeighUnresolved, h.in_port);
                }
            }
            self.held[i].used = false;
            self.n_held -= 1;
        }
    }
}

fn self_ct(sh: &GatewayShared) -> &Conntrack {
    &sh.ct
}

fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// Multicast, broadcast, unspecified or link-local destinations (and link-local
/// sources over IPv6) are never forwarded.
#[inline]
fn not_forwardable(fam: u8, p: &ParsedPacket) -> bool {
    if fam == 4 {
        p.dst[0] >= 224 || p.dst[..4] == [0; 4] || p.dst[0] == 127 || p.src[0] == 127
    } else {
        p.dst[0] == 0xff || is_link_local(&p.dst) || is_link_local(&p.src) || p.dst == [0; 16]
    }
}

/// The broadcast address of a connected IPv4 prefix.
#[inline]
fn is_directed_broadcast(sh: &GatewayShared, a: &[u8; 16]) -> bool {
    let v = v4_num(a);
    sh.bcast4.contains(&v)
}

#[inline(always)]
fn v4_num(a: &[u8; 16]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}

/// The NAT spec of the DNAT rule matching the packet, if any.
#[inline]
fn dnat_match(sh: &GatewayShared, fam: u8, p: &ParsedPacket) -> Option<u16> {
    if sh.dnat.is_empty() {
        return None;
    }
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

/// TTL / hop limit minus one (IPv4 header checksum updated incrementally).
#[inline]
fn decrement_ttl(frame: &mut [u8], fam: u8, l3: usize) -> bool {
    if fam == 4 {
        let Some(h) = frame.get_mut(l3..l3 + 12) else {
            return false;
        };
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] = h[8].wrapping_sub(1);
        let new = u16::from_be_bytes([h[8], h[9]]);
        let c = crate::wire::checksum::update_u16(u16::from_be_bytes([h[10], h[11]]), old, new);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        let Some(h) = frame.get_mut(l3 + 7) else {
            return false;
        };
        *h = h.wrapping_sub(1);
    }
    true
}

impl PacketStep for GatewayStep {
    fn process(&mut self, frame: &mut [u8], in_port: u16) -> Verdict {
        let mut v = [Verdict::Drop(DropReason::NoRoute)];
        self.process_burst(&mut [frame], in_port, &mut v);
        v[0]
    }

    fn process_burst(&mut self, frames: &mut [&mut [u8]], in_port: u16, verdicts: &mut [Verdict]) {
        self.w.now = self.shared.now_ms();
        self.w.sync_neigh(&self.shared);
        let n = frames.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + BURST).min(n);
            self.chunk(&mut frames[start..end], in_port, &mut verdicts[start..end]);
            start = end;
        }
    }

    fn hold_slots(&self) -> usize {
        self.w.held.len()
    }

    fn service(&mut self, sink: &mut dyn StepSink) {
        let sh = &*self.shared;
        let w = &mut self.w;
        w.now = sh.now_ms();
        let last = sh.last_age.load(Ordering::Relaxed);
        if w.now.saturating_sub(last) >= 1000
            && sh
                .last_age
                .compare_exchange(last, w.now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            sh.age_neighbours(w.now);
        }
        if w.n_held > 0 {
            w.sync_neigh(sh);
            w.service_held(sh, sink);
        }
        for g in w.gen[..w.n_gen].iter() {
            sink.emit(g.port, &g.buf[..usize::from(g.len)]);
        }
        w.n_gen = 0;
    }
}
