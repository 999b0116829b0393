//! End-to-end runs of `ctgate-perf datapath --quick`: ctgate's gateway in the benchmark's
//! own process over ring ports, fed by the in-process generator. The lines must carry
//! real figures: packets delivered, one connection per flow, no drops on well-formed
//! traffic, latency percentiles in order. Speed is never asserted.
//!
//! Each run uses its own EAL `--file-prefix`; the runs of this file take a lock so they
//! never compete with each other for the two CPUs (a starved sink could overflow a ring).

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{kv_lines, num};

static SERIAL: Mutex<()> = Mutex::new(());

fn run(args: &[&str]) -> Output {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("dp-test-{}-{}", std::process::id(), args.join("").len());
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .arg("datapath")
        .args(args)
        .args(["--file-prefix", &prefix])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(std::path::Path::new("/var/run/dpdk").join(&prefix));
    out
}

/// The `bench=NAME` lines of a successful run, as maps.
fn lines(out: &Output, bench: &str) -> Vec<HashMap<String, String>> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let want = format!("bench={bench} ");
    // stdout holds the result lines only.
    for l in stdout.lines() {
        assert!(
            l.starts_with("bench=") || l.starts_with('{'),
            "stray line {l:?}"
        );
    }
    kv_lines(&stdout, &want)
}

fn check_latency(l: &HashMap<String, String>) {
    assert!(num(l, "latency_samples") > 0.0, "{l:?}");
    let (p50, p99, p999, max) = (
        num(l, "p50_us"),
        num(l, "p99_us"),
        num(l, "p999_us"),
        num(l, "max_us"),
    );
    assert!(
        0.0 <= p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{l:?}"
    );
}

#[test]
fn steady_udp_with_replies_makes_one_connection_per_flow_and_drops_nothing() {
    // Paced far below any plausible capacity: a ring holds 4095 packets, so even a sink
    // starved for 200 ms on a busy machine does not overflow one.
    let out = run(&["--quick", "--rate", "0.01"]);
    let ls = lines(&out, "datapath");
    assert_eq!(ls.len(), 1);
    let l = &ls[0];
    assert_eq!(l["mode"], "steady");
    assert_eq!(l["proto"], "udp");
    assert_eq!(l["workers"], "1");
    assert_eq!(num(l, "flows"), 1000.0);
    assert!(num(l, "delivered") > 0.0, "{l:?}");
    assert!(num(l, "mpps") > 0.0, "{l:?}");
    assert_eq!(num(l, "conns"), 1000.0, "one connection per flow: {l:?}");
    assert_eq!(num(l, "created"), 1000.0, "{l:?}");
    assert_eq!(num(l, "drops"), 0.0, "{l:?}");
    for (k, v) in l {
        if k.starts_with("drop_") {
            assert_eq!(v, "0", "{k} in {l:?}");
        }
    }
    assert_eq!(num(l, "foreign"), 0.0);
    // The generator's and the worker's CPUs: a cache line's move between them, in ns.
    assert!(num(l, "xcore_ns") >= 1.0, "{l:?}");
    // A share of one CPU per thread, or `-` where /proc could not tell.
    for k in ["worker_cpu", "gen_cpu"] {
        if l[k] != "-" {
            let v = num(l, k);
            assert!(v > 0.0 && v <= 1.2, "{k} in {l:?}");
        }
    }
    check_latency(l);
}

#[test]
fn new_tcp_connections_pass_handshake_and_teardown_without_invalid_drops() {
    let out = run(&[
        "--quick",
        "--new-flows",
        "--proto",
        "tcp",
        "--rate",
        "0.005",
    ]);
    let ls = lines(&out, "datapath");
    assert_eq!(ls.len(), 1);
    let l = &ls[0];
    assert_eq!(l["mode"], "cps");
    assert_eq!(l["flows"], "new");
    assert!(num(l, "created") > 0.0 && num(l, "cps") > 0.0, "{l:?}");
    // Every SYN is a new connection, answered through the whole handshake and teardown
    // (6 packets a connection), so nothing is invalid or refused.
    for k in [
        "drop_invalid",
        "drop_policy_denied",
        "drop_max_conns",
        "drop_nat_exhausted",
        "refused_max_conns",
        "refused_table_full",
    ] {
        assert_eq!(num(l, k), 0.0, "{k} in {l:?}");
    }
    assert!(
        num(l, "delivered") >= 5.0 * num(l, "created") / 2.0,
        "{l:?}"
    );
    check_latency(l);
}

#[test]
fn json_lines_parse_and_loopback_reports_the_generator_ceiling() {
    let out = run(&["--quick", "--loopback", "--json", "--proto", "mix"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objs.len(), 1, "{stdout}");
    let o = &objs[0];
    assert_eq!(o["bench"], "datapath-generator");
    assert!(o["mpps"].as_f64().unwrap() > 0.0, "{o}");
    assert!(o["delivered"].as_u64().unwrap() > 0, "{o}");
    assert!(o["p50_us"].as_f64().unwrap() <= o["max_us"].as_f64().unwrap());
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for args in [
        &["--size", "20"][..],
        &["--reply-fraction", "1.5"],
        &["--proto", "mix", "--mix", "sctp=1"],
        &["--load", "0"],
        &["--rate=-1"],
        &["--flows", "0"],
        &["--seconds", "nan"],
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        let msg: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(msg.len(), 1, "{args:?}: {stderr}");
        assert!(msg[0].starts_with("ctgate-perf: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn an_interrupted_run_marks_its_line_and_exits_non_zero() {
    // Both sources: the in-process generator, and the generator process over memif.
    for source in ["rings", "memif"] {
        interrupted_run_marks_its_line(source);
    }
}

fn interrupted_run_marks_its_line(source: &str) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("dp-test-{}-interrupted-{source}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args([
            "datapath",
            "--quick",
            "--source",
            source,
            "--file-prefix",
            &prefix,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SIGINT as soon as the measurement window begins (2 s long with --quick).
    let mut stderr = String::new();
    let mut signalled = false;
    for l in BufReader::new(child.stderr.take().unwrap()).lines() {
        let l = l.unwrap();
        stderr.push_str(&l);
        stderr.push('\n');
        if !signalled && l.ends_with("] measuring") {
            // Our own child, not reaped yet: the PID is its own.
            rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::INT,
            )
            .unwrap();
            signalled = true;
        }
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(std::path::Path::new("/var/run/dpdk").join(&prefix));

    assert!(signalled, "the window never began:\n{stderr}");
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line, for the case under way: {stdout}");
    let keys: Vec<&str> = lines[0]
        .split_whitespace()
        .map(|kv| kv.split_once('=').unwrap_or_else(|| panic!("{kv}")).0)
        .collect();
    assert_eq!(keys.first(), Some(&"bench"), "{stdout}");
    assert!(lines[0].starts_with("bench=datapath "), "{stdout}");
    // The usual keys, then the mark as the last one.
    for k in ["mpps", "delivered", "p99_us", "secs", "warmup_secs"] {
        assert!(keys.contains(&k), "no {k}: {stdout}");
    }
    assert!(lines[0].ends_with(" interrupted=1"), "{stdout}");
}

/// `--size 3000 --mtu 1500`: every datagram crosses as three fragments both ways (the
/// gateway reassembles to track, then sends the fragments on): one connection per flow,
/// no drops, nothing foreign at the sinks, and the appended keys say how many datagrams
/// went through.
#[test]
fn fragmented_udp_datagrams_cross_both_ways_without_drops() {
    let out = run(&[
        "--quick", "--rate", "0.006", "--size", "3000", "--mtu", "1500",
    ]);
    let ls = lines(&out, "datapath");
    assert_eq!(ls.len(), 1);
    let l = &ls[0];
    assert_eq!(l["size"], "3000");
    assert_eq!(l["mtu"], "1500");
    assert_eq!(l["frags_per_datagram"], "3");
    assert_eq!(num(l, "conns"), 1000.0, "one connection per flow: {l:?}");
    assert_eq!(num(l, "drops"), 0.0, "{l:?}");
    assert_eq!(num(l, "foreign"), 0.0, "{l:?}");
    assert_eq!(num(l, "nombuf"), 0.0, "{l:?}");
    let delivered = num(l, "delivered");
    assert!(delivered > 0.0, "{l:?}");
    // Datagrams counted are first fragments: a third of the fragments delivered, give
    // or take the datagrams cut by the window's edges.
    let per_s = num(l, "datagrams_per_s");
    let secs = num(l, "secs");
    assert!(per_s > 0.0, "{l:?}");
    assert!(
        (per_s * secs * 3.0 - delivered).abs() <= 3.0 * 64.0 + delivered * 0.02,
        "datagrams x 3 = fragments delivered: {l:?}"
    );
    check_latency(l);
    // The keys every datapath line has come first, unchanged; ours are the last three.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with(&format!(
            "mtu=1500 frags_per_datagram=3 datagrams_per_s={}",
            l["datagrams_per_s"]
        )),
        "{stdout}"
    );
}

#[test]
fn mtu_needs_a_udp_datagram_larger_than_one_fragment() {
    for args in [
        &["--quick", "--size", "1000", "--mtu", "1500"][..],
        &[
            "--quick", "--size", "3000", "--mtu", "1500", "--proto", "tcp",
        ][..],
        &["--quick", "--size", "3000", "--mtu", "100"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--mtu") || err.contains("--size"), "{err}");
    }
}

#[test]
fn memif_source_forwards_the_generator_process_flows_through_the_gateway() {
    // ctgate's pipeline in the benchmark's process, its two ports memif clients of the
    // generator process (`ctgate-perf gen`), which fails the run if any frame comes back
    // not as it sent it.
    let out = run(&["--quick", "--source", "memif"]);
    let ls = lines(&out, "datapath");
    assert_eq!(ls.len(), 1);
    let l = &ls[0];
    assert_eq!(l["source"], "memif");
    assert_eq!(l["mode"], "steady");
    assert_eq!(num(l, "flows"), 1000.0);
    // Every flow's packet created its connection and its reply found it: the only drops
    // are replies of the first round, which arrive before their connection exists (to
    // the SNAT address, so local), and, unpaced, packets the generator's rings had no
    // room for when it lost its CPU (tx_full).
    assert_eq!(num(l, "conns"), 1000.0, "{l:?}");
    assert_eq!(num(l, "created"), 1000.0, "{l:?}");
    assert!(num(l, "drop_local") <= 1000.0, "{l:?}");
    assert_eq!(
        num(l, "drops"),
        num(l, "drop_local") + num(l, "drop_tx_full"),
        "{l:?}"
    );
    assert!(!l.contains_key("mtu") && !l.contains_key("sync_msgs"));
    // Forwarded and counted in the window, many rounds of the flows both ways.
    let delivered = num(l, "delivered");
    assert!(delivered > 2000.0, "{l:?}");
    let secs = num(l, "secs");
    let mpps = num(l, "mpps");
    assert!(secs > 0.0, "{l:?}");
    assert!(
        (mpps - delivered / secs / 1e6).abs() <= 0.001 + mpps * 0.01,
        "{l:?}"
    );
    assert!(num(l, "sent_mpps") >= mpps * 0.9, "{l:?}");
    assert_eq!(num(l, "foreign"), 0.0);
    // The generator process's own CPU share and the share of its bursts not taken whole.
    let gen_cpu = num(l, "gen_cpu");
    assert!(gen_cpu > 0.0 && gen_cpu <= 1.2, "{l:?}");
    assert!((0.0..=1.0).contains(&num(l, "gen_full")), "{l:?}");
    // Its frames carry no timestamp.
    assert_eq!(num(l, "latency_samples"), 0.0);
    assert_eq!(l["p99_us"], "-");
    // The generator process is gone with its DPDK runtime directory.
    let prefix = format!("dp-test-{}-", std::process::id());
    if let Ok(dir) = std::fs::read_dir("/var/run/dpdk") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !(name.starts_with(&prefix) && name.ends_with("-gen")),
                "DPDK runtime directory {name} left behind"
            );
        }
    }
}

#[test]
fn memif_source_refuses_new_flows_naming_why() {
    for (args, why) in [
        (&["--source", "memif", "--new-flows"][..], "prebuilt frames"),
        (
            &["--source", "memif", "--flows", "1000,2000"],
            "one flow count",
        ),
        (
            &["--source", "memif", "--quick", "--proto", "tcp"],
            "64-byte UDP",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        let msg: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(msg.len(), 1, "{args:?}: {stderr}");
        assert!(
            msg[0].contains("--source memif") && msg[0].contains(why),
            "{stderr}"
        );
    }
}
