//! One-pass frame classification: Ethernet (0–2 VLAN tags) → IPv4/IPv6 → L4.
//!
//! [`parse_frame`] walks a frame once, bounds-checking every header, and returns a
//! [`ParsedPacket`]: the offsets of each header and the fields the connection tracker
//! and NAT read. It never panics; a frame it cannot use is classified with a
//! [`ParseError`], which the datapath counts as a drop reason.
//!
//! This summary is the contract between `wire` and `conntrack`: the tracker builds its
//! keys from it and NAT rewrites the headers at the offsets it gives.

/// IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

/// IP protocol numbers (see [`super::proto`]), here for the callers that name them
/// `parse::proto`.
pub use super::proto;
/// TCP flag bits (see [`super::proto::tcp_flags`]).
pub use super::proto::tcp_flags;

/// Fragment status of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment.
    None,
    /// First fragment (offset 0, more fragments follow): the L4 header is present.
    First,
    /// A later fragment (offset > 0): no L4 header.
    Later,
}

/// The TCP fields the tracker needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSummary {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Flag byte (see [`tcp_flags`]).
    pub flags: u8,
    pub window: u16,
    /// Window-scale option shift if present (only meaningful on SYN segments), clamped to 14.
    /// The parser looks for it on segments with SYN set only; it is `None` on the others.
    pub wscale: Option<u8>,
    /// TCP payload length in bytes (IP payload length minus the TCP header length).
    pub payload_len: u16,
}

/// Tuple of the packet embedded in an ICMP/ICMPv6 error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerPacket {
    /// Absolute offset of the embedded IP header in the frame.
    pub l3_offset: u16,
    /// Absolute offset of the embedded L4 header in the frame.
    pub l4_offset: u16,
    /// Bytes of the embedded L4 header present in the frame (at least 8 when parsed).
    pub l4_len: u16,
    pub family: Family,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    /// TCP/UDP/SCTP ports of the embedded header; for embedded ICMP echo: `sport` = identifier,
    /// `dport` = `(type << 8) | code`. Zero for other protocols.
    pub sport: u16,
    pub dport: u16,
}

/// The ICMP/ICMPv6 fields the tracker needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpSummary {
    pub icmp_type: u8,
    pub code: u8,
    /// Identifier of echo/info/timestamp messages, 0 otherwise.
    pub id: u16,
    /// True for error messages (v4: 3, 4, 5, 11, 12; v6: 1, 2, 3, 4).
    pub is_error: bool,
    /// The embedded packet of an error message, when it parsed.
    pub inner: Option<InnerPacket>,
}

/// L4 part of a parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Summary {
    Tcp(TcpSummary),
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp(IcmpSummary),
    /// SCTP: the ports of the common header (tracked with its ports, as OVS ≥ 3.2 does).
    Sctp {
        sport: u16,
        dport: u16,
    },
    /// Any other protocol, or a later fragment (no L4 header).
    Other,
}

/// What [`parse_frame`] learned about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedPacket {
    /// Offset of the IP header (after Ethernet and VLAN tags).
    pub l3_offset: u16,
    /// Offset of the L4 header (after IPv4 options or the IPv6 extension chain).
    pub l4_offset: u16,
    /// Bytes from `l4_offset` to the end of the IP payload, as the IP header states it.
    pub l4_len: u16,
    /// Number of VLAN tags (0, 1 or 2).
    pub vlans: u8,
    pub family: Family,
    /// Source address; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    /// Destination address; IPv4 in the first 4 bytes, the rest zero.
    pub dst: [u8; 16],
    /// The L4 protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    pub fragment: Fragment,
    pub l4: L4Summary,
}

impl ParsedPacket {
    /// A placeholder (an IPv4 packet of protocol 0 between unspecified addresses), for
    /// buffers that [`parse_frame_into`] fills later.
    pub const EMPTY: ParsedPacket = ParsedPacket {
        l3_offset: 0,
        l4_offset: 0,
        l4_len: 0,
        vlans: 0,
        family: Family::V4,
        src: [0; 16],
        dst: [0; 16],
        proto: 0,
        ttl: 0,
        fragment: Fragment::None,
        l4: L4Summary::Other,
    };
}

/// Why a frame could not be used. Each variant is a drop-reason counter in the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Shorter than an Ethernet header (or a VLAN tag is cut).
    TruncatedEthernet,
    /// An EtherType other than IPv4/IPv6 (after up to two VLAN tags). ARP is reported so too;
    /// the pipeline looks at the EtherType before calling the parser for IP.
    NotIp,
    /// IPv4 header cut, IHL < 5, version mismatch, total length < IHL or beyond the frame.
    BadIpv4Header,
    /// IPv6 header cut, payload length beyond the frame, or an extension header cut.
    BadIpv6Header,
    /// TCP header cut or data offset < 5 or beyond the IP payload.
    BadTcpHeader,
    /// UDP header cut or UDP length inconsistent with the IP payload.
    BadUdpHeader,
    /// ICMP/ICMPv6 header cut.
    BadIcmpHeader,
    /// SCTP common header cut, or (unless a first fragment) its chunks malformed.
    BadSctpHeader,
}

use super::ethernet::{self, ethertype};
use super::{icmpv4, icmpv6, ipv4, ipv6, sctp, tcp};

// How the parser reads: every header is taken with one `first_chunk::<N>()` on the rest of
// the frame (the one bounds check per header, which fails into the header's `ParseError`);
// its fields are then read from the fixed-size array at constant offsets, which the
// compiler checks at build time, so no read can panic. Variable-length parts (IPv4 options,
// TCP options, IPv6 extension headers, the IP payload) are taken with `get`, never by
// indexing a slice.

/// Reads a big-endian `u16` at constant offset `at` of a fixed-size header.
#[inline(always)]
fn be16<const N: usize>(h: &[u8; N], at: usize) -> u16 {
    u16::from_be_bytes([h[at], h[at + 1]])
}

/// Reads a big-endian `u32` at constant offset `at` of a fixed-size header.
#[inline(always)]
fn be32<const N: usize>(h: &[u8; N], at: usize) -> u32 {
    u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// An IPv4 address at `at`, in the first 4 of 16 bytes.
#[inline(always)]
fn addr_v4<const N: usize>(h: &[u8; N], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = h[at];
    a[1] = h[at + 1];
    a[2] = h[at + 2];
    a[3] = h[at + 3];
    a
}

/// An IPv6 address at `at` (a constant offset inside `h`, so never the zero fallback).
#[inline(always)]
fn addr_v6<const N: usize>(h: &[u8; N], at: usize) -> [u8; 16] {
    chunk::<16>(h, at).copied().unwrap_or([0; 16])
}

/// Takes `N` bytes at `at` of `b` as a fixed-size array, if there are that many.
#[inline(always)]
fn chunk<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..)?.first_chunk::<N>()
}

/// Classifies an Ethernet frame in one pass: Ethernet and up to two VLAN tags, IPv4 (with
/// options) or IPv6 (through its extension headers), then TCP, UDP, ICMP/ICMPv6 (with the
/// packet an error message embeds) or any other protocol.
///
/// What is checked, and the error when it fails:
///
/// * Ethernet: 14 bytes, plus 4 per VLAN tag (`0x8100`/`0x88a8`, at most two) →
///   [`ParseError::TruncatedEthernet`]; an EtherType other than IPv4/IPv6 (ARP, a third
///   tag, …) → [`ParseError::NotIp`].
/// * IPv4: 20 bytes, version 4, IHL ≥ 5, header length ≤ total length ≤ the bytes after
///   the Ethernet header → [`ParseError::BadIpv4Header`]. Bytes after the total length
///   (Ethernet padding) are ignored. The header checksum is *not* verified (NIC offload or
///   [`super::frame_checksums::verify_frame`] does that).
/// * IPv6: 40 bytes, version 6, payload length within the frame, extension headers whole
///   within the payload → [`ParseError::BadIpv6Header`]. Jumbograms (payload length 0,
///   RFC 2675) are not supported: the payload is taken as empty.
/// * Fragments: an IPv4 packet with offset 0 and MF, or an IPv6 fragment header with
///   offset 0 and M, is [`Fragment::First`] and its L4 header is parsed as usual; a non-zero
///   offset is [`Fragment::Later`] with [`L4Summary::Other`] (for IPv6, `proto` is the
///   fragment header's next header and `l4_offset` points after the fragment header). An
///   IPv6 atomic fragment (offset 0, M clear) is [`Fragment::None`].
/// * TCP: 20 bytes, 5 ≤ data offset, header within the IP payload →
///   [`ParseError::BadTcpHeader`]. The window-scale option is read on SYN segments only;
///   malformed options are ignored, as Linux does.
/// * UDP: 8 bytes, length ≥ 8 and (unless a first fragment, whose UDP length covers the
///   whole datagram) ≤ the IP payload → [`ParseError::BadUdpHeader`].
/// * SCTP: the 12-byte common header; unless a first fragment, at least one chunk and
///   every chunk's length at least 4 and within the IP payload, chunks (padded to 4 bytes)
///   ending at its end ([`sctp::chunks_ok`], as OVS's `check_l4_sctp`) →
///   [`ParseError::BadSctpHeader`]. The CRC32c is not verified here (NAT verifies it
///   before recomputing it).
/// * ICMP (over IPv4) / ICMPv6 (over IPv6): 8 bytes → [`ParseError::BadIcmpHeader`].
///   Protocol 1 over IPv6 and 58 over IPv4 are [`L4Summary::Other`].
///
/// The embedded packet of an ICMP error ([`IcmpSummary::inner`]) is parsed when its IP
/// header is whole, has the outer family's version and IHL ≥ 5 (IPv4), its extension
/// headers (IPv6) are whole in what is quoted, it is not a non-first fragment, and at
/// least 8 bytes of its L4 header are present (counting only up to its own stated length);
/// otherwise `inner` is `None` and the outer packet is still `Ok`.
pub fn parse_frame(frame: &[u8]) -> Result<ParsedPacket, ParseError> {
    let mut p = ParsedPacket::EMPTY;
    parse_frame_into(frame, &mut p)?;
    Ok(p)
}

/// [`parse_frame`] writing its result into `out` (left as it was on an error). For
/// bursts that keep their parsed packets in place: the fields are stored once, where
/// they are used, instead of being returned through the stack and copied (that copy read
/// the just-written result back and cost a store-forwarding stall per packet).
///
/// Inlined: the datapath's common frame (untagged IPv4 without options, not a fragment,
/// UDP, or TCP other than a SYN with options) is classified in the caller's loop
/// (`parse_plain_ipv4`); every other frame takes the general parser's call.
#[inline(always)]
pub fn parse_frame_into(frame: &[u8], out: &mut ParsedPacket) -> Result<(), ParseError> {
    if parse_plain_ipv4(frame, out) {
        return Ok(());
    }
    parse_frame_general(frame, out)
}

/// The frames [`parse_frame_into`] classifies without a call: an untagged Ethernet frame
/// of at least 54 bytes (the headers below whole in it, as every frame on the wire is),
/// IPv4 with IHL 5, its total length within the frame, not a fragment (DF may be set), and
/// UDP, or TCP that does not need its options read (not a SYN with options). Writes `out`
/// and returns true for those (the general parser's result, field for field: the test
/// `the_plain_ipv4_path_answers_as_the_general_parser` pins it down); leaves `out` and
/// returns false for every other frame.
///
/// It saves the call's register saves and restores and lets the summary be stored
/// straight into `out`: a packet's parse ~130 → ~75 instructions (`ctgate-perf core`'s
/// mix of UDP and TCP under callgrind), the gateway step at 1k UDP flows 1,278.1 →
/// 1,222.7 (`perf/scripts/instr.sh`, perf/RESULTS.md session 25).
#[inline(always)]
fn parse_plain_ipv4(frame: &[u8], out: &mut ParsedPacket) -> bool {
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
    let Some(h) = frame.first_chunk::<{ L4 + tcp::MIN_HEADER_LEN }>() else {
        return false;
    };
    use ipv4::field;
    let total_len = usize::from(be16(h, L3 + field::LENGTH.start));
    if be16(h, 12) != ethertype::IPV4
        || h[L3 + field::VER_IHL] != 0x45
        || total_len < ipv4::MIN_HEADER_LEN
        || total_len > frame.len() - L3
        || be16(h, L3 + field::FLG_OFF.start) & (ipv4::frag::MF | ipv4::frag::OFFSET_MASK) != 0
    {
        return false;
    }
    let l4_len = total_len - ipv4::MIN_HEADER_LEN;
    let proto = h[L3 + field::PROTOCOL];
    let sport = be16(h, L4);
    let dport = be16(h, L4 + 2);
    let l4 = match proto {
        proto::UDP => {
            let len = usize::from(be16(h, L4 + 4));
            if l4_len < 8 || len < 8 || len > l4_len {
                return false;
            }
            L4Summary::Udp { sport, dport }
        }
        proto::TCP => {
            use tcp::field as t;
            let header_len = usize::from(h[L4 + t::DATA_OFF] >> 4) * 4;
            let flags = h[L4 + t::FLAGS];
            if l4_len < tcp::MIN_HEADER_LEN
                || header_len < tcp::MIN_HEADER_LEN
                || header_len > l4_len
                || (flags & tcp_flags::SYN != 0 && header_len > tcp::MIN_HEADER_LEN)
            {
                return false;
            }
            L4Summary::Tcp(TcpSummary {
                sport,
                dport,
                seq: be32(h, L4 + t::SEQ_NUM.start),
                ack: be32(h, L4 + t::ACK_NUM.start),
                flags,
                window: be16(h, L4 + t::WIN_SIZE.start),
                wscale: None,
                payload_len: (l4_len - header_len) as u16, // l4_len < 65535
            })
        }
        _ => return false,
    };
    *out = ParsedPacket {
        l3_offset: L3 as u16,
        l4_offset: L4 as u16,
        l4_len: l4_len as u16,
        vlans: 0,
        family: Family::V4,
        src: addr_v4(h, L3 + field::SRC_ADDR.start),
        dst: addr_v4(h, L3 + field::DST_ADDR.start),
        proto,
        ttl: h[L3 + field::TTL],
        fragment: Fragment::None,
        l4,
    };
    true
}

/// [`parse_frame_into`] for every frame: the parser [`parse_frame`] documents.
#[inline(never)]
fn parse_frame_general(frame: &[u8], out: &mut ParsedPacket) -> Result<(), ParseError> {
    let eth = frame
        .first_chunk::<{ ethernet::HEADER_LEN }>()
        .ok_or(ParseError::TruncatedEthernet)?;
    let mut ethertype = be16(eth, 12);
    let mut l3 = ethernet::HEADER_LEN;
    let mut vlans = 0u8;
    while ethernet::is_vlan_tpid(ethertype) && usize::from(vlans) < ethernet::MAX_VLANS {
        // The tag: TCI (2 bytes), then the next EtherType/TPID (2 bytes).
        let tag = chunk::<4>(frame, l3).ok_or(ParseError::TruncatedEthernet)?;
        ethertype = be16(tag, 2);
        l3 += ethernet::VLAN_TAG_LEN;
        vlans += 1;
    }
    match ethertype {
        ethertype::IPV4 => parse_ipv4(frame, l3, vlans, out),
        ethertype::IPV6 => parse_ipv6(frame, l3, vlans, out),
        _ => Err(ParseError::NotIp),
    }
}

#[inline(always)]
fn parse_ipv4(
    frame: &[u8],
    l3: usize,
    vlans: u8,
    out: &mut ParsedPacket,
) -> Result<(), ParseError> {
    use ipv4::field;
    const BAD: ParseError = ParseError::BadIpv4Header;
    let ip = frame.get(l3..).ok_or(BAD)?;
    let h = ip.first_chunk::<{ ipv4::MIN_HEADER_LEN }>().ok_or(BAD)?;
    let ver_ihl = h[field::VER_IHL];
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    let total_len = usize::from(be16(h, field::LENGTH.start));
    if ver_ihl >> 4 != 4
        || header_len < ipv4::MIN_HEADER_LEN
        || total_len < header_len
        || total_len > ip.len()
    {
        return Err(BAD);
    }
    let l4 = ip.get(header_len..total_len).ok_or(BAD)?;
    let flags_frag = be16(h, field::FLG_OFF.start);
    let fragment = if flags_frag & ipv4::frag::OFFSET_MASK != 0 {
        Fragment::Later
    } else if flags_frag & ipv4::frag::MF != 0 {
        Fragment::First
    } else {
        Fragment::None
    };
    let proto = h[field::PROTOCOL];
    let l4_offset = l3 + header_len;
    let l4_summary = match fragment {
        Fragment::Later => L4Summary::Other,
        _ => parse_l4(l4, l4_offset, proto, Family::V4, fragment)?,
    };
    // l3 <= 22 and header_len <= 60: the offsets fit; l4.len() < total_len <= 65535.
    *out = ParsedPacket {
        l3_offset: l3 as u16,
        l4_offset: l4_offset as u16,
        l4_len: l4.len() as u16,
        vlans,
        family: Family::V4,
        src: addr_v4(h, field::SRC_ADDR.start),
        dst: addr_v4(h, field::DST_ADDR.start),
        proto,
        ttl: h[field::TTL],
        fragment,
        l4: l4_summary,
    };
    Ok(())
}

#[inline(always)]
fn parse_ipv6(
    frame: &[u8],
    l3: usize,
    vlans: u8,
    out: &mut ParsedPacket,
) -> Result<(), ParseError> {
    use ipv6::field;
    const BAD: ParseError = ParseError::BadIpv6Header;
    let ip = frame.get(l3..).ok_or(BAD)?;
    let h = ip.first_chunk::<{ ipv6::HEADER_LEN }>().ok_or(BAD)?;
    if h[0] >> 4 != 6 {
        return Err(BAD);
    }
    let payload_len = usize::from(be16(h, field::PAYLOAD_LEN.start));
    let payload = ip
        .get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + payload_len)
        .ok_or(BAD)?;
    let next_header = h[field::NXT_HDR];
    let chain = if ipv6::is_ext_header(next_header) {
        ipv6::walk_ext_headers(next_header, payload).map_err(|_| BAD)?
    } else {
        // The common case, without the walker's call.
        ipv6::ExtChain {
            proto: next_header,
            l4_offset: 0,
            fragment: None,
        }
    };
    let l4 = payload.get(chain.l4_offset..).ok_or(BAD)?;
    let fragment = match chain.fragment {
        Some(f) if f.offset != 0 => Fragment::Later,
        Some(f) if f.more => Fragment::First,
        _ => Fragment::None,
    };
    let l4_offset = l3 + ipv6::HEADER_LEN + chain.l4_offset;
    let l4_summary = match fragment {
        Fragment::Later => L4Summary::Other,
        _ => parse_l4(l4, l4_offset, chain.proto, Family::V6, fragment)?,
    };
    // A chain of extension headers could push the L4 header past 65535 bytes.
    let l4_offset = u16::try_from(l4_offset).map_err(|_| BAD)?;
    *out = ParsedPacket {
        l3_offset: l3 as u16,
        l4_offset,
        l4_len: l4.len() as u16, // <= payload_len <= 65535
        vlans,
        family: Family::V6,
        src: addr_v6(h, field::SRC_ADDR.start),
        dst: addr_v6(h, field::DST_ADDR.start),
        proto: chain.proto,
        ttl: h[field::HOP_LIMIT],
        fragment,
        l4: l4_summary,
    };
    Ok(())
}

/// Parses the L4 header at `l4` (the IP payload after options/extension headers, which
/// starts at absolute offset `l4_offset` of the frame).
#[inline(always)]
fn parse_l4(
    l4: &[u8],
    l4_offset: usize,
    protocol: u8,
    family: Family,
    fragment: Fragment,
) -> Result<L4Summary, ParseError> {
    match (protocol, family) {
        (proto::TCP, _) => parse_tcp(l4).map(L4Summary::Tcp),
        (proto::UDP, _) => {
            let h = l4.first_chunk::<8>().ok_or(ParseError::BadUdpHeader)?;
            let len = usize::from(be16(h, 4));
            if len < 8 || (fragment == Fragment::None && len > l4.len()) {
                return Err(ParseError::BadUdpHeader);
            }
            Ok(L4Summary::Udp {
                sport: be16(h, 0),
                dport: be16(h, 2),
            })
        }
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
            parse_icmp(l4, l4_offset, family).map(L4Summary::Icmp)
        }
        (proto::SCTP, _) => {
            let (sport, dport) = parse_sctp(l4, fragment)?;
            Ok(L4Summary::Sctp { sport, dport })
        }
        _ => Ok(L4Summary::Other),
    }
}

#[inline(always)]
fn parse_tcp(l4: &[u8]) -> Result<TcpSummary, ParseError> {
    use tcp::field;
    const BAD: ParseError = ParseError::BadTcpHeader;
    let h = l4.first_chunk::<{ tcp::MIN_HEADER_LEN }>().ok_or(BAD)?;
    let header_len = usize::from(h[field::DATA_OFF] >> 4) * 4;
    if header_len < tcp::MIN_HEADER_LEN || header_len > l4.len() {
        return Err(BAD);
    }
    let flags = h[field::FLAGS];
    let wscale = if flags & tcp_flags::SYN != 0 && header_len > tcp::MIN_HEADER_LEN {
        tcp::find_window_scale(l4.get(tcp::MIN_HEADER_LEN..header_len).unwrap_or_default())
    } else {
        None
    };
    Ok(TcpSummary {
        sport: be16(h, field::SRC_PORT.start),
        dport: be16(h, field::DST_PORT.start),
        seq: be32(h, field::SEQ_NUM.start),
        ack: be32(h, field::ACK_NUM.start),
        flags,
        window: be16(h, field::WIN_SIZE.start),
        wscale,
        payload_len: (l4.len() - header_len) as u16, // header_len <= l4.len() <= 65535
    })
}

/// The SCTP ports. Not inlined: SCTP is rare, and its chunk walk stays off the common
/// path. It returns the ports, not an [`L4Summary`]: a summary returned from a call goes
/// through memory and made every other protocol's summary take that path too (byte stores
/// read back as one wide load, a store-forwarding stall per packet in `ctgate-perf step`).
#[inline(never)]
fn parse_sctp(l4: &[u8], fragment: Fragment) -> Result<(u16, u16), ParseError> {
    let h = l4
        .first_chunk::<{ sctp::HEADER_LEN }>()
        .ok_or(ParseError::BadSctpHeader)?;
    if fragment == Fragment::None && !sctp::chunks_ok(l4) {
        return Err(ParseError::BadSctpHeader);
    }
    Ok((be16(h, 0), be16(h, 2)))
}

#[inline(always)]
fn parse_icmp(l4: &[u8], l4_offset: usize, family: Family) -> Result<IcmpSummary, ParseError> {
    let h = l4.first_chunk::<8>().ok_or(ParseError::BadIcmpHeader)?;
    let (icmp_type, code) = (h[0], h[1]);
    let (is_error, has_ident) = match family {
        Family::V4 => (icmpv4::is_error(icmp_type), icmpv4::has_ident(icmp_type)),
        Family::V6 => (icmpv6::is_error(icmp_type), icmpv6::has_ident(icmp_type)),
    };
    let inner = if is_error {
        l4.get(8..)
            .and_then(|quote| parse_inner(quote, l4_offset + 8, family))
    } else {
        None
    };
    Ok(IcmpSummary {
        icmp_type,
        code,
        id: if has_ident { be16(h, 4) } else { 0 },
        is_error,
        inner,
    })
}

/// Parses the packet quoted in an ICMP error (`quote` starts at its IP header, at absolute
/// offset `base`, and ends with the outer IP payload). See [`parse_frame`] for what makes
/// it `None`. Not inlined: ICMP errors are rare, and the common path stays small.
#[inline(never)]
fn parse_inner(quote: &[u8], base: usize, family: Family) -> Option<InnerPacket> {
    let (l4_at, l4_len, protocol, src, dst) = match family {
        Family::V4 => {
            use ipv4::field;
            let h = quote.first_chunk::<{ ipv4::MIN_HEADER_LEN }>()?;
            let header_len = usize::from(h[field::VER_IHL] & 0x0f) * 4;
            if h[field::VER_IHL] >> 4 != 4
                || header_len < ipv4::MIN_HEADER_LEN
                || be16(h, field::FLG_OFF.start) & ipv4::frag::OFFSET_MASK != 0
            {
                return None;
            }
            let stated = usize::from(be16(h, field::LENGTH.start)).checked_sub(header_len)?;
            let quoted = quote.len().checked_sub(header_len)?;
            (
                header_len,
                stated.min(quoted),
                h[field::PROTOCOL],
                addr_v4(h, field::SRC_ADDR.start),
                addr_v4(h, field::DST_ADDR.start),
            )
        }
        Family::V6 => {
            use ipv6::field;
            let h = quote.first_chunk::<{ ipv6::HEADER_LEN }>()?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let stated = usize::from(be16(h, field::PAYLOAD_LEN.start));
            let quoted = quote.get(ipv6::HEADER_LEN..)?;
            let payload = quoted.get(..stated).unwrap_or(quoted);
            let chain = ipv6::walk_ext_headers(h[field::NXT_HDR], payload).ok()?;
            if chain.fragment.is_some_and(|f| f.offset != 0) {
                return None;
            }
            (
                ipv6::HEADER_LEN + chain.l4_offset,
                payload.len().checked_sub(chain.l4_offset)?,
                chain.proto,
                addr_v6(h, field::SRC_ADDR.start),
                addr_v6(h, field::DST_ADDR.start),
            )
        }
    };
    if l4_len < 8 {
        return None;
    }
    let l = chunk::<8>(quote, l4_at)?;
    let (sport, dport) = match (protocol, family) {
        (proto::TCP | proto::UDP | proto::SCTP, _) => (be16(l, 0), be16(l, 2)),
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
            let has_ident = match family {
                Family::V4 => icmpv4::has_ident(l[0]),
                Family::V6 => icmpv6::has_ident(l[0]),
            };
            let id = if has_ident { be16(l, 4) } else { 0 };
            (id, u16::from(l[0]) << 8 | u16::from(l[1]))
        }
        _ => (0, 0),
    };
    Some(InnerPacket {
        l3_offset: u16::try_from(base).ok()?,
        l4_offset: u16::try_from(base + l4_at).ok()?,
        l4_len: u16::try_from(l4_len).ok()?,
        family,
        src,
        dst,
        proto: protocol,
        sport,
        dport,
    })
}

#[cfg(test)]
pub(super) mod tests;
