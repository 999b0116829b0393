//! The control socket served by a real `ControlServer` driven by `poll` in a test thread.

use super::*;
use crate::conntrack::testpkt::udp;
use crate::conntrack::{Conntrack, CtConfig};
use crate::control::commands::GatewayInfo;
use crate::control::protocol::{call, encode_request, parse_reply, Reply};
use crate::test_dir::TestDir;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

struct Fake;

impl GatewayInfo for Fake {
    fn show(&self) -> String {
        "ports: 0\n".into()
    }
    fn stats(&self) -> String {
        String::new()
    }
}

/// A server on a temporary path, polled by its own thread until dropped.
struct Harness {
    /// Removed when the harness is dropped, after its server thread stopped.
    _dir: TestDir,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    clients: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

fn temp_dir(name: &str) -> TestDir {
    TestDir::new(&format!("sock-{name}"))
}

impl Harness {
    fn start(name: &str, ct: Arc<Conntrack>) -> Harness {
        Harness::start_with(name, ct, IDLE_TIMEOUT)
    }

    fn start_with(name: &str, ct: Arc<Conntrack>, idle_timeout: Duration) -> Harness {
        let dir = temp_dir(name);
        let path = dir.path().join("ctgate.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        server.set_idle_timeout(idle_timeout);
        let stop = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(AtomicUsize::new(0));
        let (s, c) = (Arc::clone(&stop), Arc::clone(&clients));
        let thread = thread::spawn(move || {
            let mut server = server;
            let sweep = AtomicU32::new(20_000);
            let ctx = ControlContext {
                conntrack: &ct,
                sweep_interval_ms: &sweep,
                info: &Fake,
                ipf: None,
                now: 0,
            };
            while !s.load(Ordering::Relaxed) {
                let r = server.poll(&ctx, DEFAULT_BUDGET);
                c.store(r.clients, Ordering::Relaxed);
                if !r.busy {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Harness {
            _dir: dir,
            path,
            stop,
            clients,
            thread: Some(thread),
        }
    }

    fn call(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = String::new();
        match call(&self.path, cmd, &args, Some(Duration::from_secs(30)), |s| {
            out.push_str(s)
        }) {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e),
            Err(e) => panic!("{cmd}: {e}"),
        }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// Waits until the server has `n` clients.
    fn wait_clients(&self, n: usize) {
        let t0 = Instant::now();
        while self.clients.load(Ordering::Relaxed) != n {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "server still has {} clients, want {n}",
                self.clients.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tracker(max: u32, conns: u32) -> Arc<Conntrack> {
    let ct = Conntrack::new(CtConfig {
        max_conns: max,
        n_buckets: 0,
        workers: 1,
        tcp_seq_check: true,
        hash_seed: Some(5),
    });
    {
        let mut w = ct.worker(0);
        for i in 0..conns {
            let src = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            assert!(w
                .process(
                    &udp(&src, "192.0.2.1", 1000 + (i >> 24) as u16, 53),
                    0,
                    true,
                    0
                )
                .conn
                .is_some());
        }
    }
    Arc::new(ct)
}

/// Reads one reply line from a raw connection.
fn read_reply(r: &mut BufReader<UnixStream>) -> (serde_json::Value, Reply) {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).unwrap();
    assert!(n > 0, "connection closed before a reply");
    parse_reply(line.strip_suffix(b"\n").unwrap()).unwrap()
}

#[test]
fn socket_is_created_with_mode_0600_in_a_new_directory_and_removed_on_drop() {
    let dir = temp_dir("mode");
    let path = dir.path().join("sub").join("ctgate.sock");
    let server = ControlServer::bind(&path).unwrap();
    let m = fs::metadata(&path).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(dir.path().join("sub"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(server.uid(), m.uid());
    // A second server on the same live socket is refused, naming the path.
    let e = ControlServer::bind(&path).unwrap_err();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("in use"),
        "{e}"
    );
    drop(server);
    assert!(!path.exists());
    // A stale socket file (nothing listening) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let server = ControlServer::bind(&path).unwrap();
    drop(server);
    // A regular file is never replaced.
    fs::write(&path, b"x").unwrap();
    let e = ControlServer::bind(&path).unwrap_err();
    assert!(e.contains("is not a socket"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), b"x");
}

#[test]
fn peer_uid_is_the_connecting_process_uid() {
    let (a, _b) = UnixStream::pair().unwrap();
    let dir = temp_dir("uid");
    let f = dir.path().join("f");
    fs::write(&f, b"").unwrap();
    assert_eq!(peer_uid(&a).unwrap(), fs::metadata(&f).unwrap().uid());
}

#[test]
fn serves_several_clients_at_once_while_others_stall() {
    let ct = tracker(10_000, 2_000);
    // Idle clients stay for this test (the timeout has its own).
    let h = Harness::start_with("many", ct, Duration::from_secs(600));
    // A client that connects and says nothing, one that sends half a request, and one
    // that asks for a dump and never reads it.
    let _silent = h.connect();
    let mut half = h.connect();
    half.write_all(br#"{"id":1,"cmd":"ct-get"#).unwrap();
    let mut stalled = h.connect();
    for _ in 0..50 {
        stalled
            .write_all(encode_request(&Value::from(9), "dump-conntrack", &["-s".into()]).as_bytes())
            .unwrap();
    }
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let path = h.path.clone();
            thread::spawn(move || {
                for i in 0..20 {
                    let mut out = String::new();
                    let cmd = if (t + i) % 2 == 0 {
                        "ct-get-nconns"
                    } else {
                        "dump-conntrack"
                    };
                    let r = call(&path, cmd, &[], Some(Duration::from_secs(30)), |s| {
                        out.push_str(s)
                    })
                    .unwrap();
                    assert_eq!(r, Ok(()));
                    if cmd == "ct-get-nconns" {
                        assert_eq!(out, "2000\n");
                    } else {
                        assert_eq!(out.lines().count(), 2000);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // The half request completes later and is answered.
    half.write_all(b"-nconns\"}\n").unwrap();
    let mut r = BufReader::new(half);
    assert_eq!(
        read_reply(&mut r),
        (Value::from(1), Reply::Ok("2000\n".into()))
    );
}

/// Reads one reply line and then the end of the connection.
fn read_final_error(s: UnixStream) -> String {
    let mut r = BufReader::new(s);
    let (_, reply) = read_reply(&mut r);
    let mut rest = String::new();
    assert_eq!(r.read_line(&mut rest).unwrap(), 0, "not closed: {rest:?}");
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn idle_clients_cannot_lock_the_operator_out() {
    let h = Harness::start_with("idle-lockout", tracker(100, 7), Duration::from_secs(600));
    // The table full of clients that never send a byte (a few mid-line).
    let mut idle: Vec<UnixStream> = Vec::new();
    for i in 0..MAX_CLIENTS {
        let mut c = h.connect();
        if i % 4 == 0 {
            c.write_all(br#"{"id":1,"cmd":"ct-ge"#).unwrap();
        }
        idle.push(c);
        // One at a time, so "idle longest" is the order of connection.
        h.wait_clients(i + 1);
    }
    // The operator still gets an answer: its request took the place of the client idle
    // longest, which was told why.
    thread::sleep(EVICT_AFTER_IDLE);
    assert_eq!(h.call("ct-get-nconns", &[]), Ok("7\n".into()));
    let e = read_final_error(idle.remove(0));
    assert_eq!(
        e,
        format!("closed: {MAX_CLIENTS} control clients connected and this one idle longest")
    );
    // Once the operator's client left, the next request finds that place free.
    h.wait_clients(MAX_CLIENTS - 1);
    assert_eq!(h.call("ct-get-nconns", &[]), Ok("7\n".into()));
    // The others are still connected and served.
    let mut r = BufReader::new(idle.remove(0));
    r.get_mut()
        .write_all(encode_request(&Value::from(5), "ct-get-nconns", &[]).as_bytes())
        .unwrap();
    assert_eq!(
        read_reply(&mut r),
        (Value::from(5), Reply::Ok("7\n".into()))
    );
    h.wait_clients(MAX_CLIENTS - 1);
}

#[test]
fn silent_and_half_line_clients_are_closed_after_the_idle_timeout() {
    let h = Harness::start_with("idle-timeout", tracker(100, 2), Duration::from_secs(1));
    let silent = h.connect();
    let mut half = h.connect();
    half.write_all(br#"{"id":1,"cmd":"ct-get"#).unwrap();
    // A client that keeps asking is never idle for long and stays.
    let mut busy = BufReader::new(h.connect());
    for i in 0..8 {
        busy.get_mut()
            .write_all(encode_request(&Value::from(i), "ct-get-nconns", &[]).as_bytes())
            .unwrap();
        assert_eq!(
            read_reply(&mut busy),
            (Value::from(i), Reply::Ok("2\n".into()))
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read_final_error(silent),
        "closed: no complete request for 1000 ms"
    );
    assert_eq!(
        read_final_error(half),
        "closed: no complete request for 1000 ms"
    );
    h.wait_clients(1);
}

#[test]
fn one_poll_accepts_every_waiting_connection() {
    let dir = temp_dir("accept-all");
    let path = dir.path().join("ctgate.sock");
    let mut server = ControlServer::bind(&path).unwrap();
    let ct = tracker(100, 4);
    let sweep = AtomicU32::new(20_000);
    let ctx = ControlContext {
        conntrack: &ct,
        sweep_interval_ms: &sweep,
        info: &Fake,
        ipf: None,
        now: 0,
    };
    // 100 connect/close cycles queued while the server does not poll (a flood between
    // two ticks), then the operator's request.
    for _ in 0..100 {
        drop(UnixStream::connect(&path).unwrap());
    }
    let mut op = UnixStream::connect(&path).unwrap();
    op.write_all(encode_request(&Value::from(3), "ct-get-nconns", &[]).as_bytes())
        .unwrap();
    let rep = server.poll(&ctx, DEFAULT_BUDGET);
    assert_eq!(rep.accepted, 101);
    assert_eq!(rep.requests, 1);
    op.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(op);
    assert_eq!(
        read_reply(&mut r),
        (Value::from(3), Reply::Ok("4\n".into()))
    );
    drop(server);
}

#[test]
fn a_connect_flood_leaves_the_server_answering() {
    let h = Harness::start("connect-flood", tracker(100, 9));
    let path = h.path.clone();
    let flood = thread::spawn(move || {
        for _ in 0..20_000 {
            drop(UnixStream::connect(&path).unwrap());
        }
    });
    // Requests during the flood are answered, and so is the one after it.
    let mut answered = 0;
    while !flood.is_finished() {
        assert_eq!(h.call("ct-get-nconns", &[]), Ok("9\n".into()));
        answered += 1;
    }
    flood.join().unwrap();
    assert_eq!(h.call("ct-get-nconns", &[]), Ok("9\n".into()));
    assert!(answered > 0);
    h.wait_clients(0);
}

#[test]
fn garbage_gets_an_error_and_the_connection_keeps_serving() {
    let h = Harness::start("garbage", tracker(100, 3));
    let mut s = h.connect();
    s.write_all(b"garbage\n").unwrap();
    s.write_all(b"\xff\xfe\x00\n").unwrap();
    s.write_all(b"{\"id\":5}\n").unwrap();
    s.write_all(b"\n\r\n").unwrap();
    s.write_all(b"{\"id\":6,\"cmd\":\"no-such-command\"}\n")
        .unwrap();
    s.write_all(b"{\"id\":7,\"cmd\":\"ct-set-limits\",\"args\":[\"default=-1\"]}\r\n")
        .unwrap();
    s.write_all(b"{\"id\":\"last\",\"cmd\":\"ct-get-nconns\"}\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let (id, rep) = read_reply(&mut r);
    assert_eq!(id, Value::Null);
    assert!(
        matches!(&rep, Reply::Error(e) if e.starts_with("malformed request")),
        "{rep:?}"
    );
    let (id, rep) = read_reply(&mut r);
    assert_eq!(id, Value::Null);
    assert!(matches!(rep, Reply::Error(_)));
    assert_eq!(
        read_reply(&mut r),
        (
            Value::from(5),
            Reply::Error("malformed request: missing 'cmd'".into())
        )
    );
    let (id, rep) = read_reply(&mut r);
    assert_eq!(id, Value::from(6));
    assert!(
        matches!(&rep, Reply::Error(e) if e.starts_with("unknown command \"no-such-command\""))
    );
    assert_eq!(
        read_reply(&mut r),
        (
            Value::from(7),
            Reply::Error("invalid default limit (Invalid argument)".into())
        )
    );
    assert_eq!(
        read_reply(&mut r),
        (Value::from("last"), Reply::Ok("3\n".into()))
    );
    // Other clients were never disturbed.
    assert_eq!(h.call("ct-get-nconns", &[]), Ok("3\n".into()));
}

#[test]
fn an_oversized_request_is_refused_and_the_server_keeps_serving() {
    let h = Harness::start("big", tracker(100, 1));
    let mut s = h.connect();
    let big = vec![b'x'; MAX_REQUEST + 10_000];
    // The server may close before it has read everything: the write may fail.
    let _ = s.write_all(&big);
    let mut r = BufReader::new(s);
    let (id, rep) = read_reply(&mut r);
    assert_eq!(id, Value::Null);
    assert_eq!(
        rep,
        Reply::Error(format!("request too large (more than {MAX_REQUEST} bytes)"))
    );
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // A complete line just over the cap is answered too.
    let mut s = h.connect();
    let mut line = br#"{"id":2,"cmd":"version","pad":""#.to_vec();
    line.extend(std::iter::repeat_n(b'y', MAX_REQUEST));
    line.extend_from_slice(b"\"}\n");
    let _ = s.write_all(&line);
    let mut r = BufReader::new(s);
    assert!(matches!(read_reply(&mut r).1, Reply::Error(e) if e.starts_with("request too large")));
    assert_eq!(h.call("ct-get-nconns", &[]), Ok("1\n".into()));
}

#[test]
fn a_streamed_dump_of_100k_connections_arrives_complete() {
    let n = 100_000u32;
    let h = Harness::start("dump", tracker(150_000, n));
    // Raw: several chunk lines, then the final one.
    let mut s = h.connect();
    s.write_all(encode_request(&Value::from(42), "dump-conntrack", &[]).as_bytes())
        .unwrap();
    let mut r = BufReader::new(s);
    let mut out = String::new();
    let mut more = 0;
    loop {
        let (id, rep) = read_reply(&mut r);
        assert_eq!(id, Value::from(42));
        match rep {
            Reply::More(c) => {
                assert!(c.len() <= CHUNK);
                more += 1;
                out.push_str(&c);
            }
            Reply::Ok(c) => {
                out.push_str(&c);
                break;
            }
            Reply::Error(e) => panic!("{e}"),
        }
    }
    assert!(more > 100, "{more} chunks");
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), n as usize);
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), n as usize, "duplicate lines");
    assert!(
        lines.iter().all(|l| l.starts_with("udp,orig=(src=10.")
            && l.contains(",dst=192.0.2.1,sport=1000,dport=53),reply=(src=192.0.2.1,dst=10.")
            && l.ends_with(",sport=53,dport=1000)")),
        "{:?}",
        &lines[..3]
    );
    // Through the client helper, the same bytes.
    let again = h.call("dump-conntrack", &[]).unwrap();
    let mut b: Vec<&str> = again.lines().collect();
    b.sort_unstable();
    assert_eq!(b, lines);
    assert_eq!(h.call("ct-get-nconns", &[]), Ok(format!("{n}\n")));
    let bkts = h.call("ct-bkts", &[]).unwrap();
    assert!(bkts.contains(&format!("\nCurrent Connections: {n}\n")));
}

#[test]
fn a_client_that_disconnects_mid_stream_does_not_break_the_server() {
    let h = Harness::start("vanish", tracker(150_000, 100_000));
    for _ in 0..3 {
        let mut s = h.connect();
        s.write_all(encode_request(&Value::from(1), "dump-conntrack", &["-s".into()]).as_bytes())
            .unwrap();
        let mut r = BufReader::new(s);
        assert!(matches!(read_reply(&mut r).1, Reply::More(_)));
        drop(r);
    }
    // One that closes before even sending its request completely, one that half-closes.
    let mut s = h.connect();
    s.write_all(b"{\"id\":1,\"cmd\":\"dump-").unwrap();
    drop(s);
    let mut s = h.connect();
    s.write_all(encode_request(&Value::from(3), "ct-get-nconns", &[]).as_bytes())
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(
        read_reply(&mut r),
        (Value::from(3), Reply::Ok("100000\n".into()))
    );
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closes after the last reply");
    h.wait_clients(0);
    let out = h.call("dump-conntrack", &[]).unwrap();
    assert_eq!(out.lines().count(), 100_000);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let h = Harness::start("pipe", tracker(1000, 10));
    let mut s = h.connect();
    let mut all = String::new();
    for i in 0..40 {
        let (cmd, args): (&str, Vec<String>) = match i % 4 {
            0 => ("ct-get-nconns", vec![]),
            1 => ("dump-conntrack", vec!["zone=0".into()]),
            2 => ("ct-get-maxconns", vec![]),
            _ => ("ct-bkts", vec!["gt=5".into()]),
        };
        all.push_str(&encode_request(&Value::from(i), cmd, &args));
    }
    s.write_all(all.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    for i in 0..40 {
        let mut out = String::new();
        loop {
            let (id, rep) = read_reply(&mut r);
            assert_eq!(id, Value::from(i));
            match rep {
                Reply::More(c) => out.push_str(&c),
                Reply::Ok(c) => {
                    out.push_str(&c);
                    break;
                }
                Reply::Error(e) => panic!("{e}"),
            }
        }
        match i % 4 {
            0 => assert_eq!(out, "10\n"),
            1 => assert_eq!(out.lines().count(), 10),
            2 => assert_eq!(out, "1000\n"),
            _ => assert!(out.starts_with("Total Buckets: ")),
        }
    }
}

#[test]
fn chunks_split_at_character_boundaries() {
    assert_eq!(chunks("", 4), vec![""]);
    assert_eq!(chunks("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    assert_eq!(chunks("ééé", 3), vec!["é", "é", "é"]);
    let s = "aé".repeat(1000);
    let c = chunks(&s, 7);
    assert_eq!(c.concat(), s);
    assert!(c.iter().all(|p| p.len() <= 7));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Random bytes on a connection get error replies at worst: the server keeps
        /// answering that connection and never panics.
        #[test]
        fn random_bytes_never_break_the_server(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..6)
        ) {
            let dir = temp_dir("fuzz");
            let path = dir.path().join("s.sock");
            let ct = tracker(100, 5);
            let mut server = ControlServer::bind(&path).unwrap();
            let sweep = AtomicU32::new(1);
            let ctx = ControlContext { conntrack: &ct, sweep_interval_ms: &sweep, info: &Fake, ipf: None, now: 0 };
            let mut c = UnixStream::connect(&path).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            let mut drain = |c: &mut UnixStream, got: &mut Vec<u8>| {
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 { break; }
                    got.extend_from_slice(&buf[..n]);
                }
            };
            for p in &pieces {
                c.write_all(p).unwrap();
                server.poll(&ctx, 64);
                drain(&mut c, &mut got);
            }
            c.write_all(b"\n{\"id\":\"end\",\"cmd\":\"ct-get-nconns\"}\n").unwrap();
            let mut found = None;
            for _ in 0..200 {
                server.poll(&ctx, 64);
                drain(&mut c, &mut got);
                found = got
                    .split(|&b| b == b'\n')
                    .filter_map(|l| parse_reply(l).ok())
                    .find(|(id, _)| id.as_str() == Some("end"));
                if found.is_some() { break; }
            }
            prop_assert_eq!(found.map(|f| f.1), Some(Reply::Ok("5\n".into())));
            // Every line the server sent is a valid reply.
            for l in got.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                prop_assert!(parse_reply(l).is_ok(), "{:?}", String::from_utf8_lossy(l));
            }
            drop(server);
                }
    }
}

/// Creates `n` UDP connections from port `base` on, in batches that the server drains
/// between them (so no event is lost in the rings themselves).
fn create_flows(ct: &Conntrack, base: u32, n: u32) {
    let mut w = ct.worker(0);
    for i in 0..n {
        let k = base + i;
        let src = format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255);
        assert!(w
            .process(&udp(&src, "192.0.2.1", 1000, 53), 0, true, 0)
            .conn
            .is_some());
        if i % 1000 == 999 {
            let t0 = Instant::now();
            while !ct.events().ring(0).is_some_and(|r| r.is_empty()) {
                assert!(t0.elapsed() < Duration::from_secs(30), "events not drained");
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[test]
fn events_stream_to_several_clients_and_a_slow_one_loses_only_its_own() {
    let ct = tracker(100_000, 0);
    let h = Harness::start("events", ct.clone());
    // A client that asks for events and never reads.
    let mut slow = h.connect();
    slow.write_all(encode_request(&Value::from(1), "events", &[]).as_bytes())
        .unwrap();
    let fast = {
        let path = h.path.clone();
        thread::spawn(move || {
            let mut out = String::new();
            let args = ["--count".to_string(), "30000".to_string()];
            let r = call(&path, "events", &args, Some(Duration::from_secs(60)), |s| {
                out.push_str(s)
            });
            (r.unwrap(), out)
        })
    };
    let json = {
        let path = h.path.clone();
        thread::spawn(move || {
            let mut out = String::new();
            let args: Vec<String> = ["--json", "--count", "2"].map(String::from).to_vec();
            let r = call(&path, "events", &args, Some(Duration::from_secs(60)), |s| {
                out.push_str(s)
            });
            (r.unwrap(), out)
        })
    };
    let t0 = Instant::now();
    while ct.events().listeners() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "clients not subscribed"
        );
        thread::sleep(Duration::from_millis(2));
    }
    create_flows(&ct, 0, 30_000);
    let (r, out) = fast.join().unwrap();
    assert_eq!(r, Ok(()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 30_000, "the fast client lost nothing");
    assert_eq!(
        lines[1],
        "    [NEW] udp      17 60 src=10.0.0.1 dst=192.0.2.1 sport=1000 dport=53 [UNREPLIED] src=192.0.2.1 dst=10.0.0.1 sport=53 dport=1000"
    );
    assert!(lines
        .iter()
        .all(|l| l.starts_with("    [NEW] udp      17 60 src=10.")));
    let (r, out) = json.join().unwrap();
    assert_eq!(r, Ok(()));
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "new");
    assert_eq!(first["orig"]["src"], "10.0.0.0");
    assert_eq!(first["reply"]["dport"], 1000);
    assert_eq!(ct.counters().events_lost, 0);
    // The slow client now reads: its queue overflowed, and it is told how much it lost.
    let mut r = BufReader::new(slow);
    let mut got = String::new();
    while !got.contains("[LOST] ") {
        match read_reply(&mut r) {
            (_, Reply::More(s)) => got.push_str(&s),
            other => panic!("unexpected {other:?}"),
        }
    }
    let lost_line = got.lines().find(|l| l.starts_with("[LOST] ")).unwrap();
    let lost: u64 = lost_line
        .strip_prefix("[LOST] ")
        .and_then(|s| s.strip_suffix(" events"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(lost > 0 && lost < 30_000, "{lost_line}");
    // Two clients are done: only the slow one still listens.
    drop(r);
    let t0 = Instant::now();
    while ct.events().listeners() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "subscriptions not dropped"
        );
        thread::sleep(Duration::from_millis(2));
    }
    assert!(!ct.events().enabled());
}
