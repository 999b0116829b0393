//! Fragment traces for the differential test: datagrams cut into fragments (by the
//! shared test-frame builder, `ctgate::wire::testframe::fragments`) and sent in order,
//! out of order, with a duplicate, with a fragment overlapping another by one octet, with
//! fragments below the minimum size, and expiring; UDP, ICMP echo and TCP; IPv4 and IPv6
//! (one datagram with Hop-by-Hop, Destination Options and Routing headers before the
//! Fragment header), each answered by its peer (whole and fragmented) so that NAT's
//! reverse translation of fragments is exercised too. ICMP errors from the far side
//! quote a first and a non-first fragment; fragments of several datagrams come
//! interleaved in one burst (a tick of several packets, one batch for OVS).
//!
//! Every packet is a tick of its own (1 ms apart); the expiring datagrams come first,
//! then a 16 s jump (past the 15 s reassembly timeout of both) and one unfragmented packet
//! per family (OVS looks at expired datagrams when a batch of that family passes), so that
//! no other datagram held at the end has expired.

use std::net::IpAddr;

use super::gen::{self, Trace, TracePacket};
use ctgate::wire::proto::tcp_flags::{ACK, PSH, SYN};
use ctgate::wire::testframe::{fragments, L4};

/// Who talks to whom, as the pipeline translates it.
#[derive(Clone, Copy, Debug)]
pub enum Nat {
    /// No translation of this family.
    None,
    /// Source NAT of the inside client to the pool.
    Snat,
    /// Destination NAT of the public address to the inside server (IPv4).
    Dnat,
}

/// The client port of the overlap scenario (its connection exists in OVS only: X6).
pub const OVERLAP_SPORT: u16 = 41005;

/// Bytes of data per fragment (a multiple of 8): IPv4 fragments of 1,252 bytes and IPv6
/// ones of at least 1,280, the defaults' minimum sizes.
const PIECE: usize = 1232;

struct Peers {
    client: IpAddr,
    /// Where requests go.
    to: IpAddr,
    /// Where answers come from, and their source port (DNAT changes it).
    from: IpAddr,
    from_port: Option<u16>,
    /// Where answers go.
    back: IpAddr,
}

fn peers(v6: bool, nat: Nat, n: u8) -> Peers {
    let ip = |s: String| -> IpAddr { s.parse().unwrap() };
    let (client, server) = if v6 {
        (ip(format!("fd01::{n}")), ip(format!("2001:db8::{n}")))
    } else {
        (ip(format!("10.1.0.{n}")), ip(format!("192.0.2.{n}")))
    };
    match nat {
        Nat::None => Peers {
            client,
            to: server,
            from: server,
            from_port: None,
            back: client,
        },
        Nat::Snat => Peers {
            client,
            to: server,
            from: server,
            from_port: None,
            back: if v6 {
                IpAddr::V6(gen::POOL_V6)
            } else {
                IpAddr::V4(gen::POOL_V4)
            },
        },
        Nat::Dnat => Peers {
            client: server,
            to: IpAddr::V4(gen::DNAT_PUBLIC),
            from: IpAddr::V4(gen::DNAT_SERVER),
            from_port: Some(gen::DNAT_PORT),
            back: server,
        },
    }
}

/// The trace under construction.
struct Builder {
    trace: Trace,
    ts: u64,
    ident: u32,
}

impl Builder {
    fn send(&mut self, frame: Vec<u8>, what: String) {
        self.send_quoting(frame, what, None);
    }

    /// [`Builder::send`] of an ICMP error whose quote, when it is RELATED, must reach
    /// its receiver as `expect_quote`.
    fn send_quoting(&mut self, frame: Vec<u8>, what: String, expect_quote: Option<Vec<u8>>) {
        self.trace.push_tick(self.ts, frame, what, expect_quote);
        self.ts += 1;
    }

    fn next_ident(&mut self) -> u32 {
        self.ident += 1;
        self.ident
    }

    /// A whole frame, framed as the other traces frame theirs.
    fn whole(src: IpAddr, dst: IpAddr, l4: L4, ident: u32, ext: &[u8]) -> Vec<u8> {
        gen::framed(src, dst, l4)
            .ident(ident as u16)
            .ext_headers(ext)
            .build()
    }

    /// The fragments of `whole` (`PIECE` bytes each) and its identification.
    fn cut(&mut self, src: IpAddr, dst: IpAddr, l4: L4, ext: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let ident = self.next_ident();
        let w = Builder::whole(src, dst, l4, ident, ext);
        fragments(&w, piece, ident)
    }

    /// Sends `frames` (with what they are) as one tick: one burst at one time.
    fn send_burst(&mut self, frames: Vec<(Vec<u8>, String)>) {
        let start = self.trace.packets.len();
        for (k, (mut frame, what)) in frames.into_iter().enumerate() {
            frame[..6].copy_from_slice(&gen::id_mac(start + k));
            self.trace.packets.push(TracePacket {
                ts_ms: self.ts,
                data: frame,
                what,
                expect_quote: None,
            });
        }
        self.trace.ticks.push(start..self.trace.packets.len());
        self.ts += 1;
    }

    /// Sends `frags` in the order `order` (indices, repeats allowed).
    fn send_frags(&mut self, tag: &str, what: &str, frags: &[Vec<u8>], order: &[usize]) {
        for &k in order {
            self.send(
                frags[k].clone(),
                format!("{tag} {what} fragment {}/{}", k + 1, frags.len()),
            );
        }
    }
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `frag` (not the last of its datagram) made the datagram's last fragment one octet
/// longer: it then overlaps the fragment after it by one octet. `next_data` is that
/// octet.
fn one_octet_longer_last(frag: &[u8], next_data: u8) -> Vec<u8> {
    let p = ctgate::wire::parse_frame(frag).unwrap();
    let l3 = usize::from(p.l3_offset);
    let mut f = frag.to_vec();
    f.push(next_data);
    if p.family as u8 == 4 {
        let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) + 1;
        f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        f[l3 + 6] &= !0x20; // MF off
        f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = ctgate::wire::checksum::ipv4_header(&f[l3..usize::from(p.l4_offset)]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) + 1;
        f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        // The fragment header right after the fixed header (no extension headers here).
        f[l3 + 40 + 3] &= !1; // M off
    }
    f
}

/// The first `n` data octets of the datagram's fragmentable part start at `data_at` of
/// the second fragment; the octet a longer first-of-two would carry next.
fn data_octet(frag: &[u8]) -> u8 {
    let p = ctgate::wire::parse_frame(frag).unwrap();
    let at = usize::from(p.l4_offset);
    // A later fragment parses with its data as "L4".
    frag[at]
}

/// The fragment trace of a case whose IPv4 and IPv6 translations are `v4` and `v6`.
pub fn trace(v4: Nat, v6: Nat) -> Trace {
    let mut b = Builder {
        trace: Trace::default(),
        ts: 1_700_000_000_000,
        ident: 0x4000,
    };
    let fams = [(false, v4), (true, v6)];

    // Expiring: two of three fragments, then 16 s, then a packet of the family, then the
    // third (which finds its datagram expired and is held anew).
    let mut thirds = Vec::new();
    for (v6, nat) in fams {
        let p = peers(v6, nat, 1);
        let f = b.cut(
            p.client,
            p.to,
            L4::udp(41001, 5001, &payload(3000, 1)),
            &[],
            PIECE,
        );
        let tag = format!("frag#exp{}", if v6 { 6 } else { 4 });
        b.send_frags(&tag, "udp request", &f, &[0, 1]);
        thirds.push((tag, f));
    }
    b.ts += 16_000;
    for (v6, nat) in fams {
        let p = peers(v6, nat, 2);
        let w = Builder::whole(p.client, p.to, L4::udp(41002, 5002, b"tick"), 1, &[]);
        b.send(w, format!("frag#tick{} udp whole", if v6 { 6 } else { 4 }));
    }
    for (tag, f) in &thirds {
        b.send_frags(tag, "udp request (after expiry)", f, &[2]);
    }

    for (v6, nat) in fams {
        let fam = if v6 { 6 } else { 4 };
        let ext: &[u8] = if v6 { &[0, 60, 43] } else { &[] };
        // UDP in order, answered whole and then fragmented; IPv6 with three extension
        // headers before the Fragment header.
        let p = peers(v6, nat, 3);
        let (sp, dp) = (41003, 5003);
        let rp = p.from_port.unwrap_or(dp);
        let tag = format!("frag#udp{fam}");
        let f = b.cut(
            p.client,
            p.to,
            L4::udp(sp, dp, &payload(3000, 3)),
            ext,
            PIECE,
        );
        b.send_frags(&tag, "request in order", &f, &[0, 1, 2]);
        let w = Builder::whole(p.from, p.back, L4::udp(rp, sp, b"short answer"), 7, &[]);
        b.send(w, format!("{tag} answer whole"));
        let f = b.cut(
            p.from,
            p.back,
            L4::udp(rp, sp, &payload(4000, 4)),
            ext,
            PIECE,
        );
        b.send_frags(&tag, "answer in order", &f, &[0, 1, 2, 3]);

        // UDP out of order (last first) and with a duplicate middle fragment.
        let p = peers(v6, nat, 4);
        let (sp, dp) = (41004, 5004);
        let rp = p.from_port.unwrap_or(dp);
        let tag = format!("frag#ooo{fam}");
        let f = b.cut(
            p.client,
            p.to,
            L4::udp(sp, dp, &payload(3000, 5)),
            &[],
            PIECE,
        );
        b.send_frags(&tag, "request out of order", &f, &[2, 0, 1]);
        let f = b.cut(
            p.from,
            p.back,
            L4::udp(rp, sp, &payload(3000, 6)),
            &[],
            PIECE,
        );
        b.send_frags(&tag, "answer with a duplicate", &f, &[0, 1, 1, 2]);

        // A fragment overlapping the next one by one octet (a second "last" fragment),
        // then the right fragment.
        let p = peers(v6, nat, 5);
        let tag = format!("frag#overlap{fam}");
        let f = b.cut(
            p.client,
            p.to,
            L4::udp(OVERLAP_SPORT, 5005, &payload(3000, 7)),
            &[],
            PIECE,
        );
        let bad = one_octet_longer_last(&f[1], data_octet(&f[2]));
        b.send_frags(&tag, "request", &f, &[0, 2]);
        b.send(
            bad,
            format!("{tag} request fragment 2/3 one octet longer, last"),
        );
        b.send_frags(&tag, "request", &f, &[1]);

        // Fragments below the minimum size (576 data bytes).
        let p = peers(v6, nat, 6);
        let tag = format!("frag#small{fam}");
        let f = b.cut(
            p.client,
            p.to,
            L4::udp(41006, 5006, &payload(1500, 8)),
            &[],
            576,
        );
        b.send_frags(&tag, "request in small pieces", &f, &[0, 1, 2]);

        // A large ping, answered by a large reply, both fragmented.
        let p = peers(v6, nat, 7);
        let tag = format!("frag#icmp{fam}");
        let (req, rep) = if v6 { (128, 129) } else { (8, 0) };
        let data = payload(3000, 9);
        let f = b.cut(p.client, p.to, L4::echo(req, 0x77, 1, &data), &[], PIECE);
        b.send_frags(&tag, "echo request", &f, &[0, 1, 2]);
        let f = b.cut(p.from, p.back, L4::echo(rep, 0x77, 1, &data), &[], PIECE);
        b.send_frags(&tag, "echo reply out of order", &f, &[1, 2, 0]);

        // TCP: handshake, a 3000-byte segment in fragments out of order, its ACK, and a
        // fragmented segment back.
        let p = peers(v6, nat, 8);
        let tag = format!("frag#tcp{fam}");
        let (sp, dp) = (41008, 5008);
        let rp = p.from_port.unwrap_or(dp);
        let (c, s) = (1000u32, 5000u32);
        #[allow(clippy::too_many_arguments)]
        fn seg(
            src: IpAddr,
            dst: IpAddr,
            a: u16,
            bp: u16,
            seq: u32,
            ack: u32,
            fl: u8,
            n: usize,
        ) -> (IpAddr, IpAddr, L4) {
            (
                src,
                dst,
                L4::tcp(a, bp, seq, ack, fl, &payload(n, 10)).window(65535),
            )
        }
        let (x, y, l) = seg(p.client, p.to, sp, dp, c, 0, SYN, 0);
        b.send(Builder::whole(x, y, l, 1, &[]), format!("{tag} syn"));
        let (x, y, l) = seg(p.from, p.back, rp, sp, s, c + 1, SYN | ACK, 0);
        b.send(Builder::whole(x, y, l, 1, &[]), format!("{tag} syn-ack"));
        let (x, y, l) = seg(p.client, p.to, sp, dp, c + 1, s + 1, ACK, 0);
        b.send(Builder::whole(x, y, l, 1, &[]), format!("{tag} ack"));
        let (x, y, l) = seg(p.client, p.to, sp, dp, c + 1, s + 1, ACK | PSH, 3000);
        let f = b.cut(x, y, l, &[], PIECE);
        b.send_frags(&tag, "data", &f, &[1, 0, 2]);
        let (x, y, l) = seg(p.from, p.back, rp, sp, s + 1, c + 3001, ACK, 0);
        b.send(
            Builder::whole(x, y, l, 1, &[]),
            format!("{tag} ack of the data"),
        );
        let (x, y, l) = seg(p.from, p.back, rp, sp, s + 1, c + 3001, ACK | PSH, 2600);
        let f = b.cut(x, y, l, &[], PIECE);
        b.send_frags(&tag, "data back", &f, &[0, 1, 2]);

        // ICMP errors from the far side quoting a fragment of a request as it arrived
        // there (translated), each cut to 548 bytes as Linux quotes: "fragment reassembly
        // time exceeded" quoting its first fragment (with the UDP header; what a host
        // sends when the rest never came, RFC 792 / RFC 8200 §4.5), and "time exceeded in
        // transit" quoting its second (no L4 header). Related, the first must reach the
        // client quoting the fragment as the client sent it.
        let p = peers(v6, nat, 9);
        let tag = format!("frag#icmperr{fam}");
        let (sp, dp) = (41009, 5009);
        let rp = p.from_port.unwrap_or(dp);
        let data = payload(3000, 11);
        let f = b.cut(p.client, p.to, L4::udp(sp, dp, &data), &[], PIECE);
        b.send_frags(&tag, "request", &f, &[0, 1, 2]);
        let ident = b.ident;
        let arrived = fragments(
            &Builder::whole(p.back, p.from, L4::udp(sp, rp, &data), ident, &[]),
            PIECE,
            ident,
        );
        let ty = if v6 { 3 } else { 11 };
        for (k, code, which) in [(0, 1, "first"), (1, 0, "second")] {
            let quote = &arrived[k][14..14 + 548];
            let err = Builder::whole(p.from, p.back, L4::icmp(ty, code, 0, quote), 9, &[]);
            b.send_quoting(
                err,
                format!("{tag} time exceeded (code {code}) quoting the request's {which} fragment"),
                Some(f[k][14..14 + 548].to_vec()),
            );
        }

        // Fragments of three datagrams (two UDP flows and a ping) interleaved in one
        // burst, with an unfragmented packet among them; then their answers, interleaved
        // in another burst in another order.
        let tag = format!("frag#mix{fam}");
        let (pa, pb, pc) = (peers(v6, nat, 10), peers(v6, nat, 11), peers(v6, nat, 12));
        let (req, rep) = if v6 { (128, 129) } else { (8, 0) };
        let (ra, rc) = (pa.from_port.unwrap_or(5010), pc.from_port.unwrap_or(5012));
        let a = b.cut(
            pa.client,
            pa.to,
            L4::udp(41010, 5010, &payload(3000, 12)),
            &[],
            PIECE,
        );
        let ping = payload(2000, 13);
        let bb = b.cut(pb.client, pb.to, L4::echo(req, 0x78, 1, &ping), &[], PIECE);
        let c = b.cut(
            pc.client,
            pc.to,
            L4::udp(41012, 5012, &payload(2400, 14)),
            &[],
            PIECE,
        );
        let whole = Builder::whole(pc.client, pc.to, L4::udp(41013, 5013, b"whole"), 1, &[]);
        let name = |x: &str, k: usize, n: usize| format!("{tag} {x} fragment {}/{n}", k + 1);
        b.send_burst(vec![
            (a[0].clone(), name("udp a request", 0, 3)),
            (bb[1].clone(), name("echo request", 1, 2)),
            (c[1].clone(), name("udp c request", 1, 2)),
            (a[2].clone(), name("udp a request", 2, 3)),
            (whole, format!("{tag} udp whole among them")),
            (bb[0].clone(), name("echo request", 0, 2)),
            (a[1].clone(), name("udp a request", 1, 3)),
            (c[0].clone(), name("udp c request", 0, 2)),
        ]);
        let a = b.cut(
            pa.from,
            pa.back,
            L4::udp(ra, 41010, &payload(3000, 15)),
            &[],
            PIECE,
        );
        let bb = b.cut(pb.from, pb.back, L4::echo(rep, 0x78, 1, &ping), &[], PIECE);
        let c = b.cut(
            pc.from,
            pc.back,
            L4::udp(rc, 41012, &payload(1500, 16)),
            &[],
            PIECE,
        );
        b.send_burst(vec![
            (c[1].clone(), name("udp c answer", 1, 2)),
            (bb[0].clone(), name("echo reply", 0, 2)),
            (a[1].clone(), name("udp a answer", 1, 3)),
            (c[0].clone(), name("udp c answer", 0, 2)),
            (a[0].clone(), name("udp a answer", 0, 3)),
            (bb[1].clone(), name("echo reply", 1, 2)),
            (a[2].clone(), name("udp a answer", 2, 3)),
        ]);
    }
    b.trace
}
