//! SCTP common header (RFC 9260 §3.1), chunk walk and the CRC32c checksum (Appendix A).
//!
//! The packet is the whole IP payload: unlike TCP and UDP, SCTP has no length field of its
//! own, its chunks run to the end of the payload. The checksum is CRC32c over the whole
//! packet with the checksum field taken as zero, stored so that its bytes are the CRC's
//! little-endian bytes (RFC 9260 Appendix A; Linux `sctp_compute_cksum`). It covers no
//! pseudo-header, so address changes leave it alone, and it is not incremental: a port
//! change means recomputing it over the packet ([`Packet::fill_checksum`]).
//!
//! [`crc32c`] is table-driven, slice-by-8 (eight 256-entry tables built at compile time):
//! no allocation, no CPU feature needed, about a byte per cycle.

use super::field::{Field, Rest};
use super::view::{l4_ports, view};
use super::{get_u32, put_u32, Error};

/// Length of the SCTP common header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;
/// Length of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;

pub(super) mod field {
    use super::{Field, Rest};
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const VERIFICATION_TAG: Field = 4..8;
    pub const CHECKSUM: Field = 8..12;
    pub const CHUNKS: Rest = 12..;
}

/// The reflected CRC32c (Castagnoli) polynomial.
const POLY: u32 = 0x82f6_3b78;

/// Slice-by-8 tables: `TABLES[0]` is the classic byte table, `TABLES[k][b]` the CRC of
/// byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

/// Feeds `data` into a running (pre-inverted) CRC32c register.
#[inline]
fn update(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xff) as usize]
            ^ TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    crc
}

/// CRC32c of `data` (initial value and final XOR `0xffff_ffff`; CRC32c("123456789") is
/// `0xe306_9283`).
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    !update(!0, data)
}

/// The checksum of an SCTP packet (`packet` = common header and chunks) with its checksum
/// field taken as zero, whatever it holds; 0 for a packet shorter than the header. As a
/// value: the field's bytes are its little-endian bytes.
#[inline]
pub fn checksum(packet: &[u8]) -> u32 {
    let (Some(head), Some(rest)) = (
        packet.get(..field::CHECKSUM.start),
        packet.get(field::CHECKSUM.end..),
    ) else {
        return 0;
    };
    let crc = update(!0, head);
    let crc = update(crc, &[0; 4]);
    !update(crc, rest)
}

/// True when the chunks after the common header are well formed, as OVS's
/// `check_l4_sctp` and Linux's `do_basic_checks` ask: at least one chunk; every chunk
/// header whole, its length at least the 4-byte header and within the packet; chunks,
/// each padded to a multiple of 4 bytes, end exactly at the end of the packet (the last
/// chunk's padding may be missing). `packet` starts at the common header.
pub fn chunks_ok(packet: &[u8]) -> bool {
    let Some(mut rest) = packet.get(HEADER_LEN..) else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(h) = rest.first_chunk::<CHUNK_HEADER_LEN>() else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < CHUNK_HEADER_LEN || len > rest.len() {
            return false;
        }
        let padded = (len + 3) & !3;
        rest = rest.get(padded..).unwrap_or_default();
    }
    true
}

view! {
    /// A read/write view of an SCTP packet: the common header and the chunks, to the end of
    /// the buffer (which must end where the IP payload ends).
    pub struct Packet;
}

// src_port, dst_port, set_src_port, set_dst_port (bytes 0..4, as in TCP, UDP and SCTP).
l4_ports!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ensures no getter panics: [`Error::Truncated`] if shorter than the 12-byte common
    /// header. The chunks are not looked at (see [`chunks_ok`]).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The verification tag.
    #[inline]
    pub fn verification_tag(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::VERIFICATION_TAG])
    }

    /// The checksum field, as the CRC value it stores (its bytes read little-endian).
    #[inline]
    pub fn checksum(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The chunks (everything after the common header).
    #[inline]
    pub fn chunks(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHUNKS]
    }

    /// True when the checksum field holds the packet's CRC32c.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref()) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the verification tag (the checksum is not updated).
    #[inline]
    pub fn set_verification_tag(&mut self, value: u32) {
        put_u32(&mut self.buffer.as_mut()[field::VERIFICATION_TAG], value)
    }

    /// Stores a checksum value (as little-endian bytes).
    #[inline]
    pub fn set_checksum(&mut self, value: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_le_bytes())
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An INIT (scapy 2.5: `SCTP(sport=5000, dport=7, tag=0)/SCTPChunkInit(init_tag=
    /// 0x11223344, a_rwnd=65536, n_out_streams=10, n_in_streams=10, init_tsn=1)`).
    static INIT_BYTES: [u8; 32] = [
        0x13, 0x88, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x75, 0xa7, 0xda, 0x5f, 0x01, 0x00, 0x00,
        0x14, 0x11, 0x22, 0x33, 0x44, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x00,
        0x00, 0x01,
    ];

    /// A DATA chunk of 5 bytes, padded (scapy: `SCTP(sport=40000, dport=9899,
    /// tag=0xdeadbeef)/SCTPChunkData(tsn=7, stream_id=1, data=b"hello")`).
    static DATA_BYTES: [u8; 36] = [
        0x9c, 0x40, 0x26, 0xab, 0xde, 0xad, 0xbe, 0xef, 0x40, 0x66, 0x3c, 0x9c, 0x00, 0x00, 0x00,
        0x15, 0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x68, 0x65,
        0x6c, 0x6c, 0x6f, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn crc32c_check_value_and_every_tail_length() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        // Slice-by-8 and the byte loop agree for every length around the 8-byte step.
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..data.len() {
            let mut bytewise = !0u32;
            for &b in &data[..n] {
                bytewise = (bytewise >> 8) ^ TABLES[0][((bytewise ^ u32::from(b)) & 0xff) as usize];
            }
            assert_eq!(crc32c(&data[..n]), !bytewise, "length {n}");
        }
    }

    #[test]
    fn deconstruct_scapy_packets() {
        let p = Packet::new_checked(&INIT_BYTES[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (5000, 7));
        assert_eq!(p.verification_tag(), 0);
        assert!(p.verify_checksum());
        assert_eq!(p.chunks()[0], 1); // INIT
        assert!(chunks_ok(&INIT_BYTES));
        let p = Packet::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 9899));
        assert_eq!(p.verification_tag(), 0xdead_beef);
        assert!(p.verify_checksum());
        assert!(chunks_ok(&DATA_BYTES));
    }

    #[test]
    fn construct_matches_scapy_bytes() {
        let mut b = [0xa5u8; 32];
        b[12..].copy_from_slice(&INIT_BYTES[12..]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_port(5000);
        p.set_dst_port(7);
        p.set_verification_tag(0);
        p.fill_checksum();
        assert_eq!(&b[..], &INIT_BYTES[..]);
    }

    #[test]
    fn a_changed_port_or_byte_fails_the_checksum() {
        let mut b = DATA_BYTES;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(40001);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        b[30] ^= 1;
        assert!(!Packet::new_unchecked(&b[..]).verify_checksum());
    }

    #[test]
    fn check_len_needs_the_common_header() {
        assert_eq!(
            Packet::new_checked(&INIT_BYTES[..11]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(checksum(&INIT_BYTES[..11]), 0);
    }

    #[test]
    fn chunk_walk_rejects_what_ovs_rejects() {
        // No chunk at all.
        assert!(!chunks_ok(&INIT_BYTES[..12]));
        // A cut chunk header (2 bytes after the common header).
        assert!(!chunks_ok(&INIT_BYTES[..14]));
        // Chunk length below its header, and beyond the packet.
        let mut b = INIT_BYTES;
        b[15] = 3;
        assert!(!chunks_ok(&b));
        b[15] = 0x15;
        assert!(!chunks_ok(&b));
        // A cut DATA chunk (its length says 21, 20 bytes are there).
        assert!(!chunks_ok(&DATA_BYTES[..32]));
        // The last chunk's padding may be missing (21 of 24 bytes).
        assert!(chunks_ok(&DATA_BYTES[..33]));
        // Trailing bytes that are no chunk.
        let mut long = INIT_BYTES.to_vec();
        long.extend_from_slice(&[0, 0]);
        assert!(!chunks_ok(&long));
        // Two chunks back to back.
        let mut two = INIT_BYTES.to_vec();
        two.extend_from_slice(&[0x0a, 0, 0, 4]); // COOKIE ACK
        assert!(chunks_ok(&two));
    }
}
