//! TCP header (RFC 9293) and its options.
//!
//! The view's buffer is the TCP segment: header, options and payload, and nothing more
//! (slice it to the IP payload, without Ethernet padding), since the checksum and
//! [`Packet::payload`] run to the end of the buffer.

use super::checksum;
use super::field::Field;
use super::proto::tcp_flags;
use super::view::{l4_ports, view};
use super::{get_u16, get_u32, put_u16, put_u32, Error};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::URGENT.end;

/// Largest window-scale shift (RFC 7323 §2.3); larger values are clamped to it.
pub const MAX_WINDOW_SCALE: u8 = 14;

/// TCP option kinds.
pub mod option_kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// Named byte ranges of the header, for the getters and setters here and for
/// [`super::fixed::At`] (`at!`) on fixed-size header arrays.
pub mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high nibble), reserved bits, and the AccECN/NS bit (low bit).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

view! {
    /// A read/write view of a TCP segment.
    pub struct Packet;
}

// src_port, dst_port, set_src_port, set_dst_port (bytes 0..4, as in TCP, UDP and SCTP).
l4_ports!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures no getter panics and the options and payload are inside the buffer.
    ///
    /// Errors: [`Error::Truncated`] if shorter than 20 bytes or than the header length;
    /// [`Error::Malformed`] if the data offset is below 5. `set_header_len` can
    /// invalidate the check.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            Err(Error::Truncated)
        } else if self.header_len() < MIN_HEADER_LEN {
            Err(Error::Malformed)
        } else if len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    /// The acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// The header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte (see [`tcp_flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The NS / AccECN bit (low bit of byte 12).
    #[inline]
    pub fn ns(&self) -> bool {
        self.buffer.as_ref()[field::DATA_OFF] & 1 != 0
    }

    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & tcp_flags::FIN != 0
    }

    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & tcp_flags::SYN != 0
    }

    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & tcp_flags::RST != 0
    }

    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & tcp_flags::PSH != 0
    }

    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & tcp_flags::ACK != 0
    }

    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & tcp_flags::URG != 0
    }

    /// ECE.
    #[inline]
    pub fn ece(&self) -> bool {
        self.flags() & tcp_flags::ECE != 0
    }

    /// CWR.
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags() & tcp_flags::CWR != 0
    }

    /// The window (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The raw options (bytes 20 .. header length).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// An iterator over the options.
    #[inline]
    pub fn options_iter(&self) -> Options<'_> {
        Options::new(self.options())
    }

    /// The payload (header length .. end of buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// True if the checksum is correct for an IPv4 pseudo-header.
    #[inline]
    pub fn verify_checksum_v4(&self, src: &[u8; 4], dst: &[u8; 4]) -> bool {
        checksum::tcp_v4(src, dst, self.buffer.as_ref()) == self.checksum()
    }

    /// True if the checksum is correct for an IPv6 pseudo-header.
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::tcp_v6(src, dst, self.buffer.as_ref()) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        put_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], value)
    }

    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        put_u32(&mut self.buffer.as_mut()[field::ACK_NUM], value)
    }

    /// Sets the header length in bytes (stored as data offset `value / 4`), keeping the
    /// NS bit and clearing the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (((value / 4) as u8) << 4) | (*b & 1);
    }

    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value
    }

    /// Sets the NS / AccECN bit.
    #[inline]
    pub fn set_ns(&mut self, value: bool) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & !1) | u8::from(value);
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::WIN_SIZE], value)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        put_u16(&mut self.buffer.as_mut()[field::URGENT], value)
    }

    /// The raw options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }

    /// Computes and stores the checksum with an IPv4 pseudo-header.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        let c = checksum::tcp_v4(src, dst, self.buffer.as_ref());
        self.set_checksum(c)
    }

    /// Computes and stores the checksum with an IPv6 pseudo-header.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let c = checksum::tcp_v6(src, dst, self.buffer.as_ref());
        self.set_checksum(c)
    }
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0); the iterator ends after it.
    EndOfList,
    /// No-operation padding (kind 1).
    NoOperation,
    /// Maximum segment size (kind 2, length 4).
    MaxSegmentSize(u16),
    /// Window scale shift (kind 3, length 3), as sent (not clamped).
    WindowScale(u8),
    /// SACK permitted (kind 4, length 2).
    SackPermitted,
    /// SACK blocks (kind 5): pairs of big-endian (left, right) 32-bit edges.
    SackRange(&'a [u8]),
    /// Timestamps (kind 8, length 10).
    Timestamp { tsval: u32, tsecr: u32 },
    /// Any other kind, with its data (after kind and length).
    Unknown { kind: u8, data: &'a [u8] },
}

/// Iterator over TCP options.
///
/// Yields `Err(Error::Malformed)` for an option whose length byte is missing, below 2 or
/// beyond the options, and then stops; and for a known kind with the wrong length (MSS
/// ≠ 4, window scale ≠ 3, SACK-permitted ≠ 2, timestamps ≠ 10, SACK not 2 + 8n), after
/// which it continues with the next option.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    data: &'a [u8],
}

impl<'a> Options<'a> {
    /// Iterates over raw option bytes.
    #[inline]
    pub const fn new(data: &'a [u8]) -> Options<'a> {
        Options { data }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<TcpOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.data.split_first()?;
        match kind {
            option_kind::END_OF_LIST => {
                self.data = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            option_kind::NO_OPERATION => {
                self.data = rest;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let len = rest.first().map_or(0, |&l| usize::from(l));
        let Some((option, tail)) = (len >= 2)
            .then(|| self.data.split_at_checked(len))
            .flatten()
        else {
            self.data = &[];
            return Some(Err(Error::Malformed));
        };
        self.data = tail;
        let data = option.get(2..).unwrap_or_default();
        let item = match (kind, data) {
            (option_kind::MSS, &[a, b]) => TcpOption::MaxSegmentSize(u16::from_be_bytes([a, b])),
            (option_kind::WINDOW_SCALE, &[s]) => TcpOption::WindowScale(s),
            (option_kind::SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (option_kind::SACK, d) if d.len() & 7 == 0 && !d.is_empty() => TcpOption::SackRange(d),
            (option_kind::TIMESTAMP, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamp {
                tsval: u32::from_be_bytes([a, b, c, d]),
                tsecr: u32::from_be_bytes([e, f, g, h]),
            },
            (
                option_kind::MSS
                | option_kind::WINDOW_SCALE
                | option_kind::SACK_PERMITTED
                | option_kind::SACK
                | option_kind::TIMESTAMP,
                _,
            ) => return Some(Err(Error::Malformed)),
            (kind, data) => TcpOption::Unknown { kind, data },
        };
        Some(Ok(item))
    }
}

/// The window-scale shift in raw option bytes, clamped to [`MAX_WINDOW_SCALE`], the
/// datapath's fast path (no iterator). Like Linux, a window-scale option of the wrong
/// length is skipped, and the scan stops at the end-of-list option or at an option
/// whose length byte is missing, below 2 or beyond the options.
#[inline]
pub fn find_window_scale(mut options: &[u8]) -> Option<u8> {
    loop {
        match options {
            [] | [option_kind::END_OF_LIST, ..] => return None,
            [option_kind::NO_OPERATION, rest @ ..] => options = rest,
            [kind, len, ..] => {
                let len = usize::from(*len);
                if len < 2 || len > options.len() {
                    return None;
                }
                if *kind == option_kind::WINDOW_SCALE && len == 3 {
                    return options.get(2).map(|&s| s.min(MAX_WINDOW_SCALE));
                }
                options = options.get(len..).unwrap_or_default();
            }
            [_] => return None,
        }
    }
}

/// Lowers the MSS option of the TCP `segment` (header first) to `max` when it is above,
/// adjusting the TCP checksum incrementally (RFC 1624); the MSS it had, when it was
/// lowered. Options are walked as [`find_window_scale`] does; an MSS option of the wrong
/// length, a header cut short or no MSS option leave the segment as it is.
pub fn clamp_mss(segment: &mut [u8], max: u16) -> Option<u16> {
    let hl = usize::from(*segment.get(field::DATA_OFF)? >> 4) * 4;
    let mut at = MIN_HEADER_LEN;
    while at < hl {
        let kind = *segment.get(at)?;
        match kind {
            option_kind::END_OF_LIST => return None,
            option_kind::NO_OPERATION => at += 1,
            _ => {
                let len = usize::from(*segment.get(at + 1)?);
                if len < 2 || at + len > hl {
                    return None;
                }
                if kind == option_kind::MSS && len == 4 {
                    let v = segment.get(at + 2..at + 4)?;
                    let old = u16::from_be_bytes([v[0], v[1]]);
                    if old <= max {
                        return None;
                    }
                    let c = segment.get(field::CHECKSUM)?;
                    let c = super::checksum::update_u16(u16::from_be_bytes([c[0], c[1]]), old, max);
                    segment
                        .get_mut(at + 2..at + 4)?
                        .copy_from_slice(&max.to_be_bytes());
                    segment
                        .get_mut(field::CHECKSUM)?
                        .copy_from_slice(&c.to_be_bytes());
                    return Some(old);
                }
                at += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SYN 10.0.0.1:40000 -> 192.0.2.2:80, seq 0x01020304, ack 0, window 65535, urgent 0,
    /// options MSS 1460, SACK-permitted, timestamps (0x11223344, 0), NOP, WS 7;
    /// payload 2 bytes "hi". Checksum 0x2e95 by scapy 2.5.
    static SEGMENT: [u8; 42] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xff,
        0xff, 0x2e, 0x95, 0x00, 0x00, // header
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07, // options
        0x68, 0x69, // payload
    ];
    const SRC: [u8; 4] = [10, 0, 0, 1];
    const DST: [u8; 4] = [192, 0, 2, 2];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), tcp_flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh());
        assert!(!p.urg() && !p.ece() && !p.cwr() && !p.ns());
        assert_eq!(p.window_len(), 65535);
        assert_eq!(p.checksum(), 0x2e95);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &SEGMENT[20..40]);
        assert_eq!(p.payload(), b"hi");
        assert!(p.verify_checksum_v4(&SRC, &DST));
        assert!(!p.verify_checksum_v4(&SRC, &[192, 0, 2, 3]));
        let opts: Vec<_> = p.options_iter().collect();
        assert_eq!(
            opts,
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamp {
                    tsval: 0x1122_3344,
                    tsecr: 0
                }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
        assert_eq!(find_window_scale(p.options()), Some(7));
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 42];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_ns(false);
        p.set_flags(tcp_flags::SYN);
        p.set_window_len(65535);
        p.set_urgent_at(0);
        p.options_mut().copy_from_slice(&SEGMENT[20..40]);
        p.payload_mut().copy_from_slice(b"hi");
        p.fill_checksum_v4(&SRC, &DST);
        assert_eq!(buf, SEGMENT);
    }

    #[test]
    fn ns_bit_and_header_len_are_independent() {
        let mut buf = SEGMENT;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_ns(true);
        assert!(p.ns());
        assert_eq!(p.header_len(), 40);
        p.set_header_len(20);
        assert!(p.ns());
        assert_eq!(buf[12], 0x51);
    }

    #[test]
    fn checksum_v6() {
        let mut src = [0u8; 16];
        src[0] = 0xfe;
        src[1] = 0x80;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        let mut buf = SEGMENT;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum_v6(&src, &dst);
        // scapy 2.5: IPv6(src="fe80::1", dst="fe80::2")/TCP(...) with the same segment.
        assert_eq!(p.checksum(), 0xfd93);
        assert!(p.verify_checksum_v6(&src, &dst));
    }

    #[test]
    fn check_len_short() {
        assert_eq!(
            Packet::new_checked(&SEGMENT[..19]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn check_len_data_offset_below_5() {
        let mut buf = SEGMENT;
        buf[12] = 0x40;
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn check_len_options_cut() {
        assert_eq!(
            Packet::new_checked(&SEGMENT[..39]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&SEGMENT[..40]).map(|p| p.payload().len()),
            Ok(0)
        );
    }

    #[test]
    fn options_malformed() {
        // Length 1 (below 2): error, then stop.
        let v: Vec<_> = Options::new(&[1, 2, 1, 2, 4, 5, 0xb4]).collect();
        assert_eq!(v, vec![Ok(TcpOption::NoOperation), Err(Error::Malformed)]);
        // Length beyond the options.
        let v: Vec<_> = Options::new(&[8, 10, 0, 0]).collect();
        assert_eq!(v, vec![Err(Error::Malformed)]);
        // Missing length byte.
        let v: Vec<_> = Options::new(&[2]).collect();
        assert_eq!(v, vec![Err(Error::Malformed)]);
        // Known kind with a wrong length: error, then continue.
        let v: Vec<_> = Options::new(&[3, 4, 7, 0, 4, 2, 0, 9]).collect();
        assert_eq!(
            v,
            vec![
                Err(Error::Malformed),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::EndOfList)
            ]
        );
        // SACK with one block, unknown kind 30 with 2 data bytes.
        let opts = [5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 30, 4, 0xaa, 0xbb];
        let v: Vec<_> = Options::new(&opts).collect();
        assert_eq!(
            v,
            vec![
                Ok(TcpOption::SackRange(&opts[2..10])),
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[0xaa, 0xbb]
                })
            ]
        );
    }

    #[test]
    fn window_scale_scan() {
        assert_eq!(find_window_scale(&[]), None);
        assert_eq!(find_window_scale(&[1, 1, 3, 3, 9]), Some(9));
        assert_eq!(find_window_scale(&[3, 3, 15]), Some(14)); // clamped
        assert_eq!(find_window_scale(&[3, 3, 200]), Some(14));
        assert_eq!(find_window_scale(&[0, 3, 3, 7]), None); // after end of list
        assert_eq!(find_window_scale(&[3, 4, 7, 0, 3, 3, 5]), Some(5)); // wrong length skipped
        assert_eq!(find_window_scale(&[2, 1, 3, 3, 7]), None); // length < 2 stops
        assert_eq!(find_window_scale(&[2, 9, 3, 3, 7]), None); // length beyond stops
        assert_eq!(find_window_scale(&[3]), None);
        assert_eq!(find_window_scale(&[3, 3]), None);
    }
}

#[cfg(test)]
mod mss_tests {
    use super::*;
    use crate::wire::checksum;

    /// A SYN 10.0.0.2:40000 -> 192.0.2.2:80 with options NOP, NOP, MSS `mss`, window
    /// scale 7 (and NOP), its checksum filled.
    fn syn(mss: u16) -> Vec<u8> {
        let mut t = vec![
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0x02, 0xff, 0xff,
        ];
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&[1, 1, 2, 4]);
        t.extend_from_slice(&mss.to_be_bytes());
        t.extend_from_slice(&[1, 3, 3, 7]);
        t.extend_from_slice(&[0; 4]);
        let c = checksum::tcp_v4(&[10, 0, 0, 2], &[192, 0, 2, 2], &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    #[test]
    fn clamp_mss_lowers_a_larger_mss_with_the_checksum_of_the_new_segment() {
        let mut t = syn(1460);
        assert_eq!(clamp_mss(&mut t, 1360), Some(1460));
        assert_eq!(t, syn(1360), "byte for byte the segment sent with MSS 1360");
    }

    #[test]
    fn clamp_mss_leaves_a_smaller_mss_and_segments_without_one() {
        let mut t = syn(1200);
        assert_eq!(clamp_mss(&mut t, 1360), None);
        assert_eq!(t, syn(1200));
        let mut bare = syn(1460);
        bare[12] = 0x50; // no options
        let before = bare.clone();
        assert_eq!(clamp_mss(&mut bare, 536), None);
        assert_eq!(bare, before);
        let mut cut = syn(1460);
        cut.truncate(23);
        assert_eq!(clamp_mss(&mut cut, 536), None);
    }
}
