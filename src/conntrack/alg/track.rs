//! The tracker's side of the ALGs: creating expectations from a helper connection's
//! payload (OVS's `handle_ftp_ctl`, `process_ftp_ctl_v4/v6`, `handle_tftp_ctl`,
//! `expectation_create`), creating a data connection as RELATED when its first packet
//! matches one, and keeping the sequence skew a length-changing rewrite leaves.
//!
//! The tracker never sees payload bytes on its own: the gateway step hands a helper
//! connection's payload to [`CtWorker::alg_ftp`] / [`CtWorker::alg_tftp`] after tracking,
//! gets back what to rewrite (the address the parent's NAT gives the announcement), has
//! the NAT layer rewrite it, and reports the length change with
//! [`CtWorker::alg_add_skew`]; every later segment of the connection is adjusted by
//! [`CtWorker::alg_skew`]'s offsets.
//!
//! Invariants: the packet path takes only bucket locks (the expectation table's, the side
//! table's), never a global one, and no lock at all while no expectation exists; a
//! malformed announcement changes nothing and is counted (`alg_ftp_invalid`); an
//! expectation lives while its parent does (pool index and generation).

use super::expect::{ExpRefused, Expectation, Helper};
use super::ftp::{self, FtpParse};
use super::side::Skew;
use super::tftp;
use crate::conntrack::conn::{ALG_RELATED, ALG_SKEW, DIR_ORIG, DIR_REPLY};
use crate::conntrack::key::{addr_to_ip, ip_to_addr, ConnKey, KEY_WORDS};
use crate::conntrack::l4::L4Kind;
use crate::conntrack::stats::bump;
use crate::conntrack::table::Hit;
use crate::conntrack::tracker::{Conntrack, CreateError, CtResult, CtWorker, Request};
use crate::conntrack::CtState;
use crate::wire::parse::ParsedPacket;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

pub use super::{EXP_BUCKETS, EXP_MAX, EXP_PER_PARENT, SIDE_BUCKETS};

/// What to do with a helper connection's segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgVerdict {
    /// Nothing (not an announcement, or nothing to rewrite).
    Pass,
    /// A malformed announcement, or one naming another host's address: passed unchanged
    /// and counted (OVS marks it `inv`).
    Invalid,
    /// Replace the announcement's address with `to` (the parent's NAT).
    Rewrite {
        /// The parsed message (its address span is in the payload given).
        msg: ftp::FtpMessage,
        /// The address to write.
        to: IpAddr,
    },
}

/// OVS's `expectation_create` for a parent with original key `orig`, reply key `reply`
/// and NAT flags `nat`, announced by a packet travelling in the reply direction
/// (`reply_dir`) or the original one: the data connection's key (source port always a
/// wildcard) and the translation it inherits.
#[allow(clippy::too_many_arguments)]
pub fn expectation_for(
    orig: &ConnKey,
    reply: &ConnKey,
    nat: u8,
    dport: u16,
    reply_dir: bool,
    parent_ref: (u32, u32),
    helper: Helper,
    nat_port: u16,
) -> Expectation {
    let dnat = nat & CtState::DNAT != 0;
    let (src, dst, nat_addr, nat_dst) = if reply_dir {
        // Announced by the reply side: the data connection goes the parent's way.
        let a = if dnat { reply.src } else { reply.dst };
        (orig.src, orig.dst, a, !dnat)
    } else {
        let a = if dnat { orig.dst } else { orig.src };
        (reply.src, reply.dst, a, dnat)
    };
    Expectation {
        key: ConnKey {
            src,
            dst,
            sport: 0,
            dport,
            zone: orig.zone,
            proto: orig.proto,
            family: orig.family,
        },
        src_wildcard: false,
        parent: *orig,
        parent_ref,
        nat_addr,
        nat_dst,
        nat_on: nat != 0,
        nat_port,
        mark: 0,
        label: 0,
        helper,
    }
}

impl Conntrack {
    /// True while the connection in pool slot `idx` is live at generation `gen`.
    pub(crate) fn conn_alive(&self, idx: u32, gen: u32) -> bool {
        idx < self.table().capacity() && self.table().conn(idx).is_live(gen)
    }

    /// Calls `f` for every live expectation (the dump).
    pub fn for_each_expectation(&self, f: impl FnMut(&Expectation)) {
        self.exp.for_each(|i, g| self.conn_alive(i, g), f);
    }

    /// Expectations held (including some whose parent is gone, until purged).
    pub fn n_expectations(&self) -> u32 {
        self.exp.len()
    }

    /// Frees the slots of expectations whose parent is gone (the sweep calls it).
    pub fn purge_expectations(&self) -> usize {
        self.exp
            .purge(0, self.exp.n_buckets(), |i, g| self.conn_alive(i, g))
    }

    /// Creates data connections announced by an expectation even when the caller does
    /// not commit them (the gateway's policy admits related traffic).
    pub fn set_commit_related(&self, on: bool) {
        self.commit_related.store(on, Ordering::Relaxed);
    }
}

impl CtWorker<'_> {
    /// A packet that matched no connection: if an expectation announced it, the data
    /// connection is created as RELATED (`new|rel` on this packet), with the parent's
    /// mark and label and the NAT the expectation names. `None`: no expectation.
    pub(crate) fn miss_related(
        &mut self,
        p: &ParsedPacket,
        kind: L4Kind,
        req: &Request,
        words: &[u64; KEY_WORDS],
        hash: u64,
        now: u64,
    ) -> Option<CtResult> {
        let ct = self.tracker();
        let orig = ConnKey::from_words(words);
        // An expectation goes with its parent: one whose parent has expired (swept or
        // not) matches nothing, as in OVS.
        let e = ct.exp.lookup(&orig, |i, g| {
            ct.conn_alive(i, g) && ct.table().conn(i).expiry() > now
        })?;
        let mut r = CtResult {
            state: CtState(CtState::NEW | CtState::REL | CtState::TRK),
            conn: None,
            refused: None,
            alg: ALG_RELATED,
        };
        if !req.commit && !ct.commit_related.load(Ordering::Relaxed) {
            return Some(r);
        }
        let plain = orig.reversed();
        let mut reply = plain;
        let mut flags = 0;
        if e.nat_on {
            if e.nat_dst {
                reply.dst = e.nat_addr;
                if e.nat_port != 0 {
                    reply.dport = e.nat_port;
                }
                flags = CtState::SNAT;
            } else {
                reply.src = e.nat_addr;
                if e.nat_port != 0 {
                    reply.sport = e.nat_port;
                }
                flags = CtState::DNAT;
            }
            if reply == plain {
                flags = 0;
            }
        }
        match self.create(p, kind, &orig, hash, &reply, flags | ALG_RELATED, now) {
            Ok(hit) => {
                let c = ct.table().conn(hit.idx);
                c.set_mark(e.mark);
                c.set_label(e.label);
                let _ = ct.side.with_entry(
                    hit.idx,
                    hit.gen,
                    true,
                    |i, g| ct.conn_alive(i, g),
                    |s| s.parent = Some(e.parent),
                );
                bump(&self.counters().alg_related);
                r.state.0 |= crate::conntrack::tracker::packet_nat_bits(flags, false);
                r.conn = Some(hit);
                Some(r)
            }
            Err(CreateError::Exists(_)) => {
                let again = Request {
                    commit: false,
                    nat: None,
                    ..*req
                };
                Some(self.resolve(p, &again, words, hash, now))
            }
            Err(CreateError::Refused(why)) => {
                r.refused = Some(why);
                Some(r)
            }
        }
    }

    fn add_expectation(&mut self, mut e: Expectation, hit: &Hit) {
        let ct = self.tracker();
        let c = ct.table().conn(hit.idx);
        e.mark = c.mark();
        e.label = c.label();
        match ct.exp.insert(e, |i, g| ct.conn_alive(i, g)) {
            Ok(true) => bump(&self.counters().alg_expectations),
            Ok(false) => {}
            Err(ExpRefused::Full | ExpRefused::ParentFull | ExpRefused::BucketFull) => {
                bump(&self.counters().alg_expectations_refused)
            }
        }
    }

    /// An FTP control connection's segment (`payload`: the TCP payload, as the sender
    /// sent it) of connection `hit`: a `PORT`/`EPRT`/`227`/`229` creates the data
    /// connection's expectation; the verdict says whether the address must be rewritten
    /// to the parent's translated one (OVS's `v4_addr_rep`/`v6_addr_rep`).
    pub fn alg_ftp(&mut self, hit: &Hit, payload: &[u8]) -> AlgVerdict {
        let ct = self.tracker();
        let c = ct.table().conn(hit.idx);
        let orig = ct.table().key(hit.idx, DIR_ORIG);
        let reply = ct.table().key(hit.idx, DIR_REPLY);
        let nat = c.nat_flags();
        if !c.is_live(hit.gen) {
            return AlgVerdict::Pass;
        }
        let v6 = orig.family == 6;
        let msg = match ftp::parse(payload, v6) {
            FtpParse::Other => return AlgVerdict::Pass,
            FtpParse::Invalid => {
                bump(&self.counters().alg_ftp_invalid);
                return AlgVerdict::Invalid;
            }
            FtpParse::Message(m) => m,
        };
        let ip = |a: &[u8; 16]| addr_to_ip(orig.family, a);
        // Active: the client's address, replaced by the one the server sees; passive:
        // the server's, replaced by the one the client sees.
        let (rep, own) = if msg.kind.is_active() {
            (ip(&reply.dst), ip(&orig.src))
        } else {
            (ip(&orig.dst), ip(&reply.src))
        };
        if let Some(a) = msg.addr {
            // "Although most servers will block this exploit": a third party's address.
            if a != own && a != rep {
                bump(&self.counters().alg_ftp_invalid);
                return AlgVerdict::Invalid;
            }
        }
        let e = expectation_for(
            &orig,
            &reply,
            nat,
            msg.port,
            hit.dir == DIR_REPLY,
            (hit.idx, hit.gen),
            Helper::Ftp,
            0,
        );
        self.add_expectation(e, hit);
        match msg.addr {
            Some(a) if msg.addr_span.is_some() && a != rep => AlgVerdict::Rewrite { msg, to: rep },
            _ => AlgVerdict::Pass,
        }
    }

    /// A TFTP connection's datagram: a read or write request from the client creates the
    /// expectation of the server's reply from any of its ports (OVS's
    /// `handle_tftp_ctl`), to the client's port as the server sees it.
    pub fn alg_tftp(&mut self, hit: &Hit, payload: &[u8]) {
        if hit.dir != DIR_ORIG || tftp::parse_request(payload).is_none() {
            return;
        }
        let ct = self.tracker();
        let c = ct.table().conn(hit.idx);
        let t = ct.table();
        let (orig, reply, nat) = (
            t.key(hit.idx, DIR_ORIG),
            t.key(hit.idx, DIR_REPLY),
            c.nat_flags(),
        );
        if !c.is_live(hit.gen) {
            return;
        }
        // Under SNAT the reply comes to the translated port and goes back to the
        // client's own.
        let nat_port = if nat & CtState::DNAT == 0 {
            orig.sport
        } else {
            0
        };
        let e = expectation_for(
            &orig,
            &reply,
            nat,
            reply.dport,
            false,
            (hit.idx, hit.gen),
            Helper::Tftp,
            nat_port,
        );
        self.add_expectation(e, hit);
    }

    /// Records that the segment of `hit`'s direction starting at sequence number `seq`
    /// (as its sender sent it) changed length by `delta`. False (and counted) when the
    /// side table had no room: the caller must then not send the changed segment.
    pub fn alg_add_skew(&mut self, hit: &Hit, seq: u32, delta: i32) -> bool {
        let ct = self.tracker();
        let dir = hit.dir & 1;
        let ok = ct
            .side
            .with_entry(
                hit.idx,
                hit.gen,
                true,
                |i, g| ct.conn_alive(i, g),
                |e| {
                    if let Some(s) = e.skew.get_mut(dir) {
                        s.add(seq, delta);
                    }
                },
            )
            .is_ok_and(|r| r.is_some());
        if ok {
            ct.table().conn(hit.idx).set_alg_bits(ALG_SKEW);
        } else {
            bump(&self.counters().alg_rewrite_failed);
        }
        ok
    }

    /// The skews of `hit`'s connection (`[DIR_ORIG, DIR_REPLY]`), if it has any.
    pub fn alg_skew(&self, hit: &Hit) -> Option<[Skew; 2]> {
        self.tracker().side.get(hit.idx, hit.gen).map(|e| e.skew)
    }

    /// Counts a rewrite the caller could not do (the segment passed unchanged).
    pub fn alg_rewrite_failed(&self) {
        bump(&self.counters().alg_rewrite_failed);
    }
}

/// The address bytes of `a` as keys hold them.
pub fn addr_bytes(a: IpAddr) -> [u8; 16] {
    ip_to_addr(a).0
}

impl crate::conntrack::OwnedCtWorker {
    /// See [`CtWorker::alg_ftp`].
    pub fn alg_ftp(&mut self, hit: &Hit, payload: &[u8]) -> AlgVerdict {
        self.with_worker(|w| w.alg_ftp(hit, payload))
    }

    /// See [`CtWorker::alg_tftp`].
    pub fn alg_tftp(&mut self, hit: &Hit, payload: &[u8]) {
        self.with_worker(|w| w.alg_tftp(hit, payload))
    }

    /// See [`CtWorker::alg_add_skew`].
    pub fn alg_add_skew(&mut self, hit: &Hit, seq: u32, delta: i32) -> bool {
        self.with_worker(|w| w.alg_add_skew(hit, seq, delta))
    }

    /// See [`CtWorker::alg_skew`].
    pub fn alg_skew(&mut self, hit: &Hit) -> Option<[Skew; 2]> {
        self.with_worker(|w| w.alg_skew(hit))
    }

    /// See [`CtWorker::alg_rewrite_failed`].
    pub fn alg_rewrite_failed(&mut self) {
        self.with_worker(|w| w.alg_rewrite_failed())
    }
}
