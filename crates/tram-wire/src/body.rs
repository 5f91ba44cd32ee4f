//! Reading arguments from a validated body.

use crate::{Message, WireError};

/// One top-level argument of a body, as match rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    /// A `s` argument.
    Str(&'a str),
    /// An `o` argument.
    ObjectPath(&'a str),
    /// A `g` argument.
    Signature(&'a str),
    /// Any other type.
    Other,
}

impl Message {
    /// The first `max` top-level arguments, classified for match rules (`argN`, `argNpath`,
    /// `arg0namespace`). Stops early at the end of the body.
    pub fn args(&self, max: usize) -> impl Iterator<Item = Arg<'_>> {
        let _ = max;
        let v: Vec<Arg<'_>> = todo!();
        v.into_iter()
    }
}

/// A cursor over a validated body. Each `read_*` checks the next type in the signature.
#[derive(Debug)]
pub struct BodyReader<'a> {
    _msg: &'a Message,
}

impl<'a> BodyReader<'a> {
    /// A reader at the start of `msg`'s body.
    pub fn new(msg: &'a Message) -> Self {
        BodyReader { _msg: msg }
    }
    /// Reads a `s` or `o`.
    ///
    /// # Errors
    /// The next argument is not a string or object path, or the body has ended.
    pub fn read_str(&mut self) -> Result<&'a str, WireError> {
        todo!()
    }
    /// Reads a `u`.
    ///
    /// # Errors
    /// The next argument is not a `u`, or the body has ended.
    pub fn read_u32(&mut self) -> Result<u32, WireError> {
        todo!()
    }
    /// Reads an `as`.
    ///
    /// # Errors
    /// The next argument is not an `as`, or the body has ended.
    pub fn read_str_array(&mut self) -> Result<Vec<&'a str>, WireError> {
        todo!()
    }
    /// Reads an `a{ss}`.
    ///
    /// # Errors
    /// The next argument is not an `a{ss}`, or the body has ended.
    pub fn read_str_dict(&mut self) -> Result<Vec<(&'a str, &'a str)>, WireError> {
        todo!()
    }
    /// Skips one complete argument of any type.
    ///
    /// # Errors
    /// The body has ended.
    pub fn skip(&mut self) -> Result<(), WireError> {
        todo!()
    }
}
