//! Path MTU: what happens to a routed packet larger than its output port's `mtu`.
//!
//! * IPv4 with DF, and IPv6 (never fragmented in transit, RFC 8200 §5): dropped
//!   (`drop_mtu_exceeded`) and answered with an ICMP "fragmentation needed" (type 3
//!   code 4, the next-hop MTU in it, RFC 1191) / ICMPv6 "packet too big" (type 2, the
//!   MTU, RFC 4443) from the gateway's address on the input interface, quoting the
//!   packet as it arrived (NAT undone, TTL not yet decremented). The messages of an input
//!   interface are rate-limited by its token bucket (`icmp_rate` per second, `icmp_burst`
//!   at once; [`super::ratelimit`]); counted as `frag_needed`, `packet_too_big` and
//!   `icmp_rate_limited`. No ICMP error is ever sent about an ICMP error.
//! * IPv4 without DF: cut into fragments ([`super::fragment_out`]) once its next hop is
//!   known, written into the worker's fragment arena and copied into mbufs of the
//!   worker's mempool at the next service; the frame itself is `Consumed`. Counted as
//!   `fragmented` (packets) and `fragments_out`. One whose next hop is not resolved yet
//!   waits for it, copied into one of [`CUT_WAIT`](super::state::CUT_WAIT) buffers of
//!   the worker (the request is sent), and is cut when the answer comes; it is dropped
//!   (`drop_hold_queue_full`) when every buffer is taken, and given up after the hold
//!   timeout. A reassembled datagram that would have to be cut again does not wait
//!   (`drop_neigh_unresolved`).
//! * A datagram reassembled for tracking is sent as its original fragments; only the
//!   fragments that do not fit are cut again ([`WorkerState::refragment`]).
//!
//! The fast path pays one compare: the packet's length against its output port's MTU.

use super::fragment_out::{fragment_v4, FragOutError, MAX_PIECES};
use super::originated::{frag_needed_v4, packet_too_big_v6};
use super::shared::{bump, GatewayShared, Port};
use super::state::{CutWait, Held, Piece, WorkerState, CUT_FRAME, HOLD_TIMEOUT_MS};
use crate::conntrack::key::ConnKey;
use crate::ipf::Datagram;
use crate::nat::{self, Rewritten};
use crate::pipeline::{DropReason, Verdict};
use crate::wire::ipv4;
use crate::wire::parse::{Family, L4Summary, ParsedPacket};
use crate::wire::parse_frame;

/// True when the frame's IP packet is larger than `mtu`.
#[inline(always)]
pub(super) fn exceeds(frame: &[u8], l3: usize, mtu: u16) -> bool {
    frame.len().wrapping_sub(l3) > usize::from(mtu)
}

/// True when the IPv4 packet at `frame[l3..]` has DF set.
fn dont_fragment(frame: &[u8], l3: usize) -> bool {
    frame
        .get(l3..l3 + ipv4::MIN_HEADER_LEN)
        .is_some_and(|h| ipv4::Packet::new_unchecked(h).dont_frag())
}

impl WorkerState {
    /// A packet larger than `out`'s MTU, before its TTL is decremented and its MACs set:
    /// `Some(verdict)` when it is dropped (with an ICMP error, rate-limited), `None` when
    /// it is to be fragmented once its next hop is known (IPv4 without DF).
    #[cold]
    #[inline(never)]
    pub(super) fn too_big(
        &mut self,
        sh: &GatewayShared,
        frame: &mut [u8],
        p: &ParsedPacket,
        rw: Rewritten,
        port: &Port,
        out: &Port,
    ) -> Option<Verdict> {
        let l3 = usize::from(p.l3_offset);
        let v4 = p.family == Family::V4;
        if v4 && !dont_fragment(frame, l3) {
            return None;
        }
        let drop = Some(Verdict::Drop(DropReason::MtuExceeded));
        if matches!(p.l4, L4Summary::Icmp(i) if i.is_error) {
            return drop;
        }
        if !rw.is_empty() {
            // Quote the packet as its sender sent it.
            let Ok(now) = parse_frame(frame) else {
                return drop;
            };
            if nat::rewrite_to(frame, &now, &ConnKey::from_packet(p, port.zone)).is_err() {
                return drop;
            }
        }
        self.icmp_too_big(sh, frame, p, port, out.mtu);
        drop
    }

    /// Sends (rate-limited) the ICMP "fragmentation needed" / ICMPv6 "packet too big"
    /// about the packet at `frame`, out its input interface `port`.
    fn icmp_too_big(
        &mut self,
        sh: &GatewayShared,
        frame: &[u8],
        p: &ParsedPacket,
        port: &Port,
        mtu: u16,
    ) {
        let l3 = usize::from(p.l3_offset);
        let v4 = p.family == Family::V4;
        let src = if v4 { port.v4 } else { port.v6 };
        let Some((src, _)) = src else { return };
        let bucket = sh.icmp_buckets.get(usize::from(port.id));
        if !bucket.is_some_and(|b| b.take(self.now, port.icmp_rate, port.icmp_burst)) {
            bump(&sh.counters.icmp_rate_limited);
            return;
        }
        let sent = if v4 {
            let mut s = [0u8; 4];
            s.copy_from_slice(&src[..4]);
            self.push_gen(port.id, |b| frag_needed_v4(b, frame, l3, port.mac, s, mtu))
        } else {
            self.push_gen(port.id, |b| {
                packet_too_big_v6(b, frame, l3, port.mac, &src, mtu)
            })
        };
        if sent {
            bump(if v4 {
                &sh.counters.frag_needed
            } else {
                &sh.counters.packet_too_big
            });
        }
    }

    /// Cuts the IPv4 packet at `frame[l3..]` (next hop resolved, MACs set) into fragments
    /// that fit `out`'s MTU, queued in the arena for the next service: `Consumed`.
    #[cold]
    #[inline(never)]
    pub(super) fn fragment_out(
        &mut self,
        sh: &GatewayShared,
        frame: &[u8],
        l3: usize,
        out: &Port,
    ) -> Verdict {
        match self.push_pieces(frame, l3, out) {
            Ok(n) => {
                bump(&sh.counters.fragmented);
                sh.counters
                    .fragments_out
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                Verdict::Consumed
            }
            Err(FragOutError::NoRoom) => Verdict::Drop(DropReason::NoBuffer),
            Err(FragOutError::DontFragment) => Verdict::Drop(DropReason::MtuExceeded),
            Err(FragOutError::Malformed) => Verdict::Drop(DropReason::Malformed),
        }
    }

    /// Keeps a copy of the packet to be fragmented at `frame[l3..]` (MACs but the
    /// destination set) until its next hop `nh` answers: `Consumed`, or
    /// `drop_hold_queue_full` when every buffer is taken.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cut_later(
        &mut self,
        sh: &GatewayShared,
        frame: &[u8],
        l3: usize,
        out: &Port,
        in_port: u16,
        fam: u8,
        nh: &[u8; 16],
    ) -> Verdict {
        let free = self.cut_wait.iter().position(Option::is_none);
        let (Some(i), true) = (free, frame.len() <= CUT_FRAME) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        let (Some(buf), Some(slot)) = (self.cut_bufs.get_mut(i), self.cut_wait.get_mut(i)) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        let Some(dst) = buf.get_mut(..frame.len()) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        dst.copy_from_slice(frame);
        *slot = Some(CutWait {
            held: Held {
                used: true,
                out_port: out.id,
                in_port,
                family: fam,
                nh: *nh,
                since: self.now,
            },
            len: frame.len(),
            l3,
        });
        bump(&sh.counters.held);
        Verdict::Consumed
    }

    /// Cuts the waiting packets whose next hop answered (into the arena, sent at this
    /// service) and gives up those waiting longer than the hold timeout.
    pub(super) fn service_cut_wait(&mut self, sh: &GatewayShared) {
        for i in 0..self.cut_wait.len() {
            let Some(Some(c)) = self.cut_wait.get(i).copied() else {
                continue;
            };
            let h = c.held;
            let out = sh.port(h.out_port).copied();
            let mac = out.and_then(|o| self.resolve(sh, &o, h.family, &h.nh).ok());
            let timed_out = self.now.saturating_sub(h.since) >= HOLD_TIMEOUT_MS;
            if mac.is_none() && !timed_out {
                continue;
            }
            if let (Some(mac), Some(out)) = (mac, out) {
                let mut buf = std::mem::take(&mut self.cut_bufs[i]);
                if let Some(f) = buf.get_mut(..c.len) {
                    if let Some(d) = f.get_mut(0..6) {
                        d.copy_from_slice(&mac.0);
                    }
                    bump(&sh.counters.released);
                    let _ = self.fragment_out(sh, f, c.l3, &out);
                }
                self.cut_bufs[i] = buf;
            }
            self.cut_wait[i] = None;
        }
    }

    /// Writes the fragments of `frame` for `out` into the arena; how many.
    fn push_pieces(&mut self, frame: &[u8], l3: usize, out: &Port) -> Result<usize, FragOutError> {
        let at = self.frag_used;
        let room = self.frag_arena.get_mut(at..).ok_or(FragOutError::NoRoom)?;
        let mut lens = [0u16; MAX_PIECES];
        let n = fragment_v4(frame, l3, usize::from(out.mtu), room, &mut lens)?;
        if self.pieces.len() + n > self.pieces.capacity() {
            return Err(FragOutError::NoRoom);
        }
        let mut pos = at;
        for &len in &lens[..n] {
            self.pieces.push(Piece {
                at: pos as u32,
                len,
                port: out.id,
            });
            pos += usize::from(len);
        }
        self.frag_used = pos;
        Ok(n)
    }

    /// A reassembled datagram whose original fragments (already rewritten and addressed
    /// for `out`) do not all fit `out`'s MTU: IPv4 fragments are cut again where needed
    /// and the whole datagram queued in the arena in order; an IPv6 datagram is refused
    /// with a "packet too big" about its first fragment (NAT undone in the quote, as the
    /// datagram's tracking parse `orig` says).
    #[cold]
    pub(super) fn refragment(
        &mut self,
        sh: &GatewayShared,
        dg: &Datagram<'_>,
        orig: &ParsedPacket,
        port: &Port,
        out: &Port,
    ) -> Verdict {
        let (pieces, used) = (self.pieces.len(), self.frag_used);
        if orig.family == Family::V6 {
            if let Some(mut f) = dg.fragment(0) {
                if let Ok(now) = parse_frame(&f) {
                    let _ = nat::rewrite_to(&mut f, &now, &ConnKey::from_packet(orig, port.zone));
                }
                let mut p = *orig;
                p.l3_offset = now_l3(&f).unwrap_or(p.l3_offset);
                self.icmp_too_big(sh, &f, &p, port, out.mtu);
            }
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        let mut made = 0usize;
        for k in 0..dg.len() {
            let Some(f) = dg.fragment(k) else {
                return Verdict::Drop(DropReason::Fragment);
            };
            let l3 = now_l3(&f).map_or(0, usize::from);
            match self.push_pieces(&f, l3, out) {
                Ok(n) => made += n,
                Err(e) => {
                    // Nothing of the datagram is sent.
                    self.pieces.truncate(pieces);
                    self.frag_used = used;
                    return Verdict::Drop(match e {
                        FragOutError::NoRoom => DropReason::NoBuffer,
                        FragOutError::DontFragment => DropReason::MtuExceeded,
                        FragOutError::Malformed => DropReason::Malformed,
                    });
                }
            }
        }
        bump(&sh.counters.fragmented);
        sh.counters
            .fragments_out
            .fetch_add(made as u64, std::sync::atomic::Ordering::Relaxed);
        Verdict::Consumed
    }
}

/// The IP header's offset in a stored fragment.
fn now_l3(f: &[u8]) -> Option<u16> {
    parse_frame(f).ok().map(|p| p.l3_offset)
}
