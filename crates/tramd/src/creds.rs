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

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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
        pidfd: peer_pidfd(fd)?,
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

fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).unwrap_or(libc::socklen_t::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

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
