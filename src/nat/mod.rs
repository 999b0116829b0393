//! Source and destination NAT on top of the tracker's key directionality.
//!
//! A NATed connection is one record whose reply-direction key is the translated tuple: a
//! reply is found with one lookup and un-translated from the same record. This module
//! decides the translated tuple ([`NatSpec`], as the tracker's [`ReplyTuples`]) and
//! rewrites packets to it ([`rewrite`]).
//!
//! # Tuple choice
//!
//! For a new connection with original key `orig`, candidates for the reply key are
//! `orig.reversed()` with, for SNAT, the destination address/port replaced by a pool
//! address/port, and, for DNAT, the source address/port replaced by the target's (for ICMP
//! queries the "port" is the identifier; other protocols are translated by address only):
//!
//! 1. The address is picked by a hash of the client (source address and zone), so a client
//!    keeps its pool address across connections ("persistent" pools); later candidates walk
//!    on to the next addresses of the range.
//! 2. The first candidate keeps the original port if it is inside the port range (with no
//!    range given: SNAT keeps the port if free, else uses 1024–65535; DNAT keeps the
//!    destination port).
//! 3. The next candidates walk the port range from an offset given by a hash of the whole
//!    original tuple, so different connections start at different places.
//!
//! # Ports: what NAT translates is what the tracker keys
//!
//! TCP, UDP and SCTP have ports in the key and get translated ports; ICMP queries their
//! identifier (SNAT only); every other protocol (GRE, ESP, DCCP, UDP-Lite, …) is keyed
//! without ports ([`ConnKey`]) and translated by address only. The two must agree: a port
//! chosen here that the key does not hold would be a phantom, and the reply, looked up
//! without it, would be found under another host's connection. Address-only NAT therefore
//! admits one inside host per server per pool address: the reply tuple (server → pool
//! address) has nothing else to tell two hosts apart, so a second host takes the next
//! address, and is refused (`nat_exhausted`) when the pool has none left for that server.
//!
//! Each candidate is checked with a lock-free lookup of its reply key, and the one that
//! looks free is inserted with both bucket locks held, which re-checks it: two workers can
//! never both take a tuple (see `ConnTable::insert`).
//!
//! Bounded work: when the range holds at most [`EXHAUSTIVE_LIMIT`] (address, port)
//! tuples, every tuple is tried, so a range of N tuples admits exactly N connections;
//! larger ranges are probed for at most [`MAX_PROBES`] candidates (128 consecutive ports,
//! then strides spread over the rest of the range), which bounds the worst case at
//! [`MAX_PROBES`] lookups (≈ 10 µs) for a connection that is refused as `nat_exhausted`.
//! A refused connection disturbs nothing: no record is allocated until a candidate looks
//! free.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alg;
pub mod mapping;
mod mapping_index;
pub mod rewrite;
mod sctp;
#[cfg(test)]
mod tests_tracker;

pub use rewrite::{apply, rewrite_to, RewriteError, Rewritten};

use crate::conntrack::key::{ip_to_addr, is_icmp, ConnKey};
use crate::conntrack::tracker::ReplyTuples;
use crate::conntrack::CtState;
use crate::wire::parse::proto;
use std::fmt;
use std::net::IpAddr;

/// Ranges at most this many tuples are tried exhaustively.
pub const EXHAUSTIVE_LIMIT: u64 = 4096;
/// Candidates tried in larger ranges.
pub const MAX_PROBES: u32 = 256;
/// Consecutive ports tried before striding.
const SEQUENTIAL_PROBES: u64 = 128;

/// An address range with an optional port range (`ADDR[-ADDR][:PORT[-PORT]]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRange {
    /// 4 or 6.
    pub family: u8,
    pub addr_min: [u8; 16],
    pub addr_max: [u8; 16],
    /// Port range; `None` keeps the port (SNAT: if free, else 1024–65535).
    pub ports: Option<(u16, u16)>,
}

/// The NAT to apply to new connections: source, destination, or both (hairpin).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatSpec {
    pub snat: Option<NatRange>,
    pub dnat: Option<NatRange>,
}

/// A NAT range that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatParseError(pub String);

impl fmt::Display for NatParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NatParseError {}

fn parse_port_range(s: &str, whole: &str) -> Result<(u16, u16), NatParseError> {
    let bad = || NatParseError(format!("invalid port range '{s}' in NAT range '{whole}'"));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

impl std::str::FromStr for NatRange {
    type Err = NatParseError;

    /// Parses `ADDR[-ADDR][:PORT[-PORT]]`; IPv6 addresses in brackets
    /// (`[fd00::1]-[fd00::9]:1024-2047`, or `[fd00::1-fd00::9]:80`).
    fn from_str(s: &str) -> Result<NatRange, NatParseError> {
        let whole = s;
        let (addrs, ports) = if s.starts_with('[') {
            // IPv6: "[A]", "[A]-[B]", "[A-B]", each optionally followed by ":P[-P]".
            let close = s
                .rfind(']')
                .ok_or_else(|| NatParseError(format!("missing ']' in NAT range '{whole}'")))?;
            let (a, rest) = s.split_at(close + 1);
            let ports = match rest {
                "" => None,
                r => Some(r.strip_prefix(':').ok_or_else(|| {
                    NatParseError(format!("expected ':PORT' after ']' in NAT range '{whole}'"))
                })?),
            };
            (a.replace(['[', ']'], ""), ports)
        } else {
            match s.split_once(':') {
                Some((a, p)) => (a.to_string(), Some(p)),
                None => (s.to_string(), None),
            }
        };
        let (a, b) = match addrs.split_once('-') {
            Some((a, b)) => (a, b),
            None => (addrs.as_str(), addrs.as_str()),
        };
        let bad_addr =
            |x: &str| NatParseError(format!("invalid address '{x}' in NAT range '{whole}'"));
        let a: IpAddr = a.trim().parse().map_err(|_| bad_addr(a))?;
        let b: IpAddr = b.trim().parse().map_err(|_| bad_addr(b))?;
        let (amin, fa) = ip_to_addr(a);
        let (amax, fb) = ip_to_addr(b);
        if fa != fb {
            return Err(NatParseError(format!(
                "NAT range '{whole}' mixes IPv4 and IPv6"
            )));
        }
        if amin > amax {
            return Err(NatParseError(format!(
                "NAT range '{whole}' ends before it starts"
            )));
        }
        let ports = ports.map(|p| parse_port_range(p, whole)).transpose()?;
        Ok(NatRange {
            family: fa,
            addr_min: amin,
            addr_max: amax,
            ports,
        })
    }
}

impl fmt::Display for NatRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = |a: &[u8; 16]| crate::conntrack::key::addr_to_ip(self.family, a);
        let v6 = self.family == 6;
        let br = |x: IpAddr| if v6 { format!("[{x}]") } else { x.to_string() };
        write!(f, "{}", br(ip(&self.addr_min)))?;
        if self.addr_max != self.addr_min {
            write!(f, "-{}", br(ip(&self.addr_max)))?;
        }
        if let Some((a, b)) = self.ports {
            if a == b {
                write!(f, ":{a}")?;
            } else {
                write!(f, ":{a}-{b}")?;
            }
        }
        Ok(())
    }
}

fn addr_u128(a: &[u8; 16], family: u8) -> u128 {
    if family == 4 {
        u32::from_be_bytes([a[0], a[1], a[2], a[3]]) as u128
    } else {
        u128::from_be_bytes(*a)
    }
}

fn u128_addr(v: u128, family: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    if family == 4 {
        out[..4].copy_from_slice(&(v as u32).to_be_bytes());
    } else {
        out = v.to_be_bytes();
    }
    out
}

impl NatRange {
    /// Number of addresses in the range (capped at 2^32, as OVS clamps IPv6 ranges).
    pub fn n_addrs(&self) -> u64 {
        let d = addr_u128(&self.addr_max, self.family) - addr_u128(&self.addr_min, self.family);
        (d.min(u32::MAX as u128 - 1) + 1) as u64
    }

    /// The `i`-th address of the range.
    pub fn addr(&self, i: u64) -> [u8; 16] {
        u128_addr(
            addr_u128(&self.addr_min, self.family) + i as u128,
            self.family,
        )
    }
}

/// A small, unkeyed mix (the choice need not be secret, only spread and stable).
fn mix(mut h: u64, v: u64) -> u64 {
    h ^= v;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

fn mix_addr(h: u64, a: &[u8; 16]) -> u64 {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    mix(mix(h, u64::from_ne_bytes(lo)), u64::from_ne_bytes(hi))
}

/// Which side of the reply key a range rewrites.
#[derive(Clone, Copy)]
enum Side {
    /// SNAT: the reply's destination (the original source).
    Snat,
    /// DNAT: the reply's source (the original destination).
    Dnat,
}

/// The `n`-th (address, port) of a range for `orig`, or `None` when `n` is past the
/// bounded candidate list. `port == None` means the protocol has no port to translate.
fn pick(r: &NatRange, side: Side, orig: &ConnKey, n: u32) -> Option<([u8; 16], Option<u16>)> {
    let has_port = orig.proto == proto::TCP
        || orig.proto == proto::UDP
        || orig.proto == proto::SCTP
        || (is_icmp(orig.proto) && matches!(side, Side::Snat));
    // The original "port" on this side.
    let orig_port = match (side, is_icmp(orig.proto)) {
        (_, true) => orig.sport, // ICMP identifier
        (Side::Snat, false) => orig.sport,
        (Side::Dnat, false) => orig.dport,
    };
    let n_addrs = r.n_addrs();
    let client = mix_addr(mix(orig.zone as u64, orig.family as u64), &orig.src);
    let addr0 = client % n_addrs;
    if !has_port {
        // Address-only NAT: one candidate per address, up to the probe bound.
        if n as u64 >= n_addrs.min(MAX_PROBES as u64) {
            return None;
        }
        return Some((r.addr((addr0 + n as u64) % n_addrs), None));
    }
    let (pmin, pmax, keep_first) = match (r.ports, side) {
        (Some((a, b)), _) => (a, b, orig_port >= a && orig_port <= b),
        (None, Side::Snat) => (1024, 65535, true),
        // DNAT without ports keeps the destination port: one candidate per address.
        (None, Side::Dnat) => (orig_port, orig_port, true),
    };
    let n_ports = (pmax - pmin) as u64 + 1;
    let keep = keep_first as u64;
    if n == 0 && keep_first {
        return Some((r.addr(addr0), Some(orig_port)));
    }
    let k = n as u64 - keep; // index among the walked candidates
    let total = n_ports * n_addrs;
    let tuple_hash = mix(
        mix(client, ((orig.sport as u64) << 16) | orig.dport as u64),
        mix_addr(0, &orig.dst),
    );
    let start = tuple_hash % n_ports;
    let (addr_i, port_i) = if total <= EXHAUSTIVE_LIMIT {
        if k >= total {
            return None;
        }
        (k / n_ports, (start + k % n_ports) % n_ports)
    } else {
        if k + keep >= MAX_PROBES as u64 {
            return None;
        }
        // Per address: 128 consecutive ports, then strides over the rest of the range.
        let per_addr = MAX_PROBES as u64 / n_addrs.clamp(1, 2);
        let a = k / per_addr;
        let j = k % per_addr;
        let off = if j < SEQUENTIAL_PROBES {
            j
        } else {
            let stride = (n_ports / (per_addr - SEQUENTIAL_PROBES + 1)).max(1);
            SEQUENTIAL_PROBES + (j - SEQUENTIAL_PROBES) * stride + (tuple_hash >> 32) % stride
        };
        (a, (start + off) % n_ports)
    };
    Some((
        r.addr((addr0 + addr_i) % n_addrs),
        Some(pmin + port_i as u16),
    ))
}

impl NatSpec {
    /// SNAT only.
    pub fn snat(r: NatRange) -> NatSpec {
        NatSpec {
            snat: Some(r),
            dnat: None,
        }
    }

    /// DNAT only.
    pub fn dnat(r: NatRange) -> NatSpec {
        NatSpec {
            snat: None,
            dnat: Some(r),
        }
    }

    fn applies(&self, orig: &ConnKey) -> bool {
        let fam_ok = |r: &Option<NatRange>| r.map(|r| r.family == orig.family).unwrap_or(true);
        (self.snat.is_some() || self.dnat.is_some()) && fam_ok(&self.snat) && fam_ok(&self.dnat)
    }
}

impl ReplyTuples for NatSpec {
    fn flags(&self, orig: &ConnKey) -> u8 {
        if !self.applies(orig) {
            return 0;
        }
        (if self.snat.is_some() {
            CtState::SNAT
        } else {
            0
        }) | (if self.dnat.is_some() {
            CtState::DNAT
        } else {
            0
        })
    }

    fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
        if !self.applies(orig) {
            return if n == 0 { Some(orig.reversed()) } else { None };
        }
        let mut reply = orig.reversed();
        let icmp = is_icmp(orig.proto);
        // With both, DNAT is fixed on its first candidate and SNAT walks.
        let (dn, sn) = match (self.dnat.is_some(), self.snat.is_some()) {
            (true, true) => (0, n),
            (true, false) => (n, 0),
            _ => (0, n),
        };
        if let Some(d) = &self.dnat {
            let (addr, port) = pick(d, Side::Dnat, orig, dn)?;
            reply.src = addr;
            if let Some(p) = port {
                if !icmp {
                    reply.sport = p;
                }
            }
        }
        if let Some(s) = &self.snat {
            let (addr, port) = pick(s, Side::Snat, orig, sn)?;
            reply.dst = addr;
            if let Some(p) = port {
                if icmp {
                    reply.sport = p; // the identifier, shared by both directions' keys
                } else {
                    reply.dport = p;
                }
            }
        }
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, dst: &str, sport: u16, dport: u16, p: u8) -> ConnKey {
        let (s, f) = ip_to_addr(src.parse().unwrap());
        let (d, _) = ip_to_addr(dst.parse().unwrap());
        ConnKey {
            src: s,
            dst: d,
            sport,
            dport,
            zone: 1,
            proto: p,
            family: f,
        }
    }

    #[test]
    fn ranges_parse_and_print_back() {
        for s in [
            "192.0.2.1",
            "192.0.2.1-192.0.2.9",
            "192.0.2.1:1024-2047",
            "192.0.2.1-192.0.2.2:80",
            "[fd00::1]",
            "[fd00::1]-[fd00::9]:1024-2047",
        ] {
            let r: NatRange = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        let r: NatRange = "[fd00::1-fd00::3]:7".parse().unwrap();
        assert_eq!(r.n_addrs(), 3);
        assert_eq!(r.ports, Some((7, 7)));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4:0",
            "1.2.3.4:9-8",
            "1.2.3.9-1.2.3.1",
            "1.2.3.4-[::1]",
            "[::1",
        ] {
            assert!(bad.parse::<NatRange>().is_err(), "{bad}");
        }
        let e = "10.0.0.1:x".parse::<NatRange>().unwrap_err();
        assert_eq!(e.0, "invalid port range 'x' in NAT range '10.0.0.1:x'");
    }

    #[test]
    fn snat_keeps_the_port_first_then_walks_the_ephemeral_range() {
        let spec = NatSpec::snat("192.0.2.1".parse().unwrap());
        let orig = key("10.0.0.2", "192.0.2.2", 40000, 80, 6);
        let c0 = spec.candidate(&orig, 0).unwrap();
        assert_eq!(c0.src, orig.dst);
        assert_eq!(c0.dst, key("192.0.2.1", "0.0.0.0", 0, 0, 0).src);
        assert_eq!((c0.sport, c0.dport), (80, 40000));
        let c1 = spec.candidate(&orig, 1).unwrap();
        assert!(c1.dport >= 1024);
        assert_ne!(c1.dport, c0.dport);
        // Bounded in a large range.
        assert!(spec.candidate(&orig, MAX_PROBES).is_none());
        assert!(spec.candidate(&orig, MAX_PROBES - 1).is_some());
    }

    #[test]
    fn small_ranges_are_walked_exhaustively_without_repeats() {
        let spec = NatSpec::snat("192.0.2.1-192.0.2.2:5000-5009".parse().unwrap());
        let orig = key("10.0.0.2", "192.0.2.2", 40000, 80, 17);
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        while let Some(c) = spec.candidate(&orig, n) {
            assert!((5000..=5009).contains(&c.dport));
            assert!(seen.insert((c.dst, c.dport)));
            n += 1;
        }
        assert_eq!(n, 20);
    }

    #[test]
    fn dnat_rewrites_the_reply_source_and_icmp_snat_the_identifier() {
        let spec = NatSpec::dnat("10.0.0.5:8080".parse().unwrap());
        let orig = key("198.51.100.7", "192.0.2.1", 33000, 80, 6);
        let c = spec.candidate(&orig, 0).unwrap();
        assert_eq!((c.src_ip().to_string(), c.sport), ("10.0.0.5".into(), 8080));
        assert_eq!((c.dst, c.dport), (orig.src, orig.sport));
        assert_eq!(spec.flags(&orig), CtState::DNAT);

        let spec = NatSpec::snat("192.0.2.1:500-502".parse().unwrap());
        let orig = key("10.0.0.3", "192.0.2.2", 7, 8 << 8, 1);
        let ids: Vec<u16> = (0..3)
            .map(|n| spec.candidate(&orig, n).unwrap().sport)
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, [500, 501, 502]);
        assert_eq!(spec.candidate(&orig, 0).unwrap().icmp_type(), 0);
    }

    #[test]
    fn a_client_keeps_its_pool_address() {
        let spec = NatSpec::snat("192.0.2.10-192.0.2.40".parse().unwrap());
        let a = spec
            .candidate(&key("10.0.0.2", "192.0.2.2", 1, 80, 6), 0)
            .unwrap();
        let b = spec
            .candidate(&key("10.0.0.2", "198.51.100.1", 2, 443, 17), 0)
            .unwrap();
        assert_eq!(a.dst, b.dst);
    }

    #[test]
    fn other_families_are_not_translated() {
        let spec = NatSpec::snat("192.0.2.1".parse().unwrap());
        let orig = key("fd00::2", "fd00::9", 1, 2, 17);
        assert_eq!(spec.candidate(&orig, 0), Some(orig.reversed()));
        assert_eq!(spec.flags(&orig), 0);
        assert_eq!(spec.candidate(&orig, 1), None);
    }
}
