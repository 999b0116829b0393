//! Connection events as `conntrack -E` prints them (conntrack-tools with
//! libnetfilter_conntrack's default output, `__snprintf_conntrack_default`), byte for
//! byte, so operators' scripts and habits carry over:
//!
//! ```text
//!     [NEW] udp      17 30 src=10.0.0.2 dst=192.0.2.2 sport=4000 dport=53 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=53 dport=4000
//!  [UPDATE] tcp      6 432000 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED]
//! [DESTROY] udp      17 src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED] zone=3
//! ```
//!
//! The event tag right-aligned in 9 columns, the protocol name left-aligned in 8 and its
//! number; then, as the kernel sends them: the seconds left (not for destroys), the TCP
//! state (TCP, destroys included), the original tuple, `[UNREPLIED]` before a reply was
//! seen, the reply tuple, `[ASSURED]`, and `zone=N` for a zone other than 0. ICMP tuples
//! are `type=T code=C id=I`, GRE's `srckey=0x… dstkey=0x…`. No trailing blank. The tests
//! compare with lines Linux printed (tests/fixtures/linux_conntrack_e.txt).

use super::events::{CtEvent, EventKind};
use super::key::ConnKey;
use crate::wire::parse::proto;
use std::fmt::Write;

/// libnetfilter_conntrack's protocol names (`__proto2str`).
pub fn linux_proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        136 => "udplite",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        132 => "sctp",
        47 => "gre",
        33 => "dccp",
        _ => "unknown",
    }
}

/// One tuple with its trailing blank (`__snprintf_address` then `__snprintf_proto`).
fn tuple(out: &mut String, k: &ConnKey) {
    let _ = write!(out, "src={} dst={} ", k.src_ip(), k.dst_ip());
    match k.proto {
        proto::TCP | proto::UDP | 136 | 132 | 33 => {
            let _ = write!(out, "sport={} dport={} ", k.sport, k.dport);
        }
        47 => {
            let _ = write!(out, "srckey=0x{:x} dstkey=0x{:x} ", k.sport, k.dport);
        }
        proto::ICMP | proto::ICMPV6 => {
            let _ = write!(
                out,
                "type={} code={} id={} ",
                k.icmp_type(),
                k.icmp_code(),
                k.sport
            );
        }
        _ => {}
    }
}

impl CtEvent {
    /// The `conntrack -E` line, without newline.
    pub fn conntrack_line(&self) -> String {
        let mut s = String::with_capacity(200);
        let tag = match self.kind {
            EventKind::New => "[NEW]",
            EventKind::Update => "[UPDATE]",
            EventKind::Destroy => "[DESTROY]",
        };
        let p = self.orig.proto;
        let _ = write!(s, "{tag:>9} {:<8} {p} ", linux_proto_name(p));
        if self.kind != EventKind::Destroy {
            let _ = write!(s, "{} ", self.timeout_ms / 1000);
        }
        if let Some(st) = self.linux_tcp_state() {
            let _ = write!(s, "{st} ");
        }
        tuple(&mut s, &self.orig);
        if !self.seen_reply() {
            s.push_str("[UNREPLIED] ");
        }
        tuple(&mut s, &self.reply);
        if self.assured() {
            s.push_str("[ASSURED] ");
        }
        if self.orig.zone != 0 {
            let _ = write!(s, "zone={} ", self.orig.zone);
        }
        s.pop();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::{conn_id, DestroyReason};
    use super::super::timeouts::TimeoutAttr;
    use super::*;

    /// What Linux's `conntrack -E` printed (conntrack-tools 1.4.7, Linux 6.18) for a ping,
    /// an HTTP fetch and a UDP exchange from 10.0.0.2 through a Linux gateway namespace
    /// masquerading to 192.0.2.1, every conntrack timeout 2 s: the connections
    /// tests/gw_events.rs makes through ctgate (recorded by
    /// tests/fixtures/linux_conntrack_e.sh).
    pub(crate) const LINUX: &str = include_str!("../../tests/fixtures/linux_conntrack_e.txt");

    fn key(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, p: u8, zone: u16) -> ConnKey {
        let mut k = ConnKey {
            sport,
            dport,
            proto: p,
            zone,
            family: 4,
            ..ConnKey::default()
        };
        k.src[..4].copy_from_slice(&src);
        k.dst[..4].copy_from_slice(&dst);
        k
    }

    fn ev(
        kind: EventKind,
        (orig, reply): (ConnKey, ConnKey),
        attr: TimeoutAttr,
        assured: bool,
        t: u64,
    ) -> CtEvent {
        CtEvent {
            kind,
            reason: if kind == EventKind::Destroy {
                DestroyReason::Expired
            } else {
                DestroyReason::None
            },
            ts_us: 1,
            id: conn_id(1, 1),
            orig,
            reply,
            nat: 0,
            tattr: attr as u8,
            assured,
            tcp_state: 0,
            timeout_ms: t,
        }
    }

    /// A connection's tuples, its reply source-NATed to 192.0.2.1 (port kept).
    fn snat(o: ConnKey) -> (ConnKey, ConnKey) {
        let mut r = o.reversed();
        r.dst = [0; 16];
        r.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        (o, r)
    }

    // Expected lines follow libnetfilter_conntrack's format strings: "%9s " for the tag,
    // "%-8s %u " for the protocol, "%u " timeout, "%s " TCP state, "src=%s dst=%s ",
    // "sport=%u dport=%u " / "type=%d code=%d id=%d ", "[UNREPLIED] ", "[ASSURED] ",
    // "zone=%u ", the last blank removed.

    #[test]
    fn every_line_linux_printed_for_a_ping_a_fetch_and_a_udp_exchange_is_formatted_byte_for_byte() {
        let icmp = snat(key([10, 0, 0, 2], [192, 0, 2, 2], 17397, 8 << 8, 1, 0));
        let tcp = snat(key([10, 0, 0, 2], [192, 0, 2, 2], 40123, 8000, 6, 0));
        let udp = snat(key([10, 0, 0, 2], [192, 0, 2, 2], 4000, 7777, 17, 0));
        use EventKind::*;
        use TimeoutAttr::*;
        // The events ctgate emits for the same transitions, in Linux's order.
        let ours = [
            ev(New, icmp, IcmpFirst, false, 2000),
            ev(Update, icmp, IcmpReply, false, 2000),
            ev(New, tcp, TcpSynSent, false, 2000),
            ev(Update, tcp, TcpSynRecv, false, 2000),
            ev(Update, tcp, TcpEstablished, true, 2000),
            ev(Update, tcp, TcpFinWait, true, 2000),
            ev(Update, tcp, TcpTimeWait, true, 2000),
            ev(Update, tcp, TcpClose, true, 2000),
            ev(New, udp, UdpFirst, false, 2000),
            ev(Update, udp, UdpMultiple, false, 2000),
            ev(Destroy, udp, UdpMultiple, false, 0),
            ev(Destroy, icmp, IcmpReply, false, 0),
            ev(Destroy, tcp, TcpClose, true, 0),
        ];
        let linux: Vec<&str> = LINUX.lines().collect();
        assert_eq!(linux.len(), ours.len());
        for (e, l) in ours.iter().zip(linux) {
            assert_eq!(e.conntrack_line(), l);
        }
    }

    #[test]
    fn an_assured_udp_flow_and_a_zone_print_as_conntrack_e() {
        let o = key([10, 0, 0, 2], [192, 0, 2, 2], 40000, 53, 17, 0);
        let mut r = o.reversed();
        r.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        r.dport = 1024;
        assert_eq!(
            ev(EventKind::New, (o, r), TimeoutAttr::UdpFirst, false, 30_000).conntrack_line(),
            "    [NEW] udp      17 30 src=10.0.0.2 dst=192.0.2.2 sport=40000 dport=53 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=53 dport=1024"
        );
        assert_eq!(
            ev(EventKind::Destroy, (o, r), TimeoutAttr::UdpMultiple, true, 0).conntrack_line(),
            "[DESTROY] udp      17 src=10.0.0.2 dst=192.0.2.2 sport=40000 dport=53 src=192.0.2.2 dst=192.0.2.1 sport=53 dport=1024 [ASSURED]"
        );
        let z = key([10, 0, 0, 2], [192, 0, 2, 2], 77, 8 << 8, 1, 5);
        assert_eq!(
            ev(EventKind::New, (z, z.reversed()), TimeoutAttr::IcmpFirst, false, 60_000)
                .conntrack_line(),
            "    [NEW] icmp     1 60 src=10.0.0.2 dst=192.0.2.2 type=8 code=0 id=77 [UNREPLIED] src=192.0.2.2 dst=10.0.0.2 type=0 code=0 id=77 zone=5"
        );
    }
}
