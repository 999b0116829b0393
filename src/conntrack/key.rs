//! Connection keys and the keyed hash that places them in buckets.

use crate::wire::parse::{Family, InnerPacket, L4Summary, ParsedPacket};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A connection key: one direction's tuple plus the zone.
///
/// For TCP, UDP and SCTP, `sport`/`dport` are the ports; for every other protocol
/// (UDP-Lite, DCCP, GRE, ESP, …) both are 0 (OVS's "generic IP protocol" 3-tuple), and NAT
/// translates those by address only ([`crate::nat`]: the two must agree, or a reply is
/// found under the wrong connection). For ICMP and
/// ICMPv6 echo-like messages, `sport` is the identifier and `dport` is `(type << 8) | code`,
/// so a request key and its reply key differ in the type (8 ↔ 0, 128 ↔ 129).
///
/// The layout is five 64-bit words (addresses, then the packed rest) so comparing and
/// hashing are a handful of word operations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C, align(8))]
pub struct ConnKey {
    /// Source address; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    /// Destination address; IPv4 in the first 4 bytes, the rest zero.
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub zone: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
}

const _: () = assert!(std::mem::size_of::<ConnKey>() == 40);

/// Number of 64-bit words in a [`ConnKey`].
pub const KEY_WORDS: usize = 5;

/// An IPv4 TCP/UDP tuple with its addresses as the 4 bytes a header carries: what NAT
/// writes into a packet of an IPv4 connection ([`crate::conntrack::Conntrack::nat_target_v4`]),
/// read from the record's two key words without building a [`ConnKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleV4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl ConnKey {
    /// The key as five native-endian words (the table stores and compares these).
    #[inline(always)]
    pub fn to_words(&self) -> [u64; KEY_WORDS] {
        let w = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_ne_bytes(a)
        };
        let tail = (self.sport as u64)
            | (self.dport as u64) << 16
            | (self.zone as u64) << 32
            | (self.proto as u64) << 48
            | (self.family as u64) << 56;
        [
            w(&self.src[0..8]),
            w(&self.src[8..16]),
            w(&self.dst[0..8]),
            w(&self.dst[8..16]),
            tail,
        ]
    }

    /// Inverse of [`ConnKey::to_words`].
    #[inline(always)]
    pub fn from_words(w: &[u64; KEY_WORDS]) -> ConnKey {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[0..8].copy_from_slice(&w[0].to_ne_bytes());
        src[8..16].copy_from_slice(&w[1].to_ne_bytes());
        dst[0..8].copy_from_slice(&w[2].to_ne_bytes());
        dst[8..16].copy_from_slice(&w[3].to_ne_bytes());
        let t = w[4];
        ConnKey {
            src,
            dst,
            sport: t as u16,
            dport: (t >> 16) as u16,
            zone: (t >> 32) as u16,
            proto: (t >> 48) as u8,
            family: (t >> 56) as u8,
        }
    }

    /// The key of the opposite direction with no translation: addresses and ports swapped,
    /// ICMP request types turned into their reply types.
    pub fn reversed(&self) -> ConnKey {
        let (sport, dport) = if is_icmp(self.proto) {
            let ty = (self.dport >> 8) as u8;
            let code = self.dport as u8;
            (
                self.sport,
                (icmp_reply_type(self.proto, ty) as u16) << 8 | code as u16,
            )
        } else {
            (self.dport, self.sport)
        };
        ConnKey {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            ..*self
        }
    }

    /// Builds the key of a parsed packet in `zone`.
    #[inline]
    pub fn from_packet(p: &ParsedPacket, zone: u16) -> ConnKey {
        let (sport, dport) = match p.l4 {
            L4Summary::Tcp(t) => (t.sport, t.dport),
            L4Summary::Udp { sport, dport } | L4Summary::Sctp { sport, dport } => (sport, dport),
            L4Summary::Icmp(i) => (i.id, (i.icmp_type as u16) << 8 | i.code as u16),
            L4Summary::Other => (0, 0),
        };
        ConnKey {
            src: p.src,
            dst: p.dst,
            sport,
            dport,
            zone,
            proto: p.proto,
            family: p.family as u8,
        }
    }

    /// Builds the key of the packet embedded in an ICMP error, as it travelled (its own
    /// direction). The error is related to the connection that has this key.
    pub fn from_inner(inner: &InnerPacket, zone: u16) -> ConnKey {
        ConnKey {
            src: inner.src,
            dst: inner.dst,
            sport: inner.sport,
            dport: inner.dport,
            zone,
            proto: inner.proto,
            family: inner.family as u8,
        }
    }

    /// Source address as an `IpAddr`.
    pub fn src_ip(&self) -> IpAddr {
        addr_to_ip(self.family, &self.src)
    }

    /// Destination address as an `IpAddr`.
    pub fn dst_ip(&self) -> IpAddr {
        addr_to_ip(self.family, &self.dst)
    }

    /// ICMP type (for ICMP keys).
    pub fn icmp_type(&self) -> u8 {
        (self.dport >> 8) as u8
    }

    /// ICMP code (for ICMP keys).
    pub fn icmp_code(&self) -> u8 {
        self.dport as u8
    }
}

/// True for ICMP and ICMPv6.
#[inline(always)]
pub fn is_icmp(proto: u8) -> bool {
    proto == crate::wire::parse::proto::ICMP || proto == crate::wire::parse::proto::ICMPV6
}

/// The reply type of an ICMP query type (echo, timestamp, info), or the type itself.
pub fn icmp_reply_type(proto: u8, ty: u8) -> u8 {
    if proto == crate::wire::parse::proto::ICMP {
        match ty {
            8 => 0,
            13 => 14,
            15 => 16,
            0 => 8,
            14 => 13,
            16 => 15,
            t => t,
        }
    } else {
        match ty {
            128 => 129,
            129 => 128,
            t => t,
        }
    }
}

/// Converts a 16-byte address of `family` to an `IpAddr`.
pub fn addr_to_ip(family: u8, a: &[u8; 16]) -> IpAddr {
    if family == Family::V4 as u8 {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*a))
    }
}

/// Converts an `IpAddr` to the 16-byte form used in keys and its family number.
pub fn ip_to_addr(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(v4) => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&v4.octets());
            (a, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

impl fmt::Debug for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}:{}/p{}/z{}",
            self.src_ip(),
            self.sport,
            self.dst_ip(),
            self.dport,
            self.proto,
            self.zone
        )
    }
}

/// The words of `w`'s key with its endpoints swapped (addresses, and ports or identifiers):
/// the reply key of a connection without address translation, except for ICMP, whose
/// reply key also changes the type ([`ConnKey::reversed`]).
#[inline(always)]
pub fn swapped_words(w: &[u64; KEY_WORDS]) -> [u64; KEY_WORDS] {
    let t = w[4];
    let ports = (t & 0xffff) << 16 | (t >> 16) & 0xffff;
    [w[2], w[3], w[0], w[1], (t & !0xffff_ffff) | ports]
}

/// The keyed hash of connection keys.
///
/// A folded 64×64→128-bit multiply per pair of words (the wyhash/foldhash construction),
/// keyed with a random seed drawn at start, so an outside sender choosing ports cannot
/// predict which bucket a key lands in. About a dozen cycles per key; no SipHash on the
/// hot path.
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher {
    seed: [u64; 4],
}

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

impl KeyHasher {
    /// A hasher with a seed from the OS random source (falls back to time and address
    /// entropy if that is unavailable).
    pub fn random() -> KeyHasher {
        let mut buf = [0u8; 32];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
            .is_ok();
        if !ok {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9);
            let local = &buf as *const _ as u64;
            for (i, chunk) in buf.chunks_mut(8).enumerate() {
                let v = folded_multiply(t ^ (i as u64 + 1), local | 1);
                chunk.copy_from_slice(&v.to_ne_bytes());
            }
        }
        let mut seed = [0u64; 4];
        for (i, s) in seed.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            *s = u64::from_ne_bytes(a) | 1;
        }
        KeyHasher { seed }
    }

    /// A hasher with a fixed seed (tests and reproducible benchmarks).
    pub fn with_seed(seed: u64) -> KeyHasher {
        let mut s = [0u64; 4];
        let mut x = seed;
        for v in s.iter_mut() {
            x = folded_multiply(x ^ 0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344);
            *v = x | 1;
        }
        KeyHasher { seed: s }
    }

    /// Hashes a key given as words.
    ///
    /// Symmetric in the key's two endpoints: a key and its reverse (addresses and ports
    /// swapped) hash alike, so a connection without address translation has both keys in
    /// one bucket, where they take one entry ([`super::table`]), as OVS's symmetric
    /// `conn_key_hash`. Each endpoint (address and port) is mixed with the seed on its own,
    /// and the two are combined by addition and exclusive or (both commutative) with the
    /// zone, protocol and family.
    #[inline(always)]
    pub fn hash_words(&self, w: &[u64; KEY_WORDS]) -> u64 {
        const P0: u64 = 0xa076_1d64_78bd_642f;
        const P1: u64 = 0xe703_7ed1_a0b4_28db;
        let (sport, dport) = (w[4] & 0xffff, (w[4] >> 16) & 0xffff);
        let a = folded_multiply(w[0] ^ self.seed[0], w[1] ^ sport ^ self.seed[1]);
        let b = folded_multiply(w[2] ^ self.seed[0], w[3] ^ dport ^ self.seed[1]);
        let c = folded_multiply((w[4] >> 32) ^ self.seed[2], (a ^ b) ^ P0);
        folded_multiply(a.wrapping_add(b) ^ self.seed[3], c ^ P1)
    }

    /// A hash of a key's words that is not symmetric (for tables keyed by one endpoint,
    /// where [`KeyHasher::hash_words`]'s symmetry buys nothing).
    #[inline(always)]
    pub fn hash_directed(&self, w: &[u64; KEY_WORDS]) -> u64 {
        const P0: u64 = 0xa076_1d64_78bd_642f;
        const P1: u64 = 0xe703_7ed1_a0b4_28db;
        let a = folded_multiply(w[0] ^ self.seed[0], w[1] ^ P0);
        let b = folded_multiply(w[2] ^ self.seed[1], w[3] ^ P1);
        let c = folded_multiply(w[4] ^ self.seed[2], a ^ P0);
        folded_multiply(b ^ c ^ self.seed[3], P1 ^ a)
    }

    /// Hashes a key.
    #[inline(always)]
    pub fn hash(&self, k: &ConnKey) -> u64 {
        self.hash_words(&k.to_words())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k4(s: [u8; 4], d: [u8; 4], sp: u16, dp: u16, proto: u8) -> ConnKey {
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src[..4].copy_from_slice(&s);
        dst[..4].copy_from_slice(&d);
        ConnKey {
            src,
            dst,
            sport: sp,
            dport: dp,
            zone: 7,
            proto,
            family: 4,
        }
    }

    #[test]
    fn words_round_trip() {
        let k = k4([10, 0, 0, 2], [192, 0, 2, 2], 40000, 80, 6);
        assert_eq!(ConnKey::from_words(&k.to_words()), k);
    }

    #[test]
    fn reversed_swaps_ports_and_addresses() {
        let k = k4([10, 0, 0, 2], [192, 0, 2, 2], 40000, 80, 6);
        let r = k.reversed();
        assert_eq!(r.src, k.dst);
        assert_eq!(r.dst, k.src);
        assert_eq!((r.sport, r.dport), (80, 40000));
        assert_eq!(r.zone, 7);
        assert_eq!(r.reversed(), k);
    }

    #[test]
    fn reversed_icmp_echo_keeps_id_and_flips_type() {
        let k = k4([10, 0, 0, 2], [192, 0, 2, 2], 0x1234, 8 << 8, 1);
        let r = k.reversed();
        assert_eq!(r.sport, 0x1234);
        assert_eq!(r.icmp_type(), 0);
        assert_eq!(r.icmp_code(), 0);
        let mut k6 = k;
        k6.proto = 58;
        k6.family = 6;
        k6.dport = 128 << 8;
        assert_eq!(k6.reversed().icmp_type(), 129);
    }

    #[test]
    fn hash_depends_on_every_field_and_on_the_seed() {
        let h = KeyHasher::with_seed(1);
        let k = k4([10, 0, 0, 2], [192, 0, 2, 2], 40000, 80, 17);
        let base = h.hash(&k);
        let variants = [
            ConnKey { sport: 40001, ..k },
            ConnKey { dport: 81, ..k },
            ConnKey { zone: 8, ..k },
            ConnKey { proto: 6, ..k },
            // One endpoint's port and address apart: not the reverse.
            ConnKey {
                sport: 80,
                dport: 40000,
                ..k
            },
            ConnKey {
                src: k.dst,
                dst: k.src,
                ..k
            },
        ];
        for v in variants {
            assert_ne!(h.hash(&v), base, "{v:?}");
        }
        assert_ne!(KeyHasher::with_seed(2).hash(&k), base);
    }

    #[test]
    fn a_key_and_its_reverse_hash_alike() {
        let h = KeyHasher::with_seed(1);
        let k = k4([10, 0, 0, 2], [192, 0, 2, 2], 40000, 80, 17);
        assert_eq!(h.hash(&k.reversed()), h.hash(&k));
        assert_eq!(
            ConnKey::from_words(&swapped_words(&k.to_words())),
            k.reversed()
        );
        let mut k6 = k;
        k6.family = 6;
        k6.src[15] = 9;
        k6.dst[8] = 1;
        assert_eq!(h.hash(&k6.reversed()), h.hash(&k6));
        assert_eq!(
            ConnKey::from_words(&swapped_words(&k6.to_words())),
            k6.reversed()
        );
        // ICMP's reply key has another type: not the swapped key.
        let e = k4([10, 0, 0, 2], [192, 0, 2, 2], 0x1234, 8 << 8, 1);
        assert_ne!(
            ConnKey::from_words(&swapped_words(&e.to_words())),
            e.reversed()
        );
    }

    #[test]
    fn hash_spreads_sequential_ports_over_buckets() {
        // 64k keys differing only in the source port must not pile into few of 4096
        // buckets: the fullest bucket stays within a small multiple of the mean (16).
        let h = KeyHasher::with_seed(99);
        let mut counts = vec![0u32; 4096];
        for p in 0..65536u32 {
            let k = k4([10, 0, 0, 2], [192, 0, 2, 2], p as u16, 80, 17);
            counts[(h.hash(&k) & 4095) as usize] += 1;
        }
        let max = *counts.iter().max().unwrap();
        let min = *counts.iter().min().unwrap();
        assert!(max <= 40 && min >= 2, "min {min} max {max}");
    }
}
