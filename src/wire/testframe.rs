//! Test frames: the one builder of the Ethernet frames that tests and benchmarks feed
//! the datapath (the library's unit tests, the integration tests, the perf crate's tests).
//!
//! ```
//! use ctgate::wire::proto::tcp_flags::SYN;
//! use ctgate::wire::testframe::{Frame, L4};
//!
//! let syn = Frame::v4([10, 0, 0, 1], [192, 0, 2, 2], L4::tcp(40000, 80, 1000, 0, SYN, b""))
//!     .ttl(63)
//!     .build();
//! assert_eq!(ctgate::wire::frame_checksums::verify_frame(&syn), Ok(()));
//! ```
//!
//! A [`Frame`] is an IPv4 or IPv6 packet carrying one [`L4`] (TCP, UDP, SCTP,
//! ICMP/ICMPv6 or raw bytes of any protocol) behind an Ethernet header with up to one VLAN tag. Every
//! header is written through the views' setters and every checksum filled by the views
//! (`fill_checksum*`), so a built frame verifies (except what the caller asked to leave:
//! a zero UDP checksum). The defaults are what most tests want:
//! MACs `02:00:00:00:00:02` ← `02:00:00:00:00:01`, TTL/hop limit 64, IPv4 identification
//! `0x1234` with DF, flow label 0, TCP window `0xffff` and no options.
//!
//! Not for the datapath: it allocates.

use std::net::IpAddr;

use super::ethernet::{self, ethertype};
use super::{arp, icmpv4, icmpv6, ipv4, ipv6, proto, sctp, tcp, udp};

/// The L4 part of a test frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A TCP segment (data offset from `opts`, which must be a multiple of 4 bytes).
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        opts: Vec<u8>,
        payload: Vec<u8>,
    },
    /// A UDP datagram; `no_csum` leaves its checksum 0 ("none").
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
        no_csum: bool,
    },
    /// An ICMP (over IPv4) or ICMPv6 (over IPv6) message: type, code, the 4 bytes after
    /// the checksum (`id << 16 | seq` for echo), and its data (an error's quote).
    Icmp {
        ty: u8,
        code: u8,
        rest: u32,
        data: Vec<u8>,
    },
    /// An SCTP packet: common header (CRC32c filled) and `chunks` (whole, padded).
    Sctp {
        sport: u16,
        dport: u16,
        tag: u32,
        chunks: Vec<u8>,
    },
    /// Raw bytes of protocol `protocol`. For TCP, UDP, SCTP, ICMP (over IPv4) and ICMPv6
    /// (over IPv6) the frame fills the checksum at its place like for the other kinds;
    /// anything else in the bytes (an error's quote) is left as it is.
    Raw { protocol: u8, payload: Vec<u8> },
}

impl L4 {
    /// A TCP segment with window `0xffff` and no options.
    pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> L4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 0xffff,
            opts: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    /// A UDP datagram (checksum filled).
    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4 {
        L4::Udp {
            sport,
            dport,
            payload: payload.to_vec(),
            no_csum: false,
        }
    }

    /// An ICMP/ICMPv6 message (see [`L4::Icmp`]).
    pub fn icmp(ty: u8, code: u8, rest: u32, data: &[u8]) -> L4 {
        L4::Icmp {
            ty,
            code,
            rest,
            data: data.to_vec(),
        }
    }

    /// An echo message of type `ty` (8/0 for ICMP, 128/129 for ICMPv6).
    pub fn echo(ty: u8, id: u16, seq: u16, data: &[u8]) -> L4 {
        L4::icmp(ty, 0, u32::from(id) << 16 | u32::from(seq), data)
    }

    /// An SCTP packet (see [`L4::Sctp`]).
    pub fn sctp(sport: u16, dport: u16, tag: u32, chunks: &[u8]) -> L4 {
        L4::Sctp {
            sport,
            dport,
            tag,
            chunks: chunks.to_vec(),
        }
    }

    /// Raw L4 bytes of protocol `protocol`.
    pub fn raw(protocol: u8, payload: &[u8]) -> L4 {
        L4::Raw {
            protocol,
            payload: payload.to_vec(),
        }
    }

    /// The TCP window (TCP only; other kinds are returned as they are).
    pub fn window(mut self, w: u16) -> L4 {
        if let L4::Tcp { window, .. } = &mut self {
            *window = w;
        }
        self
    }

    /// The TCP options (TCP only; a multiple of 4 bytes).
    pub fn options(mut self, o: &[u8]) -> L4 {
        if let L4::Tcp { opts, .. } = &mut self {
            *opts = o.to_vec();
        }
        self
    }

    /// Leaves a UDP checksum 0 (UDP only).
    pub fn no_checksum(mut self) -> L4 {
        if let L4::Udp { no_csum, .. } = &mut self {
            *no_csum = true;
        }
        self
    }

    /// True for a UDP datagram whose checksum stays 0.
    fn no_csum(&self) -> bool {
        matches!(self, L4::Udp { no_csum: true, .. })
    }

    /// The IP protocol number over the given family.
    fn protocol(&self, v4: bool) -> u8 {
        match self {
            L4::Tcp { .. } => proto::TCP,
            L4::Udp { .. } => proto::UDP,
            L4::Icmp { .. } if v4 => proto::ICMP,
            L4::Icmp { .. } => proto::ICMPV6,
            L4::Sctp { .. } => proto::SCTP,
            L4::Raw { protocol, .. } => *protocol,
        }
    }

    /// The L4 bytes, checksum 0 (a [`Frame`] fills it).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            L4::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                opts,
                payload,
            } => {
                let mut s = vec![0u8; tcp::MIN_HEADER_LEN + opts.len() + payload.len()];
                let mut t = tcp::Packet::new_unchecked(&mut s[..]);
                t.set_src_port(*sport);
                t.set_dst_port(*dport);
                t.set_seq_number(*seq);
                t.set_ack_number(*ack);
                t.set_header_len(tcp::MIN_HEADER_LEN + opts.len());
                t.set_flags(*flags);
                t.set_window_len(*window);
                t.options_mut().copy_from_slice(opts);
                t.payload_mut().copy_from_slice(payload);
                s
            }
            L4::Udp {
                sport,
                dport,
                payload,
                ..
            } => {
                let len = udp::HEADER_LEN + payload.len();
                let mut s = vec![0u8; len];
                let mut u = udp::Packet::new_unchecked(&mut s[..]);
                u.set_src_port(*sport);
                u.set_dst_port(*dport);
                u.set_len(len as u16);
                u.payload_mut().copy_from_slice(payload);
                s
            }
            L4::Icmp {
                ty,
                code,
                rest,
                data,
            } => {
                // ICMPv4 and ICMPv6 share the layout of these fields.
                let mut s = vec![0u8; icmpv4::HEADER_LEN + data.len()];
                let mut i = icmpv4::Packet::new_unchecked(&mut s[..]);
                i.set_msg_type(*ty);
                i.set_msg_code(*code);
                i.set_rest_of_header(*rest);
                i.data_mut().copy_from_slice(data);
                s
            }
            L4::Sctp {
                sport,
                dport,
                tag,
                chunks,
            } => {
                let mut s = vec![0u8; sctp::HEADER_LEN + chunks.len()];
                let mut p = sctp::Packet::new_unchecked(&mut s[..]);
                p.set_src_port(*sport);
                p.set_dst_port(*dport);
                p.set_verification_tag(*tag);
                if let Some(c) = s.get_mut(sctp::HEADER_LEN..) {
                    c.copy_from_slice(chunks);
                }
                s
            }
            L4::Raw { payload, .. } => payload.clone(),
        }
    }
}

/// The pseudo-header addresses of an L4 checksum.
enum Pseudo<'a> {
    V4(&'a [u8; 4], &'a [u8; 4]),
    V6(&'a [u8; 16], &'a [u8; 16]),
}

/// Fills the checksum of the L4 bytes `l4` of protocol `protocol` (when they hold its
/// header), unless `no_csum`.
fn fill_l4(l4: &mut [u8], protocol: u8, no_csum: bool, ph: Pseudo<'_>) {
    match (protocol, ph) {
        (proto::TCP, ph) if l4.len() >= tcp::MIN_HEADER_LEN => {
            let mut t = tcp::Packet::new_unchecked(l4);
            match ph {
                Pseudo::V4(s, d) => t.fill_checksum_v4(s, d),
                Pseudo::V6(s, d) => t.fill_checksum_v6(s, d),
            }
        }
        (proto::UDP, ph) if l4.len() >= udp::HEADER_LEN && !no_csum => {
            let mut u = udp::Packet::new_unchecked(l4);
            match ph {
                Pseudo::V4(s, d) => u.fill_checksum_v4(s, d),
                Pseudo::V6(s, d) => u.fill_checksum_v6(s, d),
            }
        }
        (proto::SCTP, _) if l4.len() >= sctp::HEADER_LEN => {
            sctp::Packet::new_unchecked(l4).fill_checksum()
        }
        (proto::ICMP, Pseudo::V4(..)) if l4.len() >= icmpv4::HEADER_LEN => {
            icmpv4::Packet::new_unchecked(l4).fill_checksum()
        }
        (proto::ICMPV6, Pseudo::V6(s, d)) if l4.len() >= icmpv6::HEADER_LEN => {
            icmpv6::Packet::new_unchecked(l4).fill_checksum(s, d)
        }
        _ => {}
    }
}

/// An Ethernet frame: `dst`, `src`, `ethertype`, then `payload` as it is (for frames
/// that are not IP: ARP, unknown EtherTypes, hand-made tags).
pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    let mut e = ethernet::Frame::new_unchecked(&mut f[..]);
    e.set_dst_addr(dst);
    e.set_src_addr(src);
    e.set_ethertype(ethertype);
    // After the 14-byte header as it is, even when `ethertype` is a VLAN TPID (the view's
    // payload would start after the tag).
    if let Some(p) = f.get_mut(ethernet::HEADER_LEN..) {
        p.copy_from_slice(payload);
    }
    f
}

/// `frame` with VLAN tags `(TPID, TCI)` inserted after the MAC addresses, outer first:
/// one 0x8100 tag for 802.1Q, 0x88a8 then 0x8100 for QinQ (802.1ad). Works on any frame
/// (IP, ARP); no checksum covers the tags.
pub fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut t = frame[..12].to_vec();
    for (tpid, tci) in tags {
        t.extend_from_slice(&tpid.to_be_bytes());
        t.extend_from_slice(&tci.to_be_bytes());
    }
    t.extend_from_slice(&frame[12..]);
    t
}

/// An Ethernet/IPv4 ARP frame to `dst`: operation `op` (1 request, 2 reply), sender
/// `sha`/`spa`, target `tha`/`tpa`.
pub fn arp(
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
    dst: [u8; 6],
) -> Vec<u8> {
    let mut a = vec![0u8; arp::PACKET_LEN];
    let mut p = arp::Packet::new_unchecked(&mut a[..]);
    p.set_ethernet_ipv4();
    p.set_operation(op);
    p.set_sender_hardware_addr(sha);
    p.set_sender_protocol_addr(spa);
    p.set_target_hardware_addr(tha);
    p.set_target_protocol_addr(tpa);
    ether(dst, sha, ethertype::ARP, &a)
}

/// An Ethernet frame carrying one IP packet; see the module docs for the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    /// TPID and TCI of one VLAN tag.
    vlan: Option<(u16, u16)>,
    v4: bool,
    src: [u8; 16],
    dst: [u8; 16],
    ttl: u8,
    ident: u16,
    dont_frag: bool,
    more_frags: bool,
    frag_offset: u16,
    ip_opts: Vec<u8>,
    flow_label: u32,
    /// IPv6 extension headers before L4: their next-header values, in order.
    ext: Vec<u8>,
    l4: L4,
}

/// An IP frame from `smac` to `dmac`, `src` to `dst` (both IPv4 addresses, `[u8; 4]`, or
/// both IPv6, `[u8; 16]`), TTL or hop limit `ttl`, carrying the L4 bytes `l4` as protocol
/// `proto`, every checksum filled: the tests' shorthand for
/// `Frame::ip(src, dst, L4::raw(proto, l4)).macs(dmac, smac).ttl(ttl).build()`. Also
/// named [`ip4`] and [`ip6`] after the family the caller builds.
pub fn ip_frame<A: Into<IpAddr>>(
    dmac: [u8; 6],
    smac: [u8; 6],
    src: A,
    dst: A,
    ttl: u8,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    Frame::ip(src.into(), dst.into(), L4::raw(proto, l4))
        .macs(dmac, smac)
        .ttl(ttl)
        .build()
}

pub use self::ip_frame as ip4;
pub use self::ip_frame as ip6;

impl Frame {
    /// An IPv4 frame from `src` to `dst`.
    pub fn v4(src: [u8; 4], dst: [u8; 4], l4: L4) -> Frame {
        let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
        s[..4].copy_from_slice(&src);
        d[..4].copy_from_slice(&dst);
        Frame::with(true, s, d, l4)
    }

    /// An IPv6 frame from `src` to `dst`.
    pub fn v6(src: [u8; 16], dst: [u8; 16], l4: L4) -> Frame {
        Frame::with(false, src, dst, l4)
    }

    /// An IPv4 or IPv6 frame by the addresses' family (the destination takes the
    /// source's: an IPv4 destination of an IPv6 source is its mapped form).
    pub fn ip(src: IpAddr, dst: IpAddr, l4: L4) -> Frame {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Frame::v4(s.octets(), d.octets(), l4),
            (IpAddr::V4(s), IpAddr::V6(d)) => {
                let d = d.to_ipv4_mapped().map_or([0; 4], |a| a.octets());
                Frame::v4(s.octets(), d, l4)
            }
            (IpAddr::V6(s), d) => {
                let d = match d {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                Frame::v6(s.octets(), d.octets(), l4)
            }
        }
    }

    fn with(v4: bool, src: [u8; 16], dst: [u8; 16], l4: L4) -> Frame {
        Frame {
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            v4,
            src,
            dst,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            ip_opts: Vec::new(),
            flow_label: 0,
            ext: Vec::new(),
            l4,
        }
    }

    /// Destination and source MAC.
    pub fn macs(mut self, dst: [u8; 6], src: [u8; 6]) -> Frame {
        self.dst_mac = dst;
        self.src_mac = src;
        self
    }

    /// One 802.1Q VLAN tag with this TCI (PCP, DEI, VLAN id).
    pub fn vlan(mut self, tci: u16) -> Frame {
        self.vlan = Some((ethertype::VLAN, tci));
        self
    }

    /// TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Frame {
        self.ttl = ttl;
        self
    }

    /// IPv4 identification.
    pub fn ident(mut self, ident: u16) -> Frame {
        self.ident = ident;
        self
    }

    /// IPv4 DF flag.
    pub fn dont_frag(mut self, df: bool) -> Frame {
        self.dont_frag = df;
        self
    }

    /// IPv4 fragment: MF flag and offset in bytes (a multiple of 8). The L4 bytes are
    /// written (and their checksum computed) as for a whole packet; with a non-zero
    /// offset they are a later fragment's data to the parser.
    pub fn fragment(mut self, more: bool, offset: u16) -> Frame {
        self.more_frags = more;
        self.frag_offset = offset;
        self
    }

    /// IPv4 options (a multiple of 4 bytes).
    pub fn ip_options(mut self, opts: &[u8]) -> Frame {
        self.ip_opts = opts.to_vec();
        self
    }

    /// IPv6 extension headers before L4, in order, by next-header value: each is 8
    /// bytes, a PadN option filling Hop-by-Hop (0) and Destination Options (60), a
    /// type 0 Routing header (43) with no segments left.
    pub fn ext_headers(mut self, kinds: &[u8]) -> Frame {
        self.ext = kinds.to_vec();
        self
    }

    /// IPv6 flow label.
    pub fn flow_label(mut self, label: u32) -> Frame {
        self.flow_label = label;
        self
    }

    /// The IP packet alone (from its IP header), every checksum filled.
    pub fn build_ip(&self) -> Vec<u8> {
        let f = self.build();
        let l3 = ethernet::HEADER_LEN + if self.vlan.is_some() { 4 } else { 0 };
        f.get(l3..).map(<[u8]>::to_vec).unwrap_or_default()
    }

    /// The frame, every checksum filled (see the module docs).
    pub fn build(&self) -> Vec<u8> {
        let seg = self.l4.bytes();
        let protocol = self.l4.protocol(self.v4);
        let l3 = ethernet::HEADER_LEN + if self.vlan.is_some() { 4 } else { 0 };
        let hl = if self.v4 {
            ipv4::MIN_HEADER_LEN + self.ip_opts.len()
        } else {
            ipv6::HEADER_LEN + 8 * self.ext.len()
        };
        let mut f = vec![0u8; l3 + hl + seg.len()];
        let mut e = ethernet::Frame::new_unchecked(&mut f[..]);
        e.set_dst_addr(self.dst_mac);
        e.set_src_addr(self.src_mac);
        if let Some((tpid, tci)) = self.vlan {
            // The buffer holds the tag: this cannot fail.
            let _ = e.set_vlan(0, tpid, tci);
        }
        e.set_ethertype(if self.v4 {
            ethertype::IPV4
        } else {
            ethertype::IPV6
        });
        let (src, dst) = (self.src, self.dst);
        if self.v4 {
            let s: [u8; 4] = [src[0], src[1], src[2], src[3]];
            let d: [u8; 4] = [dst[0], dst[1], dst[2], dst[3]];
            let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
            ip.set_version(4);
            ip.set_header_len(hl);
            ip.set_total_len((hl + seg.len()) as u16);
            ip.set_ident(self.ident);
            ip.set_dont_frag(self.dont_frag);
            ip.set_more_frags(self.more_frags);
            ip.set_frag_offset(self.frag_offset);
            ip.set_ttl(self.ttl);
            ip.set_protocol(protocol);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.options_mut().copy_from_slice(&self.ip_opts);
            ip.payload_mut().copy_from_slice(&seg);
            fill_l4(
                ip.payload_mut(),
                protocol,
                self.l4.no_csum(),
                Pseudo::V4(&s, &d),
            );
            ip.fill_checksum();
        } else {
            let mut ip = ipv6::Packet::new_unchecked(&mut f[l3..]);
            ip.set_version(6);
            ip.set_flow_label(self.flow_label);
            let ext_len = 8 * self.ext.len();
            ip.set_payload_len((ext_len + seg.len()) as u16);
            ip.set_next_header(self.ext.first().copied().unwrap_or(protocol));
            ip.set_hop_limit(self.ttl);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            let (exts, l4) = ip.payload_mut().split_at_mut(ext_len);
            for (i, h) in exts.chunks_exact_mut(8).enumerate() {
                let kind = self.ext.get(i).copied().unwrap_or(0);
                h[0] = self.ext.get(i + 1).copied().unwrap_or(protocol);
                h[1] = 0;
                if kind == ipv6::ext::ROUTING {
                    h[2..].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
                } else {
                    h[2..].copy_from_slice(&[1, 4, 0, 0, 0, 0]);
                }
            }
            l4.copy_from_slice(&seg);
            fill_l4(l4, protocol, self.l4.no_csum(), Pseudo::V6(&src, &dst));
        }
        f
    }
}

/// Cuts a built, unfragmented IPv4 or IPv6 `frame` (VLAN tag, IPv4 options and IPv6
/// extension headers allowed) into fragments of `size` data bytes each (a multiple of 8;
/// the last carries the rest), as a sending stack does. IPv4: DF cleared, MF and offset,
/// total length and header checksum per fragment, options copied into every fragment
/// (the builder's NOP/EOL options are). IPv6: a Fragment header with identification
/// `ident` after the unfragmentable part (Hop-by-Hop, Routing, and Destination Options
/// before a Routing header; later Destination Options travel in the data, RFC 8200 §4.5).
/// Empty when the frame does not parse or `size` is not a positive multiple of 8.
pub fn fragments(frame: &[u8], size: usize, ident: u32) -> Vec<Vec<u8>> {
    let Ok(p) = super::parse::parse_frame(frame) else {
        return Vec::new();
    };
    if size == 0 || !size.is_multiple_of(8) {
        return Vec::new();
    }
    let l3 = usize::from(p.l3_offset);
    let mut out = Vec::new();
    if p.family == super::parse::Family::V4 {
        let hl = usize::from(p.l4_offset) - l3;
        let Some(data) = frame.get(l3 + hl..usize::from(p.l4_offset) + usize::from(p.l4_len))
        else {
            return out;
        };
        let mut at = 0;
        while at < data.len() {
            let len = size.min(data.len() - at);
            let last = at + len == data.len();
            let mut f = frame[..l3 + hl].to_vec();
            f.extend_from_slice(&data[at..at + len]);
            let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
            ip.set_total_len((hl + len) as u16);
            ip.set_ident(ident as u16);
            ip.set_dont_frag(false);
            ip.set_more_frags(!last);
            ip.set_frag_offset(at as u16);
            ip.fill_checksum();
            out.push(f);
            at += len;
        }
        return out;
    }
    // IPv6: the unfragmentable part ends after the last Hop-by-Hop/Routing header and any
    // Destination Options header right before a Routing header.
    let ip_end = usize::from(p.l4_offset) + usize::from(p.l4_len);
    let mut next = frame[l3 + 6];
    let mut at = l3 + ipv6::HEADER_LEN;
    let (mut unfrag_end, mut unfrag_next_at) = (at, l3 + 6);
    while matches!(next, 0 | 43 | 60) && at + 8 <= ip_end {
        let len = 8 * (usize::from(frame[at + 1]) + 1);
        let routing_follows = frame[at] == ipv6::ext::ROUTING;
        if next != ipv6::ext::DEST_OPTS || routing_follows {
            unfrag_end = at + len;
            unfrag_next_at = at;
        }
        next = frame[at];
        at += len;
    }
    let first_next = frame[unfrag_next_at];
    let data = &frame[unfrag_end..ip_end];
    let mut off = 0;
    while off < data.len() {
        let len = size.min(data.len() - off);
        let last = off + len == data.len();
        let mut f = frame[..unfrag_end].to_vec();
        f[unfrag_next_at] = ipv6::ext::FRAGMENT;
        f.extend_from_slice(&[first_next, 0]);
        f.extend_from_slice(&((off as u16) | u16::from(!last)).to_be_bytes());
        f.extend_from_slice(&ident.to_be_bytes());
        f.extend_from_slice(&data[off..off + len]);
        let plen = (f.len() - l3 - ipv6::HEADER_LEN) as u16;
        f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        out.push(f);
        off += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame_checksums::verify_frame;
    use crate::wire::parse::{parse_frame, L4Summary};
    use crate::wire::proto::tcp_flags::{ACK, SYN};

    /// A SYN with the defaults, byte for byte; the two checksums were computed apart from
    /// this crate (RFC 1071 in a few lines of Python over these bytes).
    #[test]
    fn a_default_v4_syn_has_the_expected_bytes() {
        let f = Frame::v4(
            [10, 0, 0, 1],
            [192, 0, 2, 2],
            L4::tcp(40000, 80, 1000, 0, SYN, b""),
        )
        .build();
        let want = crate::wire::parse::tests::frame(&[
            "020000000002 020000000001 0800",
            "4500002812344000 4006 5c99 0a000001 c0000202",
            "9c40 0050 000003e8 00000000 5002 ffff 4367 0000",
        ]);
        assert_eq!(f, want);
    }

    #[test]
    fn every_kind_verifies_and_parses_to_what_was_asked() {
        let a6 = |last: u8| {
            let mut a = [0u8; 16];
            a[..2].copy_from_slice(&[0x20, 0x01]);
            a[15] = last;
            a
        };
        let frames = [
            Frame::v4([10, 0, 0, 1], [10, 0, 0, 2], L4::udp(5000, 53, b"q")).vlan(100),
            Frame::v6(
                a6(1),
                a6(2),
                L4::tcp(1, 2, 3, 4, SYN | ACK, b"xy").options(&[1; 4]),
            ),
            Frame::v6(a6(1), a6(2), L4::echo(128, 7, 1, b"ping")),
            Frame::v4([10, 0, 0, 1], [10, 0, 0, 2], L4::echo(8, 7, 1, b"ping"))
                .ip_options(&[0x94, 4, 0, 0]),
        ];
        for f in &frames {
            let b = f.build();
            assert_eq!(verify_frame(&b), Ok(()), "{f:?}");
            let p = parse_frame(&b).unwrap();
            match (&f.l4, p.l4) {
                (L4::Udp { sport, dport, .. }, L4Summary::Udp { sport: s, dport: d }) => {
                    assert_eq!((*sport, *dport, p.vlans), (s, d, 1))
                }
                (L4::Tcp { flags, seq, .. }, L4Summary::Tcp(t)) => {
                    assert_eq!((*flags, *seq, t.payload_len), (t.flags, t.seq, 2))
                }
                (L4::Icmp { ty, .. }, L4Summary::Icmp(i)) => {
                    assert_eq!((*ty, i.id), (i.icmp_type, 7))
                }
                (want, got) => panic!("{want:?} parsed as {got:?}"),
            }
        }
    }
}
