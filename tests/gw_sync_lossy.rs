//! State sync over a lossy link between two real ctgate processes (issue 16): A and B run
//! in a network namespace of their own on `net_pcap` ports and sync over its loopback,
//! where nftables drops 30% of the sync datagrams (this kernel has no netem). A reads a
//! pcap of 3,000 new connections from the inside (2,000 TCP SYNs, 1,000 UDP requests,
//! all source-NATed); B gets no traffic. B must end up with exactly A's table (the dumps
//! equal, B's lines marked `learned=1`), through retransmissions (A's `sync-status`
//! counts them, the nft counter counts the drops). Then B is killed and restarted: it
//! gets the whole table back by bulk resync over the same lossy link. Then
//! `flush-conntrack` on A empties B too. Needs root (namespaces, nft); run it under
//! `flock /tmp/ctgate-netns.lock`.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use ctgate::wire::testframe::{Frame, L4};
use gw_tapnet::*;

/// The inside host 10.0.0.2 (the static next hop of port 0).
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const TCP_CONNS: u16 = 2_000;
const UDP_CONNS: u16 = 1_000;
const TOTAL: u64 = TCP_CONNS as u64 + UDP_CONNS as u64;
/// The sync ports of A and B on the namespace's loopback.
const SYNC_A: u16 = 3780;
const SYNC_B: u16 = 3781;

/// The embedded default with static next hops, connections that outlive the test, and
/// sync between `local` and `peer` on the loopback.
fn config(local: u16, peer: u16) -> String {
    let text = static_next_hops_config(&[
        ("max_conns = 3000000", "max_conns = 16384"),
        ("tcp_syn_sent = 240", "tcp_syn_sent = 3600"),
        ("udp_first = 120", "udp_first = 3600"),
    ]);
    format!(
        "{text}\n[sync]\nlocal = \"127.0.0.1:{local}\"\npeers = [\"127.0.0.1:{peer}\"]\nrefresh_interval = 0\n"
    )
}

/// The inside packets: one SYN per TCP connection and one request per UDP flow, from
/// 10.0.0.2 to 198.51.100.7.
fn inside_pcap() -> Vec<Vec<u8>> {
    let (host, server) = ([10, 0, 0, 2], [198, 51, 100, 7]);
    let frame = |l4| {
        Frame::v4(host, server, l4)
            .macs(NET_PCAP_MAC0, HOST)
            .build()
    };
    (0..TCP_CONNS)
        .map(|i| frame(L4::tcp(20_000 + i, 80, 1_000, 0, 0x02, b"")))
        .chain((0..UDP_CONNS).map(|i| frame(L4::udp(40_000 + i, 53, b"query"))))
        .collect()
}

/// One instance: a ctgate process in the namespace.
struct Node {
    scratch: Scratch,
    socket: PathBuf,
    args: (Vec<String>, Vec<String>),
    run: Option<Running>,
}

impl Ctl for Node {
    fn socket(&self) -> &std::path::Path {
        &self.socket
    }
}

impl Node {
    /// `rx0` is what port 0 reads (the other ports read nothing).
    fn new(name: &str, local: u16, peer: u16, rx0: &[Vec<u8>]) -> Node {
        let scratch = Scratch::new(name);
        let p = |f: &str| scratch.path(f).display().to_string();
        let eal = scratch.pcap_ports("0,1", &[rx0.iter().map(Vec::as_slice).collect(), vec![]]);
        std::fs::write(scratch.path("gw.toml"), config(local, peer)).unwrap();
        let socket = scratch.path("ctl.sock");
        let app = vec![
            "--config".into(),
            p("gw.toml"),
            "--socket".into(),
            socket.display().to_string(),
            "--quiet".into(),
        ];
        Node {
            scratch,
            socket,
            args: (eal, app),
            run: None,
        }
    }

    fn start(&mut self, ns: &str) {
        let app: Vec<&str> = self.args.1.iter().map(String::as_str).collect();
        let mut run = Running::start_in_netns(ns, &self.args.0, &app);
        let up = run.wait_for_line(Duration::from_secs(60), |l| {
            l.starts_with("ctgate: gateway on")
        });
        if up.is_none() {
            panic!(
                "ctgate did not start:\n{}",
                run.finish(Duration::from_secs(10))
            );
        }
        self.run = Some(run);
    }

    /// `dump-conntrack -m`, sorted, with the `learned=` mark taken off.
    fn table(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ctl_ok(&["dump-conntrack", "-m"])
            .lines()
            .map(|l| l.trim_end_matches(",learned=1").to_string())
            .collect();
        v.sort();
        v
    }

    fn peer_line(&self) -> String {
        let s = self.ctl_ok(&["sync-status"]);
        s.lines()
            .find(|l| l.starts_with("peer 1 "))
            .unwrap_or_else(|| panic!("no peer line:\n{s}"))
            .to_string()
    }

    fn peer_counter(&self, name: &str) -> u64 {
        let l = self.peer_line();
        field_u64(&l, name).unwrap_or_else(|| panic!("no {name} in {l}"))
    }

    /// Waits (at most `secs`) until `ct-get-nconns` is `n`; returns the last count.
    fn wait_conns(&self, n: u64, secs: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.ctl_num(&["ct-get-nconns"]);
            if got == n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The namespace, removed on drop.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        del_netns(&self.0);
    }
}

/// Datagrams the nft rule dropped so far.
fn nft_drops(ns: &str) -> u64 {
    let o = exec_in(ns, &["nft", "list", "chain", "inet", "ctgsync", "out"]);
    assert!(o.ok, "{o}");
    o.stdout
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{o}"))
}

#[test]
fn lossy_sync_link_keeps_the_standby_equal_through_retransmission_restart_and_flush() {
    assert!(
        is_root(),
        "the lossy sync test needs root (network namespace, nftables): run `cargo test` as root, as CI does"
    );
    let _lock = dpdk_lock();
    let ns = Ns(format!("ctgsl{}", std::process::id()));
    add_netns(&ns.0);
    must_in(&ns.0, &["ip", "link", "set", "lo", "up"]);
    // 30% of the sync datagrams, both ways, are dropped on the namespace's loopback.
    must_in(&ns.0, &["nft", "add", "table", "inet", "ctgsync"]);
    must_in(
        &ns.0,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "ctgsync",
            "out",
            "{ type filter hook output priority 0; }",
        ],
    );
    let (a_port, b_port) = (SYNC_A.to_string(), SYNC_B.to_string());
    must_in(
        &ns.0,
        &[
            "nft", "add", "rule", "inet", "ctgsync", "out", "udp", "dport", "{", &a_port, ",",
            &b_port, "}", "numgen", "random", "mod", "10", "<", "3", "counter", "drop",
        ],
    );
    let mut b = Node::new("synclossyb", SYNC_B, SYNC_A, &[]);
    let mut a = Node::new("synclossya", SYNC_A, SYNC_B, &inside_pcap());
    b.start(&ns.0);
    a.start(&ns.0);
    assert_eq!(a.wait_conns(TOTAL, 120), TOTAL, "{}", a.ctl_ok(&["stats"]));
    let got = b.wait_conns(TOTAL, 180);
    assert_eq!(got, TOTAL, "A: {}\nB: {}", a.peer_line(), b.peer_line());
    let ta = a.table();
    assert_eq!(ta.len() as u64, TOTAL);
    assert!(
        ta.iter()
            .all(|l| l.contains(",reply=(src=198.51.100.7,dst=192.0.2.1,")),
        "{}",
        ta[0]
    );
    assert_eq!(b.table(), ta);
    let dump_b = b.ctl_ok(&["dump-conntrack", "-m"]);
    assert!(dump_b.lines().all(|l| l.ends_with(",learned=1")));
    assert!(!a.ctl_ok(&["dump-conntrack", "-m"]).contains("learned="));
    let retransmitted = a.peer_counter("retransmitted");
    assert!(retransmitted > 0, "{}", a.peer_line());
    let drops = nft_drops(&ns.0);
    assert!(drops > 0);
    eprintln!("synced {TOTAL} connections: A retransmitted={retransmitted}, nft drops={drops}");

    // B crashes and restarts empty: it asks A for its table, streamed over the same link.
    b.run.take().unwrap().signal("KILL");
    b.start(&ns.0);
    let got = b.wait_conns(TOTAL, 180);
    assert_eq!(got, TOTAL, "A: {}\nB: {}", a.peer_line(), b.peer_line());
    assert_eq!(b.table(), ta);
    assert!(b.peer_counter("resyncs_received") >= 1, "{}", b.peer_line());
    assert!(nft_drops(&ns.0) > drops);

    // A flush on A is a delete for every connection on B.
    a.ctl_ok(&["flush-conntrack"]);
    assert_eq!(a.ctl_num(&["ct-get-nconns"]), 0);
    assert_eq!(
        b.wait_conns(0, 180),
        0,
        "A: {}\nB: {}",
        a.peer_line(),
        b.peer_line()
    );
    for n in [&mut a, &mut b] {
        let out = n.run.take().unwrap();
        out.signal("TERM");
        let out = out.finish(Duration::from_secs(30));
        assert!(out.status.success(), "{out}");
    }
    drop((a.scratch, b.scratch));
}
