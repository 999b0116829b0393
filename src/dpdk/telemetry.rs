//! ctgate's DPDK telemetry commands (`/ctgate/stats`, `/ctgate/zones`, `/ctgate/buckets`),
//! registered with `rte_telemetry_register_cmd` so that `dpdk-telemetry.py` and telemetry
//! exporters read them next to `/ethdev/stats`.
//!
//! The values come from [`crate::control::telemetry::handle`] as JSON shaped for
//! `rte_tel_data` (a dict of unsigned integers, short strings and one level of dicts of
//! unsigned integers); [`fill`] converts them. Telemetry callbacks have no user pointer
//! and run on DPDK's telemetry thread until `rte_eal_cleanup`, so the tracker they read
//! lives in a process-wide slot; the values only read atomics and bucket words. A later
//! gateway run in the same process (`ctgate-perf datapath` runs one per case) puts its
//! own tracker in the slot, which frees the previous one.

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Eal, Error};
use crate::conntrack::Conntrack;
use crate::control::telemetry;

/// The tracker the callbacks read (set by [`register_telemetry`]).
static TRACKER: Mutex<Option<Arc<Conntrack>>> = Mutex::new(None);
/// Set once the commands are registered (callbacks cannot be unregistered).
static REGISTERED: AtomicBool = AtomicBool::new(false);

fn tracker() -> Option<Arc<Conntrack>> {
    TRACKER.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes ctgate's telemetry commands report `ct`. The first call registers the
/// commands; a later one (a later run in the same process) only points them at its
/// tracker.
pub fn register_telemetry(_eal: &Eal, ct: Arc<Conntrack>) -> Result<(), Error> {
    *TRACKER.lock().unwrap_or_else(|e| e.into_inner()) = Some(ct);
    if REGISTERED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    for (name, help) in telemetry::COMMANDS {
        let op = || format!("rte_telemetry_register_cmd({name})");
        let cname = CString::new(*name).map_err(|_| Error::invalid(op()))?;
        let chelp = CString::new(*help).map_err(|_| Error::invalid(op()))?;
        // DPDK copies both strings into its own table; leaking three short strings once
        // keeps them valid even if a DPDK version kept the pointers instead.
        let cname: &'static CStr = Box::leak(cname.into_boxed_c_str());
        let chelp: &'static CStr = Box::leak(chelp.into_boxed_c_str());
        // SAFETY: EAL is initialised (`&Eal`); both pointers are NUL-terminated strings
        // valid for the life of the process; `callback` has the `telemetry_cb` signature
        // and never unwinds into C.
        let ret = unsafe {
            dpdk_sys::rte_telemetry_register_cmd(cname.as_ptr(), Some(callback), chelp.as_ptr())
        };
        Error::check(op, ret)?;
    }
    Ok(())
}

/// The one callback of every ctgate command: `cmd` says which.
unsafe extern "C" fn callback(
    cmd: *const c_char,
    params: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    if cmd.is_null() || d.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: DPDK passes NUL-terminated strings valid for the duration of the call.
    let cmd = unsafe { CStr::from_ptr(cmd) };
    let params = if params.is_null() {
        c""
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(params) }
    };
    // A panic must not unwind into C (release builds would abort anyway).
    let value = catch_unwind(AssertUnwindSafe(|| {
        let (Ok(cmd), Ok(params)) = (cmd.to_str(), params.to_str()) else {
            return None;
        };
        let ct = tracker()?;
        telemetry::handle(&ct, cmd, params)
    }));
    match value {
        // SAFETY: `d` is the data structure DPDK handed to this callback.
        Ok(Some(v)) => unsafe { fill(d, &v) },
        _ => -libc::EINVAL,
    }
}

/// Writes a JSON object into `d` as a telemetry dict. Returns 0 or a negative errno.
///
/// # Safety
/// `d` must be a valid `rte_tel_data` owned by the caller (the callback's argument).
unsafe fn fill(d: *mut dpdk_sys::rte_tel_data, v: &Value) -> c_int {
    let Value::Object(map) = v else {
        return -libc::EINVAL;
    };
    // SAFETY: `d` is valid per the contract of this function.
    let ret = unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
    if ret < 0 {
        return ret;
    }
    for (k, v) in map {
        let Ok(name) = CString::new(k.as_str()) else {
            continue;
        };
        let ret = match v {
            Value::Number(n) => match n.as_u64() {
                // SAFETY: `d` is a started dict; `name` is NUL-terminated and outlives
                // the call (DPDK copies it).
                Some(x) => unsafe { dpdk_sys::rte_tel_data_add_dict_u64(d, name.as_ptr(), x) },
                None => continue,
            },
            Value::String(s) => match CString::new(s.as_str()) {
                // SAFETY: as above; DPDK copies (and truncates) the string.
                Ok(s) => unsafe {
                    dpdk_sys::rte_tel_data_add_dict_string(d, name.as_ptr(), s.as_ptr())
                },
                Err(_) => continue,
            },
            // SAFETY: `d` is a started dict; `nested` allocates and hands over the container.
            Value::Object(_) => unsafe { nested(d, &name, v) },
            _ => continue,
        };
        if ret < 0 {
            return ret;
        }
    }
    0
}

/// Adds `v` (an object of unsigned integers) to dict `d` as a container named `name`.
///
/// # Safety
/// `d` must be a valid, started telemetry dict.
unsafe fn nested(d: *mut dpdk_sys::rte_tel_data, name: &CStr, v: &Value) -> c_int {
    let Value::Object(map) = v else {
        return -libc::EINVAL;
    };
    // SAFETY: no preconditions; NULL on allocation failure.
    let c = unsafe { dpdk_sys::rte_tel_data_alloc() };
    if c.is_null() {
        return -libc::ENOMEM;
    }
    // SAFETY: `c` was just allocated and is owned here.
    let mut ret = unsafe { dpdk_sys::rte_tel_data_start_dict(c) };
    for (k, x) in map {
        if ret < 0 {
            break;
        }
        let (Ok(kname), Some(x)) = (CString::new(k.as_str()), x.as_u64()) else {
            continue;
        };
        // SAFETY: `c` is a started dict we own; `kname` outlives the call.
        ret = unsafe { dpdk_sys::rte_tel_data_add_dict_u64(c, kname.as_ptr(), x) };
    }
    if ret >= 0 {
        // SAFETY: `d` is a started dict, `c` a container we own; with keep = 0 DPDK
        // takes ownership of `c` on success and frees it after the reply.
        ret = unsafe { dpdk_sys::rte_tel_data_add_dict_container(d, name.as_ptr(), c, 0) };
        if ret >= 0 {
            return ret;
        }
    }
    // SAFETY: `c` is still ours (not added), allocated by rte_tel_data_alloc.
    unsafe { dpdk_sys::rte_tel_data_free(c) };
    ret
}
