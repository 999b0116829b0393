//! `Mbuf`: one owned packet buffer.

use std::ptr::NonNull;

use super::error::Error;

/// An owned DPDK packet buffer (`struct rte_mbuf`), single segment.
///
/// Dropping an `Mbuf` frees it back to its mempool; [`Mbuf::into_raw`] gives ownership to
/// DPDK instead (the TX path), so every buffer is freed exactly once. `#[repr(transparent)]`
/// over a non-null pointer: an array of `Mbuf` has the layout of the `struct rte_mbuf **`
/// that the burst functions take. `Send` (it may move between lcores) but not `Sync`.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf {
    ptr: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one `Mbuf`; moving it to another thread moves the
// ownership and freeing from any lcore is allowed by DPDK. It is not Sync: `&Mbuf` gives
// no synchronisation for the packet data.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf; `None` for NULL.
    ///
    /// # Safety
    /// `ptr` must be NULL or a valid, single-segment mbuf that nobody else owns or frees.
    pub(crate) unsafe fn from_raw(ptr: *mut dpdk_sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(ptr).map(|ptr| Mbuf { ptr })
    }

    /// Gives up ownership without freeing (e.g. after `rte_eth_tx_burst` took it).
    #[inline]
    pub fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for as long as `self` lives.
        unsafe { self.ptr.as_ref() }
    }

    /// Length of the packet data.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// True when the packet has no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the packet is longer than this buffer: the PMD chained more segments
    /// (`nb_segs > 1`, `pkt_len > data_len`). [`Mbuf::data`] covers the first only.
    #[inline]
    pub fn is_segmented(&self) -> bool {
        let m = self.raw();
        m.nb_segs > 1 || m.pkt_len > u32::from(m.data_len)
    }

    /// What the NIC found of the IPv4 header checksum (`RTE_MBUF_F_RX_IP_CKSUM_*` in the
    /// RX offload flags): `Some(true)` verified good, `Some(false)` bad, `None` when the
    /// port does not offer the offload or did not look (not IPv4, a tag it cannot parse).
    #[inline]
    pub fn rx_ip_cksum(&self) -> Option<bool> {
        // SAFETY: constants defined in shim.c, never written.
        let (mask, good, bad, none) = unsafe {
            (
                dpdk_sys::ctgate_rx_ip_cksum_mask,
                dpdk_sys::ctgate_rx_ip_cksum_good,
                dpdk_sys::ctgate_rx_ip_cksum_bad,
                dpdk_sys::ctgate_rx_ip_cksum_none,
            )
        };
        let f = self.raw().ol_flags & mask;
        if f == good || f == none {
            // NONE: the header's integrity was verified, only the field is not filled.
            Some(true)
        } else if f == bad {
            Some(false)
        } else {
            None
        }
    }

    /// Port the packet was received on (set by the PMD on RX).
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// The packet bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: for a valid mbuf, buf_addr + data_off points at data_len initialised
        // bytes inside its buffer; `&self` keeps the mbuf alive and unshared for 'self.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// The packet bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr.cast::<u8>(), m.data_off, m.data_len);
        // SAFETY: as in `data`; `&mut self` makes this the only reference to the bytes.
        unsafe { std::slice::from_raw_parts_mut(addr.add(usize::from(off)), usize::from(len)) }
    }

    /// Appends `bytes` to the packet (`rte_pktmbuf_append`); fails if the tailroom is short.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let len = u16::try_from(bytes.len())
            .map_err(|_| Error::from_ret("rte_pktmbuf_append (too long)", -libc::ENOSPC))?;
        // SAFETY: we own the mbuf; append returns NULL or a pointer to `len` new bytes.
        let dst = unsafe { dpdk_sys::rte_pktmbuf_append(self.ptr.as_ptr(), len) };
        if dst.is_null() {
            return Err(Error::from_ret("rte_pktmbuf_append", -libc::ENOSPC));
        }
        // SAFETY: `dst` points at `len` writable bytes inside our mbuf; `bytes` is a
        // separate Rust slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.cast::<u8>(), bytes.len()) };
        Ok(())
    }

    /// Drops the first `n` bytes of the packet (`rte_pktmbuf_adj`); false (unchanged) when
    /// it is shorter.
    pub fn trim_front(&mut self, n: u16) -> bool {
        // SAFETY: we own the mbuf; adj checks the length and returns NULL when too short.
        !unsafe { dpdk_sys::rte_pktmbuf_adj(self.ptr.as_ptr(), n) }.is_null()
    }

    /// Makes `n` bytes of room in front of the packet (`rte_pktmbuf_prepend`, from the
    /// headroom; their content is unspecified); false (unchanged) when the headroom is
    /// short.
    pub fn grow_front(&mut self, n: u16) -> bool {
        // SAFETY: we own the mbuf; prepend checks the headroom and returns NULL when short.
        !unsafe { dpdk_sys::rte_pktmbuf_prepend(self.ptr.as_ptr(), n) }.is_null()
    }

    /// Hints the CPU to load the mbuf's first cache line (buffer address, data offset,
    /// lengths, offload flags), without reading it: the pass before [`Mbuf::prefetch`]
    /// over a burst whose mbufs another core wrote last (a ring from another lcore or
    /// process), so that their misses overlap instead of stalling each in turn.
    #[inline]
    pub fn prefetch_header(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch never faults, whatever the address; SSE is baseline on x86_64.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.ptr.as_ptr().cast::<i8>());
        }
    }

    /// Hints the CPU to load the first cache line of the packet data.
    #[inline]
    pub fn prefetch(&self) {
        let m = self.raw();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch never faults, whatever the address; SSE is baseline on x86_64.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(m.buf_addr.cast::<i8>().add(usize::from(m.data_off)));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = m;
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and it was not handed off (into_raw forgets self).
        unsafe { dpdk_sys::rte_pktmbuf_free(self.ptr.as_ptr()) }
    }
}
