//! Ethernet ports: capabilities, configuration (queues, RSS), start/stop/close, stats,
//! link, and the per-queue RX/TX burst handles.

use std::ffi::{c_char, CStr};

use super::{Eal, Error, MbufBurst, Mempool};

/// A DPDK port id.
pub type PortId = u16;

/// A MAC address as six bytes.
pub type MacAddr = [u8; 6];

/// Symmetric Toeplitz RSS key: `0x6d5a` repeated. With it both directions of a flow
/// (src/dst swapped) hash to the same queue, so one worker sees a whole connection.
/// 52 bytes covers every key size DPDK devices use (40 or 52).
pub static SYMMETRIC_RSS_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < 52 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// What a port can do (from `rte_eth_dev_info_get`), plus its name and socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortCaps {
    pub id: PortId,
    /// Device name, e.g. `net_pcap0` or `0000:03:00.0`.
    pub name: String,
    /// Driver name, e.g. `net_pcap`.
    pub driver: String,
    /// NUMA socket, or `None` when the device does not say (virtual devices).
    pub socket: Option<u32>,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// RSS hash functions the device offers (`RTE_ETH_RSS_*` bits).
    pub rss_offloads: u64,
    /// RSS key size in bytes (0 if not reported).
    pub hash_key_size: u8,
    /// RX offloads the device offers (`RTE_ETH_RX_OFFLOAD_*` bits).
    pub rx_offloads: u64,
}

impl PortCaps {
    /// True when the device can hash on IP/TCP/UDP to spread packets over RX queues.
    pub fn supports_rss(&self) -> bool {
        self.rss_offloads & rss_ip_tcp_udp() != 0
    }

    /// True when the device verifies IPv4 header checksums on receive (it then sets the
    /// mbuf's `RTE_MBUF_F_RX_IP_CKSUM_*` flags; [`Port::configure`] enables it).
    pub fn supports_rx_ipv4_cksum(&self) -> bool {
        self.rx_offloads & rx_offload_ipv4_cksum() != 0
    }
}

fn rx_offload_ipv4_cksum() -> u64 {
    // SAFETY: a constant defined in shim.c, never written.
    unsafe { dpdk_sys::ctgate_rx_offload_ipv4_cksum }
}

fn rss_ip_tcp_udp() -> u64 {
    // SAFETY: a constant defined in shim.c, never written.
    unsafe { dpdk_sys::ctgate_rss_ip_tcp_udp }
}

/// How to configure a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Requested descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Spread RX over the queues with RSS (IP/TCP/UDP, symmetric key).
    pub rss: bool,
    /// The MTU to set (`rte_eth_conf.rxmode.mtu` and `rte_eth_dev_set_mtu`); 0 keeps the
    /// device's default. The mempool's data room must hold a frame of it.
    pub mtu: u16,
}

/// Port counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// RX packets dropped by the device (no free descriptor).
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Ids of the ports EAL probed, in order.
pub fn available_ports(_eal: &Eal) -> Vec<PortId> {
    let mut out = Vec::new();
    // SAFETY: EAL is initialised; rte_eth_find_next only reads the port table.
    let mut p = unsafe { dpdk_sys::rte_eth_find_next(0) };
    while u32::from(p) < dpdk_sys::RTE_MAX_ETHPORTS {
        out.push(p);
        // SAFETY: as above.
        p = unsafe { dpdk_sys::rte_eth_find_next(p + 1) };
    }
    out
}

/// Capabilities of port `id`.
pub fn port_caps(_eal: &Eal, id: PortId) -> Result<PortCaps, Error> {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: EAL is initialised; `info` is a valid out-parameter.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
    Error::check(|| format!("rte_eth_dev_info_get(port {id})"), ret)?;
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-NULL driver_name is a static NUL-terminated string of the PMD.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    let mut name = [0 as c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: `name` has the RTE_ETH_NAME_MAX_LEN bytes the call requires.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id, name.as_mut_ptr()) };
    let name = if ret == 0 {
        // SAFETY: on success the buffer holds a NUL-terminated name.
        unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("port{id}")
    };
    // SAFETY: EAL is initialised; returns -1 (SOCKET_ID_ANY) for unknown/invalid.
    let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
    Ok(PortCaps {
        id,
        name,
        driver,
        socket: u32::try_from(socket).ok(),
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
        rss_offloads: info.flow_type_rss_offloads,
        hash_key_size: info.hash_key_size,
        rx_offloads: info.rx_offload_capa,
    })
}

/// Sets the MTU of port `id` (`rte_eth_dev_set_mtu`), also while it runs: the device
/// refuses what it cannot do (`EINVAL` beyond its limits or larger than its RX buffers
/// without scattered receive, `ENOTSUP` without the operation, `EBUSY` when it must be
/// stopped first).
pub fn set_mtu(id: PortId, mtu: u16) -> Result<(), Error> {
    // SAFETY: the call checks the port id itself (-ENODEV for one not probed) and only
    // reads and writes the device's own state; no pointer is passed.
    let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
    Error::check(|| format!("rte_eth_dev_set_mtu(port {id}, {mtu})"), ret).map(|_| ())
}

/// A configured port. Closed (stopped first if started) by [`Port::close`] or on drop.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    rx_queues: u16,
    tx_queues: u16,
    started: bool,
    closed: bool,
}

impl Port {
    /// Configures port `id` (`rte_eth_dev_configure`), sets up its queues with RX buffers
    /// from `pool`, enables the IPv4 header checksum RX offload and promiscuous mode when the
    /// device has them. Does not start it.
    pub fn configure(
        eal: &Eal,
        id: PortId,
        conf: &PortConfig,
        pool: &Mempool,
    ) -> Result<Port, Error> {
        let caps = port_caps(eal, id)?;
        if conf.rx_queues == 0 || conf.tx_queues == 0 {
            return Err(Error::invalid(format!("port {id}: zero queues requested")));
        }
        let mut eth = dpdk_sys::rte_eth_conf::default();
        if conf.rss && conf.rx_queues > 1 {
            let key_len = match caps.hash_key_size {
                0 => 40,
                n => n.min(SYMMETRIC_RSS_KEY.len() as u8),
            };
            eth.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            let rss = &mut eth.rx_adv_conf.rss_conf;
            // DPDK keeps this pointer in the device's config; the key is a static.
            rss.rss_key = SYMMETRIC_RSS_KEY.as_ptr().cast_mut();
            rss.rss_key_len = key_len;
            rss.rss_hf = rss_ip_tcp_udp() & caps.rss_offloads;
        }
        if caps.supports_rx_ipv4_cksum() {
            // The NIC's verdict on IPv4 header checksums, read per mbuf by the workers.
            eth.rxmode.offloads |= rx_offload_ipv4_cksum();
        }
        if conf.mtu != 0 {
            eth.rxmode.mtu = u32::from(conf.mtu);
        }
        // SAFETY: EAL is initialised; `eth` is a valid config that DPDK copies (the RSS
        // key it points to is static).
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth) };
        Error::check(|| format!("rte_eth_dev_configure(port {id})"), ret)?;
        // From here on the port is configured: closing it on error is the Drop's job.
        let port = Port {
            id,
            rx_queues: conf.rx_queues,
            tx_queues: conf.tx_queues,
            started: false,
            closed: false,
        };
        let (mut nrxd, mut ntxd) = (conf.rx_desc, conf.tx_desc);
        // SAFETY: valid port id and out-parameters.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrxd, &mut ntxd) };
        Error::check(
            || format!("rte_eth_dev_adjust_nb_rx_tx_desc(port {id})"),
            ret,
        )?;
        let socket = caps.socket.unwrap_or(pool.socket().max(0) as u32);
        for q in 0..conf.rx_queues {
            // SAFETY: configured port, queue index below the configured count, NULL rxconf
            // means the device default, `pool` stays valid for the process lifetime.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nrxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            Error::check(
                || format!("rte_eth_rx_queue_setup(port {id}, queue {q})"),
                ret,
            )?;
        }
        for q in 0..conf.tx_queues {
            // SAFETY: configured port, queue index below the configured count, NULL txconf.
            let ret =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, ntxd, socket, std::ptr::null()) };
            Error::check(
                || format!("rte_eth_tx_queue_setup(port {id}, queue {q})"),
                ret,
            )?;
        }
        if conf.mtu != 0 {
            // Some PMDs apply the MTU only through their mtu_set (net_tap sets its kernel
            // interface's); devices without one (pcap, ring, null) carry any frame.
            match set_mtu(id, conf.mtu) {
                Err(e) if e.errno == libc::ENOTSUP => {}
                r => r?,
            }
        }
        // Not every device has promiscuous mode (e.g. net_pcap on files); that is fine.
        // SAFETY: configured port.
        let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        Ok(port)
    }

    pub fn id(&self) -> PortId {
        self.id
    }

    pub fn rx_queue_count(&self) -> u16 {
        self.rx_queues
    }

    pub fn tx_queue_count(&self) -> u16 {
        self.tx_queues
    }

    /// Starts the port (`rte_eth_dev_start`).
    pub fn start(&mut self) -> Result<(), Error> {
        // SAFETY: the port is configured with all its queues set up.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        Error::check(|| format!("rte_eth_dev_start(port {})", self.id), ret)?;
        self.started = true;
        Ok(())
    }

    /// Stops the port (`rte_eth_dev_stop`). No lcore may be polling its queues.
    pub fn stop(&mut self) -> Result<(), Error> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        // SAFETY: the port is started; callers stop the workers first.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        Error::check(|| format!("rte_eth_dev_stop(port {})", self.id), ret).map(|_| ())
    }

    /// Stops (if needed) and closes the port, releasing its queues.
    pub fn close(mut self) -> Result<(), Error> {
        self.do_close()
    }

    fn do_close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        let stopped = self.stop();
        self.closed = true;
        // SAFETY: the port is configured and stopped; it is not used after this.
        let ret = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        stopped?;
        Error::check(|| format!("rte_eth_dev_close(port {})", self.id), ret).map(|_| ())
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<MacAddr, Error> {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port id and out-parameter.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut a) };
        Error::check(|| format!("rte_eth_macaddr_get(port {})", self.id), ret)?;
        Ok(a.addr_bytes)
    }

    /// Current counters. Safe to call while workers poll the port.
    pub fn stats(&self) -> Result<PortStats, Error> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port id and out-parameter.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        Error::check(|| format!("rte_eth_stats_get(port {})", self.id), ret)?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Link state without waiting for autonegotiation.
    pub fn link(&self) -> Result<LinkStatus, Error> {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id and out-parameter.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        Error::check(|| format!("rte_eth_link_get_nowait(port {})", self.id), ret)?;
        Ok(LinkStatus {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }

    /// The handle for RX queue `q`, to be moved to the one lcore that polls it.
    pub fn rx_queue(&self, q: u16) -> Option<RxQueue> {
        (q < self.rx_queues).then_some(RxQueue {
            port: self.id,
            queue: q,
        })
    }

    /// The handle for TX queue `q`, to be moved to the one lcore that sends on it.
    pub fn tx_queue(&self, q: u16) -> Option<TxQueue> {
        (q < self.tx_queues).then_some(TxQueue {
            port: self.id,
            queue: q,
        })
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = self.do_close();
    }
}

/// One RX queue of a port. Poll it from one lcore only (DPDK queues are not thread-safe):
/// the handle is `Send` but not `Clone`/`Sync`.
#[derive(Debug)]
pub struct RxQueue {
    port: PortId,
    queue: u16,
}

impl RxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to the burst's free space; returns how many mbufs were added.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        let (ptr, room) = burst.spare_raw();
        let room = room.min(usize::from(u16::MAX)) as u16;
        // SAFETY: `ptr` has `room` writable slots; this handle is the queue's only user
        // (`&mut self`, not Clone); the port was configured with this queue.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.port, self.queue, ptr, room) };
        let n = usize::from(n).min(usize::from(room));
        // SAFETY: rx_burst wrote `n` valid mbufs that are now ours.
        unsafe { burst.add_len(n) };
        n
    }
}

/// One TX queue of a port. Send on it from one lcore only (see [`RxQueue`]).
#[derive(Debug)]
pub struct TxQueue {
    port: PortId,
    queue: u16,
}

impl TxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Transmits the burst. The device owns what it accepted; the rest stays in `burst`
    /// (moved to the front) for the caller to retry or drop. Returns how many were sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        let len = burst.len().min(usize::from(u16::MAX)) as u16;
        // SAFETY: the burst's first `len` slots are valid owned mbufs; the device takes
        // ownership of the first `n` it reports; this handle is the queue's only user.
        let n = unsafe { dpdk_sys::rte_eth_tx_burst(self.port, self.queue, burst.as_raw(), len) };
        let n = usize::from(n).min(usize::from(len));
        burst.forget_front(n);
        n
    }
}
