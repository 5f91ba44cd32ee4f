//! The server side of the D-Bus [authentication protocol], as a pure state machine.
//!
//! Implements the protocol with the EXTERNAL, DBUS_COOKIE_SHA1 and ANONYMOUS mechanisms,
//! replying with the same texts as dbus-daemon 1.14. [`Sasl::feed`] takes the bytes a client sent
//! so far and consumes complete `\r\n`-terminated lines only, appending every reply to an output
//! buffer. It stops right after `BEGIN\r\n`: whatever follows is the start of the message stream
//! and is left unconsumed, so a client that writes its whole handshake and its first messages at
//! once works.
//!
//! Guarantees:
//! * the first byte must be the [credentials nul byte], else the client is refused;
//! * a line longer than [`MAX_LINE`] bytes (terminator included) refuses the client;
//! * after [`MAX_REJECTIONS`] `REJECTED` replies the client is refused (the last reply is
//!   still produced, for the caller to send before closing);
//! * `BEGIN` before `OK` refuses the client, as the specification's [state diagram] says;
//! * EXTERNAL accepts an empty authorization identity (the kernel's credentials are used) or
//!   the peer's uid in ASCII decimal; anything else is rejected. Without kernel credentials
//!   (TCP) it rejects everything;
//! * DBUS_COOKIE_SHA1 runs the specification's [challenge and response]: the client names a
//!   user (a name or a decimal uid), gets `org_freedesktop_general <cookie id> <challenge>`,
//!   and must answer `<its challenge> <hex SHA-1 of server challenge:its challenge:cookie>`;
//!   the comparison takes the same time wherever the digests differ. The identity proven this
//!   way is reported in [`Outcome::identity`];
//! * the result does not depend on how the client's bytes were split between calls;
//! * once [`Sasl::feed`] has returned [`Progress::Authenticated`] or [`Progress::Failed`], the
//!   conversation is over: later calls consume nothing, add no reply and return the same result.
//!
//! There is no I/O and no clock here: the caller enforces the authentication timeout, and the
//! keyring and the random challenges come from a [`CookieAuthority`] it provides.
//!
//! [authentication protocol]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-protocol
//! [credentials nul byte]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-nul-byte
//! [state diagram]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-states-server
//! [challenge and response]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-mechanisms-sha
#![warn(missing_docs)]

mod cookie;
mod hex;
mod mechanism;
mod server;
mod sha1;

pub use cookie::{CONTEXT, Cookie, CookieAuthority, Identity};
pub use mechanism::Mechanism;
pub use server::{Failure, MAX_LINE, MAX_REJECTIONS, Outcome, Progress, Sasl, SaslServer};
