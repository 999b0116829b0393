//! `MbufBurst`: a fixed-capacity stack array of owned mbufs, for RX and TX bursts.

use std::mem::MaybeUninit;

use super::mbuf::Mbuf;

/// Packets per RX/TX burst (as in DPDK's l3fwd `MAX_PKT_BURST`).
pub const BURST_SIZE: usize = 32;

/// Up to `N` owned mbufs in a stack array: filled by `RxQueue::rx_burst` or by
/// [`push`](MbufBurst::push), emptied by `TxQueue::tx_burst`, [`drain`](MbufBurst::drain)
/// or [`clear`](MbufBurst::clear). No heap allocation. Dropping it frees what it holds.
pub struct MbufBurst<const N: usize = BURST_SIZE> {
    /// `bufs[..len]` are initialised and owned.
    len: usize,
    bufs: [MaybeUninit<Mbuf>; N],
}

impl<const N: usize> Default for MbufBurst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MbufBurst<N> {
    /// An empty burst.
    pub const fn new() -> Self {
        MbufBurst {
            len: 0,
            bufs: [const { MaybeUninit::uninit() }; N],
        }
    }

    /// Number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no mbuf.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when it holds `N` mbufs.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Capacity `N`.
    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Adds an mbuf at the end; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.bufs[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// The held mbufs.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: bufs[..len] are initialised; MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The held mbufs, mutable (e.g. to rewrite their data in place).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in `as_slice`; `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Moves every mbuf out, in order. Mbufs not taken from the iterator are freed when
    /// it is dropped. The burst is empty afterwards.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_, N> {
        let end = self.len;
        // Leak amplification: if the Drain is forgotten, the mbufs leak rather than
        // being freed twice.
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end,
        }
    }

    /// Frees every mbuf held (one `rte_pktmbuf_free_bulk` call).
    #[inline]
    pub fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = self.len as u32;
        self.len = 0;
        // SAFETY: bufs[..n] were initialised and owned; `len` is already 0 so they are
        // not touched again; Mbuf is a transparent `*mut rte_mbuf`.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.bufs.as_mut_ptr().cast(), n) }
    }

    /// Pointer to the first free slot and the number of free slots, for `rx_burst`.
    #[inline]
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        // SAFETY: `len <= N`, so the pointer stays within (or one past) the array.
        let p = unsafe { self.bufs.as_mut_ptr().add(self.len) };
        (p.cast(), N - self.len)
    }

    /// Marks `n` more slots as filled (after `rx_burst` wrote them).
    ///
    /// # Safety
    /// The `n` slots after the current length must hold valid mbufs now owned by us.
    #[inline]
    pub(crate) unsafe fn add_len(&mut self, n: usize) {
        debug_assert!(self.len + n <= N);
        self.len += n;
    }

    /// Pointer to the held mbufs, for `tx_burst`.
    #[inline]
    pub(crate) fn as_raw(&mut self) -> *mut *mut dpdk_sys::rte_mbuf {
        self.bufs.as_mut_ptr().cast()
    }

    /// Forgets the first `n` mbufs (DPDK took them) and moves the rest to the front.
    #[inline]
    pub(crate) fn forget_front(&mut self, n: usize) {
        let n = n.min(self.len);
        let rest = self.len - n;
        if rest > 0 && n > 0 {
            // SAFETY: both ranges lie inside the array; `copy` allows overlap. The first n
            // entries are no longer ours (DPDK owns them), so overwriting them is fine.
            unsafe {
                std::ptr::copy(self.bufs.as_ptr().add(n), self.bufs.as_mut_ptr(), rest);
            }
        }
        self.len = rest;
    }
}

impl<const N: usize> Drop for MbufBurst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// By-value iterator over a burst's mbufs (see [`MbufBurst::drain`]).
pub struct Drain<'a, const N: usize> {
    burst: &'a mut MbufBurst<N>,
    next: usize,
    end: usize,
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        // SAFETY: slots next..end are initialised and still owned (the burst's len is 0,
        // so nothing else reads them); each slot is read exactly once.
        Some(unsafe { self.burst.bufs[i].assume_init_read() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<const N: usize> ExactSizeIterator for Drain<'_, N> {}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        for i in self.next..self.end {
            // SAFETY: slots not yet yielded are initialised and owned; dropping frees them.
            unsafe { self.burst.bufs[i].assume_init_drop() };
        }
    }
}
