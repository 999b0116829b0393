//! Application layer gateways (OVS's `alg=ftp` and `alg=tftp`): pure functions over
//! payload bytes that find the data connection a control connection announces and
//! rewrite the announced address under NAT.
//!
//! - [`ftp`]: `PORT`, `EPRT`, `227` and `229` parsed as OVS's FTP ALG parses them, and
//!   the address rewritten (IPv4 and IPv6);
//! - [`tftp`]: read and write requests recognised;
//! - [`helpers`]: the configured `[[alg]]` rules, which connections get a helper;
//! - [`track`]: the tracker's use of all this (expectations from payloads, RELATED data
//!   connections, skews); [`side`]: the per-connection skew and parent table;
//! - [`expect`]: the expectation table (bucket locks, limits, lifetime tied to the parent);
//! - [`splice`]: replacing a field with text of another length in place, with the TCP or
//!   UDP checksum updated incrementally; [`seq`]: the sequence skew a length change
//!   leaves for the rest of the connection.
//!
//! Invariants: nothing here panics, allocates, or writes outside the rewritten field and
//! the bytes it moves; a payload that does not parse is reported as such and left
//! unchanged, whatever its length.

/// Expectation table buckets.
pub const EXP_BUCKETS: usize = 1024;
/// Expectations held at most.
pub const EXP_MAX: u32 = 4096;
/// Expectations one control connection holds at most.
pub const EXP_PER_PARENT: u32 = 32;
/// Side table buckets (4 entries each).
pub const SIDE_BUCKETS: usize = 4096;

pub mod expect;
pub mod ftp;
pub mod helpers;
pub mod seq;
pub mod side;
pub mod splice;
pub mod tftp;
pub mod track;

#[cfg(test)]
mod tests;
