//! Differential: tram-wire's and zbus's verdicts on the same bytes.
//!
//! The first input byte picks how the message is made:
//!
//! * even: the rest of the input, as raw bytes;
//! * odd: a valid `MessageSpec` drawn from the rest, built with `MessageBuilder`, then up to 8
//!   byte edits drawn from what is left.
//!
//! Either way the body length in the fixed header is then set to fit the buffer, so that most
//! inputs are one well-framed message and the verdicts are about its contents (zbus never
//! compares the body length with the buffer; tram does, and `wire_parse` covers that).
//!
//! Both parsers get the same four descriptors (tram: exactly as many as UNIX_FDS declares). When
//! both accept, they must read the same header and body. When only one accepts, the input must
//! fall in a known class of disagreement, each of which docs/FUZZING.md explains; anything else
//! is a finding.
#![no_main]

use std::sync::atomic::{AtomicBool, Ordering};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use tram_fuzz::generate::{MessageSpec, leading_hyphen_accepted};
use tram_fuzz::{wire, zbus_oracle};
use tram_wire::{Message, MessageType, WireError};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(spec) = u.arbitrary::<MessageSpec>() else {
            return;
        };
        let mut bytes = spec.build().as_bytes().to_vec();
        for _ in 0..8 {
            let (Ok(pos), Ok(byte)) = (u.arbitrary::<u16>(), u.arbitrary::<u8>()) else {
                break;
            };
            let at = usize::from(pos) % bytes.len().max(1);
            if let Some(b) = bytes.get_mut(at) {
                *b = byte;
            }
        }
        bytes
    };
    fit_body_len(&mut bytes);
    judge(&bytes);
});

/// Sets the body length so that the message ends at the end of `bytes`, when the header-field
/// array leaves room for that.
fn fit_body_len(bytes: &mut [u8]) {
    let big = match bytes.first() {
        Some(b'l') => false,
        Some(b'B') => true,
        _ => return,
    };
    let Some(&word) = bytes.get(12..16).and_then(|w| <&[u8; 4]>::try_from(w).ok()) else {
        return;
    };
    let fields_len = if big {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    };
    let body_start = (16 + fields_len as usize).next_multiple_of(8);
    let Some(body_len) = bytes
        .len()
        .checked_sub(body_start)
        .and_then(|n| u32::try_from(n).ok())
    else {
        return;
    };
    let encoded = if big {
        body_len.to_be_bytes()
    } else {
        body_len.to_le_bytes()
    };
    if let Some(slot) = bytes.get_mut(4..8) {
        slot.copy_from_slice(&encoded);
    }
}

fn judge(bytes: &[u8]) {
    match (wire::parse(bytes), zbus_oracle::parse(bytes)) {
        (Ok(t), Ok(z)) => {
            let diffs = zbus_oracle::differences(&t, &z);
            assert!(
                diffs.is_empty(),
                "tram and zbus read the message differently: {diffs:?}\n{}",
                wire::hex(bytes)
            );
            wire::check_accepted(&t);
        }
        (Err(_), Err(_)) => {}
        (Ok(t), Err(ze)) => match zbus_stricter(bytes, &t, &ze) {
            Some(class) => note(class, bytes),
            None => panic!(
                "zbus refuses a message tram accepts: {ze}\n{}",
                wire::hex(bytes)
            ),
        },
        (Err(te), Ok(z)) => match tram_stricter(&te, &z) {
            Some(class) => note(class, bytes),
            None => panic!(
                "tram refuses a message zbus accepts: {te}\n{}",
                wire::hex(bytes)
            ),
        },
    }
}

/// Disagreements where zbus refuses what the specification (and tram, and dbus-daemon) accept.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
enum Class {
    /// A message type other than 1 to 4: the specification says to ignore such messages, not
    /// to treat them as invalid; zbus refuses them.
    UnknownType,
    /// A header field with an unknown code (the specification says to accept and ignore it), or
    /// a SENDER that is a well-known rather than a unique name (valid as a bus name, which is
    /// what dbus-daemon checks). zbus refuses both; the same message stamped by tram, which
    /// drops unknown fields and writes a unique SENDER, is accepted by zbus.
    UnknownFieldOrSender,
    /// zbus counts container depth as GLib does: every value a type could hold, including in
    /// empty arrays, and fixed-size arrays a level deeper. The specification's limits (32
    /// nested arrays, 32 nested structs, 64 containers in all) are what tram enforces.
    GlibDepth,
    /// Not a disagreement to keep: tram refuses a DESTINATION or SENDER with an element that
    /// starts with `-`, which the specification and libdbus accept (a known tram-wire bug,
    /// docs/FUZZING.md). Only counted while tram still refuses such names.
    TramLeadingHyphen,
}

const CLASSES: usize = 4;

fn zbus_stricter(bytes: &[u8], t: &Message, ze: &zbus::Error) -> Option<Class> {
    if let MessageType::Unknown(_) = t.message_type() {
        return Some(Class::UnknownType);
    }
    let stamped = wire::outgoing_bytes(&t.stamp_sender(wire::STAMP));
    if stamped != bytes && zbus_oracle::parse(&stamped).is_ok() {
        return Some(Class::UnknownFieldOrSender);
    }
    if matches!(ze, zbus::Error::MaxDepthExceeded(_)) {
        return Some(Class::GlibDepth);
    }
    None
}

fn tram_stricter(te: &WireError, z: &zbus::message::Message) -> Option<Class> {
    let h = z.header();
    let names = [
        h.destination().map(|n| n.as_str()),
        h.sender().map(|n| n.as_str()),
    ];
    let leading_hyphen = names
        .into_iter()
        .flatten()
        .any(|n| n.split(['.', ':']).any(|e| e.starts_with('-')));
    let bad_name = matches!(
        te,
        WireError::BadHeaderField(
            "DESTINATION is not a valid bus name" | "SENDER is not a valid bus name"
        )
    );
    if bad_name && leading_hyphen && !leading_hyphen_accepted() {
        return Some(Class::TramLeadingHyphen);
    }
    None
}

/// Reports the first input of each class on stderr, for the record.
fn note(class: Class, bytes: &[u8]) {
    static SEEN: [AtomicBool; CLASSES] = [const { AtomicBool::new(false) }; CLASSES];
    if let Some(seen) = SEEN.get(class as usize)
        && !seen.swap(true, Ordering::Relaxed)
    {
        eprintln!("known disagreement {class:?}: {}", wire::hex(bytes));
    }
}
