//! The control lcore: the main lcore sets up ports and workers, prints stats once a
//! second, and on a signal, a time limit or idle input stops everything cleanly and prints
//! the final counters.
//!
//! * [`stats`]: the counter lines and rates (pure, tested without DPDK).
//! * [`gateway`] (feature `dpdk`): the run itself.
//! * [`socket`], [`protocol`], [`commands`]: the control socket, its line-based JSON
//!   protocol and the OVS dpctl-style commands; [`telemetry`]: DPDK telemetry values.

pub mod commands;
#[cfg(feature = "dpdk")]
pub mod gateway;
pub mod protocol;
pub mod socket;
pub mod stats;
pub mod telemetry;
