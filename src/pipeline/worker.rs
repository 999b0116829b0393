//! The worker lcore poll loop (feature `dpdk`).
//!
//! Shaped like DPDK's l3fwd `em_main_loop`: every `DRAIN_US` microseconds (measured with
//! the TSC) flush the partly filled TX buffers and publish counters; then for each RX
//! queue this worker owns: `rx_burst` (up to 32), `continue` on zero, prefetch, run the
//! [`PacketStep`] over the burst, move each mbuf to its output port's TX buffer or drop
//! it, and send a TX buffer as soon as it is full. Whatever `tx_burst` does not take is
//! freed and counted as [`DropReason::TxFull`], as l3fwd's `send_burst` does. Unlike
//! l3fwd, a pass over the RX queues that received nothing also flushes the TX buffers:
//! once the input is drained nothing waits for the drain tick, so at low and medium load
//! a packet's time in the worker is its processing, not up to `DRAIN_US`; under full
//! load every poll returns packets and this never triggers.
//!
//! No heap allocation, syscall or lock per packet or per burst: bursts live on the stack,
//! TX buffers are allocated once, and counters are published with relaxed atomic stores.
//!
//! Held and generated frames (see [`super`]): a [`Verdict::Hold`] parks the mbuf in the
//! worker's slot array (sized once from [`PacketStep::hold_slots`]); after every burst and
//! at every drain tick the worker calls [`PacketStep::service`] with itself as the
//! [`StepSink`]: held mbufs are sent (with their new destination MAC) or freed, and
//! generated frames are copied into mbufs from the worker's mempool
//! ([`Worker::with_mempool`]; without one they are counted as [`DropReason::NoBuffer`]).
//! Held mbufs still parked when the worker stops are freed and counted as
//! [`DropReason::NeighUnresolved`].
//!
//! Per received mbuf the worker also reads what the step cannot see in the bytes: a frame
//! the PMD had to chain over more than one mbuf (longer than the data room) never reaches
//! the step and is counted as [`DropReason::TooBig`]; the RX IPv4 header checksum flags
//! go to the step as [`RxCksum`] ([`PacketStep::process_burst_rx`]). On ports that carry
//! VLAN sub-interfaces ([`Worker::with_vlans`]) the outer 802.1Q tag is taken off before
//! the step and its VLAN id handed over the same way; frames the step sends to a
//! sub-interface get the tag pushed back (see [`super::vlan`]).
//!
//! Accounting: every frame the step hands [`StepSink::emit`] counts as `generated`
//! (sent, or dropped as [`DropReason::NoBuffer`] / [`DropReason::TxFull`]), and every
//! [`Verdict::Consumed`] frame (a fragment whose copy reassembly keeps; the copies are
//! sent as generated frames) as `consumed`, so once no frame is held (always after the
//! worker stopped) `rx - dropped - consumed + generated = tx`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::forward::MAX_PORTS;
use super::vlan::{push_tag, strip_tag, RxInfo, VlanTable, TAG_LEN};
use super::{DropCounters, DropReason, MacAddr, PacketStep, RxCksum, StepSink, Verdict};
use crate::dpdk::{Mbuf, MbufBurst, Mempool, RxQueue, Tsc, TxQueue, BURST_SIZE};

/// How often partly filled TX buffers are flushed (l3fwd's `BURST_TX_DRAIN_US`).
pub const DRAIN_US: u64 = 100;

/// A worker's counters as the control lcore reads them. The worker stores its local
/// counts here at every drain tick and when it stops (single writer, relaxed stores).
#[repr(align(64))]
#[derive(Debug)]
pub struct WorkerCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    /// Frames the step generated (ARP/NDP requests, out-of-place adverts, ICMP errors).
    pub generated: AtomicU64,
    /// Frames the step kept a copy of and let go ([`Verdict::Consumed`]: fragments).
    pub consumed: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Drops by the port the packet arrived on.
    pub port_drops: [AtomicU64; MAX_PORTS],
    /// TSC ticks from loop start to the last publish.
    pub run_tsc: AtomicU64,
    /// TSC ticks of the loop's turns that found packets (the rest polled empty queues):
    /// the worker's load, as OVS's PMD processing cycles.
    pub busy_tsc: AtomicU64,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            port_drops: std::array::from_fn(|_| AtomicU64::new(0)),
            run_tsc: AtomicU64::new(0),
            busy_tsc: AtomicU64::new(0),
        }
    }
}

/// A copy of [`WorkerCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub rx: u64,
    pub tx: u64,
    pub generated: u64,
    pub consumed: u64,
    pub drops: DropCounters,
    pub port_drops: Vec<u64>,
    pub run_tsc: u64,
    pub busy_tsc: u64,
}

impl WorkerCounters {
    pub fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            rx: self.rx.load(Ordering::Relaxed),
            tx: self.tx.load(Ordering::Relaxed),
            generated: self.generated.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
            drops: DropCounters(std::array::from_fn(|i| {
                self.drops[i].load(Ordering::Relaxed)
            })),
            port_drops: self
                .port_drops
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            run_tsc: self.run_tsc.load(Ordering::Relaxed),
            busy_tsc: self.busy_tsc.load(Ordering::Relaxed),
        }
    }
}

/// The worker's own counters, plain integers on its stack.
struct Local {
    rx: u64,
    tx: u64,
    generated: u64,
    consumed: u64,
    drops: DropCounters,
    port_drops: [u64; MAX_PORTS],
    /// See [`WorkerCounters::busy_tsc`].
    busy_tsc: u64,
}

impl Local {
    #[inline]
    fn drop_packet(&mut self, reason: DropReason, in_port: u16, n: u64) {
        self.drops.add(reason, n);
        if let Some(c) = self.port_drops.get_mut(usize::from(in_port)) {
            *c += n;
        }
    }

    fn publish(&self, shared: &WorkerCounters, run_tsc: u64) {
        shared.rx.store(self.rx, Ordering::Relaxed);
        shared.tx.store(self.tx, Ordering::Relaxed);
        shared.generated.store(self.generated, Ordering::Relaxed);
        shared.consumed.store(self.consumed, Ordering::Relaxed);
        for (s, v) in shared.drops.iter().zip(self.drops.0) {
            s.store(v, Ordering::Relaxed);
        }
        for (s, &v) in shared.port_drops.iter().zip(self.port_drops.iter()) {
            s.store(v, Ordering::Relaxed);
        }
        shared.run_tsc.store(run_tsc, Ordering::Relaxed);
        shared.busy_tsc.store(self.busy_tsc, Ordering::Relaxed);
    }
}

/// An output port's TX queue and its buffer.
struct TxPort {
    queue: TxQueue,
    buf: MbufBurst<BURST_SIZE>,
}

impl TxPort {
    /// Sends the buffer; frees and counts what the device did not take.
    #[inline]
    fn flush(&mut self, local: &mut Local) {
        if self.buf.is_empty() {
            return;
        }
        let sent = self.queue.tx_burst(&mut self.buf);
        local.tx += sent as u64;
        if !self.buf.is_empty() {
            for m in self.buf.as_slice() {
                local.drop_packet(DropReason::TxFull, m.port(), 1);
            }
            self.buf.clear();
        }
    }
}

/// Queues `m` for interface `out` (sending the buffer when it fills): a DPDK port, or a
/// VLAN sub-interface of `vlans` (its tag pushed first; no headroom for it:
/// [`DropReason::NoBuffer`]). Drops it as [`DropReason::NoRoute`] when this worker has no
/// TX queue on the port.
#[inline]
fn push_tx(
    tx: &mut [TxPort],
    tx_slot: &[u8; MAX_PORTS],
    vlans: &VlanTable,
    local: &mut Local,
    mut m: Mbuf,
    out: u16,
    in_port: u16,
) {
    let Some((out, tag)) = vlans.out(out) else {
        local.drop_packet(DropReason::NoRoute, in_port, 1);
        return;
    };
    if let Some(vid) = tag {
        if !m.grow_front(TAG_LEN as u16) || !push_tag(m.data_mut(), vid) {
            local.drop_packet(DropReason::NoBuffer, in_port, 1);
            return;
        }
    }
    let slot = tx_slot.get(usize::from(out)).copied().unwrap_or(u8::MAX);
    match tx.get_mut(usize::from(slot)) {
        Some(t) => {
            // Never full here: a full buffer is sent right away.
            if let Err(m) = t.buf.push(m) {
                local.drop_packet(DropReason::TxFull, in_port, 1);
                drop(m);
            }
            if t.buf.is_full() {
                t.flush(local);
            }
        }
        None => local.drop_packet(DropReason::NoRoute, in_port, 1),
    }
}

/// The worker as the step's [`StepSink`] during [`PacketStep::service`].
struct Sink<'a> {
    tx: &'a mut [TxPort],
    tx_slot: &'a [u8; MAX_PORTS],
    vlans: &'a VlanTable,
    local: &'a mut Local,
    held: &'a mut [Option<Mbuf>],
    pool: Option<Mempool>,
}

impl StepSink for Sink<'_> {
    fn emit(&mut self, port: u16, frame: &[u8]) {
        self.local.generated += 1;
        let m = self
            .pool
            .as_ref()
            .and_then(|p| p.alloc())
            .and_then(|mut m| {
                m.extend_from_slice(frame).ok()?;
                Some(m)
            });
        match m {
            Some(m) => push_tx(self.tx, self.tx_slot, self.vlans, self.local, m, port, port),
            None => self.local.drop_packet(DropReason::NoBuffer, port, 1),
        }
    }

    fn send_held(&mut self, slot: u16, port: u16, dst_mac: MacAddr) {
        let Some(mut m) = self.held.get_mut(usize::from(slot)).and_then(Option::take) else {
            return;
        };
        if let Some(d) = m.data_mut().get_mut(0..6) {
            d.copy_from_slice(&dst_mac.0);
        }
        let in_port = m.port();
        push_tx(
            self.tx,
            self.tx_slot,
            self.vlans,
            self.local,
            m,
            port,
            in_port,
        );
    }

    fn drop_held(&mut self, slot: u16, reason: DropReason, in_port: u16) {
        if let Some(m) = self.held.get_mut(usize::from(slot)).and_then(Option::take) {
            self.local.drop_packet(reason, in_port, 1);
            drop(m);
        }
    }
}

/// Everything one worker lcore owns.
pub struct Worker<S: PacketStep> {
    rx: Vec<RxQueue>,
    tx: Vec<TxPort>,
    /// `tx_slot[port]`: index into `tx` for the port, `u8::MAX` if this worker has none.
    tx_slot: [u8; MAX_PORTS],
    step: S,
    counters: Arc<WorkerCounters>,
    stop: Arc<AtomicBool>,
    drain_tsc: u64,
    /// Where generated frames' mbufs come from.
    pool: Option<Mempool>,
    /// VLAN sub-interfaces, and the ports that carry them (tags taken off on receive).
    vlans: VlanTable,
    trunk: [bool; MAX_PORTS],
}

impl<S: PacketStep> Worker<S> {
    /// A worker polling `rx` and sending on `tx`, running `step` on every burst, until
    /// `stop` is set. `tsc_hz` is the TSC frequency (for the drain interval).
    pub fn new(
        rx: Vec<RxQueue>,
        tx: Vec<TxQueue>,
        step: S,
        counters: Arc<WorkerCounters>,
        stop: Arc<AtomicBool>,
        tsc_hz: u64,
    ) -> Result<Self, String> {
        let mut tx_slot = [u8::MAX; MAX_PORTS];
        let mut ports = Vec::with_capacity(tx.len());
        for (i, queue) in tx.into_iter().enumerate() {
            let slot = tx_slot
                .get_mut(usize::from(queue.port()))
                .ok_or_else(|| format!("port {} is beyond {MAX_PORTS}", queue.port()))?;
            if *slot != u8::MAX {
                return Err(format!("two TX queues for port {}", queue.port()));
            }
            *slot = u8::try_from(i).map_err(|_| "too many TX ports".to_string())?;
            ports.push(TxPort {
                queue,
                buf: MbufBurst::new(),
            });
        }
        Ok(Worker {
            rx,
            tx: ports,
            tx_slot,
            step,
            counters,
            stop,
            drain_tsc: (tsc_hz / 1_000_000).max(1) * DRAIN_US,
            pool: None,
            vlans: VlanTable::default(),
            trunk: [false; MAX_PORTS],
        })
    }

    /// The mempool the worker allocates generated frames (ARP/NDP requests, ICMP errors)
    /// from; without one they are dropped as [`DropReason::NoBuffer`]. Use the pool of
    /// the worker's socket (the one its RX queues fill from).
    pub fn with_mempool(mut self, pool: Mempool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The VLAN sub-interfaces the step's interface ids name ([`super::vlan`]): frames
    /// for them get their tag pushed on transmit, and every frame received on a port that
    /// carries one has its outer 802.1Q tag taken off first (its VLAN id goes to the step
    /// in [`RxInfo::vlan`]).
    pub fn with_vlans(mut self, vlans: VlanTable) -> Self {
        for (t, p) in self.trunk.iter_mut().zip(0u16..) {
            *t = vlans.is_trunk(p);
        }
        self.vlans = vlans;
        self
    }

    /// The poll loop. Returns when `stop` is set, after flushing its TX buffers and
    /// publishing its final counters.
    pub fn run(self) -> i32 {
        let Worker {
            mut rx,
            mut tx,
            tx_slot,
            mut step,
            counters,
            stop,
            drain_tsc,
            pool,
            vlans,
            trunk,
        } = self;
        let mut local = Local {
            rx: 0,
            tx: 0,
            generated: 0,
            consumed: 0,
            drops: DropCounters::default(),
            port_drops: [0; MAX_PORTS],
            busy_tsc: 0,
        };
        if rx.is_empty() {
            // More workers than RX queues: nothing to poll, so do not burn a CPU.
            local.publish(&counters, 0);
            return 0;
        }
        // One mbuf per hold slot, allocated once.
        let mut held: Vec<Option<Mbuf>> = Vec::new();
        held.resize_with(step.hold_slots(), || None);
        let mut burst: MbufBurst<BURST_SIZE> = MbufBurst::new();
        let mut verdicts = [Verdict::Drop(DropReason::NoRoute); BURST_SIZE];
        let mut rx_info = [RxInfo::default(); BURST_SIZE];
        // Frames of the burst longer than one mbuf (bit i: frame i).
        let mut too_big: u64;
        let start = Tsc::now();
        let mut prev_drain = start;
        // The start of the previous turn, and whether it found packets: a turn's ticks
        // count as busy (to the next turn's start) when it did.
        let (mut prev_turn, mut prev_busy) = (start, false);

        while !stop.load(Ordering::Relaxed) {
            let now = Tsc::now();
            if prev_busy {
                local.busy_tsc += now.wrapping_sub(prev_turn);
            }
            prev_turn = now;
            if now.wrapping_sub(prev_drain) > drain_tsc {
                step.service(&mut Sink {
                    tx: &mut tx,
                    tx_slot: &tx_slot,
                    vlans: &vlans,
                    local: &mut local,
                    held: &mut held,
                    pool,
                });
                for t in tx.iter_mut() {
                    t.flush(&mut local);
                }
                local.publish(&counters, now.wrapping_sub(start));
                prev_drain = now;
            }

            let mut idle = true;
            for q in rx.iter_mut() {
                let n = q.rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                idle = false;
                let in_port = q.port();
                local.rx += n as u64;
                for m in burst.as_slice() {
                    m.prefetch();
                }
                too_big = 0;
                let is_trunk = trunk.get(usize::from(in_port)).copied().unwrap_or(false);
                {
                    let mut frames: [&mut [u8]; BURST_SIZE] = Default::default();
                    for (i, ((f, r), m)) in frames
                        .iter_mut()
                        .zip(rx_info.iter_mut())
                        .zip(burst.as_mut_slice())
                        .enumerate()
                    {
                        r.cksum = match m.rx_ip_cksum() {
                            Some(true) => RxCksum::Good,
                            Some(false) => RxCksum::Bad,
                            None => RxCksum::Unknown,
                        };
                        r.vlan = None;
                        if is_trunk && !m.is_segmented() {
                            if let Some(vid) = strip_tag(m.data_mut()) {
                                if m.trim_front(TAG_LEN as u16) {
                                    r.vlan = Some(vid);
                                }
                            }
                        }
                        if m.is_segmented() {
                            // The step sees an empty frame (no effect); counted below.
                            too_big |= 1 << i;
                        } else {
                            *f = m.data_mut();
                        }
                    }
                    step.process_burst_rx(
                        &mut frames[..n],
                        in_port,
                        &rx_info[..n],
                        &mut verdicts[..n],
                    );
                }
                for (i, (m, v)) in burst.drain().zip(verdicts.iter()).enumerate() {
                    let v = if too_big & (1 << i) != 0 {
                        Verdict::Drop(DropReason::TooBig)
                    } else {
                        *v
                    };
                    match v {
                        Verdict::Forward(out) => {
                            push_tx(&mut tx, &tx_slot, &vlans, &mut local, m, out, in_port)
                        }
                        Verdict::Drop(reason) => local.drop_packet(reason, in_port, 1),
                        Verdict::Consumed => {
                            local.consumed += 1;
                            drop(m);
                        }
                        Verdict::Hold(slot) => match held.get_mut(usize::from(slot)) {
                            Some(h) if h.is_none() => *h = Some(m),
                            // A step bug (slot out of range or taken): never lose the
                            // mbuf already parked; drop the new one.
                            _ => local.drop_packet(DropReason::HoldQueueFull, in_port, 1),
                        },
                    }
                }
                step.service(&mut Sink {
                    tx: &mut tx,
                    tx_slot: &tx_slot,
                    vlans: &vlans,
                    local: &mut local,
                    held: &mut held,
                    pool,
                });
            }
            prev_busy = !idle;
            if idle {
                // The input is drained: send what is buffered now rather than at the next
                // drain tick (latency at partial load).
                for t in tx.iter_mut() {
                    t.flush(&mut local);
                }
            }
        }

        // Held mbufs that were never released: freed here, counted.
        for m in held.iter_mut().filter_map(Option::take) {
            local.drop_packet(DropReason::NeighUnresolved, m.port(), 1);
        }
        for t in tx.iter_mut() {
            t.flush(&mut local);
        }
        local.publish(&counters, Tsc::now().wrapping_sub(start));
        0
    }
}
