//! Packet views (smoltcp style: `Packet<T: AsRef<[u8]>>`, a private `mod field`,
//! one `check_len`), checksum helpers and one-pass frame classification.

pub mod parse;
