//! Minimal packet sequences for each difference the differential test found
//! (docs/ovs-differences.md), run through OVS and `ctgate-perf replay` like the random
//! traces. OVS's verdicts are pinned (what Open vSwitch 3.1 prints: the evidence for the
//! documentation); ctgate's must equal OVS's, except where it differs on purpose (X1, X5).
//! D1–D6 were tracker differences, fixed since; their scenarios keep them fixed.

use super::gen::{self, ip, packet, tcpf, Framing, Trace};
use super::{flags_of, quote_of, run_both, Case};
use ctgate::wire::frame_checksums::verify_frame;
use ctgate::wire::testframe::L4;

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: &str,
    sp: u16,
    dst: &str,
    dp: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
) -> Vec<u8> {
    let payload = vec![0x61; len];
    packet(
        src,
        dst,
        L4::tcp(sp, dp, seq, ack, flags, &payload).window(29200),
    )
}

fn udp(src: &str, sp: u16, dst: &str, dp: u16) -> Vec<u8> {
    packet(src, dst, L4::udp(sp, dp, b"hello"))
}

fn icmp(src: &str, dst: &str, ty: u8, code: u8, id: u16, seq: u16) -> Vec<u8> {
    let rest = u32::from(id) << 16 | u32::from(seq);
    packet(src, dst, L4::icmp(ty, code, rest, b"ping"))
}

fn sctp(src: &str, sp: u16, dst: &str, dp: u16) -> Vec<u8> {
    // gen's DATA chunk behind the common header; the builder fills the CRC32c.
    let packet_bytes = gen::sctp_data(sp, dp, 7, b"chunk");
    packet(src, dst, L4::raw(132, &packet_bytes))
}

/// The SNAT port ctgate gives a second association from another inside host on the same
/// ports (the first keeps its port): its second reply-tuple candidate.
fn second_snat_port(src: &str, sp: u16, dst: &str, dp: u16, pool: &str) -> u16 {
    use ctgate::conntrack::key::ip_to_addr;
    use ctgate::conntrack::{ConnKey, ReplyTuples};
    let spec = ctgate::nat::NatSpec::snat(pool.parse().unwrap());
    let orig = ConnKey {
        src: ip_to_addr(ip(src)).0,
        dst: ip_to_addr(ip(dst)).0,
        sport: sp,
        dport: dp,
        zone: 0,
        proto: 132,
        family: 4,
    };
    spec.candidate(&orig, 1).unwrap().dport
}

/// An ICMP error from `src` to `dst` quoting the first `cut` bytes of `about`'s IP packet.
fn error(src: &str, dst: &str, ty: u8, code: u8, about: &[u8], cut: usize) -> Vec<u8> {
    let q = gen::ip_of(about, &Framing::default());
    let q = &q[..cut.min(q.len())];
    packet(src, dst, L4::icmp(ty, code, 0, q))
}

/// One packet of a scenario and what each side says.
struct Step {
    frame: Vec<u8>,
    what: &'static str,
    /// OVS 3.1's verdict (pinned).
    ovs: &'static str,
    /// ctgate's verdict where it differs on purpose (`None`: the same as OVS's).
    differs: Option<&'static str>,
    /// NAT cases: the destination address of the output frame, OVS's and ctgate's.
    dst: Option<(&'static str, &'static str)>,
}

struct Scenario {
    name: &'static str,
    difference: &'static str,
    nat: Option<bool>,
    dnat: Option<(&'static str, &'static str)>,
    steps: Vec<Step>,
}

/// A step on which ctgate says what OVS says.
fn step(frame: Vec<u8>, what: &'static str, ovs: &'static str) -> Step {
    Step {
        frame,
        what,
        ovs,
        differs: None,
        dst: None,
    }
}

impl Step {
    /// ctgate's verdict, where it differs on purpose.
    fn differs(mut self, ctgate: &'static str) -> Step {
        self.differs = Some(ctgate);
        self
    }

    /// Pins where each side sends the packet (NAT cases).
    fn to(mut self, ovs: &'static str, ctgate: &'static str) -> Step {
        self.dst = Some((ovs, ctgate));
        self
    }
}

fn scenarios() -> Vec<Scenario> {
    use tcpf::{ACK, FIN, PSH, RST, SYN};
    let (a, b) = ("10.1.0.1", "192.0.2.1");
    let (c, public, server) = ("192.0.2.7", "198.51.100.200", "10.1.0.50");
    let pool = "203.0.113.200";
    let (a6, b6, r6, pool6) = (
        "fd01::1",
        "2001:db8::1",
        "2001:db8:ffff::1",
        "2001:db8:ff00::1",
    );
    let syn6 = tcp(a6, 40000, b6, 80, 1000, 0, SYN, 0);
    let v6_conn_syn = tcp(a6, 40001, b6, 80, 5000, 0, SYN, 0);
    let nat6_synack = tcp(b6, 80, pool6, 40002, 9000, 7001, SYN | ACK, 0);
    let nat6_syn = tcp(a6, 40002, b6, 80, 7000, 0, SYN, 0);
    // The SYN as it left the gateway (translated), which an outside router quotes.
    let nat6_syn_out = tcp(pool6, 40002, b6, 80, 7000, 0, SYN, 0);
    // B's SYN+ACK as the inside host got it (translated back).
    let nat6_synack_in = tcp(b6, 80, a6, 40002, 9000, 7001, SYN | ACK, 0);
    let nat6_data_out = tcp(pool6, 40002, b6, 80, 7001, 9001, ACK | PSH, 600);
    let mut broken = sctp(a, 5000, b, 9899);
    let last = broken.len() - 1;
    broken[last] ^= 0x5a; // in the DATA chunk's padding: the CRC32c no longer matches
    let (a2, sp2) = (
        "10.1.0.2",
        second_snat_port("10.1.0.2", 5000, b, 9899, pool),
    );
    let reply_b = sctp(b, 9899, pool, sp2);
    // A's SYN to B:80 from `port`, retransmitted, B's SYN+ACK (ISN `isn`), A's ACK.
    let syn_twice = |port: u16, isn: u32, synack: &'static str| {
        let syn = || tcp(a, port, b, 80, 1000, 0, SYN, 0);
        vec![
            step(syn(), "SYN", "trk,new"),
            step(syn(), "SYN retransmitted", "trk,new"),
            step(
                tcp(b, 80, a, port, isn, 1001, SYN | ACK, 0),
                synack,
                "trk,est,rpl",
            ),
            step(tcp(a, port, b, 80, 1001, isn + 1, ACK, 0), "ACK", "trk,est"),
        ]
    };
    // A's handshake with B:80 from `port` through the SNAT pool.
    let snat_handshake = |port: u16| {
        vec![
            step(
                tcp(a, port, b, 80, 100, 0, SYN, 0),
                "SYN A>B",
                "trk,new,snat",
            ),
            step(
                tcp(b, 80, pool, port, 500, 101, SYN | ACK, 0),
                "SYN+ACK",
                "trk,est,rpl,dnat",
            ),
            step(tcp(a, port, b, 80, 101, 501, ACK, 0), "ACK", "trk,est,snat"),
        ]
    };
    vec![
        Scenario {
            name: "sctp-two-associations",
            difference: "X5",
            nat: None,
            dnat: None,
            steps: vec![
                step(sctp(a, 5000, b, 9899), "SCTP A:5000>B:9899", "trk,new"),
                step(sctp(b, 9899, a, 5000), "SCTP B>A:5000", "trk,est,rpl"),
                step(
                    sctp(a, 5001, b, 9899),
                    "SCTP A:5001>B:9899, a second association",
                    "trk,est",
                )
                .differs("trk,new"),
                step(sctp(b, 9899, a, 5001), "SCTP B>A:5001", "trk,est,rpl"),
                step(broken, "SCTP A:5000>B:9899 with a wrong CRC32c", "trk,est")
                    .differs("trk,inv"),
            ],
        },
        Scenario {
            name: "sctp-snat-two-hosts",
            difference: "X5",
            nat: Some(false),
            dnat: None,
            steps: vec![
                step(sctp(a, 5000, b, 9899), "SCTP A:5000>B:9899", "trk,new,snat")
                    .to("192.0.2.1", "192.0.2.1"),
                step(
                    sctp(a2, 5000, b, 9899),
                    "SCTP A2:5000>B:9899 (another inside host, same ports)",
                    "trk,new",
                )
                .differs("trk,new,snat")
                .to("192.0.2.1", "192.0.2.1"),
                step(
                    sctp(b, 9899, pool, 5000),
                    "SCTP B>pool:5000 (to A)",
                    "trk,est,rpl,dnat",
                )
                .to("10.1.0.1", "10.1.0.1"),
                step(
                    reply_b,
                    "SCTP B>pool:P, P the port ctgate gave A2",
                    "trk,est,rpl,dnat",
                )
                .to("10.1.0.1", "10.1.0.2"),
            ],
        },
        Scenario {
            name: "udp-one-way",
            difference: "D1",
            nat: None,
            dnat: None,
            steps: vec![
                step(udp(a, 1000, b, 53), "UDP A>B", "trk,new"),
                step(udp(a, 1000, b, 53), "UDP A>B again", "trk,new"),
                step(udp(a, 1000, b, 53), "UDP A>B a third time", "trk,new"),
                step(udp(b, 53, a, 1000), "UDP B>A (reply)", "trk,est,rpl"),
                step(udp(a, 1000, b, 53), "UDP A>B", "trk,est"),
            ],
        },
        Scenario {
            name: "icmp-echo-repeated",
            difference: "D2",
            nat: None,
            dnat: None,
            steps: vec![
                step(icmp(a, b, 8, 0, 7, 1), "echo request", "trk,new"),
                step(
                    icmp(a, b, 8, 0, 7, 2),
                    "echo request, same id, no reply yet",
                    "trk,new",
                ),
                step(icmp(b, a, 0, 0, 7, 2), "echo reply", "trk,est,rpl"),
                step(icmp(a, b, 8, 0, 7, 3), "echo request", "trk,est"),
            ],
        },
        Scenario {
            name: "tcp-syn-retransmitted",
            difference: "D3",
            nat: None,
            dnat: None,
            steps: syn_twice(2000, 0xf000_0000, "SYN+ACK")
                .into_iter()
                .chain([step(
                    tcp(b, 80, a, 2000, 0xf000_0001, 1001, ACK | PSH, 100),
                    "data B>A in window",
                    "trk,est,rpl",
                )])
                .collect(),
        },
        Scenario {
            name: "tcp-syn-retransmitted-breaks-window",
            difference: "D3",
            nat: None,
            dnat: None,
            steps: syn_twice(2002, 0x9000_0000, "SYN+ACK, ISN 0x90000000")
                .into_iter()
                .chain([
                    step(
                        tcp(b, 80, a, 2002, 0xd000_0001, 1001, ACK | PSH, 10),
                        "B>A seq 1 GiB ahead (out of window)",
                        "trk,inv",
                    ),
                    step(
                        tcp(b, 80, a, 2002, 0x9000_0001, 1001, ACK | PSH, 100),
                        "B>A data in window",
                        "trk,est,rpl",
                    ),
                ])
                .collect(),
        },
        Scenario {
            name: "tcp-syn-from-reply-side-after-pickup",
            difference: "D3",
            nat: None,
            dnat: None,
            steps: vec![
                step(
                    tcp(b, 80, a, 2001, 5000, 3000, ACK, 0),
                    "ACK B>A (mid-stream pick-up: B is the originator)",
                    "trk,new",
                ),
                step(
                    tcp(a, 2001, b, 80, 9000, 0, SYN, 0),
                    "SYN A>B (reply side, new ISN)",
                    "trk,new",
                ),
            ],
        },
        Scenario {
            name: "icmp-echo-code-1",
            difference: "D4",
            nat: None,
            dnat: None,
            steps: vec![
                step(
                    icmp(a, b, 8, 1, 9, 1),
                    "echo request with code 1",
                    "trk,inv",
                ),
                step(
                    icmp(a6, b6, 128, 1, 9, 1),
                    "ICMPv6 echo request with code 1",
                    "trk,inv",
                ),
            ],
        },
        Scenario {
            name: "snat-reply-flags",
            difference: "D5",
            nat: Some(false),
            dnat: None,
            steps: vec![
                step(
                    udp(a, 1000, b, 53),
                    "UDP A>B (SNAT to the pool)",
                    "trk,new,snat",
                ),
                step(
                    udp(b, 53, pool, 1000),
                    "UDP B>pool (reply, un-SNAT)",
                    "trk,est,rpl,dnat",
                ),
                step(
                    error(b, pool, 3, 3, &udp(pool, 1000, b, 53), 100),
                    "ICMP port unreachable B>pool about A>B",
                    "trk,rel,rpl,dnat",
                ),
            ],
        },
        Scenario {
            name: "snat-invalid",
            difference: "D6",
            nat: Some(false),
            dnat: None,
            steps: snat_handshake(3000)
                .into_iter()
                .chain([
                    step(
                        tcp(a, 3000, b, 80, 101, 501, SYN | FIN, 0),
                        "SYN+FIN A>B (invalid flags)",
                        "trk,inv,snat",
                    ),
                    step(
                        tcp(b, 80, pool, 3000, 9999, 101, RST, 0),
                        "RST B>pool, wrong seq",
                        "trk,inv,dnat",
                    ),
                ])
                .collect(),
        },
        Scenario {
            name: "icmpv6-error-short-tcp-quote",
            difference: "X1",
            nat: None,
            dnat: None,
            steps: vec![
                step(syn6.clone(), "SYN A>B (IPv6)", "trk,new"),
                step(
                    error(r6, a6, 3, 0, &syn6, 48),
                    "time exceeded quoting 40+8 bytes",
                    "trk,inv",
                )
                .differs("trk,rel,rpl"),
                step(
                    error(r6, a6, 3, 0, &syn6, 60),
                    "time exceeded quoting 40+20 bytes",
                    "trk,rel,rpl",
                ),
                step(
                    v6_conn_syn.clone(),
                    "SYN A>B (IPv6, another port)",
                    "trk,new",
                ),
            ],
        },
        Scenario {
            name: "snat-v6-icmp-errors",
            difference: "X2",
            nat: Some(true),
            dnat: None,
            steps: vec![
                step(nat6_syn, "SYN A>B (SNAT to the pool)", "trk,new,snat"),
                step(nat6_synack, "SYN+ACK B>pool", "trk,est,rpl,dnat"),
                step(
                    error(r6, pool6, 3, 0, &nat6_syn_out, 500),
                    "time exceeded from a router about the SYN (whole quote)",
                    "trk,rel,rpl,dnat",
                ),
                step(
                    error(r6, pool6, 2, 0, &nat6_data_out, 500),
                    "packet too big about 600 bytes of data (quote cut at 500)",
                    "trk,rel,rpl,dnat",
                ),
                step(
                    error(a6, b6, 1, 4, &nat6_synack_in, 500),
                    "port unreachable from A about the SYN+ACK",
                    "trk,rel,snat",
                ),
            ],
        },
        Scenario {
            name: "snat-port-reuse",
            difference: "X3",
            nat: Some(false),
            dnat: None,
            steps: snat_handshake(4000)
                .into_iter()
                .chain([
                    step(
                        tcp(a, 4000, b, 80, 101, 501, FIN | ACK, 0),
                        "FIN A>B",
                        "trk,est,snat",
                    ),
                    step(
                        tcp(b, 80, pool, 4000, 501, 102, ACK, 0),
                        "ACK",
                        "trk,est,rpl,dnat",
                    ),
                    step(
                        tcp(b, 80, pool, 4000, 501, 102, FIN | ACK, 0),
                        "FIN B>pool",
                        "trk,est,rpl,dnat",
                    ),
                    step(tcp(a, 4000, b, 80, 102, 502, ACK, 0), "ACK", "trk,est,snat"),
                    step(
                        tcp(a, 4000, b, 80, 90_000, 0, SYN, 0),
                        "SYN A>B, same ports (port reuse)",
                        "trk,new,snat",
                    ),
                ])
                .collect(),
        },
        Scenario {
            name: "dnat-port-forward",
            difference: "D5",
            nat: None,
            dnat: Some(("198.51.100.200", "10.1.0.50:8080")),
            steps: vec![
                step(
                    tcp(c, 33000, public, 80, 100, 0, SYN, 0),
                    "SYN client>public:80 (DNAT to 10.1.0.50:8080)",
                    "trk,new,dnat",
                ),
                step(
                    tcp(server, 8080, c, 33000, 700, 101, SYN | ACK, 0),
                    "SYN+ACK server>client",
                    "trk,est,rpl,snat",
                ),
                step(
                    tcp(c, 33000, public, 80, 101, 701, ACK, 0),
                    "ACK",
                    "trk,est,dnat",
                ),
                step(
                    tcp(server, 8080, c, 33000, 701, 101, ACK | PSH, 50),
                    "data server>client",
                    "trk,est,rpl,snat",
                ),
                step(
                    error(
                        c,
                        public,
                        3,
                        3,
                        &tcp(public, 80, c, 33000, 701, 101, ACK | PSH, 50),
                        100,
                    ),
                    "ICMP port unreachable client>public about the data",
                    "trk,rel,dnat",
                ),
                step(
                    error(
                        "10.1.255.1",
                        c,
                        11,
                        0,
                        &tcp(c, 33000, server, 8080, 101, 751, ACK, 0),
                        100,
                    ),
                    "ICMP time exceeded from an inside router about the client's ACK",
                    "trk,rel,rpl,snat",
                ),
                step(
                    icmp(c, public, 8, 0, 77, 1),
                    "echo request client>public",
                    "trk,new,dnat",
                ),
                step(
                    icmp(server, c, 0, 0, 77, 1),
                    "echo reply server>client",
                    "trk,est,rpl,snat",
                ),
            ],
        },
    ]
}

#[test]
fn ovs_diff_scenarios() {
    if super::skip_requested() {
        return;
    }
    if let Err(e) = super::ovs::available() {
        panic!("ovs_diff: {e}. Set CTGATE_SKIP_OVS_DIFF=1 to skip this test knowingly.");
    }
    let mut failures = String::new();
    for sc in scenarios() {
        let mut trace = Trace::default();
        for (i, st) in sc.steps.iter().enumerate() {
            let ts = gen::BASE_TS_MS + i as u64;
            trace.push_tick(ts, st.frame.clone(), st.what.to_string(), None);
        }
        let case = Case {
            name: sc.name,
            seed: 0,
            packets: 0,
            nat: sc.nat,
            dnat: sc.dnat,
            gaps: false,
            tcp_seq_check: true,
            zone: 0,
            frags: false,
        };
        let both = run_both(&trace, &case);
        eprintln!("scenario {} ({}):", sc.name, sc.difference);
        for (i, st) in sc.steps.iter().enumerate() {
            let (o, c) = (&both.ovs_flags[i], &both.replay.flags[i]);
            let mut line = format!("  {}: OVS {o:?} ctgate {c:?}: {}", i + 1, st.what);
            if !both.ct_frames.is_empty() {
                if let (Some(of), Some(cf)) = (&both.ovs_frames[i], both.ct_frames.get(i)) {
                    if of[12..] != cf[12..] {
                        line.push_str(&format!(
                            "; bytes differ: OVS {:?} ctgate {:?}, same quote: {}",
                            verify_frame(of),
                            verify_frame(cf),
                            quote_of(of) == quote_of(cf)
                        ));
                    }
                }
            }
            eprintln!("{line}");
            if let Some((want_o, want_c)) = st.dst {
                let dst = |f: Option<&Vec<u8>>| {
                    f.and_then(|f| ctgate::wire::parse_frame(f).ok())
                        .map(|p| ctgate::conntrack::key::addr_to_ip(p.family as u8, &p.dst))
                };
                let (od, cd) = (dst(both.ovs_frames[i].as_ref()), dst(both.ct_frames.get(i)));
                if od != Some(ip(want_o)) || cd != Some(ip(want_c)) {
                    failures.push_str(&format!(
                        "{} step {}: sent to {od:?} by OVS and {cd:?} by ctgate, pinned {want_o} and {want_c}\n",
                        sc.name,
                        i + 1
                    ));
                }
            }
            if o != st.ovs {
                failures.push_str(&format!(
                    "{} step {}: OVS said {o:?}, pinned {:?}\n",
                    sc.name,
                    i + 1,
                    st.ovs
                ));
            }
            if c != o && Some(c.as_str()) != st.differs {
                failures.push_str(&format!(
                    "{} step {}: ctgate said {c:?}, OVS {o:?}, documented {:?}\n",
                    sc.name,
                    i + 1,
                    st.differs
                ));
            }
            let _ = flags_of(c);
        }
        for l in &both.ovs_dump {
            eprintln!("  OVS dump:    {l}");
        }
        for l in &both.replay.conns {
            eprintln!("  ctgate dump: {l}");
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
