//! Synthetic traffic for the tracker benchmarks: real Ethernet/IPv4/UDP and TCP frames
//! (checksums filled), one flow per index, stored back to back in 64-byte slots so a
//! benchmark reads them as a stream, the way a worker reads freshly received mbufs.
//!
//! Flow `i` (for `i < 2^30`):
//! * client `10.a.b.c` with `a.b.c` the low 24 bits of `i`, client port
//!   `1024 + ((i >> 24) << 8 | (i & 0xff))` — so the 5-tuple is unique per flow;
//! * server `198.18.0.(1 + i % 4)`, port 53 (UDP) or 443 (TCP);
//! * about one flow in four is TCP ([`is_tcp`]), the others UDP.
//!
//! Per flow there are four frames ([`Kind`]): the first packet (UDP datagram or SYN), the
//! first reply (UDP datagram or SYN+ACK), and the established-phase packets of each
//! direction (UDP datagrams, or pure ACKs that are in window with sequence checking on).

use ctgate::wire::frame_checksums::fill_frame;

/// Bytes per frame slot (one cache line).
pub const SLOT: usize = 64;

/// Which packet of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client → server, first packet: UDP datagram or TCP SYN.
    First,
    /// Server → client, first reply: UDP datagram or TCP SYN+ACK.
    FirstReply,
    /// Client → server once established: UDP datagram or TCP ACK.
    Orig,
    /// Server → client once established: UDP datagram or TCP ACK.
    Reply,
}

/// True when flow `i` is TCP: about one flow in four, picked by a multiplicative hash so
/// that any arithmetic subset of the flows (even/odd halves, per-thread shares) has the
/// same mix.
#[inline]
pub fn is_tcp(i: u32) -> bool {
    i.wrapping_mul(0x9e37_79b1) >> 30 == 3
}

fn client(i: u32) -> ([u8; 4], u16) {
    let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let port = 1024 + (((i >> 24) << 8) | (i & 0xff)) as u16;
    (ip, port)
}

fn server(i: u32) -> ([u8; 4], u16) {
    let ip = [198, 18, 0, 1 + (i % 4) as u8];
    (ip, if is_tcp(i) { 443 } else { 53 })
}

/// Initial sequence numbers of flow `i` (client, server).
fn isns(i: u32) -> (u32, u32) {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 32) as u32, x as u32)
}

/// Writes frame `kind` of flow `i` into `out` and returns its length (60 bytes: the
/// Ethernet minimum without FCS; TCP frames carry 6 bytes of Ethernet padding).
pub fn build(i: u32, kind: Kind, out: &mut [u8; SLOT]) -> usize {
    *out = [0; SLOT];
    let (cip, cport) = client(i);
    let (sip, sport) = server(i);
    let from_client = matches!(kind, Kind::First | Kind::Orig);
    let (src, dst, sp, dp) = if from_client {
        (cip, sip, cport, sport)
    } else {
        (sip, cip, sport, cport)
    };
    let tcp = is_tcp(i);
    // Ethernet.
    out[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, if from_client { 2 } else { 1 }]);
    out[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, if from_client { 1 } else { 2 }]);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4.
    let l4_len: u16 = if tcp { 20 } else { 8 + 18 };
    let total = 20 + l4_len;
    out[14] = 0x45;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[18..20].copy_from_slice(&(i as u16).to_be_bytes());
    out[20] = 0x40; // DF
    out[22] = 64;
    out[23] = if tcp { 6 } else { 17 };
    out[26..30].copy_from_slice(&src);
    out[30..34].copy_from_slice(&dst);
    out[34..36].copy_from_slice(&sp.to_be_bytes());
    out[36..38].copy_from_slice(&dp.to_be_bytes());
    if tcp {
        let (ci, si) = isns(i);
        let (seq, ack, flags) = match kind {
            Kind::First => (ci, 0, 0x02),                                 // SYN
            Kind::FirstReply => (si, ci.wrapping_add(1), 0x12),           // SYN+ACK
            Kind::Orig => (ci.wrapping_add(1), si.wrapping_add(1), 0x10), // ACK
            Kind::Reply => (si.wrapping_add(1), ci.wrapping_add(1), 0x10),
        };
        out[38..42].copy_from_slice(&seq.to_be_bytes());
        out[42..46].copy_from_slice(&ack.to_be_bytes());
        out[46] = 5 << 4;
        out[47] = flags;
        out[48..50].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        out[38..40].copy_from_slice(&l4_len.to_be_bytes());
        for (k, b) in out[42..60].iter_mut().enumerate() {
            *b = b'a' + k as u8;
        }
    }
    let len = 60;
    // The frame is well formed by construction; a failure would be a bug in this builder.
    fill_frame(&mut out[..len]).expect("benchmark frame parses");
    len
}

/// Frames in 64-byte slots, read back as slices.
#[derive(Default)]
pub struct FrameBuf {
    data: Vec<[u8; SLOT]>,
    lens: Vec<u8>,
}

impl FrameBuf {
    /// An empty buffer with room for `n` frames.
    pub fn with_capacity(n: usize) -> FrameBuf {
        FrameBuf {
            data: Vec::with_capacity(n),
            lens: Vec::with_capacity(n),
        }
    }

    /// Frame `kind` of each flow in `flows`, in that order.
    pub fn of_flows(flows: impl ExactSizeIterator<Item = u32>, kind: Kind) -> FrameBuf {
        let mut b = FrameBuf::with_capacity(flows.len());
        for i in flows {
            b.push_flow(i, kind);
        }
        b
    }

    /// Appends frame `kind` of flow `i`.
    pub fn push_flow(&mut self, i: u32, kind: Kind) {
        let mut slot = [0u8; SLOT];
        let n = build(i, kind, &mut slot);
        self.data.push(slot);
        self.lens.push(n as u8);
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Frame `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[i][..self.lens[i] as usize]
    }
}

/// A small, fast, seedable generator (SplitMix64) for shuffles.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value below `n` (`n > 0`; the tiny modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The established-phase frames (both directions) of `flows`, in a shuffled order.
pub fn established_mix(flows: &[u32], seed: u64) -> FrameBuf {
    let mut order: Vec<u64> = flows
        .iter()
        .flat_map(|&i| [(i as u64) << 1, (i as u64) << 1 | 1])
        .collect();
    Rng::new(seed).shuffle(&mut order);
    let mut b = FrameBuf::with_capacity(order.len());
    for o in order {
        let kind = if o & 1 == 0 { Kind::Orig } else { Kind::Reply };
        b.push_flow((o >> 1) as u32, kind);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctgate::wire::frame_checksums::verify_frame;
    use ctgate::wire::parse::{parse_frame, L4Summary};
    use std::collections::HashSet;

    #[test]
    fn frames_parse_with_good_checksums_and_the_claimed_tuples() {
        let mut slot = [0u8; SLOT];
        for i in [0u32, 1, 3, 255, 256, 1 << 24, (1 << 24) + 7, (1 << 30) - 1] {
            for kind in [Kind::First, Kind::FirstReply, Kind::Orig, Kind::Reply] {
                let n = build(i, kind, &mut slot);
                let f = &slot[..n];
                verify_frame(f).unwrap();
                let p = parse_frame(f).unwrap();
                let (cport, sport) = (client(i).1, server(i).1);
                let from_client = matches!(kind, Kind::First | Kind::Orig);
                let ports = match p.l4 {
                    L4Summary::Tcp(t) => {
                        assert!(is_tcp(i));
                        let flags = match kind {
                            Kind::First => 0x02,
                            Kind::FirstReply => 0x12,
                            _ => 0x10,
                        };
                        assert_eq!(t.flags, flags);
                        assert_eq!(t.payload_len, 0);
                        (t.sport, t.dport)
                    }
                    L4Summary::Udp { sport, dport } => {
                        assert!(!is_tcp(i));
                        (sport, dport)
                    }
                    other => panic!("{other:?}"),
                };
                let want = if from_client {
                    (cport, sport)
                } else {
                    (sport, cport)
                };
                assert_eq!(ports, want);
                assert_eq!(p.src[0], if from_client { 10 } else { 198 });
            }
        }
    }

    #[test]
    fn every_flow_has_its_own_tuple_and_a_quarter_are_tcp() {
        let n = 300_000u32;
        let tuples: HashSet<([u8; 4], u16, [u8; 4], u16)> = (0..n)
            .map(|i| {
                let (c, cp) = client(i);
                let (s, sp) = server(i);
                (c, cp, s, sp)
            })
            .collect();
        assert_eq!(tuples.len(), n as usize);
        for (what, set) in [
            ("all", (0..n).collect::<Vec<_>>()),
            ("even", (0..n).step_by(2).collect()),
            ("odd", (1..n).step_by(2).collect()),
        ] {
            let tcp = set.iter().filter(|&&i| is_tcp(i)).count() as f64 / set.len() as f64;
            assert!((tcp - 0.25).abs() < 0.01, "{what}: {tcp}");
        }
        // Beyond 2^24 the port carries the high bits.
        assert_ne!(client(5), client(5 + (1 << 24)));
    }

    #[test]
    fn established_mix_has_both_directions_of_each_flow_shuffled() {
        let flows: Vec<u32> = (0..1000).collect();
        let b = established_mix(&flows, 1);
        assert_eq!(b.len(), 2000);
        let mut seen = HashSet::new();
        let mut in_order = 0;
        let mut prev = None;
        for k in 0..b.len() {
            let p = parse_frame(b.get(k)).unwrap();
            let (sp, dp) = match p.l4 {
                L4Summary::Tcp(t) => (t.sport, t.dport),
                L4Summary::Udp { sport, dport } => (sport, dport),
                other => panic!("{other:?}"),
            };
            assert!(seen.insert((p.src, p.dst, sp, dp)));
            let client = if p.src[0] == 10 { p.src } else { p.dst };
            let c = u32::from_be_bytes([0, client[1], client[2], client[3]]);
            // Neighbours in creation order (or the two directions of one flow) are rare
            // in a shuffle: about 3 in 2000.
            if prev.is_some_and(|x: u32| x == c || x + 1 == c) {
                in_order += 1;
            }
            prev = Some(c);
        }
        assert_eq!(seen.len(), 2000);
        assert!(in_order < 20, "not shuffled: {in_order}");
    }
}
