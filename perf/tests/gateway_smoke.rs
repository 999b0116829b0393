//! Smoke test of `ctgate-perf gateway --quick`: the real ctgate binary runs in gateway mode
//! over net_pcap for about 2 s and the summary line has real, positive figures and one
//! connection per flow. (Speed itself is never asserted.)
//!
//! DPDK tests in the main crate serialise on a lock in tests/common, which this crate
//! cannot use: this test runs ctgate under its own unique `--file-prefix` and control
//! socket (in a temporary directory), and removes /var/run/dpdk/<prefix>* afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

#[test]
fn quick_gateway_run_prints_plausible_figures() {
    let ctgate = Path::new(env!("CARGO_BIN_EXE_ctgate-perf")).with_file_name("ctgate");
    // The ctgate binary is built by `cargo build --workspace` (the README's test command
    // builds everything first); a lone `cargo test -p ctgate-perf` may not have it.
    assert!(
        ctgate.is_file(),
        "no {}: build the workspace first (cargo build --workspace)",
        ctgate.display()
    );
    let prefix = format!("ctgate-perf-gw-smoke-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(["gateway", "--quick", "--file-prefix", &prefix])
        .output()
        .unwrap();
    if let Ok(dir) = std::fs::read_dir("/var/run/dpdk") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<HashMap<&str, &str>> = stdout
        .lines()
        .filter(|l| l.starts_with("bench=gateway "))
        .map(|l| {
            l.split_whitespace()
                .map(|kv| kv.split_once('=').unwrap_or_else(|| panic!("{kv} in {l}")))
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let l = &lines[0];
    let num = |k: &str| -> f64 {
        let v = l.get(k).unwrap_or_else(|| panic!("no {k} in {l:?}"));
        v.parse()
            .unwrap_or_else(|_| panic!("{k}={v} is not a number in {l:?}"))
    };
    assert_eq!(l["workers"], "1");
    assert_eq!(l["source"], "pcap");
    let mpps = num("mpps");
    assert!(mpps.is_finite() && mpps > 0.0, "{l:?}");
    assert_eq!(num("per_worker_mpps"), mpps, "{l:?}");
    assert_eq!(num("conns"), num("flows"), "one connection per flow: {l:?}");
    // `dropped` is the workers' drop count, `drops` its non-zero reasons (`reason:n,…`
    // or `none`): they add up.
    let dropped: u64 = l["dropped"].parse().expect("dropped is a count");
    let by_reason: u64 = match l["drops"] {
        "none" => 0,
        d => d
            .split(',')
            .map(|r| {
                let (_, n) = r.split_once(':').unwrap_or_else(|| panic!("{r} in {l:?}"));
                n.parse::<u64>().unwrap_or_else(|_| panic!("{r} in {l:?}"))
            })
            .sum(),
    };
    assert_eq!(dropped, by_reason, "drops by reason: {l:?}");
}
