//! The gateway on `net_tap` ports between two network namespaces (as `ci/demo`): ping and
//! a TCP transfer from inside to outside cross it, SNATed to the pool address 192.0.2.1;
//! an outside-initiated connection is refused by the policy; a zone at its connection
//! limit admits a new connection as soon as an old one has expired; two inside hosts
//! talking SCTP to one server through SNAT each get their own replies (scapy over raw
//! sockets: the kernel needs no SCTP module); a VLAN sub-interface on the inside port
//! carries ping and TCP through SNAT. Needs root.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use std::time::Duration;

use common::*;
use gw_tapnet::*;

#[test]
fn ping_and_tcp_cross_the_gateway_snated_and_outside_connections_are_refused() {
    let mut gw = Gw::start("tapdemo", None);
    let www = gw.scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = blob(&www, "blob", 1 << 20);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let out_log = gw.http_server(&ns_out, "192.0.2.2", 8000, &www);
    let in_log = gw.http_server(&ns_in, "10.0.0.2", 8080, &www);

    // The gateway answers its own address; the server answers through it.
    gw.must_ping("10.0.0.1", 2);
    gw.must_ping("192.0.2.2", 3);
    gw.must_ping("fd00:0:0:2::2", 3);

    // A 1 MiB TCP transfer, byte for byte.
    let (c, got) = gw.fetch(
        &ns_in,
        "http://192.0.2.2:8000/blob",
        "%{http_code} %{local_port}",
    );
    assert!(c.ok && c.stdout.starts_with("200 "), "curl:\n{c}");
    assert!(got == data, "the file differs");

    // The server saw the pool address, not the client.
    let log = std::fs::read_to_string(&out_log).unwrap();
    let requests: Vec<&str> = log.lines().filter(|l| l.contains("\"GET ")).collect();
    assert_eq!(requests.len(), 1, "{log}");
    assert!(
        requests[0].starts_with("192.0.2.1 - - ")
            && requests[0].contains("\"GET /blob HTTP/1.1\" 200"),
        "the server should see 192.0.2.1 as the client:\n{log}"
    );

    // Outside → inside: refused by the policy; nothing reaches the inside server.
    let denied_before = gw.drops("policy_denied");
    let c = gw.exec(
        &ns_out,
        &[
            "curl",
            "-sS",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "http://10.0.0.2:8080/",
        ],
    );
    assert!(!c.ok, "outside→inside connection went through:\n{c}");
    let denied_after = gw.drops("policy_denied");
    assert!(
        denied_after > denied_before,
        "no policy_denied drop ({denied_before} → {denied_after})"
    );
    let log = std::fs::read_to_string(&in_log).unwrap();
    assert!(
        !log.contains("\"GET "),
        "the inside server got a request:\n{log}"
    );

    // Exactly the client's connections: echo v4, echo v6, the transfer (nothing else,
    // e.g. no name lookups, went through).
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    assert_eq!(dump.lines().count(), 3, "{dump}");

    let out = gw.stop();
    assert!(out.status.success(), "{out}");
    let ct = out
        .stdout
        .lines()
        .find(|l| l.starts_with("conntrack "))
        .unwrap_or_else(|| panic!("no conntrack line:\n{out}"));
    // icmp v4, icmp v6, tcp at least (the gateway's own echo is not tracked through).
    assert!(field_u64(ct, "created").unwrap() >= 3, "{ct}");
    let gl = out
        .stdout
        .lines()
        .find(|l| l.starts_with("gateway "))
        .unwrap_or_else(|| panic!("no gateway line:\n{out}"));
    // The two pings of 10.0.0.1 were answered by the gateway itself, after ARP.
    assert!(field_u64(gl, "echo_replies").unwrap() >= 2, "{gl}");
    assert!(field_u64(gl, "arp_replies").unwrap() >= 1, "{gl}");
    assert!(
        out.port_counter(0, "rx") > 0 && out.port_counter(1, "tx") > 0,
        "{out}"
    );
    assert!(
        out.port_counter(1, "dropped") > 0,
        "the refused SYNs are drops:\n{out}"
    );
}

/// Two workers (RSS over two queues per tap, a TX queue per worker on every port) share
/// the tracker: every transfer succeeds, SNATed, whichever worker sees which direction.
#[test]
fn two_workers_share_the_tracker() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lcores = format!("0@0,1@{},2@{}", 1 % cpus, 2 % cpus);
    let mut gw = Gw::start_lcores("tap2w", None, &lcores);
    let www = gw.scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = blob(&www, "blob", 256 << 10);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let log = gw.http_server(&ns_out, "192.0.2.2", 8000, &www);
    let p = gw.ping("192.0.2.2", 3);
    assert!(p.ok, "{p}");
    for i in 0..6 {
        let (c, got) = gw.fetch(&ns_in, "http://192.0.2.2:8000/blob", "");
        assert!(c.ok, "transfer {i}:\n{c}");
        assert!(got == data, "transfer {i} differs");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let gets: Vec<&str> = text.lines().filter(|l| l.contains("\"GET ")).collect();
    assert_eq!(gets.len(), 6, "{text}");
    assert!(gets.iter().all(|l| l.starts_with("192.0.2.1 ")), "{text}");
    let out = gw.stop();
    assert!(out.status.success(), "{out}");
    let w = out.worker_lines();
    assert_eq!(w.len(), 2, "{out}");
    let workers_rx: u64 = w.iter().map(|l| field_u64(l, "rx").unwrap()).sum();
    let ports_rx = out.port_counter(0, "rx") + out.port_counter(1, "rx");
    assert_eq!(workers_rx, ports_rx, "{out}");
    assert!(
        out.stdout.contains("rx_queues=2"),
        "RSS on the taps:\n{out}"
    );
}

/// Zone 1 admits one connection and ICMP connections expire after 3 s; the sweep is
/// too slow to matter (10 minutes), so the second connection is admitted because the
/// insert reclaims the expired one.
fn limit_config() -> String {
    format!(
        r#"
[datapath]
max_conns = 4096
sweep_interval_ms = 600000

{topology}
[limits]
zones = [ {{ zone = 1, limit = 1 }} ]

[timeouts]
icmp_first = 3
icmp_reply = 3
"#,
        topology = topology(Some(1))
    )
}

#[test]
fn a_zone_at_its_limit_admits_a_new_connection_once_an_old_one_expired() {
    let gw = Gw::start("taplimit", Some(&limit_config()));
    assert_eq!(
        gw.ctl_ok(&["ct-get-limits", "zone=1"]),
        "default limit=0\nzone=1,limit=1,count=0\n"
    );
    let p = gw.ping("192.0.2.2", 1);
    assert!(p.ok, "first connection:\n{p}");
    assert_eq!(
        gw.ctl_ok(&["ct-get-limits", "zone=1"]),
        "default limit=0\nzone=1,limit=1,count=1\n"
    );
    // A second connection (another protocol family) while the first is live: refused.
    let refused_before = gw.drops("zone_limit");
    let p = gw.ping_wait("fd00:0:0:2::2", 1, 1);
    assert!(
        !p.ok,
        "the zone limit should refuse a second connection:\n{p}"
    );
    assert!(gw.drops("zone_limit") > refused_before);
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    assert_eq!(dump.lines().count(), 1, "{dump}");
    assert!(
        dump.starts_with("icmp,orig=(src=10.0.0.2,dst=192.0.2.2,"),
        "{dump}"
    );

    // Once the first has expired (3 s), the next one is admitted at once, although the
    // sweep has not run (the count still includes the expired, unswept connection).
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(
        gw.ctl_num(&["ct-get-nconns"]),
        1,
        "the sweep must not have run"
    );
    let p = gw.ping("fd00:0:0:2::2", 1);
    assert!(p.ok, "a connection after the old one expired:\n{p}");
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    assert_eq!(dump.lines().count(), 1, "{dump}");
    assert!(
        dump.starts_with("icmpv6,orig=(src=fd00:0:0:1::2,dst=fd00:0:0:2::2,"),
        "{dump}"
    );
    assert_eq!(
        gw.ctl_ok(&["ct-get-limits", "zone=1"]),
        "default limit=0\nzone=1,limit=1,count=1\n"
    );
    assert!(gw.ct_counter("reclaimed") >= 1);
}

/// The embedded default plus VLAN 10 on the inside port (10.0.10.1/24, zone 1).
fn vlan_config() -> String {
    format!(
        "{}\n[[port]]\nport = 0\nvlan = 10\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\nzone = 1\n",
        ctgate::config::EMBEDDED_DEFAULT
    )
}

/// A Linux host on VLAN 10 of the inside port (tags added and removed by the userspace
/// tagger `gw_tapnet/vlan_tagger.py`: this kernel has no 8021q module, so there is no
/// `ip link add ... type vlan`) pings the gateway's sub-interface address and the
/// server, and fetches a file from it: SNATed to 192.0.2.1 like the untagged host, the
/// replies tagged back. The untagged host on the same port still works beside it.
#[test]
fn a_vlan_sub_interface_carries_ping_and_tcp_through_snat() {
    let mut gw = Gw::start("tapvlan", Some(&vlan_config()));
    let www = gw.scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = blob(&www, "blob", 1 << 20);
    let ns_out = gw.ns_out.clone();
    let out_log = gw.http_server(&ns_out, "192.0.2.2", 8000, &www);
    let show = gw.ctl_ok(&["show"]);
    assert!(
        show.lines()
            .any(|l| l == "port 0 vlan 10: role=inside zone=1 ipv4=10.0.10.1/24 vlan=10"),
        "{show}"
    );
    let host = gw.vlan_host(10, "10.0.10.2/24", "10.0.10.1");
    must_ping_in(&host, "10.0.10.1", 3);
    must_ping_in(&host, "192.0.2.2", 3);
    let (c, got) = gw.fetch(&host, "http://192.0.2.2:8000/blob", "%{http_code}");
    assert!(c.ok && c.stdout == "200", "curl over VLAN 10:\n{c}");
    assert!(got == data, "the file differs");
    let log = std::fs::read_to_string(&out_log).unwrap();
    let gets: Vec<&str> = log.lines().filter(|l| l.contains("\"GET ")).collect();
    assert_eq!(gets.len(), 1, "{log}");
    assert!(gets[0].starts_with("192.0.2.1 "), "SNATed:\n{log}");
    // The untagged inside host beside it.
    let p = gw.ping("192.0.2.2", 2);
    assert!(p.ok, "untagged ping:\n{p}");
    // Both hosts' connections are tracked, the VLAN host's under its own address.
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    assert!(
        dump.lines()
            .any(|l| l.starts_with("tcp,orig=(src=10.0.10.2,dst=192.0.2.2,")),
        "{dump}"
    );
    let out = gw.stop();
    assert!(out.status.success(), "{out}");
    let w = out.worker_lines();
    assert_eq!(field_u64(w[0], "drop_vlan"), Some(0), "{out}");
}

/// The SCTP peers (scapy over raw IP sockets), run with Debian's python3 (`python3-scapy`).
const SCTP_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gw_tapnet/sctp_peer.py");
const PYTHON: &str = "/usr/bin/python3";

#[test]
fn sctp_from_two_inside_hosts_through_snat_each_host_gets_only_its_own_replies() {
    let mut gw = Gw::start("tapsctp", None);
    let (ns_in, ns_out, tap_in) = (gw.ns_in.clone(), gw.ns_out.clone(), gw.tap_in.clone());
    // The second inside host: another address on the inside link.
    let o = gw.exec(
        &ns_in,
        &["ip", "addr", "add", "10.0.0.3/24", "dev", &tap_in],
    );
    assert!(o.ok, "add 10.0.0.3:\n{o}");
    let log = gw.scratch.path("sctp-server.log");
    let log_s = log.display().to_string();
    let out = gw.scratch.path("sctp-server.out");
    gw.spawn_in(
        &ns_out,
        &[PYTHON, SCTP_PEER, "server", "192.0.2.2", &log_s, "40"],
        &out,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the SCTP server did not start:\n{}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Both hosts use source port 5000 to 192.0.2.2:9899: SNAT to 192.0.2.1 keeps 5000 for
    // one and must give the other another port, and route each reply back by it.
    let (a, b) = ("10.0.0.2", "10.0.0.3");
    let o = gw.exec(
        &ns_in,
        &[
            PYTHON,
            SCTP_PEER,
            "clients",
            "192.0.2.2",
            "9899",
            "5000",
            "4",
            &format!("{a}:a0a0a0a0"),
            &format!("{b}:b0b0b0b0"),
        ],
    );
    assert!(o.ok, "SCTP clients:\n{o}");
    let v: serde_json::Value =
        serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", o.stdout));
    for host in [a, b] {
        let sent: Vec<String> = v[host]["sent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let got = v[host]["got"].as_array().unwrap();
        assert_eq!(sent.len(), 5, "{host}: INIT and 4 DATA sent");
        let mut got_chunks: Vec<String> = Vec::new();
        for g in got {
            assert_eq!(g["src"], "192.0.2.2", "{host} got {g}");
            assert_eq!(
                (g["sport"].as_u64(), g["dport"].as_u64()),
                (Some(9899), Some(5000)),
                "{host} got {g}"
            );
            assert_eq!(g["crc_ok"], true, "{host}: CRC32c wrong in {g}");
            got_chunks.push(g["chunks"].as_str().unwrap().to_string());
        }
        let mut want = sent.clone();
        want.sort();
        got_chunks.sort();
        // Exactly its own replies: every one of its packets answered once, nothing of the
        // other host's (whose chunks carry the other tag).
        assert_eq!(
            got_chunks, want,
            "{host} must receive exactly the answers to its own packets\nall: {v}"
        );
    }

    // The server saw both hosts as 192.0.2.1, from two different ports, every CRC32c right.
    let log_text = std::fs::read_to_string(&log).unwrap();
    let mut ports = [
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    ];
    let mut n = 0;
    for l in log_text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(
            (f[0], f[2], f[3]),
            ("192.0.2.1", "9899", "1"),
            "server got: {l}"
        );
        // Host A's chunks carry its tag a0a0a0a0 (INIT) or the text "a0a0a0a0-K" (DATA).
        let host = if f[4].contains("a0a0a0a0") || f[4].contains("6130613061306130") {
            0
        } else {
            1
        };
        ports[host].insert(f[1].to_string());
        n += 1;
    }
    assert_eq!(n, 10, "the server got every packet once:\n{log_text}");
    assert_eq!((ports[0].len(), ports[1].len()), (1, 1), "{log_text}");
    assert!(ports[0] != ports[1], "both hosts on one port:\n{log_text}");

    // Two SCTP connections, each with its own translated port.
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    let sctp: Vec<&str> = dump.lines().filter(|l| l.starts_with("sctp,")).collect();
    assert_eq!(sctp.len(), 2, "{dump}");
    for (host, l) in [(a, "10.0.0.2"), (b, "10.0.0.3")] {
        assert!(
            sctp.iter().any(|c| c.contains(&format!(
                "orig=(src={l},dst=192.0.2.2,sport=5000,dport=9899)"
            ))),
            "{host}: {dump}"
        );
    }
    let out = gw.stop();
    assert!(out.status.success(), "{out}");
}

/// The next hop (the server 192.0.2.2, on the outside link) changes its MAC without a
/// gratuitous ARP: once the gateway's entry goes stale, traffic using it makes the gateway
/// probe (unicast to the old MAC, unanswered, then broadcast), the answer gives the new
/// MAC and pings get through again, within 40 s of the change.
#[test]
fn traffic_resumes_within_40_s_after_the_next_hop_changes_its_mac_silently() {
    let gw = Gw::start("tapmac", None);
    let (ns_out, tap_out) = (gw.ns_out.clone(), gw.tap_out.clone());
    let p = gw.ping("192.0.2.2", 2);
    assert!(p.ok, "ping before the change:\n{p}");
    let sysctl = format!("net.ipv4.conf.{tap_out}.arp_notify=0");
    let o = gw.exec(&ns_out, &["sysctl", "-q", "-w", &sysctl]);
    assert!(o.ok, "no gratuitous ARP on a MAC change:\n{o}");
    let o = gw.exec(
        &ns_out,
        &[
            "ip",
            "link",
            "set",
            "dev",
            &tap_out,
            "address",
            "02:00:00:00:77:77",
        ],
    );
    assert!(o.ok, "change the MAC:\n{o}");
    let changed = std::time::Instant::now();
    // One ping a second (each is traffic that uses the entry) until one is answered.
    let mut lost = 0;
    loop {
        let p = gw.ping_wait("192.0.2.2", 1, 1);
        if p.ok {
            break;
        }
        lost += 1;
        assert!(
            changed.elapsed() < Duration::from_secs(40),
            "no answer 40 s after the MAC change ({lost} pings lost):\n{p}\n{}",
            gw.ctl_ok(&["stats"])
        );
    }
    let resumed = changed.elapsed();
    eprintln!("traffic resumed {resumed:?} after the MAC change, {lost} pings lost");
    // A few more get through, to the new MAC.
    gw.must_ping("192.0.2.2", 3);
    let stats = gw.ctl_ok(&["stats"]);
    let gl = stats
        .lines()
        .find(|l| l.starts_with("gateway "))
        .unwrap_or_else(|| panic!("no gateway line in stats:\n{stats}"));
    // The server (and the inside host) learned at start, then the server's new MAC.
    assert!(field_u64(gl, "neigh_learned").unwrap() >= 3, "{gl}");
    assert_eq!(field_u64(gl, "neigh_failed"), Some(0), "{gl}");
}
