//! Neighbour resolution and the hold queue: the next hop's MAC comes from the port's
//! static `next_hop_mac` or the worker's copy of the neighbour table; on a miss the worker
//! asks (one ARP request / neighbour solicitation per [`NEIGH_RETRY_MS`] over all
//! workers, decided under the shared table's lock) and the packet waits in a hold slot
//! of its output port until the answer comes or [`HOLD_TIMEOUT_MS`] pass.
//!
//! Entries follow the neighbour states of [`super::neigh`]: a reachable entry is used
//! as is; a stale one in use is probed (unicast, then broadcast) while still used; a
//! resolution that fails is counted and starts over.

use std::sync::atomic::Ordering;

use super::neigh::*;
use super::originated::{arp_request_to, ns_request_to};
use super::shared::{bump, GatewayShared, Port};
use super::state::{Held, WorkerState, HOLD_PER_PORT, HOLD_TIMEOUT_MS};
use crate::pipeline::{DropReason, MacAddr, StepSink, Verdict};

impl WorkerState {
    /// The next hop's MAC, from the static config or the worker's copy of the table.
    /// A reachable entry (or a stale/probing one with no request due) is used without a
    /// lock; otherwise the shared table decides ([`Self::ask_shared`]): a request to send,
    /// a failed resolution, or `NeighUnresolved` for an entry without a MAC.
    ///
    /// Always inlined, the slow path a cold call: as a call of its own, with the registers
    /// the egress pass spilled around it, it made the gateway step 35 instructions per
    /// packet longer (1k UDP flows: 1,338.8 -> 1,303.8, `perf/scripts/instr.sh`).
    #[inline(always)]
    pub(super) fn resolve(
        &mut self,
        sh: &GatewayShared,
        out: &Port,
        fam: u8,
        nh: &[u8; 16],
    ) -> Result<MacAddr, DropReason> {
        if let Some(m) = out.static_mac {
            return Ok(m);
        }
        if let Some(e) = self.neigh.get(out.id, nh) {
            let u = e.on_use(self.now);
            if u.request.is_none() && !u.failed {
                return u.mac.ok_or(DropReason::NeighUnresolved);
            }
        }
        self.ask_shared(sh, out, fam, nh)
    }

    /// The slow path, at most once per [`NEIGH_RETRY_MS`] per neighbour and worker: under
    /// the shared lock, the shared entry's verdict (another worker may have learned or
    /// probed it); sends the request it asks for (broadcast, or unicast to the MAC the
    /// entry has) and counts a failed resolution (`neigh_failed`, the entry starting over
    /// as Incomplete).
    #[cold]
    #[inline(never)]
    pub(super) fn ask_shared(
        &mut self,
        sh: &GatewayShared,
        out: &Port,
        fam: u8,
        nh: &[u8; 16],
    ) -> Result<MacAddr, DropReason> {
        let own = if fam == 4 { out.v4 } else { out.v6 };
        let Some((src, _)) = own else {
            return Err(DropReason::NoRoute);
        };
        let now = self.now;
        let mut n = sh.neigh_lock();
        let Some((e, created)) = n.entry(out.id, nh) else {
            return Err(DropReason::NoBuffer);
        };
        let mut u = e.on_use(now);
        let failed = u.failed;
        if failed {
            e.reset();
            u = e.on_use(now);
        }
        if u.request.is_some() {
            e.sent(now);
        }
        let copy = *e;
        drop(n);
        if failed {
            bump(&sh.counters.neigh_failed);
        }
        if created || failed {
            sh.neigh_gen.fetch_add(1, Ordering::Release);
        }
        self.neigh.put(&copy);
        if let Some(req) = u.request {
            let to = match req {
                Request::Unicast(m) => Some(m),
                Request::Broadcast => None,
            };
            let sent = if fam == 4 {
                let mut spa = [0u8; 4];
                spa.copy_from_slice(&src[..4]);
                let mut tpa = [0u8; 4];
                tpa.copy_from_slice(&nh[..4]);
                self.push_gen(out.id, |b| arp_request_to(b, out.mac, to, spa, tpa))
            } else {
                self.push_gen(out.id, |b| ns_request_to(b, out.mac, to, &src, nh))
            };
            if sent {
                bump(if fam == 4 {
                    &sh.counters.arp_requests
                } else {
                    &sh.counters.nd_solicits
                });
            }
        }
        u.mac.ok_or(DropReason::NeighUnresolved)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn hold(
        &mut self,
        sh: &GatewayShared,
        out_idx: u8,
        out: &Port,
        in_port: u16,
        fam: u8,
        nh: &[u8; 16],
    ) -> Verdict {
        let base = usize::from(out_idx) * HOLD_PER_PORT;
        let Some(slots) = self.held.get_mut(base..base + HOLD_PER_PORT) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        let Some(i) = slots.iter().position(|h| !h.used) else {
            return Verdict::Drop(DropReason::HoldQueueFull);
        };
        slots[i] = Held {
            used: true,
            out_port: out.id,
            in_port,
            family: fam,
            nh: *nh,
            since: self.now,
        };
        self.n_held += 1;
        bump(&sh.counters.held);
        Verdict::Hold((base + i) as u16)
    }

    /// Frees hold slot `slot` taken by [`WorkerState::hold`] for a frame that will not be
    /// parked after all (a copy of a fragment).
    pub(super) fn unhold(&mut self, slot: u16) {
        if let Some(h) = self.held.get_mut(usize::from(slot)) {
            if h.used {
                h.used = false;
                self.n_held = self.n_held.saturating_sub(1);
            }
        }
    }

    /// Completed datagrams waiting for their neighbour: once it resolved, their fragments
    /// get its MAC and move to the send queue; after [`HOLD_TIMEOUT_MS`] they are dropped.
    pub(super) fn service_frag_wait(&mut self, sh: &GatewayShared) {
        let mut i = 0;
        while i < self.frag_wait.len() {
            let h = self.frag_wait[i].1;
            let mac = sh
                .port(h.out_port)
                .copied()
                .and_then(|out| self.resolve(sh, &out, h.family, &h.nh).ok());
            let timed_out = self.now.saturating_sub(h.since) >= HOLD_TIMEOUT_MS;
            if mac.is_none() && !timed_out {
                i += 1;
                continue;
            }
            let (d, _) = self.frag_wait.swap_remove(i);
            if let Some(mac) = mac {
                let dg = sh.ipf.attach(d);
                for k in 0..dg.len() {
                    if let Some(mut f) = dg.fragment(k) {
                        if let Some(b) = f.get_mut(0..6) {
                            b.copy_from_slice(&mac.0);
                        }
                    }
                }
                if self.frag_out.len() < self.frag_out.capacity() {
                    self.frag_out.push((dg.detach(), h.out_port));
                }
            } else {
                drop(sh.ipf.attach(d));
            }
        }
    }

    /// Releases held frames whose neighbour resolved, drops the timed-out ones.
    pub(super) fn service_held(&mut self, sh: &GatewayShared, sink: &mut dyn StepSink) {
        if self.n_held == 0 {
            return;
        }
        for i in 0..self.held.len() {
            let h = self.held[i];
            if !h.used {
                continue;
            }
            let Some(out) = sh.port(h.out_port).copied() else {
                continue;
            };
            match self.resolve(sh, &out, h.family, &h.nh) {
                Ok(mac) => {
                    sink.send_held(i as u16, h.out_port, mac);
                    bump(&sh.counters.released);
                }
                Err(r) => {
                    let timed_out = self.now.saturating_sub(h.since) >= HOLD_TIMEOUT_MS;
                    if r == DropReason::NeighUnresolved && !timed_out {
                        continue;
                    }
                    sink.drop_held(i as u16, DropReason::NeighUnresolved, h.in_port);
                }
            }
            self.held[i].used = false;
            self.n_held -= 1;
        }
    }
}
