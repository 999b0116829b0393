//! Connections learned from another instance (high-availability sync): installed,
//! updated and removed through the tracker's own insert and remove paths, so a learned
//! connection takes a pool record, counts against its zone's and the global limit, locks
//! its buckets in order and occupies its reply tuple exactly like a local one. What sets
//! it apart: its `origin` (the peer's number, shown by `dump-conntrack -m`), no `created`
//! count and no event (the event stream tells what this instance's datapath did).
//!
//! A learned TCP connection keeps both peers' states, window scales and largest windows,
//! but not their sequence numbers: the sender's were already stale when they arrived.
//! Both peers' `seqlo`/`seqhi` are set to 0 (a pair no tracked peer ever has: `seqhi` is
//! always past `seqlo`), which the TCP tracker reads as "re-learn this end from its next
//! segment" ([`super::l4::tcp`]), as it does for a connection picked up mid-stream.
//!
//! A learned connection also carries the number of its peer's bulk stream (resync) it was
//! last learned in ([`LearnedConn::stream`]); when a stream ends, the learned connections
//! of that peer with another number are gone on the peer, and
//! [`CtWorker::unlearn_unrepeated`] removes them, a few buckets per call. A connection
//! this instance made (origin 0) is never removed that way, nor is a learned one this
//! instance's datapath has forwarded a packet of ([`FORWARDED`], set by the worker that
//! forwards it, kept when the peer updates the connection): after a failover the standby
//! carries the connections it learned from the active one, and if that one restarts and
//! answers a resync request with its new, empty table, the standby keeps them.

use super::conn::{L4State, TcpState, ASSURED, DIR_ORIG, FORWARDED};
use super::events::DestroyReason;
use super::key::ConnKey;
use super::l4::tcp;
use super::table::Hit;
use super::timeouts::TimeoutAttr;
use super::tracker::{CreateError, CtWorker, Refusal};
use crate::wire::parse::proto;
use std::sync::atomic::Ordering;

/// A connection as a sync peer describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnedConn {
    pub orig: ConnKey,
    /// Reply tuple (with NAT, the translated one).
    pub reply: ConnKey,
    /// NAT flags (`CtState::SNAT`/`DNAT` bits).
    pub nat: u8,
    pub attr: TimeoutAttr,
    /// Milliseconds until it expires (the peer's remaining timeout).
    pub timeout_ms: u64,
    pub mark: u32,
    pub label: u128,
    pub l4: L4State,
    /// The peer's number, 1 to 255.
    pub origin: u8,
    /// The number of the peer's bulk stream running when it was learned (the caller
    /// counts them per peer, in 15 bits; see [`CtWorker::unlearn_unrepeated`]).
    pub stream: u16,
}

/// Why a learned connection was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnError {
    /// A limit, a full table, or its reply tuple is another connection's.
    Refused(Refusal),
    /// Its original key is the reply key of another connection here.
    Conflict,
}

/// What [`CtWorker::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    Installed(Hit),
    Updated(Hit),
    /// Left as it was: a connection this instance made, and `keep_local` was asked.
    KeptLocal(Hit),
}

/// The L4 state to install: for TCP, the sequence numbers forgotten (see the module doc).
/// The `tattr` byte of a learned connection: its class, assured when the class implies
/// it (a peer sends no status bits: established or closing TCP, UDP with replies).
fn learned_status(a: TimeoutAttr) -> u8 {
    use TimeoutAttr::*;
    let assured = matches!(a, TcpEstablished | TcpFinWait | TcpTimeWait | UdpMultiple);
    a as u8 | if assured { ASSURED } else { 0 }
}

fn install_l4(c: &LearnedConn) -> L4State {
    let mut l4 = c.l4;
    if c.orig.proto == proto::TCP {
        for p in &mut l4.peer {
            tcp::forget_seqs(p);
            p.max_win = p.max_win.max(1);
        }
    }
    l4
}

/// The L4 state and timeout class of a connection known here (`local`) updated by the
/// peer's record `c`. Non-TCP: the peer's state. TCP: each end's state is the further of
/// the two views (states only advance; a record of a reused port, whose ends are not both
/// closed while here they are, replaces it), and an end this instance never saw (its
/// segments cross the peer: asymmetric routes through an active/active pair) that the
/// peer saw answer (`SYN_SENT` there) is established when this instance's datapath has
/// seen the other end (its sequence numbers are known here; a learned copy's never are),
/// which the peer saw acknowledged: each instance sees one direction only, and no single
/// view of the handshake ever reaches both ends established (it would stay in the opening
/// timeout and expire on both). Sequence numbers are forgotten either way (the traffic may
/// have moved here since), so only the first update after the handshake can do that.
fn merge_l4(c: &LearnedConn, local: &L4State) -> (L4State, TimeoutAttr) {
    let mut l4 = install_l4(c);
    if c.orig.proto != proto::TCP {
        return (l4, c.attr);
    }
    let closed = |st: &L4State| st.peer.iter().all(|p| p.state >= TcpState::FinWait2);
    if closed(local) && !closed(&l4) {
        return (l4, c.attr);
    }
    for i in 0..2 {
        if local.peer[i].state > l4.peer[i].state {
            l4.peer[i] = local.peer[i];
            tcp::forget_seqs(&mut l4.peer[i]);
        }
    }
    for (p, q) in [(0, 1), (1, 0)] {
        if l4.peer[p].state == TcpState::SynSent
            && local.peer[p].state == TcpState::Closed
            && local.peer[q].state >= TcpState::SynSent
            && (local.peer[q].seqlo, local.peer[q].seqhi) != (0, 0)
            && l4.peer[q].state >= TcpState::Established
        {
            l4.peer[p].state = TcpState::Established;
        }
    }
    let attr = if l4 == install_l4(c) {
        c.attr
    } else {
        tcp::timeout_for(&l4.peer[0], &l4.peer[1])
    };
    (l4, attr)
}

impl CtWorker<'_> {
    /// Installs `c`, or updates it in place when a connection with its original key and
    /// reply tuple exists (its state merged with `c`'s, see `merge_l4`; a connection made
    /// here keeps origin 0); one with the same original key but another reply tuple
    /// (another NAT binding) is replaced. With `keep_local`, a connection this instance made
    /// (origin 0) is left alone (the peer's copy came from a table walk and is older).
    pub fn learn(
        &mut self,
        c: &LearnedConn,
        now: u64,
        keep_local: bool,
    ) -> Result<Learned, LearnError> {
        let ct = self.tracker();
        let words = c.orig.to_words();
        let hash = ct.table().hasher().hash_words(&words);
        if let Some(hit) = ct.table().lookup(&words, hash, now) {
            if hit.dir != DIR_ORIG {
                return Err(LearnError::Conflict);
            }
            if let Some(conn) = ct.conn_of(&hit) {
                if keep_local && conn.origin() == 0 {
                    return Ok(Learned::KeptLocal(hit));
                }
                if ct.table().key(hit.idx, 1) == c.reply {
                    let attr = conn.with_l4(|st| {
                        let (l4, attr) = merge_l4(c, st);
                        *st = l4;
                        attr
                    });
                    let mut expiry = now + c.timeout_ms;
                    if attr != c.attr {
                        let zone = ct.zones().get(c.orig.zone);
                        expiry = expiry.max(now + ct.timeout_ms(zone, attr));
                    }
                    let kept = conn.expiry.load(Ordering::Relaxed);
                    conn.expiry.store(expiry.max(kept), Ordering::Relaxed);
                    conn.tattr.store(learned_status(attr), Ordering::Relaxed);
                    conn.set_mark(c.mark);
                    conn.set_label(c.label);
                    // A connection made here stays this instance's: its walks keep
                    // sending it, and the end of the peer's stream (which removes only
                    // what was learned from that peer) cannot take it. A learned one
                    // forwarded here stays so.
                    if conn.origin() != 0 {
                        let fwd = conn.stream.load(Ordering::Relaxed) & FORWARDED;
                        conn.origin.store(c.origin, Ordering::Relaxed);
                        conn.stream
                            .store(c.stream & !FORWARDED | fwd, Ordering::Relaxed);
                    }
                    return Ok(Learned::Updated(hit));
                }
            }
            let ev = (self.shard(), DestroyReason::Synced);
            ct.remove(hit.idx, hit.gen, Some(self.cache()), ev);
        }
        let reply_hash = ct.table().hasher().hash_words(&c.reply.to_words());
        let init = |conn: &super::conn::Conn, _: &super::zones::Zone| {
            conn.with_l4(|st| *st = install_l4(c));
            conn.expiry.store(now + c.timeout_ms, Ordering::Relaxed);
            conn.tattr.store(learned_status(c.attr), Ordering::Relaxed);
            conn.set_mark(c.mark);
            conn.set_label(c.label);
            conn.origin.store(c.origin, Ordering::Relaxed);
            conn.stream.store(c.stream & !FORWARDED, Ordering::Relaxed);
        };
        // Only the NAT bits travel; a control connection's ALG helper comes from this
        // instance's own `[[alg]]` rules, as for a local one.
        let nat = c.nat & super::conn::NAT_MASK;
        match self.insert_new(
            &c.orig,
            &c.reply,
            (hash, reply_hash),
            nat,
            now,
            true,
            true,
            init,
        ) {
            Ok(hit) => Ok(Learned::Installed(hit)),
            Err(CreateError::Refused(r)) => Err(LearnError::Refused(r)),
            // Inserted by someone else between the lookup and the insert: a worker made
            // it from a packet; the local one stands.
            Err(CreateError::Exists(_)) => Err(LearnError::Conflict),
        }
    }

    /// Removes the connection whose original key is `orig`, without an event; false when
    /// there is none.
    pub fn unlearn(&mut self, orig: &ConnKey, now: u64) -> bool {
        let ct = self.tracker();
        let words = orig.to_words();
        let hash = ct.table().hasher().hash_words(&words);
        match ct.table().lookup(&words, hash, now) {
            Some(hit) if hit.dir == DIR_ORIG => {
                let ev = (self.shard(), DestroyReason::Synced);
                ct.remove(hit.idx, hit.gen, Some(self.cache()), ev)
            }
            _ => false,
        }
    }

    /// Removes, from buckets `buckets`, the connections learned from peer `origin` in
    /// another stream than `stream` (the peer's bulk stream that just ended did not repeat
    /// them: the peer no longer has them), through the normal remove path (bucket locks,
    /// zone count, NAT mapping hooks), without events. Connections this instance made
    /// (origin 0) and learned ones it has forwarded ([`FORWARDED`]) are never touched.
    /// Returns how many were removed.
    pub fn unlearn_unrepeated(
        &mut self,
        origin: u8,
        stream: u16,
        buckets: std::ops::Range<usize>,
    ) -> usize {
        if origin == 0 {
            return 0;
        }
        let ct = self.tracker();
        let end = buckets.end.min(ct.table().n_buckets());
        let mut stale: Vec<(u32, u32)> = Vec::new();
        let mut removed = 0;
        for b in buckets.start..end {
            stale.clear();
            ct.table().for_each_in_bucket(b, |idx, gen| {
                let c = ct.table().conn(idx);
                let s = c.stream.load(Ordering::Relaxed);
                if c.origin() == origin && s & FORWARDED == 0 && s != stream {
                    stale.push((idx, gen));
                }
            });
            for &(idx, gen) in &stale {
                // Only this (control) shard learns, so origin and the stream number cannot
                // change between the read and the removal, but a worker may mark it
                // forwarded: claim it first (a worker's mark after the claim is a packet
                // racing the removal, as with any removal). A slot freed and reused
                // meanwhile has another generation and is left alone.
                let c = ct.table().conn(idx);
                let s = c.stream.load(Ordering::Relaxed);
                let claimed = s & FORWARDED == 0
                    && s != stream
                    && c.stream
                        .compare_exchange(s, stream, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok();
                if !claimed {
                    continue;
                }
                let ev = (self.shard(), DestroyReason::Synced);
                if ct.remove(idx, gen, Some(self.cache()), ev) {
                    removed += 1;
                }
            }
        }
        removed
    }
}
