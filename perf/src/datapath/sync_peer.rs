//! `datapath --sync`: the sync peer of the ctgate under test, in this process. ctgate runs
//! its real sync consumer (`[sync]` toward this peer on loopback); the peer is a
//! [`SyncEndpoint`] on its own UDP socket that acknowledges every message at once and
//! installs nothing, so what the run measures is ctgate's side of the sync: the workers'
//! events and the control lcore's lookups, encoding, sending and retransmissions.
//!
//! The peer thread runs on CPU 0 (the generator's and ctgate's control lcore's) until
//! `stop`, and reports what it received.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ctgate::control::sync::endpoint::PeerCounters;
use ctgate::control::sync::{SyncEndpoint, SyncParams, SyncRecord, SyncTable};

/// A table that takes every record and has nothing to stream.
struct Discard;

impl SyncTable for Discard {
    fn apply(&mut self, _peer: usize, _rec: &SyncRecord, _walked: bool) -> bool {
        true
    }
    fn walk(
        &mut self,
        _skip_from: Option<usize>,
        _cursor: u64,
        _max: usize,
        _out: &mut Vec<SyncRecord>,
    ) -> Option<u64> {
        None
    }
}

/// The peer's socket, bound before ctgate starts.
pub struct SyncPeer {
    sock: UdpSocket,
}

impl SyncPeer {
    pub fn bind() -> Result<SyncPeer, String> {
        let sock = UdpSocket::bind("127.0.0.1:0")
            .map_err(|e| format!("datapath --sync: cannot bind the peer: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(1)))
            .map_err(|e| format!("datapath --sync: {e}"))?;
        Ok(SyncPeer { sock })
    }

    pub fn addr(&self) -> Result<SocketAddr, String> {
        self.sock
            .local_addr()
            .map_err(|e| format!("datapath --sync: {e}"))
    }

    /// The `[sync]` section of ctgate's configuration, and its `local` address (a free
    /// loopback port) toward this peer.
    pub fn config(&self) -> Result<(String, SocketAddr), String> {
        let local = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("datapath --sync: no free port: {e}"))?;
        let text = format!(
            "\n[sync]\nlocal = \"{local}\"\npeers = [\"{}\"]\n",
            self.addr()?
        );
        Ok((text, local))
    }

    /// Acknowledges ctgate (`gw`, its `[sync] local`) until `stop`; returns the peer's
    /// counters of ctgate.
    pub fn run(self, gw: SocketAddr, stop: &AtomicBool) -> PeerCounters {
        let start = Instant::now();
        let mut ep = SyncEndpoint::new(1, &[gw], None, SyncParams::default());
        let mut buf = vec![0u8; 2048];
        let sock = &self.sock;
        while !stop.load(Ordering::Relaxed) {
            let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
            // Everything waiting, then acknowledge it in one go.
            for _ in 0..1024 {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => ep.receive(from, &buf[..n], now, &mut Discard),
                    Err(_) => break,
                }
            }
            ep.poll(now, &mut Discard, &mut |to, m| {
                let _ = sock.send_to(m, to);
            });
        }
        ep.status(0)[0].counters
    }
}
