//! The connection record: both directions' keys, expiry, mark/label, NAT flags and the
//! per-protocol state, in one fixed-size slot of the pre-allocated pool.

#[cfg(test)]
use super::key::ConnKey;
use super::key::KEY_WORDS;
use super::sync::prefetch;
use super::timeouts::TimeoutAttr;
use bytemuck::Zeroable;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Direction of a packet relative to its connection.
pub const DIR_ORIG: usize = 0;
/// Direction of a packet relative to its connection: the reply.
pub const DIR_REPLY: usize = 1;

/// The bits of [`Conn::nat`] that hold the NAT flags (`CtState::SNAT | DNAT`); the low
/// six hold the ALG bits, so the record stays at 128 bytes.
pub const NAT_MASK: u8 = 0xc0;
/// The bit of [`Conn::stream`] that marks a learned connection this instance's datapath
/// has forwarded a packet of: it is this instance's too, so the end of its peer's bulk
/// stream never removes it and the refresh sends it back to that peer. Set once (the
/// worker reads the byte and the word on the line the lookup already read, and writes
/// only while the bit is clear); kept when the peer updates the connection.
pub const FORWARDED: u16 = 0x8000;
/// ALG bits: the helper of a control connection (`alg::helpers::ALG_FTP`/`ALG_TFTP`).
pub const ALG_HELPER: u8 = 0x03;
/// ALG bit: a data connection created from an expectation (its parent is in the ALG side
/// table).
pub const ALG_RELATED: u8 = 0x04;
/// ALG bit: the connection has a sequence skew in the ALG side table.
pub const ALG_SKEW: u8 = 0x08;

/// The bits of [`Conn::tattr`] that hold the [`TimeoutAttr`]; the two above it are the
/// connection's event status ([`ASSURED`], [`ASSURE_NEXT`]).
pub const ATTR_MASK: u8 = 0x3f;
/// Status bit: the connection is assured (Linux's `IPS_ASSURED`, `[ASSURED]` in
/// `conntrack -E`): a TCP connection that reached ESTABLISHED, another protocol that
/// saw a packet after its first reply. Sticky: never cleared for the connection's life.
pub const ASSURED: u8 = 0x80;
/// Status bit: a connection other than TCP whose first reply was just seen; its next
/// packet assures it.
pub const ASSURE_NEXT: u8 = 0x40;

/// The `tattr` byte after a packet moved the connection, whose byte was `old`, to the
/// timeout class `a`, and whether listeners get an `[UPDATE]` for it. Called only when
/// the byte changes (see [`Conn::set_attr`]). As Linux's conntrack: an update when TCP
/// enters SYN_RECV, ESTABLISHED or a closing state, when another protocol's first reply
/// clears `[UNREPLIED]` (`IPCT_REPLY`), and when a connection becomes assured
/// (`IPCT_ASSURED`); TCP is assured on ESTABLISHED, other protocols but ICMP on the
/// packet after their first reply.
pub fn next_status(old: u8, a: TimeoutAttr) -> (u8, bool) {
    use TimeoutAttr::*;
    let old_attr = old & ATTR_MASK;
    let changed = old_attr != a as u8;
    let was = old & ASSURED != 0;
    let assured =
        was || a == TcpEstablished || (a == UdpMultiple && old & ASSURE_NEXT != 0 && !changed);
    let next = if assured {
        ASSURED
    } else if a == UdpMultiple {
        ASSURE_NEXT
    } else {
        0
    };
    let update = match a {
        TcpSynRecv | TcpEstablished | TcpFinWait | TcpTimeWait | TcpClose => changed,
        UdpMultiple | IcmpReply => changed,
        _ => false,
    };
    (a as u8 | next, update || (assured && !was))
}

/// Lifecycle of a pool slot.
pub mod status {
    /// In the free pool.
    pub const FREE: u8 = 0;
    /// Allocated and being initialised; not yet reachable from the table.
    pub const INIT: u8 = 1;
    /// Published in the table.
    pub const LIVE: u8 = 2;
    /// Being removed (delete is idempotent: only the thread that moves LIVE→DYING frees).
    pub const DYING: u8 = 3;
}

/// TCP peer states, numbered as OVS's `enum ct_dpif_tcp_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    Closed = 0,
    Listen,
    SynSent,
    SynRecv,
    Established,
    CloseWait,
    FinWait1,
    Closing,
    LastAck,
    FinWait2,
    TimeWait,
}

impl TcpState {
    /// From the numeric value (saturating to TIME_WAIT for out-of-range values).
    pub fn from_u8(v: u8) -> TcpState {
        use TcpState::*;
        [
            Closed,
            Listen,
            SynSent,
            SynRecv,
            Established,
            CloseWait,
            FinWait1,
            Closing,
            LastAck,
            FinWait2,
            TimeWait,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(TimeWait)
    }

    /// The name OVS prints (`ESTABLISHED`, `TIME_WAIT`, …).
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Closed => "CLOSED",
            Listen => "LISTEN",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            Established => "ESTABLISHED",
            CloseWait => "CLOSE_WAIT",
            FinWait1 => "FIN_WAIT_1",
            Closing => "CLOSING",
            LastAck => "LAST_ACK",
            FinWait2 => "FIN_WAIT_2",
            TimeWait => "TIME_WAIT",
        }
    }
}

/// One TCP endpoint's tracking state (pf's `struct tcp_peer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TcpPeer {
    /// Highest sequence number sent.
    pub seqlo: u32,
    /// Highest sequence number the other end acknowledged plus its window.
    pub seqhi: u32,
    /// Largest window seen (before scaling).
    pub max_win: u16,
    /// Window scale: shift in the low 4 bits, plus `WSCALE_FLAG`/`WSCALE_UNKNOWN`/`SEQ_LEARNED`.
    pub wscale: u8,
    pub state: TcpState,
}

/// Per-protocol state of a connection, guarded by the connection's lock.
///
/// TCP uses both peers; UDP, ICMP and other protocols keep their small state machine in
/// `proto_state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct L4State {
    pub peer: [TcpPeer; 2],
    pub proto_state: u8,
}

impl L4State {
    /// The peers' sequence words and the packed rest, as [`L4Cell`] stores them.
    #[inline(always)]
    fn to_words(self) -> [u64; 3] {
        let seq = |p: &TcpPeer| p.seqlo as u64 | (p.seqhi as u64) << 32;
        let rest =
            |p: &TcpPeer| p.max_win as u64 | (p.wscale as u64) << 16 | (p.state as u8 as u64) << 24;
        [
            seq(&self.peer[0]),
            seq(&self.peer[1]),
            rest(&self.peer[0]) | rest(&self.peer[1]) << 32,
        ]
    }

    /// Inverse of [`L4State::to_words`].
    #[inline(always)]
    fn from_words(w: [u64; 3], proto_state: u8) -> L4State {
        let peer = |d: usize| {
            let rest = w[2] >> (32 * d);
            TcpPeer {
                seqlo: w[d] as u32,
                seqhi: (w[d] >> 32) as u32,
                max_win: rest as u16,
                wscale: (rest >> 16) as u8,
                state: TcpState::from_u8((rest >> 24) as u8),
            }
        };
        L4State {
            peer: [peer(0), peer(1)],
            proto_state,
        }
    }
}

/// The TCP state of a record and the record's lock: a test-and-test-and-set spin lock
/// byte, and the [`L4State`]'s peers as atomic words that are only written while the
/// lock is held ([`Conn::with_l4`] copies them out with the record's `proto_state`, runs
/// the update, and writes back what changed). Atomics rather than a lock around plain
/// data, so that an all-zero record is a valid, unlocked one (the pool is zeroed memory,
/// see [`crate::dpdk::ZeroedPages`]).
#[derive(Default, Zeroable)]
#[repr(C)]
pub(crate) struct L4Cell {
    words: [AtomicU64; 3],
    lock: AtomicU8,
}

/// Releases an [`L4Cell`]'s lock when dropped (also if the update panics).
struct L4Unlock<'a>(&'a AtomicU8);

impl Drop for L4Unlock<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl L4Cell {
    #[inline(always)]
    fn lock(&self) -> L4Unlock<'_> {
        loop {
            if self
                .lock
                .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return L4Unlock(&self.lock);
            }
            while self.lock.load(Ordering::Relaxed) != 0 {
                std::hint::spin_loop();
            }
        }
    }
}

/// Flag in a record's stored tail word: the key of that direction is out of line, in the
/// table's long-key array (IPv6 keys, see [`short_key`]).
pub(crate) const KEY_LONG: u64 = 1 << 63;

/// The in-record form of a key given as words ([`ConnKey::to_words`]): `[tail word,
/// source | destination << 32]`, for keys whose addresses are IPv4 (the rest of each
/// address word zero). `None` for the others (IPv6), which are kept out of line.
#[inline(always)]
pub(crate) fn short_key(w: &[u64; KEY_WORDS]) -> Option<[u64; 2]> {
    let short = w[4] & KEY_LONG == 0 && (w[1] | w[3] | (w[0] >> 32) | (w[2] >> 32)) == 0;
    short.then_some([w[4], w[0] | w[2] << 32])
}

/// A connection record: 128 bytes, two cache lines.
///
/// The first line holds what a lookup reads: both directions' keys (IPv4 keys in 16 bytes
/// each; an IPv6 key's words live in the table's long-key array and the record keeps its
/// tail word with [`KEY_LONG`] set), the expiry and the generation/status word, plus the
/// NAT/ALG byte, mark, zone links and the protocol state byte, which is all the state of
/// a UDP, ICMP or other protocol's connection: their packets read only this line. The
/// second line holds what a TCP update reads and writes: the L4 lock and the peers'
/// windows; and the label.
///
/// Fields read on the lookup path without a lock are atomics (keys, status, generation,
/// expiry): a reader may look at a slot that is concurrently freed and reused, and then
/// discards what it read when the bucket's sequence or the generation changed. The L4 state
/// is only written under the connection's lock. All-zero bytes are a FREE record of
/// generation 0 (the pool starts as zeroed pages).
#[derive(Default, Zeroable)]
#[repr(C, align(64))]
pub struct Conn {
    /// Per direction (`DIR_ORIG`, `DIR_REPLY`): the key's tail word
    /// (ports/zone/protocol/family, [`KEY_LONG`] when out of line) and its IPv4 addresses
    /// (see [`short_key`]; 0 when out of line). Read through the table
    /// (`ConnTable::key`), which knows where long keys are.
    pub(crate) keys: [[AtomicU64; 2]; 2],
    /// Absolute expiry time in milliseconds of the tracker clock.
    pub(crate) expiry: AtomicU64,
    /// Generation (high 30 bits, incremented each time the slot is freed, so stale
    /// references are detected) and status (low 2 bits, see [`status`]) in one word, so a
    /// transition checks both at once.
    pub(crate) gs: AtomicU32,
    /// NAT flags of the connection (`CtState::SNAT`/`DNAT` bits, [`NAT_MASK`]) and its
    /// ALG bits ([`ALG_HELPER`], [`ALG_RELATED`], [`ALG_SKEW`]).
    pub(crate) nat: AtomicU8,
    /// Which zone-list shard holds the connection.
    pub(crate) shard: AtomicU8,
    /// The timeout attribute of the current state (for the dump's timeout, low bits,
    /// [`ATTR_MASK`]) and the event status bits ([`ASSURED`], [`ASSURE_NEXT`]). Written
    /// under the L4 lock, and only when it changes.
    pub(crate) tattr: AtomicU8,
    /// 0 for a connection this instance created; n for one learned from sync peer n
    /// ([`crate::conntrack::learn`]).
    pub(crate) origin: AtomicU8,
    pub(crate) mark: AtomicU32,
    /// For a learned connection: the number of its origin peer's bulk stream that last
    /// carried it ([`crate::conntrack::learn`]), in the low 15 bits, and [`FORWARDED`];
    /// meaningless for a local one.
    pub(crate) stream: AtomicU16,
    /// [`L4State::proto_state`]: written under the L4 lock (second line), read without it
    /// by [`Conn::peek_proto_state`] between two generation checks. On the first line, so
    /// that the steady packets of UDP, ICMP and other protocols' connections, which read
    /// it and nothing else of the L4 state, do not fetch the second (perf/RESULTS.md
    /// session 25).
    pub(crate) proto_state: AtomicU8,
    /// Zone-list links (previous, next), only read and written under the zone-list shard
    /// lock (so `Relaxed` loads and stores suffice: the lock orders them; on x86 they are
    /// plain moves).
    pub(crate) zlink: [AtomicU32; 2],
    /// The per-protocol state under the connection's own spin lock (second line).
    pub(crate) l4: L4Cell,
    pub(crate) label: [AtomicU64; 2],
}

impl Conn {
    /// Prefetches both cache lines of the record (keys, status and expiry; the L4 state).
    #[inline(always)]
    pub(crate) fn prefetch_all(&self) {
        prefetch(&self.keys);
        prefetch(&self.l4);
    }

    /// Prefetches the record's first line (keys, status, expiry, the protocol state byte).
    #[inline(always)]
    pub(crate) fn prefetch_first(&self) {
        prefetch(&self.keys);
    }

    /// The generation.
    #[inline(always)]
    pub(crate) fn gen(&self) -> u32 {
        self.gs.load(Ordering::Acquire) >> 2
    }

    /// The status.
    #[inline(always)]
    pub(crate) fn status(&self) -> u8 {
        (self.gs.load(Ordering::Acquire) & 3) as u8
    }

    /// True when the slot holds the live connection of generation `gen`.
    #[inline(always)]
    pub(crate) fn is_live(&self, gen: u32) -> bool {
        self.gs.load(Ordering::Acquire) == (gen << 2 | status::LIVE as u32)
    }

    /// Moves the slot from `from` to `to` status if it is at generation `gen`.
    #[inline]
    pub(crate) fn transition(&self, gen: u32, from: u8, to: u8) -> bool {
        self.gs
            .compare_exchange(
                gen << 2 | from as u32,
                gen << 2 | to as u32,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Moves a slot its caller owns from `from` to `to` status, at its generation: a
    /// load and a store, no atomic exchange. Only for the moves no other thread can make
    /// at the same time (FREE to INIT by the worker that took the slot from its pool
    /// cache, INIT to LIVE by the one creating the connection): every other writer of the
    /// status compares and swaps from LIVE (`transition`) or holds the slot (`retire`),
    /// so the store overwrites nobody's write. The store releases (a reader that sees
    /// LIVE sees the record written before). A locked exchange here waited for the
    /// creation's earlier stores to reach the cache, the new record's first touches among
    /// them (half of `insert_hashed`'s samples in `datapath --new-flows`).
    #[inline]
    pub(crate) fn claim(&self, from: u8, to: u8) -> bool {
        let gs = self.gs.load(Ordering::Relaxed);
        if gs & 3 != from as u32 {
            return false;
        }
        self.gs.store(gs & !3 | to as u32, Ordering::Release);
        true
    }

    /// Frees the slot: next generation, status FREE.
    pub(crate) fn retire(&self) {
        let gs = self.gs.load(Ordering::Acquire);
        let next = ((gs >> 2).wrapping_add(1) & (u32::MAX >> 2)) << 2 | status::FREE as u32;
        self.gs.store(next, Ordering::Release);
    }

    /// The in-record words of direction `dir`'s key (see [`Conn::keys`]).
    #[inline(always)]
    pub(crate) fn short_words(&self, dir: usize) -> [u64; 2] {
        let k = &self.keys[dir & 1];
        [k[0].load(Ordering::Relaxed), k[1].load(Ordering::Relaxed)]
    }

    /// The state byte of a connection whose whole L4 state is that byte (UDP, ICMP and
    /// the protocols without a machine of their own), read without the lock: `None`
    /// unless the slot holds the live connection of generation `gen` both before and
    /// after the read, so that the byte is that connection's, as a locked update would
    /// have seen it at one moment (a concurrent update is ordered before or after). The
    /// steady packets of such connections change nothing and so need neither the lock's
    /// atomic exchange nor a write to the record (`ctgate-perf step`: `with_l4` was a
    /// tenth of the UDP step, most of it the exchange and a store-forwarding stall).
    #[inline(always)]
    pub(crate) fn peek_proto_state(&self, gen: u32) -> Option<u8> {
        if !self.is_live(gen) {
            return None;
        }
        let ps = self.proto_state.load(Ordering::Acquire);
        self.is_live(gen).then_some(ps)
    }

    /// Takes the connection lock and runs `f` on the L4 state. Always inlined: on the
    /// packet path (every TCP packet) the call cost the gateway step ~25 instructions
    /// per TCP packet (1k TCP flows, `perf/scripts/instr.sh`).
    #[inline(always)]
    pub(crate) fn with_l4<R>(&self, f: impl FnOnce(&mut L4State) -> R) -> R {
        let cell = &self.l4;
        let _held = cell.lock();
        let w = [
            cell.words[0].load(Ordering::Relaxed),
            cell.words[1].load(Ordering::Relaxed),
            cell.words[2].load(Ordering::Relaxed),
        ];
        let ps = self.proto_state.load(Ordering::Relaxed);
        let mut st = L4State::from_words(w, ps);
        let r = f(&mut st);
        let n = st.to_words();
        for (slot, (new, old)) in cell.words.iter().zip(n.into_iter().zip(w)) {
            if new != old {
                slot.store(new, Ordering::Relaxed);
            }
        }
        // Only what changed is written back: an update that changes nothing (a stale
        // holder that finds the generation moved on, a reader) stores nothing, so
        // [`Conn::init_l4`] may write an unpublished record's state beside it.
        if st.proto_state != ps {
            self.proto_state.store(st.proto_state, Ordering::Relaxed);
        }
        r
    }

    /// Sets the L4 state of a record no update can reach yet (INIT: taken from the pool,
    /// not yet published) from `f` on the protocol's blank state, without the lock.
    /// A worker holding a [`Hit`](super::table::Hit) of the slot's previous generation
    /// may hold the lock meanwhile, but it finds the generation changed before it reads
    /// the state, and [`Conn::with_l4`] writes back nothing it did not change; every
    /// other user of the lock needs the record live or its creator's hand. The lock's
    /// atomic exchange waited for the creation's earlier stores, the record's first
    /// touches among them.
    #[inline]
    pub(crate) fn init_l4<R>(&self, f: impl FnOnce(&mut L4State) -> R) -> R {
        let cell = &self.l4;
        let mut st = L4State::default();
        let r = f(&mut st);
        for (slot, new) in cell.words.iter().zip(st.to_words()) {
            slot.store(new, Ordering::Relaxed);
        }
        self.proto_state.store(st.proto_state, Ordering::Relaxed);
        r
    }

    /// The zone-list links (previous, next). Only under the zone-list shard lock.
    #[inline]
    pub(crate) fn zlink(&self) -> [u32; 2] {
        [
            self.zlink[0].load(Ordering::Relaxed),
            self.zlink[1].load(Ordering::Relaxed),
        ]
    }

    /// Sets the zone-list links (previous, next). Only under the zone-list shard lock.
    #[inline]
    pub(crate) fn set_zlink(&self, prev: u32, next: u32) {
        self.zlink[0].store(prev, Ordering::Relaxed);
        self.zlink[1].store(next, Ordering::Relaxed);
    }

    /// The connection's expiry time (ms).
    pub fn expiry(&self) -> u64 {
        self.expiry.load(Ordering::Relaxed)
    }

    /// Sets the expiry time (ms) of a packet's refresh, writing only when it changes (as
    /// Linux's `__nf_ct_refresh_acct`): within one millisecond of the clock a connection's
    /// packets all compute the same expiry, and an unchanged record line is not dirtied, so
    /// it is not taken from a worker that reads it too (a connection whose directions
    /// arrive at two workers) nor written back when evicted.
    #[inline(always)]
    pub(crate) fn refresh_expiry(&self, expiry: u64) {
        if self.expiry.load(Ordering::Relaxed) != expiry {
            self.expiry.store(expiry, Ordering::Relaxed);
        }
    }

    /// The connection's mark.
    pub fn mark(&self) -> u32 {
        self.mark.load(Ordering::Relaxed)
    }

    /// The connection's 128-bit label.
    pub fn label(&self) -> u128 {
        (self.label[0].load(Ordering::Relaxed) as u128)
            | (self.label[1].load(Ordering::Relaxed) as u128) << 64
    }

    /// Sets the connection's mark.
    pub fn set_mark(&self, mark: u32) {
        self.mark.store(mark, Ordering::Relaxed);
    }

    /// Sets the connection's label.
    pub fn set_label(&self, label: u128) {
        self.label[0].store(label as u64, Ordering::Relaxed);
        self.label[1].store((label >> 64) as u64, Ordering::Relaxed);
    }

    /// 0 when created here, else the number of the sync peer it was learned from.
    pub fn origin(&self) -> u8 {
        self.origin.load(Ordering::Relaxed)
    }

    /// Marks a learned connection as forwarded here ([`FORWARDED`]); nothing for a local
    /// one. One write per connection: the bit, once set, is only read.
    #[inline(always)]
    pub(crate) fn forwarded_here(&self) {
        if self.origin.load(Ordering::Relaxed) != 0
            && self.stream.load(Ordering::Relaxed) & FORWARDED == 0
        {
            self.stream.fetch_or(FORWARDED, Ordering::Relaxed);
        }
    }

    /// True for a learned connection this instance's datapath has forwarded.
    pub fn forwarded(&self) -> bool {
        self.origin() != 0 && self.stream.load(Ordering::Relaxed) & FORWARDED != 0
    }

    /// The NAT flags (`CtState` SNAT/DNAT bits).
    pub fn nat_flags(&self) -> u8 {
        self.nat.load(Ordering::Relaxed) & NAT_MASK
    }

    /// The ALG bits ([`ALG_HELPER`], [`ALG_RELATED`], [`ALG_SKEW`]), kept in the NAT
    /// byte's low bits.
    pub fn alg_bits(&self) -> u8 {
        self.nat.load(Ordering::Relaxed) & !NAT_MASK
    }

    /// The timeout attribute of the current state.
    pub fn attr(&self) -> u8 {
        self.tattr.load(Ordering::Relaxed) & ATTR_MASK
    }

    /// True once the connection is assured ([`ASSURED`]).
    pub fn assured(&self) -> bool {
        self.tattr.load(Ordering::Relaxed) & ASSURED != 0
    }

    /// Records that a packet moved the connection to timeout class `a`; true when
    /// listeners get an `[UPDATE]` for it. Call under the L4 lock (the lock orders the
    /// plain load and store). The steady case, nothing changed, is one load and one
    /// compare: no write to the record's line.
    #[inline(always)]
    pub(crate) fn set_attr(&self, a: TimeoutAttr) -> bool {
        let old = self.tattr.load(Ordering::Relaxed);
        if old == a as u8 | (old & ASSURED) {
            return false;
        }
        self.attr_changed(old, a)
    }

    /// True when `a` is the recorded timeout class: [`Conn::set_attr`] would write
    /// nothing and report no `[UPDATE]`.
    #[inline(always)]
    pub(crate) fn attr_is(&self, a: TimeoutAttr) -> bool {
        let old = self.tattr.load(Ordering::Relaxed);
        old == a as u8 | (old & ASSURED)
    }

    #[cold]
    #[inline(never)]
    fn attr_changed(&self, old: u8, a: TimeoutAttr) -> bool {
        let (next, update) = next_status(old, a);
        self.tattr.store(next, Ordering::Relaxed);
        update
    }

    /// Sets ALG bits (never clears any).
    pub(crate) fn set_alg_bits(&self, bits: u8) {
        self.nat.fetch_or(bits & !NAT_MASK, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_two_cache_lines_with_the_lookup_fields_on_the_first() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<Conn>(), 128);
        assert_eq!(align_of::<Conn>(), 64);
        // What a lookup reads (both keys, expiry, generation/status) is in line 0, which
        // `prefetch_all` fetches through `keys`; the L4 lock and state start line 1.
        assert_eq!(offset_of!(Conn, keys), 0);
        assert!(offset_of!(Conn, expiry) + 8 <= 64 && offset_of!(Conn, gs) + 4 <= 64);
        // So is the protocol state byte, all a UDP, ICMP or other connection's packet
        // reads of its L4 state.
        assert!(offset_of!(Conn, proto_state) < 64 && offset_of!(Conn, nat) < 64);
        assert_eq!(offset_of!(Conn, l4), 64);
        assert_eq!(size_of::<TcpPeer>(), 12);
    }

    #[test]
    fn ipv4_keys_are_short_and_others_long() {
        let mut k = ConnKey {
            src: [0; 16],
            dst: [0; 16],
            sport: 1234,
            dport: 80,
            zone: 7,
            proto: 6,
            family: 4,
        };
        k.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.dst[..4].copy_from_slice(&[192, 0, 2, 255]);
        let w = k.to_words();
        let s = short_key(&w).expect("IPv4 key is short");
        assert_eq!(s[0], w[4]);
        assert_eq!((s[1] & 0xffff_ffff, s[1] >> 32), (w[0], w[2]));
        let mut v6 = k;
        v6.family = 6;
        v6.src[15] = 1;
        assert_eq!(short_key(&v6.to_words()), None);
        let mut odd = k;
        odd.dst[4] = 1; // an address word with bits beyond the first four bytes
        assert_eq!(short_key(&odd.to_words()), None);
    }

    #[test]
    fn l4_state_survives_the_round_trip_through_the_record() {
        let c = Conn::zeroed();
        assert_eq!(c.with_l4(|st| *st), L4State::default());
        let st = L4State {
            peer: [
                TcpPeer {
                    seqlo: 0xdead_beef,
                    seqhi: 7,
                    max_win: 65535,
                    wscale: 0x8e,
                    state: TcpState::FinWait2,
                },
                TcpPeer {
                    seqlo: 1,
                    seqhi: u32::MAX,
                    max_win: 1,
                    wscale: 3,
                    state: TcpState::TimeWait,
                },
            ],
            proto_state: 2,
        };
        c.with_l4(|s| *s = st);
        assert_eq!(c.with_l4(|s| *s), st);
        // The lock is free again: a second update does not spin forever.
        c.with_l4(|s| s.peer[1].state = TcpState::Closed);
        assert_eq!(c.with_l4(|s| s.peer[1].state), TcpState::Closed);
    }

    #[test]
    fn a_claim_moves_only_from_the_expected_status_and_keeps_the_generation() {
        let c = Conn::zeroed();
        c.retire();
        c.retire();
        assert_eq!((c.gen(), c.status()), (2, status::FREE));
        // Not INIT yet: no move to LIVE.
        assert!(!c.claim(status::INIT, status::LIVE));
        assert_eq!(c.status(), status::FREE);
        assert!(c.claim(status::FREE, status::INIT));
        assert!(c.claim(status::INIT, status::LIVE));
        assert!(c.is_live(2));
        // A live slot is not claimed again; unlinking it still compares and swaps.
        assert!(!c.claim(status::FREE, status::INIT));
        assert!(!c.transition(1, status::LIVE, status::DYING));
        assert!(c.transition(2, status::LIVE, status::DYING));
    }

    #[test]
    fn a_new_connections_state_starts_blank_and_survives_a_stale_lock_holder() {
        let c = Conn::zeroed();
        c.with_l4(|st| {
            st.peer[0].seqlo = 7;
            st.proto_state = 5;
        });
        // The creator writes the state of the record's new connection while a worker
        // still holding the previous generation has the lock and changes nothing.
        c.with_l4(|_stale| {
            let blank = c.init_l4(|st| {
                let was = *st;
                st.proto_state = 2;
                was
            });
            assert_eq!(blank, L4State::default());
        });
        assert_eq!(c.with_l4(|st| (st.peer[0].seqlo, st.proto_state)), (0, 2));
    }

    #[test]
    fn tcp_state_order_and_names_match_ovs() {
        assert_eq!(TcpState::Established as u8, 4);
        assert_eq!(TcpState::FinWait2 as u8, 9);
        assert_eq!(TcpState::from_u8(10), TcpState::TimeWait);
        assert_eq!(TcpState::from_u8(3).name(), "SYN_RECV");
    }
}
