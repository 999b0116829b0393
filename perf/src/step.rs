//! `ctgate-perf step`: the gateway step alone (no DPDK, no NIC, no mbufs): parsing,
//! neighbour/ARP handling, tracking, policy, SNAT, routing, TTL and MAC rewrite of the
//! embedded default configuration, driven over byte buffers in bursts of 32 on one
//! thread. It isolates the per-packet cost of ctgate's own code from RX/TX, and is the
//! thing to run under `perf record` or callgrind.
//!
//! Per case: the traffic of [`crate::gen_traffic`] (inside: one packet per flow, client
//! → server; outside: the reply of every flow, server → the SNAT address), in a shuffled
//! order; each flow is created and answered once (warm-up, not timed), then bursts of 32
//! frames alternate inside and outside. Every burst first copies its 32 frames from the
//! templates into the working buffers (NAT rewrites them), as a NIC would have written
//! them; that copy is timed separately and reported as `copy_ns`.
//!
//! ```text
//! bench=step flows=1000 proto=udp mpps=… ns_per_pkt=… cycles_per_pkt=… copy_ns=… forwarded=… dropped=… conns=… cpu_share=…
//! ```
//!
//! `mpps` and `ns_per_pkt` exclude the template copy and are computed over the thread's
//! on-CPU time (`cpu_share` = on-CPU / wall time), so that a shared machine's time slicing
//! does not count; `cycles_per_pkt` is that time at the kernel's `cpu MHz`.

use std::sync::Arc;
use std::time::Instant;

use ctgate::config::Config;
use ctgate::conntrack::{Conntrack, CtConfig};
use ctgate::pipeline::gateway::{GatewayShared, GatewayStep};
use ctgate::pipeline::{MacAddr, PacketStep, Verdict};

use crate::gen_traffic::{self, Proto};
use crate::plot::{Progress, Record};

const BURST: usize = 32;
/// The gateway's port MACs in this benchmark.
const GW_MAC: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0, 0xa0], [0x02, 0, 0, 0, 0, 0xa1]];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flow counts, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    flows: Vec<u32>,
    /// Seconds per case.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Protocol of the flows.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    proto: Proto,
    /// Quick smoke run (1000 flows, 0.3 s).
    #[arg(long)]
    quick: bool,
    /// Print JSON objects (one per line) instead of key=value lines.
    #[arg(long)]
    json: bool,
    /// Attach a connection-event consumer (a thread draining the tracker's event
    /// stream every millisecond, as `ctgate-ctl events` would): events on.
    #[arg(long)]
    events: bool,
}

pub fn run(args: &Args) -> Result<(), String> {
    let (flows, secs) = if args.quick {
        (vec![1000], 0.3)
    } else {
        (args.flows.clone(), args.seconds)
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("--seconds {secs}: not a positive number"));
    }
    let mut progress = Progress::new("step", flows.len());
    for &f in &flows {
        if f == 0 {
            return Err("--flows: 0 is not a flow count".into());
        }
        progress.case(&format!("flows={f}"));
        let r = run_case(args.proto, f, secs, args.events)?;
        Record::new("step")
            .int("flows", f)
            .str("proto", format!("{:?}", args.proto).to_lowercase())
            .float("mpps", r.mpps, 2)
            .float("ns_per_pkt", 1e3 / r.mpps, 1)
            .float("cycles_per_pkt", r.cycles_per_pkt, 0)
            .float("copy_ns", r.copy_ns, 1)
            .int("forwarded", r.forwarded)
            .int("dropped", r.dropped)
            .int("conns", r.conns)
            .float("cpu_share", r.cpu_share, 2)
            // Appended: keys of a bench are only ever added at the end (perf/README.md).
            .str("events", if args.events { "on" } else { "off" })
            .print(args.json);
    }
    Ok(())
}

struct CaseResult {
    mpps: f64,
    cycles_per_pkt: f64,
    copy_ns: f64,
    forwarded: u64,
    dropped: u64,
    conns: u64,
    cpu_share: f64,
}

/// A thread that listens to the tracker's events and throws them away, until dropped.
struct EventConsumer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventConsumer {
    fn start(ct: &Arc<Conntrack>) -> EventConsumer {
        let sub = ct
            .events()
            .subscribe(ctgate::conntrack::events::DEFAULT_QUEUE);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                buf.clear();
                sub.drain(&mut buf);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        EventConsumer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EventConsumer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The benchmark config (static next hops, SNAT) with room for `flows`.
fn config(flows: u32) -> Result<Config, String> {
    let text = crate::bench_config::bench_config((2 * u64::from(flows)).max(4096), true)?;
    Config::parse(&text, "step.toml").map_err(|e| e.to_string())
}

/// This thread's on-CPU time in seconds (`CLOCK_THREAD_CPUTIME_ID`, through rustix's
/// safe wrapper): rates are computed over it, so time the scheduler gave to other
/// processes on a shared machine does not count. `None` if the clock reads zero.
pub fn thread_cpu_secs() -> Option<f64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let s = t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9;
    (s > 0.0).then_some(s)
}

/// The CPU clock in Hz as the kernel reports it (`cpu MHz` of /proc/cpuinfo).
fn cpu_hz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(mhz * 1e6)
}

fn run_case(proto: Proto, flows: u32, secs: f64, events: bool) -> Result<CaseResult, String> {
    let cfg = config(flows)?;
    let ct = Arc::new(Conntrack::new(CtConfig {
        max_conns: cfg.datapath.max_conns,
        n_buckets: cfg.datapath.buckets,
        workers: 1,
        tcp_seq_check: cfg.datapath.tcp_seq_check,
        hash_seed: Some(7),
    }));
    let shared = GatewayShared::new(
        &cfg,
        ct.clone(),
        &[(0, MacAddr(GW_MAC[0])), (1, MacAddr(GW_MAC[1]))],
    )?;
    shared.set_now_ms(1_000);
    let _consumer = events.then(|| EventConsumer::start(&ct));
    let mut step = GatewayStep::new(shared.clone(), 0);
    let gen = gen_traffic::Args {
        flows,
        proto,
        size: 64,
        replies: 1.0,
        shuffle: true,
        seed: 1,
        dst_mac: GW_MAC[0],
        out_dst_mac: GW_MAC[1],
        out: std::path::PathBuf::new(),
    };
    let (inside, outside) = gen_traffic::frames(&gen);
    let slot = 64;
    let flat = |v: &[Vec<u8>]| -> Vec<u8> {
        let mut out = vec![0u8; v.len() * slot];
        for (i, f) in v.iter().enumerate() {
            out[i * slot..i * slot + f.len()].copy_from_slice(f);
        }
        out
    };
    let len = inside[0].len();
    let templates = [flat(&inside), flat(&outside)];
    let n = inside.len();
    let mut scratch = vec![0u8; BURST * slot];
    // Copy cost alone.
    let copy_start = Instant::now();
    let mut copied = 0u64;
    let mut at = 0;
    while copy_start.elapsed().as_secs_f64() < secs.min(0.5) {
        for t in &templates {
            let k = BURST.min(n - at);
            for j in 0..k {
                scratch[j * slot..j * slot + len]
                    .copy_from_slice(&t[(at + j) * slot..(at + j) * slot + len]);
            }
            copied += k as u64;
        }
        at = (at + BURST) % n;
    }
    let copy_ns = copy_start.elapsed().as_nanos() as f64 / copied.max(1) as f64;
    std::hint::black_box(&scratch);

    let mut work = vec![0u8; BURST * slot];
    let mut verdicts = [Verdict::Drop(ctgate::pipeline::DropReason::NoRoute); BURST];
    let mut forwarded = 0u64;
    let mut dropped = 0u64;
    // One burst from `side` starting at packet `at`.
    let mut burst = |step: &mut GatewayStep, side: usize, at: usize, count: bool| {
        let k = BURST.min(n - at);
        for j in 0..k {
            work[j * slot..j * slot + len]
                .copy_from_slice(&templates[side][(at + j) * slot..(at + j) * slot + len]);
        }
        let mut frames: Vec<&mut [u8]> = work
            .chunks_mut(slot)
            .take(k)
            .map(|c| &mut c[..len])
            .collect();
        step.process_burst(&mut frames, side as u16, &mut verdicts);
        if count {
            for v in &verdicts[..k] {
                match v {
                    Verdict::Forward(_) => forwarded += 1,
                    _ => dropped += 1,
                }
            }
        }
        k
    };
    // Warm-up: create every flow and answer it.
    let mut at = 0;
    while at < n {
        let k = burst(&mut step, 0, at, false);
        burst(&mut step, 1, at, false);
        at += k;
    }
    let t0 = Instant::now();
    let cpu0 = thread_cpu_secs();
    let mut pkts = 0u64;
    let mut at = 0;
    loop {
        let k = burst(&mut step, 0, at, true);
        burst(&mut step, 1, at, true);
        pkts += 2 * k as u64;
        at += k;
        if at >= n {
            at = 0;
        }
        if pkts % (BURST as u64 * 2048) < 2 * BURST as u64 {
            let e = t0.elapsed().as_secs_f64();
            if e >= secs {
                break;
            }
            // Time moves as on the control lcore (connections stay alive: replies refresh them).
            shared.set_now_ms(1_000 + (e * 1e3) as u64);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    // On-CPU time when the kernel gives it, else wall time.
    let e = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    let cpu_share = e / wall;
    let per_pkt_ns = e * 1e9 / pkts as f64 - copy_ns;
    Ok(CaseResult {
        mpps: 1e3 / per_pkt_ns,
        cycles_per_pkt: cpu_hz().map_or(f64::NAN, |hz| per_pkt_ns * 1e-9 * hz),
        cpu_share,
        copy_ns,
        forwarded,
        dropped,
        conns: u64::from(ct.n_conns()),
    })
}
