//! `ctgate-perf nat --quick` prints its two lines per case with real, positive figures,
//! and its own checks (every connection created, every NAT packet translated) held.

use std::process::Command;

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}

#[test]
fn nat_quick_reports_creation_and_established_costs() {
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(["nat", "--quick"])
        .output()
        .expect("run ctgate-perf");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in [1000, 5000] {
        let create = stdout
            .lines()
            .find(|l| l.starts_with(&format!("bench=nat_create conns={n} ")))
            .unwrap_or_else(|| panic!("no nat_create line for {n}:\n{stdout}"));
        let plain = field(create, "plain_conns_per_s");
        let nat = field(create, "nat_conns_per_s");
        assert!(plain > 0.0 && nat > 0.0, "{create}");
        assert!(
            (field(create, "cost_ratio") - plain / nat).abs() < 0.02,
            "{create}"
        );
        let est = stdout
            .lines()
            .find(|l| l.starts_with(&format!("bench=nat_established conns={n} ")))
            .unwrap_or_else(|| panic!("no nat_established line for {n}:\n{stdout}"));
        assert!(
            field(est, "plain_mpps") > 0.0 && field(est, "nat_mpps") > 0.0,
            "{est}"
        );
    }
}
