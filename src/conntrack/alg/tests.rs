//! Parser and rewriter tests: the messages OVS's ALG tests send, hostile input
//! (proptest), payloads past 256 bytes.

use super::ftp::{self, FtpKind, FtpMessage, FtpParse, RewriteError};
use super::seq;
use super::splice::Span;
use super::tftp::{self, TftpOp};
use crate::wire::checksum;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn msg(p: &[u8], v6: bool) -> FtpMessage {
    match ftp::parse(p, v6) {
        FtpParse::Message(m) => m,
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(p)),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn port_command_gives_address_span_and_port() {
    let p = b"PORT 10,1,1,1,4,1\r\n";
    let m = msg(p, false);
    assert_eq!(m.kind, FtpKind::Port);
    assert_eq!(m.addr, Some(v4(10, 1, 1, 1)));
    assert_eq!(m.port, 4 * 256 + 1);
    let s = m.addr_span.unwrap();
    assert_eq!(&p[s.start..s.end], b"10,1,1,1");
}

#[test]
fn pasv_reply_gives_server_address_and_port() {
    let p = b"227 Entering Passive Mode (10,1,1,2,195,80).\r\n";
    let m = msg(p, false);
    assert_eq!(m.kind, FtpKind::Pasv);
    assert_eq!(m.addr, Some(v4(10, 1, 1, 2)));
    assert_eq!(m.port, 195 * 256 + 80);
    let s = m.addr_span.unwrap();
    assert_eq!(&p[s.start..s.end], b"10,1,1,2");
}

#[test]
fn eprt_v4_and_epsv_v4_parse() {
    let p = b"EPRT |1|192.168.0.7|6275|\r\n";
    let m = msg(p, false);
    assert_eq!(
        (m.kind, m.addr, m.port),
        (FtpKind::Eprt, Some(v4(192, 168, 0, 7)), 6275)
    );
    let s = m.addr_span.unwrap();
    assert_eq!(&p[s.start..s.end], b"192.168.0.7");
    let m = msg(b"229 Entering Extended Passive Mode (|||6446|)\r\n", false);
    assert_eq!(
        (m.kind, m.addr, m.addr_span, m.port),
        (FtpKind::Epsv, None, None, 6446)
    );
}

#[test]
fn eprt_v6_and_epsv_v6_parse() {
    let p = b"EPRT |2|fc00::1|47419|\r\n";
    let m = msg(p, true);
    assert_eq!(
        m.addr,
        Some(IpAddr::V6("fc00::1".parse::<Ipv6Addr>().unwrap()))
    );
    assert_eq!(m.port, 47419);
    let s = m.addr_span.unwrap();
    assert_eq!(&p[s.start..s.end], b"fc00::1");
    let m = msg(b"229 Entering Extended Passive Mode (|||50000|)\r\n", true);
    assert_eq!((m.kind, m.port), (FtpKind::Epsv, 50000));
}

#[test]
fn commands_match_case_insensitively_and_others_are_not_of_interest() {
    assert!(matches!(
        ftp::parse(b"port 10,1,1,1,0,21\r\n", false),
        FtpParse::Message(_)
    ));
    for p in [
        &b"USER anonymous\r\n"[..],
        b"220 hello\r\n",
        b"",
        b"P",
        b"PORT",
    ] {
        assert_ne!(ftp::parse(p, false), FtpParse::Invalid, "{p:?}");
        assert!(!matches!(ftp::parse(p, false), FtpParse::Message(_)));
    }
    // IPv6 connections only look at EPRT and EXTENDED PASSIVE, as OVS.
    assert_eq!(ftp::parse(b"PORT 10,1,1,1,4,1\r\n", true), FtpParse::Other);
    assert_eq!(ftp::parse(b"227 (10,1,1,2,4,1)\r\n", true), FtpParse::Other);
}

#[test]
fn malformed_announcements_are_invalid() {
    for p in [
        &b"PORT 10,1,1,1,4\r\n"[..],
        b"PORT 10,1,1,256,4,1\r\n",
        b"PORT 10,1,1,01,4,1\r\n",
        b"PORT 10,1,1,1,256,1\r\n",
        b"PORT 10,1,1,1,4,300\r\n",
        b"PORT 10,1,1,1\r\n",
        b"PORTX\r\n",
        b"EPRT |2|10.1.1.1|5|\r\n",
        b"EPRT |1|10.1.1.1|70000|\r\n",
        b"EPRT |1|10.1.1.1||\r\n",
        b"227 Entering Passive Mode\r\n",
    ] {
        assert_eq!(
            ftp::parse(p, false),
            FtpParse::Invalid,
            "{:?}",
            String::from_utf8_lossy(p)
        );
    }
    for p in [
        &b"EPRT |1|10.1.1.1|5|\r\n"[..],
        b"EPRT |2|fc00::zz|5|\r\n",
        b"EXTENDED PASSIVE ()\r\n",
    ] {
        assert_eq!(
            ftp::parse(p, true),
            FtpParse::Invalid,
            "{:?}",
            String::from_utf8_lossy(p)
        );
    }
}

/// OVS looks at the first 127 bytes only, and at one byte less than a shorter payload.
#[test]
fn only_the_first_127_bytes_are_examined() {
    // The last byte of a short payload is not seen: the low port byte is lost.
    assert_eq!(ftp::parse(b"PORT 10,1,1,1,4,1", false), FtpParse::Invalid);
    let mut p = b"227 Entering Passive Mode ".to_vec();
    p.resize(125, b' ');
    p.extend_from_slice(b"(10,1,1,2,4,1)\r\n");
    assert_eq!(ftp::parse(&p, false), FtpParse::Invalid);
}

/// `ftp-alg-large-payload` (OVS 7c31be6d6): a PORT command at the start of a payload of
/// 300 bytes, rewritten to a longer address, keeps all later bytes.
#[test]
fn rewrite_in_a_payload_of_300_bytes_moves_the_whole_tail() {
    let mut p = b"PORT 1,1,1,1,4,1\r\n".to_vec();
    while p.len() < 300 {
        p.push(b'a' + (p.len() % 26) as u8);
    }
    let orig = p.clone();
    let m = msg(&p, false);
    p.resize(400, 0);
    let csum = !checksum::data(&orig);
    let r = ftp::rewrite_addr(&mut p, 300, &m, v4(192, 168, 100, 200), csum).unwrap();
    assert_eq!(r.delta, 8);
    assert_eq!(r.len, 308);
    let mut want = b"PORT 192,168,100,200".to_vec();
    want.extend_from_slice(&orig[12..]);
    assert_eq!(&p[..308], &want[..]);
    assert_eq!(r.csum, !checksum::data(&p[..308]));
    assert!(p[308..].iter().all(|&b| b == 0));
}

/// A payload past 256 bytes that is not an announcement is reported as such.
#[test]
fn large_payload_that_is_not_an_announcement_is_other() {
    let p = vec![b'x'; 1400];
    assert_eq!(ftp::parse(&p, false), FtpParse::Other);
    assert_eq!(ftp::parse(&p, true), FtpParse::Other);
    let mut p = b"PORT ".to_vec();
    p.resize(1400, b'9');
    assert_eq!(ftp::parse(&p, false), FtpParse::Invalid);
}

#[test]
fn rewrite_port_and_pasv_use_commas_eprt_uses_its_family_form() {
    let mut p = b"227 Entering Passive Mode (10,1,1,2,4,1).\r\n".to_vec();
    let used = p.len();
    p.resize(used + 8, 0);
    let m = msg(&p[..used], false);
    let r = ftp::rewrite_addr(&mut p, used, &m, v4(172, 16, 0, 1), 0).unwrap();
    assert_eq!(
        &p[..r.len],
        b"227 Entering Passive Mode (172,16,0,1,4,1).\r\n"
    );
    let mut p = b"EPRT |1|10.1.1.1|1025|\r\n".to_vec();
    p.resize(64, 0);
    let m = msg(&p[..24], false);
    let r = ftp::rewrite_addr(&mut p, 24, &m, v4(172, 16, 0, 1), 0).unwrap();
    assert_eq!(&p[..r.len], b"EPRT |1|172.16.0.1|1025|\r\n");
    let mut p = b"EPRT |2|fc00::1|1025|\r\n".to_vec();
    p.resize(96, 0);
    let m = msg(&p[..23], true);
    let new = IpAddr::V6("2001:db8::ff:1".parse().unwrap());
    let r = ftp::rewrite_addr(&mut p, 23, &m, new, 0).unwrap();
    assert_eq!(&p[..r.len], b"EPRT |2|2001:db8::ff:1|1025|\r\n");
    assert_eq!(r.delta, 7);
    // The other family is refused and nothing changes.
    let before = p.clone();
    assert_eq!(
        ftp::rewrite_addr(&mut p, r.len, &m, v4(1, 2, 3, 4), 0),
        Err(RewriteError::Family)
    );
    assert_eq!(p, before);
}

#[test]
fn rewrite_without_room_leaves_the_payload_unchanged() {
    let mut p = b"PORT 1,1,1,1,4,1\r\n".to_vec();
    let orig = p.clone();
    let m = msg(&p, false);
    let e = ftp::rewrite_addr(&mut p, orig.len(), &m, v4(100, 100, 100, 100), 0);
    assert!(matches!(e, Err(RewriteError::Splice(_))));
    assert_eq!(p, orig);
}

#[test]
fn epsv_rewrite_is_a_no_op() {
    let mut p = b"229 Entering Extended Passive Mode (|||6446|)\r\n".to_vec();
    let orig = p.clone();
    let m = msg(&p, false);
    let r = ftp::rewrite_addr(&mut p, orig.len(), &m, v4(1, 2, 3, 4), 0x1234).unwrap();
    assert_eq!((r.len, r.csum, r.delta), (orig.len(), 0x1234, 0));
    assert_eq!(p, orig);
}

#[test]
fn tftp_read_and_write_requests_parse_others_do_not() {
    let p = b"\x00\x01hello.txt\x00octet\x00";
    let r = tftp::parse_request(p).unwrap();
    assert_eq!(r.op, TftpOp::Read);
    assert_eq!(&p[r.filename.start..r.filename.end], b"hello.txt");
    assert_eq!(&p[r.mode.start..r.mode.end], b"octet");
    assert_eq!(
        tftp::parse_request(b"\x00\x02f\x00netascii\x00blksize\x00512\x00")
            .unwrap()
            .op,
        TftpOp::Write
    );
    for p in [
        &b""[..],
        b"\x00",
        b"\x00\x03\x00\x01data",
        b"\x00\x01\x00octet\x00",
        b"\x00\x01file\x00octet",
        b"\x00\x01file",
    ] {
        assert_eq!(tftp::parse_request(p), None, "{p:?}");
    }
}

#[test]
fn seq_shift_wraps_and_keeps_the_checksum_right() {
    let mut seg = [0u8; 20];
    seg[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let csum = !checksum::data(&seg);
    let (new, c) = seq::shift(0xffff_fff0, 0x20, csum);
    assert_eq!(new, 0x10);
    seg[4..8].copy_from_slice(&new.to_be_bytes());
    assert_eq!(c, !checksum::data(&seg));
    assert_eq!(seq::shift(new, -0x20, c).0, 0xffff_fff0);
}

fn hostile() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(&b""[..]),
        Just(&b"PORT "[..]),
        Just(&b"EPRT |1|"[..]),
        Just(&b"EPRT |2|"[..]),
        Just(&b"227 Entering Passive Mode ("[..]),
        Just(&b"229 EXTENDED PASSIVE (|||"[..]),
    ];
    let body = proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(&b"0123456789,.|:()af \r\n"[..]),
            1 => any::<u8>(),
        ],
        0..400,
    );
    (prefix, body).prop_map(|(p, b)| p.iter().copied().chain(b).collect())
}

proptest! {
    /// Hostile payloads: parsing never panics; a message's address span lies inside the
    /// first 127 bytes; a rewrite changes only the address field (head and moved tail
    /// intact), its length change is exact and its incremental checksum equals a full
    /// one, or it is refused with the payload untouched.
    #[test]
    fn hostile_payloads_parse_and_rewrite_safely(
        p in hostile(),
        v6 in any::<bool>(),
        room in 0usize..64,
        new4 in any::<u32>(),
        new6 in any::<u128>(),
    ) {
        let parsed = ftp::parse(&p, v6);
        if let FtpParse::Message(m) = parsed {
            let mut buf = p.clone();
            buf.extend(std::iter::repeat_n(0x5a, room));
            let orig = buf.clone();
            let used = p.len();
            if let Some(Span { start, end }) = m.addr_span {
                prop_assert!(start <= end && end <= ftp::FTP_WINDOW && end <= used);
            }
            let new = if v6 { IpAddr::V6(Ipv6Addr::from(new6)) } else { IpAddr::V4(Ipv4Addr::from(new4)) };
            let csum = !checksum::data(&p);
            match ftp::rewrite_addr(&mut buf, used, &m, new, csum) {
                Err(_) => prop_assert_eq!(&buf, &orig),
                Ok(r) => {
                    let span = m.addr_span.unwrap_or(Span { start: used, end: used });
                    let text = ftp::addr_text(m.kind, new);
                    let t = if m.addr_span.is_some() { text.unwrap().as_bytes().to_vec() } else { Vec::new() };
                    prop_assert_eq!(r.delta, t.len() as i32 - span.len() as i32);
                    prop_assert_eq!(r.len as i64, used as i64 + i64::from(r.delta));
                    prop_assert_eq!(&buf[..span.start], &p[..span.start]);
                    prop_assert_eq!(&buf[span.start..span.start + t.len()], &t[..]);
                    prop_assert_eq!(&buf[span.start + t.len()..r.len], &p[span.end..]);
                    prop_assert_eq!(&buf[r.len.max(used)..], &orig[r.len.max(used)..]);
                    let full = !checksum::data(&buf[..r.len]);
                    prop_assert!(r.csum == full || r.csum ^ full == 0xffff && (r.csum == 0 || full == 0));
                    // The rewritten message parses again to the new address and same port.
                    if let FtpParse::Message(m2) = ftp::parse(&buf[..r.len], v6) {
                        if m.addr_span.is_some() && span.start + t.len() < ftp::FTP_WINDOW {
                            prop_assert_eq!(m2.port, m.port);
                        }
                    }
                }
            }
        }
    }

    /// Any bytes at all: no panic, and a TFTP request's spans are inside the payload.
    #[test]
    fn arbitrary_bytes_never_panic(p in proptest::collection::vec(any::<u8>(), 0..600), v6 in any::<bool>()) {
        let _ = ftp::parse(&p, v6);
        if let Some(r) = tftp::parse_request(&p) {
            prop_assert!(r.filename.end < r.mode.start && r.mode.end < p.len());
            prop_assert!(!p[r.filename.start..r.filename.end].contains(&0));
        }
    }
}

proptest! {
    /// Well-formed announcements with any address and port, followed by arbitrary bytes
    /// (payloads up to 500 bytes), parse to exactly their address and port, and a
    /// rewrite to any address yields exactly the message with the new address text.
    #[test]
    fn well_formed_announcements_round_trip_through_rewrite(
        kind in 0u8..4,
        a in any::<u32>(), a6 in any::<u128>(), port in any::<u16>(),
        new in any::<u32>(), new6 in any::<u128>(),
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (a4, n4) = (Ipv4Addr::from(a), Ipv4Addr::from(new));
        let (a6, n6) = (Ipv6Addr::from(a6), Ipv6Addr::from(new6));
        let [o0, o1, o2, o3] = a4.octets();
        let (hi, lo) = (port >> 8, port & 0xff);
        let (head, v6, newaddr, newtext, addr) = match kind {
            0 => (format!("PORT {o0},{o1},{o2},{o3},{hi},{lo}\r\n"), false, IpAddr::V4(n4),
                  { let [b0, b1, b2, b3] = n4.octets(); format!("{b0},{b1},{b2},{b3}") }, IpAddr::V4(a4)),
            1 => (format!("227 Entering Passive Mode ({o0},{o1},{o2},{o3},{hi},{lo}).\r\n"), false, IpAddr::V4(n4),
                  { let [b0, b1, b2, b3] = n4.octets(); format!("{b0},{b1},{b2},{b3}") }, IpAddr::V4(a4)),
            2 => (format!("EPRT |1|{a4}|{port}|\r\n"), false, IpAddr::V4(n4), n4.to_string(), IpAddr::V4(a4)),
            _ => (format!("EPRT |2|{a6}|{port}|\r\n"), true, IpAddr::V6(n6), n6.to_string(), IpAddr::V6(a6)),
        };
        let mut p = head.clone().into_bytes();
        p.extend_from_slice(&tail);
        let m = msg(&p, v6);
        prop_assert_eq!(m.addr, Some(addr));
        prop_assert_eq!(m.port, port);
        let used = p.len();
        let mut buf = p.clone();
        buf.resize(used + 45, 0);
        let r = ftp::rewrite_addr(&mut buf, used, &m, newaddr, !checksum::data(&p)).unwrap();
        let old_text = match addr { IpAddr::V4(x) if kind < 2 => { let [b0, b1, b2, b3] = x.octets(); format!("{b0},{b1},{b2},{b3}") }, x => x.to_string() };
        let want = head.replacen(&old_text, &newtext, 1);
        let mut want = want.into_bytes();
        want.extend_from_slice(&tail);
        prop_assert_eq!(&buf[..r.len], &want[..]);
        let full = !checksum::data(&want);
        prop_assert!(r.csum == full || r.csum ^ full == 0xffff && (r.csum == 0 || full == 0));
        prop_assert!(buf[r.len..].iter().all(|&b| b == 0) || r.len < used);
    }
}
