//! Well-known names: who owns each, and who waits in its queue.
//!
//! A name has an ordered queue of owners; the front is the primary owner. The registry applies
//! the rules of the specification's `RequestName` and `ReleaseName` and reports what changed as
//! an [`OwnerChange`] fact; the bus turns facts into NameOwnerChanged, NameLost and NameAcquired
//! in the order dbus-daemon sends them. Nothing here knows about messages.
//!
//! Unique names (`:1.42`) are not kept here: they belong to peers (see `bus.rs`).

use std::collections::{HashMap, VecDeque};

use crate::PeerId;

/// `RequestName` flags.
pub(crate) const ALLOW_REPLACEMENT: u32 = 0x1;
pub(crate) const REPLACE_EXISTING: u32 = 0x2;
pub(crate) const DO_NOT_QUEUE: u32 = 0x4;

/// Replies of `RequestName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestReply {
    PrimaryOwner = 1,
    InQueue = 2,
    Exists = 3,
    AlreadyOwner = 4,
}

/// Replies of `ReleaseName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReleaseReply {
    Released = 1,
    NonExistent = 2,
    NotOwner = 3,
}

/// The primary owner of `name` changed from `old` to `new` (either may be none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerChange {
    pub(crate) name: Box<str>,
    pub(crate) old: Option<PeerId>,
    pub(crate) new: Option<PeerId>,
}

/// Every well-known name with at least one owner.
#[derive(Debug, Default)]
pub(crate) struct NameRegistry {
    names: HashMap<Box<str>, VecDeque<Owner>>,
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    peer: PeerId,
    flags: u32,
}

impl Owner {
    fn allows_replacement(self) -> bool {
        self.flags & ALLOW_REPLACEMENT != 0
    }
    fn no_queue(self) -> bool {
        self.flags & DO_NOT_QUEUE != 0
    }
}

impl NameRegistry {
    /// `peer` asks for `name` with `flags`. The caller has checked the name's syntax and policy.
    ///
    /// Returns the reply and, when the primary owner changed, the change. `queued` is told
    /// whether `peer` is now somewhere in the name's queue (so the peer's own list of names can
    /// follow).
    pub(crate) fn request(
        &mut self,
        name: &str,
        peer: PeerId,
        flags: u32,
    ) -> (RequestReply, Option<OwnerChange>) {
        let Some(queue) = self.names.get_mut(name) else {
            self.names
                .insert(name.into(), VecDeque::from([Owner { peer, flags }]));
            let change = OwnerChange {
                name: name.into(),
                old: None,
                new: Some(peer),
            };
            return (RequestReply::PrimaryOwner, Some(change));
        };
        let primary = queue[0];
        if primary.peer == peer {
            queue[0].flags = flags;
            return (RequestReply::AlreadyOwner, None);
        }
        let position = queue.iter().position(|o| o.peer == peer);
        let replace = flags & REPLACE_EXISTING != 0 && primary.allows_replacement();
        if !replace {
            if flags & DO_NOT_QUEUE != 0 {
                if let Some(i) = position {
                    queue.remove(i);
                }
                return (RequestReply::Exists, None);
            }
            match position {
                Some(i) => queue[i].flags = flags,
                None => queue.push_back(Owner { peer, flags }),
            }
            return (RequestReply::InQueue, None);
        }
        // Replace the primary owner: the newcomer goes to the front; the old owner stays next in
        // line unless it asked not to be queued.
        if let Some(i) = position {
            queue.remove(i);
        }
        let old = queue.pop_front().map(|o| (o, o.no_queue()));
        if let Some((old, false)) = old {
            queue.push_front(old);
        }
        queue.push_front(Owner { peer, flags });
        let change = OwnerChange {
            name: name.into(),
            old: Some(primary.peer),
            new: Some(peer),
        };
        (RequestReply::PrimaryOwner, Some(change))
    }

    /// `peer` gives up `name` (or leaves its queue).
    pub(crate) fn release(
        &mut self,
        name: &str,
        peer: PeerId,
    ) -> (ReleaseReply, Option<OwnerChange>) {
        let Some(queue) = self.names.get_mut(name) else {
            return (ReleaseReply::NonExistent, None);
        };
        let Some(i) = queue.iter().position(|o| o.peer == peer) else {
            return (ReleaseReply::NotOwner, None);
        };
        queue.remove(i);
        if i != 0 {
            return (ReleaseReply::Released, None);
        }
        let new = queue.front().map(|o| o.peer);
        if new.is_none() {
            self.names.remove(name);
        }
        let change = OwnerChange {
            name: name.into(),
            old: Some(peer),
            new,
        };
        (ReleaseReply::Released, Some(change))
    }

    /// The primary owner of `name`.
    pub(crate) fn primary_owner(&self, name: &str) -> Option<PeerId> {
        self.names.get(name).and_then(|q| q.front()).map(|o| o.peer)
    }

    /// Every peer in `name`'s queue, primary owner first; `None` if the name has no owner.
    pub(crate) fn queue(&self, name: &str) -> Option<impl Iterator<Item = PeerId> + '_> {
        self.names.get(name).map(|q| q.iter().map(|o| o.peer))
    }

    /// Every name with an owner.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(|k| &**k)
    }

    /// How many names have an owner.
    pub(crate) fn count(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(index: u32) -> PeerId {
        PeerId::for_test(index)
    }

    fn change(name: &str, old: Option<u32>, new: Option<u32>) -> Option<OwnerChange> {
        Some(OwnerChange {
            name: name.into(),
            old: old.map(peer),
            new: new.map(peer),
        })
    }

    fn queue_of(reg: &NameRegistry, name: &str) -> Vec<u32> {
        reg.queue(name)
            .map(|q| q.map(|p| p.index).collect())
            .unwrap_or_default()
    }

    #[test]
    fn first_request_owns_and_second_queues() {
        let mut reg = NameRegistry::default();
        assert_eq!(
            reg.request("a.b", peer(1), 0),
            (RequestReply::PrimaryOwner, change("a.b", None, Some(1)))
        );
        assert_eq!(
            reg.request("a.b", peer(1), 0),
            (RequestReply::AlreadyOwner, None)
        );
        assert_eq!(
            reg.request("a.b", peer(2), 0),
            (RequestReply::InQueue, None)
        );
        assert_eq!(
            reg.request("a.b", peer(2), 0),
            (RequestReply::InQueue, None)
        );
        assert_eq!(queue_of(&reg, "a.b"), [1, 2]);
    }

    #[test]
    fn do_not_queue_gives_exists_and_leaves_queue() {
        let mut reg = NameRegistry::default();
        reg.request("a.b", peer(1), 0);
        reg.request("a.b", peer(2), 0);
        assert_eq!(
            reg.request("a.b", peer(2), DO_NOT_QUEUE),
            (RequestReply::Exists, None)
        );
        assert_eq!(queue_of(&reg, "a.b"), [1]);
    }

    #[test]
    fn replacement_needs_both_flags() {
        let mut reg = NameRegistry::default();
        reg.request("a.b", peer(1), 0);
        assert_eq!(
            reg.request("a.b", peer(2), REPLACE_EXISTING).0,
            RequestReply::InQueue
        );
        reg.request("a.b", peer(1), ALLOW_REPLACEMENT);
        assert_eq!(
            reg.request("a.b", peer(3), REPLACE_EXISTING | DO_NOT_QUEUE),
            (RequestReply::PrimaryOwner, change("a.b", Some(1), Some(3)))
        );
        // The old owner did not ask DO_NOT_QUEUE, so it waits first in line.
        assert_eq!(queue_of(&reg, "a.b"), [3, 1, 2]);
    }

    #[test]
    fn replaced_owner_with_do_not_queue_leaves() {
        let mut reg = NameRegistry::default();
        reg.request("a.b", peer(1), ALLOW_REPLACEMENT | DO_NOT_QUEUE);
        reg.request("a.b", peer(2), REPLACE_EXISTING);
        assert_eq!(queue_of(&reg, "a.b"), [2]);
    }

    #[test]
    fn release_promotes_next_and_forgets_empty_names() {
        let mut reg = NameRegistry::default();
        reg.request("a.b", peer(1), 0);
        reg.request("a.b", peer(2), 0);
        assert_eq!(reg.release("a.b", peer(3)), (ReleaseReply::NotOwner, None));
        assert_eq!(
            reg.release("x.y", peer(1)),
            (ReleaseReply::NonExistent, None)
        );
        assert_eq!(
            reg.release("a.b", peer(1)),
            (ReleaseReply::Released, change("a.b", Some(1), Some(2)))
        );
        assert_eq!(
            reg.release("a.b", peer(2)),
            (ReleaseReply::Released, change("a.b", Some(2), None))
        );
        assert_eq!(reg.primary_owner("a.b"), None);
        assert_eq!(reg.count(), 0);
    }

    #[test]
    fn release_from_queue_changes_no_owner() {
        let mut reg = NameRegistry::default();
        reg.request("a.b", peer(1), 0);
        reg.request("a.b", peer(2), 0);
        assert_eq!(reg.release("a.b", peer(2)), (ReleaseReply::Released, None));
        assert_eq!(queue_of(&reg, "a.b"), [1]);
    }
}
