//! Method calls and their replies through the bus: routing by unique and well-known name, error
//! replies, calls to missing names, NoReply when the callee leaves, unrequested replies,
//! NO_REPLY_EXPECTED, and the common client libraries and tools as callers.

mod common;

use common::service::FAILED;
use common::*;

const NAME: &str = "com.example.Calls";
const PATH: &str = "/com/example/Test";
const IFACE: &str = "com.example.Test";

fn call(dest: &str, member: &str, args: Vec<Value>) -> RawMessage {
    RawMessage::call(Some(dest), PATH, Some(IFACE), member).args(args)
}

/// dbus-daemon's stock session policy lets unrequested replies through; with rules that deny
/// them (as the system bus has) it refuses them, which is what tramd always does (as
/// dbus-broker does). Tests of that refusal run dbus-daemon with such rules.
fn bus_refusing_unrequested_replies() -> TestBus {
    match BusKind::from_env() {
        BusKind::Tramd => TestBus::tramd(),
        BusKind::DbusDaemon => {
            let stock = std::fs::read_to_string("/usr/share/dbus-1/session.conf")
                .expect("reading dbus-daemon's session.conf");
            let strict = stock.replacen(
                "<allow own=\"*\"/>",
                "<allow own=\"*\"/>\
                 <deny send_type=\"method_return\" send_requested_reply=\"false\"/>\
                 <deny send_type=\"error\" send_requested_reply=\"false\"/>",
                1,
            );
            assert_ne!(
                stock, strict,
                "session.conf has no <allow own=\"*\"/> to extend"
            );
            TestBus::with_config(BusKind::DbusDaemon, &strict)
        }
    }
}

#[test]
fn calls_reach_unique_and_well_known_names_and_replies_come_back() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    assert_eq!(b.request_name(NAME, 0), 1);
    let (an, bn) = (a.unique_name.clone(), b.unique_name.clone());
    for dest in [bn.as_str(), NAME] {
        let args = vec![
            Value::str("hello"),
            Value::U32(7),
            Value::str_array(&["x", "y"]),
        ];
        let serial = a.send(&call(dest, "Method", args.clone()));
        let got = b.wait_for(|m| m.mtype == METHOD_CALL);
        assert_eq!(
            got.sender.as_deref(),
            Some(an.as_str()),
            "{}",
            got.describe()
        );
        assert_eq!(got.destination.as_deref(), Some(dest), "{}", got.describe());
        assert_eq!(got.path.as_deref(), Some(PATH));
        assert_eq!(got.interface.as_deref(), Some(IFACE));
        assert_eq!(got.member.as_deref(), Some("Method"));
        assert_eq!(got.serial, serial, "the bus must keep the caller's serial");
        assert_eq!(got.body, args);
        b.send(&RawMessage::reply_to(&got, None).args(vec![Value::str("done")]));
        let reply = a.wait_reply(serial);
        assert!(reply.is_return(), "{}", reply.describe());
        assert_eq!(
            reply.sender.as_deref(),
            Some(bn.as_str()),
            "replies carry the unique name"
        );
        assert_eq!(reply.destination.as_deref(), Some(an.as_str()));
        assert_eq!(reply.body, [Value::str("done")]);
    }
}

#[test]
fn a_forged_sender_is_replaced() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    for forged in [":1.9999", "org.freedesktop.DBus", NAME] {
        a.send(&call(&bn, "M", vec![]).field(field::SENDER, Value::str(forged)));
        let got = b.wait_for(|m| m.mtype == METHOD_CALL);
        assert_eq!(
            got.sender.as_deref(),
            Some(a.unique_name.as_str()),
            "forged {forged}"
        );
    }
}

#[test]
fn error_replies_are_forwarded() {
    let bus = TestBus::start();
    let svc = Service::spawn(&bus, Some(NAME));
    let mut a = bus.raw();
    let reply = a.call(call(NAME, "Fail", vec![Value::str("boom")]));
    reply.expect_error(FAILED);
    assert_eq!(reply.sender.as_deref(), Some(svc.unique_name.as_str()));
    assert_eq!(reply.destination.as_deref(), Some(a.unique_name.as_str()));
    assert_eq!(reply.body, [Value::str("boom")]);
    assert_eq!(reply.signature, "s");
}

#[test]
fn calls_to_missing_names_fail_at_once() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let reply = a.call(call("com.example.Missing", "M", vec![]));
    reply.expect_error(err::SERVICE_UNKNOWN);
    assert_eq!(reply.sender.as_deref(), Some(BUS));
    assert_eq!(reply.destination.as_deref(), Some(a.unique_name.as_str()));
    a.call(call(":1.9999", "M", vec![]))
        .expect_error(err::SERVICE_UNKNOWN);
    a.call_bus("GetNameOwner", vec![Value::str("com.example.Missing")])
        .expect_error(err::NAME_HAS_NO_OWNER);
}

#[test]
fn the_missing_destination_error_depends_only_on_no_auto_start() {
    // dbus-daemon answers any message (call, signal, return, error) to a name nobody owns with
    // ServiceUnknown, or NameHasNoOwner when NO_AUTO_START is set — whatever the message type.
    let bus = TestBus::start();
    let mut a = bus.raw();
    for dest in ["com.example.Missing", ":1.9999"] {
        let messages = [
            ("call", call(dest, "M", vec![])),
            (
                "signal",
                RawMessage::signal(PATH, IFACE, "S").destination(dest),
            ),
            ("return", RawMessage::method_return(dest, 5)),
            ("error", RawMessage::error(dest, 5, "com.example.Error.E")),
        ];
        for (kind, m) in messages {
            for (flags, expected) in [
                (0, err::SERVICE_UNKNOWN),
                (NO_AUTO_START, err::NAME_HAS_NO_OWNER),
            ] {
                let serial = a.send(&m.clone().flags(flags));
                let reply = a.wait_reply(serial);
                assert!(
                    reply.is_error(expected),
                    "{kind} to {dest} with flags {flags}: expected {expected}, got {}",
                    reply.describe()
                );
            }
        }
    }
}

#[test]
fn a_missing_destination_is_reported_even_when_no_reply_is_expected() {
    // As dbus-daemon does: NO_REPLY_EXPECTED does not silence the bus's own error.
    let bus = TestBus::start();
    let mut a = bus.raw();
    let missing = call("com.example.Missing", "M", vec![]);
    let serial = a.send(&missing.clone().flags(NO_REPLY_EXPECTED));
    a.wait_reply(serial).expect_error(err::SERVICE_UNKNOWN);
    let serial = a.send(&missing.flags(NO_REPLY_EXPECTED | NO_AUTO_START));
    a.wait_reply(serial).expect_error(err::NAME_HAS_NO_OWNER);
}

#[test]
fn pending_calls_get_no_reply_when_the_callee_disconnects() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut c = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    assert_eq!(b.request_name(NAME, 0), 1);
    let s1 = a.send(&call(&bn, "M", vec![]));
    let s2 = a.send(&call(NAME, "M", vec![]));
    let s3 = c.send(&call(NAME, "M", vec![]));
    let quiet = a.send(&call(NAME, "M", vec![]).flags(NO_REPLY_EXPECTED));
    let mut received = 0;
    while received < 4 {
        b.wait_for(|m| m.mtype == METHOD_CALL);
        received += 1;
    }
    b.disconnect();
    for reply in [a.wait_reply(s1), a.wait_reply(s2), c.wait_reply(s3)] {
        reply.expect_error(err::NO_REPLY);
        assert_eq!(reply.sender.as_deref(), Some(BUS));
    }
    let rest = a.sync();
    assert!(
        rest.iter().all(|m| m.reply_serial != Some(quiet)),
        "a NO_REPLY_EXPECTED call got an answer: {rest:#?}"
    );
}

#[test]
fn a_reply_after_the_caller_left_is_refused() {
    let bus = TestBus::start();
    let mut callee = bus.raw();
    let mut caller = bus.raw();
    let caller_name = caller.unique_name.clone();
    let serial = caller.send(&call(&callee.unique_name.clone(), "M", vec![]));
    callee.wait_for(|m| m.mtype == METHOD_CALL);
    let mut watch = bus.raw();
    watch.add_match(&format!(
        "type='signal',member='NameOwnerChanged',arg0='{caller_name}'"
    ));
    caller.disconnect();
    watch.wait_for(|m| m.is_bus_signal("NameOwnerChanged"));
    let s = callee.send(&RawMessage::method_return(&caller_name, serial));
    callee.wait_reply(s).expect_error(err::SERVICE_UNKNOWN);
}

#[test]
fn unrequested_and_duplicate_replies_are_refused() {
    let bus = bus_refusing_unrequested_replies();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let (an, bn) = (a.unique_name.clone(), b.unique_name.clone());

    // A reply nobody asked for, of either kind.
    let s = b.send(&RawMessage::method_return(&an, 77));
    b.wait_reply(s).expect_error(err::ACCESS_DENIED);
    let s = b.send(&RawMessage::error(&an, 78, "com.example.Error.Bogus"));
    b.wait_reply(s).expect_error(err::ACCESS_DENIED);

    // A second reply to one call.
    let serial = a.send(&call(&bn, "M", vec![]));
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    b.send(&RawMessage::reply_to(&got, None).args(vec![Value::U32(1)]));
    let s = b.send(&RawMessage::reply_to(&got, None).args(vec![Value::U32(2)]));
    b.wait_reply(s).expect_error(err::ACCESS_DENIED);
    let s = b.send(&RawMessage::reply_to(&got, Some("com.example.Error.Late")));
    b.wait_reply(s).expect_error(err::ACCESS_DENIED);

    // A reply to a call that asked for none.
    let quiet = a.send(&call(&bn, "M", vec![]).flags(NO_REPLY_EXPECTED));
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    let s = b.send(&RawMessage::reply_to(&got, None));
    b.wait_reply(s).expect_error(err::ACCESS_DENIED);

    // A reply from someone other than the callee.
    let mut c = bus.raw();
    let third = a.send(&call(&bn, "M", vec![]));
    let s = c.send(&RawMessage::method_return(&an, third));
    c.wait_reply(s).expect_error(err::ACCESS_DENIED);

    // A saw exactly the one legitimate reply.
    let replies: Vec<String> = a
        .sync()
        .iter()
        .filter(|m| m.mtype == METHOD_RETURN || m.mtype == ERROR)
        .map(|m| format!("{} to #{:?}", m.summary(&[]), m.reply_serial))
        .collect();
    assert_eq!(
        replies,
        [format!("return(uint32 1) to #{:?}", Some(serial))]
    );
    let _ = quiet;
}

#[test]
fn no_reply_expected_calls_are_delivered_with_the_flag() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let svc = Service::spawn(&bus, Some(NAME));
    a.send(&call(NAME, "Echo", vec![Value::str("quiet")]).flags(NO_REPLY_EXPECTED));
    // A call that does get a reply, sent after: when it is answered, the first was delivered.
    a.call(call(NAME, "Echo", vec![])).ok();
    let calls = svc.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].flags & NO_REPLY_EXPECTED, NO_REPLY_EXPECTED);
    assert_eq!(calls[0].body, [Value::str("quiet")]);
    assert_eq!(calls[1].flags & NO_REPLY_EXPECTED, 0);
    let rest = a.sync();
    assert!(rest.is_empty(), "nothing else should arrive: {rest:#?}");
}

#[test]
fn messages_from_one_sender_keep_their_order() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let mut batch = Vec::new();
    for i in 0..200u32 {
        let m = call(&bn, "M", vec![Value::U32(i)]).flags(NO_REPLY_EXPECTED);
        let serial = a.next_serial();
        batch.extend(m.encode(serial));
    }
    // All in one write: the bus must split them and keep the order.
    a.write_all(&batch);
    for i in 0..200u32 {
        let got = b.recv();
        assert_eq!(got.body, [Value::U32(i)], "{}", got.describe());
    }
}

#[test]
fn large_messages_pass_intact() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let _svc = Service::spawn(&bus, Some(NAME));
    let blob: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let arg = Value::Bytes(blob);
    let reply = a.call(call(NAME, "Echo", vec![arg.clone()]));
    assert!(
        reply.body == [arg],
        "4 MiB echo came back different: {}",
        reply.signature
    );
}

#[test]
fn big_endian_messages_are_forwarded() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let mut m = call(
        &bn,
        "M",
        vec![Value::str("be"), Value::U32(0x0102_0304), Value::U64(5)],
    );
    m.big_endian = true;
    let serial = a.send(&m);
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!(got.sender.as_deref(), Some(a.unique_name.as_str()));
    assert_eq!(
        got.body,
        [Value::str("be"), Value::U32(0x0102_0304), Value::U64(5)]
    );
    let mut reply = RawMessage::reply_to(&got, None).args(vec![Value::I32(-2)]);
    reply.big_endian = true;
    b.send(&reply);
    assert_eq!(a.wait_reply(serial).ok(), [Value::I32(-2)]);
    // The driver answers big-endian callers too.
    let mut hello_world = RawMessage::bus_call("GetNameOwner", vec![Value::str(&bn)]);
    hello_world.big_endian = true;
    assert_eq!(a.call(hello_world).ok(), [Value::str(&bn)]);
}

#[test]
fn messages_marshalled_by_tram_wire_pass_the_bus() {
    use common::built::with_args;
    use tram_wire::MessageBuilder;
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut listener = bus.raw();
    listener.add_match("type='signal',interface='com.example.Test'");
    let bn = b.unique_name.clone();
    let every_type = vec![
        Value::Byte(0xfe),
        Value::Bool(true),
        Value::I16(-2),
        Value::U16(3),
        Value::I32(-4),
        Value::U32(5),
        Value::I64(-6),
        Value::U64(7),
        Value::F64(8.5),
        Value::str("nine"),
        Value::path("/ten/eleven"),
        Value::Sig("a{sv}".into()),
        Value::Bytes(vec![1, 2, 3]),
        Value::str_array(&["x", "", "z"]),
        Value::Array("(yt)".into(), vec![]),
        Value::Struct(vec![
            Value::Byte(1),
            Value::U64(2),
            Value::Struct(vec![Value::str("n")]),
        ]),
        Value::dict_sv(vec![("a", Value::U16(1)), ("b", Value::str_array(&[]))]),
        Value::variant(Value::variant(Value::I64(-1))),
    ];
    for big_endian in [false, true] {
        let serial = a.next_serial();
        let call = MessageBuilder::method_call(PATH, Some(IFACE), "Types").destination(&bn);
        let call = with_args(call, big_endian, &every_type).build(serial);
        a.write_all(call.as_bytes());
        let got = b.wait_for(|m| m.mtype == METHOD_CALL);
        assert_eq!(got.big_endian, big_endian);
        assert_eq!(got.serial, serial);
        assert_eq!(got.body, every_type, "big endian: {big_endian}");
        let reply = MessageBuilder::method_return(serial).destination(&a.unique_name);
        let reply = with_args(reply, big_endian, &every_type[..3]).build(b.next_serial());
        b.write_all(reply.as_bytes());
        assert_eq!(a.wait_reply(serial).ok(), every_type[..3]);
        let signal = MessageBuilder::signal(PATH, IFACE, "Built");
        let signal = with_args(signal, big_endian, &every_type[9..]).build(a.next_serial());
        a.write_all(signal.as_bytes());
        let got = listener.wait_for(|m| m.member.as_deref() == Some("Built"));
        assert_eq!(got.body, every_type[9..]);
    }
}

#[test]
fn a_client_can_call_itself() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let me = a.unique_name.clone();
    let serial = a.send(&call(&me, "M", vec![]));
    let got = a.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!(got.sender.as_deref(), Some(me.as_str()));
    a.send(&RawMessage::reply_to(&got, None));
    assert!(a.wait_reply(serial).is_return());
}

#[test]
fn dbus_send_as_caller() {
    let bus = TestBus::start();
    let _svc = Service::spawn(&bus, Some(NAME));
    let dest = format!("--dest={NAME}");
    let out = bus.dbus_send(&[
        "--print-reply",
        &dest,
        PATH,
        "com.example.Test.Echo",
        "string:hi",
        "int32:-5",
    ]);
    let text = out.ok();
    assert!(
        text.contains("string \"hi\"") && text.contains("int32 -5"),
        "{text}"
    );
    let out = bus.dbus_send(&[
        "--print-reply",
        &dest,
        PATH,
        "com.example.Test.Fail",
        "string:boom",
    ]);
    assert!(
        out.failed().contains(&format!("{FAILED}: boom")),
        "{out:#?}"
    );
    let out = bus.dbus_send(&["--print-reply", "--dest=com.example.Missing", PATH, "a.b.C"]);
    assert!(out.failed().contains(err::SERVICE_UNKNOWN), "{out:#?}");
    // Without --print-reply dbus-send asks for no reply.
    let out = bus.dbus_send(&[&dest, PATH, "com.example.Test.Echo", "string:quiet"]);
    out.ok();
}

#[test]
fn gdbus_as_caller() {
    let bus = TestBus::start();
    let _svc = Service::spawn(&bus, Some(NAME));
    let args = ["--dest", NAME, "--object-path", PATH, "--method"];
    let out = bus.gdbus(
        "call",
        &[&args[..], &["com.example.Test.Echo", "'hi'", "5"]].concat(),
    );
    assert_eq!(out.ok().trim(), "('hi', 5)");
    let out = bus.gdbus(
        "call",
        &[&args[..], &["com.example.Test.Fail", "'boom'"]].concat(),
    );
    assert!(out.failed().contains(FAILED), "{out:#?}");
    let missing = [
        "--dest",
        "com.example.Missing",
        "--object-path",
        "/",
        "--method",
        "a.b.C",
    ];
    assert!(
        bus.gdbus("call", &missing)
            .failed()
            .contains(err::SERVICE_UNKNOWN)
    );
}

#[test]
fn busctl_as_caller() {
    let bus = TestBus::start();
    let _svc = Service::spawn(&bus, Some(NAME));
    let out = bus.busctl(&["call", NAME, PATH, IFACE, "Echo", "si", "hi", "5"]);
    assert_eq!(out.ok().trim(), "si \"hi\" 5");
    let out = bus.busctl(&["call", NAME, PATH, IFACE, "Fail", "s", "boom"]);
    assert!(out.failed().contains("boom"), "{out:#?}");
    let out = bus.busctl(&["call", "com.example.Missing", "/", "a.b", "C"]);
    out.failed();
}

#[test]
fn python_dbus_as_caller() {
    let bus = TestBus::start();
    let svc = Service::spawn(&bus, Some(NAME));
    let out = bus.python(&format!(
        "o = bus.get_object('{NAME}', '{PATH}', introspect=False)\n\
         print(repr(o.Echo('hi', dbus.UInt32(5), dbus_interface='{IFACE}')))\n\
         print(o.WhoAmI(dbus_interface='{IFACE}') == bus.get_unique_name())\n\
         try:\n    o.Fail('boom', dbus_interface='{IFACE}')\n\
         except dbus.exceptions.DBusException as e:\n    print(e.get_dbus_name(), e.get_dbus_message())\n\
         try:\n    bus.get_object('com.example.Missing', '/', introspect=False).X(dbus_interface='a.b')\n\
         except dbus.exceptions.DBusException as e:\n    print(e.get_dbus_name())\n"
    ));
    let text = out.ok();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "(dbus.String('hi'), dbus.UInt32(5))",
            "True",
            &format!("{FAILED} boom"),
            err::SERVICE_UNKNOWN,
        ],
        "{out:#?}"
    );
    assert!(svc.calls().iter().any(|c| c.member == "Echo"));
}

#[test]
fn zbus_as_caller() {
    let bus = TestBus::start();
    let svc = Service::spawn(&bus, Some(NAME));
    let z = bus.zbus();
    let (echo, who, fail, missing) = run({
        let z = z.clone();
        async move {
            let echo = z
                .call_method(Some(NAME), PATH, Some(IFACE), "Echo", &("hi", 5u32))
                .await;
            let echo = echo.and_then(|m| m.body().deserialize::<(String, u32)>());
            let who = z
                .call_method(Some(NAME), PATH, Some(IFACE), "WhoAmI", &())
                .await;
            let who = who.and_then(|m| m.body().deserialize::<String>());
            let fail = z
                .call_method(Some(NAME), PATH, Some(IFACE), "Fail", &("boom",))
                .await;
            let missing = z
                .call_method(Some("com.example.Missing"), "/", Some("a.b"), "C", &())
                .await;
            (echo, who, fail.err(), missing.err())
        }
    });
    assert_eq!(echo.ok(), Some(("hi".to_owned(), 5)));
    assert_eq!(who.ok(), z.unique_name().map(ToString::to_string));
    assert_eq!(
        fail.as_ref().and_then(zbus_error_name).as_deref(),
        Some(FAILED),
        "{fail:?}"
    );
    assert_eq!(
        missing.as_ref().and_then(zbus_error_name).as_deref(),
        Some(err::SERVICE_UNKNOWN),
        "{missing:?}"
    );
    assert_eq!(svc.calls().len(), 3);
}
