//! `ctgate-perf fwd`: forwarding throughput of the real ctgate binary.
//!
//! For each worker count it runs `ctgate --duration SECS` on two virtual ports and prints
//! one line per case:
//!
//! ```text
//! bench=fwd source=null workers=2 secs=5 mpps=7.812 per_worker_mpps=3.905,3.907 dropped=0 rx_mpps=7.812
//! ```
//!
//! `rx_mpps` is packets received per second (forwarded or dropped). ctgate runs in its
//! plain forwarding mode (`--pair 0:1`: no tracking, frames from one port leave on the
//! other): the raw I/O baseline. In the gateway mode these sources' frames are addressed
//! to nothing it routes (it drops them as `drop_local`); for the gateway use
//! `ctgate-perf gateway`.
//!
//! With `--json` the same fields as one JSON object per line (`per_worker_mpps` an array);
//! `--quick` is one worker for 1 s; progress goes to stderr (`[fwd 1/2 0.0s] workers=1`).
//!
//! `mpps` is packets forwarded (transmitted) per second summed over workers, each worker's
//! rate measured over its own poll-loop time. Sources:
//! * `null`: two net_null ports (RX generates 64-byte packets, TX frees them); RSS gives
//!   every worker a queue on each port.
//! * `pcap`: a net_pcap port replaying a generated pcap of 64-byte UDP frames forever
//!   (`infinite_rx=1`, one RX queue, so one busy worker), forwarding into a net_null sink.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::plot::{Progress, Record};
use crate::runner::{find_ctgate, run_ctgate, EalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Worker counts to measure, one case each (e.g. 1,2) [default: 1,2; with --quick 1].
    #[arg(long, value_delimiter = ',')]
    workers: Vec<usize>,
    /// Seconds per case [default: 5; with --quick 1].
    #[arg(long)]
    seconds: Option<f64>,
    /// Traffic source.
    #[arg(long, value_enum, default_value_t = Source::Null)]
    source: Source,
    /// The ctgate binary (default: next to ctgate-perf).
    #[arg(long, value_name = "PATH")]
    ctgate: Option<PathBuf>,
    /// Memory for EAL in MB (no hugepages are used).
    #[arg(long, default_value_t = 1024)]
    memory_mb: u32,
    /// Short: one worker for 1 s (unless --workers/--seconds say otherwise).
    #[arg(long)]
    quick: bool,
    /// One JSON object per line instead of key=value.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Source {
    Null,
    Pcap,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Null => "null",
            Source::Pcap => "pcap",
        }
    }
}

/// The cases to run: (worker counts, seconds), defaults resolved.
fn plan(args: &Args) -> Result<(Vec<usize>, f64), String> {
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    let workers = if !args.workers.is_empty() {
        args.workers.clone()
    } else if args.quick {
        vec![1]
    } else {
        vec![1, 2]
    };
    if workers.contains(&0) {
        return Err("--workers needs positive worker counts, e.g. 1,2".into());
    }
    Ok((workers, seconds))
}

pub fn run(args: &Args) -> Result<(), String> {
    let (workers, seconds) = plan(args)?;
    let bin = find_ctgate(args.ctgate.as_deref())?;
    let scratch = std::env::temp_dir().join(format!("ctgate-perf-fwd-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = run_cases(args, &workers, seconds, &bin, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_cases(
    args: &Args,
    workers: &[usize],
    seconds: f64,
    bin: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<(), String> {
    let vdevs: Vec<String> = match args.source {
        Source::Null => vec!["net_null0".into(), "net_null1".into()],
        Source::Pcap => {
            let pcap = scratch.join("src.pcap");
            write_source_pcap(&pcap)?;
            vec![
                format!(
                    "net_pcap0,rx_pcap={},tx_pcap=/dev/null,infinite_rx=1",
                    pcap.display()
                ),
                "net_null1,no-rx=1".into(),
            ]
        }
    };
    let mut prog = Progress::new("fwd", workers.len());
    for &workers in workers {
        prog.case(&format!("source={} workers={workers}", args.source.name()));
        let eal = EalArgs {
            memory_mb: args.memory_mb,
            prefix: format!("ctgate-perf-{}-{workers}", std::process::id()),
            workers,
            vdevs: vdevs.clone(),
        };
        let app = vec![
            "--pair".to_string(),
            "0:1".into(),
            "--quiet".into(),
            "--duration".into(),
            seconds.to_string(),
        ];
        let r = run_ctgate(bin, &eal, &app)?;
        let (per_worker, dropped, rx_mpps) = (r.per_worker_mpps(), r.dropped(), r.rx_mpps());
        fwd_record(args.source, workers, seconds, &per_worker, dropped)
            .float("rx_mpps", rx_mpps, 3)
            .print(args.json);
    }
    prog.note("done");
    Ok(())
}

/// The result line of one case.
fn fwd_record(
    source: Source,
    workers: usize,
    seconds: f64,
    per_worker_mpps: &[f64],
    dropped: u64,
) -> Record {
    Record::new("fwd")
        .str("source", source.name())
        .int("workers", workers as u64)
        .real("secs", seconds)
        .float("mpps", per_worker_mpps.iter().sum(), 3)
        .floats("per_worker_mpps", per_worker_mpps, 3)
        .int("dropped", dropped)
}

/// 1024 minimum-size UDP/IPv4 frames with varying ports (the replay source).
fn write_source_pcap(path: &std::path::Path) -> Result<(), String> {
    let frames: Vec<Vec<u8>> = (0..1024u16)
        .map(|i| {
            let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
            let mut ip = vec![
                0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 1, 1,
            ];
            let mut sum: u32 = ip
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            sum = (sum & 0xffff) + (sum >> 16);
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend_from_slice(&ip);
            f.extend_from_slice(&(10_000 + i).to_be_bytes());
            f.extend_from_slice(&53u16.to_be_bytes());
            f.extend_from_slice(&[0, 8, 0, 0]);
            f.resize(60, 0);
            f
        })
        .collect();
    ctgate::pcap::write_file(path, Duration::ZERO, frames.iter().map(Vec::as_slice))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_keys_and_json() {
        let r = fwd_record(Source::Null, 2, 5.0, &[3.9051, 3.907], 0);
        assert_eq!(
            r.render(false),
            "bench=fwd source=null workers=2 secs=5 mpps=7.812 per_worker_mpps=3.905,3.907 dropped=0"
        );
        let v: serde_json::Value = serde_json::from_str(&r.render(true)).unwrap();
        assert_eq!(v["bench"], "fwd");
        assert_eq!(v["source"], "null");
        assert_eq!(v["workers"], 2);
        assert_eq!(v["secs"], 5);
        assert_eq!(v["mpps"], 7.812);
        assert_eq!(v["per_worker_mpps"], serde_json::json!([3.905, 3.907]));
        assert_eq!(v["dropped"], 0);
    }

    #[test]
    fn quick_and_bad_plans() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let plan_of = |argv: &[&str]| {
            let cli =
                Cli::try_parse_from(std::iter::once("fwd").chain(argv.iter().copied())).unwrap();
            plan(&cli.a)
        };
        assert_eq!(plan_of(&[]), Ok((vec![1, 2], 5.0)));
        assert_eq!(plan_of(&["--quick"]), Ok((vec![1], 1.0)));
        assert_eq!(
            plan_of(&["--quick", "--workers", "2", "--seconds", "0.5"]),
            Ok((vec![2], 0.5))
        );
        assert!(plan_of(&["--seconds", "0"])
            .unwrap_err()
            .contains("--seconds"));
        assert!(plan_of(&["--workers", "0"])
            .unwrap_err()
            .contains("--workers"));
    }
}
