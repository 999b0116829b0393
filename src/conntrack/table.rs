//! The connection table: lock-striped, cache-line buckets with seqlock reads, and a
//! pre-allocated pool of connection records.
//!
//! # Layout
//!
//! A [`Bucket`] is one 64-byte cache line (after DPDK's `rte_cuckoo_hash`): a sequence
//! word, an overflow link, nine 16-bit signatures (slots 0–7 in two 64-bit words, matched
//! eight at a time: [`Bucket::sig_matches`]) and nine 32-bit entries (62 bytes: a ninth
//! slot fits where eight left eight bytes of padding). An entry is
//! `((conn_index + 1) << 2) | kind` (0 = empty), so a key leads to its record *and*
//! tells which direction it is. A connection whose reply key is its original key
//! reversed (no address translation) has one entry, of kind *both*: keys hash
//! symmetrically ([`KeyHasher::hash_words`]), so both keys map to that bucket and
//! signature, and a lookup compares the record's two keys to tell the direction. A
//! translated connection has two entries, one for its original-direction key and one for
//! its reply-direction key (the NAT-translated tuple), in their own buckets. Records live
//! out of line in one pre-allocated array (the pool), sized by the connection limit: no
//! allocation per connection. When a bucket's nine slots are used, further entries go to
//! overflow buckets chained from it, taken from a bounded overflow pool. Chains stay dense
//! (every bucket but the last full: a removal moves the last entry into its hole), so a
//! chain holds exactly the overflow buckets its entries need, and churn cannot drain the
//! pool.
//!
//! # Concurrency
//!
//! * **Readers** (lookups from every worker) take no lock: they read the bucket's sequence,
//!   scan it, read the candidate record's key (atomic loads), and re-read the sequence; if it
//!   changed or was odd they retry. A record found this way is identified by its index and
//!   generation; the caller re-validates the generation under the record's lock before
//!   touching its state, so a record freed and reused meanwhile is never updated by mistake.
//! * **Writers** lock a bucket by moving its sequence from even to odd (compare-and-swap),
//!   and unlock by making it even again. Inserting a connection locks the buckets of both
//!   keys in ascending index order, once if they are the same (as Linux's
//!   `nf_conntrack_double_lock`), so two workers can never deadlock.
//! * **Lock order**: bucket locks (ascending index) → connection lock → zone-list lock.
//!   Nothing takes a bucket lock while holding a connection or zone-list lock.
//!
//! Deleting is idempotent: only the thread that moves a record from LIVE to DYING removes
//! its entries and frees it.

use super::conn::{short_key, status, Conn, DIR_ORIG, DIR_REPLY, KEY_LONG};
use super::free_set::FreeSet;
use super::key::{swapped_words, ConnKey, KeyHasher, KEY_WORDS};
use super::sync::{prefetch, CachePadded, SpinLock};
use crate::dpdk::{lanes16_eq, Backing, PageSize, ZeroedPages};
use bytemuck::Zeroable;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// Slots per bucket: as many as fit in the line. The ninth (over the eight of
/// `rte_cuckoo_hash`) halves the buckets that spill into overflow in a full table (about
/// 15% → 8% at 6 entries a bucket), each a second line for the lookups of their keys.
pub const SLOTS: usize = 9;
/// Longest overflow chain a reader follows before it retries (guards against chasing a
/// chain that is being rebuilt under it).
const MAX_CHAIN: usize = 64;

/// One cache line of the table. All-zero bytes are an empty, unlocked bucket.
#[derive(Zeroable)]
#[repr(C, align(64))]
pub struct Bucket {
    /// Seqlock word: odd while a writer holds the bucket.
    seq: AtomicU32,
    /// Overflow bucket index + 1, 0 for none. (Only meaningful in chains.)
    next: AtomicU32,
    /// The slots' 16-bit signatures (the hash's top bits): slots 0–3 and 4–7 four to a
    /// word, so that a lookup matches them all at once ([`Bucket::sig_matches`]), and
    /// slot 8's alone.
    sig_words: [AtomicU64; 2],
    sig_last: AtomicU16,
    entries: [AtomicU32; SLOTS],
}

const _: () = assert!(SLOTS == 9, "the signatures' layout holds nine slots");

impl Bucket {
    /// Slot `i`'s signature.
    #[inline(always)]
    fn sig(&self, i: usize) -> u16 {
        match self.sig_words.get(i / 4) {
            Some(w) => (w.load(Ordering::Relaxed) >> (16 * (i % 4))) as u16,
            None => self.sig_last.load(Ordering::Relaxed),
        }
    }

    /// Sets slot `i`'s signature. Only the bucket's writer (it holds the lock) calls it:
    /// the other lanes of the word are rewritten as they were.
    #[inline(always)]
    fn set_sig(&self, i: usize, sig: u16) {
        match self.sig_words.get(i / 4) {
            Some(w) => {
                let sh = 16 * (i % 4);
                let v = w.load(Ordering::Relaxed);
                w.store(
                    v & !(0xffff << sh) | u64::from(sig) << sh,
                    Ordering::Relaxed,
                );
            }
            None => self.sig_last.store(sig, Ordering::Relaxed),
        }
    }

    /// [`Bucket::sig_matches`] in the general registers, for the burst's record prefetch
    /// ([`ConnTable::prefetch_candidate`]): four lanes a 64-bit word with a zero-lane test
    /// (SWAR), which may also report a slot above a matching one in the same word that does
    /// not match (the borrow), harmless for a prefetch (the lowest match is a true one).
    /// With the vector compare here too the tracker's lookups ran 5% faster at 1k
    /// connections but 8–10% slower at 100k and 1M (medians of interleaved `ctgate-perf
    /// core --only established` runs, perf/RESULTS.md session 23): kept as it was.
    #[inline(always)]
    fn sig_candidates(&self, sig: u16) -> u32 {
        const LANE_ONE: u64 = 0x0001_0001_0001_0001;
        const LANE_HIGH: u64 = 0x8000_8000_8000_8000;
        let pat = u64::from(sig).wrapping_mul(LANE_ONE);
        let lanes = |w: u64| {
            let x = w ^ pat;
            let zero = x.wrapping_sub(LANE_ONE) & !x & LANE_HIGH;
            ((zero >> 15).wrapping_mul(1 << 48 | 1 << 33 | 1 << 18 | 1 << 3) >> 48) as u32
        };
        lanes(self.sig_words[0].load(Ordering::Relaxed))
            | lanes(self.sig_words[1].load(Ordering::Relaxed)) << 4
            | u32::from(self.sig_last.load(Ordering::Relaxed) == sig) << 8
    }

    /// The slots whose signature is `sig`, as bits (slot `i`: bit `i`); an empty slot may
    /// match too (its signature is stale). The caller checks the entry and the key.
    ///
    /// The eight word-held signatures are compared as the eight lanes of one 128-bit
    /// vector ([`lanes16_eq`], as `rte_cuckoo_hash` does), the ninth alone: the gateway
    /// step 25 instructions per packet shorter than with [`Bucket::sig_candidates`]'
    /// word-by-word form in the lookup (`perf/scripts/instr.sh`, perf/RESULTS.md
    /// session 23).
    #[inline(always)]
    fn sig_matches(&self, sig: u16) -> u32 {
        let m = lanes16_eq(
            self.sig_words[0].load(Ordering::Relaxed),
            self.sig_words[1].load(Ordering::Relaxed),
            sig,
        );
        m | u32::from(self.sig_last.load(Ordering::Relaxed) == sig) << 8
    }
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// An entry's kind (its low two bits): the original-direction key (= `DIR_ORIG`)…
const KIND_ORIG: u32 = 0;
/// … the reply-direction key (= `DIR_REPLY`) …
const KIND_REPLY: u32 = 1;
/// … or both keys of a connection whose reply key is its original key reversed.
const KIND_BOTH: u32 = 2;
const _: () = assert!(KIND_ORIG == DIR_ORIG as u32 && KIND_REPLY == DIR_REPLY as u32);

#[inline(always)]
fn entry_of(idx: u32, kind: u32) -> u32 {
    ((idx + 1) << 2) | kind
}

#[inline(always)]
fn entry_idx(e: u32) -> u32 {
    (e >> 2) - 1
}

/// True when entry `e` stands for its record's original-direction key (alone or with the
/// reply key): each connection has exactly one such entry.
#[inline(always)]
fn holds_orig(e: u32) -> bool {
    e & 3 != KIND_REPLY
}

/// True when a connection with keys `orig` and `reply` (hashed `h0`, `h1`) takes one entry
/// of kind both: its reply key is its original key reversed (no translation).
#[inline(always)]
fn is_pair(orig: &[u64; KEY_WORDS], h0: u64, reply: &[u64; KEY_WORDS], h1: u64) -> bool {
    h0 == h1 && *reply == swapped_words(orig)
}

#[inline(always)]
fn sig_of(hash: u64) -> u16 {
    (hash >> 48) as u16
}

/// What the burst's record prefetch found in a key's bucket
/// ([`ConnTable::prefetch_candidate`]): the slot of the first entry whose signature
/// matches, or none (and whether the bucket has an overflow chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate(u8);

impl Candidate {
    /// No entry matches and the bucket has no overflow chain: the key is almost surely
    /// not in the table.
    pub const NONE: Candidate = Candidate(u8::MAX);
    /// No slot to try first, the lookup scans the bucket and its chain: no entry of the
    /// bucket itself matched but it has an overflow chain, or nothing was looked at.
    pub const SCAN: Candidate = Candidate(u8::MAX - 1);

    /// True when the key is likely in the table (a matching entry, or a chain to search).
    #[inline(always)]
    pub fn likely_present(self) -> bool {
        self != Candidate::NONE
    }
}

/// A reference to a connection found in the table: its pool index, the direction of the
/// key that matched, and the record's generation when it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub idx: u32,
    pub dir: usize,
    pub gen: u32,
}

/// Why an insert did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// A live, unexpired connection already has the original key (another worker created
    /// it first); the hit is that connection.
    Exists(Hit),
    /// A live, unexpired connection already uses the reply key (a NAT tuple collision).
    ReplyTaken,
    /// No overflow bucket left for an entry.
    NoSpace,
}

/// The overflow buckets' free list: a stack of returned indices, and the high-water mark
/// of the never-used ones (taken one at a time under their bucket's lock).
struct FreeList {
    /// Indices returned to the pool.
    stack: Vec<u32>,
    /// Indices never used yet start here.
    fresh: u32,
}

/// The record pool's shared state. Workers take and return records in batches through a
/// [`PoolCache`].
struct RecordPool {
    /// Records returned to the pool, handed out again in address order ([`FreeSet`]).
    returned: FreeSet,
    /// Records never used yet start here: the high-water mark of the pool. Records are
    /// zeroed pages that the kernel commits on first touch, so the pool's resident size
    /// grows with this mark; returned records are always reused before it moves.
    fresh: u32,
    /// Records below this mark have their pages committed ahead of their first use
    /// (records only; see [`ConnTable::alloc`]).
    populated: u32,
}

/// Records whose pages are committed at once, one chunk ahead of the high-water mark
/// (256 KiB of 128-byte records): the worker pays one system call per chunk instead of a
/// page fault per 4 KiB, and resident memory still follows the connections, a chunk or
/// two ahead.
const POPULATE_CHUNK: u32 = 2048;

/// A worker's private cache of free record indices (no shared state touched per
/// connection, only per batch).
pub struct PoolCache {
    free: Vec<u32>,
}

/// How many creations ahead [`ConnTable::alloc`] fetches the record it will hand out: a
/// recycled record is a miss, and one creation's time (a record, two bucket lines and
/// the zone list, all misses at scale) is too short to hide it.
const ALLOC_AHEAD: usize = 4;

/// Batch size for moving indices between a [`PoolCache`] and the shared pool: each
/// batch takes the pool's lock, a line the workers pass between them. With two threads
/// creating, 128 rather than 32 gave 10–18% more creations per second at 100k–10M
/// connections (`ctgate-perf core --only create`, perf/RESULTS.md, session 12).
const CACHE_BATCH: usize = 128;

/// Free records one [`PoolCache`] can hold at most (it flushes down to `CACHE_BATCH`
/// when it reaches twice that).
pub const CACHE_MAX: u32 = 2 * CACHE_BATCH as u32;

impl Default for PoolCache {
    fn default() -> Self {
        PoolCache {
            free: Vec::with_capacity(CACHE_BATCH * 2),
        }
    }
}

/// The table: buckets, overflow buckets and the record pool.
pub struct ConnTable {
    buckets: ZeroedPages<Bucket>,
    /// Number of buckets (any count: a hash is mapped by multiply-shift, not a mask).
    n: u64,
    overflow: ZeroedPages<Bucket>,
    /// Free overflow buckets: returned ones, then the never-used ones from a high-water
    /// mark (as the record pool, so unused overflow pages are never touched). On its own
    /// line: every chain that grows or shrinks takes this lock, and the fields around it
    /// are read on every packet (with it beside them, two creating threads ran 12–14%
    /// slower: `ctgate-perf core --only create`, perf/RESULTS.md, session 12).
    overflow_free: CachePadded<SpinLock<FreeList>>,
    conns: ZeroedPages<Conn>,
    /// The words of keys that do not fit a record (IPv6), per record and direction; pages
    /// of it are committed only where such keys are written.
    long_keys: ZeroedPages<[[AtomicU64; KEY_WORDS]; 2]>,
    /// On its own line: the lock is written on every batch, the fields around it are
    /// read on every packet.
    free: CachePadded<SpinLock<RecordPool>>,
    hasher: KeyHasher,
}

impl ConnTable {
    /// A table for up to `capacity` connections in `n_buckets` buckets (rounded up to a power of two;
    /// 0 picks the default: enough for an average of at most 6 entries a bucket when full),
    /// on 4 KiB pages.
    pub fn new(capacity: u32, n_buckets: u32, hasher: KeyHasher) -> ConnTable {
        ConnTable::with_pages(capacity, n_buckets, hasher, PageSize::Small)
    }

    /// [`ConnTable::new`] with the buckets and the record pool on pages of `pages` (huge
    /// pages when the kernel's pool has room, else 4 KiB pages). Either way the buckets are
    /// committed now and the records as the connections need them.
    pub fn with_pages(
        capacity: u32,
        n_buckets: u32,
        hasher: KeyHasher,
        pages: PageSize,
    ) -> ConnTable {
        let capacity = capacity.clamp(1, (1 << 30) - 1);
        let n_buckets = if n_buckets == 0 {
            default_buckets(capacity)
        } else {
            n_buckets.next_power_of_two()
        };
        // At the default sizing a full table averages 6 entries a bucket; about 8% of buckets
        // then hold more than 9 (Poisson), so a quarter of the bucket count in overflow
        // buckets covers them with room to spare.
        let n_overflow = (n_buckets / 4).max(64) as usize;
        // Buckets and records: zeroed pages, nothing written here (all-zero is an empty
        // bucket and a FREE record of generation 0).
        let buckets = ZeroedPages::<Bucket>::new(n_buckets as usize, pages);
        let overflow = ZeroedPages::<Bucket>::new(n_overflow, pages);
        let conns = ZeroedPages::<Conn>::new(capacity as usize, pages);
        let long_keys = ZeroedPages::new(capacity as usize, PageSize::Small);
        // The buckets are committed now: keys hash uniformly over them, so a few connections
        // per page already reach every page, and each first touch would be a page fault
        // in a worker (on a huge page, 2 MiB zeroed there). The first chunk of the overflow
        // buckets and of the records too (both are handed out from a high-water mark); the
        // rest of the pool (most of the memory) follows the connections (`refill`).
        // Creation into a fresh 1k-connection table on huge pages went 2.5 → 6.9 M/s with
        // this, 3.5 without the overflow's chunk (`ctgate-perf core --only create`,
        // perf/RESULTS.md, session 14).
        buckets.populate(0..n_buckets as usize);
        overflow.populate(0..POPULATE_CHUNK as usize);
        let first = POPULATE_CHUNK.min(capacity);
        conns.populate(0..first as usize);
        ConnTable {
            buckets,
            n: u64::from(n_buckets),
            overflow,
            overflow_free: CachePadded(SpinLock::new(FreeList {
                stack: Vec::new(),
                fresh: 0,
            })),
            conns,
            long_keys,
            free: CachePadded(SpinLock::new(RecordPool {
                returned: FreeSet::new(capacity as usize),
                fresh: 0,
                populated: first,
            })),
            hasher,
        }
    }

    /// Where the buckets' and the record pool's memory came from (huge pages, 4 KiB
    /// pages, heap): [`Backing::HugePages`] only when all of them are on huge pages (the
    /// hugetlb pool may have had room for some arrays and not the others), else the
    /// weakest backing among them.
    pub fn backing(&self) -> Backing {
        let all = [
            self.buckets.backing(),
            self.overflow.backing(),
            self.conns.backing(),
        ];
        [Backing::Heap, Backing::Pages]
            .into_iter()
            .find(|b| all.contains(b))
            .unwrap_or(Backing::HugePages)
    }

    /// Bytes of the table's arrays (buckets, overflow buckets, records, long keys): the
    /// most it commits, as its pages are first touched.
    pub fn bytes(&self) -> u64 {
        fn of<T>(a: &[T]) -> u64 {
            std::mem::size_of_val(a) as u64
        }
        of(&self.buckets) + of(&self.overflow) + of(&self.conns) + of(&self.long_keys)
    }

    /// Number of buckets.
    pub fn n_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Number of record slots.
    pub fn capacity(&self) -> u32 {
        self.conns.len() as u32
    }

    /// The key hasher.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// The record at `idx`.
    #[inline(always)]
    pub fn conn(&self, idx: u32) -> &Conn {
        &self.conns[idx as usize]
    }

    /// True when record `idx`'s key of direction `dir` equals `w` (atomic loads, stopping
    /// at the first difference: the tail word first, it differs most often between
    /// connections that share a bucket's signature).
    #[inline(always)]
    fn key_eq(&self, c: &Conn, idx: u32, dir: usize, w: &[u64; KEY_WORDS]) -> bool {
        let k = &c.keys[dir & 1];
        let tail = k[0].load(Ordering::Relaxed);
        if tail & KEY_LONG == 0 {
            tail == w[4]
                && k[1].load(Ordering::Relaxed) == w[0] | w[2] << 32
                && (w[1] | w[3] | (w[0] >> 32) | (w[2] >> 32)) == 0
        } else {
            tail == w[4] | KEY_LONG
                && self.long_keys.get(idx as usize).is_some_and(|l| {
                    let l = &l[dir & 1];
                    (0..KEY_WORDS).all(|i| l[i].load(Ordering::Relaxed) == w[i])
                })
        }
    }

    /// The direction of record `idx`'s key that equals `w` among those entry `e` stands
    /// for (one key, or both of a [`KIND_BOTH`] entry), if any.
    #[inline(always)]
    fn entry_key_eq(&self, c: &Conn, idx: u32, e: u32, w: &[u64; KEY_WORDS]) -> Option<usize> {
        let kind = e & 3;
        if kind != KIND_BOTH {
            let dir = (kind & 1) as usize;
            return self.key_eq(c, idx, dir, w).then_some(dir);
        }
        // The direction whose tail word (ports, zone, protocol) matches, chosen without a
        // branch: the reversed key has the ports swapped, so only equal ports need the
        // other key compared too.
        let tail = c.keys[DIR_ORIG][0].load(Ordering::Relaxed) & !KEY_LONG;
        let dir = usize::from(tail != w[4]);
        if self.key_eq(c, idx, dir, w) {
            Some(dir)
        } else if dir == DIR_ORIG && self.key_eq(c, idx, DIR_REPLY, w) {
            Some(DIR_REPLY)
        } else {
            None
        }
    }

    /// Record `idx`'s key of direction `dir` as words (atomic loads; may be torn if the
    /// slot is being reused concurrently, which callers detect by validation).
    #[inline]
    pub fn key_words(&self, idx: u32, dir: usize) -> [u64; KEY_WORDS] {
        let [tail, addrs] = self.conns[idx as usize].short_words(dir);
        if tail & KEY_LONG == 0 {
            return [addrs & 0xffff_ffff, 0, addrs >> 32, 0, tail];
        }
        let l = &self.long_keys[idx as usize][dir & 1];
        std::array::from_fn(|i| l[i].load(Ordering::Relaxed))
    }

    /// Record `idx`'s key of direction `dir`.
    pub fn key(&self, idx: u32, dir: usize) -> ConnKey {
        ConnKey::from_words(&self.key_words(idx, dir))
    }

    /// Stores both keys of record `idx` (status INIT: not reachable yet).
    pub(crate) fn set_keys(&self, idx: u32, orig: &ConnKey, reply: &ConnKey) {
        let c = &self.conns[idx as usize];
        for (dir, k) in [orig, reply].into_iter().enumerate() {
            let w = k.to_words();
            let slot = &c.keys[dir];
            let [tail, addrs] = match short_key(&w) {
                Some(s) => s,
                None => {
                    let l = &self.long_keys[idx as usize][dir];
                    for (l, w) in l.iter().zip(w) {
                        l.store(w, Ordering::Relaxed);
                    }
                    [w[4] | KEY_LONG, 0]
                }
            };
            slot[0].store(tail, Ordering::Relaxed);
            slot[1].store(addrs, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn bucket_of(&self, hash: u64) -> usize {
        // Lemire's multiply-shift of the hash's low 32 bits onto 0..n (the signature is
        // the top 16 bits, independent of these).
        (((hash & 0xffff_ffff) * self.n) >> 32) as usize
    }

    /// Prefetches the bucket a hash maps to.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u64) {
        prefetch(&self.buckets[self.bucket_of(hash)]);
    }

    /// Prefetches bucket `bi` (its head; for a walk that will reach it soon).
    #[inline(always)]
    pub fn prefetch_bucket_at(&self, bi: usize) {
        if let Some(b) = self.buckets.get(bi) {
            prefetch(b);
        }
    }

    /// Prefetches the first line (keys, status, expiry, zone links) of the records whose
    /// original-direction entries sit in bucket `bi`'s head: a sweep a few buckets behind
    /// then reads them from cache. Entries read without the seqlock: a stale one only
    /// wastes a prefetch.
    #[inline]
    pub fn prefetch_bucket_records(&self, bi: usize) {
        let Some(b) = self.buckets.get(bi) else {
            return;
        };
        for i in 0..SLOTS {
            let e = b.entries[i].load(Ordering::Relaxed);
            if e != 0 && holds_orig(e) {
                self.prefetch_record(entry_idx(e));
            }
        }
    }

    /// Prefetches record `idx`'s first line (keys, status, expiry, zone links).
    #[inline(always)]
    pub fn prefetch_record(&self, idx: u32) {
        if let Some(c) = self.conns.get(idx as usize) {
            prefetch(&c.keys);
        }
    }

    /// Prefetches what removing record `idx`, found through its original-direction
    /// bucket (which is then in cache), writes elsewhere: its reply-direction bucket,
    /// which [`ConnTable::unlink`] locks too (hashed from the record's keys, whose line
    /// should be in cache), and the record's second line, whose lock
    /// [`ConnTable::release`] takes.
    #[inline]
    pub fn prefetch_removal(&self, idx: u32) {
        if let Some(c) = self.conns.get(idx as usize) {
            c.prefetch_all();
        }
        self.prefetch_bucket(self.hasher.hash_words(&self.key_words(idx, DIR_REPLY)));
    }

    /// Prefetches the record of the first entry in `hash`'s bucket whose signature
    /// matches (the likely hit), so a burst can overlap those misses too. Returns that
    /// entry's slot (which the tracker's `lookup_hinted` tries first), or that the bucket
    /// has no such entry: with no overflow chain either ([`Candidate::NONE`]), the key is
    /// almost surely not in the table, the packet likely creates a connection.
    ///
    /// `whole`: both of the record's lines (a TCP segment's update reads and writes the
    /// second), else the first (all that the steady packets of other protocols read).
    #[inline(always)]
    pub fn prefetch_candidate(&self, hash: u64, whole: bool) -> Candidate {
        let b = &self.buckets[self.bucket_of(hash)];
        let mut m = b.sig_candidates(sig_of(hash));
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let e = b.entries.get(i).map_or(0, |e| e.load(Ordering::Relaxed));
            if e != 0 {
                let idx = entry_idx(e) as usize;
                if let Some(c) = self.conns.get(idx) {
                    // The lookup reads the key of the entry's direction, the status and
                    // expiry, NAT the other direction's key, the steady packet of a UDP,
                    // ICMP or other connection the protocol state byte: the first line; a
                    // TCP update the L4 state in the second.
                    if whole {
                        c.prefetch_all();
                    } else {
                        c.prefetch_first();
                    }
                }
                return Candidate(i as u8);
            }
        }
        if b.next.load(Ordering::Relaxed) != 0 {
            Candidate::SCAN
        } else {
            Candidate::NONE
        }
    }

    #[inline(always)]
    fn chain_next(&self, b: &Bucket) -> Option<&Bucket> {
        match b.next.load(Ordering::Relaxed) {
            0 => None,
            n => self.overflow.get(n as usize - 1),
        }
    }

    /// Looks up a key (given as words with its hash) without locking. Returns the live,
    /// unexpired connection that has it. `now` is in ms of the tracker clock.
    #[inline]
    pub fn lookup(&self, words: &[u64; KEY_WORDS], hash: u64, now: u64) -> Option<Hit> {
        self.lookup_from(&self.buckets[self.bucket_of(hash)], words, hash, now)
    }

    /// [`ConnTable::lookup`] trying first the entry in the slot the burst's prefetch
    /// found ([`ConnTable::prefetch_candidate`]), which is the hit of nearly every packet of
    /// an established connection: its key compared, without matching the bucket's
    /// signatures a second time. The slot's entry is read, and the record checked, as the
    /// scan would (between two even, equal reads of the bucket's sequence); an entry that
    /// moved, another key in its place, a record that is not live or has expired, a
    /// changing bucket: the whole bucket is scanned as usual. The answer is the scan's: a
    /// key has at most one live, unexpired record in the table.
    ///
    /// Always inlined into the tracker's per-packet path: a hit returned from a call went
    /// through memory (`Option<Hit>` is 24 bytes) and was read back at once, a
    /// store-forwarding stall per packet (`ctgate-perf step`: a fifth of the burst loop's
    /// samples on the load).
    #[inline(always)]
    pub(crate) fn lookup_hinted(
        &self,
        words: &[u64; KEY_WORDS],
        hash: u64,
        hint: Candidate,
        now: u64,
    ) -> Option<Hit> {
        let head = &self.buckets[self.bucket_of(hash)];
        if let Some(slot) = head.entries.get(usize::from(hint.0)) {
            let s1 = head.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let found = self.entry_hit(slot.load(Ordering::Relaxed), words, now);
                fence(Ordering::Acquire);
                if found.is_some() && head.seq.load(Ordering::Relaxed) == s1 {
                    return found;
                }
            }
        }
        self.lookup_from(head, words, hash, now)
    }

    /// The lookup's loop over the bucket `head` (of `hash`).
    #[inline(always)]
    fn lookup_from(
        &self,
        head: &Bucket,
        words: &[u64; KEY_WORDS],
        hash: u64,
        now: u64,
    ) -> Option<Hit> {
        let sig = sig_of(hash);
        loop {
            let s1 = head.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let found = self.scan(head, sig, words, now);
            fence(Ordering::Acquire);
            if head.seq.load(Ordering::Relaxed) == s1 {
                if let Some(Some(h)) = found {
                    return Some(h);
                }
                if let Some(None) = found {
                    return None;
                }
            }
            // Changed underneath (or chain too long while changing): retry.
        }
    }

    /// Scans a bucket chain for a live, unexpired record with the key. `None` if the chain
    /// was longer than a reader follows (the caller retries).
    #[inline(always)]
    fn scan(
        &self,
        head: &Bucket,
        sig: u16,
        words: &[u64; KEY_WORDS],
        now: u64,
    ) -> Option<Option<Hit>> {
        let mut b = head;
        for _ in 0..MAX_CHAIN {
            let mut m = b.sig_matches(sig);
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                let e = b.entries.get(i).map_or(0, |e| e.load(Ordering::Relaxed));
                if let Some(hit) = self.entry_hit(e, words, now) {
                    return Some(Some(hit));
                }
            }
            match self.chain_next(b) {
                Some(n) => b = n,
                None => return Some(None),
            }
        }
        None
    }

    /// The hit of entry `e` (read from a bucket slot) for the key `words`: its record has
    /// the key, is live and unexpired. The caller validates with the bucket's sequence.
    #[inline(always)]
    fn entry_hit(&self, e: u32, words: &[u64; KEY_WORDS], now: u64) -> Option<Hit> {
        if e == 0 {
            return None;
        }
        let idx = entry_idx(e);
        let c = self.conns.get(idx as usize)?;
        let dir = self.entry_key_eq(c, idx, e, words)?;
        let gs = c.gs.load(Ordering::Acquire);
        if gs & 3 != status::LIVE as u32 || c.expiry.load(Ordering::Relaxed) <= now {
            return None;
        }
        Some(Hit {
            idx,
            dir,
            gen: gs >> 2,
        })
    }

    fn lock_bucket(&self, i: usize) {
        let b = &self.buckets[i];
        loop {
            let s = b.seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && b.seq
                    .compare_exchange_weak(s, s | 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // Order the odd sequence before the writes that follow (seqlock writer).
                fence(Ordering::Release);
                return;
            }
            std::hint::spin_loop();
        }
    }

    fn unlock_bucket(&self, i: usize) {
        let b = &self.buckets[i];
        let s = b.seq.load(Ordering::Relaxed);
        b.seq.store(s.wrapping_add(1), Ordering::Release);
    }

    /// Locks two buckets in ascending index order (once if equal).
    fn lock_pair(&self, a: usize, b: usize) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        self.lock_bucket(lo);
        if hi != lo {
            self.lock_bucket(hi);
        }
    }

    fn unlock_pair(&self, a: usize, b: usize) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if hi != lo {
            self.unlock_bucket(hi);
        }
        self.unlock_bucket(lo);
    }

    /// With the bucket locked: the live, unexpired record holding the key, if any.
    fn find_locked(&self, bi: usize, sig: u16, words: &[u64; KEY_WORDS], now: u64) -> Option<Hit> {
        // The chain cannot change while we hold the lock, so the scan is exact.
        let mut b = &self.buckets[bi];
        loop {
            let mut m = b.sig_matches(sig);
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                let e = b.entries.get(i).map_or(0, |e| e.load(Ordering::Relaxed));
                if e == 0 {
                    continue;
                }
                let idx = entry_idx(e);
                let c = &self.conns[idx as usize];
                let Some(dir) = self.entry_key_eq(c, idx, e, words) else {
                    continue;
                };
                if c.status() == status::LIVE && c.expiry.load(Ordering::Relaxed) > now {
                    return Some(Hit {
                        idx,
                        dir,
                        gen: c.gen(),
                    });
                }
            }
            match self.chain_next(b) {
                Some(n) => b = n,
                None => return None,
            }
        }
    }

    /// A free overflow bucket: a returned one, else the next never used.
    fn take_overflow(&self) -> Option<u32> {
        let mut fl = self.overflow_free.lock();
        if let Some(o) = fl.stack.pop() {
            return Some(o);
        }
        if (fl.fresh as usize) < self.overflow.len() {
            fl.fresh += 1;
            return Some(fl.fresh - 1);
        }
        None
    }

    /// With the bucket locked: stores an entry in the first free slot of its chain,
    /// extending the chain with an overflow bucket if needed.
    fn put_locked(&self, bi: usize, sig: u16, entry: u32) -> bool {
        let mut b = &self.buckets[bi];
        loop {
            for i in 0..SLOTS {
                if b.entries[i].load(Ordering::Relaxed) == 0 {
                    b.set_sig(i, sig);
                    b.entries[i].store(entry, Ordering::Relaxed);
                    return true;
                }
            }
            match self.chain_next(b) {
                Some(n) => b = n,
                None => break,
            }
        }
        let Some(o) = self.take_overflow() else {
            return false;
        };
        let ob = &self.overflow[o as usize];
        for i in 0..SLOTS {
            ob.entries[i].store(0, Ordering::Relaxed);
        }
        ob.next.store(0, Ordering::Relaxed);
        ob.set_sig(0, sig);
        ob.entries[0].store(entry, Ordering::Relaxed);
        b.next.store(o + 1, Ordering::Release);
        true
    }

    /// With the bucket locked: removes `entry` from the chain (if present), keeping the
    /// chain dense: every bucket of a chain but its last is full. A hole left before the
    /// last bucket is filled with an entry moved from the last, and an overflow bucket
    /// that empties is unlinked and returned. Readers see the move as any other change
    /// under the bucket's sequence, and retry.
    ///
    /// Without the move, a chain that once grew kept each overflow bucket until every
    /// entry in it had gone while new entries filled holes nearer the head: under churn
    /// the overflow pool drained toward each bucket's historical peak and inserts were
    /// refused with the table far from full.
    fn del_locked(&self, bi: usize, entry: u32) -> bool {
        let head = &self.buckets[bi];
        // The slot holding `entry`, and the chain's last bucket with its predecessor.
        let mut hole: Option<(&Bucket, usize)> = None;
        let mut last = head;
        let mut before_last: Option<&Bucket> = None;
        loop {
            if hole.is_none() {
                if let Some(i) =
                    (0..SLOTS).find(|&i| last.entries[i].load(Ordering::Relaxed) == entry)
                {
                    hole = Some((last, i));
                }
            }
            match self.chain_next(last) {
                Some(n) => {
                    before_last = Some(last);
                    last = n;
                }
                None => break,
            }
        }
        let Some((hb, hi)) = hole else {
            return false;
        };
        if std::ptr::eq(hb, last) {
            hb.entries[hi].store(0, Ordering::Relaxed);
        } else if let Some(j) = (0..SLOTS)
            .rev()
            .find(|&j| last.entries[j].load(Ordering::Relaxed) != 0)
        {
            // The hole is in a full bucket before the last: the last's entry moves in.
            hb.set_sig(hi, last.sig(j));
            hb.entries[hi].store(last.entries[j].load(Ordering::Relaxed), Ordering::Relaxed);
            last.entries[j].store(0, Ordering::Relaxed);
        } else {
            // An empty last bucket cannot follow a hole (it would have been returned).
            hb.entries[hi].store(0, Ordering::Relaxed);
        }
        if let Some(p) = before_last {
            if last.entries.iter().all(|e| e.load(Ordering::Relaxed) == 0) {
                // Unlink the empty overflow bucket (the chain's last) and return it.
                let this = p.next.load(Ordering::Relaxed);
                p.next.store(0, Ordering::Release);
                self.overflow_free.lock().stack.push(this - 1);
            }
        }
        true
    }

    /// Publishes record `idx` (status INIT, keys set) under both keys, atomically with
    /// respect to other inserts: with both buckets locked, it checks that no live,
    /// unexpired connection has either key, then stores its entries and makes the record
    /// LIVE.
    pub fn insert(
        &self,
        idx: u32,
        orig: &[u64; KEY_WORDS],
        reply: &[u64; KEY_WORDS],
        now: u64,
    ) -> Result<(), InsertError> {
        let h0 = self.hasher.hash_words(orig);
        let h1 = self.hasher.hash_words(reply);
        self.insert_hashed(idx, orig, h0, reply, h1, now)
    }

    /// [`ConnTable::insert`] with the hashes already computed.
    pub fn insert_hashed(
        &self,
        idx: u32,
        orig: &[u64; KEY_WORDS],
        h0: u64,
        reply: &[u64; KEY_WORDS],
        h1: u64,
        now: u64,
    ) -> Result<(), InsertError> {
        let (b0, b1) = (self.bucket_of(h0), self.bucket_of(h1));
        let (s0, s1) = (sig_of(h0), sig_of(h1));
        // One bucket (b0 == b1) and one entry when the reply key is the original reversed.
        let pair = is_pair(orig, h0, reply, h1);
        self.lock_pair(b0, b1);
        let res = (|| {
            if let Some(h) = self.find_locked(b0, s0, orig, now) {
                return Err(InsertError::Exists(h));
            }
            if self.find_locked(b1, s1, reply, now).is_some() {
                return Err(InsertError::ReplyTaken);
            }
            let (e0, e1) = if pair {
                (entry_of(idx, KIND_BOTH), None)
            } else {
                (entry_of(idx, KIND_ORIG), Some(entry_of(idx, KIND_REPLY)))
            };
            if !self.put_locked(b0, s0, e0) {
                return Err(InsertError::NoSpace);
            }
            if let Some(e1) = e1 {
                if !self.put_locked(b1, s1, e1) {
                    self.del_locked(b0, e0);
                    return Err(InsertError::NoSpace);
                }
            }
            let c = &self.conns[idx as usize];
            if !c.claim(status::INIT, status::LIVE) {
                // Only the creator touches an INIT record; this cannot happen.
                self.del_locked(b0, e0);
                if let Some(e1) = e1 {
                    self.del_locked(b1, e1);
                }
                return Err(InsertError::NoSpace);
            }
            Ok(())
        })();
        self.unlock_pair(b0, b1);
        res
    }

    /// True when no live, unexpired connection has the key (a lock-free pre-check; the
    /// authoritative check is the one [`ConnTable::insert`] makes under the bucket locks).
    pub fn key_free(&self, reply: &[u64; KEY_WORDS], hash: u64, now: u64) -> bool {
        self.lookup(reply, hash, now).is_none()
    }

    /// Removes record `idx` of generation `gen` from the table: idempotent (only the caller
    /// that moves it from LIVE to DYING does the work and gets `true`). The record is then
    /// DYING; the caller finishes with [`ConnTable::release`].
    pub fn unlink(&self, idx: u32, gen: u32) -> bool {
        let Some(c) = self.conns.get(idx as usize) else {
            return false;
        };
        // One compare-and-swap on (generation, status): a slot freed and reused since
        // `gen` was read can never be taken for the old connection.
        if !c.transition(gen, status::LIVE, status::DYING) {
            return false;
        }
        let k0 = self.key_words(idx, DIR_ORIG);
        let k1 = self.key_words(idx, DIR_REPLY);
        let (h0, h1) = (self.hasher.hash_words(&k0), self.hasher.hash_words(&k1));
        let (b0, b1) = (self.bucket_of(h0), self.bucket_of(h1));
        self.lock_pair(b0, b1);
        if is_pair(&k0, h0, &k1, h1) {
            self.del_locked(b0, entry_of(idx, KIND_BOTH));
        } else {
            self.del_locked(b0, entry_of(idx, KIND_ORIG));
            self.del_locked(b1, entry_of(idx, KIND_REPLY));
        }
        self.unlock_pair(b0, b1);
        true
    }

    /// Frees a record that is INIT (never published) or DYING (unlinked): bumps its
    /// generation under its lock, so a worker that still holds an old [`Hit`] sees the
    /// change, and returns it to `cache` (or the shared pool if `cache` is `None`).
    pub fn release(&self, idx: u32, cache: Option<&mut PoolCache>) {
        let c = &self.conns[idx as usize];
        c.with_l4(|_| c.retire());
        match cache {
            Some(cache) => {
                cache.free.push(idx);
                if cache.free.len() >= CACHE_BATCH * 2 {
                    let mut fl = self.free.lock();
                    let n = cache.free.len() - CACHE_BATCH;
                    for i in cache.free.drain(..n) {
                        fl.returned.insert(i);
                    }
                }
            }
            None => {
                self.free.lock().returned.insert(idx);
            }
        }
    }

    /// Takes a free record (status becomes INIT). `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self, cache: &mut PoolCache) -> Option<u32> {
        if cache.free.is_empty() {
            self.refill(cache);
        }
        let idx = cache.free.pop()?;
        // The record this cache hands out `ALLOC_AHEAD` creations from now: fetch it now,
        // so that creation writes into lines already in cache (a recycled record is cold
        // at scale: three misses on the creation path otherwise).
        if let Some(&ahead) = cache
            .free
            .len()
            .checked_sub(ALLOC_AHEAD)
            .and_then(|i| cache.free.get(i))
        {
            self.prefetch_pooled(ahead);
        }
        let c = &self.conns[idx as usize];
        if !c.claim(status::FREE, status::INIT) {
            // A slot in a free list is FREE; anything else is a bookkeeping bug. Refuse
            // rather than hand out a slot in use.
            return None;
        }
        Some(idx)
    }

    /// Moves a batch of free records from the shared pool into the empty `cache` (returned
    /// records first, else never-used ones). Leaves it empty when the pool has none.
    fn refill(&self, cache: &mut PoolCache) {
        let mut fl = self.free.lock();
        // Returned records first (in address order): the high-water mark (and with it
        // the pool's resident size) moves only when none is left.
        if fl.returned.take_into(&mut cache.free, CACHE_BATCH) > 0 {
            drop(fl);
            self.prefetch_refilled(cache);
            return;
        }
        // Never-used records, pushed in descending order so that they are handed out
        // ascending (the cache pops from its end): sequential first touches.
        let n = CACHE_BATCH.min(self.conns.len() - fl.fresh as usize) as u32;
        cache.free.extend((fl.fresh..fl.fresh + n).rev());
        fl.fresh += n;
        // Keep the committed pages a chunk ahead of the mark (outside the lock: a worker
        // that reaches those records first just takes its own faults).
        if fl.fresh + POPULATE_CHUNK > fl.populated {
            let from = fl.populated.max(fl.fresh - n);
            fl.populated = from.saturating_add(POPULATE_CHUNK);
            drop(fl);
            self.conns
                .populate(from as usize..(from + POPULATE_CHUNK) as usize);
        }
        self.prefetch_refilled(cache);
    }

    /// Fetches the records `cache` hands out before [`ConnTable::alloc`]'s own prefetch
    /// reaches them (the first `ALLOC_AHEAD`).
    fn prefetch_refilled(&self, cache: &PoolCache) {
        for &idx in cache.free.iter().rev().take(ALLOC_AHEAD) {
            self.prefetch_pooled(idx);
        }
    }

    /// Fetches both lines of free record `idx`, which a creation will write.
    #[inline(always)]
    fn prefetch_pooled(&self, idx: u32) {
        if let Some(c) = self.conns.get(idx as usize) {
            c.prefetch_all();
        }
    }

    /// Returns a worker's cached free records to the shared pool (at worker exit).
    pub fn drain_cache(&self, cache: &mut PoolCache) {
        let mut fl = self.free.lock();
        for i in cache.free.drain(..) {
            fl.returned.insert(i);
        }
    }

    /// Calls `f(idx, gen)` for each record that has its original-direction entry in
    /// bucket `bi` (a consistent snapshot of that bucket, taken under its seqlock).
    /// Returns the number of entries (of any kind) in the bucket chain.
    pub fn for_each_in_bucket(&self, bi: usize, mut f: impl FnMut(u32, u32)) -> usize {
        let head = &self.buckets[bi];
        let mut snap: [(u32, u32); 64] = [(0, 0); 64];
        loop {
            let s1 = head.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let mut n = 0usize;
            let mut total = 0usize;
            let mut b = head;
            let mut hops = 0;
            let mut overflowed = false;
            loop {
                for i in 0..SLOTS {
                    let e = b.entries[i].load(Ordering::Relaxed);
                    if e == 0 {
                        continue;
                    }
                    total += 1;
                    if holds_orig(e) {
                        let idx = entry_idx(e);
                        if let Some(c) = self.conns.get(idx as usize) {
                            if n < snap.len() {
                                snap[n] = (idx, c.gen());
                                n += 1;
                            } else {
                                overflowed = true;
                            }
                        }
                    }
                }
                hops += 1;
                match self.chain_next(b) {
                    Some(nb) if hops < MAX_CHAIN => b = nb,
                    _ => break,
                }
            }
            fence(Ordering::Acquire);
            if head.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            if overflowed {
                // More than a snapshot holds: walk again under the lock (rare: > 64
                // connections in one chain).
                self.lock_bucket(bi);
                let mut all = Vec::new();
                let mut b = head;
                loop {
                    for i in 0..SLOTS {
                        let e = b.entries[i].load(Ordering::Relaxed);
                        if e != 0 && holds_orig(e) {
                            let idx = entry_idx(e);
                            all.push((idx, self.conns[idx as usize].gen()));
                        }
                    }
                    match self.chain_next(b) {
                        Some(nb) => b = nb,
                        None => break,
                    }
                }
                self.unlock_bucket(bi);
                for (i, g) in all {
                    f(i, g);
                }
                return total;
            }
            for &(i, g) in &snap[..n] {
                f(i, g);
            }
            return total;
        }
    }

    /// Number of entries (of any kind) in bucket `bi`'s chain.
    pub fn bucket_len(&self, bi: usize) -> usize {
        let mut total = 0;
        let mut b = &self.buckets[bi];
        for _ in 0..MAX_CHAIN {
            total += b
                .entries
                .iter()
                .filter(|e| e.load(Ordering::Relaxed) != 0)
                .count();
            match self.chain_next(b) {
                Some(n) => b = n,
                None => break,
            }
        }
        total
    }

    /// Overflow buckets in use.
    pub fn overflow_used(&self) -> usize {
        let fl = self.overflow_free.lock();
        fl.fresh as usize - fl.stack.len()
    }

    /// Record slots handed out at least once (the touched part of the pool).
    pub fn pool_touched(&self) -> u32 {
        self.free.lock().fresh
    }

    /// Hash of a key (convenience).
    pub fn hash_key(&self, k: &ConnKey) -> u64 {
        self.hasher.hash(k)
    }
}

/// The default bucket count for `capacity` connections: two entries per connection (all
/// translated), 6 of 9 slots used on average when the table is full (not rounded to a
/// power of two: the rounding left up to half the buckets' memory unused, 33.5 bytes per
/// connection at 1M instead of 21.3).
pub fn default_buckets(capacity: u32) -> u32 {
    let entries = capacity as u64 * 2;
    entries.div_ceil(6).max(64) as u32
}

/// Bytes [`ConnTable::new`] allocates for `capacity` records and `n_buckets` (0: the
/// default): buckets, overflow buckets, records, the long (IPv6) keys of every record, the
/// pool's bitmaps of returned records, and the ALG expectation table's per-record counts. (At most:
/// the pages are committed as they are used.)
/// Configuration checks it against the memory the machine has before building a table.
pub fn memory_needed(capacity: u32, n_buckets: u32) -> u64 {
    let capacity = capacity.clamp(1, (1 << 30) - 1);
    let n_buckets = if n_buckets == 0 {
        default_buckets(capacity)
    } else {
        n_buckets.next_power_of_two()
    };
    let n_overflow = u64::from((n_buckets / 4).max(64));
    let bucket = std::mem::size_of::<Bucket>() as u64;
    (u64::from(n_buckets) + n_overflow) * bucket
        + u64::from(capacity) * std::mem::size_of::<Conn>() as u64
        // The free set: a bit per record, and a bit per 64 of those.
        + u64::from(capacity).div_ceil(64) * 8 * 65 / 64 + 8
        + u64::from(capacity) * (2 * KEY_WORDS as u64 * 8)
        // The ALG expectation table's per-parent counts (one word per record).
        + u64::from(capacity) * 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::key::ConnKey;

    fn key(i: u32) -> ConnKey {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, (i >> 8) as u8, i as u8]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[192, 0, 2, 2]);
        ConnKey {
            src,
            dst,
            sport: 1000 + (i % 50000) as u16,
            dport: 80,
            zone: 0,
            proto: 17,
            family: 4,
        }
    }

    /// A translated reply key for `k` (as SNAT to 100.64.0.1 keeping the port): a
    /// connection with it takes two entries.
    fn nat_reply(k: &ConnKey) -> ConnKey {
        let mut r = k.reversed();
        r.dst = [0; 16];
        r.dst[..4].copy_from_slice(&[100, 64, 0, 1]);
        r
    }

    /// Publishes an untranslated connection (reply key `k` reversed: one entry).
    fn publish(
        t: &ConnTable,
        cache: &mut PoolCache,
        k: &ConnKey,
        expiry: u64,
    ) -> Result<u32, InsertError> {
        publish_with(t, cache, k, &k.reversed(), expiry)
    }

    /// Publishes a translated connection ([`nat_reply`]: two entries).
    fn publish_nat(
        t: &ConnTable,
        cache: &mut PoolCache,
        k: &ConnKey,
        expiry: u64,
    ) -> Result<u32, InsertError> {
        publish_with(t, cache, k, &nat_reply(k), expiry)
    }

    fn publish_with(
        t: &ConnTable,
        cache: &mut PoolCache,
        k: &ConnKey,
        reply: &ConnKey,
        expiry: u64,
    ) -> Result<u32, InsertError> {
        let idx = t.alloc(cache).expect("pool");
        let c = t.conn(idx);
        t.set_keys(idx, k, reply);
        c.expiry.store(expiry, Ordering::Relaxed);
        match t.insert(idx, &k.to_words(), &reply.to_words(), 0) {
            Ok(()) => Ok(idx),
            Err(e) => {
                t.release(idx, Some(cache));
                Err(e)
            }
        }
    }

    #[test]
    fn a_new_table_has_its_buckets_committed_and_of_its_pool_only_the_first_chunk() {
        // 300,000 records (38 MB) in 100,000 buckets (6.4 MB), on 4 KiB pages offered to
        // transparent huge pages: a chunk may be committed as the whole 2 MiB pages it
        // straddles (at most two), or some of them.
        let t = ConnTable::new(300_000, 0, KeyHasher::with_seed(1));
        let two_huge = 4 << 20;
        let buckets = t.n_buckets() * 64;
        // Whole pages: the last one is partly buckets.
        assert!(t.buckets.resident_bytes(0..t.n_buckets()) >= buckets);
        let first = POPULATE_CHUNK as usize * std::mem::size_of::<Conn>();
        let pool = t.conns.resident_bytes(0..t.conns.len());
        assert!(
            pool >= first && pool <= two_huge,
            "{pool} bytes of the pool resident"
        );
        let overflow = t.overflow.resident_bytes(0..t.overflow.len());
        assert!(
            overflow >= POPULATE_CHUNK as usize * 64 && overflow <= two_huge,
            "{overflow} bytes of the overflow buckets resident"
        );
    }

    #[test]
    fn both_keys_lead_to_the_record_and_tell_the_direction() {
        let t = ConnTable::new(1024, 0, KeyHasher::with_seed(1));
        let mut cache = PoolCache::default();
        let k = key(1);
        let idx = publish(&t, &mut cache, &k, 1000).unwrap();
        let h = |k: &ConnKey| t.lookup(&k.to_words(), t.hash_key(k), 10);
        assert_eq!(h(&k).map(|h| (h.idx, h.dir)), Some((idx, DIR_ORIG)));
        assert_eq!(
            h(&k.reversed()).map(|h| (h.idx, h.dir)),
            Some((idx, DIR_REPLY))
        );
        assert_eq!(h(&key(2)), None);
    }

    #[test]
    fn an_untranslated_connection_takes_one_entry_found_from_both_directions() {
        let t = ConnTable::new(64, 0, KeyHasher::with_seed(4));
        let mut cache = PoolCache::default();
        let entries = |t: &ConnTable| (0..t.n_buckets()).map(|b| t.bucket_len(b)).sum::<usize>();
        let k = key(7);
        let idx = publish(&t, &mut cache, &k, 1000).unwrap();
        assert_eq!(entries(&t), 1);
        let h = |key: &ConnKey| t.lookup(&key.to_words(), t.hash_key(key), 10);
        assert_eq!(h(&k).map(|h| (h.idx, h.dir)), Some((idx, DIR_ORIG)));
        assert_eq!(
            h(&k.reversed()).map(|h| (h.idx, h.dir)),
            Some((idx, DIR_REPLY))
        );
        // Either key of it, as another connection's original key, is taken.
        for dup in [k, k.reversed()] {
            match publish(&t, &mut cache, &dup, 1000) {
                Err(InsertError::Exists(hit)) => assert_eq!(hit.idx, idx),
                other => panic!("{other:?}"),
            }
        }
        // A translated connection takes two; the sweep's walk sees each connection once.
        let n = publish_nat(&t, &mut cache, &key(8), 1000).unwrap();
        assert_eq!(entries(&t), 3);
        let mut seen = Vec::new();
        for b in 0..t.n_buckets() {
            t.for_each_in_bucket(b, |i, _| seen.push(i));
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![idx.min(n), idx.max(n)]);
        assert!(t.unlink(idx, t.conn(idx).gen()));
        assert_eq!(entries(&t), 2);
        assert_eq!(h(&k), None);
        assert_eq!(h(&k.reversed()), None);
        assert!(t.unlink(n, t.conn(n).gen()));
        assert_eq!(entries(&t), 0);
        // Equal ports: the tail word does not tell the direction, the second key decides.
        let mut q = key(10);
        q.dport = q.sport;
        let iq = publish(&t, &mut cache, &q, 1000).unwrap();
        assert_eq!(entries(&t), 1);
        assert_eq!(h(&q).map(|h| (h.idx, h.dir)), Some((iq, DIR_ORIG)));
        assert_eq!(
            h(&q.reversed()).map(|h| (h.idx, h.dir)),
            Some((iq, DIR_REPLY))
        );
        assert!(t.unlink(iq, t.conn(iq).gen()));
        // ICMP's reply key is not the reverse (another type): two entries.
        let mut e = key(9);
        e.proto = 1;
        e.dport = 8 << 8;
        publish(&t, &mut cache, &e, 1000).unwrap();
        assert_eq!(entries(&t), 2);
    }

    #[test]
    fn ipv6_keys_out_of_line_are_found_and_kept_apart_from_ipv4_keys() {
        let t = ConnTable::new(1024, 0, KeyHasher::with_seed(1));
        let mut cache = PoolCache::default();
        let v4 = key(1);
        // The same ports, zone and protocol; IPv6 addresses whose first four bytes are
        // the IPv4 ones, and one that differs only in its last byte.
        let mut v6 = v4;
        v6.family = 6;
        v6.src[15] = 1;
        v6.dst[15] = 2;
        let mut v6b = v6;
        v6b.dst[15] = 3;
        let i4 = publish(&t, &mut cache, &v4, 1000).unwrap();
        let i6 = publish(&t, &mut cache, &v6, 1000).unwrap();
        let h = |k: &ConnKey| t.lookup(&k.to_words(), t.hash_key(k), 10);
        assert_eq!(h(&v4).map(|h| h.idx), Some(i4));
        assert_eq!(h(&v6).map(|h| (h.idx, h.dir)), Some((i6, DIR_ORIG)));
        assert_eq!(
            h(&v6.reversed()).map(|h| (h.idx, h.dir)),
            Some((i6, DIR_REPLY))
        );
        assert_eq!(h(&v6b), None);
        assert_eq!(t.key(i6, DIR_ORIG), v6);
        assert_eq!(t.key(i6, DIR_REPLY), v6.reversed());
        assert_eq!(t.key(i4, DIR_REPLY), v4.reversed());
        // The record slot reused for an IPv4 connection forgets the long key.
        let g = t.conn(i6).gen();
        assert!(t.unlink(i6, g));
        t.release(i6, Some(&mut cache));
        let k = key(9);
        let again = publish(&t, &mut cache, &k, 1000).unwrap();
        assert_eq!(again, i6);
        assert_eq!(t.key(again, DIR_ORIG), k);
        assert_eq!(h(&v6), None);
    }

    #[test]
    fn insert_refuses_duplicates_and_reply_collisions() {
        let t = ConnTable::new(1024, 0, KeyHasher::with_seed(1));
        let mut cache = PoolCache::default();
        let k = key(1);
        let idx = publish(&t, &mut cache, &k, 1000).unwrap();
        match publish(&t, &mut cache, &k, 1000) {
            Err(InsertError::Exists(h)) => assert_eq!(h.idx, idx),
            other => panic!("{other:?}"),
        }
        // A different original key whose reply key equals the existing reply key.
        let mut k2 = key(7);
        let idx2 = t.alloc(&mut cache).unwrap();
        k2.sport = 5;
        let reply = k.reversed();
        t.set_keys(idx2, &k2, &reply);
        t.conn(idx2).expiry.store(1000, Ordering::Relaxed);
        assert_eq!(
            t.insert(idx2, &k2.to_words(), &reply.to_words(), 0),
            Err(InsertError::ReplyTaken)
        );
    }

    #[test]
    fn expired_records_are_invisible_and_do_not_block_inserts() {
        let t = ConnTable::new(1024, 0, KeyHasher::with_seed(1));
        let mut cache = PoolCache::default();
        let k = key(1);
        publish(&t, &mut cache, &k, 100).unwrap();
        assert!(t.lookup(&k.to_words(), t.hash_key(&k), 100).is_none());
        assert!(t.lookup(&k.to_words(), t.hash_key(&k), 99).is_some());
        // Insert at now=100 sees the old one as expired.
        let idx = t.alloc(&mut cache).unwrap();
        t.set_keys(idx, &k, &k.reversed());
        t.conn(idx).expiry.store(500, Ordering::Relaxed);
        assert_eq!(
            t.insert(idx, &k.to_words(), &k.reversed().to_words(), 100),
            Ok(())
        );
        assert_eq!(
            t.lookup(&k.to_words(), t.hash_key(&k), 200).unwrap().idx,
            idx
        );
    }

    #[test]
    fn unlink_is_idempotent_and_frees_both_entries() {
        let t = ConnTable::new(1024, 0, KeyHasher::with_seed(1));
        let mut cache = PoolCache::default();
        let k = key(1);
        let idx = publish(&t, &mut cache, &k, 1000).unwrap();
        let gen = t.conn(idx).gen();
        assert!(t.unlink(idx, gen));
        assert!(!t.unlink(idx, gen));
        t.release(idx, Some(&mut cache));
        assert!(!t.unlink(idx, gen));
        assert!(t.lookup(&k.to_words(), t.hash_key(&k), 0).is_none());
        assert!(t
            .lookup(&k.reversed().to_words(), t.hash_key(&k.reversed()), 0)
            .is_none());
        let total: usize = (0..t.n_buckets()).map(|b| t.bucket_len(b)).sum();
        assert_eq!(total, 0);
    }

    /// The matches are exactly the slots whose signature is the one looked for; the
    /// candidates every one of them and at most a borrow above one; setting a slot's
    /// signature leaves the others as they were.
    #[test]
    fn a_buckets_signature_match_finds_exactly_the_slots_with_the_signature() {
        let edge = [0u16, 1, 2, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff];
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for round in 0..2000 {
            let b = Bucket::zeroed();
            let mut sigs = [0u16; SLOTS];
            for (i, s) in sigs.iter_mut().enumerate() {
                // Edge values, repeats within a word, and random ones.
                *s = match next() % 4 {
                    0 => edge[next() as usize % edge.len()],
                    1 if i > 0 => sigs_prev(&b, i),
                    _ => next() as u16,
                };
                b.set_sig(i, *s);
            }
            assert_eq!((0..SLOTS).map(|i| b.sig(i)).collect::<Vec<_>>(), sigs);
            let probes = sigs.iter().copied().chain(edge).chain([next() as u16]);
            for q in probes {
                let m = b.sig_matches(q);
                let c = b.sig_candidates(q);
                for (i, &s) in sigs.iter().enumerate() {
                    let bit = m & 1 << i != 0;
                    assert_eq!(
                        bit,
                        s == q,
                        "round {round}: slot {i} ({s:#x}) for {q:#x}: {sigs:x?}"
                    );
                    // The candidates: every match, and now and then a slot above one in
                    // the same word.
                    let cbit = c & 1 << i != 0;
                    if s == q {
                        assert!(cbit, "round {round}: slot {i} ({s:#x}) missed for {q:#x}");
                    } else if cbit {
                        let word = i / 4 * 4;
                        assert!(
                            i < 8 && (word..i).any(|j| sigs[j] == q),
                            "round {round}: slot {i} ({s:#x}) matched {q:#x} alone: {sigs:x?}"
                        );
                    }
                }
                assert_eq!(c >> SLOTS, 0);
                assert_eq!(m >> SLOTS, 0);
            }
        }
        fn sigs_prev(b: &Bucket, i: usize) -> u16 {
            b.sig(i - 1)
        }
    }

    #[test]
    fn a_bucket_holds_nine_entries_before_it_spills() {
        // One bucket: nine translated connections are 18 entries, the bucket's line and one
        // overflow bucket full (with eight slots a line they took two overflow buckets).
        let t = ConnTable::new(16, 1, KeyHasher::with_seed(5));
        assert_eq!(t.n_buckets(), 1);
        let mut cache = PoolCache::default();
        for i in 0..4 {
            publish_nat(&t, &mut cache, &key(i), 1000).unwrap();
        }
        assert_eq!((t.bucket_len(0), t.overflow_used()), (8, 0));
        for i in 4..9 {
            publish_nat(&t, &mut cache, &key(i), 1000).unwrap();
        }
        assert_eq!((t.bucket_len(0), t.overflow_used()), (18, 1));
        publish_nat(&t, &mut cache, &key(9), 1000).unwrap();
        assert_eq!((t.bucket_len(0), t.overflow_used()), (20, 2));
        let mut seen = 0;
        t.for_each_in_bucket(0, |_, _| seen += 1);
        assert_eq!(seen, 10);
    }

    #[test]
    fn overflow_chains_hold_a_crowded_bucket_and_shrink_again() {
        // 4 buckets: 200 translated connections (400 entries) must chain into overflow buckets.
        let t = ConnTable::new(256, 4, KeyHasher::with_seed(3));
        let mut cache = PoolCache::default();
        let mut idxs = Vec::new();
        for i in 0..200 {
            idxs.push(publish_nat(&t, &mut cache, &key(i), 1000).unwrap());
        }
        assert!(t.overflow_used() > 0);
        for i in 0..200 {
            let k = key(i);
            assert_eq!(
                t.lookup(&k.to_words(), t.hash_key(&k), 0).unwrap().idx,
                idxs[i as usize]
            );
        }
        let total: usize = (0..t.n_buckets()).map(|b| t.bucket_len(b)).sum();
        assert_eq!(total, 400);
        for &idx in &idxs {
            let g = t.conn(idx).gen();
            assert!(t.unlink(idx, g));
            t.release(idx, Some(&mut cache));
        }
        assert_eq!(t.overflow_used(), 0);
    }

    #[test]
    fn under_churn_overflow_chains_hold_only_what_their_entries_need() {
        // Connections come and go for 200 table-fulls at 85% of the capacity. Buckets
        // fill and empty in turn; a chain that once grew must give its overflow buckets
        // back as it shrinks, or the overflow pool drains under churn and inserts are
        // refused while the table is far from full (seen as `refused_table_full` in
        // `datapath --new-flows` at 78% of `max_conns`; here, before the fix, 166 of the
        // 170 overflow buckets were in use at the peak, and more than the entries needed
        // at the end).
        // Translated connections (two entries each), then untranslated ones (one each).
        for nat in [true, false] {
            churn(nat);
        }
    }

    fn churn(nat: bool) {
        let cap = 2048u32;
        let t = ConnTable::new(cap, 0, KeyHasher::with_seed(11));
        let per_conn = if nat { 2 } else { 1 };
        let mut cache = PoolCache::default();
        let live_max = (cap as usize) * 85 / 100;
        let mut live = std::collections::VecDeque::new();
        let mut peak = 0;
        for i in 0..200 * cap {
            let k = key(i);
            let reply = if nat { nat_reply(&k) } else { k.reversed() };
            match publish_with(&t, &mut cache, &k, &reply, u64::MAX) {
                Ok(idx) => live.push_back(idx),
                Err(e) => panic!(
                    "insert {i} refused ({e:?}) with {} live of {cap}, {} of {} overflow \
                     buckets in use",
                    live.len(),
                    t.overflow_used(),
                    t.overflow.len()
                ),
            }
            if live.len() > live_max {
                // Oldest first, as timeouts remove them; the FIFO mixes every bucket.
                let idx = live.pop_front().expect("non-empty");
                assert!(t.unlink(idx, t.conn(idx).gen()));
                t.release(idx, Some(&mut cache));
            }
            peak = peak.max(t.overflow_used());
        }
        // The chains hold exactly what their entries need: every overflow bucket in use
        // is full but the last of its chain.
        let need: usize = (0..t.n_buckets())
            .map(|b| t.bucket_len(b).saturating_sub(SLOTS).div_ceil(SLOTS))
            .sum();
        assert_eq!(t.overflow_used(), need, "peak {peak}");
        let total: usize = (0..t.n_buckets()).map(|b| t.bucket_len(b)).sum();
        assert_eq!(total, per_conn * live.len());
        for &idx in &live {
            let k = t.key(idx, DIR_ORIG);
            assert_eq!(
                t.lookup(&k.to_words(), t.hash_key(&k), 0).map(|h| h.idx),
                Some(idx)
            );
        }
    }

    #[test]
    fn readers_never_miss_a_live_key_while_removals_move_entries_of_its_chain() {
        // Four buckets: every chain runs into overflow buckets, and each removal of a
        // churned key moves some other entry (often a stable one) into its hole. Lookups
        // of the stable keys, lock-free on other threads, must find every one every time.
        use std::sync::atomic::AtomicBool;
        let t = ConnTable::new(512, 4, KeyHasher::with_seed(21));
        let mut cache = PoolCache::default();
        let stable: Vec<(ConnKey, u32)> = (0..60)
            .map(|i| {
                let k = key(i);
                (k, publish_nat(&t, &mut cache, &k, u64::MAX).expect("room"))
            })
            .collect();
        let done = AtomicBool::new(false);
        let misses = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        for (k, idx) in &stable {
                            for key in [*k, nat_reply(k)] {
                                let (w, h) = (key.to_words(), t.hash_key(&key));
                                let hit = t.lookup(&w, h, 0);
                                if hit.map(|h| h.idx) != Some(*idx) {
                                    misses.fetch_add(1, Ordering::Relaxed);
                                }
                                // The burst's hinted lookup, its hint taken now and
                                // stale by the time the entries have moved.
                                let hinted =
                                    t.lookup_hinted(&w, h, t.prefetch_candidate(h, true), 0);
                                if hinted.map(|h| h.idx) != Some(*idx) {
                                    misses.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                });
            }
            let mut live = std::collections::VecDeque::new();
            for i in 1000..41_000 {
                live.push_back(publish_nat(&t, &mut cache, &key(i), u64::MAX).expect("room"));
                if live.len() > 100 {
                    let idx = live.pop_front().expect("non-empty");
                    assert!(t.unlink(idx, t.conn(idx).gen()));
                    t.release(idx, Some(&mut cache));
                }
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_eq!(misses.load(Ordering::Relaxed), 0);
        let total: usize = (0..t.n_buckets()).map(|b| t.bucket_len(b)).sum();
        assert_eq!(total, 2 * (60 + 100));
    }

    /// Whatever slot it is told to try first (the entry of another key, an empty slot, an
    /// expired record whose key has a live successor, a key not in the table), the hinted
    /// lookup answers as the scan.
    #[test]
    fn a_hinted_lookup_answers_as_the_scan_whatever_the_hint() {
        // Eight buckets for 300 connections: full buckets and overflow chains.
        let t = ConnTable::new(1024, 8, KeyHasher::with_seed(5));
        let mut cache = PoolCache::default();
        let mut keys = Vec::new();
        for i in 0..300 {
            let k = key(i);
            let expiry = if i % 7 == 0 { 50 } else { 1000 };
            if i % 2 == 0 {
                publish(&t, &mut cache, &k, expiry).expect("room");
            } else {
                publish_nat(&t, &mut cache, &k, expiry).expect("room");
                keys.push(nat_reply(&k));
            }
            keys.push(k);
            keys.push(k.reversed());
        }
        assert!(t.overflow_used() > 0);
        keys.extend((5000..5050).map(key));
        // The hits at `now`, each hinted lookup checked against the scan's answer.
        let check = |now: u64| {
            let mut hits = 0;
            for k in &keys {
                let (w, h) = (k.to_words(), t.hash_key(k));
                let want = t.lookup(&w, h, now);
                hits += usize::from(want.is_some());
                let hints = (0..SLOTS as u8).map(Candidate).chain([
                    Candidate::NONE,
                    Candidate::SCAN,
                    t.prefetch_candidate(h, true),
                ]);
                for hint in hints {
                    assert_eq!(
                        t.lookup_hinted(&w, h, hint, now),
                        want,
                        "{k:?} {hint:?} {now}"
                    );
                }
            }
            hits
        };
        // Each connection's two keys (a translated one's reversed original is no key).
        assert_eq!(check(0), 600);
        // Live successors of some expired connections, inserted after they expired.
        for i in (0..300).step_by(14) {
            let k = key(i);
            let idx = t.alloc(&mut cache).expect("pool");
            t.set_keys(idx, &k, &k.reversed());
            t.conn(idx).expiry.store(1000, Ordering::Relaxed);
            assert_eq!(
                t.insert(idx, &k.to_words(), &k.reversed().to_words(), 60),
                Ok(())
            );
        }
        // The 21 translated connections expired at 50 (i = 7, 21, …, 287) are gone; the 22
        // untranslated ones have their successors.
        assert_eq!(check(60), 600 - 2 * 21);
    }

    #[test]
    fn pool_exhaustion_is_reported_and_recovers() {
        let t = ConnTable::new(40, 0, KeyHasher::with_seed(1));
        let mut cache = PoolCache::default();
        let got: Vec<u32> = std::iter::from_fn(|| t.alloc(&mut cache)).collect();
        assert_eq!(got.len(), 40);
        assert!(t.alloc(&mut cache).is_none());
        t.release(got[3], Some(&mut cache));
        assert_eq!(t.alloc(&mut cache), Some(got[3]));
    }

    #[test]
    fn returned_records_are_reused_before_the_high_water_mark_moves() {
        let t = ConnTable::new(1000, 0, KeyHasher::with_seed(1));
        assert_eq!(t.pool_touched(), 0);
        let mut cache = PoolCache::default();
        let got: Vec<u32> = (0..100).map(|_| t.alloc(&mut cache).unwrap()).collect();
        let mark = t.pool_touched();
        assert!((100..100 + CACHE_MAX).contains(&mark), "{mark}");
        // Records the sweep frees go to the shared pool (no cache), then come back first.
        let mut other = PoolCache::default();
        for &i in &got[..80] {
            t.release(i, None);
        }
        let mut again: Vec<u32> = (0..80).map(|_| t.alloc(&mut other).unwrap()).collect();
        again.sort_unstable();
        let mut returned = got[..80].to_vec();
        returned.sort_unstable();
        assert_eq!(again, returned);
        assert_eq!(t.pool_touched(), mark);
        // Then never-used records, in ascending order from the mark.
        let next: Vec<u32> = (0..3).map(|_| t.alloc(&mut other).unwrap()).collect();
        assert_eq!(next, vec![mark, mark + 1, mark + 2]);
    }

    #[test]
    fn for_each_in_bucket_visits_each_connection_once() {
        let t = ConnTable::new(256, 8, KeyHasher::with_seed(5));
        let mut cache = PoolCache::default();
        // Half translated (two entries each), half not (one entry).
        for i in 0..100 {
            if i % 2 == 0 {
                publish_nat(&t, &mut cache, &key(i), 1000).unwrap();
            } else {
                publish(&t, &mut cache, &key(i), 1000).unwrap();
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut entries = 0;
        for b in 0..t.n_buckets() {
            entries += t.for_each_in_bucket(b, |idx, _| assert!(seen.insert(idx)));
        }
        assert_eq!(seen.len(), 100);
        assert_eq!(entries, 150);
    }
}
