//! `ctgate-perf replay`: runs a pcap through the connection tracker alone, like Open
//! vSwitch's `ovstest test-conntrack pcap`, and prints what it decided.
//!
//! ```text
//! ctgate-perf replay FILE.pcap [--zone N] [--no-tcp-seq-check]
//!                              [--snat RANGE] [--dnat RANGE] [--write OUT.pcap]
//!                              [--alg HELPER:PORT]...
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
//! * IP fragments are reassembled first, as in the gateway (and OVS's `ipf`), with the
//!   default `[fragments]` settings (`ctgate::ipf`): a fragment is held until its datagram
//!   is complete; the datagram is tracked as one packet; then every fragment of it gets
//!   the datagram's flags and leaves, translated (addresses in each, the L4 header in the
//!   first). A fragment the module refuses on its own (below the minimum size, a
//!   duplicate, one that overlaps held data, headers that do not add up) is `trk,inv`
//!   and passed on untouched, as OVS passes it to conntrack. A fragment that never
//!   leaves prints a word instead of flags: `held` (its datagram still incomplete at the
//!   end), `expired` (incomplete 15 s after its first fragment) or `dropped` (its
//!   datagram dropped while held: an overlap, a first fragment without the whole L4
//!   header, purged for room).
//!
//! Output options: `--summary` prints, instead of the packets and the table, one line
//! `bench=replay file=PATH packets=N untracked=U trk=T inv=I new=… est=… rel=… rpl=…
//! conns=C secs=S pps=P unsent=F` (`unsent`: fragments that never left; counts of packets having each flag; `secs` is the time the
//! tracker took, NAT rewrite included). `--json` prints each packet as
//! `{"packet":N,"flags":"trk,new"}`, each connection as `{"conn":"…"}` and then the summary
//! as a JSON object (with `--summary`, only that). `--quick` replays at most the first
//! 100000 packets.
//!
//! `--alg ftp:21` (repeatable; `tftp:69`, other ports too) gives connections to that port
//! the helper, as `ct(commit,alg=ftp)` on their packets would (the gateway's `[[alg]]`
//! rules), and runs the gateway's ALG step on their packets; without it no connection has
//! one.
//!
//! The connection table omits connections that have expired at the last packet's time
//! (OVS's dump skips them too, swept or not). `--write` writes every packet that leaves,
//! after NAT rewrite, in the order it leaves: fragments when their datagram completes, with
//! that packet's timestamp; the rest at their turn with their own.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::HashMap;

use ctgate::conntrack::alg::expect::Helper;
use ctgate::conntrack::alg::helpers::{ALG_FTP, ALG_TFTP};
use ctgate::conntrack::alg::track::AlgVerdict;
use ctgate::conntrack::conn::{ALG_HELPER, ALG_SKEW};
use ctgate::conntrack::{Conntrack, CtConfig, CtResult, CtState, CtWorker, DEFAULT_MAX_CONNS};
use ctgate::ipf::{self, FragKey, FragSettings, Ipf, Outcome, Refusal};
use ctgate::nat::alg::{rewrite_ftp_addr, shift_seq_ack, tcp_payload};
use ctgate::nat::{rewrite, NatRange, NatSpec};
use ctgate::pcap;
use ctgate::wire::frame_checksums::{verify_frame, ChecksumError};
use ctgate::wire::parse::{parse_frame, Fragment, L4Summary, ParseError};

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
    /// A helper for connections to a port (`ftp:21`, `tftp:69`); repeatable.
    #[arg(long = "alg", value_name = "HELPER:PORT", value_parser = parse_alg)]
    alg: Vec<(Helper, u16)>,
}

/// `HELPER:PORT` of `--alg`.
fn parse_alg(s: &str) -> Result<(Helper, u16), String> {
    let (h, p) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: want HELPER:PORT, e.g. ftp:21"))?;
    let helper =
        Helper::from_name(h).ok_or_else(|| format!("{h:?}: unknown helper (ftp or tftp)"))?;
    let port = p
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{p:?}: not a port (1-65535)"))?;
    Ok((helper, port))
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
        .int(
            "unsent",
            r.flags.iter().filter(|f| is_unsent(f)).count() as u64,
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
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub zone: u16,
    pub tcp_seq_check: bool,
    pub nat: NatSpec,
    /// The helper rules (`--alg`).
    pub helpers: Vec<(Helper, u16)>,
}

/// Milliseconds since the epoch of a capture timestamp (the tracker's clock).
fn ms(ts: Duration) -> u64 {
    u64::try_from(ts.as_millis()).unwrap_or(u64::MAX)
}

/// Receives each packet (timestamp, bytes) after NAT rewrite.
pub type Sink<'a> = &'a mut dyn FnMut(Duration, &[u8]) -> Result<(), String>;

/// Words printed instead of flags for a fragment that never left.
pub mod unsent {
    /// Still held at the end of the trace (its datagram incomplete).
    pub const HELD: &str = "held";
    /// Its datagram expired incomplete ([`FragSettings::timeout_ms`] after its first
    /// fragment).
    ///
    /// [`FragSettings::timeout_ms`]: ctgate::ipf::FragSettings
    pub const EXPIRED: &str = "expired";
    /// Its datagram was dropped while it was held: a later fragment overlapped it, its
    /// first fragment lacked the L4 header, or it was purged to make room.
    pub const DROPPED: &str = "dropped";
}

/// True for the word of a fragment that never left ([`unsent`]).
pub fn is_unsent(flags: &str) -> bool {
    matches!(flags, unsent::HELD | unsent::EXPIRED | unsent::DROPPED)
}

/// A held fragment: its packet number and where its data starts in the datagram.
#[derive(Clone, Copy)]
struct Member {
    index: usize,
    start: u32,
}

/// Replays `packets` through a fresh tracker. `out`, when given, receives every packet
/// that leaves, after NAT rewrite, with its timestamp: in file order, except fragments,
/// which leave when their datagram completes (at that packet's time), in datagram order.
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
    ct.set_helpers(&opts.helpers);
    // Reassembly with the gateway's (and OVS's) defaults; slots as large as the largest
    // frame of the capture.
    let largest = packets.iter().map(|p| p.data.len()).max().unwrap_or(0);
    let ipf = Ipf::new(FragSettings::default(), largest.max(64)).map_err(|e| e.to_string())?;
    let mut held: HashMap<FragKey, Vec<Member>> = HashMap::new();
    let mut worker = ct.worker(0);
    let mut result = Replay::default();
    let mut now = 0;
    let mut frame = Vec::new();
    let inv = CtState(CtState::TRK | CtState::INV);
    for (index, pkt) in packets.iter().enumerate() {
        if ms(pkt.timestamp) != now && ipf.n_frags() > 0 {
            // The gateway's control lcore expires incomplete datagrams as time passes.
            if ipf.expire(ms(pkt.timestamp), ipf.n_buckets()) > 0 {
                mark_gone(&ipf, &mut held, &mut result.flags, unsent::EXPIRED);
            }
        }
        now = ms(pkt.timestamp);
        frame.clear();
        frame.extend_from_slice(&pkt.data);
        result.flags.push(String::new());
        let parsed = parse_frame(&frame);
        let state = match parsed {
            Err(ParseError::NotIp | ParseError::TruncatedEthernet) => None,
            Err(_) => Some(inv),
            Ok(p) => match verify_frame(&frame) {
                Err(ChecksumError::Ipv4Header | ChecksumError::L4 | ChecksumError::Parse(_)) => {
                    Some(inv)
                }
                Ok(()) | Err(ChecksumError::InnerIpv4Header | ChecksumError::InnerL4)
                    if p.fragment != Fragment::None && ipf.enabled(p.family) =>
                {
                    let f = Frag {
                        ipf: &ipf,
                        held: &mut held,
                        opts,
                        nat_on,
                        ct: &ct,
                    };
                    match f.add(&frame, &p, index, now, &mut worker, &mut result.flags)? {
                        FragOut::Refused => Some(inv),
                        FragOut::Held => continue,
                        FragOut::Sent(frames) => {
                            if let Some(w) = out.as_mut() {
                                for f in &frames {
                                    w(pkt.timestamp, f)?;
                                }
                            }
                            continue;
                        }
                    }
                }
                Ok(()) | Err(ChecksumError::InnerIpv4Header | ChecksumError::InnerL4) => {
                    let r = if nat_on {
                        worker.process_nat(&p, opts.zone, true, &opts.nat, now)
                    } else {
                        worker.process(&p, opts.zone, true, now)
                    };
                    // The gateway's ALG step, then its NAT rewrite of the frame as the ALG
                    // left it.
                    let p = if r.alg != 0 {
                        alg_step(&mut worker, &mut frame, &r);
                        parse_frame(&frame).unwrap_or(p)
                    } else {
                        p
                    };
                    if nat_on && out.is_some() {
                        if let Err(e) = rewrite::apply(&mut frame, &p, &r, &ct) {
                            // The datapath would drop it; the file keeps it untranslated.
                            eprintln!("packet {}: {e} (written untranslated)", index + 1);
                        }
                    }
                    Some(r.state)
                }
            },
        };
        result.flags[index] = state.map(|s| s.to_string()).unwrap_or_default();
        if let Some(w) = out.as_mut() {
            w(pkt.timestamp, &frame)?;
        }
    }
    drop(worker);
    for m in held.values().flatten() {
        if let Some(f) = result.flags.get_mut(m.index) {
            *f = unsent::HELD.to_string();
        }
    }
    result.conns = ct
        .all_conns()
        .iter()
        .filter(|c| c.expiry > now)
        .map(|c| c.ovs_line(false, now))
        .collect();
    result.conns.sort();
    Ok(result)
}

/// Marks `word` the held fragments of every datagram the module no longer holds.
fn mark_gone(
    ipf: &Ipf,
    held: &mut HashMap<FragKey, Vec<Member>>,
    flags: &mut [String],
    word: &str,
) {
    let live: Vec<FragKey> = ipf.lists().iter().map(|l| l.key).collect();
    held.retain(|k, members| {
        if live.contains(k) {
            return true;
        }
        for m in members.iter() {
            if let Some(f) = flags.get_mut(m.index) {
                *f = word.to_string();
            }
        }
        false
    });
}

/// What became of one fragment.
enum FragOut {
    /// Refused on its own (too small, a duplicate, an overlap, bad headers): `trk,inv`
    /// and passed on as it is, as OVS passes such a fragment to conntrack.
    Refused,
    /// Held (or its datagram dropped): nothing leaves now.
    Held,
    /// Its datagram completed: the original fragments, translated, in datagram order.
    Sent(Vec<Vec<u8>>),
}

/// The reassembly step of a replay.
struct Frag<'a> {
    ipf: &'a Ipf,
    held: &'a mut HashMap<FragKey, Vec<Member>>,
    opts: &'a Options,
    nat_on: bool,
    ct: &'a Conntrack,
}

impl Frag<'_> {
    /// Hands fragment `frame` (packet `index`) to the module, as the gateway does; on
    /// completion tracks the datagram and gives every fragment the datagram's flags.
    fn add(
        self,
        frame: &[u8],
        p: &ctgate::wire::parse::ParsedPacket,
        index: usize,
        now: u64,
        worker: &mut CtWorker<'_>,
        flags: &mut [String],
    ) -> Result<FragOut, String> {
        let Ok(info) = ipf::extract(frame, p, self.opts.zone) else {
            // Counted invalid by the module too.
            let _ = self.ipf.add(frame, p, self.opts.zone, now);
            return Ok(FragOut::Refused);
        };
        let settings = self.ipf.settings();
        let min = if info.key.family == 6 {
            settings.min_frag_v6
        } else {
            settings.min_frag_v4
        };
        let below_minimum = !info.last && info.ip_len < min as usize;
        let before = self.ipf.status();
        let outcome = self.ipf.add(frame, p, self.opts.zone, now);
        let after = self.ipf.status();
        let fam = |s: &ipf::IpfStatus| if info.key.family == 6 { s.v6 } else { s.v4 };
        let (b, a) = (fam(&before), fam(&after));
        let mut drop_held = |word: &str| {
            for m in self.held.remove(&info.key).unwrap_or_default() {
                if let Some(f) = flags.get_mut(m.index) {
                    *f = word.to_string();
                }
            }
        };
        if a.expired > b.expired {
            // Its datagram's earlier fragments had expired: this one starts anew.
            drop_held(unsent::EXPIRED);
        }
        if a.purged > b.purged {
            // Some datagram was purged to make room (any key).
            mark_gone(self.ipf, self.held, flags, unsent::DROPPED);
        }
        match outcome {
            Outcome::Held => {
                self.held.entry(info.key).or_default().push(Member {
                    index,
                    start: info.start,
                });
                Ok(FragOut::Held)
            }
            Outcome::Refused(Refusal::Overlapped) => {
                // The whole datagram goes (RFC 5722); this fragment is passed on invalid.
                for m in self.held.remove(&info.key).unwrap_or_default() {
                    if let Some(f) = flags.get_mut(m.index) {
                        *f = unsent::DROPPED.to_string();
                    }
                }
                Ok(FragOut::Refused)
            }
            Outcome::Refused(Refusal::TooSmall) if !below_minimum => {
                // The last piece of a datagram whose first fragment lacks the L4 header:
                // the datagram is dropped (RFC 1858).
                for m in self.held.remove(&info.key).unwrap_or_default() {
                    if let Some(f) = flags.get_mut(m.index) {
                        *f = unsent::DROPPED.to_string();
                    }
                }
                if let Some(f) = flags.get_mut(index) {
                    *f = unsent::DROPPED.to_string();
                }
                Ok(FragOut::Held)
            }
            Outcome::Refused(_) => Ok(FragOut::Refused),
            Outcome::Complete(dg) => {
                let mut members = self.held.remove(&info.key).unwrap_or_default();
                members.push(Member {
                    index,
                    start: info.start,
                });
                let s = &dg.summary;
                let r = if !s.l4_checksum_ok {
                    None
                } else if self.nat_on {
                    Some(worker.process_nat(&s.parsed, self.opts.zone, true, &self.opts.nat, now))
                } else {
                    Some(worker.process(&s.parsed, self.opts.zone, true, now))
                };
                let state = r
                    .as_ref()
                    .map_or(CtState(CtState::TRK | CtState::INV), |r| r.state);
                let mut sent = Vec::with_capacity(dg.len());
                for k in 0..dg.len() {
                    let Some(mut f) = dg.fragment(k) else {
                        continue;
                    };
                    let Ok(fp) = parse_frame(&f) else {
                        continue;
                    };
                    let start = ipf::extract(&f, &fp, self.opts.zone).map_or(u32::MAX, |i| i.start);
                    // The latest held fragment at that offset is this datagram's.
                    if let Some(pos) = members.iter().rposition(|m| m.start == start) {
                        let m = members.remove(pos);
                        if let Some(fl) = flags.get_mut(m.index) {
                            *fl = state.to_string();
                        }
                    }
                    if let Some(r) = r.as_ref().filter(|_| self.nat_on) {
                        if let Err(e) = rewrite::apply(&mut f, &fp, r, self.ct) {
                            eprintln!("packet {}: {e} (written untranslated)", index + 1);
                        }
                    }
                    sent.push(f.to_vec());
                }
                // Held fragments of an earlier, expired datagram with the same key.
                for m in members {
                    if let Some(f) = flags.get_mut(m.index) {
                        *f = unsent::EXPIRED.to_string();
                    }
                }
                Ok(FragOut::Sent(sent))
            }
        }
    }
}

/// The gateway's ALG step (`pipeline::gateway::alg`, the same order and calls) on a
/// tracked frame of a helper connection: a TFTP request or an FTP announcement handed to
/// the tracker (which creates the expectation), the announced address rewritten when the
/// parent's NAT changes it (the frame replaced by the rewritten one), and the sequence
/// and acknowledgement numbers of a connection with a skew moved. A rewrite that fails
/// leaves the frame as it was (counted by the tracker).
fn alg_step(worker: &mut CtWorker<'_>, frame: &mut Vec<u8>, r: &CtResult) {
    let (Some(hit), Ok(p)) = (r.conn, parse_frame(frame)) else {
        return;
    };
    let helper = r.alg & ALG_HELPER;
    match p.l4 {
        L4Summary::Udp { .. } if helper == ALG_TFTP => {
            let l4 = usize::from(p.l4_offset);
            if let Some(payload) = frame.get(l4 + 8..l4 + usize::from(p.l4_len)) {
                worker.alg_tftp(&hit, payload);
            }
        }
        L4Summary::Tcp(t) => {
            let (mut dseq, mut dack) = (0, 0);
            if r.alg & ALG_SKEW != 0 {
                if let Some(sk) = worker.alg_skew(&hit) {
                    dseq = sk[hit.dir & 1].seq_offset(t.seq);
                    dack = sk[(hit.dir ^ 1) & 1].ack_offset(t.ack);
                }
            }
            if helper == ALG_FTP && t.payload_len > 0 && !r.state.has(CtState::INV) {
                let verdict = tcp_payload(frame, &p)
                    .and_then(|(s, e)| frame.get(s..e))
                    .map(|payload| worker.alg_ftp(&hit, payload));
                if let Some(AlgVerdict::Rewrite { msg, to }) = verdict {
                    let mut buf = vec![0u8; frame.len() + 64];
                    match rewrite_ftp_addr(frame, &p, &msg, to, &mut buf) {
                        Ok((len, delta)) => {
                            if delta == 0 || worker.alg_add_skew(&hit, t.seq, delta) {
                                buf.truncate(len);
                                *frame = buf;
                            }
                        }
                        Err(_) => worker.alg_rewrite_failed(),
                    }
                }
            }
            if dseq != 0 || dack != 0 {
                if let Ok(q) = parse_frame(frame) {
                    shift_seq_ack(frame, &q, dseq, dack);
                }
            }
        }
        _ => {}
    }
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
        helpers: args.alg.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use ctgate::wire::frame_checksums::verify_frame;
    use ctgate::wire::testframe::{fragments, Frame, L4};

    fn pkt(ms: u64, data: Vec<u8>) -> pcap::Packet {
        pcap::Packet {
            timestamp: Duration::from_millis(ms),
            orig_len: data.len() as u32,
            data,
        }
    }

    /// A 3,000-byte UDP datagram in three fragments, last first, under SNAT: nothing leaves
    /// until the first fragment completes it; then all three leave in datagram order with
    /// the datagram's flags, the source address translated in each and the UDP checksum
    /// (first fragment) right for the translated datagram.
    #[test]
    fn fragments_leave_translated_when_their_datagram_completes() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let whole = Frame::v4([10, 1, 0, 1], [192, 0, 2, 1], L4::udp(40000, 53, &data))
            .dont_frag(false)
            .build();
        let frags = fragments(&whole, 1232, 9);
        let packets: Vec<pcap::Packet> = [2, 1, 0]
            .iter()
            .enumerate()
            .map(|(t, &k)| pkt(1000 + t as u64, frags[k].clone()))
            .collect();
        let opts = Options {
            zone: 0,
            tcp_seq_check: true,
            nat: NatSpec {
                snat: Some("203.0.113.200".parse().unwrap()),
                dnat: None,
            },
            helpers: Vec::new(),
        };
        let mut out = Vec::new();
        let mut sink = |ts: Duration, f: &[u8]| -> Result<(), String> {
            out.push((ts, f.to_vec()));
            Ok(())
        };
        let r = replay(&packets, &opts, Some(&mut sink)).unwrap();
        assert_eq!(r.flags, ["trk,new,snat"; 3]);
        assert_eq!(r.conns.len(), 1);
        // All three at the completing packet's time, in datagram order.
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(ts, _)| *ts == Duration::from_millis(1002)));
        for (k, (_, f)) in out.iter().enumerate() {
            assert_eq!(f.len(), frags[k].len());
            assert_eq!(&f[26..30], &[203, 0, 113, 200], "source translated");
            assert_eq!(f[34 + 8..], frags[k][34 + 8..], "data unchanged");
            assert_eq!(verify_frame(f), Ok(()), "IPv4 header checksum");
        }
        // Reassembled, the translated datagram's UDP checksum verifies.
        let mut re = out[0].1[..34].to_vec();
        for (_, f) in &out {
            re.extend_from_slice(&f[34..]);
        }
        let total = (re.len() - 14) as u16;
        re[16..18].copy_from_slice(&total.to_be_bytes());
        re[20..22].copy_from_slice(&[0, 0]);
        re[24..26].copy_from_slice(&[0, 0]);
        let c = ctgate::wire::checksum::ipv4_header(&re[14..34]);
        re[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            verify_frame(&re),
            Ok(()),
            "UDP checksum of the whole datagram"
        );
    }

    /// A refused fragment (below the minimum size) is `trk,inv` and passed on as it is; a
    /// fragment whose datagram never completes leaves nothing and prints `held`, or
    /// `expired` once 15 s have passed.
    #[test]
    fn refused_fragments_are_invalid_and_incomplete_ones_never_leave() {
        let data = vec![7u8; 3000];
        let whole = Frame::v4([10, 1, 0, 1], [192, 0, 2, 1], L4::udp(40000, 53, &data))
            .dont_frag(false)
            .build();
        let small = fragments(&whole, 576, 1);
        let big = fragments(&whole, 1232, 2);
        let packets = vec![
            pkt(0, small[0].clone()),
            pkt(1, big[0].clone()),
            pkt(20_000, big[1].clone()),
        ];
        let mut out = Vec::new();
        let mut sink = |_: Duration, f: &[u8]| -> Result<(), String> {
            out.push(f.to_vec());
            Ok(())
        };
        let r = replay(&packets, &Options::default(), Some(&mut sink)).unwrap();
        assert_eq!(r.flags, ["trk,inv", "expired", "held"]);
        assert_eq!(out, [small[0].clone()]);
        assert!(r.conns.is_empty());
    }
}
