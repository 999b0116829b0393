//! Swapping configuration versions under traffic ([`super::super::live`]): 100 swaps
//! alternating two configurations that differ in SNAT pool, a route and the policy.
//! Established connections keep every packet and their NAT binding; connections created
//! after each swap follow that swap's rules (checked in the tracker's dump); retired
//! versions are freed once the worker has passed a quiescent point.

use super::*;
use crate::conntrack::CtState;

const POOL_A: [u8; 4] = [192, 0, 2, 10];
const POOL_B: [u8; 4] = [192, 0, 2, 20];
const OTHER_NET: [u8; 4] = [203, 0, 113, 5];

/// A: pool 192.0.2.10, 203.0.113.0/24 out the outside port, outside_new = "deny".
/// B: pool 192.0.2.20, 203.0.113.0/24 via 10.0.0.9 (inside), outside_new = "allow".
fn config_text(b: bool) -> String {
    let (pool, via, policy) = if b {
        ("192.0.2.20", "10.0.0.9", "allow")
    } else {
        ("192.0.2.10", "192.0.2.2", "deny")
    };
    format!(
        "{}\n[[route]]\nprefix = \"203.0.113.0/24\"\nvia = \"{via}\"\n",
        static_macs_config()
            .replace("pool = \"192.0.2.1\"", &format!("pool = \"{pool}\""))
            .replace(
                "outside_new = \"deny\"",
                &format!("outside_new = \"{policy}\"")
            )
    )
}

fn config(b: bool) -> Config {
    Config::parse(&config_text(b), if b { "b.toml" } else { "a.toml" }).unwrap()
}

fn src4(f: &[u8]) -> [u8; 4] {
    [f[26], f[27], f[28], f[29]]
}

fn sport(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[34], f[35]])
}

/// One established TCP flow: the inside host's port, the translated source (address,
/// port), and the next sequence numbers of both sides.
struct Flow {
    port: u16,
    nat: ([u8; 4], u16),
    seq: u32,
    rseq: u32,
}

fn open_flow(g: &mut Gw, port: u16, pool: [u8; 4]) -> Flow {
    let (v, out) = g.send(
        &from_host4(H4, SERVER4, 6, &tcp(port, 80, 1000, 0, SYN, b"")),
        0,
    );
    fwd(v, 1);
    assert_eq!(src4(&out), pool);
    let nat = (src4(&out), sport(&out));
    let (v, _) = g.send(
        &from_router4(
            SERVER4,
            nat.0,
            6,
            &tcp(80, nat.1, 5000, 1001, SYN | ACK, b""),
        ),
        1,
    );
    fwd(v, 0);
    let (v, _) = g.send(
        &from_host4(H4, SERVER4, 6, &tcp(port, 80, 1001, 5001, ACK, b"")),
        0,
    );
    fwd(v, 1);
    Flow {
        port,
        nat,
        seq: 1001,
        rseq: 5001,
    }
}

/// A data segment each way: both forwarded, the binding the flow was created with.
fn exchange(g: &mut Gw, f: &mut Flow, round: usize) {
    let (v, out) = g.send(
        &from_host4(
            H4,
            SERVER4,
            6,
            &tcp(f.port, 80, f.seq, f.rseq, PSH | ACK, b"ping"),
        ),
        0,
    );
    assert_eq!(v, Verdict::Forward(1), "round {round} flow {}", f.port);
    assert_eq!(
        (src4(&out), sport(&out)),
        f.nat,
        "round {round}: binding kept"
    );
    f.seq += 4;
    let (v, out) = g.send(
        &from_router4(
            SERVER4,
            f.nat.0,
            6,
            &tcp(80, f.nat.1, f.rseq, f.seq, PSH | ACK, b"pong"),
        ),
        1,
    );
    assert_eq!(v, Verdict::Forward(0), "round {round} reply of {}", f.port);
    assert_eq!(&out[30..34], &H4, "un-NATed to the inside host");
    f.rseq += 4;
}

#[test]
fn a_hundred_swaps_keep_established_flows_and_new_ones_follow_each_version() {
    // Version 1 is configuration A.
    let mut g = Gw::with_config(&config_text(false));
    let mut flows: Vec<Flow> = (0..8)
        .map(|k| open_flow(&mut g, 40000 + k, POOL_A))
        .collect();
    let mut publisher = Publisher::new(Arc::clone(&g.shared));
    let mut created = 0u32;
    let base = g.shared.conntrack().n_conns();
    assert_eq!(base, 8);
    for round in 0..100usize {
        let b = round % 2 == 0;
        let keep = publisher.current().answered_pools().to_vec();
        let next = publisher.current().reconfigure(&config(b), &keep).unwrap();
        let v = publisher.publish(next).unwrap();
        assert_eq!(v.generation(), round as u64 + 2);
        g.shared = Arc::clone(&v);
        for f in flows.iter_mut() {
            exchange(&mut g, f, round);
        }
        assert_eq!(publisher.workers_behind(), 0, "the worker switched");
        assert_eq!(
            g.shared.conntrack().n_conns(),
            base + created,
            "round {round}: no connection lost"
        );
        // A new connection to the server: this version's pool.
        let port = 20000 + round as u16;
        let (v, out) = g.send(
            &from_host4(H4, SERVER4, 6, &tcp(port, 80, 1, 0, SYN, b"")),
            0,
        );
        fwd(v, 1);
        assert_eq!(src4(&out), if b { POOL_B } else { POOL_A }, "round {round}");
        created += 1;
        // This version's route to 203.0.113.0/24: out (SNATed) in A, inside (not) in B.
        let (v, out) = g.send(&from_host4(H4, OTHER_NET, 17, &udp(port, 53, b"q")), 0);
        if b {
            fwd(v, 0);
            assert_eq!(src4(&out), H4);
        } else {
            fwd(v, 1);
            assert_eq!(src4(&out), POOL_A);
        }
        created += 1;
        // This version's policy for a new connection from outside.
        let (v, _) = g.send(
            &from_router4(SERVER4, H4, 6, &tcp(port, 22, 1, 0, SYN, b"")),
            1,
        );
        if b {
            fwd(v, 0);
            created += 1;
        } else {
            assert_eq!(v, Verdict::Drop(DropReason::PolicyDenied), "round {round}");
        }
        // The dump: the connection created this round has this version's binding.
        let conns = g.shared.conntrack().all_conns();
        let c = conns
            .iter()
            .find(|c| c.orig.proto == 6 && c.orig.sport == port && c.orig.dport == 80)
            .expect("created");
        assert!(c.nat & CtState::SNAT != 0);
        assert_eq!(&c.reply.dst[..4], if b { &POOL_B } else { &POOL_A });
        assert_eq!(g.shared.conntrack().n_conns(), base + created);
    }
    // Both pools are still answered for: replies to A's bindings keep arriving.
    assert_eq!(g.shared.answered_pools().len(), 3, "A, B and the IPv6 pool");
    // Every retired version is freed once the worker passed a quiescent point.
    g.step.service(&mut g.sink);
    assert_eq!(publisher.reclaim(), 0);
    // The stale ones by the last version's (A's) rules: B's bindings, B's admitted
    // outside connections, and B's unNATed ones to 203.0.113.5 (A routes them out of
    // the outside port, so it would create them source-NATed).
    let last = publisher.current();
    let conns = g.shared.conntrack().all_conns();
    let stale = conns.iter().filter(|c| !last.would_create(c)).count();
    assert_eq!(
        stale,
        50 + 50 + 50,
        "B's 50 SNATed SYNs, 50 outside connections and 50 unNATed routed ones"
    );
}
