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
//! Every connection pays for these system calls, so none is made that cannot change the
//! answer. Where no security module that labels sockets is active, SO_PEERSEC would fail with
//! ENOPROTOOPT on every connection; that is found out once (see [`labels_possible`]) and the
//! option is not asked for again. Groups and labels are read into buffers on the stack, and
//! only what the connection keeps is allocated.
//!
//! Connections of one process share one pidfd. Where pidfds live on pidfs (Linux 6.9), a
//! pidfd's inode number names its process for good, so a new connection's pidfd is compared
//! with the one held for its pid and, when it names the same process, closed in favour of the
//! one held. A process with ten thousand connections thus costs the bus ten thousand and one
//! descriptors, not twenty thousand. Pidfds are held by the pid SO_PEERCRED reported: one
//! process always reports the same pid (the number it has in the bus's pid namespace, for its
//! whole life), so a different pid is a different process, and only a pid held by a live
//! connection needs the inodes compared (`fstat`); the same pid can still be a new process
//! that got the pid of one that is gone, which the inodes tell apart. A peer whose pid is not
//! visible here (0) is held by inode. On older kernels every connection keeps its own pidfd.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::mem::{MaybeUninit, size_of, size_of_val};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock, Weak};

use tram_bus::Credentials;

/// Supplementary groups read without a heap buffer; more take a second `getsockopt`.
const GROUPS_ON_STACK: usize = 64;
/// Label bytes read without a heap buffer; a longer label takes a second `getsockopt`.
const LABEL_ON_STACK: usize = 256;

/// The credentials of the peer connected to `fd`.
///
/// # Errors
/// SO_PEERCRED failed (the socket is not a connected unix socket), or another option failed
/// in a way other than "not available".
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<Credentials> {
    let cred = peer_cred(fd)?;
    let pid = u32::try_from(cred.pid).ok().filter(|&pid| pid != 0);
    let groups = peer_groups(fd, cred.gid)?;
    let security_label = if labels_possible() {
        peer_security_label(fd)?
    } else {
        None
    };
    let pidfd = peer_pidfd(fd)?.map(|pidfd| shared_pidfd(pid, pidfd));
    Ok(Credentials {
        uid: cred.uid,
        gid: cred.gid,
        pid,
        groups,
        security_label,
        pidfd,
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

/// SO_PEERGROUPS and `primary`, sorted, without repeats; only `primary` where the kernel lacks
/// SO_PEERGROUPS (before Linux 4.13).
fn peer_groups(fd: BorrowedFd<'_>, primary: u32) -> io::Result<Vec<u32>> {
    let mut stack: [libc::gid_t; GROUPS_ON_STACK] = [0; GROUPS_ON_STACK];
    let mut heap = Vec::new();
    let read = variable_option(fd, libc::SO_PEERGROUPS, &mut stack, &mut heap)?;
    let supplementary = read.unwrap_or_default();
    let mut groups = Vec::with_capacity(supplementary.len() + 1);
    groups.extend_from_slice(supplementary);
    groups.push(primary);
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

/// SO_PEERSEC without its trailing nul; `None` when no security module labels the socket.
fn peer_security_label(fd: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
    let mut stack = [0u8; LABEL_ON_STACK];
    let mut heap = Vec::new();
    let Some(mut label) = variable_option(fd, libc::SO_PEERSEC, &mut stack, &mut heap)? else {
        return Ok(None);
    };
    while let [rest @ .., 0] = label {
        label = rest;
    }
    Ok((!label.is_empty()).then(|| label.to_vec()))
}

/// Whether SO_PEERSEC can return a label on this system, decided on first use.
///
/// The security modules that label sockets (SELinux, Smack, AppArmor) label processes too, and
/// where none is active `/proc/self/attr/current` fails with EINVAL. Only when that is so and
/// SO_PEERSEC on a new socket pair is not available either is the option never asked for: the
/// set of active modules is fixed at boot. Anything else (no `/proc`, a label, another error)
/// keeps asking on every connection.
fn labels_possible() -> bool {
    static POSSIBLE: OnceLock<bool> = OnceLock::new();
    *POSSIBLE.get_or_init(|| {
        let process_label = std::fs::read("/proc/self/attr/current");
        if !matches!(&process_label, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            return true;
        }
        match UnixStream::pair() {
            Ok((a, _b)) => !matches!(peer_security_label(a.as_fd()), Ok(None)),
            Err(_) => true,
        }
    })
}

/// A socket option of variable length, read into `stack`, or into `heap` (grown as the kernel
/// asks) when it is longer; `None` where the option is not available (ENOPROTOOPT).
fn variable_option<'a, T: Copy + Default>(
    fd: BorrowedFd<'_>,
    option: libc::c_int,
    stack: &'a mut [T],
    heap: &'a mut Vec<T>,
) -> io::Result<Option<&'a [T]>> {
    let mut needed = match getsockopt_into(fd, option, stack)? {
        OptionRead::Bytes(n) => return Ok(Some(written(stack, n))),
        OptionRead::Needs(n) => n,
        OptionRead::Unavailable => return Ok(None),
    };
    let n = loop {
        heap.resize(needed.div_ceil(size_of::<T>()), T::default());
        match getsockopt_into(fd, option, heap)? {
            OptionRead::Bytes(n) => break n,
            OptionRead::Needs(n) => needed = n,
            OptionRead::Unavailable => return Ok(None),
        }
    };
    Ok(Some(written(heap, n)))
}

/// What one `getsockopt` of a variable-length option gave.
enum OptionRead {
    /// This many bytes were written.
    Bytes(usize),
    /// The buffer is too small: the option needs this many bytes.
    Needs(usize),
    /// ENOPROTOOPT: the kernel or the security module does not provide it.
    Unavailable,
}

fn getsockopt_into<T>(
    fd: BorrowedFd<'_>,
    option: libc::c_int,
    buf: &mut [T],
) -> io::Result<OptionRead> {
    let capacity = size_of_val(buf);
    let mut len = socklen(capacity);
    // SAFETY: `buf` is valid for writes of `len` bytes (its size, or less); the kernel writes
    // at most `len` bytes, or reports the size it needs with ERANGE. `T` is a plain integer
    // type, valid for any bytes the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        return Ok(OptionRead::Bytes((len as usize).min(capacity)));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ERANGE) if len as usize > capacity => Ok(OptionRead::Needs(len as usize)),
        Some(libc::ENOPROTOOPT) => Ok(OptionRead::Unavailable),
        _ => Err(err),
    }
}

/// The whole elements among the first `bytes` bytes of `buf`.
fn written<T>(buf: &[T], bytes: usize) -> &[T] {
    buf.get(..bytes / size_of::<T>()).unwrap_or(buf)
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
    /// The pidfds connections hold, on the thread that accepts connections (tramd has one).
    static PIDFDS: RefCell<PidfdCache> = RefCell::new(PidfdCache::default());
}

/// `pidfd` of the peer whose SO_PEERCRED pid is `pid`, or the equal one a connection of the
/// same process already holds.
fn shared_pidfd(pid: Option<u32>, pidfd: OwnedFd) -> Arc<OwnedFd> {
    PIDFDS.with(|cache| cache.borrow_mut().share(pid, pidfd))
}

/// The pidfds connections hold, one per process, held weakly: the connections own them.
#[derive(Debug, Default)]
struct PidfdCache {
    /// Whether pidfds live on pidfs; asked of the first pidfd whose inode is needed (the
    /// filesystem of pidfds is the kernel's, the same for all of them).
    pidfs: Option<bool>,
    held: HashMap<Key, Held>,
    /// When `held` next drops the entries of processes no connection holds any more.
    prune_at: usize,
}

/// What a held pidfd is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// The pid SO_PEERCRED reported.
    Pid(u32),
    /// The pidfs inode, for a peer whose pid is not visible in the bus's pid namespace.
    Inode(u64),
}

#[derive(Debug)]
struct Held {
    pidfd: Weak<OwnedFd>,
    /// Its pidfs inode, once looked up.
    inode: Option<u64>,
}

impl PidfdCache {
    fn share(&mut self, pid: Option<u32>, pidfd: OwnedFd) -> Arc<OwnedFd> {
        let mut inode = None;
        let key = match pid {
            Some(pid) => Key::Pid(pid),
            None => match self.inode(&pidfd) {
                Some(found) => {
                    inode = Some(found);
                    Key::Inode(found)
                }
                None => return Arc::new(pidfd),
            },
        };
        let live = self
            .held
            .get(&key)
            .and_then(|held| Some((held.pidfd.upgrade()?, held.inode)));
        if let Some((shared, shared_inode)) = live {
            let shared_inode = shared_inode.or_else(|| self.inode(&shared));
            if inode.is_none() {
                inode = self.inode(&pidfd);
            }
            if shared_inode.is_some() && shared_inode == inode {
                if let Some(held) = self.held.get_mut(&key) {
                    held.inode = shared_inode;
                }
                return shared;
            }
            // Another process got the pid of one that is gone: the new one is held from now
            // on; the connections of the old one keep theirs.
        }
        let pidfd = Arc::new(pidfd);
        let held = Held {
            pidfd: Arc::downgrade(&pidfd),
            inode,
        };
        self.held.insert(key, held);
        if self.held.len() >= self.prune_at {
            self.held.retain(|_, held| held.pidfd.strong_count() > 0);
            self.prune_at = (self.held.len() * 2).max(64);
        }
        pidfd
    }

    /// The inode of a pidfd on pidfs, which names its process uniquely; `None` elsewhere.
    fn inode(&mut self, pidfd: &OwnedFd) -> Option<u64> {
        let pidfs = match self.pidfs {
            Some(pidfs) => pidfs,
            None => {
                let fs = rustix::fs::fstatfs(pidfd).ok()?;
                // `f_type` is a word of the platform's width; the magic numbers fit in 32 bits.
                let pidfs = fs.f_type as u32 == PIDFS_MAGIC;
                self.pidfs = Some(pidfs);
                pidfs
            }
        };
        if !pidfs {
            return None;
        }
        rustix::fs::fstat(pidfd).ok().map(|stat| stat.st_ino)
    }
}

fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).unwrap_or(libc::socklen_t::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The system's python, for a client with other groups.
    const PYTHON: &str = "/usr/bin/python3";

    fn own_pidfd() -> OwnedFd {
        let me = rustix::process::getpid();
        rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).unwrap()
    }

    /// A process other than this one, killed and reaped on drop.
    struct Child(std::process::Child);

    impl Child {
        fn spawn() -> Child {
            Child(
                std::process::Command::new("sleep")
                    .arg("10")
                    .spawn()
                    .unwrap(),
            )
        }

        fn pidfd(&self) -> OwnedFd {
            let pid = rustix::process::Pid::from_raw(self.0.id() as i32).unwrap();
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap()
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Whether pidfds live on pidfs here (they do from Linux 6.9).
    fn on_pidfs() -> bool {
        PidfdCache::default().inode(&own_pidfd()).is_some()
    }

    #[test]
    fn connections_of_one_process_share_a_pidfd() {
        let (a, _a) = UnixStream::pair().unwrap();
        let (b, _b) = UnixStream::pair().unwrap();
        let first = peer_credentials(a.as_fd()).unwrap().pidfd;
        let second = peer_credentials(b.as_fd()).unwrap().pidfd;
        let (Some(first), Some(second)) = (first, second) else {
            return; // no SO_PEERPIDFD on this kernel
        };
        if !on_pidfs() {
            assert!(
                !Arc::ptr_eq(&first, &second),
                "only pidfs pidfds are compared"
            );
            return;
        }
        assert!(Arc::ptr_eq(&first, &second));
        // Another process gets its own.
        let child = Child::spawn();
        let other = shared_pidfd(Some(child.0.id()), child.pidfd());
        assert!(!Arc::ptr_eq(&first, &other));
        let mut cache = PidfdCache::default();
        assert_ne!(cache.inode(&first), cache.inode(&other));
    }

    #[test]
    fn a_pid_seen_again_is_compared_by_inode() {
        let pidfs = on_pidfs();
        let child = Child::spawn();
        let mut cache = PidfdCache::default();
        let held = cache.share(Some(42), own_pidfd());
        // A first sight costs nothing but the pidfd.
        assert_eq!(cache.held[&Key::Pid(42)].inode, None);
        // The same process again: shared where inodes tell.
        let again = cache.share(Some(42), own_pidfd());
        assert_eq!(Arc::ptr_eq(&held, &again), pidfs);
        // A different process that reports the same pid (its predecessor's pid reused) gets
        // its own, and is the one held from then on.
        let other = cache.share(Some(42), child.pidfd());
        assert!(!Arc::ptr_eq(&held, &other));
        let other_again = cache.share(Some(42), child.pidfd());
        assert_eq!(Arc::ptr_eq(&other, &other_again), pidfs);
        // Another pid is another process, whatever its pidfd.
        let elsewhere = cache.share(Some(43), own_pidfd());
        assert!(!Arc::ptr_eq(&held, &elsewhere));
    }

    #[test]
    fn peers_without_a_visible_pid_share_by_inode() {
        let pidfs = on_pidfs();
        let child = Child::spawn();
        let mut cache = PidfdCache::default();
        let first = cache.share(None, own_pidfd());
        let second = cache.share(None, own_pidfd());
        assert_eq!(Arc::ptr_eq(&first, &second), pidfs);
        let other = cache.share(None, child.pidfd());
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn the_pidfd_cache_forgets_processes_no_connection_holds() {
        let mut cache = PidfdCache::default();
        let held = cache.share(Some(1), own_pidfd());
        for pid in 2..200 {
            drop(cache.share(Some(pid), own_pidfd()));
        }
        assert!(cache.held.len() < 200, "{} entries", cache.held.len());
        assert!(cache.held.contains_key(&Key::Pid(1)));
        if on_pidfs() {
            assert!(Arc::ptr_eq(&held, &cache.share(Some(1), own_pidfd())));
        }
        // A pid whose connections are all gone starts afresh, without comparing.
        drop(held);
        drop(cache.share(Some(1), own_pidfd()));
        assert_eq!(cache.held[&Key::Pid(1)].inode, None);
    }

    #[test]
    fn credentials_of_a_socketpair_are_our_own() {
        let (a, _b) = UnixStream::pair().unwrap();
        let creds = peer_credentials(a.as_fd()).unwrap();
        assert_eq!(creds.uid, rustix::process::getuid().as_raw());
        assert_eq!(creds.gid, rustix::process::getgid().as_raw());
        assert_eq!(creds.pid, Some(std::process::id()));
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        groups.push(creds.gid);
        groups.sort_unstable();
        groups.dedup();
        assert_eq!(creds.groups, groups);
        assert!(
            creds.groups.capacity() <= creds.groups.len() + 1,
            "no spare room kept"
        );
        if let Some(label) = &creds.security_label {
            assert!(!label.is_empty() && !label.ends_with(&[0]), "{label:?}");
        }
    }

    #[test]
    fn the_label_is_asked_for_wherever_one_could_exist() {
        let (a, _b) = UnixStream::pair().unwrap();
        let asked = peer_security_label(a.as_fd()).unwrap();
        if !labels_possible() {
            assert_eq!(asked, None);
        }
        assert_eq!(peer_credentials(a.as_fd()).unwrap().security_label, asked);
    }

    /// Reads `option` with a stack buffer of one element and of many: the same answer.
    fn read_both_ways<T: Copy + Default + PartialEq + std::fmt::Debug>(option: libc::c_int) {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_fd();
        let mut big = [T::default(); 1024];
        let mut heap = Vec::new();
        let whole = variable_option(fd, option, &mut big, &mut heap)
            .unwrap()
            .map(<[T]>::to_vec);
        assert!(heap.is_empty());
        let mut small = [T::default(); 1];
        let read = variable_option(fd, option, &mut small, &mut heap)
            .unwrap()
            .map(<[T]>::to_vec);
        assert_eq!(read, whole, "option {option}");
        if whole.as_ref().is_some_and(|w| w.len() > 1) {
            assert!(!heap.is_empty(), "option {option} took the heap buffer");
        }
    }

    #[test]
    fn options_longer_than_the_stack_buffer_are_read_whole() {
        read_both_ways::<libc::gid_t>(libc::SO_PEERGROUPS);
        read_both_ways::<u8>(libc::SO_PEERSEC);
    }

    #[test]
    fn more_groups_than_the_stack_buffer_holds() {
        // Setting another process's groups needs root; python3 connects with them.
        if !rustix::process::geteuid().is_root() || !Path::new(PYTHON).exists() {
            return;
        }
        let dir = crate::test_util::TempDir::new("creds-groups");
        let path = dir.path().join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let wanted: Vec<u32> = (1000..1000 + 3 * GROUPS_ON_STACK as u32).collect();
        let script = format!(
            "import os, socket, sys\n\
             os.setgroups(range({}, {}))\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.connect(sys.argv[1])\n\
             s.recv(1)\n",
            wanted[0],
            wanted[wanted.len() - 1] + 1,
        );
        let mut child = Child(
            std::process::Command::new(PYTHON)
                .args(["-c", &script])
                .arg(&path)
                .spawn()
                .unwrap(),
        );
        let (conn, _) = listener.accept().unwrap();
        let creds = peer_credentials(conn.as_fd()).unwrap();
        let mut expected = wanted.clone();
        expected.push(creds.gid);
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(creds.groups, expected);
        drop(conn);
        assert!(child.0.wait().unwrap().success());
    }

    #[test]
    fn not_a_socket() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(peer_credentials(file.as_fd()).is_err());
    }
}
