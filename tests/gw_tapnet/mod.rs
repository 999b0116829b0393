//! The gateway between two network namespaces, for the net_tap tests (`gw_tap`,
//! `gw_ctl`): ctgate runs on two `net_tap` ports whose tap interfaces are moved into an
//! inside namespace (client 10.0.0.2/24, fd00:0:0:1::2/64, default routes via the
//! gateway) and an outside one (server 192.0.2.2/24, fd00:0:0:2::2/64, a route to the
//! inside network via 192.0.2.1), as `ci/demo` does. Names are unique per test process
//! and test, and everything (ctgate, servers, namespaces) is removed on drop.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output as ProcOutput, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running gateway between two namespaces.
pub struct Gw {
    pub run: Option<Running>,
    pub scratch: Scratch,
    pub ns_in: String,
    pub ns_out: String,
    pub tap_in: String,
    pub tap_out: String,
    pub socket: PathBuf,
    servers: Vec<Child>,
    /// Namespaces made after the start (VLAN hosts), removed on drop.
    extra_ns: Vec<String>,
    _lock: DpdkLock,
}

/// Output of a command, as text.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={}\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

impl Out {
    /// For a `ping`: it ran and its summary says every echo got its reply.
    pub fn no_loss(&self) -> bool {
        self.ok && self.stdout.contains(" 0% packet loss")
    }
}

pub fn out_of(o: ProcOutput) -> Out {
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `args` (program first) and returns its output.
pub fn sh(args: &[&str]) -> Out {
    out_of(
        Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}")),
    )
}

/// Runs `args`, which must succeed.
pub fn must(args: &[&str]) {
    let o = sh(args);
    assert!(o.ok, "{args:?} failed:\n{o}");
}

/// The `ctgate-ctl` binary next to `ctgate` (built by `cargo build --workspace`, as
/// ci/test does; built here if missing).
pub fn ctl_bin() -> PathBuf {
    let bin = Path::new(ctgate_bin()).with_file_name("ctgate-ctl");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "ctgate-ctl"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok && bin.exists(),
            "{} is missing: cargo build -p ctgate-ctl",
            bin.display()
        );
    }
    bin
}

/// Starts ctgate on two `net_tap` ports named `taps` (inside, outside), with its control
/// socket at `socket`, the configuration text `config` (written into `scratch`; `None`: the
/// embedded default) and the EAL lcore list `lcores`; returns once it says it is up. The tap
/// interfaces are left in the root namespace.
pub fn start_ctgate(
    scratch: &Scratch,
    socket: &Path,
    config: Option<&str>,
    lcores: &str,
    taps: [&str; 2],
) -> Running {
    let mut app: Vec<String> = vec![
        "--socket".into(),
        socket.display().to_string(),
        "--quiet".into(),
    ];
    if let Some(text) = config {
        let p = scratch.path("gw.toml");
        std::fs::write(&p, text).unwrap();
        app.extend(["--config".into(), p.display().to_string()]);
    }
    let mut eal = scratch.eal_args(lcores);
    eal.extend([
        "--vdev".into(),
        format!("net_tap0,iface={}", taps[0]),
        "--vdev".into(),
        format!("net_tap1,iface={}", taps[1]),
    ]);
    let app_refs: Vec<&str> = app.iter().map(String::as_str).collect();
    let mut run = Running::start(&eal, &app_refs);
    let started = run.wait_for_line(Duration::from_secs(30), |l| {
        l.starts_with("ctgate: gateway on")
    });
    if started.is_none() {
        let out = run.finish(Duration::from_secs(10));
        panic!("ctgate did not start:\n{out}");
    }
    run
}

/// Creates namespace `ns` with an empty resolv.conf: no DNS in the namespaces (`ip netns
/// exec` bind-mounts /etc/netns/NS/resolv.conf), since python's http.server looks up its
/// address, which must not become traffic.
pub fn add_netns(ns: &str) {
    must(&["ip", "netns", "add", ns]);
    let dir = Path::new("/etc/netns").join(ns);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("resolv.conf"), "# ctgate test: no name server\n").unwrap();
}

/// Removes namespace `ns` and its /etc/netns directory (errors ignored: used on drop).
pub fn del_netns(ns: &str) {
    let _ = sh(&["ip", "netns", "del", ns]);
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
}

/// Runs `cmd` in namespace `ns`.
pub fn exec_in(ns: &str, cmd: &[&str]) -> Out {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend_from_slice(cmd);
    sh(&args)
}

/// `ping -n -c N -W SECS -i 0.2` (`-6` for an IPv6 `dst`) from namespace `ns`.
pub fn ping_in(ns: &str, dst: &str, count: u32, wait_secs: u32) -> Out {
    let c = count.to_string();
    let w = wait_secs.to_string();
    let mut args = vec!["ping", "-n", "-c", &c, "-W", &w, "-i", "0.2"];
    if dst.contains(':') {
        args.push("-6");
    }
    args.push(dst);
    exec_in(ns, &args)
}

/// Pings `dst` `count` times from namespace `ns` (2 s for the last reply); panics with
/// ping's output unless every echo got its reply.
pub fn must_ping_in(ns: &str, dst: &str, count: u32) {
    let p = ping_in(ns, dst, count, 2);
    assert!(p.no_loss(), "ping -c {count} {dst} from {ns}:\n{p}");
}

/// Runs `cmd` in namespace `ns`, which must succeed.
pub fn must_in(ns: &str, cmd: &[&str]) {
    let o = exec_in(ns, cmd);
    assert!(o.ok, "{cmd:?} in {ns} failed:\n{o}");
}

impl Gw {
    /// Starts ctgate (config text `config`, or the embedded default) and wires the
    /// namespaces. Needs root.
    pub fn start(name: &str, config: Option<&str>) -> Gw {
        Gw::start_lcores(name, config, "0,1")
    }

    /// As [`Gw::start`], with the EAL lcore list `lcores` (one worker per lcore after
    /// the first).
    pub fn start_lcores(name: &str, config: Option<&str>, lcores: &str) -> Gw {
        assert!(
            is_root(),
            "the net_tap gateway tests need root (tap interfaces, network namespaces): run `cargo test` as root, as CI does"
        );
        let lock = dpdk_lock();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let scratch = Scratch::new(&format!("{name}{n}"));
        let socket = scratch.path("ctl.sock");
        let mut gw = Gw {
            run: None,
            ns_in: format!("ctgin{id}"),
            ns_out: format!("ctgout{id}"),
            tap_in: format!("ctgi{id}"),
            tap_out: format!("ctgo{id}"),
            socket,
            servers: Vec::new(),
            extra_ns: Vec::new(),
            scratch,
            _lock: lock,
        };
        gw.run = Some(start_ctgate(
            &gw.scratch,
            &gw.socket,
            config,
            lcores,
            [&gw.tap_in, &gw.tap_out],
        ));
        gw.wire();
        gw
    }

    fn wire(&self) {
        add_netns(&self.ns_in);
        add_netns(&self.ns_out);
        must(&["ip", "link", "set", &self.tap_in, "netns", &self.ns_in]);
        must(&["ip", "link", "set", &self.tap_out, "netns", &self.ns_out]);
        let (i, o) = (self.tap_in.as_str(), self.tap_out.as_str());
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", "10.0.0.2/24", "dev", i],
            vec![
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:0:0:1::2/64",
                "dev",
                i,
                "nodad",
            ],
            vec!["ip", "link", "set", i, "up"],
            vec!["ip", "route", "add", "default", "via", "10.0.0.1"],
            vec![
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                "fd00:0:0:1::1",
            ],
        ] {
            must_in(&self.ns_in, &cmd);
        }
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", "192.0.2.2/24", "dev", o],
            vec![
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:0:0:2::2/64",
                "dev",
                o,
                "nodad",
            ],
            vec!["ip", "link", "set", o, "up"],
            vec!["ip", "route", "add", "10.0.0.0/24", "via", "192.0.2.1"],
        ] {
            must_in(&self.ns_out, &cmd);
        }
    }

    /// `ping -c N` from the inside namespace (waiting up to 2 s for the last reply).
    pub fn ping(&self, dst: &str, count: u32) -> Out {
        self.ping_wait(dst, count, 2)
    }

    /// `ping -c N -W SECS` from the inside namespace; `ok` when every echo got its reply.
    pub fn ping_wait(&self, dst: &str, count: u32, wait_secs: u32) -> Out {
        ping_in(&self.ns_in, dst, count, wait_secs)
    }

    /// Pings `dst` `count` times from the inside namespace; panics with ping's output
    /// unless every echo got its reply ([`Out::no_loss`]).
    pub fn must_ping(&self, dst: &str, count: u32) {
        must_ping_in(&self.ns_in, dst, count);
    }

    /// A Linux host on VLAN `vid` of the inside port, in a namespace of its own (returned):
    /// address `addr` (with prefix), default route via `gw`. This kernel has no 8021q
    /// module, so the tags are added and removed by `vlan_tagger.py` (a python3 relay in
    /// the inside namespace between the inside tap and the host's own tap device; see
    /// its doc string). The relay and the namespace go away with the `Gw`.
    pub fn vlan_host(&mut self, vid: u16, addr: &str, gw: &str) -> String {
        let n = self.extra_ns.len();
        let ns = format!("{}v{n}", self.ns_in);
        let tap = format!("{}v{n}", self.tap_in);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gw_tapnet/vlan_tagger.py");
        let log = self.scratch.path(&format!("tagger{n}.log"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_in, "python3", "-u"])
            .arg(&script)
            .args([self.tap_in.as_str(), tap.as_str(), &vid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start vlan_tagger.py");
        let mut line = String::new();
        let ready = child
            .stdout
            .take()
            .map(|o| {
                use std::io::BufRead;
                std::io::BufReader::new(o).read_line(&mut line).is_ok() && line.trim() == "ready"
            })
            .unwrap_or(false);
        self.servers.push(child);
        assert!(
            ready,
            "vlan_tagger.py did not start: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        add_netns(&ns);
        self.extra_ns.push(ns.clone());
        must_in(&self.ns_in, &["ip", "link", "set", &tap, "netns", &ns]);
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", addr, "dev", &tap],
            vec!["ip", "link", "set", &tap, "up"],
            vec!["ip", "route", "add", "default", "via", gw],
        ] {
            must_in(&ns, &cmd);
        }
        ns
    }

    /// Stops ctgate with SIGINT and returns its output (final counters).
    pub fn stop(&mut self) -> Output {
        let run = self.run.take().expect("ctgate running");
        run.signal("INT");
        run.finish(Duration::from_secs(30))
    }
}

/// `ctgate-ctl` against the control socket of a running ctgate.
pub trait Ctl {
    /// The control socket.
    fn socket(&self) -> &Path;

    /// `ctgate-ctl --socket S ARGS...`.
    fn ctl(&self, args: &[&str]) -> Out {
        out_of(
            Command::new(ctl_bin())
                .arg("--socket")
                .arg(self.socket())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run ctgate-ctl"),
        )
    }

    /// `ctgate-ctl ARGS` that must succeed; its stdout.
    fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(o.ok, "ctgate-ctl {args:?} failed:\n{o}");
        o.stdout
    }

    /// A number printed alone by a command (`ct-get-nconns`, …).
    fn ctl_num(&self, args: &[&str]) -> u64 {
        let s = self.ctl_ok(args);
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("ctgate-ctl {args:?}: not a number: {s:?}"))
    }

    /// A drop counter summed over the workers (`drops ... NAME=N` line of `stats`).
    fn drops(&self, reason: &str) -> u64 {
        let s = self.ctl_ok(&["stats"]);
        let line = s
            .lines()
            .find(|l| l.starts_with("drops "))
            .unwrap_or_else(|| panic!("no drops line in stats:\n{s}"));
        field_u64(line, reason).unwrap_or_else(|| panic!("no {reason} in {line:?}"))
    }

    /// A tracker counter (`conntrack ... NAME=N` line of `stats`).
    fn ct_counter(&self, name: &str) -> u64 {
        let s = self.ctl_ok(&["stats"]);
        let line = s
            .lines()
            .find(|l| l.starts_with("conntrack "))
            .unwrap_or_else(|| panic!("no conntrack line in stats:\n{s}"));
        field_u64(line, name).unwrap_or_else(|| panic!("no {name} in {line:?}"))
    }
}

/// Namespaces with background processes (servers, relays, captures) started in them, which
/// the implementor kills on drop, and a scratch directory for their logs.
pub trait Lab {
    fn scratch(&self) -> &Scratch;
    fn servers(&mut self) -> &mut Vec<Child>;

    /// Runs `cmd` in namespace `ns`.
    fn exec(&self, ns: &str, cmd: &[&str]) -> Out {
        exec_in(ns, cmd)
    }

    /// `curl -sS --max-time SECS ARGS...` in `ns`.
    fn curl(&self, ns: &str, secs: u32, args: &[&str]) -> Out {
        let secs = secs.to_string();
        let mut cmd = vec!["curl", "-sS", "--max-time", &secs];
        cmd.extend_from_slice(args);
        self.exec(ns, &cmd)
    }

    /// `curl` of `url` in `ns` (20 s at most) into the file `got` of the scratch directory
    /// (removed first), printing `write_out` (`-w`): curl's output and the bytes it saved.
    fn fetch(&self, ns: &str, url: &str, write_out: &str) -> (Out, Vec<u8>) {
        let got = self.scratch().path("got");
        let _ = std::fs::remove_file(&got);
        let c = self.curl(ns, 20, &["-o", got.to_str().unwrap(), "-w", write_out, url]);
        (c, std::fs::read(&got).unwrap_or_default())
    }

    /// A web root in the scratch directory (`www`, created) with the files `files`
    /// (name, content), served by [`Lab::http_server`] on `addr:port` in `ns`: the
    /// directory and the server's request log.
    fn web_root(
        &mut self,
        ns: &str,
        addr: &str,
        port: u16,
        files: &[(&str, &[u8])],
    ) -> (PathBuf, PathBuf) {
        let www = self.scratch().path("www");
        std::fs::create_dir_all(&www).unwrap();
        for (name, content) in files {
            std::fs::write(www.join(name), content).unwrap();
        }
        let log = self.http_server(ns, addr, port, &www);
        (www, log)
    }

    /// Starts `python3 -m http.server PORT` bound to `addr` in `ns`, serving `dir`;
    /// its request log goes to the returned path. Waits until it listens.
    fn http_server(&mut self, ns: &str, addr: &str, port: u16, dir: &Path) -> PathBuf {
        let log = self.scratch().path(&format!("http-{ns}-{port}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-m", "http.server"])
            .arg(port.to_string())
            .args(["--bind", addr, "--directory"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("start python3 -m http.server");
        self.servers().push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = exec_in(ns, &["ss", "-ltn"]);
            if o.stdout.contains(&format!("{addr}:{port} ")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the HTTP server in {ns} did not listen on {addr}:{port}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        log
    }

    /// Starts `cmd` in namespace `ns` in the background (killed on drop), stdout and
    /// stderr to `log`.
    fn spawn_in(&mut self, ns: &str, cmd: &[&str], log: &Path) {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?} in {ns}: {e}"));
        self.servers().push(child);
    }
}

impl Ctl for Gw {
    fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Lab for Gw {
    fn scratch(&self) -> &Scratch {
        &self.scratch
    }
    fn servers(&mut self) -> &mut Vec<Child> {
        &mut self.servers
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        for s in self.servers.iter_mut() {
            let _ = s.kill();
            let _ = s.wait();
        }
        // A test that did not stop ctgate failed: Running's drop kills it.
        drop(self.run.take());
        for ns in [&self.ns_in, &self.ns_out]
            .into_iter()
            .chain(self.extra_ns.iter())
        {
            del_netns(ns);
        }
    }
}

/// The ports, routes and SNAT pools of the two namespaces [`Gw::start`] wires, as config
/// text: inside port 0 (10.0.0.1/24, fd00:0:0:1::1/64, in zone `inside_zone` when given),
/// outside port 1 (192.0.2.1/24, fd00:0:0:2::1/64), default routes via the outside host,
/// SNAT to the outside addresses. A test puts its own `[datapath]`, `[timeouts]`, … around
/// it.
pub fn topology(inside_zone: Option<u16>) -> String {
    let zone = inside_zone
        .map(|z| format!("zone = {z}\n"))
        .unwrap_or_default();
    format!(
        r#"
[[port]]
port = 0
role = "inside"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00:0:0:1::1/64"
{zone}
[[port]]
port = 1
role = "outside"
ipv4 = "192.0.2.1/24"
ipv6 = "fd00:0:0:2::1/64"

[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.2"

[[route]]
prefix = "::/0"
via = "fd00:0:0:2::2"

[[snat]]
pool = "192.0.2.1"

[[snat]]
pool = "[fd00:0:0:2::1]"
"#
    )
}

/// The text of `log` once it contains `what` (or after 10 s, whatever it holds then).
pub fn wait_for(log: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = std::fs::read_to_string(log).unwrap_or_default();
        if t.contains(what) || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A file of `len` pseudo-random bytes (deterministic), in `dir`.
pub fn blob(dir: &Path, name: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join(name), &data).unwrap();
    data
}
