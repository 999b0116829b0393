//! Two real trackers synced through endpoints over a lossy in-memory link: the events of
//! one become connections learned by the other, which then carries their traffic; the end
//! of a bracketed stream removes what the peer no longer has, and only that. Two
//! active/active instances with SNAT port blocks of one pool address (each with the NAT
//! mapping table, as the gateway has it) never share a tuple and translate each other's
//! replies to the right inside host.

use super::endpoint::{PeerState, SyncEndpoint, SyncParams, SyncTable};
use super::record::SyncRecord;
use super::tracker_table::{record_of, record_of_event, LearnedStreams, TrackerTable};
use crate::conntrack::events::{CtEvent, Subscription};
use crate::conntrack::key::ConnKey;
use crate::conntrack::testpkt::{tcp, udp};
use crate::conntrack::{Conntrack, CtConfig, OwnedCtWorker};
use crate::nat::mapping::{Endpoint, Mapped, MappingHooks, Mappings};
use crate::nat::{apply, NatSpec};
use crate::wire::parse::tcp_flags::{ACK, PSH, SYN};
use crate::wire::parse::{parse_frame, L4Summary};
use crate::wire::testframe::{Frame, L4};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
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
    /// B's events, when B's connections are synced too (active/active).
    sub_b: Option<Subscription>,
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
            sub_b: None,
            now: 1,
            rng: 0x2545_f491_4f6c_dd1d,
            loss,
        }
    }

    /// Both active: B's events are synced to A too.
    fn active_active(prm: SyncParams, loss: u64) -> Pair {
        let mut p = Pair::new(prm, loss);
        p.sub_b = Some(p.b.ct.events().subscribe(100_000));
        p
    }

    /// One 10 ms tick: A's (and B's) events become records, both endpoints run, the link
    /// loses some.
    fn tick(&mut self) {
        self.now += 10;
        let now = self.now;
        for (side, sub) in [
            (&mut self.a, Some(&self.sub)),
            (&mut self.b, self.sub_b.as_ref()),
        ] {
            let Some(sub) = sub else { continue };
            side.ct.events().pump();
            let mut evs: Vec<CtEvent> = Vec::new();
            sub.drain(&mut evs);
            for e in &evs {
                if let Some(r) = record_of_event(&side.ct, e, now) {
                    side.ep.record(r);
                }
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

/// An instance's SNAT: `spec` through its mapping table, as the gateway translates TCP
/// and UDP.
struct Snat {
    spec: NatSpec,
    maps: Arc<Mappings>,
}

impl Snat {
    /// The pool `pool` on `ct`, whose connection hooks keep the mapping table.
    fn on(ct: &Conntrack, pool: &str) -> Snat {
        let maps = Arc::new(Mappings::new(10_000));
        assert!(ct.set_hooks(Arc::new(MappingHooks(maps.clone()))).is_ok());
        Snat {
            spec: NatSpec::snat(pool.parse().unwrap()),
            maps,
        }
    }

    /// Tracks and translates `frame` (creating a connection when it is new) as the
    /// gateway does; returns the frame as it leaves and the connection's reply key.
    fn pass(&self, w: &mut OwnedCtWorker, frame: &[u8], now: u64) -> (Vec<u8>, Option<ConnKey>) {
        let p = parse_frame(frame).unwrap();
        let nat = Mapped {
            spec: &self.spec,
            maps: &self.maps,
            now,
        };
        let r = w.process_nat(&p, 0, true, &nat, now);
        let mut out = frame.to_vec();
        apply(&mut out, &p, &r, w.tracker()).unwrap();
        let reply = r
            .conn
            .and_then(|h| w.tracker().snapshot(h.idx, h.gen))
            .map(|s| s.reply);
        (out, reply)
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A frame from `src`:`sport` to `dst`:`dport`: a TCP SYN (`tcp`) or a UDP datagram.
fn frame(tcp: bool, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Vec<u8> {
    let l4 = if tcp {
        L4::tcp(sport, dport, 1000, 0, SYN, b"")
    } else {
        L4::udp(sport, dport, b"q")
    };
    Frame::ip(src, dst, l4).build()
}

/// Destination address and port of a frame.
fn dst_of(f: &[u8]) -> (IpAddr, u16) {
    let p = parse_frame(f).unwrap();
    let port = match p.l4 {
        L4Summary::Tcp(t) => t.dport,
        L4Summary::Udp { dport, .. } => dport,
        _ => 0,
    };
    (ConnKey::from_packet(&p, 0).dst_ip(), port)
}

#[test]
fn active_active_port_blocks_of_one_address_never_share_a_tuple_and_each_translates_the_others_replies(
) {
    const POOL: &str = "203.0.113.1";
    let prm = SyncParams {
        rto_ms: 30,
        ..SyncParams::default()
    };
    let mut pair = Pair::active_active(prm, 20);
    let na = Snat::on(&pair.a.ct, &format!("{POOL}:1024-32767"));
    let nb = Snat::on(&pair.b.ct, &format!("{POOL}:32768-65535"));
    let (s1, s2, s3) = (ip("198.51.100.9"), ip("198.51.100.10"), ip("198.51.100.77"));
    // 200 inside endpoints (half their ports in A's block, half in B's), TCP and UDP.
    // The first 100 open a connection through each instance (ECMP spreads by ports: one
    // endpoint's flows to two servers can take both), to s1 through A and to s2 through
    // B, before either has heard of the other's; the last 100 only through A.
    let inside = |i: u16| {
        let h = ip(&format!("10.1.{}.{}", i / 100, i % 100 + 1));
        (
            h,
            if i.is_multiple_of(2) {
                20_000 + i
            } else {
                50_000 + i
            },
        )
    };
    let mut opened = Vec::new(); // (instance, tcp, inside host, inside port, server)
    for i in 0..200u16 {
        let (h, p) = inside(i);
        for tcp in [true, false] {
            opened.push((0, tcp, h, p, s1));
            if i < 100 {
                opened.push((1, tcp, h, p, s2));
            }
        }
    }
    let mut outside_port = Vec::new();
    for &(at, tcp, h, p, s) in &opened {
        let (w, n) = if at == 0 {
            (&mut pair.a.w, &na)
        } else {
            (&mut pair.b.w, &nb)
        };
        let (out, reply) = n.pass(w, &frame(tcp, h, p, s, 80), 1);
        let reply = reply.expect("a new connection");
        assert_eq!(reply.dst_ip(), ip(POOL));
        assert_eq!(
            ConnKey::from_packet(&parse_frame(&out).unwrap(), 0).src_ip(),
            ip(POOL)
        );
        outside_port.push(reply.dport);
    }
    let total = opened.len() as u32;
    pair.settle(|p| p.a.ct.n_conns() == total && p.b.ct.n_conns() == total);
    let (a, b, now) = (pair.a.ct.clone(), pair.b.ct.clone(), pair.now);
    assert_eq!((a.n_conns(), b.n_conns()), (total, total));
    assert_eq!(lines(&a), lines(&b), "both tables hold every connection");
    // Each handed out ports of its own block only, and no two connections share a
    // translated tuple.
    let own = |ct: &Conntrack| {
        ct.all_conns()
            .into_iter()
            .filter(|s| s.origin == 0)
            .map(|s| s.reply.dport)
            .collect::<Vec<_>>()
    };
    let (pa, pb) = (own(&a), own(&b));
    assert_eq!((pa.len(), pb.len()), (400, 200));
    assert!(pa.iter().all(|p| (1024..=32767).contains(p)), "{pa:?}");
    assert!(pb.iter().all(|p| *p >= 32768), "{pb:?}");
    let tuples: HashSet<_> = a.all_conns().iter().map(|s| s.reply.to_words()).collect();
    assert_eq!(tuples.len() as u32, total);
    // Every reply reaches its inside host through either instance: the outside router
    // routes the shared address by address only.
    let mut wrong = Vec::new();
    for (&(_, tcp, h, p, s), &port) in opened.iter().zip(&outside_port) {
        for (w, n) in [(&mut pair.a.w, &na), (&mut pair.b.w, &nb)] {
            let mut f = Frame::ip(s, ip(POOL), L4::udp(80, port, b"r")).build();
            if tcp {
                f = Frame::ip(s, ip(POOL), L4::tcp(80, port, 5000, 1001, SYN | ACK, b"")).build();
            }
            let (out, _) = n.pass(w, &f, now);
            if dst_of(&out) != (h, p) {
                wrong.push((tcp, h, p, port, dst_of(&out)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}: {:?}",
        wrong.len(),
        2 * total,
        &wrong[..wrong.len().min(5)]
    );
    // A learned binding is B's mapping of an inside endpoint that had none here: its new
    // connection reuses it, and the outside endpoint is that inside endpoint's.
    for i in [100u16, 101, 150, 199] {
        let (h, p) = inside(i);
        let learned = outside_port[opened
            .iter()
            .position(|o| o.2 == h && o.3 == p && !o.1)
            .unwrap()];
        let (out, reply) = nb.pass(&mut pair.b.w, &frame(false, h, p, s3, 53), now);
        assert_eq!(reply.unwrap().dport, learned, "inside port {p}");
        let (_, back) = nb.pass(
            &mut pair.b.w,
            &Frame::ip(s3, ip(POOL), L4::udp(53, learned, b"r")).build(),
            now,
        );
        assert!(back.is_some());
        assert_ne!(dst_of(&out), (h, p));
        let outside = Endpoint {
            zone: 0,
            proto: 17,
            family: 4,
            addr: ConnKey::from_packet(&parse_frame(&out).unwrap(), 0).src,
            port: learned,
        };
        assert_eq!(nb.maps.lookup_out(&outside, now).unwrap().inside.port, p);
    }
    // One that has its own mapping here keeps it.
    let (h, p) = inside(0);
    let (_, reply) = nb.pass(&mut pair.b.w, &frame(false, h, p, s3, 53), now);
    assert!(reply.unwrap().dport >= 32768);
}

#[test]
fn standby_keeps_the_connections_it_forwards_when_the_restarted_active_one_answers_its_resync_empty(
) {
    let prm = SyncParams {
        rto_ms: 30,
        ..SyncParams::default()
    };
    let mut p = Pair::new(prm.clone(), 10);
    traffic(&mut p.a.w, 0, 50, 1);
    p.settle(|p| p.b.ct.n_conns() == 100);
    // Failover: B forwards a packet of 30 of A's TCP connections and 30 UDP flows (a
    // reply each); the other 40 stay idle. A stops.
    let now = p.now;
    for i in 0..30u16 {
        let src = format!("10.0.0.{}", i + 1);
        let seg = tcp("192.0.2.2", &src, 80, 40000 + i, ACK, 5001, 1001, 65535, 0);
        let reply = udp("198.51.100.9", &src, 53, 5000 + i);
        for f in [seg, reply] {
            let r = p.b.w.process(&f, 0, true, now);
            assert_eq!(r.state.to_string(), "trk,est,rpl");
        }
    }
    let carried_by_b = |ct: &Conntrack| {
        let mut v: Vec<String> = ct
            .all_conns()
            .iter()
            .filter(|s| (40000..40030).contains(&s.orig.sport) || s.orig.sport < 5030)
            .map(|s| s.ovs_line(false, 0))
            .collect();
        v.sort();
        v
    };
    let carried = carried_by_b(&p.b.ct);
    assert_eq!(carried.len(), 60);
    // B asks A for its table (a resync request outstanding while A is down); A restarts
    // empty (a later boot) and answers it with its empty table.
    p.b.ep.request_resync();
    p.a = Side::new(1, &prm);
    p.a.ep = SyncEndpoint::new(10, &[addr(2)], None, prm.clone());
    p.sub = p.a.ct.events().subscribe(100_000);
    p.loss = 0;
    let received = p.b.ep.status(p.now)[0].counters.bulk_received;
    p.settle(|p| p.b.ep.status(p.now)[0].counters.bulk_received > received);
    // B removed the 40 it only held for A and kept every one it forwards, as learned from
    // A; A got them from B's answer to its own resync (the link is clean from here on, so
    // A's empty answer to B comes before it learned them).
    assert_eq!(lines(&p.b.ct), carried);
    assert_eq!(p.b.streams.removed(0), 40);
    let b = p.b.ct.all_conns();
    assert!(b.iter().all(|s| s.origin == 1 && s.forwarded));
    let a = p.a.ct.all_conns();
    assert!(a.len() >= 60 && a.iter().all(|s| s.origin == 1));
    // They carry on at B: no new connection.
    let now = p.now;
    let r =
        p.b.w
            .process(&udp("198.51.100.9", "10.0.0.3", 53, 5002), 0, true, now);
    assert_eq!(r.state.to_string(), "trk,est,rpl");
    assert_eq!(p.b.ct.counters().created, 0);
    // B's refresh sends them back to A as B's: A's copy of the flow gets the remaining
    // time that reply gave it on B.
    let expiry = |ct: &Conntrack| {
        ct.all_conns()
            .iter()
            .find(|s| s.orig.sport == 5002)
            .map(|s| s.expiry)
    };
    let on_b = expiry(&p.b.ct).unwrap();
    assert!(expiry(&p.a.ct).unwrap() < on_b);
    p.b.ep.set_refresh_ms(1_000);
    for _ in 0..150 {
        p.tick();
    }
    assert_eq!(expiry(&p.a.ct), Some(on_b));
}

#[test]
fn a_connection_whose_replies_cross_the_other_active_instance_stays_established_on_both() {
    // Port blocks of one address routed to A: B's connection (client 10.0.0.7) sends
    // through B, its replies come back through A, which knows it by sync.
    let prm = SyncParams {
        rto_ms: 30,
        refresh_ms: 1_000,
        ..SyncParams::default()
    };
    let mut p = Pair::active_active(prm, 0);
    let (c, s) = ("10.0.0.7", "192.0.2.2");
    let now = p.now;
    p.b.w
        .process(&tcp(c, s, 40000, 80, SYN, 1000, 0, 65535, 0), 0, true, now);
    p.settle(|p| p.a.ct.n_conns() == 1);
    // The handshake and one request/response, each end's segments at its instance,
    // faster than a sync round trip (as on a real link).
    let now = p.now;
    let seg = |src, dst, sp, dp, fl, seq, ack, len| tcp(src, dst, sp, dp, fl, seq, ack, 65535, len);
    let at_a = |p: &mut Pair, f: crate::wire::parse::ParsedPacket| {
        let r = p.a.w.process(&f, 0, true, now);
        assert!(r.state.to_string().contains("est"), "A: {}", r.state);
    };
    let at_b = |p: &mut Pair, f: crate::wire::parse::ParsedPacket| {
        let r = p.b.w.process(&f, 0, true, now);
        assert!(!r.state.to_string().contains("inv"), "B: {}", r.state);
    };
    at_a(&mut p, seg(s, c, 80, 40000, SYN | ACK, 5000, 1001, 0));
    at_b(&mut p, seg(c, s, 40000, 80, ACK, 1001, 5001, 0));
    at_b(&mut p, seg(c, s, 40000, 80, ACK | PSH, 1001, 5001, 100));
    at_a(&mut p, seg(s, c, 80, 40000, ACK | PSH, 5001, 1101, 200));
    at_b(&mut p, seg(c, s, 40000, 80, ACK, 1101, 5201, 0));
    // Idle for 40 s (past the opening timeout), through refreshes, then a bracketed
    // stream each way (a resync) and its removal walk.
    for _ in 0..4_000 {
        p.tick();
    }
    p.a.ep.request_resync();
    p.b.ep.request_resync();
    p.settle(|_| true);
    for _ in 0..100 {
        p.tick();
    }
    let now = p.now;
    for (name, ct, origin) in [("A", &p.a.ct, 1), ("B", &p.b.ct, 0)] {
        let live: Vec<_> = ct
            .all_conns()
            .into_iter()
            .filter(|x| x.expiry > now)
            .collect();
        assert_eq!(live.len(), 1, "{name} lost the connection");
        let x = &live[0];
        assert_eq!(x.origin, origin, "{name}: origin");
        assert!(
            x.expiry - now > 3_600_000,
            "{name}: {} ms left, {}",
            x.expiry - now,
            x.ovs_line(false, now)
        );
    }
}
