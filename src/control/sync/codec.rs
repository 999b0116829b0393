//! The sync message: a fixed header, a batch of [`SyncRecord`]s and, when a key is
//! configured, an HMAC-SHA256 over everything before it.
//!
//! Header ([`HEADER_LEN`] bytes, little-endian):
//!
//! | bytes  | field    | meaning |
//! |--------|----------|---------|
//! | 0..4   | magic    | `CTGS` |
//! | 4      | version  | 1 |
//! | 5      | kind     | 1 data, 2 ack, 3 resync request |
//! | 6      | flags    | [`F_MAC`], [`F_BULK_BEGIN`], [`F_BULK_END`], [`F_WALK`] |
//! | 7      | count    | records that follow (data only, at most [`MAX_RECORDS`]) |
//! | 8..16  | boot     | the sender's boot id (grows across restarts) |
//! | 16..24 | seq      | data: sequence number, 1 for the first message of a boot |
//! | 24..32 | ack_boot | the receiver's boot whose messages are acknowledged (0: none yet) |
//! | 32..40 | ack_seq  | every data message up to this one was received in order |
//! | 40..48 | nonce    | resync request: its id; data with [`F_BULK_END`]: the request served |
//! | 48..56 | base     | the sender's oldest data message still in flight (its next one when none) |
//!
//! Decoding never trusts a length or a count: the datagram's length must be exactly what
//! the header announces, every record must pass [`SyncRecord::decode`], and with a key the
//! MAC must verify before anything else is looked at; any failure is a [`DropReason`].

use super::auth::{SyncKey, MAC_LEN};
use super::record::{SyncRecord, RECORD_LEN};

pub const MAGIC: [u8; 4] = *b"CTGS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 56;
/// Records per message: a message with a MAC stays under 1,400 bytes.
pub const MAX_RECORDS: usize = 9;
/// The largest datagram the protocol sends.
pub const MAX_MESSAGE: usize = HEADER_LEN + MAX_RECORDS * RECORD_LEN + MAC_LEN;

/// A MAC follows the records.
pub const F_MAC: u8 = 1;
/// The first message of a bulk stream (the whole table follows).
pub const F_BULK_BEGIN: u8 = 2;
/// The last message of a bulk stream.
pub const F_BULK_END: u8 = 4;
/// The records come from a table walk (a resync, repair or refresh), not from events:
/// they never replace a connection the receiver made itself.
pub const F_WALK: u8 = 8;
const KNOWN_FLAGS: u8 = F_MAC | F_BULK_BEGIN | F_BULK_END | F_WALK;

/// The kind of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Sequenced records (possibly none, for a bulk marker).
    Data = 1,
    /// Acknowledgement only; also the keepalive.
    Ack = 2,
    /// Asks the peer to stream its whole table.
    ResyncRequest = 3,
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    /// [`F_BULK_BEGIN`] / [`F_BULK_END`] / [`F_WALK`] (the MAC flag is the codec's
    /// business).
    pub flags: u8,
    pub boot: u64,
    pub seq: u64,
    pub ack_boot: u64,
    pub ack_seq: u64,
    pub nonce: u64,
    /// The oldest sequence number the sender can still send: where a receiver that
    /// knows nothing of the sender's boot starts.
    pub base: u64,
    pub records: Vec<SyncRecord>,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short, wrong magic, version, kind, flags, length or count, or a bad record.
    Malformed,
    /// Missing or wrong MAC while a key is configured, or a MAC while none is.
    Unauthenticated,
    /// From an address that is not a configured peer.
    UnknownPeer,
    /// From an older boot of the peer than the one already heard.
    Stale,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::Malformed,
        DropReason::Unauthenticated,
        DropReason::UnknownPeer,
        DropReason::Stale,
    ];

    /// The counter name suffix.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Stale => "stale",
        }
    }
}

impl Message {
    /// Encodes the message into `out` (cleared first), with a MAC when `key` is given.
    /// At most [`MAX_RECORDS`] records are written; callers never build more.
    pub fn encode(&self, key: Option<&SyncKey>, out: &mut Vec<u8>) {
        out.clear();
        let n = self.records.len().min(MAX_RECORDS);
        let flags = (self.flags & (F_BULK_BEGIN | F_BULK_END | F_WALK))
            | if key.is_some() { F_MAC } else { 0 };
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, self.kind as u8, flags, n as u8]);
        for v in [
            self.boot,
            self.seq,
            self.ack_boot,
            self.ack_seq,
            self.nonce,
            self.base,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for r in &self.records[..n] {
            r.encode(out);
        }
        if let Some(k) = key {
            let tag = k.sign(out);
            out.extend_from_slice(&tag);
        }
    }

    /// Decodes a datagram; with `key`, only one carrying a valid MAC.
    pub fn decode(b: &[u8], key: Option<&SyncKey>) -> Result<Message, DropReason> {
        if b.len() < HEADER_LEN || b[0..4] != MAGIC || b[4] != VERSION {
            return Err(DropReason::Malformed);
        }
        let flags = b[6];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DropReason::Malformed);
        }
        let has_mac = flags & F_MAC != 0;
        let count = b[7] as usize;
        let body = HEADER_LEN + count * RECORD_LEN;
        let want = body + if has_mac { MAC_LEN } else { 0 };
        if count > MAX_RECORDS || b.len() != want {
            return Err(DropReason::Malformed);
        }
        match (key, has_mac) {
            (Some(k), true) => {
                if !k.verify(&b[..body], &b[body..]) {
                    return Err(DropReason::Unauthenticated);
                }
            }
            (None, false) => {}
            _ => return Err(DropReason::Unauthenticated),
        }
        let kind = match b[5] {
            1 => Kind::Data,
            2 => Kind::Ack,
            3 => Kind::ResyncRequest,
            _ => return Err(DropReason::Malformed),
        };
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[8 + 8 * i..16 + 8 * i]);
            u64::from_le_bytes(a)
        };
        if kind != Kind::Data && (count != 0 || flags & !F_MAC != 0) {
            return Err(DropReason::Malformed);
        }
        let (seq, base) = (word(1), word(5));
        if base == 0 || (kind == Kind::Data && (seq == 0 || base > seq)) {
            return Err(DropReason::Malformed);
        }
        let mut records = Vec::with_capacity(count);
        for c in b[HEADER_LEN..body].chunks_exact(RECORD_LEN) {
            let a: &[u8; RECORD_LEN] = c.try_into().map_err(|_| DropReason::Malformed)?;
            records.push(SyncRecord::decode(a).map_err(|_| DropReason::Malformed)?);
        }
        Ok(Message {
            kind,
            flags: flags & !F_MAC,
            boot: word(0),
            seq,
            ack_boot: word(2),
            ack_seq: word(3),
            nonce: word(4),
            base,
            records,
        })
    }
}
