//! The running configuration written back as TOML (`ctgate-ctl config-show`): every
//! setting explicit, in the file's sections, so that [`Config::parse`] of the text gives
//! the same [`Config`] (the round trip `config-show` → file → `reload` changes nothing),
//! apart from where the file's lines are (`Config::port_lines`, for error messages).

use std::fmt::Write;
use std::net::IpAddr;

use crate::config::{Config, MssClamp, Role};

fn quoted_mac(m: &[u8; 6]) -> String {
    let h: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{}\"", h.join(":"))
}

fn addr_port(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        17 => "udp",
        _ => "tcp",
    }
}

/// `cfg` as a configuration file.
pub fn config_toml(cfg: &Config) -> String {
    let mut s = String::new();
    let d = &cfg.datapath;
    let _ = writeln!(s, "[datapath]");
    let _ = writeln!(s, "max_conns = {}", d.max_conns);
    let _ = writeln!(s, "buckets = {}", d.buckets);
    let _ = writeln!(s, "tcp_seq_check = {}", d.tcp_seq_check);
    let _ = writeln!(s, "sweep_interval_ms = {}", d.sweep_interval_ms);
    for p in &cfg.ports {
        let _ = writeln!(s, "\n[[port]]\nport = {}", p.port);
        if let Some(v) = p.vlan {
            let _ = writeln!(s, "vlan = {v}");
        }
        let role = match p.role {
            Role::Inside => "inside",
            Role::Outside => "outside",
        };
        let _ = writeln!(s, "role = \"{role}\"");
        if let Some((a, l)) = p.ipv4 {
            let _ = writeln!(s, "ipv4 = \"{a}/{l}\"");
        }
        if let Some((a, l)) = p.ipv6 {
            let _ = writeln!(s, "ipv6 = \"{a}/{l}\"");
        }
        let _ = writeln!(s, "zone = {}", p.zone);
        if let Some(m) = &p.next_hop_mac {
            let _ = writeln!(s, "next_hop_mac = {}", quoted_mac(m));
        }
        match p.mss_clamp {
            Some(MssClamp::Auto) => {
                let _ = writeln!(s, "mss_clamp = \"auto\"");
            }
            Some(MssClamp::Fixed(n)) => {
                let _ = writeln!(s, "mss_clamp = {n}");
            }
            None => {}
        }
        let _ = writeln!(s, "mtu = {}", p.mtu);
        let _ = writeln!(s, "icmp_rate = {}", p.icmp_rate);
        let _ = writeln!(s, "icmp_burst = {}", p.icmp_burst);
    }
    for r in &cfg.routes {
        let _ = writeln!(
            s,
            "\n[[route]]\nprefix = \"{}\"\nvia = \"{}\"",
            r.prefix, r.via
        );
    }
    // Each rule's filtering written out (the `[nat]` default folded in).
    for (i, r) in cfg.snat.iter().enumerate() {
        let _ = writeln!(s, "\n[[snat]]\npool = \"{r}\"");
        if let Some(f) = cfg.snat_filtering.get(i) {
            let _ = writeln!(s, "filtering = \"{}\"", f.name());
        }
    }
    for r in &cfg.dnat {
        let _ = writeln!(
            s,
            "\n[[dnat]]\nproto = \"{}\"\nmatch = \"{}\"\nto = \"{}\"",
            proto_name(r.proto),
            addr_port(r.match_addr, r.match_port),
            r.to
        );
    }
    for (h, port) in &cfg.alg {
        let _ = writeln!(s, "\n[[alg]]\nhelper = \"{}\"\nport = {port}", h.name());
    }
    let _ = writeln!(
        s,
        "\n[policy]\noutside_new = \"{}\"\ninvalid = \"{}\"",
        if cfg.policy.outside_new_allow {
            "allow"
        } else {
            "deny"
        },
        if cfg.policy.invalid_allow {
            "allow"
        } else {
            "drop"
        }
    );
    let _ = writeln!(s, "\n[limits]\ndefault = {}", cfg.default_limit);
    if !cfg.zone_limits.is_empty() {
        let z: Vec<String> = cfg
            .zone_limits
            .iter()
            .map(|(z, l)| format!("{{ zone = {z}, limit = {l} }}"))
            .collect();
        let _ = writeln!(s, "zones = [ {} ]", z.join(", "));
    }
    let _ = writeln!(s, "\n[timeouts]");
    for (a, secs) in &cfg.timeouts {
        let _ = writeln!(s, "{} = {secs}", a.name());
    }
    for (z, list) in &cfg.zone_timeouts {
        let _ = writeln!(s, "\n[[timeouts.zone]]\nzone = {z}");
        for (a, secs) in list {
            let _ = writeln!(s, "{} = {secs}", a.name());
        }
    }
    let f = &cfg.fragments;
    let _ = writeln!(
        s,
        "\n[fragments]\nenabled_v4 = {}\nenabled_v6 = {}\nmin_frag_v4 = {}\nmin_frag_v6 = {}\nmax_frags = {}\ntimeout_ms = {}",
        f.enabled_v4, f.enabled_v6, f.min_frag_v4, f.min_frag_v6, f.max_frags, f.timeout_ms
    );
    if let Some(a) = cfg.metrics_listen {
        let _ = writeln!(s, "\n[metrics]\nlisten = \"{a}\"");
    }
    let l = &cfg.logging;
    if *l != crate::config::Logging::default() {
        let _ = writeln!(s, "\n[logging]");
        if let Some(t) = &l.syslog {
            let _ = writeln!(s, "syslog = \"{t}\"");
        }
        if let Some(a) = l.ipfix {
            let _ = writeln!(s, "ipfix = \"{a}\"");
        }
        let _ = writeln!(
            s,
            "template_interval = {}\nbindings_only = {}",
            l.template_interval, l.bindings_only
        );
    }
    if let Some(y) = &cfg.sync {
        let peers: Vec<String> = y.peers.iter().map(|p| format!("\"{p}\"")).collect();
        let _ = writeln!(
            s,
            "\n[sync]\nlocal = \"{}\"\npeers = [{}]\nmode = \"{}\"\nrefresh_interval = {}",
            y.local,
            peers.join(", "),
            y.mode.name(),
            y.refresh_secs
        );
        if let Some(k) = &y.key_file {
            let _ = writeln!(s, "key_file = \"{}\"", k.display());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_DEFAULT;

    #[test]
    fn the_written_configuration_parses_back_to_the_same() {
        let extra = "\n[[port]]\nport = 0\nvlan = 10\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\nzone = 4\n\
                     next_hop_mac = \"02:00:00:00:0a:0b\"\n\
                     [[dnat]]\nproto = \"udp\"\nmatch = \"192.0.2.1:53\"\nto = \"10.0.0.5:5353\"\n\
                     [[dnat]]\nproto = \"tcp\"\nmatch = \"[fd00:0:0:2::1]:80\"\nto = \"[fd00:0:0:1::5]\"\n\
                     [[timeouts.zone]]\nzone = 4\ntcp_established = 3600\n";
        let text = EMBEDDED_DEFAULT
            .replace(
                "pool = \"192.0.2.1\"",
                "pool = \"192.0.2.1-192.0.2.4:2000-3000\"",
            )
            .replace(
                "default = 0",
                "default = 9\nzones = [ { zone = 1, limit = 100 }, { zone = 4, limit = 7 } ]",
            )
            .replace("udp_first = 120", "udp_first = 61")
            .replace("outside_new = \"deny\"", "outside_new = \"allow\"")
            .replace(
                "filtering = \"address-port-dependent\"",
                "filtering = \"address-dependent\"",
            )
            .replace(
                "pool = \"[fd00:0:0:2::1]\"",
                "pool = \"[fd00:0:0:2::1]\"\nfiltering = \"endpoint-independent\"",
            )
            .replace("max_frags = 1000", "max_frags = 77")
            .replacen(
                "role = \"outside\"",
                "role = \"outside\"\nmtu = 1400\nicmp_rate = 7\nicmp_burst = 3\nmss_clamp = \"auto\"",
                1,
            )
            .replacen(
                "role = \"inside\"",
                "role = \"inside\"\nmtu = 9000\nmss_clamp = 1300",
                1,
            )
            + extra
            + "[metrics]\nlisten = \"127.0.0.1:9464\"\n"
            + "[logging]\nsyslog = \"/dev/log\"\nipfix = \"[::1]:4739\"\nbindings_only = true\n"
            + "[sync]\nlocal = \"127.0.0.1:3780\"\npeers = [\"127.0.0.2:3780\", \"[::1]:3781\"]\nmode = \"active-active\"\n";
        let cfg = Config::parse(&text, "x.toml").unwrap();
        assert_eq!(cfg.dnat.len(), 2);
        assert_eq!(cfg.zone_timeouts.len(), 1);
        assert!(cfg.metrics_listen.is_some());
        assert_eq!(
            (cfg.ports[0].mtu, cfg.ports[1].mtu, cfg.ports[1].icmp_rate),
            (9000, 1400, 7)
        );
        assert!(cfg.logging.bindings_only);
        assert_eq!(cfg.sync.as_ref().map(|y| y.peers.len()), Some(2));
        let written = config_toml(&cfg);
        let mut back =
            Config::parse(&written, "x.toml").unwrap_or_else(|e| panic!("{e}\n{written}"));
        back.port_lines = cfg.port_lines.clone();
        assert_eq!(back, cfg, "{written}");
        assert_eq!(config_toml(&back), written);
        let default = Config::embedded().unwrap();
        let mut back = Config::parse(&config_toml(&default), &default.source).unwrap();
        back.port_lines = default.port_lines.clone();
        assert_eq!(back, default);
    }
}
