//! net_pcap in → out: a pcap of known packets goes in on port 0 and must come out of
//! port 1 byte-identical except for the rewritten MACs, in order, with matching final
//! counters; a truncated frame is counted and dropped.
#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;
use ctgate::pcap;

const NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const HOST_A: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];
const HOST_B: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0b];

/// Varied frames: UDP, TCP, IPv6, ARP, VLAN, minimum and maximum size, a bare Ethernet
/// header, garbage, and (at index 5) one frame shorter than an Ethernet header.
fn frames() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    v.push(ether(
        HOST_B,
        HOST_A,
        0x0800,
        &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(40000, 53, b"query")),
    ));
    v.push(ether(
        HOST_B,
        HOST_A,
        0x0800,
        &ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            6,
            &tcp(40001, 80, 1, 0x02, &[]),
        ),
    ));
    v.push(ether(
        HOST_A,
        HOST_B,
        0x0800,
        &ipv4(
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            6,
            &tcp(80, 40001, 9, 0x12, &[]),
        ),
    ));
    let mut v6 = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v6.extend_from_slice(&udp(1000, 2000, b"v6v6"));
    v.push(ether(HOST_B, HOST_A, 0x86dd, &v6));
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0, 0, 0x0a, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0,
        2,
    ];
    v.push(ether([0xff; 6], HOST_A, 0x0806, &arp));
    v.push(vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5]); // 10 bytes: truncated
    let mut vlan = vec![0x00, 0x64, 0x08, 0x00];
    vlan.extend_from_slice(&ipv4(
        [192, 168, 1, 1],
        [192, 168, 1, 2],
        17,
        &udp(5, 6, &[7; 30]),
    ));
    v.push(ether(HOST_B, HOST_A, 0x8100, &vlan));
    let mut min = ether(
        HOST_B,
        HOST_A,
        0x0800,
        &ipv4([10, 0, 0, 3], [10, 0, 0, 4], 17, &udp(1, 2, &[])),
    );
    min.resize(60, 0);
    v.push(min);
    let big: Vec<u8> = (0..1472u32).map(|i| (i * 7 + 3) as u8).collect();
    v.push(ether(
        HOST_B,
        HOST_A,
        0x0800,
        &ipv4([10, 0, 0, 5], [10, 0, 0, 6], 17, &udp(7, 8, &big)),
    ));
    assert_eq!(v.last().map(Vec::len), Some(1514));
    v.push(ether(HOST_B, HOST_A, 0x88b5, &[])); // exactly an Ethernet header
    v.push((0..100u8).map(|i| i.wrapping_mul(37)).collect()); // garbage, still >= 14 bytes
    v.push(ether(
        HOST_B,
        HOST_A,
        0x0800,
        &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(40000, 53, b"last")),
    ));
    v
}

const TRUNCATED: usize = 5;

fn run_pcap_forwarding(name: &str, lcores: &str) {
    let _lock = dpdk_lock();
    let s = Scratch::new(name);
    let input = frames();
    pcap::write_file(
        s.path("in.pcap"),
        Duration::from_secs(1_700_000_000),
        input.iter().map(Vec::as_slice),
    )
    .unwrap();
    pcap::write_file(s.path("empty.pcap"), Duration::ZERO, std::iter::empty()).unwrap();
    let mut eal = s.eal_args(lcores);
    let p = |f: &str| s.path(f).display().to_string();
    eal.extend([
        "--vdev".to_string(),
        format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            p("in.pcap"),
            p("out0.pcap")
        ),
        "--vdev".to_string(),
        format!(
            "net_pcap1,rx_pcap={},tx_pcap={}",
            p("empty.pcap"),
            p("out1.pcap")
        ),
    ]);
    let out = run_ctgate(
        &eal,
        &[
            "--pair",
            "0:1",
            "--next-hop-mac",
            "02:00:00:00:00:01",
            "--exit-when-idle",
            "1000",
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out}");

    let port1_mac = out.port_mac(1);
    assert_ne!(port1_mac, HOST_A, "{out}");
    let forwarded: Vec<Vec<u8>> = pcap::read_file(s.path("out1.pcap"))
        .unwrap()
        .into_iter()
        .map(|p| p.data)
        .collect();
    let expected: Vec<Vec<u8>> = input
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != TRUNCATED)
        .map(|(_, f)| {
            let mut f = f.clone();
            f[0..6].copy_from_slice(&NEXT_HOP);
            f[6..12].copy_from_slice(&port1_mac);
            f
        })
        .collect();
    assert_eq!(forwarded.len(), expected.len(), "{out}");
    for (i, (got, want)) in forwarded.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {i} differs\n{out}");
    }
    assert!(
        pcap::read_file(s.path("out0.pcap")).unwrap().is_empty(),
        "nothing goes back to port 0"
    );

    let n = input.len() as u64;
    assert_eq!(out.port_counter(0, "rx"), n, "{out}");
    assert_eq!(out.port_counter(0, "tx"), 0, "{out}");
    assert_eq!(out.port_counter(0, "dropped"), 1, "{out}");
    assert_eq!(out.port_counter(1, "rx"), 0, "{out}");
    assert_eq!(out.port_counter(1, "tx"), n - 1, "{out}");
    assert_eq!(out.port_counter(1, "dropped"), 0, "{out}");
    let workers = out.worker_lines();
    let sum = |k: &str| {
        workers
            .iter()
            .map(|l| field_u64(l, k).unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("rx"), n, "{out}");
    assert_eq!(sum("tx"), n - 1, "{out}");
    assert_eq!(sum("drop_short_frame"), 1, "{out}");
    assert_eq!(sum("dropped"), 1, "{out}");
}

#[test]
fn pcap_in_port0_comes_out_port1_rewritten_one_worker() {
    run_pcap_forwarding("pcap1w", "0,1");
}

#[test]
fn pcap_in_port0_comes_out_port1_rewritten_two_workers() {
    // Three lcores on two CPUs: the control lcore and one worker share CPU 0.
    run_pcap_forwarding("pcap2w", "0@0,1@1,2@0");
}

#[test]
fn explicit_pair_and_idle_exit_without_input() {
    let _lock = dpdk_lock();
    let s = Scratch::new("pcapidle");
    pcap::write_file(s.path("empty.pcap"), Duration::ZERO, std::iter::empty()).unwrap();
    let mut eal = s.eal_args("0,1");
    for i in 0..2 {
        eal.push("--vdev".into());
        eal.push(format!(
            "net_pcap{i},rx_pcap={},tx_pcap={}",
            s.path("empty.pcap").display(),
            s.path(&format!("out{i}.pcap")).display()
        ));
    }
    let out = run_ctgate(
        &eal,
        &["--pair", "1:0", "--exit-when-idle", "300"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("stopping (input idle)"), "{out}");
    for p in 0..2 {
        assert_eq!(out.port_counter(p, "rx"), 0, "{out}");
        assert_eq!(out.port_counter(p, "tx"), 0, "{out}");
    }
}
