//! The frames the gateway originates, answered in place or built: ARP replies and
//! requests, NDP advertisements and solicitations, ICMP echo replies, ICMP errors
//! (time exceeded, fragmentation needed, packet too big).
//!
//! An ICMP error quotes as much of the packet it is about as fits in [`ICMPV4_ERROR_MAX`]
//! bytes of IP in all (576, RFC 1812 §4.3.2.3, as Linux's `icmp_send`) for IPv4, and in
//! [`ICMPV6_ERROR_MAX`] (1280, the IPv6 minimum MTU, RFC 4443 §2.4 (c)) for IPv6; never
//! more than the packet's own length or the bytes the frame holds. [`ERROR_FRAME_MAX`] is
//! the longest frame any of them is.
//!
//! Every frame is written through the `wire` views' setters (`ethernet::Frame`,
//! `arp::Packet`, `ipv4::Packet`, `ipv6::Packet`, `icmpv4::Packet`, `icmpv6::Packet`) and
//! their checksum fills; each function checks the lengths it needs first, so no setter
//! can panic, and returns `None`/`false` instead.

use crate::pipeline::MacAddr;
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::{arp, icmpv4, icmpv6, ipv4, ipv6, proto};

pub const ETH_LEN: usize = ethernet::HEADER_LEN;
pub const ETHERTYPE_IPV4: u16 = ethertype::IPV4;
pub const ETHERTYPE_IPV6: u16 = ethertype::IPV6;
pub const ETHERTYPE_ARP: u16 = ethertype::ARP;
/// ARP over Ethernet/IPv4, after the Ethernet header.
pub const ARP_LEN: usize = arp::PACKET_LEN;
/// Hop limit / TTL of packets the gateway originates.
pub const OWN_TTL: u8 = 64;
/// The longest ICMP error (IP header included) about an IPv4 packet (RFC 1812 §4.3.2.3).
pub const ICMPV4_ERROR_MAX: usize = 576;
/// The longest ICMPv6 error (IPv6 header included): the IPv6 minimum MTU (RFC 4443 §2.4).
pub const ICMPV6_ERROR_MAX: usize = 1280;
/// The longest frame an ICMP error the gateway originates is.
pub const ERROR_FRAME_MAX: usize = ETH_LEN + ICMPV6_ERROR_MAX;

/// The fields of an Ethernet/IPv4 ARP packet (after the Ethernet header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

/// Reads an untagged Ethernet/IPv4 ARP frame; `None` when it is anything else.
pub fn read_arp(frame: &[u8]) -> Option<Arp> {
    let a = arp::Packet::new_checked(frame.get(ETH_LEN..)?).ok()?;
    if !a.is_ethernet_ipv4() {
        return None;
    }
    Some(Arp {
        op: a.operation(),
        sha: a.sender_hardware_addr(),
        spa: a.sender_protocol_addr(),
        tha: a.target_hardware_addr(),
        tpa: a.target_protocol_addr(),
    })
}

/// Writes the Ethernet header of `out` (at least [`ETH_LEN`] bytes, or nothing is
/// written); the view over the whole of `out`.
fn write_eth(out: &mut [u8], dst: [u8; 6], src: MacAddr, ethertype: u16) -> Option<()> {
    if out.len() < ETH_LEN {
        return None;
    }
    let mut f = ethernet::Frame::new_unchecked(out);
    f.set_dst_addr(dst);
    f.set_src_addr(src.0);
    f.set_ethertype(ethertype);
    Some(())
}

/// Writes the ARP packet `a` after the Ethernet header of `out`.
fn write_arp(out: &mut [u8], a: &Arp) -> Option<()> {
    let b = out.get_mut(ETH_LEN..ETH_LEN + ARP_LEN)?;
    let mut p = arp::Packet::new_unchecked(b);
    p.set_ethernet_ipv4();
    p.set_operation(a.op);
    p.set_sender_hardware_addr(a.sha);
    p.set_sender_protocol_addr(a.spa);
    p.set_target_hardware_addr(a.tha);
    p.set_target_protocol_addr(a.tpa);
    Some(())
}

/// Turns the ARP request `req` (in `frame`) into the reply "`asked` is at `mac`",
/// addressed back to the requester. The frame keeps its length (padding included).
pub fn arp_reply_in_place(frame: &mut [u8], req: &Arp, mac: MacAddr) -> bool {
    if frame.len() < ETH_LEN + ARP_LEN {
        return false;
    }
    let reply = Arp {
        op: arp::operation::REPLY,
        sha: mac.0,
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    };
    write_eth(frame, req.sha, mac, ETHERTYPE_ARP).is_some() && write_arp(frame, &reply).is_some()
}

/// Writes a broadcast ARP request "who has `target`? tell `spa`" into `out`; its length.
pub fn arp_request(out: &mut [u8], mac: MacAddr, spa: [u8; 4], target: [u8; 4]) -> Option<usize> {
    arp_request_to(out, mac, None, spa, target)
}

/// [`arp_request`] sent to `to` (a unicast probe of a known neighbour, RFC 1122
/// §2.3.2.1) or broadcast when `None`.
pub fn arp_request_to(
    out: &mut [u8],
    mac: MacAddr,
    to: Option<MacAddr>,
    spa: [u8; 4],
    target: [u8; 4],
) -> Option<usize> {
    let len = ETH_LEN + ARP_LEN;
    let out = out.get_mut(..len)?;
    write_eth(
        out,
        to.map_or(ethernet::BROADCAST, |m| m.0),
        mac,
        ETHERTYPE_ARP,
    )?;
    write_arp(
        out,
        &Arp {
            op: arp::operation::REQUEST,
            sha: mac.0,
            spa,
            tha: [0; 6],
            tpa: target,
        },
    )?;
    Some(len)
}

/// The solicited-node multicast address of `a`: `ff02::1:ff00:0/104` with the low 24 bits
/// of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: &[u8; 16]) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0] = 0xff;
    s[1] = 0x02;
    s[11] = 0x01;
    s[12] = 0xff;
    s[13..16].copy_from_slice(&a[13..16]);
    s
}

/// The Ethernet multicast MAC of an IPv6 multicast address (33:33 + last 4 bytes).
pub fn ipv6_multicast_mac(a: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, a[12], a[13], a[14], a[15]]
}

/// Writes an IPv6 header (traffic class and flow label 0) after the Ethernet header of
/// `out`.
fn write_ipv6(
    out: &mut [u8],
    plen: u16,
    next: u8,
    hlim: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Option<()> {
    let h = out.get_mut(ETH_LEN..ETH_LEN + ipv6::HEADER_LEN)?;
    let mut ip = ipv6::Packet::new_unchecked(h);
    ip.set_version(6);
    ip.set_traffic_class(0);
    ip.set_flow_label(0);
    ip.set_payload_len(plen);
    ip.set_next_header(next);
    ip.set_hop_limit(hlim);
    ip.set_src_addr(*src);
    ip.set_dst_addr(*dst);
    Some(())
}

/// Length of an NS or NA with one link-layer address option.
const ND_LEN: usize = icmpv6::field::NDP_OPTIONS.start + 8;

/// Writes an NS/NA with one link-layer address option after the IPv6 header of `out`,
/// checksum included (`src`, `dst`: the IPv6 addresses).
#[allow(clippy::too_many_arguments)]
fn write_nd(
    out: &mut [u8],
    ty: u8,
    flags: u8,
    target: &[u8; 16],
    opt: u8,
    mac: MacAddr,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Option<()> {
    let m = out.get_mut(ETH_LEN + ipv6::HEADER_LEN..ETH_LEN + ipv6::HEADER_LEN + ND_LEN)?;
    let mut nd = icmpv6::Packet::new_unchecked(m);
    nd.set_msg_type(ty);
    nd.set_msg_code(0);
    nd.set_checksum(0);
    nd.set_ndp_flags(flags);
    nd.set_ndp_target_addr(*target);
    nd.set_ndp_lladdr_option(opt, mac.0).ok()?;
    nd.fill_checksum(src, dst);
    Some(())
}

/// Writes a neighbour solicitation for `target` from `src` (multicast to the target's
/// solicited-node group) into `out`; its length.
pub fn ns_request(
    out: &mut [u8],
    mac: MacAddr,
    src: &[u8; 16],
    target: &[u8; 16],
) -> Option<usize> {
    ns_request_to(out, mac, None, src, target)
}

/// [`ns_request`] sent to `to`: a unicast solicitation (to the target's address and the
/// MAC we have for it, RFC 4861 §7.3.3's probe), or multicast to the solicited-node
/// group when `None`.
pub fn ns_request_to(
    out: &mut [u8],
    mac: MacAddr,
    to: Option<MacAddr>,
    src: &[u8; 16],
    target: &[u8; 16],
) -> Option<usize> {
    let len = ETH_LEN + ipv6::HEADER_LEN + ND_LEN;
    let out = out.get_mut(..len)?;
    let (dst, dst_mac) = match to {
        Some(m) => (*target, m.0),
        None => {
            let group = solicited_node(target);
            (group, ipv6_multicast_mac(&group))
        }
    };
    write_eth(out, dst_mac, mac, ETHERTYPE_IPV6)?;
    write_ipv6(out, ND_LEN as u16, proto::ICMPV6, 255, src, &dst)?;
    write_nd(
        out,
        icmpv6::msg_type::NEIGHBOR_SOLICIT,
        0,
        target,
        icmpv6::ndp_option::SOURCE_LL_ADDR,
        mac,
        src,
        &dst,
    )?;
    Some(len)
}

/// NA flags: router, solicited, override.
pub const NA_FLAGS: u8 =
    icmpv6::na_flags::ROUTER | icmpv6::na_flags::SOLICITED | icmpv6::na_flags::OVERRIDE;

/// Writes a solicited neighbour advertisement "`target` is at `mac`" to `dst` (at
/// `dst_mac`) into `out` (an untagged frame of exactly 86 bytes); its length.
pub fn na_reply(
    out: &mut [u8],
    mac: MacAddr,
    dst_mac: [u8; 6],
    target: &[u8; 16],
    dst: &[u8; 16],
) -> Option<usize> {
    let len = ETH_LEN + ipv6::HEADER_LEN + ND_LEN;
    let out = out.get_mut(..len)?;
    write_eth(out, dst_mac, mac, ETHERTYPE_IPV6)?;
    write_ipv6(out, ND_LEN as u16, proto::ICMPV6, 255, target, dst)?;
    write_nd(
        out,
        icmpv6::msg_type::NEIGHBOR_ADVERT,
        NA_FLAGS,
        target,
        icmpv6::ndp_option::TARGET_LL_ADDR,
        mac,
        target,
        dst,
    )?;
    Some(len)
}

/// Turns an ICMP/ICMPv6 echo request (IP header at `l3`, message at `l4`, `len` bytes)
/// into the echo reply, in place: addresses swapped, TTL/hop limit reset, type changed,
/// checksums updated incrementally, MACs swapped with our `mac` as source.
pub fn echo_reply_in_place(frame: &mut [u8], v6: bool, l3: usize, l4: usize, mac: MacAddr) -> bool {
    let need = if v6 {
        l3 + ipv6::HEADER_LEN
    } else {
        l3 + ipv4::MIN_HEADER_LEN
    };
    if frame.len() < need.max(l4 + icmpv4::HEADER_LEN) || l4 < need || l3 < ETH_LEN {
        return false;
    }
    let (eth_ip, msg) = frame.split_at_mut(l4);
    let (eth, ip) = eth_ip.split_at_mut(l3);
    let mut e = ethernet::Frame::new_unchecked(eth);
    let peer = e.src_addr();
    e.set_dst_addr(peer);
    e.set_src_addr(mac.0);
    if v6 {
        // Swapping the addresses leaves the pseudo-header sum as it is.
        let mut ip = ipv6::Packet::new_unchecked(ip);
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        ip.set_hop_limit(OWN_TTL);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(ip);
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        let old = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_ttl(OWN_TTL);
        let new = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        let c = checksum::update_u16(ip.checksum(), old, new);
        ip.set_checksum(c);
    }
    // ICMPv6 has ICMPv4's type, code and checksum fields, and the type change needs no
    // pseudo-header: one view serves both.
    let reply = if v6 {
        icmpv6::msg_type::ECHO_REPLY
    } else {
        icmpv4::msg_type::ECHO_REPLY
    };
    let mut m = icmpv4::Packet::new_unchecked(msg);
    let old = u16::from_be_bytes([m.msg_type(), m.msg_code()]);
    m.set_msg_type(reply);
    let new = u16::from_be_bytes([m.msg_type(), m.msg_code()]);
    let c = checksum::update_u16(m.checksum(), old, new);
    m.set_checksum(c);
    true
}

/// Writes an ICMP time-exceeded (TTL exceeded in transit) about the IPv4 packet at
/// `frame[l3..]` into `out`: from `src` to the packet's source, to the frame's source
/// MAC, quoting as much of the packet as fits in 576 bytes. Its length.
pub fn time_exceeded_v4(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: [u8; 4],
) -> Option<usize> {
    icmpv4_error(
        out,
        frame,
        l3,
        mac,
        src,
        icmpv4::msg_type::TIME_EXCEEDED,
        0,
        0,
    )
}

/// Writes an ICMP "fragmentation needed and DF set" (type 3 code 4, RFC 792) about the
/// IPv4 packet at `frame[l3..]` into `out`, with the next-hop MTU `mtu` in bytes 6..8
/// (RFC 1191 §4): from `src` to the packet's source, to the frame's source MAC, quoting
/// as much of the packet as fits in 576 bytes. Its length.
pub fn frag_needed_v4(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: [u8; 4],
    mtu: u16,
) -> Option<usize> {
    icmpv4_error(
        out,
        frame,
        l3,
        mac,
        src,
        icmpv4::msg_type::DEST_UNREACHABLE,
        icmpv4::unreachable::FRAG_NEEDED,
        u32::from(mtu),
    )
}

/// An ICMP error of `ty`/`code` with `rest` as its second word, quoting as much of the
/// packet as fits in [`ICMPV4_ERROR_MAX`] bytes in all and in `out` (RFC 1812 §4.3.2.3;
/// at least its header and 8 bytes, RFC 792, or nothing is written).
#[allow(clippy::too_many_arguments)]
fn icmpv4_error(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: [u8; 4],
    ty: u8,
    code: u8,
    rest: u32,
) -> Option<usize> {
    let ip = frame.get(l3..)?;
    let orig = ipv4::Packet::new_unchecked(ip.get(..ipv4::MIN_HEADER_LEN)?);
    let ihl = orig.header_len();
    let total = usize::from(orig.total_len());
    let orig_src = orig.src_addr();
    let room = out
        .len()
        .min(ETH_LEN + ICMPV4_ERROR_MAX)
        .checked_sub(ETH_LEN + ipv4::MIN_HEADER_LEN + icmpv4::HEADER_LEN)?;
    let quote_len = total.min(ip.len()).min(room);
    if room < (ihl + 8).min(total) {
        return None;
    }
    let quote = ip.get(..quote_len)?;
    let peer = ethernet::Frame::new_unchecked(frame.get(..ETH_LEN)?).src_addr();
    let ip_len = ipv4::MIN_HEADER_LEN + icmpv4::HEADER_LEN + quote_len;
    let len = ETH_LEN + ip_len;
    let out = out.get_mut(..len)?;
    write_eth(out, peer, mac, ETHERTYPE_IPV4)?;
    let (h, m) = out.get_mut(ETH_LEN..)?.split_at_mut(ipv4::MIN_HEADER_LEN);
    let mut h = ipv4::Packet::new_unchecked(h);
    h.set_version(4);
    h.set_header_len(ipv4::MIN_HEADER_LEN);
    h.set_dscp(0);
    h.set_ecn(0);
    h.set_total_len(ip_len as u16);
    h.set_ident(0);
    h.set_flags_frag(0);
    h.set_ttl(OWN_TTL);
    h.set_protocol(proto::ICMP);
    h.set_src_addr(src);
    h.set_dst_addr(orig_src);
    h.fill_checksum();
    let mut m = icmpv4::Packet::new_unchecked(m);
    m.set_msg_type(ty);
    m.set_msg_code(code);
    m.set_checksum(0);
    m.set_rest_of_header(rest);
    m.data_mut().copy_from_slice(quote);
    m.fill_checksum();
    Some(len)
}

/// The ICMPv6 version (type 3, code 0) about the IPv6 packet at `frame[l3..]`, quoting
/// as much of the packet as fits in `out` and in 1280 bytes in all. Its length.
pub fn time_exceeded_v6(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: &[u8; 16],
) -> Option<usize> {
    icmpv6_error(out, frame, l3, mac, src, icmpv6::msg_type::TIME_EXCEEDED, 0)
}

/// Writes an ICMPv6 "packet too big" (type 2 code 0, RFC 4443 §3.2) with the MTU `mtu`
/// about the IPv6 packet at `frame[l3..]` into `out`: from `src` to the packet's source,
/// to the frame's source MAC, quoting as much of the packet as fits in `out` (never more
/// than the IPv6 minimum MTU in all). Its length.
pub fn packet_too_big_v6(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: &[u8; 16],
    mtu: u16,
) -> Option<usize> {
    icmpv6_error(
        out,
        frame,
        l3,
        mac,
        src,
        icmpv6::msg_type::PACKET_TOO_BIG,
        u32::from(mtu),
    )
}

/// An ICMPv6 error of type `ty` (code 0) with `rest` as its second word, quoting as much
/// of the packet as fits in `out` and in [`ICMPV6_ERROR_MAX`] bytes (RFC 4443 §2.4 (c)).
fn icmpv6_error(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: &[u8; 16],
    ty: u8,
    rest: u32,
) -> Option<usize> {
    let ip = frame.get(l3..)?;
    let orig = ipv6::Packet::new_unchecked(ip.get(..ipv6::HEADER_LEN)?);
    let total = ipv6::HEADER_LEN + usize::from(orig.payload_len());
    let orig_src = orig.src_addr();
    let room = out
        .len()
        .min(ETH_LEN + ICMPV6_ERROR_MAX)
        .checked_sub(ETH_LEN + ipv6::HEADER_LEN + icmpv6::HEADER_LEN)?;
    let quote_len = total.min(ip.len()).min(room);
    let quote = ip.get(..quote_len)?;
    let peer = ethernet::Frame::new_unchecked(frame.get(..ETH_LEN)?).src_addr();
    let mlen = icmpv6::HEADER_LEN + quote_len;
    let len = ETH_LEN + ipv6::HEADER_LEN + mlen;
    let out = out.get_mut(..len)?;
    write_eth(out, peer, mac, ETHERTYPE_IPV6)?;
    write_ipv6(out, mlen as u16, proto::ICMPV6, OWN_TTL, src, &orig_src)?;
    let m = out.get_mut(ETH_LEN + ipv6::HEADER_LEN..)?;
    let mut m = icmpv6::Packet::new_unchecked(m);
    m.set_msg_type(ty);
    m.set_msg_code(0);
    m.set_checksum(0);
    m.set_rest_of_header(rest);
    m.data_mut().copy_from_slice(quote);
    m.fill_checksum(src, &orig_src);
    Some(len)
}
