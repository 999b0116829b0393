//! ctgate's benchmarks as a library: one module per `ctgate-perf` subcommand (the binary,
//! `src/main.rs`, is only its command line), and the pieces they share, which the
//! integration tests under `perf/tests/` use too.
//!
//! Subcommands: [`core`] (the tracker alone), [`nat_bench`] (NAT in the tracker),
//! [`replay`] (a pcap through the tracker), [`gen_traffic`] (`pcap`: gateway traffic as
//! pcaps), [`fwd`] and [`gateway_bench`] (the ctgate binary forwarding and in gateway
//! mode), [`step`] (the gateway step alone), [`datapath`] (the whole pipeline in this
//! process) and [`compare_ovs`] (ctgate against Open vSwitch).
//!
//! Shared: [`runner`] (running the ctgate binary, its figures), [`bench_config`] (the
//! configuration benchmarks run with), [`pcap_feed`] (net_pcap sources), [`ovs`] (a
//! private Open vSwitch instance, also the differential test's), [`child`] (child
//! processes that never outlive this one), [`gen_process`] (the generator as a child
//! process), [`flow_frames`] (the tracker benchmarks'
//! synthetic frames), [`plot`] (result lines, progress, SVG charts), [`xcore`] (the
//! machine's cross-CPU cache-line time, sampled during runs that pass data between CPUs).
//!
//! Speed is measured here, never asserted in tests.

pub mod bench_config;
pub mod child;
pub mod compare_ovs;
pub mod core;
pub mod datapath;
pub mod flow_frames;
pub mod fwd;
pub mod gateway_bench;
pub mod gen;
pub mod gen_process;
pub mod gen_traffic;
pub mod mappings_bench;
pub mod nat_bench;
pub mod ovs;
pub mod pcap_feed;
pub mod plot;
pub mod replay;
pub mod runner;
pub mod step;
pub mod xcore;
