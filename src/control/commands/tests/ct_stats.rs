//! ct-stats-show and ct-bkts.

use super::*;
use crate::conntrack::testpkt::{icmp_query, udp};

#[test]
fn ct_stats_show_counts_per_protocol_and_tcp_state() {
    let env = filled();
    let mut w = env.ct.worker(0);
    assert!(w
        .process(&icmp_query("fd00::1", "fd00::2", 128, 3), 0, true, 0)
        .conn
        .is_some());
    drop(w);
    let out = env.ok("ct-stats-show", &[]);
    let (ovs, ours) = out.split_once("ctgate counters:\n").unwrap();
    // ICMPv6 is counted in the total but not printed, as in OVS.
    assert_eq!(
        ovs,
        "Connections Stats:\n    Total: 7\n  TCP: 2\n  UDP: 2\n  ICMP: 1\n  Other: 1\n"
    );
    assert!(
        ours.starts_with("    created: 7\n    expired: 0\n"),
        "{ours}"
    );
    assert!(ours.contains("    refused_zone_limit: 0\n"));
    let verbose = env.ok("ct-stats-show", &["-m"]);
    assert!(verbose.starts_with(
        "Connections Stats:\n    Total: 7\n  TCP: 2\n    Conn per TCP states:\n\t  [SYN_SENT]=1\n\t  [ESTABLISHED]=1\n  UDP: 2\n"
    ), "{verbose}");
    assert_eq!(env.ok("ct-stats-show", &["verbose"]), verbose);
    assert_eq!(env.ok("ct-stats-show", &["--more"]), verbose);
    let z = env.ok("ct-stats-show", &["zone=5"]);
    assert!(
        z.starts_with("Connections Stats:\n    Total: 1\n  UDP: 1\nctgate counters:\n"),
        "{z}"
    );
    let empty = env.ok("ct-stats-show", &["zone=9"]);
    assert!(empty.starts_with("Connections Stats:\n    Total: 0\nctgate counters:\n"));
}

/// Parses ct-bkts' table into the per-bucket cells (None for '.').
fn bkts_cells(out: &str) -> Vec<Option<u32>> {
    let mut cells = Vec::new();
    for l in out
        .lines()
        .filter(|l| l.contains("..") && l.contains("   | "))
    {
        let (_, row) = l.split_once("   | ").unwrap();
        assert_eq!(row.len(), 40, "row {l:?}");
        for i in 0..8 {
            let c = row[i * 5..i * 5 + 5].trim();
            cells.push(if c == "." {
                None
            } else {
                Some(c.parse().unwrap())
            });
        }
    }
    cells
}

#[test]
fn ct_bkts_prints_ovs_table_summing_to_nconns() {
    let env = Env::new(1000, 64);
    assert_eq!(
        env.ok("ct-bkts", &[]),
        "Total Buckets: 64\nCurrent Connections: 0\n\nConnections per bucket: min=0 max=0 avg=0.00\n"
    );
    let mut w = env.ct.worker(0);
    for i in 0..150u16 {
        w.process(&udp(A, B, 1000 + i, 53), 0, true, 0);
    }
    drop(w);
    let out = env.ok("ct-bkts", &[]);
    assert!(
        out.starts_with(
            "Total Buckets: 64\nCurrent Connections: 150\n\n\
         +-----------+-----------------------------------------+\n\
         |  Buckets  |         Connections per Buckets         |\n\
         +-----------+-----------------------------------------+\n   0..  7   | "
        ),
        "{out}"
    );
    assert!(out.contains("\n  56.. 63   | "), "{out}");
    let cells = bkts_cells(&out);
    assert_eq!(cells.len(), 64);
    let sum: u32 = cells.iter().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(sum, 150);
    assert_eq!(env.ok("ct-get-nconns", &[]), "150\n");
    // Each cell is the bucket's connection count.
    for (b, c) in cells.iter().enumerate() {
        let mut n = 0;
        env.ct.table().for_each_in_bucket(b, |_, _| n += 1);
        assert_eq!(c.unwrap_or(0), n, "bucket {b}");
    }
    let max = cells.iter().map(|c| c.unwrap_or(0)).max().unwrap();
    assert!(
        out.ends_with(&format!(
            "\n\nConnections per bucket: min={} max={max} avg=2.34\n",
            cells.iter().map(|c| c.unwrap_or(0)).min().unwrap()
        )),
        "{out}"
    );
    // gt=N hides buckets with at most N.
    let gt = bkts_cells(&env.ok("ct-bkts", &["gt=2"]));
    for (a, b) in cells.iter().zip(&gt) {
        let n = a.unwrap_or(0);
        assert_eq!(*b, (n > 2).then_some(n));
    }
    assert_eq!(
        env.err("ct-bkts", &["gt=x"]),
        "invalid argument \"gt=x\" (Invalid argument)"
    );
}
