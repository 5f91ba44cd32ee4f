//! The authentication mechanisms a server can offer.

/// A SASL mechanism of the D-Bus [authentication protocol].
///
/// [authentication protocol]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-mechanisms
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `EXTERNAL`: the kernel's peer credentials (unix sockets only).
    External,
    /// `DBUS_COOKIE_SHA1`: proof of reading a secret in the user's home directory.
    CookieSha1,
    /// `ANONYMOUS`: no identity; the bus decides whether to admit such clients.
    Anonymous,
}

impl Mechanism {
    /// Every mechanism, in the order dbus-daemon lists them.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::External,
        Mechanism::CookieSha1,
        Mechanism::Anonymous,
    ];

    /// The name used on the wire and in the configuration's `<auth>` element.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::External => "EXTERNAL",
            Mechanism::CookieSha1 => "DBUS_COOKIE_SHA1",
            Mechanism::Anonymous => "ANONYMOUS",
        }
    }

    /// The mechanism called `name` (case-sensitive, as on the wire).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("external"), None);
        assert_eq!(Mechanism::from_name("KERBEROS_V4"), None);
        assert_eq!(Mechanism::from_name(""), None);
    }
}
