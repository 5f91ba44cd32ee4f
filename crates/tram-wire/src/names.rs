//! Syntax of bus names, interface names, member names, error names and object paths, as the
//! specification's [valid names](https://dbus.freedesktop.org/doc/dbus-specification.html#message-protocol-names)
//! section defines them.
//!
//! All of them are ASCII, so the checks work on bytes.

/// The longest bus name, interface name, error name or member name.
pub const MAX_NAME_LEN: usize = 255;

/// A unique (`:1.42`) or well-known (`org.example.Name`) bus name.
///
/// At most 255 bytes, at least two non-empty elements separated by `.`, each made of
/// `[A-Za-z0-9_-]`; elements of well-known names must not start with a digit.
pub fn is_valid_bus_name(s: &str) -> bool {
    bus_name(s.as_bytes())
}
/// A unique connection name (starts with `:`).
pub fn is_valid_unique_name(s: &str) -> bool {
    s.starts_with(':') && is_valid_bus_name(s)
}
/// A well-known bus name (valid, not unique).
pub fn is_valid_well_known_name(s: &str) -> bool {
    !s.starts_with(':') && is_valid_bus_name(s)
}
/// An interface name.
///
/// At most 255 bytes, at least two non-empty elements separated by `.`, each made of
/// `[A-Za-z0-9_]` and not starting with a digit.
pub fn is_valid_interface(s: &str) -> bool {
    interface(s.as_bytes())
}
/// An error name (same syntax as an interface name).
pub fn is_valid_error_name(s: &str) -> bool {
    is_valid_interface(s)
}
/// A member name: 1 to 255 bytes of `[A-Za-z0-9_]`, not starting with a digit.
pub fn is_valid_member(s: &str) -> bool {
    member(s.as_bytes())
}
/// An object path: `/`, or `/` followed by non-empty elements of `[A-Za-z0-9_]` separated by
/// single slashes, without a trailing slash. Any length.
pub fn is_valid_object_path(s: &str) -> bool {
    object_path(s.as_bytes())
}

// The byte-level checks below accept ASCII only, so bytes they accept are valid UTF-8 without
// nul bytes; message validation relies on that to skip those checks for header fields.

/// [`is_valid_bus_name`] on bytes.
pub(crate) fn bus_name(s: &[u8]) -> bool {
    let (rest, unique) = match s.strip_prefix(b":") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    // Elements may start with `-` (discouraged, but valid); only unique names may start
    // elements with digits.
    let leading = if unique {
        WORD | DIGIT | HYPHEN
    } else {
        WORD | HYPHEN
    };
    s.len() <= MAX_NAME_LEN && dotted(rest, b'.', leading, WORD | DIGIT | HYPHEN) >= 2
}

/// [`is_valid_interface`] on bytes.
pub(crate) fn interface(s: &[u8]) -> bool {
    s.len() <= MAX_NAME_LEN && dotted(s, b'.', WORD, WORD | DIGIT) >= 2
}

/// [`is_valid_member`] on bytes. (No separator: a nul byte would make two elements.)
pub(crate) fn member(s: &[u8]) -> bool {
    s.len() <= MAX_NAME_LEN && dotted(s, 0, WORD, WORD | DIGIT) == 1
}

/// [`is_valid_object_path`] on bytes.
pub(crate) fn object_path(s: &[u8]) -> bool {
    match s.strip_prefix(b"/") {
        Some([]) => true,
        Some(rest) => dotted(rest, b'/', WORD | DIGIT, WORD | DIGIT) >= 1,
        None => false,
    }
}

/// Character classes for [`dotted`].
const WORD: u8 = 1; // A-Z a-z _
const DIGIT: u8 = 2; // 0-9
const HYPHEN: u8 = 4; // -

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphabetic() || c == b'_' {
            WORD
        } else if c.is_ascii_digit() {
            DIGIT
        } else if c == b'-' {
            HYPHEN
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Counts the elements of `s` separated by `sep`, or returns 0 if an element is empty, starts
/// with a character outside `first`, or contains one outside `rest`.
fn dotted(s: &[u8], sep: u8, first: u8, rest: u8) -> usize {
    let mut elements = 1;
    let mut at_start = true;
    for &c in s {
        if c == sep {
            if at_start {
                return 0;
            }
            elements += 1;
            at_start = true;
            continue;
        }
        let allowed = if at_start { first } else { rest };
        if CLASS[usize::from(c)] & allowed == 0 {
            return 0;
        }
        at_start = false;
    }
    if at_start { 0 } else { elements }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_names() {
        let long_ok = format!("a.{}", "b".repeat(253));
        let long_bad = format!("a.{}", "b".repeat(254));
        for (name, valid) in [
            (":1.42", true),
            (":1.0", true),
            (":a-b.c_d", true),
            (":1", false),
            (":", false),
            (":.1", false),
            (":1.", false),
            (":1..2", false),
            ("org.freedesktop.DBus", true),
            ("org.example-x.App_1", true),
            ("a.b", true),
            ("org._7zip.Archiver", true),
            // `-` may lead an element (libdbus and zbus agree; found by fuzzing).
            ("a.-b", true),
            ("-a.b", true),
            (":1.-b", true),
            ("a.-7", true),
            ("org.7zip.Archiver", false),
            ("org", false),
            ("", false),
            (".org.example", false),
            ("org.example.", false),
            ("org..example", false),
            ("org.exa mple", false),
            ("org.exämple", false),
            ("org.example/x", false),
            ("org.example:x", false),
            (long_ok.as_str(), true),
            (long_bad.as_str(), false),
        ] {
            assert_eq!(is_valid_bus_name(name), valid, "{name:?}");
        }
        assert!(is_valid_unique_name(":1.2"));
        assert!(!is_valid_unique_name("a.b"));
        assert!(is_valid_well_known_name("a.b"));
        assert!(!is_valid_well_known_name(":1.2"));
    }

    #[test]
    fn interfaces() {
        let long_ok = format!("a.{}", "b".repeat(253));
        let long_bad = format!("a.{}", "b".repeat(254));
        for (name, valid) in [
            ("org.freedesktop.DBus", true),
            ("a.b", true),
            ("_a._1", true),
            ("org.example-x.App", false),
            ("org.7zip", false),
            ("org", false),
            ("", false),
            (".a.b", false),
            ("a.b.", false),
            ("a..b", false),
            ("a.b c", false),
            (long_ok.as_str(), true),
            (long_bad.as_str(), false),
        ] {
            assert_eq!(is_valid_interface(name), valid, "{name:?}");
            assert_eq!(is_valid_error_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn members() {
        let long_ok = "m".repeat(255);
        let long_bad = "m".repeat(256);
        for (name, valid) in [
            ("Hello", true),
            ("_x1", true),
            ("a", true),
            ("", false),
            ("1x", false),
            ("a.b", false),
            ("a-b", false),
            ("a b", false),
            (long_ok.as_str(), true),
            (long_bad.as_str(), false),
        ] {
            assert_eq!(is_valid_member(name), valid, "{name:?}");
        }
    }

    #[test]
    fn object_paths() {
        let long = format!("/{}", "a/".repeat(1000) + "b");
        for (path, valid) in [
            ("/", true),
            ("/org/freedesktop/DBus", true),
            ("/a_1/_/9", true),
            (long.as_str(), true),
            ("", false),
            ("a", false),
            ("//", false),
            ("/a/", false),
            ("/a//b", false),
            ("/a-b", false),
            ("/a.b", false),
            ("/ä", false),
        ] {
            assert_eq!(is_valid_object_path(path), valid, "{path:?}");
        }
    }
}
