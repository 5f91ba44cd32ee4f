//! Pending replies: which calls are owed an answer, by whom, and until when.
//!
//! A method call that expects a reply opens a slot keyed by the caller and the call's serial,
//! naming the callee and, when the configuration sets `reply_timeout`, a deadline. A method
//! return or error is delivered only if it closes such a slot, and only once; anything else is an
//! unrequested reply and is refused. When a callee goes away, every slot it held is answered
//! with NoReply by the bus; when a caller goes away, its slots vanish; when a deadline passes,
//! the caller gets NoReply and a late reply is refused.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant;

use crate::PeerId;

/// The open reply slots.
///
/// Slots are kept per caller, in a table indexed by the caller's slab index, and within it by
/// serial in a B-tree: no hashing on the path of every call and reply, and no serials a caller
/// could choose to make lookups slow.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    callers: Vec<Caller>,
    open: usize,
    /// Deadlines, earliest first; entries whose slot has closed are skipped when met.
    deadlines: BinaryHeap<Reverse<(Instant, PeerId, u32)>>,
}

/// One caller's open calls.
#[derive(Debug, Default)]
struct Caller {
    generation: u32,
    slots: BTreeMap<u32, Slot>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    callee: PeerId,
    deadline: Option<Instant>,
}

/// What a departing peer leaves behind in the reply table.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Departure {
    /// The calls it owed answers to, as `(caller, serial)`, oldest caller first.
    pub(crate) owed: Vec<(PeerId, u32)>,
    /// How many of its own calls were still waiting.
    pub(crate) waiting: u32,
}

impl Replies {
    /// `caller`'s call `serial` to `callee` expects a reply, until `deadline` if any. Returns
    /// false if the call replaced an open slot with the same serial (nothing new to count).
    pub(crate) fn expect(
        &mut self,
        caller: PeerId,
        serial: u32,
        callee: PeerId,
        deadline: Option<Instant>,
    ) -> bool {
        let slot = Slot { callee, deadline };
        let new = self.caller_mut(caller).slots.insert(serial, slot).is_none();
        if new {
            self.open += 1;
        }
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, caller, serial)));
        }
        new
    }

    /// Whether `callee` owes `caller` an answer to call `serial`.
    pub(crate) fn is_owed(&self, caller: PeerId, serial: u32, callee: PeerId) -> bool {
        self.slot(caller, serial)
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
        self.caller(caller).map_or(0, |c| c.slots.len() as u32)
    }

    /// How many replies are awaited in all.
    pub(crate) fn len(&self) -> usize {
        self.open
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
                .slot(caller, serial)
                .is_some_and(|s| s.deadline == Some(at));
            if still_open {
                self.close(caller, serial);
                expired.push((caller, serial));
            }
        }
        expired
    }

    /// `peer` is gone: forgets the calls it made, and returns the calls it owed answers to.
    pub(crate) fn remove_peer(&mut self, peer: PeerId) -> Departure {
        let mut departure = Departure::default();
        if let Some(own) = self.caller_mut_existing(peer) {
            departure.waiting = own.slots.len() as u32;
            own.slots.clear();
            self.open -= departure.waiting as usize;
        }
        for (index, caller) in self.callers.iter_mut().enumerate() {
            let id = PeerId {
                index: index as u32,
                generation: caller.generation,
            };
            let before = caller.slots.len();
            caller.slots.retain(|&serial, slot| {
                let owed = slot.callee == peer;
                if owed {
                    departure.owed.push((id, serial));
                }
                !owed
            });
            self.open -= before - caller.slots.len();
        }
        departure.owed.sort_unstable();
        departure
    }

    fn close(&mut self, caller: PeerId, serial: u32) {
        if let Some(c) = self.caller_mut_existing(caller) {
            if c.slots.remove(&serial).is_some() {
                self.open -= 1;
            }
        }
    }

    fn slot(&self, caller: PeerId, serial: u32) -> Option<&Slot> {
        self.caller(caller)?.slots.get(&serial)
    }

    fn caller(&self, id: PeerId) -> Option<&Caller> {
        self.callers
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    fn caller_mut_existing(&mut self, id: PeerId) -> Option<&mut Caller> {
        self.callers
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    /// `id`'s table, taking over the slab slot from an earlier peer if need be (whose calls
    /// were all removed when it left).
    fn caller_mut(&mut self, id: PeerId) -> &mut Caller {
        let index = id.index as usize;
        if self.callers.len() <= index {
            self.callers.resize_with(index + 1, Caller::default);
        }
        let caller = &mut self.callers[index];
        if caller.generation != id.generation {
            self.open -= caller.slots.len();
            caller.slots.clear();
            caller.generation = id.generation;
        }
        caller
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
        let departure = r.remove_peer(peer(2));
        assert_eq!(departure.owed, [(peer(1), 1), (peer(3), 5)]);
        assert_eq!(departure.waiting, 1);
        assert_eq!(r.len(), 0);
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
