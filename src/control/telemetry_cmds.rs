//! ctgate's DPDK telemetry commands, as data: `/ctgate/stats`, `/ctgate/zones`,
//! `/ctgate/buckets` and `/ctgate/drops`, each a JSON value shaped so that it maps one to one onto
//! `rte_tel_data` (so `dpdk-telemetry.py` and exporters read them like any DPDK app's):
//!
//! * the top level is an object of at most [`MAX_DICT_ENTRIES`] entries
//!   (`RTE_TEL_MAX_DICT_ENTRIES`), each an unsigned integer (`rte_tel_data_add_dict_u64`),
//!   a string (`…_add_dict_string`, at most 127 bytes) or an object of unsigned integers
//!   (one level of container, `rte_tel_data_add_dict_container`);
//! * names are at most 63 bytes.
//!
//! [`handler`] gives the function the DPDK wrapper (`src/dpdk/telemetry.rs`) calls for
//! each of [`COMMANDS`]; the wrapper converts the value with the rules above. Each
//! gateway run registers a handler over its own tracker (a later run in the same process,
//! as `ctgate-perf datapath` does, replaces it). Telemetry callbacks run on DPDK's
//! telemetry thread: everything here only reads atomics and bucket words without locks,
//! so it is safe to call from there.

use std::sync::Arc;

use crate::conntrack::Conntrack;
use crate::pipeline::{DropCounters, DropReason};
use serde_json::{json, Map, Value};

/// `RTE_TEL_MAX_DICT_ENTRIES`.
pub const MAX_DICT_ENTRIES: usize = 256;

/// The telemetry commands and their help strings.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "/ctgate/stats",
        "ctgate tracker counters: connections, limits, created, expired, refused, invalid. Takes no parameters",
    ),
    (
        "/ctgate/zones",
        "ctgate zones in use with count and limit (zone_N entries). Parameters: optional zone number",
    ),
    (
        "/ctgate/buckets",
        "ctgate connection table bucket distribution: buckets, connections, min, max, avg. Takes no parameters",
    ),
    (
        "/ctgate/drops",
        "ctgate workers' packets summed: rx, tx, generated, consumed, dropped and drop_<reason> per drop reason. Takes no parameters",
    ),
];

/// The workers' counters summed, for `/ctgate/drops`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerTotals {
    pub rx: u64,
    pub tx: u64,
    pub generated: u64,
    /// Frames kept as copies (IP fragments held for reassembly).
    pub consumed: u64,
    pub drops: DropCounters,
}

/// Where the handler reads the workers' totals (`None` before they run).
pub type TotalsFn = Arc<dyn Fn() -> Option<WorkerTotals> + Send + Sync>;

/// `/ctgate/drops`: `rx`, `tx`, `generated`, `consumed`, `dropped` and one `drop_<reason>` per
/// [`DropReason`] (the names of the `worker=` lines).
pub fn drops(t: &WorkerTotals) -> Value {
    let mut m = Map::new();
    m.insert("rx".into(), t.rx.into());
    m.insert("tx".into(), t.tx.into());
    m.insert("generated".into(), t.generated.into());
    m.insert("consumed".into(), t.consumed.into());
    m.insert("dropped".into(), t.drops.total().into());
    for r in DropReason::ALL {
        m.insert(format!("drop_{}", r.name()), t.drops.get(r).into());
    }
    Value::Object(m)
}

/// The value of telemetry command `cmd` with its parameter string, or `None` for a
/// command that is not ctgate's or a bad parameter.
pub fn handle(ct: &Conntrack, cmd: &str, params: &str) -> Option<Value> {
    match cmd {
        "/ctgate/stats" => Some(stats(ct)),
        "/ctgate/zones" => zones(ct, params),
        "/ctgate/buckets" => Some(buckets(ct)),
        _ => None,
    }
}

/// The telemetry handler over `ct`: [`handle`] with the tracker it keeps alive, and
/// `/ctgate/drops` from `totals`.
pub fn handler(
    ct: Arc<Conntrack>,
    totals: TotalsFn,
) -> impl Fn(&str, &str) -> Option<Value> + Send + Sync {
    move |cmd: &str, params: &str| match cmd {
        "/ctgate/drops" => Some(drops(&totals().unwrap_or_default())),
        _ => handle(&ct, cmd, params),
    }
}

/// `/ctgate/stats`: the global counters.
pub fn stats(ct: &Conntrack) -> Value {
    let mut m = Map::new();
    m.insert("n_conns".into(), ct.n_conns().into());
    m.insert("max_conns".into(), ct.max_conns().into());
    m.insert("tcp_seq_check".into(), u64::from(ct.tcp_seq_check()).into());
    m.insert(
        "default_zone_limit".into(),
        ct.zones().default_limit().into(),
    );
    for (k, v) in ct.counters().fields() {
        m.insert(k.into(), v.into());
    }
    Value::Object(m)
}

/// `/ctgate/zones`: zones in use (`zone_N: {count, limit}`, limit 0 = none), lowest
/// first, as many as fit; with a zone number as parameter, that zone only.
pub fn zones(ct: &Conntrack, params: &str) -> Option<Value> {
    let zones = ct.zones();
    let entry = |z: &crate::conntrack::zones::Zone| {
        json!({
            "count": z.count(),
            "limit": z.explicit_limit().unwrap_or(zones.default_limit()),
            "own_limit": u64::from(z.explicit_limit().is_some()),
        })
    };
    let mut m = Map::new();
    m.insert("default_limit".into(), zones.default_limit().into());
    let params = params.trim();
    if !params.is_empty() {
        let z: u16 = params.parse().ok()?;
        if let Some(zone) = zones.get(z) {
            m.insert(format!("zone_{z}"), entry(zone));
        }
        return Some(Value::Object(m));
    }
    let mut used = 0u64;
    let mut shown = 0u64;
    for (z, zone) in zones.existing() {
        used += 1;
        // Three entries are the summary fields.
        if shown < (MAX_DICT_ENTRIES - 3) as u64 {
            m.insert(format!("zone_{z}"), entry(zone));
            shown += 1;
        }
    }
    m.insert("zones_in_use".into(), used.into());
    m.insert("zones_shown".into(), shown.into());
    Some(Value::Object(m))
}

/// Bucket distribution: connections counted in the bucket of their original key.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BucketSummary {
    pub buckets: u64,
    pub connections: u64,
    pub min: u64,
    pub max: u64,
    /// Buckets holding no connection.
    pub empty: u64,
}

impl BucketSummary {
    /// Average connections per bucket.
    pub fn avg(&self) -> f64 {
        self.connections as f64 / self.buckets.max(1) as f64
    }
}

/// Walks every bucket once (lock-free reads) and summarises.
pub fn bucket_summary(ct: &Conntrack) -> BucketSummary {
    let t = ct.table();
    let n = t.n_buckets();
    let mut s = BucketSummary {
        buckets: n as u64,
        min: u64::MAX,
        ..Default::default()
    };
    for b in 0..n {
        let mut c = 0u64;
        t.for_each_in_bucket(b, |_, _| c += 1);
        s.connections += c;
        s.min = s.min.min(c);
        s.max = s.max.max(c);
        if c == 0 {
            s.empty += 1;
        }
    }
    if n == 0 {
        s.min = 0;
    }
    s
}

/// `/ctgate/buckets`: the bucket distribution summary (the average as a string with two
/// decimals, telemetry having no floating-point type in DPDK 22.11).
pub fn buckets(ct: &Conntrack) -> Value {
    let s = bucket_summary(ct);
    json!({
        "buckets": s.buckets,
        "connections": s.connections,
        "min": s.min,
        "max": s.max,
        "empty": s.empty,
        "avg": format!("{:.2}", s.avg()),
        "overflow_buckets_used": ct.table().overflow_used() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::testpkt::udp;
    use crate::conntrack::CtConfig;

    fn tracker() -> Conntrack {
        Conntrack::new(CtConfig {
            max_conns: 1000,
            n_buckets: 64,
            workers: 1,
            tcp_seq_check: true,
            hash_seed: Some(3),
        })
    }

    /// Checks the shape rules of the module doc on a value.
    fn fits_rte_tel_data(v: &Value) {
        let m = v.as_object().expect("top level is an object");
        assert!(m.len() <= MAX_DICT_ENTRIES);
        for (k, x) in m {
            assert!(k.len() < 64, "name {k}");
            match x {
                Value::Number(n) => assert!(n.is_u64(), "{k}={n}"),
                Value::String(s) => assert!(s.len() < 128),
                Value::Object(inner) => {
                    for (k2, y) in inner {
                        assert!(k2.len() < 64);
                        assert!(y.as_u64().is_some(), "{k}.{k2}={y}");
                    }
                }
                other => panic!("{k}: {other} does not map onto rte_tel_data"),
            }
        }
    }

    #[test]
    fn values_report_the_tracker_and_fit_telemetry() {
        let ct = tracker();
        let mut w = ct.worker(0);
        for i in 0..10u16 {
            let zone = i % 3;
            assert!(w
                .process(&udp("10.0.0.1", "10.0.0.2", 1000 + i, 53), zone, true, 0)
                .conn
                .is_some());
        }
        ct.zones().set_limit(2, 7);
        ct.zones().set_default_limit(100);
        let s = stats(&ct);
        fits_rte_tel_data(&s);
        assert_eq!(s["n_conns"], 10);
        assert_eq!(s["created"], 10);
        assert_eq!(s["max_conns"], 1000);
        assert_eq!(s["default_zone_limit"], 100);
        let z = zones(&ct, "").unwrap();
        fits_rte_tel_data(&z);
        assert_eq!(z["zone_0"]["count"], 4);
        assert_eq!(z["zone_1"]["count"], 3);
        assert_eq!(z["zone_2"]["count"], 3);
        assert_eq!(z["zone_2"]["limit"], 7);
        assert_eq!(z["zone_2"]["own_limit"], 1);
        assert_eq!(z["zone_0"]["limit"], 100);
        assert_eq!(z["zones_in_use"], 3);
        let z1 = zones(&ct, "1").unwrap();
        assert_eq!(z1["zone_1"]["count"], 3);
        assert!(z1.get("zone_0").is_none());
        assert!(zones(&ct, "x").is_none());
        let b = buckets(&ct);
        fits_rte_tel_data(&b);
        assert_eq!(b["buckets"], 64);
        assert_eq!(b["connections"], 10);
        let sum = bucket_summary(&ct);
        assert!(sum.max >= 1 && sum.min == 0);
        assert_eq!(b["avg"], "0.16");
        assert_eq!(handle(&ct, "/ctgate/stats", ""), Some(s));
        assert_eq!(handle(&ct, "/ethdev/stats", ""), None);
    }

    #[test]
    fn drops_name_every_reason_as_the_worker_lines_do_and_fit_telemetry() {
        let mut d = DropCounters::default();
        d.add(DropReason::MartianSrc, 3);
        d.add(DropReason::Vlan, 2);
        let t = WorkerTotals {
            rx: 10,
            tx: 6,
            generated: 1,
            consumed: 2,
            drops: d,
        };
        let h = handler(Arc::new(tracker()), Arc::new(move || Some(t)));
        let v = h("/ctgate/drops", "").unwrap();
        fits_rte_tel_data(&v);
        assert_eq!(v["rx"], 10);
        assert_eq!(v["dropped"], 5);
        assert_eq!(v["consumed"], 2);
        assert_eq!(v["drop_martian_src"], 3);
        assert_eq!(v["drop_vlan"], 2);
        assert_eq!(v["drop_bad_ip_checksum"], 0);
        assert_eq!(v.as_object().unwrap().len(), 5 + DropReason::COUNT);
        assert!(h("/ctgate/stats", "").is_some());
        let before = handler(Arc::new(tracker()), Arc::new(|| None));
        assert_eq!(before("/ctgate/drops", "").unwrap()["rx"], 0);
    }

    #[test]
    fn many_zones_are_capped_to_what_a_telemetry_dict_holds() {
        let ct = tracker();
        for z in 0..400u16 {
            ct.zones().set_limit(z, 1);
        }
        let v = zones(&ct, "").unwrap();
        fits_rte_tel_data(&v);
        assert_eq!(v["zones_in_use"], 400);
        assert_eq!(v["zones_shown"], (MAX_DICT_ENTRIES - 3) as u64);
    }
}
