//! The per-packet and per-burst steps of a worker lcore.
//!
//! A step sees a frame as bytes (`&mut [u8]`) and the port it came in on, and returns a
//! [`Verdict`]: transmit on a port, or drop for a [`DropReason`]. Steps are pure Rust and
//! tested without DPDK; the worker loop ([`worker`], feature `dpdk`) moves the mbufs.
//!
//! * [`forward`]: plain L2 forwarding between paired ports (the first datapath).
//! * [`gateway`]: the NAT gateway step (ARP/NDP, tracker, policy, NAT, routes, neighbours).
//! * [`ports`]: which ports pair up, how many queues each gets, which worker polls what.
//!
//! # Held and generated frames
//!
//! A step may keep a frame for later ([`Verdict::Hold`]: the worker parks the mbuf in the
//! step's hold slot; the step later tells it through [`StepSink::send_held`] or
//! [`StepSink::drop_held`] what to do with it) and may create frames (ARP/NDP requests,
//! ICMP errors), which it hands to [`StepSink::emit`]; the worker copies them into mbufs
//! of its mempool. The worker calls [`PacketStep::service`] after every burst and at
//! every drain tick. Every mbuf is still freed or transmitted exactly once: a held mbuf
//! stays in its slot until released, and the worker frees the slots it still holds when
//! it stops.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod forward;
pub mod gateway;
pub mod ports;
pub mod vlan;
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
    /// Keep the frame in hold slot `n` (`n < PacketStep::hold_slots()`, a slot the step
    /// knows to be free) until the step releases it through its [`StepSink`].
    Hold(u16),
    /// The step kept a copy of what it needed (an IP fragment held for reassembly, sent
    /// on later through [`StepSink::emit`]): free the frame, counted neither as sent nor
    /// as dropped.
    Consumed,
}

/// Why a worker dropped a frame. Each reason is a per-worker counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes).
    ShortFrame = 0,
    /// No route: arrived on a port that has no output port, or (gateway) no route or
    /// connected prefix matches the destination.
    NoRoute = 1,
    /// The output queue did not take it (TX ring full).
    TxFull = 2,
    /// Not IPv4/IPv6/ARP (or ARP that is not Ethernet/IPv4).
    NotIp = 3,
    /// An IP frame that does not parse (bad IPv4/IPv6/TCP/UDP/ICMP header).
    Malformed = 4,
    /// The tracker found it invalid (and the policy drops invalid packets).
    Invalid = 5,
    /// The firewall policy refused it (a new outside→inside connection without DNAT).
    PolicyDenied = 6,
    /// A new connection refused by its zone's connection limit.
    ZoneLimit = 7,
    /// A new connection refused by the global limit or a full connection table.
    MaxConns = 8,
    /// A new connection refused because no NAT tuple was free.
    NatExhausted = 9,
    /// TTL / hop limit would reach 0 (a time-exceeded is sent back, rate-limited).
    TtlExpired = 10,
    /// Held for a neighbour that did not answer in time (or the gateway has no address
    /// to ask from), or still held when the worker stopped.
    NeighUnresolved = 11,
    /// The per-port hold queue for unresolved neighbours was full.
    HoldQueueFull = 12,
    /// Addressed to the gateway itself and consumed there (ARP/NDP replies it learns
    /// from, ARP/NDP not for its addresses, other traffic to its addresses), or with a
    /// link-local/multicast/broadcast destination that is never forwarded.
    Local = 13,
    /// The NAT rewrite failed (connection removed meanwhile, unusable ICMP error quote).
    NatFailed = 14,
    /// A generated frame (ARP/NDP request, ICMP error) found no free mbuf or buffer.
    NoBuffer = 15,
    /// A VLAN-tagged (802.1Q or QinQ) frame on a port without that VLAN configured.
    Vlan = 16,
    /// A martian source address (RFC 1812 §5.3.7, RFC 6890: `0/8`, `127/8`, multicast,
    /// `240/4`, `255.255.255.255`, the gateway's own addresses; IPv6 `::`, `::1`,
    /// multicast, IPv4-mapped and -compatible; link-local across ports): never answered,
    /// never forwarded.
    MartianSrc = 17,
    /// A martian destination address (`0/8`, `127/8`, `240/4`; IPv6 `::`, `::1`,
    /// IPv4-mapped and -compatible; link-local across ports).
    MartianDst = 18,
    /// An IPv4 packet with a loose or strict source route option (LSRR/SSRR).
    SourceRoute = 19,
    /// An IPv4 header whose checksum does not verify (by the NIC's RX flags where the
    /// port offers the offload, in software otherwise).
    BadIpChecksum = 20,
    /// A frame longer than one mbuf's data room (received in more than one segment), or
    /// whose IP packet is larger than the receiving interface's `mtu`.
    TooBig = 21,
    /// An IP fragment not forwarded: refused by reassembly (too small, overlapping, a
    /// duplicate, malformed, no room, reassembly off with `policy.invalid = "drop"`), or
    /// of a datagram that could not be sent on.
    Fragment = 22,
    /// A routed packet larger than its output port's `mtu` that may not be fragmented
    /// (IPv4 with DF, IPv6): answered with an ICMP "fragmentation needed" / ICMPv6
    /// "packet too big" (rate-limited).
    MtuExceeded = 23,
}

impl DropReason {
    /// Number of reasons (the size of a counter array).
    pub const COUNT: usize = 24;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::ShortFrame,
        DropReason::NoRoute,
        DropReason::TxFull,
        DropReason::NotIp,
        DropReason::Malformed,
        DropReason::Invalid,
        DropReason::PolicyDenied,
        DropReason::ZoneLimit,
        DropReason::MaxConns,
        DropReason::NatExhausted,
        DropReason::TtlExpired,
        DropReason::NeighUnresolved,
        DropReason::HoldQueueFull,
        DropReason::Local,
        DropReason::NatFailed,
        DropReason::NoBuffer,
        DropReason::Vlan,
        DropReason::MartianSrc,
        DropReason::MartianDst,
        DropReason::SourceRoute,
        DropReason::BadIpChecksum,
        DropReason::TooBig,
        DropReason::Fragment,
        DropReason::MtuExceeded,
    ];

    /// Counter name, as printed in stats (`drop_<name>=N`).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::ShortFrame => "short_frame",
            DropReason::NoRoute => "no_route",
            DropReason::TxFull => "tx_full",
            DropReason::NotIp => "not_ip",
            DropReason::Malformed => "malformed",
            DropReason::Invalid => "invalid",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::ZoneLimit => "zone_limit",
            DropReason::MaxConns => "max_conns",
            DropReason::NatExhausted => "nat_exhausted",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NeighUnresolved => "neigh_unresolved",
            DropReason::HoldQueueFull => "hold_queue_full",
            DropReason::Local => "local",
            DropReason::NatFailed => "nat_failed",
            DropReason::NoBuffer => "no_buffer",
            DropReason::Vlan => "vlan",
            DropReason::MartianSrc => "martian_src",
            DropReason::MartianDst => "martian_dst",
            DropReason::SourceRoute => "source_route",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::TooBig => "too_big",
            DropReason::Fragment => "fragment",
            DropReason::MtuExceeded => "mtu_exceeded",
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

/// The NIC's verdict on a received frame's IPv4 header checksum (the mbuf's
/// `RTE_MBUF_F_RX_IP_CKSUM_*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RxCksum {
    /// The port does not verify it, or did not for this frame (not IPv4, unknown tag).
    #[default]
    Unknown,
    /// Verified good by the NIC.
    Good,
    /// The NIC found it wrong.
    Bad,
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

    /// [`process_burst`](PacketStep::process_burst) with what the worker knows of each
    /// frame beyond its bytes: `rx[i]` (at least as long as `frames`) holds frame `i`'s
    /// IPv4 header checksum verdict from the RX offload flags and the VLAN id of the tag
    /// the worker took off ([`vlan`]). Steps that check IPv4 headers trust
    /// [`RxCksum::Good`] and [`RxCksum::Bad`] and verify [`RxCksum::Unknown`] in software;
    /// the default ignores `rx` (a step that does must not be run on trunk ports).
    fn process_burst_rx(
        &mut self,
        frames: &mut [&mut [u8]],
        in_port: u16,
        rx: &[vlan::RxInfo],
        verdicts: &mut [Verdict],
    ) {
        let _ = rx;
        self.process_burst(frames, in_port, verdicts);
    }

    /// How many hold slots the step uses ([`Verdict::Hold`]); the worker keeps one mbuf
    /// per slot. 0 (the default): the step never holds.
    fn hold_slots(&self) -> usize {
        0
    }

    /// Hands the worker what the step has pending: generated frames and decisions about
    /// held frames. Called after every burst and at every drain tick (about every 100 µs
    /// when idle), so timers (retries, hold timeouts) run without traffic. The default
    /// has nothing pending.
    fn service(&mut self, sink: &mut dyn StepSink) {
        let _ = sink;
    }
}

/// Where a step's generated frames and held-frame decisions go (the worker, or a test).
pub trait StepSink {
    /// Transmit a copy of `frame` on `port` (the worker allocates an mbuf for it, or
    /// counts [`DropReason::NoBuffer`]).
    fn emit(&mut self, port: u16, frame: &[u8]);
    /// Transmit the frame held in `slot` on `port`, with its destination MAC (bytes 0..6)
    /// set to `dst_mac` first; the slot is free afterwards.
    fn send_held(&mut self, slot: u16, port: u16, dst_mac: MacAddr);
    /// Drop the frame held in `slot` and count it under `reason`, accounted to `in_port`;
    /// the slot is free afterwards.
    fn drop_held(&mut self, slot: u16, reason: DropReason, in_port: u16);
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
