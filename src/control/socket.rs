//! The control socket server: a Unix stream socket served by the control lcore, without
//! threads of its own.
//!
//! The control loop calls [`ControlServer::poll`] every tick. One call accepts waiting
//! clients, reads what they sent, executes complete requests, advances streamed outputs
//! by a bounded number of table buckets, and writes what the clients' sockets accept —
//! all non-blocking, so a slow or vanished client never holds the control lcore:
//!
//! * each client has a read buffer capped at [`MAX_REQUEST`] (a longer line is answered
//!   `request too large` and the client is closed) and is read only when it has no
//!   complete request waiting, so a client that pipelines requests is slowed by the
//!   socket, not buffered;
//! * a streamed output (dump of millions of connections) advances only while less than
//!   [`HIGH_WATER`] bytes wait to be sent to its client, and by at most the bucket budget
//!   given to `poll`, shared by the clients with a running job;
//! * a client that closes or resets is dropped with its job; no lock is held between
//!   steps, so nothing needs undoing;
//! * a client that neither sends a complete request nor has anything running or waiting
//!   to be read for [`IDLE_TIMEOUT`] (a silent client, or one stuck in the middle of a
//!   line) is told so and closed; and when [`MAX_CLIENTS`] are connected, a new client
//!   takes the place of the one idle longest (idle at least [`EVICT_AFTER_IDLE`]), so
//!   idle clients can never lock the operator out; only [`MAX_CLIENTS`] clients all busy make a new one wait its turn
//!   (it is refused and may retry);
//! * every poll accepts until the listen queue is empty (at most [`MAX_ACCEPT_PER_POLL`]),
//!   so a flood of connects is drained at once instead of queueing in front of the next
//!   request.
//!
//! Access: the socket file has mode 0600, and every connection's peer credentials
//! (`SO_PEERCRED`) must carry the uid that owns the socket, i.e. the user running ctgate;
//! other peers get an error reply and are closed.

use super::commands::{execute, ControlContext, Job, Outcome, Step};
use super::protocol::{encode_error, encode_more, encode_ok, parse_request, MAX_REQUEST};
use serde_json::Value;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Output bytes per streamed reply line (at most).
pub const CHUNK: usize = 32 * 1024;
/// A job produces no more output while this many bytes wait to be sent to its client.
pub const HIGH_WATER: usize = 256 * 1024;
/// Clients served at once; more are answered with an error and closed.
pub const MAX_CLIENTS: usize = 32;
/// Connections accepted per poll at most (the listen queue is drained until `EAGAIN`
/// up to this bound, a few milliseconds of work at worst).
pub const MAX_ACCEPT_PER_POLL: usize = 4096;
/// A client must have been idle this long to lose its place to a new one (a client that
/// just connected and is about to send its request keeps it).
pub const EVICT_AFTER_IDLE: Duration = Duration::from_millis(250);
/// A client with no complete request, no running job and no unread output is closed
/// after this long without sending a byte.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests executed per client per poll.
const REQUESTS_PER_POLL: usize = 16;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Default bucket budget per poll (see [`ControlServer::poll`]).
pub const DEFAULT_BUDGET: usize = 4096;

/// What one [`ControlServer::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Connections accepted (including refused ones).
    pub accepted: usize,
    /// Connections refused (other uid, too many clients).
    pub refused: usize,
    /// Idle clients closed to make room for a new one.
    pub evicted: usize,
    /// Clients closed after [`IDLE_TIMEOUT`] (or the server's own idle timeout).
    pub timed_out: usize,
    /// Request lines handled (including malformed ones).
    pub requests: usize,
    /// Clients connected after the call.
    pub clients: usize,
    /// True when work remains that the next poll would advance at once (a streamed output
    /// with room to write, or a waiting request): the control loop may poll again sooner
    /// than its tick. A client that does not read its output does not make it busy.
    pub busy: bool,
}

/// A streamed reply in progress.
struct Active {
    id: Value,
    job: Box<dyn Job>,
    pending: String,
}

struct Client {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    job: Option<Active>,
    /// The peer shut down its sending side.
    eof: bool,
    /// Close once everything queued is sent (refused, oversized request).
    closing: bool,
    /// Gone: drop at the end of the poll.
    dead: bool,
    /// When it last sent bytes, got output written or was accepted.
    last_active: Instant,
}

impl Client {
    fn new(stream: UnixStream, now: Instant) -> Client {
        Client {
            last_active: now,
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            job: None,
            eof: false,
            closing: false,
            dead: false,
        }
    }

    fn unsent(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn push(&mut self, line: &str) {
        self.wbuf.extend_from_slice(line.as_bytes());
    }

    fn refuse(&mut self, why: &str) {
        self.push(&encode_error(&Value::Null, why));
        self.closing = true;
    }

    /// True when the next poll would advance this client without waiting for it: a job
    /// or a waiting request, and room in the output buffer (when the buffer is full, the
    /// client has to read first). A live job (`events`) waits for what happens, so it
    /// does not count: the control loop keeps its tick.
    fn can_progress(&self) -> bool {
        !self.dead
            && !self.closing
            && self.unsent() < HIGH_WATER
            && (self.job.as_ref().is_some_and(|a| !a.job.live()) || self.has_line())
    }

    fn has_line(&self) -> bool {
        self.rbuf.contains(&b'\n')
    }

    /// Waiting for the peer with nothing of ours pending: no job, no unsent output, no
    /// complete request (a partial line counts as idle).
    fn idle(&self) -> bool {
        !self.dead && !self.closing && self.job.is_none() && self.unsent() == 0 && !self.has_line()
    }

    /// Reads what is available, unless a complete request already waits.
    fn read(&mut self, now: Instant) {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..4 {
            if self.eof || self.has_line() || self.rbuf.len() > MAX_REQUEST {
                return;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.rbuf.extend_from_slice(&buf[..n]);
                    self.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// The next request line (without newline or a trailing `\r`), skipping blank lines;
    /// at end of input, what is left counts as a last line.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let line = match self.rbuf.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let mut l: Vec<u8> = self.rbuf.drain(..=pos).collect();
                    l.pop();
                    l
                }
                None if self.eof && !self.rbuf.is_empty() => std::mem::take(&mut self.rbuf),
                None => return None,
            };
            let line = match line.strip_suffix(b"\r") {
                Some(l) => l.to_vec(),
                None => line,
            };
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                return Some(line);
            }
        }
    }

    fn handle(&mut self, ctx: &ControlContext, line: &[u8]) {
        let req = match parse_request(line) {
            Ok(r) => r,
            Err(bad) => {
                self.push(&encode_error(&bad.id, &bad.error));
                return;
            }
        };
        match execute(ctx, &req.cmd, &req.args) {
            Outcome::Done(Ok(out)) => self.finish(&req.id, &out),
            Outcome::Done(Err(e)) => self.push(&encode_error(&req.id, &e)),
            Outcome::Stream(job) => {
                self.job = Some(Active {
                    id: req.id,
                    job,
                    pending: String::new(),
                })
            }
        }
    }

    /// Queues `out` as the final reply, preceded by `more` lines if it is large.
    fn finish(&mut self, id: &Value, out: &str) {
        let pieces = chunks(out, CHUNK);
        let last = pieces.len().saturating_sub(1);
        for (i, p) in pieces.iter().enumerate() {
            if i < last {
                self.push(&encode_more(id, p));
            } else {
                self.push(&encode_ok(id, p));
            }
        }
    }

    /// Advances the running job by at most `budget` buckets.
    fn step_job(&mut self, ctx: &ControlContext, budget: usize) {
        let Some(mut a) = self.job.take() else {
            return;
        };
        match a.job.step(ctx, budget, &mut a.pending) {
            Ok(Step::More) => {
                if a.pending.len() >= CHUNK || (a.job.live() && !a.pending.is_empty()) {
                    for p in chunks(&a.pending, CHUNK) {
                        self.push(&encode_more(&a.id, p));
                    }
                    a.pending.clear();
                }
                self.job = Some(a);
            }
            Ok(Step::Done) => self.finish(&a.id, &a.pending),
            Err(e) => {
                for p in chunks(&a.pending, CHUNK) {
                    self.push(&encode_more(&a.id, p));
                }
                self.push(&encode_error(&a.id, &e));
            }
        }
    }

    /// Writes what the socket accepts.
    fn flush(&mut self, now: Instant) {
        if self.wpos < self.wbuf.len() {
            // Output waiting counts as activity: a reader slower than the idle timeout
            // is not idle.
            self.last_active = now;
        }
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos >= HIGH_WATER {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    /// Reads, executes, steps and writes. A job walks at most `share` buckets, taken
    /// from what is `left` of the poll's budget (it does not step when nothing is left).
    fn service(
        &mut self,
        ctx: &ControlContext,
        share: usize,
        left: &mut usize,
        rep: &mut PollReport,
        now: Instant,
        idle_timeout: Duration,
    ) {
        if !self.closing {
            self.read(now);
        }
        let mut n = 0;
        while !self.closing
            && !self.dead
            && self.job.is_none()
            && self.unsent() < HIGH_WATER
            && n < REQUESTS_PER_POLL
        {
            let Some(line) = self.next_line() else {
                break;
            };
            n += 1;
            rep.requests += 1;
            self.handle(ctx, &line);
        }
        if !self.closing && !self.has_line() && self.rbuf.len() > MAX_REQUEST {
            self.rbuf = Vec::new();
            self.refuse(&format!(
                "request too large (more than {MAX_REQUEST} bytes)"
            ));
        }
        if self.job.is_some() && !self.dead && self.unsent() < HIGH_WATER && *left > 0 {
            let b = share.min(*left).max(1);
            *left -= b;
            self.step_job(ctx, b);
        }
        if self.job.is_some() {
            self.last_active = now;
        }
        if self.idle() && now.duration_since(self.last_active) >= idle_timeout {
            rep.timed_out += 1;
            self.refuse(&format!(
                "closed: no complete request for {} ms",
                idle_timeout.as_millis()
            ));
        }
        if !self.dead {
            self.flush(now);
        }
        let idle = self.job.is_none() && self.unsent() == 0;
        if idle && (self.closing || (self.eof && self.rbuf.is_empty())) {
            if self.closing {
                // Take what the peer may still have sent, so its read of our reply is
                // not cut short by a reset for unread data.
                let mut sink = [0u8; 4096];
                for _ in 0..4 {
                    match self.stream.read(&mut sink) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
            }
            self.dead = true;
        }
    }
}

/// Splits `s` into pieces of at most `max` bytes at character boundaries; an empty `s`
/// gives one empty piece.
fn chunks(s: &str, max: usize) -> Vec<&str> {
    let mut v = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.len();
        }
        let (a, b) = rest.split_at(cut);
        v.push(a);
        rest = b;
    }
    v.push(rest);
    v
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
///
/// std has no stable API for it; rustix's `socket_peercred` is the safe wrapper of
/// `getsockopt(SOL_SOCKET, SO_PEERCRED)`.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(cred.uid.as_raw())
}

/// The control socket server. Dropping it closes every connection and removes the
/// socket file (if it is still the one it created).
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file it created.
    file_id: (u64, u64),
    uid: u32,
    clients: Vec<Client>,
    next: usize,
    max_clients: usize,
    idle_timeout: Duration,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl ControlServer {
    /// Creates the socket at `path` (and its directory, mode 0700, if missing), mode
    /// 0600. A stale socket file (nothing listening) is replaced; a live one, or a file
    /// that is not a socket, is an error. Errors name the path.
    pub fn bind(path: impl AsRef<Path>) -> Result<ControlServer, String> {
        let path = path.as_ref();
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| {
                        format!(
                            "cannot create the directory {} of the control socket: {e}",
                            dir.display()
                        )
                    })?;
            }
        }
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(format!(
                        "the control socket {shown} is in use (is another ctgate running?)"
                    ));
                }
                fs::remove_file(path)
                    .map_err(|e| format!("cannot remove the stale control socket {shown}: {e}"))?;
            }
            Ok(_) => {
                return Err(format!(
                    "{shown} exists and is not a socket; not replacing it with the control socket"
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot bind the control socket {shown}: {e}"))?;
        let cleanup = |e: String| {
            let _ = fs::remove_file(path);
            e
        };
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| cleanup(format!("cannot set the mode of {shown}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| cleanup(format!("cannot make {shown} non-blocking: {e}")))?;
        let meta =
            fs::metadata(path).map_err(|e| cleanup(format!("cannot inspect {shown}: {e}")))?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            file_id: (meta.dev(), meta.ino()),
            uid: meta.uid(),
            clients: Vec::new(),
            next: 0,
            max_clients: MAX_CLIENTS,
            idle_timeout: IDLE_TIMEOUT,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The uid peers must have (the socket file's owner).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Clients connected.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Replaces [`IDLE_TIMEOUT`] (tests use a short one).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout;
    }

    /// Serves the socket for one tick; never blocks. `budget` bounds the table buckets
    /// walked by streamed outputs in this call (shared by the clients that have one;
    /// [`DEFAULT_BUDGET`] is a good value for a 10 ms tick: a few hundred microseconds
    /// of walking at full table load).
    pub fn poll(&mut self, ctx: &ControlContext, budget: usize) -> PollReport {
        let mut rep = PollReport::default();
        let now = Instant::now();
        self.accept(&mut rep, now);
        let n = self.clients.len();
        if n > 0 {
            let jobs = self.clients.iter().filter(|c| c.job.is_some()).count();
            let budget = budget.max(1);
            let share = (budget / jobs.max(1)).max(1);
            let mut left = budget;
            let start = self.next % n;
            for i in 0..n {
                let c = &mut self.clients[(start + i) % n];
                c.service(ctx, share, &mut left, &mut rep, now, self.idle_timeout);
            }
            self.next = self.next.wrapping_add(1);
            self.clients.retain(|c| !c.dead);
        }
        rep.clients = self.clients.len();
        rep.busy = self.clients.iter().any(Client::can_progress);
        rep
    }

    fn accept(&mut self, rep: &mut PollReport, now: Instant) {
        for _ in 0..MAX_ACCEPT_PER_POLL {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: nobody waiting. Anything else (out of descriptors…): the
                // connection stays queued; try again next tick.
                Err(_) => return,
            };
            rep.accepted += 1;
            if stream.set_nonblocking(true).is_err() {
                rep.refused += 1;
                continue;
            }
            let mut c = Client::new(stream, now);
            match peer_uid(&c.stream) {
                Ok(uid) if uid == self.uid => {
                    // Take what it sent already: a peer that connected and closed at
                    // once (a connect flood) is gone before it takes a place.
                    c.read(now);
                    if c.dead || (c.eof && c.rbuf.is_empty()) {
                        continue;
                    }
                }
                Ok(uid) => c.refuse(&format!(
                    "permission denied: peer uid {uid} is not the uid {} that runs ctgate",
                    self.uid
                )),
                Err(e) => c.refuse(&format!("cannot check the peer's credentials: {e}")),
            }
            if c.closing && self.clients.len() >= 2 * self.max_clients {
                // Flooded even with refusals in flight: just close.
                rep.refused += 1;
                continue;
            }
            if !c.closing && !self.make_room(rep, now) {
                c.refuse(&format!(
                    "too many control clients (at most {}, all busy); try again",
                    self.max_clients
                ));
            }
            if c.closing {
                rep.refused += 1;
                c.flush(now);
            }
            self.clients.push(c);
        }
    }

    /// True when a new client may be served: fewer than `max_clients` are, or the one
    /// idle longest was closed to make room.
    fn make_room(&mut self, rep: &mut PollReport, now: Instant) -> bool {
        let serving = self
            .clients
            .iter()
            .filter(|c| !c.closing && !c.dead)
            .count();
        if serving < self.max_clients {
            return true;
        }
        let oldest = self
            .clients
            .iter_mut()
            .filter(|c| c.idle() && now.duration_since(c.last_active) >= EVICT_AFTER_IDLE)
            .min_by_key(|c| c.last_active);
        match oldest {
            Some(c) => {
                c.refuse(&format!(
                    "closed: {} control clients connected and this one idle longest",
                    self.max_clients
                ));
                c.flush(now);
                rep.evicted += 1;
                true
            }
            None => false,
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.file_id {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests;
