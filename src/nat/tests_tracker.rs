//! NAT through the tracker: connections created with a [`NatSpec`] are one record found
//! from either direction, the pool's ports are handed out once each (also between racing
//! workers), exhaustion is refused and counted, and what `NatSpec` picks (another port for
//! a second client, DNAT targets, ICMP identifiers) is what the table holds.

use super::{NatRange, NatSpec};
use crate::conntrack::testct::{dump, st, tracker};
use crate::conntrack::testpkt::*;
use crate::conntrack::{Conntrack, CtConfig, Refusal};
use crate::wire::parse::tcp_flags::{ACK, SYN};

const A: &str = "10.0.0.2";
const B: &str = "192.0.2.2";

fn snat(r: &str) -> NatSpec {
    NatSpec::snat(r.parse::<NatRange>().unwrap())
}

#[test]
fn snat_connection_is_one_record_found_from_the_translated_reply() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let spec = snat("192.0.2.1");
    let r = w.process_nat(&udp(A, B, 5000, 53), 1, true, &spec, 0);
    assert_eq!(r.state, st("trk,new,snat"));
    assert_eq!(
        dump(&ct),
        ["udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=5000,dport=53),reply=(src=192.0.2.2,dst=192.0.2.1,sport=53,dport=5000),zone=1"]
    );
    // The packet leaves as 192.0.2.1:5000 → B:53.
    let t = ct.nat_target(&r.conn.unwrap()).unwrap();
    assert_eq!(
        (
            t.src_ip().to_string(),
            t.sport,
            t.dst_ip().to_string(),
            t.dport
        ),
        ("192.0.2.1".into(), 5000, B.into(), 53)
    );
    // The reply comes back to the pool address and is found with one lookup.
    let back = w.process_nat(&udp(B, "192.0.2.1", 53, 5000), 1, true, &spec, 1);
    assert_eq!(back.state, st("trk,est,rpl,dnat"));
    let t = ct.nat_target(&back.conn.unwrap()).unwrap();
    assert_eq!((t.dst_ip().to_string(), t.dport), (A.into(), 5000));
    assert_eq!(ct.n_conns(), 1);
    // An ICMP error from B about the translated datagram is related to it.
    let err = icmp_error(B, "192.0.2.1", 3, 3, &udp("192.0.2.1", B, 5000, 53));
    assert_eq!(w.process(&err, 1, true, 2).state, st("trk,rel,rpl,dnat"));
}

#[test]
fn second_client_on_the_same_port_gets_another_port() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let spec = snat("192.0.2.1");
    w.process_nat(&udp(A, B, 5000, 53), 1, true, &spec, 0);
    let r = w.process_nat(&udp("10.0.0.3", B, 5000, 53), 1, true, &spec, 0);
    let t = ct.nat_target(&r.conn.unwrap()).unwrap();
    assert_ne!(t.sport, 5000);
    assert!(t.sport >= 1024);
    assert_eq!(ct.counters().refused_tuple_collision, 0);
}

#[test]
fn port_range_of_n_admits_exactly_n_then_one_after_expiry() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let spec = snat("192.0.2.1:6000-6007");
    for i in 0..8 {
        let r = w.process_nat(&udp(A, B, 7000 + i, 53), 0, true, &spec, 0);
        assert!(r.conn.is_some(), "connection {i}: {r:?}");
    }
    let r = w.process_nat(&udp(A, B, 7100, 53), 0, true, &spec, 0);
    assert_eq!(r.refused, Some(Refusal::NatExhausted));
    assert_eq!(r.state, st("trk,new"));
    assert_eq!(ct.counters().nat_exhausted, 1);
    assert_eq!(ct.n_conns(), 8);
    let mut ports: Vec<u16> = ct.all_conns().iter().map(|c| c.reply.dport).collect();
    ports.sort();
    assert_eq!(ports, (6000..6008).collect::<Vec<_>>());
    // Keep one alive, let the rest expire: a new connection gets a port at once.
    w.process(
        &udp(B, "192.0.2.1", 53, ct.all_conns()[0].reply.dport),
        0,
        true,
        50_000,
    );
    let r = w.process_nat(&udp(A, B, 7101, 53), 0, true, &spec, 60_000);
    assert!(r.conn.is_some(), "{r:?}");
}

#[test]
fn flush_releases_the_translated_tuple_at_once() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let spec = snat("192.0.2.1:6000");
    let r = w.process_nat(&udp(A, B, 1, 53), 0, true, &spec, 0);
    assert_eq!(
        w.process_nat(&udp(A, B, 2, 53), 0, true, &spec, 0).refused,
        Some(Refusal::NatExhausted)
    );
    assert!(w.remove(&r.conn.unwrap()));
    assert!(w
        .process_nat(&udp(A, B, 2, 53), 0, true, &spec, 0)
        .conn
        .is_some());
}

#[test]
fn dnat_port_forward_and_hairpin() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let fwd = NatSpec::dnat("10.0.0.5:8080".parse().unwrap());
    let r = w.process_nat(
        &tcp("198.51.100.7", "192.0.2.1", 33000, 80, SYN, 1, 0, 1000, 0),
        0,
        true,
        &fwd,
        0,
    );
    assert_eq!(r.state, st("trk,new,dnat"));
    let back = w.process(
        &tcp(
            "10.0.0.5",
            "198.51.100.7",
            8080,
            33000,
            SYN | ACK,
            9,
            2,
            1000,
            0,
        ),
        0,
        true,
        0,
    );
    assert_eq!(back.state, st("trk,est,rpl,snat"));
    let both = NatSpec {
        snat: Some("10.0.0.1".parse().unwrap()),
        dnat: Some("10.0.0.5:8080".parse().unwrap()),
    };
    let r = w.process_nat(&udp("10.0.0.9", "192.0.2.1", 4000, 80), 0, true, &both, 0);
    // OVS shows only `snat` when both apply.
    assert_eq!(r.state, st("trk,new,snat"));
    let line = ct
        .all_conns()
        .iter()
        .find(|c| c.orig.proto == 17)
        .unwrap()
        .ovs_line(false, 0);
    assert_eq!(line, "udp,orig=(src=10.0.0.9,dst=192.0.2.1,sport=4000,dport=80),reply=(src=10.0.0.5,dst=10.0.0.1,sport=8080,dport=4000)");
}

#[test]
fn icmp_echo_snat_gives_clients_with_one_id_distinct_ids() {
    let ct = tracker(1024);
    let mut w = ct.worker(0);
    let spec = snat("10.0.0.201:500-505");
    for c in ["10.0.0.3", "10.0.0.4", "10.0.0.5"] {
        assert!(w
            .process_nat(&icmp_query(c, "10.0.0.2", 8, 500), 0, true, &spec, 0)
            .conn
            .is_some());
    }
    let mut ids: Vec<u16> = ct.all_conns().iter().map(|c| c.reply.sport).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| (500..=505).contains(i)));
}

#[test]
fn concurrent_nat_into_a_small_port_range_never_duplicates_a_tuple() {
    use std::collections::HashSet;
    for _run in 0..5 {
        let ct = Conntrack::new(CtConfig {
            max_conns: 1 << 14,
            n_buckets: 64,
            workers: 4,
            tcp_seq_check: true,
            hash_seed: Some(3),
        });
        let spec = snat("192.0.2.1:20000-20099");
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4u16 {
                let (ct, spec, admitted) = (&ct, &spec, &admitted);
                s.spawn(move || {
                    let mut w = ct.worker(t as usize);
                    for i in 0..100u16 {
                        // 400 distinct clients race for 100 tuples.
                        let src = format!("10.0.{t}.{}", i + 1);
                        let r = w.process_nat(&udp(&src, B, 40000, 53), 0, true, spec, 0);
                        if r.conn.is_some() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        } else {
                            assert_eq!(r.refused, Some(Refusal::NatExhausted));
                        }
                    }
                });
            }
        });
        let conns = ct.all_conns();
        let tuples: HashSet<(u16, [u8; 16])> =
            conns.iter().map(|c| (c.reply.dport, c.reply.dst)).collect();
        assert_eq!(
            tuples.len(),
            conns.len(),
            "a translated tuple was handed out twice"
        );
        assert_eq!(conns.len(), 100);
        assert_eq!(admitted.load(std::sync::atomic::Ordering::Relaxed), 100);
        assert_eq!(ct.n_conns(), 100);
        assert_eq!(ct.counters().nat_exhausted, 300);
        let entries: usize = (0..ct.table().n_buckets())
            .map(|b| ct.table().bucket_len(b))
            .sum();
        assert_eq!(entries, 200);
    }
}

#[test]
fn a_mapped_reply_key_held_by_an_unnated_connection_is_refused_without_a_leak() {
    // The mapping's one candidate (the inside port kept on the pool address) is the
    // reply key of a connection made without NAT: the packet is refused as
    // NAT-exhausted, and nothing of the attempt stays behind.
    use super::mapping::{Mapped, MappingHooks, Mappings};
    use std::sync::Arc;
    let ct = tracker(1024);
    let maps = Arc::new(Mappings::new(1024));
    assert!(ct.set_hooks(Arc::new(MappingHooks(maps.clone()))).is_ok());
    let mut w = ct.worker(0);
    // B:53 → 192.0.2.1:5000, tracked without NAT: its key is the mapped reply key of
    // A:5000 → B:53 through 192.0.2.1.
    let plain = w.process(&udp(B, "192.0.2.1", 53, 5000), 1, true, 0);
    assert_eq!(plain.state, st("trk,new"));
    let spec = snat("192.0.2.1");
    let nat = Mapped {
        spec: &spec,
        maps: &maps,
        now: 0,
    };
    let r = w.process_nat(&udp(A, B, 5000, 53), 1, true, &nat, 0);
    assert_eq!(r.refused, Some(Refusal::NatExhausted));
    assert_eq!(r.conn, None);
    let c = ct.counters();
    assert_eq!((c.created, c.nat_exhausted), (1, 1));
    assert_eq!(ct.n_conns(), 1);
    assert_eq!(
        dump(&ct),
        ["udp,orig=(src=192.0.2.2,dst=192.0.2.1,sport=53,dport=5000),reply=(src=192.0.2.1,dst=192.0.2.2,sport=5000,dport=53),zone=1"]
    );
    // The limits gave back what the attempt took: the table still fills to its maximum.
    let mut made = 1;
    for port in 1..2000u16 {
        if w.process(&udp("10.0.0.9", B, port, 53), 1, true, 0)
            .conn
            .is_some()
        {
            made += 1;
        }
    }
    assert_eq!(made, 1024);
}

#[test]
fn churn_past_the_limit_admits_every_connection_by_reclaiming_and_leaves_no_mapping_behind() {
    // SNAT through the mapping table, as in the gateway: a new connection a few times a
    // second, each answered at once (30 s to live), and a sweep pass per 60 s, so the
    // table holds up to twice what is alive and reaches its limit, where creations must
    // make room by removing expired connections (and their mappings' counts) themselves.
    use super::mapping::{Mapped, MappingHooks, Mappings};
    use std::sync::Arc;
    let max = 4_000u32;
    let ct = tracker(max);
    let maps = Arc::new(Mappings::new(max));
    assert!(ct.set_hooks(Arc::new(MappingHooks(maps.clone()))).is_ok());
    let spec = snat("192.0.2.1");
    let mut w = ct.worker(0);
    let mut ctl = ct.control_handle();
    let per_pass = ct.table().n_buckets() as f64 / 6_000.0;
    let (mut debt, mut flow, mut refused, mut peak) = (0.0f64, 0u64, 0u64, 0u32);
    for ms in 0..300_000u64 {
        if ms % 12 == 0 {
            // 2,000 connections alive at a time (30 s each), up to 4,000 in the table.
            let nat = Mapped {
                spec: &spec,
                maps: &maps,
                now: ms,
            };
            let client = format!("10.0.0.{}", 2 + flow % 250);
            let sport = 1024 + (flow % 8_000) as u16;
            let server = format!("198.18.{}.{}", flow / 8_000 / 250, 1 + flow / 8_000 % 250);
            flow += 1;
            let r = w.process_nat(&udp(&client, &server, sport, 53), 1, true, &nat, ms);
            let Some(h) = r.conn else {
                refused += 1;
                continue;
            };
            let out = ct.snapshot(h.idx, h.gen).unwrap().reply.dport;
            let back = w.process_nat(&udp(&server, "192.0.2.1", 53, out), 1, true, &nat, ms);
            assert_eq!(back.state, st("trk,est,rpl,dnat"), "flow {flow}");
            peak = peak.max(ct.n_conns());
        }
        if ms % 10 == 0 {
            debt += per_pass;
            let n = debt as usize;
            debt -= n as f64;
            if n > 0 {
                ctl.sweep_expired(ms, n);
            }
        }
    }
    let c = ct.counters();
    assert_eq!((refused, c.refused_max_conns, c.nat_exhausted), (0, 0, 0));
    assert!(c.reclaimed > 1_000, "the limit was not reached: {c:?}");
    assert_eq!(peak, max);
    assert_eq!(c.created, flow);
    // Every connection and mapping goes with the last sweep: reclaims left no count behind.
    ctl.sweep_all(1_000_000);
    assert_eq!((ct.n_conns(), maps.len()), (0, 0));
    assert_eq!(ct.zones().get(1).unwrap().count(), 0);
}
