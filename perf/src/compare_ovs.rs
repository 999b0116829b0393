//! `ctgate-perf compare-ovs`: ctgate and Open vSwitch's DPDK datapath (userspace
//! conntrack, NAT) side by side on the same input, ports and cores.
//!
//! # Cases
//!
//! For each case (`--cases plain,ct,snat`) and flow count (`--flows`, default 1k, 100k,
//! 1M) both sides forward the same 64-byte UDP packets between the same two DPDK ports:
//!
//! * port 0 `net_pcap0`: the inside port, receiving one packet per flow (client
//!   10.0.0.x:port → server 198.18.x.y:53, flows shuffled: replaying them in creation
//!   order would flatter memory access);
//! * port 1 `net_pcap1`: the outside port, receiving one reply per flow.
//!
//! Each side forwards inside packets out of port 1 and replies out of port 0; net_pcap
//! without `tx_pcap` drops what it sends (the cheapest sink, like `net_null`; using both
//! net_pcap ports in both directions, instead of a third `net_null` output port, keeps
//! the port set identical on both sides, as ctgate's gateway needs its two ports to send
//! on). Replies are what makes the *established* path the one measured: OVS keeps one-way
//! UDP in `new` until a reply is seen, and ctgate's policy admits outside packets only on
//! established connections. Replies that arrive before their connection exists (during
//! the first pass over the flows) are dropped on both sides; the warm-up covers that.
//!
//! * `plain`: no tracking. OVS `in_port=1,actions=output:2` and back; ctgate's forwarding
//!   mode (`--pair 0:1`).
//! * `ct`: tracking in zone 1, no NAT. OVS:
//!   ```text
//!   table=0 ip,in_port=1 actions=ct(commit,zone=1,table=1)
//!   table=0 ip,in_port=2 actions=ct(zone=1,table=1)
//!   table=1 ct_state=+trk+new,in_port=1     actions=mod_dl_src,mod_dl_dst,dec_ttl,output:2
//!   table=1 ct_state=+trk+est,in_port=1     actions=mod_dl_src,mod_dl_dst,dec_ttl,output:2
//!   table=1 ct_state=+trk+est,in_port=2     actions=mod_dl_src,mod_dl_dst,dec_ttl,output:1
//!   (anything else dropped: fail-mode=secure)
//!   ```
//!   ctgate: the embedded default configuration without its `[[snat]]` rules (same
//!   policy: new connections only from inside, replies established), static next-hop
//!   MACs. The replies go to the clients' own addresses.
//! * `snat`: as `ct`, but OVS's inside flow is `ct(commit,zone=1,nat(src=192.0.2.1),
//!   table=1)` and the outside flow `ct(zone=1,nat,table=1)`; ctgate runs the embedded
//!   default (SNAT to 192.0.2.1). The replies go to 192.0.2.1 with the client's port:
//!   both SNATs keep the source port when it is free (every port is, by construction of
//!   the flows). The pool has no port range: with `POOL:PORTS` OVS 3.1 starts from a
//!   hashed port rather than the original one, and the replies would miss.
//!
//! Both gateways rewrite the MACs and decrement the TTL on the tracked cases (ctgate as a
//! router does, the OVS flows do it explicitly).
//!
//! With `--frag-size N` every datagram, request and reply, is a UDP datagram of N bytes
//! (counted as `datapath --size` counts a frame) cut into IPv4 fragments of at most 1,500
//! bytes (`--frag-size 3000`: 1,480 + 1,480 + 2 data bytes), DF clear, the
//! identification the flow's; the same pcaps feed both sides. OVS's `ipf` reassembles in
//! front of `ct()` and sends the fragments on; ctgate reassembles to track and sends the
//! fragments on. Mpps counts fragments; the line adds `frag_size`, `frags_per_datagram`,
//! `ovs_datagrams_per_s` and `ctgate_datagrams_per_s` (Mpps over fragments per datagram).
//! The pcap loops repeat each identification once per pass, after the datagram of the
//! previous pass completed.
//!
//! # Setup
//!
//! OVS: `/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk` (installed with apt-get if
//! missing; the system service and alternatives are left alone) and a private
//! `ovsdb-server`, both in a temporary directory (`OVS_RUNDIR` etc. point there), both
//! started pinned to CPU 0, ovs-vswitchd under `unshare --net` (the netdev bridge creates
//! tap devices, which vanish with the namespace). `other_config`: `dpdk-init=true`,
//! `dpdk-extra=--no-huge -m MB --legacy-mem --no-pci --file-prefix P` (`--legacy-mem`
//! because OVS would otherwise add `--in-memory`, which `--no-huge` rejects),
//! `dpdk-lcore-mask=0x1`, `pmd-cpu-mask=0x2`: one PMD thread on CPU 1, everything else
//! on CPU 0. Bridge `br0` (`datapath_type=netdev`, `fail-mode=secure`), ports `p0`, `p1`
//! `type=dpdk`, `options:dpdk-devargs=net_pcapN,rx_pcap=…[,infinite_rx=1]`. Defaults
//! otherwise (EMC on, SMC off), but for the connection limit: ctgate's (`max(2 × flows, 3M)`,
//! `dpctl/ct-set-maxconns` when that is not OVS's default 3M).
//!
//! ctgate: `--no-huge --no-pci --lcores 0@0,1@1` (one worker on CPU 1, control on CPU 0),
//! the same two `--vdev`s, `--mbufs` sized for the preloaded packets.
//!
//! # Sources
//!
//! * `source=memif` (the default): the generator process `ctgate-perf gen` ([`crate::gen`])
//!   on CPU 0 serves two `net_memif` ports and sends the same frames as the pcaps below
//!   (stamped), as fast as the side takes them; port 0 and port 1 of both sides are its
//!   memif clients ([`gen::client_devargs`]; OVS: `type=dpdk`, `dpdk-devargs=` the same
//!   string). It is started before and stopped after each side's run; its figures
//!   (`*_gen_mpps`, `*_gen_cpu`, `*_gen_full`: the share of its TX bursts the side's
//!   ring did not take in full, near 1 when the side and not the generator set the
//!   rate) are on the line, and frames that come back not as sent fail the run. Before
//!   the cases of each flow count, `gen --loopback` for `--seconds` measures the
//!   generator's ceiling (`gen_ceiling_mpps`; `ceiling_ratio` is it over `ctgate_mpps`,
//!   to hold at 2 or more; both lower bounds when the trivial forwarder set the rate). Every flow count is measured the same way.
//! * `source=pcap`: `rx_pcap=FILE,infinite_rx=1`, which copies the whole pcap into mbufs of
//!   the port's mempool at start. OVS 3.1's shared mempool holds 262,144 mbufs and fails
//!   (or crashes) beyond, so this source is used while both pcaps together and 32k mbufs
//!   for rings and bursts fit (up to about 115k flows). It delivers 48–100 Mpps here.
//! * `source=fifo`: beyond that, each `rx_pcap` is a named pipe written over and over by a
//!   feeder thread of ctgate-perf pinned to CPU 0 (the side's non-PMD core). It delivers
//!   about 9–12 Mpps here, so it caps both sides' figures (ctgate's most of all).
//!
//! Each case uses the same source on both sides and names it (`source=`). `--source`
//! picks one (`auto`: pcap where it fits, else fifo).
//!
//! # Measurement
//!
//! Forwarded packets per second, both directions summed, over a window of `--seconds`
//! after `--warmup` seconds of traffic:
//! * OVS: `ovs-appctl dpctl/show -s` TX packets of p0 and p1, sampled at the start and the
//!   end of the window (the time between the samples is the divisor); then
//!   `dpctl/ct-get-nconns` (`ovs_conns=`).
//! * ctgate: its per-second stats line (port tx counters), read as it arrives, from the
//!   line nearest the end of the warm-up to the one nearest `--seconds` later (the lines
//!   come once a second, so the window is whole seconds; the time between the lines'
//!   arrival is the divisor); the final `conntrack n_conns` (`ctgate_conns=`).
//!
//! Both warm-ups start once the side forwards (OVS: after its ports were added; ctgate:
//! its first stats line counts from the start of forwarding).
//!
//! `ovs_fwd_pct`/`ctgate_fwd_pct`: the share of the packets received in the window that
//! were forwarded (100 on the established path; less means drops, e.g. replies whose
//! connection is gone).
//!
//! `ctgate_worker_busy` (`ct` and `snat`): the share of ctgate's worker loop time in the
//! window spent on turns that found packets (its `busy_secs` over `secs`, read over its
//! control socket after each stats line): near 1, ctgate set the rate; below, the source
//! did (`unknown` for `plain`, which has no control socket).
//!
//! For `ct` and `snat`, a side whose reply direction forwarded nothing fails the case
//! (the established path was not reached). OVS's log is checked for ERR/EMER lines and
//! the interfaces for errors; both fail the case with the message rather than print a
//! wrong figure.
//!
//! With `--repeat N` each side runs N times per case (OVS restarted each time); the line
//! has the medians, `ratio` = ctgate median / OVS median, and the minimum and maximum of
//! both sides. Noise here is about 5% up to 1k connections and 10–20% above. A run that
//! fails (the generator died in net_memif about once in 20–40 OVS runs) is run once more,
//! its error printed; `retried` counts those of the case. A second failure ends the series.
//!
//! Output, one line per case (`--json`: one object per line):
//!
//! ```text
//! case=snat flows=1000000 source=fifo ovs_mpps=0.83 ctgate_mpps=8.4 ratio=10.1 ovs_conns=… ctgate_conns=… repeat=1 retried=0 ovs_min=… ovs_max=… ctgate_min=… ctgate_max=… ovs_fwd_pct=… ctgate_fwd_pct=… ctgate_worker_busy=… secs=10 warmup=5 … ovs_runs=… ovs_xcore_ns=… ctgate_runs=… ctgate_xcore_ns=…
//! ```
//!
//! The memif source adds the generator's figures (`ovs_gen_mpps`, `ovs_gen_cpu`,
//! `ovs_gen_full`, the same for `ctgate_`, `gen_ceiling_mpps`, `ceiling_ratio`,
//! `ceiling_xcore_ns`). Every line ends with each side's runs in order (`ovs_runs`,
//! `ctgate_runs`: Mpps, comma-separated) and, run for run, what moving a cache line
//! between CPUs 0 and 1 cost during it (`ovs_xcore_ns`, `ctgate_xcore_ns`: the median of
//! one sample a second, [`crate::xcore`]): the generator and the side pass every packet
//! between those two CPUs, and on the development VM that took ~30 ns in some runs and
//! ~170 ns in others, with ctgate's rate 6.7–7.4 Mpps in the first and 3.7–5.8 in the
//! second at 1M flows; a median of three can mix the two.
//!
//! # Cleanup
//!
//! Every process is a child of ctgate-perf, stopped by its PID (SIGTERM, then SIGKILL)
//! on every path, and gets SIGTERM if ctgate-perf dies (`PR_SET_PDEATHSIG`); SIGINT and
//! SIGTERM make ctgate-perf stop the case and clean up. The temporary directories and the
//! DPDK runtime directories (`/var/run/dpdk/PREFIX`) are removed; the network namespace
//! and its taps go with ovs-vswitchd.
//!
//! # Known limits
//!
//! * Two CPUs: the generator (or the feeder threads), ovs-vswitchd's other threads,
//!   ovsdb-server and ctgate's control lcore share CPU 0; other load on the machine
//!   shows in the figures.
//! * The fifo source is the ceiling at 1M flows, more for ctgate than for OVS, so the
//!   ratio measured with it is a lower bound; the memif source does not have that cap.
//! * OVS's port statistics come from the PMD's own counters via `dpctl/show`; the
//!   `Interface` table's `statistics` column is refreshed only every 5 s.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ctgate::control::counter_lines::field_u64;
use ctgate::wire::frame_checksums::fill_frame;

use crate::bench_config::{self, mac_str};
use crate::child;
use crate::gen::{self, RepliesTo};
use crate::gen_process::{GenFigures, GenProcess, GenSpec};
use crate::gen_traffic::{self, CLIENT_MAC, PCAP_PORT0_MAC, PCAP_PORT1_MAC, ROUTER_MAC};
use crate::ovs::{self, Instance, Options};
use crate::pcap_feed::{memory_for, pcap_mbufs, Feeder};
use crate::plot::{self, Line};
use crate::runner::{
    busy_share, find_ctgate, mega_per_sec, read_stats_text, remove_dpdk_runtime, worker_seconds,
    EalArgs,
};

/// Open vSwitch's DPDK switch (package openvswitch-switch-dpdk).
const OVS_DPDK: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
/// OVS 3.1's shared mempool (mbufs).
const OVS_MEMPOOL_MBUFS: usize = 262_144;
/// Mbufs OVS needs besides preloaded packets: RX/TX descriptors of both ports, bursts,
/// per-lcore caches.
const OVS_POOL_HEADROOM: usize = 32_768;
/// TX queues OVS gives each DPDK port: one per PMD thread (one here) and one for its
/// non-PMD threads.
const OVS_TX_QUEUES: u16 = 2;
/// Seconds the generator may send after the window of an OVS run: only a backstop, as the
/// run stops it (SIGTERM) right after reading the window's counters. Its sending time
/// counts from the first packet OVS's PMD takes, as soon as the ports exist, and OVS's
/// set-up goes on after that (the connection limit, the timeout policy, the flows: `ovs-vsctl`
/// waits for a main thread that shares its CPU with the generator), all before the
/// warm-up starts; a margin of 3 s would let the window open after the generator stopped
/// if that took longer. (A run at 10M flows, 2026-12-03 03:26, had OVS's PMD receive
/// nothing in its window; whether this was why is not known: the run kept no logs.)
const OVS_SEND_MARGIN: f64 = 60.0;
/// How often the machine's cross-CPU line time is sampled during a run
/// ([`crate::xcore::Sampler`]).
const XCORE_EVERY: Duration = Duration::from_secs(1);
/// The SNAT pool (the embedded default config's).
const POOL: &str = "192.0.2.1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    Plain,
    Ct,
    Snat,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::Ct => "ct",
            Case::Snat => "snat",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// The external generator (`ctgate-perf gen`) over two net_memif ports.
    Memif,
    /// pcap (infinite_rx) where it fits in OVS's mempool, else fifo.
    Auto,
    Pcap,
    Fifo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Pcap,
    Fifo,
    Memif,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Cases: plain (no tracking), ct (zone 1, established), snat (zone 1, SNAT, established).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain,ct,snat"
    )]
    cases: Vec<Case>,
    /// Flow counts, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    flows: Vec<u32>,
    /// Measurement window in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Warm-up in seconds before the window (connections created, replies seen).
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Runs per side and case (the line has the medians and the spread).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Input source: memif (the generator process `ctgate-perf gen` on CPU 0); auto: pcap
    /// (infinite_rx) where it fits in OVS's mempool, else fifo.
    #[arg(long, value_enum, default_value_t = SourceChoice::Memif)]
    source: SourceChoice,
    /// Quick run (1000 flows, 1 s warm-up, 2 s windows; under a minute).
    #[arg(long)]
    quick: bool,
    /// Print JSON objects (one per line) instead of key=value lines.
    #[arg(long)]
    json: bool,
    /// Write an SVG chart (Mpps against flows, both sides) to DIR/compare-ovs.svg.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// The ctgate binary (default: next to ctgate-perf).
    #[arg(long, value_name = "PATH")]
    ctgate: Option<PathBuf>,
    /// EAL memory for each side in MB (no hugepages; grown to fit preloaded pcaps).
    #[arg(long, default_value_t = 2048)]
    memory_mb: u32,
    /// EAL --file-prefix stem (each run appends its own suffix).
    #[arg(long)]
    file_prefix: Option<String>,
    /// Print OVS's PMD statistics of the window and its datapath flows on stderr.
    #[arg(long)]
    verbose: bool,
    /// Fragmented traffic: UDP datagrams of N bytes (the frame they would be, FCS
    /// included, as `datapath --size`; 1519..=65000) cut into IPv4 fragments of at most
    /// 1500 bytes, requests and replies; both sides reassemble to track (OVS's `ipf` in
    /// front of `ct()`, ctgate's `src/ipf`) and send the fragments on. The line gains
    /// `frag_size`, `frags_per_datagram` and both sides' `datagrams_per_s`.
    #[arg(long, value_name = "N")]
    frag_size: Option<usize>,
    /// UDP timeouts in seconds (first, single and multiple) on both sides: OVS a zone
    /// timeout policy for zone 1 (`ovs-vsctl add-zone-tp netdev zone=1 udp_first=N
    /// udp_single=N udp_multiple=N`), ctgate `[timeouts]`. Without it both keep OVS's
    /// defaults (60 s first and single, 30 s multiple: a connection that saw both
    /// directions expires 30 s after its last packet), which a side that takes longer
    /// than 30 s for a round over the flows (OVS at 10M flows) cannot keep established:
    /// it then forwards while its connections expire and are created again.
    #[arg(long, value_name = "SECS")]
    udp_timeout: Option<u32>,
}

/// The IP MTU the fragments of `--frag-size` fit.
const FRAG_MTU: usize = 1500;
/// Data bytes per fragment: a 20-byte header, data a multiple of 8 (1,480).
const FRAG_DATA: usize = (FRAG_MTU - 20) / 8 * 8;

/// Set by SIGINT/SIGTERM (signal-hook): stop the current case and clean up.
static INTERRUPTED: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(AtomicBool::new(false)));

fn interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps `d`, returning early with an error when interrupted.
fn sleep(d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    loop {
        interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Installs openvswitch-switch-dpdk when its switch is missing (never touching the
/// service or the alternatives).
fn ensure_ovs() -> Result<(), String> {
    if Path::new(OVS_DPDK).is_file() && ovs::missing_tool(&[]).is_none() {
        return Ok(());
    }
    eprintln!("compare-ovs: installing openvswitch-switch-dpdk (apt-get)");
    let st = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "openvswitch-switch-dpdk",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !st.success() || !Path::new(OVS_DPDK).is_file() {
        return Err(format!(
            "could not install openvswitch-switch-dpdk ({st}); install it (apt-get install openvswitch-switch-dpdk, as ci/setup does)"
        ));
    }
    Ok(())
}

/// The private OVS-DPDK instance of one run: ovs-vswitchd-dpdk in its own network
/// namespace (its netdev bridge's taps go with it), everything but the PMD thread on
/// CPU 0, bridge `br0` with the DPDK ports `p0` and `p1` on `devargs`, and `flows`.
fn start_ovs(
    dir: PathBuf,
    prefix: String,
    memory_mb: u32,
    devargs: [String; 2],
    flows: &str,
    max_conns: u64,
    udp_timeout: Option<u32>,
) -> Result<Instance, String> {
    let extra = format!(
        "other_config:dpdk-extra=--no-huge -m {memory_mb} --legacy-mem --no-pci --file-prefix {prefix} --log-level 4"
    );
    let opts = Options {
        cpu: Some(0),
        cancel: Some(std::sync::Arc::clone(&INTERRUPTED)),
        keep: false,
        dpdk_prefix: Some(prefix),
    };
    let mut ovs = Instance::start_db(
        dir,
        opts,
        &[
            "other_config:dpdk-init=true",
            &extra,
            "other_config:dpdk-lcore-mask=0x1",
            "other_config:pmd-cpu-mask=0x2",
        ],
    )?;
    ovs.start_vswitchd(&["unshare", "--net", OVS_DPDK], &[])?;
    let dev = |i: usize| [format!("dpdk-devargs={}", devargs[i])];
    ovs.add_bridge(
        "br0",
        "netdev",
        &[("p0", "dpdk", 1, &dev(0)), ("p1", "dpdk", 2, &dev(1))],
    )?;
    ovs.check_alive()?;
    for (i, p) in ["p0", "p1"].into_iter().enumerate() {
        let err = ovs.vsctl(&["get", "Interface", p, "error"])?;
        let ofport = ovs.vsctl(&["get", "Interface", p, "ofport"])?;
        let err = err.trim();
        if !err.is_empty() && err != "[]" || ofport.trim() == "-1" {
            return Err(format!(
                "OVS could not add port {p} ({}): {err}{}",
                devargs[i],
                ovs.log_problems()
            ));
        }
    }
    // The same connection limit as ctgate's (`bench_config::for_flows`): OVS's default of
    // 3M would refuse most of 10M flows.
    if max_conns != bench_config::OVS_DEFAULT_MAX_CONNS {
        ovs.appctl(&["dpctl/ct-set-maxconns", &max_conns.to_string()])?;
    }
    if let Some(t) = udp_timeout {
        // The zone policy lives in the datapath's record, which nothing has created yet.
        ovs.vsctl(&[
            "--",
            "--id=@m",
            "create",
            "Datapath",
            "datapath_version=0",
            "--",
            "set",
            "Open_vSwitch",
            ".",
            "datapaths:netdev=@m",
        ])?;
        let v = |k: &str| format!("{k}={t}");
        ovs.vsctl(&[
            "--may-exist",
            "add-zone-tp",
            "netdev",
            "zone=1",
            &v("udp_first"),
            &v("udp_single"),
            &v("udp_multiple"),
        ])?;
    }
    ovs.add_flows("br0", flows)?;
    Ok(ovs)
}

/// Counters of p0 and p1 (the PMD's, read now).
fn ovs_counters(ovs: &Instance) -> Result<Counters, String> {
    let out = ovs.appctl(&["dpctl/show", "-s"])?;
    parse_dpctl(&out).ok_or_else(|| format!("no p0/p1 counters in dpctl/show:\n{out}"))
}

/// The tracker's connection count.
fn ovs_nconns(ovs: &Instance) -> Result<u64, String> {
    let out = ovs.appctl(&["dpctl/ct-get-nconns"])?;
    out.trim()
        .parse()
        .map_err(|_| format!("dpctl/ct-get-nconns printed {out:?}"))
}

/// Port counters of a side: packets received on both ports, sent on port 0 (replies,
/// towards the inside) and on port 1 (towards the outside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counters {
    rx: u64,
    tx0: u64,
    tx1: u64,
}

impl Counters {
    /// (received, forwarded inside→outside, forwarded outside→inside) since `a`.
    fn since(&self, a: &Counters) -> (u64, u64, u64) {
        (self.rx - a.rx, self.tx1 - a.tx1, self.tx0 - a.tx0)
    }
}

/// The counters of ports p0 and p1 in `ovs-appctl dpctl/show -s` output.
fn parse_dpctl(out: &str) -> Option<Counters> {
    let mut port = None;
    let mut v: [[Option<u64>; 2]; 2] = [[None; 2]; 2];
    for l in out.lines() {
        let t = l.trim();
        if t.starts_with("port ") {
            port = match t
                .split_once(": ")
                .and_then(|(_, r)| r.split_whitespace().next())
            {
                Some("p0") => Some(0),
                Some("p1") => Some(1),
                _ => None,
            };
            continue;
        }
        for (k, dir) in [("RX packets:", 0), ("TX packets:", 1)] {
            if let (Some(r), Some(p)) = (t.strip_prefix(k), port) {
                v[p][dir] = r.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        }
    }
    Some(Counters {
        rx: v[0][0]? + v[1][0]?,
        tx0: v[0][1]?,
        tx1: v[1][1]?,
    })
}

/// The OpenFlow flows of a case (port 1 = p0 inside, port 2 = p1 outside).
fn ovs_flows(case: Case) -> String {
    let out_fwd = format!(
        "mod_dl_src:{},mod_dl_dst:{},dec_ttl,output:2",
        PCAP_PORT1_MAC,
        mac_str(ROUTER_MAC)
    );
    let out_rev = format!(
        "mod_dl_src:{},mod_dl_dst:{},dec_ttl,output:1",
        PCAP_PORT0_MAC,
        mac_str(CLIENT_MAC)
    );
    match case {
        Case::Plain => "table=0,priority=10,in_port=1,actions=output:2\n\
                        table=0,priority=10,in_port=2,actions=output:1\n"
            .into(),
        Case::Ct | Case::Snat => {
            let (commit, reply) = if case == Case::Snat {
                (
                    format!("ct(commit,zone=1,nat(src={POOL}),table=1)"),
                    "ct(zone=1,nat,table=1)",
                )
            } else {
                (
                    "ct(commit,zone=1,table=1)".to_string(),
                    "ct(zone=1,table=1)",
                )
            };
            format!(
                "table=0,priority=10,ip,in_port=1,actions={commit}\n\
                 table=0,priority=10,ip,in_port=2,actions={reply}\n\
                 table=1,priority=10,ct_state=+trk+new,ip,in_port=1,actions={out_fwd}\n\
                 table=1,priority=10,ct_state=+trk+est,ip,in_port=1,actions={out_fwd}\n\
                 table=1,priority=10,ct_state=+trk+est,ip,in_port=2,actions={out_rev}\n"
            )
        }
    }
}

/// The pcaps of one flow count.
struct Traffic {
    dir: PathBuf,
    packets: usize,
    /// Fragments per datagram (1: unfragmented).
    frags_per_datagram: usize,
}

/// `f` (an IPv4 frame) with DF clear cut into fragments of at most [`FRAG_MTU`] bytes of
/// IP, its identification kept; `f` alone when it fits.
fn cut(mut f: Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    if f.len() - 14 <= FRAG_MTU {
        return Ok(vec![f]);
    }
    f[20] &= !0x40;
    fill_frame(&mut f).map_err(|e| format!("datagram frame: {e:?}"))?;
    let ident = u32::from(u16::from_be_bytes([f[18], f[19]]));
    let frags = ctgate::wire::testframe::fragments(&f, FRAG_DATA, ident);
    if frags.len() < 2 {
        return Err("could not fragment a datagram".into());
    }
    Ok(frags)
}

impl Traffic {
    /// inside.pcap; outside.pcap (replies to the SNAT pool); outside-ct.pcap (the same
    /// replies to the clients' own addresses, for `ct`). 64-byte frames, or datagrams of
    /// `frag_size` bytes in fragments.
    /// With `pcaps` false (the memif source: the generator builds the same frames
    /// itself) nothing is written.
    fn write(
        dir: PathBuf,
        flows: u32,
        frag_size: Option<usize>,
        pcaps: bool,
    ) -> Result<Traffic, String> {
        let g = gen_traffic::Args::compare_ovs(flows, dir.clone())?;
        gen_traffic::check(&g)?;
        // gen_traffic's frames are well formed at any size; its own bound is for pcaps
        // that are not cut.
        let g = gen_traffic::Args {
            size: frag_size.unwrap_or(g.size),
            ..g
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !pcaps {
            return Ok(Traffic {
                dir,
                packets: 2 * flows as usize,
                frags_per_datagram: 1,
            });
        }
        let (inside, outside) = gen_traffic::frames(&g);
        if inside.len() != outside.len() {
            return Err("gen_traffic: not one reply per flow".into());
        }
        let mut ct_replies = Vec::with_capacity(outside.len());
        for (i, o) in inside.iter().zip(&outside) {
            let mut r = o.clone();
            r[30..34].copy_from_slice(&i[26..30]);
            r[24..26].fill(0);
            r[40..42].fill(0);
            fill_frame(&mut r).map_err(|e| format!("reply frame: {e:?}"))?;
            ct_replies.push(r);
        }
        let mut packets = 0;
        let mut frags_per_datagram = 1;
        for (name, fr) in [
            ("inside.pcap", inside),
            ("outside.pcap", outside),
            ("outside-ct.pcap", ct_replies),
        ] {
            let mut frames = Vec::with_capacity(fr.len());
            for f in fr {
                let pieces = cut(f)?;
                frags_per_datagram = pieces.len();
                frames.extend(pieces);
            }
            if name != "outside-ct.pcap" {
                packets += frames.len();
            }
            let p = dir.join(name);
            ctgate::pcap::write_file(&p, Duration::ZERO, frames.iter().map(Vec::as_slice))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(Traffic {
            dir,
            packets,
            frags_per_datagram,
        })
    }

    fn pcaps(&self, case: Case) -> [PathBuf; 2] {
        let out = if case == Case::Ct {
            "outside-ct.pcap"
        } else {
            "outside.pcap"
        };
        [self.dir.join("inside.pcap"), self.dir.join(out)]
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What feeds a run besides the pcap files: the fifo feeders or the generator process.
#[derive(Default)]
struct Feed {
    feeders: Vec<Feeder>,
    gen: Option<GenProcess>,
}

impl Feed {
    /// Stops the feeders (after the reader exited) and the generator: its figures, if
    /// it ran.
    fn stop(mut self) -> Result<Option<GenFigures>, String> {
        for f in self.feeders.drain(..) {
            f.stop();
        }
        self.gen.take().map(GenProcess::finish).transpose()
    }
}

/// The generator's ceiling at `flows` flows: `ctgate-perf gen --loopback` (the trivial
/// forwarder `bin --pair 0:1` on the CPU other than the generator's) for `seconds`, its
/// received Mpps. A lower bound when the forwarder, not the generator, set the rate.
fn gen_ceiling(flows: u32, seconds: f64, bin: &Path, prefix: &str) -> Result<f64, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot locate ctgate-perf itself: {e}"))?;
    let out = child::command(&exe, None)
        .args(["gen", "--loopback", "--flows", &flows.to_string()])
        .args(["--seconds", &seconds.to_string(), "--cpu", "0"])
        .args(["--file-prefix", prefix, "--ctgate"])
        .arg(bin)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} gen --loopback: {e}", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(line) = text.lines().find(|l| l.starts_with("bench=gen ")) else {
        return Err(format!(
            "gen --loopback printed no result line: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    let mpps = ctgate::control::counter_lines::fields(line)
        .find(|(k, _)| *k == "mpps")
        .and_then(|(_, v)| v.parse::<f64>().ok());
    mpps.ok_or_else(|| format!("no mpps= in {line}"))
}

/// The two ports' devargs for a run, with feeders started for `fifo` or the generator
/// for `memif` (stopped by the caller after the reader exited).
/// `tx_queues`: the side's TX queues per port (OVS with one PMD: 2; ctgate with one
/// worker: 1).
/// `margin`: seconds the generator sends after the window.
fn devargs(r: &Run, tx_queues: u16, margin: f64, feed: &mut Feed) -> Result<[String; 2], String> {
    if r.source == Source::Memif {
        let dir = r.dir.join("memif");
        let spec = GenSpec {
            flows: r.flows,
            replies_to: if r.case == Case::Ct {
                RepliesTo::Client
            } else {
                RepliesTo::Snat
            },
            rx_queues: tx_queues,
            // The warm-up, the window and `margin` seconds after the side took the first
            // packet; then it holds the ports until stopped (the side detaches while
            // nothing is sent: ctgate exits 2 s after its window, so its margin is 1 s).
            seconds: r.warmup + r.seconds + margin,
        };
        let prefix = format!("{}-gen", r.prefix);
        feed.gen = Some(GenProcess::start(&spec, &dir, prefix, &interrupted)?);
        return Ok([gen::client_devargs(&dir, 0), gen::client_devargs(&dir, 1)]);
    }
    let mut out = [String::new(), String::new()];
    for (i, pcap) in r.traffic.pcaps(r.case).iter().enumerate() {
        out[i] = match r.source {
            Source::Pcap => format!("net_pcap{i},rx_pcap={},infinite_rx=1", pcap.display()),
            _ => {
                let fifo = r.dir.join(format!("rx{i}.fifo"));
                feed.feeders.push(Feeder::start(pcap, &fifo, Some(0))?);
                format!("net_pcap{i},rx_pcap={}", fifo.display())
            }
        };
    }
    Ok(out)
}

/// One side's figures of one run.
#[derive(Clone, Copy, Debug)]
struct Measure {
    mpps: f64,
    conns: u64,
    /// Percentage of the packets received in the window that were forwarded.
    fwd_pct: f64,
    /// The generator's figures (memif source).
    gen: Option<GenFigures>,
    /// ctgate's worker: the share of its loop's time in the window on turns that found
    /// packets (gateway mode; below 1, the source set the rate).
    busy: Option<f64>,
    /// What moving a cache line between CPUs 0 and 1 cost during the run, ns (the median
    /// of one sample a second, [`crate::xcore::Sampler`]).
    xcore: Option<f64>,
}

impl Measure {
    fn new(c: (u64, u64, u64), secs: f64, conns: u64) -> Measure {
        let (rx, fwd, rev) = c;
        Measure {
            mpps: mega_per_sec(fwd + rev, secs),
            conns,
            fwd_pct: if rx > 0 {
                100.0 * (fwd + rev) as f64 / rx as f64
            } else {
                0.0
            },
            gen: None,
            busy: None,
            xcore: None,
        }
    }

    fn with_busy(self, busy: Option<f64>) -> Measure {
        Measure { busy, ..self }
    }

    fn with_gen(self, gen: Option<GenFigures>) -> Measure {
        Measure { gen, ..self }
    }
}

/// A run's settings.
struct Run<'a> {
    case: Case,
    flows: u32,
    source: Source,
    traffic: &'a Traffic,
    warmup: f64,
    seconds: f64,
    memory_mb: u32,
    prefix: String,
    dir: PathBuf,
    verbose: bool,
    udp_timeout: Option<u32>,
}

fn check_replies(side: &str, case: Case, fwd: u64, rev: u64) -> Result<(), String> {
    if case != Case::Plain && (rev == 0 || rev < fwd / 10) {
        return Err(format!(
            "{side} forwarded {fwd} packets inside→outside but {rev} replies in the window: \
             the established path was not reached (case {})",
            case.name()
        ));
    }
    Ok(())
}

fn run_ovs(r: &Run) -> Result<Measure, String> {
    let mut feed = Feed::default();
    let result = (|| {
        std::fs::create_dir_all(&r.dir).map_err(|e| format!("{}: {e}", r.dir.display()))?;
        let dev = devargs(r, OVS_TX_QUEUES, OVS_SEND_MARGIN, &mut feed)?;
        let mut ovs = start_ovs(
            r.dir.join("ovs"),
            r.prefix.clone(),
            r.memory_mb,
            dev,
            &ovs_flows(r.case),
            bench_config::max_conns_for(r.flows),
            r.udp_timeout,
        )?;
        sleep(Duration::from_secs_f64(r.warmup))?;
        ovs.check_alive()?;
        if r.verbose {
            ovs.appctl(&["dpif-netdev/pmd-stats-clear"])?;
        }
        let t0 = Instant::now();
        let a = ovs_counters(&ovs)?;
        let t1 = Instant::now();
        sleep(Duration::from_secs_f64(r.seconds))?;
        let t2 = Instant::now();
        let b = ovs_counters(&ovs)?;
        let t3 = Instant::now();
        ovs.check_alive()?;
        let conns = ovs_nconns(&ovs)?;
        if r.verbose {
            eprint!("{}", ovs.appctl(&["dpif-netdev/pmd-stats-show"])?);
            eprint!("{}", ovs.appctl(&["dpctl/dump-flows"])?);
        }
        let secs = ((t2 + (t3 - t2) / 2) - (t0 + (t1 - t0) / 2)).as_secs_f64();
        let c = b.since(&a);
        check_replies("OVS", r.case, c.1, c.2)?;
        let problems = ovs.log_problems();
        if !problems.is_empty() {
            return Err(format!("OVS reported errors during the run:{problems}"));
        }
        // The generator stops (and prints its figures) while OVS still holds the memif
        // ports: OVS going first tore down the generator's memif connections under its
        // polling lcore, and the generator then died inside net_memif now and then
        // (SIGSEGV, no figures: 2 of about 20 OVS runs on 2026-12-02).
        let gen = std::mem::take(&mut feed).stop();
        drop(ovs);
        Ok((Measure::new(c, secs, conns), gen))
    })();
    // On an error before the generator was stopped: what it saw goes into the error.
    let stopped = feed.stop();
    let _ = std::fs::remove_dir_all(&r.dir);
    let (m, gen) = result.map_err(|e| with_gen_figures(e, &stopped))?;
    Ok(m.with_gen(gen?))
}

/// The error `e` of a run and, when the generator gave figures, what it sent and got back
/// (did the side stop forwarding, or did the generator stop sending?).
fn with_gen_figures(e: String, gen: &Result<Option<GenFigures>, String>) -> String {
    match gen {
        Ok(Some(g)) => format!(
            "{e}\n(the generator over its run: sent {} packets, {} came back; {:.3} / {:.3} Mpps)",
            g.sent, g.received, g.sent_mpps, g.mpps
        ),
        // A generator that died (it did inside net_memif now and then, see `run_ovs`)
        // explains a side that received nothing: say so.
        Err(g) => {
            let lines: Vec<&str> = g.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            format!("{e}\n(the generator failed: {tail})")
        }
        Ok(None) => e,
    }
}

/// Seconds and counters of a per-second stats line (`t=Ns | port=0 … tx=N … | port=1 …`).
fn parse_tick(line: &str) -> Option<(u64, Counters)> {
    let mut parts = line.split(" | ");
    let t = parts
        .next()?
        .strip_prefix("t=")?
        .strip_suffix('s')?
        .parse()
        .ok()?;
    let (mut rx, mut tx) = (0, [None, None]);
    for p in parts.filter(|p| p.starts_with("port=")) {
        rx += field_u64(p, "rx")?;
        match field_u64(p, "port")? {
            n @ 0..=1 => tx[n as usize] = Some(field_u64(p, "tx")?),
            _ => return None,
        }
    }
    Some((
        t,
        Counters {
            rx,
            tx0: tx[0]?,
            tx1: tx[1]?,
        },
    ))
}

/// A ctgate stats line: when it came, its counters, and the workers' loop and busy
/// seconds read right after it ([`worker_seconds`]; gateway mode only).
type Tick = (Instant, Counters, Option<(f64, f64)>);

fn run_ctgate(r: &Run, bin: &Path) -> Result<Measure, String> {
    let mut feed = Feed::default();
    let mut child: Option<Child> = None;
    let result = (|| {
        std::fs::create_dir_all(&r.dir).map_err(|e| format!("{}: {e}", r.dir.display()))?;
        let dev = devargs(r, 1, 1.0, &mut feed)?;
        let mbufs = (r.source == Source::Pcap).then(|| pcap_mbufs(r.traffic.packets));
        let eal = EalArgs {
            memory_mb: memory_for(mbufs.unwrap_or(0), r.memory_mb),
            prefix: r.prefix.clone(),
            workers: 1,
            vdevs: dev.to_vec(),
        };
        let run_secs = r.warmup.ceil() as u64 + r.seconds.ceil() as u64 + 2;
        let mut app: Vec<String> = if r.case == Case::Plain {
            vec!["--pair".into(), "0:1".into()]
        } else {
            let conf = r.dir.join("gw.toml");
            std::fs::write(
                &conf,
                bench_config::with_udp_timeout(
                    bench_config::for_flows(r.flows, r.case == Case::Snat)?,
                    r.udp_timeout,
                )?,
            )
            .map_err(|e| format!("{}: {e}", conf.display()))?;
            vec![
                "--config".into(),
                conf.display().to_string(),
                "--socket".into(),
                r.dir.join("ctl.sock").display().to_string(),
            ]
        };
        if let Some(m) = mbufs {
            app.extend(["--mbufs".into(), m.to_string()]);
        }
        app.extend(["--duration".into(), run_secs.to_string()]);
        let mut cmd = child::command(bin, None);
        cmd.args(eal.args())
            .arg("--")
            .args(&app)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let c = child.insert(
            cmd.spawn()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))?,
        );
        let stderr = c.stderr.take();
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                use std::io::Read;
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let stdout = c.stdout.take().ok_or("no stdout")?;
        // Each stats line, when it came, and (gateway mode) the workers' loop and busy
        // seconds read over the control socket right after it.
        let socket = (r.case != Case::Plain).then(|| r.dir.join("ctl.sock"));
        let mut ticks: Vec<Tick> = Vec::new();
        let mut text = String::new();
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            let now = Instant::now();
            if let Some((_, c)) = parse_tick(&l) {
                let loops = socket
                    .as_deref()
                    .and_then(|s| read_stats_text(s).ok())
                    .map(|t| worker_seconds(&t));
                ticks.push((now, c, loops));
            } else {
                text.push_str(&l);
                text.push('\n');
            }
        }
        let c = child.take().ok_or("no child")?;
        let mut c = Some(c);
        let status = c.as_mut().map(|c| c.wait());
        let err = err_thread.join().unwrap_or_default();
        interrupted()?;
        match status {
            Some(Ok(st)) if st.success() => {}
            other => return Err(format!("ctgate failed ({other:?}):\n{text}\n{err}")),
        }
        // The first line comes about 1 s after forwarding started; the window runs from
        // the line nearest the end of the warm-up to the one nearest `seconds` later (by
        // arrival: a loaded control lcore may skip or round its `t=` values).
        let first = ticks
            .first()
            .ok_or_else(|| format!("ctgate printed no stats line:\n{text}\n{err}"))?
            .0;
        let near = |t: Instant| {
            move |k: &&Tick| {
                if k.0 > t {
                    k.0 - t
                } else {
                    t - k.0
                }
            }
        };
        let a = ticks
            .iter()
            .min_by_key(near(
                first + Duration::from_secs_f64((r.warmup - 1.0).max(0.0)),
            ))
            .ok_or("no stats line")?;
        let b = ticks
            .iter()
            .filter(|k| k.0 > a.0)
            .min_by_key(near(a.0 + Duration::from_secs_f64(r.seconds)))
            .ok_or_else(|| format!("ctgate printed too few stats lines:\n{text}\n{err}"))?;
        let dt = (b.0 - a.0).as_secs_f64();
        let c = b.1.since(&a.1);
        check_replies("ctgate", r.case, c.1, c.2)?;
        let conns = if r.case == Case::Plain {
            0
        } else {
            text.lines()
                .find(|l| l.starts_with("conntrack "))
                .and_then(|l| field_u64(l, "n_conns"))
                .ok_or_else(|| format!("no conntrack line in ctgate's output:\n{text}"))?
        };
        let busy = a.2.zip(b.2).and_then(|(x, y)| busy_share(x, y));
        Ok(Measure::new(c, dt, conns).with_busy(busy))
    })();
    child::stop(&mut child, Duration::from_secs(5));
    let gen = feed.stop();
    remove_dpdk_runtime(&r.prefix);
    let _ = std::fs::remove_dir_all(&r.dir);
    let m = result.map_err(|e| with_gen_figures(e, &gen))?;
    Ok(m.with_gen(gen?))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The median percentage of received packets forwarded.
fn pct(m: &[Measure]) -> String {
    format!(
        "{:.1}",
        median(&m.iter().map(|m| m.fwd_pct).collect::<Vec<_>>())
    )
}

fn fmt_mpps(x: f64) -> String {
    format!("{x:.3}")
}

/// The source a case uses.
fn source_for(choice: SourceChoice, packets: usize) -> Source {
    match choice {
        SourceChoice::Memif => Source::Memif,
        SourceChoice::Pcap => Source::Pcap,
        SourceChoice::Fifo => Source::Fifo,
        SourceChoice::Auto => {
            if packets + OVS_POOL_HEADROOM <= OVS_MEMPOOL_MBUFS {
                Source::Pcap
            } else {
                Source::Fifo
            }
        }
    }
}

pub fn run(args: &Args) -> Result<(), String> {
    let (flows, seconds, warmup) = if args.quick {
        (vec![1000], 2.0, 1.0)
    } else {
        (args.flows.clone(), args.seconds, args.warmup)
    };
    if !(seconds >= 1.0 && seconds.is_finite()) {
        return Err("--seconds must be at least 1".into());
    }
    if !(warmup >= 0.0 && warmup.is_finite()) {
        return Err("--warmup must be a non-negative number".into());
    }
    if args.cases.is_empty() || flows.is_empty() {
        return Err("nothing to run: --cases and --flows must not be empty".into());
    }
    if args
        .frag_size
        .is_some_and(|n| !(FRAG_MTU + 19..=65_000).contains(&n))
    {
        return Err(format!(
            "--frag-size must be {}..=65000: a datagram larger than one {FRAG_MTU}-byte packet",
            FRAG_MTU + 19
        ));
    }
    let repeat = args.repeat.max(1);
    let bin = find_ctgate(args.ctgate.as_deref())?;
    ensure_ovs()?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&INTERRUPTED))
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let pid = std::process::id();
    let scratch = std::env::temp_dir().join(format!("ctgate-perf-ovs-{pid}"));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let stem = args
        .file_prefix
        .clone()
        .unwrap_or_else(|| format!("ctgate-perf-ovs-{pid}"));
    let start = Instant::now();
    let total = flows.len() * args.cases.len() * repeat as usize;
    let mut n = 0;
    // (case, flows, ovs, ctgate) medians for the chart.
    let mut points: Vec<(Case, u32, f64, f64)> = Vec::new();
    let mut result = Ok(());
    'all: for &f in &flows {
        eprintln!(
            "[compare-ovs {}/{total} {:.1}s] flows={f}: writing traffic",
            n + 1,
            start.elapsed().as_secs_f64()
        );
        // The generator sends 64-byte frames: fragments come from the pcap sources.
        let choice = match (args.source, args.frag_size) {
            (SourceChoice::Memif, Some(_)) => SourceChoice::Auto,
            (c, _) => c,
        };
        let pcaps = choice != SourceChoice::Memif;
        let traffic = match Traffic::write(
            scratch.join(format!("traffic-{f}")),
            f,
            args.frag_size,
            pcaps,
        ) {
            Ok(t) => t,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let source = source_for(choice, traffic.packets);
        if source == Source::Pcap && traffic.packets + OVS_POOL_HEADROOM > OVS_MEMPOOL_MBUFS {
            eprintln!(
                "compare-ovs: warning: {} preloaded packets exceed OVS's {OVS_MEMPOOL_MBUFS}-mbuf mempool: OVS will fail",
                traffic.packets
            );
        }
        let ceiling = if source == Source::Memif {
            eprintln!(
                "[compare-ovs {}/{total} {:.1}s] flows={f}: the generator's ceiling (gen --loopback)",
                n + 1,
                start.elapsed().as_secs_f64()
            );
            let xcore = crate::xcore::Sampler::start(XCORE_EVERY);
            match gen_ceiling(f, seconds, &bin, &format!("{stem}-{f}-ceiling")) {
                Ok(c) => Some((c, xcore.finish())),
                Err(e) => {
                    result = Err(format!("flows={f}: {e}"));
                    break;
                }
            }
        } else {
            None
        };
        for &case in &args.cases {
            let mut ovs = Vec::new();
            let mut ctg = Vec::new();
            let mut retried = 0u32;
            for rep in 0..repeat {
                n += 1;
                let mut run = Run {
                    case,
                    flows: f,
                    source,
                    traffic: &traffic,
                    warmup,
                    seconds,
                    memory_mb: args.memory_mb,
                    prefix: format!("{stem}-{}-{f}-{rep}-ovs", case.name()),
                    dir: scratch.join(format!("run-{n}-ovs")),
                    verbose: args.verbose,
                    udp_timeout: args.udp_timeout,
                };
                for side in ["ovs", "ctgate"] {
                    // A run that fails is run once more (its failure printed, counted in
                    // `retried`): a generator that dies in net_memif now and then should
                    // not end a series of many minutes. A second failure ends it.
                    for again in [false, true] {
                        eprintln!(
                            "[compare-ovs {n}/{total} {:.1}s] case={} flows={f} source={} side={side} run={}/{repeat}{}",
                            start.elapsed().as_secs_f64(),
                            case.name(),
                            source_name(source),
                            rep + 1,
                            if again { " (once more)" } else { "" }
                        );
                        let tag = if again { "-again" } else { "" };
                        run.prefix = format!("{stem}-{}-{f}-{rep}-{side}{tag}", case.name());
                        run.dir = scratch.join(format!("run-{n}-{side}{tag}"));
                        let xcore = crate::xcore::Sampler::start(XCORE_EVERY);
                        let r = if side == "ovs" {
                            run_ovs(&run)
                        } else {
                            run_ctgate(&run, &bin)
                        };
                        let xcore = xcore.finish();
                        match r {
                            Ok(m) => {
                                let m = Measure { xcore, ..m };
                                if side == "ovs" {
                                    ovs.push(m)
                                } else {
                                    ctg.push(m)
                                }
                                break;
                            }
                            Err(e) if !again && interrupted().is_ok() => {
                                eprintln!(
                                    "[compare-ovs {n}/{total} {:.1}s] case={} flows={f} side={side}: the run failed, once more:\n{e}",
                                    start.elapsed().as_secs_f64(),
                                    case.name(),
                                );
                                retried += 1;
                            }
                            Err(e) => {
                                result =
                                    Err(format!("case={} flows={f} side={side}: {e}", case.name()));
                                break 'all;
                            }
                        }
                    }
                }
            }
            let om: Vec<f64> = ovs.iter().map(|m| m.mpps).collect();
            let cm: Vec<f64> = ctg.iter().map(|m| m.mpps).collect();
            let (o, c) = (median(&om), median(&cm));
            let minmax = |v: &[f64]| {
                (
                    v.iter().copied().fold(f64::INFINITY, f64::min),
                    v.iter().copied().fold(0.0, f64::max),
                )
            };
            let (omin, omax) = minmax(&om);
            let (cmin, cmax) = minmax(&cm);
            let mut line = Line::default()
                .with("case", case.name())
                .with("flows", f)
                .with("source", source_name(source))
                .with("ovs_mpps", fmt_mpps(o))
                .with("ctgate_mpps", fmt_mpps(c))
                .with("ratio", format!("{:.2}", c / o))
                .with("ovs_conns", ovs.last().map_or(0, |m| m.conns))
                .with("ctgate_conns", ctg.last().map_or(0, |m| m.conns))
                .with("repeat", repeat)
                .with("retried", retried)
                .with("ovs_min", fmt_mpps(omin))
                .with("ovs_max", fmt_mpps(omax))
                .with("ctgate_min", fmt_mpps(cmin))
                .with("ctgate_max", fmt_mpps(cmax))
                .with("ovs_fwd_pct", pct(&ovs))
                .with("ctgate_fwd_pct", pct(&ctg))
                .with("ctgate_worker_busy", {
                    let b: Vec<f64> = ctg.iter().filter_map(|m| m.busy).collect();
                    if b.is_empty() {
                        "unknown".to_string()
                    } else {
                        format!("{:.2}", median(&b))
                    }
                })
                .with("secs", seconds)
                .with("warmup", warmup);
            line = match args.frag_size {
                Some(n) => {
                    let k = traffic.frags_per_datagram as f64;
                    line.with("frag_size", n)
                        .with("frags_per_datagram", traffic.frags_per_datagram)
                        .with("ovs_datagrams_per_s", format!("{:.0}", o * 1e6 / k))
                        .with("ctgate_datagrams_per_s", format!("{:.0}", c * 1e6 / k))
                }
                None => line,
            };
            if source == Source::Memif {
                // The generator's median figures per side: Mpps the DUT took, CPU share.
                for (side, m) in [("ovs", &ovs), ("ctgate", &ctg)] {
                    let g: Vec<GenFigures> = m.iter().filter_map(|m| m.gen).collect();
                    let sent: Vec<f64> = g.iter().map(|g| g.sent_mpps).collect();
                    let share = |v: Vec<f64>| {
                        if v.is_empty() {
                            "unknown".to_string()
                        } else {
                            format!("{:.2}", median(&v))
                        }
                    };
                    line = line.with(&format!("{side}_gen_mpps"), fmt_mpps(median(&sent)));
                    line = line.with(
                        &format!("{side}_gen_cpu"),
                        share(g.iter().filter_map(|g| g.cpu).collect()),
                    );
                    line = line.with(
                        &format!("{side}_gen_full"),
                        share(g.iter().filter_map(|g| g.full).collect()),
                    );
                }
            }
            if let Some((ceil, xcore)) = ceiling {
                line = line
                    .with("gen_ceiling_mpps", fmt_mpps(ceil))
                    .with("ceiling_ratio", format!("{:.2}", ceil / c))
                    .with("ceiling_xcore_ns", crate::xcore::printed(xcore));
            }
            // Each run, in order, with the state of the machine during it: the medians
            // above can mix runs made in different states (`crate::xcore`).
            for (side, m) in [("ovs", &ovs), ("ctgate", &ctg)] {
                let runs: Vec<String> = m.iter().map(|m| fmt_mpps(m.mpps)).collect();
                let xc: Vec<String> = m.iter().map(|m| crate::xcore::printed(m.xcore)).collect();
                line = line
                    .with(&format!("{side}_runs"), runs.join(","))
                    .with(&format!("{side}_xcore_ns"), xc.join(","));
            }
            println!("{}", line.render(args.json));
            points.push((case, f, o, c));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(dir) = &args.plot {
        if !points.is_empty() {
            if let Err(e) = plot::write_svg(&dir.join("compare-ovs.svg"), &chart(&points)) {
                eprintln!("compare-ovs: warning: no chart: {e}");
            }
        }
    }
    eprintln!(
        "[compare-ovs {n}/{total} {:.1}s] done",
        start.elapsed().as_secs_f64()
    );
    result
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Pcap => "pcap",
        Source::Fifo => "fifo",
        Source::Memif => "memif",
    }
}

/// Mpps against flows, one series per side and case.
fn chart(points: &[(Case, u32, f64, f64)]) -> plot::Chart {
    let mut series = Vec::new();
    for case in [Case::Plain, Case::Ct, Case::Snat] {
        for (side, ovs) in [("ctgate", false), ("OVS", true)] {
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.0 == case)
                .map(|p| (f64::from(p.1), if ovs { p.2 } else { p.3 }))
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(plot::Series {
                name: format!("{side} {}", case.name()),
                points: pts,
            });
        }
    }
    plot::Chart {
        title: "ctgate vs OVS-DPDK, one PMD core, 64-byte UDP, established".into(),
        x_label: "flows".into(),
        y_label: "Mpps (forwarded)".into(),
        x_scale: plot::XScale::Log10,
        y_scale: plot::YScale::Linear,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_runs_error_says_what_the_generator_sent_and_got_back_or_how_it_failed() {
        let g = GenFigures {
            sent: 1_200_000,
            received: 0,
            sent_mpps: 0.5,
            ..GenFigures::unknown()
        };
        let e = with_gen_figures("OVS forwarded 0 packets".into(), &Ok(Some(g)));
        assert_eq!(
            e,
            "OVS forwarded 0 packets\n(the generator over its run: sent 1200000 packets, 0 came \
             back; 0.500 / 0.000 Mpps)"
        );
        // It did not run: the error alone.
        assert_eq!(with_gen_figures("x".into(), &Ok(None)), "x");
        // It failed (a side that received nothing may be why): its error's last 20 lines.
        let long: String = (0..30).map(|i| format!("l{i}\n")).collect();
        let e = with_gen_figures("x".into(), &Err(format!("no result line:\n{long}")));
        assert!(e.starts_with("x\n(the generator failed: l10\n"), "{e}");
        assert!(e.ends_with("l29)"), "{e}");
    }

    #[test]
    fn frag_size_writes_every_datagram_as_fragments_that_reassemble_to_it() {
        let dir = std::env::temp_dir().join(format!("ctgate-cmp-frag-{}", std::process::id()));
        let t = Traffic::write(dir.clone(), 4, Some(3000), true).unwrap();
        assert_eq!((t.frags_per_datagram, t.packets), (3, 24));
        for name in ["inside.pcap", "outside.pcap", "outside-ct.pcap"] {
            let frames: Vec<Vec<u8>> = ctgate::pcap::read_file(dir.join(name))
                .unwrap()
                .into_iter()
                .map(|p| p.data)
                .collect();
            assert_eq!(frames.len(), 12, "{name}");
            for d in frames.chunks(3) {
                // 2,996-byte frames: 2,962 data bytes after the IPv4 header.
                let lens: Vec<usize> = d.iter().map(Vec::len).collect();
                assert_eq!(lens, [1514, 1514, 36], "{name}");
                let mut data = Vec::new();
                for (k, f) in d.iter().enumerate() {
                    let ff = u16::from_be_bytes([f[20], f[21]]);
                    assert_eq!(ff & 0x1fff, (k * 185) as u16, "offset in 8-byte units");
                    assert_eq!(ff & 0x2000 != 0, k < 2, "MF on all but the last");
                    assert_eq!(ff & 0x4000, 0, "DF clear");
                    assert_eq!(f[18..20], d[0][18..20], "one identification");
                    assert!(ctgate::wire::checksum::verify_ipv4_header(&f[14..34]));
                    data.extend_from_slice(&f[34..]);
                }
                // The reassembled datagram: its UDP length and checksums hold.
                assert_eq!(u16::from_be_bytes([data[4], data[5]]), 2962);
                let mut whole = d[0][..34].to_vec();
                whole.extend_from_slice(&data);
                whole[16..18].copy_from_slice(&(20 + data.len() as u16).to_be_bytes());
                whole[20..22].fill(0);
                whole[24..26].fill(0);
                let c = ctgate::wire::checksum::ipv4_header(&whole[14..34]);
                whole[24..26].copy_from_slice(&c.to_be_bytes());
                assert_eq!(ctgate::wire::frame_checksums::verify_frame(&whole), Ok(()));
            }
        }
        drop(t);
        assert!(!dir.exists());
    }

    #[test]
    fn parses_dpctl_show() {
        let out = "netdev@ovs-netdev:\n  lookups: hit:1 missed:2 lost:0\n  flows: 2\n\
                   \x20 port 0: ovs-netdev (tap)\n    RX packets:0 errors:0\n    TX packets:0 errors:0\n\
                   \x20 port 1: p0 (dpdk: configured_rx_queues=1)\n    RX packets:5 errors:0\n    TX packets:13213824 errors:0 dropped:0\n\
                   \x20 port 2: p1 (dpdk: configured_rx_queues=1)\n    RX packets:5\n    TX packets:7 errors:0\n";
        let c = Counters {
            rx: 10,
            tx0: 13213824,
            tx1: 7,
        };
        assert_eq!(parse_dpctl(out), Some(c));
        assert_eq!(parse_dpctl("port 1: p0\n"), None);
    }

    #[test]
    fn parses_stats_ticks() {
        let l = "t=2s | port=0 rx=29 tx=20 dropped=0 rx_mpps=14.779 tx_mpps=14.779 | port=1 rx=29 tx=30 dropped=0 | conns=1000 created/s=0 expired/s=0 | drops=0";
        let c = Counters {
            rx: 58,
            tx0: 20,
            tx1: 30,
        };
        assert_eq!(parse_tick(l), Some((2, c)));
        assert_eq!(parse_tick("port=0 rx=1 tx=1"), None);
    }

    #[test]
    fn flows_per_case() {
        assert!(ovs_flows(Case::Plain).contains("in_port=1,actions=output:2"));
        let s = ovs_flows(Case::Snat);
        assert!(
            s.contains("ct(commit,zone=1,nat(src=192.0.2.1),table=1)"),
            "{s}"
        );
        assert!(s.contains("ct_state=+trk+est,ip,in_port=2"), "{s}");
        assert!(!ovs_flows(Case::Ct).contains("nat"));
    }

    #[test]
    fn sources_by_size() {
        assert_eq!(source_for(SourceChoice::Auto, 2_000), Source::Pcap);
        assert_eq!(source_for(SourceChoice::Auto, 200_000), Source::Pcap);
        assert_eq!(source_for(SourceChoice::Auto, 2_000_000), Source::Fifo);
        assert_eq!(source_for(SourceChoice::Fifo, 2_000), Source::Fifo);
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
    }
}
