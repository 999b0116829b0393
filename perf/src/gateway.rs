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
//! Sources: net_pcap `infinite_rx=1` copies the whole pcap into mbufs of the port's
//! mempool at queue setup, so ctgate is run with `--mbufs N` (both pcaps' packets plus
//! [`POOL_HEADROOM`]) and EAL memory grown to hold them; `source=pcap` is used up to
//! [`PCAP_MAX_PACKETS`] packets (both pcaps together, the size of Open vSwitch 3.1's
//! mempool, so that `compare-ovs` feeds both sides alike). Larger cases use `source=fifo`:
//! each `rx_pcap` is a named pipe that a feeder thread of ctgate-perf (pinned to CPU 0)
//! writes the pcap's records into, over and over; that source has its own ceiling (see
//! `--baseline`).

use std::path::{Path, PathBuf};

use ctgate::control::counter_lines::{field_u64, fields};

use crate::gen_traffic::{self, Proto, CLIENT_MAC, PCAP_PORT0_MAC, PCAP_PORT1_MAC, ROUTER_MAC};
use crate::runner::{find_ctgate, lcore_map, parse_workers};

/// Most packets (both pcaps together) replayed with `infinite_rx=1` (see the module doc).
pub(crate) const PCAP_MAX_PACKETS: usize = 262_144;
/// Mbufs beyond the preloaded packets, for rings, RX bursts, TX buffering and caches.
pub(crate) const POOL_HEADROOM: usize = 16_384;

/// ctgate's `--mbufs` for `preloaded` infinite_rx packets.
pub(crate) fn pcap_mbufs(preloaded: usize) -> usize {
    preloaded + POOL_HEADROOM
}

/// EAL memory (MB) for `mbufs` mbufs of about 2.5 KB and ctgate's other needs, at least
/// `asked`.
pub(crate) fn memory_for(mbufs: usize, asked: u32) -> u32 {
    let need = 512 + (mbufs as u64 * 2560).div_ceil(1 << 20);
    asked.max(need as u32)
}

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
                let r = run_case(args, &bin, &scratch, f, seconds, &prefix, baseline);
                let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));
                match r {
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

/// One output line: ordered key/value pairs.
pub(crate) struct Line(pub(crate) Vec<(&'static str, String)>);

impl Line {
    pub(crate) fn render(&self, json: bool) -> String {
        crate::plot::render_pairs(self.0.iter().map(|(k, v)| (*k, v.as_str())), json)
    }
}

pub(crate) fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The embedded default config with static next hops on both ports and room for `flows`;
/// without its `[[snat]]` rules unless `snat` (the same policy: inside→outside new
/// connections allowed, outside→inside only established ones).
pub(crate) fn config_text(flows: u32, snat: bool) -> Result<String, String> {
    bench_config((2 * u64::from(flows)).max(3_000_000), snat)
}

/// The embedded default configuration for benchmarks: `max_conns` set to `max`, a static
/// `next_hop_mac` on both ports (the clients' MAC inside, the router's outside: no ARP),
/// and the `[[snat]]` rules kept or dropped. Shared by `gateway`, `compare-ovs`, `step`
/// and `datapath` (which adjusts timeouts on top).
pub(crate) fn bench_config(max: u64, snat: bool) -> Result<String, String> {
    let base = ctgate::config::EMBEDDED_DEFAULT;
    let mut out = String::new();
    let mut port = None;
    let mut seen_max = false;
    let mut in_snat = false;
    for l in base.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            in_snat = t == "[[snat]]";
        }
        if in_snat && !snat {
            continue;
        }
        if t.starts_with("max_conns") {
            out.push_str(&format!("max_conns = {max}\n"));
            seen_max = true;
            continue;
        }
        if t.starts_with("# next_hop_mac") {
            continue;
        }
        out.push_str(l);
        out.push('\n');
        if t == "[[port]]" {
            port = Some(());
        }
        if port.is_some() && t.starts_with("port = ") {
            let mac = if t == "port = 0" {
                CLIENT_MAC
            } else {
                ROUTER_MAC
            };
            out.push_str(&format!("next_hop_mac = \"{}\"\n", mac_str(mac)));
            port = None;
        }
    }
    if !seen_max || out.matches("next_hop_mac").count() != 2 || out.contains("[[snat]]") != snat {
        return Err("the embedded default config changed shape: update gateway.rs".into());
    }
    Ok(out)
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
    let mut line = Line(vec![
        (
            "bench",
            if baseline {
                "gateway-baseline"
            } else {
                "gateway"
            }
            .into(),
        ),
        ("flows", flows.to_string()),
        ("workers", "1".into()),
        ("source", "pcap".into()),
    ]);
    let tail = |line: &mut Line| {
        line.0
            .push(("proto", format!("{:?}", args.proto).to_lowercase()));
        line.0.push(("secs", seconds.to_string()));
    };
    let (n_in, n_out) = {
        gen_traffic::check(&g)?;
        let n_out = (g.replies * flows as f64).round() as usize;
        (flows as usize, n_out)
    };
    // net_pcap infinite_rx preloads the pcaps into ctgate's mempool; beyond that, named
    // pipes written in a loop by feeder threads of this process.
    let fifo = n_in + n_out > PCAP_MAX_PACKETS;
    if fifo {
        line.0[3].1 = "fifo".into();
    }
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
    std::fs::write(&conf, config_text(flows, true)?)
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    let mbufs = (!fifo).then(|| pcap_mbufs(n_in + n_out));
    let mut eal: Vec<String> = [
        "--no-huge",
        "-m",
        &memory_for(mbufs.unwrap_or(0), args.memory_mb).to_string(),
        "--no-pci",
        "--file-prefix",
        prefix,
        "--log-level",
        "4",
        "--lcores",
        &lcore_map(1),
        "--vdev",
        &format!("net_pcap0,rx_pcap={}{inf}", rx0.display()),
        "--vdev",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    eal.push(if n_out > 0 {
        format!("net_pcap1,rx_pcap={}{inf}", rx1.display())
    } else {
        "net_null1,no-rx=1".into()
    });
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
    let out = std::process::Command::new(bin)
        .args(&eal)
        .arg("--")
        .args(&app)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()));
    for f in feeders {
        f.stop();
    }
    let out = out?;
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
    let conns = if baseline {
        0
    } else {
        stdout
            .lines()
            .find(|l| l.starts_with("conntrack "))
            .and_then(|l| field_u64(l, "n_conns"))
            .ok_or_else(|| format!("no conntrack line in ctgate's output:\n{stdout}"))?
    };
    if workers.is_empty() {
        return Err(format!("ctgate printed no worker counters:\n{stdout}"));
    }
    let nombuf: u64 = stdout
        .lines()
        .filter(|l| l.starts_with("port="))
        .filter_map(|l| field_u64(l, "rx_nombuf"))
        .sum();
    let per_worker: Vec<f64> = workers
        .iter()
        .map(|w| {
            if w.secs > 0.0 {
                w.tx as f64 / w.secs / 1e6
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = per_worker.iter().sum();
    let dropped: u64 = workers.iter().map(|w| w.dropped).sum();
    // Non-zero drop reasons of the workers, for the record.
    let reasons: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("worker="))
        .flat_map(|l| {
            fields(l)
                .filter(|(k, v)| k.starts_with("drop_") && *v != "0")
                .map(|(k, v)| format!("{}:{v}", &k[5..]))
                .collect::<Vec<_>>()
        })
        .collect();
    line.0.push(("mpps", format!("{total:.3}")));
    line.0.push((
        "per_worker_mpps",
        per_worker
            .iter()
            .map(|m| format!("{m:.3}"))
            .collect::<Vec<_>>()
            .join(","),
    ));
    line.0.push(("conns", conns.to_string()));
    line.0.push(("dropped", dropped.to_string()));
    tail(&mut line);
    line.0.push(("inside_packets", n_in.to_string()));
    line.0.push(("outside_packets", n_out.to_string()));
    line.0.push(("rx_nombuf", nombuf.to_string()));
    line.0.push((
        "drops",
        if reasons.is_empty() {
            "none".into()
        } else {
            reasons.join(",")
        },
    ));
    Ok(line)
}

/// A thread writing a pcap into a named pipe, its records over and over, until the reader
/// goes away.
pub(crate) struct Feeder {
    fifo: PathBuf,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    /// Creates the named pipe `fifo` and starts a thread (on CPU `cpu` if given) that
    /// writes `pcap` into it once a reader opened it: the header once, then the records
    /// forever.
    pub(crate) fn start(pcap: &Path, fifo: &Path, cpu: Option<usize>) -> Result<Feeder, String> {
        let data = std::fs::read(pcap).map_err(|e| format!("{}: {e}", pcap.display()))?;
        let _ = std::fs::remove_file(fifo);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| format!("mkfifo {}: {e}", fifo.display()))?;
        let path = fifo.to_path_buf();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            if let Some(cpu) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            }
            // Blocks until ctgate opens the pipe; fails with EPIPE once it closes it.
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                return;
            };
            // A 1 MiB pipe buffer (the default maximum) instead of 64 KiB: fewer wake-ups
            // of both ends. Best effort.
            let _ = rustix::pipe::fcntl_setpipe_size(&f, 1 << 20);
            // The 24-byte global header once, then the records forever.
            if f.write_all(&data).is_err() {
                return;
            }
            let records = &data[24..];
            while f.write_all(records).is_ok() {}
        });
        Ok(Feeder {
            fifo: fifo.to_path_buf(),
            thread,
        })
    }

    /// After the reader exited: unblocks a writer still waiting for a reader, then joins.
    pub(crate) fn stop(self) {
        use std::os::unix::fs::OpenOptionsExt;
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo);
        drop(r);
        let _ = self.thread.join();
        let _ = std::fs::remove_file(&self.fifo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_static_next_hops_and_parses() {
        for snat in [true, false] {
            let t = config_text(1000, snat).unwrap();
            assert!(t.contains("next_hop_mac = \"02:00:00:00:01:02\""), "{t}");
            assert!(t.contains("next_hop_mac = \"02:00:00:00:02:02\""), "{t}");
            assert_eq!(t.lines().any(|l| l.starts_with("pool =")), snat, "{t}");
            ctgate::config::Config::parse(&t, "gw.toml").unwrap();
        }
    }

    #[test]
    fn json_and_text_lines() {
        let l = Line(vec![("bench", "gateway".into()), ("mpps", "1.5".into())]);
        assert_eq!(l.render(false), "bench=gateway mpps=1.5");
        assert_eq!(l.render(true), "{\"bench\":\"gateway\",\"mpps\":1.5}");
    }
}
