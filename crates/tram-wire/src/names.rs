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
    if s.len() > MAX_NAME_LEN {
        return false;
    }
    let (rest, unique) = match s.strip_prefix(':') {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    dotted(rest, |element| {
        let Some(&first) = element.first() else {
            return false;
        };
        (unique || !first.is_ascii_digit())
            && element
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    })
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
    s.len() <= MAX_NAME_LEN && dotted(s, is_identifier)
}
/// An error name (same syntax as an interface name).
pub fn is_valid_error_name(s: &str) -> bool {
    is_valid_interface(s)
}
/// A member name: 1 to 255 bytes of `[A-Za-z0-9_]`, not starting with a digit.
pub fn is_valid_member(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && is_identifier(s.as_bytes())
}
/// An object path: `/`, or `/` followed by non-empty elements of `[A-Za-z0-9_]` separated by
/// single slashes, without a trailing slash. Any length.
pub fn is_valid_object_path(s: &str) -> bool {
    let Some(rest) = s.as_bytes().strip_prefix(b"/") else {
        return false;
    };
    rest.is_empty()
        || rest.split(|&c| c == b'/').all(|element| {
            !element.is_empty()
                && element
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_')
        })
}

/// Whether `s` has at least two `.`-separated elements, each accepted by `element`.
fn dotted(s: &str, element: impl Fn(&[u8]) -> bool) -> bool {
    let mut count = 0usize;
    for e in s.as_bytes().split(|&c| c == b'.') {
        if !element(e) {
            return false;
        }
        count += 1;
    }
    count >= 2
}

/// A non-empty run of `[A-Za-z0-9_]` not starting with a digit.
fn is_identifier(e: &[u8]) -> bool {
    match e.first() {
        Some(first) if !first.is_ascii_digit() => {
            e.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
        }
        _ => false,
    }
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
