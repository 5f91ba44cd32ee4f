//! Name ownership: RequestName and ReleaseName with every flag and result, the queue, replacement,
//! and the NameOwnerChanged / NameAcquired / NameLost signals in the order dbus-daemon sends them.

mod common;

use common::*;

const N: &str = "com.example.Names";

const ALLOW_REPLACEMENT: u32 = 1;
const REPLACE_EXISTING: u32 = 2;
const DO_NOT_QUEUE: u32 = 4;

const PRIMARY_OWNER: u32 = 1;
const IN_QUEUE: u32 = 2;
const EXISTS: u32 = 3;
const ALREADY_OWNER: u32 = 4;

const RELEASED: u32 = 1;
const NON_EXISTENT: u32 = 2;
const NOT_OWNER: u32 = 3;

fn owner(c: &mut RawClient, name: &str) -> Option<String> {
    let reply = c.call_bus("GetNameOwner", vec![Value::str(name)]);
    if reply.is_error(err::NAME_HAS_NO_OWNER) {
        return None;
    }
    Some(
        reply
            .ok()
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

fn queue(c: &mut RawClient, name: &str) -> Vec<String> {
    let body = c.bus_ok("ListQueuedOwners", vec![Value::str(name)]);
    body.first().and_then(Value::as_str_vec).unwrap_or_default()
}

/// Everything `c` received up to a round trip, as summaries (the Ping reply itself excluded).
fn seen(c: &mut RawClient, labels: &[(&str, &str)]) -> Vec<String> {
    c.sync().iter().map(|m| m.summary(labels)).collect()
}

/// A client that receives every signal.
fn listener(bus: &TestBus) -> RawClient {
    let mut c = bus.raw();
    c.add_match("type='signal'");
    c
}

#[test]
fn primary_owner_then_already_owner() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(a.request_name(N, 0), ALREADY_OWNER);
    assert_eq!(
        a.request_name(N, ALLOW_REPLACEMENT | REPLACE_EXISTING | DO_NOT_QUEUE),
        ALREADY_OWNER
    );
    assert_eq!(owner(&mut a, N).as_deref(), Some(a.unique_name.as_str()));
    assert_eq!(
        a.bus_ok("NameHasOwner", vec![Value::str(N)]),
        [Value::Bool(true)]
    );
    assert_eq!(queue(&mut a, N), [a.unique_name.clone()]);
}

#[test]
fn second_requester_is_queued_or_told_it_exists() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut c = bus.raw();
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    assert_eq!(b.request_name(N, 0), IN_QUEUE, "asking again while queued");
    assert_eq!(c.request_name(N, DO_NOT_QUEUE), EXISTS);
    assert_eq!(
        queue(&mut c, N),
        [a.unique_name.clone(), b.unique_name.clone()]
    );
    assert_eq!(owner(&mut c, N).as_deref(), Some(a.unique_name.as_str()));
}

#[test]
fn replace_existing_needs_the_owner_to_allow_replacement() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, REPLACE_EXISTING | DO_NOT_QUEUE), EXISTS);
    assert_eq!(b.request_name(N, REPLACE_EXISTING), IN_QUEUE);
    assert_eq!(owner(&mut b, N).as_deref(), Some(a.unique_name.as_str()));
    assert_eq!(
        queue(&mut b, N),
        [a.unique_name.clone(), b.unique_name.clone()]
    );
}

#[test]
fn replacement_requeues_the_old_owner_unless_it_asked_not_to_be_queued() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut c = bus.raw();
    assert_eq!(a.request_name(N, ALLOW_REPLACEMENT), PRIMARY_OWNER);
    assert_eq!(
        b.request_name(N, REPLACE_EXISTING | ALLOW_REPLACEMENT | DO_NOT_QUEUE),
        PRIMARY_OWNER
    );
    assert_eq!(owner(&mut a, N).as_deref(), Some(b.unique_name.as_str()));
    // A did not say DO_NOT_QUEUE, so it waits behind the new owner.
    assert_eq!(
        queue(&mut a, N),
        [b.unique_name.clone(), a.unique_name.clone()]
    );
    // B said DO_NOT_QUEUE, so when C replaces it, it leaves the queue altogether.
    assert_eq!(c.request_name(N, REPLACE_EXISTING), PRIMARY_OWNER);
    assert_eq!(
        queue(&mut a, N),
        [c.unique_name.clone(), a.unique_name.clone()]
    );
    // When C lets go, A — still queued — gets the name back.
    assert_eq!(c.release_name(N), RELEASED);
    assert_eq!(owner(&mut a, N).as_deref(), Some(a.unique_name.as_str()));
    let got = a.sync();
    assert!(
        got.iter()
            .any(|m| m.is_bus_signal("NameAcquired") && m.str_arg(0) == Some(N)),
        "A was not told it owns the name again: {got:#?}"
    );
}

#[test]
fn a_queued_requester_can_change_its_flags() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut c = bus.raw();
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    // The owner now allows replacement: a later REPLACE_EXISTING succeeds.
    assert_eq!(a.request_name(N, ALLOW_REPLACEMENT), ALREADY_OWNER);
    assert_eq!(c.request_name(N, REPLACE_EXISTING), PRIMARY_OWNER);
    assert_eq!(
        queue(&mut c, N),
        [
            c.unique_name.clone(),
            a.unique_name.clone(),
            b.unique_name.clone()
        ]
    );
}

#[test]
fn release_name_results() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    assert_eq!(a.release_name(N), NON_EXISTENT);
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.release_name(N), NOT_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    // Leaving the queue counts as releasing, and tells nobody anything.
    assert_eq!(b.release_name(N), RELEASED);
    assert_eq!(queue(&mut a, N), [a.unique_name.clone()]);
    assert_eq!(b.release_name(N), NOT_OWNER);
    assert_eq!(a.release_name(N), RELEASED);
    assert_eq!(owner(&mut a, N), None);
    assert_eq!(
        a.bus_ok("NameHasOwner", vec![Value::str(N)]),
        [Value::Bool(false)]
    );
    a.call_bus("ListQueuedOwners", vec![Value::str(N)])
        .expect_error(err::NAME_HAS_NO_OWNER);
    assert_eq!(a.release_name(N), NON_EXISTENT);
}

#[test]
fn queue_is_promoted_when_the_owner_releases_or_leaves() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let mut c = bus.raw();
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    assert_eq!(c.request_name(N, 0), IN_QUEUE);
    assert_eq!(a.release_name(N), RELEASED);
    assert_eq!(owner(&mut c, N).as_deref(), Some(b.unique_name.as_str()));
    assert_eq!(
        queue(&mut c, N),
        [b.unique_name.clone(), c.unique_name.clone()]
    );
    b.disconnect();
    c.wait_for(|m| m.is_bus_signal("NameAcquired") && m.str_arg(0) == Some(N));
    assert_eq!(owner(&mut c, N).as_deref(), Some(c.unique_name.as_str()));
    assert_eq!(queue(&mut c, N), [c.unique_name.clone()]);
    c.disconnect();
    let mut d = bus.raw();
    assert_eq!(owner(&mut d, N), None, "the name outlived every owner");
}

#[test]
fn a_queued_peer_that_leaves_is_forgotten() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let b_name = b.unique_name.clone();
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    let mut watch = listener(&bus);
    b.disconnect();
    watch.wait_for(|m| m.is_bus_signal("NameOwnerChanged") && m.str_arg(0) == Some(&b_name));
    assert_eq!(queue(&mut a, N), [a.unique_name.clone()]);
    assert_eq!(a.release_name(N), RELEASED);
    assert_eq!(owner(&mut a, N), None);
}

#[test]
fn hello_reply_comes_before_name_acquired() {
    let bus = TestBus::start();
    let mut watch = listener(&bus);
    let mut c = bus.raw_unauthenticated();
    c.authenticate(true);
    let serial = c.send(&RawMessage::bus_call("Hello", vec![]));
    let reply = c.recv();
    assert!(
        reply.is_return() && reply.reply_serial == Some(serial),
        "{}",
        reply.describe()
    );
    let name = reply.str_arg(0).unwrap_or_default().to_owned();
    assert_eq!(reply.destination.as_deref(), Some(name.as_str()));
    let acquired = c.recv();
    assert!(
        acquired.is_bus_signal("NameAcquired"),
        "{}",
        acquired.describe()
    );
    assert_eq!(acquired.str_arg(0), Some(name.as_str()));
    assert_eq!(acquired.destination.as_deref(), Some(name.as_str()));
    c.unique_name = name.clone();
    assert_eq!(seen(&mut c, &[]), Vec::<String>::new());
    let noc = watch.wait_for(|m| m.is_bus_signal("NameOwnerChanged"));
    assert_eq!(
        noc.body,
        [Value::str(&name), Value::str(""), Value::str(&name)]
    );
}

#[test]
fn signals_and_reply_order_when_acquiring() {
    let bus = TestBus::start();
    let mut a = listener(&bus);
    let mut other = listener(&bus);
    a.sync();
    let a_name = a.unique_name.clone();
    let labels = [(a_name.as_str(), "A")];
    a.send(&RawMessage::bus_call(
        "RequestName",
        vec![Value::str(N), Value::U32(0)],
    ));
    assert_eq!(
        seen(&mut a, &labels),
        [
            format!("NameOwnerChanged(\"{N}\", \"\", A)"),
            format!("NameAcquired(\"{N}\")"),
            "return(uint32 1)".to_owned(),
        ]
    );
    assert_eq!(
        seen(&mut other, &labels),
        [format!("NameOwnerChanged(\"{N}\", \"\", A)")]
    );
    // Queueing and already owning emit nothing.
    let mut b = listener(&bus);
    a.sync();
    other.sync();
    b.send(&RawMessage::bus_call(
        "RequestName",
        vec![Value::str(N), Value::U32(0)],
    ));
    assert_eq!(seen(&mut b, &labels), ["return(uint32 2)"]);
    a.send(&RawMessage::bus_call(
        "RequestName",
        vec![Value::str(N), Value::U32(0)],
    ));
    assert_eq!(seen(&mut a, &labels), ["return(uint32 4)"]);
    assert_eq!(seen(&mut other, &labels), Vec::<String>::new());
}

#[test]
fn signals_and_reply_order_when_releasing_to_the_queue() {
    let bus = TestBus::start();
    let mut a = listener(&bus);
    let mut b = listener(&bus);
    let (an, bn) = (a.unique_name.clone(), b.unique_name.clone());
    let labels = [(an.as_str(), "A"), (bn.as_str(), "B")];
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    a.sync();
    b.sync();
    a.send(&RawMessage::bus_call("ReleaseName", vec![Value::str(N)]));
    assert_eq!(
        seen(&mut a, &labels),
        [
            format!("NameLost(\"{N}\")"),
            format!("NameOwnerChanged(\"{N}\", A, B)"),
            "return(uint32 1)".to_owned(),
        ]
    );
    assert_eq!(
        seen(&mut b, &labels),
        [
            format!("NameOwnerChanged(\"{N}\", A, B)"),
            format!("NameAcquired(\"{N}\")")
        ]
    );
    // The last owner releasing: the name disappears.
    b.send(&RawMessage::bus_call("ReleaseName", vec![Value::str(N)]));
    assert_eq!(
        seen(&mut b, &labels),
        [
            format!("NameLost(\"{N}\")"),
            format!("NameOwnerChanged(\"{N}\", B, \"\")"),
            "return(uint32 1)".to_owned(),
        ]
    );
    assert_eq!(
        seen(&mut a, &labels),
        [format!("NameOwnerChanged(\"{N}\", B, \"\")")]
    );
}

#[test]
fn signals_and_reply_order_when_replacing() {
    let bus = TestBus::start();
    let mut a = listener(&bus);
    let mut b = listener(&bus);
    let (an, bn) = (a.unique_name.clone(), b.unique_name.clone());
    let labels = [(an.as_str(), "A"), (bn.as_str(), "B")];
    assert_eq!(a.request_name(N, ALLOW_REPLACEMENT), PRIMARY_OWNER);
    a.sync();
    b.sync();
    b.send(&RawMessage::bus_call(
        "RequestName",
        vec![Value::str(N), Value::U32(REPLACE_EXISTING)],
    ));
    assert_eq!(
        seen(&mut b, &labels),
        [
            format!("NameOwnerChanged(\"{N}\", A, B)"),
            format!("NameAcquired(\"{N}\")"),
            "return(uint32 1)".to_owned(),
        ]
    );
    assert_eq!(
        seen(&mut a, &labels),
        [
            format!("NameLost(\"{N}\")"),
            format!("NameOwnerChanged(\"{N}\", A, B)")
        ]
    );
}

#[test]
fn signals_order_when_the_owner_disconnects() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = listener(&bus);
    let (an, bn) = (a.unique_name.clone(), b.unique_name.clone());
    let labels = [(an.as_str(), "A"), (bn.as_str(), "B")];
    const M: &str = "com.example.Other";
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    assert_eq!(a.request_name(M, 0), PRIMARY_OWNER);
    assert_eq!(b.request_name(N, 0), IN_QUEUE);
    b.sync();
    a.disconnect();
    let mut got = Vec::new();
    while got.len() < 4 {
        got.push(b.recv().summary(&labels));
    }
    got.extend(seen(&mut b, &labels));
    // Each well-known name passes on (with its NameAcquired) before the unique name goes; as in
    // dbus-daemon, the most recently acquired name goes first.
    assert_eq!(
        got,
        [
            format!("NameOwnerChanged(\"{M}\", A, \"\")"),
            format!("NameOwnerChanged(\"{N}\", A, B)"),
            format!("NameAcquired(\"{N}\")"),
            "NameOwnerChanged(A, A, \"\")".to_owned(),
        ]
    );
}

#[test]
fn name_owner_changed_reaches_only_those_who_asked() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut quiet = bus.raw();
    let mut filtered = bus.raw();
    filtered.add_match(&format!(
        "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{N}'"
    ));
    assert_eq!(a.request_name("com.example.Unwatched", 0), PRIMARY_OWNER);
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    let an = a.unique_name.clone();
    let labels = [(an.as_str(), "A")];
    assert_eq!(seen(&mut quiet, &labels), Vec::<String>::new());
    assert_eq!(
        seen(&mut filtered, &labels),
        [format!("NameOwnerChanged(\"{N}\", \"\", A)")]
    );
}

#[test]
fn reserved_and_invalid_names_are_refused() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let own_unique = a.unique_name.clone();
    let too_long = format!("a.{}", "b".repeat(254));
    let refused: [&str; 10] = [
        ":1.99",
        &own_unique,
        "org.freedesktop.DBus",
        "",
        "nodots",
        "a..b",
        "com.1digit",
        ".a.b",
        "a.b.",
        "a.b/c",
    ];
    for name in refused.iter().copied().chain([too_long.as_str()]) {
        a.call_bus("RequestName", vec![Value::str(name), Value::U32(0)])
            .expect_error(err::INVALID_ARGS);
        a.call_bus("ReleaseName", vec![Value::str(name)])
            .expect_error(err::INVALID_ARGS);
    }
    // Nothing was acquired along the way.
    let names = a.bus_ok("ListNames", vec![]);
    let names = names[0].as_str_vec().unwrap_or_default();
    assert!(
        names.iter().all(|n| n.starts_with(':') || n == BUS),
        "{names:?}"
    );
}

#[test]
fn valid_unusual_names_are_accepted() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let longest = format!("a.{}", "b".repeat(253));
    for name in [
        "a.b",
        "a.b-c.d",
        "a.b2",
        "_a._b",
        "A.B",
        "a-b.c_d.e9",
        longest.as_str(),
    ] {
        assert_eq!(a.request_name(name, 0), PRIMARY_OWNER, "{name}");
        assert_eq!(
            owner(&mut a, name).as_deref(),
            Some(a.unique_name.as_str()),
            "{name}"
        );
    }
}

#[test]
fn unknown_flag_bits_are_ignored() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    assert_eq!(a.request_name(N, 0xf0), PRIMARY_OWNER);
    // 0xf8 has no known bit set: B is queued as with flags 0.
    assert_eq!(b.request_name(N, 0xf8), IN_QUEUE);
}

#[test]
fn the_driver_owns_its_own_name() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    assert_eq!(owner(&mut a, BUS).as_deref(), Some(BUS));
    assert_eq!(queue(&mut a, BUS), [BUS]);
    assert_eq!(
        a.bus_ok("NameHasOwner", vec![Value::str(BUS)]),
        [Value::Bool(true)]
    );
    // A unique name owns itself.
    let me = a.unique_name.clone();
    assert_eq!(owner(&mut a, &me).as_deref(), Some(me.as_str()));
    assert_eq!(queue(&mut a, &me), std::slice::from_ref(&me));
    assert_eq!(owner(&mut a, ":1.9999"), None);
}

#[test]
fn list_names_follows_ownership() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let b = bus.raw();
    let list = |c: &mut RawClient| {
        let mut v = c.bus_ok("ListNames", vec![])[0]
            .as_str_vec()
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut expected = vec![BUS.to_owned(), a.unique_name.clone(), b.unique_name.clone()];
    expected.sort();
    assert_eq!(list(&mut a), expected);
    assert_eq!(a.request_name(N, 0), PRIMARY_OWNER);
    expected.push(N.to_owned());
    expected.sort();
    assert_eq!(list(&mut a), expected);
    let b_name = b.unique_name.clone();
    let mut watch = listener(&bus);
    b.disconnect();
    watch.wait_for(|m| m.is_bus_signal("NameOwnerChanged") && m.str_arg(0) == Some(&b_name));
    expected.retain(|n| *n != b_name);
    expected.push(watch.unique_name.clone());
    expected.sort();
    assert_eq!(list(&mut a), expected);
    assert_eq!(a.release_name(N), RELEASED);
    let names = list(&mut a);
    assert!(!names.contains(&N.to_owned()), "{names:?}");
}

#[test]
fn python_and_zbus_clients_own_names() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    a.add_match("type='signal',member='NameOwnerChanged',arg0='com.example.Py'");
    let out = bus.python(
        "print(bus.request_name('com.example.Py', dbus.bus.NAME_FLAG_DO_NOT_QUEUE))\n\
         print(bus.get_name_owner('com.example.Py') == bus.get_unique_name())\n\
         print(bus.release_name('com.example.Py'))\n\
         print(bus.release_name('com.example.Py'))",
    );
    assert_eq!(out.ok(), "1\nTrue\n1\n2\n");
    let got: Vec<Msg> = a.sync();
    assert_eq!(got.len(), 2, "acquired and released: {got:#?}");

    let z = bus.zbus();
    let reply = run({
        let z = z.clone();
        async move {
            z.request_name_with_flags("com.example.Z", zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
                .await
        }
    });
    assert!(
        matches!(reply, Ok(zbus::fdo::RequestNameReply::PrimaryOwner)),
        "zbus RequestName: {reply:?}"
    );
    let unique = z.unique_name().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        owner(&mut a, "com.example.Z").as_deref(),
        Some(unique.as_str())
    );
    assert_eq!(a.request_name("com.example.Z", DO_NOT_QUEUE), EXISTS);
}
