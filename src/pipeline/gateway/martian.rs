//! What a router must refuse by the packet's own bytes: martian addresses (RFC 1812
//! §5.3.7, RFC 6890, RFC 4291) and source-routed IPv4 (LSRR/SSRR, RFC 7126 §4.3/4.4).
//!
//! Pure functions over the parsed addresses (IPv4 in the first four bytes of the
//! 16-byte arrays [`crate::wire::parse::ParsedPacket`] uses) and the IPv4 option bytes;
//! the step adds what only it knows (the gateway's own addresses as a source).
//!
//! Invariants:
//! * A martian source is never answered (no echo reply, no ICMP error) and never
//!   forwarded; a martian destination is never forwarded. Both are counted
//!   (`drop_martian_src`, `drop_martian_dst`), the source checked first.
//! * Link-local addresses (IPv4 `169.254.0.0/16`, IPv6 `fe80::/10`) are martian only
//!   when the packet would cross ports (`forwarding`); to the gateway itself they are
//!   ordinary on-link traffic (NDP, a ping from a link-local address).
//! * Not martian here, and left to the step's other rules: multicast and broadcast
//!   destinations (consumed as `drop_local`: they are for the link, not for routing),
//!   and the unspecified IPv6 source of an NDP duplicate address detection (NDP is
//!   answered before this check).

use crate::pipeline::DropReason;

/// IPv4 option kinds that ask routers to follow a route the sender chose.
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_LSRR: u8 = 0x83;
const OPT_SSRR: u8 = 0x89;

/// Is the IPv4 source `a` one no host may send from: `0.0.0.0/8` ("this network"),
/// `127.0.0.0/8` (loopback), `224.0.0.0/4` (multicast), `240.0.0.0/4` (reserved, with
/// `255.255.255.255`), and `169.254.0.0/16` (link-local) when forwarding?
#[inline]
pub fn martian_src_v4(a: [u8; 4], forwarding: bool) -> bool {
    a[0] == 0 || a[0] == 127 || a[0] >= 224 || (forwarding && a[0] == 169 && a[1] == 254)
}

/// Is the IPv4 destination `a` one no packet may be routed to: `0.0.0.0/8`,
/// `127.0.0.0/8`, `240.0.0.0/4` except the limited broadcast `255.255.255.255` (which is
/// for the link: `drop_local`), and `169.254.0.0/16` when forwarding?
#[inline]
pub fn martian_dst_v4(a: [u8; 4], forwarding: bool) -> bool {
    a[0] == 0
        || a[0] == 127
        || (a[0] >= 240 && a != [255; 4])
        || (forwarding && a[0] == 169 && a[1] == 254)
}

/// `::/96`: the unspecified address `::`, the loopback `::1` and the deprecated
/// IPv4-compatible addresses `::a.b.c.d` (RFC 4291 §2.5.5.1).
#[inline]
fn v4_compatible_or_special(a: &[u8; 16]) -> bool {
    a[..12] == [0; 12]
}

/// IPv4-mapped `::ffff:0:0/96` (RFC 4291 §2.5.5.2): never on the wire.
#[inline]
fn v4_mapped(a: &[u8; 16]) -> bool {
    a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff
}

/// `fe80::/10`.
#[inline]
pub fn link_local_v6(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// Is the IPv6 source `a` martian: `::`, `::1`, IPv4-compatible `::a.b.c.d`,
/// IPv4-mapped `::ffff:a.b.c.d`, multicast `ff00::/8`, and link-local when forwarding?
#[inline]
pub fn martian_src_v6(a: &[u8; 16], forwarding: bool) -> bool {
    v4_compatible_or_special(a) || v4_mapped(a) || a[0] == 0xff || (forwarding && link_local_v6(a))
}

/// Is the IPv6 destination `a` martian: `::`, `::1`, IPv4-compatible, IPv4-mapped, and
/// link-local when forwarding? (Multicast destinations are the link's: `drop_local`.)
#[inline]
pub fn martian_dst_v6(a: &[u8; 16], forwarding: bool) -> bool {
    v4_compatible_or_special(a) || v4_mapped(a) || (forwarding && link_local_v6(a))
}

/// The martian verdict for a packet of family `fam` (4 or 6): `MartianSrc` first, then
/// `MartianDst`, `None` when both addresses may be routed.
#[inline]
pub fn classify(fam: u8, src: &[u8; 16], dst: &[u8; 16], forwarding: bool) -> Option<DropReason> {
    if fam == 4 {
        let s = [src[0], src[1], src[2], src[3]];
        let d = [dst[0], dst[1], dst[2], dst[3]];
        if martian_src_v4(s, forwarding) {
            return Some(DropReason::MartianSrc);
        }
        if martian_dst_v4(d, forwarding) {
            return Some(DropReason::MartianDst);
        }
    } else {
        if martian_src_v6(src, forwarding) {
            return Some(DropReason::MartianSrc);
        }
        if martian_dst_v6(dst, forwarding) {
            return Some(DropReason::MartianDst);
        }
    }
    None
}

/// Does the IPv4 option area `opts` (the header bytes after the first 20) carry a loose
/// or strict source route? Walks the options as RFC 791 lays them out: end of list,
/// no-operation, and type-length-value for the rest. A truncated option or one with a
/// length below 2 ends the walk (what came before it decides).
#[inline]
pub fn source_routed_v4(opts: &[u8]) -> bool {
    let mut o = 0;
    while let Some(&kind) = opts.get(o) {
        match kind {
            OPT_EOL => return false,
            OPT_NOP => o += 1,
            OPT_LSRR | OPT_SSRR => return true,
            _ => {
                let Some(&len) = opts.get(o + 1) else {
                    return false;
                };
                if len < 2 {
                    return false;
                }
                o += usize::from(len);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a4(s: &str) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&s.parse::<std::net::Ipv4Addr>().unwrap().octets());
        a
    }

    fn a6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    const HOST4: &str = "10.0.0.2";
    const SERVER4: &str = "198.51.100.7";
    const HOST6: &str = "fd00:0:0:1::2";
    const SERVER6: &str = "2001:db8::7";

    #[test]
    fn every_ipv4_martian_source_class_is_refused_and_ordinary_ones_pass() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "224.0.0.9",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            for fwd in [false, true] {
                assert_eq!(
                    classify(4, &a4(s), &a4(SERVER4), fwd),
                    Some(DropReason::MartianSrc),
                    "{s} forwarding={fwd}"
                );
            }
        }
        assert_eq!(
            classify(4, &a4("169.254.1.1"), &a4(SERVER4), true),
            Some(DropReason::MartianSrc)
        );
        assert_eq!(
            classify(4, &a4("169.254.1.1"), &a4("10.0.0.1"), false),
            None
        );
        for s in [
            HOST4,
            "1.0.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "223.255.255.255",
        ] {
            assert_eq!(classify(4, &a4(s), &a4(SERVER4), true), None, "{s}");
        }
    }

    #[test]
    fn every_ipv4_martian_destination_class_is_refused_but_not_limited_broadcast() {
        for d in [
            "0.0.0.0",
            "0.0.0.1",
            "127.0.0.1",
            "240.0.0.1",
            "254.255.255.255",
        ] {
            assert_eq!(
                classify(4, &a4(HOST4), &a4(d), true),
                Some(DropReason::MartianDst),
                "{d}"
            );
        }
        assert_eq!(
            classify(4, &a4(HOST4), &a4("169.254.9.9"), true),
            Some(DropReason::MartianDst)
        );
        // The link's, not a routing error: left to drop_local.
        assert_eq!(classify(4, &a4(HOST4), &a4("255.255.255.255"), true), None);
        assert_eq!(classify(4, &a4(HOST4), &a4("224.0.0.9"), true), None);
        assert_eq!(classify(4, &a4(HOST4), &a4(SERVER4), true), None);
    }

    #[test]
    fn a_martian_source_wins_over_a_martian_destination() {
        assert_eq!(
            classify(4, &a4("127.0.0.1"), &a4("0.0.0.0"), true),
            Some(DropReason::MartianSrc)
        );
        assert_eq!(
            classify(6, &a6("::1"), &a6("::"), true),
            Some(DropReason::MartianSrc)
        );
    }

    #[test]
    fn every_ipv6_martian_source_class_is_refused_and_ordinary_ones_pass() {
        for s in [
            "::",
            "::1",
            "::127.0.0.1",
            "::10.0.0.2",
            "::ffff:10.0.0.2",
            "::ffff:127.0.0.1",
            "ff02::1",
            "ff05::2",
        ] {
            assert_eq!(
                classify(6, &a6(s), &a6(SERVER6), false),
                Some(DropReason::MartianSrc),
                "{s}"
            );
        }
        assert_eq!(
            classify(6, &a6("fe80::1"), &a6(SERVER6), true),
            Some(DropReason::MartianSrc)
        );
        assert_eq!(
            classify(6, &a6("febf::1"), &a6(SERVER6), true),
            Some(DropReason::MartianSrc)
        );
        assert_eq!(
            classify(6, &a6("fe80::1"), &a6("fd00:0:0:1::1"), false),
            None
        );
        for s in [
            HOST6,
            "2001:db8::1",
            "fec0::1",
            "64:ff9b::a00:2",
            "::1:0:0:1",
        ] {
            assert_eq!(classify(6, &a6(s), &a6(SERVER6), true), None, "{s}");
        }
    }

    #[test]
    fn every_ipv6_martian_destination_class_is_refused_but_not_multicast() {
        for d in ["::", "::1", "::198.51.100.7", "::ffff:198.51.100.7"] {
            assert_eq!(
                classify(6, &a6(HOST6), &a6(d), false),
                Some(DropReason::MartianDst),
                "{d}"
            );
        }
        assert_eq!(
            classify(6, &a6(HOST6), &a6("fe80::2"), true),
            Some(DropReason::MartianDst)
        );
        assert_eq!(classify(6, &a6(HOST6), &a6("fe80::2"), false), None);
        assert_eq!(classify(6, &a6(HOST6), &a6("ff02::1"), true), None);
        assert_eq!(classify(6, &a6(HOST6), &a6(SERVER6), true), None);
    }

    #[test]
    fn loose_and_strict_source_routes_are_found_among_other_options() {
        // LSRR with one hop, after a NOP.
        assert!(source_routed_v4(&[1, 0x83, 7, 4, 192, 0, 2, 9]));
        // SSRR first.
        assert!(source_routed_v4(&[0x89, 7, 4, 192, 0, 2, 9, 0]));
        // Router alert (4 bytes), then LSRR.
        assert!(source_routed_v4(&[0x94, 4, 0, 0, 0x83, 3, 4, 0]));
        // Record route (kind 7) and timestamp (kind 0x44) pass.
        assert!(!source_routed_v4(&[7, 7, 4, 0, 0, 0, 0, 0]));
        assert!(!source_routed_v4(&[0x44, 4, 5, 0]));
        // Router alert alone, NOPs, nothing.
        assert!(!source_routed_v4(&[0x94, 4, 0, 0]));
        assert!(!source_routed_v4(&[1, 1, 1, 1]));
        assert!(!source_routed_v4(&[]));
        // After end of list nothing counts.
        assert!(!source_routed_v4(&[0, 0x83, 3, 4]));
    }

    #[test]
    fn malformed_option_lists_end_the_walk_without_panicking() {
        assert!(!source_routed_v4(&[0x94]));
        assert!(!source_routed_v4(&[0x94, 0, 0x83, 3]));
        assert!(!source_routed_v4(&[0x94, 1, 0x83, 3]));
        assert!(!source_routed_v4(&[0x94, 200, 0x83, 3]));
    }
}
