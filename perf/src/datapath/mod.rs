//! `ctgate-perf datapath`: the full ctgate pipeline (the real
//! [`ctgate::control::run::run_report`]: tracking, policy, SNAT, routing) in this
//! process, fed by an in-process generator whose own cost is small and measured
//! (`--source rings`, the default, described below), or by the generator process
//! `ctgate-perf gen` over two net_memif ports (`--source memif`: steady UDP flows only;
//! [`memif`] says how and what it refuses).
//!
//! # Set-up
//!
//! EAL starts in this process (`--no-huge -m MB --no-pci --lcores 0@0,1@1
//! --file-prefix dp-PID --no-telemetry`; with `--pages huge`, `--huge-unlink` instead of
//! `--no-huge`: EAL's memory from the mounted 2 MiB hugetlb pool, and then, as in a
//! deployed gateway, the tracker's buckets and record pool too). Four rte_rings of 4096 entries become two net_ring ethdevs
//! (`rte_eth_from_rings`):
//!
//! ```text
//!            gen→in  ┌────────────── ctgate ──────────────┐  out→sink
//! generator ───────► │ port 0 (inside)   port 1 (outside) │ ─────────► outside sink
//!   ▲  inside sink ◄─│                                    │◄───────── (the servers:
//!   │        in→sink └────────────────────────────────────┘ reflect→out  reflect)
//!   └ (the clients: answers go back into gen→in)
//! ```
//!
//! They are ports 0 and 1, so the embedded default configuration applies, with a static
//! `next_hop_mac` on both ports (no ARP), `max_conns` raised to twice the flows, and in
//! `--new-flows` mode the default limit (3M) and one-second timeouts (the tracker
//! reclaims expired connections when it inserts at the limit; `reclaimed` counts them).
//! `run::run_report` then runs on the main lcore (CPU 0) and launches one worker on
//! lcore 1 (CPU 1).
//!
//! The generator and both sinks are one plain thread on CPU 0 (the control lcore mostly
//! sleeps), registered as a DPDK lcore for a mempool cache, with its own mempool. Each
//! loop it builds up to 32 new packets (a per-protocol template copied into the mbuf,
//! the flow's addresses and port patched in with incremental checksums, a 48-bit TSC
//! stamp written after the L4 header: see [`traffic`]), enqueues them into `gen→in`
//! (what the ring refuses is counted as `gen_drops` and freed); drains `out→sink`
//! (records the latency, and for the replied flows turns the packet around in place,
//! restamps it and enqueues it into `reflect→out`); drains `in→sink` (records, and for
//! TCP answers as a client would). `--rate MPPS` paces the new packets on the TSC; by
//! default the generator runs as fast as the rings take packets.
//!
//! Traffic: `--flows N` concurrent flows, visited round-robin in a shuffled order
//! (steady mode; TCP flows send data segments with a fixed in-window seq, picked up
//! mid-stream), or `--new-flows` (every packet a new flow, TCP with handshake and
//! teardown through the stateless reflectors: SYN → SYN|ACK → ACK + FIN|ACK → FIN|ACK →
//! ACK); `--proto udp|tcp|icmp|mix` (`--mix udp=2,tcp=1,icmp=1`), `--size` 64..1518
//! bytes with FCS, `--reply-fraction` of the flows answered by the servers.
//!
//! Fragments: `--mtu M` (with `--proto udp`) cuts every datagram of `--size` bytes into
//! IPv4 fragments of at most M bytes of IP packet (DF clear, one identification per
//! datagram; `--size 3000 --mtu 1500`: 1,480 + 1,480 + 18 bytes of data); the gateway
//! reassembles each datagram, tracks it and sends the original fragments on, and the
//! servers answer every fragment turned around (so the answers are reassembled too).
//! Only first fragments carry the stamp (latency: from building the first fragment to
//! its arrival, the wait for the rest of its datagram included); `mpps` counts
//! fragments; the line gains `mtu=M frags_per_datagram=K datagrams_per_s=D` at its end
//! (`D`: first fragments delivered at both sinks per second of the window).
//!
//! # Output
//!
//! One line per case (`--json`: one JSON object per line):
//!
//! ```text
//! bench=datapath mode=steady events=off sync=off pages=small flows=1000 proto=udp size=64 reply_fraction=1 workers=1 rate=max offered_mpps=… sent_mpps=… mpps=… per_worker_mpps=… worker_cpu=… gen_cpu=… mpps_per_worker_cpu=… worker_busy=… cps=… conns=… created=… reclaimed=… refused_max_conns=… refused_table_full=… delivered=… gen_drops=… reflect_drops=… nombuf=… late=… foreign=… drops=… drop_<reason>=… latency_samples=… p50_us=… p99_us=… p999_us=… max_us=… secs=… warmup_secs=… xcore_ns=…
//! ```
//!
//! * `events`: `on` with `--events` (the NAT log attached as an event consumer);
//! * `sync`: `on` with `--sync` (`[sync]` toward an acknowledging peer in this process,
//!   [`sync_peer`]); the line then ends with the peer's counts over the whole run:
//!   `sync_records` (connection records), `sync_msgs`, `sync_out_of_order` and
//!   `sync_streams` (bulk streams: its resync at start, then one per overflow of ctgate's
//!   queue to it);
//! * with `--source memif` the line ends with `source=memif` and `gen_full`, the share
//!   of the generator process's TX bursts ctgate's ring did not take whole (near 1:
//!   ctgate set the rate), and the other keys mean: `gen_cpu` the generator process's CPU share over its whole run;
//!   `offered_mpps` = `sent_mpps` the packets ctgate's worker received in the window
//!   (the generator retries what a ring refuses: `gen_drops=0`), `delivered`/`mpps`
//!   those it sent; `nombuf` and the latency percentiles `-` (its frames carry no stamp);
//! * `rate`: `max` (unpaced), or the paced new-packet rate in Mpps; with `--load F` a
//!   second line per case runs paced at F × the unpaced `sent` rate and adds `load=F`;
//! * `offered_mpps`: new packets the generator built per second, `sent_mpps` those the
//!   inside RX ring took (the rest are `gen_drops`);
//! * `mpps`: packets delivered to the two sinks per second (both directions), the
//!   gateway's forwarding rate; `per_worker_mpps` that over the workers; `delivered`
//!   the count;
//! * `worker_cpu`, `gen_cpu`: the share of a CPU ctgate's worker threads (EAL's
//!   `rte-worker-N`) and the generator thread actually ran during the window (their
//!   schedstat run time over the window; up to 1 per thread), and `mpps_per_worker_cpu`
//!   = `mpps` / `worker_cpu`: on a machine shared with other work the worker gets only
//!   part of its core, and this says what it did with what it got (`-` if unknown;
//!   meaningful unpaced only: a poll loop burns its CPU whether or not packets come);
//! * `worker_busy`: the share of the workers' loop time in the window spent on turns
//!   that found packets (ctgate's `busy_secs` over `secs`): below 1 unpaced, the source
//!   (here the generator, which shares a CPU with the control lcore on a 2-core
//!   machine) rather than the worker set the rate;
//! * `cps`: connections the tracker created per second in the window (its `created`
//!   counter, read over ctgate's control socket when the window starts and ends; if
//!   that fails, a warning and `created` over the whole generation); `created`: the
//!   tracker's counter for the whole run; `conns`: its connection count at the end;
//! * `reclaimed`, `refused_max_conns`, `refused_table_full`: the tracker's counters for
//!   the whole run (warmup included): expired connections a creation at the limit
//!   removed, and creations refused at `max_conns` or for want of a record or overflow
//!   bucket (both dropped as `drop_max_conns`);
//! * `drops`, `drop_<reason>`: ctgate's own drop counters for the whole run (warmup
//!   included); `reflect_drops`: answers a ring refused; `nombuf`: mbufs the generator
//!   could not get; `foreign`: frames at a sink that were not the generator's; `late`:
//!   paced new packets skipped because the generator thread stalled (it never catches up
//!   with a burst larger than two bursts, so that its own hiccups do not become load
//!   spikes for ctgate; `offered_mpps` counts only what it built);
//! * latencies: from the stamp (written just before a packet enters a ring) to the sink
//!   taking it out (one pass through ctgate plus ring queueing), nanosecond histogram,
//!   printed in µs; samples of the measurement window only (after `--warmup`);
//! * `secs`: the measurement window; `warmup_secs`: what preceded it: `--warmup`, and
//!   in steady mode at least until every flow has sent a packet (so the table is full
//!   and `conns` = `flows` when every flow gets replies);
//! * `xcore_ns`: what moving a cache line between CPUs 0 and 1 cost during the run (the
//!   median of one sample a second, [`crate::xcore`]): the generator and ctgate's worker
//!   pass every packet between those two CPUs, and on the development VM that took ~30,
//!   ~170 or ~450 ns depending on the run, which moves the figures above (UDP 1.70–1.78
//!   M/s new connections at ~30 ns, 1.17–1.51 at the other two; perf/RESULTS.md, session
//!   28).
//!
//! ctgate stops by itself once its ports have been idle for 400 ms after the generator
//! finished (`--exit-when-idle`).
//!
//! SIGINT or SIGTERM stops the run early (ctgate's control loop sees it too): the case
//! under way still prints its line, over the part of the window that ran, with
//! `interrupted=1` appended, and ctgate-perf exits with status 1 instead of 0; no further
//! case starts. On stderr, `[datapath 1.2s] measuring` says when a case's window begins.
//!
//! Unpaced, the generator fills the rings, so the unpaced latency is queueing at
//! saturation; `--load 0.5` shows the latency at half the sustainable rate (the project
//! target is p99 < 50 µs there).
//!
//! `--loopback` connects the generator's rings to its sinks directly, without ctgate,
//! and prints `bench=datapath-generator`: the generator's own ceiling (new packets and
//! answers through the rings per second on its one core). On the 2-CPU development VM
//! it is several times the gateway's rate, so the gateway figures are ctgate's, not the
//! generator's.

mod gen;
mod latency;
mod memif;
mod sync_peer;
mod traffic;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use ctgate::config::Config;
use ctgate::control::run::{self, RunOptions};
use ctgate::dpdk::{self, Eal, EalToken, Mempool, Ring};
use ctgate::pipeline::DropReason;

use crate::gen::RepliesTo;
use crate::gen_process::{GenFigures, GenProcess, GenSpec};
use crate::gen_traffic::{CLIENT_MAC, ROUTER_MAC};
use crate::plot::Line;
use gen::{Flows, GenConfig, GenResult, Rings, WindowFlags};
use traffic::{Mix, Proto};

/// Entries per ring (4095 usable): room for the sinks to fall behind for a few
/// milliseconds (the generator thread shares its CPU) without drops.
const RING_SIZE: u32 = 4096;
/// Unpaced, the generator keeps at most this many packets in the inside RX ring (like
/// a NIC's RX descriptor ring: the queueing latency at saturation).
const FILL: u32 = 512;
/// Mbufs of the generator's pool: every ring full, plus ctgate's bursts, plus slack.
const GEN_POOL: u32 = 32_767;
const GEN_POOL_CACHE: u32 = 256;
/// After generation, the sinks drain this long; ctgate stops once its ports have been
/// idle this long (`--exit-when-idle`), or at the latest after warmup + seconds + the cap.
const DRAIN: Duration = Duration::from_millis(200);
const GATEWAY_IDLE: Duration = Duration::from_millis(400);
const GATEWAY_CAP: Duration = Duration::from_secs(600);
/// Thread names: the generator's (set here) and ctgate's workers' (set by EAL), for
/// their CPU time in /proc.
const GEN_THREAD: &str = "dp-gen";
const WORKER_THREAD: &str = "rte-worker-";
/// Largest `--flows` (the shuffled order is 4 bytes per flow; the tracker's memory grows
/// with it too).
const MAX_FLOWS: u32 = 16_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Udp,
    Tcp,
    Icmp,
    Mix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// The in-process generator over rte_rings.
    Rings,
    /// The generator process (`ctgate-perf gen` on CPU 0) over two net_memif ports.
    Memif,
}

/// `--pages`: the EAL's memory, and with it the tracker's (see the module's set-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PagesArg {
    /// `--no-huge`: 4 KiB pages for EAL; the tracker on 4 KiB pages offered to THP.
    Small,
    /// EAL on the kernel's 2 MiB hugetlb pool (mounted, with room for `--memory-mb`);
    /// the tracker's buckets and record pool on hugetlb pages too, as a deployed
    /// gateway's.
    Huge,
}

impl PagesArg {
    fn name(self) -> &'static str {
        match self {
            PagesArg::Small => "small",
            PagesArg::Huge => "huge",
        }
    }
}

impl SourceArg {
    fn name(self) -> &'static str {
        match self {
            SourceArg::Rings => "rings",
            SourceArg::Memif => "memif",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent flows, one case each (steady mode).
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    flows: Vec<u32>,
    /// Connection-rate mode: every packet is a new flow (as TRex CPS profiles).
    #[arg(long)]
    new_flows: bool,
    /// Protocol of the flows.
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    /// Weights of `--proto mix`.
    #[arg(long, default_value = "udp=2,tcp=1,icmp=1")]
    mix: String,
    /// Frame size in bytes including the 4-byte FCS (64..=1518; with --mtu, the size of
    /// the datagram's frame before it is cut, up to 65,000).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Cut each UDP datagram into IPv4 fragments of at most this many bytes of IP packet
    /// (576..=1500; --size must exceed it): the gateway reassembles, tracks and sends the
    /// fragments on, both ways.
    #[arg(long)]
    mtu: Option<usize>,
    /// Fraction of the flows the servers answer (0..=1).
    #[arg(long, default_value_t = 1.0)]
    reply_fraction: f64,
    /// Offered load of new packets in Mpps, TSC-paced (default: unpaced).
    #[arg(long)]
    rate: Option<f64>,
    /// Measure the unpaced rate, then also run paced at this fraction of it (0..1].
    #[arg(long)]
    load: Option<f64>,
    /// Seconds measured per case.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds before the measurement (not counted in rates or latencies).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Quick smoke run: 1000 flows, 0.5 s warmup, 2 s (under a minute in all).
    #[arg(long)]
    quick: bool,
    /// Print JSON objects (one per line) instead of key=value lines.
    #[arg(long)]
    json: bool,
    /// The generator's ceiling: rings connected to the sinks, no ctgate.
    #[arg(long)]
    loopback: bool,
    /// Write the latency percentile chart into this directory (datapath-latency.svg).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Memory for EAL in MB (hugepages with `--pages huge`).
    #[arg(long, default_value_t = 2048)]
    memory_mb: u32,
    /// EAL's pages: `small` (`--no-huge`) or `huge` (the hugetlb pool; the tracker's
    /// buckets and records on hugepages too, as in a deployed gateway).
    #[arg(long, value_enum, default_value_t = PagesArg::Small)]
    pages: PagesArg,
    /// EAL --file-prefix (default dp-PID).
    #[arg(long)]
    file_prefix: Option<String>,
    /// Seed of the flow order shuffle.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connection events on, with a consumer attached: the NAT log (`[logging]` syslog
    /// and IPFIX) sent to 127.0.0.1:9, where nothing listens, so the cost measured is
    /// the workers' emitting and the control lcore's encoding and sending.
    #[arg(long)]
    events: bool,
    /// State sync on: `[sync]` toward a peer on loopback (an endpoint in this process
    /// that acknowledges every message and installs nothing), so the cost measured is
    /// ctgate's real sync consumer: events, lookups, encoding, sending.
    #[arg(long)]
    sync: bool,
    /// Traffic source: the in-process generator over rings, or the generator process
    /// (`ctgate-perf gen`, CPU 0) over two net_memif ports: steady UDP flows, one
    /// --flows value per run.
    #[arg(long, value_enum, default_value_t = SourceArg::Rings)]
    source: SourceArg,
}

/// One benchmark case.
#[derive(Clone, Debug)]
struct Case {
    flows: Option<u32>,
    rate_pps: Option<f64>,
    load: Option<f64>,
}

/// Checked settings shared by every case.
struct Plan {
    mix: Mix,
    proto_name: &'static str,
    seconds: f64,
    warmup: f64,
    flows: Vec<u32>,
}

fn check(args: &Args) -> Result<Plan, String> {
    match args.mtu {
        None if !(64..=1518).contains(&args.size) => {
            return Err("--size must be 64..=1518 (bytes with FCS)".into());
        }
        None => {}
        Some(mtu) => {
            if !(576..=1500).contains(&mtu) {
                return Err("--mtu must be 576..=1500 (bytes of IP packet)".into());
            }
            if args.size > 65_000 || args.size < mtu + 18 + 1 {
                return Err(format!(
                    "--size with --mtu {mtu} must be {}..=65000: a datagram larger than one fragment",
                    mtu + 19
                ));
            }
            if args.reply_fraction != 0.0 && args.reply_fraction != 1.0 {
                return Err("--mtu answers all datagrams or none: --reply-fraction 0 or 1".into());
            }
            if args.proto != ProtoArg::Udp {
                return Err("--mtu fragments UDP datagrams: use it with --proto udp".into());
            }
        }
    }
    if !(0.0..=1.0).contains(&args.reply_fraction) {
        return Err("--reply-fraction must be a fraction in 0..=1".into());
    }
    if let Some(r) = args.rate {
        // Slower than 1000 packets/s, ctgate's idle stop (400 ms) could end the run.
        if !(r.is_finite() && (0.001..=1000.0).contains(&r)) {
            return Err("--rate must be 0.001..=1000 Mpps".into());
        }
    }
    if let Some(l) = args.load {
        if !(l.is_finite() && l > 0.0 && l <= 1.0) {
            return Err("--load must be a fraction in (0, 1]".into());
        }
        if args.rate.is_some() {
            return Err("--load and --rate exclude each other".into());
        }
        if args.loopback {
            return Err("--load measures ctgate; it does not go with --loopback".into());
        }
    }
    let (flows, seconds, warmup) = if args.quick {
        (vec![1000], 2.0, 0.5)
    } else {
        (args.flows.clone(), args.seconds, args.warmup)
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err("--seconds must be a positive number of seconds (at most 3600)".into());
    }
    if !(warmup.is_finite() && (0.0..=600.0).contains(&warmup)) {
        return Err("--warmup must be 0..=600 seconds".into());
    }
    if flows.is_empty() || flows.iter().any(|&f| f == 0 || f > MAX_FLOWS) {
        return Err(format!("--flows must be 1..={MAX_FLOWS} each"));
    }
    if args.source == SourceArg::Memif {
        memif::check(args, &flows)?;
    }
    let (mix, proto_name) = match args.proto {
        ProtoArg::Udp => (Mix::single(Proto::Udp), "udp"),
        ProtoArg::Tcp => (Mix::single(Proto::Tcp), "tcp"),
        ProtoArg::Icmp => (Mix::single(Proto::Icmp), "icmp"),
        ProtoArg::Mix => (Mix::parse(&args.mix)?, "mix"),
    };
    Ok(Plan {
        mix,
        proto_name,
        seconds,
        warmup,
        flows,
    })
}

/// EAL's arguments before the memif ports: `--no-huge` on small pages; on huge ones
/// `--huge-unlink`, so that no hugepage file outlives the run (the pool's pages return
/// to it at exit).
fn eal_base_args(pages: PagesArg, memory_mb: u32, prefix: &str) -> Vec<String> {
    let paging = match pages {
        PagesArg::Small => "--no-huge",
        PagesArg::Huge => "--huge-unlink",
    };
    [
        "ctgate-perf",
        paging,
        "-m",
        &memory_mb.to_string(),
        "--no-pci",
        "--lcores",
        "0@0,1@1",
        "--file-prefix",
        prefix,
        "--no-telemetry",
        "--log-level",
        "lib.eal:error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn run(args: &Args) -> Result<(), String> {
    let plan = check(args)?;
    // Besides ctgate's own handler (which stops its run): remembers that the run was cut.
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let prefix = args
        .file_prefix
        .clone()
        .unwrap_or_else(|| format!("dp-{}", std::process::id()));
    let mut eal_args = eal_base_args(args.pages, args.memory_mb, &prefix);
    // --source memif: the generator process's sockets, attached as ports 0 and 1.
    let memif_dir = (args.source == SourceArg::Memif)
        .then(|| std::env::temp_dir().join(format!("ctgate-perf-dp-{}-memif", std::process::id())));
    if let Some(dir) = &memif_dir {
        // The memif PMD checks at probe that the socket's directory exists.
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for p in 0..2 {
            eal_args.push("--vdev".into());
            eal_args.push(crate::gen::client_devargs(dir, p));
        }
    }
    let run_dir = std::path::Path::new("/var/run/dpdk").join(&prefix);
    let eal = match Eal::init(&eal_args) {
        Ok(eal) => eal,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e.to_string());
        }
    };
    let memif = memif_dir.as_deref().map(|dir| (dir, prefix.as_str()));
    let result = run_cases(&eal, args, &plan, &interrupted, memif);
    let _ = eal.cleanup();
    let _ = std::fs::remove_dir_all(&run_dir);
    if let Some(dir) = &memif_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The error of a run cut by SIGINT/SIGTERM.
const INTERRUPTED: &str = "interrupted (SIGINT/SIGTERM) during the last case: its line is \
     marked interrupted=1 and may cover only part of its window";

fn run_cases(
    eal: &Eal,
    args: &Args,
    plan: &Plan,
    interrupted: &AtomicBool,
    memif: Option<(&std::path::Path, &str)>,
) -> Result<(), String> {
    let pool = Mempool::new(
        eal,
        "dp_gen_pool",
        GEN_POOL,
        GEN_POOL_CACHE,
        dpdk::DEFAULT_MBUF_BUF_SIZE,
        -1,
    )
    .map_err(|e| e.to_string())?;
    let ring = |name: &str| Ring::new(eal, name, RING_SIZE, -1).map_err(|e| e.to_string());
    let rings = Rings {
        gen_in: ring("dp_gen_in")?,
        in_sink: ring("dp_in_sink")?,
        reflect_out: ring("dp_reflect_out")?,
        out_sink: ring("dp_out_sink")?,
    };
    let cases: Vec<Case> = if args.new_flows {
        vec![Case {
            flows: None,
            rate_pps: args.rate.map(|r| r * 1e6),
            load: None,
        }]
    } else {
        plan.flows
            .iter()
            .map(|&f| Case {
                flows: Some(f),
                rate_pps: args.rate.map(|r| r * 1e6),
                load: None,
            })
            .collect()
    };
    let total = cases.len() * if args.load.is_some() { 2 } else { 1 };
    let started = Instant::now();
    let mut n = 0;
    let mut series = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        // With --load, the paced run is added once the unpaced rate is known.
        let mut runs = vec![case.clone()];
        let mut i = 0;
        while i < runs.len() {
            let c = runs[i].clone();
            n += 1;
            eprintln!(
                "[datapath {n}/{total} {:.1}s] {} flows={} rate={}",
                started.elapsed().as_secs_f64(),
                if args.loopback { "loopback" } else { "gateway" },
                c.flows.map_or("new".to_string(), |f| f.to_string()),
                c.rate_pps
                    .map_or("max".to_string(), |r| format!("{:.3}", r / 1e6)),
            );
            if interrupted.load(Ordering::SeqCst) {
                return Err("interrupted (SIGINT/SIGTERM) before this case began".into());
            }
            let ctx = CaseCtx {
                started,
                interrupted,
                memif,
            };
            let out = match run_case(eal, args, plan, pool, rings, &c, k * 2 + i, &ctx) {
                Ok(out) => out,
                Err(e) if interrupted.load(Ordering::SeqCst) => {
                    return Err(format!("interrupted (SIGINT/SIGTERM): {e}"))
                }
                Err(e) => return Err(e),
            };
            if interrupted.load(Ordering::SeqCst) {
                let line = out.line.with("interrupted", 1);
                println!("{}", line.render(args.json));
                return Err(INTERRUPTED.into());
            }
            println!("{}", out.line.render(args.json));
            if let Some(load) = args.load {
                if c.load.is_none() && out.sent_pps > 0.0 {
                    runs.push(Case {
                        flows: c.flows,
                        rate_pps: Some(out.sent_pps * load),
                        load: Some(load),
                    });
                }
            }
            series.push(crate::plot::Series {
                name: out.name,
                points: out.curve,
            });
            i += 1;
        }
    }
    if let Some(dir) = &args.plot {
        let chart = latency_chart(series);
        let path = dir.join("datapath-latency.svg");
        match crate::plot::write_svg(&path, &chart) {
            Ok(()) => eprintln!("datapath: wrote {}", path.display()),
            Err(e) => eprintln!("datapath: warning: no plot: {e}"),
        }
    }
    Ok(())
}

/// The `--plot` chart `datapath-latency.svg`: one series of (percentile, µs) per case, the
/// percentiles as nines and the latency on a log axis (queueing makes the tail orders of
/// magnitude above the median).
fn latency_chart(series: Vec<crate::plot::Series>) -> crate::plot::Chart {
    crate::plot::Chart {
        title: "ctgate datapath latency".into(),
        x_label: "percentile".into(),
        y_label: "latency (µs)".into(),
        x_scale: crate::plot::XScale::Nines,
        y_scale: crate::plot::YScale::Log10,
        series,
    }
}

/// What every case gets from the run: its start (for progress notes) and the flag a
/// signal sets.
struct CaseCtx<'a> {
    started: Instant,
    interrupted: &'a AtomicBool,
    /// `--source memif`: the generator's socket directory and this run's EAL prefix.
    memif: Option<(&'a std::path::Path, &'a str)>,
}

/// What one case produced.
struct CaseOut {
    line: Line,
    /// New packets per second the inside ring took.
    sent_pps: f64,
    name: String,
    curve: Vec<(f64, f64)>,
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    eal: &Eal,
    args: &Args,
    plan: &Plan,
    pool: Mempool,
    rings: Rings,
    case: &Case,
    index: usize,
    ctx: &CaseCtx,
) -> Result<CaseOut, String> {
    let tsc_hz = dpdk::Tsc::hz(eal);
    let flows = match case.flows {
        Some(f) => {
            let mut order: Vec<u32> = (0..f).collect();
            crate::flow_frames::Rng::new(args.seed).shuffle(&mut order);
            Flows::Steady(Arc::new(order))
        }
        None => Flows::New,
    };
    let warmup = Duration::from_secs_f64(plan.warmup);
    let seconds = Duration::from_secs_f64(plan.seconds);
    let mut gcfg = GenConfig {
        flows,
        mix: plan.mix.clone(),
        size: args.size,
        mtu: args.mtu,
        reply_fraction: args.reply_fraction,
        rate_pps: case.rate_pps,
        ring_room: FILL,
        in_mac: [0; 6],
        out_mac: [0; 6],
        client_mac: CLIENT_MAC,
        tsc_hz,
        warmup,
        seconds,
        drain: DRAIN,
        ready_timeout: Some(Duration::from_secs(60)),
    };
    let token = EalToken::new(eal);
    let stop = AtomicBool::new(false);
    let window = WindowFlags::default();

    if args.loopback {
        gcfg.ready_timeout = None;
        gcfg.in_mac = CLIENT_MAC;
        gcfg.out_mac = ROUTER_MAC;
        let loop_rings = Rings {
            gen_in: rings.gen_in,
            out_sink: rings.gen_in,
            reflect_out: rings.reflect_out,
            in_sink: rings.reflect_out,
        };
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                pin_cpu0();
                // No ctgate to stop it: the signal stops the generator.
                gen::run(&gcfg, loop_rings, pool, token, ctx.interrupted, &window)
            })
            .join()
            .unwrap_or_else(|_| Err("datapath: the generator thread panicked".into()))
        });
        drain_rings(&rings);
        let r = r?;
        return Ok(loopback_out(args, plan, case, &r));
    }

    if ctx.memif.is_some() {
        // The memif clients EAL probed at start.
        let ids = dpdk::available_ports(eal);
        if ids != [0, 1] {
            return Err(format!(
                "datapath: expected the two memif ports 0 and 1, EAL has {ids:?}"
            ));
        }
    } else {
        // Ports 0 (inside) and 1 (outside) over the rings; new names per case (a closed
        // ring port's device stays registered under its name).
        let in_port = dpdk::eth_from_rings(
            eal,
            &format!("dpin{index}"),
            &[rings.gen_in],
            &[rings.in_sink],
            0,
        )
        .map_err(|e| e.to_string())?;
        let out_port = dpdk::eth_from_rings(
            eal,
            &format!("dpout{index}"),
            &[rings.reflect_out],
            &[rings.out_sink],
            0,
        )
        .map_err(|e| e.to_string())?;
        if (in_port, out_port) != (0, 1) {
            return Err(format!(
                "datapath: the ring ports are {in_port} and {out_port}, not 0 and 1 (another port exists)"
            ));
        }
    }
    gcfg.in_mac = dpdk::port_mac(eal, 0).map_err(|e| e.to_string())?;
    gcfg.out_mac = dpdk::port_mac(eal, 1).map_err(|e| e.to_string())?;
    let mut text = config_text(case.flows, args.new_flows)?;
    if args.events {
        text.push_str(NAT_LOG_CONFIG);
    }
    let peer = if args.sync {
        let peer = sync_peer::SyncPeer::bind()?;
        let (sync, local) = peer.config()?;
        text.push_str(&sync);
        Some((peer, local))
    } else {
        None
    };
    let config =
        Config::parse(&text, "<ctgate-perf datapath config>").map_err(|e| e.to_string())?;
    let socket = std::env::temp_dir().join(format!(
        "ctgate-perf-dp-{}-{index}.sock",
        std::process::id()
    ));
    let app = RunOptions {
        socket: socket.clone(),
        duration: Some(warmup + seconds + GATEWAY_CAP),
        exit_when_idle: Some(if ctx.memif.is_some() {
            memif::IDLE
        } else {
            GATEWAY_IDLE
        }),
        quiet: true,
        ..RunOptions::default()
    };

    // --source memif: the generator process serves its sockets before the gateway's
    // ports start (a memif client connects when its port starts).
    let mut gen_proc = match ctx.memif {
        Some((dir, prefix)) => {
            let spec = GenSpec {
                flows: case.flows.unwrap_or(1),
                replies_to: RepliesTo::Snat,
                // The one worker's TX queue per port.
                rx_queues: 1,
                seconds: plan.warmup + plan.seconds + memif::MARGIN,
            };
            let interrupted = || {
                if ctx.interrupted.load(Ordering::SeqCst) {
                    Err("interrupted".to_string())
                } else {
                    Ok(())
                }
            };
            Some(GenProcess::start(
                &spec,
                dir,
                format!("{prefix}-gen"),
                &interrupted,
            )?)
        }
        None => None,
    };

    let mut synced = None;
    let stop_peer = AtomicBool::new(false);
    let (gw, fed, watched, xcore) = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name(GEN_THREAD.into())
            .spawn_scoped(s, || {
                pin_cpu0();
                match ctx.memif {
                    None => gen::run(&gcfg, rings, pool, token, &stop, &window)
                        .map(|g| Fed::Rings(Box::new(g))),
                    Some(_) => memif::time_window(
                        &socket,
                        case.flows.unwrap_or(1),
                        warmup,
                        seconds,
                        &window,
                        &stop,
                    )
                    .map(Fed::Memif),
                }
            });
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                let e = format!("datapath: cannot start the generator thread: {e}");
                let watched = Watched::failed(e.clone());
                return (Err(e.clone()), Err(e), watched, None);
            }
        };
        let w = s.spawn(|| {
            pin_cpu0();
            watch_window(&socket, &window, ctx.started)
        });
        let p = peer.map(|(peer, local)| {
            let stop_peer = &stop_peer;
            s.spawn(move || {
                pin_cpu0();
                peer.run(local, stop_peer)
            })
        });
        let xcore = crate::xcore::Sampler::start(Duration::from_secs(1));
        let gw = run::run_report(eal, &app, Some(&config), false);
        let xcore = xcore.finish();
        // Whatever happened, the generator stops now at the latest.
        stop.store(true, Ordering::SeqCst);
        stop_peer.store(true, Ordering::SeqCst);
        synced = p.and_then(|p| p.join().ok());
        let gen = h
            .join()
            .unwrap_or_else(|_| Err("datapath: the generator thread panicked".into()));
        let watched = w
            .join()
            .unwrap_or_else(|_| Watched::failed("the watcher thread panicked".into()));
        (gw, gen, watched, xcore)
    });
    drain_rings(&rings);
    let _ = std::fs::remove_file(&socket);
    // The gateway detached: the generator process stops and prints its figures. After a
    // signal it may have none: the gateway's memif clients go at once, and the generator,
    // still polling them, can die with them (SIGSEGV in net_memif, seen in
    // `datapath_smoke`); the line is ctgate's counters either way, the generator's keys `-`.
    let gen_figs = match gen_proc.take().map(GenProcess::finish).transpose() {
        Err(e) if ctx.interrupted.load(Ordering::SeqCst) => {
            let why = e.lines().next().unwrap_or_default().to_string();
            eprintln!("ctgate-perf: interrupted: no figures from the generator process ({why})");
            Ok(Some(GenFigures::unknown()))
        }
        r => r,
    };
    let gw = gw?;
    let gen_figs = gen_figs?;
    let mut watched = watched;
    let gen = match fed? {
        Fed::Rings(g) => *g,
        Fed::Memif(warmup_secs) => {
            // The generator never drops (it retries what a ring refuses) and its frames
            // carry no timestamp: the figures are ctgate's worker counters in the window.
            let (rx, tx, secs) = match (&watched.ports, watched.ports_at_start) {
                (Ok(p), _) => *p,
                // A signal stopped the gateway in the window (its control socket was gone
                // for the end's read): the window ends with the run, at its final counters.
                (Err(_), Some((rx0, tx0, at))) if ctx.interrupted.load(Ordering::SeqCst) => {
                    let rx: u64 = gw.workers.iter().map(|w| w.rx).sum();
                    let tx: u64 = gw.workers.iter().map(|w| w.tx).sum();
                    (
                        rx.saturating_sub(rx0),
                        tx.saturating_sub(tx0),
                        at.elapsed().as_secs_f64(),
                    )
                }
                // Stopped before the window's first read: nothing measured.
                (Err(_), None) if ctx.interrupted.load(Ordering::SeqCst) => (0, 0, 0.0),
                (Err(e), _) => return Err(e.clone()),
            };
            watched.gen_cpu = gen_figs.and_then(|g| g.cpu);
            GenResult {
                generated: rx,
                gen_drops: 0,
                reflect_drops: 0,
                nombuf: 0,
                late: 0,
                delivered_in: tx,
                delivered_out: 0,
                answers: 0,
                foreign: 0,
                datagrams: 0,
                latency: latency::Latency::new(tsc_hz),
                window_secs: secs,
                warmup_secs,
                active_secs: warmup_secs + secs,
            }
        }
    };
    let workers = gw.workers.len().max(1);
    let (n_conns, ct) = gw.conntrack.unwrap_or_default();
    let window = gen.window_secs.max(1e-9);
    let delivered = gen.delivered_in + gen.delivered_out;
    let mpps = delivered as f64 / window / 1e6;
    let sent = gen.generated.saturating_sub(gen.gen_drops);
    let s = gen.latency.summary();
    // Connections per second: the tracker's `created` counter read over the control
    // socket at the window's start and end; else over the whole generation.
    let cps = match watched.created {
        Ok((n, secs)) => n as f64 / secs.max(1e-9),
        Err(e) => {
            eprintln!("datapath: warning: cps over the whole run ({e})");
            ct.created as f64 / gen.active_secs.max(1e-9)
        }
    };
    let mut l = Line::default();
    l.push("bench", "datapath");
    l.push("mode", if args.new_flows { "cps" } else { "steady" });
    l.push("events", if args.events { "on" } else { "off" });
    l.push("sync", if args.sync { "on" } else { "off" });
    l.push("pages", args.pages.name());
    l.push("flows", case.flows.map_or("new".into(), |f| f.to_string()));
    l.push("proto", plan.proto_name);
    l.push("size", args.size);
    l.push("reply_fraction", args.reply_fraction);
    l.push("workers", workers);
    l.push(
        "rate",
        case.rate_pps
            .map_or("max".into(), |r| format!("{:.4}", r / 1e6)),
    );
    if let Some(load) = case.load {
        l.push("load", load);
    }
    l.push("offered_mpps", f3(gen.generated as f64 / window / 1e6));
    l.push("sent_mpps", f3(sent as f64 / window / 1e6));
    l.push("mpps", f3(mpps));
    l.push("per_worker_mpps", f3(mpps / workers as f64));
    // The worker shares its CPU with whatever else runs there: its CPU time in the
    // window says how much of a core the figures above were made with.
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    l.push("worker_cpu", opt(watched.worker_cpu));
    l.push("gen_cpu", opt(watched.gen_cpu));
    l.push(
        "mpps_per_worker_cpu",
        watched
            .worker_cpu
            .filter(|&c| c > 0.0)
            .map_or("-".to_string(), |c| f3(mpps / c)),
    );
    // A polling worker is always on its CPU; how much of that found packets says whether
    // it or the source was the limit.
    l.push("worker_busy", opt(watched.worker_busy));
    l.push("cps", format!("{cps:.0}"));
    l.push("conns", n_conns);
    l.push("created", ct.created);
    l.push("reclaimed", ct.reclaimed);
    l.push("refused_max_conns", ct.refused_max_conns);
    l.push("refused_table_full", ct.refused_table_full);
    l.push("delivered", delivered);
    l.push("gen_drops", gen.gen_drops);
    l.push("reflect_drops", gen.reflect_drops);
    l.push("nombuf", gen.nombuf);
    l.push("late", gen.late);
    l.push("foreign", gen.foreign);
    l.push("drops", gw.drops.total());
    for r in DropReason::ALL {
        l.push(&format!("drop_{}", r.name()), gw.drops.get(r));
    }
    push_latency(&mut l, &s);
    l.push("secs", f3(gen.window_secs));
    l.push("warmup_secs", f3(gen.warmup_secs));
    l.push("xcore_ns", crate::xcore::printed(xcore));
    push_fragments(&mut l, args, &gen, window);
    if let Some(c) = synced {
        // The peer's view of the whole run: records and messages it received, data
        // messages it saw ahead of a gap (lost or reordered on loopback), and complete
        // bulk streams (its own resync at start, then one per queue overflow in ctgate).
        l.push("sync_records", c.conns_received);
        l.push("sync_msgs", c.msgs_received);
        l.push("sync_out_of_order", c.out_of_order);
        l.push("sync_streams", c.bulk_received);
    }
    if let Some(g) = gen_figs {
        l.push("source", args.source.name());
        // Not measured with this source: mbufs the generator could not get, latency.
        for k in ["nombuf", "p50_us", "p99_us", "p999_us", "max_us"] {
            l.set(k, "-");
        }
        l.push("gen_full", opt(g.full));
    }
    let name = format!(
        "{} flows={}{}",
        if args.new_flows { "cps" } else { "steady" },
        case.flows.map_or("new".into(), |f| f.to_string()),
        case.load.map_or(String::new(), |x| format!(" load={x}")),
    );
    Ok(CaseOut {
        line: l,
        sent_pps: sent as f64 / window,
        name,
        curve: gen.latency.curve(),
    })
}

/// Waits for the generator's window and reads ctgate's `created` counter over the
/// control socket at its start and end: (connections created, seconds between reads).
/// What the watcher read at the window's start and end.
struct Watched {
    /// (connections created, seconds between the reads), or why not.
    created: Result<(u64, f64), String>,
    /// Packets ctgate's workers received and sent (both ports) between the reads, and
    /// the seconds between them.
    ports: Result<(u64, u64, f64), String>,
    /// The workers' counters at the window's start (rx, tx), and when they were read.
    ports_at_start: Option<(u64, u64, Instant)>,
    /// Share of their loops' time in the window that the workers spent on turns that
    /// found packets (the `stats` reply's `busy_secs` over `secs`), if read.
    worker_busy: Option<f64>,
    /// Share of a CPU that ctgate's worker threads and the generator thread ran in the
    /// window (from /proc/self/task/*/schedstat), if readable.
    worker_cpu: Option<f64>,
    gen_cpu: Option<f64>,
}

impl Watched {
    fn failed(e: String) -> Watched {
        Watched {
            created: Err(e.clone()),
            ports: Err(e),
            ports_at_start: None,
            worker_busy: None,
            worker_cpu: None,
            gen_cpu: None,
        }
    }
}

/// What the generator thread returns: the in-process generator's counts, or with
/// `--source memif` the warm-up [`memif::time_window`] waited.
enum Fed {
    Rings(Box<GenResult>),
    Memif(f64),
}

/// Nanoseconds on a CPU of this process's threads whose name starts with `prefix`
/// (the first field of /proc/self/task/TID/schedstat), or `None` if unreadable.
fn thread_cpu_ns(prefix: &str) -> Option<u64> {
    let mut sum = None;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
        let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
        sum = Some(sum.unwrap_or(0) + ns);
    }
    sum
}

/// Waits for the generator's window and reads, at its start and end, ctgate's `created`
/// counter over the control socket and the CPU time of the worker and generator threads.
fn watch_window(socket: &std::path::Path, window: &WindowFlags, started: Instant) -> Watched {
    let wait = |flag: &AtomicBool| {
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    let cpu = || {
        (
            Instant::now(),
            thread_cpu_ns(WORKER_THREAD),
            thread_cpu_ns(GEN_THREAD),
        )
    };
    wait(&window.started);
    let (t0, w0, g0) = cpu();
    let a = read_stats(socket);
    eprintln!(
        "[datapath {:.1}s] measuring",
        started.elapsed().as_secs_f64()
    );
    wait(&window.ended);
    let (t1, w1, g1) = cpu();
    let b = read_stats(socket);
    let secs = t1.duration_since(t0).as_secs_f64().max(1e-9);
    let share = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / 1e9 / secs);
    let (a, b) = (a.as_ref(), b.as_ref());
    let between = |a: &Stats, b: &Stats| b.at.duration_since(a.at).as_secs_f64();
    Watched {
        created: a.map_err(Clone::clone).and_then(|a| {
            let b = b.map_err(Clone::clone)?;
            match (a.created, b.created) {
                (Some(x), Some(y)) => Ok((y.saturating_sub(x), between(a, b))),
                _ => Err("no conntrack created= in the stats reply".to_string()),
            }
        }),
        ports: a.map_err(Clone::clone).and_then(|a| {
            let b = b.map_err(Clone::clone)?;
            Ok((
                b.rx.saturating_sub(a.rx),
                b.tx.saturating_sub(a.tx),
                between(a, b),
            ))
        }),
        ports_at_start: a.ok().map(|a| (a.rx, a.tx, a.at)),
        worker_busy: a
            .ok()
            .zip(b.ok())
            .and_then(|(a, b)| crate::runner::busy_share(a.loops, b.loops)),
        worker_cpu: share(w0, w1),
        gen_cpu: share(g0, g1),
    }
}

/// What a `stats` request over the control socket read.
struct Stats {
    /// The tracker's `created` counter, if the reply had one.
    created: Option<u64>,
    /// Packets all workers received and sent (on every port).
    rx: u64,
    tx: u64,
    /// Seconds the workers' loops ran and, of those, spent on turns that found packets
    /// ([`crate::runner::worker_seconds`]).
    loops: (f64, f64),
    /// When the reply came.
    at: Instant,
}

/// ctgate's counters over the control socket ([`Stats`]).
fn read_stats(socket: &std::path::Path) -> Result<Stats, String> {
    use ctgate::control::counter_lines::field_u64;
    let text = crate::runner::read_stats_text(socket)?;
    let at = Instant::now();
    let mut s = Stats {
        created: text
            .lines()
            .filter(|l| l.starts_with("conntrack "))
            .find_map(|l| field_u64(l, "created")),
        rx: 0,
        tx: 0,
        loops: crate::runner::worker_seconds(&text),
        at,
    };
    for l in text.lines().filter(|l| l.starts_with("worker=")) {
        s.rx += field_u64(l, "rx").unwrap_or(0);
        s.tx += field_u64(l, "tx").unwrap_or(0);
    }
    Ok(s)
}

/// With `--mtu`, appended keys: the MTU, fragments per datagram, and the fragmented
/// datagrams delivered per second (first fragments at both sinks).
fn push_fragments(l: &mut Line, args: &Args, gen: &GenResult, window: f64) {
    if let Some(mtu) = args.mtu {
        let data = args.size - 4 - 14 - 20;
        let per = data.div_ceil(traffic::fragment_data(mtu));
        l.push("mtu", mtu);
        l.push("frags_per_datagram", per);
        l.push(
            "datagrams_per_s",
            format!("{:.0}", gen.datagrams as f64 / window),
        );
    }
}

fn loopback_out(args: &Args, plan: &Plan, case: &Case, r: &GenResult) -> CaseOut {
    let window = r.window_secs.max(1e-9);
    let delivered = r.delivered_in + r.delivered_out;
    let s = r.latency.summary();
    let mut l = Line::default();
    l.push("bench", "datapath-generator");
    l.push("mode", if args.new_flows { "cps" } else { "steady" });
    l.push("flows", case.flows.map_or("new".into(), |f| f.to_string()));
    l.push("proto", plan.proto_name);
    l.push("size", args.size);
    l.push("reply_fraction", args.reply_fraction);
    l.push(
        "rate",
        case.rate_pps
            .map_or("max".into(), |r| format!("{:.4}", r / 1e6)),
    );
    l.push("offered_mpps", f3(r.generated as f64 / window / 1e6));
    l.push("mpps", f3(delivered as f64 / window / 1e6));
    l.push("delivered", delivered);
    l.push("answers", r.answers);
    l.push("gen_drops", r.gen_drops);
    l.push("reflect_drops", r.reflect_drops);
    l.push("nombuf", r.nombuf);
    l.push("late", r.late);
    l.push("foreign", r.foreign);
    push_latency(&mut l, &s);
    l.push("secs", f3(r.window_secs));
    push_fragments(&mut l, args, r, window);
    CaseOut {
        line: l,
        sent_pps: 0.0,
        name: "generator".into(),
        curve: r.latency.curve(),
    }
}

fn push_latency(l: &mut Line, s: &latency::Summary) {
    let us = |ns: u64| format!("{:.2}", ns as f64 / 1000.0);
    l.push("latency_samples", s.count);
    l.push("p50_us", us(s.p50));
    l.push("p99_us", us(s.p99));
    l.push("p999_us", us(s.p999));
    l.push("max_us", us(s.max));
}

fn f3(x: f64) -> String {
    format!("{x:.3}")
}

fn pin_cpu0() {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
}

/// Frees whatever is left in the rings (between cases, once nothing polls them).
fn drain_rings(r: &Rings) {
    for ring in [r.gen_in, r.in_sink, r.reflect_out, r.out_sink] {
        ring.drain();
    }
}

/// Connection-rate mode: every timeout one second.
const ONE_SECOND_TIMEOUTS: [(&str, u32); 11] = [
    ("tcp_syn_sent", 1),
    ("tcp_syn_recv", 1),
    ("tcp_established", 1),
    ("tcp_fin_wait", 1),
    ("tcp_time_wait", 1),
    ("tcp_close", 1),
    ("udp_first", 1),
    ("udp_single", 1),
    ("udp_multiple", 1),
    ("icmp_first", 1),
    ("icmp_reply", 1),
];

/// `--events`: the NAT log to a port on loopback where nothing listens.
const NAT_LOG_CONFIG: &str = "\n[logging]\nsyslog = \"127.0.0.1:9\"\nipfix = \"127.0.0.1:9\"\n";

/// The benchmark config ([`crate::bench_config::bench_config`]: static next hops, SNAT) with
/// room for the flows, and in connection-rate mode short timeouts and a faster sweep.
///
/// Connection-rate mode keeps the default limit ([`ctgate::conntrack::DEFAULT_MAX_CONNS`],
/// 3M, as Open vSwitch's): with one-second timeouts and a sweep pass a second the table
/// holds up to two seconds of connections (the live ones and the expired ones the pass
/// has not reached), 3M at 1.5M/s. It was 2M until session 17: UDP at 1.3M/s then ran at
/// its limit (`reclaimed` 0.2–0.9M a run), each creation past the limit removing an
/// expired connection itself, which measured the limit's path (about 15% dearer a
/// connection, perf/RESULTS.md session 17), not the steady state.
fn config_text(flows: Option<u32>, new_flows: bool) -> Result<String, String> {
    let max = match flows {
        Some(f) => (2 * u64::from(f)).max(65_536),
        None => u64::from(ctgate::conntrack::DEFAULT_MAX_CONNS),
    };
    let base = crate::bench_config::bench_config(max, true)?;
    if !new_flows {
        return Ok(base);
    }
    let mut out = String::new();
    let mut seen = false;
    for l in base.lines() {
        if l.trim().starts_with("sweep_interval_ms") {
            out.push_str("sweep_interval_ms = 1000\n");
            seen = true;
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !seen {
        return Err("the embedded default config changed shape: update datapath/mod.rs".into());
    }
    crate::bench_config::with_timeouts(&out, &ONE_SECOND_TIMEOUTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_with_next_hops_and_room() {
        for (flows, new) in [(Some(1000), false), (Some(5_000_000), false), (None, true)] {
            let text = config_text(flows, new).unwrap();
            let c = Config::parse(&text, "test").unwrap();
            assert!(u64::from(c.datapath.max_conns) >= 2 * u64::from(flows.unwrap_or(1)));
            assert_eq!(c.port(0).unwrap().next_hop_mac, Some(CLIENT_MAC));
            assert_eq!(c.port(1).unwrap().next_hop_mac, Some(ROUTER_MAC));
            // Connection-rate mode: every timeout one second, a pass of the sweep a second.
            assert_eq!(c.timeouts.len(), if new { 11 } else { 0 }, "{text}");
            assert!(c.timeouts.iter().all(|&(_, secs)| secs == 1), "{text}");
            if new {
                assert_eq!(c.datapath.sweep_interval_ms, 1000, "{text}");
                // The default limit: two seconds of connections at 1.5M/s.
                assert_eq!(c.datapath.max_conns, ctgate::conntrack::DEFAULT_MAX_CONNS);
            }
        }
    }

    #[test]
    fn huge_pages_leave_no_huge_off_and_unlink_their_files() {
        let small = eal_base_args(PagesArg::Small, 2048, "p");
        let huge = eal_base_args(PagesArg::Huge, 2048, "p");
        assert!(small.iter().any(|a| a == "--no-huge"));
        assert!(!small.iter().any(|a| a == "--huge-unlink"));
        assert!(!huge.iter().any(|a| a == "--no-huge"));
        assert!(huge.iter().any(|a| a == "--huge-unlink"));
        assert_eq!(
            huge.iter().position(|a| a == "-m").map(|i| &huge[i + 1]),
            Some(&"2048".to_string())
        );
    }

    #[test]
    fn the_latency_chart_puts_microseconds_on_a_log_axis() {
        // 2 µs for most packets, a queueing tail to 5 ms: three and a half decades.
        let mut l = latency::Latency::new(1_000_000_000);
        for (n, us) in [(98_900, 2), (1_000, 50), (80, 800), (20, 5_000)] {
            for _ in 0..n {
                l.record_ns(us * 1000);
            }
        }
        let curve = l.curve();
        let chart = latency_chart(vec![crate::plot::Series {
            name: "steady flows=1000".into(),
            points: curve.clone(),
        }]);
        assert_eq!(chart.x_scale, crate::plot::XScale::Nines);
        assert_eq!(chart.y_scale, crate::plot::YScale::Log10);
        assert!(curve[0].1 < 2.1 && curve[4].1 > 4_000.0, "{curve:?}");
        assert_eq!(crate::plot::check(&chart), Ok(()));
    }

    #[test]
    fn json_lines_keep_numbers_as_numbers() {
        let mut l = Line::default();
        l.push("bench", "datapath");
        l.push("mpps", "1.250");
        l.push("flows", "new");
        let v: serde_json::Value = serde_json::from_str(&l.render(true)).unwrap();
        assert_eq!(v["mpps"], 1.25);
        assert!(l
            .render(true)
            .starts_with("{\"bench\":\"datapath\",\"mpps\":1.250,"));
        assert_eq!(v["flows"], "new");
        assert_eq!(l.render(false), "bench=datapath mpps=1.250 flows=new");
    }
}
