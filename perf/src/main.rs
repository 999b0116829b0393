//! `ctgate-perf`: ctgate's benchmarks. One module per subcommand:
//!
//! * `fwd` ([`fwd`]): forwarding throughput of the real `ctgate` binary on virtual
//!   devices, in Mpps per worker.
//!
//! Speed is measured here, never asserted in tests.

mod compare_ovs;
mod core;
mod datapath;
mod fwd;
mod gateway;
mod gen_traffic;
mod nat_bench;
#[allow(dead_code)]
mod plot;
mod replay;
mod runner;
mod step;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ctgate benchmarks.
#[derive(Parser, Debug)]
#[command(name = "ctgate-perf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Forwarding throughput: runs ctgate on net_null (or net_pcap infinite_rx) for a
    /// fixed time and prints Mpps in total and per worker.
    Fwd(fwd::Args),
    /// The connection tracker alone (no DPDK): established lookups, new connections/s,
    /// memory per connection, 2-thread scaling, sweep while forwarding.
    Core(core::Args),
    /// Runs a pcap through the tracker alone (like `ovstest test-conntrack pcap`): per-packet
    /// ct_state and the `dpctl/dump-conntrack` table.
    Replay(replay::Args),
    /// Writes established, source-NATed gateway traffic as inside.pcap and outside.pcap.
    Pcap(gen_traffic::Cli),
    /// Gateway throughput: ctgate with SNAT on established flows replayed from pcaps.
    Gateway(gateway::Args),
    /// The cost of NAT in the tracker: creation and established throughput, plain vs SNAT.
    Nat(nat_bench::Args),
    /// The full ctgate pipeline in this process, fed by a generator lcore over ring ports:
    /// Mpps, connections/s, drops by reason and per-packet latency percentiles.
    Datapath(datapath::Args),
    /// The gateway step alone (no DPDK): per-packet cost of parse, track, SNAT, route on
    /// established flows, for profiling.
    Step(step::Args),
    /// ctgate and Open vSwitch's DPDK datapath (conntrack, SNAT) side by side on the same
    /// input, ports and cores.
    CompareOvs(compare_ovs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fwd(args) => fwd::run(&args),
        Command::Core(args) => core::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Pcap(args) => gen_traffic::run(&args),
        Command::Gateway(args) => gateway::run(&args),
        Command::Nat(args) => nat_bench::run(&args),
        Command::Datapath(args) => datapath::run(&args),
        Command::Step(args) => step::run(&args),
        Command::CompareOvs(args) => compare_ovs::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctgate-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
