//! What a fragment is: its datagram's key, where its data sits in the datagram and in the
//! frame, and the checks every fragment passes before it is held (RFC 791, RFC 8200,
//! OVS `ipf_is_valid_v4_frag` / `ipf_is_valid_v6_frag`).

use crate::wire::parse::{Family, Fragment, ParsedPacket};
use crate::wire::{ipv4, ipv6};

/// Identifies a datagram being reassembled: OVS's `ipf_list_key` (addresses, IP
/// identification, zone; the protocol for IPv4 only, as OVS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ident: u32,
    pub zone: u16,
    /// IPv4 protocol; 0 for IPv6.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
}

/// One fragment, as the table needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    pub key: FragKey,
    /// Offset of this fragment's data in the datagram's fragmentable part.
    pub start: u32,
    /// Bytes of data this fragment carries.
    pub len: u32,
    /// No more fragments follow (MF / M clear).
    pub last: bool,
    /// Absolute offset of the fragment's data in the frame.
    pub data_at: usize,
    /// Bytes of the frame worth keeping: up to the end of the IP packet.
    pub frame_len: usize,
    /// IP packet size (header, extension headers and data), what the minimum fragment size
    /// is compared with.
    pub ip_len: usize,
    /// Largest data end the IP length fields can express for this datagram.
    pub max_end: u32,
}

/// Why a fragment cannot be used at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFragment {
    /// Not a fragment, or its headers do not add up.
    Malformed,
}

/// Reads the fragment fields of a frame `parse_frame` classified as a fragment.
///
/// Checks: a non-last fragment carries a multiple of 8 data bytes (RFC 791, RFC 8200
/// §4.5); every fragment carries data; the datagram's end stays within what the IP
/// length field can state (65,535 bytes of IPv4 packet, of IPv6 payload).
pub fn extract(frame: &[u8], p: &ParsedPacket, zone: u16) -> Result<FragInfo, BadFragment> {
    const BAD: BadFragment = BadFragment::Malformed;
    if p.fragment == Fragment::None {
        return Err(BAD);
    }
    let l3 = usize::from(p.l3_offset);
    let h = frame
        .get(l3..)
        .and_then(|b| b.first_chunk::<{ ipv6::HEADER_LEN }>().copied())
        .or_else(|| {
            // An IPv4 header may be the last 20 bytes; pad to read the fixed fields.
            let b = frame.get(l3..)?.first_chunk::<{ ipv4::MIN_HEADER_LEN }>()?;
            let mut out = [0u8; ipv6::HEADER_LEN];
            out[..ipv4::MIN_HEADER_LEN].copy_from_slice(b);
            Some(out)
        })
        .ok_or(BAD)?;
    let info = match p.family {
        Family::V4 => {
            let word = u16::from_be_bytes([h[6], h[7]]);
            let ihl = usize::from(p.l4_offset).checked_sub(l3).ok_or(BAD)?;
            let len = u32::from(p.l4_len);
            FragInfo {
                key: FragKey {
                    src: p.src,
                    dst: p.dst,
                    ident: u32::from(u16::from_be_bytes([h[4], h[5]])),
                    zone,
                    proto: h[9],
                    family: 4,
                },
                start: u32::from(word & ipv4::frag::OFFSET_MASK) * 8,
                len,
                last: word & ipv4::frag::MF == 0,
                data_at: usize::from(p.l4_offset),
                frame_len: usize::from(p.l4_offset) + usize::from(p.l4_len),
                ip_len: ihl + usize::from(p.l4_len),
                max_end: 65_535u32.saturating_sub(ihl as u32),
            }
        }
        Family::V6 => {
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let payload = frame
                .get(l3 + ipv6::HEADER_LEN..l3 + ipv6::HEADER_LEN + plen)
                .ok_or(BAD)?;
            let chain = ipv6::walk_ext_headers(h[6], payload).map_err(|_| BAD)?;
            let f = chain.fragment.ok_or(BAD)?;
            let unfrag = f.header_offset + 8;
            let len = plen.checked_sub(unfrag).ok_or(BAD)?;
            FragInfo {
                key: FragKey {
                    src: p.src,
                    dst: p.dst,
                    ident: f.ident,
                    zone,
                    proto: 0,
                    family: 6,
                },
                start: u32::from(f.offset),
                len: len as u32,
                last: !f.more,
                data_at: l3 + ipv6::HEADER_LEN + unfrag,
                frame_len: l3 + ipv6::HEADER_LEN + plen,
                ip_len: ipv6::HEADER_LEN + plen,
                max_end: 65_535u32.saturating_sub(unfrag as u32),
            }
        }
    };
    if info.len == 0
        || (!info.last && info.len % 8 != 0)
        || info.start + info.len > info.max_end
        || info.frame_len > frame.len()
    {
        return Err(BAD);
    }
    Ok(info)
}
