//! Peer credentials of a unix socket, taken once at accept time.
//!
//! [`peer_credentials`] asks the kernel for SO_PEERCRED (uid, gid, pid), SO_PEERGROUPS (every
//! group), SO_PEERSEC (the security label) and SO_PEERPIDFD (a pidfd). Only SO_PEERCRED is
//! required; the others are `None`/empty where the kernel or the security module does not
//! provide them. These are the credentials of the process that called `connect()`, which is
//! what EXTERNAL authentication and the bus's policy rely on.
//!
//! rustix wraps only SO_PEERCRED, and its `UCred` cannot represent the pid 0 the kernel
//! reports for a peer in another pid namespace, so every option is read with `getsockopt`
//! from libc here.
//!
//! Connections of one process share one pidfd. Where pidfds live on pidfs (Linux 6.9), a
//! pidfd's inode number names its process for good, so a new connection's pidfd is compared
//! with those already held and, when it names the same process, closed in favour of the one
//! held. A process with ten thousand connections thus costs the bus ten thousand and one
//! descriptors, not twenty thousand. On older kernels every connection keeps its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Weak};

use tram_bus::Credentials;

/// The credentials of the peer connected to `fd`.
///
/// # Errors
/// SO_PEERCRED failed (the socket is not a connected unix socket), or another option failed
/// in a way other than "not available".
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<Credentials> {
    let cred = peer_cred(fd)?;
    let mut groups = peer_groups(fd)?;
    groups.push(cred.gid);
    groups.sort_unstable();
    groups.dedup();
    Ok(Credentials {
        uid: cred.uid,
        gid: cred.gid,
        pid: u32::try_from(cred.pid).ok().filter(|&pid| pid != 0),
        groups,
        security_label: peer_security_label(fd)?,
        pidfd: peer_pidfd(fd)?.map(shared_pidfd),
        anonymous: false,
    })
}

fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = MaybeUninit::<libc::ucred>::uninit();
    let mut len = socklen(size_of::<libc::ucred>());
    // SAFETY: `cred` is valid for writes of `len` bytes, the size of `struct ucred`, which is
    // what SO_PEERCRED writes; `fd` is a valid descriptor for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            cred.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short struct",
        ));
    }
    // SAFETY: the kernel filled the whole struct (checked above); every bit pattern is a valid
    // `ucred` (three integers).
    Ok(unsafe { cred.assume_init() })
}

/// SO_PEERGROUPS; empty where the kernel lacks it (before Linux 4.13).
fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = socklen(groups.len() * size_of::<libc::gid_t>());
        // SAFETY: `groups` is valid for writes of `len` bytes; the kernel writes at most `len`
        // bytes of gid_t values, or reports the size it needs with ERANGE.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / size_of::<libc::gid_t>());
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) if (len as usize) > groups.len() * size_of::<libc::gid_t>() => {
                groups.resize((len as usize).div_ceil(size_of::<libc::gid_t>()), 0);
            }
            Some(libc::ENOPROTOOPT) => return Ok(Vec::new()),
            _ => return Err(err),
        }
    }
}

/// SO_PEERSEC without its trailing nul; `None` when no security module labels sockets.
fn peer_security_label(fd: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
    let mut label = vec![0u8; 256];
    loop {
        let mut len = socklen(label.len());
        // SAFETY: `label` is valid for writes of `len` bytes; the kernel writes at most `len`
        // bytes, or reports the size it needs with ERANGE.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERSEC,
                label.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            label.truncate(len as usize);
            while label.last() == Some(&0) {
                label.pop();
            }
            return Ok((!label.is_empty()).then_some(label));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) if (len as usize) > label.len() => label.resize(len as usize, 0),
            Some(libc::ENOPROTOOPT) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// SO_PEERPIDFD (Linux 6.5); `None` where the kernel lacks it or the peer is gone.
fn peer_pidfd(fd: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut pidfd: libc::c_int = -1;
    let mut len = socklen(size_of::<libc::c_int>());
    // SAFETY: `pidfd` is valid for writes of `len` bytes, the size of an int, which is what
    // SO_PEERPIDFD writes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&raw mut pidfd).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            // ENOPROTOOPT: older kernel. EINVAL: no peer pid (e.g. a socketpair end whose
            // creator is gone). ESRCH: the peer process already exited.
            Some(libc::ENOPROTOOPT | libc::EINVAL | libc::ESRCH) => Ok(None),
            _ => Err(err),
        };
    }
    if pidfd < 0 {
        return Ok(None);
    }
    // SAFETY: the kernel just created `pidfd` (with O_CLOEXEC) for us; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// The filesystem type of pidfs (`PID_FS_MAGIC`).
const PIDFS_MAGIC: u32 = 0x5049_4446;

thread_local! {
    /// The pidfds connections hold, by inode, on the thread that accepts connections (tramd
    /// has one).
    static PIDFDS: RefCell<PidfdCache> = RefCell::new(PidfdCache::default());
}

/// `pidfd`, or the equal one a connection of the same process already holds.
fn shared_pidfd(pidfd: OwnedFd) -> Arc<OwnedFd> {
    let Some(inode) = pidfs_inode(&pidfd) else {
        return Arc::new(pidfd);
    };
    PIDFDS.with(|cache| cache.borrow_mut().share(inode, pidfd))
}

/// The inode of a pidfd on pidfs, which names its process uniquely; `None` elsewhere.
fn pidfs_inode(pidfd: &OwnedFd) -> Option<u64> {
    let fs = rustix::fs::fstatfs(pidfd).ok()?;
    // `f_type` is a word of the platform's width; the magic numbers fit in 32 bits.
    if fs.f_type as u32 != PIDFS_MAGIC {
        return None;
    }
    let stat = rustix::fs::fstat(pidfd).ok()?;
    Some(stat.st_ino)
}

/// Pidfds by pidfs inode, held weakly: the connections own them.
#[derive(Debug, Default)]
struct PidfdCache {
    by_inode: HashMap<u64, Weak<OwnedFd>>,
    /// When `by_inode` next drops the entries of processes no connection holds any more.
    prune_at: usize,
}

impl PidfdCache {
    fn share(&mut self, inode: u64, pidfd: OwnedFd) -> Arc<OwnedFd> {
        if let Some(held) = self.by_inode.get(&inode).and_then(Weak::upgrade) {
            return held;
        }
        let pidfd = Arc::new(pidfd);
        self.by_inode.insert(inode, Arc::downgrade(&pidfd));
        if self.by_inode.len() >= self.prune_at {
            self.by_inode.retain(|_, fd| fd.strong_count() > 0);
            self.prune_at = (self.by_inode.len() * 2).max(64);
        }
        pidfd
    }
}

fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).unwrap_or(libc::socklen_t::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn connections_of_one_process_share_a_pidfd() {
        let (a, _a) = UnixStream::pair().unwrap();
        let (b, _b) = UnixStream::pair().unwrap();
        let first = peer_credentials(a.as_fd()).unwrap().pidfd;
        let second = peer_credentials(b.as_fd()).unwrap().pidfd;
        let (Some(first), Some(second)) = (first, second) else {
            return; // no SO_PEERPIDFD on this kernel
        };
        if pidfs_inode(&first).is_none() {
            assert!(
                !Arc::ptr_eq(&first, &second),
                "only pidfs pidfds are compared"
            );
            return;
        }
        assert!(Arc::ptr_eq(&first, &second));
        // Another process gets its own.
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let other = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty());
        let other = shared_pidfd(other.unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_ne!(pidfs_inode(&first), pidfs_inode(&other));
    }

    #[test]
    fn the_pidfd_cache_forgets_processes_no_connection_holds() {
        let mut cache = PidfdCache::default();
        let own = || {
            let me = rustix::process::getpid();
            rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).unwrap()
        };
        let held = cache.share(1, own());
        assert!(Arc::ptr_eq(&held, &cache.share(1, own())));
        for inode in 2..200 {
            drop(cache.share(inode, own()));
        }
        assert!(
            cache.by_inode.len() < 200,
            "{} entries",
            cache.by_inode.len()
        );
        assert!(Arc::ptr_eq(&held, &cache.share(1, own())));
    }

    #[test]
    fn credentials_of_a_socketpair_are_our_own() {
        let (a, _b) = UnixStream::pair().unwrap();
        let creds = peer_credentials(a.as_fd()).unwrap();
        assert_eq!(creds.uid, rustix::process::getuid().as_raw());
        assert_eq!(creds.gid, rustix::process::getgid().as_raw());
        assert_eq!(creds.pid, Some(std::process::id()));
        assert!(creds.groups.contains(&creds.gid));
        assert!(
            creds.groups.windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            creds.groups
        );
        if let Some(label) = &creds.security_label {
            assert!(!label.ends_with(&[0]));
        }
    }

    #[test]
    fn not_a_socket() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(peer_credentials(file.as_fd()).is_err());
    }
}
