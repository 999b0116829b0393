//! IPv4 address sets the step checks on every packet, four entries at a time.
//!
//! Each forwarded packet asks three times whether an address is the gateway's own (its
//! source, its destination, the destination NAT wrote), once whether it is a connected
//! prefix's broadcast address, and once or twice for its route. Here the entries are
//! stored as columns of four `u32`s and compared all four without a branch (one vector
//! compare each), the search going by blocks of four: the first block is held in place
//! (a small gateway's whole set, no pointer to follow), and a larger table is searched
//! four entries a step instead of one. An unused lane matches nothing.
//!
//! Against the slices of tuples searched one entry at a time that this replaced, with
//! three own ranges and three routes: 16.5 fewer instructions per packet of the step
//! (1k UDP flows, SNAT: 1,497.4 → 1,480.9, `perf/scripts/instr.sh`, perf/RESULTS.md
//! session 23).

/// Entries per block: one 128-bit vector of `u32`s.
const LANES: usize = 4;

/// `items` in blocks of [`LANES`] (`put(block, lane, item)` fills a lane of a block that
/// starts `empty`): the first block (`empty` when there are no items) and the others.
fn blocks<T: Copy, B: Copy>(items: &[T], empty: B, put: impl Fn(&mut B, usize, T)) -> (B, Vec<B>) {
    let mut all = items.chunks(LANES).map(|c| {
        let mut b = empty;
        for (i, &item) in c.iter().enumerate() {
            put(&mut b, i, item);
        }
        b
    });
    (all.next().unwrap_or(empty), all.collect())
}

/// Inclusive ranges of IPv4 addresses (as numbers): [`RangeSet4::contains`].
#[derive(Clone, Debug)]
pub(super) struct RangeSet4 {
    /// The first four ranges, in place (no pointer to follow: a small gateway's all).
    first: RangeBlock,
    /// The others, usually none.
    rest: Vec<RangeBlock>,
}

/// Up to four ranges: `v` is in range `i` when `lo[i] <= v <= hi[i]`. An unused lane
/// has `lo` above `hi`.
#[derive(Clone, Copy, Debug)]
struct RangeBlock {
    lo: [u32; LANES],
    hi: [u32; LANES],
}

impl RangeSet4 {
    /// The set of `ranges` (`(lo, hi)`, inclusive; a range with `lo > hi` holds nothing).
    pub(super) fn new(ranges: &[(u32, u32)]) -> RangeSet4 {
        let ranges: Vec<(u32, u32)> = ranges.iter().copied().filter(|r| r.0 <= r.1).collect();
        let (first, rest) = blocks(&ranges, RangeBlock::EMPTY, |b, i, (lo, hi)| {
            b.lo[i] = lo;
            b.hi[i] = hi;
        });
        RangeSet4 { first, rest }
    }

    /// Is `v` in any of the ranges? (The other blocks' search is a call, made only when
    /// there are any: once inlined as an iterator's `any`, it was a call per packet.)
    #[inline(always)]
    pub(super) fn contains(&self, v: u32) -> bool {
        self.first.holds(v) || (!self.rest.is_empty() && self.rest_holds(v))
    }

    #[inline(never)]
    fn rest_holds(&self, v: u32) -> bool {
        self.rest.iter().any(|b| b.holds(v))
    }
}

impl RangeBlock {
    const EMPTY: RangeBlock = RangeBlock {
        lo: [u32::MAX; LANES],
        hi: [0; LANES],
    };

    /// Is `v` in one of the block's ranges? (Not which: the reduction is one vector test.)
    #[inline(always)]
    fn holds(&self, v: u32) -> bool {
        let mut m = false;
        for i in 0..LANES {
            m |= (self.lo[i] <= v) & (v <= self.hi[i]);
        }
        m
    }
}

/// IPv4 prefixes as `(network, mask)`, in the order given (a routing table's: longest
/// first): [`PrefixList4::first`].
#[derive(Clone, Debug)]
pub(super) struct PrefixList4 {
    /// The first four prefixes, in place.
    first: PrefixBlock,
    /// The others, usually none.
    rest: Vec<PrefixBlock>,
}

/// Four prefixes: `v` is in prefix `i` when `v & mask[i] == net[i]`. Padding has mask 0
/// and network 1, which no address matches.
#[derive(Clone, Copy, Debug)]
struct PrefixBlock {
    net: [u32; LANES],
    mask: [u32; LANES],
}

impl PrefixList4 {
    /// The list of `prefixes` (`(network, mask)`); a network with bits outside its mask
    /// matches nothing, as with the tuples' `v & mask == net`.
    pub(super) fn new(prefixes: &[(u32, u32)]) -> PrefixList4 {
        let (first, rest) = blocks(prefixes, PrefixBlock::EMPTY, |b, i, (net, mask)| {
            b.net[i] = net;
            b.mask[i] = mask;
        });
        PrefixList4 { first, rest }
    }

    /// The index of the first prefix that holds `v`.
    #[inline(always)]
    pub(super) fn first(&self, v: u32) -> Option<usize> {
        let m = self.first.hits(v);
        if m != 0 {
            return Some(m.trailing_zeros() as usize);
        }
        for (k, b) in self.rest.iter().enumerate() {
            let m = b.hits(v);
            if m != 0 {
                return Some((k + 1) * LANES + m.trailing_zeros() as usize);
            }
        }
        None
    }
}

impl PrefixBlock {
    /// No prefix: network 1 under mask 0, which no address matches.
    const EMPTY: PrefixBlock = PrefixBlock {
        net: [1; LANES],
        mask: [0; LANES],
    };

    /// Bit `i` set: `v` is in prefix `i`.
    #[inline(always)]
    fn hits(&self, v: u32) -> u32 {
        let mut m = 0;
        for i in 0..LANES {
            m |= u32::from(v & self.mask[i] == self.net[i]) << i;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_empty_set_holds_nothing_and_an_empty_list_matches_nothing() {
        let s = RangeSet4::new(&[]);
        let l = PrefixList4::new(&[]);
        for v in [0, 1, 0x0a00_0001, u32::MAX] {
            assert!(!s.contains(v));
            assert_eq!(l.first(v), None);
        }
    }

    #[test]
    fn padding_matches_nothing_the_entries_do_not() {
        // One range and one prefix: three unused lanes each.
        let s = RangeSet4::new(&[(0x0a00_0001, 0x0a00_0001)]);
        assert!(s.contains(0x0a00_0001));
        assert!(!s.contains(0x0a00_0002));
        assert!(!s.contains(0));
        assert!(!s.contains(1));
        let l = PrefixList4::new(&[(0xc0a8_0000, 0xffff_0000)]);
        assert_eq!(l.first(0xc0a8_1234), Some(0));
        assert_eq!(l.first(1), None);
        assert_eq!(l.first(0), None);
        // The default route (mask 0) matches every address.
        let l = PrefixList4::new(&[(0xc0a8_0000, 0xffff_0000), (0, 0)]);
        assert_eq!(l.first(0xc0a8_0001), Some(0));
        assert_eq!(l.first(1), Some(1));
        assert_eq!(l.first(0), Some(1));
    }

    /// Addresses near the entries' edges, where an off-by-one would show.
    fn probe() -> impl Strategy<Value = (Vec<(u32, u32)>, Vec<u32>)> {
        let edge = prop_oneof![any::<u32>(), 0u32..4, (u32::MAX - 3)..=u32::MAX];
        (
            proptest::collection::vec((edge.clone(), 0u32..300), 0..20),
            proptest::collection::vec((any::<prop::sample::Index>(), -2i64..3), 1..40),
        )
            .prop_map(|(entries, picks)| {
                let entries: Vec<(u32, u32)> = entries
                    .into_iter()
                    .map(|(lo, len)| (lo, lo.saturating_add(len)))
                    .collect();
                let probes = picks
                    .into_iter()
                    .map(|(ix, d)| {
                        let base = if entries.is_empty() {
                            0
                        } else {
                            let (lo, hi) = entries[ix.index(entries.len())];
                            if d >= 0 {
                                hi
                            } else {
                                lo
                            }
                        };
                        (i64::from(base) + d).clamp(0, i64::from(u32::MAX)) as u32
                    })
                    .collect();
                (entries, probes)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_range_set_answers_as_a_search_of_its_ranges((ranges, probes) in probe()) {
            let s = RangeSet4::new(&ranges);
            for v in probes {
                let want = ranges.iter().any(|&(lo, hi)| lo <= v && v <= hi);
                prop_assert_eq!(s.contains(v), want, "v={:#x} ranges={:x?}", v, ranges);
            }
        }

        #[test]
        fn a_prefix_list_finds_the_first_prefix_a_search_finds(
            (nets, probes) in probe(),
            lens in proptest::collection::vec(0u32..=32, 20),
        ) {
            let prefixes: Vec<(u32, u32)> = nets
                .iter()
                .zip(lens.iter())
                .map(|(&(net, _), &len)| {
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    // Every fourth network keeps its host bits: it must match nothing.
                    if len % 4 == 1 { (net, mask) } else { (net & mask, mask) }
                })
                .collect();
            let l = PrefixList4::new(&prefixes);
            for v in probes {
                let want = prefixes.iter().position(|&(net, mask)| v & mask == net);
                prop_assert_eq!(l.first(v), want, "v={:#x} prefixes={:x?}", v, prefixes);
            }
        }
    }
}
