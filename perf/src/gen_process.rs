//! The generator ([`crate::gen`]) as a child process of ctgate-perf, for the benchmarks
//! that measure a device under test fed by it: `compare-ovs` (ctgate's binary or OVS
//! attach its memif ports) and `datapath --source memif` (ctgate's pipeline in this
//! process attaches them).
//!
//! [`GenProcess::start`] runs `ctgate-perf gen` on CPU 0 (EAL `-l 0`) with its own
//! `--file-prefix`, serving `DIR/memif0.sock` and `DIR/memif1.sock` (attach them with
//! [`gen::client_devargs`]: `bsize`/`rsize` as the generator expects), and returns once
//! both sockets exist. It sends for the given seconds after the device took its first
//! packet, then holds the ports open (`--hold`) until [`GenProcess::finish`] stops it by
//! PID (SIGTERM: it prints its line) and reads its figures.
//!
//! Invariants: the process never outlives ctgate-perf (`setpriv --pdeathsig`, see
//! [`crate::child`]) and is stopped by PID on every path (also on drop), its DPDK runtime
//! directory removed; frames that came back not as sent (`bad` > 0) fail the run.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::child;
use crate::gen::{self, RepliesTo};
use crate::ovs;
use crate::runner::remove_dpdk_runtime;

/// What a generator run is asked for.
#[derive(Clone, Copy, Debug)]
pub struct GenSpec {
    pub flows: u32,
    pub replies_to: RepliesTo,
    /// The device's TX queues per port (the generator's RX queues; see `gen --rx-queues`).
    pub rx_queues: u16,
    /// Seconds of sending after the device took the first packet.
    pub seconds: f64,
}

/// What the generator reported for a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenFigures {
    /// Packets the device took, per second over the generator's run, in millions.
    pub sent_mpps: f64,
    /// Packets that came back, per second over the generator's run, in millions.
    pub mpps: f64,
    /// Packets the device took and gave back, whole run.
    pub sent: u64,
    pub received: u64,
    /// Share of its CPU the generator ran.
    pub cpu: Option<f64>,
    /// Share of its TX bursts the device's ring did not take in full (near 1: the device
    /// set the rate, not the generator).
    pub full: Option<f64>,
}

impl GenFigures {
    /// No figures: a generator that printed no line (shown as `-`, rates 0).
    pub fn unknown() -> GenFigures {
        GenFigures {
            sent_mpps: 0.0,
            mpps: 0.0,
            sent: 0,
            received: 0,
            cpu: None,
            full: None,
        }
    }
}

/// `ctgate-perf gen` serving memif sockets on CPU 0, stopped by PID.
pub struct GenProcess {
    child: Option<Child>,
    prefix: String,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn read_all(r: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

impl GenProcess {
    /// Starts the generator with its sockets in `dir` (created if missing) and EAL
    /// `--file-prefix prefix`, and waits for both sockets (at most [`ovs::WAIT_LIMIT`]);
    /// `interrupted` is asked while waiting and ends the wait with its error.
    pub fn start(
        spec: &GenSpec,
        dir: &Path,
        prefix: String,
        interrupted: &dyn Fn() -> Result<(), String>,
    ) -> Result<GenProcess, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot locate ctgate-perf itself: {e}"))?;
        let mut c = child::command(&exe, None)
            .args(["gen", "--flows", &spec.flows.to_string(), "--replies-to"])
            .arg(match spec.replies_to {
                RepliesTo::Client => "client",
                RepliesTo::Snat => "snat",
            })
            .args(["--rx-queues", &spec.rx_queues.to_string()])
            .args(["--seconds", &spec.seconds.to_string(), "--hold"])
            .args(["--cpu", "0", "--file-prefix", &prefix, "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {} gen: {e}", exe.display()))?;
        let (out, err) = (c.stdout.take(), c.stderr.take());
        let mut g = GenProcess {
            child: Some(c),
            prefix,
            out: Some(read_all(out)),
            err: Some(read_all(err)),
        };
        let t0 = Instant::now();
        while !(0..2).all(|p| gen::socket_path(dir, p).exists()) {
            interrupted()?;
            if let Some(c) = g.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let err = g.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
                    return Err(format!("the generator exited ({st}): {err}"));
                }
            }
            if t0.elapsed() > ovs::WAIT_LIMIT {
                return Err("timed out waiting for the generator's memif sockets".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(g)
    }

    /// Stops it (SIGTERM: it prints its line) and reads its figures; frames that came
    /// back not as sent fail the run.
    pub fn finish(mut self) -> Result<GenFigures, String> {
        // A generous grace: on a loaded machine its EAL cleanup can take seconds.
        let status = child::stop(&mut self.child, Duration::from_secs(20));
        let out = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let line = out
            .lines()
            .find(|l| l.starts_with("bench=gen "))
            .ok_or_else(|| {
                let how = status.map_or_else(|| "unknown".to_string(), |s| s.to_string());
                format!("the generator printed no result line (it ended: {how}):\n{out}{err}")
            })?;
        let num = |k: &str| {
            ctgate::control::counter_lines::fields(line)
                .find(|(key, _)| *key == k)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        let need = |k: &str| num(k).ok_or_else(|| format!("no {k}= in {line}"));
        let bad = need("bad")?;
        if bad > 0.0 {
            return Err(format!(
                "the generator received {bad} frames that are not what it sent: {line}"
            ));
        }
        Ok(GenFigures {
            sent_mpps: need("sent_mpps")?,
            mpps: need("mpps")?,
            sent: need("sent")? as u64,
            received: need("received")? as u64,
            cpu: num("cpu"),
            full: num("full"),
        })
    }
}

impl Drop for GenProcess {
    fn drop(&mut self) {
        child::stop(&mut self.child, Duration::from_secs(5));
        remove_dpdk_runtime(&self.prefix);
    }
}
