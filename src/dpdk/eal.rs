//! EAL initialisation and cleanup, once per process.

use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Error;

/// Set by the first [`Eal::init`]; EAL can be initialised once per process only.
static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Proof that EAL is initialised. There is at most one per process, it lives on the main
/// lcore (it is neither `Send` nor `Sync`), and everything that needs EAL borrows it.
#[derive(Debug)]
pub struct Eal {
    cleaned_up: bool,
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
        // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked
        // so they outlive EAL; the EAL_STARTED guard makes this the only call per process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::from_rte_errno("rte_eal_init"));
        }
        Ok(Eal {
            cleaned_up: false,
            _main_lcore_only: PhantomData,
        })
    }

    /// Waits for every worker lcore to return, then releases EAL's resources
    /// (`rte_eal_cleanup`). Call it last: ports must be closed and every `Mbuf` dropped
    /// before, since their memory goes away with EAL.
    pub fn cleanup(mut self) -> Result<(), Error> {
        self.cleaned_up = true;
        Self::do_cleanup()
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
            let _ = Self::do_cleanup();
        }
    }
}

/// The DPDK version of the loaded library, e.g. `DPDK 22.11.11`. Needs no EAL.
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(dpdk_sys::rte_version()) };
    v.to_string_lossy().into_owned()
}
