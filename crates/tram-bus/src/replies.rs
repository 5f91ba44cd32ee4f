//! Pending replies: which calls are owed an answer, and by whom.
//!
//! A method call that expects a reply opens a slot keyed by the caller and the call's serial,
//! naming the callee. A method return or error is delivered only if it closes such a slot, and
//! only once; anything else is an unrequested reply and is refused. When a callee goes away, every
//! slot it held is answered with NoReply by the bus; when a caller goes away, its slots vanish.

use std::collections::HashMap;

use crate::PeerId;

/// The open reply slots.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    slots: HashMap<(PeerId, u32), PeerId>,
}

impl Replies {
    /// `caller`'s call `serial` to `callee` expects a reply.
    pub(crate) fn expect(&mut self, caller: PeerId, serial: u32, callee: PeerId) {
        self.slots.insert((caller, serial), callee);
    }

    /// `callee` answers `caller`'s call `serial`: true if that answer was owed (and closes it).
    pub(crate) fn take(&mut self, caller: PeerId, serial: u32, callee: PeerId) -> bool {
        match self.slots.get(&(caller, serial)) {
            Some(&owed_by) if owed_by == callee => {
                self.slots.remove(&(caller, serial));
                true
            }
            _ => false,
        }
    }

    /// `peer` is gone: forgets the calls it made, and returns the calls it owed answers to, as
    /// `(caller, serial)`, oldest caller first.
    pub(crate) fn remove_peer(&mut self, peer: PeerId) -> Vec<(PeerId, u32)> {
        let mut owed = Vec::new();
        self.slots.retain(|&(caller, serial), &mut callee| {
            if callee == peer && caller != peer {
                owed.push((caller, serial));
            }
            caller != peer && callee != peer
        });
        owed.sort_unstable();
        owed
    }

    /// How many replies `caller` waits for.
    #[cfg(test)]
    pub(crate) fn count_for(&self, caller: PeerId) -> usize {
        self.slots.keys().filter(|(c, _)| *c == caller).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(index: u32) -> PeerId {
        PeerId::for_test(index)
    }

    #[test]
    fn a_reply_is_delivered_once_and_only_from_the_callee() {
        let mut r = Replies::default();
        r.expect(peer(1), 7, peer(2));
        assert!(!r.take(peer(1), 7, peer(3)), "a third party cannot answer");
        assert!(!r.take(peer(1), 8, peer(2)), "wrong serial");
        assert!(r.take(peer(1), 7, peer(2)));
        assert!(
            !r.take(peer(1), 7, peer(2)),
            "a second reply is unrequested"
        );
    }

    #[test]
    fn a_departing_callee_owes_noreply_and_a_departing_caller_is_forgotten() {
        let mut r = Replies::default();
        r.expect(peer(1), 1, peer(2));
        r.expect(peer(3), 5, peer(2));
        r.expect(peer(2), 9, peer(1));
        assert_eq!(r.remove_peer(peer(2)), [(peer(1), 1), (peer(3), 5)]);
        assert_eq!(r.count_for(peer(2)), 0);
        assert_eq!(r.count_for(peer(1)), 0);
    }
}
