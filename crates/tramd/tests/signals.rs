//! Signals and match rules: AddMatch/RemoveMatch, which broadcasts reach which rules (arg0,
//! arg0namespace, argNpath, path_namespace, sender by well-known name, …), removal, duplicate
//! rules, invalid rules, unicast signals and eavesdropping.

mod common;

use std::collections::BTreeSet;

use common::*;

const IFACE: &str = "com.example.I";

fn sig(path: &str, iface: &str, member: &str, args: Vec<Value>) -> RawMessage {
    RawMessage::signal(path, iface, member).args(args)
}

/// The serials of the signals `c` received from `from` up to a round trip.
fn signal_serials(c: &mut RawClient, from: &str) -> BTreeSet<u32> {
    c.sync()
        .iter()
        .filter(|m| m.mtype == SIGNAL && m.sender.as_deref() == Some(from))
        .map(|m| m.serial)
        .collect()
}

#[test]
fn broadcasts_reach_exactly_the_matching_rules() {
    let bus = TestBus::start();
    let s = Value::str;
    let signals = [
        sig("/com/example", IFACE, "Sig", vec![s("com.example")]),
        sig(
            "/com/example/sub",
            IFACE,
            "Sig",
            vec![s("com.example.Foo"), s("/aa/bb/cc")],
        ),
        sig(
            "/com/examplefoo",
            IFACE,
            "Other",
            vec![s("com.examplefoo"), s("/aa/b")],
        ),
        sig("/", "com.example.J", "Sig", vec![Value::U32(5)]),
        sig(
            "/x",
            IFACE,
            "Sig",
            vec![s("x"), Value::path("/aa/bb/cc/dd")],
        ),
        sig("/x", IFACE, "Sig", vec![s(""), s("/")]),
        sig("/x", IFACE, "Sig", vec![s("y"), s("/aa/bb/")]),
        sig("/x", IFACE, "Sig", vec![s("x"), s("aa")]),
        sig("/x", IFACE, "Sig", vec![s("z"), s("/aa/")]),
    ];
    let all: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8];
    let table: &[(&str, &[usize])] = &[
        ("type='signal'", all),
        ("", all),
        ("type='method_call'", &[]),
        ("interface='com.example.J'", &[3]),
        ("member='Other'", &[2]),
        (
            "type='signal',interface='com.example.I',member='Sig'",
            &[0, 1, 4, 5, 6, 7, 8],
        ),
        ("path='/com/example'", &[0]),
        ("path_namespace='/com/example'", &[0, 1]),
        ("path_namespace='/'", all),
        ("arg0='com.example'", &[0]),
        ("arg0=''", &[5]),
        ("arg0='5'", &[]),
        ("arg0namespace='com.example'", &[0, 1]),
        ("arg0namespace='com'", &[0, 1, 2]),
        ("arg1path='/aa/bb/'", &[1, 4, 5, 6, 8]),
        ("arg1path='/aa/bb'", &[5, 8]),
        ("arg0='x',arg1='aa'", &[7]),
        ("arg1='/aa/'", &[8]),
        ("arg1='/aa/bb/cc/dd'", &[]),
        ("member='Sig',path='/x',arg0='y'", &[6]),
    ];
    let mut receivers: Vec<RawClient> = table
        .iter()
        .map(|(rule, _)| {
            let mut r = bus.raw();
            r.add_match(rule);
            r
        })
        .collect();
    let mut emitter = bus.raw();
    let emitter_name = emitter.unique_name.clone();
    let serials: Vec<u32> = signals.iter().map(|m| emitter.send(m)).collect();
    emitter.sync();
    let mut failures = Vec::new();
    for ((rule, expected), r) in table.iter().zip(&mut receivers) {
        let want: BTreeSet<u32> = expected.iter().map(|i| serials[*i]).collect();
        let got = signal_serials(r, &emitter_name);
        if got != want {
            let idx = |set: &BTreeSet<u32>| -> Vec<usize> {
                set.iter()
                    .filter_map(|s| serials.iter().position(|x| x == s))
                    .collect()
            };
            failures.push(format!(
                "rule {rule:?}: got {:?}, want {:?}",
                idx(&got),
                idx(&want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "signals reached the wrong rules:\n{}",
        failures.join("\n")
    );
}

#[test]
fn one_copy_per_connection_however_many_rules_match() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    r.add_match("type='signal'");
    r.add_match("member='Sig'");
    r.add_match("interface='com.example.I'");
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let serial = e.send(&sig("/x", IFACE, "Sig", vec![]));
    e.sync();
    assert_eq!(signal_serials(&mut r, &en), BTreeSet::from([serial]));
}

#[test]
fn the_sender_gets_its_own_broadcast_when_it_matches() {
    let bus = TestBus::start();
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let quiet = e.send(&sig("/x", IFACE, "Sig", vec![]));
    e.add_match("member='Sig'");
    let heard = e.send(&sig("/x", IFACE, "Sig", vec![]));
    assert_eq!(signal_serials(&mut e, &en), BTreeSet::from([heard]));
    let _ = quiet;
}

#[test]
fn removing_a_rule_stops_delivery_and_duplicates_need_two_removals() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let rule = "type='signal',member='Sig'";
    r.add_match(rule);
    r.add_match(rule);
    let emit = |e: &mut RawClient| {
        let s = e.send(&sig("/x", IFACE, "Sig", vec![]));
        e.sync();
        s
    };
    let s1 = emit(&mut e);
    assert_eq!(
        signal_serials(&mut r, &en),
        BTreeSet::from([s1]),
        "added twice, delivered once"
    );
    r.bus_ok("RemoveMatch", vec![Value::str(rule)]);
    let s2 = emit(&mut e);
    assert_eq!(
        signal_serials(&mut r, &en),
        BTreeSet::from([s2]),
        "one copy of the rule is left"
    );
    r.bus_ok("RemoveMatch", vec![Value::str(rule)]);
    emit(&mut e);
    assert_eq!(
        signal_serials(&mut r, &en),
        BTreeSet::new(),
        "both copies removed"
    );
    r.call_bus("RemoveMatch", vec![Value::str(rule)])
        .expect_error(err::MATCH_RULE_NOT_FOUND);
}

#[test]
fn remove_match_compares_rules_not_text() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    r.add_match("type='signal',member='Sig',arg0='a'");
    r.bus_ok(
        "RemoveMatch",
        vec![Value::str("arg0='a',member=Sig,type='signal'")],
    );
    e.send(&sig("/x", IFACE, "Sig", vec![Value::str("a")]));
    e.sync();
    assert_eq!(signal_serials(&mut r, &en), BTreeSet::new());
    // A rule that differs in any key is another rule.
    r.add_match("type='signal',member='Sig'");
    r.call_bus(
        "RemoveMatch",
        vec![Value::str("type='signal',member='Sig',arg0='a'")],
    )
    .expect_error(err::MATCH_RULE_NOT_FOUND);
    r.call_bus("RemoveMatch", vec![Value::str("type='signal'")])
        .expect_error(err::MATCH_RULE_NOT_FOUND);
    r.call_bus("RemoveMatch", vec![Value::str("type='bogus'")])
        .expect_error(err::MATCH_RULE_INVALID);
}

#[test]
fn invalid_rules_are_refused_and_valid_oddities_accepted() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    let invalid = [
        "type='foo'",
        "foo='bar'",
        "arg64='x'",
        "path='notapath'",
        "path='/a/'",
        "sender=''",
        "sender='a'",
        "interface='a'",
        "member='1a'",
        "type='signal",
        "type = 'signal'",
        "type='signal' ",
        ",type='signal'",
        "eavesdrop='maybe'",
        "arg0namespace='a..b'",
        "arg0namespace='a.b.'",
        "arg2namespace='k.l'",
        "type='signal',type='signal'",
        "path='/a',path_namespace='/a'",
        "path_namespace='/a/'",
        "arg3='x',arg3path='/a'",
        "arg0='a',arg0namespace='a.b'",
        "member='a'\\''b'",
    ];
    for rule in invalid {
        r.call_bus("AddMatch", vec![Value::str(rule)])
            .expect_error(err::MATCH_RULE_INVALID);
    }
    let valid = [
        "",
        "arg63='x'",
        "eavesdrop='true'",
        "eavesdrop='false'",
        "arg0namespace='a'",
        "path_namespace='/'",
        "arg0path='nopath'",
        "destination=':1.5'",
        "destination='a.b'",
        "type=signal",
        " type='signal'",
        "type='signal',",
        "arg0='it'\\''s'",
        "arg0=''",
        "type='error'",
        "type='method_return'",
        "type='method_call'",
        "sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='a.b',member='C'",
    ];
    for rule in valid {
        let reply = r.call_bus("AddMatch", vec![Value::str(rule)]);
        assert!(reply.is_return(), "AddMatch {rule:?}: {}", reply.describe());
        let reply = r.call_bus("RemoveMatch", vec![Value::str(rule)]);
        assert!(
            reply.is_return(),
            "RemoveMatch {rule:?}: {}",
            reply.describe()
        );
    }
    // Wrong argument types are not rule errors.
    r.call_bus("AddMatch", vec![Value::U32(1)])
        .expect_error(err::INVALID_ARGS);
    r.call_bus("AddMatch", vec![])
        .expect_error(err::INVALID_ARGS);
}

#[test]
fn escaped_quotes_in_rules_match_literally() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    r.add_match("arg0='it'\\''s'");
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let hit = e.send(&sig("/x", IFACE, "S", vec![Value::str("it's")]));
    e.send(&sig("/x", IFACE, "S", vec![Value::str("its")]));
    e.sync();
    assert_eq!(signal_serials(&mut r, &en), BTreeSet::from([hit]));
}

#[test]
fn sender_rules_follow_well_known_names() {
    const NAME: &str = "com.example.Emitter";
    let bus = TestBus::start();
    let mut r = bus.raw();
    r.add_match(&format!("type='signal',sender='{NAME}'"));
    let mut e = bus.raw();
    let mut f = bus.raw();
    let (en, fname) = (e.unique_name.clone(), f.unique_name.clone());
    let emit = |c: &mut RawClient| {
        let s = c.send(&sig("/x", IFACE, "S", vec![]));
        c.sync();
        s
    };
    // Before anyone owns the name: nothing.
    emit(&mut e);
    assert_eq!(signal_serials(&mut r, &en), BTreeSet::new());
    assert_eq!(e.request_name(NAME, 0), 1);
    r.sync();
    let hit = emit(&mut e);
    emit(&mut f);
    assert_eq!(signal_serials(&mut r, &en), BTreeSet::from([hit]));
    // The name moves to F: now F's signals match and E's do not.
    assert_eq!(f.request_name(NAME, 0), 2);
    assert_eq!(e.release_name(NAME), 1);
    r.sync();
    emit(&mut e);
    let hit = emit(&mut f);
    let got = r.sync();
    let got: Vec<(Option<&str>, u32)> = got
        .iter()
        .filter(|m| m.mtype == SIGNAL && m.member.as_deref() == Some("S"))
        .map(|m| (m.sender.as_deref(), m.serial))
        .collect();
    assert_eq!(got, [(Some(fname.as_str()), hit)]);
}

#[test]
fn sender_rules_by_unique_name() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    let mut e = bus.raw();
    let mut f = bus.raw();
    let (en, fname) = (e.unique_name.clone(), f.unique_name.clone());
    r.add_match(&format!("sender='{en}'"));
    let hit = e.send(&sig("/x", IFACE, "S", vec![]));
    e.sync();
    f.send(&sig("/x", IFACE, "S", vec![]));
    f.sync();
    assert_eq!(signal_serials(&mut r, &en), BTreeSet::from([hit]));
    // (signal_serials consumed everything, F's signal included, had it arrived.)
    let _ = fname;
}

#[test]
fn unicast_signals_reach_only_their_destination() {
    let bus = TestBus::start();
    let mut target = bus.raw();
    let mut other = bus.raw();
    other.add_match("type='signal'");
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let tn = target.unique_name.clone();
    let s = e.send(&sig("/x", IFACE, "S", vec![]).destination(&tn));
    e.sync();
    // Delivered without any match rule on the target.
    assert_eq!(signal_serials(&mut target, &en), BTreeSet::from([s]));
    assert_eq!(signal_serials(&mut other, &en), BTreeSet::new());
}

#[test]
fn destination_rules_match_unicast_signals_only_for_eavesdroppers() {
    let bus = TestBus::start();
    let mut target = bus.raw();
    let tn = target.unique_name.clone();
    let mut plain = bus.raw();
    plain.add_match(&format!("destination='{tn}'"));
    let mut spy = bus.raw();
    spy.add_match(&format!("destination='{tn}',eavesdrop='true'"));
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let s = e.send(&sig("/x", IFACE, "S", vec![]).destination(&tn));
    e.sync();
    assert_eq!(signal_serials(&mut target, &en), BTreeSet::from([s]));
    assert_eq!(signal_serials(&mut plain, &en), BTreeSet::new());
    assert_eq!(signal_serials(&mut spy, &en), BTreeSet::from([s]));
}

#[test]
fn eavesdropping_sees_calls_and_replies_between_others() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut spy = bus.raw();
    spy.add_match("type='method_call',eavesdrop='true'");
    spy.add_match("type='method_return',eavesdrop='true'");
    let mut honest = bus.raw();
    honest.add_match("type='method_call'");
    honest.add_match("type='method_return'");
    let (an, bn) = (a.unique_name.clone(), b.unique_name.clone());
    let serial = a.send(&RawMessage::call(Some(&bn), "/p", Some(IFACE), "Secret"));
    let call = b.wait_for(|m| m.mtype == METHOD_CALL);
    b.send(&RawMessage::reply_to(&call, None).args(vec![Value::str("psst")]));
    a.wait_reply(serial).ok();
    let labels = [(an.as_str(), "A"), (bn.as_str(), "B")];
    // (dbus-daemon also shows eavesdroppers the calls to the driver; only A and B matter here.)
    let between = |m: &&Msg| {
        let ends = [m.sender.as_deref(), m.destination.as_deref()];
        ends == [Some(an.as_str()), Some(bn.as_str())]
            || ends == [Some(bn.as_str()), Some(an.as_str())]
    };
    let seen: Vec<String> = spy
        .sync()
        .iter()
        .filter(between)
        .map(|m| format!("{} {:?}->{:?}", m.summary(&labels), m.sender, m.destination))
        .collect();
    assert_eq!(
        seen,
        [
            format!("call Secret() {:?}->{:?}", Some(&an), Some(&bn)),
            format!("return(\"psst\") {:?}->{:?}", Some(&bn), Some(&an)),
        ]
    );
    let seen = honest.sync();
    assert!(
        !seen.iter().any(|m| between(&m)),
        "a rule without eavesdrop='true' saw others' messages: {seen:#?}"
    );
}

#[test]
fn name_owner_changed_rules_with_arg0() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    r.add_match(
        "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
         member='NameOwnerChanged',arg0='com.example.Watched'",
    );
    let mut a = bus.raw();
    let an = a.unique_name.clone();
    a.request_name("com.example.Unwatched", 0);
    a.request_name("com.example.Watched", 0);
    a.disconnect();
    let last = r.wait_for(|m| m.is_bus_signal("NameOwnerChanged") && m.str_arg(2) == Some(""));
    let mut got: Vec<String> = r.sync().iter().map(|m| m.summary(&[])).collect();
    got.push(last.summary(&[]));
    assert_eq!(
        got,
        [
            format!("NameOwnerChanged(\"com.example.Watched\", \"\", {an:?})"),
            format!("NameOwnerChanged(\"com.example.Watched\", {an:?}, \"\")"),
        ]
    );
}

#[test]
fn match_rules_from_zbus_and_python() {
    let bus = TestBus::start();
    let z = bus.zbus();
    let rule = "type='signal',interface='com.example.I',member='FromPython'";
    let mut stream = run({
        let z = z.clone();
        async move { zbus::MessageStream::for_match_rule(rule, &z, None).await }
    })
    .unwrap_or_else(|e| panic!("zbus AddMatch: {e}"));
    let out = bus.python(
        "m = dbus.lowlevel.SignalMessage('/py', 'com.example.I', 'FromPython')\n\
         m.append('hello', signature='s')\n\
         bus.send_message(m)\n\
         bus.flush()\n\
         print(bus.get_unique_name())\n\
         try:\n    bus.add_match_string('type=\\'nonsense\\'')\n\
         except dbus.exceptions.DBusException as e:\n    print(e.get_dbus_name())\n",
    );
    let text = out.ok().to_owned();
    let mut lines = text.lines();
    let py_name = lines.next().unwrap_or_default().to_owned();
    assert_eq!(lines.next(), Some(err::MATCH_RULE_INVALID), "{out:#?}");
    let (stream, msg) = run(async move {
        use futures_util::StreamExt;
        let msg = stream.next().await;
        (stream, msg)
    });
    let msg = msg.expect("the stream ended").expect("a message");
    let header = msg.header();
    assert_eq!(header.member().map(|m| m.as_str()), Some("FromPython"));
    assert_eq!(header.sender().map(|s| s.as_str()), Some(py_name.as_str()));
    assert_eq!(
        msg.body().deserialize::<String>().ok().as_deref(),
        Some("hello")
    );
    drop(stream);

    // zbus's fdo proxy adds and removes rules too.
    let removed = run({
        let z = z.clone();
        async move {
            let proxy = zbus::fdo::DBusProxy::new(&z).await?;
            let rule = zbus::MatchRule::try_from("type='signal',member='Nothing'")?;
            proxy.add_match_rule(rule.clone()).await?;
            proxy.remove_match_rule(rule.clone()).await?;
            proxy.remove_match_rule(rule).await
        }
    });
    let name = removed
        .as_ref()
        .err()
        .map(|e| zbus::DBusError::name(e).to_string());
    assert_eq!(
        name.as_deref(),
        Some(err::MATCH_RULE_NOT_FOUND),
        "{removed:?}"
    );
}

#[test]
fn signals_from_command_line_tools() {
    let bus = TestBus::start();
    let mut r = bus.raw();
    r.add_match("type='signal',interface='com.example.I'");
    bus.dbus_send(&[
        "--type=signal",
        "/tool",
        "com.example.I.FromDbusSend",
        "string:a",
    ])
    .ok();
    bus.gdbus(
        "emit",
        &[
            "--object-path",
            "/tool",
            "--signal",
            "com.example.I.FromGdbus",
            "'b'",
        ],
    )
    .ok();
    bus.busctl(&["emit", "/tool", IFACE, "FromBusctl", "s", "c"])
        .ok();
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = r.wait_for(|m| m.mtype == SIGNAL && m.interface.as_deref() == Some(IFACE));
        got.push(m.summary(&[]));
    }
    assert_eq!(
        got,
        [
            "FromDbusSend(\"a\")",
            "FromGdbus(\"b\")",
            "FromBusctl(\"c\")"
        ]
    );
}
