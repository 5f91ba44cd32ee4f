//! File descriptors to hand to parsers along with messages that declare UNIX_FDS.
//!
//! Both tram and zbus compare UNIX_FDS with the descriptors that came with a message, so a
//! target that wants to get past that check needs real ones. They all refer to `/dev/null`.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

/// The most descriptors a fuzzed message gets; messages declaring more are refused by both
/// parsers for lack of descriptors.
pub const MAX_FDS: u32 = 4;

/// [`MAX_FDS`] descriptors that live as long as the process.
pub fn borrowed() -> [BorrowedFd<'static>; MAX_FDS as usize] {
    static POOL: OnceLock<[OwnedFd; MAX_FDS as usize]> = OnceLock::new();
    let pool = POOL.get_or_init(|| std::array::from_fn(|_| null()));
    std::array::from_fn(|i| pool[i].as_fd())
}

/// `n` fresh descriptors (at most [`MAX_FDS`]), for a parser that takes ownership of them.
pub fn owned(n: u32) -> Vec<OwnedFd> {
    assert!(n <= MAX_FDS, "asked for {n} fds");
    borrowed()
        .iter()
        .take(n as usize)
        .map(|fd| fd.try_clone_to_owned().expect("dup of /dev/null"))
        .collect()
}

fn null() -> OwnedFd {
    File::open("/dev/null").expect("open /dev/null").into()
}
