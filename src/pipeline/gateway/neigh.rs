//! Neighbour tables: (port, address) → MAC, resolved with ARP/NDP.
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
/// A resolved entry is used this long after it was last confirmed by the neighbour.
pub const NEIGH_TTL_MS: u64 = 300_000;
/// From this age on, using an entry sends a refresh request (rate-limited).
pub const NEIGH_REFRESH_MS: u64 = 270_000;
/// At most one request per neighbour per this interval.
pub const NEIGH_RETRY_MS: u64 = 1_000;
/// An unresolved entry is forgotten after this long without an answer.
pub const NEIGH_INCOMPLETE_MS: u64 = 10_000;

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
    /// When the gateway last asked (ms); `u64::MAX` never.
    pub requested_ms: u64,
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
            requested_ms: u64::MAX,
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
    pub fn retain(&mut self, mut dead: impl FnMut(&NeighEntry) -> bool) -> usize {
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
            m.retain(|e| u32::from_be_bytes([e.addr[0], e.addr[1], e.addr[2], e.addr[3]]) % 2 == 0),
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
}
