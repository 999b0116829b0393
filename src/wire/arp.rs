//! ARP for IPv4 over Ethernet (RFC 826): the only kind the gateway answers.
//!
//! Layout (28 bytes): hardware type (2), protocol type (2), hardware length (1), protocol
//! length (1), operation (2), sender hardware address (6), sender protocol address (4),
//! target hardware address (6), target protocol address (4).

use super::ethernet::{self, Address as MacAddress};
use super::field::Field;
use super::view::view;
use super::{get_array, get_u16, put_u16, Error};

/// ARP operation codes.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

view! {
    /// A read/write view of an Ethernet/IPv4 ARP packet.
    pub struct Packet;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures no getter or setter panics and that the address fields are where this view
    /// reads them.
    ///
    /// Errors: [`Error::Truncated`] if shorter than 28 bytes; [`Error::Malformed`] if the
    /// hardware/protocol address lengths are not 6 and 4. (The hardware and protocol
    /// types are not checked; see [`Packet::is_ethernet_ipv4`].)
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        if data.len() < PACKET_LEN {
            Err(Error::Truncated)
        } else if data[field::HLEN] != 6 || data[field::PLEN] != 4 {
            Err(Error::Malformed)
        } else {
            Ok(())
        }
    }

    /// Hardware type (1 = Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    /// Protocol type (an EtherType; 0x0800 = IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::PTYPE])
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// True for hardware type Ethernet and protocol type IPv4 (with 6/4 address lengths,
    /// which `check_len` verified).
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HTYPE_ETHERNET && self.protocol_type() == ethernet::ethertype::IPV4
    }

    /// Operation (see [`operation`]).
    #[inline]
    pub fn operation(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::OPER])
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hardware_addr(&self) -> MacAddress {
        get_array(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol (IPv4) address.
    #[inline]
    pub fn sender_protocol_addr(&self) -> [u8; 4] {
        get_array(&self.buffer.as_ref()[field::SPA])
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddress {
        get_array(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol (IPv4) address.
    #[inline]
    pub fn target_protocol_addr(&self) -> [u8; 4] {
        get_array(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::HTYPE], value)
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::PTYPE], value)
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::OPER], value)
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hardware_addr(&mut self, value: MacAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value)
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_protocol_addr(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value)
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, value: MacAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value)
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value)
    }

    /// Writes the fixed Ethernet/IPv4 preamble: hardware type 1, protocol type 0x0800,
    /// lengths 6 and 4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        self.set_hardware_type(HTYPE_ETHERNET);
        self.set_protocol_type(ethernet::ethertype::IPV4);
        self.set_hardware_len(6);
        self.set_protocol_len(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who has 192.168.1.1? Tell 192.168.1.10 (02:00:00:00:00:0a); target MAC zero.
    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0,
        0xa8, 0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert!(p.is_ethernet_ipv4());
        assert_eq!(p.operation(), operation::REQUEST);
        assert_eq!(p.sender_hardware_addr(), [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(p.sender_protocol_addr(), [192, 168, 1, 10]);
        assert_eq!(p.target_hardware_addr(), [0; 6]);
        assert_eq!(p.target_protocol_addr(), [192, 168, 1, 1]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_ethernet_ipv4();
        p.set_operation(operation::REQUEST);
        p.set_sender_hardware_addr([2, 0, 0, 0, 0, 0x0a]);
        p.set_sender_protocol_addr([192, 168, 1, 10]);
        p.set_target_hardware_addr([0; 6]);
        p.set_target_protocol_addr([192, 168, 1, 1]);
        assert_eq!(buf, REQUEST);
    }

    /// Answering in place: the reply swaps sender and target and fills in our MAC.
    #[test]
    fn answer_in_place() {
        let mut buf = REQUEST;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let (sha, spa, tpa) = (
            p.sender_hardware_addr(),
            p.sender_protocol_addr(),
            p.target_protocol_addr(),
        );
        p.set_operation(operation::REPLY);
        p.set_target_hardware_addr(sha);
        p.set_target_protocol_addr(spa);
        p.set_sender_hardware_addr([2, 0, 0, 0, 0, 1]);
        p.set_sender_protocol_addr(tpa);
        assert_eq!(
            buf,
            [
                0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
                0xc0, 0xa8, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0xa8, 0x01, 0x0a,
            ]
        );
    }

    #[test]
    fn check_len_truncated() {
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn check_len_bad_address_lengths() {
        let mut buf = REQUEST;
        buf[4] = 8;
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Malformed));
        let mut buf = REQUEST;
        buf[5] = 16;
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn not_ethernet_ipv4() {
        let mut buf = REQUEST;
        buf[3] = 0x06;
        assert!(!Packet::new_checked(&buf[..]).unwrap().is_ethernet_ipv4());
    }
}
