//! Two ctgate instances, A and B, side by side between the same two network namespaces,
//! for the high-availability tests (`gw_ha`, active/standby and active/active): each
//! instance runs on two `net_tap` ports (`gw_tapnet::start_ctgate`), its inside tap moved
//! into the inside router namespace (the client) and its outside tap into the outside
//! namespace (the server), and syncs with the other over loopback UDP (127.0.0.21 for A,
//! 127.0.0.22 for B, free ports).
//!
//! Both instances use the same link addresses as the one-gateway topology of `gw_tapnet`
//! (inside 10.0.0.1/24, outside 192.0.2.1/24, default route via 192.0.2.2), as a VRRP pair
//! would: the inside namespace has 10.0.0.2/24 on both of its links and reaches the
//! outside through one instance's link or both (an ECMP route, hashed on the L4 ports);
//! the outside namespace has the server address 192.0.2.2/24 on both of its links and
//! routes each SNAT pool address to one instance's link. Moving traffic is what VRRP or
//! BGP would do: [`HaNet::route_inside`] and [`HaNet::route_pool`] replace those routes.
//! Reverse-path filtering is off in both namespaces (a reply may come back over the
//! other link).
//!
//! An instance that is killed or stopped loses its tap interfaces with it (and the routes
//! through them); [`HaNet::restart`] starts it again with the same configuration and
//! file prefix and wires the new taps. Everything (instances, background processes,
//! namespaces) is removed on drop. Needs root; holds the DPDK lock while it lives.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::gw_tapnet::*;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One of the two instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    /// The other instance.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// The inside address of both instances (the inside namespace's next hop).
pub const GW_INSIDE: &str = "10.0.0.1";
/// The outside address of both instances (the outside namespace's next hop to a pool).
pub const GW_OUTSIDE: &str = "192.0.2.1";
/// The client, in the inside namespace.
pub const CLIENT: &str = "10.0.0.2";
/// The server, in the outside namespace.
pub const SERVER: &str = "192.0.2.2";

/// What an instance runs with: `[sync]` `mode` (`active-standby` or `active-active`), its
/// SNAT pool(s) (`[[snat]] pool = …`), and more TOML appended as is (timeouts, limits).
#[derive(Clone, Debug)]
pub struct Setup {
    pub mode: String,
    pub pools: Vec<String>,
    pub extra: String,
}

impl Setup {
    /// `mode` with the SNAT pools `pools` and nothing else.
    pub fn new(mode: &str, pools: &[&str]) -> Setup {
        Setup {
            mode: mode.into(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            extra: String::new(),
        }
    }

    /// The configuration text of an instance syncing from `local` to `peer`.
    pub fn config(&self, local: &str, peer: &str) -> String {
        let mut s = format!(
            r#"[datapath]
max_conns = 65536

[[port]]
port = 0
role = "inside"
ipv4 = "{GW_INSIDE}/24"

[[port]]
port = 1
role = "outside"
ipv4 = "{GW_OUTSIDE}/24"

[[route]]
prefix = "0.0.0.0/0"
via = "{SERVER}"

"#
        );
        for p in &self.pools {
            s.push_str(&format!("[[snat]]\npool = \"{p}\"\n\n"));
        }
        s.push_str(&format!(
            "[sync]\nlocal = \"{local}\"\npeers = [\"{peer}\"]\nmode = \"{}\"\n\n",
            self.mode
        ));
        s.push_str(&self.extra);
        s
    }
}

/// One ctgate instance of the pair.
pub struct Instance {
    pub side: Side,
    pub scratch: Scratch,
    pub socket: PathBuf,
    pub tap_in: String,
    pub tap_out: String,
    /// The sync address it listens on (`[sync] local`).
    pub sync_addr: String,
    /// The configuration text it runs with.
    pub config: String,
    pub run: Option<Running>,
    lcores: String,
}

impl Ctl for Instance {
    fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Instance {
    /// True while the process runs (not stopped or killed by the test).
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// Stops it with SIGINT and returns its output (final counters).
    pub fn stop(&mut self) -> Output {
        let run = self.run.take().expect("instance running");
        run.signal("INT");
        run.finish(Duration::from_secs(30))
    }

    /// Kills it with SIGKILL (a crash: nothing is flushed) and returns what it printed.
    pub fn kill(&mut self) -> Output {
        let run = self.run.take().expect("instance running");
        run.signal("KILL");
        run.finish(Duration::from_secs(30))
    }

    /// `ctgate-ctl ARGS` repeated (every 200 ms, at most `timeout`) until `pred` holds for
    /// its stdout; returns the last stdout either way.
    pub fn ctl_until(
        &self,
        args: &[&str],
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.ctl(args);
            if (o.ok && pred(&o.stdout)) || Instant::now() > deadline {
                return o.stdout;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `sync-status` line of its (only) peer.
    pub fn peer_status(&self) -> String {
        let s = self.ctl_ok(&["sync-status"]);
        s.lines()
            .find(|l| l.starts_with("peer 1 "))
            .unwrap_or_else(|| panic!("no peer line in sync-status:\n{s}"))
            .to_string()
    }

    /// `dump-conntrack -m`.
    pub fn dump(&self) -> String {
        self.ctl_ok(&["dump-conntrack", "-m"])
    }
}

/// The two instances between the inside and the outside namespace.
pub struct HaNet {
    pub a: Instance,
    pub b: Instance,
    pub ns_in: String,
    pub ns_out: String,
    /// Logs and files of the test (servers, captures, downloads).
    pub scratch: Scratch,
    servers: Vec<Child>,
    _lock: DpdkLock,
}

impl Lab for HaNet {
    fn scratch(&self) -> &Scratch {
        &self.scratch
    }
    fn servers(&mut self) -> &mut Vec<Child> {
        &mut self.servers
    }
}

/// A free UDP port on `ip`.
fn free_udp(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free UDP port on {ip}: {e}"))
}

impl HaNet {
    /// Starts A with `a` and B with `b`, each syncing with the other, wires both, and
    /// routes the inside's default route and every pool of A and B through A. Needs root.
    pub fn start(name: &str, a: &Setup, b: &Setup) -> HaNet {
        assert!(
            is_root(),
            "the net_tap HA tests need root (tap interfaces, network namespaces): run `cargo test` as root, as CI does"
        );
        let lock = dpdk_lock();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let sync_a = format!("127.0.0.21:{}", free_udp("127.0.0.21"));
        let sync_b = format!("127.0.0.22:{}", free_udp("127.0.0.22"));
        let instance = |side: Side, setup: &Setup, local: &str, peer: &str| {
            let tag = match side {
                Side::A => "a",
                Side::B => "b",
            };
            let scratch = Scratch::new(&format!("{name}{n}{tag}"));
            Instance {
                side,
                socket: scratch.path("ctl.sock"),
                scratch,
                tap_in: format!("ctghi{id}{tag}"),
                tap_out: format!("ctgho{id}{tag}"),
                sync_addr: local.to_string(),
                config: setup.config(local, peer),
                run: None,
                lcores: "0,1".into(),
            }
        };
        let mut ha = HaNet {
            a: instance(Side::A, a, &sync_a, &sync_b),
            b: instance(Side::B, b, &sync_b, &sync_a),
            ns_in: format!("ctghin{id}"),
            ns_out: format!("ctghout{id}"),
            scratch: Scratch::new(&format!("{name}{n}")),
            servers: Vec::new(),
            _lock: lock,
        };
        for ns in [&ha.ns_in, &ha.ns_out] {
            add_netns(ns);
            must_in(ns, &["ip", "link", "set", "lo", "up"]);
            for key in ["all", "default"] {
                must_in(
                    ns,
                    &["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
                );
            }
        }
        // The clients' TCP receive buffer is bounded (256 KiB: ~90 segments in flight per
        // connection), so that a rate-limited download's bursts fit the tap's queue
        // (1,000 packets) on the way in: with Linux's default (6 MiB), a curl
        // `--limit-rate` download that resumes reading opens a window of thousands of
        // segments, which the server sends at once into the instance's outside tap; the
        // kernel dropped the excess there (1,755 `TX dropped` on it in one run), and with
        // it, now and then, a UDP answer the tests require.
        must_in(
            &ha.ns_in,
            &["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
        );
        // ECMP over both links spreads connections by their ports, not only addresses.
        must_in(
            &ha.ns_in,
            &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
        );
        ha.restart(Side::A);
        ha.restart(Side::B);
        ha.route_inside(&[Side::A]);
        let pools: Vec<String> = ha
            .pools_of(Side::A)
            .into_iter()
            .chain(ha.pools_of(Side::B))
            .collect();
        for p in pools {
            ha.route_pool(&p, Side::A);
        }
        ha
    }

    /// The instance `side`.
    pub fn get(&self, side: Side) -> &Instance {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The instance `side`, mutable (to stop or kill it).
    pub fn get_mut(&mut self, side: Side) -> &mut Instance {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// The `[[snat]] pool` values of instance `side`.
    fn pools_of(&self, side: Side) -> Vec<String> {
        self.get(side)
            .config
            .lines()
            .filter_map(|l| l.strip_prefix("pool = \"")?.strip_suffix('"'))
            .map(str::to_string)
            .collect()
    }

    /// Starts instance `side` (again, after a stop or kill: same configuration, file
    /// prefix and control socket) and wires its new taps into the namespaces: inside
    /// 10.0.0.2/24, outside 192.0.2.2/24. The routes are not touched.
    pub fn restart(&mut self, side: Side) {
        let inst = self.get_mut(side);
        assert!(inst.run.is_none(), "instance {side:?} is running");
        inst.run = Some(start_ctgate(
            &inst.scratch,
            &inst.socket,
            Some(&inst.config),
            &inst.lcores,
            [&inst.tap_in, &inst.tap_out],
        ));
        let inst = self.get(side);
        for (ns, tap, addr) in [
            (&self.ns_in, &inst.tap_in, "10.0.0.2/24"),
            (&self.ns_out, &inst.tap_out, "192.0.2.2/24"),
        ] {
            must(&["ip", "link", "set", tap, "netns", ns]);
            must_in(
                ns,
                &["sysctl", "-qw", &format!("net.ipv4.conf.{tap}.rp_filter=0")],
            );
            must_in(ns, &["ip", "addr", "add", addr, "dev", tap]);
            must_in(ns, &["ip", "link", "set", tap, "up"]);
        }
    }

    /// Routes the inside namespace's default route through the instances `via`: one
    /// instance's link, or an ECMP route over both (`ip route replace`).
    pub fn route_inside(&self, via: &[Side]) {
        let mut cmd: Vec<&str> = vec!["ip", "route", "replace", "default"];
        match via {
            [one] => cmd.extend(["via", GW_INSIDE, "dev", &self.get(*one).tap_in]),
            _ => {
                for s in via {
                    cmd.extend(["nexthop", "via", GW_INSIDE, "dev", &self.get(*s).tap_in]);
                }
            }
        }
        must_in(&self.ns_in, &cmd);
    }

    /// Routes the SNAT pool `pool` (an address or a prefix, with or without a port range) in the outside namespace
    /// through instance `via`'s link (`ip route replace`).
    pub fn route_pool(&self, pool: &str, via: Side) {
        // A pool's port range ("ADDR:LO-HI", a port block) is not part of its route.
        let pool = pool.split(':').next().unwrap_or(pool);
        let prefix = if pool.contains('/') {
            pool.to_string()
        } else {
            format!("{pool}/32")
        };
        must_in(
            &self.ns_out,
            &[
                "ip",
                "route",
                "replace",
                &prefix,
                "via",
                GW_OUTSIDE,
                "dev",
                &self.get(via).tap_out,
            ],
        );
    }

    /// Moves all traffic to instance `to`, as a VRRP failover would: the inside default
    /// route and every pool of both instances.
    pub fn move_routes(&self, to: Side) {
        self.route_inside(&[to]);
        let pools: Vec<String> = self
            .pools_of(Side::A)
            .into_iter()
            .chain(self.pools_of(Side::B))
            .collect();
        for p in pools {
            self.route_pool(&p, to);
        }
    }

    /// Waits (at most `timeout`) until both instances report their peer `connected` with
    /// at least `resyncs` bulk resyncs received; panics with both statuses otherwise.
    pub fn wait_synced(&self, resyncs: u64, timeout: Duration) {
        for side in [Side::A, Side::B] {
            let inst = self.get(side);
            if !inst.is_running() {
                continue;
            }
            let s = inst.ctl_until(&["sync-status"], timeout, |s| {
                s.lines().any(|l| {
                    l.starts_with("peer 1 ")
                        && l.contains(" state=connected ")
                        && field_u64(l, "resyncs_received").is_some_and(|n| n >= resyncs)
                })
            });
            assert!(
                s.contains(" state=connected ")
                    && s.lines()
                        .filter_map(|l| field_u64(l, "resyncs_received"))
                        .any(|n| n >= resyncs),
                "instance {side:?} not synced (want connected, resyncs_received>={resyncs}):\n{s}"
            );
        }
    }
}

impl HaNet {
    /// Starts the `udp_seq.py` server on SERVER:`port` in the outside namespace; its log
    /// (one `N ADDR:PORT TIME` line per request) is returned once it listens.
    pub fn udp_seq_server(&mut self, port: u16) -> PathBuf {
        let log = self.scratch.path(&format!("udp-server-{port}.log"));
        let ns = self.ns_out.clone();
        self.spawn_in(
            &ns,
            &[
                "python3",
                "-u",
                UDP_SEQ,
                "server",
                SERVER,
                &port.to_string(),
            ],
            &log,
        );
        let t = wait_for(&log, "ready");
        assert!(t.contains("ready"), "udp_seq.py server did not start:\n{t}");
        log
    }

    /// Starts a `udp_seq.py` client in the inside namespace: from port `sport` to
    /// SERVER:`port`, `rate` requests per second, until the test ends; returns its log
    /// (`sent N TIME` and `ack N TIME` lines).
    pub fn udp_seq_client(&mut self, port: u16, sport: u16, rate: u32) -> PathBuf {
        let log = self.scratch.path(&format!("udp-client-{sport}.log"));
        let ns = self.ns_in.clone();
        self.spawn_in(
            &ns,
            &[
                "python3",
                "-u",
                UDP_SEQ,
                "client",
                SERVER,
                &port.to_string(),
                &sport.to_string(),
                &rate.to_string(),
            ],
            &log,
        );
        log
    }

    /// Starts `curl URL` in the inside namespace in the background, `rate` (curl's
    /// `--limit-rate`, e.g. `1M`) at most, saving the body into the scratch directory.
    pub fn download(&mut self, name: &str, url: &str, rate: &str) -> Download {
        let body = self.scratch.path(name);
        let log = self.scratch.path(&format!("{name}.curl.log"));
        let ns = self.ns_in.clone();
        self.spawn_in(
            &ns,
            &[
                "curl",
                "-sS",
                "--max-time",
                "600",
                "--limit-rate",
                rate,
                "-o",
                body.to_str().unwrap(),
                "-w",
                "done %{http_code} %{size_download}\n",
                url,
            ],
            &log,
        );
        Download { body, log }
    }

    /// Starts `tcpdump -i any` in namespace `ns` writing packet headers (96 bytes, each
    /// packet flushed) matching `filter` to the returned pcap file, once it listens.
    pub fn capture(&mut self, ns: &str, name: &str, filter: &str) -> PathBuf {
        let pcap = self.scratch.path(&format!("{name}.pcap"));
        let log = self.scratch.path(&format!("{name}.log"));
        self.spawn_in(
            ns,
            &[
                "tcpdump",
                "-i",
                "any",
                "-n",
                "-U",
                "-s",
                "96",
                "-w",
                pcap.to_str().unwrap(),
                filter,
            ],
            &log,
        );
        let t = wait_for(&log, "listening on");
        assert!(t.contains("listening on"), "tcpdump did not start:\n{t}");
        pcap
    }
}

/// A background download (see [`HaNet::download`]).
pub struct Download {
    /// Where the body goes.
    pub body: PathBuf,
    /// curl's output: `done CODE SIZE` when it ends, or its error.
    pub log: PathBuf,
}

impl Download {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        std::fs::metadata(&self.body).map_or(0, |m| m.len())
    }

    /// Whether curl has ended (successfully or not).
    pub fn ended(&self) -> bool {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        t.contains("done ") || t.contains("curl: ")
    }

    /// Waits (at most `timeout`) for curl to end; its output.
    pub fn wait(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.ended() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The UDP request/response flow with sequence numbers (server and client).
pub const UDP_SEQ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gw_hanet/udp_seq.py");

/// A `udp_seq.py` client log: the send time of every sequence number, and the receive
/// time of every answered one.
pub struct UdpFlow {
    pub sent: std::collections::BTreeMap<u64, f64>,
    pub acked: std::collections::BTreeMap<u64, f64>,
}

impl UdpFlow {
    /// Reads a client log.
    pub fn read(log: &Path) -> UdpFlow {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut f = UdpFlow {
            sent: Default::default(),
            acked: Default::default(),
        };
        for l in text.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let [kind, n, t] = w[..] {
                if let (Ok(n), Ok(t)) = (n.parse(), t.parse()) {
                    match kind {
                        "sent" => f.sent.insert(n, t),
                        "ack" => f.acked.insert(n, t),
                        _ => None,
                    };
                }
            }
        }
        f
    }

    /// The sequence numbers sent between `from` and `to` (wall clock) that got no answer.
    pub fn lost_between(&self, from: f64, to: f64) -> Vec<u64> {
        self.sent
            .iter()
            .filter(|(n, t)| **t >= from && **t < to && !self.acked.contains_key(n))
            .map(|(n, _)| *n)
            .collect()
    }

    /// The longest time without an answer between `from` and `to`, in seconds.
    pub fn longest_gap(&self, from: f64, to: f64) -> f64 {
        let mut times: Vec<f64> = self
            .acked
            .values()
            .copied()
            .filter(|t| *t >= from && *t < to)
            .collect();
        times.sort_by(f64::total_cmp);
        times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    }
}

/// A TCP packet as `tcpdump -r FILE -n -tt` printed it.
#[derive(Clone, Debug)]
pub struct TcpPkt {
    /// Wall clock, seconds.
    pub t: f64,
    /// `ADDR.PORT`, as tcpdump prints it.
    pub src: String,
    pub dst: String,
    /// The flags between the brackets (`S`, `.`, `P.`, `R`, `F.` …).
    pub flags: String,
    /// The payload length.
    pub len: u64,
}

/// The TCP packets of a capture (see [`HaNet::capture`]).
pub fn tcp_packets(pcap: &Path) -> Vec<TcpPkt> {
    let o = sh(&["tcpdump", "-r", pcap.to_str().unwrap(), "-n", "-tt"]);
    o.stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let t = w.first()?.parse().ok()?;
            let ip = w.iter().position(|x| *x == "IP")?;
            let (src, gt, dst) = (w.get(ip + 1)?, w.get(ip + 2)?, w.get(ip + 3)?);
            if *gt != ">" || w.get(ip + 4) != Some(&"Flags") {
                return None;
            }
            let flags = w
                .get(ip + 5)?
                .trim_start_matches('[')
                .trim_end_matches("],");
            let len = w
                .iter()
                .position(|x| *x == "length")
                .and_then(|i| w.get(i + 1)?.trim_end_matches(':').parse().ok())
                .unwrap_or(0);
            Some(TcpPkt {
                t,
                src: src.to_string(),
                dst: dst.trim_end_matches(':').to_string(),
                flags: flags.to_string(),
                len,
            })
        })
        .collect()
}

/// The wall clock now, in seconds (as the `udp_seq.py` logs write it).
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Drop for HaNet {
    fn drop(&mut self) {
        for s in self.servers.iter_mut() {
            let _ = s.kill();
            let _ = s.wait();
        }
        // A test that did not stop an instance failed: Running's drop kills it.
        drop(self.a.run.take());
        drop(self.b.run.take());
        del_netns(&self.ns_in);
        del_netns(&self.ns_out);
    }
}

/// The many-connections server and client (TCP and UDP requests answered with the
/// client's address as the server sees it).
pub const CONNS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gw_hanet/conns.py");

/// One connection of a `conns.py` client round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnResult {
    /// `tcp` or `udp`.
    pub kind: String,
    pub id: u32,
    /// The client's local port.
    pub port: u16,
    /// `ok`, `wrong`, `closed`, `timeout` or `connect-failed`.
    pub status: String,
    /// The client as the server saw it (`ADDR:PORT`, its NAT binding), `-` without an
    /// answer.
    pub seen: String,
}

impl HaNet {
    /// Starts the `conns.py` server (TCP and UDP) on SERVER:`port` in the outside
    /// namespace, once it listens.
    pub fn conns_server(&mut self, port: u16) {
        let log = self.scratch.path(&format!("conns-server-{port}.log"));
        let ns = self.ns_out.clone();
        let port = port.to_string();
        self.spawn_in(
            &ns,
            &["python3", "-u", CONNS, "server", SERVER, &port],
            &log,
        );
        let t = wait_for(&log, "ready");
        assert!(t.contains("ready"), "conns.py server did not start:\n{t}");
    }

    /// Starts a `conns.py` client in the inside namespace: `tcp` TCP connections (kept
    /// open) and `udp` UDP sockets to SERVER:`port`, each sending one request per round;
    /// round 1 runs at once. Returns its directory (see [`conns_round`]).
    pub fn conns_client(&mut self, port: u16, tcp: usize, udp: usize) -> PathBuf {
        let dir = self.scratch.path(&format!("conns-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("client.log");
        let ns = self.ns_in.clone();
        let args = [port.to_string(), tcp.to_string(), udp.to_string()];
        let cmd = [
            "python3",
            "-u",
            CONNS,
            "client",
            SERVER,
            &args[0],
            &args[1],
            &args[2],
            dir.to_str().unwrap(),
        ];
        self.spawn_in(&ns, &cmd, &log);
        dir
    }
}

/// Round `r` of the `conns.py` client in `dir`: started now when `r > 1`, then its
/// results once written (at most `timeout`; panics with the client's log after that).
pub fn conns_round(dir: &Path, r: u32, timeout: Duration) -> Vec<ConnResult> {
    if r > 1 {
        std::fs::write(dir.join(format!("go{r}")), b"").unwrap();
    }
    let file = dir.join(format!("round{r}"));
    let deadline = Instant::now() + timeout;
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "conns.py round {r} did not end in {timeout:?}:\n{}",
            std::fs::read_to_string(dir.join("client.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                [kind, id, port, status, seen] => ConnResult {
                    kind: kind.into(),
                    id: id.parse().unwrap(),
                    port: port.parse().unwrap(),
                    status: status.into(),
                    seen: seen.into(),
                },
                _ => panic!("bad line in {}: {l:?}", file.display()),
            }
        })
        .collect()
}
