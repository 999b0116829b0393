//! IP fragments through the gateway on `net_tap` ports between two network namespaces
//! (as `ci/demo`), real Linux stacks on both sides: large pings (3,000 and 8,000 bytes,
//! both families) cross it SNATed; a 4,000-byte UDP answer (what a DNSSEC server sends)
//! reaches the inside client; fragments of outside-initiated traffic are refused and
//! counted. Needs root.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use gw_tapnet::*;

/// A UDP server that answers every datagram with `size` bytes (first byte: the request's
/// length) and logs each client address and request length.
const SERVER: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
size = int(sys.argv[3])
log = open(sys.argv[4], "a", buffering=1)
while True:
    data, peer = s.recvfrom(65535)
    log.write("%s %d\n" % (peer[0], len(data)))
    s.sendto(bytes([len(data) % 256]) + bytes(i % 251 for i in range(size - 1)), peer)
"#;

/// Sends `n` bytes to ADDR PORT and prints the answer's length and whether its bytes are
/// the server's pattern; or prints `timeout`.
const CLIENT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
s.sendto(b"q" * int(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))
try:
    data, _ = s.recvfrom(65535)
    ok = data[1:] == bytes(i % 251 for i in range(len(data) - 1))
    print(len(data), "pattern-ok" if ok else "pattern-bad")
except socket.timeout:
    print("timeout")
"#;

fn ping_size(gw: &Gw, dst: &str, size: u32) -> Out {
    let s = size.to_string();
    let mut args = vec!["ping", "-n", "-c", "3", "-W", "2", "-i", "0.2", "-s", &s];
    if dst.contains(':') {
        args.push("-6");
    }
    args.push(dst);
    gw.exec(&gw.ns_in.clone(), &args)
}

#[test]
fn large_pings_and_a_4000_byte_udp_answer_cross_the_gateway_and_outside_fragments_are_refused() {
    let mut gw = Gw::start("tapfrag", None);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());

    for (dst, size) in [
        ("192.0.2.2", 3000),
        ("192.0.2.2", 8000),
        ("fd00:0:0:2::2", 3000),
        ("fd00:0:0:2::2", 8000),
    ] {
        let p = ping_size(&gw, dst, size);
        assert!(
            p.ok && p.stdout.contains(" 0% packet loss"),
            "ping -s {size} {dst}:\n{p}"
        );
        assert!(
            p.stdout.contains(&format!("{} bytes from {dst}", size + 8)),
            "{p}"
        );
    }

    // A UDP server outside answering with 4,000 bytes; the inside client gets all of it.
    let server = gw.scratch.path("udp_server.py");
    let client = gw.scratch.path("udp_client.py");
    std::fs::write(&server, SERVER).unwrap();
    std::fs::write(&client, CLIENT).unwrap();
    let log = gw.scratch.path("udp.log");
    for (addr, port) in [("192.0.2.2", "5300"), ("fd00:0:0:2::2", "5301")] {
        gw.spawn_in(
            &ns_out,
            &[
                "python3",
                server.to_str().unwrap(),
                addr,
                port,
                "4000",
                log.to_str().unwrap(),
            ],
            &gw.scratch.path(&format!("server-{port}.out")),
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (addr, port) in [("192.0.2.2", "5300"), ("fd00:0:0:2::2", "5301")] {
        let c = gw.exec(
            &ns_in,
            &["python3", client.to_str().unwrap(), addr, port, "40", "3"],
        );
        assert_eq!(c.stdout.trim(), "4000 pattern-ok", "UDP to {addr}:\n{c}");
    }
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.lines().any(|l| l == "192.0.2.1 40") && seen.lines().any(|l| l == "fd00:0:0:2::1 40"),
        "the server should see the pool addresses:\n{seen}"
    );

    // Outside → inside fragments: no connection, refused by the policy, nothing arrives.
    let inside_log = gw.scratch.path("inside.log");
    gw.spawn_in(
        &ns_in,
        &[
            "python3",
            server.to_str().unwrap(),
            "10.0.0.2",
            "5400",
            "10",
            inside_log.to_str().unwrap(),
        ],
        &gw.scratch.path("inside-server.out"),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let denied = gw.drops("policy_denied");
    let c = gw.exec(
        &ns_out,
        &[
            "python3",
            client.to_str().unwrap(),
            "10.0.0.2",
            "5400",
            "3000",
            "1",
        ],
    );
    assert_eq!(c.stdout.trim(), "timeout", "{c}");
    assert!(gw.drops("policy_denied") > denied, "not counted");
    assert_eq!(
        std::fs::read_to_string(&inside_log).unwrap_or_default(),
        "",
        "the inside server got the outside datagram"
    );

    // The counters, as `ovs-appctl dpctl/ipf-get-status` prints them.
    let st = gw.ctl_ok(&["ipf-get-status"]);
    assert!(
        st.starts_with("        Fragmentation Module Status\n"),
        "{st}"
    );
    for key in ["v4 frags completed", "v6 frags completed"] {
        assert!(status_num(&st, key) > 0, "{key}:\n{st}");
    }
    assert_eq!(status_num(&st, "num frag"), 0, "{st}");

    // Reassembly off for IPv4: large IPv4 pings no longer cross (fragments dropped,
    // counted), IPv6 ones still do; on again, they cross again.
    assert_eq!(
        gw.ctl_ok(&["ipf-set-disabled", "v4"]),
        "disabling fragmentation reassembly successful\n"
    );
    let dropped = gw.drops("fragment");
    let p = ping_size(&gw, "192.0.2.2", 3000);
    assert!(!p.ok, "{p}");
    assert!(gw.drops("fragment") > dropped);
    assert!(ping_size(&gw, "fd00:0:0:2::2", 3000).ok);
    gw.ctl_ok(&["ipf-set-enabled", "v4"]);
    let p = ping_size(&gw, "192.0.2.2", 3000);
    assert!(p.ok, "{p}");

    let out = gw.stop();
    assert!(out.status.success(), "{out}");
}

/// The number after `KEY: ` in an `ipf-get-status` block.
fn status_num(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
}
