//! EAL initialisation and cleanup, once per process.
//!
//! EAL keeps its runtime files (config, hugepage info, telemetry and multi-process
//! sockets, about 6 MB) in `/var/run/dpdk/PREFIX` (or under `$XDG_RUNTIME_DIR` for other
//! users). A clean exit removes that directory after `rte_eal_cleanup` when this process
//! created it; one that existed before (another process's, or a crashed run's) is left.

use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::Error;

/// Set by the first [`Eal::init`]; EAL can be initialised once per process only.
static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Proof that EAL is initialised. There is at most one per process, it lives on the main
/// lcore (it is neither `Send` nor `Sync`), and everything that needs EAL borrows it.
#[derive(Debug)]
pub struct Eal {
    cleaned_up: bool,
    /// The runtime directory, when this process created it (removed after cleanup).
    created_runtime_dir: Option<PathBuf>,
    /// `!Send + !Sync`: EAL's launch/wait/cleanup calls belong to the main lcore.
    _main_lcore_only: PhantomData<*const ()>,
}

impl Eal {
    /// Initialises EAL with `args` (the program name first, then EAL options only, as
    /// `rte_eal_init` sees them). Fails with `EALREADY` if EAL was initialised before.
    pub fn init(args: &[String]) -> Result<Eal, Error> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::from_ret(
                "rte_eal_init (already initialised)",
                -libc::EALREADY,
            ));
        }
        let mut owned = Vec::with_capacity(args.len());
        for a in args {
            match CString::new(a.as_str()) {
                Ok(c) => owned.push(c),
                Err(_) => return Err(Error::invalid(format!("EAL argument {a:?} contains NUL"))),
            }
        }
        // EAL may keep pointers into argv (it permutes the array and some options keep
        // their strings); EAL lives until the process ends, so the strings do too.
        let owned: &'static mut [CString] = Box::leak(owned.into_boxed_slice());
        let mut argv: Vec<*mut c_char> = owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
        let argc = argv.len() as i32;
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        let existed = existing_runtime_dirs(args);
        // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked
        // so they outlive EAL; the EAL_STARTED guard makes this the only call per process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let e = Error::from_rte_errno("rte_eal_init");
            // EAL's own words for a host without usable hugepages ("Cannot get hugepage
            // information", EACCES) do not say what to do: name it.
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            if let Some(hint) = hugepage_hint(args, &mounts, &meminfo) {
                return Err(Error {
                    op: format!("rte_eal_init ({hint})"),
                    errno: if e.errno != 0 { e.errno } else { libc::ENOMEM },
                });
            }
            if e.errno != 0 {
                return Err(e);
            }
            // Some failures set no rte_errno; the commonest is a file prefix another
            // running DPDK process holds: say so when its runtime directory is live.
            return Err(match existed.iter().find(|d| in_use(d)) {
                Some(dir) => Error {
                    op: format!(
                        "rte_eal_init (another running DPDK process uses this file prefix, runtime directory {}: give each process its own --file-prefix)",
                        dir.display()
                    ),
                    errno: libc::EADDRINUSE,
                },
                None => e,
            });
        }
        let created_runtime_dir = runtime_dir().filter(|d| d.is_dir() && !existed.contains(d));
        Ok(Eal {
            cleaned_up: false,
            created_runtime_dir,
            _main_lcore_only: PhantomData,
        })
    }

    /// Waits for every worker lcore to return, then releases EAL's resources
    /// (`rte_eal_cleanup`). Call it last: ports must be closed and every `Mbuf` dropped
    /// before, since their memory goes away with EAL.
    pub fn cleanup(mut self) -> Result<(), Error> {
        self.cleaned_up = true;
        self.cleanup_and_remove()
    }

    /// Whether EAL runs with hugepages (not `--no-huge`): the process may then take its
    /// big tables from the kernel's hugetlb pool too (`rte_eal_has_hugepages`).
    pub fn has_hugepages(&self) -> bool {
        // SAFETY: EAL is initialised (an `Eal` exists); the call only reads EAL's
        // internal configuration, set once by `rte_eal_init`.
        unsafe { dpdk_sys::rte_eal_has_hugepages() != 0 }
    }

    /// The EAL runtime directory this process created, if any (removed by cleanup).
    pub fn created_runtime_dir(&self) -> Option<&Path> {
        self.created_runtime_dir.as_deref()
    }

    fn cleanup_and_remove(&mut self) -> Result<(), Error> {
        Self::do_cleanup()?;
        if let Some(dir) = self.created_runtime_dir.take() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                Error::invalid(format!(
                    "removing the EAL runtime directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(())
    }

    fn do_cleanup() -> Result<(), Error> {
        // SAFETY: called on the main lcore (Eal is !Send); waits for workers, which is
        // always allowed after EAL init.
        unsafe { dpdk_sys::rte_eal_mp_wait_lcore() };
        // SAFETY: EAL was initialised (an Eal exists) and no worker runs any more.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        Error::check(|| "rte_eal_cleanup".to_string(), ret).map(|_| ())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if !self.cleaned_up {
            let _ = self.cleanup_and_remove();
        }
    }
}

/// EAL's runtime directory (after init), e.g. `/var/run/dpdk/rte`; `None` when EAL
/// keeps none (`--in-memory` still reports one, which then does not exist).
fn runtime_dir() -> Option<PathBuf> {
    // SAFETY: returns a pointer to EAL's static NUL-terminated path buffer (valid after
    // init, which the caller has done), never NULL in DPDK 22.11.
    let p = unsafe { dpdk_sys::rte_eal_get_runtime_dir() };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, static (see above).
    let s = unsafe { CStr::from_ptr(p) };
    let s = s.to_str().ok()?;
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// True when a DPDK primary process is alive on runtime directory `dir`: its
/// multi-process socket accepts a datagram peer.
fn in_use(dir: &Path) -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect(dir.join("mp_socket")))
        .is_ok()
}

/// The runtime directories EAL might use for `args`' `--file-prefix` (default `rte`) that
/// exist before init: under `/var/run/dpdk` (root), `$XDG_RUNTIME_DIR/dpdk` or
/// `/tmp/dpdk` (other users), as `eal_create_runtime_dir` picks.
fn existing_runtime_dirs(args: &[String]) -> Vec<PathBuf> {
    let mut prefix = "rte".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--file-prefix" {
            if let Some(v) = it.next() {
                prefix = v.clone();
            }
        } else if let Some(v) = a.strip_prefix("--file-prefix=") {
            prefix = v.to_string();
        }
    }
    let mut bases = vec![PathBuf::from("/var/run/dpdk"), PathBuf::from("/tmp/dpdk")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        bases.push(Path::new(&x).join("dpdk"));
    }
    bases
        .into_iter()
        .map(|b| b.join(&prefix))
        .filter(|d| d.exists())
        .collect()
}

/// Why EAL cannot have run on hugepages with `args`, from the text of `/proc/mounts` and
/// `/proc/meminfo`: no hugetlbfs mounted, no free page in the pool, or fewer free than
/// `-m` asks. `None` with `--no-huge`, or when the pool looks usable (EAL's own error
/// then stands).
fn hugepage_hint(args: &[String], mounts: &str, meminfo: &str) -> Option<String> {
    if args.iter().any(|a| a == "--no-huge") {
        return None;
    }
    let mounted = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"));
    if !mounted {
        return Some(
            "no hugetlbfs is mounted: reserve and mount hugepages (`dpdk-hugepages.py --setup 2G`) \
             or run with --no-huge"
                .into(),
        );
    }
    let field = |name: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix(':')?;
            v.trim().trim_end_matches("kB").trim().parse().ok()
        })
    };
    let (free, size_kb) = (field("HugePages_Free")?, field("Hugepagesize")?);
    if free == 0 {
        return Some(format!(
            "the hugetlb pool has no free page (HugePages_Free: 0 in /proc/meminfo): reserve \
             some (`echo N > /proc/sys/vm/nr_hugepages`, N pages of {size_kb} kB) or run with \
             --no-huge"
        ));
    }
    let free_mb = free * size_kb / 1024;
    let want_mb = args
        .iter()
        .position(|a| a == "-m")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<u64>().ok())?;
    (want_mb > free_mb).then(|| {
        format!(
            "-m {want_mb} asks for {want_mb} MB of hugepages, the pool has {free_mb} MB free \
             ({free} pages of {size_kb} kB): reserve more or ask for less"
        )
    })
}

/// The DPDK version of the loaded library, e.g. `DPDK 22.11.11`. Needs no EAL.
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(dpdk_sys::rte_version()) };
    v.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::hugepage_hint;

    const MOUNTED: &str =
        "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n";
    const UNMOUNTED: &str = "proc /proc proc rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n";

    fn meminfo(free: u64) -> String {
        format!("MemTotal: 24000000 kB\nHugePages_Total: 2560\nHugePages_Free: {free}\nHugepagesize: 2048 kB\n")
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_failed_hugepage_start_names_the_missing_mount_the_empty_pool_or_the_shortfall() {
        let huge = args(&["ctgate", "-m", "2048", "--no-pci"]);
        let no_mount = hugepage_hint(&huge, UNMOUNTED, &meminfo(2560));
        assert!(no_mount.is_some_and(|h| h.starts_with("no hugetlbfs is mounted")));
        let empty = hugepage_hint(&huge, MOUNTED, &meminfo(0));
        assert!(empty.is_some_and(|h| h.contains("HugePages_Free: 0") && h.contains("2048 kB")));
        let short = hugepage_hint(&huge, MOUNTED, &meminfo(100)).unwrap_or_default();
        assert_eq!(
            short,
            "-m 2048 asks for 2048 MB of hugepages, the pool has 200 MB free (100 pages of 2048 \
             kB): reserve more or ask for less"
        );
        // A usable pool, or no hugepages asked for: EAL's own error stands.
        assert_eq!(hugepage_hint(&huge, MOUNTED, &meminfo(2560)), None);
        let no_huge = args(&["ctgate", "--no-huge", "-m", "512"]);
        assert_eq!(hugepage_hint(&no_huge, UNMOUNTED, &meminfo(0)), None);
    }
}
