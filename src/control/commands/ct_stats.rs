//! The counting commands: `ct-stats-show` (connections per protocol and TCP state),
//! `ct-bkts` (bucket occupancy table) and ctgate's `stats` (ports, workers, tracker).

use super::args::*;
use super::context::*;
use crate::conntrack::conn::TcpState;
use crate::conntrack::l4::tcp::display_state;
use crate::conntrack::Conntrack;
use crate::wire::parse::proto;
use std::fmt::Write;

// ---------------------------------------------------------------------------------------
// ct-stats-show

pub(super) fn ct_stats_show(args: &[String]) -> Result<Outcome, String> {
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
pub(super) const P_TCP: usize = 0;
pub(super) const P_UDP: usize = 1;
pub(super) const P_UDPLITE: usize = 2;
pub(super) const P_SCTP: usize = 3;
pub(super) const P_ICMP: usize = 4;
pub(super) const P_DCCP: usize = 5;
pub(super) const P_IGMP: usize = 6;
pub(super) const P_OTHER: usize = 7;
pub(super) const P_ICMPV6: usize = 8;

pub(super) struct StatsJob {
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

pub(super) fn ct_bkts(args: &[String]) -> Result<Outcome, String> {
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
pub(super) const BKTS_PER_ROW: usize = 8;

pub(super) struct BktsJob {
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
pub(super) fn bucket_conns(ct: &Conntrack, b: usize) -> usize {
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
// stats

pub(super) fn stats_text(ctx: &ControlContext) -> String {
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
