//! The bus driver's own interfaces: Introspectable, Peer, Properties, and the
//! org.freedesktop.DBus methods not covered by the names and credentials tests, with their
//! error replies.

mod common;

use common::*;

const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
const PEER: &str = "org.freedesktop.DBus.Peer";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

fn driver(path: &str, interface: Option<&str>, member: &str, args: Vec<Value>) -> RawMessage {
    RawMessage::call(Some(BUS), path, interface, member).args(args)
}

/// Parses introspection XML with python's ElementTree (an independent parser) and lists, one per
/// line, `interface NAME`, `method IFACE.NAME(in)(out)`, `property IFACE.NAME TYPE ACCESS`,
/// `signal IFACE.NAME` and `node NAME`.
fn introspection_outline(xml: &str) -> Vec<String> {
    let script = r#"
import os, xml.etree.ElementTree as ET
root = ET.fromstring(os.environ['XML'])
assert root.tag == 'node', root.tag
for i in root.findall('interface'):
    n = i.get('name')
    print('interface', n)
    for m in i.findall('method'):
        ins = ''.join(a.get('type') for a in m.findall('arg') if a.get('direction', 'in') == 'in')
        outs = ''.join(a.get('type') for a in m.findall('arg') if a.get('direction') == 'out')
        print('method %s.%s(%s)(%s)' % (n, m.get('name'), ins, outs))
    for p in i.findall('property'):
        print('property %s.%s %s %s' % (n, p.get('name'), p.get('type'), p.get('access')))
    for s in i.findall('signal'):
        print('signal %s.%s(%s)' % (n, s.get('name'), ''.join(a.get('type') for a in s.findall('arg'))))
for c in root.findall('node'):
    print('node', c.get('name'))
"#;
    let out = run_tool(PYTHON, &["-c", script], &[("XML", xml.to_owned())]);
    out.ok().lines().map(str::to_owned).collect()
}

fn introspect(c: &mut RawClient, path: &str) -> Vec<String> {
    let reply = c.call(driver(path, Some(INTROSPECTABLE), "Introspect", vec![]));
    let body = reply.ok();
    assert_eq!(body.len(), 1);
    let xml = body[0].as_str().unwrap_or_default();
    assert!(xml.starts_with("<!DOCTYPE node PUBLIC"), "{xml}");
    introspection_outline(xml)
}

const DBUS_METHODS: &[&str] = &[
    "Hello()(s)",
    "RequestName(su)(u)",
    "ReleaseName(s)(u)",
    "StartServiceByName(su)(u)",
    "UpdateActivationEnvironment(a{ss})()",
    "NameHasOwner(s)(b)",
    "ListNames()(as)",
    "ListActivatableNames()(as)",
    "AddMatch(s)()",
    "RemoveMatch(s)()",
    "GetNameOwner(s)(s)",
    "ListQueuedOwners(s)(as)",
    "GetConnectionUnixUser(s)(u)",
    "GetConnectionUnixProcessID(s)(u)",
    "GetAdtAuditSessionData(s)(ay)",
    "GetConnectionSELinuxSecurityContext(s)(ay)",
    "ReloadConfig()()",
    "GetId()(s)",
    "GetConnectionCredentials(s)(a{sv})",
];

#[test]
fn introspection_of_the_driver_object() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let outline = introspect(&mut a, BUS_PATH);
    let has = |line: &str| outline.iter().any(|l| l == line);
    for iface in [BUS, INTROSPECTABLE, PEER, PROPERTIES] {
        assert!(
            has(&format!("interface {iface}")),
            "{iface} missing from {outline:#?}"
        );
    }
    for m in DBUS_METHODS {
        assert!(
            has(&format!("method {BUS}.{m}")),
            "{m} missing from {outline:#?}"
        );
    }
    for line in [
        "method org.freedesktop.DBus.Introspectable.Introspect()(s)",
        "method org.freedesktop.DBus.Peer.Ping()()",
        "method org.freedesktop.DBus.Peer.GetMachineId()(s)",
        "method org.freedesktop.DBus.Properties.Get(ss)(v)",
        "method org.freedesktop.DBus.Properties.GetAll(s)(a{sv})",
        "method org.freedesktop.DBus.Properties.Set(ssv)()",
        "property org.freedesktop.DBus.Features as read",
        "property org.freedesktop.DBus.Interfaces as read",
        "signal org.freedesktop.DBus.NameOwnerChanged(sss)",
        "signal org.freedesktop.DBus.NameLost(s)",
        "signal org.freedesktop.DBus.NameAcquired(s)",
    ] {
        assert!(has(line), "{line} missing from {outline:#?}");
    }
    // Every extra interface the bus advertises is described.
    let body = a.call(driver(
        BUS_PATH,
        Some(PROPERTIES),
        "Get",
        vec![Value::str(BUS), Value::str("Interfaces")],
    ));
    let body = body.ok();
    for iface in body[0].unvariant().as_str_vec().unwrap_or_default() {
        assert!(
            has(&format!("interface {iface}")),
            "{iface} is not introspectable"
        );
    }
}

#[test]
fn introspection_of_the_root_lists_the_driver() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let outline = introspect(&mut a, "/");
    for line in [
        "interface org.freedesktop.DBus",
        "interface org.freedesktop.DBus.Introspectable",
        "interface org.freedesktop.DBus.Peer",
        "node org/freedesktop/DBus",
    ] {
        assert!(
            outline.iter().any(|l| l == line),
            "{line} missing from {outline:#?}"
        );
    }
}

#[test]
fn peer_interface() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    for path in ["/", BUS_PATH] {
        let reply = a.call(driver(path, Some(PEER), "Ping", vec![]));
        assert_eq!(reply.ok(), []);
    }
    let reply = a.call(driver("/", Some(PEER), "GetMachineId", vec![]));
    let id = reply.ok()[0].as_str().unwrap_or_default().to_owned();
    let expected = ["/var/lib/dbus/machine-id", "/etc/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned());
    assert_eq!(Some(id), expected);
    a.call(driver("/", Some(PEER), "Ping", vec![Value::U32(1)]))
        .expect_error(err::INVALID_ARGS);
}

#[test]
fn properties_of_the_bus() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let get = |a: &mut RawClient, prop: &str| {
        a.call(driver(
            BUS_PATH,
            Some(PROPERTIES),
            "Get",
            vec![Value::str(BUS), Value::str(prop)],
        ))
    };
    let features = get(&mut a, "Features");
    assert_eq!(features.signature, "v");
    let features = features.ok().remove(0);
    assert_eq!(features.unvariant().signature(), "as", "{features}");
    let interfaces = get(&mut a, "Interfaces").ok().remove(0);
    assert_eq!(interfaces.unvariant().signature(), "as", "{interfaces}");

    let all = a.call(driver(
        BUS_PATH,
        Some(PROPERTIES),
        "GetAll",
        vec![Value::str(BUS)],
    ));
    assert_eq!(all.signature, "a{sv}");
    let all = all.ok().remove(0);
    assert_eq!(
        all.dict_get("Features"),
        Some(features.unvariant()),
        "{all}"
    );
    assert_eq!(
        all.dict_get("Interfaces"),
        Some(interfaces.unvariant()),
        "{all}"
    );

    get(&mut a, "Bogus").expect_error(err::UNKNOWN_PROPERTY);
    a.call(driver(
        BUS_PATH,
        Some(PROPERTIES),
        "Get",
        vec![Value::str("a.b"), Value::str("X")],
    ))
    .expect_error(err::UNKNOWN_INTERFACE);
    a.call(driver(
        BUS_PATH,
        Some(PROPERTIES),
        "GetAll",
        vec![Value::str("a.b")],
    ))
    .expect_error(err::UNKNOWN_INTERFACE);
    a.call(driver(
        BUS_PATH,
        Some(PROPERTIES),
        "Get",
        vec![Value::str(BUS)],
    ))
    .expect_error(err::INVALID_ARGS);
    let set = |prop: &str| {
        let v = Value::variant(Value::str_array(&[]));
        driver(
            BUS_PATH,
            Some(PROPERTIES),
            "Set",
            vec![Value::str(BUS), Value::str(prop), v],
        )
    };
    a.call(set("Features"))
        .expect_error(err::PROPERTY_READ_ONLY);
    a.call(set("Bogus")).expect_error(err::UNKNOWN_PROPERTY);
    // Nothing changed.
    assert_eq!(get(&mut a, "Features").ok().remove(0), features);
}

#[test]
fn get_id_is_stable_hex() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let id = a.bus_ok("GetId", vec![]);
    let id = id[0].as_str().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "{id}"
    );
    assert_eq!(b.bus_ok("GetId", vec![]), [Value::str(&id)]);
    // The server GUID in the address and the SASL OK is hex too, and the same for everyone.
    assert!(
        bus.address().ends_with(&format!(",guid={}", a.guid)),
        "{}",
        bus.address()
    );
    assert_eq!(a.guid, b.guid);
}

#[test]
fn driver_methods_answer_on_any_path_and_without_interface() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let id = a.bus_ok("GetId", vec![]);
    for path in ["/", "/x/y", BUS_PATH] {
        assert_eq!(
            a.call(driver(path, Some(BUS), "GetId", vec![])).ok(),
            id,
            "{path}"
        );
    }
    assert_eq!(a.call(driver(BUS_PATH, None, "GetId", vec![])).ok(), id);
    assert_eq!(a.call(driver(BUS_PATH, None, "Ping", vec![])).ok(), []);
    // Properties only live on the driver's own path.
    let get = vec![Value::str(BUS), Value::str("Features")];
    a.call(driver("/", Some(PROPERTIES), "Get", get))
        .expect_error(err::UNKNOWN_INTERFACE);
}

#[test]
fn unknown_methods_interfaces_and_wrong_arguments() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    a.call(driver(BUS_PATH, Some(BUS), "Frobnicate", vec![]))
        .expect_error(err::UNKNOWN_METHOD);
    a.call(driver(BUS_PATH, None, "Frobnicate", vec![]))
        .expect_error(err::UNKNOWN_METHOD);
    a.call(driver(BUS_PATH, Some("com.example.Nope"), "GetId", vec![]))
        .expect_error(err::UNKNOWN_INTERFACE);
    let wrong: Vec<(&str, Vec<Value>)> = vec![
        ("GetId", vec![Value::U32(1)]),
        ("RequestName", vec![Value::str("a.b")]),
        ("RequestName", vec![Value::U32(1), Value::str("a.b")]),
        ("ReleaseName", vec![]),
        ("GetNameOwner", vec![Value::path("/a")]),
        ("NameHasOwner", vec![Value::str("a.b"), Value::str("c.d")]),
        ("ListNames", vec![Value::Bool(true)]),
        ("StartServiceByName", vec![Value::str("a.b")]),
        ("UpdateActivationEnvironment", vec![Value::str("X=1")]),
        ("GetConnectionCredentials", vec![Value::U32(7)]),
    ];
    for (member, args) in wrong {
        let reply = a.call(driver(BUS_PATH, Some(BUS), member, args));
        assert!(
            reply.is_error(err::INVALID_ARGS),
            "{member}: {}",
            reply.describe()
        );
    }
    a.call(driver(
        BUS_PATH,
        Some(INTROSPECTABLE),
        "Introspect",
        vec![Value::U32(1)],
    ))
    .expect_error(err::INVALID_ARGS);
    // A second Hello is refused.
    a.call_bus("Hello", vec![]).expect_error(err::FAILED);
}

#[test]
fn list_names_and_activatable_names() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let names = a.bus_ok("ListNames", vec![]);
    let names = names[0].as_str_vec().unwrap_or_default();
    assert!(
        names.contains(&BUS.to_owned()) && names.contains(&a.unique_name),
        "{names:?}"
    );
    let act = a.bus_ok("ListActivatableNames", vec![]);
    assert_eq!(act[0].signature(), "as");
    let act = act[0].as_str_vec().unwrap_or_default();
    assert!(act.contains(&BUS.to_owned()), "{act:?}");
    assert!(!act.contains(&a.unique_name), "{act:?}");
    assert_eq!(
        a.bus_ok("NameHasOwner", vec![Value::str(BUS)]),
        [Value::Bool(true)]
    );
    let me = a.unique_name.clone();
    assert_eq!(
        a.bus_ok("NameHasOwner", vec![Value::str(&me)]),
        [Value::Bool(true)]
    );
    let none = vec![Value::str("com.example.Nobody")];
    assert_eq!(a.bus_ok("NameHasOwner", none), [Value::Bool(false)]);
    assert_eq!(
        a.bus_ok("NameHasOwner", vec![Value::str("bad..name")]),
        [Value::Bool(false)]
    );
}

#[test]
fn start_service_by_name_without_a_service_file() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let me = a.unique_name.clone();
    for name in ["com.example.NoSuchService", BUS, me.as_str(), "bad..name"] {
        let reply = a.call_bus("StartServiceByName", vec![Value::str(name), Value::U32(0)]);
        reply.expect_error(err::SERVICE_UNKNOWN);
    }
}

#[test]
fn update_activation_environment_and_reload_config() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let env = Value::Array(
        "{ss}".into(),
        vec![Value::Entry(
            Box::new(Value::str("TRAM_TEST")),
            Box::new(Value::str("1")),
        )],
    );
    assert_eq!(a.bus_ok("UpdateActivationEnvironment", vec![env]), []);
    assert_eq!(a.bus_ok("ReloadConfig", vec![]), []);
    // Still alive and answering.
    assert_eq!(a.call(driver("/", Some(PEER), "Ping", vec![])).ok(), []);
}

#[test]
fn driver_calls_without_reply_still_take_effect() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    a.send(
        &RawMessage::bus_call(
            "RequestName",
            vec![Value::str("com.example.Quiet"), Value::U32(0)],
        )
        .flags(NO_REPLY_EXPECTED),
    );
    let owner = a.bus_ok("GetNameOwner", vec![Value::str("com.example.Quiet")]);
    assert_eq!(owner, [Value::str(&a.unique_name)]);
}

#[test]
fn gdbus_introspects_the_bus() {
    let bus = TestBus::start();
    let out = bus.gdbus("introspect", &["--dest", BUS, "--object-path", BUS_PATH]);
    let text = out.ok();
    for needle in [
        "interface org.freedesktop.DBus {",
        "RequestName(",
        "GetConnectionCredentials(",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
}
