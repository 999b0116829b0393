//! The Prometheus endpoint (`[metrics] listen = "ADDR:PORT"`): a plain thread that answers
//! `GET /metrics` with the latest text the control lcore rendered (once a second), in
//! Prometheus' text exposition format. Never a worker, never the control lcore.
//!
//! Bounded and non-blocking: the listener and every connection are non-blocking and
//! polled in one loop; at most [`MAX_CLIENTS`] connections are served at once (more are
//! closed at accept), a request is read up to [`MAX_REQUEST`] bytes, and a connection
//! that has not finished within [`CLIENT_DEADLINE`] is closed. A slow, silent or hostile
//! client costs one slot for at most that long; it never stalls the others.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once.
pub const MAX_CLIENTS: usize = 16;
/// Largest request read (its header).
pub const MAX_REQUEST: usize = 8192;
/// How long a connection may take from accept to the last byte of the answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// The loop's sleep when nothing happened.
const IDLE: Duration = Duration::from_millis(5);

/// The latest exposition text, shared by the renderer and the server.
pub type Exposition = Arc<Mutex<String>>;

/// The running endpoint; dropping it stops the thread.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Client {
    s: TcpStream,
    since: Instant,
    req: Vec<u8>,
    /// The answer and how much of it was written, once the request is complete.
    out: Option<(Vec<u8>, usize)>,
}

impl MetricsServer {
    /// Binds `addr` and starts the thread serving `text`.
    pub fn start(addr: SocketAddr, text: Exposition) -> Result<MetricsServer, String> {
        let l = TcpListener::bind(addr)
            .map_err(|e| format!("metrics.listen: cannot listen on {addr}: {e}"))?;
        l.set_nonblocking(true)
            .map_err(|e| format!("metrics.listen: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ctgate-metrics".into())
            .spawn(move || serve(l, &text, &s))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(l: TcpListener, text: &Exposition, stop: &AtomicBool) {
    let mut clients: Vec<Client> = Vec::with_capacity(MAX_CLIENTS);
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        while let Ok((s, _)) = l.accept() {
            busy = true;
            if clients.len() >= MAX_CLIENTS || s.set_nonblocking(true).is_err() {
                continue; // closed: no slot
            }
            clients.push(Client {
                s,
                since: Instant::now(),
                req: Vec::new(),
                out: None,
            });
        }
        let now = Instant::now();
        clients.retain_mut(|c| {
            if now.duration_since(c.since) >= CLIENT_DEADLINE {
                return false;
            }
            match step(c, text) {
                Some(progress) => {
                    busy |= progress;
                    true
                }
                None => {
                    busy = true;
                    false
                }
            }
        });
        if !busy {
            std::thread::sleep(IDLE);
        }
    }
}

/// Advances one connection: `None` when it is finished (or failed), else whether it
/// made progress.
fn step(c: &mut Client, text: &Exposition) -> Option<bool> {
    let mut progress = false;
    if c.out.is_none() {
        let mut buf = [0u8; 1024];
        match c.s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                progress = true;
                let room = MAX_REQUEST.saturating_sub(c.req.len());
                c.req.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
        let complete =
            c.req.windows(4).any(|w| w == b"\r\n\r\n") || c.req.windows(2).any(|w| w == b"\n\n");
        if complete {
            c.out = Some((answer(&c.req, text), 0));
        } else if c.req.len() >= MAX_REQUEST {
            c.out = Some((status(431, "Request Header Fields Too Large"), 0));
        }
    }
    if let Some((out, done)) = &mut c.out {
        match c.s.write(&out[*done..]) {
            Ok(n) => {
                progress = true;
                *done += n;
                if *done >= out.len() {
                    return None;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    Some(progress)
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{reason}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to a request: `GET /metrics` (or `HEAD`), else 404/405.
fn answer(req: &[u8], text: &Exposition) -> Vec<u8> {
    let line = req.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return status(405, "Method Not Allowed");
    }
    if path != "/metrics" && !path.starts_with("/metrics?") {
        return status(404, "Not Found");
    }
    let body = text.lock().map(|t| t.clone()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method == "GET" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Builds exposition text: `# HELP`/`# TYPE` once per metric family, then its samples.
#[derive(Default)]
pub struct ExpositionWriter {
    out: String,
}

impl ExpositionWriter {
    /// Starts a metric family (`kind`: `counter` or `gauge`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample with labels (`name="value"` pairs; values escaped).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        use std::fmt::Write as _;
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let esc = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{esc}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn silent_and_oversized_clients_do_not_stall_a_scrape() {
        let text: Exposition = Arc::new(Mutex::new("ctgate_up 1\n".into()));
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&text)).unwrap();
        let addr = srv.addr();
        // Silent clients hold slots; one more than there are slots is closed at once.
        let silent: Vec<TcpStream> = (0..MAX_CLIENTS - 1)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nctgate_up 1\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        // A request that never ends its header is cut at MAX_REQUEST.
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST, b'a');
        let r = get(addr, &big);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        assert!(get(addr, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get(addr, b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405 "));
        // The silent ones are dropped after the deadline; the text follows the renderer.
        std::thread::sleep(CLIENT_DEADLINE + Duration::from_millis(100));
        *text.lock().unwrap() = "ctgate_up 2\n".into();
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.ends_with("ctgate_up 2\n"), "{ok}");
        drop(silent);
        drop(srv);
    }
}
