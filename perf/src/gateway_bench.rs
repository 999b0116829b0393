//! `ctgate-perf gateway`: the real ctgate binary in gateway mode (tracking, policy, SNAT,
//! routing) on established, source-NATed flows replayed forever from pcaps.
//!
//! Per case it writes the traffic of [`crate::gen_traffic`] (inside.pcap: one packet per
//! flow; outside.pcap: the replies, to the SNAT address with the kept ports) and a config
//! (the embedded default plus static `next_hop_mac` on both ports, so no ARP), then runs
//!
//! ```text
//! ctgate --no-huge -m MB --no-pci --lcores 0@0,1@1 \
//!   --vdev net_pcap0,rx_pcap=inside.pcap,infinite_rx=1 \
//!   --vdev net_pcap1,rx_pcap=outside.pcap,infinite_rx=1 \
//!   -- --config gw.toml --socket S --quiet --duration SECS
//! ```
//!
//! (net_pcap without `tx_pcap` drops what it transmits: `tx_pcap=/dev/null` would cost
//! a libpcap write per packet and cap this setup at about 11 Mpps even for plain L2
//! forwarding.) With `--baseline`, each case is also run in ctgate's forwarding mode
//! (`--pair 0:1`, no tracking) on the same ports and pcaps and printed as
//! `bench=gateway-baseline`: the I/O ceiling of the setup.
//!
//! and prints one line per case:
//!
//! ```text
//! bench=gateway flows=1000 workers=1 source=pcap mpps=… per_worker_mpps=… conns=… dropped=… proto=udp secs=… rx_nombuf=…
//! ```
//!
//! `mpps` is packets transmitted per second of the worker's poll-loop time (both
//! directions), `conns` ctgate's final `conntrack n_conns`, `dropped` the workers' drops.
//!
//! Sources ([`crate::pcap_feed`]): net_pcap `infinite_rx=1` copies the whole pcap into
//! mbufs of the port's mempool at queue setup, so ctgate is run with `--mbufs N` (both
//! pcaps' packets plus [`POOL_HEADROOM`](crate::pcap_feed::POOL_HEADROOM)) and EAL memory
//! grown to hold them; `source=pcap` is used up to [`PCAP_MAX_PACKETS`] packets. Larger
//! cases use `source=fifo`: each `rx_pcap` is a named pipe that a [`Feeder`] thread of
//! ctgate-perf (pinned to CPU 0) writes the pcap's records into, over and over; that source
//! has its own ceiling (see `--baseline`). The run and its figures are
//! [`crate::runner`]'s.

use std::path::{Path, PathBuf};

use crate::bench_config;
use crate::gen_traffic::{self, Proto, PCAP_PORT0_MAC, PCAP_PORT1_MAC};
use crate::pcap_feed::{memory_for, pcap_mbufs, Feeder, PCAP_MAX_PACKETS};
use crate::plot::Line;
use crate::runner::{find_ctgate, run_ctgate, EalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flow counts, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    flows: Vec<u32>,
    /// Seconds per case.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Runs per case (report the spread).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Protocol of the flows.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    proto: Proto,
    /// Frame size in bytes including FCS.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Fraction of flows with replies fed to port 1 (0 = port 1 is a net_null sink).
    #[arg(long, default_value_t = 1.0)]
    replies: f64,
    /// Quick smoke run (1000 flows, 2 s, under a minute).
    #[arg(long)]
    quick: bool,
    /// Print JSON objects (one per line) instead of key=value lines.
    #[arg(long)]
    json: bool,
    /// The ctgate binary (default: next to ctgate-perf).
    #[arg(long, value_name = "PATH")]
    ctgate: Option<PathBuf>,
    /// Memory for EAL in MB (no hugepages are used).
    #[arg(long, default_value_t = 1024)]
    memory_mb: u32,
    /// Also run each case in L2 forwarding mode (`--pair 0:1`) on the same input.
    #[arg(long)]
    baseline: bool,
    /// EAL --file-prefix stem (each case appends its own suffix).
    #[arg(long)]
    file_prefix: Option<String>,
}

pub fn run(args: &Args) -> Result<(), String> {
    let (flows, seconds) = if args.quick {
        (vec![1000], 2.0)
    } else {
        (args.flows.clone(), args.seconds)
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    let bin = find_ctgate(args.ctgate.as_deref())?;
    let scratch = std::env::temp_dir().join(format!("ctgate-perf-gw-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let stem = args
        .file_prefix
        .clone()
        .unwrap_or_else(|| format!("ctgate-perf-gw-{}", std::process::id()));
    let mut result = Ok(());
    let total = flows.len() * args.repeat.max(1) as usize;
    let mut n = 0;
    'cases: for &f in &flows {
        for rep in 0..args.repeat.max(1) {
            n += 1;
            eprintln!("[gateway {n}/{total}] flows={f} run {}", rep + 1);
            let prefix = format!("{stem}-{f}-{rep}");
            for baseline in [false, true] {
                if baseline && !args.baseline {
                    continue;
                }
                match run_case(args, &bin, &scratch, f, seconds, &prefix, baseline) {
                    Ok(line) => println!("{}", line.render(args.json)),
                    Err(e) => {
                        result = Err(e);
                        break 'cases;
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_case(
    args: &Args,
    bin: &Path,
    scratch: &Path,
    flows: u32,
    seconds: f64,
    prefix: &str,
    baseline: bool,
) -> Result<Line, String> {
    let dir = scratch.join(format!("f{flows}"));
    let g = gen_traffic::Args {
        flows,
        proto: args.proto,
        size: args.size,
        replies: args.replies,
        shuffle: true,
        seed: 1,
        dst_mac: gen_traffic::parse_mac(PCAP_PORT0_MAC)?,
        out_dst_mac: gen_traffic::parse_mac(PCAP_PORT1_MAC)?,
        out: dir.clone(),
    };
    let (n_in, n_out) = {
        gen_traffic::check(&g)?;
        let n_out = (g.replies * flows as f64).round() as usize;
        (flows as usize, n_out)
    };
    // net_pcap infinite_rx preloads the pcaps into ctgate's mempool; beyond that, named
    // pipes written in a loop by feeder threads of this process.
    let fifo = n_in + n_out > PCAP_MAX_PACKETS;
    gen_traffic::write(&g)?;
    let mut feeders = Vec::new();
    let (rx0, rx1) = if fifo {
        let mut paths = Vec::new();
        for (name, n) in [("inside", n_in), ("outside", n_out)] {
            let pcap = dir.join(format!("{name}.pcap"));
            let fifo = dir.join(format!("{name}.fifo"));
            if n > 0 {
                feeders.push(Feeder::start(&pcap, &fifo, Some(0))?);
            }
            paths.push(fifo);
        }
        (paths[0].clone(), paths[1].clone())
    } else {
        (dir.join("inside.pcap"), dir.join("outside.pcap"))
    };
    let inf = if fifo { "" } else { ",infinite_rx=1" };
    let conf = scratch.join("gw.toml");
    std::fs::write(&conf, bench_config::for_flows(flows, true)?)
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    let mbufs = (!fifo).then(|| pcap_mbufs(n_in + n_out));
    let eal = EalArgs {
        memory_mb: memory_for(mbufs.unwrap_or(0), args.memory_mb),
        prefix: prefix.to_string(),
        workers: 1,
        vdevs: vec![
            format!("net_pcap0,rx_pcap={}{inf}", rx0.display()),
            if n_out > 0 {
                format!("net_pcap1,rx_pcap={}{inf}", rx1.display())
            } else {
                "net_null1,no-rx=1".into()
            },
        ],
    };
    let mut app: Vec<String> = if baseline {
        vec!["--pair".into(), "0:1".into()]
    } else {
        vec![
            "--config".into(),
            conf.display().to_string(),
            "--socket".into(),
            scratch.join("ctl.sock").display().to_string(),
        ]
    };
    if let Some(m) = mbufs {
        app.extend(["--mbufs".into(), m.to_string()]);
    }
    app.extend(["--quiet".into(), "--duration".into(), seconds.to_string()]);
    let r = run_ctgate(bin, &eal, &app);
    for f in feeders {
        f.stop();
    }
    let r = r?;
    let conns = if baseline { 0 } else { r.conntrack_conns()? };
    let per_worker = r.per_worker_mpps();
    let reasons = r.drop_reasons();
    let line = Line::default()
        .with(
            "bench",
            if baseline {
                "gateway-baseline"
            } else {
                "gateway"
            },
        )
        .with("flows", flows)
        .with("workers", 1)
        .with("source", if fifo { "fifo" } else { "pcap" })
        .with("mpps", format!("{:.3}", per_worker.iter().sum::<f64>()))
        .with(
            "per_worker_mpps",
            per_worker
                .iter()
                .map(|m| format!("{m:.3}"))
                .collect::<Vec<_>>()
                .join(","),
        )
        .with("conns", conns)
        .with("dropped", r.dropped())
        .with("proto", format!("{:?}", args.proto).to_lowercase())
        .with("secs", seconds)
        .with("inside_packets", n_in)
        .with("outside_packets", n_out)
        .with("rx_nombuf", r.port_sum("rx_nombuf"))
        .with(
            "drops",
            if reasons.is_empty() {
                "none".into()
            } else {
                reasons.join(",")
            },
        );
    Ok(line)
}
