//! Seeded random traces for the differential test against Open vSwitch.
//!
//! A trace interleaves many flows, each following a small script:
//! * TCP: handshakes (with and without window scaling, retransmitted SYN/SYN+ACK,
//!   refused with RST, half-open), data both ways, teardown by FIN (either side first,
//!   simultaneous, half-close) or RST, port reuse after close, late strays, mid-stream
//!   pick-up, and faults: out-of-window sequence numbers and acks, retransmissions,
//!   invalid flag combinations, RSTs with a wrong sequence number, stray SYN+ACKs;
//! * UDP one-way and answered;
//! * ICMP echo (and ICMPv4 timestamp) with and without replies, stray echo replies;
//! * other IP protocols (GRE 47, ESP 50, VRRP 112), one-way and both ways;
//! * SCTP (DATA chunks, CRC32c) both ways, without NAT sometimes several associations
//!   between the same two hosts (which OVS 3.1, keying SCTP without ports, merges: X5);
//!   not in DNAT traces (OVS 3.1 translates SCTP by address only, ctgate its port too);
//! * ICMP/ICMPv6 errors (unreachable, fragmentation needed / packet too big, time
//!   exceeded, parameter problem, redirect, source quench) quoting a packet of a flow in
//!   either direction, whole or cut to 8 bytes of L4, from the peer or from a router; errors
//!   whose quote does not match their destination; stray errors about no flow;
//! * IPv4 and IPv6 (some flows with an IPv6 extension header, some IPv4 with options, some
//!   VLAN-tagged), the odd ARP frame, and duplicates with a broken checksum.
//!
//! Every checksum is right (OVS verifies them) except in the deliberately broken
//! duplicates. Packets come in *ticks*: a tick's packets share one timestamp, and the
//! driver feeds OVS one tick at a time with its clock warped to the tick's time, so both
//! trackers see the same clock. Between ticks time moves by a few ms; with `gaps`, it
//! sometimes jumps by 31–80 s so that connections expire.
//!
//! In NAT mode (`nat` set), every flow is started by an inside host (10.1.0.0/16,
//! fd01::/64) and the outside answers the pool address, as it would behind a source NAT;
//! every flow has its own source port / ICMP id (and other-protocol flows their own
//! destination), so the translation is determined (the pool address, ports kept), and
//! there are no gaps (an outside packet arriving after its connection expired would be
//! committed by `ctgate-perf replay` but not by `ct(nat)`).

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctgate::wire::frame_checksums::fill_frame;
use ctgate::wire::testframe::{Frame, L4};

/// splitmix64: small, seeded, good enough for traces.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn u32(&mut self) -> u32 {
        self.u64() as u32
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    /// Uniform in `a..=b`.
    pub fn range(&mut self, a: u64, b: u64) -> u64 {
        a + self.below(b - a + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Index picked with the given weights.
    pub fn weighted(&mut self, w: &[u32]) -> usize {
        let total: u64 = w.iter().map(|&x| x as u64).sum();
        let mut r = self.below(total);
        for (i, &x) in w.iter().enumerate() {
            if r < x as u64 {
                return i;
            }
            r -= x as u64;
        }
        w.len() - 1
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u64() as u8).collect()
    }
}

/// Generator settings.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub seed: u64,
    /// Packets to generate (the trace may end a few packets later).
    pub packets: usize,
    /// NAT mode: flows only from inside, translation determined (see the module doc).
    pub nat: bool,
    /// In NAT mode, the family whose inside sources are translated to the pool (IPv6 when
    /// true); the other family's flows are not translated.
    pub nat_v6: bool,
    /// DNAT mode (a port forward): every IPv4 flow goes from an outside client to
    /// [`DNAT_PUBLIC`] and is translated to [`DNAT_SERVER`]:[`DNAT_PORT`] (ICMP and other
    /// protocols by address); IPv6 flows are not translated. Same restrictions as `nat`.
    pub dnat: bool,
    /// Idle gaps of 31–80 s that make connections expire (not in NAT mode).
    pub gaps: bool,
}

/// One packet of a trace.
#[derive(Clone, Debug)]
pub struct TracePacket {
    /// Capture time in ms since the epoch (the tick's time).
    pub ts_ms: u64,
    /// The Ethernet frame; its destination MAC carries the packet number.
    pub data: Vec<u8>,
    /// What the generator meant (for reports): flow, direction, segment.
    pub what: String,
    /// For an ICMP error: the quoted packet as the error's receiver must get it when the
    /// error is RELATED (in NAT traces: translated back to what its sender sent).
    pub expect_quote: Option<Vec<u8>>,
}

/// A generated trace: packets in order and the ticks that group them.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub packets: Vec<TracePacket>,
    /// Half-open index ranges into `packets`; a tick's packets share one timestamp.
    pub ticks: Vec<std::ops::Range<usize>>,
}

impl Trace {
    /// Appends `frame` as a tick of its own at `ts_ms`, numbered in its destination MAC.
    pub fn push_tick(
        &mut self,
        ts_ms: u64,
        mut frame: Vec<u8>,
        what: String,
        expect_quote: Option<Vec<u8>>,
    ) {
        let i = self.packets.len();
        frame[..6].copy_from_slice(&id_mac(i));
        self.packets.push(TracePacket {
            ts_ms,
            data: frame,
            what,
            expect_quote,
        });
        self.ticks.push(i..i + 1);
    }
}

/// An address of a hand-built scenario, from its text.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A hand-built frame framed as the random traces frame theirs by default
/// ([`Framing`]'s default: no VLAN, IPv4 identification 1 without DF, IPv6 flow label 1,
/// TTL 64, MACs 00:00:00:00:00:00 <- [`SRC_MAC`]), by the library's test-frame builder;
/// the caller may override a field before `build`.
pub fn framed(src: IpAddr, dst: IpAddr, l4: L4) -> Frame {
    Frame::ip(src, dst, l4)
        .macs([0; 6], SRC_MAC)
        .ident(1)
        .dont_frag(false)
        .flow_label(1)
}

/// [`framed`] between two addresses given as text, built.
pub fn packet(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    framed(ip(src), ip(dst), l4).build()
}

/// The source MAC of every generated frame.
pub const SRC_MAC: [u8; 6] = [0x02, 0x5e, 0x00, 0x00, 0x00, 0x01];

/// The destination MAC carrying packet number `i` (0-based).
pub fn id_mac(i: usize) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, 0x1d, b[0], b[1], b[2], b[3]]
}

/// The packet number a destination MAC carries, if it is one of ours.
pub fn mac_id(mac: &[u8]) -> Option<usize> {
    (mac.len() >= 6 && mac[0] == 0x02 && mac[1] == 0x1d)
        .then(|| u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) as usize)
}

/// The SNAT pool addresses the NAT runs use.
pub const POOL_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);
pub const POOL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 1);
/// The DNAT run's public address and the inside server it forwards to.
pub const DNAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
pub const DNAT_SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 50);
pub const DNAT_PORT: u16 = 8080;
/// Inside prefixes (the NAT flows match them as sources).
pub const INSIDE_V4: &str = "10.1.0.0/16";
pub const INSIDE_V6: &str = "fd01::/64";

pub const BASE_TS_MS: u64 = 1_700_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

/// How a flow's packets are framed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Framing {
    pub vlan: Option<u16>,
    /// IPv6: a Destination Options (60) or Hop-by-Hop (0) header before L4.
    pub ext: Option<u8>,
    /// IPv4: 4 bytes of options (NOP, NOP, NOP, EOL).
    pub ip_opts: bool,
    pub df: bool,
}

fn inside(fam: Fam, n: u64) -> IpAddr {
    match fam {
        Fam::V4 => IpAddr::V4(Ipv4Addr::new(10, 1, (n / 250) as u8, (n % 250 + 1) as u8)),
        Fam::V6 => IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, n as u16 + 1)),
    }
}

fn outside(fam: Fam, n: u64) -> IpAddr {
    match fam {
        Fam::V4 if n < 250 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, (n + 1) as u8)),
        Fam::V4 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, (n % 250 + 1) as u8)),
        Fam::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n as u16 + 1)),
    }
}

/// Routers sending ICMP errors: on the outside, or on the inside (10.1.255.x, fd01::ff:x).
fn router(fam: Fam, inside_net: bool, n: u64) -> IpAddr {
    match (fam, inside_net) {
        (Fam::V4, false) => IpAddr::V4(Ipv4Addr::new(203, 0, 113, (n % 9 + 1) as u8)),
        (Fam::V4, true) => IpAddr::V4(Ipv4Addr::new(10, 1, 255, (n % 9 + 1) as u8)),
        (Fam::V6, false) => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xffff,
            0,
            0,
            0,
            0,
            n as u16 % 9 + 1,
        )),
        (Fam::V6, true) => IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0xff, n as u16 % 9 + 1)),
    }
}

fn pool(fam: Fam) -> IpAddr {
    match fam {
        Fam::V4 => IpAddr::V4(POOL_V4),
        Fam::V6 => IpAddr::V6(POOL_V6),
    }
}

fn fam_of(a: &IpAddr) -> Fam {
    match a {
        IpAddr::V4(_) => Fam::V4,
        IpAddr::V6(_) => Fam::V6,
    }
}

fn push_addr(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
        IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
    }
}

/// An IP packet (no Ethernet) around `l4`, checksum fields of IP left for `fill_frame`.
pub fn ip_packet(
    src: &IpAddr,
    dst: &IpAddr,
    proto: u8,
    l4: &[u8],
    fr: &Framing,
    ttl: u8,
    id: u16,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(60 + l4.len());
    match fam_of(src) {
        Fam::V4 => {
            let hl = if fr.ip_opts { 24 } else { 20 };
            p.push(0x40 | (hl / 4) as u8);
            p.push(0);
            p.extend_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&(if fr.df { 0x4000u16 } else { 0 }).to_be_bytes());
            p.push(ttl);
            p.push(proto);
            p.extend_from_slice(&[0, 0]);
            push_addr(&mut p, src);
            push_addr(&mut p, dst);
            if fr.ip_opts {
                p.extend_from_slice(&[1, 1, 1, 0]);
            }
        }
        Fam::V6 => {
            let ext_len = if fr.ext.is_some() { 8 } else { 0 };
            p.extend_from_slice(&[0x60, 0, (id >> 8) as u8 & 0x0f, id as u8]);
            p.extend_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
            p.push(fr.ext.unwrap_or(proto));
            p.push(ttl);
            push_addr(&mut p, src);
            push_addr(&mut p, dst);
            if fr.ext.is_some() {
                // Next header, length 0 (8 bytes), PadN option of 4 bytes.
                p.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
            }
        }
    }
    p.extend_from_slice(l4);
    p
}

/// An Ethernet frame around an IP packet, with every checksum filled.
pub fn frame(ip: &[u8], fr: &Framing) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + ip.len());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&SRC_MAC);
    if let Some(v) = fr.vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    let et: u16 = if ip[0] >> 4 == 4 { 0x0800 } else { 0x86dd };
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(ip);
    fill_frame(&mut f).expect("generated frame parses");
    f
}

/// The IP packet of a finished frame (checksums included).
pub fn ip_of(f: &[u8], fr: &Framing) -> Vec<u8> {
    f[if fr.vlan.is_some() { 18 } else { 14 }..].to_vec()
}

pub mod tcpf {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_segment(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hl = 20 + opts.len();
    let mut s = Vec::with_capacity(hl + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(((hl / 4) as u8) << 4);
    s.push(flags);
    s.extend_from_slice(&win.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(opts);
    s.extend_from_slice(payload);
    s
}

pub fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

/// An SCTP packet with one DATA chunk carrying `payload` (CRC32c left for `fill_frame`).
pub fn sctp_data(sport: u16, dport: u16, tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(32 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&tag.to_be_bytes());
    s.extend_from_slice(&[0; 4]);
    // DATA: type 0, flags B|E, length, TSN, stream 0, sequence 0, PPID 0, data.
    s.extend_from_slice(&[0, 3]);
    s.extend_from_slice(&(16 + payload.len() as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    s.resize((s.len() + 3) & !3, 0);
    s
}

pub fn icmp_message(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(&rest);
    s.extend_from_slice(body);
    s
}

#[derive(Clone, Copy, Debug, Default)]
struct TcpEnd {
    isn: u32,
    nxt: u32,
    win: u16,
    ws: Option<u8>,
    /// Last segment sent: (seq, ack, flags, payload length).
    last: Option<(u32, u32, u8, u16)>,
}

#[derive(Clone, Copy, Debug)]
enum TcpAct {
    Syn(usize),
    SynAck(usize),
    Ack(usize),
    Data(usize, u16),
    Fin(usize),
    Rst(usize, bool),
    OowSeq(usize),
    OowAck(usize),
    Retrans(usize),
    BadFlags(usize),
    RstBadSeq(usize),
    /// New ISNs on both ends (port reuse), then the script goes on.
    Reuse,
}

#[derive(Clone, Debug)]
enum Kind {
    Tcp {
        ends: [TcpEnd; 2],
        script: VecDeque<TcpAct>,
    },
    /// UDP or another protocol: the directions of the packets to send.
    Datagram { dirs: VecDeque<usize> },
    /// ICMP echo / timestamp: (direction, is_reply) per packet.
    Echo {
        ts: bool,
        seq: u16,
        script: VecDeque<usize>,
    },
}

#[derive(Clone, Debug)]
struct Flow {
    id: usize,
    name: &'static str,
    /// End 0 (the initiator, A) and end 1 (B) as they address each other on their side:
    /// `addr[0]` is A's own address, `wire_a` the address B sees for A (the pool in NAT
    /// mode), `addr[1]` B's address.
    addr: [IpAddr; 2],
    wire_a: IpAddr,
    /// B's address and port as A addresses them (DNAT's public address and port).
    wire_b: IpAddr,
    wire_bport: u16,
    /// B is on the inside (DNAT): routers on B's side are inside ones.
    b_inside: bool,
    proto: u8,
    /// Ports (TCP/UDP) or (identifier, 0) for ICMP.
    port: [u16; 2],
    framing: Framing,
    kind: Kind,
    /// The last IP packet per direction as its receiver saw it (for ICMP errors).
    seen: [Option<Vec<u8>>; 2],
    /// The same packets as their sender sent them.
    sent: [Option<Vec<u8>>; 2],
}

impl Flow {
    fn done(&self) -> bool {
        match &self.kind {
            Kind::Tcp { script, .. } => script.is_empty(),
            Kind::Datagram { dirs } => dirs.is_empty(),
            Kind::Echo { script, .. } => script.is_empty(),
        }
    }

    fn src_dst(&self, dir: usize) -> (IpAddr, IpAddr) {
        if dir == 0 {
            (self.addr[0], self.wire_b)
        } else {
            (self.addr[1], self.wire_a)
        }
    }

    /// (source, destination) ports of a packet in `dir` as sent, or as its receiver sees
    /// it (`seen`).
    fn ports(&self, dir: usize, seen: bool) -> (u16, u16) {
        match (dir, seen) {
            (0, false) => (self.port[0], self.wire_bport),
            (0, true) => (self.port[0], self.port[1]),
            (_, false) => (self.port[1], self.port[0]),
            (_, true) => (self.wire_bport, self.port[0]),
        }
    }

    /// The packet as the receiver sees it (A→B leaves with the pool address in NAT mode).
    fn seen_src_dst(&self, dir: usize) -> (IpAddr, IpAddr) {
        if dir == 0 {
            (self.wire_a, self.addr[1])
        } else {
            (self.wire_b, self.addr[0])
        }
    }
}

/// The generator's state.
struct Gen {
    cfg: GenConfig,
    rng: Rng,
    flows: Vec<Flow>,
    /// Finished flows (for late ICMP errors), most recent last, bounded.
    recent: VecDeque<Flow>,
    next_flow: usize,
    /// Tuples in use in plain mode: (proto, a, b, port a, port b) either way.
    used_ports: HashSet<u16>,
    used_other: HashSet<(u8, IpAddr)>,
    ip_id: u16,
    out: Vec<TracePacket>,
    tick_ts: u64,
}

/// Generates a trace.
pub fn generate(cfg: &GenConfig) -> Trace {
    let mut g = Gen {
        cfg: cfg.clone(),
        rng: Rng::new(cfg.seed),
        flows: Vec::new(),
        recent: VecDeque::new(),
        next_flow: 0,
        used_ports: HashSet::new(),
        used_other: HashSet::new(),
        ip_id: 1,
        out: Vec::new(),
        tick_ts: BASE_TS_MS,
    };
    let mut trace = Trace::default();
    let mut gaps_left = if cfg.gaps { 3 } else { 0 };
    let target_active = 6 + g.rng.below(30) as usize;
    while g.out.len() < cfg.packets {
        let start = g.out.len();
        let n = g.rng.range(1, 24) as usize;
        for _ in 0..n {
            g.step(target_active);
        }
        if g.out.len() > start {
            trace.ticks.push(start..g.out.len());
        }
        // Time to the next tick.
        let left = cfg.packets.saturating_sub(g.out.len());
        if gaps_left > 0 && left > 200 && g.rng.chance(0.006) {
            gaps_left -= 1;
            let gap = match g.rng.below(3) {
                0 => g.rng.range(31_000, 44_000),
                1 => g.rng.range(46_000, 59_000),
                _ => g.rng.range(61_000, 80_000),
            };
            g.tick_ts += gap;
        } else {
            g.tick_ts += g.rng.range(1, 5);
        }
    }
    for (i, p) in g.out.iter_mut().enumerate() {
        p.data[..6].copy_from_slice(&id_mac(i));
    }
    trace.packets = g.out;
    trace
}

impl Gen {
    /// True when `fam` is translated in this trace.
    fn nat_family(&self, fam: Fam) -> bool {
        self.cfg.nat && (fam == Fam::V6) == self.cfg.nat_v6
    }

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1 + self.rng.below(7) as u16);
        self.ip_id
    }

    fn emit(&mut self, data: Vec<u8>, what: String) {
        self.emit_with(data, what, None)
    }

    fn emit_with(&mut self, data: Vec<u8>, what: String, expect_quote: Option<Vec<u8>>) {
        // Now and then a duplicate with a broken checksum goes first: both trackers must
        // call it invalid and leave the connection alone.
        if self.rng.chance(0.02) {
            let mut bad = data.clone();
            let l3 = if bad[12] == 0x81 { 18 } else { 14 };
            if bad[l3] >> 4 == 4 && self.rng.chance(0.5) {
                // The IPv4 header checksum.
                bad[l3 + 10] ^= 0x01;
            } else if let Some(b) = bad.last_mut() {
                // The last byte is covered by the TCP/UDP/ICMP checksum (protocols
                // without one just get a different payload).
                *b ^= 0x5a;
            }
            self.out.push(TracePacket {
                ts_ms: self.tick_ts,
                data: bad,
                what: format!("{what} [bad checksum]"),
                expect_quote: None,
            });
        }
        self.out.push(TracePacket {
            ts_ms: self.tick_ts,
            data,
            what,
            expect_quote,
        });
    }

    fn step(&mut self, target_active: usize) {
        while self.flows.len() < target_active {
            self.spawn();
        }
        match self.rng.weighted(&[86, 7, 3, 1]) {
            0 => {
                let i = self.rng.below(self.flows.len() as u64) as usize;
                self.advance(i);
                if self.flows[i].done() {
                    let f = self.flows.swap_remove(i);
                    self.recent.push_back(f);
                    if self.recent.len() > 64 {
                        self.recent.pop_front();
                    }
                }
            }
            1 => self.icmp_error(),
            2 => self.stray(),
            _ => self.arp(),
        }
    }

    fn fresh_port(&mut self) -> u16 {
        loop {
            let p = self.rng.range(1024, 65535) as u16;
            if self.used_ports.insert(p) {
                return p;
            }
        }
    }

    fn spawn(&mut self) {
        let fam = if self.rng.chance(0.62) {
            Fam::V4
        } else {
            Fam::V6
        };
        let nat = self.cfg.nat || self.cfg.dnat;
        let dnat = self.cfg.dnat && fam == Fam::V4;
        // Endpoints: in NAT mode A is inside and B outside (DNAT: A an outside client, B
        // the server); otherwise any two hosts.
        let a = if (nat && !self.cfg.dnat) || (!nat && self.rng.chance(0.5)) {
            inside(fam, self.rng.below(24))
        } else {
            outside(fam, self.rng.below(40))
        };
        let b = if dnat {
            IpAddr::V4(DNAT_SERVER)
        } else if self.cfg.dnat {
            inside(fam, 100 + self.rng.below(24))
        } else if nat || self.rng.chance(0.6) {
            outside(fam, self.rng.below(40))
        } else {
            inside(fam, 100 + self.rng.below(24))
        };
        let wire_a = if self.nat_family(fam) { pool(fam) } else { a };
        let wire_b = if dnat { IpAddr::V4(DNAT_PUBLIC) } else { b };
        let framing = Framing {
            vlan: self
                .rng
                .chance(0.03)
                .then(|| self.rng.range(1, 4094) as u16),
            ext: (fam == Fam::V6 && self.rng.chance(0.06)).then(|| {
                if self.rng.chance(0.5) {
                    60
                } else {
                    0
                }
            }),
            ip_opts: fam == Fam::V4 && self.rng.chance(0.03),
            df: self.rng.chance(0.5),
        };
        let id = self.next_flow;
        self.next_flow += 1;
        let which = self.rng.weighted(&[34, 8, 6, 11, 15, 13, 8, 6]);
        let (name, proto, port, kind) = match which {
            0..=2 => {
                let sport = self.fresh_port();
                let dport = [80u16, 443, 22, 8080, 25][self.rng.below(5) as usize];
                let mut ends = [TcpEnd::default(); 2];
                for e in ends.iter_mut() {
                    e.isn = self.rng.u32();
                    e.nxt = e.isn;
                    e.win = self.rng.range(8192, 65535) as u16;
                }
                if self.rng.chance(0.5) {
                    ends[0].ws = Some(self.rng.range(0, 9) as u8);
                }
                if self.rng.chance(0.6) {
                    ends[1].ws = Some(self.rng.range(0, 9) as u8);
                }
                let mut script = VecDeque::new();
                let name = match which {
                    0 => {
                        self.tcp_open(&mut script);
                        "tcp"
                    }
                    1 => {
                        // Mid-stream pick-up: no handshake seen.
                        let d = if nat { 0 } else { self.rng.below(2) as usize };
                        script.push_back(if self.rng.chance(0.7) {
                            TcpAct::Data(d, self.rng.range(1, 400) as u16)
                        } else {
                            TcpAct::Ack(d)
                        });
                        self.tcp_body(&mut script);
                        "tcp-midstream"
                    }
                    _ => {
                        // Half-open or refused.
                        script.push_back(TcpAct::Syn(0));
                        if self.rng.chance(0.4) {
                            script.push_back(TcpAct::Syn(0));
                        }
                        if self.rng.chance(0.5) {
                            script.push_back(TcpAct::Rst(1, true));
                            if !nat && self.rng.chance(0.3) {
                                script.push_back(TcpAct::Syn(0));
                            }
                        }
                        "tcp-halfopen"
                    }
                };
                (name, 6u8, [sport, dport], Kind::Tcp { ends, script })
            }
            3 | 4 => {
                let sport = self.fresh_port();
                let dport = [53u16, 123, 5060, 4789, 9999][self.rng.below(5) as usize];
                let mut dirs = VecDeque::new();
                let n = self.rng.range(1, 8);
                if which == 3 {
                    dirs.extend((0..n).map(|_| 0));
                    ("udp-oneway", 17, [sport, dport], Kind::Datagram { dirs })
                } else {
                    dirs.push_back(0);
                    if self.rng.chance(0.3) {
                        dirs.push_back(0);
                    }
                    dirs.push_back(1);
                    dirs.extend((0..n).map(|_| self.rng.below(2) as usize));
                    ("udp", 17, [sport, dport], Kind::Datagram { dirs })
                }
            }
            5 => {
                let ident = self.fresh_port();
                let ts = fam == Fam::V4 && self.rng.chance(0.1);
                let mut script = VecDeque::new();
                for _ in 0..self.rng.range(1, 4) {
                    script.push_back(0);
                    if self.rng.chance(0.2) {
                        script.push_back(0);
                    }
                    if self.rng.chance(0.75) {
                        script.push_back(1);
                    }
                }
                let p = if fam == Fam::V4 { 1 } else { 58 };
                (
                    if ts { "icmp-timestamp" } else { "icmp-echo" },
                    p,
                    [ident, 0],
                    Kind::Echo { ts, seq: 1, script },
                )
            }
            7 if !self.cfg.dnat => {
                let sport = self.fresh_port();
                let dport = [2905u16, 3868, 9899, 36412, 38412][self.rng.below(5) as usize];
                let (mut a, mut b) = (a, b);
                if !nat && self.rng.chance(0.4) {
                    // Another association between two hosts that already have one.
                    if let Some(f) = self
                        .flows
                        .iter()
                        .find(|f| f.proto == 132 && fam_of(&f.addr[0]) == fam)
                    {
                        (a, b) = (f.addr[0], f.addr[1]);
                    }
                } else if nat {
                    // OVS 3.1 NATs SCTP by address only: one inside host per server keeps
                    // its translation determined (as for GRE/ESP).
                    let mut tries = 0;
                    while !self.used_other.insert((132, b)) && tries < 50 {
                        tries += 1;
                        b = outside(fam, self.rng.below(250));
                    }
                }
                let mut dirs = VecDeque::new();
                dirs.push_back(0);
                if self.rng.chance(0.3) {
                    dirs.push_back(0);
                }
                if self.rng.chance(0.8) {
                    dirs.push_back(1);
                }
                let n = self.rng.range(0, 6);
                dirs.extend((0..n).map(|_| self.rng.below(2) as usize));
                self.flows.push(Flow {
                    id,
                    name: "sctp",
                    addr: [a, b],
                    wire_a: if self.nat_family(fam) { pool(fam) } else { a },
                    wire_b: b,
                    wire_bport: dport,
                    b_inside: false,
                    proto: 132,
                    port: [sport, dport],
                    // The protocol number in the IP header itself (the X5 check relabels it).
                    framing: Framing {
                        ext: None,
                        ..framing
                    },
                    kind: Kind::Datagram { dirs },
                    seen: [None, None],
                    sent: [None, None],
                });
                return;
            }
            _ => {
                let choices: &[u8] = if fam == Fam::V4 && !self.cfg.dnat {
                    &[47, 50, 112]
                } else {
                    &[47, 50]
                };
                let mut proto = choices[self.rng.below(choices.len() as u64) as usize];
                let mut b = b;
                if proto == 112 {
                    b = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
                }
                // Address-only NAT: one flow per (protocol, destination) keeps it determined.
                if dnat {
                    // The reply key is (server -> client, protocol): one flow per client.
                    let mut tries = 0;
                    while !self.used_other.insert((proto, a)) && tries < 50 {
                        tries += 1;
                        proto = if proto == 47 { 50 } else { 47 };
                    }
                } else if nat {
                    let mut tries = 0;
                    while !self.used_other.insert((proto, b)) {
                        tries += 1;
                        proto = 47;
                        b = outside(fam, self.rng.below(250));
                        if tries > 50 {
                            break;
                        }
                    }
                }
                let mut dirs = VecDeque::new();
                let n = self.rng.range(1, 6);
                let two_way = proto != 112 && self.rng.chance(0.6);
                dirs.push_back(0);
                dirs.extend((0..n).map(|_| {
                    if two_way {
                        self.rng.below(2) as usize
                    } else {
                        0
                    }
                }));
                let f = Flow {
                    id,
                    name: "other",
                    addr: [a, b],
                    wire_a,
                    // The loop above may have changed `b`.
                    wire_b: if dnat { wire_b } else { b },
                    wire_bport: 0,
                    b_inside: dnat,
                    proto,
                    port: [0, 0],
                    framing,
                    kind: Kind::Datagram { dirs },
                    seen: [None, None],
                    sent: [None, None],
                };
                self.flows.push(f);
                return;
            }
        };
        // DNAT: B's real port is the server's; A addresses the public port.
        let (port, wire_bport) = if dnat && proto != 1 {
            ([port[0], DNAT_PORT], port[1])
        } else {
            (port, port[1])
        };
        self.flows.push(Flow {
            id,
            name,
            addr: [a, b],
            wire_a,
            wire_b,
            wire_bport,
            b_inside: dnat,
            proto,
            port,
            framing,
            kind,
            seen: [None, None],
            sent: [None, None],
        });
    }

    /// A TCP opening, then the body.
    fn tcp_open(&mut self, s: &mut VecDeque<TcpAct>) {
        s.push_back(TcpAct::Syn(0));
        if self.rng.chance(0.08) {
            s.push_back(TcpAct::Syn(0));
        }
        match self.rng.weighted(&[80, 6, 7, 7]) {
            0 => {
                s.push_back(TcpAct::SynAck(1));
                if self.rng.chance(0.06) {
                    s.push_back(TcpAct::SynAck(1));
                }
                if self.rng.chance(0.15) {
                    s.push_back(TcpAct::Data(0, self.rng.range(1, 300) as u16));
                } else {
                    s.push_back(TcpAct::Ack(0));
                }
            }
            1 => {
                s.push_back(TcpAct::Rst(1, true));
                return;
            }
            2 => return,
            _ => {
                // The SYN+ACK crosses a retransmitted SYN.
                s.push_back(TcpAct::SynAck(1));
                s.push_back(TcpAct::Syn(0));
                s.push_back(TcpAct::Ack(0));
            }
        }
        self.tcp_body(s);
    }

    /// Data both ways with faults, a teardown, and what may follow it.
    fn tcp_body(&mut self, s: &mut VecDeque<TcpAct>) {
        for _ in 0..self.rng.range(0, 12) {
            let d = self.rng.below(2) as usize;
            if self.rng.chance(0.12) {
                s.push_back(match self.rng.below(5) {
                    0 => TcpAct::OowSeq(d),
                    1 => TcpAct::OowAck(d),
                    2 => TcpAct::Retrans(d),
                    3 => TcpAct::BadFlags(d),
                    _ => TcpAct::RstBadSeq(d),
                });
            }
            s.push_back(if self.rng.chance(0.75) {
                TcpAct::Data(d, self.rng.range(1, 500) as u16)
            } else {
                TcpAct::Ack(d)
            });
        }
        let (x, y) = if self.rng.chance(0.7) { (0, 1) } else { (1, 0) };
        match self.rng.weighted(&[40, 6, 6, 16, 32]) {
            0 => s.extend([
                TcpAct::Fin(x),
                TcpAct::Ack(y),
                TcpAct::Fin(y),
                TcpAct::Ack(x),
            ]),
            1 => s.extend([
                TcpAct::Fin(0),
                TcpAct::Fin(1),
                TcpAct::Ack(0),
                TcpAct::Ack(1),
            ]),
            2 => s.extend([
                TcpAct::Fin(x),
                TcpAct::Ack(y),
                TcpAct::Data(y, self.rng.range(1, 200) as u16),
                TcpAct::Ack(x),
            ]),
            3 => s.push_back(TcpAct::Rst(x, self.rng.chance(0.5))),
            _ => return,
        }
        if self.rng.chance(0.1) {
            s.push_back(TcpAct::Ack(self.rng.below(2) as usize));
        }
        // Port reuse: not in NAT traces, where OVS 3.1 translates the new connection to
        // another port (docs/ovs-differences.md), so the answers the trace holds would not
        // be addressed to it.
        if !(self.cfg.nat || self.cfg.dnat) && self.rng.chance(0.12) {
            s.push_back(TcpAct::Reuse);
            s.push_back(TcpAct::Syn(0));
            s.push_back(TcpAct::SynAck(1));
            s.push_back(TcpAct::Ack(0));
            for _ in 0..self.rng.range(0, 4) {
                let d = self.rng.below(2) as usize;
                s.push_back(TcpAct::Data(d, self.rng.range(1, 300) as u16));
            }
            if self.rng.chance(0.5) {
                s.extend([
                    TcpAct::Fin(0),
                    TcpAct::Ack(1),
                    TcpAct::Fin(1),
                    TcpAct::Ack(0),
                ]);
            }
        }
    }

    /// Sends the next packet of flow `i`.
    fn advance(&mut self, i: usize) {
        let mut f = self.flows[i].clone();
        let fr = f.framing;
        let id = self.next_ip_id();
        let sd = [f.src_dst(0), f.src_dst(1)];
        let seen_sd = [f.seen_src_dst(0), f.seen_src_dst(1)];
        let (port, proto) = (f.port, f.proto);
        // Ports as sent and as seen by the receiver, per direction (DNAT changes B's).
        let sp = [f.ports(0, false), f.ports(1, false)];
        let seen_p = [f.ports(0, true), f.ports(1, true)];
        let (built, dir, what) = match &mut f.kind {
            Kind::Tcp { ends, script } => {
                let Some(act) = script.pop_front() else {
                    return;
                };
                if let TcpAct::Reuse = act {
                    for e in ends.iter_mut() {
                        e.isn = self.rng.u32();
                        e.nxt = e.isn;
                        e.last = None;
                    }
                    self.flows[i] = f;
                    return self.advance(i);
                }
                let (d, seq, ack, flags, len, opts, what) = tcp_render(act, ends, &mut self.rng);
                let payload = self.rng.bytes(len as usize);
                let win = ends[d].win;
                let mk = |src: &IpAddr, dst: &IpAddr, (a, b): (u16, u16)| {
                    let seg = tcp_segment(a, b, seq, ack, flags, win, &opts, &payload);
                    ip_packet(src, dst, 6, &seg, &fr, 64, id)
                };
                let (s, t) = sd[d];
                let (ss, st) = seen_sd[d];
                ((mk(&s, &t, sp[d]), mk(&ss, &st, seen_p[d])), d, what)
            }
            Kind::Datagram { dirs } => {
                let Some(d) = dirs.pop_front() else { return };
                let len = self.rng.range(0, 120) as usize;
                let payload = self.rng.bytes(len.max(if proto == 17 { 0 } else { 8 }));
                let tag = (f.id as u32) << 1 | d as u32;
                let mk = |(a, b): (u16, u16)| {
                    if proto == 17 {
                        udp_datagram(a, b, &payload)
                    } else if proto == 132 {
                        sctp_data(a, b, tag, &payload)
                    } else if proto == 47 {
                        let mut g = vec![0, 0, 0x08, 0x00];
                        g.extend_from_slice(&payload);
                        g
                    } else {
                        payload.clone()
                    }
                };
                let (l4, seen_l4) = (mk(sp[d]), mk(seen_p[d]));
                let (s, t) = sd[d];
                let (ss, st) = seen_sd[d];
                let a = ip_packet(&s, &t, proto, &l4, &fr, 64, id);
                let b = ip_packet(&ss, &st, proto, &seen_l4, &fr, 64, id);
                ((a, b), d, format!("{} bytes", l4.len()))
            }
            Kind::Echo { ts, seq, script } => {
                let Some(d) = script.pop_front() else { return };
                let v4 = proto == 1;
                let ty = match (v4, *ts, d) {
                    (true, false, 0) => 8,
                    (true, false, _) => 0,
                    (true, true, 0) => 13,
                    (true, true, _) => 14,
                    (false, _, 0) => 128,
                    (false, _, _) => 129,
                };
                if d == 0 {
                    *seq = seq.wrapping_add(1);
                }
                let mut rest = [0u8; 4];
                rest[..2].copy_from_slice(&port[0].to_be_bytes());
                rest[2..].copy_from_slice(&seq.to_be_bytes());
                let n = self.rng.range(0, 56) as usize;
                let body = if *ts {
                    vec![0u8; 12]
                } else {
                    self.rng.bytes(n)
                };
                let l4 = icmp_message(ty, 0, rest, &body);
                let (s, t) = sd[d];
                let (ss, st) = seen_sd[d];
                let a = ip_packet(&s, &t, proto, &l4, &fr, 64, id);
                let b = ip_packet(&ss, &st, proto, &l4, &fr, 64, id);
                ((a, b), d, format!("type {ty} seq {seq}"))
            }
        };
        let (sent, seen) = built;
        let fa = frame(&sent, &fr);
        let fb = frame(&seen, &fr);
        f.seen[dir] = Some(ip_of(&fb, &fr));
        f.sent[dir] = Some(ip_of(&fa, &fr));
        let desc = format!(
            "{}#{} {} {}",
            f.name,
            f.id,
            if dir == 0 { "A>B" } else { "B>A" },
            what
        );
        self.flows[i] = f;
        self.emit(fa, desc);
    }

    /// An ICMP or ICMPv6 error about a packet of a flow (or about nothing).
    fn icmp_error(&mut self) {
        let pick_recent = !self.recent.is_empty() && self.rng.chance(0.25);
        let candidates: Vec<Flow> = if pick_recent {
            self.recent.iter().cloned().collect()
        } else {
            self.flows.clone()
        };
        let with_seen: Vec<&Flow> = candidates
            .iter()
            .filter(|f| f.seen.iter().any(|s| s.is_some()))
            .collect();
        let stray = with_seen.is_empty() || self.rng.chance(0.15);
        let (fam, quote, outer_src, outer_dst, fr, what, expect) = if stray {
            let fam = if self.rng.chance(0.6) {
                Fam::V4
            } else {
                Fam::V6
            };
            // A packet that no flow sent, from us (inside/pool) to an outside host.
            let src = if self.nat_family(fam) {
                pool(fam)
            } else {
                inside(fam, 200 + self.rng.below(20))
            };
            let dst = outside(fam, 300 + self.rng.below(20));
            let udp = udp_datagram(self.fresh_port(), 7777, &self.rng.bytes(12));
            let q = ip_packet(&src, &dst, 17, &udp, &Framing::default(), 64, 99);
            let q = ip_of(&frame(&q, &Framing::default()), &Framing::default());
            let from = router(fam, false, self.rng.u64());
            (
                fam,
                q.clone(),
                from,
                src,
                Framing::default(),
                "stray".to_string(),
                q,
            )
        } else {
            let f = with_seen[self.rng.below(with_seen.len() as u64) as usize];
            let dirs: Vec<usize> = (0..2).filter(|&d| f.seen[d].is_some()).collect();
            let d = dirs[self.rng.below(dirs.len() as u64) as usize];
            let q = f.seen[d].clone().unwrap_or_default();
            let mut expect = f.sent[d].clone().unwrap_or_default();
            let fam = fam_of(&f.addr[0]);
            let (qs, _) = f.seen_src_dst(d);
            // The error goes back to the quoted packet's sender, from its receiver or a
            // router on the receiver's side (inside for B→A packets).
            let from_peer = self.rng.chance(0.4);
            let peer = f.seen_src_dst(d).1;
            let multicast = match peer {
                IpAddr::V4(v) => v.is_multicast(),
                IpAddr::V6(v) => v.is_multicast(),
            };
            // The quoted packet's receiver's side: B's for A>B packets.
            let receiver_inside = if d == 0 { f.b_inside } else { !f.b_inside };
            let from = if from_peer && !multicast {
                peer
            } else {
                router(fam, receiver_inside, self.rng.u64())
            };
            let mut to = qs;
            let mut what = format!(
                "about {}#{} {}",
                f.name,
                f.id,
                if d == 0 { "A>B" } else { "B>A" }
            );
            if self.rng.chance(0.06) {
                // The quote's source is not the error's destination: no relation.
                to = outside(fam, 330 + d as u64);
                what.push_str(" (quote not from destination)");
                expect = q.clone();
            }
            let fr = Framing {
                vlan: f.framing.vlan,
                ..Framing::default()
            };
            (fam, q, from, to, fr, what, expect)
        };
        // Which error, and how much of the packet it quotes.
        let (ty, code, rest, kind) = match fam {
            Fam::V4 => match self.rng.weighted(&[30, 20, 15, 20, 5, 5, 5]) {
                0 => (3, 3, [0; 4], "port unreachable"),
                1 => (3, 1, [0; 4], "host unreachable"),
                2 => (3, 4, [0, 0, 0x05, 0x78], "fragmentation needed"),
                3 => (11, 0, [0; 4], "time exceeded"),
                4 => (12, 0, [20, 0, 0, 0], "parameter problem"),
                5 => {
                    let g = match router(Fam::V4, false, 3) {
                        IpAddr::V4(v) => v.octets(),
                        IpAddr::V6(_) => [0; 4],
                    };
                    (5, 1, g, "redirect")
                }
                _ => (4, 0, [0; 4], "source quench"),
            },
            Fam::V6 => match self.rng.weighted(&[30, 20, 20, 20, 10]) {
                0 => (1, 4, [0; 4], "port unreachable"),
                1 => (1, 3, [0; 4], "address unreachable"),
                2 => (2, 0, [0, 0, 0x05, 0x00], "packet too big"),
                3 => (3, 0, [0; 4], "time exceeded"),
                _ => (4, 0, [0, 0, 0, 40], "parameter problem"),
            },
        };
        let min = match fam {
            Fam::V4 => (quote[0] as usize & 0x0f) * 4 + 8,
            Fam::V6 => {
                // Skip an extension header if the quote has one.
                let nh = quote[6];
                40 + if nh == 0 || nh == 60 { 8 } else { 0 } + 8
            }
        };
        // DNAT translates ports: a quote with less than a whole TCP header makes OVS 3.1.0
        // write the quoted TCP checksum past the packet's end and crash (heap corruption;
        // docs/ovs-differences.md, X4), so DNAT traces quote TCP headers whole.
        let inner_proto = match fam {
            Fam::V4 => quote[9],
            Fam::V6 if quote[6] == 0 || quote[6] == 60 => quote[40],
            Fam::V6 => quote[6],
        };
        let min = if self.cfg.dnat && inner_proto == 6 {
            min + 12
        } else {
            min
        };
        let cut = if self.rng.chance(0.3) {
            min.min(quote.len())
        } else {
            quote.len().min(500)
        };
        let body = &quote[..cut];
        let proto = if fam == Fam::V4 { 1 } else { 58 };
        let l4 = icmp_message(ty, code, rest, body);
        let id = self.next_ip_id();
        let ip = ip_packet(&outer_src, &outer_dst, proto, &l4, &fr, 255, id);
        let f = frame(&ip, &fr);
        self.emit_with(
            f,
            format!(
                "icmp error {kind} {} {what}, quoting {cut} of {} bytes",
                if fam == Fam::V4 { "v4" } else { "v6" },
                quote.len()
            ),
            Some(expect[..cut.min(expect.len())].to_vec()),
        );
    }

    /// A packet that belongs to nothing and may not create a connection.
    fn stray(&mut self) {
        let fam = if self.rng.chance(0.6) {
            Fam::V4
        } else {
            Fam::V6
        };
        let nat = self.cfg.nat;
        let ext = outside(fam, 350 + self.rng.below(10));
        let me = if self.nat_family(fam) {
            pool(fam)
        } else {
            inside(fam, 210 + self.rng.below(10))
        };
        let id = self.next_ip_id();
        let fr = Framing::default();
        let (ip, what) = match self.rng.below(4) {
            0 => {
                let seg = tcp_segment(
                    443,
                    self.fresh_port(),
                    self.rng.u32(),
                    self.rng.u32(),
                    tcpf::SYN | tcpf::ACK,
                    65535,
                    &[],
                    &[],
                );
                (
                    ip_packet(&ext, &me, 6, &seg, &fr, 64, id),
                    "stray tcp SYN+ACK",
                )
            }
            1 => {
                let flags = [0u8, tcpf::SYN | tcpf::FIN, tcpf::FIN, tcpf::SYN | tcpf::RST]
                    [self.rng.below(4) as usize];
                let seg = tcp_segment(
                    80,
                    self.fresh_port(),
                    self.rng.u32(),
                    0,
                    flags,
                    1024,
                    &[],
                    &[],
                );
                (
                    ip_packet(&ext, &me, 6, &seg, &fr, 64, id),
                    "stray tcp with invalid flags",
                )
            }
            2 => {
                let (p, ty) = if fam == Fam::V4 { (1, 0) } else { (58, 129) };
                let mut rest = [0u8; 4];
                rest[..2].copy_from_slice(&self.fresh_port().to_be_bytes());
                let l4 = icmp_message(ty, 0, rest, &self.rng.bytes(16));
                (
                    ip_packet(&ext, &me, p, &l4, &fr, 64, id),
                    "stray echo reply",
                )
            }
            _ => {
                // An echo request with a non-zero code (ICMPv4: OVS refuses it).
                let (p, ty) = if fam == Fam::V4 { (1, 8) } else { (58, 128) };
                let mut rest = [0u8; 4];
                rest[..2].copy_from_slice(&self.fresh_port().to_be_bytes());
                let l4 = icmp_message(ty, 1, rest, &self.rng.bytes(8));
                if nat {
                    // From inside, so that a connection it may create is SNATed in both.
                    let src = inside(fam, self.rng.below(24));
                    (
                        ip_packet(&src, &ext, p, &l4, &fr, 64, id),
                        "echo request with code 1",
                    )
                } else {
                    (
                        ip_packet(&me, &ext, p, &l4, &fr, 64, id),
                        "echo request with code 1",
                    )
                }
            }
        };
        let f = frame(&ip, &fr);
        self.emit(f, what.to_string());
    }

    fn arp(&mut self) {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&SRC_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&SRC_MAC);
        f.extend_from_slice(&[10, 1, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[10, 1, 0, self.rng.range(2, 250) as u8]);
        self.out.push(TracePacket {
            ts_ms: self.tick_ts,
            data: f,
            what: "arp request".into(),
            expect_quote: None,
        });
    }
}

/// Renders one scripted TCP action: (direction, seq, ack, flags, payload length, options,
/// description). Updates the ends' sequence state.
fn tcp_render(
    act: TcpAct,
    ends: &mut [TcpEnd; 2],
    rng: &mut Rng,
) -> (usize, u32, u32, u8, u16, Vec<u8>, String) {
    use tcpf::*;
    let dir = match act {
        TcpAct::Syn(d)
        | TcpAct::SynAck(d)
        | TcpAct::Ack(d)
        | TcpAct::Data(d, _)
        | TcpAct::Fin(d)
        | TcpAct::Rst(d, _)
        | TcpAct::OowSeq(d)
        | TcpAct::OowAck(d)
        | TcpAct::Retrans(d)
        | TcpAct::BadFlags(d)
        | TcpAct::RstBadSeq(d) => d,
        TcpAct::Reuse => 0,
    };
    let peer_nxt = ends[1 - dir].nxt;
    let me = &mut ends[dir];
    let syn_opts = |ws: Option<u8>| {
        let mut o = vec![2, 4, 0x05, 0xb4]; // MSS 1460
        if let Some(s) = ws {
            o.extend_from_slice(&[1, 3, 3, s]);
        }
        o
    };
    let (seq, ack, flags, len, opts, what) = match act {
        TcpAct::Syn(_) => {
            me.nxt = me.isn.wrapping_add(1);
            (me.isn, 0, SYN, 0, syn_opts(me.ws), "SYN".to_string())
        }
        TcpAct::SynAck(_) => {
            me.nxt = me.isn.wrapping_add(1);
            (
                me.isn,
                peer_nxt,
                SYN | ACK,
                0,
                syn_opts(me.ws),
                "SYN+ACK".into(),
            )
        }
        TcpAct::Ack(_) => (me.nxt, peer_nxt, ACK, 0, vec![], "ACK".into()),
        TcpAct::Data(_, n) => {
            let s = me.nxt;
            me.nxt = s.wrapping_add(n as u32);
            (s, peer_nxt, ACK | PSH, n, vec![], format!("data {n}"))
        }
        TcpAct::Fin(_) => {
            let s = me.nxt;
            me.nxt = s.wrapping_add(1);
            (s, peer_nxt, FIN | ACK, 0, vec![], "FIN".into())
        }
        TcpAct::Rst(_, with_ack) => {
            if with_ack {
                (me.nxt, peer_nxt, RST | ACK, 0, vec![], "RST+ACK".into())
            } else {
                (me.nxt, 0, RST, 0, vec![], "RST".into())
            }
        }
        TcpAct::OowSeq(_) => (
            me.nxt.wrapping_add(0x4000_0000 + rng.below(1 << 20) as u32),
            peer_nxt,
            ACK | PSH,
            10,
            vec![],
            "out-of-window seq".into(),
        ),
        TcpAct::OowAck(_) => (
            me.nxt,
            peer_nxt.wrapping_add(0x2000_0000 + rng.below(1 << 20) as u32),
            ACK,
            0,
            vec![],
            "out-of-window ack".into(),
        ),
        TcpAct::Retrans(_) => match me.last {
            Some((s, a, fl, n)) => (s, a, fl, n, vec![], "retransmission".into()),
            None => (me.nxt, peer_nxt, ACK, 0, vec![], "ACK".into()),
        },
        TcpAct::BadFlags(_) => {
            let fl = [SYN | FIN, 0, FIN, SYN | RST][rng.below(4) as usize];
            (
                me.nxt,
                peer_nxt,
                fl,
                0,
                vec![],
                format!("invalid flags {fl:#04x}"),
            )
        }
        TcpAct::RstBadSeq(_) => (
            me.nxt.wrapping_add(5000 + rng.below(5000) as u32),
            0,
            RST,
            0,
            vec![],
            "RST with wrong seq".into(),
        ),
        TcpAct::Reuse => (0, 0, 0, 0, vec![], String::new()),
    };
    if matches!(
        act,
        TcpAct::Syn(_) | TcpAct::SynAck(_) | TcpAct::Ack(_) | TcpAct::Data(..) | TcpAct::Fin(_)
    ) {
        me.last = Some((seq, ack, flags, len));
    }
    (
        dir,
        seq,
        ack,
        flags,
        len,
        opts,
        format!("{what} seq={seq} ack={ack}"),
    )
}
