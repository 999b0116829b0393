//! Every command against a real tracker filled through `CtWorker::process`: the shared
//! fixtures and the dispatch tests here, one file per command family beside.

use super::*;
use crate::conntrack::testpkt::{icmp_query, other, tcp, udp};
use crate::conntrack::{Conntrack, CtConfig, CtWorker};
use crate::nat::{NatRange, NatSpec};
use crate::wire::parse::tcp_flags::{ACK, SYN};
use proptest::prelude::*;
use std::sync::atomic::AtomicU32;

mod ct_stats;
mod dump_flush;
mod ipf;
mod limits;
mod settings;

const A: &str = "10.0.0.2";
const B: &str = "192.0.2.2";

struct FakeInfo;

impl GatewayInfo for FakeInfo {
    fn show(&self) -> String {
        "port 0: name=net_null0 rx_queues=1 tx_queues=1\nuptime 12s".into()
    }
    fn stats(&self) -> String {
        "port=0 rx=10 tx=9 dropped=1\n".into()
    }
    fn version_extra(&self) -> Option<String> {
        Some("DPDK 22.11.11\n".into())
    }
}

struct Env {
    ct: Conntrack,
    sweep: AtomicU32,
    ipf: crate::ipf::Ipf,
    now: u64,
}

impl Env {
    fn new(max: u32, buckets: u32) -> Env {
        Env {
            ct: Conntrack::new(CtConfig {
                max_conns: max,
                n_buckets: buckets,
                workers: 1,
                tcp_seq_check: true,
                hash_seed: Some(11),
            }),
            sweep: AtomicU32::new(20_000),
            ipf: crate::ipf::Ipf::with_capacity(Default::default(), 16, 1522).expect("defaults"),
            now: 0,
        }
    }

    fn ctx(&self) -> ControlContext<'_> {
        ControlContext {
            conntrack: &self.ct,
            sweep_interval_ms: &self.sweep,
            info: &FakeInfo,
            ipf: Some(&self.ipf),
            now: self.now,
        }
    }

    fn run(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_to_end(&self.ctx(), cmd, &args)
    }

    fn ok(&self, cmd: &str, args: &[&str]) -> String {
        match self.run(cmd, args) {
            Ok(s) => s,
            Err(e) => panic!("{cmd} {args:?} failed: {e}"),
        }
    }

    fn err(&self, cmd: &str, args: &[&str]) -> String {
        match self.run(cmd, args) {
            Ok(s) => panic!("{cmd} {args:?} should fail, printed {s:?}"),
            Err(e) => e,
        }
    }

    /// dump-conntrack's lines, sorted.
    fn dump(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok("dump-conntrack", args)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    }
}

/// A TCP handshake A:sport → B:80, leaving the connection ESTABLISHED.
fn handshake(w: &mut CtWorker, a: &str, b: &str, sport: u16, zone: u16, now: u64) {
    let r = w.process(
        &tcp(a, b, sport, 80, SYN, 1000, 0, 65535, 0),
        zone,
        true,
        now,
    );
    assert!(r.conn.is_some(), "SYN created nothing: {r:?}");
    w.process(
        &tcp(b, a, 80, sport, SYN | ACK, 5000, 1001, 65535, 0),
        zone,
        true,
        now,
    );
    w.process(
        &tcp(a, b, sport, 80, ACK, 1001, 5001, 65535, 0),
        zone,
        true,
        now,
    );
}

fn snat() -> NatSpec {
    NatSpec::snat("192.0.2.100".parse::<NatRange>().unwrap())
}

/// The tracker of the dump tests: a TCP connection, a UDP one in zone 5, an SNATed UDP
/// one, an ICMP echo, a half-open TCP one and an "other" protocol one.
fn filled() -> Env {
    let env = Env::new(1000, 64);
    let mut w = env.ct.worker(0);
    handshake(&mut w, A, B, 40000, 0, 0);
    assert!(w.process(&udp(A, B, 1234, 53), 5, true, 0).conn.is_some());
    let nat = snat();
    let r = w.process_nat(&udp("10.0.0.3", "198.51.100.1", 5000, 53), 0, true, &nat, 0);
    assert!(r.conn.is_some());
    assert!(w
        .process(&icmp_query(A, B, 8, 7), 0, true, 0)
        .conn
        .is_some());
    assert!(w
        .process(&tcp(A, B, 40001, 443, SYN, 77, 0, 65535, 0), 2, true, 0)
        .conn
        .is_some());
    assert!(w.process(&other(A, B, 47), 0, true, 0).conn.is_some());
    drop(w);
    env
}

fn expected_dump() -> Vec<String> {
    let mut v: Vec<String> = [
        "tcp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=40000,dport=80),reply=(src=192.0.2.2,dst=10.0.0.2,sport=80,dport=40000),protoinfo=(state=ESTABLISHED)",
        "udp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=1234,dport=53),reply=(src=192.0.2.2,dst=10.0.0.2,sport=53,dport=1234),zone=5",
        "udp,orig=(src=10.0.0.3,dst=198.51.100.1,sport=5000,dport=53),reply=(src=198.51.100.1,dst=192.0.2.100,sport=53,dport=5000)",
        "icmp,orig=(src=10.0.0.2,dst=192.0.2.2,id=7,type=8,code=0),reply=(src=192.0.2.2,dst=10.0.0.2,id=7,type=0,code=0)",
        "tcp,orig=(src=10.0.0.2,dst=192.0.2.2,sport=40001,dport=443),reply=(src=192.0.2.2,dst=10.0.0.2,sport=443,dport=40001),zone=2,protoinfo=(state=SYN_SENT)",
        "47,orig=(src=10.0.0.2,dst=192.0.2.2,sport=0,dport=0),reply=(src=192.0.2.2,dst=10.0.0.2,sport=0,dport=0)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.sort();
    v
}

#[test]
fn show_stats_version_help_and_unknown_commands() {
    let env = filled();
    assert_eq!(
        env.ok("show", &[]),
        "port 0: name=net_null0 rx_queues=1 tx_queues=1\nuptime 12s\n"
    );
    let stats = env.ok("stats", &[]);
    assert!(
        stats.starts_with(
            "port=0 rx=10 tx=9 dropped=1\nconntrack n_conns=6 max_conns=1000 created=6 "
        ),
        "{stats}"
    );
    assert_eq!(
        env.ok("version", &[]),
        format!("ctgate {}\nDPDK 22.11.11\n", env!("CARGO_PKG_VERSION"))
    );
    let help = env.ok("help", &[]);
    for c in COMMANDS {
        assert!(help.contains(&format!("  {} ", c.name)), "{}", c.name);
    }
    assert_eq!(
        env.err("frobnicate", &[]),
        "unknown command \"frobnicate\" (the command \"help\" lists them)"
    );
    let h = env.ok("ct-bkts", &["--help"]);
    assert!(h.starts_with("usage: ctgate-ctl ct-bkts [gt=N]\n"), "{h}");
    assert!(env.err("ct-get-nconns", &["--json"]).contains("--json"));
}

fn arb_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_]{1,12}=[0-9a-fx:.,/-]{0,20}",
        "(zone|limit|default|gt|mark|labels)=[-0-9a-z,]{0,12}",
        "(ct_nw_src|ct_nw_dst|ct_ipv6_src|ct_nw_proto|ct_tp_src|ct_tp_dst|icmp_type|icmp_id)=[0-9.:a-f]{0,16}(,(ct_nw_proto|ct_tp_dst|icmp_code)=[0-9]{1,6}){0,3}",
        "-{1,2}[a-z]{0,8}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random arguments to every command never panic, and the tracker stays consistent.
    #[test]
    fn commands_never_panic(args in proptest::collection::vec(arb_arg(), 0..5)) {
        let env = Env::new(64, 64);
        let mut w = env.ct.worker(0);
        for i in 0..20u16 {
            w.process(&udp(A, B, i, 53), i % 3, true, 0);
        }
        drop(w);
        for c in COMMANDS {
            let _ = env.run(c.name, &args.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let n = env.ct.n_conns() as usize;
        prop_assert_eq!(env.ct.all_conns().len(), n);
    }

    /// A name that is no command gets the error reply naming it, never a panic.
    #[test]
    fn unknown_command_names_get_the_unknown_command_error(name in any::<String>()) {
        prop_assume!(find(&name).is_none());
        let env = Env::new(16, 64);
        let e = env.err(&name, &[]);
        prop_assert_eq!(
            e,
            format!(
                "unknown command \"{}\" (the command \"help\" lists them)",
                name.escape_debug()
            )
        );
    }
}

#[test]
fn sync_status_without_a_sync_section_says_so() {
    let env = Env::new(16, 0);
    assert_eq!(
        env.err("sync-status", &[]),
        "state sync is not configured (no [sync] section in the configuration)"
    );
    assert!(env.err("sync-status", &["x"]).contains("x"));
}
