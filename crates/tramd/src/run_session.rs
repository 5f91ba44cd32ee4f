//! `tramd run-session`: a program with a session bus of its own, as `dbus-run-session(1)`.
//!
//! [`run`] starts a bus (this executable, or `--dbus-daemon`) with `--nofork`,
//! `--print-address=FD` on a pipe and `--session` (or `--config-file`), reads its address, runs
//! the program with `DBUS_SESSION_BUS_ADDRESS` set to it and `DBUS_SESSION_BUS_PID`,
//! `DBUS_SESSION_BUS_WINDOWID`, `DBUS_STARTER_BUS_TYPE` and `DBUS_STARTER_ADDRESS` removed, and
//! once the program exits stops the bus with SIGTERM and waits for it, so its socket is gone
//! when run-session returns. The stock session configuration listens on a fresh socket in
//! `/tmp` (`unix:tmpdir=`), so the bus is private to the program.
//!
//! The exit status is dbus-run-session's: the program's status, 128+N when signal N killed it,
//! 1 when the program cannot be executed, and 127 when run-session itself fails (the bus does
//! not start, or no address arrives).
//!
//! A few things go beyond dbus-run-session, so that the bus outlives neither run-session nor
//! the program and does not die before the program does:
//!
//! * the bus runs in a session of its own, so the terminal's signals (Ctrl-C) reach the program
//!   but not the bus, and it gets SIGTERM if run-session dies first (`PR_SET_PDEATHSIG`);
//! * run-session ignores SIGINT and SIGQUIT while the program runs, as `system(3)` does: a
//!   program that survives Ctrl-C keeps its bus. The program gets the default actions back;
//! * a bus that does not stop within [`STOP_TIMEOUT`] of SIGTERM is killed.
//!
//! The bus is told nothing of a service manager: `NOTIFY_SOCKET` and `WATCHDOG_*` stay with the
//! program, which is what systemd started.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};

use crate::cli::RunSession;
use crate::log;

/// dbus-run-session's status for its own failures.
const FAILED: u8 = 127;
/// dbus-run-session's status when the program cannot be executed.
const EXEC_FAILED: u8 = 1;
/// How long the bus may take to stop after SIGTERM before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest address line read from the bus.
const MAX_ADDRESS: usize = 64 * 1024;

/// Variables that would mislead the program about which bus it is on.
const REMOVED_VARIABLES: [&str; 4] = [
    "DBUS_SESSION_BUS_PID",
    "DBUS_SESSION_BUS_WINDOWID",
    "DBUS_STARTER_BUS_TYPE",
    "DBUS_STARTER_ADDRESS",
];

/// Variables of the service manager that belong to the program, not to the bus.
const MANAGER_VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Runs `options` and returns the exit status for the process.
pub(crate) fn run(options: &RunSession) -> u8 {
    // The terminal's Ctrl-C and Ctrl-\ are for the program; see the module documentation.
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_IGN is a valid disposition; no handler runs.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let mut bus = match Bus::start(options) {
        Ok(bus) => bus,
        Err(e) => {
            log::error!("run-session: {e}");
            return FAILED;
        }
    };
    let status = match run_program(options, &bus.address) {
        Ok(program) => bus.wait_for(program),
        Err(e) => {
            log::error!(
                "run-session: failed to exec '{}': {e}",
                options
                    .command
                    .first()
                    .map(|p| p.to_string_lossy())
                    .unwrap_or_default()
            );
            Err(EXEC_FAILED)
        }
    };
    bus.stop();
    match status {
        Ok(status) => exit_status(status),
        Err(code) => code,
    }
}

/// The status run-session exits with for a program that ended with `status`.
fn exit_status(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(FAILED);
    }
    match status.signal() {
        Some(signal) => u8::try_from((128 + signal) & 0xff).unwrap_or(FAILED),
        None => FAILED,
    }
}

/// Why the bus could not be started.
#[derive(Debug)]
enum StartError {
    /// Creating the pipe or spawning the bus failed.
    Spawn(OsString, io::Error),
    /// Reading the address failed.
    Read(io::Error),
    /// The bus closed the pipe without printing an address.
    NoAddress,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn(program, e) => {
                write!(f, "cannot start the bus {}: {e}", program.to_string_lossy())
            }
            StartError::Read(e) => write!(f, "cannot read the address of the bus: {e}"),
            StartError::NoAddress => f.write_str("the bus exited without printing its address"),
        }
    }
}

/// The session bus, from start to stop.
struct Bus {
    child: Child,
    address: String,
    /// The bus has been reaped (it exited, or was stopped).
    reaped: bool,
}

impl Bus {
    /// Starts the bus and reads its address.
    fn start(options: &RunSession) -> Result<Bus, StartError> {
        let program = match &options.daemon {
            Some(program) => program.clone(),
            None => std::env::current_exe()
                .map(OsString::from)
                .map_err(|e| StartError::Spawn("tramd".into(), e))?,
        };
        let spawn_error = |e: io::Error| StartError::Spawn(program.clone(), e);
        let (reader, writer) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| spawn_error(e.into()))?;
        let mut command = Command::new(&program);
        command
            .arg("--nofork")
            .arg(format!("--print-address={}", writer.as_raw_fd()));
        match &options.config_file {
            Some(file) => {
                let mut arg = OsString::from("--config-file=");
                arg.push(file);
                command.arg(arg)
            }
            None => command.arg("--session"),
        };
        for variable in MANAGER_VARIABLES {
            command.env_remove(variable);
        }
        command.stdin(Stdio::null());
        let parent = rustix::process::getpid();
        let print_fd = writer.as_raw_fd();
        // SAFETY: the closure makes only async-signal-safe system calls (signal, fcntl, setsid,
        // prctl, getppid) on values copied before the fork, and allocates nothing.
        unsafe {
            command.pre_exec(move || bus_child_setup(print_fd, parent));
        }
        let child = command.spawn().map_err(spawn_error)?;
        // Only the bus may hold the writing end, so its exit ends the read below.
        drop(writer);
        let mut bus = Bus {
            child,
            address: String::new(),
            reaped: false,
        };
        match read_address(reader) {
            Ok(address) => {
                bus.address = address;
                Ok(bus)
            }
            Err(e) => {
                bus.stop();
                Err(e)
            }
        }
    }

    /// Waits until `program` exits and returns its status. A bus that exits first is reported
    /// and the program waited for all the same, as dbus-run-session does.
    fn wait_for(&mut self, program: Child) -> Result<ExitStatus, u8> {
        let program_pid = program.id();
        loop {
            let (pid, status) = match rustix::process::wait(WaitOptions::empty()) {
                Ok(Some((pid, status))) => (pid.as_raw_nonzero().get().unsigned_abs(), status),
                Ok(None) | Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    log::error!("run-session: cannot wait for the program: {e}");
                    return Err(FAILED);
                }
            };
            let status = ExitStatus::from_raw(status.as_raw());
            if pid == program_pid {
                return Ok(status);
            }
            if pid == self.child.id() {
                self.reaped = true;
                log::warning!("run-session: the bus exited before the program ({status})");
            }
        }
    }

    /// Stops the bus unless it is gone already: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) else {
            return;
        };
        // The pidfd is taken before the signal, so it cannot name a recycled pid.
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok();
        let _ = rustix::process::kill_process(pid, Signal::TERM);
        if !pidfd.is_some_and(|fd| exits_within(&fd, STOP_TIMEOUT)) {
            log::warning!(
                "run-session: the bus did not stop within {} s of SIGTERM; killing it",
                STOP_TIMEOUT.as_secs()
            );
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.reaped = true;
    }
}

/// Whether the process behind `pidfd` exits within `timeout`.
fn exits_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let Ok(timeout) = rustix::time::Timespec::try_from(timeout) else {
        return false;
    };
    loop {
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Runs in the bus's child between fork and exec: the address descriptor kept open across
/// exec, default signal actions back, a session of its own, and SIGTERM when run-session dies.
fn bus_child_setup(print_fd: i32, parent: Pid) -> io::Result<()> {
    default_signals();
    // SAFETY: F_SETFD on a descriptor that is open in this process (inherited from the parent,
    // which still holds it); clearing FD_CLOEXEC keeps it across exec.
    if unsafe { libc::fcntl(print_fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    rustix::process::setsid()?;
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
    // run-session may have died before the death signal was set.
    if rustix::process::getppid() != Some(parent) {
        return Err(io::Error::other("run-session exited"));
    }
    Ok(())
}

/// Runs the program with the bus's address.
fn run_program(options: &RunSession, address: &str) -> io::Result<Child> {
    let (program, args) = options
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program"))?;
    let mut command = Command::new(program);
    command.args(args).env("DBUS_SESSION_BUS_ADDRESS", address);
    for variable in REMOVED_VARIABLES {
        command.env_remove(variable);
    }
    // SAFETY: `default_signals` only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(|| {
            default_signals();
            Ok(())
        });
    }
    command.spawn()
}

/// Gives SIGINT and SIGQUIT, which run-session ignores, their default actions back (in a
/// child, before exec).
fn default_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_DFL is a valid disposition; `signal` is async-signal-safe.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// Reads the bus's address: the first line the bus prints on the pipe.
fn read_address(reader: OwnedFd) -> Result<String, StartError> {
    let mut pipe = std::fs::File::from(reader);
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    while !text.contains(&b'\n') && text.len() < MAX_ADDRESS {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StartError::Read(e)),
        }
    }
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let address = String::from_utf8_lossy(line).trim().to_owned();
    if address.is_empty() || !text.contains(&b'\n') {
        return Err(StartError::NoAddress);
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases: &[(i32, u8)] = &[
            (0, 0),
            (7 << 8, 7),
            (255 << 8, 255),
            (libc::SIGTERM, 128 + 15),
            (libc::SIGKILL, 128 + 9),
        ];
        for &(raw, want) in cases {
            assert_eq!(exit_status(ExitStatus::from_raw(raw)), want, "{raw:#x}");
        }
    }

    #[test]
    fn address_lines() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"unix:path=/tmp/x,guid=00\n",
                Some("unix:path=/tmp/x,guid=00"),
            ),
            (b"unix:path=/a\n12345\n", Some("unix:path=/a")),
            (b"unix:path=/a", None),
            (b"\n", None),
            (b"", None),
        ];
        for &(input, want) in cases {
            let (reader, writer) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
            rustix::io::write(&writer, input).unwrap();
            drop(writer);
            let got = read_address(reader).ok();
            assert_eq!(got.as_deref(), want, "{input:?}");
        }
    }
}
