//! Two real trackers synced through endpoints over a lossy in-memory link: the events of
//! one become connections learned by the other, which then carries their traffic; two
//! active/active instances with SNAT port blocks of one pool address (each with the NAT
//! mapping table, as the gateway has it) never share a tuple and translate each other's
//! replies to the right inside host.

use super::endpoint::{PeerState, SyncEndpoint, SyncParams};
use super::tracker_table::{record_of_event, TrackerTable};
use crate::conntrack::events::{CtEvent, Subscription};
use crate::conntrack::key::ConnKey;
use crate::conntrack::testpkt::{tcp, udp};
use crate::conntrack::{Conntrack, CtConfig, CtWorker};
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

/// One instance: its tracker, its event subscription and its sync endpoint at
/// `addr(i)`, whose peer is `addr(peer)`.
struct Instance {
    ct: Arc<Conntrack>,
    events: Subscription,
    ep: SyncEndpoint,
    at: SocketAddr,
}

impl Instance {
    fn new(i: u8, peer: u8) -> Instance {
        let ct = tracker(u64::from(i));
        let prm = SyncParams {
            rto_ms: 30,
            ..SyncParams::default()
        };
        Instance {
            events: ct.events().subscribe(100_000),
            ct,
            ep: SyncEndpoint::new(u64::from(i), &[addr(peer)], None, prm),
            at: addr(i),
        }
    }

    /// Sends its new local events to the peer and runs its timers; what it sends is
    /// appended to `wire` as (from, to, datagram).
    fn poll(
        &mut self,
        w: &mut CtWorker,
        now: u64,
        wire: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    ) {
        self.ct.events().pump();
        let mut evs: Vec<CtEvent> = Vec::new();
        self.events.drain(&mut evs);
        for e in &evs {
            if let Some(r) = record_of_event(&self.ct, e, now) {
                self.ep.record(r);
            }
        }
        let from = self.at;
        let mut table = TrackerTable { worker: w, now };
        self.ep.poll(now, &mut table, &mut |to, m| {
            wire.push((from, to, m.to_vec()))
        });
    }
}

/// Runs the sync of `x` and `y` (through their workers) in 10 ms ticks from `now` over a
/// link that loses `loss_pct` % of the datagrams, until both are idle and connected and
/// `done()` holds, or 5,000 ticks have passed; returns the time reached.
fn run_sync<'c>(
    (x, wx): (&mut Instance, &mut CtWorker<'c>),
    (y, wy): (&mut Instance, &mut CtWorker<'c>),
    loss_pct: u64,
    mut now: u64,
    done: impl Fn() -> bool,
) -> u64 {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5_000 {
        now += 10;
        let mut wire = Vec::new();
        x.poll(wx, now, &mut wire);
        y.poll(wy, now, &mut wire);
        for (from, to, m) in wire {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng % 100 < loss_pct {
                continue; // lost
            }
            let (dst, w) = if to == x.at {
                (&mut *x, &mut *wx)
            } else {
                (&mut *y, &mut *wy)
            };
            dst.ep
                .receive(from, &m, now, &mut TrackerTable { worker: w, now });
        }
        let connected = |i: &Instance| i.ep.status(now)[0].state == PeerState::Connected;
        if x.ep.idle() && y.ep.idle() && connected(x) && connected(y) && done() {
            break;
        }
    }
    now
}

#[test]
fn standby_tracker_learns_the_active_ones_connections_over_a_lossy_link_and_carries_them() {
    let mut ia = Instance::new(1, 2);
    let mut ib = Instance::new(2, 1);
    let (a, b) = (ia.ct.clone(), ib.ct.clone());
    let mut wa = a.worker(0);
    let mut wb = b.worker(0);
    // 300 TCP handshakes and 300 UDP flows on A.
    for i in 0..300u16 {
        let src = format!("10.0.{}.{}", i / 200, i % 200 + 1);
        wa.process(
            &tcp(&src, "192.0.2.2", 40000 + i, 80, SYN, 1000, 0, 65535, 0),
            0,
            true,
            1,
        );
        wa.process(
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
            1,
        );
        wa.process(
            &tcp(&src, "192.0.2.2", 40000 + i, 80, ACK, 1001, 5001, 65535, 0),
            0,
            true,
            1,
        );
        wa.process(&udp(&src, "198.51.100.9", 5000 + i, 53), 0, true, 1);
    }
    let now = run_sync((&mut ia, &mut wa), (&mut ib, &mut wb), 20, 1, || {
        b.n_conns() == 600
    });
    assert_eq!(b.n_conns(), 600);
    assert_eq!(lines(&b), lines(&a));
    assert!(b.all_conns().iter().all(|s| s.origin == 1));
    assert!(ia.ep.status(now)[0].counters.retransmitted > 0);
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
        wb.process(&later, 0, true, now).state.to_string(),
        "trk,est,rpl"
    );
    let reply = udp("198.51.100.9", "10.0.0.7", 53, 5006);
    assert_eq!(
        wb.process(&reply, 0, true, now).state.to_string(),
        "trk,est,rpl"
    );
    assert_eq!(b.counters().created, 0);
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
    fn pass(&self, w: &mut CtWorker, frame: &[u8], now: u64) -> (Vec<u8>, Option<ConnKey>) {
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
    let mut ia = Instance::new(1, 2);
    let mut ib = Instance::new(2, 1);
    let (a, b) = (ia.ct.clone(), ib.ct.clone());
    let na = Snat::on(&a, &format!("{POOL}:1024-32767"));
    let nb = Snat::on(&b, &format!("{POOL}:32768-65535"));
    let mut wa = a.worker(0);
    let mut wb = b.worker(0);
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
            (&mut wa, &na)
        } else {
            (&mut wb, &nb)
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
    let now = run_sync((&mut ia, &mut wa), (&mut ib, &mut wb), 20, 1, || {
        a.n_conns() == total && b.n_conns() == total
    });
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
        for (w, n) in [(&mut wa, &na), (&mut wb, &nb)] {
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
        let (out, reply) = nb.pass(&mut wb, &frame(false, h, p, s3, 53), now);
        assert_eq!(reply.unwrap().dport, learned, "inside port {p}");
        let (_, back) = nb.pass(
            &mut wb,
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
    let (_, reply) = nb.pass(&mut wb, &frame(false, h, p, s3, 53), now);
    assert!(reply.unwrap().dport >= 32768);
}
