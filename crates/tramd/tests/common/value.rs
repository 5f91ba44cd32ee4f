//! D-Bus values and their marshalling, written independently of `tram-wire` so that the tests
//! judge the bus with an oracle of their own.
//!
//! [`Value`] covers every D-Bus type. [`encode_body`] and [`decode_body`] marshal a list of values
//! at a given byte order, following the "Marshaling (Wire Format)" section of the D-Bus
//! specification; [`Enc`] and [`Dec`] are the cursors behind them, reused by the message framing
//! in `raw.rs`.

use std::fmt;

/// One D-Bus value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `y`
    Byte(u8),
    /// `b`
    Bool(bool),
    /// `n`
    I16(i16),
    /// `q`
    U16(u16),
    /// `i`
    I32(i32),
    /// `u`
    U32(u32),
    /// `x`
    I64(i64),
    /// `t`
    U64(u64),
    /// `d`
    F64(f64),
    /// `s`
    Str(String),
    /// `o`
    Path(String),
    /// `g`
    Sig(String),
    /// `h`: an index into the message's fds.
    Fd(u32),
    /// `a…`: the element signature (needed for empty arrays) and the elements. Never `ay`.
    Array(String, Vec<Value>),
    /// `ay`, kept as bytes (the decoder always produces this for `ay`).
    Bytes(Vec<u8>),
    /// `(…)`
    Struct(Vec<Value>),
    /// `{…}`, only inside an array.
    Entry(Box<Value>, Box<Value>),
    /// `v`
    Variant(Box<Value>),
}

impl Value {
    /// A `s`.
    pub fn str(s: &str) -> Value {
        Value::Str(s.to_owned())
    }

    /// An `o`.
    pub fn path(s: &str) -> Value {
        Value::Path(s.to_owned())
    }

    /// An `as`.
    pub fn str_array(items: &[&str]) -> Value {
        Value::Array("s".into(), items.iter().map(|s| Value::str(s)).collect())
    }

    /// A `v` holding `v`.
    pub fn variant(v: Value) -> Value {
        Value::Variant(Box::new(v))
    }

    /// An `a{sv}` from pairs.
    pub fn dict_sv(pairs: Vec<(&str, Value)>) -> Value {
        Value::Array(
            "{sv}".into(),
            pairs
                .into_iter()
                .map(|(k, v)| Value::Entry(Box::new(Value::str(k)), Box::new(Value::variant(v))))
                .collect(),
        )
    }

    /// This value's type signature.
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::F64(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Fd(_) => "h".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Bytes(_) => "ay".into(),
            Value::Struct(members) => {
                let inner: String = members.iter().map(Value::signature).collect();
                format!("({inner})")
            }
            Value::Entry(k, v) => format!("{{{}{}}}", k.signature(), v.signature()),
            Value::Variant(_) => "v".into(),
        }
    }

    /// The string inside a `s`, `o` or `g`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Path(s) | Value::Sig(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside a `u`.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U32(n) => Some(*n),
            _ => None,
        }
    }

    /// The strings of an `as` (or `ao`, `ag`).
    pub fn as_str_vec(&self) -> Option<Vec<String>> {
        match self {
            Value::Array(_, items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        }
    }

    /// The value inside a `v`, or the value itself.
    pub fn unvariant(&self) -> &Value {
        match self {
            Value::Variant(v) => v.unvariant(),
            other => other,
        }
    }

    /// Looks `key` up in an `a{s…}` dictionary; variants are unwrapped.
    pub fn dict_get(&self, key: &str) -> Option<&Value> {
        let Value::Array(_, items) = self else {
            return None;
        };
        items.iter().find_map(|e| match e {
            Value::Entry(k, v) if k.as_str() == Some(key) => Some(v.unvariant()),
            _ => None,
        })
    }

    /// Applies `f` to this value and every value inside it, depth first, parents first.
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Value)) {
        f(self);
        match self {
            Value::Array(_, items) | Value::Struct(items) => {
                items.iter_mut().for_each(|v| v.visit_mut(f));
            }
            Value::Entry(k, v) => {
                k.visit_mut(f);
                v.visit_mut(f);
            }
            Value::Variant(v) => v.visit_mut(f),
            _ => {}
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Byte(v) => write!(f, "byte {v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "int16 {v}"),
            Value::U16(v) => write!(f, "uint16 {v}"),
            Value::I32(v) => write!(f, "int32 {v}"),
            Value::U32(v) => write!(f, "uint32 {v}"),
            Value::I64(v) => write!(f, "int64 {v}"),
            Value::U64(v) => write!(f, "uint64 {v}"),
            Value::F64(v) => write!(f, "double {v}"),
            Value::Str(v) => write!(f, "{v:?}"),
            Value::Path(v) => write!(f, "objpath {v:?}"),
            Value::Sig(v) => write!(f, "signature {v:?}"),
            Value::Fd(v) => write!(f, "handle {v}"),
            Value::Bytes(v) if v.len() <= 64 => write!(f, "bytes {v:?}"),
            Value::Bytes(v) => write!(f, "bytes [{} bytes]", v.len()),
            Value::Array(elem, items) => {
                if items.is_empty() {
                    return write!(f, "@a{elem} []");
                }
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Struct(items) => {
                f.write_str("(")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Value::Entry(k, v) => write!(f, "{k}: {v}"),
            Value::Variant(v) => write!(f, "<{v}>"),
        }
    }
}

/// Marshals `values` as a message body (which starts 8-aligned) in the given byte order.
pub fn encode_body(values: &[Value], big_endian: bool) -> Vec<u8> {
    let mut enc = Enc::new(big_endian);
    for v in values {
        enc.value(v);
    }
    enc.buf
}

/// Unmarshals a body of `signature` in the given byte order, requiring every byte to be used.
///
/// # Errors
/// The bytes do not hold values of that signature.
pub fn decode_body(signature: &str, body: &[u8], big_endian: bool) -> Result<Vec<Value>, String> {
    let mut dec = Dec::new(body, 0, big_endian);
    let mut values = Vec::new();
    let mut rest = signature;
    while !rest.is_empty() {
        let (ty, tail) = split_first_type(rest)?;
        values.push(dec.value(ty)?);
        rest = tail;
    }
    if dec.pos != body.len() {
        return Err(format!(
            "body has {} bytes but signature {signature:?} uses {}",
            body.len(),
            dec.pos
        ));
    }
    Ok(values)
}

/// Splits the first complete type off a signature.
///
/// # Errors
/// The signature is empty or malformed.
pub fn split_first_type(sig: &str) -> Result<(&str, &str), String> {
    let end = type_end(sig.as_bytes(), 0)?;
    Ok(sig.split_at(end))
}

fn type_end(sig: &[u8], start: usize) -> Result<usize, String> {
    let err = || format!("malformed signature {:?}", String::from_utf8_lossy(sig));
    match sig.get(start).ok_or_else(err)? {
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o' | b'g'
        | b'h' | b'v' => Ok(start + 1),
        b'a' => type_end(sig, start + 1),
        open @ (b'(' | b'{') => {
            let close = if *open == b'(' { b')' } else { b'}' };
            let mut i = start + 1;
            while *sig.get(i).ok_or_else(err)? != close {
                i = type_end(sig, i)?;
            }
            Ok(i + 1)
        }
        _ => Err(err()),
    }
}

fn alignment(first: u8) -> usize {
    match first {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

/// A marshalling cursor; offsets count from the start of `buf`, which must be 8-aligned in the
/// message.
pub struct Enc {
    /// The bytes written so far.
    pub buf: Vec<u8>,
    big: bool,
}

impl Enc {
    /// An empty buffer in the given byte order.
    pub fn new(big: bool) -> Enc {
        Enc {
            buf: Vec::new(),
            big,
        }
    }

    /// Pads with zero bytes to a multiple of `align`.
    pub fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }

    /// Writes a `u` at its alignment.
    pub fn u32(&mut self, v: u32) {
        self.pad(4);
        let bytes = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&bytes);
    }

    /// Overwrites the `u` at `pos`.
    pub fn patch_u32(&mut self, pos: usize, v: u32) {
        let bytes = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf[pos..pos + 4].copy_from_slice(&bytes);
    }

    /// Writes one value at its alignment.
    pub fn value(&mut self, v: &Value) {
        macro_rules! num {
            ($align:expr, $v:expr) => {{
                self.pad($align);
                let bytes = if self.big {
                    $v.to_be_bytes()
                } else {
                    $v.to_le_bytes()
                };
                self.buf.extend_from_slice(&bytes);
            }};
        }
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I16(n) => num!(2, n),
            Value::U16(n) => num!(2, n),
            Value::I32(n) => num!(4, n),
            Value::U32(n) | Value::Fd(n) => self.u32(*n),
            Value::I64(n) => num!(8, n),
            Value::U64(n) => num!(8, n),
            Value::F64(n) => num!(8, n.to_bits()),
            Value::Str(s) | Value::Path(s) => {
                self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Value::Sig(s) => {
                self.buf.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Value::Array(elem, items) => {
                self.u32(0);
                let len_pos = self.buf.len() - 4;
                self.pad(alignment(elem.as_bytes().first().copied().unwrap_or(b'y')));
                let start = self.buf.len();
                for item in items {
                    self.value(item);
                }
                let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
                self.patch_u32(len_pos, len);
            }
            Value::Bytes(bytes) => {
                self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                self.buf.extend_from_slice(bytes);
            }
            Value::Struct(members) => {
                self.pad(8);
                for m in members {
                    self.value(m);
                }
            }
            Value::Entry(k, v) => {
                self.pad(8);
                self.value(k);
                self.value(v);
            }
            Value::Variant(inner) => {
                self.value(&Value::Sig(inner.signature()));
                self.value(inner);
            }
        }
    }
}

/// An unmarshalling cursor over `data`, which starts `base` bytes into an 8-aligned message.
pub struct Dec<'a> {
    data: &'a [u8],
    /// The next byte to read.
    pub pos: usize,
    base: usize,
    big: bool,
}

impl<'a> Dec<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8], base: usize, big: bool) -> Dec<'a> {
        Dec {
            data,
            pos: 0,
            base,
            big,
        }
    }

    fn align(&mut self, a: usize) -> Result<(), String> {
        while (self.base + self.pos) % a != 0 {
            match self.data.get(self.pos) {
                Some(0) => self.pos += 1,
                Some(_) => return Err(format!("non-zero padding at {}", self.pos)),
                None => return Err("truncated padding".into()),
            }
        }
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .ok_or_else(|| format!("truncated value at {}", self.pos))?;
        self.pos += N;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads a `u`.
    pub fn u32(&mut self) -> Result<u32, String> {
        self.align(4)?;
        let b = self.take::<4>()?;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn string_bytes(&mut self, len: usize) -> Result<String, String> {
        let bytes = self
            .data
            .get(self.pos..self.pos + len + 1)
            .ok_or_else(|| format!("truncated string at {}", self.pos))?;
        self.pos += len + 1;
        if bytes[len] != 0 {
            return Err("string not NUL-terminated".into());
        }
        String::from_utf8(bytes[..len].to_vec()).map_err(|e| format!("string not UTF-8: {e}"))
    }

    /// Reads one value of the complete type `ty`.
    pub fn value(&mut self, ty: &str) -> Result<Value, String> {
        macro_rules! num {
            ($t:ty, $n:expr, $align:expr) => {{
                self.align($align)?;
                let b = self.take::<$n>()?;
                if self.big {
                    <$t>::from_be_bytes(b)
                } else {
                    <$t>::from_le_bytes(b)
                }
            }};
        }
        let first = *ty.as_bytes().first().ok_or("empty type")?;
        Ok(match first {
            b'y' => Value::Byte(self.take::<1>()?[0]),
            b'b' => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                n => return Err(format!("boolean {n}")),
            },
            b'n' => Value::I16(num!(i16, 2, 2)),
            b'q' => Value::U16(num!(u16, 2, 2)),
            b'i' => Value::I32(num!(i32, 4, 4)),
            b'u' => Value::U32(self.u32()?),
            b'h' => Value::Fd(self.u32()?),
            b'x' => Value::I64(num!(i64, 8, 8)),
            b't' => Value::U64(num!(u64, 8, 8)),
            b'd' => Value::F64(f64::from_bits(num!(u64, 8, 8))),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                let s = self.string_bytes(len)?;
                if first == b's' {
                    Value::Str(s)
                } else {
                    Value::Path(s)
                }
            }
            b'g' => {
                let len = usize::from(self.take::<1>()?[0]);
                Value::Sig(self.string_bytes(len)?)
            }
            b'a' if ty == "ay" => {
                let len = self.u32()? as usize;
                let bytes = self
                    .data
                    .get(self.pos..self.pos + len)
                    .ok_or_else(|| format!("array of {len} bytes overruns the body"))?;
                self.pos += len;
                Value::Bytes(bytes.to_vec())
            }
            b'a' => {
                let elem = &ty[1..];
                let len = self.u32()? as usize;
                self.align(alignment(elem.as_bytes().first().copied().unwrap_or(b'y')))?;
                let end = self.pos + len;
                if end > self.data.len() {
                    return Err(format!("array of {len} bytes overruns the body"));
                }
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value(elem)?);
                }
                if self.pos != end {
                    return Err("array elements overrun the array length".into());
                }
                Value::Array(elem.to_owned(), items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let mut rest = &ty[1..ty.len() - 1];
                let mut members = Vec::new();
                while !rest.is_empty() {
                    let (t, tail) = split_first_type(rest)?;
                    members.push(self.value(t)?);
                    rest = tail;
                }
                if first == b'(' {
                    Value::Struct(members)
                } else {
                    let mut it = members.into_iter();
                    match (it.next(), it.next(), it.next()) {
                        (Some(k), Some(v), None) => Value::Entry(Box::new(k), Box::new(v)),
                        _ => return Err(format!("bad dict entry type {ty}")),
                    }
                }
            }
            b'v' => {
                let Value::Sig(sig) = self.value("g")? else {
                    unreachable!("a g always decodes to a signature");
                };
                let (t, rest) = split_first_type(&sig)?;
                if !rest.is_empty() {
                    return Err(format!("variant signature {sig:?} is not one type"));
                }
                let t = t.to_owned();
                Value::Variant(Box::new(self.value(&t)?))
            }
            other => return Err(format!("unknown type code {:?}", char::from(other))),
        })
    }
}
