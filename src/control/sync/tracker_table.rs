//! The tracker as a [`SyncTable`]: records from a peer are learned and unlearned through
//! `conntrack::learn` (the normal insert and remove paths), a bulk walk reads the table
//! bucket by bucket, and a local event becomes the record to send.
//!
//! What is sent for an event: `[NEW]` and `[UPDATE]` send the connection as it is in the
//! table when the event is read (one lookup; gone by then, nothing: its destroy follows);
//! only a `[DESTROY]` by flush sends a delete. Expiry is not sent: timeouts run on both
//! sides, and a peer's copy never outlives the original (it carries the original's
//! remaining time, which traffic only extends, and periodic refreshes carry that), while a
//! delete sent on expiry could cross a new connection on the same ports and remove it.
//!
//! The end of a bracketed bulk stream from a peer (a resync it was asked for, or the
//! repair of an overflowed queue) removes the connections learned from that peer that the
//! stream did not repeat ([`LearnedStreams`]): every learned connection is stamped with
//! the number of its peer's stream in progress, a stream's begin bumps that number, and
//! its end starts a walk over the table, [`SWEEP_BUCKETS`] buckets per control tick, that
//! unlearns the connections of that peer with an older number. Records that arrive while
//! the walk runs carry the current number and stay; a new stream from the peer cancels the
//! walk (its own end starts another). Connections this instance made are never removed,
//! nor are learned ones its datapath has forwarded (`conn::FORWARDED`): they are this
//! instance's too, and the refresh sends them back to the peer they came from.

use super::endpoint::SyncTable;
use super::record::{SyncOp, SyncRecord};
use crate::conntrack::conn::FORWARDED;
use crate::conntrack::events::{CtEvent, DestroyReason, EventKind};
use crate::conntrack::learn::LearnedConn;
use crate::conntrack::{ConnSnapshot, Conntrack, CtWorker, TimeoutAttr};

/// Buckets a walk call reads at most.
const WALK_BUCKETS: usize = 256;
/// Buckets the removal of unrepeated learned connections reads per tick and peer.
pub const SWEEP_BUCKETS: usize = 4_096;

/// Per peer: the number of its current bulk stream, and the walk removing what its last
/// completed stream did not repeat (see the module doc).
#[derive(Debug, Default)]
pub struct LearnedStreams {
    peers: Vec<PeerStream>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PeerStream {
    number: u16,
    /// The next bucket of the removal walk, while one runs.
    sweep: Option<usize>,
    removed: u64,
}

impl LearnedStreams {
    fn peer(&mut self, peer: usize) -> &mut PeerStream {
        if self.peers.len() <= peer {
            self.peers.resize(peer + 1, PeerStream::default());
        }
        &mut self.peers[peer]
    }

    /// Connections removed because a stream of `peer` did not repeat them.
    pub fn removed(&self, peer: usize) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.removed)
    }

    /// True while a removal walk runs.
    pub fn sweeping(&self) -> bool {
        self.peers.iter().any(|p| p.sweep.is_some())
    }

    /// Advances every running removal walk by at most `buckets` buckets.
    pub fn sweep(&mut self, worker: &mut CtWorker<'_>, buckets: usize) {
        let n = worker.tracker().table().n_buckets();
        for (i, p) in self.peers.iter_mut().enumerate() {
            let Some(from) = p.sweep else { continue };
            let to = from.saturating_add(buckets).min(n);
            let origin = u8::try_from(i + 1).unwrap_or(u8::MAX);
            p.removed += worker.unlearn_unrepeated(origin, p.number, from..to) as u64;
            p.sweep = (to < n).then_some(to);
        }
    }
}

/// The record of a connection snapshot at `now` (tracker milliseconds).
pub fn record_of(s: &ConnSnapshot, now: u64) -> SyncRecord {
    SyncRecord {
        op: SyncOp::Upsert,
        orig: s.orig,
        reply: s.reply,
        nat: s.nat,
        tattr: s.timeout_attr,
        timeout_ms: u32::try_from(s.expiry.saturating_sub(now)).unwrap_or(u32::MAX),
        mark: s.mark,
        label: s.label,
        l4: s.l4,
    }
}

/// The record to send for a local event, if any (see the module doc).
pub fn record_of_event(ct: &Conntrack, ev: &CtEvent, now: u64) -> Option<SyncRecord> {
    match ev.kind {
        EventKind::New | EventKind::Update => {
            let words = ev.orig.to_words();
            let hash = ct.table().hasher().hash_words(&words);
            let hit = ct.table().lookup(&words, hash, now)?;
            let s = ct.snapshot(hit.idx, hit.gen)?;
            (s.orig == ev.orig).then(|| record_of(&s, now))
        }
        EventKind::Destroy if ev.reason == DestroyReason::Flushed => {
            Some(SyncRecord::delete(ev.orig, ev.reply))
        }
        EventKind::Destroy => None,
    }
}

/// A worker handle on the tracker at time `now`, with the peers' stream numbers, as the
/// table a sync endpoint uses.
pub struct TrackerTable<'w, 'a> {
    pub worker: &'w mut CtWorker<'a>,
    pub now: u64,
    pub streams: &'w mut LearnedStreams,
}

impl SyncTable for TrackerTable<'_, '_> {
    fn bulk_begin(&mut self, peer: usize) {
        let p = self.streams.peer(peer);
        // 15 bits: the top one of a connection's number is `FORWARDED`.
        p.number = p.number.wrapping_add(1) & !FORWARDED;
        p.sweep = None;
    }

    fn bulk_end(&mut self, peer: usize) {
        self.streams.peer(peer).sweep = Some(0);
    }

    fn apply(&mut self, peer: usize, rec: &SyncRecord, walked: bool) -> bool {
        match rec.op {
            SyncOp::Delete => {
                self.worker.unlearn(&rec.orig, self.now);
                true
            }
            SyncOp::Upsert => {
                let Some(&attr) = TimeoutAttr::ALL.get(rec.tattr as usize) else {
                    return false;
                };
                let c = LearnedConn {
                    orig: rec.orig,
                    reply: rec.reply,
                    nat: rec.nat,
                    attr,
                    timeout_ms: u64::from(rec.timeout_ms),
                    mark: rec.mark,
                    label: rec.label,
                    l4: rec.l4,
                    origin: u8::try_from(peer + 1).unwrap_or(u8::MAX),
                    stream: self.streams.peer(peer).number,
                };
                self.worker.learn(&c, self.now, walked).is_ok()
            }
        }
    }

    fn walk(
        &mut self,
        skip_from: Option<usize>,
        cursor: u64,
        max: usize,
        out: &mut Vec<SyncRecord>,
    ) -> Option<u64> {
        let ct = self.worker.tracker();
        let n = ct.table().n_buckets();
        let skip = skip_from.map(|p| u8::try_from(p + 1).unwrap_or(u8::MAX));
        let now = self.now;
        let start = out.len();
        let mut b = usize::try_from(cursor).unwrap_or(n);
        let end = b.saturating_add(WALK_BUCKETS).min(n);
        while b < end && out.len() - start < max {
            ct.for_each_conn(b..b + 1, |s| {
                // What the peer taught us goes back only once forwarded here.
                if s.expiry > now && (skip != Some(s.origin) || s.forwarded) {
                    out.push(record_of(s, now));
                }
            });
            b += 1;
        }
        (b < n).then_some(b as u64)
    }
}
