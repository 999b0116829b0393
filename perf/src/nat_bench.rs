//! `ctgate-perf nat`: the cost of NAT in the tracker, per core (issue 5's benchmark).
//!
//! For each connection count N, on one thread, with real frames (perf/src/frames.rs):
//!
//! * `bench=nat_create conns=N plain_conns_per_s=… nat_conns_per_s=… cost_ratio=…`: every
//!   packet a new flow (parse + tracker), without NAT and with SNAT to a /24 pool (keep the
//!   port when free, else probe 1024–65535); `cost_ratio` = NAT time per connection / plain
//!   time per connection (target ≤ 1.5).
//! * `bench=nat_established conns=N plain_mpps=… nat_mpps=… cost_ratio=…`: established
//!   packets of the N flows in shuffled order, in bursts of 32; each packet is copied from
//!   the frame store into a scratch buffer (as a NIC would deliver it), parsed, tracked and,
//!   for NAT, rewritten with incremental checksums (`nat::apply`); `cost_ratio` = NAT time
//!   per packet / plain time per packet (target ≤ 1.2).
//!
//! Rates are computed over the measuring thread's on-CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`; wall time where it reads zero), so that
//! time the scheduler gives other processes on a shared machine does not count.
//!
//! `--json` prints the same fields as one JSON object per line; `--quick` measures 1000 and
//! 5000 connections briefly (a few seconds); progress goes to stderr (`[nat 2/4 3.1s] …`).
//! `--plot DIR` draws `DIR/nat_create.svg` (connections/s against connections, plain vs
//! SNAT) and `DIR/nat_established.svg` (Mpps against connections, plain vs SNAT).

use crate::flow_frames::{FrameBuf, Kind, Rng, SLOT};
use crate::plot::{self, Chart, Progress, Record, Series, XScale, YScale};
use clap::Args as ClapArgs;
use ctgate::conntrack::{Conntrack, CtConfig, CtWorker, PacketMeta, ReplyTuples};
use ctgate::nat::{self, NatRange, NatSpec};
use ctgate::wire::parse::parse_frame;
use std::path::PathBuf;
use std::time::Instant;

const BURST: usize = 32;

/// Arguments of `ctgate-perf nat`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Connection counts (repeatable or comma separated).
    #[arg(long = "conns", value_delimiter = ',', default_values_t = vec![1000u32, 1_000_000])]
    pub conns: Vec<u32>,
    /// Seconds per measurement (at least one full pass is made).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Small and short, for smoke tests (1000 and 5000 connections, 0.3 s).
    #[arg(long)]
    pub quick: bool,
    /// One JSON object per line instead of key=value.
    #[arg(long)]
    pub json: bool,
    /// Also draw the figures as SVG charts in this directory.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

fn tracker(n: u32) -> Conntrack {
    Conntrack::new(CtConfig {
        max_conns: n.max(1024) * 2,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: true,
        hash_seed: Some(42),
    })
}

fn pool() -> NatSpec {
    NatSpec::snat(
        "192.0.2.0-192.0.2.255"
            .parse::<NatRange>()
            .expect("constant range"),
    )
}

/// Creates the N flows (first packet each); returns the seconds it took.
/// A measurement's start: on-CPU time of this thread, and wall time.
struct OnCpu {
    cpu: Option<f64>,
    wall: Instant,
}

impl OnCpu {
    fn start() -> OnCpu {
        OnCpu {
            cpu: crate::step::thread_cpu_secs(),
            wall: Instant::now(),
        }
    }

    fn wall(&self) -> f64 {
        self.wall.elapsed().as_secs_f64()
    }

    /// Seconds on the CPU since the start (wall seconds if unknown).
    fn elapsed(&self) -> f64 {
        match (self.cpu, crate::step::thread_cpu_secs()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => self.wall(),
        }
    }
}

fn create(ct: &Conntrack, frames: &FrameBuf, nat: Option<&dyn ReplyTuples>) -> Result<f64, String> {
    let mut w = ct.worker(0);
    let p0 = parse_frame(frames.get(0)).map_err(|e| format!("frame: {e:?}"))?;
    let mut metas = [PacketMeta::new(p0, 0, true); BURST];
    let specs: Vec<&dyn ReplyTuples> = nat.into_iter().collect();
    let t0 = OnCpu::start();
    let mut i = 0;
    while i < frames.len() {
        let mut k = 0;
        while k < BURST && i < frames.len() {
            if let Ok(p) = parse_frame(frames.get(i)) {
                metas[k].reset(&p, 0, true);
                metas[k].nat = nat.map(|_| 0);
                k += 1;
            }
            i += 1;
        }
        w.process_burst_nat(&mut metas[..k], &specs, 1);
    }
    let secs = t0.elapsed();
    if ct.n_conns() as usize != frames.len() {
        return Err(format!(
            "created {} of {} connections ({:?})",
            ct.n_conns(),
            frames.len(),
            ct.counters()
        ));
    }
    Ok(secs)
}

/// Established packets for `secs` (at least one pass); returns packets per second.
fn established(ct: &Conntrack, frames: &FrameBuf, nat: bool, secs: f64) -> Result<f64, String> {
    let mut w: CtWorker = ct.worker(0);
    let p0 = parse_frame(frames.get(0)).map_err(|e| format!("frame: {e:?}"))?;
    let mut metas = [PacketMeta::new(p0, 0, true); BURST];
    let mut bufs = [[0u8; SLOT]; BURST];
    let mut lens = [0usize; BURST];
    let mut packets = 0u64;
    let mut rewritten = 0u64;
    let t0 = OnCpu::start();
    loop {
        let mut i = 0;
        while i < frames.len() {
            let k = BURST.min(frames.len() - i);
            for j in 0..k {
                let f = frames.get(i + j);
                bufs[j][..f.len()].copy_from_slice(f);
                lens[j] = f.len();
                if let Ok(p) = parse_frame(&bufs[j][..lens[j]]) {
                    metas[j].reset(&p, 0, true);
                }
            }
            w.process_burst(&mut metas[..k], 2);
            if nat {
                for j in 0..k {
                    if let Ok(rw) = nat::apply(
                        &mut bufs[j][..lens[j]],
                        &metas[j].parsed,
                        &metas[j].result,
                        ct,
                    ) {
                        rewritten += u64::from(!rw.is_empty());
                    }
                }
            }
            packets += k as u64;
            i += k;
        }
        if t0.wall() >= secs {
            break;
        }
    }
    let el = t0.elapsed();
    if nat && rewritten != packets {
        return Err(format!(
            "only {rewritten} of {packets} packets were translated"
        ));
    }
    Ok(packets as f64 / el)
}

/// Runs the NAT benchmark.
pub fn run(args: &Args) -> Result<(), String> {
    let conns: Vec<u32> = if args.quick {
        vec![1000, 5000]
    } else {
        args.conns.clone()
    };
    let secs = if args.quick { 0.3 } else { args.seconds };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    if conns.is_empty() {
        return Err("--conns needs at least one connection count".into());
    }
    if let Some(bad) = conns.iter().find(|&&n| !(1..1 << 30).contains(&n)) {
        return Err(format!("--conns {bad}: must be between 1 and 2^30-1"));
    }
    if let Some(dir) = &args.plot {
        plot::prepare_dir(dir)?;
    }
    let spec = pool();
    let mut prog = Progress::new("nat", 2 * conns.len());
    // Figures for --plot: (conns, plain, nat) per case.
    let mut created: Vec<(f64, f64, f64)> = Vec::new();
    let mut est_mpps: Vec<(f64, f64, f64)> = Vec::new();
    for &n in &conns {
        prog.case(&format!("create conns={n}"));
        let firsts = FrameBuf::of_flows(0..n, Kind::First);
        let replies = FrameBuf::of_flows(0..n, Kind::FirstReply);
        let mut order: Vec<u32> = (0..n).collect();
        Rng::new(7).shuffle(&mut order);
        let est = FrameBuf::of_flows(order.iter().copied(), Kind::Orig);

        // Creation: best of a few passes (fresh tracker each).
        let passes = if args.quick {
            2
        } else if n <= 100_000 {
            20
        } else {
            3
        };
        let (mut plain, mut natc) = (f64::MAX, f64::MAX);
        for _ in 0..passes {
            plain = plain.min(create(&tracker(n), &firsts, None)?);
            natc = natc.min(create(&tracker(n), &firsts, Some(&spec))?);
        }
        let (plain_rate, nat_rate) = (n as f64 / plain, n as f64 / natc);
        Record::new("nat_create")
            .int("conns", n)
            .int("threads", 1)
            .int("plain_conns_per_s", plain_rate as u64)
            .int("nat_conns_per_s", nat_rate as u64)
            .float("cost_ratio", natc / plain, 2)
            .print(args.json);
        created.push((f64::from(n), plain_rate, nat_rate));

        // Established: the same flows, without and with NAT, both ways answered first.
        prog.case(&format!("established conns={n}"));
        let plain_ct = tracker(n);
        create(&plain_ct, &firsts, None)?;
        let nat_ct = tracker(n);
        create(&nat_ct, &firsts, Some(&spec))?;
        // Replies make UDP bidirectional and TCP established. The plain tracker takes them as
        // they are; the NAT tracker needs them addressed to the translated tuples.
        answer(&plain_ct, &replies, false)?;
        answer(&nat_ct, &replies, true)?;
        let p = established(&plain_ct, &est, false, secs)?;
        let q = established(&nat_ct, &est, true, secs)?;
        Record::new("nat_established")
            .int("conns", n)
            .int("threads", 1)
            .float("plain_mpps", p / 1e6, 2)
            .float("nat_mpps", q / 1e6, 2)
            .float("cost_ratio", p / q, 2)
            .print(args.json);
        est_mpps.push((f64::from(n), p / 1e6, q / 1e6));
    }
    prog.note("done");
    if let Some(dir) = &args.plot {
        plot::write_all(dir, &charts(&created, &est_mpps))?;
    }
    Ok(())
}

/// The two --plot charts from (conns, plain, nat) figures.
fn charts(created: &[(f64, f64, f64)], est: &[(f64, f64, f64)]) -> Vec<(&'static str, Chart)> {
    let pair = |rows: &[(f64, f64, f64)]| {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        vec![
            Series {
                name: "plain".into(),
                points: rows.iter().map(|r| (r.0, r.1)).collect(),
            },
            Series {
                name: "SNAT".into(),
                points: rows.iter().map(|r| (r.0, r.2)).collect(),
            },
        ]
    };
    vec![
        (
            "nat_create",
            Chart {
                title: "NAT: new connections/s, 1 thread".into(),
                x_label: "connections".into(),
                y_label: "connections/s".into(),
                x_scale: XScale::Log10,
                y_scale: YScale::Linear,
                series: pair(created),
            },
        ),
        (
            "nat_established",
            Chart {
                title: "NAT: established packets, 1 thread".into(),
                x_label: "connections".into(),
                y_label: "Mpps".into(),
                x_scale: XScale::Log10,
                y_scale: YScale::Linear,
                series: pair(est),
            },
        ),
    ]
}

/// Sends each flow's first reply; for NAT conntrack, rewritten to the translated tuple
/// (the reverse of the connection's reply key) so it is found as the reply.
fn answer(ct: &Conntrack, replies: &FrameBuf, nat: bool) -> Result<(), String> {
    let mut w = ct.worker(0);
    let mut buf = [0u8; SLOT];
    for i in 0..replies.len() {
        let f = replies.get(i);
        buf[..f.len()].copy_from_slice(f);
        let frame = &mut buf[..f.len()];
        let p = parse_frame(frame).map_err(|e| format!("reply frame: {e:?}"))?;
        let p = if nat {
            // The tracker's view of this reply before translation: its original tuple's
            // connection tells where SNAT put the client.
            let orig = ctgate::conntrack::ConnKey::from_packet(&p, 0).reversed();
            let h = ct.table().hash_key(&orig);
            let hit = ct
                .table()
                .lookup(&orig.to_words(), h, 1)
                .ok_or_else(|| format!("flow {i} has no connection"))?;
            let reply_key = ct
                .snapshot(hit.idx, hit.gen)
                .ok_or_else(|| format!("flow {i} vanished"))?
                .reply;
            nat::rewrite_to(frame, &p, &reply_key).map_err(|e| format!("reply rewrite: {e}"))?;
            parse_frame(frame).map_err(|e| format!("reply frame: {e:?}"))?
        } else {
            p
        };
        let r = w.process(&p, 0, true, 1);
        if !r.state.has(ctgate::conntrack::CtState::EST) {
            return Err(format!("reply of flow {i} was {}", r.state));
        }
    }
    Ok(())
}
