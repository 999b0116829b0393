//! Connection events of the running gateway between two network namespaces (`net_tap`
//! ports, as tests/gw_tap.rs): a ping, an HTTP fetch and a UDP exchange from the inside
//! host give exactly their `[NEW]`/`[UPDATE]`/`[DESTROY]` lines on `ctgate-ctl events`
//! (the destroys once the short timeouts of the test configuration expire): the lines
//! Linux's `conntrack -E` printed for the same connections through a Linux gateway
//! (tests/fixtures/linux_conntrack_e.txt), byte for byte but for the ports NAT chose and
//! the ping's identifier. The same
//! NAT bindings arrive at a real syslog receiver (rsyslogd, UDP) and a real IPFIX
//! collector (nfcapd, decoded by nfdump), both on loopback. Needs root; run under
//! `flock /tmp/ctgate-netns.lock`.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;
mod natlog_rx;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gw_tapnet::*;
use natlog_rx::{Nfcapd, Rsyslog};

/// The demo's gateway with every timeout 2 s, a fast sweep, and the NAT log to the two
/// receivers.
fn config(syslog_port: u16, ipfix_port: u16) -> String {
    format!(
        r#"
[datapath]
max_conns = 4096
sweep_interval_ms = 200

{topology}
[timeouts]
tcp_syn_sent = 2
tcp_syn_recv = 2
tcp_established = 2
tcp_fin_wait = 2
tcp_time_wait = 2
tcp_close = 2
udp_first = 2
udp_single = 2
udp_multiple = 2
icmp_first = 2
icmp_reply = 2

[logging]
syslog = "127.0.0.1:{syslog_port}"
ipfix = "127.0.0.1:{ipfix_port}"
template_interval = 1
"#,
        topology = topology(None)
    )
}

/// The IPv4 event lines about the inside host 10.0.0.2.
fn host_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("src=10.0.0.2 "))
        .map(str::to_string)
        .collect()
}

#[test]
fn ping_http_and_udp_give_their_events_and_nat_log_records() {
    let syslog = Rsyslog::start("gwevsyslog");
    let mut ipfix = Nfcapd::start("gwevipfix");
    let mut gw = Gw::start("gwevents", Some(&config(syslog.port, ipfix.port)));
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let hello = ("hello", &b"hello through the gateway\n"[..]);
    gw.web_root(&ns_out, "192.0.2.2", 8000, &[hello]);
    let echo_log = gw.scratch.path("udp-echo.log");
    gw.spawn_in(
        &ns_out,
        &[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('192.0.2.2',7777))\nd,a=s.recvfrom(100)\ns.sendto(d.upper(),a)",
        ],
        &echo_log,
    );

    // The listener, from the start.
    let events_out = gw.scratch.path("events.txt");
    let mut events = Command::new(ctl_bin())
        .arg("--socket")
        .arg(&gw.socket)
        .arg("events")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ctgate-ctl events");
    std::thread::sleep(Duration::from_secs(1));

    let p = gw.ping("192.0.2.2", 1);
    assert!(p.ok, "ping:\n{p}");
    let c = gw.curl(
        &ns_in,
        10,
        &["--local-port", "40123", "http://192.0.2.2:8000/hello"],
    );
    assert_eq!(c.stdout, "hello through the gateway\n", "curl:\n{c}");
    let u = gw.exec(
        &ns_in,
        &[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('10.0.0.2',4000))\ns.settimeout(5)\ns.sendto(b'ping',('192.0.2.2',7777))\nprint(s.recv(100).decode())",
        ],
    );
    assert_eq!(u.stdout, "PING\n", "udp exchange:\n{u}");

    // Everything expires after 2 s; the sweep removes it within its 200 ms pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let t = std::fs::read_to_string(&events_out).unwrap_or_default();
        let destroys = host_lines(&t)
            .iter()
            .filter(|l| l.starts_with("[DESTROY]"))
            .count();
        if destroys >= 3 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = events.kill();
    let _ = events.wait();
    let lines = host_lines(&text);
    // The ping's identifier and the outside ports the NAT chose, from the [NEW] lines.
    let field = |proto: &str, key: &str, nth: usize| -> String {
        let l = lines
            .iter()
            .find(|l| l.starts_with("    [NEW] ") && l.contains(proto))
            .unwrap_or_else(|| panic!("no [NEW] {proto} line:\n{text}"));
        l.split(' ')
            .filter_map(|w| w.strip_prefix(key))
            .nth(nth)
            .unwrap_or_else(|| panic!("no {key} in {l}"))
            .to_string()
    };
    let id = field("icmp", "id=", 0);
    let tport = field("tcp", "dport=", 1);
    let uport = field("udp", "dport=", 1);
    // Linux's `conntrack -E` for the same connections through a masquerading Linux
    // gateway (tests/fixtures/linux_conntrack_e.sh), with the ping's identifier and the
    // outside ports ctgate chose (Linux kept the inside ports): the same lines.
    let linux = include_str!("fixtures/linux_conntrack_e.txt")
        .replace("id=17397", &format!("id={id}"))
        .replace(" dport=40123", &format!(" dport={tport}"))
        .replace(
            "sport=7777 dport=4000",
            &format!("sport=7777 dport={uport}"),
        );
    assert_eq!(
        lines.len(),
        linux.lines().count(),
        "as many events about 10.0.0.2 as Linux gave:\n{text}"
    );
    for proto in ["icmp", "tcp", "udp"] {
        let got: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| l[10..].starts_with(proto))
            .collect();
        let want: Vec<&str> = linux
            .lines()
            .filter(|l| l[10..].starts_with(proto))
            .collect();
        assert_eq!(got, want, "the {proto} connection's events");
    }

    // The same bindings, created and deleted, at the syslog receiver and the collector.
    let mut want_syslog = Vec::new();
    let mut want_ipfix = Vec::new();
    for (ev, nevt) in [("create", "ADD"), ("delete", "DELETE")] {
        for (p, i, o, d) in [
            (
                "icmp",
                format!("10.0.0.2:{id}"),
                format!("192.0.2.1:{id}"),
                "192.0.2.2".to_string(),
            ),
            (
                "tcp",
                "10.0.0.2:40123".into(),
                format!("192.0.2.1:{tport}"),
                "192.0.2.2:8000".into(),
            ),
            (
                "udp",
                "10.0.0.2:4000".into(),
                format!("192.0.2.1:{uport}"),
                "192.0.2.2:7777".into(),
            ),
        ] {
            want_syslog.push(format!(
                "imudp|134|ctgate|NAT|[nat@32473 event=\"{ev}\" proto=\"{p}\" zone=\"0\" inside=\"{i}\" outside=\"{o}\" dest=\"{d}\"]|{ev} {p} {i} -> {o} dst {d} zone 0"
            ));
        }
        let n: u16 = id.parse().unwrap();
        // nfdump 1.7 shows an ICMP record's source port as 0 and, as %dp, the
        // sourceTransportPort sent (the identifier) as LOW.HIGH bytes.
        want_ipfix.push(format!(
            "{nevt}|ICMP|10.0.0.2|0|192.0.2.1|{id}|192.0.2.2|{}.{}",
            n & 0xff,
            n >> 8
        ));
        want_ipfix.push(format!(
            "{nevt}|TCP|10.0.0.2|40123|192.0.2.1|{tport}|192.0.2.2|8000"
        ));
        want_ipfix.push(format!(
            "{nevt}|UDP|10.0.0.2|4000|192.0.2.1|{uport}|192.0.2.2|7777"
        ));
    }
    let mut got_syslog = syslog.lines(6);
    got_syslog.sort();
    want_syslog.sort();
    assert_eq!(got_syslog, want_syslog);
    let stats = gw.ctl_ok(&["stats"]);
    assert!(
        stats.lines().any(|l| l == "natlog sent=12 lost=0"),
        "six records each to syslog and IPFIX:\n{stats}"
    );

    // A reload without [logging] turns the log off.
    let cfg = gw.scratch.path("gw.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, &text[..text.find("[logging]").unwrap()]).unwrap();
    gw.ctl_ok(&["reload"]);
    let off = gw
        .run
        .as_mut()
        .unwrap()
        .wait_for_line(Duration::from_secs(10), |l| {
            l == "ctgate: natlog: syslog off, ipfix off, template_interval 60s"
        });
    assert!(off.is_some(), "the reload did not turn the NAT log off");
    let out = gw.stop();
    assert!(out.status.success(), "{out}");
    let mut got_ipfix = ipfix.stop_and_decode();
    got_ipfix.sort();
    want_ipfix.sort();
    assert_eq!(got_ipfix, want_ipfix);
}

/// A flood of new connections while an `events` client reads nothing: the client loses
/// events of its own and is told how many (`[LOST] N events`), every event is either
/// delivered or counted lost, and the gateway keeps forwarding and answering.
#[test]
fn a_flood_with_a_slow_events_client_counts_its_lost_events_and_the_gateway_keeps_running() {
    let cfg = config(9, 9);
    let cfg =
        cfg[..cfg.find("[timeouts]").unwrap()].replace("max_conns = 4096", "max_conns = 200000");
    let mut gw = Gw::start("gwevflood", Some(&cfg));
    let ns_in = gw.ns_in.clone();
    // The client, whose output nobody reads until the flood is over.
    let mut events = Command::new(ctl_bin())
        .arg("--socket")
        .arg(&gw.socket)
        .arg("events")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ctgate-ctl events");
    std::thread::sleep(Duration::from_secs(1));
    // 55000 UDP flows from as many source ports (one datagram each, in bursts of 500 the
    // tap takes).
    let f = gw.exec(
        &ns_in,
        &[
            "python3",
            "-c",
            "import socket,time\nfor p in range(10000, 65000):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n s.bind(('10.0.0.2',p))\n s.sendto(b'x',('192.0.2.2',9))\n s.close()\n if p % 500 == 0: time.sleep(0.02)",
        ],
    );
    assert!(f.ok, "flood:\n{f}");
    // Created connections settle (the tap may have dropped some datagrams).
    let mut created = gw.ct_counter("created");
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let c = gw.ct_counter("created");
        if c == created {
            break;
        }
        created = c;
    }
    assert!(created > 25_000, "the flood made {created} connections");
    let p = gw.ping("192.0.2.2", 2);
    assert!(p.ok, "ping after the flood:\n{p}");
    let ring_lost = gw.ct_counter("events_lost");

    // Now read: every event is delivered or counted lost.
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let (mut new, mut lost, mut other) = (0u64, 0u64, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    // The ping's ICMP connection came after `created` was read: one more.
    while new + lost + ring_lost < created + 1 && Instant::now() < deadline {
        let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(n) = l.strip_prefix("[LOST] ") {
            lost += n.trim_end_matches(" events").parse::<u64>().unwrap();
        } else if l.starts_with("    [NEW] ") {
            new += 1;
        } else {
            other.push(l);
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(
        lost > 0,
        "the slow client lost nothing ({new} delivered of {created})"
    );
    assert_eq!(
        new + lost + ring_lost,
        created + 1,
        "delivered {new} + lost {lost} + ring-lost {ring_lost}; other lines: {other:?}"
    );
    assert!(other.is_empty(), "only [NEW] events: {other:?}");
    let p = gw.ping("192.0.2.2", 2);
    assert!(p.ok, "ping after the client went:\n{p}");
    let out = gw.stop();
    assert!(out.status.success(), "{out}");
}
