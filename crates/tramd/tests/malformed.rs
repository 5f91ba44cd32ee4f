//! Hostile and broken input: malformed messages disconnect their sender and nobody else, messages
//! before Hello are refused as dbus-daemon refuses them, and a whole handshake plus Hello in one
//! write works.

mod common;

use common::value::encode_body;
use common::*;

const IFACE: &str = "com.example.Test";

/// A valid call to `dest`, the starting point of most corruptions.
fn good_call(dest: &str) -> RawMessage {
    RawMessage::call(Some(dest), "/com/example", Some(IFACE), "Method")
}

fn le_u32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Makes a message's bytes given the destination's name and the serial.
type Make = Box<dyn Fn(&str, u32) -> Vec<u8>>;

/// One malformed message: a name and how to make it.
type Case = (&'static str, Make);

fn corpus() -> Vec<Case> {
    fn patched(f: impl Fn(&mut Vec<u8>) + 'static) -> Make {
        Box::new(move |dest, serial| {
            let mut bytes = good_call(dest).args(vec![Value::str("x")]).encode(serial);
            f(&mut bytes);
            bytes
        })
    }
    fn built(f: impl Fn(&str) -> RawMessage + 'static) -> Make {
        Box::new(move |dest, serial| f(dest).encode(serial))
    }
    fn with_body(sig: &'static str, body: Vec<u8>) -> Make {
        built(move |dest| {
            let mut m = good_call(dest).field(field::SIGNATURE, Value::Sig(sig.to_owned()));
            m.raw_body = Some(body.clone());
            m
        })
    }
    let nested = |open: &str, close: &str, depth: usize| {
        format!("{}y{}", open.repeat(depth), close.repeat(depth))
    };
    let too_deep_structs = nested("(", ")", 33);
    let too_deep_arrays = nested("a", "", 33);
    vec![
        ("bad endianness byte", patched(|b| b[0] = b'X')),
        ("protocol version 2", patched(|b| b[3] = 2)),
        ("message type 0", patched(|b| b[1] = 0)),
        (
            "serial 0",
            built(|d| {
                let mut m = good_call(d);
                m.serial = Some(0);
                m
            }),
        ),
        (
            "call without MEMBER",
            built(|d| good_call(d).without_field(field::MEMBER)),
        ),
        (
            "call without PATH",
            built(|d| good_call(d).without_field(field::PATH)),
        ),
        (
            "signal without INTERFACE",
            built(|_| RawMessage::signal("/a", IFACE, "S").without_field(field::INTERFACE)),
        ),
        (
            "return without REPLY_SERIAL",
            built(|d| RawMessage::method_return(d, 1).without_field(field::REPLY_SERIAL)),
        ),
        (
            "error without ERROR_NAME",
            built(|d| RawMessage::error(d, 1, "a.b.C").without_field(field::ERROR_NAME)),
        ),
        ("incomplete signature", with_body("a", vec![])),
        ("unbalanced signature", with_body("(u", vec![0; 8])),
        (
            "dict entry outside an array",
            with_body("{sv}", vec![0; 16]),
        ),
        ("structs nested 33 deep", {
            let sig = too_deep_structs;
            built(move |d| {
                let mut m = good_call(d).field(field::SIGNATURE, Value::Sig(sig.clone()));
                m.raw_body = Some(vec![0; 8]);
                m
            })
        }),
        ("arrays nested 33 deep", {
            let sig = too_deep_arrays;
            built(move |d| {
                let mut m = good_call(d).field(field::SIGNATURE, Value::Sig(sig.clone()));
                m.raw_body = Some(vec![0; 4]);
                m
            })
        }),
        (
            "body shorter than its signature",
            with_body("u", vec![1, 0]),
        ),
        (
            "body longer than its signature",
            with_body("u", vec![1, 0, 0, 0, 2, 0, 0, 0]),
        ),
        (
            "body without SIGNATURE",
            built(|d| {
                let mut m = good_call(d);
                m.raw_body = Some(vec![1, 0, 0, 0]);
                m
            }),
        ),
        (
            "non-zero body padding",
            with_body("yu", vec![1, 0xff, 0, 0, 5, 0, 0, 0]),
        ),
        (
            "non-zero header padding",
            Box::new(|dest, serial| {
                // Find a member name that leaves padding after the header fields.
                for len in 1..8 {
                    let member = "M".repeat(len);
                    let mut b =
                        RawMessage::call(Some(dest), "/a", Some(IFACE), &member).encode(serial);
                    let fields_end = 16 + u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
                    if fields_end % 8 != 0 {
                        b[fields_end] = 1;
                        return b;
                    }
                }
                unreachable!("some member length leaves header padding")
            }),
        ),
        (
            "invalid UTF-8 in a string",
            with_body("s", [&le_u32(2)[..], &[0xff, 0xfe, 0]].concat()),
        ),
        (
            "string without its NUL",
            with_body("s", [&le_u32(2)[..], b"abc"].concat()),
        ),
        (
            "NUL inside a string",
            with_body("s", [&le_u32(3)[..], b"a\0b\0"].concat()),
        ),
        ("boolean 2", with_body("b", le_u32(2).to_vec())),
        (
            "array length past the body",
            with_body("ay", [&le_u32(100)[..], &[1, 2, 3, 4]].concat()),
        ),
        (
            "variant with a bad signature",
            with_body("v", vec![1, b'a', 0, 0]),
        ),
        (
            "declared length over 128 MiB",
            Box::new(|dest, serial| {
                let mut b = good_call(dest).encode(serial);
                b[4..8].copy_from_slice(&le_u32((128 << 20) + 1));
                b
            }),
        ),
        (
            "PATH ending in a slash",
            built(|d| {
                good_call(d)
                    .without_field(field::PATH)
                    .field(field::PATH, Value::path("/a/"))
            }),
        ),
        (
            "PATH with the wrong type",
            built(|d| {
                good_call(d)
                    .without_field(field::PATH)
                    .field(field::PATH, Value::str("/a"))
            }),
        ),
        (
            "MEMBER starting with a digit",
            built(|d| RawMessage::call(Some(d), "/a", Some(IFACE), "1abc")),
        ),
        (
            "INTERFACE without a dot",
            built(|d| RawMessage::call(Some(d), "/a", Some("nodots"), "M")),
        ),
        (
            "DESTINATION not a bus name",
            built(|_| RawMessage::call(Some("bad..name"), "/a", Some(IFACE), "M")),
        ),
        (
            "UNIX_FDS with the wrong type",
            built(|d| good_call(d).field(field::UNIX_FDS, Value::str("1"))),
        ),
    ]
}

#[test]
fn each_malformed_message_disconnects_only_its_sender() {
    let bus = TestBus::start();
    let mut bystander = bus.raw();
    let bn = bystander.unique_name.clone();
    let svc = Service::spawn(&bus, Some("com.example.Survivor"));
    let cases = corpus();
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for (name, make) in &cases {
        let mut bad = bus.raw();
        let serial = bad.next_serial();
        let _ = bad.try_write_all(&make(&bn, serial));
        // A call after the bad message: if the bus answers it, it kept the connection.
        let probe = bad.next_serial();
        let _ = bad.try_write_all(&RawMessage::bus_call("GetId", vec![]).encode(probe));
        if let Err(what) = bad.wait_closed(Some(probe)) {
            failures.push(format!("{name}: {what}"));
        }
        // The bystander saw nothing of it and is still served.
        let bad_name = bad.unique_name.clone();
        let leaked: Vec<String> = bystander
            .sync()
            .iter()
            .filter(|m| m.sender.as_deref() == Some(&bad_name))
            .map(Msg::describe)
            .collect();
        if !leaked.is_empty() {
            failures.push(format!("{name}: forwarded to the bystander: {leaked:#?}"));
        }
        let reply = bystander.call(
            RawMessage::call(Some("com.example.Survivor"), "/", Some(IFACE), "Echo")
                .args(vec![Value::str(name)]),
        );
        assert_eq!(reply.ok(), [Value::str(name)], "after {name}");
    }
    assert!(svc.calls().len() == cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} malformed messages were mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_valid_variant_of_each_corruption_is_accepted() {
    // The corpus is only meaningful if the uncorrupted messages pass: check the base forms.
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let bodies: Vec<(&str, Vec<Value>)> = vec![
        ("s", vec![Value::str("x")]),
        ("yu", vec![Value::Byte(1), Value::U32(5)]),
        ("b", vec![Value::Bool(true)]),
        ("ay", vec![Value::Bytes(vec![1, 2, 3, 4])]),
        ("v", vec![Value::variant(Value::str_array(&["a"]))]),
        ("a{sv}", vec![Value::dict_sv(vec![("k", Value::U32(1))])]),
        (
            "deep",
            vec![(0..32).fold(Value::Byte(1), |v, _| Value::Struct(vec![v]))],
        ),
        (
            "deep arrays",
            vec![(0..31).fold(Value::Bytes(vec![1]), |v, _| {
                let sig = v.signature();
                Value::Array(sig, vec![v])
            })],
        ),
    ];
    for (name, body) in bodies {
        let serial = a.send(&good_call(&bn).args(body.clone()));
        let got = b.wait_for(|m| m.mtype == METHOD_CALL);
        assert_eq!(got.serial, serial, "{name}");
        assert_eq!(got.body, body, "{name}");
    }
    let raw = encode_body(&[Value::str("x")], false);
    assert_eq!(raw, [&le_u32(1)[..], b"x\0"].concat());
}

#[test]
fn unknown_header_fields_are_dropped_and_unknown_types_ignored() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let serial = a.send(&good_call(&bn).field(42, Value::str("extra")));
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!(got.serial, serial);
    assert!(
        !got.field_codes.contains(&42),
        "unknown field forwarded: {:?}",
        got.field_codes
    );
    // A message of an unknown type is valid and ignored: not forwarded, not fatal.
    let mut odd = good_call(&bn);
    odd.mtype = 5;
    a.send(&odd);
    a.bus_ok("GetId", vec![]);
    let seen = b.sync();
    assert!(seen.iter().all(|m| m.mtype != 5), "{seen:#?}");
}

#[test]
fn driver_calls_before_hello_are_refused_and_the_connection_kept() {
    let bus = TestBus::start();
    let mut c = bus.raw_unauthenticated();
    c.authenticate(true);
    let reply = c.call(RawMessage::bus_call("GetId", vec![]));
    reply.expect_error(err::ACCESS_DENIED);
    let reply = c.call(RawMessage::call(
        Some(BUS),
        "/",
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
    ));
    reply.expect_error(err::ACCESS_DENIED);
    // Hello still works afterwards.
    c.hello();
    c.bus_ok("GetId", vec![]);
}

#[test]
fn anything_else_before_hello_disconnects() {
    let bus = TestBus::start();
    let mut target = bus.raw();
    let tn = target.unique_name.clone();
    let messages = [
        (
            "a call to a peer",
            RawMessage::call(Some(&tn), "/a", Some(IFACE), "M"),
        ),
        ("a broadcast signal", RawMessage::signal("/a", IFACE, "S")),
        (
            "a unicast signal",
            RawMessage::signal("/a", IFACE, "S").destination(&tn),
        ),
    ];
    target.add_match("type='signal'");
    for (what, m) in &messages {
        let mut c = bus.raw_unauthenticated();
        c.authenticate(true);
        c.send(m);
        let probe = c.next_serial();
        let _ = c.try_write_all(&RawMessage::bus_call("Hello", vec![]).encode(probe));
        if let Err(e) = c.wait_closed(Some(probe)) {
            panic!("{what} before Hello: {e}");
        }
    }
    let seen: Vec<String> = target
        .sync()
        .iter()
        .filter(|m| m.sender.as_deref() != Some(BUS))
        .map(Msg::describe)
        .collect();
    assert!(
        seen.is_empty(),
        "delivered from unregistered peers: {seen:#?}"
    );
}

#[test]
fn handshake_hello_and_a_call_in_one_write() {
    let bus = TestBus::start();
    let mut c = bus.raw_unauthenticated();
    let mut bytes = RawClient::auth_line().into_bytes();
    bytes.extend(b"NEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
    bytes.extend(RawMessage::bus_call("Hello", vec![]).encode(1));
    bytes.extend(RawMessage::bus_call("GetId", vec![]).encode(2));
    c.write_all(&bytes);
    let ok = c.read_line();
    assert!(ok.starts_with("OK ") && ok.len() == 35, "{ok:?}");
    assert_eq!(c.read_line(), "AGREE_UNIX_FD");
    let hello = c.recv();
    assert!(
        hello.is_return() && hello.reply_serial == Some(1),
        "{}",
        hello.describe()
    );
    let name = hello.str_arg(0).unwrap_or_default().to_owned();
    let acquired = c.recv();
    assert!(
        acquired.is_bus_signal("NameAcquired"),
        "{}",
        acquired.describe()
    );
    assert_eq!(acquired.str_arg(0), Some(name.as_str()));
    let id = c.recv();
    assert!(
        id.is_return() && id.reply_serial == Some(2),
        "{}",
        id.describe()
    );
}

#[test]
fn handshake_byte_by_byte() {
    let bus = TestBus::start();
    let mut c = bus.raw_unauthenticated();
    let mut bytes = RawClient::auth_line().into_bytes();
    bytes.extend(b"BEGIN\r\n");
    bytes.extend(RawMessage::bus_call("Hello", vec![]).encode(1));
    for b in &bytes[..bytes.len() - 1] {
        c.write_all(std::slice::from_ref(b));
    }
    let ok = c.read_line();
    assert!(ok.starts_with("OK "), "{ok:?}");
    c.write_all(&bytes[bytes.len() - 1..]);
    let hello = c.recv();
    assert!(
        hello.is_return() && hello.reply_serial == Some(1),
        "{}",
        hello.describe()
    );
}

#[test]
fn sasl_rejects_a_wrong_identity_and_unknown_commands() {
    let bus = TestBus::start();
    let mut c = bus.raw_unauthenticated();
    let wrong_uid = (rustix::process::getuid().as_raw() + 4242).to_string();
    let hex: String = wrong_uid.bytes().map(|b| format!("{b:02x}")).collect();
    c.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes());
    let answer = c.read_line();
    assert!(answer.starts_with("REJECTED"), "{answer:?}");
    assert!(answer.split(' ').any(|m| m == "EXTERNAL"), "{answer:?}");
    c.write_all(b"FROBNICATE\r\n");
    let answer = c.read_line();
    assert!(answer.starts_with("ERROR"), "{answer:?}");
    // A correct retry on the same connection succeeds.
    let right = RawClient::auth_line();
    c.write_all(&right.as_bytes()[1..]);
    let answer = c.read_line();
    assert!(answer.starts_with("OK "), "{answer:?}");
    c.write_all(b"BEGIN\r\n");
    c.hello();
}

#[test]
fn a_connection_closed_mid_message_leaves_the_bus_working() {
    let bus = TestBus::start();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let mut c = bus.raw();
    let bytes = good_call(&bn)
        .args(vec![Value::Bytes(vec![7; 4096])])
        .encode(99);
    c.write_all(&bytes[..bytes.len() / 2]);
    c.disconnect();
    let mut d = bus.raw();
    let serial = d.send(&good_call(&bn));
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!(got.serial, serial, "{}", got.describe());
    b.send(&RawMessage::reply_to(&got, None));
    assert!(d.wait_reply(serial).is_return());
}
