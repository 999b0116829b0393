//! The thin, safe layer over `dpdk-sys` (feature `dpdk`), [`ZeroedPages`]: zeroed
//! arrays in their own anonymous mappings, lazily committed, optionally on huge pages,
//! and [`lanes16_eq`]: the vector compare of a bucket's signatures (both built without
//! DPDK too: the tracker's tables use them).
//!
//! # Safety policy
//!
//! This module and `dpdk-sys` are the only places in ctgate with `unsafe` code. Every
//! `unsafe` block carries a `// SAFETY:` comment that says why the call is sound: which
//! DPDK precondition holds and who owns the memory involved. The types exported here
//! keep those preconditions by construction:
//!
//! * [`Eal`] exists at most once per process; holding it proves EAL is initialised, so
//!   everything that needs EAL takes `&Eal` or is built from something that did.
//! * [`Mbuf`] owns one packet buffer: dropping it frees it, [`Mbuf::into_raw`] hands it to
//!   DPDK (TX), so a buffer is freed exactly once.
//! * [`MbufBurst`] is a fixed stack array of `Mbuf`s for RX and TX bursts, with no heap
//!   allocation per burst; [`TxQueue::tx_burst`] forgets what the device took and leaves
//!   the rest in the burst, to be retried or dropped (freed).
//! * A [`Port`] is configured once and closed once; RX/TX queue handles are `Send` but
//!   not `Clone`, so one lcore owns each queue.

#[cfg(feature = "dpdk")]
mod burst;
#[cfg(feature = "dpdk")]
mod eal;
#[cfg(feature = "dpdk")]
mod error;
#[cfg(feature = "dpdk")]
mod lcore;
#[cfg(feature = "dpdk")]
mod mbuf;
#[cfg(feature = "dpdk")]
mod mempool;
mod pages;
#[cfg(feature = "dpdk")]
mod port;
#[cfg(feature = "dpdk")]
mod ring;
mod simd;
#[cfg(feature = "dpdk")]
mod telemetry;

/// Buffer size of each mbuf: DPDK's default (2048 bytes of data room + headroom), enough
/// for a 1518-byte frame in one segment.
#[cfg(feature = "dpdk")]
pub const DEFAULT_MBUF_BUF_SIZE: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// Bytes of headroom before an mbuf's data (`RTE_PKTMBUF_HEADROOM`).
#[cfg(feature = "dpdk")]
pub const MBUF_HEADROOM: u16 = dpdk_sys::RTE_PKTMBUF_HEADROOM as u16;

#[cfg(feature = "dpdk")]
pub use burst::{Drain, MbufBurst, BURST_SIZE};
#[cfg(feature = "dpdk")]
pub use eal::{dpdk_version, Eal};
#[cfg(feature = "dpdk")]
pub use error::Error;
#[cfg(feature = "dpdk")]
pub use lcore::{launch, main_lcore, socket_of_lcore, wait_lcore, worker_lcores, Lcore, Tsc};
#[cfg(feature = "dpdk")]
pub use mbuf::Mbuf;
#[cfg(feature = "dpdk")]
pub use mempool::Mempool;
pub use pages::{Backing, PageSize, ZeroedPages};
#[cfg(feature = "dpdk")]
pub use port::{
    available_ports, port_caps, set_mtu, LinkStatus, MacAddr, Port, PortCaps, PortConfig, PortId,
    PortStats, RxQueue, TxQueue, SYMMETRIC_RSS_KEY,
};
#[cfg(feature = "dpdk")]
pub use ring::{eth_from_rings, port_mac, thread_register, thread_unregister, EalToken, Ring};
pub use simd::lanes16_eq;
#[cfg(feature = "dpdk")]
pub use telemetry::{register_telemetry, TelemetryHandler};
