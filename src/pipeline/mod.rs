//! The per-packet and per-burst steps of a worker lcore.
//!
//! A step sees a frame as bytes (`&mut [u8]`) and the port it came in on, and returns a
//! [`Verdict`]: transmit on a port, or drop for a [`DropReason`]. Steps are pure Rust and
//! tested without DPDK; the worker loop ([`worker`], feature `dpdk`) moves the mbufs.
//!
//! * [`forward`]: plain L2 forwarding between paired ports (the first datapath).
//! * [`ports`]: which ports pair up, how many queues each gets, which worker polls what.

pub mod forward;
pub mod ports;
#[cfg(feature = "dpdk")]
pub mod worker;

use std::fmt;
use std::str::FromStr;

/// What to do with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on this port (the frame may have been rewritten in place).
    Forward(u16),
    /// Drop and count under this reason.
    Drop(DropReason),
}

/// Why a worker dropped a frame. Each reason is a per-worker counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes).
    ShortFrame = 0,
    /// Arrived on a port that has no output port.
    NoRoute = 1,
    /// The output queue did not take it (TX ring full).
    TxFull = 2,
}

impl DropReason {
    /// Number of reasons (the size of a counter array).
    pub const COUNT: usize = 3;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::ShortFrame,
        DropReason::NoRoute,
        DropReason::TxFull,
    ];

    /// Counter name, as printed in stats (`drop_<name>=N`).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::ShortFrame => "short_frame",
            DropReason::NoRoute => "no_route",
            DropReason::TxFull => "tx_full",
        }
    }
}

/// One counter per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters(pub [u64; DropReason::COUNT]);

impl DropCounters {
    #[inline]
    pub fn add(&mut self, reason: DropReason, n: u64) {
        self.0[reason as usize] += n;
    }

    #[inline]
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// A per-packet datapath step: `(frame, in_port) -> Verdict`, rewriting the frame in
/// place. The worker loop calls [`process_burst`](PacketStep::process_burst) once per RX
/// burst; steps that gain from seeing the whole burst (prefetch, bulk table lookups, as in
/// l3fwd's `l3fwd_em_hlm.h`) override it, the rest implement `process` only.
pub trait PacketStep: Send {
    /// Decides the fate of one frame that arrived on `in_port`.
    fn process(&mut self, frame: &mut [u8], in_port: u16) -> Verdict;

    /// Decides the fate of one burst of frames from `in_port`: `verdicts[i]` for
    /// `frames[i]`. `verdicts` is at least as long as `frames`.
    fn process_burst(&mut self, frames: &mut [&mut [u8]], in_port: u16, verdicts: &mut [Verdict]) {
        for (frame, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
            *v = self.process(frame, in_port);
        }
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), hex digits in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid MAC address {s:?} (expected six hex bytes like 02:00:00:00:00:01)");
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display_round_trip() {
        let m: MacAddr = "02:aB:0c:dd:EE:0f".parse().unwrap();
        assert_eq!(m.0, [0x02, 0xab, 0x0c, 0xdd, 0xee, 0x0f]);
        assert_eq!(m.to_string(), "02:ab:0c:dd:ee:0f");
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>().unwrap().0[5], 1);
    }

    #[test]
    fn mac_parse_rejects_malformed() {
        for s in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:g0",
            "020:00:00:00:00:00",
            "02::00:00:00:00",
            "+2:00:00:00:00:00",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn drop_counters_index_by_reason() {
        let mut c = DropCounters::default();
        c.add(DropReason::ShortFrame, 2);
        c.add(DropReason::TxFull, 3);
        assert_eq!(c.get(DropReason::ShortFrame), 2);
        assert_eq!(c.get(DropReason::NoRoute), 0);
        assert_eq!(c.total(), 5);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
