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
//! 0. Each frame belongs to an interface: its port's untagged one, or the VLAN
//!    sub-interface whose tag the worker took off ([`crate::pipeline::vlan`]); a frame
//!    still tagged, or for no configured interface, is `drop_vlan`.
//! 1. Parse each frame once. IPv4 headers whose checksum fails (`drop_bad_ip_checksum`:
//!    the NIC's RX verdict where it gave one, else computed) or that carry a loose/strict
//!    source route (`drop_source_route`) go no further. NDP is handled first (duplicate
//!    address detection comes from `::`); then martian sources, including the gateway's
//!    own addresses, and destinations ([`martian`]) are `drop_martian_src` /
//!    `drop_martian_dst`, never answered. ARP and NDP for the gateway's addresses (and
//!    the SNAT pool's, on outside ports) are answered in place and sent back out the
//!    input interface; the sender is learned. Echo requests to the gateway's addresses
//!    are answered in place. Other ARP/NDP, multicast, broadcast and link-local traffic
//!    is consumed (`drop_local`); non-IP is `drop_not_ip`, unparsable IP
//!    `drop_malformed`.
//! 2. A forwarded packet whose TTL/hop limit would expire gets an ICMP time-exceeded
//!    (rate-limited to [`ICMP_ERRORS_PER_SEC`] per worker) and is `drop_ttl_expired`.
//! 3. The rest go through the tracker as one burst (`process_burst_nat`), in the input
//!    port's zone. Commit and NAT: from an inside port, a connection leaving by an
//!    outside port is committed with the family's SNAT pool (committed without NAT when it
//!    stays inside); from an outside port, only one a DNAT rule matches is committed, with
//!    that rule (or any, without NAT, with `policy.outside_new = "allow"`). The SNAT
//!    pools translate TCP and UDP through the mapping table ([`crate::nat::mapping`]):
//!    one outside endpoint per inside endpoint for every destination. A TCP/UDP packet
//!    that matched no connection and created none, sent to a live mapping's outside
//!    endpoint, gets a second pass as a new connection: from inside, hairpinned to the
//!    mapping's inside endpoint with the sender's own mapping as source; from outside,
//!    to the inside endpoint when the pool's `filtering` admits its source.
//! 4. Policy: refusals (`zone_limit`, `max_conns`, `nat_exhausted`); invalid
//!    (`invalid`, unless `policy.invalid = "allow"`; fragments, which are not tracked,
//!    `fragment`); a packet to the gateway's own addresses that belongs to no connection
//!    (`local`), a new packet from outside to a host behind it that created nothing
//!    (`policy_denied`).
//! 5. NAT rewrite (`nat::apply`, incremental checksums, ICMP errors inner and outer),
//!    route on the translated destination (connected prefixes, then routes, longest
//!    prefix first), path MTU (`mtu`: a packet larger than its output port's `mtu` is
//!    fragmented when it is IPv4 without DF, else answered with ICMP "fragmentation
//!    needed" / "packet too big" and `drop_mtu_exceeded`), TTL/hop limit decrement,
//!    source MAC := output port's MAC, destination
//!    MAC := the neighbour's (static `next_hop_mac`, or the neighbour table). An
//!    unresolved neighbour gets an ARP request / neighbour solicitation (one per
//!    [`neigh::NEIGH_RETRY_MS`]) and the packet waits in a hold slot of its output port
//!    ([`HOLD_PER_PORT`] per port and worker) until the answer comes (then it is sent) or
//!    [`HOLD_TIMEOUT_MS`] pass (`drop_neigh_unresolved`); a full queue is
//!    `drop_hold_queue_full`. Entries follow Linux's neighbour states ([`neigh`]):
//!    reachable for 15–30 s after a confirmation, then stale; a stale entry in use is
//!    probed (3 unicast requests, then 3 broadcast ones) while still used, and dropped
//!    when every probe went unanswered (counted as `neigh_failed`).
//!
//! No heap allocation, lock or syscall per packet: the neighbour lookup reads the worker's
//! own copy of the table (the shared one is locked only to learn, on a miss, once per
//! retry interval for a request due, and for the once-a-second aging), and all scratch space is allocated in [`GatewayStep::new`].
//!
//! # Files
//!
//! This file has the step itself (the two passes, `ingress` and `egress`, around the
//! tracker's burst). `shared` holds [`GatewayShared`] (ports, routes, own addresses,
//! DNAT rules, counters, neighbour table, clock), `state` the per-worker state, `answers`
//! the traffic the gateway answers itself (ARP, NDP, echo, time exceeded), `resolve` the
//! neighbour resolution and hold queue, [`neigh`] the neighbour table, [`originated`]
//! the byte writers of the frames the gateway originates, `mtu` the path MTU handling,
//! [`fragment_out`] the RFC 791 egress fragmenter and [`ratelimit`] the ICMP token
//! bucket.

mod addr_set;
mod alg;
mod answers;
mod epoch;
pub mod fragment_out;
pub mod live;
pub mod martian;
mod mtu;
pub mod neigh;
pub mod originated;
pub mod ratelimit;
mod resolve;
mod shared;
mod state;
#[cfg(test)]
mod tests;
pub mod views;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::vlan::RxInfo;
use super::{DropReason, PacketStep, RxCksum, StepSink, Verdict};
use crate::at;
use crate::config::Role;
use crate::conntrack::{CtState, OwnedCtWorker, PacketMeta, Refusal, ReplyTuples};
use crate::ipf::{self, Detached, Outcome};
use crate::nat::mapping::{mapped_proto, Endpoint, Filtering, Mapped, Mapping};
use crate::nat::{self, NatRange, NatSpec, Rewritten};
use crate::wire::checksum::verify_ipv4_header;
use crate::wire::ethernet::is_vlan_tpid;
use crate::wire::parse::{tcp_flags, Fragment, L4Summary, ParseError, ParsedPacket};
use crate::wire::{ipv4, ipv6};
use crate::wire::{parse_frame, parse_frame_into};
use answers::answer_echo;
use originated::ETHERTYPE_ARP;
use shared::{dnat_match, family_of, is_directed_broadcast, not_forwardable, self_ct, Port};
use state::{rare_bit, Pre, WorkerState};

pub use answers::ICMP_ERRORS_PER_SEC;
pub use live::Publisher;
pub use shared::{
    frame_room, max_mtu, GatewayCounters, GatewayCountersSnapshot, GatewayRuntime, GatewayShared,
    MAX_NAT_SPECS,
};
pub use state::{BURST, HOLD_PER_PORT, HOLD_TIMEOUT_MS};

/// One worker's gateway step.
pub struct GatewayStep {
    /// The configuration version this worker runs ([`live`]).
    shared: Arc<GatewayShared>,
    ct: OwnedCtWorker,
    w: WorkerState,
    /// The worker's index (its tracker shard and quiescent-state slot).
    index: usize,
}

impl GatewayStep {
    /// The step of worker `worker_index` (its tracker shard).
    pub fn new(shared: Arc<GatewayShared>, worker_index: usize) -> GatewayStep {
        let ct = OwnedCtWorker::new(shared.ct.clone(), worker_index);
        let n_ports = shared.ports.len();
        shared.epoch.passed(worker_index, shared.generation);
        let mut step = GatewayStep {
            ct,
            w: WorkerState::new(n_ports),
            shared,
            index: worker_index,
        };
        step.quiesce();
        step
    }

    /// A quiescent point, between two bursts: switches to the published version when
    /// there is a newer one ([`live`]). One load when there is not.
    #[inline]
    fn quiesce(&mut self) {
        if self.shared.epoch.published() != self.shared.generation {
            self.switch_version();
        }
    }

    #[cold]
    fn switch_version(&mut self) {
        if let Some(next) = self.shared.epoch.take(self.shared.generation) {
            // Only a reference is dropped: the publisher frees the old version.
            self.shared = next;
        }
        self.shared.epoch.passed(self.index, self.shared.generation);
    }

    /// The shared part.
    pub fn shared(&self) -> &Arc<GatewayShared> {
        &self.shared
    }

    /// One burst (at most [`BURST`] frames) in three passes, each a function of its own
    /// so that each stays small enough for its per-packet helpers to be inlined (measured
    /// with `ctgate-perf step`: in one function, LLVM left `nat::apply`, `is_own`, `route`
    /// and the martian checks as calls): parse and [`WorkerState::ingress`], the tracker
    /// ([`track`]), then [`WorkerState::egress`].
    fn chunk(
        &mut self,
        frames: &mut [&mut [u8]],
        in_port: u16,
        rx: &[RxInfo],
        verdicts: &mut [Verdict],
    ) {
        let sh = &*self.shared;
        if !sh.has_port(in_port) {
            for v in verdicts.iter_mut() {
                *v = Verdict::Drop(DropReason::NoRoute);
            }
            return;
        }
        // Each frame's interface: the port's untagged one, or the sub-interface of the
        // VLAN the worker took the tag of; none is `drop_vlan`.
        let idx_of = |vlan: Option<u16>| {
            sh.iface(in_port, vlan)
                .and_then(|p| sh.port_idx.get(usize::from(p.id)).copied())
                .unwrap_or(u8::MAX)
        };
        // The untagged interface once per burst; a tagged frame's looked up on its own.
        let untagged = idx_of(None);
        let mut ifaces = [u8::MAX; BURST];
        for (k, r) in ifaces.iter_mut().zip(rx.iter()) {
            *k = match r.vlan {
                None => untagged,
                vlan => idx_of(vlan),
            };
        }
        // Taken out while the burst is handled (no allocation: the vector moves), so the
        // metas are used in place while `w` is borrowed mutably.
        let mut metas = std::mem::take(&mut self.w.metas);
        let tracked = self.w.ingress_pass(sh, frames, rx, &ifaces, &mut metas);
        if tracked > 0 {
            track(&mut self.ct, &mut self.w, sh, frames, &ifaces, &mut metas);
        }
        self.w.egress_pass(sh, frames, verdicts, &ifaces, &metas);
        self.w.metas = metas;
    }
}

/// The tracker's pass over a burst with at least one frame to track: the burst call,
/// then the rare cases after it (mappings, ALG), each out of line.
#[inline(never)]
fn track(
    ct: &mut OwnedCtWorker,
    w: &mut WorkerState,
    sh: &GatewayShared,
    frames: &mut [&mut [u8]],
    ifaces: &[u8; BURST],
    metas: &mut [PacketMeta],
) {
    let n = frames.len().min(metas.len());
    // The SNAT pools translate TCP and UDP through the mapping table.
    let mapped = |i: Option<u16>| {
        let spec = sh.nat_specs.get(usize::from(i?))?;
        Some(Mapped {
            spec,
            maps: &sh.rt.maps,
            now: w.now,
        })
    };
    let (m4, m6) = (mapped(sh.snat_v4), mapped(sh.snat_v6));
    let mut refs: [&dyn ReplyTuples; MAX_NAT_SPECS] = [&NO_NAT; MAX_NAT_SPECS];
    for (r, s) in refs.iter_mut().zip(sh.nat_specs.iter()) {
        *r = s;
    }
    for (i, m) in [(sh.snat_v4, &m4), (sh.snat_v6, &m6)] {
        if let (Some(r), Some(m)) = (i.and_then(|i| refs.get_mut(usize::from(i))), m) {
            *r = m;
        }
    }
    ct.process_burst_nat(&mut metas[..n], &refs[..sh.nat_specs.len()], w.now);
    // Packets that matched no connection and created none, to an outside endpoint
    // of a mapping: hairpinned from inside, or admitted by the mapping's filtering
    // from outside, each as a new connection of its own.
    // The tracker's result is tested first: nearly every packet has a connection.
    for (i, m) in metas[..n].iter_mut().enumerate() {
        let r = &m.result;
        if r.conn.is_some() || r.refused.is_some() || r.state.has(CtState::INV) {
            continue;
        }
        let port = ifaces.get(i).and_then(|&k| sh.ports.get(usize::from(k)));
        if let (Some(Pre::Track { dst_own, .. }), Some(port)) = (w.pre.get(i).copied(), port) {
            mapping_step(ct, sh, port, m, dst_own, w.now);
        }
    }
    // ALG: helper connections' payloads, skewed sequence numbers.
    for (i, m) in metas[..n].iter().enumerate() {
        if m.result.alg != 0 {
            let Some(f) = frames.get_mut(i) else {
                break;
            };
            if let Some(pending) = alg_burst_step(ct, w, f, m, i) {
                if let Some(slot) = w.alg_pending.get_mut(i) {
                    *slot = Some(pending);
                    w.rare |= rare_bit(i);
                }
            }
        }
    }
}

/// A connection-less packet to a mapping's outside endpoint: tracked again with the
/// mapping's NAT when [`mapping_nat`] finds one. Rare, so out of the burst loop.
#[cold]
#[inline(never)]
fn mapping_step(
    ct: &mut OwnedCtWorker,
    sh: &GatewayShared,
    port: &Port,
    m: &mut PacketMeta,
    dst_own: bool,
    now: u64,
) {
    if let Some(spec) = mapping_nat(sh, port, &m.parsed, dst_own, now) {
        let nat = Mapped {
            spec: &spec,
            maps: &sh.rt.maps,
            now,
        };
        m.result = ct.process_nat(&m.parsed, port.zone, true, &nat, now);
    }
}

/// The ALG step for burst entry `i`, a frame of a helper connection: only a whole
/// tracked frame (not a reassembled datagram's) is rewritten.
#[cold]
#[inline(never)]
fn alg_burst_step(
    ct: &mut OwnedCtWorker,
    w: &mut WorkerState,
    f: &mut [u8],
    m: &PacketMeta,
    i: usize,
) -> Option<(usize, usize)> {
    let whole = matches!(w.pre.get(i), Some(Pre::Track { .. }))
        && w.dgram.get(i).is_some_and(Option::is_none);
    if whole {
        alg::alg_step(ct, w, f, m)
    } else {
        None
    }
}

/// The NAT for a packet that matched no connection and created none, sent to the outside
/// endpoint of a live TCP/UDP mapping: from an inside port, hairpinning (RFC 4787 REQ-9,
/// RFC 5382 REQ-8): the destination translated to the mapping's inside endpoint and the
/// source to the sender's own mapping, so the receiver sees the sender's public endpoint;
/// from an outside port, when the pool's filtering admits the source (RFC 4787 REQ-8):
/// the destination translated to the mapping's inside endpoint. `None`: no such mapping,
/// or filtered (the packet stays refused as it was).
fn mapping_nat(
    sh: &GatewayShared,
    port: &Port,
    p: &ParsedPacket,
    dst_own: bool,
    now: u64,
) -> Option<NatSpec> {
    if !mapped_proto(p.proto) || p.fragment != Fragment::None {
        return None;
    }
    let dport = match p.l4 {
        L4Summary::Tcp(t) => t.dport,
        L4Summary::Udp { dport, .. } => dport,
        _ => return None,
    };
    let fam = family_of(p.family);
    let (spec, filter) = if fam == 4 {
        (sh.snat_v4?, sh.filter_v4)
    } else {
        (sh.snat_v6?, sh.filter_v6)
    };
    let outside = Endpoint {
        zone: port.zone,
        proto: p.proto,
        family: fam,
        addr: p.dst,
        port: dport,
    };
    let to = |m: &Mapping| NatRange {
        family: fam,
        addr_min: m.inside.addr,
        addr_max: m.inside.addr,
        ports: Some((m.inside.port, m.inside.port)),
    };
    match port.role {
        Role::Inside if dst_own => {
            let m = sh.rt.maps.lookup_out(&outside, now)?;
            Some(NatSpec {
                snat: sh.nat_specs.get(usize::from(spec))?.snat,
                dnat: Some(to(&m)),
            })
        }
        Role::Inside => None,
        Role::Outside => {
            if filter == Filtering::AddressPortDependent {
                return None;
            }
            let m = sh.rt.maps.lookup_out(&outside, now)?;
            filter.admits(&m, &p.src).then(|| NatSpec::dnat(to(&m)))
        }
    }
}

/// The NAT slot filler for unused entries (never selected).
static NO_NAT: NatSpec = NatSpec {
    snat: None,
    dnat: None,
};

/// `dst[..N] := frame[at..at + N]`; false when the frame is shorter.
#[inline(always)]
fn copy_addr<const N: usize>(frame: &[u8], at: usize, dst: &mut [u8; 16]) -> bool {
    let (Some(b), Some(d)) = (frame.get(at..at + N), dst.get_mut(..N)) else {
        return false;
    };
    d.copy_from_slice(b);
    true
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl WorkerState {
    /// The first pass over a burst: every frame parsed straight into its meta, then
    /// [`WorkerState::ingress`] for each. Returns how many frames go to the tracker (the
    /// others' metas are marked to be skipped).
    #[inline(never)]
    fn ingress_pass(
        &mut self,
        sh: &GatewayShared,
        frames: &mut [&mut [u8]],
        rx: &[RxInfo],
        ifaces: &[u8; BURST],
        metas: &mut [PacketMeta],
    ) -> usize {
        self.rare = 0;
        // Parse the whole burst first: each result is read only after the other frames'
        // parses, never right after its own stores (reading a just-written parse result
        // cost a store-forwarding stall per packet, measured with perf).
        for ((e, m), f) in self
            .parse_err
            .iter_mut()
            .zip(metas.iter_mut())
            .zip(frames.iter())
        {
            *e = parse_frame_into(f, &mut m.parsed).err();
        }
        let mut tracked = 0usize;
        for (i, (f, m)) in frames.iter_mut().zip(metas.iter_mut()).enumerate() {
            let pre = match (sh.ports.get(usize::from(ifaces[i])), self.parse_err.get(i)) {
                (Some(port), Some(&err)) => {
                    let cksum = rx.get(i).map_or(RxCksum::Unknown, |r| r.cksum);
                    self.burst_i = i;
                    self.ingress(sh, f, port, m, err, cksum)
                }
                _ => Pre::Done(Verdict::Drop(DropReason::Vlan)),
            };
            if matches!(pre, Pre::Track { .. }) {
                tracked += 1;
            } else {
                m.skip();
            }
            if let Some(slot) = self.pre.get_mut(i) {
                *slot = pre;
            }
        }
        tracked
    }

    /// The last pass over a burst: each frame's verdict, through [`WorkerState::egress`]
    /// (a reassembled datagram's fragments and ALG-rewritten copies out of line).
    #[inline(never)]
    fn egress_pass(
        &mut self,
        sh: &GatewayShared,
        frames: &mut [&mut [u8]],
        verdicts: &mut [Verdict],
        ifaces: &[u8; BURST],
        metas: &[PacketMeta],
    ) {
        for (i, ((f, v), m)) in frames
            .iter_mut()
            .zip(verdicts.iter_mut())
            .zip(metas.iter())
            .enumerate()
        {
            let pre = self
                .pre
                .get(i)
                .copied()
                .unwrap_or(Pre::Done(Verdict::Drop(DropReason::Malformed)));
            *v = match (pre, sh.ports.get(usize::from(ifaces[i]))) {
                (Pre::Done(v), _) => v,
                (Pre::Track { dst_own, route }, Some(port)) if self.rare & rare_bit(i) == 0 => {
                    self.egress(sh, f, port, m, dst_own, route)
                }
                (Pre::Track { dst_own, route }, Some(port)) => {
                    self.egress_rare(sh, f, i, port, m, dst_own, route)
                }
                (Pre::Track { .. }, None) => Verdict::Drop(DropReason::Vlan),
            };
        }
        if self.rare != 0 {
            // A datagram whose completing frame was not tracked after all (dropped in
            // the first pass) is released with it, never left for the next burst.
            for d in self.dgram.iter_mut() {
                if let Some(d) = d.take() {
                    drop(sh.ipf.attach(d));
                }
            }
        }
    }

    /// First pass over one frame: answers, drops, or queues it for the tracker.
    fn ingress(
        &mut self,
        sh: &GatewayShared,
        frame: &mut [u8],
        port: &Port,
        m: &mut PacketMeta,
        parse_err: Option<ParseError>,
        cksum: RxCksum,
    ) -> Pre {
        let Some(et) = be16(frame, 12) else {
            return Pre::Done(Verdict::Drop(DropReason::ShortFrame));
        };
        if is_vlan_tpid(et) {
            // A tag still on the frame: this interface has no such VLAN configured (the
            // worker takes the tag of a configured one off), or a second tag (QinQ).
            return Pre::Done(Verdict::Drop(DropReason::Vlan));
        }
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
        if mtu::exceeds(frame, usize::from(p.l3_offset), port.mtu) {
            return Pre::Done(Verdict::Drop(DropReason::TooBig));
        }
        let fam = family_of(p.family);
        if fam == 4 {
            if let Some(r) = ipv4_header_refusal(frame, p, cksum) {
                return Pre::Done(Verdict::Drop(r));
            }
        }
        let dst_own = sh.is_own(fam, &p.dst);
        if let L4Summary::Icmp(i) = &p.l4 {
            if fam == 6 && p.fragment == Fragment::None && (133..=137).contains(&i.icmp_type) {
                return Pre::Done(self.ndp(sh, frame, p, port, i.icmp_type));
            }
        }
        // Martians (after NDP, whose duplicate address detection comes from `::`; not
        // for link-layer group frames, which are the link's and consumed below): never
        // answered, never forwarded.
        if !group {
            let forwarding = !dst_own;
            let verdict = if sh.is_own(fam, &p.src) {
                Some(DropReason::MartianSrc)
            } else {
                martian::classify(fam, &p.src, &p.dst, forwarding)
            };
            if let Some(r) = verdict {
                return Pre::Done(Verdict::Drop(r));
            }
        }
        if let L4Summary::Icmp(i) = &p.l4 {
            if p.fragment == Fragment::None {
                let v6 = fam == 6;
                let echo_req = if v6 { 128 } else { 8 };
                if dst_own && !group && i.icmp_type == echo_req && i.code == 0 {
                    return Pre::Done(answer_echo(sh, frame, p, port));
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
        // A fragment: held until its datagram is complete, which is then tracked in its
        // place (one branch on a parsed field for every other packet).
        if p.fragment != Fragment::None {
            if let Some(pre) = self.fragment(sh, frame, m, port, self.burst_i) {
                return pre;
            }
        }
        let p = &m.parsed;
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

    /// Second pass: policy, NAT, route, TTL, MACs. Always inlined into the burst loop,
    /// as it was before the step was split into files: the hint alone is not taken (a
    /// second caller, `egress_datagram`), and the call, with its seven arguments, cost
    /// more than the copy in that cold path.
    #[inline(always)]
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
                // The tracker does not track fragments: they are refused by name.
                return Verdict::Drop(if m.parsed.fragment != Fragment::None {
                    DropReason::Fragment
                } else {
                    DropReason::Invalid
                });
            }
        } else if r.conn.is_none() {
            // Not part of any connection and none created: traffic to the gateway's own
            // addresses (`local`, from either side), or new traffic from outside the
            // policy did not commit (`policy_denied`).
            return Verdict::Drop(if port.role == Role::Outside && !dst_own {
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
            // Fixed-size copies: one of a length chosen at run time was a call to
            // `memcpy` per translated reply.
            let copied = if fam == 4 {
                copy_addr::<4>(frame, l3 + 16, &mut dst)
            } else {
                copy_addr::<16>(frame, l3 + 24, &mut dst)
            };
            if !copied {
                return Verdict::Drop(DropReason::NatFailed);
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
        let Some(out) = sh.ports.get(usize::from(out_idx)) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        // Path MTU ([`mtu`]): one compare on the fast path. Fragments of a reassembled
        // datagram are checked by `egress_datagram`, all together.
        let mut cut = false;
        if mtu::exceeds(frame, l3, out.mtu) && p.fragment == Fragment::None {
            if let Some(v) = self.too_big(sh, frame, p, rw, port, out) {
                return v;
            }
            cut = true;
        }
        if !decrement_ttl(frame, fam, l3) {
            return Verdict::Drop(DropReason::Malformed);
        }
        if let Some(b) = frame.get_mut(6..12) {
            b.copy_from_slice(&out.mac.0);
        }
        if let L4Summary::Tcp(t) = &p.l4 {
            if t.flags & tcp_flags::SYN != 0 {
                clamp_mss(frame, p, fam, port, out);
            }
        }
        match self.resolve(sh, out, fam, nh) {
            Ok(mac) => {
                if let Some(b) = frame.get_mut(0..6) {
                    b.copy_from_slice(&mac.0);
                }
                if cut {
                    return self.fragment_out(sh, frame, l3, out);
                }
                Verdict::Forward(out.id)
            }
            Err(reason) => {
                if reason != DropReason::NeighUnresolved {
                    return Verdict::Drop(reason);
                }
                if cut {
                    return self.cut_later(sh, frame, l3, out, port.id, fam, nh);
                }
                self.hold(sh, out_idx, out, port.id, fam, nh)
            }
        }
    }
}

impl WorkerState {
    /// Second pass for burst position `i` when [`WorkerState::rare`] has its bit: the
    /// reassembled datagram it completed, or the ALG's rewritten copy of it.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn egress_rare(
        &mut self,
        sh: &GatewayShared,
        frame: &mut [u8],
        i: usize,
        port: &Port,
        m: &PacketMeta,
        dst_own: bool,
        route: u8,
    ) -> Verdict {
        if let Some(d) = self.dgram.get_mut(i).and_then(Option::take) {
            return self.egress_datagram(sh, d, port, m, dst_own, route);
        }
        match self.alg_pending.get(i).copied().flatten() {
            Some((slot, len)) => self.egress_alg(sh, slot, len, port, m, dst_own, route),
            None => self.egress(sh, frame, port, m, dst_own, route),
        }
    }

    /// Second pass for a frame the ALG rewrote to another length: the rewritten copy in
    /// buffer `slot` goes through [`WorkerState::egress`] and, when forwarded, is sent at
    /// the next service; the original is consumed. A copy that would wait for its
    /// neighbour is dropped instead (the sender retransmits; the rewrite is redone with
    /// the same skew).
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn egress_alg(
        &mut self,
        sh: &GatewayShared,
        slot: usize,
        len: usize,
        port: &Port,
        m: &PacketMeta,
        dst_own: bool,
        route: u8,
    ) -> Verdict {
        let Some(mut buf) = self.alg_bufs.get_mut(slot).map(std::mem::take) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let v = match buf.get_mut(..len) {
            Some(f) => match parse_frame(f) {
                Ok(p) => {
                    let mut meta = *m;
                    meta.parsed = p;
                    self.egress(sh, f, port, &meta, dst_own, route)
                }
                Err(_) => Verdict::Drop(DropReason::Malformed),
            },
            None => Verdict::Drop(DropReason::Malformed),
        };
        if let Some(b) = self.alg_bufs.get_mut(slot) {
            *b = buf;
        }
        match v {
            Verdict::Forward(o) => {
                self.alg_out.push((slot, len, o));
                Verdict::Consumed
            }
            Verdict::Hold(h) => {
                self.unhold(h);
                Verdict::Drop(DropReason::NeighUnresolved)
            }
            other => other,
        }
    }

    /// Hands fragment `frame` to the reassembly module: held (`Consumed`), refused
    /// (`drop_fragment`; or tracked as before, hence invalid, when reassembly is off for
    /// its family), or the last piece of its datagram, whose summary then replaces the
    /// frame's parse and which waits in `dgram[i]` for the second pass.
    #[cold]
    #[inline(never)]
    fn fragment(
        &mut self,
        sh: &GatewayShared,
        frame: &[u8],
        m: &mut PacketMeta,
        port: &Port,
        i: usize,
    ) -> Option<Pre> {
        match sh.ipf.add(frame, &m.parsed, port.zone, self.now) {
            Outcome::Held => Some(Pre::Done(Verdict::Consumed)),
            Outcome::Refused(ipf::Refusal::Disabled) => None,
            Outcome::Refused(_) => Some(Pre::Done(Verdict::Drop(DropReason::Fragment))),
            Outcome::Complete(d) => {
                if !d.summary.l4_checksum_ok {
                    return Some(Pre::Done(Verdict::Drop(DropReason::Invalid)));
                }
                let Some(slot) = self.dgram.get_mut(i) else {
                    return Some(Pre::Done(Verdict::Drop(DropReason::Fragment)));
                };
                m.parsed = d.summary.parsed;
                *slot = Some(d.detach());
                self.rare |= rare_bit(i);
                None
            }
        }
    }

    /// Second pass for a completed datagram: every original fragment goes through
    /// [`WorkerState::egress`] with the datagram's tracking result (addresses rewritten in
    /// each, the L4 header with its checksum adjusted incrementally in the first, TTL,
    /// MACs) and the fragments are queued for the next service. The frame that completed
    /// the datagram is `Consumed` (its copy is among them).
    #[cold]
    #[inline(never)]
    fn egress_datagram(
        &mut self,
        sh: &GatewayShared,
        d: Detached,
        port: &Port,
        m: &PacketMeta,
        dst_own: bool,
        route: u8,
    ) -> Verdict {
        let dg = sh.ipf.attach(d);
        let mut meta = *m;
        let mut out = None;
        let mut wait = None;
        for k in 0..dg.len() {
            let Some(mut f) = dg.fragment(k) else {
                return Verdict::Drop(DropReason::Fragment);
            };
            match parse_frame(&f) {
                Ok(p) => meta.parsed = p,
                Err(_) => return Verdict::Drop(DropReason::Malformed),
            }
            match self.egress(sh, &mut f, port, &meta, dst_own, route) {
                Verdict::Forward(o) => out = Some(o),
                Verdict::Hold(slot) => {
                    // Copies are not parked in hold slots: the datagram waits whole for
                    // the neighbour (the request is out), see `service_frag_wait`.
                    wait = self.held.get(usize::from(slot)).copied();
                    self.unhold(slot);
                }
                v => return v,
            }
        }
        if let Some(h) = wait {
            // A datagram that would have to be cut again does not wait (as a single
            // packet to be fragmented would not).
            if let Some(op) = sh.port(h.out_port) {
                let l3 = usize::from(m.parsed.l3_offset);
                if (0..dg.len())
                    .any(|k| dg.fragment(k).is_some_and(|f| mtu::exceeds(&f, l3, op.mtu)))
                {
                    return Verdict::Drop(DropReason::NeighUnresolved);
                }
            }
            if self.frag_wait.len() >= self.frag_wait.capacity() {
                return Verdict::Drop(DropReason::HoldQueueFull);
            }
            self.frag_wait.push((dg.detach(), h));
            return Verdict::Consumed;
        }
        let Some(o) = out else {
            return Verdict::Drop(DropReason::Fragment);
        };
        if let Some(op) = sh.port(o) {
            let too_big = (0..dg.len()).any(|k| {
                dg.fragment(k)
                    .is_some_and(|f| mtu::exceeds(&f, usize::from(m.parsed.l3_offset), op.mtu))
            });
            if too_big {
                let op = *op;
                return self.refragment(sh, &dg, &m.parsed, port, &op);
            }
        }
        if self.frag_out.len() >= self.frag_out.capacity() {
            return Verdict::Drop(DropReason::NoBuffer);
        }
        self.frag_out.push((dg.detach(), o));
        Verdict::Consumed
    }
}

/// Why an IPv4 header is refused before anything else looks at it: a checksum that does
/// not verify (the NIC's verdict when it gave one, else computed here) or a loose/strict
/// source route option. `None`: it may go on.
#[inline]
fn ipv4_header_refusal(frame: &[u8], p: &ParsedPacket, cksum: RxCksum) -> Option<DropReason> {
    let (l3, l4) = (usize::from(p.l3_offset), usize::from(p.l4_offset));
    let header = frame.get(l3..l4)?;
    let good = match cksum {
        RxCksum::Good => true,
        RxCksum::Bad => false,
        RxCksum::Unknown => verify_ipv4_header(header),
    };
    if !good {
        return Some(DropReason::BadIpChecksum);
    }
    match header.get(20..) {
        Some(opts) if !opts.is_empty() && martian::source_routed_v4(opts) => {
            Some(DropReason::SourceRoute)
        }
        _ => None,
    }
}

/// Lowers the MSS option of a TCP SYN or SYN/ACK to the smaller clamp of its input and
/// output ports (`mss_clamp`; `"auto"` is the port's MTU minus the IP and TCP headers),
/// checksum adjusted incrementally.
#[inline]
fn clamp_mss(frame: &mut [u8], p: &ParsedPacket, fam: u8, a: &Port, b: &Port) {
    let max = match (a.mss_clamp, b.mss_clamp) {
        (None, None) => return,
        (Some(x), None) => x.max_mss(fam, a.mtu),
        (None, Some(y)) => y.max_mss(fam, b.mtu),
        (Some(x), Some(y)) => x.max_mss(fam, a.mtu).min(y.max_mss(fam, b.mtu)),
    };
    let l4 = usize::from(p.l4_offset);
    if let Some(seg) = frame.get_mut(l4..l4 + usize::from(p.l4_len)) {
        crate::wire::tcp::clamp_mss(seg, max);
    }
}

/// TTL / hop limit minus one (IPv4 header checksum updated incrementally), through the
/// headers' named fields. Always inlined: called once per forwarded packet, and a call
/// showed up on its own in `ctgate-perf step`'s profile.
#[inline(always)]
fn decrement_ttl(frame: &mut [u8], fam: u8, l3: usize) -> bool {
    let Some(ip) = frame.get_mut(l3..) else {
        return false;
    };
    if fam == 4 {
        use crate::wire::ipv4::field;
        let Some(h) = ip.first_chunk_mut::<{ ipv4::MIN_HEADER_LEN }>() else {
            return false;
        };
        let [ttl] = <at!(field::TTL, 1)>::get(h);
        if ttl == 0 {
            return false;
        }
        // Only the TTL byte and the checksum are stored (the word holding the TTL is never
        // read back after a narrow store: a store-forwarding stall, ~5% of `ctgate-perf
        // step` once). TTL is the high byte of its checksummed word, so the checksum
        // grows by 0x0100 ([`ttl_decremented_checksum`]).
        <at!(field::TTL, 1)>::put(h, &[ttl - 1]);
        let c = ttl_decremented_checksum(<at!(field::CHECKSUM)>::get_u16(h));
        <at!(field::CHECKSUM)>::put_u16(h, c);
    } else {
        let Some(h) = ip.first_chunk_mut::<{ ipv6::HEADER_LEN }>() else {
            return false;
        };
        let [hops] = <at!(ipv6::field::HOP_LIMIT, 1)>::get(h);
        <at!(ipv6::field::HOP_LIMIT, 1)>::put(h, &[hops.wrapping_sub(1)]);
    }
    true
}

/// The IPv4 header checksum after the TTL went down by one (from at least 1), as Linux's
/// `ip_decrease_ttl`: RFC 1624's `~(~HC + ~m + m')` with `m - m' = 0x0100` (TTL is its
/// word's high byte) is `HC + 0x0100` with the end-around carry, and lands on the same
/// value in `0..=0xfffe` (never `0xffff`, as eqn. 3 and a recomputation).
#[inline(always)]
fn ttl_decremented_checksum(csum: u16) -> u16 {
    let c = u32::from(csum) + 0x0100;
    (c + u32::from(c >= 0xffff)) as u16
}

impl PacketStep for GatewayStep {
    fn process(&mut self, frame: &mut [u8], in_port: u16) -> Verdict {
        let mut v = [Verdict::Drop(DropReason::NoRoute)];
        self.process_burst(&mut [frame], in_port, &mut v);
        v[0]
    }

    fn process_burst(&mut self, frames: &mut [&mut [u8]], in_port: u16, verdicts: &mut [Verdict]) {
        // Untagged frames whose IPv4 header checksums are verified in software.
        const UNKNOWN: [RxInfo; BURST] = [RxInfo {
            cksum: RxCksum::Unknown,
            vlan: None,
        }; BURST];
        self.quiesce();
        self.w.now = self.shared.now_ms();
        self.w.sync_neigh(&self.shared);
        let n = frames.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + BURST).min(n);
            let rx = &UNKNOWN[..end - start];
            self.chunk(
                &mut frames[start..end],
                in_port,
                rx,
                &mut verdicts[start..end],
            );
            start = end;
        }
    }

    fn process_burst_rx(
        &mut self,
        frames: &mut [&mut [u8]],
        in_port: u16,
        rx: &[RxInfo],
        verdicts: &mut [Verdict],
    ) {
        self.quiesce();
        self.w.now = self.shared.now_ms();
        self.w.sync_neigh(&self.shared);
        let n = frames.len().min(verdicts.len()).min(rx.len());
        let mut start = 0;
        while start < n {
            let end = (start + BURST).min(n);
            self.chunk(
                &mut frames[start..end],
                in_port,
                &rx[start..end],
                &mut verdicts[start..end],
            );
            start = end;
        }
    }

    fn hold_slots(&self) -> usize {
        self.w.held.len()
    }

    fn service(&mut self, sink: &mut dyn StepSink) {
        self.quiesce();
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
        for &(slot, len, port) in &w.alg_out {
            if let Some(b) = w.alg_bufs.get(slot).and_then(|b| b.get(..len)) {
                sink.emit(port, b);
            }
        }
        w.alg_out.clear();
        w.alg_used = 0;
        if !w.frag_wait.is_empty() {
            w.sync_neigh(sh);
            w.service_frag_wait(sh);
        }
        for (d, out) in w.frag_out.drain(..) {
            let dg = sh.ipf.attach(d);
            for k in 0..dg.len() {
                if let Some(f) = dg.fragment(k) {
                    sink.emit(out, &f);
                }
            }
        }
        if w.cut_wait.iter().any(Option::is_some) {
            w.sync_neigh(sh);
            w.service_cut_wait(sh);
        }
        for pc in w.pieces.drain(..) {
            let at = pc.at as usize;
            if let Some(f) = w.frag_arena.get(at..at + usize::from(pc.len)) {
                sink.emit(pc.port, f);
            }
        }
        w.frag_used = 0;
        if sh.ipf.n_frags() > 0 {
            sh.ipf.expire(w.now, 8);
        }
    }
}

impl Drop for GatewayStep {
    fn drop(&mut self) {
        self.shared.epoch.leave(self.index);
    }
}
