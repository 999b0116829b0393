//! The control commands, named and formatted after Open vSwitch's `ovs-appctl dpctl/…`
//! conntrack commands (lib/dpctl.c) so operators' scripts keep working, plus ctgate's
//! `show`, `stats` and `version`.
//!
//! A command is executed against a [`ControlContext`]: the tracker, the sweep interval
//! and a [`GatewayInfo`] provider the gateway fills. Nothing here needs DPDK, so every
//! command is tested with a plain [`Conntrack`] and a fake provider.
//!
//! Commands that walk the table (`dump-conntrack`, `flush-conntrack` by zone or partial
//! tuple, `ct-stats-show`, `ct-bkts`) return a [`Job`] that walks a bounded number of
//! buckets per [`Job::step`], so the control lcore is never held long and no bucket lock
//! is held longer than one bucket's walk; the server streams their output as it comes.
//!
//! Outputs are what `ovs-appctl` prints, byte for byte where OVS defines them (including
//! the newline `ovs-appctl` adds to an output that lacks one). Errors of argument parsing
//! carry OVS's message and, like `dpctl_error`, the errno text: `invalid default limit
//! (Invalid argument)`.

use crate::conntrack::conn::TcpState;
use crate::conntrack::format::proto_name;
use crate::conntrack::key::{ip_to_addr, is_icmp};
use crate::conntrack::l4::tcp::display_state;
use crate::conntrack::{ConnKey, ConnSnapshot, Conntrack, CtState, TimeoutAttr, TimeoutPolicy};
use crate::wire::parse::proto;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// What the gateway tells about itself, for `show`, `stats` and `version`. The gateway
/// implements it over its ports and workers; tests use a fake.
pub trait GatewayInfo {
    /// `show`: ports, lcores, queues, uptime. Full text, ending with a newline.
    fn show(&self) -> String;
    /// `stats`: per-port and per-worker counters and drop reasons. Full text, ending
    /// with a newline; the tracker's counters are appended after it.
    fn stats(&self) -> String;
    /// More version lines for `version` (e.g. the DPDK version), ending with a newline.
    fn version_extra(&self) -> Option<String> {
        None
    }
}

/// Everything a command may read or change. Built by the control loop for each
/// [`super::socket::ControlServer::poll`] call (it only holds references).
pub struct ControlContext<'a> {
    /// The tracker.
    pub conntrack: &'a Conntrack,
    /// The sweep interval in milliseconds (`ct-set-sweep-interval`); the control loop
    /// reads it to pace the sweep.
    pub sweep_interval_ms: &'a AtomicU32,
    /// Ports, lcores, counters.
    pub info: &'a dyn GatewayInfo,
    /// Now on the tracker's clock (ms, the `now` given to `CtWorker::process`): gives
    /// `timeout=` and hides expired connections from dumps.
    pub now: u64,
}

/// A command of the table: its name, argument synopsis and help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    /// Arguments, e.g. `[-s|--stats] [--json] [zone=N]`.
    pub args: &'static str,
    /// One line.
    pub summary: &'static str,
    /// More lines (may be empty).
    pub details: &'static str,
}

impl CommandSpec {
    /// The help text of the command (`ctgate-ctl COMMAND --help`).
    pub fn help(&self) -> String {
        let mut s = format!(
            "usage: ctgate-ctl {}{}{}\n\n{}\n",
            self.name,
            if self.args.is_empty() { "" } else { " " },
            self.args,
            self.summary
        );
        if !self.details.is_empty() {
            s.push('\n');
            s.push_str(self.details);
            if !self.details.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "dump-conntrack",
        args: "[-s|--stats] [--json] [zone=N]",
        summary: "Print every connection, one line each, in OVS's format.",
        details: "Lines are `tcp,orig=(src=A,dst=B,sport=P,dport=Q),reply=(...)[,zone=Z][,timeout=S]\n\
                  [,mark=M][,labels=0xL][,protoinfo=(state=S)]`, as `ovs-appctl dpctl/dump-conntrack`.\n\
                  The reply tuple is the NAT-translated one for NATed connections.\n\
                  -s, --stats, --statistics  add timeout=<seconds left>\n\
                  --json                     one JSON object per line instead (for machines)\n\
                  zone=N                     only zone N\n\
                  Large tables are streamed; the output is complete when the command ends.",
    },
    CommandSpec {
        name: "flush-conntrack",
        args: "[zone=N] [mark=X[/M]] [labels=Y[/N]] ['ct-orig-tuple' ['ct-reply-tuple']]",
        summary: "Delete all connections, a zone's, or those matching a tuple.",
        details: "Tuples are OVS's: comma-separated ct_nw_src=, ct_nw_dst=, ct_ipv6_src=, ct_ipv6_dst=,\n\
                  ct_nw_proto=, ct_tp_src=, ct_tp_dst=, icmp_type=, icmp_code=, icmp_id= (the ICMP\n\
                  fields after ct_nw_proto=1 or 58), e.g.\n\
                  \x20 'ct_nw_src=10.1.1.1,ct_nw_dst=10.1.1.2,ct_nw_proto=6,ct_tp_src=1,ct_tp_dst=2'\n\
                  A full 5-tuple (addresses and both ports; for ICMP addresses, type, code and id)\n\
                  deletes the one connection that has it in either direction, in zone N (default 0);\n\
                  it fails with 'No such file or directory' if there is none. Otherwise every\n\
                  connection whose original (and reply, if given) tuple has all the given fields is\n\
                  deleted, in every zone unless zone=N is given. Pass '' as the original tuple to\n\
                  match on the reply tuple only.",
    },
    CommandSpec {
        name: "ct-stats-show",
        args: "[-m|--more|verbose] [zone=N]",
        summary: "Count connections per protocol (and per TCP state with -m), then ctgate's counters.",
        details: "The first block is OVS's (`Connections Stats:`, `    Total: N`, `  TCP: N`, …,\n\
                  `    Conn per TCP states:` with -m); ctgate's tracker counters (created, expired,\n\
                  refused, invalid, …, over all zones) follow under `ctgate counters:`.",
    },
    CommandSpec {
        name: "ct-bkts",
        args: "[gt=N]",
        summary: "Show how connections spread over the table's buckets.",
        details: "Prints `Total Buckets: N`, `Current Connections: N` and OVS's table of connections per\n\
                  bucket (8 buckets a row; buckets with at most N connections shown as `.`), then\n\
                  min/max/avg connections per bucket. A connection counts in the bucket of its\n\
                  original-direction key; expired connections not yet swept are counted, as in\n\
                  ct-get-nconns.",
    },
    CommandSpec {
        name: "ct-set-maxconns",
        args: "N",
        summary: "Set the global connection limit (at most the pool allocated at start).",
        details: "",
    },
    CommandSpec {
        name: "ct-get-maxconns",
        args: "",
        summary: "Print the global connection limit.",
        details: "",
    },
    CommandSpec {
        name: "ct-get-nconns",
        args: "",
        summary: "Print the number of connections in the table.",
        details: "",
    },
    CommandSpec {
        name: "ct-set-limits",
        args: "[default=L] [zone=N,limit=L]...",
        summary: "Set the default per-zone limit and/or zones' own limits.",
        details: "default=0 means no default limit; a zone's limit=0 admits no connection. A new limit\n\
                  applies to the next new connection; existing connections stay.",
    },
    CommandSpec {
        name: "ct-del-limits",
        args: "[default] [zone=N1[,N2]...]",
        summary: "Remove zones' own limits (they inherit the default again), or the default limit.",
        details: "",
    },
    CommandSpec {
        name: "ct-get-limits",
        args: "[zone=N1[,N2]...]",
        summary: "Print `default limit=N`, then `zone=Z,limit=L,count=C` per zone.",
        details: "Without zones: the zones that have their own limit. With zones: those zones, with the\n\
                  default limit for a zone without its own.",
    },
    CommandSpec {
        name: "ct-enable-tcp-seq-chk",
        args: "",
        summary: "Turn TCP sequence (window) checking on.",
        details: "",
    },
    CommandSpec {
        name: "ct-disable-tcp-seq-chk",
        args: "",
        summary: "Turn TCP sequence (window) checking off.",
        details: "",
    },
    CommandSpec {
        name: "ct-get-tcp-seq-chk",
        args: "",
        summary: "Print `TCP sequence checking: enabled` or `disabled`.",
        details: "",
    },
    CommandSpec {
        name: "ct-set-sweep-interval",
        args: "MS",
        summary: "Set the interval of the expired-connection sweep, in milliseconds (> 0).",
        details: "",
    },
    CommandSpec {
        name: "ct-get-sweep-interval",
        args: "",
        summary: "Print the sweep interval in milliseconds.",
        details: "",
    },
    CommandSpec {
        name: "ct-set-timeout-policy",
        args: "zone=N|default ATTR=SECONDS...",
        summary: "Set timeouts of a zone (or of the default policy), in seconds.",
        details: "ATTR is one of OVS's names: tcp_syn_sent, tcp_syn_recv, tcp_established, tcp_fin_wait,\n\
                  tcp_time_wait, tcp_close, udp_first, udp_single, udp_multiple, icmp_first, icmp_reply\n\
                  (udp_* apply to every protocol but TCP and ICMP). Attributes not given keep their\n\
                  value. A connection takes a new timeout at its next packet.",
    },
    CommandSpec {
        name: "ct-get-timeout-policy",
        args: "zone=N|default",
        summary: "Print a zone's timeouts, `ATTR=SECONDS` per line (`(default)` when inherited).",
        details: "",
    },
    CommandSpec {
        name: "ct-del-timeout-policy",
        args: "zone=N|default",
        summary: "Remove a zone's timeouts (it uses the default policy again); for `default`, restore OVS's defaults.",
        details: "",
    },
    CommandSpec {
        name: "show",
        args: "",
        summary: "Print ports, lcores, queues and uptime.",
        details: "",
    },
    CommandSpec {
        name: "stats",
        args: "",
        summary: "Print per-port and per-worker counters and drop reasons, then the tracker's counters.",
        details: "",
    },
    CommandSpec {
        name: "version",
        args: "",
        summary: "Print ctgate's version.",
        details: "",
    },
    CommandSpec {
        name: "help",
        args: "",
        summary: "List the commands.",
        details: "",
    },
];

/// The command named `name`.
pub fn find(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The `help` text: every command with its arguments and summary.
pub fn help_text() -> String {
    let mut s = String::from("Commands:\n");
    for c in COMMANDS {
        let _ = writeln!(s, "  {} {}", c.name, c.args);
        let _ = writeln!(s, "      {}", c.summary);
    }
    s
}

/// What one step of a [`Job`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More to do.
    More,
    /// Finished; all output has been written.
    Done,
}

/// A command's work over the table, done a bounded number of buckets at a time. A job
/// holds no borrow and no lock between steps.
pub trait Job: Send {
    /// Walks at most `budget` buckets (at least one), appending output to `out`.
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String>;
}

/// What executing a command gives.
pub enum Outcome {
    /// The whole result (the output or an error).
    Done(Result<String, String>),
    /// Output to be produced step by step.
    Stream(Box<dyn Job>),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Outcome::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

fn done(s: String) -> Outcome {
    Outcome::Done(Ok(s))
}

fn fail(e: String) -> Outcome {
    Outcome::Done(Err(e))
}

/// An argument error as `dpctl_error` reports it with `EINVAL`.
fn einval(msg: impl std::fmt::Display) -> String {
    format!("{msg} (Invalid argument)")
}

/// Executes `cmd` with `args`. Never panics on any input.
pub fn execute(ctx: &ControlContext, cmd: &str, args: &[String]) -> Outcome {
    let Some(spec) = find(cmd) else {
        return fail(format!(
            "unknown command \"{}\" (the command \"help\" lists them)",
            cmd.escape_debug()
        ));
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return done(spec.help());
    }
    let r = match spec.name {
        "dump-conntrack" => dump_conntrack(args),
        "flush-conntrack" => flush_conntrack(ctx, args),
        "ct-stats-show" => ct_stats_show(args),
        "ct-bkts" => ct_bkts(args),
        "ct-set-maxconns" => ct_set_maxconns(ctx, args),
        "ct-get-maxconns" => {
            no_args(args).map(|()| done(format!("{}\n", ctx.conntrack.max_conns())))
        }
        "ct-get-nconns" => no_args(args).map(|()| done(format!("{}\n", ctx.conntrack.n_conns()))),
        "ct-set-limits" => ct_set_limits(ctx, args),
        "ct-del-limits" => ct_del_limits(ctx, args),
        "ct-get-limits" => ct_get_limits(ctx, args),
        "ct-enable-tcp-seq-chk" | "ct-disable-tcp-seq-chk" => no_args(args).map(|()| {
            let on = spec.name == "ct-enable-tcp-seq-chk";
            ctx.conntrack.set_tcp_seq_check(on);
            done(format!(
                "{} TCP sequence checking successful\n",
                if on { "enabling" } else { "disabling" }
            ))
        }),
        "ct-get-tcp-seq-chk" => no_args(args).map(|()| {
            done(format!(
                "TCP sequence checking: {}\n",
                if ctx.conntrack.tcp_seq_check() {
                    "enabled"
                } else {
                    "disabled"
                }
            ))
        }),
        "ct-set-sweep-interval" => ct_set_sweep_interval(ctx, args),
        "ct-get-sweep-interval" => no_args(args).map(|()| {
            done(format!(
                "{}\n",
                ctx.sweep_interval_ms.load(Ordering::Relaxed)
            ))
        }),
        "ct-set-timeout-policy" => ct_set_timeout_policy(ctx, args),
        "ct-get-timeout-policy" => ct_get_timeout_policy(ctx, args),
        "ct-del-timeout-policy" => ct_del_timeout_policy(ctx, args),
        "show" => no_args(args).map(|()| done(ensure_newline(ctx.info.show()))),
        "stats" => no_args(args).map(|()| done(stats_text(ctx))),
        "version" => no_args(args).map(|()| {
            let mut s = format!("ctgate {}\n", env!("CARGO_PKG_VERSION"));
            if let Some(x) = ctx.info.version_extra() {
                s.push_str(&ensure_newline(x));
            }
            done(s)
        }),
        "help" => Ok(done(help_text())),
        _ => Ok(fail(format!(
            "command \"{}\" is not implemented",
            spec.name
        ))),
    };
    r.unwrap_or_else(fail)
}

/// Executes a command and runs its job to the end (tests, and callers without a socket).
pub fn run_to_end(ctx: &ControlContext, cmd: &str, args: &[String]) -> Result<String, String> {
    match execute(ctx, cmd, args) {
        Outcome::Done(r) => r,
        Outcome::Stream(mut job) => {
            let mut out = String::new();
            loop {
                if job.step(ctx, 1024, &mut out)? == Step::Done {
                    return Ok(out);
                }
            }
        }
    }
}

fn ensure_newline(mut s: String) -> String {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------------------
// Argument parsing helpers.

/// The options `ovs-appctl dpctl/…` accepts for every command, plus ctgate's `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Opts {
    stats: bool,
    more: bool,
    json: bool,
}

/// Splits options from the other arguments (options may stand anywhere). Unknown
/// options are errors with OVS's message.
fn split_options(args: &[String]) -> Result<(Opts, Vec<&str>), String> {
    let mut o = Opts::default();
    let mut rest = Vec::new();
    for a in args {
        if let Some(long) = a.strip_prefix("--") {
            match long {
                "statistics" | "stats" => o.stats = true,
                "more" => o.more = true,
                "json" => o.json = true,
                _ => return Err(format!("Unrecognized option {}", a.escape_debug())),
            }
        } else if a.len() > 1 && a.starts_with('-') {
            for c in a.chars().skip(1) {
                match c {
                    's' => o.stats = true,
                    'm' => o.more = true,
                    _ => return Err(format!("Unrecognized option -{}", c.escape_debug())),
                }
            }
        } else {
            rest.push(a.as_str());
        }
    }
    Ok((o, rest))
}

fn no_json(o: &Opts, cmd: &str) -> Result<(), String> {
    if o.json {
        return Err(format!("option --json is not supported by {cmd}"));
    }
    Ok(())
}

/// Commands without arguments (the OVS options are accepted and ignored).
fn no_args(args: &[String]) -> Result<(), String> {
    let (o, rest) = split_options(args)?;
    if o.json {
        return Err("option --json is not supported by this command".into());
    }
    match rest.first() {
        Some(a) => Err(einval(format_args!(
            "invalid argument \"{}\"",
            a.escape_debug()
        ))),
        None => Ok(()),
    }
}

/// A number as C's `strtoull` with base 0 reads it (`0x1f`, `017`, `15`), the whole
/// string. No sign, no blanks.
fn parse_c_uint(s: &str) -> Option<u128> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u128::from_str_radix(digits, radix).ok()
}

/// A plain decimal number (`ovs_scan`'s `%u`).
fn parse_dec<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `zone=N` for dump-conntrack and ct-stats-show.
fn parse_zone_arg(a: &str) -> Result<u16, String> {
    match a.strip_prefix("zone=") {
        Some(z) => parse_dec::<u16>(z).ok_or_else(|| einval("failed to parse zone")),
        None => Err(einval(format_args!(
            "invalid argument \"{}\"",
            a.escape_debug()
        ))),
    }
}

/// Splits `s` into `key=value` pairs the way `ofputil_parse_key_value` does for the
/// flat strings used here: comma separated, key up to the first `=` or `:`.
fn key_values(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.find(['=', ':']) {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, ""),
        })
}

// ---------------------------------------------------------------------------------------
// Walking the table.

/// Walks buckets `[*cursor, *cursor + budget)` (at least one), calling `f` with each
/// connection's index, generation and snapshot, with no lock held. Returns true when
/// the end of the table is reached.
fn walk(
    ct: &Conntrack,
    cursor: &mut usize,
    budget: usize,
    mut f: impl FnMut(u32, u32, &ConnSnapshot),
) -> bool {
    let table = ct.table();
    let n = table.n_buckets();
    let end = cursor.saturating_add(budget.max(1)).min(n);
    let mut items: Vec<(u32, u32)> = Vec::with_capacity(32);
    for b in *cursor..end {
        items.clear();
        table.for_each_in_bucket(b, |idx, gen| items.push((idx, gen)));
        for &(idx, gen) in &items {
            if let Some(s) = ct.snapshot(idx, gen) {
                f(idx, gen, &s);
            }
        }
    }
    *cursor = end;
    end >= n
}

/// True when the connection has not expired (dumps and stats skip expired ones, as
/// OVS's `conntrack_dump_next` does).
fn alive(s: &ConnSnapshot, now: u64) -> bool {
    s.expiry > now
}

// ---------------------------------------------------------------------------------------
// dump-conntrack

fn dump_conntrack(args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    if o.more {
        return Err("option -m/--more is not supported by dump-conntrack".into());
    }
    let mut zone = None;
    for a in rest {
        zone = Some(parse_zone_arg(a)?);
    }
    Ok(Outcome::Stream(Box::new(DumpJob {
        cursor: 0,
        zone,
        stats: o.stats,
        json: o.json,
    })))
}

/// Buckets walked between output-size checks of a dump step.
const DUMP_SLICE: usize = 64;
/// A dump step stops once it has produced this much output.
const DUMP_STEP_OUTPUT: usize = 128 * 1024;

struct DumpJob {
    cursor: usize,
    zone: Option<u16>,
    stats: bool,
    json: bool,
}

impl Job for DumpJob {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let now = ctx.now;
        let (zone, stats, json) = (self.zone, self.stats, self.json);
        let start = out.len();
        let mut left = budget.max(1);
        // Walk in slices so that a step's output stays bounded even at full table load.
        while left > 0 {
            let slice = left.min(DUMP_SLICE);
            left -= slice;
            let end = walk(ctx.conntrack, &mut self.cursor, slice, |_, _, s| {
                if !alive(s, now) || zone.is_some_and(|z| z != s.orig.zone) {
                    return;
                }
                if json {
                    out.push_str(&conn_json(s, now).to_string());
                } else {
                    out.push_str(&s.ovs_line(stats, now));
                }
                out.push('\n');
            });
            if end {
                return Ok(Step::Done);
            }
            if out.len() - start >= DUMP_STEP_OUTPUT {
                break;
            }
        }
        Ok(Step::More)
    }
}

fn tuple_json(k: &ConnKey) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("src".into(), k.src_ip().to_string().into());
    m.insert("dst".into(), k.dst_ip().to_string().into());
    if is_icmp(k.proto) {
        m.insert("id".into(), k.sport.into());
        m.insert("type".into(), k.icmp_type().into());
        m.insert("code".into(), k.icmp_code().into());
    } else {
        m.insert("sport".into(), k.sport.into());
        m.insert("dport".into(), k.dport.into());
    }
    m.into()
}

/// One connection as a JSON object (`dump-conntrack --json`).
pub fn conn_json(s: &ConnSnapshot, now: u64) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("proto".into(), proto_name(s.orig.proto).into());
    m.insert("ip_proto".into(), s.orig.proto.into());
    m.insert("orig".into(), tuple_json(&s.orig));
    m.insert("reply".into(), tuple_json(&s.reply));
    m.insert("zone".into(), s.orig.zone.into());
    m.insert("mark".into(), s.mark.into());
    m.insert("labels".into(), format!("0x{:x}", s.label).into());
    m.insert(
        "timeout".into(),
        (s.expiry.saturating_sub(now) / 1000).into(),
    );
    let nat: Vec<serde_json::Value> = [(CtState::SNAT, "snat"), (CtState::DNAT, "dnat")]
        .iter()
        .filter(|(bit, _)| s.nat & bit != 0)
        .map(|(_, n)| (*n).into())
        .collect();
    m.insert("nat".into(), nat.into());
    if s.orig.proto == proto::TCP {
        m.insert("state".into(), display_state(&s.l4).name().into());
    }
    m.into()
}

// ---------------------------------------------------------------------------------------
// flush-conntrack

/// One side of a flush match (`ofp_ct_tuple`): unset fields match anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TupleMatch {
    src: Option<[u8; 16]>,
    dst: Option<[u8; 16]>,
    /// 0 = any.
    sport: u16,
    /// 0 = any.
    dport: u16,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    icmp_id: Option<u16>,
}

impl TupleMatch {
    fn is_zero(&self) -> bool {
        *self == TupleMatch::default()
    }

    fn matches(&self, k: &ConnKey) -> bool {
        if self.src.is_some_and(|a| a != k.src) || self.dst.is_some_and(|a| a != k.dst) {
            return false;
        }
        if is_icmp(k.proto) {
            self.icmp_id.is_none_or(|v| v == k.sport)
                && self.icmp_type.is_none_or(|v| v == k.icmp_type())
                && self.icmp_code.is_none_or(|v| v == k.icmp_code())
        } else {
            (self.sport == 0 || self.sport == k.sport) && (self.dport == 0 || self.dport == k.dport)
        }
    }
}

/// What `flush-conntrack` matches (`ofp_ct_match`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CtMatch {
    /// 0 = any, else 4 or 6.
    family: u8,
    /// 0 = any.
    proto: u8,
    orig: TupleMatch,
    reply: TupleMatch,
    mark: u32,
    mark_mask: u32,
    labels: u128,
    labels_mask: u128,
}

impl CtMatch {
    fn is_zero(&self) -> bool {
        *self == CtMatch::default()
    }

    /// The key of a direct single-connection flush, when the match is a full tuple of
    /// the original direction and nothing else (`ofp_ct_match_is_five_tuple`).
    fn five_tuple(&self, zone: u16) -> Option<ConnKey> {
        if !self.reply.is_zero() || self.mark_mask != 0 || self.labels_mask != 0 {
            return None;
        }
        let t = &self.orig;
        let (src, dst) = (t.src?, t.dst?);
        let (sport, dport) = if is_icmp(self.proto) {
            (t.icmp_id?, (t.icmp_type? as u16) << 8 | t.icmp_code? as u16)
        } else {
            if t.sport == 0 || t.dport == 0 {
                return None;
            }
            (t.sport, t.dport)
        };
        Some(ConnKey {
            src,
            dst,
            sport,
            dport,
            zone,
            proto: self.proto,
            family: self.family,
        })
    }

    fn matches(&self, s: &ConnSnapshot) -> bool {
        (self.family == 0 || self.family == s.orig.family)
            && (self.proto == 0 || self.proto == s.orig.proto)
            && self.orig.matches(&s.orig)
            && self.reply.matches(&s.reply)
            && (s.mark & self.mark_mask) == (self.mark & self.mark_mask)
            && (s.label & self.labels_mask) == (self.labels & self.labels_mask)
    }
}

/// `X[/M]` for mark= and labels= (`ofp_ct_masked_parse`): no mask means all ones.
fn parse_masked(s: &str, max: u128) -> Option<(u128, u128)> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let v = parse_c_uint(v).filter(|&v| v <= max)?;
    let m = match m {
        Some(m) => parse_c_uint(m).filter(|&m| m <= max)?,
        None => max,
    };
    Some((v, m))
}

/// Parses one tuple (`ofp_ct_tuple_parse`), with OVS's error messages.
fn parse_ct_tuple(
    s: &str,
    t: &mut TupleMatch,
    proto_out: &mut u8,
    family: &mut u8,
) -> Result<(), String> {
    for (key, value) in key_values(s) {
        let key_e = key.escape_debug();
        if value.is_empty() {
            return Err(format!("field {key_e} missing value"));
        }
        let parse_failed = || format!("failed to parse field {key_e}");
        match key {
            "ct_nw_src" | "ct_nw_dst" | "ct_ipv6_src" | "ct_ipv6_dst" => {
                let v6 = key.starts_with("ct_ipv6");
                let want = if v6 { 6 } else { 4 };
                if *family != 0 && *family != want {
                    return Err(format!(
                        "the L3 protocol does not match {}",
                        value.escape_debug()
                    ));
                }
                let slot = if key.ends_with("src") {
                    &mut t.src
                } else {
                    &mut t.dst
                };
                if slot.is_some() {
                    return Err(format!("{key_e} is set multiple times"));
                }
                let ip: IpAddr = if v6 {
                    value.parse::<std::net::Ipv6Addr>().map(IpAddr::V6)
                } else {
                    value.parse::<std::net::Ipv4Addr>().map(IpAddr::V4)
                }
                .map_err(|_| parse_failed())?;
                *family = want;
                let (a, _) = ip_to_addr(ip);
                // OVS treats the all-zero address as "not given".
                *slot = (a != [0; 16]).then_some(a);
            }
            "ct_nw_proto" => {
                if *proto_out != 0 {
                    return Err(format!("{key_e} is set multiple times"));
                }
                *proto_out = parse_c_uint(value)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(parse_failed)?;
            }
            "ct_tp_src" | "ct_tp_dst" => {
                let p = parse_c_uint(value)
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or_else(parse_failed)?;
                if key == "ct_tp_src" {
                    t.sport = p;
                } else {
                    t.dport = p;
                }
            }
            "icmp_type" | "icmp_code" | "icmp_id" => {
                if !is_icmp(*proto_out) {
                    return Err("invalid L4 fields".into());
                }
                let v = parse_c_uint(value).ok_or_else(parse_failed)?;
                match key {
                    "icmp_type" => t.icmp_type = Some(u8::try_from(v).map_err(|_| parse_failed())?),
                    "icmp_code" => t.icmp_code = Some(u8::try_from(v).map_err(|_| parse_failed())?),
                    _ => t.icmp_id = Some(u16::try_from(v).map_err(|_| parse_failed())?),
                }
            }
            _ => return Err(format!("invalid conntrack tuple field: {key_e}")),
        }
    }
    if *proto_out == 0 && (t.sport != 0 || t.dport != 0) {
        return Err("port is set without protocol".into());
    }
    Ok(())
}

/// Parses flush-conntrack's arguments (`ofp_ct_match_parse`): `[zone=N] [mark=X[/M]]
/// [labels=Y[/N]] [orig-tuple [reply-tuple]]`, in that order.
fn parse_flush_args(args: &[&str]) -> Result<(Option<u16>, CtMatch), String> {
    let mut m = CtMatch::default();
    let mut zone = None;
    let mut i = 0;
    if let Some(z) = args.get(i).and_then(|a| a.strip_prefix("zone=")) {
        zone = Some(parse_dec::<u16>(z).ok_or_else(|| einval("failed to parse zone"))?);
        i += 1;
    }
    if let Some(s) = args.get(i).and_then(|a| a.strip_prefix("mark=")) {
        let (v, mask) =
            parse_masked(s, u32::MAX as u128).ok_or_else(|| einval("failed to parse mark"))?;
        m.mark = v as u32;
        m.mark_mask = mask as u32;
        i += 1;
    }
    if let Some(s) = args.get(i).and_then(|a| a.strip_prefix("labels=")) {
        let (v, mask) =
            parse_masked(s, u128::MAX).ok_or_else(|| einval("failed to parse labels"))?;
        m.labels = v;
        m.labels_mask = mask;
        i += 1;
    }
    for side in 0..2 {
        let Some(a) = args.get(i) else { break };
        if !a.is_empty() {
            let t = if side == 0 { &mut m.orig } else { &mut m.reply };
            parse_ct_tuple(a, t, &mut m.proto, &mut m.family).map_err(einval)?;
        }
        i += 1;
    }
    if i < args.len() {
        return Err(einval("invalid arguments"));
    }
    Ok((zone, m))
}

fn flush_conntrack(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "flush-conntrack")?;
    let (zone, m) = parse_flush_args(&rest)?;
    if m.is_zero() {
        return Ok(Outcome::Stream(Box::new(FlushJob {
            cursor: 0,
            zone,
            m: None,
            removed: 0,
        })));
    }
    if let Some(key) = m.five_tuple(zone.unwrap_or(0)) {
        let ct = ctx.conntrack;
        let words = key.to_words();
        let hash = ct.table().hasher().hash_words(&words);
        return Ok(match ct.table().lookup(&words, hash, ctx.now) {
            Some(hit) => {
                ct.control_handle().remove(&hit);
                done(String::new())
            }
            None => fail("failed to flush conntrack (No such file or directory)".into()),
        });
    }
    Ok(Outcome::Stream(Box::new(FlushJob {
        cursor: 0,
        zone,
        m: Some(m),
        removed: 0,
    })))
}

struct FlushJob {
    cursor: usize,
    zone: Option<u16>,
    m: Option<CtMatch>,
    removed: u64,
}

impl Job for FlushJob {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        _out: &mut String,
    ) -> Result<Step, String> {
        let mut w = ctx.conntrack.control_handle();
        let (zone, m) = (self.zone, self.m);
        let mut victims: Vec<crate::conntrack::Hit> = Vec::new();
        let end = walk(ctx.conntrack, &mut self.cursor, budget, |idx, gen, s| {
            if zone.is_some_and(|z| z != s.orig.zone) || m.is_some_and(|m| !m.matches(s)) {
                return;
            }
            victims.push(crate::conntrack::Hit { idx, dir: 0, gen });
        });
        for h in &victims {
            if w.remove(h) {
                self.removed += 1;
            }
        }
        Ok(if end { Step::Done } else { Step::More })
    }
}

// ---------------------------------------------------------------------------------------
// ct-stats-show

fn ct_stats_show(args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-stats-show")?;
    let mut verbose = o.more;
    let mut zone = None;
    for a in rest {
        if a.starts_with("verbose") {
            verbose = true;
        } else {
            zone = Some(parse_zone_arg(a)?);
        }
    }
    Ok(Outcome::Stream(Box::new(StatsJob {
        cursor: 0,
        zone,
        verbose,
        total: 0,
        protos: [0; 9],
        tcp_states: [0; 11],
    })))
}

/// Protocol classes of ct-stats-show, in OVS's `CT_STATS_*` print order.
const P_TCP: usize = 0;
const P_UDP: usize = 1;
const P_UDPLITE: usize = 2;
const P_SCTP: usize = 3;
const P_ICMP: usize = 4;
const P_DCCP: usize = 5;
const P_IGMP: usize = 6;
const P_OTHER: usize = 7;
const P_ICMPV6: usize = 8;

struct StatsJob {
    cursor: usize,
    zone: Option<u16>,
    verbose: bool,
    total: u64,
    protos: [u64; 9],
    tcp_states: [u64; 11],
}

impl Job for StatsJob {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let now = ctx.now;
        let end = walk(ctx.conntrack, &mut self.cursor, budget, |_, _, s| {
            if !alive(s, now) || self.zone.is_some_and(|z| z != s.orig.zone) {
                return;
            }
            self.total += 1;
            let p = match s.orig.proto {
                proto::TCP => {
                    self.tcp_states[display_state(&s.l4) as usize] += 1;
                    P_TCP
                }
                proto::UDP => P_UDP,
                136 => P_UDPLITE,
                132 => P_SCTP,
                proto::ICMP => P_ICMP,
                33 => P_DCCP,
                2 => P_IGMP,
                proto::ICMPV6 => P_ICMPV6,
                _ => P_OTHER,
            };
            self.protos[p] += 1;
        });
        if !end {
            return Ok(Step::More);
        }
        let _ = write!(out, "Connections Stats:\n    Total: {}\n", self.total);
        let name = |i| match i {
            P_TCP => "TCP",
            P_UDP => "UDP",
            P_UDPLITE => "UDPLITE",
            P_SCTP => "SCTP",
            P_ICMP => "ICMP",
            P_DCCP => "DCCP",
            P_IGMP => "IGMP",
            _ => "Other",
        };
        for i in 0..=P_OTHER {
            if self.protos[i] == 0 {
                continue;
            }
            let _ = writeln!(out, "  {}: {}", name(i), self.protos[i]);
            if i == P_TCP && self.verbose {
                out.push_str("    Conn per TCP states:\n");
                for (st, &n) in self.tcp_states.iter().enumerate() {
                    if n != 0 {
                        let _ = writeln!(out, "\t  [{}]={}", TcpState::from_u8(st as u8).name(), n);
                    }
                }
            }
        }
        out.push_str("ctgate counters:\n");
        for (k, v) in ctx.conntrack.counters().fields() {
            let _ = writeln!(out, "    {k}: {v}");
        }
        Ok(Step::Done)
    }
}

// ---------------------------------------------------------------------------------------
// ct-bkts

fn ct_bkts(args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-bkts")?;
    let mut gt = 0u16;
    for a in rest {
        gt = a
            .strip_prefix("gt=")
            .and_then(parse_dec::<u16>)
            .ok_or_else(|| einval(format_args!("invalid argument \"{}\"", a.escape_debug())))?;
    }
    Ok(Outcome::Stream(Box::new(BktsJob {
        gt,
        counts: Vec::new(),
        cursor: 0,
        counted: false,
        total: 0,
        row: 0,
    })))
}

/// OVS's `NUM_BKTS_DIPLAYED_PER_ROW`.
const BKTS_PER_ROW: usize = 8;

struct BktsJob {
    gt: u16,
    /// Connections per bucket (filled by the counting pass).
    counts: Vec<u16>,
    cursor: usize,
    counted: bool,
    total: u64,
    /// Next bucket to print (the printing pass).
    row: usize,
}

/// Connections (original-direction entries) in bucket `b`.
fn bucket_conns(ct: &Conntrack, b: usize) -> usize {
    let mut n = 0;
    ct.table().for_each_in_bucket(b, |_, _| n += 1);
    n
}

impl Job for BktsJob {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let ct = ctx.conntrack;
        let n = ct.table().n_buckets();
        let budget = budget.max(1);
        if !self.counted {
            if self.cursor == 0 {
                self.counts = vec![0; n];
                let _ = writeln!(out, "Total Buckets: {n}");
            }
            let end = self.cursor.saturating_add(budget).min(n);
            for b in self.cursor..end {
                let c = bucket_conns(ct, b);
                self.counts[b] = c.min(u16::MAX as usize) as u16;
                self.total += c as u64;
            }
            self.cursor = end;
            if end < n {
                return Ok(Step::More);
            }
            self.counted = true;
            let _ = write!(out, "Current Connections: {}\n\n", self.total);
            if self.total == 0 {
                self.row = n;
            } else {
                out.push_str(
                    "+-----------+-----------------------------------------+\n\
                     |  Buckets  |         Connections per Buckets         |\n\
                     +-----------+-----------------------------------------+",
                );
            }
            return Ok(Step::More);
        }
        let end = self.row.saturating_add(budget).min(n);
        for i in self.row..end {
            if i % BKTS_PER_ROW == 0 {
                let _ = write!(out, "\n {:3}..{:3}   | ", i, i + BKTS_PER_ROW - 1);
            }
            let c = self.counts[i];
            if c > self.gt {
                let _ = write!(out, "{c:5}");
            } else {
                out.push_str("    .");
            }
        }
        self.row = end;
        if end < n {
            return Ok(Step::More);
        }
        if self.total != 0 {
            out.push_str("\n\n");
        }
        let min = self.counts.iter().copied().min().unwrap_or(0);
        let max = self.counts.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "Connections per bucket: min={min} max={max} avg={:.2}",
            self.total as f64 / n.max(1) as f64
        );
        self.counts = Vec::new();
        Ok(Step::Done)
    }
}

// ---------------------------------------------------------------------------------------
// maxconns, limits, sweep

fn ct_set_maxconns(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-set-maxconns")?;
    let n = match rest.as_slice() {
        [a] => parse_dec::<u32>(a),
        _ => None,
    }
    .ok_or_else(|| einval("maxconns missing or malformed"))?;
    ctx.conntrack
        .set_max_conns(n)
        .map_err(|e| format!("ct set maxconns failed: {e} (Invalid argument)"))?;
    Ok(done("setting maxconns successful\n".into()))
}

/// `zone=N,limit=L` (`ct_dpif_parse_zone_limit_tuple`).
fn parse_zone_limit(s: &str) -> Result<(u16, u32), String> {
    let (mut zone, mut limit) = (None, None);
    for (key, value) in key_values(s) {
        let key_e = key.escape_debug();
        if value.is_empty() {
            return Err(format!("field {key_e} missing value"));
        }
        let failed = || format!("failed to parse field {key_e}");
        match key {
            "zone" => {
                zone = Some(
                    parse_c_uint(value)
                        .and_then(|v| u16::try_from(v).ok())
                        .ok_or_else(failed)?,
                )
            }
            "limit" => {
                limit = Some(
                    parse_c_uint(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(failed)?,
                )
            }
            _ => return Err(format!("invalid zone limit field: {key_e}")),
        }
    }
    match (zone, limit) {
        (Some(z), Some(l)) => Ok((z, l)),
        _ => Err("failed to parse zone limit".into()),
    }
}

fn ct_set_limits(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-set-limits")?;
    if rest.is_empty() {
        return Err(einval("too few arguments"));
    }
    let mut i = 0;
    let mut default = None;
    if let Some(d) = rest[0].strip_prefix("default=") {
        default = Some(
            parse_dec::<u64>(d)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| einval("invalid default limit"))?,
        );
        i = 1;
    }
    let limits = rest[i..]
        .iter()
        .map(|a| parse_zone_limit(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(einval)?;
    let zones = ctx.conntrack.zones();
    if let Some(d) = default {
        zones.set_default_limit(d);
    }
    for (z, l) in limits {
        zones.set_limit(z, l);
    }
    Ok(done(String::new()))
}

/// `zone=N1[,N2]...` (`parse_ct_limit_zones`).
fn parse_limit_zones(a: &str, out: &mut Vec<u16>) -> Result<(), String> {
    let Some(list) = a.strip_prefix("zone=") else {
        return Err(einval(format_args!(
            "invalid argument {}",
            a.escape_debug()
        )));
    };
    for z in list.split(',').filter(|z| !z.is_empty()) {
        out.push(parse_dec::<u16>(z).ok_or_else(|| einval("invalid zone"))?);
    }
    Ok(())
}

fn ct_del_limits(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-del-limits")?;
    if rest.is_empty() {
        return Err(einval("too few arguments"));
    }
    let mut i = 0;
    let del_default = rest[0] == "default";
    if del_default {
        i = 1;
    }
    let mut list = Vec::new();
    for a in &rest[i..] {
        parse_limit_zones(a, &mut list)?;
    }
    let zones = ctx.conntrack.zones();
    if del_default {
        zones.set_default_limit(0);
    }
    for z in list {
        zones.del_limit(z);
    }
    Ok(done(String::new()))
}

fn ct_get_limits(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-get-limits")?;
    let mut query = Vec::new();
    for a in rest {
        parse_limit_zones(a, &mut query)?;
    }
    let zones = ctx.conntrack.zones();
    let default = zones.default_limit();
    let mut s = format!("default limit={default}");
    if query.is_empty() {
        for (z, l, c) in zones.explicit_limits() {
            let _ = write!(s, "\nzone={z},limit={l},count={c}");
        }
    } else {
        for z in query {
            let (l, c) = match zones.get(z) {
                Some(zone) => (zone.explicit_limit().unwrap_or(default), zone.count()),
                None => (default, 0),
            };
            let _ = write!(s, "\nzone={z},limit={l},count={c}");
        }
    }
    s.push('\n');
    Ok(done(s))
}

fn ct_set_sweep_interval(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-set-sweep-interval")?;
    let ms = match rest.as_slice() {
        [a] => parse_dec::<u32>(a).filter(|&v| v > 0),
        _ => None,
    }
    .ok_or_else(|| einval("invalid sweep value"))?;
    ctx.sweep_interval_ms.store(ms, Ordering::Relaxed);
    Ok(done("setting sweep interval successful\n".into()))
}

// ---------------------------------------------------------------------------------------
// timeout policies

/// A policy target: a zone, or the global default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PolicyTarget {
    Zone(u16),
    Default,
}

fn parse_policy_target(a: Option<&&str>) -> Result<PolicyTarget, String> {
    let Some(a) = a else {
        return Err(einval("missing zone=N"));
    };
    match a.strip_prefix("zone=") {
        Some("default") => Ok(PolicyTarget::Default),
        Some(z) => parse_dec::<u16>(z)
            .map(PolicyTarget::Zone)
            .ok_or_else(|| einval("failed to parse zone")),
        None => Err(einval(format_args!(
            "expected zone=N or zone=default, got \"{}\"",
            a.escape_debug()
        ))),
    }
}

fn attr_names() -> String {
    TimeoutAttr::ALL
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ct_set_timeout_policy(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-set-timeout-policy")?;
    let target = parse_policy_target(rest.first())?;
    if rest.len() < 2 {
        return Err(einval("too few arguments: no ATTR=SECONDS given"));
    }
    let mut set = Vec::new();
    for a in &rest[1..] {
        for (key, value) in key_values(a) {
            let attr = TimeoutAttr::from_name(key).ok_or_else(|| {
                einval(format_args!(
                    "invalid timeout policy attribute: {} (one of {})",
                    key.escape_debug(),
                    attr_names()
                ))
            })?;
            let ms = parse_dec::<u32>(value)
                .and_then(|s| s.checked_mul(1000))
                .ok_or_else(|| {
                    einval(format_args!(
                        "invalid value for {}: \"{}\" (seconds, at most {})",
                        attr.name(),
                        value.escape_debug(),
                        u32::MAX / 1000
                    ))
                })?;
            set.push((attr, ms));
        }
    }
    let policy: &TimeoutPolicy = match target {
        PolicyTarget::Default => ctx.conntrack.default_policy(),
        PolicyTarget::Zone(z) => &ctx.conntrack.zones().get_or_create(z).policy,
    };
    for (a, ms) in set {
        policy.set_ms(a, ms);
    }
    Ok(done(String::new()))
}

/// Milliseconds as seconds, with decimals only when needed.
fn secs(ms: u32) -> String {
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

fn ct_get_timeout_policy(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-get-timeout-policy")?;
    let target = parse_policy_target(rest.first())?;
    if let Some(a) = rest.get(1) {
        return Err(einval(format_args!(
            "invalid argument \"{}\"",
            a.escape_debug()
        )));
    }
    let ct = ctx.conntrack;
    let zone = match target {
        PolicyTarget::Zone(z) => ct.zones().get(z),
        PolicyTarget::Default => None,
    };
    let mut s = String::new();
    for a in TimeoutAttr::ALL {
        let own = zone.and_then(|z| z.policy.get_ms(a));
        let v = own
            .or_else(|| ct.default_policy().get_ms(a))
            .unwrap_or(a.default_secs() * 1000);
        let inherited = own.is_none() && target != PolicyTarget::Default;
        let _ = writeln!(
            s,
            "{}={}{}",
            a.name(),
            secs(v),
            if inherited { " (default)" } else { "" }
        );
    }
    Ok(done(s))
}

fn ct_del_timeout_policy(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ct-del-timeout-policy")?;
    let target = parse_policy_target(rest.first())?;
    if let Some(a) = rest.get(1) {
        return Err(einval(format_args!(
            "invalid argument \"{}\"",
            a.escape_debug()
        )));
    }
    match target {
        PolicyTarget::Default => {
            let p = ctx.conntrack.default_policy();
            for a in TimeoutAttr::ALL {
                p.set_ms(a, a.default_secs() * 1000);
            }
        }
        PolicyTarget::Zone(z) => {
            if let Some(zone) = ctx.conntrack.zones().get(z) {
                zone.policy.clear();
            }
        }
    }
    Ok(done(String::new()))
}

// ---------------------------------------------------------------------------------------
// stats

fn stats_text(ctx: &ControlContext) -> String {
    let mut s = ensure_newline(ctx.info.stats());
    let ct = ctx.conntrack;
    let _ = write!(
        s,
        "conntrack n_conns={} max_conns={}",
        ct.n_conns(),
        ct.max_conns()
    );
    for (k, v) in ct.counters().fields() {
        let _ = write!(s, " {k}={v}");
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
