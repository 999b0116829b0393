//! TCP sequence checking, the sweep interval and timeout policies.

use super::*;
use crate::conntrack::testpkt::udp;

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
