//! Hex encoding, as the authentication protocol carries mechanism data.

/// Lowercase hex, as DBUS_COOKIE_SHA1 requires.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Decodes an even number of hex digits, either case.
pub(crate) fn decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|pair| {
            let digit = |c: &u8| char::from(*c).to_digit(16);
            let [hi, lo] = pair else { return None };
            u8::try_from(digit(hi)? << 4 | digit(lo)?).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"", Some(b"")),
            (b"00fFA9", Some(&[0, 0xff, 0xa9])),
            (b"0", None),
            (b"0g", None),
            (b"+1", None),
            (b" 1", None),
            (b"\xc3\xa9", None),
        ];
        for &(input, want) in cases {
            assert_eq!(decode(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn encoding_is_lowercase_and_round_trips() {
        assert_eq!(encode(&[0x00, 0xab, 0xff, 0x1c]), "00abff1c");
        assert_eq!(decode(encode(b"alice").as_bytes()), Some(b"alice".to_vec()));
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(encode(&all).as_bytes()), Some(all));
    }
}
