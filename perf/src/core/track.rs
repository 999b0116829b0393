//! Driving the tracker over prepared frames: tracking a range in bursts
//! ([`track_all`]), establishing every flow ([`warm_up`]) and the measured lookup loop
//! ([`lookup_loop`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ctgate::conntrack::{Conntrack, CtState, CtWorker, PacketMeta};
use ctgate::wire::parse::{parse_frame, parse_frame_into};
use hdrhistogram::Histogram;

use super::measure::{Meter, Usage};
use super::{BURST, CHECK_EVERY};
use crate::flow_frames::{is_tcp, FrameBuf, Kind};

/// A placeholder packet to fill burst arrays with.
pub(super) fn blank_meta(frames: &FrameBuf) -> Result<PacketMeta, String> {
    let p = parse_frame(frames.get(0)).map_err(|e| format!("benchmark frame: {e:?}"))?;
    Ok(PacketMeta::new(p, 0, true))
}

/// Parses `frame` straight into `m` and prepares it (zone 0, commit), as the gateway's
/// ingress pass does: a parsed packet returned by value and then copied into the meta cost
/// two copies per packet that the datapath does not make (16% of `core --only
/// established` at 1k connections). False, `m` untouched, when the frame does not parse.
#[inline(always)]
fn parse_in_place(frame: &[u8], m: &mut PacketMeta) -> bool {
    if parse_frame_into(frame, &mut m.parsed).is_err() {
        return false;
    }
    m.prepare(0, true, None);
    true
}

/// Tracks frames `range` in bursts of 32 at time `now`; returns how many packets got all
/// of `want` in their state (and were not refused a connection).
pub(super) fn track_all(
    w: &mut CtWorker,
    frames: &FrameBuf,
    range: std::ops::Range<usize>,
    now: u64,
    want: u8,
) -> u64 {
    if range.is_empty() {
        return 0;
    }
    let Ok(blank) = blank_meta(frames) else {
        return 0;
    };
    let mut metas = [blank; BURST];
    let mut ok = 0u64;
    let mut i = range.start;
    while i < range.end {
        let mut k = 0;
        while k < BURST && i < range.end {
            if parse_in_place(frames.get(i), &mut metas[k]) {
                k += 1;
            }
            i += 1;
        }
        w.process_burst(&mut metas[..k], now);
        ok += metas[..k]
            .iter()
            .filter(|m| m.result.state.has(want) && m.result.refused.is_none())
            .count() as u64;
    }
    ok
}

/// What a lookup loop did.
#[derive(Default)]
pub(super) struct LoopStats {
    pub(super) pkts: u64,
    pub(super) est: u64,
    pub(super) use_: Usage,
}

impl LoopStats {
    /// Packets per wall-clock second, in millions.
    pub(super) fn mpps(&self) -> f64 {
        self.pkts as f64 / self.use_.wall / 1e6
    }

    /// Packets per second of the thread's own CPU time, in millions.
    pub(super) fn oncpu_mpps(&self) -> f64 {
        self.pkts as f64 / self.use_.cpu.max(1e-9) / 1e6
    }
}

/// The measured loop: parse and track `frames` from `start` on, wrapping around, until
/// `dur` has passed or `stop` is set. With `hist`, records each burst's time (ns).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn lookup_loop(
    w: &mut CtWorker,
    frames: &FrameBuf,
    start: usize,
    prefetch: bool,
    now: u64,
    dur: Duration,
    stop: Option<&AtomicBool>,
    mut hist: Option<&mut Histogram<u64>>,
) -> LoopStats {
    if frames.is_empty() {
        return LoopStats::default();
    }
    let Ok(blank) = blank_meta(frames) else {
        return LoopStats::default();
    };
    let n = frames.len();
    let mut pos = start % n;
    let mut metas = [blank; BURST];
    let mut st = LoopStats::default();
    let meter = Meter::start();
    let t0 = Instant::now();
    loop {
        for _ in 0..CHECK_EVERY {
            let tb = hist.as_ref().map(|_| Instant::now());
            if prefetch {
                let mut k = 0;
                for _ in 0..BURST {
                    if parse_in_place(frames.get(pos), &mut metas[k]) {
                        k += 1;
                    }
                    pos += 1;
                    if pos == n {
                        pos = 0;
                    }
                }
                w.process_burst(&mut metas[..k], now);
                for m in &metas[..k] {
                    st.est += (m.result.state.0 & CtState::EST != 0) as u64;
                }
            } else {
                for _ in 0..BURST {
                    if let Ok(p) = parse_frame(frames.get(pos)) {
                        let r = w.process(&p, 0, true, now);
                        st.est += (r.state.0 & CtState::EST != 0) as u64;
                    }
                    pos += 1;
                    if pos == n {
                        pos = 0;
                    }
                }
            }
            st.pkts += BURST as u64;
            if let (Some(h), Some(tb)) = (hist.as_deref_mut(), tb) {
                h.saturating_record(tb.elapsed().as_nanos() as u64);
            }
        }
        let e = t0.elapsed();
        if e >= dur || stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            st.use_ = meter.stop();
            return st;
        }
    }
}

/// The first packet of every flow, then (for established cases) the replies and the TCP
/// handshake's last ACK: every connection ends up established.
pub(super) fn warm_up(
    ct: &Conntrack,
    flows: &[u32],
    firsts: Option<&FrameBuf>,
    now: u64,
) -> Result<(), String> {
    let own;
    let firsts = match firsts {
        Some(f) => f,
        None => {
            own = FrameBuf::of_flows(flows.iter().copied(), Kind::First);
            &own
        }
    };
    let mut w = ct.worker(0);
    let before = ct.n_conns();
    let created = track_all(&mut w, firsts, 0..firsts.len(), now, CtState::NEW);
    let replies = FrameBuf::of_flows(flows.iter().copied(), Kind::FirstReply);
    let est_rpl = track_all(
        &mut w,
        &replies,
        0..replies.len(),
        now,
        CtState::EST | CtState::RPL,
    );
    drop(replies);
    let tcp: Vec<u32> = flows.iter().copied().filter(|&i| is_tcp(i)).collect();
    let acks = FrameBuf::of_flows(tcp.iter().copied(), Kind::Orig);
    let est = track_all(&mut w, &acks, 0..acks.len(), now, CtState::EST);
    let n = flows.len() as u64;
    if created != n
        || est_rpl != n
        || est != tcp.len() as u64
        || (ct.n_conns() - before) as u64 != n
    {
        return Err(format!(
            "warm-up: {created} of {n} created, {est_rpl} replies established, {est} of {} \
             TCP handshakes completed, {} connections in the table; counters: {}",
            tcp.len(),
            ct.n_conns(),
            counters_str(ct)
        ));
    }
    Ok(())
}

/// The tracker's non-zero counters, for error messages.
pub(super) fn counters_str(ct: &Conntrack) -> String {
    let c = ct.counters();
    let v: Vec<String> = c
        .fields()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    v.join(" ")
}
