//! The per-worker state of the gateway step: the worker's copy of the neighbour table,
//! the hold slots of packets waiting for a neighbour, the frames the worker originates
//! until the next service, the ICMP error budget and the burst's scratch space.
//!
//! All of it is allocated once in [`WorkerState::new`]; nothing here allocates, locks or
//! makes a syscall per packet (the shared neighbour table is locked only when its
//! generation changed).

use std::sync::atomic::Ordering;

use super::neigh::NeighMap;
use super::shared::GatewayShared;
use crate::conntrack::PacketMeta;
use crate::ipf::Detached;
use crate::pipeline::{DropReason, Verdict};
use crate::wire::parse::{ParseError, ParsedPacket};

/// Packets the step hands the tracker at once.
pub const BURST: usize = 32;

/// Burst position `i`'s bit in [`WorkerState::rare`] (none past [`BURST`]).
#[inline(always)]
pub(super) fn rare_bit(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1u32.checked_shl(i))
        .unwrap_or(0)
}

const _: () = assert!(BURST <= u32::BITS as usize);
/// Hold slots per output port and worker.
pub const HOLD_PER_PORT: usize = 16;
/// A held packet whose neighbour stays unresolved this long is dropped.
pub const HOLD_TIMEOUT_MS: u64 = 3_000;
/// Generated frames pending per worker between two services.
pub(super) const GEN_SLOTS: usize = 64;
/// Largest generated frame: an ICMPv6 error quoting 1280 bytes' worth
/// ([`super::originated::ERROR_FRAME_MAX`]). The slots are allocated once, 64 × 1294 bytes
/// per worker.
pub(super) const GEN_LEN: usize = super::originated::ERROR_FRAME_MAX;

// The buffers of egress fragmentation (`super::mtu`) and of ALG rewrites (`super::alg`)
// are the worker's: sized and typed here, filled there.

/// Bytes of fragments a worker builds between two services.
pub(super) const FRAG_ARENA: usize = 256 * 1024;
/// Fragments a worker builds between two services.
pub(super) const FRAG_PIECES: usize = 512;

/// Packets to be fragmented that wait for their next hop, per worker.
pub(super) const CUT_WAIT: usize = 4;
/// The largest frame such a packet is.
pub(super) const CUT_FRAME: usize = crate::config::MTU_MAX as usize + super::shared::L2_ROOM;

/// A packet to be fragmented waiting for its next hop: where it goes, its frame's length
/// and IP header offset (the bytes are in the buffer of the same index).
#[derive(Clone, Copy)]
pub(super) struct CutWait {
    pub(super) held: Held,
    pub(super) len: usize,
    pub(super) l3: usize,
}

/// A fragment in the arena: where, how long, and the interface it leaves by.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Piece {
    pub(super) at: u32,
    pub(super) len: u16,
    pub(super) port: u16,
}

/// Rewritten frames of changed length a worker holds between two services.
pub const ALG_SLOTS: usize = 4;
/// Size of each (a jumbo frame and the longest address change).
pub const ALG_FRAME_MAX: usize = 9216 + 64;

/// A generated frame waiting for the worker.
pub(super) struct GenFrame {
    pub(super) port: u16,
    pub(super) len: u16,
    pub(super) buf: [u8; GEN_LEN],
}

/// A frame waiting for its neighbour.
#[derive(Clone, Copy, Default)]
pub(super) struct Held {
    pub(super) used: bool,
    pub(super) out_port: u16,
    pub(super) in_port: u16,
    pub(super) family: u8,
    pub(super) nh: [u8; 16],
    pub(super) since: u64,
}

/// What the first pass decided for a frame.
#[derive(Clone, Copy)]
pub(super) enum Pre {
    Done(Verdict),
    /// Tracked (its `PacketMeta` is the frame's): whether the destination is the
    /// gateway's, and the route of the destination when the first pass looked it up.
    Track {
        dst_own: bool,
        /// Route index, `u8::MAX` when not looked up.
        route: u8,
    },
}

/// The per-worker state, apart from the tracker handle (so both can be borrowed).
pub(super) struct WorkerState {
    pub(super) now: u64,
    pub(super) neigh: NeighMap,
    pub(super) neigh_gen: u64,
    pub(super) held: Vec<Held>,
    pub(super) n_held: usize,
    pub(super) gen: Vec<GenFrame>,
    pub(super) n_gen: usize,
    pub(super) err_window: u64,
    pub(super) err_count: u32,
    /// One per frame of the burst (always `BURST` long); frames are parsed straight into
    /// them, and those not tracked are skipped by the tracker.
    pub(super) metas: Vec<PacketMeta>,
    pub(super) pre: [Pre; BURST],
    /// The burst's parse errors (`None`: parsed into `metas[i]`), all taken before any
    /// is used.
    pub(super) parse_err: [Option<ParseError>; BURST],
    /// Index in the burst of the frame `ingress` is looking at.
    pub(super) burst_i: usize,
    /// `dgram[i]`: the datagram frame `i` of the burst completed, tracked in its place.
    pub(super) dgram: Vec<Option<Detached>>,
    /// Completed datagrams to send on at the next service, with their output port.
    pub(super) frag_out: Vec<(Detached, u16)>,
    /// Completed datagrams waiting for their output neighbour (as a held frame would).
    pub(super) frag_wait: Vec<(Detached, Held)>,
    /// Fragments made on egress ([`super::mtu`]), back to back, until the next service.
    pub(super) frag_arena: Vec<u8>,
    pub(super) frag_used: usize,
    pub(super) pieces: Vec<Piece>,
    /// Packets to be fragmented waiting for their next hop, and their bytes.
    pub(super) cut_wait: [Option<CutWait>; CUT_WAIT],
    pub(super) cut_bufs: Vec<Vec<u8>>,
    /// ALG: buffers of rewritten frames whose length changed ([`super::alg`]).
    pub(super) alg_bufs: Vec<Vec<u8>>,
    /// ALG: buffers in use since the last service.
    pub(super) alg_used: usize,
    /// ALG: per burst position, the buffer slot and length replacing the frame (read
    /// only where `rare` has the position's bit).
    pub(super) alg_pending: [Option<(usize, usize)>; BURST],
    /// The burst positions ([`rare_bit`]) whose second pass is not the plain one: a
    /// reassembled datagram waits in `dgram` or an ALG copy in `alg_pending`. Cleared at
    /// the start of each burst; every other frame goes straight to `egress` without
    /// touching those slots (measured with `ctgate-perf step`: writing `alg_pending` for
    /// every frame and reading it back cost a store-forwarding stall per packet).
    pub(super) rare: u32,
    /// ALG: rewritten frames to send at the next service (slot, length, port).
    pub(super) alg_out: Vec<(usize, usize, u16)>,
}

impl WorkerState {
    /// The state of one worker of a gateway with `n_ports` ports.
    pub(super) fn new(n_ports: usize) -> WorkerState {
        let mut gen = Vec::with_capacity(GEN_SLOTS);
        for _ in 0..GEN_SLOTS {
            gen.push(GenFrame {
                port: 0,
                len: 0,
                buf: [0; GEN_LEN],
            });
        }
        WorkerState {
            now: 0,
            neigh: NeighMap::default(),
            neigh_gen: u64::MAX,
            held: vec![Held::default(); n_ports * HOLD_PER_PORT],
            n_held: 0,
            gen,
            n_gen: 0,
            err_window: 0,
            err_count: 0,
            metas: vec![PacketMeta::new(ParsedPacket::EMPTY, 0, false); BURST],
            pre: [Pre::Done(Verdict::Drop(DropReason::NoRoute)); BURST],
            parse_err: [None; BURST],
            burst_i: 0,
            dgram: vec![None; BURST],
            frag_out: Vec::with_capacity(BURST * 2),
            frag_wait: Vec::with_capacity(BURST),
            frag_arena: vec![0; FRAG_ARENA],
            frag_used: 0,
            pieces: Vec::with_capacity(FRAG_PIECES),
            cut_wait: [None; CUT_WAIT],
            cut_bufs: (0..CUT_WAIT).map(|_| vec![0u8; CUT_FRAME]).collect(),
            alg_bufs: (0..ALG_SLOTS).map(|_| vec![0u8; ALG_FRAME_MAX]).collect(),
            alg_used: 0,
            alg_pending: [None; BURST],
            rare: 0,
            alg_out: Vec::with_capacity(ALG_SLOTS),
        }
    }

    /// Refreshes the worker's copy of the neighbour table if the shared one changed.
    #[inline]
    pub(super) fn sync_neigh(&mut self, sh: &GatewayShared) {
        let g = sh.neigh_gen.load(Ordering::Acquire);
        if g != self.neigh_gen {
            let n = sh.neigh_lock();
            self.neigh.clone_from(&n);
            self.neigh_gen = g;
        }
    }

    pub(super) fn gen_slot(&mut self) -> Option<&mut GenFrame> {
        let g = self.gen.get_mut(self.n_gen)?;
        self.n_gen += 1;
        Some(g)
    }

    pub(super) fn push_gen(
        &mut self,
        port: u16,
        f: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(g) = self.gen_slot() else {
            return false;
        };
        match f(&mut g.buf) {
            Some(len) => {
                g.port = port;
                g.len = len as u16;
                true
            }
            None => {
                self.n_gen -= 1;
                false
            }
        }
    }
}
