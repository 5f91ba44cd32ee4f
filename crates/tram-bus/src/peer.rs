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
    /// SO_PEERPIDFD, where the kernel has it.
    pub pidfd: Option<OwnedFd>,
    /// The connection authenticated with ANONYMOUS: policy treats it as no user at all.
    pub anonymous: bool,
}

/// A peer's transmit queue: messages by reference, oldest first.
///
/// The I/O layer writes from the front. `head_written` counts the bytes of the front message
/// already written (its fds, if any, went with the first of them).
#[derive(Debug, Default)]
pub struct TxQueue {
    messages: VecDeque<Arc<Outgoing>>,
    bytes: usize,
    /// Bytes of the front message already written.
    pub head_written: usize,
}

impl TxQueue {
    /// Appends a message.
    pub(crate) fn push(&mut self, msg: Arc<Outgoing>) {
        self.bytes += msg.len();
        self.messages.push_back(msg);
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
        self.messages.iter()
    }
    /// Records that `n` more bytes were written from the front; drops messages written in full.
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.messages.front() else {
                return;
            };
            let left = front.len() - self.head_written;
            if n < left {
                self.head_written += n;
                return;
            }
            n -= left;
            self.bytes -= front.len();
            self.head_written = 0;
            self.messages.pop_front();
        }
    }
    /// Frees the queue's memory when it is empty (after a burst).
    pub fn shrink(&mut self) {
        if self.messages.is_empty() && self.messages.capacity() > 16 {
            self.messages = VecDeque::new();
        }
    }
}
