//! What a run is told from outside (the command line fills it; `ctgate-perf` builds its
//! own): the control socket, the forwarding-mode pairs, the stop conditions, output and
//! mempool sizing. Nothing else of the run reads the command line.

use std::path::PathBuf;
use std::time::Duration;

use super::protocol::DEFAULT_SOCKET;
use crate::pipeline::MacAddr;

/// How one run behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// The control socket (gateway mode).
    pub socket: PathBuf,
    /// Port pairs for the plain forwarding mode; empty: [`default_pairs`] of the probed
    /// ports (forwarding mode only).
    ///
    /// [`default_pairs`]: crate::pipeline::ports::default_pairs
    pub pairs: Vec<(u16, u16)>,
    /// Destination MAC written into every forwarded frame (forwarding mode).
    pub next_hop_mac: MacAddr,
    /// Stop once no packet has been received for this long.
    pub exit_when_idle: Option<Duration>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// No per-second stats line; final counters are still printed.
    pub quiet: bool,
    /// Least number of mbufs in each packet mempool; `None`: sized for the port plan.
    pub mbufs: Option<u32>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            socket: PathBuf::from(DEFAULT_SOCKET),
            pairs: Vec::new(),
            next_hop_mac: MacAddr::BROADCAST,
            exit_when_idle: None,
            duration: None,
            quiet: false,
            mbufs: None,
        }
    }
}
