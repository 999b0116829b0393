//! Packet rewrite for NAT (being written): addresses, ports and ICMP identifiers set in
//! place with RFC 1624 incremental checksum updates, and ICMP errors' embedded headers
//! translated back.
