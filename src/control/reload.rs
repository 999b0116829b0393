//! The running gateway's configuration and its reload (`ctgate-ctl reload`, SIGHUP).
//!
//! [`LiveGateway`] holds the configuration in force, its generation number, where it came
//! from and when it was loaded, and the [`Publisher`] of the gateway's table versions.
//! [`LiveGateway::reload`] reads a file (the one in force, or another), and:
//!
//! 1. parses and validates it completely ([`Config::load`]: the `FILE:LINE: FIELD:
//!    MESSAGE` errors of a start); any error refuses the reload and nothing changes;
//! 2. refuses a change of what needs a restart ([`restart_fields`]: the set of ports and
//!    VLAN sub-interfaces, `datapath.buckets`, a `datapath.max_conns` above the pool
//!    allocated at start), naming the field;
//! 3. builds the next table version (routes, policy, SNAT/DNAT rules, zones of ports,
//!    static next hops) and publishes it: workers switch between two bursts
//!    ([`crate::pipeline::gateway::live`]); every connection stays, with its NAT binding;
//! 4. sets the ports' changed MTUs on their devices (`rte_eth_dev_set_mtu` through the
//!    setter [`LiveGateway::with_mtu_setter`] installs): a port's `mtu` may change up to
//!    the largest MTU at start (the buffers were sized for it; beyond it the next table
//!    version is refused), and only where the device accepts it while running; otherwise
//!    the reload is refused naming `port[N].mtu` and saying it needs a restart, and the
//!    MTUs already set are put back;
//! 5. applies the tracker settings of the file: `max_conns`, `tcp_seq_check`,
//!    `sweep_interval_ms`, limits and timeout policies, the `[[alg]]` helper rules (for
//!    connections created afterwards), and the `[fragments]` settings.
//!
//! # Settings changed at run time (`ct-set-*`, `ipf-set-*`)
//!
//! The file wins: a reload sets the tracker settings to the new file's values. Every value
//! that was changed at run time and that the reload changes is named in the reload's
//! output, one `reset NAME: RUNNING -> FILE` line each, so nothing is lost silently.
//!
//! The SNAT pools of earlier versions stay answered for (ARP/NDP) and stay the gateway's
//! own addresses, so the replies of connections NATed to them keep arriving; a reload with
//! `--flush-stale` deletes the connections the new version would not create and stops
//! answering for pools no longer configured.

use std::cell::{Ref, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Config, EMBEDDED_NAME};
use crate::conntrack::{Conntrack, TimeoutAttr};
use crate::control::commands::{ControlContext, LiveConfig, Running};
use crate::ipf::{FragSettings, Ipf};
use crate::nat::NatRange;
use crate::pipeline::gateway::{GatewayShared, Publisher};
use crate::wire::parse::Family;

/// What [`LiveGateway::reload`] did.
pub struct Reloaded {
    /// Lines for the operator (`reloaded generation N from FILE`, `reset …` lines).
    pub report: String,
    /// The version now published (what `--flush-stale` judges connections by).
    pub version: Arc<GatewayShared>,
}

struct State {
    config: Config,
    generation: u64,
    loaded_unix: u64,
    publisher: Publisher,
}

/// Sets DPDK port `id`'s MTU on the device; the device's refusal as text.
pub type MtuSetter = fn(u16, u16) -> Result<(), String>;

/// The configuration in force and the versions published to the workers. Lives on the
/// control lcore (not `Sync`: one thread reloads).
pub struct LiveGateway {
    state: RefCell<State>,
    /// Changes a port's MTU on its device; `None`: MTUs are the datapath's alone (tests).
    set_mtu: Option<MtuSetter>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl LiveGateway {
    /// The gateway as started: `config`, built into `first` (generation 1).
    pub fn new(config: Config, first: Arc<GatewayShared>) -> LiveGateway {
        LiveGateway {
            state: RefCell::new(State {
                generation: first.generation(),
                config,
                loaded_unix: unix_now(),
                publisher: Publisher::new(first),
            }),
            set_mtu: None,
        }
    }

    /// Reloads set changed port MTUs on the devices through `f` (DPDK's
    /// `rte_eth_dev_set_mtu`).
    pub fn with_mtu_setter(mut self, f: MtuSetter) -> LiveGateway {
        self.set_mtu = Some(f);
        self
    }

    /// Sets the MTUs of the ports whose `mtu` differs between `old` and `new` on their
    /// devices: the changes as report lines, or the refusal (every MTU set put back).
    fn change_mtus(&self, old: &Config, new: &Config) -> Result<Vec<(u16, u16, u16)>, String> {
        let mut ids: Vec<u16> = new.ports.iter().map(|p| p.port).collect();
        ids.dedup();
        let mut done: Vec<(u16, u16, u16)> = Vec::new();
        for id in ids {
            let (was, now) = (old.port_mtu(id), new.port_mtu(id));
            if was == now {
                continue;
            }
            if let Some(set) = &self.set_mtu {
                if let Err(e) = set(id, now) {
                    self.undo_mtus(&done);
                    let i = new
                        .ports
                        .iter()
                        .position(|p| p.port == id && p.mtu == now)
                        .unwrap_or(0);
                    return Err(format!(
                        "port[{i}].mtu: {was} -> {now}: the device refused it while running ({e}): needs a restart"
                    ));
                }
            }
            done.push((id, was, now));
        }
        Ok(done)
    }

    /// Puts back the MTUs `change_mtus` set.
    fn undo_mtus(&self, done: &[(u16, u16, u16)]) {
        if let Some(set) = &self.set_mtu {
            for &(id, was, _) in done.iter().rev() {
                let _ = set(id, was);
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Ref<'_, Config> {
        Ref::map(self.state.borrow(), |s| &s.config)
    }

    /// The table version in force.
    pub fn shared(&self) -> Arc<GatewayShared> {
        Arc::clone(self.state.borrow().publisher.current())
    }

    /// (generation, source, load time in seconds since the Unix epoch).
    pub fn origin(&self) -> (u64, String, u64) {
        let s = self.state.borrow();
        (s.generation, s.config.source.clone(), s.loaded_unix)
    }

    /// Frees the table versions every worker has left (call once a tick).
    pub fn reclaim(&self) -> usize {
        self.state.borrow_mut().publisher.reclaim()
    }

    /// Reads `file` (default: the file in force; the embedded default when it is the one
    /// in force), validates it and swaps it in (see the module doc). On an error nothing
    /// has changed.
    pub fn reload(
        &self,
        file: Option<&str>,
        ct: &Conntrack,
        sweep_interval_ms: &AtomicU32,
    ) -> Result<Reloaded, String> {
        let source = file.map_or_else(|| self.config().source.clone(), str::to_string);
        let new = if source == EMBEDDED_NAME {
            Config::embedded()
        } else {
            Config::load(std::path::Path::new(&source))
        }
        .map_err(|e| e.to_string())?;
        self.apply(new, ct, sweep_interval_ms)
    }

    /// Swaps in `new` (already parsed and validated as a file is).
    pub fn apply(
        &self,
        new: Config,
        ct: &Conntrack,
        sweep_interval_ms: &AtomicU32,
    ) -> Result<Reloaded, String> {
        let mut st = self.state.borrow_mut();
        let refused = restart_fields(&st.config, &new);
        if !refused.is_empty() {
            return Err(format!(
                "{}: {}; the running configuration stays",
                new.source,
                refused.join("; ")
            ));
        }
        let cur = Arc::clone(st.publisher.current());
        let keep: Vec<NatRange> = cur.answered_pools().to_vec();
        let next = cur
            .reconfigure(&new, &keep)
            .map_err(|e| format!("{}: {e}; the running configuration stays", new.source))?;
        let ipf = cur.ipf();
        let running = settings_of_tracker(ct, sweep_interval_ms, ipf);
        let was = settings_of_config(&st.config);
        let mtus = self
            .change_mtus(&st.config, &new)
            .map_err(|e| format!("{}: {e}; the running configuration stays", new.source))?;
        // The last step that can fail: the pool was sized at start.
        if let Err(e) = ct.set_max_conns(new.datapath.max_conns) {
            self.undo_mtus(&mtus);
            return Err(format!(
                "{}: datapath.max_conns: {e}: needs a restart; the running configuration stays",
                new.source
            ));
        }
        let version = st.publisher.publish(next)?;
        apply_tracker_settings(&new, ct, sweep_interval_ms);
        apply_fragment_settings(&new.fragments, ipf);
        let now = settings_of_tracker(ct, sweep_interval_ms, ipf);
        st.generation = version.generation();
        st.loaded_unix = unix_now();
        let mut report = format!(
            "reloaded generation {} from {}\n",
            st.generation, new.source
        );
        for (id, was, now) in &mtus {
            report.push_str(&format!("port {id} mtu: {was} -> {now}\n"));
        }
        for (k, v) in &running {
            let at_start = was.get(k).map_or("unset", String::as_str);
            let after = now.get(k).map_or("unset", String::as_str);
            if v != at_start && v != after {
                report.push_str(&format!("reset {k}: {v} -> {after} (set at run time)\n"));
            }
        }
        st.config = new;
        Ok(Reloaded { report, version })
    }

    /// Stops answering for SNAT pools no longer configured (after `--flush-stale`):
    /// publishes a version with only the configured ones.
    pub fn drop_old_pools(&self) -> Result<(), String> {
        let mut st = self.state.borrow_mut();
        let cur = Arc::clone(st.publisher.current());
        if cur.answered_pools() == st.config.snat.as_slice() {
            return Ok(());
        }
        let next = cur.reconfigure(&st.config, &[])?;
        let v = st.publisher.publish(next)?;
        st.generation = v.generation();
        Ok(())
    }
}

impl LiveConfig for LiveGateway {
    /// [`LiveGateway::reload`], logged to ctgate's output (errors to stderr).
    fn reload(
        &self,
        file: Option<&str>,
        ctx: &ControlContext,
    ) -> Result<(String, Arc<GatewayShared>), String> {
        match LiveGateway::reload(self, file, ctx.conntrack, ctx.sweep_interval_ms) {
            Ok(r) => {
                print!("ctgate: {}", r.report);
                Ok((r.report, r.version))
            }
            Err(e) => {
                eprintln!("ctgate: reload refused: {e}");
                Err(e)
            }
        }
    }

    fn drop_old_pools(&self) -> Result<(), String> {
        LiveGateway::drop_old_pools(self)
    }

    fn running(&self) -> Running {
        let s = self.state.borrow();
        Running {
            config: s.config.clone(),
            generation: s.generation,
            loaded_unix: s.loaded_unix,
        }
    }

    fn version(&self) -> Arc<GatewayShared> {
        self.shared()
    }

    fn workers_behind(&self) -> usize {
        self.state.borrow().publisher.workers_behind()
    }
}

/// The fields of `new` that differ from `old` and need a restart, each as `FIELD: …
/// needs a restart`.
pub fn restart_fields(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let ifaces = |c: &Config| c.ports.iter().map(|p| (p.port, p.vlan)).collect::<Vec<_>>();
    if ifaces(old) != ifaces(new) {
        out.push(
            "port: the set of ports and VLAN sub-interfaces changed: needs a restart".to_string(),
        );
    }
    if old.metrics_listen != new.metrics_listen {
        out.push("metrics.listen: changed: needs a restart".to_string());
    }
    if old.datapath.buckets != new.datapath.buckets {
        out.push(format!(
            "datapath.buckets: {} -> {} needs a restart",
            old.datapath.buckets, new.datapath.buckets
        ));
    }
    out
}

/// The tracker settings as `NAME -> value` (names as in the file).
fn settings_of_tracker(ct: &Conntrack, sweep: &AtomicU32, ipf: &Ipf) -> BTreeMap<String, String> {
    let mut m = fragment_settings(&ipf.settings());
    m.insert("datapath.max_conns".into(), ct.max_conns().to_string());
    m.insert(
        "datapath.tcp_seq_check".into(),
        ct.tcp_seq_check().to_string(),
    );
    m.insert(
        "datapath.sweep_interval_ms".into(),
        sweep.load(Ordering::Relaxed).to_string(),
    );
    m.insert(
        "limits.default".into(),
        ct.zones().default_limit().to_string(),
    );
    for (z, l, _) in ct.zones().explicit_limits() {
        m.insert(format!("limits.zone {z}"), l.to_string());
    }
    for a in TimeoutAttr::ALL {
        let secs = ct
            .default_policy()
            .get_ms(a)
            .map_or(a.default_secs(), |ms| ms / 1000);
        m.insert(format!("timeouts.{}", a.name()), secs.to_string());
    }
    for (z, zone) in ct.zones().existing() {
        for a in TimeoutAttr::ALL {
            if let Some(ms) = zone.policy.get_ms(a) {
                m.insert(
                    format!("timeouts.zone {z}.{}", a.name()),
                    (ms / 1000).to_string(),
                );
            }
        }
    }
    m
}

/// What [`settings_of_tracker`] reads after a start with `cfg`.
fn settings_of_config(cfg: &Config) -> BTreeMap<String, String> {
    let mut m = fragment_settings(&cfg.fragments);
    m.insert(
        "datapath.max_conns".into(),
        cfg.datapath.max_conns.to_string(),
    );
    m.insert(
        "datapath.tcp_seq_check".into(),
        cfg.datapath.tcp_seq_check.to_string(),
    );
    m.insert(
        "datapath.sweep_interval_ms".into(),
        cfg.datapath.sweep_interval_ms.to_string(),
    );
    m.insert("limits.default".into(), cfg.default_limit.to_string());
    for (z, l) in &cfg.zone_limits {
        m.insert(format!("limits.zone {z}"), l.to_string());
    }
    for a in TimeoutAttr::ALL {
        let secs = cfg
            .timeouts
            .iter()
            .find(|(x, _)| *x == a)
            .map_or(a.default_secs(), |&(_, s)| s);
        m.insert(format!("timeouts.{}", a.name()), secs.to_string());
    }
    for (z, list) in &cfg.zone_timeouts {
        for (a, s) in list {
            m.insert(format!("timeouts.zone {z}.{}", a.name()), s.to_string());
        }
    }
    m
}

/// The `[fragments]` settings as `NAME -> value`.
fn fragment_settings(f: &FragSettings) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("enabled_v4", f.enabled_v4.to_string()),
        ("enabled_v6", f.enabled_v6.to_string()),
        ("min_frag_v4", f.min_frag_v4.to_string()),
        ("min_frag_v6", f.min_frag_v6.to_string()),
        ("max_frags", f.max_frags.to_string()),
        ("timeout_ms", f.timeout_ms.to_string()),
    ] {
        m.insert(format!("fragments.{k}"), v);
    }
    m
}

/// Sets the reassembly settings to `f` (validated with the file: the setters accept
/// them).
fn apply_fragment_settings(f: &FragSettings, ipf: &Ipf) {
    ipf.set_enabled(Family::V4, f.enabled_v4);
    ipf.set_enabled(Family::V6, f.enabled_v6);
    let _ = ipf.set_min_frag(Family::V4, f.min_frag_v4);
    let _ = ipf.set_min_frag(Family::V6, f.min_frag_v6);
    let _ = ipf.set_max_frags(f.max_frags);
    ipf.set_timeout_ms(f.timeout_ms);
}

/// Sets the tracker's limits, timeout policies, sequence checking and the sweep interval
/// to `cfg`'s (`max_conns` is set before, as it can fail).
fn apply_tracker_settings(cfg: &Config, ct: &Conntrack, sweep: &AtomicU32) {
    ct.set_tcp_seq_check(cfg.datapath.tcp_seq_check);
    ct.set_helpers(&cfg.alg);
    sweep.store(cfg.datapath.sweep_interval_ms, Ordering::Relaxed);
    let zones = ct.zones();
    zones.set_default_limit(cfg.default_limit);
    for (z, _, _) in zones.explicit_limits() {
        if !cfg.zone_limits.iter().any(|(x, _)| *x == z) {
            zones.del_limit(z);
        }
    }
    for &(z, l) in &cfg.zone_limits {
        zones.set_limit(z, l);
    }
    for a in TimeoutAttr::ALL {
        let secs = cfg
            .timeouts
            .iter()
            .find(|(x, _)| *x == a)
            .map_or(a.default_secs(), |&(_, s)| s);
        ct.default_policy().set_ms(a, secs.saturating_mul(1000));
    }
    for (z, zone) in zones.existing() {
        let want = cfg
            .zone_timeouts
            .iter()
            .find(|(x, _)| *x == z)
            .map_or(&[][..], |(_, l)| l.as_slice());
        // An attribute to remove: start from an empty overlay (a moment with the
        // defaults only, for that zone's new packets).
        if TimeoutAttr::ALL
            .iter()
            .any(|&a| zone.policy.get_ms(a).is_some() && !want.iter().any(|(x, _)| *x == a))
        {
            zone.policy.clear();
        }
    }
    for (z, list) in &cfg.zone_timeouts {
        let zone = zones.get_or_create(*z);
        for &(a, s) in list {
            zone.policy.set_ms(a, s.saturating_mul(1000));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_DEFAULT;
    use crate::conntrack::CtConfig;
    use crate::pipeline::gateway::GatewayStep;
    use crate::pipeline::{MacAddr, PacketStep};
    use crate::test_dir::TestDir;

    fn text(pool: &str) -> String {
        EMBEDDED_DEFAULT
            .replace("max_conns = 3000000", "max_conns = 4096")
            .replace("pool = \"192.0.2.1\"", &format!("pool = \"{pool}\""))
    }

    /// Writes the file `name` in the test's directory; returns its path as text.
    fn write(dir: &TestDir, name: &str, body: &str) -> String {
        dir.file(name, body).display().to_string()
    }

    fn gateway(path: &str) -> (LiveGateway, Arc<Conntrack>, AtomicU32) {
        gateway_of(Config::load(std::path::Path::new(path)).unwrap())
    }

    fn gateway_of(cfg: Config) -> (LiveGateway, Arc<Conntrack>, AtomicU32) {
        let ct = Arc::new(Conntrack::new(CtConfig {
            max_conns: cfg.datapath.max_conns,
            n_buckets: 0,
            workers: 1,
            tcp_seq_check: true,
            hash_seed: Some(1),
        }));
        let macs = [
            (0, MacAddr([2, 0, 0, 0, 0, 1])),
            (1, MacAddr([2, 0, 0, 0, 0, 2])),
        ];
        let shared = GatewayShared::new(&cfg, Arc::clone(&ct), &macs).unwrap();
        let sweep = AtomicU32::new(cfg.datapath.sweep_interval_ms);
        // As a start does (`build_tracker`).
        apply_tracker_settings(&cfg, &ct, &sweep);
        (LiveGateway::new(cfg, shared), ct, sweep)
    }

    #[test]
    fn an_invalid_file_is_refused_with_its_line_and_nothing_changes() {
        let dir = TestDir::new("reload");
        let a = write(&dir, "invalid-a.toml", &text("192.0.2.1"));
        let (live, ct, sweep) = gateway(&a);
        let mut step = GatewayStep::new(live.shared(), 0);
        let bad = write(
            &dir,
            "invalid-bad.toml",
            &text("192.0.2.7").replace("role = \"outside\"", "role = \"sideways\""),
        );
        let e = live.reload(Some(&bad), &ct, &sweep).err().unwrap();
        assert!(e.starts_with(&format!("{bad}:")), "{e}");
        let line = e[bad.len() + 1..].split(':').next().unwrap();
        let want = text("192.0.2.7")
            .lines()
            .position(|l| l.contains("role = \"outside\""))
            .unwrap()
            + 1;
        assert_eq!(line, want.to_string(), "{e}");
        assert_eq!(live.origin().0, 1, "generation unchanged");
        assert_eq!(live.config().source, a);
        assert_eq!(live.shared().generation(), 1);
        // A valid one: generation 2, the worker switches at its next burst.
        let b = write(&dir, "invalid-b.toml", &text("192.0.2.7"));
        let r = live.reload(Some(&b), &ct, &sweep).unwrap();
        assert_eq!(r.report, format!("reloaded generation 2 from {b}\n"));
        assert_eq!(live.config().source, b);
        let mut f = [0u8; 14];
        step.process(&mut f, 0);
        assert_eq!(
            live.reclaim(),
            0,
            "version 1 freed after the worker's burst"
        );
        drop(step);
    }

    #[test]
    fn alg_rules_change_live_on_reload() {
        use crate::conntrack::alg::expect::Helper;
        let dir = TestDir::new("reload");
        let a = write(&dir, "alg-a.toml", &text("192.0.2.1"));
        let (live, ct, sweep) = gateway(&a);
        assert_eq!(ct.helpers(), vec![(Helper::Ftp, 21), (Helper::Tftp, 69)]);
        let b = write(
            &dir,
            "alg-b.toml",
            &text("192.0.2.1").replace("port = 21\n", "port = 2121\n"),
        );
        live.reload(Some(&b), &ct, &sweep).unwrap();
        assert_eq!(ct.helpers(), vec![(Helper::Ftp, 2121), (Helper::Tftp, 69)]);
    }

    #[test]
    fn a_gateway_started_on_the_embedded_default_rereads_the_embedded_default() {
        let dir = TestDir::new("reload");
        let mut cfg = Config::embedded().unwrap();
        assert_eq!(cfg.source, EMBEDDED_NAME);
        // A small pool for the test: the embedded default's 3000000 is then above it,
        // which shows that the reload read the embedded text.
        cfg.datapath.max_conns = 4096;
        let (live, ct, sweep) = gateway_of(cfg);
        let e = live.reload(None, &ct, &sweep).err().unwrap();
        assert!(
            e.starts_with(&format!("{EMBEDDED_NAME}: datapath.max_conns:"))
                && e.contains("needs a restart; the running configuration stays"),
            "{e}"
        );
        assert_eq!(live.origin().0, 1);
        assert_eq!(ct.max_conns(), 4096);
        // With the pool it would have had at start, the reload goes through.
        let a = write(&dir, "embedded-a.toml", &text("192.0.2.1"));
        live.reload(Some(&a), &ct, &sweep).unwrap();
        assert_eq!(live.origin().1, a);
    }

    /// A gateway's info for the commands: only its configuration in force.
    struct LiveInfo<'a>(&'a LiveGateway);

    impl crate::control::commands::GatewayInfo for LiveInfo<'_> {
        fn show(&self) -> String {
            String::new()
        }
        fn stats(&self) -> String {
            String::new()
        }
        fn live(&self) -> Option<&dyn LiveConfig> {
            Some(self.0)
        }
    }

    /// Steps `job` once; (done, output).
    fn step(
        job: &mut Box<dyn crate::control::commands::Job>,
        ctx: &ControlContext,
    ) -> (bool, String) {
        let mut out = String::new();
        let s = job.step(ctx, 1024, &mut out).unwrap();
        (s == crate::control::commands::Step::Done, out)
    }

    #[test]
    fn reload_answers_once_every_worker_runs_the_new_version() {
        use crate::control::commands::{execute, Outcome};
        let dir = TestDir::new("reload");
        let a = write(&dir, "switch-a.toml", &text("192.0.2.1"));
        let (live, ct, sweep) = gateway(&a);
        let mut worker = GatewayStep::new(live.shared(), 0);
        let info = LiveInfo(&live);
        let ctx = ControlContext {
            conntrack: &ct,
            sweep_interval_ms: &sweep,
            info: &info,
            ipf: None,
            now: 1,
        };
        let Outcome::Stream(mut job) = execute(&ctx, "reload", &[]) else {
            panic!("reload answered before the worker switched");
        };
        // Published, but the worker has not passed a burst: no answer yet.
        assert_eq!(live.origin().0, 2);
        assert_eq!(step(&mut job, &ctx), (false, String::new()));
        assert_eq!(step(&mut job, &ctx), (false, String::new()));
        let mut f = [0u8; 14];
        worker.process(&mut f, 0);
        assert_eq!(
            step(&mut job, &ctx),
            (true, format!("reloaded generation 2 from {a}\n"))
        );
        // A worker that does not switch (stalled): the answer comes after the wait,
        // with a note.
        let Outcome::Stream(mut job) = execute(&ctx, "reload", &[]) else {
            panic!("no job");
        };
        let start = std::time::Instant::now();
        let out = loop {
            let (done, out) = step(&mut job, &ctx);
            if done {
                break out;
            }
            assert!(out.is_empty());
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(start.elapsed() >= crate::control::commands::SWITCH_WAIT);
        assert_eq!(
            out,
            format!(
                "reloaded generation 3 from {a}\n\
                 note: 1 workers still run the previous version after 2 s \
                 (they switch at their next burst)\n"
            )
        );
        drop(worker);
    }

    #[test]
    fn fields_that_need_a_restart_are_refused_by_name() {
        let dir = TestDir::new("reload");
        let a = write(&dir, "restart-a.toml", &text("192.0.2.1"));
        let (live, ct, sweep) = gateway(&a);
        let vlan = write(
            &dir,
            "restart-vlan.toml",
            &format!(
                "{}\n[[port]]\nport = 0\nvlan = 10\nrole = \"inside\"\nipv4 = \"10.0.10.1/24\"\nzone = 1\n",
                text("192.0.2.1")
            ),
        );
        let e = live.reload(Some(&vlan), &ct, &sweep).err().unwrap();
        assert!(
            e.contains("port: the set of ports and VLAN sub-interfaces changed: needs a restart"),
            "{e}"
        );
        let big = write(
            &dir,
            "restart-big.toml",
            &text("192.0.2.1").replace("max_conns = 4096", "max_conns = 9000000"),
        );
        let e = live.reload(Some(&big), &ct, &sweep).err().unwrap();
        assert!(
            e.contains("datapath.max_conns:") && e.contains("needs a restart"),
            "{e}"
        );
        let buckets = write(
            &dir,
            "restart-buckets.toml",
            &text("192.0.2.1").replace("buckets = 0", "buckets = 1024"),
        );
        let e = live.reload(Some(&buckets), &ct, &sweep).err().unwrap();
        assert!(
            e.contains("datapath.buckets: 0 -> 1024 needs a restart"),
            "{e}"
        );
        let metrics = write(
            &dir,
            "restart-metrics.toml",
            &format!(
                "{}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
                text("192.0.2.1")
            ),
        );
        let e = live.reload(Some(&metrics), &ct, &sweep).err().unwrap();
        assert!(
            e.contains("metrics.listen: changed: needs a restart"),
            "{e}"
        );
        assert_eq!(live.origin().0, 1);
        assert_eq!(ct.max_conns(), 4096, "nothing changed");
    }

    /// `text` with `mtu = N` on the inside (0) and outside (1) ports.
    fn with_mtus(inside: u16, outside: u16) -> String {
        text("192.0.2.1")
            .replacen(
                "role = \"inside\"",
                &format!("role = \"inside\"\nmtu = {inside}"),
                1,
            )
            .replacen(
                "role = \"outside\"",
                &format!("role = \"outside\"\nmtu = {outside}"),
                1,
            )
    }

    thread_local! {
        /// The calls of [`recording_setter`] on this test's thread.
        static MTU_CALLS: RefCell<Vec<(u16, u16)>> = const { RefCell::new(Vec::new()) };
    }

    /// An MTU setter that records its calls and refuses port 1 above 1280.
    fn recording_setter(id: u16, mtu: u16) -> Result<(), String> {
        MTU_CALLS.with(|c| c.borrow_mut().push((id, mtu)));
        if id == 1 && mtu > 1280 && mtu < 1500 {
            Err("Operation not supported (errno 95)".into())
        } else {
            Ok(())
        }
    }

    fn mtu_calls() -> Vec<(u16, u16)> {
        MTU_CALLS.with(|c| c.borrow().clone())
    }

    /// A gateway whose MTU setter is [`recording_setter`].
    fn mtu_gateway(path: &str) -> (LiveGateway, Arc<Conntrack>, AtomicU32) {
        let (live, ct, sweep) = gateway(path);
        MTU_CALLS.with(|c| c.borrow_mut().clear());
        (live.with_mtu_setter(recording_setter), ct, sweep)
    }

    #[test]
    fn a_reload_changes_port_mtus_on_the_devices_and_in_the_datapath() {
        let dir = TestDir::new("reload");
        let a = write(&dir, "mtu-a.toml", &with_mtus(9000, 1500));
        let (live, ct, sweep) = mtu_gateway(&a);
        let b = write(&dir, "mtu-b.toml", &with_mtus(9000, 1280));
        let r = live.reload(Some(&b), &ct, &sweep).unwrap();
        assert_eq!(
            r.report,
            format!("reloaded generation 2 from {b}\nport 1 mtu: 1500 -> 1280\n")
        );
        assert_eq!(mtu_calls(), [(1, 1280)]);
        // The new version's egress: a 1300-byte DF packet no longer fits the outside.
        let mut step = GatewayStep::new(live.shared(), 0);
        let mut f = crate::wire::testframe::Frame::v4(
            [10, 0, 0, 2],
            [198, 51, 100, 7],
            crate::wire::testframe::L4::udp(5000, 53, &[7; 1272]),
        )
        .macs([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 2])
        .build();
        assert_eq!(
            step.process(&mut f, 0),
            crate::pipeline::Verdict::Drop(crate::pipeline::DropReason::MtuExceeded)
        );
        // Back up to 9000 on the outside: within what the buffers hold (the inside's).
        let c = write(&dir, "mtu-c.toml", &with_mtus(9000, 9000));
        live.reload(Some(&c), &ct, &sweep).unwrap();
        assert_eq!(mtu_calls().last(), Some(&(1, 9000)));
        drop(step);
    }

    #[test]
    fn an_mtu_the_buffers_or_the_device_cannot_take_is_refused_as_needing_a_restart() {
        let dir = TestDir::new("reload");
        let a = write(&dir, "mtu-refuse-a.toml", &with_mtus(1500, 1500));
        let (live, ct, sweep) = mtu_gateway(&a);
        let big = write(&dir, "mtu-refuse-big.toml", &with_mtus(1500, 9000));
        let e = live.reload(Some(&big), &ct, &sweep).err().unwrap();
        assert!(
            e.contains("port[1].mtu: 9000 is larger than the 1500 the buffers were sized for at start: raising it needs a restart"),
            "{e}"
        );
        assert!(mtu_calls().is_empty(), "no device touched");
        // Port 0's change is taken, port 1's refused by the device: port 0 is put back.
        let both = write(&dir, "mtu-refuse-both.toml", &with_mtus(1400, 1300));
        let e = live.reload(Some(&both), &ct, &sweep).err().unwrap();
        assert!(
            e.contains("port[1].mtu: 1500 -> 1300: the device refused it while running (Operation not supported (errno 95)): needs a restart; the running configuration stays"),
            "{e}"
        );
        assert_eq!(mtu_calls(), [(0, 1400), (1, 1300), (0, 1500)]);
        assert_eq!(live.origin().0, 1, "nothing changed");
        assert_eq!(live.config().ports[1].mtu, 1500);
    }

    #[test]
    fn run_time_settings_the_reload_changes_are_reported() {
        let dir = TestDir::new("reload");
        let a = write(&dir, "reset-a.toml", &text("192.0.2.1"));
        let (live, ct, sweep) = gateway(&a);
        ct.set_max_conns(100).unwrap();
        ct.zones().set_limit(3, 7);
        sweep.store(500, Ordering::Relaxed);
        let r = live.reload(None, &ct, &sweep).unwrap();
        assert_eq!(
            r.report,
            format!(
                "reloaded generation 2 from {a}\n\
                 reset datapath.max_conns: 100 -> 4096 (set at run time)\n\
                 reset datapath.sweep_interval_ms: 500 -> 20000 (set at run time)\n\
                 reset limits.zone 3: 7 -> unset (set at run time)\n"
            )
        );
        assert_eq!(ct.max_conns(), 4096);
        assert_eq!(sweep.load(Ordering::Relaxed), 20000);
        assert!(ct.zones().explicit_limits().is_empty());
    }
}
