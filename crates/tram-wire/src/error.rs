//! Why a message, signature or name was refused.

use std::fmt;

/// A message, signature or name that does not follow the specification.
///
/// Every variant is a protocol violation by whoever produced the bytes; the bus answers it by
/// disconnecting that peer. The `Display` text names what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The endianness byte is neither `l` nor `B`.
    BadEndian(u8),
    /// The major protocol version is not 1.
    BadVersion(u8),
    /// The message type is 0 (invalid).
    BadMessageType,
    /// The message is longer than [`crate::MAX_MESSAGE_LEN`].
    TooLong(u64),
    /// The buffer ends before the message does.
    Truncated,
    /// The buffer holds more bytes than the message its header describes.
    TrailingBytes,
    /// The serial is zero.
    ZeroSerial,
    /// A header field is malformed, repeated, of the wrong type, or holds an invalid value.
    BadHeaderField(&'static str),
    /// A header field required for this message type is missing.
    MissingHeaderField(&'static str),
    /// A type signature is invalid.
    BadSignature(&'static str),
    /// The body does not match its signature.
    BadBody(&'static str),
    /// Padding that must be zero is not.
    NonZeroPadding,
    /// An array is longer than [`crate::MAX_ARRAY_LEN`] or its length is inconsistent.
    BadArray(&'static str),
    /// A string is not valid UTF-8, contains a nul byte, or lacks its terminator.
    BadString(&'static str),
    /// A boolean is neither 0 nor 1.
    BadBoolean,
    /// A unix fd index is out of range for the fds carried by the message.
    BadFdIndex,
    /// The number of fds received differs from the `UNIX_FDS` header field.
    FdCountMismatch {
        /// What the header says.
        declared: u32,
        /// What came with the message.
        received: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadEndian(b) => write!(f, "invalid endianness byte 0x{b:02x}"),
            WireError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            WireError::BadMessageType => f.write_str("invalid message type 0"),
            WireError::TooLong(n) => write!(f, "message of {n} bytes exceeds the 128 MiB limit"),
            WireError::Truncated => f.write_str("message truncated"),
            WireError::TrailingBytes => f.write_str("bytes after the end of the message"),
            WireError::ZeroSerial => f.write_str("message serial is zero"),
            WireError::BadHeaderField(w) => write!(f, "invalid header field: {w}"),
            WireError::MissingHeaderField(w) => write!(f, "missing required header field {w}"),
            WireError::BadSignature(w) => write!(f, "invalid signature: {w}"),
            WireError::BadBody(w) => write!(f, "body does not match its signature: {w}"),
            WireError::NonZeroPadding => f.write_str("non-zero padding"),
            WireError::BadArray(w) => write!(f, "invalid array: {w}"),
            WireError::BadString(w) => write!(f, "invalid string: {w}"),
            WireError::BadBoolean => f.write_str("boolean value other than 0 or 1"),
            WireError::BadFdIndex => f.write_str("unix fd index out of range"),
            WireError::FdCountMismatch { declared, received } => {
                write!(
                    f,
                    "header declares {declared} unix fds but {received} arrived"
                )
            }
        }
    }
}

impl std::error::Error for WireError {}
