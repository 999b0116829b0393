//! The connection event stream: what the tracker tells its listeners (`ctgate-ctl
//! events`, the NAT logger) about connections being created, changing state (TCP states,
//! the first reply, becoming assured) and being destroyed, as Linux's `conntrack -E`.
//!
//! Each shard (a worker, or the control lcore that sweeps) writes fixed-size records
//! ([`CtEvent`], [`EVENT_WORDS`] words) into a ring of its own ([`EventRing`]), a plain
//! single-producer single-consumer ring: the producer writes a slot with relaxed atomic
//! stores and publishes it with a release store of `head`; the consumer reads slots below
//! `head` and frees them with a release store of `tail`. No lock, no allocation and no
//! system call on the packet path. A full ring drops the event and counts it
//! (`events_lost`); the packet is never held.
//!
//! Invariants:
//! * only the shard that owns a ring pushes to it, and only [`EventHub::pump`] pops
//!   (under the hub's mutex, on the control side);
//! * nothing is built or written while no listener is subscribed: the tracker checks
//!   [`EventHub::enabled`], one relaxed load, only where an event is due (a connection
//!   created, changing state or removed; never for a packet that changes nothing, so a
//!   listener costs the established path nothing); the rings are allocated at the first
//!   subscription;
//! * a listener's own queue is bounded; when it is full the listener loses events (its
//!   `lost` count), never the other listeners nor the datapath.

use super::conn::{DIR_ORIG, DIR_REPLY};
use super::key::{ConnKey, KEY_WORDS};
use super::sync::CachePadded;
use super::timeouts::TimeoutAttr;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Words of one encoded record.
pub const EVENT_WORDS: usize = 16;
/// Records per shard ring (a power of two).
pub const RING_SLOTS: usize = 4096;
/// Records a listener's queue holds before it loses events.
pub const DEFAULT_QUEUE: usize = 16_384;

/// What happened to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// Created (`[NEW]`).
    New = 1,
    /// Changed as Linux reports it (`[UPDATE]`): TCP entered SYN_RECV, ESTABLISHED or a
    /// closing state, the first reply was seen, or the connection became assured.
    Update = 2,
    /// Removed (`[DESTROY]`), with a [`DestroyReason`].
    Destroy = 3,
}

impl EventKind {
    fn from_u8(v: u8) -> Option<EventKind> {
        match v {
            1 => Some(EventKind::New),
            2 => Some(EventKind::Update),
            3 => Some(EventKind::Destroy),
            _ => None,
        }
    }

    /// `new`, `update`, `destroy` (the names `--event` takes).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::Destroy => "destroy",
        }
    }
}

/// Why a connection was destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DestroyReason {
    /// Not a destroy event.
    None = 0,
    /// Its timeout passed and the sweep removed it.
    Expired = 1,
    /// A closed TCP connection replaced by a new SYN on the same ports, or swept after
    /// its close.
    Closed = 2,
    /// Deleted by `flush-conntrack`.
    Flushed = 3,
    /// Expired, removed by an insert at a zone or global limit.
    Reclaimed = 4,
    /// Removed or replaced because a sync peer said so (never emitted: the stream tells
    /// what this instance did).
    Synced = 5,
}

impl DestroyReason {
    fn from_u8(v: u8) -> DestroyReason {
        match v {
            1 => DestroyReason::Expired,
            2 => DestroyReason::Closed,
            3 => DestroyReason::Flushed,
            4 => DestroyReason::Reclaimed,
            5 => DestroyReason::Synced,
            _ => DestroyReason::None,
        }
    }

    /// `expired`, `closed`, `flushed`, `reclaimed` (empty for none).
    pub fn name(self) -> &'static str {
        match self {
            DestroyReason::None => "",
            DestroyReason::Expired => "expired",
            DestroyReason::Closed => "closed",
            DestroyReason::Flushed => "flushed",
            DestroyReason::Reclaimed => "reclaimed",
            DestroyReason::Synced => "synced",
        }
    }
}

/// One event: a fixed-size copy of what a listener needs about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: EventKind,
    pub reason: DestroyReason,
    /// Wall clock, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Stable for the connection's life: its record generation (high 32 bits) and index.
    pub id: u64,
    /// Original-direction tuple (its zone is the connection's zone).
    pub orig: ConnKey,
    /// Reply tuple; with NAT, the translated one.
    pub reply: ConnKey,
    /// NAT flags (`CtState::SNAT`/`DNAT` bits).
    pub nat: u8,
    /// The timeout attribute of the connection's state ([`TimeoutAttr`] as u8).
    pub tattr: u8,
    /// Assured (the connection's sticky `ASSURED` bit, conntrack's `[ASSURED]`).
    pub assured: bool,
    /// The TCP state shown (`TcpState` as u8; 0 for other protocols).
    pub tcp_state: u8,
    /// Milliseconds until the connection expires (0 for destroy events).
    pub timeout_ms: u64,
}

impl CtEvent {
    /// The connection's zone.
    pub fn zone(&self) -> u16 {
        self.orig.zone
    }

    /// The timeout attribute.
    pub fn attr(&self) -> Option<TimeoutAttr> {
        TimeoutAttr::ALL.get(self.tattr as usize).copied()
    }

    /// True when a packet was seen in the reply direction.
    pub fn seen_reply(&self) -> bool {
        !matches!(
            self.attr(),
            Some(TimeoutAttr::TcpSynSent | TimeoutAttr::UdpFirst | TimeoutAttr::UdpSingle)
                | Some(TimeoutAttr::IcmpFirst)
        )
    }

    /// True once the connection is assured (conntrack's `[ASSURED]`, sticky): TCP
    /// that reached ESTABLISHED, other protocols (ICMP never) that sent a packet after
    /// their first reply.
    pub fn assured(&self) -> bool {
        self.assured
    }

    /// The TCP state as Linux's conntrack names it (`SYN_SENT`, `ESTABLISHED`,
    /// `FIN_WAIT`, `LAST_ACK`, `TIME_WAIT`, …), from the state class; `None` for other
    /// protocols.
    pub fn linux_tcp_state(&self) -> Option<&'static str> {
        Some(match self.attr()? {
            TimeoutAttr::TcpSynSent => "SYN_SENT",
            TimeoutAttr::TcpSynRecv => "SYN_RECV",
            TimeoutAttr::TcpEstablished => "ESTABLISHED",
            TimeoutAttr::TcpFinWait => "FIN_WAIT",
            TimeoutAttr::TcpTimeWait => "LAST_ACK",
            TimeoutAttr::TcpClose => "TIME_WAIT",
            _ => return None,
        })
    }

    /// The record as words.
    pub fn encode(&self) -> [u64; EVENT_WORDS] {
        let mut w = [0u64; EVENT_WORDS];
        w[0] = self.kind as u64
            | (self.reason as u64) << 8
            | (self.nat as u64) << 16
            | (self.tattr as u64) << 24
            | (self.tcp_state as u64) << 32
            | (self.assured as u64) << 40;
        w[1] = self.ts_us;
        w[2] = self.id;
        w[3..3 + KEY_WORDS].copy_from_slice(&self.orig.to_words());
        w[3 + KEY_WORDS..3 + 2 * KEY_WORDS].copy_from_slice(&self.reply.to_words());
        w[3 + 2 * KEY_WORDS] = self.timeout_ms;
        w
    }

    /// Decodes [`CtEvent::encode`]'s words; `None` for a malformed kind.
    pub fn decode(w: &[u64; EVENT_WORDS]) -> Option<CtEvent> {
        let mut o = [0u64; KEY_WORDS];
        let mut r = [0u64; KEY_WORDS];
        o.copy_from_slice(&w[3..3 + KEY_WORDS]);
        r.copy_from_slice(&w[3 + KEY_WORDS..3 + 2 * KEY_WORDS]);
        Some(CtEvent {
            kind: EventKind::from_u8(w[0] as u8)?,
            reason: DestroyReason::from_u8((w[0] >> 8) as u8),
            nat: (w[0] >> 16) as u8,
            tattr: (w[0] >> 24) as u8,
            tcp_state: (w[0] >> 32) as u8,
            assured: (w[0] >> 40) & 1 != 0,
            ts_us: w[1],
            id: w[2],
            orig: ConnKey::from_words(&o),
            reply: ConnKey::from_words(&r),
            timeout_ms: w[3 + 2 * KEY_WORDS],
        })
    }
}

/// The wall clock in microseconds since the Unix epoch (`clock_gettime` through the vDSO:
/// no system call).
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A single-producer single-consumer ring of fixed-size records.
pub struct EventRing {
    slots: Box<[[AtomicU64; EVENT_WORDS]]>,
    mask: u64,
    /// Next slot the producer writes.
    head: CachePadded<AtomicU64>,
    /// Next slot the consumer reads.
    tail: CachePadded<AtomicU64>,
    /// Records dropped because the ring was full (written by the producer only).
    lost: CachePadded<AtomicU64>,
}

impl EventRing {
    /// A ring of `slots` records (rounded up to a power of two, at least 2).
    pub fn new(slots: usize) -> EventRing {
        let n = slots.max(2).next_power_of_two();
        EventRing {
            slots: (0..n).map(|_| Default::default()).collect(),
            mask: n as u64 - 1,
            head: CachePadded(AtomicU64::new(0)),
            tail: CachePadded(AtomicU64::new(0)),
            lost: CachePadded(AtomicU64::new(0)),
        }
    }

    /// Appends a record; false (and counted as lost) when the ring is full. Only the
    /// ring's owner calls this.
    #[inline]
    pub fn push(&self, ev: &CtEvent) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) > self.mask {
            super::stats::bump(&self.lost);
            return false;
        }
        let slot = &self.slots[(head & self.mask) as usize];
        for (s, w) in slot.iter().zip(ev.encode()) {
            s.store(w, Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Takes the oldest record. Only one consumer at a time (the hub's mutex).
    pub fn pop(&self) -> Option<CtEvent> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail == head {
            return None;
        }
        let slot = &self.slots[(tail & self.mask) as usize];
        let mut w = [0u64; EVENT_WORDS];
        for (d, s) in w.iter_mut().zip(slot.iter()) {
            *d = s.load(Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        CtEvent::decode(&w)
    }

    /// Records dropped because the ring was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        head.wrapping_sub(self.tail.load(Ordering::Acquire)) as usize
    }

    /// True when no record waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A listener's bounded queue of events.
#[derive(Debug)]
struct Queue {
    events: VecDeque<CtEvent>,
    cap: usize,
    lost: u64,
}

/// One listener's share of the stream: events arrive in it at each [`EventHub::pump`].
/// Dropping it unsubscribes (and turns emitting off when it was the last).
pub struct Subscription {
    hub: Arc<EventHub>,
    queue: Arc<Mutex<Queue>>,
}

impl Subscription {
    /// Moves the events received so far into `out`; returns how many.
    pub fn drain(&self, out: &mut Vec<CtEvent>) -> usize {
        self.hub.pump();
        let mut q = lock(&self.queue);
        let n = q.events.len();
        out.extend(q.events.drain(..));
        n
    }

    /// Events this listener lost because its queue was full.
    pub fn lost(&self) -> u64 {
        lock(&self.queue).lost
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<EventHub> {
        &self.hub
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = lock(&self.hub.subs);
        subs.retain(|q| !Arc::ptr_eq(q, &self.queue));
        if subs.is_empty() {
            self.hub.on.store(false, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tracker's event stream: one ring per shard and the listeners' queues.
pub struct EventHub {
    on: AtomicBool,
    shards: usize,
    rings: OnceLock<Box<[EventRing]>>,
    subs: Mutex<Vec<Arc<Mutex<Queue>>>>,
    /// Serialises the rings' consumer side.
    pumping: Mutex<()>,
}

impl EventHub {
    /// A hub for `shards` producers (no memory for rings until the first subscription).
    pub fn new(shards: usize) -> EventHub {
        EventHub {
            on: AtomicBool::new(false),
            shards,
            rings: OnceLock::new(),
            subs: Mutex::new(Vec::new()),
            pumping: Mutex::new(()),
        }
    }

    /// True while someone listens: the one check where an event is due.
    #[inline(always)]
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Shard `shard`'s ring, once allocated.
    #[inline]
    pub fn ring(&self, shard: usize) -> Option<&EventRing> {
        self.rings.get().and_then(|r| r.get(shard))
    }

    /// Emits `ev` into `shard`'s ring (dropped and counted when full). Call only from the
    /// shard's owner, after checking [`EventHub::enabled`].
    #[inline]
    /// Returns false when the event was dropped.
    pub fn emit(&self, shard: usize, ev: &CtEvent) -> bool {
        match self.ring(shard) {
            Some(r) => r.push(ev),
            None => false,
        }
    }

    /// Adds a listener whose queue holds `cap` events; emitting starts.
    pub fn subscribe(self: &Arc<Self>, cap: usize) -> Subscription {
        self.rings.get_or_init(|| {
            (0..self.shards)
                .map(|_| EventRing::new(RING_SLOTS))
                .collect()
        });
        let queue = Arc::new(Mutex::new(Queue {
            events: VecDeque::new(),
            cap: cap.max(1),
            lost: 0,
        }));
        let mut subs = lock(&self.subs);
        subs.push(queue.clone());
        self.on.store(true, Ordering::Relaxed);
        Subscription {
            hub: self.clone(),
            queue,
        }
    }

    /// Listeners subscribed.
    pub fn listeners(&self) -> usize {
        lock(&self.subs).len()
    }

    /// Moves every waiting record from the rings to every listener's queue (a full queue
    /// loses the event, counted for that listener). Returns the records moved. Control
    /// side only; bounded by the rings' size.
    pub fn pump(&self) -> usize {
        let Some(rings) = self.rings.get() else {
            return 0;
        };
        let _g = lock(&self.pumping);
        let subs = lock(&self.subs);
        let mut n = 0;
        for r in rings.iter() {
            // At most one ring's worth per call, so a busy producer cannot hold us.
            for _ in 0..RING_SLOTS {
                let Some(ev) = r.pop() else { break };
                n += 1;
                for q in subs.iter() {
                    let mut q = lock(q);
                    if q.events.len() >= q.cap {
                        q.lost += 1;
                    } else {
                        q.events.push_back(ev);
                    }
                }
            }
        }
        n
    }

    /// Events dropped because a shard's ring was full, over all shards.
    pub fn ring_lost(&self) -> u64 {
        self.rings
            .get()
            .map(|r| r.iter().map(|r| r.lost()).sum())
            .unwrap_or(0)
    }
}

/// The id of the connection in record `idx` at generation `gen`.
#[inline]
pub fn conn_id(idx: u32, gen: u32) -> u64 {
    (gen as u64) << 32 | idx as u64
}

const _: () = assert!(DIR_ORIG == 0 && DIR_REPLY == 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u16) -> CtEvent {
        let mut orig = ConnKey::default();
        orig.src[..4].copy_from_slice(&[10, 0, 0, 2]);
        orig.dst[..4].copy_from_slice(&[192, 0, 2, 2]);
        orig.sport = n;
        orig.dport = 53;
        orig.proto = 17;
        orig.zone = 7;
        CtEvent {
            kind: EventKind::Destroy,
            reason: DestroyReason::Reclaimed,
            ts_us: 1_700_000_000_123_456,
            id: conn_id(42, 3),
            orig,
            reply: orig.reversed(),
            nat: 1,
            tattr: TimeoutAttr::UdpMultiple as u8,
            assured: true,
            tcp_state: 0,
            timeout_ms: 29_999,
        }
    }

    #[test]
    fn a_record_survives_encoding_field_for_field() {
        let e = ev(4000);
        assert_eq!(CtEvent::decode(&e.encode()), Some(e));
        let mut w = e.encode();
        w[0] &= !0xff;
        assert_eq!(CtEvent::decode(&w), None, "kind 0 is not an event");
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_keeps_the_oldest() {
        let r = EventRing::new(4);
        for i in 0..6 {
            assert_eq!(r.push(&ev(i)), i < 4);
        }
        assert_eq!(r.lost(), 2);
        assert_eq!(r.len(), 4);
        let got: Vec<u16> = std::iter::from_fn(|| r.pop())
            .map(|e| e.orig.sport)
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
        assert!(r.push(&ev(9)));
        assert_eq!(r.pop().map(|e| e.orig.sport), Some(9));
    }

    #[test]
    fn ring_carries_every_record_in_order_across_threads() {
        let r = Arc::new(EventRing::new(64));
        let p = r.clone();
        let h = std::thread::spawn(move || {
            let mut i = 0u16;
            while i < 20_000 {
                if p.push(&ev(i)) {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut want = 0u16;
        while want < 20_000 {
            if let Some(e) = r.pop() {
                assert_eq!(e.orig.sport, want);
                assert_eq!(e.orig.zone, 7);
                want += 1;
            }
        }
        h.join().unwrap();
    }

    #[test]
    fn each_listener_gets_every_event_and_a_full_queue_loses_only_its_own() {
        let hub = Arc::new(EventHub::new(2));
        assert!(!hub.enabled());
        let fast = hub.subscribe(100);
        let slow = hub.subscribe(3);
        assert!(hub.enabled());
        for i in 0..5 {
            hub.emit(i as usize % 2, &ev(i));
        }
        let mut a = Vec::new();
        fast.drain(&mut a);
        assert_eq!(a.len(), 5);
        assert_eq!(fast.lost(), 0);
        let mut b = Vec::new();
        slow.drain(&mut b);
        assert_eq!(b.len(), 3);
        assert_eq!(slow.lost(), 2);
        drop(fast);
        assert!(hub.enabled());
        drop(slow);
        assert!(!hub.enabled());
        assert_eq!(hub.listeners(), 0);
    }
}
