//! The FTP and TFTP application layer gateways (issue 14) as applications see them: real
//! Linux stacks in the namespaces of `gw_tapnet` around the gateway on `net_tap` ports.
//!
//! * A real FTP server outside (`gw_tapnet/ftp_server.py`, pyftpdlib: it refuses an
//!   active data connection to any address but the control connection's peer) and `curl`
//!   inside: a 1 MiB file downloaded and uploaded, byte for byte, through SNAT, in every
//!   mode curl has: active `PORT` and `EPRT`, passive `PASV` (227) and `EPSV` (229), over
//!   IPv4, and `EPRT`/`EPSV` over IPv6. The server's log shows the announcement as the
//!   ALG rewrote it (the pool address), and the gateway's table shows `helper=ftp` on the
//!   control connection and the data connection with its parent.
//! * The same active download with a configuration without `[[alg]]` fails (the server
//!   refuses the inside address): the helper is what makes active FTP work.
//! * `in.tftpd` (tftpd-hpa) outside and `tftp` (tftp-hpa) inside: a file fetched through
//!   SNAT (the server answers from a new port); without the helper it is not.
//! * A DNAT rule to an FTP server inside: an outside `curl` downloads in passive mode,
//!   using the address of the `227` reply, which the ALG rewrote to the public one.
//!
//! Needs root, curl, python3-pyftpdlib, tftpd-hpa and tftp-hpa (ci/setup installs them).
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::edit_config;
use gw_tapnet::*;

const EMBEDDED: &str = include_str!("../config/ctgate.toml");

/// The embedded configuration with every `[[alg]]` table taken out (from its header to
/// the next table header). Panics when the embedded configuration has none (its default
/// changed: the test would prove nothing).
fn without_alg(text: &str) -> String {
    assert!(
        text.lines().any(|l| l.trim() == "[[alg]]"),
        "the embedded configuration has no [[alg]] table any more"
    );
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skipping = t == "[[alg]]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.contains("helper ="), "{out}");
    out
}

/// The FTP server script.
fn ftp_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gw_tapnet/ftp_server.py")
}

/// Debian's python3, which has python3-pyftpdlib (a python3 earlier on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// Starts the FTP server in `ns` on `addr`:`port` serving `root`; returns its log.
/// Waits until it listens.
fn ftp_server(gw: &mut Gw, ns: &str, addr: &str, port: u16, root: &Path) -> PathBuf {
    let log = gw.scratch.path(&format!("ftp-{ns}-{port}.log"));
    let script = ftp_script();
    let p = port.to_string();
    gw.spawn_in(
        ns,
        &[
            PYTHON,
            "-u",
            script.to_str().unwrap(),
            addr,
            &p,
            root.to_str().unwrap(),
        ],
        &log,
    );
    let shown = if addr.contains(':') {
        format!("[{addr}]:{port} ")
    } else {
        format!("{addr}:{port} ")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if gw.exec(ns, &["ss", "-ltn"]).stdout.contains(&shown) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the FTP server in {ns} did not listen on {shown}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How curl opens the data connection.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Active, `PORT h1,h2,h3,h4,p1,p2` (IPv4 only).
    Port,
    /// Active, `EPRT |af|addr|port|`.
    Eprt,
    /// Passive, `PASV` and its `227` reply (IPv4 only), the reply's address used.
    Pasv,
    /// Passive, `EPSV` and its `229` reply.
    Epsv,
}

impl Mode {
    fn curl_args(self) -> &'static [&'static str] {
        match self {
            Mode::Port => &["-P", "-", "--disable-eprt"],
            Mode::Eprt => &["-P", "-"],
            Mode::Pasv => &["--disable-epsv", "--no-ftp-skip-pasv-ip"],
            Mode::Epsv => &[],
        }
    }

    /// The command curl sends, as its `-v` shows it (`> CMD`).
    fn command(self) -> &'static str {
        match self {
            Mode::Port => "> PORT ",
            Mode::Eprt => "> EPRT ",
            Mode::Pasv => "> PASV",
            Mode::Epsv => "> EPSV",
        }
    }
}

/// `curl -v` in `ns` with `mode`, then `args` (the transfer); a 30 s cap.
fn curl(gw: &Gw, ns: &str, mode: Mode, args: &[&str]) -> Out {
    let mut a = vec!["curl", "-sS", "-v", "-g", "--max-time", "30"];
    a.extend_from_slice(mode.curl_args());
    a.extend_from_slice(args);
    gw.exec(ns, &a)
}

/// The URL of `file` on the FTP server at `host`.
fn url(host: &str, file: &str) -> String {
    if host.contains(':') {
        format!("ftp://[{host}]/{file}")
    } else {
        format!("ftp://{host}/{file}")
    }
}

/// Downloads `blob` from `host` into `got` and uploads `data` as `up` with `mode`; both
/// must arrive byte for byte, each transfer having used `mode`'s command.
#[allow(clippy::too_many_arguments)]
fn download_and_upload(
    gw: &Gw,
    ns: &str,
    mode: Mode,
    host: &str,
    root: &Path,
    data: &[u8],
    tag: &str,
) {
    let got = gw.scratch.path(&format!("got-{tag}"));
    let o = curl(
        gw,
        ns,
        mode,
        &["-o", got.to_str().unwrap(), &url(host, "blob")],
    );
    assert!(o.ok, "{tag}: download with {mode:?}:\n{o}");
    assert!(
        o.stderr.contains(mode.command()),
        "{tag}: curl did not use {mode:?}:\n{o}"
    );
    let d = std::fs::read(&got).unwrap_or_default();
    assert!(
        d == data,
        "{tag}: the downloaded file differs ({} bytes, want {})",
        d.len(),
        data.len()
    );
    let up = format!("up-{tag}");
    let src = gw.scratch.path("upload-src");
    std::fs::write(&src, data).unwrap();
    let o = curl(
        gw,
        ns,
        mode,
        &["-T", src.to_str().unwrap(), &url(host, &up)],
    );
    assert!(o.ok, "{tag}: upload with {mode:?}:\n{o}");
    assert!(
        o.stderr.contains(mode.command()),
        "{tag}: curl did not use {mode:?}:\n{o}"
    );
    let u = std::fs::read(root.join(&up)).unwrap_or_default();
    assert!(
        u == data,
        "{tag}: the uploaded file differs ({} bytes, want {})",
        u.len(),
        data.len()
    );
}

/// The FTP server's log.
fn log_of(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The dump line of the TCP connection whose original tuple starts with `orig` (e.g.
/// `src=10.0.0.2,dst=192.0.2.2,`) and has destination port `dport`.
fn conn_lines<'a>(dump: &'a str, orig: &str, dport: u16) -> Vec<&'a str> {
    let want = format!("tcp,orig=({orig}");
    let port = format!(",dport={dport}),reply=");
    dump.lines()
        .filter(|l| l.starts_with(&want) && l.contains(&port))
        .collect()
}

/// A 1 MiB file in a fresh FTP root.
fn ftp_root(gw: &Gw, name: &str) -> (PathBuf, Vec<u8>) {
    let root = gw.scratch.path(name);
    std::fs::create_dir_all(&root).unwrap();
    let data = blob(&root, "blob", 1 << 20);
    (root, data)
}

#[test]
fn ftp_through_snat_over_ipv4_in_active_and_passive_modes_moves_1_mib_both_ways() {
    let mut gw = Gw::start("algftp4", None);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let (root, data) = ftp_root(&gw, "ftp");
    let log = ftp_server(&mut gw, &ns_out, "192.0.2.2", 21, &root);
    for mode in [Mode::Port, Mode::Eprt, Mode::Pasv, Mode::Epsv] {
        let tag = format!("{mode:?}").to_lowercase();
        download_and_upload(&gw, &ns_in, mode, "192.0.2.2", &root, &data, &tag);
    }
    // What reached the server: the announcements of the inside client rewritten to the
    // pool address (PORT 10,0,0,2,… grows by 3 bytes: the sequence numbers after it are
    // shifted for the rest of the connection, which the transfers above survived).
    let server = log_of(&log);
    let received: Vec<&str> = server
        .lines()
        .filter_map(|l| l.split_once("<- ").map(|(_, c)| c))
        .filter(|c| c.starts_with("PORT") || c.starts_with("EPRT"))
        .collect();
    assert_eq!(received.len(), 4, "two PORT and two EPRT:\n{server}");
    for c in &received {
        assert!(
            c.starts_with("PORT 192,0,2,1,") || c.starts_with("EPRT |1|192.0.2.1|"),
            "{c}: not rewritten to the pool address\n{server}"
        );
    }
    assert!(!server.contains("10,0,0,2") && !server.contains("10.0.0.2"));
    assert!(!server.contains("Rejected data connection"), "{server}");

    // The gateway's table: control connections with the helper, data connections with
    // their parent (active: opened by the server towards the pool address).
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    let ctl = conn_lines(&dump, "src=10.0.0.2,dst=192.0.2.2,", 21);
    assert_eq!(ctl.len(), 8, "eight control connections:\n{dump}");
    assert!(ctl.iter().all(|l| l.ends_with(",helper=ftp")), "{dump}");
    let more = gw.ctl_ok(&["dump-conntrack", "-m"]);
    let active_data: Vec<&str> = more
        .lines()
        .filter(|l| l.starts_with("tcp,orig=(src=192.0.2.2,dst=192.0.2.1,"))
        .collect();
    assert_eq!(
        active_data.len(),
        4,
        "four active data connections:\n{more}"
    );
    for l in &active_data {
        assert!(
            l.contains(",reply=(src=10.0.0.2,dst=192.0.2.2,")
                && l.contains(",parent=(src=10.0.0.2,dst=192.0.2.2,"),
            "{l}"
        );
    }
    let passive_data: Vec<&str> = more
        .lines()
        .filter(|l| {
            l.starts_with("tcp,orig=(src=10.0.0.2,dst=192.0.2.2,")
                && !l.contains(",dport=21),reply=")
        })
        .collect();
    assert_eq!(
        passive_data.len(),
        4,
        "four passive data connections:\n{more}"
    );
    assert!(
        passive_data
            .iter()
            .all(|l| l.contains(",parent=(src=10.0.0.2,dst=192.0.2.2,")),
        "{more}"
    );
    // The expectations live as long as their control connections (still in the table,
    // closing): one per announcement, each naming its parent.
    let exp = gw.ctl_ok(&["dump-conntrack-exp"]);
    let lines: Vec<&str> = exp.lines().collect();
    assert_eq!(lines.len(), 8, "{exp}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("tcp,orig=(")
                && l.contains(",parent=(src=10.0.0.2,dst=192.0.2.2,")),
        "{exp}"
    );
    assert_eq!(gw.ctl_ok(&["dump-conntrack-exp", "zone=2"]), "");
}

#[test]
fn ftp_through_snat_over_ipv6_with_eprt_and_epsv_moves_1_mib_both_ways() {
    let mut gw = Gw::start("algftp6", None);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let (root, data) = ftp_root(&gw, "ftp");
    let log = ftp_server(&mut gw, &ns_out, "fd00:0:0:2::2", 21, &root);
    for mode in [Mode::Eprt, Mode::Epsv] {
        let tag = format!("{mode:?}6").to_lowercase();
        download_and_upload(&gw, &ns_in, mode, "fd00:0:0:2::2", &root, &data, &tag);
    }
    let server = log_of(&log);
    let eprt: Vec<&str> = server
        .lines()
        .filter_map(|l| l.split_once("<- ").map(|(_, c)| c))
        .filter(|c| c.starts_with("EPRT"))
        .collect();
    assert_eq!(eprt.len(), 2, "{server}");
    assert!(
        eprt.iter().all(|c| c.starts_with("EPRT |2|fd00:0:0:2::1|")),
        "not rewritten to the pool address:\n{server}"
    );
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    let ctl = conn_lines(&dump, "src=fd00:0:0:1::2,dst=fd00:0:0:2::2,", 21);
    assert_eq!(ctl.len(), 4, "four control connections:\n{dump}");
    assert!(ctl.iter().all(|l| l.ends_with(",helper=ftp")), "{dump}");
}

#[test]
fn active_ftp_fails_through_snat_without_the_helper() {
    let mut gw = Gw::start("algnone", Some(&without_alg(EMBEDDED)));
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let (root, data) = ftp_root(&gw, "ftp");
    let log = ftp_server(&mut gw, &ns_out, "192.0.2.2", 21, &root);
    let got = gw.scratch.path("got");
    // Passive works without a helper (the client opens the data connection outwards).
    let o = curl(
        &gw,
        &ns_in,
        Mode::Epsv,
        &["-o", got.to_str().unwrap(), &url("192.0.2.2", "blob")],
    );
    assert!(o.ok, "passive download without the helper:\n{o}");
    assert!(std::fs::read(&got).unwrap() == data);
    // Active does not: PORT names the inside address, which the server refuses.
    let _ = std::fs::remove_file(&got);
    let o = curl(
        &gw,
        &ns_in,
        Mode::Port,
        &["-o", got.to_str().unwrap(), &url("192.0.2.2", "blob")],
    );
    assert!(!o.ok, "active FTP worked without the helper:\n{o}");
    let server = log_of(&log);
    assert!(
        server.contains("<- PORT 10,0,0,2,") && server.contains("Rejected data connection"),
        "{server}"
    );
    assert!(std::fs::read(&got).map(|d| d != data).unwrap_or(true));
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    assert!(!dump.contains("helper="), "{dump}");
}

/// Fetches `blob` with `tftp` from inside (binary mode, a `cap`-second cap); the fetched
/// bytes (empty when it failed).
fn tftp_get(gw: &Gw, cap: u32) -> (Out, Vec<u8>) {
    let got = gw.scratch.path("tftp-got");
    let _ = std::fs::remove_file(&got);
    let c = cap.to_string();
    let o = gw.exec(
        &gw.ns_in,
        &[
            "timeout",
            &c,
            "tftp",
            "-m",
            "binary",
            "192.0.2.2",
            "-c",
            "get",
            "blob",
            got.to_str().unwrap(),
        ],
    );
    let d = std::fs::read(&got).unwrap_or_default();
    (o, d)
}

/// Starts `in.tftpd` in the foreground outside on 192.0.2.2:69 serving `dir`.
fn tftp_server(gw: &mut Gw, dir: &Path) {
    let log = gw.scratch.path("tftpd.log");
    let ns = gw.ns_out.clone();
    gw.spawn_in(
        &ns,
        &[
            "in.tftpd",
            "-L",
            "-u",
            "root",
            "-a",
            "192.0.2.2:69",
            "-s",
            dir.to_str().unwrap(),
        ],
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw
        .exec(&ns, &["ss", "-lun"])
        .stdout
        .contains("192.0.2.2:69 ")
    {
        assert!(
            Instant::now() < deadline,
            "in.tftpd did not start:\n{}",
            log_of(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tftp_fetches_a_file_through_snat() {
    let mut gw = Gw::start("algtftp", None);
    let dir = gw.scratch.path("tftp");
    std::fs::create_dir_all(&dir).unwrap();
    let data = blob(&dir, "blob", 256 << 10);
    tftp_server(&mut gw, &dir);
    let (o, got) = tftp_get(&gw, 60);
    assert!(o.ok && got == data, "tftp ({} bytes):\n{o}", got.len());
    // The transfer is a connection of its own from the server's new port to the
    // client's public one, related to the request.
    let more = gw.ctl_ok(&["dump-conntrack", "-m"]);
    let transfer: Vec<&str> = more
        .lines()
        .filter(|l| {
            l.starts_with("udp,orig=(src=192.0.2.2,dst=192.0.2.1,")
                && l.contains(",parent=(src=10.0.0.2,dst=192.0.2.2,")
                && l.contains("dport=69)")
        })
        .collect();
    assert_eq!(transfer.len(), 1, "{more}");
}

#[test]
fn tftp_through_snat_fails_without_the_helper() {
    let mut gw = Gw::start("algtftp0", Some(&without_alg(EMBEDDED)));
    let dir = gw.scratch.path("tftp");
    std::fs::create_dir_all(&dir).unwrap();
    let data = blob(&dir, "blob", 256 << 10);
    tftp_server(&mut gw, &dir);
    let (o, got) = tftp_get(&gw, 8);
    assert!(!o.ok && got != data, "tftp worked without the helper:\n{o}");
    // The server's answer from its transfer port, to the gateway's address, belongs to
    // no connection: dropped as traffic to the gateway itself.
    assert!(gw.drops("local") > 0, "no local drop");
}

#[test]
fn ftp_to_an_inside_server_behind_dnat_downloads_in_passive_mode() {
    let cfg = edit_config(
        EMBEDDED,
        &[(
            "# Port forwards from the outside",
            "[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:21\"\nto = \"10.0.0.2:21\"\n\n# Port forwards from the outside",
        )],
    );
    let mut gw = Gw::start("algdnat", Some(&cfg));
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    let (root, data) = ftp_root(&gw, "ftp");
    let log = ftp_server(&mut gw, &ns_in, "10.0.0.2", 21, &root);
    for mode in [Mode::Pasv, Mode::Epsv] {
        let got = gw.scratch.path(&format!("got-{mode:?}"));
        let o = curl(
            &gw,
            &ns_out,
            mode,
            &["-o", got.to_str().unwrap(), &url("192.0.2.1", "blob")],
        );
        assert!(o.ok, "{mode:?} download through DNAT:\n{o}");
        assert!(o.stderr.contains(mode.command()), "{o}");
        assert!(
            std::fs::read(&got).unwrap_or_default() == data,
            "{mode:?}: the file differs"
        );
        if let Mode::Pasv = mode {
            // The server said 10,0,0,2; the client read the public address and used it.
            assert!(
                o.stderr.contains("< 227 ") && o.stderr.contains("(192,0,2,1,"),
                "the 227 reply was not rewritten:\n{o}"
            );
        }
    }
    let server = log_of(&log);
    assert!(
        server.contains("-> 227 ") && server.contains("(10,0,0,2,"),
        "{server}"
    );
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    let ctl = conn_lines(&dump, "src=192.0.2.2,dst=192.0.2.1,", 21);
    assert_eq!(ctl.len(), 2, "{dump}");
    assert!(
        ctl.iter().all(
            |l| l.contains(",reply=(src=10.0.0.2,dst=192.0.2.2,sport=21,")
                && l.ends_with(",helper=ftp")
        ),
        "{dump}"
    );
}
