//! The D-Bus wire format, as the bus needs it.
//!
//! * [`Message::parse`] validates one complete message — header and body, either endianness —
//!   against the [message protocol] of the D-Bus specification, once, and records where each
//!   header field lives. Everything the bus later asks of a message is answered from those
//!   offsets without parsing again.
//! * [`Message::stamp_sender`] produces the [`Outgoing`] form the bus forwards: a fresh header
//!   carrying the known fields plus the bus-assigned SENDER (unknown fields are dropped, as
//!   dbus-daemon's `HeaderFiltering` does), followed by the body *shared* with the original buffer.
//! * [`MessageBuilder`] and [`BodyWriter`] marshal the bus's own messages; [`BodyReader`] reads
//!   arguments from a validated body.
//! * [`names`] checks bus-name, interface, member, error-name and object-path syntax;
//!   [`signature`] checks type signatures.
//!
//! Nothing here does I/O.
//!
//! [message protocol]: https://dbus.freedesktop.org/doc/dbus-specification.html#message-protocol
#![warn(missing_docs)]

mod body;
mod builder;
mod error;
mod message;
pub mod names;
pub mod signature;
mod walk;

pub use body::{Arg, BodyReader};
pub use builder::{BodyWriter, MessageBuilder};
pub use error::WireError;
pub use message::{
    Endian, FIXED_HEADER_LEN, Flags, MAX_ARRAY_LEN, MAX_MESSAGE_LEN, Message, MessageType,
    Outgoing, frame_len, receive_buffer_len,
};
