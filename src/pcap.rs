//! A small pure-Rust reader and writer for classic pcap files (the libpcap format).
//!
//! The [`Writer`] writes little-endian files with microsecond timestamps and
//! `LINKTYPE_ETHERNET`. The [`Reader`] reads either byte order and both the microsecond
//! (`0xa1b2c3d4`) and nanosecond (`0xa1b23c4d`) variants — DPDK's net_pcap writes the
//! nanosecond one. pcapng is not supported. Malformed input is an [`Error`], never a panic,
//! and a record larger than [`MAX_RECORD_LEN`] is refused rather than allocated.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::Duration;

/// `LINKTYPE_ETHERNET` (DLT_EN10MB).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Magic number of microsecond-resolution files.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic number of nanosecond-resolution files.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Snapshot length the writer declares by default.
pub const DEFAULT_SNAPLEN: u32 = 65535;
/// Largest record the reader accepts (libpcap's own limit for non-USB link types).
pub const MAX_RECORD_LEN: u32 = 262_144;

/// Global header length.
const FILE_HEADER_LEN: usize = 24;
/// Record header length.
const RECORD_HEADER_LEN: usize = 16;

/// One packet record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture time since the Unix epoch.
    pub timestamp: Duration,
    /// Length of the packet on the wire (at least `data.len()` in a well-formed file).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Timestamp resolution of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Micros,
    Nanos,
}

/// The global header of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub version_major: u16,
    pub version_minor: u16,
    pub snaplen: u32,
    pub linktype: u32,
    pub resolution: Resolution,
    /// True if the file was written big-endian.
    pub big_endian: bool,
}

/// A pcap read or write error.
#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The first four bytes are not a pcap magic number.
    BadMagic(u32),
    /// The file ends inside the global header.
    TruncatedHeader,
    /// The file ends inside record number `index` (0-based).
    TruncatedRecord {
        index: u64,
    },
    /// Record `index` claims `len` bytes, more than [`MAX_RECORD_LEN`].
    RecordTooLong {
        index: u64,
        len: u32,
    },
    /// A packet to write is longer than `u32::MAX` bytes.
    PacketTooLong(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "pcap I/O error: {e}"),
            Error::BadMagic(m) => write!(
                f,
                "not a pcap file (magic {m:#010x}; pcapng is not supported)"
            ),
            Error::TruncatedHeader => write!(f, "pcap file ends inside its global header"),
            Error::TruncatedRecord { index } => write!(f, "pcap file ends inside record {index}"),
            Error::RecordTooLong { index, len } => {
                write!(
                    f,
                    "pcap record {index} claims {len} bytes (limit {MAX_RECORD_LEN})"
                )
            }
            Error::PacketTooLong(n) => write!(f, "packet of {n} bytes is too long for pcap"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Reads as many bytes as are available up to `buf.len()`; returns how many.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads packets from a pcap stream.
pub struct Reader<R: Read> {
    inner: R,
    header: FileHeader,
    index: u64,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the global header.
    pub fn new(mut inner: R) -> Result<Self, Error> {
        let mut h = [0u8; FILE_HEADER_LEN];
        if read_full(&mut inner, &mut h)? < FILE_HEADER_LEN {
            return Err(Error::TruncatedHeader);
        }
        let magic_le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (resolution, big_endian) = match magic_le {
            MAGIC_MICROS => (Resolution::Micros, false),
            MAGIC_NANOS => (Resolution::Nanos, false),
            m if m.swap_bytes() == MAGIC_MICROS => (Resolution::Micros, true),
            m if m.swap_bytes() == MAGIC_NANOS => (Resolution::Nanos, true),
            m => return Err(Error::BadMagic(m)),
        };
        let u16_at = |i: usize| {
            let b = [h[i], h[i + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let header = FileHeader {
            version_major: u16_at(4),
            version_minor: u16_at(6),
            snaplen: u32_at(16),
            linktype: u32_at(20),
            resolution,
            big_endian,
        };
        Ok(Reader {
            inner,
            header,
            index: 0,
        })
    }

    /// The global header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Reads the next record into `data` (reusing its allocation). Returns the timestamp
    /// and original length, or `None` at a clean end of file.
    pub fn next_into(&mut self, data: &mut Vec<u8>) -> Result<Option<(Duration, u32)>, Error> {
        let mut h = [0u8; RECORD_HEADER_LEN];
        match read_full(&mut self.inner, &mut h)? {
            0 => return Ok(None),
            RECORD_HEADER_LEN => {}
            _ => return Err(Error::TruncatedRecord { index: self.index }),
        }
        let be = self.header.big_endian;
        let u32_at = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (secs, frac, incl_len, orig_len) = (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
        if incl_len > MAX_RECORD_LEN {
            return Err(Error::RecordTooLong {
                index: self.index,
                len: incl_len,
            });
        }
        let nanos = match self.header.resolution {
            Resolution::Micros => u64::from(frac) * 1_000,
            Resolution::Nanos => u64::from(frac),
        };
        // Out-of-range fractions (bad writers) carry into the seconds instead of failing.
        let timestamp = Duration::from_secs(u64::from(secs)) + Duration::from_nanos(nanos);
        data.clear();
        data.resize(incl_len as usize, 0);
        if read_full(&mut self.inner, data)? < data.len() {
            return Err(Error::TruncatedRecord { index: self.index });
        }
        self.index += 1;
        Ok(Some((timestamp, orig_len)))
    }

    /// Reads the next packet, or `None` at a clean end of file.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, Error> {
        let mut data = Vec::new();
        Ok(self
            .next_into(&mut data)?
            .map(|(timestamp, orig_len)| Packet {
                timestamp,
                orig_len,
                data,
            }))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Packet, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_packet().transpose()
    }
}

/// Writes a little-endian, microsecond-resolution pcap stream.
pub struct Writer<W: Write> {
    inner: W,
    snaplen: u32,
}

impl<W: Write> Writer<W> {
    /// Writes the global header for Ethernet frames with the default snaplen.
    pub fn new(inner: W) -> Result<Self, Error> {
        Self::with_linktype(inner, LINKTYPE_ETHERNET, DEFAULT_SNAPLEN)
    }

    /// Writes the global header for `linktype` and `snaplen`.
    pub fn with_linktype(mut inner: W, linktype: u32, snaplen: u32) -> Result<Self, Error> {
        let mut h = [0u8; FILE_HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // 8..16: thiszone and sigfigs, zero.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&linktype.to_le_bytes());
        inner.write_all(&h)?;
        Ok(Writer { inner, snaplen })
    }

    /// Writes one packet captured at `timestamp` (whole microseconds are kept). Data
    /// beyond the snaplen is cut, with the original length recorded.
    pub fn write_packet(&mut self, timestamp: Duration, data: &[u8]) -> Result<(), Error> {
        let orig_len = u32::try_from(data.len()).map_err(|_| Error::PacketTooLong(data.len()))?;
        let incl = orig_len.min(self.snaplen);
        let secs = u32::try_from(timestamp.as_secs()).unwrap_or(u32::MAX);
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&timestamp.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(&data[..incl as usize])?;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, Error> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Reads a whole pcap file into memory.
pub fn read_file(path: impl AsRef<std::path::Path>) -> Result<Vec<Packet>, Error> {
    let f = std::fs::File::open(path)?;
    Reader::new(io::BufReader::new(f))?.collect()
}

/// Writes `frames` to a new pcap file, with timestamps 1 µs apart from `start`.
pub fn write_file<'a>(
    path: impl AsRef<std::path::Path>,
    start: Duration,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), Error> {
    let f = std::fs::File::create(path)?;
    let mut w = Writer::new(io::BufWriter::new(f))?;
    for (i, frame) in frames.into_iter().enumerate() {
        w.write_packet(start + Duration::from_micros(i as u64), frame)?;
    }
    w.into_inner()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Vec<u8>> {
        vec![vec![0xaa; 60], vec![], (0..=255u8).collect(), vec![1, 2, 3]]
    }

    #[test]
    fn round_trip_keeps_bytes_order_and_microsecond_timestamps() {
        let mut w = Writer::new(Vec::new()).unwrap();
        let t0 = Duration::new(1_700_000_000, 123_456_789);
        for (i, p) in sample().iter().enumerate() {
            w.write_packet(t0 + Duration::from_secs(i as u64), p)
                .unwrap();
        }
        let bytes = w.into_inner().unwrap();
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(
            *r.header(),
            FileHeader {
                version_major: 2,
                version_minor: 4,
                snaplen: DEFAULT_SNAPLEN,
                linktype: LINKTYPE_ETHERNET,
                resolution: Resolution::Micros,
                big_endian: false,
            }
        );
        for (i, p) in sample().iter().enumerate() {
            let got = r.next_packet().unwrap().unwrap();
            assert_eq!(&got.data, p);
            assert_eq!(got.orig_len as usize, p.len());
            assert_eq!(
                got.timestamp,
                Duration::new(1_700_000_000 + i as u64, 123_456_000)
            );
        }
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn golden_bytes_of_one_record() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write_packet(Duration::new(1, 2_000), &[0xde, 0xad])
            .unwrap();
        let b = w.into_inner().unwrap();
        let expected: &[u8] = &[
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0, // header
            1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0xde, 0xad, // record
        ];
        assert_eq!(b, expected);
    }

    /// Builds a file by hand in the given byte order and magic.
    fn handmade(big_endian: bool, magic: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut b = Vec::new();
        b.extend_from_slice(&u32b(magic));
        b.extend_from_slice(&u16b(2));
        b.extend_from_slice(&u16b(4));
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&u32b(1500));
        b.extend_from_slice(&u32b(LINKTYPE_ETHERNET));
        for &(s, frac, data) in records {
            b.extend_from_slice(&u32b(s));
            b.extend_from_slice(&u32b(frac));
            b.extend_from_slice(&u32b(data.len() as u32));
            b.extend_from_slice(&u32b(data.len() as u32 + 4));
            b.extend_from_slice(data);
        }
        b
    }

    #[test]
    fn reads_big_endian_and_nanosecond_files() {
        for big in [false, true] {
            for (magic, res, frac, nanos) in [
                (MAGIC_MICROS, Resolution::Micros, 7, 7_000),
                (MAGIC_NANOS, Resolution::Nanos, 7, 7),
            ] {
                let b = handmade(big, magic, &[(5, frac, &[9, 8, 7]), (6, 0, &[])]);
                let mut r = Reader::new(&b[..]).unwrap();
                assert_eq!(r.header().big_endian, big);
                assert_eq!(r.header().resolution, res);
                assert_eq!(r.header().snaplen, 1500);
                let p = r.next_packet().unwrap().unwrap();
                assert_eq!(p.data, vec![9, 8, 7]);
                assert_eq!(p.orig_len, 7);
                assert_eq!(p.timestamp, Duration::new(5, nanos));
                assert_eq!(r.next_packet().unwrap().unwrap().data, Vec::<u8>::new());
                assert!(r.next_packet().unwrap().is_none());
            }
        }
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        assert!(matches!(Reader::new(&[][..]), Err(Error::TruncatedHeader)));
        assert!(matches!(
            Reader::new(&[0xd4, 0xc3, 0xb2][..]),
            Err(Error::TruncatedHeader)
        ));
        let mut pcapng = vec![0x0a, 0x0d, 0x0d, 0x0a];
        pcapng.resize(24, 0);
        assert!(matches!(
            Reader::new(&pcapng[..]),
            Err(Error::BadMagic(0x0a0d0d0a))
        ));

        let good = handmade(false, MAGIC_MICROS, &[(1, 0, &[1, 2, 3, 4])]);
        for cut in FILE_HEADER_LEN + 1..good.len() {
            let mut r = Reader::new(&good[..cut]).unwrap();
            assert!(
                matches!(r.next_packet(), Err(Error::TruncatedRecord { index: 0 })),
                "cut at {cut}"
            );
        }

        let mut huge = handmade(false, MAGIC_MICROS, &[]);
        huge.extend_from_slice(&[0; 8]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut r = Reader::new(&huge[..]).unwrap();
        assert!(matches!(
            r.next_packet(),
            Err(Error::RecordTooLong { index: 0, .. })
        ));
    }

    #[test]
    fn writer_cuts_at_snaplen_and_keeps_the_original_length() {
        let mut w = Writer::with_linktype(Vec::new(), LINKTYPE_ETHERNET, 4).unwrap();
        w.write_packet(Duration::ZERO, &[1, 2, 3, 4, 5, 6]).unwrap();
        let b = w.into_inner().unwrap();
        let p = Reader::new(&b[..]).unwrap().next_packet().unwrap().unwrap();
        assert_eq!(p.data, vec![1, 2, 3, 4]);
        assert_eq!(p.orig_len, 6);
    }

    #[test]
    fn files_round_trip_on_disk() {
        let dir = crate::test_dir::TestDir::new("pcap-test");
        let path = dir.path().join("x.pcap");
        let frames = sample();
        write_file(
            &path,
            Duration::from_secs(10),
            frames.iter().map(Vec::as_slice),
        )
        .unwrap();
        let back = read_file(&path).unwrap();
        assert_eq!(
            back.iter().map(|p| p.data.clone()).collect::<Vec<_>>(),
            frames
        );
        assert_eq!(back[1].timestamp, Duration::new(10, 1_000));
    }
}
