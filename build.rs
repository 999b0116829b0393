//! Embeds the version string that `ctgate --version` prints: the package version, the git
//! description of the source tree and the DPDK version the binary was built against
//! (`DEP_DPDK_VERSION`, exported by dpdk-sys, present with the `dpdk` feature).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let pkg = env!("CARGO_PKG_VERSION");
    let describe = git(&["describe", "--always", "--tags"]).unwrap_or_else(|| "unknown".into());
    let dpdk = std::env::var("DEP_DPDK_VERSION").unwrap_or_else(|_| "none".into());
    println!(
        "cargo:rustc-env=CTGATE_VERSION=ctgate {pkg} (git {describe}, built against DPDK {dpdk})"
    );

    // Rebuild the string when HEAD moves: watch HEAD and the branch ref it names.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let head = dir.join("HEAD");
        if head.exists() {
            println!("cargo:rerun-if-changed={}", head.display());
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--git-common-dir"])
                .map(|c| Path::new(env!("CARGO_MANIFEST_DIR")).join(c))
                .unwrap_or(dir);
            let refpath = common.join(r);
            if refpath.exists() {
                println!("cargo:rerun-if-changed={}", refpath.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
