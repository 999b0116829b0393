//! UDP header (RFC 768).
//!
//! The datagram is the first [`Packet::len`] bytes of the buffer; anything after (IP
//! padding) is ignored by [`Packet::payload`] and the checksum functions.
//!
//! Over IPv4 a checksum of 0 means "none" and must stay 0 through NAT; a computed 0 is
//! sent as `0xffff` (see [`super::checksum`]).

use super::checksum;
use super::field::Field;
use super::view::{l4_ports, view};
use super::{get_u16, put_u16, Error};

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

view! {
    /// A read/write view of a UDP datagram.
    pub struct Packet;
}

// src_port, dst_port, set_src_port, set_dst_port (bytes 0..4, as in TCP, UDP and SCTP).
l4_ports!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures no getter panics and the datagram (per its length field) is in the buffer.
    ///
    /// Errors: [`Error::Truncated`] if shorter than 8 bytes or than the length field;
    /// [`Error::Malformed`] if the length field is below 8. `set_len` can invalidate it.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Error::Truncated)
        } else if usize::from(self.len()) < HEADER_LEN {
            Err(Error::Malformed)
        } else if len < usize::from(self.len()) {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The checksum field (0 over IPv4: no checksum).
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The datagram: header and payload, per the length field.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The payload: 8 .. length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True if the checksum is correct for an IPv4 pseudo-header, or is 0 (none).
    #[inline]
    pub fn verify_checksum_v4(&self, src: &[u8; 4], dst: &[u8; 4]) -> bool {
        self.checksum() == 0 || checksum::udp_v4(src, dst, self.datagram()) == self.checksum()
    }

    /// True if the checksum is correct for an IPv6 pseudo-header (0 is never correct).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::udp_v6(src, dst, self.datagram()) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::LENGTH], value)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes and stores the checksum with an IPv4 pseudo-header (never 0).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        let c = checksum::udp_v4(src, dst, self.datagram());
        self.set_checksum(c)
    }

    /// Computes and stores the checksum with an IPv6 pseudo-header (never 0).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let c = checksum::udp_v6(src, dst, self.datagram());
        self.set_checksum(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1:5353 -> 192.0.2.53:53, length 12, payload "abcd", checksum 0x59bb
    /// (scapy 2.5), then 2 padding bytes.
    static DATAGRAM: [u8; 14] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x59, 0xbb, b'a', b'b', b'c', b'd', 0, 0,
    ];
    const SRC: [u8; 4] = [10, 0, 0, 1];
    const DST: [u8; 4] = [192, 0, 2, 53];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 5353);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x59bb);
        assert_eq!(p.payload(), b"abcd");
        assert_eq!(p.datagram(), &DATAGRAM[..12]);
        assert!(p.verify_checksum_v4(&SRC, &DST));
        assert!(!p.verify_checksum_v4(&SRC, &[192, 0, 2, 54]));
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 14];
        buf[12] = 0;
        buf[13] = 0;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(5353);
        p.set_dst_port(53);
        p.set_len(12);
        p.payload_mut().copy_from_slice(b"abcd");
        p.fill_checksum_v4(&SRC, &DST);
        assert_eq!(buf, DATAGRAM);
    }

    #[test]
    fn zero_checksum() {
        let mut buf = DATAGRAM;
        buf[6] = 0;
        buf[7] = 0;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum_v4(&SRC, &DST));
        assert!(!p.verify_checksum_v6(&[0; 16], &[0; 16]));
    }

    #[test]
    fn checksum_v6() {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let mut dst = src;
        src[15] = 1;
        dst[15] = 2;
        let mut buf = DATAGRAM;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum_v6(&src, &dst);
        // scapy 2.5: IPv6(src="2001:db8::1", dst="2001:db8::2")/UDP(5353, 53)/"abcd".
        assert_eq!(p.checksum(), 0xca7c);
        assert!(p.verify_checksum_v6(&src, &dst));
    }

    #[test]
    fn check_len_short_header() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..7]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn check_len_length_below_8() {
        let mut buf = DATAGRAM;
        buf[5] = 7;
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn check_len_length_beyond_buffer() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..11]).err(),
            Some(Error::Truncated)
        );
    }
}
