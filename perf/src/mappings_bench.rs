//! `ctgate-perf mappings`: the NAT mapping table alone (`ctgate::nat::mapping`), on one
//! thread, at a given number of live mappings.
//!
//! The table is made for `--max` mappings and filled with `--live` inside endpoints, each
//! with one connection (a mapping made by `get_or_create`, its outside endpoint a distinct
//! pool port, then `conn_added` with a peer, as the tracker's hooks do). Then, per
//! connection measured, a new inside endpoint's connection is created the same way and the
//! oldest one's removed (`conn_removed`, which removes its mapping): the table stays at
//! `--live` mappings, and every operation reaches a different bucket, as a connection-rate
//! load with a new inside endpoint per connection does.
//!
//! Prints `bench=mappings max=M live=N start_s=… ns_per_conn=… len=…`: `start_s` is the
//! time `Mappings::new` took; `ns_per_conn` the on-CPU time of this thread
//! (`CLOCK_THREAD_CPUTIME_ID`, wall time where it reads zero) per created-and-removed
//! connection; `len` the mappings left (= `live`, checked).

use crate::step::thread_cpu_secs;
use clap::Args as ClapArgs;
use ctgate::nat::mapping::{Endpoint, Mappings};
use std::time::Instant;

/// Arguments of `ctgate-perf mappings`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Live mappings (repeatable or comma separated), at most `--max`.
    #[arg(long, value_delimiter = ',', default_values_t = vec![60_000u32, 900_000])]
    pub live: Vec<u32>,
    /// The table's maximum (the gateway's is `max_conns`, at most 2^20).
    #[arg(long, default_value_t = 1 << 20)]
    pub max: u32,
    /// Connections created and removed per case.
    #[arg(long, default_value_t = 2_000_000)]
    pub conns: u32,
}

/// Inside endpoint `n`: 10.x.y.z (from `n`), port 1000, UDP.
fn inside(n: u32) -> Endpoint {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&(0x0a00_0000 | (n & 0x00ff_ffff)).to_be_bytes());
    Endpoint {
        zone: 0,
        proto: 17,
        family: 4,
        addr,
        port: 1000,
    }
}

/// Outside endpoint of connection `n`: port 1024 + n % 60000 of 192.0.2.0/24 and on.
fn outside(n: u32) -> ([u8; 16], u16) {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&(0xc000_0200 + n / 60_000).to_be_bytes());
    (a, 1024 + (n % 60_000) as u16)
}

fn now_secs() -> f64 {
    thread_cpu_secs().unwrap_or_default()
}

/// One case: `live` mappings in a table for `max`, `conns` connections through it.
fn case(max: u32, live: u32, conns: u32) -> Result<String, String> {
    if live > max || u64::from(live) + u64::from(conns) > 1 << 24 {
        return Err(format!(
            "mappings: --live {live} must be at most --max {max}, and live + conns at most 2^24"
        ));
    }
    let t = Instant::now();
    let maps = Mappings::new(max);
    let start_s = t.elapsed().as_secs_f64();
    let peer = [198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let add = |n: u32| -> Result<(), String> {
        let i = inside(n);
        let (addr, port) = maps
            .get_or_create(&i, 0, |k| (k == 0).then(|| outside(n)))
            .ok_or_else(|| format!("mappings: connection {n} got no mapping"))?;
        maps.conn_added(&i, &Endpoint { addr, port, ..i }, Some(&peer));
        Ok(())
    };
    let remove = |n: u32| {
        let i = inside(n);
        let (addr, port) = outside(n);
        maps.conn_removed(&i, &Endpoint { addr, port, ..i });
    };
    for n in 0..live {
        add(n)?;
    }
    let (c0, w0) = (now_secs(), Instant::now());
    for k in 0..conns {
        add(live + k)?;
        remove(k);
    }
    let cpu = now_secs() - c0;
    let secs = if cpu > 0.0 {
        cpu
    } else {
        w0.elapsed().as_secs_f64()
    };
    if maps.len() != live {
        return Err(format!("mappings: {} left, expected {live}", maps.len()));
    }
    Ok(format!(
        "bench=mappings max={max} live={live} start_s={start_s:.4} ns_per_conn={:.1} len={}",
        secs * 1e9 / f64::from(conns.max(1)),
        maps.len()
    ))
}

/// Runs every `--live` case and prints its line.
pub fn run(args: &Args) -> Result<(), String> {
    for &live in &args.live {
        println!("{}", case(args.max, live, args.conns)?);
    }
    Ok(())
}
