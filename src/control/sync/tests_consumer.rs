//! Two sync consumers over real loopback UDP sockets, each with its own tracker: the
//! standby learns the active one's connections, `sync-status` shows them, and datagrams
//! from elsewhere or with the wrong key are dropped and counted.

use super::consumer::SyncConsumer;
use crate::config::{SyncConfig, SyncMode};
use crate::conntrack::testpkt::{tcp, udp};
use crate::conntrack::{Conntrack, CtConfig};
use crate::test_dir::TestDir;
use crate::wire::parse::tcp_flags::{ACK, SYN};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tracker(seed: u64) -> Arc<Conntrack> {
    Arc::new(Conntrack::new(CtConfig {
        max_conns: 10_000,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: true,
        hash_seed: Some(seed),
    }))
}

/// A free loopback UDP address (bound and released).
fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
}

fn key_file(dir: &TestDir, name: &str, key: &str) -> PathBuf {
    let p = dir.file(name, key);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn pair(
    keys: (Option<PathBuf>, Option<PathBuf>),
) -> (SyncConsumer, SyncConsumer, Arc<Conntrack>, Arc<Conntrack>) {
    let (la, lb) = (free_addr(), free_addr());
    let cfg = |local, peer, key_file| SyncConfig {
        local,
        peers: vec![peer],
        mode: SyncMode::ActiveStandby,
        key_file,
        refresh_secs: 10,
    };
    let (a, b) = (tracker(1), tracker(2));
    let start = Instant::now();
    let ca = SyncConsumer::new(&a, &cfg(la, lb, keys.0), start).unwrap();
    let cb = SyncConsumer::new(&b, &cfg(lb, la, keys.1), start).unwrap();
    (ca, cb, a, b)
}

/// Steps both consumers every 10 ms of tracker time until `done` or 5 s of real time.
fn run_until(
    ca: &mut SyncConsumer,
    cb: &mut SyncConsumer,
    now: &mut u64,
    done: impl Fn(&SyncConsumer) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        *now += 10;
        ca.step(*now);
        cb.step(*now);
        if done(cb) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn standby_learns_connections_over_loopback_udp_and_sync_status_shows_the_peer() {
    let dir = TestDir::new("synctest");
    let k = key_file(&dir, "pair.key", "a key both instances share\n");
    let (mut ca, mut cb, a, b) = pair((Some(k.clone()), Some(k)));
    let mut w = a.worker(0);
    for i in 0..100u16 {
        w.process(
            &tcp("10.0.0.2", "192.0.2.2", 30000 + i, 80, SYN, 1, 0, 65535, 0),
            0,
            true,
            1,
        );
        w.process(
            &tcp(
                "192.0.2.2",
                "10.0.0.2",
                80,
                30000 + i,
                SYN | ACK,
                9,
                2,
                65535,
                0,
            ),
            0,
            true,
            1,
        );
        w.process(&udp("10.0.0.2", "198.51.100.1", 40000 + i, 53), 0, true, 1);
    }
    let mut now = 1;
    run_until(&mut ca, &mut cb, &mut now, |_| b.n_conns() == 200);
    assert_eq!(b.n_conns(), 200);
    let mut la: Vec<String> = a.all_conns().iter().map(|s| s.ovs_line(false, 0)).collect();
    let mut lb: Vec<String> = b.all_conns().iter().map(|s| s.ovs_line(false, 0)).collect();
    la.sort();
    lb.sort();
    assert_eq!(la, lb);
    run_until(&mut ca, &mut cb, &mut now, |cb| {
        cb.status_text().contains("state=connected")
    });
    let st = cb.status_text();
    assert!(st.starts_with("sync local=127.0.0.1:"), "{st}");
    assert!(
        st.contains("mode=active-standby auth=hmac-sha256 peers=1"),
        "{st}"
    );
    assert!(st.contains("state=connected"), "{st}");
    assert!(st.contains("conns_received="), "{st}");
    // A's own connections stayed A's: B's walked copies of them did not replace them.
    let bad: Vec<String> = a
        .all_conns()
        .iter()
        .filter(|s| s.origin != 0)
        .map(|s| s.ovs_line(true, now))
        .collect();
    assert!(bad.is_empty(), "{} {bad:?}", bad.len());
    assert!(b.all_conns().iter().all(|s| s.origin == 1));
    assert!(
        st.contains("dropped malformed=0 unauthenticated=0 unknown_peer=0"),
        "{st}"
    );
    // A datagram from an address that is not the peer.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lb_addr: SocketAddr = st
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.strip_prefix("local="))
        .unwrap()
        .parse()
        .unwrap();
    stranger.send_to(b"CTGS hello", lb_addr).unwrap();
    run_until(&mut ca, &mut cb, &mut now, |cb| {
        cb.status_text().contains("unknown_peer=1")
    });
    assert!(cb.status_text().contains("unknown_peer=1"));
    assert_eq!(b.n_conns(), 200);
}

#[test]
fn peer_with_another_key_installs_nothing_and_is_counted_unauthenticated() {
    let dir = TestDir::new("synctest");
    let (mut ca, mut cb, a, b) = pair((
        Some(key_file(&dir, "a.key", "the key of instance A")),
        Some(key_file(&dir, "b.key", "the key of instance B")),
    ));
    a.worker(0)
        .process(&udp("10.0.0.2", "198.51.100.1", 4000, 53), 0, true, 1);
    let mut now = 1;
    run_until(&mut ca, &mut cb, &mut now, |cb| {
        !cb.status_text().contains("unauthenticated=0")
    });
    let st = cb.status_text();
    assert!(!st.contains("unauthenticated=0"), "{st}");
    assert!(st.contains("state=lost"), "{st}");
    assert_eq!(b.n_conns(), 0);
}

/// A counter of peer `n`'s line in a `sync-status` text.
fn peer_field(status: &str, n: usize, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("peer {n} ")))
        .unwrap_or_else(|| panic!("no peer {n} in {status}"));
    crate::control::counter_lines::field_u64(line, key).unwrap()
}

#[test]
fn reload_appends_a_peer_and_changes_the_key_live_keeping_the_running_channel() {
    let dir = TestDir::new("synctest");
    let (la, lb, lc) = (free_addr(), free_addr(), free_addr());
    let cfg = |local, peers: &[SocketAddr], key_file: &Option<PathBuf>, refresh_secs| SyncConfig {
        local,
        peers: peers.to_vec(),
        mode: SyncMode::ActiveStandby,
        key_file: key_file.clone(),
        refresh_secs,
    };
    let (a, b, c) = (tracker(1), tracker(2), tracker(3));
    let start = Instant::now();
    let mut ca = SyncConsumer::new(&a, &cfg(la, &[lb], &None, 10), start).unwrap();
    let mut cb = SyncConsumer::new(&b, &cfg(lb, &[la], &None, 10), start).unwrap();
    let mut cc = SyncConsumer::new(&c, &cfg(lc, &[la], &None, 10), start).unwrap();
    let mut now = 1;
    let mut run = |ca: &mut SyncConsumer,
                   cb: &mut SyncConsumer,
                   cc: &mut SyncConsumer,
                   done: &dyn Fn(&SyncConsumer) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !done(ca) {
            now += 10;
            for x in [&mut *ca, &mut *cb, &mut *cc] {
                x.step(now);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let flows = |from: u16, to: u16| {
        let mut w = a.worker(0);
        for i in from..to {
            w.process(&udp("10.0.0.2", "198.51.100.1", 40000 + i, 53), 0, true, 1);
        }
    };
    flows(0, 50);
    run(&mut ca, &mut cb, &mut cc, &|ca| {
        b.n_conns() == 50 && !ca.status_text().contains("unknown_peer=0")
    });
    assert_eq!(b.n_conns(), 50);
    // C is not A's peer yet: A drops what C sends, C learns nothing.
    assert_eq!(c.n_conns(), 0);
    assert!(!ca.status_text().contains("unknown_peer=0"));
    let sent_before = peer_field(&ca.status_text(), 1, "msgs_sent");
    let resyncs_b = peer_field(&cb.status_text(), 1, "resyncs_received");

    // Peers removed or reordered are refused, and change nothing.
    let kept = ca.reconfigure_sync(Some(&cfg(la, &[lc, lb], &None, 10)));
    assert!(kept.unwrap().contains("kept until the next start"));
    assert!(ca.status_text().contains(&format!("peer 1 {lb} ")));
    // C appended (and a new refresh interval): A streams its table to C and asks for
    // C's, without touching its channel to B.
    let line = ca.reconfigure_sync(Some(&cfg(la, &[lb, lc], &None, 5)));
    assert_eq!(
        line.as_deref(),
        Some("sync: reconfigured: mode=active-standby auth=none refresh_interval=5 peers=2 (1 added)")
    );
    assert_eq!(
        ca.reconfigure_sync(Some(&cfg(la, &[lb, lc], &None, 5))),
        None
    );
    run(&mut ca, &mut cb, &mut cc, &|_| c.n_conns() == 50);
    assert_eq!(c.n_conns(), 50);
    assert!(c.all_conns().iter().all(|s| s.origin == 1));
    let st = ca.status_text();
    assert!(st.contains(&format!("peer 2 {lc} ")), "{st}");
    assert!(peer_field(&st, 1, "msgs_sent") >= sent_before && sent_before > 0);
    assert_eq!(
        peer_field(&cb.status_text(), 1, "resyncs_received"),
        resyncs_b
    );

    // A key for all three, reloaded one after the other: what is sent meanwhile is
    // refused, then retransmitted; new connections reach both peers, authenticated.
    let k = Some(key_file(&dir, "reload.key", "the pair's new shared key"));
    for (x, local, peers) in [
        (&mut ca, la, vec![lb, lc]),
        (&mut cb, lb, vec![la]),
        (&mut cc, lc, vec![la]),
    ] {
        let line = x
            .reconfigure_sync(Some(&cfg(local, &peers, &k, 5)))
            .unwrap();
        assert!(line.contains("auth=hmac-sha256"), "{line}");
    }
    flows(50, 60);
    run(&mut ca, &mut cb, &mut cc, &|_| {
        b.n_conns() == 60 && c.n_conns() == 60
    });
    assert_eq!((b.n_conns(), c.n_conns()), (60, 60));
    assert!(cb.status_text().contains("auth=hmac-sha256"));
    // A key file that cannot be read keeps everything as it runs.
    let bad = Some(PathBuf::from("/nonexistent/ctgate-sync.key"));
    let line = ca
        .reconfigure_sync(Some(&cfg(la, &[lb, lc], &bad, 5)))
        .unwrap();
    assert!(line.ends_with("; the running [sync] is kept"), "{line}");
    assert!(ca.status_text().contains("auth=hmac-sha256"));
}
