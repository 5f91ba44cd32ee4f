//! Marshalling the bus's own messages.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::message::{
    FIELD_DESTINATION, FIELD_ERROR_NAME, FIELD_INTERFACE, FIELD_MEMBER, FIELD_PATH,
    FIELD_REPLY_SERIAL, FIELD_SENDER, FIELD_SIGNATURE, FIELD_UNIX_FDS, FieldValue, HeaderFields,
};
use crate::signature::alignment;
use crate::walk::align_up;
use crate::{Endian, Flags, Message, MessageType};

/// Builds a message the bus sends itself (replies, errors, signals from the driver).
///
/// ```
/// use tram_wire::{BodyReader, MessageBuilder};
///
/// let msg = MessageBuilder::signal("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameLost")
///     .destination(":1.7")
///     .body("s", |w| w.string("org.example.Name"))
///     .build(3);
/// assert_eq!(BodyReader::new(&msg).read_str(), Ok("org.example.Name"));
/// ```
#[derive(Debug)]
pub struct MessageBuilder {
    endian: Endian,
    flags: Flags,
    mtype: MessageType,
    path: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    error_name: Option<String>,
    reply_serial: Option<u32>,
    destination: Option<String>,
    sender: Option<String>,
    signature: String,
    body: Vec<u8>,
    body_endian: Endian,
    unix_fds: u32,
}

impl MessageBuilder {
    /// A method call.
    pub fn method_call(path: &str, interface: Option<&str>, member: &str) -> Self {
        let mut b = MessageBuilder::new(MessageType::MethodCall);
        b.path = Some(path.to_owned());
        b.interface = interface.map(str::to_owned);
        b.member = Some(member.to_owned());
        b
    }
    /// A method return answering `reply_serial`.
    pub fn method_return(reply_serial: u32) -> Self {
        let mut b = MessageBuilder::new(MessageType::MethodReturn);
        b.reply_serial = Some(reply_serial);
        b
    }
    /// An error named `name` answering `reply_serial`.
    pub fn error(reply_serial: u32, name: &str) -> Self {
        let mut b = MessageBuilder::new(MessageType::Error);
        b.reply_serial = Some(reply_serial);
        b.error_name = Some(name.to_owned());
        b
    }
    /// A signal.
    pub fn signal(path: &str, interface: &str, member: &str) -> Self {
        let mut b = MessageBuilder::new(MessageType::Signal);
        b.path = Some(path.to_owned());
        b.interface = Some(interface.to_owned());
        b.member = Some(member.to_owned());
        b
    }
    /// Sets DESTINATION.
    pub fn destination(mut self, name: &str) -> Self {
        self.destination = Some(name.to_owned());
        self
    }
    /// Sets SENDER.
    pub fn sender(mut self, name: &str) -> Self {
        self.sender = Some(name.to_owned());
        self
    }
    /// Sets the flags byte.
    pub fn flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }
    /// Sets the byte order (default: the machine's). Set it before [`MessageBuilder::body`].
    pub fn endian(mut self, endian: Endian) -> Self {
        self.endian = endian;
        self
    }
    /// Sets the body: `signature` and a closure that writes exactly the values it describes.
    ///
    /// The body is marshalled in the byte order set so far.
    pub fn body(mut self, signature: &str, write: impl FnOnce(&mut BodyWriter)) -> Self {
        let mut w = BodyWriter::new(self.endian);
        write(&mut w);
        self.signature = signature.to_owned();
        self.body = w.buf;
        self.body_endian = self.endian;
        self
    }
    /// Sets UNIX_FDS (the fds themselves travel beside the message).
    pub fn unix_fds(mut self, n: u32) -> Self {
        self.unix_fds = n;
        self
    }
    /// Finishes the message with `serial`.
    ///
    /// The message carries no fds; UNIX_FDS is not compared with them.
    ///
    /// # Panics
    /// If the builder was used to produce an invalid message (a bug in the caller, never input):
    /// serial 0, an invalid name or path, a body that does not match its signature, or the byte
    /// order changed after the body was written.
    pub fn build(self, serial: u32) -> Message {
        self.finish(serial, Vec::new(), false)
    }
    /// Finishes the message with `serial`, carrying `fds` (whose number must equal UNIX_FDS).
    ///
    /// # Panics
    /// As [`MessageBuilder::build`], and if the number of fds differs from UNIX_FDS.
    pub fn build_with_fds(self, serial: u32, fds: Vec<OwnedFd>) -> Message {
        self.finish(serial, fds, true)
    }

    fn new(mtype: MessageType) -> Self {
        MessageBuilder {
            endian: Endian::NATIVE,
            flags: Flags::default(),
            mtype,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            reply_serial: None,
            destination: None,
            sender: None,
            signature: String::new(),
            body: Vec::new(),
            body_endian: Endian::NATIVE,
            unix_fds: 0,
        }
    }

    fn finish(self, serial: u32, fds: Vec<OwnedFd>, check_fds: bool) -> Message {
        assert!(
            self.body.is_empty() || self.body_endian == self.endian,
            "MessageBuilder: byte order changed after the body was written"
        );
        let mut fields = HeaderFields::default();
        if let Some(v) = text(&self.path) {
            fields.push(FIELD_PATH, FieldValue::Str(b'o', v));
        }
        if let Some(v) = text(&self.interface) {
            fields.push(FIELD_INTERFACE, FieldValue::Str(b's', v));
        }
        if let Some(v) = text(&self.member) {
            fields.push(FIELD_MEMBER, FieldValue::Str(b's', v));
        }
        if let Some(v) = text(&self.error_name) {
            fields.push(FIELD_ERROR_NAME, FieldValue::Str(b's', v));
        }
        if let Some(v) = self.reply_serial {
            fields.push(FIELD_REPLY_SERIAL, FieldValue::U32(v));
        }
        if let Some(v) = text(&self.destination) {
            fields.push(FIELD_DESTINATION, FieldValue::Str(b's', v));
        }
        if let Some(v) = text(&self.sender) {
            fields.push(FIELD_SENDER, FieldValue::Str(b's', v));
        }
        if !self.signature.is_empty() {
            fields.push(FIELD_SIGNATURE, FieldValue::Sig(self.signature.as_bytes()));
        }
        if self.unix_fds != 0 {
            fields.push(FIELD_UNIX_FDS, FieldValue::U32(self.unix_fds));
        }
        let mut out = Vec::with_capacity(fields.header_len() + self.body.len());
        out.push(self.endian.to_byte());
        out.push(self.mtype.to_byte());
        out.push(self.flags.0);
        out.push(1);
        let body_len = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        for v in [body_len, serial] {
            match self.endian {
                Endian::Little => out.extend_from_slice(&v.to_le_bytes()),
                Endian::Big => out.extend_from_slice(&v.to_be_bytes()),
            }
        }
        fields.write(&mut out, self.endian);
        out.extend_from_slice(&self.body);
        match Message::parse_with(Arc::from(out), fds, check_fds) {
            Ok(msg) => msg,
            Err(e) => panic!("MessageBuilder produced an invalid message: {e}"),
        }
    }
}

/// Writes values into a body, aligning each to its type's boundary.
///
/// The body starts on an 8-byte boundary of the message, so alignment relative to the start of
/// the body is alignment relative to the message.
#[derive(Debug)]
pub struct BodyWriter {
    buf: Vec<u8>,
    endian: Endian,
}

impl BodyWriter {
    /// `y`
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// `b`
    pub fn bool(&mut self, v: bool) {
        self.u32(u32::from(v));
    }
    /// `n`
    pub fn i16(&mut self, v: i16) {
        self.u16(v as u16);
    }
    /// `q`
    pub fn u16(&mut self, v: u16) {
        self.pad(2);
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.buf.extend_from_slice(&b);
    }
    /// `u`
    pub fn u32(&mut self, v: u32) {
        self.pad(4);
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.buf.extend_from_slice(&b);
    }
    /// `i`
    pub fn i32(&mut self, v: i32) {
        self.u32(v as u32);
    }
    /// `t`
    pub fn u64(&mut self, v: u64) {
        self.pad(8);
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.buf.extend_from_slice(&b);
    }
    /// `x`
    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64);
    }
    /// `d`
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    /// `s`
    pub fn string(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(0);
    }
    /// `o`
    pub fn object_path(&mut self, v: &str) {
        self.string(v);
    }
    /// `g`
    pub fn signature(&mut self, v: &str) {
        self.buf.push(v.len() as u8);
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(0);
    }
    /// `h`: an index into the message's fds.
    pub fn unix_fd(&mut self, index: u32) {
        self.u32(index);
    }
    /// `ay`
    pub fn byte_array(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    /// An array whose elements have signature `element`; `write` writes the elements.
    ///
    /// Writes the length, the padding to the element alignment (present even when the array is
    /// empty), the elements, then patches the length.
    pub fn array(&mut self, element: &str, write: impl FnOnce(&mut BodyWriter)) {
        self.u32(0);
        let len_at = self.buf.len() - 4;
        self.pad(alignment(
            element.as_bytes().first().copied().unwrap_or(b'y'),
        ));
        let start = self.buf.len();
        write(self);
        let len = (self.buf.len() - start) as u32;
        let b = match self.endian {
            Endian::Little => len.to_le_bytes(),
            Endian::Big => len.to_be_bytes(),
        };
        if let Some(slot) = self.buf.get_mut(len_at..len_at + 4) {
            slot.copy_from_slice(&b);
        }
    }
    /// A struct `( … )`; `write` writes the members.
    pub fn structure(&mut self, write: impl FnOnce(&mut BodyWriter)) {
        self.pad(8);
        write(self);
    }
    /// A dict entry `{ … }` inside an array; `write` writes the key and value.
    pub fn dict_entry(&mut self, write: impl FnOnce(&mut BodyWriter)) {
        self.pad(8);
        write(self);
    }
    /// A variant holding one value of signature `signature`; `write` writes it.
    pub fn variant(&mut self, signature: &str, write: impl FnOnce(&mut BodyWriter)) {
        self.signature(signature);
        write(self);
    }

    /// An empty writer whose alignment counts from its first byte.
    pub(crate) fn new(endian: Endian) -> BodyWriter {
        BodyWriter {
            buf: Vec::new(),
            endian,
        }
    }

    /// The bytes written.
    #[cfg(test)]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn pad(&mut self, align: usize) {
        self.buf.resize(align_up(self.buf.len(), align), 0);
    }
}

fn text(s: &Option<String>) -> Option<&[u8]> {
    s.as_deref().map(str::as_bytes)
}
