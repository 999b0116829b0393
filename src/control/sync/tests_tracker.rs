//! Two real trackers synced through endpoints over a lossy in-memory link: the events of
//! one become connections learned by the other, which then carries their traffic.

use super::endpoint::{PeerState, SyncEndpoint, SyncParams};
use super::tracker_table::{record_of_event, TrackerTable};
use crate::conntrack::events::CtEvent;
use crate::conntrack::testpkt::{tcp, udp};
use crate::conntrack::{Conntrack, CtConfig};
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

#[test]
fn standby_tracker_learns_the_active_ones_connections_over_a_lossy_link_and_carries_them() {
    let a = tracker(1);
    let b = tracker(2);
    let sub = a.events().subscribe(100_000);
    let prm = SyncParams {
        rto_ms: 30,
        ..SyncParams::default()
    };
    let mut ea = SyncEndpoint::new(1, &[addr(2)], None, prm.clone());
    let mut eb = SyncEndpoint::new(2, &[addr(1)], None, prm);
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
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut now = 1;
    let mut evs: Vec<CtEvent> = Vec::new();
    for _ in 0..5_000 {
        now += 10;
        a.events().pump();
        evs.clear();
        sub.drain(&mut evs);
        for e in &evs {
            if let Some(r) = record_of_event(&a, e, now) {
                ea.record(r);
            }
        }
        let mut wire = Vec::new();
        ea.poll(
            now,
            &mut TrackerTable {
                worker: &mut wa,
                now,
            },
            &mut |to, m| wire.push((addr(1), to, m.to_vec())),
        );
        eb.poll(
            now,
            &mut TrackerTable {
                worker: &mut wb,
                now,
            },
            &mut |to, m| wire.push((addr(2), to, m.to_vec())),
        );
        for (from, to, m) in wire {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng % 100 < 20 {
                continue; // lost
            }
            if to == addr(2) {
                eb.receive(
                    from,
                    &m,
                    now,
                    &mut TrackerTable {
                        worker: &mut wb,
                        now,
                    },
                );
            } else {
                ea.receive(
                    from,
                    &m,
                    now,
                    &mut TrackerTable {
                        worker: &mut wa,
                        now,
                    },
                );
            }
        }
        if ea.idle()
            && eb.idle()
            && eb.status(now)[0].state == PeerState::Connected
            && b.n_conns() == 600
        {
            break;
        }
    }
    assert_eq!(b.n_conns(), 600);
    assert_eq!(lines(&b), lines(&a));
    assert!(b.all_conns().iter().all(|s| s.origin == 1));
    assert!(ea.status(now)[0].counters.retransmitted > 0);
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
