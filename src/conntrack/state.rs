//! The per-packet result of connection tracking: OVS's `ct_state` bits.

use std::fmt;

/// Connection-tracking state flags of a packet (bit values as OVS's `CS_*`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CtState(pub u8);

impl CtState {
    /// Start of a new connection.
    pub const NEW: u8 = 0x01;
    /// Part of an established connection.
    pub const EST: u8 = 0x02;
    /// Related to an established connection (an ICMP error about it).
    pub const REL: u8 = 0x04;
    /// Travels in the reply direction.
    pub const RPL: u8 = 0x08;
    /// Could not be tracked validly.
    pub const INV: u8 = 0x10;
    /// Went through the tracker.
    pub const TRK: u8 = 0x20;
    /// The connection has source NAT.
    pub const SNAT: u8 = 0x40;
    /// The connection has destination NAT.
    pub const DNAT: u8 = 0x80;

    /// True when every bit of `bits` is set.
    #[inline(always)]
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    /// The flags in OVS's words, comma separated, `trk` first (e.g. `trk,est,rpl`).
    pub fn words(self) -> String {
        self.to_string()
    }
}

const NAMES: [(u8, &str); 8] = [
    (CtState::TRK, "trk"),
    (CtState::NEW, "new"),
    (CtState::EST, "est"),
    (CtState::REL, "rel"),
    (CtState::RPL, "rpl"),
    (CtState::INV, "inv"),
    (CtState::SNAT, "snat"),
    (CtState::DNAT, "dnat"),
];

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CtState({self})")
    }
}

/// Parses flags written as [`CtState::words`] (used by tests and tools).
impl std::str::FromStr for CtState {
    type Err = String;
    fn from_str(s: &str) -> Result<CtState, String> {
        let mut v = 0;
        for w in s.split([',', '|', '+']).filter(|w| !w.is_empty()) {
            match NAMES.iter().find(|(_, n)| *n == w) {
                Some((b, _)) => v |= b,
                None => return Err(format!("unknown ct_state flag '{w}'")),
            }
        }
        Ok(CtState(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_put_trk_first_in_ovs_names() {
        let s = CtState(CtState::EST | CtState::RPL | CtState::TRK);
        assert_eq!(s.to_string(), "trk,est,rpl");
        assert_eq!(
            CtState(CtState::NEW | CtState::TRK | CtState::SNAT).to_string(),
            "trk,new,snat"
        );
        assert_eq!("trk,est,rpl".parse::<CtState>().unwrap(), s);
        assert!("trk,bogus".parse::<CtState>().is_err());
    }
}
