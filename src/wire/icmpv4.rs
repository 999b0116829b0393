//! ICMP for IPv4 (RFC 792).
//!
//! The view's buffer is the ICMP message and nothing more (its checksum covers the whole
//! buffer). Every message has an 8-byte header: type, code, checksum and four bytes
//! whose meaning depends on the type (identifier + sequence number, next-hop MTU,
//! pointer, gateway). Error messages carry the start of the offending packet after it.

use super::checksum;
use super::field::{Field, Rest};
use super::view::{icmp_header, view};
use super::{get_array, get_u16, put_u16, Error};

/// Length of the ICMP header.
pub const HEADER_LEN: usize = field::REST_OF_HEADER.end;

/// ICMP message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const ROUTER_ADVERT: u8 = 9;
    pub const ROUTER_SOLICIT: u8 = 10;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
    pub const INFO_REQUEST: u8 = 15;
    pub const INFO_REPLY: u8 = 16;
}

/// Codes of destination-unreachable messages.
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; the next-hop MTU is in bytes 6..8 (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// True for the error messages that embed an offending packet: destination unreachable,
/// source quench, redirect, time exceeded, parameter problem.
#[inline(always)]
pub const fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DEST_UNREACHABLE
            | msg_type::SOURCE_QUENCH
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

/// True for the queries with an identifier in bytes 4..6: echo, timestamp, information
/// request and their replies.
#[inline(always)]
pub const fn has_ident(t: u8) -> bool {
    matches!(
        t,
        msg_type::ECHO_REPLY
            | msg_type::ECHO_REQUEST
            | msg_type::TIMESTAMP
            | msg_type::TIMESTAMP_REPLY
            | msg_type::INFO_REQUEST
            | msg_type::INFO_REPLY
    )
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
    pub const POINTER: usize = 4;
    pub const MTU: Field = 6..8;
    pub const DATA: Rest = 8..;
}

view! {
    /// A read/write view of an ICMPv4 message.
    pub struct Packet;
}

// msg_code, checksum, rest_of_header, echo_ident, echo_seq_no, is_error, data and
// set_msg_type, set_msg_code, set_checksum, set_rest_of_header, set_echo_ident,
// set_echo_seq_no, data_mut: the header ICMPv4 and ICMPv6 share.
icmp_header!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures no getter or setter panics. Errors: [`Error::Truncated`] if shorter than
    /// the 8-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The message type (see [`msg_type`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The next-hop MTU of a fragmentation-needed message (bytes 6..8).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::MTU])
    }

    /// The pointer of a parameter-problem message (byte 4).
    #[inline]
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// The gateway address of a redirect (bytes 4..8).
    #[inline]
    pub fn gateway(&self) -> [u8; 4] {
        get_array(&self.buffer.as_ref()[field::REST_OF_HEADER])
    }

    /// True if the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the next-hop MTU (bytes 6..8).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::MTU], value)
    }

    /// Sets the parameter-problem pointer (byte 4).
    #[inline]
    pub fn set_pointer(&mut self, value: u8) {
        self.buffer.as_mut()[field::POINTER] = value
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = checksum::icmpv4(self.buffer.as_ref());
        self.set_checksum(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request id 0x1234 seq 1, payload "ping"; checksum by scapy 2.5.
    static ECHO: [u8; 12] = [
        0x08, 0x00, 0x06, 0xfa, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g',
    ];

    /// Fragmentation needed, MTU 1400, embedding the first 28 bytes of an IPv4/UDP
    /// packet 10.0.0.1:1234 -> 192.0.2.1:53 (checksums left zero).
    static FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0x78, // header (checksum filled below)
        0x45, 0x00, 0x05, 0xdc, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x01, 0xc0, 0x00, 0x02, 0x01, // embedded IPv4
        0x04, 0xd2, 0x00, 0x35, 0x05, 0xc8, 0x00, 0x00, // embedded UDP header
    ];

    #[test]
    fn deconstruct_echo() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x06fa);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert!(!p.is_error());
        assert_eq!(p.data(), b"ping");
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct_echo() {
        let mut buf = [0xa5u8; 12];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(1);
        p.data_mut().copy_from_slice(b"ping");
        p.fill_checksum();
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn error_fields() {
        let mut buf = FRAG_NEEDED;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum();
        // scapy 2.5: ICMP(type=3, code=4, nexthopmtu=1400)/Raw(<the 28 embedded bytes>)
        assert_eq!(p.checksum(), 0x55c3);
        assert!(p.verify_checksum());
        assert_eq!(p.msg_type(), msg_type::DEST_UNREACHABLE);
        assert_eq!(p.msg_code(), unreachable::FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert!(p.is_error());
        assert_eq!(p.data(), &FRAG_NEEDED[8..]);
        p.set_rest_of_header(0);
        p.set_pointer(20);
        assert_eq!(p.pointer(), 20);
        assert_eq!(p.gateway(), [20, 0, 0, 0]);
        p.set_next_hop_mtu(1280);
        assert_eq!(p.rest_of_header(), 0x1400_0500);
    }

    #[test]
    fn classification() {
        for t in [3, 4, 5, 11, 12] {
            assert!(is_error(t), "{t}");
            assert!(!has_ident(t), "{t}");
        }
        for t in [0, 8, 13, 14, 15, 16] {
            assert!(has_ident(t), "{t}");
            assert!(!is_error(t), "{t}");
        }
        for t in [1, 2, 6, 7, 9, 10, 17, 255] {
            assert!(!has_ident(t) && !is_error(t), "{t}");
        }
    }

    #[test]
    fn check_len_short() {
        assert_eq!(
            Packet::new_checked(&ECHO[..7]).err(),
            Some(Error::Truncated)
        );
        assert!(Packet::new_checked(&ECHO[..8]).is_ok());
    }
}
