//! Policy evaluation over arbitrary rules and messages.
//!
//! A `Policy` is built from arbitrary rules in arbitrary contexts, a connection's rules are
//! picked for an arbitrary user, groups and console state, and arbitrary sends, receives and
//! name ownerships are checked. Properties:
//!
//! * a decision names the rule that made it, of the right kind and with the same verdict, and
//!   exactly when the `*_matches` counts are non-zero; no rule means a denial;
//! * contexts apply in dbus-daemon's documented order (default, groups, user, console,
//!   mandatory): the same rules written in that order in the default context decide alike;
//! * a final `<allow>` for every message type (not a blanket rule, so it hides nothing) in the
//!   mandatory context allows every send, receive and ownership, and a final `<deny>` denies
//!   them all; a final blanket rule does the same, and so do final `user="*"` admission rules.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tram_bus::policy::{
    ConnectionPolicy, Context, Decision, IdMatch, MessageKind, MessageRule, NameHolder, NameMatch,
    Policy, ReceiveCheck, Rule, RuleKind, SendCheck,
};

#[derive(Debug, Arbitrary)]
struct Input {
    rules: Vec<(Ctx, RuleSpec)>,
    uid: Option<u8>,
    groups: Vec<u8>,
    at_console: bool,
    sends: Vec<SendSpec>,
    receives: Vec<ReceiveSpec>,
    owns: Vec<Word>,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Ctx {
    Default,
    Group(u8),
    User(u8),
    AtConsole(bool),
    Mandatory,
}

#[derive(Debug, Arbitrary)]
struct RuleSpec {
    allow: bool,
    log: bool,
    kind: KindSpec,
}

#[derive(Debug, Arbitrary)]
enum KindSpec {
    Send(MessageRuleSpec),
    Receive(MessageRuleSpec),
    Own(Option<NameMatchSpec>),
    User(Option<u8>),
    Group(Option<u8>),
}

#[derive(Debug, Arbitrary)]
struct MessageRuleSpec {
    message_type: Option<Kind>,
    path: Option<Word>,
    interface: Option<Word>,
    member: Option<Word>,
    error: Option<Word>,
    peer: Option<NameMatchSpec>,
    broadcast: Option<bool>,
    requested_reply: Option<bool>,
    eavesdrop: bool,
    min_fds: u8,
    max_fds: Option<u8>,
}

#[derive(Debug, Arbitrary)]
enum NameMatchSpec {
    Exact(Word),
    Prefix(Word),
}

#[derive(Debug, Clone, Copy, PartialEq, Arbitrary)]
enum Kind {
    MethodCall,
    MethodReturn,
    Error,
    Signal,
}

#[derive(Debug, Arbitrary)]
struct SendSpec {
    kind: Kind,
    path: Option<Word>,
    interface: Option<Word>,
    member: Option<Word>,
    error_name: Option<Word>,
    has_destination: bool,
    receiver: Vec<Word>,
    requested_reply: bool,
    unix_fds: u8,
}

#[derive(Debug, Arbitrary)]
struct ReceiveSpec {
    kind: Kind,
    path: Option<Word>,
    interface: Option<Word>,
    member: Option<Word>,
    error_name: Option<Word>,
    sender: Vec<Word>,
    requested_reply: bool,
    eavesdropping: bool,
    unix_fds: u8,
}

/// A name, path or other word: mostly from a small vocabulary, so that rules and messages
/// meet, sometimes anything.
#[derive(Debug, Clone)]
struct Word(String);

const WORDS: &[&str] = &[
    "a",
    "a.b",
    "a.b.c",
    "a.bc",
    ":1.7",
    "org.freedesktop.DBus",
    "/",
    "/a",
    "/a/b",
    "a.I",
    "M",
    "a.E",
    "*",
    "",
];

impl<'a> Arbitrary<'a> for Word {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let i = u.choose_index(WORDS.len() + 1)?;
        Ok(Word(match WORDS.get(i) {
            Some(w) => (*w).to_owned(),
            None => u.arbitrary()?,
        }))
    }
}

impl Kind {
    fn wire(self) -> MessageKind {
        match self {
            Kind::MethodCall => MessageKind::MethodCall,
            Kind::MethodReturn => MessageKind::MethodReturn,
            Kind::Error => MessageKind::Error,
            Kind::Signal => MessageKind::Signal,
        }
    }
}

const ALL_KINDS: [MessageKind; 4] = [
    MessageKind::MethodCall,
    MessageKind::MethodReturn,
    MessageKind::Error,
    MessageKind::Signal,
];

fuzz_target!(|input: Input| {
    let rules: Vec<(Context, Rule)> = input
        .rules
        .iter()
        .map(|(c, r)| (context(*c), rule(r)))
        .collect();
    let uid = input.uid.map(u32::from);
    let groups: Vec<u32> = input.groups.iter().map(|&g| u32::from(g)).collect();
    let policy = Policy::new(rules.clone());
    let cp = policy.for_connection(uid, &groups, input.at_console);
    let _ = policy.allows_user(uid.unwrap_or(0), &groups, 0);

    // Decisions name their rule.
    let sends: Vec<_> = input.sends.iter().map(Send::new).collect();
    let receives: Vec<_> = input.receives.iter().map(Receive::new).collect();
    for s in &sends {
        let d = cp.check_send(&s.check());
        check_decision(&cp, d, cp.send_matches(&s.check()), "send", true);
        assert!(matches!(
            rule_of(&cp, d).map(|r| &r.kind),
            None | Some(RuleKind::Send(_))
        ));
    }
    for r in &receives {
        let d = cp.check_receive(&r.check());
        check_decision(&cp, d, cp.receive_matches(&r.check()), "receive", false);
        assert!(matches!(
            rule_of(&cp, d).map(|r| &r.kind),
            None | Some(RuleKind::Receive(_))
        ));
    }
    for name in &input.owns {
        let d = cp.check_own(&name.0);
        if d.rule.is_none() {
            assert!(!d.allowed, "own: allowed without a rule");
        }
        assert!(!d.log, "log on an own rule");
        assert!(matches!(
            rule_of(&cp, d).map(|r| &r.kind),
            None | Some(RuleKind::Own(_))
        ));
        if let Some(r) = rule_of(&cp, d) {
            assert_eq!(r.allow, d.allowed);
        }
    }

    // Contexts apply in the documented order.
    let flat = Policy::new(flattened(&rules, uid, &groups, input.at_console));
    let fcp = flat.for_connection(uid, &groups, input.at_console);
    for s in &sends {
        same(
            &cp,
            cp.check_send(&s.check()),
            &fcp,
            fcp.check_send(&s.check()),
            "send",
        );
    }
    for r in &receives {
        same(
            &cp,
            cp.check_receive(&r.check()),
            &fcp,
            fcp.check_receive(&r.check()),
            "receive",
        );
    }
    for name in &input.owns {
        same(
            &cp,
            cp.check_own(&name.0),
            &fcp,
            fcp.check_own(&name.0),
            "own",
        );
    }

    // A final rule for every message type decides everything, one way or the other.
    for allow in [true, false] {
        for blanket in [false, true] {
            let mut with = rules.clone();
            with.extend(catch_all(allow, blanket, &input.owns));
            let cp = Policy::new(with.clone()).for_connection(uid, &groups, input.at_console);
            for s in &sends {
                assert_eq!(
                    cp.check_send(&s.check()).allowed,
                    allow,
                    "send {s:?}, blanket {blanket}"
                );
            }
            for r in &receives {
                assert_eq!(
                    cp.check_receive(&r.check()).allowed,
                    allow,
                    "receive {r:?}, blanket {blanket}"
                );
            }
            for name in &input.owns {
                assert_eq!(
                    cp.check_own(&name.0).allowed,
                    allow,
                    "own {name:?}, blanket {blanket}"
                );
            }
        }
        let mut with = rules.clone();
        with.push((
            Context::Mandatory,
            plain(allow, RuleKind::User(IdMatch::Any)),
        ));
        let u = uid.unwrap_or(0);
        assert_eq!(
            Policy::new(with).allows_user(u, &groups, 0),
            allow,
            "admission of {u}"
        );
    }
});

fn check_decision(cp: &ConnectionPolicy, d: Decision, matched: u32, what: &str, honour_log: bool) {
    assert_eq!(
        d.rule.is_some(),
        matched > 0,
        "{what}: rule {:?} with {matched} matches",
        d.rule
    );
    match rule_of(cp, d) {
        Some(r) => {
            assert_eq!(
                r.allow, d.allowed,
                "{what}: verdict against the deciding rule"
            );
            assert_eq!(d.log, honour_log && r.log, "{what}: log flag");
        }
        None => {
            assert!(d.rule.is_none(), "{what}: decision names an unknown rule");
            assert!(!d.allowed, "{what}: allowed without a rule");
            assert!(!d.log, "{what}: log without a rule");
        }
    }
}

fn rule_of(cp: &ConnectionPolicy, d: Decision) -> Option<&Rule> {
    d.rule.and_then(|id| cp.rule(id))
}

/// Two decisions from two policies agree on the verdict, the log flag and the deciding rule.
fn same(a: &ConnectionPolicy, da: Decision, b: &ConnectionPolicy, db: Decision, what: &str) {
    assert_eq!(
        da.allowed, db.allowed,
        "{what}: verdict with flattened contexts"
    );
    assert_eq!(da.log, db.log, "{what}: log flag with flattened contexts");
    assert_eq!(
        rule_of(a, da),
        rule_of(b, db),
        "{what}: deciding rule with flattened contexts"
    );
}

/// The rules that apply to the connection, in the order dbus-daemon's manual gives, all in the
/// default context.
fn flattened(
    rules: &[(Context, Rule)],
    uid: Option<u32>,
    groups: &[u32],
    console: bool,
) -> Vec<(Context, Rule)> {
    let pick = |want: &dyn Fn(Context) -> bool| {
        rules
            .iter()
            .filter(|(c, _)| want(*c))
            .map(|(_, r)| (Context::Default, r.clone()))
            .collect::<Vec<_>>()
    };
    let mut out = pick(&|c| c == Context::Default);
    if let Some(uid) = uid {
        let mut seen = Vec::new();
        for &g in groups {
            if !seen.contains(&g) {
                seen.push(g);
                out.extend(pick(&|c| c == Context::Group(g)));
            }
        }
        out.extend(pick(&|c| c == Context::User(uid)));
        out.extend(pick(&|c| c == Context::AtConsole(console)));
    }
    // Admission rules of the default and mandatory contexts only matter to `allows_user`,
    // which this policy is not asked; their order does not matter here.
    out.extend(pick(&|c| c == Context::Mandatory));
    out
}

/// Final mandatory rules deciding every message and every name in `owns`: one per message type
/// (which hide nothing) or one blanket rule of each kind (which hide everything before them).
fn catch_all(allow: bool, blanket: bool, owns: &[Word]) -> Vec<(Context, Rule)> {
    // Requested replies or not, eavesdropped or not: an <allow> needs requested_reply="false"
    // and eavesdrop="true" to cover them all, a <deny> needs requested_reply="true" and no
    // eavesdrop (which would restrict it to eavesdropped messages).
    let base = MessageRule {
        requested_reply: Some(!allow),
        eavesdrop: allow,
        ..MessageRule::default()
    };
    let mut out = Vec::new();
    let types: Vec<Option<MessageKind>> = if blanket {
        vec![None]
    } else {
        ALL_KINDS.iter().copied().map(Some).collect()
    };
    for t in types {
        let m = MessageRule {
            message_type: t,
            ..base.clone()
        };
        out.push((Context::Mandatory, plain(allow, RuleKind::Send(m.clone()))));
        out.push((Context::Mandatory, plain(allow, RuleKind::Receive(m))));
    }
    if blanket {
        out.push((Context::Mandatory, plain(allow, RuleKind::Own(None))));
    } else {
        for name in owns {
            let exact = NameMatch::Exact(name.0.as_str().into());
            out.push((Context::Mandatory, plain(allow, RuleKind::Own(Some(exact)))));
        }
    }
    out
}

fn plain(allow: bool, kind: RuleKind) -> Rule {
    Rule {
        allow,
        kind,
        log: false,
        origin: None,
    }
}

fn context(c: Ctx) -> Context {
    match c {
        Ctx::Default => Context::Default,
        Ctx::Group(g) => Context::Group(u32::from(g)),
        Ctx::User(u) => Context::User(u32::from(u)),
        Ctx::AtConsole(b) => Context::AtConsole(b),
        Ctx::Mandatory => Context::Mandatory,
    }
}

fn rule(r: &RuleSpec) -> Rule {
    let id = |v: Option<u8>| v.map_or(IdMatch::Any, |v| IdMatch::Id(u32::from(v)));
    let kind = match &r.kind {
        KindSpec::Send(m) => RuleKind::Send(message_rule(m)),
        KindSpec::Receive(m) => RuleKind::Receive(message_rule(m)),
        KindSpec::Own(n) => RuleKind::Own(n.as_ref().map(name_match)),
        KindSpec::User(u) => RuleKind::User(id(*u)),
        KindSpec::Group(g) => RuleKind::Group(id(*g)),
    };
    Rule {
        allow: r.allow,
        kind,
        log: r.log,
        origin: None,
    }
}

fn message_rule(m: &MessageRuleSpec) -> MessageRule {
    let text = |w: &Option<Word>| w.as_ref().map(|w| w.0.as_str().into());
    MessageRule {
        message_type: m.message_type.map(Kind::wire),
        path: text(&m.path),
        interface: text(&m.interface),
        member: text(&m.member),
        error: text(&m.error),
        peer: m.peer.as_ref().map(name_match),
        broadcast: m.broadcast,
        requested_reply: m.requested_reply,
        eavesdrop: m.eavesdrop,
        min_fds: u32::from(m.min_fds),
        max_fds: m.max_fds.map_or(u32::MAX, u32::from),
    }
}

fn name_match(n: &NameMatchSpec) -> NameMatch {
    match n {
        NameMatchSpec::Exact(w) => NameMatch::Exact(w.0.as_str().into()),
        NameMatchSpec::Prefix(w) => NameMatch::Prefix(w.0.as_str().into()),
    }
}

/// A send, owning its strings, from which a `SendCheck` borrows.
#[derive(Debug)]
struct Send {
    kind: MessageKind,
    fields: [Option<String>; 4],
    has_destination: bool,
    receiver: Vec<String>,
    requested_reply: bool,
    unix_fds: u32,
}

impl Send {
    fn new(s: &SendSpec) -> Send {
        Send {
            kind: s.kind.wire(),
            fields: fields([&s.path, &s.interface, &s.member, &s.error_name]),
            has_destination: s.has_destination,
            receiver: s.receiver.iter().map(|w| w.0.clone()).collect(),
            requested_reply: s.requested_reply,
            unix_fds: u32::from(s.unix_fds),
        }
    }

    fn check(&self) -> SendCheck<'_> {
        let [path, interface, member, error_name] = self.fields.each_ref().map(|f| f.as_deref());
        SendCheck {
            message_type: self.kind,
            path,
            interface,
            member,
            error_name,
            has_destination: self.has_destination,
            receiver: &self.receiver as &dyn NameHolder,
            requested_reply: self.requested_reply,
            unix_fds: self.unix_fds,
        }
    }
}

/// A delivery, owning its strings, from which a `ReceiveCheck` borrows.
#[derive(Debug)]
struct Receive {
    kind: MessageKind,
    fields: [Option<String>; 4],
    sender: Vec<String>,
    requested_reply: bool,
    eavesdropping: bool,
    unix_fds: u32,
}

impl Receive {
    fn new(r: &ReceiveSpec) -> Receive {
        Receive {
            kind: r.kind.wire(),
            fields: fields([&r.path, &r.interface, &r.member, &r.error_name]),
            sender: r.sender.iter().map(|w| w.0.clone()).collect(),
            requested_reply: r.requested_reply,
            eavesdropping: r.eavesdropping,
            unix_fds: u32::from(r.unix_fds),
        }
    }

    fn check(&self) -> ReceiveCheck<'_> {
        let [path, interface, member, error_name] = self.fields.each_ref().map(|f| f.as_deref());
        ReceiveCheck {
            message_type: self.kind,
            path,
            interface,
            member,
            error_name,
            sender: &self.sender as &dyn NameHolder,
            requested_reply: self.requested_reply,
            eavesdropping: self.eavesdropping,
            unix_fds: self.unix_fds,
        }
    }
}

fn fields(words: [&Option<Word>; 4]) -> [Option<String>; 4] {
    words.map(|w| w.as_ref().map(|w| w.0.clone()))
}
