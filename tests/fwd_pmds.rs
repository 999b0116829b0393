//! Debian's DPDK PMDs are plugins in its driver directory; the binary must load them with
//! no `-d` option. net_null, net_ring, net_pcap and net_tap all probe and forward.
#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;
use ctgate::pcap;

#[test]
fn null_ring_pcap_and_tap_pmds_load_without_dash_d() {
    assert!(
        is_root(),
        "net_tap needs root (CAP_NET_ADMIN): run `cargo test` as root, as CI does"
    );
    let _lock = dpdk_lock();
    let s = Scratch::new("pmds");
    pcap::write_file(s.path("empty.pcap"), Duration::ZERO, std::iter::empty()).unwrap();
    let mut eal = s.eal_args("0,1");
    assert!(!eal.iter().any(|a| a == "-d"));
    let tap = format!("ctgp{}", std::process::id() % 100_000);
    eal.extend([
        "--vdev".to_string(),
        "net_null0".to_string(),
        "--vdev".to_string(),
        "net_ring0".to_string(),
        "--vdev".to_string(),
        format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            s.path("empty.pcap").display(),
            s.path("out.pcap").display()
        ),
        "--vdev".to_string(),
        format!("net_tap0,iface={tap}"),
    ]);
    let out = run_ctgate(
        &eal,
        &[
            "--pair",
            "0:1",
            "--pair",
            "2:3",
            "--duration",
            "0.5",
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out}");
    for driver in ["net_null", "net_ring", "net_pcap", "net_tap"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("port ") && l.contains(&format!("driver={driver} "))),
            "{driver} did not probe\n{out}"
        );
    }
    // Four ports, paired 0↔1 and 2↔3; net_null is a source, so its pair saw traffic.
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("port="))
            .count(),
        4,
        "{out}"
    );
    let null_port = (0..4u16)
        .find(|&p| {
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("port {p}: name=net_null0 ")))
        })
        .expect("net_null0 port");
    assert!(out.port_counter(null_port, "rx") > 0, "{out}");
}
