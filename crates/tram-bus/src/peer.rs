//! Peers: one per authenticated connection.
//!
//! A peer owns its credentials (taken once, at connect time, by the I/O layer), its unique name,
//! and its transmit queue. Peers live in a slab; a [`PeerId`] carries the slot's generation, so an
//! id kept after its peer left never reaches the peer that reuses the slot.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tram_wire::Outgoing;

/// Names a peer: a slab index plus the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl PeerId {
    /// The slab index, handy as an epoll token in the I/O layer.
    pub fn index(self) -> u32 {
        self.index
    }

    /// The peer in slab slot `index`, generation 0, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(index: u32) -> PeerId {
        PeerId {
            index,
            generation: 0,
        }
    }
}

/// What the kernel told us about the process on the other end, at connect time.
#[derive(Debug, Default)]
pub struct Credentials {
    /// SO_PEERCRED uid.
    pub uid: u32,
    /// SO_PEERCRED gid (the primary group).
    pub gid: u32,
    /// SO_PEERCRED pid; `None` when the peer is in another pid namespace (pid 0).
    pub pid: Option<u32>,
    /// SO_PEERGROUPS: every group of the peer, primary included, sorted.
    pub groups: Vec<u32>,
    /// SO_PEERSEC: the security label, without a trailing nul.
    pub security_label: Option<Vec<u8>>,
    /// SO_PEERPIDFD, where the kernel has it (shared by the connections of one process).
    pub pidfd: Option<Arc<OwnedFd>>,
    /// The connection authenticated with ANONYMOUS: policy treats it as no user at all.
    pub anonymous: bool,
}

/// The most entries an empty transmit queue keeps room for.
const KEPT_CAPACITY: usize = 64;

/// A peer's transmit queue: messages by reference, oldest first.
///
/// The I/O layer writes from the front. `head_written` counts the bytes of the front message
/// already written (its fds, if any, went with the first of them). Every message is charged to
/// the user who caused it (`None`: the bus itself) until it is written, so the bus can keep one
/// user from taking a receiver's whole queue (see `docs/ACCOUNTING.md`).
#[derive(Debug, Default)]
pub struct TxQueue {
    messages: VecDeque<(Arc<Outgoing>, Option<u32>)>,
    bytes: usize,
    fds: usize,
    /// What is queued per user, for the few users a queue holds messages of.
    charges: Vec<Charge>,
    /// Bytes of the front message already written.
    pub head_written: usize,
}

/// Bytes and fds queued on behalf of one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    account: Option<u32>,
    /// Bytes of the user's queued messages.
    pub(crate) bytes: usize,
    /// Fds those messages carry.
    pub(crate) fds: usize,
}

impl TxQueue {
    /// Appends a message, charged to `account`.
    pub(crate) fn push(&mut self, msg: Arc<Outgoing>, account: Option<u32>) {
        let (n, fds) = (msg.len(), msg.fds().len());
        self.bytes += n;
        self.fds += fds;
        match self.charges.iter_mut().find(|c| c.account == account) {
            Some(c) => {
                c.bytes += n;
                c.fds += fds;
            }
            None => self.charges.push(Charge {
                account,
                bytes: n,
                fds,
            }),
        }
        self.messages.push_back((msg, account));
    }
    /// What is queued that is charged to `account`.
    pub(crate) fn charged(&self, account: Option<u32>) -> Charge {
        self.charges
            .iter()
            .find(|c| c.account == account)
            .copied()
            .unwrap_or_default()
    }
    /// Fds queued, the front message's included until it is written in full.
    pub fn fds(&self) -> usize {
        self.fds
    }
    /// Whether anything waits to be written.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.messages.len()
    }
    /// Bytes queued, counting the front message in full.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Outgoing>> {
        self.messages.iter().map(|(m, _)| m)
    }
    /// Records that `n` more bytes were written from the front; drops messages written in full.
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some((front, account)) = self.messages.front() else {
                return;
            };
            let len = front.len();
            let left = len - self.head_written;
            if n < left {
                self.head_written += n;
                return;
            }
            n -= left;
            let fds = front.fds().len();
            self.bytes -= len;
            self.fds -= fds;
            let account = *account;
            if let Some(i) = self.charges.iter().position(|c| c.account == account) {
                let c = &mut self.charges[i];
                c.bytes = c.bytes.saturating_sub(len);
                c.fds = c.fds.saturating_sub(fds);
                if c.bytes == 0 {
                    self.charges.swap_remove(i);
                }
            }
            self.head_written = 0;
            self.messages.pop_front();
        }
    }
    /// Frees the queue's memory when it is empty after a burst. A queue of up to
    /// 64 entries (about 1.5 KiB) is kept, so that a peer pipelining calls does
    /// not reallocate its queue on every turn.
    pub fn shrink(&mut self) {
        if self.messages.is_empty() && self.messages.capacity() > KEPT_CAPACITY {
            self.messages = VecDeque::new();
            self.charges = Vec::new();
        }
    }
}
