//! ctgate: a DPDK poll-mode stateful connection tracker and NAT gateway.
//!
//! The crate is layered one way, bottom to top:
//!
//! * [`wire`]: zero-copy packet views over byte slices and checksum helpers.
//! * [`ipf`]: IP fragment reassembly in front of the tracker (OVS `ipf` semantics).
//! * [`conntrack`]: the connection table (lock-striped buckets, key directionality,
//!   list-free expiry), L4 state machines, zones, limits and timeout policies.
//! * [`pipeline`]: the per-packet and per-burst steps of a worker lcore.
//! * `dpdk` (feature `dpdk`): the one thin, safe wrapper over `dpdk-sys`.
//!
//! Everything but `dpdk` is pure Rust over byte slices and is tested without DPDK.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod ipf;
pub mod nat;
pub mod pcap;
pub mod pipeline;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dpdk;
