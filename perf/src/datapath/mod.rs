//! `ctgate-perf datapath`: the full ctgate pipeline fed by an in-process generator.
//! (Being written.)

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: &Args) -> Result<(), String> {
    Err("datapath: not implemented yet".into())
}
