//! What a completed datagram looks like to the tracker: the first fragment's parse with the
//! datagram's real L4 length, and whether the L4 checksum over the whole datagram holds.

use crate::wire::checksum;
use crate::wire::parse::{parse_frame, proto, Family, Fragment, L4Summary, ParsedPacket};

/// The tracker's view of a reassembled datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramSummary {
    /// The first fragment's parse (offsets into the first fragment's frame), with
    /// `fragment` = [`Fragment::None`], `l4_len` = the datagram's whole L4 length and, for
    /// TCP, `payload_len` = the datagram's TCP payload.
    pub parsed: ParsedPacket,
    /// The L4 checksum verified over the whole datagram (pseudo-header included). True for
    /// protocols without one and for IPv4 UDP sent without a checksum (0).
    pub l4_checksum_ok: bool,
    /// Bytes of the datagram unfragmented (IPv4 total length; IPv6 40 + payload length,
    /// without the fragment header).
    pub ip_len: u32,
}

/// Why a complete set of fragments does not make a trackable datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryError {
    /// The first fragment no longer parses, or its L4 header is longer than the datagram
    /// (RFC 1858: the first fragment must hold the whole L4 header).
    L4Header,
}

/// Builds the summary from the first fragment's frame (`first`, its data starting at
/// `first_data_at`), the datagram's data length `total` (the fragmentable part) and
/// `rest_sum`, the ones'-complement sum ([`checksum::data`]) of the data of every other
/// fragment (each but the last carries a multiple of 8 bytes, so their 16-bit words line
/// up across fragment boundaries).
pub fn summarize(
    first: &[u8],
    first_data_at: usize,
    total: u32,
    rest_sum: u16,
) -> Result<DatagramSummary, SummaryError> {
    const BAD: SummaryError = SummaryError::L4Header;
    let mut parsed = parse_frame(first).map_err(|_| BAD)?;
    if parsed.fragment != Fragment::First {
        return Err(BAD);
    }
    let l4_at = usize::from(parsed.l4_offset);
    let before_l4 = l4_at.checked_sub(first_data_at).ok_or(BAD)? as u32;
    let l4_total = total.checked_sub(before_l4).ok_or(BAD)?;
    let l3 = usize::from(parsed.l3_offset);
    // The unfragmented datagram: headers before the data, the data, no fragment header.
    let frag_header = if parsed.family == Family::V6 { 8 } else { 0 };
    let ip_len = (first_data_at - l3) as u32 + total - frag_header;
    if l4_total > u32::from(u16::MAX) {
        return Err(BAD);
    }
    parsed.fragment = Fragment::None;
    parsed.l4_len = l4_total as u16;
    let first_l4 = first.get(l4_at..).ok_or(BAD)?;
    match &mut parsed.l4 {
        L4Summary::Tcp(t) => {
            let hl = first_l4.get(12).map(|b| u32::from(b >> 4) * 4).ok_or(BAD)?;
            t.payload_len = l4_total.checked_sub(hl).ok_or(BAD)? as u16;
        }
        L4Summary::Udp { .. } => {
            let ulen = first_l4
                .first_chunk::<8>()
                .map(|h| u32::from(u16::from_be_bytes([h[4], h[5]])))
                .ok_or(BAD)?;
            if ulen > l4_total {
                return Err(BAD);
            }
        }
        _ => {}
    }

    let acc = checksum::combine(&[checksum::data(first_l4), rest_sum]);
    let len16 = l4_total as u16;
    let pseudo = match parsed.family {
        Family::V4 => {
            let (s, d) = (v4(&parsed.src), v4(&parsed.dst));
            checksum::pseudo_header_v4(&s, &d, parsed.proto, len16)
        }
        Family::V6 => checksum::pseudo_header_v6(&parsed.src, &parsed.dst, parsed.proto, l4_total),
    };
    let csum_field = |at: usize| {
        first_l4
            .get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let l4_checksum_ok = match (parsed.proto, parsed.family) {
        (proto::TCP, _) => checksum::combine(&[pseudo, acc]) == 0xffff,
        (proto::UDP, Family::V4) if csum_field(6) == 0 => true,
        (proto::UDP, _) => checksum::combine(&[pseudo, acc]) == 0xffff,
        (proto::ICMP, Family::V4) => acc == 0xffff,
        (proto::ICMPV6, Family::V6) => checksum::combine(&[pseudo, acc]) == 0xffff,
        _ => true,
    };
    Ok(DatagramSummary {
        parsed,
        l4_checksum_ok,
        ip_len,
    })
}

fn v4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}
