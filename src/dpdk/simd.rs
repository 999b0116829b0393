//! The one vector compare the tracker needs, wrapped safe (built without DPDK too): eight
//! 16-bit lanes against one value, as DPDK's `rte_cuckoo_hash` compares a bucket's
//! signatures (`compare_signatures`, SSE2).

/// Bit `i` set (`i` in 0..8): 16-bit lane `i` equals `v`, lanes 0–3 being `w0`'s (its
/// lowest 16 bits first) and 4–7 `w1`'s.
///
/// On x86-64 one vector compare and a byte mask: in the tracker's lookup 25 instructions
/// per packet fewer than the four-lanes-a-word (SWAR) form it replaced; the lane-by-lane
/// loop below, which the compiler leaves scalar, is longer than either
/// (`perf/scripts/instr.sh`, perf/RESULTS.md session 23).
#[inline(always)]
pub fn lanes16_eq(w0: u64, w1: u64, v: u16) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi16, _mm_movemask_epi8, _mm_packs_epi16, _mm_set1_epi16, _mm_set_epi64x,
            _mm_setzero_si128,
        };
        // SAFETY: these intrinsics only need SSE2, which the cfg above requires to be
        // enabled for the whole build (it is part of every x86-64 target's baseline);
        // they take their operands by value and touch no memory.
        unsafe {
            let lanes = _mm_set_epi64x(w1 as i64, w0 as i64);
            let eq = _mm_cmpeq_epi16(lanes, _mm_set1_epi16(v as i16));
            // 0xffff / 0 per lane → 0xff / 0 per byte; the eight bytes' top bits are
            // the mask's low eight bits.
            let bytes = _mm_packs_epi16(eq, _mm_setzero_si128());
            (_mm_movemask_epi8(bytes) as u32) & 0xff
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        lanes16_eq_scalar(w0, w1, v)
    }
}

/// [`lanes16_eq`] lane by lane: the definition (the tests hold the vector form to it),
/// and its form without SSE2.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn lanes16_eq_scalar(w0: u64, w1: u64, v: u16) -> u32 {
    let mut m = 0;
    for i in 0..8 {
        let w = if i < 4 { w0 } else { w1 };
        m |= u32::from((w >> (16 * (i % 4))) as u16 == v) << i;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_lane_answers_for_itself() {
        let w0 = 0x0004_0003_0002_0001u64;
        let w1 = 0x0008_0007_0006_0005u64;
        for i in 0..8u32 {
            assert_eq!(lanes16_eq(w0, w1, i as u16 + 1), 1 << i);
        }
        assert_eq!(lanes16_eq(w0, w1, 0), 0);
        assert_eq!(lanes16_eq(0, 0, 0), 0xff);
        assert_eq!(lanes16_eq(u64::MAX, u64::MAX, 0xffff), 0xff);
        // Signed lanes (the vector compare is of i16s): the top bit is data.
        assert_eq!(
            lanes16_eq(0x8000, 0x8000_0000_0000_0000, 0x8000),
            1 | 1 << 7
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_vector_compare_is_the_lane_by_lane_compare(
            w0: u64,
            w1: u64,
            pick in 0usize..10,
            other: u16,
        ) {
            // The value: one of the lanes (so that some match, repeats included) or any.
            let v = match pick {
                0..=3 => (w0 >> (16 * pick)) as u16,
                4..=7 => (w1 >> (16 * (pick - 4))) as u16,
                _ => other,
            };
            prop_assert_eq!(lanes16_eq(w0, w1, v), lanes16_eq_scalar(w0, w1, v));
        }
    }
}
