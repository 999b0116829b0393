//! Path MTU through the step: a port's `mtu` on receive and on egress, ICMP
//! "fragmentation needed" and ICMPv6 "packet too big" byte for byte, their rate limit,
//! egress fragmentation of single packets and of reassembled datagrams, and
//! `mss_clamp = "auto"`.

use super::*;
use crate::wire::checksum::verify_ipv4_header;
use crate::wire::ipv4;

/// `n` bytes of a pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A UDP datagram of `n` pattern bytes from the inside host (port 5000) to the server
/// (port 53), TTL 64, DF set (the test frames' default).
fn udp_out(n: usize) -> Vec<u8> {
    from_host4(H4, SERVER4, 17, &udp(5000, 53, &pattern(n)))
}

/// The same datagram carrying `data`, DF clear (it may be fragmented).
fn udp_out_may_fragment(data: &[u8]) -> Vec<u8> {
    Frame::v4(H4, SERVER4, L4::udp(5000, 53, data))
        .macs(GW0, HOST)
        .ttl(64)
        .dont_frag(false)
        .build()
}

#[test]
fn a_df_packet_too_big_for_the_outside_mtu_gets_frag_needed_quoting_576_bytes_of_it_as_sent() {
    let mut g = outside_with("mtu = 1400");
    g.resolve_v4_neighbours();
    // 20 + 8 + 1472 = 1500 bytes of IP, DF set (the test frames' default).
    let sent = udp_out(1472);
    let (v, _) = g.send(&sent, 0);
    assert_eq!(v, Verdict::Drop(DropReason::MtuExceeded));
    // From 10.0.0.1 (the input port's address) to the sender, quoting as much of the
    // packet as it sent it (source 10.0.0.2:5000 before SNAT, TTL 64) as fits in 576
    // bytes of IP (RFC 1812 §4.3.2.3): 576 - 20 - 8 = 548 of its 1500.
    let quote = &sent[14..14 + 548];
    let want = Frame::v4(GW_IN4, H4, L4::icmp(3, 4, 1400, quote))
        .macs(HOST, GW0)
        .ttl(64)
        .ident(0)
        .dont_frag(false)
        .build();
    let em = g.take_emitted();
    assert_eq!(em, vec![(0, want)]);
    let e = &em[0].1;
    assert_eq!(e.len(), 14 + 576);
    assert_eq!(u16::from_be_bytes([e[16], e[17]]), 576, "IP total length");
    assert!(verify_ipv4_header(&e[14..34]));
    assert_eq!(
        crate::wire::checksum::icmpv4(&e[34..]),
        u16::from_be_bytes([e[36], e[37]]),
        "ICMP checksum"
    );
    let c = g.shared.counters();
    assert_eq!(
        (c.frag_needed, c.packet_too_big, c.icmp_rate_limited),
        (1, 0, 0)
    );
    // One that fits goes out whole.
    let fits = udp_out(1372);
    fwd(g.send(&fits, 0).0, 1);
}

#[test]
fn an_ipv6_packet_too_big_gets_packet_too_big_with_the_mtu_quoting_1280_bytes_in_all() {
    let mut g = outside_with("mtu = 1400");
    let h6 = v6("fd00:0:0:1::2");
    let gw6 = v6("fd00:0:0:1::1");
    let server6 = v6("2001:db8::7");
    // 40 + 8 + 1452 = 1500 bytes.
    let sent = from_host6(h6, server6, 17, &udp(5000, 53, &pattern(1452)));
    let (v, _) = g.send(&sent, 0);
    assert_eq!(v, Verdict::Drop(DropReason::MtuExceeded));
    // As much of the packet as fits in 1280 bytes in all (RFC 4443 §2.4 (c)): 1280 - 40 -
    // 8 = 1232 of its 1500.
    let want = Frame::v6(gw6, h6, L4::icmp(2, 0, 1400, &sent[14..14 + 1232]))
        .macs(HOST, GW0)
        .ttl(64)
        .build();
    let em = g.take_emitted();
    assert_eq!(em, vec![(0, want)]);
    let e = &em[0].1;
    assert_eq!(e.len(), 14 + 1280);
    assert_eq!(
        u16::from_be_bytes([e[18], e[19]]),
        1240,
        "IPv6 payload length"
    );
    assert_eq!(
        crate::wire::checksum::icmpv6(&gw6, &h6, &e[54..]),
        u16::from_be_bytes([e[56], e[57]]),
        "ICMPv6 checksum"
    );
    assert_eq!(g.shared.counters().packet_too_big, 1);
}

#[test]
fn icmp_errors_about_mtu_are_rate_limited_by_the_input_ports_bucket() {
    let mut g = Gw::with_config(&ports_with(&[
        ("outside", "mtu = 1280"),
        ("inside", "icmp_rate = 2\nicmp_burst = 3"),
    ]));
    g.resolve_v4_neighbours();
    let big = udp_out(1400);
    for _ in 0..5 {
        assert_eq!(g.send(&big, 0).0, Verdict::Drop(DropReason::MtuExceeded));
    }
    assert_eq!(g.take_emitted().len(), 3, "the burst");
    let c = g.shared.counters();
    assert_eq!((c.frag_needed, c.icmp_rate_limited), (3, 2));
    // 2 per second: one more after 500 ms.
    g.tick(500);
    for _ in 0..3 {
        g.send(&big, 0);
    }
    assert_eq!(g.take_emitted().len(), 1);
    assert_eq!(g.shared.counters().icmp_rate_limited, 4);
}

#[test]
fn a_packet_without_df_is_fragmented_on_egress_to_the_outside_mtu() {
    let mut g = outside_with("mtu = 1400");
    g.resolve_v4_neighbours();
    let data = pattern(1472);
    let sent = udp_out_may_fragment(&data);
    let (v, _) = g.send(&sent, 0);
    assert_eq!(v, Verdict::Consumed);
    // SNATed, TTL 63, cut at 1376 data bytes (1400 - 20, a multiple of 8) + 104.
    let translated = to_router4(GW_OUT4, SERVER4, 17, &udp(5000, 53, &data));
    let want: Vec<(u16, Vec<u8>)> = fragments(&translated, 1376, 0x1234)
        .into_iter()
        .map(|f| (1, f))
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(g.take_emitted(), want, "byte for byte");
    let c = g.shared.counters();
    assert_eq!((c.fragmented, c.fragments_out, c.frag_needed), (1, 2, 0));
}

#[test]
fn a_reassembled_datagram_is_cut_again_only_where_the_outside_mtu_requires() {
    let mut g = Gw::with_config(&ports_with(&[("inside", "mtu = 9000")]));
    g.resolve_v4_neighbours();
    let data = pattern(8000);
    let whole = from_host4(H4, SERVER4, 17, &udp(5000, 53, &data));
    // Jumbo fragments from inside: 4000 + 4000 + 8 bytes of data.
    let frags = fragments(&whole, 4000, 0x1234);
    assert_eq!(frags.len(), 3);
    assert_eq!(send_all(&mut g, &frags, 0), [Verdict::Consumed; 3]);
    let out = g.take_emitted();
    // 4000 → 1480 + 1480 + 1040, twice; the 8-byte last fragment is sent as it was.
    let sizes: Vec<usize> = out.iter().map(|(_, f)| f.len() - 34).collect();
    assert_eq!(sizes, [1480, 1480, 1040, 1480, 1480, 1040, 8]);
    let translated = to_router4(GW_OUT4, SERVER4, 17, &udp(5000, 53, &data));
    let mut joined = Vec::new();
    for (k, (port, f)) in out.iter().enumerate() {
        assert_eq!(*port, 1);
        assert_eq!(&f[..34 - 20], &translated[..14], "MACs");
        let h = ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert!(verify_ipv4_header(h.header()));
        assert_eq!(usize::from(h.frag_offset()), joined.len());
        assert_eq!(h.more_frags(), k + 1 < out.len());
        assert_eq!(
            (h.src_addr(), h.dst_addr(), h.ttl()),
            (GW_OUT4, SERVER4, 63)
        );
        joined.extend_from_slice(&f[34..]);
    }
    assert_eq!(
        joined,
        &translated[34..],
        "the translated datagram, byte for byte"
    );
    assert_eq!(g.shared.counters().fragmented, 1);
}

#[test]
fn a_frame_larger_than_the_receiving_ports_mtu_is_dropped_as_too_big() {
    let mut g = Gw::with_config(&ports_with(&[("inside", "mtu = 1280")]));
    g.resolve_v4_neighbours();
    let big = udp_out(1253);
    assert_eq!(g.send(&big, 0).0, Verdict::Drop(DropReason::TooBig));
    let fits = udp_out(1252);
    fwd(g.send(&fits, 0).0, 1);
}

#[test]
fn mss_clamp_auto_follows_the_egress_ports_mtu() {
    let mut g = outside_with("mtu = 1400\nmss_clamp = \"auto\"");
    g.resolve_v4_neighbours();
    // 1400 - 20 - 20.
    syn_leaves_with_mss(&mut g, 1460, 1360);
}

#[test]
fn a_packet_to_be_fragmented_waits_for_its_next_hop_then_goes_out_cut() {
    let mut g = outside_with("mtu = 1400");
    // The inside host is known, the outside router not yet.
    fwd(g.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0).0, 0);
    g.take_emitted();
    let data = pattern(1472);
    let sent = udp_out_may_fragment(&data);
    assert_eq!(g.send(&sent, 0).0, Verdict::Consumed);
    let em = g.take_emitted();
    assert_eq!(em.len(), 1, "only the ARP request: {em:?}");
    assert_eq!(&em[0].1[12..14], &[0x08, 0x06]);
    // The router answers: the packet goes out cut, to its MAC.
    let (v, _) = g.send(&arp(2, ROUTER, ROUTER4, GW1, GW_OUT4, GW1), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let translated = to_router4(GW_OUT4, SERVER4, 17, &udp(5000, 53, &data));
    let want: Vec<(u16, Vec<u8>)> = fragments(&translated, 1376, 0x1234)
        .into_iter()
        .map(|f| (1, f))
        .collect();
    assert_eq!(g.take_emitted(), want);
    assert_eq!(g.shared.counters().fragmented, 1);
    // Never answered: given up after the hold timeout, nothing sent.
    let mut g = outside_with("mtu = 1400");
    fwd(g.send(&arp(1, HOST, H4, [0; 6], GW_IN4, [0xff; 6]), 0).0, 0);
    assert_eq!(g.send(&sent, 0).0, Verdict::Consumed);
    g.tick(HOLD_TIMEOUT_MS);
    g.take_emitted();
    g.send(&arp(2, ROUTER, ROUTER4, GW1, GW_OUT4, GW1), 1);
    let em = g.take_emitted();
    assert!(em.iter().all(|(_, f)| f[12..14] == [0x08, 0x06]), "{em:?}");
    assert_eq!(g.shared.counters().fragmented, 0);
}
