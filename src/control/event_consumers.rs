//! The consumers of the tracker's connection event stream that live on the control lcore
//! (the NAT logger now; state sync later), kept as one small list the control loop serves
//! each tick: it moves what the workers' rings hold into every listener's queue
//! ([`crate::conntrack::events::EventHub::pump`]), then lets each consumer take its
//! share. `ctgate-ctl events` clients are listeners too, served by the control socket.
//!
//! Invariants: a consumer's [`EventConsumer::poll`] never blocks and does bounded work per
//! call (non-blocking sockets, a bounded queue; what cannot be handled at once is
//! dropped and counted in its counters), so the loop's other duties keep their tick; on a
//! reload each consumer sees the new configuration and adapts itself.

use crate::config::Config;
use crate::conntrack::Conntrack;
use std::fmt::Write as _;

/// One consumer of the event stream on the control lcore.
pub trait EventConsumer {
    /// Its name in `stats` (`natlog sent=… lost=…`) and in metric names
    /// (`ctgate_natlog_lost_total`).
    fn name(&self) -> &'static str;
    /// Takes what arrived since the last call and does a bounded amount of work.
    /// `now_us` is the wall clock in microseconds since the epoch.
    fn poll(&mut self, now_us: u64);
    /// Its counters, `(name, value)`, all monotonic.
    fn counters(&self) -> Vec<(&'static str, u64)>;
    /// The configuration changed (a reload): take the new settings. Returns a line for
    /// the operator when something changed.
    fn reconfigure(&mut self, _ct: &Conntrack, _cfg: &Config) -> Option<String> {
        None
    }
    /// A status text for a command of its own (`sync-status`), if it has one.
    fn status(&self) -> Option<String> {
        None
    }
}

/// The control lcore's consumers.
#[derive(Default)]
pub struct Consumers {
    list: Vec<Box<dyn EventConsumer>>,
}

impl Consumers {
    /// Adds a consumer.
    pub fn push(&mut self, c: Box<dyn EventConsumer>) {
        self.list.push(c);
    }

    /// Moves the rings' records into the listeners' queues, then polls every consumer.
    pub fn poll(&mut self, ct: &Conntrack, now_us: u64) {
        ct.events().pump();
        for c in &mut self.list {
            c.poll(now_us);
        }
    }

    /// Passes a new configuration to every consumer; returns their report lines.
    pub fn reconfigure(&mut self, ct: &Conntrack, cfg: &Config) -> String {
        let mut s = String::new();
        for c in &mut self.list {
            if let Some(line) = c.reconfigure(ct, cfg) {
                s.push_str(&line);
                s.push('\n');
            }
        }
        s
    }

    /// The status text of the consumer called `name`, if it runs and has one.
    pub fn status(&self, name: &str) -> Option<String> {
        self.list
            .iter()
            .find(|c| c.name() == name)
            .and_then(|c| c.status())
    }

    /// The `stats` lines, one per consumer: `NAME k=v k=v`.
    pub fn stats_lines(&self) -> String {
        let mut s = String::new();
        for c in &self.list {
            s.push_str(c.name());
            for (k, v) in c.counters() {
                let _ = write!(s, " {k}={v}");
            }
            s.push('\n');
        }
        s
    }

    /// `(metric name, help, value)` of every consumer counter:
    /// `ctgate_NAME_COUNTER_total`.
    pub fn metrics(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for c in &self.list {
            for (k, v) in c.counters() {
                out.push((
                    format!("ctgate_{}_{k}_total", c.name()),
                    format!("Event consumer {}: {k} records.", c.name()),
                    v,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::events::{CtEvent, Subscription, DEFAULT_QUEUE};
    use crate::conntrack::testpkt::udp;
    use crate::conntrack::CtConfig;

    struct Counting {
        sub: Subscription,
        seen: u64,
        buf: Vec<CtEvent>,
    }
    impl EventConsumer for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn poll(&mut self, _now: u64) {
            self.buf.clear();
            self.seen += self.sub.drain(&mut self.buf) as u64;
        }
        fn counters(&self) -> Vec<(&'static str, u64)> {
            vec![("seen", self.seen)]
        }
    }

    #[test]
    fn every_consumer_in_the_list_gets_every_event_and_shows_its_counters() {
        let ct = Conntrack::new(CtConfig {
            max_conns: 100,
            hash_seed: Some(1),
            ..CtConfig::default()
        });
        let mut cs = Consumers::default();
        for _ in 0..2 {
            cs.push(Box::new(Counting {
                sub: ct.events().subscribe(DEFAULT_QUEUE),
                seen: 0,
                buf: Vec::new(),
            }));
        }
        let mut w = ct.worker(0);
        for p in 1..=3 {
            w.process(&udp("10.0.0.2", "192.0.2.2", 4000 + p, 53), 0, true, 0);
        }
        cs.poll(&ct, 0);
        assert_eq!(cs.stats_lines(), "counting seen=3\ncounting seen=3\n");
        assert_eq!(cs.metrics()[0].0, "ctgate_counting_seen_total");
        assert_eq!(cs.metrics()[1].2, 3);
    }
}
