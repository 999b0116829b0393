//! Helpers for the integration tests that run the real `ctgate` binary on DPDK virtual
//! devices (`--no-huge --no-pci`, no NIC, no hugepages).
//!
//! DPDK processes busy-poll, and the CI machine has two cores, so every test that starts
//! one takes [`dpdk_lock`] first: an exclusive `flock` on a file in the temp directory,
//! which serialises them across test threads and test binaries alike.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ctgate::wire::testframe::{Frame, L4};

pub use ctgate::control::counter_lines::field_u64;

/// Path of the binary under test.
pub fn ctgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctgate")
}

/// Held while a DPDK process runs; released on drop.
pub struct DpdkLock(File);

/// Takes the machine-wide lock for running DPDK processes (blocks until free).
pub fn dpdk_lock() -> DpdkLock {
    let path = std::env::temp_dir().join("ctgate-dpdk-tests.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open lock file {}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    DpdkLock(f)
}

/// A scratch directory, removed on drop (with the EAL runtime dir of its prefix).
pub struct Scratch {
    pub dir: PathBuf,
    pub prefix: String,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let prefix = format!("ctgate-test-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir, prefix }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// EAL options for a test run: no hugepages, no PCI, a unique file prefix, errors-only
    /// logging, and the given lcore layout.
    pub fn eal_args(&self, lcores: &str) -> Vec<String> {
        [
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--file-prefix",
            &self.prefix,
            "--log-level",
            "4",
            "--lcores",
            lcores,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// The MACs net_pcap gives ports 0 and 1 (fixed: 02:70:63:61:70:<port>); frames must be
/// addressed to them to be routed.
pub const NET_PCAP_MAC0: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
pub const NET_PCAP_MAC1: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x01];

impl Scratch {
    /// [`Scratch::eal_args`] plus `ports` net_null ports (net_null0, net_null1, ...).
    pub fn null_eal(&self, lcores: &str, ports: usize) -> Vec<String> {
        let mut eal = self.eal_args(lcores);
        for i in 0..ports {
            eal.push("--vdev".into());
            eal.push(format!("net_null{i}"));
        }
        eal
    }

    /// [`Scratch::eal_args`] plus one net_pcap port per `(rx, tx)` pair: port `i` reads
    /// the pcap file (or fifo) `rx` and writes `tx`.
    pub fn net_pcap_eal(&self, lcores: &str, ports: &[(PathBuf, PathBuf)]) -> Vec<String> {
        let mut eal = self.eal_args(lcores);
        for (i, (rx, tx)) in ports.iter().enumerate() {
            eal.push("--vdev".into());
            eal.push(format!(
                "net_pcap{i},rx_pcap={},tx_pcap={}",
                rx.display(),
                tx.display()
            ));
        }
        eal
    }

    /// [`Scratch::net_pcap_eal`] with one port per element of `rx`: port `i` reads
    /// `in{i}.pcap`, written here with the frames of `rx[i]` (all at one timestamp), and
    /// writes `out{i}.pcap` (see [`Scratch::read_pcap`]).
    pub fn pcap_ports(&self, lcores: &str, rx: &[Vec<&[u8]>]) -> Vec<String> {
        let ts = Duration::from_secs(1_700_000_000);
        let ports: Vec<(PathBuf, PathBuf)> = rx
            .iter()
            .enumerate()
            .map(|(i, frames)| {
                let (inp, out) = (
                    self.path(&format!("in{i}.pcap")),
                    self.path(&format!("out{i}.pcap")),
                );
                ctgate::pcap::write_file(&inp, ts, frames.iter().copied())
                    .expect("write input pcap");
                (inp, out)
            })
            .collect();
        self.net_pcap_eal(lcores, &ports)
    }

    /// The frames of the pcap file `file` in the directory (what a net_pcap port wrote).
    pub fn read_pcap(&self, file: &str) -> Vec<Vec<u8>> {
        ctgate::pcap::read_file(self.path(file))
            .unwrap_or_else(|e| panic!("read {file}: {e:?}"))
            .into_iter()
            .map(|p| p.data)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A failing test's files (logs, captures, configs) stay for a look when asked.
        if std::thread::panicking() && std::env::var_os("CTGATE_KEEP_SCRATCH").is_some() {
            eprintln!("CTGATE_KEEP_SCRATCH: kept {}", self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The final counter line of `port=N`.
    pub fn port_line(&self, port: u16) -> &str {
        let prefix = format!("port={port} ");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no final line for port {port} in:\n{self}"))
    }

    /// The final counter lines of the workers.
    pub fn worker_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("worker="))
            .collect()
    }

    /// Counter `key` summed over the workers' final lines (panics, naming the line, when
    /// one lacks it).
    pub fn workers_sum(&self, key: &str) -> u64 {
        self.worker_lines()
            .iter()
            .map(|l| field_u64(l, key).unwrap_or_else(|| panic!("no {key} in {l}\n{self}")))
            .sum()
    }

    /// A counter of the final line of `port=N`.
    pub fn port_counter(&self, port: u16, key: &str) -> u64 {
        let line = self.port_line(port);
        field_u64(line, key).unwrap_or_else(|| panic!("no {key} in {line:?}"))
    }

    /// The MAC ctgate reported for port `port` at start-up.
    pub fn port_mac(&self, port: u16) -> [u8; 6] {
        port_mac(&self.stdout, port)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Parses the MAC from the start-up line `port N: ... mac=aa:bb:cc:dd:ee:ff ...`.
pub fn port_mac(stdout: &str, port: u16) -> [u8; 6] {
    let prefix = format!("port {port}: ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no start-up line for port {port} in:\n{stdout}"));
    let mac = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mac="))
        .unwrap_or_else(|| panic!("no mac= in {line:?}"));
    let m: ctgate::pipeline::MacAddr = mac.parse().unwrap_or_else(|e| panic!("{e}"));
    m.0
}

/// A running ctgate whose stdout is read line by line on a thread.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    stdout: String,
    stderr_thread: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// Starts `ctgate EAL... -- APP...`.
    pub fn start(eal: &[String], app: &[&str]) -> Running {
        let mut cmd = Command::new(ctgate_bin());
        cmd.args(eal).arg("--").args(app);
        Running::spawn(cmd)
    }

    /// Starts `ctgate EAL... -- APP...` in network namespace `ns` (`ip netns exec`, which
    /// execs it: the process is ctgate itself, signals reach it).
    pub fn start_in_netns(ns: &str, eal: &[String], app: &[&str]) -> Running {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, ctgate_bin()])
            .args(eal)
            .arg("--")
            .args(app);
        Running::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ctgate");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        Running {
            child,
            lines,
            stdout: String::new(),
            stderr_thread: Some(stderr_thread),
        }
    }

    /// Everything read from stdout so far.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `timeout`) for a stdout line satisfying `pred`; returns it.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit (killing it after `timeout`) and collects its output.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let s = self.child.wait().expect("wait");
                let rest: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "ctgate did not exit within {timeout:?} (killed: {s})\n--- stdout\n{}{}",
                    self.stdout,
                    rest.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF; collect everything it still has.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        let stderr = self
            .stderr_thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Output {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave a busy-polling process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs ctgate to completion (it must stop by itself within `timeout`).
pub fn run_ctgate(eal: &[String], app: &[&str], timeout: Duration) -> Output {
    Running::start(eal, app).finish(timeout)
}

/// True when the tests run as root (needed for net_tap). Read from /proc, no libc call.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `text` with the first occurrence of each `(from, to)` pair replaced, in order: the way
/// a test derives its configuration from the embedded default. Panics, naming the text,
/// when a `from` is not there (the default changed shape), rather than running the test
/// with a configuration that silently lacks the edit.
pub fn edit_config(text: &str, edits: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in edits {
        assert!(
            out.contains(from),
            "the configuration no longer contains {from:?}: update the test's edit"
        );
        out = out.replacen(from, to, 1);
    }
    out
}

/// The embedded default with static next-hop MACs (the inside host 02:00:00:00:01:02 on
/// port 0, the outside router 02:00:00:00:02:02 on port 1: a pcap cannot answer ARP),
/// then the further `edits` ([`edit_config`]).
pub fn static_next_hops_config(edits: &[(&str, &str)]) -> String {
    let text = edit_config(
        ctgate::config::EMBEDDED_DEFAULT,
        &[
            (
                "zone = 1\n",
                "zone = 1\nnext_hop_mac = \"02:00:00:00:01:02\"\n",
            ),
            (
                "# next_hop_mac = \"02:00:00:00:00:02\"",
                "next_hop_mac = \"02:00:00:00:02:02\"",
            ),
        ],
    );
    edit_config(&text, edits)
}

// ---- frames -------------------------------------------------------------------------

/// An Ethernet frame: dst, src, EtherType, payload (`ctgate::wire::testframe`).
#[allow(unused_imports)] // not every test binary builds raw frames
pub use ctgate::wire::testframe::ether;

/// An IPv4 packet (TTL 64, identification 0x1234, DF) followed by `l4` of protocol
/// `proto`, every checksum filled (the shared builder, `ctgate::wire::testframe`).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    Frame::v4(src, dst, L4::raw(proto, l4)).build_ip()
}

/// A UDP header + payload (checksum 0 until a frame fills it: [`ipv4`] does).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    L4::udp(sport, dport, payload).bytes()
}

/// A TCP header with `flags` (no options, window 0xffff) + payload; checksum 0 until a
/// frame fills it.
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    L4::tcp(sport, dport, seq, 0, flags, payload).bytes()
}
