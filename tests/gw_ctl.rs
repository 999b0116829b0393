//! `ctgate-ctl` against the running gateway on `net_tap` ports between two network
//! namespaces: the dump shows the NAT tuples of real connections, ct-bkts sums to
//! nconns, flush by zone removes only that zone, limits set at run time take effect on
//! the next connection, a malformed request gets an error while forwarding continues,
//! and a sweep interval change is observed (root: taps and namespaces). Also the gateway
//! mode's stats lines and final counters on net_null ports.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use gw_tapnet::*;

/// The default gateway with a small table (ct-bkts prints 64 buckets), ICMP connections
/// that expire after 10 s (long enough that none expires between the checks on a loaded machine), and a sweep too slow to matter until the test changes it.
fn ctl_config() -> String {
    format!(
        r#"
[datapath]
max_conns = 1024
buckets = 64
sweep_interval_ms = 600000

{topology}
[timeouts]
icmp_first = 10
icmp_reply = 10
"#,
        topology = topology(Some(1))
    )
}

/// The sum of the per-bucket counts of `ct-bkts` output (`.` is 0).
fn bkts_sum(out: &str) -> u64 {
    out.lines()
        .filter(|l| l.contains("..") && l.contains('|') && !l.contains("Buckets"))
        .filter_map(|l| l.split_once('|').map(|(_, r)| r))
        .flat_map(|r| r.split_whitespace())
        .map(|w| w.parse::<u64>().unwrap_or(0))
        .sum()
}

/// Asks DPDK's telemetry socket of the running ctgate (`SOCK_SEQPACKET`, one JSON reply
/// per command, as `dpdk-telemetry.py` does, here with python3's socket module).
fn telemetry(gw: &Gw, cmds: &[&str]) -> Vec<serde_json::Value> {
    let path = format!("/var/run/dpdk/{}/dpdk_telemetry.v2", gw.scratch.prefix);
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n\
        s.connect(sys.argv[1])\n\
        s.recv(16384)\n\
        for c in sys.argv[2:]:\n\
        \x20   s.send(c.encode())\n\
        \x20   print(s.recv(65536).decode())\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &path])
        .args(cmds)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "telemetry query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn ctgate_ctl_commands_against_the_running_gateway() {
    let mut gw = Gw::start("ctl", Some(&ctl_config()));
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    gw.web_root(&ns_out, "192.0.2.2", 8000, &[("small", &[0x5a; 4096])]);

    // show / version describe the running gateway.
    let show = gw.ctl_ok(&["show"]);
    assert!(
        show.contains("port 0: name=net_tap0") && show.contains("role=inside zone=1"),
        "{show}"
    );
    assert!(
        show.contains("port 1: name=net_tap1") && show.contains("role=outside"),
        "{show}"
    );
    assert!(
        show.contains("worker 0: lcore=1 ") && show.contains("sweep interval: 600000 ms"),
        "{show}"
    );
    assert!(gw.ctl_ok(&["version"]).contains("DPDK"));

    // Two connections: an echo and an HTTP request, both SNATed.
    let p = gw.ping("192.0.2.2", 1);
    assert!(p.ok, "{p}");
    let c = gw.curl(
        &ns_in,
        10,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{local_port}",
            "http://192.0.2.2:8000/small",
        ],
    );
    assert!(c.ok && c.stdout.starts_with("200 "), "{c}");
    let sport: u16 = c.stdout.split_whitespace().nth(1).unwrap().parse().unwrap();

    let dump = gw.ctl_ok(&["dump-conntrack"]);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 2, "{dump}");
    let icmp = lines
        .iter()
        .find(|l| l.starts_with("icmp,"))
        .unwrap_or_else(|| panic!("{dump}"));
    assert!(
        icmp.starts_with("icmp,orig=(src=10.0.0.2,dst=192.0.2.2,id=")
            && icmp.contains(",type=8,code=0),reply=(src=192.0.2.2,dst=192.0.2.1,id=")
            && icmp.ends_with(",type=0,code=0),zone=1"),
        "{icmp}"
    );
    // The source port is kept when free: the reply tuple is the pool address, same port.
    let tcp_prefix = format!(
        "tcp,orig=(src=10.0.0.2,dst=192.0.2.2,sport={sport},dport=8000),reply=(src=192.0.2.2,dst=192.0.2.1,sport=8000,dport={sport}),zone=1,protoinfo=(state="
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&tcp_prefix)),
        "want {tcp_prefix}…\n{dump}"
    );
    let zone_dump = gw.ctl_ok(&["dump-conntrack", "zone=1"]);
    assert_eq!(zone_dump, dump);
    assert_eq!(gw.ctl_ok(&["dump-conntrack", "zone=2"]), "");

    // ct-bkts: 64 buckets whose counts sum to nconns.
    assert_eq!(gw.ctl_num(&["ct-get-nconns"]), 2);
    let bkts = gw.ctl_ok(&["ct-bkts"]);
    assert!(
        bkts.starts_with("Total Buckets: 64\nCurrent Connections: 2\n"),
        "{bkts}"
    );
    assert_eq!(bkts_sum(&bkts), 2, "{bkts}");
    // The same figures through DPDK telemetry (/ctgate/...), as dpdk-telemetry.py reads them.
    let tel = telemetry(
        &gw,
        &[
            "/ctgate/stats",
            "/ctgate/zones",
            "/ctgate/buckets",
            "/ctgate/drops",
        ],
    );
    assert_eq!(tel[0]["/ctgate/stats"]["n_conns"], 2, "{tel:?}");
    assert_eq!(tel[0]["/ctgate/stats"]["created"], 2, "{tel:?}");
    assert_eq!(tel[1]["/ctgate/zones"]["zone_1"]["count"], 2, "{tel:?}");
    assert_eq!(tel[2]["/ctgate/buckets"]["buckets"], 64, "{tel:?}");
    assert_eq!(tel[2]["/ctgate/buckets"]["connections"], 2, "{tel:?}");
    // The workers' packets and drops by reason, named as in the worker= lines.
    let drops = &tel[3]["/ctgate/drops"];
    assert!(drops["rx"].as_u64().unwrap_or(0) > 0, "{tel:?}");
    assert!(drops["tx"].as_u64().unwrap_or(0) > 0, "{tel:?}");
    for k in ["generated", "drop_martian_src", "drop_vlan", "drop_too_big"] {
        assert!(drops[k].is_u64(), "{k}: {tel:?}");
    }
    let stats = gw.ctl_ok(&["ct-stats-show"]);
    assert!(
        stats.starts_with("Connections Stats:\n    Total: 2\n"),
        "{stats}"
    );

    // A malformed request gets an error reply; the gateway keeps forwarding.
    let mut s = UnixStream::connect(&gw.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"this is not json\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["ok"], false, "{reply}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed request"),
        "{reply}"
    );
    drop(s);
    let e = gw.ctl(&["ct-set-limits", "default=-1"]);
    assert!(!e.ok && e.stderr.contains("invalid default limit"), "{e}");
    let p = gw.ping("192.0.2.2", 1);
    assert!(p.ok, "forwarding after bad requests:\n{p}");
    assert_eq!(gw.ctl_num(&["ct-get-nconns"]), 3);

    // Flush by zone: zone 2 has nothing, zone 1 everything.
    gw.ctl_ok(&["flush-conntrack", "zone=2"]);
    assert_eq!(gw.ctl_num(&["ct-get-nconns"]), 3);
    gw.ctl_ok(&["flush-conntrack", "zone=1"]);
    assert_eq!(gw.ctl_num(&["ct-get-nconns"]), 0);
    assert_eq!(gw.ctl_ok(&["dump-conntrack"]), "");

    // A limit set at run time refuses the next connection; deleting it admits it.
    gw.ctl_ok(&["ct-set-limits", "zone=1,limit=0"]);
    assert_eq!(
        gw.ctl_ok(&["ct-get-limits", "zone=1"]),
        "default limit=0\nzone=1,limit=0,count=0\n"
    );
    let refused = gw.drops("zone_limit");
    let p = gw.ping("192.0.2.2", 1);
    assert!(!p.ok, "zone limit 0 should refuse:\n{p}");
    assert!(gw.drops("zone_limit") > refused);
    gw.ctl_ok(&["ct-del-limits", "zone=1"]);
    let p = gw.ping("192.0.2.2", 1);
    assert!(p.ok, "after ct-del-limits:\n{p}");
    assert_eq!(gw.ctl_num(&["ct-get-nconns"]), 1);

    // The sweep interval: with 10 minutes, an expired connection stays counted; after
    // ct-set-sweep-interval 200 the sweep removes it within a fraction of a second.
    assert_eq!(gw.ctl_num(&["ct-get-sweep-interval"]), 600_000);
    std::thread::sleep(Duration::from_millis(10_500));
    assert_eq!(gw.ctl_num(&["ct-get-nconns"]), 1, "swept too early");
    assert_eq!(
        gw.ctl_ok(&["dump-conntrack"]),
        "",
        "expired connections are not dumped"
    );
    let expired = gw.ct_counter("expired");
    gw.ctl_ok(&["ct-set-sweep-interval", "200"]);
    assert_eq!(gw.ctl_num(&["ct-get-sweep-interval"]), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.ctl_num(&["ct-get-nconns"]) != 0 {
        assert!(
            Instant::now() < deadline,
            "the sweep did not remove the expired connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gw.ct_counter("expired"), expired + 1);

    let out = gw.stop();
    assert!(out.status.success(), "{out}");
    assert!(!gw.socket.exists(), "the socket file is removed at exit");
}

/// Gateway mode on two `net_null` ports (no root needed): the per-second stats line
/// carries the tracker and drop figures and each port's device drops, SIGHUP is logged
/// and ctgate runs on, SIGTERM stops cleanly, the final lines keep the port/worker contract and
/// add the tracker's and the gateway's counters, the control socket answers while it
/// runs, and the socket and EAL's runtime directory are gone after.
#[test]
fn gateway_stats_lines_and_final_counters_on_null_ports() {
    let _lock = common::dpdk_lock();
    let s = common::Scratch::new("gwnull");
    let sock = s.path("ctl.sock");
    let eal = s.null_eal("0,1", 2);
    let sock_arg = sock.display().to_string();
    let mut run = common::Running::start(&eal, &["--socket", &sock_arg]);
    let line = run
        .wait_for_line(Duration::from_secs(30), |l| l.starts_with("t=2s"))
        .unwrap_or_else(|| panic!("no stats line:\n{}", run.stdout()));
    // t=2s | port=0 ... | port=1 ... | conns=0 created/s=0 expired/s=0 | drops=N local=N
    assert!(
        line.contains(" | port=0 rx=") && line.contains(" | port=1 rx="),
        "{line}"
    );
    for port in line.split(" | ").filter(|p| p.starts_with("port=")) {
        assert_eq!(common::field_u64(port, "rx_missed"), Some(0), "{line}");
        assert_eq!(common::field_u64(port, "rx_errors"), Some(0), "{line}");
    }
    assert!(
        line.contains(" | conns=0 created/s=0 expired/s=0 | drops="),
        "{line}"
    );
    let drops = line
        .split(" | drops=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // net_null delivers zero-filled frames (all-zero MACs): never forwarded, all dropped.
    assert!(drops > 0, "{line}");
    let ctl = std::process::Command::new(ctl_bin())
        .args(["--socket", &sock_arg, "ct-get-nconns"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ctl.stdout), "0\n");
    let runtime_dir = std::path::Path::new("/var/run/dpdk").join(&s.prefix);
    assert!(runtime_dir.is_dir(), "EAL runtime dir while running");
    // SIGHUP: logged, and ctgate runs on (stats lines, control socket).
    run.signal("HUP");
    run.wait_for_line(Duration::from_secs(10), |l| l.starts_with("t=4s"))
        .unwrap_or_else(|| panic!("no stats line after SIGHUP:\n{}", run.stdout()));
    let ctl = std::process::Command::new(ctl_bin())
        .args(["--socket", &sock_arg, "ct-get-nconns"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ctl.stdout), "0\n");
    run.signal("TERM");
    let out = run.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("ctgate: stopping (signal)"), "{out}");
    for p in [0, 1] {
        assert!(
            out.port_line(p).starts_with(&format!("port={p} rx=")),
            "{out}"
        );
    }
    let w = out.worker_lines();
    assert_eq!(w.len(), 1, "{out}");
    assert!(w[0].starts_with("worker=0 lcore=1 rx="), "{out}");
    let rx = common::field_u64(w[0], "rx").unwrap();
    assert_eq!(rx, common::field_u64(w[0], "dropped").unwrap(), "{out}");
    let last: Vec<&str> = out.stdout.lines().rev().take(2).collect();
    assert!(
        last[1].starts_with("conntrack n_conns=0 created=0 "),
        "{out}"
    );
    assert!(last[0].starts_with("gateway arp_replies=0 "), "{out}");
    assert!(!sock.exists(), "socket removed at exit");
    // SIGHUP reloaded the configuration in force (the embedded one) and said so.
    assert!(
        out.stdout.contains("ctgate: SIGHUP") || out.stderr.contains("ctgate: SIGHUP"),
        "{out}"
    );
    assert!(
        !runtime_dir.exists(),
        "{} left behind after a clean exit",
        runtime_dir.display()
    );
}

/// Asks `cmd` over the control socket at `sock` on a fresh connection; returns the
/// reply line and how long it took from connect to reply.
fn timed_request(sock: &std::path::Path, cmd: &str) -> (String, Duration) {
    let t0 = Instant::now();
    let mut s = UnixStream::connect(sock).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{{\"id\":1,\"cmd\":\"{cmd}\"}}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    (line, t0.elapsed())
}

/// The control lcore never goes deaf: with a tap flooded from the kernel side at more
/// than 50,000 frames/s (net_tap signals the process for every received frame), the
/// control socket keeps answering within 100 ms and the stats line keeps its one-second
/// beat; SIGINT still stops ctgate at once.
#[test]
fn control_lcore_answers_while_a_tap_is_flooded() {
    assert!(
        common::is_root(),
        "net_tap needs root, as CI runs the tests"
    );
    let _lock = common::dpdk_lock();
    let s = common::Scratch::new("flood");
    let id = std::process::id() % 100_000;
    let (tap_in, tap_out) = (format!("ctgfi{id}"), format!("ctgfo{id}"));
    let sock = s.path("ctl.sock");
    let mut eal = s.eal_args("0,1");
    eal.extend([
        "--vdev".into(),
        format!("net_tap0,iface={tap_in}"),
        "--vdev".into(),
        format!("net_tap1,iface={tap_out}"),
    ]);
    let sock_arg = sock.display().to_string();
    let mut run = common::Running::start(&eal, &["--socket", &sock_arg]);
    run.wait_for_line(Duration::from_secs(30), |l| {
        l.starts_with("ctgate: gateway on")
    })
    .unwrap_or_else(|| panic!("ctgate did not start:\n{}", run.stdout()));

    let netif = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == tap_in)
        .expect("tap interface listed");
    let Ok(pnet_datalink::Channel::Ethernet(mut tx, _rx)) =
        pnet_datalink::channel(&netif, Default::default())
    else {
        panic!("cannot open an AF_PACKET channel on {tap_in}");
    };
    // Broadcast frames of a local experimental EtherType: the gateway drops them.
    let frame = common::ether([0xff; 6], [0x02, 0, 0, 0, 0, 0x42], 0x88b5, &[0u8; 46]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let flood = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut sent = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(Ok(())) = tx.send_to(&frame, None) {
                sent += 1;
            }
        }
        (sent, t0.elapsed())
    });

    // For 6 s: a request every 50 ms, and the arrival of every stats line.
    let window = Instant::now();
    let mut worst = Duration::ZERO;
    let mut requests = 0;
    let mut beats: Vec<Instant> = Vec::new();
    while window.elapsed() < Duration::from_secs(6) {
        let (reply, took) = timed_request(&sock, "ct-get-nconns");
        assert!(reply.contains("\"ok\":true"), "{reply}");
        worst = worst.max(took);
        requests += 1;
        while run
            .wait_for_line(Duration::from_millis(50), |l| l.starts_with("t="))
            .is_some()
        {
            beats.push(Instant::now());
        }
    }
    let t_int = Instant::now();
    run.signal("INT");
    let out = run.finish(Duration::from_secs(30));
    let stop_took = t_int.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, flood_secs) = flood.join().unwrap();
    let pps = sent as f64 / flood_secs.as_secs_f64();
    assert!(pps >= 50_000.0, "the flood reached only {pps:.0} frames/s");
    assert!(
        out.port_counter(0, "rx") >= 100_000,
        "the frames did not reach ctgate:\n{out}"
    );
    assert!(
        worst < Duration::from_millis(100),
        "a control request took {worst:?} under {pps:.0} frames/s ({requests} requests)"
    );
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "flood {pps:.0} frames/s; {requests} control requests, slowest {worst:?}; stats line gaps {gaps:?}; SIGINT to exit {stop_took:?}"
    );
    assert!(
        beats.len() >= 5,
        "{} stats lines in 6 s:\n{out}",
        beats.len()
    );
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(1300)),
        "stats lines lost their beat: gaps {gaps:?}"
    );
    assert!(out.status.success(), "{out}");
    assert!(
        stop_took < Duration::from_secs(2),
        "SIGINT took {stop_took:?} to stop ctgate"
    );
}

/// The final worker line's `busy_secs` counts only the loop's turns that found packets:
/// none on ports that never deliver a frame (`net_null` with `no-rx=1`), nearly all of
/// the run on ports that deliver a full burst on every poll (`net_null`). The metrics'
/// `ctgate_worker_busy_seconds_total` is the same figure.
#[test]
fn a_worker_is_busy_only_for_the_turns_that_found_packets() {
    let _lock = common::dpdk_lock();
    let float = |line: &str, key: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    for (name, sink) in [("gwidle", true), ("gwbusy", false)] {
        let s = common::Scratch::new(name);
        let mut eal = s.eal_args("0,1");
        for i in 0..2 {
            eal.push("--vdev".into());
            eal.push(if sink {
                format!("net_null{i},no-rx=1")
            } else {
                format!("net_null{i}")
            });
        }
        let mut run = common::Running::start(&eal, &[]);
        run.wait_for_line(Duration::from_secs(30), |l| l.starts_with("t=2s"))
            .unwrap_or_else(|| panic!("no stats line:\n{}", run.stdout()));
        run.signal("TERM");
        let out = run.finish(Duration::from_secs(30));
        assert!(out.status.success(), "{out}");
        let w = out.worker_lines();
        assert_eq!(w.len(), 1, "{out}");
        let (secs, busy) = (float(w[0], "secs"), float(w[0], "busy_secs"));
        assert!(secs >= 1.5, "{}", w[0]);
        if sink {
            assert_eq!(common::field_u64(w[0], "rx"), Some(0), "{}", w[0]);
            assert_eq!(busy, 0.0, "no packet, no busy turn: {}", w[0]);
        } else {
            assert!(common::field_u64(w[0], "rx").unwrap_or(0) > 0, "{}", w[0]);
            assert!(busy > 0.5 * secs && busy <= secs, "{}", w[0]);
        }
    }
}
