//! The FTP control channel's messages that announce a data connection, parsed and
//! rewritten as Open vSwitch's userspace FTP ALG does (`process_ftp_ctl_v4/v6`,
//! `repl_ftp_v4_addr`, `repl_ftp_v6_addr` in its `lib/conntrack-ftp.c`):
//!
//! - over IPv4: `PORT h1,h2,h3,h4,p1,p2` and `EPRT |1|a.b.c.d|port|` (active), the `227`
//!   reply `(h1,h2,h3,h4,p1,p2)` and the `229` reply `(|||port|)` (passive);
//! - over IPv6: `EPRT |2|addr|port|` (active) and any reply containing `EXTENDED PASSIVE`
//!   (the `229` reply, passive).
//!
//! Only the first 127 bytes of a segment are looked at (OVS copies the payload into a
//! 128-byte string with `ovs_strlcpy`, which keeps at most 127 bytes and stops at a NUL);
//! a message split across segments is therefore not seen, as in OVS. Matching of the
//! command or reply is case-insensitive.
//!
//! Invariants: parsing reads only the payload slice and never fails by panicking; a
//! rewrite changes only the address field (the bytes after it move as a block, see
//! [`super::splice`]) and is refused, leaving the payload unchanged, when the field is
//! not in the payload or the result would not fit. Nothing allocates.

use super::splice::{splice_csum, Span, SpliceError};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes of a segment's payload that OVS examines (`LARGEST_FTP_MSG_OF_INTEREST` 128,
/// less the terminating NUL of `ovs_strlcpy`).
pub const FTP_WINDOW: usize = 127;

/// Which announcement a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpKind {
    /// `PORT h1,h2,h3,h4,p1,p2` from the client (active, IPv4).
    Port,
    /// `EPRT |af|addr|port|` from the client (active, RFC 2428).
    Eprt,
    /// `227 ... (h1,h2,h3,h4,p1,p2)` from the server (passive, IPv4).
    Pasv,
    /// `229 ... (|||port|)` from the server (extended passive, no address).
    Epsv,
}

impl FtpKind {
    /// True for the client's announcements (the server opens the data connection).
    pub fn is_active(self) -> bool {
        matches!(self, FtpKind::Port | FtpKind::Eprt)
    }
}

/// A parsed announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FtpMessage {
    /// Which command or reply.
    pub kind: FtpKind,
    /// The announced address (`None` for `229`, which has none).
    pub addr: Option<IpAddr>,
    /// Where the address text lies in the payload (`None` when there is no address).
    pub addr_span: Option<Span>,
    /// The announced data port.
    pub port: u16,
}

/// What a control segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpParse {
    /// Not an announcement (any other command, reply or data): passed unchanged.
    Other,
    /// Starts like an announcement but does not parse (OVS marks the packet `inv`).
    Invalid,
    /// An announcement.
    Message(FtpMessage),
}

/// The part of `payload` OVS looks at: at most [`FTP_WINDOW`] bytes, but one byte less
/// than a shorter payload (`ovs_strlcpy(dst, src, MIN(len, 128))` copies `len - 1`), cut
/// at the first NUL.
fn window(payload: &[u8]) -> &[u8] {
    let n = payload.len().min(FTP_WINDOW + 1).saturating_sub(1);
    let w = payload.get(..n).unwrap_or(&[]);
    match w.iter().position(|&b| b == 0) {
        Some(z) => w.get(..z).unwrap_or(&[]),
        None => w,
    }
}

fn starts_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
}

fn contains_ci(s: &[u8], p: &[u8]) -> bool {
    s.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
}

fn at(w: &[u8], i: usize) -> u8 {
    w.get(i).copied().unwrap_or(0)
}

fn skip_non_digits(w: &[u8], mut i: usize) -> usize {
    while i < w.len() && !at(w, i).is_ascii_digit() {
        i += 1;
    }
    i
}

/// Parses a decimal number of at most `max` digits at `i` (as OVS's
/// `terminate_number_str` + `str_to_int`): returns its value and the index just past the
/// digits, or `None` when there is no digit.
fn number(w: &[u8], i: usize, max: usize) -> Option<(u32, usize)> {
    let mut j = i;
    let mut v: u32 = 0;
    while j < w.len() && j - i < max && at(w, j).is_ascii_digit() {
        v = v
            .saturating_mul(10)
            .saturating_add(u32::from(at(w, j) - b'0'));
        j += 1;
    }
    (j > i).then_some((v, j))
}

/// A dotted quad as glibc's `inet_pton(AF_INET)` accepts it: four decimal parts of at
/// most 255 without leading zeros.
fn parse_v4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut o = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for slot in &mut o {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.first() == Some(&b'0')) {
            return None;
        }
        let mut v: u32 = 0;
        for &d in p {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        *slot = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(o))
}

/// Parses a control segment's payload; `ipv6` is the connection's address family.
pub fn parse(payload: &[u8], ipv6: bool) -> FtpParse {
    let w = window(payload);
    let parsed = if ipv6 {
        if starts_with_ci(w, b"EPRT") {
            parse_eprt_v6(w)
        } else if contains_ci(w, b"EXTENDED PASSIVE") {
            parse_epsv_v6(w)
        } else {
            return FtpParse::Other;
        }
    } else if starts_with_ci(w, b"PORT") {
        parse_v4_msg(w, FtpKind::Port, 4)
    } else if starts_with_ci(w, b"EPRT") {
        parse_v4_msg(w, FtpKind::Eprt, 4)
    } else if starts_with_ci(w, b"229") {
        parse_v4_msg(w, FtpKind::Epsv, 3)
    } else if starts_with_ci(w, b"227") {
        parse_v4_msg(w, FtpKind::Pasv, 3)
    } else {
        return FtpParse::Other;
    };
    parsed.map_or(FtpParse::Invalid, FtpParse::Message)
}

fn parse_v4_msg(w: &[u8], kind: FtpKind, skip: usize) -> Option<FtpMessage> {
    // First space after the command or code, then the first digit after it.
    let sp = skip + w.get(skip..)?.iter().position(|&b| b == b' ')?;
    let mut i = skip_non_digits(w, sp);
    if i >= w.len() {
        return None;
    }
    if kind == FtpKind::Eprt {
        // Address family 1 (IPv4), a single digit.
        if at(w, i) != b'1' || at(w, i + 1).is_ascii_digit() {
            return None;
        }
        i = skip_non_digits(w, i + 1);
        if i >= w.len() {
            return None;
        }
    }
    let (addr, addr_span) = if kind == FtpKind::Epsv {
        (None, None)
    } else {
        // The address: digits and dots, the first three commas counting as dots.
        let start = i;
        let mut commas = 0;
        let mut text = [0u8; FTP_WINDOW];
        let mut n = 0;
        while i < w.len() {
            let c = match at(w, i) {
                b',' if commas < 3 => {
                    commas += 1;
                    b'.'
                }
                c if c.is_ascii_digit() || c == b'.' => c,
                _ => break,
            };
            if let Some(slot) = text.get_mut(n) {
                *slot = c;
            }
            n += 1;
            i += 1;
        }
        let a = parse_v4(text.get(..n)?)?;
        let span = Span { start, end: i };
        // OVS terminates the address on the byte after it and continues past it.
        i += 1;
        (Some(IpAddr::V4(a)), Some(span))
    };
    let port = if matches!(kind, FtpKind::Port | FtpKind::Pasv) {
        // `terminate_number_str(ftp, 3)` takes up to four digits, then the byte after
        // them is skipped whatever it is.
        let (hi, j) = number(w, i, 4)?;
        let (lo, _) = number(w, j + 1, usize::MAX)?;
        if hi > 255 || lo > 255 {
            return None;
        }
        (hi << 8 | lo) as u16
    } else {
        let (p, _) = number(w, i, 6)?;
        u16::try_from(p).ok()?
    };
    Some(FtpMessage {
        kind,
        addr,
        addr_span,
        port,
    })
}

fn parse_eprt_v6(w: &[u8]) -> Option<FtpMessage> {
    let i = skip_non_digits(w, 4);
    // Address family 2 (IPv6), a single digit, then one delimiter byte.
    if at(w, i) != b'2' || at(w, i + 1).is_ascii_digit() {
        return None;
    }
    let start = i + 2;
    let mut j = start;
    while j < w.len() && matches!(at(w, j), b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b':' | b'.') {
        j += 1;
    }
    let text = std::str::from_utf8(w.get(start..j)?).ok()?;
    let a: Ipv6Addr = text.parse().ok()?;
    let (p, _) = number(w, j + 1, 6)?;
    Some(FtpMessage {
        kind: FtpKind::Eprt,
        addr: Some(IpAddr::V6(a)),
        addr_span: Some(Span { start, end: j }),
        port: u16::try_from(p).ok()?,
    })
}

fn parse_epsv_v6(w: &[u8]) -> Option<FtpMessage> {
    let paren = w.iter().position(|&b| b == b'(').unwrap_or(w.len());
    let i = skip_non_digits(w, paren);
    let (p, _) = number(w, i, 6)?;
    Some(FtpMessage {
        kind: FtpKind::Epsv,
        addr: None,
        addr_span: None,
        port: u16::try_from(p).ok()?,
    })
}

/// An address as text, on the stack (the longest, an IPv6 address with an embedded
/// IPv4 one, has 45 bytes).
#[derive(Clone, Copy)]
pub struct AddrText {
    buf: [u8; 46],
    len: usize,
}

impl AddrText {
    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The text that replaces a message's address with `new`: comma-separated for `PORT`
/// and `227`, dotted or RFC 5952 for `EPRT`. `None` when the families differ.
pub fn addr_text(kind: FtpKind, new: IpAddr) -> Option<AddrText> {
    let mut t = AddrText {
        buf: [0; 46],
        len: 0,
    };
    match (kind, new) {
        (FtpKind::Port | FtpKind::Pasv, IpAddr::V4(a)) => {
            let [b0, b1, b2, b3] = a.octets();
            write!(t, "{b0},{b1},{b2},{b3}").ok()?;
        }
        (FtpKind::Eprt, a) => write!(t, "{a}").ok()?,
        _ => return None,
    }
    Some(t)
}

/// Why a rewrite was not done (the payload is unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// The new address is of the other family than the message's.
    Family,
    /// The field is outside the payload or the result does not fit.
    Splice(SpliceError),
}

/// A done rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// New payload length.
    pub len: usize,
    /// New L4 checksum (payload part only; the pseudo-header length is the caller's).
    pub csum: u16,
    /// Change of the payload length (the sequence skew this segment adds).
    pub delta: i32,
}

/// Replaces the address of `msg` (parsed from `buf[..used]`) with `new`, updating the L4
/// checksum `csum` for the payload bytes. A message without an address (`229`) is left
/// as it is (`delta` 0). `buf` may be longer than `used`: the room a longer address can
/// grow into.
pub fn rewrite_addr(
    buf: &mut [u8],
    used: usize,
    msg: &FtpMessage,
    new: IpAddr,
    csum: u16,
) -> Result<Rewritten, RewriteError> {
    let Some(span) = msg.addr_span else {
        return Ok(Rewritten {
            len: used,
            csum,
            delta: 0,
        });
    };
    if msg.addr.map(|a| a.is_ipv4()) != Some(new.is_ipv4()) {
        return Err(RewriteError::Family);
    }
    let text = addr_text(msg.kind, new).ok_or(RewriteError::Family)?;
    let (len, csum) =
        splice_csum(buf, used, span, text.as_bytes(), csum).map_err(RewriteError::Splice)?;
    Ok(Rewritten {
        len,
        csum,
        delta: len as i32 - used as i32,
    })
}
