//! Policy, rule by rule, against dbus-daemon: each case is a configuration snippet and a short
//! script of client actions with the outcome dbus-daemon 1.14 gives for each. A case runs on
//! dbus-daemon first (a mismatch there means the table is wrong) and then on the bus under test
//! (`TRAM_TEST_BUS`, tramd by default), which must give the same outcomes.
//!
//! Clients: `a`, `b`, `c` and `e` run as root, `n` as nobody (65534:65534) and `d` as daemon
//! (1:1). Each connects on first use and matches every signal. Script steps:
//!
//! | step | outcome |
//! |---|---|
//! | `connect X` | `ok` or `refused` |
//! | `own X NAME` | RequestName's result (`1`…`4`) or `denied` |
//! | `release X NAME` | ReleaseName's result |
//! | `match X RULE` | `ok` or the error's last name component |
//! | `call X DEST [opts]` | `ok` (delivered, return received), `error` (delivered, the error reply `err=` asked for received), `delivered` (with `noreply`), `denied` (AccessDenied, not delivered), `reply denied` (delivered, the callee's reply refused), or another error's last component |
//! | `signal X DEST [opts]` | the clients that received it (`b c`, `-` for none), after `denied` when the sender got AccessDenied |
//! | `reply X DEST [err=E]` | an unrequested reply: `delivered` or `denied` |
//!
//! `DEST` is `@X` (client X's unique name), `*` (a broadcast, signals only), `bus`, or a
//! well-known name. Options: `i=IFACE` (`i=-` for none; default `com.example.I`), `m=MEMBER`
//! (default `M`), `p=PATH` (default `/com/example`), `fds=N`, `noreply`, `err=NAME` (the callee
//! answers with this error). When `e` saw messages of a step that were not addressed to it,
//! ` e=call`, ` e=call+return`, … is appended.

mod common;

use std::os::fd::{AsFd, OwnedFd};

use common::daemon::{DAEMON, Daemon, Launch, NOBODY, busconfig};
use common::*;

/// The default-context rules every case starts with.
#[derive(Clone, Copy)]
enum Base {
    /// Everything allowed, like session.conf (without eavesdropping).
    Open,
    /// system.conf's default policy: calls and ownership closed, signals and requested replies
    /// open, everything may be received.
    System,
    /// No rule at all: dbus-daemon's default is to deny.
    Nothing,
}

/// One case: rules in the default context after the base's, other `<policy>` elements, and
/// the script.
struct Case {
    base: Base,
    default: &'static str,
    policies: &'static str,
    script: &'static [(&'static str, &'static str)],
}

fn config(case: &Case) -> String {
    let base = match case.base {
        Base::Open => {
            "<allow send_destination=\"*\"/>\n<allow receive_sender=\"*\"/>\n<allow own=\"*\"/>"
        }
        Base::System => {
            "<deny own=\"*\"/>\n<deny send_type=\"method_call\"/>\n\
             <allow send_type=\"signal\"/>\n\
             <allow send_requested_reply=\"true\" send_type=\"method_return\"/>\n\
             <allow send_requested_reply=\"true\" send_type=\"error\"/>\n\
             <allow receive_type=\"method_call\"/>\n<allow receive_type=\"method_return\"/>\n\
             <allow receive_type=\"error\"/>\n<allow receive_type=\"signal\"/>"
        }
        Base::Nothing => "",
    };
    busconfig(&format!(
        "<listen>unix:path=@DIR@/bus</listen>\n\
         <policy context=\"default\">\n\
         <allow user=\"*\"/>\n\
         {base}\n\
         <allow send_destination=\"org.freedesktop.DBus\"/>\n\
         <allow receive_sender=\"org.freedesktop.DBus\"/>\n\
         {}\n</policy>\n{}",
        case.default, case.policies
    ))
}

/// The clients, in the order their receipts are listed.
const CLIENTS: [char; 6] = ['a', 'b', 'c', 'd', 'e', 'n'];

/// A case's run on one bus.
struct World {
    bus: Daemon,
    clients: Vec<(char, RawClient)>,
    refused: Vec<char>,
}

impl World {
    fn client(&mut self, label: char) -> Option<&mut RawClient> {
        if !self.clients.iter().any(|(l, _)| *l == label) && !self.refused.contains(&label) {
            let ids = match label {
                'n' => Some(NOBODY),
                'd' => Some(DAEMON),
                _ => None,
            };
            let made = match ids {
                Some(ids) => self.bus.try_raw_as(ids),
                None => self.bus.try_raw(),
            };
            match made {
                Ok(mut c) => {
                    // A case may deny AddMatch; its signals then reach only their destination.
                    c.call_bus("AddMatch", vec![Value::str("type='signal'")]);
                    self.clients.push((label, c));
                }
                Err(_) => self.refused.push(label),
            }
        }
        self.clients
            .iter_mut()
            .find(|(l, _)| *l == label)
            .map(|(_, c)| c)
    }

    fn must(&mut self, label: char) -> &mut RawClient {
        let stderr = self.bus.stderr();
        self.client(label)
            .unwrap_or_else(|| panic!("client {label} could not connect; bus stderr:\n{stderr}"))
    }

    fn unique(&mut self, label: char) -> String {
        self.must(label).unique_name.clone()
    }

    /// Every message each connected client received up to a round trip, driver signals left
    /// out. `first`, the client that just sent something, goes first: its round trip ensures
    /// the bus has routed what it sent before the others' round trips begin.
    fn settle_all(&mut self, first: char) -> Vec<(char, Vec<Msg>)> {
        let mut out = Vec::new();
        self.clients.sort_by_key(|(l, _)| *l != first);
        for (label, c) in &mut self.clients {
            let msgs = settle(c)
                .into_iter()
                .filter(|m| !(m.mtype == SIGNAL && m.sender.as_deref() == Some(BUS)))
                .collect();
            out.push((*label, msgs));
        }
        out
    }

    fn step(&mut self, step: &str) -> String {
        let words: Vec<&str> = step.split_whitespace().collect();
        let label = |i: usize| {
            words
                .get(i)
                .and_then(|w| w.chars().next())
                .unwrap_or_else(|| panic!("step {step:?}: missing client"))
        };
        match words.first().copied() {
            Some("connect") => match self.client(label(1)) {
                Some(_) => "ok".into(),
                None => "refused".into(),
            },
            Some("own") => {
                let c = self.must(label(1));
                let reply = c.call_bus("RequestName", vec![Value::str(words[2]), Value::U32(0)]);
                short_result(&reply)
            }
            Some("release") => {
                let c = self.must(label(1));
                let reply = c.call_bus("ReleaseName", vec![Value::str(words[2])]);
                short_result(&reply)
            }
            Some("match") => {
                let rule = words[2..].join(" ");
                let c = self.must(label(1));
                let reply = c.call_bus("AddMatch", vec![Value::str(&rule)]);
                if reply.is_return() {
                    "ok".into()
                } else {
                    short_result(&reply)
                }
            }
            Some("call") => self.call(label(1), &words[2..]),
            Some("signal") => self.signal(label(1), &words[2..]),
            Some("reply") => self.stray_reply(label(1), &words[2..]),
            _ => panic!("unknown step {step:?}"),
        }
    }

    fn destination(&mut self, word: &str) -> Option<String> {
        match word {
            "*" => None,
            "bus" => Some(BUS.to_owned()),
            w if w.starts_with('@') => Some(self.unique(w.chars().nth(1).unwrap_or('?'))),
            w => Some(w.to_owned()),
        }
    }

    fn call(&mut self, from: char, words: &[&str]) -> String {
        let opts = Opts::parse(&words[1..]);
        let dest = self.destination(words[0]);
        let mut msg = RawMessage::call(dest.as_deref(), &opts.path, opts.iface(), &opts.member);
        if opts.noreply {
            msg = msg.flags(NO_REPLY_EXPECTED);
        }
        let caller = self.unique(from);
        let serial = send(self.must(from), msg, opts.fds);
        let seen = self.settle_all(from);
        let mut outcome = None;
        let mut callee = None;
        for (label, msgs) in &seen {
            for m in msgs {
                if *label == from && m.reply_serial == Some(serial) {
                    outcome = Some(match m.mtype {
                        ERROR => short_error(m),
                        _ => "ok".to_owned(),
                    });
                }
                if *label != from
                    && *label != 'e'
                    && m.mtype == METHOD_CALL
                    && m.serial == serial
                    && m.sender.as_deref() == Some(caller.as_str())
                {
                    callee = Some(*label);
                }
            }
        }
        let mut eavesdropped = eavesdropped(&seen, serial, &caller);
        let outcome = match (callee, outcome) {
            (Some(_), Some(err)) => format!("delivered but {err}"),
            (None, Some(err)) => err,
            (None, None) => "lost".into(),
            (Some(_), None) if opts.noreply => "delivered".into(),
            (Some(label), None) => {
                let call = seen
                    .iter()
                    .find(|(l, _)| *l == label)
                    .and_then(|(_, msgs)| msgs.iter().find(|m| m.serial == serial))
                    .map(|m| RawMessage::reply_to(m, opts.error.as_deref()))
                    .unwrap_or_else(|| unreachable!());
                let callee_client = self.must(label);
                let reply_serial = callee_client.send(&call);
                let after = self.settle_all(label);
                let refused = after.iter().any(|(l, msgs)| {
                    *l == label
                        && msgs
                            .iter()
                            .any(|m| m.reply_serial == Some(reply_serial) && m.mtype == ERROR)
                });
                let answered = after
                    .iter()
                    .find(|(l, _)| *l == from)
                    .and_then(|(_, msgs)| msgs.iter().find(|m| m.reply_serial == Some(serial)));
                let callee_name = self.unique(label);
                for kind in eavesdropped_replies(&after, reply_serial, &callee_name) {
                    eavesdropped.push(kind);
                }
                match (refused, answered) {
                    (true, None) => "reply denied".into(),
                    (false, Some(m)) if m.mtype == METHOD_RETURN => "ok".into(),
                    (false, Some(m)) if m.error_name == opts.error => "error".into(),
                    (false, Some(m)) => format!("reply became {}", short_error(m)),
                    (false, None) => "reply lost".into(),
                    (true, Some(_)) => "reply refused and delivered".into(),
                }
            }
        };
        with_eavesdropped(outcome, &eavesdropped)
    }

    fn signal(&mut self, from: char, words: &[&str]) -> String {
        let opts = Opts::parse(&words[1..]);
        let dest = self.destination(words[0]);
        let mut msg = RawMessage::signal(&opts.path, "x.x", &opts.member)
            .without_field(common::field::INTERFACE);
        if let Some(i) = opts.iface() {
            msg = msg.field(common::field::INTERFACE, Value::str(i));
        }
        if let Some(d) = &dest {
            msg = msg.destination(d);
        }
        let sender = self.unique(from);
        let serial = send(self.must(from), msg, opts.fds);
        let seen = self.settle_all(from);
        let mut denied = false;
        let mut receivers = Vec::new();
        for (label, msgs) in &seen {
            for m in msgs {
                if *label == from && m.reply_serial == Some(serial) && m.mtype == ERROR {
                    denied = true;
                }
                if m.mtype == SIGNAL
                    && m.serial == serial
                    && m.sender.as_deref() == Some(sender.as_str())
                {
                    receivers.push(*label);
                }
            }
        }
        receivers.sort_by_key(|l| CLIENTS.iter().position(|c| c == l));
        let list: Vec<String> = receivers.iter().map(char::to_string).collect();
        let list = if list.is_empty() {
            "-".to_owned()
        } else {
            list.join(" ")
        };
        if denied {
            format!("denied {list}")
        } else {
            list
        }
    }

    fn stray_reply(&mut self, from: char, words: &[&str]) -> String {
        let opts = Opts::parse(&words[1..]);
        let dest = self.destination(words[0]).unwrap_or_default();
        let msg = match &opts.error {
            Some(e) => RawMessage::error(&dest, 4242, e),
            None => RawMessage::method_return(&dest, 4242),
        };
        let sender = self.unique(from);
        let serial = send(self.must(from), msg, 0);
        let seen = self.settle_all(from);
        let mut refused = false;
        let mut delivered = false;
        for (label, msgs) in &seen {
            for m in msgs {
                if *label == from && m.reply_serial == Some(serial) && m.mtype == ERROR {
                    refused = true;
                }
                if *label != 'e'
                    && m.reply_serial == Some(4242)
                    && m.sender.as_deref() == Some(sender.as_str())
                {
                    delivered = true;
                }
            }
        }
        match (delivered, refused) {
            (true, false) => "delivered".into(),
            (false, true) => "denied".into(),
            (false, false) => "lost".into(),
            (true, true) => "delivered and refused".into(),
        }
    }
}

/// Step options.
struct Opts {
    iface: Option<String>,
    member: String,
    path: String,
    fds: usize,
    noreply: bool,
    error: Option<String>,
}

impl Opts {
    fn parse(words: &[&str]) -> Opts {
        let mut o = Opts {
            iface: Some("com.example.I".into()),
            member: "M".into(),
            path: "/com/example".into(),
            fds: 0,
            noreply: false,
            error: None,
        };
        for w in words {
            match w.split_once('=') {
                Some(("i", "-")) => o.iface = None,
                Some(("i", v)) => o.iface = Some(v.into()),
                Some(("m", v)) => o.member = v.into(),
                Some(("p", v)) => o.path = v.into(),
                Some(("fds", v)) => o.fds = v.parse().unwrap_or(0),
                Some(("err", v)) => o.error = Some(v.into()),
                None if *w == "noreply" => o.noreply = true,
                _ => panic!("unknown option {w:?}"),
            }
        }
        o
    }

    fn iface(&self) -> Option<&str> {
        self.iface.as_deref()
    }
}

/// Sends `msg` with `fds` descriptors (of /dev/null) attached.
fn send(c: &mut RawClient, msg: RawMessage, fds: usize) -> u32 {
    if fds == 0 {
        return c.send(&msg);
    }
    let files: Vec<OwnedFd> = (0..fds)
        .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("opening /dev/null")))
        .collect();
    let n = u32::try_from(fds).unwrap_or(0);
    let msg = msg.args((0..n).map(Value::Fd).collect()).unix_fds(n);
    let borrowed: Vec<_> = files.iter().map(AsFd::as_fd).collect();
    c.send_with_fds(&msg, &borrowed)
}

/// A round trip through GetId that tolerates an error answer (a policy may close the driver).
fn settle(c: &mut RawClient) -> Vec<Msg> {
    let serial = c.send(&RawMessage::bus_call("GetId", vec![]));
    let mut seen = Vec::new();
    loop {
        let m = c.recv();
        if m.reply_serial == Some(serial) {
            return seen;
        }
        seen.push(m);
    }
}

/// What `e` received of a call `serial` from `caller` without being its destination.
fn eavesdropped(seen: &[(char, Vec<Msg>)], serial: u32, caller: &str) -> Vec<&'static str> {
    seen.iter()
        .filter(|(l, _)| *l == 'e')
        .flat_map(|(_, msgs)| msgs.iter())
        .filter(|m| m.serial == serial && m.sender.as_deref() == Some(caller))
        .map(|_| "call")
        .collect()
}

/// What `e` received of the reply `serial` from `callee`.
fn eavesdropped_replies(seen: &[(char, Vec<Msg>)], serial: u32, callee: &str) -> Vec<&'static str> {
    seen.iter()
        .filter(|(l, _)| *l == 'e')
        .flat_map(|(_, msgs)| msgs.iter())
        .filter(|m| m.serial == serial && m.sender.as_deref() == Some(callee))
        .map(|m| if m.mtype == ERROR { "error" } else { "return" })
        .collect()
}

fn with_eavesdropped(outcome: String, kinds: &[&str]) -> String {
    if kinds.is_empty() {
        outcome
    } else {
        format!("{outcome} e={}", kinds.join("+"))
    }
}

fn short_error(m: &Msg) -> String {
    match m.error_name.as_deref() {
        Some(err::ACCESS_DENIED) => "denied".into(),
        Some(name) => name.rsplit('.').next().unwrap_or(name).to_owned(),
        None => "?".into(),
    }
}

fn short_result(reply: &Msg) -> String {
    if reply.mtype == ERROR {
        return short_error(reply);
    }
    reply
        .u32_arg(0)
        .map(|n| n.to_string())
        .unwrap_or_else(|| reply.describe())
}

/// Runs `case` on `kind`; gives each step with its outcome.
fn run_case(kind: BusKind, case: &Case) -> Vec<(String, String)> {
    let bus = Launch::new(kind).config(&config(case)).start();
    let mut world = World {
        bus,
        clients: Vec::new(),
        refused: Vec::new(),
    };
    case.script
        .iter()
        .map(|(step, _)| (step.to_string(), world.step(step)))
        .collect()
}

/// Runs `case` on dbus-daemon and then on the bus under test; both must give the table's
/// outcomes.
fn check(name: &str, case: &Case) {
    let expected: Vec<(String, String)> = case
        .script
        .iter()
        .map(|(s, o)| (s.to_string(), o.to_string()))
        .collect();
    let report = |got: &[(String, String)]| {
        got.iter()
            .zip(&expected)
            .map(|((step, out), (_, want))| {
                let mark = if out == want { " " } else { "✗" };
                format!("{mark} {step:<50} -> {out:<20} (table: {want})")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let for_bus = |kind: BusKind| -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(s, o)| (s.clone(), kind.expected(o)))
            .collect()
    };
    let reference = run_case(BusKind::DbusDaemon, case);
    assert!(
        reference == for_bus(BusKind::DbusDaemon),
        "case {name}: dbus-daemon disagrees with the table:\n{}\nconfiguration:\n{}",
        report(&reference),
        config(case)
    );
    let kind = BusKind::from_env();
    let tested = run_case(kind, case);
    assert!(
        tested == for_bus(kind),
        "case {name}: {kind:?} differs from dbus-daemon:\n{}\nconfiguration:\n{}",
        report(&tested),
        config(case)
    );
}

macro_rules! cases {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), &$case);
            }
        )*
    };
}

cases! {
    send_destination_covers_primary_and_queued_owners: Case {
        base: Base::Open,
        default: "<deny send_destination=\"com.example.S\"/>",
        policies: "",
        script: &[
            ("own b com.example.S", "1"),
            ("own c com.example.S", "2"),
            ("call a com.example.S", "denied"),
            ("call a @b", "denied"),
            ("call a @c", "denied"),
            ("call a @n", "ok"),
            ("release b com.example.S", "1"),
            ("call a @b", "ok"),
            ("call a @c", "denied"),
            ("signal b @a", "a"),
            ("signal c @a", "a"),
        ],
    };
    send_destination_opens_a_closed_bus: Case {
        base: Base::System,
        default: "<allow send_destination=\"com.example.S\"/>",
        policies: "<policy user=\"root\"><allow own=\"com.example.S\"/></policy>",
        script: &[
            ("own b com.example.S", "1"),
            ("own n com.example.S", "denied"),
            ("own b com.example.T", "denied"),
            ("call n com.example.S", "ok"),
            ("call n @b", "ok"),
            ("call n @c", "denied"),
            ("call b @n", "denied"),
            ("call n com.example.Missing", "ServiceUnknown"),
        ],
    };
    send_destination_prefix_covers_the_namespace: Case {
        base: Base::Open,
        default: "<deny send_destination_prefix=\"com.example.P\"/>",
        policies: "",
        script: &[
            ("own b com.example.P.X", "1"),
            ("own c com.example.PX", "1"),
            ("own d com.example.P", "1"),
            ("call a com.example.P.X", "denied"),
            ("call a @b", "denied"),
            ("call a com.example.PX", "ok"),
            ("call a @d", "denied"),
            ("own n com.example.P.X", "2"),
            ("call a @n", "denied"),
        ],
    };
    send_interface_deny_also_matches_no_interface: Case {
        base: Base::Open,
        default: "<deny send_interface=\"com.example.Secret\"/>",
        policies: "",
        script: &[
            ("call a @b i=com.example.Secret", "denied"),
            ("call a @b i=com.example.Other", "ok"),
            ("call a @b i=-", "denied"),
            ("signal a * i=com.example.Secret", "-"),
            ("signal a * i=com.example.Other", "a b"),
        ],
    };
    send_interface_allow_needs_the_interface: Case {
        base: Base::System,
        default: "<allow send_destination=\"com.example.S\" send_interface=\"com.example.I\"/>",
        policies: "<policy user=\"root\"><allow own=\"com.example.S\"/></policy>",
        script: &[
            ("own b com.example.S", "1"),
            ("call n com.example.S i=com.example.I", "ok"),
            ("call n com.example.S i=-", "denied"),
            ("call n com.example.S i=com.example.J", "denied"),
        ],
    };
    send_member_with_interface: Case {
        base: Base::Open,
        default: "<deny send_member=\"Forbidden\" send_interface=\"com.example.I\"/>",
        policies: "",
        script: &[
            ("call a @b m=Forbidden", "denied"),
            ("call a @b m=Allowed", "ok"),
            ("call a @b m=Forbidden i=com.example.J", "ok"),
            ("call a @b m=Forbidden i=-", "denied"),
            ("signal a * m=Forbidden", "-"),
        ],
    };
    send_error_names_the_error: Case {
        base: Base::Open,
        default: "<deny send_error=\"com.example.Error.Hidden\" send_type=\"error\"/>\n\
                  <deny send_error=\"com.example.Error.Secret\" send_type=\"error\" \
                  send_requested_reply=\"true\"/>",
        policies: "",
        script: &[
            ("call a @b err=com.example.Error.Hidden", "error"),
            ("reply b @a err=com.example.Error.Hidden", "denied"),
            ("call a @b err=com.example.Error.Secret", "reply denied"),
            ("call a @b err=com.example.Error.Shown", "error"),
            ("call a @b", "ok"),
        ],
    };
    send_error_alone_matches_messages_without_an_error_name: Case {
        base: Base::Open,
        default: "<deny send_error=\"com.example.Error.Hidden\"/>",
        policies: "",
        script: &[
            ("call a @b", "denied"),
            ("signal a *", "-"),
        ],
    };
    send_path_is_exact: Case {
        base: Base::Open,
        default: "<deny send_path=\"/com/example/hidden\"/>",
        policies: "",
        script: &[
            ("call a @b p=/com/example/hidden", "denied"),
            ("call a @b p=/com/example/hidden/sub", "ok"),
            ("call a @b p=/com/example", "ok"),
            ("signal a * p=/com/example/hidden", "-"),
        ],
    };
    send_type_by_message_type: Case {
        base: Base::Open,
        default: "<deny send_type=\"signal\"/>",
        policies: "",
        script: &[
            ("signal a *", "-"),
            ("signal a @b", "denied -"),
            ("call a @b", "ok"),
        ],
    };
    send_broadcast_true_is_signals_without_destination: Case {
        base: Base::Open,
        default: "<deny send_broadcast=\"true\" send_interface=\"com.example.I\"/>",
        policies: "",
        script: &[
            ("signal a *", "-"),
            ("signal a @b", "b"),
            ("call a @b", "ok"),
            ("signal a * i=com.example.J", "a b"),
        ],
    };
    send_broadcast_false_is_everything_addressed: Case {
        base: Base::Open,
        default: "<deny send_broadcast=\"false\" send_interface=\"com.example.I\"/>",
        policies: "",
        script: &[
            ("connect b", "ok"),
            ("signal a *", "a b"),
            ("signal a @b", "denied -"),
            ("call a @b", "denied"),
        ],
    };
    a_rule_naming_nothing_hides_the_rules_before_it: Case {
        base: Base::Open,
        default: "<deny send_broadcast=\"true\"/>",
        policies: "",
        script: &[
            ("call a @b", "denied"),
            ("signal a @b", "denied -"),
            ("signal a *", "-"),
            // RequestName is a call to the driver, whose allow rule was hidden too.
            ("own a com.example.A", "denied"),
        ],
    };
    requested_replies_pass_unrequested_do_not: Case {
        base: Base::System,
        default: "<allow send_destination=\"*\" send_type=\"method_call\"/>",
        policies: "",
        script: &[
            ("call a @b", "ok"),
            ("call a @b err=com.example.E", "error"),
            ("reply b @a", "denied"),
            ("reply b @a err=com.example.E", "denied"),
        ],
    };
    send_requested_reply_false_allows_any_reply: Case {
        base: Base::System,
        default: "<allow send_destination=\"*\" send_type=\"method_call\"/>\n\
                  <allow send_requested_reply=\"false\" send_type=\"method_return\"/>",
        policies: "",
        script: &[
            // The receiving side still allows only requested replies.
            ("reply b @a", "denied"),
            ("reply b @a err=com.example.E", "denied"),
            ("call a @b", "ok"),
        ],
    };
    unrequested_replies_need_both_sides_to_allow_them: Case {
        base: Base::System,
        default: "<allow send_destination=\"*\" send_type=\"method_call\"/>\n\
                  <allow send_requested_reply=\"false\" send_type=\"method_return\"/>\n\
                  <allow receive_requested_reply=\"false\" receive_type=\"method_return\"/>",
        policies: "",
        script: &[
            ("reply b @a", "delivered | tram: denied"),
            ("reply b @a err=com.example.E", "denied"),
            ("call a @b", "ok"),
        ],
    };
    deny_of_replies_is_for_unrequested_ones_unless_told: Case {
        base: Base::Open,
        default: "<allow send_requested_reply=\"false\" send_destination=\"*\"/>\n\
                  <deny send_type=\"method_return\"/>\n\
                  <deny send_requested_reply=\"true\" send_type=\"error\"/>",
        policies: "",
        script: &[
            ("call a @b", "ok"),
            ("reply b @a", "denied"),
            ("call a @b err=com.example.E", "reply denied"),
            ("reply b @a err=com.example.E", "denied"),
        ],
    };
    receive_rules_apply_to_each_recipient: Case {
        base: Base::Open,
        default: "<deny receive_interface=\"com.example.Quiet\" receive_type=\"signal\"/>\n\
                  <deny receive_member=\"Hush\" receive_interface=\"com.example.I\"/>\n\
                  <deny receive_path=\"/com/example/private\" receive_type=\"method_call\"/>\n\
                  <deny receive_error=\"com.example.Error.Private\" receive_type=\"error\"/>\n\
                  <deny receive_error=\"com.example.Error.Secret\" receive_type=\"error\" \
                  receive_requested_reply=\"true\"/>",
        policies: "",
        script: &[
            ("connect b", "ok"),
            ("signal a * i=com.example.Quiet", "-"),
            ("signal a * i=com.example.Loud", "a b"),
            ("signal a @b i=com.example.Quiet", "denied -"),
            ("call a @b i=com.example.Quiet", "ok"),
            ("signal a * m=Hush", "-"),
            ("call a @b m=Hush", "denied"),
            ("call a @b p=/com/example/private", "denied"),
            // A <deny> of replies is for unrequested ones unless it says otherwise.
            ("call a @b err=com.example.Error.Private", "error"),
            ("call a @b err=com.example.Error.Secret", "reply denied"),
            ("call a @b err=com.example.Error.Public", "error"),
        ],
    };
    receive_sender_follows_the_owner: Case {
        base: Base::Open,
        default: "<deny receive_sender=\"com.example.Noisy\"/>",
        policies: "",
        script: &[
            ("own b com.example.Noisy", "1"),
            ("connect c", "ok"),
            ("signal b *", "-"),
            ("call b @a", "denied"),
            ("call a @b", "ok"),
            ("signal c *", "a b c"),
            ("release b com.example.Noisy", "1"),
            ("signal b *", "a b c"),
        ],
    };
    receive_type_and_requested_replies: Case {
        base: Base::Open,
        default: "<allow send_requested_reply=\"false\" send_destination=\"*\"/>\n\
                  <allow receive_requested_reply=\"false\" receive_sender=\"*\"/>\n\
                  <deny receive_requested_reply=\"false\" receive_type=\"error\"/>\n\
                  <deny receive_type=\"method_call\" receive_interface=\"com.example.J\"/>",
        policies: "",
        script: &[
            ("reply b @a", "delivered | tram: denied"),
            ("reply b @a err=com.example.E", "denied"),
            ("call a @b err=com.example.E", "error"),
            ("call a @b i=com.example.J", "denied"),
        ],
    };
    eavesdropping_is_denied_without_a_rule: Case {
        base: Base::Open,
        default: "",
        policies: "",
        script: &[
            ("match e eavesdrop='true'", "ok"),
            ("call a @b", "ok"),
            ("signal a @b", "b"),
            ("signal a *", "a b e"),
        ],
    };
    eavesdropping_as_session_conf_allows_it: Case {
        base: Base::Nothing,
        default: "<allow send_destination=\"*\" eavesdrop=\"true\"/>\n\
                  <allow eavesdrop=\"true\"/>\n<allow own=\"*\"/>",
        policies: "",
        script: &[
            ("match e eavesdrop='true'", "ok"),
            ("call a @b", "ok e=call+return"),
            ("call a @b err=com.example.E", "error e=call+error"),
            ("signal a @b", "b e"),
            ("call a @b noreply", "delivered e=call"),
            // eavesdrop="true" on an <allow> also lets unrequested replies through.
            ("reply b @a", "delivered | tram: denied"),
        ],
    };
    eavesdropping_denied_by_receive_rule: Case {
        base: Base::Open,
        default: "<allow receive_sender=\"*\" eavesdrop=\"true\"/>\n\
                  <deny eavesdrop=\"true\" receive_interface=\"com.example.Secret\"/>",
        policies: "",
        script: &[
            ("match e eavesdrop='true'", "ok"),
            // The reply was not requested by the eavesdropper, and the callee's send rule
            // allows only requested replies.
            ("call a @b", "ok e=call"),
            // A return has no interface, which a <deny> with an interface still matches.
            ("call a @b i=com.example.Secret", "ok"),
        ],
    };
    own_names_exactly: Case {
        base: Base::Nothing,
        default: "<allow send_destination=\"*\"/>\n<allow receive_sender=\"*\"/>\n\
                  <allow own=\"com.example.A\"/>",
        policies: "",
        script: &[
            ("own a com.example.A", "1"),
            ("own a com.example.B", "denied"),
            ("own a com.example.A.Sub", "denied"),
            ("own b com.example.A", "2"),
        ],
    };
    own_prefix_covers_the_namespace: Case {
        base: Base::System,
        default: "<allow own_prefix=\"com.example.A\"/>",
        policies: "",
        script: &[
            ("own a com.example.A", "1"),
            ("own a com.example.A.B", "1"),
            ("own a com.example.A.B.C", "1"),
            ("own a com.example.AB", "denied"),
            ("own a com.example", "denied"),
        ],
    };
    own_star_and_later_exceptions: Case {
        base: Base::Open,
        default: "<deny own=\"*\"/>\n<allow own=\"com.example.A\"/>",
        policies: "",
        script: &[
            ("own a com.example.A", "1"),
            ("own a com.example.B", "denied"),
        ],
    };
    user_policies_by_name_and_uid: Case {
        base: Base::System,
        default: "",
        policies: "<policy user=\"nobody\">\n<allow own=\"com.example.N\"/>\n\
                   <allow send_destination=\"com.example.R\"/>\n</policy>\n\
                   <policy user=\"0\">\n<allow own=\"com.example.R\"/>\n</policy>\n\
                   <policy user=\"daemon\">\n<deny receive_sender=\"com.example.R\"/>\n</policy>",
        script: &[
            ("own n com.example.N", "1"),
            ("own a com.example.N", "denied"),
            ("own b com.example.R", "1"),
            ("own n com.example.R", "denied"),
            ("call n com.example.R", "ok"),
            ("call d com.example.R", "denied"),
            ("signal b *", "a b n"),
        ],
    };
    group_policies_by_name_and_gid: Case {
        base: Base::System,
        default: "",
        policies: "<policy group=\"nogroup\">\n<allow own=\"com.example.G\"/>\n</policy>\n\
                   <policy group=\"1\">\n<allow own=\"com.example.D\"/>\n</policy>\n\
                   <policy group=\"root\">\n<allow own_prefix=\"com.example.Root\"/>\n</policy>",
        script: &[
            ("own n com.example.G", "1"),
            ("own d com.example.G", "denied"),
            ("own d com.example.D", "1"),
            ("own a com.example.Root.X", "1"),
            ("own n com.example.Root.Y", "denied"),
        ],
    };
    at_console_false_applies_without_a_console: Case {
        base: Base::System,
        default: "",
        policies: "<policy at_console=\"true\">\n<allow own=\"com.example.Console\"/>\n</policy>\n\
                   <policy at_console=\"false\">\n<allow own=\"com.example.Away\"/>\n</policy>",
        script: &[
            ("own a com.example.Console", "denied"),
            ("own n com.example.Console", "denied"),
            ("own a com.example.Away", "1"),
            ("own n com.example.Away", "2"),
        ],
    };
    mandatory_overrides_user_policies: Case {
        base: Base::Open,
        default: "",
        policies: "<policy context=\"mandatory\">\n<deny send_destination=\"com.example.S\"/>\n\
                   <deny own=\"com.example.M\"/>\n</policy>\n\
                   <policy user=\"root\">\n<allow send_destination=\"com.example.S\"/>\n\
                   <allow own=\"com.example.M\"/>\n</policy>",
        script: &[
            ("own b com.example.S", "1"),
            ("call a com.example.S", "denied"),
            ("own a com.example.M", "denied"),
        ],
    };
    later_contexts_override_earlier_ones: Case {
        base: Base::Open,
        default: "<deny own=\"com.example.U\"/>",
        policies: "<policy user=\"root\">\n<allow own=\"com.example.U\"/>\n</policy>\n\
                   <policy group=\"root\">\n<deny own=\"com.example.U\"/>\n</policy>",
        script: &[
            ("own a com.example.U", "1"),
            ("own n com.example.U", "denied"),
        ],
    };
    fd_counts_bound_rules: Case {
        base: Base::Open,
        default: "<deny send_destination=\"com.example.S\" min_fds=\"2\"/>\n\
                  <deny receive_interface=\"com.example.J\" max_fds=\"0\"/>",
        policies: "",
        script: &[
            ("own b com.example.S", "1"),
            ("call a com.example.S fds=1", "ok"),
            ("call a com.example.S fds=2", "denied"),
            ("call a com.example.S fds=3", "denied"),
            ("call a @b i=com.example.J", "denied"),
            ("call a @b i=com.example.J fds=1", "ok"),
        ],
    };
    max_fds_in_an_allow: Case {
        base: Base::System,
        default: "<allow send_destination=\"com.example.S\" max_fds=\"0\"/>",
        policies: "<policy user=\"root\"><allow own=\"com.example.S\"/></policy>",
        script: &[
            ("own b com.example.S", "1"),
            ("call n com.example.S", "ok"),
            ("call n com.example.S fds=1", "denied"),
        ],
    };
    user_and_group_rules_admit_connections: Case {
        base: Base::Open,
        default: "<deny user=\"nobody\"/>\n<deny group=\"daemon\"/>",
        policies: "",
        script: &[
            ("connect n", "refused"),
            ("connect d", "refused"),
            ("connect a", "ok"),
        ],
    };
    admission_by_a_named_user_only: Case {
        base: Base::Open,
        default: "<deny user=\"*\"/>\n<allow user=\"nobody\"/>",
        policies: "",
        script: &[
            ("connect n", "ok"),
            ("connect d", "refused"),
            // The bus's own user is admitted only by default: `deny user="*"` covers it too.
            ("connect a", "refused"),
        ],
    };
    star_forms_match_absent_fields: Case {
        base: Base::Open,
        default: "<deny send_destination=\"com.example.S\" send_interface=\"*\"/>\n\
                  <deny send_path=\"*\" send_member=\"Stop\" send_interface=\"com.example.I\"/>\n\
                  <deny send_type=\"*\" send_destination=\"com.example.T\"/>",
        policies: "",
        script: &[
            ("own b com.example.S", "1"),
            ("own c com.example.T", "1"),
            ("call a com.example.S i=-", "denied"),
            ("call a com.example.S", "denied"),
            ("call a @d m=Stop", "denied"),
            ("call a @d m=Go", "ok"),
            // Broadcasts are checked per receiver: the owners of S and T get none.
            ("signal c *", "a d"),
            ("signal a *", "a d"),
        ],
    };
    calls_to_the_driver_can_be_denied: Case {
        base: Base::Open,
        default: "<deny send_destination=\"org.freedesktop.DBus\" \
                  send_interface=\"org.freedesktop.DBus\" send_member=\"ListNames\"/>\n\
                  <deny send_destination=\"org.freedesktop.DBus\" \
                  send_interface=\"org.freedesktop.DBus.Introspectable\"/>",
        policies: "",
        script: &[
            ("call a bus i=org.freedesktop.DBus m=ListNames p=/org/freedesktop/DBus", "denied"),
            ("call a bus i=org.freedesktop.DBus.Introspectable m=Introspect p=/", "denied"),
            ("own a com.example.A", "1"),
        ],
    };
}

#[test]
fn refused_messages_are_logged_at_a_bounded_rate() {
    // As dbus-daemon, tramd logs what its policy refuses, here 20 lines in 10 s at most. Even
    // a reply of the driver's that the receiver may not receive is logged: without that, a
    // configuration that allows no receiving leaves clients hanging with no trace.
    let bus = Launch::new(BusKind::Tramd)
        .config(&busconfig(
            "<listen>unix:path=@DIR@/bus</listen>\n<policy context=\"default\">\n\
             <allow user=\"*\"/>\n<allow own=\"*\"/>\n<allow send_destination=\"*\"/>\n\
             <allow receive_sender=\"*\"/>\n<deny send_interface=\"com.example.Secret\"/>\n\
             </policy>",
        ))
        .start();
    let mut a = bus.raw();
    let b = bus.raw();
    for _ in 0..30 {
        let reply = a.call(RawMessage::call(
            Some(&b.unique_name),
            "/",
            Some("com.example.Secret"),
            "Get",
        ));
        assert!(reply.is_error(err::ACCESS_DENIED), "{}", reply.describe());
    }
    // A malformed message makes the bus log a last line: everything before it is in.
    let mut marker = bus.raw();
    let _ = marker.try_write_all(&[b'l', 1, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    let ended = format!("{} (", marker.unique_name);
    assert!(
        common::boot::wait_until(DEADLINE, || bus.stderr().contains(&ended)),
        "no line for the malformed message; stderr:\n{}",
        bus.stderr()
    );
    let stderr = bus.stderr();
    let rejected: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Rejected send message, "))
        .collect();
    assert_eq!(rejected.len(), 20, "stderr:\n{stderr}");
    assert!(
        rejected
            .iter()
            .all(|l| l.contains("interface=\"com.example.Secret\"")),
        "{rejected:#?}"
    );
}
