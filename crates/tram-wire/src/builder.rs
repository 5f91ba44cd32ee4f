//! Marshalling the bus's own messages.

use crate::{Endian, Flags, Message};

/// Builds a message the bus sends itself (replies, errors, signals from the driver).
#[derive(Debug)]
pub struct MessageBuilder {
    _endian: Endian,
    _flags: Flags,
}

impl MessageBuilder {
    /// A method call.
    pub fn method_call(path: &str, interface: Option<&str>, member: &str) -> Self {
        let _ = (path, interface, member);
        todo!()
    }
    /// A method return answering `reply_serial`.
    pub fn method_return(reply_serial: u32) -> Self {
        let _ = reply_serial;
        todo!()
    }
    /// An error named `name` answering `reply_serial`.
    pub fn error(reply_serial: u32, name: &str) -> Self {
        let _ = (reply_serial, name);
        todo!()
    }
    /// A signal.
    pub fn signal(path: &str, interface: &str, member: &str) -> Self {
        let _ = (path, interface, member);
        todo!()
    }
    /// Sets DESTINATION.
    pub fn destination(self, name: &str) -> Self {
        let _ = name;
        todo!()
    }
    /// Sets SENDER.
    pub fn sender(self, name: &str) -> Self {
        let _ = name;
        todo!()
    }
    /// Sets the flags byte.
    pub fn flags(self, flags: Flags) -> Self {
        let _ = flags;
        todo!()
    }
    /// Sets the byte order (default: the machine's).
    pub fn endian(self, endian: Endian) -> Self {
        let _ = endian;
        todo!()
    }
    /// Sets the body: `signature` and a closure that writes exactly the values it describes.
    pub fn body(self, signature: &str, write: impl FnOnce(&mut BodyWriter)) -> Self {
        let _ = (signature, write);
        todo!()
    }
    /// Sets UNIX_FDS (the fds themselves travel beside the message).
    pub fn unix_fds(self, n: u32) -> Self {
        let _ = n;
        todo!()
    }
    /// Finishes the message with `serial`.
    ///
    /// # Panics
    /// If the builder was used to produce an invalid message (a bug in the caller, never input).
    pub fn build(self, serial: u32) -> Message {
        let _ = serial;
        todo!()
    }
}

/// Writes values into a body, aligning each to its type's boundary.
#[derive(Debug)]
pub struct BodyWriter {
    _buf: Vec<u8>,
}

impl BodyWriter {
    /// `y`
    pub fn u8(&mut self, v: u8) {
        let _ = v;
        todo!()
    }
    /// `b`
    pub fn bool(&mut self, v: bool) {
        let _ = v;
        todo!()
    }
    /// `u`
    pub fn u32(&mut self, v: u32) {
        let _ = v;
        todo!()
    }
    /// `i`
    pub fn i32(&mut self, v: i32) {
        let _ = v;
        todo!()
    }
    /// `t`
    pub fn u64(&mut self, v: u64) {
        let _ = v;
        todo!()
    }
    /// `s`
    pub fn string(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    /// `o`
    pub fn object_path(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    /// `g`
    pub fn signature(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    /// `h`: an index into the message's fds.
    pub fn unix_fd(&mut self, index: u32) {
        let _ = index;
        todo!()
    }
    /// `ay`
    pub fn byte_array(&mut self, v: &[u8]) {
        let _ = v;
        todo!()
    }
    /// An array whose elements have signature `element`; `write` writes the elements.
    pub fn array(&mut self, element: &str, write: impl FnOnce(&mut BodyWriter)) {
        let _ = (element, write);
        todo!()
    }
    /// A struct `( … )`; `write` writes the members.
    pub fn structure(&mut self, write: impl FnOnce(&mut BodyWriter)) {
        let _ = write;
        todo!()
    }
    /// A dict entry `{ … }` inside an array; `write` writes the key and value.
    pub fn dict_entry(&mut self, write: impl FnOnce(&mut BodyWriter)) {
        let _ = write;
        todo!()
    }
    /// A variant holding one value of signature `signature`; `write` writes it.
    pub fn variant(&mut self, signature: &str, write: impl FnOnce(&mut BodyWriter)) {
        let _ = (signature, write);
        todo!()
    }
}
