//! `ctgate-perf core`: the connection tracker alone, no DPDK, no packet I/O.
//!
//! Every measured packet is a real frame (Ethernet/IPv4/UDP, about one flow in four TCP,
//! see [`crate::flow_frames`]) read from a buffer built up front, parsed with
//! `ctgate::wire::parse::parse_frame` and then tracked (zone 0, `commit`), so parsing is
//! part of the measured work. Cases, each printing one `key=value` line (or one JSON object
//! with `--json`):
//!
//! * `bench=memory conns=N bytes_per_conn=B fixed_kib=K buckets=NB`: the process's resident
//!   memory (`VmRSS`, after returning freed heap memory to the OS) before building a
//!   tracker for N connections and after creating them, divided by N. `fixed_kib` is what
//!   the empty tracker already took.
//! * `bench=create conns=N threads=T conns_per_s=R refill_conns_per_s=R2 ...`: every packet
//!   a new flow until N exist, in bursts of 32, into a fresh table (`conns_per_s`), and again
//!   after a sweep removed them all (`refill_conns_per_s`: records recycled from the free
//!   list in sweep order, as in a long-running gateway). Repeated with fresh tables until
//!   the case's time is used (`reps`). With T > 1 all threads create into one shared
//!   table, each its own contiguous share of the flows with its own worker handle.
//! * `bench=established conns=N threads=T prefetch=on|off mpps=M ...`: every connection
//!   established first (TCP handshake, UDP reply), then both directions of every flow in a
//!   shuffled order, again and again for the case's time. `prefetch=on` is the burst API
//!   (`process_burst`, 32 packets: hashes and bucket/record prefetches of the whole burst
//!   first); `off` is the single-packet API (`process`) on the same frames. With T > 1,
//!   `flows=disjoint` gives each thread its own contiguous share of the flows (as RSS
//!   does; the records of a share are contiguous in the pool, as when each worker creates
//!   its own connections), and `flows=shared` has both threads walk all flows (from
//!   different offsets), so the same records are written from both cores.
//! * `bench=sweep conns=N expired=none|half ...`: lookups on one core while the control
//!   handle sweeps the whole table on the other in bounded steps of 1024 buckets; lookup
//!   Mpps without and during the sweep, the pass time, the longest step and the per-burst
//!   latency tail of the lookup thread.
//!
//! Rates are per wall-clock second. Because this runs on shared machines, each line also
//! carries `preempted` (involuntary context switches of the measuring threads) and
//! `oncpu_*` rates (per second of the measuring threads' own CPU time): when `preempted`
//! is not near zero another process took CPU time from the benchmark, and the `oncpu_`
//! figure is the one to trust. Per-thread rates are summed over threads.
//!
//! `--plot DIR` draws what was just measured: `DIR/core_create.svg` (new connections/s
//! against threads, one series per connection count) and `DIR/core_established.svg`
//! (established Mpps against connections on a log axis, one thread, prefetch on and off).
//!
//! Threads are pinned to cores in order (thread t on core t mod ncores). The tracker clock
//! is fixed for each phase (nothing expires unless a case says so).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use core_affinity::CoreId;
use ctgate::conntrack::{Conntrack, CtConfig, CtState, CtWorker, PacketMeta};
use ctgate::wire::parse::parse_frame;
use hdrhistogram::Histogram;

use crate::flow_frames::{established_mix, is_tcp, FrameBuf, Kind};

/// Packets per burst (as the datapath's RX bursts).
const BURST: usize = 32;
/// Bursts between two looks at the clock in the lookup loop.
const CHECK_EVERY: usize = 64;
/// Tracker clock (ms) of the first phase.
const T0: u64 = 1_000;
/// Hash seed of every tracker (reproducible bucket layout).
const SEED: u64 = 0x5eed_c0de;
/// Buckets per sweep step.
const SWEEP_STEP: usize = 1024;

/// Arguments of `ctgate-perf core`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Connection counts, one set of cases each (repeatable) [default: 1000, 100000,
    /// 1000000, 10000000; with --quick 1000, 20000].
    #[arg(long = "conns", value_name = "N")]
    conns: Vec<u32>,
    /// Thread counts (repeatable) [default: 1 and 2].
    #[arg(long = "threads", value_name = "T")]
    threads: Vec<usize>,
    /// Seconds per measurement [default: 3; with --quick 0.2].
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Connection counts of the sweep-while-forwarding cases (repeatable) [default:
    /// 1000000; with --quick 20000].
    #[arg(long = "sweep-conns", value_name = "N")]
    sweep_conns: Vec<u32>,
    /// Run only these benchmarks (comma separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Bench>,
    /// Established cases: only with burst prefetching on, or only off [default: both].
    #[arg(long, value_enum)]
    prefetch: Option<OnOff>,
    /// Small sizes and short measurements, for smoke tests (well under a minute).
    #[arg(long)]
    quick: bool,
    /// One JSON object per line instead of key=value.
    #[arg(long)]
    json: bool,
    /// Also draw the figures as SVG charts in this directory (core_create.svg,
    /// core_established.svg).
    #[arg(long, value_name = "DIR")]
    plot: Option<std::path::PathBuf>,
}

/// The benchmark families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Bench {
    Memory,
    Create,
    Established,
    Sweep,
}

/// A switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// The resolved plan.
struct Plan {
    conns: Vec<u32>,
    threads: Vec<usize>,
    secs: f64,
    sweep_conns: Vec<u32>,
    only: Vec<Bench>,
    prefetch: Option<OnOff>,
    json: bool,
    cores: Vec<CoreId>,
}

impl Plan {
    fn wants(&self, b: Bench) -> bool {
        self.only.is_empty() || self.only.contains(&b)
    }

    fn dur(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    /// The established cases of `t` threads: (prefetch, shared flows).
    fn established_cases(&self, t: usize) -> Vec<(bool, bool)> {
        let all: &[(bool, bool)] = if t == 1 {
            &[(true, false), (false, false)]
        } else {
            &[(true, true), (true, false), (false, false)]
        };
        all.iter()
            .copied()
            .filter(|&(p, _)| self.prefetch.is_none_or(|want| (want == OnOff::On) == p))
            .collect()
    }

    fn max_threads(&self) -> usize {
        self.threads.iter().copied().max().unwrap_or(1)
    }

    /// Number of cases, for the progress log.
    fn n_cases(&self) -> usize {
        let mut per_n = 0;
        if self.wants(Bench::Memory) {
            per_n += 1;
        }
        if self.wants(Bench::Create) {
            per_n += self.threads.len();
        }
        if self.wants(Bench::Established) {
            per_n += self
                .threads
                .iter()
                .map(|&t| self.established_cases(t).len())
                .sum::<usize>();
        }
        let sweep = if self.wants(Bench::Sweep) {
            2 * self.sweep_conns.len()
        } else {
            0
        };
        per_n * self.conns.len() + sweep
    }
}

/// One value of an output line.
enum V {
    S(&'static str),
    I(u64),
    F(f64, usize),
}

/// One summary line.
struct Line(Vec<(&'static str, V)>);

impl Line {
    fn new(bench: &'static str) -> Line {
        Line(vec![("bench", V::S(bench))])
    }

    fn s(mut self, k: &'static str, v: &'static str) -> Line {
        self.0.push((k, V::S(v)));
        self
    }

    fn i(mut self, k: &'static str, v: u64) -> Line {
        self.0.push((k, V::I(v)));
        self
    }

    fn f(mut self, k: &'static str, v: f64, decimals: usize) -> Line {
        self.0.push((k, V::F(v, decimals)));
        self
    }

    /// The value of `k` as a number (integers and floats).
    fn num(&self, k: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| match v {
                V::I(i) => Some(*i as f64),
                V::F(f, _) => Some(*f),
                V::S(_) => None,
            })
    }

    /// The value of `k` as a string.
    fn text(&self, k: &str) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| match v {
                V::S(s) => Some(*s),
                _ => None,
            })
    }

    fn render(&self, json: bool) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    V::S(s) if json => format!("\"{s}\""),
                    V::S(s) => s.to_string(),
                    V::I(i) => i.to_string(),
                    V::F(f, d) => format!("{f:.d$}"),
                };
                if json {
                    format!("\"{k}\":{v}")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if json {
            format!("{{{}}}", parts.join(","))
        } else {
            parts.join(" ")
        }
    }
}

/// Case counter and elapsed time on stderr.
struct Progress {
    start: Instant,
    n: usize,
    total: usize,
}

impl Progress {
    fn case(&mut self, what: &str) {
        self.n += 1;
        eprintln!(
            "[core {}/{} {:.1}s] {what}",
            self.n,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }

    fn note(&self, what: &str) {
        eprintln!("[core {:.1}s] {what}", self.start.elapsed().as_secs_f64());
    }
}

/// Runs `ctgate-perf core`.
pub fn run(args: &Args) -> Result<(), String> {
    let plan = resolve(args)?;
    if let Some(dir) = &args.plot {
        crate::plot::prepare_dir(dir)?;
    }
    let mut prog = Progress {
        start: Instant::now(),
        n: 0,
        total: plan.n_cases(),
    };
    // Lines are kept for --plot.
    let kept = std::cell::RefCell::new(Vec::new());
    let out = |l: Line| {
        println!("{}", l.render(plan.json));
        kept.borrow_mut().push(l);
    };
    for &n in &plan.conns {
        run_conns(&plan, n, &mut prog, &out)?;
    }
    if plan.wants(Bench::Sweep) {
        for &n in &plan.sweep_conns {
            for half in [false, true] {
                prog.case(&format!(
                    "sweep conns={n} expired={}",
                    if half { "half" } else { "none" }
                ));
                out(sweep_case(&plan, n, half, &prog)?);
            }
        }
    }
    prog.note("done");
    if let Some(dir) = &args.plot {
        crate::plot::write_all(dir, &charts(&kept.borrow()))?;
    }
    Ok(())
}

/// The --plot charts of the lines measured.
fn charts(lines: &[Line]) -> Vec<(&'static str, crate::plot::Chart)> {
    use crate::plot::{Chart, Series, XScale};
    let sorted = |mut pts: Vec<(f64, f64)>| {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    };
    // Connections/s against threads, one series per connection count.
    let creates: Vec<&Line> = lines
        .iter()
        .filter(|l| l.text("bench") == Some("create"))
        .collect();
    let mut conns: Vec<f64> = creates.iter().filter_map(|l| l.num("conns")).collect();
    conns.sort_by(f64::total_cmp);
    conns.dedup();
    let create_series = conns
        .iter()
        .map(|&n| Series {
            name: format!("{} conns", crate::plot::short_number(n)),
            points: sorted(
                creates
                    .iter()
                    .filter(|l| l.num("conns") == Some(n))
                    .filter_map(|l| Some((l.num("threads")?, l.num("conns_per_s")?)))
                    .collect(),
            ),
        })
        .collect();
    // Established Mpps against connections, one thread, prefetch on and off.
    let est_series = ["on", "off"]
        .iter()
        .map(|&p| Series {
            name: format!("prefetch {p}"),
            points: sorted(
                lines
                    .iter()
                    .filter(|l| {
                        l.text("bench") == Some("established")
                            && l.num("threads") == Some(1.0)
                            && l.text("prefetch") == Some(p)
                    })
                    .filter_map(|l| Some((l.num("conns")?, l.num("mpps")?)))
                    .collect(),
            ),
        })
        .collect();
    vec![
        (
            "core_create",
            Chart {
                title: "Tracker: new connections/s against threads".into(),
                x_label: "threads".into(),
                y_label: "connections/s".into(),
                x_scale: XScale::Linear,
                series: create_series,
            },
        ),
        (
            "core_established",
            Chart {
                title: "Tracker: established packets, 1 thread".into(),
                x_label: "connections".into(),
                y_label: "Mpps".into(),
                x_scale: XScale::Log10,
                series: est_series,
            },
        ),
    ]
}

fn resolve(args: &Args) -> Result<Plan, String> {
    let pick = |given: &Vec<u32>, full: &[u32], quick: &[u32]| -> Vec<u32> {
        if !given.is_empty() {
            given.clone()
        } else if args.quick {
            quick.to_vec()
        } else {
            full.to_vec()
        }
    };
    let conns = pick(
        &args.conns,
        &[1_000, 100_000, 1_000_000, 10_000_000],
        &[1_000, 20_000],
    );
    let sweep_conns = pick(&args.sweep_conns, &[1_000_000], &[20_000]);
    let threads = if args.threads.is_empty() {
        vec![1, 2]
    } else {
        args.threads.clone()
    };
    let secs = args.seconds.unwrap_or(if args.quick { 0.2 } else { 3.0 });
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    if let Some(&bad) = conns
        .iter()
        .chain(sweep_conns.iter())
        .find(|&&n| !(2..1 << 30).contains(&n))
    {
        return Err(format!(
            "--conns/--sweep-conns {bad}: must be between 2 and 2^30-1"
        ));
    }
    if let Some(&bad) = threads.iter().find(|&&t| t == 0 || t > 64) {
        return Err(format!("--threads {bad}: must be between 1 and 64"));
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        eprintln!("ctgate-perf core: cannot read the CPU list; threads are not pinned");
    } else if threads.iter().any(|&t| t > cores.len()) {
        eprintln!(
            "ctgate-perf core: more threads than the {} cores: threads share cores",
            cores.len()
        );
    }
    let needs_two = args.only.is_empty() || args.only.contains(&Bench::Sweep);
    if needs_two && cores.len() < 2 {
        eprintln!("ctgate-perf core: the sweep cases want 2 cores; they will share one");
    }
    Ok(Plan {
        conns,
        threads,
        secs,
        sweep_conns,
        only: args.only.clone(),
        prefetch: args.prefetch,
        json: args.json,
        cores,
    })
}

/// The tracker of a case with `conns` connections. The limit has 64 records of slack per
/// handle: each worker's pool cache takes free records 32 at a time, and records cached by
/// one worker are not available to another, so with a limit of exactly `conns` a worker can
/// be refused (`refused_table_full`) while another still caches free records.
fn config(conns: u32, workers: usize) -> CtConfig {
    CtConfig {
        max_conns: conns + 64 * (workers as u32 + 1),
        hash_seed: Some(SEED),
        workers,
        ..CtConfig::default()
    }
}

/// Runs `f(t)` on `n` threads pinned to cores in order, all released together.
fn on_threads<R: Send>(cores: &[CoreId], n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                let core = (!cores.is_empty()).then(|| cores[t % cores.len()]);
                s.spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    barrier.wait();
                    f(t)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    })
}

/// A placeholder packet to fill burst arrays with.
fn blank_meta(frames: &FrameBuf) -> Result<PacketMeta, String> {
    let p = parse_frame(frames.get(0)).map_err(|e| format!("benchmark frame: {e:?}"))?;
    Ok(PacketMeta::new(p, 0, true))
}

/// Tracks frames `range` in bursts of 32 at time `now`; returns how many packets got all
/// of `want` in their state (and were not refused a connection).
fn track_all(
    w: &mut CtWorker,
    frames: &FrameBuf,
    range: std::ops::Range<usize>,
    now: u64,
    want: u8,
) -> u64 {
    if range.is_empty() {
        return 0;
    }
    let Ok(blank) = blank_meta(frames) else {
        return 0;
    };
    let mut metas = [blank; BURST];
    let mut ok = 0u64;
    let mut i = range.start;
    while i < range.end {
        let mut k = 0;
        while k < BURST && i < range.end {
            if let Ok(p) = parse_frame(frames.get(i)) {
                metas[k].reset(&p, 0, true);
                k += 1;
            }
            i += 1;
        }
        w.process_burst(&mut metas[..k], now);
        ok += metas[..k]
            .iter()
            .filter(|m| m.result.state.has(want) && m.result.refused.is_none())
            .count() as u64;
    }
    ok
}

/// Involuntary context switches of the calling thread so far (0 if unknown). A measuring
/// thread that was preempted (by other processes on this shared machine) shows it here.
fn preemptions() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of the calling thread, in seconds (0 if the clock reads zero).
fn thread_cpu_secs() -> f64 {
    crate::step::thread_cpu_secs().unwrap_or(0.0)
}

/// Wall time, CPU time and involuntary context switches of the calling thread over a
/// measurement. On this shared 2-core machine another process sometimes runs on a
/// measuring thread's core; the CPU time and the preemption count show how much.
#[derive(Clone, Copy, Default)]
struct Usage {
    wall: f64,
    cpu: f64,
    preempted: u64,
}

/// Starts measuring the calling thread.
struct Meter {
    t0: Instant,
    cpu0: f64,
    p0: u64,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            p0: preemptions(),
            cpu0: thread_cpu_secs(),
            t0: Instant::now(),
        }
    }

    fn stop(&self) -> Usage {
        let wall = self.t0.elapsed().as_secs_f64();
        Usage {
            wall,
            cpu: thread_cpu_secs() - self.cpu0,
            preempted: preemptions() - self.p0,
        }
    }
}

/// What a lookup loop did.
#[derive(Default)]
struct LoopStats {
    pkts: u64,
    est: u64,
    use_: Usage,
}

impl LoopStats {
    /// Packets per wall-clock second, in millions.
    fn mpps(&self) -> f64 {
        self.pkts as f64 / self.use_.wall / 1e6
    }

    /// Packets per second of the thread's own CPU time, in millions.
    fn oncpu_mpps(&self) -> f64 {
        self.pkts as f64 / self.use_.cpu.max(1e-9) / 1e6
    }
}

/// The measured loop: parse and track `frames` from `start` on, wrapping around, until
/// `dur` has passed or `stop` is set. With `hist`, records each burst's time (ns).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn lookup_loop(
    w: &mut CtWorker,
    frames: &FrameBuf,
    start: usize,
    prefetch: bool,
    now: u64,
    dur: Duration,
    stop: Option<&AtomicBool>,
    mut hist: Option<&mut Histogram<u64>>,
) -> LoopStats {
    if frames.is_empty() {
        return LoopStats::default();
    }
    let Ok(blank) = blank_meta(frames) else {
        return LoopStats::default();
    };
    let n = frames.len();
    let mut pos = start % n;
    let mut metas = [blank; BURST];
    let mut st = LoopStats::default();
    let meter = Meter::start();
    let t0 = Instant::now();
    loop {
        for _ in 0..CHECK_EVERY {
            let tb = hist.as_ref().map(|_| Instant::now());
            if prefetch {
                let mut k = 0;
                for _ in 0..BURST {
                    if let Ok(p) = parse_frame(frames.get(pos)) {
                        metas[k].reset(&p, 0, true);
                        k += 1;
                    }
                    pos += 1;
                    if pos == n {
                        pos = 0;
                    }
                }
                w.process_burst(&mut metas[..k], now);
                for m in &metas[..k] {
                    st.est += (m.result.state.0 & CtState::EST != 0) as u64;
                }
            } else {
                for _ in 0..BURST {
                    if let Ok(p) = parse_frame(frames.get(pos)) {
                        let r = w.process(&p, 0, true, now);
                        st.est += (r.state.0 & CtState::EST != 0) as u64;
                    }
                    pos += 1;
                    if pos == n {
                        pos = 0;
                    }
                }
            }
            st.pkts += BURST as u64;
            if let (Some(h), Some(tb)) = (hist.as_deref_mut(), tb) {
                h.saturating_record(tb.elapsed().as_nanos() as u64);
            }
        }
        let e = t0.elapsed();
        if e >= dur || stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            st.use_ = meter.stop();
            return st;
        }
    }
}

/// The first packet of every flow, then (for established cases) the replies and the TCP
/// handshake's last ACK: every connection ends up established.
fn warm_up(
    ct: &Conntrack,
    flows: &[u32],
    firsts: Option<&FrameBuf>,
    now: u64,
) -> Result<(), String> {
    let own;
    let firsts = match firsts {
        Some(f) => f,
        None => {
            own = FrameBuf::of_flows(flows.iter().copied(), Kind::First);
            &own
        }
    };
    let mut w = ct.worker(0);
    let before = ct.n_conns();
    let created = track_all(&mut w, firsts, 0..firsts.len(), now, CtState::NEW);
    let replies = FrameBuf::of_flows(flows.iter().copied(), Kind::FirstReply);
    let est_rpl = track_all(
        &mut w,
        &replies,
        0..replies.len(),
        now,
        CtState::EST | CtState::RPL,
    );
    drop(replies);
    let tcp: Vec<u32> = flows.iter().copied().filter(|&i| is_tcp(i)).collect();
    let acks = FrameBuf::of_flows(tcp.iter().copied(), Kind::Orig);
    let est = track_all(&mut w, &acks, 0..acks.len(), now, CtState::EST);
    let n = flows.len() as u64;
    if created != n
        || est_rpl != n
        || est != tcp.len() as u64
        || (ct.n_conns() - before) as u64 != n
    {
        return Err(format!(
            "warm-up: {created} of {n} created, {est_rpl} replies established, {est} of {} \
             TCP handshakes completed, {} connections in the table; counters: {}",
            tcp.len(),
            ct.n_conns(),
            counters_str(ct)
        ));
    }
    Ok(())
}

/// The tracker's non-zero counters, for error messages.
fn counters_str(ct: &Conntrack) -> String {
    let c = ct.counters();
    let v: Vec<String> = c
        .fields()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    v.join(" ")
}

/// Resident set size of the process, in bytes (`VmRSS` of `/proc/self/status`).
fn rss_bytes() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_string())
}

/// All cases of one connection count.
fn run_conns(plan: &Plan, n: u32, prog: &mut Progress, out: &impl Fn(Line)) -> Result<(), String> {
    let need_firsts = plan.wants(Bench::Memory) || plan.wants(Bench::Create);
    let firsts = if need_firsts {
        prog.note(&format!("building {n} first-packet frames"));
        Some(FrameBuf::of_flows(0..n, Kind::First))
    } else {
        None
    };
    if plan.wants(Bench::Memory) {
        prog.case(&format!("memory conns={n}"));
        out(memory_case(n, firsts.as_ref().expect("built above"))?);
    }
    if plan.wants(Bench::Create) {
        let mut base: Option<(f64, f64)> = None;
        for &t in &plan.threads {
            prog.case(&format!("create conns={n} threads={t}"));
            let (line, rates) = create_case(plan, n, t, firsts.as_ref().expect("built"), base)?;
            if t == 1 {
                base = Some(rates);
            }
            out(line);
        }
    }
    drop(firsts);
    if plan.wants(Bench::Established) {
        established_cases(plan, n, prog, out)?;
    }
    Ok(())
}

fn memory_case(n: u32, firsts: &FrameBuf) -> Result<Line, String> {
    let before = rss_bytes()?;
    let ct = Conntrack::new(config(n, 1));
    let empty = rss_bytes()?;
    let mut w = ct.worker(0);
    let created = track_all(&mut w, firsts, 0..firsts.len(), T0, CtState::NEW);
    let after = rss_bytes()?;
    if created != n as u64 || ct.n_conns() != n {
        return Err(format!(
            "memory: created {created} of {n} connections ({} in the table; counters: {})",
            ct.n_conns(),
            counters_str(&ct)
        ));
    }
    let buckets = ct.table().n_buckets() as u64;
    drop(w);
    drop(ct);
    Ok(Line::new("memory")
        .i("conns", n as u64)
        .f(
            "bytes_per_conn",
            after.saturating_sub(before) as f64 / n as f64,
            1,
        )
        .i("fixed_kib", empty.saturating_sub(before) / 1024)
        .i("buckets", buckets))
}

/// Creates the flows `0..n` split in `t` contiguous shares, one per thread, at `now`.
/// Returns the wall seconds and, per thread, its connections and usage.
fn fill(
    plan: &Plan,
    ct: &Conntrack,
    firsts: &FrameBuf,
    n: u32,
    t: usize,
    now: u64,
) -> Result<(f64, Vec<(u64, Usage)>), String> {
    let before = ct.n_conns();
    let res = on_threads(&plan.cores, t, |i| {
        let lo = n as usize * i / t;
        let hi = n as usize * (i + 1) / t;
        let mut w = ct.worker(i);
        let meter = Meter::start();
        let t0 = Instant::now();
        let created = track_all(&mut w, firsts, lo..hi, now, CtState::NEW);
        let t1 = Instant::now();
        (t0, t1, created, (hi - lo) as u64, meter.stop())
    });
    let created: u64 = res.iter().map(|r| r.2).sum();
    if created != n as u64 || ct.n_conns() - before != n {
        return Err(format!(
            "create: {created} of {n} created ({} in the table; counters: {})",
            ct.n_conns(),
            counters_str(ct)
        ));
    }
    let start = res.iter().map(|r| r.0).min().expect("threads");
    let end = res.iter().map(|r| r.1).max().expect("threads");
    let per = res.iter().map(|r| (r.3, r.4)).collect();
    Ok(((end - start).as_secs_f64(), per))
}

/// New connections per second: fresh tables, filled again after a sweep, repeated until
/// the case's time is used. `base` is the one-thread (fresh, refill) rates.
fn create_case(
    plan: &Plan,
    n: u32,
    t: usize,
    firsts: &FrameBuf,
    base: Option<(f64, f64)>,
) -> Result<(Line, (f64, f64)), String> {
    let (mut wall, mut rewall, mut swall) = (0.0, 0.0, 0.0);
    // Per thread and phase (fresh, refill): connections, wall and CPU seconds.
    let mut per = vec![[(0u64, 0.0f64, 0.0f64); 2]; t];
    let mut reps = 0u32;
    let mut preempted = 0u64;
    let case_start = Instant::now();
    while reps == 0 || case_start.elapsed().as_secs_f64() < plan.secs {
        let ct = Conntrack::new(config(n, t));
        let (w, p) = fill(plan, &ct, firsts, n, t, T0)?;
        // Everything expires: the sweep removes all, the refill recycles the records.
        let later = T0 + 1_000_000_000;
        let s0 = Instant::now();
        let rep = ct.control_handle().sweep_all(later);
        swall += s0.elapsed().as_secs_f64();
        if rep.removed != n as usize || ct.n_conns() != 0 {
            return Err(format!(
                "create: the sweep removed {} of {n} ({} left)",
                rep.removed,
                ct.n_conns()
            ));
        }
        let (rw, rp) = fill(plan, &ct, firsts, n, t, later + 1)?;
        wall += w;
        rewall += rw;
        for (i, acc) in per.iter_mut().enumerate() {
            for (phase, res) in [&p, &rp].into_iter().enumerate() {
                let (conns, u) = res[i];
                acc[phase].0 += conns;
                acc[phase].1 += u.wall;
                acc[phase].2 += u.cpu;
                preempted += u.preempted;
            }
        }
        reps += 1;
    }
    let total = n as f64 * reps as f64;
    let (rate, rerate) = (total / wall, total / rewall);
    // Per-thread rates over wall time and over the thread's CPU time, summed over threads.
    let sum = |phase: usize, cpu: bool| -> f64 {
        per.iter()
            .map(|a| a[phase].0 as f64 / if cpu { a[phase].2 } else { a[phase].1 })
            .sum()
    };
    let mut l = Line::new("create")
        .i("conns", n as u64)
        .i("threads", t as u64)
        .i("conns_per_s", rate as u64)
        .i("refill_conns_per_s", rerate as u64)
        .i("oncpu_conns_per_s", sum(0, true) as u64)
        .i("oncpu_refill_conns_per_s", sum(1, true) as u64);
    if t > 1 {
        l = l
            .i("per_thread", (sum(0, false) / t as f64) as u64)
            .i("refill_per_thread", (sum(1, false) / t as f64) as u64);
        if let Some((b, rb)) = base {
            l = l
                .f("scaling", rate / b, 2)
                .f("refill_scaling", rerate / rb, 2);
        }
    } else {
        l = l.i("sweep_removed_per_s", (total / swall) as u64);
    }
    Ok((
        l.i("reps", reps as u64).i("preempted", preempted),
        (rate, rerate),
    ))
}

/// Established-lookup cases of one connection count: one table, every flow established,
/// measured with each thread count and prefetch on/off.
fn established_cases(
    plan: &Plan,
    n: u32,
    prog: &mut Progress,
    out: &impl Fn(Line),
) -> Result<(), String> {
    prog.note(&format!("established conns={n}: warming up"));
    let ct = Conntrack::new(config(n, plan.max_threads()));
    let flows: Vec<u32> = (0..n).collect();
    warm_up(&ct, &flows, None, T0)?;
    prog.note(&format!(
        "established conns={n}: building the shuffled frame mix (AnonHugePages {} KiB)",
        anon_huge_kib()
    ));
    let all = established_mix(&flows, SEED);
    let mut base: [Option<f64>; 2] = [None, None];
    let mut threads = plan.threads.clone();
    threads.sort_unstable();
    for &t in &threads {
        let mut halves: Vec<FrameBuf> = Vec::new();
        for (prefetch, shared) in plan.established_cases(t) {
            let sharing = if t == 1 {
                ""
            } else if shared {
                "shared"
            } else {
                "disjoint"
            };
            prog.case(&format!(
                "established conns={n} threads={t} prefetch={} {sharing}",
                if prefetch { "on" } else { "off" }
            ));
            if t > 1 && !shared && halves.is_empty() {
                // Contiguous shares: the warm-up created the flows in order, so each
                // thread's records are contiguous in the pool too (no false sharing of
                // record cache lines between the threads, as when each worker creates its
                // own connections from its own pool cache batches).
                halves = (0..t)
                    .map(|i| {
                        let share = &flows[flows.len() * i / t..flows.len() * (i + 1) / t];
                        established_mix(share, SEED + i as u64)
                    })
                    .collect();
            }
            let created_before = ct.counters().created;
            let res = on_threads(&plan.cores, t, |i| {
                let mut w = ct.worker(i);
                let (frames, start) = match (t, shared) {
                    (1, _) | (_, true) => (&all, all.len() * i / t),
                    _ => (&halves[i], 0),
                };
                lookup_loop(&mut w, frames, start, prefetch, T0, plan.dur(), None, None)
            });
            let pkts: u64 = res.iter().map(|r| r.pkts).sum();
            let est: u64 = res.iter().map(|r| r.est).sum();
            if est != pkts || ct.counters().created != created_before {
                return Err(format!(
                    "established conns={n} threads={t}: only {est} of {pkts} packets were \
                     established ({} connections created during the run)",
                    ct.counters().created - created_before
                ));
            }
            let mpps: f64 = res.iter().map(LoopStats::mpps).sum();
            prog.note(&format!(
                "measured {pkts} packets in {:.2} s",
                res.iter().map(|r| r.use_.wall).fold(0.0, f64::max)
            ));
            let mut l = Line::new("established")
                .i("conns", n as u64)
                .i("threads", t as u64)
                .s("prefetch", if prefetch { "on" } else { "off" });
            if t > 1 {
                l = l.s("flows", sharing);
            }
            l = l.f("mpps", mpps, 2).f(
                "oncpu_mpps",
                res.iter().map(LoopStats::oncpu_mpps).sum::<f64>(),
                2,
            );
            let preempted: u64 = res.iter().map(|r| r.use_.preempted).sum();
            if t == 1 {
                base[prefetch as usize] = Some(mpps);
            } else {
                let min = res.iter().map(LoopStats::mpps).fold(f64::MAX, f64::min);
                l = l
                    .f("per_thread", mpps / t as f64, 2)
                    .f("per_thread_min", min, 2);
                if let Some(b) = base[prefetch as usize] {
                    l = l.f("scaling", mpps / b, 2);
                }
            }
            out(l.i("preempted", preempted));
        }
    }
    Ok(())
}

/// Lookups on one core while the control handle sweeps the table on the other.
/// `half`: half the connections have expired and the pass removes them; the lookups go to
/// the other half. Otherwise nothing has expired and passes repeat for the case's time.
fn sweep_case(plan: &Plan, n: u32, half: bool, prog: &Progress) -> Result<Line, String> {
    let ct = Conntrack::new(config(n, 1));
    // TCP established connections live 86,400 s: T1 is beyond that, so at T1 everything
    // warmed up at T0 has expired and everything warmed up at T1 has not.
    const T1: u64 = T0 + 100_000_000;
    let (lookup_flows, now) = if half {
        let even: Vec<u32> = (0..n).filter(|i| i % 2 == 0).collect();
        let odd: Vec<u32> = (0..n).filter(|i| i % 2 == 1).collect();
        prog.note(&format!("sweep conns={n}: warming up (half expiring)"));
        warm_up(&ct, &even, None, T0)?;
        warm_up(&ct, &odd, None, T1)?;
        (odd, T1)
    } else {
        prog.note(&format!("sweep conns={n}: warming up"));
        let all: Vec<u32> = (0..n).collect();
        warm_up(&ct, &all, None, T0)?;
        (all, T0)
    };
    let frames = established_mix(&lookup_flows, SEED);
    let new_hist = || Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
    let core = |i: usize| plan.cores.get(i % plan.cores.len().max(1)).copied();

    // Alone.
    let mut h_alone = new_hist();
    let alone = std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(c) = core(0) {
                core_affinity::set_for_current(c);
            }
            let mut w = ct.worker(0);
            lookup_loop(
                &mut w,
                &frames,
                0,
                true,
                now,
                plan.dur(),
                None,
                Some(&mut h_alone),
            )
        })
        .join()
        .expect("lookup thread")
    });

    // During the sweep.
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    let mut h_during = new_hist();
    let mut h_step = new_hist();
    let n_buckets = ct.table().n_buckets();
    let (during, (passes, pass_secs, removed, sweep_preempted)) = std::thread::scope(|s| {
        let lookups = s.spawn(|| {
            if let Some(c) = core(0) {
                core_affinity::set_for_current(c);
            }
            let mut w = ct.worker(0);
            barrier.wait();
            lookup_loop(
                &mut w,
                &frames,
                frames.len() / 2,
                true,
                now,
                Duration::MAX,
                Some(&stop),
                Some(&mut h_during),
            )
        });
        let sweeper = s.spawn(|| {
            if let Some(c) = core(1) {
                core_affinity::set_for_current(c);
            }
            let mut w = ct.control_handle();
            barrier.wait();
            let meter = Meter::start();
            let t0 = Instant::now();
            let (mut passes, mut removed, mut visited) = (0u32, 0usize, 0usize);
            loop {
                let ts = Instant::now();
                let rep = w.sweep_expired(now, SWEEP_STEP);
                h_step.saturating_record(ts.elapsed().as_nanos() as u64);
                removed += rep.removed;
                visited += rep.buckets;
                if visited >= n_buckets * (passes as usize + 1) {
                    passes += 1;
                    // One pass when it removes; otherwise repeat passes for the case's time.
                    if half || t0.elapsed() >= plan.dur() {
                        break;
                    }
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            (passes, secs, removed, meter.stop().preempted)
        });
        let d = lookups.join().expect("lookup thread");
        (d, sweeper.join().expect("sweep thread"))
    });
    let want_removed = if half { n as usize / 2 } else { 0 };
    if removed != want_removed || during.est != during.pkts || alone.est != alone.pkts {
        return Err(format!(
            "sweep conns={n}: removed {removed} (want {want_removed}); established \
             {} of {} alone, {} of {} during the sweep",
            alone.est, alone.pkts, during.est, during.pkts
        ));
    }
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    Ok(Line::new("sweep")
        .i("conns", n as u64)
        .s("expired", if half { "half" } else { "none" })
        .f("mpps_alone", alone.mpps(), 2)
        .f("mpps_during_sweep", during.mpps(), 2)
        .f("oncpu_mpps_alone", alone.oncpu_mpps(), 2)
        .f("oncpu_mpps_during_sweep", during.oncpu_mpps(), 2)
        .f("sweep_ms", pass_secs * 1e3 / passes as f64, 1)
        .i("passes", passes as u64)
        .i("removed", removed as u64)
        .i("step_buckets", SWEEP_STEP as u64)
        .f("max_step_us", us(&h_step, 1.0), 1)
        .f("p999_burst_us_alone", us(&h_alone, 0.999), 2)
        .f("p999_burst_us_during", us(&h_during, 0.999), 2)
        .f("max_burst_us_alone", us(&h_alone, 1.0), 1)
        .f("max_burst_us_during", us(&h_during, 1.0), 1)
        .i("preempted_alone", alone.use_.preempted)
        .i("preempted_during", during.use_.preempted)
        .i("preempted_sweeper", sweep_preempted))
}

/// Anonymous memory in huge pages (`AnonHugePages` of `/proc/self/smaps_rollup`), in KiB.
fn anon_huge_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("AnonHugePages:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
