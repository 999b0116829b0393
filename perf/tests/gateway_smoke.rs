//! Smoke test of `ctgate-perf gateway --quick`: the real ctgate binary runs in gateway mode
//! over net_pcap for about 2 s and the summary line has real, positive figures and one
//! connection per flow. (Speed itself is never asserted.)
//!
//! DPDK tests in the main crate serialise on a lock in tests/common, which this crate
//! cannot use: this test runs ctgate under its own unique `--file-prefix` and control
//! socket (in a temporary directory), and removes /var/run/dpdk/<prefix>* afterwards.

mod common;

use std::process::Command;

use common::{ctgate_binary, kv_lines, num};

#[test]
fn quick_gateway_run_prints_plausible_figures() {
    ctgate_binary();
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
    let lines = kv_lines(&stdout, "bench=gateway ");
    assert_eq!(lines.len(), 1, "{stdout}");
    let l = &lines[0];
    let num = |k: &str| num(l, k);
    assert_eq!(l["workers"], "1");
    assert_eq!(l["source"], "pcap");
    let mpps = num("mpps");
    assert!(mpps.is_finite() && mpps > 0.0, "{l:?}");
    assert_eq!(num("per_worker_mpps"), mpps, "{l:?}");
    assert_eq!(num("conns"), num("flows"), "one connection per flow: {l:?}");
    // `dropped` is the workers' drop count, `drops` its non-zero reasons (`reason:n,…`
    // or `none`): they add up.
    let dropped: u64 = l["dropped"].parse().expect("dropped is a count");
    let by_reason: u64 = match l["drops"].as_str() {
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
