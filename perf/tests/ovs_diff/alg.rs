//! The FTP and TFTP ALGs against Open vSwitch's (issue 14): hand-built control and data
//! connections run through OVS 3.1 (flows `ct(commit,alg=ftp)` / `alg=tftp`, with or
//! without NAT: [`Pipeline::Alg`]) and through `ctgate-perf replay --alg ftp:21 --alg
//! tftp:69`. Every packet's ct_state, every output byte and the connection dump must
//! agree, except where docs/ovs-differences.md explains why not (the `differs` of a step,
//! with the evidence in what this test prints).
//!
//! The traces are real sessions: TCP sequence and acknowledgement numbers are each
//! side's own, so after a rewrite that changes a payload's length the server's
//! acknowledgements (and everything the server sees) are shifted by the difference, as a
//! real server's would be ([`Tcp`]); a tracker that does not adjust them breaks the
//! connection, which the ct_state of the following packets and their bytes show.

use super::gen::{self, packet, tcpf, Trace};
use super::ovs::{AlgNat, Ovs, Pipeline};
use ctgate::wire::testframe::L4;

/// One packet of a scenario.
struct Step {
    frame: Vec<u8>,
    what: String,
    /// Milliseconds after the previous packet.
    gap_ms: u64,
    /// TCP: the sequence and acknowledgement numbers its receiver must get (its own
    /// view, shifted by the rewrites so far).
    seq_ack_out: Option<(u32, u32)>,
}

/// A TCP connection between a client and a server as each sees the other: the client
/// sends from `c` to `s_seen`, the server from `s` to `c_seen` (they differ under NAT).
/// `c_skew`/`s_skew`: how many bytes more the other side has seen of this side's stream
/// than it sent (the sum of the length changes of the ALG's rewrites).
struct Tcp {
    c: (&'static str, u16),
    s_seen: (&'static str, u16),
    s: (&'static str, u16),
    c_seen: (&'static str, u16),
    cseq: u32,
    sseq: u32,
    c_skew: i64,
    s_skew: i64,
    name: &'static str,
}

impl Tcp {
    fn new(
        name: &'static str,
        c: (&'static str, u16),
        s_seen: (&'static str, u16),
        s: (&'static str, u16),
        c_seen: (&'static str, u16),
    ) -> Tcp {
        Tcp {
            c,
            s_seen,
            s,
            c_seen,
            cseq: 1000 + u32::from(c.1),
            sseq: 900_000 + u32::from(s.1),
            c_skew: 0,
            s_skew: 0,
            name,
        }
    }

    fn add(x: u32, d: i64) -> u32 {
        (i64::from(x) + d) as u32
    }

    /// The client sends `flags` with `payload`; the server will see it `grows` bytes
    /// longer (a rewrite).
    fn c_send(&mut self, flags: u8, payload: &[u8], grows: i64, what: &str) -> Step {
        self.send(true, flags, payload, grows, what)
    }

    /// The server sends; the client will see it `grows` bytes longer.
    fn s_send(&mut self, flags: u8, payload: &[u8], grows: i64, what: &str) -> Step {
        self.send(false, flags, payload, grows, what)
    }

    /// One side sends (the client when `client`): from its own address to the other as
    /// it sees it, its own sequence number, acknowledging the other's stream as it has
    /// seen it (shifted by the other's skew); its receiver must get both numbers in its
    /// own view. Advances the sender's sequence number and adds `grows` to its skew.
    fn send(&mut self, client: bool, flags: u8, payload: &[u8], grows: i64, what: &str) -> Step {
        let (from, to, dir) = if client {
            (self.c, self.s_seen, "C>S")
        } else {
            (self.s, self.c_seen, "S>C")
        };
        let (seq, skew, peer_seq, peer_skew) = if client {
            (self.cseq, self.c_skew, self.sseq, self.s_skew)
        } else {
            (self.sseq, self.s_skew, self.cseq, self.c_skew)
        };
        let ack = if flags & tcpf::ACK != 0 {
            Tcp::add(peer_seq, peer_skew)
        } else {
            0
        };
        let f = packet(
            from.0,
            to.0,
            L4::tcp(from.1, to.1, seq, ack, flags, payload).window(29200),
        );
        let out = (
            Tcp::add(seq, skew),
            if ack == 0 {
                0
            } else {
                Tcp::add(ack, -peer_skew)
            },
        );
        let next = seq
            .wrapping_add(payload.len() as u32 + u32::from(flags & (tcpf::SYN | tcpf::FIN) != 0));
        if client {
            (self.cseq, self.c_skew) = (next, skew + grows);
        } else {
            (self.sseq, self.s_skew) = (next, skew + grows);
        }
        Step {
            frame: f,
            what: format!("{} {dir} {what}", self.name),
            gap_ms: 1,
            seq_ack_out: Some(out),
        }
    }

    /// SYN, SYN+ACK, ACK.
    fn handshake(&mut self) -> Vec<Step> {
        use tcpf::{ACK, SYN};
        vec![
            self.c_send(SYN, b"", 0, "SYN"),
            self.s_send(SYN | ACK, b"", 0, "SYN+ACK"),
            self.c_send(ACK, b"", 0, "ACK"),
        ]
    }

    /// FIN from each side and the last ACK.
    fn close(&mut self) -> Vec<Step> {
        use tcpf::{ACK, FIN};
        vec![
            self.c_send(FIN | ACK, b"", 0, "FIN"),
            self.s_send(FIN | ACK, b"", 0, "FIN"),
            self.c_send(ACK, b"", 0, "ACK"),
        ]
    }
}

/// A data connection's exchange: handshake, `n` bytes each way, close.
fn data_exchange(d: &mut Tcp, n: usize) -> Vec<Step> {
    use tcpf::{ACK, PSH};
    let mut v = d.handshake();
    let a = vec![0x41; n];
    let b = vec![0x42; n];
    v.push(d.s_send(ACK | PSH, &a, 0, "data"));
    v.push(d.c_send(ACK, b"", 0, "ACK"));
    v.push(d.c_send(ACK | PSH, &b, 0, "data"));
    v.push(d.s_send(ACK, b"", 0, "ACK"));
    v.extend(d.close());
    v
}

fn port_arg(addr: &str, port: u16) -> String {
    format!("{},{},{}", addr.replace('.', ","), port >> 8, port & 0xff)
}

/// The PORT command announcing `addr`'s `port`.
fn port_cmd(addr: &str, port: u16) -> String {
    format!("PORT {}\r\n", port_arg(addr, port))
}

/// The client's active announcement `cmd` (the server sees it `grows` bytes longer) and
/// the server's 200.
fn announce(ctl: &mut Tcp, cmd: &str, grows: i64) -> [Step; 2] {
    use tcpf::{ACK, PSH};
    [
        ctl.c_send(ACK | PSH, cmd.as_bytes(), grows, cmd.trim_end()),
        ctl.s_send(ACK | PSH, b"200 PORT command successful\r\n", 0, "200"),
    ]
}

/// One scenario: its pipeline, packets, and what must hold.
struct Scenario {
    name: &'static str,
    nat: AlgNat,
    /// The NAT options of `ctgate-perf replay` for the same translation.
    replay_nat: Vec<String>,
    steps: Vec<Step>,
    /// OVS 3.1's verdicts on some steps (1-based), pinned: the evidence that its ALG did
    /// what the scenario is about (an expectation met: `rel`).
    ovs_pins: Vec<(usize, &'static str)>,
    /// A step whose announcement is rewritten: (step, old text, new text); ctgate's
    /// output payload must be the input's with the first old text replaced by the new.
    rewritten: Option<(usize, &'static str, &'static str)>,
    /// Steps (1-based, inclusive range) where ctgate differs from OVS on purpose, and
    /// the documented difference (docs/ovs-differences.md); the difference must show.
    differs: Option<(std::ops::RangeInclusive<usize>, &'static str)>,
}

impl Scenario {
    fn new(name: &'static str, (nat, replay_nat): (AlgNat, Vec<String>), steps: Vec<Step>) -> Self {
        Scenario {
            name,
            nat,
            replay_nat,
            steps,
            ovs_pins: Vec::new(),
            rewritten: None,
            differs: None,
        }
    }

    fn pin(mut self, step: usize, ovs: &'static str) -> Self {
        self.ovs_pins.push((step, ovs));
        self
    }

    fn rewritten(mut self, step: usize, old: &'static str, new: &'static str) -> Self {
        self.rewritten = Some((step, old, new));
        self
    }

    fn differs(mut self, steps: std::ops::RangeInclusive<usize>, id: &'static str) -> Self {
        self.differs = Some((steps, id));
        self
    }
}

// Addresses. Under NAT the inside address is the longer text and the public one the
// shorter, so the ALG's rewrite shrinks the payload: OVS's dummy datapath receives each
// frame into a buffer of exactly its size and refuses a rewrite that grows it
// ("Unsupported effective MTU"), the case `ftp-active-port-snat-grows-v4` documents (A2).
const C4: &str = "10.1.100.100";
const S4: &str = "192.0.2.1";
const POOL4: &str = "192.0.2.99";
const PUB4: &str = "192.0.2.9";
const SRV4: &str = "10.1.100.50";
const OUT4: &str = "192.0.2.7";
const C6: &str = "fd01::1:2:3:4";
const S6: &str = "2001:db8::1";
const POOL6: &str = "2001:db8::99";

fn none() -> (AlgNat, Vec<String>) {
    (AlgNat::None, Vec::new())
}

fn snat4(pool: &str) -> (AlgNat, Vec<String>) {
    (
        AlgNat::Snat {
            inside: gen::INSIDE_V4.into(),
            pool: pool.into(),
            v6: false,
        },
        vec!["--snat".into(), pool.into()],
    )
}

fn snat6() -> (AlgNat, Vec<String>) {
    (
        AlgNat::Snat {
            inside: gen::INSIDE_V6.into(),
            pool: format!("[{POOL6}]"),
            v6: true,
        },
        vec!["--snat".into(), format!("[{POOL6}]")],
    )
}

fn dnat4() -> (AlgNat, Vec<String>) {
    (
        AlgNat::Dnat {
            public: PUB4.into(),
            target: SRV4.into(),
        },
        vec!["--dnat".into(), SRV4.into()],
    )
}

/// Bytes by which the text of `to` is longer than that of `from` (negative: shorter).
fn growth(from: &str, to: &str) -> i64 {
    to.len() as i64 - from.len() as i64
}

/// Who talks to whom on an FTP session: the client `c` (the server sees it as `c_seen`)
/// and the server `s` (the client sees it as `s_seen`); they differ under NAT.
#[derive(Clone, Copy)]
struct Ends {
    c: &'static str,
    c_seen: &'static str,
    s: &'static str,
    s_seen: &'static str,
}

impl Ends {
    /// Both sides see the other's own address (no NAT).
    const fn plain(c: &'static str, s: &'static str) -> Ends {
        Ends {
            c,
            c_seen: c,
            s,
            s_seen: s,
        }
    }

    /// The control connection from the client's port `port` to the server's 21.
    fn ctl(&self, port: u16) -> Tcp {
        let (c, s) = ((self.c, port), (self.s, 21));
        Tcp::new("ctl", c, (self.s_seen, 21), s, (self.c_seen, port))
    }

    /// An active data connection: from the server's port 20 to the client's `port`.
    fn active_data(&self, port: u16) -> Tcp {
        let (c, s) = ((self.c, port), (self.s, 20));
        Tcp::new("data", s, (self.c_seen, port), c, (self.s_seen, 20))
    }

    /// A passive data connection: from the client's `cport` to the server's `sport`.
    fn passive_data(&self, cport: u16, sport: u16) -> Tcp {
        let (c, s) = ((self.c, cport), (self.s, sport));
        Tcp::new("data", c, (self.s_seen, sport), s, (self.c_seen, cport))
    }
}

/// How a session announces its data connection.
#[derive(Clone, Copy)]
enum Announce {
    Port,
    Eprt,
    Pasv,
    Epsv,
}

/// An FTP session on the control connection from the client's `port`: handshake, 220,
/// the announcement (active: the client's PORT/EPRT of its port `port + 100`, answered
/// 200; passive: PASV/EPSV answered with the server's port `port + 10000`), RETR, the data
/// connection with 1000 bytes each way, then more control traffic both ways after the
/// rewrite (226/QUIT/221), and the close. An announced address reaches the other side
/// as that side sees it, longer or shorter by the difference of their texts.
fn session(e: Ends, how: Announce, port: u16) -> Vec<Step> {
    use tcpf::{ACK, PSH};
    let (cport, sport) = (port + 100, port + 10_000);
    let mut ctl = e.ctl(port);
    let mut v = ctl.handshake();
    v.push(ctl.s_send(ACK | PSH, b"220 ready\r\n", 0, "220"));
    let mut data = match how {
        Announce::Port | Announce::Eprt => {
            let cmd = match how {
                Announce::Port => port_cmd(e.c, cport),
                _ => {
                    let af = if e.c.contains(':') { 2 } else { 1 };
                    format!("EPRT |{af}|{}|{cport}|\r\n", e.c)
                }
            };
            v.extend(announce(&mut ctl, &cmd, growth(e.c, e.c_seen)));
            e.active_data(cport)
        }
        Announce::Pasv | Announce::Epsv => {
            let (cmd, reply, grows) = match how {
                Announce::Pasv => (
                    "PASV\r\n",
                    format!("227 Entering Passive Mode ({})\r\n", port_arg(e.s, sport)),
                    growth(e.s, e.s_seen),
                ),
                _ => (
                    "EPSV\r\n",
                    format!("229 Entering Extended Passive Mode (|||{sport}|)\r\n"),
                    0,
                ),
            };
            v.push(ctl.c_send(ACK | PSH, cmd.as_bytes(), 0, cmd.trim_end()));
            v.push(ctl.s_send(ACK | PSH, reply.as_bytes(), grows, reply.trim_end()));
            e.passive_data(cport, sport)
        }
    };
    v.push(ctl.c_send(ACK | PSH, b"RETR blob\r\n", 0, "RETR"));
    v.extend(data_exchange(&mut data, 1000));
    v.push(ctl.s_send(ACK | PSH, b"226 Transfer complete\r\n", 0, "226"));
    v.push(ctl.c_send(ACK | PSH, b"QUIT\r\n", 0, "QUIT"));
    v.push(ctl.s_send(ACK | PSH, b"221 Goodbye\r\n", 0, "221"));
    v.extend(ctl.close());
    v
}

fn tftp_rrq(file: &str) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(file.as_bytes());
    v.push(0);
    v.extend_from_slice(b"octet\0");
    v
}

fn udp_step(src: &str, sp: u16, dst: &str, dp: u16, payload: &[u8], what: &str) -> Step {
    Step {
        frame: packet(src, dst, L4::udp(sp, dp, payload)),
        what: what.to_string(),
        gap_ms: 1,
        seq_ack_out: None,
    }
}

/// A TFTP read: request from the client to port 69 of `s_seen`, data block from the
/// server's transfer port to the client as the server sees it, the client's ACK.
fn tftp(c: (&str, u16), s_seen: &str, s: &str, c_seen: (&str, u16)) -> Vec<Step> {
    let mut block = vec![0, 3, 0, 1];
    block.extend_from_slice(&[0x55; 100]);
    vec![
        udp_step(c.0, c.1, s_seen, 69, &tftp_rrq("blob"), "tftp RRQ"),
        udp_step(
            s,
            50_069,
            c_seen.0,
            c_seen.1,
            &block,
            "tftp DATA 1 from a new port",
        ),
        udp_step(c.0, c.1, s_seen, 50_069, &[0, 4, 0, 1], "tftp ACK 1"),
        udp_step(
            s,
            50_069,
            c_seen.0,
            c_seen.1,
            &[0, 3, 0, 2],
            "tftp DATA 2 (last)",
        ),
    ]
}

fn scenarios() -> Vec<Scenario> {
    use tcpf::{ACK, PSH, SYN};
    use Announce::{Eprt, Epsv, Pasv, Port};
    let (plain4, plain6) = (Ends::plain(C4, S4), Ends::plain(C6, S6));
    let snat4_ends = Ends {
        c_seen: POOL4,
        ..plain4
    };
    let snat6_ends = Ends {
        c_seen: POOL6,
        ..plain6
    };
    // An active session's steps: 1-3 handshake, 4 220, 5 the announcement, 6 200, 7 RETR,
    // 8-17 the data connection (8 its SYN), 18-20 226/QUIT/221 (data both ways on the
    // control connection after the rewrite), 21-23 close. A passive one: 5 the command,
    // 6 the reply, the rest alike.
    let mut v = vec![
        Scenario::new("ftp-active-port-v4", none(), session(plain4, Port, 40000))
            .pin(8, "trk,new,rel")
            .pin(9, "trk,est,rel,rpl"),
        Scenario::new("ftp-passive-pasv-v4", none(), session(plain4, Pasv, 40001))
            .pin(8, "trk,new,rel"),
        Scenario::new("ftp-active-eprt-v6", none(), session(plain6, Eprt, 40002))
            .pin(8, "trk,new,rel"),
        Scenario::new("ftp-passive-epsv-v6", none(), session(plain6, Epsv, 40003))
            .pin(8, "trk,new,rel"),
        // EPRT and EPSV over IPv4: OVS 3.1 parses them over IPv6 only (A1).
        Scenario::new("ftp-active-eprt-v4", none(), session(plain4, Eprt, 40004))
            .pin(8, "trk,new")
            .differs(8..=17, "A1"),
        Scenario::new("ftp-passive-epsv-v4", none(), session(plain4, Epsv, 40005))
            .pin(8, "trk,new")
            .differs(8..=17, "A1"),
        // Active PORT under SNAT: "10,1,100,100" becomes "192,0,2,99" (2 bytes shorter);
        // the control connection then carries data both ways (sequence numbers shifted).
        Scenario::new(
            "ftp-active-port-snat-v4",
            snat4(POOL4),
            session(snat4_ends, Port, 40010),
        )
        .pin(8, "trk,new,rel,dnat")
        .rewritten(5, "10,1,100,100", "192,0,2,99")
        .differs(5..=23, "A2"),
        // The same with a pool whose text is longer than the inside address's (A2).
        Scenario::new(
            "ftp-active-port-snat-grows-v4",
            snat4("203.0.113.200"),
            session(
                Ends {
                    c_seen: "203.0.113.200",
                    ..plain4
                },
                Port,
                40015,
            ),
        )
        .pin(8, "trk,new,rel,dnat")
        .rewritten(5, "10,1,100,100", "203,0,113,200")
        .differs(5..=23, "A2"),
        // Passive 227 under SNAT: the server's address is not translated, nothing
        // rewritten.
        Scenario::new(
            "ftp-passive-pasv-snat-v4",
            snat4(POOL4),
            session(snat4_ends, Pasv, 40011),
        )
        .pin(8, "trk,new,rel,snat"),
        // Passive 227 under DNAT: "10,1,100,50" becomes "192,0,2,9" (2 bytes shorter).
        Scenario::new(
            "ftp-passive-pasv-dnat-v4",
            dnat4(),
            session(
                Ends {
                    c: OUT4,
                    c_seen: OUT4,
                    s: SRV4,
                    s_seen: PUB4,
                },
                Pasv,
                40012,
            ),
        )
        .pin(8, "trk,new,rel,dnat")
        .rewritten(6, "10,1,100,50", "192,0,2,9")
        .differs(6..=23, "A2"),
        // IPv6 EPRT under SNAT: fd01::1:2:3:4 becomes 2001:db8::99 (1 byte shorter).
        Scenario::new(
            "ftp-active-eprt-snat-v6",
            snat6(),
            session(snat6_ends, Eprt, 40013),
        )
        .pin(8, "trk,new,rel,dnat")
        .rewritten(5, C6, POOL6)
        .differs(5..=23, "A2"),
        // IPv6 EPSV under SNAT.
        Scenario::new(
            "ftp-passive-epsv-snat-v6",
            snat6(),
            session(snat6_ends, Epsv, 40014),
        )
        .pin(8, "trk,new,rel,snat"),
    ];

    // Two PORT commands before either data connection: two expectations, both met (the
    // second announcement first).
    {
        let mut ctl = snat4_ends.ctl(40020);
        let mut s = ctl.handshake();
        s.push(ctl.s_send(ACK | PSH, b"220 ready\r\n", 0, "220"));
        for p in [40120u16, 40121] {
            s.extend(announce(&mut ctl, &port_cmd(C4, p), growth(C4, POOL4)));
        }
        for p in [40121u16, 40120] {
            s.extend(data_exchange(&mut snat4_ends.active_data(p), 300));
        }
        s.push(ctl.c_send(ACK | PSH, b"QUIT\r\n", 0, "QUIT"));
        s.push(ctl.s_send(ACK | PSH, b"221 Goodbye\r\n", 0, "221"));
        v.push(
            Scenario::new("ftp-multiple-expectations-snat-v4", snat4(POOL4), s)
                .pin(9, "trk,new,rel,dnat")
                .pin(19, "trk,new,rel,dnat")
                .rewritten(7, "10,1,100,100", "192,0,2,99")
                .differs(5..=30, "A2"),
        );
    }

    // An announcement left unused for a minute, its control connection alive, then a
    // data connection to it: OVS keeps an expectation as long as its parent.
    {
        let mut ctl = plain4.ctl(40030);
        let mut s = ctl.handshake();
        s.extend(announce(&mut ctl, &port_cmd(C4, 40130), 0));
        let mut late = ctl.c_send(ACK | PSH, b"NOOP\r\n", 0, "NOOP 60 s later");
        late.gap_ms = 60_000;
        s.push(late);
        s.push(ctl.s_send(ACK | PSH, b"200 NOOP ok\r\n", 0, "200"));
        let mut d = plain4.active_data(40130);
        s.push(d.c_send(SYN, b"", 0, "SYN to the announcement of 60 s ago"));
        v.push(Scenario::new("ftp-expectation-unused-60s", none(), s).pin(8, "trk,new,rel"));
    }

    // An announcement whose control connection is reset and then expires (tcp_close,
    // 30 s) before any data connection: the expectation goes with its parent.
    {
        use tcpf::RST;
        let mut ctl = plain4.ctl(40031);
        let mut s = ctl.handshake();
        s.extend(announce(&mut ctl, &port_cmd(C4, 40131), 0));
        s.push(ctl.c_send(RST | ACK, b"", 0, "RST"));
        let mut d = plain4.active_data(40131);
        let mut syn = d.c_send(SYN, b"", 0, "SYN 40 s after the parent's reset");
        syn.gap_ms = 40_000;
        s.push(syn);
        v.push(Scenario::new("ftp-expectation-gone-with-parent", none(), s).pin(7, "trk,new"));
    }

    // A large payload: PORT and 300 more bytes in one segment, rewritten under SNAT
    // (OVS's ftp-alg-large-payload: before its 2026 fix, OVS moved only (length mod 256)
    // bytes of the tail).
    {
        let mut ctl = snat4_ends.ctl(40040);
        let mut s = ctl.handshake();
        let mut cmd = port_cmd(C4, 40140).into_bytes();
        cmd.extend(std::iter::repeat_n(b'x', 300));
        cmd.extend_from_slice(b"\r\n");
        s.push(ctl.c_send(ACK | PSH, &cmd, growth(C4, POOL4), "PORT + 300 bytes"));
        s.push(ctl.s_send(ACK | PSH, b"200 PORT command successful\r\n", 0, "200"));
        s.push(ctl.c_send(ACK | PSH, b"NOOP\r\n", 0, "NOOP"));
        s.push(ctl.s_send(ACK | PSH, b"200 NOOP ok\r\n", 0, "200"));
        v.push(
            Scenario::new("ftp-large-payload-snat-v4", snat4(POOL4), s)
                .rewritten(4, "10,1,100,100", "192,0,2,99")
                .differs(4..=7, "A2"),
        );
    }

    // TFTP without NAT and through SNAT.
    v.push(
        Scenario::new("tftp-v4", none(), tftp((C4, 40050), S4, S4, (C4, 40050)))
            .pin(2, "trk,new,rel"),
    );
    v.push(
        Scenario::new(
            "tftp-snat-v4",
            snat4(POOL4),
            tftp((C4, 40051), S4, S4, (POOL4, 40051)),
        )
        .pin(2, "trk,new,rel,dnat"),
    );
    v
}

/// A scenario's steps as a trace (one packet per tick, numbered in the destination MAC).
fn trace_of(sc: &Scenario) -> Trace {
    let mut trace = Trace::default();
    let mut ts = gen::BASE_TS_MS;
    for st in &sc.steps {
        ts += st.gap_ms;
        trace.push_tick(ts, st.frame.clone(), st.what.clone(), None);
    }
    trace
}

/// `ctgate-perf replay --alg ftp:21 --alg tftp:69` of `pcap` with the scenario's NAT:
/// the flags of each packet, the dump, and the packets as written.
fn replay(pcap: &std::path::Path, sc: &Scenario) -> (Vec<String>, Vec<String>, Vec<Vec<u8>>) {
    let written = pcap.with_extension("out.pcap");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctgate-perf"))
        .arg("replay")
        .arg(pcap)
        .args(["--alg", "ftp:21", "--alg", "tftp:69", "--write"])
        .arg(&written)
        .args(&sc.replay_nat)
        .output()
        .expect("run ctgate-perf replay");
    assert!(
        out.status.success(),
        "ctgate-perf replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flags = Vec::new();
    let mut conns = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        match line.split_once(':') {
            Some((n, f)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                flags.push(f.trim().to_string())
            }
            _ => conns.push(line.to_string()),
        }
    }
    let frames = ctgate::pcap::read_file(&written)
        .unwrap()
        .into_iter()
        .map(|p| p.data)
        .collect();
    (flags, conns, frames)
}

/// The TCP payload of a frame, as text.
fn payload(f: &[u8]) -> String {
    let Ok(p) = ctgate::wire::parse_frame(f) else {
        return String::new();
    };
    match p.l4 {
        ctgate::wire::parse::L4Summary::Tcp(t) if t.payload_len > 0 => {
            let off = f.len() - t.payload_len as usize;
            String::from_utf8_lossy(&f[off..]).into_owned()
        }
        _ => String::new(),
    }
}

#[test]
fn ovs_diff_alg_scenarios() {
    if super::skip_requested() {
        return;
    }
    if let Err(e) = super::ovs::available() {
        panic!("ovs_diff: {e}. Set CTGATE_SKIP_OVS_DIFF=1 to skip this test knowingly.");
    }
    let only = std::env::var("CTGATE_OVS_DIFF_ALG").ok();
    let mut failures = String::new();
    for sc in scenarios() {
        if only.as_deref().is_some_and(|o| !sc.name.contains(o)) {
            continue;
        }
        let trace = trace_of(&sc);
        let ovs = Ovs::start(
            sc.name,
            &Pipeline::Alg {
                nat: sc.nat.clone(),
            },
            true,
        )
        .expect("start OVS");
        let pcap = ovs.dir().join("trace.pcap");
        super::write_pcap(&trace, &pcap);
        let (flags, frames, mut dump) = super::run_ovs(&trace, &ovs, None);
        let (ct_flags, mut ct_dump, ct_frames) = replay(&pcap, &sc);
        dump.sort();
        ct_dump.sort();
        let mut fail = |m: String| failures.push_str(&format!("{}: {m}\n", sc.name));
        eprintln!("scenario {}:", sc.name);
        let mut differed = false;
        for (i, st) in sc.steps.iter().enumerate() {
            let n = i + 1;
            let (o, c) = (&flags[i], ct_flags.get(i).map_or("<none>", String::as_str));
            let (of, cf) = (frames[i].as_deref(), ct_frames.get(i).map(Vec::as_slice));
            let bytes_same = matches!((of, cf), (Some(a), Some(b)) if super::same_frame(a, b));
            eprintln!(
                "  {n}: OVS {o:?} ctgate {c:?}{}: {}\n      OVS:    {}\n      ctgate: {}",
                if bytes_same { "" } else { " BYTES DIFFER" },
                st.what,
                of.map_or("<none>".into(), super::describe),
                cf.map_or("<none>".into(), super::describe),
            );
            let documented = sc.differs.as_ref().is_some_and(|(r, _)| r.contains(&n));
            if o != c || !bytes_same {
                if documented {
                    differed = true;
                } else {
                    fail(format!(
                        "step {n} ({}): OVS {o:?} ctgate {c:?}, bytes same: {bytes_same}",
                        st.what
                    ));
                }
            }
            if let Some(&(_, want)) = sc.ovs_pins.iter().find(|(s, _)| *s == n) {
                if o != want {
                    fail(format!("step {n}: OVS said {o:?}, pinned {want:?}"));
                }
            }
        }
        // ctgate on its own: every frame's checksums, the receiver's sequence numbers
        // (the model's), the rewritten announcement.
        for (i, st) in sc.steps.iter().enumerate() {
            let Some(f) = ct_frames.get(i) else { continue };
            if let Err(e) = ctgate::wire::frame_checksums::verify_frame(f) {
                fail(format!(
                    "step {}: ctgate's frame does not verify: {e:?}",
                    i + 1
                ));
            }
            if let (Some(want), Ok(p)) = (st.seq_ack_out, ctgate::wire::parse_frame(f)) {
                if let ctgate::wire::parse::L4Summary::Tcp(t) = p.l4 {
                    if (t.seq, t.ack) != want {
                        fail(format!(
                            "step {} ({}): ctgate sent seq={} ack={}, the receiver expects seq={} ack={}",
                            i + 1, st.what, t.seq, t.ack, want.0, want.1
                        ));
                    }
                }
            }
        }
        if let Some((step, old, new)) = sc.rewritten {
            let input = payload(&trace.packets[step - 1].data);
            let want = input.replacen(old, new, 1);
            let c = ct_frames
                .get(step - 1)
                .map_or(String::new(), |f| payload(f));
            let o = frames[step - 1].as_deref().map_or(String::new(), payload);
            eprintln!("  step {step} rewritten: ctgate {c:?}\n  step {step} by OVS:    {o:?}");
            if c != want {
                fail(format!(
                    "step {step}: ctgate's payload {c:?}, want {want:?}"
                ));
            }
        }
        if sc.differs.as_ref().is_some_and(|(_, id)| *id == "A2") {
            // The evidence: OVS refused the rewrite for want of room in the buffer.
            let log =
                std::fs::read_to_string(ovs.dir().join("ovs-vswitchd.log")).unwrap_or_default();
            match log
                .lines()
                .find(|l| l.contains("Unsupported effective MTU"))
            {
                Some(l) => eprintln!("  OVS log: {l}"),
                None => fail("A2 without OVS's \"Unsupported effective MTU\" warning".into()),
            }
        }
        if let Some((_, id)) = &sc.differs {
            if !differed {
                fail(format!("the documented difference {id} no longer shows: update docs/ovs-differences.md"));
            }
        }
        for l in &dump {
            eprintln!("  OVS dump:    {l}");
        }
        for l in &ct_dump {
            eprintln!("  ctgate dump: {l}");
        }
        if dump != ct_dump {
            fail(format!(
                "dumps differ:\n  OVS:    {dump:?}\n  ctgate: {ct_dump:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
