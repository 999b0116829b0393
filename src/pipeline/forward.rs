//! Plain L2 forwarding between paired ports: the first datapath step.
//!
//! A frame that arrives on port A leaves on A's paired port B with its source MAC set to
//! B's MAC and its destination MAC set to the configured next hop. Everything else in
//! the frame is left as it is. The conntrack/NAT pipeline replaces this step later; it
//! keeps the same shape, `(frame, in_port) -> Verdict`.

use super::{DropReason, MacAddr, PacketStep, Verdict};

/// Highest port id + 1 that forwarding tables hold (DPDK's default `RTE_MAX_ETHPORTS`).
pub const MAX_PORTS: usize = 32;

/// Ethernet header length: destination MAC, source MAC, EtherType.
pub const ETHER_HDR_LEN: usize = 14;

/// The forwarding table: output port and MAC per input port, and the next-hop MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// `out_port[in]`: where frames arriving on `in` go.
    out_port: [Option<u16>; MAX_PORTS],
    /// `port_mac[p]`: MAC of port `p`, written as the source of frames sent on `p`.
    port_mac: [MacAddr; MAX_PORTS],
    next_hop: MacAddr,
}

impl Forward {
    /// A table for bidirectional `pairs` (A↔B). `port_macs` gives the MAC of every port
    /// that appears in a pair.
    pub fn new(
        pairs: &[(u16, u16)],
        port_macs: &[(u16, MacAddr)],
        next_hop: MacAddr,
    ) -> Result<Forward, String> {
        let mut out_port = [None; MAX_PORTS];
        let mut port_mac = [MacAddr::default(); MAX_PORTS];
        for &(p, mac) in port_macs {
            let slot = port_mac
                .get_mut(usize::from(p))
                .ok_or_else(|| format!("port {p} is beyond the {MAX_PORTS} ports supported"))?;
            *slot = mac;
        }
        for &(a, b) in pairs {
            for (from, to) in [(a, b), (b, a)] {
                let slot = out_port.get_mut(usize::from(from)).ok_or_else(|| {
                    format!("port {from} is beyond the {MAX_PORTS} ports supported")
                })?;
                if slot.is_some_and(|o| o != to) {
                    return Err(format!("port {from} appears in more than one pair"));
                }
                *slot = Some(to);
                if !port_macs.iter().any(|&(p, _)| p == to) {
                    return Err(format!("no MAC address known for port {to}"));
                }
            }
        }
        Ok(Forward {
            out_port,
            port_mac,
            next_hop,
        })
    }

    /// The output port for frames from `in_port`.
    pub fn out_port(&self, in_port: u16) -> Option<u16> {
        self.out_port.get(usize::from(in_port)).copied().flatten()
    }

    /// Forwards one frame: rewrites its MACs for the output port and says where it goes.
    /// Frames shorter than an Ethernet header are dropped as [`DropReason::ShortFrame`],
    /// frames from an unpaired port as [`DropReason::NoRoute`]. Never panics.
    #[inline]
    pub fn forward(&self, frame: &mut [u8], in_port: u16) -> Verdict {
        let Some(hdr) = frame.get_mut(..ETHER_HDR_LEN) else {
            return Verdict::Drop(DropReason::ShortFrame);
        };
        let Some(out) = self.out_port(in_port) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        // `out` came from the table, so it indexes `port_mac`.
        let src = self.port_mac[usize::from(out)];
        hdr[0..6].copy_from_slice(&self.next_hop.0);
        hdr[6..12].copy_from_slice(&src.0);
        Verdict::Forward(out)
    }
}

impl PacketStep for Forward {
    #[inline]
    fn process(&mut self, frame: &mut [u8], in_port: u16) -> Verdict {
        self.forward(frame, in_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC0: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xa0]);
    const MAC1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xa1]);
    const HOP: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);

    fn table() -> Forward {
        Forward::new(&[(0, 1)], &[(0, MAC0), (1, MAC1)], HOP).unwrap()
    }

    /// A UDP/IPv4 frame: dst 00:11:22:33:44:55, src 66:77:88:99:aa:bb.
    fn frame() -> Vec<u8> {
        let mut f = vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x08, 0x00,
        ];
        f.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn rewrites_macs_for_the_paired_port_and_nothing_else() {
        let t = table();
        let orig = frame();
        let mut f = orig.clone();
        assert_eq!(t.forward(&mut f, 0), Verdict::Forward(1));
        assert_eq!(&f[0..6], &HOP.0);
        assert_eq!(&f[6..12], &MAC1.0);
        assert_eq!(&f[12..], &orig[12..]);

        let mut f = orig.clone();
        assert_eq!(t.forward(&mut f, 1), Verdict::Forward(0));
        assert_eq!(&f[6..12], &MAC0.0);
        assert_eq!(&f[12..], &orig[12..]);
    }

    #[test]
    fn short_frames_are_dropped_untouched() {
        let t = table();
        for len in 0..ETHER_HDR_LEN {
            let mut f = vec![0xa5; len];
            assert_eq!(t.forward(&mut f, 0), Verdict::Drop(DropReason::ShortFrame));
            assert!(f.iter().all(|&b| b == 0xa5));
        }
        let mut f = vec![0xa5; ETHER_HDR_LEN];
        assert_eq!(t.forward(&mut f, 0), Verdict::Forward(1));
    }

    #[test]
    fn unpaired_or_out_of_range_ports_have_no_route() {
        let t = table();
        let mut f = frame();
        assert_eq!(t.forward(&mut f, 2), Verdict::Drop(DropReason::NoRoute));
        assert_eq!(
            t.forward(&mut f, u16::MAX),
            Verdict::Drop(DropReason::NoRoute)
        );
        assert_eq!(f, frame());
    }

    #[test]
    fn hairpin_pair_sends_back_out_the_same_port() {
        let t = Forward::new(&[(3, 3)], &[(3, MAC0)], HOP).unwrap();
        let mut f = frame();
        assert_eq!(t.forward(&mut f, 3), Verdict::Forward(3));
        assert_eq!(&f[6..12], &MAC0.0);
    }

    #[test]
    fn table_construction_rejects_conflicts() {
        assert!(Forward::new(&[(0, 1), (1, 2)], &[(0, MAC0), (1, MAC1), (2, MAC1)], HOP).is_err());
        assert!(Forward::new(&[(0, 1)], &[(0, MAC0)], HOP).is_err());
        assert!(Forward::new(&[(0, 40)], &[(0, MAC0), (40, MAC1)], HOP).is_err());
    }

    #[test]
    fn burst_default_applies_process_per_frame() {
        let mut t = table();
        let mut a = frame();
        let mut b = vec![1, 2, 3];
        let mut frames: [&mut [u8]; 2] = [&mut a, &mut b];
        let mut v = [Verdict::Drop(DropReason::NoRoute); 2];
        t.process_burst(&mut frames, 0, &mut v);
        assert_eq!(
            v,
            [Verdict::Forward(1), Verdict::Drop(DropReason::ShortFrame)]
        );
    }
}
