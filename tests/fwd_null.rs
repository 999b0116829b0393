//! net_null with two workers: counters grow on both workers' queues, and SIGINT stops the
//! gateway cleanly (exit code 0, final counters printed).
#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn two_workers_forward_until_sigint() {
    let _lock = dpdk_lock();
    let s = Scratch::new("null2w");
    // Three lcores on two CPUs: control lcore 0 on CPU 0, workers 1 and 2 on CPU 1.
    let eal = s.null_eal("0@0,1@1,2@1", 2);
    let mut run = Running::start(
        &eal,
        &["--pair", "0:1", "--next-hop-mac", "02:00:00:00:00:01"],
    );

    let t1 = run
        .wait_for_line(Duration::from_secs(30), |l| l.starts_with("t="))
        .expect("a first stats line");
    let t2 = run
        .wait_for_line(Duration::from_secs(5), |l| l.starts_with("t="))
        .expect("a second stats line");
    let rx_of = |line: &str| -> u64 {
        line.split(" | ")
            .skip(1)
            .map(|p| field_u64(p, "rx").unwrap())
            .sum()
    };
    assert!(rx_of(&t2) > rx_of(&t1), "counters must grow: {t1} / {t2}");

    run.signal("INT");
    let out = run.finish(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out}");
    assert!(out.stdout.contains("stopping (signal)"), "{out}");
    for p in 0..2 {
        assert!(out.port_counter(p, "rx") > 0, "{out}");
        assert!(out.port_counter(p, "tx") > 0, "{out}");
        assert_eq!(out.port_counter(p, "dropped"), 0, "{out}");
    }
    let workers = out.worker_lines();
    assert_eq!(workers.len(), 2, "{out}");
    let mut queues = Vec::new();
    for w in &workers {
        assert!(field_u64(w, "rx").unwrap() > 0, "{w}");
        assert!(field_u64(w, "tx").unwrap() > 0, "{w}");
        queues.push(
            w.split_whitespace()
                .find_map(|f| f.strip_prefix("queues="))
                .unwrap()
                .to_string(),
        );
    }
    // Each worker polls its own RSS queue of each port.
    assert_eq!(queues, ["0:0,1:0", "0:1,1:1"], "{out}");
    // Forwarding conserves packets: everything received was sent (net_null never refuses).
    let total = |k: &str| {
        workers
            .iter()
            .map(|w| field_u64(w, k).unwrap())
            .sum::<u64>()
    };
    assert_eq!(total("rx"), total("tx"), "{out}");
    assert_eq!(
        total("rx"),
        out.port_counter(0, "rx") + out.port_counter(1, "rx"),
        "{out}"
    );
}

#[test]
fn sigterm_also_stops_cleanly_and_duration_ends_a_run() {
    let _lock = dpdk_lock();
    let s = Scratch::new("nullterm");
    let eal = s.null_eal("0,1", 2);
    let mut run = Running::start(&eal, &["--pair", "0:1", "--quiet"]);
    run.wait_for_line(Duration::from_secs(30), |l| {
        l.starts_with("ctgate: forwarding")
    })
    .expect("start-up line");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("TERM");
    let out = run.finish(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out}");
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("t=")),
        "--quiet prints no stats line\n{out}"
    );
    assert!(out.port_counter(0, "tx") > 0, "{out}");

    let out = run_ctgate(
        &eal,
        &["--pair", "0:1", "--duration", "0.5", "--quiet"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{out}");
    assert!(out.stdout.contains("stopping (duration reached)"), "{out}");
}
