//! Running the `ctgate` binary and reading its final counters (shared by subcommands).

use std::path::{Path, PathBuf};
use std::process::Command;

use ctgate::control::counter_lines::{field_u64, fields};

/// Finds the ctgate binary: `explicit`, else next to this executable (same cargo profile).
pub fn find_ctgate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{} is not a file", p.display()))
        };
    }
    let me =
        std::env::current_exe().map_err(|e| format!("cannot locate ctgate-perf itself: {e}"))?;
    let sibling = me.with_file_name("ctgate");
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "no ctgate binary at {}: build it first (cargo build --release -p ctgate) or pass --ctgate PATH",
            sibling.display()
        ))
    }
}

/// An EAL `--lcores` map for the control lcore and `workers` workers on this machine:
/// lcore 0 (control, mostly asleep) on CPU 0, workers on CPUs 1, 2, … wrapping to 0.
pub fn lcore_map(workers: usize) -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (0..=workers)
        .map(|l| format!("{l}@{}", if l == 0 { 0 } else { l % cpus }))
        .collect::<Vec<_>>()
        .join(",")
}

/// One worker's final counters.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerResult {
    pub worker: u64,
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    pub secs: f64,
}

/// What a finished ctgate run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub workers: Vec<WorkerResult>,
}

/// Runs `ctgate EAL... -- APP...` to completion and parses its worker lines.
pub fn run_ctgate(bin: &Path, eal: &[String], app: &[String]) -> Result<RunResult, String> {
    let out = Command::new(bin)
        .args(eal)
        .arg("--")
        .args(app)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "ctgate failed ({}):\n{}\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let workers = parse_workers(&stdout);
    if workers.is_empty() {
        return Err(format!("ctgate printed no worker counters:\n{stdout}"));
    }
    Ok(RunResult { workers })
}

/// Parses the `worker=N ...` lines of ctgate's final counters.
pub fn parse_workers(stdout: &str) -> Vec<WorkerResult> {
    stdout
        .lines()
        .filter(|l| l.starts_with("worker="))
        .filter_map(|l| {
            let secs = fields(l).find(|(k, _)| *k == "secs")?.1.parse().ok()?;
            Some(WorkerResult {
                worker: field_u64(l, "worker")?,
                rx: field_u64(l, "rx")?,
                tx: field_u64(l, "tx")?,
                dropped: field_u64(l, "dropped")?,
                secs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_worker_lines() {
        let out = "port=0 rx=1 tx=1 dropped=0\n\
                   worker=0 lcore=1 rx=100 tx=90 dropped=10 drop_short_frame=0 secs=2.000 rx_mpps=0.000 queues=0:0\n\
                   worker=1 lcore=2 rx=5 tx=5 dropped=0 secs=1.5 queues=-\n";
        let w = parse_workers(out);
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0],
            WorkerResult {
                worker: 0,
                rx: 100,
                tx: 90,
                dropped: 10,
                secs: 2.0
            }
        );
        assert_eq!(w[1].secs, 1.5);
    }

    #[test]
    fn lcore_map_puts_control_on_cpu0() {
        assert!(lcore_map(1).starts_with("0@0,1@"));
        assert_eq!(lcore_map(3).split(',').count(), 4);
    }
}
