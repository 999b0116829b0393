//! IPv6 fixed header (RFC 8200) and its extension-header chain.
//!
//! [`walk_ext_headers`] follows the chain of hop-by-hop options, routing, fragment,
//! destination options and authentication headers to the upper-layer header, and reports
//! the fragment header if there is one. It stops at a fragment header whose offset is not
//! zero: what follows is the middle of the upper-layer packet, not a header.
//! Hop-by-hop options are accepted anywhere in the chain (lenient, as Open vSwitch's
//! parser is). The walk is linear in the bytes walked: every header is at least 8 bytes.

use super::field::Field;
use super::view::view;
use super::{get_array, get_u16, get_u32, put_u16, put_u32, Error};

/// A sixteen-byte IPv6 address.
pub type Address = [u8; 16];

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Next-header values of the extension headers [`walk_ext_headers`] follows, and two
/// terminal ones.
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload: terminal (encrypted), not walked.
    pub const ESP: u8 = 50;
    pub const AUTH: u8 = 51;
    /// No next header: terminal.
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

/// True for the extension headers [`walk_ext_headers`] walks through.
#[inline(always)]
pub const fn is_ext_header(next_header: u8) -> bool {
    matches!(
        next_header,
        ext::HOP_BY_HOP | ext::ROUTING | ext::FRAGMENT | ext::DEST_OPTS | ext::AUTH
    )
}

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

view! {
    /// A read/write view of an IPv6 packet.
    pub struct Packet;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures that no getter panics and [`Packet::payload`] is inside the buffer (which
    /// may be longer: Ethernet padding).
    ///
    /// Errors: [`Error::Truncated`] if shorter than 40 bytes or than 40 + payload length.
    /// The version is not checked. `set_payload_len` can invalidate the check.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < HEADER_LEN + usize::from(self.payload_len()) {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::VER_TC_FLOW])
    }

    /// The version field (6).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// The traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// The payload length (everything after the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::PAYLOAD_LEN])
    }

    /// The next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// The hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
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

    /// The payload (extension headers and upper layer): 40 .. 40 + payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension-header chain of the payload (see [`walk_ext_headers`]).
    #[inline]
    pub fn ext_chain(&self) -> Result<ExtChain, Error> {
        walk_ext_headers(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, value: u32) {
        put_u32(&mut self.buffer.as_mut()[field::VER_TC_FLOW], value)
    }

    /// Sets the version field.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let raw = self.ver_tc_flow() & 0x0fff_ffff;
        self.set_ver_tc_flow(raw | u32::from(value & 0x0f) << 28);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        let raw = self.ver_tc_flow() & 0xf00f_ffff;
        self.set_ver_tc_flow(raw | u32::from(value) << 20);
    }

    /// Sets the flow label (low 20 bits of `value`).
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        let raw = self.ver_tc_flow() & 0xfff0_0000;
        self.set_ver_tc_flow(raw | (value & 0x000f_ffff));
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::PAYLOAD_LEN], value)
    }

    /// Sets the next header of the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value)
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value)
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fragment header as the walker found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Fragment offset in bytes (a multiple of 8).
    pub offset: u16,
    /// The M (more fragments) flag.
    pub more: bool,
    /// The identification.
    pub ident: u32,
    /// Offset of the fragment header from the start of the IPv6 payload.
    pub header_offset: usize,
}

impl FragmentInfo {
    /// True for an atomic fragment (offset 0, M clear; RFC 6946): a whole packet that
    /// merely carries a fragment header.
    #[inline]
    pub const fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// Where the extension-header chain leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtChain {
    /// The upper-layer protocol (the first next-header value that is not a walked
    /// extension header; for a non-first fragment, the fragment header's next header).
    pub proto: u8,
    /// Offset of the upper-layer header (after the chain) from the start of the payload.
    pub l4_offset: usize,
    /// The (last) fragment header met, if any.
    pub fragment: Option<FragmentInfo>,
}

/// Walks the extension headers of an IPv6 payload, starting with the fixed header's next
/// header `first`, to the upper-layer header.
///
/// Header lengths: hop-by-hop, routing, destination options `(len + 1) × 8`; AH
/// `(len + 2) × 4`; fragment 8. Errors: [`Error::Truncated`] if a header is cut by the
/// end of `payload`.
#[inline]
pub fn walk_ext_headers(first: u8, payload: &[u8]) -> Result<ExtChain, Error> {
    let mut next = first;
    let mut offset = 0usize;
    let mut fragment = None;
    while is_ext_header(next) {
        let rest = payload.get(offset..).ok_or(Error::Truncated)?;
        let h = rest.first_chunk::<8>().ok_or(Error::Truncated)?;
        let len = match next {
            ext::FRAGMENT => {
                let word = u16::from_be_bytes([h[2], h[3]]);
                let info = FragmentInfo {
                    offset: word & 0xfff8,
                    more: word & 1 != 0,
                    ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    header_offset: offset,
                };
                fragment = Some(info);
                if info.offset != 0 {
                    return Ok(ExtChain {
                        proto: h[0],
                        l4_offset: offset + 8,
                        fragment,
                    });
                }
                8
            }
            ext::AUTH => (usize::from(h[1]) + 2) * 4,
            _ => (usize::from(h[1]) + 1) * 8,
        };
        if rest.len() < len {
            return Err(Error::Truncated);
        }
        next = h[0];
        offset += len;
    }
    Ok(ExtChain {
        proto: next,
        l4_offset: offset,
        fragment,
    })
}

/// A read/write view of a generic extension header (hop-by-hop, routing, destination
/// options, AH): next header and length. Its length depends on its kind, so the view
/// knows the kind it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps a buffer holding an extension header of kind `kind` (its next-header value
    /// in the previous header) without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T, kind: u8) -> ExtHeader<T> {
        ExtHeader { buffer, kind }
    }

    /// Wraps and checks with [`ExtHeader::check_len`].
    #[inline]
    pub fn new_checked(buffer: T, kind: u8) -> Result<ExtHeader<T>, Error> {
        let h = Self::new_unchecked(buffer, kind);
        h.check_len()?;
        Ok(h)
    }

    /// Ensures the whole header is in the buffer. Errors: [`Error::Truncated`] if shorter
    /// than 8 bytes or than [`ExtHeader::header_len`].
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < 8 || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The kind this view was made for.
    #[inline]
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// The next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The raw length byte.
    #[inline]
    pub fn len_field(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// The header length in bytes (8 for a fragment header; AH `(len + 2) × 4`; others
    /// `(len + 1) × 8`). Reads only if the buffer has the length byte.
    #[inline]
    pub fn header_len(&self) -> usize {
        let len = self.buffer.as_ref().get(1).copied().map_or(0, usize::from);
        match self.kind {
            ext::FRAGMENT => 8,
            ext::AUTH => (len + 2) * 4,
            _ => (len + 1) * 8,
        }
    }

    /// The header's data after next header and length (options, routing data, …).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[0] = value
    }

    /// Sets the raw length byte.
    #[inline]
    pub fn set_len_field(&mut self, value: u8) {
        self.buffer.as_mut()[1] = value
    }

    /// The header's data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[2..end]
    }
}

mod frag_field {
    use super::Field;
    pub const NXT_HDR: usize = 0;
    pub const RESERVED: usize = 1;
    pub const OFF_M: Field = 2..4;
    pub const IDENT: Field = 4..8;
}

view! {
    /// A read/write view of a fragment header (8 bytes).
    pub struct FragmentHeader;
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Errors: [`Error::Truncated`] if shorter than 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < 8 {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[frag_field::NXT_HDR]
    }

    /// The fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[frag_field::OFF_M]) & 0xfff8
    }

    /// The M (more fragments) flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(&self.buffer.as_ref()[frag_field::OFF_M]) & 1 != 0
    }

    /// The identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[frag_field::IDENT])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Sets the next header and clears the reserved byte.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        let b = self.buffer.as_mut();
        b[frag_field::NXT_HDR] = value;
        b[frag_field::RESERVED] = 0;
    }

    /// Sets the fragment offset in bytes (a multiple of 8), keeping the M flag.
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        let m = get_u16(&self.buffer.as_ref()[frag_field::OFF_M]) & 1;
        put_u16(
            &mut self.buffer.as_mut()[frag_field::OFF_M],
            (value & 0xfff8) | m,
        )
    }

    /// Sets the M flag, keeping the offset (the two reserved bits are cleared).
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let off = self.frag_offset();
        put_u16(
            &mut self.buffer.as_mut()[frag_field::OFF_M],
            off | u16::from(value),
        )
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u32) {
        put_u32(&mut self.buffer.as_mut()[frag_field::IDENT], value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2001:db8::1 -> 2001:db8::2, TC 0xb8, flow 0x12345, hop limit 64, next header
    /// hop-by-hop; payload 24 bytes: HBH (8: PadN) → fragment (8: offset 0, M, id
    /// 0xdeadbeef) → UDP header 8 bytes (1234 -> 53, len 8, csum 0). Then 2 padding bytes.
    /// Built with scapy 2.5.
    static PACKET: [u8; 66] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x18, 0x00, 0x40, // fixed
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
        0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // HBH, PadN(4)
        0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // fragment
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP
        0x00, 0x00, // padding
    ];

    fn addr(last: u8) -> Address {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = last;
        a
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), ext::HOP_BY_HOP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), addr(1));
        assert_eq!(p.dst_addr(), addr(2));
        assert_eq!(p.payload(), &PACKET[40..64]);
        assert_eq!(
            p.ext_chain(),
            Ok(ExtChain {
                proto: 17,
                l4_offset: 16,
                fragment: Some(FragmentInfo {
                    offset: 0,
                    more: true,
                    ident: 0xdead_beef,
                    header_offset: 8
                }),
            })
        );
        let hbh = ExtHeader::new_checked(&PACKET[40..], ext::HOP_BY_HOP).unwrap();
        assert_eq!(hbh.kind(), ext::HOP_BY_HOP);
        assert_eq!(hbh.next_header(), ext::FRAGMENT);
        assert_eq!(hbh.len_field(), 0);
        assert_eq!(hbh.header_len(), 8);
        assert_eq!(hbh.data(), &[1, 4, 0, 0, 0, 0]);
        let f = FragmentHeader::new_checked(&PACKET[48..]).unwrap();
        assert_eq!(f.next_header(), 17);
        assert_eq!(f.frag_offset(), 0);
        assert!(f.more_frags());
        assert_eq!(f.ident(), 0xdead_beef);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 66];
        buf[64] = 0;
        buf[65] = 0;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        p.set_payload_len(24);
        p.set_next_header(ext::HOP_BY_HOP);
        p.set_hop_limit(64);
        p.set_src_addr(addr(1));
        p.set_dst_addr(addr(2));
        let payload = p.payload_mut();
        let mut hbh = ExtHeader::new_unchecked(&mut payload[..8], ext::HOP_BY_HOP);
        hbh.set_next_header(ext::FRAGMENT);
        hbh.set_len_field(0);
        hbh.data_mut().copy_from_slice(&[1, 4, 0, 0, 0, 0]);
        let mut f = FragmentHeader::new_unchecked(&mut payload[8..16]);
        f.set_next_header(17);
        f.set_frag_offset(0);
        f.set_more_frags(true);
        f.set_ident(0xdead_beef);
        payload[16..24].copy_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn check_len_short_fixed_header() {
        assert_eq!(
            Packet::new_checked(&PACKET[..39]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn check_len_payload_beyond_buffer() {
        assert_eq!(
            Packet::new_checked(&PACKET[..63]).err(),
            Some(Error::Truncated)
        );
        assert!(Packet::new_checked(&PACKET[..64]).is_ok());
    }

    #[test]
    fn ext_header_check_len() {
        assert_eq!(
            ExtHeader::new_checked(&PACKET[40..47], ext::HOP_BY_HOP).err(),
            Some(Error::Truncated)
        );
        // Length byte 1 → 16 bytes needed.
        let h = [17u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ExtHeader::new_checked(&h[..], ext::DEST_OPTS).err(),
            Some(Error::Truncated)
        );
        // AH with length 1 → 12 bytes: fits.
        assert_eq!(
            ExtHeader::new_checked(&h[..], ext::AUTH).map(|h| h.header_len()),
            Ok(12)
        );
        assert_eq!(
            FragmentHeader::new_checked(&h[..7]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn walk_all_kinds() {
        // HBH(8) → routing(16) → AH(12) → dest opts(8) → TCP.
        let mut p = [0u8; 44 + 4];
        p[0] = ext::ROUTING;
        p[8] = ext::AUTH;
        p[9] = 1;
        p[24] = ext::DEST_OPTS;
        p[25] = 1;
        p[36] = 6;
        assert_eq!(
            walk_ext_headers(ext::HOP_BY_HOP, &p),
            Ok(ExtChain {
                proto: 6,
                l4_offset: 44,
                fragment: None
            })
        );
        // Cut inside the routing header.
        assert_eq!(
            walk_ext_headers(ext::HOP_BY_HOP, &p[..20]),
            Err(Error::Truncated)
        );
        // Cut before the AH's fixed 8 bytes.
        assert_eq!(
            walk_ext_headers(ext::HOP_BY_HOP, &p[..28]),
            Err(Error::Truncated)
        );
        // No extension header.
        assert_eq!(
            walk_ext_headers(17, &[]),
            Ok(ExtChain {
                proto: 17,
                l4_offset: 0,
                fragment: None
            })
        );
        // ESP and no-next-header are terminal.
        assert_eq!(
            walk_ext_headers(ext::ESP, &p).map(|c| c.proto),
            Ok(ext::ESP)
        );
        assert_eq!(
            walk_ext_headers(ext::NO_NEXT_HEADER, &p).map(|c| c.l4_offset),
            Ok(0)
        );
    }

    #[test]
    fn walk_stops_at_later_fragment() {
        // Fragment (offset 1448, M) whose "next header" is HBH: not walked further.
        let p = [0u8, 0, 0x05, 0xa9, 0, 0, 0, 7, 0xff, 0xff];
        let chain = walk_ext_headers(ext::FRAGMENT, &p).unwrap();
        assert_eq!(chain.proto, ext::HOP_BY_HOP);
        assert_eq!(chain.l4_offset, 8);
        assert_eq!(
            chain.fragment,
            Some(FragmentInfo {
                offset: 1448,
                more: true,
                ident: 7,
                header_offset: 0
            })
        );
        assert!(!chain.fragment.unwrap().is_atomic());
        // Atomic fragment.
        let p = [6u8, 0, 0, 0, 0, 0, 0, 9];
        let chain = walk_ext_headers(ext::FRAGMENT, &p).unwrap();
        assert_eq!(chain.proto, 6);
        assert!(chain.fragment.unwrap().is_atomic());
    }
}
