//! Packet-buffer mempools, one per NUMA socket in use.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{Eal, Error, Mbuf, MbufBurst};

/// A pktmbuf mempool (`rte_pktmbuf_pool_create`).
///
/// A mempool is never freed before `rte_eal_cleanup` releases all of EAL's memory: ports'
/// RX queues and in-flight mbufs refer to it for as long as the process runs, so the
/// handle is a plain shared reference to EAL-owned memory and may be copied freely.
#[derive(Clone, Copy, Debug)]
pub struct Mempool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    socket: i32,
}

// SAFETY: a pktmbuf pool uses DPDK's default multi-producer/multi-consumer ring ops, so
// allocation and free are safe from any thread; the handle itself is just a pointer.
unsafe impl Send for Mempool {}
// SAFETY: as above; all operations through `&Mempool` are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs with `data_room` bytes of buffer each (headroom
    /// included, e.g. `RTE_MBUF_DEFAULT_BUF_SIZE`) and a per-lcore cache of `cache` on
    /// NUMA socket `socket` (`SOCKET_ID_ANY` for any).
    pub fn new(
        _eal: &Eal,
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, Error> {
        let op = || format!("rte_pktmbuf_pool_create({name}, n={n}, socket={socket})");
        let cname = CString::new(name).map_err(|_| Error::invalid(op()))?;
        // SAFETY: EAL is initialised; `cname` is a valid C string that DPDK copies.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket)
        };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Mempool { ptr, socket }),
            None => Err(Error::from_rte_errno(op())),
        }
    }

    /// NUMA socket the pool was created on.
    pub fn socket(&self) -> i32 {
        self.socket
    }

    /// Mbufs currently free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime (never freed before EAL cleanup).
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: as in `available`.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// Allocates one mbuf (reset, empty), or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is a valid pktmbuf pool; the returned mbuf (if any) is ours.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: a non-NULL result is a freshly allocated mbuf owned by nobody else.
        unsafe { Mbuf::from_raw(m) }
    }

    /// Fills `burst` up to `n` mbufs (at most its free room) in one
    /// `rte_pktmbuf_alloc_bulk` call: all of them or none. Returns false when the pool
    /// had fewer free mbufs.
    pub fn alloc_bulk<const N: usize>(&self, burst: &mut MbufBurst<N>, n: usize) -> bool {
        let (spare, room) = burst.spare_raw();
        let n = n.min(room);
        if n == 0 {
            return true;
        }
        // SAFETY: the pool is a valid pktmbuf pool; `spare` has `room >= n` free slots.
        let ret = unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.ptr.as_ptr(), spare, n as u32) };
        if ret != 0 {
            return false;
        }
        // SAFETY: on success the call wrote `n` freshly allocated mbufs that we own.
        unsafe { burst.add_len(n) };
        true
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }
}
