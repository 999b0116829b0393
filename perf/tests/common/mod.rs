//! Helpers shared by ctgate-perf's integration tests: the ctgate binary next to
//! ctgate-perf, and result lines (`key=value …`) parsed into maps.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::PathBuf;

/// The ctgate binary the subcommands run (next to ctgate-perf, same profile). Fails the
/// test when it is missing: `cargo build --workspace` builds it (the README's test
/// command builds everything first), a lone `cargo test -p ctgate-perf` may not.
pub fn ctgate_binary() -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_ctgate-perf")).with_file_name("ctgate");
    assert!(
        p.is_file(),
        "no {}: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// The lines of `stdout` that start with `prefix` (e.g. `bench=gateway `), each as its
/// `key=value` pairs; a field without `=` fails the test.
pub fn kv_lines(stdout: &str, prefix: &str) -> Vec<HashMap<String, String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv} in {l}"));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .collect()
}

/// The value of `key` in `line` as a number; a missing key or a value that is not a
/// number fails the test.
pub fn num(line: &HashMap<String, String>, key: &str) -> f64 {
    let v = line
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{key}={v} is not a number in {line:?}"))
}
