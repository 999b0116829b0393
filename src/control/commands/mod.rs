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

use std::fmt::Write;
use std::sync::atomic::Ordering;

mod args;
mod context;
mod ct_stats;
mod dump_flush;
mod events;
mod ipf;
mod limits;
mod reload;
mod settings;
mod show;

use args::*;
use context::*;
pub use context::{ControlContext, GatewayInfo, Job, LiveConfig, Outcome, Running, Step};
use ct_stats::*;
pub use dump_flush::conn_json;
use dump_flush::*;
pub use events::event_json;
use ipf::*;
use limits::*;
pub use reload::SWITCH_WAIT;
use reload::*;
use settings::*;
use show::*;

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
        args: "[-m|--more] [-s|--stats] [--json] [zone=N]",
        summary: "Print every connection, one line each, in OVS's format.",
        details: "Lines are `tcp,orig=(src=A,dst=B,sport=P,dport=Q),reply=(...)[,zone=Z][,timeout=S]\n\
                  [,mark=M][,labels=0xL][,protoinfo=(state=S)][,helper=ftp]`, as `ovs-appctl dpctl/dump-conntrack`.\n\
                  The reply tuple is the NAT-translated one for NATed connections.\n\
                  -m, --more                 add parent=(...) to data connections an ALG expected,\n\
                                             ,learned=N to connections learned from sync peer N\n\
                  -s, --stats, --statistics  add timeout=<seconds left>\n\
                  --json                     one JSON object per line instead (for machines)\n\
                  zone=N                     only zone N\n\
                  Large tables are streamed; the output is complete when the command ends.",
    },
    CommandSpec {
        name: "dump-conntrack-exp",
        args: "[zone=N]",
        summary: "Print the ALG expectations (FTP/TFTP data connections announced, not yet seen).",
        details: "Lines are `tcp,orig=(src=A,dst=B,sport=0,dport=P)[,zone=Z],parent=(src=..,dst=..,sport=..,dport=..)`,\n\
                  as `ovs-appctl dpctl/dump-conntrack-exp`: the data connection's original tuple (source\n\
                  port a wildcard) and its control connection's. An expectation lives as long as its\n\
                  control connection.",
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
        name: "ipf-set-enabled",
        args: "v4|v6",
        summary: "Turn IP fragment reassembly on for IPv4 or IPv6.",
        details: "Fragments are then held until their datagram is complete, tracked as one packet and\n\
                  sent on as they came, NAT applied.",
    },
    CommandSpec {
        name: "ipf-set-disabled",
        args: "v4|v6",
        summary: "Turn IP fragment reassembly off for IPv4 or IPv6 (fragments are then invalid).",
        details: "",
    },
    CommandSpec {
        name: "ipf-set-min-frag",
        args: "v4|v6 N",
        summary: "Set the smallest IP packet a fragment other than the last may be (at least 400).",
        details: "Defaults: 1200 (IPv4), 1280 (IPv6). Smaller fragments are dropped and counted as too small.",
    },
    CommandSpec {
        name: "ipf-set-max-nfrags",
        args: "N",
        summary: "Set how many fragments are held at most (at most 5000).",
        details: "Default 1000. Past it the oldest incomplete datagram is purged.",
    },
    CommandSpec {
        name: "ipf-get-status",
        args: "[-m|--more]",
        summary: "Print the fragment reassembly settings and counters, as OVS's dpctl/ipf-get-status.",
        details: "With -m, also the datagrams being reassembled (`Fragment Lists:`).",
    },
    CommandSpec {
        name: "reload",
        args: "[--config FILE] [--flush-stale]",
        summary: "Re-read the configuration and swap it in without losing a connection.",
        details: "Reads the file ctgate started with (or FILE, as a path ctgate can open; the embedded\n\
                  default when it started on it), validates it completely and, when it is valid, swaps\n\
                  it in atomically: workers switch between two bursts, every connection keeps its state\n\
                  and NAT binding, new connections follow the new rules. It answers once every worker\n\
                  runs the new version (so a packet that arrives after it follows the new rules; after\n\
                  2 s it answers anyway with a `note:` line counting the workers not switched yet).\n\
                  An invalid file is refused with its FILE:LINE: FIELD: MESSAGE error and nothing\n\
                  changes (exit status 1).\n\
                  Live: routes, policy, SNAT and DNAT rules, zones of ports, static next hops\n\
                  (next_hop_mac), port addresses, limits, timeouts, max_conns up to the pool allocated\n\
                  at start, tcp_seq_check, sweep_interval_ms, [fragments], [[alg]] (for connections\n\
                  created afterwards), [logging]. Needs a restart (refused, naming the field): the set\n\
                  of ports and VLAN sub-interfaces, datapath.buckets, a max_conns above the pool\n\
                  allocated at start, metrics.listen; lcores, queues and mempools are command-line\n\
                  options.\n\
                  The file wins over ct-set-* commands: each value changed at run time that the reload\n\
                  changes is named on a `reset NAME: RUNNING -> FILE (set at run time)` line.\n\
                  SIGHUP to ctgate does the same as `reload` (its result goes to ctgate's log).\n\
                  --config FILE    read FILE instead of the file in force (it becomes the file in force)\n\
                  --flush-stale    then delete the connections the new policy or NAT rules would not\n\
                  \x20                create, and stop answering ARP/NDP for SNAT pools no longer configured",
    },
    CommandSpec {
        name: "config-show",
        args: "",
        summary: "Print the configuration in force as a file (re-loadable as is).",
        details: "Every setting explicit; comment lines first give its generation (1 at start, one more\n\
                  per reload), the file it was read from and when (seconds since the Unix epoch).\n\
                  Saved to a file, `reload --config FILE` of it changes nothing.",
    },
    CommandSpec {
        name: "route-show",
        args: "",
        summary: "Print the routes in lookup order: `PREFIX connected|via NEXT-HOP port N [vlan V]`.",
        details: "Connected prefixes of the ports and the configured routes, longest prefix first\n\
                  (connected before configured at equal length), IPv4 then IPv6.",
    },
    CommandSpec {
        name: "neigh-show",
        args: "",
        summary: "Print the neighbour table: `ADDRESS mac=MAC port=N state=S age=Ns`.",
        details: "States: incomplete (being resolved; mac=-), reachable, stale, probe. The age is the\n\
                  time since the entry was last confirmed (incomplete: since the last request).",
    },
    CommandSpec {
        name: "neigh-flush",
        args: "",
        summary: "Empty the neighbour table (neighbours are resolved again as traffic needs them).",
        details: "",
    },
    CommandSpec {
        name: "nat-show",
        args: "",
        summary: "Print the NAT rules and, per pool address, the ports in use per protocol.",
        details: "Lines `snat pool=P`, `dnat proto=tcp|udp match=A:P to=T`, `kept pool=P (...)` for the\n\
                  pools of earlier configurations still answered for, then one\n\
                  `pool ADDRESS: tcp=N udp=N icmp=N other=N` per pool address (every address of a pool\n\
                  of at most 256, and any address in use): the translated source ports (ICMP\n\
                  identifiers) in use by live source-NATed connections.",
    },
    CommandSpec {
        name: "sync-status",
        args: "",
        summary: "State sync with the peer instances: each peer's state and counters.",
        details: "`sync local=ADDR mode=MODE auth=hmac-sha256|none peers=N`, then per peer\n\
                  `peer N ADDR state=connected|resyncing|lost msgs_sent=… msgs_received=…\n\
                  conns_sent=… conns_received=… retransmitted=… install_failed=… resyncs_sent=…\n\
                  resyncs_received=… resync_removed=… lag_ms=… queued=…`, then the datagrams dropped\n\
                  (`dropped malformed=… unauthenticated=… unknown_peer=… stale=… events_lost=…\n\
                  send_errors=…`). An error when [sync] is not configured (docs/ha.md).",
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
        name: "events",
        args: "[--json] [zone=N] [proto=P] [--event new,update,destroy] [--count N]",
        summary: "Stream connection events as they happen, one line each, like `conntrack -E`.",
        details: "Lines are `conntrack -E`'s: `    [NEW] udp      17 30 src=A dst=B sport=P dport=Q [UNREPLIED] src=B dst=A' ...`,\n\
                  ` [UPDATE] tcp      6 86400 ESTABLISHED ...` (TCP reaching ESTABLISHED or a closing state),\n\
                  `[DESTROY] ...` (expired, closed, flushed or reclaimed; the reason is in --json).\n\
                  --json          one JSON object per event (event, id, timestamp_us, proto, zone, orig,\n\
                  \x20               reply, nat, state, timeout or reason)\n\
                  zone=N          only zone N\n\
                  proto=P         only protocol P (tcp, udp, icmp, icmpv6, sctp, gre or a number)\n\
                  --event K,...   only these kinds (new, update, destroy)\n\
                  --count N       stop after N events\n\
                  Runs until interrupted. A client that reads too slowly loses events of its own, reported\n\
                  as `[LOST] N events`; the gateway never waits for it.",
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
        "dump-conntrack-exp" => dump_conntrack_exp(ctx, args),
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
        "ipf-set-enabled" => ipf_set_enabled(ctx, args, true),
        "ipf-set-disabled" => ipf_set_enabled(ctx, args, false),
        "ipf-set-min-frag" => ipf_set_min_frag(ctx, args),
        "ipf-set-max-nfrags" => ipf_set_max_nfrags(ctx, args),
        "ipf-get-status" => ipf_get_status(ctx, args),
        "reload" => reload(ctx, args),
        "config-show" => config_show(ctx, args),
        "route-show" => route_show(ctx, args),
        "neigh-show" => neigh_show(ctx, args),
        "neigh-flush" => neigh_flush(ctx, args),
        "nat-show" => nat_show(ctx, args),
        "show" => no_args(args).map(|()| done(ensure_newline(ctx.info.show()))),
        "stats" => no_args(args).map(|()| done(stats_text(ctx))),
        "sync-status" => no_args(args).and_then(|()| {
            ctx.info.sync_status().map(done).ok_or_else(|| {
                "state sync is not configured (no [sync] section in the configuration)".to_string()
            })
        }),
        "events" => events::events(ctx, args),
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
                // A live job (`events`) has no end: what one step gives is its output.
                if job.step(ctx, 1024, &mut out)? == Step::Done || job.live() {
                    return Ok(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
