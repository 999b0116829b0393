//! [`ParsedPacket`] summaries for tracker tests: each is a frame built by the shared
//! test-frame builder ([`crate::wire::testframe`]) and parsed by the real parser, so the
//! tracker sees exactly what the datapath would give it for those bytes.
//!
//! Test support only: the functions panic on what a test would never pass (an address
//! that does not parse, a frame the parser refuses).
#![allow(clippy::panic)]

use crate::wire::parse::{parse_frame, L4Summary, ParsedPacket};
use crate::wire::testframe::{Frame, L4};
use std::net::IpAddr;

fn ip(a: &str) -> IpAddr {
    a.parse()
        .unwrap_or_else(|_| panic!("testpkt: {a:?} is not an address"))
}

fn frame(src: &str, dst: &str, l4: L4) -> Frame {
    Frame::ip(ip(src), ip(dst), l4)
}

fn parsed(f: &Frame) -> ParsedPacket {
    parse_frame(&f.build()).unwrap_or_else(|e| panic!("testpkt: {f:?} does not parse: {e:?}"))
}

/// A TCP segment summary (`len` payload bytes).
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
    let payload = vec![0u8; usize::from(len)];
    let l4 = L4::tcp(sport, dport, seq, ack, flags, &payload).window(win);
    parsed(&frame(src, dst, l4))
}

/// A UDP datagram summary.
pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> ParsedPacket {
    parsed(&frame(src, dst, L4::udp(sport, dport, b"")))
}

/// An ICMP (v4 or v6, by address family) query summary.
pub fn icmp_query(src: &str, dst: &str, ty: u8, id: u16) -> ParsedPacket {
    parsed(&frame(src, dst, L4::echo(ty, id, 0, b"")))
}

/// The frame a summary was made from (addresses, protocol, ports or type/identifier).
fn rebuild(p: &ParsedPacket) -> Frame {
    let l4 = match p.l4 {
        L4Summary::Tcp(t) => L4::tcp(t.sport, t.dport, t.seq, t.ack, t.flags, b"").window(t.window),
        L4Summary::Udp { sport, dport } => L4::udp(sport, dport, b""),
        L4Summary::Sctp { sport, dport } => L4::sctp(sport, dport, 1, &SCTP_DATA),
        L4Summary::Icmp(i) => L4::icmp(i.icmp_type, i.code, u32::from(i.id) << 16, b""),
        L4Summary::Other => L4::raw(p.proto, &[0; 8]),
    };
    match p.family {
        crate::wire::Family::V4 => {
            let a = |x: &[u8; 16]| [x[0], x[1], x[2], x[3]];
            Frame::v4(a(&p.src), a(&p.dst), l4)
        }
        crate::wire::Family::V6 => Frame::v6(p.src, p.dst, l4),
    }
}

/// An ICMP error from `src` to `dst` quoting the IP header and 8 L4 bytes of `inner`
/// (a TCP/UDP/ICMP summary, as made here).
pub fn icmp_error(src: &str, dst: &str, ty: u8, code: u8, inner: &ParsedPacket) -> ParsedPacket {
    let quoted = rebuild(inner).build_ip();
    let hl = usize::from(inner.l4_offset - inner.l3_offset);
    let quote = quoted.get(..hl + 8).unwrap_or(&quoted);
    parsed(&frame(src, dst, L4::icmp(ty, code, 0, quote)))
}

/// One SCTP DATA chunk (flags B|E, TSN 1, stream 0, sequence 0, PPID 0, no user data):
/// the parser wants at least one well-formed chunk.
const SCTP_DATA: [u8; 16] = [0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];

/// An SCTP packet summary (one DATA chunk).
pub fn sctp(src: &str, dst: &str, sport: u16, dport: u16) -> ParsedPacket {
    parsed(&frame(src, dst, L4::sctp(sport, dport, 1, &SCTP_DATA)))
}

/// A packet of another protocol (no ports).
pub fn other(src: &str, dst: &str, p: u8) -> ParsedPacket {
    parsed(&frame(src, dst, L4::raw(p, &[0; 8])))
}
