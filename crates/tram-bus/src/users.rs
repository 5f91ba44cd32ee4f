//! Per-user accounting: what each user holds on the bus, across all of its connections.
//!
//! The configuration bounds objects per connection (`max_names_per_connection`,
//! `max_match_rules_per_connection`, `max_replies_per_connection`) and connections per user;
//! this ledger adds the bound that makes the bus fair between users. For each kind of object the
//! bus-wide pool is what the configuration lets the bus hold at most — the per-connection limit
//! times `max_completed_connections` — and a user may take one more object only while, after it,
//! it holds no more than what would stay free in the pool for everyone else ([`fair_share`]).
//! A user alone can thus take at most half of a pool, and each further user at most half of what
//! is left: however many connections one user opens, the others keep room of their own.
//!
//! Users live in a slab; a peer keeps its user's index, so the hot path (a call that expects a
//! reply) charges its user without a lookup.

use std::collections::HashMap;

/// An object a user holds on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Object {
    /// A well-known name owned or queued for.
    Name,
    /// A match rule.
    MatchRule,
    /// A call waiting for its reply.
    Reply,
}

/// What one user holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) connections: u64,
    pub(crate) names: u64,
    pub(crate) match_rules: u64,
    pub(crate) replies: u64,
}

impl Usage {
    fn get_mut(&mut self, object: Object) -> &mut u64 {
        match object {
            Object::Name => &mut self.names,
            Object::MatchRule => &mut self.match_rules,
            Object::Reply => &mut self.replies,
        }
    }

    /// How many of `object` this usage counts.
    pub(crate) fn get(&self, object: Object) -> u64 {
        match object {
            Object::Name => self.names,
            Object::MatchRule => self.match_rules,
            Object::Reply => self.replies,
        }
    }
}

/// The ledger: every user with a connection, and the bus-wide totals.
#[derive(Debug, Default)]
pub(crate) struct Users {
    entries: Vec<Entry>,
    free: Vec<u32>,
    by_uid: HashMap<u32, u32>,
    total: Usage,
}

#[derive(Debug, Default)]
struct Entry {
    uid: u32,
    usage: Usage,
}

impl Users {
    /// A connection of `uid` arrived: returns the user's index, for [`Users::charge`] and
    /// [`Users::release`].
    pub(crate) fn attach(&mut self, uid: u32) -> u32 {
        let index = match self.by_uid.get(&uid) {
            Some(&i) => i,
            None => {
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.entries.push(Entry::default());
                        (self.entries.len() - 1) as u32
                    }
                };
                self.entries[i as usize] = Entry {
                    uid,
                    usage: Usage::default(),
                };
                self.by_uid.insert(uid, i);
                i
            }
        };
        self.entries[index as usize].usage.connections += 1;
        self.total.connections += 1;
        index
    }

    /// A connection of user `index` is gone (its objects were released before). The user is
    /// forgotten with its last connection.
    pub(crate) fn detach(&mut self, index: u32) {
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        if entry.usage.connections == 0 {
            return;
        }
        entry.usage.connections -= 1;
        self.total.connections = self.total.connections.saturating_sub(1);
        if entry.usage.connections == 0 {
            debug_assert_eq!(entry.usage, Usage::default(), "released before detaching");
            let uid = entry.uid;
            self.by_uid.remove(&uid);
            self.free.push(index);
        }
    }

    /// Whether user `index` may take one more `object` from a pool of `pool`.
    pub(crate) fn may_take(&self, index: u32, object: Object, pool: u64) -> bool {
        let mine = self.usage(index).get(object);
        fair_share(mine, self.total.get(object), pool, 1)
    }

    /// User `index` took `n` more `object`s.
    pub(crate) fn charge(&mut self, index: u32, object: Object, n: u64) {
        if let Some(entry) = self.entries.get_mut(index as usize) {
            *entry.usage.get_mut(object) += n;
            *self.total.get_mut(object) += n;
        }
    }

    /// User `index` gave back `n` `object`s.
    pub(crate) fn release(&mut self, index: u32, object: Object, n: u64) {
        if let Some(entry) = self.entries.get_mut(index as usize) {
            let held = entry.usage.get_mut(object);
            debug_assert!(*held >= n, "{object:?}: releasing {n} of {held}");
            *held = held.saturating_sub(n);
            let total = self.total.get_mut(object);
            *total = total.saturating_sub(n);
        }
    }

    /// What user `index` holds.
    pub(crate) fn usage(&self, index: u32) -> Usage {
        self.entries
            .get(index as usize)
            .map_or_else(Usage::default, |e| e.usage)
    }

    /// What every user holds together.
    #[cfg(test)]
    pub(crate) fn total(&self) -> Usage {
        self.total
    }

    /// Every user with a connection, as `(uid, usage)`, by uid.
    pub(crate) fn all(&self) -> Vec<(u32, Usage)> {
        let mut all: Vec<(u32, Usage)> = self
            .by_uid
            .iter()
            .filter_map(|(&uid, &i)| Some((uid, self.entries.get(i as usize)?.usage)))
            .collect();
        all.sort_unstable_by_key(|&(uid, _)| uid);
        all
    }
}

/// The fair-share rule: a holder of `mine` out of `total` used in a pool of `pool` may take `n`
/// more if, after it, it holds no more than what stays free for everyone else. A holder with
/// nothing may always take its first `n` while the pool has room.
pub(crate) fn fair_share(mine: u64, total: u64, pool: u64, n: u64) -> bool {
    let total_after = total.saturating_add(n);
    if total_after > pool {
        return false;
    }
    mine == 0 || mine.saturating_add(n) <= pool - total_after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_leaves_others_as_much_as_the_holder_has() {
        // (mine, total, pool, n, allowed)
        let cases = [
            (0, 0, 10, 1, true),
            (0, 9, 10, 1, true),
            (0, 10, 10, 1, false),
            (4, 4, 10, 1, true),   // 5 held, 5 free
            (5, 5, 10, 1, false),  // 6 held, 4 free
            (3, 6, 10, 1, false),  // 4 held, 3 free
            (2, 6, 10, 1, true),   // 3 held, 3 free
            (0, 0, 100, 60, true), // a first charge may be large
            (1, 1, u64::MAX, u64::MAX, false),
        ];
        for (mine, total, pool, n, allowed) in cases {
            assert_eq!(
                fair_share(mine, total, pool, n),
                allowed,
                "mine={mine} total={total} pool={pool} n={n}"
            );
        }
    }

    #[test]
    fn one_user_gets_half_and_the_next_half_of_the_rest() {
        let mut users = Users::default();
        let a = users.attach(1000);
        let b = users.attach(1001);
        let pool = 100;
        let took = |user: u32, users: &mut Users| {
            let mut n = 0;
            while users.may_take(user, Object::Name, pool) {
                users.charge(user, Object::Name, 1);
                n += 1;
            }
            n
        };
        assert_eq!(took(a, &mut users), 50);
        assert_eq!(took(b, &mut users), 25);
        assert_eq!(users.total().names, 75);
        // What a gives back, b may take.
        users.release(a, Object::Name, 50);
        assert_eq!(took(b, &mut users), 25);
    }

    #[test]
    fn users_are_shared_by_their_connections_and_forgotten_with_the_last() {
        let mut users = Users::default();
        let a1 = users.attach(7);
        let a2 = users.attach(7);
        assert_eq!(a1, a2);
        users.charge(a1, Object::Reply, 3);
        assert_eq!(users.usage(a2).replies, 3);
        assert_eq!(users.all(), [(7, users.usage(a1))]);
        users.release(a1, Object::Reply, 3);
        users.detach(a1);
        assert_eq!(users.usage(a1).connections, 1);
        users.detach(a2);
        assert!(users.all().is_empty());
        assert_eq!(users.total(), Usage::default());
        // The slot is reused for the next user.
        assert_eq!(users.attach(8), a1);
    }
}
