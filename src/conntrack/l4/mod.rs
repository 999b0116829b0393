//! Per-protocol connection state machines behind one interface (OVS's `ct_l4_proto`).
//!
//! Each protocol module is small: whether a packet may create a connection
//! ([`L4Proto::valid_new`]), the state of a new connection ([`L4Proto::new_conn`]) and the
//! update on every later packet ([`L4Proto::update`]). All run under the connection's lock,
//! except that a packet which leaves a one-byte state (UDP, ICMP, other protocols) as it is
//! is answered from that byte without the lock ([`L4Kind::steady`]).

pub mod icmp;
pub mod other;
pub mod tcp;

use super::conn::L4State;
use super::timeouts::TimeoutAttr;
use crate::wire::parse::{proto, ParsedPacket};

/// Outcome of updating a connection with a packet (OVS's `enum ct_update_res`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateResult {
    /// The packet belongs to the established connection (`est`).
    Valid,
    /// The packet is valid but the connection is still new (`new`: one-way traffic).
    ValidNew,
    /// The packet does not fit the connection's state (`inv`).
    Invalid,
    /// The packet starts a new connection on a closed one's tuple (TCP port reuse): the old
    /// connection must be removed and a new one created.
    Recreate,
}

/// One protocol's state machine.
pub trait L4Proto {
    /// True when `p` may create a connection (a SYN+ACK may not, an ICMP reply may not).
    fn valid_new(p: &ParsedPacket) -> bool;
    /// Initialises `st` from the connection's first packet; returns the timeout to apply.
    fn new_conn(p: &ParsedPacket, st: &mut L4State) -> TimeoutAttr;
    /// Updates `st` with a packet travelling in the reply direction or not. Returns the
    /// result and the timeout to apply, or `None` to leave the expiry untouched.
    fn update(
        p: &ParsedPacket,
        st: &mut L4State,
        reply: bool,
        seq_check: bool,
    ) -> (UpdateResult, Option<TimeoutAttr>);
}

/// Which state machine a protocol uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    Tcp,
    Icmp,
    /// UDP and every other IP protocol (3-state first/multiple/bidirectional).
    Other,
}

impl L4Kind {
    /// The state machine for IP protocol `p`.
    #[inline(always)]
    pub fn of(p: u8) -> L4Kind {
        match p {
            proto::TCP => L4Kind::Tcp,
            proto::ICMP | proto::ICMPV6 => L4Kind::Icmp,
            _ => L4Kind::Other,
        }
    }

    #[inline]
    pub fn valid_new(self, p: &ParsedPacket) -> bool {
        match self {
            L4Kind::Tcp => tcp::Tcp::valid_new(p),
            L4Kind::Icmp => icmp::Icmp::valid_new(p),
            L4Kind::Other => other::Other::valid_new(p),
        }
    }

    #[inline]
    pub fn new_conn(self, p: &ParsedPacket, st: &mut L4State) -> TimeoutAttr {
        match self {
            L4Kind::Tcp => tcp::Tcp::new_conn(p, st),
            L4Kind::Icmp => icmp::Icmp::new_conn(p, st),
            L4Kind::Other => other::Other::new_conn(p, st),
        }
    }

    /// What [`L4Kind::update`] returns for a packet that leaves a one-byte state
    /// (`proto_state`: UDP, ICMP, other protocols) as it is, computed from that byte
    /// alone, so the caller needs no lock ([`crate::conntrack::conn::Conn`]'s
    /// `peek_proto_state`). `None` for TCP, whose state is more than the byte, and for a
    /// packet that would change the state (the caller takes the lock and updates).
    #[inline(always)]
    pub fn steady(
        self,
        p: &ParsedPacket,
        proto_state: u8,
        reply: bool,
    ) -> Option<(UpdateResult, Option<TimeoutAttr>)> {
        if self == L4Kind::Tcp {
            return None;
        }
        let mut st = L4State {
            proto_state,
            ..L4State::default()
        };
        let r = self.update(p, &mut st, reply, false);
        (st.proto_state == proto_state).then_some(r)
    }

    #[inline]
    pub fn update(
        self,
        p: &ParsedPacket,
        st: &mut L4State,
        reply: bool,
        seq_check: bool,
    ) -> (UpdateResult, Option<TimeoutAttr>) {
        match self {
            L4Kind::Tcp => tcp::Tcp::update(p, st, reply, seq_check),
            L4Kind::Icmp => icmp::Icmp::update(p, st, reply, seq_check),
            L4Kind::Other => other::Other::update(p, st, reply, seq_check),
        }
    }
}
