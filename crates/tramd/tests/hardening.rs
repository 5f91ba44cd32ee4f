//! Attacks replayed against the bus, each refused with the bus unharmed: SASL lines with odd
//! whitespace, case and terminators; `eavesdrop` spelt with spaces in a match rule; reply serials
//! on messages that are not replies; replies nobody asked for; forged senders and forged driver
//! signals; the reserved `org.freedesktop.DBus.Local` interface and path; fds without
//! negotiation; squatting on a name the policy guards.
//!
//! Each scenario records its outcomes as lines. It runs on dbus-daemon first (whose lines must
//! be the ones written here: a mismatch there means the table is wrong) and then on the bus under
//! test (`TRAM_TEST_BUS`, tramd by default), which must give the same lines. An entry
//! `REFERENCE | tram: TRAM` marks a deliberate difference of tramd. A witness client connected
//! before the attacks must get an answer after each of them.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::time::Instant;

use common::daemon::{Daemon, Launch, NOBODY, busconfig, open_config};
use common::*;

const IFACE: &str = "com.example.Test";
const LOCAL_IFACE: &str = "org.freedesktop.DBus.Local";
const LOCAL_PATH: &str = "/org/freedesktop/DBus/Local";

/// A scenario: the bus, and the witness that must keep getting answers. Gives its lines.
type Scenario = fn(&Daemon, &mut RawClient) -> Vec<String>;

#[test]
fn sasl_lines_with_odd_whitespace_case_and_terminators() {
    let expected: Vec<String> = SASL_ROWS
        .iter()
        .map(
            |(label, _, _, _, outcome)| match outcome.split_once(" | tram: ") {
                Some((reference, tram)) => format!("{label}: {reference} | tram: {label}: {tram}"),
                None => format!("{label}: {outcome}"),
            },
        )
        .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(&open_config(""), sasl_scenario, &expected);
}

/// One row of the SASL table: a label; whether the client connects as nobody (else as the
/// test's own user, root); what it writes after the credentials byte, where `<me>` is its own
/// uid in hex, `<long>` 20,000 digits (a line longer than either bus accepts: both allow a
/// little over 16 KiB) and `<TEXT>` is TEXT in hex; how many replies that draws; and the
/// replies (`OK` followed by the uid the connection then has).
type SaslRow = (&'static str, bool, &'static str, usize, &'static str);

#[rustfmt::skip]
const SASL_ROWS: &[SaslRow] = &[
    ("lower-case command", false, "auth external <me>\r\n", 1, "ERROR \"Unknown command\""),
    ("lower-case mechanism", false, "AUTH external <me>\r\n", 1, "REJECTED EXTERNAL"),
    ("two spaces", false, "AUTH  EXTERNAL  <me>\r\n", 1, "OK, uid 0"),
    ("tabs", false, "AUTH\tEXTERNAL\t<me>\r\n", 1, "OK, uid 0"),
    ("trailing space", false, "AUTH EXTERNAL <me> \r\n", 1, "ERROR \"Invalid hex encoding\""),
    ("trailing tab", false, "AUTH EXTERNAL <me>\t\r\n", 1, "ERROR \"Invalid hex encoding\""),
    ("leading space", false, " AUTH EXTERNAL <me>\r\n", 1, "ERROR \"Unknown command\""),
    // A CR alone ends nothing: the line goes on to the next CR LF.
    ("CR without LF", false, "AUTH EXTERNAL <me>\rBEGIN\r\r\n", 1,
     "ERROR \"Invalid hex encoding\""),
    ("LF without CR", false, "AUTH EXTERNAL <me>\nBEGIN\n\r\n", 1,
     "ERROR \"Invalid hex encoding\""),
    ("NUL inside", false, "AUTH EXT\0ERNAL <me>\r\n", 1, "ERROR \"Command contained non-ASCII\""),
    ("lower-case BEGIN", false, "AUTH EXTERNAL <me>\r\nbegin\r\n", 2,
     "OK / ERROR \"Unknown command\", uid 0"),
    ("overlong line", false, "AUTH EXTERNAL <long>\r\n", 1, "closed"),
    ("overlong, unterminated", false, "AUTH EXTERNAL <long>", 1, "closed"),
    // nobody claiming root's identity, however it is spelt.
    ("nobody as 0", true, "AUTH EXTERNAL <0>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as 00", true, "AUTH EXTERNAL <00>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as +0", true, "AUTH EXTERNAL <+0>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as -0", true, "AUTH EXTERNAL <-0>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as ' 0'", true, "AUTH EXTERNAL < 0>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as '0 '", true, "AUTH EXTERNAL <0 >\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as 2^32", true, "AUTH EXTERNAL <4294967296>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as 0, tabs", true, "AUTH\tEXTERNAL\t<0>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as 0, two spaces", true, "AUTH  EXTERNAL  <0>\r\n", 1, "REJECTED EXTERNAL"),
    ("nobody as 0 in DATA", true, "AUTH EXTERNAL\r\nDATA <0>\r\n", 2,
     "DATA / REJECTED EXTERNAL"),
    ("nobody as 0 in DATA, two spaces", true, "AUTH EXTERNAL\r\nDATA  <0>\r\n", 2,
     "DATA / REJECTED EXTERNAL"),
    ("nobody as itself", true, "AUTH EXTERNAL <65534>\r\n", 1, "OK, uid 65534"),
    // tramd reads the decimal uid as a number, dbus-daemon compares it as text: either way the
    // identity is the peer's own.
    ("nobody as itself, leading zero", true, "AUTH EXTERNAL <065534>\r\n", 1,
     "REJECTED EXTERNAL | tram: OK, uid 65534"),
    ("nobody, empty identity", true, "AUTH EXTERNAL\r\nDATA\r\n", 2, "DATA / OK, uid 65534"),
];

fn sasl_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let mut out = Vec::new();
    for (label, as_nobody, template, replies, _) in SASL_ROWS {
        let mut c = if *as_nobody {
            bus.connect_as(NOBODY)
                .unwrap_or_else(|e| panic!("{label}: {e}"))
        } else {
            bus.raw_unauthenticated()
        };
        // The bus may close the connection before it has read everything.
        let _ = c.try_write_all(&expand(template));
        let mut answers = Vec::new();
        for _ in 0..*replies {
            match read_sasl_reply(&c) {
                Some(line) if line.starts_with("OK ") => answers.push("OK".to_owned()),
                Some(line) => answers.push(line),
                None => {
                    answers.push("closed".to_owned());
                    break;
                }
            }
        }
        let mut line = format!("{label}: {}", answers.join(" / "));
        if answers.iter().any(|a| a == "OK") {
            // Authenticated: as whom?
            c.write_all(b"BEGIN\r\n");
            let me = c.hello();
            let uid = c.bus_ok("GetConnectionUnixUser", vec![Value::str(&me)]);
            let uid = uid.first().and_then(Value::as_u32).unwrap_or(u32::MAX);
            line.push_str(&format!(", uid {uid}"));
        }
        out.push(line);
        served(witness);
    }
    out
}

/// A [`SASL_ROWS`] template in bytes, credentials byte first.
fn expand(template: &str) -> Vec<u8> {
    let mut out = String::from("\0");
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('<') {
        let (inner, after) = after
            .split_once('>')
            .unwrap_or_else(|| panic!("unclosed < in {template:?}"));
        out.push_str(before);
        match inner {
            "me" => out.push_str(&hex(&rustix::process::getuid().as_raw().to_string())),
            "long" => out.push_str(&"3".repeat(20_000)),
            text => out.push_str(&hex(text)),
        }
        rest = after;
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Reads one SASL reply byte by byte: the line without its terminator, or `None` when the bus
/// closed the connection.
fn read_sasl_reply(c: &RawClient) -> Option<String> {
    let mut sock = c.socket();
    let deadline = Instant::now() + DEADLINE;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no SASL reply within {DEADLINE:?} (so far {:?})",
            String::from_utf8_lossy(&line)
        );
        sock.set_read_timeout(Some(left)).ok()?;
        let mut byte = [0u8];
        match sock.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("SASL read: {e}"),
        }
    }
    line.truncate(line.len() - 2);
    Some(String::from_utf8_lossy(&line).into_owned())
}

#[test]
fn eavesdrop_spelt_with_spaces() {
    check(&open_config(""), eavesdrop_scenario, EAVESDROP_EXPECTED);
}

#[test]
fn eavesdrop_spelt_with_spaces_where_the_policy_forbids_eavesdropping() {
    // The same rules where no `eavesdrop="true"` rule allows it: whichever spelling the parser
    // accepts, the rule must not see messages addressed to others.
    let config = busconfig(
        "<listen>unix:path=@DIR@/bus</listen>\n<auth>EXTERNAL</auth>\n\
         <policy context=\"default\">\n<allow user=\"*\"/>\n<allow send_destination=\"*\"/>\n\
         <allow receive_sender=\"*\"/>\n<allow own=\"*\"/>\n</policy>",
    );
    let expected: Vec<String> = EAVESDROP_EXPECTED
        .iter()
        .map(|line| line.replace("ok, eavesdrops", "ok, does not eavesdrop"))
        .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(&config, eavesdrop_scenario, &expected);
}

/// `eavesdrop` spellings, each after `member='RowN',`.
const EAVESDROP_RULES: &[&str] = &[
    "eavesdrop='true'",
    "eavesdrop=true",
    "eavesdrop =true",
    "eavesdrop= true",
    "eavesdrop = 'true'",
    " eavesdrop='true'",
    "eavesdrop='true' ",
    "eavesdrop=' true'",
    "eavesdrop='TRUE'",
    "eavesdrop='1'",
    "eavesdrop='false'",
    "eavesdrop='true',eavesdrop='false'",
];

const EAVESDROP_EXPECTED: &[&str] = &[
    "eavesdrop='true': ok, eavesdrops",
    "eavesdrop=true: ok, eavesdrops",
    "eavesdrop =true: ok, eavesdrops",
    "eavesdrop= true: MatchRuleInvalid",
    "eavesdrop = 'true': MatchRuleInvalid",
    " eavesdrop='true': ok, eavesdrops",
    "eavesdrop='true' : MatchRuleInvalid",
    "eavesdrop=' true': MatchRuleInvalid",
    "eavesdrop='TRUE': MatchRuleInvalid",
    "eavesdrop='1': MatchRuleInvalid",
    "eavesdrop='false': ok, does not eavesdrop",
    "eavesdrop='true',eavesdrop='false': ok, does not eavesdrop",
];

fn eavesdrop_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let mut out = Vec::new();
    for (i, spelling) in EAVESDROP_RULES.iter().enumerate() {
        let member = format!("Row{i}");
        let mut c = bus.raw();
        let reply = c.call_bus(
            "AddMatch",
            vec![Value::Str(format!("member='{member}',{spelling}"))],
        );
        if !reply.is_return() {
            out.push(format!("{spelling}: {}", outcome(&reply)));
            continue;
        }
        a.send(&RawMessage::call(Some(&bn), "/", Some(IFACE), &member).flags(NO_REPLY_EXPECTED));
        b.wait_for(|m| m.member.as_deref() == Some(member.as_str()));
        // The call reached its destination before the bus read c's ping: a copy for c would
        // have been queued before the ping's reply.
        let seen = c
            .sync()
            .iter()
            .any(|m| m.member.as_deref() == Some(member.as_str()));
        let verdict = if seen {
            "eavesdrops"
        } else {
            "does not eavesdrop"
        };
        out.push(format!("{spelling}: ok, {verdict}"));
        served(witness);
    }
    out
}

#[test]
fn reply_serial_on_messages_that_are_not_replies() {
    check(
        &open_config(""),
        reply_serial_scenario,
        &[
            "caller got: call Trick, reply_serial kept",
            "caller got: signal Trick, reply_serial kept",
            "trick call answered: ok",
            "real reply: ok(\"real\")",
        ],
    );
}

fn reply_serial_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let mut caller = bus.raw();
    let mut svc = bus.raw();
    let cn = caller.unique_name.clone();
    let sn = svc.unique_name.clone();
    let mut out = Vec::new();
    let serial = caller.send(&RawMessage::call(Some(&sn), "/", Some(IFACE), "Slow"));
    let slow = svc.wait_for(|m| m.member.as_deref() == Some("Slow"));
    // A call and a signal claiming to answer the caller's pending call.
    let trick_call = RawMessage::call(Some(&cn), "/", Some(IFACE), "Trick")
        .field(field::REPLY_SERIAL, Value::U32(serial));
    svc.send(&trick_call);
    let trick_signal = RawMessage::signal("/", IFACE, "Trick")
        .destination(&cn)
        .field(field::REPLY_SERIAL, Value::U32(serial));
    svc.send(&trick_signal);
    for _ in 0..2 {
        let got = caller.wait_for(|m| m.member.as_deref() == Some("Trick"));
        let kept = if got.reply_serial == Some(serial) {
            "kept"
        } else {
            "dropped"
        };
        out.push(format!(
            "caller got: {} Trick, reply_serial {kept}",
            type_name(got.mtype)
        ));
        if got.mtype == METHOD_CALL {
            caller.send(&RawMessage::reply_to(&got, None));
        }
    }
    // The trick call expects a reply like any call: the caller's answer reaches the service.
    let answer = svc.wait_for(|m| m.mtype != METHOD_CALL);
    out.push(format!("trick call answered: {}", outcome(&answer)));
    served(witness);
    // The caller is still waiting: the real reply is delivered.
    svc.send(&RawMessage::reply_to(&slow, None).args(vec![Value::str("real")]));
    let reply = caller.wait_reply(serial);
    out.push(format!("real reply: {}", outcome(&reply)));
    out
}

#[test]
fn replies_to_calls_never_made() {
    check(
        &open_config(""),
        unrequested_reply_scenario,
        &[
            "return never asked for: delivered | tram: return never asked for: AccessDenied",
            "error never asked for: delivered | tram: error never asked for: AccessDenied",
            "return from a third party: delivered | tram: return from a third party: AccessDenied",
            "the callee's reply: delivered",
            "a second reply: delivered | tram: a second reply: AccessDenied",
        ],
    );
}

fn unrequested_reply_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut c = bus.raw();
    let bn = b.unique_name.clone();
    let cn = c.unique_name.clone();
    let mut out = Vec::new();
    let mut forge = |label: &str, from: &mut RawClient, msg: RawMessage, b: &mut RawClient| {
        let serial = from.send(&msg);
        // The bus handles a connection's messages in order: an error for the forged reply
        // arrives before the ping's reply, and a delivered copy is queued for b before b's own
        // ping is read.
        let refused = from
            .sync()
            .into_iter()
            .find(|m| m.reply_serial == Some(serial));
        let reply_serial = msg
            .fields
            .iter()
            .find(|(code, _)| *code == field::REPLY_SERIAL)
            .and_then(|(_, v)| v.as_u32());
        let delivered = b
            .sync()
            .iter()
            .any(|m| m.mtype != METHOD_CALL && m.reply_serial == reply_serial);
        let verdict = match (refused, delivered) {
            (None, true) => "delivered".to_owned(),
            (Some(e), false) => outcome(&e),
            (None, false) => "dropped silently".to_owned(),
            (Some(e), true) => format!("delivered and {}", outcome(&e)),
        };
        out.push(format!("{label}: {verdict}"));
        served(witness);
    };
    forge(
        "return never asked for",
        &mut a,
        RawMessage::method_return(&bn, 4242),
        &mut b,
    );
    forge(
        "error never asked for",
        &mut a,
        RawMessage::error(&bn, 4243, "com.example.Error.Forged"),
        &mut b,
    );
    // b waits for c; a answers in c's place.
    let serial = b.send(&RawMessage::call(Some(&cn), "/", Some(IFACE), "Wait"));
    let call = c.wait_for(|m| m.member.as_deref() == Some("Wait"));
    forge(
        "return from a third party",
        &mut a,
        RawMessage::method_return(&bn, serial),
        &mut b,
    );
    forge(
        "the callee's reply",
        &mut c,
        RawMessage::reply_to(&call, None),
        &mut b,
    );
    forge(
        "a second reply",
        &mut c,
        RawMessage::reply_to(&call, None),
        &mut b,
    );
    out
}

#[test]
fn forged_senders_are_overwritten() {
    check(
        &open_config(""),
        forged_sender_scenario,
        &[
            "broadcast claiming the driver: b saw sender a",
            "broadcast claiming the driver: sender='org.freedesktop.DBus' rule saw nothing",
            "call claiming c: b saw sender a",
            "unicast signal claiming the driver: b saw sender a",
        ],
    );
}

fn forged_sender_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut o = bus.raw();
    let c = bus.raw();
    let labels = [
        (a.unique_name.clone(), "a"),
        (c.unique_name.clone(), "c"),
        (BUS.to_owned(), "the driver"),
    ];
    let label = |m: &Msg| {
        let sender = m.sender.as_deref().unwrap_or("none");
        labels
            .iter()
            .find(|(n, _)| n == sender)
            .map_or(sender.to_owned(), |(_, l)| (*l).to_owned())
    };
    let bn = b.unique_name.clone();
    b.add_match("type='signal',interface='com.example.Forge'");
    o.add_match("type='signal',sender='org.freedesktop.DBus',interface='com.example.Forge'");
    let mut out = Vec::new();
    a.send(
        &RawMessage::signal("/", "com.example.Forge", "Broadcast")
            .field(field::SENDER, Value::str(BUS)),
    );
    let got = b.wait_for(|m| m.member.as_deref() == Some("Broadcast"));
    out.push(format!(
        "broadcast claiming the driver: b saw sender {}",
        label(&got)
    ));
    let leaked = o
        .sync()
        .iter()
        .any(|m| m.member.as_deref() == Some("Broadcast"));
    out.push(format!(
        "broadcast claiming the driver: sender='org.freedesktop.DBus' rule saw {}",
        if leaked { "it" } else { "nothing" }
    ));
    served(witness);
    a.send(
        &RawMessage::call(Some(&bn), "/", Some(IFACE), "Forged")
            .field(field::SENDER, Value::str(&c.unique_name))
            .flags(NO_REPLY_EXPECTED),
    );
    let got = b.wait_for(|m| m.member.as_deref() == Some("Forged"));
    out.push(format!("call claiming c: b saw sender {}", label(&got)));
    a.send(
        &RawMessage::signal(BUS_PATH, BUS, "NameAcquired")
            .destination(&bn)
            .field(field::SENDER, Value::str(BUS))
            .args(vec![Value::str("com.example.Fake")]),
    );
    let got = b.wait_for(|m| m.member.as_deref() == Some("NameAcquired"));
    out.push(format!(
        "unicast signal claiming the driver: b saw sender {}",
        label(&got)
    ));
    served(witness);
    out
}

#[test]
fn forged_name_owner_changed_changes_nothing() {
    check(
        &open_config(""),
        forged_owner_change_scenario,
        &[
            "rule on the driver's signals: nothing",
            "rule on any sender: from the forger",
            "GetNameOwner: the owner",
            "the owner after a forged NameLost: the owner",
            "ReleaseName by the forger: ok(uint32 3)",
        ],
    );
}

fn forged_owner_change_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    const NAME: &str = "com.example.Owned";
    let mut owner = bus.raw();
    let mut forger = bus.raw();
    let mut strict = bus.raw();
    let mut loose = bus.raw();
    let on = owner.unique_name.clone();
    let fname = forger.unique_name.clone();
    assert_eq!(owner.request_name(NAME, 4), 1);
    strict.add_match("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'");
    loose.add_match("type='signal',member='NameOwnerChanged'");
    let mut out = Vec::new();
    let forged = |with_sender: bool| {
        let m = RawMessage::signal(BUS_PATH, BUS, "NameOwnerChanged").args(vec![
            Value::str(NAME),
            Value::str(&on),
            Value::str(&fname),
        ]);
        if with_sender {
            m.field(field::SENDER, Value::str(BUS))
        } else {
            m
        }
    };
    forger.send(&forged(false));
    forger.send(&forged(true));
    let forged_here =
        |m: &Msg| m.member.as_deref() == Some("NameOwnerChanged") && m.str_arg(0) == Some(NAME);
    let first = loose.wait_for(forged_here);
    let second = loose.wait_for(forged_here);
    let strict_saw = strict.sync().iter().any(forged_here);
    out.push(format!(
        "rule on the driver's signals: {}",
        if strict_saw { "saw it" } else { "nothing" }
    ));
    let from = |m: &Msg| {
        if m.sender.as_deref() == Some(fname.as_str()) {
            "from the forger"
        } else {
            "from someone else"
        }
    };
    assert_eq!(from(&first), from(&second));
    out.push(format!("rule on any sender: {}", from(&first)));
    let owner_label = |c: &mut RawClient| {
        let body = c.bus_ok("GetNameOwner", vec![Value::str(NAME)]);
        if body.first().and_then(Value::as_str) == Some(on.as_str()) {
            "the owner"
        } else {
            "someone else"
        }
    };
    out.push(format!("GetNameOwner: {}", owner_label(witness)));
    // A NameLost addressed to the owner does not make it lose the name.
    forger.send(
        &RawMessage::signal(BUS_PATH, BUS, "NameLost")
            .destination(&on)
            .args(vec![Value::str(NAME)]),
    );
    owner.wait_for(|m| m.member.as_deref() == Some("NameLost"));
    out.push(format!(
        "the owner after a forged NameLost: {}",
        owner_label(witness)
    ));
    let released = forger.call_bus("ReleaseName", vec![Value::str(NAME)]);
    out.push(format!("ReleaseName by the forger: {}", outcome(&released)));
    out
}

#[test]
fn the_local_interface_and_path_disconnect_their_sender() {
    check(
        &open_config(""),
        local_scenario,
        &[
            "Local signal: closed",
            "Local interface on another path: closed",
            "Local path with another interface: closed",
            "call with the Local interface: closed",
            "call on the Local path: closed",
            "call on the Local path without interface: closed",
            "call to the driver with the Local interface: closed",
            "victim saw: nothing",
        ],
    );
}

fn local_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let mut victim = bus.raw();
    let vn = victim.unique_name.clone();
    victim.add_match("type='signal'");
    let rows: Vec<(&str, RawMessage)> = vec![
        (
            "Local signal",
            RawMessage::signal(LOCAL_PATH, LOCAL_IFACE, "Disconnected"),
        ),
        (
            "Local interface on another path",
            RawMessage::signal("/", LOCAL_IFACE, "Disconnected"),
        ),
        (
            "Local path with another interface",
            RawMessage::signal(LOCAL_PATH, IFACE, "S"),
        ),
        (
            "call with the Local interface",
            RawMessage::call(Some(&vn), "/", Some(LOCAL_IFACE), "Disconnected"),
        ),
        (
            "call on the Local path",
            RawMessage::call(Some(&vn), LOCAL_PATH, Some(IFACE), "M"),
        ),
        (
            "call on the Local path without interface",
            RawMessage::call(Some(&vn), LOCAL_PATH, None, "M"),
        ),
        (
            "call to the driver with the Local interface",
            RawMessage::call(Some(BUS), BUS_PATH, Some(LOCAL_IFACE), "Disconnected"),
        ),
    ];
    let mut out = Vec::new();
    let mut senders = Vec::new();
    for (label, msg) in rows {
        let mut a = bus.raw();
        senders.push(a.unique_name.clone());
        try_send(&mut a, &msg);
        out.push(format!("{label}: {}", closed_or_answered(&mut a)));
        served(witness);
    }
    let seen: Vec<String> = victim
        .sync()
        .iter()
        .filter(|m| m.sender.as_ref().is_some_and(|s| senders.contains(s)))
        .map(Msg::describe)
        .collect();
    out.push(format!(
        "victim saw: {}",
        if seen.is_empty() {
            "nothing".to_owned()
        } else {
            seen.join("; ")
        }
    ));
    out
}

#[test]
fn fds_without_negotiation_disconnect_their_sender() {
    check(
        &open_config(""),
        fds_scenario,
        &[
            "fd with UNIX_FDS=1, not negotiated: closed; receiver saw nothing",
            "UNIX_FDS=1 without an fd, not negotiated: closed; receiver saw nothing",
            // dbus-daemon drops the fds of a message that declares none; tramd refuses fds on a
            // connection that did not negotiate them, whatever the message says.
            "fd without UNIX_FDS, not negotiated: answered; receiver saw a call with 0 fds \
             | tram: fd without UNIX_FDS, not negotiated: closed; receiver saw nothing",
            "fd to a receiver that did not negotiate: NotSupported; receiver saw nothing",
        ],
    );
}

fn fds_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    let without_fds = || {
        let mut c = bus.raw_unauthenticated();
        c.authenticate(false);
        c.hello();
        c
    };
    let mut receiver = without_fds();
    let rn = receiver.unique_name.clone();
    let devnull = File::open("/dev/null").unwrap_or_else(|e| panic!("/dev/null: {e}"));
    let call = || RawMessage::call(Some(&rn), "/", Some(IFACE), "TakeFd");
    let with_fd = || call().args(vec![Value::Fd(0)]).unix_fds(1);
    let mut out = Vec::new();
    let mut row = |label: &str, mut sender: RawClient, msg: RawMessage, fd: bool| {
        let serial = if fd {
            sender.send_with_fds(&msg, &[devnull.as_fd()])
        } else {
            let serial = sender.next_serial();
            let _ = sender.try_write_all(&msg.encode(serial));
            serial
        };
        let verdict = if sender.guid.is_empty() || !label.starts_with("fd to") {
            closed_or_answered(&mut sender).to_owned()
        } else {
            outcome(&sender.wait_reply(serial))
        };
        let seen: Vec<String> = receiver
            .sync()
            .iter()
            .filter(|m| m.sender.as_deref() == Some(sender.unique_name.as_str()))
            .map(|m| format!("a {} with {} fds", type_name(m.mtype), m.fds.len()))
            .collect();
        let seen = if seen.is_empty() {
            "nothing".to_owned()
        } else {
            seen.join(", ")
        };
        out.push(format!("{label}: {verdict}; receiver saw {seen}"));
        served(witness);
    };
    row(
        "fd with UNIX_FDS=1, not negotiated",
        without_fds(),
        with_fd(),
        true,
    );
    row(
        "UNIX_FDS=1 without an fd, not negotiated",
        without_fds(),
        with_fd(),
        false,
    );
    row(
        "fd without UNIX_FDS, not negotiated",
        without_fds(),
        call().flags(NO_REPLY_EXPECTED),
        true,
    );
    // A sender that negotiated fds, to a receiver that did not: refused at the sender.
    row(
        "fd to a receiver that did not negotiate",
        bus.raw(),
        with_fd(),
        true,
    );
    out
}

#[test]
fn squatting_on_a_guarded_name_is_refused() {
    let config = open_config(
        "<policy context=\"default\">\n<deny own=\"com.example.Guarded\"/>\n</policy>\n\
         <policy user=\"root\">\n<allow own=\"com.example.Guarded\"/>\n</policy>",
    );
    check(
        &config,
        squatting_scenario,
        &[
            "squatter, before the owner, flags 0: AccessDenied",
            "squatter, before the owner, flags 3: AccessDenied",
            "squatter, a name below it: ok(uint32 1)",
            "owner: ok(uint32 1)",
            "squatter, replacing, flags 2: AccessDenied",
            "squatter, queueing, flags 0: AccessDenied",
            "squatter, DO_NOT_QUEUE, flags 4: AccessDenied",
            "GetNameOwner: the owner",
            "squatter releases it: ok(uint32 3)",
            "squatter, after the owner left: AccessDenied",
            "owner again: ok(uint32 1)",
        ],
    );
}

fn squatting_scenario(bus: &Daemon, witness: &mut RawClient) -> Vec<String> {
    const NAME: &str = "com.example.Guarded";
    let mut squatter = bus.raw_as(NOBODY);
    let mut out = Vec::new();
    out.push(request(
        &mut squatter,
        "squatter, before the owner, flags 0",
        NAME,
        0,
    ));
    out.push(request(
        &mut squatter,
        "squatter, before the owner, flags 3",
        NAME,
        3,
    ));
    out.push(request(
        &mut squatter,
        "squatter, a name below it",
        "com.example.Guarded.Below",
        0,
    ));
    let mut owner = bus.raw();
    out.push(request(&mut owner, "owner", NAME, 0));
    out.push(request(
        &mut squatter,
        "squatter, replacing, flags 2",
        NAME,
        2,
    ));
    out.push(request(
        &mut squatter,
        "squatter, queueing, flags 0",
        NAME,
        0,
    ));
    out.push(request(
        &mut squatter,
        "squatter, DO_NOT_QUEUE, flags 4",
        NAME,
        4,
    ));
    let body = witness.bus_ok("GetNameOwner", vec![Value::str(NAME)]);
    let holder = if body.first().and_then(Value::as_str) == Some(owner.unique_name.as_str()) {
        "the owner"
    } else {
        "someone else"
    };
    out.push(format!("GetNameOwner: {holder}"));
    let released = squatter.call_bus("ReleaseName", vec![Value::str(NAME)]);
    out.push(format!("squatter releases it: {}", outcome(&released)));
    // When the owner leaves, the name is free, and still not the squatter's to take.
    witness.add_match(&format!(
        "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{NAME}'"
    ));
    owner.disconnect();
    wait_unowned(witness, NAME);
    out.push(request(
        &mut squatter,
        "squatter, after the owner left",
        NAME,
        0,
    ));
    let mut owner = bus.raw();
    out.push(request(&mut owner, "owner again", NAME, 0));
    out
}

/// RequestName as `label`: the outcome in a line.
fn request(c: &mut RawClient, label: &str, name: &str, flags: u32) -> String {
    let reply = c.call_bus("RequestName", vec![Value::str(name), Value::U32(flags)]);
    format!("{label}: {}", outcome(&reply))
}

/// Waits until `name` has no owner (NameHasNoOwner from GetNameOwner), by watching
/// NameOwnerChanged (the caller added a rule for it) between checks.
fn wait_unowned(c: &mut RawClient, name: &str) {
    loop {
        let reply = c.call_bus("GetNameOwner", vec![Value::str(name)]);
        if reply.is_error(err::NAME_HAS_NO_OWNER) {
            return;
        }
        c.wait_for(|m| m.is_bus_signal("NameOwnerChanged") && m.str_arg(0) == Some(name));
    }
}

// --- helpers -------------------------------------------------------------------------------------

/// Runs `scenario` on dbus-daemon with `config`, checks its lines against `expected`, then on
/// the bus under test. Each run checks afterwards that the bus still runs and answers both the
/// witness and a new client.
fn check(config: &str, scenario: Scenario, expected: &[&str]) {
    let expected_for =
        |kind: BusKind| -> Vec<String> { expected.iter().map(|s| kind.expected(s)).collect() };
    let run = |kind: BusKind| {
        let mut bus = Launch::new(kind).config(config).start();
        let mut witness = bus.raw();
        let lines = scenario(&bus, &mut witness);
        served(&mut witness);
        bus.raw().bus_ok("GetId", vec![]);
        assert!(
            bus.is_running(),
            "{kind:?} exited; stderr:\n{}",
            bus.stderr()
        );
        (lines, bus.stderr())
    };
    let (reference, _) = run(BusKind::DbusDaemon);
    assert_eq!(
        reference,
        expected_for(BusKind::DbusDaemon),
        "dbus-daemon disagrees with the expected lines"
    );
    let kind = BusKind::from_env();
    let (tested, stderr) = run(kind);
    assert_eq!(
        tested,
        expected_for(kind),
        "{kind:?} differs from the expected lines; its stderr:\n{stderr}"
    );
}

/// The witness gets an answer from the bus.
#[track_caller]
fn served(witness: &mut RawClient) {
    witness.bus_ok("GetId", vec![]);
}

/// After something that should make the bus close `c`: `closed`, or `answered` when the bus
/// answered a call sent after it.
fn closed_or_answered(c: &mut RawClient) -> &'static str {
    let probe = c.next_serial();
    let _ = c.try_write_all(&RawMessage::bus_call("GetId", vec![]).encode(probe));
    match c.wait_closed(Some(probe)) {
        Ok(()) => "closed",
        Err(_) => "answered",
    }
}

/// Sends `msg` with the next serial, ignoring a write refused because the bus already closed
/// the connection.
fn try_send(c: &mut RawClient, msg: &RawMessage) {
    let serial = c.next_serial();
    let _ = c.try_write_all(&msg.encode(serial));
}

/// A reply in a line: `ok`, `ok(VALUES)`, or the error name's last component.
fn outcome(m: &Msg) -> String {
    match m.mtype {
        ERROR => m
            .error_name
            .as_deref()
            .and_then(|n| n.rsplit('.').next())
            .unwrap_or("?")
            .to_owned(),
        _ if m.body.is_empty() => "ok".into(),
        _ => {
            let values: Vec<String> = m.body.iter().map(ToString::to_string).collect();
            format!("ok({})", values.join(", "))
        }
    }
}

fn type_name(mtype: u8) -> &'static str {
    match mtype {
        METHOD_CALL => "call",
        METHOD_RETURN => "return",
        ERROR => "error",
        SIGNAL => "signal",
        _ => "unknown",
    }
}

/// `s` in lower-case hex, as SASL encodes identities.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
