//! IP fragment reassembly: `ipf-set-enabled`, `ipf-set-disabled`, `ipf-set-min-frag`,
//! `ipf-set-max-nfrags` and `ipf-get-status [-m]`, with the words and outputs of
//! `ovs-appctl dpctl/ipf-*` (lib/dpctl.c), over the gateway's [`crate::ipf::Ipf`].

use super::args::*;
use super::context::*;
use crate::ipf::{format, Ipf};
use crate::wire::parse::Family;

/// OVS's error text for a setting the module refuses (its `ipf_set_*` return 1, which
/// `dpctl_error` prints as errno 1).
fn eperm(msg: &str) -> String {
    format!("{msg} (Operation not permitted)")
}

fn module<'a>(ctx: &ControlContext<'a>) -> Result<&'a Ipf, String> {
    ctx.ipf
        .ok_or_else(|| "fragment reassembly is not available (no gateway running)".into())
}

/// `v4` or `v6` (OVS reads the first two characters of the argument).
fn family(a: Option<&&str>) -> Option<Family> {
    match a.map(|s| s.get(..2).unwrap_or(s)) {
        Some("v4") => Some(Family::V4),
        Some("v6") => Some(Family::V6),
        _ => None,
    }
}

/// Arguments after the options; OVS allows an optional datapath name first, which
/// ctgate (one datapath) accepts and ignores when there is one argument more than needed.
fn operands<'a>(rest: &'a [&'a str], n: usize) -> &'a [&'a str] {
    if rest.len() > n {
        &rest[rest.len() - n..]
    } else {
        rest
    }
}

pub(super) fn ipf_set_enabled(
    ctx: &ControlContext,
    args: &[String],
    on: bool,
) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ipf-set-enabled")?;
    let ipf = module(ctx)?;
    let fam = family(operands(&rest, 1).first())
        .ok_or_else(|| einval("parameter missing: 'v4' for IPv4 or 'v6' for IPv6"))?;
    ipf.set_enabled(fam, on);
    Ok(done(format!(
        "{} fragmentation reassembly successful\n",
        if on { "enabling" } else { "disabling" }
    )))
}

pub(super) fn ipf_set_min_frag(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ipf-set-min-frag")?;
    let ipf = module(ctx)?;
    let ops = operands(&rest, 2);
    let fam = match ops {
        [f, _] => family(Some(f)),
        _ => None,
    }
    .ok_or_else(|| einval("parameter missing: v4 for IPv4 or v6 for IPv6"))?;
    let n = ops
        .get(1)
        .and_then(|s| parse_dec::<u32>(s))
        .ok_or_else(|| einval("parameter missing for minimum fragment size"))?;
    ipf.set_min_frag(fam, n)
        .map_err(|_| eperm("requested minimum fragment size too small; see documentation"))?;
    Ok(done("setting minimum fragment size successful\n".into()))
}

pub(super) fn ipf_set_max_nfrags(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ipf-set-max-nfrags")?;
    let ipf = module(ctx)?;
    let n = operands(&rest, 1)
        .first()
        .and_then(|s| parse_dec::<u32>(s))
        .ok_or_else(|| einval("parameter missing for maximum fragments"))?;
    ipf.set_max_frags(n)
        .map_err(|_| eperm("setting maximum fragments failed"))?;
    Ok(done("setting maximum fragments successful\n".into()))
}

pub(super) fn ipf_get_status(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
    let (o, rest) = split_options(args)?;
    no_json(&o, "ipf-get-status")?;
    let ipf = module(ctx)?;
    if rest.len() > 1 {
        return Err(einval(format_args!(
            "invalid argument \"{}\"",
            rest[1].escape_debug()
        )));
    }
    let lists = o.more.then(|| ipf.lists());
    Ok(done(format::status(&ipf.status(), lists.as_deref())))
}
