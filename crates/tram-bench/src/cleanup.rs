//! Leaving nothing behind when the harness is interrupted.
//!
//! Buses die with the harness anyway (they get `PR_SET_PDEATHSIG`), but their private
//! directories and the journal socket stand-in are files. Everything that must go is registered
//! here while it exists; SIGINT, SIGTERM and SIGHUP are taken by one thread (blocked everywhere
//! else), which kills the registered process groups, removes the registered files and exits.
//! Directories left by a harness that was killed outright (SIGKILL) are swept on the next start.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Pid, Signal};

/// The prefix of every directory the harness makes under the temporary directory; the
/// harness's pid follows it.
pub(crate) const DIR_PREFIX: &str = "tram-bench-";

/// Something to undo on an interruption.
#[derive(Debug)]
pub(crate) enum Item {
    /// A process group to kill.
    Group(Pid),
    /// A single process to kill (a bus's grandchild).
    Process(Pid),
    /// A directory to remove with its contents.
    Dir(PathBuf),
    /// A socket file to remove, if it is still the one with this inode.
    File(PathBuf, u64),
}

/// Keeps an [`Item`] registered; dropping it unregisters the item (its owner has cleaned up).
#[derive(Debug)]
pub(crate) struct Registered(u64);

impl Registered {
    /// Registers `item` until the returned guard is dropped.
    pub(crate) fn new(item: Item) -> Registered {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        lock().push((id, item));
        Registered(id)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock().retain(|(id, _)| *id != self.0);
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and in every thread spawned after it, and
/// starts the thread that waits for them. Call first thing in `main`; children must call
/// [`unblock_signals`] before exec.
pub(crate) fn install() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-mask pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and `sig` is a valid place for the result.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 {
                eprintln!("tram-bench: interrupted, cleaning up");
                undo_all();
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// Unblocks the signals [`install`] blocked, for a child about to exec (the mask is inherited
/// across exec, and a bus must see SIGTERM). Async-signal-safe.
pub(crate) fn unblock_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-mask pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Removes directories that harnesses no longer running left in the temporary directory.
pub(crate) fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The pid in a harness directory name: `tram-bench-PID-…` or `tram-bench-callgrind-PID-…`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(DIR_PREFIX)?;
    let rest = rest.strip_prefix("callgrind-").unwrap_or(rest);
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

fn undo_all() {
    let items: Vec<(u64, Item)> = std::mem::take(&mut *lock());
    // Processes first, so nothing recreates what is removed after.
    for (_, item) in &items {
        match item {
            Item::Group(pid) => {
                let _ = rustix::process::kill_process_group(*pid, Signal::KILL);
            }
            Item::Process(pid) => {
                let _ = rustix::process::kill_process(*pid, Signal::KILL);
            }
            Item::Dir(_) | Item::File(..) => {}
        }
    }
    for (_, item) in &items {
        match item {
            Item::Dir(path) => {
                let _ = std::fs::remove_dir_all(path);
            }
            Item::File(path, inode) => remove_if_same(path, *inode),
            Item::Group(_) | Item::Process(_) => {}
        }
    }
}

/// Removes `path` if it is still the file with `inode` (someone may have replaced it).
pub(crate) fn remove_if_same(path: &std::path::Path, inode: u64) {
    let same = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m) == inode)
        .unwrap_or(false);
    if same {
        let _ = std::fs::remove_file(path);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Item)>> {
    static ITEMS: Mutex<Vec<(u64, Item)>> = Mutex::new(Vec::new());
    // A panic while holding the lock leaves a list that is still valid.
    ITEMS.lock().unwrap_or_else(|e| e.into_inner())
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use, and
    // sigaddset is given valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_owners() {
        let cases = [
            ("tram-bench-123-tramd-0", Some(123)),
            ("tram-bench-callgrind-77-busd", Some(77)),
            ("tram-bench-x-tramd", None),
            ("tram-bench-123", None),
            ("other-123-tramd", None),
        ];
        for (name, want) in cases {
            assert_eq!(owner_pid(name), want, "{name}");
        }
    }

    #[test]
    fn registration_lasts_as_long_as_the_guard() {
        let dir = PathBuf::from("/nonexistent/tram-bench-test");
        let count = || {
            lock()
                .iter()
                .filter(|(_, i)| matches!(i, Item::Dir(d) if *d == dir))
                .count()
        };
        let guard = Registered::new(Item::Dir(dir.clone()));
        assert_eq!(count(), 1);
        drop(guard);
        assert_eq!(count(), 0);
    }

    /// The blocked-signal mask of a child `grep` spawned by this thread, with or without
    /// [`unblock_signals`] before exec.
    fn child_blocked_mask(unblock: bool) -> u64 {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("grep");
        cmd.args(["SigBlk", "/proc/self/status"]);
        if unblock {
            // SAFETY: unblock_signals only makes async-signal-safe calls.
            unsafe {
                cmd.pre_exec(unblock_signals);
            }
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let hex = text.trim().strip_prefix("SigBlk:").unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap()
    }

    #[test]
    fn children_see_the_signals_again() {
        let set = signal_set();
        // SAFETY: as in `install`; this blocks them in the test's own thread only.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        let inherited = child_blocked_mask(false);
        let unblocked = child_blocked_mask(true);
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        let ours = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
            .iter()
            .fold(0u64, |m, &s| m | 1 << (s - 1));
        assert_eq!(inherited & ours, ours, "{inherited:x}");
        assert_eq!(unblocked & ours, 0, "{unblocked:x}");
    }

    #[test]
    fn only_the_same_file_is_removed() {
        let dir = std::env::temp_dir().join(format!("tram-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"x").unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        remove_if_same(&path, inode.wrapping_add(1));
        assert!(path.exists());
        remove_if_same(&path, inode);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
