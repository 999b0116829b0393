//! IPv4 header (RFC 791).

use super::checksum;
use super::field::Field;
use super::view::view;
use super::{get_array, get_u16, put_u16, Error};

/// A four-byte IPv4 address.
pub type Address = [u8; 4];

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;

/// Flag bits and masks of the flags/fragment-offset word (bytes 6..8).
pub mod frag {
    /// Don't fragment.
    pub const DF: u16 = 0x4000;
    /// More fragments.
    pub const MF: u16 = 0x2000;
    /// Fragment offset, in units of 8 bytes.
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

view! {
    /// A read/write view of an IPv4 packet.
    pub struct Packet;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures that no getter panics and that [`Packet::options`] and [`Packet::payload`]
    /// are inside the buffer. The buffer may be longer than the total length (Ethernet
    /// padding); the payload ends at the total length.
    ///
    /// Errors: [`Error::Truncated`] if the buffer is shorter than 20 bytes, than the header
    /// length, or than the total length; [`Error::Malformed`] if the header length is
    /// below 20 (IHL < 5) or the total length below the header length.
    ///
    /// The version is not checked (the caller dispatched on the EtherType and may check
    /// [`Packet::version`]). `set_header_len` and `set_total_len` can invalidate the check.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < MIN_HEADER_LEN {
            Err(Error::Malformed)
        } else if len < header_len {
            Err(Error::Truncated)
        } else if total_len < header_len {
            Err(Error::Malformed)
        } else if len < total_len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The length of the options in bytes (header length − 20, or 0 if IHL < 5).
    #[inline]
    pub fn options_len(&self) -> usize {
        self.header_len().saturating_sub(MIN_HEADER_LEN)
    }

    /// The DSCP (upper 6 bits of the second byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// The ECN bits (lower 2 bits of the second byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// The total length field (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::IDENT])
    }

    /// The raw flags/fragment-offset word (see [`frag`]).
    #[inline]
    pub fn flags_frag(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    /// The don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & frag::DF != 0
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & frag::MF != 0
    }

    /// The fragment offset in bytes (the 13-bit field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & frag::OFFSET_MASK) << 3
    }

    /// True if this is any fragment (MF set or offset non-zero).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (frag::MF | frag::OFFSET_MASK) != 0
    }

    /// The time-to-live field.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol field.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Address {
        get_array(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Address {
        get_array(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The options (bytes 20 .. header length).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: header length .. total length (trailing padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// True if the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify_ipv4_header(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version field.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (stored as IHL = `value / 4`).
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP.
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Sets the ECN bits.
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::LENGTH], value)
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::IDENT], value)
    }

    /// Sets the raw flags/fragment-offset word.
    #[inline]
    pub fn set_flags_frag(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::FLG_OFF], value)
    }

    /// Sets the don't-fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let raw = self.flags_frag() & !frag::DF;
        self.set_flags_frag(if value { raw | frag::DF } else { raw });
    }

    /// Sets the more-fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let raw = self.flags_frag() & !frag::MF;
        self.set_flags_frag(if value { raw | frag::MF } else { raw });
    }

    /// Sets the fragment offset in bytes (a multiple of 8; the low 3 bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        let raw = self.flags_frag() & !frag::OFFSET_MASK;
        self.set_flags_frag(raw | (value >> 3));
    }

    /// Sets the time-to-live field.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value
    }

    /// Sets the protocol field.
    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// Sets the source address (the checksum is not updated).
    #[inline]
    pub fn set_src_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value)
    }

    /// Sets the destination address (the checksum is not updated).
    #[inline]
    pub fn set_dst_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value)
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// The payload (header length .. total length), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = checksum::ipv4_header(self.header());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1 -> 192.0.2.7, IHL 6 (one 4-byte option: NOP NOP NOP EOL), DSCP 46, ECN 1,
    /// total 28, id 0x1234, MF, offset 1480, TTL 63, UDP; checksum 0x7922 (scapy 2.5);
    /// payload 4 bytes; then 2 bytes of Ethernet padding.
    static PACKET: [u8; 30] = [
        0x46, 0xb9, 0x00, 0x1c, 0x12, 0x34, 0x20, 0xb9, 0x3f, 0x11, 0x79, 0x22, 0x0a, 0x00, 0x00,
        0x01, 0xc0, 0x00, 0x02, 0x07, 0x01, 0x01, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options_len(), 4);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 1);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert_eq!(p.flags_frag(), 0x20b9);
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert_eq!(p.ttl(), 63);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.checksum(), 0x7922);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [192, 0, 2, 7]);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 30];
        buf[28] = 0;
        buf[29] = 0;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp(46);
        p.set_ecn(1);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_flags_frag(0);
        p.set_dont_frag(true);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_ttl(63);
        p.set_protocol(17);
        p.set_src_addr([10, 0, 0, 1]);
        p.set_dst_addr([192, 0, 2, 7]);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn flags_are_independent() {
        let mut buf = PACKET;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dont_frag(true);
        assert_eq!(p.flags_frag(), 0x60b9);
        p.set_more_frags(false);
        assert_eq!(p.flags_frag(), 0x40b9);
        p.set_frag_offset(0);
        assert_eq!(p.flags_frag(), 0x4000);
        assert!(!p.is_fragment());
    }

    #[test]
    fn check_len_shorter_than_fixed_header() {
        assert_eq!(
            Packet::new_checked(&PACKET[..19]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn check_len_ihl_below_5() {
        let mut buf = PACKET;
        buf[0] = 0x44;
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn check_len_options_cut() {
        let mut buf = PACKET;
        buf[0] = 0x4f; // 60-byte header in a 30-byte buffer
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Truncated));
    }

    #[test]
    fn check_len_total_below_header() {
        let mut buf = PACKET;
        buf[3] = 23;
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn check_len_total_beyond_buffer() {
        assert_eq!(
            Packet::new_checked(&PACKET[..27]).err(),
            Some(Error::Truncated)
        );
        // Exactly the total length, no padding: fine.
        assert!(Packet::new_checked(&PACKET[..28]).is_ok());
    }

    #[test]
    fn checksum_detects_change() {
        let mut buf = PACKET;
        buf[8] = 62;
        assert!(!Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }
}
