//! `ct-set-maxconns` and the zone limits: `ct-set-limits`, `ct-del-limits`,
//! `ct-get-limits`, with OVS's outputs and argument errors.

use super::args::*;
use super::context::*;
use std::fmt::Write;
use std::sync::atomic::Ordering;

// ---------------------------------------------------------------------------------------
// maxconns, limits, sweep

pub(super) fn ct_set_maxconns(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
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
pub(super) fn parse_zone_limit(s: &str) -> Result<(u16, u32), String> {
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

pub(super) fn ct_set_limits(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
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
pub(super) fn parse_limit_zones(a: &str, out: &mut Vec<u16>) -> Result<(), String> {
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

pub(super) fn ct_del_limits(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
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

pub(super) fn ct_get_limits(ctx: &ControlContext, args: &[String]) -> Result<Outcome, String> {
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

pub(super) fn ct_set_sweep_interval(
    ctx: &ControlContext,
    args: &[String],
) -> Result<Outcome, String> {
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
