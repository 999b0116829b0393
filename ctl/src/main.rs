//! `ctgate-ctl`: the operator CLI over ctgate's control socket.
//!
//! ```text
//! ctgate-ctl [--socket PATH] [--timeout SECS] COMMAND [ARGS...]
//! ```
//!
//! Sends one request (the command and its OVS-style arguments, parsed by ctgate) and
//! prints the output exactly as ctgate sent it, streamed chunks as they arrive. Exit
//! status: 0 on success; 1 when ctgate answers with an error (printed as
//! `ctgate-ctl: <error>` on stderr) or cannot be reached; 2 for a bad command line.
//! The protocol is described in `docs/control-protocol.md`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ctgate::control::commands::{find, CommandSpec, COMMANDS};
use ctgate::control::protocol::{call, CallError, DEFAULT_SOCKET};

/// Seconds to wait for data from ctgate before giving up (each wait, not the whole call).
const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// The command line.
#[derive(Debug, PartialEq, Eq)]
enum Cli {
    Help,
    Version,
    CommandHelp(&'static CommandSpec),
    Run {
        socket: PathBuf,
        timeout: Option<Duration>,
        cmd: &'static CommandSpec,
        args: Vec<String>,
    },
}

fn usage() -> String {
    let mut s = format!(
        "ctgate-ctl: talk to a running ctgate over its control socket.\n\n\
         usage: ctgate-ctl [--socket PATH] [--timeout SECS] COMMAND [ARGS...]\n\
         \x20      ctgate-ctl COMMAND --help\n\n\
         options:\n\
         \x20 --socket PATH   ctgate's control socket (default: $CTGATE_SOCKET, else {DEFAULT_SOCKET})\n\
         \x20 --timeout SECS  give up when ctgate sends nothing for SECS seconds (default {DEFAULT_TIMEOUT_SECS}, \n\
         \x20                 none for `events`; 0: wait forever)\n\
         \x20 -h, --help      this help\n\
         \x20 -V, --version   ctgate-ctl's version\n\n\
         The conntrack commands take the arguments and print the outputs of\n\
         `ovs-appctl dpctl/<command>`. Exit status: 0 success, 1 error reply or ctgate\n\
         unreachable, 2 bad command line.\n\n\
         commands:\n"
    );
    for c in COMMANDS {
        s.push_str(&format!("  {} {}\n      {}\n", c.name, c.args, c.summary));
    }
    s
}

/// The closest command names to a mistyped one.
fn suggestions(name: &str) -> Vec<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let mut v: Vec<(usize, &'static str)> = COMMANDS
        .iter()
        .map(|c| (distance(name, c.name), c.name))
        .filter(|&(d, n)| d <= 3 || (name.len() >= 3 && n.contains(name)))
        .collect();
    v.sort();
    v.into_iter().take(3).map(|(_, n)| n).collect()
}

/// Parses the command line (without the program name).
fn parse(argv: &[String], env_socket: Option<String>) -> Result<Cli, String> {
    let mut socket = env_socket
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let mut timeout = Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    let mut timeout_given = false;
    let mut i = 0;
    while let Some(a) = argv.get(i) {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i)
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match opt {
            "-h" | "--help" => return Ok(Cli::Help),
            "-V" | "--version" => return Ok(Cli::Version),
            "--socket" => {
                let v = value("--socket")?;
                if v.is_empty() {
                    return Err("--socket needs a path".into());
                }
                socket = PathBuf::from(v);
            }
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: u64 = v.parse().map_err(|_| {
                    format!(
                        "--timeout takes whole seconds, not \"{}\"",
                        v.escape_debug()
                    )
                })?;
                timeout = (secs > 0).then(|| Duration::from_secs(secs));
                timeout_given = true;
            }
            _ if a.starts_with('-') => {
                return Err(format!(
                    "unknown option \"{}\" (options go before the command)",
                    a.escape_debug()
                ))
            }
            _ => {
                let Some(cmd) = find(a) else {
                    let near = suggestions(a);
                    let hint = if near.is_empty() {
                        String::new()
                    } else {
                        format!("; did you mean {}?", near.join(", "))
                    };
                    return Err(format!(
                        "unknown command \"{}\"{hint} ('ctgate-ctl --help' lists the commands)",
                        a.escape_debug()
                    ));
                };
                let mut args = argv[i + 1..].to_vec();
                if args.iter().any(|x| x == "--help" || x == "-h") {
                    return Ok(Cli::CommandHelp(cmd));
                }
                if cmd.name == "events" && !timeout_given {
                    // Events come when they come: wait for them until interrupted.
                    timeout = None;
                }
                if cmd.name == "reload" {
                    absolute_config(&mut args);
                }
                return Ok(Cli::Run {
                    socket,
                    timeout,
                    cmd,
                    args,
                });
            }
        }
        i += 1;
    }
    Err("no command given ('ctgate-ctl --help' lists the commands)".into())
}

/// The message for a failed call, naming the socket.
fn call_error(path: &std::path::Path, timeout: Option<Duration>, e: &CallError) -> String {
    let p = path.display();
    match e {
        CallError::Connect(e) => {
            let hint = match e.kind() {
                io::ErrorKind::NotFound => {
                    " (is ctgate running? it creates the socket at start; use --socket PATH \
                     or CTGATE_SOCKET for another path)"
                }
                io::ErrorKind::ConnectionRefused => {
                    " (nothing listens there: ctgate is not running or did not clean up)"
                }
                io::ErrorKind::PermissionDenied => {
                    " (the socket is mode 0600: run ctgate-ctl as the user that runs ctgate)"
                }
                _ => "",
            };
            format!("cannot connect to {p}: {e}{hint}")
        }
        CallError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            format!(
                "no reply from {p} within {} s (use --timeout to wait longer)",
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            )
        }
        CallError::Io(e) => format!("connection to {p} failed: {e}"),
        CallError::Protocol(e) => format!("bad reply from {p}: {e}"),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&argv, std::env::var("CTGATE_SOCKET").ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ctgate-ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let (socket, timeout, cmd, args) = match cli {
        Cli::Help => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Cli::Version => {
            println!("ctgate-ctl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Cli::CommandHelp(c) => {
            print!("{}", c.help());
            return ExitCode::SUCCESS;
        }
        Cli::Run {
            socket,
            timeout,
            cmd,
            args,
        } => (socket, timeout, cmd, args),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut broken_pipe = false;
    let r = call(&socket, cmd.name, &args, timeout, |chunk| {
        if !broken_pipe && out.write_all(chunk.as_bytes()).is_err() {
            broken_pipe = true;
        }
    });
    let _ = out.flush();
    match r {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("ctgate-ctl: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ctgate-ctl: {}", call_error(&socket, timeout, &e));
            ExitCode::FAILURE
        }
    }
}

/// `reload --config FILE`: ctgate opens FILE from its own directory, so a relative path
/// is made absolute here, against the caller's.
fn absolute_config(args: &mut [String]) {
    let cwd = std::env::current_dir().ok();
    let abs = |f: &str| match &cwd {
        Some(d) if !f.is_empty() && !std::path::Path::new(f).is_absolute() => {
            d.join(f).display().to_string()
        }
        _ => f.to_string(),
    };
    let mut next_is_file = false;
    for a in args.iter_mut() {
        if next_is_file {
            *a = abs(a);
            next_is_file = false;
        } else if a == "--config" {
            next_is_file = true;
        } else if let Some(f) = a.strip_prefix("--config=") {
            *a = format!("--config={}", abs(f));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, String> {
        parse(
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            None,
        )
    }

    #[test]
    fn events_waits_without_timeout_unless_one_is_given() {
        let Cli::Run { timeout, args, .. } = p(&["events", "--count", "3"]).unwrap() else {
            panic!()
        };
        assert_eq!(timeout, None);
        assert_eq!(args, vec!["--count", "3"]);
        let Cli::Run { timeout, .. } = p(&["--timeout", "5", "events"]).unwrap() else {
            panic!()
        };
        assert_eq!(timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn parses_options_command_and_passes_arguments_through() {
        let Cli::Run {
            socket,
            timeout,
            cmd,
            args,
        } = p(&[
            "--socket",
            "/tmp/x.sock",
            "dump-conntrack",
            "-s",
            "--json",
            "zone=1",
        ])
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(timeout, Some(Duration::from_secs(30)));
        assert_eq!(cmd.name, "dump-conntrack");
        assert_eq!(args, vec!["-s", "--json", "zone=1"]);
        let Cli::Run {
            socket, timeout, ..
        } = p(&["--socket=/a", "--timeout=0", "ct-get-nconns"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(socket, PathBuf::from("/a"));
        assert_eq!(timeout, None);
        let Cli::Run { socket, .. } = parse(&["version".into()], Some("/env.sock".into())).unwrap()
        else {
            panic!()
        };
        assert_eq!(socket, PathBuf::from("/env.sock"));
        let Cli::Run { socket, .. } = p(&["version"]).unwrap() else {
            panic!()
        };
        assert_eq!(socket, PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(p(&["--help"]), Ok(Cli::Help));
        assert_eq!(
            p(&[]).unwrap_err(),
            "no command given ('ctgate-ctl --help' lists the commands)"
        );
        assert!(
            matches!(p(&["ct-bkts", "--help"]), Ok(Cli::CommandHelp(c)) if c.name == "ct-bkts")
        );
        let e = p(&["dump-contrack"]).unwrap_err();
        assert!(e.contains("did you mean dump-conntrack"), "{e}");
        assert!(p(&["--socket"]).unwrap_err().contains("needs a value"));
        assert!(p(&["--bogus", "show"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(p(&["--timeout", "x", "show"]).is_err());
        let u = usage();
        for c in COMMANDS {
            assert!(u.contains(&format!("  {} ", c.name)), "{}", c.name);
        }
    }
}
