//! Protocol numbers and flag bits shared by the parser, the views and the checksums.
//!
//! Plain constants with no imports of their own, so that every other `wire` file can
//! use them without importing another view or the parser.

/// IP protocol numbers the tracker treats specially.
pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
/// Tracked without ports (as OVS does); NAT updates its pseudo-header checksum.
pub const DCCP: u8 = 33;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;
/// Tracked without ports (as OVS does); NAT updates its pseudo-header checksum.
pub const UDPLITE: u8 = 136;

/// TCP flag bits as they stand in byte 13 of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}
