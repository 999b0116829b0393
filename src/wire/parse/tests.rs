//! Tests of [`super::parse_frame`] on frames built by scapy; the frame table here is
//! shared with the checksum tests (`frame_checksums`).

use super::*;
use proptest::prelude::*;

/// Decodes hex, ignoring whitespace; one string per header keeps frames readable.
pub(in crate::wire) fn frame(parts: &[&str]) -> Vec<u8> {
    let hex: Vec<u8> = parts
        .concat()
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&[a, b, c, d]);
    x
}

/// 2001:db8::`last`
fn v6(last: u8) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    x[15] = last;
    x
}

// All frames below were built with scapy 2.5 (checksums included) and are shown one
// header per string.

/// 802.1Q VLAN 100 PCP 3; IPv4 with a Router Alert option (IHL 6), 10.0.0.1 ->
/// 192.0.2.2, TTL 64, DF; TCP SYN 40000 -> 80, seq 1000, window 64240, options MSS 1460,
/// SACK-permitted, timestamps, NOP, window scale 7.
pub(in crate::wire) fn syn_vlan() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 8100",
        "6064 0800",
        "4600004000014000 4006d9af 0a000001 c0000202 94040000",
        "9c40 0050 000003e8 00000000 a002 faf0 b05a 0000",
        "020405b4 0402 080a0000303900000000 01 030307",
    ])
}

/// QinQ: 802.1ad VLAN 10, 802.1Q VLAN 20; IPv4 10.0.0.1 -> 192.0.2.53 TTL 61; UDP
/// 5000 -> 53, "hello".
pub(in crate::wire) fn qinq_udp() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 88a8",
        "000a 8100",
        "0014 0800",
        "4500002100020000 3d11b194 0a000001 c0000235",
        "1388 0035 000d dc0e",
        "68656c6c6f",
    ])
}

/// IPv6 2001:db8::1 -> ::2, hop limit 63; hop-by-hop (PadN); destination options
/// (PadN); UDP 546 -> 547, "abc".
pub(in crate::wire) fn v6_hbh_dst_udp() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 86dd",
        "60000000 001b 00 3f 20010db8000000000000000000000001 20010db8000000000000000000000002",
        "3c00 010400000000",
        "1100 010400000000",
        "0222 0223 000b dbbb",
        "616263",
    ])
}

/// IPv4 first fragment (MF, offset 0, id 7) of a UDP datagram 1111 -> 2222 whose UDP
/// length (1008) covers the whole datagram; 16 bytes of it here.
pub(in crate::wire) fn v4_first_frag() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 0800",
        "4500002c00072000 40118eb0 0a000001 c0000209",
        "0457 08ae 03f0 0000",
        "41414141414141414141414141414141",
    ])
}

/// IPv4 later fragment (offset 24 bytes, id 7, protocol UDP), 16 bytes of data.
fn v4_later_frag() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 0800",
        "4500002400070003 4011aeb5 0a000001 c0000209",
        "42424242424242424242424242424242",
    ])
}

/// IPv6 with a fragment header (offset 0, M, id 0x01020304) then a TCP SYN
/// 40001 -> 443, seq 5, window 1000.
fn v6_first_frag() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 86dd",
        "60000000 001c 2c 40 20010db8000000000000000000000001 20010db8000000000000000000000002",
        "06 00 0001 01020304",
        "9c41 01bb 00000005 00000000 5002 03e8 b284 0000",
    ])
}

/// IPv6 fragment header with offset 1448 (M clear, next header TCP), 12 data bytes.
fn v6_later_frag() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 86dd",
        "60000000 0014 2c 40 20010db8000000000000000000000001 20010db8000000000000000000000002",
        "06 00 05a8 01020304",
        "434343434343434343434343",
    ])
}

/// ICMP port unreachable 192.0.2.53 -> 10.0.0.1 quoting the whole UDP datagram
/// 10.0.0.1:5353 -> 192.0.2.53:53 "query" (33 bytes).
pub(in crate::wire) fn icmp_port_unreach_udp() -> Vec<u8> {
    frame(&[
        "020000000001 020000000002 0800",
        "4500003d000a0000 3c01b280 c0000235 0a000001",
        "03 03 c951 00000000",
        "4500002100090000 4011ae8d 0a000001 c0000235",
        "14e9 0035 000d ce97",
        "7175657279",
    ])
}

/// ICMP fragmentation needed (MTU 1400) 198.51.100.1 -> 10.0.0.1 quoting the IPv4
/// header (total length 1500) and the first 8 bytes of a TCP segment 40000 -> 80.
pub(in crate::wire) fn icmp_frag_needed_tcp() -> Vec<u8> {
    frame(&[
        "020000000001 020000000002 0800",
        "45000038000c0000 ff018783 c6336401 0a000001",
        "03 04 168d 0000 0578",
        "450005dc000b4000 3f066a0e 0a000001 c0000202",
        "9c40 0050 11223344",
    ])
}

/// ICMPv6 packet too big (MTU 1280) 2001:db8::ff -> ::1 quoting an IPv6 header
/// (payload length 1460) and a 20-byte TCP header 40002 -> 443.
pub(in crate::wire) fn icmp6_ptb_tcp() -> Vec<u8> {
    frame(&[
        "020000000001 020000000002 86dd",
        "60000000 0044 3a 40 20010db80000000000000000000000ff 20010db8000000000000000000000001",
        "02 00 3036 00000500",
        "60000000 05b4 06 3f 20010db8000000000000000000000001 20010db8000000000000000000000002",
        "9c42 01bb 0000004d 00000000 5010 2000 9615 0000",
    ])
}

pub(in crate::wire) fn echo_req_v4() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 0800",
        "45000020000d0000 4001aece 0a000001 c0000201",
        "08 00 d6eb 4242 0001",
        "70696e67",
    ])
}

fn echo_rep_v4() -> Vec<u8> {
    frame(&[
        "020000000001 020000000002 0800",
        "45000020000e0000 4001aecd c0000201 0a000001",
        "00 00 deeb 4242 0001",
        "70696e67",
    ])
}

pub(in crate::wire) fn echo_req_v6() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 86dd",
        "60000000 000c 3a 40 20010db8000000000000000000000001 20010db8000000000000000000000002",
        "80 00 022e 4343 0002",
        "70696e67",
    ])
}

fn echo_rep_v6() -> Vec<u8> {
    frame(&[
        "020000000001 020000000002 86dd",
        "60000000 000c 3a 40 20010db8000000000000000000000002 20010db8000000000000000000000001",
        "81 00 012e 4343 0002",
        "70696e67",
    ])
}

/// ICMP time exceeded quoting an ICMP echo request id 0x4242 seq 3.
pub(in crate::wire) fn time_exceeded_echo() -> Vec<u8> {
    frame(&[
        "020000000001 020000000002 0800",
        "4500003800100000 ff01877f c6336401 0a000001",
        "0b 00 f4ff 00000000",
        "4500001c000f0000 0101edd0 0a000001 c0000201",
        "08 00 b5ba 4242 0003",
    ])
}

/// A minimum-size (60-byte) frame: IPv4/UDP 1 -> 2 with one byte "x", then 14 bytes of
/// Ethernet padding.
pub(in crate::wire) fn padded() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 0800",
        "4500001d00110000 4011ae89 0a000001 c0000235",
        "0001 0002 0009 bba2",
        "78",
        "0000000000000000000000000000",
    ])
}

/// SCTP INIT 5000 → 7 over IPv4 (the chunk of `wire::sctp`'s scapy packet).
pub(in crate::wire) fn sctp_init_v4() -> Vec<u8> {
    frame(&[
        "020000000002 020000000001 0800",
        "4500003400120000 4084adfe 0a000001 c0000235",
        "13880007 00000000 75a7da5f",
        "01000014 11223344 00010000 000a000a 00000001",
    ])
}

/// Every valid frame of the table (used as seeds for the mutation test).
pub(in crate::wire) fn all_valid() -> Vec<Vec<u8>> {
    vec![
        syn_vlan(),
        qinq_udp(),
        v6_hbh_dst_udp(),
        v4_first_frag(),
        v4_later_frag(),
        v6_first_frag(),
        v6_later_frag(),
        icmp_port_unreach_udp(),
        icmp_frag_needed_tcp(),
        icmp6_ptb_tcp(),
        echo_req_v4(),
        echo_rep_v4(),
        echo_req_v6(),
        echo_rep_v6(),
        time_exceeded_echo(),
        padded(),
        sctp_init_v4(),
    ]
}

#[test]
fn tcp_syn_ipv4_options_one_vlan() {
    assert_eq!(
        parse_frame(&syn_vlan()),
        Ok(ParsedPacket {
            l3_offset: 18,
            l4_offset: 42,
            l4_len: 40,
            vlans: 1,
            family: Family::V4,
            src: v4(10, 0, 0, 1),
            dst: v4(192, 0, 2, 2),
            proto: proto::TCP,
            ttl: 64,
            fragment: Fragment::None,
            l4: L4Summary::Tcp(TcpSummary {
                sport: 40000,
                dport: 80,
                seq: 1000,
                ack: 0,
                flags: tcp_flags::SYN,
                window: 64240,
                wscale: Some(7),
                payload_len: 0,
            }),
        })
    );
}

fn tcp_of(f: &[u8]) -> TcpSummary {
    match parse_frame(f).unwrap().l4 {
        L4Summary::Tcp(t) => t,
        other => panic!("not TCP: {other:?}"),
    }
}

#[test]
fn tcp_window_scale_rules() {
    // Shift 15 is clamped to 14.
    let mut f = syn_vlan();
    f[81] = 15;
    assert_eq!(tcp_of(&f).wscale, Some(14));
    // Not looked for without SYN.
    let mut f = syn_vlan();
    f[55] = tcp_flags::ACK;
    assert_eq!(tcp_of(&f).wscale, None);
    assert_eq!(tcp_of(&f).flags, tcp_flags::ACK);
    // SYN+ACK carries it too.
    let mut f = syn_vlan();
    f[55] = tcp_flags::SYN | tcp_flags::ACK;
    assert_eq!(tcp_of(&f).wscale, Some(7));
    // Option replaced by NOPs: none.
    let mut f = syn_vlan();
    f[79..82].copy_from_slice(&[1, 1, 1]);
    assert_eq!(tcp_of(&f).wscale, None);
    // A malformed option before it (length 0) ends the scan, not the packet.
    let mut f = syn_vlan();
    f[63] = 0;
    assert_eq!(tcp_of(&f).wscale, None);
}

#[test]
fn tcp_payload_len() {
    // The SYN with 3 bytes of payload appended (IP total length + 3).
    let mut f = syn_vlan();
    f.extend_from_slice(b"abc");
    f[21] += 3;
    let t = tcp_of(&f);
    assert_eq!(t.payload_len, 3);
    assert_eq!(parse_frame(&f).unwrap().l4_len, 43);
}

#[test]
fn qinq() {
    assert_eq!(
        parse_frame(&qinq_udp()),
        Ok(ParsedPacket {
            l3_offset: 22,
            l4_offset: 42,
            l4_len: 13,
            vlans: 2,
            family: Family::V4,
            src: v4(10, 0, 0, 1),
            dst: v4(192, 0, 2, 53),
            proto: proto::UDP,
            ttl: 61,
            fragment: Fragment::None,
            l4: L4Summary::Udp {
                sport: 5000,
                dport: 53
            },
        })
    );
    // Old-style double 802.1Q tagging is unwrapped the same way.
    let mut f = qinq_udp();
    f[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(parse_frame(&f).map(|p| (p.vlans, p.l3_offset)), Ok((2, 22)));
}

#[test]
fn udp_v6_behind_hop_by_hop_and_dest_opts() {
    assert_eq!(
        parse_frame(&v6_hbh_dst_udp()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 70,
            l4_len: 11,
            vlans: 0,
            family: Family::V6,
            src: v6(1),
            dst: v6(2),
            proto: proto::UDP,
            ttl: 63,
            fragment: Fragment::None,
            l4: L4Summary::Udp {
                sport: 546,
                dport: 547
            },
        })
    );
}

#[test]
fn ipv4_first_fragment() {
    assert_eq!(
        parse_frame(&v4_first_frag()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 34,
            l4_len: 24,
            vlans: 0,
            family: Family::V4,
            src: v4(10, 0, 0, 1),
            dst: v4(192, 0, 2, 9),
            proto: proto::UDP,
            ttl: 64,
            fragment: Fragment::First,
            l4: L4Summary::Udp {
                sport: 1111,
                dport: 2222
            },
        })
    );
}

#[test]
fn ipv4_later_fragment() {
    assert_eq!(
        parse_frame(&v4_later_frag()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 34,
            l4_len: 16,
            vlans: 0,
            family: Family::V4,
            src: v4(10, 0, 0, 1),
            dst: v4(192, 0, 2, 9),
            proto: proto::UDP,
            ttl: 64,
            fragment: Fragment::Later,
            l4: L4Summary::Other,
        })
    );
    // A later fragment's bytes are not looked at: 3 bytes of "TCP" are fine.
    let mut f = v4_later_frag();
    f[23] = proto::TCP;
    f[17] = 23;
    f.truncate(37);
    assert_eq!(
        parse_frame(&f).map(|p| (p.proto, p.l4_len, p.l4)),
        Ok((proto::TCP, 3, L4Summary::Other))
    );
}

#[test]
fn ipv6_fragment_header() {
    assert_eq!(
        parse_frame(&v6_first_frag()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 62,
            l4_len: 20,
            vlans: 0,
            family: Family::V6,
            src: v6(1),
            dst: v6(2),
            proto: proto::TCP,
            ttl: 64,
            fragment: Fragment::First,
            l4: L4Summary::Tcp(TcpSummary {
                sport: 40001,
                dport: 443,
                seq: 5,
                ack: 0,
                flags: tcp_flags::SYN,
                window: 1000,
                wscale: None,
                payload_len: 0,
            }),
        })
    );
    assert_eq!(
        parse_frame(&v6_later_frag()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 62,
            l4_len: 12,
            vlans: 0,
            family: Family::V6,
            src: v6(1),
            dst: v6(2),
            proto: proto::TCP,
            ttl: 64,
            fragment: Fragment::Later,
            l4: L4Summary::Other,
        })
    );
    // Atomic fragment (offset 0, M clear): not a fragment (RFC 6946).
    let mut f = v6_first_frag();
    f[57] = 0;
    let p = parse_frame(&f).unwrap();
    assert_eq!(p.fragment, Fragment::None);
    assert_eq!(tcp_of(&f).sport, 40001);
}

#[test]
fn icmp_port_unreachable_embedding_udp() {
    assert_eq!(
        parse_frame(&icmp_port_unreach_udp()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 34,
            l4_len: 41,
            vlans: 0,
            family: Family::V4,
            src: v4(192, 0, 2, 53),
            dst: v4(10, 0, 0, 1),
            proto: proto::ICMP,
            ttl: 60,
            fragment: Fragment::None,
            l4: L4Summary::Icmp(IcmpSummary {
                icmp_type: 3,
                code: 3,
                id: 0,
                is_error: true,
                inner: Some(InnerPacket {
                    l3_offset: 42,
                    l4_offset: 62,
                    l4_len: 13,
                    family: Family::V4,
                    src: v4(10, 0, 0, 1),
                    dst: v4(192, 0, 2, 53),
                    proto: proto::UDP,
                    sport: 5353,
                    dport: 53,
                }),
            }),
        })
    );
}

#[test]
fn icmp_frag_needed_embedding_tcp() {
    assert_eq!(
        parse_frame(&icmp_frag_needed_tcp()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 34,
            l4_len: 36,
            vlans: 0,
            family: Family::V4,
            src: v4(198, 51, 100, 1),
            dst: v4(10, 0, 0, 1),
            proto: proto::ICMP,
            ttl: 255,
            fragment: Fragment::None,
            l4: L4Summary::Icmp(IcmpSummary {
                icmp_type: 3,
                code: 4,
                id: 0,
                is_error: true,
                inner: Some(InnerPacket {
                    l3_offset: 42,
                    l4_offset: 62,
                    l4_len: 8,
                    family: Family::V4,
                    src: v4(10, 0, 0, 1),
                    dst: v4(192, 0, 2, 2),
                    proto: proto::TCP,
                    sport: 40000,
                    dport: 80,
                }),
            }),
        })
    );
}

#[test]
fn icmpv6_packet_too_big_embedding_tcp() {
    assert_eq!(
        parse_frame(&icmp6_ptb_tcp()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 54,
            l4_len: 68,
            vlans: 0,
            family: Family::V6,
            src: v6(0xff),
            dst: v6(1),
            proto: proto::ICMPV6,
            ttl: 64,
            fragment: Fragment::None,
            l4: L4Summary::Icmp(IcmpSummary {
                icmp_type: 2,
                code: 0,
                id: 0,
                is_error: true,
                inner: Some(InnerPacket {
                    l3_offset: 62,
                    l4_offset: 102,
                    l4_len: 20,
                    family: Family::V6,
                    src: v6(1),
                    dst: v6(2),
                    proto: proto::TCP,
                    sport: 40002,
                    dport: 443,
                }),
            }),
        })
    );
}

fn icmp_of(f: &[u8]) -> IcmpSummary {
    match parse_frame(f).unwrap().l4 {
        L4Summary::Icmp(i) => i,
        other => panic!("not ICMP: {other:?}"),
    }
}

#[test]
fn echo_v4_and_v6() {
    let echo = |t, id| IcmpSummary {
        icmp_type: t,
        code: 0,
        id,
        is_error: false,
        inner: None,
    };
    assert_eq!(
        parse_frame(&echo_req_v4()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 34,
            l4_len: 12,
            vlans: 0,
            family: Family::V4,
            src: v4(10, 0, 0, 1),
            dst: v4(192, 0, 2, 1),
            proto: proto::ICMP,
            ttl: 64,
            fragment: Fragment::None,
            l4: L4Summary::Icmp(echo(8, 0x4242)),
        })
    );
    assert_eq!(icmp_of(&echo_rep_v4()), echo(0, 0x4242));
    assert_eq!(
        parse_frame(&echo_req_v6()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 54,
            l4_len: 12,
            vlans: 0,
            family: Family::V6,
            src: v6(1),
            dst: v6(2),
            proto: proto::ICMPV6,
            ttl: 64,
            fragment: Fragment::None,
            l4: L4Summary::Icmp(echo(128, 0x4343)),
        })
    );
    assert_eq!(icmp_of(&echo_rep_v6()), echo(129, 0x4343));
}

#[test]
fn icmp_identifier_by_type() {
    // Timestamp (13/14) and information (15/16) carry the identifier; others do not.
    for (t, id) in [
        (13, 0x4242),
        (14, 0x4242),
        (15, 0x4242),
        (16, 0x4242),
        (9, 0),
        (4, 0),
    ] {
        let mut f = echo_req_v4();
        f[34] = t;
        assert_eq!(icmp_of(&f).id, id, "type {t}");
    }
    // ICMPv6: only echo. (NDP 135 is not an error and has no identifier.)
    for (t, id, err) in [(128, 0x4343, false), (135, 0, false), (4, 0, true)] {
        let mut f = echo_req_v6();
        f[54] = t;
        let i = icmp_of(&f);
        assert_eq!((i.id, i.is_error), (id, err), "type {t}");
    }
}

#[test]
fn icmp_error_embedding_echo() {
    let i = icmp_of(&time_exceeded_echo());
    assert_eq!(
        i,
        IcmpSummary {
            icmp_type: 11,
            code: 0,
            id: 0,
            is_error: true,
            inner: Some(InnerPacket {
                l3_offset: 42,
                l4_offset: 62,
                l4_len: 8,
                family: Family::V4,
                src: v4(10, 0, 0, 1),
                dst: v4(192, 0, 2, 1),
                proto: proto::ICMP,
                sport: 0x4242,
                dport: 0x0800,
            }),
        }
    );
}

/// `base()` cut to `cut` bytes (if given), then with each `(offset, byte)` written.
fn edited(base: fn() -> Vec<u8>, cut: Option<usize>, edits: &[(usize, u8)]) -> Vec<u8> {
    let mut f = base();
    if let Some(n) = cut {
        f.truncate(n);
    }
    for &(at, b) in edits {
        f[at] = b;
    }
    f
}

#[test]
fn icmp_error_bad_inner_is_none() {
    let inner = |f: &[u8]| icmp_of(f).inner;
    // (what, the error, cut to, bytes written); [17] and [19] fix the outer lengths.
    #[allow(clippy::type_complexity)]
    let bad: [(&str, fn() -> Vec<u8>, Option<usize>, &[(usize, u8)]); 9] = [
        (
            "quote shorter than an IPv4 header",
            icmp_frag_needed_tcp,
            Some(61),
            &[(17, 47)],
        ),
        (
            "fewer than 8 bytes of the L4 header",
            icmp_frag_needed_tcp,
            Some(69),
            &[(17, 55)],
        ),
        (
            "the embedded packet's own length leaves < 8 L4 bytes",
            icmp_port_unreach_udp,
            None,
            &[(45, 27)],
        ),
        ("wrong version", icmp_frag_needed_tcp, None, &[(42, 0x65)]),
        ("IHL < 5", icmp_frag_needed_tcp, None, &[(42, 0x44)]),
        (
            "IHL beyond the quote",
            icmp_frag_needed_tcp,
            None,
            &[(42, 0x47)],
        ),
        (
            "embedded later fragment: no L4 header",
            icmp_frag_needed_tcp,
            None,
            &[(49, 0x10)],
        ),
        (
            "IPv6 quoting an IPv4 header",
            icmp6_ptb_tcp,
            None,
            &[(62, 0x45)],
        ),
        // Next header: destination options, whose length byte (0x01) says 16.
        (
            "IPv6 with a cut extension header",
            icmp6_ptb_tcp,
            Some(108),
            &[(68, 60), (103, 0x01), (19, 54)],
        ),
    ];
    for (what, base, cut, edits) in bad {
        let f = edited(base, cut, edits);
        assert_eq!(inner(&f), None, "{what}");
        // An embedded error that is itself fine outside: the outer packet still parses.
        assert!(parse_frame(&f).is_ok(), "{what}");
    }
    // Embedded first fragment: parsed.
    let f = edited(icmp_frag_needed_tcp, None, &[(48, 0x20)]);
    assert_eq!(inner(&f).map(|i| i.sport), Some(40000));
}

#[test]
fn icmpv6_inner_behind_extension_header() {
    // Quote: IPv6 (next header destination options) + 8-byte options + 8 bytes of UDP.
    let mut f = icmp6_ptb_tcp();
    f.truncate(102);
    f[68] = 60; // destination options
    f[66..68].copy_from_slice(&[0x00, 0x10]); // payload length 16
    f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
    f[19] = 64; // outer payload length: 8 + 40 + 16
    assert_eq!(
        icmp_of(&f).inner,
        Some(InnerPacket {
            l3_offset: 62,
            l4_offset: 110,
            l4_len: 8,
            family: Family::V6,
            src: v6(1),
            dst: v6(2),
            proto: proto::UDP,
            sport: 5000,
            dport: 53,
        })
    );
}

#[test]
fn trailing_padding_ignored() {
    assert_eq!(
        parse_frame(&padded()),
        Ok(ParsedPacket {
            l3_offset: 14,
            l4_offset: 34,
            l4_len: 9,
            vlans: 0,
            family: Family::V4,
            src: v4(10, 0, 0, 1),
            dst: v4(192, 0, 2, 53),
            proto: proto::UDP,
            ttl: 64,
            fragment: Fragment::None,
            l4: L4Summary::Udp { sport: 1, dport: 2 },
        })
    );
    // IPv6 padding too.
    let mut f = echo_req_v6();
    f.extend_from_slice(&[0; 10]);
    assert_eq!(parse_frame(&f).map(|p| p.l4_len), Ok(12));
}

#[test]
fn sctp_has_ports_and_its_chunks_are_checked() {
    let f = sctp_init_v4();
    let p = parse_frame(&f).unwrap();
    assert_eq!(
        (p.proto, p.l4_offset, p.l4_len, p.l4),
        (
            proto::SCTP,
            34,
            32,
            L4Summary::Sctp {
                sport: 5000,
                dport: 7
            }
        )
    );
    // Common header cut (IP total length 20 + 11).
    let mut cut = f.clone();
    cut[17] = 31;
    assert_eq!(parse_frame(&cut), Err(ParseError::BadSctpHeader));
    // No chunk at all.
    let mut bare = f[..46].to_vec();
    bare[17] = 32;
    assert_eq!(parse_frame(&bare), Err(ParseError::BadSctpHeader));
    // A chunk length beyond the packet, or below the chunk header.
    for len in [0x15, 0x03] {
        let mut bad = f.clone();
        bad[49] = len;
        assert_eq!(parse_frame(&bad), Err(ParseError::BadSctpHeader), "{len}");
    }
    // A first fragment is not chunk-checked: its chunks continue in later fragments.
    let mut first = f.clone();
    first[49] = 0x40;
    first[20] = 0x20; // MF
    assert_eq!(
        parse_frame(&first).map(|p| (p.fragment, p.l4)),
        Ok((
            Fragment::First,
            L4Summary::Sctp {
                sport: 5000,
                dport: 7
            }
        ))
    );
    // Quoted in an ICMP error: its ports are the embedded tuple's.
    let mut err = frame(&[
        "020000000001 020000000002 0800",
        "4500005000130000 40010000 c0000235 0a000001",
        "03030000 00000000",
    ]);
    err.extend_from_slice(&f[14..]);
    let p = parse_frame(&err).unwrap();
    let L4Summary::Icmp(i) = p.l4 else {
        panic!("{:?}", p.l4)
    };
    let inner = i.inner.unwrap();
    assert_eq!(
        (inner.proto, inner.sport, inner.dport, inner.l4_len),
        (proto::SCTP, 5000, 7, 32)
    );
}

#[test]
fn other_protocols() {
    // GRE over IPv4: no ports.
    let mut f = padded();
    f[23] = 47;
    let p = parse_frame(&f).unwrap();
    assert_eq!((p.proto, p.l4), (47, L4Summary::Other));
    // ICMPv4's number over IPv6 and ICMPv6's over IPv4 are not ICMP.
    let mut f = echo_req_v6();
    f[20] = proto::ICMP;
    assert_eq!(parse_frame(&f).map(|p| p.l4), Ok(L4Summary::Other));
    let mut f = echo_req_v4();
    f[23] = proto::ICMPV6;
    assert_eq!(parse_frame(&f).map(|p| p.l4), Ok(L4Summary::Other));
    // IPv6 with no next header.
    let mut f = echo_req_v6();
    f[20] = 59;
    assert_eq!(
        parse_frame(&f).map(|p| (p.proto, p.l4_offset, p.l4)),
        Ok((59, 54, L4Summary::Other))
    );
}

/// Each malformed case and its exact error.
#[test]
fn malformed_frames() {
    use ParseError::*;
    let cases: Vec<(&str, Vec<u8>, ParseError)> = vec![
        (
            "13-byte frame",
            syn_vlan()[..13].to_vec(),
            TruncatedEthernet,
        ),
        ("empty frame", vec![], TruncatedEthernet),
        ("VLAN tag cut", syn_vlan()[..17].to_vec(), TruncatedEthernet),
        (
            "inner QinQ tag cut",
            qinq_udp()[..21].to_vec(),
            TruncatedEthernet,
        ),
        (
            "ARP",
            {
                let mut f = padded();
                f[12..14].copy_from_slice(&[0x08, 0x06]);
                f
            },
            NotIp,
        ),
        (
            "LLDP",
            {
                let mut f = padded();
                f[12..14].copy_from_slice(&[0x88, 0xcc]);
                f
            },
            NotIp,
        ),
        (
            "third VLAN tag",
            {
                let mut f = qinq_udp();
                f[20..22].copy_from_slice(&[0x81, 0x00]);
                f
            },
            NotIp,
        ),
        (
            "untagged, nothing after",
            padded()[..14].to_vec(),
            BadIpv4Header,
        ),
        ("IPv4 header cut", padded()[..33].to_vec(), BadIpv4Header),
        (
            "IPv4 version 6",
            {
                let mut f = padded();
                f[14] = 0x65;
                f
            },
            BadIpv4Header,
        ),
        (
            "IHL 4",
            {
                let mut f = padded();
                f[14] = 0x44;
                f
            },
            BadIpv4Header,
        ),
        (
            "IHL beyond total length",
            {
                let mut f = padded();
                f[14] = 0x48; // 32-byte header, total length 29
                f
            },
            BadIpv4Header,
        ),
        (
            "total length beyond frame",
            {
                let mut f = padded();
                f[16..18].copy_from_slice(&[0x00, 0x2f]); // 47 > 46
                f
            },
            BadIpv4Header,
        ),
        (
            "total length below 20",
            {
                let mut f = padded();
                f[17] = 19;
                f
            },
            BadIpv4Header,
        ),
        (
            "IPv6 header cut",
            echo_req_v6()[..53].to_vec(),
            BadIpv6Header,
        ),
        (
            "IPv6 version 4",
            {
                let mut f = echo_req_v6();
                f[14] = 0x40;
                f
            },
            BadIpv6Header,
        ),
        (
            "IPv6 payload beyond frame",
            {
                let mut f = echo_req_v6();
                f[19] = 13;
                f
            },
            BadIpv6Header,
        ),
        (
            "extension header cut",
            {
                let mut f = v6_hbh_dst_udp();
                f[18..20].copy_from_slice(&[0, 12]); // payload: HBH + 4 bytes of dest opts
                f.truncate(66);
                f
            },
            BadIpv6Header,
        ),
        (
            "extension header length beyond payload",
            {
                let mut f = v6_hbh_dst_udp();
                f[63] = 3; // dest opts of 32 bytes in a 27-byte payload
                f
            },
            BadIpv6Header,
        ),
        (
            "TCP header cut",
            {
                let mut f = syn_vlan();
                f[21] = 43; // IP total 43: 19 bytes of TCP
                f.truncate(61);
                f
            },
            BadTcpHeader,
        ),
        (
            "TCP data offset 4",
            {
                let mut f = syn_vlan();
                f[54] = 0x42;
                f
            },
            BadTcpHeader,
        ),
        (
            "TCP data offset beyond payload",
            {
                let mut f = syn_vlan();
                f[54] = 0xb2; // 44 > 40
                f
            },
            BadTcpHeader,
        ),
        (
            "TCP data offset beyond payload (padding ignored)",
            {
                let mut f = syn_vlan();
                f[54] = 0xb2;
                f.extend_from_slice(&[0; 8]);
                f
            },
            BadTcpHeader,
        ),
        (
            "UDP header cut",
            {
                let mut f = padded();
                f[17] = 27;
                f
            },
            BadUdpHeader,
        ),
        (
            "UDP length 7",
            {
                let mut f = padded();
                f[39] = 7;
                f
            },
            BadUdpHeader,
        ),
        (
            "UDP length beyond IP payload",
            {
                let mut f = padded();
                f[39] = 10;
                f
            },
            BadUdpHeader,
        ),
        (
            "UDP length below 8 in a first fragment",
            {
                let mut f = v4_first_frag();
                f[38..40].copy_from_slice(&[0, 4]);
                f
            },
            BadUdpHeader,
        ),
        (
            "UDP over IPv6 header cut",
            {
                let mut f = v6_hbh_dst_udp();
                f[19] = 23; // 16 bytes of options + 7 of UDP
                f.truncate(77);
                f
            },
            BadUdpHeader,
        ),
        (
            "ICMP header cut",
            {
                let mut f = echo_req_v4();
                f[17] = 27;
                f
            },
            BadIcmpHeader,
        ),
        (
            "ICMPv6 header cut",
            {
                let mut f = echo_req_v6();
                f[19] = 7;
                f
            },
            BadIcmpHeader,
        ),
    ];
    for (name, f, err) in cases {
        assert_eq!(parse_frame(&f), Err(err), "{name}");
    }
}

/// The offsets of a parse result stay inside the frame: NAT writes at them.
fn check_invariants(f: &[u8], p: &ParsedPacket) {
    let l4_end = usize::from(p.l4_offset) + usize::from(p.l4_len);
    assert!(p.l3_offset < p.l4_offset);
    assert!(l4_end <= f.len());
    assert_eq!(usize::from(p.l3_offset), 14 + 4 * usize::from(p.vlans));
    match p.l4 {
        L4Summary::Tcp(t) => assert!(usize::from(p.l4_len) >= 20 + usize::from(t.payload_len)),
        L4Summary::Udp { .. } => assert!(p.l4_len >= 8),
        L4Summary::Sctp { .. } => assert!(p.l4_len >= 12),
        L4Summary::Icmp(i) => {
            assert!(p.l4_len >= 8);
            if let Some(inner) = i.inner {
                assert_eq!(inner.family, p.family);
                assert_eq!(inner.l3_offset, p.l4_offset + 8);
                assert!(inner.l4_offset > inner.l3_offset);
                assert!(inner.l4_len >= 8);
                assert!(usize::from(inner.l4_offset) + usize::from(inner.l4_len) <= l4_end);
            }
        }
        L4Summary::Other => {}
    }
    if p.family == Family::V4 {
        assert_eq!(p.src[4..], [0; 12]);
        assert_eq!(p.dst[4..], [0; 12]);
    }
}

#[test]
fn table_invariants_and_truncation() {
    for f in all_valid() {
        let p = parse_frame(&f).unwrap();
        check_invariants(&f, &p);
        // Every cut of a valid frame either fails or (only when just padding or
        // unparsed data goes) still satisfies the invariants.
        for n in 0..f.len() {
            if let Ok(q) = parse_frame(&f[..n]) {
                check_invariants(&f[..n], &q);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Random bytes never panic; a success always has in-frame offsets.
    #[test]
    fn random_bytes_never_panic(f in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = parse_frame(&f) {
            check_invariants(&f, &p);
        }
    }

    /// Random bytes behind a valid Ethernet + IPv4/IPv6 prefix, to get past the first
    /// checks more often.
    #[test]
    fn random_ip_payload_never_panics(
        v6 in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut f = frame(&["020000000002 020000000001"]);
        f.extend_from_slice(if v6 { &[0x86, 0xdd, 0x60] } else { &[0x08, 0x00, 0x45] });
        f.extend_from_slice(&tail);
        if let Ok(p) = parse_frame(&f) {
            check_invariants(&f, &p);
        }
    }

    /// Valid frames, cut and with bits flipped, never panic.
    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..16,
        flips in proptest::collection::vec((any::<usize>(), 0u8..8), 0..6),
        cut in any::<usize>(),
    ) {
        let mut f = all_valid().swap_remove(which);
        for (at, bit) in flips {
            let n = f.len();
            f[at % n] ^= 1 << bit;
        }
        let n = f.len();
        f.truncate(cut % (n + 1));
        if let Ok(p) = parse_frame(&f) {
            check_invariants(&f, &p);
        }
    }
}

/// An untagged IPv4 frame for the plain path's tests: IHL 5, the flags/fragment word
/// `frag`, total length `20 + l4.len()` plus `len_delta`, then `pad` bytes of padding.
fn plain_v4(proto: u8, frag: u16, len_delta: i32, l4: &[u8], pad: usize) -> Vec<u8> {
    let mut f = frame(&["020000000002 020000000001 0800"]);
    let total = (20 + l4.len() as i32 + len_delta) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 7]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 192, 0, 2, 9]);
    f.extend_from_slice(l4);
    f.resize(f.len() + pad, 0);
    f
}

/// A TCP header (data offset `doff` words, flags `flags`; options of NOPs and a window
/// scale 7 fill what the offset asks for) and `payload` bytes.
fn tcp_seg(doff: u8, flags: u8, payload: usize) -> Vec<u8> {
    let mut t = frame(&["9c40 0050 000003e8 000007d0"]);
    t.extend_from_slice(&[doff << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    let opts = (usize::from(doff) * 4).saturating_sub(20);
    let mut o = vec![1u8; opts];
    if opts >= 3 {
        o[opts - 3..].copy_from_slice(&[3, 3, 7]);
    }
    t.extend_from_slice(&o);
    t.resize(t.len() + payload, 0x41);
    t
}

/// A UDP header whose length field is its true length plus `len_delta`, and `payload`.
fn udp_dgram(len_delta: i32, payload: usize) -> Vec<u8> {
    let len = (8 + payload as i32 + len_delta) as u16;
    let mut u = frame(&["1388 0035"]);
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(u.len() + payload, 0x42);
    u
}

/// The general parser's answer and what it left in a buffer that held `EMPTY`.
fn general(f: &[u8]) -> (Result<(), ParseError>, ParsedPacket) {
    let mut p = ParsedPacket::EMPTY;
    (parse_frame_general(f, &mut p), p)
}

/// The common frames (UDP, TCP without a SYN's options: ACKs with timestamps, SYNs
/// without options) take the inlined path, with the general parser's result; the others
/// (a SYN with options, whose window scale is read; VLAN tags; IPv4 options; fragments;
/// other protocols; short frames) do not.
#[test]
fn the_plain_ipv4_path_takes_the_common_frames() {
    let common = [
        plain_v4(proto::UDP, 0, 0, &udp_dgram(0, 18), 0),
        plain_v4(proto::UDP, ipv4::frag::DF, 0, &udp_dgram(0, 100), 0),
        plain_v4(proto::UDP, 0, 0, &udp_dgram(0, 1), 18),
        plain_v4(
            proto::TCP,
            ipv4::frag::DF,
            0,
            &tcp_seg(8, tcp_flags::ACK, 0),
            0,
        ),
        plain_v4(proto::TCP, 0, 0, &tcp_seg(5, tcp_flags::SYN, 6), 0),
        plain_v4(
            proto::TCP,
            0,
            0,
            &tcp_seg(5, tcp_flags::ACK | tcp_flags::PSH, 900),
            0,
        ),
        padded(),
    ];
    for f in &common {
        let mut p = ParsedPacket::EMPTY;
        assert!(parse_plain_ipv4(f, &mut p), "{f:02x?}");
        assert_eq!((Ok(()), p), general(f));
        assert_eq!(parse_frame(f), Ok(p));
    }
    let mut vlan = plain_v4(proto::UDP, 0, 0, &udp_dgram(0, 30), 0);
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    let others = [
        plain_v4(proto::TCP, 0, 0, &tcp_seg(8, tcp_flags::SYN, 0), 0),
        vlan,
        syn_vlan(),
        v4_first_frag(),
        v4_later_frag(),
        plain_v4(proto::UDP, ipv4::frag::MF, 0, &udp_dgram(0, 30), 0),
        plain_v4(proto::SCTP, 0, 0, &udp_dgram(0, 30), 0),
        echo_req_v4(),
        plain_v4(proto::UDP, 0, 0, &udp_dgram(1, 30), 0),
        plain_v4(proto::UDP, 0, 1, &udp_dgram(0, 30), 0),
    ];
    for f in &others {
        let mut p = ParsedPacket::EMPTY;
        assert!(!parse_plain_ipv4(f, &mut p), "{f:02x?}");
        assert_eq!(p, ParsedPacket::EMPTY, "{f:02x?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    /// Whatever the frame (near-plain IPv4 frames with their lengths, offsets, flags and
    /// fragment bits varied, cut or bit-flipped), the inlined path's answer is the general
    /// parser's, and an error leaves the buffer as it was.
    #[test]
    fn the_plain_ipv4_path_answers_as_the_general_parser(
        tcp in any::<bool>(),
        proto_other in prop::sample::select(vec![0u8, proto::ICMP, proto::SCTP, 41]),
        other in prop::bool::weighted(0.1),
        frag in prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001, 0x6001, 0x8000]),
        len_delta in -24i32..6,
        l4_delta in -10i32..4,
        doff in prop::sample::select(vec![5u8, 5, 8, 0, 4, 6, 15]),
        flags in any::<u8>(),
        payload in 0usize..40,
        pad in 0usize..8,
        flips in proptest::collection::vec((0usize..80, 0u8..8), 0..3),
        cut in proptest::option::weighted(0.2, 0usize..90),
    ) {
        let (proto, l4) = match (other, tcp) {
            (true, _) => (proto_other, udp_dgram(0, payload)),
            (false, true) => (proto::TCP, tcp_seg(doff, flags, payload)),
            (false, false) => (proto::UDP, udp_dgram(l4_delta, payload)),
        };
        let mut f = plain_v4(proto, frag, len_delta, &l4, pad);
        for (at, bit) in flips {
            let n = f.len();
            f[at % n] ^= 1 << bit;
        }
        if let Some(c) = cut {
            f.truncate(c);
        }
        let mut p = ParsedPacket::EMPTY;
        let r = parse_frame_into(&f, &mut p);
        prop_assert_eq!((r, p), general(&f));
    }
}
