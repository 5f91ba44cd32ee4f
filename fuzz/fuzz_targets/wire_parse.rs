//! `Message::parse` on arbitrary bytes.
//!
//! The input is framed the way tramd frames its receive buffer: `frame_len` on its first bytes,
//! then `parse` on exactly that many. Parsing the whole input must agree with the framing (a
//! buffer that is not exactly one frame is refused), and every accepted message must have the
//! properties in `tram_fuzz::wire::check_accepted`: valid header fields, a `stamp_sender`
//! result that parses again with the same fields and body, `args` and `BodyReader` reading or
//! skipping every argument.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tram_fuzz::wire;
use tram_wire::frame_len;

fuzz_target!(|data: &[u8]| {
    let whole = wire::parse(data);
    let framed = match frame_len(data) {
        Ok(Some(len)) => len,
        Ok(None) | Err(_) => {
            assert!(whole.is_err(), "parse accepted what frame_len refused");
            return;
        }
    };
    if framed != data.len() {
        assert!(
            whole.is_err(),
            "parse accepted {} bytes framed as {framed}",
            data.len()
        );
    }
    let Some(frame) = data.get(..framed) else {
        return;
    };
    let Ok(msg) = wire::parse(frame) else {
        return;
    };
    wire::check_accepted(&msg);
    // One byte short of its frame, an accepted message is refused.
    if let Some(short) = frame.get(..framed - 1) {
        assert!(
            wire::parse(short).is_err(),
            "a truncated message was accepted"
        );
    }
});
