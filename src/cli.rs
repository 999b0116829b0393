//! The command line, in the DPDK convention (as l3fwd and testpmd):
//!
//! ```text
//! ctgate [EAL options] -- [ctgate options]
//! ```
//!
//! Everything before the first `--` goes to DPDK's EAL untouched; everything after it is
//! ctgate's own. Parsing is pure Rust with no DPDK, so it is unit-tested on its own. Each
//! ctgate option is one row of [`APP_OPTIONS`] (which also writes `--help`) and one arm
//! in [`parse_app_args`]: adding an option means adding a field to [`AppArgs`] or [`RunOptions`], a row
//! and an arm.
//!
//! Two modes: without `--pair`, ctgate runs the NAT gateway on its configuration (the
//! embedded default, or `--config FILE`); with `--pair A:B` it runs the plain L2
//! forwarding between port pairs (the raw-datapath baseline for benchmarks).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::control::run_options::RunOptions;
use crate::pipeline::MacAddr;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run the gateway.
    Run(Cli),
    /// Print [`help`] and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A parsed command line for a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Cli {
    /// EAL arguments (without the program name), for `rte_eal_init`.
    pub eal_args: Vec<String>,
    /// ctgate's own arguments.
    pub app: AppArgs,
}

/// ctgate's own options (after `--`): the configuration file, and what the run is told
/// ([`RunOptions`], owned by the control layer; the CLI only fills them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppArgs {
    /// The gateway's configuration file (`--config FILE`); `None`: the embedded default.
    pub config: Option<PathBuf>,
    /// `--socket`, `--pair`, `--next-hop-mac`, `--exit-when-idle`, `--duration`,
    /// `--quiet`, `--mbufs`.
    pub run: RunOptions,
}

impl AppArgs {
    /// True for the plain forwarding mode (`--pair` given).
    pub fn forwarding_mode(&self) -> bool {
        !self.run.pairs.is_empty()
    }
}

/// Largest `--mbufs`: 2^26 - 1 mbufs (about 150 GB of 2 KiB buffers), far above any host.
pub const MAX_MBUFS: u32 = (1 << 26) - 1;

/// Next-hop MAC when none is given: broadcast, so that whatever sits behind the output
/// port receives the frames until neighbour resolution exists.
pub const DEFAULT_NEXT_HOP_MAC: MacAddr = MacAddr::BROADCAST;

/// A command-line error: one line naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// One ctgate option, for the parser and `--help`.
pub struct OptSpec {
    pub name: &'static str,
    /// Name of the value (`None` for a flag).
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// ctgate's options, in `--help` order.
pub const APP_OPTIONS: &[OptSpec] = &[
    OptSpec {
        name: "--config",
        value: Some("FILE"),
        help: "gateway configuration (TOML; default: the built-in example, see README)",
    },
    OptSpec {
        name: "--socket",
        value: Some("PATH"),
        help: "control socket for ctgate-ctl (default: /run/ctgate/ctgate.sock)",
    },
    OptSpec {
        name: "--pair",
        value: Some("A:B"),
        help: "plain forwarding mode instead of the gateway: forward between ports A and B, both ways (repeatable)",
    },
    OptSpec {
        name: "--next-hop-mac",
        value: Some("MAC"),
        help: "forwarding mode: destination MAC of forwarded frames (default: ff:ff:ff:ff:ff:ff)",
    },
    OptSpec {
        name: "--exit-when-idle",
        value: Some("MS"),
        help: "stop once no packet was received for MS milliseconds (counted from the start if none comes)",
    },
    OptSpec {
        name: "--duration",
        value: Some("SECS"),
        help: "stop after SECS seconds (decimals allowed)",
    },
    OptSpec {
        name: "--quiet",
        value: None,
        help: "no per-second stats line (final counters are still printed)",
    },
    OptSpec {
        name: "--mbufs",
        value: Some("N"),
        help: "at least N mbufs per packet mempool (default: enough for the ports' rings, bursts and caches; raise it when a port preloads its input, e.g. net_pcap infinite_rx=1)",
    },
    OptSpec {
        name: "--help",
        value: None,
        help: "print this help and exit (also -h, before or after --)",
    },
    OptSpec {
        name: "--version",
        value: None,
        help: "print the version and exit (also -V)",
    },
];

/// The `--help` text.
pub fn help() -> String {
    let mut s = String::from(
        "ctgate: DPDK poll-mode stateful connection tracker and NAT gateway.\n\
         \n\
         Gateway mode (the default): ports, addresses, routes, NAT, firewall policy, limits\n\
         and timeouts come from the configuration (--config FILE, else the built-in example:\n\
         port 0 inside 10.0.0.1/24, port 1 outside 192.0.2.1/24, SNAT to 192.0.2.1, outside-\n\
         initiated connections refused). Operators query and change the running gateway with\n\
         ctgate-ctl over the control socket (--socket PATH).\n\
         Forwarding mode (--pair A:B): plain L2 forwarding between port pairs, frames from A\n\
         leave on B with B's source MAC and the --next-hop-mac destination (the raw baseline).\n\
         \n\
         Usage: ctgate [EAL options] -- [ctgate options]\n\
         \n\
         EAL options (DPDK's own, everything before `--`; the full list is in DPDK's\n\
         \"EAL parameters\" guide). The ones you need most:\n\
         \x20 -l, --lcores LIST     lcores to run on; the first is the control lcore, every other\n\
         \x20                       one is a worker polling RX queues (RSS) and sending on its own\n\
         \x20                       TX queues\n\
         \x20                       (e.g. -l 0-2, or --lcores '0@0,1@1,2@1' to map lcores to CPUs)\n\
         \x20 -a, --allow PCI       use this NIC (bound to vfio-pci, see README)\n\
         \x20 --vdev DEV[,ARGS]     add a virtual device: net_null0, net_ring0,\n\
         \x20                       net_pcap0,rx_pcap=IN.pcap,tx_pcap=OUT.pcap, net_tap0,iface=NAME\n\
         \x20 --no-pci              do not probe PCI devices\n\
         \x20 --no-huge -m MB       run without hugepages, with MB megabytes of memory\n\
         \x20 --in-memory           keep no runtime files (several instances can run at once)\n\
         \x20 --file-prefix NAME    name of this instance's runtime files\n\
         \x20 --log-level LEVEL     DPDK log level (e.g. 4 for errors only, 8 for debug)\n\
         \n\
         ctgate options (after `--`):\n",
    );
    for o in APP_OPTIONS {
        let left = match o.value {
            Some(v) => format!("{} {}", o.name, v),
            None => o.name.to_string(),
        };
        s.push_str(&format!("  {left:<21}  {}\n", o.help));
    }
    s.push_str(
        "\n\
         Configuration errors print FILE:LINE: FIELD: MESSAGE and exit with code 2.\n\
         \n\
         Output: a stats line per second; at the end one line per port\n\
         \x20 port=N rx=... tx=... dropped=... (dropped: frames that arrived on N and were dropped)\n\
         then one line per worker (worker=N lcore=L rx=... tx=... dropped=... drop_<reason>=...),\n\
         and in gateway mode one line of tracker counters (conntrack n_conns=... created=... ...).\n\
         SIGINT/SIGTERM stop the gateway cleanly (exit code 0). Bad arguments: exit code 2.\n\
         \n\
         Examples:\n\
         \x20 # the gateway on the built-in config, two tap interfaces (move them into network\n\
         \x20 # namespaces or configure them on the host; ci/demo does it all), control socket\n\
         \x20 ctgate --no-huge -m 512 --no-pci --file-prefix gw -l 0,1 \\\n\
         \x20        --vdev net_tap0,iface=ctg-in --vdev net_tap1,iface=ctg-out \\\n\
         \x20        -- --socket /run/ctgate/ctgate.sock\n\
         \x20 ctgate-ctl dump-conntrack           # while it runs\n\
         \x20 # the gateway on your own configuration, on two NICs\n\
         \x20 ctgate -l 0-2 -a 0000:03:00.0 -a 0000:03:00.1 -- --config /etc/ctgate.toml\n\
         \x20 # forwarding mode, no NIC, no hugepages: two null ports, two workers, 5 seconds\n\
         \x20 ctgate --no-huge -m 512 --no-pci --in-memory --lcores '0@0,1@1,2@1' \\\n\
         \x20        --vdev net_null0 --vdev net_null1 -- --pair 0:1 --duration 5\n\
         \x20 # replay a pcap in on port 0, write what leaves port 1 to a pcap, stop when done\n\
         \x20 ctgate --no-huge -m 512 --no-pci --in-memory -l 0,1 \\\n\
         \x20        --vdev net_pcap0,rx_pcap=in.pcap,tx_pcap=out0.pcap \\\n\
         \x20        --vdev net_pcap1,rx_pcap=empty.pcap,tx_pcap=out1.pcap \\\n\
         \x20        -- --pair 0:1 --next-hop-mac 02:00:00:00:00:01 --exit-when-idle 500\n\
         \x20 # two NICs, explicit pairing, four workers\n\
         \x20 ctgate -l 0-4 -a 0000:03:00.0 -a 0000:03:00.1 -- --pair 0:1 --next-hop-mac 52:54:00:12:34:56\n",
    );
    s
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let (eal, app) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    // Help and version win wherever they are: EAL would print only its own usage.
    let all = eal.iter().chain(app.iter());
    if all.clone().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    if all.into_iter().any(|a| a == "--version" || a == "-V") {
        return Ok(Command::Version);
    }
    Ok(Command::Run(Cli {
        eal_args: eal.to_vec(),
        app: parse_app_args(app)?,
    }))
}

/// Parses ctgate's own options (the part after `--`).
pub fn parse_app_args(args: &[String]) -> Result<AppArgs, CliError> {
    let mut out = AppArgs::default();
    let mut seen_mac = false;
    let mut seen_config = false;
    let mut seen_socket = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let Some(spec) = APP_OPTIONS.iter().find(|o| o.name == name) else {
            return Err(CliError(if name.starts_with('-') {
                format!("unknown option {name:?} after `--` (EAL options go before `--`)")
            } else {
                format!("unexpected argument {arg:?} (ctgate takes no positional arguments)")
            }));
        };
        let value = match (spec.value, inline) {
            (None, Some(_)) => return Err(CliError(format!("{name} takes no value"))),
            (None, None) => String::new(),
            (Some(_), Some(v)) => v,
            (Some(metavar), None) => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return Err(CliError(format!("{name} needs a value ({name} {metavar})"))),
            },
        };
        match name {
            "--config" => {
                if seen_config {
                    return Err(CliError("--config given twice".into()));
                }
                seen_config = true;
                if value.is_empty() {
                    return Err(CliError("--config needs a file name".into()));
                }
                out.config = Some(PathBuf::from(value));
            }
            "--socket" => {
                if seen_socket {
                    return Err(CliError("--socket given twice".into()));
                }
                seen_socket = true;
                if value.is_empty() {
                    return Err(CliError("--socket needs a path".into()));
                }
                out.run.socket = PathBuf::from(value);
            }
            "--pair" => out.run.pairs.push(parse_pair(&value)?),
            "--next-hop-mac" => {
                if seen_mac {
                    return Err(CliError("--next-hop-mac given twice".into()));
                }
                seen_mac = true;
                out.run.next_hop_mac = value
                    .parse()
                    .map_err(|e: String| CliError(format!("--next-hop-mac: {e}")))?;
            }
            "--exit-when-idle" => {
                let ms: u64 = value.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                    CliError(format!(
                        "--exit-when-idle: {value:?} is not a positive number of milliseconds"
                    ))
                })?;
                out.run.exit_when_idle = Some(Duration::from_millis(ms));
            }
            "--duration" => {
                let secs = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| {
                        CliError(format!(
                            "--duration: {value:?} is not a positive number of seconds"
                        ))
                    })?;
                out.run.duration = Some(secs);
            }
            "--quiet" => out.run.quiet = true,
            "--mbufs" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|&n| (1..=MAX_MBUFS).contains(&n))
                    .ok_or_else(|| {
                        CliError(format!(
                            "--mbufs: {value:?} is not a number of mbufs in 1..={MAX_MBUFS}"
                        ))
                    })?;
                out.run.mbufs = Some(n);
            }
            // --help/--version are handled before; any other row needs an arm here.
            _ => return Err(CliError(format!("option {name} is not handled"))),
        }
    }
    if out.forwarding_mode() && seen_config {
        return Err(CliError(
            "--config and --pair exclude each other (--pair selects the plain forwarding mode)"
                .into(),
        ));
    }
    if !out.forwarding_mode() && seen_mac {
        return Err(CliError(
            "--next-hop-mac belongs to the forwarding mode (--pair); the gateway takes next hops from its config".into(),
        ));
    }
    Ok(out)
}

/// Parses `A:B` (two port ids).
fn parse_pair(s: &str) -> Result<(u16, u16), CliError> {
    let bad = || CliError(format!("--pair: {s:?} is not two port ids like 0:1"));
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let port = |p: &str| {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<u16>().map_err(|_| bad())
    };
    Ok((port(a)?, port(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli, CliError> {
        match parse(args.iter().copied())? {
            Command::Run(c) => Ok(c),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn splits_eal_and_app_args_at_the_first_double_dash() {
        let c = run(&[
            "--no-huge",
            "-m",
            "512",
            "--vdev",
            "net_null0",
            "--",
            "--pair",
            "0:1",
            "--pair=2:3",
            "--next-hop-mac",
            "02:00:00:00:00:01",
            "--exit-when-idle",
            "250",
            "--duration=1.5",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(
            c.eal_args,
            ["--no-huge", "-m", "512", "--vdev", "net_null0"]
        );
        assert_eq!(c.app.run.pairs, vec![(0, 1), (2, 3)]);
        assert_eq!(c.app.run.next_hop_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(c.app.run.exit_when_idle, Some(Duration::from_millis(250)));
        assert_eq!(c.app.run.duration, Some(Duration::from_millis(1500)));
        assert!(c.app.run.quiet);
        assert_eq!(c.app.run.mbufs, None);
        assert_eq!(
            run(&["--", "--mbufs", "300000"]).unwrap().app.run.mbufs,
            Some(300_000)
        );
    }

    #[test]
    fn without_double_dash_everything_is_eal_and_defaults_apply() {
        let c = run(&["-l", "0,1", "--vdev", "net_null0"]).unwrap();
        assert_eq!(c.eal_args, ["-l", "0,1", "--vdev", "net_null0"]);
        assert_eq!(c.app, AppArgs::default());
        assert_eq!(c.app.run.next_hop_mac, MacAddr::BROADCAST);
        let c = run(&[]).unwrap();
        assert!(c.eal_args.is_empty());
        let c = run(&["--"]).unwrap();
        assert_eq!(c.app, AppArgs::default());
    }

    #[test]
    fn gateway_mode_by_default_forwarding_mode_with_pairs() {
        let c = run(&["--", "--config", "/etc/g.toml", "--socket=/tmp/s.sock"]).unwrap();
        assert!(!c.app.forwarding_mode());
        assert_eq!(c.app.config, Some(PathBuf::from("/etc/g.toml")));
        assert_eq!(c.app.run.socket, PathBuf::from("/tmp/s.sock"));
        let c = run(&[]).unwrap();
        assert_eq!(c.app.config, None);
        assert_eq!(
            c.app.run.socket,
            PathBuf::from(crate::control::protocol::DEFAULT_SOCKET)
        );
        assert!(run(&["--", "--pair", "0:1"]).unwrap().app.forwarding_mode());
        for bad in [
            &["--", "--config", "a", "--pair", "0:1"][..],
            &["--", "--next-hop-mac", "02:00:00:00:00:01"],
            &["--", "--config", "a", "--config", "b"],
            &["--", "--socket", "a", "--socket", "b"],
            &["--", "--config="],
            &["--", "--socket"],
        ] {
            let e = run(bad).expect_err(&format!("{bad:?} should fail"));
            assert!(!e.0.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_second_double_dash_is_an_app_argument() {
        assert!(run(&["--", "--quiet", "--"]).is_err());
    }

    #[test]
    fn help_and_version_anywhere() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["-l", "0", "--", "-h"]).unwrap(), Command::Help);
        assert_eq!(parse(["--version"]).unwrap(), Command::Version);
        assert_eq!(parse(["--", "-V"]).unwrap(), Command::Version);
        let h = help();
        for o in APP_OPTIONS {
            assert!(h.contains(o.name), "help lacks {}", o.name);
        }
        assert!(h.contains("EAL options") && h.contains("Examples"));
    }

    #[test]
    fn bad_arguments_are_one_line_errors() {
        let cases: &[&[&str]] = &[
            &["--", "--bogus"],
            &["--", "stray"],
            &["--", "--pair"],
            &["--", "--pair", "0"],
            &["--", "--pair", "0:"],
            &["--", "--pair", "0:70000"],
            &["--", "--pair", "-1:2"],
            &["--", "--pair", "+1:2"],
            &["--", "--pair", "0:1", "--next-hop-mac", "zz"],
            &[
                "--",
                "--pair",
                "0:1",
                "--next-hop-mac",
                "02:00:00:00:00:01",
                "--next-hop-mac",
                "02:00:00:00:00:02",
            ],
            &["--", "--exit-when-idle", "0"],
            &["--", "--exit-when-idle", "-5"],
            &["--", "--exit-when-idle", "1.5"],
            &["--", "--duration", "0"],
            &["--", "--duration", "nan"],
            &["--", "--duration", "inf"],
            &["--", "--duration", "1e30"],
            &["--", "--duration"],
            &["--", "--quiet=yes"],
            &["--", "--mbufs", "0"],
            &["--", "--mbufs", "many"],
            &["--", "--mbufs", "67108864"],
        ];
        for args in cases {
            let e = run(args).expect_err(&format!("{args:?} should fail"));
            assert!(!e.0.is_empty() && !e.0.contains('\n'), "{args:?}: {e}");
        }
    }
}
