//! Application telemetry commands for DPDK's telemetry socket (`rte_telemetry_register_cmd`),
//! so that `dpdk-telemetry.py` and telemetry exporters read them next to `/ethdev/stats`.
//!
//! The caller gives the command names with their help and a [`TelemetryHandler`] that
//! computes a command's value as JSON shaped for `rte_tel_data` (a dict of unsigned
//! integers, short strings and one level of dicts of unsigned integers); [`fill`]
//! converts it. Nothing here knows what the commands are.
//!
//! Telemetry callbacks get no user pointer and run on DPDK's telemetry thread until
//! `rte_eal_cleanup`, and a command cannot be unregistered: so one callback serves every
//! command and finds the handler in a process-wide table by command name. Registering a
//! name again (a later run in the same process) replaces its handler, which drops the
//! previous one.

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Eal, Error};

/// Computes telemetry command `cmd`'s value from its parameter string; `None` answers
/// `EINVAL` (unknown command, bad parameter). Called on DPDK's telemetry thread.
pub type TelemetryHandler = Arc<dyn Fn(&str, &str) -> Option<Value> + Send + Sync>;

/// (command name, its handler), one entry per registered command.
static HANDLERS: Mutex<Vec<(String, TelemetryHandler)>> = Mutex::new(Vec::new());

fn handler_of(cmd: &str) -> Option<TelemetryHandler> {
    let table = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .find(|(name, _)| name == cmd)
        .map(|(_, h)| Arc::clone(h))
}

/// Makes each of `commands` (name, help) answer with `handler`. A name registered
/// before (by an earlier call in this process) only gets the new handler.
pub fn register_telemetry(
    _eal: &Eal,
    commands: &[(&str, &str)],
    handler: TelemetryHandler,
) -> Result<(), Error> {
    for (name, help) in commands {
        {
            let mut table = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = table.iter_mut().find(|(n, _)| n == name) {
                slot.1 = Arc::clone(&handler);
                continue;
            }
        }
        let op = || format!("rte_telemetry_register_cmd({name})");
        let cname = CString::new(*name).map_err(|_| Error::invalid(op()))?;
        let chelp = CString::new(*help).map_err(|_| Error::invalid(op()))?;
        // DPDK copies both strings into its own table; leaking two short strings once
        // per command keeps them valid even if a DPDK version kept the pointers instead.
        let cname: &'static CStr = Box::leak(cname.into_boxed_c_str());
        let chelp: &'static CStr = Box::leak(chelp.into_boxed_c_str());
        // The handler is in the table before DPDK can call the callback for the name.
        HANDLERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), Arc::clone(&handler)));
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

/// The one callback of every registered command: `cmd` says which.
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
        let handler = handler_of(cmd)?;
        handler(cmd, params)
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
