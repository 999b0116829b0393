//! Compile-time-checked access to the named fields of a fixed-size header.
//!
//! The datapath takes each header it writes as one fixed-size array (`first_chunk_mut`,
//! the one bounds check per header) and then reads and writes its fields at constant
//! offsets. [`At<O, N>`] is the field of `N` bytes at offset `O`; the [`crate::at!`] macro makes
//! it from a view's named byte range (`ipv4::field::SRC_ADDR`, smoltcp's private `mod
//! field` made visible to the crate), so every access names the field it touches. That
//! the field lies inside the array is checked when the code is built (a `const` assert),
//! so no access can panic and none costs a run-time check.
//!
//! This is the one way the datapath writes header bytes: NAT (`nat::rewrite`) and the TTL
//! decrement use it on the frame in place; the views (`Packet<T>` setters) build the
//! frames the gateway originates.

/// The field of `N` bytes at offset `O` of a header array.
pub struct At<const O: usize, const N: usize>;

impl<const O: usize, const N: usize> At<O, N> {
    /// The field's bytes.
    #[inline(always)]
    pub fn get<const M: usize>(h: &[u8; M]) -> [u8; N] {
        const { assert!(O + N <= M) };
        let mut v = [0u8; N];
        v.copy_from_slice(&h[O..O + N]);
        v
    }

    /// Stores `v` into the field.
    #[inline(always)]
    pub fn put<const M: usize>(h: &mut [u8; M], v: &[u8; N]) {
        const { assert!(O + N <= M) };
        h[O..O + N].copy_from_slice(v);
    }
}

impl<const O: usize> At<O, 2> {
    /// The field as a big-endian `u16`.
    #[inline(always)]
    pub fn get_u16<const M: usize>(h: &[u8; M]) -> u16 {
        u16::from_be_bytes(Self::get(h))
    }

    /// Stores `v` big-endian into the field.
    #[inline(always)]
    pub fn put_u16<const M: usize>(h: &mut [u8; M], v: u16) {
        Self::put(h, &v.to_be_bytes())
    }
}

/// The [`At`] of a view's named field: `at!(ipv4::field::TTL)` for a one-byte field (a
/// `usize` offset), `at!(ipv4::field::SRC_ADDR)` for a byte range.
#[macro_export]
macro_rules! at {
    ($f:path, 1) => {
        $crate::wire::fixed::At<{ $f }, 1>
    };
    ($f:path) => {
        $crate::wire::fixed::At<{ $f.start }, { $f.end - $f.start }>
    };
}

#[cfg(test)]
mod tests {
    use crate::wire::{ipv4, tcp};

    #[test]
    fn named_fields_read_and_write_their_bytes() {
        let mut h = [0u8; ipv4::MIN_HEADER_LEN];
        <at!(ipv4::field::SRC_ADDR)>::put(&mut h, &[10, 0, 0, 1]);
        <at!(ipv4::field::TTL, 1)>::put(&mut h, &[64]);
        <at!(ipv4::field::CHECKSUM)>::put_u16(&mut h, 0xbeef);
        assert_eq!(h[12..16], [10, 0, 0, 1]);
        assert_eq!(h[8], 64);
        assert_eq!(h[10..12], [0xbe, 0xef]);
        assert_eq!(<at!(ipv4::field::SRC_ADDR)>::get(&h), [10, 0, 0, 1]);
        assert_eq!(<at!(ipv4::field::CHECKSUM)>::get_u16(&h), 0xbeef);
        let mut t = [0u8; tcp::MIN_HEADER_LEN];
        <at!(tcp::field::DST_PORT)>::put_u16(&mut t, 443);
        assert_eq!(t[2..4], [0x01, 0xbb]);
    }
}
