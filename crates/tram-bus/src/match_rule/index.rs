//! The index of every connection's match rules.
//!
//! Each rule is filed under one key, a keyed hash of
//!
//! * whether it eavesdrops,
//! * its `sender` name, or "any sender",
//! * its most selective header condition: `member`, else `interface`, else `path`, else none,
//! * its `arg0` string, or none.
//!
//! A message could only meet rules filed under keys built from its own sender's names (its
//! unique name and the well-known names it is the primary owner of, or the driver's name), its
//! own member, interface and path, and its own first argument. [`MatchIndex::receivers`] looks
//! up exactly those keys — skipping the shapes of key no rule uses — and checks each rule found
//! in full, so a hash collision costs a wasted check, never a wrong answer.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

use tram_wire::{Arg, Message};

use super::{ArgCache, ArgKind, DRIVER_NAME, MatchRule, NameOwners};
use crate::PeerId;

/// Shapes of key: has a sender (1 bit) × header condition (2 bits) × has an arg0 (1 bit).
const SHAPES: usize = 16;

/// Every connection's match rules, indexed for [`MatchIndex::receivers`].
#[derive(Debug, Default)]
pub struct MatchIndex {
    /// Rules by id; `None` marks a free slot (listed in `free`).
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Rule ids by key. The keys are already hashes.
    buckets: HashMap<u64, Vec<usize>, BuildHasherDefault<KeyHasher>>,
    /// Each connection's rule ids, in no particular order.
    by_peer: HashMap<PeerId, Vec<usize>>,
    /// Rules per tree (0: ordinary, 1: eavesdropping) and shape of key.
    shapes: [[u32; SHAPES]; 2],
    /// Rules per tree.
    tree_len: [usize; 2],
    /// Keys the key hash, so peers cannot aim rules at one bucket.
    hash_keys: RandomState,
}

/// One rule and where it is filed.
#[derive(Debug)]
struct Entry {
    owner: PeerId,
    key: u64,
    /// Position in `buckets[key]`.
    pos: usize,
    /// Position in `by_peer[owner]`.
    peer_pos: usize,
    tree: u8,
    shape: u8,
    rule: MatchRule,
}

/// Where a rule is filed.
struct Filing {
    key: u64,
    tree: u8,
    shape: u8,
}

/// The header condition a rule is filed under.
#[derive(Clone, Copy)]
enum Header {
    None = 0,
    Member = 1,
    Interface = 2,
    Path = 3,
}

impl MatchIndex {
    /// An empty index.
    pub fn new() -> MatchIndex {
        MatchIndex::default()
    }

    /// Adds `rule` for `owner`. The same rule may be added more than once; each copy needs its
    /// own [`MatchIndex::remove`].
    pub fn add(&mut self, owner: PeerId, rule: MatchRule) {
        let filing = self.filing(&rule);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.entries.push(None);
                self.entries.len() - 1
            }
        };
        let bucket = self.buckets.entry(filing.key).or_default();
        let pos = bucket.len();
        bucket.push(id);
        let peer_rules = self.by_peer.entry(owner).or_default();
        let peer_pos = peer_rules.len();
        peer_rules.push(id);
        self.count_shape(filing.tree, filing.shape, true);
        let entry = Entry {
            owner,
            key: filing.key,
            pos,
            peer_pos,
            tree: filing.tree,
            shape: filing.shape,
            rule,
        };
        if let Some(slot) = self.entries.get_mut(id) {
            *slot = Some(entry);
        }
    }

    /// Removes one copy of a rule of `owner`'s equal to `rule` (see [`MatchRule`]'s equality).
    /// Returns whether there was one.
    pub fn remove(&mut self, owner: PeerId, rule: &MatchRule) -> bool {
        let Some(ids) = self.by_peer.get(&owner) else {
            return false;
        };
        let found = ids
            .iter()
            .copied()
            .find(|&id| self.entry(id).is_some_and(|e| e.rule == *rule));
        let Some(id) = found else {
            return false;
        };
        if let Some(entry) = self.unfile(id) {
            self.unlist(owner, entry.peer_pos);
        }
        true
    }

    /// Removes every rule of `owner`'s (when it disconnects).
    pub fn remove_peer(&mut self, owner: PeerId) {
        for id in self.by_peer.remove(&owner).unwrap_or_default() {
            self.unfile(id);
        }
    }

    /// How many rules `owner` has.
    pub fn count(&self, owner: PeerId) -> usize {
        self.by_peer.get(&owner).map_or(0, Vec::len)
    }

    /// `owner`'s rules, in no particular order.
    pub fn rules(&self, owner: PeerId) -> impl Iterator<Item = &MatchRule> {
        self.by_peer
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|&id| self.entry(id).map(|e| &e.rule))
    }

    /// How many rules there are in all.
    pub fn len(&self) -> usize {
        self.tree_len[0] + self.tree_len[1]
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any rule has `eavesdrop='true'`: if not, [`MatchIndex::receivers`] finds nobody
    /// for an addressed message.
    pub fn has_eavesdroppers(&self) -> bool {
        self.tree_len[1] > 0
    }

    /// Appends to `out`, once each, the peers with a rule that `msg` matches, as
    /// [`MatchRule::matches`] decides for a message from `sender` (`None`: the bus driver) to
    /// `addressed` (`None`: no particular peer, or the bus driver).
    ///
    /// For an addressed message (one with a DESTINATION) only eavesdropping rules count, and
    /// `addressed` itself is never appended: it receives the message anyway. `out` is appended
    /// to in no particular order; nothing is allocated but the room `out` may need.
    pub fn receivers<N: NameOwners + ?Sized>(
        &self,
        msg: &Message,
        names: &N,
        sender: Option<PeerId>,
        addressed: Option<PeerId>,
        out: &mut Vec<PeerId>,
    ) {
        self.search(msg, names, sender, addressed, out);
    }

    /// [`MatchIndex::receivers`]; returns how many rules it checked.
    fn search<N: NameOwners + ?Sized>(
        &self,
        msg: &Message,
        names: &N,
        sender: Option<PeerId>,
        addressed: Option<PeerId>,
        out: &mut Vec<PeerId>,
    ) -> usize {
        let addressed_msg = addressed.is_some() || msg.destination().is_some();
        let first_tree = usize::from(addressed_msg);
        if (first_tree..2).all(|tree| self.tree_len[tree] == 0) {
            return 0;
        }
        let start = out.len();
        let mut search = Search {
            index: self,
            msg,
            names,
            sender,
            addressed,
            addressed_msg,
            args: ArgCache::new(msg),
            out,
            checked: 0,
        };
        for tree in first_tree..2 {
            let shapes = &self.shapes[tree];
            let any = |with_sender: bool| {
                shapes
                    .iter()
                    .enumerate()
                    .any(|(s, &n)| n > 0 && (s & 1 == 1) == with_sender)
            };
            if any(false) {
                search.under(tree, None);
            }
            if any(true) {
                match sender {
                    None => search.under(tree, Some(DRIVER_NAME)),
                    Some(peer) => {
                        names.for_each_owned_name(peer, &mut |name| search.under(tree, Some(name)))
                    }
                }
            }
        }
        let checked = search.checked;
        dedup_from(out, start);
        checked
    }

    fn entry(&self, id: usize) -> Option<&Entry> {
        self.entries.get(id).and_then(Option::as_ref)
    }

    /// Where `rule` is filed.
    fn filing(&self, rule: &MatchRule) -> Filing {
        let (header, value) = if let Some(m) = rule.member() {
            (Header::Member, m)
        } else if let Some(i) = rule.interface() {
            (Header::Interface, i)
        } else if let Some(p) = rule.path() {
            (Header::Path, p)
        } else {
            (Header::None, "")
        };
        let arg0 = rule
            .args()
            .first()
            .filter(|a| a.index() == 0 && a.kind() == ArgKind::Str)
            .map(|a| a.value());
        let tree = u8::from(rule.eavesdrop());
        let mut h = self.hash_keys.build_hasher();
        key_prefix(&mut h, tree, rule.sender());
        key_rest(&mut h, header, value, arg0);
        Filing {
            key: h.finish(),
            tree,
            shape: shape(rule.sender().is_some(), header, arg0),
        }
    }

    /// Takes rule `id` out of its bucket and the slab; its owner's list is left to the caller.
    fn unfile(&mut self, id: usize) -> Option<Entry> {
        let entry = self.entries.get_mut(id)?.take()?;
        self.free.push(id);
        if let Some(bucket) = self.buckets.get_mut(&entry.key) {
            if entry.pos < bucket.len() {
                bucket.swap_remove(entry.pos);
            }
            if let Some(&moved) = bucket.get(entry.pos) {
                if let Some(Some(m)) = self.entries.get_mut(moved) {
                    m.pos = entry.pos;
                }
            }
            if bucket.is_empty() {
                self.buckets.remove(&entry.key);
            }
        }
        self.count_shape(entry.tree, entry.shape, false);
        Some(entry)
    }

    /// Takes the id at `pos` out of `owner`'s list.
    fn unlist(&mut self, owner: PeerId, pos: usize) {
        let Some(ids) = self.by_peer.get_mut(&owner) else {
            return;
        };
        if pos < ids.len() {
            ids.swap_remove(pos);
        }
        if let Some(&moved) = ids.get(pos) {
            if let Some(Some(m)) = self.entries.get_mut(moved) {
                m.peer_pos = pos;
            }
        }
        if ids.is_empty() {
            self.by_peer.remove(&owner);
        }
    }

    fn count_shape(&mut self, tree: u8, shape: u8, up: bool) {
        let tree = usize::from(tree & 1);
        if let Some(n) = self.shapes[tree].get_mut(usize::from(shape)) {
            if up {
                *n += 1;
                self.tree_len[tree] += 1;
            } else {
                *n = n.saturating_sub(1);
                self.tree_len[tree] = self.tree_len[tree].saturating_sub(1);
            }
        }
    }
}

/// One run of [`MatchIndex::receivers`].
struct Search<'a, 'm, N: ?Sized> {
    index: &'a MatchIndex,
    msg: &'m Message,
    names: &'a N,
    sender: Option<PeerId>,
    addressed: Option<PeerId>,
    addressed_msg: bool,
    args: ArgCache<'m>,
    out: &'a mut Vec<PeerId>,
    /// Rules checked so far.
    checked: usize,
}

impl<N: NameOwners + ?Sized> Search<'_, '_, N> {
    /// Looks up every key of `tree` with this sender name (`None`: rules without a sender) that
    /// the message could meet, and checks the rules found.
    fn under(&mut self, tree: usize, sender_name: Option<&str>) {
        let shapes = &self.index.shapes[tree];
        let mut prefix = self.index.hash_keys.build_hasher();
        key_prefix(&mut prefix, tree as u8, sender_name);
        let msg = self.msg;
        let headers = [
            (Header::None, Some("")),
            (Header::Member, msg.member()),
            (Header::Interface, msg.interface()),
            (Header::Path, msg.path()),
        ];
        for (header, value) in headers {
            let Some(value) = value else {
                continue;
            };
            for with_arg0 in [false, true] {
                let s = shape(sender_name.is_some(), header, with_arg0.then_some(""));
                if shapes.get(usize::from(s)).is_none_or(|&n| n == 0) {
                    continue;
                }
                let arg0 = if with_arg0 {
                    match self.args.get(0) {
                        Some(Arg::Str(a)) => Some(a),
                        _ => continue,
                    }
                } else {
                    None
                };
                let mut h = prefix.clone();
                key_rest(&mut h, header, value, arg0);
                if let Some(ids) = self.index.buckets.get(&h.finish()) {
                    for &id in ids {
                        self.check(id, sender_name);
                    }
                }
            }
        }
    }

    /// Checks rule `id` in full and appends its owner if the message meets it.
    fn check(&mut self, id: usize, sender_name: Option<&str>) {
        let Some(entry) = self.index.entry(id) else {
            return;
        };
        self.checked += 1;
        let rule = &entry.rule;
        if Some(entry.owner) == self.addressed
            || (self.addressed_msg && !rule.eavesdrop)
            || !rule.sender_matches(self.names, self.sender, sender_name)
            || !rule.matches_except_sender(self.msg, self.names, self.addressed, &mut self.args)
        {
            return;
        }
        self.out.push(entry.owner);
    }
}

/// The shape-of-key number.
fn shape(with_sender: bool, header: Header, arg0: Option<&str>) -> u8 {
    u8::from(with_sender) | (header as u8) << 1 | u8::from(arg0.is_some()) << 3
}

/// Hashes the tree and sender part of a key.
fn key_prefix(h: &mut impl Hasher, tree: u8, sender: Option<&str>) {
    h.write_u8(tree);
    sender.hash(h);
}

/// Hashes the header and arg0 part of a key.
fn key_rest(h: &mut impl Hasher, header: Header, value: &str, arg0: Option<&str>) {
    h.write_u8(header as u8);
    value.hash(h);
    arg0.hash(h);
}

/// Sorts `out[start..]` and drops repeats from it, in place.
fn dedup_from(out: &mut Vec<PeerId>, start: usize) {
    if let Some(tail) = out.get_mut(start..) {
        tail.sort_unstable();
    }
    let mut seen = 0;
    let mut last = None;
    out.retain(|&peer| {
        seen += 1;
        if seen <= start {
            return true;
        }
        let new = last != Some(peer);
        last = Some(peer);
        new
    });
}

/// Passes through keys that are already hashes.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Msg, Names, peer};
    use super::*;

    fn rule(text: &str) -> MatchRule {
        match MatchRule::parse(text) {
            Ok(r) => r,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn receivers(
        index: &MatchIndex,
        names: &Names,
        msg: &Message,
        sender: Option<u32>,
        addressed: Option<u32>,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        index.receivers(msg, names, sender.map(peer), addressed.map(peer), &mut out);
        out.iter().map(|p| p.index()).collect()
    }

    fn changed() -> Message {
        Msg::signal("/a", "org.example.I", "Changed").build()
    }

    #[test]
    fn same_rule_twice_needs_two_removes() {
        let names = Names::new(3, &[]);
        let mut index = MatchIndex::new();
        let r = rule("type='signal',member='Changed'");
        index.add(peer(2), r.clone());
        index.add(peer(2), rule("member=Changed,type=signal"));
        assert_eq!(index.count(peer(2)), 2);
        assert_eq!(receivers(&index, &names, &changed(), Some(1), None), [2]);
        assert!(index.remove(peer(2), &r));
        assert_eq!(index.count(peer(2)), 1);
        assert_eq!(receivers(&index, &names, &changed(), Some(1), None), [2]);
        assert!(index.remove(peer(2), &r));
        assert_eq!(
            receivers(&index, &names, &changed(), Some(1), None),
            [0u32; 0]
        );
        assert!(!index.remove(peer(2), &r));
        assert!(index.is_empty());
        assert_eq!(index.count(peer(2)), 0);
    }

    #[test]
    fn remove_is_per_owner_and_by_meaning() {
        let mut index = MatchIndex::new();
        index.add(peer(1), rule("member='A'"));
        assert!(!index.remove(peer(2), &rule("member='A'")));
        assert!(!index.remove(peer(1), &rule("member='A',eavesdrop=true")));
        assert!(!index.remove(peer(1), &rule("member='B'")));
        assert!(index.remove(peer(1), &rule("member=A,eavesdrop=false")));
    }

    #[test]
    fn remove_peer_forgets_everything_of_that_peer_only() {
        let names = Names::new(3, &[]);
        let mut index = MatchIndex::new();
        for text in [
            "member='Changed'",
            "type='signal'",
            "",
            "sender=':1.1'",
            "arg0='x'",
        ] {
            index.add(peer(2), rule(text));
            index.add(peer(3), rule(text));
        }
        assert_eq!(index.len(), 10);
        index.remove_peer(peer(2));
        assert_eq!(index.count(peer(2)), 0);
        assert_eq!(index.count(peer(3)), 5);
        assert_eq!(index.len(), 5);
        assert_eq!(receivers(&index, &names, &changed(), Some(1), None), [3]);
        index.remove_peer(peer(3));
        assert!(index.is_empty());
        assert!(index.buckets.is_empty() && index.by_peer.is_empty());
        // Freed slots are reused.
        index.add(peer(2), rule("member='Changed'"));
        assert_eq!(index.entries.len(), 10);
        assert_eq!(receivers(&index, &names, &changed(), Some(1), None), [2]);
    }

    #[test]
    fn removal_keeps_the_rest_of_a_bucket_findable() {
        // Many rules under one key; removing from the middle moves others within the bucket
        // and within their owner's list.
        let names = Names::new(50, &[]);
        let mut index = MatchIndex::new();
        for i in 1..=50 {
            index.add(peer(i), rule("member='Changed'"));
            index.add(peer(i), rule("member='Changed',arg0='never'"));
        }
        for i in (1..=50).step_by(3) {
            assert!(index.remove(peer(i), &rule("member='Changed'")));
        }
        let want: Vec<u32> = (1..=50).filter(|i| (i - 1) % 3 != 0).collect();
        assert_eq!(receivers(&index, &names, &changed(), Some(1), None), want);
        for i in (2..=50).step_by(3) {
            index.remove_peer(peer(i));
        }
        let want: Vec<u32> = (1..=50).filter(|i| (i - 1) % 3 == 2).collect();
        assert_eq!(receivers(&index, &names, &changed(), Some(1), None), want);
        for i in 1..=50 {
            let left = index.rules(peer(i)).count();
            assert_eq!(left, index.count(peer(i)));
        }
    }

    #[test]
    fn each_receiver_once() {
        // Peer 2's rules sit under different keys and all match.
        let names = Names::new(3, &[("com.example.A", 1)]);
        let mut index = MatchIndex::new();
        for text in [
            "",
            "type='signal'",
            "member='Changed'",
            "interface='org.example.I'",
            "path='/a'",
            "sender=':1.1'",
            "sender='com.example.A',member='Changed'",
            "arg0='x'",
            "member='Changed',arg0='x'",
            "eavesdrop=true",
        ] {
            index.add(peer(2), rule(text));
        }
        index.add(peer(3), rule("member='Changed'"));
        let msg = Msg::signal("/a", "org.example.I", "Changed")
            .strs(&["x"])
            .build();
        assert_eq!(receivers(&index, &names, &msg, Some(1), None), [2, 3]);
        // What was in `out` before stays, in place.
        let mut out = vec![peer(3), peer(3)];
        index.receivers(&msg, &names, Some(peer(1)), None, &mut out);
        assert_eq!(out, [peer(3), peer(3), peer(2), peer(3)]);
    }

    #[test]
    fn addressed_messages_reach_only_eavesdroppers_other_than_the_recipient() {
        let names = Names::new(4, &[]);
        let mut index = MatchIndex::new();
        index.add(peer(2), rule("type='signal'"));
        index.add(peer(3), rule("type='signal',eavesdrop='true'"));
        index.add(peer(4), rule("type='signal',eavesdrop='true'"));
        assert!(index.has_eavesdroppers());
        let unicast = Msg::signal("/a", "org.example.I", "Changed")
            .to(":1.4")
            .build();
        assert_eq!(receivers(&index, &names, &unicast, Some(1), Some(4)), [3]);
        // Addressed to a name nobody owns right now: still not a broadcast.
        let pending = Msg::signal("/a", "org.example.I", "Changed")
            .to("com.example.X")
            .build();
        assert_eq!(receivers(&index, &names, &pending, Some(1), None), [3, 4]);
        // A broadcast reaches eavesdroppers and everyone else.
        assert_eq!(
            receivers(&index, &names, &changed(), Some(1), None),
            [2, 3, 4]
        );
        index.remove_peer(peer(3));
        index.remove_peer(peer(4));
        assert!(!index.has_eavesdroppers());
        assert_eq!(
            receivers(&index, &names, &unicast, Some(1), Some(4)),
            [0u32; 0]
        );
    }

    #[test]
    fn sender_names_follow_ownership() {
        let mut index = MatchIndex::new();
        index.add(peer(3), rule("sender='com.example.A',member='Changed'"));
        let before = Names::new(3, &[("com.example.A", 1)]);
        assert_eq!(receivers(&index, &before, &changed(), Some(1), None), [3]);
        assert_eq!(
            receivers(&index, &before, &changed(), Some(2), None),
            [0u32; 0]
        );
        let after = Names::new(3, &[("com.example.A", 2)]);
        assert_eq!(
            receivers(&index, &after, &changed(), Some(1), None),
            [0u32; 0]
        );
        assert_eq!(receivers(&index, &after, &changed(), Some(2), None), [3]);
    }

    #[test]
    fn driver_signals() {
        let names = Names::new(3, &[]);
        let mut index = MatchIndex::new();
        index.add(
            peer(2),
            rule("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"),
        );
        index.add(peer(3), rule("sender=':1.1'"));
        let noc = Msg::signal(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameOwnerChanged",
        )
        .strs(&["com.example.A", "", ":1.1"])
        .build();
        assert_eq!(receivers(&index, &names, &noc, None, None), [2]);
        assert_eq!(receivers(&index, &names, &noc, Some(1), None), [3]);
    }

    #[test]
    fn unrelated_rules_are_not_examined() {
        // 16,000 rules that have nothing to do with the broadcast, in the shapes clients use.
        let mut well_known = Vec::new();
        for i in 0..1000 {
            well_known.push((format!("org.example.Service{i}"), 10 + i));
        }
        let wk: Vec<(&str, u32)> = well_known.iter().map(|(n, i)| (n.as_str(), *i)).collect();
        let names = Names::new(1100, &wk);
        let mut index = MatchIndex::new();
        for i in 0..1000u32 {
            let owner = peer(10 + i);
            let texts = [
                format!(
                    "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',\
                     arg0='org.example.Service{i}'"
                ),
                format!("type='signal',sender='org.example.Service{i}',member='Changed'"),
                format!("type='signal',sender=':1.{}'", 10 + i),
                format!("type='signal',interface='org.example.Iface{i}'"),
                format!("type='signal',member='Member{i}'"),
                format!("type='signal',path='/org/example/Object{i}'"),
                format!("type='signal',sender='org.example.Service{i}',path='/x/{i}',arg0='q'"),
                format!("type='signal',member='PropertiesChanged',arg0='org.example.Iface{i}'"),
            ];
            for text in texts {
                index.add(owner, rule(&text));
                index.add(owner, rule(&text));
            }
        }
        assert_eq!(index.len(), 16_000);
        let mut out = Vec::new();

        // A signal from a peer nobody watches.
        let msg = Msg::signal("/org/example/Other", "org.example.Other", "Ping").build();
        assert_eq!(index.search(&msg, &names, Some(peer(2)), None, &mut out), 0);
        assert!(out.is_empty());

        // A service's signal reaches the peer watching it, looking at its rules only.
        let msg = Msg::signal("/x/7", "org.example.Other", "Changed")
            .strs(&["q"])
            .build();
        let checked = index.search(&msg, &names, Some(peer(17)), None, &mut out);
        assert_eq!(out, [peer(17)]);
        assert!(checked <= 6, "checked {checked}");

        // NameOwnerChanged for one name reaches the one peer watching that name.
        out.clear();
        let noc = Msg::signal(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameOwnerChanged",
        )
        .strs(&["org.example.Service42", "", ":1.52"])
        .build();
        let checked = index.search(&noc, &names, None, None, &mut out);
        assert_eq!(out, [peer(52)]);
        assert_eq!(checked, 2);

        // PropertiesChanged for one interface.
        out.clear();
        let pc = Msg::signal("/o", "org.freedesktop.DBus.Properties", "PropertiesChanged")
            .strs(&["org.example.Iface5"])
            .build();
        let checked = index.search(&pc, &names, Some(peer(1)), None, &mut out);
        assert_eq!(out, [peer(15)]);
        assert_eq!(checked, 2);
    }

    #[test]
    fn index_agrees_with_brute_force() {
        // Random rules and messages from small pools, so that many of them meet.
        let names = Names::new(6, &[("a.A", 1), ("a.B", 2), ("a.C", 1)]);
        let rule_parts: &[&[&str]] = &[
            &["", "type=signal,", "type=method_call,"],
            &[
                "",
                "sender=a.A,",
                "sender=a.B,",
                "sender=:1.1,",
                "sender=org.freedesktop.DBus,",
            ],
            &["", "interface=i.X,", "interface=i.Y,"],
            &["", "member=M,", "member=N,"],
            &["", "path=/p,", "path=/q,", "path_namespace=/p,"],
            &[
                "",
                "arg0=x,",
                "arg0=y,",
                "arg0path=/p/,",
                "arg0namespace=x,",
            ],
            &["", "arg1=x,"],
            &["", "", "eavesdrop=true,"],
            &["", "", "", "destination=:1.3,", "destination=a.B,"],
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut index = MatchIndex::new();
        let mut all = Vec::new();
        for _ in 0..400 {
            let text: String = rule_parts
                .iter()
                .map(|opts| opts[next(opts.len())])
                .collect();
            let owner = peer(1 + next(6) as u32);
            index.add(owner, rule(&text));
            all.push((owner, rule(&text)));
        }
        for _ in 0..300 {
            let path = ["/p", "/q", "/p/r"][next(3)];
            let iface = ["i.X", "i.Y"][next(2)];
            let member = ["M", "N"][next(2)];
            let mut m = if next(2) == 0 {
                Msg::signal(path, iface, member)
            } else {
                Msg::call(path, Some(iface), member)
            };
            let dest = [None, None, Some((":1.3", Some(3))), Some(("a.B", Some(2)))][next(4)];
            if let Some((d, _)) = dest {
                m = m.to(d);
            }
            let args = [&[][..], &["x"], &["y", "x"], &["/p/r"], &["x.z", "x"]][next(5)];
            let msg = m.strs(args).build();
            let addressed = dest.and_then(|(_, a)| a).map(peer);
            let sender = [None, Some(peer(1)), Some(peer(2)), Some(peer(5))][next(4)];

            let mut got = Vec::new();
            index.receivers(&msg, &names, sender, addressed, &mut got);
            let mut want: Vec<PeerId> = all
                .iter()
                .filter(|(owner, r)| {
                    Some(*owner) != addressed && r.matches(&msg, &names, sender, addressed)
                })
                .map(|(owner, _)| *owner)
                .collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(got, want);
        }
    }
}
