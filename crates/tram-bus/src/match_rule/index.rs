//! The index of every connection's match rules.
//!
//! Rules are grouped by whether they eavesdrop and by their `sender` name (or "any sender").
//! Within a group each rule is filed under one key made of
//!
//! * its most selective header condition: `member`, else `interface`, else `path`, else none,
//! * its `arg0` string, or none.
//!
//! A message could only meet rules in the groups of its own sender's names (its unique name and
//! the well-known names it is the primary owner of, or the driver's name) and the any-sender
//! group, filed under keys built from its own member, interface and path and its own first
//! argument. [`MatchIndex::receivers`] visits exactly those groups, and in each looks up only the
//! shapes of key the group's rules use. Every rule found is then checked in full.
//!
//! Groups and keys are stored as 64-bit hashes, seeded per index. Two names or keys that hash
//! alike merely share a slot: the full check sorts them out, so a collision costs time, never a
//! wrong answer — and a peer that aimed for one could as well add rules that really match.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

use tram_wire::{Arg, Message};

use super::{ArgKind, DRIVER_NAME, MatchRule, MsgView, NameOwners};
use crate::PeerId;

/// Shapes of key within a group: header condition (4) × with or without arg0 (2).
const SHAPES: usize = 8;

/// Every connection's match rules, indexed for [`MatchIndex::receivers`].
#[derive(Debug)]
pub struct MatchIndex {
    /// Rules by id; `None` marks a free slot (listed in `free`).
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Rules per shape, by group.
    groups: HashMap<u64, [u32; SHAPES], BuildHasherDefault<PassHasher>>,
    /// Rule ids by key.
    buckets: HashMap<u64, Vec<usize>, BuildHasherDefault<PassHasher>>,
    /// Each connection's rule ids, in no particular order.
    by_peer: HashMap<PeerId, Vec<usize>>,
    /// Rules per tree (0: ordinary, 1: eavesdropping).
    tree_len: [usize; 2],
    /// Seeds the group and key hashes.
    seed: u64,
}

/// One rule and where it is filed.
#[derive(Debug)]
struct Entry {
    owner: PeerId,
    group: u64,
    key: u64,
    shape: u8,
    tree: u8,
    /// Position in `buckets[key]`.
    pos: usize,
    /// Position in `by_peer[owner]`.
    peer_pos: usize,
    rule: MatchRule,
}

/// Where a rule is filed.
struct Filing {
    group: u64,
    key: u64,
    shape: u8,
    tree: u8,
}

/// The header condition a rule is filed under.
#[derive(Clone, Copy)]
enum Header {
    None = 0,
    Member = 1,
    Interface = 2,
    Path = 3,
}

impl Default for MatchIndex {
    fn default() -> Self {
        MatchIndex {
            entries: Vec::new(),
            free: Vec::new(),
            groups: HashMap::default(),
            buckets: HashMap::default(),
            by_peer: HashMap::new(),
            tree_len: [0; 2],
            seed: RandomState::new().hash_one(0x7472_616d_u64),
        }
    }
}

impl MatchIndex {
    /// An empty index.
    pub fn new() -> MatchIndex {
        MatchIndex::default()
    }

    /// Adds `rule` for `owner`. The same rule may be added more than once; each copy needs its
    /// own [`MatchIndex::remove`].
    pub fn add(&mut self, owner: PeerId, rule: MatchRule) {
        let f = self.filing(&rule);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.entries.push(None);
                self.entries.len() - 1
            }
        };
        let bucket = self.buckets.entry(f.key).or_default();
        let pos = bucket.len();
        bucket.push(id);
        let peer_rules = self.by_peer.entry(owner).or_default();
        let peer_pos = peer_rules.len();
        peer_rules.push(id);
        let counts = self.groups.entry(f.group).or_default();
        if let Some(n) = counts.get_mut(usize::from(f.shape)) {
            *n += 1;
        }
        if let Some(n) = self.tree_len.get_mut(usize::from(f.tree)) {
            *n += 1;
        }
        let entry = Entry {
            owner,
            group: f.group,
            key: f.key,
            shape: f.shape,
            tree: f.tree,
            pos,
            peer_pos,
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
        let first_tree = u8::from(addressed_msg);
        if self.tree_len[usize::from(first_tree)..]
            .iter()
            .all(|&n| n == 0)
        {
            return 0;
        }
        let start = out.len();
        let mut search = Search {
            index: self,
            msg: MsgView::new(msg),
            names,
            sender,
            addressed,
            addressed_msg,
            out,
            header_hashes: [None; 4],
            arg0_hash: None,
            checked: 0,
        };
        for tree in first_tree..2 {
            if self.tree_len[usize::from(tree)] == 0 {
                continue;
            }
            search.group(tree, None);
            match sender {
                None => search.group(tree, Some(DRIVER_NAME)),
                Some(peer) => {
                    names.for_each_owned_name(peer, &mut |name| search.group(tree, Some(name)))
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
        let group = self.group_key(tree, rule.sender());
        let arg0_hash = arg0.map(|a| self.str_hash(a));
        Filing {
            group,
            key: key(group, header, self.str_hash(value), arg0_hash),
            shape: shape(header, arg0.is_some()),
            tree,
        }
    }

    /// The hash of a header value or arg0 string, which [`key`] combines with a group's.
    fn str_hash(&self, s: &str) -> u64 {
        let mut h = KeyHasher(!self.seed);
        s.hash(&mut h);
        h.finish()
    }

    /// The hash naming the group of rules in `tree` with this `sender` condition.
    fn group_key(&self, tree: u8, sender: Option<&str>) -> u64 {
        let mut h = KeyHasher(self.seed);
        h.write_u8(tree);
        sender.hash(&mut h);
        h.finish()
    }

    /// Takes rule `id` out of its bucket, its group's counts and the slab; its owner's list is
    /// left to the caller.
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
        if let Some(counts) = self.groups.get_mut(&entry.group) {
            if let Some(n) = counts.get_mut(usize::from(entry.shape)) {
                *n = n.saturating_sub(1);
            }
            if counts.iter().all(|&n| n == 0) {
                self.groups.remove(&entry.group);
            }
        }
        if let Some(n) = self.tree_len.get_mut(usize::from(entry.tree)) {
            *n = n.saturating_sub(1);
        }
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
}

/// One run of [`MatchIndex::receivers`].
struct Search<'a, 'm, N: ?Sized> {
    index: &'a MatchIndex,
    msg: MsgView<'m>,
    names: &'a N,
    sender: Option<PeerId>,
    addressed: Option<PeerId>,
    addressed_msg: bool,
    out: &'a mut Vec<PeerId>,
    /// Hashes of the message's header values, by [`Header`], computed when first needed.
    header_hashes: [Option<u64>; 4],
    /// The hash of the message's arg0 string: `None` until computed, `Some(None)` if it has
    /// none.
    arg0_hash: Option<Option<u64>>,
    /// Rules checked so far.
    checked: usize,
}

impl<N: NameOwners + ?Sized> Search<'_, '_, N> {
    /// Visits the group of rules in `tree` whose sender condition is `sender_name` (`None`: no
    /// sender condition): looks up each key the message could meet, among the shapes the group
    /// uses, and checks the rules found.
    fn group(&mut self, tree: u8, sender_name: Option<&str>) {
        let group = self.index.group_key(tree, sender_name);
        let Some(counts) = self.index.groups.get(&group) else {
            return;
        };
        for header in [
            Header::None,
            Header::Member,
            Header::Interface,
            Header::Path,
        ] {
            for with_arg0 in [false, true] {
                let used = counts.get(usize::from(shape(header, with_arg0)));
                if used.is_none_or(|&n| n == 0) {
                    continue;
                }
                let Some(value_hash) = self.header_hash(header) else {
                    continue;
                };
                let arg0_hash = if with_arg0 {
                    match self.arg0_hash() {
                        Some(h) => Some(h),
                        None => continue,
                    }
                } else {
                    None
                };
                let ids = self
                    .index
                    .buckets
                    .get(&key(group, header, value_hash, arg0_hash));
                for &id in ids.into_iter().flatten() {
                    self.check(id, sender_name);
                }
            }
        }
    }

    /// The hash of the message's value for `header`, `None` if the message has no such field.
    fn header_hash(&mut self, header: Header) -> Option<u64> {
        let value = match header {
            Header::None => Some(""),
            Header::Member => self.msg.member,
            Header::Interface => self.msg.interface,
            Header::Path => self.msg.path,
        }?;
        let index = self.index;
        let slot = self.header_hashes.get_mut(header as usize)?;
        Some(*slot.get_or_insert_with(|| index.str_hash(value)))
    }

    /// The hash of the message's arg0, `None` if that is not a string.
    fn arg0_hash(&mut self) -> Option<u64> {
        if self.arg0_hash.is_none() {
            let hash = match self.msg.arg(0) {
                Some(Arg::Str(a)) => Some(self.index.str_hash(a)),
                _ => None,
            };
            self.arg0_hash = Some(hash);
        }
        self.arg0_hash.flatten()
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
            || !rule.matches_except_sender(&mut self.msg, self.names, self.addressed)
        {
            return;
        }
        self.out.push(entry.owner);
    }
}

/// The shape-of-key number within a group.
fn shape(header: Header, with_arg0: bool) -> u8 {
    (header as u8) << 1 | u8::from(with_arg0)
}

/// The hash naming a key within `group`, from the hashes of the header value and arg0.
fn key(group: u64, header: Header, value_hash: u64, arg0_hash: Option<u64>) -> u64 {
    let mut h = KeyHasher(group);
    h.write_u8(header as u8);
    h.mix(value_hash);
    match arg0_hash {
        None => h.write_u8(0),
        Some(a) => {
            h.write_u8(1);
            h.mix(a);
        }
    }
    h.finish()
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

/// A fast seeded hash for group and key names: a word at a time, then a full-avalanche finish.
/// (Not collision-resistant against an adversary, nor does it need to be; see the module docs.)
#[derive(Debug, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finaliser.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word.iter_mut().zip(rest).for_each(|(w, b)| *w = *b);
            self.mix(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

/// Passes through map keys that are already hashes.
#[derive(Debug, Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
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
        assert!(index.buckets.is_empty() && index.groups.is_empty() && index.by_peer.is_empty());
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
