//! Active/active behind ECMP (issue 16): two ctgate instances A and B in mode
//! `active-active`, synced over loopback (`gw_hanet`); the inside router namespace has a
//! multipath default route via both (`fib_multipath_hash_policy=1`: flows spread by their
//! ports), the outside routes each instance's pool to it. A client opens 1,000 TCP
//! connections (kept open) and 200 UDP flows to one server, one request each: all are
//! answered, and each instance carries a real share (counted from its own dump, and equal
//! to what the server saw from its pool). Once each has learned the other's connections,
//! A is stopped and its pool's route (and the inside route) move to B: every connection,
//! A's included, sends another request and gets the right answer, and the server sees each
//! from the same address and port as before (no NAT change).
//!
//! Two pool layouts: each instance its own pool address, and port blocks of one shared
//! address (A 1024–32767, B 32768–65535), where the outside routes the shared address to
//! A alone (a router cannot route by port): every reply of B's connections crosses A,
//! which translates it from what it learned, while B sees their inside segments only. The
//! port-block case waits 40 s after round 1 (past the 30 s opening timeout in which such
//! half-seen TCP connections used to expire on both instances) before it checks the dumps
//! and stops A. Needs root.
#![cfg(feature = "dpdk")]

mod common;
mod gw_hanet;
mod gw_tapnet;

use std::collections::BTreeMap;
use std::time::Duration;

use gw_hanet::*;

const PORT: u16 = 7100;
const TCP: usize = 1000;
const UDP: usize = 200;
const ROUND: Duration = Duration::from_secs(150);

/// The lines of `dump` (`dump-conntrack -m`) of connections to the test's server.
fn to_server(dump: &str) -> Vec<&str> {
    let d = format!("dst={SERVER},sport=");
    let p = format!(",dport={PORT})");
    dump.lines()
        .filter(|l| (l.starts_with("tcp,") || l.starts_with("udp,")) && l.contains(&d))
        .filter(|l| l.contains(&p))
        .collect()
}

/// Connections in `dump` this instance made itself / learned from its peer.
fn own_and_learned(dump: &str) -> (usize, usize) {
    let v = to_server(dump);
    let learned = v.iter().filter(|l| l.contains(",learned=")).count();
    (v.len() - learned, learned)
}

/// How many of each TCP state (`protoinfo=(state=…`) and UDP connection `dump` holds, for
/// assertion messages.
fn states(dump: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in to_server(dump) {
        let learned = if l.contains(",learned=") {
            "learned "
        } else {
            ""
        };
        let st = match l.split("state=").nth(1) {
            Some(s) => s.split([',', ')']).next().unwrap_or("?").to_string(),
            None => l.split(',').next().unwrap_or("?").to_string(),
        };
        *m.entry(format!("{learned}{st}")).or_default() += 1;
    }
    m
}

/// How many connections of a round have each status.
fn statuses(r: &[ConnResult]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for c in r {
        *m.entry(c.status.as_str()).or_default() += 1;
    }
    m
}

/// The whole test: instances with `a` and `b`; the outside routes `pools` (address,
/// owner) at start, and `moved` to B when A stops; `owner` says which instance a binding
/// the server saw (`ADDR:PORT`) belongs to; `idle` is how long the connections rest after
/// round 1 before the dumps are checked.
fn spread_over_both_then_b_carries_all(
    name: &str,
    a: &Setup,
    b: &Setup,
    pools: &[(&str, Side)],
    moved: &[&str],
    owner: impl Fn(&str) -> Side,
    idle: Duration,
) {
    let mut ha = HaNet::start(name, a, b);
    ha.wait_synced(1, Duration::from_secs(30));
    ha.route_inside(&[Side::A, Side::B]);
    for (p, via) in pools {
        ha.route_pool(p, *via);
    }
    ha.conns_server(PORT);
    let dir = ha.conns_client(PORT, TCP, UDP);
    let total = TCP + UDP;

    // Round 1: every connection answered, spread over both.
    let r1 = conns_round(&dir, 1, ROUND);
    assert_eq!(r1.len(), total);
    let failed: Vec<&ConnResult> = r1.iter().filter(|c| c.status != "ok").collect();
    assert!(
        failed.is_empty(),
        "round 1: {} of {total} failed {:?}, e.g. {:?}\nA: {:?}\nB: {:?}",
        failed.len(),
        statuses(&r1),
        &failed[..failed.len().min(5)],
        states(&ha.a.dump()),
        states(&ha.b.dump()),
    );
    // Past a few table refreshes (`refresh_interval = 1`): what each instance holds is
    // what it keeps, not a snapshot between two streams.
    std::thread::sleep(idle);
    let seen_a = r1.iter().filter(|c| owner(&c.seen) == Side::A).count();
    let seen_b = total - seen_a;
    // Each instance's own connections (and, once synced, the other's learned).
    let dump_b = ha.b.ctl_until(&["dump-conntrack", "-m"], ROUND, |d| {
        own_and_learned(d) == (seen_b, seen_a)
    });
    let dump_a = ha.a.ctl_until(&["dump-conntrack", "-m"], ROUND, |d| {
        own_and_learned(d) == (seen_a, seen_b)
    });
    let (own_a, learned_a) = own_and_learned(&dump_a);
    let (own_b, learned_b) = own_and_learned(&dump_b);
    assert_eq!(
        (own_a, own_b),
        (seen_a, seen_b),
        "each instance's dump holds the connections the server saw from its pool\nA: {:?}\nB: {:?}",
        states(&dump_a),
        states(&dump_b)
    );
    assert!(
        own_a >= total / 5 && own_b >= total / 5,
        "ECMP spreads the connections: A made {own_a}, B {own_b} of {total}"
    );
    assert_eq!(
        (learned_a, learned_b),
        (own_b, own_a),
        "each learned all of the other's\nA: {:?}\nB: {:?}",
        states(&dump_a),
        states(&dump_b)
    );
    println!("{name}: A made {own_a}, B {own_b} of {total} connections");
    let client_log = || std::fs::read_to_string(dir.join("client.log")).unwrap_or_default();
    println!("{name} round 1: {}", client_log().trim());

    // A stops; its pool's route and the inside route move to B.
    let out = ha.a.stop();
    assert!(out.status.success(), "A did not stop cleanly:\n{out}");
    ha.route_inside(&[Side::B]);
    for p in moved {
        ha.route_pool(p, Side::B);
    }

    // Round 2: every connection continues through B, with the same binding.
    let r2 = conns_round(&dir, 2, ROUND);
    assert_eq!(r2.len(), total);
    println!("{name} round 2: {:?}", statuses(&r2));
    let bad: Vec<(&ConnResult, &str)> = r2
        .iter()
        .zip(&r1)
        .filter(|(c, was)| c.status != "ok" || c.seen != was.seen)
        .map(|(c, was)| (c, was.seen.as_str()))
        .collect();
    let of_a = bad.iter().filter(|(_, was)| owner(was) == Side::A).count();
    assert!(
        bad.is_empty(),
        "round 2 after A stopped: {} of {total} failed or changed binding ({of_a} of A's \
         {own_a}), statuses {:?}, e.g. {:?}\nB: {:?}",
        bad.len(),
        statuses(&r2),
        &bad[..bad.len().min(5)],
        states(&ha.b.dump()),
    );
}

/// The two instances of an active-active pair: each its own SNAT pool, both the extra
/// configuration lines `extra`.
fn active_active(pools: [&str; 2], extra: &str) -> (Setup, Setup) {
    let [a, b] = pools.map(|pool| {
        let mut s = Setup::new("active-active", &[pool]);
        s.extra = extra.into();
        s
    });
    (a, b)
}

#[test]
fn ecmp_spreads_1000_connections_over_two_active_instances_with_own_pool_addresses_and_the_survivor_carries_all_of_them(
) {
    let (a, b) = active_active(["203.0.113.1", "203.0.113.2"], "refresh_interval = 1\n");
    spread_over_both_then_b_carries_all(
        "haecmp",
        &a,
        &b,
        &[("203.0.113.1", Side::A), ("203.0.113.2", Side::B)],
        &["203.0.113.1"],
        |seen| {
            if seen.starts_with("203.0.113.1:") {
                Side::A
            } else {
                Side::B
            }
        },
        Duration::from_secs(4),
    );
}

#[test]
fn ecmp_with_port_blocks_of_one_address_routed_to_one_instance_keeps_every_connection_on_both_past_the_opening_timeout_and_the_survivor_carries_all_of_them(
) {
    // UDP flows outlive the idle time (their expiry is not what is tested here).
    let (a, b) = active_active(
        ["203.0.113.1:1024-32767", "203.0.113.1:32768-65535"],
        "refresh_interval = 1\n\n[timeouts]\nudp_first = 300\nudp_single = 300\nudp_multiple = 300\n",
    );
    spread_over_both_then_b_carries_all(
        "haecmpblk",
        &a,
        &b,
        &[("203.0.113.1", Side::A)],
        &["203.0.113.1"],
        |seen| {
            let port: u16 = seen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if port < 32768 {
                Side::A
            } else {
                Side::B
            }
        },
        Duration::from_secs(40),
    );
}
