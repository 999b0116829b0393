//! NAT mappings (RFC 4787 §4, RFC 5382 §5): which outside endpoint (pool address and port)
//! an inside endpoint (address and port, per zone and protocol) is translated to, kept
//! apart from the connections that use it.
//!
//! With mappings, the SNAT of TCP and UDP is endpoint-independent by construction
//! (RFC 4787 REQ-1, RFC 5382 REQ-1): an inside endpoint's first connection picks its
//! outside endpoint (keeping the port when free, as [`super::NatSpec`] does), and every
//! later connection of the same inside endpoint, to any destination, gets the same one
//! while the mapping lives. An outside endpoint belongs to one inside endpoint at a time,
//! so no other inside host can hold that port for another destination. The table also
//! answers the reverse question (which inside endpoint is behind an outside endpoint) for
//! hairpinning and for endpoint-independent or address-dependent filtering.
//!
//! # Lifetime
//!
//! A mapping lives while any of its connections lives (RFC 4787 REQ-5/6: connections are
//! refreshed by their traffic, outbound included, with the RFC timeouts of the
//! configuration). The tracker tells [`MappingHooks`] about every NATed connection it
//! creates and removes ([`ConnHooks`]); a mapping counts the connections that use it, on
//! either side (its own outbound ones, hairpinned ones, inbound ones admitted by
//! filtering), and is removed once the count is back at zero. A mapping made for a new
//! connection that is then refused (zone limit, collision) has no connection: it lives
//! [`GRACE_MS`] and is then reused, taken over, or reaped (by a creation in its bucket,
//! or by the bounded walk a creation in a full table makes first).
//!
//! A connection learned from a high-availability sync peer brings the binding the peer
//! chose: when its inside endpoint has no mapping here, that binding becomes its mapping
//! ([`Mappings::adopt`], from [`ConnHooks::learned`]), so a new local connection of the
//! same inside endpoint reuses it and no other inside endpoint is given its outside
//! endpoint while it lives.
//!
//! # Layout
//!
//! A mapping is a 128-byte record (two cache lines) in one array sized by the maximum,
//! taken from zeroed pages that are committed as records are first used (no allocation
//! per mapping, none at start): the first line holds both endpoints, the connection count
//! and the grace deadline, the second the peers of address-dependent filtering. Two
//! [`Index`]es of one-line buckets lead to the records, `by_in` by inside endpoint and
//! `by_out` by outside endpoint (the reverse index); a record is in both or in neither.
//! Buckets are sized for [`LOAD`] mappings each in a full table and scanned by 16-bit
//! tags, so a creation, a connection's count and its removal each read a bucket line
//! per index and the record's lines, however full the table is. Free records are chained
//! in [`SHARDS`] free lists, interleaved over the array. The index buckets are
//! committed at start (they are reached at random, so a lazily committed index would
//! take all its page faults, of huge pages, in the first creations).
//!
//! # Concurrency
//!
//! Each bucket is a spin lock over its chain. There is no global lock: creating a mapping
//! locks its inside bucket, then one outside bucket per candidate port (lock order: an
//! inside bucket before an outside bucket; a second inside bucket only with `try_lock`),
//! then a free list (a leaf lock), so two workers racing to create a mapping for the same
//! inside endpoint serialise on its inside bucket and the second finds the first's
//! mapping. A record's connection count, grace and peers are written with its inside
//! bucket locked; it is taken out of both indexes and freed with both its buckets locked,
//! so holding either keeps it (and its endpoints) in place. Record fields are atomics
//! (relaxed, ordered by the bucket locks), so that all-zero memory is a valid table. The
//! table is used when a connection is created or removed and for packets that match no
//! connection, never for the packets of an existing connection. The number of mappings
//! is bounded ([`Mappings::new`]'s `max`), past it a new inside endpoint gets no mapping
//! (its connection is refused as `nat_exhausted`).

use super::mapping_index::{tag_of, Index, Locked};
use super::{pick, NatRange, NatSpec, Side};
use crate::conntrack::key::KeyHasher;
use crate::conntrack::sync::{prefetch, CachePadded, SpinLock};
use crate::conntrack::{ConnHooks, ConnKey, CtState, ReplyTuples};
use crate::dpdk::{PageSize, ZeroedPages};
use crate::wire::parse::proto;
use bytemuck::Zeroable;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// How long a mapping without connections is kept (ms): it was made for a connection that
/// was then refused, or its connections are gone.
pub const GRACE_MS: u64 = 1_000;
/// Peer addresses remembered per mapping for address-dependent filtering.
pub const PEERS: usize = 4;
/// Mappings per bucket of each index in a full table, on average.
pub const LOAD: usize = 4;
/// Free lists of records (a creation takes from the one of its inside bucket, else the
/// next with room).
pub const SHARDS: usize = 64;

/// True for the protocols that get mappings: TCP and UDP.
pub fn mapped_proto(p: u8) -> bool {
    p == proto::TCP || p == proto::UDP
}

/// One side of a mapping: an endpoint in a zone, for a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub zone: u16,
    pub proto: u8,
    pub family: u8,
    pub addr: [u8; 16],
    pub port: u16,
}

/// An address as two words (the form records keep).
fn addr_words(a: &[u8; 16]) -> [u64; 2] {
    let (lo, hi) = a.split_at(8);
    let w = |s: &[u8]| u64::from_ne_bytes(s.try_into().unwrap_or_default());
    [w(lo), w(hi)]
}

fn words_addr(w: [u64; 2]) -> [u8; 16] {
    let mut a = [0; 16];
    a[..8].copy_from_slice(&w[0].to_ne_bytes());
    a[8..].copy_from_slice(&w[1].to_ne_bytes());
    a
}

impl Endpoint {
    /// The source of `k`.
    pub fn src_of(k: &ConnKey) -> Endpoint {
        Endpoint {
            zone: k.zone,
            proto: k.proto,
            family: k.family,
            addr: k.src,
            port: k.sport,
        }
    }

    /// The destination of `k`.
    pub fn dst_of(k: &ConnKey) -> Endpoint {
        Endpoint {
            zone: k.zone,
            proto: k.proto,
            family: k.family,
            addr: k.dst,
            port: k.dport,
        }
    }

    fn hash(&self, h: &KeyHasher) -> u64 {
        let k = ConnKey {
            src: self.addr,
            dst: [0; 16],
            sport: self.port,
            dport: 0,
            zone: self.zone,
            proto: self.proto,
            family: self.family,
        };
        h.hash_directed(&k.to_words())
    }

    /// The three words a record keeps: the address, then port, zone, protocol, family.
    fn words(&self) -> [u64; 3] {
        let [a, b] = addr_words(&self.addr);
        let tail = u64::from(self.port)
            | u64::from(self.zone) << 16
            | u64::from(self.proto) << 32
            | u64::from(self.family) << 40;
        [a, b, tail]
    }

    fn from_words(w: [u64; 3]) -> Endpoint {
        Endpoint {
            addr: words_addr([w[0], w[1]]),
            port: w[2] as u16,
            zone: (w[2] >> 16) as u16,
            proto: (w[2] >> 32) as u8,
            family: (w[2] >> 40) as u8,
        }
    }
}

/// A mapping as [`Mappings::lookup_in`] and [`Mappings::lookup_out`] copy it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub inside: Endpoint,
    pub outside: Endpoint,
    /// Connections using it.
    pub conns: u32,
    /// Dead at this time (ms) when it has no connections.
    pub grace_until: u64,
    /// Addresses its inside endpoint has opened connections to (the last [`PEERS`]).
    peers: [[u8; 16]; PEERS],
    n_peers: u8,
}

impl Mapping {
    /// True when the inside endpoint has sent to `addr` (one of the last [`PEERS`]
    /// addresses it opened connections to).
    pub fn has_sent_to(&self, addr: &[u8; 16]) -> bool {
        self.peers[..usize::from(self.n_peers).min(PEERS)]
            .iter()
            .any(|p| p == addr)
    }
}

/// A mapping as stored: 128 bytes, two cache lines (see the module documentation). All
/// zero bytes are a free record.
#[derive(Zeroable)]
#[repr(C, align(64))]
struct Rec {
    inside: [AtomicU64; 3],
    outside: [AtomicU64; 3],
    grace_until: AtomicU64,
    /// Connections using it; while the record is free, the next free record + 1.
    conns: AtomicU32,
    n_peers: AtomicU32,
    /// The peers' addresses, two words each, oldest first.
    peers: [[AtomicU64; 2]; PEERS],
}

const _: () = assert!(std::mem::size_of::<Rec>() == 128);

fn load3(w: &[AtomicU64; 3]) -> [u64; 3] {
    [0, 1, 2].map(|i| w[i].load(Ordering::Relaxed))
}

fn store3(w: &[AtomicU64; 3], v: [u64; 3]) {
    for (a, v) in w.iter().zip(v) {
        a.store(v, Ordering::Relaxed);
    }
}

impl Rec {
    fn live(&self, now: u64) -> bool {
        self.conns.load(Ordering::Relaxed) > 0 || self.grace_until.load(Ordering::Relaxed) > now
    }

    fn inside(&self) -> Endpoint {
        Endpoint::from_words(load3(&self.inside))
    }

    fn outside(&self) -> Endpoint {
        Endpoint::from_words(load3(&self.outside))
    }

    fn is(&self, inside: &[u64; 3], outside: Option<&[u64; 3]>) -> bool {
        load3(&self.inside) == *inside && outside.is_none_or(|o| load3(&self.outside) == *o)
    }

    fn peer(&self, k: usize) -> [u8; 16] {
        words_addr(self.peers[k].each_ref().map(|w| w.load(Ordering::Relaxed)))
    }

    fn n_peers(&self) -> usize {
        (self.n_peers.load(Ordering::Relaxed) as usize).min(PEERS)
    }

    fn add_peer(&self, addr: &[u8; 16]) {
        let n = self.n_peers();
        if (0..n).any(|k| self.peer(k) == *addr) {
            return;
        }
        let put = |k: usize, a: &[u8; 16]| {
            for (w, v) in self.peers[k].iter().zip(addr_words(a)) {
                w.store(v, Ordering::Relaxed);
            }
        };
        if n < PEERS {
            put(n, addr);
            self.n_peers.store(n as u32 + 1, Ordering::Relaxed);
        } else {
            for k in 1..PEERS {
                put(k - 1, &self.peer(k));
            }
            put(PEERS - 1, addr);
        }
    }

    fn copy(&self) -> Mapping {
        let mut peers = [[0; 16]; PEERS];
        for (k, p) in peers.iter_mut().enumerate().take(self.n_peers()) {
            *p = self.peer(k);
        }
        Mapping {
            inside: self.inside(),
            outside: self.outside(),
            conns: self.conns.load(Ordering::Relaxed),
            grace_until: self.grace_until.load(Ordering::Relaxed),
            peers,
            n_peers: self.n_peers() as u8,
        }
    }
}

/// A free list of records: list `s` holds records `s`, `s + SHARDS`, `s + 2 * SHARDS`, …
/// (so that all lists fill the array from its start: pages are committed as the table
/// grows, not one per list at once); those never used start at the `fresh`-th, freed
/// ones are chained from `head` (index + 1) through their `conns`.
#[derive(Default)]
struct FreeRecs {
    fresh: u32,
    head: u32,
}

/// The mapping table (see the module documentation).
pub struct Mappings {
    by_in: Index,
    by_out: Index,
    recs: ZeroedPages<Rec>,
    free: Box<[CachePadded<SpinLock<FreeRecs>>]>,
    /// Records per free list.
    per_list: u32,
    hasher: KeyHasher,
    count: CachePadded<AtomicU32>,
    max: u32,
    /// Where the next reaping walk of a full table starts ([`Mappings::reap_some`]).
    reap_cursor: AtomicUsize,
}

/// Buckets a full table's creation reaps, from a rotating cursor, before it refuses.
const REAP_WALK: usize = 64;

impl Mappings {
    /// A table for at most `max` mappings.
    pub fn new(max: u32) -> Mappings {
        let cap = (max as usize).max(1);
        let n = cap.div_ceil(LOAD).next_power_of_two().max(256);
        // A full table overflows about one bucket in fifty (Poisson, mean LOAD, eight
        // slots); an eighth of the buckets leaves room for unlucky hashing.
        let overflow = n / 8 + 16;
        let per_list = cap.div_ceil(SHARDS);
        Mappings {
            by_in: Index::new(n, overflow),
            by_out: Index::new(n, overflow),
            recs: ZeroedPages::new(per_list * SHARDS, PageSize::Small),
            free: (0..SHARDS)
                .map(|_| CachePadded(SpinLock::new(FreeRecs::default())))
                .collect(),
            per_list: per_list as u32,
            hasher: KeyHasher::random(),
            count: CachePadded(AtomicU32::new(0)),
            max,
            reap_cursor: AtomicUsize::new(0),
        }
    }

    /// Bytes the table may take when full (its arrays' sizes; pages are committed as they
    /// are first used).
    pub fn bytes(&self) -> u64 {
        (self.by_in.bytes() + self.by_out.bytes() + std::mem::size_of_val(&*self.recs)) as u64
    }

    /// Starts fetching the bucket of inside endpoint `inside` (no lock, no effect).
    pub fn prefetch(&self, inside: &Endpoint) {
        let h = inside.hash(&self.hasher);
        self.by_in.prefetch(self.by_in.bucket_of(h));
    }

    /// Starts fetching the records that may hold `inside`'s mapping (those its bucket's
    /// first line tags as `inside`'s), once [`Mappings::prefetch`] has brought the bucket
    /// in: the record a new connection's mapping lookup compares and updates. Reads the
    /// bucket without its lock; a stale entry only wastes a prefetch.
    pub fn prefetch_records(&self, inside: &Endpoint) {
        let h = inside.hash(&self.hasher);
        self.by_in.peek(self.by_in.bucket_of(h), tag_of(h), |i| {
            if let Some(r) = self.rec(i) {
                // Both lines: the lookup reads the first, `conn_added` writes its peer
                // into the second.
                prefetch(r);
                prefetch(&r.peers);
            }
        });
    }

    fn rec(&self, i: u32) -> Option<&Rec> {
        self.recs.get(i as usize)
    }

    /// Live mappings now (dead ones not yet taken over included until they are).
    pub fn len(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// True when the table holds no mapping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// In `inside`'s locked bucket `g` (`h` is `inside`'s hash), the position and record of
    /// its mapping (with `outside` when given).
    fn find_in(
        &self,
        g: &Locked,
        h: u64,
        inside: &Endpoint,
        outside: Option<&Endpoint>,
    ) -> Option<(usize, u32)> {
        let (iw, ow) = (inside.words(), outside.map(Endpoint::words));
        g.find(tag_of(h), |i| {
            self.rec(i).is_some_and(|r| r.is(&iw, ow.as_ref()))
        })
    }

    /// The live mapping of inside endpoint `inside`.
    pub fn lookup_in(&self, inside: &Endpoint, now: u64) -> Option<Mapping> {
        let h = inside.hash(&self.hasher);
        let g = self.by_in.lock(self.by_in.bucket_of(h));
        let (_, i) = self.find_in(&g, h, inside, None)?;
        self.rec(i).filter(|r| r.live(now)).map(Rec::copy)
    }

    /// The live mapping whose outside endpoint is `outside` (hairpinning, filtering).
    pub fn lookup_out(&self, outside: &Endpoint, now: u64) -> Option<Mapping> {
        let oh = outside.hash(&self.hasher);
        let ow = outside.words();
        let inside = {
            let o = self.by_out.lock(self.by_out.bucket_of(oh));
            let (_, i) = o.find(tag_of(oh), |i| {
                self.rec(i).is_some_and(|r| load3(&r.outside) == ow)
            })?;
            self.rec(i)?.inside()
        };
        let h = inside.hash(&self.hasher);
        let g = self.by_in.lock(self.by_in.bucket_of(h));
        let (_, i) = self.find_in(&g, h, &inside, Some(outside))?;
        self.rec(i).filter(|r| r.live(now)).map(Rec::copy)
    }

    /// The outside endpoint of `inside`'s mapping, made now if it has none: the first of
    /// `candidates(0)`, `candidates(1)`, … (address, port) that no live mapping holds.
    /// `None` when the candidates run out or the table is full.
    pub fn get_or_create(
        &self,
        inside: &Endpoint,
        now: u64,
        mut candidates: impl FnMut(u32) -> Option<([u8; 16], u16)>,
    ) -> Option<([u8; 16], u16)> {
        let h = inside.hash(&self.hasher);
        let ib = self.by_in.bucket_of(h);
        let g = self.by_in.lock(ib);
        if g.idle() > 0 {
            self.reap(&g, now);
        }
        if let Some(r) = self.live_or_drop(&g, h, inside, now) {
            let until = r.grace_until.load(Ordering::Relaxed).max(now + GRACE_MS);
            r.grace_until.store(until, Ordering::Relaxed);
            let o = r.outside();
            return Some((o.addr, o.port));
        }
        if self.count.load(Ordering::Relaxed) >= self.max {
            self.reap_some(ib, now);
            if self.count.load(Ordering::Relaxed) >= self.max {
                return None;
            }
        }
        let mut n = 0;
        while let Some((addr, port)) = candidates(n) {
            n += 1;
            let outside = Endpoint {
                addr,
                port,
                ..*inside
            };
            if self.claim(&g, ib, h, inside, &outside, now) {
                return Some((addr, port));
            }
        }
        None
    }

    /// Makes the mapping `inside` ↔ `outside` of a connection learned from a sync peer
    /// (the peer chose the binding), unless `inside` has a live mapping already (this
    /// instance's own stands) or another inside endpoint's live mapping holds `outside`
    /// (peers whose pools overlap). True when `inside`'s mapping is now `outside`, so a
    /// new local connection of `inside` reuses the peer's binding and no other inside
    /// endpoint can be given it.
    pub fn adopt(&self, inside: &Endpoint, outside: &Endpoint, now: u64) -> bool {
        let h = inside.hash(&self.hasher);
        let ib = self.by_in.bucket_of(h);
        let g = self.by_in.lock(ib);
        if let Some(r) = self.live_or_drop(&g, h, inside, now) {
            return r.outside() == *outside;
        }
        self.count.load(Ordering::Relaxed) < self.max && self.claim(&g, ib, h, inside, outside, now)
    }

    /// `inside`'s live mapping in its locked bucket `g`; a dead one is dropped (its
    /// outside endpoint is free again, this inside endpoint starts over).
    fn live_or_drop(&self, g: &Locked, h: u64, inside: &Endpoint, now: u64) -> Option<&Rec> {
        let (k, i) = self.find_in(g, h, inside, None)?;
        let r = self.rec(i)?;
        if r.live(now) {
            return Some(r);
        }
        self.unlink(g, k, i, r);
        None
    }

    /// Takes record `i` (position `k` of its locked inside bucket `g`) out of both indexes
    /// and frees it.
    fn unlink(&self, g: &Locked, k: usize, i: u32, r: &Rec) {
        let oh = r.outside().hash(&self.hasher);
        {
            let o = self.by_out.lock(self.by_out.bucket_of(oh));
            if let Some((j, _)) = o.find(tag_of(oh), |x| x == i) {
                o.remove(j);
            }
        }
        self.unlink_in(g, k, i, r);
    }

    /// The inside half of [`Mappings::unlink`] (the caller has taken `i` out of `by_out`).
    fn unlink_in(&self, g: &Locked, k: usize, i: u32, r: &Rec) {
        if r.conns.load(Ordering::Relaxed) == 0 {
            g.set_idle(false);
        }
        g.remove(k);
        self.free_rec(i);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops every dead mapping of the locked bucket `g` (a refused connection's whose
    /// grace is over), freeing their outside endpoints: so that dead mappings neither
    /// lengthen the bucket's scans nor count against the table's maximum. Only idle
    /// mappings (no connection) can be dead, so it stops when none is left.
    fn reap(&self, g: &Locked, now: u64) {
        let mut k = 0;
        while g.idle() > 0 {
            let Some(i) = g.entry(k) else {
                break;
            };
            match self.rec(i) {
                Some(r) if !r.live(now) => self.unlink(g, k, i, r),
                _ => k += 1,
            }
        }
    }

    /// A full table: reaps the next [`REAP_WALK`] buckets from the rotating cursor (the
    /// mappings of refused connections whose grace is over live in no connection's hooks,
    /// so nothing else removes them), each only if its lock is free (`held` is locked by
    /// the caller: lock order allows a second inside bucket only with `try_lock`). Bounded,
    /// so that a table full of live mappings costs each refused creation a fixed walk.
    fn reap_some(&self, held: usize, now: u64) {
        let start = self.reap_cursor.fetch_add(REAP_WALK, Ordering::Relaxed);
        for k in 0..REAP_WALK {
            let i = start.wrapping_add(k) % self.by_in.buckets();
            if i == held {
                continue;
            }
            if let Some(g) = self.by_in.try_lock(i) {
                if g.idle() > 0 {
                    self.reap(&g, now);
                }
            }
        }
    }

    /// A free record, from the free list of inside bucket `ib`, else the next with one.
    fn alloc_rec(&self, ib: usize) -> Option<u32> {
        for s in 0..SHARDS {
            let Some(l) = self.free.get((ib + s) % SHARDS) else {
                continue;
            };
            let mut f = l.lock();
            if let Some(i) = f.head.checked_sub(1) {
                f.head = self.rec(i)?.conns.load(Ordering::Relaxed);
                return Some(i);
            }
            if f.fresh < self.per_list {
                f.fresh += 1;
                return Some((f.fresh - 1) * SHARDS as u32 + ((ib + s) % SHARDS) as u32);
            }
        }
        None
    }

    fn free_rec(&self, i: u32) {
        let (Some(l), Some(r)) = (self.free.get(i as usize % SHARDS), self.rec(i)) else {
            return;
        };
        let mut f = l.lock();
        r.conns.store(f.head, Ordering::Relaxed);
        f.head = i + 1;
    }

    /// Gives `inside` (which has no mapping; its bucket `ib` is `g`, locked, `h` its hash)
    /// the outside endpoint `outside` if no live mapping holds it (a dead holder's is taken
    /// over).
    fn claim(
        &self,
        g: &Locked,
        ib: usize,
        h: u64,
        inside: &Endpoint,
        outside: &Endpoint,
        now: u64,
    ) -> bool {
        let oh = outside.hash(&self.hasher);
        let ow = outside.words();
        let o = self.by_out.lock(self.by_out.bucket_of(oh));
        let held = o.find(tag_of(oh), |x| {
            self.rec(x).is_some_and(|r| load3(&r.outside) == ow)
        });
        if let Some((j, hi)) = held {
            let Some(hr) = self.rec(hi) else {
                return false;
            };
            // Taken, unless its mapping is dead: then it is taken over (with the holder's
            // inside bucket locked, which writes its count and grace).
            let hh = hr.inside().hash(&self.hasher);
            let take_over = |hg: &Locked| match hg.find(tag_of(hh), |x| x == hi) {
                Some((k, _)) if !hr.live(now) => {
                    o.remove(j);
                    self.unlink_in(hg, k, hi, hr);
                    true
                }
                _ => false,
            };
            let hb = self.by_in.bucket_of(hh);
            let freed = if hb == ib {
                take_over(g)
            } else {
                self.by_in.try_lock(hb).is_some_and(|hg| take_over(&hg))
            };
            if !freed {
                return false;
            }
        }
        let Some((i, r)) = self.alloc_rec(ib).and_then(|i| Some((i, self.rec(i)?))) else {
            return false;
        };
        store3(&r.inside, inside.words());
        store3(&r.outside, ow);
        r.grace_until.store(now + GRACE_MS, Ordering::Relaxed);
        r.conns.store(0, Ordering::Relaxed);
        r.n_peers.store(0, Ordering::Relaxed);
        if !o.insert(tag_of(oh), i) {
            self.free_rec(i);
            return false;
        }
        if !g.insert(tag_of(h), i) {
            if let Some((j, _)) = o.find(tag_of(oh), |x| x == i) {
                o.remove(j);
            }
            self.free_rec(i);
            return false;
        }
        g.set_idle(true);
        self.count.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A connection now uses the mapping `inside` ↔ `outside` (if there is one); `peer`:
    /// the address it was opened to, for address-dependent filtering.
    pub fn conn_added(&self, inside: &Endpoint, outside: &Endpoint, peer: Option<&[u8; 16]>) {
        let h = inside.hash(&self.hasher);
        let g = self.by_in.lock(self.by_in.bucket_of(h));
        let Some(r) = self
            .find_in(&g, h, inside, Some(outside))
            .and_then(|(_, i)| self.rec(i))
        else {
            return;
        };
        let c = r.conns.load(Ordering::Relaxed);
        if c == 0 {
            g.set_idle(false);
        }
        r.conns.store(c.saturating_add(1), Ordering::Relaxed);
        if let Some(p) = peer {
            r.add_peer(p);
        }
    }

    /// A connection that used the mapping `inside` ↔ `outside` is gone; the mapping dies
    /// with its last one and is removed at once, its outside endpoint free again (a dead
    /// mapping left in place was only dropped when its inside endpoint came back or its
    /// outside endpoint was claimed: with endpoints that never come back, such as clients'
    /// ephemeral ports, dead mappings filled the table to its maximum and every new
    /// inside endpoint was then refused as `nat_exhausted`).
    pub fn conn_removed(&self, inside: &Endpoint, outside: &Endpoint) {
        let h = inside.hash(&self.hasher);
        let g = self.by_in.lock(self.by_in.bucket_of(h));
        let Some((k, i)) = self.find_in(&g, h, inside, Some(outside)) else {
            return;
        };
        let Some(r) = self.rec(i) else {
            return;
        };
        match r.conns.load(Ordering::Relaxed) {
            c if c > 1 => r.conns.store(c - 1, Ordering::Relaxed),
            _ => self.unlink(&g, k, i, r),
        }
    }
}

/// The tracker hooks that keep the mappings' connection counts: a NATed TCP/UDP
/// connection uses the mapping of its original source (SNAT: inside endpoint = original
/// source, outside = reply destination) and, when it was translated to an inside endpoint,
/// the mapping of that endpoint (DNAT: inside = reply source, outside = original
/// destination). Creation and removal see the same keys, so the counts balance.
pub struct MappingHooks(pub Arc<Mappings>);

impl MappingHooks {
    fn sides(
        orig: &ConnKey,
        reply: &ConnKey,
        nat: u8,
        mut f: impl FnMut(Endpoint, Endpoint, bool),
    ) {
        if !mapped_proto(orig.proto) {
            return;
        }
        if nat & CtState::SNAT != 0 {
            f(Endpoint::src_of(orig), Endpoint::dst_of(reply), true);
        }
        if nat & CtState::DNAT != 0 {
            f(Endpoint::src_of(reply), Endpoint::dst_of(orig), false);
        }
    }
}

impl ConnHooks for MappingHooks {
    fn created(&self, orig: &ConnKey, reply: &ConnKey, nat: u8, _now: u64) {
        MappingHooks::sides(orig, reply, nat, |i, o, outbound| {
            self.0.conn_added(&i, &o, outbound.then_some(&orig.dst))
        });
    }

    /// A connection learned from a sync peer: its SNAT binding becomes this instance's
    /// mapping of its inside endpoint when it has none ([`Mappings::adopt`]), then it
    /// counts like a local one.
    fn learned(&self, orig: &ConnKey, reply: &ConnKey, nat: u8, now: u64) {
        MappingHooks::sides(orig, reply, nat, |i, o, outbound| {
            if outbound {
                self.0.adopt(&i, &o, now);
            }
            self.0.conn_added(&i, &o, outbound.then_some(&orig.dst))
        });
    }

    /// The inside endpoint's bucket (stage 0), then the records it tags as that
    /// endpoint's (stage 1): what `conn_removed` reads, cold when the sweep comes by.
    fn prefetch_removed(&self, orig: &ConnKey, reply: &ConnKey, nat: u8, stage: u8) {
        MappingHooks::sides(orig, reply, nat, |i, _, _| {
            if stage == 0 {
                self.0.prefetch(&i)
            } else {
                self.0.prefetch_records(&i)
            }
        });
    }

    fn removed(&self, orig: &ConnKey, reply: &ConnKey, nat: u8) {
        MappingHooks::sides(orig, reply, nat, |i, o, _| self.0.conn_removed(&i, &o));
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Filtering of inbound packets that match no connection (RFC 4787 §5, RFC 5382 §4.3):
/// which outside sources may open a connection to a mapping's inside endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filtering {
    /// Only replies (the tracker's own behaviour): a packet from an outside endpoint the
    /// inside endpoint has no connection with is refused.
    #[default]
    AddressPortDependent,
    /// From any port of an address the inside endpoint has sent to.
    AddressDependent,
    /// From anywhere (RFC 4787 REQ-8's recommendation for transparency).
    EndpointIndependent,
}

impl Filtering {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Filtering::AddressPortDependent => "address-port-dependent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::EndpointIndependent => "endpoint-independent",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(s: &str) -> Option<Filtering> {
        [
            Filtering::AddressPortDependent,
            Filtering::AddressDependent,
            Filtering::EndpointIndependent,
        ]
        .into_iter()
        .find(|f| f.name() == s)
    }

    /// Whether a packet from `src` may open a connection to `m`'s inside endpoint.
    pub fn admits(self, m: &Mapping, src: &[u8; 16]) -> bool {
        match self {
            Filtering::AddressPortDependent => false,
            Filtering::AddressDependent => m.has_sent_to(src),
            Filtering::EndpointIndependent => true,
        }
    }
}

/// A [`NatSpec`] whose source NAT of TCP and UDP goes through the mapping table: the
/// reply key's destination is the inside endpoint's mapping, made on first use. Other
/// protocols, and specs without SNAT, are the spec's own candidates.
pub struct Mapped<'a> {
    pub spec: &'a NatSpec,
    pub maps: &'a Mappings,
    pub now: u64,
}

impl Mapped<'_> {
    /// The SNAT range when this connection's source translation goes through the mapping
    /// table (TCP or UDP, a spec with SNAT that applies to it).
    fn mapped_snat(&self, orig: &ConnKey) -> Option<&NatRange> {
        match &self.spec.snat {
            Some(r) if mapped_proto(orig.proto) && self.spec.applies(orig) => Some(r),
            _ => None,
        }
    }

    /// The reply key before the source translation: the destination translated when the
    /// spec also has DNAT, else the original reversed.
    fn reply_before_snat(&self, orig: &ConnKey) -> Option<ConnKey> {
        match self.spec.dnat {
            Some(_) => NatSpec {
                snat: None,
                dnat: self.spec.dnat,
            }
            .candidate(orig, 0),
            None => Some(orig.reversed()),
        }
    }
}

impl ReplyTuples for Mapped<'_> {
    fn flags(&self, orig: &ConnKey) -> u8 {
        self.spec.flags(orig)
    }

    fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
        let Some(snat) = self.mapped_snat(orig) else {
            return self.spec.candidate(orig, n);
        };
        // One candidate: the mapping's (another port would break endpoint-independence).
        if n > 0 {
            return None;
        }
        let mut reply = self.reply_before_snat(orig)?;
        let (addr, port) = self
            .maps
            .get_or_create(&Endpoint::src_of(orig), self.now, |i| {
                match pick(snat, Side::Snat, orig, i)? {
                    (a, Some(p)) => Some((a, p)),
                    (_, None) => None,
                }
            })?;
        reply.dst = addr;
        reply.dport = port;
        Some(reply)
    }

    /// The mapping an inside endpoint would get when its first candidate is free (the
    /// usual case: its own port kept), without the mapping table: [`Mapped::candidate`]
    /// makes the mapping, and the burst's prefetch pass must not (nor pay its locks). It
    /// does start fetching the inside endpoint's bucket, which the creation locks first
    /// (a miss of its own at scale).
    fn hint(&self, orig: &ConnKey) -> Option<ConnKey> {
        let Some(snat) = self.mapped_snat(orig) else {
            return self.spec.candidate(orig, 0);
        };
        self.maps.prefetch(&Endpoint::src_of(orig));
        let mut reply = self.reply_before_snat(orig)?;
        let (addr, Some(port)) = pick(snat, Side::Snat, orig, 0)? else {
            return None;
        };
        reply.dst = addr;
        reply.dport = port;
        Some(reply)
    }

    fn prefetch_state(&self, orig: &ConnKey) {
        if self.mapped_snat(orig).is_some() {
            self.maps.prefetch_records(&Endpoint::src_of(orig));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::key::ip_to_addr;

    fn ep(addr: &str, port: u16) -> Endpoint {
        let (a, family) = ip_to_addr(addr.parse().unwrap());
        Endpoint {
            zone: 1,
            proto: proto::UDP,
            family,
            addr: a,
            port,
        }
    }

    fn pool(port: u16) -> impl FnMut(u32) -> Option<([u8; 16], u16)> {
        let a = ep("192.0.2.1", 0).addr;
        move |n| (n < 100).then(|| (a, port + n as u16))
    }

    #[test]
    fn two_workers_racing_for_the_same_inside_endpoint_make_one_mapping() {
        let maps = Arc::new(Mappings::new(4096));
        let inside: Vec<Endpoint> = (0..500).map(|i| ep("10.0.0.2", 1000 + i)).collect();
        let run = |offset: u16| {
            let maps = maps.clone();
            let inside = inside.clone();
            std::thread::spawn(move || {
                inside
                    .iter()
                    .map(|i| {
                        // Each worker would pick a different port: only one can win.
                        maps.get_or_create(i, 10, pool(20_000 + offset + i.port))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        };
        let (a, b) = (run(0), run(5_000));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(a, b, "both workers got the same outside endpoint for each");
        assert_eq!(maps.len(), 500);
        let mut ports: Vec<u16> = a.iter().map(|(_, p)| *p).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(
            ports.len(),
            500,
            "no two inside endpoints share an outside port"
        );
        for (i, (addr, port)) in inside.iter().zip(a.iter()) {
            let out = Endpoint {
                addr: *addr,
                port: *port,
                ..*i
            };
            assert_eq!(maps.lookup_out(&out, 10).unwrap().inside, *i);
        }
    }

    #[test]
    fn an_outside_port_belongs_to_one_inside_endpoint_while_its_mapping_lives() {
        let maps = Mappings::new(64);
        let a = ep("10.0.0.2", 5000);
        let b = ep("10.0.0.3", 5000);
        let (_, pa) = maps.get_or_create(&a, 0, pool(5000)).unwrap();
        assert_eq!(pa, 5000, "the port is kept when free");
        let out_a = Endpoint {
            port: pa,
            ..ep("192.0.2.1", 0)
        };
        maps.conn_added(&a, &out_a, Some(&ep("198.51.100.7", 0).addr));
        // Long after the grace period, the connection keeps it.
        let (_, pb) = maps.get_or_create(&b, 60_000, pool(5000)).unwrap();
        assert_eq!(pb, 5001, "the next port, not A's");
        assert_eq!(
            maps.get_or_create(&a, 60_000, pool(7000)),
            Some((out_a.addr, 5000))
        );
        let m = maps.lookup_out(&out_a, 60_000).unwrap();
        assert!(m.has_sent_to(&ep("198.51.100.7", 0).addr));
        assert!(!m.has_sent_to(&ep("198.51.100.8", 0).addr));
        assert!(Filtering::AddressDependent.admits(&m, &ep("198.51.100.7", 0).addr));
        assert!(!Filtering::AddressDependent.admits(&m, &ep("203.0.113.1", 0).addr));
        assert!(Filtering::EndpointIndependent.admits(&m, &ep("203.0.113.1", 0).addr));
        assert!(!Filtering::AddressPortDependent.admits(&m, &ep("198.51.100.7", 0).addr));
        // Its last connection gone, the mapping is dead and the port goes to another.
        maps.conn_removed(&a, &out_a);
        assert_eq!(maps.lookup_out(&out_a, 60_000), None);
        let c = ep("10.0.0.4", 5000);
        assert_eq!(maps.get_or_create(&c, 60_000, pool(5000)).unwrap().1, 5000);
        assert_eq!(maps.lookup_out(&out_a, 60_000).unwrap().inside, c);
        assert_eq!(maps.len(), 2, "b and c; a's record was taken over");
    }

    #[test]
    fn a_mapping_without_connections_lives_only_its_grace() {
        let maps = Mappings::new(64);
        let a = ep("10.0.0.2", 5000);
        assert_eq!(maps.get_or_create(&a, 100, pool(5000)).unwrap().1, 5000);
        assert!(maps.lookup_in(&a, 100 + GRACE_MS - 1).is_some());
        assert!(maps.lookup_in(&a, 100 + GRACE_MS).is_none());
        // A dead mapping is made again for its endpoint (same port: it is free).
        assert_eq!(maps.get_or_create(&a, 5_000, pool(5000)).unwrap().1, 5000);
        assert_eq!(maps.len(), 1);
    }

    #[test]
    fn a_learned_binding_becomes_the_mapping_of_an_inside_endpoint_that_has_none() {
        let maps = Mappings::new(64);
        let x = ep("10.0.0.2", 5000);
        let y = ep("10.0.0.3", 5000);
        let peers = Endpoint {
            port: 40_000,
            ..ep("192.0.2.1", 0)
        };
        assert!(maps.adopt(&x, &peers, 0));
        maps.conn_added(&x, &peers, None);
        // A new local connection of X, long after the grace, reuses the peer's binding
        // (its own pool would give 5000); Y is never given it.
        assert_eq!(
            maps.get_or_create(&x, 60_000, pool(5000)),
            Some((peers.addr, 40_000))
        );
        let only_xs = |n| (n < 4).then_some((peers.addr, 40_000));
        assert_eq!(maps.get_or_create(&y, 60_000, only_xs), None);
        assert!(!maps.adopt(&y, &peers, 60_000), "held by X");
        assert_eq!(maps.lookup_out(&peers, 60_000).unwrap().inside, x);
        // An inside endpoint with a live mapping of its own keeps it.
        let (_, py) = maps.get_or_create(&y, 60_000, pool(6000)).unwrap();
        let other = Endpoint {
            port: 41_000,
            ..peers
        };
        assert!(!maps.adopt(&y, &other, 60_000));
        assert_eq!(maps.lookup_in(&y, 60_000).unwrap().outside.port, py);
        assert_eq!(maps.lookup_out(&other, 60_000), None);
        // The learned connection gone, the binding is free again.
        maps.conn_removed(&x, &peers);
        assert!(maps.adopt(&ep("10.0.0.4", 1), &peers, 60_000));
        assert_eq!(maps.len(), 2, "Y's and the new one; X's was taken over");
    }

    /// Inside endpoints that never come back (clients' ephemeral ports), each with one
    /// connection that ends: many more of them over time than the table's maximum all get
    /// a mapping, and the table is empty when their connections are gone.
    #[test]
    fn mappings_whose_connections_are_gone_leave_room_for_new_endpoints() {
        let maps = Mappings::new(8);
        let out_addr = ep("192.0.2.1", 0).addr;
        for i in 0..1_000u16 {
            let inside = ep("10.0.0.2", 1_024 + i);
            let now = u64::from(i);
            // A different outside port each time: no takeover of a dead one's port.
            let (addr, port) = maps
                .get_or_create(&inside, now, |n| (n < 4).then_some((out_addr, 20_000 + i)))
                .unwrap_or_else(|| panic!("endpoint {i} refused with {} mappings", maps.len()));
            let outside = Endpoint {
                addr,
                port,
                ..inside
            };
            maps.conn_added(&inside, &outside, None);
            assert_eq!(
                maps.lookup_out(&outside, now).map(|m| m.inside),
                Some(inside)
            );
            maps.conn_removed(&inside, &outside);
            assert_eq!(maps.lookup_out(&outside, now), None);
        }
        assert_eq!(maps.len(), 0);
        // A refused connection's mapping (no connection ever) does not hold the table
        // full past its grace: creations in a full table reap a walk of buckets each.
        let tiny = Mappings::new(1);
        let (a, b) = (ep("10.0.0.2", 1), ep("10.0.0.2", 2));
        assert!(tiny.get_or_create(&a, 0, pool(100)).is_some());
        assert_eq!(tiny.get_or_create(&b, 10, pool(200)), None, "full");
        let buckets = 256 / REAP_WALK;
        let admitted = (0..=buckets as u64)
            .position(|t| tiny.get_or_create(&b, GRACE_MS + t, pool(200)).is_some());
        assert!(
            admitted.is_some(),
            "b still refused after a walk over every bucket"
        );
        assert_eq!(tiny.len(), 1);
        assert_eq!(tiny.lookup_in(&a, GRACE_MS + 10), None);
    }

    /// The endpoint `10.(n/65536).(n/256%256).(n%256)`, port 1000 + n % 7, for many
    /// distinct inside endpoints.
    fn nth(n: u32) -> Endpoint {
        let [_, b, c, d] = n.to_be_bytes();
        ep(&format!("10.{b}.{c}.{d}"), 1000 + (n % 7) as u16)
    }

    /// Outside endpoint `n`: port 1024 + n % 60000 of 192.0.2.(n / 60000).
    fn nth_out(inside: &Endpoint, n: u32) -> Endpoint {
        Endpoint {
            port: 1024 + (n % 60_000) as u16,
            ..ep(&format!("192.0.2.{}", n / 60_000), 0)
        }
        .with_zone_of(inside)
    }

    impl Endpoint {
        fn with_zone_of(self, i: &Endpoint) -> Endpoint {
            Endpoint {
                zone: i.zone,
                proto: i.proto,
                ..self
            }
        }
    }

    #[test]
    fn a_table_filled_to_its_maximum_finds_creates_and_removes_every_mapping() {
        let max = 50_000;
        let maps = Mappings::new(max);
        let peer = ep("198.51.100.7", 0).addr;
        let make = |n: u32, now: u64| {
            let i = nth(n);
            let o = nth_out(&i, n);
            let got = maps.get_or_create(&i, now, |k| (k == 0).then_some((o.addr, o.port)));
            assert_eq!(got, Some((o.addr, o.port)), "mapping {n}");
            maps.conn_added(&i, &o, Some(&peer));
        };
        for n in 0..max {
            make(n, 0);
        }
        assert_eq!(maps.len(), max);
        let extra = nth(max);
        assert_eq!(maps.get_or_create(&extra, 60_000, pool(5000)), None, "full");
        for n in 0..max {
            let (i, o) = (nth(n), nth_out(&nth(n), n));
            let m = maps.lookup_out(&o, 60_000).unwrap_or_else(|| panic!("{n}"));
            assert_eq!((m.inside, m.conns), (i, 1));
            assert!(m.has_sent_to(&peer));
            assert_eq!(maps.lookup_in(&i, 60_000).map(|m| m.outside), Some(o));
            // Its second connection reuses it.
            assert_eq!(
                maps.get_or_create(&i, 60_000, pool(5000)),
                Some((o.addr, o.port))
            );
        }
        // Every other one's connection ends: its mapping and outside endpoint go at once,
        // and as many new inside endpoints take their place.
        for n in (0..max).step_by(2) {
            let i = nth(n);
            maps.conn_removed(&i, &nth_out(&i, n));
            assert_eq!(maps.lookup_in(&i, 60_000), None);
        }
        assert_eq!(maps.len(), max / 2);
        for n in (0..max).step_by(2) {
            make(max + n, 60_000);
        }
        assert_eq!(maps.len(), max);
        for n in (1..max).step_by(2).chain((max..2 * max).step_by(2)) {
            let i = nth(n);
            assert_eq!(maps.lookup_in(&i, 60_000).unwrap().outside, nth_out(&i, n));
        }
        for n in (1..max).step_by(2).chain((max..2 * max).step_by(2)) {
            let i = nth(n);
            maps.conn_removed(&i, &nth_out(&i, n));
        }
        assert!(maps.is_empty());
        assert!(
            maps.bytes() < 64 * max as u64 * 4,
            "{} bytes for {max} mappings",
            maps.bytes()
        );
    }

    #[test]
    fn mappings_of_refused_connections_are_reaped_after_their_grace_in_a_full_table() {
        let max = 4096;
        let maps = Mappings::new(max);
        // Connections refused: no mapping ever gets one.
        for n in 0..max {
            let i = nth(n);
            let o = nth_out(&i, n);
            assert!(maps
                .get_or_create(&i, 0, |k| (k == 0).then_some((o.addr, o.port)))
                .is_some());
        }
        assert_eq!(
            maps.get_or_create(&nth(max), GRACE_MS - 1, pool(5000)),
            None
        );
        // Past their grace, every new inside endpoint gets one: the dead are reaped (in
        // its bucket, or by the walk of a creation that finds the table full: at worst a
        // walk over every bucket), and the count stays within the maximum.
        let walks = maps.by_in.buckets() / REAP_WALK + 1;
        for n in max..2 * max {
            let i = nth(n);
            let o = nth_out(&i, n);
            let got = (0..walks).find_map(|_| {
                maps.get_or_create(&i, GRACE_MS, |k| (k == 0).then_some((o.addr, o.port)))
            });
            assert_eq!(got, Some((o.addr, o.port)), "endpoint {n}");
            assert!(maps.len() <= max);
            maps.conn_added(&i, &o, None);
        }
        for n in 0..max {
            assert_eq!(maps.lookup_in(&nth(n), GRACE_MS), None);
        }
        for n in max..2 * max {
            assert_eq!(maps.lookup_in(&nth(n), GRACE_MS).unwrap().conns, 1);
        }
    }

    /// Two workers creating, using and removing mappings of their own inside endpoints in
    /// a small table (shared buckets, overflow chains, free lists): each always finds its
    /// own, and the table is empty at the end.
    #[test]
    fn two_workers_creating_and_removing_in_shared_buckets_keep_the_table_exact() {
        let maps = Arc::new(Mappings::new(2_000));
        let run = |base: u32| {
            let maps = maps.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let ns: Vec<u32> = (base..base + 900).collect();
                    for &n in &ns {
                        let i = nth(n);
                        let o = nth_out(&i, n + round);
                        let got =
                            maps.get_or_create(&i, 0, |k| (k == 0).then_some((o.addr, o.port)));
                        assert_eq!(got, Some((o.addr, o.port)), "{n} round {round}");
                        maps.conn_added(&i, &o, None);
                    }
                    for &n in &ns {
                        let i = nth(n);
                        let o = nth_out(&i, n + round);
                        assert_eq!(maps.lookup_out(&o, 0).map(|m| m.inside), Some(i));
                        maps.conn_removed(&i, &o);
                    }
                }
            })
        };
        let (a, b) = (run(0), run(100_000));
        a.join().unwrap();
        b.join().unwrap();
        assert!(maps.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_mappings_and_keeps_the_old() {
        let maps = Mappings::new(2);
        for p in [1, 2] {
            assert!(maps
                .get_or_create(&ep("10.0.0.2", p), 0, pool(100))
                .is_some());
        }
        assert_eq!(maps.get_or_create(&ep("10.0.0.2", 3), 0, pool(100)), None);
        assert!(maps
            .get_or_create(&ep("10.0.0.2", 1), 0, pool(900))
            .is_some());
        assert_eq!(
            Filtering::from_name("address-dependent"),
            Some(Filtering::AddressDependent)
        );
        assert_eq!(Filtering::from_name("full-cone"), None);
    }

    #[test]
    fn the_prefetch_hint_guesses_a_fresh_endpoints_mapping_without_making_one() {
        let maps = Mappings::new(1024);
        let spec = NatSpec {
            snat: Some("192.0.2.1-192.0.2.4".parse().unwrap()),
            dnat: None,
        };
        let m = Mapped {
            spec: &spec,
            maps: &maps,
            now: 0,
        };
        let (src, dst) = (ep("10.0.0.2", 40000), ep("198.51.100.7", 53));
        let orig = ConnKey {
            src: src.addr,
            dst: dst.addr,
            sport: src.port,
            dport: dst.port,
            zone: 1,
            proto: proto::UDP,
            family: src.family,
        };
        let hint = m.hint(&orig).unwrap();
        assert_eq!(maps.len(), 0, "the hint made a mapping");
        assert_eq!(maps.lookup_in(&src, 0), None);
        assert_eq!(hint.dport, 40000, "the port is kept when free");
        // The guess is what the creation then gets.
        assert_eq!(m.candidate(&orig, 0), Some(hint));
        assert_eq!(maps.len(), 1);
    }
}
