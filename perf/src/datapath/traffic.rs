//! The generator's traffic model and the reflectors, on plain byte slices (no DPDK), so
//! that unit tests check exactly the frames the benchmark sends.
//!
//! Flow `i` is addressed as in [`crate::gen_traffic`]: client `10.0.0.(2 + i % 250)`,
//! client port / ICMP echo identifier `1024 + i % 64000`, server `198.18.0.0 + 1 +
//! i / 64000`, server port 53 (UDP) or 443 (TCP). `(client port, server)` is unique per
//! flow, so SNAT to the one pool address keeps every port and the flow is known again
//! from `(server, port)` on either side of the gateway.
//!
//! Frames are IPv4 without options, every checksum valid. A 48-bit TSC stamp sits at
//! [`stamp_offset`], right after the L4 header: inside the UDP/ICMP payload (the L4
//! checksum is updated with it), and for TCP segments without payload in the Ethernet
//! padding after the IP packet (which no checksum covers). NAT rewrites addresses, ports
//! and checksums only, never those bytes.

use ctgate::wire::checksum::update_bytes;
use ctgate::wire::frame_checksums::fill_frame;

/// Bytes of the stamp (the low 48 bits of the TSC: wraps after days).
pub const STAMP_LEN: usize = 6;
/// Ethernet + IPv4 header.
const L4: usize = 34;
/// Server ISN of every TCP connection (the reflectors are stateless).
pub const SERVER_ISN: u32 = 0x5000_0000;
/// Client ISN of every TCP connection.
pub const CLIENT_ISN: u32 = 0x1000_0000;
const PORTS_PER_SERVER: u64 = 64_000;
/// Flow indexes wrap here (64000 ports × 65535 servers in 198.18.0.0/16).
pub const MAX_FLOW: u64 = PORTS_PER_SERVER * 65_535;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// The protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Icmp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Udp => 17,
            Proto::Tcp => 6,
            Proto::Icmp => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Icmp => "icmp",
        }
    }

    fn from_number(n: u8) -> Option<Proto> {
        match n {
            17 => Some(Proto::Udp),
            6 => Some(Proto::Tcp),
            1 => Some(Proto::Icmp),
            _ => None,
        }
    }
}

/// Which protocol each flow uses: flow `i` gets `table[i % table.len()]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    table: Vec<Proto>,
}

impl Mix {
    /// One protocol for every flow.
    pub fn single(p: Proto) -> Mix {
        Mix { table: vec![p] }
    }

    /// From weights, e.g. `udp=2,tcp=1,icmp=1` (a weight may be 0; at most 1000 each).
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut table = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix: {part:?} is not PROTO=WEIGHT"))?;
            let p = match name.trim() {
                "udp" => Proto::Udp,
                "tcp" => Proto::Tcp,
                "icmp" => Proto::Icmp,
                other => {
                    return Err(format!(
                        "--mix: unknown protocol {other:?} (udp, tcp, icmp)"
                    ))
                }
            };
            let w: u32 = w
                .trim()
                .parse()
                .ok()
                .filter(|&w| w <= 1000)
                .ok_or_else(|| format!("--mix: weight {w:?} is not a number in 0..=1000"))?;
            if table.contains(&p) {
                return Err(format!("--mix: {} given twice", p.name()));
            }
            table.resize(table.len() + w as usize, p);
        }
        if table.is_empty() {
            return Err("--mix: all weights are 0".into());
        }
        // Interleave (udp,tcp,icmp,udp,...) rather than runs, so any window of flows
        // has about the mix.
        let mut by: Vec<Vec<Proto>> = Vec::new();
        for p in [Proto::Udp, Proto::Tcp, Proto::Icmp] {
            by.push(table.iter().copied().filter(|&q| q == p).collect());
        }
        let mut out = Vec::with_capacity(table.len());
        let mut k = 0;
        while out.len() < table.len() {
            for v in &by {
                if let Some(&p) = v.get(k) {
                    out.push(p);
                }
            }
            k += 1;
        }
        Ok(Mix { table: out })
    }

    #[inline]
    pub fn of(&self, flow: u64) -> Proto {
        self.table[(flow % self.table.len() as u64) as usize]
    }
}

/// Client address and port of flow `i`.
pub fn client(i: u64) -> ([u8; 4], u16) {
    (
        [10, 0, 0, 2 + (i % 250) as u8],
        1024 + (i % PORTS_PER_SERVER) as u16,
    )
}

/// Server address of flow `i`.
pub fn server(i: u64) -> [u8; 4] {
    let s = 1 + (i % MAX_FLOW) / PORTS_PER_SERVER;
    [198, 18, (s >> 8) as u8, s as u8]
}

/// The flow a (server address, client port) pair belongs to (the inverse of
/// [`client`]/[`server`]).
pub fn flow_of(server: [u8; 4], port: u16) -> u64 {
    let s = u64::from(u16::from_be_bytes([server[2], server[3]]));
    s.saturating_sub(1) * PORTS_PER_SERVER + u64::from(port.wrapping_sub(1024))
}

/// Where the stamp of a frame of protocol `p` sits.
pub fn stamp_offset(p: Proto) -> usize {
    match p {
        Proto::Tcp => L4 + 20,
        Proto::Udp | Proto::Icmp => L4 + 8,
    }
}

/// The first packet of every flow of protocol `p` for flow 0, `size` bytes with FCS
/// (`frame_len = size - 4`): UDP datagram, TCP SYN (`syn`) or data segment (ACK|PSH,
/// seq/ack in the established phase; no payload at 64 bytes), ICMP echo request. Stamp
/// zero. [`set_flow`] turns it into any other flow's.
pub fn template(p: Proto, size: usize, syn: bool, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let len = size - 4;
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let (cip, cport) = client(0);
    // IP length: the whole frame, except TCP control segments (no payload, padding after).
    let ip_len = if p == Proto::Tcp && syn {
        40
    } else {
        (len - 14) as u16
    };
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[20] = 0x40; // DF
    f[22] = 64;
    f[23] = p.number();
    f[26..30].copy_from_slice(&cip);
    f[30..34].copy_from_slice(&server(0));
    match p {
        Proto::Udp => {
            f[L4..L4 + 2].copy_from_slice(&cport.to_be_bytes());
            f[L4 + 2..L4 + 4].copy_from_slice(&53u16.to_be_bytes());
            f[L4 + 4..L4 + 6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        }
        Proto::Tcp => {
            f[L4..L4 + 2].copy_from_slice(&cport.to_be_bytes());
            f[L4 + 2..L4 + 4].copy_from_slice(&443u16.to_be_bytes());
            let (seq, ack, flags) = if syn {
                (CLIENT_ISN, 0, TCP_SYN)
            } else {
                (
                    CLIENT_ISN.wrapping_add(1),
                    SERVER_ISN.wrapping_add(1),
                    TCP_ACK | TCP_PSH,
                )
            };
            f[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
            f[L4 + 8..L4 + 12].copy_from_slice(&ack.to_be_bytes());
            f[L4 + 12] = 5 << 4;
            f[L4 + 13] = flags;
            f[L4 + 14..L4 + 16].copy_from_slice(&65535u16.to_be_bytes());
        }
        Proto::Icmp => {
            f[L4] = 8; // echo request
            f[L4 + 4..L4 + 6].copy_from_slice(&cport.to_be_bytes());
            f[L4 + 6..L4 + 8].copy_from_slice(&1u16.to_be_bytes());
        }
    }
    // Well formed by construction; a failure would be a bug in this builder.
    fill_frame(&mut f).expect("generated frame parses");
    f
}

/// Largest data bytes per fragment for IP packets of at most `mtu` bytes (IPv4 header
/// of 20 bytes, data a multiple of 8).
pub fn fragment_data(mtu: usize) -> usize {
    (mtu.saturating_sub(20) / 8) * 8
}

/// Fragmented datagrams (`--mtu`): flow 0's datagram of `size` bytes with FCS (as
/// [`template`] builds it, with no payload stamp yet) cut into IPv4 fragments of at most
/// `mtu` bytes, DF clear, identification 0. [`set_flow`] applies to the first, whose UDP
/// checksum covers the whole datagram; [`set_flow_later`] to the others.
pub fn fragment_templates(
    p: Proto,
    size: usize,
    mtu: usize,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Vec<Vec<u8>> {
    let whole = template(p, size, false, dst_mac, src_mac);
    ctgate::wire::testframe::fragments(&whole, fragment_data(mtu), 0)
}

/// True for an IPv4 fragment (MF set or a non-zero offset).
#[inline]
pub fn is_fragment(f: &[u8]) -> bool {
    f.len() >= L4 && get16(f, 20) & 0x3fff != 0
}

/// True for a fragment other than the first: no L4 header, no stamp.
#[inline]
pub fn is_later_fragment(f: &[u8]) -> bool {
    f.len() >= L4 && get16(f, 20) & 0x1fff != 0
}

/// A later fragment (data only) of flow `i`: client and server address, IPv4 header
/// checksum updated.
#[inline]
pub fn set_flow_later(f: &mut [u8], i: u64) {
    let (cip, _) = client(i);
    let mut addrs = [0u8; 8];
    addrs[0..4].copy_from_slice(&cip);
    addrs[4..8].copy_from_slice(&server(i));
    let ipc = update_bytes(get16(f, 24), &f[26..34], &addrs);
    put16(f, 24, ipc);
    f[26..34].copy_from_slice(&addrs);
}

/// Sets the IPv4 identification (one per datagram), header checksum updated.
#[inline]
pub fn set_ident(f: &mut [u8], ident: u16) {
    let ipc = update_bytes(get16(f, 24), &f[18..20], &ident.to_be_bytes());
    put16(f, 24, ipc);
    put16(f, 18, ident);
}

/// Offset of the L4 checksum, if the protocol has one that the pseudo header covers.
fn l4_csum_offset(p: Proto) -> usize {
    match p {
        Proto::Udp => L4 + 6,
        Proto::Tcp => L4 + 16,
        Proto::Icmp => L4 + 2,
    }
}

#[inline]
fn get16(f: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([f[o], f[o + 1]])
}

#[inline]
fn put16(f: &mut [u8], o: usize, v: u16) {
    f[o..o + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn update_l4(f: &mut [u8], p: Proto, old: &[u8], new: &[u8]) {
    let o = l4_csum_offset(p);
    let c = get16(f, o);
    // A UDP checksum of 0 means "none": keep it that way (never produced here).
    if p == Proto::Udp && c == 0 {
        return;
    }
    let mut n = update_bytes(c, old, new);
    if p == Proto::Udp && n == 0 {
        n = 0xffff;
    }
    put16(f, o, n);
}

/// Rewrites a frame made by [`template`] (for flow 0, or any flow) as flow `i`'s:
/// client address, server address and client port / echo id, checksums updated.
#[inline]
pub fn set_flow(f: &mut [u8], p: Proto, i: u64) {
    let (cip, cport) = client(i);
    let mut addrs = [0u8; 10];
    addrs[0..4].copy_from_slice(&cip);
    addrs[4..8].copy_from_slice(&server(i));
    addrs[8..10].copy_from_slice(&cport.to_be_bytes());
    let mut old = [0u8; 10];
    old[0..8].copy_from_slice(&f[26..34]);
    let port_off = if p == Proto::Icmp { L4 + 4 } else { L4 };
    old[8..10].copy_from_slice(&f[port_off..port_off + 2]);
    let ipc = update_bytes(get16(f, 24), &old[0..8], &addrs[0..8]);
    put16(f, 24, ipc);
    f[26..34].copy_from_slice(&addrs[0..8]);
    f[port_off..port_off + 2].copy_from_slice(&addrs[8..10]);
    if p == Proto::Icmp {
        update_l4(f, p, &old[8..10], &addrs[8..10]);
    } else {
        update_l4(f, p, &old, &addrs);
    }
}

/// The protocol of one of our frames, or `None` for anything else (too short, not
/// IPv4 without options, another protocol, or shorter than its stamp).
#[inline]
pub fn proto_of_frame(f: &[u8]) -> Option<Proto> {
    if f.len() < L4 + 8 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 {
        return None;
    }
    let p = Proto::from_number(f[23])?;
    (f.len() >= stamp_offset(p) + STAMP_LEN).then_some(p)
}

/// True when the stamp lies inside the IP packet (so the L4 checksum covers it).
#[inline]
fn stamp_in_packet(f: &[u8], p: Proto) -> bool {
    14 + usize::from(get16(f, 16)) >= stamp_offset(p) + STAMP_LEN
}

/// Writes the stamp `tsc` (low 48 bits), updating the L4 checksum when it covers it.
#[inline]
pub fn write_stamp(f: &mut [u8], p: Proto, tsc: u64) {
    let o = stamp_offset(p);
    let new = tsc.to_be_bytes();
    let new = &new[8 - STAMP_LEN..];
    if stamp_in_packet(f, p) {
        let mut old = [0u8; STAMP_LEN];
        old.copy_from_slice(&f[o..o + STAMP_LEN]);
        update_l4(f, p, &old, new);
    }
    f[o..o + STAMP_LEN].copy_from_slice(new);
}

/// The stamp of a frame.
#[inline]
pub fn read_stamp(f: &[u8], p: Proto) -> u64 {
    let o = stamp_offset(p);
    let mut b = [0u8; 8];
    b[8 - STAMP_LEN..].copy_from_slice(&f[o..o + STAMP_LEN]);
    u64::from_be_bytes(b)
}

/// Ticks from stamp `stamp` to `now` on the 48-bit wrapping clock.
#[inline]
pub fn stamp_age(now: u64, stamp: u64) -> u64 {
    now.wrapping_sub(stamp) & ((1u64 << (8 * STAMP_LEN)) - 1)
}

/// The flow of a frame seen at a sink: `outside` for frames that left the outside port
/// (client → server), else frames that left the inside port (server → client).
#[inline]
pub fn flow_of_frame(f: &[u8], p: Proto, outside: bool) -> u64 {
    let mut server = [0u8; 4];
    if outside {
        server.copy_from_slice(&f[30..34]);
    } else {
        server.copy_from_slice(&f[26..30]);
    }
    let port_off = match (p, outside) {
        (Proto::Icmp, _) => L4 + 4,
        (_, true) => L4,
        (_, false) => L4 + 2,
    };
    flow_of(server, get16(f, port_off))
}

/// True when flow `i` gets replies: a fixed pseudo-random `fraction` of the flows.
#[inline]
pub fn has_reply(i: u64, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (h as f64) < fraction * 4_294_967_296.0
}

/// What a sink does with a frame after recording it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Nothing (free it).
    None,
    /// The frame was turned around in place: send it back.
    Reflect,
    /// Turned around in place (an ACK), and a client FIN|ACK should follow: the caller
    /// copies the frame and applies [`client_fin_after_ack`] to the copy.
    ReflectThenFin,
}

/// Swaps MACs, addresses and ports and sets the Ethernet destination: the IPv4 and
/// pseudo-header checksums are unchanged by a swap.
#[inline]
fn turn_around(f: &mut [u8], p: Proto, dst_mac: [u8; 6]) {
    let mut smac = [0u8; 6];
    smac.copy_from_slice(&f[0..6]);
    f[6..12].copy_from_slice(&smac);
    f[0..6].copy_from_slice(&dst_mac);
    for k in 0..4 {
        f.swap(26 + k, 30 + k);
    }
    // A later fragment carries data, not ports.
    if p != Proto::Icmp && !is_later_fragment(f) {
        f.swap(L4, L4 + 2);
        f.swap(L4 + 1, L4 + 3);
    }
}

/// Sets TCP seq, ack and flags, updating the checksum.
#[inline]
fn set_tcp(f: &mut [u8], seq: u32, ack: u32, flags: u8) {
    let mut old = [0u8; 10];
    old.copy_from_slice(&f[L4 + 4..L4 + 14]);
    let mut new = old;
    new[0..4].copy_from_slice(&seq.to_be_bytes());
    new[4..8].copy_from_slice(&ack.to_be_bytes());
    new[9] = flags;
    update_l4(f, Proto::Tcp, &old, &new);
    f[L4 + 4..L4 + 14].copy_from_slice(&new);
}

/// TCP (seq, ack, flags, payload length) of a frame.
#[inline]
pub fn tcp_fields(f: &[u8]) -> (u32, u32, u8, u32) {
    let seq = u32::from_be_bytes([f[L4 + 4], f[L4 + 5], f[L4 + 6], f[L4 + 7]]);
    let ack = u32::from_be_bytes([f[L4 + 8], f[L4 + 9], f[L4 + 10], f[L4 + 11]]);
    let hdr = usize::from(f[L4 + 12] >> 4) * 4;
    let payload = usize::from(get16(f, 16)).saturating_sub(20 + hdr) as u32;
    (seq, ack, f[L4 + 13], payload)
}

/// The outside reflector (the servers): a frame that left the outside port, client →
/// server. UDP and ICMP echo requests of replied flows come back (echo reply); TCP SYN
/// → SYN|ACK, client FIN → FIN|ACK, data (ACK|PSH) → ACK; pure ACKs and RSTs are not
/// answered. `dst_mac` is the outside port's MAC. The caller restamps a reflected frame.
#[inline]
pub fn reflect_outside(f: &mut [u8], p: Proto, dst_mac: [u8; 6]) -> Answer {
    match p {
        Proto::Udp => {
            turn_around(f, p, dst_mac);
            Answer::Reflect
        }
        Proto::Icmp => {
            if f[L4] != 8 {
                return Answer::None;
            }
            turn_around(f, p, dst_mac);
            f[L4] = 0;
            update_l4(f, p, &[8, 0], &[0, 0]);
            Answer::Reflect
        }
        Proto::Tcp => {
            let (seq, ack, flags, len) = tcp_fields(f);
            let (nseq, nack, nflags) = if flags & TCP_RST != 0 {
                return Answer::None;
            } else if flags & TCP_SYN != 0 {
                (SERVER_ISN, seq.wrapping_add(1), TCP_SYN | TCP_ACK)
            } else if flags & TCP_FIN != 0 {
                (
                    ack,
                    seq.wrapping_add(len).wrapping_add(1),
                    TCP_FIN | TCP_ACK,
                )
            } else if flags & TCP_PSH != 0 {
                (ack, seq.wrapping_add(len), TCP_ACK)
            } else {
                return Answer::None;
            };
            turn_around(f, p, dst_mac);
            // The answer carries no payload: cut the IP packet to the header (the frame
            // keeps its length; the rest is Ethernet padding).
            shrink_tcp_to_header(f);
            set_tcp(f, nseq, nack, nflags);
            Answer::Reflect
        }
    }
}

/// Sets the IP total length of a TCP frame to 40 (no payload), updating the IPv4 and
/// TCP checksums (the TCP checksum covers the length through the pseudo header and the
/// payload it no longer includes).
fn shrink_tcp_to_header(f: &mut [u8]) {
    let old_len = get16(f, 16);
    if old_len == 40 {
        return;
    }
    let ipc = update_bytes(get16(f, 24), &old_len.to_be_bytes(), &40u16.to_be_bytes());
    put16(f, 24, ipc);
    put16(f, 16, 40);
    // Recompute the TCP checksum over the header alone.
    let mut src = [0u8; 4];
    let mut dst = [0u8; 4];
    src.copy_from_slice(&f[26..30]);
    dst.copy_from_slice(&f[30..34]);
    put16(f, L4 + 16, 0);
    let c = ctgate::wire::checksum::tcp_v4(&src, &dst, &f[L4..L4 + 20]);
    put16(f, L4 + 16, c);
}

/// The inside reflector (the clients): a frame that left the inside port, server →
/// client. TCP SYN|ACK → ACK (and with `close` a client FIN|ACK after it: the caller
/// sends a copy through [`client_fin_after_ack`]); server FIN|ACK → the final ACK.
/// Everything else is only recorded. `dst_mac` is the inside port's MAC.
#[inline]
pub fn reflect_inside(f: &mut [u8], p: Proto, dst_mac: [u8; 6], close: bool) -> Answer {
    if p != Proto::Tcp {
        return Answer::None;
    }
    let (seq, ack, flags, len) = tcp_fields(f);
    if flags & TCP_ACK == 0 || flags & TCP_RST != 0 {
        return Answer::None;
    }
    if flags & TCP_SYN != 0 {
        turn_around(f, p, dst_mac);
        shrink_tcp_to_header(f);
        set_tcp(f, ack, seq.wrapping_add(1), TCP_ACK);
        if close {
            Answer::ReflectThenFin
        } else {
            Answer::Reflect
        }
    } else if flags & TCP_FIN != 0 {
        turn_around(f, p, dst_mac);
        shrink_tcp_to_header(f);
        set_tcp(f, ack, seq.wrapping_add(len).wrapping_add(1), TCP_ACK);
        Answer::Reflect
    } else {
        Answer::None
    }
}

/// Turns a copy of the client's handshake ACK (as [`reflect_inside`] made it) into the
/// client's FIN|ACK: same seq and ack.
#[inline]
pub fn client_fin_after_ack(f: &mut [u8]) {
    let (seq, ack, _, _) = tcp_fields(f);
    set_tcp(f, seq, ack, TCP_FIN | TCP_ACK);
}

/// The protocol and stamp of a frame at a sink, or `None` for a foreign frame.
#[inline]
pub fn classify(f: &[u8]) -> Option<(Proto, u64)> {
    if is_later_fragment(f) && f[12..14] == [0x08, 0x00] && f[14] == 0x45 {
        // Data only (maybe a few bytes): ours when UDP; no stamp.
        return (f[23] == 17).then_some((Proto::Udp, 0));
    }
    let p = proto_of_frame(f)?;
    Some((p, read_stamp(f, p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctgate::wire::frame_checksums::verify_frame;

    /// `--size 3000 --mtu 1500`: three fragments of at most 1,500 bytes of IP packet;
    /// set to another flow, identification and stamp, they still reassemble into a
    /// datagram whose checksums verify, addressed to that flow.
    #[test]
    fn fragments_of_another_flow_reassemble_to_a_valid_datagram() {
        let mut frags = fragment_templates(Proto::Udp, 3000, 1500, [2; 6], [4; 6]);
        assert_eq!(frags.len(), 3);
        assert!(frags.iter().all(|f| f.len() - 14 <= 1500 && is_fragment(f)));
        assert!(!is_later_fragment(&frags[0]) && is_later_fragment(&frags[2]));
        let i = 70_123;
        for (k, f) in frags.iter_mut().enumerate() {
            if k == 0 {
                set_flow(f, Proto::Udp, i);
                write_stamp(f, Proto::Udp, 0xdead_beef);
            } else {
                set_flow_later(f, i);
            }
            set_ident(f, 0x4242);
            assert_eq!(verify_frame(f), Ok(()), "IPv4 header of fragment {k}");
        }
        let mut whole = frags[0][..34].to_vec();
        for f in &frags {
            whole.extend_from_slice(&f[34..]);
        }
        let total = (whole.len() - 14) as u16;
        whole[16..18].copy_from_slice(&total.to_be_bytes());
        whole[20..22].copy_from_slice(&[0, 0]);
        whole[24..26].copy_from_slice(&[0, 0]);
        let c = ctgate::wire::checksum::ipv4_header(&whole[14..34]);
        whole[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(whole.len(), 3000 - 4);
        assert_eq!(
            verify_frame(&whole),
            Ok(()),
            "UDP checksum over the datagram"
        );
        assert_eq!(whole[26..30], client(i).0);
        assert_eq!(whole[30..34], server(i));
        assert_eq!(read_stamp(&whole, Proto::Udp), 0xdead_beef);
    }
    use ctgate::wire::parse::{parse_frame, L4Summary};
    use std::collections::HashSet;

    const IN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
    const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xbb];
    const CLIENT: [u8; 6] = [2, 0, 0, 0, 1, 2];

    fn frame(p: Proto, size: usize, syn: bool, i: u64, stamp: u64) -> Vec<u8> {
        let mut f = template(p, size, syn, IN_MAC, CLIENT);
        set_flow(&mut f, p, i);
        write_stamp(&mut f, p, stamp);
        f
    }

    /// Applies SNAT as the gateway would (source 192.0.2.1, port kept), with checksums.
    fn snat(f: &mut [u8]) {
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[24..26].copy_from_slice(&[0, 0]);
        fill_frame(f).unwrap();
    }

    #[test]
    fn every_frame_parses_with_valid_checksums_and_the_asked_size() {
        for p in [Proto::Udp, Proto::Tcp, Proto::Icmp] {
            for size in [64, 65, 128, 1518] {
                for syn in [false, true] {
                    for i in [0u64, 1, 249, 250, 63_999, 64_000, 1_000_003, MAX_FLOW - 1] {
                        let f = frame(p, size, syn, i, 0x1234_5678_9abc_def0 ^ i);
                        assert_eq!(f.len(), size - 4);
                        verify_frame(&f).unwrap_or_else(|e| panic!("{p:?} {size} {i}: {e:?}"));
                        let pp = parse_frame(&f).unwrap();
                        assert_eq!(pp.proto, p.number());
                        assert_eq!(&pp.src[..4], &client(i).0);
                        assert_eq!(&pp.dst[..4], &server(i));
                        assert_eq!(flow_of_frame(&f, p, true), i);
                        assert_eq!(
                            read_stamp(&f, p),
                            (0x1234_5678_9abc_def0 ^ i) & 0xffff_ffff_ffff
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn flows_are_distinct_five_tuples() {
        let mix = Mix::parse("udp=2,tcp=1,icmp=1").unwrap();
        let mut seen = HashSet::new();
        let n = 200_000u64;
        let mut count = [0u64; 3];
        for i in 0..n {
            let p = mix.of(i);
            let f = frame(p, 64, false, i, 1);
            let pp = parse_frame(&f).unwrap();
            let (sp, dp) = match pp.l4 {
                L4Summary::Udp { sport, dport } => (sport, dport),
                L4Summary::Tcp(t) => (t.sport, t.dport),
                L4Summary::Icmp(c) => (c.id, 0),
                other => panic!("{other:?}"),
            };
            seen.insert((pp.src, pp.dst, pp.proto, sp, dp));
            count[match p {
                Proto::Udp => 0,
                Proto::Tcp => 1,
                Proto::Icmp => 2,
            }] += 1;
        }
        assert_eq!(seen.len() as u64, n);
        assert_eq!(count, [n / 2, n / 4, n / 4]);
    }

    #[test]
    fn mix_parses_weights_and_rejects_nonsense() {
        let m = Mix::parse("udp=1,icmp=3").unwrap();
        let k: Vec<Proto> = (0..8).map(|i| m.of(i)).collect();
        assert_eq!(k.iter().filter(|&&p| p == Proto::Icmp).count(), 6);
        assert!(!k.contains(&Proto::Tcp));
        for bad in [
            "",
            "udp=0",
            "udp",
            "sctp=1",
            "udp=x",
            "udp=1,udp=2",
            "udp=5000",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tcp_reflectors_make_a_handshake_and_teardown_in_window() {
        // SYN leaves the outside port (after SNAT).
        let mut f = frame(Proto::Tcp, 64, true, 77, 5);
        snat(&mut f);
        let (seq, _, flags, _) = tcp_fields(&f);
        assert_eq!((seq, flags), (CLIENT_ISN, TCP_SYN));
        assert_eq!(
            reflect_outside(&mut f, Proto::Tcp, OUT_MAC),
            Answer::Reflect
        );
        verify_frame(&f).unwrap();
        assert_eq!(&f[0..6], &OUT_MAC);
        assert_eq!(
            tcp_fields(&f),
            (SERVER_ISN, CLIENT_ISN + 1, TCP_SYN | TCP_ACK, 0)
        );
        assert_eq!(&f[30..34], &[192, 0, 2, 1]);
        // The gateway un-NATs it to the client; the inside reflector answers.
        f[30..34].copy_from_slice(&client(77).0);
        fill_frame(&mut f).unwrap();
        assert_eq!(
            reflect_inside(&mut f, Proto::Tcp, IN_MAC, true),
            Answer::ReflectThenFin
        );
        verify_frame(&f).unwrap();
        assert_eq!(tcp_fields(&f), (CLIENT_ISN + 1, SERVER_ISN + 1, TCP_ACK, 0));
        let mut fin = f.clone();
        client_fin_after_ack(&mut fin);
        verify_frame(&fin).unwrap();
        assert_eq!(
            tcp_fields(&fin),
            (CLIENT_ISN + 1, SERVER_ISN + 1, TCP_FIN | TCP_ACK, 0)
        );
        // The pure ACK is not answered; the FIN is.
        snat(&mut f);
        assert_eq!(reflect_outside(&mut f, Proto::Tcp, OUT_MAC), Answer::None);
        snat(&mut fin);
        assert_eq!(
            reflect_outside(&mut fin, Proto::Tcp, OUT_MAC),
            Answer::Reflect
        );
        verify_frame(&fin).unwrap();
        assert_eq!(
            tcp_fields(&fin),
            (SERVER_ISN + 1, CLIENT_ISN + 2, TCP_FIN | TCP_ACK, 0)
        );
        fin[30..34].copy_from_slice(&client(77).0);
        fill_frame(&mut fin).unwrap();
        assert_eq!(
            reflect_inside(&mut fin, Proto::Tcp, IN_MAC, true),
            Answer::Reflect
        );
        verify_frame(&fin).unwrap();
        assert_eq!(
            tcp_fields(&fin),
            (CLIENT_ISN + 2, SERVER_ISN + 2, TCP_ACK, 0)
        );
        assert_eq!(flow_of_frame(&fin, Proto::Tcp, true), 77);
    }

    #[test]
    fn tcp_data_is_acked_and_udp_icmp_come_back() {
        let mut f = frame(Proto::Tcp, 200, false, 5, 9);
        let (seq, ack, flags, len) = tcp_fields(&f);
        assert_eq!(
            (seq, ack, flags),
            (CLIENT_ISN + 1, SERVER_ISN + 1, TCP_ACK | TCP_PSH)
        );
        assert_eq!(len, 200 - 4 - 54);
        snat(&mut f);
        assert_eq!(
            reflect_outside(&mut f, Proto::Tcp, OUT_MAC),
            Answer::Reflect
        );
        verify_frame(&f).unwrap();
        assert_eq!(
            tcp_fields(&f),
            (SERVER_ISN + 1, CLIENT_ISN + 1 + len, TCP_ACK, 0)
        );
        write_stamp(&mut f, Proto::Tcp, 42);
        verify_frame(&f).unwrap();

        let mut u = frame(Proto::Udp, 64, false, 9, 1);
        snat(&mut u);
        assert_eq!(
            reflect_outside(&mut u, Proto::Udp, OUT_MAC),
            Answer::Reflect
        );
        write_stamp(&mut u, Proto::Udp, 99);
        verify_frame(&u).unwrap();
        assert_eq!(&u[26..30], &server(9));
        assert_eq!(flow_of_frame(&u, Proto::Udp, false), 9);
        assert_eq!(
            reflect_inside(&mut u, Proto::Udp, IN_MAC, true),
            Answer::None
        );

        let mut c = frame(Proto::Icmp, 64, false, 11, 1);
        snat(&mut c);
        assert_eq!(
            reflect_outside(&mut c, Proto::Icmp, OUT_MAC),
            Answer::Reflect
        );
        verify_frame(&c).unwrap();
        assert_eq!(c[L4], 0);
        assert_eq!(flow_of_frame(&c, Proto::Icmp, false), 11);
    }

    #[test]
    fn foreign_frames_are_not_ours() {
        assert_eq!(classify(&[0u8; 10]), None);
        let mut f = frame(Proto::Udp, 64, false, 1, 1);
        f[23] = 47;
        assert_eq!(classify(&f), None);
        assert_eq!(classify(&f[..40]), None);
    }

    #[test]
    fn reply_fraction_picks_about_that_many_flows() {
        let n = 100_000;
        let k = (0..n).filter(|&i| has_reply(i, 0.25)).count() as f64;
        assert!((k / n as f64 - 0.25).abs() < 0.01, "{k}");
        assert!((0..n).all(|i| has_reply(i, 1.0)));
        assert!((0..n).all(|i| !has_reply(i, 0.0)));
        assert_eq!(stamp_age(5, (1 << 48) - 3), 8);
    }
}
