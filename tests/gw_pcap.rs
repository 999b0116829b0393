//! The gateway end to end on `net_pcap`: a pcap of inside traffic (TCP handshake + data +
//! FIN, UDP request, ICMP echo, a malformed packet) goes in on port 0 and one of outside
//! traffic (the server's replies, an ICMP port unreachable for the tracked UDP flow, an
//! unsolicited SYN) on port 1. The output pcaps must hold exactly the translated packets
//! (built here byte by byte, checksums verified by an independent computation), and the
//! drop counters must match.
//!
//! One worker polls port 0's queue before port 1's in each round and each input fits in
//! one burst, so every inside packet is processed before the outside ones (the tracker
//! sees the client's ACK before the server's SYN-ACK, which it accepts). Next hops are
//! static MACs in the config (a pcap cannot answer ARP).
#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;
use ctgate::wire::testframe::{self, ip4, tagged, Frame, L4};

/// The inside host 10.0.0.2 (the static next hop of port 0).
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// The outside router 192.0.2.2 (the static next hop of port 1).
const ROUTER: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const H4: [u8; 4] = [10, 0, 0, 2];
const POOL4: [u8; 4] = [192, 0, 2, 1];
const SERVER4: [u8; 4] = [198, 51, 100, 7];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

fn config() -> String {
    static_next_hops_config(&[("max_conns = 3000000", "max_conns = 4096")])
}

/// Runs the gateway with [`config`] on two net_pcap ports reading `rx[0]` and `rx[1]`
/// until it is idle; its output, net_pcap's MACs checked against its start-up lines.
fn run_gateway(s: &Scratch, rx: [Vec<&[u8]>; 2]) -> Output {
    let eal = s.pcap_ports("0,1", &rx);
    std::fs::write(s.path("gw.toml"), config()).unwrap();
    let p = |f: &str| s.path(f).display().to_string();
    let (cfg, sock) = (p("gw.toml"), p("ctl.sock"));
    let app = [
        "--config",
        &cfg,
        "--socket",
        &sock,
        "--exit-when-idle",
        "1000",
        "--quiet",
    ];
    let out = run_ctgate(&eal, &app, Duration::from_secs(60));
    assert!(out.status.success(), "{out}");
    assert_eq!(
        (out.port_mac(0), out.port_mac(1)),
        (NET_PCAP_MAC0, NET_PCAP_MAC1),
        "net_pcap's MACs changed\n{out}"
    );
    out
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    L4::tcp(sport, dport, seq, ack, flags, payload).bytes()
}

fn echo(ty: u8, id: u16, seq: u16) -> Vec<u8> {
    L4::echo(ty, id, seq, b"pingdata").bytes()
}

/// The packets of the run: what goes in on each side and what must come out of the
/// other, with the ports' MACs (the devices' own, read from ctgate's start-up lines).
struct Traffic {
    inside_in: Vec<Vec<u8>>,
    outside_in: Vec<Vec<u8>>,
}

/// (inside packet, its translation out of port 1); `m0`/`m1` are the ports' MACs.
fn inside_flows(m0: [u8; 6], m1: [u8; 6]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let l4s: Vec<(u8, Vec<u8>)> = vec![
        (6, tcp(40000, 80, 1000, 0, SYN, b"")),
        (6, tcp(40000, 80, 1001, 5001, ACK, b"")),
        (6, tcp(40000, 80, 1001, 5001, PSH | ACK, b"hello")),
        (6, tcp(40000, 80, 1006, 5001, FIN | ACK, b"")),
        (17, udp(5353, 53, b"query")),
        (1, echo(8, 900, 1)),
    ];
    l4s.into_iter()
        .map(|(p, l4)| {
            (
                ip4(m0, HOST, H4, SERVER4, 64, p, &l4),
                ip4(ROUTER, m1, POOL4, SERVER4, 63, p, &l4),
            )
        })
        .collect()
}

fn outside_flows(m0: [u8; 6], m1: [u8; 6]) -> Vec<(Vec<u8>, Vec<u8>)> {
    // The port unreachable quotes the UDP request as the server saw it (from the pool
    // address); translated back, it quotes what the host sent (TTL as it left: 63).
    let seen = ip4(ROUTER, m1, POOL4, SERVER4, 63, 17, &udp(5353, 53, b"query"));
    let sent = ip4(m0, HOST, H4, SERVER4, 63, 17, &udp(5353, 53, b"query"));
    let mut err_out = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err_out.extend_from_slice(&seen[14..]);
    let mut err_in = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err_in.extend_from_slice(&sent[14..]);
    let pairs: Vec<(u8, Vec<u8>, Vec<u8>)> = vec![
        (6, tcp(80, 40000, 5000, 1001, SYN | ACK, b""), vec![]),
        (6, tcp(80, 40000, 5001, 1006, ACK, b""), vec![]),
        (6, tcp(80, 40000, 5001, 1007, FIN | ACK, b""), vec![]),
        (17, udp(53, 5353, b"answer"), vec![]),
        (1, err_out, err_in),
        (1, echo(0, 900, 1), vec![]),
    ];
    pairs
        .into_iter()
        .map(|(p, l4, l4_in)| {
            let l4_in = if l4_in.is_empty() { l4.clone() } else { l4_in };
            (
                ip4(m1, ROUTER, SERVER4, POOL4, 50, p, &l4),
                ip4(HOST, m0, SERVER4, H4, 49, p, &l4_in),
            )
        })
        .collect()
}

#[test]
fn gateway_translates_a_pcap_of_both_sides_and_counts_the_drops() {
    let _lock = dpdk_lock();
    let s = Scratch::new("gwpcap");
    // The gateway routes only frames addressed to its ports' MACs: net_pcap's are
    // fixed (02:70:63:61:70:<port>), checked against ctgate's start-up lines below.
    let ph0 = NET_PCAP_MAC0;
    let ph1 = NET_PCAP_MAC1;
    let mut t = Traffic {
        inside_in: inside_flows(ph0, ph1).into_iter().map(|p| p.0).collect(),
        outside_in: outside_flows(ph0, ph1).into_iter().map(|p| p.0).collect(),
    };
    // A malformed packet from inside (IHL 4) and an unsolicited SYN from outside to the
    // gateway's address.
    let mut bad = ip4(ph0, HOST, H4, SERVER4, 64, 17, &udp(1, 2, b"bad"));
    bad[14] = 0x44;
    t.inside_in.push(bad);
    t.outside_in.push(ip4(
        ph1,
        ROUTER,
        SERVER4,
        POOL4,
        50,
        6,
        &tcp(33000, 22, 1, 0, SYN, b""),
    ));

    let rx = [t.inside_in.iter(), t.outside_in.iter()].map(|v| v.map(Vec::as_slice).collect());
    let out = run_gateway(&s, rx);
    let (m0, m1) = (out.port_mac(0), out.port_mac(1));
    let read = |f: &str| s.read_pcap(f);
    let out1 = read("out1.pcap");
    let out0 = read("out0.pcap");
    let want1: Vec<Vec<u8>> = inside_flows(m0, m1).into_iter().map(|p| p.1).collect();
    let want0: Vec<Vec<u8>> = outside_flows(m0, m1).into_iter().map(|p| p.1).collect();
    for (name, got, want) in [("out1", &out1, &want1), ("out0", &out0, &want0)] {
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: {} packets\n{out}",
            got.len()
        );
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g, w, "{name} packet {i}\n{out}");
            ctgate::wire::frame_checksums::verify_frame(g)
                .unwrap_or_else(|e| panic!("{name} packet {i}: {e:?}"));
        }
    }

    let sum = |k: &str| out.workers_sum(k);
    assert_eq!(sum("rx"), 14, "{out}");
    assert_eq!(sum("tx"), 12, "{out}");
    assert_eq!(sum("drop_malformed"), 1, "{out}");
    // The unsolicited SYN is to the gateway's own (pool) address: `local`.
    assert_eq!(sum("drop_local"), 1, "{out}");
    assert_eq!(sum("drop_policy_denied"), 0, "{out}");
    assert_eq!(sum("dropped"), 2, "{out}");
}

/// An IPv6 frame (hop limit 64) with every checksum filled.
fn ip6(dmac: [u8; 6], smac: [u8; 6], src: &str, dst: &str, next: u8, l4: &[u8]) -> Vec<u8> {
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    testframe::ip6(dmac, smac, a(src), a(dst), 64, next, l4)
}

/// A UDP/IPv4 frame from the inside host to the server with the IPv4 options `opts`
/// (a multiple of 4 bytes), checksums computed.
fn ip4_opts(dmac: [u8; 6], smac: [u8; 6], ttl: u8, opts: &[u8]) -> Vec<u8> {
    Frame::v4(H4, SERVER4, L4::udp(5353, 53, b"opts"))
        .macs(dmac, smac)
        .ttl(ttl)
        .ip_options(opts)
        .build()
}

/// The hostile cases of issue 19, all sent to the inside port's MAC: each with the drop
/// reason it must be counted under.
fn hostile(m0: [u8; 6]) -> Vec<(&'static str, Vec<u8>)> {
    let u = udp(5353, 53, b"hostile");
    let v4 = |src: [u8; 4], dst: [u8; 4]| ip4(m0, HOST, src, dst, 64, 17, &u);
    let echo4 = |src: [u8; 4]| ip4(m0, HOST, src, [10, 0, 0, 1], 64, 1, &echo(8, 7, 1));
    let v6 = |src: &str, dst: &str| ip6(m0, HOST, src, dst, 17, &u);
    let mut echo6 = vec![128, 0, 0, 0, 0, 7, 0, 1];
    echo6.extend_from_slice(b"pingdata");
    let mut v = vec![
        // A tag on a port without VLAN configuration: 802.1Q, QinQ, tagged ARP.
        ("vlan", tagged(&v4(H4, SERVER4), &[(0x8100, 100)])),
        (
            "vlan",
            tagged(&v4(H4, SERVER4), &[(0x88a8, 10), (0x8100, 20)]),
        ),
        (
            "vlan",
            tagged(
                &ether(
                    [0xff; 6],
                    HOST,
                    0x0806,
                    &[
                        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 1, 2, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0,
                        10, 0, 0, 1,
                    ],
                ),
                &[(0x8100, 100)],
            ),
        ),
        // Source routes; a router alert option passes (forwarded, below).
        (
            "source_route",
            ip4_opts(m0, HOST, 64, &[1, 0x83, 7, 4, 192, 0, 2, 9]),
        ),
        (
            "source_route",
            ip4_opts(m0, HOST, 64, &[0x89, 7, 4, 192, 0, 2, 9, 0]),
        ),
    ];
    for src in [
        [0, 0, 0, 0],
        [0, 1, 2, 3],
        [127, 0, 0, 1],
        [224, 0, 0, 9],
        [240, 0, 0, 1],
        [255, 255, 255, 255],
        [169, 254, 1, 1],
        [10, 0, 0, 1],  // the gateway's own address
        [192, 0, 2, 1], // its SNAT pool
    ] {
        v.push(("martian_src", v4(src, SERVER4)));
    }
    // Pings of the gateway from martian sources: no echo reply.
    for src in [
        [224, 0, 0, 9],
        [255, 255, 255, 255],
        [0, 0, 0, 0],
        [127, 0, 0, 1],
    ] {
        v.push(("martian_src", echo4(src)));
    }
    for dst in [
        [0, 0, 0, 1],
        [127, 0, 0, 1],
        [240, 0, 0, 1],
        [169, 254, 9, 9],
    ] {
        v.push(("martian_dst", v4(H4, dst)));
    }
    for src in [
        "::",
        "::1",
        "ff02::1",
        "::ffff:10.0.0.2",
        "::10.0.0.2",
        "fe80::1",
        "fd00:0:0:1::1",
    ] {
        v.push(("martian_src", v6(src, "2001:db8::7")));
    }
    for src in ["::1", "ff02::1"] {
        v.push((
            "martian_src",
            ip6(m0, HOST, src, "fd00:0:0:1::1", 58, &echo6),
        ));
    }
    for dst in ["::1", "::ffff:198.51.100.7", "::198.51.100.7", "fe80::2"] {
        v.push(("martian_dst", v6("fd00:0:0:1::2", dst)));
    }
    // A bad IPv4 header checksum.
    let mut bad = v4(H4, SERVER4);
    bad[24] ^= 0x55;
    v.push(("bad_ip_checksum", bad));
    // Longer than an mbuf's data room (2048 bytes).
    let big = vec![0xab; 3000];
    v.push((
        "too_big",
        ip4(m0, HOST, H4, SERVER4, 64, 17, &udp(5353, 53, &big)),
    ));
    // A first fragment (more fragments follows).
    let mut frag = v4(H4, SERVER4);
    frag[20] = 0x20;
    frag[21] = 0;
    ctgate::wire::frame_checksums::fill_frame(&mut frag).unwrap();
    v.push(("fragment", frag));
    v
}

/// Issue 19: every hostile case through the gateway on net_pcap: nothing of it is
/// forwarded or answered, each is counted under its own reason, a packet with an IPv4
/// option other than a source route passes, and the worker's counters add up with a
/// generated frame (a time exceeded for a TTL 1 packet): `rx - dropped + generated = tx`.
#[test]
fn hostile_frames_are_never_forwarded_and_each_is_counted_under_its_reason() {
    let _lock = dpdk_lock();
    let s = Scratch::new("gwhostile");
    let (m0, m1) = (NET_PCAP_MAC0, NET_PCAP_MAC1);
    let cases = hostile(m0);
    // Router alert (kind 0x94, 4 bytes): forwarded, SNATed, TTL 63.
    let passes = ip4_opts(m0, HOST, 64, &[0x94, 4, 0, 0]);
    let mut want_out = passes.clone();
    want_out[..6].copy_from_slice(&ROUTER);
    want_out[6..12].copy_from_slice(&m1);
    want_out[22] = 63;
    want_out[26..30].copy_from_slice(&POOL4);
    ctgate::wire::frame_checksums::fill_frame(&mut want_out).unwrap();

    // TTL 1: dropped, and a time exceeded is generated back to the host.
    let expiring = ip4(m0, HOST, H4, SERVER4, 1, 17, &udp(5353, 53, b"ttl"));
    let mut inside: Vec<&[u8]> = cases.iter().map(|(_, f)| f.as_slice()).collect();
    inside.push(&passes);
    inside.push(&expiring);
    let out = run_gateway(&s, [inside, Vec::new()]);
    let read = |f: &str| s.read_pcap(f);
    // Nothing answered but the time exceeded (type 11) from 10.0.0.1, quoting the
    // expired packet.
    let out0 = read("out0.pcap");
    assert_eq!(out0.len(), 1, "answered:\n{out}");
    let te = &out0[0];
    assert_eq!((&te[..6], &te[6..12]), (&HOST[..], &m0[..]), "{out}");
    assert_eq!(
        (&te[26..30], &te[30..34], te[34]),
        (&[10, 0, 0, 1][..], &H4[..], 11)
    );
    assert_eq!(&te[42..62], &expiring[14..34], "the quoted header");
    ctgate::wire::frame_checksums::verify_frame(te).unwrap();
    assert_eq!(read("out1.pcap"), vec![want_out], "forwarded:\n{out}");

    let sum = |k: &str| out.workers_sum(k);
    let mut want: Vec<(&str, u64)> = Vec::new();
    for (reason, _) in &cases {
        match want.iter_mut().find(|(r, _)| r == reason) {
            Some(e) => e.1 += 1,
            None => want.push((reason, 1)),
        }
    }
    for (reason, n) in &want {
        assert_eq!(sum(&format!("drop_{reason}")), *n, "drop_{reason}\n{out}");
    }
    assert_eq!(sum("drop_ttl_expired"), 1, "{out}");
    assert_eq!(sum("dropped"), cases.len() as u64 + 1, "{out}");
    assert_eq!(sum("rx"), cases.len() as u64 + 2, "{out}");
    assert_eq!(sum("generated"), 1, "{out}");
    assert_eq!(sum("tx"), 2, "{out}");
    assert_eq!(
        sum("rx") - sum("dropped") + sum("generated"),
        sum("tx"),
        "{out}"
    );
}

/// The configuration edits above are checked: an edit whose text is no longer in the
/// embedded default stops the test with the text named, instead of running it with a
/// configuration that silently lacks the edit.
#[test]
#[should_panic(expected = "the configuration no longer contains \"next_hop_mac = \\\"gone\\\"\"")]
fn a_config_edit_whose_text_is_gone_fails_loudly() {
    edit_config(
        ctgate::config::EMBEDDED_DEFAULT,
        &[(
            "next_hop_mac = \"gone\"",
            "next_hop_mac = \"02:00:00:00:02:02\"",
        )],
    );
}
