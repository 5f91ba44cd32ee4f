//! zbus's message parser, as a second opinion on bytes tram-wire has judged.
//!
//! zbus 6 parses a message from bytes with [`Message::from_bytes`] (header fields, required
//! fields, header padding, fd count) and, with its `bus-impl` feature, checks the body against
//! its signature with [`zbus::message::Body::validate`]. Together they are what zbus's own bus
//! does with a message a client sent.

use zbus::message::Message as ZMessage;
use zbus::wire::Endian as ZEndian;
use zbus::wire::serialized::{Context, Data};

use crate::fds;
use crate::wire::top_level_types;

/// zbus's verdict on `bytes`, which must be exactly one message, carrying [`fds::MAX_FDS`]
/// descriptors.
///
/// # Errors
/// What zbus finds wrong with the header or the body.
pub fn parse(bytes: &[u8]) -> Result<ZMessage, zbus::Error> {
    // zbus takes the byte order from the context and refuses a message whose first byte
    // disagrees; give it the one the message claims, so that only the message is judged.
    let endian = match bytes.first() {
        Some(b'B') => ZEndian::Big,
        _ => ZEndian::Little,
    };
    let data = Data::new_borrowed_fds(bytes.to_vec(), Context::new(endian, 0), fds::borrowed());
    // SAFETY: `from_bytes` is unsafe because a `Message` made from unchecked bytes could later
    // be deserialized without checks. It parses and checks the whole header itself (the same
    // path zbus takes for bytes read from a socket), and the body is checked right below; the
    // body is never deserialized here, only compared as bytes.
    let msg = unsafe { ZMessage::from_bytes(data) }?;
    msg.body().validate()?;
    Ok(msg)
}

/// Where tram's reading of a message and zbus's differ, if anywhere: type, flags, serial, each
/// header field, and the body bytes.
pub fn differences(tram: &tram_wire::Message, z: &ZMessage) -> Vec<String> {
    let mut diffs = Vec::new();
    let h = z.header();
    let mut same = |what: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{what}: tram {a}, zbus {b}"));
        }
    };
    same(
        "type",
        tram.message_type().to_byte().to_string(),
        (h.message_type() as u8).to_string(),
    );
    same(
        "flags",
        tram.flags().0.to_string(),
        h.primary().flags().bits().to_string(),
    );
    same(
        "serial",
        tram.serial().to_string(),
        h.primary().serial_num().to_string(),
    );
    same(
        "REPLY_SERIAL",
        format!("{:?}", tram.reply_serial()),
        format!("{:?}", h.reply_serial().map(|s| s.get())),
    );
    same(
        "PATH",
        format!("{:?}", tram.path()),
        format!("{:?}", h.path().map(|v| v.as_str())),
    );
    same(
        "INTERFACE",
        format!("{:?}", tram.interface()),
        format!("{:?}", h.interface().map(|v| v.as_str())),
    );
    same(
        "MEMBER",
        format!("{:?}", tram.member()),
        format!("{:?}", h.member().map(|v| v.as_str())),
    );
    same(
        "ERROR_NAME",
        format!("{:?}", tram.error_name()),
        format!("{:?}", h.error_name().map(|v| v.as_str())),
    );
    same(
        "DESTINATION",
        format!("{:?}", tram.destination()),
        format!("{:?}", h.destination().map(|v| v.as_str())),
    );
    same(
        "SENDER",
        format!("{:?}", tram.sender()),
        format!("{:?}", h.sender().map(|v| v.as_str())),
    );
    // zbus keeps a body signature of several types as one structure; written without the
    // parentheses it is the text on the wire.
    let zsig = if top_level_types(tram.signature()).len() == 1 {
        h.signature().to_string()
    } else {
        h.signature().to_string_no_parens()
    };
    same(
        "SIGNATURE",
        format!("{:?}", tram.signature()),
        format!("{zsig:?}"),
    );
    same(
        "UNIX_FDS",
        tram.unix_fds().to_string(),
        h.unix_fds().unwrap_or(0).to_string(),
    );
    if tram.body() != z.body().data().bytes() {
        diffs.push("body bytes differ".to_owned());
    }
    diffs
}
