//! `ipf-*`: OVS's words, outputs and errors, and the settings they change.

use super::*;

#[test]
fn ipf_get_status_prints_ovs_block_with_the_current_settings() {
    let e = Env::new(100, 0);
    let s = e.ok("ipf-get-status", &[]);
    assert!(s.starts_with(
        "        Fragmentation Module Status\n        ---------------------------\n        v4 enabled: 1\n        v6 enabled: 1\n        max num frags (v4/v6): 1000\n        num frag: 0\n        min v4 frag size: 1200\n        v4 frags accepted: 0\n"
    ), "{s}");
    assert!(s.ends_with("        v6 frags purged: 0\n"), "{s}");
    assert_eq!(s.lines().count(), 20);
    let m = e.ok("ipf-get-status", &["-m"]);
    assert!(m.ends_with("\n        Fragment Lists:\n\n"), "{m}");
    assert_eq!(e.ok("ipf-get-status", &["--more"]), m);
}

#[test]
fn ipf_set_commands_answer_as_ovs_and_change_the_module() {
    let e = Env::new(100, 0);
    assert_eq!(
        e.ok("ipf-set-disabled", &["v4"]),
        "disabling fragmentation reassembly successful\n"
    );
    assert!(!e.ipf.settings().enabled_v4 && e.ipf.settings().enabled_v6);
    assert_eq!(
        e.ok("ipf-set-enabled", &["v4"]),
        "enabling fragmentation reassembly successful\n"
    );
    assert!(e.ipf.settings().enabled_v4);
    e.ok("ipf-set-disabled", &["v6"]);
    assert!(e
        .ok("ipf-get-status", &[])
        .contains("        v6 enabled: 0\n"));
    assert_eq!(
        e.ok("ipf-set-min-frag", &["v6", "1000"]),
        "setting minimum fragment size successful\n"
    );
    assert_eq!(e.ipf.settings().min_frag_v6, 1000);
    assert_eq!(
        e.ok("ipf-set-max-nfrags", &["500"]),
        "setting maximum fragments successful\n"
    );
    assert!(e.ok("ipf-get-status", &[]).contains(
        "        max num frags (v4/v6): 500\n        num frag: 0\n        min v4 frag size: 1200\n"
    ));
    // OVS's optional datapath name before the operands.
    e.ok("ipf-set-max-nfrags", &["netdev@ovs-netdev", "700"]);
    assert_eq!(e.ipf.settings().max_frags, 700);
}

#[test]
fn ipf_set_commands_refuse_bad_values_with_ovs_errors() {
    let e = Env::new(100, 0);
    for (cmd, args, err) in [
        (
            "ipf-set-enabled",
            &["v5"][..],
            "parameter missing: 'v4' for IPv4 or 'v6' for IPv6 (Invalid argument)",
        ),
        (
            "ipf-set-disabled",
            &[][..],
            "parameter missing: 'v4' for IPv4 or 'v6' for IPv6 (Invalid argument)",
        ),
        (
            "ipf-set-min-frag",
            &["v4", "399"][..],
            "requested minimum fragment size too small; see documentation (Operation not permitted)",
        ),
        (
            "ipf-set-min-frag",
            &["v4"][..],
            "parameter missing: v4 for IPv4 or v6 for IPv6 (Invalid argument)",
        ),
        (
            "ipf-set-min-frag",
            &["v4", "x"][..],
            "parameter missing for minimum fragment size (Invalid argument)",
        ),
        (
            "ipf-set-max-nfrags",
            &["5001"][..],
            "setting maximum fragments failed (Operation not permitted)",
        ),
        (
            "ipf-set-max-nfrags",
            &[][..],
            "parameter missing for maximum fragments (Invalid argument)",
        ),
    ] {
        assert_eq!(e.run(cmd, args).unwrap_err(), err, "{cmd} {args:?}");
    }
    assert_eq!(e.ipf.settings(), crate::ipf::FragSettings::default());
}
