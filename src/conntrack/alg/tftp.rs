//! TFTP requests (RFC 1350): a read (`RRQ`, opcode 1) or write (`WRQ`, opcode 2) request
//! sent to the server's well-known port, whose transfer then comes back from another
//! server port (the expectation's wildcard). OVS's `handle_tftp_ctl` creates the
//! expectation for any packet of a connection under the TFTP helper; this parser lets
//! the caller tell a request from anything else.
//!
//! Invariants: reads only the given slice, never panics, allocates nothing; TFTP
//! payloads are never rewritten (they carry no address).

use super::splice::Span;

/// The request's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TftpOp {
    /// `RRQ`, opcode 1.
    Read,
    /// `WRQ`, opcode 2.
    Write,
}

/// A parsed request: the file name and transfer mode (NUL-terminated strings, spans
/// exclude the NUL). Options (RFC 2347) after the mode are not examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TftpRequest {
    /// Read or write.
    pub op: TftpOp,
    /// The file name.
    pub filename: Span,
    /// The mode (`netascii`, `octet`, `mail`).
    pub mode: Span,
}

/// Parses a UDP payload as a TFTP read or write request; `None` for anything else
/// (other opcodes, a missing or empty file name or mode, a missing NUL).
pub fn parse_request(payload: &[u8]) -> Option<TftpRequest> {
    let op = match payload.get(..2)? {
        [0, 1] => TftpOp::Read,
        [0, 2] => TftpOp::Write,
        _ => return None,
    };
    let field = |start: usize| -> Option<Span> {
        let len = payload.get(start..)?.iter().position(|&b| b == 0)?;
        (len > 0).then_some(Span {
            start,
            end: start + len,
        })
    };
    let filename = field(2)?;
    let mode = field(filename.end + 1)?;
    Some(TftpRequest { op, filename, mode })
}
