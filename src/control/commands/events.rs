//! `events`: the tracker's connection events streamed to the client as they happen, in
//! `conntrack -E`'s format or as JSON, until the client goes or `--count N` are shown.
//!
//! Each client holds its own [`Subscription`]: its queue fills while its socket does not
//! take the output (the server steps a job only while little waits to be sent), and when
//! full the client loses events of its own, reported to it in a `[LOST] N events` line
//! (`{"event":"lost","count":N}` with `--json`). The datapath and the other clients never
//! wait for it.

use super::args::*;
use super::context::*;
use crate::conntrack::event_format::linux_proto_name;
use crate::conntrack::events::{CtEvent, EventKind, Subscription, DEFAULT_QUEUE};
use crate::conntrack::key::is_icmp;
use crate::conntrack::CtState;

/// What the client asked to see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct EventFilter {
    pub zone: Option<u16>,
    pub proto: Option<u8>,
    /// Kinds shown; all when empty.
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    fn admits(&self, e: &CtEvent) -> bool {
        self.zone.is_none_or(|z| z == e.zone())
            && self.proto.is_none_or(|p| p == e.orig.proto)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
    }
}

fn parse_proto(s: &str) -> Result<u8, String> {
    let p = match s.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "gre" => 47,
        "udplite" => 136,
        "dccp" => 33,
        other => parse_dec::<u8>(other)
            .ok_or_else(|| einval(format_args!("unknown protocol \"{}\"", s.escape_debug())))?,
    };
    Ok(p)
}

fn parse_kinds(s: &str) -> Result<Vec<EventKind>, String> {
    s.split(',')
        .map(|k| match k.to_ascii_lowercase().as_str() {
            "new" => Ok(EventKind::New),
            "update" => Ok(EventKind::Update),
            "destroy" => Ok(EventKind::Destroy),
            _ => Err(einval(format_args!(
                "unknown event \"{}\" (new, update, destroy)",
                k.escape_debug()
            ))),
        })
        .collect()
}

/// Parsed `events` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EventsArgs {
    pub filter: EventFilter,
    pub json: bool,
    pub count: Option<u64>,
}

pub(super) fn parse_events_args(args: &[String]) -> Result<EventsArgs, String> {
    let mut a = EventsArgs {
        filter: EventFilter::default(),
        json: false,
        count: None,
    };
    let mut it = args.iter().map(String::as_str);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v)),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<&str, String> {
            inline
                .or_else(|| it.next())
                .ok_or_else(|| einval(format_args!("option {name} needs a value")))
        };
        match key {
            "--json" => a.json = true,
            "-e" | "--event" => a.filter.kinds = parse_kinds(value("--event")?)?,
            "-c" | "--count" => {
                let v = value("--count")?;
                a.count = Some(
                    parse_dec::<u64>(v)
                        .filter(|&n| n > 0)
                        .ok_or_else(|| einval("--count needs a number above 0"))?,
                );
            }
            _ => {
                if let Some(z) = arg.strip_prefix("zone=") {
                    a.filter.zone = Some(parse_zone_arg(&format!("zone={z}"))?);
                } else if let Some(p) = arg.strip_prefix("proto=") {
                    a.filter.proto = Some(parse_proto(p)?);
                } else {
                    return Err(einval(format_args!(
                        "invalid argument \"{}\"",
                        arg.escape_debug()
                    )));
                }
            }
        }
    }
    Ok(a)
}

pub(super) fn events(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let a = parse_events_args(args)?;
    let sub = ctx.conntrack.events().subscribe(DEFAULT_QUEUE);
    Ok(Outcome::Stream(Box::new(EventsJob {
        sub,
        args: a,
        shown: 0,
        lost_reported: 0,
        buf: Vec::new(),
    })))
}

/// The JSON object of an event.
pub fn event_json(e: &CtEvent) -> serde_json::Value {
    let tuple = |k: &crate::conntrack::ConnKey| {
        if is_icmp(k.proto) {
            serde_json::json!({"src": k.src_ip().to_string(), "dst": k.dst_ip().to_string(),
                "type": k.icmp_type(), "code": k.icmp_code(), "id": k.sport})
        } else {
            serde_json::json!({"src": k.src_ip().to_string(), "dst": k.dst_ip().to_string(),
                "sport": k.sport, "dport": k.dport})
        }
    };
    let nat: Vec<&str> = [(CtState::SNAT, "snat"), (CtState::DNAT, "dnat")]
        .iter()
        .filter(|(bit, _)| e.nat & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    let mut m = serde_json::json!({
        "event": e.kind.name(),
        "id": e.id,
        "timestamp_us": e.ts_us,
        "proto": linux_proto_name(e.orig.proto),
        "ip_proto": e.orig.proto,
        "zone": e.zone(),
        "orig": tuple(&e.orig),
        "reply": tuple(&e.reply),
        "nat": nat,
        "unreplied": !e.seen_reply(),
        "assured": e.assured(),
    });
    if e.kind == EventKind::Destroy {
        m["reason"] = e.reason.name().into();
    } else {
        m["timeout"] = (e.timeout_ms / 1000).into();
    }
    if let Some(s) = e.linux_tcp_state() {
        m["state"] = s.into();
    }
    m
}

struct EventsJob {
    sub: Subscription,
    args: EventsArgs,
    shown: u64,
    lost_reported: u64,
    buf: Vec<CtEvent>,
}

impl Job for EventsJob {
    fn step(
        &mut self,
        _ctx: &ControlContext,
        _budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let lost = self.sub.lost();
        if lost > self.lost_reported {
            let n = lost - self.lost_reported;
            self.lost_reported = lost;
            if self.args.json {
                out.push_str(&serde_json::json!({"event": "lost", "count": n}).to_string());
                out.push('\n');
            } else {
                out.push_str(&format!("[LOST] {n} events\n"));
            }
        }
        self.buf.clear();
        self.sub.drain(&mut self.buf);
        for e in &self.buf {
            if !self.args.filter.admits(e) {
                continue;
            }
            if self.args.json {
                out.push_str(&event_json(e).to_string());
            } else {
                out.push_str(&e.conntrack_line());
            }
            out.push('\n');
            self.shown += 1;
            if self.args.count.is_some_and(|c| self.shown >= c) {
                return Ok(Step::Done);
            }
        }
        Ok(Step::More)
    }

    fn live(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Result<EventsArgs, String> {
        parse_events_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_set_filters_count_and_json() {
        let p = a(&[
            "zone=3",
            "proto=udp",
            "--event",
            "new,destroy",
            "--count",
            "5",
            "--json",
        ])
        .unwrap();
        assert_eq!(p.filter.zone, Some(3));
        assert_eq!(p.filter.proto, Some(17));
        assert_eq!(p.filter.kinds, vec![EventKind::New, EventKind::Destroy]);
        assert_eq!(p.count, Some(5));
        assert!(p.json);
        let q = a(&["--event=update", "proto=6"]).unwrap();
        assert_eq!(q.filter.kinds, vec![EventKind::Update]);
        assert_eq!(q.filter.proto, Some(6));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(a(&["--event", "born"])
            .unwrap_err()
            .contains("unknown event \"born\""));
        assert!(a(&["proto=xyz"])
            .unwrap_err()
            .contains("unknown protocol \"xyz\""));
        assert!(a(&["--count", "0"]).unwrap_err().contains("--count"));
        assert!(a(&["--count"]).unwrap_err().contains("needs a value"));
        assert!(a(&["bogus"])
            .unwrap_err()
            .contains("invalid argument \"bogus\""));
    }
}
