//! Timeout policies: how long a connection lives after its last packet, per state.
//!
//! The attribute names and default values are those of Open vSwitch's userspace tracker
//! (`lib/conntrack-tp.c`, `ct_dpif_netdev_tp_def`), which are also the names
//! `ovs-vsctl add-zone-tp` takes. A zone's policy overrides any subset of them; the rest
//! come from the global default policy. Both are changeable at run time: values are
//! atomics read with relaxed loads on the packet path (a read-mostly map).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Changes made to any timeout policy of the process (each [`TimeoutPolicy::set_ms`] and
/// [`TimeoutPolicy::clear`] adds one after its stores). A tracker worker keeps a copy of
/// the timeouts of the zone it tracked last and takes it again when this count moved
/// (`CtWorker`'s `TimeoutCache`): a change applies from the next packet on, as when each
/// packet read the policies, and a packet reads one count instead of a zone's record and
/// two policies.
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// The number of changes made to any timeout policy so far (each
/// [`TimeoutPolicy::set_ms`] and [`TimeoutPolicy::clear`] counts one, after its stores).
/// Read before the policies it stands for: a change made after it is counted after it.
#[inline(always)]
pub fn changes() -> u64 {
    CHANGES.load(Ordering::Acquire)
}

/// A timeout attribute: the state class a connection is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeoutAttr {
    /// TCP, first packet seen (OVS `CT_TM_TCP_FIRST_PACKET`).
    TcpSynSent = 0,
    /// TCP, handshake in progress (`CT_TM_TCP_OPENING`).
    TcpSynRecv,
    /// TCP, both sides established (`CT_TM_TCP_ESTABLISHED`).
    TcpEstablished,
    /// TCP, one or both sides closing (`CT_TM_TCP_CLOSING`).
    TcpFinWait,
    /// TCP, both sides closing (`CT_TM_TCP_FIN_WAIT`).
    TcpTimeWait,
    /// TCP, both sides at FIN_WAIT_2 or later, or reset (`CT_TM_TCP_CLOSED`).
    TcpClose,
    /// UDP/other, first packet (`CT_TM_OTHER_FIRST`).
    UdpFirst,
    /// UDP/other, more packets one way (`CT_TM_OTHER_MULTIPLE`).
    UdpSingle,
    /// UDP/other, packets both ways (`CT_TM_OTHER_BIDIR`).
    UdpMultiple,
    /// ICMP, request seen (`CT_TM_ICMP_FIRST`).
    IcmpFirst,
    /// ICMP, reply seen (`CT_TM_ICMP_REPLY`).
    IcmpReply,
}

/// Number of timeout attributes.
pub const N_ATTRS: usize = 11;

impl TimeoutAttr {
    /// All attributes in order.
    pub const ALL: [TimeoutAttr; N_ATTRS] = [
        TimeoutAttr::TcpSynSent,
        TimeoutAttr::TcpSynRecv,
        TimeoutAttr::TcpEstablished,
        TimeoutAttr::TcpFinWait,
        TimeoutAttr::TcpTimeWait,
        TimeoutAttr::TcpClose,
        TimeoutAttr::UdpFirst,
        TimeoutAttr::UdpSingle,
        TimeoutAttr::UdpMultiple,
        TimeoutAttr::IcmpFirst,
        TimeoutAttr::IcmpReply,
    ];

    /// The OVS attribute name (`tcp_syn_sent`, …, `icmp_reply`).
    pub fn name(self) -> &'static str {
        match self {
            TimeoutAttr::TcpSynSent => "tcp_syn_sent",
            TimeoutAttr::TcpSynRecv => "tcp_syn_recv",
            TimeoutAttr::TcpEstablished => "tcp_established",
            TimeoutAttr::TcpFinWait => "tcp_fin_wait",
            TimeoutAttr::TcpTimeWait => "tcp_time_wait",
            TimeoutAttr::TcpClose => "tcp_close",
            TimeoutAttr::UdpFirst => "udp_first",
            TimeoutAttr::UdpSingle => "udp_single",
            TimeoutAttr::UdpMultiple => "udp_multiple",
            TimeoutAttr::IcmpFirst => "icmp_first",
            TimeoutAttr::IcmpReply => "icmp_reply",
        }
    }

    /// Parses an OVS attribute name.
    pub fn from_name(s: &str) -> Option<TimeoutAttr> {
        TimeoutAttr::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The default in seconds (OVS userspace defaults).
    pub fn default_secs(self) -> u32 {
        match self {
            TimeoutAttr::TcpSynSent => 30,
            TimeoutAttr::TcpSynRecv => 30,
            TimeoutAttr::TcpEstablished => 86400,
            TimeoutAttr::TcpFinWait => 900,
            TimeoutAttr::TcpTimeWait => 45,
            TimeoutAttr::TcpClose => 30,
            TimeoutAttr::UdpFirst => 60,
            TimeoutAttr::UdpSingle => 60,
            TimeoutAttr::UdpMultiple => 30,
            TimeoutAttr::IcmpFirst => 60,
            TimeoutAttr::IcmpReply => 30,
        }
    }
}

/// A set of timeouts in milliseconds, with a mask of which are present (set).
///
/// Used both for the global default (all present) and for per-zone overlays.
#[derive(Debug)]
pub struct TimeoutPolicy {
    present: AtomicU32,
    ms: [AtomicU32; N_ATTRS],
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        TimeoutPolicy::empty()
    }
}

impl TimeoutPolicy {
    /// A policy with no attribute set.
    pub fn empty() -> TimeoutPolicy {
        TimeoutPolicy {
            present: AtomicU32::new(0),
            ms: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The OVS defaults, all present.
    pub fn defaults() -> TimeoutPolicy {
        let p = TimeoutPolicy::empty();
        for a in TimeoutAttr::ALL {
            p.set_ms(a, a.default_secs() * 1000);
        }
        p
    }

    /// Sets one attribute.
    pub fn set_ms(&self, a: TimeoutAttr, ms: u32) {
        self.ms[a as usize].store(ms, Ordering::Relaxed);
        self.present.fetch_or(1 << a as u32, Ordering::Release);
        CHANGES.fetch_add(1, Ordering::Release);
    }

    /// Removes every attribute.
    pub fn clear(&self) {
        self.present.store(0, Ordering::Release);
        CHANGES.fetch_add(1, Ordering::Release);
    }

    /// The attribute's value if present.
    #[inline(always)]
    pub fn get_ms(&self, a: TimeoutAttr) -> Option<u32> {
        if self.present.load(Ordering::Acquire) & (1 << a as u32) != 0 {
            Some(self.ms[a as usize].load(Ordering::Relaxed))
        } else {
            None
        }
    }

    /// True when no attribute is set.
    pub fn is_empty(&self) -> bool {
        self.present.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_ovs_userspace() {
        let p = TimeoutPolicy::defaults();
        let expect = [30, 30, 86400, 900, 45, 30, 60, 60, 30, 60, 30];
        for (a, s) in TimeoutAttr::ALL.into_iter().zip(expect) {
            assert_eq!(p.get_ms(a), Some(s * 1000), "{}", a.name());
        }
    }

    #[test]
    fn overlay_holds_only_what_was_set() {
        let p = TimeoutPolicy::empty();
        assert!(p.is_empty());
        p.set_ms(TimeoutAttr::UdpFirst, 1000);
        assert_eq!(p.get_ms(TimeoutAttr::UdpFirst), Some(1000));
        assert_eq!(p.get_ms(TimeoutAttr::IcmpReply), None);
        p.clear();
        assert_eq!(p.get_ms(TimeoutAttr::UdpFirst), None);
    }

    #[test]
    fn names_round_trip() {
        for a in TimeoutAttr::ALL {
            assert_eq!(TimeoutAttr::from_name(a.name()), Some(a));
        }
        assert_eq!(TimeoutAttr::from_name("tcp_bogus"), None);
    }
}
