//! The NAT logger's records read back by real, independent receivers on loopback:
//! nfdump's `nfcapd` IPFIX collector (decoded by `nfdump`) and `rsyslogd` with a UDP
//! input (which parses the RFC 5424 message into its fields). The records come from a
//! tracker's own events for SNATed connections (a UDP flow, a TCP flow and an ICMP echo,
//! created, then expired by a sweep), so what the collectors show is what the gateway
//! would log for them. No namespaces: everything stays on 127.0.0.1.

mod natlog_rx;
use natlog_rx::{Nfcapd, Rsyslog};

use ctgate::config::{Logging, SyslogTarget};
use ctgate::conntrack::testpkt::{icmp_query, tcp, udp};
use ctgate::conntrack::tracker::ReplyTuples;
use ctgate::conntrack::{ConnKey, Conntrack, CtConfig, CtState};
use ctgate::control::natlog::NatLogger;

/// SNAT to 192.0.2.1, each connection's source port (or ICMP id) + 1000.
struct Snat;
impl ReplyTuples for Snat {
    fn flags(&self, _: &ConnKey) -> u8 {
        CtState::SNAT
    }
    fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
        let mut r = orig.reversed();
        r.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        if orig.proto == 1 {
            r.sport = orig.sport + 1000;
            r.dport = orig.dport;
        } else {
            r.dport = orig.sport + 1000;
        }
        (n == 0).then_some(r)
    }
}

/// The records of three SNATed connections created then expired, sent by a NAT logger
/// to `logging`'s targets.
fn log_three_connections(logging: &Logging) -> NatLogger {
    let ct = Conntrack::new(CtConfig {
        max_conns: 100,
        hash_seed: Some(7),
        ..CtConfig::default()
    });
    let mut log = NatLogger::new(&ct, logging);
    let mut w = ct.worker(0);
    w.process_nat(&udp("10.0.0.2", "192.0.2.2", 4000, 53), 0, true, &Snat, 0);
    w.process_nat(
        &tcp("10.0.0.2", "192.0.2.2", 40_000, 80, 0x02, 1, 0, 65535, 0),
        0,
        true,
        &Snat,
        0,
    );
    w.process_nat(
        &icmp_query("10.0.0.3", "192.0.2.2", 8, 77),
        0,
        true,
        &Snat,
        0,
    );
    drop(w);
    ct.control_handle().sweep_all(u64::MAX / 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    log.poll_at(now);
    log
}

#[test]
fn nfdump_decodes_the_ipfix_nat_records_to_the_same_addresses_and_ports() {
    let mut nfcapd = Nfcapd::start("nfcapd");
    let log = log_three_connections(&Logging {
        ipfix: Some(format!("127.0.0.1:{}", nfcapd.port).parse().unwrap()),
        ..Logging::default()
    });
    assert_eq!((log.sent, log.lost), (6, 0));
    let got = nfcapd.stop_and_decode();
    // nfdump 1.7 prints an ICMP record's ports its own way: %sp 0 and %dp the
    // sourceTransportPort sent (the identifier 77) as LOW.HIGH bytes; the outside
    // identifier (postNAPTSourceTransportPort) as sent.
    let mut want = vec![
        "ADD|UDP|10.0.0.2|4000|192.0.2.1|5000|192.0.2.2|53",
        "ADD|TCP|10.0.0.2|40000|192.0.2.1|41000|192.0.2.2|80",
        "ADD|ICMP|10.0.0.3|0|192.0.2.1|1077|192.0.2.2|77.0",
        "DELETE|ICMP|10.0.0.3|0|192.0.2.1|1077|192.0.2.2|77.0",
        "DELETE|TCP|10.0.0.2|40000|192.0.2.1|41000|192.0.2.2|80",
        "DELETE|UDP|10.0.0.2|4000|192.0.2.1|5000|192.0.2.2|53",
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn rsyslog_parses_the_rfc5424_nat_lines_from_udp_and_a_local_socket() {
    let rx = Rsyslog::start("rsyslog");
    let udp_log = log_three_connections(&Logging {
        syslog: Some(SyslogTarget::Udp(
            format!("127.0.0.1:{}", rx.port).parse().unwrap(),
        )),
        ..Logging::default()
    });
    let local_log = log_three_connections(&Logging {
        syslog: Some(SyslogTarget::Local(rx.sock.clone())),
        ..Logging::default()
    });
    assert_eq!((udp_log.sent, udp_log.lost), (6, 0));
    assert_eq!((local_log.sent, local_log.lost), (6, 0));
    let mut got = rx.lines(12);
    let sd = |ev: &str, p: &str, i: &str, o: &str, d: &str| {
        format!(
            "|134|ctgate|NAT|[nat@32473 event=\"{ev}\" proto=\"{p}\" zone=\"0\" inside=\"{i}\" outside=\"{o}\" dest=\"{d}\"]|{ev} {p} {i} -> {o} dst {d} zone 0"
        )
    };
    let mut want = Vec::new();
    for input in ["imudp", "imuxsock"] {
        for ev in ["create", "delete"] {
            want.push(format!(
                "{input}{}",
                sd(ev, "udp", "10.0.0.2:4000", "192.0.2.1:5000", "192.0.2.2:53")
            ));
            want.push(format!(
                "{input}{}",
                sd(
                    ev,
                    "tcp",
                    "10.0.0.2:40000",
                    "192.0.2.1:41000",
                    "192.0.2.2:80"
                )
            ));
            want.push(format!(
                "{input}{}",
                sd(ev, "icmp", "10.0.0.3:77", "192.0.2.1:1077", "192.0.2.2")
            ));
        }
    }
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

/// SNAT of IPv6 to fd00:0:0:2::1, the source port + 1000.
struct Snat6;
impl ReplyTuples for Snat6 {
    fn flags(&self, _: &ConnKey) -> u8 {
        CtState::SNAT
    }
    fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
        let mut r = orig.reversed();
        r.dst = "fd00:0:0:2::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        r.dport = orig.sport + 1000;
        (n == 0).then_some(r)
    }
}

#[test]
fn nfdump_decodes_the_ipv6_template_records_too() {
    let mut nfcapd = Nfcapd::start("nfcapd6");
    let ct = Conntrack::new(CtConfig {
        max_conns: 100,
        hash_seed: Some(7),
        ..CtConfig::default()
    });
    let mut log = NatLogger::new(
        &ct,
        &Logging {
            ipfix: Some(format!("127.0.0.1:{}", nfcapd.port).parse().unwrap()),
            ..Logging::default()
        },
    );
    let mut w = ct.worker(0);
    w.process_nat(
        &udp("fd00:0:0:1::2", "fd00:0:0:2::2", 4000, 53),
        0,
        true,
        &Snat6,
        0,
    );
    drop(w);
    log.poll_at(1_764_626_537);
    assert_eq!((log.sent, log.lost), (1, 0));
    // nfdump 1.7.1 decodes the IPv6 template's addresses and ports but not
    // postNATSourceIPv6Address (IANA 281): its outside address shows as 0.0.0.0. The
    // encoder's unit test pins those bytes.
    assert_eq!(
        nfcapd.stop_and_decode(),
        vec!["ADD|UDP|fd00:0:0:1::2|4000|0.0.0.0|5000|fd00:0:0:2::2|53"]
    );
}
