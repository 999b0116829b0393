//! The NAT logger's records read back by real, independent receivers on loopback:
//! nfdump's `nfcapd` IPFIX collector (decoded by `nfdump`) and `rsyslogd` with a UDP
//! input (which parses the RFC 5424 message into its fields). The records come from a
//! tracker's own events for SNATed connections (a UDP flow, a TCP flow and an ICMP echo,
//! created, then expired by a sweep), so what the collectors show is what the gateway
//! would log for them. No namespaces: everything stays on 127.0.0.1.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A UDP port on 127.0.0.1 free right now.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str) -> String {
    for d in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{name} is missing: run ci/setup (it installs nfdump and rsyslog)");
}

/// Waits until `port` on 127.0.0.1 is bound by someone (a receiver listens).
fn wait_bound(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited at start: {st}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
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
    let dir = scratch("nfcapd");
    let port = free_port();
    let mut nfcapd = Command::new(tool("nfcapd"))
        .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
        .arg(&dir)
        .args(["-t", "3600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nfcapd");
    wait_bound(port, "nfcapd", &mut nfcapd);
    let log = log_three_connections(&Logging {
        ipfix: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        ..Logging::default()
    });
    assert_eq!((log.sent, log.lost), (6, 0));
    // nfcapd writes its file when it stops.
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &nfcapd.id().to_string()])
        .status();
    let _ = nfcapd.wait();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nfcapd.2"))
        })
        .collect();
    assert_eq!(files.len(), 1, "one nfcapd file in {}", dir.display());
    let out = Command::new(tool("nfdump"))
        .arg("-r")
        .arg(&files[0])
        .args(["-q", "-o", "fmt:%nevt|%pr|%sa|%sp|%xsa|%xsp|%da|%dp"])
        .output()
        .expect("run nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join("|"))
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    // nfdump 1.7 prints an ICMP record's ports its own way: %sp 0 and %dp as type.code
    // made from the sourceTransportPort sent (the identifier 77); the outside
    // identifier (postNAPTSourceTransportPort) as sent.
    let want = [
        "ADD|UDP|10.0.0.2|4000|192.0.2.1|5000|192.0.2.2|53",
        "ADD|TCP|10.0.0.2|40000|192.0.2.1|41000|192.0.2.2|80",
        "ADD|ICMP|10.0.0.3|0|192.0.2.1|1077|192.0.2.2|77.0",
        "DELETE|ICMP|10.0.0.3|0|192.0.2.1|1077|192.0.2.2|77.0",
        "DELETE|TCP|10.0.0.2|40000|192.0.2.1|41000|192.0.2.2|80",
        "DELETE|UDP|10.0.0.2|4000|192.0.2.1|5000|192.0.2.2|53",
    ];
    let mut got = lines.clone();
    got.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "{text}");
}

#[test]
fn rsyslog_parses_the_rfc5424_nat_lines_from_udp_and_a_local_socket() {
    let dir = scratch("rsyslog");
    let port = free_port();
    let sock = dir.join("log.sock");
    let out = dir.join("out.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{port}")
input(type="imuxsock" Socket="{sock}" UseSpecialParser="off")
template(name="fields" type="string" string="%inputname%|%pri%|%app-name%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="fields")
"#,
            d = dir.display(),
            sock = sock.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let mut rsyslogd = Command::new(tool("rsyslogd"))
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsyslogd");
    wait_bound(port, "rsyslogd", &mut rsyslogd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "rsyslogd made no {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let udp_log = log_three_connections(&Logging {
        syslog: Some(SyslogTarget::Udp(
            format!("127.0.0.1:{port}").parse().unwrap(),
        )),
        ..Logging::default()
    });
    let local_log = log_three_connections(&Logging {
        syslog: Some(SyslogTarget::Local(sock.clone())),
        ..Logging::default()
    });
    assert_eq!((udp_log.sent, udp_log.lost), (6, 0));
    assert_eq!((local_log.sent, local_log.lost), (6, 0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let t = std::fs::read_to_string(&out).unwrap_or_default();
        if t.lines().count() >= 12 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &rsyslogd.id().to_string()])
        .status();
    let _ = rsyslogd.wait();
    std::fs::remove_dir_all(&dir).unwrap();
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
    let mut got: Vec<String> = text.lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, want, "{text}");
}
