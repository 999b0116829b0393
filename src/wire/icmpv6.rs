//! ICMPv6 (RFC 4443) and the neighbor discovery messages the gateway answers (RFC 4861).
//!
//! The view's buffer is the ICMPv6 message and nothing more (its checksum, with the IPv6
//! pseudo-header, covers the whole buffer). The header is 8 bytes for every type: type,
//! code, checksum, four type-specific bytes (identifier + sequence number, MTU, pointer,
//! NDP flags). Neighbor solicitations and advertisements add a 16-byte target address
//! at 8..24 and options after it.

use super::checksum;
use super::ethernet::Address as MacAddress;
use super::field::{Field, Rest};
use super::ipv6::Address;
use super::view::{icmp_header, view};
use super::{get_array, put_u32, Error};

/// Length of the common ICMPv6 header.
pub const HEADER_LEN: usize = field::REST_OF_HEADER.end;

/// ICMPv6 message types.
pub mod msg_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// Flags of a neighbor advertisement (byte 4).
pub mod na_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// NDP option types.
pub mod ndp_option {
    pub const SOURCE_LL_ADDR: u8 = 1;
    pub const TARGET_LL_ADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const REDIRECTED_HEADER: u8 = 4;
    pub const MTU: u8 = 5;
}

/// True for the error messages that embed an offending packet (types 1–4).
#[inline(always)]
pub const fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DEST_UNREACHABLE
            | msg_type::PACKET_TOO_BIG
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

/// True for echo request and reply, which carry an identifier in bytes 4..6.
#[inline(always)]
pub const fn has_ident(t: u8) -> bool {
    matches!(t, msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY)
}

/// The fixed part of a message of type `t` (before any options): 24 for neighbor
/// solicitation/advertisement, 16 for router advertisement, 40 for redirect, else 8.
#[inline]
pub const fn fixed_len(t: u8) -> usize {
    match t {
        msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => field::NDP_OPTIONS.start,
        msg_type::ROUTER_ADVERT => 16,
        msg_type::REDIRECT => 40,
        _ => HEADER_LEN,
    }
}

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
    pub const IDENT: Field = 4..6;
    pub const SEQ_NO: Field = 6..8;
    pub const NDP_FLAGS: usize = 4;
    pub const DATA: Rest = 8..;
    pub const NDP_TARGET: Field = 8..24;
    pub const NDP_OPTIONS: Rest = 24..;
}

view! {
    /// A read/write view of an ICMPv6 message.
    pub struct Packet;
}

// msg_code, checksum, rest_of_header, echo_ident, echo_seq_no, is_error, data and
// set_msg_type, set_msg_code, set_checksum, set_rest_of_header, set_echo_ident,
// set_echo_seq_no, data_mut: the header ICMPv4 and ICMPv6 share.
icmp_header!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures no getter or setter panics for the message's type: the buffer holds the
    /// 8-byte header and the type's fixed part ([`fixed_len`]; 24 bytes for NDP neighbor
    /// messages, so [`Packet::ndp_target_addr`] is safe). `set_msg_type` can invalidate
    /// it.
    ///
    /// Errors: [`Error::Truncated`] if shorter than 8 bytes or than the fixed part.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < fixed_len(self.msg_type()) {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The message type (see [`msg_type`]). Reads only if the buffer is not empty
    /// (0 otherwise), so that `check_len` can call it.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref().first().copied().unwrap_or(0)
    }

    /// The MTU of a packet-too-big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// The pointer of a parameter-problem message.
    #[inline]
    pub fn pointer(&self) -> u32 {
        self.rest_of_header()
    }

    /// The flags byte of a neighbor advertisement (see [`na_flags`]).
    #[inline]
    pub fn ndp_flags(&self) -> u8 {
        self.buffer.as_ref()[field::NDP_FLAGS]
    }

    /// The target address of a neighbor solicitation/advertisement (needs the 24 bytes
    /// `check_len` guarantees for those types).
    #[inline]
    pub fn ndp_target_addr(&self) -> Address {
        get_array(&self.buffer.as_ref()[field::NDP_TARGET])
    }

    /// The options of a neighbor solicitation/advertisement (24 .. end).
    #[inline]
    pub fn ndp_options(&self) -> NdpOptions<'_> {
        NdpOptions {
            data: self
                .buffer
                .as_ref()
                .get(field::NDP_OPTIONS)
                .unwrap_or_default(),
        }
    }

    /// The link-layer address of the first option of type `kind`
    /// ([`ndp_option::SOURCE_LL_ADDR`] or [`ndp_option::TARGET_LL_ADDR`]) of a neighbor
    /// message, if there is one of 8 bytes before any malformed option.
    #[inline]
    pub fn ndp_lladdr(&self, kind: u8) -> Option<MacAddress> {
        for option in self.ndp_options() {
            let option = option.ok()?;
            if option.kind == kind {
                return option.data.first_chunk::<6>().copied();
            }
        }
        None
    }

    /// True if the checksum is correct for the given pseudo-header addresses.
    #[inline]
    pub fn verify_checksum(&self, src: &Address, dst: &Address) -> bool {
        checksum::icmpv6(src, dst, self.buffer.as_ref()) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte of a neighbor message and clears the 3 reserved bytes after it.
    #[inline]
    pub fn set_ndp_flags(&mut self, value: u8) {
        put_u32(
            &mut self.buffer.as_mut()[field::REST_OF_HEADER],
            u32::from(value) << 24,
        )
    }

    /// Sets the target address of a neighbor message.
    #[inline]
    pub fn set_ndp_target_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::NDP_TARGET].copy_from_slice(&value)
    }

    /// Writes a link-layer address option (type `kind`, length 1 = 8 bytes) as the first
    /// option of a neighbor message, at bytes 24..32. Errors: [`Error::Truncated`] if the
    /// buffer is shorter than 32 bytes.
    pub fn set_ndp_lladdr_option(&mut self, kind: u8, addr: MacAddress) -> Result<(), Error> {
        let o = self
            .buffer
            .as_mut()
            .get_mut(field::NDP_OPTIONS.start..field::NDP_OPTIONS.start + 8)
            .ok_or(Error::Truncated)?;
        o[0] = kind;
        o[1] = 1;
        o[2..].copy_from_slice(&addr);
        Ok(())
    }

    /// Computes and stores the checksum with the given pseudo-header addresses.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Address, dst: &Address) {
        let c = checksum::icmpv6(src, dst, self.buffer.as_ref());
        self.set_checksum(c)
    }
}

/// One NDP option: its type and the bytes after type and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdpOption<'a> {
    pub kind: u8,
    pub data: &'a [u8],
}

/// Iterator over NDP options. Yields `Err(Error::Malformed)` and stops at an option of
/// length 0 (RFC 4861 §4.6: such a packet must be discarded) or one running past the end.
#[derive(Clone, Debug)]
pub struct NdpOptions<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let len = self.data.get(1).map_or(0, |&l| usize::from(l) * 8);
        match (len > 0).then(|| self.data.split_at_checked(len)).flatten() {
            Some((option, rest)) => {
                self.data = rest;
                Some(Ok(NdpOption {
                    kind: option[0],
                    data: option.get(2..).unwrap_or_default(),
                }))
            }
            None => {
                self.data = &[];
                Some(Err(Error::Malformed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(prefix: [u8; 2], last: u8) -> Address {
        let mut a = [0u8; 16];
        a[0] = prefix[0];
        a[1] = prefix[1];
        a[15] = last;
        a
    }

    /// Echo request id 0xbeef seq 7, payload "v6", fe80::1 -> fe80::2; checksum by
    /// scapy 2.5.
    static ECHO: [u8; 10] = [0x80, 0x00, 0x00, 0x00, 0xbe, 0xef, 0x00, 0x07, b'v', b'6'];

    /// Neighbor solicitation from fe80::1 for fe80::2 with a source link-layer address
    /// option 02:00:00:00:00:01; sent to the solicited-node multicast ff02::1:ff00:2.
    static NS: [u8; 32] = [
        0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // target
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA option
    ];

    fn solicited_node() -> Address {
        let mut a = addr([0xff, 0x02], 0x02);
        a[11] = 1;
        a[12] = 0xff;
        a
    }

    #[test]
    fn deconstruct_echo() {
        let mut buf = ECHO;
        let (src, dst) = (addr([0xfe, 0x80], 1), addr([0xfe, 0x80], 2));
        Packet::new_unchecked(&mut buf[..]).fill_checksum(&src, &dst);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x4d89);
        assert_eq!(p.echo_ident(), 0xbeef);
        assert_eq!(p.echo_seq_no(), 7);
        assert!(!p.is_error());
        assert_eq!(p.data(), b"v6");
        assert!(p.verify_checksum(&src, &dst));
        // (Swapping source and destination would not change the sum.)
        assert!(!p.verify_checksum(&src, &addr([0xfe, 0x80], 3)));
    }

    #[test]
    fn construct_echo() {
        let mut buf = [0xa5u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(0xbeef);
        p.set_echo_seq_no(7);
        p.data_mut().copy_from_slice(b"v6");
        p.fill_checksum(&addr([0xfe, 0x80], 1), &addr([0xfe, 0x80], 2));
        let mut expect = ECHO;
        expect[2] = 0x4d;
        expect[3] = 0x89;
        assert_eq!(buf, expect);
    }

    #[test]
    fn deconstruct_neighbor_solicitation() {
        let p = Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(p.ndp_flags(), 0);
        assert_eq!(p.ndp_target_addr(), addr([0xfe, 0x80], 2));
        assert_eq!(
            p.ndp_lladdr(ndp_option::SOURCE_LL_ADDR),
            Some([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(p.ndp_lladdr(ndp_option::TARGET_LL_ADDR), None);
        let opts: Vec<_> = p.ndp_options().collect();
        assert_eq!(
            opts,
            vec![Ok(NdpOption {
                kind: 1,
                data: &[2, 0, 0, 0, 0, 1]
            })]
        );
        let mut buf = NS;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum(&addr([0xfe, 0x80], 1), &solicited_node());
        // scapy 2.5: IPv6(src="fe80::1", dst="ff02::1:ff00:2")/ICMPv6ND_NS(tgt="fe80::2")
        //            /ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
        assert_eq!(p.checksum(), 0x7a97);
    }

    /// Answering the solicitation in place: an advertisement (solicited, override) with
    /// our target link-layer address.
    #[test]
    fn construct_neighbor_advertisement() {
        let mut buf = [0xa5u8; 32];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::NEIGHBOR_ADVERT);
        p.set_msg_code(0);
        p.set_ndp_flags(na_flags::SOLICITED | na_flags::OVERRIDE);
        p.set_ndp_target_addr(addr([0xfe, 0x80], 2));
        p.set_ndp_lladdr_option(ndp_option::TARGET_LL_ADDR, [2, 0, 0, 0, 0, 2])
            .unwrap();
        p.fill_checksum(&addr([0xfe, 0x80], 2), &addr([0xfe, 0x80], 1));
        let expect: [u8; 32] = [
            0x88, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, // header (checksum below)
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // target
            0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // TLLA option
        ];
        assert_eq!(buf[4..], expect[4..]);
        assert_eq!(buf[..2], expect[..2]);
        // scapy 2.5: IPv6(src="fe80::2", dst="fe80::1")/ICMPv6ND_NA(tgt="fe80::2", R=0, S=1,
        //            O=1)/ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02")
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 0x181a);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.ndp_flags(), 0x60);
        assert_eq!(
            p.ndp_lladdr(ndp_option::TARGET_LL_ADDR),
            Some([2, 0, 0, 0, 0, 2])
        );
    }

    #[test]
    fn ndp_options_malformed() {
        let mut buf = NS;
        buf[25] = 0; // length 0
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.ndp_options().collect::<Vec<_>>(),
            vec![Err(Error::Malformed)]
        );
        assert_eq!(p.ndp_lladdr(ndp_option::SOURCE_LL_ADDR), None);
        buf[25] = 2; // 16 bytes, past the end
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.ndp_options().collect::<Vec<_>>(),
            vec![Err(Error::Malformed)]
        );
        // Lone type byte at the end.
        let p = Packet::new_checked(&buf[..25]).unwrap();
        assert_eq!(
            p.ndp_options().collect::<Vec<_>>(),
            vec![Err(Error::Malformed)]
        );
        // No options.
        let p = Packet::new_checked(&buf[..24]).unwrap();
        assert_eq!(p.ndp_options().count(), 0);
        // Writing an option needs 32 bytes.
        let mut short = [0u8; 31];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!(p.set_ndp_lladdr_option(2, [1; 6]), Err(Error::Truncated));
    }

    #[test]
    fn classification() {
        for t in 1..=4 {
            assert!(is_error(t) && !has_ident(t), "{t}");
        }
        for t in [128, 129] {
            assert!(has_ident(t) && !is_error(t), "{t}");
        }
        for t in [0, 5, 127, 130, 133, 135, 136, 255] {
            assert!(!has_ident(t) && !is_error(t), "{t}");
        }
        assert_eq!(fixed_len(135), 24);
        assert_eq!(fixed_len(136), 24);
        assert_eq!(fixed_len(134), 16);
        assert_eq!(fixed_len(137), 40);
        assert_eq!(fixed_len(128), 8);
    }

    #[test]
    fn packet_too_big_fields() {
        let mut buf = [0u8; 48];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::PACKET_TOO_BIG);
        p.set_rest_of_header(1280);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.mtu(), 1280);
        assert_eq!(p.pointer(), 1280);
        assert_eq!(p.data().len(), 40);
    }

    #[test]
    fn check_len_short_header() {
        assert_eq!(
            Packet::new_checked(&ECHO[..7]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(Packet::new_checked(&[][..]).err(), Some(Error::Truncated));
    }

    #[test]
    fn check_len_short_neighbor_message() {
        assert_eq!(Packet::new_checked(&NS[..23]).err(), Some(Error::Truncated));
        assert!(Packet::new_checked(&NS[..24]).is_ok());
    }
}
