//! One synced connection on the wire: both keys (the zone is in them), the NAT flags
//! (the reply key holds the translated tuple, so keys plus flags are the NAT binding),
//! the L4 state (both TCP peers' windows and states, or the small per-protocol state),
//! mark, label and the remaining timeout.
//!
//! A record is [`RECORD_LEN`] bytes, all integers little-endian. Decoding checks every
//! field that the tracker would trust (family, zone agreement, protocol agreement,
//! timeout attribute, TCP states): a record that decodes is safe to install.

use crate::conntrack::conn::{L4State, TcpPeer, TcpState};
use crate::conntrack::key::ConnKey;
use crate::conntrack::timeouts::N_ATTRS;

/// Bytes of one encoded record.
pub const RECORD_LEN: usize = 132;
/// Bytes of one encoded key.
const KEY_LEN: usize = 40;

/// What the receiver does with the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SyncOp {
    /// Install the connection, or update it when the original key is known.
    Upsert = 1,
    /// Remove the connection with this original key.
    Delete = 2,
}

/// One connection as the sync protocol carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRecord {
    pub op: SyncOp,
    /// Original-direction key; its zone is the connection's zone.
    pub orig: ConnKey,
    /// Reply key; with NAT, the translated one.
    pub reply: ConnKey,
    /// NAT flags (`CtState::SNAT`/`DNAT` bits).
    pub nat: u8,
    /// Timeout attribute of the state (`TimeoutAttr` as u8).
    pub tattr: u8,
    /// Milliseconds until the connection expires on the sender.
    pub timeout_ms: u32,
    pub mark: u32,
    pub label: u128,
    pub l4: L4State,
}

/// Why a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    Op,
    Family,
    Zone,
    Proto,
    Attr,
    TcpState,
}

fn put_key(out: &mut Vec<u8>, k: &ConnKey) {
    out.extend_from_slice(&k.src);
    out.extend_from_slice(&k.dst);
    out.extend_from_slice(&k.sport.to_le_bytes());
    out.extend_from_slice(&k.dport.to_le_bytes());
    out.extend_from_slice(&k.zone.to_le_bytes());
    out.push(k.proto);
    out.push(k.family);
}

fn get_key(b: &[u8; KEY_LEN]) -> ConnKey {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&b[0..16]);
    dst.copy_from_slice(&b[16..32]);
    ConnKey {
        src,
        dst,
        sport: u16::from_le_bytes([b[32], b[33]]),
        dport: u16::from_le_bytes([b[34], b[35]]),
        zone: u16::from_le_bytes([b[36], b[37]]),
        proto: b[38],
        family: b[39],
    }
}

/// A little-endian reader over a slice whose length the caller checked.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let n = N.min(self.0.len());
        a[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        a
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
}

impl SyncRecord {
    /// A delete of the connection whose original key is `orig`.
    pub fn delete(orig: ConnKey, reply: ConnKey) -> SyncRecord {
        SyncRecord {
            op: SyncOp::Delete,
            orig,
            reply,
            nat: 0,
            tattr: 0,
            timeout_ms: 0,
            mark: 0,
            label: 0,
            l4: L4State::default(),
        }
    }

    /// Appends the [`RECORD_LEN`] bytes of the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.op as u8, self.nat, self.tattr, self.l4.proto_state]);
        put_key(out, &self.orig);
        put_key(out, &self.reply);
        out.extend_from_slice(&self.timeout_ms.to_le_bytes());
        out.extend_from_slice(&self.mark.to_le_bytes());
        out.extend_from_slice(&self.label.to_le_bytes());
        for p in &self.l4.peer {
            out.extend_from_slice(&p.seqlo.to_le_bytes());
            out.extend_from_slice(&p.seqhi.to_le_bytes());
            out.extend_from_slice(&p.max_win.to_le_bytes());
            out.push(p.wscale);
            out.push(p.state as u8);
        }
    }

    /// Decodes one record of exactly [`RECORD_LEN`] bytes, checking its fields.
    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<SyncRecord, RecordError> {
        let mut r = Rd(b);
        let op = match r.u8() {
            1 => SyncOp::Upsert,
            2 => SyncOp::Delete,
            _ => return Err(RecordError::Op),
        };
        let nat = r.u8();
        let tattr = r.u8();
        let proto_state = r.u8();
        let orig = get_key(&r.take());
        let reply = get_key(&r.take());
        let timeout_ms = r.u32();
        let mark = r.u32();
        let label = u128::from_le_bytes(r.take());
        let mut peer = [TcpPeer::default(); 2];
        for p in &mut peer {
            p.seqlo = r.u32();
            p.seqhi = r.u32();
            p.max_win = r.u16();
            p.wscale = r.u8();
            let st = r.u8();
            if st > TcpState::TimeWait as u8 {
                return Err(RecordError::TcpState);
            }
            p.state = TcpState::from_u8(st);
        }
        for k in [&orig, &reply] {
            if k.family != 4 && k.family != 6 {
                return Err(RecordError::Family);
            }
            if k.family == 4 && (k.src[4..] != [0; 12] || k.dst[4..] != [0; 12]) {
                return Err(RecordError::Family);
            }
        }
        if orig.zone != reply.zone {
            return Err(RecordError::Zone);
        }
        if orig.proto != reply.proto {
            return Err(RecordError::Proto);
        }
        if tattr as usize >= N_ATTRS {
            return Err(RecordError::Attr);
        }
        Ok(SyncRecord {
            op,
            orig,
            reply,
            nat,
            tattr,
            timeout_ms,
            mark,
            label,
            l4: L4State { peer, proto_state },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(i: u32) -> SyncRecord {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, (i >> 8) as u8, i as u8]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        let orig = ConnKey {
            src,
            dst,
            sport: 1000 + i as u16,
            dport: 80,
            zone: 3,
            proto: 6,
            family: 4,
        };
        let mut reply = orig.reversed();
        reply.dst[..4].copy_from_slice(&[198, 51, 100, 7]);
        let mut l4 = L4State::default();
        l4.peer[0] = TcpPeer {
            seqlo: 0xdead_beef,
            seqhi: 7,
            max_win: 65535,
            wscale: 7,
            state: TcpState::Established,
        };
        l4.peer[1].state = TcpState::FinWait2;
        SyncRecord {
            op: SyncOp::Upsert,
            orig,
            reply,
            nat: 0x40,
            tattr: 2,
            timeout_ms: 86_400_000,
            mark: 0x1234,
            label: 1 << 100 | 5,
            l4,
        }
    }

    #[test]
    fn record_round_trips_with_every_field() {
        let r = sample(300);
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(b.len(), RECORD_LEN);
        let a: [u8; RECORD_LEN] = b.as_slice().try_into().unwrap();
        assert_eq!(SyncRecord::decode(&a), Ok(r));
    }

    #[test]
    fn record_with_mismatched_zone_or_bad_family_is_refused() {
        let mut r = sample(1);
        r.reply.zone = 4;
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(
            SyncRecord::decode(&b.as_slice().try_into().unwrap()),
            Err(RecordError::Zone)
        );
        let mut r = sample(1);
        r.orig.family = 5;
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(
            SyncRecord::decode(&b.as_slice().try_into().unwrap()),
            Err(RecordError::Family)
        );
    }
}
