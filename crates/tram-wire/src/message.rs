//! One validated message, and the rewritten form the bus forwards.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::WireError;

/// Bytes in the fixed part of the header plus the length word of the header-field array.
pub const FIXED_HEADER_LEN: usize = 16;
/// The largest message the specification allows: 128 MiB.
pub const MAX_MESSAGE_LEN: usize = 128 << 20;
/// The largest array the specification allows: 64 MiB.
pub const MAX_ARRAY_LEN: usize = 64 << 20;

/// Byte order of a message, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// `l`
    Little,
    /// `B`
    Big,
}

/// The message type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 1
    MethodCall,
    /// 2
    MethodReturn,
    /// 3
    Error,
    /// 4
    Signal,
    /// Any other non-zero value: valid on the wire, ignored by the bus as the specification asks.
    Unknown(u8),
}

/// The flags byte of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// The sender does not want a reply.
    pub const NO_REPLY_EXPECTED: u8 = 0x1;
    /// The bus must not start an owner for the destination.
    pub const NO_AUTO_START: u8 = 0x2;
    /// The caller is prepared to wait for interactive authorization.
    pub const ALLOW_INTERACTIVE_AUTHORIZATION: u8 = 0x4;

    /// Whether NO_REPLY_EXPECTED is set.
    pub fn no_reply_expected(self) -> bool {
        self.0 & Self::NO_REPLY_EXPECTED != 0
    }
    /// Whether NO_AUTO_START is set.
    pub fn no_auto_start(self) -> bool {
        self.0 & Self::NO_AUTO_START != 0
    }
}

/// Where a string header field lives in the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// Given the first bytes of a message, its total length.
///
/// Returns `Ok(None)` while fewer than [`FIXED_HEADER_LEN`] bytes are available.
///
/// # Errors
/// A bad endianness byte, or a declared length over [`MAX_MESSAGE_LEN`].
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, WireError> {
    let _ = prefix;
    todo!()
}

/// A complete message, validated once by [`Message::parse`].
///
/// The bytes are reference-counted: cloning a `Message` and turning it into [`Outgoing`] copies
/// no message data.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) data: Arc<[u8]>,
    pub(crate) fds: Arc<[OwnedFd]>,
    pub(crate) endian: Endian,
    pub(crate) mtype: MessageType,
    pub(crate) flags: Flags,
    pub(crate) serial: u32,
    pub(crate) reply_serial: Option<u32>,
    pub(crate) path: Option<Span>,
    pub(crate) interface: Option<Span>,
    pub(crate) member: Option<Span>,
    pub(crate) error_name: Option<Span>,
    pub(crate) destination: Option<Span>,
    pub(crate) sender: Option<Span>,
    pub(crate) signature: Option<Span>,
    pub(crate) unix_fds: u32,
    pub(crate) body_start: u32,
}

impl Message {
    /// Validates `data`, which must hold exactly one message, with the `fds` that arrived with it.
    ///
    /// # Errors
    /// Any way the message breaks the specification's message protocol.
    pub fn parse(data: Arc<[u8]>, fds: Vec<OwnedFd>) -> Result<Message, WireError> {
        let _ = (data, fds);
        todo!()
    }

    /// Byte order.
    pub fn endian(&self) -> Endian {
        self.endian
    }
    /// Message type.
    pub fn message_type(&self) -> MessageType {
        self.mtype
    }
    /// Header flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }
    /// The sender's serial for this message (never zero).
    pub fn serial(&self) -> u32 {
        self.serial
    }
    /// REPLY_SERIAL, for method returns and errors.
    pub fn reply_serial(&self) -> Option<u32> {
        self.reply_serial
    }
    /// PATH.
    pub fn path(&self) -> Option<&str> {
        self.field(self.path)
    }
    /// INTERFACE.
    pub fn interface(&self) -> Option<&str> {
        self.field(self.interface)
    }
    /// MEMBER.
    pub fn member(&self) -> Option<&str> {
        self.field(self.member)
    }
    /// ERROR_NAME.
    pub fn error_name(&self) -> Option<&str> {
        self.field(self.error_name)
    }
    /// DESTINATION.
    pub fn destination(&self) -> Option<&str> {
        self.field(self.destination)
    }
    /// SENDER as written in the message (the bus replaces it when forwarding).
    pub fn sender(&self) -> Option<&str> {
        self.field(self.sender)
    }
    /// SIGNATURE of the body; `""` when absent.
    pub fn signature(&self) -> &str {
        self.field(self.signature).unwrap_or("")
    }
    /// UNIX_FDS: how many fds the message carries.
    pub fn unix_fds(&self) -> u32 {
        self.unix_fds
    }
    /// The fds that came with the message.
    pub fn fds(&self) -> &[OwnedFd] {
        &self.fds
    }
    /// The whole message as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }
    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.data[self.body_start as usize..]
    }
    /// Whether a reply is expected: a method call without NO_REPLY_EXPECTED.
    pub fn expects_reply(&self) -> bool {
        self.mtype == MessageType::MethodCall && !self.flags.no_reply_expected()
    }

    /// The form the bus forwards: a new header with every known field of this message except
    /// SENDER, plus `SENDER = sender`, in this message's byte order and padded to 8, followed by
    /// this message's body (shared, not copied). Unknown header fields are dropped.
    pub fn stamp_sender(&self, sender: &str) -> Outgoing {
        let _ = sender;
        todo!()
    }

    /// This message sent exactly as it is (for messages the bus built itself).
    pub fn to_outgoing(&self) -> Outgoing {
        Outgoing {
            head: Box::default(),
            data: self.data.clone(),
            data_start: 0,
            fds: self.fds.clone(),
        }
    }

    fn field(&self, span: Option<Span>) -> Option<&str> {
        let s = span?;
        let bytes = self.data.get(s.start as usize..(s.start + s.len) as usize)?;
        std::str::from_utf8(bytes).ok()
    }
}

/// A message as it goes out: a header (possibly rewritten) and the rest of an original buffer,
/// plus the fds to pass with its first byte. Shared by every receiver of a broadcast.
#[derive(Debug)]
pub struct Outgoing {
    head: Box<[u8]>,
    data: Arc<[u8]>,
    data_start: u32,
    fds: Arc<[OwnedFd]>,
}

impl Outgoing {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len() - self.data_start as usize
    }
    /// Never true: a message has at least a header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes to write, in order (either part may be empty).
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.data[self.data_start as usize..]]
    }
    /// The fds to send with the first byte of the message.
    pub fn fds(&self) -> &[OwnedFd] {
        &self.fds
    }
}
