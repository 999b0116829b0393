//! Issue 19 in the step, byte for byte: what a router must refuse (tags it was not
//! configured for, martians, source routes, bad IPv4 header checksums, fragments) and
//! VLAN sub-interfaces; the accounting of generated frames.

use super::*;
use crate::pipeline::vlan::{RxInfo, VLAN_IFACE_BASE};
use crate::pipeline::RxCksum;

/// One frame through `process_burst_rx` with what the worker would have told the step.
fn send_rx(g: &mut Gw, frame: &[u8], in_port: u16, rx: RxInfo) -> (Verdict, Vec<u8>) {
    let mut f = frame.to_vec();
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    g.step
        .process_burst_rx(&mut [f.as_mut_slice()], in_port, &[rx], &mut v);
    if let Verdict::Hold(slot) = v[0] {
        g.sink.held[usize::from(slot)] = Some(f.clone());
    }
    g.step.service(&mut g.sink);
    (v[0], f)
}

/// A UDP packet from the inside host to the server with the IPv4 options `opts` (a
/// multiple of 4 bytes).
fn ip4_opts(ttl: u8, opts: &[u8]) -> Vec<u8> {
    Frame::v4(H4, SERVER4, L4::udp(5353, 53, b"opts"))
        .macs(GW0, HOST)
        .ttl(ttl)
        .ip_options(opts)
        .build()
}

/// Asserts `frame` in on `port` is dropped for `reason`, untouched, with nothing
/// generated.
fn refused(g: &mut Gw, frame: &[u8], port: u16, reason: DropReason) {
    let (v, out) = g.send(frame, port);
    assert_eq!(v, Verdict::Drop(reason), "{frame:02x?}");
    assert_eq!(out, frame, "a refused frame is not rewritten");
    assert!(
        g.take_emitted().is_empty(),
        "nothing generated for {frame:02x?}"
    );
}

#[test]
fn tagged_frames_on_a_port_without_vlans_are_drop_vlan() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let udp4 = from_host4(H4, SERVER4, 17, &udp(1, 2, b"x"));
    refused(
        &mut g,
        &tagged(&udp4, &[(0x8100, 100)]),
        0,
        DropReason::Vlan,
    );
    refused(
        &mut g,
        &tagged(&udp4, &[(0x88a8, 10), (0x8100, 20)]),
        0,
        DropReason::Vlan,
    );
    let req = arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]);
    refused(&mut g, &tagged(&req, &[(0x8100, 100)]), 0, DropReason::Vlan);
    // A frame whose tag the worker took off for a VLAN this port does not have.
    let (v, _) = send_rx(
        &mut g,
        &udp4,
        0,
        RxInfo {
            cksum: RxCksum::Unknown,
            vlan: Some(100),
        },
    );
    assert_eq!(v, Verdict::Drop(DropReason::Vlan));
    assert_eq!(g.shared.conntrack().n_conns(), 0);
}

#[test]
fn martian_sources_are_neither_answered_nor_forwarded() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    for src in [
        [0, 0, 0, 0],
        [127, 0, 0, 1],
        [224, 0, 0, 9],
        [240, 0, 0, 1],
        [255, 255, 255, 255],
        GW_IN4,
        GW_OUT4,
    ] {
        // A ping of the gateway: no echo reply.
        let ping = from_host4(src, GW_IN4, 1, &echo(8, 1, 1));
        refused(&mut g, &ping, 0, DropReason::MartianSrc);
        let out = from_host4(src, SERVER4, 17, &udp(1, 2, b"x"));
        refused(&mut g, &out, 0, DropReason::MartianSrc);
    }
    for src in ["::", "::1", "ff02::1", "::ffff:10.0.0.2", "::10.0.0.2"] {
        let mut e = vec![128, 0, 0, 0, 0, 1, 0, 1];
        e.extend_from_slice(b"ping");
        let ping = from_host6(v6(src), v6("fd00:0:0:1::1"), 58, &e);
        refused(&mut g, &ping, 0, DropReason::MartianSrc);
    }
    // Link-local across ports is martian; to the gateway itself it is answered.
    let ll = from_host6(v6("fe80::2"), v6("2001:db8::7"), 17, &udp(1, 2, b"x"));
    refused(&mut g, &ll, 0, DropReason::MartianSrc);
    let mut e = vec![128, 0, 0, 0, 0, 1, 0, 1];
    e.extend_from_slice(b"ping");
    let ping = from_host6(v6("fe80::2"), v6("fd00:0:0:1::1"), 58, &e);
    let (v, out) = g.send(&ping, 0);
    fwd(v, 0);
    assert_eq!(
        &out[22..38],
        &v6("fd00:0:0:1::1"),
        "the reply is from the gateway"
    );
    assert_eq!(&out[38..54], &v6("fe80::2"));
    assert_eq!(out[54], 129);
    verify_frame(&out).unwrap();
    assert_eq!(g.shared.conntrack().n_conns(), 0, "nothing tracked");
}

#[test]
fn martian_destinations_are_not_routed() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    for dst in [
        [0, 0, 0, 1],
        [127, 0, 0, 1],
        [240, 0, 0, 1],
        [169, 254, 1, 1],
    ] {
        let f = from_host4(H4, dst, 17, &udp(1, 2, b"x"));
        refused(&mut g, &f, 0, DropReason::MartianDst);
    }
    for dst in ["::1", "::ffff:198.51.100.7", "::198.51.100.7", "fe80::9"] {
        let f = from_host6(v6("fd00:0:0:1::2"), v6(dst), 17, &udp(1, 2, b"x"));
        refused(&mut g, &f, 0, DropReason::MartianDst);
    }
    // Limited broadcast and multicast are the link's: consumed as local.
    let f = from_host4(H4, [255; 4], 17, &udp(1, 2, b"x"));
    refused(&mut g, &f, 0, DropReason::Local);
}

#[test]
fn source_routes_are_refused_and_other_options_pass_translated() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    refused(
        &mut g,
        &ip4_opts(64, &[1, 0x83, 7, 4, 192, 0, 2, 9]),
        0,
        DropReason::SourceRoute,
    );
    refused(
        &mut g,
        &ip4_opts(64, &[0x89, 7, 4, 192, 0, 2, 9, 0]),
        0,
        DropReason::SourceRoute,
    );
    let ra = ip4_opts(64, &[0x94, 4, 0, 0]);
    let (v, out) = g.send(&ra, 0);
    fwd(v, 1);
    let mut want = ra.clone();
    want[..6].copy_from_slice(&ROUTER);
    want[6..12].copy_from_slice(&GW1);
    want[22] = 63;
    want[26..30].copy_from_slice(&GW_OUT4);
    fill_frame(&mut want).unwrap();
    assert_eq!(out, want);
}

#[test]
fn ipv4_header_checksums_follow_the_nic_verdict_or_are_verified_here() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let good = from_host4(H4, SERVER4, 17, &udp(1, 2, b"x"));
    let mut bad = good.clone();
    bad[24] ^= 0x40;
    // No NIC verdict: verified in software.
    refused(&mut g, &bad, 0, DropReason::BadIpChecksum);
    let mut ping = from_host4(H4, GW_IN4, 1, &echo(8, 3, 3));
    ping[25] ^= 1;
    refused(&mut g, &ping, 0, DropReason::BadIpChecksum);
    // The NIC said bad: dropped although the bytes verify.
    let rx = |cksum| RxInfo { cksum, vlan: None };
    let (v, _) = send_rx(&mut g, &good, 0, rx(RxCksum::Bad));
    assert_eq!(v, Verdict::Drop(DropReason::BadIpChecksum));
    // The NIC said good: trusted (not computed again), so this one goes through.
    let (v, _) = send_rx(&mut g, &bad, 0, rx(RxCksum::Good));
    fwd(v, 1);
    let (v, _) = send_rx(&mut g, &good, 0, rx(RxCksum::Unknown));
    fwd(v, 1);
}

#[test]
fn fragments_are_drop_fragment_not_invalid() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let mut f = from_host4(H4, SERVER4, 17, &udp(1, 2, b"first fragment"));
    f[20] = 0x20; // more fragments
    fill_frame(&mut f).unwrap();
    refused(&mut g, &f, 0, DropReason::Fragment);
}

/// What the worker counts, from the step's verdicts and sink calls: every frame in is
/// `rx`; a forward, an emitted frame and a released one are `tx`; a drop (verdict or
/// held) is `dropped`; an emitted frame is also `generated`.
#[test]
fn rx_minus_dropped_plus_generated_is_tx() {
    let mut g = Gw::new();
    let (mut rx, mut tx, mut dropped) = (0u64, 0u64, 0u64);
    let mut held = 0u64;
    let frames: Vec<(Vec<u8>, u16)> = vec![
        // ARP request for the gateway: answered in place.
        (arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0),
        // Out to the server: the router is unresolved, an ARP request is generated and
        // the packet held.
        (from_host4(H4, SERVER4, 17, &udp(1, 2, b"a")), 0),
        // TTL 1: dropped, a time exceeded generated.
        (ip4(GW0, HOST, H4, SERVER4, 1, 17, &udp(1, 2, b"b")), 0),
        // NS with two options (not answerable in place): advert generated out of place.
        (
            {
                let mut f = ns(HOST, v6("fd00:0:0:1::2"), v6("fd00:0:0:1::1"));
                // A nonce option (kind 14, 8 bytes) after the link-layer address.
                f.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
                let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
                f[18..20].copy_from_slice(&plen.to_be_bytes());
                fill_frame(&mut f).unwrap();
                f
            },
            0,
        ),
        // The router's ARP reply: consumed, and the held packet released.
        (arp(2, ROUTER, ROUTER4, GW1, GW_OUT4, GW1), 1),
        // A martian: dropped.
        (from_host4([127, 0, 0, 1], SERVER4, 17, &udp(1, 2, b"c")), 0),
    ];
    for (f, port) in &frames {
        rx += 1;
        let (v, _) = g.send(f, *port);
        match v {
            Verdict::Forward(_) => tx += 1,
            Verdict::Drop(_) => dropped += 1,
            Verdict::Hold(_) => held += 1,
            Verdict::Consumed => panic!("no fragment among these frames"),
        }
    }
    let generated = g.sink.emitted.len() as u64;
    tx += generated + g.sink.sent.len() as u64;
    dropped += g.sink.dropped.len() as u64;
    let released = g.sink.sent.len() as u64;
    assert_eq!(
        (held, released, generated),
        (1, 1, 3),
        "one held and released; ARP request, time exceeded, advert generated"
    );
    let kinds: Vec<(u16, u16)> = g
        .sink
        .emitted
        .iter()
        .map(|(p, f)| (*p, u16::from_be_bytes([f[12], f[13]])))
        .collect();
    assert_eq!(kinds, [(1, 0x0806), (0, 0x0800), (0, 0x86dd)]);
    assert_eq!(
        rx - dropped + generated,
        tx,
        "rx={rx} dropped={dropped} tx={tx}"
    );
    assert_eq!((rx, dropped, tx), (6, 4, 5));
}

/// Port 0 carries its untagged interface and VLAN 10 (10.0.10.1/24, inside, zone 1).
const VLAN_CONFIG: &str = r#"
[datapath]
max_conns = 4096

[[port]]
port = 0
role = "inside"
ipv4 = "10.0.0.1/24"
zone = 1

[[port]]
port = 0
vlan = 10
role = "inside"
ipv4 = "10.0.10.1/24"
zone = 1

[[port]]
port = 1
role = "outside"
ipv4 = "192.0.2.1/24"
next_hop_mac = "02:00:00:00:02:02"

[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.2"

[[snat]]
pool = "192.0.2.1"
"#;

#[test]
fn a_vlan_sub_interface_answers_arp_and_ping_and_is_snated_both_ways() {
    let mut g = Gw::with_config(VLAN_CONFIG);
    let vif = VLAN_IFACE_BASE;
    let v10 = RxInfo {
        cksum: RxCksum::Unknown,
        vlan: Some(10),
    };
    let h10 = [10, 0, 10, 2];
    let gw10 = [10, 0, 10, 1];
    // ARP on the sub-interface: answered for its address, sent back on it.
    let (v, out) = send_rx(&mut g, &arp(1, HOST, h10, [0; 6], gw10, [0xff; 6]), 0, v10);
    fwd(v, vif);
    assert_eq!(out, arp(2, GW0, gw10, HOST, h10, HOST));
    assert!(g
        .shared
        .neighbours()
        .contains(&(vif, "10.0.10.2".parse().unwrap(), MacAddr(HOST))));
    // Not for the untagged interface's address, and untagged ARP for 10.0.10.1 neither.
    let (v, _) = send_rx(
        &mut g,
        &arp(1, HOST, h10, [0; 6], GW_IN4, [0xff; 6]),
        0,
        v10,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let (v, _) = g.send(&arp(1, HOST, H4, [0; 6], gw10, [0xff; 6]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    // Ping of the sub-interface's address.
    let (v, out) = send_rx(&mut g, &from_host4(h10, gw10, 1, &echo(8, 5, 1)), 0, v10);
    fwd(v, vif);
    assert_eq!(out, ip4(HOST, GW0, gw10, h10, 64, 1, &echo(0, 5, 1)));
    // Out through SNAT, and the reply back to the sub-interface.
    let syn = tcp(41000, 80, 1, 0, SYN, b"");
    let (v, out) = send_rx(&mut g, &from_host4(h10, SERVER4, 6, &syn), 0, v10);
    fwd(v, 1);
    assert_eq!(out, to_router4(GW_OUT4, SERVER4, 6, &syn));
    let syn_ack = tcp(80, 41000, 100, 2, SYN | ACK, b"");
    let (v, out) = g.send(&from_router4(SERVER4, GW_OUT4, 6, &syn_ack), 1);
    fwd(v, vif);
    assert_eq!(out, to_host4(SERVER4, h10, 6, &syn_ack));
    // Another VLAN on the same port: not configured.
    let (v, _) = send_rx(
        &mut g,
        &from_host4(h10, SERVER4, 6, &syn),
        0,
        RxInfo {
            cksum: RxCksum::Unknown,
            vlan: Some(11),
        },
    );
    assert_eq!(v, Verdict::Drop(DropReason::Vlan));
}
