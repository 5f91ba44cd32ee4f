//! `<allow>` and `<deny>`: attributes to a [`Rule`], with dbus-daemon's checks in its order.
//!
//! The order of the checks decides which error a rule with several faults reports; it was
//! taken from dbus-daemon 1.14 by feeding it rules with two or three faults at once: unknown
//! attributes, then a rule naming nothing, then a member without interface or path, then the
//! combination rules, then attribute values.

use std::sync::Arc;

use tram_bus::policy::{IdMatch, MessageKind, MessageRule, NameMatch, Rule, RuleKind, RuleOrigin};

use crate::limits::parse_c_integer;
use crate::users::UserDb;

/// The largest `min_fds`/`max_fds` dbus-daemon accepts.
const MAX_FDS: u64 = 33_554_432;

/// What an element turned into.
pub(crate) enum Parsed {
    /// A rule.
    Rule(Rule),
    /// A rule naming an unknown user or group: dropped, with this warning.
    Dropped(String),
}

/// The attributes of one rule element, by name.
#[derive(Default)]
struct Attrs<'a> {
    send_interface: Option<&'a str>,
    send_member: Option<&'a str>,
    send_error: Option<&'a str>,
    send_broadcast: Option<&'a str>,
    send_destination: Option<&'a str>,
    send_destination_prefix: Option<&'a str>,
    send_type: Option<&'a str>,
    send_path: Option<&'a str>,
    send_requested_reply: Option<&'a str>,
    receive_interface: Option<&'a str>,
    receive_member: Option<&'a str>,
    receive_error: Option<&'a str>,
    receive_sender: Option<&'a str>,
    receive_type: Option<&'a str>,
    receive_path: Option<&'a str>,
    receive_requested_reply: Option<&'a str>,
    eavesdrop: Option<&'a str>,
    own: Option<&'a str>,
    own_prefix: Option<&'a str>,
    user: Option<&'a str>,
    group: Option<&'a str>,
    min_fds: Option<&'a str>,
    max_fds: Option<&'a str>,
    log: Option<&'a str>,
}

/// Builds the rule of an `<allow>` (`allow`) or `<deny>` element from its attributes, in
/// document order. `Err` carries the reason the configuration is invalid.
pub(crate) fn parse_rule<'a>(
    element: &str,
    allow: bool,
    attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    users: &dyn UserDb,
    origin: (&Arc<str>, u32),
) -> Result<Parsed, String> {
    let mut a = Attrs::default();
    for (name, value) in attributes {
        let slot = match name {
            "send_interface" => &mut a.send_interface,
            "send_member" => &mut a.send_member,
            "send_error" => &mut a.send_error,
            "send_broadcast" => &mut a.send_broadcast,
            "send_destination" => &mut a.send_destination,
            "send_destination_prefix" => &mut a.send_destination_prefix,
            "send_type" => &mut a.send_type,
            "send_path" => &mut a.send_path,
            "send_requested_reply" => &mut a.send_requested_reply,
            "receive_interface" => &mut a.receive_interface,
            "receive_member" => &mut a.receive_member,
            "receive_error" => &mut a.receive_error,
            "receive_sender" => &mut a.receive_sender,
            "receive_type" => &mut a.receive_type,
            "receive_path" => &mut a.receive_path,
            "receive_requested_reply" => &mut a.receive_requested_reply,
            "eavesdrop" => &mut a.eavesdrop,
            "own" => &mut a.own,
            "own_prefix" => &mut a.own_prefix,
            "user" => &mut a.user,
            "group" => &mut a.group,
            "min_fds" => &mut a.min_fds,
            "max_fds" => &mut a.max_fds,
            "log" => &mut a.log,
            _ => {
                return Err(format!(
                    "Attribute \"{name}\" is invalid on <{element}> element in this context"
                ));
            }
        };
        *slot = Some(value);
    }

    let send = [
        a.send_interface,
        a.send_member,
        a.send_error,
        a.send_broadcast,
        a.send_destination,
        a.send_destination_prefix,
        a.send_type,
        a.send_path,
        a.send_requested_reply,
    ]
    .iter()
    .any(Option::is_some);
    let receive = [
        a.receive_interface,
        a.receive_member,
        a.receive_error,
        a.receive_sender,
        a.receive_type,
        a.receive_path,
        a.receive_requested_reply,
    ]
    .iter()
    .any(Option::is_some);
    let standalone = [a.own, a.own_prefix, a.user, a.group]
        .iter()
        .filter(|v| v.is_some())
        .count();
    let message_modifiers = a.eavesdrop.is_some() || a.min_fds.is_some() || a.max_fds.is_some();

    if !send && !receive && a.eavesdrop.is_none() && standalone == 0 {
        return Err(format!(
            "Element <{element}> must have one or more attributes"
        ));
    }
    if (a.send_member.is_some() && a.send_interface.is_none() && a.send_path.is_none())
        || (a.receive_member.is_some() && a.receive_interface.is_none() && a.receive_path.is_none())
    {
        return Err(format!(
            "On element <{element}>, if you specify a member you must specify an interface or a \
             path. Keep in mind that not all messages have an interface field."
        ));
    }
    let combination = |what: &str| {
        Err(format!(
            "Invalid combination of attributes on element <{element}>: {what}"
        ))
    };
    if standalone > 1 || (standalone == 1 && (send || receive || message_modifiers)) {
        return combination(
            "own, own_prefix, user, group and the message-related attributes cannot be combined",
        );
    }
    if send && receive {
        return combination("send and receive attributes cannot be combined");
    }
    if a.send_error.is_some() && (a.send_member.is_some() || a.send_interface.is_some()) {
        return combination("send_error cannot be combined with send_member or send_interface");
    }
    if a.receive_error.is_some() && (a.receive_member.is_some() || a.receive_interface.is_some()) {
        return combination(
            "receive_error cannot be combined with receive_member or receive_interface",
        );
    }
    if a.send_destination.is_some() && a.send_destination_prefix.is_some() {
        return combination("send_destination cannot be combined with send_destination_prefix");
    }

    let message_type = message_type(a.send_type.or(a.receive_type))?;
    let eavesdrop = boolean("eavesdrop", a.eavesdrop)?.unwrap_or(false);
    let requested_reply = match a.send_requested_reply {
        Some(v) => boolean("send_requested_reply", Some(v))?,
        None => boolean("receive_requested_reply", a.receive_requested_reply)?,
    };
    let broadcast = boolean("send_broadcast", a.send_broadcast)?;
    if let (Some(true), Some(dest)) = (broadcast, a.send_destination) {
        if dest != "*" {
            return Err(format!(
                "Rule with send_broadcast=\"true\" and send_destination=\"{dest}\" cannot match \
                 anything"
            ));
        }
    }
    let max_fds = fds("max_fds", a.max_fds)?.unwrap_or(u32::MAX);
    let min_fds = fds("min_fds", a.min_fds)?.unwrap_or(0);
    // dbus-daemon takes exactly "true"; any other value is false.
    let log = a.log == Some("true");

    let kind = if send || receive || a.eavesdrop.is_some() {
        let field = |v: Option<&str>| v.filter(|v| *v != "*").map(Box::<str>::from);
        let m = if send {
            MessageRule {
                message_type,
                path: field(a.send_path),
                interface: field(a.send_interface),
                member: field(a.send_member),
                error: field(a.send_error),
                peer: match (a.send_destination, a.send_destination_prefix) {
                    (_, Some(prefix)) => Some(NameMatch::Prefix(prefix.into())),
                    (dest, None) => field(dest).map(NameMatch::Exact),
                },
                broadcast,
                requested_reply,
                eavesdrop,
                min_fds,
                max_fds,
            }
        } else {
            MessageRule {
                message_type,
                path: field(a.receive_path),
                interface: field(a.receive_interface),
                member: field(a.receive_member),
                error: field(a.receive_error),
                peer: field(a.receive_sender).map(NameMatch::Exact),
                broadcast: None,
                requested_reply,
                eavesdrop,
                min_fds,
                max_fds,
            }
        };
        if send {
            RuleKind::Send(m)
        } else {
            RuleKind::Receive(m)
        }
    } else if let Some(own) = a.own {
        RuleKind::Own((own != "*").then(|| NameMatch::Exact(own.into())))
    } else if let Some(prefix) = a.own_prefix {
        RuleKind::Own(Some(NameMatch::Prefix(prefix.into())))
    } else if let Some(user) = a.user {
        match id(user, |n| users.uid(n)) {
            Some(m) => RuleKind::User(m),
            None => {
                return Ok(Parsed::Dropped(format!(
                    "Unknown username \"{user}\" on element <{element}>"
                )));
            }
        }
    } else if let Some(group) = a.group {
        match id(group, |n| users.gid(n)) {
            Some(m) => RuleKind::Group(m),
            None => {
                return Ok(Parsed::Dropped(format!(
                    "Unknown group \"{group}\" on element <{element}>"
                )));
            }
        }
    } else {
        // Unreachable: the "must have one or more attributes" check covers this case.
        return Err(format!(
            "Element <{element}> must have one or more attributes"
        ));
    };

    Ok(Parsed::Rule(Rule {
        allow,
        kind,
        log,
        origin: Some(RuleOrigin {
            file: Arc::clone(origin.0),
            line: origin.1,
        }),
    }))
}

fn message_type(value: Option<&str>) -> Result<Option<MessageKind>, String> {
    match value {
        None | Some("*") => Ok(None),
        Some(v) => MessageKind::from_name(v)
            .map(Some)
            .ok_or_else(|| format!("Bad message type \"{v}\"")),
    }
}

/// `true`/`false` attributes. (dbus-daemon 1.14 swaps name and value in this message for
/// `eavesdrop` and `*_requested_reply`; tram writes them the right way round.)
fn boolean(name: &str, value: Option<&str>) -> Result<Option<bool>, String> {
    match value {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(format!(
            "Bad value \"{v}\" for {name} attribute, must be true or false"
        )),
    }
}

/// `min_fds`/`max_fds`: parsed like C `strtoul` with base 0, as dbus-daemon does.
fn fds(name: &str, value: Option<&str>) -> Result<Option<u32>, String> {
    let Some(v) = value else {
        return Ok(None);
    };
    match parse_c_integer(v) {
        Some((negative, n)) if (!negative || n == 0) && n <= MAX_FDS => Ok(u32::try_from(n).ok()),
        _ => Err(format!(
            "Bad value \"{v}\" for {name} attribute, must be an integer in range 0 to {MAX_FDS} \
             inclusive"
        )),
    }
}

fn id(value: &str, resolve: impl Fn(&str) -> Option<u32>) -> Option<IdMatch> {
    if value == "*" {
        Some(IdMatch::Any)
    } else {
        resolve(value).map(IdMatch::Id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserTable;

    fn parse(allow: bool, attrs: &[(&str, &str)]) -> Result<Parsed, String> {
        let users = UserTable::parse("root:x:0:0::/:\nalice:x:1000:1000::/:\n", "wheel:x:10:\n");
        let file: Arc<str> = Arc::from("test.conf");
        parse_rule(
            if allow { "allow" } else { "deny" },
            allow,
            attrs.iter().copied(),
            &users,
            (&file, 3),
        )
    }

    fn kind(attrs: &[(&str, &str)]) -> RuleKind {
        match parse(true, attrs) {
            Ok(Parsed::Rule(r)) => r.kind,
            Ok(Parsed::Dropped(w)) => panic!("{attrs:?} dropped: {w}"),
            Err(e) => panic!("{attrs:?}: {e}"),
        }
    }

    #[test]
    fn kinds_and_fields() {
        let send = |m: MessageRule| RuleKind::Send(m);
        let recv = |m: MessageRule| RuleKind::Receive(m);
        let d = MessageRule::default;
        let s = |v: &str| Some(Box::<str>::from(v));
        let cases: Vec<(&[(&str, &str)], RuleKind)> = vec![
            (&[("send_destination", "*")], send(d())),
            (
                &[("send_destination", "a.b")],
                send(MessageRule {
                    peer: Some(NameMatch::Exact("a.b".into())),
                    ..d()
                }),
            ),
            (
                &[("send_destination_prefix", "a.b")],
                send(MessageRule {
                    peer: Some(NameMatch::Prefix("a.b".into())),
                    ..d()
                }),
            ),
            (
                &[
                    ("send_interface", "a.I"),
                    ("send_member", "M"),
                    ("send_type", "method_call"),
                ],
                send(MessageRule {
                    interface: s("a.I"),
                    member: s("M"),
                    message_type: Some(MessageKind::MethodCall),
                    ..d()
                }),
            ),
            (
                &[
                    ("send_interface", "*"),
                    ("send_path", "*"),
                    ("send_type", "*"),
                ],
                send(d()),
            ),
            (
                &[("send_error", "a.E")],
                send(MessageRule {
                    error: s("a.E"),
                    ..d()
                }),
            ),
            (
                &[("send_broadcast", "true")],
                send(MessageRule {
                    broadcast: Some(true),
                    ..d()
                }),
            ),
            (
                &[("send_broadcast", "true"), ("send_destination", "*")],
                send(MessageRule {
                    broadcast: Some(true),
                    ..d()
                }),
            ),
            (
                &[("send_requested_reply", "false")],
                send(MessageRule {
                    requested_reply: Some(false),
                    ..d()
                }),
            ),
            (
                &[
                    ("send_type", "signal"),
                    ("min_fds", "1"),
                    ("max_fds", "0x10"),
                ],
                send(MessageRule {
                    message_type: Some(MessageKind::Signal),
                    min_fds: 1,
                    max_fds: 16,
                    ..d()
                }),
            ),
            (
                &[("send_destination", "*"), ("eavesdrop", "true")],
                send(MessageRule {
                    eavesdrop: true,
                    ..d()
                }),
            ),
            (
                &[("eavesdrop", "true")],
                recv(MessageRule {
                    eavesdrop: true,
                    ..d()
                }),
            ),
            (
                &[("eavesdrop", "false"), ("min_fds", "2")],
                recv(MessageRule { min_fds: 2, ..d() }),
            ),
            (
                &[("receive_sender", "a.b"), ("receive_path", "/p")],
                recv(MessageRule {
                    peer: Some(NameMatch::Exact("a.b".into())),
                    path: s("/p"),
                    ..d()
                }),
            ),
            (&[("receive_sender", "*")], recv(d())),
            (
                &[
                    ("receive_requested_reply", "true"),
                    ("receive_type", "error"),
                ],
                recv(MessageRule {
                    requested_reply: Some(true),
                    message_type: Some(MessageKind::Error),
                    ..d()
                }),
            ),
            (&[("own", "*")], RuleKind::Own(None)),
            (
                &[("own", "a.b")],
                RuleKind::Own(Some(NameMatch::Exact("a.b".into()))),
            ),
            (
                &[("own_prefix", "a.b")],
                RuleKind::Own(Some(NameMatch::Prefix("a.b".into()))),
            ),
            (
                &[("own_prefix", "*")],
                RuleKind::Own(Some(NameMatch::Prefix("*".into()))),
            ),
            (&[("user", "*")], RuleKind::User(IdMatch::Any)),
            (&[("user", "alice")], RuleKind::User(IdMatch::Id(1000))),
            (&[("user", "0")], RuleKind::User(IdMatch::Id(0))),
            (&[("group", "wheel")], RuleKind::Group(IdMatch::Id(10))),
            (
                &[("group", "*"), ("log", "true")],
                RuleKind::Group(IdMatch::Any),
            ),
            // dbus-daemon does not validate names, paths or interfaces in rules.
            (
                &[("own", "not a name")],
                RuleKind::Own(Some(NameMatch::Exact("not a name".into()))),
            ),
            (
                &[("send_path", "relative")],
                send(MessageRule {
                    path: s("relative"),
                    ..d()
                }),
            ),
        ];
        for (attrs, want) in cases {
            assert_eq!(kind(attrs), want, "{attrs:?}");
        }
    }

    #[test]
    fn log_and_origin() {
        for (value, want) in [("true", true), ("false", false), ("yes", false)] {
            let Ok(Parsed::Rule(r)) = parse(false, &[("own", "*"), ("log", value)]) else {
                panic!("not a rule");
            };
            assert_eq!(r.log, want, "{value}");
            assert!(!r.allow);
            assert_eq!(
                r.origin.map(|o| o.to_string()).as_deref(),
                Some("test.conf:3")
            );
        }
    }

    #[test]
    fn unknown_users_drop_the_rule() {
        for (attrs, want) in [
            (
                ("user", "nosuch"),
                "Unknown username \"nosuch\" on element <allow>",
            ),
            (
                ("user", "54321"),
                "Unknown username \"54321\" on element <allow>",
            ),
            (("user", ""), "Unknown username \"\" on element <allow>"),
            (
                ("group", "nosuch"),
                "Unknown group \"nosuch\" on element <allow>",
            ),
        ] {
            match parse(true, &[attrs]) {
                Ok(Parsed::Dropped(w)) => assert_eq!(w, want),
                _ => panic!("{attrs:?} not dropped"),
            }
        }
    }

    /// Every message here is the one dbus-daemon 1.14 printed for the same rule (apart from the
    /// swapped name and value in the `eavesdrop`/`*_requested_reply` texts).
    #[test]
    fn errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("foo", "bar")],
                "Attribute \"foo\" is invalid on <allow> element in this context",
            ),
            (
                &[("user", "nosuch"), ("foo", "x")],
                "Attribute \"foo\" is invalid",
            ),
            (
                &[("min_fds", "1")],
                "Element <allow> must have one or more attributes",
            ),
            (
                &[("log", "true")],
                "Element <allow> must have one or more attributes",
            ),
            (
                &[("send_member", "M")],
                "if you specify a member you must specify an interface or a path",
            ),
            (
                &[("receive_member", "M"), ("receive_sender", "a")],
                "if you specify a member",
            ),
            (
                &[("send_member", "M"), ("send_error", "a.E")],
                "if you specify a member",
            ),
            (
                &[("own", "a"), ("own_prefix", "b")],
                "own, own_prefix, user, group and the message-related",
            ),
            (
                &[("user", "root"), ("group", "wheel")],
                "own, own_prefix, user, group",
            ),
            (
                &[("own", "a"), ("eavesdrop", "true")],
                "own, own_prefix, user, group",
            ),
            (
                &[("user", "root"), ("max_fds", "1")],
                "own, own_prefix, user, group",
            ),
            (
                &[
                    ("own", "a"),
                    ("send_type", "signal"),
                    ("receive_type", "signal"),
                ],
                "own, own_prefix",
            ),
            (
                &[("send_type", "signal"), ("receive_type", "signal")],
                "send and receive attributes cannot be combined",
            ),
            (
                &[
                    ("send_error", "a"),
                    ("send_interface", "b"),
                    ("receive_type", "signal"),
                ],
                "send and receive",
            ),
            (
                &[
                    ("send_requested_reply", "true"),
                    ("receive_requested_reply", "true"),
                ],
                "send and receive",
            ),
            (
                &[("send_interface", "a"), ("send_error", "b")],
                "send_error cannot be combined with send_member or send_interface",
            ),
            (
                &[("receive_interface", "a"), ("receive_error", "b")],
                "receive_error cannot be combined",
            ),
            (
                &[("send_destination", "a"), ("send_destination_prefix", "b")],
                "send_destination cannot be combined with send_destination_prefix",
            ),
            (
                &[
                    ("send_destination", "a"),
                    ("send_destination_prefix", "b"),
                    ("send_error", "x"),
                    ("send_interface", "y"),
                ],
                "send_error cannot be combined",
            ),
            (&[("send_type", "foo")], "Bad message type \"foo\""),
            (&[("receive_type", "Signal")], "Bad message type \"Signal\""),
            (
                &[("send_type", "foo"), ("send_broadcast", "bar")],
                "Bad message type \"foo\"",
            ),
            (
                &[("send_broadcast", "maybe")],
                "Bad value \"maybe\" for send_broadcast attribute, must be true or false",
            ),
            (
                &[("eavesdrop", "yes")],
                "Bad value \"yes\" for eavesdrop attribute, must be true or false",
            ),
            (
                &[("send_requested_reply", "1")],
                "Bad value \"1\" for send_requested_reply attribute",
            ),
            (
                &[
                    ("receive_type", "signal"),
                    ("eavesdrop", "x"),
                    ("receive_requested_reply", "y"),
                ],
                "for eavesdrop attribute",
            ),
            (
                &[
                    ("send_broadcast", "true"),
                    ("send_destination", "org.freedesktop.DBus"),
                ],
                "Rule with send_broadcast=\"true\" and send_destination=\"org.freedesktop.DBus\" cannot match anything",
            ),
            (
                &[
                    ("send_broadcast", "true"),
                    ("send_destination", "a"),
                    ("min_fds", "x"),
                ],
                "cannot match anything",
            ),
            (
                &[("send_type", "signal"), ("min_fds", "-1")],
                "Bad value \"-1\" for min_fds attribute, must be an integer in range 0 to 33554432 inclusive",
            ),
            (
                &[("send_type", "signal"), ("min_fds", "abc")],
                "Bad value \"abc\" for min_fds",
            ),
            (
                &[("send_type", "signal"), ("min_fds", "")],
                "Bad value \"\" for min_fds",
            ),
            (
                &[("send_type", "signal"), ("min_fds", "33554433")],
                "Bad value \"33554433\" for min_fds",
            ),
            (
                &[("send_type", "signal"), ("min_fds", "x"), ("max_fds", "y")],
                "Bad value \"y\" for max_fds",
            ),
        ];
        for &(attrs, want) in cases {
            match parse(true, attrs) {
                Err(e) => assert!(e.contains(want), "{attrs:?}: {e}"),
                Ok(_) => panic!("{attrs:?} accepted"),
            }
        }
    }

    /// Accepted by dbus-daemon 1.14 (each tried there).
    #[test]
    fn accepted_oddities() {
        let cases: &[&[(&str, &str)]] = &[
            &[("send_type", "signal"), ("min_fds", " 3")],
            &[("send_type", "signal"), ("min_fds", "+3")],
            &[("send_type", "signal"), ("min_fds", "3abc")],
            &[("send_type", "signal"), ("min_fds", "33554432")],
            &[("send_type", "signal"), ("min_fds", "3"), ("max_fds", "1")],
            &[("send_type", "signal"), ("log", "yes")],
            &[("send_broadcast", "false"), ("send_destination", "a.b")],
            &[
                ("send_broadcast", "true"),
                ("send_destination_prefix", "a.b"),
            ],
            &[("send_error", "*")],
            &[("own", "a"), ("log", "true")],
            &[("receive_error", "a"), ("receive_sender", "b")],
            &[("eavesdrop", "true"), ("max_fds", "0"), ("log", "true")],
        ];
        for &attrs in cases {
            assert!(
                matches!(parse(true, attrs), Ok(Parsed::Rule(_))),
                "{attrs:?}"
            );
        }
    }
}
