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

#[test]
fn nat_json_lines_parse_with_the_same_keys_and_plot_draws_both_charts() {
    let dir = std::env::temp_dir().join(format!("ctgate-nat-plot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(["nat", "--quick", "--json", "--plot"])
        .arg(&dir)
        .output()
        .expect("run ctgate-perf");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Progress: one stderr line per case.
    for i in 1..=4 {
        assert!(stderr.contains(&format!("[nat {i}/4 ")), "{stderr}");
    }
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for (l, (bench, n)) in lines.iter().zip([
        ("nat_create", 1000),
        ("nat_established", 1000),
        ("nat_create", 5000),
        ("nat_established", 5000),
    ]) {
        assert_eq!(l["bench"], bench, "{l}");
        assert_eq!(l["conns"], n, "{l}");
        assert_eq!(l["threads"], 1, "{l}");
        let keys: &[&str] = if bench == "nat_create" {
            &["plain_conns_per_s", "nat_conns_per_s", "cost_ratio"]
        } else {
            &["plain_mpps", "nat_mpps", "cost_ratio"]
        };
        for k in keys {
            assert!(l[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {l}");
        }
    }
    for name in ["nat_create", "nat_established"] {
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg")))
            .unwrap_or_else(|e| panic!("{name}.svg: {e}"));
        for s in [">\nplain\n<", ">\nSNAT\n<", ">\n1k\n<"] {
            assert!(svg.contains(s), "{s:?} in {name}.svg");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nat_bad_arguments_are_clear_errors() {
    for (args, want) in [
        (
            &["--conns", "0"][..],
            "--conns 0: must be between 1 and 2^30-1",
        ),
        (&["--seconds=-1"], "--seconds must be a positive number"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
            .arg("nat")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
