//! Reassembly tests on real frames: datagrams built whole by the shared test-frame builder
//! (`wire::testframe`, checksums filled), cut into fragments as a sender's stack does, and fed to
//! [`Ipf::add`] in every order, with duplicates, overlaps, gaps, limits and expiry.

use super::*;
use crate::wire::checksum;
use crate::wire::parse::{parse_frame, proto, Fragment, L4Summary};
use crate::wire::testframe::{fragments, Frame, L4};
use proptest::prelude::*;

const SLOT: usize = 2048;

/// A whole IPv4 frame 10.0.0.1 -> 192.0.2.2 of protocol `p` carrying `l4` (identification
/// 0x1234, DF clear, checksums filled).
fn v4_whole(p: u8, l4: &[u8]) -> Vec<u8> {
    Frame::v4([10, 0, 0, 1], [192, 0, 2, 2], L4::raw(p, l4))
        .dont_frag(false)
        .build()
}

/// UDP 40000 -> 53 with `n` payload bytes.
fn udp(n: usize) -> Vec<u8> {
    let mut u = vec![0x9c, 0x40, 0, 53, 0, 0, 0, 0];
    u[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
    u.extend((0..n).map(|i| (i * 7 + 3) as u8));
    u
}

/// TCP 40000 -> 80, ACK|PSH, with `n` payload bytes.
fn tcp(n: usize) -> Vec<u8> {
    let mut t = vec![
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    t.extend((0..n).map(|i| (i * 5 + 1) as u8));
    t
}

/// A whole IPv6 frame fd00::1 -> fd00:0:0:2::2 with a hop-by-hop header and a
/// destination-options header before protocol `p` carrying `l4`.
fn v6_whole(p: u8, l4: &[u8]) -> Vec<u8> {
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    Frame::v6(a("fd00::1"), a("fd00:0:0:2::2"), L4::raw(p, l4))
        .ext_headers(&[0, 60])
        .build()
}

fn ipf() -> Ipf {
    Ipf::with_capacity(FragSettings::default(), 64, SLOT).unwrap()
}

/// Feeds `frame` at `now`.
fn add<'a>(ipf: &'a Ipf, frame: &[u8], now: u64) -> Outcome<'a> {
    let p = parse_frame(frame).expect("fragment parses");
    assert_ne!(p.fragment, Fragment::None);
    ipf.add(frame, &p, 0, now)
}

/// The fragments a completed datagram hands back, as owned frames.
fn frames_of(d: &Datagram<'_>) -> Vec<Vec<u8>> {
    (0..d.len())
        .map(|i| d.fragment(i).unwrap().to_vec())
        .collect()
}

/// Feeds every frame; returns the completed datagram's summary and fragments, and checks
/// that only the last one fed completed it.
fn feed_all(ipf: &Ipf, frames: &[Vec<u8>]) -> (DatagramSummary, Vec<Vec<u8>>) {
    let (last, rest) = frames.split_last().unwrap();
    for f in rest {
        assert!(matches!(add(ipf, f, 0), Outcome::Held));
    }
    match add(ipf, last, 0) {
        Outcome::Complete(d) => (d.summary, frames_of(&d)),
        o => panic!("not complete: {o:?}"),
    }
}

#[test]
fn ipv4_udp_in_order_completes_with_the_datagrams_length_and_checksum() {
    let whole = v4_whole(proto::UDP, &udp(3992));
    let frags = fragments(&whole, 1480, 0x1234);
    assert_eq!(frags.len(), 3);
    let ipf = ipf();
    let (s, out) = feed_all(&ipf, &frags);
    assert_eq!(out, frags, "original fragments, in order, byte for byte");
    assert_eq!(s.parsed.fragment, Fragment::None);
    assert_eq!(s.parsed.l4_len, 4000);
    assert_eq!(s.ip_len, 4020);
    assert_eq!(
        s.parsed.l4,
        L4Summary::Udp {
            sport: 40000,
            dport: 53
        }
    );
    assert!(s.l4_checksum_ok);
    let st = ipf.status();
    assert_eq!((st.v4.accepted, st.v4.completed), (3, 3));
    assert_eq!(st.n_frags, 0, "slots returned when the datagram is dropped");
    assert_eq!(ipf.table.store.in_use(), 0);
}

#[test]
fn ipv4_tcp_summary_carries_the_whole_payload_length() {
    let whole = v4_whole(proto::TCP, &tcp(5000));
    let frags = fragments(&whole, 1480, 0x1234);
    let (s, _) = feed_all(&ipf(), &frags);
    match s.parsed.l4 {
        L4Summary::Tcp(t) => {
            assert_eq!(t.payload_len, 5000);
            assert_eq!((t.sport, t.dport), (40000, 80));
        }
        l4 => panic!("{l4:?}"),
    }
    assert!(s.l4_checksum_ok);
}

#[test]
fn ipv4_icmp_echo_of_a_large_ping_completes() {
    let mut echo = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    echo.extend((0..3000).map(|i| i as u8));
    let whole = v4_whole(proto::ICMP, &echo);
    let (s, out) = feed_all(&ipf(), &fragments(&whole, 1480, 0x1234));
    assert_eq!(out.len(), 3);
    assert!(s.l4_checksum_ok);
    assert!(matches!(s.parsed.l4, L4Summary::Icmp(i) if i.id == 0x1234 && i.icmp_type == 8));
}

#[test]
fn a_corrupted_later_fragment_fails_the_whole_datagram_checksum() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let mut frags = fragments(&whole, 1480, 0x1234);
    frags[2][40] ^= 0x01;
    let (s, _) = feed_all(&ipf(), &frags);
    assert!(!s.l4_checksum_ok);
}

#[test]
fn ipv6_with_extension_headers_before_the_fragment_header_completes_out_of_order() {
    let whole = v6_whole(proto::UDP, &udp(3000));
    let mut frags = fragments(&whole, 1232, 0xabcd);
    assert_eq!(frags.len(), 3);
    frags.reverse();
    let ipf = ipf();
    let (s, out) = feed_all(&ipf, &frags);
    frags.reverse();
    assert_eq!(out, frags);
    assert_eq!(
        s.parsed.l4_len, 3008,
        "L4 length excludes the destination options"
    );
    assert_eq!(s.ip_len, 40 + 8 + 8 + 3008);
    assert!(s.l4_checksum_ok);
    assert_eq!(ipf.status().v6.completed, 3);
    assert_eq!(ipf.status().v4.accepted, 0);
}

#[test]
fn a_duplicate_is_dropped_and_the_datagram_still_completes() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    let ipf = ipf();
    assert!(matches!(add(&ipf, &frags[1], 0), Outcome::Held));
    assert!(matches!(
        add(&ipf, &frags[1], 0),
        Outcome::Refused(Refusal::Duplicate)
    ));
    assert!(matches!(add(&ipf, &frags[0], 0), Outcome::Held));
    assert!(matches!(add(&ipf, &frags[2], 0), Outcome::Complete(_)));
    let st = ipf.status().v4;
    assert_eq!((st.accepted, st.duplicate, st.completed), (3, 1, 3));
}

#[test]
fn overlapping_by_one_octet_drops_the_whole_datagram() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    // A second fragment that starts 8 bytes early (the smallest overlap IPv4 can state).
    let early = fragments(&whole, 1472, 0x1234)[1].clone();
    assert_eq!(early[20..22], [0x20, 0xb8]); // offset 1472, MF
    let ipf = ipf();
    assert!(matches!(add(&ipf, &frags[0], 0), Outcome::Held));
    assert!(matches!(
        add(&ipf, &early, 0),
        Outcome::Refused(Refusal::Overlapped)
    ));
    assert_eq!(ipf.n_frags(), 0, "the held first fragment went with it");
    // What remains no longer completes anything.
    assert!(matches!(add(&ipf, &frags[1], 0), Outcome::Held));
    assert!(matches!(add(&ipf, &frags[2], 0), Outcome::Held));
    let st = ipf.status().v4;
    assert_eq!(st.overlapped, 2);
    assert_eq!(st.completed, 0);
}

#[test]
fn a_later_fragment_rewriting_the_tcp_header_is_an_overlap() {
    // RFC 1858: offset 8 over a first fragment that holds the TCP header.
    let whole = v4_whole(proto::TCP, &tcp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    let mut attack = frags[2].clone();
    attack[20..22].copy_from_slice(&0x0001u16.to_be_bytes()); // offset 8, last
    let c = {
        attack[24..26].copy_from_slice(&[0, 0]);
        !checksum::data(&attack[14..34])
    };
    attack[24..26].copy_from_slice(&c.to_be_bytes());
    let ipf = ipf();
    assert!(matches!(add(&ipf, &frags[0], 0), Outcome::Held));
    assert!(matches!(
        add(&ipf, &attack, 0),
        Outcome::Refused(Refusal::Overlapped)
    ));
}

#[test]
fn a_second_last_fragment_with_another_end_drops_the_datagram() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    let shorter = fragments(&v4_whole(proto::UDP, &udp(2990)), 1480, 0x1234);
    let ipf = ipf();
    assert!(matches!(add(&ipf, &frags[2], 0), Outcome::Held));
    assert!(matches!(
        add(&ipf, &shorter[2], 0),
        Outcome::Refused(Refusal::Overlapped)
    ));
}

#[test]
fn non_last_fragments_below_the_minimum_are_too_small_the_last_is_not() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let small = fragments(&whole, 1176, 0x1234); // 1196-byte IP packets < 1200
    let ipf = ipf();
    assert!(matches!(
        add(&ipf, &small[0], 0),
        Outcome::Refused(Refusal::TooSmall)
    ));
    let last = small.last().unwrap();
    assert!(last.len() - 14 < 1200);
    assert!(matches!(add(&ipf, last, 0), Outcome::Held));
    assert_eq!(ipf.status().v4.too_small, 1);
    // At the clamp the same fragments are fine.
    ipf.set_min_frag(Family::V4, 400).unwrap();
    assert!(matches!(add(&ipf, &small[0], 0), Outcome::Held));
    assert_eq!(
        ipf.set_min_frag(Family::V4, 399),
        Err(SettingError::MinFrag(399))
    );
    assert_eq!(ipf.settings().min_frag_v4, 400);
}

#[test]
fn ipv6_minimum_is_1280_by_default() {
    let whole = v6_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1200, 1); // 40 + 8 + 8 + 1200 = 1256 < 1280
    let ipf = ipf();
    assert!(matches!(
        add(&ipf, &frags[0], 0),
        Outcome::Refused(Refusal::TooSmall)
    ));
    assert_eq!(ipf.status().v6.too_small, 1);
}

#[test]
fn a_gap_never_completes_and_expires_after_the_timeout() {
    let whole = v4_whole(proto::UDP, &udp(4400));
    let frags = fragments(&whole, 1480, 0x1234);
    assert_eq!(frags.len(), 3);
    let ipf = ipf();
    assert!(matches!(add(&ipf, &frags[0], 1_000), Outcome::Held));
    assert!(matches!(add(&ipf, &frags[2], 1_000), Outcome::Held));
    assert_eq!(ipf.expire(15_999, ipf.n_buckets()), 0, "not yet 15 s");
    assert_eq!(ipf.n_frags(), 2);
    assert_eq!(ipf.expire(16_000, ipf.n_buckets()), 2);
    assert_eq!(ipf.n_frags(), 0);
    assert_eq!(ipf.status().v4.expired, 2);
    // The missing piece now starts a new datagram instead of completing the old one.
    assert!(matches!(add(&ipf, &frags[1], 16_000), Outcome::Held));
}

#[test]
fn a_fragment_after_the_timeout_finds_its_datagram_expired() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    let ipf = ipf();
    assert!(matches!(add(&ipf, &frags[0], 0), Outcome::Held));
    assert!(matches!(add(&ipf, &frags[1], 15_000), Outcome::Held));
    assert!(matches!(add(&ipf, &frags[2], 15_000), Outcome::Held));
    assert_eq!(ipf.status().v4.expired, 1);
}

#[test]
fn past_max_frags_the_oldest_incomplete_datagram_is_purged() {
    let ipf = Ipf::with_capacity(
        FragSettings {
            max_frags: 4,
            ..FragSettings::default()
        },
        64,
        SLOT,
    )
    .unwrap();
    let whole = v4_whole(proto::UDP, &udp(6000));
    let with_id = |id: u16| fragments(&whole, 1480, u32::from(id));
    let (a, b, c) = (with_id(1), with_id(2), with_id(3));
    for (t, f) in [(0, &a[0]), (1, &a[1]), (2, &b[0]), (3, &b[1])] {
        assert!(matches!(add(&ipf, f, t), Outcome::Held));
    }
    assert_eq!(ipf.n_frags(), 4);
    assert!(matches!(add(&ipf, &c[0], 4), Outcome::Held));
    assert_eq!(
        ipf.status().v4.purged,
        2,
        "datagram 1 (two fragments) purged"
    );
    assert_eq!(ipf.n_frags(), 3);
    // Datagram 2 is still held, datagram 1 is not.
    assert!(matches!(
        add(&ipf, &b[1], 5),
        Outcome::Refused(Refusal::Duplicate)
    ));
    assert!(matches!(add(&ipf, &a[1], 5), Outcome::Held));
    assert_eq!(ipf.status().v4.purged, 2);
    assert_eq!(ipf.n_frags(), 4);
    assert_eq!(ipf.set_max_frags(5001), Err(SettingError::MaxFrags(5001)));
}

#[test]
fn disabled_family_is_refused_and_not_counted() {
    let ipf = ipf();
    ipf.set_enabled(Family::V4, false);
    let whole = v4_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    assert!(matches!(
        add(&ipf, &frags[0], 0),
        Outcome::Refused(Refusal::Disabled)
    ));
    assert_eq!(ipf.status().v4, FamilyStats::default());
    let v6 = fragments(&v6_whole(proto::UDP, &udp(3000)), 1232, 9);
    assert!(matches!(add(&ipf, &v6[0], 0), Outcome::Held));
}

#[test]
fn a_non_last_fragment_not_a_multiple_of_8_is_invalid() {
    let whole = v4_whole(proto::UDP, &udp(3000));
    let mut f = fragments(&whole, 1480, 0x1234)[0].clone();
    f.pop();
    f[16..18].copy_from_slice(&1499u16.to_be_bytes());
    let ipf = ipf();
    assert!(matches!(
        add(&ipf, &f, 0),
        Outcome::Refused(Refusal::Invalid)
    ));
    assert_eq!(ipf.status().v4.invalid, 1);
}

#[test]
fn datagrams_spread_over_threads_each_complete_once() {
    let ipf = Ipf::with_capacity(FragSettings::default(), 5000, SLOT).unwrap();
    let datagrams: Vec<Vec<Vec<u8>>> = (0..200u16)
        .map(|id| fragments(&v4_whole(proto::UDP, &udp(4000)), 1480, u32::from(id)))
        .collect();
    let completed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..3usize {
            let (ipf, datagrams, completed) = (&ipf, &datagrams, &completed);
            s.spawn(move || {
                for d in datagrams {
                    // Thread t gets fragment t of every datagram: never the same worker.
                    if let Outcome::Complete(dg) = add(ipf, &d[t], 0) {
                        assert!(dg.summary.l4_checksum_ok);
                        assert_eq!(frames_of(&dg), *d);
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(completed.load(Ordering::Relaxed), 200);
    assert_eq!(ipf.n_frags(), 0);
    assert_eq!(ipf.status().v4.completed, 600);
}

fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

proptest! {
    #[test]
    fn every_order_of_a_datagrams_fragments_gives_the_same_result(
        v6 in any::<bool>(),
        payload in 2000usize..9000,
        order in permutation(7),
        dups in proptest::collection::vec(0usize..7, 0..4),
    ) {
        let frags = if v6 {
            fragments(&v6_whole(proto::UDP, &udp(payload)), 1232, 77)
        } else {
            fragments(&v4_whole(proto::UDP, &udp(payload)), 1480, 0x1234)
        };
        let n = frags.len();
        let order: Vec<usize> = order.into_iter().filter(|&i| i < n).collect();
        prop_assume!(order.len() == n);
        let ipf = ipf();
        let mut done = None;
        for (k, &i) in order.iter().enumerate() {
            let before = dups.iter().filter(|&&d| d == k).count();
            for _ in 0..before {
                if k > 0 {
                    // A copy of something already held.
                    let o = add(&ipf, &frags[order[k - 1]], 0);
                    prop_assert!(matches!(o, Outcome::Refused(Refusal::Duplicate)));
                }
            }
            match add(&ipf, &frags[i], 0) {
                Outcome::Held => prop_assert!(k + 1 < n),
                Outcome::Complete(d) => {
                    prop_assert_eq!(k + 1, n);
                    done = Some((d.summary, frames_of(&d)));
                }
                Outcome::Refused(r) => prop_assert!(false, "refused {:?}", r),
            }
        }
        let (s, out) = done.unwrap();
        prop_assert_eq!(out, frags);
        prop_assert!(s.l4_checksum_ok);
        prop_assert_eq!(usize::from(s.parsed.l4_len), 8 + payload);
        prop_assert_eq!(ipf.n_frags(), 0);
    }
}

#[test]
fn get_status_prints_ovs_block_and_lists() {
    let ipf = ipf();
    let whole = v4_whole(proto::UDP, &udp(3000));
    let frags = fragments(&whole, 1480, 0x1234);
    assert!(matches!(add(&ipf, &frags[0], 0), Outcome::Held));
    let s = ipf.status();
    assert_eq!(
        format::status(&s, None),
        "        Fragmentation Module Status\n\
         \x20       ---------------------------\n\
         \x20       v4 enabled: 1\n\
         \x20       v6 enabled: 1\n\
         \x20       max num frags (v4/v6): 1000\n\
         \x20       num frag: 1\n\
         \x20       min v4 frag size: 1200\n\
         \x20       v4 frags accepted: 1\n\
         \x20       v4 frags completed: 0\n\
         \x20       v4 frags expired: 0\n\
         \x20       v4 frags too small: 0\n\
         \x20       v4 frags overlapped: 0\n\
         \x20       v4 frags purged: 0\n\
         \x20       min v6 frag size: 1280\n\
         \x20       v6 frags accepted: 0\n\
         \x20       v6 frags completed: 0\n\
         \x20       v6 frags expired: 0\n\
         \x20       v6 frags too small: 0\n\
         \x20       v6 frags overlapped: 0\n\
         \x20       v6 frags purged: 0\n"
    );
    let more = format::status(&s, Some(&ipf.lists()));
    assert!(more.ends_with(
        "\n        Fragment Lists:\n\n\
         (src=10.0.0.1,dst=192.0.2.2,recirc_id=0,ip_id=4660,dl_type=0x800,zone=0,nw_proto=17,num_fragments=1,state=first frag)\n"
    ), "{more}");
}

#[test]
fn a_detached_datagram_keeps_its_slots_until_attached_and_dropped() {
    let ipf = ipf();
    let frags = fragments(&v4_whole(proto::UDP, &udp(3000)), 1480, 0x1234);
    let _ = add(&ipf, &frags[0], 0);
    let _ = add(&ipf, &frags[1], 0);
    let Outcome::Complete(d) = add(&ipf, &frags[2], 0) else {
        panic!()
    };
    let det = d.detach();
    assert_eq!(ipf.n_frags(), 3);
    assert_eq!(ipf.table.store.in_use(), 3);
    let d = ipf.attach(det);
    assert_eq!(frames_of(&d), frags);
    drop(d);
    assert_eq!((ipf.n_frags(), ipf.table.store.in_use()), (0, 0));
}

/// The shared test-frame builder's splitter (what the OVS differential test feeds both
/// trackers): IPv4 with options and IPv6 with Hop-by-Hop, Routing and two Destination
/// Options headers come back whole, in any order, as the original datagram's summary.
#[test]
fn testframe_fragments_reassemble_to_the_original_datagram() {
    use crate::wire::testframe::{fragments, Frame, L4};
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 13 + 5) as u8).collect();
    let mut a6 = [0u8; 16];
    a6[..2].copy_from_slice(&[0xfd, 0x01]);
    let mut b6 = a6;
    a6[15] = 1;
    b6[15] = 2;
    let wholes = [
        Frame::v4([10, 1, 0, 1], [192, 0, 2, 2], L4::udp(40000, 53, &payload))
            .ip_options(&[1, 1, 1, 0])
            .build(),
        Frame::v6(a6, b6, L4::udp(40000, 53, &payload))
            .ext_headers(&[0, 60, 43, 60])
            .build(),
    ];
    for whole in &wholes {
        let want = parse_frame(whole).unwrap();
        let mut frags = fragments(whole, 1280, 77);
        assert_eq!(frags.len(), 3, "3000 bytes in 1280-byte pieces");
        frags.reverse();
        let ipf = ipf();
        let (summary, out) = feed_all(&ipf, &frags);
        assert!(summary.l4_checksum_ok);
        assert_eq!(summary.parsed.l4, want.l4);
        assert_eq!(summary.parsed.l4_len, want.l4_len);
        // In datagram order, as cut.
        frags.reverse();
        assert_eq!(out, frags);
        // The extension headers before the Routing header stay unfragmentable (IPv6).
        if want.family == crate::wire::parse::Family::V6 {
            assert_eq!(&frags[1][14 + 6..14 + 7], &[0]);
            assert_eq!(
                frags[1][14 + 40 + 16],
                44,
                "fragment header after HBH, DO, RH"
            );
        }
    }
}
