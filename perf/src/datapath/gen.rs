//! The generator and sink thread: builds packets into mbufs of its own mempool, feeds the
//! inside port's RX ring, drains both TX rings, records latencies and plays the hosts on
//! either side (see [`super::traffic`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ctgate::dpdk::{self, EalToken, Mbuf, MbufBurst, Mempool, Ring, Tsc, BURST_SIZE};

use super::latency::Latency;
use super::traffic::{self, Answer, Mix, Proto};

/// Paced, the generator is at most this many packets behind its schedule.
const MAX_BEHIND: u64 = 2 * BURST_SIZE as u64;

/// Bursts each sink takes per loop at most.
const SINK_BURSTS: usize = 4;

/// Which flow each new packet belongs to.
#[derive(Clone, Debug)]
pub enum Flows {
    /// Round-robin over this (shuffled) order of flow indexes, forever.
    Steady(Arc<Vec<u32>>),
    /// Every packet a new flow: 0, 1, 2, … (connection-rate mode).
    New,
}

/// The flow of each new packet, in order.
pub struct FlowSeq {
    flows: Flows,
    cursor: usize,
    next_new: u64,
    rounds: u64,
}

impl FlowSeq {
    pub fn new(flows: Flows) -> FlowSeq {
        FlowSeq {
            flows,
            cursor: 0,
            next_new: 0,
            rounds: 0,
        }
    }

    /// The next packet's flow.
    #[inline]
    pub fn next_flow(&mut self) -> u64 {
        match &self.flows {
            Flows::Steady(order) => {
                let f = order[self.cursor];
                self.cursor += 1;
                if self.cursor == order.len() {
                    self.cursor = 0;
                    self.rounds += 1;
                }
                u64::from(f)
            }
            Flows::New => {
                let f = self.next_new;
                self.next_new = (self.next_new + 1) % traffic::MAX_FLOW;
                f
            }
        }
    }

    /// True once every flow has had a packet (always in connection-rate mode).
    pub fn round_done(&self) -> bool {
        matches!(self.flows, Flows::New) || self.rounds > 0
    }
}

/// The four rings around ctgate's two ports.
#[derive(Clone, Copy, Debug)]
pub struct Rings {
    /// Generator → inside port RX (also the inside hosts' answers).
    pub gen_in: Ring,
    /// Inside port TX → inside sink.
    pub in_sink: Ring,
    /// Outside hosts' answers → outside port RX.
    pub reflect_out: Ring,
    /// Outside port TX → outside sink.
    pub out_sink: Ring,
}

/// What the generator does.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub flows: Flows,
    pub mix: Mix,
    /// Frame size with FCS (with `mtu`: of the datagram before fragmentation).
    pub size: usize,
    /// UDP datagrams cut into IPv4 fragments of at most this many bytes (`--mtu`).
    pub mtu: Option<usize>,
    pub reply_fraction: f64,
    /// New packets per second (`None`: as fast as the rings take them).
    pub rate_pps: Option<f64>,
    /// Usable entries of the inside RX ring (unpaced, the generator fills it to this).
    pub ring_room: u32,
    /// MACs of the inside and outside ports (the Ethernet destinations of what the
    /// hosts send).
    pub in_mac: [u8; 6],
    pub out_mac: [u8; 6],
    /// Source MAC of the clients.
    pub client_mac: [u8; 6],
    pub tsc_hz: u64,
    pub warmup: Duration,
    pub seconds: Duration,
    /// After generating: how long the sinks still drain (answers in flight).
    pub drain: Duration,
    /// How long to wait for ctgate to take the first packet; `None`: start at once
    /// (loopback, nothing else polls the rings).
    pub ready_timeout: Option<Duration>,
}

/// Set by the generator when its measurement window starts and ends, for a watcher that
/// reads ctgate's counters at those moments.
#[derive(Debug, Default)]
pub struct WindowFlags {
    pub started: AtomicBool,
    pub ended: AtomicBool,
}

/// What the generator counted. Packet counts are of the measurement window (after the
/// warmup) unless said otherwise.
pub struct GenResult {
    /// New packets the generator built.
    pub generated: u64,
    /// New packets the inside RX ring refused (freed).
    pub gen_drops: u64,
    /// Answers of the hosts that a ring refused.
    pub reflect_drops: u64,
    /// No free mbuf for a new packet or an answer.
    pub nombuf: u64,
    /// Paced: new packets skipped because the generator fell behind its schedule by
    /// more than two bursts (a stall of its thread), rather than sent in a burst.
    pub late: u64,
    /// Frames taken from the inside / outside TX rings.
    pub delivered_in: u64,
    pub delivered_out: u64,
    /// Answers the hosts sent (both sides).
    pub answers: u64,
    /// Frames at a sink that were not ours (not counted as delivered).
    pub foreign: u64,
    /// First fragments delivered (both sinks): fragmented datagrams through the gateway.
    pub datagrams: u64,
    pub latency: Latency,
    /// Seconds of the measurement window.
    pub window_secs: f64,
    /// Seconds from the first packet to the start of the window (at least `--warmup`,
    /// and in steady mode until every flow sent a packet).
    pub warmup_secs: f64,
    /// Seconds from the first packet to the end of generation (warmup included).
    pub active_secs: f64,
}

#[derive(Default)]
struct Counts {
    generated: u64,
    gen_drops: u64,
    reflect_drops: u64,
    nombuf: u64,
    late: u64,
    delivered_in: u64,
    delivered_out: u64,
    answers: u64,
    foreign: u64,
    datagrams: u64,
}

/// The per-protocol frame templates (flow 0).
struct Templates {
    udp: Vec<u8>,
    tcp: Vec<u8>,
    icmp: Vec<u8>,
    /// With `--mtu`: the fragments of the UDP datagram (every flow is UDP then).
    frags: Vec<Vec<u8>>,
}

impl Templates {
    fn new(cfg: &GenConfig) -> Templates {
        let syn = matches!(cfg.flows, Flows::New);
        let frags = cfg.mtu.map_or(Vec::new(), |mtu| {
            traffic::fragment_templates(Proto::Udp, cfg.size, mtu, cfg.in_mac, cfg.client_mac)
        });
        // The whole datagram is only cut; the per-protocol templates stay small.
        let size = if frags.is_empty() { cfg.size } else { 64 };
        let t = |p| traffic::template(p, size, syn, cfg.in_mac, cfg.client_mac);
        Templates {
            udp: t(Proto::Udp),
            tcp: t(Proto::Tcp),
            icmp: t(Proto::Icmp),
            frags,
        }
    }

    #[inline]
    fn get(&self, p: Proto) -> &[u8] {
        match p {
            Proto::Udp => &self.udp,
            Proto::Tcp => &self.tcp,
            Proto::Icmp => &self.icmp,
        }
    }
}

/// Runs the generator and sinks on the calling thread until generation and draining are
/// over (or `stop` is set).
pub fn run(
    cfg: &GenConfig,
    rings: Rings,
    pool: Mempool,
    token: EalToken,
    stop: &AtomicBool,
    window: &WindowFlags,
) -> Result<GenResult, String> {
    // An lcore id gives this thread a mempool cache; without one it still works.
    let registered = dpdk::thread_register(&token).is_ok();
    let r = run_loop(cfg, rings, pool, stop, window);
    // Whatever happened, a watcher waits no longer.
    window.started.store(true, Ordering::SeqCst);
    window.ended.store(true, Ordering::SeqCst);
    if registered {
        dpdk::thread_unregister(&token);
    }
    r
}

fn run_loop(
    cfg: &GenConfig,
    rings: Rings,
    pool: Mempool,
    stop: &AtomicBool,
    window: &WindowFlags,
) -> Result<GenResult, String> {
    let hz = cfg.tsc_hz.max(1);
    let ticks = |d: Duration| (d.as_secs_f64() * hz as f64) as u64;
    let close = matches!(cfg.flows, Flows::New);
    let tpl = Templates::new(cfg);
    let mut latency = Latency::new(hz);
    let mut c = Counts::default();
    let mut seq = FlowSeq::new(cfg.flows.clone());
    let mut ident: u16 = 0;

    let mut gen: MbufBurst = MbufBurst::new();
    let mut rx: MbufBurst = MbufBurst::new();
    let mut back: Answers = MbufBurst::new();

    // Wait until ctgate polls its inside port: one packet in, the ring empty again.
    let t0 = match cfg.ready_timeout {
        Some(timeout) => wait_ready(cfg, &tpl, rings.gen_in, pool, &mut seq, timeout, stop)?,
        None => Tsc::now(),
    };
    // The window starts after the warmup and the first round over the flows; until
    // then its end is unknown.
    let warm_min = t0 + ticks(cfg.warmup);
    let mut warm_end = u64::MAX;
    let mut end = u64::MAX;
    let mut drain_end = u64::MAX;
    let per_tick = cfg.rate_pps.map(|r| r / hz as f64);
    // The readiness probe counts as the first paced packet.
    let mut paced_sent = u64::from(cfg.ready_timeout.is_some());
    let mut measuring = false;
    // The window's counts, once it is over (the sinks still drain after it).
    let mut frozen: Option<Counts> = None;
    let mut now = Tsc::now();
    while now < drain_end && !stop.load(Ordering::Relaxed) {
        // Steady mode measures only once every flow has sent a packet (the table is full).
        if !measuring && now >= warm_min && seq.round_done() {
            measuring = true;
            warm_end = now;
            end = now + ticks(cfg.seconds);
            drain_end = end + ticks(cfg.drain);
            c = Counts::default();
            latency.reset();
            window.started.store(true, Ordering::SeqCst);
        }
        if frozen.is_none() && now >= end {
            frozen = Some(std::mem::take(&mut c));
            window.ended.store(true, Ordering::SeqCst);
        }
        // Latencies are recorded for packets stamped in the window (not a warmup backlog).
        let window_start = (measuring && now < end).then_some(warm_end);
        // 1. The outside sink: the servers (a few bursts per loop, so that ctgate's TX
        // rings do not fill while the generator builds packets).
        let mut sink = Sink {
            window_start,
            latency: &mut latency,
            rx: &mut rx,
            back: &mut back,
        };
        sink.turn(
            rings.out_sink,
            rings.reflect_out,
            &mut c,
            |c| &mut c.delivered_out,
            |mut m, p, t, c, back| {
                let f = m.data_mut();
                let later = traffic::is_later_fragment(f);
                // A later fragment carries no port: with --mtu the fraction is 0 or 1.
                let reply = if later {
                    cfg.reply_fraction >= 1.0
                } else {
                    traffic::has_reply(traffic::flow_of_frame(f, p, true), cfg.reply_fraction)
                };
                if reply && traffic::reflect_outside(f, p, cfg.out_mac) == Answer::Reflect {
                    if !later {
                        traffic::write_stamp(f, p, t);
                    }
                    c.answers += 1;
                    // `back` has room for a whole burst.
                    let _ = back.push(m);
                }
            },
        );
        // 2. The inside sink: the clients.
        sink.turn(
            rings.in_sink,
            rings.gen_in,
            &mut c,
            |c| &mut c.delivered_in,
            |mut m, p, t, c, back| {
                let f = m.data_mut();
                match traffic::reflect_inside(f, p, cfg.in_mac, close) {
                    Answer::None => {}
                    Answer::Reflect => {
                        traffic::write_stamp(f, p, t);
                        c.answers += 1;
                        let _ = back.push(m);
                    }
                    Answer::ReflectThenFin => {
                        traffic::write_stamp(f, p, t);
                        let fin = match pool.alloc() {
                            Some(mut fin) => match fin.extend_from_slice(m.data()) {
                                Ok(()) => {
                                    traffic::client_fin_after_ack(fin.data_mut());
                                    Some(fin)
                                }
                                Err(_) => None,
                            },
                            None => None,
                        };
                        c.answers += 1;
                        let _ = back.push(m);
                        match fin {
                            Some(fin) => {
                                c.answers += 1;
                                let _ = back.push(fin);
                            }
                            None => c.nombuf += 1,
                        }
                    }
                }
            },
        );
        // 3. New packets, after the answers (they have priority in the inside ring).
        if now < end {
            let mut n = BURST_SIZE as u64;
            match per_tick {
                Some(pt) => {
                    let due = ((now - t0) as f64 * pt) as u64;
                    // After a stall of this thread, do not catch up with a burst that
                    // ctgate never saw offered: skip what is more than two bursts late.
                    let behind = due.saturating_sub(paced_sent);
                    if behind > MAX_BEHIND {
                        c.late += behind - MAX_BEHIND;
                        paced_sent += behind - MAX_BEHIND;
                    }
                    n = n.min(due.saturating_sub(paced_sent));
                }
                // Unpaced: as many as the ring has room for (building packets that the
                // ring then refuses would only steal time from the sinks).
                None => {
                    n = n.min(u64::from(
                        cfg.ring_room.saturating_sub(rings.gen_in.count()),
                    ));
                }
            }
            let k = tpl.frags.len() as u64;
            // Whole datagrams only.
            if let Some(d) = n.checked_div(k) {
                n = d * k;
            }
            if n > 0 && k > 0 {
                if pool.alloc_bulk(&mut gen, n as usize) {
                    for d in gen.as_mut_slice().chunks_mut(k as usize) {
                        let i = seq.next_flow();
                        ident = ident.wrapping_add(1);
                        for (j, m) in d.iter_mut().enumerate() {
                            // A fragment always fits an mbuf (at most 1,514 bytes).
                            if m.extend_from_slice(&tpl.frags[j]).is_ok() {
                                let f = m.data_mut();
                                if j == 0 {
                                    traffic::set_flow(f, Proto::Udp, i);
                                    traffic::write_stamp(f, Proto::Udp, now);
                                } else {
                                    traffic::set_flow_later(f, i);
                                }
                                traffic::set_ident(f, ident);
                            }
                        }
                    }
                    paced_sent += n;
                    c.generated += n;
                    rings.gen_in.enqueue_burst(&mut gen);
                    c.gen_drops += gen.len() as u64;
                    gen.clear();
                } else {
                    c.nombuf += n;
                }
            } else if n > 0 {
                if pool.alloc_bulk(&mut gen, n as usize) {
                    for m in gen.as_mut_slice() {
                        let i = seq.next_flow();
                        let p = cfg.mix.of(i);
                        // The template always fits an mbuf (size ≤ 1518 bytes).
                        if m.extend_from_slice(tpl.get(p)).is_ok() {
                            let f = m.data_mut();
                            traffic::set_flow(f, p, i);
                            traffic::write_stamp(f, p, now);
                        }
                    }
                    paced_sent += n;
                    c.generated += n;
                    rings.gen_in.enqueue_burst(&mut gen);
                    c.gen_drops += gen.len() as u64;
                    gen.clear();
                } else {
                    c.nombuf += n;
                }
            }
        }
        now = Tsc::now();
    }
    if !measuring {
        return Err(
            "datapath: stopped before the measurement window began (did ctgate stop early?)".into(),
        );
    }
    let window_end = now.min(end);
    let c = frozen.unwrap_or(c);
    Ok(GenResult {
        generated: c.generated,
        gen_drops: c.gen_drops,
        reflect_drops: c.reflect_drops,
        nombuf: c.nombuf,
        late: c.late,
        delivered_in: c.delivered_in,
        delivered_out: c.delivered_out,
        answers: c.answers,
        foreign: c.foreign,
        datagrams: c.datagrams,
        latency,
        window_secs: window_end.saturating_sub(warm_end) as f64 / hz as f64,
        warmup_secs: warm_end.min(now).saturating_sub(t0) as f64 / hz as f64,
        active_secs: window_end.saturating_sub(t0) as f64 / hz as f64,
    })
}

/// The answers a sink sends back in one turn: room for a whole burst, each answered by
/// up to two frames.
type Answers = MbufBurst<{ 2 * BURST_SIZE }>;

/// What both sinks share in a loop: the latency window and histogram, the burst buffers.
struct Sink<'a> {
    /// When the measurement window began, while it is on: latencies are recorded for the
    /// frames stamped in it (not a warmup backlog).
    window_start: Option<u64>,
    latency: &'a mut Latency,
    rx: &'a mut MbufBurst,
    back: &'a mut Answers,
}

impl Sink<'_> {
    /// One sink's turn: up to [`SINK_BURSTS`] bursts from `from`. Each frame that is the
    /// generator's is counted in `delivered` and its latency recorded, then handed to
    /// `answer` with its protocol and arrival TSC; what `answer` pushes goes to `to`
    /// (what `to` refuses is counted in `reflect_drops`). Other frames count as
    /// `foreign`.
    #[inline(always)]
    fn turn(
        &mut self,
        from: Ring,
        to: Ring,
        c: &mut Counts,
        delivered: fn(&mut Counts) -> &mut u64,
        mut answer: impl FnMut(Mbuf, Proto, u64, &mut Counts, &mut Answers),
    ) {
        for _ in 0..SINK_BURSTS {
            if from.dequeue_burst(&mut *self.rx) == 0 {
                break;
            }
            // ctgate's worker on the other CPU wrote these mbufs last (headers and
            // frames): fetch every header, then every frame's first line, so that the
            // burst's misses overlap (read one by one they were half of the generator's
            // own time in `--new-flows --proto tcp`).
            for m in self.rx.as_slice() {
                m.prefetch_header();
            }
            for m in self.rx.as_slice() {
                m.prefetch();
            }
            let t = Tsc::now();
            for m in self.rx.drain() {
                let Some((p, stamp)) = traffic::classify(m.data()) else {
                    c.foreign += 1;
                    continue;
                };
                *delivered(c) += 1;
                let f = m.data();
                // Only first fragments (and whole packets) carry a stamp.
                let stamped = !traffic::is_later_fragment(f);
                if stamped && traffic::is_fragment(f) {
                    c.datagrams += 1;
                }
                let age = traffic::stamp_age(t, stamp);
                if stamped
                    && self
                        .window_start
                        .is_some_and(|w| age <= t.saturating_sub(w))
                {
                    self.latency.record_ticks(age);
                }
                answer(m, p, t, c, &mut *self.back);
            }
            to.enqueue_burst(&mut *self.back);
            c.reflect_drops += self.back.len() as u64;
            self.back.clear();
        }
    }
}

/// Sends flow 0's packet and waits until the ring is empty again (ctgate polls); returns
/// the TSC at which it saw that.
fn wait_ready(
    cfg: &GenConfig,
    tpl: &Templates,
    ring: Ring,
    pool: Mempool,
    seq: &mut FlowSeq,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut b: MbufBurst = MbufBurst::new();
    let Some(mut m) = pool.alloc() else {
        return Err("datapath: the generator's mempool is empty".into());
    };
    let i = seq.next_flow();
    let p = cfg.mix.of(i);
    m.extend_from_slice(tpl.get(p)).map_err(|e| e.to_string())?;
    let t = Tsc::now();
    traffic::set_flow(m.data_mut(), p, i);
    traffic::write_stamp(m.data_mut(), p, t);
    let _ = b.push(m);
    if ring.enqueue_burst(&mut b) != 1 {
        return Err("datapath: the inside RX ring is full before the start".into());
    }
    let deadline = std::time::Instant::now() + timeout;
    while ring.count() > 0 {
        if stop.load(Ordering::Relaxed) || std::time::Instant::now() > deadline {
            return Err(format!(
                "datapath: ctgate did not poll its inside port within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    // The run starts now: ctgate is set up and polling.
    Ok(Tsc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn steady_flows_visit_every_flow_once_per_round_in_the_given_order() {
        let mut order: Vec<u32> = (0..1000).collect();
        crate::flow_frames::Rng::new(1).shuffle(&mut order);
        assert_ne!(order, (0..1000).collect::<Vec<u32>>(), "shuffled");
        let mut seq = FlowSeq::new(Flows::Steady(Arc::new(order.clone())));
        for round in 0..3 {
            let got: Vec<u64> = (0..1000).map(|_| seq.next_flow()).collect();
            assert!(seq.round_done(), "round {round}");
            assert_eq!(got, order.iter().map(|&f| u64::from(f)).collect::<Vec<_>>());
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), 1000);
        }
        let mut seq = FlowSeq::new(Flows::Steady(Arc::new(order)));
        for _ in 0..999 {
            seq.next_flow();
        }
        assert!(!seq.round_done());
        seq.next_flow();
        assert!(seq.round_done());
    }

    #[test]
    fn new_flows_never_repeat() {
        let mut seq = FlowSeq::new(Flows::New);
        assert!(seq.round_done());
        let got: Vec<u64> = (0..100_000).map(|_| seq.next_flow()).collect();
        assert_eq!(got, (0..100_000).collect::<Vec<u64>>());
    }
}
