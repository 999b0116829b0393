//! The gateway's configuration: one TOML file, validated at start.
//!
//! `config/ctgate.toml` is the commented example and is built into the binary as the
//! default ([`EMBEDDED_DEFAULT`]). Every error names the file, the line and the field
//! (`ctgate.toml:12: port[1].ipv4: invalid prefix '10.0.0.1/33' …`); unknown keys are
//! errors, not ignored.

use crate::conntrack::alg::expect::Helper;
use crate::conntrack::alg::helpers::MAX_HELPER_RULES;
use crate::conntrack::timeouts::TimeoutAttr;
use crate::ipf::{limits as frag_limits, FragSettings};
use crate::nat::mapping::Filtering;
use crate::nat::NatRange;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use toml::Spanned;

mod logging;
mod sync;
pub use logging::{Logging, SyslogTarget, DEFAULT_TEMPLATE_INTERVAL};
pub use sync::{read_key_file, SyncConfig, SyncMode};

/// The commented example configuration, used when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/ctgate.toml");
/// The name errors use for the embedded default.
pub const EMBEDDED_NAME: &str = "<embedded default config>";
/// The largest configuration file read (`--config /dev/zero` must not read forever).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A configuration error: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, as a path (`port[1].ipv4`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Which side of the gateway a port faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Inside,
    Outside,
}

/// An IP prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// True when `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let m = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.len)
                };
                u32::from(p) & m == u32::from(a) & m
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let m = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.len)
                };
                u128::from(p) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let bad = || format!("invalid prefix '{s}' (expected ADDRESS/LENGTH)");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("invalid prefix '{s}' (length {len} > {max})"));
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A configured port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// DPDK port id.
    pub port: u16,
    /// The 802.1Q VLAN id of a VLAN sub-interface (`port = N, vlan = V`): its own
    /// interface on port N, for frames tagged V (the tag stripped on receive and pushed on
    /// transmit). `None`: the port's untagged interface.
    pub vlan: Option<u16>,
    pub role: Role,
    /// The gateway's IPv4 address on the port and its connected prefix.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The gateway's IPv6 address on the port and its connected prefix.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// Conntrack zone of traffic entering on this port.
    pub zone: u16,
    /// A static next-hop MAC (instead of ARP/NDP) for everything sent out this port.
    pub next_hop_mac: Option<[u8; 6]>,
    /// TCP MSS clamping of SYN and SYN/ACK segments entering or leaving by this port.
    pub mss_clamp: Option<MssClamp>,
    /// The largest IP packet the port sends or receives ([`MTU_MIN`] to [`MTU_MAX`],
    /// default [`MTU_DEFAULT`]): larger received frames are dropped (`drop_too_big`),
    /// larger routed packets are fragmented (IPv4 without DF) or answered with ICMP
    /// "fragmentation needed" / ICMPv6 "packet too big".
    pub mtu: u16,
    /// ICMP errors about MTU (fragmentation needed, packet too big) sent from this port
    /// per second at most, in the long run (token bucket; 0: none).
    pub icmp_rate: u32,
    /// And at most this many at once (the bucket's size).
    pub icmp_burst: u32,
}

/// Default port MTU (Ethernet).
pub const MTU_DEFAULT: u16 = 1500;
/// Smallest port MTU: IPv6's minimum link MTU (RFC 8200 §5).
pub const MTU_MIN: u16 = 1280;
/// Largest port MTU (jumbo frames).
pub const MTU_MAX: u16 = 9000;
/// Default `icmp_rate`: Linux's `net.ipv4.icmp_msgs_per_sec`.
pub const ICMP_RATE_DEFAULT: u32 = 1000;
/// Default `icmp_burst`: Linux's `net.ipv4.icmp_msgs_burst`.
pub const ICMP_BURST_DEFAULT: u32 = 50;
/// Largest `icmp_rate`.
pub const ICMP_RATE_MAX: u32 = 1_000_000;
/// Largest `icmp_burst`.
pub const ICMP_BURST_MAX: u32 = 10_000;

/// `mss_clamp` of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssClamp {
    /// The port's `mtu` minus the IP and TCP headers (1460 for IPv4 and 1440 for IPv6 at
    /// 1500); of the input and output ports, the smaller.
    Auto,
    /// At most this MSS.
    Fixed(u16),
}

impl MssClamp {
    /// The largest MSS for a segment of `family` (4 or 6) on a port of MTU `mtu`.
    pub fn max_mss(self, family: u8, mtu: u16) -> u16 {
        match self {
            MssClamp::Auto if family == 6 => mtu.saturating_sub(40 + 20),
            MssClamp::Auto => mtu.saturating_sub(20 + 20),
            MssClamp::Fixed(n) => n,
        }
    }
}

impl PortConfig {
    /// The connected prefixes of the port.
    pub fn connected(&self) -> Vec<Prefix> {
        let mut v = Vec::new();
        if let Some((a, l)) = self.ipv4 {
            v.push(Prefix {
                addr: IpAddr::V4(a),
                len: l,
            });
        }
        if let Some((a, l)) = self.ipv6 {
            v.push(Prefix {
                addr: IpAddr::V6(a),
                len: l,
            });
        }
        v
    }
}

/// A route: prefix → next hop (on a connected network of `port`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    pub via: IpAddr,
    pub port: u16,
}

/// A port forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnatRule {
    /// IP protocol (6 or 17).
    pub proto: u8,
    pub match_addr: IpAddr,
    pub match_port: u16,
    /// The inside server (address, optional port).
    pub to: NatRange,
}

/// Firewall policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Admit new outside→inside connections that no DNAT rule matches.
    pub outside_new_allow: bool,
    /// Forward packets the tracker finds invalid.
    pub invalid_allow: bool,
}

/// Datapath settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datapath {
    pub max_conns: u32,
    pub buckets: u32,
    pub tcp_seq_check: bool,
    pub sweep_interval_ms: u32,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it came from (a path or [`EMBEDDED_NAME`]).
    pub source: String,
    pub datapath: Datapath,
    pub ports: Vec<PortConfig>,
    pub routes: Vec<Route>,
    pub snat: Vec<NatRange>,
    pub dnat: Vec<DnatRule>,
    /// `[[alg]]`: the helpers (FTP, TFTP) and the original destination ports they apply
    /// to, in file order.
    pub alg: Vec<(Helper, u16)>,
    pub policy: Policy,
    /// Default zone limit (0 = none).
    pub default_limit: u32,
    /// Per-zone limits.
    pub zone_limits: Vec<(u16, u32)>,
    /// Global timeout overrides (seconds).
    pub timeouts: Vec<(TimeoutAttr, u32)>,
    /// Per-zone timeout overrides (seconds).
    pub zone_timeouts: Vec<(u16, Vec<(TimeoutAttr, u32)>)>,
    /// IP fragment reassembly (`[fragments]`).
    pub fragments: FragSettings,
    /// The line of each `[[port]]` entry's `port =` key (same order as `ports`), for
    /// errors found later (a port DPDK did not probe).
    pub port_lines: Vec<Option<usize>>,
    /// Filtering of each `[[snat]]` rule's mappings (in the order of `snat`): its own
    /// `filtering`, else `[nat] filtering`, else address-and-port-dependent.
    pub snat_filtering: Vec<Filtering>,
    /// `[metrics] listen`: where the Prometheus endpoint listens (off when `None`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[logging]`: NAT binding records to syslog and/or IPFIX (off by default).
    pub logging: Logging,
    /// `[sync]`: state sync with other instances (off when absent).
    pub sync: Option<SyncConfig>,
}

// ---- The file's shape (serde), with spans for the fields validated afterwards. ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    datapath: RawDatapath,
    #[serde(default, rename = "port")]
    ports: Vec<RawPort>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default)]
    snat: Vec<RawSnat>,
    #[serde(default)]
    dnat: Vec<RawDnat>,
    #[serde(default)]
    alg: Vec<RawAlg>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    fragments: RawFragments,
    #[serde(default)]
    nat: RawNat,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    logging: logging::RawLogging,
    #[serde(default)]
    sync: Option<sync::RawSync>,
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is given.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNat {
    filtering: Option<Spanned<String>>,
}

fn parse_filtering(
    v: &Option<Spanned<String>>,
    field: String,
    lines: &Lines,
) -> Result<Option<Filtering>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) => match Filtering::from_name(s.get_ref()) {
            Some(f) => Ok(Some(f)),
            None => lines.err(
                s.span(),
                field,
                format!(
                    "unknown value '{}' (expected \"address-port-dependent\", \"address-dependent\" or \"endpoint-independent\")",
                    s.get_ref()
                ),
            ),
        },
    }
}

/// `[fragments]`: reassembly settings, OVS's defaults and bounds (see [`crate::ipf`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFragments {
    enabled_v4: bool,
    enabled_v6: bool,
    min_frag_v4: Spanned<u32>,
    min_frag_v6: Spanned<u32>,
    max_frags: Spanned<u32>,
    timeout_ms: Spanned<u64>,
}

impl Default for RawFragments {
    fn default() -> Self {
        let d = FragSettings::default();
        RawFragments {
            enabled_v4: d.enabled_v4,
            enabled_v6: d.enabled_v6,
            min_frag_v4: Spanned::new(0..0, d.min_frag_v4),
            min_frag_v6: Spanned::new(0..0, d.min_frag_v6),
            max_frags: Spanned::new(0..0, d.max_frags),
            timeout_ms: Spanned::new(0..0, d.timeout_ms),
        }
    }
}

/// Checks `[fragments]` against the reassembly module's bounds.
fn validate_fragments(f: &RawFragments, lines: &Lines) -> Result<FragSettings, ConfigError> {
    let lowest = frag_limits::MIN_FRAG_LOWEST;
    for (v, name) in [
        (&f.min_frag_v4, "min_frag_v4"),
        (&f.min_frag_v6, "min_frag_v6"),
    ] {
        if !(lowest..=65_535).contains(v.get_ref()) {
            return lines.err(
                v.span(),
                format!("fragments.{name}"),
                format!("{} is out of range ({lowest} to 65535)", v.get_ref()),
            );
        }
    }
    let clamp = frag_limits::MAX_FRAGS_CLAMP;
    if *f.max_frags.get_ref() > clamp {
        return lines.err(
            f.max_frags.span(),
            "fragments.max_frags".into(),
            format!("{} is out of range (0 to {clamp})", f.max_frags.get_ref()),
        );
    }
    let t = *f.timeout_ms.get_ref();
    if t == 0 || t > 3_600_000 {
        return lines.err(
            f.timeout_ms.span(),
            "fragments.timeout_ms".into(),
            format!("{t} is out of range (1 to 3600000)"),
        );
    }
    Ok(FragSettings {
        enabled_v4: f.enabled_v4,
        enabled_v6: f.enabled_v6,
        min_frag_v4: *f.min_frag_v4.get_ref(),
        min_frag_v6: *f.min_frag_v6.get_ref(),
        max_frags: *f.max_frags.get_ref(),
        timeout_ms: t,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    #[serde(default = "default_max_conns")]
    max_conns: Spanned<u32>,
    #[serde(default = "default_zero")]
    buckets: Spanned<u32>,
    #[serde(default = "default_true")]
    tcp_seq_check: bool,
    #[serde(default = "default_sweep")]
    sweep_interval_ms: Spanned<u32>,
}

fn default_max_conns() -> Spanned<u32> {
    Spanned::new(0..0, crate::conntrack::DEFAULT_MAX_CONNS)
}
fn default_zero() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}
fn default_true() -> bool {
    true
}
fn default_sweep() -> Spanned<u32> {
    Spanned::new(0..0, 20_000)
}

impl Default for RawDatapath {
    fn default() -> Self {
        RawDatapath {
            max_conns: default_max_conns(),
            buckets: default_zero(),
            tcp_seq_check: true,
            sweep_interval_ms: default_sweep(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    port: Spanned<u16>,
    vlan: Option<Spanned<u16>>,
    role: Spanned<String>,
    ipv4: Option<Spanned<String>>,
    ipv6: Option<Spanned<String>>,
    zone: Option<Spanned<u16>>,
    next_hop_mac: Option<Spanned<String>>,
    mss_clamp: Option<Spanned<toml::Value>>,
    mtu: Option<Spanned<i64>>,
    icmp_rate: Option<Spanned<i64>>,
    icmp_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    via: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnat {
    pool: Spanned<String>,
    filtering: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnat {
    proto: Spanned<String>,
    #[serde(rename = "match")]
    matches: Spanned<String>,
    to: Spanned<String>,
}

/// `[[alg]]`: a helper and the destination port of the control connections it follows.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlg {
    helper: Spanned<String>,
    port: Spanned<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "default_deny")]
    outside_new: Spanned<String>,
    #[serde(default = "default_drop")]
    invalid: Spanned<String>,
}

fn default_deny() -> Spanned<String> {
    Spanned::new(0..0, "deny".into())
}
fn default_drop() -> Spanned<String> {
    Spanned::new(0..0, "drop".into())
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy {
            outside_new: default_deny(),
            invalid: default_drop(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    default: u32,
    #[serde(default)]
    zones: Vec<RawZoneLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZoneLimit {
    zone: Spanned<u16>,
    limit: u32,
}

macro_rules! timeout_structs {
    // The accessors both the global and the per-zone tables have.
    (@methods $t:ident; $($f:ident),*) => {
        impl $t {
            fn values(&self) -> Vec<(TimeoutAttr, u32)> {
                let mut v = Vec::new();
                $( if let Some(x) = &self.$f {
                    v.push((TimeoutAttr::from_name(stringify!($f)).expect("known attribute"), *x.get_ref()));
                } )*
                v
            }

            /// The first timeout set to 0, with its span.
            fn zero(&self) -> Option<(&'static str, std::ops::Range<usize>)> {
                $( if let Some(x) = &self.$f {
                    if *x.get_ref() == 0 {
                        return Some((stringify!($f), x.span()));
                    }
                } )*
                None
            }
        }
    };
    ($($f:ident),*) => {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct RawTimeouts {
            $( $f: Option<Spanned<u32>>, )*
            #[serde(default)]
            zone: Vec<RawZoneTimeouts>,
        }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawZoneTimeouts {
            zone: u16,
            $( $f: Option<Spanned<u32>>, )*
        }

        timeout_structs!(@methods RawTimeouts; $($f),*);
        timeout_structs!(@methods RawZoneTimeouts; $($f),*);
    };
}

timeout_structs!(
    tcp_syn_sent,
    tcp_syn_recv,
    tcp_established,
    tcp_fin_wait,
    tcp_time_wait,
    tcp_close,
    udp_first,
    udp_single,
    udp_multiple,
    icmp_first,
    icmp_reply
);

/// Turns byte offsets into line numbers.
struct Lines<'a> {
    text: &'a str,
    file: &'a str,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> Option<usize> {
        if offset == 0 && self.text.is_empty() {
            return None;
        }
        Some(
            self.text[..offset.min(self.text.len())]
                .matches('\n')
                .count()
                + 1,
        )
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: String,
        message: String,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_string(),
            line: if span == (0..0) {
                None
            } else {
                self.line_of(span.start)
            },
            field: Some(field),
            message,
        })
    }
}

/// The field path (`datapath.max_conns`, `port[1].ipv4`) of a `key = value` at 1-based
/// `line`, from the table headers above it; `None` when the line holds no key.
fn field_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let key = here.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    // The table the key is in, and for an array of tables the element index.
    let mut table: Option<(String, bool)> = None;
    for l in lines[..line - 1].iter().rev() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            table = Some((name.trim().to_string(), true));
            break;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = Some((name.trim().to_string(), false));
            break;
        }
    }
    Some(match table {
        None => key.to_string(),
        Some((name, false)) => format!("{name}.{key}"),
        Some((name, true)) => {
            let header = format!("[[{name}]]");
            let index = lines[..line - 1]
                .iter()
                .filter(|l| l.trim().starts_with(&header))
                .count()
                .saturating_sub(1);
            format!("{name}[{index}].{key}")
        }
    })
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl Config {
    /// The MTU of DPDK port `id`: the largest `mtu` of its interfaces (its untagged one
    /// and its VLAN sub-interfaces); the default when it has none.
    pub fn port_mtu(&self, id: u16) -> u16 {
        self.ports
            .iter()
            .filter(|p| p.port == id)
            .map(|p| p.mtu)
            .max()
            .unwrap_or(MTU_DEFAULT)
    }

    /// The embedded default configuration.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let error = |message: String| ConfigError {
            file: name.clone(),
            line: None,
            field: None,
            message,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, MAX_CONFIG_BYTES + 1),
                    &mut bytes,
                )
            })
            .map_err(|e| error(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(error(format!(
                "larger than {} MiB, the most a configuration file may be (not read further)",
                MAX_CONFIG_BYTES >> 20
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            error(format!(
                "not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Config::parse(&text, &name)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let lines = Lines { text, file };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().and_then(|s| lines.line_of(s.start));
            ConfigError {
                file: file.to_string(),
                line,
                field: line.and_then(|l| field_at_line(text, l)),
                message: e.message().trim().to_string(),
            }
        })?;
        validate(raw, &lines)
    }

    /// The untagged interface of DPDK port `id` (or, on a port with only VLAN
    /// sub-interfaces, its first one).
    pub fn port(&self, id: u16) -> Option<&PortConfig> {
        self.ports
            .iter()
            .find(|p| p.port == id && p.vlan.is_none())
            .or_else(|| self.ports.iter().find(|p| p.port == id))
    }

    /// The DPDK ports the configuration uses, each once, in order of first mention.
    pub fn port_ids(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = Vec::new();
        for p in &self.ports {
            if !ids.contains(&p.port) {
                ids.push(p.port);
            }
        }
        ids
    }
}

fn validate(raw: RawConfig, lines: &Lines) -> Result<Config, ConfigError> {
    let d = &raw.datapath;
    if *d.max_conns.get_ref() == 0 || *d.max_conns.get_ref() >= 1 << 30 {
        return lines.err(
            d.max_conns.span(),
            "datapath.max_conns".into(),
            format!(
                "{} is out of range (1 to {})",
                d.max_conns.get_ref(),
                (1u32 << 30) - 1
            ),
        );
    }
    let b = *d.buckets.get_ref();
    if b != 0 && !b.is_power_of_two() {
        return lines.err(
            d.buckets.span(),
            "datapath.buckets".into(),
            format!("{b} is not a power of two (or 0 for automatic)"),
        );
    }
    let need = crate::conntrack::table::memory_needed(*d.max_conns.get_ref(), b);
    if let Some(avail) = available_memory() {
        if need > avail {
            return lines.err(
                d.max_conns.span(),
                "datapath.max_conns".into(),
                format!(
                    "needs {} for {} connections, only {} available (MemAvailable)",
                    gib(need),
                    d.max_conns.get_ref(),
                    gib(avail)
                ),
            );
        }
    }
    if *d.sweep_interval_ms.get_ref() == 0 {
        return lines.err(
            d.sweep_interval_ms.span(),
            "datapath.sweep_interval_ms".into(),
            "must be at least 1".into(),
        );
    }
    let datapath = Datapath {
        max_conns: *d.max_conns.get_ref(),
        buckets: b,
        tcp_seq_check: d.tcp_seq_check,
        sweep_interval_ms: *d.sweep_interval_ms.get_ref(),
    };

    if raw.ports.is_empty() {
        return Err(ConfigError {
            file: lines.file.into(),
            line: None,
            field: Some("port".into()),
            message: "no [[port]] configured (need at least one inside and one outside port)"
                .into(),
        });
    }
    let mut ports: Vec<PortConfig> = Vec::new();
    let mut port_lines = Vec::new();
    for (i, p) in raw.ports.iter().enumerate() {
        port_lines.push(lines.line_of(p.port.span().start));
        let f = |n: &str| format!("port[{i}].{n}");
        let id = *p.port.get_ref();
        let vlan = p.vlan.as_ref().map(|v| *v.get_ref());
        if let Some(v) = &p.vlan {
            if !(1..=4094).contains(v.get_ref()) {
                return lines.err(
                    v.span(),
                    f("vlan"),
                    format!("VLAN id {} is out of range (1 to 4094)", v.get_ref()),
                );
            }
        }
        if ports.iter().any(|q| q.port == id && q.vlan == vlan) {
            let (span, msg) = match (&p.vlan, vlan) {
                (Some(s), Some(v)) => (s.span(), format!("port {id} vlan {v} is configured twice")),
                _ => (p.port.span(), format!("port {id} is configured twice")),
            };
            return lines.err(span, f(if vlan.is_some() { "vlan" } else { "port" }), msg);
        }
        let role = match p.role.get_ref().as_str() {
            "inside" => Role::Inside,
            "outside" => Role::Outside,
            other => {
                return lines.err(
                    p.role.span(),
                    f("role"),
                    format!("unknown role '{other}' (expected \"inside\" or \"outside\")"),
                )
            }
        };
        let ipv4 = match &p.ipv4 {
            None => None,
            Some(s) => match s.get_ref().parse::<Prefix>() {
                Ok(Prefix {
                    addr: IpAddr::V4(a),
                    len,
                }) => Some((a, len)),
                Ok(_) => {
                    return lines.err(
                        s.span(),
                        f("ipv4"),
                        format!("'{}' is not an IPv4 prefix", s.get_ref()),
                    )
                }
                Err(e) => return lines.err(s.span(), f("ipv4"), e),
            },
        };
        let ipv6 = match &p.ipv6 {
            None => None,
            Some(s) => match s.get_ref().parse::<Prefix>() {
                Ok(Prefix {
                    addr: IpAddr::V6(a),
                    len,
                }) => Some((a, len)),
                Ok(_) => {
                    return lines.err(
                        s.span(),
                        f("ipv6"),
                        format!("'{}' is not an IPv6 prefix", s.get_ref()),
                    )
                }
                Err(e) => return lines.err(s.span(), f("ipv6"), e),
            },
        };
        if ipv4.is_none() && ipv6.is_none() {
            return lines.err(
                p.port.span(),
                f("ipv4"),
                "a port needs an ipv4 or ipv6 address".into(),
            );
        }
        let next_hop_mac = match &p.next_hop_mac {
            None => None,
            Some(s) => match parse_mac(s.get_ref()) {
                Some(m) => Some(m),
                None => {
                    return lines.err(
                        s.span(),
                        f("next_hop_mac"),
                        format!("invalid MAC address '{}'", s.get_ref()),
                    )
                }
            },
        };
        let new_prefixes: Vec<(Prefix, std::ops::Range<usize>, &str)> = [
            ipv4.map(|(a, len)| (IpAddr::V4(a), len, &p.ipv4, "ipv4")),
            ipv6.map(|(a, len)| (IpAddr::V6(a), len, &p.ipv6, "ipv6")),
        ]
        .into_iter()
        .flatten()
        .filter_map(|(addr, len, s, name)| {
            s.as_ref().map(|s| (Prefix { addr, len }, s.span(), name))
        })
        .collect();
        for (pre, span, name) in &new_prefixes {
            for (j, q) in ports.iter().enumerate() {
                if let Some(c) = q.connected().into_iter().find(|c| prefixes_overlap(c, pre)) {
                    return lines.err(
                        span.clone(),
                        f(name),
                        format!(
                            "{pre} overlaps port[{j}]'s {c}: each interface needs its own network"
                        ),
                    );
                }
            }
        }
        let ranged = |v: &Option<Spanned<i64>>, name: &str, lo: u32, hi: u32, default: u32| match v
        {
            None => Ok(default),
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => lines.err(
                    v.span(),
                    f(name),
                    format!("{} is out of range ({lo} to {hi})", v.get_ref()),
                ),
            },
        };
        let mtu = ranged(
            &p.mtu,
            "mtu",
            u32::from(MTU_MIN),
            u32::from(MTU_MAX),
            u32::from(MTU_DEFAULT),
        )? as u16;
        let icmp_rate = ranged(
            &p.icmp_rate,
            "icmp_rate",
            0,
            ICMP_RATE_MAX,
            ICMP_RATE_DEFAULT,
        )?;
        let icmp_burst = ranged(
            &p.icmp_burst,
            "icmp_burst",
            1,
            ICMP_BURST_MAX,
            ICMP_BURST_DEFAULT,
        )?;
        ports.push(PortConfig {
            port: id,
            vlan,
            role,
            ipv4,
            ipv6,
            zone: p.zone.as_ref().map(|z| *z.get_ref()).unwrap_or(u16::MAX),
            next_hop_mac,
            mss_clamp: match &p.mss_clamp {
                None => None,
                Some(v) => match v.get_ref() {
                    toml::Value::String(s) if s == "auto" => Some(MssClamp::Auto),
                    toml::Value::Integer(n) if (536..=65_535).contains(n) => {
                        Some(MssClamp::Fixed(*n as u16))
                    }
                    other => {
                        return lines.err(
                            v.span(),
                            f("mss_clamp"),
                            format!("{other} is not \"auto\" or an MSS from 536 to 65535"),
                        )
                    }
                },
            },
            mtu,
            icmp_rate,
            icmp_burst,
        });
    }
    let first_inside_zone = ports
        .iter()
        .find(|p| p.role == Role::Inside)
        .map(|p| p.zone);
    let Some(inside_zone) = first_inside_zone else {
        return Err(ConfigError {
            file: lines.file.into(),
            line: None,
            field: Some("port".into()),
            message: "no port has role \"inside\"".into(),
        });
    };
    if !ports.iter().any(|p| p.role == Role::Outside) {
        return Err(ConfigError {
            file: lines.file.into(),
            line: None,
            field: Some("port".into()),
            message: "no port has role \"outside\"".into(),
        });
    }
    // Zones: inside ports default to zone 0; outside ports to the first inside port's zone,
    // so replies are looked up where their connections live.
    let inside_zone = if inside_zone == u16::MAX {
        0
    } else {
        inside_zone
    };
    for p in ports.iter_mut() {
        if p.zone == u16::MAX {
            p.zone = if p.role == Role::Inside {
                0
            } else {
                inside_zone
            };
        }
    }

    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let prefix: Prefix = match r.prefix.get_ref().parse() {
            Ok(p) => p,
            Err(e) => return lines.err(r.prefix.span(), format!("route[{i}].prefix"), e),
        };
        let via: IpAddr = match r.via.get_ref().parse() {
            Ok(v) => v,
            Err(_) => {
                return lines.err(
                    r.via.span(),
                    format!("route[{i}].via"),
                    format!("invalid address '{}'", r.via.get_ref()),
                )
            }
        };
        if via.is_ipv4() != prefix.addr.is_ipv4() {
            return lines.err(
                r.via.span(),
                format!("route[{i}].via"),
                format!("next hop {via} is not of the prefix's address family"),
            );
        }
        let Some(port) = ports
            .iter()
            .find(|p| p.connected().iter().any(|c| c.contains(via)))
        else {
            return lines.err(
                r.via.span(),
                format!("route[{i}].via"),
                format!("next hop {via} is not on any port's connected network"),
            );
        };
        routes.push(Route {
            prefix,
            via,
            port: port.port,
        });
    }

    let mut snat: Vec<NatRange> = Vec::new();
    for (i, s) in raw.snat.iter().enumerate() {
        let field = format!("snat[{i}].pool");
        let r = match s.pool.get_ref().parse::<NatRange>() {
            Ok(r) => r,
            Err(e) => return lines.err(s.pool.span(), field, e.0),
        };
        let (lo, hi) = (nat_addr(&r, &r.addr_min), nat_addr(&r, &r.addr_max));
        let all = if r.family == 4 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if lo == 0 && hi == all {
            return lines.err(
                s.pool.span(),
                field,
                "covers the whole address space: a pool is addresses of the gateway's own".into(),
            );
        }
        for (j, q) in ports.iter().enumerate() {
            if q.role != Role::Inside {
                continue;
            }
            if let Some(c) = q.connected().into_iter().find(|c| {
                let (cl, ch) = prefix_bounds(c);
                c.addr.is_ipv4() == (r.family == 4) && lo <= ch && cl <= hi
            }) {
                return lines.err(
                    s.pool.span(),
                    field,
                    format!("lies in the inside network {c} of port[{j}]: a pool must be outside addresses"),
                );
            }
        }
        if let Some(j) = snat.iter().position(|o| {
            o.family == r.family
                && nat_addr(o, &o.addr_min) <= hi
                && lo <= nat_addr(o, &o.addr_max)
                && ports_overlap(o.ports, r.ports)
        }) {
            return lines.err(
                s.pool.span(),
                field,
                format!("overlaps snat[{j}].pool '{}'", raw.snat[j].pool.get_ref()),
            );
        }
        snat.push(r);
    }
    let mut dnat = Vec::new();
    for (i, r) in raw.dnat.iter().enumerate() {
        let proto = match r.proto.get_ref().as_str() {
            "tcp" => 6,
            "udp" => 17,
            other => {
                return lines.err(
                    r.proto.span(),
                    format!("dnat[{i}].proto"),
                    format!("unknown protocol '{other}' (expected \"tcp\" or \"udp\")"),
                )
            }
        };
        let m: NatRange = match r.matches.get_ref().parse() {
            Ok(m) => m,
            Err(e) => return lines.err(r.matches.span(), format!("dnat[{i}].match"), e.0),
        };
        let (Some((mp, mp2)), true) = (m.ports, m.addr_min == m.addr_max) else {
            return lines.err(
                r.matches.span(),
                format!("dnat[{i}].match"),
                format!("'{}' must be one ADDRESS:PORT", r.matches.get_ref()),
            );
        };
        if mp != mp2 {
            return lines.err(
                r.matches.span(),
                format!("dnat[{i}].match"),
                format!("'{}' must be one ADDRESS:PORT", r.matches.get_ref()),
            );
        }
        let to: NatRange = match r.to.get_ref().parse() {
            Ok(t) => t,
            Err(e) => return lines.err(r.to.span(), format!("dnat[{i}].to"), e.0),
        };
        if to.family != m.family {
            return lines.err(
                r.to.span(),
                format!("dnat[{i}].to"),
                "target and match are of different address families".into(),
            );
        }
        let match_addr = crate::conntrack::key::addr_to_ip(m.family, &m.addr_min);
        if let Some(j) = dnat.iter().position(|d: &DnatRule| {
            d.proto == proto && d.match_addr == match_addr && d.match_port == mp
        }) {
            return lines.err(
                r.matches.span(),
                format!("dnat[{i}].match"),
                format!("'{}' is already matched by dnat[{j}]", r.matches.get_ref()),
            );
        }
        dnat.push(DnatRule {
            proto,
            match_addr: crate::conntrack::key::addr_to_ip(m.family, &m.addr_min),
            match_port: mp,
            to,
        });
    }

    let alg = validate_alg(&raw.alg, lines)?;

    let outside_new_allow = match raw.policy.outside_new.get_ref().as_str() {
        "deny" => false,
        "allow" => true,
        o => {
            return lines.err(
                raw.policy.outside_new.span(),
                "policy.outside_new".into(),
                format!("unknown value '{o}' (expected \"deny\" or \"allow\")"),
            )
        }
    };
    let invalid_allow = match raw.policy.invalid.get_ref().as_str() {
        "drop" => false,
        "allow" => true,
        o => {
            return lines.err(
                raw.policy.invalid.span(),
                "policy.invalid".into(),
                format!("unknown value '{o}' (expected \"drop\" or \"allow\")"),
            )
        }
    };

    for (i, z) in raw.limits.zones.iter().enumerate() {
        if let Some(j) = raw.limits.zones[..i]
            .iter()
            .position(|o| o.zone.get_ref() == z.zone.get_ref())
        {
            return lines.err(
                z.zone.span(),
                format!("limits.zones[{i}].zone"),
                format!(
                    "zone {} already has a limit (limits.zones[{j}])",
                    z.zone.get_ref()
                ),
            );
        }
    }
    if let Some((name, span)) = raw.timeouts.zero() {
        return lines.err(
            span,
            format!("timeouts.{name}"),
            "must be at least 1 second".into(),
        );
    }
    for (i, z) in raw.timeouts.zone.iter().enumerate() {
        if let Some((name, span)) = z.zero() {
            return lines.err(
                span,
                format!("timeouts.zone[{i}].{name}"),
                "must be at least 1 second".into(),
            );
        }
    }

    let fragments = validate_fragments(&raw.fragments, lines)?;
    let metrics_listen = match &raw.metrics.listen {
        None => None,
        Some(l) => match l.get_ref().parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                return lines.err(
                    l.span(),
                    "metrics.listen".into(),
                    format!(
                        "invalid address '{}' (expected ADDRESS:PORT, e.g. \"127.0.0.1:9464\")",
                        l.get_ref()
                    ),
                )
            }
        },
    };
    let logging = logging::validate_logging(&raw.logging, lines)?;
    let sync = sync::validate_sync(&raw.sync, lines)?;
    let nat_filtering =
        parse_filtering(&raw.nat.filtering, "nat.filtering".into(), lines)?.unwrap_or_default();
    let mut snat_filtering = Vec::new();
    for (i, s) in raw.snat.iter().enumerate() {
        snat_filtering.push(
            parse_filtering(&s.filtering, format!("snat[{i}].filtering"), lines)?
                .unwrap_or(nat_filtering),
        );
    }

    Ok(Config {
        source: lines.file.to_string(),
        datapath,
        ports,
        routes,
        snat,
        dnat,
        alg,
        policy: Policy {
            outside_new_allow,
            invalid_allow,
        },
        default_limit: raw.limits.default,
        zone_limits: raw
            .limits
            .zones
            .iter()
            .map(|z| (*z.zone.get_ref(), z.limit))
            .collect(),
        timeouts: raw.timeouts.values(),
        zone_timeouts: raw
            .timeouts
            .zone
            .iter()
            .map(|z| (z.zone, z.values()))
            .collect(),
        fragments,
        port_lines,
        snat_filtering,
        metrics_listen,
        logging,
        sync,
    })
}

/// The kernel's estimate of memory available for new allocations (`MemAvailable` in
/// `/proc/meminfo`), in bytes; `None` when unknown.
/// `[[alg]]` entries: a known helper, a port from 1, no two rules for one protocol and
/// port, at most [`MAX_HELPER_RULES`].
fn validate_alg(raw: &[RawAlg], lines: &Lines) -> Result<Vec<(Helper, u16)>, ConfigError> {
    let mut out: Vec<(Helper, u16)> = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let Some(h) = Helper::from_name(a.helper.get_ref()) else {
            return lines.err(
                a.helper.span(),
                format!("alg[{i}].helper"),
                format!(
                    "unknown helper '{}' (expected \"ftp\" or \"tftp\")",
                    a.helper.get_ref()
                ),
            );
        };
        let port = *a.port.get_ref();
        if port == 0 {
            return lines.err(
                a.port.span(),
                format!("alg[{i}].port"),
                "0 is out of range (1 to 65535)".into(),
            );
        }
        if let Some(j) = out
            .iter()
            .position(|&(o, p)| p == port && o.proto() == h.proto())
        {
            return lines.err(
                a.port.span(),
                format!("alg[{i}].port"),
                format!(
                    "{} port {port} already has a helper (alg[{j}])",
                    crate::conntrack::format::proto_name(h.proto())
                ),
            );
        }
        if out.len() >= MAX_HELPER_RULES {
            return lines.err(
                a.helper.span(),
                format!("alg[{i}]"),
                format!("more than {MAX_HELPER_RULES} [[alg]] rules"),
            );
        }
        out.push((h, port));
    }
    Ok(out)
}

fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Bytes as GiB with one decimal (`33.2 GiB`).
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// A NAT range address as a number (IPv4 in the low 32 bits).
fn nat_addr(r: &NatRange, a: &[u8; 16]) -> u128 {
    ip_number(crate::conntrack::key::addr_to_ip(r.family, a))
}

fn ip_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The first and last address of a prefix, as numbers.
fn prefix_bounds(p: &Prefix) -> (u128, u128) {
    let bits = if p.addr.is_ipv4() { 32 } else { 128 };
    let host = u32::from(bits - p.len.min(bits));
    let span = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    let lo = ip_number(p.addr) & !span;
    (lo, lo | span)
}

fn prefixes_overlap(a: &Prefix, b: &Prefix) -> bool {
    a.addr.is_ipv4() == b.addr.is_ipv4() && (a.contains(b.addr) || b.contains(a.addr))
}

/// Port ranges intersect (`None`: any port).
fn ports_overlap(a: Option<(u16, u16)>, b: Option<(u16, u16)>) -> bool {
    let (a, b) = (a.unwrap_or((0, u16::MAX)), b.unwrap_or((0, u16::MAX)));
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_the_documented_gateway() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.ports.len(), 2);
        let inside = c.port(0).unwrap();
        assert_eq!(inside.role, Role::Inside);
        assert_eq!(inside.ipv4, Some(("10.0.0.1".parse().unwrap(), 24)));
        assert_eq!(inside.ipv6, Some(("fd00:0:0:1::1".parse().unwrap(), 64)));
        assert_eq!(inside.zone, 1);
        let outside = c.port(1).unwrap();
        assert_eq!(outside.role, Role::Outside);
        assert_eq!(outside.ipv4, Some(("192.0.2.1".parse().unwrap(), 24)));
        assert_eq!(outside.zone, 1, "replies are looked up in the inside zone");
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].via, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(c.routes[0].port, 1);
        assert_eq!(c.routes[1].via, "fd00:0:0:2::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.snat.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ["192.0.2.1", "[fd00:0:0:2::1]"]
        );
        assert!(c.dnat.is_empty());
        assert_eq!(c.alg, vec![(Helper::Ftp, 21), (Helper::Tftp, 69)]);
        assert!(!c.policy.outside_new_allow);
        assert!(!c.policy.invalid_allow);
        assert_eq!(c.datapath.max_conns, 3_000_000);
        assert_eq!(c.datapath.sweep_interval_ms, 20_000);
    }

    #[test]
    fn nat_filtering_is_read_globally_and_per_snat_rule() {
        assert_eq!(
            Config::embedded().unwrap().snat_filtering,
            [Filtering::AddressPortDependent; 2]
        );
        let c = Config::parse(
            &format!("{PORTS}[nat]\nfiltering = \"endpoint-independent\"\n[[snat]]\npool = \"192.0.2.1\"\n[[snat]]\npool = \"[fd00::1]\"\nfiltering = \"address-dependent\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            c.snat_filtering,
            [Filtering::EndpointIndependent, Filtering::AddressDependent]
        );
        assert_eq!(
            err(&format!("{PORTS}[nat]\nfiltering = \"full-cone\"\n")),
            "t.toml:10: nat.filtering: unknown value 'full-cone' (expected \"address-port-dependent\", \"address-dependent\" or \"endpoint-independent\")"
        );
    }

    #[test]
    fn embedded_default_sets_the_nat_rfcs_timeouts() {
        let c = Config::embedded().unwrap();
        let get = |a: TimeoutAttr| {
            c.timeouts
                .iter()
                .find(|(x, _)| *x == a)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| a.default_secs())
        };
        // RFC 4787 REQ-5: UDP mappings at least 2 min (5 min recommended, used once both
        // directions were seen).
        assert!(get(TimeoutAttr::UdpFirst) >= 120);
        assert!(get(TimeoutAttr::UdpSingle) >= 120);
        assert!(get(TimeoutAttr::UdpMultiple) >= 300);
        // RFC 5508 REQ-2: ICMP query mappings at least 60 s.
        assert!(get(TimeoutAttr::IcmpFirst) >= 60);
        assert!(get(TimeoutAttr::IcmpReply) >= 60);
        // RFC 5382 REQ-5: established at least 2 h 4 min, transitory at least 4 min.
        assert!(get(TimeoutAttr::TcpEstablished) >= 2 * 3600 + 4 * 60);
        for a in [
            TimeoutAttr::TcpSynSent,
            TimeoutAttr::TcpSynRecv,
            TimeoutAttr::TcpFinWait,
            TimeoutAttr::TcpTimeWait,
            TimeoutAttr::TcpClose,
        ] {
            assert!(get(a) >= 240, "{}", a.name());
        }
        // The tracker's own defaults stay Open vSwitch's.
        assert_eq!(TimeoutAttr::UdpMultiple.default_secs(), 30);
        assert_eq!(TimeoutAttr::IcmpReply.default_secs(), 30);
    }

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    const PORTS: &str = "[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\n[[port]]\nport = 1\nrole = \"outside\"\nipv4 = \"192.0.2.1/24\"\n";

    #[test]
    fn broken_configs_name_file_line_and_field() {
        assert!(Config::parse(PORTS, "t.toml").is_ok());
        let cases: &[(&str, &str)] = &[
            ("[datapath]\nbogus = 1\n", "t.toml:2: datapath.bogus: unknown field `bogus`"),
            ("[datapath]\nmax_conns = \"many\"\n", "t.toml:2: datapath.max_conns: invalid type: string \"many\", expected u32"),
            ("[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\n[[port]]\nport = \"one\"\n", "t.toml:6: port[1].port: invalid type: string \"one\", expected u16"),
            ("[datapath]\nbuckets = 1000\n", "t.toml:2: datapath.buckets: 1000 is not a power of two (or 0 for automatic)"),
            ("[datapath]\nmax_conns = 0\n", "t.toml:2: datapath.max_conns: 0 is out of range (1 to 1073741823)"),
            ("[[port]]\nport = 0\nrole = \"middle\"\nipv4 = \"10.0.0.1/24\"\n", "t.toml:3: port[0].role: unknown role 'middle' (expected \"inside\" or \"outside\")"),
            ("[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/33\"\n", "t.toml:4: port[0].ipv4: invalid prefix '10.0.0.1/33' (length 33 > 32)"),
            ("[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\n", "t.toml: port: no port has role \"outside\""),
            ("", "t.toml: port: no [[port]] configured (need at least one inside and one outside port)"),
            ("[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"203.0.113.1\"\n", "t.toml:11: route[0].via: next hop 203.0.113.1 is not on any port's connected network"),
            ("[[snat]]\npool = \"192.0.2.1:0\"\n", "t.toml:10: snat[0].pool: invalid port range '0' in NAT range '192.0.2.1:0'"),
            ("[policy]\noutside_new = \"maybe\"\n", "t.toml:10: policy.outside_new: unknown value 'maybe' (expected \"deny\" or \"allow\")"),
            ("[timeouts]\nudp_frist = 1\n", "t.toml:10: timeouts.udp_frist: unknown field `udp_frist`"),
            ("[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1\"\nto = \"10.0.0.5:80\"\n", "t.toml:11: dnat[0].match: '192.0.2.1' must be one ADDRESS:PORT"),
            ("[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\nnext_hop_mac = \"zz\"\n", "t.toml:5: port[0].next_hop_mac: invalid MAC address 'zz'"),
            ("[[alg]]\nhelper = \"sip\"\nport = 5060\n", "t.toml:10: alg[0].helper: unknown helper 'sip' (expected \"ftp\" or \"tftp\")"),
            ("[[alg]]\nhelper = \"ftp\"\nport = 0\n", "t.toml:11: alg[0].port: 0 is out of range (1 to 65535)"),
            ("[[alg]]\nhelper = \"ftp\"\nport = 70000\n", "t.toml:11: alg[0].port: invalid value"),
            ("[[alg]]\nhelper = \"ftp\"\nport = 21\n[[alg]]\nhelper = \"ftp\"\nport = 21\n", "t.toml:14: alg[1].port: tcp port 21 already has a helper (alg[0])"),
            ("[[alg]]\nhelper = \"ftp\"\nbogus = 21\n", "t.toml:11: alg[0].bogus: unknown field `bogus`"),
        ];
        for (text, want) in cases {
            // Cases that are about ports stand alone; the others come after valid ports.
            let full = if text.starts_with("[[port]]")
                || text.is_empty()
                || text.starts_with("[datapath]")
            {
                text.to_string()
            } else {
                format!("{PORTS}{text}")
            };
            let got = err(&full);
            assert!(
                got.starts_with(want),
                "config:\n{full}\nwant: {want}\ngot:  {got}"
            );
        }
    }

    /// Accepted silently before: each is refused with its line and field.
    #[test]
    fn conflicting_or_empty_settings_are_refused_with_their_line() {
        let dnat = "[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:80\"\nto = \"10.0.0.5:80\"\n";
        let cases: &[(String, &str)] = &[
            (
                format!("{PORTS}[[snat]]\npool = \"192.0.2.1-192.0.2.5\"\n[[snat]]\npool = \"192.0.2.3-192.0.2.9\"\n"),
                "t.toml:12: snat[1].pool: overlaps snat[0].pool '192.0.2.1-192.0.2.5'",
            ),
            (
                format!("{PORTS}[[snat]]\npool = \"192.0.2.1:1024-2047\"\n[[snat]]\npool = \"192.0.2.1:2000-3000\"\n"),
                "t.toml:12: snat[1].pool: overlaps snat[0].pool '192.0.2.1:1024-2047'",
            ),
            (
                format!("{PORTS}[[snat]]\npool = \"10.0.0.5\"\n"),
                "t.toml:10: snat[0].pool: lies in the inside network 10.0.0.1/24 of port[0]",
            ),
            (
                format!("{PORTS}[[snat]]\npool = \"0.0.0.0-255.255.255.255\"\n"),
                "t.toml:10: snat[0].pool: covers the whole address space",
            ),
            (
                format!("{PORTS}{dnat}{dnat}"),
                "t.toml:15: dnat[1].match: '192.0.2.1:80' is already matched by dnat[0]",
            ),
            (
                format!("{PORTS}[limits]\nzones = [{{ zone = 3, limit = 2 }},\n  {{ zone = 3, limit = 5 }}]\n"),
                "t.toml:11: limits.zones[1].zone: zone 3 already has a limit (limits.zones[0])",
            ),
            (
                format!("{PORTS}[[port]]\nport = 2\nrole = \"inside\"\nipv4 = \"10.0.0.9/16\"\n"),
                "t.toml:12: port[2].ipv4: 10.0.0.9/16 overlaps port[0]'s 10.0.0.1/24",
            ),
            (
                format!("{PORTS}[timeouts]\nudp_first = 0\n"),
                "t.toml:10: timeouts.udp_first: must be at least 1 second",
            ),
            (
                format!("{PORTS}[[timeouts.zone]]\nzone = 1\ntcp_established = 0\n"),
                "t.toml:11: timeouts.zone[0].tcp_established: must be at least 1 second",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(
                got.starts_with(want),
                "config:\n{text}\nwant: {want}\ngot:  {got}"
            );
        }
        // Disjoint pools and port ranges of one address are fine.
        let ok = format!("{PORTS}[[snat]]\npool = \"192.0.2.1:1024-2047\"\n[[snat]]\npool = \"192.0.2.1:2048-3000\"\n[[snat]]\npool = \"192.0.2.7\"\n");
        assert!(Config::parse(&ok, "t.toml").is_ok());
    }

    #[test]
    fn a_table_larger_than_the_memory_available_is_refused_with_the_figures() {
        let text = format!("[datapath]\nmax_conns = 1073741823\n{PORTS}");
        let need = crate::conntrack::table::memory_needed((1 << 30) - 1, 0);
        let avail = available_memory().expect("/proc/meminfo has MemAvailable");
        assert!(need > 100 << 30, "{need}");
        if avail < need {
            let got = err(&text);
            assert!(
                got.starts_with(&format!(
                    "t.toml:2: datapath.max_conns: needs {} for 1073741823 connections, only ",
                    gib(need)
                )) && got.ends_with(" GiB available (MemAvailable)"),
                "{got}"
            );
        }
    }

    #[test]
    fn vlan_sub_interfaces_are_their_own_interfaces_on_one_port() {
        let text = format!(
            "{PORTS}[[port]]\nport = 0\nvlan = 10\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\nzone = 5\n[[port]]\nport = 0\nvlan = 20\nrole = \"outside\"\nipv6 = \"fd00:20::1/64\"\n"
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.ports.len(), 4);
        let v10 = &c.ports[2];
        assert_eq!(
            (v10.port, v10.vlan, v10.role, v10.zone),
            (0, Some(10), Role::Inside, 5)
        );
        assert_eq!(v10.ipv4, Some(("10.0.10.1".parse().unwrap(), 24)));
        assert_eq!(
            (c.ports[3].vlan, c.ports[3].role),
            (Some(20), Role::Outside)
        );
        assert_eq!(c.ports[0].vlan, None);
        assert_eq!(c.port_ids(), [0, 1]);
        assert_eq!(
            c.port(0).unwrap().vlan,
            None,
            "port(id) is the untagged one"
        );
    }

    #[test]
    fn bad_vlan_sub_interfaces_name_file_line_and_field() {
        for (extra, want) in [
            ("[[port]]\nport = 0\nvlan = 0\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\n", "t.toml:11: port[2].vlan: VLAN id 0 is out of range (1 to 4094)"),
            ("[[port]]\nport = 0\nvlan = 4095\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\n", "t.toml:11: port[2].vlan: VLAN id 4095 is out of range (1 to 4094)"),
            ("[[port]]\nport = 0\nvlan = 7\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\n[[port]]\nport = 0\nvlan = 7\nrole = \"inside\"\nipv4 = \"10.0.11.1/24\"\n", "t.toml:16: port[3].vlan: port 0 vlan 7 is configured twice"),
            ("[[port]]\nport = 1\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\n", "t.toml:10: port[2].port: port 1 is configured twice"),
        ] {
            let got = Config::parse(&format!("{PORTS}{extra}"), "t.toml")
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert_eq!(got, want, "{extra}");
        }
    }

    #[test]
    fn alg_rules_allow_non_standard_ports_and_one_port_for_both_protocols() {
        let c = Config::parse(
            &format!("{PORTS}[[alg]]\nhelper = \"ftp\"\nport = 2121\n[[alg]]\nhelper = \"tftp\"\nport = 2121\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.alg, vec![(Helper::Ftp, 2121), (Helper::Tftp, 2121)]);
        // A file without [[alg]] has no helper (only the embedded default turns them on).
        assert!(Config::parse(PORTS, "t.toml").unwrap().alg.is_empty());
    }

    #[test]
    fn timeouts_limits_and_dnat_are_read() {
        let text = format!(
            "{PORTS}[limits]\ndefault = 10\nzones = [{{ zone = 1, limit = 5 }}]\n[timeouts]\nudp_first = 7\n[[timeouts.zone]]\nzone = 1\ntcp_established = 3600\n[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:8080\"\nto = \"10.0.0.5:80\"\n"
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.default_limit, 10);
        assert_eq!(c.zone_limits, [(1, 5)]);
        assert_eq!(c.timeouts, [(TimeoutAttr::UdpFirst, 7)]);
        assert_eq!(
            c.zone_timeouts,
            [(1, vec![(TimeoutAttr::TcpEstablished, 3600)])]
        );
        assert_eq!(c.dnat[0].match_port, 8080);
        assert_eq!(c.dnat[0].proto, 6);
        assert_eq!(c.dnat[0].to.to_string(), "10.0.0.5:80");
    }

    #[test]
    fn fragments_section_is_read_with_ovs_defaults() {
        let c = Config::parse(PORTS, "t.toml").unwrap();
        assert_eq!(c.fragments, FragSettings::default());
        assert_eq!(c.fragments.min_frag_v4, 1200);
        let text = format!(
            "{PORTS}[fragments]\nenabled_v4 = false\nmin_frag_v6 = 400\nmax_frags = 5000\ntimeout_ms = 2000\n"
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        assert!(!c.fragments.enabled_v4 && c.fragments.enabled_v6);
        assert_eq!(
            (
                c.fragments.min_frag_v6,
                c.fragments.max_frags,
                c.fragments.timeout_ms
            ),
            (400, 5000, 2000)
        );
    }

    #[test]
    fn fragments_out_of_range_name_the_line_and_field() {
        let lines = PORTS.lines().count();
        for (body, want) in [
            (
                "min_frag_v4 = 399",
                "fragments.min_frag_v4: 399 is out of range (400 to 65535)",
            ),
            (
                "max_frags = 5001",
                "fragments.max_frags: 5001 is out of range (0 to 5000)",
            ),
            (
                "timeout_ms = 0",
                "fragments.timeout_ms: 0 is out of range (1 to 3600000)",
            ),
        ] {
            let text = format!("{PORTS}[fragments]\n{body}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err();
            assert_eq!(e.to_string(), format!("t.toml:{}: {want}", lines + 2));
        }
        let e = Config::parse(&format!("{PORTS}[fragments]\nmtu = 1\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("unknown field `mtu`"), "{e}");
    }

    #[test]
    fn port_mtu_and_icmp_rate_have_linux_defaults_and_ranges_named_by_line() {
        let c = Config::parse(PORTS, "t.toml").unwrap();
        assert_eq!(
            (c.ports[0].mtu, c.ports[0].icmp_rate, c.ports[0].icmp_burst),
            (1500, 1000, 50)
        );
        let with = |extra: &str| {
            Config::parse(
                &PORTS.replacen(
                    "role = \"outside\"",
                    &format!("role = \"outside\"\n{extra}"),
                    1,
                ),
                "t.toml",
            )
        };
        let c = with("mtu = 9000\nicmp_rate = 0\nicmp_burst = 10000").unwrap();
        assert_eq!(
            (c.ports[1].mtu, c.ports[1].icmp_rate, c.ports[1].icmp_burst),
            (9000, 0, 10000)
        );
        assert_eq!(c.ports[0].mtu, 1500);
        let line = PORTS
            .lines()
            .position(|l| l == "role = \"outside\"")
            .unwrap()
            + 2;
        for (extra, msg) in [
            (
                "mtu = 1279",
                "port[1].mtu: 1279 is out of range (1280 to 9000)",
            ),
            (
                "mtu = 9001",
                "port[1].mtu: 9001 is out of range (1280 to 9000)",
            ),
            ("mtu = -1", "port[1].mtu: -1 is out of range (1280 to 9000)"),
            (
                "icmp_rate = 1000001",
                "port[1].icmp_rate: 1000001 is out of range (0 to 1000000)",
            ),
            (
                "icmp_burst = 0",
                "port[1].icmp_burst: 0 is out of range (1 to 10000)",
            ),
        ] {
            let e = with(extra).unwrap_err().to_string();
            assert_eq!(e, format!("t.toml:{line}: {msg}"), "{extra}");
        }
        let e = with("mtu = \"big\"").unwrap_err().to_string();
        assert!(e.contains("mtu"), "{e}");
    }

    #[test]
    fn mss_clamp_is_auto_or_a_number() {
        let with = |v: &str| {
            Config::parse(
                &PORTS.replacen(
                    "role = \"outside\"",
                    &format!("role = \"outside\"\nmss_clamp = {v}"),
                    1,
                ),
                "t.toml",
            )
        };
        let c = with("\"auto\"").unwrap();
        assert_eq!(c.ports[1].mss_clamp, Some(MssClamp::Auto));
        assert_eq!(c.ports[0].mss_clamp, None);
        assert_eq!(
            (
                MssClamp::Auto.max_mss(4, 1500),
                MssClamp::Auto.max_mss(6, 1500)
            ),
            (1460, 1440)
        );
        assert_eq!(
            (
                MssClamp::Auto.max_mss(4, 1280),
                MssClamp::Auto.max_mss(6, 9000)
            ),
            (1240, 8940)
        );
        assert_eq!(MssClamp::Fixed(1400).max_mss(4, 1280), 1400);
        assert_eq!(
            with("1400").unwrap().ports[1].mss_clamp,
            Some(MssClamp::Fixed(1400))
        );
        let e = with("100").unwrap_err().to_string();
        assert!(
            e.contains("port[1].mss_clamp: 100 is not \"auto\" or an MSS from 536 to 65535"),
            "{e}"
        );
    }

    #[test]
    fn prefixes_match_addresses() {
        let p: Prefix = "10.0.0.0/24".parse().unwrap();
        assert!(p.contains("10.0.0.77".parse().unwrap()));
        assert!(!p.contains("10.0.1.1".parse().unwrap()));
        let d: Prefix = "::/0".parse().unwrap();
        assert!(d.contains("2001:db8::1".parse().unwrap()));
        assert!(!d.contains("1.2.3.4".parse().unwrap()));
    }
}
