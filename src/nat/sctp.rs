//! SCTP under NAT: ports rewritten with the CRC32c recomputed over the packet.
//!
//! SCTP's checksum covers no pseudo-header (address changes leave it alone) and is not a
//! ones'-complement sum, so a port change cannot be folded in incrementally as for TCP and
//! UDP: the CRC32c is recomputed over the whole packet ([`crate::wire::sctp`]). Two rules
//! keep that honest:
//!
//! * The packet's checksum is verified first; a packet whose CRC32c is already wrong is
//!   refused ([`Refused::Checksum`], the rewrite's `SctpChecksum`) instead of leaving with a fresh, valid one
//!   (recomputing would launder a corrupted packet). A packet whose ports stay is not
//!   looked at (its checksum is the receiver's business, as for TCP and UDP).
//! * A fragment carries only part of the packet the CRC32c covers, so a fragment whose
//!   ports must change is refused ([`Refused::Fragment`]); fragments are
//!   reassembled before the tracker or not tracked at all.
//!
//! In the packet an ICMP error quotes, the ports are translated back by the generic code
//! (their words are added to the ICMP checksum); the quoted CRC32c is recomputed here only
//! when the whole packet is quoted and its CRC32c was correct, so that, translated back, it
//! is exactly what its sender computed. A truncated quote keeps its CRC32c (no stack checks
//! it: Linux matches an ICMP error to its association by ports and verification tag).
//!
//! No allocation, no panic on any input; nothing is written before everything is checked.
//! (The rewrite calls in here and maps [`Refused`] to its errors; this file imports
//! nothing of it.)

use crate::wire::parse::Fragment;
use crate::wire::sctp;

/// Why an SCTP packet's ports cannot be rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The common header is cut.
    Truncated,
    /// Its CRC32c is wrong (recomputing would launder it).
    Checksum,
    /// A fragment: the CRC32c covers the whole packet.
    Fragment,
}

/// A checked port rewrite of an SCTP packet, not yet written.
pub(super) struct PortRewrite<'a> {
    packet: &'a mut [u8],
    sport: u16,
    dport: u16,
    /// Whether the source and the destination port change.
    changes: (bool, bool),
}

/// Checks that `packet` (the whole IP payload, from the common header) can get the ports
/// `sport`/`dport`: header whole; when a port changes, not a fragment and checksum right.
pub(super) fn prepare(
    packet: &mut [u8],
    fragment: Fragment,
    sport: u16,
    dport: u16,
) -> Result<PortRewrite<'_>, Refused> {
    let view = sctp::Packet::new_checked(&*packet).map_err(|_| Refused::Truncated)?;
    let changes = (view.src_port() != sport, view.dst_port() != dport);
    if changes.0 || changes.1 {
        if fragment != Fragment::None {
            return Err(Refused::Fragment);
        }
        if !view.verify_checksum() {
            return Err(Refused::Checksum);
        }
    }
    Ok(PortRewrite {
        packet,
        sport,
        dport,
        changes,
    })
}

impl PortRewrite<'_> {
    /// Writes the ports and the recomputed checksum (nothing if no port changes); returns
    /// whether the source and the destination port changed.
    pub(super) fn write(self) -> (bool, bool) {
        if self.changes.0 || self.changes.1 {
            let mut p = sctp::Packet::new_unchecked(self.packet);
            p.set_src_port(self.sport);
            p.set_dst_port(self.dport);
            p.fill_checksum();
        }
        self.changes
    }
}

/// The stored CRC32c of a quoted SCTP packet, when it is quoted whole and the CRC32c is
/// right: the caller recomputes it with [`refill_quoted`] after translating the quote.
pub(super) fn quoted_checksum_ok(packet: &[u8]) -> bool {
    sctp::Packet::new_checked(packet).is_ok_and(|p| p.verify_checksum())
}

/// Recomputes the checksum of a whole quoted SCTP packet; returns the old and new field
/// bytes (for the ICMP checksum), or `None` if the header is cut.
pub(super) fn refill_quoted(packet: &mut [u8]) -> Option<([u8; 4], [u8; 4])> {
    let mut p = sctp::Packet::new_checked(packet).ok()?;
    let old = p.checksum().to_le_bytes();
    p.fill_checksum();
    Some((old, p.checksum().to_le_bytes()))
}
