//! Match rules: parsing, matching, and the index that finds a broadcast's receivers.
//!
//! A [`MatchRule`] is what a client hands to `AddMatch`: a comma-separated list of `key=value`
//! conditions, all of which a message must meet (see [Match Rules] in the D-Bus specification).
//! [`MatchRule::parse`] reads the text exactly as dbus-daemon does, quirks included, and keeps
//! the rule's *meaning*: two texts that differ only in key order, quoting or whitespace give
//! equal rules, which is what `RemoveMatch` compares. [`MatchRule`]'s `Display` writes the
//! canonical text dbus-daemon's `GetAllMatchRules` shows.
//!
//! [`MatchIndex`] holds every connection's rules and answers "who wants this message?" without
//! looking at rules that cannot match. Each rule is filed under one key: its sender (or "any
//! sender"), its most selective header condition (member, else interface, else exact path, else
//! none), and its `arg0` string (or none). A message is looked up under the few keys it could
//! meet — its sender's names times its own member, interface and path, with and without its first
//! argument — so a broadcast costs a handful of hash look-ups plus the rules that really are about
//! it, however many unrelated rules the bus holds. Rules that want addressed messages
//! (`eavesdrop='true'`) live apart, so unicast traffic pays nothing while nobody eavesdrops.
//!
//! Names change owners all the time, so the bus answers ownership questions at match time
//! through [`NameOwners`].
//!
//! [Match Rules]: https://dbus.freedesktop.org/doc/dbus-specification.html#message-bus-routing-match-rules

use std::fmt;

use tram_wire::{Arg, Message, MessageType};

use crate::PeerId;

mod index;
mod parse;
#[cfg(test)]
mod test_util;

pub use index::MatchIndex;

/// The longest rule text the bus accepts, in bytes (dbus-daemon's limit).
pub const MAX_RULE_LEN: usize = 1024;

/// How many leading arguments a rule can test: `arg0` to `arg63`.
pub const MAX_ARGS: usize = 64;

/// The bus driver's name: as a `sender`, it means messages from the bus itself.
const DRIVER_NAME: &str = "org.freedesktop.DBus";

/// What the bus knows about name ownership, asked while matching.
pub trait NameOwners {
    /// The peer that is the primary owner of `name`, a unique or well-known name; `None` when
    /// nobody owns it. The bus driver's own name has no peer owner.
    fn primary_owner(&self, name: &str) -> Option<PeerId>;

    /// Calls `f` with `peer`'s unique name and with every well-known name `peer` is the primary
    /// owner of (queued ownership does not count).
    fn for_each_owned_name(&self, peer: PeerId, f: &mut dyn FnMut(&str));
}

/// One parsed match rule. Equality and hashing follow the rule's meaning, as `RemoveMatch` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MatchRule {
    /// The message type byte on the wire (1..=4), if the rule names one.
    msg_type: Option<u8>,
    sender: Option<Box<str>>,
    interface: Option<Box<str>>,
    member: Option<Box<str>>,
    /// `path` or `path_namespace`, told apart by `path_is_namespace`.
    path: Option<Box<str>>,
    path_is_namespace: bool,
    destination: Option<Box<str>>,
    eavesdrop: bool,
    /// Sorted by index, at most one per index.
    args: Box<[ArgMatch]>,
}

/// A condition on one argument: `argN`, `argNpath` or `arg0namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArgMatch {
    index: u8,
    kind: ArgKind,
    value: Box<str>,
}

/// The kinds of argument condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// `argN='v'`: the argument is a string equal to `v`.
    Str,
    /// `argNpath='v'`: the argument is a string or object path equal to `v`, or one of the two
    /// ends with `/` and is a prefix of the other.
    Path,
    /// `arg0namespace='v'`: the argument is a string equal to `v` or starting with `v.`.
    Namespace,
}

/// Why a rule text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchRuleError {
    /// The text is longer than [`MAX_RULE_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The text is not a valid rule; the reason reads like dbus-daemon's.
    Invalid(String),
}

impl MatchRuleError {
    /// The D-Bus error name to answer `AddMatch`/`RemoveMatch` with.
    pub fn error_name(&self) -> &'static str {
        match self {
            MatchRuleError::TooLong { .. } => "org.freedesktop.DBus.Error.LimitsExceeded",
            MatchRuleError::Invalid(_) => "org.freedesktop.DBus.Error.MatchRuleInvalid",
        }
    }
}

impl fmt::Display for MatchRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchRuleError::TooLong { len } => write!(
                f,
                "Match rule text is {len} bytes, maximum is {MAX_RULE_LEN}"
            ),
            MatchRuleError::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for MatchRuleError {}

impl MatchRule {
    /// Parses a rule as `AddMatch` receives it.
    ///
    /// The syntax is dbus-daemon's: whitespace (space, tab, CR, LF) may precede a key and
    /// separate it from its `=`, but belongs to the value after the `=`; a value runs to the next
    /// comma outside quotes; inside single quotes a backslash is literal, outside them `\'` is an
    /// apostrophe and a backslash before anything else stays, together with that character (so,
    /// unlike what the specification's wording suggests, `\,` does not end a value). A
    /// key that is empty (`,=…` or a trailing `,`) ends the rule. `argN` takes `N` as C's
    /// `strtoul` does (`arg0x1` is `arg1`, `arg010` is `arg8`).
    ///
    /// # Errors
    /// [`MatchRuleError::TooLong`] over [`MAX_RULE_LEN`] bytes; otherwise
    /// [`MatchRuleError::Invalid`] for a syntax error, an unknown or repeated key, or a value
    /// that is not valid for its key.
    pub fn parse(text: &str) -> Result<MatchRule, MatchRuleError> {
        parse::parse(text)
    }

    /// The message type the rule asks for.
    pub fn message_type(&self) -> Option<MessageType> {
        self.msg_type.map(wire_type)
    }
    /// `sender`: a unique or well-known name.
    pub fn sender(&self) -> Option<&str> {
        self.sender.as_deref()
    }
    /// `interface`.
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }
    /// `member`.
    pub fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }
    /// `path`: the exact object path.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref().filter(|_| !self.path_is_namespace)
    }
    /// `path_namespace`: an object path and everything below it.
    pub fn path_namespace(&self) -> Option<&str> {
        self.path.as_deref().filter(|_| self.path_is_namespace)
    }
    /// `destination`: a unique or well-known name.
    pub fn destination(&self) -> Option<&str> {
        self.destination.as_deref()
    }
    /// Whether the rule asks for messages addressed to someone else (`eavesdrop='true'`).
    pub fn eavesdrop(&self) -> bool {
        self.eavesdrop
    }
    /// The same rule with `eavesdrop='true'`, as monitors' rules are always treated.
    pub fn eavesdropping(mut self) -> MatchRule {
        self.eavesdrop = true;
        self
    }
    /// The argument conditions, by increasing index.
    pub fn args(&self) -> &[ArgMatch] {
        &self.args
    }

    /// Whether `msg`, sent by `sender` (`None`: the bus driver) to `addressed` (`None`: nobody in
    /// particular, or the bus driver), meets every condition of this rule.
    ///
    /// A message with a DESTINATION (or an `addressed` recipient) matches only rules with
    /// `eavesdrop='true'`; the recipient itself gets such a message whatever its rules say.
    pub fn matches<N: NameOwners + ?Sized>(
        &self,
        msg: &Message,
        names: &N,
        sender: Option<PeerId>,
        addressed: Option<PeerId>,
    ) -> bool {
        let mut view = MsgView::new(msg);
        let addressed_msg = addressed.is_some() || view.destination.is_some();
        (self.eavesdrop || !addressed_msg)
            && self.sender_matches(names, sender, None)
            && self.matches_except_sender(&mut view, names, addressed)
    }

    /// Whether the rule's `sender` condition holds for a message from `sender`. `known` is a
    /// name already known to be one of `sender`'s primary names, which saves a look-up.
    fn sender_matches<N: NameOwners + ?Sized>(
        &self,
        names: &N,
        sender: Option<PeerId>,
        known: Option<&str>,
    ) -> bool {
        let Some(want) = self.sender.as_deref() else {
            return true;
        };
        match sender {
            None => want == DRIVER_NAME,
            Some(_) if known == Some(want) => true,
            Some(peer) => want != DRIVER_NAME && names.primary_owner(want) == Some(peer),
        }
    }

    /// Every condition but `sender` and `eavesdrop`, cheapest first.
    fn matches_except_sender<N: NameOwners + ?Sized>(
        &self,
        msg: &mut MsgView<'_>,
        names: &N,
        addressed: Option<PeerId>,
    ) -> bool {
        if self.msg_type.is_some_and(|t| wire_type(t) != msg.mtype)
            || !field_matches(self.member.as_deref(), msg.member)
            || !field_matches(self.interface.as_deref(), msg.interface)
        {
            return false;
        }
        if let Some(want) = self.path.as_deref() {
            let Some(path) = msg.path else {
                return false;
            };
            let ok = if self.path_is_namespace {
                in_path_namespace(want, path)
            } else {
                want == path
            };
            if !ok {
                return false;
            }
        }
        if let Some(want) = self.destination.as_deref() {
            if msg.destination.is_none() {
                return false;
            }
            let ok = match addressed {
                None => want == DRIVER_NAME,
                Some(peer) => names.primary_owner(want) == Some(peer),
            };
            if !ok {
                return false;
            }
        }
        self.args
            .iter()
            .all(|cond| cond.matches(msg.arg(cond.index.into())))
    }
}

impl std::str::FromStr for MatchRule {
    type Err = MatchRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MatchRule::parse(s)
    }
}

/// The canonical text, as dbus-daemon's `GetAllMatchRules` writes it: keys in a fixed order
/// (type, interface, member, path or path_namespace, sender, destination, eavesdrop, then the
/// arguments by index), every value in single quotes, an apostrophe written `'\''`.
///
/// Parsing the text gives back an equal rule (if it still fits in [`MAX_RULE_LEN`]: quoting can
/// lengthen a value full of apostrophes).
impl fmt::Display for MatchRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut pair = |f: &mut fmt::Formatter<'_>, key: &dyn fmt::Display, value: &str| {
            write!(f, "{sep}{key}='")?;
            sep = ",";
            let mut parts = value.split('\'');
            if let Some(first) = parts.next() {
                f.write_str(first)?;
            }
            for part in parts {
                write!(f, "'\\''{part}")?;
            }
            f.write_str("'")
        };
        if let Some(t) = self.msg_type {
            pair(f, &"type", type_name(t))?;
        }
        if let Some(v) = &self.interface {
            pair(f, &"interface", v)?;
        }
        if let Some(v) = &self.member {
            pair(f, &"member", v)?;
        }
        if let Some(v) = &self.path {
            let key = if self.path_is_namespace {
                "path_namespace"
            } else {
                "path"
            };
            pair(f, &key, v)?;
        }
        if let Some(v) = &self.sender {
            pair(f, &"sender", v)?;
        }
        if let Some(v) = &self.destination {
            pair(f, &"destination", v)?;
        }
        if self.eavesdrop {
            pair(f, &"eavesdrop", "true")?;
        }
        for arg in self.args.iter() {
            let suffix = match arg.kind {
                ArgKind::Str => "",
                ArgKind::Path => "path",
                ArgKind::Namespace => "namespace",
            };
            pair(f, &format_args!("arg{}{suffix}", arg.index), &arg.value)?;
        }
        Ok(())
    }
}

impl ArgMatch {
    /// The argument's position, 0 to 63.
    pub fn index(&self) -> u8 {
        self.index
    }
    /// What kind of condition it is.
    pub fn kind(&self) -> ArgKind {
        self.kind
    }
    /// The value given in the rule.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the argument at this condition's index (`None`: the body is shorter) meets it.
    fn matches(&self, arg: Option<Arg<'_>>) -> bool {
        let want = &*self.value;
        match (self.kind, arg) {
            (ArgKind::Str, Some(Arg::Str(s))) => s == want,
            (ArgKind::Path, Some(Arg::Str(s) | Arg::ObjectPath(s))) => {
                s == want
                    || (want.ends_with('/') && s.starts_with(want))
                    || (s.ends_with('/') && want.starts_with(s))
            }
            (ArgKind::Namespace, Some(Arg::Str(s))) => s
                .strip_prefix(want)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.')),
            _ => false,
        }
    }
}

/// A message as rules look at it: its header fields read once, its arguments read when a rule
/// first needs them.
struct MsgView<'m> {
    msg: &'m Message,
    mtype: MessageType,
    path: Option<&'m str>,
    interface: Option<&'m str>,
    member: Option<&'m str>,
    destination: Option<&'m str>,
    /// The first arguments, as far as they have been read.
    args: [Arg<'m>; CACHED_ARGS],
    /// How many of `args` are read.
    args_read: usize,
    /// Whether the body ended within `args_read` arguments.
    args_ended: bool,
}

/// How many leading arguments [`MsgView`] keeps; rules rarely look further.
const CACHED_ARGS: usize = 8;

impl<'m> MsgView<'m> {
    fn new(msg: &'m Message) -> Self {
        MsgView {
            msg,
            mtype: msg.message_type(),
            path: msg.path(),
            interface: msg.interface(),
            member: msg.member(),
            destination: msg.destination(),
            args: [Arg::Other; CACHED_ARGS],
            args_read: 0,
            args_ended: false,
        }
    }

    /// The argument at `index`, `None` when the body has fewer arguments.
    fn arg(&mut self, index: usize) -> Option<Arg<'m>> {
        if index >= CACHED_ARGS {
            return self.msg.args(index + 1).nth(index);
        }
        if index >= self.args_read && !self.args_ended {
            // Read every argument up to `index` in one pass.
            let want = index + 1;
            let mut read = 0;
            for (slot, arg) in self.args.iter_mut().zip(self.msg.args(want)) {
                *slot = arg;
                read += 1;
            }
            self.args_read = read;
            self.args_ended = read < want;
        }
        if index < self.args_read {
            self.args.get(index).copied()
        } else {
            None
        }
    }
}

/// An optional header condition: absent in the rule matches anything; present, it needs the
/// message field to be there and equal.
fn field_matches(want: Option<&str>, have: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) => have == Some(w),
    }
}

/// Whether `path` is `ns` or below it (`/` contains every path).
fn in_path_namespace(ns: &str, path: &str) -> bool {
    if ns == "/" {
        return true;
    }
    path.strip_prefix(ns)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The rule's type code as the wire's message type.
fn wire_type(code: u8) -> MessageType {
    match code {
        1 => MessageType::MethodCall,
        2 => MessageType::MethodReturn,
        3 => MessageType::Error,
        4 => MessageType::Signal,
        other => MessageType::Unknown(other),
    }
}

/// The `type` value naming a type code.
fn type_name(code: u8) -> &'static str {
    match code {
        1 => "method_call",
        2 => "method_return",
        3 => "error",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{Msg, Names, peer};
    use super::*;

    /// Peers 1-4 (`:1.1` .. `:1.4`); peer 1 is the primary owner of `com.example.A` (peer 2 is
    /// queued for it, which does not count), peer 4 of `com.example.D`.
    fn world() -> Names {
        Names::new(4, &[("com.example.A", 1), ("com.example.D", 4)])
    }

    fn sig() -> Msg {
        Msg::signal("/a/b", "org.example.I", "Changed")
    }

    struct Row {
        rule: &'static str,
        msg: Message,
        /// `None`: the bus driver.
        sender: Option<u32>,
        /// `None`: nobody in particular, or the driver.
        addressed: Option<u32>,
        want: bool,
    }

    fn row(rule: &'static str, msg: Msg, want: bool) -> Row {
        Row {
            rule,
            msg: msg.build(),
            sender: Some(1),
            addressed: None,
            want,
        }
    }

    fn row_from(rule: &'static str, msg: Msg, sender: Option<u32>, want: bool) -> Row {
        Row {
            sender,
            ..row(rule, msg, want)
        }
    }

    fn row_to(rule: &'static str, msg: Msg, addressed: Option<u32>, want: bool) -> Row {
        Row {
            addressed,
            ..row(rule, msg, want)
        }
    }

    /// Rows marked "dbus-daemon" were checked against dbus-daemon 1.14.10.
    fn table() -> Vec<Row> {
        vec![
            row("", sig(), true),
            // type
            row("type='signal'", sig(), true),
            row("type='method_call'", sig(), false),
            row(
                "type='method_call'",
                Msg::call("/a", Some("org.example.I"), "Do"),
                true,
            ),
            row(
                "type='signal'",
                Msg::call("/a", Some("org.example.I"), "Do"),
                false,
            ),
            row("type='method_return'", Msg::ret(), true),
            row("type='error'", Msg::ret(), false),
            row("type='error'", Msg::error(), true),
            // interface, member: a rule naming one never matches a message without it
            row("interface='org.example.I'", sig(), true),
            row("interface='org.example.J'", sig(), false),
            row(
                "interface='org.example.I'",
                Msg::call("/a", None, "Changed"),
                false,
            ),
            row("member='Changed'", sig(), true),
            row("member='changed'", sig(), false),
            row("member='Changed'", Msg::ret(), false),
            row("interface='org.example.I',member='Changed'", sig(), true),
            row("interface='org.example.I',member='Other'", sig(), false),
            // path
            row("path='/a/b'", sig(), true),
            row("path='/a'", sig(), false),
            row("path='/a/b/c'", sig(), false),
            row("path='/a/b'", Msg::ret(), false),
            // path_namespace (dbus-daemon)
            row("path_namespace='/'", sig(), true),
            row("path_namespace='/a'", sig(), true),
            row("path_namespace='/a/b'", sig(), true),
            row("path_namespace='/a/b/c'", sig(), false),
            row(
                "path_namespace='/a'",
                Msg::signal("/ab", "org.example.I", "S"),
                false,
            ),
            row(
                "path_namespace='/a'",
                Msg::signal("/", "org.example.I", "S"),
                false,
            ),
            row("path_namespace='/'", Msg::ret(), false),
            // sender: by primary ownership (dbus-daemon)
            row("sender=':1.1'", sig(), true),
            row("sender=':1.2'", sig(), false),
            row("sender='com.example.A'", sig(), true),
            row_from("sender='com.example.A'", sig(), Some(2), false),
            row("sender='com.example.D'", sig(), false),
            row("sender='com.example.Nobody'", sig(), false),
            row("sender='org.freedesktop.DBus'", sig(), false),
            row_from("sender='org.freedesktop.DBus'", sig(), None, true),
            row_from("sender=':1.1'", sig(), None, false),
            // destination: by primary ownership of the addressed recipient (dbus-daemon)
            row_to(
                "destination=':1.4',eavesdrop=true",
                sig().to(":1.4"),
                Some(4),
                true,
            ),
            row_to(
                "destination=':1.4',eavesdrop=true",
                sig().to("com.example.D"),
                Some(4),
                true,
            ),
            row_to(
                "destination='com.example.D',eavesdrop=true",
                sig().to(":1.4"),
                Some(4),
                true,
            ),
            row_to(
                "destination='com.example.A',eavesdrop=true",
                sig().to(":1.4"),
                Some(4),
                false,
            ),
            row("destination=':1.4',eavesdrop=true", sig(), false),
            row(
                "destination='org.freedesktop.DBus',eavesdrop=true",
                sig(),
                false,
            ),
            row_to(
                "destination='org.freedesktop.DBus',eavesdrop=true",
                Msg::call(
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "GetId",
                )
                .to("org.freedesktop.DBus"),
                None,
                true,
            ),
            row_to(
                "destination=':1.4',eavesdrop=true",
                Msg::call(
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "GetId",
                )
                .to("org.freedesktop.DBus"),
                None,
                false,
            ),
            // eavesdrop: addressed messages match only eavesdropping rules (dbus-daemon)
            row_to("type='signal'", sig().to(":1.4"), Some(4), false),
            row_to(
                "type='signal',eavesdrop='false'",
                sig().to(":1.4"),
                Some(4),
                false,
            ),
            row_to(
                "type='signal',eavesdrop='true'",
                sig().to(":1.4"),
                Some(4),
                true,
            ),
            row_to("destination=':1.4'", sig().to(":1.4"), Some(4), false),
            row_to(
                "member='GetId'",
                Msg::call(
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "GetId",
                )
                .to("org.freedesktop.DBus"),
                None,
                false,
            ),
            row("type='signal',eavesdrop='true'", sig(), true),
            // argN: strings only, not object paths or signatures (dbus-daemon)
            row("arg0='x'", sig().strs(&["x"]), true),
            row("arg0='x'", sig().strs(&["y"]), false),
            row("arg0='x'", sig().strs(&["x "]), false),
            row("arg0='/a'", sig().body("o", |w| w.object_path("/a")), false),
            row("arg0='ai'", sig().body("g", |w| w.signature("ai")), false),
            row(
                "arg0='/a'",
                sig().body("v", |w| w.variant("s", |w| w.string("/a"))),
                false,
            ),
            row("arg0=''", sig().strs(&[""]), true),
            row("arg0=''", sig(), false),
            row(
                "arg1='x'",
                sig().body("is", |w| {
                    w.i32(1);
                    w.string("x");
                }),
                true,
            ),
            row(
                "arg1='x'",
                sig().body("ass", |w| {
                    w.array("s", |w| w.string("a"));
                    w.string("x");
                }),
                true,
            ),
            row("arg1='x'", sig().strs(&["x"]), false),
            row("arg0='a',arg2='c'", sig().strs(&["a", "b", "c"]), true),
            row("arg0='a',arg2='c'", sig().strs(&["a", "b", "d"]), false),
            row("arg63='z'", sig().strs(&[""; 63]), false),
            row(
                "arg63='z'",
                sig().strs(&[[""; 63].as_slice(), &["z"]].concat()),
                true,
            ),
            // argNpath (dbus-daemon)
            row(
                "arg0path='/a/'",
                sig().body("o", |w| w.object_path("/a/b")),
                true,
            ),
            row(
                "arg0path='/a/b/'",
                sig().body("o", |w| w.object_path("/a")),
                false,
            ),
            row("arg0path='/a/b/'", sig().strs(&["/a/"]), true),
            row("arg0path='/a/b/'", sig().strs(&["/a/b"]), false),
            row("arg0path='/a/b/'", sig().strs(&["/"]), true),
            row("arg0path='/a/b/'", sig().strs(&["/a/b/c/"]), true),
            row("arg0path='/a/b/'", sig().strs(&["/a/b/c"]), true),
            row("arg0path='/a/b/'", sig().strs(&["/a/b"]), false),
            row("arg0path='/a/b/'", sig().strs(&["/aa/b"]), false),
            row("arg0path='/a/b'", sig().strs(&["/a/b/"]), false),
            row("arg0path='/a/b'", sig().strs(&["/a/b/c"]), false),
            row("arg0path='/a/b'", sig().strs(&["/a/b"]), true),
            row("arg0path=''", sig().strs(&[""]), true),
            row("arg0path=''", sig().strs(&["x"]), false),
            row("arg0path='x'", sig().strs(&["x"]), true),
            row(
                "arg0path='ai'",
                sig().body("g", |w| w.signature("ai")),
                false,
            ),
            // arg0namespace: strings only (dbus-daemon)
            row("arg0namespace='a.b'", sig().strs(&["a.b"]), true),
            row("arg0namespace='a.b'", sig().strs(&["a.b.c"]), true),
            row("arg0namespace='a.b'", sig().strs(&["a.b."]), true),
            row("arg0namespace='a.b'", sig().strs(&["a.b..x"]), true),
            row("arg0namespace='a.b'", sig().strs(&["a.bc"]), false),
            row("arg0namespace='a.b'", sig().strs(&["a"]), false),
            row(
                "arg0namespace='a.b'",
                sig().body("o", |w| w.object_path("/a")),
                false,
            ),
            // everything together
            row(
                "type='signal',sender='com.example.A',interface='org.example.I',\
                 member='Changed',path='/a/b',arg0='x',arg1path='/p/'",
                sig().strs(&["x", "/p/q"]),
                true,
            ),
            row(
                "type='signal',sender='com.example.A',interface='org.example.I',\
                 member='Changed',path='/a/b',arg0='x',arg1path='/p/'",
                sig().strs(&["x", "/q"]),
                false,
            ),
        ]
    }

    #[test]
    fn match_table() {
        let names = world();
        let mut failures = Vec::new();
        for r in table() {
            let Ok(rule) = MatchRule::parse(r.rule) else {
                failures.push(format!("{:?} does not parse", r.rule));
                continue;
            };
            let got = rule.matches(&r.msg, &names, r.sender.map(peer), r.addressed.map(peer));
            if got != r.want {
                failures.push(format!(
                    "{:?} vs {} {:?}.{:?} {:?} args {:?}: got {got}",
                    r.rule,
                    r.msg.path().unwrap_or("-"),
                    r.msg.interface(),
                    r.msg.member(),
                    r.msg.destination(),
                    r.msg.args(4).collect::<Vec<_>>(),
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn index_agrees_with_matches() {
        // Every table row again, through the index: the rule's owner is listed exactly when
        // `matches` says so (an addressed owner aside), and only once.
        let names = world();
        let owner = peer(3);
        let mut out = Vec::new();
        for r in table() {
            let Ok(rule) = MatchRule::parse(r.rule) else {
                continue;
            };
            let mut index = MatchIndex::new();
            index.add(owner, rule.clone());
            index.add(owner, rule);
            out.clear();
            index.receivers(
                &r.msg,
                &names,
                r.sender.map(peer),
                r.addressed.map(peer),
                &mut out,
            );
            let want: &[PeerId] = if r.want { &[owner] } else { &[] };
            assert_eq!(out, want, "{:?}", r.rule);
        }
    }
}
