//! The publication slot of a running gateway's configuration versions and the workers'
//! quiescent-state slots (read-copy-update, see [`super::live`] for the scheme).
//!
//! Generic over the version type, so that the shared state that holds it
//! ([`super::shared`]) and the publisher that fills it ([`super::live`]) both import this
//! file and neither imports the other back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A configuration version, numbered in increasing generations.
pub(super) trait Versioned {
    /// This version's generation.
    fn generation(&self) -> u64;
}

/// Workers that can register a quiescent-state slot.
pub const MAX_WORKERS: usize = 128;

/// The publication slot and the workers' quiescent-state slots, in the runtime every
/// version shares.
pub(super) struct Epoch<T> {
    /// The generation the workers are to run.
    published: AtomicU64,
    /// The published version, until every worker has taken it.
    next: Mutex<Option<Arc<T>>>,
    /// `seen[i]`: the generation worker `i` runs (0: no worker `i`).
    seen: [AtomicU64; MAX_WORKERS],
}

impl<T: Versioned> Epoch<T> {
    pub(super) fn new(generation: u64) -> Epoch<T> {
        Epoch {
            published: AtomicU64::new(generation),
            next: Mutex::new(None),
            seen: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The generation the workers are to run.
    #[inline]
    pub(super) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Worker `i` runs `generation` (a quiescent point).
    #[inline]
    pub(super) fn passed(&self, i: usize, generation: u64) {
        if let Some(s) = self.seen.get(i) {
            s.store(generation, Ordering::Release);
        }
    }

    /// Worker `i` is gone.
    pub(super) fn leave(&self, i: usize) {
        if let Some(s) = self.seen.get(i) {
            s.store(0, Ordering::Release);
        }
    }

    /// The published version, when it is newer than `generation` and the slot is free
    /// (never waits).
    pub(super) fn take(&self, generation: u64) -> Option<Arc<T>> {
        let slot = self.next.try_lock().ok()?;
        slot.as_ref()
            .filter(|n| n.generation() > generation)
            .map(Arc::clone)
    }

    /// Has every registered worker passed a quiescent point in `generation` or later?
    pub(super) fn all_passed(&self, generation: u64) -> bool {
        self.seen.iter().all(|s| {
            let v = s.load(Ordering::Acquire);
            v == 0 || v >= generation
        })
    }

    pub(super) fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<T>>> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registered workers running a generation older than `generation`.
    pub(super) fn behind(&self, generation: u64) -> usize {
        self.seen
            .iter()
            .filter(|s| {
                let v = s.load(Ordering::Acquire);
                v != 0 && v < generation
            })
            .count()
    }

    /// Puts `next` in the publication slot, then raises the published generation to its
    /// own (in that order: a worker that sees the new number finds the version there).
    pub(super) fn publish(&self, next: &Arc<T>) {
        *self.slot() = Some(Arc::clone(next));
        self.published.store(next.generation(), Ordering::Release);
    }
}
