//! NAT mappings in the step (issue 20): endpoint-independent mapping kept for every
//! destination, hairpinning through another inside host's mapping (UDP and TCP, both
//! families), the three filtering behaviours, and a mapping outliving OVS's 30 s.

use super::*;
use crate::conntrack::key::ip_to_addr;

/// The static inside next hop of [`static_macs_config`] (every inside host).
const INSIDE_NH: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const H4B: [u8; 4] = [10, 0, 0, 3];
const OTHER4: [u8; 4] = [203, 0, 113, 9];

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, inbound: bool) -> Vec<u8> {
    let (d, s) = if inbound { (GW1, ROUTER) } else { (GW0, HOST) };
    ip4(d, s, src, dst, 64, 17, &udp(sport, dport, b"map"))
}

/// What the gateway forwards to the inside for `udp4(…)` sent to it.
fn udp4_in(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    ip4(INSIDE_NH, GW0, src, dst, 63, 17, &udp(sport, dport, b"map"))
}

fn out_sport(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[34], f[35]])
}

/// The step on `text`, with its zone limits and timeouts applied to the tracker as the
/// control lcore's setup does.
fn gw(text: &str) -> Gw {
    let g = Gw::with_config(text);
    let cfg = Config::parse(text, "test.toml").unwrap();
    let ct = g.shared.conntrack();
    for &(zone, limit) in &cfg.zone_limits {
        ct.zones().set_limit(zone, limit);
    }
    for &(attr, secs) in &cfg.timeouts {
        ct.default_policy().set_ms(attr, secs * 1000);
    }
    g
}

fn with_filtering(f: &str) -> String {
    let text = static_macs_config().replace(
        "filtering = \"address-port-dependent\"",
        &format!("filtering = \"{f}\""),
    );
    assert!(text.contains(&format!("filtering = \"{f}\"")));
    text
}

#[test]
fn an_inside_endpoint_keeps_its_outside_port_for_every_destination_even_when_another_host_wants_it()
{
    let mut g = gw(&static_macs_config());
    let (v, a1) = g.send(&udp4(H4, SERVER4, 5000, 3478, false), 0);
    fwd(v, 1);
    assert_eq!(out_sport(&a1), 5000);
    // B, same port, another destination: A's outside port is A's.
    let (v, b1) = g.send(&udp4(H4B, OTHER4, 5000, 3478, false), 0);
    fwd(v, 1);
    assert_ne!(out_sport(&b1), 5000);
    // A to B's destination: still 5000 (endpoint-independent mapping).
    let (v, a2) = g.send(&udp4(H4, OTHER4, 5000, 3478, false), 0);
    fwd(v, 1);
    assert_eq!(out_sport(&a2), 5000);
    assert_eq!(g.shared.conntrack().n_conns(), 3);
    assert_eq!(g.shared.rt.maps.len(), 2);
}

#[test]
fn udp_hairpin_reaches_the_other_host_with_the_senders_public_endpoint_and_back() {
    let mut g = gw(&static_macs_config());
    fwd(g.send(&udp4(H4, SERVER4, 5000, 3478, false), 0).0, 1);
    fwd(g.send(&udp4(H4B, SERVER4, 6000, 3478, false), 0).0, 1);
    // A sends to B's public endpoint: B gets it from A's public endpoint.
    let (v, to_b) = g.send(&udp4(H4, GW_OUT4, 5000, 6000, false), 0);
    fwd(v, 0);
    assert_eq!(to_b, udp4_in(GW_OUT4, H4B, 5000, 6000));
    verify_frame(&to_b).unwrap();
    // B answers A's public endpoint: A gets it from B's.
    let (v, to_a) = g.send(&udp4(H4B, GW_OUT4, 6000, 5000, false), 0);
    fwd(v, 0);
    assert_eq!(to_a, udp4_in(GW_OUT4, H4, 6000, 5000));
    assert_eq!(
        g.shared.conntrack().n_conns(),
        3,
        "the hairpin is one connection of its own"
    );
    // A's own public endpoint is hairpinned back to A (what STUN checks).
    let (v, own) = g.send(&udp4(H4, GW_OUT4, 5000, 5000, false), 0);
    fwd(v, 0);
    assert_eq!(own, udp4_in(GW_OUT4, H4, 5000, 5000));
    // An outside endpoint nobody holds stays the gateway's own.
    let (v, _) = g.send(&udp4(H4, GW_OUT4, 5000, 7777, false), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
}

#[test]
fn tcp_hairpin_over_ipv6_carries_the_handshake_between_two_inside_hosts() {
    let mut g = gw(&static_macs_config());
    let a = v6("fd00:0:0:1::2");
    let b = v6("fd00:0:0:1::3");
    let srv = v6("2001:db8::7");
    let pool = v6("fd00:0:0:2::1");
    let seg =
        |src, dst, sp, dp, seq, ack, fl| from_host6(src, dst, 6, &tcp(sp, dp, seq, ack, fl, b""));
    let inside = |src, dst, sp, dp, seq, ack, fl| {
        ip6(
            INSIDE_NH,
            GW0,
            src,
            dst,
            63,
            6,
            &tcp(sp, dp, seq, ack, fl, b""),
        )
    };
    fwd(g.send(&seg(a, srv, 40000, 443, 1, 0, SYN), 0).0, 1);
    fwd(g.send(&seg(b, srv, 41000, 443, 1, 0, SYN), 0).0, 1);
    let (v, syn) = g.send(&seg(a, pool, 40000, 41000, 100, 0, SYN), 0);
    fwd(v, 0);
    assert_eq!(syn, inside(pool, b, 40000, 41000, 100, 0, SYN));
    verify_frame(&syn).unwrap();
    let (v, synack) = g.send(&seg(b, pool, 41000, 40000, 500, 101, SYN | ACK), 0);
    fwd(v, 0);
    assert_eq!(synack, inside(pool, a, 41000, 40000, 500, 101, SYN | ACK));
    let (v, ack) = g.send(&seg(a, pool, 40000, 41000, 101, 501, ACK), 0);
    fwd(v, 0);
    assert_eq!(ack, inside(pool, b, 40000, 41000, 101, 501, ACK));
}

#[test]
fn endpoint_independent_filtering_admits_any_source_to_a_live_mapping_within_the_zone_limit() {
    let text = with_filtering("endpoint-independent").replace(
        "# zones = [ { zone = 1, limit = 100000 } ]",
        "zones = [ { zone = 1, limit = 2 } ]",
    );
    let mut g = gw(&text);
    fwd(g.send(&udp4(H4, SERVER4, 5000, 3478, false), 0).0, 1);
    let (v, f) = g.send(&udp4(OTHER4, GW_OUT4, 999, 5000, true), 1);
    fwd(v, 0);
    assert_eq!(f, udp4_in(OTHER4, H4, 999, 5000));
    assert_eq!(g.shared.conntrack().n_conns(), 2);
    // The inside host's answer goes out from its mapping.
    let (v, back) = g.send(&udp4(H4, OTHER4, 5000, 999, false), 0);
    fwd(v, 1);
    assert_eq!(out_sport(&back), 5000);
    // A third connection is over the zone's limit: refused and counted as such.
    let (v, _) = g.send(&udp4(ROUTER4, GW_OUT4, 1, 5000, true), 1);
    assert_eq!(v, Verdict::Drop(DropReason::ZoneLimit));
    // No mapping behind the port: the gateway's own address, nothing to forward.
    let (v, _) = g.send(&udp4(OTHER4, GW_OUT4, 999, 5001, true), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
}

#[test]
fn address_dependent_filtering_admits_only_addresses_the_mapping_sent_to() {
    let mut g = gw(&with_filtering("address-dependent"));
    fwd(g.send(&udp4(H4, SERVER4, 5000, 3478, false), 0).0, 1);
    let (v, f) = g.send(&udp4(SERVER4, GW_OUT4, 3479, 5000, true), 1);
    fwd(v, 0);
    assert_eq!(f, udp4_in(SERVER4, H4, 3479, 5000));
    let (v, _) = g.send(&udp4(OTHER4, GW_OUT4, 3478, 5000, true), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
}

#[test]
fn address_and_port_dependent_filtering_is_the_default_and_refuses_another_port() {
    let mut g = gw(&static_macs_config());
    fwd(g.send(&udp4(H4, SERVER4, 5000, 3478, false), 0).0, 1);
    let (v, _) = g.send(&udp4(SERVER4, GW_OUT4, 3479, 5000, true), 1);
    assert_eq!(v, Verdict::Drop(DropReason::Local));
    let (v, f) = g.send(&udp4(SERVER4, GW_OUT4, 3478, 5000, true), 1);
    fwd(v, 0);
    assert_eq!(f, udp4_in(SERVER4, H4, 3478, 5000));
}

#[test]
fn a_udp_mapping_idle_longer_than_ovs_30_s_keeps_its_port_and_dies_with_its_connections() {
    let mut g = gw(&static_macs_config());
    fwd(g.send(&udp4(H4, SERVER4, 5000, 3478, false), 0).0, 1);
    fwd(g.send(&udp4(SERVER4, GW_OUT4, 3478, 5000, true), 1).0, 0);
    // 100 s idle (OVS's udp_multiple is 30 s; the default config's 300 s).
    g.tick(100_000);
    let (v, f) = g.send(&udp4(SERVER4, GW_OUT4, 3478, 5000, true), 1);
    fwd(v, 0);
    assert_eq!(f, udp4_in(SERVER4, H4, 3478, 5000));
    // Another host cannot take the port; A keeps it towards a new destination.
    let (v, b) = g.send(&udp4(H4B, OTHER4, 5000, 1, false), 0);
    fwd(v, 1);
    assert_ne!(out_sport(&b), 5000);
    let (v, a) = g.send(&udp4(H4, OTHER4, 5000, 2, false), 0);
    fwd(v, 1);
    assert_eq!(out_sport(&a), 5000);
    // All of A's connections expire and are swept: its mapping goes with them.
    g.tick(301_000);
    let now = g.shared.now_ms();
    g.shared.conntrack().control_handle().sweep_all(now);
    assert_eq!(g.shared.conntrack().n_conns(), 0);
    assert_eq!(
        g.shared.rt.maps.lookup_in(
            &Endpoint::src_of(&crate::conntrack::ConnKey {
                src: ip_to_addr(IpAddr::from(H4)).0,
                dst: [0; 16],
                sport: 5000,
                dport: 0,
                zone: 1,
                proto: 17,
                family: 4,
            }),
            now
        ),
        None
    );
}
