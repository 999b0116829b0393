//! Smoke test of `ctgate-perf compare-ovs --quick`: a private OVS-DPDK instance and the
//! real ctgate binary each forward 1000 established flows for a few seconds per case; the
//! summary lines have real, positive figures, a consistent ratio and one connection per
//! flow on both sides, and nothing the run started is left behind (processes, temporary
//! and DPDK runtime directories). Speed itself is never asserted.
//!
//! Needs Open vSwitch with DPDK (`ci/setup` installs openvswitch-switch-dpdk; compare-ovs
//! installs it itself when missing) and root (DPDK, `unshare --net`).

mod common;

use std::process::{Command, Stdio};

use common::{ctgate_binary, kv_lines, num};

/// PIDs of processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                v.push((pid, c));
            }
        }
    }
    v
}

#[test]
fn quick_compare_ovs_prints_both_sides() {
    ctgate_binary();
    let prefix = format!("ctgate-perf-ovs-smoke-{}", std::process::id());
    let child = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(["compare-ovs", "--quick", "--file-prefix", &prefix])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    // Nothing left behind: its scratch directory (which every OVS daemon's command line
    // names), processes, DPDK runtime directories.
    let scratch = std::env::temp_dir().join(format!("ctgate-perf-ovs-{pid}"));
    let left = processes_with(&scratch.display().to_string());
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(!scratch.exists(), "{} left behind", scratch.display());
    if let Ok(dir) = std::fs::read_dir("/var/run/dpdk") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
                panic!("DPDK runtime directory /var/run/dpdk/{name} left behind");
            }
        }
    }

    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("[compare-ovs 1/3 "), "progress: {stderr}");
    for l in stdout.lines().filter(|l| l.starts_with("case=")) {
        let keys: Vec<&str> = l
            .split_whitespace()
            .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
            .collect();
        assert_eq!(
            keys[..6],
            [
                "case",
                "flows",
                "source",
                "ovs_mpps",
                "ctgate_mpps",
                "ratio"
            ],
            "{l}"
        );
    }
    let lines = kv_lines(&stdout, "case=");
    let cases: Vec<&str> = lines.iter().map(|l| l["case"].as_str()).collect();
    assert_eq!(cases, ["plain", "ct", "snat"], "{stdout}");
    for l in &lines {
        let num = |k: &str| num(l, k);
        assert_eq!(l["flows"], "1000", "{l:?}");
        // The default source: the generator process over memif, which reports per side.
        assert_eq!(l["source"], "memif", "{l:?}");
        for side in ["ovs", "ctgate"] {
            assert!(num(&format!("{side}_gen_mpps")) > 0.0, "{l:?}");
            assert!(num(&format!("{side}_gen_cpu")) > 0.0, "{l:?}");
            let full = num(&format!("{side}_gen_full"));
            assert!((0.0..=1.0).contains(&full), "{l:?}");
        }
        // The generator's own ceiling, measured before the cases, over ctgate's rate.
        let ceiling = num("gen_ceiling_mpps");
        assert!(ceiling > 0.0, "{l:?}");
        let cr = num("ceiling_ratio");
        assert!(
            (cr - ceiling / num("ctgate_mpps")).abs() <= 0.006 + 0.01 * cr,
            "{l:?}"
        );
        let (o, c, r) = (num("ovs_mpps"), num("ctgate_mpps"), num("ratio"));
        assert!(o.is_finite() && o > 0.0, "{l:?}");
        assert!(c.is_finite() && c > 0.0, "{l:?}");
        assert!(
            (r - c / o).abs() <= 0.006 + 0.01 * r,
            "ratio is not ctgate/ovs: {l:?}"
        );
        // Each run in order, and the machine's state during it (a cache line's move
        // between CPUs 0 and 1, ns): one of each per run, the median the line's.
        for (side, median) in [("ovs", o), ("ctgate", c)] {
            let list = |k: &str| -> Vec<f64> {
                l[&format!("{side}_{k}")]
                    .split(',')
                    .map(|v| v.parse().unwrap_or_else(|_| panic!("{side}_{k}: {l:?}")))
                    .collect()
            };
            let (mut runs, xcore) = (list("runs"), list("xcore_ns"));
            assert_eq!(runs.len() as f64, num("repeat"), "{l:?}");
            assert_eq!(xcore.len(), runs.len(), "{l:?}");
            assert!(xcore.iter().all(|&ns| ns >= 1.0), "{l:?}");
            runs.sort_by(f64::total_cmp);
            let n = runs.len();
            let mid = (runs[(n - 1) / 2] + runs[n / 2]) / 2.0;
            assert!((mid - median).abs() < 0.002, "{l:?}");
        }
        assert!(num("ceiling_xcore_ns") >= 1.0, "{l:?}");
        assert!(num("ovs_min") <= o && o <= num("ovs_max"), "{l:?}");
        assert!(num("ctgate_min") <= c && c <= num("ctgate_max"), "{l:?}");
        // Runs retried after a failure: at most one a side and run.
        let retried = num("retried");
        assert!(retried >= 0.0 && retried <= 2.0 * num("repeat"), "{l:?}");
        if l["case"] == "plain" {
            continue;
        }
        for k in ["ovs_conns", "ctgate_conns"] {
            let n = num(k);
            assert!(
                (990.0..=1010.0).contains(&n),
                "{k}: one connection per flow expected: {l:?}"
            );
        }
    }
}
