//! One validated message, and the rewritten form the bus forwards.

use std::collections::VecDeque;
use std::num::NonZeroU32;
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

/// Where a header field's value lives in the message buffer: never at offset 0, so that an
/// absent field costs no more room than a present one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    start: NonZeroU32,
    len: u32,
}

impl FieldSpan {
    /// The span, `None` for `start` 0 (where no field value can be).
    fn new(start: usize, len: usize) -> Option<FieldSpan> {
        // Offsets inside a message that passed the 128 MiB limit fit in u32.
        Some(FieldSpan {
            start: NonZeroU32::new(start as u32)?,
            len: len as u32,
        })
    }

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        let start = self.start.get() as usize;
        start..start + self.len as usize
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

/// Given the first bytes of a message, how long a buffer [`Message::receive_in_place`] needs
/// for it: the message, and room for the header [`Message::stamp_sender`] will give it when
/// `sender` forwards it.
///
/// # Errors
/// As [`frame_len`].
pub fn receive_buffer_len(prefix: &[u8], sender: Option<&str>) -> Result<Option<usize>, WireError> {
    let Some(total) = frame_len(prefix)? else {
        return Ok(None);
    };
    let Some(sender) = sender else {
        return Ok(Some(total));
    };
    // The stamped header keeps at most the fields there are, each where it was relative to a
    // multiple of 8, and adds SENDER.
    let fields = align_up(
        Bytes {
            data: prefix,
            big: prefix.first() == Some(&b'B'),
        }
        .u32_at(12)
        .map_or(0, |n| n as usize),
        8,
    );
    Ok(Some(
        total + FIXED_HEADER_LEN + fields + align_up(8 + sender.len() + 1, 8),
    ))
}

/// A complete message, validated once by [`Message::parse`].
///
/// The bytes are reference-counted: cloning a `Message` and turning it into [`Outgoing`] copies
/// no message data.
#[derive(Debug, Clone)]
pub struct Message {
    /// The message is `data[..len]`. A message read by [`Message::receive`] is followed there
    /// by the header [`Message::stamp_sender`] gives it (`stamp`).
    data: Arc<[u8]>,
    len: u32,
    /// The fds, unless there are none.
    fds: Option<Arc<[OwnedFd]>>,
    h: Header,
    stamp: Option<Stamp>,
}

/// A forwarding header prepared in a message's own buffer.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// The whole header.
    head: Span,
    /// The value of its SENDER field.
    sender: Span,
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
        let len = data.len();
        Ok(Message::from_validated(data, len, fds, h, None))
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
        let fds = take_fds(&h, queue)?;
        let len = data.len();
        Ok(Message::from_validated(data, len, fds, h, None))
    }

    /// [`Message::parse_from_queue`] for a message still in a receive buffer: `frame` is
    /// validated where it is, and only a valid message is copied into a buffer of its own.
    ///
    /// With `sender` (the sending connection's unique name), the copy is followed by the header
    /// [`Message::stamp_sender`] gives the message for that sender, so that forwarding it
    /// allocates nothing more.
    ///
    /// # Errors
    /// As [`Message::parse_from_queue`].
    pub fn receive(
        frame: &[u8],
        queue: &mut VecDeque<OwnedFd>,
        sender: Option<&str>,
    ) -> Result<Message, WireError> {
        Message::receive_with(frame, queue, sender, |n| {
            std::iter::repeat_n(0, n).collect()
        })
    }

    /// [`Message::receive`] copying into a buffer from `buffer`, which is asked for at least
    /// `n` bytes and should give one nothing else refers to (its bytes may be anything): a
    /// caller can reuse buffers of earlier messages. A buffer that is too short or shared is
    /// not used; the message then gets one of its own.
    ///
    /// # Errors
    /// As [`Message::parse_from_queue`].
    pub fn receive_with(
        frame: &[u8],
        queue: &mut VecDeque<OwnedFd>,
        sender: Option<&str>,
        buffer: impl FnOnce(usize) -> Arc<[u8]>,
    ) -> Result<Message, WireError> {
        let h = validate(frame, None)?;
        let fds = take_fds(&h, queue)?;
        let plan = sender.map(|s| StampPlan::new(frame, &h, s.as_bytes()));
        let room = plan.as_ref().map_or(0, |p| p.len);
        let mut data = buffer(frame.len() + room);
        let stamp = match Arc::get_mut(&mut data)
            .and_then(|d| d.get_mut(..frame.len() + room))
            .map(|d| d.split_at_mut(frame.len()))
        {
            Some((copy, tail)) => {
                copy.copy_from_slice(frame);
                plan.and_then(|p| p.write(tail, frame.len()))
            }
            // A buffer the caller should not have given. Copying is still correct.
            None => {
                data = Arc::from(frame);
                None
            }
        };
        Ok(Message::from_validated(data, frame.len(), fds, h, stamp))
    }

    /// [`Message::receive`] for a message read straight into a buffer of its own: the message
    /// is `buf[..len]`; when `buf` is not shared and has room after it (see
    /// [`receive_buffer_len`]), the header for `sender` is prepared there. Bytes after the
    /// message need not be zero.
    ///
    /// # Errors
    /// As [`Message::parse_from_queue`]; [`WireError::Truncated`] when `buf` is shorter than
    /// `len`.
    pub fn receive_in_place(
        mut buf: Arc<[u8]>,
        len: usize,
        queue: &mut VecDeque<OwnedFd>,
        sender: Option<&str>,
    ) -> Result<Message, WireError> {
        let h = validate(buf.get(..len).ok_or(WireError::Truncated)?, None)?;
        let fds = take_fds(&h, queue)?;
        let stamp = match (sender, Arc::get_mut(&mut buf)) {
            (Some(sender), Some(buf)) => {
                let (frame, tail) = buf.split_at_mut(len);
                let plan = StampPlan::new(frame, &h, sender.as_bytes());
                (plan.len <= tail.len())
                    .then(|| plan.write(tail, len))
                    .flatten()
            }
            _ => None,
        };
        Ok(Message::from_validated(buf, len, fds, h, stamp))
    }

    fn from_validated(
        data: Arc<[u8]>,
        len: usize,
        fds: Vec<OwnedFd>,
        h: Header,
        stamp: Option<Stamp>,
    ) -> Message {
        let fds = (!fds.is_empty()).then(|| Arc::from(fds));
        Message {
            data,
            // At most MAX_MESSAGE_LEN: validated.
            len: len as u32,
            fds,
            h,
            stamp,
        }
    }

    /// Byte order.
    pub fn endian(&self) -> Endian {
        self.h.endian
    }
    /// Message type.
    pub fn message_type(&self) -> MessageType {
        self.h.mtype
    }
    /// Header flags.
    pub fn flags(&self) -> Flags {
        self.h.flags
    }
    /// The sender's serial for this message (never zero).
    pub fn serial(&self) -> u32 {
        self.h.serial
    }
    /// REPLY_SERIAL, for method returns and errors.
    pub fn reply_serial(&self) -> Option<u32> {
        self.h.reply_serial.map(NonZeroU32::get)
    }
    /// PATH.
    pub fn path(&self) -> Option<&str> {
        self.field(self.h.path)
    }
    /// INTERFACE.
    pub fn interface(&self) -> Option<&str> {
        self.field(self.h.interface)
    }
    /// MEMBER.
    pub fn member(&self) -> Option<&str> {
        self.field(self.h.member)
    }
    /// ERROR_NAME.
    pub fn error_name(&self) -> Option<&str> {
        self.field(self.h.error_name)
    }
    /// DESTINATION.
    pub fn destination(&self) -> Option<&str> {
        self.field(self.h.destination)
    }
    /// SENDER as written in the message (the bus replaces it when forwarding).
    pub fn sender(&self) -> Option<&str> {
        self.field(self.h.sender)
    }
    /// Whether PATH is `path`: a comparison of bytes, cheaper than [`Message::path`].
    pub fn has_path(&self, path: &str) -> bool {
        self.field_bytes(self.h.path) == Some(path.as_bytes())
    }
    /// Whether INTERFACE is `interface`: a comparison of bytes, cheaper than
    /// [`Message::interface`].
    pub fn has_interface(&self, interface: &str) -> bool {
        self.field_bytes(self.h.interface) == Some(interface.as_bytes())
    }
    /// SIGNATURE of the body; `""` when absent.
    pub fn signature(&self) -> &str {
        self.field(self.h.signature).unwrap_or("")
    }
    /// UNIX_FDS: how many fds the message carries.
    pub fn unix_fds(&self) -> u32 {
        self.h.unix_fds
    }
    /// The fds that came with the message.
    pub fn fds(&self) -> &[OwnedFd] {
        self.fds.as_deref().unwrap_or_default()
    }
    /// The whole message as received.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.get(..self.len as usize).unwrap_or_default()
    }
    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        self.data.get(self.body_span().range()).unwrap_or_default()
    }
    /// Whether a reply is expected: a method call without NO_REPLY_EXPECTED.
    pub fn expects_reply(&self) -> bool {
        self.h.mtype == MessageType::MethodCall && !self.h.flags.no_reply_expected()
    }

    /// The form the bus forwards: a new header with every known field of this message except
    /// SENDER, plus `SENDER = sender`, in this message's byte order and padded to 8, followed by
    /// this message's body (shared, not copied). Unknown header fields are dropped.
    ///
    /// The fields are written in field-code order. `sender` must be a valid bus name (the bus
    /// passes the sender's unique name). When [`Message::receive`] prepared the header for this
    /// `sender`, nothing is allocated; otherwise the new header is the only allocation, sized
    /// exactly.
    ///
    /// The result can exceed [`MAX_MESSAGE_LEN`] by the length of the new SENDER when this
    /// message was already at the limit; a caller that cares compares [`Outgoing::len`].
    pub fn stamp_sender(&self, sender: &str) -> Outgoing {
        debug_assert!(
            crate::names::is_valid_bus_name(sender),
            "invalid SENDER {sender:?}"
        );
        let (own_head, head) = match self.stamp {
            Some(stamp) if self.data.get(stamp.sender.range()) == Some(sender.as_bytes()) => {
                (Box::default(), stamp.head)
            }
            _ => {
                let plan = StampPlan::new(self.as_bytes(), &self.h, sender.as_bytes());
                let mut head = vec![0; plan.len].into_boxed_slice();
                plan.write(&mut head, 0);
                (head, Span::default())
            }
        };
        Outgoing {
            own_head,
            head,
            data: self.data.clone(),
            body: self.body_span(),
            fds: self.fds.clone(),
        }
    }

    /// The reference-counted buffer the message lives in, which may be longer than the
    /// message: for an I/O layer that reuses a buffer once nothing refers to it any more.
    pub fn buffer(&self) -> &Arc<[u8]> {
        &self.data
    }

    /// Offset of the body in [`Message::as_bytes`] (the header length, a multiple of 8).
    pub fn body_offset(&self) -> usize {
        self.h.body_start as usize
    }

    /// This message sent exactly as it is (for messages the bus built itself).
    pub fn to_outgoing(&self) -> Outgoing {
        Outgoing {
            own_head: Box::default(),
            head: Span::default(),
            data: self.data.clone(),
            body: Span::new(0, self.len as usize),
            fds: self.fds.clone(),
        }
    }

    fn body_span(&self) -> Span {
        Span {
            start: self.h.body_start,
            len: self.len.saturating_sub(self.h.body_start),
        }
    }

    fn field(&self, span: Option<FieldSpan>) -> Option<&str> {
        std::str::from_utf8(self.field_bytes(span)?).ok()
    }

    fn field_bytes(&self, span: Option<FieldSpan>) -> Option<&[u8]> {
        self.data.get(span?.range())
    }
}

/// A message as it goes out: a header (possibly rewritten) and the rest of an original buffer,
/// plus the fds to pass with its first byte. Shared by every receiver of a broadcast.
#[derive(Debug)]
pub struct Outgoing {
    /// A header of its own; when empty, the header is `data[head]` (possibly empty too).
    own_head: Box<[u8]>,
    head: Span,
    data: Arc<[u8]>,
    body: Span,
    fds: Option<Arc<[OwnedFd]>>,
}

impl Outgoing {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.head().len() + self.body.len as usize
    }
    /// Never true: a message has at least a header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes to write, in order (either part may be empty).
    pub fn parts(&self) -> [&[u8]; 2] {
        [
            self.head(),
            self.data.get(self.body.range()).unwrap_or_default(),
        ]
    }
    /// The fds to send with the first byte of the message.
    pub fn fds(&self) -> &[OwnedFd] {
        self.fds.as_deref().unwrap_or_default()
    }

    fn head(&self) -> &[u8] {
        if self.own_head.is_empty() {
            self.data.get(self.head.range()).unwrap_or_default()
        } else {
            &self.own_head
        }
    }
}

/// Takes the fds a validated message declares from the front of `queue`.
fn take_fds(h: &Header, queue: &mut VecDeque<OwnedFd>) -> Result<Vec<OwnedFd>, WireError> {
    let declared = h.unix_fds;
    if declared == 0 {
        return Ok(Vec::new());
    }
    if declared as usize > queue.len() {
        return Err(WireError::FdCountMismatch {
            declared,
            received: queue.len(),
        });
    }
    Ok(queue.drain(..declared as usize).collect())
}

/// The header [`Message::stamp_sender`] writes for one message and sender.
struct StampPlan<'a> {
    frame: &'a [u8],
    h: &'a Header,
    sender: &'a [u8],
    fields_len: u32,
    /// The length of the whole header, padding included.
    len: usize,
}

/// One field of a stamped header, for headers not in canonical order.
#[derive(Clone, Copy)]
enum StampField<'a> {
    /// A whole field (code, variant signature, value) copied from the original header.
    Raw(&'a [u8]),
    /// A `u` field with this code.
    U32(u8, u32),
    /// SENDER.
    Sender,
}

impl<'a> StampPlan<'a> {
    /// The header for the validated message `frame` with header `h`, from `sender`.
    fn new(frame: &'a [u8], h: &'a Header, sender: &'a [u8]) -> Self {
        let sender_len = 8 + sender.len() + 1;
        let end = match h.sender_at.map(NonZeroU32::get) {
            Some(at) if at < h.fields_end => {
                align_up(at as usize + sender_len, 8) + (h.fields_end - at) as usize
            }
            Some(at) => at as usize + sender_len,
            None => {
                let mut end = FIXED_HEADER_LEN;
                for field in stamp_fields(frame, h).iter().flatten() {
                    end = align_up(end, 8)
                        + match field {
                            StampField::Raw(bytes) => bytes.len(),
                            StampField::U32(..) => 8,
                            StampField::Sender => sender_len,
                        };
                }
                end
            }
        };
        StampPlan {
            frame,
            h,
            sender,
            fields_len: (end - FIXED_HEADER_LEN) as u32,
            len: align_up(end, 8),
        }
    }

    /// Writes the header at the start of `out` (at least [`StampPlan::len`] bytes), which
    /// lies at `offset` in its buffer; returns where it and its SENDER are in that buffer.
    fn write(&self, out: &mut [u8], offset: usize) -> Option<Stamp> {
        let buf = out.get_mut(..self.len)?;
        buf.fill(0);
        let mut w = Cursor {
            buf,
            pos: 0,
            big: self.h.endian == Endian::Big,
        };
        w.put(self.frame.get(..12)?);
        w.u32(self.fields_len);
        let sender = match self.h.sender_at.map(NonZeroU32::get) {
            Some(at) => {
                // This header with SENDER inserted: the fields before it (and the padding
                // after them) as they are, SENDER, the fields after it as they are.
                let (at, end) = (at as usize, self.h.fields_end as usize);
                w.put(self.frame.get(FIXED_HEADER_LEN..at)?);
                let sender = w.sender(self.sender);
                if at < end {
                    w.align8();
                    w.put(self.frame.get(at..end)?);
                }
                sender
            }
            None => {
                let mut sender = 0;
                for field in stamp_fields(self.frame, self.h).iter().flatten() {
                    w.align8();
                    match *field {
                        StampField::Raw(bytes) => w.put(bytes),
                        StampField::U32(code, v) => {
                            w.put(&[code, 1, b'u', 0]);
                            w.u32(v);
                        }
                        StampField::Sender => sender = w.sender(self.sender),
                    }
                }
                sender
            }
        };
        debug_assert_eq!(align_up(w.pos, 8), self.len, "stamped header length");
        Some(Stamp {
            head: Span::new(offset, self.len),
            sender: Span::new(offset + sender, self.sender.len()),
        })
    }
}

/// The fields of the header that forwards a validated message, in code order.
fn stamp_fields<'a>(frame: &'a [u8], h: &Header) -> [Option<StampField<'a>>; 9] {
    // Validation proved that every known field is marshalled the one way the specification
    // allows, starting at a multiple of 8: string-like fields are copied as they are (their
    // offsets within 8 are kept, so their padding is too), numbers and SENDER are written anew.
    let raw = |span: Option<FieldSpan>, prefix: usize| {
        let value = span?.range();
        frame
            .get(value.start.checked_sub(prefix)?..value.end + 1)
            .map(StampField::Raw)
    };
    [
        raw(h.path, 8),
        raw(h.interface, 8),
        raw(h.member, 8),
        raw(h.error_name, 8),
        h.reply_serial
            .map(|v| StampField::U32(FIELD_REPLY_SERIAL, v.get())),
        raw(h.destination, 8),
        Some(StampField::Sender),
        raw(h.signature, 5),
        (h.unix_fds != 0).then_some(StampField::U32(FIELD_UNIX_FDS, h.unix_fds)),
    ]
}

/// Writes a header into a zeroed buffer of exactly the right length.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
    big: bool,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    fn u32(&mut self, v: u32) {
        self.put(&if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// Skips the (zero) padding up to a multiple of 8.
    fn align8(&mut self) {
        self.pos = align_up(self.pos, 8);
    }

    /// Writes a SENDER field at the current position (a multiple of 8); returns where its
    /// value starts.
    fn sender(&mut self, name: &[u8]) -> usize {
        self.put(&[FIELD_SENDER, 1, b's', 0]);
        self.u32(name.len() as u32);
        let at = self.pos;
        self.put(name);
        self.pos += 1;
        at
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
#[derive(Debug, Clone, Copy)]
struct Header {
    endian: Endian,
    mtype: MessageType,
    flags: Flags,
    serial: u32,
    reply_serial: Option<NonZeroU32>,
    path: Option<FieldSpan>,
    interface: Option<FieldSpan>,
    member: Option<FieldSpan>,
    error_name: Option<FieldSpan>,
    destination: Option<FieldSpan>,
    sender: Option<FieldSpan>,
    signature: Option<FieldSpan>,
    unix_fds: u32,
    body_start: u32,
    /// Where the header-field array ends.
    fields_end: u32,
    /// Set when the header fields are known ones in increasing code order, without SENDER or a
    /// zero UNIX_FDS: where SENDER goes (the start of the first field after it, or the end of
    /// the header), so that the forwarded header is this one with SENDER inserted.
    sender_at: Option<NonZeroU32>,
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
        fields_end: 0,
        sender_at: None,
    };

    let mut v = Validator::new(bytes);
    let fields_end = FIXED_HEADER_LEN + fields_len as usize;
    h.fields_end = fields_end as u32;
    let mut body_sig = None;
    let mut seen = 0u16;
    let mut pos = FIXED_HEADER_LEN;
    // For `Header::sender_at`: whether the codes increase, where the first field after SENDER
    // starts, whether UNIX_FDS is 0.
    let (mut ordered, mut last_code, mut after_sender, mut zero_fds) = (true, 0, None, false);
    while pos < fields_end {
        pos = v.pad(pos, 8, fields_end).map_err(in_header)?;
        if pos >= fields_end {
            return Err(WireError::BadArray(
                "header field array length counts trailing padding",
            ));
        }
        let code = bytes.u8_at(pos).ok_or(WireError::Truncated)?;
        ordered &= code > last_code;
        last_code = code;
        let field_start = pos;
        // A known field framed as it should be (as nearly all are) is read directly; any other
        // goes the general way, which also finds what is wrong with it.
        let value = match known_field(bytes, pos, fields_end, seen) {
            Some(value) => value,
            None => general_field(&mut v, pos, fields_end, seen)?,
        };
        let Some(rule) = FIELD_RULES.get(usize::from(code).wrapping_sub(1)) else {
            // Unknown field: accepted if well formed, and dropped when forwarded.
            ordered = false;
            pos = value.end();
            continue;
        };
        seen |= 1 << code;
        let invalid = WireError::BadHeaderField(rule.invalid);
        match value {
            Value::U32 { n, end } => {
                pos = end;
                if code == FIELD_REPLY_SERIAL {
                    h.reply_serial = NonZeroU32::new(n);
                    if h.reply_serial.is_none() {
                        return Err(invalid);
                    }
                } else {
                    h.unix_fds = n;
                    zero_fds = n == 0;
                    after_sender = after_sender.or(Some(field_start));
                }
            }
            Value::Sig { start, len, end } => {
                // The body's signature keeps its end table for the body walk below.
                let (table, _) = v.signature(start, len, false)?;
                body_sig = Some((start, len, table));
                h.signature = FieldSpan::new(start, len);
                after_sender = after_sender.or(Some(field_start));
                pos = end;
            }
            Value::Str { start, len, end } => {
                // The name checks accept only ASCII without nul bytes, so they also do the
                // string checks.
                let s = data.get(start..start + len).ok_or(WireError::Truncated)?;
                let valid = match code {
                    FIELD_PATH => names::object_path(s),
                    FIELD_INTERFACE | FIELD_ERROR_NAME => names::interface(s),
                    FIELD_MEMBER => names::member(s),
                    _ => names::bus_name(s),
                };
                if !valid {
                    return Err(invalid);
                }
                let span = FieldSpan::new(start, len);
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
            Value::Unknown { end } => pos = end,
        }
    }
    let padding = data
        .get(fields_end..body_start)
        .ok_or(WireError::Truncated)?;
    if padding.iter().any(|&b| b != 0) {
        return Err(WireError::NonZeroPadding);
    }
    if ordered && h.sender.is_none() && !zero_fds {
        h.sender_at = NonZeroU32::new(after_sender.unwrap_or(body_start) as u32);
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

/// Where the value of a header field is, and where the field ends.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A `u`.
    U32 { n: u32, end: usize },
    /// A `g`: its text.
    Sig {
        start: usize,
        len: usize,
        end: usize,
    },
    /// An `s` or `o`: its text.
    Str {
        start: usize,
        len: usize,
        end: usize,
    },
    /// A field of an unknown code, validated.
    Unknown { end: usize },
}

impl Value {
    fn end(self) -> usize {
        match self {
            Value::U32 { end, .. }
            | Value::Sig { end, .. }
            | Value::Str { end, .. }
            | Value::Unknown { end } => end,
        }
    }
}

/// The signature each known header field must have, by code.
const FIELD_SIGS: [u8; 10] = [0, b'o', b's', b's', b's', b'u', b's', b's', b'g', b'u'];

/// The header field at `pos` (a multiple of 8, below `limit`), when it is a known field not
/// `seen` before, with its one allowed signature and a value that lies within `limit` with its
/// nul terminator in place; `None` for anything else, which [`general_field`] then reads (and
/// finds what is wrong with). Both find the same value for a field this accepts.
fn known_field(bytes: Bytes<'_>, pos: usize, limit: usize, seen: u16) -> Option<Value> {
    let data = bytes.data;
    let &[code, 1, sig, 0] = data.get(pos..pos + 4)? else {
        return None;
    };
    if code == 0 || FIELD_SIGS.get(usize::from(code)) != Some(&sig) || seen & (1 << code) != 0 {
        return None;
    }
    let nul_at = |nul: usize| nul < limit && data.get(nul) == Some(&0);
    match sig {
        b'u' => (pos + 8 <= limit).then(|| {
            Some(Value::U32 {
                n: bytes.u32_at(pos + 4)?,
                end: pos + 8,
            })
        })?,
        b'g' => {
            let len = usize::from(*data.get(pos + 4)?);
            let nul = pos + 5 + len;
            nul_at(nul).then_some(Value::Sig {
                start: pos + 5,
                len,
                end: nul + 1,
            })
        }
        _ => {
            if pos + 8 > limit {
                return None;
            }
            let len = bytes.u32_at(pos + 4)? as usize;
            let nul = (pos + 8).checked_add(len)?;
            nul_at(nul).then_some(Value::Str {
                start: pos + 8,
                len,
                end: nul + 1,
            })
        }
    }
}

/// The header field at `pos` (a multiple of 8, below `limit`), checked step by step: its code,
/// whether it was `seen`, its variant's signature, the framing of its value. An unknown field
/// is validated whole.
fn general_field(
    v: &mut Validator<'_>,
    pos: usize,
    limit: usize,
    seen: u16,
) -> Result<Value, WireError> {
    let code = v.bytes().u8_at(pos).ok_or(WireError::Truncated)?;
    let (sig_start, sig_len, value) = v.signature_value(pos + 1, limit).map_err(in_header)?;
    if code == 0 {
        return Err(WireError::BadHeaderField("field code 0 (INVALID)"));
    }
    let Some(rule) = FIELD_RULES.get(usize::from(code) - 1) else {
        let top = v.tables_top();
        let (table, depth) = v.signature(sig_start, sig_len, true).map_err(in_header)?;
        if 3 + depth > crate::signature::MAX_TOTAL_DEPTH {
            return Err(WireError::BadHeaderField(
                "nested more than 64 containers deep",
            ));
        }
        let end = v
            .values(sig_start, sig_len, table, value, limit, 3)
            .map_err(in_header)?;
        v.release(top);
        return Ok(Value::Unknown { end });
    };
    debug_assert_eq!(rule.code, code);
    if seen & (1 << code) != 0 {
        return Err(WireError::BadHeaderField(rule.repeated));
    }
    if sig_len != 1 || v.bytes().u8_at(sig_start) != Some(rule.sig) {
        return Err(WireError::BadHeaderField(rule.wrong_type));
    }
    Ok(match rule.sig {
        b'u' => {
            let p = v.pad(value, 4, limit).map_err(in_header)?;
            let n = v.u32_within(p, limit).map_err(in_header)?;
            Value::U32 { n, end: p + 4 }
        }
        b'g' => {
            let (start, len, end) = v.signature_value(value, limit).map_err(in_header)?;
            Value::Sig { start, len, end }
        }
        _ => {
            let (s, end) = v.string_bytes(value, limit).map_err(in_header)?;
            Value::Str {
                start: end - 1 - s.len(),
                len: s.len(),
                end,
            }
        }
    })
}

/// Errors inside the header-field array are header errors, whatever the walker called them.
fn in_header(e: WireError) -> WireError {
    match e {
        WireError::BadBody(w) => WireError::BadHeaderField(w),
        other => other,
    }
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
