//! `dump-conntrack` and `flush-conntrack`: the table walked a bounded number of buckets
//! per step, connections printed in OVS's format or removed by zone, tuple or mark.

use super::args::*;
use super::context::*;
use crate::conntrack::format::{expectation_line, proto_name};
use crate::conntrack::key::{ip_to_addr, is_icmp};
use crate::conntrack::l4::tcp::display_state;
use crate::conntrack::{ConnKey, ConnSnapshot, CtState};
use crate::wire::parse::proto;
use std::net::IpAddr;

// ---------------------------------------------------------------------------------------
// dump-conntrack

pub(super) fn dump_conntrack(args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    let mut zone = None;
    for a in rest {
        zone = Some(parse_zone_arg(a)?);
    }
    Ok(Outcome::Stream(Box::new(DumpJob {
        cursor: 0,
        zone,
        stats: o.stats,
        json: o.json,
        more: o.more,
    })))
}

// ---------------------------------------------------------------------------------------
// dump-conntrack-exp

/// `dump-conntrack-exp [zone=N]`: the expectations, one line each in OVS's format
/// (bounded: the table holds at most `alg::track::EXP_MAX`).
pub(super) fn dump_conntrack_exp(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    if o.stats || o.more || o.json {
        return Err("dump-conntrack-exp takes no option".into());
    }
    let mut zone = None;
    for a in rest {
        zone = Some(parse_zone_arg(a)?);
    }
    let mut lines = Vec::new();
    ctx.conntrack.for_each_expectation(|e| {
        if zone.is_none_or(|z| z == e.key.zone) {
            lines.push(expectation_line(e));
        }
    });
    lines.sort();
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(done(out))
}

/// Buckets walked between output-size checks of a dump step.
pub(super) const DUMP_SLICE: usize = 64;
/// A dump step stops once it has produced this much output.
pub(super) const DUMP_STEP_OUTPUT: usize = 128 * 1024;

pub(super) struct DumpJob {
    cursor: usize,
    zone: Option<u16>,
    stats: bool,
    json: bool,
    /// `-m`: `parent=(…)` on data connections an ALG expected, and `,learned=N` on
    /// connections learned from sync peer N (its number in `[sync]`'s list).
    more: bool,
}

impl Job for DumpJob {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let now = ctx.now;
        let (zone, stats, json, more) = (self.zone, self.stats, self.json, self.more);
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
                    let mut j = conn_json(s, now);
                    if let (true, Some(m)) = (more, j.as_object_mut()) {
                        m.insert("learned".into(), s.origin.into());
                    }
                    out.push_str(&j.to_string());
                } else {
                    out.push_str(&s.ovs_line_more(stats, now, more));
                    if more && s.origin != 0 {
                        out.push_str(",learned=");
                        out.push_str(&s.origin.to_string());
                    }
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

pub(super) fn tuple_json(k: &ConnKey) -> serde_json::Value {
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
pub(super) struct TupleMatch {
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
pub(super) struct CtMatch {
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
pub(super) fn parse_masked(s: &str, max: u128) -> Option<(u128, u128)> {
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
pub(super) fn parse_ct_tuple(
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
pub(super) fn parse_flush_args(args: &[&str]) -> Result<(Option<u16>, CtMatch), String> {
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

pub(super) fn flush_conntrack(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
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

pub(super) struct FlushJob {
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
