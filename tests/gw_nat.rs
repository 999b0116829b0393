//! NAT behaviour as applications see it (issue 20, RFC 4787/5382): real Linux stacks in
//! the namespaces of `gw_tapnet` around the gateway on `net_tap` ports.
//!
//! * Debian's `stund -h 192.0.2.2 -a 192.0.2.3` outside and `stun 192.0.2.2` inside
//!   (RFC 3489 classification): the embedded default is "Independent Mapping, Port
//!   Dependent Filter, preserves ports, will hairpin"; with `filtering =
//!   "endpoint-independent"`, "Independent Mapping, Independent Filter, preserves ports,
//!   will hairpin".
//! * Two inside hosts (10.0.0.2 and 10.0.0.3) reach each other through their public
//!   mappings over UDP and TCP, each seeing the other's public endpoint as the source.
//! * A UDP flow idle for 35 s (longer than OVS's 30 s) keeps its mapping: the server's
//!   next packet still reaches the client, and the client's next one leaves from the
//!   same public port.
//!
//! Needs root, `stun-client` and `stun-server` (ci/setup installs them).
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use std::time::Duration;

use gw_tapnet::*;

const EMBEDDED: &str = include_str!("../config/ctgate.toml");

/// The outside namespace gets 192.0.2.3 too and runs `stund` on both addresses; the
/// inside runs `stun 192.0.2.2` and the line it classifies the NAT with is returned.
fn stun_classification(gw: &mut Gw) -> String {
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let tap_out = gw.tap_out.clone();
    let o = gw.exec(
        &ns_out,
        &["ip", "addr", "add", "192.0.2.3/24", "dev", &tap_out],
    );
    assert!(o.ok, "second outside address:\n{o}");
    let log = gw.scratch.path("stund.log");
    gw.spawn_in(
        &ns_out,
        &["stund", "-h", "192.0.2.2", "-a", "192.0.2.3"],
        &log,
    );
    // stund is up once it answers a client; a first run may race its start.
    let mut last = None;
    for _ in 0..20 {
        let o = gw.exec(&ns_in, &["timeout", "30", "stun", "192.0.2.2"]);
        if let Some(l) = o.stdout.lines().find(|l| l.starts_with("Primary:")) {
            if !l.contains("Blocked") && !l.contains("unknown") {
                return l.to_string();
            }
        }
        last = Some(o);
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "stun never classified the NAT:\n{}\nstund:\n{}",
        last.map(|o| o.to_string()).unwrap_or_default(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn stun_classifies_the_default_gateway_as_independent_mapping_preserving_ports_with_hairpin() {
    let mut gw = Gw::start("tapstun", None);
    let line = stun_classification(&mut gw);
    assert!(
        line.contains("Independent Mapping")
            && line.contains("preserves ports")
            && line.contains("will hairpin"),
        "{line}"
    );
    assert!(line.contains("Port Dependent Filter"), "{line}");
}

#[test]
fn stun_classifies_endpoint_independent_filtering_as_independent_filter_with_hairpin() {
    let text = EMBEDDED.replace(
        "filtering = \"address-port-dependent\"",
        "filtering = \"endpoint-independent\"",
    );
    assert!(text.contains("filtering = \"endpoint-independent\""));
    let mut gw = Gw::start("tapstunf", Some(&text));
    let line = stun_classification(&mut gw);
    assert!(
        line.contains("Independent Mapping, Independent Filter, preserves ports, will hairpin"),
        "{line}"
    );
}

/// Two inside hosts through their public mappings: B (10.0.0.3) opens its mappings with
/// packets to the outside (UDP 6000, TCP 6001), then A (10.0.0.2) sends to B's public
/// endpoints 192.0.2.1:6000 and :6001 from its own ports 5000 and 5001.
const HAIRPIN_PY: &str = r#"
import socket, sys
def s(kind, addr, port, reuse=False):
    x = socket.socket(socket.AF_INET, kind)
    if reuse:
        x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    x.bind((addr, port))
    x.settimeout(10)
    return x
# UDP: B's mapping, then A -> B's public endpoint and back.
b = s(socket.SOCK_DGRAM, "10.0.0.3", 6000)
b.sendto(b"open", ("192.0.2.2", 4000))
a = s(socket.SOCK_DGRAM, "10.0.0.2", 5000)
a.sendto(b"hello B", ("192.0.2.1", 6000))
data, src = b.recvfrom(100)
print("udp B got", data.decode(), "from %s:%d" % src)
b.sendto(b"hello A", src)
data, src = a.recvfrom(100)
print("udp A got", data.decode(), "from %s:%d" % src)
# TCP: B's mapping from its listening port (connection to the outside kept open).
bl = s(socket.SOCK_STREAM, "10.0.0.3", 6001, True)
bo = s(socket.SOCK_STREAM, "10.0.0.3", 6001, True)
bo.connect(("192.0.2.2", 8000))
bl.listen(1)
ac = s(socket.SOCK_STREAM, "10.0.0.2", 5001)
ac.connect(("192.0.2.1", 6001))
print("tcp A connected to %s:%d" % ac.getpeername())
conn, src = bl.accept()
conn.settimeout(10)
print("tcp B accepted from %s:%d" % src)
ac.sendall(b"ping over tcp")
print("tcp B got", conn.recv(100).decode())
conn.sendall(b"pong over tcp")
print("tcp A got", ac.recv(100).decode())
"#;

#[test]
fn two_inside_hosts_reach_each_other_through_their_public_mappings_over_udp_and_tcp() {
    let mut gw = Gw::start("taphairpin", None);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let tap_in = gw.tap_in.clone();
    let o = gw.exec(
        &ns_in,
        &["ip", "addr", "add", "10.0.0.3/24", "dev", &tap_in],
    );
    assert!(o.ok, "second inside address:\n{o}");
    let www = gw.scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    gw.http_server(&ns_out, "192.0.2.2", 8000, &www);
    let o = gw.exec(&ns_in, &["timeout", "60", "python3", "-c", HAIRPIN_PY]);
    assert!(o.ok, "hairpin script:\n{o}");
    for line in [
        "udp B got hello B from 192.0.2.1:5000",
        "udp A got hello A from 192.0.2.1:6000",
        "tcp A connected to 192.0.2.1:6001",
        "tcp B accepted from 192.0.2.1:5001",
        "tcp B got ping over tcp",
        "tcp A got pong over tcp",
    ] {
        assert!(o.stdout.lines().any(|l| l == line), "no '{line}':\n{o}");
    }
    // Each hairpinned flow is a connection of its own, translated both ways.
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    for want in [
        "src=10.0.0.2,dst=192.0.2.1,sport=5000,dport=6000),reply=(src=10.0.0.3,dst=192.0.2.1,sport=6000,dport=5000)",
        "src=10.0.0.2,dst=192.0.2.1,sport=5001,dport=6001),reply=(src=10.0.0.3,dst=192.0.2.1,sport=6001,dport=5001)",
    ] {
        assert!(dump.contains(want), "no {want} in:\n{dump}");
    }
}

/// The server answers every datagram, then 35 s after the first one sends once more,
/// unasked, to the client's public endpoint.
const IDLE_SERVER_PY: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.2", 4000))
data, src = s.recvfrom(100)
print("server got", data.decode(), "from %s:%d" % src, flush=True)
s.sendto(b"pong1", src)
time.sleep(35)
s.sendto(b"late", src)
data, src = s.recvfrom(100)
print("server got", data.decode(), "from %s:%d" % src, flush=True)
"#;

const IDLE_CLIENT_PY: &str = r#"
import socket
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.bind(("10.0.0.2", 5555))
c.settimeout(60)
c.sendto(b"ping1", ("192.0.2.2", 4000))
print("client got", c.recvfrom(100)[0].decode(), flush=True)
print("client got", c.recvfrom(100)[0].decode(), flush=True)
c.sendto(b"ping2", ("192.0.2.2", 4000))
"#;

#[test]
fn a_udp_flow_idle_longer_than_30_s_keeps_its_mapping_and_port() {
    let mut gw = Gw::start("tapidle", None);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let log = gw.scratch.path("server.log");
    gw.spawn_in(&ns_out, &["python3", "-c", IDLE_SERVER_PY], &log);
    std::thread::sleep(Duration::from_millis(500));
    let o = gw.exec(&ns_in, &["timeout", "90", "python3", "-c", IDLE_CLIENT_PY]);
    assert!(o.ok, "client:\n{o}");
    assert!(
        o.stdout.contains("client got pong1\nclient got late\n"),
        "{o}"
    );
    let mut server = String::new();
    for _ in 0..50 {
        server = std::fs::read_to_string(&log).unwrap_or_default();
        if server.contains("ping2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server, "server got ping1 from 192.0.2.1:5555\nserver got ping2 from 192.0.2.1:5555\n",
        "the same public port after 35 s idle"
    );
}
