//! The properties of every message [`Message::parse`] accepts.
//!
//! [`check_accepted`] asserts them all: a consistent fixed header and valid header fields, a
//! [`Message::stamp_sender`] result that parses again with every known field kept and the body
//! unchanged, [`Message::args`] classifying each argument by its type, and [`BodyReader`]
//! reading (or skipping) every argument, nested variants included, the same way whichever
//! arguments it skips.

use std::sync::Arc;

use tram_wire::names;
use tram_wire::{Arg, BodyReader, Message, MessageType, Outgoing, WireError, frame_len, signature};

use crate::fds;

/// The unique name the targets stamp messages with.
pub const STAMP: &str = ":1.7";

/// How many leading arguments match rules look at (`arg0` to `arg63`).
pub const MAX_ARGS: usize = 64;

/// [`Message::parse`] with as many descriptors as the message declares, up to
/// [`fds::MAX_FDS`]; a message declaring more gets none, and is refused for that.
///
/// # Errors
/// Whatever [`Message::parse`] finds wrong.
pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
    let data: Arc<[u8]> = Arc::from(bytes);
    match Message::parse(Arc::clone(&data), Vec::new()) {
        Err(WireError::FdCountMismatch {
            declared,
            received: 0,
        }) if declared <= fds::MAX_FDS => Message::parse(data, fds::owned(declared)),
        other => other,
    }
}

/// Asserts every property of an accepted message (see the module documentation).
pub fn check_accepted(msg: &Message) {
    check_header(msg);
    check_outgoing(msg);
    let readings = check_reader(msg);
    check_args(msg, &readings);
}

/// The bytes an [`Outgoing`] writes, in one buffer.
pub fn outgoing_bytes(out: &Outgoing) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(out.len());
    for part in out.parts() {
        bytes.extend_from_slice(part);
    }
    bytes
}

/// The single complete types `sig` is made of, in order. `sig` must be a valid signature.
pub fn top_level_types(sig: &str) -> Vec<&str> {
    let b = sig.as_bytes();
    let mut types = Vec::new();
    let mut start = 0;
    while start < b.len() {
        let end = type_end(b, start);
        types.push(sig.get(start..end).expect("a signature is ASCII"));
        start = end;
    }
    types
}

/// Asserts that two messages agree on every header field but SENDER, and on the body.
pub fn assert_same_but_sender(a: &Message, b: &Message) {
    assert_eq!(a.endian(), b.endian(), "endianness");
    assert_eq!(a.message_type(), b.message_type(), "message type");
    assert_eq!(a.flags(), b.flags(), "flags");
    assert_eq!(a.serial(), b.serial(), "serial");
    assert_eq!(a.reply_serial(), b.reply_serial(), "REPLY_SERIAL");
    assert_eq!(a.path(), b.path(), "PATH");
    assert_eq!(a.interface(), b.interface(), "INTERFACE");
    assert_eq!(a.member(), b.member(), "MEMBER");
    assert_eq!(a.error_name(), b.error_name(), "ERROR_NAME");
    assert_eq!(a.destination(), b.destination(), "DESTINATION");
    assert_eq!(a.signature(), b.signature(), "SIGNATURE");
    assert_eq!(a.unix_fds(), b.unix_fds(), "UNIX_FDS");
    assert_eq!(a.body(), b.body(), "body");
}

fn check_header(msg: &Message) {
    let bytes = msg.as_bytes();
    assert_ne!(msg.serial(), 0, "serial 0 accepted");
    assert_eq!(bytes.first(), Some(&msg.endian().to_byte()));
    assert_eq!(bytes.get(1), Some(&msg.message_type().to_byte()));
    assert_eq!(bytes.get(2), Some(&msg.flags().0));
    assert_eq!(bytes.get(3), Some(&1), "protocol version");
    assert_eq!(
        frame_len(bytes),
        Ok(Some(bytes.len())),
        "frame_len of an accepted message"
    );
    let body_offset = msg.body_offset();
    assert_eq!(body_offset % 8, 0, "body offset {body_offset}");
    assert_eq!(bytes.get(body_offset..), Some(msg.body()));
    assert_eq!(
        msg.fds().len(),
        msg.unix_fds() as usize,
        "fds against UNIX_FDS"
    );
    assert_ne!(msg.reply_serial(), Some(0), "REPLY_SERIAL 0 accepted");

    let check = |what: &str, value: Option<&str>, valid: fn(&str) -> bool| {
        if let Some(v) = value {
            assert!(valid(v), "invalid {what} accepted: {v:?}");
        }
    };
    check("PATH", msg.path(), names::is_valid_object_path);
    check("INTERFACE", msg.interface(), names::is_valid_interface);
    check("MEMBER", msg.member(), names::is_valid_member);
    check("ERROR_NAME", msg.error_name(), names::is_valid_error_name);
    check("DESTINATION", msg.destination(), names::is_valid_bus_name);
    check("SENDER", msg.sender(), names::is_valid_bus_name);
    assert!(
        signature::validate(msg.signature().as_bytes()).is_ok(),
        "invalid SIGNATURE accepted: {:?}",
        msg.signature()
    );
    assert_eq!(
        msg.signature().is_empty(),
        msg.body().is_empty(),
        "a body without a signature, or a signature without a body"
    );

    let required: &[(&str, bool)] = match msg.message_type() {
        MessageType::MethodCall => &[
            ("PATH", msg.path().is_some()),
            ("MEMBER", msg.member().is_some()),
        ],
        MessageType::MethodReturn => &[("REPLY_SERIAL", msg.reply_serial().is_some())],
        MessageType::Error => &[
            ("ERROR_NAME", msg.error_name().is_some()),
            ("REPLY_SERIAL", msg.reply_serial().is_some()),
        ],
        MessageType::Signal => &[
            ("PATH", msg.path().is_some()),
            ("INTERFACE", msg.interface().is_some()),
            ("MEMBER", msg.member().is_some()),
        ],
        MessageType::Unknown(t) => {
            assert!(t > 4, "type {t} taken for an unknown one");
            &[]
        }
    };
    for (field, present) in required {
        assert!(present, "{:?} without {field} accepted", msg.message_type());
    }
    assert_eq!(
        msg.expects_reply(),
        msg.message_type() == MessageType::MethodCall && !msg.flags().no_reply_expected()
    );
}

/// `to_outgoing` sends the message as it is; `stamp_sender` gives a message that parses again,
/// with SENDER replaced, every other known field and the body kept, in a canonical form that
/// stamping again does not change.
fn check_outgoing(msg: &Message) {
    let plain = msg.to_outgoing();
    assert_eq!(
        outgoing_bytes(&plain),
        msg.as_bytes(),
        "to_outgoing changed the message"
    );
    assert_eq!(plain.len(), msg.as_bytes().len());

    // Stamping can only grow a message by the SENDER field, which stays far below the 128 MiB
    // limit for anything a fuzzer feeds.
    let out = msg.stamp_sender(STAMP);
    let bytes = outgoing_bytes(&out);
    assert_eq!(bytes.len(), out.len(), "Outgoing::len");
    assert!(!out.is_empty());
    assert_eq!(
        out.fds().len(),
        msg.fds().len(),
        "fds of the stamped message"
    );
    let stamped = parse(&bytes)
        .unwrap_or_else(|e| panic!("stamped message refused: {e}\nstamped: {}", hex(&bytes)));
    assert_same_but_sender(msg, &stamped);
    assert_eq!(stamped.sender(), Some(STAMP), "SENDER after stamping");

    let again = outgoing_bytes(&stamped.stamp_sender(STAMP));
    assert_eq!(again, bytes, "stamping a stamped message changed it");
}

/// What reading one argument gave, for comparing two walks over the same body: the value as text,
/// nested readings joined (not escaped again, so the text grows linearly with nesting).
type Reading = String;

/// Reads the body twice: once reading every argument it can with its typed reader, once skipping
/// every other argument. Both walks must succeed, end exactly at the end, and read the same
/// values where both read. Returns the first walk's readings, by argument.
fn check_reader(msg: &Message) -> Vec<Option<Reading>> {
    let all = walk(BodyReader::new(msg), msg.unix_fds(), &|_| false, 0);
    let some = walk(BodyReader::new(msg), msg.unix_fds(), &|i| i % 2 == 0, 0);
    for (i, (a, b)) in all.iter().zip(&some).enumerate() {
        if let (Some(a), Some(b)) = (a, b) {
            assert_eq!(
                a, b,
                "argument {i} read differently after skipping the ones before"
            );
        }
    }
    all
}

/// Walks every argument of `r`: skips those `skip` picks (by index) and those without a typed
/// reader, reads the others. Descends into variants and `a{sv}` values.
fn walk(
    mut r: BodyReader<'_>,
    unix_fds: u32,
    skip: &dyn Fn(usize) -> bool,
    depth: usize,
) -> Vec<Option<Reading>> {
    assert!(depth <= 64, "variants nested deeper than 64");
    let sig = r.remaining_signature();
    let types = top_level_types(sig);
    let mut readings = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let rest: String = types.get(i..).unwrap_or_default().concat();
        assert_eq!(
            r.remaining_signature(),
            rest,
            "remaining signature before argument {i}"
        );
        assert!(!r.is_at_end());
        if skip(i) {
            r.skip()
                .unwrap_or_else(|e| panic!("skipping argument {i} ({ty}): {e}"));
            readings.push(None);
            continue;
        }
        let fail = |e: WireError| -> Reading { panic!("reading argument {i} ({ty}): {e}") };
        let reading = match *ty {
            "y" => r.read_u8().map_or_else(fail, |v| format!("{v}")),
            "b" => r.read_bool().map_or_else(fail, |v| format!("{v}")),
            "n" => r.read_i16().map_or_else(fail, |v| format!("{v}")),
            "q" => r.read_u16().map_or_else(fail, |v| format!("{v}")),
            "i" => r.read_i32().map_or_else(fail, |v| format!("{v}")),
            "u" => r.read_u32().map_or_else(fail, |v| format!("{v}")),
            "x" => r.read_i64().map_or_else(fail, |v| format!("{v}")),
            "t" => r.read_u64().map_or_else(fail, |v| format!("{v}")),
            "d" => r
                .read_f64()
                .map_or_else(fail, |v| format!("{:x}", v.to_bits())),
            "h" => r.read_unix_fd().map_or_else(fail, |v| {
                assert!(v < unix_fds, "fd index {v} of {unix_fds} accepted");
                format!("{v}")
            }),
            "s" | "o" => r.read_str().map_or_else(fail, |v| format!("{v:?}")),
            "g" => r.read_signature().map_or_else(fail, |v| {
                assert!(
                    signature::validate(v.as_bytes()).is_ok(),
                    "invalid g value {v:?}"
                );
                format!("{v:?}")
            }),
            "ay" => r.read_byte_array().map_or_else(fail, |v| format!("{v:?}")),
            "as" => r.read_str_array().map_or_else(fail, |v| format!("{v:?}")),
            "a{ss}" => r.read_str_dict().map_or_else(fail, |v| format!("{v:?}")),
            "a{sv}" => r.read_variant_dict().map_or_else(fail, |entries| {
                let inner: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| format!("{k:?}: {}", variant_reading(v, unix_fds, depth)))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }),
            "v" => r
                .read_variant()
                .map_or_else(fail, |v| variant_reading(v, unix_fds, depth)),
            _ => {
                r.skip()
                    .unwrap_or_else(|e| panic!("skipping argument {i} ({ty}): {e}"));
                readings.push(None);
                continue;
            }
        };
        readings.push(Some(reading));
    }
    assert!(r.is_at_end(), "reader not at the end after every argument");
    assert_eq!(r.remaining_signature(), "");
    assert!(r.skip().is_err(), "skip past the end succeeded");
    assert!(r.read_u8().is_err(), "read past the end succeeded");
    readings
}

/// The readings inside a variant, whose reader holds exactly one complete type.
fn variant_reading(inner: BodyReader<'_>, unix_fds: u32, depth: usize) -> Reading {
    let sig = inner.remaining_signature().to_owned();
    assert_eq!(top_level_types(&sig).len(), 1, "variant signature {sig:?}");
    // Inside a variant, read everything: the skipping pattern applies to the outer arguments.
    let inner = walk(inner, unix_fds, &|_| false, depth + 1);
    // Joined rather than Debug-formatted: escaping nested readings again at every level would
    // double their size per level.
    let inner: Vec<&str> = inner.iter().map(|r| r.as_deref().unwrap_or("-")).collect();
    format!("<{sig}> [{}]", inner.join(", "))
}

/// `args` classifies each of the first 64 arguments by its type, with the values the typed
/// readers read, and stops at the end of the body.
fn check_args(msg: &Message, readings: &[Option<Reading>]) {
    let types = top_level_types(msg.signature());
    let args: Vec<Arg<'_>> = msg.args(MAX_ARGS).collect();
    assert_eq!(args.len(), types.len().min(MAX_ARGS), "number of args()");
    for (i, (arg, ty)) in args.iter().zip(&types).enumerate() {
        let reading = readings.get(i).cloned().flatten();
        match (*ty, arg) {
            ("s", Arg::Str(s)) | ("o", Arg::ObjectPath(s)) | ("g", Arg::Signature(s)) => {
                assert_eq!(
                    reading,
                    Some(format!("{s:?}")),
                    "args() value of argument {i}"
                );
            }
            (_, Arg::Other) if !matches!(*ty, "s" | "o" | "g") => {}
            _ => panic!("argument {i} of type {ty} classified as {arg:?}"),
        }
        if let Arg::ObjectPath(p) = arg {
            assert!(
                names::is_valid_object_path(p),
                "invalid object path argument {p:?}"
            );
        }
    }
    let half = types.len().min(MAX_ARGS) / 2;
    assert_eq!(
        msg.args(half).collect::<Vec<_>>(),
        args.get(..half).unwrap_or_default()
    );
}

/// The index just past the single complete type at `b[start]`.
fn type_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while b.get(i) == Some(&b'a') {
        i += 1;
    }
    match b.get(i) {
        Some(b'(' | b'{') => {
            let mut depth = 0usize;
            while let Some(&c) = b.get(i) {
                i += 1;
                match c {
                    b'(' | b'{' => depth += 1,
                    b')' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            i
        }
        _ => i + 1,
    }
}

/// Lower-case hex, for messages in panic texts.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_signatures_into_complete_types() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("s", &["s"]),
            ("su", &["s", "u"]),
            ("a{sv}as", &["a{sv}", "as"]),
            ("(i(ss))aa(y)v", &["(i(ss))", "aa(y)", "v"]),
            ("aaa{sa{ta(ii)}}g", &["aaa{sa{ta(ii)}}", "g"]),
        ];
        for &(sig, want) in cases {
            assert_eq!(top_level_types(sig), want, "{sig}");
        }
    }

    /// Every committed `wire_parse` seed is a valid message with every property.
    #[test]
    fn seeds_are_accepted_messages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/wire_parse");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("seed directory") {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("seed");
            let msg = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check_accepted(&msg);
            count += 1;
        }
        assert!(count >= 10, "only {count} seeds");
    }

    #[test]
    fn refuses_what_it_should() {
        let hello = tram_wire::MessageBuilder::method_call("/", Some("a.b"), "M")
            .body("s", |w| w.string("x"))
            .build(1);
        let good = hello.as_bytes().to_vec();
        assert!(parse(&good).is_ok());
        let mut zero_serial = good.clone();
        zero_serial[8..12].fill(0);
        let truncated = &good[..good.len() - 1];
        let mut trailing = good.clone();
        trailing.push(0);
        for bad in [&zero_serial[..], truncated, &trailing] {
            assert!(parse(bad).is_err(), "{}", hex(bad));
        }
    }
}
