//! Walking marshalled values: full validation of untrusted bytes, and skipping over values of a
//! message that has already been validated.
//!
//! Both walkers are iterative. Containers that need to remember where they were (arrays being
//! iterated, variants whose signature replaced the enclosing one) live on an explicit stack whose
//! first entries are inline, so validating an ordinary message allocates nothing. Nesting is
//! bounded by the specification's depth limits, which the validator enforces before it descends.

use std::cmp::Ordering;

use crate::signature::{self, MAX_TOTAL_DEPTH, alignment};
use crate::{MAX_ARRAY_LEN, WireError, names};

/// Bounds-checked reads of numbers in one byte order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) big: bool,
}

impl<'a> Bytes<'a> {
    pub(crate) fn u8_at(self, pos: usize) -> Option<u8> {
        self.data.get(pos).copied()
    }

    pub(crate) fn u16_at(self, pos: usize) -> Option<u16> {
        let b = self.data.get(pos..pos.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    pub(crate) fn u32_at(self, pos: usize) -> Option<u32> {
        let b = self.data.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    pub(crate) fn u64_at(self, pos: usize) -> Option<u64> {
        let b = self.data.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// The `s`/`o` at `pos` (before alignment) in a validated message, and the position after it.
    pub(crate) fn str_at(self, pos: usize) -> Option<(&'a str, usize)> {
        let p = align_up(pos, 4);
        let start = p.checked_add(4)?;
        let end = start.checked_add(self.u32_at(p)? as usize)?;
        let s = std::str::from_utf8(self.data.get(start..end)?).ok()?;
        Some((s, end + 1))
    }

    /// The `g` at `pos` in a validated message, and the position after it.
    pub(crate) fn sig_at(self, pos: usize) -> Option<(&'a [u8], usize)> {
        let start = pos.checked_add(1)?;
        let end = start.checked_add(usize::from(self.u8_at(pos)?))?;
        Some((self.data.get(start..end)?, end + 1))
    }
}

/// `pos` rounded up to a multiple of `align` (a power of two).
pub(crate) fn align_up(pos: usize, align: usize) -> usize {
    (pos + align - 1) & !(align - 1)
}

/// Validates marshalled values against signatures, all within one message buffer.
pub(crate) struct Validator<'a> {
    bytes: Bytes<'a>,
    tables: Tables,
    /// The largest unix fd index seen, checked against UNIX_FDS once the header is known.
    pub(crate) max_fd: Option<u32>,
}

/// A signature being walked: `len` bytes at `start` in the message buffer, the current index
/// `si`, and the base of its end table in [`Tables`].
#[derive(Debug, Clone, Copy)]
struct Scope {
    start: u32,
    len: u32,
    si: u32,
    table: u32,
}

#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Iterating over an array whose element type is `elem..after` in the current signature and
    /// whose elements end at `end`.
    Array { elem: u32, after: u32, end: u32 },
    /// Inside a variant: where to resume in the enclosing signature, and the table stack height
    /// to restore.
    Variant { outer: Scope, tables_top: u32 },
}

impl<'a> Validator<'a> {
    pub(crate) fn new(bytes: Bytes<'a>) -> Self {
        Validator {
            bytes,
            tables: Tables::new(),
            max_fd: None,
        }
    }

    /// Validates the signature of `len` bytes at `start` (with `single`, exactly one complete
    /// type), records its end table and returns the table's base and the signature's nesting
    /// depth. The table stays reserved until [`Validator::release`].
    pub(crate) fn signature(
        &mut self,
        start: usize,
        len: usize,
        single: bool,
    ) -> Result<(usize, usize), WireError> {
        let sig = self
            .bytes
            .data
            .get(start..start + len)
            .ok_or(WireError::Truncated)?;
        let base = self.tables.push(len);
        let depth = signature::check(sig, single, Some(self.tables.slice_mut(base, len)))?;
        Ok((base, depth))
    }

    /// The bytes being validated.
    pub(crate) fn bytes(&self) -> Bytes<'a> {
        self.bytes
    }

    /// Releases signature tables reserved since the table stack had height `top`.
    pub(crate) fn release(&mut self, top: usize) {
        self.tables.free(top);
    }

    /// The current height of the table stack, for [`Validator::release`].
    pub(crate) fn tables_top(&self) -> usize {
        self.tables.top
    }

    /// Validates the values described by the signature of `sig_len` bytes at `sig_start` (whose
    /// end table is at `table`), starting at `pos` and not reading at or past `limit`. `depth`
    /// is the number of containers around these values. Returns the position after the last
    /// value.
    pub(crate) fn values(
        &mut self,
        sig_start: usize,
        sig_len: usize,
        table: usize,
        mut pos: usize,
        limit: usize,
        mut depth: usize,
    ) -> Result<usize, WireError> {
        let data = self.bytes.data;
        let mut scope = Scope {
            start: to_u32(sig_start)?,
            len: to_u32(sig_len)?,
            si: 0,
            table: to_u32(table)?,
        };
        let mut frames = SmallStack::<Frame, 8>::new(Frame::Array {
            elem: 0,
            after: 0,
            end: 0,
        });
        loop {
            match frames.last() {
                Some(Frame::Array { elem, after, end }) if scope.si == after => {
                    match pos.cmp(&(end as usize)) {
                        Ordering::Less => scope.si = elem,
                        Ordering::Equal => {
                            frames.pop();
                            depth -= 1;
                            continue;
                        }
                        Ordering::Greater => {
                            return Err(WireError::BadArray("elements overrun the array length"));
                        }
                    }
                }
                Some(Frame::Variant { outer, tables_top }) if scope.si == scope.len => {
                    self.tables.free(tables_top as usize);
                    scope = outer;
                    frames.pop();
                    depth -= 1;
                    continue;
                }
                None if scope.si == scope.len => return Ok(pos),
                _ => {}
            }
            let code = *data
                .get(scope.start as usize + scope.si as usize)
                .ok_or(WireError::BadSignature("signature ends early"))?;
            scope.si += 1;
            pos = match code {
                b'y' => self.fixed(pos, 1, limit)?,
                b'n' | b'q' => self.fixed(pos, 2, limit)?,
                b'i' | b'u' => self.fixed(pos, 4, limit)?,
                b'x' | b't' | b'd' => self.fixed(pos, 8, limit)?,
                b'b' => {
                    let end = self.fixed(pos, 4, limit)?;
                    if self.bytes.u32_at(end - 4).is_none_or(|v| v > 1) {
                        return Err(WireError::BadBoolean);
                    }
                    end
                }
                b'h' => {
                    let end = self.fixed(pos, 4, limit)?;
                    let index = self.bytes.u32_at(end - 4).ok_or(WireError::Truncated)?;
                    self.max_fd = Some(self.max_fd.map_or(index, |m| m.max(index)));
                    end
                }
                b's' => self.string(pos, limit)?.1,
                b'o' => {
                    let (s, end) = self.string_bytes(pos, limit)?;
                    if !names::object_path(s) {
                        return Err(WireError::BadBody("invalid object path"));
                    }
                    end
                }
                b'g' => {
                    let (start, len, end) = self.signature_value(pos, limit)?;
                    let sig = data.get(start..start + len).ok_or(WireError::Truncated)?;
                    signature::check(sig, false, None)?;
                    end
                }
                b'a' => {
                    let p = self.pad(pos, 4, limit)?;
                    let n = self.u32_within(p, limit)? as usize;
                    if n > MAX_ARRAY_LEN {
                        return Err(WireError::BadArray("longer than 64 MiB"));
                    }
                    let elem_code = *data
                        .get(scope.start as usize + scope.si as usize)
                        .ok_or(WireError::BadSignature("array without element type"))?;
                    let first = self.pad(p + 4, alignment(elem_code), limit)?;
                    let end = first + n;
                    if end > limit {
                        return Err(WireError::BadArray("extends past its container"));
                    }
                    let after = self
                        .tables
                        .get(scope.table as usize + scope.si as usize)
                        .map(u32::from)
                        .filter(|&a| a > scope.si)
                        .ok_or(WireError::BadSignature("array without element type"))?;
                    if n == 0 {
                        scope.si = after;
                        first
                    } else if let Some(size) = unconstrained_size(elem_code) {
                        // Numbers without invalid values: only the length needs checking.
                        if n % size != 0 {
                            return Err(WireError::BadArray(
                                "length is not a whole number of elements",
                            ));
                        }
                        scope.si = after;
                        end
                    } else {
                        frames.push(Frame::Array {
                            elem: scope.si,
                            after,
                            end: to_u32(end)?,
                        });
                        depth += 1;
                        first
                    }
                }
                b'(' | b'{' => {
                    depth += 1;
                    self.pad(pos, 8, limit)?
                }
                b')' | b'}' => {
                    depth = depth.saturating_sub(1);
                    pos
                }
                b'v' => {
                    let (start, len, end) = self.signature_value(pos, limit)?;
                    let tables_top = to_u32(self.tables.top)?;
                    // Most variants hold one basic value: their signature needs no end table.
                    let single_code = data.get(start).copied().filter(|_| len == 1);
                    let (table, inner) = match single_code {
                        Some(c) if c == b'v' || signature::is_basic(c) => (self.tables.top, 0),
                        _ => self.signature(start, len, true)?,
                    };
                    // The containers around this variant, the variant, and the deepest nesting
                    // its signature allows. Counting the signature rather than the values
                    // present is stricter than dbus-daemon when the deepest parts are empty
                    // arrays, never more lenient, so receivers never see a message their
                    // libraries would refuse.
                    if depth + 1 + inner > MAX_TOTAL_DEPTH {
                        return Err(WireError::BadBody("nested more than 64 containers deep"));
                    }
                    frames.push(Frame::Variant {
                        outer: scope,
                        tables_top,
                    });
                    depth += 1;
                    scope = Scope {
                        start: to_u32(start)?,
                        len: to_u32(len)?,
                        si: 0,
                        table: to_u32(table)?,
                    };
                    end
                }
                _ => return Err(WireError::BadSignature("unknown type code")),
            };
        }
    }

    /// Validates the `s` (or `o`) at `pos`; returns it and the position after its nul.
    pub(crate) fn string(&self, pos: usize, limit: usize) -> Result<(&'a str, usize), WireError> {
        let (text, end) = self.string_bytes(pos, limit)?;
        // Short ASCII strings (names, paths, most text) are the rule: check them in one pass.
        let s = if text.iter().all(|&b| b.wrapping_sub(1) < 0x7f) {
            std::str::from_utf8(text).ok()
        } else if text.contains(&0) {
            return Err(WireError::BadString("contains a nul byte"));
        } else {
            std::str::from_utf8(text).ok()
        };
        Ok((s.ok_or(WireError::BadString("not valid UTF-8"))?, end))
    }

    /// Checks the framing of the `s` (or `o`) at `pos`, not its text; returns the text and the
    /// position after its nul.
    pub(crate) fn string_bytes(
        &self,
        pos: usize,
        limit: usize,
    ) -> Result<(&'a [u8], usize), WireError> {
        let p = self.pad(pos, 4, limit)?;
        let len = self.u32_within(p, limit)? as usize;
        let start = p + 4;
        let nul = start
            .checked_add(len)
            .filter(|&n| n < limit)
            .ok_or(PAST_END)?;
        let text = self
            .bytes
            .data
            .get(start..nul)
            .ok_or(WireError::Truncated)?;
        if self.bytes.u8_at(nul) != Some(0) {
            return Err(WireError::BadString("missing nul terminator"));
        }
        Ok((text, nul + 1))
    }

    /// Checks the framing of the `g` at `pos` (not its syntax); returns where its text starts,
    /// its length, and the position after its nul.
    pub(crate) fn signature_value(
        &self,
        pos: usize,
        limit: usize,
    ) -> Result<(usize, usize, usize), WireError> {
        let len = usize::from(
            self.bytes
                .u8_at(pos)
                .filter(|_| pos < limit)
                .ok_or(PAST_END)?,
        );
        let start = pos + 1;
        let nul = start + len;
        if nul >= limit {
            return Err(PAST_END);
        }
        if self.bytes.u8_at(nul) != Some(0) {
            return Err(WireError::BadSignature("missing nul terminator"));
        }
        Ok((start, len, nul + 1))
    }

    /// Reads the `u32` at `pos` (already aligned), which must end by `limit`.
    pub(crate) fn u32_within(&self, pos: usize, limit: usize) -> Result<u32, WireError> {
        if pos + 4 > limit {
            return Err(PAST_END);
        }
        self.bytes.u32_at(pos).ok_or(WireError::Truncated)
    }

    /// Skips zero padding up to a multiple of `align`; returns the aligned position.
    pub(crate) fn pad(&self, pos: usize, align: usize, limit: usize) -> Result<usize, WireError> {
        let p = align_up(pos, align);
        if p > limit {
            return Err(PAST_END);
        }
        let padding = self.bytes.data.get(pos..p).ok_or(WireError::Truncated)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(WireError::NonZeroPadding);
        }
        Ok(p)
    }

    /// Validates framing of a fixed-size value of `size` bytes (aligned to `size`).
    fn fixed(&self, pos: usize, size: usize, limit: usize) -> Result<usize, WireError> {
        let end = self.pad(pos, size, limit)? + size;
        if end > limit {
            return Err(PAST_END);
        }
        Ok(end)
    }
}

/// Skips one complete value of the type starting at `sig[si]`, at `pos` of an already validated
/// message. Returns the signature index and the position after it; `None` only if the message
/// was not in fact valid.
pub(crate) fn skip(bytes: Bytes<'_>, sig: &[u8], si: usize, pos: usize) -> Option<(usize, usize)> {
    let mut sig = sig;
    let mut si = si;
    let mut pos = pos;
    let mut open = 0usize;
    // Enclosing signatures of the variants being skipped: (signature, index after the `v`,
    // open structs there).
    let mut outer = SmallStack::<(&[u8], usize, usize), 4>::new((&[], 0, 0));
    loop {
        let code = *sig.get(si)?;
        si += 1;
        match code {
            b'y' => pos += 1,
            b'n' | b'q' => pos = align_up(pos, 2) + 2,
            b'b' | b'i' | b'u' | b'h' => pos = align_up(pos, 4) + 4,
            b'x' | b't' | b'd' => pos = align_up(pos, 8) + 8,
            b's' | b'o' => pos = bytes.str_at(pos)?.1,
            b'g' => pos = bytes.sig_at(pos)?.1,
            b'a' => {
                let p = align_up(pos, 4);
                let n = bytes.u32_at(p)? as usize;
                pos = align_up(p + 4, alignment(*sig.get(si)?)).checked_add(n)?;
                si = signature::type_end(sig, si)?;
            }
            b'(' | b'{' => {
                pos = align_up(pos, 8);
                open += 1;
            }
            b')' | b'}' => open = open.checked_sub(1)?,
            b'v' => {
                let (inner, end) = bytes.sig_at(pos)?;
                outer.push((sig, si, open));
                (sig, si, open, pos) = (inner, 0, 0, end);
                continue;
            }
            _ => return None,
        }
        // A complete type ends the value being skipped, or the variant that contains it.
        while open == 0 {
            match outer.pop() {
                Some(o) => (sig, si, open) = o,
                None => return Some((si, pos)),
            }
        }
    }
}

/// The size of the fixed-size types all of whose bit patterns are valid, which arrays can hold
/// without each element being looked at.
fn unconstrained_size(code: u8) -> Option<usize> {
    match code {
        b'y' => Some(1),
        b'n' | b'q' => Some(2),
        b'i' | b'u' => Some(4),
        b'x' | b't' | b'd' => Some(8),
        _ => None,
    }
}

/// The error for a value that extends past the end of its enclosing block.
const PAST_END: WireError = WireError::BadBody("value extends past the end of its block");

fn to_u32(v: usize) -> Result<u32, WireError> {
    u32::try_from(v).map_err(|_| WireError::TooLong(v as u64))
}

/// A stack whose first `N` entries live inline.
struct SmallStack<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> SmallStack<T, N> {
    fn new(fill: T) -> Self {
        SmallStack {
            inline: [fill; N],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, v: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = v,
            None => self.spill.push(v),
        }
        self.len += 1;
    }

    fn last(&self) -> Option<T> {
        let i = self.len.checked_sub(1)?;
        match self.inline.get(i) {
            Some(&v) => Some(v),
            None => self.spill.last().copied(),
        }
    }

    fn pop(&mut self) -> Option<T> {
        let v = self.last()?;
        if self.len > N {
            self.spill.pop();
        }
        self.len -= 1;
        Some(v)
    }
}

/// End tables of the signatures being walked (see [`signature::check`]), as a stack: the first
/// bytes inline, the rest on the heap for deeply nested variants.
struct Tables {
    inline: [u8; TABLES_INLINE],
    spill: Vec<u8>,
    top: usize,
}

const TABLES_INLINE: usize = 64;

impl Tables {
    fn new() -> Self {
        Tables {
            inline: [0; TABLES_INLINE],
            spill: Vec::new(),
            top: 0,
        }
    }

    /// Reserves `len` bytes; returns their base index. A table never straddles the inline and
    /// heap parts.
    fn push(&mut self, len: usize) -> usize {
        if self.top + len <= TABLES_INLINE {
            let base = self.top;
            self.top += len;
            base
        } else {
            let base = TABLES_INLINE + self.spill.len();
            self.spill.resize(self.spill.len() + len, 0);
            self.top = base + len;
            base
        }
    }

    /// Pops everything reserved since the stack had height `top`.
    fn free(&mut self, top: usize) {
        self.top = top;
        self.spill.truncate(top.saturating_sub(TABLES_INLINE));
    }

    fn slice_mut(&mut self, base: usize, len: usize) -> &mut [u8] {
        let r = if base >= TABLES_INLINE {
            self.spill
                .get_mut(base - TABLES_INLINE..base - TABLES_INLINE + len)
        } else {
            self.inline.get_mut(base..base + len)
        };
        r.unwrap_or_default()
    }

    fn get(&self, i: usize) -> Option<u8> {
        if i >= TABLES_INLINE {
            self.spill.get(i - TABLES_INLINE).copied()
        } else {
            self.inline.get(i).copied()
        }
    }
}
