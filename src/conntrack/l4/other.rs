//! UDP and every protocol without its own state machine (OVS `conntrack-other.c`).
//!
//! States: FIRST (one packet seen) → MULTIPLE (more packets, same direction) →
//! BIDIR (a reply was seen). Until a reply is seen every packet is `new` (OVS ≥ 3.1,
//! commit 97211927f "conntrack: Fix conntrack multiple new state"); from then on `est`.

use super::{L4Proto, UpdateResult};
use crate::conntrack::conn::L4State;
use crate::conntrack::timeouts::TimeoutAttr;
use crate::wire::parse::ParsedPacket;

/// First packet seen.
pub const FIRST: u8 = 0;
/// More packets seen in the original direction only.
pub const MULTIPLE: u8 = 1;
/// Packets seen in both directions.
pub const BIDIR: u8 = 2;

/// Timeout per state: FIRST→udp_first, MULTIPLE→udp_single, BIDIR→udp_multiple (the
/// OVS mapping of `other_timeouts[]`).
const TIMEOUTS: [TimeoutAttr; 3] = [
    TimeoutAttr::UdpFirst,
    TimeoutAttr::UdpSingle,
    TimeoutAttr::UdpMultiple,
];

pub struct Other;

impl L4Proto for Other {
    fn valid_new(_p: &ParsedPacket) -> bool {
        true
    }

    fn new_conn(_p: &ParsedPacket, st: &mut L4State) -> TimeoutAttr {
        st.proto_state = FIRST;
        TIMEOUTS[FIRST as usize]
    }

    #[inline(always)]
    fn update(
        _p: &ParsedPacket,
        st: &mut L4State,
        reply: bool,
        _seq_check: bool,
    ) -> (UpdateResult, Option<TimeoutAttr>) {
        if reply && st.proto_state != BIDIR {
            st.proto_state = BIDIR;
        } else if st.proto_state == FIRST {
            st.proto_state = MULTIPLE;
        }
        let res = if st.proto_state == BIDIR {
            UpdateResult::Valid
        } else {
            UpdateResult::ValidNew
        };
        let s = (st.proto_state as usize).min(2);
        (res, Some(TIMEOUTS[s]))
    }
}
