//! Setting a run up, before any worker starts: the configuration's ports checked against
//! what EAL probed, the queue plan, one mempool per NUMA socket, the ports configured,
//! and the tracker built from the configuration.

use std::fmt::Write as _;

use crate::config::{Config, Role};
use crate::conntrack::{Conntrack, CtConfig};
use crate::dpdk::{
    self, Eal, Mempool, PageSize, Port, PortCaps, BURST_SIZE, DEFAULT_MBUF_BUF_SIZE,
};
use crate::pipeline::forward::MAX_PORTS;
use crate::pipeline::ports::{PortLimits, PortPlan, PortQueues, WorkerQueues};
use crate::pipeline::MacAddr;

/// RX/TX descriptors requested per queue (the device may adjust them).
const RX_DESC: u16 = 1024;
const TX_DESC: u16 = 1024;
/// Per-lcore mempool cache (DPDK's maximum is 512).
const MEMPOOL_CACHE: u32 = 256;

/// The tracker as the configuration describes it: size, sequence checking, limits and
/// timeout overrides (seconds in the file, milliseconds in the tracker), on 4 KiB pages.
pub fn build_tracker(cfg: &Config, workers: usize) -> Conntrack {
    build_tracker_on(cfg, workers, PageSize::Small)
}

/// [`build_tracker`] with the buckets and record pool on `pages`: the gateway asks for
/// [`PageSize::Huge`] when EAL runs with hugepages (falling back to 4 KiB pages when the
/// kernel's pool has no room left), for small pages with `--no-huge`.
pub fn build_tracker_on(cfg: &Config, workers: usize, pages: PageSize) -> Conntrack {
    let ct = Conntrack::with_pages(
        CtConfig {
            max_conns: cfg.datapath.max_conns,
            n_buckets: cfg.datapath.buckets,
            workers: workers.max(1),
            tcp_seq_check: cfg.datapath.tcp_seq_check,
            hash_seed: None,
        },
        pages,
    );
    ct.zones().set_default_limit(cfg.default_limit);
    ct.set_helpers(&cfg.alg);
    for &(zone, limit) in &cfg.zone_limits {
        ct.zones().set_limit(zone, limit);
    }
    for &(attr, secs) in &cfg.timeouts {
        ct.default_policy().set_ms(attr, secs.saturating_mul(1000));
    }
    for (zone, list) in &cfg.zone_timeouts {
        let z = ct.zones().get_or_create(*zone);
        for &(attr, secs) in list {
            z.policy.set_ms(attr, secs.saturating_mul(1000));
        }
    }
    ct
}

/// The start-up line of the tracker: `conntrack: max_conns=N buckets=N backing=B
/// table_mib=M`, where B is where the buckets and record pool are (`hugepages`, `pages`,
/// `heap`) and M the MiB of the table's arrays (the buckets committed at start, the records as
/// connections need them).
pub fn tracker_line(ct: &Conntrack) -> String {
    let t = ct.table();
    format!(
        "conntrack: max_conns={} buckets={} backing={} table_mib={}",
        ct.max_conns(),
        t.n_buckets(),
        t.backing().name(),
        t.bytes().div_ceil(1 << 20)
    )
}

/// Every port of the configuration must be among the ports DPDK probed.
pub fn check_ports(cfg: &Config, probed: &[u16]) -> Result<(), String> {
    let list = if probed.is_empty() {
        "none".to_string()
    } else {
        probed
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    for (i, p) in cfg.ports.iter().enumerate() {
        if !probed.contains(&p.port) {
            let at = match cfg.port_lines.get(i).copied().flatten() {
                Some(line) => format!("{}:{line}", cfg.source),
                None => cfg.source.clone(),
            };
            return Err(format!(
                "{at}: port[{i}].port: port {} ({}) does not exist: DPDK found ports {list}; give EAL one device per configured port, in port order (e.g. --vdev net_tap0,iface=ctg-in --vdev net_tap1,iface=ctg-out), or use --pair A:B for the plain forwarding mode",
                p.port,
                role_name(p.role),
            ));
        }
    }
    Ok(())
}

pub(super) fn role_name(r: Role) -> &'static str {
    match r {
        Role::Inside => "inside",
        Role::Outside => "outside",
    }
}

pub(super) fn port_role_text(pc: &crate::config::PortConfig) -> String {
    let mut s = format!("role={} zone={}", role_name(pc.role), pc.zone);
    if let Some((a, l)) = pc.ipv4 {
        let _ = write!(s, " ipv4={a}/{l}");
    }
    if let Some((a, l)) = pc.ipv6 {
        let _ = write!(s, " ipv6={a}/{l}");
    }
    if let Some(v) = pc.vlan {
        let _ = write!(s, " vlan={v}");
    }
    s
}

/// One line per VLAN sub-interface of DPDK port `id` (other than the one
/// `Config::port` shows on the port's own line): `port N vlan V: role=… zone=… …`.
pub(super) fn vlan_lines(cfg: &crate::config::Config, id: u16) -> Vec<String> {
    let shown = cfg.port(id).and_then(|p| p.vlan);
    cfg.ports
        .iter()
        .filter(|p| p.port == id && p.vlan.is_some() && p.vlan != shown)
        .map(|p| {
            format!(
                "port {id} vlan {}: {}",
                p.vlan.unwrap_or(0),
                port_role_text(p)
            )
        })
        .collect()
}

/// The gateway's queue plan: any port may send to any port (including the one a frame
/// came in on: ARP/NDP and echo replies), so every worker gets its own TX queue on every
/// port; RX queues are one per worker on RSS-capable ports, else one, dealt to the
/// workers round-robin, port-major.
pub fn gateway_plan(
    limits: &[PortLimits],
    ports: &[u16],
    workers: usize,
) -> Result<PortPlan, String> {
    if workers == 0 {
        return Err(
            "no worker lcore: give EAL at least two lcores (the first is the control lcore), e.g. -l 0,1"
                .into(),
        );
    }
    let want = u16::try_from(workers).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(ports.len());
    let mut ids = ports.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for &id in &ids {
        let l = limits
            .iter()
            .find(|l| l.id == id)
            .ok_or_else(|| format!("port {id} does not exist"))?;
        if usize::from(id) >= MAX_PORTS {
            return Err(format!(
                "port {id} is beyond the {MAX_PORTS} ports supported"
            ));
        }
        if l.max_tx_queues < want {
            return Err(format!(
                "port {id} has {} TX queues, fewer than the {workers} workers (each needs its own): use at most {} worker lcores",
                l.max_tx_queues, l.max_tx_queues
            ));
        }
        let rx = if l.rss { want.min(l.max_rx_queues) } else { 1 };
        if rx == 0 {
            return Err(format!("port {id} has no RX queue"));
        }
        out.push(PortQueues {
            id,
            peer: id,
            rx_queues: rx,
            tx_queues: want,
            rss: rx > 1,
        });
    }
    let mut ws = vec![WorkerQueues::default(); workers];
    let mut next = 0usize;
    for p in &out {
        for q in 0..p.rx_queues {
            ws[next % workers].rx.push((p.id, q));
            next += 1;
        }
    }
    for (w, wq) in ws.iter_mut().enumerate() {
        let q = u16::try_from(w).unwrap_or(u16::MAX);
        wq.tx = out.iter().map(|p| (p.id, q)).collect();
    }
    Ok(PortPlan {
        pairs: Vec::new(),
        ports: out,
        workers: ws,
    })
}

/// (port id, MAC) of the configured ports.
pub(super) type PortMacs = Vec<(u16, MacAddr)>;

/// Configures every port of the plan on the mempool of its socket (the ports are not
/// started). Returns the ports and their MACs; on error the ports configured so far are
/// closed by their drop.
pub(super) fn configure_ports(
    eal: &Eal,
    plan: &PortPlan,
    caps: &[PortCaps],
    config: Option<&Config>,
    pools: &[(u32, Mempool)],
    socket_of: &dyn Fn(u16) -> u32,
    verbose: bool,
) -> Result<(Vec<Port>, PortMacs), String> {
    let mut ports: Vec<Port> = Vec::with_capacity(plan.ports.len());
    let mut macs: Vec<(u16, MacAddr)> = Vec::with_capacity(plan.ports.len());
    for pq in &plan.ports {
        let socket = socket_of(pq.id);
        let pool = pools
            .iter()
            .find(|(s, _)| *s == socket)
            .map(|(_, p)| *p)
            .ok_or_else(|| format!("no mempool for socket {socket}"))?;
        let conf = dpdk::PortConfig {
            rx_queues: pq.rx_queues,
            tx_queues: pq.tx_queues,
            rx_desc: RX_DESC,
            tx_desc: TX_DESC,
            rss: pq.rss,
            // Forwarding mode (no config) keeps the device's default.
            mtu: config.map_or(0, |cfg| cfg.port_mtu(pq.id)),
        };
        let port = Port::configure(eal, pq.id, &conf, &pool).map_err(|e| e.to_string())?;
        let mac = MacAddr(port.mac().map_err(|e| e.to_string())?);
        let c = caps.iter().find(|c| c.id == pq.id);
        let tail = match config.and_then(|cfg| cfg.port(pq.id)) {
            Some(pc) => port_role_text(pc),
            None => format!("peer={}", pq.peer),
        };
        say!(
            verbose,
            "port {}: name={} driver={} mac={} socket={} rx_queues={} tx_queues={} rss={} {tail}",
            pq.id,
            c.map_or("?", |c| c.name.as_str()),
            c.map_or("?", |c| c.driver.as_str()),
            mac,
            socket,
            pq.rx_queues,
            pq.tx_queues,
            if pq.rss { "on" } else { "off" },
        );
        if let Some(cfg) = config {
            for l in vlan_lines(cfg, pq.id) {
                say!(verbose, "{l}");
            }
        }
        macs.push((pq.id, mac));
        ports.push(port);
    }
    Ok((ports, macs))
}

/// The mbufs' buffer size (headroom included) for a largest MTU of `mtu`: DPDK's
/// default, or one frame of that MTU (Ethernet, two VLAN tags, CRC) in one segment.
pub(super) fn mbuf_buf_size(mtu: u16) -> u16 {
    let frame = crate::pipeline::gateway::frame_room(mtu) + 4;
    let want = usize::from(dpdk::MBUF_HEADROOM) + frame;
    u16::try_from(want)
        .unwrap_or(u16::MAX)
        .max(DEFAULT_MBUF_BUF_SIZE)
}

/// One mempool per NUMA socket that has ports, sized for every descriptor, TX buffer and
/// per-lcore cache that may hold an mbuf at once, and at least `at_least` (`--mbufs`);
/// each buffer holds a frame of `mtu` (the configuration's largest) in one segment.
pub(super) fn create_mempools(
    eal: &Eal,
    plan: &PortPlan,
    socket_of: &dyn Fn(u16) -> u32,
    at_least: u32,
    run_no: u32,
    mtu: u16,
) -> Result<Vec<(u32, Mempool)>, String> {
    let mut sockets: Vec<u32> = plan.ports.iter().map(|p| socket_of(p.id)).collect();
    sockets.sort_unstable();
    sockets.dedup();
    let workers = plan.workers.len() as u32;
    let mut pools = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let rings: u32 = plan
            .ports
            .iter()
            .filter(|p| socket_of(p.id) == socket)
            .map(|p| {
                u32::from(p.rx_queues) * u32::from(RX_DESC)
                    + u32::from(p.tx_queues) * u32::from(TX_DESC)
            })
            .sum();
        let in_flight =
            workers * (BURST_SIZE as u32 * (1 + plan.ports.len() as u32) + MEMPOOL_CACHE);
        let want = (rings + in_flight + 1024).max(8191).max(at_least);
        // Mempools are most compact at 2^n - 1 elements.
        let n = want
            .checked_next_power_of_two()
            .unwrap_or(want)
            .saturating_sub(1)
            .max(want);
        // Mempools live until EAL cleanup: a later run in the same process needs a new name.
        let name = if run_no == 0 {
            format!("ctgate_mbuf_s{socket}")
        } else {
            format!("ctgate_mbuf_s{socket}_r{run_no}")
        };
        let pool = Mempool::new(
            eal,
            &name,
            n,
            MEMPOOL_CACHE,
            mbuf_buf_size(mtu),
            i32::try_from(socket).unwrap_or(-1),
        )
        .map_err(|e| e.to_string())?;
        pools.push((socket, pool));
    }
    Ok(pools)
}

pub(super) fn report_links(ports: &[Port], caps: &[PortCaps]) {
    for p in ports {
        let name = caps
            .iter()
            .find(|c| c.id == p.id())
            .map_or("?", |c| c.name.as_str());
        match p.link() {
            Ok(l) => println!(
                "port {} ({name}): link {} {} Mbps",
                p.id(),
                if l.up { "up" } else { "down" },
                l.speed_mbps
            ),
            Err(e) => println!("port {} ({name}): link unknown ({e})", p.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(id: u16, q: u16, rss: bool) -> PortLimits {
        PortLimits {
            id,
            max_rx_queues: q,
            max_tx_queues: q,
            rss,
        }
    }

    #[test]
    fn gateway_plan_gives_every_worker_a_tx_queue_on_every_port() {
        let p = gateway_plan(&[lim(0, 1, false), lim(1, 1, false)], &[0, 1], 1).unwrap();
        assert_eq!(p.workers[0].rx, vec![(0, 0), (1, 0)]);
        assert_eq!(p.workers[0].tx, vec![(0, 0), (1, 0)]);
        let p = gateway_plan(&[lim(0, 8, false), lim(1, 8, false)], &[1, 0], 2).unwrap();
        assert_eq!(p.workers[0].rx, vec![(0, 0)]);
        assert_eq!(p.workers[1].rx, vec![(1, 0)]);
        assert_eq!(p.workers[1].tx, vec![(0, 1), (1, 1)]);
        assert!(p.ports.iter().all(|q| q.tx_queues == 2 && q.rx_queues == 1));
        let p = gateway_plan(&[lim(0, 8, true), lim(1, 8, true)], &[0, 1], 2).unwrap();
        assert_eq!(p.workers[1].rx, vec![(0, 1), (1, 1)]);
        let e = gateway_plan(&[lim(0, 1, false), lim(1, 1, false)], &[0, 1], 2).unwrap_err();
        assert!(e.contains("at most 1 worker"), "{e}");
        assert!(gateway_plan(&[lim(0, 1, false)], &[0, 1], 1).is_err());
        assert!(gateway_plan(&[lim(0, 1, false)], &[0], 0).is_err());
    }

    #[test]
    fn tracker_follows_the_config() {
        let text = "[datapath]\nmax_conns = 1000\nbuckets = 256\ntcp_seq_check = false\n\
            [[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\nzone = 3\n\
            [[port]]\nport = 1\nrole = \"outside\"\nipv4 = \"192.0.2.1/24\"\n\
            [limits]\ndefault = 7\nzones = [{ zone = 3, limit = 2 }]\n\
            [timeouts]\nudp_first = 5\n[[timeouts.zone]]\nzone = 3\ntcp_established = 9\n\
            [[alg]]\nhelper = \"ftp\"\nport = 2121\n";
        let cfg = Config::parse(text, "t.toml").unwrap();
        let ct = build_tracker(&cfg, 2);
        assert_eq!(
            ct.helpers(),
            vec![(crate::conntrack::alg::expect::Helper::Ftp, 2121)]
        );
        assert_eq!(ct.max_conns(), 1000);
        assert_eq!(ct.table().n_buckets(), 256);
        assert!(!ct.tcp_seq_check());
        assert_eq!(ct.zones().default_limit(), 7);
        assert_eq!(ct.zones().explicit_limits(), vec![(3, 2, 0)]);
        use crate::conntrack::TimeoutAttr;
        assert_eq!(
            ct.default_policy().get_ms(TimeoutAttr::UdpFirst),
            Some(5000)
        );
        assert_eq!(
            ct.zones()
                .get(3)
                .unwrap()
                .policy
                .get_ms(TimeoutAttr::TcpEstablished),
            Some(9000)
        );
    }

    #[test]
    fn tracker_line_names_the_backing_and_size() {
        let cfg = Config::parse(
            "[datapath]\nmax_conns = 100000\nbuckets = 65536\n\
             [[port]]\nport = 0\nrole = \"inside\"\nipv4 = \"10.0.0.1/24\"\n\
             [[port]]\nport = 1\nrole = \"outside\"\nipv4 = \"192.0.2.1/24\"\n",
            "t.toml",
        )
        .unwrap();
        let small = build_tracker_on(&cfg, 1, PageSize::Small);
        assert_eq!(small.table().backing(), dpdk::Backing::Pages);
        let mib = small.table().bytes().div_ceil(1 << 20);
        assert!(mib > 0);
        assert_eq!(
            tracker_line(&small),
            format!("conntrack: max_conns=100000 buckets=65536 backing=pages table_mib={mib}")
        );
        let huge = build_tracker_on(&cfg, 1, PageSize::Huge);
        let line = tracker_line(&huge);
        assert!(
            line.starts_with("conntrack: max_conns=100000 buckets=65536 backing=")
                && (line.contains(" backing=hugepages ") || line.contains(" backing=pages ")),
            "{line}"
        );
    }

    #[test]
    fn missing_config_ports_are_named() {
        let cfg = Config::embedded().unwrap();
        assert!(check_ports(&cfg, &[0, 1]).is_ok());
        let e = check_ports(&cfg, &[0]).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{}:{}: port[1].port: port 1 (outside) does not exist: DPDK found ports 0",
                cfg.source,
                cfg.port_lines[1].unwrap()
            )),
            "{e}"
        );
    }
}
