//! Real receivers of the NAT log on loopback, for tests/natlog_collectors.rs and
//! tests/gw_events.rs: `rsyslogd` with a UDP input (and a local socket) writing each
//! message's parsed RFC 5424 fields to a file, and nfdump's `nfcapd` IPFIX collector whose
//! file `nfdump` decodes. Each runs in a scratch directory and is stopped on drop.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A UDP port on 127.0.0.1 free right now.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tool(name: &str) -> String {
    for d in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{name} is missing: run ci/setup (it installs nfdump and rsyslog)");
}

/// Whether `pid` holds a socket bound to UDP `port` on 127.0.0.1: the socket's inode
/// from /proc/net/udp among the process's open files. Reading, not binding: a probe that
/// binds the port holds it for an instant, and a receiver starting in that instant fails
/// with "Address already in use"; and a port some other process took is not the receiver
/// listening.
fn udp_bound_by(port: u16, pid: u32) -> bool {
    let want = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&want.as_str()) {
                return None;
            }
            Some(format!("socket:[{}]", f.get(9)?))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|l| sockets.iter().any(|s| l.as_os_str() == s.as_str()))
}

/// Waits until `port` on 127.0.0.1 is bound (the receiver listens). `Err` says why not:
/// the receiver exited (another process took the port between `free_port` and its bind)
/// or 20 s passed.
fn wait_bound(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !udp_bound_by(port, child.id()) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("exited at start ({st})"));
        }
        if Instant::now() > deadline {
            return Err(format!("did not listen on {port} within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// How many ports a receiver is tried on before its start fails.
const START_TRIES: usize = 3;

/// Stops `child` with SIGTERM; returns how it ended.
fn stop(child: &mut Child) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().ok()
}

/// A private rsyslogd: UDP on 127.0.0.1:`port`, a local socket at `sock`; each message
/// becomes a line `INPUT|PRI|APP-NAME|MSGID|STRUCTURED-DATA|MSG` in `out`.
pub struct Rsyslog {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub sock: PathBuf,
    pub out: PathBuf,
}

impl Rsyslog {
    pub fn start(name: &str) -> Rsyslog {
        let dir = scratch(name);
        let sock = dir.join("log.sock");
        let out = dir.join("out.log");
        let conf = dir.join("rsyslog.conf");
        let mut failures = Vec::new();
        for _ in 0..START_TRIES {
            let port = free_port();
            std::fs::write(
                &conf,
                format!(
                    r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{port}")
input(type="imuxsock" Socket="{sock}" UseSpecialParser="off")
template(name="fields" type="string" string="%inputname%|%pri%|%app-name%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="fields")
"#,
                    d = dir.display(),
                    sock = sock.display(),
                    out = out.display()
                ),
            )
            .unwrap();
            let mut child = Command::new(tool("rsyslogd"))
                .args(["-n", "-f"])
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("rsyslogd.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rsyslogd");
            if let Err(why) = wait_bound(port, &mut child) {
                stop(&mut child);
                let _ = std::fs::remove_file(&sock);
                failures.push(format!("port {port}: {why}"));
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while !sock.exists() {
                assert!(
                    Instant::now() < deadline,
                    "rsyslogd made no {}",
                    sock.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            return Rsyslog {
                child,
                dir,
                port,
                sock,
                out,
            };
        }
        panic!("rsyslogd did not start: {}", failures.join("; "));
    }

    /// The lines written so far, once there are at least `n` (or after 20 s).
    pub fn lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = std::fs::read_to_string(&self.out).unwrap_or_default();
            if t.lines().count() >= n || Instant::now() > deadline {
                return t.lines().map(str::to_string).collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private nfcapd on 127.0.0.1:`port`.
pub struct Nfcapd {
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
}

impl Nfcapd {
    pub fn start(name: &str) -> Nfcapd {
        let dir = scratch(name);
        let mut failures = Vec::new();
        for _ in 0..START_TRIES {
            let port = free_port();
            // Its messages, for a failure's report.
            let log = std::fs::File::create(dir.join("collector.log")).expect("nfcapd's log");
            let mut child = Command::new(tool("nfcapd"))
                .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
                .arg(&dir)
                .args(["-t", "3600"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("nfcapd's log"))
                .stderr(log)
                .spawn()
                .expect("start nfcapd");
            match wait_bound(port, &mut child) {
                Ok(()) => {
                    return Nfcapd {
                        child: Some(child),
                        dir,
                        port,
                    };
                }
                Err(why) => {
                    stop(&mut child);
                    let said =
                        std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default();
                    failures.push(format!("port {port}: {why}: {}", said.trim()));
                }
            }
        }
        panic!("nfcapd did not start: {}", failures.join("; "));
    }

    /// Stops nfcapd (which then writes its file) and decodes the records with nfdump:
    /// `natEvent|proto|inside addr|inside port|outside addr|outside port|dest addr|dest
    /// port`, blanks trimmed, sorted. nfcapd rotates its file on the hour (`-t 3600`), so a
    /// test that runs across one leaves two files: the records of all of them.
    pub fn stop_and_decode(&mut self) -> Vec<String> {
        // Let the last datagrams arrive before the stop.
        std::thread::sleep(Duration::from_millis(500));
        let status = self.child.take().and_then(|mut c| stop(&mut c));
        let all: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        let mut files: Vec<&PathBuf> = all
            .iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("nfcapd.2"))
            })
            .collect();
        files.sort();
        assert!(
            !files.is_empty(),
            "no nfcapd file in {}: nfcapd on port {} ended {status:?}, the directory holds \
             {all:?}, its log:\n{}",
            self.dir.display(),
            self.port,
            std::fs::read_to_string(self.dir.join("collector.log")).unwrap_or_default()
        );
        let mut lines: Vec<String> = Vec::new();
        for f in files {
            let out = Command::new(tool("nfdump"))
                .arg("-r")
                .arg(f)
                .args(["-q", "-o", "fmt:%nevt|%pr|%sa|%sp|%xsa|%xsp|%da|%dp"])
                .output()
                .expect("run nfdump");
            let text = String::from_utf8_lossy(&out.stdout);
            lines.extend(
                text.lines()
                    .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join("|")),
            );
        }
        lines.sort();
        lines
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
