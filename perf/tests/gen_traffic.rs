//! `ctgate-perf pcap` writes the traffic it claims: the flow count, protocols, frame sizes
//! and reply fraction, read back with ctgate's own pcap reader and parser.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use ctgate::wire::checksum::verify_frame;
use ctgate::wire::parse::{parse_frame, L4Summary};

type Tuple = (u8, [u8; 4], u16, [u8; 4], u16);

/// Distinct 5-tuples per protocol number, checking every frame's length, checksums and
/// Ethernet destination.
fn tuples(path: &Path, size: usize, dst_mac: [u8; 6]) -> (usize, HashMap<u8, HashSet<Tuple>>) {
    let packets = ctgate::pcap::read_file(path).unwrap();
    let mut by_proto: HashMap<u8, HashSet<Tuple>> = HashMap::new();
    for p in &packets {
        assert_eq!(p.data.len(), size - 4, "{}", path.display());
        assert_eq!(p.data[0..6], dst_mac);
        verify_frame(&p.data).unwrap();
        let f = parse_frame(&p.data).unwrap();
        let (sp, dp) = match f.l4 {
            L4Summary::Udp { sport, dport } => (sport, dport),
            L4Summary::Tcp(t) => {
                assert_eq!(t.flags, 0x10, "established-phase ACKs");
                (t.sport, t.dport)
            }
            L4Summary::Icmp(i) => (i.id, u16::from(i.icmp_type)),
            other => panic!("{other:?}"),
        };
        let src = [f.src[0], f.src[1], f.src[2], f.src[3]];
        let dst = [f.dst[0], f.dst[1], f.dst[2], f.dst[3]];
        by_proto
            .entry(f.proto)
            .or_default()
            .insert((f.proto, src, sp, dst, dp));
    }
    (packets.len(), by_proto)
}

fn generate(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .arg("pcap")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("bench=pcap "), "{stdout}");
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ctgate-gen-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const PORT0: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
const PORT1: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x01];

#[test]
fn mix_has_the_claimed_flows_protocols_sizes_and_replies() {
    let dir = scratch("mix");
    generate(
        &dir,
        &[
            "--flows",
            "70000",
            "--proto",
            "mix",
            "--size",
            "128",
            "--replies",
            "0.25",
            "--shuffle",
            "--seed",
            "7",
        ],
    );
    let (n_in, inside) = tuples(&dir.join("inside.pcap"), 128, PORT0);
    let (n_out, outside) = tuples(&dir.join("outside.pcap"), 128, PORT1);
    assert_eq!(n_in, 70000);
    // Mix: half UDP, a quarter TCP, a quarter ICMP; one packet per distinct flow.
    assert_eq!(inside[&17].len(), 35000);
    assert_eq!(inside[&6].len(), 17500);
    assert_eq!(inside[&1].len(), 17500);
    assert_eq!(n_out, 17500);
    assert_eq!(outside.values().map(HashSet::len).sum::<usize>(), 17500);
    // Inside: clients in 10.0.0.0/24; replies go to the SNAT address with the client's
    // (kept) port, so every reply answers an inside flow.
    let mut fwd: HashSet<(u8, u16, [u8; 4])> = HashSet::new();
    for t in inside.values().flatten() {
        assert_eq!(t.1[..3], [10, 0, 0]);
        assert_eq!(t.3[..2], [198, 18]);
        assert!(
            fwd.insert((t.0, t.2, t.3)),
            "port kept under SNAT must be unique"
        );
    }
    for t in outside.values().flatten() {
        assert_eq!(t.3, [192, 0, 2, 1]);
        let port = if t.0 == 1 { t.2 } else { t.4 };
        assert!(fwd.contains(&(t.0, port, t.1)), "{t:?} answers no flow");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn single_protocols_and_sizes() {
    for (proto, num, size) in [("udp", 17u8, 64usize), ("tcp", 6, 1518), ("icmp", 1, 64)] {
        let dir = scratch(proto);
        generate(
            &dir,
            &[
                "--flows",
                "1000",
                "--proto",
                proto,
                "--size",
                &size.to_string(),
            ],
        );
        let (n_in, inside) = tuples(&dir.join("inside.pcap"), size, PORT0);
        let (n_out, outside) = tuples(&dir.join("outside.pcap"), size, PORT1);
        assert_eq!((n_in, n_out), (1000, 1000), "{proto}");
        assert_eq!(inside.keys().copied().collect::<Vec<_>>(), [num], "{proto}");
        assert_eq!(inside[&num].len(), 1000, "{proto}");
        assert_eq!(outside[&num].len(), 1000, "{proto}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn bad_arguments_are_refused() {
    let dir = scratch("bad");
    for args in [
        &["--size", "63"][..],
        &["--replies", "1.5"],
        &["--flows", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
            .arg("pcap")
            .args(args)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
