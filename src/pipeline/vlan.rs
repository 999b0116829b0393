//! VLAN sub-interfaces: interface ids, and the 802.1Q tag taken off on receive and put
//! back on transmit.
//!
//! A step names where a frame goes by interface id ([`Verdict::Forward`],
//! [`StepSink::emit`], [`StepSink::send_held`]): below [`VLAN_IFACE_BASE`] it is the DPDK
//! port itself (untagged), from there on VLAN sub-interface `id - VLAN_IFACE_BASE` of the
//! worker's [`VlanTable`], a (port, VLAN id) pair. On ports that carry sub-interfaces
//! ("trunks") the worker takes one outer 802.1Q tag (TPID `0x8100`) off every received
//! frame before the step sees it and tells the step its VLAN id ([`RxInfo::vlan`]); a
//! frame for a sub-interface gets its tag pushed back in front when it is transmitted.
//! Anything else that carries a tag (QinQ's `0x88a8`, a second tag, any tag on a port
//! without sub-interfaces) reaches the step still tagged, and the gateway drops it as
//! `drop_vlan`.
//!
//! Invariants: the byte functions only move the two MAC addresses (12 bytes) and write
//! the 4-byte tag; they check lengths first and never panic. A frame's priority bits
//! (PCP/DEI) are not kept across the gateway: pushed tags carry priority 0.
//!
//! [`Verdict::Forward`]: super::Verdict::Forward
//! [`StepSink::emit`]: super::StepSink::emit
//! [`StepSink::send_held`]: super::StepSink::send_held

use super::forward::MAX_PORTS;
use crate::config::Config;

/// The first interface id of a VLAN sub-interface (ids below are DPDK ports).
pub const VLAN_IFACE_BASE: u16 = MAX_PORTS as u16;
/// VLAN sub-interfaces supported over all ports.
pub const MAX_VLAN_IFACES: usize = 32;
/// All interface ids are below this.
pub const MAX_IFACES: usize = MAX_PORTS + MAX_VLAN_IFACES;
/// The 802.1Q tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// Bytes of one tag.
pub const TAG_LEN: usize = 4;

/// What the worker knows of a received frame that its bytes no longer say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxInfo {
    /// The NIC's verdict on the IPv4 header checksum.
    pub cksum: super::RxCksum,
    /// The VLAN id of the 802.1Q tag the worker took off (trunk ports only).
    pub vlan: Option<u16>,
}

/// The VLAN sub-interfaces: entry `k` is interface `VLAN_IFACE_BASE + k`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VlanTable {
    /// (DPDK port, VLAN id) per sub-interface.
    pub ifaces: Vec<(u16, u16)>,
}

impl VlanTable {
    /// The sub-interfaces of `cfg`, in the order of its `[[port]]` entries.
    pub fn from_config(cfg: &Config) -> Result<VlanTable, String> {
        let ifaces: Vec<(u16, u16)> = cfg
            .ports
            .iter()
            .filter_map(|p| p.vlan.map(|v| (p.port, v)))
            .collect();
        if ifaces.len() > MAX_VLAN_IFACES {
            return Err(format!(
                "{} VLAN sub-interfaces: at most {MAX_VLAN_IFACES} are supported",
                ifaces.len()
            ));
        }
        Ok(VlanTable { ifaces })
    }

    /// The interface id of the config's `[[port]]` entry (port, vlan).
    pub fn iface_of(&self, port: u16, vlan: Option<u16>) -> Option<u16> {
        match vlan {
            None => (usize::from(port) < MAX_PORTS).then_some(port),
            Some(v) => self
                .ifaces
                .iter()
                .position(|&(p, id)| p == port && id == v)
                .map(|k| VLAN_IFACE_BASE + k as u16),
        }
    }

    /// Where interface `iface` transmits: (DPDK port, tag to push).
    #[inline]
    pub fn out(&self, iface: u16) -> Option<(u16, Option<u16>)> {
        if iface < VLAN_IFACE_BASE {
            return Some((iface, None));
        }
        let &(p, v) = self.ifaces.get(usize::from(iface - VLAN_IFACE_BASE))?;
        Some((p, Some(v)))
    }

    /// Is `port` a trunk (does it carry a sub-interface)?
    pub fn is_trunk(&self, port: u16) -> bool {
        self.ifaces.iter().any(|&(p, _)| p == port)
    }
}

/// Takes the outer 802.1Q tag off `frame` in place: when bytes 12..14 are `0x8100`,
/// moves the MAC addresses 4 bytes on and returns the VLAN id; the frame then starts at
/// byte 4 (the caller drops those 4 bytes). `None` (frame untouched) otherwise.
#[inline]
pub fn strip_tag(frame: &mut [u8]) -> Option<u16> {
    if frame.len() < 12 + TAG_LEN + 2 || frame[12..14] != TPID_8021Q.to_be_bytes() {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    frame.copy_within(0..12, TAG_LEN);
    Some(vid)
}

/// Writes a tag for `vid` into `frame`, whose first 4 bytes were just made room for in
/// front of an untagged frame: the MAC addresses move 4 bytes to the front and
/// `0x8100`, `vid` (priority 0) follow them. False (untouched) when too short.
#[inline]
pub fn push_tag(frame: &mut [u8], vid: u16) -> bool {
    if frame.len() < TAG_LEN + 14 {
        return false;
    }
    frame.copy_within(TAG_LEN..TAG_LEN + 12, 0);
    frame[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
    frame[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];

    fn untagged() -> Vec<u8> {
        let mut f = DST.to_vec();
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 20]);
        f
    }

    fn tagged(tpid: u16, tci: u16) -> Vec<u8> {
        let mut f = DST.to_vec();
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 20]);
        f
    }

    #[test]
    fn strip_takes_the_8021q_tag_off_and_keeps_the_macs() {
        // PCP 5, VID 100.
        let mut f = tagged(0x8100, 0xa064);
        assert_eq!(strip_tag(&mut f), Some(100));
        assert_eq!(&f[4..], &untagged()[..]);
    }

    #[test]
    fn strip_leaves_untagged_qinq_and_short_frames_alone() {
        for mut f in [untagged(), tagged(0x88a8, 10), vec![0u8; 15]] {
            let before = f.clone();
            assert_eq!(strip_tag(&mut f), None);
            assert_eq!(f, before);
        }
    }

    #[test]
    fn push_puts_the_tag_back_byte_for_byte() {
        let mut f = vec![0xee; 4];
        f.extend_from_slice(&untagged());
        assert!(push_tag(&mut f, 100));
        assert_eq!(f, tagged(0x8100, 100));
        let mut short = vec![0u8; 17];
        assert!(!push_tag(&mut short, 1));
        assert_eq!(short, vec![0u8; 17]);
    }

    #[test]
    fn interface_ids_map_to_port_and_tag() {
        let t = VlanTable {
            ifaces: vec![(0, 10), (0, 20), (1, 10)],
        };
        assert_eq!(t.iface_of(0, None), Some(0));
        assert_eq!(t.iface_of(0, Some(20)), Some(VLAN_IFACE_BASE + 1));
        assert_eq!(t.iface_of(1, Some(10)), Some(VLAN_IFACE_BASE + 2));
        assert_eq!(t.iface_of(1, Some(20)), None);
        assert_eq!(t.out(3), Some((3, None)));
        assert_eq!(t.out(VLAN_IFACE_BASE + 1), Some((0, Some(20))));
        assert_eq!(t.out(VLAN_IFACE_BASE + 3), None);
        assert!(t.is_trunk(0) && t.is_trunk(1) && !t.is_trunk(2));
    }
}
