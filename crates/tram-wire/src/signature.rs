//! Type signatures: single complete types, nesting limits, the 255-byte limit.
//!
//! Implements the specification's [valid signatures] rules: only known type codes, arrays
//! followed by a single complete type, non-empty structs, dict entries only as array elements
//! with exactly two members and a basic key, at most 32 nested arrays and 32 nested structs,
//! at most 64 nested containers in all, at most 255 bytes.
//!
//! [valid signatures]: https://dbus.freedesktop.org/doc/dbus-specification.html#message-protocol-signatures

use crate::WireError;

/// The longest signature allowed.
pub const MAX_SIGNATURE_LEN: usize = 255;
/// Deepest struct nesting.
pub const MAX_STRUCT_DEPTH: usize = 32;
/// Deepest array nesting.
pub const MAX_ARRAY_DEPTH: usize = 32;
/// Deepest total nesting (structs plus arrays, and variants inside values).
pub const MAX_TOTAL_DEPTH: usize = 64;

/// Checks a signature: a sequence of zero or more single complete types within the limits.
///
/// # Errors
/// What is wrong with it.
pub fn validate(sig: &[u8]) -> Result<(), WireError> {
    check(sig, false, None).map(|_| ())
}

/// Checks that `sig` is exactly one single complete type (as a variant's signature must be).
///
/// # Errors
/// What is wrong with it.
pub fn validate_single(sig: &[u8]) -> Result<(), WireError> {
    check(sig, true, None).map(|_| ())
}

/// Whether `code` is a basic type: a fixed-size number or a string-like type.
pub(crate) fn is_basic(code: u8) -> bool {
    matches!(
        code,
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o' | b'g'
    )
}

/// The alignment of values whose type starts with `code`, relative to the message start.
pub(crate) fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

/// The index just past the single complete type starting at `sig[start]`, for a signature
/// already known to be valid. `None` if `sig` is not well formed there.
pub(crate) fn type_end(sig: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while *sig.get(i)? == b'a' {
        i += 1;
    }
    match *sig.get(i)? {
        b'(' | b'{' => {
            let mut open = 0usize;
            loop {
                match *sig.get(i)? {
                    b'(' | b'{' => open += 1,
                    b')' | b'}' => {
                        open -= 1;
                        if open == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        b')' | b'}' => None,
        _ => Some(i + 1),
    }
}

/// Validates `sig` and returns the deepest container nesting it contains (0 for basic types
/// only). With `single`, exactly one complete type is required.
///
/// When `ends` is given (at least `sig.len()` long), `ends[i]` is set to the index just past the
/// single complete type that starts at `i`, for every `i` where one starts; the value walker
/// uses it to skip empty arrays without rescanning the signature.
pub(crate) fn check(
    sig: &[u8],
    single: bool,
    mut ends: Option<&mut [u8]>,
) -> Result<usize, WireError> {
    if sig.len() > MAX_SIGNATURE_LEN {
        return Err(WireError::BadSignature("longer than 255 bytes"));
    }
    // Open containers, innermost last: (kind, index of the opening code, members so far).
    let mut open = [(0u8, 0u8, 0u8); MAX_TOTAL_DEPTH];
    let mut depth = 0usize;
    let mut arrays = 0usize;
    let mut structs = 0usize;
    let mut max_depth = 0usize;
    let mut top_level = 0usize;

    for (i, &code) in sig.iter().enumerate() {
        // `i` < 256 because of the length check above.
        let at = i as u8;
        let completed = match code {
            b'a' | b'(' | b'{' => {
                if code == b'a' {
                    if arrays == MAX_ARRAY_DEPTH {
                        return Err(WireError::BadSignature("more than 32 nested arrays"));
                    }
                    arrays += 1;
                } else if code == b'(' {
                    if structs == MAX_STRUCT_DEPTH {
                        return Err(WireError::BadSignature("more than 32 nested structs"));
                    }
                    structs += 1;
                } else {
                    let parent = depth.checked_sub(1).and_then(|d| open.get(d));
                    if !matches!(parent, Some(&(b'a', p, _)) if usize::from(p) + 1 == i) {
                        return Err(WireError::BadSignature("dict entry outside an array"));
                    }
                }
                let slot = open
                    .get_mut(depth)
                    .ok_or(WireError::BadSignature("more than 64 nested containers"))?;
                *slot = (code, at, 0);
                depth += 1;
                max_depth = max_depth.max(depth);
                continue;
            }
            b')' | b'}' => {
                let (kind, start, members) = depth
                    .checked_sub(1)
                    .and_then(|d| open.get(d).copied())
                    .ok_or(WireError::BadSignature("unbalanced closing bracket"))?;
                match (code, kind) {
                    (b')', b'(') if members > 0 => structs -= 1,
                    (b')', b'(') => return Err(WireError::BadSignature("empty struct")),
                    (b'}', b'{') if members == 2 => {}
                    (b'}', b'{') => {
                        return Err(WireError::BadSignature("dict entry without two members"));
                    }
                    (_, b'a') => return Err(WireError::BadSignature("array without element type")),
                    _ => return Err(WireError::BadSignature("mismatched brackets")),
                }
                depth -= 1;
                usize::from(start)
            }
            b'v' => i,
            c if is_basic(c) => i,
            _ => return Err(WireError::BadSignature("unknown type code")),
        };
        // A complete type spans `completed..=i`; it completes every array waiting for an
        // element type, then counts as one member of the enclosing struct or dict entry.
        let end = at.wrapping_add(1);
        let mut completed = completed;
        if let Some(ends) = ends.as_deref_mut() {
            if let Some(e) = ends.get_mut(completed) {
                *e = end;
            }
        }
        loop {
            let Some(slot) = depth.checked_sub(1).and_then(|d| open.get_mut(d)) else {
                top_level += 1;
                if single && top_level > 1 {
                    return Err(WireError::BadSignature("more than one complete type"));
                }
                break;
            };
            match slot.0 {
                b'a' => {
                    if let Some(e) = ends
                        .as_deref_mut()
                        .and_then(|e| e.get_mut(usize::from(slot.1)))
                    {
                        *e = end;
                    }
                    completed = usize::from(slot.1);
                    arrays -= 1;
                    depth -= 1;
                }
                b'{' => {
                    slot.2 += 1;
                    if slot.2 == 1 && !(completed == i && is_basic(code)) {
                        return Err(WireError::BadSignature(
                            "dict entry key is not a basic type",
                        ));
                    }
                    if slot.2 > 2 {
                        return Err(WireError::BadSignature(
                            "dict entry with more than two members",
                        ));
                    }
                    break;
                }
                _ => {
                    slot.2 = slot.2.saturating_add(1);
                    break;
                }
            }
        }
    }
    if depth != 0 {
        return Err(WireError::BadSignature("unterminated container"));
    }
    if single && top_level != 1 {
        return Err(WireError::BadSignature("not a single complete type"));
    }
    Ok(max_depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_signatures() {
        for sig in [
            "",
            "y",
            "bnqiuxtdsogh",
            "v",
            "ai",
            "aai",
            "a(ii)",
            "(i(ii))",
            "a{sv}",
            "a{s(ai)}",
            "a{ya{sv}}",
            "(v)",
            "aav",
            "sa{sv}as",
        ] {
            assert_eq!(validate(sig.as_bytes()), Ok(()), "{sig}");
        }
    }

    #[test]
    fn invalid_signatures() {
        for sig in [
            "a", "aa", "(", ")", "()", "(i", "i)", "{sv}", "a{}", "a{s}", "a{svs}", "a{vs}",
            "a{(i)s}", "a{ais}", "r", "e", "m", "*", "?", "@", "&", "^", "z", "(a)", "a)", "(i}",
            "a{s)", "a{sv)", "{", "}", "\0", "a(s{sv})", "ai{sv}",
        ] {
            assert!(validate(sig.as_bytes()).is_err(), "{sig}");
        }
    }

    #[test]
    fn single_complete_types() {
        for sig in ["i", "ai", "(ii)", "a{sv}", "v", "aaa(yv)"] {
            assert_eq!(validate_single(sig.as_bytes()), Ok(()), "{sig}");
        }
        for sig in ["", "ii", "ai(i)", "vv", "a"] {
            assert!(validate_single(sig.as_bytes()).is_err(), "{sig}");
        }
    }

    #[test]
    fn length_limit() {
        let ok = "y".repeat(255);
        let long = "y".repeat(256);
        assert_eq!(validate(ok.as_bytes()), Ok(()));
        assert!(validate(long.as_bytes()).is_err());
    }

    #[test]
    fn nesting_limits() {
        let arrays = |n| format!("{}i", "a".repeat(n));
        let structs = |n| format!("{}i{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(validate(arrays(32).as_bytes()), Ok(()));
        assert!(validate(arrays(33).as_bytes()).is_err());
        assert_eq!(validate(structs(32).as_bytes()), Ok(()));
        assert!(validate(structs(33).as_bytes()).is_err());
        let both = format!("{}{}", "a".repeat(32), structs(32));
        assert_eq!(check(both.as_bytes(), true, None), Ok(64));
        // Dict entries count towards the total only.
        let dicts = format!("{}y{}", "a{s".repeat(32), "}".repeat(32));
        assert_eq!(check(dicts.as_bytes(), true, None), Ok(64));
        let over = format!("{}(y){}", "a{s".repeat(32), "}".repeat(32));
        assert!(validate(over.as_bytes()).is_err());
    }

    #[test]
    fn depth_reported() {
        for (sig, depth) in [
            ("", 0),
            ("i", 0),
            ("v", 0),
            ("ai", 1),
            ("a{sv}", 2),
            ("(ai)s", 2),
        ] {
            assert_eq!(check(sig.as_bytes(), false, None), Ok(depth), "{sig}");
        }
    }

    #[test]
    fn ends_table() {
        let sig = b"a{sv}(ai)y";
        let mut ends = [0u8; 16];
        check(sig, false, Some(&mut ends)).unwrap();
        assert_eq!(ends[0], 5);
        assert_eq!(ends[1], 5);
        assert_eq!(ends[2], 3);
        assert_eq!(ends[5], 9);
        assert_eq!(ends[6], 8);
        assert_eq!(ends[9], 10);
        for (i, &e) in ends.iter().enumerate().take(sig.len()) {
            if e != 0 {
                assert_eq!(type_end(sig, i), Some(usize::from(e)), "{i}");
            }
        }
    }
}
