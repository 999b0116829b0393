//! Two real trackers synced through endpoints over a lossy in-memory link: the events of
//! one become connections learned by the other, which then carries their traffic; the end
//! of a bracketed stream removes what the peer no longer has, and only that.

use super::endpoint::{PeerState, SyncEndpoint, SyncParams, SyncTable};
use super::record::SyncRecord;
use super::tracker_table::{record_of, record_of_event, LearnedStreams, TrackerTable};
use crate::conntrack::events::{CtEvent, Subscription};
use crate::conntrack::testpkt::{tcp, udp};
use crate::conntrack::{Conntrack, CtConfig, OwnedCtWorker};
use crate::wire::parse::tcp_flags::{ACK, PSH, SYN};
use std::net::SocketAddr;
use std::sync::Arc;

fn tracker(seed: u64) -> Arc<Conntrack> {
    Arc::new(Conntrack::new(CtConfig {
        max_conns: 10_000,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: true,
        hash_seed: Some(seed),
    }))
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 3780))
}

fn lines(ct: &Conntrack) -> Vec<String> {
    let mut v: Vec<String> = ct
        .all_conns()
        .iter()
        .map(|s| s.ovs_line(false, 0))
        .collect();
    v.sort();
    v
}

/// Instance `i`: a tracker, its worker, its endpoint and its peer's stream numbers.
struct Side {
    ct: Arc<Conntrack>,
    w: OwnedCtWorker,
    ep: SyncEndpoint,
    streams: LearnedStreams,
}

impl Side {
    fn new(i: u8, prm: &SyncParams) -> Side {
        let ct = tracker(u64::from(i));
        Side {
            w: OwnedCtWorker::new(ct.clone(), 0),
            ct,
            ep: SyncEndpoint::new(u64::from(i), &[addr(3 - i)], None, prm.clone()),
            streams: LearnedStreams::default(),
        }
    }

    fn with_table<R>(
        &mut self,
        now: u64,
        f: impl FnOnce(&mut SyncEndpoint, &mut TrackerTable) -> R,
    ) -> R {
        let (ep, streams) = (&mut self.ep, &mut self.streams);
        self.w.with_worker(|worker| {
            streams.sweep(worker, 64);
            f(
                ep,
                &mut TrackerTable {
                    worker,
                    now,
                    streams,
                },
            )
        })
    }
}

/// A (the active one, whose events are synced) and B over a link losing `loss` percent.
struct Pair {
    a: Side,
    b: Side,
    sub: Subscription,
    now: u64,
    rng: u64,
    loss: u64,
}

impl Pair {
    fn new(prm: SyncParams, loss: u64) -> Pair {
        let a = Side::new(1, &prm);
        let sub = a.ct.events().subscribe(100_000);
        Pair {
            a,
            b: Side::new(2, &prm),
            sub,
            now: 1,
            rng: 0x2545_f491_4f6c_dd1d,
            loss,
        }
    }

    /// One 10 ms tick: A's events become records, both endpoints run, the link loses some.
    fn tick(&mut self) {
        self.now += 10;
        let now = self.now;
        self.a.ct.events().pump();
        let mut evs: Vec<CtEvent> = Vec::new();
        self.sub.drain(&mut evs);
        for e in &evs {
            if let Some(r) = record_of_event(&self.a.ct, e, now) {
                self.a.ep.record(r);
            }
        }
        let mut wire = Vec::new();
        self.a.with_table(now, |ep, t| {
            ep.poll(now, t, &mut |to, m| wire.push((addr(1), to, m.to_vec())))
        });
        self.b.with_table(now, |ep, t| {
            ep.poll(now, t, &mut |to, m| wire.push((addr(2), to, m.to_vec())))
        });
        for (from, to, m) in wire {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if self.rng % 100 < self.loss {
                continue;
            }
            let side = if to == addr(2) {
                &mut self.b
            } else {
                &mut self.a
            };
            side.with_table(now, |ep, t| ep.receive(from, &m, now, t));
        }
    }

    /// Ticks until both endpoints are idle and connected, no removal walk runs and
    /// `done` holds (at most 5,000 ticks).
    fn settle(&mut self, done: impl Fn(&Pair) -> bool) {
        for _ in 0..5_000 {
            self.tick();
            let now = self.now;
            if self.a.ep.idle()
                && self.b.ep.idle()
                && self.b.ep.status(now)[0].state == PeerState::Connected
                && !self.b.streams.sweeping()
                && done(self)
            {
                return;
            }
        }
        panic!("the pair did not settle");
    }
}

/// `n` TCP handshakes and `n` UDP flows from 10.0.x.y (`x.y` from `first`).
fn traffic(w: &mut OwnedCtWorker, first: u16, n: u16, now: u64) {
    for i in first..first + n {
        let src = format!("10.0.{}.{}", i / 200, i % 200 + 1);
        w.process(
            &tcp(&src, "192.0.2.2", 40000 + i, 80, SYN, 1000, 0, 65535, 0),
            0,
            true,
            now,
        );
        w.process(
            &tcp(
                "192.0.2.2",
                &src,
                80,
                40000 + i,
                SYN | ACK,
                5000,
                1001,
                65535,
                0,
            ),
            0,
            true,
            now,
        );
        w.process(
            &tcp(&src, "192.0.2.2", 40000 + i, 80, ACK, 1001, 5001, 65535, 0),
            0,
            true,
            now,
        );
        w.process(&udp(&src, "198.51.100.9", 5000 + i, 53), 0, true, now);
    }
}

#[test]
fn standby_tracker_learns_the_active_ones_connections_over_a_lossy_link_and_carries_them() {
    let prm = SyncParams {
        rto_ms: 30,
        ..SyncParams::default()
    };
    let mut p = Pair::new(prm, 20);
    // 300 TCP handshakes and 300 UDP flows on A.
    traffic(&mut p.a.w, 0, 300, 1);
    p.settle(|p| p.b.ct.n_conns() == 600);
    let (a, b, now) = (&p.a.ct, &p.b.ct, p.now);
    assert_eq!(b.n_conns(), 600);
    assert_eq!(lines(b), lines(a));
    assert!(b.all_conns().iter().all(|s| s.origin == 1));
    assert!(p.a.ep.status(now)[0].counters.retransmitted > 0);
    // The traffic moves to B: a TCP stream continues far ahead, UDP replies match.
    let later = tcp(
        "192.0.2.2",
        "10.0.0.7",
        80,
        40006,
        ACK | PSH,
        5001 + 9_000_000,
        1001,
        65535,
        1000,
    );
    assert_eq!(
        p.b.w.process(&later, 0, true, now).state.to_string(),
        "trk,est,rpl"
    );
    let reply = udp("198.51.100.9", "10.0.0.7", 53, 5006);
    assert_eq!(
        p.b.w.process(&reply, 0, true, now).state.to_string(),
        "trk,est,rpl"
    );
    assert_eq!(p.b.ct.counters().created, 0);
}

/// Removes `n` of A's connections as `flush-conntrack` does (a `[DESTROY]` event each).
fn flush_some(w: &mut OwnedCtWorker, n: usize, now: u64) {
    let snaps = w.tracker().all_conns();
    for s in snaps.iter().take(n) {
        let words = s.orig.to_words();
        let hash = w.tracker().table().hasher().hash_words(&words);
        let hit = w.tracker().table().lookup(&words, hash, now).unwrap();
        assert!(w.remove(&hit));
    }
}

#[test]
fn overflow_repair_removes_on_the_standby_what_the_active_one_flushed_and_keeps_its_own() {
    let prm = SyncParams {
        rto_ms: 30,
        pending_max: 50,
        ..SyncParams::default()
    };
    let mut p = Pair::new(prm, 20);
    traffic(&mut p.a.w, 0, 300, 1);
    p.settle(|p| p.b.ct.n_conns() == 600);
    // B's own connections (its events are not synced here: A never hears of them).
    traffic(&mut p.b.w, 1_000, 20, p.now);
    let overflows = p.a.ep.status(p.now)[0].counters.overflows;
    // 200 deletes at once: far over the queue, so they are lost and A repairs B with a
    // bracketed stream of its table.
    flush_some(&mut p.a.w, 200, p.now);
    assert_eq!(p.a.ct.n_conns(), 400);
    p.settle(|p| p.b.ct.n_conns() == 440);
    let now = p.now;
    assert_eq!(p.a.ep.status(now)[0].counters.overflows, overflows + 1);
    assert_eq!(p.b.streams.removed(0), 200);
    let b = p.b.ct.all_conns();
    assert_eq!(b.iter().filter(|s| s.origin == 0).count(), 40);
    let mut learned: Vec<String> = b
        .iter()
        .filter(|s| s.origin == 1)
        .map(|s| s.ovs_line(false, 0))
        .collect();
    learned.sort();
    assert_eq!(learned, lines(&p.a.ct));
    // A flushed connection is unknown on B: its next packet makes a new one there.
    let gone = p.a.w.tracker().all_conns();
    let flushed = (0..300u16)
        .find(|i| !gone.iter().any(|s| s.orig.sport == 5000 + i))
        .unwrap();
    let src = format!("10.0.{}.{}", flushed / 200, flushed % 200 + 1);
    let r =
        p.b.w
            .process(&udp(&src, "198.51.100.9", 5000 + flushed, 53), 0, true, now);
    assert_eq!(r.state.to_string(), "trk,new");
}

#[test]
fn records_after_a_streams_end_stay_and_a_new_stream_cancels_the_removal_walk() {
    let prm = SyncParams::default();
    let mut a = Side::new(1, &prm);
    let mut b = Side::new(2, &prm);
    traffic(&mut a.w, 0, 10, 1);
    let recs: Vec<SyncRecord> = a.ct.all_conns().iter().map(|s| record_of(s, 1)).collect();
    assert_eq!(recs.len(), 20);
    traffic(&mut b.w, 100, 2, 1);
    let n = b.ct.table().n_buckets();
    let t = |b: &mut Side, f: &mut dyn FnMut(&mut TrackerTable)| {
        let streams = &mut b.streams;
        b.w.with_worker(|worker| {
            f(&mut TrackerTable {
                worker,
                now: 2,
                streams,
            })
        })
    };
    let sweep = |b: &mut Side| {
        let streams = &mut b.streams;
        b.w.with_worker(|w| streams.sweep(w, n));
    };
    // All 20 learned from events, then a stream repeats 10; 5 more come after its end,
    // before the walk runs.
    t(&mut b, &mut |t| {
        for r in &recs {
            assert!(t.apply(0, r, false));
        }
        t.bulk_begin(0);
        for r in &recs[..10] {
            t.apply(0, r, true);
        }
        t.bulk_end(0);
        for r in &recs[10..15] {
            t.apply(0, r, false);
        }
    });
    assert!(b.streams.sweeping());
    sweep(&mut b);
    assert!(!b.streams.sweeping());
    assert_eq!(b.streams.removed(0), 5);
    assert_eq!(b.ct.n_conns(), 15 + 4);
    // A stream ends, and another begins before the walk ran: that walk is off (it would
    // remove everything of the peer); the second stream's end removes what it missed.
    t(&mut b, &mut |t| {
        t.bulk_begin(0);
        t.bulk_end(0);
        t.bulk_begin(0);
    });
    sweep(&mut b);
    assert_eq!(b.ct.n_conns(), 15 + 4);
    t(&mut b, &mut |t| {
        for r in &recs[..12] {
            t.apply(0, r, true);
        }
        t.bulk_end(0);
    });
    sweep(&mut b);
    assert_eq!(b.streams.removed(0), 8);
    assert_eq!(b.ct.n_conns(), 12 + 4);
    assert_eq!(b.ct.all_conns().iter().filter(|s| s.origin == 0).count(), 4);
}
