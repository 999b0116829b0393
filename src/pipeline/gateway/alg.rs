//! The gateway's ALG step, between the tracker and the NAT rewrite, for packets of
//! connections with ALG bits ([`crate::conntrack::CtResult::alg`]; every other packet
//! skips it with one test): a TFTP request or an FTP announcement is handed to the
//! tracker, which creates the expectation; an FTP address the parent's NAT changes is
//! rewritten by [`crate::nat::alg::rewrite_ftp_addr`]; and every segment of a connection
//! with a sequence skew has its sequence and acknowledgement numbers moved
//! ([`crate::nat::alg::shift_seq_ack`]).
//!
//! A rewrite that keeps the length is copied back into the frame. One that changes it is
//! built in one of the worker's [`ALG_SLOTS`](super::state::ALG_SLOTS) buffers
//! (allocated once): that frame goes
//! through the rest of the step in place of the original, which is consumed, and is sent
//! at the next service. No free buffer, no room, or no room for the skew: the segment is
//! passed unchanged and counted (`alg_rewrite_failed`); a malformed announcement is
//! passed unchanged and counted by the tracker (`alg_ftp_invalid`).

use super::state::WorkerState;
use crate::conntrack::alg::helpers::{ALG_FTP, ALG_TFTP};
use crate::conntrack::alg::track::AlgVerdict;
use crate::conntrack::conn::{ALG_HELPER, ALG_SKEW};
use crate::conntrack::{CtState, OwnedCtWorker, PacketMeta};
use crate::nat::alg::{rewrite_ftp_addr, shift_seq_ack, tcp_payload};
use crate::wire::parse::L4Summary;
use crate::wire::parse_frame;

/// Runs the ALG step on one tracked frame. Returns the buffer slot and length of the
/// frame to send instead, when the rewrite changed its length.
pub(super) fn alg_step(
    ct: &mut OwnedCtWorker,
    w: &mut WorkerState,
    frame: &mut [u8],
    m: &PacketMeta,
) -> Option<(usize, usize)> {
    let r = &m.result;
    let hit = r.conn?;
    let p = &m.parsed;
    let helper = r.alg & ALG_HELPER;
    match &p.l4 {
        L4Summary::Udp { .. } if helper == ALG_TFTP => {
            let l4 = usize::from(p.l4_offset);
            if let Some(payload) = frame.get(l4 + 8..l4 + usize::from(p.l4_len)) {
                ct.alg_tftp(&hit, payload);
            }
            None
        }
        L4Summary::Tcp(t) => {
            let (mut dseq, mut dack) = (0, 0);
            if r.alg & ALG_SKEW != 0 {
                if let Some(sk) = ct.alg_skew(&hit) {
                    dseq = sk[hit.dir & 1].seq_offset(t.seq);
                    dack = sk[(hit.dir ^ 1) & 1].ack_offset(t.ack);
                }
            }
            let mut pending = None;
            if helper == ALG_FTP && t.payload_len > 0 && !r.state.has(CtState::INV) {
                if let Some((s, e)) = tcp_payload(frame, p) {
                    let verdict = frame.get(s..e).map(|pl| ct.alg_ftp(&hit, pl));
                    if let Some(AlgVerdict::Rewrite { msg, to }) = verdict {
                        pending = rewrite(ct, w, frame, m, &msg, to, t.seq);
                    }
                }
            }
            if dseq != 0 || dack != 0 {
                match pending {
                    Some((slot, len)) => {
                        if let Some(b) = w.alg_bufs.get_mut(slot).and_then(|b| b.get_mut(..len)) {
                            if let Ok(q) = parse_frame(b) {
                                shift_seq_ack(b, &q, dseq, dack);
                            }
                        }
                    }
                    None => {
                        shift_seq_ack(frame, p, dseq, dack);
                    }
                }
            }
            pending
        }
        _ => None,
    }
}

fn rewrite(
    ct: &mut OwnedCtWorker,
    w: &mut WorkerState,
    frame: &mut [u8],
    m: &PacketMeta,
    msg: &crate::conntrack::alg::ftp::FtpMessage,
    to: std::net::IpAddr,
    seq: u32,
) -> Option<(usize, usize)> {
    let hit = m.result.conn?;
    let slot = w.alg_used;
    let Some(buf) = w.alg_bufs.get_mut(slot) else {
        ct.alg_rewrite_failed();
        return None;
    };
    match rewrite_ftp_addr(frame, &m.parsed, msg, to, buf) {
        Ok((len, 0)) => {
            if let (Some(dst), Some(src)) = (frame.get_mut(..len), buf.get(..len)) {
                dst.copy_from_slice(src);
            }
            None
        }
        Ok((len, delta)) => {
            if ct.alg_add_skew(&hit, seq, delta) {
                w.alg_used += 1;
                Some((slot, len))
            } else {
                None
            }
        }
        Err(_) => {
            ct.alg_rewrite_failed();
            None
        }
    }
}
