//! Every checksum of a whole frame, verified ([`verify_frame`]) or filled in
//! ([`fill_frame`]): the IPv4 header, the TCP/UDP/ICMP/ICMPv6 checksum, and the header
//! and L4 checksums of the packet an ICMP error quotes.
//!
//! These walk a frame with [`parse_frame`] and then compute each checksum from scratch
//! with [`super::checksum`], independently of how the frame was made: tests and the
//! traffic generators use them to check (or create) packets without trusting the code
//! under test. The datapath never calls them.
//!
//! Invariant: [`fill_frame`] writes exactly the checksums [`verify_frame`] checks, so a
//! frame that parses verifies after it is filled.

use super::checksum::{
    data, icmpv4, icmpv6, ipv4_header, tcp_v4, tcp_v6, udp_v4, udp_v6, verify_ipv4_header,
    ICMP_CSUM, TCP_CSUM, UDP_CSUM,
};
use super::parse::{parse_frame, Family, Fragment, IcmpSummary, L4Summary, ParseError};
use super::proto;

/// Which checksum of a frame is wrong, as [`verify_frame`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumError {
    /// The frame did not parse.
    Parse(ParseError),
    /// The IPv4 header checksum.
    Ipv4Header,
    /// The TCP, UDP, ICMP or ICMPv6 checksum (also: a zero UDP checksum over IPv6).
    L4,
    /// The IPv4 header checksum of the packet embedded in an ICMP error.
    InnerIpv4Header,
    /// The L4 checksum of the packet embedded in an ICMP error (only checked when the
    /// whole embedded packet is quoted).
    InnerL4,
}

impl From<ParseError> for ChecksumError {
    fn from(e: ParseError) -> Self {
        ChecksumError::Parse(e)
    }
}

/// Checks every checksum of a frame that can be checked, independently of how it was
/// made: the IPv4 header checksum; the TCP/UDP/ICMP/ICMPv6 checksum (SCTP: CRC32c) of an unfragmented
/// packet (a UDP-over-IPv4 checksum of 0 is accepted as "none"); and for an ICMP error,
/// the embedded IPv4 header checksum when the embedded header is quoted whole, and the
/// embedded L4 checksum when the embedded packet is quoted whole (per its own length
/// field) and is not a fragment. Fragments' L4 checksums cannot be checked and are not.
pub fn verify_frame(frame: &[u8]) -> Result<(), ChecksumError> {
    let p = parse_frame(frame)?;
    let l3 = usize::from(p.l3_offset);
    let l4 = usize::from(p.l4_offset);
    let end = l4 + usize::from(p.l4_len);
    if p.family == Family::V4 && !frame.get(l3..l4).is_some_and(verify_ipv4_header) {
        return Err(ChecksumError::Ipv4Header);
    }
    if p.fragment == Fragment::None {
        let segment = frame.get(l4..end).unwrap_or_default();
        if !verify_l4(p.family, &p.src, &p.dst, p.proto, segment) {
            return Err(ChecksumError::L4);
        }
    }
    if let L4Summary::Icmp(IcmpSummary {
        inner: Some(inner), ..
    }) = p.l4
    {
        let quote = frame
            .get(usize::from(inner.l3_offset)..end)
            .unwrap_or_default();
        if let Some(InnerView {
            header,
            segment,
            whole,
        }) = inner_packet(inner.family, quote)
        {
            if inner.family == Family::V4 && !verify_ipv4_header(header) {
                return Err(ChecksumError::InnerIpv4Header);
            }
            if whole && !verify_l4(inner.family, &inner.src, &inner.dst, inner.proto, segment) {
                return Err(ChecksumError::InnerL4);
            }
        }
    }
    Ok(())
}

/// Computes and stores every checksum [`verify_frame`] checks: inner L4 and inner IPv4
/// header first (when whole), then the outer L4 (unfragmented packets only), then the
/// IPv4 header. A UDP-over-IPv4 checksum is filled too (never left 0). For building
/// test packets.
pub fn fill_frame(frame: &mut [u8]) -> Result<(), ParseError> {
    let p = parse_frame(frame)?;
    let l3 = usize::from(p.l3_offset);
    let l4 = usize::from(p.l4_offset);
    let end = l4 + usize::from(p.l4_len);
    if let L4Summary::Icmp(IcmpSummary {
        inner: Some(inner), ..
    }) = p.l4
    {
        let start = usize::from(inner.l3_offset);
        let inner_l4 = usize::from(inner.l4_offset) - start;
        if let Some(quote) = frame.get_mut(start..end) {
            let (header_len, seg_len, whole) = match inner_packet(inner.family, quote) {
                Some(v) => (v.header.len(), v.segment.len(), v.whole),
                None => (0, 0, false),
            };
            if whole && p.fragment != Fragment::Later {
                if let Some(seg) = quote.get_mut(inner_l4..inner_l4 + seg_len) {
                    fill_l4(inner.family, &inner.src, &inner.dst, inner.proto, seg);
                }
            }
            if inner.family == Family::V4 && header_len >= 20 {
                if let Some(h) = quote.get_mut(..header_len) {
                    let c = ipv4_header(h);
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
    }
    if p.fragment == Fragment::None {
        if let Some(seg) = frame.get_mut(l4..end) {
            fill_l4(p.family, &p.src, &p.dst, p.proto, seg);
        }
    }
    if p.family == Family::V4 {
        if let Some(h) = frame.get_mut(l3..l4) {
            let c = ipv4_header(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
    }
    Ok(())
}

/// The first 4 of 16 address bytes.
#[inline(always)]
fn v4(a: &[u8; 16]) -> &[u8; 4] {
    match a.first_chunk::<4>() {
        Some(x) => x,
        None => &[0; 4],
    }
}

/// Verifies the L4 checksum of a whole segment (`segment` = the IP payload after the
/// extension headers). Protocols without a checksum verify trivially.
fn verify_l4(family: Family, src: &[u8; 16], dst: &[u8; 16], protocol: u8, segment: &[u8]) -> bool {
    let stored = |at: usize| {
        segment
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match (family, protocol) {
        (Family::V4, proto::TCP) => stored(TCP_CSUM) == Some(tcp_v4(v4(src), v4(dst), segment)),
        (Family::V6, proto::TCP) => stored(TCP_CSUM) == Some(tcp_v6(src, dst, segment)),
        (_, proto::UDP) => {
            let Some(len) = stored(4) else { return false };
            let Some(dgram) = segment.get(..usize::from(len)) else {
                return false;
            };
            match (family, stored(UDP_CSUM)) {
                (Family::V4, Some(0)) => true,
                (Family::V4, c) => c == Some(udp_v4(v4(src), v4(dst), dgram)),
                (Family::V6, c) => c == Some(udp_v6(src, dst, dgram)),
            }
        }
        (Family::V4, proto::ICMP) => segment.len() >= 4 && data(segment) == 0xffff,
        (Family::V6, proto::ICMPV6) => stored(ICMP_CSUM) == Some(icmpv6(src, dst, segment)),
        (_, proto::SCTP) => {
            super::sctp::Packet::new_checked(segment).is_ok_and(|p| p.verify_checksum())
        }
        _ => true,
    }
}

/// Stores the L4 checksum of a whole segment (see [`verify_l4`]).
fn fill_l4(family: Family, src: &[u8; 16], dst: &[u8; 16], protocol: u8, segment: &mut [u8]) {
    if protocol == proto::SCTP {
        if let Ok(mut p) = super::sctp::Packet::new_checked(segment) {
            p.fill_checksum();
        }
        return;
    }
    let (at, c) = match (family, protocol) {
        (Family::V4, proto::TCP) => (TCP_CSUM, tcp_v4(v4(src), v4(dst), segment)),
        (Family::V6, proto::TCP) => (TCP_CSUM, tcp_v6(src, dst, segment)),
        (_, proto::UDP) => {
            let len = segment
                .get(4..6)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let dgram = segment.get(..usize::from(len)).unwrap_or_default();
            match family {
                Family::V4 => (UDP_CSUM, udp_v4(v4(src), v4(dst), dgram)),
                Family::V6 => (UDP_CSUM, udp_v6(src, dst, dgram)),
            }
        }
        (Family::V4, proto::ICMP) => (ICMP_CSUM, icmpv4(segment)),
        (Family::V6, proto::ICMPV6) => (ICMP_CSUM, icmpv6(src, dst, segment)),
        _ => return,
    };
    if let Some(f) = segment.get_mut(at..at + 2) {
        f.copy_from_slice(&c.to_be_bytes());
    }
}

/// The embedded packet of an ICMP error, as far as it is quoted.
struct InnerView<'a> {
    /// The embedded IP header (IPv4: with options; IPv6: the fixed 40 bytes).
    header: &'a [u8],
    /// The embedded L4 segment, bounded by what is quoted and by its own length field.
    segment: &'a [u8],
    /// The embedded packet is quoted whole (per its length field) and is not a fragment.
    whole: bool,
}

/// Splits a quoted packet (starting at its IP header) into header and L4 segment.
fn inner_packet(family: Family, quote: &[u8]) -> Option<InnerView<'_>> {
    match family {
        Family::V4 => {
            let h = quote.first_chunk::<20>()?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let header = quote.get(..ihl)?;
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
            let whole = !frag && total >= ihl && total <= quote.len();
            let segment = quote.get(ihl..total.min(quote.len()).max(ihl))?;
            Some(InnerView {
                header,
                segment,
                whole,
            })
        }
        Family::V6 => {
            let h = quote.first_chunk::<40>()?;
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let payload = quote.get(40..(40 + plen).min(quote.len()))?;
            let chain = super::ipv6::walk_ext_headers(h[6], payload).ok()?;
            let whole = 40 + plen <= quote.len() && chain.fragment.is_none();
            Some(InnerView {
                header: quote.get(..40)?,
                segment: payload.get(chain.l4_offset..)?,
                whole,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{udp_nonzero, update_bytes, update_u16};

    use crate::wire::parse::tests as frames;

    /// Real packets captured with dumpcap on Linux `lo` (`ping -s 24 -p 6374676174
    /// 127.0.0.1` and `ping -6 -s 12 ::1`): the kernel computes IPv4 and ICMP/ICMPv6
    /// checksums in software even on loopback, so these are its values (tshark: correct).
    const CAPTURED_ECHO_REQUEST_V4: &str = "000000000000 000000000000 0800
        45000034 85554000 4001 b771 7f000001 7f000001
        0800 49c5 235f 0001 99ee066b00000000 42cf070000000000 7467617463746761";
    const CAPTURED_ECHO_REPLY_V4: &str = "000000000000 000000000000 0800
        45000034 85560000 4001 f770 7f000001 7f000001
        0000 51c5 235f 0001 99ee066b00000000 42cf070000000000 7467617463746761";
    const CAPTURED_ECHO_REQUEST_V6: &str = "000000000000 000000000000 86dd
        60023819 0014 3a 40 00000000000000000000000000000001 00000000000000000000000000000001
        8000 8d0a 245b 0001 6374676174000000432f4c43";

    #[test]
    fn captured_packets() {
        let req = frames::frame(&[CAPTURED_ECHO_REQUEST_V4]);
        let rep = frames::frame(&[CAPTURED_ECHO_REPLY_V4]);
        let req6 = frames::frame(&[CAPTURED_ECHO_REQUEST_V6]);
        assert_eq!(ipv4_header(&req[14..34]), 0xb771);
        assert_eq!(icmpv4(&req[34..]), 0x49c5);
        assert_eq!(ipv4_header(&rep[14..34]), 0xf770);
        assert_eq!(icmpv4(&rep[34..]), 0x51c5);
        let mut lo = [0u8; 16];
        lo[15] = 1;
        assert_eq!(icmpv6(&lo, &lo, &req6[54..]), 0x8d0a);
        for f in [&req, &rep, &req6] {
            assert_eq!(verify_frame(f), Ok(()));
        }
        // Echo request -> reply is what a responder does: type 8 -> 0 and DF cleared, with
        // RFC 1624 updates instead of recomputation, giving the kernel's values.
        let c = update_u16(0x49c5, 0x0800, 0x0000);
        assert_eq!(c, 0x51c5);
        let h = update_u16(update_u16(0xb771, 0x8555, 0x8556), 0x4000, 0x0000);
        assert_eq!(h, 0xf770);
        let p = parse_frame(&req).unwrap();
        assert_eq!(p.l4_len, 32);
        match p.l4 {
            L4Summary::Icmp(i) => assert_eq!((i.icmp_type, i.id), (8, 0x235f)),
            other => panic!("{other:?}"),
        }
    }

    /// Every frame of the parser's table (built by scapy) verifies.
    #[test]
    fn verify_frame_accepts_scapy_frames() {
        for (i, f) in frames::all_valid().iter().enumerate() {
            assert_eq!(verify_frame(f), Ok(()), "frame {i}");
        }
    }

    /// Stores `v` at `at` of a frame.
    fn put(f: &mut [u8], at: usize, v: u16) {
        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Refreshes the outer ICMPv4 checksum of a frame whose ICMP message starts at 34.
    fn refresh_icmp(f: &mut [u8]) {
        let end = 14 + usize::from(u16::from_be_bytes([f[16], f[17]]));
        let c = icmpv4(&f[34..end]);
        put(f, 36, c);
    }

    #[test]
    fn verify_frame_names_the_wrong_checksum() {
        let mut f = frames::syn_vlan();
        f[29] ^= 1;
        assert_eq!(verify_frame(&f), Err(ChecksumError::Ipv4Header));
        let mut f = frames::syn_vlan();
        f[59] ^= 1;
        assert_eq!(verify_frame(&f), Err(ChecksumError::L4));
        // A changed payload byte breaks the TCP checksum, not the IP header's.
        let mut f = frames::syn_vlan();
        f[70] ^= 0x80;
        assert_eq!(verify_frame(&f), Err(ChecksumError::L4));
        let mut f = frames::echo_req_v6();
        f[57] ^= 1;
        assert_eq!(verify_frame(&f), Err(ChecksumError::L4));
        let mut f = frames::echo_req_v4();
        f[37] ^= 1;
        assert_eq!(verify_frame(&f), Err(ChecksumError::L4));

        // Inner IPv4 header checksum (outer ICMP checksum refreshed so it is right).
        let mut f = frames::icmp_port_unreach_udp();
        f[53] ^= 1;
        refresh_icmp(&mut f);
        assert_eq!(verify_frame(&f), Err(ChecksumError::InnerIpv4Header));
        // Inner UDP checksum of a wholly quoted datagram.
        let mut f = frames::icmp_port_unreach_udp();
        f[69] ^= 1;
        refresh_icmp(&mut f);
        assert_eq!(verify_frame(&f), Err(ChecksumError::InnerL4));
        // Inner ICMP echo checksum.
        let mut f = frames::time_exceeded_echo();
        f[65] ^= 1;
        refresh_icmp(&mut f);
        assert_eq!(verify_frame(&f), Err(ChecksumError::InnerL4));
        // A partial quote's L4 checksum is not checked (it cannot be).
        let mut f = frames::icmp_frag_needed_tcp();
        f[62] ^= 1;
        refresh_icmp(&mut f);
        assert_eq!(verify_frame(&f), Ok(()));
        // Unparseable frames.
        assert_eq!(
            verify_frame(&[0; 10]),
            Err(ChecksumError::Parse(ParseError::TruncatedEthernet))
        );
    }

    #[test]
    fn verify_frame_udp_zero_checksum() {
        // IPv4: zero means none.
        let mut f = frames::padded();
        put(&mut f, 40, 0);
        assert_eq!(verify_frame(&f), Ok(()));
        // IPv6: zero is an error.
        let mut f = frames::v6_hbh_dst_udp();
        put(&mut f, 76, 0);
        assert_eq!(verify_frame(&f), Err(ChecksumError::L4));
    }

    /// fill_frame recomputes exactly scapy's checksums at every position it owns.
    #[test]
    fn fill_frame_restores_every_checksum() {
        let cases: Vec<(Vec<u8>, &[usize])> = vec![
            (frames::syn_vlan(), &[28, 58]),
            (frames::qinq_udp(), &[32, 48]),
            (frames::v6_hbh_dst_udp(), &[76]),
            (frames::v4_first_frag(), &[24]),
            (frames::icmp_port_unreach_udp(), &[24, 36, 52, 68]),
            (frames::icmp_frag_needed_tcp(), &[24, 36, 52]),
            (frames::icmp6_ptb_tcp(), &[56]),
            (frames::echo_req_v4(), &[24, 36]),
            (frames::echo_req_v6(), &[56]),
            (frames::time_exceeded_echo(), &[24, 36, 52, 64]),
            (frames::padded(), &[24, 40]),
        ];
        for (i, (good, at)) in cases.into_iter().enumerate() {
            let mut f = good.clone();
            for &a in at {
                put(&mut f, a, 0xdead);
            }
            assert_ne!(f, good);
            assert_eq!(fill_frame(&mut f), Ok(()), "frame {i}");
            assert_eq!(f, good, "frame {i}");
        }
        // A zero IPv4 UDP checksum is filled in, not left as "none".
        let mut f = frames::padded();
        put(&mut f, 40, 0);
        fill_frame(&mut f).unwrap();
        assert_eq!(f, frames::padded());
        assert_eq!(
            fill_frame(&mut [0u8; 13]),
            Err(ParseError::TruncatedEthernet)
        );
    }

    /// The way NAT un-translates an ICMP error, with the incremental updates only: the
    /// quoted datagram 10.0.0.1:5353 -> 192.0.2.53:53 becomes 100.64.0.9:61000 -> …, and
    /// the outer destination 10.0.0.1 becomes 100.64.0.9. Every checksum, inner and outer,
    /// then verifies independently.
    #[test]
    fn incremental_icmp_error_rewrite_verifies() {
        let mut f = frames::icmp_port_unreach_udp();
        let new_addr = [100, 64, 0, 9];
        let old_addr = [10, 0, 0, 1];
        let new_port = 61000u16;
        let word = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        let mut icmp_c = word(&f, 36);

        // Inner IPv4 source (frame 54..58) and the inner header checksum (52..54).
        let old_ip_c = word(&f, 52);
        let ip_c = update_bytes(old_ip_c, &old_addr, &new_addr);
        f[54..58].copy_from_slice(&new_addr);
        put(&mut f, 52, ip_c);
        icmp_c = update_bytes(icmp_c, &old_addr, &new_addr);
        icmp_c = update_u16(icmp_c, old_ip_c, ip_c);

        // Inner UDP source port (62..64) and checksum (68..70; pseudo-header changes too).
        let old_port = word(&f, 62);
        let old_udp_c = word(&f, 68);
        let mut udp_c = update_bytes(old_udp_c, &old_addr, &new_addr);
        udp_c = udp_nonzero(update_u16(udp_c, old_port, new_port));
        put(&mut f, 62, new_port);
        put(&mut f, 68, udp_c);
        icmp_c = update_u16(icmp_c, old_port, new_port);
        icmp_c = update_u16(icmp_c, old_udp_c, udp_c);
        put(&mut f, 36, icmp_c);

        // Outer destination (30..34) and outer header checksum (24..26).
        let hc = update_bytes(word(&f, 24), &old_addr, &new_addr);
        f[30..34].copy_from_slice(&new_addr);
        put(&mut f, 24, hc);

        assert_eq!(verify_frame(&f), Ok(()));
        let p = parse_frame(&f).unwrap();
        let L4Summary::Icmp(i) = p.l4 else {
            panic!("not ICMP")
        };
        let inner = i.inner.unwrap();
        assert_eq!(
            (inner.src[..4].to_vec(), inner.sport),
            (new_addr.to_vec(), 61000)
        );
        // And the values equal a full recomputation.
        let mut g = f.clone();
        fill_frame(&mut g).unwrap();
        assert_eq!(f, g);
    }
}
