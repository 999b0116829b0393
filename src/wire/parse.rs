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

/// IP protocol numbers the tracker treats specially.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits as they stand in byte 13 of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

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
    /// TCP/UDP ports of the embedded header; for embedded ICMP echo: `sport` = identifier,
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
    Udp { sport: u16, dport: u16 },
    Icmp(IcmpSummary),
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
}
