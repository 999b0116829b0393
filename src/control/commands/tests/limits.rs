//! ct-set-maxconns and the zone limits.

use super::*;
use crate::conntrack::testpkt::udp;
use crate::conntrack::Refusal;

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
