//! `ctgate-perf`: ctgate's benchmarks, one subcommand each. The command line only; the
//! benchmarks are the library's ([`ctgate_perf`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
// `core` by path: a `use` of it would shadow the `core` crate.
use ctgate_perf::{
    compare_ovs, datapath, fwd, gateway_bench, gen, gen_traffic, mappings_bench, nat_bench, replay,
    step,
};

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
    Core(ctgate_perf::core::Args),
    /// Runs a pcap through the tracker alone (like `ovstest test-conntrack pcap`): per-packet
    /// ct_state and the `dpctl/dump-conntrack` table.
    Replay(replay::Args),
    /// Writes established, source-NATed gateway traffic as inside.pcap and outside.pcap.
    Pcap(gen_traffic::Cli),
    /// Gateway throughput: ctgate with SNAT on established flows replayed from pcaps.
    Gateway(gateway_bench::Args),
    /// The cost of NAT in the tracker: creation and established throughput, plain vs SNAT.
    Nat(nat_bench::Args),
    /// The NAT mapping table alone: per-connection cost (create a mapping, count the
    /// connection, remove it) at a given number of live mappings.
    Mappings(mappings_bench::Args),
    /// The full ctgate pipeline in this process, fed by a generator lcore over ring ports:
    /// Mpps, connections/s, drops by reason and per-packet latency percentiles.
    Datapath(datapath::Args),
    /// The gateway step alone (no DPDK): per-packet cost of parse, track, SNAT, route on
    /// established flows, for profiling.
    Step(step::Args),
    /// ctgate and Open vSwitch's DPDK datapath (conntrack, SNAT) side by side on the same
    /// input, ports and cores.
    CompareOvs(compare_ovs::Args),
    /// The external traffic generator: a DPDK process of its own serving two net_memif
    /// ports, sending compare-ovs's flows and counting (and checking) what comes back.
    Gen(gen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fwd(args) => fwd::run(&args),
        Command::Core(args) => ctgate_perf::core::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Pcap(args) => gen_traffic::run(&args),
        Command::Gateway(args) => gateway_bench::run(&args),
        Command::Nat(args) => nat_bench::run(&args),
        Command::Mappings(args) => mappings_bench::run(&args),
        Command::Datapath(args) => datapath::run(&args),
        Command::Step(args) => step::run(&args),
        Command::CompareOvs(args) => compare_ovs::run(&args),
        Command::Gen(args) => gen::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctgate-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
