//! Unicast, broadcast, reply tracking and refusals.

mod harness;

use harness::*;
use tram_wire::{Flags, MessageType};

#[test]
fn calls_and_replies_are_delivered_once() {
    let mut h = Harness::new();
    let (caller, caller_name) = h.client();
    let (callee, callee_name) = h.client();
    let serial = h.send(
        caller,
        call(&callee_name, "/obj", Some("org.example.I"), "Do"),
    );
    let got = h.take(callee);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].sender(),
        Some(caller_name.as_str()),
        "the bus stamps the sender"
    );
    let reply = tram_wire::MessageBuilder::method_return(serial).destination(&caller_name);
    h.send(callee, reply);
    let got = h.take(caller);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].reply_serial(), Some(serial));
    assert_eq!(got[0].sender(), Some(callee_name.as_str()));
    // The same reply again is unrequested: refused with an error to the callee.
    let again = tram_wire::MessageBuilder::method_return(serial).destination(&caller_name);
    let s2 = h.send(callee, again);
    assert!(h.take(caller).is_empty());
    assert_eq!(
        error_of(&h.reply_to(callee, s2)),
        "org.freedesktop.DBus.Error.AccessDenied"
    );
}

#[test]
fn a_forged_sender_is_replaced() {
    let mut h = Harness::new();
    let (caller, caller_name) = h.client();
    let (_callee, callee_name) = h.client();
    let (_, _) = h.client();
    h.send(
        caller,
        call(&callee_name, "/obj", None, "Do").sender("org.freedesktop.DBus"),
    );
    let got = h.take(_callee);
    assert_eq!(got[0].sender(), Some(caller_name.as_str()));
}

#[test]
fn unowned_destinations_are_answered_at_once() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let s = h.send(a, call("org.example.Nobody", "/", None, "Do"));
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.ServiceUnknown"
    );
    let s = h.send(
        a,
        call("org.example.Nobody", "/", None, "Do").flags(Flags(Flags::NO_AUTO_START)),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.NameHasNoOwner"
    );
    let s = h.send(a, call(":1.999", "/", None, "Do"));
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.ServiceUnknown"
    );
    // Even with no reply wanted, the sender learns why its message went nowhere.
    let no_reply = Flags(Flags::NO_REPLY_EXPECTED);
    let s = h.send(
        a,
        call("org.example.Nobody", "/", None, "Do").flags(no_reply),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.ServiceUnknown"
    );
    // The auto-start flag alone picks the error, whatever the message type.
    let s = h.send(
        a,
        signal("/", "org.example.I", "S").destination("org.example.Nobody"),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.ServiceUnknown"
    );
}

#[test]
fn callers_get_noreply_when_the_callee_leaves() {
    let mut h = Harness::new();
    let (c1, _) = h.client();
    let (c2, _) = h.client();
    let (callee, callee_name) = h.client();
    let s1 = h.send(c1, call(&callee_name, "/", None, "Slow"));
    let s2 = h.send(c2, call(&callee_name, "/", None, "Slow"));
    h.disconnect(callee);
    assert_eq!(
        error_of(&h.reply_to(c1, s1)),
        "org.freedesktop.DBus.Error.NoReply"
    );
    assert_eq!(
        error_of(&h.reply_to(c2, s2)),
        "org.freedesktop.DBus.Error.NoReply"
    );
}

#[test]
fn broadcasts_reach_matching_rules_once_each() {
    let mut h = Harness::new();
    let (emitter, _) = h.client();
    let (a, _) = h.client();
    let (b, _) = h.client();
    for rule in [
        "type='signal',interface='org.example.I'",
        "type='signal',member='Changed'",
    ] {
        assert_eq!(
            error_of(&h.driver(a, "AddMatch", "s", |w| w.string(rule))),
            ""
        );
    }
    assert_eq!(
        error_of(&h.driver(b, "AddMatch", "s", |w| w.string("member='Other'"))),
        ""
    );
    h.send(emitter, signal("/o", "org.example.I", "Changed"));
    assert_eq!(h.take(a).len(), 1, "two matching rules, one delivery");
    assert!(h.take(b).is_empty());
    let bad = h.driver(a, "AddMatch", "s", |w| w.string("type='nonsense'"));
    assert_eq!(
        error_of(&bad),
        "org.freedesktop.DBus.Error.MatchRuleInvalid"
    );
    let missing = h.driver(b, "RemoveMatch", "s", |w| w.string("member='Nope'"));
    assert_eq!(
        error_of(&missing),
        "org.freedesktop.DBus.Error.MatchRuleNotFound"
    );
}

#[test]
fn fds_need_a_receiver_that_negotiated_them() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let id = h.connect();
    h.bus
        .handle_message(h.now, id, call(DRIVER, DRIVER_PATH, None, "Hello").build(1));
    h.drain();
    // The harness connects every peer with fds; reconnecting without them needs the bus API.
    let creds = tram_bus::Credentials::default();
    let nofd = h.bus.connect(h.now, creds, false);
    h.bus.handle_message(
        h.now,
        nofd,
        call(DRIVER, DRIVER_PATH, None, "Hello").build(1),
    );
    let mut dirty = Vec::new();
    h.bus.take_dirty(&mut dirty);
    let q = h.bus.tx_queue(nofd).unwrap();
    assert_eq!(q.len(), 2);
    let name = {
        let out = q.iter().next().unwrap();
        let mut bytes = Vec::new();
        for p in out.parts() {
            bytes.extend_from_slice(p);
        }
        let m = tram_wire::Message::parse(bytes.into(), vec![]).unwrap();
        tram_wire::BodyReader::new(&m)
            .read_str()
            .unwrap()
            .to_owned()
    };
    let (r, w) = std::io::pipe().unwrap();
    drop(w);
    let fd: std::os::fd::OwnedFd = r.into();
    let msg = call(&name, "/", None, "TakeFd")
        .body("h", |w| w.unix_fd(0))
        .unix_fds(1)
        .build_with_fds(9, vec![fd]);
    h.bus.handle_message(h.now, a, msg);
    h.drain();
    let reply = h.reply_to(a, 9);
    assert_eq!(error_of(&reply), "org.freedesktop.DBus.Error.NotSupported");
}

#[test]
fn driver_basics() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let id = h.driver(a, "GetId", "", |_| {});
    assert_eq!(
        tram_wire::BodyReader::new(&id).read_str().unwrap(),
        "0123456789abcdef0123456789abcdef"
    );
    let s = h.send(
        a,
        call(DRIVER, "/", Some("org.freedesktop.DBus.Peer"), "Ping"),
    );
    assert_eq!(h.reply_to(a, s).message_type(), MessageType::MethodReturn);
    let s = h.send(
        a,
        call(
            DRIVER,
            "/x",
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
        )
        .body("s", |w| w.string(DRIVER)),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.UnknownInterface"
    );
    let s = h.send(a, call(DRIVER, DRIVER_PATH, Some(DRIVER), "Frobnicate"));
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.UnknownMethod"
    );
    let s = h.send(
        a,
        call(DRIVER, DRIVER_PATH, Some(DRIVER), "RequestName").body("s", |w| w.string("a.b")),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.InvalidArgs"
    );
    let creds = h.driver(a, "GetConnectionCredentials", "s", |w| w.string(":1.0"));
    assert_eq!(creds.signature(), "a{sv}");
    let pid = h.driver(a, "GetConnectionUnixProcessID", "s", |w| w.string(":1.0"));
    assert_eq!(u32_of(&pid), 4242);
}

#[test]
fn reserved_local_interface_disconnects_the_sender_only() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let (b, _) = h.client();
    h.send(
        a,
        signal("/x", "org.freedesktop.DBus.Local", "Disconnected"),
    );
    assert_eq!(h.disconnected.len(), 1);
    assert_eq!(h.disconnected[0].0, a);
    let r = h.driver(b, "GetId", "", |_| {});
    assert_eq!(r.message_type(), MessageType::MethodReturn);
}

#[test]
fn method_calls_without_destination_are_for_the_bus_itself() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let (b, _) = h.client();
    assert_eq!(
        error_of(&h.driver(b, "AddMatch", "s", |w| w.string("eavesdrop='true'"))),
        ""
    );
    let s = h.send(
        a,
        tram_wire::MessageBuilder::method_call("/", Some("org.freedesktop.DBus.Peer"), "Ping"),
    );
    assert_eq!(h.reply_to(a, s).message_type(), MessageType::MethodReturn);
    let s = h.send(
        a,
        tram_wire::MessageBuilder::method_call("/", Some("org.freedesktop.DBus"), "GetId"),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.UnknownMethod"
    );
    assert!(
        h.take(b)
            .iter()
            .all(|m| m.member() != Some("Ping") && m.member() != Some("GetId"))
    );
}

#[test]
fn an_anonymous_connection_has_no_user() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let creds = tram_bus::Credentials {
        uid: 77,
        anonymous: true,
        ..Default::default()
    };
    let anon = h.bus.connect(h.now, creds, false);
    h.bus.handle_message(
        h.now,
        anon,
        call(DRIVER, DRIVER_PATH, None, "Hello").build(1),
    );
    h.drain();
    let uid = h.driver(a, "GetConnectionUnixUser", "s", |w| w.string(":1.1"));
    assert_eq!(error_of(&uid), "org.freedesktop.DBus.Error.Failed");
    let creds = h.driver(a, "GetConnectionCredentials", "s", |w| w.string(":1.1"));
    let dict = tram_wire::BodyReader::new(&creds)
        .read_variant_dict()
        .unwrap();
    assert!(
        dict.iter().all(|(k, _)| *k != "UnixUserID"),
        "no user to report"
    );
}
