//! Argument parsing shared by the commands: OVS's common options (`-s`, `-m`, `--json`),
//! C-style unsigned integers, zone numbers and `key=value` lists.

use super::context::*;

// ---------------------------------------------------------------------------------------
// Argument parsing helpers.

/// The options `ovs-appctl dpctl/…` accepts for every command, plus ctgate's `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Opts {
    pub(super) stats: bool,
    pub(super) more: bool,
    pub(super) json: bool,
}

/// Splits options from the other arguments (options may stand anywhere). Unknown
/// options are errors with OVS's message.
pub(super) fn split_options(args: &[String]) -> Result<(Opts, Vec<&str>), String> {
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

pub(super) fn no_json(o: &Opts, cmd: &str) -> Result<(), String> {
    if o.json {
        return Err(format!("option --json is not supported by {cmd}"));
    }
    Ok(())
}

/// Commands without arguments (the OVS options are accepted and ignored).
pub(super) fn no_args(args: &[String]) -> Result<(), String> {
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
pub(super) fn parse_c_uint(s: &str) -> Option<u128> {
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
pub(super) fn parse_dec<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `zone=N` for dump-conntrack and ct-stats-show.
pub(super) fn parse_zone_arg(a: &str) -> Result<u16, String> {
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
pub(super) fn key_values(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.find(['=', ':']) {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, ""),
        })
}
