//! Signals as events: SIGTERM, SIGINT, SIGHUP and SIGCHLD arrive through a signalfd in the epoll
//! set.
//!
//! [`Signals::new`] blocks those signals for the process and opens a non-blocking,
//! close-on-exec signalfd for them, so the event loop sees a signal as a readable fd, with no
//! asynchronous handler. SIGCHLD, whose default action is to be discarded, is still queued while
//! blocked, so the exits of started services are seen. SIGPIPE needs nothing here: the Rust runtime ignores it before `main`,
//! and every send uses `MSG_NOSIGNAL` anyway.
//!
//! A blocked signal mask is inherited across `fork` and `exec`: whatever starts child processes
//! (service activation) must restore the default mask in the child.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The signals the daemon handles.
pub(crate) const HANDLED: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];

/// A signalfd for [`HANDLED`].
#[derive(Debug)]
pub(crate) struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks [`HANDLED`] and opens the signalfd.
    ///
    /// # Errors
    /// `sigprocmask` or `signalfd` failed.
    pub(crate) fn new() -> io::Result<Signals> {
        let mask = handled_mask()?;
        // SAFETY: `mask` is an initialized sigset_t; a null old-set pointer is allowed.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: -1 asks for a new fd; `mask` is an initialized sigset_t.
        let fd = unsafe { libc::signalfd(-1, &mask, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd just returned this new fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Signals { fd })
    }

    /// The next pending signal, or `None` when none is pending.
    ///
    /// # Errors
    /// Reading the signalfd failed.
    pub(crate) fn next(&self) -> io::Result<Option<libc::c_int>> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        // SAFETY: `info` is valid for writes of its size; signalfd writes whole structs.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                info.as_mut_ptr().cast(),
                size_of::<libc::signalfd_siginfo>(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(err),
            };
        }
        if n as usize != size_of::<libc::signalfd_siginfo>() {
            return Ok(None);
        }
        // SAFETY: the kernel wrote a whole struct (checked above); it is plain integers.
        let info = unsafe { info.assume_init() };
        Ok(libc::c_int::try_from(info.ssi_signo).ok())
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn handled_mask() -> io::Result<libc::sigset_t> {
    let mut mask = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initializes the set it is given.
    if unsafe { libc::sigemptyset(mask.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialized by sigemptyset above.
    let mut mask = unsafe { mask.assume_init() };
    for signal in HANDLED {
        // SAFETY: `mask` is an initialized sigset_t and `signal` a valid signal number.
        if unsafe { libc::sigaddset(&mut mask, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(mask)
}
