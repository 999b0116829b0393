//! A private Open vSwitch instance: its own `ovsdb-server` and `ovs-vswitchd` in a
//! directory of its own, used by `compare-ovs` (the DPDK datapath, `ovs-vswitchd-dpdk`)
//! and by the differential test `tests/ovs_diff.rs` (the dummy datapath).
//!
//! Invariants:
//! * Nothing outside the directory is touched: `OVS_RUNDIR`, `OVS_DBDIR`, `OVS_LOGDIR` and
//!   `OVS_SYSCONFDIR` point there, and both daemons get explicit paths for every socket,
//!   pid and log file. The system's service and its database are never used.
//! * Both daemons are children of this process ([`crate::child`]): they get SIGTERM if it
//!   dies, and dropping the [`Instance`] stops them by PID (SIGTERM, then SIGKILL) and
//!   reaps them, then removes the directory (unless [`Options::keep`]) and the DPDK
//!   runtime directory of [`Options::dpdk_prefix`].
//! * Every wait is bounded ([`WAIT_LIMIT`]) and ends early, with an error, when
//!   ovs-vswitchd exits or [`Options::cancel`] is set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child;

/// The OVS tools both users run (ovs-vswitchd is the caller's choice).
pub const TOOLS: [&str; 5] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
];
/// Longest wait for a daemon's socket or any other condition.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// True when `prog` is an executable file in a directory of `PATH`.
pub fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// The first of [`TOOLS`] and `more` that is not on `PATH`.
pub fn missing_tool(more: &[&'static str]) -> Option<&'static str> {
    TOOLS.iter().chain(more).copied().find(|p| !on_path(p))
}

/// The OVS database schema.
fn schema() -> Result<PathBuf, String> {
    [
        "/usr/share/openvswitch/vswitch.ovsschema",
        "/usr/local/share/openvswitch/vswitch.ovsschema",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .ok_or_else(|| "vswitch.ovsschema not found under /usr/share/openvswitch".into())
}

/// How an instance runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The CPU both daemons are pinned to (their threads' default; OVS's own PMD mask
    /// still applies to the PMD threads).
    pub cpu: Option<usize>,
    /// Set by the caller (e.g. on SIGINT) to abandon any wait with an error.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Keep the directory (logs, database, captures) when dropped, and say where.
    pub keep: bool,
    /// The EAL `--file-prefix` of a DPDK ovs-vswitchd: its runtime directory is removed
    /// when dropped.
    pub dpdk_prefix: Option<String>,
}

/// A running private instance; stopped and removed when dropped.
pub struct Instance {
    dir: PathBuf,
    opts: Options,
    db: Option<Child>,
    vswitchd: Option<Child>,
}

impl Instance {
    /// Creates `dir` afresh with a new database and starts ovsdb-server on it; then
    /// `ovs-vsctl --no-wait init` with the `Open_vSwitch` settings `settings` (e.g.
    /// `other_config:dpdk-init=true`), before any ovs-vswitchd reads them.
    pub fn start_db(dir: PathBuf, opts: Options, settings: &[&str]) -> Result<Instance, String> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut ovs = Instance {
            dir,
            opts,
            db: None,
            vswitchd: None,
        };
        let db = ovs.path("conf.db");
        let sock = ovs.path("db.sock");
        ovs.run(
            "ovsdb-tool",
            &["create", &db, &schema()?.display().to_string()],
        )?;
        ovs.db = Some(ovs.spawn(
            "ovsdb-server",
            &[
                db.clone(),
                format!("--remote=punix:{sock}"),
                format!("--pidfile={}", ovs.path("ovsdb-server.pid")),
                format!("--unixctl={}", ovs.path("ovsdb-server.ctl")),
                format!("--log-file={}", ovs.path("ovsdb-server.log")),
                "-vconsole:off".into(),
                "--no-chdir".into(),
            ],
            "ovsdb-server.stderr",
        )?);
        let sock_path = PathBuf::from(&sock);
        ovs.wait_for("ovsdb-server's socket", || sock_path.exists())?;
        let mut init = vec!["--no-wait", "init"];
        if !settings.is_empty() {
            init.extend(["--", "set", "Open_vSwitch", "."]);
            init.extend_from_slice(settings);
        }
        ovs.vsctl(&init)?;
        Ok(ovs)
    }

    /// Starts `launcher… PROGRAM` (e.g. `["unshare", "--net", "ovs-vswitchd-dpdk"]` or
    /// `["ovs-vswitchd"]`) on the database, with this instance's paths and `extra`
    /// arguments, and waits for its control socket.
    pub fn start_vswitchd(&mut self, launcher: &[&str], extra: &[&str]) -> Result<(), String> {
        let (prog, pre) = launcher.split_first().ok_or("start_vswitchd: no program")?;
        let mut args: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
        args.extend([
            format!("unix:{}", self.path("db.sock")),
            format!("--pidfile={}", self.path("ovs-vswitchd.pid")),
            format!("--unixctl={}", self.path("ovs-vswitchd.ctl")),
            format!("--log-file={}", self.path("ovs-vswitchd.log")),
            "-vconsole:off".into(),
            "--no-chdir".into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.vswitchd = Some(self.spawn(prog, &args, "ovs-vswitchd.stderr")?);
        let ctl = PathBuf::from(self.path("ovs-vswitchd.ctl"));
        self.wait_for("ovs-vswitchd's control socket", || ctl.exists())
    }

    /// The instance's directory (logs, database, captures).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `FILE` in the instance's directory.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// `prog` with the instance's environment.
    fn cmd(&self, mut c: Command) -> Command {
        for v in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            c.env(v, &self.dir);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `prog args…` to completion: its stdout, or an error with its stderr and the
    /// daemons' logged errors (arguments longer than 80 bytes, such as frames in hex,
    /// shown as `…`).
    pub fn run(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(Command::new(prog))
            .args(args)
            .output()
            .map_err(|e| format!("{prog}: {e}"))?;
        if !out.status.success() {
            let shown: Vec<&str> = args
                .iter()
                .map(|a| if a.len() > 80 { "…" } else { *a })
                .collect();
            return Err(format!(
                "{prog} {} failed ({}): {}{}",
                shown.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_problems()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ovs-vsctl` on this instance's database.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut a = vec![db.as_str(), "--timeout=120"];
        a.extend_from_slice(args);
        self.run("ovs-vsctl", &a)
    }

    /// `ovs-appctl` on this instance's ovs-vswitchd.
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let t = self.path("ovs-vswitchd.ctl");
        let mut a = vec!["-t", t.as_str(), "--timeout=60"];
        a.extend_from_slice(args);
        self.run("ovs-appctl", &a)
    }

    /// Adds bridge `bridge` with `datapath_type` and `fail-mode=secure` (what no flow
    /// matches is dropped), and its ports: `(name, type, ofport, options)`, each option
    /// `key=value` (e.g. `dpdk-devargs=…`), in one transaction.
    pub fn add_bridge(
        &self,
        bridge: &str,
        datapath_type: &str,
        ports: &[(&str, &str, u16, &[String])],
    ) -> Result<(), String> {
        let mut a: Vec<String> = [
            "add-br",
            bridge,
            "--",
            "set",
            "bridge",
            bridge,
            &format!("datapath_type={datapath_type}"),
            "fail-mode=secure",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (name, ty, ofport, options) in ports {
            a.extend(
                [
                    "--",
                    "add-port",
                    bridge,
                    name,
                    "--",
                    "set",
                    "Interface",
                    name,
                    &format!("type={ty}"),
                    &format!("ofport_request={ofport}"),
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            a.extend(options.iter().map(|o| format!("options:{o}")));
        }
        self.vsctl(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .map(|_| ())
    }

    /// Adds the OpenFlow `flows` (one per line) to `bridge`.
    pub fn add_flows(&self, bridge: &str, flows: &str) -> Result<(), String> {
        let file = self.dir.join("flows.txt");
        std::fs::write(&file, flows).map_err(|e| format!("{}: {e}", file.display()))?;
        let mgmt = format!("unix:{}", self.path(&format!("{bridge}.mgmt")));
        self.run(
            "ovs-ofctl",
            &["add-flows", &mgmt, &file.display().to_string()],
        )
        .map(|_| ())
    }

    fn spawn(&self, prog: &str, args: &[String], log: &str) -> Result<Child, String> {
        let err = std::fs::File::create(self.dir.join(log)).map_err(|e| e.to_string())?;
        self.cmd(child::command(prog, self.opts.cpu))
            .args(args)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{prog}: {e}"))
    }

    /// ERR/EMER lines of ovs-vswitchd's log and its stderr, as a message suffix (empty
    /// when there are none).
    pub fn log_problems(&self) -> String {
        let mut v = Vec::new();
        for f in ["ovs-vswitchd.log", "ovs-vswitchd.stderr"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                v.extend(
                    t.lines()
                        .filter(|l| l.contains("|ERR|") || l.contains("|EMER|"))
                        .map(str::to_string),
                );
            }
        }
        if v.is_empty() {
            String::new()
        } else {
            format!("\nOVS log errors:\n  {}", v.join("\n  "))
        }
    }

    /// An error if ovs-vswitchd exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        if let Some(c) = self.vswitchd.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.vswitchd = None;
                return Err(format!(
                    "ovs-vswitchd exited ({st}){} (logs in {})",
                    self.log_problems(),
                    self.dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Waits until `ok`, at most [`WAIT_LIMIT`]; an error if ovs-vswitchd exits or the
    /// wait is cancelled meanwhile.
    pub fn wait_for(&mut self, what: &str, mut ok: impl FnMut() -> bool) -> Result<(), String> {
        let t0 = Instant::now();
        while !ok() {
            self.check_alive()?;
            if self
                .opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst))
            {
                return Err("interrupted".into());
            }
            if t0.elapsed() > WAIT_LIMIT {
                return Err(format!(
                    "timed out waiting for {what}{} (logs in {})",
                    self.log_problems(),
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        child::stop(&mut self.vswitchd, Duration::from_secs(10));
        child::stop(&mut self.db, Duration::from_secs(5));
        if let Some(p) = &self.opts.dpdk_prefix {
            crate::runner::remove_dpdk_runtime(p);
        }
        if self.opts.keep {
            eprintln!("ovs: kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("ctgate-no-such-program"));
        // A missing tool of OVS's comes first; else the extra program is the one missing.
        assert_eq!(
            missing_tool(&["ctgate-no-such-program"]),
            missing_tool(&[]).or(Some("ctgate-no-such-program"))
        );
    }
}
