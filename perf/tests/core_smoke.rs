//! Smoke test of `ctgate-perf core --quick`: the binary runs to the end and prints every
//! expected summary line, with plausible positive figures. (Speed itself is never asserted.)

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{kv_lines, num};

fn perf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
}

fn parse(stdout: &str) -> Vec<HashMap<String, String>> {
    kv_lines(stdout, "bench=")
}

/// The one line whose fields include all of `want`.
fn find<'a>(
    lines: &'a [HashMap<String, String>],
    want: &[(&str, &str)],
) -> &'a HashMap<String, String> {
    let hits: Vec<_> = lines
        .iter()
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(hits.len(), 1, "lines matching {want:?}: {hits:?}");
    hits[0]
}

#[test]
fn quick_run_prints_every_case_with_plausible_figures() {
    let out = perf().args(["core", "--quick"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines = parse(&stdout);
    // Progress goes to stderr, with the case count.
    assert!(stderr.contains("[core 1/20 "), "{stderr}");
    assert!(stderr.contains("[core 20/20 "), "{stderr}");
    // 2 conns values × (memory + 2 create + refuse + 5 established) + 2 sweep cases.
    assert_eq!(lines.len(), 20, "{stdout}");

    for conns in ["1000", "20000"] {
        let m = find(&lines, &[("bench", "memory"), ("conns", conns)]);
        // Each record alone is 160 bytes and every record's page is touched.
        let b = num(m, "bytes_per_conn");
        assert!((150.0..5000.0).contains(&b), "{m:?}");
        assert!(num(m, "buckets") >= 64.0, "{m:?}");

        for t in ["1", "2"] {
            let c = find(
                &lines,
                &[("bench", "create"), ("conns", conns), ("threads", t)],
            );
            for k in [
                "conns_per_s",
                "refill_conns_per_s",
                "oncpu_conns_per_s",
                "oncpu_refill_conns_per_s",
                "reps",
            ] {
                assert!(num(c, k) >= 1.0, "{k}: {c:?}");
            }
            if t == "2" {
                assert!(
                    num(c, "per_thread") > 0.0 && num(c, "scaling") > 0.0,
                    "{c:?}"
                );
                // The two threads' CPUs: a cache line's move between them, in ns.
                assert!(num(c, "xcore_ns") >= 1.0, "{c:?}");
            } else {
                assert!(num(c, "sweep_removed_per_s") > 0.0, "{c:?}");
            }
        }

        for p in ["on", "off"] {
            let e = find(
                &lines,
                &[
                    ("bench", "established"),
                    ("conns", conns),
                    ("threads", "1"),
                    ("prefetch", p),
                ],
            );
            let mpps = num(e, "mpps");
            assert!(mpps > 0.01 && mpps < 1000.0, "{e:?}");
            // CPU time never exceeds wall time (1% slack for clock granularity).
            assert!(num(e, "oncpu_mpps") >= mpps * 0.99, "{e:?}");
            // A count of involuntary context switches: a whole number.
            assert!(e["preempted"].parse::<u64>().is_ok(), "{e:?}");
            assert!(!e.contains_key("flows"), "{e:?}");
        }
        for (p, flows) in [("on", "shared"), ("on", "disjoint"), ("off", "disjoint")] {
            let e = find(
                &lines,
                &[
                    ("bench", "established"),
                    ("conns", conns),
                    ("threads", "2"),
                    ("prefetch", p),
                    ("flows", flows),
                ],
            );
            let (mpps, per) = (num(e, "mpps"), num(e, "per_thread"));
            assert!(mpps > 0.01 && mpps < 1000.0, "{e:?}");
            assert!((per * 2.0 - mpps).abs() < 0.02 + mpps * 0.01, "{e:?}");
            assert!(num(e, "per_thread_min") <= per + 0.01, "{e:?}");
            assert!(num(e, "scaling") > 0.0, "{e:?}");
            assert!(num(e, "xcore_ns") >= 1.0, "{e:?}");
        }
    }

    for (conns, live) in [("1000", "500"), ("20000", "10000")] {
        // Half the flows fill the table to its limit; every creation after them is refused.
        let r = find(&lines, &[("bench", "refuse"), ("conns", live)]);
        assert!(num(r, "refused") >= 500.0, "{conns}: {r:?}");
        assert!(
            num(r, "mpps") > 0.01 && num(r, "ns_per_refusal") > 0.0,
            "{r:?}"
        );
    }

    for (expired, removed) in [("none", 0.0), ("half", 10_000.0)] {
        let s = find(
            &lines,
            &[("bench", "sweep"), ("conns", "20000"), ("expired", expired)],
        );
        assert_eq!(num(s, "removed"), removed, "{s:?}");
        assert!(num(s, "mpps_alone") > 0.01, "{s:?}");
        assert!(num(s, "mpps_during_sweep") > 0.01, "{s:?}");
        assert!(
            num(s, "oncpu_mpps_alone") >= num(s, "mpps_alone") * 0.99,
            "{s:?}"
        );
        assert!(
            num(s, "oncpu_mpps_during_sweep") >= num(s, "mpps_during_sweep") * 0.99,
            "{s:?}"
        );
        assert!(num(s, "sweep_ms") > 0.0, "{s:?}");
        assert!(num(s, "passes") >= 1.0, "{s:?}");
        assert!(
            num(s, "max_burst_us_during") >= num(s, "p999_burst_us_during") - 0.1,
            "{s:?}"
        );
    }
}

#[test]
fn json_lines_carry_the_same_fields() {
    let out = perf()
        .args([
            "core",
            "--quick",
            "--json",
            "--only",
            "memory,established",
            "--conns",
            "3000",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(r#"{"bench":"memory","conns":3000,"bytes_per_conn":"#)
            && lines[0].ends_with('}'),
        "{}",
        lines[0]
    );
    for (line, p) in lines[1..].iter().zip(["on", "off"]) {
        let head =
            format!(r#"{{"bench":"established","conns":3000,"threads":1,"prefetch":"{p}","mpps":"#);
        assert!(line.starts_with(&head) && line.ends_with('}'), "{line}");
        let rest = &line[head.len()..];
        let mpps: f64 = rest[..rest.find(',').unwrap()].parse().unwrap();
        assert!(rest.contains(r#","oncpu_mpps":"#), "{line}");
        assert!(rest.contains(r#","preempted":"#), "{line}");
        assert!(mpps > 0.01, "{line}");
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = perf().args(["core", "--conns", "1"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--conns/--sweep-conns 1: must be between 2 and 2^30-1"),
        "{stderr}"
    );
}

#[test]
fn json_parses_and_plot_draws_the_measured_figures() {
    let dir = std::env::temp_dir().join(format!("ctgate-core-plot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = perf()
        .args([
            "core",
            "--quick",
            "--json",
            "--only",
            "create,established",
            "--conns",
            "1000",
            "--conns",
            "3000",
            "--prefetch",
            "on",
            "--plot",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Per conns: create × 2 threads, established 1 thread (on) + 2 threads (shared, disjoint).
    assert_eq!(lines.len(), 2 * (2 + 1 + 2), "{stdout}");
    for l in &lines {
        for k in ["bench", "conns", "threads"] {
            assert!(l.get(k).is_some(), "no {k}: {l}");
        }
        match l["bench"].as_str().unwrap() {
            "create" => assert!(l["conns_per_s"].as_u64().unwrap() > 0, "{l}"),
            "established" => assert!(l["mpps"].as_f64().unwrap() > 0.0, "{l}"),
            other => panic!("unexpected bench {other}"),
        }
    }
    let create = std::fs::read_to_string(dir.join("core_create.svg")).unwrap();
    assert!(create.contains("new connections/s against threads"));
    for s in [">\n1k conns\n<", ">\n3k conns\n<"] {
        assert!(create.contains(s), "legend {s:?} in core_create.svg");
    }
    let est = std::fs::read_to_string(dir.join("core_established.svg")).unwrap();
    assert!(est.contains(">\nprefetch on\n<"), "{est}");
    // --prefetch on: no "off" figures, so no "off" series.
    assert!(!est.contains("prefetch off"), "{est}");
    assert!(stderr.contains("plot: wrote"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plot_into_an_impossible_directory_fails_before_measuring() {
    let out = perf()
        .args(["core", "--quick", "--plot", "/proc/no-such-dir/plots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--plot /proc/no-such-dir/plots"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing measured");
}
