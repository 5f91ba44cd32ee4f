//! The daemon's configuration, and the built-in defaults.
//!
//! [`Config`] holds everything the daemon (as opposed to the bus core) is configured with:
//! where to listen, how to authenticate, and the connection limits. [`Config::session`] is what
//! the stock `session.conf` of dbus-daemon 1.14 says, so `tramd --session` behaves like
//! `dbus-daemon --session` without reading any file. The XML configuration parser fills the same
//! struct; [`Limits::default`] holds dbus-daemon's built-in limits, which apply to any limit a
//! configuration file does not set.

use std::time::Duration;

/// A SASL mechanism the daemon can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// `EXTERNAL`: the kernel's peer credentials.
    External,
    /// `ANONYMOUS`: no identity; only offered when [`Config::allow_anonymous`] is set.
    Anonymous,
}

impl Mechanism {
    /// The name used on the wire.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::External => "EXTERNAL",
            Mechanism::Anonymous => "ANONYMOUS",
        }
    }
}

/// Connection limits enforced by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// How long a connection may take to authenticate and say Hello (`auth_timeout`).
    pub(crate) auth_timeout: Duration,
    /// Connections that have not said Hello yet (`max_incomplete_connections`); when a new one
    /// would exceed it, the oldest is dropped.
    pub(crate) max_incomplete_connections: usize,
    /// Authenticated connections (`max_completed_connections`); beyond it a connection that
    /// finishes authentication is closed.
    pub(crate) max_completed_connections: usize,
}

impl Default for Limits {
    /// dbus-daemon's built-in values, used for limits a configuration does not set.
    fn default() -> Limits {
        Limits {
            auth_timeout: Duration::from_secs(30),
            max_incomplete_connections: 64,
            max_completed_connections: 2048,
        }
    }
}

/// Everything the daemon needs to start a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// `"session"`, `"system"` or a custom type (the `<type>` element).
    pub(crate) bus_type: String,
    /// Addresses to listen on (one per `<listen>` element). Each is a full address string whose
    /// `;`-separated entries are alternatives: the first that works is used.
    pub(crate) listen: Vec<String>,
    /// The mechanisms offered, in order (the `<auth>` elements). Empty means every mechanism
    /// the daemon supports.
    pub(crate) auth_mechanisms: Vec<Mechanism>,
    /// Whether clients may authenticate with ANONYMOUS (`<allow_anonymous/>`).
    pub(crate) allow_anonymous: bool,
    /// Connection limits.
    pub(crate) limits: Limits,
}

impl Config {
    /// The built-in session bus configuration, as in the stock `session.conf`.
    pub(crate) fn session() -> Config {
        Config {
            bus_type: "session".to_owned(),
            listen: vec!["unix:tmpdir=/tmp".to_owned()],
            auth_mechanisms: vec![Mechanism::External],
            allow_anonymous: false,
            limits: Limits {
                auth_timeout: Duration::from_secs(240),
                max_incomplete_connections: 10_000,
                max_completed_connections: 100_000,
            },
        }
    }

    /// The mechanisms actually offered: the configured ones (or all supported ones when none
    /// is configured), minus ANONYMOUS unless anonymous clients are allowed.
    pub(crate) fn offered_mechanisms(&self) -> Vec<Mechanism> {
        let configured: &[Mechanism] = if self.auth_mechanisms.is_empty() {
            &[Mechanism::External, Mechanism::Anonymous]
        } else {
            &self.auth_mechanisms
        };
        let mut offered: Vec<Mechanism> = Vec::with_capacity(configured.len());
        for &m in configured {
            if (m != Mechanism::Anonymous || self.allow_anonymous) && !offered.contains(&m) {
                offered.push(m);
            }
        }
        offered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_matches_stock_session_conf() {
        let c = Config::session();
        assert_eq!(c.bus_type, "session");
        assert_eq!(c.listen, ["unix:tmpdir=/tmp"]);
        assert_eq!(c.offered_mechanisms(), [Mechanism::External]);
        assert_eq!(c.limits.auth_timeout, Duration::from_secs(240));
    }

    #[test]
    fn offered_mechanisms() {
        use Mechanism::*;
        let cases: &[(&[Mechanism], bool, &[Mechanism])] = &[
            (&[], false, &[External]),
            (&[], true, &[External, Anonymous]),
            (&[Anonymous, External], false, &[External]),
            (&[Anonymous, External], true, &[Anonymous, External]),
            (&[External, External], true, &[External]),
        ];
        for &(configured, allow, want) in cases {
            let c = Config {
                auth_mechanisms: configured.to_vec(),
                allow_anonymous: allow,
                ..Config::session()
            };
            assert_eq!(c.offered_mechanisms(), want, "{configured:?} {allow}");
        }
    }
}
