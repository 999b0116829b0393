//! Builders of [`ParsedPacket`] summaries for tracker tests and benchmarks (no bytes:
//! the tracker reads only the summary). Byte-level tests go through `wire::parse`.

use crate::wire::parse::{
    proto, Family, Fragment, IcmpSummary, InnerPacket, L4Summary, ParsedPacket, TcpSummary,
};
use std::net::IpAddr;

fn addr(ip: &str) -> ([u8; 16], Family) {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, Family::V4)
        }
        Ok(IpAddr::V6(a)) => (a.octets(), Family::V6),
        Err(_) => ([0; 16], Family::V4),
    }
}

fn base(src: &str, dst: &str, p: u8, l4: L4Summary) -> ParsedPacket {
    let (s, fam) = addr(src);
    let (d, _) = addr(dst);
    ParsedPacket {
        l3_offset: 14,
        l4_offset: if fam == Family::V4 { 34 } else { 54 },
        l4_len: 20,
        vlans: 0,
        family: fam,
        src: s,
        dst: d,
        proto: p,
        ttl: 64,
        fragment: Fragment::None,
        l4,
    }
}

/// A TCP segment summary.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    len: u16,
) -> ParsedPacket {
    base(
        src,
        dst,
        proto::TCP,
        L4Summary::Tcp(TcpSummary {
            sport,
            dport,
            seq,
            ack,
            flags,
            window: win,
            wscale: None,
            payload_len: len,
        }),
    )
}

/// A UDP datagram summary.
pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> ParsedPacket {
    base(src, dst, proto::UDP, L4Summary::Udp { sport, dport })
}

/// An ICMP (v4 or v6, by address family) query summary.
pub fn icmp_query(src: &str, dst: &str, ty: u8, id: u16) -> ParsedPacket {
    let (_, fam) = addr(src);
    let p = if fam == Family::V4 {
        proto::ICMP
    } else {
        proto::ICMPV6
    };
    base(
        src,
        dst,
        p,
        L4Summary::Icmp(IcmpSummary {
            icmp_type: ty,
            code: 0,
            id,
            is_error: false,
            inner: None,
        }),
    )
}

/// An ICMP error from `src` to `dst` carrying the header of `inner` (which must be a
/// TCP/UDP/ICMP summary).
pub fn icmp_error(src: &str, dst: &str, ty: u8, code: u8, inner: &ParsedPacket) -> ParsedPacket {
    let (_, fam) = addr(src);
    let p = if fam == Family::V4 {
        proto::ICMP
    } else {
        proto::ICMPV6
    };
    let (sport, dport) = match inner.l4 {
        L4Summary::Tcp(t) => (t.sport, t.dport),
        L4Summary::Udp { sport, dport } | L4Summary::Sctp { sport, dport } => (sport, dport),
        L4Summary::Icmp(i) => (i.id, (i.icmp_type as u16) << 8 | i.code as u16),
        L4Summary::Other => (0, 0),
    };
    base(
        src,
        dst,
        p,
        L4Summary::Icmp(IcmpSummary {
            icmp_type: ty,
            code,
            id: 0,
            is_error: true,
            inner: Some(InnerPacket {
                l3_offset: 42,
                l4_offset: 62,
                l4_len: 8,
                family: inner.family,
                src: inner.src,
                dst: inner.dst,
                proto: inner.proto,
                sport,
                dport,
            }),
        }),
    )
}

/// An SCTP packet.
pub fn sctp(src: &str, dst: &str, sport: u16, dport: u16) -> ParsedPacket {
    base(src, dst, proto::SCTP, L4Summary::Sctp { sport, dport })
}

/// A packet of another protocol (no ports).
pub fn other(src: &str, dst: &str, p: u8) -> ParsedPacket {
    base(src, dst, p, L4Summary::Other)
}
