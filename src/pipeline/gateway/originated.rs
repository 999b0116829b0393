//! The frames the gateway originates, answered in place or built: ARP replies and
//! requests, NDP advertisements and solicitations, ICMP echo replies, ICMP time-exceeded.
//!
//! Byte-level writers at constant offsets; every function checks the lengths it needs
//! first and returns `None`/`false` instead of panicking.

use crate::pipeline::MacAddr;
use crate::wire::checksum;

pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP over Ethernet/IPv4, after the Ethernet header.
pub const ARP_LEN: usize = 28;
/// Hop limit / TTL of packets the gateway originates.
pub const OWN_TTL: u8 = 64;

/// The fields of an Ethernet/IPv4 ARP packet (after the Ethernet header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// Reads an untagged Ethernet/IPv4 ARP frame; `None` when it is anything else.
pub fn read_arp(frame: &[u8]) -> Option<Arp> {
    let a = frame.get(ETH_LEN..ETH_LEN + ARP_LEN)?;
    if a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[4] != 6 || a[5] != 4 {
        return None;
    }
    Some(Arp {
        op: u16::from_be_bytes([a[6], a[7]]),
        sha: arr(&a[8..14]),
        spa: arr(&a[14..18]),
        tha: arr(&a[18..24]),
        tpa: arr(&a[24..28]),
    })
}

fn write_eth(out: &mut [u8], dst: [u8; 6], src: MacAddr, ethertype: u16) {
    out[0..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

fn write_arp(out: &mut [u8], a: &Arp) {
    let b = &mut out[ETH_LEN..ETH_LEN + ARP_LEN];
    b[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    b[6..8].copy_from_slice(&a.op.to_be_bytes());
    b[8..14].copy_from_slice(&a.sha);
    b[14..18].copy_from_slice(&a.spa);
    b[18..24].copy_from_slice(&a.tha);
    b[24..28].copy_from_slice(&a.tpa);
}

/// Turns the ARP request `req` (in `frame`) into the reply "`asked` is at `mac`",
/// addressed back to the requester. The frame keeps its length (padding included).
pub fn arp_reply_in_place(frame: &mut [u8], req: &Arp, mac: MacAddr) -> bool {
    if frame.len() < ETH_LEN + ARP_LEN {
        return false;
    }
    write_eth(frame, req.sha, mac, ETHERTYPE_ARP);
    write_arp(
        frame,
        &Arp {
            op: 2,
            sha: mac.0,
            spa: req.tpa,
            tha: req.sha,
            tpa: req.spa,
        },
    );
    true
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
    write_eth(out, to.map_or([0xff; 6], |m| m.0), mac, ETHERTYPE_ARP);
    write_arp(
        out,
        &Arp {
            op: 1,
            sha: mac.0,
            spa,
            tha: [0; 6],
            tpa: target,
        },
    );
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

fn write_ipv6(out: &mut [u8], plen: u16, next: u8, hlim: u8, src: &[u8; 16], dst: &[u8; 16]) {
    let h = &mut out[ETH_LEN..ETH_LEN + 40];
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&plen.to_be_bytes());
    h[6] = next;
    h[7] = hlim;
    h[8..24].copy_from_slice(src);
    h[24..40].copy_from_slice(dst);
}

/// Length of an NS or NA with one link-layer address option.
const ND_LEN: usize = 32;

fn write_nd(out: &mut [u8], ty: u8, flags: u8, target: &[u8; 16], opt: u8, mac: MacAddr) {
    let m = &mut out[ETH_LEN + 40..ETH_LEN + 40 + ND_LEN];
    m[0] = ty;
    m[1] = 0;
    m[2..4].copy_from_slice(&[0, 0]);
    m[4..8].copy_from_slice(&[flags, 0, 0, 0]);
    m[8..24].copy_from_slice(target);
    m[24] = opt;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac.0);
}

fn fill_icmpv6(out: &mut [u8], l3: usize, len: usize) {
    let src: [u8; 16] = arr(&out[l3 + 8..l3 + 24]);
    let dst: [u8; 16] = arr(&out[l3 + 24..l3 + 40]);
    let m = &mut out[l3 + 40..l3 + 40 + len];
    let c = checksum::icmpv6(&src, &dst, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
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
    let len = ETH_LEN + 40 + ND_LEN;
    let out = out.get_mut(..len)?;
    let (dst, dst_mac) = match to {
        Some(m) => (*target, m.0),
        None => {
            let group = solicited_node(target);
            (group, ipv6_multicast_mac(&group))
        }
    };
    write_eth(out, dst_mac, mac, ETHERTYPE_IPV6);
    write_ipv6(out, ND_LEN as u16, 58, 255, src, &dst);
    write_nd(out, 135, 0, target, 1, mac);
    fill_icmpv6(out, ETH_LEN, ND_LEN);
    Some(len)
}

/// NA flags: router, solicited, override.
pub const NA_FLAGS: u8 = 0x80 | 0x40 | 0x20;

/// Writes a solicited neighbour advertisement "`target` is at `mac`" to `dst` (at
/// `dst_mac`) into `out` (an untagged frame of exactly 86 bytes); its length.
pub fn na_reply(
    out: &mut [u8],
    mac: MacAddr,
    dst_mac: [u8; 6],
    target: &[u8; 16],
    dst: &[u8; 16],
) -> Option<usize> {
    let len = ETH_LEN + 40 + ND_LEN;
    let out = out.get_mut(..len)?;
    write_eth(out, dst_mac, mac, ETHERTYPE_IPV6);
    write_ipv6(out, ND_LEN as u16, 58, 255, target, dst);
    write_nd(out, 136, NA_FLAGS, target, 2, mac);
    fill_icmpv6(out, ETH_LEN, ND_LEN);
    Some(len)
}

/// Turns an ICMP/ICMPv6 echo request (IP header at `l3`, message at `l4`, `len` bytes)
/// into the echo reply, in place: addresses swapped, TTL/hop limit reset, type changed,
/// checksums updated incrementally, MACs swapped with our `mac` as source.
pub fn echo_reply_in_place(frame: &mut [u8], v6: bool, l3: usize, l4: usize, mac: MacAddr) -> bool {
    let need = if v6 { l3 + 40 } else { l3 + 20 };
    if frame.len() < need.max(l4 + 8) || l4 < need {
        return false;
    }
    let src_mac: [u8; 6] = arr(&frame[6..12]);
    frame[0..6].copy_from_slice(&src_mac);
    frame[6..12].copy_from_slice(&mac.0);
    if v6 {
        // Swapping the addresses leaves the pseudo-header sum as it is.
        let s: [u8; 16] = arr(&frame[l3 + 8..l3 + 24]);
        let d: [u8; 16] = arr(&frame[l3 + 24..l3 + 40]);
        frame[l3 + 8..l3 + 24].copy_from_slice(&d);
        frame[l3 + 24..l3 + 40].copy_from_slice(&s);
        frame[l3 + 7] = OWN_TTL;
        let old = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
        frame[l4] = 129;
        let new = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
        let c = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
        let c = checksum::update_u16(c, old, new);
        frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    } else {
        let s: [u8; 4] = arr(&frame[l3 + 12..l3 + 16]);
        let d: [u8; 4] = arr(&frame[l3 + 16..l3 + 20]);
        frame[l3 + 12..l3 + 16].copy_from_slice(&d);
        frame[l3 + 16..l3 + 20].copy_from_slice(&s);
        let old = u16::from_be_bytes([frame[l3 + 8], frame[l3 + 9]]);
        frame[l3 + 8] = OWN_TTL;
        let new = u16::from_be_bytes([frame[l3 + 8], frame[l3 + 9]]);
        let c = u16::from_be_bytes([frame[l3 + 10], frame[l3 + 11]]);
        let c = checksum::update_u16(c, old, new);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let old = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
        frame[l4] = 0;
        let new = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
        let c = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
        let c = checksum::update_u16(c, old, new);
        frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// Writes an ICMP time-exceeded (TTL exceeded in transit) about the IPv4 packet at
/// `frame[l3..]` into `out`: from `src` to the packet's source, to the frame's source
/// MAC, quoting the packet's header and 8 bytes of its payload. Its length.
pub fn time_exceeded_v4(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: [u8; 4],
) -> Option<usize> {
    let ip = frame.get(l3..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let quote_len = (ihl + 8).min(total).min(ip.len());
    let quote = ip.get(..quote_len)?;
    let orig_src: [u8; 4] = arr(ip.get(12..16)?);
    let len = ETH_LEN + 20 + 8 + quote_len;
    let out = out.get_mut(..len)?;
    write_eth(out, arr(frame.get(6..12)?), mac, ETHERTYPE_IPV4);
    let h = &mut out[ETH_LEN..ETH_LEN + 20];
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&((20 + 8 + quote_len) as u16).to_be_bytes());
    h[4..8].copy_from_slice(&[0, 0, 0, 0]);
    h[8] = OWN_TTL;
    h[9] = 1;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&orig_src);
    let c = checksum::ipv4_header(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let m = &mut out[ETH_LEN + 20..];
    m[0..8].copy_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
    m[8..].copy_from_slice(quote);
    let c = checksum::icmpv4(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// The ICMPv6 version (type 3, code 0) about the IPv6 packet at `frame[l3..]`, quoting
/// as much of the packet as fits in `out`. Its length.
pub fn time_exceeded_v6(
    out: &mut [u8],
    frame: &[u8],
    l3: usize,
    mac: MacAddr,
    src: &[u8; 16],
) -> Option<usize> {
    let ip = frame.get(l3..)?;
    let total = 40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let room = out.len().checked_sub(ETH_LEN + 40 + 8)?;
    let quote_len = total.min(ip.len()).min(room);
    let quote = ip.get(..quote_len)?;
    let orig_src: [u8; 16] = arr(ip.get(8..24)?);
    let mlen = 8 + quote_len;
    let len = ETH_LEN + 40 + mlen;
    let out = out.get_mut(..len)?;
    write_eth(out, arr(frame.get(6..12)?), mac, ETHERTYPE_IPV6);
    write_ipv6(out, mlen as u16, 58, OWN_TTL, src, &orig_src);
    let m = &mut out[ETH_LEN + 40..];
    m[0..8].copy_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
    m[8..].copy_from_slice(quote);
    fill_icmpv6(out, ETH_LEN, mlen);
    Some(len)
}
