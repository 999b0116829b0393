//! Neighbour tables: (port, address) → MAC, resolved with ARP/NDP, and the neighbour
//! state machine (Linux's NUD states, simplified).
//!
//! # States
//!
//! An entry's state follows from its fields and the clock ([`NeighEntry::state`]):
//!
//! * **Incomplete**: no MAC yet. [`NEIGH_MCAST_PROBES`] broadcast requests (ARP /
//!   multicast NS), one per [`NEIGH_RETRY_MS`]; [`NEIGH_RETRY_MS`] after the last one
//!   unanswered (or [`NEIGH_INCOMPLETE_MS`] after a lone request) the resolution has failed:
//!   the entry is dropped (traffic that still wants it starts a new one).
//! * **Reachable**: confirmed by the neighbour (an ARP reply or request, a neighbour
//!   advertisement or solicitation from it) less than its reachable time ago. The
//!   reachable time is drawn at each confirmation in [`NEIGH_REACHABLE_MIN_MS`]..
//!   [`NEIGH_REACHABLE_MAX_MS`] (Linux: 30 s × [0.5, 1.5); shorter at the top so that a
//!   neighbour that changed its MAC silently is found again within 35 s), so entries
//!   learned together do not all go stale together.
//! * **Stale**: the reachable time passed. Still used; the first packet that uses it
//!   starts probing.
//! * **Probe**: [`NEIGH_UCAST_PROBES`] unicast requests to the MAC the entry has (the
//!   neighbour's own stack answers them without disturbing anyone), then
//!   [`NEIGH_MCAST_PROBES`] broadcast ones (a neighbour that changed its MAC answers a
//!   broadcast: its old MAC no longer reaches it), one per [`NEIGH_RETRY_MS`]; the entry is
//!   still used meanwhile. An answer makes it reachable again (with the MAC the answer
//!   gives); [`NEIGH_RETRY_MS`] after the last probe without one, the resolution has
//!   failed: the entry is dropped (the next packet starts again from Incomplete).
//!
//! Failed resolutions are counted (`neigh_failed`). A resolved entry never confirmed for
//! [`NEIGH_TTL_MS`] (no traffic used it, so nothing probed it) is forgotten, uncounted.
//!
//! One shared table (behind a mutex, touched only on learning, on misses and by the
//! once-a-second aging) and one plain copy per worker, refreshed when the shared table's
//! generation changes (an entry added, removed, resolved or changed MAC). Lookups on the
//! forwarding path read the worker's copy only: no lock, no atomic read-modify-write.
//!
//! The map is open addressing with linear probing and backward-shift deletion over a
//! fixed array allocated once: no allocation after start, the copy is a `clone_from`
//! into the same capacity.

use crate::pipeline::MacAddr;

/// Entries the table holds (all ports together).
pub const NEIGH_CAPACITY: usize = 1024;
/// A resolved entry that nothing confirmed for this long is forgotten.
pub const NEIGH_TTL_MS: u64 = 300_000;
/// Shortest reachable time drawn at a confirmation.
pub const NEIGH_REACHABLE_MIN_MS: u64 = 15_000;
/// Longest reachable time drawn at a confirmation (exclusive).
pub const NEIGH_REACHABLE_MAX_MS: u64 = 30_000;
/// Unicast probes of a stale entry in use (Linux `ucast_probes`).
pub const NEIGH_UCAST_PROBES: u8 = 3;
/// Broadcast probes after the unicast ones failed (Linux `mcast_resolicit`).
pub const NEIGH_MCAST_PROBES: u8 = 3;
/// At most one request per neighbour per this interval (Linux `retrans_time`).
pub const NEIGH_RETRY_MS: u64 = 1_000;
/// An unresolved entry is forgotten after this long without an answer.
pub const NEIGH_INCOMPLETE_MS: u64 = 10_000;

/// The state of an entry (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    Incomplete,
    Reachable,
    Stale,
    Probe,
}

/// A request to send for an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Broadcast ARP / multicast neighbour solicitation.
    Broadcast,
    /// To the MAC the entry has.
    Unicast(MacAddr),
}

/// What using an entry now means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use {
    /// The MAC to send to; `None`: not resolved (hold the packet).
    pub mac: Option<MacAddr>,
    /// A request due now (the retry interval since the last one has passed).
    pub request: Option<Request>,
    /// The entry's resolution has failed (all probes unanswered): drop it, count it.
    pub failed: bool,
}

/// One neighbour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighEntry {
    pub used: bool,
    pub port: u16,
    /// IPv4 in the first 4 bytes, the rest zero (as `ParsedPacket` holds addresses).
    pub addr: [u8; 16],
    pub mac: MacAddr,
    pub resolved: bool,
    /// When the neighbour last confirmed its MAC (ms).
    pub updated_ms: u64,
    /// How long after `updated_ms` the entry is reachable (drawn at the confirmation).
    pub reachable_ms: u64,
    /// When the gateway last asked (ms); `u64::MAX` never.
    pub requested_ms: u64,
    /// Probes sent since the entry went stale and was used (0: not probing).
    pub probes: u8,
}

/// A reachable time in [`NEIGH_REACHABLE_MIN_MS`]..[`NEIGH_REACHABLE_MAX_MS`], spread by a
/// hash of the entry and the time (no random state to keep; only spread matters).
pub fn reachable_time(addr: &[u8; 16], now: u64) -> u64 {
    let h = hash(0, addr) as u64 ^ now.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    NEIGH_REACHABLE_MIN_MS + (h >> 32) % (NEIGH_REACHABLE_MAX_MS - NEIGH_REACHABLE_MIN_MS)
}

impl NeighEntry {
    /// The state at `now`.
    pub fn state(&self, now: u64) -> NeighState {
        if !self.resolved {
            NeighState::Incomplete
        } else if self.probes > 0 {
            NeighState::Probe
        } else if now.saturating_sub(self.updated_ms) < self.reachable_ms {
            NeighState::Reachable
        } else {
            NeighState::Stale
        }
    }

    fn retry_due(&self, now: u64) -> bool {
        self.requested_ms == u64::MAX || now.saturating_sub(self.requested_ms) >= NEIGH_RETRY_MS
    }

    /// What a packet using this entry at `now` does: the MAC to send to, the request due
    /// (rate-limited to one per [`NEIGH_RETRY_MS`]), or that the resolution has failed.
    pub fn on_use(&self, now: u64) -> Use {
        let due = self.retry_due(now);
        match self.state(now) {
            NeighState::Incomplete => Use {
                mac: None,
                request: (due && self.probes < NEIGH_MCAST_PROBES).then_some(Request::Broadcast),
                failed: due && self.probes >= NEIGH_MCAST_PROBES,
            },
            NeighState::Reachable => Use {
                mac: Some(self.mac),
                request: None,
                failed: false,
            },
            NeighState::Stale => Use {
                mac: Some(self.mac),
                request: Some(Request::Unicast(self.mac)),
                failed: false,
            },
            NeighState::Probe if self.probes >= NEIGH_UCAST_PROBES + NEIGH_MCAST_PROBES => {
                if due {
                    Use {
                        mac: None,
                        request: None,
                        failed: true,
                    }
                } else {
                    Use {
                        mac: Some(self.mac),
                        request: None,
                        failed: false,
                    }
                }
            }
            NeighState::Probe => Use {
                mac: Some(self.mac),
                request: due.then_some(if self.probes < NEIGH_UCAST_PROBES {
                    Request::Unicast(self.mac)
                } else {
                    Request::Broadcast
                }),
                failed: false,
            },
        }
    }

    /// Records that a request was sent at `now`.
    pub fn sent(&mut self, now: u64) {
        self.requested_ms = now;
        self.probes = self.probes.saturating_add(1);
    }

    /// The neighbour confirmed `mac` at `now`: reachable again, probing over.
    pub fn confirm(&mut self, mac: MacAddr, now: u64) {
        self.mac = mac;
        self.resolved = true;
        self.updated_ms = now;
        self.reachable_ms = reachable_time(&self.addr, now);
        self.probes = 0;
        self.requested_ms = u64::MAX;
    }

    /// Back to Incomplete (a failed resolution; the next request is due at once).
    pub fn reset(&mut self) {
        self.resolved = false;
        self.mac = MacAddr::default();
        self.probes = 0;
        self.requested_ms = u64::MAX;
    }

    /// Whether aging removes the entry at `now`: `Some(true)` for a failed resolution
    /// (counted), `Some(false)` for an entry unused too long, `None` to keep it.
    pub fn dead(&self, now: u64) -> Option<bool> {
        match self.state(now) {
            NeighState::Incomplete if self.requested_ms == u64::MAX => Some(false),
            NeighState::Incomplete => ((self.probes >= NEIGH_MCAST_PROBES && self.retry_due(now))
                || now.saturating_sub(self.requested_ms) >= NEIGH_INCOMPLETE_MS)
                .then_some(true),
            NeighState::Probe => {
                let exhausted = self.probes >= NEIGH_UCAST_PROBES + NEIGH_MCAST_PROBES;
                (exhausted && self.retry_due(now)).then_some(true)
            }
            _ => (now.saturating_sub(self.updated_ms) >= NEIGH_TTL_MS).then_some(false),
        }
    }
}

/// The fixed-capacity map.
#[derive(Clone, Debug)]
pub struct NeighMap {
    slots: Vec<NeighEntry>,
    len: usize,
}

fn hash(port: u16, addr: &[u8; 16]) -> usize {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&addr[..8]);
    hi.copy_from_slice(&addr[8..]);
    let mut h = u64::from_ne_bytes(lo) ^ (u64::from(port) << 48);
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= u64::from_ne_bytes(hi);
    h = h.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    (h ^ (h >> 31)) as usize
}

impl Default for NeighMap {
    fn default() -> Self {
        NeighMap {
            slots: vec![NeighEntry::default(); NEIGH_CAPACITY],
            len: 0,
        }
    }
}

impl NeighMap {
    const MASK: usize = NEIGH_CAPACITY - 1;

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry for (port, addr).
    #[inline]
    pub fn get(&self, port: u16, addr: &[u8; 16]) -> Option<&NeighEntry> {
        self.find(port, addr).map(|i| &self.slots[i])
    }

    #[inline]
    fn find(&self, port: u16, addr: &[u8; 16]) -> Option<usize> {
        let mut i = hash(port, addr) & Self::MASK;
        for _ in 0..NEIGH_CAPACITY {
            let e = &self.slots[i];
            if !e.used {
                return None;
            }
            if e.port == port && e.addr == *addr {
                return Some(i);
            }
            i = (i + 1) & Self::MASK;
        }
        None
    }

    /// The entry for (port, addr), created unresolved when absent; `None` when full.
    pub fn entry(&mut self, port: u16, addr: &[u8; 16]) -> Option<(&mut NeighEntry, bool)> {
        if let Some(i) = self.find(port, addr) {
            return Some((&mut self.slots[i], false));
        }
        // Keep one slot free so probes always end.
        if self.len + 1 >= NEIGH_CAPACITY {
            return None;
        }
        let mut i = hash(port, addr) & Self::MASK;
        while self.slots[i].used {
            i = (i + 1) & Self::MASK;
        }
        self.slots[i] = NeighEntry {
            used: true,
            port,
            addr: *addr,
            mac: MacAddr::default(),
            resolved: false,
            updated_ms: 0,
            reachable_ms: 0,
            requested_ms: u64::MAX,
            probes: 0,
        };
        self.len += 1;
        Some((&mut self.slots[i], true))
    }

    /// Copies one entry in (a worker's copy taking the shared table's version of it).
    pub fn put(&mut self, e: &NeighEntry) {
        if let Some((slot, _)) = self.entry(e.port, &e.addr) {
            *slot = *e;
        }
    }

    /// Removes every entry `dead` says is dead; returns how many.
    pub fn remove_if(&mut self, mut dead: impl FnMut(&NeighEntry) -> bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < NEIGH_CAPACITY {
            if self.slots[i].used && dead(&self.slots[i]) {
                self.remove_at(i);
                removed += 1;
                // The shift may have moved another entry into `i`: look at it again.
                continue;
            }
            i += 1;
        }
        removed
    }

    fn remove_at(&mut self, mut i: usize) {
        self.slots[i].used = false;
        self.len -= 1;
        // Backward-shift deletion: move later entries of the run into the hole when
        // their home position allows it.
        let mut j = i;
        loop {
            j = (j + 1) & Self::MASK;
            if !self.slots[j].used {
                break;
            }
            let home = hash(self.slots[j].port, &self.slots[j].addr) & Self::MASK;
            // Is `home` cyclically outside (i, j]? Then the entry may move to `i`.
            let in_range = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !in_range {
                self.slots[i] = self.slots[j];
                self.slots[j].used = false;
                i = j;
            }
        }
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &NeighEntry> {
        self.slots.iter().filter(|e| e.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u32) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&i.to_be_bytes());
        x
    }

    #[test]
    fn insert_find_remove_keep_every_other_entry_reachable() {
        let mut m = NeighMap::default();
        for i in 0..800u32 {
            let (e, new) = m.entry((i % 3) as u16, &a(i)).unwrap();
            assert!(new);
            e.resolved = true;
            e.mac = MacAddr([0, 0, 0, 0, (i >> 8) as u8, i as u8]);
        }
        assert_eq!(m.len(), 800);
        assert_eq!(
            m.remove_if(
                |e| u32::from_be_bytes([e.addr[0], e.addr[1], e.addr[2], e.addr[3]]) % 2 == 0
            ),
            400
        );
        for i in 0..800u32 {
            let got = m.get((i % 3) as u16, &a(i));
            if i % 2 == 0 {
                assert!(got.is_none(), "{i}");
            } else {
                assert_eq!(got.unwrap().mac.0[5], i as u8, "{i}");
            }
        }
        assert!(m.get(2, &a(1)).is_none(), "the port is part of the key");
        while m.entry(7, &a(m.len() as u32 + 10_000)).is_some() {}
        assert_eq!(m.len(), NEIGH_CAPACITY - 1, "full, with one slot kept free");
    }

    const OLD: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const NEW: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn resolved(now: u64) -> NeighEntry {
        let mut e = NeighEntry {
            used: true,
            addr: a(0xc000_0201),
            requested_ms: u64::MAX,
            ..NeighEntry::default()
        };
        e.confirm(OLD, now);
        e
    }

    /// Drives an entry with traffic every `step` ms until `until`, sending what it asks;
    /// returns the requests with their times.
    fn drive(e: &mut NeighEntry, from: u64, until: u64, step: u64) -> Vec<(u64, Request)> {
        let mut sent = Vec::new();
        let mut now = from;
        while now <= until {
            let u = e.on_use(now);
            if u.failed {
                e.reset();
                continue;
            }
            if let Some(r) = u.request {
                e.sent(now);
                sent.push((now, r));
            }
            now += step;
        }
        sent
    }

    #[test]
    fn reachable_times_are_spread_within_their_bounds() {
        let times: std::collections::BTreeSet<u64> =
            (0..200u32).map(|i| reachable_time(&a(i), 1000)).collect();
        assert!(times.len() > 150, "spread: {}", times.len());
        assert!(times
            .iter()
            .all(|t| (NEIGH_REACHABLE_MIN_MS..NEIGH_REACHABLE_MAX_MS).contains(t)));
        let e = resolved(0);
        assert!(e.reachable_ms >= NEIGH_REACHABLE_MIN_MS);
    }

    #[test]
    fn a_reachable_entry_is_used_without_requests_then_goes_stale() {
        let e = resolved(1_000);
        assert_eq!(e.state(1_000), NeighState::Reachable);
        let u = e.on_use(1_000 + e.reachable_ms - 1);
        assert_eq!((u.mac, u.request, u.failed), (Some(OLD), None, false));
        assert_eq!(e.state(1_000 + e.reachable_ms), NeighState::Stale);
        // An idle stale entry stays until it is unused for the TTL.
        assert_eq!(e.dead(1_000 + NEIGH_TTL_MS - 1), None);
        assert_eq!(e.dead(1_000 + NEIGH_TTL_MS), Some(false));
    }

    #[test]
    fn traffic_on_a_stale_entry_probes_unicast_then_broadcast_then_fails() {
        let mut e = resolved(0);
        let stale = e.reachable_ms;
        // Traffic every 100 ms from before the entry goes stale.
        let sent = drive(&mut e, stale - 500, stale + 6_500, 100);
        let want: Vec<(u64, Request)> = (0..6)
            .map(|k| {
                (
                    stale + k * NEIGH_RETRY_MS,
                    if k < 3 {
                        Request::Unicast(OLD)
                    } else {
                        Request::Broadcast
                    },
                )
            })
            .collect();
        assert_eq!(&sent[..6], &want[..]);
        // Meanwhile the old MAC is still used; after the sixth probe and one more retry
        // interval the resolution failed: reset, then broadcast as Incomplete.
        assert_eq!(e.state(stale + 6_500), NeighState::Incomplete);
        assert_eq!(sent[6], (stale + 6_000, Request::Broadcast));
        let mut p = resolved(0);
        for k in 0..6 {
            p.sent(stale + k * NEIGH_RETRY_MS);
        }
        assert_eq!(p.on_use(stale + 5_500).mac, Some(OLD));
        assert_eq!(p.dead(stale + 5_500), None);
        assert!(p.on_use(stale + 6_000).failed);
        assert_eq!(p.dead(stale + 6_000), Some(true), "counted as failed");
    }

    #[test]
    fn an_answer_to_a_broadcast_probe_moves_the_entry_to_the_new_mac() {
        let mut e = resolved(0);
        let stale = e.reachable_ms;
        let sent = drive(&mut e, stale, stale + 3_000, 250);
        assert_eq!(sent.last(), Some(&(stale + 3_000, Request::Broadcast)));
        // The neighbour, now at NEW, answers the broadcast.
        e.confirm(NEW, stale + 3_010);
        let u = e.on_use(stale + 3_020);
        assert_eq!((u.mac, u.request), (Some(NEW), None));
        assert_eq!(e.state(stale + 3_020), NeighState::Reachable);
        // Resumed within the bound the real-stack test asserts (40 s after the change).
        assert!(stale + 3_010 < 35_000);
    }

    #[test]
    fn an_incomplete_entry_broadcasts_and_is_dropped_unanswered() {
        let mut e = NeighEntry {
            used: true,
            addr: a(9),
            requested_ms: u64::MAX,
            ..NeighEntry::default()
        };
        assert_eq!(e.dead(0), Some(false), "never asked: not a failure");
        let sent = drive(&mut e, 0, 2_500, 500);
        assert_eq!(
            sent,
            vec![
                (0, Request::Broadcast),
                (1_000, Request::Broadcast),
                (2_000, Request::Broadcast)
            ]
        );
        assert_eq!(e.on_use(2_500).mac, None);
        assert_eq!(e.dead(2_999), None);
        assert_eq!(e.dead(3_000), Some(true));
        assert!(e.on_use(3_000).failed);
        // A lone unanswered request fails after NEIGH_INCOMPLETE_MS.
        let mut lone = NeighEntry {
            used: true,
            addr: a(10),
            requested_ms: u64::MAX,
            ..NeighEntry::default()
        };
        lone.sent(0);
        assert_eq!(lone.dead(NEIGH_INCOMPLETE_MS - 1), None);
        assert_eq!(lone.dead(NEIGH_INCOMPLETE_MS), Some(true));
    }
}
