//! `ctgate-perf compare-ovs`: ctgate and OVS-DPDK conntrack side by side on the same input.
//! (Being written.)

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: &Args) -> Result<(), String> {
    Err("compare-ovs: not implemented yet".into())
}
