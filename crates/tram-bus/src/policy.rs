//! Message bus policy: dbus-daemon's `<policy>` rules and their evaluation.
//!
//! A [`Policy`] is every `<allow>`/`<deny>` rule of a bus configuration, each filed under the
//! context of the `<policy>` element it came from ([`Context`]). It answers one bus-wide
//! question itself, [`Policy::allows_user`] (may a connection of this user stay?), and builds a
//! [`ConnectionPolicy`] for each connection at connect time ([`Policy::for_connection`]). The
//! connection's policy answers the per-message questions: may it send this
//! ([`ConnectionPolicy::check_send`]), receive this ([`ConnectionPolicy::check_receive`]), own
//! this name ([`ConnectionPolicy::check_own`])?
//!
//! The semantics are dbus-daemon's (1.14), including the parts its manual leaves out. Each point
//! below was confirmed against a running dbus-daemon 1.14 driven with dbus-python:
//!
//! * A connection's rules are, in order: `context="default"`, then `group=` for each of the
//!   connection's groups, then `user=`, then `at_console="true"` *or* `at_console="false"`
//!   (whichever holds), then `context="mandatory"`; file order within each. The **last** rule that
//!   matches decides. Without a user id (an ANONYMOUS connection) only default and mandatory apply.
//! * No matching rule means **deny**, for sending, owning *and* receiving (a configuration without
//!   receive rules cannot even get its `Hello` reply).
//! * Message rules test header fields by plain string equality. An absent path, member or error
//!   name does **not** stop a rule from matching: `<deny send_error="a.E"/>` denies every method
//!   call. An absent interface stops an `<allow>` with an interface from matching but not a
//!   `<deny>` (the manual's warning about `<deny send_interface=…/>`). `*` stands for "any", field
//!   present or not.
//! * `send_destination` matches when the receiving connection is the primary owner of that name or
//!   is queued for it; `send_destination_prefix` when it owns or is queued for any name in the
//!   prefix's namespace; `receive_sender` likewise for the sending connection. Broadcasts are
//!   checked once per receiver, so `<deny send_destination="a.b" send_type="signal"/>` keeps
//!   broadcast signals from the owner of `a.b`. Messages to the bus driver, or to a name being
//!   activated, are checked against the destination name itself ([`NameHolder`]).
//! * `send_broadcast="true"` matches signals without a destination; `"false"` everything else.
//! * Replies (method returns and errors): an `<allow>` applies only to requested replies unless it
//!   says `*_requested_reply="false"` or `eavesdrop="true"`; a `<deny>` applies only to
//!   unrequested replies unless it says `*_requested_reply="true"`.
//! * `eavesdrop` on receive rules: an `<allow>` applies to eavesdropped messages only with
//!   `eavesdrop="true"`; a `<deny eavesdrop="true">` applies *only* to eavesdropped messages. On
//!   send rules `eavesdrop` changes nothing but the reply rule above (a send `<deny>` with
//!   `eavesdrop="true"` still denies ordinary sends).
//! * `min_fds`/`max_fds` bound the number of unix fds the message carries.
//! * `log="true"` on the send rule that allows a message makes dbus-daemon log "Would reject
//!   message"; on receive and own rules it does nothing ([`Decision::log`]).
//! * When a connection's list is built, dbus-daemon drops every rule that precedes, in the same
//!   list, a rule of the same kind naming no type, path, interface, member, error or peer name
//!   (`own="*"` for own rules) — even when that later rule is narrowed by `send_broadcast`,
//!   `eavesdrop`, `*_requested_reply` or fd counts. So `<deny send_broadcast="true"/>` at the end
//!   of a policy makes every earlier send rule disappear. tram does the same, since configurations
//!   are written against that behaviour.
//! * dbus-daemon checks no send rule for a connection's `Hello` (`<deny
//!   send_destination="org.freedesktop.DBus"/>` still lets clients connect), but the reply to
//!   `Hello`, like every message from the bus driver, goes through the receiver's receive rules;
//!   replies from the driver count as requested.
//! * Connection admission: the bus owner's uid is admitted by default; then the `user=`/`group=`
//!   rules of the default and mandatory contexts decide, last match wins. Such rules inside
//!   `at_console` policies are accepted by dbus-daemon but never consulted.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The message types policy rules can name (`send_type`/`receive_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `method_call`
    MethodCall,
    /// `method_return`
    MethodReturn,
    /// `error`
    Error,
    /// `signal`
    Signal,
}

impl MessageKind {
    /// The kind of a wire message type; `None` for unknown types, which the bus never routes.
    pub fn from_wire(t: tram_wire::MessageType) -> Option<MessageKind> {
        match t {
            tram_wire::MessageType::MethodCall => Some(MessageKind::MethodCall),
            tram_wire::MessageType::MethodReturn => Some(MessageKind::MethodReturn),
            tram_wire::MessageType::Error => Some(MessageKind::Error),
            tram_wire::MessageType::Signal => Some(MessageKind::Signal),
            tram_wire::MessageType::Unknown(_) => None,
        }
    }

    /// The name configuration files and dbus-daemon's messages use: `method_call`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::MethodCall => "method_call",
            MessageKind::MethodReturn => "method_return",
            MessageKind::Error => "error",
            MessageKind::Signal => "signal",
        }
    }

    /// Parses a name as [`MessageKind::as_str`] writes it.
    pub fn from_name(name: &str) -> Option<MessageKind> {
        match name {
            "method_call" => Some(MessageKind::MethodCall),
            "method_return" => Some(MessageKind::MethodReturn),
            "error" => Some(MessageKind::Error),
            "signal" => Some(MessageKind::Signal),
            _ => None,
        }
    }

    /// Whether this is a reply (method return or error), to which `*_requested_reply` applies.
    pub fn is_reply(self) -> bool {
        matches!(self, MessageKind::MethodReturn | MessageKind::Error)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `<policy>` element a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// `context="default"`: applies to every connection, first.
    Default,
    /// `group="…"`: applies to connections whose user is in this group.
    Group(u32),
    /// `user="…"`: applies to connections of this user.
    User(u32),
    /// `at_console="true"` or `"false"`: applies to connections whose user is (not) at the console.
    AtConsole(bool),
    /// `context="mandatory"`: applies to every connection, last.
    Mandatory,
}

/// One `<allow>` or `<deny>` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `true` for `<allow>`, `false` for `<deny>`.
    pub allow: bool,
    /// What the rule is about, and what it matches.
    pub kind: RuleKind,
    /// `log="true"`: see [`Decision::log`].
    pub log: bool,
    /// Where the rule was written, for diagnostics; `None` for built-in rules.
    pub origin: Option<RuleOrigin>,
}

/// What a rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// A rule with `send_*` attributes.
    Send(MessageRule),
    /// A rule with `receive_*` attributes, or `eavesdrop` alone.
    Receive(MessageRule),
    /// `own="…"` (`None` for `own="*"`) or `own_prefix="…"`.
    Own(Option<NameMatch>),
    /// `user="…"`: connection admission.
    User(IdMatch),
    /// `group="…"`: connection admission.
    Group(IdMatch),
}

/// The conditions of a send or receive rule. `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRule {
    /// `send_type`/`receive_type`.
    pub message_type: Option<MessageKind>,
    /// `send_path`/`receive_path`.
    pub path: Option<Box<str>>,
    /// `send_interface`/`receive_interface`.
    pub interface: Option<Box<str>>,
    /// `send_member`/`receive_member`.
    pub member: Option<Box<str>>,
    /// `send_error`/`receive_error`.
    pub error: Option<Box<str>>,
    /// The other end: `send_destination`/`send_destination_prefix` for send rules, the message's
    /// receiver; `receive_sender` for receive rules, its sender.
    pub peer: Option<NameMatch>,
    /// `send_broadcast` (send rules only).
    pub broadcast: Option<bool>,
    /// `send_requested_reply`/`receive_requested_reply`; `None` takes the default, `true` for
    /// `<allow>` and `false` for `<deny>`.
    pub requested_reply: Option<bool>,
    /// `eavesdrop`.
    pub eavesdrop: bool,
    /// `min_fds`.
    pub min_fds: u32,
    /// `max_fds`.
    pub max_fds: u32,
}

impl Default for MessageRule {
    /// A rule matching every message.
    fn default() -> MessageRule {
        MessageRule {
            message_type: None,
            path: None,
            interface: None,
            member: None,
            error: None,
            peer: None,
            broadcast: None,
            requested_reply: None,
            eavesdrop: false,
            min_fds: 0,
            max_fds: u32::MAX,
        }
    }
}

/// A bus name condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NameMatch {
    /// Exactly this name.
    Exact(Box<str>),
    /// This name or any name below it: `a.b` matches `a.b` and `a.b.c`, not `a.bc`.
    Prefix(Box<str>),
}

impl NameMatch {
    /// Whether `name` meets the condition.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Exact(n) => name == &**n,
            NameMatch::Prefix(p) => in_namespace(name, p),
        }
    }
}

/// A user or group condition of an admission rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdMatch {
    /// `*`: everyone.
    Any,
    /// This numeric id.
    Id(u32),
}

/// Where a rule was written: configuration file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The file, as the configuration loader named it.
    pub file: Arc<str>,
    /// The 1-based line of the rule's element.
    pub line: u32,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Identifies one rule of a [`Policy`]; valid for the policy (and its connection policies) only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u32);

/// The names held by one end of a message, as rules ask about them.
///
/// The bus implements this over its name registry for a connection: its unique name plus every
/// well-known name it owns *or is queued for*. For a message to the bus driver, or a message
/// that activates a service, the destination name alone stands for the receiver: pass
/// `&["org.freedesktop.DBus"]` or `&[name]` (arrays, slices and vectors of strings implement
/// this trait).
pub trait NameHolder {
    /// Whether `name` is among the held names.
    fn holds(&self, name: &str) -> bool;

    /// Whether any held name equals `prefix` or starts with `prefix` followed by a dot.
    fn holds_in_namespace(&self, prefix: &str) -> bool;
}

impl<S: AsRef<str>> NameHolder for [S] {
    fn holds(&self, name: &str) -> bool {
        self.iter().any(|n| n.as_ref() == name)
    }

    fn holds_in_namespace(&self, prefix: &str) -> bool {
        self.iter().any(|n| in_namespace(n.as_ref(), prefix))
    }
}

impl<S: AsRef<str>, const N: usize> NameHolder for [S; N] {
    fn holds(&self, name: &str) -> bool {
        self[..].holds(name)
    }

    fn holds_in_namespace(&self, prefix: &str) -> bool {
        self[..].holds_in_namespace(prefix)
    }
}

impl<S: AsRef<str>> NameHolder for &[S] {
    fn holds(&self, name: &str) -> bool {
        (**self).holds(name)
    }

    fn holds_in_namespace(&self, prefix: &str) -> bool {
        (**self).holds_in_namespace(prefix)
    }
}

impl<S: AsRef<str>> NameHolder for Vec<S> {
    fn holds(&self, name: &str) -> bool {
        self[..].holds(name)
    }

    fn holds_in_namespace(&self, prefix: &str) -> bool {
        self[..].holds_in_namespace(prefix)
    }
}

/// A message about to be sent, as the sender's send rules see it.
#[derive(Clone, Copy)]
pub struct SendCheck<'a> {
    /// The message type.
    pub message_type: MessageKind,
    /// The PATH header field.
    pub path: Option<&'a str>,
    /// The INTERFACE header field.
    pub interface: Option<&'a str>,
    /// The MEMBER header field.
    pub member: Option<&'a str>,
    /// The ERROR_NAME header field.
    pub error_name: Option<&'a str>,
    /// Whether the message has a DESTINATION header field; a signal without one is a broadcast.
    pub has_destination: bool,
    /// The names of the connection this delivery goes to (see [`NameHolder`]). A broadcast is
    /// checked once for each receiver.
    pub receiver: &'a dyn NameHolder,
    /// For replies: whether the reply answers a call the receiver made and is still waiting for.
    pub requested_reply: bool,
    /// The number of unix fds the message carries.
    pub unix_fds: u32,
}

/// A message about to be delivered, as the receiver's receive rules see it.
#[derive(Clone, Copy)]
pub struct ReceiveCheck<'a> {
    /// The message type.
    pub message_type: MessageKind,
    /// The PATH header field.
    pub path: Option<&'a str>,
    /// The INTERFACE header field.
    pub interface: Option<&'a str>,
    /// The MEMBER header field.
    pub member: Option<&'a str>,
    /// The ERROR_NAME header field.
    pub error_name: Option<&'a str>,
    /// The names of the sending connection (see [`NameHolder`]); for the bus driver's own
    /// messages, `&["org.freedesktop.DBus"]`.
    pub sender: &'a dyn NameHolder,
    /// For replies: whether the reply answers a call the receiver made and is still waiting for.
    /// dbus-daemon passes `false` for eavesdroppers.
    pub requested_reply: bool,
    /// Whether the receiver is not the message's addressee but gets it through an
    /// `eavesdrop='true'` match rule. Broadcasts are never eavesdropped.
    pub eavesdropping: bool,
    /// The number of unix fds the message carries.
    pub unix_fds: u32,
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allowed: bool,
    /// The rule that decided; `None` when no rule matched (a denial).
    pub rule: Option<RuleId>,
    /// The deciding rule is a send rule with `log="true"`. When such a rule *allows* a message,
    /// dbus-daemon logs it as "Would reject message, …" (see [`RejectionText`]); denials are
    /// logged whatever this says.
    pub log: bool,
}

/// All policy rules of a bus.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    inner: Arc<PolicyInner>,
}

/// One connection's rules, built by [`Policy::for_connection`]: cheap to clone, immutable.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    policy: Arc<PolicyInner>,
    send: Box<[u32]>,
    receive: Box<[u32]>,
    own: Box<[u32]>,
    /// The last send rule allows every message: `Some(whether unrequested replies too)`.
    open_send: Option<bool>,
    /// The last receive rule allows every message: `Some((eavesdropped too, unrequested
    /// replies too))`.
    open_receive: Option<(bool, bool)>,
}

impl Policy {
    /// A policy with these rules, in configuration order.
    pub fn new(rules: impl IntoIterator<Item = (Context, Rule)>) -> Policy {
        let mut inner = PolicyInner::default();
        for (context, rule) in rules {
            let Ok(id) = u32::try_from(inner.rules.len()) else {
                break;
            };
            let list = match context {
                Context::Default => &mut inner.default,
                Context::Mandatory => &mut inner.mandatory,
                Context::User(uid) => inner.by_user.entry(uid).or_default(),
                Context::Group(gid) => inner.by_group.entry(gid).or_default(),
                Context::AtConsole(true) => &mut inner.console,
                Context::AtConsole(false) => &mut inner.not_console,
            };
            list.push(id);
            inner.rules.push((context, rule));
        }
        Policy {
            inner: Arc::new(inner),
        }
    }

    /// The policy of dbus-daemon's stock `session.conf`: send and receive anything, eavesdropping
    /// included, own any name. Admission is left to the default (the bus owner only).
    pub fn session() -> Policy {
        let rule = |kind| Rule {
            allow: true,
            kind,
            log: false,
            origin: None,
        };
        let eavesdrop = MessageRule {
            eavesdrop: true,
            ..MessageRule::default()
        };
        Policy::new([
            (Context::Default, rule(RuleKind::Send(eavesdrop.clone()))),
            (Context::Default, rule(RuleKind::Receive(eavesdrop))),
            (Context::Default, rule(RuleKind::Own(None))),
        ])
    }

    /// Every rule with its id and context, in configuration order.
    pub fn rules(&self) -> impl Iterator<Item = (RuleId, Context, &Rule)> {
        self.inner
            .rules
            .iter()
            .enumerate()
            .map(|(i, (c, r))| (RuleId(i as u32), *c, r))
    }

    /// The rule with this id.
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.inner.rule(id)
    }

    /// Whether a connection of user `uid` in `groups` may stay connected. `bus_uid` is the user
    /// the bus runs as (after dropping privileges), admitted when no rule says otherwise.
    pub fn allows_user(&self, uid: u32, groups: &[u32], bus_uid: u32) -> bool {
        let inner = &*self.inner;
        let mut allowed = uid == bus_uid;
        for &i in inner.default.iter().chain(&inner.mandatory) {
            let Some((_, rule)) = inner.rules.get(i as usize) else {
                continue;
            };
            let matches = match rule.kind {
                RuleKind::User(IdMatch::Any) | RuleKind::Group(IdMatch::Any) => true,
                RuleKind::User(IdMatch::Id(u)) => u == uid,
                RuleKind::Group(IdMatch::Id(g)) => groups.contains(&g),
                _ => false,
            };
            if matches {
                allowed = rule.allow;
            }
        }
        allowed
    }

    /// The rules that apply to a connection of user `uid` (`None` for an anonymous connection)
    /// in `groups` (applied in the order given), at the console or not.
    pub fn for_connection(
        &self,
        uid: Option<u32>,
        groups: &[u32],
        at_console: bool,
    ) -> ConnectionPolicy {
        let inner = &*self.inner;
        let mut lists: Vec<&[u32]> = vec![&inner.default];
        if let Some(uid) = uid {
            for (n, gid) in groups.iter().enumerate() {
                if groups.get(..n).is_some_and(|seen| seen.contains(gid)) {
                    continue;
                }
                if let Some(list) = inner.by_group.get(gid) {
                    lists.push(list);
                }
            }
            if let Some(list) = inner.by_user.get(&uid) {
                lists.push(list);
            }
            lists.push(if at_console {
                &inner.console
            } else {
                &inner.not_console
            });
        }
        lists.push(&inner.mandatory);

        let (mut send, mut receive, mut own) = (Vec::new(), Vec::new(), Vec::new());
        for &i in lists.iter().flat_map(|l| l.iter()) {
            let Some((_, rule)) = inner.rules.get(i as usize) else {
                continue;
            };
            let (list, blanket) = match &rule.kind {
                RuleKind::Send(m) => (&mut send, m.is_blanket()),
                RuleKind::Receive(m) => (&mut receive, m.is_blanket()),
                RuleKind::Own(name) => (&mut own, name.is_none()),
                RuleKind::User(_) | RuleKind::Group(_) => continue,
            };
            // dbus-daemon's list optimisation: a rule that names nothing hides all before it.
            if blanket {
                list.clear();
            }
            list.push(i);
        }
        let open = |list: &[u32]| {
            let (_, rule) = inner.rules.get(*list.last()? as usize)?;
            let m = match &rule.kind {
                RuleKind::Send(m) | RuleKind::Receive(m) => m,
                _ => return None,
            };
            (rule.allow && m.is_unconditional()).then_some(m)
        };
        let unrequested_ok = |m: &MessageRule| m.eavesdrop || m.requested_reply == Some(false);
        let open_send = open(&send).map(unrequested_ok);
        let open_receive = open(&receive).map(|m| (m.eavesdrop, unrequested_ok(m)));
        ConnectionPolicy {
            policy: Arc::clone(&self.inner),
            send: send.into(),
            receive: receive.into(),
            own: own.into(),
            open_send,
            open_receive,
        }
    }
}

impl ConnectionPolicy {
    /// Whether every message of this kind is allowed out without looking at it (the last send
    /// rule allows everything): a shortcut for [`ConnectionPolicy::check_send`].
    pub fn sends_anything(&self, is_reply: bool, requested_reply: bool) -> bool {
        matches!(self.open_send, Some(unrequested) if !is_reply || requested_reply || unrequested)
    }

    /// Whether every message of this kind is allowed in without looking at it (the last
    /// receive rule allows everything): a shortcut for [`ConnectionPolicy::check_receive`].
    pub fn receives_anything(
        &self,
        is_reply: bool,
        requested_reply: bool,
        eavesdropping: bool,
    ) -> bool {
        matches!(self.open_receive, Some((eavesdrop, unrequested))
            if (!eavesdropping || eavesdrop) && (!is_reply || requested_reply || unrequested))
    }

    /// May the connection send this message to this receiver?
    pub fn check_send(&self, m: &SendCheck<'_>) -> Decision {
        self.decide(&self.send, |rule| send_rule_matches(rule, m), true)
    }

    /// May the connection receive this message?
    pub fn check_receive(&self, m: &ReceiveCheck<'_>) -> Decision {
        self.decide(&self.receive, |rule| receive_rule_matches(rule, m), false)
    }

    /// May the connection own the well-known name `name`?
    pub fn check_own(&self, name: &str) -> Decision {
        self.decide(
            &self.own,
            |rule| match &rule.kind {
                RuleKind::Own(None) => true,
                RuleKind::Own(Some(m)) => m.matches(name),
                _ => false,
            },
            false,
        )
    }

    /// How many of the connection's send rules match the message: the count dbus-daemon puts in
    /// its "Rejected send message, N matched rules" texts.
    pub fn send_matches(&self, m: &SendCheck<'_>) -> u32 {
        self.count(&self.send, |rule| send_rule_matches(rule, m))
    }

    /// How many of the connection's receive rules match the message (see
    /// [`ConnectionPolicy::send_matches`]).
    pub fn receive_matches(&self, m: &ReceiveCheck<'_>) -> u32 {
        self.count(&self.receive, |rule| receive_rule_matches(rule, m))
    }

    /// The rule with this id.
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.policy.rule(id)
    }

    /// The last matching rule decides: scan from the end and stop at the first match.
    fn decide(&self, list: &[u32], matches: impl Fn(&Rule) -> bool, honour_log: bool) -> Decision {
        for &i in list.iter().rev() {
            let Some((_, rule)) = self.policy.rules.get(i as usize) else {
                continue;
            };
            if matches(rule) {
                return Decision {
                    allowed: rule.allow,
                    rule: Some(RuleId(i)),
                    log: honour_log && rule.log,
                };
            }
        }
        Decision {
            allowed: false,
            rule: None,
            log: false,
        }
    }

    fn count(&self, list: &[u32], matches: impl Fn(&Rule) -> bool) -> u32 {
        let n = list
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .filter(|(_, rule)| matches(rule))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// What a [`RejectionText`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// A send rule denied the message: "Rejected send message".
    Send,
    /// A receive rule denied the message: "Rejected receive message".
    Receive,
    /// A send rule with `log="true"` allowed the message: "Would reject message".
    WouldReject,
}

/// dbus-daemon's text for a refused (or logged) message, as the AccessDenied error message and
/// the log line. `Display` writes, for example:
///
/// ```text
/// Rejected send message, 2 matched rules; type="method_call", sender=":1.1" (uid=1000 pid=42
/// comm="…") interface="a.I" member="M" error name="(unset)" requested_reply="0"
/// destination="a.b" (uid=0 pid=7 comm="…")
/// ```
///
/// (on one line). The bus supplies the connection descriptions (`uid=… pid=… comm="…"`, or
/// `bus` for the driver).
#[derive(Debug, Clone, Copy)]
pub struct RejectionText<'a> {
    /// What happened.
    pub kind: RejectionKind,
    /// From [`ConnectionPolicy::send_matches`] or [`ConnectionPolicy::receive_matches`].
    pub matched_rules: u32,
    /// The message type.
    pub message_type: MessageKind,
    /// The sender's unique name; `None` for the bus driver (written `(unset)`).
    pub sender: Option<&'a str>,
    /// The sender's description; dbus-daemon writes `(bus)` for the driver.
    pub sender_info: &'a str,
    /// The INTERFACE header field.
    pub interface: Option<&'a str>,
    /// The MEMBER header field.
    pub member: Option<&'a str>,
    /// The ERROR_NAME header field.
    pub error_name: Option<&'a str>,
    /// Whether the reply was requested.
    pub requested_reply: bool,
    /// The DESTINATION header field; absent is written `org.freedesktop.DBus`, as dbus-daemon does.
    pub destination: Option<&'a str>,
    /// The receiving connection's description; dbus-daemon writes `bus` for the driver.
    pub receiver_info: &'a str,
}

impl<'a> fmt::Display for RejectionText<'a> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RejectionKind::Send => "Rejected send message",
            RejectionKind::Receive => "Rejected receive message",
            RejectionKind::WouldReject => "Would reject message",
        };
        let unset = |s: Option<&'a str>| s.unwrap_or("(unset)");
        write!(
            f,
            "{what}, {} matched rules; type=\"{}\", sender=\"{}\" ({}) interface=\"{}\" \
             member=\"{}\" error name=\"{}\" requested_reply=\"{}\" destination=\"{}\" ({})",
            self.matched_rules,
            self.message_type,
            unset(self.sender),
            self.sender_info,
            unset(self.interface),
            unset(self.member),
            unset(self.error_name),
            u8::from(self.requested_reply),
            self.destination.unwrap_or("org.freedesktop.DBus"),
            self.receiver_info,
        )
    }
}

/// dbus-daemon's AccessDenied text when `RequestName` is refused by the policy.
pub fn own_denied_text(unique_name: &str, name: &str) -> String {
    format!(
        "Connection \"{unique_name}\" is not allowed to own the service \"{name}\" due to \
         security policies in the configuration file"
    )
}

#[derive(Debug, Default)]
struct PolicyInner {
    rules: Vec<(Context, Rule)>,
    default: Vec<u32>,
    by_group: HashMap<u32, Vec<u32>>,
    by_user: HashMap<u32, Vec<u32>>,
    console: Vec<u32>,
    not_console: Vec<u32>,
    mandatory: Vec<u32>,
}

impl PolicyInner {
    fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(id.0 as usize).map(|(_, r)| r)
    }
}

impl MessageRule {
    /// Matches every message (of either direction), whatever its fields: no condition at all
    /// beyond the reply and eavesdrop rules.
    fn is_unconditional(&self) -> bool {
        self.message_type.is_none()
            && self.path.is_none()
            && self.interface.is_none()
            && self.member.is_none()
            && self.error.is_none()
            && self.peer.is_none()
            && self.broadcast.is_none()
            && self.min_fds == 0
            && self.max_fds == u32::MAX
    }

    /// Names no type, path, interface, member, error or peer: dbus-daemon's criterion for
    /// dropping the rules before it (see the module documentation).
    fn is_blanket(&self) -> bool {
        self.message_type.is_none()
            && self.path.is_none()
            && self.interface.is_none()
            && self.member.is_none()
            && self.error.is_none()
            && self.peer.is_none()
    }

    /// The conditions send and receive rules share: type, reply state, header fields, fds.
    #[allow(clippy::too_many_arguments)]
    fn matches_common(
        &self,
        allow: bool,
        message_type: MessageKind,
        path: Option<&str>,
        interface: Option<&str>,
        member: Option<&str>,
        error_name: Option<&str>,
        requested_reply: bool,
        unix_fds: u32,
    ) -> bool {
        if self.message_type.is_some_and(|t| t != message_type) {
            return false;
        }
        if message_type.is_reply() {
            let wants_requested = self.requested_reply.unwrap_or(allow);
            // An <allow> meant for requested replies does not let unrequested ones through,
            // unless it also allows eavesdropping.
            if allow && wants_requested && !requested_reply && !self.eavesdrop {
                return false;
            }
            // A <deny> meant for unrequested replies leaves requested ones alone.
            if !allow && !wants_requested && requested_reply {
                return false;
            }
        }
        if !field_matches(&self.path, path) {
            return false;
        }
        if let Some(want) = &self.interface {
            match interface {
                // Only a <deny> naming an interface applies to messages without one.
                None if allow => return false,
                None => {}
                Some(have) if have != &**want => return false,
                Some(_) => {}
            }
        }
        if !field_matches(&self.member, member) || !field_matches(&self.error, error_name) {
            return false;
        }
        unix_fds >= self.min_fds && unix_fds <= self.max_fds
    }
}

fn send_rule_matches(rule: &Rule, m: &SendCheck<'_>) -> bool {
    let RuleKind::Send(r) = &rule.kind else {
        return false;
    };
    if !r.matches_common(
        rule.allow,
        m.message_type,
        m.path,
        m.interface,
        m.member,
        m.error_name,
        m.requested_reply,
        m.unix_fds,
    ) {
        return false;
    }
    if let Some(want) = r.broadcast {
        let is_broadcast = !m.has_destination && m.message_type == MessageKind::Signal;
        if want != is_broadcast {
            return false;
        }
    }
    peer_matches(&r.peer, m.receiver)
}

fn receive_rule_matches(rule: &Rule, m: &ReceiveCheck<'_>) -> bool {
    let RuleKind::Receive(r) = &rule.kind else {
        return false;
    };
    // An <allow> covers eavesdropping only when it says so; a <deny eavesdrop="true"> covers
    // nothing else.
    if m.eavesdropping && rule.allow && !r.eavesdrop {
        return false;
    }
    if !m.eavesdropping && !rule.allow && r.eavesdrop {
        return false;
    }
    r.matches_common(
        rule.allow,
        m.message_type,
        m.path,
        m.interface,
        m.member,
        m.error_name,
        m.requested_reply,
        m.unix_fds,
    ) && peer_matches(&r.peer, m.sender)
}

/// A header-field condition: an absent field does not stop a rule from matching.
fn field_matches(want: &Option<Box<str>>, have: Option<&str>) -> bool {
    match (want, have) {
        (Some(want), Some(have)) => have == &**want,
        _ => true,
    }
}

fn peer_matches(want: &Option<NameMatch>, holder: &dyn NameHolder) -> bool {
    match want {
        None => true,
        Some(NameMatch::Exact(name)) => holder.holds(name),
        Some(NameMatch::Prefix(prefix)) => holder.holds_in_namespace(prefix),
    }
}

/// `name` is `prefix` or starts with `prefix` followed by a dot.
fn in_namespace(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule from dbus-daemon's attribute syntax, e.g. `allow send_destination=a.b send_type=*`.
    /// Values cannot contain spaces; `*` means what it means in configuration files.
    fn rule(spec: &str) -> Rule {
        let mut words = spec.split_whitespace();
        let allow = match words.next() {
            Some("allow") => true,
            Some("deny") => false,
            other => panic!("bad rule spec {other:?}"),
        };
        let mut m = MessageRule::default();
        let mut kind = None;
        let mut log = false;
        let text = |v: &str| (v != "*").then(|| Box::<str>::from(v));
        let id = |v: &str| match v {
            "*" => IdMatch::Any,
            v => IdMatch::Id(v.parse().expect("numeric id")),
        };
        let mut is_receive = false;
        let mut is_send = false;
        for word in words {
            let (key, value) = word.split_once('=').expect("key=value");
            let (dir, attr) = match key.split_once('_') {
                Some(("send", a)) => (Some(false), a),
                Some(("receive", a)) => (Some(true), a),
                _ => (None, key),
            };
            match dir {
                Some(true) => is_receive = true,
                Some(false) => is_send = true,
                None => {}
            }
            match (dir, attr) {
                (Some(_), "type") => m.message_type = MessageKind::from_name(value),
                (Some(_), "path") => m.path = text(value),
                (Some(_), "interface") => m.interface = text(value),
                (Some(_), "member") => m.member = text(value),
                (Some(_), "error") => m.error = text(value),
                (Some(_), "requested_reply") => m.requested_reply = Some(value == "true"),
                (Some(false), "destination") | (Some(true), "sender") => {
                    m.peer = text(value).map(NameMatch::Exact)
                }
                (Some(false), "destination_prefix") => {
                    m.peer = Some(NameMatch::Prefix(value.into()))
                }
                (Some(false), "broadcast") => m.broadcast = Some(value == "true"),
                (None, "eavesdrop") => {
                    m.eavesdrop = value == "true";
                    is_receive |= !is_send;
                }
                (None, "min_fds") => m.min_fds = value.parse().expect("number"),
                (None, "max_fds") => m.max_fds = value.parse().expect("number"),
                (None, "log") => log = value == "true",
                (None, "own") => kind = Some(RuleKind::Own(text(value).map(NameMatch::Exact))),
                (None, "own_prefix") => {
                    kind = Some(RuleKind::Own(Some(NameMatch::Prefix(value.into()))))
                }
                (None, "user") => kind = Some(RuleKind::User(id(value))),
                (None, "group") => kind = Some(RuleKind::Group(id(value))),
                _ => panic!("unknown attribute {key}"),
            }
        }
        let kind = kind.unwrap_or_else(|| {
            if is_send {
                RuleKind::Send(m)
            } else {
                assert!(is_receive, "rule {spec} names nothing");
                RuleKind::Receive(m)
            }
        });
        Rule {
            allow,
            kind,
            log,
            origin: None,
        }
    }

    fn default_policy(specs: &[&str]) -> ConnectionPolicy {
        Policy::new(specs.iter().map(|s| (Context::Default, rule(s)))).for_connection(
            Some(1000),
            &[1000],
            false,
        )
    }

    /// A message for the tables: `type path interface member error` with `-` for absent fields.
    struct Msg {
        kind: MessageKind,
        path: Option<&'static str>,
        interface: Option<&'static str>,
        member: Option<&'static str>,
        error: Option<&'static str>,
    }

    fn msg(spec: &'static str) -> Msg {
        let f: Vec<&'static str> = spec.split_whitespace().collect();
        let opt = |i: usize| f.get(i).copied().filter(|v| *v != "-");
        Msg {
            kind: MessageKind::from_name(f[0]).expect("message type"),
            path: opt(1),
            interface: opt(2),
            member: opt(3),
            error: opt(4),
        }
    }

    fn send_check<'a>(m: &'a Msg, receiver: &'a dyn NameHolder) -> SendCheck<'a> {
        SendCheck {
            message_type: m.kind,
            path: m.path,
            interface: m.interface,
            member: m.member,
            error_name: m.error,
            has_destination: true,
            receiver,
            requested_reply: false,
            unix_fds: 0,
        }
    }

    fn receive_check<'a>(m: &'a Msg, sender: &'a dyn NameHolder) -> ReceiveCheck<'a> {
        ReceiveCheck {
            message_type: m.kind,
            path: m.path,
            interface: m.interface,
            member: m.member,
            error_name: m.error,
            sender,
            requested_reply: false,
            eavesdropping: false,
            unix_fds: 0,
        }
    }

    const CALL: &str = "method_call /a/b a.I M";
    const SIGNAL: &str = "signal /a/b a.I S";
    const NO_IFACE: &str = "method_call /a/b - M";
    const RETURN: &str = "method_return";
    const ERROR: &str = "error - - - a.E";

    #[test]
    fn send_attributes() {
        // (rules, message, receiver's names, allowed)
        let receiver: &[&str] = &[":1.7", "a.b", "a.b.c"];
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], CALL, false),
            (&["allow send_destination=*"], CALL, true),
            (&["allow send_destination=a.b"], CALL, true),
            (&["allow send_destination=:1.7"], CALL, true),
            (&["allow send_destination=x.y"], CALL, false),
            (&["allow send_destination_prefix=a"], CALL, true),
            (&["allow send_destination_prefix=a.b.c"], CALL, true),
            (&["allow send_destination_prefix=a.b.cd"], CALL, false),
            (&["allow send_destination_prefix=a.bc"], CALL, false),
            (&["allow send_type=method_call"], CALL, true),
            (&["allow send_type=signal"], CALL, false),
            (&["allow send_type=*"], CALL, true),
            (&["allow send_path=/a/b"], CALL, true),
            (&["allow send_path=/a"], CALL, false),
            (&["allow send_path=*"], CALL, true),
            (&["allow send_interface=a.I"], CALL, true),
            (&["allow send_interface=a.J"], CALL, false),
            (&["allow send_interface=a.I send_member=M"], CALL, true),
            (&["allow send_interface=a.I send_member=N"], CALL, false),
            (&["allow send_path=/a/b send_member=M"], CALL, true),
            (&["allow send_error=a.E"], ERROR, false), // unrequested reply, see below
            (
                &["allow send_error=a.E send_requested_reply=false"],
                ERROR,
                true,
            ),
            (
                &["allow send_error=a.F send_requested_reply=false"],
                ERROR,
                false,
            ),
            (
                &["allow send_destination=a.b send_interface=a.I send_member=M"],
                CALL,
                true,
            ),
            (
                &["allow send_destination=a.b send_interface=a.J"],
                CALL,
                false,
            ),
            // Last match wins, both ways.
            (
                &["allow send_destination=*", "deny send_interface=a.I"],
                CALL,
                false,
            ),
            (
                &["deny send_interface=a.I", "allow send_destination=a.b"],
                CALL,
                true,
            ),
            (
                &["deny send_destination=a.b", "allow send_destination=x.y"],
                CALL,
                false,
            ),
        ];
        for &(rules, m, want) in cases {
            let p = default_policy(rules);
            let m = msg(m);
            let d = p.check_send(&send_check(&m, &receiver));
            assert_eq!(d.allowed, want, "{rules:?}");
        }
    }

    /// Confirmed against dbus-daemon 1.14: `<deny send_error="t.E"/>` denied RequestName (a method
    /// call, no error name); a `send_path`/`send_member` deny denied a method return (neither
    /// field); `<deny send_interface=…>` denied calls without an interface, `<allow …>` did not
    /// allow them; `send_interface="*"` allowed them.
    #[test]
    fn absent_header_fields() {
        let receiver = ["a.b"];
        let cases: &[(&[&str], &str, bool)] = &[
            (
                &["allow send_destination=*", "deny send_error=a.E"],
                CALL,
                false,
            ),
            (
                &["allow send_destination=*", "deny send_error=a.E"],
                SIGNAL,
                false,
            ),
            (
                &[
                    "allow send_destination=* send_requested_reply=false",
                    "deny send_error=a.E",
                ],
                ERROR,
                false,
            ),
            (
                &[
                    "allow send_destination=* send_requested_reply=false",
                    "deny send_error=a.F",
                ],
                ERROR,
                true,
            ),
            (
                &[
                    "allow send_destination=*",
                    "deny send_path=/x send_requested_reply=true",
                ],
                RETURN,
                false,
            ),
            (
                &[
                    "allow send_destination=*",
                    "deny send_path=/x send_member=Q send_requested_reply=true",
                ],
                RETURN,
                false,
            ),
            (
                &["allow send_destination=*", "deny send_path=/x"],
                CALL,
                true,
            ),
            (
                &["allow send_path=/x send_requested_reply=false"],
                RETURN,
                true,
            ),
            (
                &["allow send_interface=a.I send_requested_reply=false"],
                RETURN,
                false,
            ),
            (
                &["allow send_destination=*", "deny send_interface=a.X"],
                NO_IFACE,
                false,
            ),
            (
                &["allow send_destination=*", "deny send_interface=a.X"],
                CALL,
                true,
            ),
            (&["allow send_interface=a.X"], NO_IFACE, false),
            (&["allow send_interface=*"], NO_IFACE, true),
            (
                &["allow send_destination=a.b send_interface=a.I"],
                NO_IFACE,
                false,
            ),
        ];
        for &(rules, m, want) in cases {
            let p = default_policy(rules);
            let m = msg(m);
            assert_eq!(
                p.check_send(&send_check(&m, &receiver)).allowed,
                want,
                "{rules:?} {:?}",
                m.kind
            );
        }
        // The same holds for receive rules.
        let cases: &[(&[&str], &str, bool)] = &[
            (
                &["allow receive_type=*", "deny receive_interface=a.X"],
                NO_IFACE,
                false,
            ),
            (&["allow receive_interface=a.X"], NO_IFACE, false),
            (&["allow receive_interface=*"], NO_IFACE, true),
            (
                &["allow receive_type=*", "deny receive_error=a.E"],
                CALL,
                false,
            ),
            (
                &[
                    "allow receive_type=*",
                    "deny receive_path=/x receive_requested_reply=true",
                ],
                RETURN,
                false,
            ),
        ];
        for &(rules, m, want) in cases {
            let p = default_policy(rules);
            let m = msg(m);
            let d = p.check_receive(&receive_check(&m, &receiver));
            assert_eq!(d.allowed, want, "{rules:?}");
        }
    }

    /// Confirmed against dbus-daemon 1.14: a `send_destination` deny refused a call to the unique
    /// name of a connection merely queued for the name, and a broadcast signal was not delivered
    /// to the owner of a name denied by `send_destination=… send_type=signal` while another
    /// listener got it.
    #[test]
    fn destination_is_any_held_name() {
        let p = default_policy(&[
            "allow send_destination=*",
            "deny send_destination=a.b send_type=signal",
        ]);
        let m = msg(SIGNAL);
        let owner: &[&str] = &[":1.1", "x.y", "a.b"];
        let other: &[&str] = &[":1.2"];
        // The bus asks once per receiver of a broadcast.
        for (receiver, want) in [(&owner, false), (&other, true)] {
            let check = SendCheck {
                has_destination: false,
                ..send_check(&m, receiver)
            };
            assert_eq!(p.check_send(&check).allowed, want, "{receiver:?}");
        }
        // The bus driver and activation: the destination name stands for the receiver.
        let p = default_policy(&["allow send_destination=org.freedesktop.DBus"]);
        let m = msg(CALL);
        assert!(
            p.check_send(&send_check(&m, &["org.freedesktop.DBus"]))
                .allowed
        );
        assert!(!p.check_send(&send_check(&m, &["a.b"])).allowed);
        let names = vec!["org.freedesktop.DBus".to_owned()];
        assert!(p.check_send(&send_check(&m, &names)).allowed);
    }

    #[test]
    fn broadcast() {
        let signal = msg(SIGNAL);
        let call = msg(CALL);
        let receiver = [":1.1"];
        // (rules, message, has destination, allowed)
        let cases: &[(&str, &Msg, bool, bool)] = &[
            ("allow send_broadcast=true", &signal, false, true),
            ("allow send_broadcast=true", &signal, true, false),
            ("allow send_broadcast=true", &call, false, false),
            ("allow send_broadcast=false", &signal, true, true),
            ("allow send_broadcast=false", &signal, false, false),
            ("allow send_broadcast=false", &call, true, true),
            ("allow send_broadcast=false", &call, false, true),
            ("allow send_destination=*", &signal, false, true),
        ];
        for &(r, m, has_destination, want) in cases {
            let p = default_policy(&[r]);
            let check = SendCheck {
                has_destination,
                ..send_check(m, &receiver)
            };
            assert_eq!(
                p.check_send(&check).allowed,
                want,
                "{r} {:?} {has_destination}",
                m.kind
            );
        }
    }

    /// Confirmed against dbus-daemon 1.14 by sending a method return twice (the second one
    /// unrequested) and an unrequested error under each of these policies.
    #[test]
    fn requested_reply_defaults() {
        let receiver = [":1.1"];
        // (rules, message, requested, allowed)
        let cases: &[(&[&str], &str, bool, bool)] = &[
            (&["allow send_destination=*"], RETURN, true, true),
            (&["allow send_destination=*"], RETURN, false, false),
            (&["allow send_destination=*"], ERROR, false, false),
            (&["allow send_destination=*"], CALL, false, true),
            (
                &["allow send_destination=* send_requested_reply=false"],
                RETURN,
                false,
                true,
            ),
            (
                &["allow send_destination=* send_requested_reply=true"],
                RETURN,
                false,
                false,
            ),
            // eavesdrop="true" on a send <allow> lets unrequested replies through (session.conf).
            (
                &["allow send_destination=* eavesdrop=true"],
                RETURN,
                false,
                true,
            ),
            (
                &["allow send_destination=* eavesdrop=true"],
                ERROR,
                false,
                true,
            ),
            // A <deny> applies to unrequested replies only, unless requested_reply="true".
            (
                &[
                    "allow send_destination=* send_requested_reply=false",
                    "deny send_type=method_return",
                ],
                RETURN,
                true,
                true,
            ),
            (
                &[
                    "allow send_destination=* send_requested_reply=false",
                    "deny send_type=method_return",
                ],
                RETURN,
                false,
                false,
            ),
            (
                &[
                    "allow send_destination=* send_requested_reply=false",
                    "deny send_type=method_return send_requested_reply=true",
                ],
                RETURN,
                true,
                false,
            ),
            (
                &[
                    "allow send_destination=*",
                    "deny send_type=method_call send_requested_reply=false",
                ],
                CALL,
                true,
                false,
            ),
            // The system bus's pair of reply rules.
            (
                &[
                    "deny send_type=method_call",
                    "allow send_requested_reply=true send_type=method_return",
                ],
                RETURN,
                true,
                true,
            ),
            (
                &[
                    "deny send_type=method_call",
                    "allow send_requested_reply=true send_type=method_return",
                ],
                RETURN,
                false,
                false,
            ),
        ];
        for &(rules, m, requested_reply, want) in cases {
            let p = default_policy(rules);
            let m = msg(m);
            let check = SendCheck {
                requested_reply,
                ..send_check(&m, &receiver)
            };
            assert_eq!(
                p.check_send(&check).allowed,
                want,
                "{rules:?} {m:?} {requested_reply}",
                m = m.kind
            );
        }
        let cases: &[(&[&str], bool, bool)] = &[
            (&["allow receive_type=*"], true, true),
            (&["allow receive_type=*"], false, false),
            (
                &["allow receive_type=* receive_requested_reply=false"],
                false,
                true,
            ),
            (&["allow receive_type=* eavesdrop=true"], false, true),
            (
                &["allow eavesdrop=true", "deny receive_type=method_return"],
                true,
                true,
            ),
            (
                &["allow eavesdrop=true", "deny receive_type=method_return"],
                false,
                false,
            ),
        ];
        for &(rules, requested_reply, want) in cases {
            let p = default_policy(rules);
            let m = msg(RETURN);
            let check = ReceiveCheck {
                requested_reply,
                ..receive_check(&m, &receiver)
            };
            assert_eq!(
                p.check_receive(&check).allowed,
                want,
                "{rules:?} {requested_reply}"
            );
        }
    }

    /// Confirmed against dbus-daemon 1.14 with a monitor's `eavesdrop=true` match rule: receive
    /// <allow>s without eavesdrop="true" do not deliver to it, `<deny … eavesdrop="true">` hid the
    /// call from the monitor only, and a send `<deny … eavesdrop="true">` refused the call itself.
    #[test]
    fn eavesdrop() {
        let sender = ["a.b"];
        let m = msg(CALL);
        // (rules, eavesdropping, allowed)
        let cases: &[(&[&str], bool, bool)] = &[
            (&["allow receive_type=*"], false, true),
            (&["allow receive_type=*"], true, false),
            (&["allow eavesdrop=true"], true, true),
            (&["allow eavesdrop=true"], false, true),
            (&["allow eavesdrop=false"], true, false),
            (
                &[
                    "allow eavesdrop=true",
                    "deny receive_interface=a.I eavesdrop=true",
                ],
                true,
                false,
            ),
            (
                &[
                    "allow eavesdrop=true",
                    "deny receive_interface=a.I eavesdrop=true",
                ],
                false,
                true,
            ),
            (
                &["allow eavesdrop=true", "deny receive_interface=a.I"],
                true,
                false,
            ),
            (
                &["allow eavesdrop=true", "deny receive_interface=a.I"],
                false,
                false,
            ),
        ];
        for &(rules, eavesdropping, want) in cases {
            let p = default_policy(rules);
            let check = ReceiveCheck {
                eavesdropping,
                ..receive_check(&m, &sender)
            };
            assert_eq!(
                p.check_receive(&check).allowed,
                want,
                "{rules:?} {eavesdropping}"
            );
        }
        let p = default_policy(&[
            "allow send_destination=* eavesdrop=true",
            "deny send_interface=a.I eavesdrop=true",
        ]);
        assert!(!p.check_send(&send_check(&m, &sender)).allowed);
    }

    #[test]
    fn receive_sender_and_fds() {
        let m = msg(SIGNAL);
        let cases: &[(&[&str], &[&str], u32, bool)] = &[
            (&["allow receive_sender=a.b"], &[":1.3", "a.b"], 0, true),
            (&["allow receive_sender=a.b"], &[":1.3"], 0, false),
            (&["allow receive_sender=*"], &[":1.3"], 0, true),
            (
                &["allow receive_sender=org.freedesktop.DBus"],
                &["org.freedesktop.DBus"],
                0,
                true,
            ),
            (&["allow receive_type=* min_fds=1"], &[":1.3"], 0, false),
            (&["allow receive_type=* min_fds=1"], &[":1.3"], 1, true),
            (&["allow receive_type=* max_fds=2"], &[":1.3"], 2, true),
            (&["allow receive_type=* max_fds=2"], &[":1.3"], 3, false),
            // receive_sender="*" names no sender: this deny hides the allow before it.
            (
                &["allow receive_type=*", "deny receive_sender=* min_fds=1"],
                &[":1.3"],
                0,
                false,
            ),
            (
                &["allow receive_type=*", "deny receive_sender=a.b min_fds=1"],
                &["a.b"],
                0,
                true,
            ),
            (
                &["allow receive_type=*", "deny receive_sender=a.b min_fds=1"],
                &["a.b"],
                1,
                false,
            ),
            (
                &["allow receive_type=*", "deny receive_type=* min_fds=1"],
                &[":1.3"],
                4,
                false,
            ),
        ];
        for &(rules, sender, unix_fds, want) in cases {
            let p = default_policy(rules);
            let check = ReceiveCheck {
                unix_fds,
                ..receive_check(&m, &sender)
            };
            assert_eq!(
                p.check_receive(&check).allowed,
                want,
                "{rules:?} {sender:?} {unix_fds}"
            );
        }
        let p = default_policy(&[
            "allow send_destination=*",
            "deny send_destination=* min_fds=1",
        ]);
        // The blanket deny hides the allow (see `blanket_rules_hide_earlier_ones`).
        let check = SendCheck {
            unix_fds: 0,
            ..send_check(&m, &[":1.1"])
        };
        assert!(!p.check_send(&check).allowed);
        let p = default_policy(&[
            "allow send_destination=*",
            "deny send_type=* send_path=* min_fds=1 max_fds=3",
        ]);
        for (fds, want) in [(0, false), (1, false), (3, false), (4, false)] {
            let check = SendCheck {
                unix_fds: fds,
                ..send_check(&m, &[":1.1"])
            };
            assert_eq!(p.check_send(&check).allowed, want, "{fds}");
        }
        let p = default_policy(&[
            "allow send_destination=*",
            "deny send_destination=a.b min_fds=1 max_fds=3",
        ]);
        for (fds, want) in [(0, true), (1, false), (3, false), (4, true)] {
            let check = SendCheck {
                unix_fds: fds,
                ..send_check(&m, &["a.b"])
            };
            assert_eq!(p.check_send(&check).allowed, want, "{fds}");
        }
    }

    /// Confirmed against dbus-daemon 1.14: with `own_prefix="t.a"` allowed after `deny own="*"`,
    /// t.a, t.a.b and t.a.b.c could be owned, t.ab and x.y not; without own rules nothing.
    #[test]
    fn own() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "a.b", false),
            (&["allow own=*"], "a.b", true),
            (&["allow own=a.b"], "a.b", true),
            (&["allow own=a.b"], "a.b.c", false),
            (&["deny own=*", "allow own_prefix=a.b"], "a.b", true),
            (&["deny own=*", "allow own_prefix=a.b"], "a.b.c.d", true),
            (&["deny own=*", "allow own_prefix=a.b"], "a.bc", false),
            (&["allow own=*", "deny own_prefix=a.b"], "a.b.c", false),
            (
                &["allow own=*", "deny own=a.b", "allow own=a.b"],
                "a.b",
                true,
            ),
            (&["allow own_prefix=*"], "a.b", false),
        ];
        for &(rules, name, want) in cases {
            let d = default_policy(rules).check_own(name);
            assert_eq!(d.allowed, want, "{rules:?} {name}");
        }
    }

    /// Confirmed against dbus-daemon 1.14 (connecting as root, not at the console): user rules
    /// beat default and group rules wherever they stand in the file, at_console="false" beats
    /// user, mandatory beats everything, at_console="true" did not apply.
    #[test]
    fn context_order() {
        let allow = |s: &str| rule(&format!("allow {s}"));
        let deny = |s: &str| rule(&format!("deny {s}"));
        let d = "send_destination=a.b";
        let policy = |rules: Vec<(Context, Rule)>| Policy::new(rules);
        let cases: Vec<(Vec<(Context, Rule)>, bool)> = vec![
            (
                vec![(Context::User(0), deny(d)), (Context::Default, allow(d))],
                false,
            ),
            (
                vec![(Context::Group(0), deny(d)), (Context::Default, allow(d))],
                false,
            ),
            (
                vec![(Context::User(0), allow(d)), (Context::Group(0), deny(d))],
                true,
            ),
            (
                vec![
                    (Context::AtConsole(false), deny(d)),
                    (Context::User(0), allow(d)),
                ],
                false,
            ),
            (
                vec![
                    (Context::AtConsole(true), deny(d)),
                    (Context::Default, allow(d)),
                ],
                true,
            ),
            (
                vec![
                    (Context::Mandatory, allow(d)),
                    (Context::AtConsole(false), deny(d)),
                ],
                true,
            ),
            (
                vec![(Context::Mandatory, deny(d)), (Context::Default, allow(d))],
                false,
            ),
            (
                vec![(Context::User(1), deny(d)), (Context::Default, allow(d))],
                true,
            ),
            (
                vec![(Context::Group(1), deny(d)), (Context::Default, allow(d))],
                true,
            ),
            // Groups in the order the connection's groups are given.
            (
                vec![(Context::Group(5), allow(d)), (Context::Group(0), deny(d))],
                true,
            ),
        ];
        let m = msg(CALL);
        for (rules, want) in cases {
            let desc = format!("{rules:?}");
            let p = policy(rules).for_connection(Some(0), &[0, 5], false);
            assert_eq!(
                p.check_send(&send_check(&m, &["a.b"])).allowed,
                want,
                "{desc}"
            );
        }
        // at_console picks one of the two lists.
        let p = policy(vec![
            (Context::Default, allow(d)),
            (Context::AtConsole(true), deny(d)),
            (Context::AtConsole(false), allow(d)),
        ]);
        assert!(
            !p.for_connection(Some(0), &[], true)
                .check_send(&send_check(&m, &["a.b"]))
                .allowed
        );
        assert!(
            p.for_connection(Some(0), &[], false)
                .check_send(&send_check(&m, &["a.b"]))
                .allowed
        );
        // Without a user (ANONYMOUS), only default and mandatory apply.
        let p = policy(vec![
            (Context::Default, allow(d)),
            (Context::User(0), deny(d)),
            (Context::Group(0), deny(d)),
            (Context::AtConsole(false), deny(d)),
        ]);
        assert!(
            p.for_connection(None, &[0], false)
                .check_send(&send_check(&m, &["a.b"]))
                .allowed
        );
    }

    /// Confirmed against dbus-daemon 1.14: a policy ending in `<deny send_broadcast="true"/>`,
    /// `<deny send_destination="*" min_fds="1"/>`, or `<deny send_destination="*"
    /// eavesdrop="true"/>` refused ListNames with "0 matched rules" (or 1, the eavesdrop deny
    /// itself), and a trailing `<deny eavesdrop="true"/>` lost every reply, Hello's included.
    #[test]
    fn blanket_rules_hide_earlier_ones() {
        let m = msg(CALL);
        let driver = ["org.freedesktop.DBus"];
        let allow_all = "allow send_destination=* eavesdrop=true";
        let cases: &[(&[&str], bool, u32)] = &[
            (&[allow_all, "deny send_broadcast=true"], false, 0),
            (&[allow_all, "deny send_destination=* min_fds=1"], false, 0),
            (
                &[allow_all, "deny send_destination=* eavesdrop=true"],
                false,
                1,
            ),
            (
                &[allow_all, "deny send_type=signal send_broadcast=false"],
                true,
                1,
            ),
            (
                &[allow_all, "deny send_destination=a.b send_broadcast=true"],
                true,
                1,
            ),
        ];
        for &(rules, want, matched) in cases {
            let p = default_policy(rules);
            let check = send_check(&m, &driver);
            assert_eq!(p.check_send(&check).allowed, want, "{rules:?}");
            assert_eq!(p.send_matches(&check), matched, "{rules:?}");
        }
        let p = default_policy(&["allow receive_type=*", "deny eavesdrop=true"]);
        let r = msg(RETURN);
        let check = ReceiveCheck {
            requested_reply: true,
            ..receive_check(&r, &driver)
        };
        assert!(!p.check_receive(&check).allowed);
        assert_eq!(p.receive_matches(&check), 0);
        // Own rules: own="*" hides earlier ones, own_prefix does not.
        let p = default_policy(&["allow own=a.b", "deny own=*"]);
        assert!(!p.check_own("a.b").allowed);
        // Across contexts too: the user's blanket rule hides the default ones.
        let policy = Policy::new([
            (Context::Default, rule(allow_all)),
            (Context::User(0), rule("deny send_broadcast=true")),
        ]);
        let p = policy.for_connection(Some(0), &[], false);
        assert!(!p.check_send(&send_check(&m, &driver)).allowed);
        let p = policy.for_connection(Some(1), &[], false);
        assert!(p.check_send(&send_check(&m, &driver)).allowed);
    }

    /// Confirmed against dbus-daemon 1.14 by connecting as uid 65534 (group 65534): refused
    /// without user rules, admitted by `user="*"`, `user=` or `group=` rules, refused by a
    /// mandatory deny wherever it stands, and at_console policies were not consulted.
    #[test]
    fn admission() {
        // (rules, connecting uid, admitted)
        type Case<'a> = (&'a [(Context, &'a str)], u32, bool);
        let cases: &[Case] = &[
            (&[], 0, true),
            (&[], 65534, false),
            (&[(Context::Default, "allow user=*")], 65534, true),
            (&[(Context::Default, "allow group=*")], 65534, true),
            (&[(Context::Default, "allow user=65534")], 65534, true),
            (&[(Context::Default, "allow group=65534")], 65534, true),
            (&[(Context::Default, "allow group=10")], 65534, false),
            (&[(Context::Default, "deny user=0")], 0, false),
            (
                &[
                    (Context::Default, "allow user=*"),
                    (Context::Default, "deny user=65534"),
                ],
                65534,
                false,
            ),
            (
                &[
                    (Context::Mandatory, "deny user=65534"),
                    (Context::Default, "allow user=*"),
                ],
                65534,
                false,
            ),
            (
                &[
                    (Context::Mandatory, "allow user=65534"),
                    (Context::Default, "deny user=*"),
                ],
                65534,
                true,
            ),
            (&[(Context::AtConsole(true), "allow user=*")], 65534, false),
            (
                &[(Context::AtConsole(false), "allow group=*")],
                65534,
                false,
            ),
            // Send rules have nothing to say about admission.
            (
                &[(Context::Default, "allow send_destination=*")],
                65534,
                false,
            ),
        ];
        for &(rules, uid, want) in cases {
            let p = Policy::new(rules.iter().map(|(c, s)| (*c, rule(s))));
            assert_eq!(p.allows_user(uid, &[65534], 0), want, "{rules:?} {uid}");
        }
    }

    #[test]
    fn decision_names_rule_and_log() {
        let policy = Policy::new([
            (Context::Default, rule("allow send_destination=*")),
            (
                Context::Default,
                rule("allow send_destination=a.b log=true"),
            ),
            (Context::Default, rule("deny send_destination=x.y log=true")),
            (Context::Default, rule("allow receive_type=* log=true")),
            (Context::Default, rule("allow own=* log=true")),
        ]);
        let ids: Vec<RuleId> = policy.rules().map(|(id, _, _)| id).collect();
        let p = policy.for_connection(Some(0), &[], false);
        let m = msg(CALL);
        let d = p.check_send(&send_check(&m, &["a.b"]));
        assert_eq!(
            d,
            Decision {
                allowed: true,
                rule: Some(ids[1]),
                log: true
            }
        );
        assert_eq!(p.send_matches(&send_check(&m, &["a.b"])), 2);
        let d = p.check_send(&send_check(&m, &["x.y"]));
        assert_eq!(
            d,
            Decision {
                allowed: false,
                rule: Some(ids[2]),
                log: true
            }
        );
        let d = p.check_send(&send_check(&m, &["q.r"]));
        assert_eq!(
            d,
            Decision {
                allowed: true,
                rule: Some(ids[0]),
                log: false
            }
        );
        assert_eq!(p.rule(ids[0]), policy.rule(ids[0]));
        // log="true" is inert on receive and own rules.
        let d = p.check_receive(&receive_check(&m, &["a.b"]));
        assert_eq!(
            d,
            Decision {
                allowed: true,
                rule: Some(ids[3]),
                log: false
            }
        );
        assert!(!p.check_own("a.b").log);
        let d = default_policy(&[]).check_own("a.b");
        assert_eq!(
            d,
            Decision {
                allowed: false,
                rule: None,
                log: false
            }
        );
    }

    #[test]
    fn session_policy_allows_everything() {
        let p = Policy::session().for_connection(Some(1000), &[1000], false);
        let m = msg(RETURN);
        let check = send_check(&m, &[":1.1"]);
        assert!(p.check_send(&check).allowed);
        let check = ReceiveCheck {
            eavesdropping: true,
            ..receive_check(&m, &[":1.1"])
        };
        assert!(p.check_receive(&check).allowed);
        assert!(p.check_own("any.name").allowed);
        assert!(!Policy::session().allows_user(1001, &[], 1000));
    }

    /// The texts dbus-daemon 1.14 sent, byte for byte, with only the descriptions shortened.
    #[test]
    fn rejection_texts() {
        let t = RejectionText {
            kind: RejectionKind::Send,
            matched_rules: 2,
            message_type: MessageKind::MethodCall,
            sender: Some(":1.0"),
            sender_info: "uid=0 pid=21488 comm=\"x\"",
            interface: Some("org.freedesktop.DBus"),
            member: Some("ListNames"),
            error_name: None,
            requested_reply: false,
            destination: Some("org.freedesktop.DBus"),
            receiver_info: "bus",
        };
        assert_eq!(
            t.to_string(),
            "Rejected send message, 2 matched rules; type=\"method_call\", sender=\":1.0\" \
             (uid=0 pid=21488 comm=\"x\") interface=\"org.freedesktop.DBus\" member=\"ListNames\" \
             error name=\"(unset)\" requested_reply=\"0\" destination=\"org.freedesktop.DBus\" (bus)"
        );
        let t = RejectionText {
            kind: RejectionKind::Receive,
            matched_rules: 0,
            message_type: MessageKind::Error,
            interface: None,
            member: None,
            error_name: Some("t.Err"),
            destination: Some(":1.0"),
            receiver_info: "uid=0",
            ..t
        };
        assert_eq!(
            t.to_string(),
            "Rejected receive message, 0 matched rules; type=\"error\", sender=\":1.0\" \
             (uid=0 pid=21488 comm=\"x\") interface=\"(unset)\" member=\"(unset)\" \
             error name=\"t.Err\" requested_reply=\"0\" destination=\":1.0\" (uid=0)"
        );
        let t = RejectionText {
            kind: RejectionKind::WouldReject,
            sender: None,
            destination: None,
            ..t
        };
        assert!(
            t.to_string()
                .starts_with("Would reject message, 0 matched rules;")
        );
        assert!(t.to_string().contains("sender=\"(unset)\""));
        assert!(
            t.to_string()
                .contains("destination=\"org.freedesktop.DBus\"")
        );
        assert_eq!(
            own_denied_text(":1.0", "t.x"),
            "Connection \":1.0\" is not allowed to own the service \"t.x\" due to security \
             policies in the configuration file"
        );
    }

    #[test]
    fn message_kind_names() {
        for k in [
            MessageKind::MethodCall,
            MessageKind::MethodReturn,
            MessageKind::Error,
            MessageKind::Signal,
        ] {
            assert_eq!(MessageKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(MessageKind::from_name("Signal"), None);
        assert_eq!(
            MessageKind::from_wire(tram_wire::MessageType::Unknown(9)),
            None
        );
        assert_eq!(
            MessageKind::from_wire(tram_wire::MessageType::Signal),
            Some(MessageKind::Signal)
        );
    }

    #[test]
    fn the_open_policy_shortcut_agrees_with_the_full_checks() {
        let unconditional = |allow, eavesdrop, requested_reply| Rule {
            allow,
            kind: RuleKind::Receive(MessageRule {
                eavesdrop,
                requested_reply,
                ..MessageRule::default()
            }),
            log: false,
            origin: None,
        };
        let as_send = |mut r: Rule| {
            if let RuleKind::Receive(m) = r.kind {
                r.kind = RuleKind::Send(m);
            }
            r
        };
        let policies = [
            Policy::session(),
            Policy::new([(Context::Default, as_send(unconditional(true, false, None)))]),
            Policy::new([
                (
                    Context::Default,
                    as_send(unconditional(true, false, Some(false))),
                ),
                (Context::Default, unconditional(true, false, None)),
            ]),
            Policy::new([(Context::Default, unconditional(true, true, None))]),
            Policy::new([(Context::Default, unconditional(false, false, None))]),
        ];
        let names: [&str; 1] = ["a.b"];
        for policy in &policies {
            let p = policy.for_connection(Some(1000), &[1000], false);
            for kind in [
                MessageKind::MethodCall,
                MessageKind::MethodReturn,
                MessageKind::Error,
                MessageKind::Signal,
            ] {
                for (requested, eavesdropping) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let send = SendCheck {
                        message_type: kind,
                        path: Some("/p"),
                        interface: Some("a.I"),
                        member: Some("M"),
                        error_name: None,
                        has_destination: true,
                        receiver: &names,
                        requested_reply: requested,
                        unix_fds: 0,
                    };
                    if p.sends_anything(kind.is_reply(), requested) {
                        assert!(p.check_send(&send).allowed, "{kind} {requested}");
                    }
                    let receive = ReceiveCheck {
                        message_type: kind,
                        path: Some("/p"),
                        interface: Some("a.I"),
                        member: Some("M"),
                        error_name: None,
                        sender: &names,
                        requested_reply: requested,
                        eavesdropping,
                        unix_fds: 0,
                    };
                    if p.receives_anything(kind.is_reply(), requested, eavesdropping) {
                        assert!(p.check_receive(&receive).allowed, "{kind} {requested}");
                    }
                }
            }
        }
        let session = Policy::session().for_connection(Some(1000), &[1000], false);
        assert!(
            session.sends_anything(false, false),
            "the session policy is open"
        );
        assert!(session.receives_anything(false, false, true));
    }
}
