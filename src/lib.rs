//! ctgate: a DPDK poll-mode stateful connection tracker and NAT gateway.
//!
//! The crate is layered one way, lowest first; each module imports only those listed
//! before it (docs/DESIGN.md has the table):
//!
//! * `test_dir` (tests only): a test's own temporary directory, removed when it ends.
//! * [`dpdk`]: the one thin, safe wrapper over `dpdk-sys` (feature `dpdk`), and the
//!   page-backed zeroed arrays the tracker's tables live in (always built).
//! * [`pcap`]: a pure-Rust pcap file reader and writer (tests, replay, perf).
//! * [`wire`]: zero-copy packet views over byte slices, protocol constants, checksum
//!   helpers and the one-pass frame parser.
//! * [`ipf`]: IP fragment reassembly in front of the tracker (OVS `ipf` semantics).
//! * [`conntrack`]: the connection table (lock-striped buckets, key directionality,
//!   list-free expiry), L4 state machines, zones, limits and timeout policies, connection
//!   events, connections learned from an HA peer, and the FTP/TFTP helpers
//!   (`conntrack::alg`: expectations). It knows no NAT: the reply tuples come from its
//!   caller (`ReplyTuples`), in its tests from a stand-in.
//! * [`nat`]: SNAT/DNAT tuple choice, endpoint-independent mappings and the packet
//!   rewrite.
//! * [`config`]: the gateway configuration file (`[logging]` and `[sync]` in their own
//!   files).
//! * [`pipeline`]: the per-packet and per-burst steps of a worker lcore (forwarding, the
//!   NAT gateway step) and the worker loop.
//! * [`control`]: the process's run (set-up, launch, the control lcore's loop), the
//!   control socket and its commands, configuration reload, and what consumes the
//!   connection event stream on the control lcore (the NAT log, state sync).
//! * [`cli`]: the command line, which fills `control`'s run options; `main.rs` only
//!   connects `cli` to `control`.
//!
//! Everything but `dpdk`'s DPDK part (and the parts of `pipeline` and `control` that drive it) is pure
//! Rust over byte slices and is tested without DPDK.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod ipf;
pub mod nat;
pub mod pcap;
pub mod pipeline;
#[cfg(test)]
pub(crate) mod test_dir;
pub mod wire;

pub mod dpdk;
