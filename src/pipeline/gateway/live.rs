//! Changing the tables of a running gateway: publishing a new [`GatewayShared`] version to
//! the workers (read-copy-update), and telling which connections a version would no
//! longer create (`reload --flush-stale`).
//!
//! # The scheme
//!
//! The control lcore builds the next version with [`GatewayShared::reconfigure`] (same
//! tracker, clock, counters and neighbour table; new routes, policy, NAT rules, zones,
//! static next hops) and hands it to [`Publisher::publish`], which puts it in the
//! runtime's publication slot and then raises the published generation number. Each
//! worker, between two bursts ([`GatewayStep::quiesce`](super::GatewayStep)), compares
//! the published number with its own version's: one acquire load per burst, no lock, no
//! allocation. When they differ it takes the new version out of the slot (a `try_lock`:
//! only the control lcore ever holds that lock, briefly and only on a reload; if the
//! worker ever finds it held it runs one more burst on its version and tries again), and
//! then records the generation it now runs in its own quiescent-state slot.
//!
//! The publisher keeps every older version in a retired list. [`Publisher::reclaim`]
//! frees one only when every registered worker's slot shows a later generation (all of
//! them passed a quiescent point after the publication) and nothing else holds it: a
//! worker only ever drops a reference, memory is freed on the control lcore.
//!
//! # Invariants
//!
//! - Versions are published in increasing generation; a worker never goes back.
//! - A burst runs on one version from start to end: the switch happens only between
//!   bursts, so no packet sees half of one version and half of another, and none is
//!   dropped by the switch itself.
//! - Connections live in the tracker, which every version shares: a switch keeps them
//!   all, with their NAT bindings; only new connections follow the new rules.
//! - The set of ports (and so every port index a worker holds, e.g. in its hold slots)
//!   is the same in every version; the caller refuses a change of it.

use std::sync::Arc;

use super::epoch::Versioned;
use super::shared::GatewayShared;
use crate::config::Role;
use crate::conntrack::{ConnSnapshot, CtState};
use crate::nat::NatRange;

pub use super::epoch::MAX_WORKERS;

/// A version's generation, for the publication slot.
impl Versioned for GatewayShared {
    fn generation(&self) -> u64 {
        self.generation
    }
}

/// The control lcore's side: the current version, the retired ones not yet freed.
pub struct Publisher {
    current: Arc<GatewayShared>,
    retired: Vec<Arc<GatewayShared>>,
}

impl Publisher {
    /// Starts from the version the workers were built with.
    pub fn new(first: Arc<GatewayShared>) -> Publisher {
        Publisher {
            current: first,
            retired: Vec::new(),
        }
    }

    /// The current (last published) version.
    pub fn current(&self) -> &Arc<GatewayShared> {
        &self.current
    }

    /// Publishes `next` (built by [`GatewayShared::reconfigure`] from the current one):
    /// workers switch to it at their next burst. Frees what can be freed.
    pub fn publish(&mut self, next: GatewayShared) -> Result<Arc<GatewayShared>, String> {
        if !Arc::ptr_eq(&next.rt, &self.current.rt) || next.generation <= self.current.generation {
            return Err("not a successor of the running version".into());
        }
        let next = Arc::new(next);
        let epoch = &self.current.rt.epoch;
        // The version first, then its number: a worker that sees the number finds the
        // version in the slot.
        epoch.publish(&next);
        let old = std::mem::replace(&mut self.current, Arc::clone(&next));
        self.retired.push(old);
        self.reclaim();
        Ok(next)
    }

    /// Frees the retired versions every worker has left behind, and empties the
    /// publication slot once every worker runs the current version. Returns how many
    /// retired versions are still held.
    pub fn reclaim(&mut self) -> usize {
        let epoch = &self.current.rt.epoch;
        if epoch.all_passed(self.current.generation) {
            epoch.slot().take();
        }
        self.retired
            .retain(|old| !(epoch.all_passed(old.generation + 1) && Arc::strong_count(old) == 1));
        self.retired.len()
    }

    /// Workers still running an older version than the current one.
    pub fn workers_behind(&self) -> usize {
        self.current.rt.epoch.behind(self.current.generation)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The slot holds a version, which holds the runtime, which holds the slot.
        self.current.rt.epoch.slot().take();
    }
}

fn in_range(r: &NatRange, family: u8, addr: &[u8; 16], port: u16) -> bool {
    let v = |a: &[u8; 16]| super::shared::bits(family, a);
    r.family == family
        && v(&r.addr_min) <= v(addr)
        && v(addr) <= v(&r.addr_max)
        && r.ports.is_none_or(|(lo, hi)| lo <= port && port <= hi)
}

impl GatewayShared {
    /// Would this version create the connection `c` (what `reload --flush-stale` keeps)?
    ///
    /// - destination NAT: a DNAT rule of this version matches its original destination
    ///   (protocol, address, port) and its target holds the connection's translated
    ///   destination;
    /// - source NAT: this version's SNAT pool of the family holds the translated source
    ///   address (and port, when the pool has a port range);
    /// - no NAT: when its original source routes to an outside port and its destination
    ///   to an inside one (it came in from outside), only with `policy.outside_new =
    ///   "allow"`; when its source routes to an inside port and its destination to an
    ///   outside one, only without an SNAT pool of its family (with one, this version
    ///   would create it source-NATed, not as it is); otherwise yes.
    pub fn would_create(&self, c: &ConnSnapshot) -> bool {
        let fam = c.orig.family;
        if c.nat & CtState::DNAT != 0 {
            let target = (c.reply.src, c.reply.sport);
            let ok = self.dnat.iter().any(|&(proto, f, addr, port, spec)| {
                proto == c.orig.proto
                    && f == fam
                    && addr == c.orig.dst
                    && port == c.orig.dport
                    && self
                        .nat_specs
                        .get(usize::from(spec))
                        .and_then(|s| s.dnat)
                        .is_some_and(|r| in_range(&r, fam, &target.0, target.1))
            });
            if !ok {
                return false;
            }
        }
        if c.nat & CtState::SNAT != 0 {
            let spec = if fam == 4 { self.snat_v4 } else { self.snat_v6 };
            return spec
                .and_then(|s| self.nat_specs.get(usize::from(s)))
                .and_then(|s| s.snat)
                .is_some_and(|r| in_range(&r, fam, &c.reply.dst, c.reply.dport));
        }
        if c.nat & CtState::DNAT != 0 {
            return true;
        }
        let role = |a: &[u8; 16]| {
            self.route(fam, a)
                .and_then(|i| self.route_at(fam, i))
                .and_then(|(p, _)| self.ports.get(usize::from(p)))
                .map(|p| p.role)
        };
        let (src, dst) = (role(&c.orig.src), role(&c.orig.dst));
        if src == Some(Role::Outside) && dst == Some(Role::Inside) {
            return self.outside_new_allow;
        }
        if src == Some(Role::Inside) && dst == Some(Role::Outside) {
            let spec = if fam == 4 { self.snat_v4 } else { self.snat_v6 };
            return spec
                .and_then(|s| self.nat_specs.get(usize::from(s)))
                .and_then(|s| s.snat)
                .is_none();
        }
        true
    }
}
