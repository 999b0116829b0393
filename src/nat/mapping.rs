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
//! # Concurrency
//!
//! Two bucket arrays of the same size, each bucket a spin lock around a short vector:
//! `by_in` holds the mappings themselves, hashed by inside endpoint, `by_out` the reverse
//! index (outside endpoint → inside endpoint). There is no global lock: creating a mapping
//! locks its inside bucket, then one outside bucket per candidate port (lock order: an
//! inside bucket before an outside bucket; a second inside bucket only with `try_lock`), so
//! two workers racing to create a mapping for the same inside endpoint serialise on its
//! inside bucket and the second finds the first's mapping. The table is used when a
//! connection is created or removed and for packets that match no connection, never for
//! the packets of an existing connection. Vectors are reserved at start
//! ([`SLOTS_RESERVED`] per bucket); the number of live mappings is bounded
//! ([`Mappings::new`]'s `max`), past it a new inside endpoint gets no mapping (its
//! connection is refused as `nat_exhausted`).

use super::{pick, NatRange, NatSpec, Side};
use crate::conntrack::key::KeyHasher;
use crate::conntrack::sync::SpinLock;
use crate::conntrack::{ConnHooks, ConnKey, CtState, ReplyTuples};
use crate::wire::parse::proto;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// How long a mapping without connections is kept (ms): it was made for a connection that
/// was then refused, or its connections are gone.
pub const GRACE_MS: u64 = 1_000;
/// Slots reserved per bucket at start (more grow the vector: rare, on creation only).
pub const SLOTS_RESERVED: usize = 2;
/// Peer addresses remembered per mapping for address-dependent filtering.
pub const PEERS: usize = 4;

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
        h.hash_words(&k.to_words())
    }
}

/// A mapping as stored (and as [`Mappings::lookup_out`] copies it out).
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
    fn live(&self, now: u64) -> bool {
        self.conns > 0 || self.grace_until > now
    }

    /// True when the inside endpoint has sent to `addr` (one of the last [`PEERS`]
    /// addresses it opened connections to).
    pub fn has_sent_to(&self, addr: &[u8; 16]) -> bool {
        self.peers[..usize::from(self.n_peers).min(PEERS)]
            .iter()
            .any(|p| p == addr)
    }

    fn add_peer(&mut self, addr: &[u8; 16]) {
        if self.has_sent_to(addr) {
            return;
        }
        let n = usize::from(self.n_peers);
        if n < PEERS {
            self.peers[n] = *addr;
            self.n_peers += 1;
        } else {
            self.peers.rotate_left(1);
            self.peers[PEERS - 1] = *addr;
        }
    }
}

/// A reverse index entry: (outside endpoint, inside endpoint).
type OutEntry = (Endpoint, Endpoint);

/// The mapping table (see the module documentation).
pub struct Mappings {
    by_in: Box<[SpinLock<Vec<Mapping>>]>,
    by_out: Box<[SpinLock<Vec<OutEntry>>]>,
    mask: usize,
    hasher: KeyHasher,
    count: AtomicU32,
    max: u32,
    /// Where the next reaping walk of a full table starts ([`Mappings::reap_some`]).
    reap_cursor: AtomicUsize,
}

/// Buckets a full table's creation reaps, from a rotating cursor, before it refuses.
const REAP_WALK: usize = 64;

impl Mappings {
    /// A table for at most `max` mappings.
    pub fn new(max: u32) -> Mappings {
        let n = (max as usize / 4).clamp(256, 1 << 16).next_power_of_two();
        Mappings {
            by_in: (0..n)
                .map(|_| SpinLock::new(Vec::with_capacity(SLOTS_RESERVED)))
                .collect(),
            by_out: (0..n)
                .map(|_| SpinLock::new(Vec::with_capacity(SLOTS_RESERVED)))
                .collect(),
            mask: n - 1,
            hasher: KeyHasher::random(),
            count: AtomicU32::new(0),
            max,
            reap_cursor: AtomicUsize::new(0),
        }
    }

    fn bucket(&self, e: &Endpoint) -> usize {
        e.hash(&self.hasher) as usize & self.mask
    }

    /// Live mappings now (dead ones not yet taken over included until they are).
    pub fn len(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// True when the table holds no mapping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live mapping of inside endpoint `inside`.
    pub fn lookup_in(&self, inside: &Endpoint, now: u64) -> Option<Mapping> {
        let b = self.by_in.get(self.bucket(inside))?.lock();
        b.iter()
            .find(|m| m.inside == *inside && m.live(now))
            .copied()
    }

    /// The live mapping whose outside endpoint is `outside` (hairpinning, filtering).
    pub fn lookup_out(&self, outside: &Endpoint, now: u64) -> Option<Mapping> {
        let inside = {
            let b = self.by_out.get(self.bucket(outside))?.lock();
            b.iter().find(|(o, _)| o == outside).map(|(_, i)| *i)?
        };
        let b = self.by_in.get(self.bucket(&inside))?.lock();
        b.iter()
            .find(|m| m.inside == inside && m.outside == *outside && m.live(now))
            .copied()
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
        let ib = self.bucket(inside);
        let mut b = self.by_in.get(ib)?.lock();
        self.reap(&mut b, now);
        if let Some(m) = self.live_or_drop(&mut b, inside, now) {
            m.grace_until = m.grace_until.max(now + GRACE_MS);
            return Some((m.outside.addr, m.outside.port));
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
            if self.claim(&mut b, ib, inside, &outside, now) {
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
        let ib = self.bucket(inside);
        let Some(l) = self.by_in.get(ib) else {
            return false;
        };
        let mut b = l.lock();
        if let Some(m) = self.live_or_drop(&mut b, inside, now) {
            return m.outside == *outside;
        }
        self.count.load(Ordering::Relaxed) < self.max
            && self.claim(&mut b, ib, inside, outside, now)
    }

    /// `inside`'s live mapping in its locked bucket `b`; a dead one is dropped (its
    /// outside endpoint is free again, this inside endpoint starts over).
    fn live_or_drop<'b>(
        &self,
        b: &'b mut Vec<Mapping>,
        inside: &Endpoint,
        now: u64,
    ) -> Option<&'b mut Mapping> {
        let i = b.iter().position(|m| m.inside == *inside)?;
        if b.get(i).is_some_and(|m| m.live(now)) {
            return b.get_mut(i);
        }
        let old = b.swap_remove(i);
        self.remove_out(&old.outside, inside);
        self.count.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Drops every dead mapping of the locked bucket `b` (a refused connection's whose
    /// grace is over), freeing their outside endpoints: so that dead mappings neither
    /// lengthen the bucket's scans nor count against the table's maximum.
    fn reap(&self, b: &mut Vec<Mapping>, now: u64) {
        let mut k = 0;
        while let Some(m) = b.get(k) {
            if m.live(now) {
                k += 1;
            } else {
                let old = b.swap_remove(k);
                self.remove_out(&old.outside, &old.inside);
                self.count.fetch_sub(1, Ordering::Relaxed);
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
            let i = start.wrapping_add(k) & self.mask;
            if i == held {
                continue;
            }
            if let Some(mut b) = self.by_in.get(i).and_then(|l| l.try_lock()) {
                self.reap(&mut b, now);
            }
        }
    }

    /// Gives `inside` (which has no mapping; its bucket `ib` is `b`, locked) the outside
    /// endpoint `outside` if no live mapping holds it (a dead holder's is taken over).
    fn claim(
        &self,
        b: &mut Vec<Mapping>,
        ib: usize,
        inside: &Endpoint,
        outside: &Endpoint,
        now: u64,
    ) -> bool {
        let Some(ob) = self.by_out.get(self.bucket(outside)) else {
            return false;
        };
        let mut o = ob.lock();
        if let Some(j) = o.iter().position(|(x, _)| x == outside) {
            let holder = o[j].1;
            // Taken, unless its mapping is dead: then it is taken over.
            let hb = self.bucket(&holder);
            // (freed, a mapping record went with it)
            let dead = |v: &mut Vec<Mapping>| {
                match v
                    .iter()
                    .position(|m| m.inside == holder && m.outside == *outside)
                {
                    Some(k) if !v[k].live(now) => {
                        v.swap_remove(k);
                        (true, true)
                    }
                    Some(_) => (false, false),
                    // A stale reverse entry: its mapping is gone already.
                    None => (true, false),
                }
            };
            let (freed, record) = if hb == ib {
                dead(b)
            } else {
                match self.by_in.get(hb).and_then(|l| l.try_lock()) {
                    Some(mut v) => dead(&mut v),
                    None => (false, false),
                }
            };
            if !freed {
                return false;
            }
            o.swap_remove(j);
            if record {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
        o.push((*outside, *inside));
        drop(o);
        b.push(Mapping {
            inside: *inside,
            outside: *outside,
            conns: 0,
            grace_until: now + GRACE_MS,
            peers: [[0; 16]; PEERS],
            n_peers: 0,
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drops the reverse entry `outside` → `inside` (with `inside`'s bucket locked).
    fn remove_out(&self, outside: &Endpoint, inside: &Endpoint) {
        if let Some(ob) = self.by_out.get(self.bucket(outside)) {
            let mut o = ob.lock();
            if let Some(j) = o.iter().position(|(x, i)| x == outside && i == inside) {
                o.swap_remove(j);
            }
        }
    }

    /// A connection now uses the mapping `inside` ↔ `outside` (if there is one); `peer`:
    /// the address it was opened to, for address-dependent filtering.
    pub fn conn_added(&self, inside: &Endpoint, outside: &Endpoint, peer: Option<&[u8; 16]>) {
        if let Some(l) = self.by_in.get(self.bucket(inside)) {
            let mut b = l.lock();
            if let Some(m) = b
                .iter_mut()
                .find(|m| m.inside == *inside && m.outside == *outside)
            {
                m.conns = m.conns.saturating_add(1);
                if let Some(p) = peer {
                    m.add_peer(p);
                }
            }
        }
    }

    /// A connection that used the mapping `inside` ↔ `outside` is gone; the mapping dies
    /// with its last one and is removed at once, its outside endpoint free again (a dead
    /// mapping left in place was only dropped when its inside endpoint came back or its
    /// outside endpoint was claimed: with endpoints that never come back, such as clients'
    /// ephemeral ports, dead mappings filled the table to its maximum and every new
    /// inside endpoint was then refused as `nat_exhausted`).
    pub fn conn_removed(&self, inside: &Endpoint, outside: &Endpoint) {
        if let Some(l) = self.by_in.get(self.bucket(inside)) {
            let mut b = l.lock();
            if let Some(k) = b
                .iter()
                .position(|m| m.inside == *inside && m.outside == *outside)
            {
                let last = b.get_mut(k).is_some_and(|m| {
                    m.conns = m.conns.saturating_sub(1);
                    m.conns == 0
                });
                if last {
                    let old = b.swap_remove(k);
                    self.remove_out(&old.outside, &old.inside);
                    self.count.fetch_sub(1, Ordering::Relaxed);
                }
            }
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
    /// makes the mapping, and the burst's prefetch pass must not (nor pay its locks).
    fn hint(&self, orig: &ConnKey) -> Option<ConnKey> {
        let Some(snat) = self.mapped_snat(orig) else {
            return self.spec.candidate(orig, 0);
        };
        let mut reply = self.reply_before_snat(orig)?;
        let (addr, Some(port)) = pick(snat, Side::Snat, orig, 0)? else {
            return None;
        };
        reply.dst = addr;
        reply.dport = port;
        Some(reply)
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
