//! Listening sockets for the addresses in the configuration.
//!
//! [`Listener::bind`] takes one configured address string, whose `;`-separated entries are
//! alternatives, and listens on the first entry that works (as dbus-daemon does). Sockets are
//! non-blocking and close-on-exec. Each listener knows its connectable address (a `dir`,
//! `tmpdir` or `runtime` entry becomes a `path` one; a TCP port 0 becomes the chosen port),
//! escaped for printing, and its [`Transport`].
//!
//! Unix sockets: a socket file is made connectable by every user (mode 0777, as dbus-daemon
//! does: authentication decides who stays) and unlinked when its [`Listener`] is dropped, that
//! is at clean exit. An existing socket file at a `path` address is replaced only when nothing
//! answers on it (a stale socket from a crashed bus); a live one is "address in use".
//!
//! TCP: the `bind` name (or `host`, or `localhost`) is resolved and every resulting address of
//! the requested family is listened on, all on one port (the first one's, when port 0 asks the
//! kernel to choose); `*` means every interface. `nonce-tcp:` listeners share a [`NonceFile`]:
//! 16 random bytes in a new private directory under `$TMPDIR` (or `/tmp`), removed when the last
//! of its listeners is dropped.
//!
//! `systemd:` listens on the sockets systemd passed ([`PassedSockets`]): the first such address
//! takes all of them, one listener each, named as dbus-daemon names them (`unix:path=…`,
//! `unix:abstract=…`, `tcp:family=…,port=…,host=…`). Their socket files belong to systemd and
//! are never unlinked.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::address::{self, Family, ListenAddress, TcpAddress};
use crate::ids;
use crate::socket_activation::{self, ListenFd, SocketActivationError};

/// The length of a nonce-tcp nonce.
pub(crate) const NONCE_LEN: usize = 16;

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    fd: OwnedFd,
    address: String,
    transport: Transport,
    unlink_on_drop: Option<PathBuf>,
}

/// What kind of connections a listener accepts.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// Unix sockets: kernel credentials, fd passing.
    Unix,
    /// TCP: no credentials, no fds; with a nonce for `nonce-tcp:`.
    Tcp {
        /// The nonce clients must send first (`nonce-tcp:` only).
        nonce: Option<Arc<NonceFile>>,
    },
}

/// The nonce of `nonce-tcp:` listeners and the file it is published in.
#[derive(Debug)]
pub(crate) struct NonceFile {
    nonce: [u8; NONCE_LEN],
    dir: PathBuf,
    path: PathBuf,
}

/// Why no entry of an address could be listened on.
#[derive(Debug)]
pub(crate) struct ListenError {
    /// The address string as configured.
    pub(crate) address: String,
    /// What went wrong with each entry tried, in order (or the parse error).
    pub(crate) reasons: Vec<String>,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen on {:?}: {}",
            self.address,
            self.reasons.join("; ")
        )
    }
}

impl std::error::Error for ListenError {}

/// The sockets systemd passed to the process, until a `systemd:` address takes them.
#[derive(Debug)]
pub(crate) struct PassedSockets {
    sockets: Result<Vec<ListenFd>, SocketActivationError>,
}

impl PassedSockets {
    /// What [`socket_activation::take_listen_fds`] found.
    pub(crate) fn new(sockets: Result<Vec<ListenFd>, SocketActivationError>) -> PassedSockets {
        PassedSockets { sockets }
    }

    /// No sockets at all.
    #[cfg(test)]
    pub(crate) fn none() -> PassedSockets {
        PassedSockets::new(Ok(Vec::new()))
    }

    /// How many sockets no `systemd:` address took, and why the passed sockets could not be
    /// used, if they could not; for warnings once every address is listened on.
    pub(crate) fn leftover(&self) -> (usize, Option<&SocketActivationError>) {
        match &self.sockets {
            Ok(sockets) => (sockets.len(), None),
            Err(e) => (0, Some(e)),
        }
    }

    /// Takes every socket, as a `systemd:` address does.
    fn take(&mut self) -> io::Result<Vec<ListenFd>> {
        let sockets = match &mut self.sockets {
            Ok(sockets) => std::mem::take(sockets),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
        };
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no socket received from systemd (LISTEN_FDS and LISTEN_PID do not pass any \
                 to this process)",
            ));
        }
        Ok(sockets)
    }
}

impl Listener {
    /// Listens on the first entry of `address` that works: one socket, or for TCP one per
    /// resolved address (all with the same connectable address), or for `systemd:` one per
    /// socket in `passed`.
    ///
    /// # Errors
    /// The address does not parse, or no entry could be listened on.
    pub(crate) fn bind(
        address: &str,
        passed: &mut PassedSockets,
    ) -> Result<Vec<Listener>, ListenError> {
        let error = |reasons| ListenError {
            address: address.to_owned(),
            reasons,
        };
        let entries = address::parse_list(address).map_err(|e| error(vec![e.to_string()]))?;
        let mut reasons = Vec::new();
        for entry in &entries {
            let result = match ListenAddress::from_address(entry) {
                Ok(listen) => bind_one(&listen, passed).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(listener) => return Ok(listener),
                // With alternatives, each reason names the entry it is about.
                Err(reason) if entries.len() > 1 => reasons.push(format!("{entry}: {reason}")),
                Err(reason) => reasons.push(reason),
            }
        }
        Err(error(reasons))
    }

    /// A listener on a socket systemd passed, with the address its socket is bound to.
    fn passed(socket: ListenFd) -> io::Result<Listener> {
        let bound = rustix::net::getsockname(&socket.fd)?;
        let (address, transport) = match socket.family {
            socket_activation::Family::Unix => {
                let unix = SocketAddrUnix::try_from(bound)
                    .map_err(|_| io::Error::other("getsockname returned a non-unix address"))?;
                let address = if let Some(path) = unix.path_bytes() {
                    format!("unix:path={}", address::escape(path))
                } else if let Some(name) = unix.abstract_name() {
                    format!("unix:abstract={}", address::escape(name))
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("passed socket {:?} has no name", socket.name),
                    ));
                };
                (address, Transport::Unix)
            }
            socket_activation::Family::Ipv4 | socket_activation::Family::Ipv6 => {
                let ip = SocketAddr::try_from(bound)
                    .map_err(|_| io::Error::other("getsockname returned a non-IP address"))?;
                let family = if ip.is_ipv4() {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                // dbus-daemon's order of keys for passed TCP sockets.
                let address = format!(
                    "tcp:family={},port={},host={}",
                    family.name(),
                    ip.port(),
                    address::escape(ip.ip().to_string().as_bytes())
                );
                (address, Transport::Tcp { nonce: None })
            }
        };
        Ok(Listener {
            fd: socket.fd,
            address,
            transport,
            unlink_on_drop: None,
        })
    }

    /// The connectable address, without the GUID.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The transport of the connections it accepts.
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Whether a connection waits to be accepted, asked with a poll that does not wait.
    ///
    /// An `accept` that finds no connection costs as much as one that finds one (the kernel
    /// makes the new socket first), so a caller that expects none asks this instead. A failed
    /// poll says yes, leaving it to `accept` to report what is wrong.
    pub(crate) fn has_pending(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(0))
    }
}

impl NonceFile {
    /// Makes a nonce and writes it to `nonce` in a new private directory in `parent`.
    ///
    /// # Errors
    /// The random source failed, or the directory or file could not be created.
    pub(crate) fn create(parent: &Path) -> io::Result<NonceFile> {
        let mut nonce = [0u8; NONCE_LEN];
        ids::fill_random(&mut nonce)?;
        let mut last_error = None;
        for _ in 0..RANDOM_NAME_ATTEMPTS {
            let mut name = OsStr::new("dbus_nonce-").to_owned();
            name.push(random_name()?);
            let dir = parent.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let path = dir.join("nonce");
            let file = NonceFile { nonce, dir, path };
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file.path)
                .and_then(|mut f| f.write_all(&file.nonce))?;
            return Ok(file);
        }
        Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
    }

    /// The nonce.
    pub(crate) fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Where it is published.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NonceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unlink_on_drop {
            // Only our own socket: a later bus may have replaced it already.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// How many random names to try in a `dir`/`tmpdir` before giving up.
const RANDOM_NAME_ATTEMPTS: usize = 16;
/// The listen backlog; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

fn bind_one(listen: &ListenAddress, passed: &mut PassedSockets) -> io::Result<Vec<Listener>> {
    let unix = match listen {
        ListenAddress::Systemd => {
            return passed.take()?.into_iter().map(Listener::passed).collect();
        }
        ListenAddress::Path(path) => bind_path(path, true)?,
        ListenAddress::Abstract(name) => {
            let fd = new_socket()?;
            rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
            rustix::net::listen(&fd, BACKLOG)?;
            Listener {
                fd,
                address: format!("unix:abstract={}", address::escape(name)),
                transport: Transport::Unix,
                unlink_on_drop: None,
            }
        }
        // dbus-daemon 1.14 creates a path socket for tmpdir too, not an abstract one.
        ListenAddress::Dir(dir) | ListenAddress::Tmpdir(dir) => bind_in_dir(dir)?,
        ListenAddress::Runtime => {
            let dir = std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "XDG_RUNTIME_DIR is not set")
                })?;
            bind_path(&Path::new(&dir).join("bus"), true)?
        }
        ListenAddress::Tcp(tcp) => return bind_tcp(tcp),
    };
    Ok(vec![unix])
}

/// Listens on every address `tcp` resolves to, all on one port.
fn bind_tcp(tcp: &TcpAddress) -> io::Result<Vec<Listener>> {
    let targets = resolve(tcp)?;
    let nonce = if tcp.nonce {
        let parent = std::env::var_os("TMPDIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        Some(Arc::new(NonceFile::create(&parent)?))
    } else {
        None
    };
    let mut port = tcp.port;
    let mut sockets: Vec<(OwnedFd, Family)> = Vec::new();
    for ip in targets {
        let family = if ip.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        match bind_tcp_socket(SocketAddr::new(ip, port)) {
            Ok((fd, bound)) => {
                port = bound;
                sockets.push((fd, family));
            }
            // An address this host does not have (such as ::1 without IPv6): skip it.
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && !sockets.is_empty() => {}
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
            Err(e) => return Err(e),
        }
    }
    let Some(&(_, family)) = sockets.first() else {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no address to listen on",
        ));
    };
    let mut address = format!(
        "{}:host={},port={port},family={}",
        if tcp.nonce { "nonce-tcp" } else { "tcp" },
        address::escape(tcp.host.as_bytes()),
        family.name()
    );
    if let Some(nonce) = &nonce {
        address.push_str(",noncefile=");
        address.push_str(&address::escape(nonce.path().as_os_str().as_bytes()));
    }
    Ok(sockets
        .into_iter()
        .map(|(fd, _)| Listener {
            fd,
            address: address.clone(),
            transport: Transport::Tcp {
                nonce: nonce.clone(),
            },
            unlink_on_drop: None,
        })
        .collect())
}

/// The IP addresses to listen on, of the requested family, without repeats.
fn resolve(tcp: &TcpAddress) -> io::Result<Vec<IpAddr>> {
    let name = tcp.bind.as_deref().unwrap_or(&tcp.host);
    let wanted = |ip: &IpAddr| match tcp.family {
        Some(Family::Ipv4) => ip.is_ipv4(),
        Some(Family::Ipv6) => ip.is_ipv6(),
        None => true,
    };
    let candidates: Vec<IpAddr> = if name == "*" {
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]
    } else if let Ok(ip) = name.parse::<IpAddr>() {
        vec![ip]
    } else {
        (name, 0)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {name:?}: {e}")))?
            .map(|a| a.ip())
            .collect()
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in candidates.into_iter().filter(wanted) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{name:?} has no address of the requested family"),
        ));
    }
    Ok(ips)
}

/// One listening TCP socket; returns it and the port it got.
fn bind_tcp_socket(addr: SocketAddr) -> io::Result<(OwnedFd, u16)> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    if addr.is_ipv6() {
        // `::` must not also take the IPv4 port that `0.0.0.0` listens on.
        rustix::net::sockopt::set_ipv6_v6only(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, BACKLOG)?;
    let bound = SocketAddr::try_from(rustix::net::getsockname(&fd)?)
        .map_err(|_| io::Error::other("getsockname returned a non-IP address"))?;
    Ok((fd, bound.port()))
}

fn bind_in_dir(dir: &Path) -> io::Result<Listener> {
    for _ in 0..RANDOM_NAME_ATTEMPTS {
        let path = dir.join(random_socket_name()?);
        match bind_path(&path, false) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            other => return other,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free socket name found in {}", dir.display()),
    ))
}

/// Binds a path socket. With `replace_stale`, an existing socket nobody listens on is removed.
fn bind_path(path: &Path, replace_stale: bool) -> io::Result<Listener> {
    let addr = SocketAddrUnix::new(path)?;
    let fd = new_socket()?;
    match rustix::net::bind(&fd, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::ADDRINUSE) if replace_stale && is_stale_socket(path, &addr) => {
            std::fs::remove_file(path)?;
            rustix::net::bind(&fd, &addr)?;
        }
        Err(rustix::io::Errno::ADDRINUSE) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use", path.display()),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let listener = Listener {
        fd,
        address: format!("unix:path={}", address::escape(path.as_os_str().as_bytes())),
        transport: Transport::Unix,
        unlink_on_drop: Some(path.to_owned()),
    };
    // Anyone may connect; authentication and the policy decide who stays.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
    rustix::net::listen(&listener.fd, BACKLOG)?;
    Ok(listener)
}

/// Whether `path` is a socket file on which connecting is refused.
fn is_stale_socket(path: &Path, addr: &SocketAddrUnix) -> bool {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return false;
    }
    let Ok(probe) = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    ) else {
        return false;
    };
    rustix::net::connect(&probe, addr) == Err(rustix::io::Errno::CONNREFUSED)
}

fn new_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

/// `dbus-` and ten random alphanumerics, like dbus-daemon's names.
fn random_socket_name() -> io::Result<std::ffi::OsString> {
    let mut name = OsStr::new("dbus-").to_owned();
    name.push(random_name()?);
    Ok(name)
}

/// Ten random alphanumerics.
fn random_name() -> io::Result<std::ffi::OsString> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = [0u8; 10];
    ids::fill_random(&mut random)?;
    let name: Vec<u8> = random
        .iter()
        .map(|&r| ALPHABET[usize::from(r) % ALPHABET.len()])
        .collect();
    Ok(OsStr::from_bytes(&name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use std::os::unix::net::UnixStream;

    fn bind1(address: &str) -> Listener {
        let mut listeners = Listener::bind(address, &mut PassedSockets::none()).unwrap();
        assert_eq!(listeners.len(), 1, "{address}");
        listeners.remove(0)
    }

    #[test]
    fn path_socket_is_created_and_removed() {
        let dir = TempDir::new("listener-path");
        let path = dir.0.join("bus socket");
        let address = format!("unix:path={}", address::escape(path.as_os_str().as_bytes()));
        let listener = bind1(&address);
        assert_eq!(listener.address(), address);
        assert!(listener.address().contains("bus%20socket"));
        UnixStream::connect(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777, "every user may connect");
        // A live socket is not taken over.
        let err = Listener::bind(&address, &mut PassedSockets::none()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn pending_connections_are_seen_without_accepting() {
        let dir = TempDir::new("listener-pending");
        let path = dir.path().join("bus");
        let listener = bind1(&format!("unix:path={}", path.display()));
        assert!(!listener.has_pending());
        let _first = UnixStream::connect(&path).unwrap();
        let _second = UnixStream::connect(&path).unwrap();
        assert!(listener.has_pending());
        let accept = || rustix::net::accept(&listener.fd);
        accept().unwrap();
        assert!(listener.has_pending(), "one left");
        accept().unwrap();
        assert!(!listener.has_pending());
        assert_eq!(accept().unwrap_err(), rustix::io::Errno::AGAIN);
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new("listener-stale");
        let path = dir.0.join("bus");
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale); // leaves the file behind, nobody listening
        let listener = bind1(&format!("unix:path={}", path.display()));
        UnixStream::connect(&path).unwrap();
        drop(listener);
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = TempDir::new("listener-file");
        let path = dir.0.join("bus");
        std::fs::write(&path, "data").unwrap();
        assert!(
            Listener::bind(
                &format!("unix:path={}", path.display()),
                &mut PassedSockets::none()
            )
            .is_err()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn dir_and_tmpdir_get_random_path_sockets() {
        let dir = TempDir::new("listener-dir");
        for key in ["dir", "tmpdir"] {
            let listener = bind1(&format!("unix:{key}={}", dir.0.display()));
            let prefix = format!("unix:path={}/dbus-", dir.0.display());
            let address = listener.address();
            assert!(address.starts_with(&prefix), "{address}");
            let name = address.strip_prefix(&prefix).unwrap();
            assert_eq!(name.len(), 10);
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
            UnixStream::connect(dir.0.join(format!("dbus-{name}"))).unwrap();
        }
    }

    #[test]
    fn abstract_socket() {
        let name = format!("/tmp/tramd-test-{}", ids::random_guid().unwrap());
        let listener = bind1(&format!("unix:abstract={name}"));
        assert_eq!(listener.address(), format!("unix:abstract={name}"));
        let err = Listener::bind(&format!("unix:abstract={name}"), &mut PassedSockets::none())
            .unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");
    }

    #[test]
    fn alternatives_fall_through() {
        let dir = TempDir::new("listener-alt");
        let path = dir.0.join("bus");
        let address = format!(
            "unix:path=/nonexistent/dir/bus;unix:path={}",
            path.display()
        );
        let listener = bind1(&address);
        assert_eq!(listener.address(), format!("unix:path={}", path.display()));
    }

    #[test]
    fn errors_say_why() {
        let cases = [
            ("udp:host=localhost", "not supported"),
            (
                "tcp:host=127.0.0.1,family=ipv6",
                "no address of the requested family",
            ),
            ("unix:path=/nonexistent/dir/bus", "/nonexistent/dir/bus"),
            ("unix:bogus=1", "unknown key"),
            ("garbage", "lacks a ':'"),
        ];
        for (address, needle) in cases {
            let err = Listener::bind(address, &mut PassedSockets::none())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{address}: {err}");
        }
    }

    #[test]
    fn tcp_on_loopback() {
        let listener = bind1("tcp:host=127.0.0.1,port=0");
        let address = listener.address().to_owned();
        let port: u16 = address
            .strip_prefix("tcp:host=127.0.0.1,port=")
            .and_then(|rest| rest.strip_suffix(",family=ipv4"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{address}"));
        assert_ne!(port, 0);
        assert!(matches!(
            listener.transport(),
            Transport::Tcp { nonce: None }
        ));
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // bind= chooses the interface; host= is what clients are told.
        let bound = bind1("tcp:bind=127.0.0.1,port=0");
        assert!(
            bound.address().starts_with("tcp:host=localhost,port="),
            "{}",
            bound.address()
        );
        // An explicit port is kept.
        drop(listener);
        let again = bind1(&format!("tcp:host=127.0.0.1,port={port}"));
        assert_eq!(again.address(), address);
    }

    #[test]
    fn nonce_tcp_publishes_its_nonce() {
        let dir = TempDir::new("listener-nonce");
        let nonce = NonceFile::create(&dir.0).unwrap();
        let path = nonce.path().to_owned();
        assert_eq!(std::fs::read(&path).unwrap(), nonce.nonce());
        let meta = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert!(
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dbus_nonce-")
        );
        drop(nonce);
        assert!(!path.exists() && !path.parent().unwrap().exists());

        let listener = bind1("nonce-tcp:host=127.0.0.1");
        let Transport::Tcp { nonce: Some(nonce) } = listener.transport() else {
            panic!("no nonce");
        };
        let file = nonce.path().to_owned();
        let expected = format!(
            ",family=ipv4,noncefile={}",
            address::escape(file.as_os_str().as_bytes())
        );
        assert!(
            listener
                .address()
                .starts_with("nonce-tcp:host=127.0.0.1,port=")
        );
        assert!(
            listener.address().ends_with(&expected),
            "{}",
            listener.address()
        );
        assert_eq!(std::fs::read(&file).unwrap().len(), NONCE_LEN);
        drop(listener);
        assert!(!file.exists());
    }

    #[test]
    fn passed_sockets() {
        let dir = TempDir::new("listener-passed");
        let path = dir.0.join("a b");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let name = format!("tramd-passed-{}", std::process::id());
        let abstract_addr = SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap();
        let abstract_socket = new_socket().unwrap();
        rustix::net::bind(&abstract_socket, &abstract_addr).unwrap();
        rustix::net::listen(&abstract_socket, 1).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let passed = |fd: OwnedFd, family| ListenFd {
            fd,
            name: "unknown".to_owned(),
            family,
        };
        let mut sockets = PassedSockets::new(Ok(vec![
            passed(unix.into(), socket_activation::Family::Unix),
            passed(abstract_socket, socket_activation::Family::Unix),
            passed(tcp.into(), socket_activation::Family::Ipv4),
        ]));
        let listeners = Listener::bind("systemd:", &mut sockets).unwrap();
        let addresses: Vec<&str> = listeners.iter().map(Listener::address).collect();
        assert_eq!(
            addresses,
            [
                format!("unix:path={}", address::escape(path.as_os_str().as_bytes())),
                format!("unix:abstract={name}"),
                format!("tcp:family=ipv4,port={port},host=127.0.0.1"),
            ]
        );
        assert!(matches!(
            listeners[2].transport(),
            Transport::Tcp { nonce: None }
        ));
        assert_eq!(sockets.leftover().0, 0);
        // The first systemd: address took them all; the socket file stays systemd's.
        let err = Listener::bind("systemd:", &mut sockets).unwrap_err();
        assert!(err.to_string().contains("no socket received"), "{err}");
        drop(listeners);
        assert!(path.exists());
        // Alternatives fall through when systemd passed nothing.
        let fallback = dir.0.join("fallback");
        let address = format!("systemd:;unix:path={}", fallback.display());
        let listeners = Listener::bind(&address, &mut PassedSockets::none()).unwrap();
        assert_eq!(listeners.len(), 1);
        assert!(listeners[0].address().ends_with("/fallback"));
    }
}
