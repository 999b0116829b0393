//! IP fragments and path MTU through the gateway on `net_tap` ports between two network
//! namespaces (as `ci/demo`), real Linux stacks on both sides: large pings (3,000 and
//! 8,000 bytes, both families) cross it SNATed; a 4,000-byte UDP answer (what a DNSSEC
//! server sends) reaches the inside client; fragments of outside-initiated traffic are
//! refused and counted. With the outside port's `mtu` at 1280: the device's MTU follows,
//! a TCP upload completes through path MTU discovery, packets without DF are fragmented
//! by the gateway, a DF ping gets "Frag needed and DF set (mtu = 1280)" and an IPv6 one
//! "Packet too big" (quoting 576 / 1280 bytes' worth, seen by tcpdump), tracepath finds
//! the gateway and the path MTU, `mss_clamp = "auto"` clamps the SYN (seen by tcpdump on both sides),
//! and a live MTU change the device cannot take is refused. Needs root.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use common::field_u64;
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
        assert!(p.no_loss(), "ping -s {size} {dst}:\n{p}");
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

/// An HTTP server that stores the body of every POST in DIR/upload and answers 200.
const UPLOAD_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)
        open(sys.argv[3] + "/upload", "wb").write(body)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
fam = http.server.HTTPServer
if ":" in sys.argv[1]:
    import socket
    class V6(http.server.HTTPServer):
        address_family = socket.AF_INET6
    fam = V6
fam((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

/// The embedded default with `extra` lines in the outside port's section.
fn outside_with(extra: &str) -> String {
    ctgate::config::EMBEDDED_DEFAULT.replacen(
        "role = \"outside\"",
        &format!("role = \"outside\"\n{extra}"),
        1,
    )
}

/// A counter of the `gateway` line of `stats`.
fn gw_counter(gw: &Gw, name: &str) -> u64 {
    let s = gw.ctl_ok(&["stats"]);
    let line = s
        .lines()
        .find(|l| l.starts_with("gateway "))
        .unwrap_or_else(|| panic!("no gateway line in stats:\n{s}"));
    field_u64(line, name).unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// The MTU `ip link` shows for `dev` in `ns`.
fn link_mtu(gw: &Gw, ns: &str, dev: &str) -> u32 {
    let o = gw.exec(ns, &["ip", "-o", "link", "show", "dev", dev]);
    o.stdout
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in:\n{o}"))
}

#[test]
fn with_a_1280_outside_mtu_pmtu_discovery_fragmentation_icmp_and_mss_clamping_work_with_real_stacks(
) {
    let base = outside_with("mtu = 1280");
    let mut gw = Gw::start("tapmtu", Some(&base));
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let (tap_in, tap_out) = (gw.tap_in.clone(), gw.tap_out.clone());
    // rte_eth_dev_set_mtu set the tap's own MTU (the outside host's link).
    assert_eq!(link_mtu(&gw, &ns_out, &tap_out), 1280);
    assert_eq!(link_mtu(&gw, &ns_in, &tap_in), 1500);
    // More addresses of the outside host: the path MTU Linux learns is per destination.
    for a in ["192.0.2.3/24", "192.0.2.4/24"] {
        gw.exec(&ns_out, &["ip", "addr", "add", a, "dev", &tap_out]);
    }
    for a in ["fd00:0:0:2::3/64", "fd00:0:0:2::4/64"] {
        let add = ["ip", "-6", "addr", "add", a, "dev", &tap_out, "nodad"];
        gw.exec(&ns_out, &add);
    }

    // MSS clamping, switched on by a reload: the inside client's SYN says 1460, the one
    // the server gets 1240 (the outside MTU minus 40).
    let clamp = gw.scratch.path("clamp.toml");
    std::fs::write(&clamp, outside_with("mtu = 1280\nmss_clamp = \"auto\"")).unwrap();
    gw.ctl_ok(&["reload", "--config", clamp.to_str().unwrap()]);
    let dir = gw.scratch.path("www");
    std::fs::create_dir_all(&dir).unwrap();
    let page = blob(&dir, "blob", 200_000);
    gw.http_server(&ns_out, "192.0.2.2", 8000, &dir);
    let syn = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
    let (cap_in, cap_out) = (
        gw.scratch.path("syn-in.txt"),
        gw.scratch.path("syn-out.txt"),
    );
    gw.spawn_in(
        &ns_in,
        &["tcpdump", "-i", &tap_in, "-n", "-l", "-c", "1", syn],
        &cap_in,
    );
    gw.spawn_in(
        &ns_out,
        &["tcpdump", "-i", &tap_out, "-n", "-l", "-c", "1", syn],
        &cap_out,
    );
    wait_for(&cap_in, "listening on");
    wait_for(&cap_out, "listening on");
    let (c, got) = gw.fetch(&ns_in, "http://192.0.2.2:8000/blob", "");
    assert!(c.ok, "{c}");
    assert_eq!(got, page, "the download, byte for byte");
    let inside = wait_for(&cap_in, "mss ");
    let outside = wait_for(&cap_out, "mss ");
    assert!(
        inside.contains("options [mss 1460"),
        "inside SYN:\n{inside}"
    );
    assert!(
        outside.contains("192.0.2.1.") && outside.contains("options [mss 1240"),
        "the SYN the server got:\n{outside}"
    );
    gw.ctl_ok(&[
        "reload",
        "--config",
        gw.scratch.path("gw.toml").to_str().unwrap(),
    ]);

    // A 1 MiB upload through path MTU discovery: the server's link is 1500 (it offers MSS
    // 1460), the gateway's outside port 1280; the client's full-size DF segments get
    // "fragmentation needed" and it sends smaller ones.
    gw.exec(
        &ns_out,
        &["ip", "link", "set", "dev", &tap_out, "mtu", "1500"],
    );
    let up_dir = gw.scratch.path("up");
    std::fs::create_dir_all(&up_dir).unwrap();
    let server = gw.scratch.path("upload_server.py");
    std::fs::write(&server, UPLOAD_SERVER).unwrap();
    gw.spawn_in(
        &ns_out,
        &[
            "python3",
            server.to_str().unwrap(),
            "192.0.2.2",
            "8001",
            up_dir.to_str().unwrap(),
        ],
        &gw.scratch.path("upload.log"),
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    let body = blob(&gw.scratch.path(""), "body", 1 << 20);
    let (exceeded, frag_needed) = (gw.drops("mtu_exceeded"), gw_counter(&gw, "frag_needed"));
    let c = gw.exec(
        &ns_in,
        &[
            "curl",
            "-sS",
            "--retry",
            "20",
            "--retry-connrefused",
            "--retry-delay",
            "1",
            "--max-time",
            "30",
            "--data-binary",
            &format!("@{}", gw.scratch.path("body").display()),
            "http://192.0.2.2:8001/",
        ],
    );
    assert_eq!(c.stdout, "ok\n", "{c}");
    assert_eq!(
        std::fs::read(up_dir.join("upload")).unwrap(),
        body,
        "the upload, byte for byte"
    );
    assert!(
        gw.drops("mtu_exceeded") > exceeded,
        "no segment was too big"
    );
    assert!(gw_counter(&gw, "frag_needed") > frag_needed);
    gw.exec(
        &ns_out,
        &["ip", "link", "set", "dev", &tap_out, "mtu", "1280"],
    );

    // Without DF, packets larger than 1280 are fragmented by the gateway: a single 1428-
    // byte one, and the 1500-byte fragments of 3,000 and 8,000-byte pings.
    // (192.0.2.3 is not resolved yet: the first packet waits for its ARP answer.)
    let fragmented = gw_counter(&gw, "fragmented");
    for size in ["1400", "3000", "8000"] {
        let p = gw.exec(
            &ns_in,
            &[
                "ping",
                "-n",
                "-c",
                "2",
                "-W",
                "2",
                "-i",
                "0.3",
                "-M",
                "dont",
                "-s",
                size,
                "192.0.2.3",
            ],
        );
        assert!(p.no_loss(), "ping -s {size}:\n{p}");
    }
    assert!(
        gw_counter(&gw, "fragmented") >= fragmented + 6,
        "not fragmented by the gateway"
    );

    // DF set: the gateway answers from its inside address with the next-hop MTU, quoting
    // as much of the packet as fits in 576 bytes (IPv4) or 1280 (IPv6): the ICMP messages
    // the inside host receives are 556 (8 + 548 quoted of its 1328) and 1240 bytes long
    // (8 + 1232 of its 1348).
    let cap_err = gw.scratch.path("icmp-errors.txt");
    gw.spawn_in(
        &ns_in,
        &[
            "tcpdump",
            "-i",
            &tap_in,
            "-n",
            "-l",
            "-c",
            "2",
            "(icmp and icmp[icmptype] == 3) or (icmp6 and ip6[40] == 2)",
        ],
        &cap_err,
    );
    wait_for(&cap_err, "listening on");
    // One 1300-byte ping with DF (`-M do`), which the 1280 MTU refuses.
    let ping_df = |dst: &str| {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        let args = [
            "ping", family, "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1300", dst,
        ];
        gw.exec(&ns_in, &args)
    };
    let p = ping_df("192.0.2.4");
    assert!(
        p.stdout
            .contains("From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1280)"),
        "{p}"
    );
    // IPv6 is never fragmented on the way: "packet too big".
    let ptb = gw_counter(&gw, "packet_too_big");
    let p = ping_df("fd00:0:0:2::3");
    assert!(
        p.stdout
            .contains("From fd00:0:0:1::1 icmp_seq=1 Packet too big: mtu=1280"),
        "{p}"
    );
    assert!(gw_counter(&gw, "packet_too_big") > ptb);
    let errors = wait_for(&cap_err, "packet too big");
    assert!(
        errors.contains(
            "10.0.0.1 > 10.0.0.2: ICMP 192.0.2.4 unreachable - need to frag (mtu 1280), length 556"
        ) && errors.contains(
            "fd00:0:0:1::1 > fd00:0:0:1::2: ICMP6, packet too big, mtu 1280, length 1240"
        ),
        "the ICMP errors the inside host received:\n{errors}"
    );
    // tracepath (UDP probes with DF, growing TTL) reads both errors through the socket's
    // error queue, matched by their quotes: hop 1 is the gateway (time exceeded, then
    // fragmentation needed / packet too big with 1280), and the destination is reached.
    for dst in ["192.0.2.3", "fd00:0:0:2::4"] {
        let t = gw.exec(&ns_in, &["tracepath", "-n", "-m", "4", dst]);
        let gw_addr = if dst.contains(':') {
            "fd00:0:0:1::1"
        } else {
            "10.0.0.1"
        };
        assert!(
            t.stdout.contains(&format!(" 1:  {gw_addr} "))
                && t.stdout.contains("pmtu 1280")
                && t.stdout.contains(&format!("{dst} "))
                && t.stdout.contains("reached")
                && t.stdout.contains("Resume: pmtu 1280"),
            "tracepath {dst}:\n{t}"
        );
    }
    // Having learned the path MTU, Linux sends 1280-byte fragments, and they cross.
    let p = ping_size(&gw, "fd00:0:0:2::3", 3000);
    assert!(p.stdout.contains("3008 bytes from fd00:0:0:2::3"), "{p}");

    // Changing the MTU of a port whose tap moved to another namespace: net_tap cannot
    // (its ioctl finds no such interface here), so the reload is refused by name.
    let up = gw.scratch.path("mtu1400.toml");
    std::fs::write(&up, outside_with("mtu = 1400")).unwrap();
    let r = gw.ctl(&["reload", "--config", up.to_str().unwrap()]);
    assert!(!r.ok, "{r}");
    assert!(
        r.stderr
            .contains("port[1].mtu: 1280 -> 1400: the device refused it while running")
            && r.stderr
                .contains("needs a restart; the running configuration stays"),
        "{r}"
    );
    assert!(gw.ctl_ok(&["config-show"]).contains("mtu = 1280"));
    assert_eq!(link_mtu(&gw, &ns_out, &tap_out), 1280);

    let out = gw.stop();
    assert!(out.status.success(), "{out}");
}
