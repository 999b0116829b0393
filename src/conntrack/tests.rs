//! Scenario tests of the tracker, after Open vSwitch's conntrack test families: each
//! asserts the exact state flags of every packet, and the table's contents.

use super::testct::{dump, st, tracker, tracker_on, SnatTo};
use super::testpkt::*;
use super::*;
use crate::wire::parse::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::wire::parse::ParsedPacket;

const A: &str = "10.0.0.2";
const B: &str = "192.0.2.2";
const A6: &str = "fd00:0:0:1::2";
const B6: &str = "fd00:0:0:2::2";

/// Runs `pkts` through a worker at time `now` each and returns the flags as strings.
fn run(w: &mut CtWorker, pkts: &[ParsedPacket], zone: u16, now: u64) -> Vec<String> {
    pkts.iter()
        .map(|p| w.process(p, zone, true, now).state.to_string())
        .collect()
}

/// A full TCP session A:40000 → B:80: handshake, data both ways, FIN both ways.
fn tcp_session(a: &str, b: &str) -> Vec<ParsedPacket> {
    vec![
        tcp(a, b, 40000, 80, SYN, 1000, 0, 65535, 0),
        tcp(b, a, 80, 40000, SYN | ACK, 5000, 1001, 65535, 0),
        tcp(a, b, 40000, 80, ACK, 1001, 5001, 65535, 0),
        tcp(a, b, 40000, 80, ACK | PSH, 1001, 5001, 65535, 100),
        tcp(b, a, 80, 40000, ACK | PSH, 5001, 1101, 65535, 200),
        tcp(a, b, 40000, 80, ACK | FIN, 1101, 5201, 65535, 0),
        tcp(b, a, 80, 40000, ACK | FIN, 5201, 1102, 65535, 0),
        tcp(a, b, 40000, 80, ACK, 1102, 5202, 65535, 0),
    ]
}

#[test]
fn tcp_handshake_data_and_fin_follow_ovs_states() {
    for (a, b) in [(A, B), (A6, B6)] {
        let ct = tracker(1024);
        let mut w = ct.worker(0);
        let s = tcp_session(a, b);
        assert_eq!(
            run(&mut w, &s[..3], 0, 0),
            ["trk,new", "trk,est,rpl", "trk,est"]
        );
        let line = format!(
            "tcp,orig=(src={a},dst={b},sport=40000,dport=80),reply=(src={b},dst={a},sport=80,dport=40000),protoinfo=(state=ESTABLISHED)"
        );
        assert_eq!(dump(&ct), [line]);
        assert_eq!(
            run(&mut w, &s[3..], 0, 1),
            [
                "trk,est",
                "trk,est,rpl",
                "trk,est",
                "trk,est,rpl",
                "trk,est"
            ]
        );
        assert!(
            dump(&ct)[0].ends_with("protoinfo=(state=TIME_WAIT)"),
            "{:?}",
            dump(&ct)
        );
        // Both sides at FIN_WAIT_2 or later: the close timeout (30 s) applies.
        let c = &ct.all_conns()[0];
        assert_eq!(c.expiry, 1 + 30_000);
    }
}

#[test]
fn syn_ack_cannot_create_a_connection() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let r = w.process(
        &tcp(B, A, 80, 40000, SYN | ACK, 5000, 1001, 65535, 0),
        0,
        true,
        0,
    );
    assert_eq!(r.state, st("trk,inv"));
    assert_eq!(ct.n_conns(), 0);
    assert_eq!(ct.counters().invalid_new, 1);
}

#[test]
fn mid_stream_ack_picks_up_a_connection() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let pkts = [
        tcp(A, B, 40000, 80, ACK, 1_000_000, 7_000_000, 65535, 100),
        tcp(B, A, 80, 40000, ACK, 7_000_000, 1_000_100, 65535, 50),
        tcp(A, B, 40000, 80, ACK, 1_000_100, 7_000_050, 65535, 100),
    ];
    assert_eq!(
        run(&mut w, &pkts, 0, 0),
        ["trk,new", "trk,est,rpl", "trk,est"]
    );
}

#[test]
fn invalid_flag_combinations_are_invalid_and_do_not_create() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    for flags in [SYN | FIN, SYN | RST, 0, FIN] {
        let r = w.process(&tcp(A, B, 40000, 80, flags, 1, 0, 100, 0), 0, true, 0);
        assert_eq!(r.state, st("trk,inv"), "flags {flags:#x}");
    }
    assert_eq!(ct.n_conns(), 0);
}

#[test]
fn rst_moves_both_sides_to_time_wait() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let s = tcp_session(A, B);
    run(&mut w, &s[..3], 0, 0);
    let r = w.process(
        &tcp(B, A, 80, 40000, RST | ACK, 5001, 1001, 0, 0),
        0,
        true,
        5,
    );
    assert_eq!(r.state, st("trk,est,rpl"));
    let c = &ct.all_conns()[0];
    assert_eq!(c.l4.peer[0].state, TcpState::TimeWait);
    assert_eq!(c.l4.peer[1].state, TcpState::TimeWait);
    assert!(dump(&ct)[0].ends_with("state=TIME_WAIT)"));
    assert_eq!(c.expiry, 5 + 30_000);
}

#[test]
fn syn_after_close_reuses_the_port_with_a_new_connection() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    run(&mut w, &tcp_session(A, B), 0, 0);
    let old = ct.all_conns()[0].idx;
    let r = w.process(&tcp(A, B, 40000, 80, SYN, 90_000, 0, 65535, 0), 0, true, 10);
    assert_eq!(r.state, st("trk,new"));
    assert_eq!(ct.n_conns(), 1);
    let conns = ct.all_conns();
    assert_eq!(conns[0].l4.peer[0].state, TcpState::SynSent);
    assert_eq!(conns[0].l4.peer[1].state, TcpState::Closed);
    assert_eq!(conns[0].expiry, 10 + 30_000);
    assert_eq!(ct.counters().removed, 1);
    // The record may be reused, but it is a new connection (new generation or slot).
    assert!(conns[0].idx != old || r.conn.unwrap().gen != 0);
}

#[test]
fn out_of_window_segment_is_invalid_unless_sequence_checking_is_off() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let s = tcp_session(A, B);
    run(&mut w, &s[..3], 0, 0);
    // Far beyond the receiver's window.
    let bad = tcp(
        A,
        B,
        40000,
        80,
        ACK | PSH,
        1001 + 3_000_000,
        5001,
        65535,
        100,
    );
    assert_eq!(w.process(&bad, 0, true, 1).state, st("trk,inv"));
    assert_eq!(ct.counters().invalid_tcp, 1);
    ct.set_tcp_seq_check(false);
    assert_eq!(w.process(&bad, 0, true, 2).state, st("trk,est"));
}

#[test]
fn tracker_asked_for_huge_pages_tracks_on_whatever_pages_the_machine_has() {
    use crate::dpdk::{Backing, PageSize};
    // 200k connections: every array spans several 2 MiB pages. With no hugetlb pool (the
    // usual test machine) the table falls back to 4 KiB pages; with one, it uses it.
    let ct = tracker_on(200_000, PageSize::Huge);
    let backing = ct.table().backing();
    assert!(
        matches!(backing, Backing::HugePages | Backing::Pages),
        "{backing:?}"
    );
    assert!(ct.table().bytes() >= 200_000 * 64);
    let mut w = ct.worker(0);
    for (a, b) in [(A, B), (A6, B6)] {
        for sport in 1000..3000 {
            let out = udp(a, b, sport, 53);
            let back = udp(b, a, 53, sport);
            assert_eq!(run(&mut w, &[out, back], 0, 0), ["trk,new", "trk,est,rpl"]);
        }
    }
    assert_eq!(ct.n_conns(), 4000);
    let conns = ct.all_conns();
    assert_eq!(conns.len(), 4000);
    // Both ways seen: every one is udp_multiple (30 s).
    assert!(conns.iter().all(|c| c.expiry == 30_000));
}

#[test]
fn one_way_udp_is_new_then_a_reply_establishes_it() {
    for (a, b) in [(A, B), (A6, B6)] {
        let ct = tracker(1024);
        let mut w = ct.worker(0);
        let out = udp(a, b, 5000, 53);
        let back = udp(b, a, 53, 5000);
        // OVS 3.1 (conntrack-other.c): every one-way packet is `new`; a reply gives
        // `est,rpl`, and from then on `est`.
        assert_eq!(
            run(&mut w, &[out, out, out], 0, 0),
            ["trk,new", "trk,new", "trk,new"]
        );
        assert_eq!(
            run(&mut w, &[back, out, back], 0, 1),
            ["trk,est,rpl", "trk,est", "trk,est,rpl"]
        );
        assert_eq!(
            dump(&ct),
            [format!("udp,orig=(src={a},dst={b},sport=5000,dport=53),reply=(src={b},dst={a},sport=53,dport=5000)")]
        );
        // Both ways seen: udp_multiple (30 s).
        assert_eq!(ct.all_conns()[0].expiry, 1 + 30_000);
    }
}

#[test]
fn icmp_echo_request_and_reply() {
    for (a, b, req, rep, name) in [(A, B, 8, 0, "icmp"), (A6, B6, 128, 129, "icmpv6")] {
        let ct = tracker(1024);
        let mut w = ct.worker(0);
        assert_eq!(
            run(
                &mut w,
                &[icmp_query(a, b, req, 77), icmp_query(b, a, rep, 77)],
                0,
                0
            ),
            ["trk,new", "trk,est,rpl"]
        );
        assert_eq!(
            dump(&ct),
            [format!("{name},orig=(src={a},dst={b},id=77,type={req},code=0),reply=(src={b},dst={a},id=77,type={rep},code=0)")]
        );
        // An echo reply with no request is invalid.
        assert_eq!(
            w.process(&icmp_query(b, a, rep, 78), 0, true, 0).state,
            st("trk,inv")
        );
    }
}

#[test]
fn icmp_errors_are_related_to_their_connection_and_invalid_otherwise() {
    for (a, b, unreach) in [(A, B, 3u8), (A6, B6, 1u8)] {
        let ct = tracker(1024);
        let mut w = ct.worker(0);
        let out = udp(a, b, 5000, 53);
        w.process(&out, 0, true, 0);
        // B answers "port unreachable" carrying A's datagram: related, reply direction.
        let err = icmp_error(b, a, unreach, 3, &out);
        assert_eq!(w.process(&err, 0, true, 1).state, st("trk,rel,rpl"));
        // A router between them sends "time exceeded" to A: related too.
        let ttl = icmp_error("198.51.100.1", a, 11, 0, &out);
        if a == A {
            assert_eq!(w.process(&ttl, 0, true, 1).state, st("trk,rel,rpl"));
        }
        // An error about a datagram A never sent: invalid, nothing created.
        let stray = icmp_error(b, a, unreach, 3, &udp(a, b, 5001, 53));
        assert_eq!(w.process(&stray, 0, true, 1).state, st("trk,inv"));
        assert_eq!(ct.n_conns(), 1);
        // An error in the original direction (A reports B's reply unreachable).
        let back = udp(b, a, 53, 5000);
        let err2 = icmp_error(a, b, unreach, 3, &back);
        assert_eq!(w.process(&err2, 0, true, 1).state, st("trk,rel"));
        // Errors do not refresh the connection.
        assert_eq!(ct.all_conns()[0].expiry, 60_000);
    }
}

#[test]
fn icmp_error_related_to_tcp() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let s = tcp_session(A, B);
    run(&mut w, &s[..3], 0, 0);
    let frag_needed = icmp_error(B, A, 3, 4, &s[3]);
    assert_eq!(w.process(&frag_needed, 0, true, 1).state, st("trk,rel,rpl"));
}

#[test]
fn other_protocols_are_tracked_by_addresses_and_protocol() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    assert_eq!(
        run(
            &mut w,
            &[other(A, "224.0.0.18", 112), other("224.0.0.18", A, 112)],
            0,
            0
        ),
        ["trk,new", "trk,est,rpl"]
    );
    assert_eq!(
        dump(&ct),
        ["112,orig=(src=10.0.0.2,dst=224.0.0.18,sport=0,dport=0),reply=(src=224.0.0.18,dst=10.0.0.2,sport=0,dport=0)"]
    );
}

/// SCTP is keyed with its ports (OVS >= 3.2): two associations between the same hosts
/// are two connections, each with its own "other" state machine; an ICMP error quoting one
/// is related to that one.
#[test]
fn sctp_associations_are_keyed_by_their_ports() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    assert_eq!(
        run(
            &mut w,
            &[
                sctp(A, B, 5000, 9899),
                sctp(B, A, 9899, 5000),
                sctp(A, B, 5001, 9899),
                sctp(A, B, 5000, 9899),
            ],
            0,
            0
        ),
        ["trk,new", "trk,est,rpl", "trk,new", "trk,est"]
    );
    assert_eq!(
        dump(&ct),
        [
            "sctp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=5000,dport=9899),reply=(src=192.0.2.2,dst=10.0.0.2,sport=9899,dport=5000)",
            "sctp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=5001,dport=9899),reply=(src=192.0.2.2,dst=10.0.0.2,sport=9899,dport=5001)",
        ]
    );
    let err = icmp_error(B, A, 3, 3, &sctp(A, B, 5001, 9899));
    assert_eq!(w.process(&err, 0, true, 1).state, st("trk,rel,rpl"));
}

#[test]
fn fragments_are_invalid_and_counted() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let mut p = udp(A, B, 1, 2);
    p.fragment = crate::wire::parse::Fragment::Later;
    assert_eq!(w.process(&p, 0, true, 0).state, st("trk,inv"));
    assert_eq!(ct.counters().invalid_fragment, 1);
    assert_eq!(ct.n_conns(), 0);
}

#[test]
fn zones_isolate_identical_tuples() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let p = udp(A, B, 5000, 53);
    assert_eq!(w.process(&p, 1, true, 0).state, st("trk,new"));
    assert_eq!(w.process(&p, 2, true, 0).state, st("trk,new"));
    assert_eq!(
        w.process(&udp(B, A, 53, 5000), 2, true, 0).state,
        st("trk,est,rpl")
    );
    assert_eq!(ct.n_conns(), 2);
    let d = dump(&ct);
    assert!(
        d[0].ends_with(",zone=1") && d[1].ends_with(",zone=2"),
        "{d:?}"
    );
    assert_eq!(ct.zones().get(1).unwrap().count(), 1);
    assert_eq!(ct.zones().get(2).unwrap().count(), 1);
}

#[test]
fn without_commit_nothing_is_created() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let r = w.process(&udp(A, B, 1, 2), 0, false, 0);
    assert_eq!(r.state, st("trk,new"));
    assert!(r.conn.is_none());
    assert_eq!(ct.n_conns(), 0);
}

#[test]
fn zone_limit_refuses_then_admits_as_soon_as_one_has_expired() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    ct.zones().set_limit(5, 10);
    for i in 0..10 {
        assert!(w
            .process(&udp(A, B, 1000 + i, 53), 5, true, 0)
            .conn
            .is_some());
    }
    let r = w.process(&udp(A, B, 2000, 53), 5, true, 1000);
    assert_eq!(r.refused, Some(Refusal::ZoneLimit));
    assert_eq!(r.state, st("trk,new"));
    assert_eq!(ct.counters().refused_zone_limit, 1);
    // Other zones are not affected.
    assert!(w
        .process(&udp(A, B, 2000, 53), 6, true, 1000)
        .conn
        .is_some());
    // All ten expire at 60 s (udp_first); no sweep has run. The 11th is admitted at once.
    let r = w.process(&udp(A, B, 2001, 53), 5, true, 60_000);
    assert!(r.conn.is_some(), "{r:?}");
    assert_eq!(ct.zones().get(5).unwrap().count(), 1);
    assert!(ct.counters().reclaimed >= 1);
    assert_eq!(ct.zones().listed(ct.zones().get(5).unwrap()), 1);
}

#[test]
fn zone_limit_zero_admits_nothing_and_default_limit_is_inherited() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    ct.zones().set_limit(3, 0);
    assert_eq!(
        w.process(&udp(A, B, 1, 2), 3, true, 0).refused,
        Some(Refusal::ZoneLimit)
    );
    ct.zones().set_default_limit(2);
    for i in 0..2 {
        assert!(w.process(&udp(A, B, 10 + i, 2), 9, true, 0).conn.is_some());
    }
    assert_eq!(
        w.process(&udp(A, B, 20, 2), 9, true, 0).refused,
        Some(Refusal::ZoneLimit)
    );
    // Deleting zone 3's own limit reverts it to the default (2).
    ct.zones().del_limit(3);
    assert!(w.process(&udp(A, B, 1, 2), 3, true, 0).conn.is_some());
    // default=0 means no default limit.
    ct.zones().set_default_limit(0);
    assert!(w.process(&udp(A, B, 21, 2), 9, true, 0).conn.is_some());
}

#[test]
fn global_limit_refuses_new_keeps_existing_and_reclaims_expired() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    ct.set_max_conns(3).unwrap();
    for i in 0..3 {
        assert!(w.process(&udp(A, B, 1 + i, 2), 0, true, 0).conn.is_some());
    }
    assert_eq!(
        w.process(&udp(A, B, 9, 2), 0, true, 0).refused,
        Some(Refusal::MaxConns)
    );
    assert_eq!(ct.counters().refused_max_conns, 1);
    // Existing ones keep working.
    assert_eq!(
        w.process(&udp(B, A, 2, 1), 0, true, 1).state,
        st("trk,est,rpl")
    );
    // Once they expire, a new one gets in without waiting for a sweep.
    assert!(w.process(&udp(A, B, 9, 2), 0, true, 60_001).conn.is_some());
    assert!(ct.set_max_conns(5000).is_err());
}

#[test]
fn a_reclaim_walk_that_finds_nothing_is_not_repeated_within_the_same_millisecond() {
    // At the limit: the 64 oldest connections are live (answered at 50 s: until 80 s),
    // the 36 behind them expired at 60 s (never answered). A walk looks at the 64 oldest,
    // finds nothing and moves them to the tail; the refused creations after it in the
    // same millisecond do not walk again (a table full of live connections would cost
    // every refused packet a walk); the next millisecond's walk finds the expired ones.
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    ct.set_max_conns(100).unwrap();
    for i in 0..100u16 {
        assert!(w
            .process(&udp(A, B, 1000 + i, 53), 0, true, 0)
            .conn
            .is_some());
    }
    for i in 0..64u16 {
        w.process(&udp(B, A, 53, 1000 + i), 0, true, 50_000);
    }
    let t = 70_000;
    for sport in [2000, 2001] {
        assert_eq!(
            w.process(&udp(A, B, sport, 53), 0, true, t).refused,
            Some(Refusal::MaxConns),
            "{sport}"
        );
    }
    assert_eq!(ct.counters().reclaimed, 0);
    assert!(w
        .process(&udp(A, B, 2002, 53), 0, true, t + 1)
        .conn
        .is_some());
    assert_eq!(ct.counters().reclaimed, 32);
    assert_eq!(ct.n_conns(), 100 - 32 + 1);
}

#[test]
fn record_pool_exhaustion_refuses_new_connections_only() {
    let ct = tracker(4);
    let mut w = ct.worker(0);
    for i in 0..4 {
        assert!(w.process(&udp(A, B, 1 + i, 2), 0, true, 0).conn.is_some());
    }
    assert_eq!(
        w.process(&udp(A, B, 99, 2), 0, true, 0).refused,
        Some(Refusal::MaxConns)
    );
    assert_eq!(w.process(&udp(A, B, 1, 2), 0, true, 0).state, st("trk,new"));
}

#[test]
fn zone_timeout_policy_overrides_defaults_and_can_be_removed() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let z = ct.zones().get_or_create(4);
    z.policy.set_ms(TimeoutAttr::UdpFirst, 1000);
    z.policy.set_ms(TimeoutAttr::IcmpReply, 2000);
    w.process(&udp(A, B, 1, 2), 4, true, 0);
    w.process(&udp(A, B, 1, 2), 0, true, 0);
    w.process(&icmp_query(A, B, 8, 1), 4, true, 0);
    w.process(&icmp_query(B, A, 0, 1), 4, true, 0);
    let mut exp: Vec<(u16, u8, u64)> = ct
        .all_conns()
        .iter()
        .map(|c| (c.orig.zone, c.orig.proto, c.expiry))
        .collect();
    exp.sort();
    assert_eq!(exp, [(0, 17, 60_000), (4, 1, 2000), (4, 17, 1000)]);
    // After one second only the overridden UDP connection is gone.
    assert_eq!(
        w.process(&udp(B, A, 2, 1), 4, true, 1000).state,
        st("trk,new")
    );
    z.policy.clear();
    w.process(&udp(A, B, 7, 2), 4, true, 0);
    let c = ct
        .all_conns()
        .into_iter()
        .find(|c| c.orig.sport == 7)
        .unwrap();
    assert_eq!(c.expiry, 60_000);
}

/// A worker keeps a copy of the timeouts of the zone it tracked last (`TimeoutCache`):
/// a change of the default, a zone's own policy set and cleared, and packets alternating
/// between zones each get, on the same worker, the timeout in force when they are tracked.
#[test]
fn timeout_changes_reach_the_next_packet_of_a_worker_that_copied_them() {
    use super::timeouts::TimeoutAttr::UdpSingle;
    let ct = tracker(1024);
    ct.default_policy().set_ms(UdpSingle, 22_000);
    let mut w = ct.worker(0);
    let out = udp(A, B, 5000, 53);
    let expiry = |zone: u16| {
        ct.all_conns()
            .iter()
            .find(|c| c.orig.zone == zone)
            .map(|c| c.expiry)
    };
    let mut track = |zone: u16, now: u64| {
        let r = w.process(&out, zone, true, now);
        assert!(r.conn.is_some(), "zone {zone} at {now}: {}", r.state);
    };
    let z0 = ct.zones().get_or_create(0);
    // (zone, time, what changes before the packet, the expiry after it)
    let steps: [(u16, u64, &dyn Fn(), u64); 9] = [
        (0, 0, &|| {}, 60_000),     // created: the first packet's timeout
        (0, 1, &|| {}, 1 + 22_000), // FIRST -> MULTIPLE (the locked update)
        (0, 2, &|| {}, 2 + 22_000), // steady: the worker's copy
        (
            0,
            3,
            &|| ct.default_policy().set_ms(UdpSingle, 5_000),
            3 + 5_000,
        ),
        (0, 4, &|| z0.policy.set_ms(UdpSingle, 7_000), 4 + 7_000),
        (7, 5, &|| {}, 5 + 60_000), // zone 7 created: its first packet
        (7, 6, &|| {}, 6 + 5_000),  // zone 7 has no policy: the default
        (0, 7, &|| {}, 7 + 7_000),  // back to zone 0's own
        (0, 8, &|| z0.policy.clear(), 8 + 5_000),
    ];
    for (zone, now, change, want) in steps {
        change();
        track(zone, now);
        assert_eq!(expiry(zone), Some(want), "zone {zone} at {now}");
    }
}

#[test]
fn sweep_removes_exactly_the_expired_connections() {
    let ct = tracker(4096);
    let mut w = ct.worker(0);
    for i in 0..100u16 {
        w.process(&udp(A, B, 1000 + i, 53), 0, true, 0); // expires at 60 s
    }
    for i in 0..50u16 {
        let p = udp(A, B, 3000 + i, 53);
        w.process(&p, 0, true, 0);
        w.process(&udp(B, A, 53, 3000 + i), 0, true, 40_000); // bidir: expires at 70 s
    }
    let mut ctl = ct.control_handle();
    // A bounded step visits only part of the table.
    let step = ctl.sweep_expired(65_000, 16);
    assert_eq!(step.buckets, 16);
    let rest = ctl.sweep_expired(65_000, usize::MAX);
    assert_eq!(step.removed + rest.removed, 100);
    assert_eq!(ct.n_conns(), 50);
    assert!(ct.all_conns().iter().all(|c| c.orig.sport >= 3000));
    assert_eq!(ct.counters().expired, 100);
    assert_eq!(ct.zones().get(0).unwrap().count(), 50);
    assert_eq!(ctl.sweep_all(70_000).removed, 50);
    assert_eq!(ct.n_conns(), 0);
    let total: usize = (0..ct.table().n_buckets())
        .map(|b| ct.table().bucket_len(b))
        .sum();
    assert_eq!(total, 0);
}

#[test]
fn the_sweeps_batched_removals_leave_every_zone_list_and_count_exact() {
    // Two workers, three zones in turn: the sweep's batches hold runs of one list and
    // changes of zone and of shard, and each connection must leave its own list.
    let ct = tracker(4096);
    ct.zones().set_limit(2, 300);
    let (mut w0, mut w1) = (ct.worker(0), ct.worker(1));
    for i in 0..900u16 {
        let w = if i % 5 < 3 { &mut w0 } else { &mut w1 };
        let r = w.process(&udp(A, B, 1000 + i, 53), i % 3, true, 0); // expires at 60 s
        assert!(r.conn.is_some(), "connection {i}");
    }
    // A third of zone 1's live on (refreshed at 30 s: expire at 90 s).
    for i in (0..900u16).filter(|i| i % 3 == 1 && i % 2 == 0) {
        w0.process(&udp(A, B, 1000 + i, 53), 1, true, 30_000);
    }
    let live1 = (0..900u16).filter(|i| i % 3 == 1 && i % 2 == 0).count();
    let mut ctl = ct.control_handle();
    let rep = ctl.sweep_all(65_000);
    assert_eq!(rep.removed, 900 - live1);
    assert_eq!(ct.counters().expired, (900 - live1) as u64);
    assert_eq!(ct.n_conns() as usize, live1);
    for (z, left) in [(0u16, 0usize), (1, live1), (2, 0)] {
        let zone = ct.zones().get(z).unwrap();
        assert_eq!(zone.count() as usize, left, "zone {z}'s count");
        assert_eq!(ct.zones().listed(zone) as usize, left, "zone {z}'s lists");
    }
    // Zone 2's limit counts only what is there: all 300 places are free again, and no
    // more than those (on either worker).
    let mut made = 0;
    for i in 0..400u16 {
        let w = if i % 2 == 0 { &mut w0 } else { &mut w1 };
        let r = w.process(&udp(A, B, 5000 + i, 53), 2, true, 66_000);
        made += r.conn.is_some() as usize;
    }
    assert_eq!(made, 300);
    assert_eq!(ct.zones().listed(ct.zones().get(2).unwrap()), 300);
}

#[test]
fn mark_and_label_stay_with_the_connection() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let r = w.process(&udp(A, B, 1, 2), 0, true, 0);
    assert!(w.set_mark_label(&r.conn.unwrap(), Some(170), Some(0xaa00000000)));
    w.process(&udp(B, A, 2, 1), 0, true, 1);
    assert_eq!(
        dump(&ct),
        ["udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=1,dport=2),reply=(src=192.0.2.2,dst=10.0.0.2,sport=2,dport=1),mark=170,labels=0xaa00000000"]
    );
}

#[test]
fn dump_with_stats_shows_seconds_left() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    w.process(&udp(A, B, 1, 2), 3, true, 1000);
    let line = ct.all_conns()[0].ovs_line(true, 11_000);
    assert!(line.ends_with(",zone=3,timeout=50"), "{line}");
}

#[test]
fn burst_results_equal_single_packet_results() {
    let s = tcp_session(A, B);
    let ct1 = tracker(1024);
    let mut w1 = ct1.worker(0);
    let single: Vec<CtState> = s.iter().map(|p| w1.process(p, 0, true, 0).state).collect();
    let ct2 = tracker(1024);
    let mut w2 = ct2.worker(0);
    let mut burst: Vec<PacketMeta> = s.iter().map(|p| PacketMeta::new(*p, 0, true)).collect();
    w2.process_burst(&mut burst, 0);
    let got: Vec<CtState> = burst.iter().map(|m| m.result.state).collect();
    assert_eq!(got, single);
}

#[test]
fn concurrent_workers_insert_lookup_and_expire_without_deadlock_or_lost_counts() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let ct = Conntrack::new(CtConfig {
        max_conns: 1 << 16,
        n_buckets: 256, // few buckets: every thread fights over the same locks
        workers: 4,
        tcp_seq_check: true,
        hash_seed: Some(11),
    });
    // One clock for everyone, 200 ms per packet: a flow is touched at most every 60 s of
    // clock, so its connection (UDP: 30-60 s) expires and is recreated many times.
    let clock = AtomicU64::new(0);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let (ct, clock, done) = (&ct, &clock, &done);
            s.spawn(move || {
                let mut w = ct.worker(t as usize);
                for _round in 0..60 {
                    for i in 0..300u16 {
                        // Shared tuples: every thread creates and looks up the same 300
                        // flows, each from its own direction half the time.
                        let p = if (i + t) % 2 == 0 {
                            udp(A, B, 1000 + i, 53)
                        } else {
                            udp(B, A, 53, 1000 + i)
                        };
                        let r = w.process(&p, 0, true, clock.fetch_add(200, Ordering::Relaxed));
                        assert!(r.state.has(CtState::TRK), "{r:?}");
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        let (ct, clock, done) = (&ct, &clock, &done);
        s.spawn(move || {
            let mut ctl = ct.control_handle();
            while done.load(Ordering::Relaxed) < 4 {
                ctl.sweep_expired(clock.load(Ordering::Relaxed), 16);
            }
        });
    });
    let now = clock.load(Ordering::Relaxed);
    ct.control_handle().sweep_all(now);
    // Every flow exists at most once, and every count agrees with the table.
    let conns = ct.all_conns();
    let n = conns.len();
    let flows: HashSet<u16> = conns
        .iter()
        .map(|c| c.orig.sport.max(c.orig.dport))
        .collect();
    assert_eq!(flows.len(), n, "duplicate connection for one flow");
    assert!(n <= 300);
    assert_eq!(ct.n_conns() as usize, n);
    let z = ct.zones().get(0).unwrap();
    assert_eq!(z.count() as usize, n);
    assert_eq!(ct.zones().listed(z) as usize, n);
    let entries: usize = (0..ct.table().n_buckets())
        .map(|b| ct.table().bucket_len(b))
        .sum();
    // Untranslated connections: one entry each (both keys in one bucket).
    assert_eq!(entries, n);
    let c = ct.counters();
    assert!(
        c.expired > 300,
        "the run should have expired connections: {c:?}"
    );
    assert_eq!(
        c.created - c.expired - c.reclaimed - c.removed,
        n as u64,
        "{c:?}"
    );
}

#[test]
fn owned_worker_runs_on_a_static_thread_and_returns_its_records() {
    let ct = std::sync::Arc::new(tracker(1024));
    let h = {
        let ct = ct.clone();
        std::thread::spawn(move || {
            let mut w = OwnedCtWorker::new(ct, 1);
            assert_eq!(w.process(&udp(A, B, 1, 2), 0, true, 0).state, st("trk,new"));
            assert_eq!(w.tracker().n_conns(), 1);
        })
    };
    h.join().unwrap();
    assert_eq!(ct.n_conns(), 1);
    assert_eq!(std::sync::Arc::strong_count(&ct), 1);
}

mod random_sequences {
    use super::*;
    use crate::conntrack::key::swapped_words;
    use proptest::prelude::*;

    /// One random step: a packet (by kind, endpoints, flags, numbers), a zone, a clock
    /// advance, and sometimes a sweep, a flush or a limit change.
    #[derive(Clone, Debug)]
    struct Step {
        kind: u8,
        a: u8,
        b: u8,
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        win: u16,
        len: u16,
        zone: u16,
        advance: u32,
        op: u8,
        nat: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            (
                0u8..8,
                0u8..4,
                0u8..4,
                0u16..6,
                0u16..6,
                any::<u8>(),
                any::<u32>(),
            ),
            (
                any::<u32>(),
                any::<u16>(),
                0u16..3000,
                0u16..3,
                0u32..40_000,
                any::<u8>(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (kind, a, b, sport, dport, flags, seq),
                    (ack, win, len, zone, advance, op, nat),
                )| Step {
                    kind,
                    a,
                    b,
                    sport,
                    dport,
                    flags,
                    seq,
                    ack,
                    win,
                    len,
                    zone,
                    advance,
                    op,
                    nat,
                },
            )
    }

    fn addr(i: u8, v6: bool) -> String {
        if v6 {
            format!("fd00::{}", i + 1)
        } else {
            format!("10.0.0.{}", i + 1)
        }
    }

    fn packet(s: &Step) -> ParsedPacket {
        let v6 = s.kind & 1 == 1;
        let (a, b) = (addr(s.a, v6), addr(s.b, v6));
        let (sp, dp) = (1000 + s.sport, 1000 + s.dport);
        match s.kind >> 1 {
            0 => tcp(
                &a,
                &b,
                sp,
                dp,
                s.flags,
                s.seq % 5000,
                s.ack % 5000,
                s.win,
                s.len,
            ),
            1 => udp(&a, &b, sp, dp),
            2 => {
                let ty = if v6 {
                    [128, 129, 1, 3][(s.flags % 4) as usize]
                } else {
                    [8, 0, 3, 11][(s.flags % 4) as usize]
                };
                if ty == 1 || ty == 3 || ty == 11 {
                    icmp_error(&a, &b, ty, 0, &udp(&b, &a, dp, sp))
                } else {
                    icmp_query(&a, &b, ty, s.sport)
                }
            }
            _ => other(&a, &b, 47),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        #[test]
        fn random_packet_sequences_keep_the_table_consistent(steps in proptest::collection::vec(step(), 1..300)) {
            let ct = Conntrack::new(CtConfig {
                max_conns: 64,
                n_buckets: 16,
                workers: 1,
                tcp_seq_check: true,
                hash_seed: Some(1),
            });
            let mut w = ct.worker(0);
            let mut ctl = ct.control_handle();
            let spec4 = SnatTo::new("192.0.2.1:2000-2003");
            let spec6 = SnatTo::new("[fd00::99]:2000-2003");
            let mut now = 0u64;
            for s in &steps {
                now += s.advance as u64;
                let p = packet(s);
                let r = if s.nat {
                    let spec = if s.kind & 1 == 1 { &spec6 } else { &spec4 };
                    w.process_nat(&p, s.zone, true, spec, now)
                } else {
                    w.process(&p, s.zone, true, now)
                };
                prop_assert!(r.state.has(CtState::TRK));
                match s.op % 16 {
                    0 => { ctl.sweep_expired(now, 4); }
                    1 => { if let Some(h) = r.conn { w.remove(&h); } }
                    2 => ct.zones().set_limit(s.zone, (s.op / 16) as u32),
                    3 => ct.zones().del_limit(s.zone),
                    4 => ct.set_tcp_seq_check(!ct.tcp_seq_check()),
                    _ => {}
                }
            }
            // Whatever happened, the counts agree with the table.
            let conns = ct.all_conns();
            prop_assert_eq!(ct.n_conns() as usize, conns.len());
            let entries: usize = (0..ct.table().n_buckets()).map(|b| ct.table().bucket_len(b)).sum();
            // One entry for a connection whose reply key is its original reversed, two else.
            let want: usize = conns
                .iter()
                .map(|c| if swapped_words(&c.orig.to_words()) == c.reply.to_words() { 1 } else { 2 })
                .sum();
            prop_assert_eq!(entries, want);
            for z in 0..3u16 {
                let n = conns.iter().filter(|c| c.orig.zone == z).count();
                let zc = ct.zones().get(z).map(|zz| (zz.count() as usize, ct.zones().listed(zz) as usize)).unwrap_or((0, 0));
                prop_assert_eq!(zc, (n, n));
            }
            ctl.sweep_all(u64::MAX / 2);
            prop_assert_eq!(ct.n_conns(), 0);
        }
    }
}

#[test]
fn repeated_echo_request_before_a_reply_stays_new() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let req = icmp_query(A, B, 8, 7);
    assert_eq!(
        run(&mut w, &[req, req, icmp_query(B, A, 0, 7), req], 0, 0),
        ["trk,new", "trk,new", "trk,est,rpl", "trk,est"]
    );
}

#[test]
fn icmp_query_with_nonzero_code_is_invalid() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    for (a, b, ty) in [(A, B, 8u8), (A6, B6, 128)] {
        let mut p = icmp_query(a, b, ty, 7);
        if let crate::wire::parse::L4Summary::Icmp(i) = &mut p.l4 {
            i.code = 1;
        }
        assert_eq!(w.process(&p, 0, true, 0).state, st("trk,inv"));
    }
    assert_eq!(ct.n_conns(), 0);
}

#[test]
fn retransmitted_syn_stays_new_and_keeps_the_receiver_window_unset() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let syn = tcp(A, B, 2002, 80, SYN, 1000, 0, 65535, 0);
    let pkts = [
        syn,
        syn,
        tcp(B, A, 80, 2002, SYN | ACK, 0x9000_0000, 1001, 65535, 0),
        tcp(A, B, 2002, 80, ACK, 1001, 0x9000_0001, 65535, 0),
        // 1 GiB ahead: out of window.
        tcp(B, A, 80, 2002, ACK, 0xd000_0001, 1001, 65535, 10),
        tcp(B, A, 80, 2002, ACK, 0x9000_0001, 1001, 65535, 100),
    ];
    assert_eq!(
        run(&mut w, &pkts, 0, 0),
        [
            "trk,new",
            "trk,new",
            "trk,est,rpl",
            "trk,est",
            "trk,inv",
            "trk,est,rpl"
        ]
    );
}

#[test]
fn invalid_packets_of_nat_connections_keep_their_connection_and_flag() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let spec = SnatTo::new("192.0.2.1");
    let s = tcp_session(A, B);
    for p in &s[..3] {
        w.process_nat(p, 0, true, &spec, 0);
    }
    let r = w.process_nat(
        &tcp(A, B, 40000, 80, SYN | FIN, 1001, 0, 100, 0),
        0,
        true,
        &spec,
        1,
    );
    assert_eq!(r.state, st("trk,inv,snat"));
    assert!(r.conn.is_some());
    assert!(ct.nat_target(&r.conn.unwrap()).is_some());
}

#[test]
fn free_records_cached_by_another_worker_never_refuse_below_the_limit() {
    // Worker 1 creates and frees connections (its cache keeps the freed records); worker 0
    // must still be able to fill the table exactly up to the limit.
    let ct = Conntrack::new(CtConfig {
        max_conns: 1000,
        n_buckets: 0,
        workers: 2,
        tcp_seq_check: true,
        hash_seed: Some(5),
    });
    let mut w1 = ct.worker(1);
    for i in 0..60u16 {
        let r = w1.process(&udp(A, B, 1 + i, 9), 0, true, 0);
        assert!(w1.remove(&r.conn.unwrap()));
    }
    let mut w0 = ct.worker(0);
    for i in 0..1000u32 {
        let src = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        let r = w0.process(&udp(&src, B, 5000, 53), 0, true, 0);
        assert!(r.conn.is_some(), "connection {i}: {r:?}");
    }
    let r = w0.process(&udp("10.9.9.9", B, 5000, 53), 0, true, 0);
    assert_eq!(r.refused, Some(Refusal::MaxConns));
    assert_eq!(ct.n_conns(), 1000);
    assert_eq!(ct.counters().refused_table_full, 0);
}

#[test]
fn counts_from_several_workers_sum_right_and_limits_hold_exactly() {
    // Two workers and the control lcore create at once, alternating zone 3 (limit 600)
    // and zone 4 (no limit of its own), under a global limit of 1500; then the control lcore removes
    // some of what the workers made.
    let ct = Conntrack::new(CtConfig {
        max_conns: 1500,
        n_buckets: 0,
        workers: 2,
        tcp_seq_check: true,
        hash_seed: Some(9),
    });
    ct.zones().set_limit(3, 600);
    let made: Vec<Vec<(u16, Option<Refusal>)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|shard| {
                let ct = &ct;
                s.spawn(move || {
                    let mut w = ct.worker(shard);
                    (0..800u32)
                        .map(|i| {
                            let zone = 3 + (i % 2) as u16;
                            let src = format!("10.{shard}.{}.{}", i / 250, i % 250 + 1);
                            let r = w.process(&udp(&src, B, 5000, 53), zone, true, 0);
                            assert_eq!(r.conn.is_some(), r.refused.is_none(), "{r:?}");
                            (zone, r.refused)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let all: Vec<_> = made.concat();
    assert_eq!(all.len(), 2400);
    let ok = |z: u16| all.iter().filter(|(zz, r)| *zz == z && r.is_none()).count();
    let refused = |why| all.iter().filter(|(_, r)| *r == Some(why)).count();
    // 1200 tries per zone: zone 3 stops at its 600 (about when 1200 connections exist);
    // zone 4 goes on until the global limit.
    assert_eq!((ok(3), ok(4)), (600, 900));
    assert_eq!(refused(Refusal::ZoneLimit), 600);
    assert_eq!(refused(Refusal::MaxConns), 300);
    let conns = ct.all_conns();
    assert_eq!(conns.len(), 1500);
    assert_eq!(ct.n_conns(), 1500);
    assert_eq!(ct.counters().created, 1500);
    assert_eq!(ct.counters().refused_zone_limit, 600);
    assert_eq!(ct.counters().refused_max_conns, 300);
    let zone3 = ct.zones().get(3).unwrap();
    assert_eq!(zone3.count(), 600);
    assert_eq!(ct.zones().listed(zone3), 600);
    assert_eq!(ct.zones().get(4).unwrap().count(), 900);
    // The control lcore removes 100 of zone 3's: the counts follow, and exactly 100 more
    // fit (made by a worker that removed none of them).
    let mut ctl = ct.control_handle();
    for c in conns.iter().filter(|c| c.orig.zone == 3).take(100) {
        let gen = ct.table().conn(c.idx).gen();
        let hit = Hit {
            idx: c.idx,
            dir: DIR_ORIG,
            gen,
        };
        assert!(ctl.remove(&hit));
    }
    assert_eq!(ct.n_conns(), 1400);
    assert_eq!(zone3.count(), 500);
    let mut w0 = ct.worker(0);
    for i in 0..100u32 {
        let src = format!("10.9.{}.{}", i / 250, i % 250 + 1);
        assert!(w0
            .process(&udp(&src, B, 5000, 53), 3, true, 0)
            .conn
            .is_some());
    }
    let r = w0.process(&udp("10.9.9.9", B, 5000, 53), 4, true, 0);
    assert_eq!(r.refused, Some(Refusal::MaxConns));
    assert_eq!(
        w0.process(&udp("10.9.9.9", B, 5000, 53), 3, true, 0)
            .refused,
        Some(Refusal::ZoneLimit)
    );
    assert_eq!((ct.n_conns(), zone3.count()), (1500, 600));
}

/// The packets of a UDP or ICMP connection that leave its state as it is (answered
/// without the connection's lock, `L4Kind::steady`) still get their state's flags and
/// refresh the expiry with their state's timeout; the packets that move the state
/// (first repeat, first reply) still move it.
#[test]
fn steady_udp_and_icmp_packets_keep_their_state_and_refresh_the_expiry() {
    use super::timeouts::TimeoutAttr::*;
    let ct = tracker(1024);
    for (a, ms) in [
        (UdpFirst, 11_000),
        (UdpSingle, 22_000),
        (UdpMultiple, 33_000),
        (IcmpFirst, 44_000),
        (IcmpReply, 55_000),
    ] {
        ct.default_policy().set_ms(a, ms);
    }
    let mut w = ct.worker(0);
    let expiry = |ct: &Conntrack| ct.all_conns().first().map(|c| c.expiry);
    let (out, back) = (udp(A, B, 5000, 53), udp(B, A, 53, 5000));
    // (packet, time, flags, expiry after it)
    let udp_steps = [
        (&out, 0, "trk,new", 11_000),          // FIRST
        (&out, 1, "trk,new", 1 + 22_000),      // FIRST -> MULTIPLE (locked)
        (&out, 2, "trk,new", 2 + 22_000),      // MULTIPLE, steady
        (&back, 3, "trk,est,rpl", 3 + 33_000), // -> BIDIR (locked)
        (&out, 4, "trk,est", 4 + 33_000),      // steady
        (&back, 5, "trk,est,rpl", 5 + 33_000), // steady
    ];
    for (p, now, flags, exp) in udp_steps {
        assert_eq!(
            w.process(p, 0, true, now).state.to_string(),
            flags,
            "t={now}"
        );
        assert_eq!(expiry(&ct), Some(exp), "t={now}");
    }
    let ct = tracker(1024);
    ct.default_policy().set_ms(IcmpFirst, 44_000);
    ct.default_policy().set_ms(IcmpReply, 55_000);
    let mut w = ct.worker(0);
    let (req, rep) = (icmp_query(A, B, 8, 7), icmp_query(B, A, 0, 7));
    let icmp_steps = [
        (&req, 0, "trk,new", 44_000),
        (&req, 1, "trk,new", 1 + 44_000),     // FIRST, steady
        (&rep, 2, "trk,est,rpl", 2 + 55_000), // -> REPLY (locked)
        (&req, 3, "trk,est", 3 + 55_000),     // steady
        (&rep, 4, "trk,est,rpl", 4 + 55_000), // steady
    ];
    for (p, now, flags, exp) in icmp_steps {
        assert_eq!(
            w.process(p, 0, true, now).state.to_string(),
            flags,
            "t={now}"
        );
        assert_eq!(expiry(&ct), Some(exp), "t={now}");
    }
    assert_eq!(ct.all_conns().len(), 1);
}

/// Hooks that write down what the tracker tells them, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl super::ConnHooks for Recorder {
    fn created(&self, orig: &ConnKey, _reply: &ConnKey, nat: u8, _now: u64) {
        self.note(format!("created {} {nat}", orig.sport));
    }
    fn removed(&self, orig: &ConnKey, _reply: &ConnKey, nat: u8) {
        self.note(format!("removed {} {nat}", orig.sport));
    }
    fn prefetch_removed(&self, orig: &ConnKey, _reply: &ConnKey, nat: u8, stage: u8) {
        self.note(format!("prefetch{stage} {} {nat}", orig.sport));
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Recorder {
    fn note(&self, s: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(s);
        }
    }
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

#[test]
fn the_sweep_has_the_hooks_fetch_a_batchs_nat_state_in_two_stages_before_removing_it() {
    let ct = tracker(1024);
    let rec = std::sync::Arc::new(Recorder::default());
    assert!(ct.set_hooks(rec.clone()).is_ok());
    let mut w = ct.worker(0);
    let spec = SnatTo::new("192.0.2.1");
    for port in [1000u16, 1001, 1002] {
        assert!(w
            .process_nat(&udp(A, B, port, 53), 0, true, &spec, 0)
            .conn
            .is_some());
    }
    // Not translated: nothing of it to fetch, but still told of its removal.
    assert!(w.process(&udp(A, B, 2000, 53), 0, true, 0).conn.is_some());
    assert_eq!(rec.take().len(), 4);
    let rep = ct.control_handle().sweep_all(1_000_000);
    assert_eq!(rep.removed, 4);
    let notes = rec.take();
    // Every NATed connection's stage 0, then every stage 1, then the removals, per batch
    // (one batch here, in bucket order).
    let kind = |s: &String| s.split(' ').next().unwrap_or("").to_string();
    let kinds: Vec<String> = notes.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "prefetch0",
            "prefetch0",
            "prefetch0",
            "prefetch1",
            "prefetch1",
            "prefetch1",
            "removed",
            "removed",
            "removed",
            "removed"
        ],
        "{notes:?}"
    );
    let snat = CtState::SNAT;
    let ports = |k: &str| {
        let mut p: Vec<String> = notes
            .iter()
            .filter(|s| s.starts_with(k))
            .map(|s| s[k.len() + 1..].to_string())
            .collect();
        p.sort();
        p
    };
    let natted: Vec<String> = [1000, 1001, 1002]
        .iter()
        .map(|p| format!("{p} {snat}"))
        .collect();
    assert_eq!(ports("prefetch0"), natted);
    assert_eq!(ports("prefetch1"), natted);
    let mut all = natted.clone();
    all.push("2000 0".into());
    all.sort();
    assert_eq!(ports("removed"), all);
}
