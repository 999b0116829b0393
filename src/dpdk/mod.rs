//! The thin, safe layer over `dpdk-sys`.
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

mod burst;
mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
mod port;
mod ring;
mod telemetry;

/// Buffer size of each mbuf: DPDK's default (2048 bytes of data room + headroom), enough
/// for a 1518-byte frame in one segment.
pub const DEFAULT_MBUF_BUF_SIZE: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// Bytes of headroom before an mbuf's data (`RTE_PKTMBUF_HEADROOM`).
pub const MBUF_HEADROOM: u16 = dpdk_sys::RTE_PKTMBUF_HEADROOM as u16;

pub use burst::{Drain, MbufBurst, BURST_SIZE};
pub use eal::{dpdk_version, Eal};
pub use error::Error;
pub use lcore::{launch, main_lcore, socket_of_lcore, wait_lcore, worker_lcores, Lcore, Tsc};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{
    available_ports, port_caps, set_mtu, LinkStatus, MacAddr, Port, PortCaps, PortConfig, PortId,
    PortStats, RxQueue, TxQueue, SYMMETRIC_RSS_KEY,
};
pub use ring::{eth_from_rings, port_mac, thread_register, thread_unregister, EalToken, Ring};
pub use telemetry::{register_telemetry, TelemetryHandler};
