//! `ctgate-ctl`: the operator CLI over ctgate's control socket.
//!
//! The control socket arrives with the control-plane issue. Until then this tool connects
//! to the socket and, since nothing listens there yet, says so clearly and exits 1.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Where ctgate listens by default.
const DEFAULT_SOCKET: &str = "/run/ctgate/ctgate.sock";

/// Talk to a running ctgate over its control socket.
#[derive(Parser, Debug)]
#[command(name = "ctgate-ctl", version, about)]
struct Args {
    /// Path of ctgate's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// The request, e.g. `stats` or `conntrack dump` (the protocol is not defined yet).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = args.socket.display();
    match UnixStream::connect(&args.socket) {
        Err(e) => {
            eprintln!(
                "ctgate-ctl: cannot connect to {path}: {e} \
                 (ctgate does not serve a control socket yet: it comes with the control-plane issue)"
            );
            ExitCode::FAILURE
        }
        Ok(_) => {
            eprintln!(
                "ctgate-ctl: connected to {path}, but the control protocol is not implemented yet; \
                 request {:?} not sent",
                args.command.join(" ")
            );
            ExitCode::FAILURE
        }
    }
}
