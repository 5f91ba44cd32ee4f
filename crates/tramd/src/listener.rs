//! Listening sockets for the addresses in the configuration.
//!
//! [`Listener::bind`] takes one configured address string, whose `;`-separated entries are
//! alternatives, and listens on the first entry that works (as dbus-daemon does). The socket is
//! non-blocking and close-on-exec. Each listener knows its connectable address (a `dir`,
//! `tmpdir` or `runtime` entry becomes a `path` one), escaped for printing.
//!
//! A socket file the daemon created is unlinked when its [`Listener`] is dropped, that is at
//! clean exit. An existing socket file at a `path` address is replaced only when nothing
//! answers on it (a stale socket from a crashed bus); a live one is "address in use".

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::address::{self, ListenAddress};
use crate::ids;

/// A bound, listening unix socket.
#[derive(Debug)]
pub(crate) struct Listener {
    fd: OwnedFd,
    address: String,
    unlink_on_drop: Option<PathBuf>,
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

impl Listener {
    /// Listens on the first entry of `address` that works.
    ///
    /// # Errors
    /// The address does not parse, or no entry could be listened on.
    pub(crate) fn bind(address: &str) -> Result<Listener, ListenError> {
        let error = |reasons| ListenError {
            address: address.to_owned(),
            reasons,
        };
        let entries = address::parse_list(address).map_err(|e| error(vec![e.to_string()]))?;
        let mut reasons = Vec::new();
        for entry in &entries {
            let result = match ListenAddress::from_address(entry) {
                Ok(listen) => bind_one(&listen).map_err(|e| e.to_string()),
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

    /// The connectable address, without the GUID.
    pub(crate) fn address(&self) -> &str {
        &self.address
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

fn bind_one(listen: &ListenAddress) -> io::Result<Listener> {
    match listen {
        ListenAddress::Path(path) => bind_path(path, true),
        ListenAddress::Abstract(name) => {
            let fd = new_socket()?;
            rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
            rustix::net::listen(&fd, BACKLOG)?;
            Ok(Listener {
                fd,
                address: format!("unix:abstract={}", address::escape(name)),
                unlink_on_drop: None,
            })
        }
        // dbus-daemon 1.14 creates a path socket for tmpdir too, not an abstract one.
        ListenAddress::Dir(dir) | ListenAddress::Tmpdir(dir) => bind_in_dir(dir),
        ListenAddress::Runtime => {
            let dir = std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "XDG_RUNTIME_DIR is not set")
                })?;
            bind_path(&Path::new(&dir).join("bus"), true)
        }
    }
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
        unlink_on_drop: Some(path.to_owned()),
    };
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
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = [0u8; 10];
    ids::fill_random(&mut random)?;
    let mut name = b"dbus-".to_vec();
    name.extend(
        random
            .iter()
            .map(|&r| ALPHABET[usize::from(r) % ALPHABET.len()]),
    );
    Ok(OsStr::from_bytes(&name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "tramd-listener-{tag}-{}-{}",
                std::process::id(),
                ids::random_guid().unwrap()
            ));
            std::fs::create_dir(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn path_socket_is_created_and_removed() {
        let dir = TempDir::new("path");
        let path = dir.0.join("bus socket");
        let address = format!("unix:path={}", address::escape(path.as_os_str().as_bytes()));
        let listener = Listener::bind(&address).unwrap();
        assert_eq!(listener.address(), address);
        assert!(listener.address().contains("bus%20socket"));
        UnixStream::connect(&path).unwrap();
        // A live socket is not taken over.
        let err = Listener::bind(&address).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new("stale");
        let path = dir.0.join("bus");
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale); // leaves the file behind, nobody listening
        let listener = Listener::bind(&format!("unix:path={}", path.display())).unwrap();
        UnixStream::connect(&path).unwrap();
        drop(listener);
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = TempDir::new("file");
        let path = dir.0.join("bus");
        std::fs::write(&path, "data").unwrap();
        assert!(Listener::bind(&format!("unix:path={}", path.display())).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn dir_and_tmpdir_get_random_path_sockets() {
        let dir = TempDir::new("dir");
        for key in ["dir", "tmpdir"] {
            let listener = Listener::bind(&format!("unix:{key}={}", dir.0.display())).unwrap();
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
        let listener = Listener::bind(&format!("unix:abstract={name}")).unwrap();
        assert_eq!(listener.address(), format!("unix:abstract={name}"));
        let err = Listener::bind(&format!("unix:abstract={name}")).unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");
    }

    #[test]
    fn alternatives_fall_through() {
        let dir = TempDir::new("alt");
        let path = dir.0.join("bus");
        let address = format!(
            "unix:path=/nonexistent/dir/bus;unix:path={}",
            path.display()
        );
        let listener = Listener::bind(&address).unwrap();
        assert_eq!(listener.address(), format!("unix:path={}", path.display()));
    }

    #[test]
    fn errors_say_why() {
        let cases = [
            ("tcp:host=localhost", "not supported"),
            ("unix:path=/nonexistent/dir/bus", "/nonexistent/dir/bus"),
            ("unix:bogus=1", "unknown key"),
            ("garbage", "lacks a ':'"),
        ];
        for (address, needle) in cases {
            let err = Listener::bind(address).unwrap_err().to_string();
            assert!(err.contains(needle), "{address}: {err}");
        }
    }
}
