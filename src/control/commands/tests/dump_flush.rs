//! dump-conntrack and flush-conntrack.

use super::*;
use crate::conntrack::testpkt::udp;

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
    // -m adds only the parent of data connections and the origin of learned ones: none
    // here.
    assert_eq!(
        env.ok("dump-conntrack", &["-m"]),
        env.ok("dump-conntrack", &[])
    );
    assert_eq!(
        env.err("dump-conntrack-exp", &["-s"]),
        "dump-conntrack-exp takes no option"
    );
    assert_eq!(
        env.err("dump-conntrack-exp", &["zone=x"]),
        "failed to parse zone (Invalid argument)"
    );
}

#[test]
fn dump_conntrack_exp_lists_expectations_in_ovs_format_by_zone() {
    use crate::conntrack::alg::expect::Helper;
    use crate::conntrack::testpkt::tcp;
    use crate::wire::parse::tcp_flags::SYN;
    let env = Env::new(1000, 256);
    env.ct.set_helpers(&[(Helper::Ftp, 21)]);
    let mut w = env.ct.worker(0);
    assert_eq!(env.ok("dump-conntrack-exp", &[]), "");
    for (zone, port) in [(0u16, "1,2"), (3, "4,1")] {
        let r = w.process(
            &tcp("10.1.1.1", "10.1.1.2", 40000, 21, SYN, 1, 0, 1000, 0),
            zone,
            true,
            0,
        );
        let msg = format!("PORT 10,1,1,1,{port}\r\n");
        w.alg_ftp(&r.conn.unwrap(), msg.as_bytes());
    }
    assert_eq!(
        env.ok("dump-conntrack-exp", &[]),
        "tcp,orig=(src=10.1.1.2,dst=10.1.1.1,sport=0,dport=1025),zone=3,parent=(src=10.1.1.1,dst=10.1.1.2,sport=40000,dport=21)\n\
         tcp,orig=(src=10.1.1.2,dst=10.1.1.1,sport=0,dport=258),parent=(src=10.1.1.1,dst=10.1.1.2,sport=40000,dport=21)\n"
    );
    assert_eq!(
        env.ok("dump-conntrack-exp", &["zone=0"]),
        "tcp,orig=(src=10.1.1.2,dst=10.1.1.1,sport=0,dport=258),parent=(src=10.1.1.1,dst=10.1.1.2,sport=40000,dport=21)\n"
    );
    assert!(env
        .ok("dump-conntrack", &[])
        .contains(",protoinfo=(state=SYN_SENT),helper=ftp\n"));
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
fn dump_more_marks_connections_learned_from_a_sync_peer() {
    use crate::conntrack::learn::LearnedConn;
    use crate::conntrack::TimeoutAttr;
    let env = Env::new(1024, 0);
    let other = Env::new(1024, 0);
    other.ct.worker(0).process(&udp(A, B, 4000, 53), 0, true, 0);
    let s = other.ct.all_conns()[0];
    env.ct.worker(0).process(&udp(A, B, 4001, 53), 0, true, 0);
    env.ct
        .worker(0)
        .learn(
            &LearnedConn {
                orig: s.orig,
                reply: s.reply,
                nat: s.nat,
                attr: TimeoutAttr::UdpFirst,
                timeout_ms: 30_000,
                mark: 0,
                label: 0,
                l4: s.l4,
                origin: 2,
                stream: 0,
            },
            0,
            false,
        )
        .unwrap();
    assert_eq!(
        env.dump(&["-m"]),
        vec![
            "udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=4000,dport=53),reply=(src=192.0.2.2,dst=10.0.0.2,sport=53,dport=4000),learned=2",
            "udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=4001,dport=53),reply=(src=192.0.2.2,dst=10.0.0.2,sport=53,dport=4001)",
        ]
    );
    // Without -m the two look alike.
    assert!(env.dump(&[]).iter().all(|l| !l.contains("learned")));
    let json = env.dump(&["-m", "--json"]);
    assert!(
        json[0].contains("\"learned\":2") || json[1].contains("\"learned\":2"),
        "{json:?}"
    );
}
