//! Build script for `dpdk-sys`, a pipeline of four steps:
//!
//! 1. [`find_dpdk`]: ask pkg-config for `libdpdk` (>= 22.11). When it is missing the build
//!    stops with one message saying what to install, not a bindgen or linker backtrace.
//! 2. [`generate_bindings`]: bindgen over `c/wrapper.h` with allowlists for the EAL,
//!    ethdev, mbuf, mempool, lcore, cycles, ring, telemetry and log APIs. DPDK's hot
//!    functions are `static inline` (`rte_eth_rx_burst`, `rte_pktmbuf_free`, ...);
//!    bindgen's `wrap_static_fns` writes a C file with one exported wrapper per function.
//! 3. [`compile_c`]: that C file plus `c/shim.c` are compiled with `cc`, using
//!    pkg-config's cflags (they carry `-include rte_config.h` and the `-march` DPDK was
//!    built for) and `-Wno-deprecated-declarations` (experimental DPDK inlines are marked
//!    deprecated until they are declared stable).
//! 4. [`link`]: link dynamically against the system's shared DPDK libraries. That matters
//!    at run time: EAL loads its PMD plugins (net_null, net_pcap, net_tap, net_ring and
//!    the NIC drivers) from its driver directory only when `librte_eal.so` is loaded as a
//!    shared library, so the binary needs no `-d` option.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

/// Oldest DPDK release whose API this crate is written against.
const MIN_DPDK_VERSION: &str = "22.11";

/// What pkg-config told us about the installed DPDK.
struct Dpdk {
    /// `pkg-config --modversion libdpdk`, e.g. `22.11.11`.
    version: String,
    /// `pkg-config --cflags libdpdk`, split into arguments.
    cflags: Vec<String>,
    /// Directories from `-L`.
    link_paths: Vec<PathBuf>,
    /// Library names from `-l`, in pkg-config's order.
    libs: Vec<String>,
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dpdk = find_dpdk();
    generate_bindings(&dpdk, &out);
    compile_c(&dpdk, &out);
    link(&dpdk);
    // Exposed to dependents' build scripts as DEP_DPDK_VERSION (this crate `links = "dpdk"`).
    println!("cargo:version={}", dpdk.version);
}

/// Stops the build with one readable message.
fn fail(what: &str, detail: &str) -> ! {
    eprintln!();
    eprintln!("error: {what}");
    eprintln!("  ctgate needs DPDK {MIN_DPDK_VERSION} or newer (pkg-config package `libdpdk`),");
    eprintln!("  clang/libclang (for bindgen) and a C compiler. On Debian 12, as root:");
    eprintln!("      apt-get install libdpdk-dev dpdk clang libclang-dev pkg-config libpcap-dev");
    eprintln!("  or run `ci/setup` from the repository root, which installs everything.");
    if !detail.is_empty() {
        eprintln!("  ({})", detail.trim());
    }
    eprintln!();
    exit(1);
}

fn find_dpdk() -> Dpdk {
    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_DPDK_VERSION)
        .cargo_metadata(false)
        .env_metadata(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => fail("DPDK was not found by pkg-config", &pkg_config_says(&e)),
    };
    // The pkg-config crate drops options it does not model, such as `-include rte_config.h`
    // and `-march=...`; the C wrappers need them all, so ask for the raw cflags too.
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let cflags = match Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        Ok(o) => fail(
            "`pkg-config --cflags libdpdk` failed",
            &String::from_utf8_lossy(&o.stderr),
        ),
        Err(e) => fail("could not run pkg-config", &e.to_string()),
    };
    Dpdk {
        version: lib.version,
        cflags,
        link_paths: lib.link_paths,
        libs: lib.libs,
    }
}

/// The one line of pkg-config's complaint worth showing (its full report is long).
fn pkg_config_says(e: &pkg_config::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains("not found") || l.starts_with("Requested"))
        .or_else(|| text.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("no output");
    format!("pkg-config: {line}")
}

/// Allowlisted function families: the APIs the project uses and nothing else.
const FUNCTIONS: &[&str] = &[
    // EAL, lcores, launch, errors, version, logging.
    "rte_eal_(init|cleanup|process_type|remote_launch|wait_lcore|mp_wait_lcore|has_hugepages|get_runtime_dir)",
    "rte_(lcore_(id|count|index|to_socket_id|is_enabled)|get_main_lcore|get_next_lcore)",
    "rte_socket_(id|count|id_by_idx)",
    "rte_strerror",
    "rte_version",
    "rte_log|rte_log_set_global_level|rte_log_get_global_level",
    "ctgate_.*",
    // Cycles.
    "rte_rdtsc|rte_rdtsc_precise|rte_get_tsc_hz|rte_get_tsc_cycles|rte_delay_us_block",
    // Mempool and mbuf.
    "rte_pktmbuf_(pool_create|alloc|alloc_bulk|free|free_bulk|reset|pkt_len|data_len|data_room_size|headroom|tailroom|append|prepend|adj|trim)",
    "rte_mempool_(free|avail_count|in_use_count|lookup)",
    // Ethdev.
    "rte_eth_(dev_(count_avail|is_valid_port|info_get|configure|start|stop|close|socket_id|adjust_nb_rx_tx_desc|get_name_by_port|set_mtu)|rx_queue_setup|tx_queue_setup|rx_burst|tx_burst|stats_get|stats_reset|link_get_nowait|macaddr_get|promiscuous_enable|find_next_owned_by|find_next)",
    // Ring and telemetry (for the control lcore later).
    "rte_ring_(create|free|enqueue_burst|dequeue_burst|sp_enqueue_burst|sc_dequeue_burst|count)",
    // Ring-backed ethdevs (the in-process benchmark ports of `ctgate-perf datapath`) and
    // registering a non-EAL thread as an lcore (for a mempool cache).
    "rte_eth_from_rings",
    "rte_thread_(register|unregister)",
    "rte_telemetry_legacy_register|rte_telemetry_register_cmd|rte_tel_data_.*",
];

const TYPES: &[&str] = &[
    "rte_mbuf",
    "rte_mempool",
    "rte_eth_conf",
    "rte_eth_dev_info",
    "rte_eth_stats",
    "rte_eth_link",
    "rte_eth_rxconf",
    "rte_eth_txconf",
    "rte_ether_addr",
    "rte_ring",
    "lcore_function_t",
    "rte_lcore_state_t",
    "rte_proc_type_t",
];

const VARS: &[&str] = &[
    "RTE_VERSION.*",
    "RTE_MAX_LCORE",
    "RTE_MAX_ETHPORTS",
    "RTE_MAX_NUMA_NODES",
    "RTE_MBUF_DEFAULT_.*",
    "RTE_PKTMBUF_HEADROOM",
    "RTE_ETHER_ADDR_LEN",
    "RTE_ETHER_HDR_LEN",
    "RTE_ETH_MQ_.*",
    "RTE_ETH_LINK_.*",
    "RTE_ETH_NAME_MAX_LEN",
    "RTE_ETH_RSS_.*",
    "RTE_LOG_.*",
    "RTE_LOGTYPE_.*",
    "SOCKET_ID_ANY",
    "LCORE_ID_ANY",
    "RING_F_.*",
    "ctgate_.*",
];

fn generate_bindings(dpdk: &Dpdk, out: &Path) {
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/wrapper.h");
    let mut builder = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_args(&dpdk.cflags)
        .clang_arg(format!("-I{}/c", env!("CARGO_MANIFEST_DIR")))
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("extern"))
        .wrap_unsafe_ops(true)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(true)
        .generate_cstr(true)
        // Only what is allowlisted, plus the types it needs.
        .allowlist_recursively(true)
        // `rte_ether_addr`/`rte_ether_hdr` are `__rte_aligned(2)` inside packed structs;
        // ctgate never uses the ARP or L2TP headers that trip bindgen on that.
        .blocklist_type("rte_arp_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    // bindgen loads libclang at run time and panics when it is missing: turn that into
    // the same one-message failure as a missing DPDK.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let generated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate()));
    std::panic::set_hook(default_hook);
    let bindings = match generated {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => fail("bindgen could not parse the DPDK headers", &e.to_string()),
        Err(_) => fail(
            "bindgen could not run (is libclang installed?)",
            "apt-get install clang libclang-dev",
        ),
    };
    if let Err(e) = bindings.write_to_file(out.join("bindings.rs")) {
        fail("could not write bindings.rs", &e.to_string());
    }
}

fn compile_c(dpdk: &Dpdk, out: &Path) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut build = cc::Build::new();
    build
        .file(out.join("extern.c"))
        .file(manifest.join("c/shim.c"))
        .include(manifest.join("c"))
        // wrap_static_fns' C includes wrapper.h by absolute path; keep its directory on
        // the include path for shim.h.
        .include(manifest)
        .flag("-Wno-deprecated-declarations")
        .warnings(false);
    for f in &dpdk.cflags {
        build.flag(f);
    }
    build.compile("dpdk_sys_c");
}

fn link(dpdk: &Dpdk) {
    for p in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
    // The static wrapper archive is emitted by `compile_c` before these lines, so the
    // linker sees it before the shared libraries it calls into. rustc links with
    // `--as-needed`, so only the DPDK libraries actually used end up as DT_NEEDED.
    for l in &dpdk.libs {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    // `rte_eth_from_rings` lives in the net_ring PMD, which pkg-config's `Libs` does not
    // list (PMDs are plugins); link it by name when it is not already there.
    if !dpdk.libs.iter().any(|l| l == "rte_net_ring") {
        println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    }
}
