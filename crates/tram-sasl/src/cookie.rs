//! DBUS_COOKIE_SHA1: what the keyring provides, and the challenge built from it.
//!
//! The keyring itself (files in `~/.dbus-keyrings`, their locking and expiry) belongs to the
//! caller, behind [`CookieAuthority`]; this module only challenges a client with a cookie and
//! checks its proof, as the specification's [DBUS_COOKIE_SHA1] section describes.
//!
//! [DBUS_COOKIE_SHA1]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-mechanisms-sha

use std::fmt;

use crate::{hex, sha1};

/// The cookie context the server uses, the specification's default: the name of the keyring
/// file, and the first word of the challenge.
pub const CONTEXT: &str = "org_freedesktop_general";

/// The length of the server's challenge in random bytes (hex-encoded on the wire).
pub(crate) const CHALLENGE_BYTES: usize = 16;

/// The keyring side of DBUS_COOKIE_SHA1, provided by the caller.
pub trait CookieAuthority: fmt::Debug {
    /// The user a client claims to be (a user name, or a uid in decimal) and a cookie to
    /// challenge it with.
    ///
    /// # Errors
    /// Why the user cannot be challenged: unknown user, unusable keyring.
    fn challenge(&self, claimed: &str) -> Result<(Identity, Cookie), String>;

    /// Fills `buf` with random bytes; false when the random source failed.
    fn random(&self, buf: &mut [u8]) -> bool;
}

/// A user proven by DBUS_COOKIE_SHA1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The user's primary group id.
    pub gid: u32,
}

/// One cookie of a keyring: its id and its secret as lowercase hex, the form that is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// The cookie id.
    pub id: u32,
    /// When it was created, in seconds since the epoch.
    pub created: i64,
    /// The secret, lowercase hex.
    pub secret: String,
}

/// A DBUS_COOKIE_SHA1 challenge sent, awaiting the client's proof.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CookieChallenge {
    identity: Identity,
    cookie: Cookie,
    /// Lowercase hex of random bytes, as sent.
    server_challenge: String,
}

impl CookieChallenge {
    /// Looks up the claimed user's cookie and makes a challenge; `None` rejects the client.
    pub(crate) fn start(cookies: &dyn CookieAuthority, claimed: &[u8]) -> Option<CookieChallenge> {
        let claimed = std::str::from_utf8(claimed)
            .ok()
            .filter(|c| !c.is_empty())?;
        let (identity, cookie) = cookies.challenge(claimed).ok()?;
        let mut random = [0u8; CHALLENGE_BYTES];
        if !cookies.random(&mut random) {
            return None;
        }
        Some(CookieChallenge {
            identity,
            cookie,
            server_challenge: hex::encode(&random),
        })
    }

    /// The challenge as the client gets it (before hex encoding):
    /// `<context> <cookie id> <server challenge>`.
    pub(crate) fn text(&self) -> String {
        format!("{CONTEXT} {} {}", self.cookie.id, self.server_challenge)
    }

    /// Checks `<client challenge> <hex digest>`; the proven identity if it is right.
    pub(crate) fn verify(&self, response: &[u8]) -> Option<Identity> {
        let text = std::str::from_utf8(response).ok()?;
        let (client_challenge, digest) = text.split_once(' ')?;
        if client_challenge.is_empty() || client_challenge.contains(':') {
            return None;
        }
        let expected = hex::encode(&sha1::digest(
            format!(
                "{}:{client_challenge}:{}",
                self.server_challenge, self.cookie.secret
            )
            .as_bytes(),
        ));
        constant_time_eq(expected.as_bytes(), digest.as_bytes()).then_some(self.identity)
    }
}

/// Compares without stopping at the first difference (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"bbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
