//! `ctgate`: wires the command line, EAL and the gateway run together. No logic here.

use std::process::ExitCode;

use ctgate::cli::{self, Command};
use ctgate::config::Config;
use ctgate::control::run;
use ctgate::dpdk::{dpdk_version, Eal};

/// Exit code for bad arguments (command line, configuration file or EAL options).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = args.next().unwrap_or_else(|| "ctgate".to_string());
    let cli = match cli::parse(args) {
        Ok(Command::Run(cli)) => cli,
        Ok(Command::Help) => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{} (running {})", env!("CTGATE_VERSION"), dpdk_version());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ctgate: {e} (see ctgate --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    // The gateway's configuration is read and validated before DPDK starts, so that a
    // broken file is one clear line (FILE:LINE: FIELD: MESSAGE) and exit code 2.
    let config = if cli.app.forwarding_mode() {
        None
    } else {
        let loaded = match &cli.app.config {
            Some(path) => Config::load(path),
            None => Config::embedded(),
        };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                // One line, even for TOML syntax errors that come with a hint line.
                let text = e.to_string();
                let text: Vec<&str> = text.lines().map(str::trim).collect();
                eprintln!("ctgate: {}", text.join(": "));
                return ExitCode::from(EXIT_USAGE);
            }
        }
    };

    let eal_argv: Vec<String> = std::iter::once(program).chain(cli.eal_args).collect();
    let eal = match Eal::init(&eal_argv) {
        Ok(eal) => eal,
        Err(e) => {
            eprintln!("ctgate: cannot initialise DPDK: {e} (check the EAL options before `--`, see ctgate --help)");
            return ExitCode::from(if e.errno == libc::EINVAL || e.errno == libc::EADDRINUSE {
                EXIT_USAGE
            } else {
                1
            });
        }
    };
    // A configured port DPDK did not probe is a configuration error like any other:
    // its line, exit code 2 (checked again inside the run for library callers).
    if let Some(cfg) = &config {
        if let Err(e) = run::check_ports(cfg, &ctgate::dpdk::available_ports(&eal)) {
            eprintln!("ctgate: {e}");
            if let Err(e) = eal.cleanup() {
                eprintln!("ctgate: {e}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let result = run::run(&eal, &cli.app.run, config.as_ref());
    if let Err(e) = eal.cleanup() {
        eprintln!("ctgate: {e}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctgate: {e}");
            ExitCode::FAILURE
        }
    }
}
