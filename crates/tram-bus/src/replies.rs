//! Pending replies: which calls are owed an answer, by whom, and until when.
//!
//! A method call that expects a reply opens a slot keyed by the caller and the call's serial,
//! naming the callee and, when the configuration sets `reply_timeout`, a deadline. A method
//! return or error is delivered only if it closes such a slot, and only once; anything else is an
//! unrequested reply and is refused. When a callee goes away, every slot it held is answered
//! with NoReply by the bus; when a caller goes away, its slots vanish; when a deadline passes,
//! the caller gets NoReply and a late reply is refused.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use crate::PeerId;

/// The open reply slots.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    slots: HashMap<(PeerId, u32), Slot>,
    /// Open slots per caller, for `max_replies_per_connection`.
    per_caller: HashMap<PeerId, u32>,
    /// Deadlines, earliest first; entries whose slot has closed are skipped when met.
    deadlines: BinaryHeap<Reverse<(Instant, PeerId, u32)>>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    callee: PeerId,
    deadline: Option<Instant>,
}

impl Replies {
    /// `caller`'s call `serial` to `callee` expects a reply, until `deadline` if any.
    pub(crate) fn expect(
        &mut self,
        caller: PeerId,
        serial: u32,
        callee: PeerId,
        deadline: Option<Instant>,
    ) {
        let slot = Slot { callee, deadline };
        if self.slots.insert((caller, serial), slot).is_none() {
            *self.per_caller.entry(caller).or_default() += 1;
        }
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, caller, serial)));
        }
    }

    /// Whether `callee` owes `caller` an answer to call `serial`.
    pub(crate) fn is_owed(&self, caller: PeerId, serial: u32, callee: PeerId) -> bool {
        self.slots
            .get(&(caller, serial))
            .is_some_and(|s| s.callee == callee)
    }

    /// `callee` answers `caller`'s call `serial`: true if that answer was owed (and closes it).
    pub(crate) fn take(&mut self, caller: PeerId, serial: u32, callee: PeerId) -> bool {
        if !self.is_owed(caller, serial, callee) {
            return false;
        }
        self.close(caller, serial);
        true
    }

    /// How many replies `caller` waits for.
    pub(crate) fn count_for(&self, caller: PeerId) -> u32 {
        self.per_caller.get(&caller).copied().unwrap_or(0)
    }

    /// The earliest deadline still pending (possibly of a slot closed since: a harmless early
    /// wake-up).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Closes every slot whose deadline is `now` or earlier; returns them as `(caller, serial)`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(PeerId, u32)> {
        let mut expired = Vec::new();
        while let Some(Reverse((at, caller, serial))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let still_open = self
                .slots
                .get(&(caller, serial))
                .is_some_and(|s| s.deadline == Some(at));
            if still_open {
                self.close(caller, serial);
                expired.push((caller, serial));
            }
        }
        expired
    }

    /// `peer` is gone: forgets the calls it made, and returns the calls it owed answers to, as
    /// `(caller, serial)`, oldest caller first.
    pub(crate) fn remove_peer(&mut self, peer: PeerId) -> Vec<(PeerId, u32)> {
        let mut owed = Vec::new();
        self.slots.retain(|&(caller, serial), slot| {
            if slot.callee == peer && caller != peer {
                owed.push((caller, serial));
            }
            caller != peer && slot.callee != peer
        });
        self.per_caller.remove(&peer);
        for (caller, _) in &owed {
            self.decrement(*caller);
        }
        owed.sort_unstable();
        owed
    }

    fn close(&mut self, caller: PeerId, serial: u32) {
        if self.slots.remove(&(caller, serial)).is_some() {
            self.decrement(caller);
        }
    }

    fn decrement(&mut self, caller: PeerId) {
        if let Some(n) = self.per_caller.get_mut(&caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_caller.remove(&caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn peer(index: u32) -> PeerId {
        PeerId::for_test(index)
    }

    #[test]
    fn a_reply_is_delivered_once_and_only_from_the_callee() {
        let mut r = Replies::default();
        r.expect(peer(1), 7, peer(2), None);
        assert!(!r.take(peer(1), 7, peer(3)), "a third party cannot answer");
        assert!(!r.take(peer(1), 8, peer(2)), "wrong serial");
        assert!(r.take(peer(1), 7, peer(2)));
        assert!(
            !r.take(peer(1), 7, peer(2)),
            "a second reply is unrequested"
        );
        assert_eq!(r.count_for(peer(1)), 0);
    }

    #[test]
    fn a_departing_callee_owes_noreply_and_a_departing_caller_is_forgotten() {
        let mut r = Replies::default();
        r.expect(peer(1), 1, peer(2), None);
        r.expect(peer(3), 5, peer(2), None);
        r.expect(peer(2), 9, peer(1), None);
        assert_eq!(r.count_for(peer(2)), 1);
        assert_eq!(r.remove_peer(peer(2)), [(peer(1), 1), (peer(3), 5)]);
        assert_eq!(r.count_for(peer(2)), 0);
        assert_eq!(r.count_for(peer(1)), 0);
        assert_eq!(r.count_for(peer(3)), 0);
    }

    #[test]
    fn deadlines_expire_in_order_and_skip_answered_calls() {
        let mut r = Replies::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        r.expect(peer(1), 1, peer(2), Some(t0 + s));
        r.expect(peer(1), 2, peer(2), Some(t0 + 2 * s));
        r.expect(peer(3), 3, peer(2), Some(t0 + 3 * s));
        assert!(r.take(peer(1), 2, peer(2)));
        assert_eq!(r.next_deadline(), Some(t0 + s));
        assert_eq!(r.expire(t0 + 2 * s), [(peer(1), 1)]);
        assert!(!r.take(peer(1), 1, peer(2)), "a late reply is refused");
        assert_eq!(r.expire(t0 + 10 * s), [(peer(3), 3)]);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.count_for(peer(1)), 0);
    }
}
