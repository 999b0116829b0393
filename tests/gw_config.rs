//! Configuration errors of the real binary: each broken file gives one precise line
//! (`ctgate: FILE:LINE: FIELD: MESSAGE`) on stderr and exit code 2, before DPDK starts;
//! a configuration whose ports DPDK did not probe is a clear start-up error.
#![cfg(feature = "dpdk")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Two valid ports (8 lines), for cases about later sections.
const PORTS: &str = "[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\n\
                     [[port]]\nport = 1\nrole = \"outside\"\nipv4 = \"192.0.2.1/24\"\n";

/// Runs `ctgate -- ARGS` (no EAL options: a config error must stop it before EAL).
fn ctgate(args: &[&str]) -> std::process::Output {
    Command::new(ctgate_bin())
        .arg("--")
        .args(args)
        .output()
        .expect("run ctgate")
}

#[test]
fn broken_configs_give_file_line_field_and_exit_2() {
    let s = Scratch::new("cfgerr");
    // (file text, the exact stderr line with FILE standing for the path)
    let cases: &[(String, &str)] = &[
        (
            "[datapath]\nbogus = 1\n".into(),
            "ctgate: FILE:2: datapath.bogus: unknown field `bogus`, expected one of `max_conns`, `buckets`, `tcp_seq_check`, `sweep_interval_ms`",
        ),
        (
            "[datapath]\nmax_conns = \"many\"\n".into(),
            "ctgate: FILE:2: datapath.max_conns: invalid type: string \"many\", expected u32",
        ),
        (
            "[datapath]\nbuckets = 1000\n".into(),
            "ctgate: FILE:2: datapath.buckets: 1000 is not a power of two (or 0 for automatic)",
        ),
        (
            "[datapath]\nsweep_interval_ms = 0\n".into(),
            "ctgate: FILE:2: datapath.sweep_interval_ms: must be at least 1",
        ),
        (
            "[[port]]\nport = 0\nrole = \"middle\"\nipv4 = \"10.0.0.1/24\"\n".into(),
            "ctgate: FILE:3: port[0].role: unknown role 'middle' (expected \"inside\" or \"outside\")",
        ),
        (
            "[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/33\"\n".into(),
            "ctgate: FILE:4: port[0].ipv4: invalid prefix '10.0.0.1/33' (length 33 > 32)",
        ),
        (
            "[[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\n".into(),
            "ctgate: FILE: port: no port has role \"outside\"",
        ),
        (
            format!("{PORTS}[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"203.0.113.1\"\n"),
            "ctgate: FILE:11: route[0].via: next hop 203.0.113.1 is not on any port's connected network",
        ),
        (
            format!("{PORTS}[[snat]]\npool = \"192.0.2.1:0\"\n"),
            "ctgate: FILE:10: snat[0].pool: invalid port range '0' in NAT range '192.0.2.1:0'",
        ),
        (
            format!("{PORTS}[policy]\noutside_new = \"maybe\"\n"),
            "ctgate: FILE:10: policy.outside_new: unknown value 'maybe' (expected \"deny\" or \"allow\")",
        ),
        (
            format!("{PORTS}[[dnat]]\nproto = \"sctp\"\nmatch = \"192.0.2.1:80\"\nto = \"10.0.0.5\"\n"),
            "ctgate: FILE:10: dnat[0].proto: unknown protocol 'sctp' (expected \"tcp\" or \"udp\")",
        ),
        (
            format!("{PORTS}[limits\n"),
            "ctgate: FILE:9: invalid table header: expected `.`, `]`",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = s.path(&format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let shown = path.display().to_string();
        let out = ctgate(&["--config", &shown, "--duration", "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        let want = want.replace("FILE", &shown);
        assert_eq!(
            out.status.code(),
            Some(2),
            "case {i}: {text}\nstderr: {err}"
        );
        assert_eq!(err.trim_end(), want, "case {i}:\n{text}");
        assert!(out.stdout.is_empty(), "case {i}");
    }

    let missing = s.path("missing.toml").display().to_string();
    let out = ctgate(&["--config", &missing]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!("ctgate: {missing}: cannot read: No such file or directory (os error 2)")
    );
}

/// Settings accepted silently before, a table the machine cannot hold and a file that
/// never ends: one line each, exit code 2, nothing started.
#[test]
fn conflicting_settings_oversized_tables_and_endless_files_exit_2_with_the_line() {
    let s = Scratch::new("cfgrefuse");
    let dnat = "[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:80\"\nto = \"10.0.0.5:80\"\n";
    let cases: &[(String, &str)] = &[
        (
            format!("{PORTS}[[snat]]\npool = \"192.0.2.1-192.0.2.5\"\n[[snat]]\npool = \"192.0.2.3-192.0.2.9\"\n"),
            "ctgate: FILE:12: snat[1].pool: overlaps snat[0].pool '192.0.2.1-192.0.2.5'",
        ),
        (
            format!("{PORTS}[[snat]]\npool = \"10.0.0.5\"\n"),
            "ctgate: FILE:10: snat[0].pool: lies in the inside network 10.0.0.1/24 of port[0]: a pool must be outside addresses",
        ),
        (
            format!("{PORTS}[[snat]]\npool = \"0.0.0.0-255.255.255.255\"\n"),
            "ctgate: FILE:10: snat[0].pool: covers the whole address space: a pool is addresses of the gateway's own",
        ),
        (
            format!("{PORTS}{dnat}{dnat}"),
            "ctgate: FILE:15: dnat[1].match: '192.0.2.1:80' is already matched by dnat[0]",
        ),
        (
            format!("{PORTS}[limits]\nzones = [{{ zone = 3, limit = 2 }}, {{ zone = 3, limit = 5 }}]\n"),
            "ctgate: FILE:10: limits.zones[1].zone: zone 3 already has a limit (limits.zones[0])",
        ),
        (
            format!("{PORTS}[[port]]\nport = 2\nrole = \"inside\"\nipv4 = \"10.0.0.9/16\"\n"),
            "ctgate: FILE:12: port[2].ipv4: 10.0.0.9/16 overlaps port[0]'s 10.0.0.1/24: each interface needs its own network",
        ),
        (
            format!("{PORTS}[timeouts]\ntcp_established = 0\n"),
            "ctgate: FILE:10: timeouts.tcp_established: must be at least 1 second",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = s.path(&format!("refused{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let shown = path.display().to_string();
        let out = ctgate(&["--config", &shown, "--duration", "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "case {i}: {text}\nstderr: {err}"
        );
        assert_eq!(
            err.trim_end(),
            want.replace("FILE", &shown),
            "case {i}:\n{text}"
        );
    }

    // The documented maximum table (32 GiB of records and more) on a machine without
    // that much memory: refused with the figures, not an allocation abort.
    let path = s.path("huge.toml");
    std::fs::write(
        &path,
        format!("[datapath]\nmax_conns = 1073741823\n{PORTS}"),
    )
    .unwrap();
    let shown = path.display().to_string();
    let out = ctgate(&["--config", &shown, "--duration", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let avail_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        >> 20;
    if avail_gib < 100 {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with(&format!("ctgate: {shown}:2: datapath.max_conns: needs "))
                && err.contains(" GiB for 1073741823 connections, only ")
                && err.trim_end().ends_with(" GiB available (MemAvailable)"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }

    // A file that never ends is read up to the cap and refused.
    let out = ctgate(&["--config", "/dev/zero", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "ctgate: /dev/zero: larger than 1 MiB, the most a configuration file may be (not read further)"
    );
}

#[test]
fn config_and_pair_exclude_each_other() {
    let out = ctgate(&["--config", "x.toml", "--pair", "0:1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--config and --pair exclude each other"),
        "{err}"
    );
}

#[test]
fn config_ports_must_exist_among_the_probed_ports() {
    let _lock = dpdk_lock();
    let s = Scratch::new("cfgports");
    let eal = s.null_eal("0,1", 1);
    let sock = s.path("ctl.sock").display().to_string();
    let out = run_ctgate(&eal, &["--socket", &sock], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{out}");
    // The line of the second [[port]]'s `port =` in the embedded default.
    let text = ctgate::config::EMBEDDED_DEFAULT;
    let second = text.match_indices("\n[[port]]").nth(1).unwrap().0;
    let key = second + text[second..].find("\nport =").unwrap() + 1;
    let line = text[..key].matches('\n').count() + 1;
    assert!(
        out.stderr.contains(&format!(
            "<embedded default config>:{line}: port[1].port: port 1 (outside) does not exist: DPDK found ports 0;"
        )),
        "{out}"
    );
    assert!(!s.path("ctl.sock").exists(), "no socket left behind");
}

/// A second ctgate on the file prefix of a running one: EAL fails without an error
/// code; ctgate says the prefix is in use (not "Success (errno 0)") and exits 2, and
/// leaves the first one's runtime directory alone.
#[test]
fn a_file_prefix_in_use_is_named_as_the_reason_eal_failed() {
    let _lock = dpdk_lock();
    let s = Scratch::new("prefixclash");
    let eal = s.null_eal("0,1", 2);
    let sock1 = s.path("one.sock").display().to_string();
    let mut first = Running::start(&eal, &["--socket", &sock1, "--quiet"]);
    first
        .wait_for_line(Duration::from_secs(30), |l| {
            l.starts_with("ctgate: gateway on")
        })
        .unwrap_or_else(|| panic!("first ctgate did not start:\n{}", first.stdout()));
    let sock2 = s.path("two.sock").display().to_string();
    let second = run_ctgate(&eal, &["--socket", &sock2], Duration::from_secs(30));
    let dir = format!("/var/run/dpdk/{}", s.prefix);
    assert_eq!(second.status.code(), Some(2), "{second}");
    assert!(
        second.stderr.contains(&format!(
            "ctgate: cannot initialise DPDK: rte_eal_init (another running DPDK process uses this file prefix, runtime directory {dir}: give each process its own --file-prefix) failed: "
        )),
        "{second}"
    );
    assert!(!second.stderr.contains("Success (errno 0)"), "{second}");
    assert!(
        std::path::Path::new(&dir).is_dir(),
        "the first one's runtime dir stays"
    );
    first.signal("TERM");
    let out = first.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{out}");
}
