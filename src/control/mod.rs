//! The control lcore: the main lcore sets up ports and workers, prints stats once a
//! second, serves the control socket, and on a signal, a time limit or idle input stops
//! everything cleanly and prints the final counters.
//!
//! * [`counter_lines`]: the counter lines and rates (pure, tested without DPDK).
//! * [`run`] (feature `dpdk`): one run of the process: set-up, launch, the control loop,
//!   shutdown; [`run_options`]: what a run is told (the CLI fills it).
//! * [`socket`], [`protocol`], [`commands`]: the control socket, its line-based JSON
//!   protocol and the OVS dpctl-style commands; [`telemetry_cmds`]: the values of
//!   ctgate's DPDK telemetry commands.

pub mod commands;
pub mod config_toml;
pub mod counter_lines;
pub mod event_consumers;
pub mod metrics;
pub mod natlog;
pub mod protocol;
pub mod reload;
#[cfg(feature = "dpdk")]
pub mod run;
pub mod run_options;
pub mod socket;
pub mod sync;
pub mod telemetry_cmds;
