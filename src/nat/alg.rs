//! The NAT half of the ALGs, on frames: an FTP announcement's address rewritten to the
//! translated one (OVS's `repl_ftp_v4_addr`/`repl_ftp_v6_addr`, without its 2026
//! `replace_substring` overflow), and the TCP sequence/acknowledgement numbers of a
//! connection whose payload length a rewrite changed moved by its skew (OVS's
//! `adj_seqnum`, Linux's `nf_nat_seq_adjust`). The tracker decides what to rewrite
//! ([`crate::conntrack::alg::track`]); the gateway step calls these.
//!
//! Invariants: [`rewrite_ftp_addr`] never writes to the frame it reads: the rewritten
//! frame is built in the caller's buffer (a length change needs room the frame may not
//! have), with the IP length, the IPv4 header checksum and the TCP checksum made right;
//! anything that does not fit, or a frame whose lengths disagree with its parse, is
//! refused with nothing written. [`shift_seq_ack`] changes only the two 32-bit fields and
//! the checksum (RFC 1624). No allocation, no panic.

use crate::conntrack::alg::ftp::{self, FtpMessage};
use crate::wire::checksum;
use crate::wire::parse::{tcp_flags, Family, L4Summary, ParsedPacket};
use std::net::IpAddr;

/// Why a rewrite was not done (the frame goes on unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgRewriteError {
    /// Not a TCP segment whose payload lies inside the frame as parsed.
    NotTcp,
    /// The new address does not fit the message (family) or the buffer, or the IP length
    /// would pass 65535.
    NoRoom,
}

/// Where a TCP segment's payload lies in the frame: `(start, end)`.
pub fn tcp_payload(frame: &[u8], p: &ParsedPacket) -> Option<(usize, usize)> {
    let L4Summary::Tcp(t) = &p.l4 else {
        return None;
    };
    let l4 = usize::from(p.l4_offset);
    let end = l4 + usize::from(p.l4_len);
    let start = end.checked_sub(usize::from(t.payload_len))?;
    (start >= l4 + 20 && end <= frame.len()).then_some((start, end))
}

/// Builds in `out` the frame `frame` (parsed as `p`) with the address of the FTP
/// announcement `msg` (parsed from its TCP payload) replaced by `to`. Returns the new
/// frame length and the payload's length change. Bytes after the IP packet (Ethernet
/// padding) are not copied.
pub fn rewrite_ftp_addr(
    frame: &[u8],
    p: &ParsedPacket,
    msg: &FtpMessage,
    to: IpAddr,
    out: &mut [u8],
) -> Result<(usize, i32), AlgRewriteError> {
    let (start, end) = tcp_payload(frame, p).ok_or(AlgRewriteError::NotTcp)?;
    let l3 = usize::from(p.l3_offset);
    let l4 = usize::from(p.l4_offset);
    let used = end - start;
    let (head, body) = match (frame.get(..start), frame.get(start..end)) {
        (Some(h), Some(b)) => (h, b),
        _ => return Err(AlgRewriteError::NotTcp),
    };
    let dst = out.get_mut(..start).ok_or(AlgRewriteError::NoRoom)?;
    dst.copy_from_slice(head);
    let room = out.get_mut(start..).ok_or(AlgRewriteError::NoRoom)?;
    room.get_mut(..used)
        .ok_or(AlgRewriteError::NoRoom)?
        .copy_from_slice(body);
    let rw = ftp::rewrite_addr(room, used, msg, to, 0).map_err(|_| AlgRewriteError::NoRoom)?;
    let new_end = start + rw.len;
    // IP lengths.
    let delta = rw.delta;
    let v4 = p.family == Family::V4;
    let len_at = if v4 { l3 + 2 } else { l3 + 4 };
    let old_len = out
        .get(len_at..len_at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(AlgRewriteError::NotTcp)?;
    let new_len = u16::try_from(i64::from(old_len) + i64::from(delta))
        .map_err(|_| AlgRewriteError::NoRoom)?;
    if let Some(b) = out.get_mut(len_at..len_at + 2) {
        b.copy_from_slice(&new_len.to_be_bytes());
    }
    if v4 {
        let c = out.get(l3..l4).map(checksum::ipv4_header).unwrap_or(0);
        if let Some(b) = out.get_mut(l3 + 10..l3 + 12) {
            b.copy_from_slice(&c.to_be_bytes());
        }
    }
    // The TCP checksum over the new segment.
    let seg = out.get(l4..new_end).ok_or(AlgRewriteError::NoRoom)?;
    let c = if v4 {
        let (mut s, mut d) = ([0u8; 4], [0u8; 4]);
        s.copy_from_slice(&p.src[..4]);
        d.copy_from_slice(&p.dst[..4]);
        checksum::tcp_v4(&s, &d, seg)
    } else {
        checksum::tcp_v6(&p.src, &p.dst, seg)
    };
    if let Some(b) = out.get_mut(l4 + 16..l4 + 18) {
        b.copy_from_slice(&c.to_be_bytes());
    }
    Ok((new_end, delta))
}

/// Moves the sequence number of the TCP segment in `frame` by `dseq` and, when it
/// carries ACK, its acknowledgement number by `dack`, updating the checksum. False (and
/// nothing written) when the frame is not a TCP segment as parsed.
pub fn shift_seq_ack(frame: &mut [u8], p: &ParsedPacket, dseq: i32, dack: i32) -> bool {
    let L4Summary::Tcp(t) = &p.l4 else {
        return false;
    };
    let l4 = usize::from(p.l4_offset);
    let Some(h) = frame.get_mut(l4..l4 + 20) else {
        return false;
    };
    let rd = |h: &[u8], at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let mut csum = u16::from_be_bytes([h[16], h[17]]);
    if dseq != 0 {
        let (new, c) = crate::conntrack::alg::seq::shift(rd(h, 4), dseq, csum);
        h[4..8].copy_from_slice(&new.to_be_bytes());
        csum = c;
    }
    if dack != 0 && t.flags & tcp_flags::ACK != 0 {
        let (new, c) = crate::conntrack::alg::seq::shift(rd(h, 8), dack, csum);
        h[8..12].copy_from_slice(&new.to_be_bytes());
        csum = c;
    }
    h[16..18].copy_from_slice(&csum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::alg::ftp::FtpParse;
    use crate::wire::parse_frame;
    use crate::wire::testframe::{Frame, L4};
    use proptest::prelude::*;

    fn frame(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let l4 = L4::tcp(
            40000,
            21,
            1000,
            5000,
            tcp_flags::ACK | tcp_flags::PSH,
            payload,
        );
        Frame::ip(src.parse().unwrap(), dst.parse().unwrap(), l4).build()
    }

    fn verify(f: &[u8]) {
        let p = parse_frame(f).unwrap();
        let (s, e) = tcp_payload(f, &p).unwrap();
        assert_eq!(e, f.len(), "no byte after the IP packet");
        assert!(s <= e);
        let l3 = usize::from(p.l3_offset);
        let l4 = usize::from(p.l4_offset);
        if p.family == Family::V4 {
            assert!(checksum::verify_ipv4_header(&f[l3..l4]));
            let mut sa = [0u8; 4];
            let mut da = [0u8; 4];
            sa.copy_from_slice(&p.src[..4]);
            da.copy_from_slice(&p.dst[..4]);
            assert_eq!(
                checksum::tcp_v4(&sa, &da, &f[l4..]),
                u16::from_be_bytes([f[l4 + 16], f[l4 + 17]])
            );
        } else {
            assert_eq!(
                checksum::tcp_v6(&p.src, &p.dst, &f[l4..]),
                u16::from_be_bytes([f[l4 + 16], f[l4 + 17]])
            );
        }
    }

    fn rewrite(f: &[u8], to: &str) -> (Vec<u8>, i32) {
        let p = parse_frame(f).unwrap();
        let (s, e) = tcp_payload(f, &p).unwrap();
        let FtpParse::Message(m) = ftp::parse(&f[s..e], p.family == Family::V6) else {
            panic!("not a message")
        };
        let mut out = vec![0u8; 2048];
        let (n, d) = rewrite_ftp_addr(f, &p, &m, to.parse().unwrap(), &mut out).unwrap();
        out.truncate(n);
        (out, d)
    }

    #[test]
    fn port_rewritten_longer_fixes_lengths_and_checksums_and_keeps_the_rest() {
        let payload = b"PORT 10,0,0,2,4,1\r\n";
        let f = frame("10.0.0.2", "192.0.2.2", payload);
        let (out, d) = rewrite(&f, "192.168.100.200");
        assert_eq!(d, 7);
        assert_eq!(out.len(), f.len() + 7);
        assert!(out.ends_with(b"PORT 192,168,100,200,4,1\r\n"));
        verify(&out);
        // Headers before the payload are the same but for IP length and checksums.
        assert_eq!(&out[..16], &f[..16]);
    }

    #[test]
    fn eprt_v6_rewritten_shorter() {
        let f = frame(
            "fd00:0:0:1::2",
            "fd00:0:0:2::2",
            b"EPRT |2|fd00:0:0:1::2|47419|\r\n",
        );
        let (out, d) = rewrite(&f, "fd00::1");
        assert_eq!(d, -6);
        assert!(out.ends_with(b"EPRT |2|fd00::1|47419|\r\n"));
        verify(&out);
    }

    #[test]
    fn seq_and_ack_shift_keeps_the_checksum_right() {
        let mut f = frame("10.0.0.2", "192.0.2.2", b"data");
        let p = parse_frame(&f).unwrap();
        assert!(shift_seq_ack(&mut f, &p, 6, -3));
        let q = parse_frame(&f).unwrap();
        let L4Summary::Tcp(t) = q.l4 else { panic!() };
        assert_eq!((t.seq, t.ack), (1006, 4997));
        verify(&f);
    }

    proptest! {
        /// A PORT command followed by any bytes (any length, past 256): the rewrite
        /// changes only the address, moves the rest unchanged, and the lengths and
        /// checksums are right.
        #[test]
        fn any_tail_survives_a_rewrite_and_checksums_hold(
            tail in proptest::collection::vec(any::<u8>(), 0..1200),
            a in any::<[u8; 4]>(),
        ) {
            let mut payload = b"PORT 10,0,0,2,4,1\r\n".to_vec();
            payload.extend_from_slice(&tail);
            let f = frame("10.0.0.2", "192.0.2.2", &payload);
            let to = std::net::Ipv4Addr::from(a).to_string();
            let (out, d) = rewrite(&f, &to);
            let new_text = format!("PORT {},{},{},{},4,1\r\n", a[0], a[1], a[2], a[3]);
            prop_assert_eq!(d, new_text.len() as i32 - 19);
            let p = parse_frame(&out).unwrap();
            let (s, e) = tcp_payload(&out, &p).unwrap();
            prop_assert_eq!(&out[s..s + new_text.len()], new_text.as_bytes());
            prop_assert_eq!(&out[s + new_text.len()..e], &tail[..]);
            verify(&out);
        }

        /// Arbitrary payloads never panic the parse-then-rewrite path; what does not
        /// parse is not rewritten.
        #[test]
        fn hostile_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..400)) {
            let f = frame("10.0.0.2", "192.0.2.2", &payload);
            let p = parse_frame(&f).unwrap();
            let (s, e) = tcp_payload(&f, &p).unwrap();
            if let FtpParse::Message(m) = ftp::parse(&f[s..e], false) {
                let mut out = vec![0u8; 2048];
                if let Ok((n, _)) = rewrite_ftp_addr(&f, &p, &m, "192.0.2.1".parse().unwrap(), &mut out) {
                    verify(&out[..n]);
                }
            }
        }
    }
}
