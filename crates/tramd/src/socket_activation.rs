//! Listening sockets passed by systemd (`sd_listen_fds(3)`), behind the `systemd:` address.
//!
//! systemd starts a socket-activated service with the sockets open from descriptor 3 on and
//! describes them in the environment: `LISTEN_PID` (the process they are meant for),
//! `LISTEN_FDS` (how many) and, optionally, `LISTEN_FDNAMES` (their `FileDescriptorName=`s,
//! separated by `:`). [`take_listen_fds`] reads and unsets the three variables — whatever they
//! say, so they reach no child — and, when `LISTEN_PID` is this process, takes the descriptors
//! over: each is made close-on-exec and non-blocking, and must be a listening stream socket of
//! the Unix, IPv4 or IPv6 family, as dbus-daemon requires of what it gets for `systemd:`.
//! Anything else is an error: a bus must not start on sockets it cannot serve.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::net::{AddressFamily, SocketType};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: RawFd = 3;

/// A socket passed by systemd.
#[derive(Debug)]
pub(crate) struct ListenFd {
    /// The listening socket, close-on-exec and non-blocking.
    pub(crate) fd: OwnedFd,
    /// Its `FileDescriptorName=`, or `unknown` when systemd gave no names.
    pub(crate) name: String,
    /// What it listens on.
    pub(crate) family: Family,
}

/// The address family of a passed socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `AF_UNIX`.
    Unix,
    /// `AF_INET`.
    Ipv4,
    /// `AF_INET6`.
    Ipv6,
}

/// Why the passed sockets cannot be used.
#[derive(Debug)]
pub(crate) enum SocketActivationError {
    /// A variable does not hold what it must.
    Variable {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// `LISTEN_FDNAMES` does not name every descriptor.
    NameCount {
        /// `LISTEN_FDS`.
        fds: usize,
        /// The number of names.
        names: usize,
    },
    /// A descriptor is not open, or could not be inspected or set up.
    Descriptor {
        /// The descriptor.
        fd: RawFd,
        /// The error.
        error: io::Error,
    },
    /// A descriptor is not a listening stream socket of a supported family.
    WrongType {
        /// The descriptor.
        fd: RawFd,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// Takes the sockets systemd passed to this process, in descriptor order; empty when the
/// process was not socket-activated. `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are
/// removed from the environment in every case.
///
/// # Errors
///
/// Malformed variables, or a descriptor that is not an open listening stream socket of the
/// Unix, IPv4 or IPv6 family.
///
/// # Safety
///
/// Call it once, from the main thread before any other thread exists (it changes the
/// environment), and before anything else in the process takes descriptors 3 and up.
pub(crate) unsafe fn take_listen_fds() -> Result<Vec<ListenFd>, SocketActivationError> {
    const VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];
    let [pid, fds, names] = VARIABLES.map(std::env::var_os);
    for variable in VARIABLES {
        // SAFETY: the caller guarantees that no other thread exists to read the environment.
        unsafe { std::env::remove_var(variable) };
    }
    let own_pid = rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    let names = passed_names(pid.as_deref(), fds.as_deref(), names.as_deref(), own_pid)?;
    let mut sockets = Vec::with_capacity(names.len());
    for (fd, name) in (LISTEN_FDS_START..).zip(names) {
        // SAFETY: LISTEN_PID names this process, so systemd passed it descriptors from 3 on
        // for it to own, and the caller guarantees nothing else took them.
        let fd = unsafe { claim(fd) }?;
        let family = check_listening(fd.as_fd())?;
        sockets.push(ListenFd { fd, name, family });
    }
    Ok(sockets)
}

impl fmt::Display for SocketActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketActivationError::Variable { name, value } => {
                write!(f, "invalid {name}={value} from the service manager")
            }
            SocketActivationError::NameCount { fds, names } => write!(
                f,
                "LISTEN_FDNAMES has {names} names for {fds} passed descriptors"
            ),
            SocketActivationError::Descriptor { fd, error } => {
                write!(f, "passed descriptor {fd}: {error}")
            }
            SocketActivationError::WrongType { fd, what } => {
                write!(f, "passed descriptor {fd} cannot serve the bus: {what}")
            }
        }
    }
}

impl std::error::Error for SocketActivationError {}

/// The names of the descriptors passed to `own_pid`, one per descriptor; empty when none are.
fn passed_names(
    pid: Option<&OsStr>,
    fds: Option<&OsStr>,
    names: Option<&OsStr>,
    own_pid: u32,
) -> Result<Vec<String>, SocketActivationError> {
    let bad = |name: &'static str, value: &OsStr| SocketActivationError::Variable {
        name,
        value: value.to_string_lossy().into_owned(),
    };
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    let listen_pid: u32 = pid
        .to_str()
        .and_then(|p| p.parse().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| bad("LISTEN_PID", pid))?;
    if listen_pid != own_pid {
        return Ok(Vec::new());
    }
    // Descriptors are ints: at most INT_MAX - 3 of them, as sd_listen_fds checks.
    let limit = usize::try_from(RawFd::MAX - LISTEN_FDS_START).unwrap_or(usize::MAX);
    let count: usize = fds
        .to_str()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n <= limit)
        .ok_or_else(|| bad("LISTEN_FDS", fds))?;
    match names {
        None => Ok(vec!["unknown".to_owned(); count]),
        Some(names) => {
            let text = names.to_str().ok_or_else(|| bad("LISTEN_FDNAMES", names))?;
            let names: Vec<String> = if count == 0 && text.is_empty() {
                Vec::new()
            } else {
                text.split(':').map(str::to_owned).collect()
            };
            if names.len() != count {
                return Err(SocketActivationError::NameCount {
                    fds: count,
                    names: names.len(),
                });
            }
            Ok(names)
        }
    }
}

/// Takes ownership of the inherited descriptor `fd` after checking it is open, and makes it
/// close-on-exec and non-blocking.
///
/// # Safety
///
/// `fd` must be the caller's to own: nothing else in the process may use or close it.
unsafe fn claim(fd: RawFd) -> Result<OwnedFd, SocketActivationError> {
    let failed = |error: io::Error| SocketActivationError::Descriptor { fd, error };
    // SAFETY: F_GETFD only queries the descriptor's flags; any integer is acceptable.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is open (checked above) and the caller's to own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC).map_err(|e| failed(e.into()))?;
    rustix::io::ioctl_fionbio(&owned, true).map_err(|e| failed(e.into()))?;
    Ok(owned)
}

/// The family of `fd` if it is a listening stream socket that a bus can serve.
fn check_listening(fd: BorrowedFd<'_>) -> Result<Family, SocketActivationError> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let wrong = |what| SocketActivationError::WrongType { fd: raw, what };
    let kind = match rustix::net::sockopt::socket_type(fd) {
        Ok(kind) => kind,
        Err(rustix::io::Errno::NOTSOCK) => return Err(wrong("not a socket")),
        Err(e) => {
            return Err(SocketActivationError::Descriptor {
                fd: raw,
                error: e.into(),
            });
        }
    };
    if kind != SocketType::STREAM {
        return Err(wrong("not a stream socket"));
    }
    let listening = rustix::net::sockopt::socket_acceptconn(fd).map_err(|e| {
        SocketActivationError::Descriptor {
            fd: raw,
            error: e.into(),
        }
    })?;
    if !listening {
        return Err(wrong("not listening"));
    }
    let domain =
        rustix::net::sockopt::socket_domain(fd).map_err(|e| SocketActivationError::Descriptor {
            fd: raw,
            error: e.into(),
        })?;
    match domain {
        AddressFamily::UNIX => Ok(Family::Unix),
        AddressFamily::INET => Ok(Family::Ipv4),
        AddressFamily::INET6 => Ok(Family::Ipv6),
        _ => Err(wrong("neither a Unix nor an IP socket")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    use super::*;

    #[test]
    fn variables() {
        type Vars<'a> = [Option<&'a str>; 3];
        let cases: &[(Vars<'_>, Result<&[&str], &str>)] = &[
            ([None, None, None], Ok(&[])),
            ([None, Some("2"), None], Ok(&[])),
            ([Some("42"), None, None], Ok(&[])),
            ([Some("43"), Some("2"), None], Ok(&[])),
            ([Some("42"), Some("0"), None], Ok(&[])),
            ([Some("42"), Some("2"), None], Ok(&["unknown", "unknown"])),
            (
                [Some("42"), Some("2"), Some("bus:extra")],
                Ok(&["bus", "extra"]),
            ),
            ([Some("42"), Some("1"), Some("")], Ok(&[""])),
            ([Some("42"), Some("0"), Some("")], Ok(&[])),
            (
                [Some("42"), Some("2"), Some("bus")],
                Err("LISTEN_FDNAMES has 1 names for 2 passed descriptors"),
            ),
            (
                [Some("x"), Some("1"), None],
                Err("invalid LISTEN_PID=x from the service manager"),
            ),
            (
                [Some("0"), Some("1"), None],
                Err("invalid LISTEN_PID=0 from the service manager"),
            ),
            (
                [Some("42"), Some("-1"), None],
                Err("invalid LISTEN_FDS=-1 from the service manager"),
            ),
            (
                [Some("42"), Some("2147483645"), None],
                Err("invalid LISTEN_FDS=2147483645 from the service manager"),
            ),
        ];
        for ([pid, fds, fdnames], want) in cases {
            let got = passed_names(
                pid.map(OsStr::new),
                fds.map(OsStr::new),
                fdnames.map(OsStr::new),
                42,
            )
            .map_err(|e| e.to_string());
            let want = want
                .map(|names| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(got, want, "{pid:?} {fds:?} {fdnames:?}");
        }
    }

    #[test]
    fn accepted_sockets() {
        let dir = std::env::temp_dir().join(format!("tramd-listen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let unix = UnixListener::bind(dir.join("bus")).unwrap();
        assert_eq!(check_listening(unix.as_fd()).unwrap(), Family::Unix);
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening(tcp.as_fd()).unwrap(), Family::Ipv4);
        if let Ok(tcp6) = TcpListener::bind("[::1]:0") {
            assert_eq!(check_listening(tcp6.as_fd()).unwrap(), Family::Ipv6);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refused_descriptors() {
        let (stream, _peer) = UnixStream::pair().unwrap();
        let (datagram, _other) = UnixDatagram::pair().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let cases: [(BorrowedFd<'_>, &str); 4] = [
            (stream.as_fd(), "not listening"),
            (datagram.as_fd(), "not a stream socket"),
            (udp.as_fd(), "not a stream socket"),
            (file.as_fd(), "not a socket"),
        ];
        for (fd, want) in cases {
            match check_listening(fd) {
                Err(SocketActivationError::WrongType { what, .. }) => assert_eq!(what, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn claimed_descriptors_are_cloexec_and_nonblocking() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        // An inherited descriptor: no close-on-exec, blocking.
        let inherited = rustix::io::fcntl_dupfd_cloexec(&tcp, 3).unwrap();
        rustix::io::fcntl_setfd(&inherited, rustix::io::FdFlags::empty()).unwrap();
        let raw = inherited.into_raw_fd();
        // SAFETY: `raw` was just released by its OwnedFd; nothing else uses it.
        let owned = unsafe { claim(raw) }.unwrap();
        assert_eq!(owned.as_raw_fd(), raw);
        let flags = rustix::io::fcntl_getfd(&owned).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let status = rustix::fs::fcntl_getfl(&owned).unwrap();
        assert!(status.contains(rustix::fs::OFlags::NONBLOCK));

        // A number far above anything open.
        // SAFETY: the descriptor is not open, so claiming it fails before taking anything.
        match unsafe { claim(1 << 20) } {
            Err(SocketActivationError::Descriptor { fd, .. }) => assert_eq!(fd, 1 << 20),
            other => panic!("{other:?}"),
        }
    }
}
