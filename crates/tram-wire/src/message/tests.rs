use std::fs::File;

use super::*;
use crate::{Arg, BodyReader, BodyWriter, MessageBuilder};

const ENDIANS: [Endian; 2] = [Endian::Little, Endian::Big];

/// A header field for [`raw`].
enum F {
    /// A `s` field.
    S(u8, &'static str),
    /// An `o` field.
    O(u8, &'static str),
    /// A `g` field.
    G(u8, &'static str),
    /// A `u` field.
    U(u8, u32),
    /// Any value: the variant's signature and a writer for the value.
    Any(u8, &'static str, fn(&mut BodyWriter)),
}

/// A message marshalled field by field, so tests can build what the builder refuses to.
fn raw(endian: Endian, mtype: u8, serial: u32, fields: &[F], body: &[u8]) -> Vec<u8> {
    let mut w = BodyWriter::new(endian);
    w.u8(endian.to_byte());
    w.u8(mtype);
    w.u8(0);
    w.u8(1);
    w.u32(body.len() as u32);
    w.u32(serial);
    w.array("(yv)", |w| {
        for f in fields {
            w.structure(|w| match *f {
                F::S(code, s) => {
                    w.u8(code);
                    w.variant("s", |w| w.string(s));
                }
                F::O(code, s) => {
                    w.u8(code);
                    w.variant("o", |w| w.object_path(s));
                }
                F::G(code, s) => {
                    w.u8(code);
                    w.variant("g", |w| w.signature(s));
                }
                F::U(code, v) => {
                    w.u8(code);
                    w.variant("u", |w| w.u32(v));
                }
                F::Any(code, sig, write) => {
                    w.u8(code);
                    w.variant(sig, write);
                }
            });
        }
    });
    w.pad(8);
    let mut out = w.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A body written from offset 0 (which the message places on an 8-byte boundary).
fn body(endian: Endian, write: impl FnOnce(&mut BodyWriter)) -> Vec<u8> {
    let mut w = BodyWriter::new(endian);
    write(&mut w);
    w.into_bytes()
}

/// A method call to `/` member `M` whose body has signature `sig`.
fn call(endian: Endian, sig: &'static str, body: &[u8]) -> Vec<u8> {
    raw(
        endian,
        1,
        1,
        &[F::O(1, "/"), F::S(3, "M"), F::G(8, sig)],
        body,
    )
}

fn parse(bytes: &[u8]) -> Result<Message, WireError> {
    Message::parse(Arc::from(bytes), Vec::new())
}

fn put_u32(bytes: &mut [u8], pos: usize, endian: Endian, v: u32) {
    let b = match endian {
        Endian::Little => v.to_le_bytes(),
        Endian::Big => v.to_be_bytes(),
    };
    bytes[pos..pos + 4].copy_from_slice(&b);
}

fn gdbus_fixtures() -> Vec<(&'static str, Vec<u8>)> {
    include_str!("testdata/gdbus.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, hex) = l.split_once(' ').unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (name, bytes)
        })
        .collect()
}

fn dev_null() -> OwnedFd {
    File::open("/dev/null").unwrap().into()
}

#[test]
fn gdbus_messages_parse() {
    let fixtures = gdbus_fixtures();
    assert_eq!(fixtures.len(), 8);
    for (name, bytes) in fixtures {
        let msg = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())), "{name}");
        let endian = if name.ends_with("_be") {
            Endian::Big
        } else {
            Endian::Little
        };
        assert_eq!(msg.endian(), endian, "{name}");
        match name.trim_end_matches("_le").trim_end_matches("_be") {
            "call" => {
                assert_eq!(msg.message_type(), MessageType::MethodCall);
                assert_eq!(msg.serial(), 7);
                assert_eq!(msg.path(), Some("/org/example/Obj"));
                assert_eq!(msg.interface(), Some("org.example.Iface"));
                assert_eq!(msg.member(), Some("Frob"));
                assert_eq!(msg.destination(), Some("org.example.Svc"));
                assert_eq!(msg.signature(), "sua{sv}asvaa{ss}(ybnqiuxtd)go");
                let args: Vec<_> = msg.args(9).collect();
                assert_eq!(
                    args,
                    [
                        Arg::Str("hi"),
                        Arg::Other,
                        Arg::Other,
                        Arg::Other,
                        Arg::Other,
                        Arg::Other,
                        Arg::Other,
                        Arg::Signature("a{sv}"),
                        Arg::ObjectPath("/p"),
                    ]
                );
                let mut r = BodyReader::new(&msg);
                assert_eq!(r.read_str(), Ok("hi"));
                assert_eq!(r.read_u32(), Ok(3));
                let dict = r.read_variant_dict().unwrap();
                assert_eq!(dict.len(), 2);
                let (key, mut value) = dict[0].clone();
                assert_eq!(key, "a");
                assert_eq!(value.remaining_signature(), "as");
                assert_eq!(value.read_str_array(), Ok(vec!["x", "y"]));
                assert_eq!(dict[1].1.remaining_signature(), "(ii)");
                assert_eq!(r.read_str_array(), Ok(vec!["p", "q"]));
                assert_eq!(r.read_variant().unwrap().read_u64(), Ok(9));
                r.skip().unwrap();
                r.skip().unwrap();
                assert_eq!(r.read_signature(), Ok("a{sv}"));
                assert_eq!(r.read_str(), Ok("/p"));
                assert!(r.is_at_end());
            }
            "signal" => {
                assert_eq!(msg.message_type(), MessageType::Signal);
                assert_eq!(msg.sender(), Some("org.freedesktop.DBus"));
                assert_eq!(msg.destination(), Some(":1.3"));
                let args: Vec<_> = msg.args(4).collect();
                assert_eq!(args, [Arg::Str("org.x.Y"), Arg::Str(""), Arg::Str(":1.9")]);
            }
            "error" => {
                assert_eq!(msg.message_type(), MessageType::Error);
                assert_eq!(msg.error_name(), Some("org.example.Error.Failed"));
                assert_eq!(msg.reply_serial(), Some(9));
                assert_eq!(BodyReader::new(&msg).read_str(), Ok("boom"));
            }
            "empty_arrays" => {
                let mut r = BodyReader::new(&msg);
                assert_eq!(r.read_byte_array(), Ok(&[][..]));
                r.skip().unwrap();
                r.skip().unwrap();
                assert!(r.is_at_end());
                assert_eq!(r.skip(), Err(WireError::BadBody("no more arguments")));
            }
            other => panic!("unexpected fixture {other}"),
        }
    }
}

#[test]
fn fixed_header_rules() {
    for endian in ENDIANS {
        let good = raw(endian, 1, 1, &[F::O(1, "/"), F::S(3, "M")], &[]);
        assert!(parse(&good).is_ok());
        let with = |pos: usize, byte: u8| {
            let mut b = good.clone();
            b[pos] = byte;
            parse(&b).map(|_| ())
        };
        assert_eq!(with(0, b'x'), Err(WireError::BadEndian(b'x')));
        assert_eq!(with(1, 0), Err(WireError::BadMessageType));
        assert_eq!(with(3, 2), Err(WireError::BadVersion(2)));
        assert_eq!(with(3, 0), Err(WireError::BadVersion(0)));
        // Unknown types and flags are accepted.
        let unknown = raw(endian, 42, 1, &[], &[]);
        assert_eq!(
            parse(&unknown).unwrap().message_type(),
            MessageType::Unknown(42)
        );
        let mut flags = good.clone();
        flags[2] = 0xff;
        assert_eq!(parse(&flags).unwrap().flags(), Flags(0xff));

        let zero_serial = raw(endian, 1, 0, &[F::O(1, "/"), F::S(3, "M")], &[]);
        assert_eq!(parse(&zero_serial).map(|_| ()), Err(WireError::ZeroSerial));
        assert_eq!(
            parse(&good[..good.len() - 1]).map(|_| ()),
            Err(WireError::Truncated)
        );
        assert_eq!(parse(&good[..10]).map(|_| ()), Err(WireError::Truncated));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(parse(&longer).map(|_| ()), Err(WireError::TrailingBytes));
        let mut huge = good.clone();
        put_u32(&mut huge, 4, endian, MAX_MESSAGE_LEN as u32);
        assert!(matches!(parse(&huge), Err(WireError::TooLong(_))));
        let mut huge_fields = good.clone();
        put_u32(&mut huge_fields, 12, endian, MAX_ARRAY_LEN as u32 + 1);
        assert!(matches!(parse(&huge_fields), Err(WireError::BadArray(_))));
    }
}

#[test]
fn frame_len_cases() {
    for endian in ENDIANS {
        let good = raw(endian, 1, 1, &[F::O(1, "/"), F::S(3, "M")], &[]);
        for n in 0..FIXED_HEADER_LEN {
            assert_eq!(frame_len(&good[..n]), Ok(None), "{n}");
        }
        assert_eq!(frame_len(&good[..16]), Ok(Some(good.len())));
        assert_eq!(frame_len(&good), Ok(Some(good.len())));
        let mut b = good.clone();
        put_u32(&mut b, 4, endian, 100);
        assert_eq!(frame_len(&b), Ok(Some(good.len() + 100)));
        put_u32(&mut b, 12, endian, 1);
        assert_eq!(frame_len(&b), Ok(Some(16 + 8 + 100)));
        put_u32(&mut b, 12, endian, 0);
        put_u32(&mut b, 4, endian, (MAX_MESSAGE_LEN - 16) as u32);
        assert_eq!(frame_len(&b), Ok(Some(MAX_MESSAGE_LEN)));
        put_u32(&mut b, 4, endian, (MAX_MESSAGE_LEN - 15) as u32);
        assert_eq!(
            frame_len(&b),
            Err(WireError::TooLong(MAX_MESSAGE_LEN as u64 + 1))
        );
        put_u32(&mut b, 4, endian, u32::MAX);
        put_u32(&mut b, 12, endian, MAX_ARRAY_LEN as u32);
        assert!(matches!(frame_len(&b), Err(WireError::TooLong(_))));
        put_u32(&mut b, 12, endian, u32::MAX);
        assert!(matches!(frame_len(&b), Err(WireError::BadArray(_))));
    }
    assert_eq!(frame_len(b"x"), Err(WireError::BadEndian(b'x')));
    assert_eq!(frame_len(b""), Ok(None));
}

#[test]
fn field_code_zero_is_refused_whatever_its_signature() {
    for endian in ENDIANS {
        // Whatever the signature says, the value reads as a well-framed string.
        let bytes = raw(
            endian,
            1,
            1,
            &[F::O(1, "/"), F::S(3, "M"), F::S(0, "x")],
            &[],
        );
        let at = (16..bytes.len())
            .step_by(8)
            .rfind(|&p| bytes[p..p + 4] == [0, 1, b's', 0])
            .unwrap();
        for sig in [b's', b'o', b'u', b'g', 0, 0xff] {
            let mut b = bytes.clone();
            b[at + 2] = sig;
            assert!(parse(&b).is_err(), "signature {sig:#x}");
        }
    }
}

#[test]
fn header_field_rules() {
    let bad = |w: &'static str| Err(WireError::BadHeaderField(w));
    let missing = |w: &'static str| Err(WireError::MissingHeaderField(w));
    let call = |extra: F| vec![F::O(1, "/"), F::S(3, "M"), extra];
    type Case = (&'static str, u8, Vec<F>, Result<(), WireError>);
    let cases: Vec<Case> = vec![
        (
            "minimal call",
            1,
            vec![F::O(1, "/a/b"), F::S(3, "M")],
            Ok(()),
        ),
        (
            "field code 0",
            1,
            call(F::U(0, 1)),
            bad("field code 0 (INVALID)"),
        ),
        (
            "PATH as string",
            1,
            vec![F::S(1, "/"), F::S(3, "M")],
            bad("PATH is not an object path"),
        ),
        (
            "INTERFACE as path",
            1,
            call(F::O(2, "/a")),
            bad("INTERFACE is not a string"),
        ),
        (
            "MEMBER as u32",
            1,
            vec![F::O(1, "/"), F::U(3, 1)],
            bad("MEMBER is not a string"),
        ),
        (
            "ERROR_NAME as path",
            1,
            call(F::O(4, "/a")),
            bad("ERROR_NAME is not a string"),
        ),
        (
            "REPLY_SERIAL as string",
            1,
            call(F::S(5, "1")),
            bad("REPLY_SERIAL is not a uint32"),
        ),
        (
            "DESTINATION as sig",
            1,
            call(F::G(6, "s")),
            bad("DESTINATION is not a string"),
        ),
        (
            "SENDER as u32",
            1,
            call(F::U(7, 1)),
            bad("SENDER is not a string"),
        ),
        (
            "SIGNATURE as string",
            1,
            call(F::S(8, "s")),
            bad("SIGNATURE is not a signature"),
        ),
        (
            "UNIX_FDS as string",
            1,
            call(F::S(9, "1")),
            bad("UNIX_FDS is not a uint32"),
        ),
        (
            "REPLY_SERIAL as i32 variant",
            2,
            vec![F::Any(5, "i", |w| w.i32(1))],
            bad("REPLY_SERIAL is not a uint32"),
        ),
        (
            "PATH twice",
            1,
            call(F::O(1, "/")),
            bad("PATH appears twice"),
        ),
        (
            "MEMBER twice",
            1,
            call(F::S(3, "N")),
            bad("MEMBER appears twice"),
        ),
        (
            "SIGNATURE twice",
            1,
            vec![F::O(1, "/"), F::S(3, "M"), F::G(8, ""), F::G(8, "")],
            bad("SIGNATURE appears twice"),
        ),
        (
            "bad path",
            1,
            vec![F::O(1, "/a/"), F::S(3, "M")],
            bad("PATH is not a valid object path"),
        ),
        (
            "bad interface",
            1,
            call(F::S(2, "nodot")),
            bad("INTERFACE is not a valid interface name"),
        ),
        (
            "bad member",
            1,
            vec![F::O(1, "/"), F::S(3, "a.b")],
            bad("MEMBER is not a valid member name"),
        ),
        (
            "bad error name",
            3,
            vec![F::S(4, "x"), F::U(5, 1)],
            bad("ERROR_NAME is not a valid error name"),
        ),
        (
            "bad destination",
            1,
            call(F::S(6, "1.x")),
            bad("DESTINATION is not a valid bus name"),
        ),
        (
            "bad sender",
            1,
            call(F::S(7, "")),
            bad("SENDER is not a valid bus name"),
        ),
        (
            "bad signature",
            1,
            call(F::G(8, "a")),
            Err(WireError::BadSignature("unterminated container")),
        ),
        (
            "zero reply serial",
            2,
            vec![F::U(5, 0)],
            bad("REPLY_SERIAL is zero"),
        ),
        ("call without PATH", 1, vec![F::S(3, "M")], missing("PATH")),
        (
            "call without MEMBER",
            1,
            vec![F::O(1, "/")],
            missing("MEMBER"),
        ),
        ("return", 2, vec![F::U(5, 3)], Ok(())),
        (
            "return without REPLY_SERIAL",
            2,
            vec![],
            missing("REPLY_SERIAL"),
        ),
        ("error", 3, vec![F::S(4, "a.b"), F::U(5, 3)], Ok(())),
        (
            "error without ERROR_NAME",
            3,
            vec![F::U(5, 3)],
            missing("ERROR_NAME"),
        ),
        (
            "error without REPLY_SERIAL",
            3,
            vec![F::S(4, "a.b")],
            missing("REPLY_SERIAL"),
        ),
        (
            "signal",
            4,
            vec![F::O(1, "/"), F::S(2, "a.b"), F::S(3, "M")],
            Ok(()),
        ),
        (
            "signal without PATH",
            4,
            vec![F::S(2, "a.b"), F::S(3, "M")],
            missing("PATH"),
        ),
        (
            "signal without INTERFACE",
            4,
            vec![F::O(1, "/"), F::S(3, "M")],
            missing("INTERFACE"),
        ),
        (
            "signal without MEMBER",
            4,
            vec![F::O(1, "/"), F::S(2, "a.b")],
            missing("MEMBER"),
        ),
        (
            "reserved Local path and interface are only syntax-checked",
            4,
            vec![
                F::O(1, "/org/freedesktop/DBus/Local"),
                F::S(2, "org.freedesktop.DBus.Local"),
                F::S(3, "Disconnected"),
            ],
            Ok(()),
        ),
        (
            "unexpected known field is kept",
            4,
            vec![F::O(1, "/"), F::S(2, "a.b"), F::S(3, "M"), F::U(5, 9)],
            Ok(()),
        ),
        ("unknown type needs nothing", 7, vec![], Ok(())),
        (
            "unknown field, complex value",
            1,
            call(F::Any(200, "a{sv}", |w| {
                w.array("{sv}", |w| {
                    w.dict_entry(|w| {
                        w.string("k");
                        w.variant("(bt)", |w| {
                            w.structure(|w| {
                                w.bool(true);
                                w.u64(1);
                            })
                        });
                    })
                })
            })),
            Ok(()),
        ),
        (
            "unknown field repeated",
            1,
            vec![F::O(1, "/"), F::S(3, "M"), F::U(10, 1), F::U(10, 2)],
            Ok(()),
        ),
        (
            "unknown field, bad boolean",
            1,
            call(F::Any(10, "b", |w| w.u32(2))),
            Err(WireError::BadBoolean),
        ),
        (
            "unknown field, bad string",
            1,
            call(F::Any(10, "s", |w| {
                w.u32(1);
                w.u8(0xff);
                w.u8(0);
            })),
            Err(WireError::BadString("not valid UTF-8")),
        ),
        (
            "unknown field, two types in its variant",
            1,
            call(F::Any(10, "yy", |w| {
                w.u8(1);
                w.u8(1);
            })),
            Err(WireError::BadSignature("more than one complete type")),
        ),
    ];
    for endian in ENDIANS {
        for (name, mtype, fields, expected) in &cases {
            let bytes = raw(endian, *mtype, 1, fields, &[]);
            assert_eq!(parse(&bytes).map(|_| ()), *expected, "{name} ({endian:?})");
        }
    }
}

#[test]
fn header_fields_are_recorded() {
    for endian in ENDIANS {
        let bytes = raw(
            endian,
            4,
            3,
            &[
                F::U(10, 1),
                F::S(7, ":1.1"),
                F::O(1, "/o"),
                F::S(2, "a.b"),
                F::S(3, "M"),
                F::S(4, "e.f"),
                F::U(5, 8),
                F::S(6, "x.y"),
                F::G(8, "s"),
                F::U(9, 0),
            ],
            &body(endian, |w| w.string("arg")),
        );
        let msg = parse(&bytes).unwrap();
        assert_eq!(msg.message_type(), MessageType::Signal);
        assert_eq!(msg.serial(), 3);
        assert_eq!(msg.path(), Some("/o"));
        assert_eq!(msg.interface(), Some("a.b"));
        assert_eq!(msg.member(), Some("M"));
        assert_eq!(msg.error_name(), Some("e.f"));
        assert_eq!(msg.reply_serial(), Some(8));
        assert_eq!(msg.destination(), Some("x.y"));
        assert_eq!(msg.sender(), Some(":1.1"));
        assert_eq!(msg.signature(), "s");
        assert_eq!(msg.unix_fds(), 0);
        assert_eq!(msg.body(), body(endian, |w| w.string("arg")));
        assert!(!msg.expects_reply());
    }
}

#[test]
fn header_padding_and_array_length() {
    for endian in ENDIANS {
        // PATH "/" fills 16..26, MEMBER "M" 32..42; the header ends at 48.
        let good = raw(endian, 1, 1, &[F::O(1, "/"), F::S(3, "M")], &[]);
        assert_eq!(good.len(), 48);
        assert!(parse(&good).is_ok());
        for pos in 42..48 {
            let mut b = good.clone();
            b[pos] = 1;
            assert_eq!(
                parse(&b).map(|_| ()),
                Err(WireError::NonZeroPadding),
                "{pos}"
            );
        }
        // Padding between the two fields.
        let mut b = good.clone();
        b[16 + 4 + 4 + 2] = 1;
        assert_eq!(parse(&b).map(|_| ()), Err(WireError::NonZeroPadding));
        // A field array length that counts the trailing padding.
        let mut b = good.clone();
        put_u32(&mut b, 12, endian, 32);
        assert!(matches!(parse(&b), Err(WireError::BadArray(_))));
        // A length that cuts the last field short.
        let mut b = good.clone();
        put_u32(&mut b, 12, endian, 21);
        assert!(parse(&b).is_err());
    }
}

#[test]
fn unix_fds() {
    for endian in ENDIANS {
        let fields = [F::O(1, "/"), F::S(3, "M"), F::G(8, "hh"), F::U(9, 2)];
        let good = raw(
            endian,
            1,
            1,
            &fields,
            &body(endian, |w| {
                w.unix_fd(1);
                w.unix_fd(0);
            }),
        );
        let msg = Message::parse(Arc::from(&good[..]), vec![dev_null(), dev_null()]).unwrap();
        assert_eq!(msg.unix_fds(), 2);
        assert_eq!(msg.fds().len(), 2);
        let mut r = BodyReader::new(&msg);
        assert_eq!(r.read_unix_fd(), Ok(1));
        assert_eq!(r.read_unix_fd(), Ok(0));
        assert_eq!(
            Message::parse(Arc::from(&good[..]), vec![dev_null()]).map(|_| ()),
            Err(WireError::FdCountMismatch {
                declared: 2,
                received: 1
            })
        );
        let out_of_range = raw(
            endian,
            1,
            1,
            &fields,
            &body(endian, |w| {
                w.unix_fd(2);
                w.unix_fd(0);
            }),
        );
        assert_eq!(
            Message::parse(Arc::from(&out_of_range[..]), vec![dev_null(), dev_null()]).map(|_| ()),
            Err(WireError::BadFdIndex)
        );
        let no_fds = raw(endian, 1, 1, &[F::O(1, "/"), F::S(3, "M")], &[]);
        assert_eq!(
            Message::parse(Arc::from(&no_fds[..]), vec![dev_null()]).map(|_| ()),
            Err(WireError::FdCountMismatch {
                declared: 0,
                received: 1
            })
        );
        let index_without_fds = call(endian, "h", &body(endian, |w| w.unix_fd(0)));
        assert_eq!(
            parse(&index_without_fds).map(|_| ()),
            Err(WireError::BadFdIndex)
        );
    }
}

#[test]
fn body_rules() {
    type Writer = fn(&mut BodyWriter);
    let big_array: Writer = |w| w.u32(MAX_ARRAY_LEN as u32 + 1);
    let cases: Vec<(&str, &'static str, Writer, Result<(), WireError>)> = vec![
        (
            "bytes",
            "yy",
            |w| {
                w.u8(1);
                w.u8(2);
            },
            Ok(()),
        ),
        ("boolean 1", "b", |w| w.bool(true), Ok(())),
        ("boolean 2", "b", |w| w.u32(2), Err(WireError::BadBoolean)),
        (
            "boolean 0x100",
            "b",
            |w| w.u32(0x100),
            Err(WireError::BadBoolean),
        ),
        (
            "all numbers",
            "ynqiuxtdb",
            |w| {
                w.u8(1);
                w.i16(-2);
                w.u16(3);
                w.i32(-4);
                w.u32(5);
                w.i64(-6);
                w.u64(7);
                w.f64(8.5);
                w.bool(false);
            },
            Ok(()),
        ),
        (
            "non-zero padding before u32",
            "yu",
            |w| {
                w.u8(1);
                w.u8(1);
                w.u8(0);
                w.u8(0);
                w.u32(5);
            },
            Err(WireError::NonZeroPadding),
        ),
        (
            "non-zero padding before struct",
            "y(y)",
            |w| {
                w.u8(1);
                for _ in 0..7 {
                    w.u8(9);
                }
                w.u8(1);
            },
            Err(WireError::NonZeroPadding),
        ),
        ("string", "s", |w| w.string("héllo"), Ok(())),
        ("empty string", "s", |w| w.string(""), Ok(())),
        (
            "string with bad UTF-8",
            "s",
            |w| {
                w.u32(2);
                w.u8(0xc3);
                w.u8(0x28);
                w.u8(0);
            },
            Err(WireError::BadString("not valid UTF-8")),
        ),
        (
            "string with a surrogate",
            "s",
            |w| {
                w.u32(3);
                for b in [0xed, 0xa0, 0x80, 0] {
                    w.u8(b);
                }
            },
            Err(WireError::BadString("not valid UTF-8")),
        ),
        (
            "string with interior nul",
            "s",
            |w| {
                w.u32(3);
                for b in [b'a', 0, b'b', 0] {
                    w.u8(b);
                }
            },
            Err(WireError::BadString("contains a nul byte")),
        ),
        (
            "string without terminator",
            "sy",
            |w| {
                w.u32(1);
                w.u8(b'a');
                w.u8(b'b');
            },
            Err(WireError::BadString("missing nul terminator")),
        ),
        (
            "string past the end",
            "s",
            |w| {
                w.u32(10);
                w.u8(b'a');
                w.u8(0);
            },
            Err(WireError::BadBody(
                "value extends past the end of its block",
            )),
        ),
        ("object path", "o", |w| w.object_path("/a/b"), Ok(())),
        (
            "bad object path",
            "o",
            |w| w.object_path("a"),
            Err(WireError::BadBody("invalid object path")),
        ),
        ("signature", "g", |w| w.signature("a{sv}"), Ok(())),
        (
            "bad signature",
            "g",
            |w| w.signature("a{vs}"),
            Err(WireError::BadSignature(
                "dict entry key is not a basic type",
            )),
        ),
        (
            "signature of 33 arrays",
            "g",
            |w| w.signature(&format!("{}y", "a".repeat(33))),
            Err(WireError::BadSignature("more than 32 nested arrays")),
        ),
        (
            "array",
            "ai",
            |w| {
                w.array("i", |w| {
                    w.i32(1);
                    w.i32(2);
                })
            },
            Ok(()),
        ),
        (
            "empty array of structs keeps its padding",
            "a(i)",
            |w| w.array("(i)", |_| {}),
            Ok(()),
        ),
        (
            "empty array of structs without padding",
            "a(i)",
            |w| w.u32(0),
            Err(WireError::BadBody(
                "value extends past the end of its block",
            )),
        ),
        (
            "empty array of structs, non-zero padding",
            "a(i)",
            |w| {
                w.u32(0);
                w.u32(1);
            },
            Err(WireError::NonZeroPadding),
        ),
        (
            "array length not a whole element",
            "ai",
            |w| {
                w.u32(6);
                w.u32(1);
                w.u32(2);
            },
            Err(WireError::BadArray(
                "length is not a whole number of elements",
            )),
        ),
        (
            "array elements overrun the length",
            "ab",
            |w| {
                w.u32(6);
                w.u32(1);
                w.u32(0);
            },
            Err(WireError::BadArray("elements overrun the array length")),
        ),
        (
            "array of bad booleans",
            "ab",
            |w| {
                w.array("b", |w| {
                    w.bool(true);
                    w.u32(2);
                })
            },
            Err(WireError::BadBoolean),
        ),
        (
            "array of numbers",
            "ayanatad",
            |w| {
                w.byte_array(b"abc");
                w.array("n", |w| w.i16(1));
                w.array("t", |w| w.u64(1));
                w.array("d", |w| w.f64(1.0));
            },
            Ok(()),
        ),
        (
            "array length past the body",
            "ay",
            |w| {
                w.u32(8);
                w.u8(1);
            },
            Err(WireError::BadArray("extends past its container")),
        ),
        (
            "array longer than 64 MiB",
            "ay",
            big_array,
            Err(WireError::BadArray("longer than 64 MiB")),
        ),
        (
            "dict",
            "a{sv}",
            |w| {
                w.array("{sv}", |w| {
                    w.dict_entry(|w| {
                        w.string("k");
                        w.variant("i", |w| w.i32(1));
                    });
                    w.dict_entry(|w| {
                        w.string("l");
                        w.variant("as", |w| w.array("s", |w| w.string("x")));
                    });
                })
            },
            Ok(()),
        ),
        (
            "struct",
            "(yv)y",
            |w| {
                w.structure(|w| {
                    w.u8(1);
                    w.variant("y", |w| w.u8(2));
                });
                w.u8(3);
            },
            Ok(()),
        ),
        (
            "variant",
            "v",
            |w| {
                w.variant("(st)", |w| {
                    w.structure(|w| {
                        w.string("a");
                        w.u64(1);
                    })
                })
            },
            Ok(()),
        ),
        (
            "variant with two types",
            "v",
            |w| {
                w.variant("yy", |w| {
                    w.u8(1);
                    w.u8(1);
                })
            },
            Err(WireError::BadSignature("more than one complete type")),
        ),
        (
            "variant with empty signature",
            "v",
            |w| w.variant("", |_| {}),
            Err(WireError::BadSignature("not a single complete type")),
        ),
        (
            "variant of 33 arrays",
            "v",
            |w| w.variant(&format!("{}y", "a".repeat(33)), |w| w.u32(0)),
            Err(WireError::BadSignature("more than 32 nested arrays")),
        ),
        (
            "variant signature without nul",
            "vy",
            |w| {
                w.u8(1);
                w.u8(b'y');
                w.u8(b'y');
                w.u8(1);
            },
            Err(WireError::BadSignature("missing nul terminator")),
        ),
        (
            "bool inside variant",
            "v",
            |w| w.variant("b", |w| w.u32(3)),
            Err(WireError::BadBoolean),
        ),
        (
            "trailing bytes",
            "y",
            |w| {
                w.u8(1);
                w.u8(0);
            },
            Err(WireError::BadBody("bytes after the last argument")),
        ),
        (
            "body too short",
            "u",
            |w| w.u8(1),
            Err(WireError::BadBody(
                "value extends past the end of its block",
            )),
        ),
    ];
    for endian in ENDIANS {
        for (name, sig, write, expected) in &cases {
            let bytes = call(endian, sig, &body(endian, write));
            assert_eq!(parse(&bytes).map(|_| ()), *expected, "{name} ({endian:?})");
        }
        let no_sig = raw(endian, 1, 1, &[F::O(1, "/"), F::S(3, "M")], &[0]);
        assert_eq!(
            parse(&no_sig).map(|_| ()),
            Err(WireError::BadBody("a body without a signature"))
        );
        let empty_sig = raw(
            endian,
            1,
            1,
            &[F::O(1, "/"), F::S(3, "M"), F::G(8, "")],
            &[0],
        );
        assert_eq!(
            parse(&empty_sig).map(|_| ()),
            Err(WireError::BadBody("a body without a signature"))
        );
    }
}

#[test]
fn largest_array() {
    let mut data = vec![0u8; MAX_ARRAY_LEN];
    data[0] = 1;
    let msg = MessageBuilder::method_call("/", None, "M")
        .body("ay", |w| w.byte_array(&data))
        .build(1);
    assert_eq!(
        BodyReader::new(&msg).read_byte_array().map(<[u8]>::len),
        Ok(MAX_ARRAY_LEN)
    );
}

/// A value of `depth` nested variants around a byte, for signature `v`.
fn nested_variants(w: &mut BodyWriter, depth: usize) {
    if depth == 1 {
        w.variant("y", |w| w.u8(7));
    } else {
        w.variant("v", |w| nested_variants(w, depth - 1));
    }
}

fn nested_structs(w: &mut BodyWriter, structs: usize, variants: usize) {
    if structs == 0 {
        nested_variants(w, variants);
    } else {
        w.structure(|w| nested_structs(w, structs - 1, variants));
    }
}

fn nested_arrays(w: &mut BodyWriter, arrays: usize, variants: usize) {
    if arrays == 0 {
        nested_variants(w, variants);
    } else {
        let elem = format!("{}v", "a".repeat(arrays - 1));
        w.array(&elem, |w| nested_arrays(w, arrays - 1, variants));
    }
}

#[test]
fn depth_counts_through_variants() {
    let too_deep = Err(WireError::BadBody("nested more than 64 containers deep"));
    for endian in ENDIANS {
        let check = |sig: &'static str, write: &dyn Fn(&mut BodyWriter)| {
            parse(&call(endian, sig, &body(endian, write))).map(|_| ())
        };
        assert_eq!(check("v", &|w| nested_variants(w, 64)), Ok(()));
        assert_eq!(check("v", &|w| nested_variants(w, 65)), too_deep);

        let structs: &'static str = format!("{}v{}", "(".repeat(32), ")".repeat(32)).leak();
        assert_eq!(check(structs, &|w| nested_structs(w, 32, 32)), Ok(()));
        assert_eq!(check(structs, &|w| nested_structs(w, 32, 33)), too_deep);

        let arrays: &'static str = format!("{}v", "a".repeat(32)).leak();
        assert_eq!(check(arrays, &|w| nested_arrays(w, 32, 32)), Ok(()));
        assert_eq!(check(arrays, &|w| nested_arrays(w, 32, 33)), too_deep);
        // Empty arrays hold no variants, so nothing is nested deeply.
        assert_eq!(check(arrays, &|w| w.array(&arrays[1..], |_| {})), Ok(()));

        // A variant holding 32 arrays and 32 structs: 65 levels at the top, 66 in a struct.
        let sig_65: &'static str =
            format!("{}{}y{}", "a".repeat(32), "(".repeat(32), ")".repeat(32)).leak();
        assert_eq!(
            check("(v)", &|w| w.structure(|w| w.variant(sig_65, |w| w.u32(0)))),
            too_deep
        );
        assert_eq!(check("v", &|w| w.variant(sig_65, |w| w.u32(0))), too_deep);
        let sig_64: &'static str =
            format!("{}{}y{}", "a".repeat(31), "(".repeat(32), ")".repeat(32)).leak();
        assert_eq!(check("v", &|w| w.variant(sig_64, |w| w.u32(0))), Ok(()));
    }
}

/// Variant signatures of about 100 bytes, nested ten deep: their end tables outgrow the inline
/// space and the arrays inside still find their ends.
#[test]
fn long_nested_variant_signatures() {
    const FILL: usize = 100;
    fn level(w: &mut BodyWriter, depth: usize, last: u32) {
        let sig = format!("(ay{}v)", "y".repeat(FILL));
        w.variant(&sig, |w| {
            w.structure(|w| {
                w.byte_array(&[]);
                for _ in 0..FILL {
                    w.u8(1);
                }
                if depth == 1 {
                    w.variant("b", |w| w.u32(last));
                } else {
                    level(w, depth - 1, last);
                }
            })
        });
    }
    for endian in ENDIANS {
        let ok = call(endian, "v", &body(endian, |w| level(w, 10, 1)));
        assert!(parse(&ok).is_ok());
        let bad = call(endian, "v", &body(endian, |w| level(w, 10, 2)));
        assert_eq!(parse(&bad).map(|_| ()), Err(WireError::BadBoolean));
    }
}

#[test]
fn arrays_of_empty_arrays() {
    let elem: &'static str = format!("a({})", "y".repeat(200)).leak();
    let sig: &'static str = format!("a{elem}y").leak();
    for endian in ENDIANS {
        let b = body(endian, |w| {
            w.array(elem, |w| {
                for _ in 0..1000 {
                    w.array(&elem[1..], |_| {});
                }
            });
            w.u8(9);
        });
        let msg = parse(&call(endian, sig, &b)).unwrap();
        let mut r = BodyReader::new(&msg);
        r.skip().unwrap();
        assert_eq!(r.read_u8(), Ok(9));
    }
}

/// Header field values sit inside the field array, its struct and its variant: three levels,
/// leaving 61 more (as dbus-daemon counts too).
#[test]
fn depth_in_header_fields() {
    for endian in ENDIANS {
        let fields = |write: fn(&mut BodyWriter)| {
            raw(
                endian,
                1,
                1,
                &[F::O(1, "/"), F::S(3, "M"), F::Any(20, "v", write)],
                &[],
            )
        };
        let ok = fields(|w| nested_variants(w, 61));
        assert!(parse(&ok).is_ok());
        let deep = fields(|w| nested_variants(w, 62));
        assert_eq!(
            parse(&deep).map(|_| ()),
            Err(WireError::BadHeaderField(
                "nested more than 64 containers deep"
            ))
        );
    }
}

#[test]
fn header_signature_limits() {
    for endian in ENDIANS {
        let arrays_33: &'static str = format!("{}y", "a".repeat(33)).leak();
        let structs_33: &'static str = format!("{}y{}", "(".repeat(33), ")".repeat(33)).leak();
        for sig in [arrays_33, structs_33, "a{vs}", "{sv}", "()"] {
            let bytes = raw(
                endian,
                1,
                1,
                &[F::O(1, "/"), F::S(3, "M"), F::G(8, sig)],
                &[0; 8],
            );
            assert!(
                matches!(parse(&bytes), Err(WireError::BadSignature(_))),
                "{sig}"
            );
        }
        let longest: &'static str = "y".repeat(255).leak();
        let bytes = raw(
            endian,
            1,
            1,
            &[F::O(1, "/"), F::S(3, "M"), F::G(8, longest)],
            &[0; 255],
        );
        assert!(parse(&bytes).is_ok());
    }
}

#[test]
fn builder_round_trip() {
    for endian in ENDIANS {
        let msg = MessageBuilder::method_call("/a/b", Some("org.example.I"), "Call")
            .endian(endian)
            .destination(":1.2")
            .sender("org.freedesktop.DBus")
            .flags(Flags(Flags::NO_AUTO_START))
            .unix_fds(1)
            .body("ybnqiuxtdsoghayasa{ss}a{sv}v(ia(s))", |w| {
                w.u8(0xfe);
                w.bool(true);
                w.i16(-3);
                w.u16(4);
                w.i32(-5);
                w.u32(6);
                w.i64(-7);
                w.u64(8);
                w.f64(-0.25);
                w.string("str");
                w.object_path("/p");
                w.signature("a(ii)");
                w.unix_fd(0);
                w.byte_array(b"bytes");
                w.array("s", |w| {
                    w.string("x");
                    w.string("yz");
                });
                w.array("{ss}", |w| {
                    w.dict_entry(|w| {
                        w.string("a");
                        w.string("b");
                    });
                    w.dict_entry(|w| {
                        w.string("c");
                        w.string("d");
                    });
                });
                w.array("{sv}", |w| {
                    w.dict_entry(|w| {
                        w.string("n");
                        w.variant("u", |w| w.u32(11));
                    });
                });
                w.variant("s", |w| w.string("in a variant"));
                w.structure(|w| {
                    w.i32(1);
                    w.array("(s)", |w| w.structure(|w| w.string("deep")));
                });
            })
            .build_with_fds(9, vec![dev_null()]);
        assert_eq!(msg.endian(), endian);
        assert_eq!(msg.serial(), 9);
        assert_eq!(msg.flags(), Flags(Flags::NO_AUTO_START));
        assert!(msg.flags().no_auto_start());
        assert!(msg.expects_reply());
        assert_eq!(msg.unix_fds(), 1);
        assert_eq!(msg.fds().len(), 1);
        assert_eq!(msg.sender(), Some("org.freedesktop.DBus"));
        assert_eq!(msg.body_offset() % 8, 0);

        let mut r = BodyReader::new(&msg);
        assert_eq!(
            r.read_u32(),
            Err(WireError::BadBody("argument of another type"))
        );
        assert_eq!(r.read_u8(), Ok(0xfe));
        assert_eq!(r.read_bool(), Ok(true));
        assert_eq!(r.read_i16(), Ok(-3));
        assert_eq!(r.read_u16(), Ok(4));
        assert_eq!(r.read_i32(), Ok(-5));
        assert_eq!(r.read_u32(), Ok(6));
        assert_eq!(r.read_i64(), Ok(-7));
        assert_eq!(r.read_u64(), Ok(8));
        assert_eq!(r.read_f64(), Ok(-0.25));
        assert_eq!(r.read_str(), Ok("str"));
        assert_eq!(r.read_str(), Ok("/p"));
        assert_eq!(r.read_signature(), Ok("a(ii)"));
        assert_eq!(r.read_unix_fd(), Ok(0));
        assert_eq!(r.read_byte_array(), Ok(&b"bytes"[..]));
        assert_eq!(
            r.read_str_dict(),
            Err(WireError::BadBody("argument of another type"))
        );
        assert_eq!(r.read_str_array(), Ok(vec!["x", "yz"]));
        assert_eq!(
            r.read_str_array(),
            Err(WireError::BadBody("argument of another type"))
        );
        assert_eq!(r.read_str_dict(), Ok(vec![("a", "b"), ("c", "d")]));
        let dict = r.read_variant_dict().unwrap();
        assert_eq!(dict.len(), 1);
        assert_eq!(dict[0].0, "n");
        assert_eq!(dict[0].1.clone().read_u32(), Ok(11));
        assert_eq!(r.read_variant().unwrap().read_str(), Ok("in a variant"));
        assert_eq!(r.remaining_signature(), "(ia(s))");
        r.skip().unwrap();
        assert!(r.is_at_end());
        assert_eq!(r.read_str(), Err(WireError::BadBody("no more arguments")));

        let args: Vec<_> = msg.args(100).collect();
        assert_eq!(args.len(), 19);
        assert_eq!(args[9], Arg::Str("str"));
        assert_eq!(args[10], Arg::ObjectPath("/p"));
        assert_eq!(args[11], Arg::Signature("a(ii)"));
        assert_eq!(args[17], Arg::Other);
        assert_eq!(msg.args(2).count(), 2);
        assert_eq!(msg.args(0).count(), 0);
    }
}

#[test]
fn builder_message_types() {
    let ret = MessageBuilder::method_return(4)
        .destination(":1.1")
        .build(2);
    assert_eq!(ret.message_type(), MessageType::MethodReturn);
    assert_eq!(ret.reply_serial(), Some(4));
    assert_eq!(ret.signature(), "");
    assert!(ret.body().is_empty());
    let err = MessageBuilder::error(4, "org.freedesktop.DBus.Error.Failed")
        .body("s", |w| w.string("why"))
        .build(3);
    assert_eq!(err.message_type(), MessageType::Error);
    assert_eq!(err.error_name(), Some("org.freedesktop.DBus.Error.Failed"));
    assert_eq!(err.args(1).next(), Some(Arg::Str("why")));
    let sig = MessageBuilder::signal("/", "a.b", "S").build(4);
    assert_eq!(sig.message_type(), MessageType::Signal);
    assert_eq!(sig.interface(), Some("a.b"));
    let call = MessageBuilder::method_call("/", None, "M")
        .flags(Flags(Flags::NO_REPLY_EXPECTED))
        .build(5);
    assert_eq!(call.interface(), None);
    assert!(!call.expects_reply());
    assert_eq!(call.endian(), Endian::NATIVE);
    assert!(call.to_outgoing().parts()[0].is_empty());
    assert_eq!(call.to_outgoing().parts()[1], call.as_bytes());
}

#[test]
#[should_panic(expected = "MessageBuilder produced an invalid message")]
fn builder_panics_on_misuse() {
    let _ = MessageBuilder::method_call("/", None, "M")
        .body("s", |w| w.u32(1))
        .build(1);
}

#[test]
fn empty_arrays_keep_element_padding() {
    for endian in ENDIANS {
        let msg = MessageBuilder::method_call("/", None, "M")
            .endian(endian)
            .body("ya(t)y", |w| {
                w.u8(1);
                w.array("(t)", |_| {});
                w.u8(2);
            })
            .build(1);
        // y, 3 padding, length, 0 padding (already at 8), y.
        assert_eq!(msg.body().len(), 9);
        let mut r = BodyReader::new(&msg);
        assert_eq!(r.read_u8(), Ok(1));
        r.skip().unwrap();
        assert_eq!(r.read_u8(), Ok(2));
        let msg = MessageBuilder::method_call("/", None, "M")
            .endian(endian)
            .body("a(t)", |w| w.array("(t)", |_| {}))
            .build(1);
        assert_eq!(msg.body().len(), 8);
    }
}

#[test]
fn stamp_sender_rewrites_the_header() {
    for endian in ENDIANS {
        let fields = [
            F::U(42, 7),
            F::S(7, ":1.99"),
            F::O(1, "/o"),
            F::S(2, "a.b"),
            F::S(3, "M"),
            F::S(6, "x.y"),
            F::Any(43, "as", |w| w.array("s", |w| w.string("dropped"))),
            F::G(8, "sh"),
            F::U(9, 1),
            F::S(4, "e.f"),
            F::U(5, 8),
        ];
        let b = body(endian, |w| {
            w.string("payload");
            w.unix_fd(0);
        });
        let bytes = raw(endian, 4, 77, &fields, &b);
        let msg = Message::parse(Arc::from(&bytes[..]), vec![dev_null()]).unwrap();
        let out = msg.stamp_sender(":1.5");
        let [head, rest] = out.parts();
        assert_eq!(head.len() % 8, 0);
        assert_eq!(rest, b.as_slice());
        assert_eq!(out.len(), head.len() + b.len());
        assert!(!out.is_empty());
        assert_eq!(out.fds().len(), 1);
        let again = Message::parse(out.parts().concat().into(), vec![dev_null()]).unwrap();
        assert_eq!(again.endian(), endian);
        assert_eq!(again.message_type(), MessageType::Signal);
        assert_eq!(again.serial(), 77);
        assert_eq!(again.sender(), Some(":1.5"));
        assert_eq!(again.path(), Some("/o"));
        assert_eq!(again.interface(), Some("a.b"));
        assert_eq!(again.member(), Some("M"));
        assert_eq!(again.error_name(), Some("e.f"));
        assert_eq!(again.reply_serial(), Some(8));
        assert_eq!(again.destination(), Some("x.y"));
        assert_eq!(again.signature(), "sh");
        assert_eq!(again.unix_fds(), 1);
        assert_eq!(again.body(), b.as_slice());
        // Only the nine known fields remain: the unknown ones are gone.
        let expected = raw(
            endian,
            4,
            77,
            &[
                F::O(1, "/o"),
                F::S(2, "a.b"),
                F::S(3, "M"),
                F::S(4, "e.f"),
                F::U(5, 8),
                F::S(6, "x.y"),
                F::S(7, ":1.5"),
                F::G(8, "sh"),
                F::U(9, 1),
            ],
            &b,
        );
        assert_eq!(out.parts().concat(), expected);

        // A message without SENDER gains one.
        let plain = parse(&call(endian, "", &[])).unwrap();
        let stamped = parse(&plain.stamp_sender(":1.1").parts().concat()).unwrap();
        assert_eq!(stamped.sender(), Some(":1.1"));
        assert_eq!(stamped.path(), Some("/"));
        assert_eq!(stamped.signature(), "");
    }
}

/// What [`Message::stamp_sender`] must produce, marshalled field by field from the accessors
/// (an oracle for the copying implementation).
fn remarshalled(msg: &Message, sender: &str) -> Vec<u8> {
    let mut fields = HeaderFields::default();
    fn text(s: Option<&str>) -> Option<&[u8]> {
        s.map(str::as_bytes)
    }
    if let Some(v) = text(msg.path()) {
        fields.push(FIELD_PATH, FieldValue::Str(b'o', v));
    }
    if let Some(v) = text(msg.interface()) {
        fields.push(FIELD_INTERFACE, FieldValue::Str(b's', v));
    }
    if let Some(v) = text(msg.member()) {
        fields.push(FIELD_MEMBER, FieldValue::Str(b's', v));
    }
    if let Some(v) = text(msg.error_name()) {
        fields.push(FIELD_ERROR_NAME, FieldValue::Str(b's', v));
    }
    if let Some(v) = msg.reply_serial() {
        fields.push(FIELD_REPLY_SERIAL, FieldValue::U32(v));
    }
    if let Some(v) = text(msg.destination()) {
        fields.push(FIELD_DESTINATION, FieldValue::Str(b's', v));
    }
    fields.push(FIELD_SENDER, FieldValue::Str(b's', sender.as_bytes()));
    if !msg.signature().is_empty() {
        fields.push(FIELD_SIGNATURE, FieldValue::Sig(msg.signature().as_bytes()));
    }
    if msg.unix_fds() != 0 {
        fields.push(FIELD_UNIX_FDS, FieldValue::U32(msg.unix_fds()));
    }
    let mut out = msg.as_bytes()[..12].to_vec();
    fields.write(&mut out, msg.endian());
    assert_eq!(out.len(), fields.header_len());
    out.extend_from_slice(msg.body());
    out
}

#[test]
fn received_messages_carry_their_forwarding_header() {
    for endian in ENDIANS {
        for path_len in [1, 100, 300] {
            let path = format!("/{}", "p".repeat(path_len - 1));
            let msg = MessageBuilder::method_call(&path, Some("a.b"), "M")
                .endian(endian)
                .destination(":1.1")
                .body("s", |w| w.string("hi"))
                .build(3);
            let bytes = msg.as_bytes();
            let mut queue = VecDeque::new();
            for sender in [None, Some(":1.2")] {
                let received = Message::receive(bytes, &mut queue, sender).unwrap();
                assert_eq!(received.as_bytes(), bytes);
                assert_eq!(received.body(), msg.body());
                assert_eq!(received.path(), Some(path.as_str()));
                assert_eq!(received.stamp.is_some(), sender.is_some());
                // Prepared for this sender or not, and for another one: the same bytes.
                for name in [":1.2", ":1.77"] {
                    let out = received.stamp_sender(name);
                    assert_eq!(out.parts().concat(), remarshalled(&msg, name), "{path_len}");
                    let prepared = sender == Some(name);
                    assert_eq!(out.own_head.is_empty(), prepared);
                    assert_eq!(out.len(), out.parts().concat().len());
                }
                assert_eq!(received.to_outgoing().parts().concat(), bytes);
            }
            // Read in place into a buffer with room, possibly holding old bytes.
            let room = receive_buffer_len(bytes, Some(":1.2")).unwrap().unwrap();
            assert!(room >= bytes.len() + remarshalled(&msg, ":1.2").len() - msg.body().len());
            for junk in [0, 0xff] {
                let mut buf = vec![junk; room + 5];
                buf[..bytes.len()].copy_from_slice(bytes);
                let buf: Arc<[u8]> = buf.into();
                let kept = buf.clone();
                let shared =
                    Message::receive_in_place(buf.clone(), bytes.len(), &mut queue, Some(":1.2"))
                        .unwrap();
                assert!(shared.stamp.is_none(), "a shared buffer is not written to");
                drop((shared, kept));
                let received =
                    Message::receive_in_place(buf, bytes.len(), &mut queue, Some(":1.2")).unwrap();
                assert!(received.stamp.is_some());
                assert_eq!(received.as_bytes(), bytes);
                let out = received.stamp_sender(":1.2");
                assert!(out.own_head.is_empty());
                assert_eq!(out.parts().concat(), remarshalled(&msg, ":1.2"));
            }
            // Copied into a buffer of the caller's: a reused one holding old bytes, one that is
            // too short, one that is shared. The last two fall back to a buffer of its own.
            for junk in [0, 0xff] {
                let reused: Arc<[u8]> = vec![junk; room + 100].into();
                let reused_at = Arc::as_ptr(&reused);
                let received = Message::receive_with(bytes, &mut queue, Some(":1.2"), |n| {
                    assert_eq!(n, room);
                    reused
                })
                .unwrap();
                assert_eq!(Arc::as_ptr(received.buffer()), reused_at);
                assert_eq!(received.as_bytes(), bytes);
                let out = received.stamp_sender(":1.2");
                assert!(out.own_head.is_empty());
                assert_eq!(out.parts().concat(), remarshalled(&msg, ":1.2"));
            }
            let shared: Arc<[u8]> = vec![0; room].into();
            let kept = shared.clone();
            for buf in [vec![0; room - 1].into(), shared] {
                let received =
                    Message::receive_with(bytes, &mut queue, Some(":1.2"), |_| buf).unwrap();
                assert!(!Arc::ptr_eq(received.buffer(), &kept));
                assert_eq!(received.as_bytes(), bytes);
                assert_eq!(
                    received.stamp_sender(":1.2").parts().concat(),
                    remarshalled(&msg, ":1.2")
                );
            }
            // Too little room: no header prepared, still correct.
            let buf: Arc<[u8]> = bytes.to_vec().into();
            let received =
                Message::receive_in_place(buf, bytes.len(), &mut queue, Some(":1.2")).unwrap();
            assert!(received.stamp.is_none());
            assert_eq!(
                received.stamp_sender(":1.2").parts().concat(),
                remarshalled(&msg, ":1.2")
            );
            let buf: Arc<[u8]> = bytes.to_vec().into();
            assert_eq!(
                Message::receive_in_place(buf, bytes.len() + 1, &mut queue, None).unwrap_err(),
                WireError::Truncated
            );
        }
    }
}

#[test]
fn headers_in_canonical_order_are_stamped_by_insertion() {
    fn unknown(w: &mut BodyWriter) {
        w.u32(5);
    }
    // (fields, whether SENDER can be inserted, and before which field)
    let cases: &[(&[F], Option<u8>)] = &[
        (
            &[
                F::O(1, "/"),
                F::S(2, "a.b"),
                F::S(3, "M"),
                F::S(6, "x.y"),
                F::G(8, "s"),
            ],
            Some(8),
        ),
        (&[F::O(1, "/"), F::S(3, "M")], Some(0)),
        (&[F::O(1, "/"), F::S(3, "M"), F::U(9, 1)], Some(9)),
        (
            &[F::O(1, "/"), F::S(3, "M"), F::G(8, "s"), F::U(9, 1)],
            Some(8),
        ),
        (&[F::S(3, "M"), F::O(1, "/")], None),
        (&[F::O(1, "/"), F::S(3, "M"), F::S(7, ":1.3")], None),
        (&[F::O(1, "/"), F::S(3, "M"), F::U(9, 0)], None),
        (
            &[F::O(1, "/"), F::S(3, "M"), F::Any(43, "u", unknown)],
            None,
        ),
        (
            &[F::Any(43, "u", unknown), F::O(1, "/"), F::S(3, "M")],
            None,
        ),
    ];
    for endian in ENDIANS {
        for (i, (fields, before)) in cases.iter().enumerate() {
            let has_body = fields.iter().any(|f| matches!(f, F::G(..)));
            let b = if has_body {
                body(endian, |w| w.string("x"))
            } else {
                Vec::new()
            };
            let unix_fds = fields.iter().any(|f| matches!(f, F::U(9, 1)));
            let bytes = raw(endian, 1, 9, fields, &b);
            let fds = if unix_fds {
                vec![dev_null()]
            } else {
                Vec::new()
            };
            let msg = Message::parse(Arc::from(&bytes[..]), fds).unwrap();
            let at = msg.h.sender_at.map(|at| at.get() as usize);
            let expected = before.map(|code| match code {
                0 => msg.body_offset(),
                code => (16..msg.h.fields_end as usize)
                    .step_by(8)
                    .find(|&p| bytes[p] == code)
                    .unwrap(),
            });
            assert_eq!(at, expected, "case {i}");
            for sender in [":1.5", "org.example.LongerName"] {
                let out = msg.stamp_sender(sender);
                assert_eq!(out.parts().concat(), remarshalled(&msg, sender), "case {i}");
            }
        }
    }
}

#[test]
fn receive_validates_before_copying() {
    let mut bytes = call(Endian::Little, "", &[]);
    bytes[3] = 2;
    let mut queue = VecDeque::new();
    assert_eq!(
        Message::receive(&bytes, &mut queue, Some(":1.1")).unwrap_err(),
        WireError::BadVersion(2)
    );
    let msg = MessageBuilder::signal("/a", "a.b", "C")
        .unix_fds(2)
        .build(1);
    queue.push_back(dev_null());
    assert!(matches!(
        Message::receive(msg.as_bytes(), &mut queue, None),
        Err(WireError::FdCountMismatch {
            declared: 2,
            received: 1
        })
    ));
    assert_eq!(queue.len(), 1, "nothing taken from the queue on error");
    queue.push_back(dev_null());
    let received = Message::receive(msg.as_bytes(), &mut queue, Some(":1.4")).unwrap();
    assert_eq!((received.fds().len(), queue.len()), (2, 0));
    assert_eq!(received.stamp_sender(":1.4").fds().len(), 2);
}

#[test]
fn big_endian_body_is_forwarded_unchanged() {
    let (_, bytes) = gdbus_fixtures()
        .into_iter()
        .find(|(n, _)| *n == "call_be")
        .unwrap();
    let msg = parse(&bytes).unwrap();
    let out = msg.stamp_sender(":1.42");
    assert_eq!(out.parts()[0][0], b'B');
    assert_eq!(out.parts()[1], msg.body());
    assert_eq!(out.parts()[1], &bytes[msg.body_offset()..]);
    let again = parse(&out.parts().concat()).unwrap();
    assert_eq!(again.endian(), Endian::Big);
    assert_eq!(again.sender(), Some(":1.42"));
    assert_eq!(again.args(1).next(), Some(Arg::Str("hi")));
}

/// xorshift64*: a small deterministic generator for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Exercises everything that can be asked of a parsed message.
fn exercise(msg: &Message) {
    let _ = (msg.path(), msg.interface(), msg.member(), msg.error_name());
    let _ = (
        msg.destination(),
        msg.sender(),
        msg.signature(),
        msg.reply_serial(),
    );
    let _ = msg.args(64).count();
    let mut r = BodyReader::new(msg);
    while !r.is_at_end() {
        let mut probe = r.clone();
        let _ = probe.read_str();
        let _ = r.clone().read_variant_dict();
        let _ = r.clone().read_variant().map(|mut v| v.skip());
        r.skip()
            .expect("a validated body can be skipped argument by argument");
    }
    let stamped = msg.stamp_sender(":1.7").parts().concat();
    assert_eq!(
        stamped,
        remarshalled(msg, ":1.7"),
        "stamping copies what it keeps exactly"
    );
    let mut fds: VecDeque<OwnedFd> = (0..msg.unix_fds()).map(|_| dev_null()).collect();
    let received = Message::receive(msg.as_bytes(), &mut fds, Some(":1.7")).unwrap();
    assert_eq!(received.stamp_sender(":1.7").parts().concat(), stamped);
    let fds = (0..msg.unix_fds()).map(|_| dev_null()).collect();
    let again = Message::parse(stamped.into(), fds).expect("a stamped message is valid");
    assert_eq!(again.body(), msg.body());
}

#[test]
fn mutations_never_panic() {
    let mut seeds: Vec<Vec<u8>> = gdbus_fixtures().into_iter().map(|(_, b)| b).collect();
    for endian in ENDIANS {
        seeds.push(call(
            endian,
            "a(t)ya{sv}",
            &body(endian, |w| {
                w.array("(t)", |_| {});
                w.u8(1);
                w.array("{sv}", |w| {
                    w.dict_entry(|w| {
                        w.string("k");
                        w.variant("av", |w| {
                            w.array("v", |w| w.variant("g", |w| w.signature("ai")))
                        });
                    })
                });
            }),
        ));
        seeds.push(raw(
            endian,
            1,
            1,
            &[
                F::O(1, "/"),
                F::S(3, "M"),
                F::Any(50, "(bv)", |w| {
                    w.structure(|w| {
                        w.bool(false);
                        w.variant("ah", |w| w.array("h", |_| {}));
                    })
                }),
            ],
            &[],
        ));
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for round in 0..40_000 {
        let mut b = seeds[round % seeds.len()].clone();
        match rng.below(8) {
            0 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            1 => {
                let at = rng.below(b.len());
                b.insert(at, rng.next() as u8);
            }
            _ => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = match rng.below(4) {
                        0 => 0,
                        1 => 0xff,
                        2 => b[at] ^ (1 << rng.below(8)),
                        _ => rng.next() as u8,
                    };
                }
            }
        }
        let framed = frame_len(&b).ok().flatten();
        if let Ok(msg) = parse(&b) {
            accepted += 1;
            assert_eq!(framed, Some(b.len()));
            exercise(&msg);
        }
        let n = rng.below(3);
        let _ = Message::parse(Arc::from(&b[..]), (0..n).map(|_| dev_null()).collect());
    }
    // Some mutations (in string text, in numbers) leave the message valid.
    assert!(accepted > 100, "only {accepted} mutants were valid");
}

#[test]
fn parse_from_queue_takes_exactly_the_declared_fds() {
    use std::collections::VecDeque;
    let bytes = MessageBuilder::method_call("/", None, "M")
        .destination("org.example.A")
        .unix_fds(2)
        .body("hh", |w| {
            w.unix_fd(0);
            w.unix_fd(1);
        })
        .build_with_fds(1, pipe_fds(2));
    let data: Arc<[u8]> = Arc::from(bytes.as_bytes());
    let mut queue: VecDeque<OwnedFd> = pipe_fds(3).into();
    let msg = Message::parse_from_queue(data.clone(), &mut queue).expect("valid");
    assert_eq!(msg.fds().len(), 2);
    assert_eq!(queue.len(), 1, "the next message's fd stays queued");
    assert_eq!(
        Message::parse_from_queue(data, &mut queue).unwrap_err(),
        WireError::FdCountMismatch {
            declared: 2,
            received: 1
        }
    );
    assert_eq!(queue.len(), 1, "nothing is taken from a short queue");
}

fn pipe_fds(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| {
            let (r, _w) = std::io::pipe().expect("pipe");
            OwnedFd::from(r)
        })
        .collect()
}
