//! ICMP and ICMPv6 queries (OVS `conntrack-icmp.c`): FIRST (request seen) → REPLY.
//!
//! Only echo request (and, for ICMPv4, timestamp and information request) may create a
//! connection. Error messages never create one: they are RELATED to the connection of the
//! packet they carry, which the tracker resolves before reaching this module.

use super::{L4Proto, UpdateResult};
use crate::conntrack::conn::L4State;
use crate::conntrack::timeouts::TimeoutAttr;
use crate::wire::parse::{proto, L4Summary, ParsedPacket};

/// Request seen.
pub const FIRST: u8 = 0;
/// Reply seen.
pub const REPLY: u8 = 1;

pub struct Icmp;

impl L4Proto for Icmp {
    fn valid_new(p: &ParsedPacket) -> bool {
        let L4Summary::Icmp(i) = p.l4 else {
            return false;
        };
        if p.proto == proto::ICMP {
            matches!(i.icmp_type, 8 | 15 | 13)
        } else {
            i.icmp_type == 128
        }
    }

    fn new_conn(_p: &ParsedPacket, st: &mut L4State) -> TimeoutAttr {
        st.proto_state = FIRST;
        TimeoutAttr::IcmpFirst
    }

    #[inline(always)]
    fn update(
        _p: &ParsedPacket,
        st: &mut L4State,
        reply: bool,
        _seq_check: bool,
    ) -> (UpdateResult, Option<TimeoutAttr>) {
        // A repeated request before any reply is still `new` (OVS icmp_conn_update).
        let mut res = UpdateResult::Valid;
        if reply && st.proto_state == FIRST {
            st.proto_state = REPLY;
        } else if st.proto_state == FIRST {
            res = UpdateResult::ValidNew;
        }
        let t = if st.proto_state == REPLY {
            TimeoutAttr::IcmpReply
        } else {
            TimeoutAttr::IcmpFirst
        };
        (res, Some(t))
    }
}
