//! Active/standby failover with real traffic (issue 16): two ctgate instances A and B with
//! the same SNAT pool (203.0.113.1), synced over loopback, between an inside client and
//! an outside server (`gw_hanet`). A 24 MiB HTTP download (curl, rate-limited so that it
//! spans the switch) and a UDP request/response flow (20 per second) start through A; once
//! B has learned both, the routes move to B (as VRRP would) and A is killed. The download
//! completes byte for byte, the UDP flow continues after a bounded loss, and the server
//! sees neither a RST nor another source address or port. Then A restarts, gets the table
//! back by bulk resync (including a flow created while it was down), the routes move back
//! and the flows continue through A alone. The failover time (UDP gap, TCP stall) is
//! printed (`--nocapture`) for docs/ha.md; nothing here asserts a duration. Needs root.
#![cfg(feature = "dpdk")]

mod common;
mod gw_hanet;
mod gw_tapnet;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use gw_hanet::*;
use gw_tapnet::*;

const POOL: &str = "203.0.113.1";
const HTTP_PORT: u16 = 8000;
const UDP_PORT: u16 = 7000;
/// UDP requests per second.
const RATE: u32 = 20;
/// Sequence numbers a failover may lose: 1.5 s of the flow. A flow that breaks (a new
/// NAT binding the server drops, a connection B does not know) loses everything after
/// the switch and fails this by far.
const MAX_LOST: usize = 30;

/// The lines of `dump` for protocol `proto` to server port `dport`.
fn conns<'a>(dump: &'a str, proto: &str, dport: u16) -> Vec<&'a str> {
    let d = format!("dst={SERVER},sport=");
    let p = format!(",dport={dport})");
    dump.lines()
        .filter(|l| l.starts_with(&format!("{proto},")) && l.contains(&d) && l.contains(&p))
        .collect()
}

/// The distinct `ADDR:PORT` sources in a `udp_seq.py` server log, with the number of
/// requests seen from each.
fn udp_sources(log: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut v: Vec<(String, usize)> = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with("ready")) {
        let Some(src) = l.split_whitespace().nth(1) else {
            continue;
        };
        match v.iter_mut().find(|(s, _)| s == src) {
            Some((_, n)) => *n += 1,
            None => v.push((src.to_string(), 1)),
        }
    }
    v
}

/// Waits (at most `timeout`) until `pred` holds.
fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pred()
}

/// The UDP flow of `log` answered every request sent between `from` and `to`.
fn all_answered(log: &Path, from: f64, to: f64) -> Result<usize, String> {
    let f = UdpFlow::read(log);
    let lost = f.lost_between(from, to);
    let n = f.sent.values().filter(|t| **t >= from && **t < to).count();
    if n == 0 {
        return Err(format!("nothing sent between {from} and {to}"));
    }
    if lost.is_empty() {
        Ok(n)
    } else {
        Err(format!("unanswered: {lost:?}"))
    }
}

#[test]
fn failover_to_the_standby_keeps_a_tcp_download_and_a_udp_flow_and_the_restarted_active_takes_them_back(
) {
    let setup = Setup::new("active-standby", &[POOL]);
    let mut ha = HaNet::start("hafail", &setup, &setup);
    ha.wait_synced(1, Duration::from_secs(30));
    let (ns_in, ns_out) = (ha.ns_in.clone(), ha.ns_out.clone());

    let www = ha.scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = blob(&www, "blob", 24 << 20);
    ha.http_server(&ns_out, SERVER, HTTP_PORT, &www);
    let udp_server = ha.udp_seq_server(UDP_PORT);
    let cap = ha.capture(&ns_out, "server", &format!("tcp port {HTTP_PORT}"));

    // Both flows start through A.
    let t_start = wall_now();
    let udp1 = ha.udp_seq_client(UDP_PORT, 5000, RATE);
    let got = ha.scratch.path("got");
    let curl_log = ha.scratch.path("curl.log");
    ha.spawn_in(
        &ns_in,
        &[
            "curl",
            "-sS",
            "--max-time",
            "300",
            "--limit-rate",
            "1M",
            "-o",
            got.to_str().unwrap(),
            "-w",
            "done %{http_code} %{size_download}\n",
            &format!("http://{SERVER}:{HTTP_PORT}/blob"),
        ],
        &curl_log,
    );

    // B learns both from A (the events, within a tick and a round trip).
    let dump_b =
        ha.b.ctl_until(&["dump-conntrack", "-m"], Duration::from_secs(30), |d| {
            conns(d, "tcp", HTTP_PORT)
                .iter()
                .any(|l| l.contains("ESTABLISHED") && l.ends_with(",learned=1"))
                && conns(d, "udp", UDP_PORT)
                    .iter()
                    .any(|l| l.ends_with(",learned=1"))
        });
    let tcp_b = conns(&dump_b, "tcp", HTTP_PORT);
    let udp_b = conns(&dump_b, "udp", UDP_PORT);
    assert!(
        tcp_b.len() == 1
            && tcp_b[0].ends_with(",learned=1")
            && tcp_b[0].contains(&format!("dst={POOL},")),
        "B has not learned A's SNATed TCP connection:\n{dump_b}\nA:\n{}",
        ha.a.dump()
    );
    assert!(
        udp_b.len() == 1
            && udp_b[0].ends_with(",learned=1")
            && udp_b[0].contains(&format!("dst={POOL},")),
        "B has not learned A's SNATed UDP flow:\n{dump_b}"
    );
    // The same binding on both: A made it, B holds it.
    let dump_a = ha.a.dump();
    let tcp_a = conns(&dump_a, "tcp", HTTP_PORT);
    assert_eq!(tcp_a.len(), 1, "{dump_a}");
    let reply_of = |l: &str| {
        l.split("reply=")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .map(str::to_string)
    };
    assert_eq!(
        reply_of(tcp_a[0]),
        reply_of(tcp_b[0]),
        "A:\n{dump_a}\nB:\n{dump_b}"
    );
    assert!(ha.a.peer_status().contains(" state=connected "));

    // Mid-transfer (at least 4 MiB in, well before the end): the failover.
    let got_len = || std::fs::metadata(&got).map_or(0, |m| m.len());
    assert!(
        wait_until(Duration::from_secs(60), || got_len() >= 4 << 20),
        "the download does not progress: {} bytes\n{}",
        got_len(),
        std::fs::read_to_string(&curl_log).unwrap_or_default()
    );
    let before_switch = got_len();
    assert!(
        before_switch < (data.len() as u64) / 2,
        "the download is too far to span the switch"
    );
    let t_switch = wall_now();
    ha.move_routes(Side::B);
    let out_a = ha.a.kill();
    eprintln!(
        "A killed {:.3} s after the route change",
        wall_now() - t_switch
    );
    drop(out_a);

    // While A is down, a second UDP flow starts, through B alone.
    let udp2 = ha.udp_seq_client(UDP_PORT, 5001, RATE);

    // The download completes, byte for byte.
    assert!(
        wait_until(Duration::from_secs(300), || std::fs::read_to_string(
            &curl_log
        )
        .unwrap_or_default()
        .contains("done ")),
        "curl did not finish: {} of {} bytes\n{}",
        got_len(),
        data.len(),
        std::fs::read_to_string(&curl_log).unwrap_or_default()
    );
    let t_done = wall_now();
    let curl_out = std::fs::read_to_string(&curl_log).unwrap();
    assert!(
        curl_out.contains(&format!("done 200 {}", data.len())),
        "curl:\n{curl_out}"
    );
    let body = std::fs::read(&got).unwrap();
    assert!(
        body == data,
        "the download differs from the served file ({} bytes)",
        body.len()
    );
    let sums = sh(&[
        "sha256sum",
        got.to_str().unwrap(),
        www.join("blob").to_str().unwrap(),
    ]);
    let sums: Vec<&str> = sums
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(sums.len() == 2 && sums[0] == sums[1], "sha256: {sums:?}");

    // The server saw one peer, 203.0.113.1 at one port, before and after, and no RST.
    let pkts = tcp_packets(&cap);
    let server = format!("{SERVER}.{HTTP_PORT}");
    let peers: BTreeSet<&str> = pkts
        .iter()
        .filter(|p| p.dst == server)
        .map(|p| p.src.as_str())
        .collect();
    assert!(
        peers.len() == 1 && peers.iter().all(|p| p.starts_with(&format!("{POOL}."))),
        "the server saw the client as {peers:?}"
    );
    let rsts: Vec<&TcpPkt> = pkts.iter().filter(|p| p.flags.contains('R')).collect();
    assert!(rsts.is_empty(), "RST at the server: {rsts:?}");
    let after: Vec<&TcpPkt> = pkts
        .iter()
        .filter(|p| p.t > t_switch + 1.0 && p.dst == server)
        .collect();
    assert!(
        !after.is_empty(),
        "no packet from the client after the switch"
    );
    // The TCP stall: the longest time without a data segment from the server around the
    // switch, next to the longest one before it (curl's rate limit makes gaps too).
    let data_times = |from: f64, to: f64| {
        let t: Vec<f64> = pkts
            .iter()
            .filter(|p| p.src == server && p.len > 0 && p.t >= from && p.t < to)
            .map(|p| p.t)
            .collect();
        t.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    };
    let tcp_stall = data_times(t_switch - 0.5, t_switch + 5.0);
    let tcp_gap_before = data_times(t_start, t_switch - 0.5);

    // The UDP flow went on: a bounded loss around the switch, all answered after it.
    let f1 = UdpFlow::read(&udp1);
    let lost = f1.lost_between(t_switch - 1.0, t_switch + 5.0);
    let udp_gap = f1.longest_gap(t_switch - 1.0, t_switch + 5.0);
    let udp_gap_before = f1.longest_gap(t_start, t_switch - 1.0);
    eprintln!(
        "failover: UDP lost {} of {} ({lost:?}), longest UDP gap {:.0} ms (before: {:.0} ms); \
         TCP stall {:.0} ms (before: {:.0} ms); download {} MiB in {:.1} s",
        lost.len(),
        f1.sent
            .values()
            .filter(|t| **t >= t_switch - 1.0 && **t < t_switch + 5.0)
            .count(),
        udp_gap * 1e3,
        udp_gap_before * 1e3,
        tcp_stall * 1e3,
        tcp_gap_before * 1e3,
        data.len() >> 20,
        t_done - t_start
    );
    assert!(
        lost.len() <= MAX_LOST,
        "the UDP flow lost {lost:?} around the switch"
    );
    let n = all_answered(&udp1, t_switch + 5.0, wall_now() - 1.0)
        .unwrap_or_else(|e| panic!("UDP flow 1 after the switch: {e}"));
    assert!(n >= RATE as usize, "{n}");
    let srcs = udp_sources(&udp_server);
    assert!(
        srcs.len() == 2 && srcs.iter().all(|(s, _)| s.starts_with(&format!("{POOL}:"))),
        "the server should see two flows from {POOL}, one port each: {srcs:?}"
    );

    // A restarts and gets the table back by bulk resync: its own connections (B carried
    // them) and the flow created while it was down.
    assert!(wait_until(Duration::from_secs(30), || {
        UdpFlow::read(&udp2).acked.len() >= 5
    }));
    ha.restart(Side::A);
    ha.wait_synced(1, Duration::from_secs(60));
    let status_a = ha.a.peer_status();
    assert!(
        status_a.contains(" state=connected ") && status_a.contains(" resyncs_received=1 "),
        "{status_a}"
    );
    let dump_a =
        ha.a.ctl_until(&["dump-conntrack", "-m"], Duration::from_secs(30), |d| {
            conns(d, "udp", UDP_PORT).len() == 2 && conns(d, "tcp", HTTP_PORT).len() == 1
        });
    let dump_b = ha.b.dump();
    for (what, proto, port) in [
        ("UDP flows", "udp", UDP_PORT),
        ("TCP connection", "tcp", HTTP_PORT),
    ] {
        let a = conns(&dump_a, proto, port);
        let b = conns(&dump_b, proto, port);
        assert!(
            !a.is_empty() && a.len() == b.len(),
            "A's {what} after the resync:\n{dump_a}\nB:\n{dump_b}"
        );
        for l in &a {
            assert!(l.ends_with(",learned=1"), "{l}");
            assert!(
                b.iter().any(|m| reply_of(m) == reply_of(l)),
                "A's copy {l} has another binding than B's:\n{dump_b}"
            );
        }
    }

    // The routes go back to A, B stops: both UDP flows continue through A, same bindings.
    let t_back = wall_now();
    ha.move_routes(Side::A);
    std::thread::sleep(Duration::from_secs(2));
    let out_b = ha.b.stop();
    assert!(out_b.status.success(), "{out_b}");
    let t_b_gone = wall_now();
    std::thread::sleep(Duration::from_secs(4));
    let t_end = wall_now();
    for (name, log) in [("1", &udp1), ("2", &udp2)] {
        let f = UdpFlow::read(log);
        let lost = f.lost_between(t_back - 1.0, t_b_gone);
        eprintln!(
            "switch back: UDP flow {name} lost {lost:?}, longest gap {:.0} ms",
            f.longest_gap(t_back - 1.0, t_b_gone) * 1e3
        );
        assert!(
            lost.len() <= MAX_LOST,
            "UDP flow {name} lost {lost:?} when the routes went back to A"
        );
        let n = all_answered(log, t_b_gone, t_end - 1.0)
            .unwrap_or_else(|e| panic!("UDP flow {name} through A alone: {e}"));
        assert!(n >= RATE as usize, "{n}");
    }
    let srcs_after = udp_sources(&udp_server);
    assert_eq!(
        srcs_after.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        srcs.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        "the server saw a NAT change"
    );
    // A carries them: its datapath forwarded the flows' packets.
    let stats = ha.a.ctl_ok(&["stats"]);
    let rx: u64 = stats
        .lines()
        .filter(|l| l.starts_with("worker="))
        .filter_map(|l| common::field_u64(l, "rx"))
        .sum();
    assert!(
        rx >= 2 * 4 * RATE as u64,
        "A forwarded {rx} packets:\n{stats}"
    );
    // And a new connection through A works.
    let c = ha.exec(
        &ns_in,
        &[
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{SERVER}:{HTTP_PORT}/"),
        ],
    );
    assert!(c.ok && c.stdout == "200", "{c}");
    let out_a = ha.a.stop();
    assert!(out_a.status.success(), "{out_a}");
}
