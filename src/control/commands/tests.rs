//! Every command against a real tracker filled through `CtWorker::process`.

use super::*;
use crate::conntrack::testpkt::{icmp_query, other, tcp, udp};
use crate::conntrack::{CtConfig, CtWorker, Refusal};
use crate::nat::{NatRange, NatSpec};
use crate::wire::parse::tcp_flags::{ACK, SYN};
use proptest::prelude::*;

const A: &str = "10.0.0.2";
const B: &str = "192.0.2.2";

struct FakeInfo;

impl GatewayInfo for FakeInfo {
    fn show(&self) -> String {
        "port 0: name=net_null0 rx_queues=1 tx_queues=1\nuptime 12s".into()
    }
    fn stats(&self) -> String {
        "port=0 rx=10 tx=9 dropped=1\n".into()
    }
    fn version_extra(&self) -> Option<String> {
        Some("DPDK 22.11.11\n".into())
    }
}

struct Env {
    ct: Conntrack,
    sweep: AtomicU32,
    now: u64,
}

impl Env {
    fn new(max: u32, buckets: u32) -> Env {
        Env {
            ct: Conntrack::new(CtConfig {
                max_conns: max,
                n_buckets: buckets,
                workers: 1,
                tcp_seq_check: true,
                hash_seed: Some(11),
            }),
            sweep: AtomicU32::new(20_000),
            now: 0,
        }
    }

    fn ctx(&self) -> ControlContext<'_> {
        ControlContext {
            conntrack: &self.ct,
            sweep_interval_ms: &self.sweep,
            info: &FakeInfo,
            now: self.now,
        }
    }

    fn run(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_to_end(&self.ctx(), cmd, &args)
    }

    fn ok(&self, cmd: &str, args: &[&str]) -> String {
        match self.run(cmd, args) {
            Ok(s) => s,
            Err(e) => panic!("{cmd} {args:?} failed: {e}"),
        }
    }

    fn err(&self, cmd: &str, args: &[&str]) -> String {
        match self.run(cmd, args) {
            Ok(s) => panic!("{cmd} {args:?} should fail, printed {s:?}"),
            Err(e) => e,
        }
    }

    /// dump-conntrack's lines, sorted.
    fn dump(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok("dump-conntrack", args)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    }
}

/// A TCP handshake A:sport → B:80, leaving the connection ESTABLISHED.
fn handshake(w: &mut CtWorker, a: &str, b: &str, sport: u16, zone: u16, now: u64) {
    let r = w.process(
        &tcp(a, b, sport, 80, SYN, 1000, 0, 65535, 0),
        zone,
        true,
        now,
    );
    assert!(r.conn.is_some(), "SYN created nothing: {r:?}");
    w.process(
        &tcp(b, a, 80, sport, SYN | ACK, 5000, 1001, 65535, 0),
        zone,
        true,
        now,
    );
    w.process(
        &tcp(a, b, sport, 80, ACK, 1001, 5001, 65535, 0),
        zone,
        true,
        now,
    );
}

fn snat() -> NatSpec {
    NatSpec::snat("192.0.2.100".parse::<NatRange>().unwrap())
}

/// The tracker of the dump tests: a TCP connection, a UDP one in zone 5, an SNATed UDP
/// one, an ICMP echo, a half-open TCP one and an "other" protocol one.
fn filled() -> Env {
    let env = Env::new(1000, 64);
    let mut w = env.ct.worker(0);
    handshake(&mut w, A, B, 40000, 0, 0);
    assert!(w.process(&udp(A, B, 1234, 53), 5, true, 0).conn.is_some());
    let nat = snat();
    let r = w.process_nat(&udp("10.0.0.3", "198.51.100.1", 5000, 53), 0, true, &nat, 0);
    assert!(r.conn.is_some());
    assert!(w
        .process(&icmp_query(A, B, 8, 7), 0, true, 0)
        .conn
        .is_some());
    assert!(w
        .process(&tcp(A, B, 40001, 443, SYN, 77, 0, 65535, 0), 2, true, 0)
        .conn
        .is_some());
    assert!(w.process(&other(A, B, 47), 0, true, 0).conn.is_some());
    drop(w);
    env
}

fn expected_dump() -> Vec<String> {
    let mut v: Vec<String> = [
        "tcp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=40000,dport=80),reply=(src=192.0.2.2,dst=10.0.0.2,sport=80,dport=40000),protoinfo=(state=ESTABLISHED)",
        "udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=1234,dport=53),reply=(src=192.0.2.2,dst=10.0.0.2,sport=53,dport=1234),zone=5",
        "udp,orig=(src=10.0.0.3,dst=198.51.100.1,sport=5000,dport=53),reply=(src=198.51.100.1,dst=192.0.2.100,sport=53,dport=5000)",
        "icmp,orig=(src=10.0.0.2,dst=192.0.2.2,id=7,type=8,code=0),reply=(src=192.0.2.2,dst=10.0.0.2,id=7,type=0,code=0)",
        "tcp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=40001,dport=443),reply=(src=192.0.2.2,dst=10.0.0.2,sport=443,dport=40001),zone=2,protoinfo=(state=SYN_SENT)",
        "47,orig=(src=10.0.0.2,dst=192.0.2.2,sport=0,dport=0),reply=(src=192.0.2.2,dst=10.0.0.2,sport=0,dport=0)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.sort();
    v
}

#[test]
fn dump_shows_exactly_the_connections_created_with_nat_reply_tuples() {
    let env = filled();
    assert_eq!(env.dump(&[]), expected_dump());
    assert_eq!(env.ok("ct-get-nconns", &[]), "6\n");
    // Zone filter.
    assert_eq!(
        env.dump(&["zone=5"]),
        vec!["udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=1234,dport=53),reply=(src=192.0.2.2,dst=10.0.0.2,sport=53,dport=1234),zone=5"]
    );
    assert_eq!(env.dump(&["zone=9"]), Vec::<String>::new());
    assert_eq!(env.dump(&["zone=0"]).len(), 4);
}

#[test]
fn dump_stats_gives_seconds_left_and_hides_expired_connections() {
    let mut env = filled();
    env.now = 1_500;
    let lines = env.dump(&["-s", "zone=5"]);
    // UDP first packet: udp_first = 60 s, created at 0, now 1.5 s.
    assert_eq!(
        lines,
        vec!["udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=1234,dport=53),reply=(src=192.0.2.2,dst=10.0.0.2,sport=53,dport=1234),zone=5,timeout=58"]
    );
    assert_eq!(env.dump(&["--stats", "zone=5"]), lines);
    assert_eq!(env.dump(&["--statistics", "zone=5"]), lines);
    let est = env
        .dump(&["-s"])
        .into_iter()
        .find(|l| l.contains("sport=40000"))
        .unwrap();
    assert!(
        est.ends_with(",timeout=86398,protoinfo=(state=ESTABLISHED)"),
        "{est}"
    );
    // Past the UDP, ICMP and SYN_SENT timeouts, only the established connection remains
    // visible (the expired ones are still counted until the sweep removes them).
    env.now = 61_000;
    let left = env.dump(&[]);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("protoinfo=(state=ESTABLISHED)"));
    assert_eq!(env.ok("ct-get-nconns", &[]), "6\n");
}

#[test]
fn dump_json_has_one_object_per_connection() {
    let mut env = filled();
    env.now = 1_000;
    let out = env.ok("dump-conntrack", &["--json"]);
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 6);
    let nat = objs
        .iter()
        .find(|o| o["orig"]["src"] == "10.0.0.3")
        .unwrap();
    assert_eq!(nat["proto"], "udp");
    assert_eq!(nat["ip_proto"], 17);
    assert_eq!(nat["reply"]["dst"], "192.0.2.100");
    assert_eq!(nat["reply"]["dport"], 5000);
    assert_eq!(nat["nat"], serde_json::json!(["snat"]));
    assert_eq!(nat["timeout"], 59);
    assert_eq!(nat["zone"], 0);
    let icmp = objs.iter().find(|o| o["proto"] == "icmp").unwrap();
    assert_eq!(icmp["orig"]["id"], 7);
    assert_eq!(icmp["orig"]["type"], 8);
    assert_eq!(icmp["reply"]["type"], 0);
    let tcp = objs.iter().find(|o| o["orig"]["sport"] == 40000).unwrap();
    assert_eq!(tcp["state"], "ESTABLISHED");
    assert_eq!(tcp["nat"], serde_json::json!([]));
}

#[test]
fn dump_argument_errors() {
    let env = filled();
    assert_eq!(
        env.err("dump-conntrack", &["zone=x"]),
        "failed to parse zone (Invalid argument)"
    );
    assert_eq!(
        env.err("dump-conntrack", &["zone=65536"]),
        "failed to parse zone (Invalid argument)"
    );
    assert_eq!(
        env.err("dump-conntrack", &["bogus"]),
        "invalid argument \"bogus\" (Invalid argument)"
    );
    assert_eq!(
        env.err("dump-conntrack", &["--bogus"]),
        "Unrecognized option --bogus"
    );
    assert_eq!(env.err("dump-conntrack", &["-x"]), "Unrecognized option -x");
    assert!(env.err("dump-conntrack", &["-m"]).contains("not supported"));
}

#[test]
fn streamed_outputs_do_not_depend_on_the_step_size() {
    let env = Env::new(5000, 1024);
    let mut w = env.ct.worker(0);
    for i in 0..3000u32 {
        let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        w.process(&udp(&src, B, 1000, 53), (i % 4) as u16, true, 0);
    }
    drop(w);
    let ctx = env.ctx();
    for (cmd, args) in [
        ("dump-conntrack", vec!["-s".to_string()]),
        ("ct-stats-show", vec!["-m".to_string()]),
        ("ct-bkts", vec![]),
    ] {
        let whole = run_to_end(&ctx, cmd, &args).unwrap();
        let Outcome::Stream(mut job) = execute(&ctx, cmd, &args) else {
            panic!("{cmd} is not streamed");
        };
        let mut out = String::new();
        let mut steps = 0;
        while job.step(&ctx, 1, &mut out).unwrap() == Step::More {
            steps += 1;
        }
        assert!(steps >= 1023, "{cmd}: {steps} steps");
        assert_eq!(out, whole, "{cmd}");
    }
    assert_eq!(env.dump(&[]).len(), 3000);
}

#[test]
fn flush_all_and_by_zone() {
    let env = filled();
    assert_eq!(env.ok("flush-conntrack", &["zone=5"]), "");
    let mut want = expected_dump();
    want.retain(|l| !l.contains(",zone=5"));
    assert_eq!(env.dump(&[]), want);
    assert_eq!(env.ok("ct-get-nconns", &[]), "5\n");
    assert_eq!(env.ct.zones().get(5).unwrap().count(), 0);
    // Zone 0 holds four: only they go.
    env.ok("flush-conntrack", &["zone=0"]);
    assert_eq!(env.dump(&[]).len(), 1);
    assert!(env.dump(&[])[0].contains(",zone=2,"));
    env.ok("flush-conntrack", &[]);
    assert_eq!(env.dump(&[]), Vec::<String>::new());
    assert_eq!(env.ok("ct-get-nconns", &[]), "0\n");
    assert_eq!(env.ct.counters().removed, 6);
}

#[test]
fn flush_by_full_tuple_in_either_direction() {
    let env = filled();
    // Original direction of the TCP connection.
    env.ok(
        "flush-conntrack",
        &["ct_nw_src=10.0.0.2,ct_nw_dst=192.0.2.2,ct_nw_proto=6,ct_tp_src=40000,ct_tp_dst=80"],
    );
    assert_eq!(env.dump(&[]).len(), 5);
    assert!(!env.dump(&[]).iter().any(|l| l.contains("sport=40000")));
    // Gone: a second flush does not find it (OVS's ENOENT).
    assert_eq!(
        env.err(
            "flush-conntrack",
            &["ct_nw_src=10.0.0.2,ct_nw_dst=192.0.2.2,ct_nw_proto=6,ct_tp_src=40000,ct_tp_dst=80"]
        ),
        "failed to flush conntrack (No such file or directory)"
    );
    // The SNATed connection by its reply (translated) tuple.
    env.ok(
        "flush-conntrack",
        &["ct_nw_src=198.51.100.1,ct_nw_dst=192.0.2.100,ct_nw_proto=17,ct_tp_src=53,ct_tp_dst=5000"],
    );
    assert!(!env.dump(&[]).iter().any(|l| l.contains("10.0.0.3")));
    // The zone-5 UDP connection needs its zone.
    let t = "ct_nw_src=10.0.0.2,ct_nw_dst=192.0.2.2,ct_nw_proto=17,ct_tp_src=1234,ct_tp_dst=53";
    assert!(env.run("flush-conntrack", &[t]).is_err());
    env.ok("flush-conntrack", &["zone=5", t]);
    // ICMP by id, type and code, in the reply direction.
    env.ok(
        "flush-conntrack",
        &["ct_nw_src=192.0.2.2,ct_nw_dst=10.0.0.2,ct_nw_proto=1,icmp_type=0,icmp_code=0,icmp_id=7"],
    );
    let left = env.dump(&[]);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("47,")));
    assert!(left.iter().any(|l| l.contains("sport=40001")));
}

#[test]
fn flush_by_partial_tuple_matches_every_zone_or_the_given_one() {
    let env = filled();
    // Every connection from 10.0.0.2 with protocol TCP, in any zone.
    env.ok("flush-conntrack", &["ct_nw_src=10.0.0.2,ct_nw_proto=6"]);
    let left = env.dump(&[]);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(!left.iter().any(|l| l.starts_with("tcp,")));
    // Reply tuple only: the SNATed connection's translated destination.
    env.ok("flush-conntrack", &["", "ct_nw_dst=192.0.2.100"]);
    assert!(!env.dump(&[]).iter().any(|l| l.contains("192.0.2.100")));
    // Partial with a zone: only that zone's.
    env.ok("flush-conntrack", &["zone=7", "ct_nw_src=10.0.0.2"]);
    assert_eq!(env.dump(&[]).len(), 3);
    env.ok("flush-conntrack", &["zone=5", "ct_nw_src=10.0.0.2"]);
    assert_eq!(env.dump(&[]).len(), 2);
    // ICMP partial: by id only.
    env.ok("flush-conntrack", &["ct_nw_proto=1,icmp_id=8"]);
    assert_eq!(env.dump(&[]).len(), 2);
    env.ok("flush-conntrack", &["ct_nw_proto=1,icmp_id=7"]);
    assert_eq!(env.dump(&[]).len(), 1);
    assert!(env.dump(&[])[0].starts_with("47,"));
}

#[test]
fn flush_by_mark_and_ipv6_tuple() {
    let env = Env::new(1000, 64);
    let mut w = env.ct.worker(0);
    let a = w
        .process(&udp("fd00::1", "fd00::2", 1, 2), 0, true, 0)
        .conn
        .unwrap();
    let b = w
        .process(&udp("fd00::1", "fd00::3", 1, 2), 0, true, 0)
        .conn
        .unwrap();
    assert!(w.set_mark_label(&a, Some(0xaa), None));
    assert!(w.set_mark_label(&b, Some(0xab), None));
    drop(w);
    env.ok("flush-conntrack", &["mark=0xaa"]);
    assert_eq!(env.dump(&[]).len(), 1);
    env.ok("flush-conntrack", &["mark=0x1/0xf"]);
    assert_eq!(env.dump(&[]).len(), 1);
    env.ok(
        "flush-conntrack",
        &["ct_ipv6_src=fd00::1,ct_ipv6_dst=fd00::3,ct_nw_proto=17,ct_tp_src=1,ct_tp_dst=2"],
    );
    assert_eq!(env.dump(&[]), Vec::<String>::new());
}

#[test]
fn flush_argument_errors_are_ovs_messages() {
    let env = filled();
    let cases: &[(&[&str], &str)] = &[
        (&["zone=x"], "failed to parse zone (Invalid argument)"),
        (&["mark=zz"], "failed to parse mark (Invalid argument)"),
        (
            &["labels=0x1/q"],
            "failed to parse labels (Invalid argument)",
        ),
        (
            &["ct_nw_src=1.2.3"],
            "failed to parse field ct_nw_src (Invalid argument)",
        ),
        (
            &["ct_nw_src="],
            "field ct_nw_src missing value (Invalid argument)",
        ),
        (
            &["ct_tp_src=1"],
            "port is set without protocol (Invalid argument)",
        ),
        (
            &["ct_nw_proto=6,ct_tp_src=70000"],
            "failed to parse field ct_tp_src (Invalid argument)",
        ),
        (&["icmp_type=8"], "invalid L4 fields (Invalid argument)"),
        (
            &["ct_nw_src=1.1.1.1,ct_ipv6_dst=::1"],
            "the L3 protocol does not match ::1 (Invalid argument)",
        ),
        (
            &["ct_nw_src=1.1.1.1,ct_nw_src=1.1.1.2"],
            "ct_nw_src is set multiple times (Invalid argument)",
        ),
        (
            &["ct_foo=1"],
            "invalid conntrack tuple field: ct_foo (Invalid argument)",
        ),
        (
            &["ct_nw_src=1.1.1.1", "ct_nw_dst=2.2.2.2", "x"],
            "invalid arguments (Invalid argument)",
        ),
        (
            &["ct_nw_proto=6", "ct_nw_proto=6"],
            "ct_nw_proto is set multiple times (Invalid argument)",
        ),
        (
            &["ct_nw_src=1.1.1.1", "zone=1"],
            "invalid conntrack tuple field: zone (Invalid argument)",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(&env.err("flush-conntrack", args), want, "{args:?}");
    }
    // Nothing was flushed by the failures.
    assert_eq!(env.dump(&[]), expected_dump());
}

#[test]
fn ct_stats_show_counts_per_protocol_and_tcp_state() {
    let env = filled();
    let mut w = env.ct.worker(0);
    assert!(w
        .process(&icmp_query("fd00::1", "fd00::2", 128, 3), 0, true, 0)
        .conn
        .is_some());
    drop(w);
    let out = env.ok("ct-stats-show", &[]);
    let (ovs, ours) = out.split_once("ctgate counters:\n").unwrap();
    // ICMPv6 is counted in the total but not printed, as in OVS.
    assert_eq!(
        ovs,
        "Connections Stats:\n    Total: 7\n  TCP: 2\n  UDP: 2\n  ICMP: 1\n  Other: 1\n"
    );
    assert!(
        ours.starts_with("    created: 7\n    expired: 0\n"),
        "{ours}"
    );
    assert!(ours.contains("    refused_zone_limit: 0\n"));
    let verbose = env.ok("ct-stats-show", &["-m"]);
    assert!(verbose.starts_with(
        "Connections Stats:\n    Total: 7\n  TCP: 2\n    Conn per TCP states:\n\t  [SYN_SENT]=1\n\t  [ESTABLISHED]=1\n  UDP: 2\n"
    ), "{verbose}");
    assert_eq!(env.ok("ct-stats-show", &["verbose"]), verbose);
    assert_eq!(env.ok("ct-stats-show", &["--more"]), verbose);
    let z = env.ok("ct-stats-show", &["zone=5"]);
    assert!(
        z.starts_with("Connections Stats:\n    Total: 1\n  UDP: 1\nctgate counters:\n"),
        "{z}"
    );
    let empty = env.ok("ct-stats-show", &["zone=9"]);
    assert!(empty.starts_with("Connections Stats:\n    Total: 0\nctgate counters:\n"));
}

/// Parses ct-bkts' table into the per-bucket cells (None for '.').
fn bkts_cells(out: &str) -> Vec<Option<u32>> {
    let mut cells = Vec::new();
    for l in out
        .lines()
        .filter(|l| l.contains("..") && l.contains("   | "))
    {
        let (_, row) = l.split_once("   | ").unwrap();
        assert_eq!(row.len(), 40, "row {l:?}");
        for i in 0..8 {
            let c = row[i * 5..i * 5 + 5].trim();
            cells.push(if c == "." {
                None
            } else {
                Some(c.parse().unwrap())
            });
        }
    }
    cells
}

#[test]
fn ct_bkts_prints_ovs_table_summing_to_nconns() {
    let env = Env::new(1000, 64);
    assert_eq!(
        env.ok("ct-bkts", &[]),
        "Total Buckets: 64\nCurrent Connections: 0\n\nConnections per bucket: min=0 max=0 avg=0.00\n"
    );
    let mut w = env.ct.worker(0);
    for i in 0..150u16 {
        w.process(&udp(A, B, 1000 + i, 53), 0, true, 0);
    }
    drop(w);
    let out = env.ok("ct-bkts", &[]);
    assert!(
        out.starts_with(
            "Total Buckets: 64\nCurrent Connections: 150\n\n\
         +-----------+-----------------------------------------+\n\
         |  Buckets  |         Connections per Buckets         |\n\
         +-----------+-----------------------------------------+\n   0..  7   | "
        ),
        "{out}"
    );
    assert!(out.contains("\n  56.. 63   | "), "{out}");
    let cells = bkts_cells(&out);
    assert_eq!(cells.len(), 64);
    let sum: u32 = cells.iter().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(sum, 150);
    assert_eq!(env.ok("ct-get-nconns", &[]), "150\n");
    // Each cell is the bucket's connection count.
    for (b, c) in cells.iter().enumerate() {
        let mut n = 0;
        env.ct.table().for_each_in_bucket(b, |_, _| n += 1);
        assert_eq!(c.unwrap_or(0), n, "bucket {b}");
    }
    let max = cells.iter().map(|c| c.unwrap_or(0)).max().unwrap();
    assert!(
        out.ends_with(&format!(
            "\n\nConnections per bucket: min={} max={max} avg=2.34\n",
            cells.iter().map(|c| c.unwrap_or(0)).min().unwrap()
        )),
        "{out}"
    );
    // gt=N hides buckets with at most N.
    let gt = bkts_cells(&env.ok("ct-bkts", &["gt=2"]));
    for (a, b) in cells.iter().zip(&gt) {
        let n = a.unwrap_or(0);
        assert_eq!(*b, (n > 2).then_some(n));
    }
    assert_eq!(
        env.err("ct-bkts", &["gt=x"]),
        "invalid argument \"gt=x\" (Invalid argument)"
    );
}

#[test]
fn maxconns_round_trip_and_take_effect() {
    let env = Env::new(100, 64);
    assert_eq!(env.ok("ct-get-maxconns", &[]), "100\n");
    assert_eq!(
        env.ok("ct-set-maxconns", &["3"]),
        "setting maxconns successful\n"
    );
    assert_eq!(env.ok("ct-get-maxconns", &[]), "3\n");
    let mut w = env.ct.worker(0);
    for i in 0..3 {
        assert!(w.process(&udp(A, B, i, 53), 0, true, 0).conn.is_some());
    }
    let r = w.process(&udp(A, B, 99, 53), 0, true, 0);
    assert_eq!(r.refused, Some(Refusal::MaxConns));
    env.ok("ct-set-maxconns", &["4"]);
    assert!(w.process(&udp(A, B, 99, 53), 0, true, 0).conn.is_some());
    drop(w);
    assert_eq!(env.ok("ct-get-nconns", &[]), "4\n");
    assert_eq!(
        env.err("ct-set-maxconns", &["-1"]),
        "Unrecognized option -1"
    );
    for bad in [&["a"][..], &[], &["1", "2"], &["4294967296"]] {
        assert_eq!(
            env.err("ct-set-maxconns", bad),
            "maxconns missing or malformed (Invalid argument)",
            "{bad:?}"
        );
    }
    let e = env.err("ct-set-maxconns", &["101"]);
    assert!(
        e.starts_with("ct set maxconns failed: maxconns 101 exceeds the pre-allocated pool"),
        "{e}"
    );
    assert_eq!(env.ok("ct-get-maxconns", &[]), "4\n");
    assert_eq!(
        env.err("ct-get-nconns", &["x"]),
        "invalid argument \"x\" (Invalid argument)"
    );
}

#[test]
fn limits_follow_ovs_outputs_and_take_effect_on_the_next_connection() {
    let env = Env::new(1000, 64);
    assert_eq!(env.ok("ct-get-limits", &[]), "default limit=0\n");
    // OVS's "conntrack - limit" sequence.
    assert_eq!(env.ok("ct-set-limits", &["zone=1,limit=0"]), "");
    let mut w = env.ct.worker(0);
    let r = w.process(&udp("10.1.1.1", "10.1.1.2", 1, 2), 1, true, 0);
    assert_eq!(r.refused, Some(Refusal::ZoneLimit));
    assert_eq!(
        env.ok("ct-get-limits", &[]),
        "default limit=0\nzone=1,limit=0,count=0\n"
    );
    env.ok("ct-del-limits", &["zone=1"]);
    env.ok("ct-set-limits", &["default=3"]);
    assert_eq!(env.ok("ct-get-limits", &[]), "default limit=3\n");
    for i in 2..7 {
        w.process(&udp("10.1.1.1", "10.1.1.2", i, 2), 1, true, 0);
    }
    assert_eq!(
        env.ok("ct-get-limits", &["zone=1"]),
        "default limit=3\nzone=1,limit=3,count=3\n"
    );
    for i in 2..7 {
        w.process(&udp("10.1.1.3", "10.1.1.4", i, 2), 3, true, 0);
    }
    assert_eq!(
        env.ok("ct-get-limits", &["zone=1,3"]),
        "default limit=3\nzone=1,limit=3,count=3\nzone=3,limit=3,count=3\n"
    );
    env.ok("flush-conntrack", &[]);
    env.ok(
        "ct-set-limits",
        &[
            "default=10",
            "zone=1,limit=5",
            "zone=2,limit=3",
            "zone=3,limit=3",
            "zone=4,limit=15",
        ],
    );
    env.ok("ct-del-limits", &["zone=2,4,5"]);
    assert_eq!(
        env.ok("ct-get-limits", &["zone=1,2,3,4"]),
        "default limit=10\nzone=1,limit=5,count=0\nzone=2,limit=10,count=0\nzone=3,limit=3,count=0\nzone=4,limit=10,count=0\n"
    );
    for i in 0..7 {
        w.process(&udp("10.1.1.1", "10.1.1.2", 100 + i, 2), 1, true, 0);
    }
    assert_eq!(
        env.ok("ct-get-limits", &[]),
        "default limit=10\nzone=1,limit=5,count=5\nzone=3,limit=3,count=0\n"
    );
    // A limit raised at run time admits the next connection at once.
    assert_eq!(
        w.process(&udp("10.1.1.1", "10.1.1.2", 200, 2), 1, true, 0)
            .refused,
        Some(Refusal::ZoneLimit)
    );
    env.ok("ct-set-limits", &["zone=1,limit=6"]);
    assert!(w
        .process(&udp("10.1.1.1", "10.1.1.2", 200, 2), 1, true, 0)
        .conn
        .is_some());
    // Default deleted: zones without their own limit are unlimited again.
    env.ok("ct-set-limits", &["default=15", "zone=4,limit=4"]);
    env.ok("ct-del-limits", &["default"]);
    assert_eq!(
        env.ok("ct-get-limits", &["zone=4"]),
        "default limit=0\nzone=4,limit=4,count=0\n"
    );
    drop(w);
}

#[test]
fn limit_argument_errors_are_ovs_messages() {
    let env = Env::new(1000, 64);
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "ct-set-limits",
            &["default=-1"],
            "invalid default limit (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["default=4294967296"],
            "invalid default limit (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=1,limit=-1"],
            "failed to parse field limit (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=1,limit=4294967296"],
            "failed to parse field limit (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=70000,limit=1"],
            "failed to parse field zone (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=1"],
            "failed to parse zone limit (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=1,limit="],
            "field limit missing value (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=1,limit=1,foo=2"],
            "invalid zone limit field: foo (Invalid argument)",
        ),
        (
            "ct-set-limits",
            &["zone=1,limit=1", "default=1"],
            "invalid zone limit field: default (Invalid argument)",
        ),
        ("ct-set-limits", &[], "too few arguments (Invalid argument)"),
        ("ct-del-limits", &[], "too few arguments (Invalid argument)"),
        (
            "ct-del-limits",
            &["zone=a"],
            "invalid zone (Invalid argument)",
        ),
        (
            "ct-del-limits",
            &["zones=1"],
            "invalid argument zones=1 (Invalid argument)",
        ),
        (
            "ct-get-limits",
            &["zone=1,x"],
            "invalid zone (Invalid argument)",
        ),
    ];
    for (cmd, args, want) in cases {
        assert_eq!(&env.err(cmd, args), want, "{cmd} {args:?}");
    }
    // Nothing applied by a failing command (OVS parses everything first).
    assert!(env
        .run("ct-set-limits", &["default=5", "zone=1,limit=x"])
        .is_err());
    assert_eq!(env.ok("ct-get-limits", &[]), "default limit=0\n");
}

#[test]
fn tcp_seq_check_and_sweep_interval_round_trip() {
    let env = Env::new(100, 64);
    assert_eq!(
        env.ok("ct-get-tcp-seq-chk", &[]),
        "TCP sequence checking: enabled\n"
    );
    assert_eq!(
        env.ok("ct-disable-tcp-seq-chk", &[]),
        "disabling TCP sequence checking successful\n"
    );
    assert!(!env.ct.tcp_seq_check());
    assert_eq!(
        env.ok("ct-get-tcp-seq-chk", &[]),
        "TCP sequence checking: disabled\n"
    );
    assert_eq!(
        env.ok("ct-enable-tcp-seq-chk", &[]),
        "enabling TCP sequence checking successful\n"
    );
    assert!(env.ct.tcp_seq_check());
    assert_eq!(env.ok("ct-get-sweep-interval", &[]), "20000\n");
    assert_eq!(
        env.ok("ct-set-sweep-interval", &["250"]),
        "setting sweep interval successful\n"
    );
    assert_eq!(env.sweep.load(Ordering::Relaxed), 250);
    assert_eq!(env.ok("ct-get-sweep-interval", &[]), "250\n");
    for bad in [&["0"][..], &["x"], &[], &["-5"]] {
        let e = env.err("ct-set-sweep-interval", bad);
        assert!(
            e == "invalid sweep value (Invalid argument)" || e.starts_with("Unrecognized option"),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(env.sweep.load(Ordering::Relaxed), 250);
}

#[test]
fn timeout_policies_round_trip_and_apply_to_new_connections() {
    let mut env = Env::new(100, 64);
    assert_eq!(
        env.ok(
            "ct-set-timeout-policy",
            &["zone=3", "udp_first=5", "icmp_reply=2"]
        ),
        ""
    );
    let got = env.ok("ct-get-timeout-policy", &["zone=3"]);
    assert!(got.contains("\nudp_first=5\n"), "{got}");
    assert!(got.contains("\nicmp_reply=2\n"), "{got}");
    assert!(got.contains("\nudp_single=60 (default)\n"), "{got}");
    assert!(got.starts_with("tcp_syn_sent=30 (default)\n"), "{got}");
    assert_eq!(got.lines().count(), 11);
    let mut w = env.ct.worker(0);
    w.process(&udp(A, B, 1, 2), 3, true, 0);
    w.process(&udp(A, B, 1, 2), 4, true, 0);
    drop(w);
    env.now = 1_000;
    let d = env.dump(&["-s"]);
    assert!(d.iter().any(|l| l.ends_with(",zone=3,timeout=4")), "{d:?}");
    assert!(d.iter().any(|l| l.ends_with(",zone=4,timeout=59")), "{d:?}");
    env.ok("ct-del-timeout-policy", &["zone=3"]);
    assert!(env
        .ok("ct-get-timeout-policy", &["zone=3"])
        .contains("\nudp_first=60 (default)\n"));
    // The default policy.
    env.ok(
        "ct-set-timeout-policy",
        &["zone=default", "tcp_established=3600,udp_first=10"],
    );
    let def = env.ok("ct-get-timeout-policy", &["zone=default"]);
    assert!(
        def.contains("tcp_established=3600\n") && def.contains("udp_first=10\n"),
        "{def}"
    );
    assert!(env
        .ok("ct-get-timeout-policy", &["zone=9"])
        .contains("\nudp_first=10 (default)\n"));
    env.ok("ct-del-timeout-policy", &["zone=default"]);
    assert!(env
        .ok("ct-get-timeout-policy", &["zone=default"])
        .contains("udp_first=60\n"));
    let e = env.err("ct-set-timeout-policy", &["zone=1", "udp_frist=5"]);
    assert!(
        e.starts_with("invalid timeout policy attribute: udp_frist (one of tcp_syn_sent,"),
        "{e}"
    );
    assert_eq!(
        env.err("ct-set-timeout-policy", &["zone=1", "udp_first=x"]),
        "invalid value for udp_first: \"x\" (seconds, at most 4294967) (Invalid argument)"
    );
    assert!(env
        .run("ct-set-timeout-policy", &["zone=1", "udp_first=4294968"])
        .is_err());
    assert_eq!(
        env.err("ct-set-timeout-policy", &["zone=1"]),
        "too few arguments: no ATTR=SECONDS given (Invalid argument)"
    );
    assert_eq!(
        env.err("ct-get-timeout-policy", &[]),
        "missing zone=N (Invalid argument)"
    );
    assert_eq!(
        env.err("ct-get-timeout-policy", &["zone=x"]),
        "failed to parse zone (Invalid argument)"
    );
}

#[test]
fn show_stats_version_help_and_unknown_commands() {
    let env = filled();
    assert_eq!(
        env.ok("show", &[]),
        "port 0: name=net_null0 rx_queues=1 tx_queues=1\nuptime 12s\n"
    );
    let stats = env.ok("stats", &[]);
    assert!(
        stats.starts_with(
            "port=0 rx=10 tx=9 dropped=1\nconntrack n_conns=6 max_conns=1000 created=6 "
        ),
        "{stats}"
    );
    assert_eq!(
        env.ok("version", &[]),
        format!("ctgate {}\nDPDK 22.11.11\n", env!("CARGO_PKG_VERSION"))
    );
    let help = env.ok("help", &[]);
    for c in COMMANDS {
        assert!(help.contains(&format!("  {} ", c.name)), "{}", c.name);
    }
    assert_eq!(
        env.err("frobnicate", &[]),
        "unknown command \"frobnicate\" (the command \"help\" lists them)"
    );
    let h = env.ok("ct-bkts", &["--help"]);
    assert!(h.starts_with("usage: ctgate-ctl ct-bkts [gt=N]\n"), "{h}");
    assert!(env.err("ct-get-nconns", &["--json"]).contains("--json"));
}

fn arb_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_]{1,12}=[0-9a-fx:.,/-]{0,20}",
        "(zone|limit|default|gt|mark|labels)=[-0-9a-z,]{0,12}",
        "(ct_nw_src|ct_nw_dst|ct_ipv6_src|ct_nw_proto|ct_tp_src|ct_tp_dst|icmp_type|icmp_id)=[0-9.:a-f]{0,16}(,(ct_nw_proto|ct_tp_dst|icmp_code)=[0-9]{1,6}){0,3}",
        "-{1,2}[a-z]{0,8}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random arguments to every command never panic, and the tracker stays consistent.
    #[test]
    fn commands_never_panic(args in proptest::collection::vec(arb_arg(), 0..5)) {
        let env = Env::new(64, 64);
        let mut w = env.ct.worker(0);
        for i in 0..20u16 {
            w.process(&udp(A, B, i, 53), i % 3, true, 0);
        }
        drop(w);
        for c in COMMANDS {
            let _ = env.run(c.name, &args.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let n = env.ct.n_conns() as usize;
        prop_assert_eq!(env.ct.all_conns().len(), n);
    }

    #[test]
    fn unknown_command_names_never_panic(name in any::<String>()) {
        let env = Env::new(16, 64);
        let _ = env.run(&name, &[]);
    }
}
