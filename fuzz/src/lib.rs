//! Shared pieces of tram's fuzz targets.
//!
//! The targets themselves live in `fuzz_targets/`; this library holds what several of them use:
//!
//! * [`fds`]: a few open file descriptors, for messages that declare UNIX_FDS;
//! * [`wire`]: the properties every message accepted by [`tram_wire::Message::parse`] must have;
//! * [`generate`]: arbitrary *valid* messages, described as values, built with
//!   [`tram_wire::MessageBuilder`] and checked against what was built;
//! * [`zbus_oracle`]: zbus's message parser, as a second opinion on the same bytes.
//!
//! A property that does not hold panics: libFuzzer records the input as a crash.

pub mod fds;
pub mod generate;
pub mod wire;
pub mod zbus_oracle;
