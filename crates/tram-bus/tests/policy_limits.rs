//! Policy enforcement, per-connection limits, reply timeouts and monitors, through the bus.

mod harness;

use std::time::Duration;

use harness::*;
use tram_bus::Limits;
use tram_bus::policy::{Context, MessageRule, NameMatch, Policy, Rule, RuleKind};
use tram_wire::{BodyReader, MessageType};

fn rule(allow: bool, kind: RuleKind) -> (Context, Rule) {
    (
        Context::Default,
        Rule {
            allow,
            kind,
            log: false,
            origin: None,
        },
    )
}

fn send(allow: bool, m: MessageRule) -> (Context, Rule) {
    rule(allow, RuleKind::Send(m))
}

/// Everything allowed, then the given rules.
fn open_policy_then(extra: Vec<(Context, Rule)>) -> Policy {
    let mut rules = vec![
        send(true, MessageRule::default()),
        rule(true, RuleKind::Receive(MessageRule::default())),
        rule(true, RuleKind::Own(None)),
    ];
    rules.extend(extra);
    Policy::new(rules)
}

fn request(h: &mut Harness, peer: tram_bus::PeerId, name: &str) -> tram_wire::Message {
    h.driver(peer, "RequestName", "su", |w| {
        w.string(name);
        w.u32(0);
    })
}

#[test]
fn a_denied_send_is_refused_with_the_rule_count() {
    let deny = MessageRule {
        interface: Some("org.example.Secret".into()),
        ..MessageRule::default()
    };
    let mut h = Harness::with(open_policy_then(vec![send(false, deny)]), Limits::session());
    let (a, _) = h.client();
    let (b, b_name) = h.client();
    let s = h.send(a, call(&b_name, "/", Some("org.example.Secret"), "Get"));
    let reply = h.reply_to(a, s);
    assert_eq!(error_of(&reply), "org.freedesktop.DBus.Error.AccessDenied");
    let text = BodyReader::new(&reply).read_str().unwrap().to_owned();
    assert!(
        text.starts_with("Rejected send message, 2 matched rules;"),
        "{text}"
    );
    // The rejection is logged with the same text.
    assert_eq!(h.denied, [text]);
    assert!(h.take(b).is_empty());
    // Another interface still passes, and nothing more is logged.
    h.send(a, call(&b_name, "/", Some("org.example.Open"), "Get"));
    assert_eq!(h.take(b).len(), 1);
    assert_eq!(h.denied.len(), 1);
}

#[test]
fn send_destination_matches_queued_owners_too() {
    let deny = MessageRule {
        peer: Some(NameMatch::Exact("org.example.Guarded".into())),
        ..MessageRule::default()
    };
    let mut h = Harness::with(open_policy_then(vec![send(false, deny)]), Limits::session());
    let (a, _) = h.client();
    let (owner, _) = h.client();
    let (queued, queued_name) = h.client();
    assert_eq!(u32_of(&request(&mut h, owner, "org.example.Guarded")), 1);
    assert_eq!(u32_of(&request(&mut h, queued, "org.example.Guarded")), 2);
    let s = h.send(a, call(&queued_name, "/", None, "M"));
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.AccessDenied"
    );
}

#[test]
fn own_rules_and_the_names_limit() {
    let deny_own = rule(
        false,
        RuleKind::Own(Some(NameMatch::Prefix("org.example.Mine".into()))),
    );
    let limits = Limits {
        max_names_per_connection: 3,
        ..Limits::session()
    };
    let mut h = Harness::with(open_policy_then(vec![deny_own]), limits);
    let (a, _) = h.client();
    let r = request(&mut h, a, "org.example.Mine.Sub");
    assert_eq!(error_of(&r), "org.freedesktop.DBus.Error.AccessDenied");
    assert_eq!(u32_of(&request(&mut h, a, "org.example.One")), 1);
    assert_eq!(u32_of(&request(&mut h, a, "org.example.Two")), 1);
    let r = request(&mut h, a, "org.example.Three");
    assert_eq!(error_of(&r), "org.freedesktop.DBus.Error.LimitsExceeded");
    // As dbus-daemon: the unique name counts, and the limit comes before noticing that the
    // name is held already.
    let r = request(&mut h, a, "org.example.Two");
    assert_eq!(error_of(&r), "org.freedesktop.DBus.Error.LimitsExceeded");
}

#[test]
fn broadcasts_skip_receivers_whose_rules_refuse_them() {
    let deny_receive = MessageRule {
        member: Some("Private".into()),
        ..MessageRule::default()
    };
    let mut h = Harness::with(
        open_policy_then(vec![rule(false, RuleKind::Receive(deny_receive))]),
        Limits::session(),
    );
    let (emitter, _) = h.client();
    let (a, _) = h.client();
    assert_eq!(
        error_of(&h.driver(a, "AddMatch", "s", |w| w.string("type='signal'"))),
        ""
    );
    h.send(emitter, signal("/", "org.example.I", "Private"));
    h.send(emitter, signal("/", "org.example.I", "Public"));
    let got: Vec<_> = h
        .take(a)
        .iter()
        .map(|m| m.member().unwrap_or("").to_owned())
        .collect();
    assert_eq!(got, ["Public"]);
    assert!(
        h.take(emitter).is_empty(),
        "a refused broadcast gets no error"
    );
}

#[test]
fn match_rule_and_pending_reply_limits() {
    let limits = Limits {
        max_match_rules_per_connection: 1,
        max_replies_per_connection: 1,
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (a, _) = h.client();
    let (_b, b_name) = h.client();
    assert_eq!(
        error_of(&h.driver(a, "AddMatch", "s", |w| w.string("member='X'"))),
        ""
    );
    let r = h.driver(a, "AddMatch", "s", |w| w.string("member='Y'"));
    assert_eq!(error_of(&r), "org.freedesktop.DBus.Error.LimitsExceeded");
    h.send(a, call(&b_name, "/", None, "First"));
    let s = h.send(a, call(&b_name, "/", None, "Second"));
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.LimitsExceeded"
    );
}

#[test]
fn a_call_past_reply_timeout_gets_noreply_and_the_late_reply_is_refused() {
    let limits = Limits {
        reply_timeout: Some(Duration::from_secs(2)),
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (a, a_name) = h.client();
    let (b, b_name) = h.client();
    let s = h.send(a, call(&b_name, "/", None, "Slow"));
    let deadline = h.bus.poll_timeout().expect("a timer for the pending call");
    assert_eq!(deadline, h.now + Duration::from_secs(2));
    h.now = deadline;
    h.bus.handle_timeout(h.now);
    h.drain();
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.NoReply"
    );
    let late = h.send(
        b,
        tram_wire::MessageBuilder::method_return(s).destination(&a_name),
    );
    assert_eq!(
        error_of(&h.reply_to(b, late)),
        "org.freedesktop.DBus.Error.AccessDenied"
    );
}

#[test]
fn a_monitor_sees_traffic_loses_its_names_and_may_not_send() {
    let mut h = Harness::new();
    let (m, m_name) = h.client();
    let (a, _) = h.client();
    let (_b, b_name) = h.client();
    let s = h.send(
        m,
        call(
            DRIVER,
            DRIVER_PATH,
            Some("org.freedesktop.DBus.Monitoring"),
            "BecomeMonitor",
        )
        .body("asu", |w| {
            w.array("s", |_| {});
            w.u32(0);
        }),
    );
    assert_eq!(h.reply_to(m, s).message_type(), MessageType::MethodReturn);
    assert_eq!(
        h.take_described(m),
        [format!("signal NameLost({m_name:?})")]
    );
    // Its unique name is gone.
    let s = h.send(a, call(&m_name, "/", None, "Hi"));
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.ServiceUnknown"
    );
    h.take(m);
    h.send(a, call(&b_name, "/obj", Some("org.example.I"), "Ping"));
    let seen = h.take_described(m);
    assert_eq!(seen, ["call Ping()"], "a copy of the unicast call");
    h.send(m, signal("/", "org.example.I", "Chatter"));
    assert_eq!(h.disconnected.len(), 1);
    assert_eq!(h.disconnected[0].0, m);
}

#[test]
fn becoming_a_monitor_needs_privilege_and_the_canonical_path() {
    let mut h = Harness::new();
    let id = h.bus.connect(
        h.now,
        tram_bus::Credentials {
            uid: 4321,
            ..Default::default()
        },
        true,
    );
    h.bus
        .handle_message(h.now, id, call(DRIVER, DRIVER_PATH, None, "Hello").build(1));
    let body = |w: &mut tram_wire::BodyWriter| {
        w.array("s", |_| {});
        w.u32(0);
    };
    let become_monitor = call(
        DRIVER,
        DRIVER_PATH,
        Some("org.freedesktop.DBus.Monitoring"),
        "BecomeMonitor",
    )
    .body("asu", body)
    .build(2);
    h.bus.handle_message(h.now, id, become_monitor);
    let mut dirty = Vec::new();
    h.bus.take_dirty(&mut dirty);
    let q = h.bus.tx_queue(id).unwrap();
    let last = q.iter().last().unwrap();
    let bytes: Vec<u8> = last.parts().concat();
    let m = tram_wire::Message::parse(bytes.into(), vec![]).unwrap();
    assert_eq!(
        m.error_name(),
        Some("org.freedesktop.DBus.Error.AccessDenied")
    );
    let (a, _) = h.client();
    let s = h.send(
        a,
        call(
            DRIVER,
            "/",
            Some("org.freedesktop.DBus.Monitoring"),
            "BecomeMonitor",
        )
        .body("asu", body),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.UnknownInterface"
    );
}

#[test]
fn debug_stats_answer() {
    let mut h = Harness::new();
    let (a, a_name) = h.client();
    assert_eq!(
        error_of(&h.driver(a, "AddMatch", "s", |w| w.string("member='X'"))),
        ""
    );
    let stats = "org.freedesktop.DBus.Debug.Stats";
    let s = h.send(
        a,
        call(DRIVER, DRIVER_PATH, Some(stats), "GetAllMatchRules"),
    );
    let reply = h.reply_to(a, s);
    assert_eq!(reply.signature(), "a{sas}");
    let s = h.send(
        a,
        call(DRIVER, DRIVER_PATH, Some(stats), "GetConnectionStats")
            .body("s", |w| w.string(&a_name)),
    );
    assert_eq!(h.reply_to(a, s).signature(), "a{sv}");
    let s = h.send(a, call(DRIVER, DRIVER_PATH, Some(stats), "GetStats"));
    assert_eq!(h.reply_to(a, s).signature(), "a{sv}");
}

#[test]
fn a_full_queue_refuses_calls_and_disconnects_a_stalled_broadcast_receiver() {
    let limits = Limits {
        max_outgoing_bytes: 4096,
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (a, _) = h.client();
    let (slow, slow_name) = h.client();
    let (quick, _) = h.client();
    for peer in [slow, quick] {
        assert_eq!(
            error_of(&h.driver(peer, "AddMatch", "s", |w| w.string("member='Tick'"))),
            ""
        );
    }
    // `slow` never reads: the harness only drains when asked, so stop draining it.
    h.ignore(slow);
    let payload = vec![0u8; 1500];
    let big = |w: &mut tram_wire::BodyWriter| w.byte_array(&payload);
    let mut refused = None;
    for _ in 0..4 {
        let s = h.send(a, call(&slow_name, "/", None, "Big").body("ay", big));
        if let Some(m) = h.take(a).into_iter().find(|m| m.reply_serial() == Some(s)) {
            refused = Some(error_of(&m).to_owned());
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some("org.freedesktop.DBus.Error.LimitsExceeded")
    );
    for _ in 0..4 {
        h.send(a, signal("/", "org.example.I", "Tick").body("ay", big));
    }
    assert!(
        h.disconnected
            .iter()
            .any(|(p, why)| *p == slow && why.contains("max_outgoing_bytes"))
    );
    assert!(
        !h.take(quick).is_empty(),
        "the reading subscriber still gets the broadcasts"
    );
}

#[test]
fn one_user_cannot_take_a_slow_receivers_whole_queue() {
    let limits = Limits {
        max_outgoing_bytes: 16 * 1024,
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (flooder, _) = h.client_as(2000);
    let (other, _) = h.client_as(3000);
    let (slow, slow_name) = h.client();
    h.ignore(slow);
    let payload = vec![0u8; 1000];
    let big = |w: &mut tram_wire::BodyWriter| w.byte_array(&payload);
    let mut accepted = 0;
    loop {
        let s = h.send(
            flooder,
            call(&slow_name, "/", None, "Flood").body("ay", big),
        );
        let refused = h.take(flooder).iter().any(|m| m.reply_serial() == Some(s));
        if refused {
            break;
        }
        accepted += 1;
        assert!(accepted < 100, "the flooder was never stopped");
    }
    let queued = h.bus.tx_queue(slow).unwrap().bytes();
    assert!(
        queued <= 16 * 1024 / 2 + 1200,
        "the flooder holds {queued} bytes"
    );
    // Another user still has room of its own.
    let s = h.send(other, call(&slow_name, "/", None, "Hello").body("ay", big));
    assert!(
        h.take(other).iter().all(|m| m.reply_serial() != Some(s)),
        "another user's call is queued, not refused"
    );
}

/// Counts how many of `attempts` succeed, stopping at the first LimitsExceeded; returns the
/// count and that error's text.
fn until_refused(
    h: &mut Harness,
    attempts: impl IntoIterator<Item = (tram_bus::PeerId, MessageBuilderFn)>,
) -> (usize, Option<String>) {
    let mut ok = 0;
    for (peer, build) in attempts {
        let s = h.send(peer, build());
        let replies = h.take(peer);
        let refusal = replies
            .iter()
            .find(|m| m.reply_serial() == Some(s) && m.message_type() == MessageType::Error);
        if let Some(m) = refusal {
            assert_eq!(error_of(m), "org.freedesktop.DBus.Error.LimitsExceeded");
            let text = BodyReader::new(m).read_str().unwrap().to_owned();
            return (ok, Some(text));
        }
        ok += 1;
    }
    (ok, None)
}

type MessageBuilderFn = Box<dyn Fn() -> tram_wire::MessageBuilder>;

fn request_builder(name: String) -> MessageBuilderFn {
    Box::new(move || {
        let name = name.clone();
        call(DRIVER, DRIVER_PATH, Some(DRIVER), "RequestName").body("su", move |w| {
            w.string(&name);
            w.u32(0);
        })
    })
}

/// GetStats' `Users` entry: (uid, connections, names, match rules, pending replies).
fn user_stats(h: &mut Harness, asker: tram_bus::PeerId) -> Vec<(u32, [u32; 4])> {
    let s = h.send(
        asker,
        call(
            DRIVER,
            DRIVER_PATH,
            Some("org.freedesktop.DBus.Debug.Stats"),
            "GetStats",
        ),
    );
    let reply = h.reply_to(asker, s);
    describe_users(&reply)
}

/// Reads the `Users` variant (`a(uuuuu)`) out of a little-endian GetStats reply.
fn describe_users(reply: &tram_wire::Message) -> Vec<(u32, [u32; 4])> {
    let body = reply.body();
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
    let align = |at: usize, n: usize| at.div_ceil(n) * n;
    let key = b"Users\x00\x08a(uuuuu)\x00";
    let Some(found) = body.windows(key.len()).position(|w| w == key) else {
        panic!("GetStats has no Users entry");
    };
    let len_at = align(found + key.len(), 4);
    let len = u32_at(len_at) as usize;
    let mut at = align(len_at + 4, 8);
    let end = at + len;
    let mut users = Vec::new();
    while at < end {
        at = align(at, 8);
        let mut n = [0; 4];
        for (i, x) in n.iter_mut().enumerate() {
            *x = u32_at(at + 4 * (i + 1));
        }
        users.push((u32_at(at), n));
        at += 20;
    }
    users
}

#[test]
fn a_user_gets_a_fair_share_of_names_across_its_connections() {
    // Pool: 10 names per connection × 2 connections = 20 names bus-wide.
    let limits = Limits {
        max_names_per_connection: 10,
        max_completed_connections: 2,
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (a1, _) = h.client_as(2000);
    let (a2, _) = h.client_as(2000);
    let (b, _) = h.client_as(3000);
    // The first connection stops at its own limit (the unique name counts: 9 well-known).
    let (ok, text) = until_refused(
        &mut h,
        (0..20).map(|i| (a1, request_builder(format!("org.example.A{i}")))),
    );
    assert_eq!(ok, 9, "{text:?}");
    assert!(text.unwrap().contains("max_names_per_connection=10"));
    // The second connection of the same user stops at the user's fair share: 10 in all.
    let (ok, text) = until_refused(
        &mut h,
        (0..20).map(|i| (a2, request_builder(format!("org.example.B{i}")))),
    );
    assert_eq!(ok, 1);
    let text = text.unwrap();
    assert!(text.contains("User 2000 holds 10 names"), "{text}");
    assert!(text.contains("fair share"), "{text}");
    // Another user keeps room of its own: half of what is left.
    let (ok, _) = until_refused(
        &mut h,
        (0..20).map(|i| (b, request_builder(format!("org.example.C{i}")))),
    );
    assert_eq!(ok, 5);
    let stats = user_stats(&mut h, b);
    assert_eq!(stats, [(2000, [2, 10, 0, 0]), (3000, [1, 5, 0, 0])]);
    // What a user gives back, others may take.
    h.disconnect(a1);
    h.drain();
    let (ok, _) = until_refused(
        &mut h,
        (5..20).map(|i| (b, request_builder(format!("org.example.C{i}")))),
    );
    assert_eq!(
        ok, 4,
        "b's own per-connection limit (9 well-known names) now binds"
    );
    let stats = user_stats(&mut h, b);
    assert_eq!(stats, [(2000, [1, 1, 0, 0]), (3000, [1, 9, 0, 0])]);
}

#[test]
fn a_user_gets_a_fair_share_of_pending_replies_and_match_rules() {
    // Pools: 4 replies and 6 rules per connection × 2 connections.
    let limits = Limits {
        max_replies_per_connection: 4,
        max_match_rules_per_connection: 6,
        max_completed_connections: 2,
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (a1, _) = h.client_as(2000);
    let (a2, _) = h.client_as(2000);
    let (b, _) = h.client_as(3000);
    let (callee, callee_name) = h.client_as(4000);
    let calling = |from| {
        let dest = callee_name.clone();
        (
            from,
            Box::new(move || call(&dest, "/", None, "Slow")) as MessageBuilderFn,
        )
    };
    // Replies: a1 holds its 4, a2 none, yet the user's fair share of 8 is 4.
    let (ok, _) = until_refused(&mut h, (0..10).map(|_| calling(a1)));
    assert_eq!(ok, 4);
    let (ok, text) = until_refused(&mut h, (0..10).map(|_| calling(a2)));
    assert_eq!(ok, 0);
    assert!(text.unwrap().contains("User 2000 holds 4 pending replies"));
    let (ok, _) = until_refused(&mut h, (0..10).map(|_| calling(b)));
    assert_eq!(ok, 2);
    // The callee answers a1's calls: user 2000 holds nothing, and may call again up to its
    // share of what b left.
    let a1_name = h.bus.unique_name(a1).unwrap().to_owned();
    for m in h.take(callee) {
        if m.sender() == Some(a1_name.as_str()) {
            h.send(
                callee,
                tram_wire::MessageBuilder::method_return(m.serial()).destination(&a1_name),
            );
        }
    }
    let (ok, _) = until_refused(&mut h, (0..10).map(|_| calling(a2)));
    assert_eq!(ok, 3);
    // Match rules: 12 in the pool; user 2000 may hold 6 across both connections.
    let add = |from, i: usize| {
        (
            from,
            Box::new(move || {
                call(DRIVER, DRIVER_PATH, Some(DRIVER), "AddMatch").body("s", move |w| {
                    w.string(&format!("type='signal',member='M{i}'"));
                })
            }) as MessageBuilderFn,
        )
    };
    let (ok, _) = until_refused(&mut h, (0..3).map(|i| add(a1, i)));
    assert_eq!(ok, 3);
    let (ok, text) = until_refused(&mut h, (3..10).map(|i| add(a2, i)));
    assert_eq!(ok, 3);
    assert!(text.unwrap().contains("User 2000 holds 6 match rules"));
    let stats = user_stats(&mut h, b);
    assert_eq!(
        stats,
        [
            (2000, [2, 0, 6, 3]),
            (3000, [1, 0, 0, 2]),
            (4000, [1, 0, 0, 0])
        ]
    );
    // The callee leaves: every caller is answered, and every pending reply given back.
    h.disconnect(callee);
    h.drain();
    let stats = user_stats(&mut h, b);
    assert_eq!(stats, [(2000, [2, 0, 6, 0]), (3000, [1, 0, 0, 0])]);
}

#[test]
fn fds_queued_for_a_slow_receiver_are_bounded_and_shared_between_users() {
    let limits = Limits {
        max_outgoing_unix_fds: 8,
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    let (flooder, _) = h.client_as(2000);
    let (other, _) = h.client_as(3000);
    let (slow, slow_name) = h.client();
    h.ignore(slow);
    let mut serial = 100;
    let mut send_fd = |h: &mut Harness, from| {
        serial += 1;
        let (r, w) = std::io::pipe().unwrap();
        drop(w);
        let msg = call(&slow_name, "/", None, "TakeFd")
            .body("h", |w| w.unix_fd(0))
            .unix_fds(1)
            .build_with_fds(serial, vec![r.into()]);
        h.bus.handle_message(h.now, from, msg);
        h.drain();
        let refusal = h
            .take(from)
            .into_iter()
            .find(|m| m.reply_serial() == Some(serial));
        refusal.map(|m| {
            assert_eq!(error_of(&m), "org.freedesktop.DBus.Error.LimitsExceeded");
            BodyReader::new(&m).read_str().unwrap().to_owned()
        })
    };
    // One user gets half of the receiver's fds: 4 held, 4 free.
    let mut accepted = 0;
    let text = loop {
        if let Some(text) = send_fd(&mut h, flooder) {
            break text;
        }
        accepted += 1;
        assert!(accepted < 20, "the flooder was never stopped");
    };
    assert_eq!(accepted, 4);
    assert!(text.contains("max_outgoing_unix_fds=8"), "{text}");
    assert_eq!(h.bus.tx_queue(slow).unwrap().fds(), 4);
    // Another user still gets its share, then the queue's total stops everyone.
    let mut accepted = 0;
    while send_fd(&mut h, other).is_none() {
        accepted += 1;
        assert!(accepted < 20);
    }
    assert_eq!(accepted, 2);
    // Once the receiver reads, its fds are given back.
    let queue = h.bus.tx_queue(slow).unwrap();
    let bytes = queue.bytes();
    queue.consume(bytes);
    assert_eq!(queue.fds(), 0);
    assert!(send_fd(&mut h, flooder).is_none());
}

#[test]
fn a_driver_reply_the_receiver_may_not_receive_is_logged() {
    // Send rules only: nothing may be received, not even the reply to Hello (as with
    // dbus-daemon). The reply is dropped, and the rejection is logged, not silent.
    let policy = Policy::new(vec![
        send(true, MessageRule::default()),
        rule(true, RuleKind::Own(None)),
    ]);
    let mut h = Harness::with(policy, Limits::session());
    let id = h.connect();
    h.send(id, call(DRIVER, DRIVER_PATH, Some(DRIVER), "Hello"));
    assert!(h.take(id).is_empty());
    assert!(
        h.denied
            .iter()
            .any(|t| t
                .starts_with("Rejected receive message, 0 matched rules; type=\"method_return\"")),
        "{:?}",
        h.denied
    );
}
