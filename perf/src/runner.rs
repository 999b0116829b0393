//! Running the `ctgate` binary and reading its final counters: the run and the Mpps
//! arithmetic shared by `fwd`, `gateway` and `compare-ovs`.

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

/// The EAL arguments of a ctgate run on virtual devices: no hugepages, no PCI, its own
/// `--file-prefix`, errors-only logging, the control lcore on CPU 0 and `workers` workers
/// ([`lcore_map`]), and the `--vdev`s.
#[derive(Clone, Debug)]
pub struct EalArgs {
    pub memory_mb: u32,
    pub prefix: String,
    pub workers: usize,
    pub vdevs: Vec<String>,
}

impl EalArgs {
    pub fn args(&self) -> Vec<String> {
        self.args_with_lcores(lcore_map(self.workers))
    }

    /// The same arguments with `lcores` as the `--lcores` map instead of [`lcore_map`]'s
    /// (for a process that must stay off a CPU, e.g. `gen --loopback`'s forwarder).
    pub fn args_with_lcores(&self, lcores: String) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--no-huge".into(),
            "-m".into(),
            self.memory_mb.to_string(),
            "--no-pci".into(),
            "--file-prefix".into(),
            self.prefix.clone(),
            "--log-level".into(),
            "4".into(),
            "--lcores".into(),
            lcores,
        ];
        for d in &self.vdevs {
            v.push("--vdev".into());
            v.push(d.clone());
        }
        v
    }
}

/// Removes the DPDK runtime directory (`/var/run/dpdk/PREFIX`) a finished process left.
pub fn remove_dpdk_runtime(prefix: &str) {
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(prefix));
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

/// What a finished ctgate run reported: its worker lines, and all it printed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub workers: Vec<WorkerResult>,
    pub stdout: String,
}

impl RunResult {
    /// Packets transmitted per second of each worker's poll-loop time, in millions.
    pub fn per_worker_mpps(&self) -> Vec<f64> {
        self.workers
            .iter()
            .map(|w| mega_per_sec(w.tx, w.secs))
            .collect()
    }

    /// Packets received per second (forwarded or dropped), summed over the workers, in
    /// millions.
    pub fn rx_mpps(&self) -> f64 {
        self.workers
            .iter()
            .map(|w| mega_per_sec(w.rx, w.secs))
            .sum()
    }

    /// The workers' drops.
    pub fn dropped(&self) -> u64 {
        self.workers.iter().map(|w| w.dropped).sum()
    }

    /// The workers' non-zero drop reasons, `reason:count` (`drop_` dropped), in the order
    /// printed.
    pub fn drop_reasons(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("worker="))
            .flat_map(|l| {
                fields(l)
                    .filter(|(k, v)| k.starts_with("drop_") && *v != "0")
                    .map(|(k, v)| format!("{}:{v}", &k[5..]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `key` summed over the `port=` lines (e.g. `rx_nombuf`).
    pub fn port_sum(&self, key: &str) -> u64 {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("port="))
            .filter_map(|l| field_u64(l, key))
            .sum()
    }

    /// The tracker's final connection count (the `conntrack n_conns=` line of the gateway
    /// mode).
    pub fn conntrack_conns(&self) -> Result<u64, String> {
        self.stdout
            .lines()
            .find(|l| l.starts_with("conntrack "))
            .and_then(|l| field_u64(l, "n_conns"))
            .ok_or_else(|| format!("no conntrack line in ctgate's output:\n{}", self.stdout))
    }
}

/// A running ctgate's `stats` reply over its control socket, as text.
pub fn read_stats_text(socket: &Path) -> Result<String, String> {
    let mut text = String::new();
    match ctgate::control::protocol::call(
        socket,
        "stats",
        &[],
        Some(std::time::Duration::from_secs(5)),
        |o| text.push_str(o),
    ) {
        Ok(Ok(())) => Ok(text),
        Ok(Err(e)) => Err(format!("control socket: {e}")),
        Err(e) => Err(format!("control socket: {e}")),
    }
}

/// The seconds the workers' loops ran and, of those, spent on turns that found packets
/// (`secs` and `busy_secs`), summed over the `worker=` lines of a `stats` reply or a final
/// report (0 for a key a line lacks).
pub fn worker_seconds(text: &str) -> (f64, f64) {
    let float = |l: &str, key: &str| -> f64 {
        fields(l)
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0)
    };
    text.lines()
        .filter(|l| l.starts_with("worker="))
        .fold((0.0, 0.0), |(r, b), l| {
            (r + float(l, "secs"), b + float(l, "busy_secs"))
        })
}

/// The share of the workers' loop time between two [`worker_seconds`] readings that
/// found packets; `None` when no loop time passed.
pub fn busy_share(a: (f64, f64), b: (f64, f64)) -> Option<f64> {
    let run = b.0 - a.0;
    (run > 0.0).then(|| ((b.1 - a.1) / run).clamp(0.0, 1.0))
}

/// `n` per `secs` seconds, in millions (0 for an empty interval).
pub fn mega_per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs / 1e6
    } else {
        0.0
    }
}

/// Runs `ctgate EAL... -- APP...` to completion, removes its DPDK runtime directory and
/// parses its worker lines.
pub fn run_ctgate(bin: &Path, eal: &EalArgs, app: &[String]) -> Result<RunResult, String> {
    let out = Command::new(bin)
        .args(eal.args())
        .arg("--")
        .args(app)
        .output();
    remove_dpdk_runtime(&eal.prefix);
    let out = out.map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
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
    Ok(RunResult { workers, stdout })
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

    #[test]
    fn worker_seconds_sum_the_loop_and_busy_seconds_of_every_worker_line() {
        let text = "port=0 rx=1 tx=1 dropped=0\n\
                    worker=0 lcore=1 rx=9 tx=9 dropped=0 secs=2.000 rx_mpps=0.000 queues=0:0 generated=0 consumed=0 busy_secs=0.500\n\
                    worker=1 lcore=2 rx=9 tx=9 dropped=0 secs=3.000 queues=- busy_secs=1.500\n\
                    worker=2 lcore=3 rx=0 tx=0 dropped=0 secs=1.000 queues=-\n";
        assert_eq!(worker_seconds(text), (6.0, 2.0));
        assert_eq!(busy_share((6.0, 2.0), (8.0, 3.5)), Some(0.75));
        assert_eq!(busy_share((6.0, 2.0), (6.0, 2.0)), None);
    }
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
    fn rates_drops_and_reasons_of_a_run() {
        let stdout = "port=0 rx=1 tx=1 dropped=0 rx_nombuf=3\n\
                      port=1 rx=1 tx=1 dropped=0 rx_nombuf=4\n\
                      worker=0 lcore=1 rx=400 tx=300 dropped=100 drop_local=0 drop_no_conn=100 secs=2 queues=0:0\n\
                      worker=1 lcore=2 rx=100 tx=100 dropped=0 drop_local=0 drop_no_conn=0 secs=0 queues=-\n\
                      conntrack n_conns=42 created=42\n";
        let r = RunResult {
            workers: parse_workers(stdout),
            stdout: stdout.into(),
        };
        assert_eq!(r.per_worker_mpps(), [150e-6, 0.0]);
        assert_eq!(r.rx_mpps(), 200e-6);
        assert_eq!(r.dropped(), 100);
        assert_eq!(r.drop_reasons(), ["no_conn:100"]);
        assert_eq!(r.port_sum("rx_nombuf"), 7);
        assert_eq!(r.conntrack_conns(), Ok(42));
        let none = RunResult {
            workers: vec![],
            stdout: "port=0 rx=1\n".into(),
        };
        assert!(none
            .conntrack_conns()
            .unwrap_err()
            .contains("no conntrack line"));
    }

    #[test]
    fn eal_args_name_prefix_lcores_and_devices() {
        let e = EalArgs {
            memory_mb: 512,
            prefix: "p".into(),
            workers: 1,
            vdevs: vec!["net_null0".into(), "net_null1".into()],
        };
        let a = e.args().join(" ");
        assert!(
            a.starts_with("--no-huge -m 512 --no-pci --file-prefix p "),
            "{a}"
        );
        assert!(a.contains("--lcores 0@0,1@"), "{a}");
        assert!(a.ends_with("--vdev net_null0 --vdev net_null1"), "{a}");
    }

    #[test]
    fn lcore_map_puts_control_on_cpu0() {
        assert!(lcore_map(1).starts_with("0@0,1@"));
        assert_eq!(lcore_map(3).split(',').count(), 4);
    }
}
