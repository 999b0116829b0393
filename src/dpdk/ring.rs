//! Rings of mbufs (`rte_ring`) and ethdevs made of rings (`rte_eth_from_rings`, the
//! net_ring PMD): in-process ports for benchmarks, where a generator thread plays the
//! wire on the other end of the rings.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{Eal, Error, MbufBurst, PortId};

/// An `rte_ring` that carries owned mbufs (multi-producer, multi-consumer).
///
/// Like a [`super::Mempool`], a ring is never freed before `rte_eal_cleanup`: ring ports
/// refer to it for as long as the process may poll them, so the handle is a plain shared
/// reference to EAL-owned memory and may be copied freely. Only [`Ring::enqueue_burst`]
/// and the ring ethdev put anything into it, and both put mbufs whose ownership they give
/// up, so whatever [`Ring::dequeue_burst`] takes out is an mbuf nobody else owns.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    ptr: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: a ring created without RING_F_SP_ENQ/RING_F_SC_DEQ is multi-producer and
// multi-consumer: enqueue and dequeue are safe from any thread at once.
unsafe impl Send for Ring {}
// SAFETY: as above; every operation through `&Ring` is thread-safe in DPDK.
unsafe impl Sync for Ring {}

impl Ring {
    /// Creates a ring named `name` (unique in the process) with room for `count - 1`
    /// mbufs; `count` must be a power of two.
    pub fn new(_eal: &Eal, name: &str, count: u32, socket: i32) -> Result<Ring, Error> {
        let op = || format!("rte_ring_create({name}, count={count})");
        if !count.is_power_of_two() {
            return Err(Error::invalid(op()));
        }
        let cname = CString::new(name).map_err(|_| Error::invalid(op()))?;
        // SAFETY: EAL is initialised (we hold &Eal); `cname` is a valid C string that
        // DPDK copies; flags 0 = multi-producer/multi-consumer.
        let ptr = unsafe { dpdk_sys::rte_ring_create(cname.as_ptr(), count, socket, 0) };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Ring { ptr }),
            None => Err(Error::from_rte_errno(op())),
        }
    }

    /// Moves as many mbufs of `burst` as the ring has room for into it (from the front);
    /// the rest stay in `burst`. Returns how many were taken.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&self, burst: &mut MbufBurst<N>) -> usize {
        let n = burst.len() as u32;
        if n == 0 {
            return 0;
        }
        // SAFETY: the ring is valid for the process lifetime; `as_raw` points at `n`
        // owned mbuf pointers. The ring takes ownership of the first `taken` of them,
        // which `forget_front` then drops from the burst, so each is owned exactly once.
        let taken = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.ptr.as_ptr(),
                burst.as_raw().cast::<*mut std::ffi::c_void>(),
                n,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.forget_front(taken);
        taken
    }

    /// Moves up to the free room of `burst` mbufs out of the ring into it. Returns how
    /// many were added.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&self, burst: &mut MbufBurst<N>) -> usize {
        let (spare, room) = burst.spare_raw();
        if room == 0 {
            return 0;
        }
        // SAFETY: the ring is valid; `spare` has `room` free slots. Only mbufs whose
        // ownership was given up are ever put in the ring (see the type's doc), so the
        // dequeued pointers are valid mbufs that are now ours.
        let got = unsafe {
            dpdk_sys::rte_ring_dequeue_burst(
                self.ptr.as_ptr(),
                spare.cast::<*mut std::ffi::c_void>(),
                room as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: the ring wrote `got` valid, owned mbufs into the spare slots.
        unsafe { burst.add_len(got) };
        got
    }

    /// Entries currently in the ring.
    pub fn count(&self) -> u32 {
        // SAFETY: the ring is valid for the process lifetime; the call only reads it.
        unsafe { dpdk_sys::rte_ring_count(self.ptr.as_ptr()) }
    }

    /// Frees every mbuf left in the ring (at the end of a benchmark case, once nothing
    /// polls it any more). Returns how many.
    pub fn drain(&self) -> u64 {
        let mut n = 0;
        let mut b: MbufBurst = MbufBurst::new();
        loop {
            let got = self.dequeue_burst(&mut b);
            if got == 0 {
                return n;
            }
            n += got as u64;
            b.clear();
        }
    }
}

/// Creates an ethdev whose RX queue `i` dequeues from `rx[i]` and whose TX queue `i`
/// enqueues into `tx[i]` (the net_ring PMD; `name` must be new in the process). The
/// same ring may back several TX queues (rings are multi-producer). Returns the port id;
/// configure it with [`super::Port::configure`] as any other port.
pub fn eth_from_rings(
    _eal: &Eal,
    name: &str,
    rx: &[Ring],
    tx: &[Ring],
    socket: u32,
) -> Result<PortId, Error> {
    let op = || format!("rte_eth_from_rings({name})");
    if rx.is_empty() || tx.is_empty() {
        return Err(Error::invalid(op()));
    }
    let cname = CString::new(name).map_err(|_| Error::invalid(op()))?;
    let rxp: Vec<*mut dpdk_sys::rte_ring> = rx.iter().map(|r| r.ptr.as_ptr()).collect();
    let txp: Vec<*mut dpdk_sys::rte_ring> = tx.iter().map(|r| r.ptr.as_ptr()).collect();
    // SAFETY: EAL is initialised; the arrays hold valid rings (which live until EAL
    // cleanup, so the port may keep them) and their lengths are passed; DPDK copies the
    // name.
    let ret = unsafe {
        dpdk_sys::rte_eth_from_rings(
            cname.as_ptr(),
            rxp.as_ptr(),
            rxp.len() as u32,
            txp.as_ptr(),
            txp.len() as u32,
            socket,
        )
    };
    if ret < 0 {
        return Err(Error::from_rte_errno(op()));
    }
    PortId::try_from(ret).map_err(|_| Error::invalid(op()))
}

/// The MAC address of port `id` (`rte_eth_macaddr_get`), before it is configured.
pub fn port_mac(_eal: &Eal, id: PortId) -> Result<[u8; 6], Error> {
    let mut a = dpdk_sys::rte_ether_addr::default();
    // SAFETY: EAL is initialised; `a` is a valid out-parameter.
    let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(id, &mut a) };
    Error::check(|| format!("rte_eth_macaddr_get(port {id})"), ret)?;
    Ok(a.addr_bytes)
}

/// Registers the calling (non-EAL) thread as an lcore (`rte_thread_register`), so it
/// gets an lcore id and with it mempool caches. Undo with [`thread_unregister`] before
/// the thread ends.
pub fn thread_register(_eal_running: &EalToken) -> Result<(), Error> {
    // SAFETY: EAL is initialised (an EalToken exists only then); the call only updates
    // EAL's lcore table and the calling thread's TLS.
    let ret = unsafe { dpdk_sys::rte_thread_register() };
    if ret < 0 {
        return Err(Error::from_rte_errno("rte_thread_register"));
    }
    Ok(())
}

/// Releases the lcore id [`thread_register`] gave the calling thread.
pub fn thread_unregister(_eal_running: &EalToken) {
    // SAFETY: EAL is initialised; unregistering a thread that holds no lcore is a no-op.
    unsafe { dpdk_sys::rte_thread_unregister() }
}

/// A `Send + Sync` proof that EAL is initialised, for threads other than the main lcore
/// (which holds the [`Eal`] itself). Valid until the main lcore runs [`Eal::cleanup`]:
/// the holder must join its threads before that.
#[derive(Clone, Copy, Debug)]
pub struct EalToken(());

impl EalToken {
    /// A token for threads spawned while `eal` lives.
    pub fn new(_eal: &Eal) -> EalToken {
        EalToken(())
    }
}
