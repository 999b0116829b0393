//! Tests of the NAT packet rewrite: real frames built with `wire::testframe`, tracked by a
//! real `Conntrack` with NAT, rewritten, and compared byte for byte with the expected
//! frame, whose checksums a test-local naive implementation recomputes from scratch.

use super::*;
use crate::conntrack::{Conntrack, CtConfig, CtWorker};
use crate::nat::{NatRange, NatSpec};
use crate::wire::frame_checksums::verify_frame;
use crate::wire::parse_frame;
use crate::wire::testframe::{Frame, L4 as Body};
use proptest::prelude::*;
use std::net::IpAddr;

// ---------------------------------------------------------------------------------------
// Naive checksums, independent of `wire::checksum`.

/// The ones'-complement sum of the parts as big-endian words (each part but the last of
/// even length), folded.
fn naive_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for p in parts {
        for c in p.chunks(2) {
            s += u64::from(c[0]) << 8 | u64::from(c.get(1).copied().unwrap_or(0));
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn naive_csum(parts: &[&[u8]]) -> u16 {
    !naive_sum(parts)
}

/// CRC32c bit by bit (RFC 9260 Appendix A), independent of `wire::sctp`'s tables.
fn naive_crc32c(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for p in parts {
        for &b in *p {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
        }
    }
    !c
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn is_error(v4: bool, ty: u8) -> bool {
    if v4 {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    } else {
        (1..=4).contains(&ty)
    }
}

/// Recomputes every checksum of the IP packet `pkt` (no IPv4 options needed, no IPv6
/// extension headers) from scratch: the packet embedded in an ICMP error first (its L4
/// checksum only when it is quoted whole), then the L4 checksum (UDP: 0 stays 0, a
/// computed 0 is `0xffff`), then the IPv4 header checksum.
fn naive_fill_l3(pkt: &mut [u8]) {
    let v4 = pkt[0] >> 4 == 4;
    let (hl, total, protocol) = if v4 {
        (
            usize::from(pkt[0] & 15) * 4,
            usize::from(be16(pkt, 2)),
            pkt[9],
        )
    } else {
        (40, 40 + usize::from(be16(pkt, 4)), pkt[6])
    };
    let (src, dst) = if v4 {
        (pkt[12..16].to_vec(), pkt[16..20].to_vec())
    } else {
        (pkt[8..24].to_vec(), pkt[24..40].to_vec())
    };
    let end = total.min(pkt.len());
    let icmp = (v4 && protocol == 1) || (!v4 && protocol == 58);
    let inner_min = if v4 { 28 } else { 48 };
    if icmp && end >= hl + 8 + inner_min && is_error(v4, pkt[hl]) {
        naive_fill_l3(&mut pkt[hl + 8..end]);
    }
    if protocol == proto::SCTP && total <= pkt.len() && total >= hl + 12 {
        let c = naive_crc32c(&[&pkt[hl..hl + 8], &[0; 4], &pkt[hl + 12..total]]);
        pkt[hl + 8..hl + 12].copy_from_slice(&c.to_le_bytes());
    }
    let at = match protocol {
        6 => Some(16),
        17 | proto::DCCP | proto::UDPLITE => Some(6),
        _ if icmp => Some(2),
        _ => None,
    };
    if let (Some(at), true) = (at, total <= pkt.len()) {
        let len = total - hl;
        let stored = be16(pkt, hl + at);
        if !(protocol == 17 && stored == 0) {
            pkt[hl + at..hl + at + 2].copy_from_slice(&[0, 0]);
            let pseudo: Vec<u8> = if v4 {
                [
                    &src[..],
                    &dst[..],
                    &[0, protocol],
                    &(len as u16).to_be_bytes(),
                ]
                .concat()
            } else {
                [
                    &src[..],
                    &dst[..],
                    &(len as u32).to_be_bytes(),
                    &[0, 0, 0, protocol],
                ]
                .concat()
            };
            let mut c = if v4 && icmp {
                naive_csum(&[&pkt[hl..total]])
            } else {
                naive_csum(&[&pseudo, &pkt[hl..total]])
            };
            if protocol == 17 && c == 0 {
                c = 0xffff;
            }
            pkt[hl + at..hl + at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    if v4 {
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = naive_csum(&[&pkt[..hl]]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// Offset of the IP header (one 802.1Q tag at most in these tests).
fn l3_of(f: &[u8]) -> usize {
    if be16(f, 12) == crate::wire::ethernet::ethertype::VLAN {
        18
    } else {
        14
    }
}

fn naive_fill_frame(f: &mut [u8]) {
    let l3 = l3_of(f);
    naive_fill_l3(&mut f[l3..]);
}

/// Every checksum of `f` equals a naive full recomputation.
fn naive_verify(f: &[u8]) -> Result<(), String> {
    let mut g = f.to_vec();
    naive_fill_frame(&mut g);
    if g == f {
        Ok(())
    } else {
        Err(diff(f, &g, f))
    }
}

fn diff(before: &[u8], got: &[u8], want: &[u8]) -> String {
    let n = got.len().max(want.len());
    let lines: Vec<String> = (0..n)
        .filter(|&i| got.get(i) != want.get(i))
        .map(|i| {
            format!(
                "  @{i}: got {:02x?} want {:02x?} (input {:02x?})",
                got.get(i),
                want.get(i),
                before.get(i)
            )
        })
        .collect();
    format!("{} bytes differ:\n{}", lines.len(), lines.join("\n"))
}

/// Asserts that `after` is `before` with exactly `fields` written and every checksum
/// recomputed from scratch, and that it verifies with `wire::frame_checksums::verify_frame`:
/// every byte that should change has its value, every other byte is unchanged.
#[track_caller]
fn assert_rewritten(before: &[u8], after: &[u8], fields: &[(usize, Vec<u8>)]) {
    let mut want = before.to_vec();
    for (at, v) in fields {
        want[*at..*at + v.len()].copy_from_slice(v);
    }
    naive_fill_frame(&mut want);
    assert!(after == want, "{}", diff(before, after, &want));
    assert_eq!(verify_frame(after), Ok(()));
    naive_verify(after).unwrap();
}

// ---------------------------------------------------------------------------------------
// Frames, built with the wire views.

fn addr(s: &str) -> ([u8; 16], Family) {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, Family::V4)
        }
        IpAddr::V6(a) => (a.octets(), Family::V6),
    }
}

fn a4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// The bytes of an address as it stands in its header.
fn wire_addr(s: &str) -> Vec<u8> {
    let (a, f) = addr(s);
    match f {
        Family::V4 => a[..4].to_vec(),
        Family::V6 => a.to_vec(),
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct Layout {
    vlan: bool,
    ip_opts: bool,
    /// IPv4 fragment offset in bytes (a later fragment when non-zero).
    frag_offset: u16,
}

/// An Ethernet frame carrying `body` from `src` to `dst` (the shared test-frame
/// builder, with this file's identification, flow label and TCP window; DCCP and
/// UDP-Lite checksums filled by the naive code).
fn build_raw(src: [u8; 16], dst: [u8; 16], fam: Family, body: &Body, lay: Layout) -> Vec<u8> {
    let mut f = match fam {
        Family::V4 => Frame::v4(a4(&src), a4(&dst), body.clone()),
        Family::V6 => Frame::v6(src, dst, body.clone()),
    }
    .ident(0x1c46)
    .flow_label(0x12345)
    .dont_frag(lay.frag_offset == 0)
    .fragment(false, lay.frag_offset);
    if lay.vlan {
        f = f.vlan(0x6064);
    }
    if lay.ip_opts && fam == Family::V4 {
        f = f.ip_options(&[0x94, 0x04, 0x00, 0x00]); // router alert
    }
    let mut f = f.build();
    if matches!(body, Body::Raw { .. }) && lay.frag_offset == 0 {
        let l3 = l3_of(&f);
        naive_fill_l3(&mut f[l3..]); // DCCP/UDP-Lite checksums
    }
    f
}

fn build_with(src: &str, dst: &str, body: &Body, lay: Layout) -> Vec<u8> {
    let (s, fam) = addr(src);
    let (d, fam2) = addr(dst);
    assert_eq!(fam, fam2);
    let f = build_raw(s, d, fam, body, lay);
    let v6_no_csum = fam == Family::V6 && matches!(body, Body::Udp { no_csum: true, .. });
    if lay.frag_offset == 0 && !v6_no_csum {
        assert_eq!(verify_frame(&f), Ok(()), "test frame {body:?}");
        naive_verify(&f).unwrap();
    }
    f
}

fn build(src: &str, dst: &str, body: &Body) -> Vec<u8> {
    build_with(src, dst, body, Layout::default())
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const MSS: [u8; 4] = [0x02, 0x04, 0x05, 0xb4];

fn tcp_seg(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Body {
    Body::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        window: 64240,
        opts: if flags & SYN != 0 {
            MSS.to_vec()
        } else {
            vec![]
        },
        payload: payload.to_vec(),
    }
}

fn udp_dgram(sport: u16, dport: u16, payload: &[u8]) -> Body {
    Body::Udp {
        sport,
        dport,
        payload: payload.to_vec(),
        no_csum: false,
    }
}

fn echo(v6: bool, request: bool, id: u16, seq: u16, payload: &[u8]) -> Body {
    Body::Icmp {
        ty: match (v6, request) {
            (false, true) => 8,
            (false, false) => 0,
            (true, true) => 128,
            (true, false) => 129,
        },
        code: 0,
        rest: u32::from(id) << 16 | u32::from(seq),
        data: payload.to_vec(),
    }
}

/// One SCTP chunk of `ty` with `value`, padded to 4 bytes.
fn chunk(ty: u8, value: &[u8]) -> Vec<u8> {
    let mut c = vec![ty, 0];
    c.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    c.extend_from_slice(value);
    c.resize((c.len() + 3) & !3, 0);
    c
}

/// An SCTP packet with one chunk: INIT (step 0), INIT ACK (1) or DATA carrying `data`.
fn sctp_pkt(sport: u16, dport: u16, step: usize, data: &[u8]) -> Body {
    let (tag, chunks) = match step {
        // Initiate tag, a_rwnd, streams out/in, initial TSN.
        0 => (
            0,
            chunk(
                1,
                &[0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1],
            ),
        ),
        1 => (
            0x1122_3344,
            chunk(
                2,
                &[0x55, 0x66, 0x77, 0x88, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 9],
            ),
        ),
        _ => {
            let mut v = vec![0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
            v.extend_from_slice(data);
            (0x5566_7788, chunk(0, &v))
        }
    };
    Body::Sctp {
        sport,
        dport,
        tag,
        chunks,
    }
}

fn icmp_error(ty: u8, code: u8, rest: u32, quote: &[u8]) -> Body {
    Body::Icmp {
        ty,
        code,
        rest,
        data: quote.to_vec(),
    }
}

/// The IP packet of a frame (from its IP header to the end).
fn ip_of(f: &[u8]) -> &[u8] {
    &f[l3_of(f)..]
}

// ---------------------------------------------------------------------------------------
// The tracker.

fn tracker() -> Conntrack {
    Conntrack::new(CtConfig {
        max_conns: 1024,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: true,
        hash_seed: Some(7),
    })
}

fn st(s: &str) -> CtState {
    s.parse().unwrap()
}

/// Tracks `frame` (creating connections with `spec`) and rewrites it with [`apply`].
fn pass(
    w: &mut CtWorker,
    ct: &Conntrack,
    spec: &NatSpec,
    frame: &[u8],
    now: u64,
) -> (CtResult, Vec<u8>, Rewritten) {
    let p = parse_frame(frame).unwrap();
    let r = w.process_nat(&p, 0, true, spec, now);
    let mut out = frame.to_vec();
    let bits = apply(&mut out, &p, &r, ct).unwrap();
    (r, out, bits)
}

/// The fields of a tuple (addresses; TCP/UDP ports or the ICMP identifier, `sport`) at
/// their offsets in `frame`, to be written with the given values.
fn tuple_fields(
    frame: &[u8],
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
) -> Vec<(usize, Vec<u8>)> {
    let p = parse_frame(frame).unwrap();
    let (l3, l4) = (usize::from(p.l3_offset), usize::from(p.l4_offset));
    let (s_at, d_at) = match p.family {
        Family::V4 => (l3 + 12, l3 + 16),
        Family::V6 => (l3 + 8, l3 + 24),
    };
    let mut v = vec![(s_at, wire_addr(src)), (d_at, wire_addr(dst))];
    match p.l4 {
        L4Summary::Tcp(_) | L4Summary::Udp { .. } | L4Summary::Sctp { .. } => {
            v.push((l4, sport.to_be_bytes().to_vec()));
            v.push((l4 + 2, dport.to_be_bytes().to_vec()));
        }
        L4Summary::Icmp(_) => v.push((l4 + 4, sport.to_be_bytes().to_vec())),
        L4Summary::Other => {}
    }
    v
}

// ---------------------------------------------------------------------------------------
// Ordinary packets: original → translated → reply → un-translated, per protocol, family
// and NAT kind.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Echo,
    Sctp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Snat,
    Dnat,
    Both,
}

/// An endpoint: address and port (for ICMP the port is the identifier).
type Ep = (&'static str, u16);

/// The NAT spec, the packet's tuple as the client sends it, and as it leaves the gateway.
struct Setup {
    spec: NatSpec,
    client: Ep,
    server: Ep,
    out_src: Ep,
    out_dst: Ep,
    flag: &'static str,
}

const ID: u16 = 0x1234;

fn setup(v6: bool, kind: Kind, p: Proto) -> Setup {
    let nat = |s: &str| Some(s.parse::<NatRange>().unwrap());
    // Without ports in the key, ICMP keeps the identifier unless SNAT picks one.
    let echo = p == Proto::Echo;
    let port = |tcp_udp: u16, icmp: u16| if echo { icmp } else { tcp_udp };
    let (c, s, v, x, i, pool, hp) = if v6 {
        (
            "fd00::2",
            "2001:db8:1::9",
            "2001:db8::1",
            "2001:db8:2::7",
            "fd00::5",
            "[2001:db8::1]:5000",
            ("fd00::1", "[fd00::1]:6000", "[fd00::5]:8080"),
        )
    } else {
        (
            "10.0.0.2",
            "198.51.100.9",
            "192.0.2.1",
            "198.51.100.7",
            "10.0.0.5",
            "192.0.2.1:5000",
            ("10.0.0.1", "10.0.0.1:6000", "10.0.0.5:8080"),
        )
    };
    match kind {
        Kind::Snat => Setup {
            spec: NatSpec {
                snat: nat(pool),
                dnat: None,
            },
            client: (c, port(40000, ID)),
            server: (s, 80),
            out_src: (v, 5000),
            out_dst: (s, 80),
            flag: "snat",
        },
        Kind::Dnat => Setup {
            spec: NatSpec {
                snat: None,
                dnat: nat(hp.2),
            },
            client: (x, port(33000, ID)),
            server: (v, 80),
            out_src: (x, port(33000, ID)),
            out_dst: (i, port(8080, 80)),
            flag: "dnat",
        },
        Kind::Both => Setup {
            spec: NatSpec {
                snat: nat(hp.1),
                dnat: nat(hp.2),
            },
            client: (c, port(40000, ID)),
            server: (v, 80),
            out_src: (hp.0, 6000),
            out_dst: (i, port(8080, 80)),
            flag: "snat,dnat",
        },
    }
}

/// The packets of one exchange: (from client, reply from server, client again), with
/// the given endpoints.
fn exchange(p: Proto, v6: bool, from: Ep, to: Ep, step: usize) -> Body {
    let (sp, dp) = (from.1, to.1);
    match (p, step) {
        (Proto::Tcp, 0) => tcp_seg(sp, dp, 1000, 0, SYN, &[]),
        (Proto::Tcp, 1) => tcp_seg(sp, dp, 5000, 1001, SYN | ACK, &[]),
        (Proto::Tcp, _) => tcp_seg(sp, dp, 1001, 5001, ACK | PSH, b"hello"),
        (Proto::Udp, 0) => udp_dgram(sp, dp, b"query"),
        (Proto::Udp, 1) => udp_dgram(sp, dp, b"answer!"),
        (Proto::Udp, _) => udp_dgram(sp, dp, b"again"),
        // ICMP: `from.1` is the identifier in both directions.
        (Proto::Echo, 0) => echo(v6, true, sp, 1, b"ping!"),
        (Proto::Echo, 1) => echo(v6, false, sp, 1, b"ping!"),
        (Proto::Echo, _) => echo(v6, true, sp, 2, b"ping again"),
        (Proto::Sctp, _) => sctp_pkt(sp, dp, step, b"hello"),
    }
}

/// The NAT flag a packet shows (OVS `nat_packet`): the translation applied to it, so the
/// reply of an SNAT connection shows `dnat` and vice versa, and SNAT+DNAT shows `snat`.
fn pkt_flag(conn: &str, reply: bool) -> &'static str {
    match (conn, reply) {
        ("snat", false) | ("dnat", true) | ("snat,dnat", _) => "snat",
        _ => "dnat",
    }
}

/// The ICMP type and code of "port unreachable" in the family.
fn unreachable(v6: bool) -> (u8, u8) {
    if v6 {
        (1, 4)
    } else {
        (3, 3)
    }
}

/// An outer address of an ICMP error as it must leave the gateway.
#[derive(Clone, Copy)]
enum Outer {
    Src(&'static str),
    Dst(&'static str),
}

/// One connection of a [`Setup`] through a fresh tracker's worker: builds the packets of
/// its exchange and passes them (tracked with the setup's NAT, rewritten).
struct Flow<'a> {
    s: Setup,
    p: Proto,
    v6: bool,
    ct: &'a Conntrack,
    w: CtWorker<'a>,
}

impl<'a> Flow<'a> {
    fn new(ct: &'a Conntrack, v6: bool, kind: Kind, p: Proto) -> Flow<'a> {
        Flow {
            s: setup(v6, kind, p),
            p,
            v6,
            ct,
            w: ct.worker(0),
        }
    }

    /// Packet `step` of the exchange from `from` to `to`.
    fn packet(&self, from: Ep, to: Ep, step: usize) -> Vec<u8> {
        build(from.0, to.0, &exchange(self.p, self.v6, from, to, step))
    }

    /// Packet `step` of the exchange as the client sends it to the server.
    fn client_sends(&self, step: usize) -> Vec<u8> {
        self.packet(self.s.client, self.s.server, step)
    }

    /// Packet `step` of the exchange as the server side sends it to the translated client.
    fn outside_sends(&self, step: usize) -> Vec<u8> {
        self.packet(self.s.out_dst, self.s.out_src, step)
    }

    /// [`pass`] with the setup's NAT.
    fn pass(&mut self, frame: &[u8], now: u64) -> (CtResult, Vec<u8>, Rewritten) {
        pass(&mut self.w, self.ct, &self.s.spec, frame, now)
    }

    /// The client's first packet of the exchange, as sent and as it leaves the gateway.
    fn first(&mut self) -> (Vec<u8>, Vec<u8>) {
        let f = self.client_sends(0);
        let (_, out, _) = self.pass(&f, 0);
        (f, out)
    }

    /// Passes the ICMP error `err` at `now`: its state must be `state`, the rewrite
    /// exactly `bits`, and what leaves `err` with the outer addresses `outer` and the
    /// quote `quote`, nothing else but checksums. Returns what leaves.
    #[allow(clippy::too_many_arguments)]
    fn error(
        &mut self,
        err: &[u8],
        now: u64,
        state: &str,
        bits: u8,
        outer: &[Outer],
        quote: &[u8],
    ) -> Vec<u8> {
        let (r, got, rewritten) = self.pass(err, now);
        assert_eq!(r.state, st(state));
        assert_eq!(rewritten, Rewritten(bits));
        let (src_at, dst_at, quote_at) = if self.v6 { (22, 38, 62) } else { (26, 30, 42) };
        let mut fields: Vec<(usize, Vec<u8>)> = outer
            .iter()
            .map(|o| match *o {
                Outer::Src(a) => (src_at, wire_addr(a)),
                Outer::Dst(a) => (dst_at, wire_addr(a)),
            })
            .collect();
        fields.push((quote_at, quote.to_vec()));
        assert_rewritten(err, &got, &fields);
        got
    }

    /// SNAT: the client's first packet, then an ICMP error `(ty, code)` about it from
    /// `sender` to the pool address, quoting `quote(n)` bytes of the `n` of its IP packet
    /// as it left. The error must reach the client: `trk,rel,rpl,dnat`, the outer
    /// destination and the quote translated back to what the client sent, nothing else.
    /// Returns how the first packet was rewritten, the error as sent and as it leaves.
    fn error_to_snat_client(
        &mut self,
        sender: &str,
        (ty, code): (u8, u8),
        quote: impl Fn(usize) -> usize,
    ) -> (Rewritten, Vec<u8>, Vec<u8>) {
        let f = self.client_sends(0);
        let (_, out, first_bits) = self.pass(&f, 0);
        let q = quote(ip_of(&out).len());
        let err = build(
            sender,
            self.s.out_src.0,
            &icmp_error(ty, code, 0, &ip_of(&out)[..q]),
        );
        let client = Outer::Dst(self.s.client.0);
        let bits = Rewritten::DST_ADDR | Rewritten::INNER;
        let got = self.error(
            &err,
            1,
            "trk,rel,rpl,dnat",
            bits,
            &[client],
            &ip_of(&f)[..q],
        );
        (first_bits, err, got)
    }
}

fn round_trip(p: Proto, v6: bool, kind: Kind) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, kind, p);
    let s = setup(v6, kind, p);
    // For ICMP the reply carries the (translated) identifier as its "source port".
    let ep_rev = |a: Ep, b: Ep| if p == Proto::Echo { (a.0, b.1) } else { a };
    for (step, now) in [(0usize, 0u64), (2, 2)] {
        // Client → server, leaves translated.
        let f = n.client_sends(step);
        let (r, out, bits) = n.pass(&f, now);
        let want_state = if step == 0 { "trk,new" } else { "trk,est" };
        assert_eq!(
            r.state,
            st(&format!("{want_state},{}", pkt_flag(s.flag, false)))
        );
        let fields = tuple_fields(&f, s.out_src.0, s.out_src.1, s.out_dst.0, s.out_dst.1);
        assert_rewritten(&f, &out, &fields);
        assert!(!bits.is_empty());

        if step == 0 {
            // Server → translated client, arrives un-translated.
            let back_from = ep_rev(s.out_dst, s.out_src);
            let reply = build(
                s.out_dst.0,
                s.out_src.0,
                &exchange(p, v6, back_from, s.out_src, 1),
            );
            let (r, back, _) = n.pass(&reply, 1);
            assert_eq!(
                r.state,
                st(&format!("trk,est,rpl,{}", pkt_flag(s.flag, true)))
            );
            let (sport, dport) = match p {
                Proto::Echo => (s.client.1, 0),
                _ => (s.server.1, s.client.1),
            };
            let fields = tuple_fields(&reply, s.server.0, sport, s.client.0, dport);
            assert_rewritten(&reply, &back, &fields);
        }
    }
    assert_eq!(ct.n_conns(), 1);
}

/// Tests that each call a case function with their arguments.
macro_rules! cases {
    ($f:ident: $($name:ident($($arg:expr),*);)*) => {$(
        #[test]
        fn $name() {
            $f($($arg),*);
        }
    )*};
}

macro_rules! round_trips {
    ($($name:ident: $p:ident, $v6:expr, $k:ident;)*) => {$(
        #[test]
        fn $name() {
            round_trip(Proto::$p, $v6, Kind::$k);
        }
    )*};
}

round_trips! {
    tcp_v4_snat: Tcp, false, Snat;
    tcp_v4_dnat: Tcp, false, Dnat;
    tcp_v4_snat_and_dnat: Tcp, false, Both;
    tcp_v6_snat: Tcp, true, Snat;
    tcp_v6_dnat: Tcp, true, Dnat;
    tcp_v6_snat_and_dnat: Tcp, true, Both;
    udp_v4_snat: Udp, false, Snat;
    udp_v4_dnat: Udp, false, Dnat;
    udp_v4_snat_and_dnat: Udp, false, Both;
    udp_v6_snat: Udp, true, Snat;
    udp_v6_dnat: Udp, true, Dnat;
    udp_v6_snat_and_dnat: Udp, true, Both;
    echo_v4_snat: Echo, false, Snat;
    echo_v4_dnat: Echo, false, Dnat;
    echo_v4_snat_and_dnat: Echo, false, Both;
    echo_v6_snat: Echo, true, Snat;
    echo_v6_dnat: Echo, true, Dnat;
    echo_v6_snat_and_dnat: Echo, true, Both;
    sctp_v4_snat: Sctp, false, Snat;
    sctp_v4_dnat: Sctp, false, Dnat;
    sctp_v4_snat_and_dnat: Sctp, false, Both;
    sctp_v6_snat: Sctp, true, Snat;
    sctp_v6_dnat: Sctp, true, Dnat;
    sctp_v6_snat_and_dnat: Sctp, true, Both;
}

#[test]
fn the_changed_bits_name_exactly_the_rewritten_fields() {
    let ct = tracker();
    let mut n = Flow::new(&ct, false, Kind::Snat, Proto::Tcp);
    let f = n.client_sends(0);
    let (_, _, bits) = n.pass(&f, 0);
    assert_eq!(bits, Rewritten(Rewritten::SRC_ADDR | Rewritten::SRC_PORT));
    let reply = n.outside_sends(1);
    let (_, _, bits) = n.pass(&reply, 1);
    assert_eq!(bits, Rewritten(Rewritten::DST_ADDR | Rewritten::DST_PORT));

    // Another setup through the same worker.
    let mut n = Flow {
        s: setup(true, Kind::Both, Proto::Echo),
        p: Proto::Echo,
        v6: true,
        ..n
    };
    let f = n.client_sends(0);
    let (_, _, bits) = n.pass(&f, 0);
    assert_eq!(
        bits,
        Rewritten(Rewritten::SRC_ADDR | Rewritten::DST_ADDR | Rewritten::ICMP_ID)
    );
    assert_eq!(format!("{bits:?}"), "Rewritten(src,dst,id)");
}

#[test]
fn snat_keeping_the_port_touches_only_the_address_and_checksums() {
    let ct = tracker();
    let mut w = ct.worker(0);
    let spec = NatSpec::snat("192.0.2.1".parse().unwrap());
    let f = build(
        "10.0.0.2",
        "198.51.100.9",
        &tcp_seg(40000, 80, 1000, 0, SYN, &[]),
    );
    let (_, out, bits) = pass(&mut w, &ct, &spec, &f, 0);
    assert_eq!(bits, Rewritten(Rewritten::SRC_ADDR));
    // Source address (26..30) and the two checksums (24..26, 50..52) only.
    let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != out[i]).collect();
    assert!(
        changed
            .iter()
            .all(|i| (24..30).contains(i) || (50..52).contains(i)),
        "{changed:?}"
    );
    assert_rewritten(&f, &out, &[(26, vec![192, 0, 2, 1])]);
}

#[test]
fn snat_tcp_behind_a_vlan_tag_and_ipv4_options() {
    let ct = tracker();
    let mut w = ct.worker(0);
    let spec = NatSpec::snat("192.0.2.1:5000".parse().unwrap());
    let lay = Layout {
        vlan: true,
        ip_opts: true,
        ..Layout::default()
    };
    let f = build_with(
        "10.0.0.2",
        "198.51.100.9",
        &tcp_seg(40000, 80, 1000, 0, SYN, &[]),
        lay,
    );
    let p = parse_frame(&f).unwrap();
    assert_eq!((p.l3_offset, p.l4_offset), (18, 42));
    let (_, out, _) = pass(&mut w, &ct, &spec, &f, 0);
    assert_rewritten(
        &f,
        &out,
        &[
            (30, vec![192, 0, 2, 1]),
            (42, 5000u16.to_be_bytes().to_vec()),
        ],
    );
    let reply = build_with(
        "198.51.100.9",
        "192.0.2.1",
        &tcp_seg(80, 5000, 5000, 1001, SYN | ACK, &[]),
        lay,
    );
    let (_, back, _) = pass(&mut w, &ct, &spec, &reply, 1);
    assert_rewritten(
        &reply,
        &back,
        &[
            (34, vec![10, 0, 0, 2]),
            (44, 40000u16.to_be_bytes().to_vec()),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// UDP checksum 0.

#[test]
fn udp_v4_checksum_zero_stays_zero() {
    let ct = tracker();
    let mut w = ct.worker(0);
    let spec = NatSpec::snat("192.0.2.1:5000".parse().unwrap());
    let body = |sp, dp| Body::Udp {
        sport: sp,
        dport: dp,
        payload: b"no checksum".to_vec(),
        no_csum: true,
    };
    let f = build("10.0.0.2", "198.51.100.9", &body(5353, 53));
    let (_, out, bits) = pass(&mut w, &ct, &spec, &f, 0);
    assert_eq!(bits, Rewritten(Rewritten::SRC_ADDR | Rewritten::SRC_PORT));
    assert_eq!(be16(&out, 40), 0);
    assert_rewritten(
        &f,
        &out,
        &tuple_fields(&f, "192.0.2.1", 5000, "198.51.100.9", 53),
    );
    let reply = build("198.51.100.9", "192.0.2.1", &body(53, 5000));
    let (_, back, _) = pass(&mut w, &ct, &spec, &reply, 1);
    assert_eq!(be16(&back, 40), 0);
    assert_rewritten(
        &reply,
        &back,
        &tuple_fields(&reply, "198.51.100.9", 53, "10.0.0.2", 5353),
    );
    // An ICMP error quoting it: the quoted checksum stays 0 too.
    let err = build(
        "198.51.100.9",
        "192.0.2.1",
        &icmp_error(3, 3, 0, ip_of(&out)),
    );
    let (r, got, _) = pass(&mut w, &ct, &spec, &err, 2);
    assert_eq!(r.state, st("trk,rel,rpl,dnat"));
    assert_eq!(be16(&got, 42 + 20 + 6), 0);
    assert_rewritten(
        &err,
        &got,
        &[(30, vec![10, 0, 0, 2]), (42, ip_of(&f).to_vec())],
    );
}

#[test]
fn udp_v6_checksum_zero_is_left_alone_as_ovs_does() {
    let spec = NatSpec::snat("[2001:db8::1]:5000".parse().unwrap());
    let ct = tracker();
    let mut w = ct.worker(0);
    let f = build(
        "fd00::2",
        "2001:db8:1::9",
        &Body::Udp {
            sport: 5353,
            dport: 53,
            payload: b"tunnel".to_vec(),
            no_csum: true,
        },
    );
    let (_, out, _) = pass(&mut w, &ct, &spec, &f, 0);
    assert_eq!(be16(&out, 60), 0);
    let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != out[i]).collect();
    assert!(
        changed
            .iter()
            .all(|&i| (22..38).contains(&i) || (54..56).contains(&i)),
        "{changed:?}"
    );
}

#[test]
fn udp_checksum_that_computes_to_zero_is_stored_as_ffff() {
    let target = |fam_v6: bool| -> ConnKey {
        let (s, f) = addr(if fam_v6 { "2001:db8::1" } else { "192.0.2.1" });
        let (d, _) = addr(if fam_v6 {
            "2001:db8:1::9"
        } else {
            "198.51.100.9"
        });
        ConnKey {
            src: s,
            dst: d,
            sport: 5000,
            dport: 53,
            zone: 0,
            proto: proto::UDP,
            family: f as u8,
        }
    };
    for v6 in [false, true] {
        let (c, s) = if v6 {
            ("fd00::2", "2001:db8:1::9")
        } else {
            ("10.0.0.2", "198.51.100.9")
        };
        // With payload word w, the translated datagram sums to (sum without w) + w; pick w
        // so that the sum is 0xffff, whose checksum ~0xffff = 0 must be sent as 0xffff.
        let t = target(v6);
        let mut f = build(c, s, &udp_dgram(5353, 53, &[0, 0]));
        let p = parse_frame(&f).unwrap();
        rewrite_to(&mut f, &p, &t).unwrap();
        let l4 = usize::from(p.l4_offset);
        f[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
        let (sa, da) = if v6 {
            (22..38, 38..54)
        } else {
            (26..30, 30..34)
        };
        let len = (f.len() - l4) as u16;
        let pseudo: Vec<u8> = if v6 {
            [
                &f[sa.clone()],
                &f[da.clone()],
                &u32::from(len).to_be_bytes()[..],
                &[0, 0, 0, 17],
            ]
            .concat()
        } else {
            [
                &f[sa.clone()],
                &f[da.clone()],
                &[0, 17],
                &len.to_be_bytes()[..],
            ]
            .concat()
        };
        let w = !naive_sum(&[&pseudo, &f[l4..]]);
        let f = build(c, s, &udp_dgram(5353, 53, &w.to_be_bytes()));
        let mut out = f.clone();
        rewrite_to(&mut out, &p, &t).unwrap();
        assert_eq!(be16(&out, l4 + 6), 0xffff, "v6 {v6}");
        assert_rewritten(
            &f,
            &out,
            &tuple_fields(
                &f,
                if v6 { "2001:db8::1" } else { "192.0.2.1" },
                5000,
                s,
                53,
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// ICMP errors.

/// Port unreachable from the server about a SNATed datagram: the outer destination goes
/// back to the client, and the quote becomes exactly the datagram the client sent.
fn port_unreachable_snat(v6: bool) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Snat, Proto::Udp);
    let server = n.s.server.0;
    let (_, err, got) = n.error_to_snat_client(server, unreachable(v6), |all| all);
    // Only the destination, the quote's source address and port, and checksums changed.
    let changed: Vec<usize> = (0..err.len()).filter(|&i| err[i] != got[i]).collect();
    let allowed: Vec<std::ops::Range<usize>> = if v6 {
        vec![38..54, 56..58, 70..86, 102..104, 108..110]
    } else {
        vec![24..26, 30..34, 36..38, 52..54, 54..58, 62..64, 68..70]
    };
    assert!(
        changed
            .iter()
            .all(|i| allowed.iter().any(|r| r.contains(i))),
        "{changed:?}"
    );
}

cases! {
    port_unreachable_snat:
    udp_port_unreachable_v4_snat(false);
    udp_port_unreachable_v6_snat(true);
}

/// A TCP flow through NAT up to a 1400-byte data segment from `from` (the client when
/// `client_sends`, else the server's reply direction); returns the segment as sent and
/// as it leaves the gateway.
fn big_tcp_segment(n: &mut Flow, client_sends: bool) -> (Vec<u8>, Vec<u8>) {
    n.first();
    let synack = n.outside_sends(1);
    n.pass(&synack, 1);
    let payload: Vec<u8> = (0..1400u32).map(|i| (i * 7 + 3) as u8).collect();
    let s = &n.s;
    let f = if client_sends {
        build(
            s.client.0,
            s.server.0,
            &tcp_seg(s.client.1, s.server.1, 1001, 5001, ACK, &payload),
        )
    } else {
        build(
            s.out_dst.0,
            s.out_src.0,
            &tcp_seg(s.out_dst.1, s.out_src.1, 5001, 1001, ACK, &payload),
        )
    };
    let (r, out, _) = n.pass(&f, 2);
    assert!(r.state.has(CtState::EST), "{r:?}");
    (f, out)
}

/// "Fragmentation needed" from a router beyond the gateway about a SNATed 1400-byte TCP
/// segment, quoting `quote` bytes of it (RFC 792: the IP header and 8 bytes; Linux: up to
/// 576 bytes in all, so the TCP checksum is quoted but the payload is cut).
fn frag_needed_snat(quote: usize) {
    let ct = tracker();
    let mut n = Flow::new(&ct, false, Kind::Snat, Proto::Tcp);
    let (f, out) = big_tcp_segment(&mut n, true);
    let err = build(
        "203.0.113.1",
        "192.0.2.1",
        &icmp_error(3, 4, 1280, &ip_of(&out)[..quote]),
    );
    // The router's address stays; the quote is the client's own segment again, its cut
    // TCP checksum (when quoted) included.
    let got = n.error(
        &err,
        3,
        "trk,rel,rpl,dnat",
        Rewritten::DST_ADDR | Rewritten::INNER,
        &[Outer::Dst("10.0.0.2")],
        &ip_of(&f)[..quote],
    );
    assert_eq!(&got[26..30], &[203, 0, 113, 1]);
}

cases! {
    frag_needed_snat:
    tcp_fragmentation_needed_v4_snat_quoting_8_bytes(28);
    tcp_fragmentation_needed_v4_snat_quoting_548_bytes(548);
}

/// A quote that ends after the first byte of the TCP checksum: that byte cannot be
/// updated without the other and stays; everything else is translated back and the outer
/// checksum covers the bytes as they are.
#[test]
fn a_quote_ending_inside_the_tcp_checksum_keeps_that_byte() {
    let ct = tracker();
    let mut n = Flow::new(&ct, false, Kind::Snat, Proto::Tcp);
    let (f, out) = big_tcp_segment(&mut n, true);
    let q = 20 + 17;
    let err = build(
        "203.0.113.1",
        "192.0.2.1",
        &icmp_error(3, 4, 1280, &ip_of(&out)[..q]),
    );
    let mut quote = ip_of(&f)[..q].to_vec();
    quote[36] = ip_of(&out)[36];
    assert_ne!(ip_of(&f)[36], ip_of(&out)[36]);
    n.error(
        &err,
        3,
        "trk,rel,rpl,dnat",
        Rewritten::DST_ADDR | Rewritten::INNER,
        &[Outer::Dst("10.0.0.2")],
        &quote,
    );
}

#[test]
fn tcp_packet_too_big_v6_snat() {
    let ct = tracker();
    let mut n = Flow::new(&ct, true, Kind::Snat, Proto::Tcp);
    let (f, out) = big_tcp_segment(&mut n, true);
    // As much as fits in the minimum MTU: 1280 - 40 - 8 bytes.
    let q = 1232;
    let err = build(
        "2001:db8:ff::1",
        "2001:db8::1",
        &icmp_error(2, 0, 1280, &ip_of(&out)[..q]),
    );
    n.error(
        &err,
        3,
        "trk,rel,rpl,dnat",
        Rewritten::DST_ADDR | Rewritten::INNER,
        &[Outer::Dst("fd00::2")],
        &ip_of(&f)[..q],
    );
}

/// DNAT, error in the original direction: the forwarded server's big reply leaves as
/// V:80 → X; a router outside reports "fragmentation needed" to V. The outer destination
/// becomes the server, the quote the segment the server sent.
#[test]
fn tcp_fragmentation_needed_v4_dnat_about_the_servers_reply() {
    let ct = tracker();
    let mut n = Flow::new(&ct, false, Kind::Dnat, Proto::Tcp);
    let (f, out) = big_tcp_segment(&mut n, false);
    assert_eq!(&out[26..30], &[192, 0, 2, 1]);
    let err = build(
        "203.0.113.1",
        "192.0.2.1",
        &icmp_error(3, 4, 1280, &ip_of(&out)[..28]),
    );
    n.error(
        &err,
        3,
        "trk,rel,dnat",
        Rewritten::DST_ADDR | Rewritten::INNER,
        &[Outer::Dst("10.0.0.5")],
        &ip_of(&f)[..28],
    );
}

/// DNAT port forward to an inside server whose port is closed: the server's error has
/// its source translated to the public address (it is the translated peer), and an inside
/// router's error too (as OVS and Linux do: inside addresses do not leak).
fn port_unreachable_dnat(v6: bool, from_router: bool) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Dnat, Proto::Udp);
    let (f, out) = n.first();
    let sender = match (v6, from_router) {
        (_, false) => n.s.out_dst.0,
        (false, true) => "10.0.0.254",
        (true, true) => "fd00::fe",
    };
    let (ty, code) = unreachable(v6);
    let err = build(sender, n.s.client.0, &icmp_error(ty, code, 0, ip_of(&out)));
    let server = Outer::Src(n.s.server.0);
    n.error(
        &err,
        1,
        "trk,rel,rpl,snat",
        Rewritten::SRC_ADDR | Rewritten::INNER,
        &[server],
        ip_of(&f),
    );
}

cases! {
    port_unreachable_dnat:
    udp_port_unreachable_v4_dnat_from_the_server(false, false);
    udp_port_unreachable_v6_dnat_from_the_server(true, false);
    udp_host_unreachable_v4_dnat_from_an_inside_router(false, true);
    udp_host_unreachable_v6_dnat_from_an_inside_router(true, true);
}

/// Hairpin (SNAT and DNAT): both outer addresses and both quoted endpoints change.
fn port_unreachable_both(v6: bool) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Both, Proto::Udp);
    let (f, out) = n.first();
    let (ty, code) = unreachable(v6);
    let err = build(
        n.s.out_dst.0,
        n.s.out_src.0,
        &icmp_error(ty, code, 0, ip_of(&out)),
    );
    let outer = [Outer::Src(n.s.server.0), Outer::Dst(n.s.client.0)];
    n.error(
        &err,
        1,
        "trk,rel,rpl,snat",
        Rewritten::SRC_ADDR | Rewritten::DST_ADDR | Rewritten::INNER,
        &outer,
        ip_of(&f),
    );
}

cases! {
    port_unreachable_both:
    udp_port_unreachable_v4_snat_and_dnat(false);
    udp_port_unreachable_v6_snat_and_dnat(true);
}

/// SNAT, error in the original direction: the client's port is closed when the server's
/// answer arrives; its error leaves with the pool address as source and quotes the answer
/// as the server sent it (to the pool address and port).
fn port_unreachable_from_the_snat_client(v6: bool) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Snat, Proto::Udp);
    n.first();
    let answer = n.outside_sends(1);
    let (_, delivered, _) = n.pass(&answer, 1);
    let (ty, code) = unreachable(v6);
    let err = build(
        n.s.client.0,
        n.s.server.0,
        &icmp_error(ty, code, 0, ip_of(&delivered)),
    );
    let pool = Outer::Src(n.s.out_src.0);
    n.error(
        &err,
        2,
        "trk,rel,snat",
        Rewritten::SRC_ADDR | Rewritten::INNER,
        &[pool],
        ip_of(&answer),
    );
}

cases! {
    port_unreachable_from_the_snat_client:
    udp_port_unreachable_v4_from_the_snat_client(false);
    udp_port_unreachable_v6_from_the_snat_client(true);
}

/// Time exceeded about a SNATed echo request: the quoted identifier (and, for ICMPv6, the
/// quoted pseudo-header) goes back with the quoted ICMP checksum.
fn time_exceeded_echo(v6: bool) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Snat, Proto::Echo);
    // IPv4 routers quote the header and 8 bytes; IPv6 ones as much as fits.
    if v6 {
        n.error_to_snat_client("2001:db8:ff::1", (3, 0), |all| all);
    } else {
        n.error_to_snat_client("203.0.113.1", (11, 0), |_| 28);
    }
}

cases! {
    time_exceeded_echo:
    echo_time_exceeded_v4_snat(false);
    echo_time_exceeded_v6_snat(true);
}

/// An ICMP error about a SNATed SCTP packet: the quoted ports go back to the client's; a
/// whole quote gets the CRC32c the client computed, a quote of 8 bytes has none to fix.
fn sctp_error_snat(v6: bool, whole: bool) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Snat, Proto::Sctp);
    let hl = if v6 { 40 } else { 20 };
    let server = n.s.server.0;
    let quote = |all| if whole { all } else { hl + 8 };
    let (bits, _, _) = n.error_to_snat_client(server, unreachable(v6), quote);
    assert!(bits.has(Rewritten::SRC_ADDR | Rewritten::SRC_PORT));
}

cases! {
    sctp_error_snat:
    sctp_port_unreachable_v4_snat_whole_quote_gets_the_clients_crc32c_back(false, true);
    sctp_port_unreachable_v6_snat_whole_quote_gets_the_clients_crc32c_back(true, true);
    sctp_port_unreachable_v4_snat_quoting_8_bytes(false, false);
}

#[test]
fn sctp_with_a_wrong_crc32c_is_refused_not_laundered() {
    let ct = tracker();
    let mut n = Flow::new(&ct, false, Kind::Snat, Proto::Sctp);
    n.first();
    let mut f = n.client_sends(2);
    let last = f.len() - 4;
    f[last] ^= 0x20; // a payload byte: the CRC32c no longer matches
    let p = parse_frame(&f).unwrap();
    let r = n.w.process_nat(&p, 0, true, &n.s.spec, 1);
    assert!(r.conn.is_some());
    let mut out = f.clone();
    assert_eq!(
        apply(&mut out, &p, &r, &ct),
        Err(RewriteError::SctpChecksum)
    );
    assert_eq!(out, f);
}

#[test]
fn an_sctp_fragment_whose_ports_change_is_refused() {
    let f = build("10.0.0.2", "198.51.100.9", &sctp_pkt(40000, 9899, 2, b"x"));
    let mut p = parse_frame(&f).unwrap();
    p.fragment = Fragment::First;
    let mut t = ConnKey::from_packet(&p, 0);
    t.src = addr("192.0.2.1").0;
    // Addresses only: the CRC32c does not cover them.
    let mut out = f.clone();
    assert_eq!(
        rewrite_to(&mut out, &p, &t),
        Ok(Rewritten(Rewritten::SRC_ADDR))
    );
    t.sport = 5000;
    let mut out = f.clone();
    assert_eq!(
        rewrite_to(&mut out, &p, &t),
        Err(RewriteError::SctpFragment)
    );
    assert_eq!(out, f);
}

#[test]
fn dccp_and_udplite_checksums_follow_address_only_snat() {
    for protocol in [proto::DCCP, proto::UDPLITE] {
        let ct = tracker();
        let mut w = ct.worker(0);
        let spec = NatSpec::snat("192.0.2.1".parse().unwrap());
        // Ports 40000 → 80, then (DCCP) data offset 3 / (UDP-Lite) coverage 0.
        let hdr = |sp: u16, dp: u16| {
            let mut v = [sp.to_be_bytes(), dp.to_be_bytes()].concat();
            v.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
            Body::Raw {
                protocol,
                payload: v,
            }
        };
        let f = build("10.0.0.2", "198.51.100.9", &hdr(40000, 80));
        let (r, out, bits) = pass(&mut w, &ct, &spec, &f, 0);
        assert_eq!(r.state, st("trk,new,snat"), "{protocol}");
        assert_eq!(bits, Rewritten(Rewritten::SRC_ADDR));
        assert_rewritten(&f, &out, &[(26, wire_addr("192.0.2.1"))]);
        let reply = build("198.51.100.9", "192.0.2.1", &hdr(80, 40000));
        let (r, back, _) = pass(&mut w, &ct, &spec, &reply, 1);
        assert_eq!(r.state, st("trk,est,rpl,dnat"), "{protocol}");
        assert_rewritten(&reply, &back, &[(30, wire_addr("10.0.0.2"))]);
    }
}

// ---------------------------------------------------------------------------------------
// Delivery: what the tracker keys and what NAT rewrites agree, for every protocol.

/// The protocols of the delivery property: those with ports (TCP, UDP, SCTP), ICMP echo
/// (the identifier), and address-only ones (GRE, ESP, DCCP, UDP-Lite, an unassigned one).
#[derive(Clone, Copy, Debug)]
enum DProto {
    Tcp,
    Udp,
    Sctp,
    Echo,
    Raw(u8),
}

const DPROTOS: [DProto; 9] = [
    DProto::Tcp,
    DProto::Udp,
    DProto::Sctp,
    DProto::Echo,
    DProto::Raw(47),
    DProto::Raw(50),
    DProto::Raw(proto::DCCP),
    DProto::Raw(proto::UDPLITE),
    DProto::Raw(253),
];

/// `Conntrack::nat_target_v4`, the NAT fast path's target, is `nat_target`'s tuple in
/// both directions of an IPv4 TCP or UDP connection with SNAT or DNAT, and `None` for
/// every connection the fast path does not take (ICMP, SCTP, address-only protocols, IPv6)
/// or that has no NAT.
#[test]
fn the_fast_path_target_is_the_nat_target_of_ipv4_tcp_and_udp_connections() {
    let as_tuple = |k: &ConnKey| TupleV4 {
        src: a4(&k.src),
        dst: a4(&k.dst),
        sport: k.sport,
        dport: k.dport,
        proto: k.proto,
    };
    let snat4 = NatSpec::snat("192.0.2.1:2000-2999".parse().unwrap());
    let dnat4 = NatSpec::dnat("10.0.0.80:8080".parse().unwrap());
    let snat6 = NatSpec::snat("[2001:db8::1]:2000-2999".parse().unwrap());
    let none = NatSpec {
        snat: None,
        dnat: None,
    };
    for (i, dp) in DPROTOS.iter().copied().enumerate() {
        for (v6, spec) in [
            (false, &snat4),
            (false, &dnat4),
            (true, &snat6),
            (false, &none),
        ] {
            let ct = tracker();
            let mut w = ct.worker(0);
            let (client, server) = if v6 {
                ("fd00::2", "2001:db8:1::9")
            } else {
                ("10.0.0.2", "198.51.100.9")
            };
            let sport = 40000 + i as u16;
            let (r, out, _) = pass(
                &mut w,
                &ct,
                spec,
                &build(client, server, &dbody(dp, v6, sport, 80, false)),
                0,
            );
            let hit = r.conn.expect("created");
            // The reply to the translated tuple, as the server sees it.
            let ((osrc, osport), (odst, odport)) = (source_of(&out), dest_of(&out));
            let body = dbody(dp, v6, odport.unwrap_or(80), osport.unwrap_or(sport), true);
            let reply = build(
                &addr_to_string(&odst, v6),
                &addr_to_string(&osrc, v6),
                &body,
            );
            let (rr, _, _) = pass(&mut w, &ct, spec, &reply, 0);
            let rhit = rr.conn.expect("reply matched");
            let fast = matches!(dp, DProto::Tcp | DProto::Udp)
                && !v6
                && (spec.snat.is_some() || spec.dnat.is_some());
            for h in [hit, rhit] {
                let want = ct.nat_target(&h);
                assert_eq!(
                    want.is_some(),
                    spec.snat.is_some() || spec.dnat.is_some(),
                    "{dp:?} v6={v6}"
                );
                let got = ct.nat_target_v4(&h);
                if fast {
                    assert_eq!(got, want.as_ref().map(as_tuple), "{dp:?} dir {}", h.dir);
                } else {
                    assert_eq!(got, None, "{dp:?} v6={v6}: not the fast path's");
                }
            }
        }
    }
}

/// A packet of a connection (`reply`: from the server), ports `sp` → `dp`.
fn dbody(p: DProto, v6: bool, sp: u16, dp: u16, reply: bool) -> Body {
    match p {
        DProto::Tcp if reply => tcp_seg(sp, dp, 5000, 1001, SYN | ACK, &[]),
        DProto::Tcp => tcp_seg(sp, dp, 1000, 0, SYN, &[]),
        DProto::Udp => udp_dgram(sp, dp, b"datagram"),
        DProto::Sctp => sctp_pkt(sp, dp, usize::from(reply), b""),
        // The identifier is the client's "port" in both directions.
        DProto::Echo => echo(v6, !reply, if reply { dp } else { sp }, 1, b"ping"),
        DProto::Raw(protocol) => {
            let mut v = [sp.to_be_bytes(), dp.to_be_bytes()].concat();
            v.extend_from_slice(&[0, 0, 0, 0, 0xab, 0xcd, 0xef, 0x01]);
            Body::Raw {
                protocol,
                payload: v,
            }
        }
    }
}

/// The destination address and "port" of a frame (ICMP: the identifier; address-only
/// protocols: none).
fn dest_of(f: &[u8]) -> ([u8; 16], Option<u16>) {
    let p = parse_frame(f).unwrap();
    let port = match p.l4 {
        L4Summary::Tcp(t) => Some(t.dport),
        L4Summary::Udp { dport, .. } | L4Summary::Sctp { dport, .. } => Some(dport),
        L4Summary::Icmp(i) => Some(i.id),
        L4Summary::Other => None,
    };
    (p.dst, port)
}

/// The source address and "port" of a frame, as [`dest_of`].
fn source_of(f: &[u8]) -> ([u8; 16], Option<u16>) {
    let p = parse_frame(f).unwrap();
    let port = match p.l4 {
        L4Summary::Tcp(t) => Some(t.sport),
        L4Summary::Udp { sport, .. } | L4Summary::Sctp { sport, .. } => Some(sport),
        L4Summary::Icmp(i) => Some(i.id),
        L4Summary::Other => None,
    };
    (p.src, port)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Several inside hosts open a connection each to one server through SNAT; the server
    /// answers every translated tuple it saw. Every reply arrives at the host whose
    /// connection it belongs to (address and port), never at another. Protocols with ports
    /// admit as many hosts as the pool has tuples; address-only ones one host per pool
    /// address, the others refused as `nat_exhausted`.
    #[test]
    fn every_reply_reaches_the_host_whose_connection_it_is(
        v6 in any::<bool>(),
        which in 0usize..DPROTOS.len(),
        hosts in 2usize..6,
        same_port in any::<bool>(),
        ports in proptest::collection::vec(1024u16.., 6),
        n_pool in 1u8..4,
        pool_ports in proptest::option::of(0u16..4),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
    ) {
        let dp = DPROTOS[which];
        let host = |i: usize| if v6 { format!("fd00::{:x}", i + 2) } else { format!("10.0.0.{}", i + 2) };
        let server = if v6 { "2001:db8:1::9" } else { "198.51.100.9" };
        let pool_addrs = if v6 {
            format!("[2001:db8::1]-[2001:db8::{n_pool}]")
        } else {
            format!("192.0.2.1-192.0.2.{n_pool}")
        };
        let pool = match pool_ports {
            Some(k) => format!("{pool_addrs}:2000-{}", 2000 + k),
            None => pool_addrs,
        };
        let spec = NatSpec::snat(pool.parse().unwrap());
        let ct = tracker();
        let mut w = ct.worker(0);
        let mut admitted = Vec::new(); // (host index, client port, translated source)
        for (i, &port) in ports.iter().enumerate().take(hosts) {
            let cport = if same_port { 40000 } else { port };
            let h = host(i);
            let f = build(&h, server, &dbody(dp, v6, cport, 80, false));
            let p = parse_frame(&f).unwrap();
            let r = w.process_nat(&p, 0, true, &spec, 0);
            match r.refused {
                Some(refusal) => {
                    prop_assert_eq!(refusal, crate::conntrack::Refusal::NatExhausted);
                    prop_assert!(r.conn.is_none());
                }
                None => {
                    let mut out = f.clone();
                    apply(&mut out, &p, &r, &ct).unwrap();
                    prop_assert_eq!(verify_frame(&out), Ok(()));
                    admitted.push((i, cport, source_of(&out)));
                }
            }
        }
        let has_ports = !matches!(dp, DProto::Raw(_));
        let tuples = match (has_ports, pool_ports) {
            (false, _) => usize::from(n_pool),
            (true, Some(k)) => usize::from(n_pool) * (usize::from(k) + 1),
            (true, None) => usize::MAX,
        };
        prop_assert_eq!(admitted.len(), hosts.min(tuples), "{:?} pool {}", dp, pool);
        // The server answers in a shuffled order.
        let mut answers = admitted.clone();
        let n = answers.len();
        for k in (1..n).rev() {
            answers.swap(k, (order >> (k * 5)) as usize % (k + 1));
        }
        for (i, cport, (out_addr, out_port)) in answers {
            let to = addr_to_string(&out_addr, v6);
            let reply = build(server, &to, &dbody(dp, v6, 80, out_port.unwrap_or(cport), true));
            let p = parse_frame(&reply).unwrap();
            let r = w.process_nat(&p, 0, true, &spec, 1);
            prop_assert!(r.state.has(CtState::RPL), "{:?} {:?}", dp, r.state);
            let mut back = reply.clone();
            apply(&mut back, &p, &r, &ct).unwrap();
            prop_assert_eq!(verify_frame(&back), Ok(()));
            let (dst, port) = dest_of(&back);
            prop_assert_eq!(dst, addr(&host(i)).0, "{:?}: reply for host {} went elsewhere", dp, i);
            if has_ports {
                prop_assert_eq!(port, Some(cport), "{:?}: reply for host {}", dp, i);
            }
        }
    }
}

fn addr_to_string(a: &[u8; 16], v6: bool) -> String {
    crate::conntrack::key::addr_to_ip(if v6 { 6 } else { 4 }, a).to_string()
}

// ---------------------------------------------------------------------------------------
// apply() around the rewrite, and bad input.

#[test]
fn apply_leaves_connections_without_nat_alone() {
    let ct = tracker();
    let mut w = ct.worker(0);
    let f = build("10.0.0.2", "198.51.100.9", &udp_dgram(5353, 53, b"query"));
    let p = parse_frame(&f).unwrap();
    let r = w.process(&p, 0, true, 0);
    assert!(r.conn.is_some());
    let mut out = f.clone();
    assert_eq!(apply(&mut out, &p, &r, &ct), Ok(Rewritten::NONE));
    assert_eq!(out, f);
    // Nor untracked or invalid packets.
    assert_eq!(
        apply(&mut out, &p, &CtResult::default(), &ct),
        Ok(Rewritten::NONE)
    );
    assert_eq!(out, f);
}

#[test]
fn apply_refuses_a_packet_whose_nat_connection_is_gone() {
    let ct = tracker();
    let mut w = ct.worker(0);
    let spec = NatSpec::snat("192.0.2.1".parse().unwrap());
    let f = build("10.0.0.2", "198.51.100.9", &udp_dgram(5353, 53, b"query"));
    let p = parse_frame(&f).unwrap();
    let r = w.process_nat(&p, 0, true, &spec, 0);
    assert!(w.remove(&r.conn.unwrap()));
    let mut out = f.clone();
    assert_eq!(apply(&mut out, &p, &r, &ct), Err(RewriteError::ConnGone));
    assert_eq!(out, f);
}

#[test]
fn a_target_of_another_family_or_protocol_is_refused() {
    let f = build("10.0.0.2", "198.51.100.9", &udp_dgram(5353, 53, b"query"));
    let p = parse_frame(&f).unwrap();
    let mut t = ConnKey::from_packet(&p, 0);
    let mut out = f.clone();
    t.proto = proto::TCP;
    assert_eq!(rewrite_to(&mut out, &p, &t), Err(RewriteError::Mismatch));
    t.proto = proto::UDP;
    t.family = 6;
    assert_eq!(rewrite_to(&mut out, &p, &t), Err(RewriteError::Mismatch));
    assert_eq!(out, f);
    // The unchanged tuple changes nothing.
    let t = ConnKey::from_packet(&p, 0);
    assert_eq!(rewrite_to(&mut out, &p, &t), Ok(Rewritten::NONE));
    assert_eq!(out, f);
}

#[test]
fn a_later_fragment_gets_its_addresses_only() {
    let lay = Layout {
        frag_offset: 1480,
        ..Layout::default()
    };
    let f = build_with(
        "10.0.0.2",
        "198.51.100.9",
        &udp_dgram(5353, 53, b"12345678"),
        lay,
    );
    let p = parse_frame(&f).unwrap();
    assert_eq!(p.fragment, Fragment::Later);
    let (s, _) = addr("192.0.2.1");
    let t = ConnKey {
        src: s,
        sport: 5000,
        ..ConnKey::from_packet(&p, 0)
    };
    let mut out = f.clone();
    assert_eq!(
        rewrite_to(&mut out, &p, &t),
        Ok(Rewritten(Rewritten::SRC_ADDR))
    );
    let mut want = f.clone();
    want[26..30].copy_from_slice(&[192, 0, 2, 1]);
    want[24..26].copy_from_slice(&[0, 0]);
    let c = naive_csum(&[&want[14..34]]);
    want[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(out, want);
}

/// A related error frame for a SNAT UDP connection, its parse and its target.
fn related_error(v6: bool) -> (Vec<u8>, ParsedPacket, ConnKey) {
    let ct = tracker();
    let mut n = Flow::new(&ct, v6, Kind::Snat, Proto::Udp);
    let (_, out) = n.first();
    let (ty, code) = unreachable(v6);
    let err = build(
        n.s.server.0,
        n.s.out_src.0,
        &icmp_error(ty, code, 0, ip_of(&out)),
    );
    let p = parse_frame(&err).unwrap();
    let r = n.w.process(&p, 0, true, 1);
    let t = ct.nat_target(&r.conn.unwrap()).unwrap();
    (err, p, t)
}

#[test]
fn an_icmp_error_with_a_cut_quote_is_an_error_never_a_panic() {
    for v6 in [false, true] {
        let (err, p, t) = related_error(v6);
        // The frame cut anywhere, with the parse of the whole one (stale offsets): always
        // refused, nothing written.
        for n in 0..err.len() {
            let mut f = err[..n].to_vec();
            assert!(rewrite_to(&mut f, &p, &t).is_err(), "v6 {v6} cut at {n}");
            assert_eq!(f, &err[..n]);
        }
        // Quotes cut inside the embedded IP header or before 8 bytes of its L4 header, with
        // consistent outer lengths: the parser finds no embedded packet, the tracker calls
        // the error invalid, and a rewrite of it is refused.
        let quote = &ip_of(&err)[if v6 { 48 } else { 28 }..];
        let hl = if v6 { 40 } else { 20 };
        for q in [0, 1, hl / 2, hl - 1, hl, hl + 4, hl + 7] {
            let src = if v6 { "2001:db8:1::9" } else { "198.51.100.9" };
            let dst = if v6 { "2001:db8::1" } else { "192.0.2.1" };
            let (ty, code) = unreachable(v6);
            let cut = build(src, dst, &icmp_error(ty, code, 0, &quote[..q]));
            let cp = parse_frame(&cut).unwrap();
            let L4Summary::Icmp(i) = cp.l4 else { panic!() };
            assert_eq!(i.inner, None, "q {q}");
            let ct = tracker();
            let r = ct.worker(0).process(&cp, 0, true, 0);
            assert_eq!(r.state, st("trk,inv"));
            let mut f = cut.clone();
            assert_eq!(rewrite_to(&mut f, &cp, &t), Err(RewriteError::BadInner));
            assert_eq!(apply(&mut f, &cp, &r, &ct), Ok(Rewritten::NONE));
            assert_eq!(f, cut);
        }
        // An embedded packet of another protocol than the connection's.
        let mut t2 = t;
        t2.proto = proto::TCP;
        let mut f = err.clone();
        assert_eq!(rewrite_to(&mut f, &p, &t2), Err(RewriteError::BadInner));
        assert_eq!(f, err);
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

fn arb_addr(v6: bool) -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>().prop_map(move |mut a| {
        if !v6 {
            a[4..].fill(0);
        }
        a
    })
}

/// A random TCP/UDP/echo/SCTP body (kind 0/1/2/3) with the given "ports".
fn arb_body(v6: bool) -> impl Strategy<Value = Body> {
    (
        0u8..4,
        any::<u16>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..90),
        0usize..4,
        any::<bool>(),
        any::<(u32, u32, u8)>(),
    )
        .prop_map(
            move |(kind, sp, dp, payload, opt_words, no_csum, (seq, ack, flags))| match kind {
                0 => Body::Tcp {
                    sport: sp,
                    dport: dp,
                    seq,
                    ack,
                    flags,
                    window: 64240,
                    opts: vec![1; 4 * opt_words],
                    payload,
                },
                1 => Body::Udp {
                    sport: sp,
                    dport: dp,
                    payload,
                    // Over IPv6 a zero UDP checksum does not verify (it is kept as is).
                    no_csum: no_csum && !v6,
                },
                2 => echo(v6, sp % 2 == 0, sp, dp, &payload),
                _ => Body::Sctp {
                    sport: sp,
                    dport: dp,
                    tag: seq,
                    chunks: chunk(flags, &payload),
                },
            },
        )
}

fn body_ports(b: &Body) -> (u8, u16, u16) {
    match b {
        Body::Tcp { sport, dport, .. } => (proto::TCP, *sport, *dport),
        Body::Udp { sport, dport, .. } => (proto::UDP, *sport, *dport),
        Body::Icmp { rest, .. } => (0, (rest >> 16) as u16, 0),
        Body::Sctp { sport, dport, .. } => (proto::SCTP, *sport, *dport),
        Body::Raw { protocol, .. } => (*protocol, 0, 0),
    }
}

/// A random target: each field kept (None) or replaced.
type TargetSpec = (Option<[u8; 16]>, Option<[u8; 16]>, Option<u16>, Option<u16>);

fn arb_target(v6: bool) -> impl Strategy<Value = TargetSpec> {
    (
        proptest::option::of(arb_addr(v6)),
        proptest::option::of(arb_addr(v6)),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    )
}

/// Writes a tuple into the IP packet `pkt` (no options or extension headers needed) and
/// recomputes its checksums from scratch: the reference a translation must equal.
fn translate_full(pkt: &mut [u8], src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16) {
    let v4 = pkt[0] >> 4 == 4;
    let (hl, protocol) = if v4 {
        (usize::from(pkt[0] & 15) * 4, pkt[9])
    } else {
        (40, pkt[6])
    };
    if v4 {
        pkt[12..16].copy_from_slice(&src[..4]);
        pkt[16..20].copy_from_slice(&dst[..4]);
    } else {
        pkt[8..24].copy_from_slice(src);
        pkt[24..40].copy_from_slice(dst);
    }
    match protocol {
        6 | 17 | proto::SCTP => {
            pkt[hl..hl + 2].copy_from_slice(&sport.to_be_bytes());
            pkt[hl + 2..hl + 4].copy_from_slice(&dport.to_be_bytes());
        }
        _ => pkt[hl + 4..hl + 6].copy_from_slice(&sport.to_be_bytes()),
    }
    naive_fill_l3(pkt);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Random packets, random translations: the incremental updates equal a full
    /// recomputation of every checksum (and only the tuple and checksums change).
    #[test]
    fn incremental_equals_full_recomputation(
        (v6, src, dst, body, t) in any::<bool>().prop_flat_map(|v6| (Just(v6), arb_addr(v6), arb_addr(v6), arb_body(v6), arb_target(v6))),
        vlan in any::<bool>(),
        ip_opts in any::<bool>(),
    ) {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        let lay = Layout { vlan, ip_opts: ip_opts && !v6, frag_offset: 0 };
        let f = build_raw(src, dst, fam, &body, lay);
        let p = parse_frame(&f).unwrap();
        let (_, _, dp) = body_ports(&body);
        let mut key = ConnKey::from_packet(&p, 0);
        if let Some(a) = t.0 { key.src = a; }
        if let Some(a) = t.1 { key.dst = a; }
        if let Some(x) = t.2 { key.sport = x; }
        if let Some(x) = t.3 { if !matches!(body, Body::Icmp { .. }) { key.dport = x; } }
        let mut out = f.clone();
        let bits = rewrite_to(&mut out, &p, &key).unwrap();
        let l3 = usize::from(p.l3_offset);
        let mut want = f.clone();
        translate_full(&mut want[l3..], &key.src, &key.dst, key.sport, if matches!(body, Body::Icmp { .. }) { dp } else { key.dport });
        prop_assert!(out == want, "{}", diff(&f, &out, &want));
        prop_assert_eq!(verify_frame(&out), Ok(()));
        prop_assert_eq!(bits.is_empty(), out == f);
    }

    /// The IPv4 TCP/UDP fast path (`rewrite_v4_ports`, what `apply` takes for most
    /// packets) writes exactly the bytes of the general path and of a full recomputation,
    /// with the same changed bits, UDP's zero checksum included; it declines (writing
    /// nothing) every other packet, which the general path then handles.
    #[test]
    fn the_ipv4_port_fast_path_writes_what_the_general_path_writes(
        (src, dst, body, t) in (arb_addr(false), arb_addr(false), arb_body(false), arb_target(false)),
        vlan in any::<bool>(),
        ip_opts in any::<bool>(),
    ) {
        let lay = Layout { vlan, ip_opts, frag_offset: 0 };
        let f = build_raw(src, dst, Family::V4, &body, lay);
        let p = parse_frame(&f).unwrap();
        let mut key = ConnKey::from_packet(&p, 0);
        if let Some(a) = t.0 { key.src = a; }
        if let Some(a) = t.1 { key.dst = a; }
        if let Some(x) = t.2 { key.sport = x; }
        if let Some(x) = t.3 { key.dport = x; }
        let tuple = TupleV4 {
            src: a4(&key.src),
            dst: a4(&key.dst),
            sport: key.sport,
            dport: key.dport,
            proto: key.proto,
        };
        let mut fast = f.clone();
        let got = rewrite_v4_ports(&mut fast, &p, &tuple);
        if !matches!(body, Body::Tcp { .. } | Body::Udp { .. }) {
            prop_assert_eq!(got, None);
            prop_assert!(fast == f, "declined, yet written");
            return Ok(());
        }
        let mut general = f.clone();
        let want_bits = rewrite_to(&mut general, &p, &key).unwrap();
        prop_assert_eq!(got, Some(want_bits));
        prop_assert!(fast == general, "{}", diff(&f, &fast, &general));
        let l3 = usize::from(p.l3_offset);
        let mut full = f.clone();
        translate_full(&mut full[l3..], &key.src, &key.dst, key.sport, key.dport);
        prop_assert!(fast == full, "{}", diff(&f, &fast, &full));
        // Another protocol than the packet's: declined, nothing written.
        let other = TupleV4 { proto: if key.proto == proto::TCP { proto::UDP } else { proto::TCP }, ..tuple };
        let mut untouched = f.clone();
        prop_assert_eq!(rewrite_v4_ports(&mut untouched, &p, &other), None);
        prop_assert!(untouched == f);
    }

    /// ICMP errors quoting random packets cut at random lengths, random translations:
    /// the quote becomes the prefix of the fully recomputed translated packet (its cut L4
    /// checksum included), and the outer checksums equal a full recomputation.
    #[test]
    fn icmp_error_incremental_equals_full_recomputation(
        (v6, isrc, idst, body, t, osrc) in any::<bool>().prop_flat_map(|v6| (Just(v6), arb_addr(v6), arb_addr(v6), arb_body(v6), arb_target(v6), arb_addr(v6))),
        cut in any::<prop::sample::Index>(),
    ) {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        let body = match body {
            Body::Icmp { code, rest, data, .. } => Body::Icmp { ty: if v6 { 128 } else { 8 }, code, rest, data },
            b => b,
        };
        let inner = build_raw(isrc, idst, fam, &body, Layout::default());
        let full = ip_of(&inner).to_vec();
        let hl = if v6 { 40 } else { 20 };
        let q = hl + 8 + cut.index(full.len() - hl - 7);
        let (ty, code) = if v6 { (1, 4) } else { (3, 3) };
        // Sent to the quoted packet's source, as a real error is.
        let err = build_raw(osrc, isrc, fam, &icmp_error(ty, code, 0, &full[..q]), Layout::default());
        let p = parse_frame(&err).unwrap();
        let (protocol, sp, dp) = body_ports(&body);
        let protocol = if protocol == 0 { if v6 { proto::ICMPV6 } else { proto::ICMP } } else { protocol };
        // The target of the error's direction: the reverse of the quoted tuple, changed.
        let mut key = ConnKey { src: idst, dst: isrc, sport: dp, dport: sp, zone: 0, proto: protocol, family: fam as u8 };
        if protocol == proto::ICMP || protocol == proto::ICMPV6 { key.sport = sp; key.dport = 0; }
        if let Some(a) = t.0 { key.src = a; }
        if let Some(a) = t.1 { key.dst = a; }
        if let Some(x) = t.2 { key.sport = x; }
        if let Some(x) = t.3 { if protocol != proto::ICMP && protocol != proto::ICMPV6 { key.dport = x; } }
        let mut out = err.clone();
        rewrite_to(&mut out, &p, &key).unwrap();

        // The quote: the reverse of the target, written into the whole packet.
        let mut quote = full.clone();
        if protocol == proto::ICMP || protocol == proto::ICMPV6 {
            translate_full(&mut quote, &key.dst, &key.src, key.sport, 0);
        } else {
            translate_full(&mut quote, &key.dst, &key.src, key.dport, key.sport);
        }
        // A quote that ends inside the TCP checksum keeps its one byte: it cannot be
        // updated without the other.
        if protocol == proto::TCP && q == hl + 17 {
            quote[hl + 16] = full[hl + 16];
        }
        // A truncated SCTP quote keeps its CRC32c (it cannot be recomputed).
        if protocol == proto::SCTP && q < full.len() {
            quote[hl + 8..hl + 12].copy_from_slice(&full[hl + 8..hl + 12]);
        }
        let mut want = err.clone();
        let at = 14 + hl + 8;
        want[at..at + q].copy_from_slice(&quote[..q]);
        let (s_at, d_at, n) = if v6 { (22, 38, 16) } else { (26, 30, 4) };
        want[d_at..d_at + n].copy_from_slice(&key.dst[..n]);
        if idst != key.src {
            want[s_at..s_at + n].copy_from_slice(&key.src[..n]);
        }
        naive_fill_frame(&mut want);
        prop_assert!(out == want, "{}", diff(&err, &out, &want));
        prop_assert_eq!(verify_frame(&out), Ok(()));
    }

    /// Mutated and cut frames, reparsed or with a stale parse, random targets: never a
    /// panic, and nothing written when the rewrite is refused.
    #[test]
    fn bad_frames_never_panic(
        v6 in any::<bool>(),
        which in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
        cut in any::<prop::sample::Index>(),
        t in any::<([u8; 16], [u8; 16], u16, u16)>(),
        stale in any::<bool>(),
    ) {
        let (c, s) = if v6 { ("fd00::2", "2001:db8:1::9") } else { ("10.0.0.2", "198.51.100.9") };
        let base = match which {
            0 => build(c, s, &tcp_seg(40000, 80, 1, 0, SYN, b"x")),
            1 => build(c, s, &udp_dgram(5353, 53, b"query")),
            2 => build(c, s, &echo(v6, true, 7, 1, b"ping")),
            3 => build(c, s, &sctp_pkt(40000, 9899, 2, b"data")),
            _ => {
                let u = build(s, c, &udp_dgram(53, 5353, b"answer"));
                build(c, s, &icmp_error(if v6 { 1 } else { 3 }, if v6 { 4 } else { 3 }, 0, ip_of(&u)))
            }
        };
        let mut f = base.clone();
        for (at, bit) in flips {
            let i = at.index(f.len());
            f[i] ^= 1 << bit;
        }
        f.truncate(cut.index(f.len() + 1));
        let p = if stale { parse_frame(&base).ok() } else { parse_frame(&f).ok() };
        if let Some(p) = p {
            for protocol in [p.proto, proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6, proto::SCTP] {
                let key = ConnKey { src: t.0, dst: t.1, sport: t.2, dport: t.3, zone: 0, proto: protocol, family: p.family as u8 };
                let mut g = f.clone();
                if rewrite_to(&mut g, &p, &key).is_err() {
                    prop_assert_eq!(&g, &f);
                }
            }
        }
    }
}
