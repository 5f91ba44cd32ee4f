//! Service manager notifications (`sd_notify(3)`): telling systemd the bus's state.
//!
//! Under `Type=notify` systemd passes a datagram socket in `NOTIFY_SOCKET` (a path, or
//! `@name` for an abstract socket) and waits for `READY=1` before it considers the bus
//! started, that is before it starts the units ordered after it. [`Notifier`] sends the
//! messages of `sd_notify(3)` there: one datagram per call, `KEY=VALUE` lines. Without
//! `NOTIFY_SOCKET` every call does nothing, so the daemon calls them unconditionally.
//!
//! The socket is non-blocking: if systemd's queue is full the message is lost and the error
//! returned, instead of stalling the bus. The variables are left in the environment; the
//! launcher keeps them from the services it starts.
//!
//! With `WatchdogSec=` systemd also sets `WATCHDOG_USEC` (and `WATCHDOG_PID`), and kills the
//! bus if `WATCHDOG=1` does not come at least that often; [`watchdog_interval`] is how often
//! to send it: half the timeout, as `sd_watchdog_enabled(3)` recommends.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends state changes to the service manager.
#[derive(Debug)]
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier for the socket in `NOTIFY_SOCKET`; disabled when the variable is unset or
    /// empty.
    ///
    /// # Errors
    ///
    /// As [`Notifier::new`].
    pub(crate) fn from_env() -> io::Result<Notifier> {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// A notifier for `socket`, a `NOTIFY_SOCKET` value: an absolute path, or `@` and the name
    /// of an abstract socket. `None` or an empty value gives a disabled notifier.
    ///
    /// # Errors
    ///
    /// Another kind of address (relative paths, `vsock:`, which tramd does not support), or
    /// the socket cannot be created.
    pub(crate) fn new(socket: Option<&OsStr>) -> io::Result<Notifier> {
        let Some(socket) = socket.filter(|s| !s.is_empty()) else {
            return Ok(Notifier::disabled());
        };
        let bytes = socket.as_bytes();
        let address = match bytes.split_first() {
            Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
            Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "NOTIFY_SOCKET={} is neither an absolute path nor an abstract socket",
                        socket.to_string_lossy()
                    ),
                ));
            }
        };
        let datagram = UnixDatagram::unbound()?;
        datagram.set_nonblocking(true)?;
        Ok(Notifier {
            target: Some((datagram, address)),
        })
    }

    /// A notifier that sends nothing.
    pub(crate) fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// Whether a service manager listens.
    pub(crate) fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: start-up is finished, the bus accepts connections.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub(crate) fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` stamp `Type=notify-reload` requires: the
    /// configuration is being reloaded; send [`Notifier::ready`] when done.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub(crate) fn reloading(&self) -> io::Result<()> {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000)
            .saturating_add(u64::try_from(now.tv_nsec / 1_000).unwrap_or(0));
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// `STOPPING=1`: the bus is shutting down.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub(crate) fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// `WATCHDOG=1`: the bus is alive; send it every [`watchdog_interval`].
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub(crate) fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// `STATUS=…`: a one-line status for `systemctl status`. Line breaks in `text` become
    /// spaces, so the text cannot add other assignments.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub(crate) fn status(&self, text: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", text.replace(['\n', '\r'], " ")))
    }

    /// Sends `message`, newline-separated `KEY=VALUE` assignments, as one datagram.
    ///
    /// # Errors
    ///
    /// The datagram could not be sent (`WouldBlock` when systemd's queue is full).
    pub(crate) fn send(&self, message: &str) -> io::Result<()> {
        let Some((socket, address)) = &self.target else {
            return Ok(());
        };
        socket.send_to_addr(message.as_bytes(), address).map(drop)
    }
}

/// How often to send [`Notifier::watchdog`]: half of `WATCHDOG_USEC`, when it is set for this
/// process (`WATCHDOG_PID` unset or this pid).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let pid = rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    watchdog_interval_from(
        std::env::var_os("WATCHDOG_USEC").as_deref(),
        std::env::var_os("WATCHDOG_PID").as_deref(),
        pid,
    )
}

/// [`watchdog_interval`] for the given variable values and pid.
fn watchdog_interval_from(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;

    /// A listening datagram socket standing in for systemd.
    struct Manager {
        socket: UnixDatagram,
        path: Option<PathBuf>,
    }

    impl Manager {
        fn at_path(tag: &str) -> Manager {
            let path =
                std::env::temp_dir().join(format!("tramd-notify-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path).unwrap();
            Manager {
                socket,
                path: Some(path),
            }
        }

        fn abstract_name(tag: &str) -> (Manager, String) {
            let name = format!("tramd-notify-{tag}-{}", std::process::id());
            let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let socket = UnixDatagram::bind_addr(&address).unwrap();
            (Manager { socket, path: None }, format!("@{name}"))
        }

        /// The next datagram, waiting at most ten seconds.
        fn receive(&self) -> String {
            self.socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 512];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            if let Some(path) = &self.path {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let manager = Manager::at_path("path");
        let path = manager.path.clone().unwrap();
        let notifier = Notifier::new(Some(path.as_os_str())).unwrap();
        assert!(notifier.is_enabled());

        notifier.ready().unwrap();
        assert_eq!(manager.receive(), "READY=1");
        notifier.status("listening on\nunix:path=/x").unwrap();
        assert_eq!(manager.receive(), "STATUS=listening on unix:path=/x");
        notifier.watchdog().unwrap();
        assert_eq!(manager.receive(), "WATCHDOG=1");
        notifier.stopping().unwrap();
        assert_eq!(manager.receive(), "STOPPING=1");

        let before = Instant::now();
        notifier.reloading().unwrap();
        let reloading = manager.receive();
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|u| u.parse::<u64>().ok());
        assert!(usec.is_some_and(|u| u > 0), "{reloading:?}");
        assert!(before.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let (manager, address) = Manager::abstract_name("abstract");
        let notifier = Notifier::new(Some(OsStr::new(&address))).unwrap();
        notifier.ready().unwrap();
        assert_eq!(manager.receive(), "READY=1");
    }

    #[test]
    fn disabled_and_invalid() {
        for value in [None, Some("")] {
            let notifier = Notifier::new(value.map(OsStr::new)).unwrap();
            assert!(!notifier.is_enabled());
            notifier.ready().unwrap();
        }
        for value in ["relative/path", "vsock:2:1234"] {
            let e = Notifier::new(Some(OsStr::new(value))).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{value}");
        }
        // Nobody listens: the error comes back, nothing blocks.
        let gone = std::env::temp_dir().join(format!("tramd-notify-gone-{}", std::process::id()));
        let notifier = Notifier::new(Some(gone.as_os_str())).unwrap();
        assert!(notifier.ready().is_err());
    }

    #[test]
    fn watchdog_intervals() {
        let cases: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (Some("30000000"), None, Some(Duration::from_secs(15))),
            (Some("30000000"), Some("42"), Some(Duration::from_secs(15))),
            (Some("30000000"), Some("43"), None),
            (Some("30000000"), Some("x"), None),
            (Some("1"), None, Some(Duration::from_nanos(500))),
            (Some("0"), None, None),
            (Some("-5"), None, None),
            (Some(""), None, None),
            (None, Some("42"), None),
            (None, None, None),
        ];
        for (usec, pid, want) in cases {
            let got = watchdog_interval_from(usec.map(OsStr::new), pid.map(OsStr::new), 42);
            assert_eq!(got, *want, "{usec:?} {pid:?}");
        }
    }
}
