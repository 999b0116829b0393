//! Connections as Open vSwitch prints them in `ovs-appctl dpctl/dump-conntrack`
//! (`ct_dpif_format_entry`), byte for byte, so operators' scripts keep working:
//!
//! `tcp,orig=(src=A,dst=B,sport=P,dport=Q),reply=(src=B,dst=A,sport=Q,dport=P)[,zone=Z][,timeout=S][,mark=M][,labels=0xL][,protoinfo=(state=S)][,helper=ftp][,parent=(…)]`
//!
//! `zone`, `mark` and `labels` appear only when non-zero, `timeout` (seconds left) only
//! with statistics, and `protoinfo` only for TCP, with the larger of both peers' states
//! (FIN_WAIT_2 shown as TIME_WAIT, SYN_RECV as ESTABLISHED); `helper` on a control
//! connection with an ALG, `parent` (the control connection's original tuple) on a data
//! connection an expectation created, with `-m` only.
//!
//! Expectations (`dump-conntrack-exp`, OVS's `ct_dpif_format_exp_entry`):
//! `tcp,orig=(src=A,dst=B,sport=0,dport=P)[,zone=Z],parent=(src=…,dst=…,sport=…,dport=…)`,
//! the source port (and a wildcard source address) shown as zero.

use super::alg::expect::{Expectation, Helper};
use super::conn::ALG_HELPER;
use super::key::{is_icmp, ConnKey};
use super::l4::tcp::display_state;
use super::tracker::ConnSnapshot;
use std::fmt::Write;

/// The protocol name OVS prints (`ct_dpif_format_ipproto`), else the number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// One tuple, without the parentheses: `src=…,dst=…,sport=…,dport=…` or, for ICMP,
/// `src=…,dst=…,id=…,type=…,code=…`.
pub fn format_tuple(out: &mut String, k: &ConnKey) {
    let _ = write!(out, "src={},dst={}", k.src_ip(), k.dst_ip());
    if is_icmp(k.proto) {
        let _ = write!(
            out,
            ",id={},type={},code={}",
            k.sport,
            k.icmp_type(),
            k.icmp_code()
        );
    } else {
        let _ = write!(out, ",sport={},dport={}", k.sport, k.dport);
    }
}

impl ConnSnapshot {
    /// The `dump-conntrack` line. With `stats`, `now` (ms) gives the `timeout=` field.
    pub fn ovs_line(&self, stats: bool, now: u64) -> String {
        self.ovs_line_more(stats, now, false)
    }

    /// [`ConnSnapshot::ovs_line`]; `more` (`-m`) adds a data connection's `parent=`.
    pub fn ovs_line_more(&self, stats: bool, now: u64, more: bool) -> String {
        let mut s = String::with_capacity(160);
        s.push_str(&proto_name(self.orig.proto));
        s.push_str(",orig=(");
        format_tuple(&mut s, &self.orig);
        s.push_str("),reply=(");
        format_tuple(&mut s, &self.reply);
        s.push(')');
        if self.orig.zone != 0 {
            let _ = write!(s, ",zone={}", self.orig.zone);
        }
        if stats {
            let _ = write!(s, ",timeout={}", self.expiry.saturating_sub(now) / 1000);
        }
        if self.mark != 0 {
            let _ = write!(s, ",mark={}", self.mark);
        }
        if self.label != 0 {
            let _ = write!(s, ",labels=0x{:x}", self.label);
        }
        if self.orig.proto == crate::wire::parse::proto::TCP {
            let _ = write!(s, ",protoinfo=(state={})", display_state(&self.l4).name());
        }
        if let Some(h) = Helper::from_bits(self.alg & ALG_HELPER) {
            let _ = write!(s, ",helper={}", h.name());
        }
        if let (true, Some(p)) = (more, &self.parent) {
            s.push_str(",parent=(");
            format_tuple(&mut s, p);
            s.push(')');
        }
        s
    }
}

/// The `dump-conntrack-exp` line of an expectation.
pub fn expectation_line(e: &Expectation) -> String {
    let mut s = String::with_capacity(128);
    s.push_str(&proto_name(e.key.proto));
    s.push_str(",orig=(");
    let mut k = e.key;
    k.sport = 0;
    if e.src_wildcard {
        k.src = [0; 16];
    }
    format_tuple(&mut s, &k);
    s.push(')');
    if k.zone != 0 {
        let _ = write!(s, ",zone={}", k.zone);
    }
    s.push_str(",parent=(");
    format_tuple(&mut s, &e.parent);
    s.push(')');
    s
}
