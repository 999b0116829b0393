//! net_tap: the tap interface appears in the kernel while ctgate runs, and frames written
//! to it from the kernel side (an AF_PACKET socket) come out of the paired net_pcap port
//! with rewritten MACs. Needs root (CAP_NET_ADMIN) and fails, not skips, without it.
#![cfg(feature = "dpdk")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ctgate::pcap;
use pnet_datalink::Channel;

const NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// IEEE 802 local experimental EtherType: no protocol stack cares about these frames.
const ETHERTYPE: u16 = 0x88b5;

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn kernel_frames_on_the_tap_come_out_of_the_pcap_port() {
    assert!(
        is_root(),
        "the net_tap test needs root (CAP_NET_ADMIN and /dev/net/tun) to create a tap \
         interface: run `cargo test` as root, as CI does"
    );
    let _lock = dpdk_lock();
    let s = Scratch::new("tap");
    let iface = format!("ctgt{}", std::process::id() % 100_000);
    assert!(!link_exists(&iface), "{iface} exists before the test");
    pcap::write_file(s.path("empty.pcap"), Duration::ZERO, std::iter::empty()).unwrap();
    let mut eal = s.eal_args("0,1");
    eal.extend([
        "--vdev".to_string(),
        format!("net_tap0,iface={iface}"),
        "--vdev".to_string(),
        format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            s.path("empty.pcap").display(),
            s.path("out.pcap").display()
        ),
    ]);
    let mut run = Running::start(
        &eal,
        &["--pair", "0:1", "--next-hop-mac", "02:00:00:00:00:01"],
    );
    run.wait_for_line(Duration::from_secs(30), |l| {
        l.starts_with("ctgate: forwarding")
    })
    .expect("ctgate did not start");
    let port_of = |stdout: &str, name: &str| -> u16 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("port ") && l.contains(&format!("name={name} ")))
            .unwrap_or_else(|| panic!("no start-up line for {name}:\n{stdout}"));
        line["port ".len()..line.find(':').unwrap()]
            .parse()
            .unwrap()
    };

    // The tap interface is there while ctgate runs.
    assert!(
        link_exists(&iface),
        "tap interface {iface} missing while ctgate runs"
    );
    let netif = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .expect("tap interface not listed");
    let kernel_mac = netif.mac.expect("tap interface has a MAC").octets();
    let Ok(Channel::Ethernet(mut tx, _rx)) = pnet_datalink::channel(&netif, Default::default())
    else {
        panic!("cannot open an AF_PACKET channel on {iface}");
    };
    let sent: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            let mut payload = format!("ctgate-tap-test-{i}").into_bytes();
            payload.resize(46, i);
            ether([0x02, 0, 0, 0, 0, 0x99], kernel_mac, ETHERTYPE, &payload)
        })
        .collect();
    for f in &sent {
        tx.send_to(f, None)
            .expect("send")
            .expect("send_to on the tap");
    }

    // Wait until the stats show the pcap port transmitted them.
    let pcap_port = port_of(&run_stdout(&mut run), "net_pcap0");
    let deadline = Instant::now() + Duration::from_secs(10);
    let key = format!("port={pcap_port} ");
    while Instant::now() < deadline {
        let Some(line) = run.wait_for_line(Duration::from_secs(2), |l| l.starts_with("t=")) else {
            continue;
        };
        let tx_count = line
            .split(" | ")
            .find(|p| p.starts_with(&key))
            .and_then(|p| field_u64(p, "tx"))
            .unwrap_or(0);
        if tx_count >= sent.len() as u64 {
            break;
        }
    }
    run.signal("INT");
    let out = run.finish(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out}");
    let tap_port = port_of(&out.stdout, "net_tap0");
    let pcap_mac = out.port_mac(pcap_port);

    let got: Vec<Vec<u8>> = pcap::read_file(s.path("out.pcap"))
        .unwrap()
        .into_iter()
        .map(|p| p.data)
        .filter(|f| f.len() >= 14 && f[12..14] == ETHERTYPE.to_be_bytes())
        .collect();
    let want: Vec<Vec<u8>> = sent
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[0..6].copy_from_slice(&NEXT_HOP);
            f[6..12].copy_from_slice(&pcap_mac);
            f
        })
        .collect();
    assert_eq!(
        got, want,
        "frames from the kernel must leave the pcap port rewritten\n{out}"
    );
    assert!(
        out.port_counter(tap_port, "rx") >= sent.len() as u64,
        "{out}"
    );
    assert!(
        out.port_counter(pcap_port, "tx") >= sent.len() as u64,
        "{out}"
    );
    // Closing the port removed the interface.
    assert!(
        !link_exists(&iface),
        "{iface} left behind after ctgate exited"
    );
}

/// What the run printed so far (start-up lines included).
fn run_stdout(run: &mut Running) -> String {
    // Drain lines already available without blocking long.
    while run
        .wait_for_line(Duration::from_millis(50), |_| true)
        .is_some()
    {}
    run.stdout().to_string()
}
