//! The gateway step on the embedded default config, with frames built byte by byte.
//!
//! Port 0 (inside, 10.0.0.1/24, fd00:0:0:1::1/64, MAC GW0), port 1 (outside,
//! 192.0.2.1/24, fd00:0:0:2::1/64, MAC GW1), default routes via 192.0.2.2 /
//! fd00:0:0:2::2, SNAT to 192.0.2.1 / fd00:0:0:2::1.

use super::neigh::{NEIGH_REACHABLE_MAX_MS, NEIGH_RETRY_MS, NEIGH_TTL_MS};
use super::state::GEN_LEN;
use super::*;
use crate::config::Config;

mod alg_ftp;
mod hardening;
mod mappings;
mod mtu;
mod reload;
use crate::conntrack::{Conntrack, CtConfig};
use crate::pipeline::MacAddr;
use crate::wire::frame_checksums::{fill_frame, verify_frame};
use crate::wire::testframe::{arp, ether, fragments, ip4, ip6, tagged, Frame, L4};
use std::net::IpAddr;

const GW0: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
const GW1: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa1];
/// The inside host 10.0.0.2 / fd00:0:0:1::2.
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// The outside next hop 192.0.2.2 / fd00:0:0:2::2.
const ROUTER: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

const H4: [u8; 4] = [10, 0, 0, 2];
const GW_IN4: [u8; 4] = [10, 0, 0, 1];
const GW_OUT4: [u8; 4] = [192, 0, 2, 1];
const ROUTER4: [u8; 4] = [192, 0, 2, 2];
const SERVER4: [u8; 4] = [198, 51, 100, 7];

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// A frame held by the test "worker".
#[derive(Default)]
struct TestSink {
    emitted: Vec<(u16, Vec<u8>)>,
    sent: Vec<(u16, Vec<u8>)>,
    dropped: Vec<(DropReason, Vec<u8>)>,
    held: Vec<Option<Vec<u8>>>,
}

impl StepSink for TestSink {
    fn emit(&mut self, port: u16, frame: &[u8]) {
        self.emitted.push((port, frame.to_vec()));
    }
    fn send_held(&mut self, slot: u16, port: u16, dst_mac: MacAddr) {
        let mut f = self.held[usize::from(slot)]
            .take()
            .expect("slot holds a frame");
        f[0..6].copy_from_slice(&dst_mac.0);
        self.sent.push((port, f));
    }
    fn drop_held(&mut self, slot: u16, reason: DropReason, _in_port: u16) {
        let f = self.held[usize::from(slot)]
            .take()
            .expect("slot holds a frame");
        self.dropped.push((reason, f));
    }
}

struct Gw {
    shared: Arc<GatewayShared>,
    step: GatewayStep,
    sink: TestSink,
}

impl Gw {
    fn with_config(text: &str) -> Gw {
        let cfg = Config::parse(text, "test.toml").unwrap();
        let ct = Arc::new(Conntrack::new(CtConfig {
            max_conns: 4096,
            n_buckets: 0,
            workers: 1,
            tcp_seq_check: true,
            hash_seed: Some(7),
        }));
        // As `build_tracker` does at start.
        ct.set_helpers(&cfg.alg);
        let shared = GatewayShared::new(&cfg, ct, &[(0, MacAddr(GW0)), (1, MacAddr(GW1))]).unwrap();
        shared.set_now_ms(1_000);
        let step = GatewayStep::new(shared.clone(), 0);
        let sink = TestSink {
            held: vec![None; step.hold_slots()],
            ..TestSink::default()
        };
        Gw { shared, step, sink }
    }

    fn new() -> Gw {
        Gw::with_config(crate::config::EMBEDDED_DEFAULT)
    }

    /// One frame through the step as the worker runs it (burst, park held, service).
    fn send(&mut self, frame: &[u8], in_port: u16) -> (Verdict, Vec<u8>) {
        let mut f = frame.to_vec();
        let v = self.step.process(&mut f, in_port);
        if let Verdict::Hold(slot) = v {
            let s = &mut self.sink.held[usize::from(slot)];
            assert!(s.is_none(), "hold slot {slot} given twice");
            *s = Some(f.clone());
        }
        self.step.service(&mut self.sink);
        (v, f)
    }

    fn tick(&mut self, ms: u64) {
        let now = self.shared.now_ms() + ms;
        self.shared.set_now_ms(now);
        self.step.service(&mut self.sink);
    }

    fn take_emitted(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.sink.emitted)
    }

    fn take_sent(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.sink.sent)
    }

    /// The inside host and the outside router announce themselves (their ARP requests
    /// for the gateway): both neighbours resolved.
    fn resolve_v4_neighbours(&mut self) {
        let (v, _) = self.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0);
        assert_eq!(v, Verdict::Forward(0));
        let (v, _) = self.send(&arp(1, ROUTER, ROUTER4, [0; 6], GW_OUT4, [0xff; 6]), 1);
        assert_eq!(v, Verdict::Forward(1));
        self.take_emitted();
    }
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    L4::tcp(sport, dport, seq, ack, flags, payload).bytes()
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    L4::udp(sport, dport, payload).bytes()
}

fn echo(ty: u8, id: u16, seq: u16) -> Vec<u8> {
    L4::echo(ty, id, seq, b"pingdata").bytes()
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

fn fwd(v: Verdict, port: u16) {
    assert_eq!(v, Verdict::Forward(port));
}

/// The frames of the topology: `$name(src, dst, proto, l4)` is an IP packet `src` → `dst`
/// of protocol `proto` carrying `l4`, between the MACs and with the TTL of its row.
macro_rules! hops {
    ($($name:ident: $ip:ident, $addr:ty, $dmac:ident <- $smac:ident, ttl $ttl:literal;)*) => {$(
        fn $name(src: $addr, dst: $addr, proto: u8, l4: &[u8]) -> Vec<u8> {
            $ip($dmac, $smac, src, dst, $ttl, proto, l4)
        }
    )*};
}

hops! {
    // The inside host sends to the gateway, which forwards to the outside router.
    from_host4: ip4, [u8; 4], GW0 <- HOST, ttl 64;
    to_router4: ip4, [u8; 4], ROUTER <- GW1, ttl 63;
    // The outside router sends to the gateway, which forwards to the inside host.
    from_router4: ip4, [u8; 4], GW1 <- ROUTER, ttl 60;
    to_host4: ip4, [u8; 4], HOST <- GW0, ttl 59;
    from_host6: ip6, [u8; 16], GW0 <- HOST, ttl 64;
    to_router6: ip6, [u8; 16], ROUTER <- GW1, ttl 63;
    from_router6: ip6, [u8; 16], GW1 <- ROUTER, ttl 60;
    to_host6: ip6, [u8; 16], HOST <- GW0, ttl 59;
}

/// A TCP segment (its ports kept) of the host's SNATed connection to SERVER4: (in port,
/// the frame the host sends, the frame the gateway must forward to the router).
fn snat_out(seg: &[u8]) -> (u16, Vec<u8>, Vec<u8>) {
    let (a, b) = (
        from_host4(H4, SERVER4, 6, seg),
        to_router4(GW_OUT4, SERVER4, 6, seg),
    );
    (0, a, b)
}

/// The server's side of [`snat_out`]'s connection: (in port, the frame the router sends,
/// the frame the gateway must forward to the host).
fn snat_in(seg: &[u8]) -> (u16, Vec<u8>, Vec<u8>) {
    let (a, b) = (
        from_router4(SERVER4, GW_OUT4, 6, seg),
        to_host4(SERVER4, H4, 6, seg),
    );
    (1, a, b)
}

#[test]
fn arp_request_for_the_gateway_gets_the_exact_reply() {
    let mut g = Gw::new();
    let req = arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]);
    let (v, out) = g.send(&req, 0);
    fwd(v, 0);
    let want: Vec<u8> = [
        &HOST[..],
        &GW0,
        &[0x08, 0x06],             // Ethernet: to the host, from port 0
        &[0, 1, 8, 0, 6, 4, 0, 2], // Ethernet/IPv4, reply
        &GW0,
        &GW_IN4, // sender: the gateway
        &HOST,
        &H4, // target: the host
    ]
    .concat();
    assert_eq!(out, want);
    assert_eq!(g.shared.counters().arp_replies, 1);
    assert_eq!(
        g.shared.neighbours(),
        vec![(0, "10.0.0.2".parse().unwrap(), MacAddr(HOST))]
    );

    // For the SNAT pool address on the outside port too; not for others, and nothing
    // leaks: another host's request, a request on the wrong port.
    let (v, out) = g.send(&arp(1, ROUTER, ROUTER4, [0; 6], GW_OUT4, [0xff; 6]), 1);
    fwd(v, 1);
    assert_eq!(&out[28..32], &GW_OUT4);
    assert_eq!(&out[22..28], &GW1);
    for (f, port) in [
        (arp(1, HOST, H4, [0; 6], [10, 0, 0, 9], [0xff; 6]), 0),
        (arp(1, HOST, H4, [0; 6], GW_OUT4, [0xff; 6]), 0),
    ] {
        let (v, out) = g.send(&f, port);
        assert_eq!(v, Verdict::Drop(DropReason::Local));
        assert_eq!(out, f, "untouched");
    }
    // Truncated ARP: malformed; VLAN or non-Ethernet ARP: not IP.
    let (v, _) = g.send(&req[..30], 0);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let mut odd = req.clone();
    odd[15] = 6; // hardware type 6
    assert_eq!(g.send(&odd, 0).0, Verdict::Drop(DropReason::NotIp));
    assert!(g.take_emitted().is_empty());
}

fn ns(src_mac: [u8; 6], src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let group = originated::solicited_node(&target);
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target);
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&src_mac);
    ip6(
        originated::ipv6_multicast_mac(&group),
        src_mac,
        src,
        group,
        255,
        58,
        &m,
    )
}

#[test]
fn ndp_solicitation_for_the_gateway_gets_an_advertisement() {
    let mut g = Gw::new();
    let host6 = v6("fd00:0:0:1::2");
    let gw6 = v6("fd00:0:0:1::1");
    let (v, out) = g.send(&ns(HOST, host6, gw6), 0);
    fwd(v, 0);
    let mut m = vec![136, 0, 0, 0, 0xe0, 0, 0, 0];
    m.extend_from_slice(&gw6);
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&GW0);
    let want = ip6(HOST, GW0, gw6, host6, 255, 58, &m);
    assert_eq!(out, want);
    verify_frame(&out).unwrap();
    assert_eq!(g.shared.counters().nd_adverts, 1);
    assert!(g
        .shared
        .neighbours()
        .contains(&(0, IpAddr::from(host6), MacAddr(HOST))));
    // Not for us: consumed, not answered. Hop limit not 255: ignored.
    let (v, _) = g.send(&ns(HOST, host6, v6("fd00:0:0:1::9")), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let mut bad = ns(HOST, host6, gw6);
    bad[21] = 64;
    fill_frame(&mut bad).unwrap();
    assert_eq!(g.send(&bad, 0).0, Verdict::Drop(DropReason::Local));
    assert_eq!(g.shared.counters().nd_adverts, 1);
}

#[test]
fn ping_to_the_gateway_is_answered_v4_and_v6() {
    let mut g = Gw::new();
    let req = from_host4(H4, GW_IN4, 1, &echo(8, 77, 1));
    let (v, out) = g.send(&req, 0);
    fwd(v, 0);
    let mut want = ip4(HOST, GW0, GW_IN4, H4, 64, 1, &echo(0, 77, 1));
    // Same IP id and flags as the request: only addresses, TTL and type change.
    want[18..20].copy_from_slice(&req[18..20]);
    fill_frame(&mut want).unwrap();
    assert_eq!(out, want);
    verify_frame(&out).unwrap();

    // The outside address, pinged from inside, answers from that address.
    let (v, out) = g.send(&from_host4(H4, GW_OUT4, 1, &echo(8, 78, 1)), 0);
    fwd(v, 0);
    assert_eq!(&out[26..30], &GW_OUT4);
    verify_frame(&out).unwrap();

    let host6 = v6("fd00:0:0:1::2");
    let gw6 = v6("fd00:0:0:1::1");
    let (v, out) = g.send(&from_host6(host6, gw6, 58, &echo(128, 5, 9)), 0);
    fwd(v, 0);
    assert_eq!(out, ip6(HOST, GW0, gw6, host6, 64, 58, &echo(129, 5, 9)));
    verify_frame(&out).unwrap();
    assert_eq!(g.shared.counters().echo_replies, 3);
}

#[test]
fn tcp_inside_to_outside_is_held_until_arp_then_snat_and_replies_come_back() {
    let mut g = Gw::new();
    // The host learned from its own ARP request for the gateway.
    fwd(g.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0).0, 0);

    let syn = from_host4(H4, SERVER4, 6, &tcp(40000, 80, 1000, 0, SYN, b""));
    let (v, _) = g.send(&syn, 0);
    assert!(matches!(v, Verdict::Hold(_)), "{v:?}");
    // The ARP request for the next hop, exactly.
    let em = g.take_emitted();
    let want_req: Vec<u8> = [
        &[0xff; 6][..],
        &GW1,
        &[0x08, 0x06],
        &[0, 1, 8, 0, 6, 4, 0, 1],
        &GW1,
        &GW_OUT4,
        &[0; 6],
        &ROUTER4,
    ]
    .concat();
    assert_eq!(em, vec![(1, want_req)]);
    // Rate-limited: a second packet for the same hop is held without a new request.
    assert!(g.take_sent().is_empty());

    // The router answers; the held SYN goes out translated.
    let (v, _) = g.send(&arp(2, ROUTER, ROUTER4, GW1, GW_OUT4, GW1), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let sent = g.take_sent();
    let want = to_router4(GW_OUT4, SERVER4, 6, &tcp(40000, 80, 1000, 0, SYN, b""));
    assert_eq!(sent, vec![(1, want.clone())]);
    verify_frame(&sent[0].1).unwrap();
    assert_eq!(g.shared.counters().released, 1);

    // The rest of the connection, both ways.
    let steps: [(u16, Vec<u8>, Vec<u8>); 6] = [
        snat_in(&tcp(80, 40000, 5000, 1001, SYN | ACK, b"")),
        snat_out(&tcp(40000, 80, 1001, 5001, PSH | ACK, b"hello")),
        snat_in(&tcp(80, 40000, 5001, 1006, ACK, b"")),
        snat_out(&tcp(40000, 80, 1006, 5001, FIN | ACK, b"")),
        snat_in(&tcp(80, 40000, 5001, 1007, FIN | ACK, b"")),
        snat_out(&tcp(40000, 80, 1007, 5002, ACK, b"")),
    ];
    for (i, (port, input, want)) in steps.iter().enumerate() {
        let (v, out) = g.send(input, *port);
        fwd(v, 1 - port);
        assert_eq!(&out, want, "step {i}");
        verify_frame(&out).unwrap();
    }
    assert!(g.take_emitted().is_empty());
    let conns = g.shared.conntrack().all_conns();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].orig.zone, 1);
}

#[test]
fn udp_and_icmp_echo_are_translated_and_an_icmp_error_comes_back_translated() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let (v, out) = g.send(&from_host4(H4, SERVER4, 17, &udp(5353, 53, b"query")), 0);
    fwd(v, 1);
    assert_eq!(
        out,
        to_router4(GW_OUT4, SERVER4, 17, &udp(5353, 53, b"query"))
    );
    let (v, out) = g.send(
        &from_router4(SERVER4, GW_OUT4, 17, &udp(53, 5353, b"answer")),
        1,
    );
    fwd(v, 0);
    assert_eq!(out, to_host4(SERVER4, H4, 17, &udp(53, 5353, b"answer")));

    // Port unreachable from the server about a later datagram (as it saw it: from the
    // pool address), in through the outside: outer and quoted packet translated back.
    let later_out = to_router4(GW_OUT4, SERVER4, 17, &udp(5353, 53, b"again"));
    let (v, _) = g.send(&from_host4(H4, SERVER4, 17, &udp(5353, 53, b"again")), 0);
    fwd(v, 1);
    let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&later_out[14..]);
    let (v, out) = g.send(&from_router4(SERVER4, GW_OUT4, 1, &err), 1);
    fwd(v, 0);
    let orig_in = ip4(GW0, HOST, H4, SERVER4, 63, 17, &udp(5353, 53, b"again"));
    let mut err_in = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err_in.extend_from_slice(&orig_in[14..]);
    assert_eq!(out, to_host4(SERVER4, H4, 1, &err_in));
    verify_frame(&out).unwrap();

    // ICMP echo through the gateway and its reply.
    let (v, out) = g.send(&from_host4(H4, SERVER4, 1, &echo(8, 900, 1)), 0);
    fwd(v, 1);
    assert_eq!(out, to_router4(GW_OUT4, SERVER4, 1, &echo(8, 900, 1)));
    let (v, out) = g.send(&from_router4(SERVER4, GW_OUT4, 1, &echo(0, 900, 1)), 1);
    fwd(v, 0);
    assert_eq!(out, to_host4(SERVER4, H4, 1, &echo(0, 900, 1)));
}

#[test]
fn policy_malformed_non_ip_and_ttl() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    // An unsolicited SYN from outside: to the gateway's own address it is `local` (as
    // the README says of traffic to its addresses), to an inside host `policy_denied`.
    for (dst, reason) in [(GW_OUT4, DropReason::Local), (H4, DropReason::PolicyDenied)] {
        let syn = from_router4(SERVER4, dst, 6, &tcp(33000, 22, 1, 0, SYN, b""));
        let (v, out) = g.send(&syn, 1);
        assert_eq!(v, Verdict::Drop(reason), "to {dst:?}");
        assert_eq!(out, syn);
    }
    assert_eq!(g.shared.conntrack().n_conns(), 0, "nothing created");
    // A reply-looking packet for no connection from outside: invalid or denied, dropped.
    let (v, _) = g.send(
        &from_router4(
            SERVER4,
            GW_OUT4,
            6,
            &tcp(80, 40000, 5000, 1001, SYN | ACK, b""),
        ),
        1,
    );
    assert!(
        matches!(
            v,
            Verdict::Drop(DropReason::Invalid | DropReason::PolicyDenied)
        ),
        "{v:?}"
    );

    // Malformed: IHL 4; TCP data offset beyond the packet; cut Ethernet; not IP.
    let mut bad = from_host4(H4, SERVER4, 6, &tcp(1, 2, 3, 4, SYN, b""));
    bad[14] = 0x44;
    assert_eq!(g.send(&bad, 0).0, Verdict::Drop(DropReason::Malformed));
    let mut bad = from_host4(H4, SERVER4, 6, &tcp(1, 2, 3, 4, SYN, b""));
    bad[14 + 20 + 12] = 0xf0;
    assert_eq!(g.send(&bad, 0).0, Verdict::Drop(DropReason::Malformed));
    assert_eq!(
        g.send(&[0u8; 10], 0).0,
        Verdict::Drop(DropReason::ShortFrame)
    );
    assert_eq!(
        g.send(&ether(GW0, HOST, 0x88cc, b""), 0).0,
        Verdict::Drop(DropReason::NotIp)
    );
    // A frame for another host's MAC (flooded unicast), or with a broadcast MAC: not
    // routed.
    let other = ip4(HOST, ROUTER, H4, SERVER4, 64, 17, &udp(1, 2, b"o"));
    assert_eq!(g.send(&other, 0).0, Verdict::Drop(DropReason::Local));
    let bcast = ip4([0xff; 6], HOST, H4, SERVER4, 64, 17, &udp(1, 2, b"o"));
    assert_eq!(g.send(&bcast, 0).0, Verdict::Drop(DropReason::Local));
    // Multicast/broadcast: never forwarded.
    let (v, _) = g.send(
        &ip4(
            GW0,
            HOST,
            H4,
            [224, 0, 0, 251],
            1,
            17,
            &udp(5353, 5353, b"m"),
        ),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let (v, _) = g.send(&from_host4(H4, [10, 0, 0, 255], 17, &udp(1, 2, b"b")), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Local));

    // TTL 1: time exceeded back to the sender, from the input port's address, quoting
    // the whole packet (33 bytes: all of it fits in 576).
    let dying = ip4(GW0, HOST, H4, SERVER4, 1, 17, &udp(7000, 33434, b"trace"));
    let (v, _) = g.send(&dying, 0);
    assert_eq!(v, Verdict::Drop(DropReason::TtlExpired));
    let em = g.take_emitted();
    assert_eq!(em.len(), 1);
    let (port, te) = &em[0];
    assert_eq!(*port, 0);
    let mut msg = vec![11, 0, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(&dying[14..]);
    let mut want = ip4(HOST, GW0, GW_IN4, H4, 64, 1, &msg);
    want[18..22].copy_from_slice(&[0, 0, 0, 0]);
    fill_frame(&mut want).unwrap();
    assert_eq!(te, &want);
    verify_frame(te).unwrap();
    assert_eq!(g.shared.counters().time_exceeded, 1);
    assert_eq!(
        g.shared.conntrack().n_conns(),
        0,
        "expired packets are not tracked"
    );
}

#[test]
fn a_dnat_rule_admits_outside_to_inside() {
    let text = format!(
        "{}\n[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:8080\"\nto = \"10.0.0.2:80\"\n",
        crate::config::EMBEDDED_DEFAULT
    );
    let mut g = Gw::with_config(&text);
    g.resolve_v4_neighbours();
    let syn = from_router4(SERVER4, GW_OUT4, 6, &tcp(33000, 8080, 7, 0, SYN, b""));
    let (v, out) = g.send(&syn, 1);
    fwd(v, 0);
    assert_eq!(
        out,
        to_host4(SERVER4, H4, 6, &tcp(33000, 80, 7, 0, SYN, b""))
    );
    let (v, out) = g.send(
        &from_host4(H4, SERVER4, 6, &tcp(80, 33000, 90, 8, SYN | ACK, b"")),
        0,
    );
    fwd(v, 1);
    assert_eq!(
        out,
        to_router4(
            GW_OUT4,
            SERVER4,
            6,
            &tcp(8080, 33000, 90, 8, SYN | ACK, b"")
        )
    );
    // Another port of the gateway's address is still refused (traffic to the gateway
    // itself: `local`).
    let (v, _) = g.send(
        &from_router4(SERVER4, GW_OUT4, 6, &tcp(33001, 8081, 7, 0, SYN, b"")),
        1,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Local));
}

#[test]
fn ipv6_snat_with_neighbour_discovery_and_replies() {
    let mut g = Gw::new();
    let host6 = v6("fd00:0:0:1::2");
    let gw_in6 = v6("fd00:0:0:1::1");
    let gw_out6 = v6("fd00:0:0:2::1");
    let router6 = v6("fd00:0:0:2::2");
    let server6 = v6("2001:db8::7");
    fwd(g.send(&ns(HOST, host6, gw_in6), 0).0, 0);

    let syn = from_host6(host6, server6, 6, &tcp(41000, 443, 1, 0, SYN, b""));
    let (v, _) = g.send(&syn, 0);
    assert!(matches!(v, Verdict::Hold(_)), "{v:?}");
    let em = g.take_emitted();
    assert_eq!(em.len(), 1);
    let group = originated::solicited_node(&router6);
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&router6);
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&GW1);
    assert_eq!(
        em[0],
        (
            1,
            ip6(
                [0x33, 0x33, 0xff, 0, 0, 2],
                GW1,
                gw_out6,
                group,
                255,
                58,
                &m
            )
        )
    );

    // The router's advertisement resolves it.
    let mut na = vec![136, 0, 0, 0, 0xe0, 0, 0, 0];
    na.extend_from_slice(&router6);
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&ROUTER);
    let (v, _) = g.send(&ip6(GW1, ROUTER, router6, gw_out6, 255, 58, &na), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let sent = g.take_sent();
    assert_eq!(
        sent,
        vec![(
            1,
            to_router6(gw_out6, server6, 6, &tcp(41000, 443, 1, 0, SYN, b""))
        )]
    );
    verify_frame(&sent[0].1).unwrap();

    let (v, out) = g.send(
        &from_router6(server6, gw_out6, 6, &tcp(443, 41000, 50, 2, SYN | ACK, b"")),
        1,
    );
    fwd(v, 0);
    assert_eq!(
        out,
        to_host6(server6, host6, 6, &tcp(443, 41000, 50, 2, SYN | ACK, b""))
    );

    // UDP and echo.
    let (v, out) = g.send(&from_host6(host6, server6, 17, &udp(999, 53, b"q")), 0);
    fwd(v, 1);
    assert_eq!(out, to_router6(gw_out6, server6, 17, &udp(999, 53, b"q")));
    let (v, out) = g.send(&from_host6(host6, server6, 58, &echo(128, 3, 1)), 0);
    fwd(v, 1);
    assert_eq!(out, to_router6(gw_out6, server6, 58, &echo(128, 3, 1)));
    let (v, out) = g.send(&from_router6(server6, gw_out6, 58, &echo(129, 3, 1)), 1);
    fwd(v, 0);
    assert_eq!(out, to_host6(server6, host6, 58, &echo(129, 3, 1)));

    // Unsolicited from outside: denied. Hop limit 1: time exceeded (ICMPv6 type 3).
    let (v, _) = g.send(
        &from_router6(server6, host6, 6, &tcp(1, 22, 1, 0, SYN, b"")),
        1,
    );
    assert_eq!(v, Verdict::Drop(DropReason::PolicyDenied));
    let dying = ip6(GW0, HOST, host6, server6, 1, 17, &udp(5, 6, b"x"));
    assert_eq!(g.send(&dying, 0).0, Verdict::Drop(DropReason::TtlExpired));
    let em = g.take_emitted();
    assert_eq!(em.len(), 1);
    let mut msg = vec![3, 0, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(&dying[14..]);
    assert_eq!(em[0], (0, ip6(HOST, GW0, gw_in6, host6, 64, 58, &msg)));
    verify_frame(&em[0].1).unwrap();
}

#[test]
fn unresolved_neighbours_time_out_and_the_hold_queue_is_bounded() {
    let mut g = Gw::new();
    fwd(g.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0).0, 0);
    let mut held = 0;
    for i in 0..HOLD_PER_PORT as u16 + 3 {
        let (v, _) = g.send(&from_host4(H4, SERVER4, 17, &udp(2000 + i, 53, b"q")), 0);
        match v {
            Verdict::Hold(_) => held += 1,
            Verdict::Drop(DropReason::HoldQueueFull) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(held, HOLD_PER_PORT);
    assert_eq!(g.take_emitted().len(), 1, "one request per retry interval");
    g.tick(NEIGH_RETRY_MS);
    assert_eq!(g.take_emitted().len(), 1, "retried");
    g.tick(HOLD_TIMEOUT_MS);
    assert_eq!(g.sink.dropped.len(), HOLD_PER_PORT);
    assert!(g
        .sink
        .dropped
        .iter()
        .all(|(r, _)| *r == DropReason::NeighUnresolved));
    assert!(g.sink.held.iter().all(Option::is_none));
    assert!(g.take_sent().is_empty());
    // A late reply only resolves; entries age out later.
    g.send(&arp(2, ROUTER, ROUTER4, GW1, GW_OUT4, GW1), 1);
    assert_eq!(g.shared.neighbours().len(), 2);
    g.tick(NEIGH_TTL_MS + 2_000);
    g.tick(1_000);
    assert_eq!(g.shared.neighbours().len(), 0, "aged out");
}

#[test]
fn static_next_hop_mac_needs_no_resolution() {
    let text = crate::config::EMBEDDED_DEFAULT.replace(
        "# next_hop_mac = \"02:00:00:00:00:02\"",
        "next_hop_mac = \"02:00:00:00:02:02\"",
    );
    let mut g = Gw::with_config(&text);
    let (v, out) = g.send(&from_host4(H4, SERVER4, 17, &udp(1, 2, b"s")), 0);
    fwd(v, 1);
    assert_eq!(out, to_router4(GW_OUT4, SERVER4, 17, &udp(1, 2, b"s")));
    assert!(g.take_emitted().is_empty());
}

/// The embedded default with static next-hop MACs on both ports (as the pcap test uses).
fn static_macs_config() -> String {
    crate::config::EMBEDDED_DEFAULT
        .replacen(
            "zone = 1\n",
            "zone = 1\nnext_hop_mac = \"02:00:00:00:01:02\"\n",
            1,
        )
        .replace(
            "# next_hop_mac = \"02:00:00:00:00:02\"",
            "next_hop_mac = \"02:00:00:00:02:02\"",
        )
}

#[test]
fn all_inside_packets_first_then_all_outside_replies_as_a_pcap_run_delivers_them() {
    let mut g = Gw::with_config(&static_macs_config());
    let inside = [
        from_host4(H4, SERVER4, 6, &tcp(40000, 80, 1000, 0, SYN, b"")),
        from_host4(H4, SERVER4, 6, &tcp(40000, 80, 1001, 5001, ACK, b"")),
        from_host4(
            H4,
            SERVER4,
            6,
            &tcp(40000, 80, 1001, 5001, PSH | ACK, b"hello"),
        ),
        from_host4(H4, SERVER4, 6, &tcp(40000, 80, 1006, 5001, FIN | ACK, b"")),
        from_host4(H4, SERVER4, 17, &udp(5353, 53, b"query")),
        from_host4(H4, SERVER4, 1, &echo(8, 900, 1)),
    ];
    let outside = [
        from_router4(
            SERVER4,
            GW_OUT4,
            6,
            &tcp(80, 40000, 5000, 1001, SYN | ACK, b""),
        ),
        from_router4(SERVER4, GW_OUT4, 6, &tcp(80, 40000, 5001, 1006, ACK, b"")),
        from_router4(
            SERVER4,
            GW_OUT4,
            6,
            &tcp(80, 40000, 5001, 1007, FIN | ACK, b""),
        ),
        from_router4(SERVER4, GW_OUT4, 17, &udp(53, 5353, b"answer")),
        from_router4(SERVER4, GW_OUT4, 1, &echo(0, 900, 1)),
    ];
    let mut f: Vec<Vec<u8>> = inside.to_vec();
    let mut frames: Vec<&mut [u8]> = f.iter_mut().map(|x| x.as_mut_slice()).collect();
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); frames.len()];
    g.step.process_burst(&mut frames, 0, &mut v);
    assert!(v.iter().all(|v| *v == Verdict::Forward(1)), "{v:?}");
    let mut f: Vec<Vec<u8>> = outside.to_vec();
    let mut frames: Vec<&mut [u8]> = f.iter_mut().map(|x| x.as_mut_slice()).collect();
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); frames.len()];
    g.step.process_burst(&mut frames, 1, &mut v);
    assert!(v.iter().all(|v| *v == Verdict::Forward(0)), "{v:?}");
    for x in &f {
        verify_frame(x).unwrap();
        assert_eq!(&x[30..34], &H4);
    }
}

#[test]
fn longest_prefix_wins_and_inside_routes_are_not_snated() {
    let text = format!(
        "{}\n[[route]]\nprefix = \"203.0.113.0/24\"\nvia = \"10.0.0.9\"\n",
        static_macs_config().replace("next_hop_mac = \"02:00:00:00:01:02\"\n", "")
    );
    let mut g = Gw::with_config(&text);
    // 203.0.113.5: the /24 via 10.0.0.9 on the inside port, not the default route; the
    // connection stays inside, so no SNAT.
    let (v, _) = g.send(&from_host4(H4, [203, 0, 113, 5], 17, &udp(1, 2, b"r")), 0);
    assert!(matches!(v, Verdict::Hold(_)), "{v:?}");
    let em = g.take_emitted();
    assert_eq!(em.len(), 1);
    assert_eq!(em[0].0, 0, "asked on the inside port");
    assert_eq!(&em[0].1[38..42], &[10, 0, 0, 9]);
    let other = [0x02, 0, 0, 0, 0x01, 0x09];
    g.send(&arp(2, other, [10, 0, 0, 9], GW0, GW_IN4, GW0), 0);
    let sent = g.take_sent();
    assert_eq!(
        sent,
        vec![(
            0,
            ip4(other, GW0, H4, [203, 0, 113, 5], 63, 17, &udp(1, 2, b"r"))
        )]
    );
    // 203.0.114.1: the default route, SNATed.
    let (v, out) = g.send(&from_host4(H4, [203, 0, 114, 1], 17, &udp(1, 2, b"d")), 0);
    fwd(v, 1);
    assert_eq!(
        out,
        to_router4(GW_OUT4, [203, 0, 114, 1], 17, &udp(1, 2, b"d"))
    );
}

#[test]
fn random_and_mutated_frames_never_panic_and_get_a_sane_verdict() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let host6 = v6("fd00:0:0:1::2");
    let seeds: Vec<(u16, Vec<u8>)> = vec![
        (
            0,
            from_host4(H4, SERVER4, 6, &tcp(40000, 80, 1, 0, SYN, b"x")),
        ),
        (0, from_host4(H4, SERVER4, 17, &udp(1, 2, b"y"))),
        (0, from_host4(H4, GW_IN4, 1, &echo(8, 1, 1))),
        (
            1,
            ip4(GW1, ROUTER, SERVER4, GW_OUT4, 64, 1, &{
                let mut e = vec![3, 3, 0, 0, 0, 0, 0, 0];
                e.extend_from_slice(&to_router4(GW_OUT4, SERVER4, 17, &udp(2, 1, b"q"))[14..]);
                e
            }),
        ),
        (0, arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6])),
        (0, ns(HOST, host6, v6("fd00:0:0:1::1"))),
        (
            0,
            ip6(GW0, HOST, host6, v6("2001:db8::1"), 1, 17, &udp(1, 2, b"z")),
        ),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000 {
        let (port, base) = &seeds[round % seeds.len()];
        let mut f = base.clone();
        match next() % 4 {
            0 => {
                // Flip a few bytes past the Ethernet header.
                for _ in 0..1 + next() % 4 {
                    let i = 12 + (next() as usize) % (f.len() - 12);
                    f[i] ^= next() as u8 | 1;
                }
            }
            1 => f.truncate((next() as usize) % (f.len() + 1)),
            2 => f.extend((0..next() % 40).map(|_| next() as u8)),
            _ => {
                let n = (next() % 120) as usize;
                f = (0..n).map(|_| next() as u8).collect();
                if f.len() >= 6 && next() % 2 == 0 {
                    f[..6].copy_from_slice(&GW0);
                }
            }
        }
        g.shared.set_now_ms(1_000 + round as u64);
        let (v, _) = g.send(&f, *port);
        match v {
            Verdict::Forward(p) => assert!(p <= 1),
            Verdict::Hold(s) => assert!(usize::from(s) < g.step.hold_slots()),
            Verdict::Drop(_) | Verdict::Consumed => {}
        }
        for (p, e) in g.take_emitted() {
            assert!(p <= 1 && e.len() <= GEN_LEN);
        }
        g.take_sent();
    }
}

#[test]
fn policy_allow_admits_outside_connections_and_invalid_packets() {
    let text = static_macs_config()
        .replace("outside_new = \"deny\"", "outside_new = \"allow\"")
        .replace("invalid = \"drop\"", "invalid = \"allow\"");
    let mut g = Gw::with_config(&text);
    let syn = from_router4(SERVER4, H4, 6, &tcp(33000, 22, 1, 0, SYN, b""));
    let (v, out) = g.send(&syn, 1);
    fwd(v, 0);
    assert_eq!(
        out,
        to_host4(SERVER4, H4, 6, &tcp(33000, 22, 1, 0, SYN, b""))
    );
    assert_eq!(g.shared.conntrack().n_conns(), 1);
    // A stray SYN-ACK for no connection is invalid: forwarded as is when allowed.
    let stray = from_router4(SERVER4, H4, 6, &tcp(80, 1234, 9, 9, SYN | ACK, b""));
    let (v, out) = g.send(&stray, 1);
    fwd(v, 0);
    assert_eq!(
        out,
        to_host4(SERVER4, H4, 6, &tcp(80, 1234, 9, 9, SYN | ACK, b""))
    );

    // The default drops the same stray packet as invalid.
    let mut d = Gw::with_config(&static_macs_config());
    assert_eq!(d.send(&stray, 1).0, Verdict::Drop(DropReason::Invalid));
}

#[test]
fn ipv6_icmp_error_for_a_tracked_flow_comes_back_translated() {
    let mut g = Gw::with_config(&static_macs_config());
    let host6 = v6("fd00:0:0:1::2");
    let gw_out6 = v6("fd00:0:0:2::1");
    let server6 = v6("2001:db8::7");
    let (v, seen) = g.send(&from_host6(host6, server6, 17, &udp(7000, 53, b"q6")), 0);
    fwd(v, 1);
    assert_eq!(
        seen,
        to_router6(gw_out6, server6, 17, &udp(7000, 53, b"q6"))
    );
    // Port unreachable (type 1, code 4) quoting the datagram as the server saw it.
    let mut err = vec![1, 4, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&seen[14..]);
    let (v, out) = g.send(&from_router6(server6, gw_out6, 58, &err), 1);
    fwd(v, 0);
    let sent = ip6(GW0, HOST, host6, server6, 63, 17, &udp(7000, 53, b"q6"));
    let mut err_in = vec![1, 4, 0, 0, 0, 0, 0, 0];
    err_in.extend_from_slice(&sent[14..]);
    assert_eq!(out, to_host6(server6, host6, 58, &err_in));
    verify_frame(&out).unwrap();
}

#[test]
fn clock_runs_by_itself_once_started_so_a_starved_control_lcore_cannot_stop_time() {
    let gw = Gw::with_config(crate::config::EMBEDDED_DEFAULT);
    // By hand until started (tests and benchmarks drive time themselves).
    gw.shared.set_now_ms(42);
    assert_eq!(gw.shared.now_ms(), 42);
    let start = std::time::Instant::now() - std::time::Duration::from_secs(5);
    gw.shared.run_clock_from(start);
    let a = gw.shared.now_ms();
    assert!((5_001..5_001 + 60_000).contains(&a), "{a}");
    // Nobody sets it any more, yet it moves; a late set by hand is ignored.
    std::thread::sleep(std::time::Duration::from_millis(20));
    gw.shared.set_now_ms(7);
    let b = gw.shared.now_ms();
    assert!(b >= a + 20, "{a} -> {b}");
}

/// Sends every frame; all but what completes a datagram are consumed (held).
fn send_all(g: &mut Gw, frames: &[Vec<u8>], port: u16) -> Vec<Verdict> {
    frames.iter().map(|f| g.send(f, port).0).collect()
}

#[test]
fn fragmented_udp_crosses_snat_both_ways_as_the_original_fragments() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let query: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let frags = fragments(
        &from_host4(H4, SERVER4, 17, &udp(5353, 53, &query)),
        1480,
        0x1234,
    );
    assert_eq!(frags.len(), 3);
    let v = send_all(&mut g, &frags, 0);
    assert_eq!(v, [Verdict::Consumed; 3]);
    let out = g.take_emitted();
    let want = fragments(
        &to_router4(GW_OUT4, SERVER4, 17, &udp(5353, 53, &query)),
        1480,
        0x1234,
    );
    assert_eq!(out.len(), 3);
    for ((port, f), w) in out.iter().zip(&want) {
        assert_eq!(*port, 1);
        assert_eq!(f, w, "translated fragment, byte for byte");
    }

    // A 4,000-byte answer, its fragments out of order.
    let answer: Vec<u8> = (0..4000u32).map(|i| (i * 3) as u8).collect();
    let mut frags = fragments(
        &from_router4(SERVER4, GW_OUT4, 17, &udp(53, 5353, &answer)),
        1480,
        0x1234,
    );
    frags.swap(0, 2);
    assert_eq!(send_all(&mut g, &frags, 1), [Verdict::Consumed; 3]);
    let out = g.take_emitted();
    let want = fragments(
        &to_host4(SERVER4, H4, 17, &udp(53, 5353, &answer)),
        1480,
        0x1234,
    );
    assert_eq!(out, want.into_iter().map(|f| (0, f)).collect::<Vec<_>>());
    let st = g.shared.ipf().status();
    assert_eq!((st.v4.accepted, st.v4.completed, st.n_frags), (6, 6, 0));
}

#[test]
fn a_large_ping_crosses_snat_and_its_reply_comes_back() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let mut req = vec![8, 0, 0, 0, 0x03, 0x84, 0, 1];
    req.extend((0..8000u32).map(|i| i as u8));
    let frags = fragments(&from_host4(H4, SERVER4, 1, &req), 1480, 0x1234);
    assert_eq!(frags.len(), 6);
    assert_eq!(send_all(&mut g, &frags, 0), [Verdict::Consumed; 6]);
    let out = g.take_emitted();
    let want = fragments(&to_router4(GW_OUT4, SERVER4, 1, &req), 1480, 0x1234);
    assert_eq!(out.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), want);
    let mut rep = req.clone();
    rep[0] = 0;
    let frags = fragments(&from_router4(SERVER4, GW_OUT4, 1, &rep), 1480, 0x1234);
    send_all(&mut g, &frags, 1);
    let out = g.take_emitted();
    let want = fragments(&to_host4(SERVER4, H4, 1, &rep), 1480, 0x1234);
    assert_eq!(out.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), want);
}

#[test]
fn fragmented_ipv6_udp_crosses_snat() {
    let mut g = Gw::new();
    let (h6, gw_out6, server6) = (v6("fd00:0:0:1::2"), v6("fd00:0:0:2::1"), v6("2001:db8::7"));
    // Neighbours resolve from their own solicitations of the gateway.
    let (v, _) = g.send(&ns(HOST, h6, v6("fd00:0:0:1::1")), 0);
    assert_eq!(v, Verdict::Forward(0));
    let (v, _) = g.send(&ns(ROUTER, v6("fd00:0:0:2::2"), gw_out6), 1);
    assert_eq!(v, Verdict::Forward(1));
    g.take_emitted();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 11) as u8).collect();
    let frags = fragments(
        &from_host6(h6, server6, 17, &udp(4000, 53, &data)),
        1448,
        77,
    );
    assert_eq!(send_all(&mut g, &frags, 0), [Verdict::Consumed; 3]);
    let out = g.take_emitted();
    let want = fragments(
        &to_router6(gw_out6, server6, 17, &udp(4000, 53, &data)),
        1448,
        77,
    );
    assert_eq!(out.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), want);
    let st = g.shared.ipf().status();
    assert_eq!((st.v6.accepted, st.v6.completed), (3, 3));
}

#[test]
fn outside_initiated_fragments_are_refused_and_counted() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let data = vec![7u8; 3000];
    let frags = fragments(
        &from_router4(SERVER4, H4, 17, &udp(53, 9999, &data)),
        1480,
        0x1234,
    );
    let v = send_all(&mut g, &frags, 1);
    assert_eq!(v[..2], [Verdict::Consumed; 2]);
    assert_eq!(v[2], Verdict::Drop(DropReason::PolicyDenied));
    assert!(g.take_emitted().is_empty());
    // A fragment below the minimum size is refused by reassembly itself.
    let small = fragments(
        &from_router4(SERVER4, H4, 17, &udp(53, 9999, &data)),
        800,
        0x1234,
    );
    assert_eq!(g.send(&small[0], 1).0, Verdict::Drop(DropReason::Fragment));
    assert_eq!(g.shared.ipf().status().v4.too_small, 1);
    assert_eq!(g.shared.ipf().n_frags(), 0);
}

#[test]
fn with_reassembly_disabled_fragments_are_untracked_and_dropped_as_before() {
    let text = format!("{}\n", crate::config::EMBEDDED_DEFAULT)
        .replace("enabled_v4 = true", "enabled_v4 = false");
    let mut g = Gw::with_config(&text);
    g.resolve_v4_neighbours();
    let frags = fragments(
        &from_host4(H4, SERVER4, 17, &udp(5353, 53, &[1; 3000])),
        1480,
        0x1234,
    );
    for f in &frags {
        assert_eq!(g.send(f, 0).0, Verdict::Drop(DropReason::Fragment));
    }
    assert_eq!(g.shared.ipf().status().v4.accepted, 0);
}

#[test]
fn an_icmp_error_quoting_a_first_fragment_is_related_and_translated() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let data = vec![5u8; 3000];
    let frags = fragments(
        &from_host4(H4, SERVER4, 17, &udp(5353, 53, &data)),
        1480,
        0x1234,
    );
    send_all(&mut g, &frags, 0);
    let out = g.take_emitted();
    // The server's port unreachable quoting the first fragment as it received it.
    let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&out[0].1[14..14 + 28]);
    let (v, got) = g.send(&from_router4(SERVER4, GW_OUT4, 1, &err), 1);
    fwd(v, 0);
    let orig = &frags[0];
    let mut want_err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    want_err.extend_from_slice(&orig[14..14 + 28]);
    // The quoted header as the host sent it, but with the TTL the server saw.
    want_err[8 + 8] = 63;
    let c = {
        let mut h = want_err[8..28].to_vec();
        h[10..12].copy_from_slice(&[0, 0]);
        crate::wire::checksum::ipv4_header(&h)
    };
    want_err[8 + 10..8 + 12].copy_from_slice(&c.to_be_bytes());
    let want = to_host4(SERVER4, H4, 1, &want_err);
    assert_eq!(got[..34], want[..34]);
    assert_eq!(
        got[34 + 8..],
        want[34 + 8..],
        "quoted first fragment translated back"
    );
}

#[test]
fn a_completed_datagram_waits_for_its_neighbour_then_goes_out_whole() {
    let mut g = Gw::new();
    fwd(g.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0).0, 0);
    let mut req = vec![8, 0, 0, 0, 0x03, 0x84, 0, 1];
    req.extend((0..3000u32).map(|i| i as u8));
    let frags = fragments(&from_host4(H4, SERVER4, 1, &req), 1480, 0x1234);
    assert_eq!(send_all(&mut g, &frags, 0), [Verdict::Consumed; 3]);
    // Only the ARP request for the next hop went out.
    let em = g.take_emitted();
    assert_eq!(em.len(), 1);
    assert_eq!(em[0].1[12..14], [0x08, 0x06]);
    assert_eq!(g.step.w.n_held, 0, "no hold slot kept for copies");
    // The router answers: the whole datagram follows, translated, with its MAC.
    let (v, _) = g.send(&arp(2, ROUTER, ROUTER4, GW1, GW_OUT4, GW1), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let out: Vec<Vec<u8>> = g
        .take_emitted()
        .into_iter()
        .map(|(p, f)| {
            assert_eq!(p, 1);
            f
        })
        .collect();
    assert_eq!(
        out,
        fragments(&to_router4(GW_OUT4, SERVER4, 1, &req), 1480, 0x1234)
    );
    assert_eq!(g.shared.ipf().n_frags(), 0);
}

#[test]
fn a_datagram_whose_neighbour_never_answers_is_dropped_after_the_hold_timeout() {
    let mut g = Gw::new();
    fwd(g.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0).0, 0);
    let frags = fragments(
        &from_host4(H4, SERVER4, 17, &udp(1, 2, &[0; 3000])),
        1480,
        0x1234,
    );
    send_all(&mut g, &frags, 0);
    assert_eq!(g.shared.ipf().n_frags(), 3);
    g.tick(HOLD_TIMEOUT_MS + 1);
    assert_eq!(g.shared.ipf().n_frags(), 0, "its slots returned");
    assert!(g
        .take_emitted()
        .iter()
        .all(|(_, f)| f[12..14] == [0x08, 0x06]));
}

/// The next hop's MAC in a frame the gateway sent to it, and what the gateway asked: the
/// Ethernet destination of each ARP request it emitted (unicast probe or broadcast).
fn arp_requests_to(em: &[(u16, Vec<u8>)]) -> Vec<[u8; 6]> {
    em.iter()
        .filter(|(port, f)| *port == 1 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1])
        .map(|(_, f)| {
            assert_eq!(&f[38..42], &ROUTER4, "asks for the router");
            let mut d = [0u8; 6];
            d.copy_from_slice(&f[..6]);
            d
        })
        .collect()
}

#[test]
fn a_next_hop_that_changed_its_mac_silently_is_probed_and_found_again() {
    const MOVED: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x99];
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let pkt = |i: u16| from_host4(H4, SERVER4, 17, &udp(3000, 53, &i.to_be_bytes()));
    let (v, out) = g.send(&pkt(0), 0);
    fwd(v, 1);
    assert_eq!(out[..6], ROUTER);
    // Reachable: no request while it is used.
    g.tick(NEIGH_REACHABLE_MAX_MS - 20_000);
    fwd(g.send(&pkt(1), 0).0, 1);
    assert!(arp_requests_to(&g.take_emitted()).is_empty());
    // The router's MAC changes (no gratuitous ARP); the entry goes stale. Traffic keeps
    // using the old MAC while it is probed: 3 unicast probes, then broadcasts.
    g.tick(20_000);
    let mut asked = Vec::new();
    for i in 0..4u16 {
        let (v, out) = g.send(&pkt(2 + i), 0);
        fwd(v, 1);
        assert_eq!(out[..6], ROUTER, "the old MAC is used while probing");
        asked.extend(arp_requests_to(&g.take_emitted()));
        g.tick(NEIGH_RETRY_MS);
    }
    assert_eq!(asked, vec![ROUTER, ROUTER, ROUTER, [0xff; 6]]);
    // The router, at its new MAC, answers the broadcast: traffic goes there at once.
    g.send(&arp(2, MOVED, ROUTER4, GW1, GW_OUT4, GW1), 1);
    let (v, out) = g.send(&pkt(9), 0);
    fwd(v, 1);
    assert_eq!(out[..6], MOVED);
    assert!(arp_requests_to(&g.take_emitted()).is_empty());
    assert_eq!(g.shared.counters().neigh_failed, 0);
}

#[test]
fn a_next_hop_that_never_answers_its_probes_is_dropped_and_counted() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let pkt = |i: u16| from_host4(H4, SERVER4, 17, &udp(3001, 53, &i.to_be_bytes()));
    g.tick(NEIGH_REACHABLE_MAX_MS);
    let mut asked = Vec::new();
    for i in 0..6u16 {
        fwd(g.send(&pkt(i), 0).0, 1);
        asked.extend(arp_requests_to(&g.take_emitted()));
        g.tick(NEIGH_RETRY_MS);
    }
    assert_eq!(asked.len(), 6);
    assert_eq!(asked.iter().filter(|m| **m == ROUTER).count(), 3);
    // Six probes unanswered and a retry interval later: failed, counted, forgotten; the
    // next packet waits for a fresh (broadcast) resolution.
    assert_eq!(g.shared.counters().neigh_failed, 1);
    assert!(!g.shared.neighbours().iter().any(|(p, _, _)| *p == 1));
    let (v, _) = g.send(&pkt(7), 0);
    assert!(matches!(v, Verdict::Hold(_)), "{v:?}");
    assert_eq!(arp_requests_to(&g.take_emitted()), vec![[0xff; 6]]);
}

/// Address-only NAT (GRE here) admits one inside host per server per pool address: with
/// the default one-address pool, a second inside host's GRE to the same server is refused
/// as `nat_exhausted`; the server's GRE goes to the first host only.
#[test]
fn a_second_inside_host_with_gre_to_the_same_server_is_refused_not_misdelivered() {
    const HOST2: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x03];
    const H4B: [u8; 4] = [10, 0, 0, 3];
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    g.send(&arp(1, HOST2, H4B, [0; 6], GW_IN4, [0xff; 6]), 0);
    g.take_emitted();
    let gre = [0u8, 0, 0x08, 0x00, 0x45, 0, 0, 0];
    let (v, out) = g.send(&from_host4(H4, SERVER4, 47, &gre), 0);
    fwd(v, 1);
    assert_eq!(out, to_router4(GW_OUT4, SERVER4, 47, &gre));
    let (v, _) = g.send(&ip4(GW0, HOST2, H4B, SERVER4, 64, 47, &gre), 0);
    assert_eq!(v, Verdict::Drop(DropReason::NatExhausted));
    // The server's GRE to the pool address reaches the first host.
    let (v, back) = g.send(&ip4(GW1, ROUTER, SERVER4, GW_OUT4, 64, 47, &gre), 1);
    fwd(v, 0);
    assert_eq!(back, ip4(HOST, GW0, SERVER4, H4, 63, 47, &gre));
    // Another server is another reply tuple: the second host gets through to it.
    let other = [203, 0, 113, 9];
    let (v, _) = g.send(&ip4(GW0, HOST2, H4B, other, 64, 47, &gre), 0);
    fwd(v, 1);
}

/// A unicast neighbour solicitation (a probe of a known IPv6 neighbour) goes to the
/// neighbour's address and MAC; the multicast one to the solicited-node group.
#[test]
fn a_unicast_ns_probe_is_addressed_to_the_neighbour() {
    use super::originated::ns_request_to;
    let (src, target) = (v6("fd00:0:0:2::1"), v6("fd00:0:0:2::2"));
    let mut buf = [0u8; 128];
    let n = ns_request_to(&mut buf, MacAddr(GW1), Some(MacAddr(ROUTER)), &src, &target).unwrap();
    let f = &buf[..n];
    assert_eq!((&f[..6], &f[6..12]), (&ROUTER[..], &GW1[..]));
    assert_eq!(&f[22..38], &src);
    assert_eq!(&f[38..54], &target, "to the neighbour itself");
    assert_eq!((f[54], &f[62..78]), (135, &target[..]));
    verify_frame(f).unwrap();
    let n = ns_request_to(&mut buf, MacAddr(GW1), None, &src, &target).unwrap();
    let f = &buf[..n];
    assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
    assert_eq!(&f[38..41], &[0xff, 0x02, 0]);
    verify_frame(f).unwrap();
}

/// TCP with options NOP, NOP, MSS `mss` (24-byte header).
fn tcp_mss(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, mss: u16) -> Vec<u8> {
    let mut t = tcp(sport, dport, seq, ack, flags, b"");
    t[12] = 0x60;
    t.extend_from_slice(&[1, 1, 2, 4]);
    t[20..24].copy_from_slice(&[2, 4, 0, 0]);
    t[22..24].copy_from_slice(&mss.to_be_bytes());
    t
}

/// The embedded default with extra lines in the sections of the ports of the given roles
/// (`(role, lines)`).
fn ports_with(extras: &[(&str, &str)]) -> String {
    let mut text = crate::config::EMBEDDED_DEFAULT.to_string();
    for (role, extra) in extras {
        let key = format!("role = \"{role}\"");
        let extended = text.replacen(&key, &format!("{key}\n{extra}"), 1);
        assert_ne!(
            extended, text,
            "the embedded default has no {role} port to extend"
        );
        text = extended;
    }
    text
}

/// The embedded default with `extra` lines in the outside port's section.
fn outside_with(extra: &str) -> Gw {
    Gw::with_config(&ports_with(&[("outside", extra)]))
}

/// Sends the inside host's SYN to the server announcing MSS `mss` and asserts that it
/// leaves the outside port SNATed with MSS `want` (and the checksum of that segment).
fn syn_leaves_with_mss(g: &mut Gw, mss: u16, want: u16) {
    let syn = from_host4(H4, SERVER4, 6, &tcp_mss(40000, 80, 1, 0, SYN, mss));
    let (v, out) = g.send(&syn, 0);
    fwd(v, 1);
    let expect = to_router4(GW_OUT4, SERVER4, 6, &tcp_mss(40000, 80, 1, 0, SYN, want));
    assert_eq!(out, expect, "MSS {mss} should leave as {want}");
}

#[test]
fn mss_clamp_lowers_syn_and_syn_ack_mss_on_the_clamped_port() {
    let mut g = outside_with("mss_clamp = 1400");
    g.resolve_v4_neighbours();
    syn_leaves_with_mss(&mut g, 1460, 1400);
    let synack = from_router4(
        SERVER4,
        GW_OUT4,
        6,
        &tcp_mss(80, 40000, 9, 2, SYN | ACK, 1460),
    );
    let (v, out) = g.send(&synack, 1);
    fwd(v, 0);
    let want = to_host4(SERVER4, H4, 6, &tcp_mss(80, 40000, 9, 2, SYN | ACK, 1400));
    assert_eq!(out, want);
    // A smaller MSS and a plain ACK pass unchanged.
    let ack = from_host4(H4, SERVER4, 6, &tcp(40000, 80, 2, 10, ACK, b""));
    let (v, out) = g.send(&ack, 0);
    fwd(v, 1);
    assert_eq!(
        out,
        to_router4(GW_OUT4, SERVER4, 6, &tcp(40000, 80, 2, 10, ACK, b""))
    );
}

#[test]
fn without_mss_clamp_the_syn_keeps_its_mss() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    syn_leaves_with_mss(&mut g, 1460, 1460);
}

#[test]
fn ttl_decrement_checksum_equals_rfc1624_for_every_checksum() {
    use crate::wire::checksum::update_u16;
    for csum in 0..=u16::MAX {
        for ttl in [1u8, 2, 63, 64, 128, 255] {
            for proto in [0u8, 1, 6, 17, 255] {
                let old = u16::from_be_bytes([ttl, proto]);
                let want = update_u16(csum, old, old - 0x0100);
                assert_eq!(
                    ttl_decremented_checksum(csum),
                    want,
                    "{csum:#06x} {old:#06x}"
                );
            }
        }
    }
}

#[test]
fn ttl_decrement_leaves_a_header_whose_checksum_is_recomputed_exactly() {
    use crate::wire::checksum::{ipv4_header, verify_ipv4_header};
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for ttl in 1..=255u8 {
        for _ in 0..64 {
            let mut frame = vec![0u8; 14 + 20];
            for b in frame[14..].iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            frame[14] = 0x45;
            frame[14 + 8] = ttl;
            frame[24..26].copy_from_slice(&[0, 0]);
            let c = ipv4_header(&frame[14..]);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
            assert!(decrement_ttl(&mut frame, 4, 14));
            assert_eq!(frame[14 + 8], ttl - 1);
            let got = u16::from_be_bytes([frame[24], frame[25]]);
            frame[24..26].copy_from_slice(&[0, 0]);
            assert_eq!(got, ipv4_header(&frame[14..]), "ttl {ttl}");
            frame[24..26].copy_from_slice(&got.to_be_bytes());
            assert!(verify_ipv4_header(&frame[14..]));
        }
    }
    // A TTL of 0 is not decremented (the step drops such a packet before).
    let mut frame = vec![0u8; 34];
    frame[14] = 0x45;
    assert!(!decrement_ttl(&mut frame, 4, 14));
    assert_eq!(frame[22], 0);
}
