//! One validated message, and the rewritten form the bus forwards.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::WireError;
use crate::names;
use crate::walk::{Bytes, Validator, align_up};

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

impl Endian {
    /// The byte order of this machine.
    pub const NATIVE: Endian = if cfg!(target_endian = "big") {
        Endian::Big
    } else {
        Endian::Little
    };

    /// The endianness byte of a header.
    pub fn to_byte(self) -> u8 {
        match self {
            Endian::Little => b'l',
            Endian::Big => b'B',
        }
    }

    /// Parses the endianness byte of a header.
    ///
    /// # Errors
    /// [`WireError::BadEndian`] for anything but `l` and `B`.
    pub fn from_byte(b: u8) -> Result<Endian, WireError> {
        match b {
            b'l' => Ok(Endian::Little),
            b'B' => Ok(Endian::Big),
            _ => Err(WireError::BadEndian(b)),
        }
    }
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

impl MessageType {
    /// The type of a message from its header byte; `None` for 0 (invalid).
    pub fn from_byte(b: u8) -> Option<MessageType> {
        Some(match b {
            0 => return None,
            1 => MessageType::MethodCall,
            2 => MessageType::MethodReturn,
            3 => MessageType::Error,
            4 => MessageType::Signal,
            other => MessageType::Unknown(other),
        })
    }

    /// The header byte of this type.
    pub fn to_byte(self) -> u8 {
        match self {
            MessageType::MethodCall => 1,
            MessageType::MethodReturn => 2,
            MessageType::Error => 3,
            MessageType::Signal => 4,
            MessageType::Unknown(b) => b,
        }
    }
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
    /// Whether ALLOW_INTERACTIVE_AUTHORIZATION is set.
    pub fn allow_interactive_authorization(self) -> bool {
        self.0 & Self::ALLOW_INTERACTIVE_AUTHORIZATION != 0
    }
}

/// Where a string header field lives in the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    fn new(start: usize, len: usize) -> Span {
        // Offsets inside a message that passed the 128 MiB limit fit in u32.
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// Given the first bytes of a message, its total length.
///
/// The total is the fixed header, the header-field array padded to 8, and the body. Returns
/// `Ok(None)` while fewer than [`FIXED_HEADER_LEN`] bytes are available.
///
/// # Errors
/// A bad endianness byte (checked as soon as there is one byte), a header-field array longer
/// than [`MAX_ARRAY_LEN`], or a total over [`MAX_MESSAGE_LEN`].
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(&first) = prefix.first() else {
        return Ok(None);
    };
    let endian = Endian::from_byte(first)?;
    let Some(fixed) = prefix.get(..FIXED_HEADER_LEN) else {
        return Ok(None);
    };
    let bytes = Bytes {
        data: fixed,
        big: endian == Endian::Big,
    };
    let body_len = bytes.u32_at(4).ok_or(WireError::Truncated)?;
    let fields_len = bytes.u32_at(12).ok_or(WireError::Truncated)?;
    Ok(Some(total_len(fields_len, body_len)?.1))
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
    /// A message that passes is known to have, in either byte order:
    ///
    /// * protocol version 1, a non-zero type and serial, at most [`MAX_MESSAGE_LEN`] bytes;
    /// * each known header field at most once, with its specified type and a valid value
    ///   (object path, interface, member, error name, bus names, signature, non-zero
    ///   REPLY_SERIAL), and every field its type requires; unknown fields well formed;
    /// * a body that matches SIGNATURE exactly, with valid booleans, UTF-8 strings without nul
    ///   bytes, object paths and signatures, arrays within [`MAX_ARRAY_LEN`] whose elements fill
    ///   them exactly, at most 64 levels of containers counting through variants, and unix fd
    ///   indexes below UNIX_FDS;
    /// * zero bytes in every alignment padding, header and body;
    /// * exactly as many `fds` as UNIX_FDS declares.
    ///
    /// The reserved `org.freedesktop.DBus.Local` path and interface are only checked for syntax;
    /// refusing them is the bus's decision. Validation is a single iterative pass that allocates
    /// nothing for ordinary messages.
    ///
    /// # Errors
    /// The first way found in which the message breaks the specification's message protocol.
    pub fn parse(data: Arc<[u8]>, fds: Vec<OwnedFd>) -> Result<Message, WireError> {
        Message::parse_with(data, fds, true)
    }

    /// [`Message::parse`], optionally without comparing the number of `fds` with UNIX_FDS (for
    /// messages built here, whose fds travel separately).
    pub(crate) fn parse_with(
        data: Arc<[u8]>,
        fds: Vec<OwnedFd>,
        check_fd_count: bool,
    ) -> Result<Message, WireError> {
        let received = check_fd_count.then_some(fds.len());
        let h = validate(&data, received)?;
        Ok(Message::from_validated(data, fds, h))
    }

    /// [`Message::parse`] for a message read from a stream, whose fds arrived in `queue` (in the
    /// order the connection received them): the message takes the first UNIX_FDS of them.
    ///
    /// # Errors
    /// As [`Message::parse`]; [`WireError::FdCountMismatch`] when fewer fds are queued than
    /// the message declares.
    pub fn parse_from_queue(
        data: Arc<[u8]>,
        queue: &mut VecDeque<OwnedFd>,
    ) -> Result<Message, WireError> {
        let h = validate(&data, None)?;
        let declared = h.unix_fds;
        if declared as usize > queue.len() {
            return Err(WireError::FdCountMismatch {
                declared,
                received: queue.len(),
            });
        }
        let fds = queue.drain(..declared as usize).collect();
        Ok(Message::from_validated(data, fds, h))
    }

    fn from_validated(data: Arc<[u8]>, fds: Vec<OwnedFd>, h: Header) -> Message {
        let fds = if fds.is_empty() {
            no_fds()
        } else {
            Arc::from(fds)
        };
        Message {
            data,
            fds,
            endian: h.endian,
            mtype: h.mtype,
            flags: h.flags,
            serial: h.serial,
            reply_serial: h.reply_serial,
            path: h.path,
            interface: h.interface,
            member: h.member,
            error_name: h.error_name,
            destination: h.destination,
            sender: h.sender,
            signature: h.signature,
            unix_fds: h.unix_fds,
            body_start: h.body_start,
        }
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
    ///
    /// The fields are written in field-code order. `sender` must be a valid bus name (the bus
    /// passes the sender's unique name). The new header is the only allocation, sized exactly.
    ///
    /// The result can exceed [`MAX_MESSAGE_LEN`] by the length of the new SENDER when this
    /// message was already at the limit; a caller that cares compares [`Outgoing::len`].
    pub fn stamp_sender(&self, sender: &str) -> Outgoing {
        debug_assert!(
            crate::names::is_valid_bus_name(sender),
            "invalid SENDER {sender:?}"
        );
        let span = |s: Option<Span>| s.and_then(|s| self.data.get(s.range()));
        let mut fields = HeaderFields::default();
        if let Some(v) = span(self.path) {
            fields.push(FIELD_PATH, FieldValue::Str(b'o', v));
        }
        if let Some(v) = span(self.interface) {
            fields.push(FIELD_INTERFACE, FieldValue::Str(b's', v));
        }
        if let Some(v) = span(self.member) {
            fields.push(FIELD_MEMBER, FieldValue::Str(b's', v));
        }
        if let Some(v) = span(self.error_name) {
            fields.push(FIELD_ERROR_NAME, FieldValue::Str(b's', v));
        }
        if let Some(v) = self.reply_serial {
            fields.push(FIELD_REPLY_SERIAL, FieldValue::U32(v));
        }
        if let Some(v) = span(self.destination) {
            fields.push(FIELD_DESTINATION, FieldValue::Str(b's', v));
        }
        fields.push(FIELD_SENDER, FieldValue::Str(b's', sender.as_bytes()));
        if let Some(v) = span(self.signature) {
            fields.push(FIELD_SIGNATURE, FieldValue::Sig(v));
        }
        if self.unix_fds != 0 {
            fields.push(FIELD_UNIX_FDS, FieldValue::U32(self.unix_fds));
        }
        let mut head = Vec::with_capacity(fields.header_len());
        head.extend_from_slice(self.data.get(..12).unwrap_or_default());
        fields.write(&mut head, self.endian);
        debug_assert_eq!(head.len(), head.capacity());
        Outgoing {
            head: head.into_boxed_slice(),
            data: self.data.clone(),
            data_start: self.body_start,
            fds: self.fds.clone(),
        }
    }

    /// Offset of the body in [`Message::as_bytes`] (the header length, a multiple of 8).
    pub fn body_offset(&self) -> usize {
        self.body_start as usize
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
        std::str::from_utf8(self.data.get(span?.range())?).ok()
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

/// Header field codes.
pub(crate) const FIELD_PATH: u8 = 1;
pub(crate) const FIELD_INTERFACE: u8 = 2;
pub(crate) const FIELD_MEMBER: u8 = 3;
pub(crate) const FIELD_ERROR_NAME: u8 = 4;
pub(crate) const FIELD_REPLY_SERIAL: u8 = 5;
pub(crate) const FIELD_DESTINATION: u8 = 6;
pub(crate) const FIELD_SENDER: u8 = 7;
pub(crate) const FIELD_SIGNATURE: u8 = 8;
pub(crate) const FIELD_UNIX_FDS: u8 = 9;

/// What the specification requires of each known header field, by code.
struct FieldRule {
    code: u8,
    /// The only signature its variant may have.
    sig: u8,
    repeated: &'static str,
    wrong_type: &'static str,
    invalid: &'static str,
}

const FIELD_RULES: [FieldRule; 9] = [
    FieldRule {
        code: FIELD_PATH,
        sig: b'o',
        repeated: "PATH appears twice",
        wrong_type: "PATH is not an object path",
        invalid: "PATH is not a valid object path",
    },
    FieldRule {
        code: FIELD_INTERFACE,
        sig: b's',
        repeated: "INTERFACE appears twice",
        wrong_type: "INTERFACE is not a string",
        invalid: "INTERFACE is not a valid interface name",
    },
    FieldRule {
        code: FIELD_MEMBER,
        sig: b's',
        repeated: "MEMBER appears twice",
        wrong_type: "MEMBER is not a string",
        invalid: "MEMBER is not a valid member name",
    },
    FieldRule {
        code: FIELD_ERROR_NAME,
        sig: b's',
        repeated: "ERROR_NAME appears twice",
        wrong_type: "ERROR_NAME is not a string",
        invalid: "ERROR_NAME is not a valid error name",
    },
    FieldRule {
        code: FIELD_REPLY_SERIAL,
        sig: b'u',
        repeated: "REPLY_SERIAL appears twice",
        wrong_type: "REPLY_SERIAL is not a uint32",
        invalid: "REPLY_SERIAL is zero",
    },
    FieldRule {
        code: FIELD_DESTINATION,
        sig: b's',
        repeated: "DESTINATION appears twice",
        wrong_type: "DESTINATION is not a string",
        invalid: "DESTINATION is not a valid bus name",
    },
    FieldRule {
        code: FIELD_SENDER,
        sig: b's',
        repeated: "SENDER appears twice",
        wrong_type: "SENDER is not a string",
        invalid: "SENDER is not a valid bus name",
    },
    FieldRule {
        code: FIELD_SIGNATURE,
        sig: b'g',
        repeated: "SIGNATURE appears twice",
        wrong_type: "SIGNATURE is not a signature",
        invalid: "SIGNATURE is not a valid signature",
    },
    FieldRule {
        code: FIELD_UNIX_FDS,
        sig: b'u',
        repeated: "UNIX_FDS appears twice",
        wrong_type: "UNIX_FDS is not a uint32",
        invalid: "UNIX_FDS is invalid",
    },
];

/// What [`validate`] learnt about a message.
struct Header {
    endian: Endian,
    mtype: MessageType,
    flags: Flags,
    serial: u32,
    reply_serial: Option<u32>,
    path: Option<Span>,
    interface: Option<Span>,
    member: Option<Span>,
    error_name: Option<Span>,
    destination: Option<Span>,
    sender: Option<Span>,
    signature: Option<Span>,
    unix_fds: u32,
    body_start: u32,
}

/// The header-field array length (already limited to 64 MiB) and total message length for the
/// lengths in a fixed header.
fn total_len(fields_len: u32, body_len: u32) -> Result<(usize, usize), WireError> {
    if fields_len as usize > MAX_ARRAY_LEN {
        return Err(WireError::BadArray("header field array longer than 64 MiB"));
    }
    let body_start = align_up(FIXED_HEADER_LEN + fields_len as usize, 8) as u64;
    let total = body_start + u64::from(body_len);
    if total > MAX_MESSAGE_LEN as u64 {
        return Err(WireError::TooLong(total));
    }
    Ok((body_start as usize, total as usize))
}

/// Validates one complete message; with `received`, also that this many fds came with it.
fn validate(data: &[u8], received: Option<usize>) -> Result<Header, WireError> {
    let Some(&[e, t, flags, version, ..]) = data.get(..FIXED_HEADER_LEN) else {
        return Err(WireError::Truncated);
    };
    let endian = Endian::from_byte(e)?;
    let bytes = Bytes {
        data,
        big: endian == Endian::Big,
    };
    let mtype = MessageType::from_byte(t).ok_or(WireError::BadMessageType)?;
    if version != 1 {
        return Err(WireError::BadVersion(version));
    }
    let word = |pos| bytes.u32_at(pos).ok_or(WireError::Truncated);
    let (body_len, serial, fields_len) = (word(4)?, word(8)?, word(12)?);
    let (body_start, total) = total_len(fields_len, body_len)?;
    match data.len().cmp(&total) {
        std::cmp::Ordering::Less => return Err(WireError::Truncated),
        std::cmp::Ordering::Greater => return Err(WireError::TrailingBytes),
        std::cmp::Ordering::Equal => {}
    }
    if serial == 0 {
        return Err(WireError::ZeroSerial);
    }
    let mut h = Header {
        endian,
        mtype,
        flags: Flags(flags),
        serial,
        reply_serial: None,
        path: None,
        interface: None,
        member: None,
        error_name: None,
        destination: None,
        sender: None,
        signature: None,
        unix_fds: 0,
        body_start: body_start as u32,
    };

    let mut v = Validator::new(bytes);
    let fields_end = FIXED_HEADER_LEN + fields_len as usize;
    let mut body_sig = None;
    let mut seen = 0u16;
    let mut pos = FIXED_HEADER_LEN;
    while pos < fields_end {
        pos = v.pad(pos, 8, fields_end).map_err(in_header)?;
        if pos >= fields_end {
            return Err(WireError::BadArray(
                "header field array length counts trailing padding",
            ));
        }
        let code = bytes.u8_at(pos).ok_or(WireError::Truncated)?;
        let (sig_start, sig_len, value) =
            v.signature_value(pos + 1, fields_end).map_err(in_header)?;
        if code == 0 {
            return Err(WireError::BadHeaderField("field code 0 (INVALID)"));
        }
        let Some(rule) = FIELD_RULES.get(usize::from(code) - 1) else {
            // Unknown field: accepted if well formed, and dropped when forwarded.
            let top = v.tables_top();
            let (table, depth) = v.signature(sig_start, sig_len, true).map_err(in_header)?;
            if 3 + depth > crate::signature::MAX_TOTAL_DEPTH {
                return Err(WireError::BadHeaderField(
                    "nested more than 64 containers deep",
                ));
            }
            pos = v
                .values(sig_start, sig_len, table, value, fields_end, 3)
                .map_err(in_header)?;
            v.release(top);
            continue;
        };
        debug_assert_eq!(rule.code, code);
        if seen & (1 << code) != 0 {
            return Err(WireError::BadHeaderField(rule.repeated));
        }
        seen |= 1 << code;
        if sig_len != 1 || bytes.u8_at(sig_start) != Some(rule.sig) {
            return Err(WireError::BadHeaderField(rule.wrong_type));
        }
        let invalid = WireError::BadHeaderField(rule.invalid);
        match rule.sig {
            b'u' => {
                let p = v.pad(value, 4, fields_end).map_err(in_header)?;
                let n = v.u32_within(p, fields_end).map_err(in_header)?;
                pos = p + 4;
                if code == FIELD_REPLY_SERIAL {
                    h.reply_serial = Some(n).filter(|&n| n != 0);
                    if h.reply_serial.is_none() {
                        return Err(invalid);
                    }
                } else {
                    h.unix_fds = n;
                }
            }
            b'g' => {
                let (start, len, end) = v.signature_value(value, fields_end).map_err(in_header)?;
                // The body's signature keeps its end table for the body walk below.
                let (table, _) = v.signature(start, len, false)?;
                body_sig = Some((start, len, table));
                h.signature = Some(Span::new(start, len));
                pos = end;
            }
            _ => {
                // The name checks accept only ASCII without nul bytes, so they also do the
                // string checks.
                let (s, end) = v.string_bytes(value, fields_end).map_err(in_header)?;
                let valid = match code {
                    FIELD_PATH => names::object_path(s),
                    FIELD_INTERFACE | FIELD_ERROR_NAME => names::interface(s),
                    FIELD_MEMBER => names::member(s),
                    _ => names::bus_name(s),
                };
                if !valid {
                    return Err(invalid);
                }
                let span = Some(Span::new(end - 1 - s.len(), s.len()));
                match code {
                    FIELD_PATH => h.path = span,
                    FIELD_INTERFACE => h.interface = span,
                    FIELD_MEMBER => h.member = span,
                    FIELD_ERROR_NAME => h.error_name = span,
                    FIELD_DESTINATION => h.destination = span,
                    _ => h.sender = span,
                }
                pos = end;
            }
        }
    }
    let padding = data
        .get(fields_end..body_start)
        .ok_or(WireError::Truncated)?;
    if padding.iter().any(|&b| b != 0) {
        return Err(WireError::NonZeroPadding);
    }

    let required: &[(bool, &'static str)] = match mtype {
        MessageType::MethodCall => &[(h.path.is_some(), "PATH"), (h.member.is_some(), "MEMBER")],
        MessageType::MethodReturn => &[(h.reply_serial.is_some(), "REPLY_SERIAL")],
        MessageType::Error => &[
            (h.error_name.is_some(), "ERROR_NAME"),
            (h.reply_serial.is_some(), "REPLY_SERIAL"),
        ],
        MessageType::Signal => &[
            (h.path.is_some(), "PATH"),
            (h.interface.is_some(), "INTERFACE"),
            (h.member.is_some(), "MEMBER"),
        ],
        MessageType::Unknown(_) => &[],
    };
    if let Some(&(_, name)) = required.iter().find(|(present, _)| !present) {
        return Err(WireError::MissingHeaderField(name));
    }
    if let Some(received) = received {
        if received != h.unix_fds as usize {
            return Err(WireError::FdCountMismatch {
                declared: h.unix_fds,
                received,
            });
        }
    }

    match body_sig {
        Some((start, len, table)) if len > 0 => {
            let end = v.values(start, len, table, body_start, total, 0)?;
            if end != total {
                return Err(WireError::BadBody("bytes after the last argument"));
            }
        }
        _ if body_len != 0 => return Err(WireError::BadBody("a body without a signature")),
        _ => {}
    }
    if v.max_fd.is_some_and(|m| m >= h.unix_fds) {
        return Err(WireError::BadFdIndex);
    }
    Ok(h)
}

/// Errors inside the header-field array are header errors, whatever the walker called them.
fn in_header(e: WireError) -> WireError {
    match e {
        WireError::BadBody(w) => WireError::BadHeaderField(w),
        other => other,
    }
}

/// A shared empty fd list, so messages without fds allocate nothing for them.
fn no_fds() -> Arc<[OwnedFd]> {
    static EMPTY: std::sync::OnceLock<Arc<[OwnedFd]>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from(Vec::new())).clone()
}

/// The value of a header field to marshal.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldValue<'a> {
    /// `s` or `o` (the code) with its text.
    Str(u8, &'a [u8]),
    /// `g`.
    Sig(&'a [u8]),
    /// `u`.
    U32(u32),
}

/// Up to one of each known header field, in the order pushed.
#[derive(Debug, Default)]
pub(crate) struct HeaderFields<'a> {
    fields: [Option<(u8, FieldValue<'a>)>; 9],
    len: usize,
}

impl<'a> HeaderFields<'a> {
    pub(crate) fn push(&mut self, code: u8, value: FieldValue<'a>) {
        if let Some(slot) = self.fields.get_mut(self.len) {
            *slot = Some((code, value));
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u8, FieldValue<'a>)> + '_ {
        self.fields.iter().flatten().copied()
    }

    /// The length of the whole header these fields make, padding included.
    pub(crate) fn header_len(&self) -> usize {
        let mut len = FIXED_HEADER_LEN;
        for (_, value) in self.iter() {
            len = align_up(len, 8) + 4;
            len += match value {
                FieldValue::Str(_, s) => 4 + s.len() + 1,
                FieldValue::Sig(s) => 1 + s.len() + 1,
                FieldValue::U32(_) => 4,
            };
        }
        align_up(len, 8)
    }

    /// Appends the header-field array and the header padding to `out`, which holds the first
    /// 12 bytes of a header.
    pub(crate) fn write(&self, out: &mut Vec<u8>, endian: Endian) {
        let put = |out: &mut Vec<u8>, v: u32| match endian {
            Endian::Little => out.extend_from_slice(&v.to_le_bytes()),
            Endian::Big => out.extend_from_slice(&v.to_be_bytes()),
        };
        let len_at = out.len();
        put(out, 0);
        let start = out.len();
        for (code, value) in self.iter() {
            out.resize(align_up(out.len(), 8), 0);
            let sig = match value {
                FieldValue::Str(c, _) => c,
                FieldValue::Sig(_) => b'g',
                FieldValue::U32(_) => b'u',
            };
            out.extend_from_slice(&[code, 1, sig, 0]);
            match value {
                FieldValue::Str(_, s) => {
                    put(out, s.len() as u32);
                    out.extend_from_slice(s);
                    out.push(0);
                }
                FieldValue::Sig(s) => {
                    out.push(s.len() as u8);
                    out.extend_from_slice(s);
                    out.push(0);
                }
                FieldValue::U32(v) => put(out, v),
            }
        }
        let fields_len = (out.len() - start) as u32;
        let bytes = match endian {
            Endian::Little => fields_len.to_le_bytes(),
            Endian::Big => fields_len.to_be_bytes(),
        };
        if let Some(slot) = out.get_mut(len_at..len_at + 4) {
            slot.copy_from_slice(&bytes);
        }
        out.resize(align_up(out.len(), 8), 0);
    }
}

#[cfg(test)]
mod tests;
