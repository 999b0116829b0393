//! Two (or three) endpoints over an in-memory link that loses a share of the datagrams:
//! their tables converge, a restarted instance gets the whole table back, and hostile
//! datagrams change nothing.

use super::auth::SyncKey;
use super::codec::{DropReason, Kind, Message, F_BULK_END, F_WALK, MAX_RECORDS};
use super::endpoint::{PeerState, SyncEndpoint, SyncParams, SyncTable};
use super::record::{SyncOp, SyncRecord, RECORD_LEN};
use crate::conntrack::conn::{L4State, TcpPeer, TcpState};
use crate::conntrack::key::{ConnKey, KEY_WORDS};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// A table of records keyed by an insertion id, so a walk by id sees every entry that
/// lives through it exactly once.
#[derive(Default)]
struct MemTable {
    by_id: BTreeMap<u64, (SyncRecord, Option<usize>, u64)>,
    ids: HashMap<[u64; KEY_WORDS], u64>,
    next_id: u64,
    /// Per peer: the generation of the bulk stream being received.
    bulk_gen: HashMap<usize, u64>,
    gen: u64,
}

impl MemTable {
    fn put(&mut self, rec: SyncRecord, origin: Option<usize>) {
        let k = rec.orig.to_words();
        let touched = origin
            .and_then(|p| self.bulk_gen.get(&p).copied())
            .unwrap_or(0);
        match rec.op {
            SyncOp::Delete => {
                if let Some(id) = self.ids.remove(&k) {
                    self.by_id.remove(&id);
                }
            }
            SyncOp::Upsert => {
                let id = *self.ids.entry(k).or_insert_with(|| {
                    self.next_id += 1;
                    self.next_id
                });
                self.by_id.insert(id, (rec, origin, touched));
            }
        }
    }

    /// The connections, ordered by original key (origin and bookkeeping left out).
    fn conns(&self) -> Vec<SyncRecord> {
        let mut v: Vec<_> = self.by_id.values().map(|e| e.0).collect();
        v.sort_by_key(|r| r.orig.to_words());
        v
    }
}

impl SyncTable for MemTable {
    fn apply(&mut self, peer: usize, rec: &SyncRecord, walked: bool) -> bool {
        let local = self
            .ids
            .get(&rec.orig.to_words())
            .and_then(|id| self.by_id.get(id))
            .is_some_and(|e| e.1.is_none());
        if !(walked && local) {
            self.put(*rec, Some(peer));
        }
        true
    }
    fn bulk_begin(&mut self, peer: usize) {
        self.gen += 1;
        self.bulk_gen.insert(peer, self.gen);
        // Entries the stream refreshes get the new generation.
    }
    fn bulk_end(&mut self, peer: usize) {
        if let Some(g) = self.bulk_gen.remove(&peer) {
            let stale: Vec<u64> = self
                .by_id
                .iter()
                .filter(|(_, e)| e.1 == Some(peer) && e.2 < g)
                .map(|(&id, _)| id)
                .collect();
            for id in stale {
                if let Some((r, ..)) = self.by_id.remove(&id) {
                    self.ids.remove(&r.orig.to_words());
                }
            }
        }
    }
    fn walk(
        &mut self,
        skip_from: Option<usize>,
        cursor: u64,
        max: usize,
        out: &mut Vec<SyncRecord>,
    ) -> Option<u64> {
        // Up to `max` entries, plus two more now and then: a walk may overshoot.
        let extra = if cursor.is_multiple_of(3) { 2 } else { 0 };
        let mut last = cursor;
        for (&id, e) in self.by_id.range(cursor + 1..).take(max + extra) {
            if skip_from.is_none() || e.1 != skip_from {
                out.push(e.0);
            }
            last = id;
        }
        (self.by_id.range(last + 1..).next().is_some()).then_some(last)
    }
}

/// A deterministic xorshift generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 3780))
}

fn conn(i: u32, state: TcpState, tattr: u8) -> SyncRecord {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[10, 1, (i >> 8) as u8, i as u8]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[203, 0, 113, 9]);
    let orig = ConnKey {
        src,
        dst,
        sport: 20_000 + (i % 40_000) as u16,
        dport: 443,
        zone: 0,
        proto: 6,
        family: 4,
    };
    let mut reply = orig.reversed();
    reply.dst[..4].copy_from_slice(&[198, 51, 100, 1]);
    reply.dport = 1024 + (i % 60_000) as u16;
    let mut l4 = L4State::default();
    l4.peer[0] = TcpPeer {
        seqlo: i.wrapping_mul(2_654_435_761),
        seqhi: i,
        max_win: 29_200,
        wscale: 7,
        state,
    };
    l4.peer[1].state = state;
    SyncRecord {
        op: SyncOp::Upsert,
        orig,
        reply,
        nat: 0x40,
        tattr,
        timeout_ms: 1000 * i,
        mark: i,
        label: 0,
        l4,
    }
}

/// An instance: endpoint plus table.
struct Node {
    addr: SocketAddr,
    ep: SyncEndpoint,
    table: MemTable,
}

impl Node {
    fn new(me: u8, peers: &[u8], boot: u64, key: Option<SyncKey>, prm: SyncParams) -> Node {
        let peers: Vec<_> = peers.iter().map(|&p| addr(p)).collect();
        Node {
            addr: addr(me),
            ep: SyncEndpoint::new(boot, &peers, key, prm),
            table: MemTable::default(),
        }
    }

    /// A local change: into the table and to the peers.
    fn change(&mut self, rec: SyncRecord) {
        self.table.put(rec, None);
        self.ep.record(rec);
    }
}

/// Runs `ticks` ticks of 10 ms on `nodes` over a link that loses `loss` percent of the
/// datagrams (none while `down`); returns the number of datagrams sent.
fn run(nodes: &mut [Node], clock: &mut u64, ticks: usize, loss: u64, rng: &mut Rng) -> usize {
    let mut sent = 0;
    for _ in 0..ticks {
        *clock += 10;
        let mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        for n in nodes.iter_mut() {
            let from = n.addr;
            n.ep.poll(*clock, &mut n.table, &mut |to, b| {
                wire.push((from, to, b.to_vec()))
            });
        }
        sent += wire.len();
        for (from, to, b) in wire {
            if rng.chance(loss) {
                continue;
            }
            if let Some(n) = nodes.iter_mut().find(|n| n.addr == to) {
                n.ep.receive(from, &b, *clock, &mut n.table);
            }
        }
    }
    sent
}

/// Runs until every endpoint is idle and every peer connected, at most `max` ticks.
fn settle(nodes: &mut [Node], clock: &mut u64, loss: u64, rng: &mut Rng, max: usize) {
    for _ in 0..max {
        run(nodes, clock, 1, loss, rng);
        let now = *clock;
        if nodes.iter().all(|n| {
            n.ep.idle()
                && n.ep
                    .status(now)
                    .iter()
                    .all(|s| s.state == PeerState::Connected)
        }) {
            return;
        }
    }
    panic!("the endpoints did not settle in {max} ticks");
}

fn prm() -> SyncParams {
    SyncParams {
        window: 32,
        rto_ms: 50,
        ..SyncParams::default()
    }
}

#[test]
fn lossy_link_tables_converge_with_creates_updates_and_deletes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut clock = 0;
    let key = SyncKey::new(b"a shared key of the pair").ok();
    let mut nodes = [
        Node::new(1, &[2], 1_000, key.clone(), prm()),
        Node::new(2, &[1], 2_000, key, prm()),
    ];
    settle(&mut nodes, &mut clock, 30, &mut rng, 2_000);
    for i in 0..3_000 {
        nodes[0].change(conn(i, TcpState::SynSent, 0));
        if i % 3 == 0 {
            nodes[0].change(conn(i, TcpState::Established, 2));
        }
        if i % 7 == 0 {
            nodes[0].change(SyncRecord::delete(
                conn(i, TcpState::Closed, 0).orig,
                conn(i, TcpState::Closed, 0).reply,
            ));
        }
        if i % 100 == 0 {
            run(&mut nodes, &mut clock, 1, 30, &mut rng);
        }
    }
    settle(&mut nodes, &mut clock, 30, &mut rng, 20_000);
    let a = nodes[0].table.conns();
    assert_eq!(a.len(), 3_000 - 3_000 / 7 - 1);
    assert_eq!(nodes[1].table.conns().len(), a.len());
    assert!(nodes[1].table.conns() == a);
    let s = nodes[0].ep.status(clock)[0];
    assert!(s.counters.retransmitted > 0, "{s:?}");
    assert_eq!(s.lag_ms, 0);
    assert_eq!(s.queued, 0);
    assert!(nodes[1].ep.status(clock)[0].counters.out_of_order > 0);
}

#[test]
fn active_active_pair_each_learns_the_others_connections() {
    let mut rng = Rng(77);
    let mut clock = 0;
    let mut nodes = [
        Node::new(1, &[2], 10, None, prm()),
        Node::new(2, &[1], 20, None, prm()),
    ];
    for i in 0..500 {
        nodes[0].change(conn(i, TcpState::Established, 2));
        nodes[1].change(conn(10_000 + i, TcpState::Established, 2));
    }
    settle(&mut nodes, &mut clock, 20, &mut rng, 20_000);
    assert_eq!(nodes[0].table.conns().len(), 1_000);
    assert!(nodes[0].table.conns() == nodes[1].table.conns());
}

#[test]
fn restarted_standby_gets_the_whole_table_by_bulk_resync() {
    let mut rng = Rng(5);
    let mut clock = 0;
    let mut nodes = [
        Node::new(1, &[2], 100, None, prm()),
        Node::new(2, &[1], 200, None, prm()),
    ];
    for i in 0..2_000 {
        nodes[0].change(conn(i, TcpState::Established, 2));
    }
    settle(&mut nodes, &mut clock, 25, &mut rng, 20_000);
    assert_eq!(nodes[1].table.conns().len(), 2_000);
    // B restarts: a new boot, an empty table. Changes keep coming on A meanwhile.
    nodes[1] = Node::new(2, &[1], 300, None, prm());
    for i in 2_000..2_100 {
        nodes[0].change(conn(i, TcpState::SynSent, 0));
    }
    settle(&mut nodes, &mut clock, 25, &mut rng, 20_000);
    assert_eq!(nodes[1].table.conns().len(), 2_100);
    assert!(nodes[1].table.conns() == nodes[0].table.conns());
    assert!(nodes[0].ep.status(clock)[0].counters.bulk_sent >= 2);
    assert!(nodes[1].ep.status(clock)[0].counters.bulk_received >= 1);
}

#[test]
fn restarted_active_gets_its_connections_back_from_the_standby() {
    let mut rng = Rng(11);
    let mut clock = 0;
    let mut nodes = [
        Node::new(1, &[2], 100, None, prm()),
        Node::new(2, &[1], 200, None, prm()),
    ];
    for i in 0..1_000 {
        nodes[0].change(conn(i, TcpState::Established, 2));
    }
    settle(&mut nodes, &mut clock, 25, &mut rng, 20_000);
    let before = nodes[0].table.conns();
    nodes[0] = Node::new(1, &[2], 400, None, prm());
    assert!(nodes[0].table.conns().is_empty());
    settle(&mut nodes, &mut clock, 25, &mut rng, 20_000);
    assert_eq!(nodes[0].table.conns().len(), before.len());
    assert_eq!(nodes[1].table.conns().len(), before.len());
    assert!(nodes[0].table.conns() == before);
    assert_eq!(nodes[1].table.conns(), before);
}

#[test]
fn queue_overflow_is_repaired_by_a_bulk_stream_that_also_removes_deleted_connections() {
    let mut rng = Rng(3);
    let mut clock = 0;
    let small = SyncParams {
        pending_max: 50,
        ..prm()
    };
    let mut nodes = [
        Node::new(1, &[2], 1, None, small.clone()),
        Node::new(2, &[1], 2, None, small),
    ];
    for i in 0..200 {
        nodes[0].change(conn(i, TcpState::Established, 2));
        if i % 40 == 0 {
            run(&mut nodes, &mut clock, 5, 0, &mut rng);
        }
    }
    settle(&mut nodes, &mut clock, 0, &mut rng, 5_000);
    assert_eq!(nodes[1].table.conns().len(), 200);
    // A burst far over the queue, with deletes of connections B already has.
    for i in 0..100 {
        let c = conn(i, TcpState::Closed, 0);
        nodes[0].change(SyncRecord::delete(c.orig, c.reply));
    }
    for i in 1_000..1_500 {
        nodes[0].change(conn(i, TcpState::SynSent, 0));
    }
    settle(&mut nodes, &mut clock, 10, &mut rng, 20_000);
    assert_eq!(nodes[0].ep.status(clock)[0].counters.overflows, 1);
    assert_eq!(nodes[1].table.conns().len(), 600);
    assert!(nodes[1].table.conns() == nodes[0].table.conns());
}

#[test]
fn lost_peer_is_reported_and_probed_not_flooded() {
    let mut rng = Rng(9);
    let mut clock = 0;
    let mut nodes = [
        Node::new(1, &[2], 1, None, prm()),
        Node::new(2, &[1], 2, None, prm()),
    ];
    settle(&mut nodes, &mut clock, 0, &mut rng, 1_000);
    for i in 0..300 {
        nodes[0].change(conn(i, TcpState::Established, 2));
    }
    // B is gone: only A runs, and nothing reaches B.
    let mut a = std::mem::replace(&mut nodes[0], Node::new(9, &[], 1, None, prm()));
    let mut sent = 0;
    for _ in 0..1_000 {
        clock += 10;
        a.ep.poll(clock, &mut a.table, &mut |_, _| sent += 1);
    }
    let s = a.ep.status(clock)[0];
    assert_eq!(s.state, PeerState::Lost);
    assert!(s.lag_ms >= 9_000, "{s:?}");
    assert_eq!(s.queued, 300);
    // Ten seconds: the window once, then retransmissions backing off from 50 ms to 2 s
    // (five full windows before the peer is lost, a single probe after), keepalives and
    // resync requests.
    assert!(
        sent < 32 * 6 + 4 + 20 + 10 + 20,
        "{sent} datagrams to a lost peer"
    );
}

#[test]
fn hostile_datagrams_are_dropped_and_counted_never_installed() {
    let key = SyncKey::new(b"0123456789abcdef").unwrap();
    let other = SyncKey::new(b"fedcba9876543210").unwrap();
    let mut b = Node::new(2, &[1], 5, Some(key.clone()), prm());
    let data = |recs: Vec<SyncRecord>| Message {
        kind: Kind::Data,
        flags: 0,
        boot: 7,
        seq: 1,
        ack_boot: 0,
        ack_seq: 0,
        nonce: 0,
        base: 1,
        records: recs,
    };
    let mut buf = Vec::new();
    // From a peer that is not configured, even with the right key.
    data(vec![conn(1, TcpState::Established, 2)]).encode(Some(&key), &mut buf);
    b.ep.receive(addr(3), &buf, 1, &mut b.table);
    assert_eq!(b.ep.dropped(DropReason::UnknownPeer), 1);
    // With the wrong key, and without one.
    data(vec![conn(1, TcpState::Established, 2)]).encode(Some(&other), &mut buf);
    b.ep.receive(addr(1), &buf, 1, &mut b.table);
    data(vec![conn(1, TcpState::Established, 2)]).encode(None, &mut buf);
    b.ep.receive(addr(1), &buf, 1, &mut b.table);
    assert_eq!(b.ep.dropped(DropReason::Unauthenticated), 2);
    // A valid message with one byte changed after signing.
    data(vec![conn(1, TcpState::Established, 2)]).encode(Some(&key), &mut buf);
    let mut bad = buf.clone();
    bad[60] ^= 1;
    b.ep.receive(addr(1), &bad, 1, &mut b.table);
    assert_eq!(b.ep.dropped(DropReason::Unauthenticated), 3);
    // Truncated, and a count larger than the datagram.
    b.ep.receive(addr(1), &buf[..40], 1, &mut b.table);
    let mut long = buf.clone();
    long[7] = 2;
    b.ep.receive(addr(1), &long, 1, &mut b.table);
    assert_eq!(b.ep.dropped(DropReason::Malformed), 2);
    assert!(b.table.conns().is_empty());
    // The genuine one is installed.
    b.ep.receive(addr(1), &buf, 1, &mut b.table);
    assert_eq!(b.table.conns(), vec![conn(1, TcpState::Established, 2)]);
    // A replay from an older boot of the peer is stale.
    let mut old = data(vec![conn(2, TcpState::Established, 2)]);
    old.boot = 6;
    old.encode(Some(&key), &mut buf);
    b.ep.receive(addr(1), &buf, 1, &mut b.table);
    assert_eq!(b.ep.dropped(DropReason::Stale), 1);
    assert_eq!(b.table.conns().len(), 1);
}

#[test]
fn message_round_trips_with_a_full_batch_and_a_mac() {
    let key = SyncKey::new(b"0123456789abcdef").unwrap();
    let m = Message {
        kind: Kind::Data,
        flags: F_BULK_END | F_WALK,
        boot: u64::MAX,
        seq: 42,
        ack_boot: 3,
        ack_seq: 41,
        nonce: 9,
        base: 40,
        records: (0..MAX_RECORDS as u32)
            .map(|i| conn(i, TcpState::Established, 2))
            .collect(),
    };
    let mut buf = Vec::new();
    m.encode(Some(&key), &mut buf);
    assert_eq!(buf.len(), super::codec::MAX_MESSAGE);
    assert!(buf.len() <= 1_400);
    assert_eq!(Message::decode(&buf, Some(&key)), Ok(m.clone()));
    m.encode(None, &mut buf);
    assert_eq!(buf.len(), 56 + MAX_RECORDS * RECORD_LEN);
    assert_eq!(Message::decode(&buf, None), Ok(m));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Arbitrary bytes never panic the decoder, and a keyed decoder accepts nothing
    /// unsigned.
    #[test]
    fn decoder_survives_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..1_500)) {
        let _ = Message::decode(&b, None);
        let key = SyncKey::new(b"0123456789abcdef").unwrap();
        prop_assert!(Message::decode(&b, Some(&key)).is_err());
    }

    /// A valid message with arbitrary bytes flipped: decoded or dropped, never a panic;
    /// with a key, any change is refused.
    #[test]
    fn decoder_survives_mutated_messages(
        flips in proptest::collection::vec((0usize..1_400, any::<u8>()), 1..8),
        n in 0usize..=MAX_RECORDS,
    ) {
        let key = SyncKey::new(b"0123456789abcdef").unwrap();
        let m = Message {
            kind: Kind::Data, flags: 0, boot: 1, seq: 1, ack_boot: 0, ack_seq: 0, nonce: 0, base: 1,
            records: (0..n as u32).map(|i| conn(i, TcpState::Established, 2)).collect(),
        };
        for k in [None, Some(&key)] {
            let mut buf = Vec::new();
            m.encode(k, &mut buf);
            let orig = buf.clone();
            for &(i, x) in &flips {
                let l = buf.len();
                buf[i % l] ^= x;
            }
            let r = Message::decode(&buf, k);
            if k.is_some() && buf != orig {
                prop_assert!(r.is_err());
            }
            if let Ok(d) = r {
                prop_assert!(d.records.len() <= MAX_RECORDS);
            }
        }
    }
}

#[test]
fn periodic_refresh_sends_only_what_the_peer_did_not_teach() {
    let mut rng = Rng(21);
    let mut clock = 0;
    let refresh = SyncParams {
        refresh_ms: 1_000,
        ..prm()
    };
    let mut nodes = [
        Node::new(1, &[2], 1, None, refresh.clone()),
        Node::new(2, &[1], 2, None, refresh),
    ];
    for i in 0..50 {
        nodes[0].change(conn(i, TcpState::Established, 2));
        nodes[1].change(conn(1_000 + i, TcpState::Established, 2));
    }
    settle(&mut nodes, &mut clock, 0, &mut rng, 5_000);
    let sent = |n: &Node, clock| {
        let c = n.ep.status(clock)[0].counters;
        (c.conns_sent, c.bulk_sent)
    };
    let before = (sent(&nodes[0], clock), sent(&nodes[1], clock));
    // A timeout extended on A by traffic (no event) reaches B with the next refresh.
    let mut c = conn(7, TcpState::Established, 2);
    c.timeout_ms = 999_999;
    nodes[0].table.put(c, None);
    run(&mut nodes, &mut clock, 250, 0, &mut rng);
    // Each refresh carries the sender's own 50 connections, never the peer's 50.
    let after = (sent(&nodes[0], clock), sent(&nodes[1], clock));
    for (b, a) in [(before.0, after.0), (before.1, after.1)] {
        let (conns, refreshes) = (a.0 - b.0, a.1 - b.1);
        assert!(refreshes >= 2, "{refreshes}");
        assert_eq!(conns, 50 * refreshes);
    }
    assert!(nodes[1].table.conns().contains(&c));
    assert!(nodes[0].table.conns() == nodes[1].table.conns());
}
