//! Child processes of ctgate-perf (the ctgate binary, Open vSwitch's daemons) that never
//! outlive it: each is started through `setpriv --pdeathsig TERM` (it gets SIGTERM when
//! ctgate-perf dies), optionally pinned with `taskset`, both from util-linux and exec'ing
//! in place so that the child's PID is the program's; and each is stopped by that PID,
//! never by name.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A command for `prog`, dying with this process, pinned to CPU `cpu` if given.
pub fn command(prog: impl AsRef<std::ffi::OsStr>, cpu: Option<usize>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--pdeathsig", "TERM", "--"]);
    if let Some(cpu) = cpu {
        c.args(["taskset", "-c"]).arg(cpu.to_string());
    }
    c.arg(prog);
    c
}

/// Stops our own child by PID: SIGTERM, up to `grace`, then SIGKILL; reaps it. Nothing
/// to do for `None`. Returns how it ended (`None` when there was no child or its status
/// could not be read): a child that had already exited, one that ended on SIGTERM, or
/// one killed after the grace.
pub fn stop(child: &mut Option<Child>, grace: Duration) -> Option<ExitStatus> {
    let mut c = child.take()?;
    match c.try_wait() {
        Ok(Some(st)) => return Some(st),
        Ok(None) => {}
        Err(_) => return None,
    }
    // Our own child, not reaped yet (we hold its `Child`): the PID is its own.
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&c),
        rustix::process::Signal::TERM,
    );
    let t0 = Instant::now();
    loop {
        match c.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if t0.elapsed() < grace => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    let _ = c.kill();
    c.wait().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_and_reaps_a_running_child() {
        let mut c = Some(command("sleep", None).arg("30").spawn().unwrap());
        let pid = c.as_ref().unwrap().id();
        stop(&mut c, Duration::from_secs(5));
        assert!(c.is_none());
        // Ended and reaped: no process (not even a zombie) with its PID.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn pinned_command_runs_the_program_in_place() {
        let out = command("sh", Some(0))
            .args(["-c", "cat /proc/self/status"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("Cpus_allowed_list:") && l.ends_with("\t0")),
            "{text}"
        );
    }
}
