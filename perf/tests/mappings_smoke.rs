//! `ctgate-perf mappings` prints one line per case with a positive per-connection cost,
//! and its own check held (the table left at the live count after the churn).

mod common;

use common::{kv_lines, num};
use std::process::Command;

#[test]
fn mappings_reports_a_cost_per_connection_for_each_live_count() {
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args([
            "mappings", "--live", "100,5000", "--max", "8192", "--conns", "20000",
        ])
        .output()
        .expect("run ctgate-perf");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines = kv_lines(&stdout, "bench=mappings ");
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, live) in lines.iter().zip([100.0, 5000.0]) {
        assert_eq!(num(line, "max"), 8192.0, "{line:?}");
        assert_eq!(num(line, "live"), live, "{line:?}");
        assert_eq!(num(line, "len"), live, "{line:?}");
        assert!(num(line, "ns_per_conn") > 0.0, "{line:?}");
    }
}

#[test]
fn mappings_refuses_more_live_mappings_than_the_maximum() {
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(["mappings", "--live", "200", "--max", "100"])
        .output()
        .expect("run ctgate-perf");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--live 200 must be at most --max 100"),
        "{stderr}"
    );
}
