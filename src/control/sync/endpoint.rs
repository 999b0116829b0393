//! The reliable sync channel to each peer (conntrackd's "FTFW" idea): data messages carry
//! sequence numbers, every message carries a cumulative acknowledgement, the sender keeps
//! the unacknowledged messages in a bounded window and sends them again when no ack came
//! within the retransmission timeout (go-back-N), and a bulk resync streams the whole
//! table through the same sequenced channel.
//!
//! Pure state machine: no socket and no clock of its own. The caller hands in received
//! datagrams ([`SyncEndpoint::receive`]), local changes ([`SyncEndpoint::record`]) and
//! calls [`SyncEndpoint::poll`] every tick, which hands back the datagrams to send; the
//! table is reached through [`SyncTable`].
//!
//! Invariants:
//! * records of one peer are applied exactly in the sender's order: a data message is
//!   applied only when its sequence number is the next expected one; later ones are
//!   dropped (and come again), earlier ones are duplicates (acknowledged again);
//! * every message says the oldest sequence number its sender can still send (`base`): a
//!   receiver that knows nothing of the sender's boot (it just started, or the sender
//!   restarted: its boot id grew) expects that one next, so nothing still in flight is
//!   skipped; an instance that starts also asks every peer for a bulk resync;
//! * memory is bounded: at most `window` messages in flight and `pending_max` records
//!   queued per peer; past that the queue is dropped and replaced by a bulk stream of the
//!   table (which is newer than anything dropped), bracketed by [`F_BULK_BEGIN`] and
//!   [`F_BULK_END`] so the receiver can remove what the stream did not repeat;
//! * a datagram from an unknown address, malformed, unauthenticated or from an older boot
//!   of its peer changes nothing but a drop counter.

use super::auth::SyncKey;
use super::codec::{DropReason, Kind, Message, F_BULK_BEGIN, F_BULK_END, F_WALK, MAX_RECORDS};
use super::record::SyncRecord;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// The table the endpoint installs into and streams from.
pub trait SyncTable {
    /// Installs, updates or removes a connection learned from peer number `peer`;
    /// false when the table refused it (counted as `install_failed`). A record `walked`
    /// from the peer's table (not from an event) must not replace a connection this
    /// instance made itself: the peer's copy of it is older.
    fn apply(&mut self, peer: usize, rec: &SyncRecord, walked: bool) -> bool;
    /// A bulk stream from `peer` starts.
    fn bulk_begin(&mut self, _peer: usize) {}
    /// The bulk stream from `peer` ended: connections learned from `peer` that it did not
    /// repeat are gone on the peer and may be removed.
    fn bulk_end(&mut self, _peer: usize) {}
    /// Appends about `max` connections found from position `cursor` (0 starts a walk),
    /// leaving out those learned from peer `skip_from` when given; returns the position
    /// to continue from, or `None` when the walk is complete. A call does a bounded amount
    /// of work and may append fewer (even none) or a few more.
    fn walk(
        &mut self,
        skip_from: Option<usize>,
        cursor: u64,
        max: usize,
        out: &mut Vec<SyncRecord>,
    ) -> Option<u64>;
}

/// Tunables of the channel (times in milliseconds of the caller's clock).
#[derive(Clone, Debug)]
pub struct SyncParams {
    /// Data messages in flight per peer.
    pub window: usize,
    /// Retransmission timeout; it doubles after each retransmission that brought no
    /// acknowledgement, up to `rto_max_ms`.
    pub rto_ms: u64,
    pub rto_max_ms: u64,
    /// Records queued per peer before the queue is replaced by a bulk stream.
    pub pending_max: usize,
    /// An ack is sent at least this often (keepalive).
    pub keepalive_ms: u64,
    /// A peer not heard from for this long is lost.
    pub dead_ms: u64,
    /// A resync request is repeated this often until its stream ends.
    pub resync_retry_ms: u64,
    /// Calls of [`SyncTable::walk`] per peer and poll (paces a bulk stream).
    pub walk_calls_per_poll: usize,
    /// Every this often the whole table (less what was learned from the peer itself) is
    /// sent again, so remaining timeouts refreshed by traffic without an event reach the
    /// peer; 0 never.
    pub refresh_ms: u64,
}

impl Default for SyncParams {
    fn default() -> SyncParams {
        SyncParams {
            window: 128,
            rto_ms: 250,
            rto_max_ms: 2_000,
            pending_max: 262_144,
            keepalive_ms: 500,
            dead_ms: 3_000,
            resync_retry_ms: 1_000,
            walk_calls_per_poll: 64,
            refresh_ms: 0,
        }
    }
}

/// What `sync-status` shows of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Heard from recently, nothing being resynced.
    Connected,
    /// A bulk stream is running in either direction, or ours was asked for.
    Resyncing,
    /// Not heard from for `dead_ms` (or never).
    Lost,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Resyncing => "resyncing",
            PeerState::Lost => "lost",
        }
    }
}

/// Counters of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub conns_sent: u64,
    pub conns_received: u64,
    /// Data messages sent again.
    pub retransmitted: u64,
    /// Data messages received ahead of a gap (dropped, sent again by the peer).
    pub out_of_order: u64,
    /// Records the table refused.
    pub install_failed: u64,
    /// Times the queue overflowed and was replaced by a bulk stream.
    pub overflows: u64,
    /// Bulk streams sent and received completely.
    pub bulk_sent: u64,
    pub bulk_received: u64,
}

/// A peer's status.
#[derive(Clone, Copy, Debug)]
pub struct PeerStatus {
    pub addr: SocketAddr,
    pub state: PeerState,
    pub counters: PeerCounters,
    /// Age of the oldest unacknowledged message (0 when all are acknowledged).
    pub lag_ms: u64,
    /// Records waiting: queued plus in flight.
    pub queued: usize,
}

struct InFlight {
    seq: u64,
    flags: u8,
    nonce: u64,
    records: Vec<SyncRecord>,
    first_sent: u64,
    last_sent: u64,
}

struct Bulk {
    cursor: u64,
    nonce: u64,
    begun: bool,
    /// Bracketed by [`F_BULK_BEGIN`] and [`F_BULK_END`], so that the peer removes what
    /// it learned from us and the stream did not repeat (a resync, a repair).
    bracket: bool,
    /// Everything, also what the peer taught us (a bracketed stream: a resync, the peer
    /// lost its table, or a repair; the peer removes what it does not repeat); else (a
    /// refresh) what it taught us is left out: it has it, and fresher.
    all: bool,
    /// Walked but not yet sent (a walk may return more than a message holds).
    spill: VecDeque<SyncRecord>,
    walked: bool,
}

impl Bulk {
    fn new(nonce: u64, bracket: bool, all: bool) -> Bulk {
        Bulk {
            cursor: 0,
            nonce,
            begun: false,
            bracket,
            all,
            spill: VecDeque::new(),
            walked: false,
        }
    }
}

struct Peer {
    addr: SocketAddr,
    next_seq: u64,
    inflight: VecDeque<InFlight>,
    pending: VecDeque<SyncRecord>,
    overflowed: bool,
    /// When the last refresh stream started.
    last_refresh: u64,
    /// The retransmission timeout in force (backs off while nothing is acknowledged).
    rto: u64,
    bulk: Option<Bulk>,
    /// (boot, nonce) of the last resync request served.
    served: (u64, u64),
    rx_boot: Option<u64>,
    /// The next data sequence number expected; `None` until the first one of a boot
    /// heard only after we started.
    expected: Option<u64>,
    rx_in_bulk: bool,
    ack_due: bool,
    last_heard: Option<u64>,
    last_sent: Option<u64>,
    /// Our pending resync request: its nonce and when it was last sent.
    want_resync: Option<(u64, Option<u64>)>,
    c: PeerCounters,
}

impl Peer {
    fn new(addr: SocketAddr, rto: u64) -> Peer {
        Peer {
            addr,
            next_seq: 1,
            inflight: VecDeque::new(),
            pending: VecDeque::new(),
            overflowed: false,
            last_refresh: 0,
            rto,
            bulk: None,
            served: (0, 0),
            rx_boot: None,
            expected: None,
            rx_in_bulk: false,
            ack_due: false,
            last_heard: None,
            last_sent: None,
            want_resync: None,
            c: PeerCounters::default(),
        }
    }
}

/// One instance's end of the sync channels to all its peers.
pub struct SyncEndpoint {
    boot: u64,
    key: Option<SyncKey>,
    params: SyncParams,
    peers: Vec<Peer>,
    drops: [u64; 4],
    nonces: u64,
    buf: Vec<u8>,
}

impl SyncEndpoint {
    /// An endpoint of boot id `boot` (it must grow across restarts of this instance: the
    /// wall clock in microseconds at start does) talking to `peers`. It starts by asking
    /// every peer for a bulk resync.
    pub fn new(
        boot: u64,
        peers: &[SocketAddr],
        key: Option<SyncKey>,
        params: SyncParams,
    ) -> SyncEndpoint {
        let rto = params.rto_ms;
        let mut e = SyncEndpoint {
            boot: boot.max(1),
            key,
            params,
            peers: peers.iter().map(|&addr| Peer::new(addr, rto)).collect(),
            drops: [0; 4],
            nonces: 0,
            buf: Vec::with_capacity(super::codec::MAX_MESSAGE),
        };
        e.request_resync();
        e
    }

    /// This instance's boot id.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// Adds a peer after the start (a reload that appends to `peers`; the others keep
    /// their numbers and their channels): asks it for its table, and streams ours to it
    /// bracketed, as a repair (it has not heard from us, and drops what it learned from
    /// us before and the stream does not repeat).
    pub fn add_peer(&mut self, addr: SocketAddr) {
        let mut p = Peer::new(addr, self.params.rto_ms);
        self.nonces += 1;
        p.want_resync = Some((self.boot.wrapping_add(self.nonces), None));
        p.bulk = Some(Bulk::new(0, true, true));
        self.peers.push(p);
    }

    /// Replaces the message key (a reload): messages are signed and checked with the new
    /// one from now on.
    pub fn set_key(&mut self, key: Option<SyncKey>) {
        self.key = key;
    }

    /// Sets the interval of the periodic refresh (a reload; 0: off).
    pub fn set_refresh_ms(&mut self, ms: u64) {
        self.params.refresh_ms = ms;
    }

    /// Asks every peer to stream its whole table.
    pub fn request_resync(&mut self) {
        for p in &mut self.peers {
            self.nonces += 1;
            p.want_resync = Some((self.boot.wrapping_add(self.nonces), None));
        }
    }

    /// Queues a local change for every peer.
    pub fn record(&mut self, rec: SyncRecord) {
        for p in &mut self.peers {
            if p.overflowed {
                continue;
            }
            if p.pending.len() >= self.params.pending_max {
                p.overflowed = true;
                p.pending.clear();
            } else {
                p.pending.push_back(rec);
            }
        }
    }

    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Handles a datagram from `from` at `now`.
    pub fn receive(&mut self, from: SocketAddr, b: &[u8], now: u64, table: &mut dyn SyncTable) {
        let Some(pi) = self.peers.iter().position(|p| p.addr == from) else {
            self.drops[DropReason::UnknownPeer as usize] += 1;
            return;
        };
        let m = match Message::decode(b, self.key.as_ref()) {
            Ok(m) => m,
            Err(r) => {
                self.drops[r as usize] += 1;
                return;
            }
        };
        let boot = self.boot;
        let p = &mut self.peers[pi];
        match p.rx_boot {
            Some(rb) if m.boot < rb => {
                self.drops[DropReason::Stale as usize] += 1;
                return;
            }
            Some(rb) if m.boot > rb => {
                // The peer restarted: a new sequence space, and no request of its old boot
                // is served any more.
                p.rx_boot = Some(m.boot);
                p.expected = Some(m.base);
                p.rx_in_bulk = false;
                p.served = (0, 0);
            }
            Some(_) => {}
            None => {
                p.rx_boot = Some(m.boot);
                p.expected = Some(m.base);
            }
        }
        p.last_heard = Some(now);
        p.c.msgs_received += 1;
        if m.ack_boot == boot {
            while p.inflight.front().is_some_and(|f| f.seq <= m.ack_seq) {
                p.inflight.pop_front();
                p.rto = self.params.rto_ms;
            }
        }
        match m.kind {
            Kind::Ack => {}
            Kind::ResyncRequest => {
                if p.served != (m.boot, m.nonce) {
                    p.served = (m.boot, m.nonce);
                    p.bulk = Some(Bulk::new(m.nonce, true, true));
                }
            }
            Kind::Data => {
                p.ack_due = true;
                let exp = *p.expected.get_or_insert(m.base);
                if m.seq < exp {
                    return; // a duplicate: our ack was lost; the ack goes out again
                }
                if m.seq > exp {
                    p.c.out_of_order += 1;
                    return;
                }
                p.expected = Some(exp + 1);
                if m.flags & F_BULK_BEGIN != 0 {
                    p.rx_in_bulk = true;
                    table.bulk_begin(pi);
                }
                for r in &m.records {
                    if table.apply(pi, r, m.flags & F_WALK != 0) {
                        p.c.conns_received += 1;
                    } else {
                        p.c.install_failed += 1;
                    }
                }
                if m.flags & F_BULK_END != 0 {
                    p.rx_in_bulk = false;
                    p.c.bulk_received += 1;
                    table.bulk_end(pi);
                    if p.want_resync.is_some_and(|(n, _)| n == m.nonce) {
                        p.want_resync = None;
                    }
                }
            }
        }
    }

    /// Runs the timers at `now`: retransmissions, new data within the window (queued
    /// changes first, then the next piece of a bulk stream), acks and keepalives, resync
    /// requests. Every datagram to send goes to `send`.
    pub fn poll(
        &mut self,
        now: u64,
        table: &mut dyn SyncTable,
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) {
        let boot = self.boot;
        let prm = &self.params;
        let key = self.key.as_ref();
        let buf = &mut self.buf;
        for (pi, p) in self.peers.iter_mut().enumerate() {
            let ack_boot = p.rx_boot.unwrap_or(0);
            let ack_seq = p.expected.map_or(0, |e| e - 1);
            let lost = p
                .last_heard
                .is_none_or(|h| now.saturating_sub(h) > prm.dead_ms);
            let mut emit = |p: &mut Peer, m: &Message| {
                m.encode(key, buf);
                send(p.addr, buf);
                p.c.msgs_sent += 1;
                p.last_sent = Some(now);
                p.ack_due = false;
            };
            let header = |p: &Peer, kind, seq, flags, nonce, records| Message {
                kind,
                flags,
                boot,
                seq,
                ack_boot,
                ack_seq,
                nonce,
                base: p.inflight.front().map_or(p.next_seq, |f| f.seq),
                records,
            };
            // Retransmit everything in flight when the oldest has waited an RTO; a lost
            // peer only gets the oldest, as a probe.
            if p.inflight
                .front()
                .is_some_and(|f| now.saturating_sub(f.last_sent) >= p.rto)
            {
                p.rto = (p.rto * 2).min(prm.rto_max_ms.max(prm.rto_ms));
                let n = if lost { 1 } else { p.inflight.len() };
                for i in 0..n {
                    let f = &p.inflight[i];
                    let m = header(p, Kind::Data, f.seq, f.flags, f.nonce, f.records.clone());
                    emit(p, &m);
                    p.inflight[i].last_sent = now;
                    p.c.retransmitted += 1;
                }
            }
            if p.overflowed {
                p.overflowed = false;
                p.c.overflows += 1;
                // A repair: bracketed, so the peer drops what we deleted meanwhile; and
                // whole, since the peer drops what the stream does not repeat (its copy of
                // a connection it taught us may have been learned back from us after a
                // restart).
                p.bulk = Some(Bulk::new(0, true, true));
            }
            if prm.refresh_ms > 0
                && p.bulk.is_none()
                && now.saturating_sub(p.last_refresh) >= prm.refresh_ms
            {
                p.last_refresh = now;
                p.bulk = Some(Bulk::new(0, false, false));
            }
            let mut walks = prm.walk_calls_per_poll;
            while p.inflight.len() < prm.window {
                let take = p.pending.len().min(MAX_RECORDS);
                let mut records: Vec<SyncRecord> = p.pending.drain(..take).collect();
                let (mut flags, mut nonce) = (0, 0);
                if records.is_empty() {
                    if let Some(b) = p.bulk.as_mut() {
                        flags |= F_WALK;
                        if !b.begun {
                            b.begun = true;
                            if b.bracket {
                                flags |= F_BULK_BEGIN;
                            }
                        }
                        let take = b.spill.len().min(MAX_RECORDS);
                        records.extend(b.spill.drain(..take));
                        let skip = (!b.all).then_some(pi);
                        while records.len() < MAX_RECORDS && walks > 0 && !b.walked {
                            walks -= 1;
                            let want = MAX_RECORDS - records.len();
                            match table.walk(skip, b.cursor, want, &mut records) {
                                Some(c) => b.cursor = c,
                                None => b.walked = true,
                            }
                        }
                        if records.len() > MAX_RECORDS {
                            b.spill.extend(records.drain(MAX_RECORDS..));
                        }
                        if b.walked && b.spill.is_empty() {
                            if b.bracket {
                                flags |= F_BULK_END;
                                nonce = b.nonce;
                            }
                            p.bulk = None;
                            p.c.bulk_sent += 1;
                        }
                    }
                }
                if records.is_empty() && flags & !F_WALK == 0 {
                    break;
                }
                let seq = p.next_seq;
                p.next_seq += 1;
                p.c.conns_sent += records.len() as u64;
                let mut m = header(p, Kind::Data, seq, flags, nonce, records);
                m.base = m.base.min(seq);
                emit(p, &m);
                p.inflight.push_back(InFlight {
                    seq,
                    flags,
                    nonce,
                    records: m.records,
                    first_sent: now,
                    last_sent: now,
                });
            }
            if p.ack_due
                || p.last_sent
                    .is_none_or(|t| now.saturating_sub(t) >= prm.keepalive_ms)
            {
                emit(p, &header(p, Kind::Ack, 0, 0, 0, Vec::new()));
            }
            if let Some((nonce, last)) = p.want_resync {
                if last.is_none_or(|t| now.saturating_sub(t) >= prm.resync_retry_ms) {
                    emit(p, &header(p, Kind::ResyncRequest, 0, 0, nonce, Vec::new()));
                    p.want_resync = Some((nonce, Some(now)));
                }
            }
        }
    }

    /// The status of every peer at `now`.
    pub fn status(&self, now: u64) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| {
                let lost = p
                    .last_heard
                    .is_none_or(|h| now.saturating_sub(h) > self.params.dead_ms);
                let state = if lost {
                    PeerState::Lost
                } else if p.want_resync.is_some() || p.rx_in_bulk || p.bulk.is_some() {
                    PeerState::Resyncing
                } else {
                    PeerState::Connected
                };
                PeerStatus {
                    addr: p.addr,
                    state,
                    counters: p.c,
                    lag_ms: p
                        .inflight
                        .front()
                        .map_or(0, |f| now.saturating_sub(f.first_sent)),
                    queued: p.pending.len()
                        + p.inflight.iter().map(|f| f.records.len()).sum::<usize>(),
                }
            })
            .collect()
    }

    /// True when nothing is queued, in flight or being streamed to any peer.
    pub fn idle(&self) -> bool {
        self.peers.iter().all(|p| {
            p.pending.is_empty() && p.inflight.is_empty() && p.bulk.is_none() && !p.overflowed
        })
    }
}
