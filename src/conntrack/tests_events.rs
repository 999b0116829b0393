//! The tracker's event stream: what a listener receives for real connections — creation,
//! TCP state changes, the first reply, becoming assured, and each way a connection is
//! destroyed — against what Linux's `conntrack -E` printed for the same connections, and
//! what it costs when no one listens or a ring is full.

use super::events::{CtEvent, DestroyReason, EventKind};
use super::testpkt::*;
use super::*;
use crate::wire::parse::tcp_flags::{ACK, FIN, SYN};
use std::sync::Arc;

const A: &str = "10.0.0.2";
const B: &str = "192.0.2.2";

fn tracker() -> Arc<Conntrack> {
    Arc::new(Conntrack::new(CtConfig {
        max_conns: 10_000,
        n_buckets: 0,
        workers: 2,
        tcp_seq_check: true,
        hash_seed: Some(7),
    }))
}

fn kinds(evs: &[CtEvent]) -> Vec<(EventKind, DestroyReason)> {
    evs.iter().map(|e| (e.kind, e.reason)).collect()
}

#[test]
fn no_event_is_written_while_no_one_listens() {
    let ct = tracker();
    let mut w = ct.worker(0);
    w.process(&udp(A, B, 4000, 53), 0, true, 0);
    assert!(
        ct.events().ring(0).is_none(),
        "rings exist only once someone listens"
    );
    let sub = ct.events().subscribe(16);
    let mut got = Vec::new();
    sub.drain(&mut got);
    assert!(got.is_empty());
}

#[test]
fn a_udp_flow_gives_new_update_on_its_reply_and_on_being_assured_then_destroy_expired() {
    let ct = tracker();
    let sub = ct.events().subscribe(16);
    let mut w = ct.worker(1);
    w.process(&udp(A, B, 4000, 53), 3, true, 1000);
    w.process(&udp(A, B, 4000, 53), 3, true, 1000);
    w.process(&udp(B, A, 53, 4000), 3, true, 1001);
    w.process(&udp(B, A, 53, 4000), 3, true, 1002);
    w.process(&udp(A, B, 4000, 53), 3, true, 1003);
    let mut ctl = ct.control_handle();
    assert_eq!(ctl.sweep_all(10_000_000).removed, 1);
    let mut got = Vec::new();
    sub.drain(&mut got);
    assert_eq!(
        kinds(&got),
        vec![
            (EventKind::New, DestroyReason::None),
            (EventKind::Update, DestroyReason::None),
            (EventKind::Update, DestroyReason::None),
            (EventKind::Destroy, DestroyReason::Expired)
        ]
    );
    let (new, replied, assured, gone) = (got[0], got[1], got[2], got[3]);
    assert!(replied.seen_reply() && !replied.assured());
    assert!(assured.seen_reply() && assured.assured());
    assert!(got.iter().all(|e| e.id == new.id));
    assert_eq!(
        new.id, gone.id,
        "the id is stable for the connection's life"
    );
    assert_eq!(new.orig.sport, 4000);
    assert_eq!(new.zone(), 3);
    assert_eq!(new.reply, new.orig.reversed());
    assert!(!new.seen_reply() && !new.assured());
    assert!(gone.seen_reply() && gone.assured());
    assert_eq!(new.timeout_ms, ct.timeout_ms(None, TimeoutAttr::UdpFirst));
    assert!(new.ts_us > 1_600_000_000_000_000 && gone.ts_us >= new.ts_us);
    assert!(ct.events().ring(2).is_some_and(|r| r.is_empty()));
}

#[test]
fn a_tcp_session_updates_on_established_and_closing_and_closes() {
    let ct = tracker();
    let sub = ct.events().subscribe(64);
    let mut w = ct.worker(0);
    let pkts = [
        tcp(A, B, 40000, 80, SYN, 1000, 0, 65535, 0),
        tcp(B, A, 80, 40000, SYN | ACK, 5000, 1001, 65535, 0),
        tcp(A, B, 40000, 80, ACK, 1001, 5001, 65535, 0),
        tcp(A, B, 40000, 80, ACK, 1001, 5001, 65535, 0),
        tcp(A, B, 40000, 80, ACK | FIN, 1001, 5001, 65535, 0),
        tcp(B, A, 80, 40000, ACK | FIN, 5001, 1002, 65535, 0),
        tcp(A, B, 40000, 80, ACK, 1002, 5002, 65535, 0),
    ];
    for p in &pkts {
        w.process(p, 0, true, 5);
    }
    ct.control_handle().sweep_all(u64::MAX / 2);
    let mut got = Vec::new();
    sub.drain(&mut got);
    let lines: Vec<String> = got
        .iter()
        .map(|e| format!("{:?} {:?} {:?}", e.kind, e.linux_tcp_state(), e.reason))
        .collect();
    assert_eq!(
        lines,
        vec![
            "New Some(\"SYN_SENT\") None",
            "Update Some(\"SYN_RECV\") None",
            "Update Some(\"ESTABLISHED\") None",
            "Update Some(\"FIN_WAIT\") None",
            "Update Some(\"LAST_ACK\") None",
            "Update Some(\"TIME_WAIT\") None",
            "Destroy Some(\"TIME_WAIT\") Closed",
        ]
    );
    assert!(got.iter().all(|e| e.id == got[0].id));
    let assured: Vec<bool> = got.iter().map(|e| e.assured()).collect();
    assert_eq!(
        assured,
        [false, false, true, true, true, true, true],
        "assured from ESTABLISHED on, through TIME_WAIT and the destroy"
    );
}

/// What Linux's `conntrack -E` printed for these connections through a masquerading
/// Linux gateway (tests/fixtures/linux_conntrack_e.sh records it).
const LINUX: &str = include_str!("../../tests/fixtures/linux_conntrack_e.txt");

#[test]
fn a_ping_a_fetch_and_a_udp_exchange_give_the_lines_linux_conntrack_e_gave() {
    let ct = tracker();
    for a in TimeoutAttr::ALL {
        ct.default_policy().set_ms(a, 2000);
    }
    let sub = ct.events().subscribe(64);
    let mut w = ct.worker(0);
    let now = 5;
    let pkts = [
        icmp_query(A, B, 8, 17397),
        icmp_query(B, A, 0, 17397),
        tcp(A, B, 40123, 8000, SYN, 1000, 0, 65535, 0),
        tcp(B, A, 8000, 40123, SYN | ACK, 5000, 1001, 65535, 0),
        tcp(A, B, 40123, 8000, ACK, 1001, 5001, 65535, 0),
        tcp(A, B, 40123, 8000, ACK, 1001, 5001, 65535, 100),
        tcp(B, A, 8000, 40123, ACK, 5001, 1101, 65535, 200),
        tcp(B, A, 8000, 40123, ACK | FIN, 5201, 1101, 65535, 0),
        tcp(A, B, 40123, 8000, ACK | FIN, 1101, 5202, 65535, 0),
        tcp(B, A, 8000, 40123, ACK, 5202, 1102, 65535, 0),
        udp(A, B, 4000, 7777),
        udp(B, A, 7777, 4000),
    ];
    for p in &pkts {
        assert!(w.process(p, 0, true, now).conn.is_some());
    }
    ct.control_handle().sweep_all(now + 10_000);
    let mut got = Vec::new();
    sub.drain(&mut got);
    // Linux's reply tuples are NATed to 192.0.2.1; here the reply goes to A itself.
    let linux = LINUX.replace(" dst=192.0.2.1 ", " dst=10.0.0.2 ");
    for p in ["icmp", "tcp", "udp"] {
        let want: Vec<&str> = linux.lines().filter(|l| l[10..].starts_with(p)).collect();
        let ours: Vec<String> = got
            .iter()
            .map(|e| e.conntrack_line())
            .filter(|l| l[10..].starts_with(p))
            .collect();
        assert_eq!(ours, want, "the {p} connection's events");
    }
}

#[test]
fn flush_and_reclaim_are_reported_with_their_reason() {
    let ct = tracker();
    let sub = ct.events().subscribe(64);
    let mut w = ct.worker(0);
    let r = w.process(&udp(A, B, 1, 53), 0, true, 0);
    assert!(w.remove(&r.conn.unwrap()));
    ct.zones().set_limit(9, 1);
    w.process(&udp(A, B, 2, 53), 9, true, 0);
    // The first has expired: the second insert at the zone's limit reclaims it.
    w.process(&udp(A, B, 3, 53), 9, true, 10_000_000);
    let mut got = Vec::new();
    sub.drain(&mut got);
    assert_eq!(
        kinds(&got),
        vec![
            (EventKind::New, DestroyReason::None),
            (EventKind::Destroy, DestroyReason::Flushed),
            (EventKind::New, DestroyReason::None),
            (EventKind::Destroy, DestroyReason::Reclaimed),
            (EventKind::New, DestroyReason::None),
        ]
    );
    assert_eq!(got[3].orig.sport, 2);
}

#[test]
fn a_full_ring_counts_events_lost_and_every_packet_is_still_tracked() {
    let ct = tracker();
    let sub = ct.events().subscribe(1_000_000);
    let mut w = ct.worker(0);
    let n = events::RING_SLOTS as u16 + 100;
    for i in 0..n {
        let r = w.process(&udp(A, B, 1000 + i, 53), 0, true, 0);
        assert!(r.conn.is_some(), "packet {i} was tracked");
    }
    assert_eq!(ct.counters().events_lost, 100);
    let mut got = Vec::new();
    sub.drain(&mut got);
    assert_eq!(got.len(), events::RING_SLOTS);
    assert_eq!(ct.n_conns(), n as u32);
}
