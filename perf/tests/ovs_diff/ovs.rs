//! A private Open vSwitch instance for the differential test: its own ovsdb-server and
//! ovs-vswitchd (userspace datapath, `--enable-dummy=override --disable-system`) in a
//! temporary directory, a `datapath_type=dummy` bridge with an input port `p1` and an
//! output port `p2` that writes what it sends to a pcap file.
//!
//! Nothing outside the temporary directory is touched: every socket, pid, log and
//! database file is in it (`OVS_RUNDIR`, `OVS_DBDIR`, `OVS_LOGDIR`, `OVS_SYSCONFDIR` point
//! there, and every daemon gets explicit paths). Both daemons are children of the test,
//! stopped by PID (SIGTERM, then SIGKILL) and reaped when the instance is dropped, which
//! then removes the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ct_state names in OpenFlow match syntax, bit by bit (`CS_*` order).
const CT_BITS: [&str; 8] = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];

/// Source MAC the flows set: `02:c7:00:00:00:<ct_state>` for tracked packets.
pub const MARK_PREFIX: [u8; 4] = [0x02, 0xc7, 0x00, 0x00];
/// `02:c7:00:00:01:00`: the packet did not go through `ct()` (not IP).
pub const MARK_UNTRACKED: [u8; 6] = [0x02, 0xc7, 0x00, 0x00, 0x01, 0x00];

/// What `ct()` action table 0 applies.
#[derive(Clone, Debug)]
pub enum Pipeline {
    /// `ct(commit[,zone=N],table=1)` for every IP packet.
    Commit { zone: u16 },
    /// Source NAT: packets from `inside` (an IPv4 or IPv6 prefix) get
    /// `ct(commit,nat(src=POOL),table=1)`, other packets of that family `ct(nat,table=1)`;
    /// the other family is committed without NAT.
    Snat {
        inside: String,
        pool: String,
        v6: bool,
    },
    /// Destination NAT (IPv4): packets to `public` get `ct(commit,nat(dst=TARGET),table=1)`,
    /// other IPv4 packets `ct(nat,table=1)`; IPv6 is committed without NAT.
    Dnat { public: String, target: String },
}

impl Pipeline {
    /// The OpenFlow flows of the pipeline.
    pub fn flows(&self) -> String {
        let mut f = String::new();
        match self {
            Pipeline::Commit { zone } => {
                let z = if *zone != 0 {
                    format!("zone={zone},")
                } else {
                    String::new()
                };
                for m in ["ip", "ipv6"] {
                    f.push_str(&format!(
                        "table=0,priority=100,{m},actions=ct(commit,{z}table=1)\n"
                    ));
                }
            }
            Pipeline::Snat { inside, pool, v6 } => {
                let (m, other, field) = if *v6 {
                    ("ipv6", "ip", "ipv6_src")
                } else {
                    ("ip", "ipv6", "nw_src")
                };
                f.push_str(&format!(
                    "table=0,priority=110,{m},{field}={inside},actions=ct(commit,nat(src={pool}),table=1)\n"
                ));
                f.push_str(&format!(
                    "table=0,priority=100,{m},actions=ct(nat,table=1)\n"
                ));
                f.push_str(&format!(
                    "table=0,priority=100,{other},actions=ct(commit,table=1)\n"
                ));
            }
            Pipeline::Dnat { public, target } => {
                f.push_str(&format!(
                    "table=0,priority=110,ip,nw_dst={public},actions=ct(commit,nat(dst={target}),table=1)\n"
                ));
                f.push_str("table=0,priority=100,ip,actions=ct(nat,table=1)\n");
                f.push_str("table=0,priority=100,ipv6,actions=ct(commit,table=1)\n");
            }
        }
        f.push_str("table=0,priority=0,actions=mod_dl_src:02:c7:00:00:01:00,output:2\n");
        // One flow per tracked ct_state combination: the source MAC tells the state.
        for v in 0u32..256 {
            if v & 0x20 == 0 {
                continue;
            }
            let m: String = (0..8)
                .map(|i| format!("{}{}", if v >> i & 1 != 0 { '+' } else { '-' }, CT_BITS[i]))
                .collect();
            f.push_str(&format!(
                "table=1,priority=100,ct_state={m},actions=mod_dl_src:02:c7:00:00:00:{v:02x},output:2\n"
            ));
        }
        f.push_str("table=1,priority=0,actions=mod_dl_src:02:c7:00:00:ff:ff,output:2\n");
        f
    }
}

/// A running private instance.
pub struct Ovs {
    dir: PathBuf,
    db: Option<Child>,
    vswitchd: Option<Child>,
    tx_pcap: PathBuf,
    keep: bool,
}

/// True when the OVS programs the test needs are on PATH.
pub fn available() -> Result<(), String> {
    for prog in [
        "ovsdb-tool",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovs-ofctl",
        "ovs-appctl",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "{prog} not found: the differential test needs Open vSwitch \
                 (Debian: apt-get install openvswitch-switch, as ci/setup does)"
            ));
        }
    }
    Ok(())
}

fn schema() -> Result<PathBuf, String> {
    for p in [
        "/usr/share/openvswitch/vswitch.ovsschema",
        "/usr/local/share/openvswitch/vswitch.ovsschema",
    ] {
        if Path::new(p).is_file() {
            return Ok(p.into());
        }
    }
    Err("vswitch.ovsschema not found under /usr/share/openvswitch".into())
}

impl Ovs {
    /// Starts an instance in a new directory named after `name`, with `pipeline`'s flows
    /// and TCP sequence checking on or off, and the clock stopped (`time/stop`).
    pub fn start(name: &str, pipeline: &Pipeline, tcp_seq_check: bool) -> Result<Ovs, String> {
        available()?;
        let dir = std::env::temp_dir().join(format!("ctgate-ovs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut ovs = Ovs {
            tx_pcap: dir.join("p2.pcap"),
            dir,
            db: None,
            vswitchd: None,
            keep: std::env::var_os("CTGATE_OVS_DIFF_KEEP").is_some(),
        };
        ovs.boot(pipeline, tcp_seq_check)?;
        Ok(ovs)
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        for v in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            c.env(v, &self.dir);
        }
        c.stdin(Stdio::null());
        c
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    /// Runs a command to completion; its stdout, or an error with its stderr.
    fn run(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(prog)
            .args(args)
            .output()
            .map_err(|e| format!("{prog}: {e}"))?;
        if !out.status.success() {
            let shown: Vec<&str> = args
                .iter()
                .map(|a| if a.len() > 80 { "…" } else { *a })
                .collect();
            return Err(format!(
                "{prog} {} failed ({}): {}",
                shown.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn spawn(&self, prog: &str, args: &[String], log: &str) -> Result<Child, String> {
        let err = fs::File::create(self.dir.join(log)).map_err(|e| e.to_string())?;
        self.cmd(prog)
            .args(args)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{prog}: {e}"))
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) -> Result<(), String> {
        let t0 = Instant::now();
        while !ok() {
            if t0.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "timed out waiting for {what} (logs in {})",
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn boot(&mut self, pipeline: &Pipeline, tcp_seq_check: bool) -> Result<(), String> {
        let db = self.path("conf.db");
        let sock = self.path("db.sock");
        self.run(
            "ovsdb-tool",
            &["create", &db, &schema()?.display().to_string()],
        )?;
        self.db = Some(self.spawn(
            "ovsdb-server",
            &[
                db.clone(),
                format!("--remote=punix:{sock}"),
                format!("--pidfile={}", self.path("ovsdb-server.pid")),
                format!("--unixctl={}", self.path("ovsdb-server.ctl")),
                format!("--log-file={}", self.path("ovsdb-server.log")),
                "-vconsole:off".into(),
                "--no-chdir".into(),
            ],
            "ovsdb-server.stderr",
        )?);
        let sock_path = PathBuf::from(&sock);
        self.wait_for("ovsdb-server's socket", || sock_path.exists())?;
        let dbarg = format!("--db=unix:{sock}");
        self.run("ovs-vsctl", &[&dbarg, "--no-wait", "init"])?;
        self.vswitchd = Some(self.spawn(
            "ovs-vswitchd",
            &[
                format!("unix:{sock}"),
                "--enable-dummy=override".into(),
                "--disable-system".into(),
                format!("--pidfile={}", self.path("ovs-vswitchd.pid")),
                format!("--unixctl={}", self.path("ovs-vswitchd.ctl")),
                format!("--log-file={}", self.path("ovs-vswitchd.log")),
                "-vconsole:off".into(),
                "--no-chdir".into(),
            ],
            "ovs-vswitchd.stderr",
        )?);
        let ctl = PathBuf::from(self.path("ovs-vswitchd.ctl"));
        self.wait_for("ovs-vswitchd's control socket", || ctl.exists())?;
        let tx = format!("options:tx_pcap={}", self.tx_pcap.display());
        self.run(
            "ovs-vsctl",
            &[
                &dbarg,
                "--timeout=20",
                "add-br",
                "br0",
                "--",
                "set",
                "bridge",
                "br0",
                "datapath_type=dummy",
                "fail-mode=secure",
                "--",
                "add-port",
                "br0",
                "p1",
                "--",
                "set",
                "interface",
                "p1",
                "type=dummy",
                "ofport_request=1",
                "--",
                "add-port",
                "br0",
                "p2",
                "--",
                "set",
                "interface",
                "p2",
                "type=dummy",
                "ofport_request=2",
                &tx,
            ],
        )?;
        let flows = self.dir.join("flows.txt");
        fs::write(&flows, pipeline.flows()).map_err(|e| e.to_string())?;
        let mgmt = format!("unix:{}", self.path("br0.mgmt"));
        self.run(
            "ovs-ofctl",
            &["add-flows", &mgmt, &flows.display().to_string()],
        )?;
        self.appctl(&["time/stop"])?;
        if !tcp_seq_check {
            self.appctl(&["dpctl/ct-disable-tcp-seq-chk"])?;
        }
        let tx = self.tx_pcap.clone();
        self.wait_for("the tx_pcap file", || tx.exists())?;
        Ok(())
    }

    /// `ovs-appctl` on this instance's ovs-vswitchd.
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let t = self.path("ovs-vswitchd.ctl");
        let mut a = vec!["-t", t.as_str()];
        a.extend_from_slice(args);
        self.run("ovs-appctl", &a)
    }

    /// Advances OVS's (stopped) clock by `ms`.
    pub fn warp(&self, ms: u64) -> Result<(), String> {
        if ms > 0 {
            self.appctl(&["time/warp", &ms.to_string()])?;
        }
        Ok(())
    }

    /// Queues frames on `p1` (`netdev-dummy/receive p1 HEX…`).
    pub fn receive(&self, frames: &[&[u8]]) -> Result<(), String> {
        let hex: Vec<String> = frames
            .iter()
            .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let mut a = vec!["netdev-dummy/receive", "p1"];
        a.extend(hex.iter().map(|s| s.as_str()));
        self.appctl(&a).map(|_| ())
    }

    /// Size of the output pcap so far.
    pub fn tx_len(&self) -> u64 {
        fs::metadata(&self.tx_pcap).map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until the output pcap has at least `len` bytes (every queued packet went out).
    /// False on timeout.
    pub fn wait_tx(&self, len: u64, timeout: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self.tx_len() >= len {
                return true;
            }
            if t0.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    /// The output pcap.
    pub fn tx_packets(&self) -> Result<Vec<ctgate::pcap::Packet>, String> {
        ctgate::pcap::read_file(&self.tx_pcap)
            .map_err(|e| format!("{}: {e}", self.tx_pcap.display()))
    }

    /// `dpctl/dump-conntrack`, sorted.
    pub fn dump(&self) -> Result<Vec<String>, String> {
        let out = self.appctl(&["dpctl/dump-conntrack"])?;
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        Ok(v)
    }

    /// The instance's directory (logs, pcap).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stop_child(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            // Our own child, not reaped yet (we hold its `Child`), so the PID is its own.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let t0 = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if t0.elapsed() < Duration::from_secs(5) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        Self::stop_child(&mut self.vswitchd);
        Self::stop_child(&mut self.db);
        if self.keep {
            eprintln!("ovs_diff: kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
