//! Pre-allocated storage for held fragments: a fixed number of slots, each a buffer of a
//! fixed size allocated once at start, handed out through a lock-free bitmap.
//!
//! # Invariants
//!
//! * A slot is owned by whoever set its bit in the bitmap and until that owner clears it:
//!   a datagram list in one bucket of the fragment table, or a completed
//!   [`super::Datagram`]. No two owners ever hold the same slot.
//! * Each slot's bytes sit behind their own spin lock only to give safe interior
//!   mutability; the owner is the only one taking it, so it is never contended.
//! * Claiming and releasing are one compare-and-swap / one `fetch_and` on a 64-bit word:
//!   no lock shared between workers, no allocation after [`SlotStore::new`].

use spin::mutex::{SpinMutex, SpinMutexGuard};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One held fragment: a copy of its frame (from the Ethernet header to the end of the IP
/// packet, padding dropped).
pub struct Slot {
    len: usize,
    bytes: Box<[u8]>,
}

impl Slot {
    /// The stored frame.
    pub fn frame(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The stored frame, writable (for NAT of the original fragments).
    pub fn frame_mut(&mut self) -> &mut [u8] {
        self.bytes.get_mut(..self.len).unwrap_or(&mut [])
    }
}

/// The slot pool.
pub struct SlotStore {
    slots: Box<[SpinMutex<Slot>]>,
    used: Box<[AtomicU64]>,
    /// Word where the next search starts (spreads claimers over the bitmap).
    hint: AtomicUsize,
    slot_bytes: usize,
}

impl SlotStore {
    /// `n` slots of `slot_bytes` bytes each, allocated now.
    pub fn new(n: usize, slot_bytes: usize) -> SlotStore {
        let slots = (0..n)
            .map(|_| {
                SpinMutex::new(Slot {
                    len: 0,
                    bytes: vec![0u8; slot_bytes].into_boxed_slice(),
                })
            })
            .collect();
        let words = n.div_ceil(64);
        let used: Box<[AtomicU64]> = (0..words)
            .map(|w| {
                // Bits past `n` in the last word are permanently "used".
                let valid = (n - w * 64).min(64);
                AtomicU64::new(if valid == 64 { 0 } else { !0u64 << valid })
            })
            .collect();
        SlotStore {
            slots,
            used,
            hint: AtomicUsize::new(0),
            slot_bytes,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Largest frame a slot holds.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Claims a free slot and copies `frame` into it; `None` when every slot is in use or
    /// `frame` is larger than a slot.
    pub fn store(&self, frame: &[u8]) -> Option<u16> {
        if frame.len() > self.slot_bytes {
            return None;
        }
        let idx = self.claim()?;
        let mut s = self.slots.get(usize::from(idx))?.lock();
        let dst = s.bytes.get_mut(..frame.len())?;
        dst.copy_from_slice(frame);
        s.len = frame.len();
        Some(idx)
    }

    fn claim(&self) -> Option<u16> {
        let words = self.used.len();
        let start = self.hint.load(Ordering::Relaxed) % words.max(1);
        for k in 0..words {
            let w = (start + k) % words;
            let word = &self.used[w];
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                match word.compare_exchange_weak(
                    cur,
                    cur | (1u64 << bit),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.hint.store(w, Ordering::Relaxed);
                        return u16::try_from(w * 64 + bit as usize).ok();
                    }
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// Returns slot `idx` to the pool.
    pub fn release(&self, idx: u16) {
        let i = usize::from(idx);
        if let Some(word) = self.used.get(i / 64) {
            word.fetch_and(!(1u64 << (i % 64)), Ordering::Release);
        }
    }

    /// Locks slot `idx` (its owner's access; never contended).
    pub fn slot(&self, idx: u16) -> Option<SpinMutexGuard<'_, Slot>> {
        self.slots.get(usize::from(idx)).map(|s| s.lock())
    }

    /// Slots currently claimed.
    pub fn in_use(&self) -> usize {
        let n = self.slots.len();
        self.used
            .iter()
            .enumerate()
            .map(|(w, word)| {
                let valid = (n - w * 64).min(64);
                let mask = if valid == 64 {
                    !0u64
                } else {
                    !(!0u64 << valid)
                };
                (word.load(Ordering::Relaxed) & mask).count_ones() as usize
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_every_slot_once_then_refuses_and_reuses_released_ones() {
        let s = SlotStore::new(70, 16);
        let mut got: Vec<u16> = (0..70).map(|i| s.store(&[i as u8; 4]).unwrap()).collect();
        assert!(s.store(&[1]).is_none());
        assert_eq!(s.in_use(), 70);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 70);
        assert!(got.iter().all(|&i| i < 70));
        s.release(5);
        assert_eq!(s.store(&[9, 9]), Some(5));
        assert_eq!(s.slot(5).unwrap().frame(), &[9, 9]);
    }

    #[test]
    fn refuses_a_frame_larger_than_a_slot() {
        let s = SlotStore::new(2, 8);
        assert!(s.store(&[0; 9]).is_none());
        assert_eq!(s.in_use(), 0);
    }
}
