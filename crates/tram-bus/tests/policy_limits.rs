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
    assert!(h.take(b).is_empty());
    // Another interface still passes.
    h.send(a, call(&b_name, "/", Some("org.example.Open"), "Get"));
    assert_eq!(h.take(b).len(), 1);
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
