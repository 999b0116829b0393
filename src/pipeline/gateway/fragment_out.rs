//! Egress fragmentation of IPv4 packets (RFC 791 §2.3 and §3.2, "An Example
//! Fragmentation Procedure"): a packet without DF that is larger than its output port's
//! MTU is cut into fragments that fit.
//!
//! # Invariants
//!
//! * Every fragment but the last carries a multiple of 8 data bytes; offsets are in 8-byte
//!   units, continuing the input's own offset (a fragment is fragmented again: RFC 791's
//!   "fragmenting a fragment"); MF is set on every fragment but the last, which keeps
//!   the input's MF; DF is clear; identification, TOS, TTL, protocol and addresses are the
//!   input's; each header checksum is computed for its fragment.
//! * The first fragment has the input's header with all its options; the others only
//!   the options whose copy flag (the type's top bit) is set (RFC 791 §3.1), padded with
//!   end-of-option-list to a multiple of 4 bytes.
//! * The layer-2 header before the IP header (`frame[..l3]`, MACs already set) is copied
//!   to every fragment. Nothing is allocated: the fragments are written back to back into
//!   the caller's buffer (the worker's arena, copied into mbufs of its mempool later).

use crate::wire::ipv4;

/// The most fragments one packet is cut into: a 9000-byte packet (the largest MTU) at
/// the smallest MTU (1280) with 40 bytes of copied options is 8 fragments.
pub const MAX_PIECES: usize = 16;

/// Why a packet was not fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragOutError {
    /// Not an IPv4 packet that parses (header length, total length, options).
    Malformed,
    /// DF is set: it may not be fragmented (the caller answers with ICMP).
    DontFragment,
    /// The fragments do not fit in the output buffer or in [`MAX_PIECES`].
    NoRoom,
}

/// Cuts the IPv4 packet at `frame[l3..]` into fragments of at most `mtu` bytes of IP
/// packet, written back to back into `out`, their frame lengths into `lens`. Returns how
/// many fragments were written (1 when the packet already fits: a copy, DF or not).
pub fn fragment_v4(
    frame: &[u8],
    l3: usize,
    mtu: usize,
    out: &mut [u8],
    lens: &mut [u16; MAX_PIECES],
) -> Result<usize, FragOutError> {
    use FragOutError::*;
    let l2 = frame.get(..l3).ok_or(Malformed)?;
    let ip = frame.get(l3..).ok_or(Malformed)?;
    let h = ipv4::Packet::new_checked(ip).map_err(|_| Malformed)?;
    let ihl = h.header_len();
    let total = usize::from(h.total_len());
    if h.version() != 4 || ihl < ipv4::MIN_HEADER_LEN || total < ihl || total > ip.len() {
        return Err(Malformed);
    }
    if h.dont_frag() && total > mtu {
        return Err(DontFragment);
    }
    let header = ip.get(..ihl).ok_or(Malformed)?;
    let payload = ip.get(ihl..total).ok_or(Malformed)?;
    // The options of the later fragments: those with the copy flag.
    let mut copied = [0u8; 40];
    let mut n_copied = 0usize;
    let opts = header.get(ipv4::MIN_HEADER_LEN..).ok_or(Malformed)?;
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1).ok_or(Malformed)?);
                let opt = opts.get(i..i + len).filter(|_| len >= 2).ok_or(Malformed)?;
                if kind & 0x80 != 0 {
                    copied
                        .get_mut(n_copied..n_copied + len)
                        .ok_or(Malformed)?
                        .copy_from_slice(opt);
                    n_copied += len;
                }
                i += len;
            }
        }
    }
    let later_ihl = ipv4::MIN_HEADER_LEN + n_copied.div_ceil(4) * 4;
    let first_offset = usize::from(h.frag_offset());
    let last_mf = h.more_frags();
    let (mut off, mut at, mut n) = (0usize, 0usize, 0usize);
    while off < payload.len() || n == 0 {
        let hl = if n == 0 { ihl } else { later_ihl };
        let room = mtu.checked_sub(hl).ok_or(NoRoom)?;
        let left = payload.len() - off;
        let last = left <= room;
        let dlen = if last { left } else { room & !7 };
        if dlen == 0 && !last {
            return Err(NoRoom);
        }
        let frag_off = first_offset + off;
        if frag_off > usize::from(ipv4::frag::OFFSET_MASK) << 3 {
            return Err(Malformed);
        }
        let flen = l3 + hl + dlen;
        let piece = out.get_mut(at..at + flen).ok_or(NoRoom)?;
        *lens.get_mut(n).ok_or(NoRoom)? = flen as u16;
        let (p_l2, rest) = piece.split_at_mut(l3);
        p_l2.copy_from_slice(l2);
        let (p_hdr, p_data) = rest.split_at_mut(hl);
        if n == 0 {
            p_hdr.copy_from_slice(header);
        } else {
            let (fixed, p_opts) = p_hdr.split_at_mut(ipv4::MIN_HEADER_LEN);
            fixed.copy_from_slice(header.get(..ipv4::MIN_HEADER_LEN).ok_or(Malformed)?);
            // The copied options, then end-of-list padding (zeros).
            p_opts.fill(0);
            p_opts
                .get_mut(..n_copied)
                .ok_or(Malformed)?
                .copy_from_slice(copied.get(..n_copied).ok_or(Malformed)?);
        }
        p_data.copy_from_slice(payload.get(off..off + dlen).ok_or(Malformed)?);
        let mut f = ipv4::Packet::new_unchecked(p_hdr);
        f.set_header_len(hl);
        f.set_total_len((hl + dlen) as u16);
        let mf = if last && !last_mf { 0 } else { ipv4::frag::MF };
        f.set_flags_frag(mf | (frag_off >> 3) as u16);
        f.set_checksum(0);
        f.fill_checksum();
        off += dlen;
        at += flen;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::verify_ipv4_header;
    use proptest::prelude::*;

    const L3: usize = 14;

    /// An Ethernet + IPv4 frame: `opts` options, `payload_len` bytes of payload (a
    /// pattern), the given flags/offset word, id 0x4242, TTL 63, UDP.
    fn packet(opts: &[u8], payload_len: usize, flags_frag: u16) -> Vec<u8> {
        let ihl = 20 + opts.len();
        let mut f = vec![0u8; L3 + ihl + payload_len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        {
            let mut h = ipv4::Packet::new_unchecked(&mut f[L3..]);
            h.set_version(4);
            h.set_header_len(ihl);
            h.set_dscp(10);
            h.set_total_len((ihl + payload_len) as u16);
            h.set_ident(0x4242);
            h.set_flags_frag(flags_frag);
            h.set_ttl(63);
            h.set_protocol(17);
            h.set_src_addr([10, 0, 0, 2]);
            h.set_dst_addr([192, 0, 2, 2]);
            h.options_mut().copy_from_slice(opts);
            h.fill_checksum();
        }
        for (i, b) in f[L3 + ihl..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        f
    }

    /// The fragments written by `fragment_v4`, as separate frames.
    fn split(out: &[u8], lens: &[u16]) -> Vec<Vec<u8>> {
        let mut at = 0;
        lens.iter()
            .map(|&l| {
                let f = out[at..at + usize::from(l)].to_vec();
                at += usize::from(l);
                f
            })
            .collect()
    }

    fn cut(frame: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, FragOutError> {
        let mut out = vec![0u8; 64 * 1024];
        let mut lens = [0u16; MAX_PIECES];
        let n = fragment_v4(frame, L3, mtu, &mut out, &mut lens)?;
        Ok(split(&out, &lens[..n]))
    }

    /// Reassembles fragments by their offsets: (payload, MF of the last, first offset).
    fn reassemble(frags: &[Vec<u8>]) -> (Vec<u8>, bool, usize) {
        let mut data = Vec::new();
        let mut next = None;
        let mut mf = false;
        for f in frags {
            let h = ipv4::Packet::new_checked(&f[L3..]).unwrap();
            let off = usize::from(h.frag_offset());
            assert_eq!(*next.get_or_insert(off), off, "contiguous, in order");
            let d = &f[L3 + h.header_len()..L3 + usize::from(h.total_len())];
            data.extend_from_slice(d);
            next = Some(off + d.len());
            mf = h.more_frags();
        }
        let first = usize::from(
            ipv4::Packet::new_checked(&frags[0][L3..])
                .unwrap()
                .frag_offset(),
        );
        (data, mf, first)
    }

    #[test]
    fn a_3000_byte_packet_at_mtu_1500_is_two_full_fragments_and_a_rest() {
        let f = packet(&[], 2980, 0);
        let frags = cut(&f, 1500).unwrap();
        // 1480 + 1480 + 20 bytes of data.
        let want = [
            (0u16, true, 1480usize),
            (1480, true, 1480),
            (2960, false, 20),
        ];
        assert_eq!(frags.len(), 3);
        for (g, (off, mf, len)) in frags.iter().zip(want) {
            let h = ipv4::Packet::new_checked(&g[L3..]).unwrap();
            assert_eq!(h.frag_offset(), off);
            assert_eq!(
                (h.flags_frag() & ipv4::frag::OFFSET_MASK) << 3,
                off,
                "8-byte units"
            );
            assert_eq!(h.more_frags(), mf);
            assert!(!h.dont_frag());
            assert_eq!(usize::from(h.total_len()), 20 + len);
            assert_eq!(g.len(), L3 + 20 + len);
            assert!(verify_ipv4_header(h.header()), "checksum of each fragment");
            assert_eq!(
                (h.ident(), h.ttl(), h.protocol(), h.dscp()),
                (0x4242, 63, 17, 10)
            );
            assert_eq!(&g[..L3], &f[..L3], "the Ethernet header on every fragment");
        }
        assert_eq!(reassemble(&frags).0, &f[L3 + 20..]);
    }

    #[test]
    fn a_packet_with_df_is_not_fragmented_and_one_that_fits_is_copied_whole() {
        let f = packet(&[], 2000, ipv4::frag::DF);
        assert_eq!(cut(&f, 1500), Err(FragOutError::DontFragment));
        let f = packet(&[], 1000, 0);
        assert_eq!(cut(&f, 1500).unwrap(), vec![f.clone()]);
    }

    #[test]
    fn only_options_with_the_copy_flag_go_into_the_later_fragments() {
        // Record route (7, not copied, 11 bytes), NOP, security (130, copied, 11 bytes)
        // padded with EOL: 24 bytes of options.
        let mut opts = vec![7, 11, 4];
        opts.extend_from_slice(&[0; 8]);
        opts.push(1);
        opts.extend_from_slice(&[130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        opts.push(0);
        assert_eq!(opts.len(), 24);
        let f = packet(&opts, 3000, 0);
        let frags = cut(&f, 1500).unwrap();
        let first = ipv4::Packet::new_checked(&frags[0][L3..]).unwrap();
        assert_eq!(first.options(), &opts[..], "all options in the first");
        assert_eq!(first.frag_offset(), 0);
        assert_eq!(
            usize::from(first.total_len()),
            1500,
            "44 + 1456 (a multiple of 8)"
        );
        for g in &frags[1..] {
            let h = ipv4::Packet::new_checked(&g[L3..]).unwrap();
            assert_eq!(h.header_len(), 32);
            assert_eq!(
                h.options(),
                &[130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
                "the copied option, padded"
            );
            assert!(verify_ipv4_header(h.header()));
        }
        assert_eq!(reassemble(&frags).0, &f[L3 + 44..]);
    }

    #[test]
    fn a_fragment_is_fragmented_again_from_its_own_offset_and_keeps_its_mf() {
        // A middle fragment: offset 2960, MF, 4000 bytes.
        let f = packet(&[], 4000, ipv4::frag::MF | (2960 >> 3));
        let frags = cut(&f, 1500).unwrap();
        let (data, mf, first) = reassemble(&frags);
        assert_eq!((mf, first), (true, 2960));
        assert_eq!(data, &f[L3 + 20..]);
        // The last fragment of a datagram stays last.
        let f = packet(&[], 4000, 2960 >> 3);
        let frags = cut(&f, 1500).unwrap();
        assert!(!reassemble(&frags).1);
    }

    #[test]
    fn bad_headers_and_no_room_are_refused() {
        let mut f = packet(&[], 3000, 0);
        f[L3 + 2..L3 + 4].copy_from_slice(&9000u16.to_be_bytes()); // longer than the frame
        assert_eq!(cut(&f, 1500), Err(FragOutError::Malformed));
        let f = packet(&[68, 0, 0, 0], 3000, 0); // timestamp option of length 0
        assert_eq!(cut(&f, 1500), Err(FragOutError::Malformed));
        let f = packet(&[], 3000, 0);
        let mut small = vec![0u8; 2000];
        let mut lens = [0u16; MAX_PIECES];
        assert_eq!(
            fragment_v4(&f, L3, 1500, &mut small, &mut lens),
            Err(FragOutError::NoRoom)
        );
    }

    proptest! {
        #[test]
        fn fragments_reassemble_to_the_original_at_any_size_and_mtu(
            len in 0usize..8981,
            mtu in 1280usize..=9000,
            with_opts in any::<bool>(),
        ) {
            let opts: &[u8] = if with_opts { &[130, 4, 1, 2, 7, 3, 4, 0] } else { &[] };
            let f = packet(opts, len, 0);
            let frags = cut(&f, mtu).unwrap();
            let ihl = 20 + opts.len();
            prop_assert!(frags.len() <= MAX_PIECES);
            for (k, g) in frags.iter().enumerate() {
                let h = ipv4::Packet::new_checked(&g[L3..]).unwrap();
                prop_assert!(usize::from(h.total_len()) <= mtu);
                prop_assert!(verify_ipv4_header(h.header()));
                prop_assert_eq!(h.more_frags(), k + 1 < frags.len());
                let dlen = usize::from(h.total_len()) - h.header_len();
                if k + 1 < frags.len() {
                    prop_assert_eq!(dlen % 8, 0);
                }
            }
            let (data, mf, first) = reassemble(&frags);
            prop_assert!(!mf);
            prop_assert_eq!(first, 0);
            prop_assert_eq!(&data[..], &f[L3 + ihl..]);
            if 20 + opts.len() + len <= mtu {
                prop_assert_eq!(frags.len(), 1);
            }
        }
    }
}
