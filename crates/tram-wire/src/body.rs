//! Reading arguments from a validated body.
//!
//! The body was checked against its signature by [`Message::parse`], so the readers here only
//! have to check that the caller asks for the type that is actually next; they still never index
//! out of bounds.

use crate::signature::alignment;
use crate::walk::{self, Bytes, align_up};
use crate::{Endian, Message, WireError};

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
    ///
    /// Arguments before the ones of interest are skipped without looking inside arrays, so this
    /// costs little more than reading the strings it returns.
    pub fn args(&self, max: usize) -> impl Iterator<Item = Arg<'_>> {
        let mut reader = BodyReader::new(self);
        (0..max).map_while(move |_| {
            let arg = match reader.peek_code()? {
                b's' => Arg::Str(reader.read_str().ok()?),
                b'o' => Arg::ObjectPath(reader.read_str().ok()?),
                b'g' => Arg::Signature(reader.read_signature().ok()?),
                _ => {
                    reader.skip().ok()?;
                    Arg::Other
                }
            };
            Some(arg)
        })
    }
}

/// A cursor over a validated body. Each `read_*` checks the next type in the signature.
///
/// A reader either covers a whole body or, from [`BodyReader::read_variant`], the single value
/// inside a variant.
#[derive(Debug, Clone)]
pub struct BodyReader<'a> {
    bytes: Bytes<'a>,
    sig: &'a [u8],
    si: usize,
    pos: usize,
}

const MISMATCH: WireError = WireError::BadBody("argument of another type");
const ENDED: WireError = WireError::BadBody("no more arguments");
const MALFORMED: WireError = WireError::BadBody("malformed argument");

impl<'a> BodyReader<'a> {
    /// A reader at the start of `msg`'s body.
    pub fn new(msg: &'a Message) -> Self {
        BodyReader {
            bytes: Bytes {
                data: msg.as_bytes(),
                big: msg.endian() == Endian::Big,
            },
            sig: msg.signature().as_bytes(),
            si: 0,
            pos: msg.body_offset(),
        }
    }

    /// Whether every argument has been read.
    pub fn is_at_end(&self) -> bool {
        self.si >= self.sig.len()
    }

    /// The signature of the arguments not read yet.
    pub fn remaining_signature(&self) -> &'a str {
        let rest = self.sig.get(self.si..).unwrap_or_default();
        std::str::from_utf8(rest).unwrap_or_default()
    }

    /// Reads a `s` or `o`.
    ///
    /// # Errors
    /// The next argument is not a string or object path, or the body has ended.
    pub fn read_str(&mut self) -> Result<&'a str, WireError> {
        self.expect(b"s").or_else(|_| self.expect(b"o"))?;
        let (s, end) = self.bytes.str_at(self.pos).ok_or(MALFORMED)?;
        self.advance(1, end);
        Ok(s)
    }

    /// Reads a `g`.
    ///
    /// # Errors
    /// The next argument is not a signature, or the body has ended.
    pub fn read_signature(&mut self) -> Result<&'a str, WireError> {
        self.expect(b"g")?;
        let (sig, end) = self.bytes.sig_at(self.pos).ok_or(MALFORMED)?;
        let sig = std::str::from_utf8(sig).map_err(|_| MALFORMED)?;
        self.advance(1, end);
        Ok(sig)
    }

    /// Reads a `y`.
    ///
    /// # Errors
    /// The next argument is not a `y`, or the body has ended.
    pub fn read_u8(&mut self) -> Result<u8, WireError> {
        self.expect(b"y")?;
        let v = self.bytes.u8_at(self.pos).ok_or(MALFORMED)?;
        self.advance(1, self.pos + 1);
        Ok(v)
    }

    /// Reads a `b`.
    ///
    /// # Errors
    /// The next argument is not a `b`, or the body has ended.
    pub fn read_bool(&mut self) -> Result<bool, WireError> {
        self.expect(b"b")?;
        Ok(self.word32()? != 0)
    }

    /// Reads an `n`.
    ///
    /// # Errors
    /// The next argument is not an `n`, or the body has ended.
    pub fn read_i16(&mut self) -> Result<i16, WireError> {
        self.expect(b"n")?;
        Ok(self.word16()? as i16)
    }

    /// Reads a `q`.
    ///
    /// # Errors
    /// The next argument is not a `q`, or the body has ended.
    pub fn read_u16(&mut self) -> Result<u16, WireError> {
        self.expect(b"q")?;
        self.word16()
    }

    /// Reads a `u`.
    ///
    /// # Errors
    /// The next argument is not a `u`, or the body has ended.
    pub fn read_u32(&mut self) -> Result<u32, WireError> {
        self.expect(b"u")?;
        self.word32()
    }

    /// Reads an `i`.
    ///
    /// # Errors
    /// The next argument is not an `i`, or the body has ended.
    pub fn read_i32(&mut self) -> Result<i32, WireError> {
        self.expect(b"i")?;
        Ok(self.word32()? as i32)
    }

    /// Reads a `t`.
    ///
    /// # Errors
    /// The next argument is not a `t`, or the body has ended.
    pub fn read_u64(&mut self) -> Result<u64, WireError> {
        self.expect(b"t")?;
        self.word64()
    }

    /// Reads an `x`.
    ///
    /// # Errors
    /// The next argument is not an `x`, or the body has ended.
    pub fn read_i64(&mut self) -> Result<i64, WireError> {
        self.expect(b"x")?;
        Ok(self.word64()? as i64)
    }

    /// Reads a `d`.
    ///
    /// # Errors
    /// The next argument is not a `d`, or the body has ended.
    pub fn read_f64(&mut self) -> Result<f64, WireError> {
        self.expect(b"d")?;
        Ok(f64::from_bits(self.word64()?))
    }

    /// Reads an `h`: the index of the fd in [`Message::fds`].
    ///
    /// # Errors
    /// The next argument is not an `h`, or the body has ended.
    pub fn read_unix_fd(&mut self) -> Result<u32, WireError> {
        self.expect(b"h")?;
        self.word32()
    }

    /// Reads an `ay`.
    ///
    /// # Errors
    /// The next argument is not an `ay`, or the body has ended.
    pub fn read_byte_array(&mut self) -> Result<&'a [u8], WireError> {
        self.expect(b"ay")?;
        let (start, end) = self.array_bounds()?;
        let v = self.bytes.data.get(start..end).ok_or(MALFORMED)?;
        self.advance(2, end);
        Ok(v)
    }

    /// Reads an `as`.
    ///
    /// # Errors
    /// The next argument is not an `as`, or the body has ended.
    pub fn read_str_array(&mut self) -> Result<Vec<&'a str>, WireError> {
        self.expect(b"as")?;
        let (mut pos, end) = self.array_bounds()?;
        let mut out = Vec::new();
        while pos < end {
            let (s, next) = self.bytes.str_at(pos).ok_or(MALFORMED)?;
            out.push(s);
            pos = next;
        }
        self.advance(2, end);
        Ok(out)
    }

    /// Reads an `a{ss}`.
    ///
    /// # Errors
    /// The next argument is not an `a{ss}`, or the body has ended.
    pub fn read_str_dict(&mut self) -> Result<Vec<(&'a str, &'a str)>, WireError> {
        self.expect(b"a{ss}")?;
        let (mut pos, end) = self.array_bounds()?;
        let mut out = Vec::new();
        while pos < end {
            let (k, next) = self.bytes.str_at(align_up(pos, 8)).ok_or(MALFORMED)?;
            let (v, next) = self.bytes.str_at(next).ok_or(MALFORMED)?;
            out.push((k, v));
            pos = next;
        }
        self.advance(5, end);
        Ok(out)
    }

    /// Reads an `a{sv}`: each key with a reader over its value.
    ///
    /// # Errors
    /// The next argument is not an `a{sv}`, or the body has ended.
    pub fn read_variant_dict(&mut self) -> Result<Vec<(&'a str, BodyReader<'a>)>, WireError> {
        self.expect(b"a{sv}")?;
        let (mut pos, end) = self.array_bounds()?;
        let mut out = Vec::new();
        while pos < end {
            let (k, next) = self.bytes.str_at(align_up(pos, 8)).ok_or(MALFORMED)?;
            let mut value = BodyReader {
                bytes: self.bytes,
                sig: b"v",
                si: 0,
                pos: next,
            };
            let inner = value.read_variant()?;
            out.push((k, inner));
            pos = value.pos;
        }
        self.advance(5, end);
        Ok(out)
    }

    /// Reads a `v`: a reader over the single value inside, whose signature is
    /// [`BodyReader::remaining_signature`].
    ///
    /// # Errors
    /// The next argument is not a `v`, or the body has ended.
    pub fn read_variant(&mut self) -> Result<BodyReader<'a>, WireError> {
        self.expect(b"v")?;
        let (sig, start) = self.bytes.sig_at(self.pos).ok_or(MALFORMED)?;
        let inner = BodyReader {
            bytes: self.bytes,
            sig,
            si: 0,
            pos: start,
        };
        let (_, end) = walk::skip(self.bytes, sig, 0, start).ok_or(MALFORMED)?;
        self.advance(1, end);
        Ok(inner)
    }

    /// Skips one complete argument of any type.
    ///
    /// # Errors
    /// The body has ended.
    pub fn skip(&mut self) -> Result<(), WireError> {
        if self.is_at_end() {
            return Err(ENDED);
        }
        let (si, pos) = walk::skip(self.bytes, self.sig, self.si, self.pos).ok_or(MALFORMED)?;
        self.si = si;
        self.pos = pos;
        Ok(())
    }

    /// The type code of the next argument.
    fn peek_code(&self) -> Option<u8> {
        self.sig.get(self.si).copied()
    }

    /// Checks that the next argument's complete type is exactly `ty`.
    fn expect(&self, ty: &[u8]) -> Result<(), WireError> {
        let rest = self.sig.get(self.si..).unwrap_or_default();
        if rest.is_empty() {
            return Err(ENDED);
        }
        let matches = rest.starts_with(ty) && crate::signature::type_end(rest, 0) == Some(ty.len());
        if matches { Ok(()) } else { Err(MISMATCH) }
    }

    /// Moves past an argument whose type is `sig_len` bytes long and whose value ends at `end`.
    fn advance(&mut self, sig_len: usize, end: usize) {
        self.si += sig_len;
        self.pos = end;
    }

    fn word16(&mut self) -> Result<u16, WireError> {
        let p = align_up(self.pos, 2);
        let v = self.bytes.u16_at(p).ok_or(MALFORMED)?;
        self.advance(1, p + 2);
        Ok(v)
    }

    fn word32(&mut self) -> Result<u32, WireError> {
        let p = align_up(self.pos, 4);
        let v = self.bytes.u32_at(p).ok_or(MALFORMED)?;
        self.advance(1, p + 4);
        Ok(v)
    }

    fn word64(&mut self) -> Result<u64, WireError> {
        let p = align_up(self.pos, 8);
        let v = self.bytes.u64_at(p).ok_or(MALFORMED)?;
        self.advance(1, p + 8);
        Ok(v)
    }

    /// For the array at the cursor: where its first element starts and where its data ends.
    fn array_bounds(&self) -> Result<(usize, usize), WireError> {
        let p = align_up(self.pos, 4);
        let n = self.bytes.u32_at(p).ok_or(MALFORMED)? as usize;
        let elem = self.sig.get(self.si + 1).copied().ok_or(MALFORMED)?;
        let start = align_up(p + 4, alignment(elem));
        Ok((start, start + n))
    }
}
