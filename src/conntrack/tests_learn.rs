//! Connections learned from a sync peer: installed through the normal insert path (limits,
//! reply tuples), updated and removed without events, expiring on their own timeout, and
//! a TCP stream that continues on the instance that learned it, far past the sequence
//! numbers it was learned with.

use super::learn::{LearnError, Learned, LearnedConn};
use super::testpkt::*;
use super::*;
use crate::wire::parse::tcp_flags::{ACK, PSH, RST, SYN};
use std::sync::Arc;

const A: &str = "10.0.0.2";
const B: &str = "192.0.2.2";

fn tracker() -> Arc<Conntrack> {
    Arc::new(Conntrack::new(CtConfig {
        max_conns: 1_000,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: true,
        hash_seed: Some(3),
    }))
}

/// A segment of the test connection A:40000 → B:80 from the client: `flags`, `seq`,
/// `ack`, `len` payload bytes, window 65535.
fn c2s(flags: u8, seq: u32, ack: u32, len: u16) -> crate::wire::parse::ParsedPacket {
    tcp(A, B, 40000, 80, flags, seq, ack, 65535, len)
}

/// A segment of the test connection from the server, B:80 → A:40000.
fn s2c(flags: u8, seq: u32, ack: u32, len: u16) -> crate::wire::parse::ParsedPacket {
    tcp(B, A, 80, 40000, flags, seq, ack, 65535, len)
}

fn learned(s: &ConnSnapshot, now: u64, origin: u8) -> LearnedConn {
    LearnedConn {
        orig: s.orig,
        reply: s.reply,
        nat: s.nat,
        attr: TimeoutAttr::ALL[s.timeout_attr as usize],
        timeout_ms: s.expiry.saturating_sub(now),
        mark: s.mark,
        label: s.label,
        l4: s.l4,
        origin,
        stream: 0,
    }
}

/// `p` (a TCP segment) with the window-scale option `ws` (as the parser gives it).
fn with_wscale(
    mut p: crate::wire::parse::ParsedPacket,
    ws: Option<u8>,
) -> crate::wire::parse::ParsedPacket {
    if let crate::wire::parse::L4Summary::Tcp(t) = &mut p.l4 {
        t.wscale = ws;
    }
    p
}

/// The SYN (client ISN 1000, window 64240, scale 7) and SYN+ACK (server ISN 5000, window
/// 65160, scale `server_ws`) of the test connection A:40000 → B:80.
fn scaled_syns(server_ws: u8) -> [crate::wire::parse::ParsedPacket; 2] {
    [
        with_wscale(tcp(A, B, 40000, 80, SYN, 1000, 0, 64240, 0), Some(7)),
        with_wscale(
            tcp(B, A, 80, 40000, SYN | ACK, 5000, 1001, 65160, 0),
            Some(server_ws),
        ),
    ]
}

fn states(w: &mut CtWorker, pkts: &[crate::wire::parse::ParsedPacket], now: u64) -> Vec<String> {
    pkts.iter()
        .map(|p| w.process(p, 0, true, now).state.to_string())
        .collect()
}

#[test]
fn learned_tcp_stream_continues_on_the_standby_far_past_the_synced_sequence_numbers() {
    let a = tracker();
    let mut wa = a.worker(0);
    let hs = [
        c2s(SYN, 1000, 0, 0),
        s2c(SYN | ACK, 5000, 1001, 0),
        c2s(ACK, 1001, 5001, 0),
    ];
    assert_eq!(
        states(&mut wa, &hs, 1),
        ["trk,new", "trk,est,rpl", "trk,est"]
    );
    let snap = a.all_conns()[0];
    // B learns it, then the stream moves there 50 MB later in both directions.
    let b = tracker();
    let mut wb = b.worker(0);
    assert!(matches!(
        wb.learn(&learned(&snap, 1, 1), 1, false),
        Ok(Learned::Installed(_))
    ));
    let later = [
        s2c(ACK | PSH, 5001 + 50_000_000, 1001 + 7_000, 1400),
        c2s(ACK, 1001 + 7_000, 5001 + 50_001_400, 0),
        s2c(ACK | PSH, 5001 + 50_001_400, 1001 + 7_000, 1400),
        // A retransmission of the first segment seen on B.
        s2c(ACK | PSH, 5001 + 50_000_000, 1001 + 7_000, 1400),
        c2s(ACK | PSH, 1001 + 7_000, 5001 + 50_002_800, 100),
    ];
    assert_eq!(
        states(&mut wb, &later, 2),
        [
            "trk,est,rpl",
            "trk,est",
            "trk,est,rpl",
            "trk,est,rpl",
            "trk,est"
        ]
    );
    // A segment far outside the now re-learned window is still refused.
    let wild = s2c(ACK | PSH, 5001 + 900_000_000, 1001 + 7_000, 10);
    assert_eq!(states(&mut wb, &[wild], 3), ["trk,inv"]);
    let s = b.all_conns()[0];
    assert_eq!(s.origin, 1);
    assert!(s
        .ovs_line(false, 0)
        .ends_with("protoinfo=(state=ESTABLISHED)"));
    assert_eq!(
        b.counters().created,
        0,
        "a learned connection is not created here"
    );
}

/// A learned connection whose stream continues on the standby with the client's ACKs
/// first (the inside route moved before the outside one), then the server's data, with
/// initial sequence numbers `isn_a` (client) and `isn_b` (server).
fn learned_stream_client_first(isn_a: u32, isn_b: u32) -> Vec<String> {
    let a = tracker();
    let mut wa = a.worker(0);
    let hs = [
        c2s(SYN, isn_a, 0, 0),
        s2c(SYN | ACK, isn_b, isn_a.wrapping_add(1), 0),
        c2s(ACK, isn_a.wrapping_add(1), isn_b.wrapping_add(1), 0),
    ];
    assert_eq!(
        states(&mut wa, &hs, 1),
        ["trk,new", "trk,est,rpl", "trk,est"]
    );
    let b = tracker();
    let mut wb = b.worker(0);
    wb.learn(&learned(&a.all_conns()[0], 1, 1), 1, false)
        .unwrap();
    let (ca, sb) = (isn_a.wrapping_add(84), isn_b.wrapping_add(4_000_001));
    let later = [
        // Two pure ACKs from the client before the server sends (zero window, or its
        // route not moved yet), then the server's data and the client's ACK of it.
        tcp(A, B, 40000, 80, ACK, ca, sb, 0, 0),
        c2s(ACK, ca, sb, 0),
        s2c(ACK | PSH, sb, ca, 1400),
        s2c(ACK | PSH, sb.wrapping_add(1400), ca, 1400),
        c2s(ACK, ca, sb.wrapping_add(2800), 0),
        s2c(ACK | PSH, sb.wrapping_add(2800), ca, 1400),
    ];
    states(&mut wb, &later, 2)
}

/// Sequence numbers anywhere in the 32-bit space, in particular past 2^31 (where they
/// compare "below" 0): a peer whose sequence numbers are not yet known is neither
/// checked against nor moved by the other end's acks before it sends.
#[test]
fn learned_tcp_stream_continues_whatever_the_initial_sequence_numbers_when_the_client_speaks_first()
{
    let valid = [
        "trk,est",
        "trk,est",
        "trk,est,rpl",
        "trk,est,rpl",
        "trk,est",
        "trk,est,rpl",
    ];
    for (isn_a, isn_b) in [
        (1_000, 5_000),
        (3_000_000_000, 5_000),
        (1_000, 3_000_000_000),
        (3_000_000_000, 4_000_000_000),
        (2_147_483_000, 4_294_960_000),
    ] {
        assert_eq!(
            learned_stream_client_first(isn_a, isn_b),
            valid,
            "client ISN {isn_a}, server ISN {isn_b}"
        );
    }
}

/// A connection learned while its handshake was under way (only the SYN seen) completes
/// on the standby, whatever the server's initial sequence number.
#[test]
fn learned_half_open_tcp_connection_completes_its_handshake_on_the_standby() {
    for (isn_a, isn_b) in [
        (1_000u32, 5_000u32),
        (1_000, 3_000_000_000),
        (3_000_000_000, 5_000),
        (3_000_000_000, 4_000_000_000),
    ] {
        let (a1, a101) = (isn_a.wrapping_add(1), isn_a.wrapping_add(101));
        let a = tracker();
        let mut wa = a.worker(0);
        let syn = c2s(SYN, isn_a, 0, 0);
        assert_eq!(states(&mut wa, &[syn], 1), ["trk,new"]);
        let b = tracker();
        let mut wb = b.worker(0);
        wb.learn(&learned(&a.all_conns()[0], 1, 1), 1, false)
            .unwrap();
        let rest = [
            s2c(SYN | ACK, isn_b, a1, 0),
            c2s(ACK, a1, isn_b.wrapping_add(1), 0),
            c2s(ACK | PSH, a1, isn_b.wrapping_add(1), 100),
            s2c(ACK | PSH, isn_b.wrapping_add(1), a101, 1400),
        ];
        assert_eq!(
            states(&mut wb, &rest, 2),
            ["trk,est,rpl", "trk,est", "trk,est", "trk,est,rpl"],
            "client ISN {isn_a}, server ISN {isn_b}"
        );
    }
}

#[test]
fn learned_connection_is_updated_in_place_and_unlearned_without_events() {
    let a = tracker();
    let mut wa = a.worker(0);
    wa.process(&udp(A, B, 4000, 53), 0, true, 10);
    let snap = a.all_conns()[0];
    let b = tracker();
    let sub = b.events().subscribe(64);
    let mut wb = b.worker(0);
    let mut l = learned(&snap, 10, 2);
    assert!(matches!(wb.learn(&l, 10, false), Ok(Learned::Installed(_))));
    l.mark = 77;
    l.timeout_ms = 120_000;
    assert!(matches!(wb.learn(&l, 20, false), Ok(Learned::Updated(_))));
    let s = b.all_conns();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].mark, s[0].expiry, s[0].origin), (77, 120_020, 2));
    assert!(wb.unlearn(&l.orig, 30));
    assert!(!wb.unlearn(&l.orig, 30));
    assert!(b.all_conns().is_empty());
    let mut evs = Vec::new();
    b.events().pump();
    sub.drain(&mut evs);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(b.n_conns(), 0);
}

#[test]
fn learned_connection_expires_on_the_timeout_it_came_with() {
    let b = tracker();
    let mut wb = b.worker(0);
    let a = tracker();
    a.worker(0).process(&udp(A, B, 4000, 53), 0, true, 0);
    let mut l = learned(&a.all_conns()[0], 0, 1);
    l.timeout_ms = 5_000;
    wb.learn(&l, 100, false).unwrap();
    let mut ctl = b.control_handle();
    ctl.sweep_expired(5_000, usize::MAX);
    assert_eq!(b.all_conns().len(), 1);
    ctl.sweep_expired(5_101, usize::MAX);
    assert!(b.all_conns().is_empty());
}

#[test]
fn learned_connections_count_against_the_zone_limit_and_hold_their_reply_tuple() {
    let b = tracker();
    b.zones().set_limit(0, 2);
    let mut wb = b.worker(0);
    let a = tracker();
    let mut wa = a.worker(0);
    for port in [4000, 4001, 4002] {
        wa.process(&udp(A, B, port, 53), 0, true, 0);
    }
    let mut snaps = a.all_conns();
    snaps.sort_by_key(|s| s.orig.sport);
    wb.learn(&learned(&snaps[0], 0, 1), 0, false).unwrap();
    wb.learn(&learned(&snaps[1], 0, 1), 0, false).unwrap();
    assert_eq!(
        wb.learn(&learned(&snaps[2], 0, 1), 0, false),
        Err(LearnError::Refused(Refusal::ZoneLimit))
    );
    // A learned connection whose reply tuple is taken by another one is refused.
    b.zones().set_limit(0, 10);
    let mut clash = learned(&snaps[2], 0, 1);
    clash.reply = snaps[0].reply;
    assert_eq!(
        wb.learn(&clash, 0, false),
        Err(LearnError::Refused(Refusal::TupleCollision))
    );
    // A packet from the reply side finds the learned connection.
    let r = wb.process(&udp(B, A, 53, 4000), 0, true, 1);
    assert_eq!(r.state.to_string(), "trk,est,rpl");
    assert_eq!(b.all_conns().len(), 2);
}

#[test]
fn a_walked_copy_never_replaces_a_connection_made_here() {
    let a = tracker();
    let mut wa = a.worker(0);
    wa.process(&udp(A, B, 4000, 53), 0, true, 0);
    let mine = a.all_conns()[0];
    let mut copy = learned(&mine, 0, 1);
    copy.mark = 99;
    assert!(matches!(
        wa.learn(&copy, 5, true),
        Ok(Learned::KeptLocal(_))
    ));
    assert_eq!(a.all_conns()[0], mine);
    // An event-borne update does replace its state (the peer's datapath changed it),
    // and it stays this instance's: its walks keep sending it, a stream's end keeps it.
    assert!(matches!(wa.learn(&copy, 5, false), Ok(Learned::Updated(_))));
    assert_eq!((a.all_conns()[0].mark, a.all_conns()[0].origin), (99, 0));
    assert_eq!(wa.unlearn_unrepeated(1, 77, 0..a.table().n_buckets()), 0);
    assert_eq!(a.n_conns(), 1);
}

#[test]
fn unlearn_unrepeated_removes_only_that_peers_connections_of_other_streams() {
    let a = tracker();
    let mut wa = a.worker(0);
    for port in 4000..4008 {
        wa.process(&udp(A, B, port, 53), 0, true, 0);
    }
    let mut snaps = a.all_conns();
    snaps.sort_by_key(|s| s.orig.sport);
    let b = tracker();
    b.zones().set_limit(0, 9);
    let mut wb = b.worker(0);
    // 4000-4002 from peer 1 in its stream 1, 4003-4004 in its stream 2, 4005-4006 from
    // peer 2 in stream 1; 4007 made here.
    for (s, origin, stream) in [(0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 1, 2), (4, 1, 2)]
        .into_iter()
        .chain([(5, 2, 1), (6, 2, 1)])
    {
        let mut l = learned(&snaps[s], 0, origin);
        l.stream = stream;
        wb.learn(&l, 0, false).unwrap();
    }
    wb.process(&udp(A, B, 4007, 53), 0, true, 0);
    let sub = b.events().subscribe(64);
    assert_eq!(b.n_conns(), 8);
    // Peer 1's stream 2 ended: its walk, in two halves of the table.
    let n = b.table().n_buckets();
    let removed = wb.unlearn_unrepeated(1, 2, 0..n / 2) + wb.unlearn_unrepeated(1, 2, n / 2..n);
    assert_eq!(removed, 3);
    assert_eq!(wb.unlearn_unrepeated(0, 2, 0..n), 0);
    let mut left: Vec<(u16, u8)> = b
        .all_conns()
        .iter()
        .map(|s| (s.orig.sport, s.origin))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [(4003, 1), (4004, 1), (4005, 2), (4006, 2), (4007, 0)]
    );
    assert_eq!(b.n_conns(), 5);
    // No events; their zone places and tuples are free again: a packet of a removed one
    // is a new connection here, and the zone takes four more.
    b.events().pump();
    let mut evs = Vec::new();
    sub.drain(&mut evs);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(
        wb.process(&udp(A, B, 4000, 53), 0, true, 1)
            .state
            .to_string(),
        "trk,new"
    );
    for port in 5000..5003 {
        assert_eq!(
            wb.process(&udp(A, B, port, 53), 0, true, 1)
                .state
                .to_string(),
            "trk,new"
        );
    }
    assert_eq!(b.n_conns(), 9);
}

#[test]
fn learned_connections_forwarded_here_survive_their_peers_stream_end_and_its_updates() {
    let a = tracker();
    let mut wa = a.worker(0);
    for port in 4000..4004 {
        wa.process(&udp(A, B, port, 53), 0, true, 0);
    }
    let mut snaps = a.all_conns();
    snaps.sort_by_key(|s| s.orig.sport);
    let b = tracker();
    let mut wb = b.worker(0);
    // 4000-4002 learned from peer 1 in its stream 1; 4003 made here.
    for s in &snaps[..3] {
        let mut l = learned(s, 0, 1);
        l.stream = 1;
        wb.learn(&l, 0, false).unwrap();
    }
    wb.process(&udp(A, B, 4003, 53), 0, true, 0);
    let forwarded = |ct: &Conntrack| {
        let mut v: Vec<(u16, u8, bool)> = ct
            .all_conns()
            .iter()
            .map(|s| (s.orig.sport, s.origin, s.forwarded))
            .collect();
        v.sort();
        v
    };
    assert!(forwarded(&b).iter().all(|&(_, _, f)| !f));
    // This instance forwards a reply of 4000; the peer then updates 4000 (its refresh) and
    // 4003 (its event: the connection made here stays this instance's).
    let r = wb.process(&udp(B, A, 53, 4000), 0, true, 1);
    assert_eq!(r.state.to_string(), "trk,est,rpl");
    for s in [&snaps[0], &snaps[3]] {
        let mut l = learned(s, 0, 1);
        l.stream = 1;
        assert!(matches!(wb.learn(&l, 2, false), Ok(Learned::Updated(_))));
    }
    assert_eq!(
        forwarded(&b),
        [
            (4000, 1, true),
            (4001, 1, false),
            (4002, 1, false),
            (4003, 0, false)
        ]
    );
    // The peer's stream 2 repeated none of them: only the two it alone had go.
    let n = b.table().n_buckets();
    assert_eq!(wb.unlearn_unrepeated(1, 2, 0..n), 2);
    assert_eq!(forwarded(&b), [(4000, 1, true), (4003, 0, false)]);
}

#[test]
fn half_views_of_one_tcp_connection_merge_into_an_established_one_and_a_reused_port_replaces_a_closed_one(
) {
    use super::conn::TcpState::{Closed, Established, SynSent, TimeWait};
    // B carries the client's segments only, A the server's (asymmetric routes).
    let (a, b) = (tracker(), tracker());
    let (mut wa, mut wb) = (a.worker(0), b.worker(0));
    wb.process(&c2s(SYN, 1000, 0, 0), 0, true, 1);
    wa.learn(&learned(&b.all_conns()[0], 1, 1), 1, false)
        .unwrap();
    wa.process(&s2c(SYN | ACK, 5000, 1001, 0), 0, true, 2);
    wb.process(&c2s(ACK, 1001, 5001, 0), 0, true, 2);
    let peers = |ct: &Conntrack| ct.all_conns()[0].l4.peer.map(|p| p.state);
    assert_eq!(
        (peers(&a), peers(&b)),
        ([Established, SynSent], [SynSent, Closed])
    );
    // A standby that carries neither end (its copy of B's connection came by sync) takes
    // A's view as it is: nothing here saw the client acknowledge the server.
    let c = tracker();
    let mut wc = c.worker(0);
    wc.learn(&learned(&b.all_conns()[0], 2, 1), 2, false)
        .unwrap();
    wc.learn(&learned(&a.all_conns()[0], 3, 1), 3, false)
        .unwrap();
    assert_eq!(peers(&c), [Established, SynSent]);
    // A's view reaches B (an event): both ends established, the established timeout,
    // and it stays B's.
    wb.learn(&learned(&a.all_conns()[0], 3, 1), 3, false)
        .unwrap();
    let s = b.all_conns()[0];
    assert_eq!((peers(&b), s.origin), ([Established, Established], 0));
    let est = b.timeout_ms(None, TimeoutAttr::TcpEstablished);
    assert_eq!(s.expiry, 3 + est);
    assert_eq!(
        s.timeout_attr & !super::conn::ASSURED,
        TimeoutAttr::TcpEstablished as u8
    );
    // B's merged view reaches A (a refresh): A's copy is established too.
    wa.learn(&learned(&s, 4, 1), 4, true).unwrap();
    assert_eq!(peers(&a), [Established, Established]);
    assert!(a.all_conns()[0].expiry >= 3 + est);
    // The client reuses the port after a reset: the new connection replaces the old one.
    wb.process(&c2s(ACK | RST, 1001, 5001, 0), 0, true, 5);
    assert_eq!(peers(&b), [TimeWait, TimeWait]);
    wa.learn(&learned(&b.all_conns()[0], 5, 1), 5, false)
        .unwrap();
    let c = tracker();
    c.worker(0).process(&c2s(SYN, 9000, 0, 0), 0, true, 6);
    wa.learn(&learned(&c.all_conns()[0], 6, 1), 6, false)
        .unwrap();
    assert_eq!(peers(&a), [SynSent, Closed]);
}

/// A learned stream whose first server segment on the standby is a retransmission of data
/// the client already has (the client's ACKs were lost with the active instance; 90
/// segments, 130 KB, went through it unseen here), with window scaling and a window of
/// 172 KB: the client's ACKs of everything it received run 128 KB ahead of what the
/// standby saw the server send (pf's fixed bound, 67 KB, refused them: a stalled download
/// in `gw_ha` with a 256 KiB receive buffer), and stay valid as the server catches up; an
/// ack beyond the client's window ahead is still refused.
#[test]
fn learned_stream_accepts_acks_of_data_sent_through_the_failed_instance_a_window_ahead() {
    let c2s_w = |flags: u8, seq: u32, ack: u32| tcp(A, B, 40000, 80, flags, seq, ack, 1349, 0);
    let s2c_d = |seq: u32| tcp(B, A, 80, 40000, ACK, seq, 1084, 64, 1448);
    let a = tracker();
    let mut wa = a.worker(0);
    let [syn, syn_ack] = scaled_syns(7);
    let hs = [syn, syn_ack, c2s_w(ACK, 1001, 5001)];
    assert_eq!(
        states(&mut wa, &hs, 1),
        ["trk,new", "trk,est,rpl", "trk,est"]
    );
    // The stream runs on A; B learns it.
    let mut s = 5001u32;
    let mut stream = Vec::new();
    for _ in 0..200 {
        stream.push(s2c_d(s));
        s += 1448;
        stream.push(c2s_w(ACK, 1084, s));
    }
    assert!(states(&mut wa, &stream, 1)
        .iter()
        .all(|st| !st.contains("inv")));
    let b = tracker();
    let mut wb = b.worker(0);
    wb.learn(&learned(&a.all_conns()[0], 1, 1), 1, false)
        .unwrap();
    let got = s + 90 * 1448;
    let later = [
        s2c_d(s),
        c2s_w(ACK, 1084, got),
        s2c_d(s + 1448),
        c2s_w(ACK, 1084, got),
        s2c_d(got),
        c2s_w(ACK, 1084, got + 1448),
    ];
    assert_eq!(
        states(&mut wb, &later, 2),
        [
            "trk,est,rpl",
            "trk,est",
            "trk,est,rpl",
            "trk,est",
            "trk,est,rpl",
            "trk,est"
        ]
    );
    // More than the client's window (1349 << 7) ahead of what the server sent: refused.
    let wild = c2s_w(ACK, 1084, got + 1448 + 1349 * 128 + 1);
    assert_eq!(states(&mut wb, &[wild], 3), ["trk,inv"]);
}

/// A learned stream whose traffic reaches the standby server side first, in the middle of
/// a burst: the record is the one of the handshake (the client's window then 502 << 7 =
/// 64 KB), the client's window has since grown to 1100 << 7 = 140 KB through the active
/// instance, and the server's burst against it runs 72 KB past the first segment the
/// standby sees, then the burst's first segment, lost with the active instance, comes
/// again 79 KB back. Bounded by the record's window, the last 5 segments and the
/// retransmission were refused (`gw_ha`: `invalid_tcp` 15 after a failover; the next
/// test replays its capture). Until the client is
/// seen the bound either way is the largest window its scale allows; its first ACK sets
/// the upper one to that ACK's window edge, past which a segment is refused again.
#[test]
fn learned_stream_takes_a_server_burst_against_a_window_grown_since_the_record_was_sent() {
    let c2s_w = |seq: u32, ack: u32, win: u16| tcp(A, B, 40000, 80, ACK, seq, ack, win, 0);
    let s2c_d = |seq: u32| tcp(B, A, 80, 40000, ACK, seq, 1084, 64, 1448);
    let a = tracker();
    let mut wa = a.worker(0);
    let [syn, syn_ack] = scaled_syns(10);
    let hs = [
        syn,
        syn_ack,
        c2s_w(1001, 5001, 502),
        tcp(A, B, 40000, 80, ACK | PSH, 1001, 5001, 502, 83),
    ];
    assert_eq!(
        states(&mut wa, &hs, 1),
        ["trk,new", "trk,est,rpl", "trk,est", "trk,est"]
    );
    // B learns the connection as it is after the handshake.
    let b = tracker();
    let mut wb = b.worker(0);
    wb.learn(&learned(&a.all_conns()[0], 1, 1), 1, false)
        .unwrap();
    // On A: 100 KB sent and acknowledged, the client's window now 1100 << 7.
    let mut s = 5001u32;
    let mut on_a = Vec::new();
    for _ in 0..7 {
        for _ in 0..10 {
            on_a.push(s2c_d(s));
            s += 1448;
        }
        on_a.push(c2s_w(1084, s, 1100));
    }
    assert!(states(&mut wa, &on_a, 2)
        .iter()
        .all(|st| !st.contains("inv")));
    // The routes move in the middle of the burst that ACK released: B sees its last 50
    // segments (72 KB, past the record's 64 KB window) before anything of the client.
    // Then the retransmission of the burst's first segment, lost with A: 79 KB back.
    let lost = s;
    s += 5 * 1448;
    let mut burst: Vec<_> = (0..50).map(|i| s2c_d(s + i * 1448)).collect();
    burst.push(s2c_d(lost));
    let st = states(&mut wb, &burst, 3);
    assert!(
        st.iter().all(|st| st == "trk,est,rpl"),
        "the server's burst on the standby: {st:?}"
    );
    // The client's first ACK on B: its window edge bounds the server again.
    let acked = s + 50 * 1448;
    let edge = acked + 200 * 128;
    assert_eq!(states(&mut wb, &[c2s_w(1084, acked, 200)], 4), ["trk,est"]);
    assert_eq!(
        states(&mut wb, &[s2c_d(edge - 1448), s2c_d(edge)], 5),
        ["trk,est,rpl", "trk,inv"]
    );
}

/// A real download (`tests/fixtures/failover_stream.txt`: a throttled client whose window
/// grows and shrinks with its reads, the server bursting into each opening) moved to the
/// standby at every third of its first 2,300 segments: learned from the record of the
/// handshake or from one made just before the move, with the traffic reaching the standby
/// as captured, client side first (the server's next 3 segments still through the active
/// instance) or server side first (the client's next 2). The standby refuses none of the
/// 300 segments after the move. (Bounded by the record's window, it refused 27,294
/// segments after 744 of these 4,596 moves.)
#[test]
fn a_captured_download_continues_on_the_standby_whichever_segment_the_failover_falls_on() {
    const STREAM: &str = include_str!("../../tests/fixtures/failover_stream.txt");
    let segs: Vec<crate::wire::parse::ParsedPacket> = STREAM
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<i64>().unwrap();
            let (flags, seq, ack) = (n(1) as u8, n(2) as u32, n(3) as u32);
            let (win, len, ws) = (n(4) as u16, n(5) as u16, n(6));
            let p = if f[0] == "c2s" {
                tcp(A, B, 40000, 80, flags, seq, ack, win, len)
            } else {
                tcp(B, A, 80, 40000, flags, seq, ack, win, len)
            };
            with_wscale(p, u8::try_from(ws).ok())
        })
        .collect();
    assert_eq!(segs.len(), 2600);
    let client = segs[0].src;
    let a = tracker();
    let mut wa = a.worker(0);
    let mut records = Vec::new();
    for p in &segs {
        let st = wa.process(p, 0, true, 1).state.to_string();
        assert!(!st.contains("inv"), "the active instance refused a segment");
        records.push(a.all_conns()[0]);
    }
    let (mut refused, mut moves, mut bad_moves) = (Vec::new(), 0, 0);
    for k in (4..2300).step_by(3) {
        for record in [&records[2], &records[k - 1]] {
            for (skip_c2s, skip) in [(false, 0), (false, 3), (true, 2)] {
                let b = tracker();
                let mut wb = b.worker(0);
                wb.learn(&learned(record, 1, 1), 1, false).unwrap();
                let (mut skipped, before) = (0, refused.len());
                for (i, p) in segs.iter().enumerate().skip(k).take(300) {
                    if (p.src == client) == skip_c2s && skipped < skip {
                        skipped += 1;
                        continue;
                    }
                    if wb.process(p, 0, true, 2).state.to_string().contains("inv") {
                        refused.push((k, skip_c2s, skip, i));
                    }
                }
                moves += 1;
                bad_moves += usize::from(refused.len() > before);
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} segments refused after {bad_moves} of {moves} moves, the first (move at, client \
         skipped, skipped, segment): {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
}
