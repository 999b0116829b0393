//! Small synchronisation building blocks of the tracker: a test-and-test-and-set spin
//! lock for short critical sections, cache-line padding and a prefetch hint.
//!
//! Workers are poll-mode threads pinned to cores, so a critical section is never
//! preempted for long; a spin lock is cheaper than a futex mutex there.

use spin::mutex::{SpinMutex, SpinMutexGuard};
use std::ops::{Deref, DerefMut};

/// Pads and aligns `T` to a 64-byte cache line so that per-worker or per-zone hot fields
/// never share a line (no false sharing).
#[derive(Default, Debug)]
#[repr(C, align(64))]
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A spin lock around `T`: a thin wrapper of [`spin::mutex::SpinMutex`]
/// (test-and-test-and-set, released with a plain store), kept under this name so the
/// tracker's call sites stay as they were.
#[derive(Default)]
pub struct SpinLock<T>(SpinMutex<T>);

/// Holds a [`SpinLock`]; unlocks on drop.
pub type SpinGuard<'a, T> = SpinMutexGuard<'a, T>;

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock(SpinMutex::new(value))
    }

    /// Acquires the lock, spinning until it is free.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.0.lock()
    }

    /// Acquires the lock if it is free now, without spinning.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.0.try_lock()
    }
}

/// Hints the CPU to bring the cache line holding `r` into the cache (no effect elsewhere).
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(r);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spin_lock_serialises_increments() {
        let l = Arc::new(SpinLock::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*l.lock(), 200_000);
    }
}
