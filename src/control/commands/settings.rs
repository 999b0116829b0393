//! Runtime settings: `ct-set-sweep-interval` and the timeout policies
//! (`ct-set-timeout-policy`, `ct-get-timeout-policy`, `ct-del-timeout-policy`).

use super::args::*;
use super::context::*;
use crate::conntrack::{TimeoutAttr, TimeoutPolicy};
use std::fmt::Write;

// ---------------------------------------------------------------------------------------
// timeout policies

/// A policy target: a zone, or the global default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PolicyTarget {
    Zone(u16),
    Default,
}

pub(super) fn parse_policy_target(a: Option<&&str>) -> Result<PolicyTarget, String> {
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

pub(super) fn attr_names() -> String {
    TimeoutAttr::ALL
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn ct_set_timeout_policy(
    ctx: &ControlContext,
    args: &[String],
) -> Result<Outcome, String> {
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
pub(super) fn secs(ms: u32) -> String {
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

pub(super) fn ct_get_timeout_policy(
    ctx: &ControlContext,
    args: &[String],
) -> Result<Outcome, String> {
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

pub(super) fn ct_del_timeout_policy(
    ctx: &ControlContext,
    args: &[String],
) -> Result<Outcome, String> {
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
