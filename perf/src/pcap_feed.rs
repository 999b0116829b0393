//! Feeding pcaps to net_pcap ports, for the runs of the ctgate binary (`gateway`) and of
//! Open vSwitch (`compare-ovs`).
//!
//! Two sources:
//! * `rx_pcap=FILE,infinite_rx=1`: net_pcap copies the whole pcap into mbufs of the
//!   port's mempool at queue setup and replays them forever. The process needs that many
//!   mbufs more ([`pcap_mbufs`]) and the EAL memory to hold them ([`memory_for`]); used up
//!   to [`PCAP_MAX_PACKETS`] packets (both pcaps together, the size of Open vSwitch 3.1's
//!   mempool, so that `compare-ovs` feeds both sides alike).
//! * `rx_pcap=FIFO`: a named pipe that a [`Feeder`] thread of ctgate-perf writes the
//!   pcap's records into, over and over; that source has its own, lower, ceiling.

use std::path::{Path, PathBuf};

/// Most packets (both pcaps together) replayed with `infinite_rx=1`.
pub const PCAP_MAX_PACKETS: usize = 262_144;
/// Mbufs beyond the preloaded packets, for rings, RX bursts, TX buffering and caches.
pub const POOL_HEADROOM: usize = 16_384;

/// ctgate's `--mbufs` for `preloaded` infinite_rx packets.
pub fn pcap_mbufs(preloaded: usize) -> usize {
    preloaded + POOL_HEADROOM
}

/// EAL memory (MB) for `mbufs` mbufs of about 2.5 KB and ctgate's other needs, at least
/// `asked`.
pub fn memory_for(mbufs: usize, asked: u32) -> u32 {
    let need = 512 + (mbufs as u64 * 2560).div_ceil(1 << 20);
    asked.max(need as u32)
}

/// A thread writing a pcap into a named pipe, its records over and over, until the reader
/// goes away.
pub struct Feeder {
    fifo: PathBuf,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    /// Creates the named pipe `fifo` and starts a thread (on CPU `cpu` if given) that
    /// writes `pcap` into it once a reader opened it: the header once, then the records
    /// forever.
    pub fn start(pcap: &Path, fifo: &Path, cpu: Option<usize>) -> Result<Feeder, String> {
        let data = std::fs::read(pcap).map_err(|e| format!("{}: {e}", pcap.display()))?;
        let _ = std::fs::remove_file(fifo);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| format!("mkfifo {}: {e}", fifo.display()))?;
        let path = fifo.to_path_buf();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            if let Some(cpu) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            }
            // Blocks until the reader opens the pipe; fails with EPIPE once it closes it.
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                return;
            };
            // A 1 MiB pipe buffer (the default maximum) instead of 64 KiB: fewer wake-ups
            // of both ends. Best effort.
            let _ = rustix::pipe::fcntl_setpipe_size(&f, 1 << 20);
            // The 24-byte global header once, then the records forever.
            if f.write_all(&data).is_err() {
                return;
            }
            let records = &data[24..];
            while f.write_all(records).is_ok() {}
        });
        Ok(Feeder {
            fifo: fifo.to_path_buf(),
            thread,
        })
    }

    /// After the reader exited: unblocks a writer still waiting for a reader, then joins.
    pub fn stop(self) {
        use std::os::unix::fs::OpenOptionsExt;
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo);
        drop(r);
        let _ = self.thread.join();
        let _ = std::fs::remove_file(&self.fifo);
    }
}
