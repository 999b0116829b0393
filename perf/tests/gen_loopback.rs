//! Smoke test of `ctgate-perf gen --loopback`: the generator process serves its two
//! net_memif ports, the real ctgate binary (`--pair 0:1`, the trivial forwarder) attaches
//! them as clients and sends every frame back; the generator's line counts what it sent
//! and received per port, and every frame that came back carried the stamp it was sent
//! with (`bad=0`). Paced low, so nothing is dropped on a loaded machine; speed is never
//! asserted.
//!
//! Needs root (DPDK) and the ctgate binary next to ctgate-perf (a missing one fails).

mod common;

use std::process::Command;

use common::{ctgate_binary, kv_lines, num};

#[test]
fn gen_loopback_gets_back_every_frame_it_sent() {
    ctgate_binary();
    let prefix = format!("ctgate-gen-smoke-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .args([
            "gen",
            "--loopback",
            "--flows",
            "1000",
            "--rate",
            "0.05",
            "--seconds",
            "2",
            "--file-prefix",
            &prefix,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines = kv_lines(&stdout, "bench=gen ");
    assert_eq!(lines.len(), 1, "{stdout}");
    let l = &lines[0];
    let sent = num(l, "sent");
    // Both ports sent, and each port received what the other sent (the forwarder turns
    // port 0's packets out of port 1 and back), all checked.
    assert!(num(l, "sent0") > 0.0 && num(l, "sent1") > 0.0, "{l:?}");
    assert_eq!(num(l, "received1"), num(l, "sent0"), "{l:?}");
    assert_eq!(num(l, "received0"), num(l, "sent1"), "{l:?}");
    assert_eq!(num(l, "received"), sent, "{l:?}");
    assert_eq!(num(l, "bad"), 0.0, "{l:?}");
    assert_eq!(num(l, "flows"), 1000.0);
    let full = num(l, "full");
    assert!((0.0..=1.0).contains(&full), "{l:?}");
    // Nothing left behind.
    for p in [prefix.clone(), format!("{prefix}-fwd")] {
        assert!(
            !std::path::Path::new("/var/run/dpdk").join(&p).exists(),
            "DPDK runtime directory {p} left behind"
        );
    }
}
