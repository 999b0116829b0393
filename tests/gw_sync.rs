//! Two ctgate processes with `[sync]` toward each other over loopback UDP, on `net_null`
//! ports (no root): each sees the other connected in `ctgate-ctl sync-status`, `stats`
//! and the metrics endpoint carry the sync counters, and when one stops the other reports
//! it lost.
#![cfg(feature = "dpdk")]

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn ctl_bin() -> PathBuf {
    let bin = Path::new(common::ctgate_bin()).with_file_name("ctgate-ctl");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "ctgate-ctl"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot build ctgate-ctl");
    }
    bin
}

fn config(local: &str, peer: &str, metrics: u16) -> String {
    format!(
        r#"
[metrics]
listen = "127.0.0.1:{metrics}"

[datapath]
max_conns = 1024

[[port]]
port = 0
role = "inside"
ipv4 = "10.0.0.1/24"

[[port]]
port = 1
role = "outside"
ipv4 = "192.0.2.1/24"

[sync]
local = "{local}"
peers = ["{peer}"]
"#
    )
}

/// The body of `GET /metrics` on 127.0.0.1:`port`.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    r.split_once("\r\n\r\n")
        .map_or(r.clone(), |(_, b)| b.to_string())
}

/// The value of the sample `name` in a metrics text.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn ctl(sock: &Path, cmd: &str) -> String {
    let out = std::process::Command::new(ctl_bin())
        .args(["--socket", &sock.display().to_string(), cmd])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn wait_status(sock: &Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ctl(sock, "sync-status");
        if s.contains(want) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Instance {
    scratch: common::Scratch,
    sock: PathBuf,
    run: common::Running,
    metrics: u16,
}

fn start(name: &str, local: &str, peer: &str) -> Instance {
    let scratch = common::Scratch::new(name);
    let cfg = scratch.path("ctgate.toml");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    std::fs::write(&cfg, config(local, peer, metrics)).unwrap();
    let sock = scratch.path("ctl.sock");
    let eal = scratch.null_eal("0,1", 2);
    let (c, s) = (cfg.display().to_string(), sock.display().to_string());
    let run = common::Running::start(&eal, &["--config", &c, "--socket", &s, "--quiet"]);
    Instance {
        scratch,
        sock,
        run,
        metrics,
    }
}

#[test]
fn two_gateways_sync_over_loopback_and_each_sees_the_other_connected_then_lost() {
    let _lock = common::dpdk_lock();
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let a = start("synca", &la, &lb);
    let b = start("syncb", &lb, &la);
    let sa = wait_status(&a.sock, "state=connected");
    let sb = wait_status(&b.sock, "state=connected");
    assert!(
        sa.starts_with(&format!(
            "sync local={la} mode=active-standby auth=none peers=1\npeer 1 {lb} state=connected "
        )),
        "{sa}\n{}",
        a.run.stdout()
    );
    assert!(
        sb.contains(&format!("peer 1 {la} state=connected ")),
        "{sb}"
    );
    assert!(
        sb.contains("dropped malformed=0 unauthenticated=0 unknown_peer=0 stale=0"),
        "{sb}"
    );
    // Each asked the other for its (empty) table at start and got the end of the stream.
    assert!(sb.contains("resyncs_received=1"), "{sb}");
    let stats = ctl(&b.sock, "stats");
    assert!(stats.contains("\nsync msgs_sent="), "{stats}");
    // The metrics endpoint (rendered once a second) counts the messages both ways.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = scrape(b.metrics);
        let got = sample(&t, "ctgate_sync_msgs_received_total").unwrap_or(0);
        if got > 0 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        sample(&text, "ctgate_sync_msgs_received_total").unwrap_or(0) > 0,
        "{text}"
    );
    assert!(
        sample(&text, "ctgate_sync_msgs_sent_total").unwrap_or(0) > 0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "ctgate_sync_dropped_unauthenticated_total"),
        Some(0),
        "{text}"
    );
    // A stops: B loses it.
    a.run.signal("TERM");
    let out = a.run.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{out}");
    let sb = wait_status(&b.sock, "state=lost");
    assert!(sb.contains(&format!("peer 1 {la} state=lost ")), "{sb}");
    let Instance { scratch, run, .. } = b;
    run.signal("TERM");
    let out = run.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{out}");
    drop((scratch, a.scratch));
}
