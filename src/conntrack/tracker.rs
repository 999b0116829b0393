//! The tracker: ties the table, the L4 state machines, zones, limits and timeout policies
//! together, and gives each worker a handle ([`CtWorker`]) with its own pool cache and
//! counters.

use super::alg::expect::{ExpTable, Helper};
use super::alg::helpers::HelperRules;
use super::alg::side::AlgSide;
use super::conn::{Conn, L4State, ALG_RELATED, DIR_ORIG, DIR_REPLY, KEY_LONG, NAT_MASK};
use super::credits::Credits;
use super::events::{conn_id, wall_us, CtEvent, DestroyReason, EventHub, EventKind};
use super::key::{is_icmp, ConnKey, KeyHasher, TupleV4, KEY_WORDS};
use super::l4::{L4Kind, UpdateResult};
use super::state::CtState;
use super::stats::{bump, CtCounters, CtCountersSnapshot};
use super::sync::CachePadded;
use super::table::{Candidate, ConnTable, Hit, InsertError, PoolCache};
use super::timeouts::{self, TimeoutAttr, TimeoutPolicy, N_ATTRS};
use super::zones::{Zone, Zones};
use crate::dpdk::PageSize;
use crate::wire::parse::{Fragment, L4Summary, ParsedPacket};
use crate::wire::proto;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// Default global connection limit (OVS's `DEFAULT_N_CONN_LIMIT`).
pub const DEFAULT_MAX_CONNS: u32 = 3_000_000;

/// How a tracker is built.
#[derive(Clone, Debug)]
pub struct CtConfig {
    /// Global connection limit; also the size of the pre-allocated record pool.
    pub max_conns: u32,
    /// Bucket count (power of two); 0 sizes it from `max_conns`.
    pub n_buckets: u32,
    /// Number of worker handles that will be created (membership-list shards and counter
    /// blocks); the control lcore gets one more.
    pub workers: usize,
    /// TCP sequence checking (on by default, as in OVS).
    pub tcp_seq_check: bool,
    /// Fixed hash seed (tests, reproducible benchmarks); `None` draws a random one.
    pub hash_seed: Option<u64>,
}

impl Default for CtConfig {
    fn default() -> Self {
        CtConfig {
            max_conns: DEFAULT_MAX_CONNS,
            n_buckets: 0,
            workers: 1,
            tcp_seq_check: true,
            hash_seed: None,
        }
    }
}

/// Where the reply key of a new connection comes from: NAT implements this (the `nat`
/// module), so the tracker needs no knowledge of NAT rules.
pub trait ReplyTuples {
    /// The NAT flags (`CtState::SNAT`/`DNAT` bits) of a connection created with `orig`.
    fn flags(&self, orig: &ConnKey) -> u8;
    /// The `n`-th candidate reply key for a new connection `orig` (n = 0, 1, …), or `None`
    /// when the candidates are exhausted. Must be bounded.
    fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey>;
    /// The reply key a new connection `orig` most likely gets, only to prefetch its
    /// bucket: no side effect (no state made, nothing reserved), and a wrong guess costs
    /// only a wasted prefetch. By default the first candidate; a source of candidates
    /// that makes state to answer (`crate::nat::mapping`) guesses instead.
    fn hint(&self, orig: &ConnKey) -> Option<ConnKey> {
        self.candidate(orig, 0)
    }
    /// Starts fetching the state [`ReplyTuples::candidate`] reaches through the lines
    /// [`ReplyTuples::hint`] fetched (a NAT mapping's record, found from its bucket),
    /// called a pass over the burst after `hint`, when those lines have arrived. The same
    /// rules as `hint`: no side effect, a wrong guess costs only a wasted prefetch.
    fn prefetch_state(&self, _orig: &ConnKey) {}
}

/// Told when connections are created and removed, so that a layer above can keep state
/// that lives exactly as long as some connections do (NAT mappings, `crate::nat::mapping`)
/// without the tracker knowing what it is. Called once per created connection (after it is
/// published) and once per removed one (expiry sweep, reclaim, flush, TCP port reuse),
/// never per packet; both calls see the same keys and NAT flags.
pub trait ConnHooks: Send + Sync {
    /// A connection with these keys and NAT flags (`CtState::SNAT`/`DNAT` bits) exists.
    fn created(&self, orig: &ConnKey, reply: &ConnKey, nat: u8, now: u64);
    /// A connection learned from a sync peer (`conntrack::learn`) with these keys and
    /// flags exists: its NAT binding was chosen by the peer, not by this instance's
    /// [`ReplyTuples`]. By default the same as [`ConnHooks::created`].
    fn learned(&self, orig: &ConnKey, reply: &ConnKey, nat: u8, now: u64) {
        self.created(orig, reply, nat, now)
    }
    /// The connection created with these keys and flags is gone.
    fn removed(&self, orig: &ConnKey, reply: &ConnKey, nat: u8);
    /// The connection with these keys and flags is about to be removed: start fetching
    /// what [`ConnHooks::removed`] will read, in two stages (`stage` 0, then 1 for the
    /// lines that stage 0's lines lead to). For the sweep, which runs each stage over a
    /// whole batch before removing it. By default nothing.
    fn prefetch_removed(&self, _orig: &ConnKey, _reply: &ConnKey, _nat: u8, _stage: u8) {}
    /// The hooks as `Any`, so their installer can find its own again.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Why a new connection was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    ZoneLimit,
    MaxConns,
    TableFull,
    TupleCollision,
    NatExhausted,
}

/// The tracker's verdict on one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtResult {
    pub state: CtState,
    /// The connection the packet belongs (or is related) to, if any.
    pub conn: Option<Hit>,
    /// Set when the packet would have created a connection but it was refused.
    pub refused: Option<Refusal>,
    /// The connection's ALG bits (`conn::ALG_HELPER`, `ALG_RELATED`, `ALG_SKEW`): what
    /// the gateway must do with its payload and sequence numbers.
    pub alg: u8,
}

impl CtResult {
    fn flags(bits: u8) -> CtResult {
        CtResult {
            state: CtState(bits | CtState::TRK),
            conn: None,
            refused: None,
            alg: 0,
        }
    }

    /// True when the packet travels in the reply direction of its connection.
    pub fn is_reply(&self) -> bool {
        self.conn.map(|h| h.dir == DIR_REPLY).unwrap_or(false)
    }
}

/// A consistent copy of one connection, for dumps and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnSnapshot {
    pub idx: u32,
    pub orig: ConnKey,
    pub reply: ConnKey,
    pub expiry: u64,
    pub mark: u32,
    pub label: u128,
    pub nat: u8,
    pub l4: L4State,
    pub timeout_attr: u8,
    /// 0 when created here, else the number of the sync peer it was learned from.
    pub origin: u8,
    /// Learned, and this instance's datapath has forwarded a packet of it
    /// ([`super::conn::FORWARDED`]).
    pub forwarded: bool,
    /// The ALG bits (`conn::ALG_HELPER`, …): the helper of a control connection.
    pub alg: u8,
    /// The parent connection's original key, for a data connection an expectation
    /// created (`dump-conntrack -m` shows it).
    pub parent: Option<ConnKey>,
}

/// The connection tracker, shared by all workers (`&Conntrack` is `Sync`).
pub struct Conntrack {
    table: ConnTable,
    zones: Zones,
    default_policy: TimeoutPolicy,
    max_conns: AtomicU32,
    /// Connections in the table, counted per shard against `max_conns` (exact; see
    /// [`super::credits`]).
    n_conns: Credits,
    tcp_seq_check: AtomicBool,
    counters: Box<[CachePadded<CtCounters>]>,
    workers: usize,
    /// Records of the pool beyond `max_conns` (room for the workers' caches).
    pool_slack: u32,
    next_worker: AtomicUsize,
    pub(crate) sweep_cursor: AtomicUsize,
    /// Set once by the user of the tracker ([`Conntrack::set_hooks`]).
    hooks: std::sync::OnceLock<std::sync::Arc<dyn ConnHooks>>,
    /// The event stream (one ring per shard, the control lcore's last).
    events: Arc<EventHub>,
    /// The `[[alg]]` rules: which new connections get a helper.
    helpers: HelperRules,
    /// Expected data connections (FTP, TFTP).
    pub(crate) exp: ExpTable,
    /// Sequence skews and parents of ALG connections.
    pub(crate) side: AlgSide,
    /// Create a connection an expectation announces even when the caller does not commit
    /// (the gateway's policy: related traffic is admitted); off as in OVS, where the
    /// flow's `ct(commit)` decides.
    pub(crate) commit_related: AtomicBool,
}

impl Conntrack {
    /// Builds a tracker; the record pool and buckets are allocated here, once, on 4 KiB
    /// pages committed as they are first touched.
    pub fn new(cfg: CtConfig) -> Conntrack {
        Conntrack::with_pages(cfg, PageSize::Small)
    }

    /// [`Conntrack::new`] with the buckets and record pool on `pages` (huge pages when
    /// the kernel's hugetlb pool has room for them, else 4 KiB pages;
    /// [`ConnTable::backing`] tells which).
    pub fn with_pages(cfg: CtConfig, pages: PageSize) -> Conntrack {
        let hasher = match cfg.hash_seed {
            Some(s) => KeyHasher::with_seed(s),
            None => KeyHasher::random(),
        };
        let workers = cfg.workers.max(1);
        let capacity = cfg
            .max_conns
            .saturating_add((workers as u32 + 1) * super::table::CACHE_MAX);
        Conntrack {
            // Headroom for the records that sit free in the workers' caches: the limit is
            // kept exactly by `n_conns`, and a free record parked in another worker's cache
            // must never make an insert fail below the limit.
            table: ConnTable::with_pages(capacity, cfg.n_buckets, hasher, pages),
            pool_slack: (workers as u32 + 1) * super::table::CACHE_MAX,
            zones: Zones::new(workers + 1),
            default_policy: TimeoutPolicy::defaults(),
            max_conns: AtomicU32::new(cfg.max_conns),
            n_conns: Credits::new(workers + 1),
            tcp_seq_check: AtomicBool::new(cfg.tcp_seq_check),
            counters: (0..workers + 1).map(|_| CachePadded::default()).collect(),
            workers,
            next_worker: AtomicUsize::new(0),
            sweep_cursor: AtomicUsize::new(0),
            hooks: std::sync::OnceLock::new(),
            events: Arc::new(EventHub::new(workers + 1)),
            helpers: HelperRules::default(),
            exp: ExpTable::new(
                super::alg::EXP_BUCKETS,
                super::alg::EXP_MAX,
                super::alg::EXP_PER_PARENT,
                capacity,
            ),
            side: AlgSide::new(super::alg::SIDE_BUCKETS),
            commit_related: AtomicBool::new(false),
        }
    }

    /// Replaces the helper rules (`[[alg]]`): they apply to connections created from now
    /// on; existing ones keep the helper they got.
    pub fn set_helpers(&self, rules: &[(Helper, u16)]) {
        self.helpers.set(rules);
    }

    /// The helper rules in force.
    pub fn helpers(&self) -> Vec<(Helper, u16)> {
        self.helpers.get()
    }

    /// The installed hooks.
    pub fn hooks(&self) -> Option<&std::sync::Arc<dyn ConnHooks>> {
        self.hooks.get()
    }

    /// Installs the creation/removal hooks (once; a second call is refused with the hooks
    /// given back). Connections that exist already were never announced to them.
    pub fn set_hooks(
        &self,
        hooks: std::sync::Arc<dyn ConnHooks>,
    ) -> Result<(), std::sync::Arc<dyn ConnHooks>> {
        self.hooks.set(hooks)
    }

    /// The table.
    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    /// The connection event stream ([`EventHub::subscribe`] to listen).
    pub fn events(&self) -> &Arc<EventHub> {
        &self.events
    }

    /// The zones.
    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    /// The global default timeout policy (changeable at run time).
    pub fn default_policy(&self) -> &TimeoutPolicy {
        &self.default_policy
    }

    /// A worker handle. Each worker thread takes its own; shard `i < workers` is worker
    /// `i`'s, and one more exists for the control lcore ([`Conntrack::control_handle`]).
    pub fn worker(&self, shard: usize) -> CtWorker<'_> {
        CtWorker {
            ct: self,
            shard: shard.min(self.workers),
            cache: PoolCache::default(),
            reclaim_missed: None,
            timeouts: TimeoutCache::STALE,
        }
    }

    /// The next unused worker handle (round robin over the shards).
    pub fn next_worker(&self) -> CtWorker<'_> {
        let i = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers;
        self.worker(i)
    }

    /// The control lcore's handle (its own counter block and shard).
    pub fn control_handle(&self) -> CtWorker<'_> {
        self.worker(self.workers)
    }

    /// The shard of the control lcore's handles ([`Conntrack::control_handle`]).
    pub fn control_shard(&self) -> usize {
        self.workers
    }

    /// Live connections in the table (including expired, unswept ones).
    pub fn n_conns(&self) -> u32 {
        self.n_conns.count()
    }

    /// The global limit.
    pub fn max_conns(&self) -> u32 {
        self.max_conns.load(Ordering::Relaxed)
    }

    /// Changes the global limit; it cannot exceed the pool allocated at start.
    pub fn set_max_conns(&self, n: u32) -> Result<(), String> {
        let pool = self.table.capacity().saturating_sub(self.pool_slack);
        if n > pool {
            return Err(format!(
                "maxconns {n} exceeds the pre-allocated pool of {pool} connections (restart with a larger max_conns)"
            ));
        }
        self.max_conns.store(n, Ordering::Relaxed);
        // Slots the shards reserved under the old limit must not admit past the new one.
        self.n_conns.collect();
        Ok(())
    }

    /// Whether TCP sequence checking is on.
    pub fn tcp_seq_check(&self) -> bool {
        self.tcp_seq_check.load(Ordering::Relaxed)
    }

    /// Turns TCP sequence checking on or off.
    pub fn set_tcp_seq_check(&self, on: bool) {
        self.tcp_seq_check.store(on, Ordering::Relaxed);
    }

    /// Sum of all counter blocks.
    pub fn counters(&self) -> CtCountersSnapshot {
        let mut s = CtCountersSnapshot::default();
        for c in self.counters.iter() {
            c.add_to(&mut s);
        }
        s
    }

    /// The timeout for `attr` in `zone`, in ms: the zone's override, else the default.
    #[inline]
    pub fn timeout_ms(&self, zone: Option<&Zone>, attr: TimeoutAttr) -> u64 {
        if let Some(z) = zone {
            if let Some(v) = z.policy.get_ms(attr) {
                return v as u64;
            }
        }
        self.default_policy.get_ms(attr).unwrap_or(30_000) as u64
    }

    /// Copies a connection's state (under its lock). `None` if it is not live with `gen`.
    pub fn snapshot(&self, idx: u32, gen: u32) -> Option<ConnSnapshot> {
        let c = self.table.conn(idx);
        c.with_l4(|l4| {
            if !c.is_live(gen) {
                return None;
            }
            Some(ConnSnapshot {
                idx,
                orig: self.table.key(idx, DIR_ORIG),
                reply: self.table.key(idx, DIR_REPLY),
                expiry: c.expiry(),
                mark: c.mark(),
                label: c.label(),
                nat: c.nat_flags(),
                l4: *l4,
                timeout_attr: c.attr(),
                origin: c.origin(),
                forwarded: c.forwarded(),
                alg: c.alg_bits(),
                parent: None,
            })
        })
        .map(|mut s| {
            if s.alg & ALG_RELATED != 0 {
                s.parent = self.side.get(idx, gen).and_then(|e| e.parent);
            }
            s
        })
    }

    /// The record of a hit, if it is still the same live connection.
    #[inline]
    pub fn conn_of(&self, hit: &Hit) -> Option<&Conn> {
        let c = self.table.conn(hit.idx);
        c.is_live(hit.gen).then_some(c)
    }

    /// Removes a connection (idempotent); its record goes to `cache`, or the shared pool.
    /// `ev` names the shard removing it and why, for its `[DESTROY]` event.
    pub(crate) fn remove(
        &self,
        idx: u32,
        gen: u32,
        cache: Option<&mut PoolCache>,
        ev: (usize, DestroyReason),
    ) -> bool {
        if !self.detach(idx, gen, ev) {
            return false;
        }
        let zone_id = self.table.key(idx, DIR_ORIG).zone;
        if let Some(zone) = self.zones.get(zone_id) {
            self.zones.unlink(&self.table, zone, idx);
            zone.count.give(ev.0);
        }
        self.n_conns.give(ev.0);
        self.table.release(idx, cache);
        true
    }

    /// [`Conntrack::remove`] for a batch (the sweep's expired connections), with the same
    /// effects, except that a run of connections in the same zone list leaves it under one
    /// hold of the list's lock: that lock is shared with the worker that links its new
    /// connections into the list, and each handover moved its line between their cores
    /// (a spinning `Zones::link` was 5% of the worker in `datapath --new-flows`). Keeps in
    /// `batch` the connections it removed (those not already gone) and returns how many.
    pub(crate) fn remove_batch(
        &self,
        batch: &mut Vec<(u32, u32)>,
        cache: &mut PoolCache,
        ev: (usize, DestroyReason),
    ) -> usize {
        batch.retain(|&(idx, gen)| self.detach(idx, gen, ev));
        // The counts are given back once per run of a zone and once per batch, not once
        // per connection: each give is a locked instruction, which waits for the stores
        // of the removals before it (the sweep removed 8–11% more a second in interleaved
        // runs, perf/RESULTS.md, session 27). The global count only after the records are
        // back in the pool, so that records in use never outnumber the limit (the pool's
        // headroom is for the workers' caches).
        self.zones
            .unlink_batch(&self.table, batch, |zone, n| zone.count.give_n(ev.0, n));
        for &(idx, _) in batch.iter() {
            self.table.release(idx, Some(cache));
        }
        self.n_conns.give_n(ev.0, batch.len() as u32);
        batch.len()
    }

    /// Starts fetching what the hooks' [`ConnHooks::removed`] will read for the
    /// connection in record `idx` (stage 0 or 1, see [`ConnHooks::prefetch_removed`]).
    pub(crate) fn prefetch_removal_hooks(&self, idx: u32, stage: u8) {
        if let Some(h) = self.hooks.get() {
            let t = &self.table;
            let nat = t.conn(idx).nat_flags();
            if nat != 0 {
                h.prefetch_removed(&t.key(idx, DIR_ORIG), &t.key(idx, DIR_REPLY), nat, stage);
            }
        }
    }

    /// The first half of a removal: takes the connection out of the table (false when it
    /// is not there any more: someone else removed it) and tells the hooks and the event
    /// listeners. The record still holds it (keys, zone list, counts) until released.
    fn detach(&self, idx: u32, gen: u32, ev: (usize, DestroyReason)) -> bool {
        if !self.table.unlink(idx, gen) {
            return false;
        }
        if let Some(h) = self.hooks.get() {
            let c = self.table.conn(idx);
            let t = &self.table;
            h.removed(&t.key(idx, DIR_ORIG), &t.key(idx, DIR_REPLY), c.nat_flags());
        }
        if self.events.enabled() && ev.1 != DestroyReason::Synced {
            // Unlinked but not yet released: the record still holds the connection.
            self.emit(ev.0, EventKind::Destroy, ev.1, idx, gen, 0);
        }
        true
    }

    /// Emits an event about the connection in record `idx` (generation `gen`) into
    /// `shard`'s ring; a full ring counts `events_lost` in the shard's block. Only called
    /// while someone listens.
    #[cold]
    #[inline(never)]
    fn emit(
        &self,
        shard: usize,
        kind: EventKind,
        reason: DestroyReason,
        idx: u32,
        gen: u32,
        now: u64,
    ) {
        let c = self.table.conn(idx);
        let orig = self.table.key(idx, DIR_ORIG);
        let reply = self.table.key(idx, DIR_REPLY);
        let tcp = if orig.proto == crate::wire::parse::proto::TCP {
            c.with_l4(|st| super::l4::tcp::display_state(st) as u8)
        } else {
            0
        };
        let timeout = if kind == EventKind::Destroy {
            0
        } else {
            c.expiry().saturating_sub(now)
        };
        let mut reason = reason;
        let tattr = c.attr();
        if reason == DestroyReason::Expired && tattr == TimeoutAttr::TcpClose as u8 {
            reason = DestroyReason::Closed;
        }
        let e = CtEvent {
            kind,
            reason,
            ts_us: wall_us(),
            id: conn_id(idx, gen),
            orig,
            reply,
            nat: c.nat_flags(),
            tattr,
            assured: c.assured(),
            tcp_state: tcp,
            timeout_ms: timeout,
        };
        let ok = self.events.emit(shard, &e);
        if !ok {
            bump(&self.counters[shard.min(self.workers)].events_lost);
        }
    }

    /// Calls `f` with a snapshot of every connection whose original entry is in buckets
    /// `range` (no lock held while `f` runs; each bucket is read under its seqlock).
    pub fn for_each_conn(&self, range: std::ops::Range<usize>, mut f: impl FnMut(&ConnSnapshot)) {
        let end = range.end.min(self.table.n_buckets());
        for b in range.start..end {
            let mut items: [(u32, u32); 64] = [(0, 0); 64];
            let mut n = 0;
            let mut extra = Vec::new();
            self.table.for_each_in_bucket(b, |idx, gen| {
                if n < items.len() {
                    items[n] = (idx, gen);
                    n += 1;
                } else {
                    extra.push((idx, gen));
                }
            });
            for &(idx, gen) in items[..n].iter().chain(extra.iter()) {
                if let Some(s) = self.snapshot(idx, gen) {
                    f(&s);
                }
            }
        }
    }

    /// For a packet of connection `hit` (travelling in `hit.dir`), the tuple it must carry
    /// after NAT: the reverse of the other direction's key. `None` when the connection has
    /// no NAT (or is gone).
    #[inline]
    pub fn nat_target(&self, hit: &Hit) -> Option<ConnKey> {
        let c = self.conn_of(hit)?;
        if c.nat_flags() == 0 {
            return None;
        }
        let key = self.table.key(hit.idx, hit.dir ^ 1);
        // The slot could have been freed and reused while we read: check again after.
        std::sync::atomic::fence(Ordering::Acquire);
        c.is_live(hit.gen).then(|| key.reversed())
    }

    /// [`Conntrack::nat_target`] of an IPv4 TCP or UDP connection, straight from the
    /// record's two key words (the reverse of the other direction's: addresses and ports
    /// swapped); the per-packet path of NAT (`nat::rewrite::apply`). `None` for every
    /// other connection (IPv6, ICMP and the rest: [`Conntrack::nat_target`] then), or
    /// one without NAT, or gone.
    #[inline(always)]
    pub fn nat_target_v4(&self, hit: &Hit) -> Option<TupleV4> {
        let c = self.conn_of(hit)?;
        if c.nat_flags() == 0 {
            return None;
        }
        let [tail, addrs] = c.short_words(hit.dir ^ 1);
        // The slot could have been freed and reused while we read: check again after.
        std::sync::atomic::fence(Ordering::Acquire);
        let proto = (tail >> 48) as u8;
        let tcp_udp =
            proto == crate::wire::parse::proto::TCP || proto == crate::wire::parse::proto::UDP;
        if tail & KEY_LONG != 0 || !tcp_udp || !c.is_live(hit.gen) {
            return None;
        }
        // A short key's words (conn.rs `short_key`): the tail packs sport, dport, zone,
        // protocol and family from bit 0 up, the address word is src | dst << 32, each
        // address's 4 bytes in memory order.
        Some(TupleV4 {
            src: ((addrs >> 32) as u32).to_ne_bytes(),
            dst: (addrs as u32).to_ne_bytes(),
            sport: (tail >> 16) as u16,
            dport: tail as u16,
            proto,
        })
    }

    /// All connections (for tests and small dumps), in bucket order.
    pub fn all_conns(&self) -> Vec<ConnSnapshot> {
        let mut v = Vec::new();
        self.for_each_conn(0..self.table.n_buckets(), |s| v.push(*s));
        v
    }
}

/// A worker's handle on the tracker: its pool cache, shard and counters.
pub struct CtWorker<'a> {
    ct: &'a Conntrack,
    shard: usize,
    cache: PoolCache,
    /// The zone whose last reclaim walk found nothing expired (by address: a zone's
    /// record is never freed), and the clock (ms) it ran at: until the clock moves on,
    /// that zone is not walked again (see [`CtWorker::reclaim`]).
    reclaim_missed: Option<(usize, u64)>,
    timeouts: TimeoutCache,
}

/// A worker's copy of the timeouts of the zone it tracked last (each the zone's override,
/// else the default: [`Conntrack::timeout_ms`]), taken when the policies' change count
/// ([`timeouts::changes`]) was `changes`. A packet that refreshes its connection's expiry
/// reads the count and its timeout from here (the zone's record and two policies,
/// ~20 instructions, before); a packet of another zone, or after a change, takes the
/// copy again.
struct TimeoutCache {
    changes: u64,
    zone: u16,
    ms: [u32; N_ATTRS],
}

impl TimeoutCache {
    /// A copy that no count matches: the first packet takes it.
    const STALE: TimeoutCache = TimeoutCache {
        changes: u64::MAX,
        zone: 0,
        ms: [0; N_ATTRS],
    };
}

impl Drop for CtWorker<'_> {
    fn drop(&mut self) {
        self.ct.table.drain_cache(&mut self.cache);
    }
}

/// A packet prepared for [`CtWorker::process_burst`].
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta {
    pub parsed: ParsedPacket,
    pub zone: u16,
    /// Create a connection if the packet starts one (OVS `ct(commit)`).
    pub commit: bool,
    /// Index into the `nat` slice given to [`CtWorker::process_burst_nat`]: the NAT to apply
    /// if the packet creates a connection.
    pub nat: Option<u16>,
    /// Output: the tracker's verdict.
    pub result: CtResult,
    /// Set by the first pass of a burst: an ordinary packet, with `words`/`hash` computed.
    plain: bool,
    /// Set by the second pass: no entry of the packet's bucket matches, it likely creates a
    /// connection (with the NAT `nat`, whose state the third pass prefetches).
    fresh: bool,
    /// Left out of the burst ([`PacketMeta::skip`]): not tracked, `result` untouched.
    skipped: bool,
    words: [u64; KEY_WORDS],
    hash: u64,
    /// Set by the second pass: the bucket slot the lookup tries first.
    hint: Candidate,
}

impl PacketMeta {
    /// Re-initialises a meta in place for another packet (bursts reuse their metas: no
    /// 180-byte copy per packet).
    #[inline(always)]
    pub fn reset(&mut self, parsed: &ParsedPacket, zone: u16, commit: bool) {
        self.parsed = *parsed;
        self.prepare(zone, commit, None);
    }

    /// Prepares a meta whose `parsed` was written in place (by
    /// [`crate::wire::parse::parse_frame_into`]) for tracking in `zone`, with `nat` as in
    /// [`PacketMeta::nat`]. Bursts reuse their metas, and parsing straight into them
    /// saves copying the parsed packet per packet.
    #[inline(always)]
    pub fn prepare(&mut self, zone: u16, commit: bool, nat: Option<u16>) {
        self.zone = zone;
        self.commit = commit;
        self.nat = nat;
        self.result = CtResult::default();
        self.hash = 0;
        self.hint = Candidate::SCAN;
        self.plain = false;
        self.fresh = false;
        self.skipped = false;
    }

    /// Leaves this packet out of the burst it is in: the tracker does not look at it and
    /// leaves `result` as it is. Undone by [`PacketMeta::prepare`]/[`PacketMeta::reset`].
    #[inline(always)]
    pub fn skip(&mut self) {
        self.skipped = true;
    }

    /// A packet to track in `zone`.
    pub fn new(parsed: ParsedPacket, zone: u16, commit: bool) -> PacketMeta {
        PacketMeta {
            parsed,
            zone,
            commit,
            nat: None,
            result: CtResult::default(),
            words: [0; KEY_WORDS],
            hash: 0,
            plain: false,
            fresh: false,
            hint: Candidate::SCAN,
            skipped: false,
        }
    }
}

/// The NAT flag a packet carries (OVS `nat_packet`): the translation applied to *this*
/// packet. In the reply direction SNAT is undone by rewriting the destination (`dnat`) and
/// DNAT by rewriting the source (`snat`); a connection with both shows `snat` only, in
/// both directions.
#[inline(always)]
pub fn packet_nat_bits(conn_nat: u8, reply: bool) -> u8 {
    // Only the connection's SNAT and DNAT bits (the top two) count.
    const { assert!(CtState::SNAT == 0x40 && CtState::DNAT == 0x80) };
    NAT_BITS[usize::from(conn_nat >> 6) | usize::from(reply) << 2]
}

/// [`packet_nat_bits`] of every (SNAT/DNAT bits, direction), built from the rule
/// ([`nat_bits_rule`]) at compile time: one load a packet instead of the rule's branches.
const NAT_BITS: [u8; 8] = {
    let mut t = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        t[i] = nat_bits_rule(((i & 3) as u8) << 6, i & 4 != 0);
        i += 1;
    }
    t
};

/// The rule of [`packet_nat_bits`].
const fn nat_bits_rule(conn_nat: u8, reply: bool) -> u8 {
    let f = if reply {
        (if conn_nat & CtState::SNAT != 0 {
            CtState::DNAT
        } else {
            0
        }) | (if conn_nat & CtState::DNAT != 0 {
            CtState::SNAT
        } else {
            0
        })
    } else {
        conn_nat
    };
    if f & CtState::SNAT != 0 {
        CtState::SNAT
    } else {
        f & CtState::DNAT
    }
}

/// What the caller asks for one packet.
#[derive(Clone, Copy)]
pub(crate) struct Request<'n> {
    pub(crate) zone: u16,
    /// Create the connection if the packet starts one.
    pub(crate) commit: bool,
    /// NAT for a connection the packet creates.
    pub(crate) nat: Option<&'n dyn ReplyTuples>,
}

/// The key search a packet needs.
enum Lookup {
    /// Fragment: not tracked.
    Fragment,
    /// An ICMP query with a non-zero code: not tracked.
    BadIcmpCode,
    /// ICMP error: look up the embedded packet's connection (`key` is already reversed to
    /// the error's own direction); `None` when the embedded packet is unusable.
    Related(Option<ConnKey>),
    /// Ordinary packet.
    Plain,
}

/// `classify(p, zone)` is [`Lookup::Plain`], without building the lookup of an ICMP
/// error for the other packets (a fragment is never plain, a TCP/UDP/SCTP/other one
/// always is).
#[inline(always)]
fn is_plain(p: &ParsedPacket, zone: u16) -> bool {
    match p.l4 {
        L4Summary::Icmp(_) => matches!(classify(p, zone), Lookup::Plain),
        _ => p.fragment == Fragment::None,
    }
}

fn classify(p: &ParsedPacket, zone: u16) -> Lookup {
    if p.fragment != Fragment::None {
        return Lookup::Fragment;
    }
    if let L4Summary::Icmp(i) = &p.l4 {
        // ICMP queries (echo, timestamp, information and their replies) with a non-zero
        // code are not trackable (OVS extract_l4_icmp/extract_l4_icmp6).
        let query = if p.proto == crate::wire::parse::proto::ICMP {
            matches!(i.icmp_type, 0 | 8 | 13 | 14 | 15 | 16)
        } else {
            matches!(i.icmp_type, 128 | 129)
        };
        if query && i.code != 0 {
            return Lookup::BadIcmpCode;
        }
        if i.is_error {
            let key = i.inner.and_then(|inner| {
                // The embedded packet was sent to the error's sender by the error's
                // receiver: its source must be our destination.
                (inner.family == p.family && inner.src == p.dst)
                    .then(|| ConnKey::from_inner(&inner, zone).reversed())
            });
            return Lookup::Related(key);
        }
    }
    Lookup::Plain
}

impl<'a> CtWorker<'a> {
    /// The tracker.
    pub fn tracker(&self) -> &'a Conntrack {
        self.ct
    }

    /// This handle's shard index.
    pub fn shard(&self) -> usize {
        self.shard
    }

    #[inline(always)]
    pub(crate) fn counters(&self) -> &'a CtCounters {
        &self.ct.counters[self.shard]
    }

    /// Tracks one packet (the single-packet API; the burst API does the same with the
    /// table accesses of the whole burst overlapped).
    pub fn process(&mut self, p: &ParsedPacket, zone: u16, commit: bool, now: u64) -> CtResult {
        let mut m = PacketMeta::new(*p, zone, commit);
        self.process_burst(std::slice::from_mut(&mut m), now);
        m.result
    }

    /// [`CtWorker::process`] with a NAT for the connection the packet may create.
    pub fn process_nat(
        &mut self,
        p: &ParsedPacket,
        zone: u16,
        commit: bool,
        nat: &dyn ReplyTuples,
        now: u64,
    ) -> CtResult {
        let mut m = PacketMeta::new(*p, zone, commit);
        m.nat = Some(0);
        self.process_burst_nat(std::slice::from_mut(&mut m), &[nat], now);
        m.result
    }

    /// Tracks a burst without NAT.
    pub fn process_burst(&mut self, pkts: &mut [PacketMeta], now: u64) {
        self.process_burst_nat(pkts, &[], now)
    }

    /// Tracks a burst: computes every key and hash first and prefetches their buckets,
    /// then prefetches the likely records, then resolves each packet in order. A packet
    /// that creates a connection gets the NAT `nat[m.nat]`, if set.
    pub fn process_burst_nat(
        &mut self,
        pkts: &mut [PacketMeta],
        nat: &[&dyn ReplyTuples],
        now: u64,
    ) {
        let table = &self.ct.table;
        for m in pkts.iter_mut() {
            m.plain = !m.skipped && is_plain(&m.parsed, m.zone);
            if m.plain {
                let k = ConnKey::from_packet(&m.parsed, m.zone);
                m.words = k.to_words();
                m.hash = table.hasher().hash_words(&m.words);
                table.prefetch_bucket(m.hash);
            }
        }
        if pkts.len() > 1 {
            let mut nat_fresh = false;
            for m in pkts.iter_mut() {
                m.fresh = false;
                if !m.plain {
                    continue;
                }
                m.hint = table.prefetch_candidate(m.hash, m.parsed.proto == proto::TCP);
                m.fresh = !m.hint.likely_present() && m.commit;
                if m.fresh {
                    // Likely a new connection: start fetching the bucket of its reply key
                    // (its NAT's likely first candidate), which the creation checks and
                    // inserts into: a miss of its own at scale, half the creation's stall
                    // when left to the insert. Untranslated, the reply key is the original
                    // reversed, in the bucket just fetched (symmetric hash), but for ICMP
                    // (another type).
                    let orig = ConnKey::from_words(&m.words);
                    let reply = match m.nat.and_then(|i| nat.get(i as usize)) {
                        Some(spec) => {
                            nat_fresh = true;
                            spec.hint(&orig)
                        }
                        None if is_icmp(orig.proto) => Some(orig.reversed()),
                        None => None,
                    };
                    if let Some(reply) = reply {
                        table.prefetch_bucket(table.hasher().hash_words(&reply.to_words()));
                    }
                }
            }
            if nat_fresh {
                // The NAT's state behind the lines its hint fetched (the inside endpoint's
                // mapping record: one miss per new connection at scale, 17% of the worker
                // in `datapath --new-flows` when left to the creation).
                for m in pkts.iter() {
                    if let Some(spec) = m.nat.and_then(|i| nat.get(i as usize)).filter(|_| m.fresh)
                    {
                        spec.prefetch_state(&ConnKey::from_words(&m.words));
                    }
                }
            }
        }
        for m in pkts.iter_mut() {
            if m.plain {
                // The common case: classified in the first pass, no copy of the packet.
                let req = Request {
                    zone: m.zone,
                    commit: m.commit,
                    nat: m.nat.and_then(|i| nat.get(i as usize).copied()),
                };
                let key = (&m.words, m.hash, m.hint);
                self.resolve_into(&m.parsed, &req, key, now, &mut m.result);
                continue;
            }
            if m.skipped {
                continue;
            }
            m.result = match classify(&m.parsed, m.zone) {
                Lookup::Fragment => {
                    bump(&self.counters().invalid_fragment);
                    CtResult::flags(CtState::INV)
                }
                Lookup::BadIcmpCode => {
                    bump(&self.counters().invalid_new);
                    CtResult::flags(CtState::INV)
                }
                Lookup::Related(key) => self.related(key, now),
                // Classified as plain in the first pass: handled above.
                Lookup::Plain => continue,
            };
        }
    }

    /// An ICMP error: RELATED (+reply) to the connection of its embedded packet, else
    /// invalid. It never creates a connection nor refreshes one.
    fn related(&mut self, key: Option<ConnKey>, now: u64) -> CtResult {
        if let Some(k) = key {
            let w = k.to_words();
            let h = self.ct.table.hasher().hash_words(&w);
            if let Some(hit) = self.ct.table.lookup(&w, h, now) {
                let c = self.ct.table.conn(hit.idx);
                let reply = hit.dir == DIR_REPLY;
                let mut bits = CtState::REL | packet_nat_bits(c.nat_flags(), reply);
                if reply {
                    bits |= CtState::RPL;
                }
                let mut r = CtResult::flags(bits);
                r.conn = Some(hit);
                return r;
            }
        }
        bump(&self.counters().invalid_icmp_unrelated);
        CtResult::flags(CtState::INV)
    }

    /// Looks up a packet's key, updates its connection, or creates one.
    pub(crate) fn resolve(
        &mut self,
        p: &ParsedPacket,
        req: &Request,
        words: &[u64; KEY_WORDS],
        hash: u64,
        now: u64,
    ) -> CtResult {
        let mut r = CtResult::default();
        self.resolve_into(p, req, (words, hash, Candidate::SCAN), now, &mut r);
        r
    }

    /// [`CtWorker::resolve`] writing into `out`, the packet's meta in the burst loop.
    ///
    /// Inlined into the burst loop, and a connection's packet has its result written
    /// field by field straight into `out`: a result built on the stack and then copied
    /// was read back (16 bytes at a time) right after its narrower stores, a
    /// store-forwarding stall per packet (`ctgate-perf step`: 15% of the burst loop's
    /// samples on that load). The rare outcomes (miss, recreate) are copied whole.
    #[inline(always)]
    pub(crate) fn resolve_into(
        &mut self,
        p: &ParsedPacket,
        req: &Request,
        (words, hash, hint): (&[u64; KEY_WORDS], u64, Candidate),
        now: u64,
        out: &mut CtResult,
    ) {
        let kind = L4Kind::of(p.proto);
        let seq_check = self.ct.tcp_seq_check();
        for attempt in 0..4 {
            // The burst's hint on the first attempt only: a retry scans the bucket.
            let hint = if attempt == 0 { hint } else { Candidate::SCAN };
            let Some(hit) = self.ct.table.lookup_hinted(words, hash, hint, now) else {
                self.miss(p, kind, req, words, hash, now, out);
                return;
            };
            let c = self.ct.table.conn(hit.idx);
            let reply = hit.dir == DIR_REPLY;
            // A packet that changes nothing (the steady packets of UDP, ICMP and other
            // protocols' connections) is answered without the lock; the others update
            // under it.
            let steady = c
                .peek_proto_state(hit.gen)
                .and_then(|ps| kind.steady(p, ps, reply))
                .filter(|(_, tattr)| tattr.is_none_or(|a| c.attr_is(a)));
            let upd = match steady {
                Some((res, tattr)) => Some((res, tattr, false)),
                None => c.with_l4(|st| {
                    if !c.is_live(hit.gen) {
                        return None;
                    }
                    let (res, tattr) = kind.update(p, st, reply, seq_check);
                    // Under the lock, so that one packet only sees each change.
                    let update = tattr.is_some_and(|a| c.set_attr(a));
                    Some((res, tattr, update))
                }),
            };
            let Some((res, tattr, update)) = upd else {
                bump(&self.counters().lookup_retries);
                continue;
            };
            if let Some(a) = tattr {
                c.refresh_expiry(now + self.timeout(req.zone, a));
            }
            if update && self.ct.events.enabled() {
                self.ct.emit(
                    self.shard,
                    EventKind::Update,
                    DestroyReason::None,
                    hit.idx,
                    hit.gen,
                    now,
                );
            }
            if matches!(res, UpdateResult::Valid | UpdateResult::ValidNew) {
                // A learned connection forwarded here is ours too (learn.rs).
                c.forwarded_here();
            }
            let nb = c.nat.load(Ordering::Relaxed);
            // A connection an expectation created stays RELATED on every packet, as OVS
            // shows it (`conn->alg_related`).
            let nat = packet_nat_bits(nb & NAT_MASK, reply)
                | if nb & ALG_RELATED != 0 {
                    CtState::REL
                } else {
                    0
                };
            let bits = match res {
                UpdateResult::Valid => CtState::EST | nat | if reply { CtState::RPL } else { 0 },
                UpdateResult::ValidNew => CtState::NEW | nat,
                UpdateResult::Invalid => {
                    // The packet stays attached to its connection (and is translated like
                    // its other packets if the policy forwards it), as in OVS.
                    bump(&self.counters().invalid_tcp);
                    CtState::INV | nat
                }
                UpdateResult::Recreate => {
                    // TCP port reuse: the old connection goes, the SYN starts a new one.
                    let ev = (self.shard, DestroyReason::Closed);
                    if self.ct.remove(hit.idx, hit.gen, Some(&mut self.cache), ev) {
                        bump(&self.counters().removed);
                    }
                    self.miss(p, kind, req, words, hash, now, out);
                    return;
                }
            };
            out.state = CtState(bits | CtState::TRK);
            out.conn = Some(hit);
            out.refused = None;
            out.alg = nb & !NAT_MASK;
            return;
        }
        // The record kept changing under us: treat the packet as untrackable this time.
        *out = CtResult::flags(CtState::INV);
    }

    /// The timeout of `a` in `zone` ([`Conntrack::timeout_ms`]), from the worker's copy
    /// ([`TimeoutCache`]).
    #[inline(always)]
    fn timeout(&mut self, zone: u16, a: TimeoutAttr) -> u64 {
        let changes = timeouts::changes();
        if changes != self.timeouts.changes || zone != self.timeouts.zone {
            self.take_timeouts(changes, zone);
        }
        u64::from(self.timeouts.ms[a as usize])
    }

    /// Takes the copy of `zone`'s timeouts, as they are at the change count `changes`
    /// (read before them).
    #[cold]
    #[inline(never)]
    fn take_timeouts(&mut self, changes: u64, zone: u16) {
        let z = self.ct.zones.get(zone);
        for a in TimeoutAttr::ALL {
            // Timeouts are u32 milliseconds in the policies.
            self.timeouts.ms[a as usize] = self.ct.timeout_ms(z, a) as u32;
        }
        self.timeouts.zone = zone;
        self.timeouts.changes = changes;
    }

    /// No live connection has the packet's key.
    #[allow(clippy::too_many_arguments)]
    fn miss(
        &mut self,
        p: &ParsedPacket,
        kind: L4Kind,
        req: &Request,
        words: &[u64; KEY_WORDS],
        hash: u64,
        now: u64,
        out: &mut CtResult,
    ) {
        if !kind.valid_new(p) {
            bump(&self.counters().invalid_new);
            *out = CtResult::flags(CtState::INV);
            return;
        }
        if !self.ct.exp.is_empty() {
            if let Some(r) = self.miss_related(p, kind, req, words, hash, now) {
                *out = r;
                return;
            }
        }
        *out = CtResult::flags(CtState::NEW);
        if !req.commit {
            return;
        }
        let orig = ConnKey::from_words(words);
        let created = match req.nat {
            None => self.create(p, kind, &orig, hash, &orig.reversed(), 0, now),
            Some(n) => self.create_nat(p, kind, &orig, hash, n, now),
        };
        // Written field by field into the packet's meta, like a hit's result: a result
        // returned by value was copied there 16 bytes at a time right after its narrower
        // stores (a store-forwarding stall per new connection: 9% of the burst loop's
        // samples in `ctgate-perf core --only create`).
        match created {
            Ok(hit) => {
                let c = self.ct.table.conn(hit.idx);
                out.state.0 |= packet_nat_bits(c.nat_flags(), false);
                out.alg = c.alg_bits();
                out.conn = Some(hit);
            }
            Err(CreateError::Exists(_)) => {
                // Another worker created it between our lookup and insert: process the
                // packet as part of that connection (without committing again, so this
                // cannot loop).
                let again = Request {
                    commit: false,
                    nat: None,
                    ..*req
                };
                self.resolve_into(p, &again, (words, hash, Candidate::SCAN), now, out)
            }
            Err(CreateError::Refused(why)) => out.refused = Some(why),
        }
    }

    /// Reserves a slot in the zone and under the global limit, reclaiming expired
    /// connections of the zone once if either is full. Both counts are this shard's
    /// ([`super::credits`]): no line other workers write is written here, as a rule.
    fn admit(&mut self, zone: &Zone, now: u64) -> Result<(), Refusal> {
        for attempt in 0..2 {
            let limit = self.ct.zones.effective_limit(zone);
            if !zone.count.take(self.shard, limit) {
                if attempt == 0 && self.reclaim(zone, now) > 0 {
                    continue;
                }
                return Err(Refusal::ZoneLimit);
            }
            if !self.ct.n_conns.take(self.shard, Some(self.ct.max_conns())) {
                zone.count.give(self.shard);
                if attempt == 0 && self.reclaim(zone, now) > 0 {
                    continue;
                }
                return Err(Refusal::MaxConns);
            }
            return Ok(());
        }
        Err(Refusal::ZoneLimit)
    }

    fn unadmit(&self, zone: &Zone) {
        zone.count.give(self.shard);
        self.ct.n_conns.give(self.shard);
    }

    /// Removes expired connections of `zone` (bounded work, see [`super::zones`]).
    ///
    /// A walk that found nothing is not repeated for the zone within the same
    /// millisecond of the clock: a table full of live connections (a flood at the limit)
    /// would otherwise cost every refused creation a walk of up to
    /// [`super::zones::RECLAIM_BUDGET`] records per shard, a pointer chase that moves
    /// them to the tail (about 1 µs at 500k live connections against about 0.1 µs for
    /// the refusal itself: `ctgate-perf core --only refuse`), and the
    /// worker would slow down for every packet it carries. With this, one walk per
    /// millisecond and zone at most is spent on a zone that has nothing to give.
    fn reclaim(&mut self, zone: &Zone, now: u64) -> usize {
        let id = std::ptr::from_ref(zone) as usize;
        if self.reclaim_missed == Some((id, now)) {
            return 0;
        }
        let mut cand = [Hit {
            idx: 0,
            dir: 0,
            gen: 0,
        }; 32];
        let n = self
            .ct
            .zones
            .expired_candidates(&self.ct.table, zone, self.shard, now, &mut cand);
        let mut removed = 0;
        for h in &cand[..n] {
            let ev = (self.shard, DestroyReason::Reclaimed);
            if self.ct.remove(h.idx, h.gen, Some(&mut self.cache), ev) {
                removed += 1;
                bump(&self.counters().reclaimed);
            }
        }
        self.reclaim_missed = (removed == 0).then_some((id, now));
        removed
    }

    /// Creates a connection with the given keys (`reply` is the reversed original, or the
    /// NAT-translated tuple) and NAT flags. The record is fully initialised before it is
    /// published, so no reader ever sees a half-made connection.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        &mut self,
        p: &ParsedPacket,
        kind: L4Kind,
        orig: &ConnKey,
        orig_hash: u64,
        reply: &ConnKey,
        nat: u8,
        now: u64,
    ) -> Result<Hit, CreateError> {
        let reply_hash = self.ct.table.hasher().hash_words(&reply.to_words());
        self.create_counted(p, kind, orig, orig_hash, reply, reply_hash, nat, now, true)
    }

    /// [`CtWorker::create`]; `count_collision` says whether a taken reply key is counted
    /// as a refusal (NAT probing counts only its final outcome).
    #[allow(clippy::too_many_arguments)]
    fn create_counted(
        &mut self,
        p: &ParsedPacket,
        kind: L4Kind,
        orig: &ConnKey,
        orig_hash: u64,
        reply: &ConnKey,
        reply_hash: u64,
        nat: u8,
        now: u64,
        count_collision: bool,
    ) -> Result<Hit, CreateError> {
        let ct = self.ct;
        let init = |c: &Conn, zone: &Zone| {
            let tattr = c.init_l4(|st| kind.new_conn(p, st));
            c.expiry
                .store(now + ct.timeout_ms(Some(zone), tattr), Ordering::Relaxed);
            c.tattr.store(tattr as u8, Ordering::Relaxed);
            c.set_mark(0);
            c.set_label(0);
            c.origin.store(0, Ordering::Relaxed);
        };
        let hashes = (orig_hash, reply_hash);
        self.insert_new(orig, reply, hashes, nat, now, count_collision, false, init)
    }

    /// Takes a record, initialises it with `init` and publishes it under both keys, with
    /// the zone and global limits and the pool of a packet-made connection. A `learned`
    /// one (from a sync peer) is not counted as created and emits no event; the hooks are
    /// told of both (of a learned one as [`ConnHooks::learned`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_new(
        &mut self,
        orig: &ConnKey,
        reply: &ConnKey,
        (orig_hash, reply_hash): (u64, u64),
        nat: u8,
        now: u64,
        count_collision: bool,
        learned: bool,
        init: impl FnOnce(&Conn, &Zone),
    ) -> Result<Hit, CreateError> {
        let zone = self.ct.zones.get_or_create(orig.zone);
        let counters = self.counters();
        if let Err(why) = self.admit(zone, now) {
            bump(match why {
                Refusal::ZoneLimit => &counters.refused_zone_limit,
                _ => &counters.refused_max_conns,
            });
            return Err(CreateError::Refused(why));
        }
        let Some(idx) = self.ct.table.alloc(&mut self.cache) else {
            self.unadmit(zone);
            bump(&counters.refused_table_full);
            return Err(CreateError::Refused(Refusal::TableFull));
        };
        self.ct.table.set_keys(idx, orig, reply);
        let c = self.ct.table.conn(idx);
        init(c, zone);
        // The helper of a control connection, from the `[[alg]]` rules (a data
        // connection, ALG_RELATED, gets none: it is not a control connection).
        let helper = if nat & ALG_RELATED == 0 {
            self.ct.helpers.lookup(orig.proto, orig.dport)
        } else {
            0
        };
        c.nat.store(nat | helper, Ordering::Relaxed);
        let nat = nat & NAT_MASK;
        let gen = c.gen();
        self.ct.zones.link(&self.ct.table, zone, self.shard, idx);
        match self.ct.table.insert_hashed(
            idx,
            &orig.to_words(),
            orig_hash,
            &reply.to_words(),
            reply_hash,
            now,
        ) {
            Ok(()) => {
                if !learned {
                    bump(&counters.created);
                }
                if let Some(h) = self.ct.hooks.get() {
                    if learned {
                        h.learned(orig, reply, nat, now);
                    } else {
                        h.created(orig, reply, nat, now);
                    }
                }
                if !learned && self.ct.events.enabled() {
                    let ev = (EventKind::New, DestroyReason::None);
                    self.ct.emit(self.shard, ev.0, ev.1, idx, gen, now);
                }
                Ok(Hit {
                    idx,
                    dir: DIR_ORIG,
                    gen,
                })
            }
            Err(e) => {
                self.ct.zones.unlink(&self.ct.table, zone, idx);
                self.ct.table.release(idx, Some(&mut self.cache));
                self.unadmit(zone);
                match e {
                    InsertError::Exists(h) => Err(CreateError::Exists(h)),
                    InsertError::ReplyTaken => {
                        if count_collision {
                            bump(&counters.refused_tuple_collision);
                        }
                        Err(CreateError::Refused(Refusal::TupleCollision))
                    }
                    InsertError::NoSpace => {
                        bump(&counters.refused_table_full);
                        Err(CreateError::Refused(Refusal::TableFull))
                    }
                }
            }
        }
    }

    /// Creates a NATed connection: walks the candidate reply keys, skipping those a
    /// lock-free lookup finds taken, and inserts the first free one (the insert re-checks it
    /// under both bucket locks; a lost race moves on to the next candidate).
    ///
    /// When the NAT offers no candidate at all, its own state may be full of the
    /// mappings of expired connections the sweep has not reached yet (with SNAT mappings
    /// and one inside endpoint per connection, as clients' ephemeral ports make, the
    /// mapping table fills together with the tracker): the zone's expired connections
    /// are reclaimed, which releases their mappings, and the candidates are asked once
    /// more, as [`CtWorker::admit`] does at the tracker's own limits.
    fn create_nat(
        &mut self,
        p: &ParsedPacket,
        kind: L4Kind,
        orig: &ConnKey,
        orig_hash: u64,
        nat: &dyn ReplyTuples,
        now: u64,
    ) -> Result<Hit, CreateError> {
        let flags = nat.flags(orig);
        for attempt in 0..2 {
            let mut n = 0;
            while let Some(reply) = nat.candidate(orig, n) {
                n += 1;
                // One hash per candidate, for the pre-check and the insert.
                let words = reply.to_words();
                let hash = self.ct.table.hasher().hash_words(&words);
                // The first candidate goes straight to the insert, which checks it under
                // the bucket locks anyway: it is nearly always free (the source port
                // kept, or the mapping's), and a NAT mapping offers no other. The
                // lock-free pre-check skips taken ones cheaply on a walk through a range.
                if n > 1 && !self.ct.table.key_free(&words, hash, now) {
                    continue;
                }
                match self.create_counted(p, kind, orig, orig_hash, &reply, hash, flags, now, false)
                {
                    Err(CreateError::Refused(Refusal::TupleCollision)) => continue,
                    other => return other,
                }
            }
            if n > 0 || attempt > 0 {
                break;
            }
            let zone = self.ct.zones.get_or_create(orig.zone);
            if self.reclaim(zone, now) == 0 {
                break;
            }
        }
        bump(&self.counters().nat_exhausted);
        Err(CreateError::Refused(Refusal::NatExhausted))
    }

    /// Removes a connection (flush); idempotent.
    pub fn remove(&mut self, hit: &Hit) -> bool {
        let ev = (self.shard, DestroyReason::Flushed);
        let ok = self.ct.remove(hit.idx, hit.gen, Some(&mut self.cache), ev);
        if ok {
            bump(&self.counters().removed);
        }
        ok
    }

    /// Sets the mark and label of a connection (kept for its life).
    pub fn set_mark_label(&self, hit: &Hit, mark: Option<u32>, label: Option<u128>) -> bool {
        let Some(c) = self.ct.conn_of(hit) else {
            return false;
        };
        if let Some(m) = mark {
            c.set_mark(m);
        }
        if let Some(l) = label {
            c.set_label(l);
        }
        true
    }

    pub(crate) fn count_expired(&self, n: u64) {
        super::stats::add(&self.counters().expired, n);
    }

    pub(crate) fn cache(&mut self) -> &mut PoolCache {
        &mut self.cache
    }
}

/// Why [`CtWorker::create`] did not create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateError {
    /// Another worker created the same connection first.
    Exists(Hit),
    Refused(Refusal),
}

/// The tracker's `Arc` together with a [`CtWorker`] that borrows it (a self-referential
/// pair, built and borrowed through `self_cell`'s safe API).
type BorrowedCtWorker<'a> = CtWorker<'a>;

self_cell::self_cell!(
    struct OwnedWorkerCell {
        owner: Arc<Conntrack>,
        #[covariant]
        dependent: BorrowedCtWorker,
    }
);

/// A worker handle that owns a share of the tracker, for worker threads that must be
/// `'static` (DPDK lcores). It offers the same operations as [`CtWorker`].
pub struct OwnedCtWorker {
    // The worker is dropped (returning its cached records) before the `Arc` it borrows.
    cell: OwnedWorkerCell,
}

impl OwnedCtWorker {
    /// A handle on shard `shard` of `ct` (see [`Conntrack::worker`]).
    pub fn new(ct: Arc<Conntrack>, shard: usize) -> OwnedCtWorker {
        OwnedCtWorker {
            cell: OwnedWorkerCell::new(ct, |ct| ct.worker(shard)),
        }
    }

    /// The tracker.
    pub fn tracker(&self) -> &Conntrack {
        self.cell.borrow_owner()
    }

    /// See [`CtWorker::process`].
    pub fn process(&mut self, p: &ParsedPacket, zone: u16, commit: bool, now: u64) -> CtResult {
        self.cell
            .with_dependent_mut(|_, w| w.process(p, zone, commit, now))
    }

    /// See [`CtWorker::process_nat`].
    pub fn process_nat(
        &mut self,
        p: &ParsedPacket,
        zone: u16,
        commit: bool,
        nat: &dyn ReplyTuples,
        now: u64,
    ) -> CtResult {
        self.cell
            .with_dependent_mut(|_, w| w.process_nat(p, zone, commit, nat, now))
    }

    /// See [`CtWorker::process_burst_nat`].
    pub fn process_burst_nat(
        &mut self,
        pkts: &mut [PacketMeta],
        nat: &[&dyn ReplyTuples],
        now: u64,
    ) {
        self.cell
            .with_dependent_mut(|_, w| w.process_burst_nat(pkts, nat, now))
    }

    /// See [`CtWorker::remove`].
    pub fn remove(&mut self, hit: &Hit) -> bool {
        self.cell.with_dependent_mut(|_, w| w.remove(hit))
    }

    /// See [`CtWorker::set_mark_label`].
    pub fn set_mark_label(&self, hit: &Hit, mark: Option<u32>, label: Option<u128>) -> bool {
        self.cell
            .borrow_dependent()
            .set_mark_label(hit, mark, label)
    }

    /// Runs `f` on the borrowed worker: for the operations other files add to
    /// [`CtWorker`] (the sweep, `learn`), so that this file need not import them.
    pub fn with_worker<R>(&mut self, f: impl FnOnce(&mut CtWorker<'_>) -> R) -> R {
        self.cell.with_dependent_mut(|_, w| f(w))
    }
}

#[cfg(test)]
mod nat_bits_tests {
    use super::*;

    /// The table answers as the rule for every NAT byte a record can hold and both
    /// directions (other bits than SNAT/DNAT ignored).
    #[test]
    fn packet_nat_bits_follow_the_rule_for_every_byte_and_direction() {
        for nat in 0..=u8::MAX {
            for reply in [false, true] {
                assert_eq!(
                    packet_nat_bits(nat, reply),
                    nat_bits_rule(nat, reply),
                    "{nat:#04x} {reply}"
                );
            }
        }
        // The rule itself, as OVS shows it: a reply undoes SNAT by DNAT and the reverse;
        // both show SNAT.
        let (s, d) = (CtState::SNAT, CtState::DNAT);
        assert_eq!(nat_bits_rule(s, true), d);
        assert_eq!(nat_bits_rule(d, true), s);
        assert_eq!(nat_bits_rule(s | d, false), s);
        assert_eq!(nat_bits_rule(s | d, true), s);
        assert_eq!(nat_bits_rule(0, true), 0);
    }
}
