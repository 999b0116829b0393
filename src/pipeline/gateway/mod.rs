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
//!
//! # Files
//!
//! This file has the step itself (the two passes, `ingress` and `egress`, around the
//! tracker's burst). `shared` holds [`GatewayShared`] (ports, routes, own addresses,
//! DNAT rules, counters, neighbour table, clock), `state` the per-worker state, `answers`
//! the traffic the gateway answers itself (ARP, NDP, echo, time exceeded), `resolve` the
//! neighbour resolution and hold queue, [`neigh`] the neighbour table, and [`originated`]
//! the byte writers of the frames the gateway originates.

mod answers;
pub mod neigh;
pub mod originated;
mod resolve;
mod shared;
mod state;
#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{DropReason, PacketStep, StepSink, Verdict};
use crate::at;
use crate::config::Role;
use crate::conntrack::{CtState, OwnedCtWorker, PacketMeta, Refusal, ReplyTuples};
use crate::nat::{self, NatSpec, Rewritten};
use crate::wire::checksum::update_u16;
use crate::wire::fixed::At;
use crate::wire::parse::{Fragment, L4Summary, ParseError};
use crate::wire::parse_frame_into;
use crate::wire::{ipv4, ipv6};
use answers::answer_echo;
use originated::ETHERTYPE_ARP;
use shared::{dnat_match, family_of, is_directed_broadcast, not_forwardable, self_ct, Port};
use state::{Pre, WorkerState};

pub use answers::ICMP_ERRORS_PER_SEC;
pub use shared::{GatewayCounters, GatewayCountersSnapshot, GatewayShared, MAX_NAT_SPECS};
pub use state::{BURST, HOLD_PER_PORT, HOLD_TIMEOUT_MS};

/// One worker's gateway step.
pub struct GatewayStep {
    shared: Arc<GatewayShared>,
    ct: OwnedCtWorker,
    w: WorkerState,
}

impl GatewayStep {
    /// The step of worker `worker_index` (its tracker shard).
    pub fn new(shared: Arc<GatewayShared>, worker_index: usize) -> GatewayStep {
        let ct = OwnedCtWorker::new(shared.ct.clone(), worker_index);
        let n_ports = shared.ports.len();
        GatewayStep {
            ct,
            w: WorkerState::new(n_ports),
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
}

/// TTL / hop limit minus one (IPv4 header checksum updated incrementally), through the
/// headers' named fields.
#[inline]
fn decrement_ttl(frame: &mut [u8], fam: u8, l3: usize) -> bool {
    let Some(ip) = frame.get_mut(l3..) else {
        return false;
    };
    if fam == 4 {
        use crate::wire::ipv4::field;
        let Some(h) = ip.first_chunk_mut::<{ ipv4::MIN_HEADER_LEN }>() else {
            return false;
        };
        // TTL and protocol are one word of the header checksum.
        const { assert!(field::TTL + 1 == field::PROTOCOL && field::TTL.is_multiple_of(2)) };
        type TtlWord = At<{ field::TTL }, 2>;
        let old = TtlWord::get_u16(h);
        let [ttl] = <at!(field::TTL, 1)>::get(h);
        <at!(field::TTL, 1)>::put(h, &[ttl.wrapping_sub(1)]);
        let c = update_u16(<at!(field::CHECKSUM)>::get_u16(h), old, TtlWord::get_u16(h));
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
