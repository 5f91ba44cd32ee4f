//! Logging: one line per event on standard error, each starting with `tramd: `.
//!
//! Every message the daemon logs goes through [`write`], so rate limiting or another sink
//! can be added here without touching the callers. Warnings and errors are always written;
//! per-connection events (connects, disconnects) only when `TRAMD_DEBUG` is set in the
//! environment, so a busy bus does not flood its log.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Routine per-connection events; hidden unless `TRAMD_DEBUG` is set.
    Debug,
    /// Something went wrong with one client or is degraded, the bus goes on.
    Warning,
    /// The daemon cannot go on.
    Error,
}

/// Logs at [`Level::Debug`].
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}
/// Logs at [`Level::Warning`].
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*)) };
}
/// Logs at [`Level::Error`].
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
pub(crate) use {debug, error, warning};

/// Writes one log line, if `level` is enabled.
pub(crate) fn write(level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let prefix = match level {
        Level::Debug => "",
        Level::Warning => "warning: ",
        Level::Error => "error: ",
    };
    // A log line that cannot be written is lost; there is nowhere to report that.
    let _ = writeln!(std::io::stderr().lock(), "tramd: {prefix}{args}");
}

/// Describes a connection in log lines: its unique name once it has one, its pid and uid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerLabel<'a> {
    /// The unique name, once the peer said Hello.
    pub(crate) name: Option<&'a str>,
    /// The pid from SO_PEERCRED.
    pub(crate) pid: Option<u32>,
    /// The uid from SO_PEERCRED.
    pub(crate) uid: u32,
}

impl fmt::Display for PeerLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "peer {name}")?,
            None => f.write_str("connection")?,
        }
        match self.pid {
            Some(pid) => write!(f, " (pid {pid}, uid {})", self.uid),
            None => write!(f, " (pid unknown, uid {})", self.uid),
        }
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
                    uid: 1000,
                },
                "peer :1.7 (pid 42, uid 1000)",
            ),
            (
                PeerLabel {
                    name: None,
                    pid: None,
                    uid: 0,
                },
                "connection (pid unknown, uid 0)",
            ),
        ];
        for (label, want) in cases {
            assert_eq!(label.to_string(), want);
        }
    }
}
