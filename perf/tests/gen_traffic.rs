//! `ctgate-perf pcap` writes the traffic it claims: the flow count, protocols, frame sizes
//! and reply fraction, read back with ctgate's own pcap reader and parser.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use ctgate::wire::frame_checksums::verify_frame;
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

/// `ctgate-perf pcap ARGS --out DIR`.
fn pcap(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .arg("pcap")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap()
}

/// A `pcap` run that must succeed: its stdout.
fn generate_stdout(dir: &Path, args: &[&str]) -> String {
    let out = pcap(dir, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn generate(dir: &Path, args: &[&str]) {
    let stdout = generate_stdout(dir, args);
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
        assert!(!pcap(&dir, args).status.success(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_and_quick() {
    let dir = scratch("json");
    let stdout = generate_stdout(
        &dir,
        &["--flows", "50000", "--quick", "--json", "--proto", "tcp"],
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    // --quick caps the flows at 10000.
    assert_eq!(v["bench"], "pcap");
    assert_eq!(v["flows"], 10000);
    assert_eq!(v["proto"], "tcp");
    assert_eq!(v["size"], 64);
    assert_eq!(v["replies"], 1);
    assert_eq!(v["shuffle"], false);
    assert_eq!(v["inside_packets"], 10000);
    assert_eq!(v["outside_packets"], 10000);
    let inside = dir.join("inside.pcap");
    assert_eq!(v["inside"], inside.display().to_string());
    assert_eq!(tuples(&inside, 64, PORT0).0, 10000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `replay` of generated traffic: the default ovstest-style output is unchanged, and
/// `--summary`/`--json` count the same packets and connections.
#[test]
fn replay_summary_and_json_of_generated_traffic() {
    let dir = scratch("replay");
    generate(&dir, &["--flows", "100", "--proto", "udp"]);
    let inside = dir.join("inside.pcap");
    let replay = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
            .arg("replay")
            .arg(&inside)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = replay(&[]);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 200, "100 packets then 100 connections");
    assert_eq!(lines[0], "1: trk,new");
    assert!(
        lines[100].starts_with("udp,orig=(src=10.0.0."),
        "{}",
        lines[100]
    );

    let summary = replay(&["--summary"]);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    let kv: HashMap<&str, &str> = summary
        .split_whitespace()
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    assert_eq!(kv["bench"], "replay");
    for (k, v) in [
        ("packets", "100"),
        ("untracked", "0"),
        ("trk", "100"),
        ("new", "100"),
        ("est", "0"),
        ("inv", "0"),
        ("conns", "100"),
    ] {
        assert_eq!(kv[k], v, "{k} in {summary}");
    }

    let json = replay(&["--json"]);
    let objs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objs.len(), 201);
    assert_eq!(objs[0]["packet"], 1);
    assert_eq!(objs[0]["flags"], "trk,new");
    assert_eq!(objs[100]["conn"], lines[100]);
    assert_eq!(objs[200]["bench"], "replay");
    assert_eq!(objs[200]["packets"], 100);
    assert_eq!(objs[200]["conns"], 100);
    let _ = std::fs::remove_dir_all(&dir);
}
