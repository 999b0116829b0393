//! 100 reloads of the running gateway under traffic, through its real run loop: the
//! `ctgate` binary on two `net_pcap` ports whose `rx_pcap` are named pipes this test
//! writes without pause (one thread per port), `ctgate-ctl` on its control socket.
//!
//! Eight UDP flows from inside are established first (the replies from outside go to the
//! translated ports the dump shows), then sent both ways for the whole test while the
//! configuration alternates between A (the default: SNAT pool 192.0.2.1, outside-new
//! connections denied, 203.0.113.0/24 by the default route out of port 1) and B (SNAT
//! pool 192.0.2.9, outside-new connections allowed, 203.0.113.0/24 routed via 10.0.0.3
//! out of port 0). Before each reload a file with an error is refused with its
//! `FILE:LINE: FIELD` message (ctl exit 1) and changes nothing. Each reload keeps the
//! connection count; after it, new connections follow its rules: an inside→outside one
//! gets its pool (in the dump), one to 203.0.113.5 is NATed out of port 1 under A and
//! routed unNATed out of port 0 under B (dump and output pcaps), an outside→inside one is
//! refused under A (`drop_policy_denied`) and tracked under B. The metrics endpoint is
//! scraped after each reload and its text passes `promtool check metrics`.
//!
//! Also through `ctgate-ctl`: files changing what needs a restart (`datapath.buckets`,
//! `max_conns` above the pool) are refused naming the field; a limit set with
//! `ct-set-limits` and reset by a reload is named on a `reset` line; `nat-show` counts
//! per pool address (the running pool's and the kept one of B) the ports the dump shows;
//! a final `reload --flush-stale` deletes exactly the connections A would not create
//! (B's NATed ones, the outside→inside ones) and stops keeping B's pool.
//!
//! At the end every packet is accounted for: the workers' `rx` equals what was written,
//! `rx = tx + dropped`, the only drops are the 50 policy refusals, and the output pcaps
//! hold exactly as many packets of each established flow, in each direction, as were
//! sent: nothing was lost to a swap.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use ctgate::pcap;
use ctgate::wire::testframe::{Frame, L4};

const RELOADS: usize = 100;
const FLOWS: u16 = 8;

/// The inside host 10.0.0.2 (the static next hop of port 0).
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// The outside router 192.0.2.2 (the static next hop of port 1).
const ROUTER: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
/// The MACs net_pcap gives ports 0 and 1.
const MAC0: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
const MAC1: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x01];
const H4: [u8; 4] = [10, 0, 0, 2];
const SERVER: [u8; 4] = [198, 51, 100, 7];
const ROUTED: [u8; 4] = [203, 0, 113, 5];
const POOL_A: [u8; 4] = [192, 0, 2, 1];
const POOL_B: [u8; 4] = [192, 0, 2, 9];

fn ip(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

/// Configuration A: the default with static next hops, long UDP timeouts (nothing
/// expires during the test, so counts are exact), the metrics endpoint on `metrics`.
fn config_a(metrics: u16) -> String {
    let text = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
        ctgate::config::EMBEDDED_DEFAULT
    );
    edit_config(
        &text,
        &[
            ("max_conns = 3000000", "max_conns = 4096"),
            (
                "zone = 1\n",
                "zone = 1\nnext_hop_mac = \"02:00:00:00:01:02\"\n",
            ),
            (
                "# next_hop_mac = \"02:00:00:00:00:02\"",
                "next_hop_mac = \"02:00:00:00:02:02\"",
            ),
            ("udp_first = 120", "udp_first = 3600"),
            ("udp_single = 120", "udp_single = 3600"),
            ("udp_multiple = 300", "udp_multiple = 3600"),
        ],
    )
}

/// Configuration B: another SNAT pool, outside-new connections allowed, a route more.
fn config_b(metrics: u16) -> String {
    edit_config(
        &config_a(metrics),
        &[
            ("pool = \"192.0.2.1\"", "pool = \"192.0.2.9\""),
            ("outside_new = \"deny\"", "outside_new = \"allow\""),
            (
                "[[route]]\nprefix = \"0.0.0.0/0\"",
                "[[route]]\nprefix = \"203.0.113.0/24\"\nvia = \"10.0.0.3\"\n\n\
                 [[route]]\nprefix = \"0.0.0.0/0\"",
            ),
        ],
    )
}

fn udp_frame(
    dmac: [u8; 6],
    smac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
) -> Vec<u8> {
    Frame::v4(src, dst, L4::udp(sp, dp, b"reload-under-traffic"))
        .macs(dmac, smac)
        .build()
}

/// The UDP 5-tuple of an IPv4 frame: (src, dst, sport, dport).
fn tuple(f: &[u8]) -> Option<([u8; 4], [u8; 4], u16, u16)> {
    if f.len() < 42 || f[12..14] != [8, 0] || f[23] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 15) * 4;
    let l4 = 14 + ihl;
    let a = |i: usize| [f[i], f[i + 1], f[i + 2], f[i + 3]];
    let p = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    Some((a(26), a(30), p(l4), p(l4 + 2)))
}

/// A thread writing one port's `rx_pcap` pipe without pause: each round one packet of
/// every flow, then any probes sent to it; counts what it wrote per flow.
struct Feeder {
    add: Sender<Vec<u8>>,
    flows: Sender<Vec<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, Vec<u64>)>>,
}

impl Feeder {
    fn start(fifo: &Path, flows: Vec<Vec<u8>>) -> Feeder {
        let (add, probes) = channel::<Vec<u8>>();
        let (set, new_flows) = channel::<Vec<Vec<u8>>>();
        let stop = Arc::new(AtomicBool::new(false));
        let fifo = fifo.to_path_buf();
        let halt = Arc::clone(&stop);
        let thread = std::thread::spawn(move || feed(&fifo, flows, &probes, &new_flows, &halt));
        Feeder {
            add,
            flows: set,
            stop,
            thread: Some(thread),
        }
    }

    /// Sends `frame` once, after the current round.
    fn probe(&self, frame: Vec<u8>) {
        self.add.send(frame).unwrap();
    }

    /// Replaces the flows sent every round (the counts of the old ones stay first).
    fn set_flows(&self, flows: Vec<Vec<u8>>) {
        self.flows.send(flows).unwrap();
    }

    /// Stops, closes the pipe; (packets written, packets written per flow).
    fn finish(mut self) -> (u64, Vec<u64>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn feed(
    fifo: &Path,
    mut flows: Vec<Vec<u8>>,
    probes: &Receiver<Vec<u8>>,
    new_flows: &Receiver<Vec<Vec<u8>>>,
    stop: &AtomicBool,
) -> (u64, Vec<u64>) {
    // Opening blocks until ctgate (net_pcap, at probe) opens the pipe for reading.
    let f = File::options().write(true).open(fifo).unwrap();
    let mut w = pcap::Writer::new(f).unwrap();
    let ts = Duration::from_secs(1_700_000_000);
    let mut per_flow = vec![0u64; flows.len()];
    let mut total = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if let Ok(f) = new_flows.try_recv() {
            flows = f;
            per_flow.resize(flows.len(), 0);
        }
        for (i, f) in flows.iter().enumerate() {
            w.write_packet(ts, f).unwrap();
            per_flow[i] += 1;
            total += 1;
        }
        while let Ok(p) = probes.try_recv() {
            w.write_packet(ts, &p).unwrap();
            total += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (total, per_flow)
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo")
        .arg(p)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mkfifo {}", p.display());
}

/// `ctgate-ctl` next to `ctgate` (built by `cargo build --workspace`; built here if
/// missing).
fn ctl_bin() -> PathBuf {
    let bin = Path::new(ctgate_bin()).with_file_name("ctgate-ctl");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "ctgate-ctl"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok && bin.exists(), "cargo build -p ctgate-ctl failed");
    }
    bin
}

struct Ctl {
    bin: PathBuf,
    socket: String,
}

impl Ctl {
    /// (exit ok, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctgate-ctl");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "ctgate-ctl {args:?} failed:\n{out}{err}");
        out
    }

    /// A drop counter summed over the workers (`drops ... NAME=N` line of `stats`).
    fn drops(&self, reason: &str) -> u64 {
        let s = self.ok(&["stats"]);
        let line = s
            .lines()
            .find(|l| l.starts_with("drops "))
            .unwrap_or_else(|| panic!("no drops line in stats:\n{s}"));
        field_u64(line, reason).unwrap_or_else(|| panic!("no {reason} in {line:?}"))
    }

    fn nconns(&self) -> u64 {
        let s = self.ok(&["ct-get-nconns"]);
        s.trim().parse().unwrap_or_else(|_| panic!("{s:?}"))
    }

    /// Polls the dump until every pattern of `want` is in it (10 s at most).
    fn dump_until(&self, want: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = self.ok(&["dump-conntrack"]);
            if want.iter().all(|w| d.contains(w.as_str())) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "not in the dump: {:?}\n{d}",
                want.iter()
                    .filter(|w| !d.contains(w.as_str()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The body of `GET /metrics` on 127.0.0.1:`port` (status 200 required).
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

/// `promtool check metrics` (Debian package prometheus, in ci/setup) accepts `text`.
fn promtool_check(text: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, in ci/setup)");
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(check.stdin.take());
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dump's description of a UDP connection's original direction.
fn orig(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> String {
    format!(
        "udp,orig=(src={},dst={},sport={sp},dport={dp}),reply=(",
        ip(src),
        ip(dst)
    )
}

#[test]
fn a_hundred_reloads_under_traffic_lose_no_packet_and_new_connections_follow_each_file() {
    let _lock = dpdk_lock();
    let s = Scratch::new("reload100");
    let (a_path, b_path, bad_path) = (s.path("a.toml"), s.path("b.toml"), s.path("bad.toml"));
    // The metrics endpoint on a free loopback port.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(&a_path, config_a(metrics)).unwrap();
    std::fs::write(&b_path, config_b(metrics)).unwrap();
    let bad = config_b(metrics).replace("role = \"outside\"", "role = 7");
    let bad_line = config_b(metrics)
        .lines()
        .position(|l| l == "role = \"outside\"")
        .unwrap()
        + 1;
    std::fs::write(&bad_path, bad).unwrap();

    // The established flows, inside→outside.
    let fwd: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| udp_frame(MAC0, HOST, H4, SERVER, 40000 + i, 5000 + i))
        .collect();
    let (rx0, rx1) = (s.path("rx0.fifo"), s.path("rx1.fifo"));
    mkfifo(&rx0);
    mkfifo(&rx1);
    let inside = Feeder::start(&rx0, fwd);
    let outside = Feeder::start(&rx1, Vec::new());

    let p = |f: &Path| f.display().to_string();
    let eal = s.net_pcap_eal(
        "0,1",
        &[
            (rx0.clone(), s.path("tx0.pcap")),
            (rx1.clone(), s.path("tx1.pcap")),
        ],
    );
    let sock = p(&s.path("ctl.sock"));
    let a = p(&a_path);
    let run = Running::start(
        &eal,
        &[
            "--config",
            &a,
            "--socket",
            &sock,
            "--exit-when-idle",
            "1000",
            "--quiet",
        ],
    );
    let ctl = Ctl {
        bin: ctl_bin(),
        socket: sock.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&sock).exists() || !ctl.run(&["version"]).0 {
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The flows are tracked and NATed: the replies go to their translated ports.
    let want: Vec<String> = (0..FLOWS)
        .map(|i| orig(H4, SERVER, 40000 + i, 5000 + i))
        .collect();
    let dump = ctl.dump_until(&want);
    let tport: Vec<u16> = want
        .iter()
        .map(|w| {
            let l = dump.lines().find(|l| l.starts_with(w.as_str())).unwrap();
            let reply = l.split("reply=(").nth(1).unwrap();
            assert!(
                reply.starts_with(&format!("src={},dst={},", ip(SERVER), ip(POOL_A))),
                "{l}"
            );
            reply
                .split("dport=")
                .nth(1)
                .unwrap()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    outside.set_flows(
        (0..FLOWS)
            .map(|i| {
                udp_frame(
                    MAC1,
                    ROUTER,
                    SERVER,
                    POOL_A,
                    5000 + i,
                    tport[usize::from(i)],
                )
            })
            .collect(),
    );
    // Both directions seen: the flows are established (UDP "multiple").
    std::thread::sleep(Duration::from_millis(300));
    let mut conns = ctl.nconns();
    assert_eq!(conns, u64::from(FLOWS));

    // What needs a restart is refused, naming the field; nothing changes (the first
    // reload below is generation 2).
    for (name, from, to, want) in [
        (
            "buckets.toml",
            "buckets = 0",
            "buckets = 1024",
            "datapath.buckets: 0 -> 1024 needs a restart",
        ),
        (
            "big.toml",
            "max_conns = 4096",
            "max_conns = 8192",
            "datapath.max_conns:",
        ),
    ] {
        let f = s.path(name);
        std::fs::write(&f, config_a(metrics).replace(from, to)).unwrap();
        let (ok, out, err) = ctl.run(&["reload", "--config", &p(&f)]);
        assert!(!ok, "{name} accepted:\n{out}");
        assert!(
            err.contains(want)
                && err.contains("needs a restart")
                && err.contains("the running configuration stays"),
            "{name}: {err}"
        );
    }

    for k in 0..RELOADS {
        let on_b = k % 2 == 0;
        // A file with an error: refused with FILE:LINE: FIELD, nothing changes.
        let (ok, out, err) = ctl.run(&["reload", "--config", &p(&bad_path)]);
        assert!(!ok, "reload {k}: the invalid file was accepted:\n{out}");
        assert!(
            err.contains(&format!("{}:{bad_line}: port[1].role", bad_path.display())),
            "reload {k}: no FILE:LINE: FIELD error:\n{err}"
        );
        // The swap: the next generation, and every worker runs it when reload answers.
        let (file, pool) = if on_b {
            (&b_path, POOL_B)
        } else {
            (&a_path, POOL_A)
        };
        let before = ctl.nconns();
        assert_eq!(before, conns, "reload {k}: connections before it");
        // Once, a limit set at run time that the file resets: the reload says so.
        let reset = if k == 51 {
            ctl.ok(&["ct-set-limits", "zone=3,limit=7"]);
            "reset limits.zone 3: 7 -> unset (set at run time)\n"
        } else {
            ""
        };
        let r = ctl.ok(&["reload", "--config", &p(file)]);
        assert_eq!(
            r,
            format!(
                "reloaded generation {} from {}\n{reset}",
                k + 2,
                file.display()
            ),
            "reload {k}"
        );
        assert_eq!(
            ctl.nconns(),
            before,
            "reload {k} changed the connection count"
        );

        // New connections follow this file.
        let sport = 20000 + k as u16;
        inside.probe(udp_frame(MAC0, HOST, H4, SERVER, sport, 7));
        inside.probe(udp_frame(MAC0, HOST, H4, ROUTED, sport, 7));
        outside.probe(udp_frame(MAC1, ROUTER, SERVER, H4, 30000 + k as u16, 9));
        let snat = format!(
            "{}src={},dst={},sport=7,dport={sport})",
            orig(H4, SERVER, sport, 7),
            ip(SERVER),
            ip(pool)
        );
        let routed = format!(
            "{}src={},dst={},sport=7,dport={sport})",
            orig(H4, ROUTED, sport, 7),
            ip(ROUTED),
            ip(if on_b { H4 } else { POOL_A })
        );
        let mut want = vec![snat, routed];
        if on_b {
            want.push(format!(
                "{}src={},dst={},sport=9,dport={})",
                orig(SERVER, H4, 30000 + k as u16, 9),
                ip(H4),
                ip(SERVER),
                30000 + k as u16
            ));
        }
        conns += want.len() as u64;
        ctl.dump_until(&want);
        if !on_b {
            // The outside→inside probe is refused, not merely late: counted, before the
            // next reload (which would allow it).
            let refused = (k / 2 + 1) as u64;
            let deadline = Instant::now() + Duration::from_secs(10);
            while ctl.drops("policy_denied") < refused {
                assert!(Instant::now() < deadline, "reload {k}: no policy refusal");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(ctl.drops("policy_denied"), refused, "reload {k}");
        }
        // Scraped under traffic and reloads (the accounting below shows it costs the
        // datapath nothing).
        let m = scrape(metrics);
        assert!(m.contains("\nctgate_config_generation "), "{m}");
    }
    // The endpoint renders once a second: then it shows the last generation, and its
    // text passes the format check.
    std::thread::sleep(Duration::from_millis(1100));
    let m = scrape(metrics);
    assert!(
        m.contains(&format!("\nctgate_config_generation {}\n", RELOADS + 1)),
        "{m}"
    );
    promtool_check(&m);
    // The last probes are through: the connection count is what the rules allowed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl.nconns() != conns {
        assert!(Instant::now() < deadline, "{} != {conns}", ctl.nconns());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the last outside probe (refused under A) go through before the end.
    std::thread::sleep(Duration::from_millis(300));
    let dump = ctl.ok(&["dump-conntrack"]);
    let admitted: Vec<u16> = dump
        .lines()
        .filter(|l| l.starts_with(&format!("udp,orig=(src={},dst={},", ip(SERVER), ip(H4))))
        .map(|l| l.split("sport=").nth(1).unwrap()[..5].parse().unwrap())
        .collect();
    assert_eq!(
        admitted
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<u16>>(),
        (0..RELOADS)
            .filter(|k| k % 2 == 0)
            .map(|k| 30000 + k as u16)
            .collect(),
        "outside→inside connections: exactly those made under B"
    );

    // nat-show counts the ports the dump shows in use, per pool address: A's pool (the
    // established flows and A's new connections) and B's, kept while its connections
    // live.
    let nat = ctl.ok(&["nat-show"]);
    let in_use = |pool: [u8; 4]| -> usize {
        dump.lines()
            .filter(|l| l.starts_with("udp,"))
            .filter_map(|l| l.split("reply=(").nth(1))
            .filter(|r| r.contains(&format!(",dst={},", ip(pool))))
            .filter_map(|r| r.split("dport=").nth(1))
            .map(|d| d.split(')').next().unwrap().to_string())
            .collect::<std::collections::BTreeSet<String>>()
            .len()
    };
    let (used_a, used_b) = (in_use(POOL_A), in_use(POOL_B));
    assert_eq!(
        (used_a, used_b),
        (usize::from(FLOWS) + RELOADS / 2, RELOADS / 2),
        "{dump}"
    );
    for want in [
        "snat pool=192.0.2.1\n".to_string(),
        "kept pool=192.0.2.9 ".to_string(),
        format!("pool 192.0.2.1: tcp=0 udp={used_a} icmp=0 other=0\n"),
        format!("pool 192.0.2.9: tcp=0 udp={used_b} icmp=0 other=0\n"),
    ] {
        assert!(nat.contains(&want), "no {want:?} in nat-show:\n{nat}");
    }

    // --flush-stale: the connections A would not create go (B's NATed ones, the
    // outside→inside ones, and those B routed to 203.0.113.5 unNATed, which A routes out
    // of port 1 and so would NAT), the established flows stay, B's pool is no longer kept.
    let r = ctl.ok(&["reload", "--flush-stale"]);
    let stale = (RELOADS / 2 * 3) as u64;
    assert_eq!(
        r,
        format!(
            "reloaded generation {} from {}\nflushed {stale} stale connections\n",
            RELOADS + 2,
            a_path.display()
        )
    );
    assert_eq!(ctl.nconns(), conns - stale);
    let dump = ctl.ok(&["dump-conntrack"]);
    assert!(
        !dump.contains(&format!("dst={},", ip(POOL_B)))
            && !dump.contains(&format!("udp,orig=(src={},dst={},", ip(SERVER), ip(H4)))
            && !dump.contains(&format!("reply=(src={},dst={},", ip(ROUTED), ip(H4))),
        "{dump}"
    );
    assert!(
        (0..FLOWS).all(|i| dump.contains(&orig(H4, SERVER, 40000 + i, 5000 + i))),
        "{dump}"
    );
    let nat = ctl.ok(&["nat-show"]);
    assert!(
        !nat.contains("kept pool") && !nat.contains("192.0.2.9"),
        "{nat}"
    );

    let (in_total, in_flows) = inside.finish();
    let (out_total, out_flows) = outside.finish();
    eprintln!("written: {in_total} packets inside, {out_total} outside");
    let out = run.finish(Duration::from_secs(60));
    assert!(out.status.success(), "{out}");

    // Every packet accounted for; the only drops are the policy's refusals under A.
    let sum = |k: &str| out.workers_sum(k);
    let denied = (RELOADS / 2) as u64;
    assert_eq!(sum("rx"), in_total + out_total, "{out}");
    assert_eq!(sum("dropped"), denied, "{out}");
    assert_eq!(sum("drop_policy_denied"), denied, "{out}");
    assert_eq!(sum("tx") + sum("dropped"), sum("rx"), "{out}");

    // The established flows lost nothing, in either direction.
    let (tx0, tx1) = (s.read_pcap("tx0.pcap"), s.read_pcap("tx1.pcap"));
    assert_eq!((tx0.len() + tx1.len()) as u64, sum("tx"));
    let mut counts: BTreeMap<([u8; 4], [u8; 4], u16, u16), u64> = BTreeMap::new();
    for f in tx0.iter().chain(tx1.iter()) {
        ctgate::wire::frame_checksums::verify_frame(f).unwrap();
        *counts.entry(tuple(f).unwrap()).or_default() += 1;
    }
    for i in 0..FLOWS {
        let n = counts
            .get(&(POOL_A, SERVER, tport[usize::from(i)], 5000 + i))
            .copied()
            .unwrap_or(0);
        assert_eq!(n, in_flows[usize::from(i)], "flow {i} inside→outside");
        let n = counts
            .get(&(SERVER, H4, 5000 + i, 40000 + i))
            .copied()
            .unwrap_or(0);
        assert_eq!(n, out_flows[usize::from(i)], "flow {i} outside→inside");
    }
    // The routed probes left by the port of their file's route, to its next hop.
    let in_tx0 = |t: ([u8; 4], [u8; 4], u16, u16)| {
        tx0.iter()
            .any(|f| tuple(f) == Some(t) && f[..6] == HOST && f[6..12] == MAC0)
    };
    let in_tx1 = |t: ([u8; 4], [u8; 4], u16, u16)| {
        tx1.iter()
            .any(|f| tuple(f) == Some(t) && f[..6] == ROUTER && f[6..12] == MAC1)
    };
    for k in 0..RELOADS {
        let sport = 20000 + k as u16;
        if k % 2 == 0 {
            assert!(in_tx0((H4, ROUTED, sport, 7)), "routed probe {k} (B)");
            assert!(in_tx1((POOL_B, SERVER, sport, 7)), "NAT probe {k} (B)");
            assert!(
                in_tx0((SERVER, H4, 30000 + k as u16, 9)),
                "outside probe {k}"
            );
        } else {
            assert!(in_tx1((POOL_A, ROUTED, sport, 7)), "routed probe {k} (A)");
            assert!(in_tx1((POOL_A, SERVER, sport, 7)), "NAT probe {k} (A)");
        }
    }
}
