//! `datapath --source memif`: ctgate's pipeline in this process fed by the generator
//! process (`ctgate-perf gen`, [`crate::gen_process`]) instead of the in-process one.
//!
//! EAL starts with two `--vdev`s, memif clients of the generator's sockets
//! ([`crate::gen::client_devargs`]: its `bsize`/`rsize`, net_pcap's port MACs, which the
//! generator's frames are sent to); they are ports 0 and 1. Per case the generator is
//! started on CPU 0 (EAL `-l 0`, `--file-prefix PREFIX-gen`, one RX queue per port: the
//! one worker's TX queue) before the gateway starts its ports, sends compare-ovs's
//! steady UDP flows (one packet per flow on port 0, a reply to the SNAT address on
//! port 1, round after round, unpaced) for warm-up + window + [`MARGIN`] seconds, and is
//! stopped by PID after the gateway stopped (its line gives its CPU share and `full`).
//!
//! The window is timed here ([`time_window`]): from the first packet ctgate's ports
//! received (over the control socket), `--warmup` and at least until the tracker created
//! a connection per flow (every flow sent a packet, as with the rings), then `--seconds`; the rates come from
//! ctgate's worker counters (received, sent on both ports) read at the window's start
//! and end (a signal in the window ends it at the run's final counters). ctgate stops once its
//! ports have been idle [`IDLE`] after the generator stopped sending.
//!
//! What the generator process cannot do is refused by [`check`] with the reason: new
//! flows per packet (it loops over prebuilt frames of a fixed set of flows), other
//! protocols, sizes, fragments or reply fractions (it sends 64-byte UDP and a reply
//! to every packet), pacing, several flow counts in one run (the memif ports are EAL
//! vdevs of this process, attached once and closed with the gateway's run), its own
//! ceiling (`ctgate-perf gen --loopback` measures that), latency (its frames carry no
//! timestamp: the latency keys are `-`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::gen::WindowFlags;
use super::{read_stats, Args, ProtoArg};

/// Seconds the generator sends after the window (the window is timed from ctgate's
/// first counted packet, a little after the generator's first).
pub(super) const MARGIN: f64 = 2.0;
/// Least time the generator must still send after the window.
const SLACK: f64 = 0.25;
/// ctgate's idle stop: longer than the generator's connection set-up on a loaded machine.
pub(super) const IDLE: Duration = Duration::from_secs(3);
/// Longest wait for the first packet.
const FIRST_PACKET: Duration = Duration::from_secs(60);

/// Refuses what the generator process cannot feed, naming why.
pub(super) fn check(args: &Args, flows: &[u32]) -> Result<(), String> {
    let why = if args.new_flows {
        "--new-flows: the generator process loops over prebuilt frames of a fixed set of \
         flows (`gen --flows N`), so its packets cannot each open a new connection; use \
         --source rings"
    } else if args.loopback {
        "--loopback: the generator process's own ceiling is `ctgate-perf gen --loopback`"
    } else if args.proto != ProtoArg::Udp
        || args.size != 64
        || args.mtu.is_some()
        || args.reply_fraction != 1.0
    {
        "--proto, --size, --mtu, --reply-fraction: the generator process sends 64-byte UDP \
         packets and a reply to every one (--proto udp --size 64 --reply-fraction 1)"
    } else if args.rate.is_some() || args.load.is_some() {
        "--rate, --load: here the generator process runs unpaced"
    } else if args.plot.is_some() {
        "--plot: the latency chart needs timestamps, which the generator process's frames \
         do not carry"
    } else if flows.len() != 1 {
        "several --flows: its memif ports are attached once, when EAL starts, and closed \
         with the gateway's run, so a run measures one flow count"
    } else {
        return Ok(());
    };
    Err(format!("--source memif does not go with {why}"))
}

/// Times the window on ctgate's control socket at `socket`: waits for the first packet
/// its ports received, then `warmup` and until the tracker created `flows` connections,
/// sets `window.started`, waits `seconds`, sets
/// `window.ended`. Returns the warm-up it waited (seconds from the first packet seen to
/// the window's start). Both flags are set on every path (the watcher waits for them);
/// `stop` (the gateway's run ended) ends the waits before the window with an error, and
/// the window itself early.
pub(super) fn time_window(
    socket: &Path,
    flows: u32,
    warmup: Duration,
    seconds: Duration,
    window: &WindowFlags,
    stop: &AtomicBool,
) -> Result<f64, String> {
    let r = (|| {
        let t0 = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Err("the gateway stopped before the generator's first packet".into());
            }
            if t0.elapsed() > FIRST_PACKET {
                return Err(format!(
                    "no packet from the generator process within {}s",
                    FIRST_PACKET.as_secs()
                ));
            }
            // The control socket may not be up yet: errors only mean "not yet".
            if read_stats(socket).is_ok_and(|s| s.rx > 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = Instant::now();
        sleep_unless(warmup, stop)?;
        while read_stats(socket)?.created.unwrap_or(0) < u64::from(flows) {
            sleep_unless(Duration::from_millis(10), stop)?;
        }
        // The generator sends for warm-up + window + MARGIN from its first packet (a
        // little before `first`): a first round longer than MARGIN would end the window
        // on idle ports.
        let warmup_secs = first.elapsed().as_secs_f64();
        let sent_for = (warmup + seconds).as_secs_f64() + MARGIN;
        if warmup_secs + seconds.as_secs_f64() > sent_for - SLACK {
            return Err(format!(
                "every flow's first packet took {warmup_secs:.2}s, so the window would \
                 outlast the generator's sending ({sent_for:.2}s from its first packet): \
                 raise --warmup"
            ));
        }
        window.started.store(true, Ordering::SeqCst);
        // A stop in the window (SIGINT/SIGTERM) ends it early: the line is printed,
        // marked interrupted, over the part that ran.
        let _ = sleep_unless(seconds, stop);
        Ok(warmup_secs)
    })();
    window.started.store(true, Ordering::SeqCst);
    window.ended.store(true, Ordering::SeqCst);
    r
}

fn sleep_unless(d: Duration, stop: &AtomicBool) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return Err("the gateway stopped during the measurement window".into());
        }
        std::thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
    }
    Ok(())
}
