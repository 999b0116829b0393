//! `ctgate-perf replay`: runs a pcap through the connection tracker alone, like Open
//! vSwitch's `ovstest test-conntrack pcap`, and prints what it decided.
//!
//! ```text
//! ctgate-perf replay FILE.pcap [--zone N] [--no-tcp-seq-check]
//!                              [--snat RANGE] [--dnat RANGE] [--write OUT.pcap]
//! ```
//!
//! Packets are tracked one by one in file order, with each packet's capture timestamp
//! (in ms) as the clock, and every packet is committed, as an OpenFlow pipeline
//! `ct(commit,zone=N)` — or `ct(commit,zone=N,nat(src=…))`/`nat(dst=…)` with `--snat`/
//! `--dnat` — would. The output is one line per packet, `N: FLAGS` (N counts from 1 like
//! ovstest; FLAGS in OVS's words, `trk` first: `3: trk,est,rpl`), then the connection table
//! as `ovs-appctl dpctl/dump-conntrack` prints it, one line per live connection, sorted
//! (byte order, as `LC_ALL=C sort`).
//!
//! What reaches the tracker, as in an OVS datapath:
//! * A frame whose EtherType is not IPv4/IPv6 (ARP, …) or that is too short for Ethernet
//!   never reaches `ct()` (OVS only allows `ct` on IP flows): its line has no flags,
//!   `N: ` (ct_state 0, untracked). `ovstest test-conntrack pcap` would print `inv|trk` for
//!   it, but no switch ever shows that state for such a frame.
//! * An IP frame with a malformed header, or whose IPv4 header checksum or TCP/UDP/ICMP/
//!   ICMPv6 checksum is wrong, is `trk,inv` (OVS's `conn_key_extract` refuses it; a UDP
//!   checksum of 0 over IPv4 means "none"). The checksums of the packet quoted in an ICMP
//!   error are not checked (OVS does not check them either).
//! * IP fragments are `trk,inv`: ctgate does not reassemble (OVS would reassemble first).
//!
//! Output options: `--summary` prints, instead of the packets and the table, one line
//! `bench=replay file=PATH packets=N untracked=U trk=T inv=I new=… est=… rel=… rpl=…
//! conns=C secs=S pps=P` (counts of packets having each flag; `secs` is the time the
//! tracker took, NAT rewrite included). `--json` prints each packet as
//! `{"packet":N,"flags":"trk,new"}`, each connection as `{"conn":"…"}` and then the summary
//! as a JSON object (with `--summary`, only that). `--quick` replays at most the first
//! 100000 packets.
//!
//! The connection table omits connections that have expired at the last packet's time
//! (OVS's dump skips them too, swept or not). `--write` writes every packet, after NAT
//! rewrite, with its original timestamp.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use ctgate::conntrack::{Conntrack, CtConfig, CtState, DEFAULT_MAX_CONNS};
use ctgate::nat::{rewrite, NatRange, NatSpec};
use ctgate::pcap;
use ctgate::wire::frame_checksums::{verify_frame, ChecksumError};
use ctgate::wire::parse::{parse_frame, ParseError};

use crate::plot::Record;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The pcap file to replay (classic pcap, Ethernet).
    file: PathBuf,
    /// Conntrack zone of every packet (`ct(zone=N)`).
    #[arg(long, default_value_t = 0)]
    zone: u16,
    /// Turn TCP sequence checking off (`ovs-appctl dpctl/ct-disable-tcp-seq-chk`).
    #[arg(long)]
    no_tcp_seq_check: bool,
    /// Source NAT for every new connection: ADDR[-ADDR][:PORT[-PORT]], IPv6 in brackets.
    #[arg(long, value_name = "RANGE")]
    snat: Option<NatRange>,
    /// Destination NAT for every new connection: ADDR[-ADDR][:PORT[-PORT]].
    #[arg(long, value_name = "RANGE")]
    dnat: Option<NatRange>,
    /// Write every packet, after NAT rewrite, to this pcap file.
    #[arg(long, value_name = "OUT.pcap")]
    write: Option<PathBuf>,
    /// Only one key=value summary line (bench=replay …) instead of packets and table.
    #[arg(long)]
    summary: bool,
    /// JSON objects, one per line: packets, connections, then the summary.
    #[arg(long)]
    json: bool,
    /// At most the first 100000 packets.
    #[arg(long)]
    quick: bool,
}

/// Packets replayed with `--quick` at most.
const QUICK_PACKETS: usize = 100_000;

/// The summary line of a replay that took `secs`.
fn summary(file: &std::path::Path, r: &Replay, secs: f64) -> Record {
    let with = |flag: &str| {
        r.flags
            .iter()
            .filter(|f| f.split(',').any(|x| x == flag))
            .count() as u64
    };
    let n = r.flags.len() as u64;
    Record::new("replay")
        .str("file", file.display().to_string())
        .int("packets", n)
        .int(
            "untracked",
            r.flags.iter().filter(|f| f.is_empty()).count() as u64,
        )
        .int("trk", with("trk"))
        .int("inv", with("inv"))
        .int("new", with("new"))
        .int("est", with("est"))
        .int("rel", with("rel"))
        .int("rpl", with("rpl"))
        .int("conns", r.conns.len() as u64)
        .float("secs", secs, 6)
        .int(
            "pps",
            if secs > 0.0 {
                (n as f64 / secs) as u64
            } else {
                0
            },
        )
}

/// What a replay decided: one flags string per packet and the sorted dump lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Per packet, in file order: the flags (`trk,new`, …), empty for untracked frames.
    pub flags: Vec<String>,
    /// `dpctl/dump-conntrack` lines of the live connections, sorted.
    pub conns: Vec<String>,
}

/// Options of a replay (the command line without its files).
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    pub zone: u16,
    pub tcp_seq_check: bool,
    pub nat: NatSpec,
}

/// Milliseconds since the epoch of a capture timestamp (the tracker's clock).
fn ms(ts: Duration) -> u64 {
    u64::try_from(ts.as_millis()).unwrap_or(u64::MAX)
}

/// Receives each packet (timestamp, bytes) after NAT rewrite.
pub type Sink<'a> = &'a mut dyn FnMut(Duration, &[u8]) -> Result<(), String>;

/// Replays `packets` through a fresh tracker. `out`, when given, receives every packet
/// after NAT rewrite, with its timestamp.
pub fn replay(
    packets: &[pcap::Packet],
    opts: &Options,
    mut out: Option<Sink<'_>>,
) -> Result<Replay, String> {
    let nat_on = opts.nat.snat.is_some() || opts.nat.dnat.is_some();
    // The pool can never need more records than there are packets; OVS's limit is the
    // same default, so refusals by limit cannot happen in either for such a trace.
    let max_conns = u32::try_from(packets.len())
        .unwrap_or(u32::MAX)
        .clamp(64, DEFAULT_MAX_CONNS);
    let ct = Conntrack::new(CtConfig {
        max_conns,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: opts.tcp_seq_check,
        hash_seed: Some(0x6374_6761_7465),
    });
    let mut worker = ct.worker(0);
    let mut result = Replay::default();
    let mut now = 0;
    let mut frame = Vec::new();
    for pkt in packets {
        now = ms(pkt.timestamp);
        frame.clear();
        frame.extend_from_slice(&pkt.data);
        let state = match parse_frame(&frame) {
            Err(ParseError::NotIp | ParseError::TruncatedEthernet) => None,
            Err(_) => Some(CtState(CtState::TRK | CtState::INV)),
            Ok(p) => match verify_frame(&frame) {
                Err(ChecksumError::Ipv4Header | ChecksumError::L4 | ChecksumError::Parse(_)) => {
                    Some(CtState(CtState::TRK | CtState::INV))
                }
                Ok(()) | Err(ChecksumError::InnerIpv4Header | ChecksumError::InnerL4) => {
                    let r = if nat_on {
                        worker.process_nat(&p, opts.zone, true, &opts.nat, now)
                    } else {
                        worker.process(&p, opts.zone, true, now)
                    };
                    if nat_on && out.is_some() {
                        if let Err(e) = rewrite::apply(&mut frame, &p, &r, &ct) {
                            // The datapath would drop it; the file keeps it untranslated.
                            eprintln!(
                                "packet {}: {e} (written untranslated)",
                                result.flags.len() + 1
                            );
                        }
                    }
                    Some(r.state)
                }
            },
        };
        result
            .flags
            .push(state.map(|s| s.to_string()).unwrap_or_default());
        if let Some(w) = out.as_mut() {
            w(pkt.timestamp, &frame)?;
        }
    }
    drop(worker);
    result.conns = ct
        .all_conns()
        .iter()
        .filter(|c| c.expiry > now)
        .map(|c| c.ovs_line(false, now))
        .collect();
    result.conns.sort();
    Ok(result)
}

/// `ctgate-perf replay`.
pub fn run(args: &Args) -> Result<(), String> {
    let mut packets =
        pcap::read_file(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    if args.quick {
        packets.truncate(QUICK_PACKETS);
    }
    let opts = Options {
        zone: args.zone,
        tcp_seq_check: !args.no_tcp_seq_check,
        nat: NatSpec {
            snat: args.snat,
            dnat: args.dnat,
        },
    };
    let mut writer = match &args.write {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(
                pcap::Writer::new(BufWriter::new(f))
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let out_name = args
        .write
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut sink = |ts: Duration, data: &[u8]| -> Result<(), String> {
        if let Some(w) = writer.as_mut() {
            w.write_packet(ts, data)
                .map_err(|e| format!("{out_name}: {e}"))?;
        }
        Ok(())
    };
    let t0 = std::time::Instant::now();
    let r = replay(
        &packets,
        &opts,
        if args.write.is_some() {
            Some(&mut sink)
        } else {
            None
        },
    )?;
    let secs = t0.elapsed().as_secs_f64();
    if let Some(w) = writer {
        w.into_inner()
            .and_then(|mut b| std::io::Write::flush(&mut b).map_err(pcap::Error::Io))
            .map_err(|e| format!("{out_name}: {e}"))?;
    }
    let mut text = String::with_capacity(r.flags.len() * 16 + r.conns.len() * 160);
    if !args.summary {
        for (i, f) in r.flags.iter().enumerate() {
            if args.json {
                text.push_str(&format!(
                    "{{\"packet\":{},\"flags\":{}}}\n",
                    i + 1,
                    serde_json::Value::from(f.as_str())
                ));
            } else {
                text.push_str(&format!("{}: {f}\n", i + 1));
            }
        }
        for c in &r.conns {
            if args.json {
                text.push_str(&format!(
                    "{{\"conn\":{}}}\n",
                    serde_json::Value::from(c.as_str())
                ));
            } else {
                text.push_str(c);
                text.push('\n');
            }
        }
    }
    if args.summary || args.json {
        text.push_str(&summary(&args.file, &r, secs).render(args.json));
        text.push('\n');
    }
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(text.as_bytes())
        .and_then(|()| lock.flush())
        .map_err(|e| format!("stdout: {e}"))
}
