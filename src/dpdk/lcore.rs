//! Lcores: listing, launching a Rust closure on a worker lcore, waiting, and the TSC.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Eal, Error};

/// An EAL lcore id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lcore(pub u32);

/// The main lcore (the one that ran `rte_eal_init`; ctgate's control lcore).
pub fn main_lcore(_eal: &Eal) -> Lcore {
    // SAFETY: EAL is initialised (we hold &Eal); the call only reads EAL's config.
    Lcore(unsafe { dpdk_sys::rte_get_main_lcore() })
}

/// The enabled worker lcores (every lcore but the main one), in id order.
pub fn worker_lcores(_eal: &Eal) -> Vec<Lcore> {
    let max = dpdk_sys::RTE_MAX_LCORE;
    let mut out = Vec::new();
    let mut i = u32::MAX; // rte_get_next_lcore starts after `i`; -1 means "from the start"
    loop {
        // SAFETY: EAL is initialised; the call only reads EAL's lcore config.
        i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
        if i >= max {
            return out;
        }
        out.push(Lcore(i));
    }
}

/// NUMA socket of an lcore.
pub fn socket_of_lcore(_eal: &Eal, lcore: Lcore) -> u32 {
    // SAFETY: EAL is initialised; out-of-range ids return SOCKET_ID_ANY, not UB.
    unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore.0) }
}

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> that `launch` leaked for exactly this one call.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C: report it as a failed lcore instead.
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(ret) => ret,
        Err(_) => {
            eprintln!("ctgate: a worker lcore panicked");
            -1
        }
    }
}

/// Runs `job` on worker lcore `lcore` (`rte_eal_remote_launch`). Call from the main
/// lcore. The lcore must be idle (not launched, or waited for with [`wait_lcore`]).
pub fn launch<F>(_eal: &Eal, lcore: Lcore, job: F) -> Result<(), Error>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let boxed: Box<Job> = Box::new(Box::new(job));
    let arg = Box::into_raw(boxed).cast::<c_void>();
    // SAFETY: called on the main lcore (Eal is !Send); `trampoline` takes ownership of
    // `arg` when it runs; the job is Send + 'static so it may move to the other thread.
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
    if ret < 0 {
        // SAFETY: the launch failed, so the trampoline never ran and `arg` is still ours.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(Error::from_ret(
            format!("rte_eal_remote_launch(lcore {})", lcore.0),
            ret,
        ));
    }
    Ok(())
}

/// Waits for the job on `lcore` to finish and returns its return value (0 if the lcore
/// was not running anything).
pub fn wait_lcore(_eal: &Eal, lcore: Lcore) -> i32 {
    // SAFETY: called on the main lcore (Eal is !Send) for a worker lcore id.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore.0) }
}

/// The time-stamp counter, the worker loops' clock.
#[derive(Clone, Copy, Debug)]
pub struct Tsc;

impl Tsc {
    /// Current TSC value (`rte_rdtsc`).
    #[inline]
    pub fn now() -> u64 {
        // SAFETY: reads the CPU's time-stamp counter; no memory is touched.
        unsafe { dpdk_sys::rte_rdtsc() }
    }

    /// TSC ticks per second, as measured by EAL at init.
    pub fn hz(_eal: &Eal) -> u64 {
        // SAFETY: EAL is initialised, so the TSC frequency has been measured.
        unsafe { dpdk_sys::rte_get_tsc_hz() }
    }
}
