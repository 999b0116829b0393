//! `ctgate-perf pcap`: established, source-NATed gateway traffic as two pcap files, for
//! `net_pcap` `infinite_rx=1` runs (used by `ctgate-perf gateway`) and for other tools.
//!
//! * `DIR/inside.pcap`: one packet per flow, inside client → outside server, Ethernet
//!   destination the gateway's inside port (`--dst-mac`, default net_pcap port 0's MAC).
//! * `DIR/outside.pcap`: one reply for each of `--replies` × flows flows, server → the
//!   SNAT pool address 192.0.2.1 with the client's port kept, Ethernet destination the
//!   gateway's outside port (`--out-dst-mac`, default net_pcap port 1's MAC).
//!
//! Flow `i` (any `i < 64000 · 65536`):
//! * client `10.0.0.(2 + i % 250)` (inside the default config's connected 10.0.0.0/24),
//!   client port / ICMP echo identifier `1024 + i % 64000`;
//! * server `198.18.0.0 + 1 + i / 64000` (routed via the default next hop 192.0.2.2),
//!   port 53 (UDP), 443 (TCP);
//! * so `(port, server)` is unique per flow and SNAT to one address keeps every port;
//! * protocol: as asked, or for `mix` by `i % 4`: 0, 1 UDP, 2 TCP, 3 ICMP echo.
//!
//! TCP packets are established-phase segments with payload (the tracker picks the
//! connection up mid-stream), so replaying them forever keeps them in window. Every frame
//! is `--size` bytes long counting the 4-byte FCS the pcap does not store ("64-byte
//! packets" are 60-byte pcap records), checksums filled.
//!
//! It prints one line, `bench=pcap flows=N proto=… size=… replies=… shuffle=… inside=PATH
//! inside_packets=N outside=PATH outside_packets=M` (`--json`: the same as a JSON object).
//! `--quick` caps `--flows` at 10000 (the line says how many were written).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use ctgate::wire::frame_checksums::fill_frame;

/// MAC of net_pcap port 0 (DPDK's net_pcap numbers its ports 02:70:63:61:70:NN).
pub const PCAP_PORT0_MAC: &str = "02:70:63:61:70:00";
/// MAC of net_pcap port 1.
pub const PCAP_PORT1_MAC: &str = "02:70:63:61:70:01";
/// Source MAC of inside clients (also the inside port's static next hop).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// Source MAC of the outside next hop (also the outside port's static next hop).
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
/// The SNAT pool address of the default configuration.
pub const POOL: [u8; 4] = [192, 0, 2, 1];

const PORTS_PER_SERVER: u32 = 64_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    Udp,
    Tcp,
    Icmp,
    Mix,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Number of flows (distinct 5-tuples).
    #[arg(long, default_value_t = 1000)]
    pub flows: u32,
    /// Protocol of the flows; `mix` is 1/2 UDP, 1/4 TCP, 1/4 ICMP echo.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// Frame size in bytes including the 4-byte FCS (64..=1518).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Fraction of the flows that get a reply in outside.pcap (0..=1).
    #[arg(long, default_value_t = 1.0)]
    pub replies: f64,
    /// Shuffle the packet order (else flows in creation order).
    #[arg(long)]
    pub shuffle: bool,
    /// Seed of the shuffle.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Ethernet destination of inside.pcap (the gateway's inside port).
    #[arg(long, default_value = PCAP_PORT0_MAC, value_parser = parse_mac)]
    pub dst_mac: [u8; 6],
    /// Ethernet destination of outside.pcap (the gateway's outside port).
    #[arg(long, default_value = PCAP_PORT1_MAC, value_parser = parse_mac)]
    pub out_dst_mac: [u8; 6],
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

impl Args {
    /// The traffic `compare-ovs` and the `gen` process send: `flows` UDP flows of 64-byte
    /// frames, every one answered, shuffled with seed 1, to the pcap ports' MACs.
    pub fn compare_ovs(flows: u32, out: PathBuf) -> Result<Args, String> {
        Ok(Args {
            flows,
            proto: Proto::Udp,
            size: 64,
            replies: 1.0,
            shuffle: true,
            seed: 1,
            dst_mac: parse_mac(PCAP_PORT0_MAC)?,
            out_dst_mac: parse_mac(PCAP_PORT1_MAC)?,
            out,
        })
    }
}

/// The command line of `ctgate-perf pcap`: the traffic ([`Args`], which `gateway` builds
/// itself) and the output options.
#[derive(clap::Args, Debug, Clone)]
pub struct Cli {
    #[command(flatten)]
    pub traffic: Args,
    /// At most 10000 flows (for smoke tests).
    #[arg(long)]
    pub quick: bool,
    /// One JSON object instead of the key=value line.
    #[arg(long)]
    pub json: bool,
}

/// Flows written with `--quick` at most.
pub const QUICK_FLOWS: u32 = 10_000;

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("invalid MAC address '{s}'"));
    }
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("invalid MAC address '{s}'"))?;
    }
    Ok(m)
}

/// One flow's protocol number (6, 17 or 1).
pub fn proto_of(proto: Proto, i: u32) -> u8 {
    match proto {
        Proto::Udp => 17,
        Proto::Tcp => 6,
        Proto::Icmp => 1,
        Proto::Mix => [17, 17, 6, 1][(i % 4) as usize],
    }
}

fn client(i: u32) -> ([u8; 4], u16) {
    (
        [10, 0, 0, 2 + (i % 250) as u8],
        1024 + (i % PORTS_PER_SERVER) as u16,
    )
}

fn server(i: u32) -> [u8; 4] {
    let s = 1 + i / PORTS_PER_SERVER;
    [198, 18, (s >> 8) as u8, s as u8]
}

/// True when flow `i` gets a reply: the first `round(replies · flows)` flows.
fn has_reply(i: u32, flows: u32, replies: f64) -> bool {
    (i as u64) < (replies * flows as f64).round() as u64
}

/// The frame of flow `i`: `reply` false for client → server (as it enters the inside
/// port), true for server → pool (as it enters the outside port).
pub fn frame(a: &Args, i: u32, reply: bool) -> Vec<u8> {
    let (cip, cport) = client(i);
    let sip = server(i);
    let proto = proto_of(a.proto, i);
    let sport_srv: u16 = if proto == 6 { 443 } else { 53 };
    let len = a.size - 4;
    let mut f = vec![0u8; len];
    let (dmac, smac) = if reply {
        (a.out_dst_mac, ROUTER_MAC)
    } else {
        (a.dst_mac, CLIENT_MAC)
    };
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let (src, dst) = if reply { (sip, POOL) } else { (cip, sip) };
    let ip_len = (len - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[18..20].copy_from_slice(&(i as u16).to_be_bytes());
    f[20] = 0x40;
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let l4 = 34;
    match proto {
        17 => {
            let (sp, dp) = if reply {
                (sport_srv, cport)
            } else {
                (cport, sport_srv)
            };
            f[l4..l4 + 2].copy_from_slice(&sp.to_be_bytes());
            f[l4 + 2..l4 + 4].copy_from_slice(&dp.to_be_bytes());
            f[l4 + 4..l4 + 6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        }
        6 => {
            let (sp, dp) = if reply {
                (sport_srv, cport)
            } else {
                (cport, sport_srv)
            };
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (ci, si) = ((x >> 32) as u32, x as u32);
            let (seq, ack) = if reply { (si, ci) } else { (ci, si) };
            f[l4..l4 + 2].copy_from_slice(&sp.to_be_bytes());
            f[l4 + 2..l4 + 4].copy_from_slice(&dp.to_be_bytes());
            f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            f[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
            f[l4 + 12] = 5 << 4;
            f[l4 + 13] = 0x10; // ACK
            f[l4 + 14..l4 + 16].copy_from_slice(&65535u16.to_be_bytes());
        }
        _ => {
            f[l4] = if reply { 0 } else { 8 }; // echo reply / request
            f[l4 + 4..l4 + 6].copy_from_slice(&cport.to_be_bytes());
            f[l4 + 6..l4 + 8].copy_from_slice(&1u16.to_be_bytes());
        }
    }
    // Well formed by construction; a failure would be a bug in this builder.
    fill_frame(&mut f).expect("generated frame parses");
    f
}

/// The frames of both files: (inside, outside), in file order.
pub fn frames(a: &Args) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut order: Vec<u32> = (0..a.flows).collect();
    if a.shuffle {
        crate::flow_frames::Rng::new(a.seed).shuffle(&mut order);
    }
    let inside = order.iter().map(|&i| frame(a, i, false)).collect();
    let outside = order
        .iter()
        .filter(|&&i| has_reply(i, a.flows, a.replies))
        .map(|&i| frame(a, i, true))
        .collect();
    (inside, outside)
}

pub fn check(a: &Args) -> Result<(), String> {
    if !(64..=1518).contains(&a.size) {
        return Err("--size must be 64..=1518 (bytes with FCS)".into());
    }
    if !(0.0..=1.0).contains(&a.replies) {
        return Err("--replies must be a fraction in 0..=1".into());
    }
    if a.flows == 0 || a.flows > PORTS_PER_SERVER * 65_000 {
        return Err("--flows must be 1..=4160000000".into());
    }
    Ok(())
}

/// Writes `DIR/inside.pcap` and `DIR/outside.pcap`; returns their packet counts.
pub fn write(a: &Args) -> Result<(usize, usize), String> {
    check(a)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let (inside, outside) = frames(a);
    for (name, fr) in [("inside.pcap", &inside), ("outside.pcap", &outside)] {
        let p = a.out.join(name);
        write_pcap(&p, fr)?;
    }
    Ok((inside.len(), outside.len()))
}

fn write_pcap(p: &Path, frames: &[Vec<u8>]) -> Result<(), String> {
    ctgate::pcap::write_file(p, Duration::ZERO, frames.iter().map(Vec::as_slice))
        .map_err(|e| format!("{}: {e}", p.display()))
}

pub fn run(cli: &Cli) -> Result<(), String> {
    let mut a = cli.traffic.clone();
    if cli.quick {
        a.flows = a.flows.min(QUICK_FLOWS);
    }
    let (n_in, n_out) = write(&a)?;
    crate::plot::Record::new("pcap")
        .int("flows", a.flows)
        .str("proto", format!("{:?}", a.proto).to_lowercase())
        .int("size", a.size as u64)
        .real("replies", a.replies)
        .flag("shuffle", a.shuffle)
        .str("inside", a.out.join("inside.pcap").display().to_string())
        .int("inside_packets", n_in as u64)
        .str("outside", a.out.join("outside.pcap").display().to_string())
        .int("outside_packets", n_out as u64)
        .print(cli.json);
    Ok(())
}
