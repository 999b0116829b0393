//! Reloading the running gateway between two network namespaces (`net_tap` ports, as
//! tests/gw_tap.rs): an outside→inside TCP connection is refused; `ctgate-ctl reload`
//! with a DNAT rule added to the file in force; the same connection now succeeds, byte
//! for byte; a TCP transfer running across the reloads completes byte for byte; an
//! invalid file is refused with its `FILE:LINE` error (exit 1, stderr, and ctgate's log)
//! and changes nothing; SIGHUP reloads too. Meanwhile `route-show`, `neigh-show` and
//! `nat-show` (whose counts match the dump) show the tables (`neigh-flush` empties the
//! neighbour table, and the next connection resolves the host again by ARP), and
//! `config-show` reloads to the same configuration, and the metrics endpoint answers during the transfer and
//! passes `promtool check metrics`. Needs root; run under
//! `flock /tmp/ctgate-netns.lock`.
#![cfg(feature = "dpdk")]

mod common;
mod gw_tapnet;

use std::time::{Duration, Instant};

use gw_tapnet::*;

const DNAT: &str =
    "\n[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:8080\"\nto = \"10.0.0.2:8080\"\n";

#[test]
fn reload_adds_a_port_forward_without_losing_a_running_transfer() {
    // The metrics endpoint on a free loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        ctgate::config::EMBEDDED_DEFAULT
    );
    let mut gw = Gw::start("reload", Some(&base));
    let config = gw.scratch.path("gw.toml");
    let www = gw.scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = blob(&www, "blob", 12 << 20);
    let small = blob(&www, "small", 300 << 10);
    let (ns_in, ns_out) = (gw.ns_in.clone(), gw.ns_out.clone());
    gw.http_server(&ns_out, "192.0.2.2", 8000, &www);
    let in_log = gw.http_server(&ns_in, "10.0.0.2", 8080, &www);

    // Outside → inside through the gateway's address: no DNAT rule, refused.
    let forward = |gw: &Gw, secs: &str, to: &str| {
        gw.exec(
            &ns_out,
            &[
                "curl",
                "-sS",
                "--max-time",
                secs,
                "-o",
                to,
                "-w",
                "%{http_code}",
                "http://192.0.2.1:8080/small",
            ],
        )
    };
    let got_fwd = gw.scratch.path("got-fwd");
    let c = forward(&gw, "3", got_fwd.to_str().unwrap());
    assert!(
        !c.ok,
        "outside→inside went through without a DNAT rule:\n{c}"
    );
    assert!(!std::fs::read_to_string(&in_log).unwrap().contains("\"GET "));

    // A 12 MiB download at 1 MiB/s from inside, running across the reloads.
    let got = gw.scratch.path("got");
    let curl_log = gw.scratch.path("curl.log");
    gw.spawn_in(
        &ns_in,
        &[
            "curl",
            "-sS",
            "--limit-rate",
            "1M",
            "--max-time",
            "60",
            "-o",
            got.to_str().unwrap(),
            "http://192.0.2.2:8000/blob",
        ],
        &curl_log,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&got).map_or(0, |m| m.len()) < 256 << 10 {
        assert!(Instant::now() < deadline, "the transfer did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let conns_before = gw.ctl_num(&["ct-get-nconns"]);

    // An invalid file: refused with FILE:LINE, exit 1, nothing changes.
    let bad = gw.scratch.path("bad.toml");
    std::fs::write(
        &bad,
        format!("{base}{DNAT}").replace("role = \"outside\"", "role = 7"),
    )
    .unwrap();
    let bad_line = format!("{base}{DNAT}")
        .lines()
        .position(|l| l == "role = \"outside\"")
        .unwrap()
        + 1;
    let r = gw.ctl(&["reload", "--config", bad.to_str().unwrap()]);
    assert!(!r.ok, "an invalid file was accepted:\n{r}");
    assert!(
        r.stderr
            .contains(&format!("{}:{bad_line}: port[1].role", bad.display())),
        "no FILE:LINE: FIELD error:\n{r}"
    );
    let c = forward(&gw, "2", got_fwd.to_str().unwrap());
    assert!(!c.ok, "the refused file changed the rules:\n{c}");

    // The file in force gets the DNAT rule; `reload` swaps it in.
    std::fs::write(&config, format!("{base}{DNAT}")).unwrap();
    let r = gw.ctl_ok(&["reload"]);
    assert!(
        r.starts_with(&format!(
            "reloaded generation 2 from {}\n",
            config.display()
        )),
        "{r}"
    );
    assert!(
        std::fs::metadata(&got).unwrap().len() < data.len() as u64,
        "the transfer should still be running at the reload"
    );
    assert!(
        gw.ctl_num(&["ct-get-nconns"]) >= conns_before,
        "connections lost by the reload"
    );
    let c = forward(&gw, "10", got_fwd.to_str().unwrap());
    assert!(
        c.ok && c.stdout == "200",
        "the forwarded connection failed:\n{c}"
    );
    assert!(
        std::fs::read(&got_fwd).unwrap() == small,
        "the forwarded file differs"
    );

    // The tables: routes, neighbours, NAT (its counts match the dump's).
    let routes = gw.ctl_ok(&["route-show"]);
    for want in [
        "10.0.0.0/24 connected port 0\n",
        "192.0.2.0/24 connected port 1\n",
        "0.0.0.0/0 via 192.0.2.2 port 1\n",
        "::/0 via fd00:0:0:2::2 port 1\n",
    ] {
        assert!(routes.contains(want), "no {want:?} in:\n{routes}");
    }
    // The inside host's own MAC, as its stack has it.
    let mac_in = gw
        .exec(
            &ns_in,
            &["cat", &format!("/sys/class/net/{}/address", gw.tap_in)],
        )
        .stdout
        .trim()
        .to_string();
    let inside_line = |t: &str| -> Option<String> {
        t.lines()
            .find(|l| l.starts_with("10.0.0.2 "))
            .map(str::to_string)
    };
    let neigh = gw.ctl_ok(&["neigh-show"]);
    assert!(
        inside_line(&neigh).is_some_and(|l| l
            .starts_with(&format!("10.0.0.2 mac={mac_in} port=0 state="))
            && !l.contains(" state=incomplete ")),
        "10.0.0.2 is not resolved to {mac_in}:\n{neigh}"
    );
    let nat = gw.ctl_ok(&["nat-show"]);
    let dump = gw.ctl_ok(&["dump-conntrack"]);
    let snat_ports: std::collections::BTreeSet<&str> = dump
        .lines()
        .filter(|l| l.starts_with("tcp,orig=(src=10.0.0.2,"))
        .filter_map(|l| l.split("reply=(").nth(1))
        .filter(|r| r.contains("dst=192.0.2.1,"))
        .filter_map(|r| r.split("dport=").nth(1))
        .map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .collect();
    assert!(
        !snat_ports.is_empty(),
        "the running transfer is SNATed:\n{dump}"
    );
    assert!(
        nat.contains("snat pool=192.0.2.1\n")
            && nat.contains("dnat proto=tcp match=192.0.2.1:8080 to=10.0.0.2:8080\n")
            && nat.contains(&format!(
                "pool 192.0.2.1: tcp={} udp=0 icmp=0 other=0\n",
                snat_ports.len()
            )),
        "nat-show does not match the dump:\n{nat}\n{dump}"
    );

    // The metrics endpoint answers during the transfer, in the exposition format (the
    // refused connections to the gateway's own address before the DNAT rule: `local`).
    std::thread::sleep(Duration::from_millis(1100));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let m = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&m.stdout).into_owned();
    assert!(
        m.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("ctgate_config_generation"), 2.0);
    assert!(value("ctgate_conntrack_connections") >= 1.0, "{text}");
    assert!(
        value("ctgate_port_rx_packets_total{port=\"1\"}") > 1000.0,
        "{text}"
    );
    assert!(
        value("ctgate_drops_total{reason=\"local\"}") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("ctgate_zone_connections{zone=\"1\"} "),
        "{text}"
    );
    assert!(
        text.contains("ctgate_nat_pool_ports_in_use{address=\"192.0.2.1\",proto=\"tcp\"} "),
        "{text}"
    );
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, in ci/setup)");
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(check.stdin.take());
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // config-show reloads to the same configuration.
    let shown = gw.ctl_ok(&["config-show"]);
    assert!(
        shown.starts_with(&format!(
            "# ctgate running configuration\n# generation: 2\n# source: {}\n",
            config.display()
        )),
        "{shown}"
    );
    let saved = gw.scratch.path("shown.toml");
    std::fs::write(&saved, &shown).unwrap();
    let r = gw.ctl_ok(&["reload", "--config", saved.to_str().unwrap()]);
    assert!(
        r.starts_with(&format!("reloaded generation 3 from {}\n", saved.display())),
        "{r}"
    );
    let again = gw.ctl_ok(&["config-show"]);
    let body = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        body(&again),
        body(&shown),
        "the round trip changed the configuration"
    );

    // SIGHUP: the file in force again, generation 4.
    let run = gw.run.as_mut().unwrap();
    run.signal("HUP");
    let l = run.wait_for_line(Duration::from_secs(10), |l| {
        l.starts_with("ctgate: SIGHUP: reloaded generation 4")
    });
    if l.is_none() {
        let out = gw.stop();
        panic!("no SIGHUP reload line:\n{out}");
    }

    // The transfer that ran across both reloads completes, byte for byte.
    let deadline = Instant::now() + Duration::from_secs(40);
    while std::fs::metadata(&got).map_or(0, |m| m.len()) < data.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the transfer did not complete: {} of {} bytes\n{}",
            std::fs::metadata(&got).map_or(0, |m| m.len()),
            data.len(),
            std::fs::read_to_string(&curl_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(std::fs::read(&got).unwrap() == data, "the transfer differs");

    // neigh-flush empties the neighbour table: the idle inside host is gone from
    // neigh-show, and the next connection to it resolves it again (an ARP request
    // answered, a newly learned entry) and goes through.
    let gateway_counter = |gw: &Gw, name: &str| -> u64 {
        let s = gw.ctl_ok(&["stats"]);
        s.lines()
            .find(|l| l.starts_with("gateway "))
            .and_then(|l| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no gateway {name}= in:\n{s}"))
    };
    let neigh = gw.ctl_ok(&["neigh-show"]);
    assert!(inside_line(&neigh).is_some(), "{neigh}");
    let (learned, asked) = (
        gateway_counter(&gw, "neigh_learned"),
        gateway_counter(&gw, "arp_requests"),
    );
    let f = gw.ctl_ok(&["neigh-flush"]);
    let flushed: usize = f
        .strip_prefix("flushed ")
        .and_then(|r| r.strip_suffix(" neighbours\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not `flushed N neighbours`: {f:?}"));
    assert!(flushed >= 2, "10.0.0.2 and 192.0.2.2 were resolved: {f}");
    let neigh = gw.ctl_ok(&["neigh-show"]);
    assert!(
        inside_line(&neigh).is_none(),
        "10.0.0.2 still listed after neigh-flush:\n{neigh}"
    );
    std::fs::remove_file(&got_fwd).unwrap();
    let c = forward(&gw, "10", got_fwd.to_str().unwrap());
    assert!(
        c.ok && c.stdout == "200",
        "the connection after neigh-flush failed:\n{c}"
    );
    assert!(
        std::fs::read(&got_fwd).unwrap() == small,
        "the file after neigh-flush differs"
    );
    assert!(
        gateway_counter(&gw, "arp_requests") > asked,
        "no ARP request after neigh-flush"
    );
    assert!(
        gateway_counter(&gw, "neigh_learned") > learned,
        "nothing learned again after neigh-flush"
    );
    let neigh = gw.ctl_ok(&["neigh-show"]);
    assert!(
        inside_line(&neigh).is_some_and(|l| l.starts_with(&format!(
            "10.0.0.2 mac={mac_in} port=0 state=reachable age="
        ))),
        "10.0.0.2 not resolved again to {mac_in}:\n{neigh}"
    );

    let out = gw.stop();
    assert!(out.status.success(), "{out}");
    assert!(
        out.stderr
            .contains(&format!("reload refused: {}:{bad_line}:", bad.display())),
        "the refusal is not in ctgate's log:\n{out}"
    );
}
