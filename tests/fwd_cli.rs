//! The command-line contract of the real binary: help, version, and one-line errors with
//! exit code 2 for bad arguments.
#![cfg(feature = "dpdk")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn ctgate(args: &[&str]) -> std::process::Output {
    Command::new(ctgate_bin())
        .args(args)
        .output()
        .expect("run ctgate")
}

#[test]
fn help_documents_eal_and_ctgate_options_with_examples() {
    for args in [&["--help"][..], &["-h"], &["--no-pci", "--", "--help"]] {
        let out = ctgate(args);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "[EAL options] -- [ctgate options]",
            "--vdev",
            "--lcores",
            "--pair A:B",
            "--next-hop-mac MAC",
            "--exit-when-idle MS",
            "--duration SECS",
            "--quiet",
            "Examples:",
        ] {
            assert!(text.contains(needle), "help lacks {needle:?}:\n{text}");
        }
    }
}

#[test]
fn version_names_ctgate_and_dpdk() {
    let out = ctgate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ctgate ")
            && text.contains("built against DPDK 2")
            && text.contains("running DPDK 2"),
        "{text}"
    );
}

#[test]
fn bad_ctgate_arguments_exit_2_with_one_line() {
    for args in [
        &["--", "--bogus"][..],
        &["--", "--pair", "0-1"],
        &["--", "--next-hop-mac", "nope"],
        &["--", "--duration", "-1"],
        &["--", "--exit-when-idle"],
    ] {
        let out = ctgate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ctgate: "), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn bad_eal_arguments_exit_2() {
    let _lock = dpdk_lock();
    let s = Scratch::new("badeal");
    let mut eal = s.eal_args("0,1");
    eal.push("--definitely-not-an-eal-option".into());
    let out = run_ctgate(&eal, &[], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("ctgate: cannot initialise DPDK"),
        "{out}"
    );
}

#[test]
fn no_worker_lcore_is_a_clear_error() {
    let _lock = dpdk_lock();
    let s = Scratch::new("noworker");
    let eal = s.null_eal("0", 2);
    let out = run_ctgate(&eal, &[], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stderr.contains("no worker lcore"), "{out}");
}

#[test]
fn odd_port_count_needs_explicit_pairs() {
    let _lock = dpdk_lock();
    let s = Scratch::new("oddports");
    let eal = s.null_eal("0,1", 1);
    let out = run_ctgate(&eal, &[], Duration::from_secs(30));
    // Without --pair it is the gateway on its embedded config, whose second port is
    // missing: a configuration error (its line, exit 2) that points at --pair.
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--pair"), "{out}");
    // A hairpin pair makes one port enough.
    let out = run_ctgate(
        &eal,
        &["--pair", "0:0", "--duration", "0.3", "--quiet"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out}");
    assert!(
        out.port_counter(0, "rx") > 0 && out.port_counter(0, "tx") > 0,
        "{out}"
    );
}
