//! The ctgate configuration the benchmarks run with: the embedded default, with a static
//! `next_hop_mac` on both ports (the clients' MAC inside, the router's outside: nothing
//! to resolve with ARP), `max_conns` set for the case, and the `[[snat]]` rules kept or
//! dropped, and the `[timeouts]` the default sets for a NAT gateway (the RFCs') left out, so
//! the benchmarks and the comparison with Open vSwitch run with OVS's timeouts, the
//! tracker's own defaults. Shared by `gateway`, `compare-ovs`, `step` and `datapath` (which adjusts
//! timeouts on top).
//!
//! The text is derived line by line from [`ctgate::config::EMBEDDED_DEFAULT`]; when the
//! default no longer has the lines this relies on, the result is an error saying so, never
//! a configuration that silently lacks an edit.

use crate::gen_traffic::{CLIENT_MAC, ROUTER_MAC};

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// [`bench_config`] with room for `flows` (twice as many connections, at least 3M, the
/// default's): what the `gateway` and `compare-ovs` cases run.
pub fn for_flows(flows: u32, snat: bool) -> Result<String, String> {
    bench_config(max_conns_for(flows), snat)
}

/// Open vSwitch's userspace conntrack limit unless set (`dpctl/ct-set-maxconns`).
pub const OVS_DEFAULT_MAX_CONNS: u64 = 3_000_000;

/// The connection limit for `flows` flows: twice as many, at least OVS's default.
pub fn max_conns_for(flows: u32) -> u64 {
    (2 * u64::from(flows)).max(OVS_DEFAULT_MAX_CONNS)
}

/// `text` (a [`bench_config`]) with `timeouts` (`[timeouts]` keys and their seconds) set.
pub fn with_timeouts(text: &str, timeouts: &[(&str, u32)]) -> Result<String, String> {
    let mut out = String::new();
    let mut seen = false;
    for l in text.lines() {
        out.push_str(l);
        out.push('\n');
        if l.trim() == "[timeouts]" {
            seen = true;
            for (k, secs) in timeouts {
                out.push_str(&format!("{k} = {secs}\n"));
            }
        }
    }
    if !seen {
        return Err("the embedded default config has no [timeouts]: update bench_config.rs".into());
    }
    Ok(out)
}

/// `text` with the UDP timeouts (first, single, multiple) set to `secs` seconds, when given.
pub fn with_udp_timeout(text: String, secs: Option<u32>) -> Result<String, String> {
    match secs {
        None => Ok(text),
        Some(t) => with_timeouts(
            &text,
            &[("udp_first", t), ("udp_single", t), ("udp_multiple", t)],
        ),
    }
}

/// The embedded default configuration for benchmarks: `max_conns` set to `max`, a static
/// `next_hop_mac` on both ports, and the `[[snat]]` rules kept (`snat`) or dropped (the
/// same policy: inside→outside new connections allowed, outside→inside only established
/// ones).
pub fn bench_config(max: u64, snat: bool) -> Result<String, String> {
    let base = ctgate::config::EMBEDDED_DEFAULT;
    let mut out = String::new();
    let mut port = None;
    let mut seen_max = false;
    let mut in_snat = false;
    let mut in_timeouts = false;
    for l in base.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            in_snat = t == "[[snat]]";
            in_timeouts = t == "[timeouts]";
        }
        if in_snat && !snat {
            continue;
        }
        if in_timeouts && !t.is_empty() && !t.starts_with('#') && !t.starts_with('[') {
            continue;
        }
        if t.starts_with("max_conns") {
            out.push_str(&format!("max_conns = {max}\n"));
            seen_max = true;
            continue;
        }
        if t.starts_with("# next_hop_mac") {
            continue;
        }
        out.push_str(l);
        out.push('\n');
        if t == "[[port]]" {
            port = Some(());
        }
        if port.is_some() && t.starts_with("port = ") {
            let mac = if t == "port = 0" {
                CLIENT_MAC
            } else {
                ROUTER_MAC
            };
            out.push_str(&format!("next_hop_mac = \"{}\"\n", mac_str(mac)));
            port = None;
        }
    }
    if !seen_max
        || out.matches("next_hop_mac").count() != 2
        || out.lines().any(|l| l.trim() == "[[snat]]") != snat
    {
        return Err("the embedded default config changed shape: update bench_config.rs".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_static_next_hops_and_parses() {
        for snat in [true, false] {
            let t = for_flows(1000, snat).unwrap();
            assert!(t.contains("next_hop_mac = \"02:00:00:00:01:02\""), "{t}");
            assert!(t.contains("next_hop_mac = \"02:00:00:00:02:02\""), "{t}");
            assert_eq!(t.lines().any(|l| l.starts_with("pool =")), snat, "{t}");
            assert!(t.contains("max_conns = 3000000\n"), "{t}");
            let c = ctgate::config::Config::parse(&t, "gw.toml").unwrap();
            assert!(
                c.timeouts.is_empty(),
                "OVS's timeouts, not the NAT RFCs': {t}"
            );
        }
        assert!(for_flows(2_000_000, true)
            .unwrap()
            .contains("max_conns = 4000000\n"));
    }

    #[test]
    fn udp_timeout_sets_the_three_udp_timeouts_and_nothing_else() {
        let base = for_flows(1000, true).unwrap();
        assert_eq!(with_udp_timeout(base.clone(), None).unwrap(), base);
        let t = with_udp_timeout(base, Some(300)).unwrap();
        let c = ctgate::config::Config::parse(&t, "gw.toml").unwrap();
        assert_eq!(c.timeouts.len(), 3, "{:?}", c.timeouts);
        for k in ["udp_first", "udp_single", "udp_multiple"] {
            assert!(t.contains(&format!("{k} = 300\n")), "{t}");
        }
    }
}
