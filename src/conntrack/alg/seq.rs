//! The sequence skew of a TCP connection whose payload was lengthened or shortened by a
//! rewrite: every later segment sent in the rewriting direction has its sequence number
//! moved by the total change so far, and every segment sent the other way has its
//! acknowledgement number moved back, so that neither end sees the rewrite (as OVS's
//! `adj_seqnum` with `conn->seq_skew`, and Linux's `nf_nat_seq_adjust`).
//!
//! Invariants: arithmetic is modulo 2^32 (sequence space), never overflowing; a skew of
//! zero changes nothing. The checksum update is RFC 1624's for a 32-bit field.

use crate::wire::checksum;

/// Moves the 32-bit sequence or acknowledgement field `field` by `by` (mod 2^32) and
/// updates the segment's TCP checksum `csum` to match: a segment sent in the rewriting
/// direction has its sequence number moved by `+skew`, one sent the other way its
/// acknowledgement number by `-skew`. Returns the new field and checksum.
pub fn shift(field: u32, by: i32, csum: u16) -> (u32, u16) {
    let new = field.wrapping_add(by as u32);
    (new, checksum::update_u32(csum, field, new))
}
