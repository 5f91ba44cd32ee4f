//! Limits from the configuration file, each with the error dbus-daemon gives when it is reached:
//! names, match rules and pending replies per connection, the reply timeout, the message size,
//! fds per message, connections per user and the authentication timeout.
//!
//! Each scenario records its outcomes as lines; it runs on dbus-daemon (whose lines must be the
//! ones written here) and on the bus under test (`TRAM_TEST_BUS`, tramd by default), which must
//! give the same lines.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, Launch, NOBODY, busconfig, handshake, try_hello};
use common::*;

/// A permissive configuration with `limits` (`name`, value) set.
fn config(limits: &[(&str, u32)]) -> String {
    let lines: String = limits
        .iter()
        .map(|(name, value)| format!("<limit name=\"{name}\">{value}</limit>\n"))
        .collect();
    busconfig(&format!(
        "<listen>unix:path=@DIR@/bus</listen>\n\
         <policy context=\"default\">\n\
         <allow user=\"*\"/>\n<allow send_destination=\"*\" eavesdrop=\"true\"/>\n\
         <allow eavesdrop=\"true\"/>\n<allow own=\"*\"/>\n\
         </policy>\n{lines}"
    ))
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

/// Runs `scenario` with `limits` on dbus-daemon, checks its lines against `expected`, then on
/// the bus under test.
fn check(limits: &[(&str, u32)], scenario: fn(&Daemon) -> Vec<String>, expected: &[&str]) {
    let expected_for =
        |kind: BusKind| -> Vec<String> { expected.iter().map(|s| kind.expected(s)).collect() };
    let run = |kind: BusKind| {
        let bus = Launch::new(kind).config(&config(limits)).start();
        let lines = scenario(&bus);
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
        "{kind:?} differs from dbus-daemon; its stderr:\n{stderr}"
    );
}

#[test]
fn max_names_per_connection_counts_the_unique_name() {
    check(
        &[("max_names_per_connection", 3)],
        |bus| {
            let mut a = bus.raw();
            let mut b = bus.raw();
            let mut out = Vec::new();
            let request = |c: &mut RawClient, name: &str| {
                let reply = c.call_bus("RequestName", vec![Value::str(name), Value::U32(0)]);
                format!("{name} {}", outcome(&reply))
            };
            out.push(request(&mut b, "com.example.Taken"));
            out.push(request(&mut a, "com.example.A1"));
            // Waiting in a queue takes a place as well.
            out.push(request(&mut a, "com.example.Taken"));
            out.push(request(&mut a, "com.example.A2"));
            // dbus-daemon checks the limit before noticing the caller owns the name already.
            out.push(request(&mut a, "com.example.A1"));
            let released = a.call_bus("ReleaseName", vec![Value::str("com.example.A1")]);
            out.push(format!("release {}", outcome(&released)));
            out.push(request(&mut a, "com.example.A2"));
            out
        },
        &[
            "com.example.Taken ok(uint32 1)",
            "com.example.A1 ok(uint32 1)",
            "com.example.Taken ok(uint32 2)",
            "com.example.A2 LimitsExceeded",
            "com.example.A1 LimitsExceeded",
            "release ok(uint32 1)",
            "com.example.A2 ok(uint32 1)",
        ],
    );
}

#[test]
fn max_match_rules_per_connection() {
    check(
        &[("max_match_rules_per_connection", 3)],
        |bus| {
            let mut a = bus.raw();
            let mut out = Vec::new();
            for rule in [
                "type='signal',member='A'",
                "type='signal',member='B'",
                "type='signal',member='A'",
                "type='signal',member='C'",
            ] {
                let reply = a.call_bus("AddMatch", vec![Value::str(rule)]);
                out.push(format!("add {rule} {}", outcome(&reply)));
            }
            let reply = a.call_bus("RemoveMatch", vec![Value::str("type='signal',member='A'")]);
            out.push(format!("remove {}", outcome(&reply)));
            let reply = a.call_bus("AddMatch", vec![Value::str("type='signal',member='C'")]);
            out.push(format!("add again {}", outcome(&reply)));
            // Another connection has its own count.
            let mut b = bus.raw();
            let reply = b.call_bus("AddMatch", vec![Value::str("type='signal'")]);
            out.push(format!("other {}", outcome(&reply)));
            out
        },
        &[
            "add type='signal',member='A' ok",
            "add type='signal',member='B' ok",
            "add type='signal',member='A' ok",
            "add type='signal',member='C' LimitsExceeded",
            "remove ok",
            "add again ok",
            "other ok",
        ],
    );
}

#[test]
fn max_replies_per_connection() {
    check(
        &[("max_replies_per_connection", 2)],
        |bus| {
            let mut a = bus.raw();
            let mut b = bus.raw();
            let b_name = b.unique_name.clone();
            let call = || RawMessage::call(Some(&b_name), "/", Some("com.example.I"), "Wait");
            let mut out = Vec::new();
            let serials: Vec<u32> = (0..3).map(|_| a.send(&call())).collect();
            // The third call is refused at once; the first two reach b.
            let refused = a.wait_reply(serials[2]);
            out.push(format!("third call {}", outcome(&refused)));
            let first =
                b.wait_for(|m| m.mtype == METHOD_CALL && m.member.as_deref() == Some("Wait"));
            let _second =
                b.wait_for(|m| m.mtype == METHOD_CALL && m.member.as_deref() == Some("Wait"));
            let delivered = b.sync().iter().filter(|m| m.mtype == METHOD_CALL).count();
            out.push(format!("b got {} more", delivered));
            // A call without a reply expected takes no place.
            let serial = a.send(&call().flags(NO_REPLY_EXPECTED));
            b.wait_for(|m| m.serial == serial && m.sender.as_deref() == Some(&a.unique_name));
            out.push("no-reply call delivered".into());
            // Answering one frees a place.
            b.send(&RawMessage::reply_to(&first, None));
            out.push(format!("first {}", outcome(&a.wait_reply(serials[0]))));
            let serial = a.send(&call());
            b.wait_for(|m| m.serial == serial && m.mtype == METHOD_CALL);
            out.push("next call delivered".into());
            // The driver's replies are not pending replies.
            out.push(format!(
                "GetId {}",
                outcome(&a.call_bus("GetId", vec![])).len() > 2
            ));
            out
        },
        &[
            "third call LimitsExceeded",
            "b got 0 more",
            "no-reply call delivered",
            "first ok",
            "next call delivered",
            "GetId true",
        ],
    );
}

#[test]
fn reply_timeout_answers_no_reply() {
    check(
        &[("reply_timeout", 300)],
        |bus| {
            let mut a = bus.raw();
            let mut b = bus.raw();
            let b_name = b.unique_name.clone();
            let mut out = Vec::new();
            let started = Instant::now();
            let serial = a.send(&RawMessage::call(
                Some(&b_name),
                "/",
                Some("com.example.I"),
                "Slow",
            ));
            let call = b.wait_for(|m| m.mtype == METHOD_CALL);
            let reply = a.wait_reply(serial);
            let waited = started.elapsed();
            out.push(format!("caller {}", outcome(&reply)));
            out.push(format!(
                "after the timeout: {}",
                waited >= Duration::from_millis(250) && waited < DEADLINE
            ));
            out.push(format!(
                "from the bus: {}",
                reply.sender.as_deref() == Some(BUS)
            ));
            // The callee's late reply is no longer expected; this configuration lets unexpected
            // replies through (`eavesdrop="true"` on the send rule), so on dbus-daemon it
            // arrives; tramd refuses it.
            let late = b.send(&RawMessage::reply_to(&call, None));
            let answer = b
                .sync()
                .into_iter()
                .find(|m| m.reply_serial == Some(late))
                .map(|m| outcome(&m))
                .unwrap_or_else(|| "nothing".into());
            out.push(format!("late reply: {answer}"));
            let stray = a
                .sync()
                .into_iter()
                .filter(|m| m.reply_serial == Some(serial))
                .count();
            out.push(format!("caller got {stray} more"));
            out
        },
        &[
            "caller NoReply",
            "after the timeout: true",
            "from the bus: true",
            "late reply: nothing | tram: late reply: AccessDenied",
            "caller got 1 more | tram: caller got 0 more",
        ],
    );
}

#[test]
fn max_message_size_disconnects_the_sender() {
    check(
        &[("max_message_size", 4096)],
        |bus| {
            let mut a = bus.raw();
            let mut b = bus.raw();
            let b_name = b.unique_name.clone();
            let mut out = Vec::new();
            let svc = |len: usize| {
                RawMessage::call(Some(&b_name), "/", Some("com.example.I"), "Big")
                    .flags(NO_REPLY_EXPECTED)
                    .args(vec![Value::Bytes(vec![7; len])])
            };
            let serial = a.send(&svc(2000));
            let got = b.wait_for(|m| m.serial == serial);
            out.push(format!(
                "small delivered: {}",
                got.member.as_deref() == Some("Big")
            ));
            let serial = a.next_serial();
            let _ = a.try_write_all(&svc(8000).encode(serial));
            out.push(match a.wait_closed(None) {
                Ok(()) => "large: sender disconnected".into(),
                Err(e) => format!("large: {e}"),
            });
            let delivered = b
                .sync()
                .iter()
                .filter(|m| m.member.as_deref() == Some("Big"))
                .count();
            out.push(format!("b got {delivered} more"));
            out
        },
        &[
            "small delivered: true",
            "large: sender disconnected",
            "b got 0 more",
        ],
    );
}

#[test]
fn max_message_unix_fds_disconnects_the_sender() {
    check(
        &[("max_message_unix_fds", 2)],
        |bus| {
            let mut a = bus.raw();
            let mut b = bus.raw();
            let b_name = b.unique_name.clone();
            let mut out = Vec::new();
            let send = |c: &mut RawClient, n: u32| {
                let files: Vec<OwnedFd> = (0..n)
                    .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null")))
                    .collect();
                let fds: Vec<_> = files.iter().map(AsFd::as_fd).collect();
                let msg = RawMessage::call(Some(&b_name), "/", Some("com.example.I"), "Fds")
                    .flags(NO_REPLY_EXPECTED)
                    .args((0..n).map(Value::Fd).collect())
                    .unix_fds(n);
                c.send_with_fds(&msg, &fds)
            };
            let serial = send(&mut a, 2);
            let got = b.wait_for(|m| m.serial == serial);
            out.push(format!("two fds delivered: {}", got.fds.len()));
            send(&mut a, 3);
            out.push(match a.wait_closed(None) {
                Ok(()) => "three fds: sender disconnected".into(),
                Err(e) => format!("three fds: {e}"),
            });
            out
        },
        &["two fds delivered: 2", "three fds: sender disconnected"],
    );
}

#[test]
fn max_connections_per_user() {
    check(
        &[("max_connections_per_user", 2)],
        |bus| {
            let mut out = Vec::new();
            let first = bus.try_raw();
            let second = bus.try_raw();
            let third = bus.try_raw();
            out.push(format!(
                "root: {} {} {}",
                first.is_ok(),
                second.is_ok(),
                third.is_ok()
            ));
            // Other users have their own count.
            let n1 = bus.try_raw_as(NOBODY);
            let n2 = bus.try_raw_as(NOBODY);
            let n3 = bus.try_raw_as(NOBODY);
            out.push(format!(
                "nobody: {} {} {}",
                n1.is_ok(),
                n2.is_ok(),
                n3.is_ok()
            ));
            // A place frees up when a connection goes.
            drop(third);
            if let Ok(c) = first {
                c.disconnect();
            }
            let mut again = Err(String::new());
            let deadline = Instant::now() + DEADLINE;
            // The bus notices the disconnect asynchronously: retry until it has.
            while again.is_err() && Instant::now() < deadline {
                again = bus.try_raw();
            }
            out.push(format!("after one left: {}", again.is_ok()));
            out
        },
        &[
            "root: true true false",
            "nobody: true true false",
            "after one left: true",
        ],
    );
}

#[test]
fn auth_timeout_closes_idle_unauthenticated_connections() {
    check(
        &[("auth_timeout", 300)],
        |bus| {
            let mut out = Vec::new();
            let started = Instant::now();
            let mut idle = bus.raw_unauthenticated();
            // Half a handshake and then silence.
            idle.write_all(b"\0AUTH EXTERNAL 30\r\n");
            let line = idle.read_line();
            out.push(format!("answered: {}", line.starts_with("OK ")));
            let closed = idle.wait_closed(None);
            out.push(format!("idle closed: {}", closed.is_ok()));
            out.push(format!(
                "after the timeout: {}",
                started.elapsed() >= Duration::from_millis(250)
            ));
            // A prompt client is unaffected, and stays connected past the timeout.
            let mut prompt = bus.raw_unauthenticated();
            let ok = handshake(&mut prompt, rustix::process::getuid().as_raw())
                .and_then(|()| try_hello(&mut prompt));
            out.push(format!("prompt client: {}", ok.is_ok()));
            let waited = Instant::now();
            while waited.elapsed() < Duration::from_millis(400) {
                prompt.bus_ok("GetId", vec![]);
                std::thread::sleep(Duration::from_millis(50));
            }
            out.push("prompt client still connected".into());
            out
        },
        &[
            "answered: true",
            "idle closed: true",
            "after the timeout: true",
            "prompt client: true",
            "prompt client still connected",
        ],
    );
}
