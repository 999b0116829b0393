//! `ctgate-perf core`: the connection tracker alone, no DPDK, no packet I/O.
//!
//! Every measured packet is a real frame (Ethernet/IPv4/UDP, about one flow in four TCP,
//! see [`crate::flow_frames`]) read from a buffer built up front, parsed with
//! `ctgate::wire::parse::parse_frame` and then tracked (zone 0, `commit`), so parsing is
//! part of the measured work. Cases, each printing one `key=value` line (or one JSON object
//! with `--json`):
//!
//! * `bench=memory conns=N bytes_per_conn=B fixed_kib=K buckets=NB`: the process's resident
//!   memory (`VmRSS` plus `HugetlbPages`, after returning freed heap memory to the OS)
//!   before building a tracker for N connections and after creating them, divided by N.
//!   `fixed_kib` is what the empty tracker already took.
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
//! * `bench=refuse conns=N/2 refused=K mpps=M ns_per_refusal=NS`: half the flows fill a
//!   table whose `maxconns` is N/2, all of them live; then the other half are offered
//!   again and again, every one refused (a flood at the limit), with the clock moving a
//!   millisecond per 1,000 packets: refused packets per second on one thread.
//! * `bench=sweep conns=N expired=none|half ...`: lookups on one core while the control
//!   handle sweeps the whole table on the other in bounded steps of 1024 buckets; lookup
//!   Mpps without and during the sweep, the pass time, the longest step and the per-burst
//!   latency tail of the lookup thread.
//!
//! `--pages huge` puts each tracker's buckets and record pool on the kernel's hugetlb
//! pool (as the gateway does when EAL has hugepages), falling back to 4 KiB pages when the
//! pool has no room; the memory, create, refuse and established lines end with `backing=hugepages`,
//! `pages` or `heap`: where the memory really came from. The default, `small`, is 4 KiB
//! pages offered to transparent huge pages.
//!
//! Rates are per wall-clock second. Because this runs on shared machines, each line also
//! carries `preempted` (involuntary context switches of the measuring threads) and
//! `oncpu_*` rates (per second of the measuring threads' own CPU time): when `preempted`
//! is not near zero another process took CPU time from the benchmark, and the `oncpu_`
//! figure is the one to trust. Per-thread rates are summed over threads. The lines of
//! cases with more than one thread also carry `xcore_ns`: what moving a cache line
//! between CPUs 0 and 1 cost during the case (the median of one sample every half
//! second, or four a case when shorter, [`crate::xcore`]; on the development VM ~30,
//! ~170 or ~450 ns, and what the threads share costs accordingly; each sample takes up
//! to a few milliseconds of CPU from the threads).
//!
//! `--plot DIR` draws what was just measured: `DIR/core_create.svg` (new connections/s
//! against threads, one series per connection count) and `DIR/core_established.svg`
//! (established Mpps against connections on a log axis, one thread, prefetch on and off).
//!
//! Threads are pinned to cores in order (thread t on core t mod ncores). The tracker clock
//! is fixed for each phase (nothing expires unless a case says so).

mod create;
mod established;
mod measure;
mod memory;
mod refuse;
mod sweep;
mod track;

use std::time::Duration;

use clap::ValueEnum;
use core_affinity::CoreId;
use ctgate::conntrack::{Conntrack, CtConfig};
use ctgate::dpdk::PageSize;

use crate::flow_frames::{FrameBuf, Kind};
use crate::plot::{Progress, Record};

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
    /// Pages of the tracker's buckets and record pool: `small` (4 KiB, offered to
    /// transparent huge pages) or `huge` (the kernel's hugetlb pool, falling back to small
    /// pages when it has no room; the lines' `backing` says which was used).
    #[arg(long, value_enum, default_value = "small")]
    pages: Pages,
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
    Refuse,
}

/// `--pages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pages {
    Small,
    Huge,
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
    pages: PageSize,
}

impl Plan {
    fn wants(&self, b: Bench) -> bool {
        self.only.is_empty() || self.only.contains(&b)
    }

    fn dur(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    /// How often a multi-thread case samples `xcore_ns`: every half second, or four
    /// times in a shorter case.
    fn xcore_every(&self) -> Duration {
        Duration::from_millis(500).min(self.dur() / 4)
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
        if self.wants(Bench::Refuse) {
            per_n += 1;
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

    /// `xcore_ns`: what moving a cache line between CPUs 0 and 1 cost during a case
    /// whose threads share lines (the median of its samples, [`crate::xcore::Sampler`]);
    /// `-` when none was taken.
    fn xcore(self, ns: Option<f64>) -> Line {
        match ns {
            Some(ns) => self.i("xcore_ns", ns.round() as u64),
            None => self.s("xcore_ns", "-"),
        }
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

    /// The line as key=value or JSON ([`Record`]'s rendering).
    fn render(&self, json: bool) -> String {
        let mut r = Record::new(self.text("bench").unwrap_or("core"));
        for (k, v) in self.0.iter().filter(|(k, _)| *k != "bench") {
            r = match v {
                V::S(s) => r.str(k, *s),
                V::I(i) => r.int(k, *i),
                V::F(f, d) => r.float(k, *f, *d),
            };
        }
        r.render(json)
    }
}

/// Runs `ctgate-perf core`.
pub fn run(args: &Args) -> Result<(), String> {
    let plan = resolve(args)?;
    if let Some(dir) = &args.plot {
        crate::plot::prepare_dir(dir)?;
    }
    let mut prog = Progress::new("core", plan.n_cases());
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
                out(sweep::sweep_case(&plan, n, half, &prog)?);
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
    use crate::plot::{Chart, Series, XScale, YScale};
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
                y_scale: YScale::Linear,
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
                y_scale: YScale::Linear,
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
        pages: match args.pages {
            Pages::Small => PageSize::Small,
            Pages::Huge => PageSize::Huge,
        },
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

/// The tracker of a case: [`config`] on the plan's pages.
fn tracker(plan: &Plan, conns: u32, workers: usize) -> Conntrack {
    Conntrack::with_pages(config(conns, workers), plan.pages)
}

/// All cases of one connection count.
fn run_conns(plan: &Plan, n: u32, prog: &mut Progress, out: &impl Fn(Line)) -> Result<(), String> {
    let need_firsts =
        plan.wants(Bench::Memory) || plan.wants(Bench::Create) || plan.wants(Bench::Refuse);
    let firsts = if need_firsts {
        prog.note(&format!("building {n} first-packet frames"));
        Some(FrameBuf::of_flows(0..n, Kind::First))
    } else {
        None
    };
    if plan.wants(Bench::Memory) {
        prog.case(&format!("memory conns={n}"));
        out(memory::memory_case(
            plan,
            n,
            firsts.as_ref().expect("built above"),
        )?);
    }
    if plan.wants(Bench::Create) {
        let mut base: Option<(f64, f64)> = None;
        for &t in &plan.threads {
            prog.case(&format!("create conns={n} threads={t}"));
            let (line, rates) =
                create::create_case(plan, n, t, firsts.as_ref().expect("built"), base)?;
            if t == 1 {
                base = Some(rates);
            }
            out(line);
        }
    }
    if plan.wants(Bench::Refuse) {
        prog.case(&format!("refuse conns={n}"));
        out(refuse::refuse_case(
            plan,
            n,
            firsts.as_ref().expect("built"),
        )?);
    }
    drop(firsts);
    if plan.wants(Bench::Established) {
        established::established_cases(plan, n, prog, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(argv: &[&str]) -> Plan {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let cli = Cli::try_parse_from(std::iter::once("core").chain(argv.iter().copied()))
            .expect("arguments");
        resolve(&cli.a).expect("plan")
    }

    #[test]
    fn pages_default_to_small_and_huge_is_asked_for() {
        assert_eq!(plan_of(&["--quick"]).pages, PageSize::Small);
        assert_eq!(plan_of(&["--pages", "small"]).pages, PageSize::Small);
        assert_eq!(plan_of(&["--pages", "huge"]).pages, PageSize::Huge);
    }

    #[test]
    fn memory_line_ends_with_the_tables_backing() {
        let n = 2000;
        let firsts = FrameBuf::of_flows(0..n, Kind::First);
        let small = memory::memory_case(&plan_of(&["--pages", "small"]), n, &firsts)
            .expect("memory case")
            .render(false);
        assert!(
            small.starts_with("bench=memory conns=2000 bytes_per_conn=")
                && small.ends_with(" backing=pages"),
            "{small}"
        );
        // Huge pages when the kernel's pool has room, else 4 KiB pages: never the heap.
        let huge = memory::memory_case(&plan_of(&["--pages", "huge"]), n, &firsts)
            .expect("memory case")
            .render(false);
        assert!(
            huge.ends_with(" backing=hugepages") || huge.ends_with(" backing=pages"),
            "{huge}"
        );
    }
}
