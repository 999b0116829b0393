//! `ctgate-perf step` drives the real gateway step over established SNAT flows: every
//! measured packet is forwarded, exactly one connection exists per flow, and the line's
//! figures are consistent with each other.

use std::process::Command;

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn num(line: &str, key: &str) -> f64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(args)
        .output()
        .expect("run ctgate-perf");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn step_forwards_every_established_packet_with_one_connection_per_flow() {
    for proto in ["udp", "tcp", "icmp", "mix"] {
        let out = run(&[
            "step",
            "--flows",
            "3000",
            "--seconds",
            "0.2",
            "--proto",
            proto,
        ]);
        let line = out
            .lines()
            .find(|l| l.starts_with("bench=step flows=3000 "))
            .unwrap_or_else(|| panic!("no step line:\n{out}"));
        assert_eq!(field(line, "proto"), proto, "{line}");
        assert_eq!(num(line, "conns"), 3000.0, "{line}");
        assert_eq!(num(line, "dropped"), 0.0, "{line}");
        assert!(num(line, "forwarded") >= 2.0 * 3000.0, "{line}");
        let mpps = num(line, "mpps");
        assert!(mpps > 0.0, "{line}");
        // Both printed rounded (mpps to 0.01, ns to 0.1): consistent within that rounding.
        let ns = num(line, "ns_per_pkt");
        let (lo, hi) = (
            1e3 / (mpps + 0.005) - 0.05,
            1e3 / (mpps - 0.005).max(1e-9) + 0.05,
        );
        assert!(lo <= ns && ns <= hi, "{line}");
    }
}

#[test]
fn step_json_lines_parse_with_the_same_keys() {
    let out = run(&["step", "--quick", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().expect("a line"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["bench"], "step");
    assert_eq!(v["flows"], 1000);
    assert_eq!(v["conns"], 1000);
    assert_eq!(v["dropped"], 0);
    assert!(v["mpps"].as_f64().unwrap() > 0.0);
}

#[test]
fn step_refuses_a_zero_flow_count() {
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args(["step", "--flows", "0"])
        .output()
        .expect("run ctgate-perf");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--flows"));
}
