//! `MatchRule::parse` on arbitrary text.
//!
//! Every accepted rule must survive its canonical text: `to_string()` parses again to an equal
//! rule (with an equal hash) and writes the same text. Its parts must be valid (interface,
//! member, path), its argument conditions sorted by index below 64. And the rule must match a
//! message built to meet it (sent by the bus driver, since peers cannot be made outside
//! tram-bus), and not one whose member or string argument differs.
#![no_main]

use std::hash::{BuildHasher, RandomState};

use libfuzzer_sys::fuzz_target;
use tram_bus::PeerId;
use tram_bus::match_rule::{
    ArgKind, MAX_ARGS, MAX_RULE_LEN, MatchRule, MatchRuleError, NameOwners,
};
use tram_wire::names::{is_valid_interface, is_valid_member, is_valid_object_path};
use tram_wire::{Message, MessageBuilder, MessageType};

const DRIVER: &str = "org.freedesktop.DBus";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rule = match MatchRule::parse(text) {
        Ok(rule) => rule,
        Err(e) => {
            if text.len() > MAX_RULE_LEN {
                assert_eq!(e, MatchRuleError::TooLong { len: text.len() });
            }
            assert!(!e.to_string().is_empty());
            assert!(e.error_name().starts_with("org.freedesktop.DBus.Error."));
            return;
        }
    };
    assert!(
        text.len() <= MAX_RULE_LEN,
        "a rule of {} bytes accepted",
        text.len()
    );
    check_parts(&rule);

    let canonical = rule.to_string();
    if canonical.len() <= MAX_RULE_LEN {
        let again = MatchRule::parse(&canonical)
            .unwrap_or_else(|e| panic!("canonical text {canonical:?} refused: {e}"));
        assert_eq!(
            again, rule,
            "canonical text {canonical:?} means another rule"
        );
        let hasher = RandomState::new();
        assert_eq!(
            hasher.hash_one(&again),
            hasher.hash_one(&rule),
            "hash of equal rules"
        );
        assert_eq!(again.to_string(), canonical, "canonical text not stable");
    }
    check_matching(&rule);
});

fn check_parts(rule: &MatchRule) {
    assert!(
        rule.path().is_none() || rule.path_namespace().is_none(),
        "both path and path_namespace"
    );
    for path in [rule.path(), rule.path_namespace()].into_iter().flatten() {
        assert!(is_valid_object_path(path), "path {path:?}");
    }
    if let Some(i) = rule.interface() {
        assert!(is_valid_interface(i), "interface {i:?}");
    }
    if let Some(m) = rule.member() {
        assert!(is_valid_member(m), "member {m:?}");
    }
    if let Some(t) = rule.message_type() {
        assert!(!matches!(t, MessageType::Unknown(_)), "type {t:?}");
    }
    let indexes: Vec<u8> = rule.args().iter().map(|a| a.index()).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "argument indexes {indexes:?}"
    );
    assert!(
        indexes.iter().all(|&i| usize::from(i) < MAX_ARGS),
        "{indexes:?}"
    );
    for a in rule.args() {
        if a.kind() == ArgKind::Namespace {
            assert_eq!(
                a.index(),
                0,
                "a namespace condition on argument {}",
                a.index()
            );
        }
    }
}

/// Nobody owns any name: only the bus driver sends, and nothing is addressed to a peer.
struct NoOwners;

impl NameOwners for NoOwners {
    fn primary_owner(&self, _name: &str) -> Option<PeerId> {
        None
    }

    fn for_each_owned_name(&self, _peer: PeerId, _f: &mut dyn FnMut(&str)) {}
}

/// Builds a message from the bus driver meeting every condition of `rule` and checks that it
/// matches; then breaks one condition and checks that it no longer does.
fn check_matching(rule: &MatchRule) {
    if rule.sender().is_some_and(|s| s != DRIVER)
        || rule.destination().is_some_and(|d| d != DRIVER)
        || rule.args().iter().any(|a| a.value().contains('\0'))
    {
        return;
    }
    let member = rule.member().unwrap_or("M");
    let arg = |i: u8| {
        rule.args()
            .iter()
            .find(|a| a.index() == i)
            .map_or("", |a| a.value())
    };
    let Some(msg) = build(rule, member, &arg) else {
        return;
    };
    // A message with a DESTINATION only matches eavesdropping rules.
    let want = rule.destination().is_none() || rule.eavesdrop();
    assert_eq!(
        rule.matches(&msg, &NoOwners, None, None),
        want,
        "rule {rule} against a message built to match it"
    );
    if !want {
        return;
    }

    if let Some(m) = rule.member().filter(|m| m.len() < 255) {
        let other = format!("{m}x");
        if let Some(msg) = build(rule, &other, &arg) {
            assert!(
                !rule.matches(&msg, &NoOwners, None, None),
                "rule {rule} matches member {other}"
            );
        }
    }
    if let Some(cond) = rule.args().iter().find(|a| a.kind() == ArgKind::Str) {
        let other = format!("{}x", cond.value());
        let changed = |i: u8| {
            if i == cond.index() {
                other.as_str()
            } else {
                arg(i)
            }
        };
        if let Some(msg) = build(rule, member, &changed) {
            assert!(
                !rule.matches(&msg, &NoOwners, None, None),
                "rule {rule} matches arg{} {other:?}",
                cond.index()
            );
        }
    }
}

/// A signal or method call with the rule's path, interface and destination, `member`, and as
/// many string arguments as the rule's conditions reach, each `arg(i)`. `None` for rules no
/// such message can meet (replies and errors carry no member, path or interface).
fn build<'a>(rule: &MatchRule, member: &str, arg: &dyn Fn(u8) -> &'a str) -> Option<Message> {
    let path = rule.path().or(rule.path_namespace()).unwrap_or("/");
    let interface = rule.interface().unwrap_or("org.example.I");
    let mut b = match rule.message_type() {
        None | Some(MessageType::Signal) => MessageBuilder::signal(path, interface, member),
        Some(MessageType::MethodCall) => MessageBuilder::method_call(path, Some(interface), member),
        Some(_) => return None,
    };
    if let Some(d) = rule.destination() {
        b = b.destination(d);
    }
    let count = rule.args().last().map_or(0, |a| a.index() + 1);
    if count > 0 {
        let sig = "s".repeat(usize::from(count));
        b = b.body(&sig, |w| {
            for i in 0..count {
                w.string(arg(i));
            }
        });
    }
    Some(b.build(1))
}
