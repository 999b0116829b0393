//! One error type for every DPDK call: which operation failed and DPDK's errno.

use std::ffi::CStr;
use std::fmt;

/// A failed DPDK call: the operation (with its subject, e.g. the port) and the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What was attempted, e.g. `"rte_eth_dev_configure(port 0)"`.
    pub op: String,
    /// Positive errno value (DPDK returns `-errno` or sets `rte_errno`).
    pub errno: i32,
}

impl Error {
    /// From a DPDK return value that is `-errno` on failure.
    pub(crate) fn from_ret(op: impl Into<String>, ret: i32) -> Self {
        Error {
            op: op.into(),
            errno: ret.saturating_abs(),
        }
    }

    /// From the calling thread's `rte_errno` (for calls that return NULL or -1).
    pub(crate) fn from_rte_errno(op: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's TLS `rte_errno`; no preconditions.
        let errno = unsafe { dpdk_sys::ctgate_rte_errno() };
        Error {
            op: op.into(),
            errno,
        }
    }

    /// An error detected on the Rust side (no DPDK call made).
    pub(crate) fn invalid(op: impl Into<String>) -> Self {
        Error {
            op: op.into(),
            errno: libc::EINVAL,
        }
    }

    /// Turns a `>= 0` / `-errno` return into a `Result`.
    pub(crate) fn check(op: impl FnOnce() -> String, ret: i32) -> Result<i32, Error> {
        if ret < 0 {
            Err(Error::from_ret(op(), ret))
        } else {
            Ok(ret)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errno == 0 {
            // Not "Success": DPDK failed without saying why (its log says more).
            return write!(
                f,
                "{} failed (DPDK gave no error code; see its messages above)",
                self.op
            );
        }
        // SAFETY: rte_strerror accepts any errno and returns a pointer to a NUL-terminated
        // string in static or thread-local storage, valid until the next call on this thread.
        let msg = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.errno)) };
        write!(
            f,
            "{} failed: {} (errno {})",
            self.op,
            msg.to_string_lossy(),
            self.errno
        )
    }
}

impl std::error::Error for Error {}
