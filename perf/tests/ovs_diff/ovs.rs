//! The differential test's Open vSwitch: a private instance ([`ctgate_perf::ovs`], shared
//! with `ctgate-perf compare-ovs`: its own ovsdb-server and ovs-vswitchd in a temporary
//! directory, stopped by PID and removed when dropped) running the userspace datapath
//! (`--enable-dummy=override --disable-system`), with a `datapath_type=dummy` bridge, an
//! input port `p1` and an output port `p2` that writes what it sends to a pcap file.

use std::path::Path;
use std::time::{Duration, Instant};

use ctgate_perf::ovs::{self as instance, Instance, Options};

/// The ct_state names in OpenFlow match syntax, bit by bit (`CS_*` order).
const CT_BITS: [&str; 8] = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];

/// Source MAC the flows set: `02:c7:00:00:00:<ct_state>` for tracked packets.
pub const MARK_PREFIX: [u8; 4] = [0x02, 0xc7, 0x00, 0x00];
/// `02:c7:00:00:01:00`: the packet did not go through `ct()` (not IP).
pub const MARK_UNTRACKED: [u8; 6] = [0x02, 0xc7, 0x00, 0x00, 0x01, 0x00];

/// What `ct()` action table 0 applies.
#[derive(Clone, Debug)]
pub enum Pipeline {
    /// `ct(commit[,zone=N],table=1)` for every IP packet.
    Commit { zone: u16 },
    /// Source NAT: packets from `inside` (an IPv4 or IPv6 prefix) get
    /// `ct(commit,nat(src=POOL),table=1)`, other packets of that family `ct(nat,table=1)`;
    /// the other family is committed without NAT.
    Snat {
        inside: String,
        pool: String,
        v6: bool,
    },
    /// Destination NAT (IPv4): packets to `public` get `ct(commit,nat(dst=TARGET),table=1)`,
    /// other IPv4 packets `ct(nat,table=1)`; IPv6 is committed without NAT.
    Dnat { public: String, target: String },
    /// The ALG pipeline (`alg.rs`): every IP packet committed, FTP control connections
    /// (TCP to port 21) with `alg=ftp` and TFTP requests (UDP to port 69) with
    /// `alg=tftp`, each with `nat`'s action for the packets it translates.
    Alg { nat: AlgNat },
}

/// The NAT of the ALG pipeline.
#[derive(Clone, Debug)]
pub enum AlgNat {
    /// `ct(commit[,alg=…])`.
    None,
    /// Packets from `inside` (prefix, family `v6`): `ct(commit[,alg=…],nat(src=POOL))`; the
    /// rest of that family `ct(commit,nat)` (reply packets translated back, related
    /// connections translated as their expectation says); the other family committed.
    Snat {
        inside: String,
        pool: String,
        v6: bool,
    },
    /// IPv4 packets to `public`: `ct(commit[,alg=…],nat(dst=TARGET))`; other IPv4 packets
    /// `ct(commit,nat)`; IPv6 committed.
    Dnat { public: String, target: String },
}

impl Pipeline {
    /// The OpenFlow flows of the pipeline.
    pub fn flows(&self) -> String {
        let mut f = String::new();
        match self {
            Pipeline::Commit { zone } => {
                let z = if *zone != 0 {
                    format!("zone={zone},")
                } else {
                    String::new()
                };
                for m in ["ip", "ipv6"] {
                    f.push_str(&format!(
                        "table=0,priority=100,{m},actions=ct(commit,{z}table=1)\n"
                    ));
                }
            }
            Pipeline::Snat { inside, pool, v6 } => {
                let (m, other, field) = if *v6 {
                    ("ipv6", "ip", "ipv6_src")
                } else {
                    ("ip", "ipv6", "nw_src")
                };
                f.push_str(&format!(
                    "table=0,priority=110,{m},{field}={inside},actions=ct(commit,nat(src={pool}),table=1)\n"
                ));
                f.push_str(&format!(
                    "table=0,priority=100,{m},actions=ct(nat,table=1)\n"
                ));
                f.push_str(&format!(
                    "table=0,priority=100,{other},actions=ct(commit,table=1)\n"
                ));
            }
            Pipeline::Dnat { public, target } => {
                f.push_str(&format!(
                    "table=0,priority=110,ip,nw_dst={public},actions=ct(commit,nat(dst={target}),table=1)\n"
                ));
                f.push_str("table=0,priority=100,ip,actions=ct(nat,table=1)\n");
                f.push_str("table=0,priority=100,ipv6,actions=ct(commit,table=1)\n");
            }
            Pipeline::Alg { nat } => {
                // (match, nat action) of the translated packets, of the other packets of
                // that family, and the other family's.
                let (m, translated, rest, other): (&str, String, &str, &str) = match nat {
                    AlgNat::None => ("ip", String::new(), "", "ipv6"),
                    AlgNat::Snat { inside, pool, v6 } => {
                        let (m, field, other) = if *v6 {
                            ("ipv6", "ipv6_src", "ip")
                        } else {
                            ("ip", "nw_src", "ipv6")
                        };
                        (
                            m,
                            format!("{field}={inside},|nat(src={pool}),"),
                            "nat,",
                            other,
                        )
                    }
                    AlgNat::Dnat { public, target } => (
                        "ip",
                        format!("nw_dst={public},|nat(dst={target}),"),
                        "nat,",
                        "ipv6",
                    ),
                };
                let (sel, act) = translated.split_once('|').unwrap_or(("", ""));
                for (l4, port, alg) in [("tcp", 21, "ftp"), ("udp", 69, "tftp")] {
                    let l4m = if m == "ipv6" {
                        format!("{l4}6")
                    } else {
                        l4.to_string()
                    };
                    f.push_str(&format!(
                        "table=0,priority=120,{l4m},{sel}tp_dst={port},actions=ct(commit,alg={alg},{act}table=1)\n"
                    ));
                    let l4o = if other == "ipv6" {
                        format!("{l4}6")
                    } else {
                        l4.to_string()
                    };
                    f.push_str(&format!(
                        "table=0,priority=120,{l4o},tp_dst={port},actions=ct(commit,alg={alg},table=1)\n"
                    ));
                }
                if !sel.is_empty() {
                    f.push_str(&format!(
                        "table=0,priority=110,{m},{sel}actions=ct(commit,{act}table=1)\n"
                    ));
                }
                f.push_str(&format!(
                    "table=0,priority=100,{m},actions=ct(commit,{rest}table=1)\n"
                ));
                f.push_str(&format!(
                    "table=0,priority=100,{other},actions=ct(commit,table=1)\n"
                ));
            }
        }
        f.push_str("table=0,priority=0,actions=mod_dl_src:02:c7:00:00:01:00,output:2\n");
        // One flow per tracked ct_state combination: the source MAC tells the state.
        for v in 0u32..256 {
            if v & 0x20 == 0 {
                continue;
            }
            let m: String = (0..8)
                .map(|i| format!("{}{}", if v >> i & 1 != 0 { '+' } else { '-' }, CT_BITS[i]))
                .collect();
            f.push_str(&format!(
                "table=1,priority=100,ct_state={m},actions=mod_dl_src:02:c7:00:00:00:{v:02x},output:2\n"
            ));
        }
        f.push_str("table=1,priority=0,actions=mod_dl_src:02:c7:00:00:ff:ff,output:2\n");
        f
    }
}

/// A running private instance.
pub struct Ovs {
    inst: Instance,
    tx_pcap: std::path::PathBuf,
}

/// Ok when the OVS programs the test needs are on PATH.
pub fn available() -> Result<(), String> {
    match instance::missing_tool(&["ovs-vswitchd"]) {
        None => Ok(()),
        Some(prog) => Err(format!(
            "{prog} not found: the differential test needs Open vSwitch \
             (Debian: apt-get install openvswitch-switch, as ci/setup does)"
        )),
    }
}

impl Ovs {
    /// Starts an instance in a new directory named after `name`, with `pipeline`'s flows
    /// and TCP sequence checking on or off, and the clock stopped (`time/stop`).
    pub fn start(name: &str, pipeline: &Pipeline, tcp_seq_check: bool) -> Result<Ovs, String> {
        available()?;
        let dir = std::env::temp_dir().join(format!("ctgate-ovs-{}-{name}", std::process::id()));
        let opts = Options {
            keep: std::env::var_os("CTGATE_OVS_DIFF_KEEP").is_some(),
            ..Options::default()
        };
        let mut inst = Instance::start_db(dir, opts, &[])?;
        inst.start_vswitchd(
            &["ovs-vswitchd"],
            &["--enable-dummy=override", "--disable-system"],
        )?;
        let tx_pcap = inst.dir().join("p2.pcap");
        let tx = [format!("tx_pcap={}", tx_pcap.display())];
        inst.add_bridge(
            "br0",
            "dummy",
            &[("p1", "dummy", 1, &[]), ("p2", "dummy", 2, &tx)],
        )?;
        inst.add_flows("br0", &pipeline.flows())?;
        inst.appctl(&["time/stop"])?;
        if !tcp_seq_check {
            inst.appctl(&["dpctl/ct-disable-tcp-seq-chk"])?;
        }
        let tx = tx_pcap.clone();
        inst.wait_for("the tx_pcap file", || tx.exists())?;
        Ok(Ovs { inst, tx_pcap })
    }

    /// `ovs-appctl` on this instance's ovs-vswitchd.
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        self.inst.appctl(args)
    }

    /// Advances OVS's (stopped) clock by `ms`.
    pub fn warp(&self, ms: u64) -> Result<(), String> {
        if ms > 0 {
            self.appctl(&["time/warp", &ms.to_string()])?;
        }
        Ok(())
    }

    /// Queues frames on `p1` (`netdev-dummy/receive p1 HEX…`).
    pub fn receive(&self, frames: &[&[u8]]) -> Result<(), String> {
        let hex: Vec<String> = frames
            .iter()
            .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let mut a = vec!["netdev-dummy/receive", "p1"];
        a.extend(hex.iter().map(|s| s.as_str()));
        self.appctl(&a).map(|_| ())
    }

    /// Size of the output pcap so far.
    pub fn tx_len(&self) -> u64 {
        std::fs::metadata(&self.tx_pcap)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Waits until the output pcap has at least `len` bytes (every queued packet went out).
    /// False on timeout.
    pub fn wait_tx(&self, len: u64, timeout: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self.tx_len() >= len {
                return true;
            }
            if t0.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    /// The output pcap.
    pub fn tx_packets(&self) -> Result<Vec<ctgate::pcap::Packet>, String> {
        ctgate::pcap::read_file(&self.tx_pcap)
            .map_err(|e| format!("{}: {e}", self.tx_pcap.display()))
    }

    /// `dpctl/dump-conntrack`, sorted.
    pub fn dump(&self) -> Result<Vec<String>, String> {
        let out = self.appctl(&["dpctl/dump-conntrack"])?;
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        Ok(v)
    }

    /// The instance's directory (logs, pcap).
    pub fn dir(&self) -> &Path {
        self.inst.dir()
    }
}
