//! Valid messages built with `MessageBuilder`, in either byte order, parsed back.
//!
//! The input is a `MessageSpec` drawn with `arbitrary`: a message type with valid header fields,
//! flags, UNIX_FDS and a body of typed values (nested arrays, structs, dicts and variants). The
//! built message must parse again, hold exactly the spec's fields and values (read back with
//! `BodyReader`), have every property of an accepted message, and stay the same message once
//! stamped. zbus must accept the stamped message too and read the same header and body: the
//! builder's output is checked against an independent parser, not only against tram's own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tram_fuzz::generate::MessageSpec;
use tram_fuzz::{wire, zbus_oracle};

fuzz_target!(|spec: MessageSpec| {
    let built = spec.build();
    spec.check(&built, spec.sender.as_deref());

    let msg = wire::parse(built.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "built message refused: {e}\n{}",
            wire::hex(built.as_bytes())
        )
    });
    spec.check(&msg, spec.sender.as_deref());
    wire::check_accepted(&msg);

    let stamped_bytes = wire::outgoing_bytes(&msg.stamp_sender(wire::STAMP));
    let stamped = wire::parse(&stamped_bytes).expect("stamped message parses");
    spec.check(&stamped, Some(wire::STAMP));

    // zbus wants a unique name in SENDER, which the stamped message has.
    match zbus_oracle::parse(&stamped_bytes) {
        Ok(z) => {
            let diffs = zbus_oracle::differences(&stamped, &z);
            assert!(
                diffs.is_empty(),
                "zbus reads the message differently: {diffs:?}"
            );
        }
        Err(e) => panic!(
            "zbus refuses a built message: {e}\n{}",
            wire::hex(&stamped_bytes)
        ),
    }
});
