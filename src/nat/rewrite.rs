//! Packet rewrite for NAT: addresses, ports and ICMP identifiers set in place with RFC 1624
//! incremental checksum updates, and ICMP errors' embedded packets translated back.
//!
//! Pure code over `&mut [u8]`: no allocation, no panic on any input, and nothing written
//! unless the whole rewrite can be done (every field is located and bounds-checked first).
//!
//! # Entry points
//!
//! * [`apply`]: what the pipeline calls after the tracker, with the tracker's result. It
//!   does nothing for packets of connections without NAT, and otherwise rewrites the packet
//!   to the tuple [`Conntrack::nat_target`] gives for its direction.
//! * [`rewrite_to`]: the rewrite itself, given that target tuple. An ordinary packet gets
//!   the target's addresses and ports (TCP/UDP) or identifier (ICMP queries); an ICMP or
//!   ICMPv6 error gets its outer header and its embedded packet translated as below.
//!
//! # Ordinary packets
//!
//! The target of a packet in direction `d` of a connection is the reverse of the other
//! direction's key: for the original direction the reverse of the (translated) reply key,
//! for the reply direction the reverse of the original key. Only the fields that differ
//! from the target are written. For a connection `a:p → b:q` with SNAT to `A:P` and/or
//! DNAT to `B:Q` (reply key `B:Q → A:P`, with `B:Q = b:q` without DNAT and `A:P = a:p`
//! without SNAT):
//!
//! | NAT  | original-direction packet        | reply-direction packet           |
//! |------|----------------------------------|----------------------------------|
//! | SNAT | source `a:p` → `A:P`             | destination `A:P` → `a:p`        |
//! | DNAT | destination `b:q` → `B:Q`        | source `B:Q` → `b:q`             |
//! | both | source and destination           | source and destination           |
//!
//! For ICMP echo (and ICMPv4 timestamp/information) the "port" is the identifier, which
//! SNAT may change (`p` → `P`) and DNAT never does. SCTP has ports like TCP and UDP (its
//! CRC32c is recomputed, see `nat/sctp.rs`); every other protocol (UDP-Lite, DCCP, GRE,
//! ESP, …) is keyed without ports by the tracker and translated by address only; of
//! those, DCCP and UDP-Lite have a checksum over the pseudo-header, which follows the
//! address change (Linux does the same; OVS leaves it stale).
//!
//! Checksums, each updated once from the sum of its changed words (RFC 1624 eqn. 3):
//! the IPv4 header checksum for address changes; the TCP and UDP checksums for address
//! (pseudo-header) and port changes; the ICMPv6 checksum for address (pseudo-header) and
//! identifier changes; the ICMPv4 checksum only for an identifier change. A UDP checksum of
//! 0 ("none") stays 0 (over IPv6 a zero checksum is only legal for tunnels, RFC 6936, and
//! OVS keeps it too), and an updated UDP checksum that comes out 0 is stored as `0xffff`.
//! A later fragment (no L4 header) gets its addresses only; the L4 checksum, in the first
//! fragment, is updated there.
//!
//! # ICMP errors
//!
//! An ICMP/ICMPv6 error travelling in direction `d` quotes a packet that went the other
//! way *after* translation. The gateway translates the outer header as it would translate
//! a packet in direction `d`, and the quoted packet back to what its sender sent, so that
//! the error's receiver recognises its own packet. As in OVS (`nat_packet` with
//! `related`, `nat_inner_packet`; Linux's `nf_nat_icmp_reply_translation` does the same):
//!
//! * outer destination := target destination;
//! * outer source := target source, when the connection translates the source in this
//!   direction (the quoted packet's destination differs from the target's source). This
//!   is the translated peer (a DNAT'd server reporting an error about a forwarded packet)
//!   and equally a router on its side of the gateway, whose inside address must not leak;
//!   an error from anywhere else keeps its source;
//! * quoted packet := the reverse of the target (source ↔ destination, ports swapped;
//!   ICMP: the identifier).
//!
//! Field by field (`r` is the sender of the error when it is a router; `*` = unchanged):
//!
//! | NAT  | error direction, quoted packet      | outer src      | outer dst | quoted src        | quoted dst        |
//! |------|-------------------------------------|----------------|-----------|-------------------|-------------------|
//! | SNAT | reply, about `A:P → b:q` (to `A`)   | `*` (`b`/`r`)  | `A` → `a` | `A:P` → `a:p`     | `*`               |
//! | SNAT | orig, about `b:q → a:p` (to `b`)    | `a`/`r` → `A`  | `*`       | `*`               | `a:p` → `A:P`     |
//! | DNAT | reply, about `a:p → B:Q` (to `a`)   | `B`/`r` → `b`  | `*`       | `*`               | `B:Q` → `b:q`     |
//! | DNAT | orig, about `b:q → a:p` (to `b`)    | `*` (`a`/`r`)  | `b` → `B` | `b:q` → `B:Q`     | `*`               |
//! | both | reply, about `A:P → B:Q` (to `A`)   | `B`/`r` → `b`  | `A` → `a` | `A:P` → `a:p`     | `B:Q` → `b:q`     |
//! | both | orig, about `b:q → a:p` (to `b`)    | `a`/`r` → `A`  | `b` → `B` | `b:q` → `B:Q`     | `a:p` → `A:P`     |
//!
//! Checksums of an error:
//!
//! | checksum                    | updated for                                                        |
//! |-----------------------------|--------------------------------------------------------------------|
//! | outer IPv4 header           | outer address changes                                              |
//! | outer ICMPv4                | every changed word of the quote: quoted addresses, ports/identifier, quoted IPv4 header checksum, quoted L4 checksum |
//! | outer ICMPv6                | the same, plus outer address changes (pseudo-header)               |
//! | quoted IPv4 header          | quoted address changes                                             |
//! | quoted TCP                  | quoted address (pseudo-header) and port changes; only when its bytes 16..18 are quoted |
//! | quoted UDP                  | quoted address (pseudo-header) and port changes; 0 stays 0         |
//! | quoted ICMPv4 (echo)        | identifier change                                                  |
//! | quoted ICMPv6 (echo)        | identifier and quoted address (pseudo-header) changes              |
//! | quoted SCTP                 | recomputed when quoted whole with a right CRC32c, else kept        |
//!
//! The quoted L4 checksum covers data the quote usually truncates, so it is only ever
//! updated incrementally, never recomputed: translated back, it is again exactly the value
//! its sender computed.
//!
//! # Cost
//!
//! An ordinary packet: one validated read of the connection's other key, then straight-line
//! code over fixed-size header arrays at constant offsets: a comparison per address and
//! port, the changed fields summed as whole 64-bit lanes (an IPv6 address is two additions
//! per value), and one fold per checksum. No loop over the payload, no allocation, no call.
//! A whole IPv4 TCP or UDP packet of an IPv4 connection, the commonest, reads its target
//! straight from the record's two key words (`Conntrack::nat_target_v4`) and skips every
//! other protocol's branch (`rewrite_v4_ports`); the others build the target key first.
//! ICMP errors take a separate, out-of-line path.

use crate::at;
use crate::conntrack::key::{ConnKey, TupleV4};
use crate::conntrack::{Conntrack, CtResult, CtState, Hit};
use crate::wire::fixed::At;
use crate::wire::icmpv4::field as icmpf;
use crate::wire::ipv4::field as ip4;
use crate::wire::ipv6::field as ip6;
use crate::wire::parse::{proto, Family, Fragment, L4Summary, ParsedPacket};
use crate::wire::tcp::field as tcpf;
use crate::wire::udp::field as udpf;
use crate::wire::{icmpv4, icmpv6, ipv4, ipv6, udp};

// ICMPv6's header has ICMPv4's layout: the ICMP fields below name both.
const _: () = assert!(
    icmpf::CHECKSUM.start == icmpv6::field::CHECKSUM.start
        && icmpf::IDENT.start == icmpv6::field::IDENT.start
        && icmpf::TYPE == icmpv6::field::TYPE
);
/// The bytes of a TCP header NAT touches: up to the checksum.
const TCP_FIELDS: usize = tcpf::CHECKSUM.end;
/// The bytes of a UDP or ICMP header NAT touches: the 8-byte header.
const SMALL_FIELDS: usize = udp::HEADER_LEN;
const _: () = assert!(icmpv4::HEADER_LEN == SMALL_FIELDS);
// `L4::new` takes the ports (TCP, UDP) and type/code, checksum, identifier (ICMP) one
// after the other from the start of the header.
const _: () = assert!(
    tcpf::SRC_PORT.start == 0
        && tcpf::SRC_PORT.end == tcpf::DST_PORT.start
        && udpf::SRC_PORT.start == 0
        && udpf::SRC_PORT.end == udpf::DST_PORT.start
        && icmpf::CODE + 1 == icmpf::CHECKSUM.start
        && icmpf::CHECKSUM.end == icmpf::IDENT.start
);

use super::sctp;
use std::fmt;

/// Why a packet could not be rewritten. The frame is left unchanged; the pipeline drops
/// the packet (forwarding it untranslated would leak inside addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RewriteError {
    /// The parse result's offsets or lengths do not fit the frame (a stale or foreign
    /// `ParsedPacket`), or a header to rewrite is cut.
    Truncated,
    /// The target's family or protocol is not the packet's.
    Mismatch,
    /// An ICMP error without a usable embedded packet (none parsed, cut before the fields
    /// to translate, misaligned, or not of the connection's protocol).
    BadInner,
    /// The packet's connection has NAT but was removed before the rewrite.
    ConnGone,
    /// An SCTP packet whose ports must change has a wrong CRC32c: recomputing it would
    /// launder the packet (see `nat/sctp.rs`).
    SctpChecksum,
    /// An SCTP fragment whose ports must change: the CRC32c covers the whole packet.
    SctpFragment,
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RewriteError::Truncated => "NAT rewrite: header cut or offsets outside the frame",
            RewriteError::Mismatch => "NAT rewrite: target of another family or protocol",
            RewriteError::BadInner => "NAT rewrite: ICMP error without a usable embedded packet",
            RewriteError::ConnGone => "NAT rewrite: connection removed",
            RewriteError::SctpChecksum => "NAT rewrite: SCTP packet with a wrong CRC32c",
            RewriteError::SctpFragment => "NAT rewrite: SCTP fragment whose ports change",
        })
    }
}

impl std::error::Error for RewriteError {}

/// What a rewrite changed (bits of the outer header, plus [`Rewritten::INNER`] for the
/// embedded packet of an ICMP error). Checksums are not listed: they follow the fields.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rewritten(pub u8);

impl Rewritten {
    /// Nothing changed.
    pub const NONE: Rewritten = Rewritten(0);
    /// The source address.
    pub const SRC_ADDR: u8 = 0x01;
    /// The destination address.
    pub const DST_ADDR: u8 = 0x02;
    /// The TCP/UDP/SCTP source port.
    pub const SRC_PORT: u8 = 0x04;
    /// The TCP/UDP/SCTP destination port.
    pub const DST_PORT: u8 = 0x08;
    /// The ICMP/ICMPv6 query identifier.
    pub const ICMP_ID: u8 = 0x10;
    /// Some field of an ICMP error's embedded packet.
    pub const INNER: u8 = 0x20;

    /// True when nothing changed.
    #[inline(always)]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every bit of `bits` is set.
    #[inline(always)]
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

impl fmt::Debug for Rewritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, &str); 6] = [
            (Rewritten::SRC_ADDR, "src"),
            (Rewritten::DST_ADDR, "dst"),
            (Rewritten::SRC_PORT, "sport"),
            (Rewritten::DST_PORT, "dport"),
            (Rewritten::ICMP_ID, "id"),
            (Rewritten::INNER, "inner"),
        ];
        f.write_str("Rewritten(")?;
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
        f.write_str(")")
    }
}

/// Rewrites a tracked packet for NAT, as the pipeline calls it after the tracker.
///
/// * No SNAT/DNAT flag in `r` (no connection, or one without NAT): nothing, `Ok(NONE)`.
/// * An ordinary packet of a NATed connection: its tuple is set to
///   [`Conntrack::nat_target`] of its connection and direction.
/// * An ICMP error RELATED to a NATed connection (`r.conn` is the connection of the
///   embedded packet, `dir` the error's own direction): outer and embedded headers are
///   translated (see the module docs).
///
/// `Err(ConnGone)` when the connection was removed between tracking and rewrite.
#[inline(always)]
pub fn apply(
    frame: &mut [u8],
    p: &ParsedPacket,
    r: &CtResult,
    ct: &Conntrack,
) -> Result<Rewritten, RewriteError> {
    if r.state.0 & (CtState::SNAT | CtState::DNAT) == 0 {
        return Ok(Rewritten::NONE);
    }
    let Some(hit) = r.conn else {
        return Ok(Rewritten::NONE);
    };
    // The fast path's cheap half of its own test first: other packets (ICMP above all)
    // then do not read the record twice.
    if p.family == Family::V4 && matches!(p.l4, L4Summary::Tcp(_) | L4Summary::Udp { .. }) {
        if let Some(rw) = ct
            .nat_target_v4(&hit)
            .and_then(|t| rewrite_v4_ports(frame, p, &t))
        {
            return Ok(rw);
        }
    }
    apply_general(frame, p, &hit, ct)
}

/// [`apply`] for every packet its fast path does not take, out of line: the step calls
/// [`apply`] for each packet it forwards, and with [`apply`] inlined but this general path
/// left as a call the gateway step went from 1,303.8 to 1,284.1 instructions per packet
/// (1k UDP flows, `perf/scripts/instr.sh`).
#[inline(never)]
fn apply_general(
    frame: &mut [u8],
    p: &ParsedPacket,
    hit: &Hit,
    ct: &Conntrack,
) -> Result<Rewritten, RewriteError> {
    let target = ct.nat_target(hit).ok_or(RewriteError::ConnGone)?;
    rewrite_to(frame, p, &target)
}

/// [`rewrite_plain`] for the commonest packet: a whole IPv4 TCP or UDP packet of an IPv4
/// connection, its target read as [`TupleV4`] (no [`ConnKey`] built, no other protocol's
/// branch on the way): `apply` went from 241 to 178 instructions a packet, the gateway
/// step from 1,591 to 1,521 (`perf/scripts/instr.sh`, perf/RESULTS.md session 22).
/// `None`, nothing written, when the packet is not that (IPv6, a fragment, another
/// protocol than the target's, or a header cut short): the general path then decides,
/// with its errors.
#[inline(always)]
fn rewrite_v4_ports(frame: &mut [u8], p: &ParsedPacket, t: &TupleV4) -> Option<Rewritten> {
    let tcp_udp = matches!(p.l4, L4Summary::Tcp(_) | L4Summary::Udp { .. });
    if !tcp_udp || p.family != Family::V4 || p.fragment != Fragment::None || t.proto != p.proto {
        return None;
    }
    let l4_at = usize::from(p.l4_offset);
    let end = l4_at + usize::from(p.l4_len);
    let (ip, l4) = split2(frame, usize::from(p.l3_offset), l4_at, end)?;
    // Both headers located before anything is written.
    let h = ip.first_chunk_mut::<{ ipv4::MIN_HEADER_LEN }>()?;
    let (tcp, udp) = if p.proto == proto::TCP {
        (Some(l4.first_chunk_mut::<TCP_FIELDS>()?), None)
    } else {
        (None, Some(l4.first_chunk_mut::<SMALL_FIELDS>()?))
    };
    let mut addrs = Delta::default();
    let mut bits = set_v4_addrs(h, &t.src, &t.dst, &mut addrs);
    let (sport, dport) = (t.sport.to_be_bytes(), t.dport.to_be_bytes());
    if let Some(h) = tcp {
        bits |= set_tcp_ports(h, &sport, &dport, addrs);
    } else if let Some(h) = udp {
        bits |= set_udp_ports(h, &sport, &dport, addrs);
    }
    Some(Rewritten(bits))
}

/// Rewrites the packet `p` (as [`crate::wire::parse_frame`] parsed `frame`) so that its
/// tuple is `target`: addresses and TCP/UDP ports or the ICMP query identifier, touching
/// only what differs, with every checksum updated incrementally. For an ICMP/ICMPv6 error,
/// `target` is the target of the error's own direction and the embedded packet is
/// translated back to its reverse (see the module docs).
///
/// The target's ICMP type/code (in `dport` for ICMP keys) is not written: a packet keeps
/// its type. Nothing is written when an error is returned.
#[inline]
pub fn rewrite_to(
    frame: &mut [u8],
    p: &ParsedPacket,
    target: &ConnKey,
) -> Result<Rewritten, RewriteError> {
    if target.family != p.family as u8 {
        return Err(RewriteError::Mismatch);
    }
    match &p.l4 {
        // The target of an error is its connection's: its protocol is the quoted one's.
        L4Summary::Icmp(i) if i.is_error && p.fragment != Fragment::Later => {
            rewrite_error(frame, p, target)
        }
        _ if target.proto != p.proto => Err(RewriteError::Mismatch),
        _ => rewrite_plain(frame, p, target),
    }
}

// ---------------------------------------------------------------------------------------
// Checksum arithmetic.

/// Folds a 64-bit ones'-complement accumulator to 16 bits (a non-zero input never folds
/// to zero).
#[inline(always)]
const fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The changes of a checksummed area, as a ones'-complement sum (RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`) of `!old + new` over the changed fields.
///
/// Fields are added as whole big-endian lanes of up to 64 bits with end-around carry:
/// since 2^16 ≡ 1 (mod 0xffff), a lane is congruent to the sum of its 16-bit words, and
/// the complement of a lane to the sum of its words' complements, so an IPv6 address is
/// two additions per value instead of eight.
#[derive(Clone, Copy, Default)]
struct Delta(u64);

impl Delta {
    /// Adds `v` with end-around carry.
    #[inline(always)]
    fn add64(&mut self, v: u64) {
        let (s, carry) = self.0.overflowing_add(v);
        // When the addition overflowed, s <= 2^64 - 2: adding the carry cannot overflow.
        self.0 = s + u64::from(carry);
    }

    /// Adds the changes of another (sub)area.
    #[inline(always)]
    fn add(&mut self, other: Delta) {
        self.add64(other.0);
    }

    /// The checksum after these changes.
    #[inline(always)]
    fn apply(self, csum: u16) -> u16 {
        let mut d = self;
        d.add64(u64::from(!csum));
        !fold(d.0)
    }
}

/// A field of 2, 4 or 16 bytes (port or identifier, IPv4 address, IPv6 address).
trait Field: Sized {
    /// Adds `!old + new`, lane by lane.
    fn change(old: &Self, new: &Self, delta: &mut Delta);
}

impl Field for [u8; 2] {
    #[inline(always)]
    fn change(old: &Self, new: &Self, delta: &mut Delta) {
        delta.add64(u64::from(!u16::from_be_bytes(*old)) + u64::from(u16::from_be_bytes(*new)));
    }
}

impl Field for [u8; 4] {
    #[inline(always)]
    fn change(old: &Self, new: &Self, delta: &mut Delta) {
        delta.add64(u64::from(!u32::from_be_bytes(*old)) + u64::from(u32::from_be_bytes(*new)));
    }
}

impl Field for [u8; 16] {
    #[inline(always)]
    fn change(old: &Self, new: &Self, delta: &mut Delta) {
        let (o, n) = (u128::from_be_bytes(*old), u128::from_be_bytes(*new));
        delta.add64(!(o as u64));
        delta.add64(!((o >> 64) as u64));
        delta.add64(n as u64);
        delta.add64((n >> 64) as u64);
    }
}

/// Sets `field` to `new` if it differs, adding the change to `delta`.
#[inline(always)]
fn set<const N: usize>(field: &mut [u8; N], new: &[u8; N], delta: &mut Delta) -> bool
where
    [u8; N]: Field,
{
    if field == new {
        return false;
    }
    Field::change(&*field, new, delta);
    *field = *new;
    true
}

/// What kind of checksum a field is, for the update rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Csum {
    /// An ordinary checksum (IPv4 header, TCP, ICMP).
    Plain,
    /// A UDP checksum: 0 means none and stays 0; a computed 0 is stored as `0xffff`.
    Udp,
}

/// Applies `delta` to the checksum `field` (if it changes anything), adding the change of
/// the checksum word itself to `outer` (the checksum of an enclosing area).
#[inline(always)]
fn update(field: &mut [u8; 2], kind: Csum, delta: Delta, outer: &mut Delta) {
    let old = u16::from_be_bytes(*field);
    if delta.0 == 0 || (kind == Csum::Udp && old == 0) {
        return;
    }
    let mut new = delta.apply(old);
    if kind == Csum::Udp && new == 0 {
        new = 0xffff;
    }
    set(field, &new.to_be_bytes(), outer);
}

// ---------------------------------------------------------------------------------------
// Field views: every field to rewrite as a fixed-size array, located (and bounds-checked)
// before anything is written.

/// The address fields of an IP header.
enum Addrs<'a> {
    V4 {
        csum: &'a mut [u8; 2],
        src: &'a mut [u8; 4],
        dst: &'a mut [u8; 4],
    },
    V6 {
        src: &'a mut [u8; 16],
        dst: &'a mut [u8; 16],
    },
}

/// Splits `N` bytes off the front of `b`.
#[inline(always)]
fn take<'a, const N: usize>(b: &mut &'a mut [u8]) -> Option<&'a mut [u8; N]> {
    let (head, rest) = std::mem::take(b).split_first_chunk_mut::<N>()?;
    *b = rest;
    Some(head)
}

/// Skips `n` bytes of `b`.
#[inline(always)]
fn skip(b: &mut &mut [u8], n: usize) -> Option<()> {
    let (_, rest) = std::mem::take(b).split_at_mut_checked(n)?;
    *b = rest;
    Some(())
}

impl<'a> Addrs<'a> {
    /// The address fields of the IP header at the start of `h`.
    #[inline(always)]
    fn new(family: Family, mut h: &'a mut [u8]) -> Option<Addrs<'a>> {
        match family {
            Family::V4 => {
                const {
                    assert!(ip4::CHECKSUM.end == ip4::SRC_ADDR.start);
                    assert!(ip4::SRC_ADDR.end == ip4::DST_ADDR.start);
                };
                skip(&mut h, ip4::CHECKSUM.start)?;
                let csum = take::<2>(&mut h)?;
                let src = take::<4>(&mut h)?;
                let dst = take::<4>(&mut h)?;
                Some(Addrs::V4 { csum, src, dst })
            }
            Family::V6 => {
                const { assert!(ip6::SRC_ADDR.end == ip6::DST_ADDR.start) };
                skip(&mut h, ip6::SRC_ADDR.start)?;
                let src = take::<16>(&mut h)?;
                let dst = take::<16>(&mut h)?;
                Some(Addrs::V6 { src, dst })
            }
        }
    }

    /// The destination address, in the 16-byte key form.
    #[inline(always)]
    fn dst(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        match self {
            Addrs::V4 { dst, .. } => a[..4].copy_from_slice(&dst[..]),
            Addrs::V6 { dst, .. } => a = **dst,
        }
        a
    }

    /// Sets the source (if `src` is given) and destination addresses; returns the changes
    /// (for pseudo-headers) and the changed bits. Updates the IPv4 header checksum and adds
    /// every changed word, checksum included, to `outer`.
    #[inline(always)]
    fn set(&mut self, src: Option<&[u8; 16]>, dst: &[u8; 16], outer: &mut Delta) -> (Delta, u8) {
        let mut d = Delta::default();
        let mut bits = 0;
        match self {
            Addrs::V4 {
                csum,
                src: s,
                dst: t,
            } => {
                if let Some(new) = src.and_then(|a| a.first_chunk::<4>()) {
                    if set(s, new, &mut d) {
                        bits |= Rewritten::SRC_ADDR;
                    }
                }
                if let Some(new) = dst.first_chunk::<4>() {
                    if set(t, new, &mut d) {
                        bits |= Rewritten::DST_ADDR;
                    }
                }
                outer.add(d);
                update(csum, Csum::Plain, d, outer);
            }
            Addrs::V6 { src: s, dst: t } => {
                if let Some(new) = src {
                    if set(s, new, &mut d) {
                        bits |= Rewritten::SRC_ADDR;
                    }
                }
                if set(t, dst, &mut d) {
                    bits |= Rewritten::DST_ADDR;
                }
                outer.add(d);
            }
        }
        (d, bits)
    }
}

/// The L4 fields NAT rewrites.
enum L4<'a> {
    /// TCP or UDP: the ports and the checksum (`None` in a quote cut before it).
    Ports {
        sport: &'a mut [u8; 2],
        dport: &'a mut [u8; 2],
        csum: Option<&'a mut [u8; 2]>,
        kind: Csum,
    },
    /// An ICMP/ICMPv6 message: its checksum and, for queries, the identifier.
    Icmp {
        csum: &'a mut [u8; 2],
        id: Option<&'a mut [u8; 2]>,
        /// ICMPv6: the checksum covers a pseudo-header.
        pseudo: bool,
    },
    /// Nothing but addresses (other protocols, later fragments).
    None,
}

impl<'a> L4<'a> {
    /// The fields of the L4 header at the start of `l4` (which ends where the packet, or
    /// the quote, ends). `None` when a field that must be there is cut.
    #[inline(always)]
    fn new(family: Family, protocol: u8, mut l4: &'a mut [u8]) -> Option<L4<'a>> {
        match (protocol, family) {
            (proto::TCP, _) => {
                let sport = take::<2>(&mut l4)?;
                let dport = take::<2>(&mut l4)?;
                // A quote may end before the checksum (bytes 16..18).
                let csum = skip(&mut l4, tcpf::CHECKSUM.start - tcpf::DST_PORT.end)
                    .and_then(|()| take::<2>(&mut l4));
                Some(L4::Ports {
                    sport,
                    dport,
                    csum,
                    kind: Csum::Plain,
                })
            }
            (proto::UDP, _) => {
                let sport = take::<2>(&mut l4)?;
                let dport = take::<2>(&mut l4)?;
                skip(&mut l4, udpf::CHECKSUM.start - udpf::DST_PORT.end)?;
                let csum = take::<2>(&mut l4)?;
                Some(L4::Ports {
                    sport,
                    dport,
                    csum: Some(csum),
                    kind: Csum::Udp,
                })
            }
            // The CRC32c is not incremental: the caller recomputes it (whole quotes only).
            (proto::SCTP, _) => {
                let sport = take::<2>(&mut l4)?;
                let dport = take::<2>(&mut l4)?;
                Some(L4::Ports {
                    sport,
                    dport,
                    csum: None,
                    kind: Csum::Plain,
                })
            }
            (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
                let ty = take::<2>(&mut l4)?[0];
                let csum = take::<2>(&mut l4)?;
                let id = take::<2>(&mut l4)?;
                let has_id = match family {
                    Family::V4 => icmpv4::has_ident(ty),
                    Family::V6 => icmpv6::has_ident(ty),
                };
                Some(L4::Icmp {
                    csum,
                    id: has_id.then_some(id),
                    pseudo: family == Family::V6,
                })
            }
            _ => Some(L4::None),
        }
    }

    /// Sets the ports (or the identifier, `sport`) and updates the checksum for them and
    /// for the address changes `addrs` (where a pseudo-header covers them). Adds every
    /// changed word to `outer`; returns the changed bits.
    #[inline(always)]
    fn set(&mut self, sport: u16, dport: u16, addrs: Delta, outer: &mut Delta) -> u8 {
        let mut bits = 0;
        match self {
            L4::Ports {
                sport: s,
                dport: t,
                csum,
                kind,
            } => {
                let mut d = Delta::default();
                if set(s, &sport.to_be_bytes(), &mut d) {
                    bits |= Rewritten::SRC_PORT;
                }
                if set(t, &dport.to_be_bytes(), &mut d) {
                    bits |= Rewritten::DST_PORT;
                }
                outer.add(d);
                d.add(addrs);
                if let Some(c) = csum {
                    update(c, *kind, d, outer);
                }
            }
            L4::Icmp { csum, id, pseudo } => {
                let mut d = Delta::default();
                if let Some(id) = id {
                    if set(id, &sport.to_be_bytes(), &mut d) {
                        bits |= Rewritten::ICMP_ID;
                    }
                }
                outer.add(d);
                if *pseudo {
                    d.add(addrs);
                }
                update(csum, Csum::Plain, d, outer);
            }
            L4::None => {}
        }
        bits
    }
}

// ---------------------------------------------------------------------------------------
// The rewrites.

/// `frame[start..end]` split at `mid`, or `None` unless `start <= mid <= end <= len`.
#[inline(always)]
fn split2(
    frame: &mut [u8],
    start: usize,
    mid: usize,
    end: usize,
) -> Option<(&mut [u8], &mut [u8])> {
    frame
        .get_mut(start..end)?
        .split_at_mut_checked(mid.checked_sub(start)?)
}

/// NAT's two writes on a named header field ([`At`], made by `at!` from a view's byte
/// range): set it to a new value, and update a checksum, each adding the change to a
/// [`Delta`]. Offsets are checked against the header array when the code is built.
trait NatField<const N: usize> {
    /// Sets the field to `new` if it differs, adding the change to `delta`.
    fn set<const M: usize>(h: &mut [u8; M], new: &[u8; N], delta: &mut Delta) -> bool;
}

impl<const O: usize, const N: usize> NatField<N> for At<O, N>
where
    [u8; N]: Field,
{
    #[inline(always)]
    fn set<const M: usize>(h: &mut [u8; M], new: &[u8; N], delta: &mut Delta) -> bool {
        let old = Self::get(h);
        if old == *new {
            return false;
        }
        Field::change(&old, new, delta);
        Self::put(h, new);
        true
    }
}

/// A checksum field of a header array (see [`NatField`]).
trait CsumField {
    /// Applies `delta` to the checksum (see [`update`]).
    fn update<const M: usize>(h: &mut [u8; M], kind: Csum, delta: Delta);
}

impl<const O: usize> CsumField for At<O, 2> {
    #[inline(always)]
    fn update<const M: usize>(h: &mut [u8; M], kind: Csum, delta: Delta) {
        let mut c = Self::get(h);
        update(&mut c, kind, delta, &mut Delta::default());
        Self::put(h, &c);
    }
}

/// The first 4 bytes of a 16-byte key address.
#[inline(always)]
fn v4(a: &[u8; 16]) -> &[u8; 4] {
    a.first_chunk::<4>().unwrap_or(&[0; 4])
}

/// The bit `b` when `cond`.
#[inline(always)]
fn bit(cond: bool, b: u8) -> u8 {
    if cond {
        b
    } else {
        0
    }
}

/// Sets an IPv4 header's addresses and updates its checksum; adds the address changes to
/// `addrs` (the pseudo-header's, for the L4 checksum). Returns the changed bits.
#[inline(always)]
fn set_v4_addrs(
    h: &mut [u8; ipv4::MIN_HEADER_LEN],
    src: &[u8; 4],
    dst: &[u8; 4],
    addrs: &mut Delta,
) -> u8 {
    let b = bit(
        <at!(ip4::SRC_ADDR)>::set(h, src, addrs),
        Rewritten::SRC_ADDR,
    ) | bit(
        <at!(ip4::DST_ADDR)>::set(h, dst, addrs),
        Rewritten::DST_ADDR,
    );
    if b != 0 {
        <at!(ip4::CHECKSUM)>::update(h, Csum::Plain, *addrs);
    }
    b
}

/// Sets the ports `S` and `D` of an L4 header and updates its checksum `C` (a `kind`
/// checksum) for them and for the address changes `addrs`. Returns the changed bits.
#[inline(always)]
fn set_ports<const M: usize, S, D, C>(
    h: &mut [u8; M],
    sport: &[u8; 2],
    dport: &[u8; 2],
    addrs: Delta,
    kind: Csum,
) -> u8
where
    S: NatField<2>,
    D: NatField<2>,
    C: CsumField,
{
    let mut d = addrs;
    let b = bit(S::set(h, sport, &mut d), Rewritten::SRC_PORT)
        | bit(D::set(h, dport, &mut d), Rewritten::DST_PORT);
    C::update(h, kind, d);
    b
}

/// [`set_ports`] of a TCP header.
#[inline(always)]
fn set_tcp_ports(h: &mut [u8; TCP_FIELDS], sport: &[u8; 2], dport: &[u8; 2], addrs: Delta) -> u8 {
    set_ports::<_, at!(tcpf::SRC_PORT), at!(tcpf::DST_PORT), at!(tcpf::CHECKSUM)>(
        h,
        sport,
        dport,
        addrs,
        Csum::Plain,
    )
}

/// [`set_ports`] of a UDP header (whose zero checksum means none and stays zero).
#[inline(always)]
fn set_udp_ports(h: &mut [u8; SMALL_FIELDS], sport: &[u8; 2], dport: &[u8; 2], addrs: Delta) -> u8 {
    set_ports::<_, at!(udpf::SRC_PORT), at!(udpf::DST_PORT), at!(udpf::CHECKSUM)>(
        h,
        sport,
        dport,
        addrs,
        Csum::Udp,
    )
}

/// An ordinary packet (or a later fragment, or an ICMP error of a non-first fragment):
/// the hot path, straight-line over fixed-size headers.
#[inline(always)]
fn rewrite_plain(
    frame: &mut [u8],
    p: &ParsedPacket,
    t: &ConnKey,
) -> Result<Rewritten, RewriteError> {
    const TRUNC: RewriteError = RewriteError::Truncated;
    let l4_at = usize::from(p.l4_offset);
    let end = l4_at + usize::from(p.l4_len);
    let (ip, l4) = split2(frame, usize::from(p.l3_offset), l4_at, end).ok_or(TRUNC)?;
    let l4_kind = match (p.fragment, &p.l4) {
        (Fragment::Later, _) => None,
        // Address-only, but their checksums cover the pseudo-header.
        (_, L4Summary::Other) if matches!(p.proto, proto::DCCP | proto::UDPLITE) => Some(p.proto),
        (_, L4Summary::Other) => None,
        _ => Some(p.proto),
    };
    // Locate every header before writing anything.
    let mut tcp = None;
    let mut small = None; // UDP or ICMP: 8 bytes
    let mut sctp_ports = None;
    match l4_kind {
        Some(proto::TCP) => tcp = Some(l4.first_chunk_mut::<TCP_FIELDS>().ok_or(TRUNC)?),
        Some(proto::SCTP) => {
            sctp_ports = Some(sctp::prepare(l4, p.fragment, t.sport, t.dport).map_err(from_sctp)?)
        }
        Some(_) => small = Some(l4.first_chunk_mut::<SMALL_FIELDS>().ok_or(TRUNC)?),
        None => {}
    }
    let mut addrs = Delta::default();
    let mut bits = match p.family {
        Family::V4 => {
            let h = ip
                .first_chunk_mut::<{ ipv4::MIN_HEADER_LEN }>()
                .ok_or(TRUNC)?;
            set_v4_addrs(h, v4(&t.src), v4(&t.dst), &mut addrs)
        }
        Family::V6 => {
            let h = ip.first_chunk_mut::<{ ipv6::HEADER_LEN }>().ok_or(TRUNC)?;
            bit(
                <at!(ip6::SRC_ADDR)>::set(h, &t.src, &mut addrs),
                Rewritten::SRC_ADDR,
            ) | bit(
                <at!(ip6::DST_ADDR)>::set(h, &t.dst, &mut addrs),
                Rewritten::DST_ADDR,
            )
        }
    };
    let (sport, dport) = (t.sport.to_be_bytes(), t.dport.to_be_bytes());
    if let Some(s) = sctp_ports {
        let (src, dst) = s.write();
        bits |= bit(src, Rewritten::SRC_PORT) | bit(dst, Rewritten::DST_PORT);
    } else if let Some(h) = tcp {
        bits |= set_tcp_ports(h, &sport, &dport, addrs);
    } else if let Some(h) = small {
        let mut d = Delta::default();
        match (p.proto, p.family) {
            (proto::UDP, _) => bits |= set_udp_ports(h, &sport, &dport, addrs),
            (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
                if p.family == Family::V6 {
                    d = addrs; // the ICMPv6 pseudo-header
                }
                let has_id = match p.family {
                    Family::V4 => icmpv4::has_ident(h[icmpf::TYPE]),
                    Family::V6 => icmpv6::has_ident(h[icmpf::TYPE]),
                };
                if has_id {
                    bits |= bit(
                        <at!(icmpf::IDENT)>::set(h, &sport, &mut d),
                        Rewritten::ICMP_ID,
                    );
                }
                <at!(icmpf::CHECKSUM)>::update(h, Csum::Plain, d);
            }
            // DCCP and UDP-Lite: the checksum at bytes 6..8 covers the pseudo-header (its
            // coverage field bounds only the payload part); the ports are not translated.
            (proto::DCCP | proto::UDPLITE, _) => {
                // Both have their checksum where UDP has its own.
                <at!(udpf::CHECKSUM)>::update(h, Csum::Plain, addrs)
            }
            _ => {}
        }
    }
    Ok(Rewritten(bits))
}

/// An ICMP/ICMPv6 error: outer addresses, the embedded packet, and all their checksums.
#[inline(never)]
fn rewrite_error(
    frame: &mut [u8],
    p: &ParsedPacket,
    t: &ConnKey,
) -> Result<Rewritten, RewriteError> {
    let L4Summary::Icmp(icmp) = p.l4 else {
        return Err(RewriteError::BadInner);
    };
    let inner = icmp.inner.ok_or(RewriteError::BadInner)?;
    if inner.family != p.family || inner.proto != t.proto {
        return Err(RewriteError::BadInner);
    }
    let (l3, l4) = (usize::from(p.l3_offset), usize::from(p.l4_offset));
    let end = l4 + usize::from(p.l4_len);
    let (il3, il4) = (usize::from(inner.l3_offset), usize::from(inner.l4_offset));
    let iend = il4 + usize::from(inner.l4_len);
    // The quote must lie inside the ICMP message, after its header, at even offsets of it
    // (the ICMP checksum sums 16-bit words from the message start).
    if il3 < l4 + 8 || (il3 - l4) % 2 != 0 || il4 < il3 || (il4 - il3) % 2 != 0 || iend > end {
        return Err(RewriteError::BadInner);
    }
    let (outer_ip, rest) = split2(frame, l3, l4, end).ok_or(RewriteError::Truncated)?;
    let (mut icmp_hdr, rest) = rest
        .split_at_mut_checked(il3 - l4)
        .ok_or(RewriteError::BadInner)?;
    let (inner_ip, inner_l4) = rest
        .get_mut(..iend - il3)
        .and_then(|q| q.split_at_mut_checked(il4 - il3))
        .ok_or(RewriteError::BadInner)?;
    let mut outer = Addrs::new(p.family, outer_ip).ok_or(RewriteError::Truncated)?;
    skip(&mut icmp_hdr, icmpf::CHECKSUM.start).ok_or(RewriteError::Truncated)?;
    let icmp_csum = take::<2>(&mut icmp_hdr).ok_or(RewriteError::Truncated)?;
    // A quoted SCTP packet gets its CRC32c recomputed when it is quoted whole (per its own
    // length, not a fragment) and the CRC32c was right.
    let refill_sctp = inner.proto == proto::SCTP
        && quoted_whole(inner.family, inner_ip, inner_l4.len())
        && sctp::quoted_checksum_ok(inner_l4);
    let mut in_addrs = Addrs::new(inner.family, inner_ip).ok_or(RewriteError::BadInner)?;
    let mut in_l4 =
        L4::new(inner.family, inner.proto, &mut *inner_l4).ok_or(RewriteError::BadInner)?;

    // The quoted packet becomes the reverse of the target.
    let src_translated = in_addrs.dst() != t.src;
    let rev = t.reversed();
    let mut quote = Delta::default();
    let (d, ibits) = in_addrs.set(Some(&rev.src), &rev.dst, &mut quote);
    let ibits = ibits | in_l4.set(rev.sport, rev.dport, d, &mut quote);
    if refill_sctp && ibits & (Rewritten::SRC_PORT | Rewritten::DST_PORT) != 0 {
        if let Some((old, new)) = sctp::refill_quoted(inner_l4) {
            Field::change(&old, &new, &mut quote);
        }
    }

    // The outer header, as a packet of this direction.
    let mut unused = Delta::default();
    let (od, bits) = outer.set(src_translated.then_some(&t.src), &t.dst, &mut unused);
    let mut icmp_delta = quote;
    if p.family == Family::V6 {
        icmp_delta.add(od);
    }
    update(icmp_csum, Csum::Plain, icmp_delta, &mut unused);
    Ok(Rewritten(
        bits | if ibits != 0 { Rewritten::INNER } else { 0 },
    ))
}

/// The error of an SCTP port rewrite that [`sctp::prepare`] refused.
fn from_sctp(r: sctp::Refused) -> RewriteError {
    match r {
        sctp::Refused::Truncated => RewriteError::Truncated,
        sctp::Refused::Checksum => RewriteError::SctpChecksum,
        sctp::Refused::Fragment => RewriteError::SctpFragment,
    }
}

/// True when the quoted IP header `ip` and `l4_len` quoted L4 bytes are the whole packet:
/// IPv4 not a fragment with a total length of exactly that; IPv6 without extension
/// headers and a payload length of exactly that.
fn quoted_whole(family: Family, ip: &[u8], l4_len: usize) -> bool {
    let be16 = |at: usize| {
        ip.get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    match family {
        Family::V4 => {
            be16(6).is_some_and(|f| f & 0x3fff == 0) && be16(2) == Some(ip.len() + l4_len)
        }
        Family::V6 => ip.len() == 40 && be16(4) == Some(l4_len),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
