//! Traffic the gateway answers itself instead of forwarding: ARP requests and NDP
//! neighbour solicitations for its addresses (and the SNAT pool's, on outside ports),
//! ICMP/ICMPv6 echo requests to its addresses, and the ICMP time-exceeded errors for
//! packets whose TTL/hop limit runs out. ARP and NDP also teach the neighbour table.
//!
//! Replies of the request's size are written in place and sent back out the input port;
//! the others are built into the worker's generated-frame slots (sent at the next
//! service). ICMP errors are rate-limited to [`ICMP_ERRORS_PER_SEC`] per worker.

use super::originated::*;
use super::shared::{bump, is_link_local, GatewayShared, Port};
use super::state::WorkerState;
use crate::pipeline::{DropReason, Verdict};
use crate::wire::parse::{Family, Fragment, L4Summary, ParsedPacket};

/// ICMP errors (time exceeded) a worker sends per second at most.
pub const ICMP_ERRORS_PER_SEC: u32 = 100;

/// Answers an echo request to one of the gateway's addresses in place, out the input
/// port.
#[cold]
#[inline(never)]
pub(super) fn answer_echo(
    sh: &GatewayShared,
    frame: &mut [u8],
    p: &ParsedPacket,
    port: &Port,
) -> Verdict {
    let ok = echo_reply_in_place(
        frame,
        p.family == Family::V6,
        usize::from(p.l3_offset),
        usize::from(p.l4_offset),
        port.mac,
    );
    if ok {
        bump(&sh.counters.echo_replies);
        return Verdict::Forward(port.id);
    }
    Verdict::Drop(DropReason::Malformed)
}

impl WorkerState {
    pub(super) fn icmp_error_allowed(&mut self) -> bool {
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

    #[cold]
    #[inline(never)]
    pub(super) fn time_exceeded(
        &mut self,
        sh: &GatewayShared,
        frame: &[u8],
        p: &ParsedPacket,
        port: &Port,
    ) {
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

    #[cold]
    #[inline(never)]
    pub(super) fn arp(&mut self, sh: &GatewayShared, frame: &mut [u8], port: &Port) -> Verdict {
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

    #[cold]
    #[inline(never)]
    pub(super) fn ndp(
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
}
