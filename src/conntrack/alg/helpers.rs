//! Which connections get a helper: the configured `[[alg]]` rules (`helper = "ftp", port =
//! 21`, `helper = "tftp", port = 69`), matched on a new connection's protocol and original
//! destination port, as OVS's `alg=ftp|tftp` applies to the connections it commits.
//!
//! Invariants: at most [`MAX_HELPER_RULES`] rules, each one atomic word (protocol, helper,
//! port), so the control lcore replaces them on a reload while workers read them without a
//! lock; a reader may see a mix of old and new rules for the length of one replacement,
//! never a torn rule. Read only when a connection is created, never per packet.

use super::expect::Helper;
use crate::wire::parse::proto;
use std::sync::atomic::{AtomicU32, Ordering};

/// Rules the registry holds.
pub const MAX_HELPER_RULES: usize = 16;

/// A connection's helper as kept in its record (two bits; 0 is none).
pub const ALG_FTP: u8 = 1;
/// The TFTP helper.
pub const ALG_TFTP: u8 = 2;

impl Helper {
    /// The transport protocol the helper's control connection uses.
    pub fn proto(self) -> u8 {
        match self {
            Helper::Ftp => proto::TCP,
            Helper::Tftp => proto::UDP,
        }
    }

    /// The name in the configuration and the dumps (`ftp`, `tftp`).
    pub fn name(self) -> &'static str {
        match self {
            Helper::Ftp => "ftp",
            Helper::Tftp => "tftp",
        }
    }

    /// From its name.
    pub fn from_name(s: &str) -> Option<Helper> {
        match s {
            "ftp" => Some(Helper::Ftp),
            "tftp" => Some(Helper::Tftp),
            _ => None,
        }
    }

    /// Its two-bit code ([`ALG_FTP`], [`ALG_TFTP`]).
    pub fn bits(self) -> u8 {
        match self {
            Helper::Ftp => ALG_FTP,
            Helper::Tftp => ALG_TFTP,
        }
    }

    /// From its two-bit code.
    pub fn from_bits(b: u8) -> Option<Helper> {
        match b & 3 {
            ALG_FTP => Some(Helper::Ftp),
            ALG_TFTP => Some(Helper::Tftp),
            _ => None,
        }
    }
}

/// The helper rules (see the module documentation).
#[derive(Default)]
pub struct HelperRules {
    /// `proto << 24 | bits << 16 | port`; 0 ends the list.
    rules: [AtomicU32; MAX_HELPER_RULES],
}

impl HelperRules {
    /// Replaces the rules with `rules` (only the first [`MAX_HELPER_RULES`]; the
    /// configuration refuses more).
    pub fn set(&self, rules: &[(Helper, u16)]) {
        for (i, slot) in self.rules.iter().enumerate() {
            let w = rules.get(i).map_or(0, |&(h, port)| {
                u32::from(h.proto()) << 24 | u32::from(h.bits()) << 16 | u32::from(port)
            });
            slot.store(w, Ordering::Relaxed);
        }
    }

    /// The rules in force.
    pub fn get(&self) -> Vec<(Helper, u16)> {
        self.rules
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .take_while(|&w| w != 0)
            .filter_map(|w| Some((Helper::from_bits((w >> 16) as u8)?, w as u16)))
            .collect()
    }

    /// The helper bits for a new connection of protocol `proto` to port `dport` (0: none).
    #[inline]
    pub fn lookup(&self, proto: u8, dport: u16) -> u8 {
        if proto != crate::wire::parse::proto::TCP && proto != crate::wire::parse::proto::UDP {
            return 0;
        }
        for r in &self.rules {
            let w = r.load(Ordering::Relaxed);
            if w == 0 {
                break;
            }
            if (w >> 24) as u8 == proto && w as u16 == dport {
                return (w >> 16) as u8 & 3;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_protocol_and_destination_port_and_are_replaced_whole() {
        let r = HelperRules::default();
        assert_eq!(r.lookup(6, 21), 0);
        r.set(&[(Helper::Ftp, 21), (Helper::Tftp, 69), (Helper::Ftp, 2121)]);
        assert_eq!(r.lookup(6, 21), ALG_FTP);
        assert_eq!(r.lookup(6, 2121), ALG_FTP);
        assert_eq!(r.lookup(17, 21), 0);
        assert_eq!(r.lookup(17, 69), ALG_TFTP);
        assert_eq!(r.lookup(6, 69), 0);
        r.set(&[(Helper::Tftp, 1069)]);
        assert_eq!(r.lookup(6, 21), 0);
        assert_eq!(r.lookup(17, 1069), ALG_TFTP);
        assert_eq!(r.get(), vec![(Helper::Tftp, 1069)]);
    }
}
