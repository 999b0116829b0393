//! TCP tracking with window/sequence checks, after pf (Guido van Rooij's algorithm) as
//! Open vSwitch's userspace tracker does it (`lib/conntrack-tcp.c`), so that users moving
//! from OVS see the same states for the same packets.
//!
//! Each direction has a [`TcpPeer`]: `seqlo` (highest sequence sent), `seqhi` (highest
//! acceptable: the other end's ack plus window), `max_win` and window scale. A segment is
//! in window when its last octet is below `seqhi`, it is not more than one window back,
//! and its ack is within a window of what the other side sent. States per peer:
//! CLOSED → SYN_SENT (first segment from it) → ESTABLISHED (its SYN acked) →
//! CLOSING (it sent FIN) → FIN_WAIT_2 (its FIN acked); RST moves both to TIME_WAIT.
//!
//! What users can see (pinned down by tests):
//! * a SYN+ACK never creates a connection; any other valid flag combination may
//!   (mid-stream pick-up);
//! * a SYN when both peers are at FIN_WAIT_2 or later recreates the connection (port reuse);
//! * a peer with `seqlo == seqhi == 0` (a connection learned from a sync peer) takes its
//!   sequence numbers from its next segment; until then the other end's acks are neither
//!   checked against it nor slide its window; afterwards the other end's acks may run up
//!   to one of its windows ahead of what was seen from it (the first segment seen may be
//!   a retransmission of data that went through the failed instance); while the other end
//!   has not been seen either, the window it last advertised is unknown (the record
//!   carries the largest window the failed instance saw, possibly at the handshake), so
//!   this end may send up to the largest window the other's scale allows, until the other
//!   end's first acknowledgement sets the bound;
//! * out-of-window segments are invalid unless sequence checking is off;
//! * invalid flag combinations are invalid.

use super::{L4Proto, UpdateResult};
use crate::conntrack::conn::{L4State, TcpPeer, TcpState};
use crate::conntrack::timeouts::TimeoutAttr;
use crate::wire::parse::{tcp_flags as f, L4Summary, ParsedPacket, TcpSummary};

/// Largest window scale shift (RFC 7323).
const MAX_WSCALE: u8 = 14;
/// `wscale` bit: the peer sent a window-scale option.
pub const WSCALE_FLAG: u8 = 0x80;
/// `wscale` bit: the connection was picked up mid-stream, scaling unknown.
pub const WSCALE_UNKNOWN: u8 = 0x40;
/// `wscale` bit: this peer's sequence numbers were taken from a segment of a connection
/// learned from a sync peer, so its `seqlo` may lag what it really sent (through the
/// failed instance) by up to a window of the other end: acks of the other end may run
/// that far ahead of it (Linux's bound, `MAXACKWINDOW`, instead of pf's fixed one).
pub const SEQ_LEARNED: u8 = 0x20;
/// `wscale` bit: this peer's `seqhi` was set when it was re-learned while the other end's
/// sequence numbers were unknown too (a learned connection whose traffic reached this
/// instance from this end first): the bound is the largest window the other end's scale
/// allows, and the other end's first acknowledgement replaces it with its own edge.
pub const SEQHI_OPEN: u8 = 0x10;
const WSCALE_MASK: u8 = 0x0f;
/// Tolerance for acks behind/ahead of the window: one maximal window plus a fudge.
const MAX_ACK_WINDOW: i64 = 0xffff + 1500;

#[inline(always)]
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline(always)]
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Flag combinations no TCP stack sends (pf's scrub check): one bit of
/// [`INVALID_FLAGS`], a table over the six flags the rule reads.
#[inline(always)]
pub fn invalid_flags(flags: u8) -> bool {
    (INVALID_FLAGS >> (flags & FLAGS_READ)) & 1 != 0
}

/// The flags [`invalid_flags_rule`] reads: FIN, SYN, RST, PSH, ACK, URG (the low six).
const FLAGS_READ: u8 = f::FIN | f::SYN | f::RST | f::PSH | f::ACK | f::URG;

/// Bit `i`: [`invalid_flags_rule`] of the flags `i`, for every combination of the six
/// flags it reads. A lookup instead of the rule's branches (24 instructions per TCP
/// packet in a callgrind profile of `ctgate-perf step --proto tcp`; with the timeout
/// table below, the step at 1k TCP flows went from 1,778.9 to 1,749.9 instructions per
/// packet, `perf/scripts/instr.sh`).
const INVALID_FLAGS: u64 = {
    let mut table = 0u64;
    let mut i = 0u8;
    while i <= FLAGS_READ {
        if invalid_flags_rule(i) {
            table |= 1 << i;
        }
        i += 1;
    }
    table
};

/// The rule itself: a SYN with RST or FIN; neither SYN, ACK nor RST; FIN, PSH or URG
/// without ACK.
const fn invalid_flags_rule(flags: u8) -> bool {
    if flags & f::SYN != 0 {
        if flags & (f::RST | f::FIN) != 0 {
            return true;
        }
    } else if flags & (f::ACK | f::RST) == 0 {
        return true;
    }
    // FIN, PSH and URG are only valid with ACK.
    flags & f::ACK == 0 && flags & (f::FIN | f::PSH | f::URG) != 0
}

#[inline(always)]
fn tcp_of(p: &ParsedPacket) -> Option<&TcpSummary> {
    match &p.l4 {
        L4Summary::Tcp(t) => Some(t),
        _ => None,
    }
}

#[inline(always)]
fn wscale_of(t: &TcpSummary) -> u8 {
    match t.wscale {
        Some(s) => s.min(MAX_WSCALE) | WSCALE_FLAG,
        None => 0,
    }
}

/// Forgets what was known of a peer's sequence numbers (a connection learned from a sync
/// peer): `seqlo == seqhi == 0`, re-learned from its next segment, and the bits that
/// described the last re-learning cleared.
pub fn forget_seqs(p: &mut TcpPeer) {
    p.seqlo = 0;
    p.seqhi = 0;
    p.wscale &= !(SEQ_LEARNED | SEQHI_OPEN);
}

/// The timeout class for the pair of peer states after a valid segment.
#[inline(always)]
pub fn timeout_for(src: &TcpPeer, dst: &TcpPeer) -> TimeoutAttr {
    let row = TIMEOUT_BY_STATES[usize::from(src.state as u8 & 15)];
    row[usize::from(dst.state as u8 & 15)]
}

/// [`timeout_rule`] for every pair of peer states (sender, receiver), as const data (the
/// rule's five-way branch was 24 instructions per TCP packet, see [`INVALID_FLAGS`]).
/// Sixteen by sixteen so that a state's number indexes it without a bounds check.
const TIMEOUT_BY_STATES: [[TimeoutAttr; 16]; 16] = {
    let mut t = [[TimeoutAttr::TcpClose; 16]; 16];
    let mut s = 0;
    while s < 16 {
        let mut d = 0;
        while d < 16 {
            t[s][d] = timeout_rule(s as u8, d as u8);
            d += 1;
        }
        s += 1;
    }
    t
};

/// The timeout of a connection whose peers are in states `s` and `d` (numbers of
/// [`TcpState`]): closed once both reached FIN_WAIT_2, time-wait once both are closing,
/// opening while either is not established, closing while one is, else established.
const fn timeout_rule(s: u8, d: u8) -> TimeoutAttr {
    let fin_wait2 = TcpState::FinWait2 as u8;
    let closing = TcpState::Closing as u8;
    let established = TcpState::Established as u8;
    if s >= fin_wait2 && d >= fin_wait2 {
        TimeoutAttr::TcpClose
    } else if s >= closing && d >= closing {
        TimeoutAttr::TcpTimeWait
    } else if s < established || d < established {
        TimeoutAttr::TcpSynRecv
    } else if s >= closing || d >= closing {
        TimeoutAttr::TcpFinWait
    } else {
        TimeoutAttr::TcpEstablished
    }
}

/// The TCP state machine.
pub struct Tcp;

impl L4Proto for Tcp {
    fn valid_new(p: &ParsedPacket) -> bool {
        let Some(t) = tcp_of(p) else {
            return false;
        };
        // A SYN+ACK may not create a connection: only new ones (SYN) or established ones
        // picked up mid-stream.
        let syn_ack = t.flags & (f::SYN | f::ACK) == (f::SYN | f::ACK);
        !(invalid_flags(t.flags) || syn_ack)
    }

    fn new_conn(p: &ParsedPacket, st: &mut L4State) -> TimeoutAttr {
        *st = L4State::default();
        let Some(t) = tcp_of(p) else {
            return TimeoutAttr::TcpSynSent;
        };
        let [src, dst] = &mut st.peer;
        src.seqlo = t.seq;
        src.seqhi = t.seq.wrapping_add(t.payload_len as u32).wrapping_add(1);
        if t.flags & f::SYN != 0 {
            src.seqhi = src.seqhi.wrapping_add(1);
            src.wscale = wscale_of(t);
        } else {
            src.wscale = WSCALE_UNKNOWN;
            dst.wscale = WSCALE_UNKNOWN;
        }
        src.max_win = t.window.max(1);
        if src.wscale & WSCALE_MASK != 0 {
            // Remove the scale factor from the initial window.
            let sws = (src.wscale & WSCALE_MASK) as u32;
            src.max_win = (src.max_win as u32).div_ceil(1 << sws) as u16;
        }
        if t.flags & f::FIN != 0 {
            src.seqhi = src.seqhi.wrapping_add(1);
        }
        dst.seqhi = 1;
        dst.max_win = 1;
        src.state = TcpState::SynSent;
        dst.state = TcpState::Closed;
        TimeoutAttr::TcpSynSent
    }

    fn update(
        p: &ParsedPacket,
        st: &mut L4State,
        reply: bool,
        seq_check: bool,
    ) -> (UpdateResult, Option<TimeoutAttr>) {
        let Some(t) = tcp_of(p) else {
            return (UpdateResult::Invalid, None);
        };
        if let Some(r) = update_established(t, st, reply) {
            return r;
        }
        update_general(t, st, reply, seq_check)
    }
}

/// The sending and the receiving peer of a segment (`reply`: the reply direction sent it).
#[inline(always)]
fn peers(st: &mut L4State, reply: bool) -> (&mut TcpPeer, &mut TcpPeer) {
    let (a, b) = st.peer.split_at_mut(1);
    if reply {
        (&mut b[0], &mut a[0])
    } else {
        (&mut a[0], &mut b[0])
    }
}

/// The window scale shifts (sender's, receiver's) that apply to a segment: the peers' own
/// when both sent the option, the largest when both were picked up mid-stream (scaling
/// unknown), else none; never on a SYN.
#[inline(always)]
fn scales(src: &TcpPeer, dst: &TcpPeer, flags: u8) -> (u8, u8) {
    if src.wscale & WSCALE_FLAG != 0 && dst.wscale & WSCALE_FLAG != 0 && flags & f::SYN == 0 {
        (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
    } else if src.wscale & WSCALE_UNKNOWN != 0
        && dst.wscale & WSCALE_UNKNOWN != 0
        && flags & f::SYN == 0
    {
        (MAX_WSCALE, MAX_WSCALE)
    } else {
        (0, 0)
    }
}

/// What pf's window check reads of a segment, after the adjustments of
/// [`update_general`] (sequence range eased for segments without data, ack taken as
/// acceptable when there is none).
struct Segment {
    /// First sequence number (or the sender's `seqlo`, for a segment without data).
    seq: u32,
    /// Sequence number after the segment (SYN and FIN count one each).
    end: u32,
    ack: u32,
    /// The sequence number as sent (for the exact match RST needs).
    orig_seq: u32,
    flags: u8,
    /// Window scale shifts: sender's, receiver's.
    sws: u8,
    dws: u8,
}

/// pf's window check: `seg` within what `dst` can receive, not more than one window
/// back, and its ack within a window of what `dst` sent; `check_ackskew` false skips the
/// ack check (a pick-up), `dst_unknown` (the receiver's sequence numbers unknown, see
/// the module's header) too, and takes the largest window its scale allows as its window.
#[inline(always)]
fn in_window(
    src: &TcpPeer,
    dst: &TcpPeer,
    seg: &Segment,
    check_ackskew: bool,
    dst_unknown: bool,
) -> bool {
    let (seq, end, sws, dws) = (seg.seq, seg.end, seg.sws, seg.dws);
    let ackskew: i64 = if check_ackskew && !dst_unknown {
        dst.seqlo.wrapping_sub(seg.ack) as i32 as i64
    } else {
        0
    };
    // How far back a retransmission may reach: one window of `dst` (the largest its
    // scale allows while its window is unknown, see the module's header).
    let dst_win = if dst_unknown {
        0xffff << dws
    } else {
        (dst.max_win as u32) << dws
    };
    // How far an ack may run ahead of what the tracker saw `dst` send: one reassembled
    // fragment (pf), or, when `dst`'s sequence numbers were learned from a segment
    // after a failover (the first one seen may be a retransmission of data that went
    // through the failed instance, which `src` already has), one window of `src`.
    let ack_ahead = if dst.wscale & SEQ_LEARNED != 0 {
        MAX_ACK_WINDOW.max(i64::from(src.max_win) << sws)
    } else {
        MAX_ACK_WINDOW
    };
    seq_geq(src.seqhi, end)
        // Retransmission: not more than one window back.
        && seq_geq(seq, src.seqlo.wrapping_sub(dst_win))
        // Acking not more than one reassembled fragment (see `ack_ahead`) forward of
        // what `dst` sent.
        && ackskew >= -ack_ahead
        // Acking not more than one window forward.
        && ackskew <= (MAX_ACK_WINDOW << sws)
        // Require an exact/+1 sequence match on resets when possible.
        && (seg.flags & f::RST == 0
            || seg.orig_seq == src.seqlo
            || seg.orig_seq == src.seqlo.wrapping_add(1)
            || seg.orig_seq.wrapping_add(1) == src.seqlo)
}

/// After an accepted segment of window `win`: the sender's largest window and highest
/// sequence sent, and what the receiver may send (unless its sequence numbers are
/// unknown).
#[inline(always)]
fn advance(src: &mut TcpPeer, dst: &mut TcpPeer, win: u32, seg: &Segment, dst_unknown: bool) {
    if (src.max_win as u32) < win {
        src.max_win = win as u16;
    }
    if seq_gt(seg.end, src.seqlo) {
        src.seqlo = seg.end;
    }
    // Slide the window of what the other end can send.
    let wins = win << seg.sws;
    if !dst_unknown && seq_geq(seg.ack.wrapping_add(wins), dst.seqhi) {
        dst.seqhi = seg.ack.wrapping_add(wins.max(1));
    }
}

/// The common segment: an ACK without SYN, FIN or RST (with or without data, PSH, URG,
/// ECE, CWR) between two established peers whose sequence numbers are known, in window.
/// It changes no peer's state and keeps the established timeout: [`update_general`]'s
/// answer, without its branches for opening, closing, resets and picked-up or learned
/// peers (the test `the_established_path_answers_as_the_general_update` pins it down):
/// the gateway step at 1k TCP flows 1,472.2 → 1,417.2 instructions per packet
/// (`perf/scripts/instr.sh`, perf/RESULTS.md session 25). `None`, nothing changed, for
/// every other segment.
#[inline(always)]
fn update_established(
    t: &TcpSummary,
    st: &mut L4State,
    reply: bool,
) -> Option<(UpdateResult, Option<TimeoutAttr>)> {
    let flags = t.flags;
    if flags & (f::SYN | f::FIN | f::RST | f::ACK) != f::ACK {
        return None;
    }
    let (src, dst) = peers(st, reply);
    if src.state != TcpState::Established
        || dst.state != TcpState::Established
        || (src.seqlo | src.seqhi) == 0
        || (dst.seqlo | dst.seqhi) == 0
    {
        return None;
    }
    let (sws, dws) = scales(src, dst, flags);
    let end = t.seq.wrapping_add(t.payload_len as u32);
    // Ease sequencing restrictions on segments without data.
    let (seq, end) = if end == t.seq {
        (src.seqlo, src.seqlo)
    } else {
        (t.seq, end)
    };
    let seg = Segment {
        seq,
        end,
        ack: t.ack,
        orig_seq: t.seq,
        flags,
        sws,
        dws,
    };
    if !in_window(src, dst, &seg, true, false) {
        return None;
    }
    advance(src, dst, t.window as u32, &seg, false);
    Some((UpdateResult::Valid, Some(TimeoutAttr::TcpEstablished)))
}

/// Every segment: pf's `pf_test_state_tcp` as OVS's `tcp_conn_update` has it.
#[inline(never)]
fn update_general(
    t: &TcpSummary,
    st: &mut L4State,
    reply: bool,
    seq_check: bool,
) -> (UpdateResult, Option<TimeoutAttr>) {
    let flags = t.flags;
    if invalid_flags(flags) {
        return (UpdateResult::Invalid, None);
    }
    // `src` sent the segment, `dst` receives it.
    let (src, dst) = peers(st, reply);

    // Port reuse: a fresh SYN on a connection whose both sides have closed.
    if flags & (f::SYN | f::ACK) == f::SYN
        && dst.state >= TcpState::FinWait2
        && src.state >= TcpState::FinWait2
    {
        src.state = TcpState::Closed;
        dst.state = TcpState::Closed;
        return (UpdateResult::Recreate, None);
    }

    // A SYN (without ACK) from a side that is still opening: a retransmitted or
    // shotgunned SYN. It stays `new` and leaves the window state alone (OVS
    // tcp_conn_update), so it cannot corrupt the receiver's not-yet-known window.
    if flags & (f::SYN | f::ACK) == f::SYN && src.state <= TcpState::SynSent {
        src.state = TcpState::SynSent;
        return (UpdateResult::ValidNew, Some(TimeoutAttr::TcpSynSent));
    }

    let (mut sws, mut dws) = scales(src, dst, flags);

    // The receiving end of a connection learned from a sync peer that has not sent
    // since: its sequence numbers are unknown until its own next segment (0/0, see
    // below), so this segment's ack is neither checked against them nor slides them.
    let dst_unknown = dst.state >= TcpState::SynSent && dst.seqlo == 0 && dst.seqhi == 0;

    let mut win = t.window as u32;
    let p_len = t.payload_len as u32;
    let orig_seq = t.seq;
    let mut seq = t.seq;
    let mut ack = t.ack;
    let mut end;
    let mut check_ackskew = true;

    if src.state < TcpState::SynSent {
        // First segment from this end: set its state.
        end = seq.wrapping_add(p_len);
        if flags & f::SYN != 0 {
            end = end.wrapping_add(1);
            if dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = wscale_of(t);
                if src.wscale & WSCALE_FLAG != 0 {
                    // Remove the scale factor from the initial window.
                    sws = src.wscale & WSCALE_MASK;
                    win = win.div_ceil(1 << sws);
                    dws = dst.wscale & WSCALE_MASK;
                } else {
                    // Fix up the other window (u16 as in pf), in case of a
                    // retransmitted SYN|ACK.
                    dst.max_win = dst.max_win.wrapping_shl((dst.wscale & WSCALE_MASK) as u32);
                    dst.wscale = 0;
                }
            }
        }
        if flags & f::FIN != 0 {
            end = end.wrapping_add(1);
        }
        src.seqlo = seq;
        src.state = TcpState::SynSent;
        // Slide the window if seqhi was set by a mid-stream pick-up.
        let reach = end.wrapping_add(((dst.max_win as u32) << dws).max(1));
        if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
            src.seqhi = reach;
            // Picking up a new or already established connection: be lenient on
            // the ack skew.
            check_ackskew = false;
        }
        if win > src.max_win as u32 {
            src.max_win = win as u16;
        }
    } else if src.seqhi == 0 && src.seqlo == 0 {
        // A connection learned from a sync peer (`conntrack::learn`): the state is
        // known, this end's sequence numbers are not; take them from this segment, with
        // the lenience of a mid-stream pick-up.
        end = seq.wrapping_add(p_len);
        if flags & f::SYN != 0 {
            end = end.wrapping_add(1);
        }
        if flags & f::FIN != 0 {
            end = end.wrapping_add(1);
        }
        src.seqlo = seq;
        // What this end may send is bounded by the other end's last window edge. Known
        // here when the other end was seen (its largest window); otherwise the
        // record's window may be long stale (a receiver's window grows), so the
        // largest the other end's scale allows, until it acknowledges (below).
        let reach = if dst_unknown {
            src.wscale |= SEQHI_OPEN;
            0xffff << dws
        } else {
            (dst.max_win as u32) << dws
        };
        src.seqhi = end.wrapping_add(reach.max(1));
        src.wscale |= SEQ_LEARNED;
        check_ackskew = false;
        if win > src.max_win as u32 {
            src.max_win = win as u16;
        }
        if dst.wscale & SEQHI_OPEN != 0 && !dst_unknown && flags & f::ACK != 0 {
            // The other end went first with an open bound: this end's first ack is its
            // newest window edge (edges never move back), so nothing it sent lies past.
            let edge = ack.wrapping_add((win << sws).max(1));
            dst.seqhi = if seq_gt(dst.seqlo, edge) {
                dst.seqlo
            } else {
                edge
            };
            dst.wscale &= !SEQHI_OPEN;
        }
    } else {
        end = seq.wrapping_add(p_len);
        if flags & f::SYN != 0 {
            end = end.wrapping_add(1);
        }
        if flags & f::FIN != 0 {
            end = end.wrapping_add(1);
        }
    }

    if flags & f::ACK == 0 {
        // Let it pass the ack skew check.
        ack = dst.seqlo;
    } else if ack == 0 && flags & (f::ACK | f::RST) == (f::ACK | f::RST) {
        // Broken stacks send RST|ACK with ack 0.
        ack = dst.seqlo;
    }

    if seq == end {
        // Ease sequencing restrictions on segments without data.
        seq = src.seqlo;
        end = seq;
    }

    let seg = Segment {
        seq,
        end,
        ack,
        orig_seq,
        flags,
        sws,
        dws,
    };
    if in_window(src, dst, &seg, check_ackskew, dst_unknown) || !seq_check {
        advance(src, dst, win, &seg, dst_unknown);
        if flags & f::SYN != 0 && src.state < TcpState::SynSent {
            src.state = TcpState::SynSent;
        }
        if flags & f::FIN != 0 && src.state < TcpState::Closing {
            src.state = TcpState::Closing;
        }
        if flags & f::ACK != 0 {
            if dst.state == TcpState::SynSent {
                dst.state = TcpState::Established;
            } else if dst.state == TcpState::Closing {
                dst.state = TcpState::FinWait2;
            }
        }
        if flags & f::RST != 0 {
            src.state = TcpState::TimeWait;
            dst.state = TcpState::TimeWait;
        }
        let tm = timeout_for(src, dst);
        (UpdateResult::Valid, Some(tm))
    } else if (dst.state < TcpState::SynSent
        || dst.state >= TcpState::FinWait2
        || src.state >= TcpState::FinWait2)
        && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32))
    {
        // Shotgunned SYNs before the peer replied, a stream picked up after the state
        // was lost, or stray segments right after close: accept without refreshing the
        // timeout, so a flood cannot keep the entry alive.
        advance(src, dst, win, &seg, dst_unknown);
        if flags & f::FIN != 0 && src.state < TcpState::Closing {
            src.state = TcpState::Closing;
        }
        if flags & f::RST != 0 {
            src.state = TcpState::TimeWait;
            dst.state = TcpState::TimeWait;
        }
        (UpdateResult::Valid, None)
    } else {
        (UpdateResult::Invalid, None)
    }
}

/// The state OVS prints in `protoinfo=(state=…)`: the larger of the two peers' states,
/// with FIN_WAIT_2 shown as TIME_WAIT and SYN_RECV as ESTABLISHED.
pub fn display_state(st: &L4State) -> TcpState {
    let s = st.peer[0].state.max(st.peer[1].state);
    match s {
        TcpState::FinWait2 => TcpState::TimeWait,
        TcpState::SynRecv => TcpState::Established,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_validity_follows_pf() {
        assert!(!invalid_flags(f::SYN));
        assert!(!invalid_flags(f::SYN | f::ACK));
        assert!(!invalid_flags(f::ACK));
        assert!(!invalid_flags(f::RST));
        assert!(!invalid_flags(f::FIN | f::ACK));
        assert!(invalid_flags(f::SYN | f::RST));
        assert!(invalid_flags(f::SYN | f::FIN));
        assert!(invalid_flags(0));
        assert!(invalid_flags(f::FIN));
        assert!(invalid_flags(f::RST | f::PSH));
    }

    #[test]
    fn the_flag_table_holds_the_rule_for_every_flag_byte() {
        for flags in 0..=u8::MAX {
            // ECE and CWR (the top two bits) never change the verdict.
            assert_eq!(
                invalid_flags(flags),
                invalid_flags_rule(flags & FLAGS_READ),
                "flags {flags:#04x}"
            );
            assert_eq!(
                invalid_flags(flags),
                invalid_flags_rule(flags),
                "flags {flags:#04x}"
            );
        }
    }

    #[test]
    fn the_timeout_table_gives_each_pair_of_peer_states_its_timeout() {
        use TcpState::*;
        let all: Vec<TcpState> = (0..=TimeWait as u8).map(TcpState::from_u8).collect();
        assert_eq!(all.len(), 11);
        // The rule as it read before the table, on the states themselves.
        let rule = |s: TcpState, d: TcpState| {
            if s >= FinWait2 && d >= FinWait2 {
                TimeoutAttr::TcpClose
            } else if s >= Closing && d >= Closing {
                TimeoutAttr::TcpTimeWait
            } else if s < Established || d < Established {
                TimeoutAttr::TcpSynRecv
            } else if s >= Closing || d >= Closing {
                TimeoutAttr::TcpFinWait
            } else {
                TimeoutAttr::TcpEstablished
            }
        };
        let peer = |state| TcpPeer {
            state,
            ..TcpPeer::default()
        };
        for &s in &all {
            for &d in &all {
                assert_eq!(timeout_for(&peer(s), &peer(d)), rule(s, d), "{s:?} {d:?}");
            }
        }
    }

    /// A small deterministic generator (xorshift64*) for the comparison below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// `x` moved by up to `by` either way.
        fn near(&mut self, x: u32, by: u32) -> u32 {
            x.wrapping_add((self.next() % (2 * u64::from(by) + 1)) as u32)
                .wrapping_sub(by)
        }
    }

    /// One of `from`, by `x`.
    fn pick<T: Copy>(x: u64, from: &[T]) -> T {
        from[x as usize % from.len()]
    }

    fn random_peer(r: &mut Rng) -> TcpPeer {
        use TcpState::*;
        let state = pick(
            r.next(),
            &[
                Established,
                Established,
                Established,
                Established,
                Established,
                Established,
                Established,
                Established,
                SynSent,
                Closing,
                FinWait2,
                TimeWait,
                Closed,
            ],
        );
        let seqlo = r.next() as u32;
        let seqhi = match r.next() % 8 {
            0 => seqlo,
            1 => r.next() as u32,
            _ => seqlo.wrapping_add((r.next() % 200_000) as u32),
        };
        let (seqlo, seqhi) = if r.next().is_multiple_of(16) {
            (0, 0)
        } else {
            (seqlo, seqhi)
        };
        let k = (r.next() % 15) as u8;
        TcpPeer {
            seqlo,
            seqhi,
            max_win: pick(
                r.next(),
                &[0, 1, 512, 65535, r.next() as u16, r.next() as u16],
            ),
            wscale: pick(
                r.next(),
                &[
                    0,
                    0,
                    WSCALE_FLAG | k,
                    WSCALE_FLAG | k,
                    WSCALE_UNKNOWN,
                    WSCALE_FLAG | SEQ_LEARNED | k,
                    WSCALE_FLAG | SEQHI_OPEN | k,
                    r.next() as u8,
                ],
            ),
            state,
        }
    }

    /// Over 300,000 random pairs of peers and segments (states, windows, scales, learned
    /// and unknown peers, flags, sequence and ack numbers near and far from the windows,
    /// both directions, with and without sequence checking), `Tcp::update` gives the
    /// answer and the state of the general update; the established path took a good share
    /// of them and left the others to the general update.
    #[test]
    fn the_established_path_answers_as_the_general_update() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut fast, mut general) = (0, 0);
        for _ in 0..300_000 {
            let st = L4State {
                peer: [random_peer(&mut r), random_peer(&mut r)],
                proto_state: 0,
            };
            let reply = r.next() & 1 != 0;
            let seq_check = !r.next().is_multiple_of(4);
            let (src, dst) = if reply {
                (st.peer[1], st.peer[0])
            } else {
                (st.peer[0], st.peer[1])
            };
            let flags = pick(
                r.next(),
                &[
                    f::ACK,
                    f::ACK,
                    f::ACK | f::PSH,
                    f::ACK | f::URG,
                    f::ACK | 0xc0,
                    r.next() as u8,
                    f::SYN,
                    f::SYN | f::ACK,
                    f::FIN | f::ACK,
                    f::RST,
                    f::RST | f::ACK,
                ],
            );
            let seq = match r.next() % 4 {
                0 => src.seqlo,
                1 => r.near(src.seqlo, 3000),
                2 => r.near(src.seqhi, 3000),
                _ => r.next() as u32,
            };
            let ack = match r.next() % 4 {
                0 => dst.seqlo,
                1 => r.near(dst.seqlo, 3000),
                2 => r.near(dst.seqlo, 140_000),
                _ => r.next() as u32,
            };
            let t = TcpSummary {
                sport: 1,
                dport: 2,
                seq,
                ack,
                flags,
                window: pick(r.next(), &[0, 1, 65535, r.next() as u16]),
                wscale: pick(r.next(), &[None, Some(7), Some(20)]),
                payload_len: pick(r.next(), &[0, 0, 1, (r.next() % 1500) as u16]),
            };
            let p = ParsedPacket {
                proto: crate::wire::parse::proto::TCP,
                l4: L4Summary::Tcp(t),
                ..ParsedPacket::EMPTY
            };
            let mut probe = st;
            match update_established(&t, &mut probe, reply) {
                Some(_) => fast += 1,
                None => {
                    assert_eq!(probe, st, "the established path changed a state it left");
                    general += 1;
                }
            }
            let (mut a, mut b) = (st, st);
            let got = Tcp::update(&p, &mut a, reply, seq_check);
            let want = update_general(&t, &mut b, reply, seq_check);
            assert_eq!(
                (got, a),
                (want, b),
                "{st:?} {t:?} reply {reply} check {seq_check}"
            );
        }
        assert!(fast > 20_000 && general > 100_000, "{fast} {general}");
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(seq_gt(1, u32::MAX));
        assert!(seq_geq(5, 5));
        assert!(!seq_gt(u32::MAX, 1));
    }
}
