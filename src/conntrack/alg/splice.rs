//! Replacing one field of a payload with text of another length, in place, with the TCP
//! or UDP checksum updated incrementally.
//!
//! Invariants: nothing outside `buf[span.start..new_used]` is written; bytes before the
//! field are untouched, bytes after it are moved as a block; a splice that would not fit
//! in `buf` or names a field outside the used payload is refused without writing
//! anything. No allocation, no panic (every index is checked).

use crate::wire::checksum;

/// A byte range `start..end` of a payload (Copy, unlike `Range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte of the field.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

impl Span {
    /// Length of the field in bytes (0 when `end <= start`).
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True when the field is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a splice was refused (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// The field is not inside the used part of the payload.
    OutOfBounds,
    /// The rewritten payload would not fit in the buffer.
    NoRoom,
}

/// Replaces `buf[span]` with `repl` in a payload whose first `used` bytes are meaningful,
/// moving the bytes after the field. Returns the new used length.
pub fn splice(buf: &mut [u8], used: usize, span: Span, repl: &[u8]) -> Result<usize, SpliceError> {
    if span.start > span.end || span.end > used || used > buf.len() {
        return Err(SpliceError::OutOfBounds);
    }
    let new_used = (used - span.len())
        .checked_add(repl.len())
        .ok_or(SpliceError::NoRoom)?;
    if new_used > buf.len() {
        return Err(SpliceError::NoRoom);
    }
    let new_end = span.start + repl.len();
    buf.copy_within(span.end..used, new_end);
    if let Some(field) = buf.get_mut(span.start..new_end) {
        field.copy_from_slice(repl);
    }
    Ok(new_used)
}

/// The ones'-complement sum of `bytes` as they lie at `offset` of the checksummed area
/// (an odd offset puts the first byte in the low half of its word).
fn sum_at(bytes: &[u8], offset: usize) -> u16 {
    let s = checksum::data(bytes);
    if offset % 2 == 1 {
        s.swap_bytes()
    } else {
        s
    }
}

/// [`splice`] that also updates `csum`, a TCP/UDP checksum covering the payload, which
/// starts at an even offset of the checksummed area (always true: TCP and UDP headers
/// have even lengths). The pseudo-header's length is the caller's to update (with
/// [`checksum::update_u16`]-style arithmetic, from the returned length). Returns the new
/// used length and the new checksum.
pub fn splice_csum(
    buf: &mut [u8],
    used: usize,
    span: Span,
    repl: &[u8],
    csum: u16,
) -> Result<(usize, u16), SpliceError> {
    let old_tail = match buf.get(span.start..used) {
        Some(t) if span.start <= span.end && span.end <= used => sum_at(t, span.start),
        _ => return Err(SpliceError::OutOfBounds),
    };
    let new_used = splice(buf, used, span, repl)?;
    let new_tail = buf
        .get(span.start..new_used)
        .map_or(0, |t| sum_at(t, span.start));
    let acc = checksum::combine(&[!csum, !old_tail, new_tail]);
    Ok((new_used, !acc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splice_longer_field_moves_the_tail() {
        let mut buf = [0u8; 32];
        buf[..10].copy_from_slice(b"ab1,2cdefg");
        let n = splice(&mut buf, 10, Span { start: 2, end: 5 }, b"10,20").unwrap();
        assert_eq!(&buf[..n], b"ab10,20cdefg");
        assert!(buf[n..].iter().all(|&b| b == 0));
    }

    #[test]
    fn splice_without_room_is_refused_and_writes_nothing() {
        let mut buf = *b"abcdef";
        assert_eq!(
            splice(&mut buf, 6, Span { start: 1, end: 2 }, b"xyz"),
            Err(SpliceError::NoRoom)
        );
        assert_eq!(&buf, b"abcdef");
        assert_eq!(
            splice(&mut buf, 6, Span { start: 4, end: 7 }, b"x"),
            Err(SpliceError::OutOfBounds)
        );
        assert_eq!(&buf, b"abcdef");
    }

    /// A 300-byte payload (past OVS's 256-byte `replace_substring` truncation) spliced
    /// near its start keeps every later byte.
    #[test]
    fn splice_in_a_payload_of_more_than_256_bytes_keeps_the_tail() {
        let mut buf = [0u8; 400];
        for (i, b) in buf.iter_mut().enumerate().take(300) {
            *b = (i % 251) as u8;
        }
        let orig = buf;
        let n = splice(&mut buf, 300, Span { start: 5, end: 12 }, b"123456789012").unwrap();
        assert_eq!(n, 305);
        assert_eq!(&buf[..5], &orig[..5]);
        assert_eq!(&buf[17..305], &orig[12..300]);
        assert!(buf[305..].iter().all(|&b| b == 0));
    }

    proptest! {
        /// Any splice either is refused with the buffer unchanged, or yields exactly
        /// head + repl + tail with the bytes past the new end unchanged; the incremental
        /// checksum equals a full one.
        #[test]
        fn splice_writes_only_the_field_and_moved_tail(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            extra in 0usize..64,
            a in 0usize..700, b in 0usize..700,
            repl in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let used = data.len();
            let mut buf = data.clone();
            buf.extend(std::iter::repeat_n(0xa5, extra));
            let orig = buf.clone();
            let span = Span { start: a.min(b), end: a.max(b) };
            let csum = !checksum::data(&buf[..used]);
            match splice_csum(&mut buf, used, span, &repl, csum) {
                Err(_) => prop_assert_eq!(&buf, &orig),
                Ok((n, c)) => {
                    let mut want = data[..span.start].to_vec();
                    want.extend_from_slice(&repl);
                    want.extend_from_slice(&data[span.end..]);
                    prop_assert_eq!(&buf[..n], &want[..]);
                    prop_assert_eq!(n, want.len());
                    if n < used {
                        prop_assert_eq!(&buf[n..used], &data[n..used]);
                    }
                    prop_assert_eq!(&buf[used.max(n)..], &orig[used.max(n)..]);
                    // Ones'-complement zero has two forms; compare sums mod 0xffff.
                    let full = !checksum::data(&buf[..n]);
                    prop_assert!(c == full || (c == 0xffff && full == 0) || (c == 0 && full == 0xffff));
                }
            }
        }
    }
}
