//! Logging: one line per event, to standard error, the system log, or both.
//!
//! Every message the daemon logs goes through [`write()`], so rate limiting or another sink
//! can be added here without touching the callers. Informational messages, warnings and errors
//! are always written; per-connection events (connects, disconnects) only when `TRAMD_DEBUG` is
//! set in the environment, so a busy bus does not flood its log.
//!
//! On standard error each line starts with `tramd: `. The system log is reached, as syslog(3)
//! does, by a datagram to `/dev/log` (`<priority>tramd[pid]: message`, facility daemon); it is
//! non-blocking, so a stalled log daemon costs lines rather than stalling the bus. When
//! `/dev/log` cannot be reached, lines go to standard error instead ([`configure`] says so).

use std::fmt;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where the system log listens.
const SYSLOG_PATH: &str = "/dev/log";
/// syslog's LOG_DAEMON facility.
const FACILITY_DAEMON: u8 = 3;

static TO_STDERR: AtomicBool = AtomicBool::new(true);
static SYSLOG: Mutex<Option<UnixDatagram>> = Mutex::new(None);

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Routine per-connection events; hidden unless `TRAMD_DEBUG` is set.
    Debug,
    /// Something worth knowing that is not a problem (a configuration reload).
    Info,
    /// Something went wrong with one client or is degraded, the bus goes on.
    Warning,
    /// The daemon cannot go on.
    Error,
}

/// Logs at [`Level::Debug`].
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}
/// Logs at [`Level::Info`].
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}
/// Logs at [`Level::Warning`].
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*)) };
}
/// Logs at [`Level::Error`].
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
pub(crate) use {debug, error, info, warning};

/// Chooses the sinks: standard error, the system log, or both. Returns false when the system
/// log was asked for but cannot be reached; lines then go to standard error.
pub(crate) fn configure(stderr: bool, syslog: bool) -> bool {
    let socket = syslog.then(connect_syslog).flatten();
    let reached = socket.is_some() || !syslog;
    TO_STDERR.store(stderr || socket.is_none(), Ordering::Relaxed);
    if let Ok(mut slot) = SYSLOG.lock() {
        *slot = socket;
    }
    reached
}

/// Writes one log line, if `level` is enabled.
pub(crate) fn write(level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    if let Ok(slot) = SYSLOG.lock() {
        if let Some(socket) = slot.as_ref() {
            let line = format!(
                "<{}>tramd[{}]: {args}",
                FACILITY_DAEMON * 8 + severity(level),
                std::process::id()
            );
            // Lost when the log daemon is not keeping up; there is nowhere to report that.
            let _ = socket.send(line.as_bytes());
        }
    }
    if TO_STDERR.load(Ordering::Relaxed) {
        let prefix = match level {
            Level::Debug | Level::Info => "",
            Level::Warning => "warning: ",
            Level::Error => "error: ",
        };
        // A log line that cannot be written is lost; there is nowhere to report that.
        let _ = writeln!(std::io::stderr().lock(), "tramd: {prefix}{args}");
    }
}

/// Describes a connection in log lines: its unique name once it has one, its pid and uid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerLabel<'a> {
    /// The unique name, once the peer said Hello.
    pub(crate) name: Option<&'a str>,
    /// The pid from SO_PEERCRED.
    pub(crate) pid: Option<u32>,
    /// The uid from SO_PEERCRED or authentication; `None` when unknown (TCP, anonymous).
    pub(crate) uid: Option<u32>,
}

impl fmt::Display for PeerLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "peer {name}")?,
            None => f.write_str("connection")?,
        }
        match self.pid {
            Some(pid) => write!(f, " (pid {pid}, ")?,
            None => f.write_str(" (pid unknown, ")?,
        }
        match self.uid {
            Some(uid) => write!(f, "uid {uid})"),
            None => f.write_str("uid unknown)"),
        }
    }
}

fn connect_syslog() -> Option<UnixDatagram> {
    let socket = UnixDatagram::unbound().ok()?;
    socket.connect(SYSLOG_PATH).ok()?;
    socket.set_nonblocking(true).ok()?;
    Some(socket)
}

/// The syslog severity of a level.
fn severity(level: Level) -> u8 {
    match level {
        Level::Debug => 7,
        Level::Info => 6,
        Level::Warning => 4,
        Level::Error => 3,
    }
}

fn debug_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("TRAMD_DEBUG").is_some_and(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_labels() {
        let cases = [
            (
                PeerLabel {
                    name: Some(":1.7"),
                    pid: Some(42),
                    uid: Some(1000),
                },
                "peer :1.7 (pid 42, uid 1000)",
            ),
            (
                PeerLabel {
                    name: None,
                    pid: None,
                    uid: Some(0),
                },
                "connection (pid unknown, uid 0)",
            ),
            (
                PeerLabel {
                    name: None,
                    pid: None,
                    uid: None,
                },
                "connection (pid unknown, uid unknown)",
            ),
        ];
        for (label, want) in cases {
            assert_eq!(label.to_string(), want);
        }
    }

    #[test]
    fn syslog_priorities() {
        // daemon.debug, daemon.info, daemon.warning, daemon.err
        let got: Vec<u8> = [Level::Debug, Level::Info, Level::Warning, Level::Error]
            .into_iter()
            .map(|l| FACILITY_DAEMON * 8 + severity(l))
            .collect();
        assert_eq!(got, [31, 30, 28, 27]);
    }
}
