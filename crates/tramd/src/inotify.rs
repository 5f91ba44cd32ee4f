//! Noticing changes in the service directories (`inotify(7)`), so new, changed and removed
//! `.service` files take effect without `ReloadConfig`, as with dbus-daemon.
//!
//! [`DirWatcher`] is one inotify descriptor for the event loop's epoll set. Each directory is
//! watched for files created, deleted, moved in or out, and written and closed. A directory
//! that does not exist yet (`~/.local/share/dbus-1/services` before anything is installed
//! there) is waited for: its nearest existing ancestor is watched for the next missing path
//! component, and the watches move down as the components appear; a watched directory that
//! is deleted or moved away is waited for the same way.
//!
//! [`DirWatcher::changed`] drains the pending events and answers whether the directories need
//! to be read again. It moves the watches first, so a rescan after it returns `true` sees
//! everything that happened before, and anything after raises new events.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

/// Watches a set of directories, existing or not.
#[derive(Debug)]
pub(crate) struct DirWatcher {
    fd: OwnedFd,
    dirs: Vec<PathBuf>,
    /// Watch descriptor → why it is watched (one inode can serve several purposes).
    watches: HashMap<i32, Vec<Interest>>,
}

/// Why a directory is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Interest {
    /// It is one of the directories: any change in it counts.
    Dir,
    /// It is the nearest existing ancestor of a missing directory: only the appearance of
    /// `next`, the following component of that directory's path, counts.
    Ancestor { next: OsString },
}

/// What every watch reports: changes to entries, and the watched directory going away.
const WATCH_FLAGS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR);

/// Events that mean a watched directory is gone and the watches must move.
const GONE: ReadFlags = ReadFlags::DELETE_SELF
    .union(ReadFlags::MOVE_SELF)
    .union(ReadFlags::UNMOUNT)
    .union(ReadFlags::IGNORED);

impl DirWatcher {
    /// A watcher with no directories; its descriptor is non-blocking and close-on-exec.
    ///
    /// # Errors
    ///
    /// `inotify_init1` failed (the per-user instance limit, for example).
    pub(crate) fn new() -> io::Result<DirWatcher> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(DirWatcher {
            fd,
            dirs: Vec::new(),
            watches: HashMap::new(),
        })
    }

    /// Watches `dirs` instead of the previous set (at start-up and after a reload). Returns the
    /// directories that cannot be watched, with the reason (such as the per-user watch limit,
    /// or a relative path); the others are watched regardless.
    pub(crate) fn set_dirs<P: AsRef<Path>>(
        &mut self,
        dirs: impl IntoIterator<Item = P>,
    ) -> Vec<(PathBuf, io::Error)> {
        self.dirs = dirs.into_iter().map(|d| d.as_ref().to_path_buf()).collect();
        self.rewatch()
    }

    /// Drains the pending events; `true` when a watched directory changed (or the kernel's
    /// queue overflowed), so the service files must be read again.
    ///
    /// # Errors
    ///
    /// Reading the inotify descriptor failed.
    pub(crate) fn changed(&mut self) -> io::Result<bool> {
        let mut changed = false;
        let mut rewatch = false;
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                changed = true;
                rewatch = true;
                continue;
            }
            // Events of watches removed since are stale.
            let Some(interests) = self.watches.get(&event.wd()) else {
                continue;
            };
            if event.events().intersects(GONE) {
                changed = true;
                rewatch = true;
                continue;
            }
            for interest in interests {
                match interest {
                    Interest::Dir => changed = true,
                    Interest::Ancestor { next } => {
                        let name = event.file_name().map(|n| n.to_bytes());
                        if name == Some(next.as_bytes()) {
                            changed = true;
                            rewatch = true;
                        }
                    }
                }
            }
        }
        if rewatch {
            // Problems were reported by `set_dirs`; a directory that cannot be watched now is
            // read on the next change elsewhere or the next reload.
            let _ = self.rewatch();
        }
        Ok(changed)
    }

    /// Puts a watch on each directory, or on its nearest existing ancestor, and drops the
    /// watches no longer needed.
    fn rewatch(&mut self) -> Vec<(PathBuf, io::Error)> {
        let mut failures = Vec::new();
        let mut watches: HashMap<i32, Vec<Interest>> = HashMap::new();
        for dir in &self.dirs {
            match watch_nearest(&self.fd, dir) {
                Ok((wd, interest)) => {
                    let list = watches.entry(wd).or_default();
                    if !list.contains(&interest) {
                        list.push(interest);
                    }
                }
                Err(e) => failures.push((dir.clone(), e)),
            }
        }
        for wd in self.watches.keys() {
            if !watches.contains_key(wd) {
                // Already gone when the directory was deleted; nothing to do then.
                let _ = inotify::remove_watch(&self.fd, *wd);
            }
        }
        self.watches = watches;
        failures
    }
}

impl AsFd for DirWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Watches `dir`, or when it is missing its nearest existing ancestor.
fn watch_nearest(fd: &OwnedFd, dir: &Path) -> io::Result<(i32, Interest)> {
    if !dir.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path",
        ));
    }
    let mut path = dir;
    let mut interest = Interest::Dir;
    loop {
        match inotify::add_watch(fd, path, WATCH_FLAGS) {
            Ok(wd) => return Ok((wd, interest)),
            Err(Errno::NOENT | Errno::NOTDIR) => {
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    return Err(Errno::NOENT.into());
                };
                interest = Interest::Ancestor {
                    next: name.to_owned(),
                };
                path = parent;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::test_util::TempDir;

    // inotify queues an event before the system call that causes it returns, so each step can
    // be checked right after it without waiting.

    #[test]
    fn changes_in_a_directory() {
        let tmp = TempDir::new("inotify-dir");
        let dir = tmp.0.join("services");
        fs::create_dir(&dir).unwrap();
        let mut w = DirWatcher::new().unwrap();
        assert!(w.set_dirs([&dir]).is_empty());
        assert!(!w.changed().unwrap(), "nothing happened yet");

        let file = dir.join("a.b.service");
        type Step<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let steps: Vec<Step<'_>> = vec![
            ("create", Box::new(|| fs::write(&file, "x").unwrap())),
            ("rewrite", Box::new(|| fs::write(&file, "y").unwrap())),
            (
                "move out",
                Box::new(|| fs::rename(&file, tmp.0.join("away")).unwrap()),
            ),
            (
                "move in",
                Box::new(|| fs::rename(tmp.0.join("away"), &file).unwrap()),
            ),
            ("delete", Box::new(|| fs::remove_file(&file).unwrap())),
        ];
        for (what, step) in steps {
            step();
            assert!(w.changed().unwrap(), "{what}");
            assert!(!w.changed().unwrap(), "{what}: drained");
        }
        // Changes next to the directory do not count.
        fs::write(tmp.0.join("elsewhere"), "x").unwrap();
        assert!(!w.changed().unwrap());
    }

    #[test]
    fn directories_that_appear_later() {
        let tmp = TempDir::new("inotify-later");
        let dir = tmp.0.join("a/b/services");
        let mut w = DirWatcher::new().unwrap();
        assert!(w.set_dirs([&dir]).is_empty());

        fs::write(tmp.0.join("unrelated"), "x").unwrap();
        fs::create_dir(tmp.0.join("other")).unwrap();
        assert!(!w.changed().unwrap(), "siblings do not count");
        fs::create_dir(tmp.0.join("a")).unwrap();
        assert!(w.changed().unwrap(), "a");
        fs::create_dir(tmp.0.join("a/b")).unwrap();
        assert!(w.changed().unwrap(), "a/b");
        fs::create_dir(&dir).unwrap();
        assert!(w.changed().unwrap(), "a/b/services");
        fs::write(dir.join("x.service"), "x").unwrap();
        assert!(w.changed().unwrap(), "file in the new directory");
    }

    #[test]
    fn a_whole_tree_at_once() {
        let tmp = TempDir::new("inotify-tree");
        let dir = tmp.0.join("a/b/services");
        let mut w = DirWatcher::new().unwrap();
        w.set_dirs([&dir]);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("x.service"), "x").unwrap();
        // One change reported; the caller's rescan finds the file. The watch is in place for
        // what comes next.
        assert!(w.changed().unwrap());
        fs::write(dir.join("y.service"), "y").unwrap();
        assert!(w.changed().unwrap());
    }

    #[test]
    fn deleted_and_recreated() {
        let tmp = TempDir::new("inotify-deleted");
        let dir = tmp.0.join("services");
        fs::create_dir(&dir).unwrap();
        let mut w = DirWatcher::new().unwrap();
        w.set_dirs([&dir]);
        fs::remove_dir(&dir).unwrap();
        assert!(w.changed().unwrap(), "deleted");
        fs::create_dir(&dir).unwrap();
        assert!(w.changed().unwrap(), "recreated");
        fs::write(dir.join("x.service"), "x").unwrap();
        assert!(w.changed().unwrap(), "file in the recreated directory");

        fs::rename(&dir, tmp.0.join("moved")).unwrap();
        assert!(w.changed().unwrap(), "moved away");
        fs::write(tmp.0.join("moved/y.service"), "y").unwrap();
        assert!(
            !w.changed().unwrap(),
            "the moved directory is no longer watched"
        );
    }

    #[test]
    fn replacing_the_set() {
        let tmp = TempDir::new("inotify-replace");
        let (one, two) = (tmp.0.join("one"), tmp.0.join("two"));
        fs::create_dir(&one).unwrap();
        fs::create_dir(&two).unwrap();
        let mut w = DirWatcher::new().unwrap();
        w.set_dirs([&one, &two, &one]);
        fs::write(two.join("x"), "x").unwrap();
        assert!(w.changed().unwrap());
        w.set_dirs([&one]);
        fs::write(two.join("y"), "y").unwrap();
        assert!(!w.changed().unwrap(), "two is no longer watched");
        fs::write(one.join("y"), "y").unwrap();
        assert!(w.changed().unwrap());
    }

    #[test]
    fn a_directory_that_is_an_ancestor_too() {
        let tmp = TempDir::new("inotify-both");
        let missing = tmp.0.join("sub/services");
        let mut w = DirWatcher::new().unwrap();
        assert!(w.set_dirs([&tmp.0, &missing]).is_empty());
        fs::write(tmp.0.join("x.service"), "x").unwrap();
        assert!(
            w.changed().unwrap(),
            "a change in the watched directory itself"
        );
        fs::create_dir(tmp.0.join("sub")).unwrap();
        assert!(w.changed().unwrap());
        fs::write(tmp.0.join("y.service"), "y").unwrap();
        assert!(w.changed().unwrap(), "still watched as a directory");
    }

    #[test]
    fn unwatchable() {
        let mut w = DirWatcher::new().unwrap();
        let failures = w.set_dirs(["relative/services"]);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].1.kind(), io::ErrorKind::InvalidInput);
    }
}
