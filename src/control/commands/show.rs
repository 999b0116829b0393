//! The running gateway's tables: `config-show` (the configuration in force as a file,
//! re-loadable as is), `route-show`, `neigh-show`, `neigh-flush` and `nat-show` (the NAT
//! rules, and per pool address how many ports are in use per protocol, counted over the
//! connection table by a bounded [`Job`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use super::args::*;
use super::context::*;
use crate::conntrack::{key::addr_to_ip, CtState};
use crate::control::config_toml::config_toml;
use crate::nat::NatRange;
use crate::pipeline::gateway::GatewayShared;

fn live<'a>(ctx: &'a ControlContext) -> Result<&'a dyn LiveConfig, String> {
    ctx.info
        .live()
        .ok_or_else(|| "this process has no gateway configuration".to_string())
}

pub(super) fn config_show(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    no_args(args)?;
    let r = live(ctx)?.running();
    let mut s = format!(
        "# ctgate running configuration\n# generation: {}\n# source: {}\n# loaded: {} (seconds since the Unix epoch)\n",
        r.generation, r.config.source, r.loaded_unix
    );
    s.push_str(&config_toml(&r.config));
    Ok(done(s))
}

pub(super) fn route_show(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    no_args(args)?;
    let v = live(ctx)?.version();
    let mut s = String::new();
    for r in v.route_views() {
        let _ = write!(s, "{}/{}", r.net, r.len);
        match r.via {
            Some(via) => {
                let _ = write!(s, " via {via}");
            }
            None => s.push_str(" connected"),
        }
        let _ = write!(s, " port {}", r.port);
        if let Some(vl) = r.vlan {
            let _ = write!(s, " vlan {vl}");
        }
        s.push('\n');
    }
    Ok(done(s))
}

pub(super) fn neigh_show(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    no_args(args)?;
    let v = live(ctx)?.version();
    let mut s = String::new();
    for n in v.neighbour_views(ctx.now) {
        let mac = n.mac.map_or_else(|| "-".to_string(), |m| m.to_string());
        let _ = writeln!(
            s,
            "{} mac={mac} port={} state={} age={}s",
            n.addr,
            n.port,
            n.state,
            n.age_ms / 1000
        );
    }
    Ok(done(s))
}

pub(super) fn neigh_flush(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    no_args(args)?;
    let n = live(ctx)?.version().flush_neighbours();
    Ok(done(format!("flushed {n} neighbours\n")))
}

pub(super) fn nat_show(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    no_args(args)?;
    let version = live(ctx)?.version();
    Ok(Outcome::Stream(Box::new(NatShow {
        cursor: 0,
        version,
        ports: BTreeMap::new(),
    })))
}

/// Protocol columns of `nat-show`.
const PROTOS: [(&str, &[u8]); 4] = [
    ("tcp", &[6]),
    ("udp", &[17]),
    ("icmp", &[1, 58]),
    ("other", &[]),
];

fn proto_col(p: u8) -> usize {
    PROTOS
        .iter()
        .position(|(_, ps)| ps.contains(&p))
        .unwrap_or(PROTOS.len() - 1)
}

/// Addresses of a pool listed even when unused (larger pools list only used ones).
const LIST_UNUSED_UP_TO: u128 = 256;

fn pool_addrs(r: &NatRange) -> Vec<IpAddr> {
    let num = |a: &[u8; 16]| {
        if r.family == 4 {
            u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
        } else {
            u128::from_be_bytes(*a)
        }
    };
    let (lo, hi) = (num(&r.addr_min), num(&r.addr_max));
    if hi < lo || hi - lo >= LIST_UNUSED_UP_TO {
        return Vec::new();
    }
    (lo..=hi)
        .map(|v| {
            if r.family == 4 {
                IpAddr::from((v as u32).to_be_bytes())
            } else {
                IpAddr::from(v.to_be_bytes())
            }
        })
        .collect()
}

/// Counts the translated source ports (ICMP identifiers) in use per pool address and
/// protocol, then prints the rules and the counts.
struct NatShow {
    cursor: usize,
    version: Arc<GatewayShared>,
    /// (address, protocol column) → ports in use.
    ports: BTreeMap<(IpAddr, usize), BTreeSet<u16>>,
}

impl Job for NatShow {
    fn step(
        &mut self,
        ctx: &ControlContext,
        budget: usize,
        out: &mut String,
    ) -> Result<Step, String> {
        let now = ctx.now;
        let ports = &mut self.ports;
        let end = walk(ctx.conntrack, &mut self.cursor, budget, |_, _, s| {
            if s.nat & CtState::SNAT == 0 || !alive(s, now) {
                return;
            }
            let a = addr_to_ip(s.reply.family, &s.reply.dst);
            ports
                .entry((a, proto_col(s.orig.proto)))
                .or_default()
                .insert(s.reply.dport);
        });
        if !end {
            return Ok(Step::More);
        }
        let v = &self.version;
        let configured = v.snat_pools();
        for p in &configured {
            let _ = writeln!(out, "snat pool={p}");
        }
        for d in v.dnat_views() {
            let m = match d.addr {
                IpAddr::V4(a) => format!("{a}:{}", d.port),
                IpAddr::V6(a) => format!("[{a}]:{}", d.port),
            };
            let proto = if d.proto == 17 { "udp" } else { "tcp" };
            let _ = writeln!(out, "dnat proto={proto} match={m} to={}", d.to);
        }
        for p in v.answered_pools() {
            if !configured.contains(p) {
                let _ = writeln!(
                    out,
                    "kept pool={p} (an earlier configuration's, answered until reload --flush-stale)"
                );
            }
        }
        let mut addrs: BTreeSet<IpAddr> = v.answered_pools().iter().flat_map(pool_addrs).collect();
        addrs.extend(self.ports.keys().map(|(a, _)| *a));
        for a in addrs {
            let _ = write!(out, "pool {a}:");
            for (i, (name, _)) in PROTOS.iter().enumerate() {
                let n = self.ports.get(&(a, i)).map_or(0, BTreeSet::len);
                let _ = write!(out, " {name}={n}");
            }
            out.push('\n');
        }
        Ok(Step::Done)
    }
}
