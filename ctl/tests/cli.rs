//! `ctgate-ctl` against a real control server (a `ControlServer` polled by a test
//! thread over a tracker filled through the worker API).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ctgate::conntrack::testpkt::udp;
use ctgate::conntrack::{Conntrack, CtConfig};
use ctgate::control::commands::{run_to_end, ControlContext, GatewayInfo, COMMANDS};
use ctgate::control::socket::{ControlServer, DEFAULT_BUDGET};

const CTL: &str = env!("CARGO_BIN_EXE_ctgate-ctl");

struct Fake;

impl GatewayInfo for Fake {
    fn show(&self) -> String {
        "port 0: name=net_null0\nworker 0: lcore=1\nuptime 3s\n".into()
    }
    fn stats(&self) -> String {
        "port=0 rx=1 tx=1\n".into()
    }
}

struct Server {
    dir: PathBuf,
    path: PathBuf,
    ct: Arc<Conntrack>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ctgate-ctl-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

impl Server {
    fn start(name: &str, conns: u32) -> Server {
        let ct = Arc::new(Conntrack::new(CtConfig {
            max_conns: 50_000,
            n_buckets: 0,
            workers: 1,
            tcp_seq_check: true,
            hash_seed: Some(1),
        }));
        {
            let mut w = ct.worker(0);
            for i in 0..conns {
                let src = format!("10.0.{}.{}", i >> 8, i & 255);
                let zone = (i % 2) as u16;
                assert!(w
                    .process(&udp(&src, "192.0.2.1", 4000, 53), zone, true, 0)
                    .conn
                    .is_some());
            }
        }
        let dir = temp_dir(name);
        let path = dir.join("ctgate.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, c) = (Arc::clone(&stop), Arc::clone(&ct));
        let thread = thread::spawn(move || {
            let sweep = AtomicU32::new(20_000);
            let ctx = ControlContext {
                conntrack: &c,
                sweep_interval_ms: &sweep,
                info: &Fake,
                ipf: None,
                now: 0,
            };
            while !s.load(Ordering::Relaxed) {
                if !server.poll(&ctx, DEFAULT_BUDGET).busy {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Server {
            dir,
            path,
            ct,
            stop,
            thread: Some(thread),
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CTL)
            .arg("--socket")
            .arg(&self.path)
            .args(args)
            .output()
            .unwrap()
    }

    /// What the server computes for a command (run directly, without the socket).
    fn expected(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let sweep = AtomicU32::new(20_000);
        let ctx = ControlContext {
            conntrack: &self.ct,
            sweep_interval_ms: &sweep,
            info: &Fake,
            ipf: None,
            now: 0,
        };
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_to_end(&ctx, cmd, &args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn prints_exactly_what_the_server_sent() {
    let s = Server::start("out", 20_000);
    let o = s.ctl(&["ct-get-nconns"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "20000\n");
    assert_eq!(stderr(&o), "");
    // A streamed dump: every chunk, concatenated, byte for byte.
    for args in [
        &["dump-conntrack"][..],
        &["dump-conntrack", "-s", "zone=1"],
        &["ct-bkts", "gt=3"],
    ] {
        let o = s.ctl(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let want = s.expected(args[0], &args[1..]).unwrap();
        assert!(
            want.len() > 100_000 || args[0] == "ct-bkts",
            "{}",
            want.len()
        );
        assert_eq!(stdout(&o), want, "{args:?}");
    }
    assert_eq!(
        stdout(&s.ctl(&["dump-conntrack", "zone=1"]))
            .lines()
            .count(),
        10_000
    );
    for cmd in [
        "show",
        "stats",
        "version",
        "ct-get-limits",
        "ct-stats-show",
        "help",
    ] {
        let o = s.ctl(&[cmd]);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        assert_eq!(stdout(&o), s.expected(cmd, &[]).unwrap(), "{cmd}");
    }
    assert_eq!(
        stdout(&s.ctl(&["ct-set-maxconns", "30000"])),
        "setting maxconns successful\n"
    );
    assert_eq!(stdout(&s.ctl(&["ct-get-maxconns"])), "30000\n");
    let o = s.ctl(&["flush-conntrack", "zone=1"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
    assert_eq!(stdout(&s.ctl(&["ct-get-nconns"])), "10000\n");
    // The environment variable names the socket too.
    let o = Command::new(CTL)
        .arg("ct-get-nconns")
        .env("CTGATE_SOCKET", &s.path)
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "10000\n");
}

#[test]
fn error_replies_go_to_stderr_with_exit_1() {
    let s = Server::start("err", 3);
    let o = s.ctl(&["ct-set-limits", "default=-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "ctgate-ctl: invalid default limit (Invalid argument)\n"
    );
    let o = s.ctl(&[
        "flush-conntrack",
        "ct_nw_src=1.2.3.4,ct_nw_dst=5.6.7.8,ct_nw_proto=17,ct_tp_src=1,ct_tp_dst=2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "ctgate-ctl: failed to flush conntrack (No such file or directory)\n"
    );
    // Bad command lines are caught before connecting: exit 2.
    let o = s.ctl(&["ct-get-ncons"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown command \"ct-get-ncons\"; did you mean ct-get-nconns"),
        "{}",
        stderr(&o)
    );
    // The server still serves.
    assert_eq!(stdout(&s.ctl(&["ct-get-nconns"])), "3\n");
}

#[test]
fn help_documents_every_command_without_a_server() {
    let o = Command::new(CTL).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let h = stdout(&o);
    assert!(h.contains("usage: ctgate-ctl [--socket PATH]"));
    for c in COMMANDS {
        assert!(
            h.contains(&format!("  {} {}", c.name, c.args)),
            "{}",
            c.name
        );
        let o = Command::new(CTL)
            .args(["--socket", "/nonexistent/x.sock", c.name, "--help"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", c.name);
        assert!(
            stdout(&o).starts_with(&format!("usage: ctgate-ctl {}", c.name)),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn cannot_connect_names_the_path_and_exits_1() {
    let dir = temp_dir("none");
    let path = dir.join("nothing.sock");
    let o = Command::new(CTL)
        .arg("--socket")
        .arg(&path)
        .arg("ct-get-nconns")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "ctgate-ctl: cannot connect to {}: ",
            path.display()
        )),
        "{e}"
    );
    assert!(e.contains("is ctgate running?"), "{e}");
    // A stale socket file: connection refused.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let o = Command::new(CTL)
        .arg("--socket")
        .arg(&path)
        .arg("ct-get-nconns")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nothing listens there"),
        "{}",
        stderr(&o)
    );
    let _ = fs::remove_dir_all(&dir);
}

fn is_root() -> bool {
    let dir = temp_dir("whoami");
    let f = dir.join("f");
    fs::write(&f, b"").unwrap();
    let uid = fs::metadata(&f).unwrap().uid();
    let _ = fs::remove_dir_all(&dir);
    uid == 0
}

/// Copies the CLI where user `nobody` can run it.
fn ctl_for_nobody(dir: &Path) -> PathBuf {
    let exe = dir.join("ctgate-ctl");
    fs::copy(CTL, &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

#[test]
fn another_uid_is_refused_by_mode_and_by_peer_credentials() {
    // A skip would pass without testing anything: the README's test command runs as
    // root (like the netns tests), so not being root is a failure, said plainly.
    assert!(
        is_root(),
        "switching to uid 65534 needs root: run the tests as root, as ci/test does"
    );
    let s = Server::start("uid", 5);
    let bin_dir = temp_dir("uid-bin");
    let exe = ctl_for_nobody(&bin_dir);
    let as_nobody = || {
        // Other tests' threads fork while the copy's write descriptor is open: exec may
        // see "text file busy" for that instant.
        for _ in 0..50 {
            match Command::new(&exe)
                .arg("--socket")
                .arg(&s.path)
                .arg("ct-get-nconns")
                .uid(65534)
                .gid(65534)
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    thread::sleep(Duration::from_millis(20))
                }
                r => return r.unwrap(),
            }
        }
        panic!("{} stays busy", exe.display());
    };
    // Mode 0600: the kernel refuses the connection.
    assert_eq!(
        fs::metadata(&s.path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = as_nobody();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    // Even with the mode opened up, the peer credentials check refuses it.
    fs::set_permissions(&s.path, fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "ctgate-ctl: permission denied: peer uid 65534 is not the uid 0 that runs ctgate\n"
    );
    // The owner is still served.
    assert_eq!(stdout(&s.ctl(&["ct-get-nconns"])), "5\n");
    let _ = fs::remove_dir_all(&bin_dir);
}
