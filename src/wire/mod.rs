//! Packet views (smoltcp style: `Packet<T: AsRef<[u8]>>`, a `mod field` of named byte ranges,
//! one `check_len`), checksum helpers and one-pass frame classification.
//!
//! # Views
//!
//! Every header type is a zero-copy view over a byte buffer:
//!
//! * `new_unchecked(buffer)` wraps without looking at it;
//! * `check_len()` verifies once that every getter (and the setters of fixed fields)
//!   stays inside the buffer, returning [`Error`] otherwise;
//! * `new_checked(buffer)` is the two together.
//!
//! The struct, these constructors and `into_inner` are declared once, by the private
//! `view` module's macros (which also add the accessors TCP/UDP/SCTP and ICMPv4/ICMPv6
//! share); each view writes out its own `mod field`, `check_len` and other accessors.
//!
//! Getters live in the `impl<T: AsRef<[u8]>>` block, setters in the
//! `impl<T: AsRef<[u8]> + AsMut<[u8]>>` block. Getters and fixed-field setters index the
//! buffer directly: they cannot panic on a view that passed `check_len`, and they are
//! documented to panic otherwise (like smoltcp). Setters that change the layout
//! (header length fields, VLAN tags, NDP options) say in their docs what `check_len` no
//! longer guarantees afterwards, or return an [`Error`] instead of panicking.
//!
//! # Touching header bytes: one way
//!
//! * Reading, to classify a frame: [`parse::parse_frame`] walks it once with fixed-size
//!   reads at the views' named field offsets.
//! * Writing in place on the datapath (NAT's rewrite, the TTL decrement): each header is
//!   taken as one fixed-size array and its fields written through [`fixed::At`] /
//!   [`crate::at!`], made from the views' `field` byte ranges and checked against the
//!   array when the code is built: no run-time check, no panic, every write names its
//!   field.
//! * Building or answering whole frames (the gateway's ARP/NDP replies, echo replies,
//!   ICMP errors): the views' setters and `fill_checksum`s, after one length check.
//! * Test frames: [`testframe`], built on the same views.
//!
//! # Checksums
//!
//! [`checksum`] has the full internet checksum, the per-protocol checksums with their
//! pseudo-headers and the RFC 1624 incremental updates NAT uses;
//! [`frame_checksums::verify_frame`] / [`frame_checksums::fill_frame`] check (or create)
//! every checksum of a frame independently of the code under test, for tests and traffic
//! generators.
//!
//! # Imports inside `wire`
//!
//! One way only: [`proto`] (constants), [`fixed`], `view` (the views' shared macros) and
//! the private byte helpers here import nothing;
//! [`checksum`] imports [`proto`]; the views import those and each other downwards
//! (`icmpv6` → `ipv6`, `ethernet`; [`sctp`], with its own CRC32c, only the helpers);
//! [`parse`] imports the views; [`frame_checksums`] imports [`parse`], [`checksum`] and
//! [`sctp`]; [`testframe`] imports the views. No file imports one that imports it back.
//!
//! No `unsafe`, no allocation, no panics on any input.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod fixed;
pub mod frame_checksums;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod proto;
pub mod sctp;
pub mod tcp;
pub mod testframe;
pub mod udp;
mod view;

pub use self::parse::{
    parse_frame, parse_frame_into, Family, Fragment, L4Summary, ParseError, ParsedPacket,
};

/// Why a view rejected its buffer in `check_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length the header states.
    Truncated,
    /// A length or version field is impossible (IPv4 IHL < 5, TCP data offset < 5,
    /// UDP length < 8, total length < header length, ARP address sizes not 6/4, …).
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for Error {}

/// Byte ranges of header fields, as the views' private `mod field`s use them.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;
}

/// Reads a big-endian `u16` from the first two bytes of `b` (panics if shorter; callers
/// pass a range their `check_len` guarantees).
#[inline(always)]
fn get_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Reads a big-endian `u32` from the first four bytes of `b` (see [`get_u16`]).
#[inline(always)]
fn get_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Writes `v` big-endian into the first two bytes of `b` (see [`get_u16`]).
#[inline(always)]
fn put_u16(b: &mut [u8], v: u16) {
    let [x, y] = v.to_be_bytes();
    b[0] = x;
    b[1] = y;
}

/// Writes `v` big-endian into the first four bytes of `b` (see [`get_u16`]).
#[inline(always)]
fn put_u32(b: &mut [u8], v: u32) {
    let [w, x, y, z] = v.to_be_bytes();
    b[0] = w;
    b[1] = x;
    b[2] = y;
    b[3] = z;
}

/// Copies a fixed-size field out of `b` (panics if shorter; see [`get_u16`]).
#[inline(always)]
fn get_array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}
