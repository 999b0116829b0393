//! The sync endpoint on the control lcore: one more consumer of the event stream. Each
//! poll it turns the tracker's new events into records for the peers, reads what arrived
//! on its UDP socket (non-blocking, a bounded number of datagrams) into the tracker
//! through its own control-shard handle, runs the endpoint's timers and sends what they
//! produce. Nothing here runs on a worker; a full socket buffer or a lost event costs a
//! retransmission or waits for the next refresh, never a stall.

use super::auth::SyncKey;
use super::codec::{DropReason, MAX_MESSAGE};
use super::endpoint::{SyncEndpoint, SyncParams};
use super::tracker_table::{record_of_event, LearnedStreams, TrackerTable, SWEEP_BUCKETS};
use crate::config::{Config, SyncConfig};
use crate::conntrack::events::{wall_us, CtEvent, Subscription};
use crate::conntrack::{Conntrack, OwnedCtWorker};
use crate::control::event_consumers::EventConsumer;
use std::fmt::Write as _;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

/// Datagrams read per poll at most.
const RECV_PER_POLL: usize = 512;
/// Events the consumer's queue holds (past that they are lost; refreshes repair).
const EVENT_QUEUE: usize = 262_144;

/// The `sync` consumer.
pub struct SyncConsumer {
    ct: Arc<Conntrack>,
    worker: OwnedCtWorker,
    sub: Subscription,
    sock: UdpSocket,
    ep: SyncEndpoint,
    /// Per peer: its bulk stream numbers and the removal of what a stream did not repeat.
    streams: LearnedStreams,
    cfg: SyncConfig,
    authenticated: bool,
    /// The tracker clock's origin (the run's start): tracker ms = since then, plus one.
    start: Instant,
    evs: Vec<CtEvent>,
    buf: Vec<u8>,
    send_errors: u64,
    now_ms: u64,
}

impl SyncConsumer {
    /// Binds `cfg.local` and starts (asking every peer for a bulk resync).
    pub fn new(ct: &Arc<Conntrack>, cfg: &SyncConfig, start: Instant) -> Result<Self, String> {
        let key = match &cfg.key_file {
            Some(p) => Some(SyncKey::from_file(p)?),
            None => None,
        };
        let sock = UdpSocket::bind(cfg.local)
            .map_err(|e| format!("sync: cannot bind {}: {e}", cfg.local))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("sync: {}: {e}", cfg.local))?;
        let params = SyncParams {
            refresh_ms: u64::from(cfg.refresh_secs) * 1000,
            ..SyncParams::default()
        };
        Ok(SyncConsumer {
            worker: OwnedCtWorker::new(ct.clone(), ct.control_shard()),
            sub: ct.events().subscribe(EVENT_QUEUE),
            ct: ct.clone(),
            sock,
            ep: SyncEndpoint::new(wall_us(), &cfg.peers, key.clone(), params),
            streams: LearnedStreams::default(),
            cfg: cfg.clone(),
            authenticated: key.is_some(),
            start,
            evs: Vec::new(),
            buf: vec![0u8; MAX_MESSAGE + 1],
            send_errors: 0,
            now_ms: 0,
        })
    }

    /// Sets the tracker clock's origin (the run's start, known once the workers launch).
    pub fn set_clock_origin(&mut self, start: Instant) {
        self.start = start;
    }

    /// The tracker clock now (as the control loop computes it).
    fn clock(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// One round at tracker time `now`: events, received datagrams, timers.
    pub fn step(&mut self, now: u64) {
        self.now_ms = now;
        self.evs.clear();
        self.sub.drain(&mut self.evs);
        for e in &self.evs {
            if let Some(r) = record_of_event(&self.ct, e, now) {
                self.ep.record(r);
            }
        }
        let (ep, sock, buf) = (&mut self.ep, &self.sock, &mut self.buf);
        let streams = &mut self.streams;
        self.worker.with_worker(|w| {
            streams.sweep(w, SWEEP_BUCKETS);
            for _ in 0..RECV_PER_POLL {
                match sock.recv_from(buf) {
                    Ok((n, from)) => {
                        let mut t = TrackerTable {
                            worker: w,
                            now,
                            streams: &mut *streams,
                        };
                        ep.receive(from, &buf[..n], now, &mut t);
                    }
                    Err(_) => break,
                }
            }
        });
        let mut errors = 0;
        self.worker.with_worker(|w| {
            let mut t = TrackerTable {
                worker: w,
                now,
                streams: &mut *streams,
            };
            ep.poll(now, &mut t, &mut |to, m| {
                if sock.send_to(m, to).is_err() {
                    errors += 1;
                }
            });
        });
        self.send_errors += errors;
    }

    /// A reload's `[sync]`: the key, `refresh_interval`, `mode` and peers appended to
    /// `peers` take effect at once, without touching the channels (sequence numbers,
    /// queues, learned connections) of the peers that stay; a changed `local`, a removed
    /// section, or peers removed or reordered (their position is the `learned=` number of
    /// their connections) are kept until the next start. Nothing changes when the new
    /// key file cannot be read. Returns the line for the operator.
    pub fn reconfigure_sync(&mut self, new: Option<&SyncConfig>) -> Option<String> {
        let new = match new {
            Some(n) if *n == self.cfg => return None,
            Some(n) => n,
            None => return Some("sync: [sync] removed; sync stops at the next start".into()),
        };
        if new.local != self.cfg.local || !new.peers.starts_with(&self.cfg.peers) {
            return Some(
                "sync: [sync] local changed, or peers removed or reordered: the running [sync] is kept until the next start"
                    .into(),
            );
        }
        let key = match &new.key_file {
            Some(p) => match SyncKey::from_file(p) {
                Ok(k) => Some(k),
                Err(e) => return Some(format!("sync: {e}; the running [sync] is kept")),
            },
            None => None,
        };
        self.authenticated = key.is_some();
        self.ep.set_key(key);
        self.ep.set_refresh_ms(u64::from(new.refresh_secs) * 1000);
        let added = &new.peers[self.cfg.peers.len()..];
        for &a in added {
            self.ep.add_peer(a);
        }
        self.cfg = new.clone();
        Some(format!(
            "sync: reconfigured: mode={} auth={} refresh_interval={} peers={} ({} added)",
            new.mode.name(),
            if self.authenticated {
                "hmac-sha256"
            } else {
                "none"
            },
            new.refresh_secs,
            new.peers.len(),
            added.len()
        ))
    }

    /// The `sync-status` text.
    pub fn status_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "sync local={} mode={} auth={} peers={}",
            self.cfg.local,
            self.cfg.mode.name(),
            if self.authenticated {
                "hmac-sha256"
            } else {
                "none"
            },
            self.cfg.peers.len()
        );
        for (i, p) in self.ep.status(self.now_ms).iter().enumerate() {
            let c = &p.counters;
            let _ = writeln!(
                s,
                "peer {} {} state={} msgs_sent={} msgs_received={} conns_sent={} conns_received={} retransmitted={} install_failed={} resyncs_sent={} resyncs_received={} resync_removed={} lag_ms={} queued={}",
                i + 1,
                p.addr,
                p.state.name(),
                c.msgs_sent,
                c.msgs_received,
                c.conns_sent,
                c.conns_received,
                c.retransmitted,
                c.install_failed,
                c.bulk_sent,
                c.bulk_received,
                self.streams.removed(i),
                p.lag_ms,
                p.queued
            );
        }
        let _ = write!(s, "dropped");
        for r in DropReason::ALL {
            let _ = write!(s, " {}={}", r.name(), self.ep.dropped(r));
        }
        let _ = writeln!(
            s,
            " events_lost={} send_errors={}",
            self.sub.lost(),
            self.send_errors
        );
        s
    }
}

impl EventConsumer for SyncConsumer {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn poll(&mut self, _now_us: u64) {
        let now = self.clock();
        self.step(now);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut t = super::endpoint::PeerCounters::default();
        for p in self.ep.status(self.now_ms) {
            let c = p.counters;
            t.msgs_sent += c.msgs_sent;
            t.msgs_received += c.msgs_received;
            t.conns_sent += c.conns_sent;
            t.conns_received += c.conns_received;
            t.retransmitted += c.retransmitted;
            t.install_failed += c.install_failed;
        }
        vec![
            ("msgs_sent", t.msgs_sent),
            ("msgs_received", t.msgs_received),
            ("conns_sent", t.conns_sent),
            ("conns_received", t.conns_received),
            ("retransmitted", t.retransmitted),
            ("install_failed", t.install_failed),
            (
                "resync_removed",
                (0..self.cfg.peers.len())
                    .map(|i| self.streams.removed(i))
                    .sum(),
            ),
            ("dropped_malformed", self.ep.dropped(DropReason::Malformed)),
            (
                "dropped_unauthenticated",
                self.ep.dropped(DropReason::Unauthenticated),
            ),
            (
                "dropped_unknown_peer",
                self.ep.dropped(DropReason::UnknownPeer),
            ),
            ("dropped_stale", self.ep.dropped(DropReason::Stale)),
            ("events_lost", self.sub.lost()),
            ("send_errors", self.send_errors),
        ]
    }

    fn reconfigure(&mut self, _ct: &Conntrack, cfg: &Config) -> Option<String> {
        self.reconfigure_sync(cfg.sync.as_ref())
    }

    fn status(&self) -> Option<String> {
        Some(self.status_text())
    }
}
