//! Ethernet II frames with zero, one or two VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`).
//!
//! Layout: destination (6), source (6), then either the EtherType, or up to two tags of
//! TPID (2) + TCI (2) followed by the EtherType. With `n` tags the header is
//! `14 + 4 * n` bytes and the EtherType sits at `12 + 4 * n`. A third tag is not
//! unwrapped: [`Frame::ethertype`] then returns the VLAN TPID.

use super::field::{Field, Rest};
use super::view::view;
use super::{get_array, get_u16, put_u16, Error};

/// Six-byte MAC address.
pub type Address = [u8; 6];

/// The broadcast MAC address.
pub const BROADCAST: Address = [0xff; 6];

/// EtherType values ctgate knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag (customer tag; also used for both tags of old-style double tagging).
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1ad service tag (outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
}

/// True for the TPIDs of a VLAN tag (`0x8100`, `0x88a8`).
#[inline(always)]
pub const fn is_vlan_tpid(value: u16) -> bool {
    value == ethertype::VLAN || value == ethertype::QINQ
}

/// Most VLAN tags unwrapped.
pub const MAX_VLANS: usize = 2;

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Length of one VLAN tag.
pub const VLAN_TAG_LEN: usize = 4;

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    /// The EtherType of an untagged frame, or the TPID of the first tag.
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

view! {
    /// A read/write view of an Ethernet II frame.
    pub struct Frame;
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Ensures the buffer holds the whole header including its VLAN tags, so that no
    /// getter, and no setter except [`Frame::set_vlan`] on a tag not yet present, panics.
    ///
    /// Errors: [`Error::Truncated`] if shorter than 14 bytes, or than
    /// [`Frame::header_len`] (a tag or the EtherType after a tag is cut).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> Address {
        get_array(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source MAC address.
    #[inline]
    pub fn src_addr(&self) -> Address {
        get_array(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The 16-bit value at bytes 12..14: the EtherType of an untagged frame, the TPID of
    /// the first tag otherwise.
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    /// The number of VLAN tags (0, 1 or 2). Reads only as far as the buffer goes.
    #[inline]
    pub fn vlan_count(&self) -> usize {
        let data = self.buffer.as_ref();
        let mut n = 0;
        while n < MAX_VLANS {
            let at = field::ETHERTYPE.start + VLAN_TAG_LEN * n;
            match data.get(at..at + 2) {
                Some(b) if is_vlan_tpid(get_u16(b)) => n += 1,
                _ => break,
            }
        }
        n
    }

    /// The header length: 14 plus 4 per VLAN tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + VLAN_TAG_LEN * self.vlan_count()
    }

    /// The TPID of tag `n` (0 = outer), if the frame has that tag.
    #[inline]
    pub fn vlan_tpid(&self, n: usize) -> Option<u16> {
        if n < self.vlan_count() {
            let at = field::ETHERTYPE.start + VLAN_TAG_LEN * n;
            Some(get_u16(&self.buffer.as_ref()[at..]))
        } else {
            None
        }
    }

    /// The TCI (PCP 3 bits, DEI 1 bit, VID 12 bits) of tag `n` (0 = outer), if present.
    #[inline]
    pub fn vlan_tci(&self, n: usize) -> Option<u16> {
        if n < self.vlan_count() {
            let at = field::ETHERTYPE.start + VLAN_TAG_LEN * n + 2;
            Some(get_u16(&self.buffer.as_ref()[at..]))
        } else {
            None
        }
    }

    /// The VLAN ID (low 12 bits of the TCI) of tag `n`, if present.
    #[inline]
    pub fn vlan_id(&self, n: usize) -> Option<u16> {
        self.vlan_tci(n).map(|tci| tci & 0x0fff)
    }

    /// The EtherType after the VLAN tags (the payload's protocol).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[self.header_len() - 2..])
    }

    /// The payload after the VLAN tags (including any trailing padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value)
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Address) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value)
    }

    /// Sets bytes 12..14 (EtherType of an untagged frame, TPID of the first tag).
    /// Changing it from or to a VLAN TPID changes the header layout.
    #[inline]
    pub fn set_outer_ethertype(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], value)
    }

    /// Sets the EtherType after the VLAN tags currently in the frame.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        let at = self.header_len() - 2;
        put_u16(&mut self.buffer.as_mut()[at..], value)
    }

    /// Writes VLAN tag `n` (0 = outer, 1 = inner): TPID and TCI at `12 + 4n`. To build a
    /// frame, write the tags outer first, then [`Frame::set_ethertype`].
    ///
    /// Errors: [`Error::Malformed`] if `n > 1` or `tpid` is not a VLAN TPID,
    /// [`Error::Truncated`] if the buffer is shorter than `18 + 4n` bytes.
    pub fn set_vlan(&mut self, n: usize, tpid: u16, tci: u16) -> Result<(), Error> {
        if n >= MAX_VLANS || !is_vlan_tpid(tpid) {
            return Err(Error::Malformed);
        }
        let at = field::ETHERTYPE.start + VLAN_TAG_LEN * n;
        let tag = self
            .buffer
            .as_mut()
            .get_mut(at..at + VLAN_TAG_LEN + 2)
            .ok_or(Error::Truncated)?;
        put_u16(&mut tag[0..2], tpid);
        put_u16(&mut tag[2..4], tci);
        Ok(())
    }

    /// The payload after the VLAN tags, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Untagged: ff:ff:ff:ff:ff:ff <- 02:00:00:00:00:01, IPv4, payload aa bb.
    static UNTAGGED: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0xaa,
        0xbb,
    ];

    /// QinQ: 02::02 <- 02::01, S-tag 88a8 PCP 5 VID 100, C-tag 8100 VID 200, IPv6, payload aa.
    static QINQ: [u8; 23] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0xa0,
        0x64, 0x81, 0x00, 0x00, 0xc8, 0x86, 0xdd, 0xaa,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), BROADCAST);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.outer_ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_count(), 0);
        assert_eq!(f.vlan_tci(0), None);
        assert_eq!(f.vlan_tpid(0), None);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn deconstruct_qinq() {
        let f = Frame::new_checked(&QINQ[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.outer_ethertype(), ethertype::QINQ);
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.vlan_tpid(0), Some(ethertype::QINQ));
        assert_eq!(f.vlan_tci(0), Some(0xa064));
        assert_eq!(f.vlan_id(0), Some(100));
        assert_eq!(f.vlan_tpid(1), Some(ethertype::VLAN));
        assert_eq!(f.vlan_id(1), Some(200));
        assert_eq!(f.vlan_id(2), None);
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.payload(), &[0xaa]);
    }

    #[test]
    fn construct_untagged() {
        let mut buf = [0xa5u8; 16];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(BROADCAST);
        f.set_src_addr([2, 0, 0, 0, 0, 1]);
        f.set_outer_ethertype(ethertype::IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, UNTAGGED);
    }

    #[test]
    fn construct_qinq() {
        let mut buf = [0xa5u8; 23];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr([2, 0, 0, 0, 0, 2]);
        f.set_src_addr([2, 0, 0, 0, 0, 1]);
        f.set_vlan(0, ethertype::QINQ, 0xa064).unwrap();
        f.set_vlan(1, ethertype::VLAN, 200).unwrap();
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut()[0] = 0xaa;
        assert_eq!(buf, QINQ);
    }

    #[test]
    fn set_vlan_errors() {
        let mut buf = [0u8; 17];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        assert_eq!(f.set_vlan(2, ethertype::VLAN, 1), Err(Error::Malformed));
        assert_eq!(f.set_vlan(0, ethertype::IPV4, 1), Err(Error::Malformed));
        assert_eq!(f.set_vlan(0, ethertype::VLAN, 1), Err(Error::Truncated));
        assert_eq!(buf, [0u8; 17]);
    }

    #[test]
    fn check_len_short_header() {
        assert_eq!(
            Frame::new_checked(&UNTAGGED[..13]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Frame::new_checked(&UNTAGGED[..14]).map(|f| f.payload().len()),
            Ok(0)
        );
    }

    #[test]
    fn check_len_cut_tag() {
        // One tag present but its EtherType cut (18 bytes needed).
        assert_eq!(
            Frame::new_checked(&QINQ[..17]).err(),
            Some(Error::Truncated)
        );
        // Second tag cut: 22 bytes needed.
        assert_eq!(
            Frame::new_checked(&QINQ[..21]).err(),
            Some(Error::Truncated)
        );
        assert!(Frame::new_checked(&QINQ[..22]).is_ok());
    }

    #[test]
    fn third_tag_not_unwrapped() {
        let mut buf = QINQ;
        buf[20] = 0x81;
        buf[21] = 0x00;
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.ethertype(), ethertype::VLAN);
    }
}
