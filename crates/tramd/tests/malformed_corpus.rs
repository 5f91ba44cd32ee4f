//! A corpus of malformed messages, each of which must disconnect its sender and nobody else.
//!
//! Every row runs on dbus-daemon and on the bus under test (`TRAM_TEST_BUS`, tramd by default),
//! from a fresh connection that has said Hello and negotiated fd passing, followed by a call
//! to the bus driver: an answer to that call means the bus kept the connection. A row counts
//! when dbus-daemon disconnects too; a row where dbus-daemon tolerates what tramd refuses is a
//! documented difference (`Row::differs`), and the test fails if the reference stops
//! tolerating it, so the table stays true. After each row a bystander must still be served by a
//! service on the bus and must have received nothing from the malformed sender.
//!
//! The rows cover the fixed header, every header field with the wrong type, duplicated and
//! missing fields for each message type, bad names of each kind, bad signatures, nesting beyond
//! the limits, oversized declared lengths, invalid values (booleans, UTF-8, NUL bytes, paths,
//! signatures, variants), non-zero padding in the header and the body, truncated and overlong
//! bodies, fd counts that do not match, in both byte orders where the byte order matters.
//! (More fds than a message declares are not malformed: on both buses they wait in the
//! connection's fd queue for the messages that follow, bounded by `pending_fd_timeout`.)

mod common;

use std::fs::File;
use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use common::daemon::{Daemon, EchoService, Launch, open_config};
use common::value::Enc;
use common::*;

const IFACE: &str = "com.example.Test";
const SURVIVOR: &str = "com.example.Survivor";

#[test]
fn each_malformed_message_disconnects_only_its_sender() {
    let rows = corpus();
    assert!(rows.len() >= 50, "only {} rows", rows.len());
    let kind = BusKind::from_env();
    let reference = run_corpus(BusKind::DbusDaemon, &rows);
    let tested = if kind == BusKind::DbusDaemon {
        reference.clone()
    } else {
        run_corpus(kind, &rows)
    };
    let mut failures = Vec::new();
    let mut counted = 0;
    println!("{:<58} {:<13} {kind:?}", "row", "dbus-daemon");
    for ((row, reference), tested) in rows.iter().zip(&reference).zip(&tested) {
        let why = row
            .difference
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        println!(
            "{:<58} {:<13} {tested}{why}",
            row.name,
            reference.to_string()
        );
        match (row.difference, reference) {
            (None, Outcome::Disconnected) => counted += 1,
            (None, other) => failures.push(format!(
                "{}: dbus-daemon {other:?}; mark the row as a difference or fix it",
                row.name
            )),
            (Some(_), Outcome::Disconnected) => failures.push(format!(
                "{}: marked as a difference, but dbus-daemon disconnects too",
                row.name
            )),
            (Some(_), _) => {}
        }
        let must_disconnect = kind == BusKind::Tramd || row.difference.is_none();
        if must_disconnect && *tested != Outcome::Disconnected {
            failures.push(format!("{}: {kind:?} {tested:?}", row.name));
        }
    }
    println!(
        "{counted} of {} rows disconnect on both buses; {} documented differences",
        rows.len(),
        rows.iter().filter(|r| r.difference.is_some()).count()
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert!(counted >= 50, "only {counted} rows count");
}

#[test]
fn the_uncorrupted_forms_are_accepted() {
    // The corpus means something only if the messages it corrupts pass when left alone.
    let bus = Launch::new(BusKind::from_env())
        .config(&open_config(""))
        .start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let devnull = File::open("/dev/null").unwrap_or_else(|e| panic!("/dev/null: {e}"));
    let forms: Vec<(&str, RawMessage)> = vec![
        ("the base call", good_call(&bn)),
        ("a string", good_call(&bn).args(vec![Value::str("x")])),
        (
            "big-endian",
            RawMessage {
                big_endian: true,
                ..good_call(&bn).args(vec![Value::str("x"), Value::Bool(true)])
            },
        ),
        (
            "y then u",
            good_call(&bn).args(vec![Value::Byte(1), Value::U32(5)]),
        ),
        (
            "an array of t",
            good_call(&bn).args(vec![Value::Array("t".into(), vec![Value::U64(1)])]),
        ),
        (
            "variants 64 deep",
            good_call(&bn).args(vec![(0..63).fold(Value::Byte(7), |v, _| Value::variant(v))]),
        ),
        (
            "structs 32 deep",
            good_call(&bn).args(vec![
                (0..32).fold(Value::Byte(1), |v, _| Value::Struct(vec![v])),
            ]),
        ),
    ];
    for (name, msg) in forms {
        let serial = a.send(&msg);
        let got = b.wait_for(|m| m.mtype == METHOD_CALL);
        assert_eq!(got.serial, serial, "{name}");
        assert_eq!(got.body, msg.body, "{name}");
    }
    let serial = a.send_with_fds(
        &good_call(&bn).args(vec![Value::Fd(0)]).unix_fds(1),
        &[devnull.as_fd()],
    );
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!((got.serial, got.fds.len()), (serial, 1));
}

/// What became of the sender of a row's message.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// The bus closed the connection.
    Disconnected,
    /// The bus kept it and answered the call that followed.
    Kept,
    /// The bus neither closed it nor answered within the deadline (it may be waiting for more
    /// bytes or fds).
    Stalled,
    /// A bystander received something from the sender.
    Leaked(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Disconnected => f.write_str("disconnected"),
            Outcome::Kept => f.write_str("kept"),
            Outcome::Stalled => f.write_str("stalled"),
            Outcome::Leaked(_) => f.write_str("forwarded"),
        }
    }
}

/// Runs every row on a fresh bus of `kind`.
fn run_corpus(kind: BusKind, rows: &[Row]) -> Vec<Outcome> {
    let bus = Launch::new(kind).config(&open_config("")).start();
    let _service = EchoService::spawn(&bus, Some(SURVIVOR));
    let mut bystander = bus.raw();
    bystander.add_match("type='signal'");
    let bn = bystander.unique_name.clone();
    let devnull = File::open("/dev/null").unwrap_or_else(|e| panic!("/dev/null: {e}"));
    rows.iter()
        .map(|row| {
            let outcome = run_row(&bus, row, &bn, &devnull);
            // The bystander saw nothing of it and is still served.
            let leaked: Vec<String> = bystander
                .sync()
                .iter()
                .filter(|m| m.sender.as_deref() != Some(BUS))
                .map(Msg::describe)
                .collect();
            let reply = bystander.call(
                RawMessage::call(Some(SURVIVOR), "/", Some(IFACE), "Echo")
                    .args(vec![Value::str(row.name)]),
            );
            assert_eq!(
                reply.ok(),
                [Value::str(row.name)],
                "{kind:?}: the bystander is not served after {}; stderr:\n{}",
                row.name,
                bus.stderr()
            );
            if leaked.is_empty() {
                outcome
            } else {
                Outcome::Leaked(leaked.join("; "))
            }
        })
        .collect()
}

/// Sends one row's message from a new connection and tells what the bus did with the sender.
fn run_row(bus: &Daemon, row: &Row, dest: &str, devnull: &File) -> Outcome {
    let mut bad = bus.raw();
    let serial = bad.next_serial();
    let bytes = (row.make)(dest, serial);
    let fds: Vec<_> = (0..row.fds).map(|_| devnull.as_fd()).collect();
    let sent = if fds.is_empty() {
        bad.try_write_all(&bytes)
    } else {
        send_with_fds(&bad, &bytes, &fds)
    };
    if sent.is_err() {
        // The bus closed the connection before taking all of it.
        return Outcome::Disconnected;
    }
    let probe = bad.next_serial();
    let _ = bad.try_write_all(&RawMessage::bus_call("GetId", vec![]).encode(probe));
    match bad.wait_closed(Some(probe)) {
        Ok(()) => Outcome::Disconnected,
        Err(what) if what.contains("kept the connection") => Outcome::Kept,
        Err(_) => Outcome::Stalled,
    }
}

/// Writes `bytes` with `fds` attached to the first byte.
fn send_with_fds(c: &RawClient, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    let sent = rustix::net::sendmsg(
        c.socket().as_fd(),
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )?;
    let mut sock = c.socket();
    sock.write_all(bytes.get(sent..).unwrap_or_default())
}

// --- the corpus ----------------------------------------------------------------------------------

/// Makes a message's bytes from the bystander's unique name and the serial.
type Make = Box<dyn Fn(&str, u32) -> Vec<u8>>;

/// One malformed message.
struct Row {
    name: &'static str,
    make: Make,
    /// Fds sent with it.
    fds: usize,
    /// Why dbus-daemon keeps the connection, where it does.
    difference: Option<&'static str>,
}

impl Row {
    fn new(name: &'static str, make: Make) -> Row {
        Row {
            name,
            make,
            fds: 0,
            difference: None,
        }
    }

    fn fds(mut self, n: usize) -> Row {
        self.fds = n;
        self
    }

    fn differs(mut self, why: &'static str) -> Row {
        self.difference = Some(why);
        self
    }
}

/// A valid call to `dest`, the starting point of most corruptions.
fn good_call(dest: &str) -> RawMessage {
    RawMessage::call(Some(dest), "/com/example", Some(IFACE), "Method")
}

fn le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// A message built from `dest`.
fn built(f: impl Fn(&str) -> RawMessage + 'static) -> Make {
    Box::new(move |dest, serial| f(dest).encode(serial))
}

/// A valid call with one string argument, then `f` applied to its bytes.
fn patched(f: impl Fn(&mut Vec<u8>) + 'static) -> Make {
    Box::new(move |dest, serial| {
        let mut bytes = good_call(dest).args(vec![Value::str("x")]).encode(serial);
        f(&mut bytes);
        bytes
    })
}

/// A call whose SIGNATURE is `sig` and whose body is `body` as given (little-endian).
fn with_body(sig: impl Into<String>, body: Vec<u8>) -> Make {
    let sig = sig.into();
    built(move |dest| {
        let mut m = good_call(dest).field(field::SIGNATURE, Value::Sig(sig.clone()));
        m.raw_body = Some(body.clone());
        m
    })
}

/// A big-endian call whose SIGNATURE is `sig` and whose body is `body`.
fn with_body_be(sig: &'static str, body: Vec<u8>) -> Make {
    built(move |dest| {
        let mut m = good_call(dest).field(field::SIGNATURE, Value::Sig(sig.to_owned()));
        m.big_endian = true;
        m.raw_body = Some(body.clone());
        m
    })
}

/// The base call with header field `code` replaced by `value`.
fn field_is(code: u8, value: Value) -> Make {
    built(move |dest| {
        let m = good_call(dest);
        // Keep the field where it was (the order does not matter to either bus).
        let fields = m
            .fields
            .iter()
            .map(|(c, v)| (*c, if *c == code { value.clone() } else { v.clone() }))
            .collect::<Vec<_>>();
        let mut m = RawMessage { fields, ..m };
        if !m.fields.iter().any(|(c, _)| *c == code) {
            m = m.field(code, value.clone());
        }
        m
    })
}

/// `msg(dest)` with header field `code` given a second time.
fn twice(msg: fn(&str) -> RawMessage, code: u8, value: Value) -> Make {
    built(move |dest| msg(dest).field(code, value.clone()))
}

/// The base call with an extra header field written by hand: code, variant signature and value
/// bytes (aligned to `align`).
fn extra_field(code: u8, sig: &'static str, value: Vec<u8>, align: usize) -> Make {
    Box::new(move |dest, serial| {
        let mut bytes = good_call(dest).encode(serial);
        // The base call's fields end at 16 + length; add ours after padding to 8.
        let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let mut fields = bytes[16..16 + len].to_vec();
        let pad = |v: &mut Vec<u8>, a: usize| {
            while v.len() % a != 0 {
                v.push(0);
            }
        };
        pad(&mut fields, 8);
        fields.push(code);
        fields.push(u8::try_from(sig.len()).unwrap_or(u8::MAX));
        fields.extend_from_slice(sig.as_bytes());
        fields.push(0);
        pad(&mut fields, align);
        fields.extend_from_slice(&value);
        bytes.truncate(12);
        bytes.extend_from_slice(&le(u32::try_from(fields.len()).unwrap_or(u32::MAX)));
        bytes.extend_from_slice(&fields);
        let mut enc = Enc::new(false);
        enc.buf = bytes;
        enc.pad(8);
        enc.buf
    })
}

fn call_with(dest: &str, path: &str, iface: Option<&str>, member: &str) -> RawMessage {
    RawMessage::call(Some(dest), path, iface, member)
}

fn method_return(dest: &str) -> RawMessage {
    RawMessage::method_return(dest, 1)
}

fn error(dest: &str) -> RawMessage {
    RawMessage::error(dest, 1, "com.example.Error.Failed")
}

fn signal(_: &str) -> RawMessage {
    RawMessage::signal("/com/example", IFACE, "Signal")
}

fn corpus() -> Vec<Row> {
    let deep = |open: &str, close: &str, depth: usize| {
        format!("{}y{}", open.repeat(depth), close.repeat(depth))
    };
    let structs_33 = deep("(", ")", 33);
    let arrays_33 = deep("a", "", 33);
    let interface_256 = format!("{}.x", "a".repeat(254));
    let member_256 = "M".repeat(256);
    let error_256 = format!("{}.x", "e".repeat(254));
    let name_256 = format!("{}.x", "n".repeat(254));
    let variants_66 = {
        let mut body = [1, b'v', 0].repeat(65);
        body.extend_from_slice(&[1, b'y', 0, 7]);
        body
    };
    let mut rows = vec![
        // The fixed header.
        Row::new("endianness byte X", patched(|b| b[0] = b'X')),
        Row::new("endianness byte b", patched(|b| b[0] = b'b')),
        Row::new("protocol version 0", patched(|b| b[3] = 0)),
        Row::new("protocol version 2", patched(|b| b[3] = 2)),
        Row::new("message type 0", patched(|b| b[1] = 0)),
        Row::new(
            "serial 0",
            built(|d| RawMessage {
                serial: Some(0),
                ..good_call(d)
            }),
        ),
        Row::new(
            "body length over 128 MiB",
            patched(|b| b[4..8].copy_from_slice(&le((128 << 20) + 1))),
        ),
        Row::new(
            "header fields longer than 64 MiB",
            patched(|b| b[12..16].copy_from_slice(&le((64 << 20) + 8))),
        ),
        Row::new(
            "header fields length cutting the last field",
            patched(|b| {
                let n = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
                b[12..16].copy_from_slice(&le(n - 1));
            }),
        ),
        Row::new(
            "trailing garbage after a message",
            Box::new(|_, serial| {
                let mut b = RawMessage::bus_call("GetId", vec![]).encode(serial);
                b.extend_from_slice(&[0; 16]);
                b
            }),
        ),
        // Each header field with the wrong type.
        Row::new("PATH as s", field_is(field::PATH, Value::str("/a"))),
        Row::new(
            "INTERFACE as o",
            field_is(field::INTERFACE, Value::path("/com/example")),
        ),
        Row::new("MEMBER as u", field_is(field::MEMBER, Value::U32(1))),
        Row::new(
            "ERROR_NAME as o",
            built(|d| {
                error(d)
                    .without_field(field::ERROR_NAME)
                    .field(field::ERROR_NAME, Value::path("/com/example"))
            }),
        ),
        Row::new(
            "REPLY_SERIAL as i",
            built(|d| {
                method_return(d)
                    .without_field(field::REPLY_SERIAL)
                    .field(field::REPLY_SERIAL, Value::I32(1))
            }),
        ),
        Row::new(
            "REPLY_SERIAL as s",
            built(|d| {
                method_return(d)
                    .without_field(field::REPLY_SERIAL)
                    .field(field::REPLY_SERIAL, Value::str("1"))
            }),
        ),
        Row::new(
            "DESTINATION as o",
            field_is(field::DESTINATION, Value::path("/a")),
        ),
        Row::new("SENDER as u", field_is(field::SENDER, Value::U32(1))),
        Row::new(
            "SIGNATURE as s",
            built(|d| {
                good_call(d)
                    .args(vec![Value::str("x")])
                    .field(field::SIGNATURE, Value::str("s"))
            }),
        ),
        Row::new("UNIX_FDS as s", field_is(field::UNIX_FDS, Value::str("0"))),
        Row::new("UNIX_FDS as i", field_is(field::UNIX_FDS, Value::I32(0))),
        Row::new("header field code 0", field_is(0, Value::str("invalid"))),
        Row::new(
            "header variant holding two values",
            extra_field(42, "uu", [le(1), le(2)].concat(), 4),
        ),
        Row::new(
            "header variant with an empty signature",
            extra_field(42, "", vec![], 1),
        ),
        // Fields given twice.
        Row::new(
            "PATH twice",
            twice(good_call, field::PATH, Value::path("/other")),
        ),
        Row::new(
            "INTERFACE twice",
            twice(good_call, field::INTERFACE, Value::str("com.example.Other")),
        ),
        Row::new(
            "MEMBER twice",
            twice(good_call, field::MEMBER, Value::str("Other")),
        ),
        Row::new(
            "DESTINATION twice, same value",
            built(|d| good_call(d).field(field::DESTINATION, Value::str(d))),
        ),
        Row::new(
            "SIGNATURE twice",
            built(|d| {
                good_call(d)
                    .field(field::SIGNATURE, Value::Sig("s".into()))
                    .args(vec![Value::str("x")])
                    .field(field::SIGNATURE, Value::Sig("s".into()))
            }),
        ),
        Row::new(
            "REPLY_SERIAL twice",
            twice(method_return, field::REPLY_SERIAL, Value::U32(1)),
        ),
        Row::new(
            "ERROR_NAME twice",
            twice(
                error,
                field::ERROR_NAME,
                Value::str("com.example.Error.Other"),
            ),
        ),
        // Required fields missing, per type.
        Row::new(
            "call without PATH",
            built(|d| good_call(d).without_field(field::PATH)),
        ),
        Row::new(
            "call without MEMBER",
            built(|d| good_call(d).without_field(field::MEMBER)),
        ),
        Row::new(
            "signal without PATH",
            built(|d| signal(d).without_field(field::PATH)),
        ),
        Row::new(
            "signal without INTERFACE",
            built(|d| signal(d).without_field(field::INTERFACE)),
        ),
        Row::new(
            "signal without MEMBER",
            built(|d| signal(d).without_field(field::MEMBER)),
        ),
        Row::new(
            "return without REPLY_SERIAL",
            built(|d| method_return(d).without_field(field::REPLY_SERIAL)),
        ),
        Row::new(
            "error without ERROR_NAME",
            built(|d| error(d).without_field(field::ERROR_NAME)),
        ),
        Row::new(
            "error without REPLY_SERIAL",
            built(|d| error(d).without_field(field::REPLY_SERIAL)),
        ),
        Row::new("REPLY_SERIAL 0", built(|d| RawMessage::method_return(d, 0))),
        // Bad names of each kind.
        Row::new("PATH empty", built(|d| call_with(d, "", Some(IFACE), "M"))),
        Row::new(
            "PATH relative",
            built(|d| call_with(d, "a/b", Some(IFACE), "M")),
        ),
        Row::new(
            "PATH ending in a slash",
            built(|d| call_with(d, "/a/", Some(IFACE), "M")),
        ),
        Row::new(
            "PATH with an empty element",
            built(|d| call_with(d, "/a//b", Some(IFACE), "M")),
        ),
        Row::new(
            "PATH with a hyphen",
            built(|d| call_with(d, "/a-b", Some(IFACE), "M")),
        ),
        Row::new(
            "INTERFACE without a dot",
            built(|d| call_with(d, "/a", Some("nodots"), "M")),
        ),
        Row::new(
            "INTERFACE element starting with a digit",
            built(|d| call_with(d, "/a", Some("com.1example"), "M")),
        ),
        Row::new(
            "INTERFACE with an empty element",
            built(|d| call_with(d, "/a", Some("com..example"), "M")),
        ),
        Row::new(
            "INTERFACE with a hyphen",
            built(|d| call_with(d, "/a", Some("com.ex-ample"), "M")),
        ),
        Row::new(
            "INTERFACE of 256 bytes",
            built(move |d| call_with(d, "/a", Some(&interface_256), "M")),
        ),
        Row::new(
            "MEMBER starting with a digit",
            built(|d| call_with(d, "/a", Some(IFACE), "1abc")),
        ),
        Row::new(
            "MEMBER with a dot",
            built(|d| call_with(d, "/a", Some(IFACE), "a.b")),
        ),
        Row::new(
            "MEMBER empty",
            built(|d| call_with(d, "/a", Some(IFACE), "")),
        ),
        Row::new(
            "MEMBER of 256 bytes",
            built(move |d| call_with(d, "/a", Some(IFACE), &member_256)),
        ),
        Row::new(
            "ERROR_NAME without a dot",
            built(|d| RawMessage::error(d, 1, "nodots")),
        ),
        Row::new(
            "ERROR_NAME of 256 bytes",
            built(move |d| RawMessage::error(d, 1, &error_256)),
        ),
        Row::new(
            "DESTINATION with an empty element",
            built(|_| call_with("com..example", "/a", Some(IFACE), "M")),
        ),
        Row::new(
            "DESTINATION element starting with a digit",
            built(|_| call_with("com.1example", "/a", Some(IFACE), "M")),
        ),
        Row::new(
            "DESTINATION of 256 bytes",
            built(move |_| call_with(&name_256, "/a", Some(IFACE), "M")),
        ),
        // dbus-daemon lets a unique name of fewer than two elements through, and answers
        // ServiceUnknown; tramd refuses names the specification does not allow.
        Row::new(
            "DESTINATION a lone colon",
            built(|_| call_with(":", "/a", Some(IFACE), "M")),
        )
        .differs("dbus-daemon accepts unique names of fewer than two elements"),
        Row::new(
            "DESTINATION unique name without a dot",
            built(|_| call_with(":1", "/a", Some(IFACE), "M")),
        )
        .differs("dbus-daemon accepts unique names of fewer than two elements"),
        Row::new(
            "DESTINATION unique name with an empty element",
            built(|_| call_with(":1..2", "/a", Some(IFACE), "M")),
        ),
        Row::new(
            "DESTINATION unique name with a star",
            built(|_| call_with(":1.2*", "/a", Some(IFACE), "M")),
        ),
        Row::new(
            "SENDER not a bus name",
            field_is(field::SENDER, Value::str("bad..sender")),
        ),
        // Bad signatures.
        Row::new("signature 'a'", with_body("a", vec![])),
        Row::new("signature '(u'", with_body("(u", vec![0; 8])),
        Row::new("signature 'u)'", with_body("u)", vec![0; 4])),
        Row::new("signature '()'", with_body("()", vec![])),
        Row::new(
            "signature '{sv}' outside an array",
            with_body("{sv}", vec![0; 16]),
        ),
        Row::new(
            "signature 'a{vs}', variant key",
            with_body("a{vs}", le(0).to_vec()),
        ),
        Row::new("signature 'a{sss}'", with_body("a{sss}", le(0).to_vec())),
        Row::new("signature 'a{s}'", with_body("a{s}", le(0).to_vec())),
        Row::new("signature with type code z", with_body("z", vec![0; 4])),
        Row::new("signature with a NUL", with_body("u\0", vec![0; 4])),
        Row::new("structs nested 33 deep", with_body(structs_33, vec![0; 8])),
        Row::new(
            "arrays nested 33 deep",
            with_body(arrays_33, le(0).to_vec()),
        ),
        Row::new("variants nested 66 deep", with_body("v", variants_66)),
        // Declared lengths beyond the limits.
        Row::new(
            "array declared over 64 MiB",
            with_body("ay", [&le((64 << 20) + 1)[..], &[1, 2, 3, 4]].concat()),
        ),
        Row::new(
            "array of u declared over 64 MiB",
            with_body("au", [&le((64 << 20) + 4)[..], &le(1)[..]].concat()),
        ),
        Row::new(
            "array length past the body",
            with_body("ay", [&le(100)[..], &[1, 2, 3, 4]].concat()),
        ),
        Row::new(
            "array length splitting an element",
            with_body("au", [&le(3)[..], &[1, 0, 0, 0]].concat()),
        ),
        Row::new(
            "string length past the body",
            with_body("s", [&le(100)[..], b"ab\0"].concat()),
        ),
        // Invalid values.
        Row::new("boolean 2", with_body("b", le(2).to_vec())),
        Row::new(
            "boolean 2, big-endian",
            with_body_be("b", 2u32.to_be_bytes().to_vec()),
        ),
        Row::new(
            "invalid UTF-8",
            with_body("s", [&le(2)[..], &[0xff, 0xfe, 0]].concat()),
        ),
        Row::new(
            "invalid UTF-8, big-endian",
            with_body_be("s", [&2u32.to_be_bytes()[..], &[0xc0, 0x80, 0]].concat()),
        ),
        Row::new(
            "UTF-16 surrogate in UTF-8",
            with_body("s", [&le(3)[..], &[0xed, 0xa0, 0x80, 0]].concat()),
        ),
        Row::new(
            "NUL inside a string",
            with_body("s", [&le(3)[..], b"a\0b\0"].concat()),
        ),
        Row::new(
            "string without its NUL",
            with_body("s", [&le(2)[..], b"abc"].concat()),
        ),
        Row::new(
            "object path argument with an empty element",
            with_body("o", [&le(4)[..], b"/a//\0"].concat()),
        ),
        Row::new(
            "signature argument '(('",
            with_body("g", vec![2, b'(', b'(', 0]),
        ),
        Row::new(
            "variant with a bad signature",
            with_body("v", vec![1, b'a', 0, 0]),
        ),
        Row::new(
            "variant holding two values",
            with_body("v", [&[2, b'u', b'u', 0][..], &le(1), &le(2)].concat()),
        ),
        Row::new(
            "variant with an empty signature",
            with_body("v", vec![0, 0]),
        ),
        // Padding and length mismatches.
        Row::new(
            "non-zero body padding",
            with_body("yu", vec![1, 0xff, 0, 0, 5, 0, 0, 0]),
        ),
        Row::new(
            "non-zero padding before 8-byte elements",
            with_body(
                "at",
                [&le(8)[..], &[0, 0, 9, 0], &[1, 0, 0, 0, 0, 0, 0, 0]].concat(),
            ),
        ),
        Row::new(
            "non-zero struct padding",
            with_body(
                "(yt)",
                [&[1, 0, 0, 0, 0, 0, 0, 1][..], &[2, 0, 0, 0, 0, 0, 0, 0]].concat(),
            ),
        ),
        Row::new(
            "non-zero header padding",
            Box::new(|dest, serial| {
                // A member length that leaves padding after the header fields.
                for len in 1..8 {
                    let member = "M".repeat(len);
                    let mut b = call_with(dest, "/a", Some(IFACE), &member).encode(serial);
                    let end = 16 + u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
                    if end % 8 != 0 {
                        b[end] = 1;
                        return b;
                    }
                }
                unreachable!("some member length leaves header padding")
            }),
        ),
        Row::new(
            "non-zero padding between header fields",
            Box::new(|dest, serial| {
                // PATH "/a" comes first: code, signature "o", length at 20, "/a\0" at 24..27,
                // then padding to 32.
                let mut b = call_with(dest, "/a", Some(IFACE), "M").encode(serial);
                b[28] = 1;
                b
            }),
        ),
        Row::new(
            "body shorter than its signature",
            with_body("u", vec![1, 0]),
        ),
        Row::new(
            "body longer than its signature",
            with_body("u", vec![1, 0, 0, 0, 2, 0, 0, 0]),
        ),
        Row::new(
            "body without SIGNATURE",
            built(|d| RawMessage {
                raw_body: Some(vec![1, 0, 0, 0]),
                ..good_call(d)
            }),
        ),
        Row::new("SIGNATURE without a body", with_body("u", vec![])),
        // Fds that do not match UNIX_FDS.
        Row::new(
            "UNIX_FDS 2, one fd sent",
            built(|d| good_call(d).args(vec![Value::Fd(0)]).unix_fds(2)),
        )
        .fds(1),
        Row::new(
            "fd index past UNIX_FDS",
            built(|d| good_call(d).args(vec![Value::Fd(1)]).unix_fds(1)),
        )
        .fds(1)
        .differs("dbus-daemon does not check fd indices against UNIX_FDS"),
        Row::new(
            "UNIX_FDS 1, no fd sent",
            built(|d| good_call(d).args(vec![Value::Fd(0)]).unix_fds(1)),
        ),
    ];
    rows.shrink_to_fit();
    rows
}
