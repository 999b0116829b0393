//! `ctgate-perf gen`: the external traffic generator, a DPDK process of its own (its own
//! EAL, `--file-prefix`, pinned to one CPU with `-l`) serving two `net_memif` ports
//! (`role=server`, sockets `DIR/memif0.sock` and `DIR/memif1.sock`, not abstract) to a
//! device under test that attaches them as clients (ctgate, or OVS through
//! `dpdk-devargs`; see [`client_devargs`]).
//!
//! # Traffic
//!
//! The frames of `compare-ovs` ([`frames`]): for `--flows N`, one 64-byte UDP packet
//! per flow sent on port 0 (client → server, towards the DUT's inside port) and one reply
//! per flow on port 1 (server → the SNAT pool address, or with `--replies-to client` to
//! the client's own address, for the `ct` case), flows shuffled, both directions in the
//! same order, round after round. Each frame carries a stamp in its UDP payload ([`STAMP`]:
//! magic, direction, flow index; checksums filled), which NAT leaves alone.
//!
//! The main loop (one thread, the main lcore) alternates the ports: fill a burst of 32
//! from the prebuilt frames (mbufs from its own pool, 60 bytes copied), send it (what the
//! ring refuses is retried, never dropped: `sent` counts what a port accepted), and
//! receive a burst, checking each frame: a forwarded packet must come back on port 1
//! with direction 0, a forwarded reply on port 0 with direction 1, with the magic and a
//! flow index below N (`bad` counts the others). Unpaced it sends as fast as the DUT
//! takes packets; `--rate MPPS` paces both ports together.
//!
//! # Output
//!
//! On `--seconds` elapsed, SIGTERM or SIGINT it stops sending, drains what is still in
//! flight (up to 200 ms, until received = sent), and prints one line (`--json`: a JSON
//! object):
//!
//! ```text
//! bench=gen flows=1000 sent=… received=… bad=0 sent0=… sent1=… received0=… received1=… sent_mpps=… mpps=… cpu=0.99 secs=… full=0.97
//! ```
//!
//! `mpps` is received packets per second, `sent_mpps` sent ones, both over `secs`, the
//! time from the first packet a port accepted (the DUT attached) to the end of sending;
//! `cpu` is the share of one CPU the process ran in that time (from
//! `/proc/self/task/*/schedstat`): below 1 when other processes took its CPU. The
//! generator polls, so `cpu` is near 1 whether it or the device under test sets the
//! rate; `full` tells them apart: the share of TX bursts the device's ring did not take
//! in full (near 1: the device sets the rate; near 0: the generator does).
//!
//! # Loopback
//!
//! `gen --loopback` measures the generator's own ceiling: it starts a trivial forwarder,
//! `ctgate --pair 0:1` (plain L2 forwarding, no tracking) on the two memif client ports,
//! the whole forwarder process pinned to a CPU other than the generator's (chosen before
//! the generator's EAL pins this process: a child inherits its parent's affinity), runs
//! the generator in-process, and stops the forwarder by PID before closing the ports.
//! With `full` near 0 the figure is the generator's ceiling; near 1, the forwarder's.
//!
//! # Memif parameters
//!
//! Both sides use 128-byte packet buffers ([`MEMIF_BUFFER`]) and the clients 2048-slot
//! rings ([`MEMIF_LOG2_RING`]); the generator's mbufs hold exactly one buffer.
//!
//! Invariants: every packet sent is counted once in `sent`; nothing is dropped by the
//! generator itself; the process never outlives its parent when started by `compare-ovs`
//! (`setpriv --pdeathsig`).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctgate::dpdk::{
    available_ports, Eal, MbufBurst, Mempool, Port, PortConfig, RxQueue, Tsc, BURST_SIZE,
    MBUF_HEADROOM,
};
use ctgate::wire::frame_checksums::fill_frame;

use crate::child;
use crate::gen_traffic::{self, PCAP_PORT0_MAC, PCAP_PORT1_MAC};
use crate::plot::Line;
use crate::runner::{find_ctgate, remove_dpdk_runtime, EalArgs};

/// The stamp's magic, at the start of the UDP payload.
pub const STAMP: [u8; 4] = *b"CTGN";
/// Offset of the stamp in a frame (Ethernet 14 + IPv4 20 + UDP 8).
const STAMP_AT: usize = 42;
/// Bytes per prebuilt frame slot.
const SLOT: usize = 64;
/// Mbufs of the generator's pool (rings of both ports, bursts, cache).
const POOL_MBUFS: u32 = 16_383;
/// Ring descriptors per queue (a memif server takes the client's ring size instead).
const RING: u16 = 1024;
/// Bytes of a memif packet buffer, both sides (devargs `bsize`): the frames are 60 bytes.
/// DPDK's default, 2048, spreads a ring's buffers over 2 MiB of 4 KiB pages (a TLB miss
/// per packet); 128 keeps them within 256 KiB. Larger frames would be chained over
/// several buffers by the client and never reach the generator's fast path below.
/// A cost both devices under test pay alike: their mbufs (2048-byte data room, ctgate's
/// and OVS's at MTU 1500) are larger than a buffer, so DPDK 22.11's memif TX takes its
/// general path for them, which frees each mbuf on its own (`rte_pktmbuf_free`, 8% of
/// ctgate's worker at 1k flows with SNAT) instead of in bulk; 2048-byte buffers would
/// give them the bulk path but cost the TLB misses above (perf/RESULTS.md, session 11).
pub const MEMIF_BUFFER: u16 = 128;
/// log2 of the memif ring size the clients ask for (devargs `rsize`): 2048 descriptors,
/// so that a side that lost its CPU for a while finds the ring still filled.
pub const MEMIF_LOG2_RING: u8 = 11;
/// Longest drain after sending stopped.
const DRAIN: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RepliesTo {
    /// The SNAT pool address (192.0.2.1) with the client's port (compare-ovs `snat`).
    Snat,
    /// The client's own address (compare-ovs `plain` and `ct`).
    Client,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Number of flows (one packet and one reply each per round).
    #[arg(long, default_value_t = 1000)]
    pub flows: u32,
    /// Where the replies (port 1) go.
    #[arg(long, value_enum, default_value_t = RepliesTo::Snat)]
    pub replies_to: RepliesTo,
    /// Packets per second in millions, both ports together (default: as fast as taken).
    #[arg(long, value_name = "MPPS")]
    pub rate: Option<f64>,
    /// Seconds of sending after the first packet was taken (default: until SIGTERM/SIGINT).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Directory of the memif sockets (memif0.sock, memif1.sock) [default: a temporary one].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// RX queues per port: exactly the DUT's TX queues per port (ctgate with one worker:
    /// 1; OVS with one PMD: 2, one per PMD thread and one for its other threads). A memif
    /// server with fewer refuses the client's extra rings; with more, DPDK 22.11's memif
    /// reads the client's ring 0 on the extra queues too and counts its packets twice.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub rx_queues: u16,
    /// The CPU the generator runs on (EAL -l).
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// EAL --file-prefix [default: ctgate-gen-PID].
    #[arg(long)]
    pub file_prefix: Option<String>,
    /// EAL memory in MB (no hugepages).
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u32,
    /// After --seconds (and the line), keep the ports open until SIGTERM/SIGINT: the
    /// device under test detaches while nothing is sent (a memif client leaving while
    /// the server copies into its rings can crash the server).
    #[arg(long)]
    pub hold: bool,
    /// Measure the generator's own ceiling: a trivial forwarder (ctgate --pair 0:1) on
    /// the other CPU connects the two ports.
    #[arg(long)]
    pub loopback: bool,
    /// The ctgate binary for --loopback (default: next to ctgate-perf).
    #[arg(long, value_name = "PATH")]
    pub ctgate: Option<PathBuf>,
    /// Print a JSON object instead of a key=value line.
    #[arg(long)]
    pub json: bool,
}

/// The memif socket of port `port` in `dir`.
pub fn socket_path(dir: &Path, port: usize) -> PathBuf {
    dir.join(format!("memif{port}.sock"))
}

/// The `--vdev`/`dpdk-devargs` of a DUT's port `port` attached to a generator serving
/// `dir`: a memif client with net_pcap's MAC of that port (the MAC the frames are sent
/// to, so the pcap and memif sources need the same DUT configuration).
pub fn client_devargs(dir: &Path, port: usize) -> String {
    let mac = if port == 0 {
        PCAP_PORT0_MAC
    } else {
        PCAP_PORT1_MAC
    };
    format!(
        "net_memif{port},role=client,id=0,socket={},socket-abstract=no,mac={mac},bsize={MEMIF_BUFFER},rsize={MEMIF_LOG2_RING}",
        socket_path(dir, port).display()
    )
}

/// Inside packets and their replies.
pub type FramePair = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The frames compare-ovs sends for `flows` flows, stamped ([`STAMP`]): (inside packets,
/// replies), in sending order (shuffled), reply `k` answering packet `k`.
pub fn frames(flows: u32, replies_to: RepliesTo) -> Result<FramePair, String> {
    let g = gen_traffic::Args::compare_ovs(flows, PathBuf::new())?;
    gen_traffic::check(&g)?;
    let (mut inside, mut outside) = gen_traffic::frames(&g);
    if inside.len() != outside.len() {
        return Err("gen_traffic: not one reply per flow".into());
    }
    for (i, o) in inside.iter_mut().zip(outside.iter_mut()) {
        // The flow index is the IPv4 identification's low bits only; take it from the
        // frame builder's order instead: the reply's destination port is the client's.
        let flow = flow_of(i);
        if replies_to == RepliesTo::Client {
            o[30..34].copy_from_slice(&i[26..30]);
        }
        for (f, dir) in [(&mut *i, 0u8), (&mut *o, 1u8)] {
            stamp(f, dir, flow);
            f[24..26].fill(0);
            f[40..42].fill(0);
            fill_frame(f).map_err(|e| format!("frame: {e:?}"))?;
        }
    }
    Ok((inside, outside))
}

/// The flow index of an inside frame of gen_traffic (client port 1024 + i % 64000,
/// server 198.18.0.0 + 1 + i / 64000).
fn flow_of(f: &[u8]) -> u32 {
    let port = u32::from(u16::from_be_bytes([f[34], f[35]])) - 1024;
    let server = u32::from(u16::from_be_bytes([f[32], f[33]])) - 1;
    server * 64_000 + port
}

fn stamp(f: &mut [u8], dir: u8, flow: u32) {
    f[STAMP_AT..STAMP_AT + 4].copy_from_slice(&STAMP);
    f[STAMP_AT + 4] = dir;
    f[STAMP_AT + 5..STAMP_AT + 9].copy_from_slice(&flow.to_le_bytes());
}

/// True when `f` is a stamped frame of direction `dir` (0: packets, 1: replies) of one
/// of `flows` flows.
#[inline]
pub fn check_frame(f: &[u8], dir: u8, flows: u32) -> bool {
    f.len() >= STAMP_AT + 9
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17
        && f[STAMP_AT..STAMP_AT + 4] == STAMP
        && f[STAMP_AT + 4] == dir
        && u32::from_le_bytes([
            f[STAMP_AT + 5],
            f[STAMP_AT + 6],
            f[STAMP_AT + 7],
            f[STAMP_AT + 8],
        ]) < flows
}

/// Frames back to back in 64-byte slots.
struct Slots {
    data: Vec<[u8; SLOT]>,
    len: usize,
}

impl Slots {
    fn new(frames: &[Vec<u8>]) -> Result<Slots, String> {
        let len = frames.first().map_or(0, Vec::len);
        if len == 0 || len > SLOT || frames.iter().any(|f| f.len() != len) {
            return Err("generator frames must all be 1..=64 bytes, of one length".into());
        }
        let data = frames
            .iter()
            .map(|f| {
                let mut s = [0u8; SLOT];
                s[..len].copy_from_slice(f);
                s
            })
            .collect();
        Ok(Slots { data, len })
    }
}

/// What a run counted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Report {
    pub flows: u32,
    pub sent: [u64; 2],
    pub received: [u64; 2],
    pub bad: u64,
    /// TX bursts offered to the device under test, and those it did not take in full
    /// (its ring was full: it, not the generator, set the rate at that moment).
    pub tx_bursts: u64,
    pub tx_full: u64,
    /// Seconds from the first packet taken to the end of sending.
    pub secs: f64,
    /// Share of one CPU the process ran in `secs`.
    pub cpu: Option<f64>,
}

impl Report {
    /// Share of the TX bursts the device under test did not take in full: near 1 when
    /// it sets the rate, near 0 when the generator does.
    pub fn full_share(&self) -> f64 {
        if self.tx_bursts == 0 {
            0.0
        } else {
            self.tx_full as f64 / self.tx_bursts as f64
        }
    }

    pub fn line(&self) -> Line {
        let sent: u64 = self.sent.iter().sum();
        let received: u64 = self.received.iter().sum();
        let per_sec = |n: u64| {
            if self.secs > 0.0 {
                n as f64 / self.secs / 1e6
            } else {
                0.0
            }
        };
        Line::default()
            .with("bench", "gen")
            .with("flows", self.flows)
            .with("sent", sent)
            .with("received", received)
            .with("bad", self.bad)
            .with("sent0", self.sent[0])
            .with("sent1", self.sent[1])
            .with("received0", self.received[0])
            .with("received1", self.received[1])
            .with("sent_mpps", format!("{:.3}", per_sec(sent)))
            .with("mpps", format!("{:.3}", per_sec(received)))
            .with(
                "cpu",
                self.cpu
                    .map_or("unknown".to_string(), |c| format!("{c:.2}")),
            )
            .with("secs", format!("{:.3}", self.secs))
            .with("full", format!("{:.2}", self.full_share()))
    }
}

/// CPU time of this process's threads in nanoseconds.
fn process_cpu_ns() -> Option<u64> {
    let mut sum = 0;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
        sum += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// The generator's loop on `ports` until `stop` or `seconds` after the first packet
/// taken, then the drain.
fn serve(
    eal: &Eal,
    ports: &[Port; 2],
    pool: &Mempool,
    slots: &[Slots; 2],
    args: &Args,
    stop: &AtomicBool,
) -> Result<Report, String> {
    let (flows, rate, seconds) = (args.flows, args.rate, args.seconds);
    let nq = usize::from(args.rx_queues);
    let mut txq = [
        ports[0].tx_queue(0).ok_or("port 0 has no TX queue")?,
        ports[1].tx_queue(0).ok_or("port 1 has no TX queue")?,
    ];
    let mut rxq = Vec::new();
    for port in ports {
        for q in 0..args.rx_queues {
            // Port p's queue q at index p * nq + q.
            rxq.push(port.rx_queue(q).ok_or("missing RX queue")?);
        }
    }
    let hz = Tsc::hz(eal) as f64;
    let mut pending: [MbufBurst; 2] = [MbufBurst::new(), MbufBurst::new()];
    let mut rx: MbufBurst = MbufBurst::new();
    let mut cursor = [0usize; 2];
    let mut r = Report {
        flows,
        ..Report::default()
    };
    // Set at the first packet taken.
    let mut start: Option<(u64, Instant, Option<u64>)> = None;
    let end_ticks = seconds.map(|s| (s * hz) as u64);
    let per_tick = rate.map(|mpps| mpps * 1e6 / hz);
    let mut check = 0u32;
    let end = loop {
        // The stop conditions, every 256 loops (an atomic and the TSC are cheap, but
        // not free).
        check = check.wrapping_add(1);
        if check.is_multiple_of(256) {
            let now = Tsc::now();
            let over = match (start, end_ticks) {
                (Some((t0, _, _)), Some(e)) => now - t0 >= e,
                _ => false,
            };
            if over || stop.load(Ordering::Relaxed) {
                break Instant::now();
            }
        }
        let sent_total = r.sent[0] + r.sent[1];
        let allowed = match (per_tick, start) {
            (Some(p), Some((t0, _, _))) => ((Tsc::now() - t0) as f64 * p) as u64 + 1,
            (Some(_), None) => 1,
            (None, _) => u64::MAX,
        };
        for p in 0..2 {
            if pending[p].is_empty()
                && sent_total < allowed
                && pool.alloc_bulk(&mut pending[p], BURST_SIZE)
            {
                let s = &slots[p];
                for m in pending[p].as_mut_slice() {
                    let f = &s.data[cursor[p]];
                    cursor[p] += 1;
                    if cursor[p] == s.data.len() {
                        cursor[p] = 0;
                    }
                    m.extend_from_slice(&f[..s.len])
                        .map_err(|e| format!("mbuf too small: {e}"))?;
                }
            }
            if !pending[p].is_empty() {
                let n = txq[p].tx_burst(&mut pending[p]);
                if n > 0 && start.is_none() {
                    start = Some((Tsc::now(), Instant::now(), process_cpu_ns()));
                }
                r.sent[p] += n as u64;
                r.tx_bursts += 1;
                if !pending[p].is_empty() {
                    r.tx_full += 1;
                }
            }
            for q in &mut rxq[p * nq..(p + 1) * nq] {
                receive(q, &mut rx, p, flows, &mut r);
            }
        }
    };
    let cpu_end = process_cpu_ns();
    for b in &mut pending {
        b.clear();
    }
    // Drain: what the DUT still forwards.
    let t = Instant::now();
    while t.elapsed() < DRAIN && r.received[0] + r.received[1] < r.sent[0] + r.sent[1] {
        for (i, q) in rxq.iter_mut().enumerate() {
            receive(q, &mut rx, i / nq, flows, &mut r);
        }
    }
    if let Some((_, t0, cpu0)) = start {
        r.secs = (end - t0).as_secs_f64();
        r.cpu = match (cpu0, cpu_end) {
            (Some(a), Some(b)) if r.secs > 0.0 => Some((b - a) as f64 / 1e9 / r.secs),
            _ => None,
        };
    }
    Ok(r)
}

/// Receives a burst on `q` of port `port` and counts it, checking each frame: port 1
/// receives the forwarded packets (direction 0), port 0 the replies (direction 1).
#[inline]
fn receive(q: &mut RxQueue, rx: &mut MbufBurst, port: usize, flows: u32, r: &mut Report) {
    let n = q.rx_burst(rx);
    if n == 0 {
        return;
    }
    let dir = if port == 1 { 0 } else { 1 };
    for m in rx.as_slice() {
        if !check_frame(m.data(), dir, flows) {
            r.bad += 1;
        }
    }
    r.received[port] += n as u64;
    rx.clear();
}

/// Runs the generator in this process (EAL initialised here) until `stop` or
/// `args.seconds`; `ready` is called once both ports' sockets exist and may start a
/// client of them, which is stopped before the ports close (a memif client whose server
/// leaves first can crash).
fn generate(
    args: &Args,
    dir: &Path,
    prefix: &str,
    stop: &AtomicBool,
    ready: impl FnOnce() -> Result<Option<Child>, String>,
) -> Result<Report, String> {
    let (inside, outside) = frames(args.flows, args.replies_to)?;
    let slots = [Slots::new(&inside)?, Slots::new(&outside)?];
    drop((inside, outside));
    let mut eal_args: Vec<String> = [
        "ctgate-perf-gen",
        "--no-huge",
        "-m",
        &args.memory_mb.to_string(),
        "--no-pci",
        "-l",
        &args.cpu.to_string(),
        "--file-prefix",
        prefix,
        "--no-telemetry",
        "--log-level",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for p in 0..2 {
        eal_args.push("--vdev".into());
        eal_args.push(format!(
            "net_memif{p},role=server,id=0,socket={},socket-abstract=no,bsize={MEMIF_BUFFER}",
            socket_path(dir, p).display()
        ));
    }
    let eal = Eal::init(&eal_args).map_err(|e| {
        remove_dpdk_runtime(prefix);
        format!("generator EAL: {e}")
    })?;
    let result = (|| {
        let ids = available_ports(&eal);
        if ids.len() != 2 {
            return Err(format!("expected 2 memif ports, EAL has {}", ids.len()));
        }
        // Mbufs of exactly one memif buffer: memif's TX copies an mbuf into one buffer
        // without a length check only when the mbuf cannot hold more than a buffer, and
        // its RX fills whole mbufs in bulk only when one holds a buffer; both hold here.
        let pool = Mempool::new(
            &eal,
            "gen_pool",
            POOL_MBUFS,
            256,
            MBUF_HEADROOM + MEMIF_BUFFER,
            -1,
        )
        .map_err(|e| e.to_string())?;
        let conf = PortConfig {
            rx_queues: args.rx_queues,
            tx_queues: 1,
            rx_desc: RING,
            tx_desc: RING,
            rss: false,
            mtu: 0,
        };
        let mut ports = [
            Port::configure(&eal, ids[0], &conf, &pool).map_err(|e| e.to_string())?,
            Port::configure(&eal, ids[1], &conf, &pool).map_err(|e| e.to_string())?,
        ];
        for p in &mut ports {
            p.start().map_err(|e| e.to_string())?;
        }
        let mut client = ready()?;
        let r = serve(&eal, &ports, &pool, &slots, args, stop);
        let printed = r.as_ref().map_err(Clone::clone).and_then(|r| {
            print_line(args, r)?;
            while args.hold && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        });
        child::stop(&mut client, Duration::from_secs(5));
        for p in ports {
            let _ = p.close();
        }
        printed.and(r)
    })();
    let _ = eal.cleanup();
    remove_dpdk_runtime(prefix);
    result
}

/// The CPU of `--loopback`'s forwarder: the first CPU this process may run on other than
/// the generator's. Asked before the generator's EAL pins this process to its own CPU
/// (afterwards the process's affinity, which a child inherits, is that one CPU).
fn forwarder_cpu(generator: usize) -> Result<usize, String> {
    let allowed = rustix::thread::sched_getaffinity(None)
        .map_err(|e| format!("cannot read this process's CPU affinity: {e}"))?;
    (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|&c| c != generator && allowed.is_set(c))
        .ok_or_else(|| {
            format!("--loopback needs a second CPU besides the generator's ({generator})")
        })
}

/// The forwarder of `--loopback`: `ctgate --pair 0:1` on the memif clients of `dir`,
/// the whole process (control lcore, worker, EAL threads) pinned to `cpu`, so that the
/// generator's CPU runs the generator only.
fn start_forwarder(args: &Args, dir: &Path, prefix: &str, cpu: usize) -> Result<Child, String> {
    let bin = find_ctgate(args.ctgate.as_deref())?;
    let eal = EalArgs {
        memory_mb: 512,
        prefix: prefix.to_string(),
        workers: 1,
        vdevs: vec![client_devargs(dir, 0), client_devargs(dir, 1)],
    };
    child::command(&bin, Some(cpu))
        .args(eal.args_with_lcores(format!("0@{cpu},1@{cpu}")))
        .args(["--", "--pair", "0:1", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))
}

pub fn run(args: &Args) -> Result<(), String> {
    if args.flows == 0 {
        return Err("--flows must be at least 1".into());
    }
    if let Some(r) = args.rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err("--rate must be a positive number of Mpps".into());
        }
    }
    if let Some(s) = args.seconds {
        if !(s > 0.0 && s.is_finite()) {
            return Err("--seconds must be a positive number".into());
        }
    }
    if args.loopback && args.seconds.is_none() {
        return Err("--loopback needs --seconds".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let pid = std::process::id();
    let prefix = args
        .file_prefix
        .clone()
        .unwrap_or_else(|| format!("ctgate-gen-{pid}"));
    let (dir, temp) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("ctgate-gen-{pid}")), true),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let fwd_cpu = if args.loopback {
        Some(forwarder_cpu(args.cpu)?)
    } else {
        None
    };
    let fwd_prefix = format!("{prefix}-fwd");
    let result = generate(args, &dir, &prefix, &stop, || {
        eprintln!(
            "gen: serving {} and {}",
            socket_path(&dir, 0).display(),
            socket_path(&dir, 1).display()
        );
        fwd_cpu
            .map(|cpu| start_forwarder(args, &dir, &fwd_prefix, cpu))
            .transpose()
    });
    if args.loopback {
        remove_dpdk_runtime(&fwd_prefix);
    }
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for p in 0..2 {
            let _ = std::fs::remove_file(socket_path(&dir, p));
        }
    }
    result.map(|_| ())
}

/// Prints the result line (flushed at once: what follows may be killed), or an error
/// when nothing was sent.
fn print_line(args: &Args, r: &Report) -> Result<(), String> {
    use std::io::Write;
    if r.sent.iter().sum::<u64>() == 0 {
        return Err("nothing was sent: no device attached the memif ports".into());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", r.line().render(args.json));
    let _ = out.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_stamped_with_their_direction_and_flow() {
        let (inside, outside) = frames(70_000, RepliesTo::Snat).unwrap();
        assert_eq!((inside.len(), outside.len()), (70_000, 70_000));
        let mut seen = vec![false; 70_000];
        for (i, o) in inside.iter().zip(&outside) {
            assert!(check_frame(i, 0, 70_000));
            assert!(check_frame(o, 1, 70_000));
            assert!(!check_frame(i, 1, 70_000));
            assert!(!check_frame(o, 0, 70_000));
            let flow = u32::from_le_bytes(i[47..51].try_into().unwrap());
            assert_eq!(flow, u32::from_le_bytes(o[47..51].try_into().unwrap()));
            assert!(!seen[flow as usize], "flow {flow} twice");
            seen[flow as usize] = true;
            // The reply answers the packet: its destination port is the client's port.
            assert_eq!(o[36..38], i[34..36]);
            assert_eq!(o[30..34], [192, 0, 2, 1]);
        }
    }

    #[test]
    fn client_replies_go_to_the_clients_address() {
        let (inside, outside) = frames(10, RepliesTo::Client).unwrap();
        for (i, o) in inside.iter().zip(&outside) {
            assert_eq!(o[30..34], i[26..30]);
            assert!(check_frame(o, 1, 10));
        }
    }

    #[test]
    fn the_loopback_forwarder_never_gets_the_generators_cpu() {
        let allowed = rustix::thread::sched_getaffinity(None).unwrap();
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| allowed.is_set(c))
            .collect();
        for &g in &cpus {
            match forwarder_cpu(g) {
                Ok(f) => assert!(f != g && cpus.contains(&f), "generator {g}, forwarder {f}"),
                Err(e) => assert_eq!(cpus.len(), 1, "{e}"),
            }
        }
    }

    #[test]
    fn full_share_is_the_share_of_bursts_not_taken_in_full() {
        let r = Report {
            tx_bursts: 8,
            tx_full: 2,
            ..Report::default()
        };
        assert_eq!(r.full_share(), 0.25);
        assert_eq!(Report::default().full_share(), 0.0);
        assert!(r.line().render(false).ends_with(" full=0.25"));
    }

    #[test]
    fn client_devargs_name_the_socket_and_the_ports_mac() {
        let d = client_devargs(Path::new("/tmp/x"), 1);
        assert_eq!(
            d,
            "net_memif1,role=client,id=0,socket=/tmp/x/memif1.sock,socket-abstract=no,mac=02:70:63:61:70:01,bsize=128,rsize=11"
        );
    }
}
