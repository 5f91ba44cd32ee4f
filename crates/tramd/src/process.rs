//! The daemon as a process: forking into the background, the pid file, changing user.
//!
//! * [`fork`] detaches as dbus-daemon does (`fork`, `setsid`, working directory `/`, umask 022
//!   unless `<keep_umask/>`), with one difference: the parent does not exit at once but waits
//!   on a pipe until the child says it is ready ([`Ready::notify`]: listening, pid file
//!   written, address and pid printed) and exits 0, or exits 1 when the child dies first. A
//!   caller of `tramd --fork` can therefore connect as soon as it returns.
//! * [`PidFile`] is created exclusively (an existing file means another bus may run: refused,
//!   as dbus-daemon refuses) and removed when dropped, at exit.
//! * [`change_user`] sets the supplementary groups (from `/etc/group`, read directly rather than
//!   through NSS), the group and the user, in that order, and checks the result.
//!
//! The `unsafe` blocks are the system calls rustix does not wrap for a whole process
//! (`fork`, `setgroups`, `setgid`, `setuid`) and `dup2`; each says why it is sound.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tram_config::UserEntry;

/// Which side of [`fork`] this is.
#[derive(Debug)]
pub(crate) enum Forked {
    /// The original process: exit with this status (the child is ready, or died).
    Parent(u8),
    /// The daemon: call [`Ready::notify`] once ready.
    Child(Ready),
}

/// The write end of the pipe the parent waits on.
#[derive(Debug)]
pub(crate) struct Ready(OwnedFd);

/// The byte that says "ready".
const READY: u8 = b'R';

/// Forks into the background; see the module documentation.
///
/// # Errors
/// The pipe or the fork failed (in the parent), or `setsid` failed (in the child).
pub(crate) fn fork(keep_umask: bool) -> io::Result<Forked> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the daemon is single-threaded when it forks (no thread has been started), so
    // the child may go on running ordinary Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        drop(write);
        let mut byte = [0u8; 1];
        let mut pipe = fs::File::from(read);
        let status = match pipe.read(&mut byte) {
            Ok(1) if byte[0] == READY => 0,
            _ => 1,
        };
        return Ok(Forked::Parent(status));
    }
    drop(read);
    rustix::process::setsid()?;
    rustix::process::chdir("/")?;
    if !keep_umask {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    }
    Ok(Forked::Child(Ready(write)))
}

impl Ready {
    /// Points standard input, output and error at `/dev/null` (the parent's are not the
    /// daemon's to keep) and tells the parent to exit successfully.
    ///
    /// # Errors
    /// `/dev/null` could not be opened or duplicated.
    pub(crate) fn notify(self) -> io::Result<()> {
        let null = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        for target in 0..=2 {
            // SAFETY: `null` is open; dup2 atomically replaces the standard descriptor, which
            // the process owns and nothing holds as an `OwnedFd`.
            if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut pipe = fs::File::from(self.0);
        pipe.write_all(&[READY])
    }
}

/// A pid file, removed when dropped.
#[derive(Debug)]
pub(crate) struct PidFile(PathBuf);

/// Why the pid file could not be written.
#[derive(Debug)]
pub(crate) enum PidFileError {
    /// It exists already.
    Exists(PathBuf),
    /// Creating or writing it failed.
    Io(PathBuf, io::Error),
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileError::Exists(p) => write!(
                f,
                "the pid file {} exists; if the message bus is not running, remove this file",
                p.display()
            ),
            PidFileError::Io(p, e) => write!(f, "cannot write the pid file {}: {e}", p.display()),
        }
    }
}

impl PidFile {
    /// Refuses to go on when `path` exists (checked before listening, as dbus-daemon does).
    ///
    /// # Errors
    /// [`PidFileError::Exists`].
    pub(crate) fn check_absent(path: &Path) -> Result<(), PidFileError> {
        if fs::symlink_metadata(path).is_ok() {
            return Err(PidFileError::Exists(path.to_owned()));
        }
        Ok(())
    }

    /// Writes `pid` and a newline to a new file at `path`.
    ///
    /// # Errors
    /// The file exists or cannot be written.
    pub(crate) fn create(path: &Path, pid: u32) -> Result<PidFile, PidFileError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => PidFileError::Exists(path.to_owned()),
                _ => PidFileError::Io(path.to_owned(), e),
            })?;
        let written = file.write_all(format!("{pid}\n").as_bytes());
        let pidfile = PidFile(path.to_owned());
        written.map_err(|e| PidFileError::Io(path.to_owned(), e))?;
        Ok(pidfile)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // After a change of user this may be refused; the next start reports the stale file.
        let _ = fs::remove_file(&self.0);
    }
}

/// Runs the process as `account` (called `name`) from now on.
///
/// # Errors
/// Not allowed to change (not root), or a call failed.
pub(crate) fn change_user(name: &str, account: UserEntry) -> io::Result<()> {
    let uid = rustix::process::getuid().as_raw();
    let euid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    if uid == account.uid && euid == account.uid && gid == account.gid {
        return Ok(());
    }
    let group_text = fs::read_to_string("/etc/group").unwrap_or_default();
    let groups: Vec<libc::gid_t> = supplementary_groups(&group_text, name, account.gid);
    // SAFETY: `groups` is a valid array of `groups.len()` gids; setgroups copies it.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call on the process's credentials; the process is single-threaded
    // and glibc applies it to every thread anyway.
    if unsafe { libc::setgid(account.gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as for setgid.
    if unsafe { libc::setuid(account.uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let now = (
        rustix::process::getuid().as_raw(),
        rustix::process::geteuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    if now != (account.uid, account.uid, account.gid) {
        return Err(io::Error::other("the change of user did not take effect"));
    }
    Ok(())
}

/// The groups of `user`: its primary group, then every group of `group(5)` text listing it as
/// a member.
pub(crate) fn supplementary_groups(group: &str, user: &str, primary: u32) -> Vec<u32> {
    let mut groups = vec![primary];
    for line in group.lines().filter(|l| !l.starts_with(['#', '+', '-'])) {
        let fields: Vec<&str> = line.split(':').collect();
        let (Some(gid), Some(members)) = (fields.get(2), fields.get(3)) else {
            continue;
        };
        let Ok(gid) = gid.trim().parse::<u32>() else {
            continue;
        };
        if members.trim().split(',').any(|m| m == user) && !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    groups
}

/// Takes ownership of an inherited descriptor, after checking it is open.
///
/// # Errors
/// The descriptor is not open.
pub(crate) fn claim_fd(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor's flags; any integer is acceptable.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and was handed to us on the command line for this
    // one use; nothing else in the process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_from_group_file() {
        let text = "root:x:0:\n\
                    wheel:x:10:alice,bob\n\
                    # comment:x:11:alice\n\
                    audio:x:29:bob\n\
                    video:x:44:carol,alice\n\
                    users:x:100:\n\
                    bad:x:nope:alice\n\
                    short:x\n";
        assert_eq!(supplementary_groups(text, "alice", 100), [100, 10, 44]);
        assert_eq!(supplementary_groups(text, "bob", 10), [10, 29]);
        assert_eq!(supplementary_groups(text, "dave", 5), [5]);
        assert_eq!(supplementary_groups("", "alice", 7), [7]);
    }

    #[test]
    fn pid_file_is_exclusive_and_removed() {
        let dir = std::env::temp_dir().join(format!(
            "tramd-pidfile-{}-{}",
            std::process::id(),
            crate::ids::random_guid().unwrap()
        ));
        fs::create_dir(&dir).unwrap();
        let path = dir.join("pid");
        PidFile::check_absent(&path).unwrap();
        let pidfile = PidFile::create(&path, 4242).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242\n");
        assert!(matches!(
            PidFile::check_absent(&path),
            Err(PidFileError::Exists(_))
        ));
        let second = PidFile::create(&path, 1).unwrap_err();
        assert!(second.to_string().contains("exists"), "{second}");
        drop(pidfile);
        assert!(!path.exists());
        let missing = PidFile::create(&dir.join("no/such/dir/pid"), 1).unwrap_err();
        assert!(matches!(missing, PidFileError::Io(..)), "{missing}");
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn claiming_a_closed_descriptor_fails() {
        assert!(claim_fd(987_654).is_err());
    }
}
