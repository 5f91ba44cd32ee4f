//! `<limit name="…">`: the resource limits, their units and dbus-daemon's built-in defaults.
//!
//! The defaults are dbus-daemon 1.14's (the commented-out values in the stock `system.conf` are
//! out of date for `auth_timeout`: the daemon disconnected an unauthenticated client after 30 s,
//! not 5 s). The byte and fd limits accept values up to `i64::MAX`, the others up to `i32::MAX`,
//! as dbus-daemon does.

use std::time::Duration;

/// What a limit's number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitUnit {
    /// Bytes.
    Bytes,
    /// Unix file descriptors.
    Fds,
    /// Milliseconds.
    Milliseconds,
    /// Connections, names, rules, replies, …
    Count,
}

/// Every limit the configuration can set. Timeouts are [`Duration`]s; the rest are numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `max_incoming_bytes`: bytes of messages received from one connection and not yet
    /// dispatched.
    pub max_incoming_bytes: u64,
    /// `max_incoming_unix_fds`: fds of messages received from one connection and not yet
    /// dispatched.
    pub max_incoming_unix_fds: u64,
    /// `max_outgoing_bytes`: bytes of messages queued for one connection.
    pub max_outgoing_bytes: u64,
    /// `max_outgoing_unix_fds`: fds of messages queued for one connection.
    pub max_outgoing_unix_fds: u64,
    /// `max_message_size`: bytes in one message.
    pub max_message_size: u64,
    /// `max_message_unix_fds`: fds in one message.
    pub max_message_unix_fds: u64,
    /// `service_start_timeout`: how long an activated service has to take its name.
    pub service_start_timeout: Duration,
    /// `auth_timeout`: how long a connection has to authenticate.
    pub auth_timeout: Duration,
    /// `pending_fd_timeout`: how long a connection may leave fds in flight before it is dropped.
    pub pending_fd_timeout: Duration,
    /// `max_completed_connections`: authenticated connections.
    pub max_completed_connections: u64,
    /// `max_incomplete_connections`: connections still authenticating.
    pub max_incomplete_connections: u64,
    /// `max_connections_per_user`: authenticated connections of one uid.
    pub max_connections_per_user: u64,
    /// `max_pending_service_starts`: activations in progress.
    pub max_pending_service_starts: u64,
    /// `max_names_per_connection`: names one connection owns, its unique name included.
    pub max_names_per_connection: u64,
    /// `max_match_rules_per_connection`: match rules of one connection.
    pub max_match_rules_per_connection: u64,
    /// `max_replies_per_connection`: method calls one connection is waiting for.
    pub max_replies_per_connection: u64,
    /// `reply_timeout`: how long the bus waits for a reply before answering NoReply; `None`
    /// (the default) never: callers time out on their own.
    pub reply_timeout: Option<Duration>,
    /// `max_containers`: sandbox servers (dbus-daemon's experimental Containers1).
    pub max_containers: u64,
    /// `max_containers_per_user`: sandbox servers one uid may create.
    pub max_containers_per_user: u64,
    /// `max_container_metadata_bytes`: metadata bytes of one sandbox server.
    pub max_container_metadata_bytes: u64,
    /// `max_connections_per_container`: connections through one sandbox server.
    pub max_connections_per_container: u64,
}

/// A limit's name, unit and built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitInfo {
    /// The `name` attribute of `<limit>`.
    pub name: &'static str,
    /// What the number counts.
    pub unit: LimitUnit,
    /// dbus-daemon's default; `None` for "never" (`reply_timeout`).
    pub default: Option<u64>,
    /// The largest value dbus-daemon accepts.
    pub max: u64,
}

const INT: u64 = i32::MAX as u64;
const LONG: u64 = i64::MAX as u64;
const MIB: u64 = 1024 * 1024;

/// Every limit dbus-daemon 1.14 knows, in the order of its manual (the Containers1 limits last).
pub const LIMITS: [LimitInfo; 21] = [
    info(
        "max_incoming_bytes",
        LimitUnit::Bytes,
        Some(127 * MIB),
        LONG,
    ),
    info("max_incoming_unix_fds", LimitUnit::Fds, Some(64), LONG),
    info(
        "max_outgoing_bytes",
        LimitUnit::Bytes,
        Some(127 * MIB),
        LONG,
    ),
    info("max_outgoing_unix_fds", LimitUnit::Fds, Some(64), LONG),
    info("max_message_size", LimitUnit::Bytes, Some(32 * MIB), LONG),
    info("max_message_unix_fds", LimitUnit::Fds, Some(16), LONG),
    info(
        "service_start_timeout",
        LimitUnit::Milliseconds,
        Some(25_000),
        INT,
    ),
    info("auth_timeout", LimitUnit::Milliseconds, Some(30_000), INT),
    info(
        "pending_fd_timeout",
        LimitUnit::Milliseconds,
        Some(150_000),
        INT,
    ),
    info(
        "max_completed_connections",
        LimitUnit::Count,
        Some(2048),
        INT,
    ),
    info(
        "max_incomplete_connections",
        LimitUnit::Count,
        Some(64),
        INT,
    ),
    info("max_connections_per_user", LimitUnit::Count, Some(256), INT),
    info(
        "max_pending_service_starts",
        LimitUnit::Count,
        Some(512),
        INT,
    ),
    info("max_names_per_connection", LimitUnit::Count, Some(512), INT),
    info(
        "max_match_rules_per_connection",
        LimitUnit::Count,
        Some(512),
        INT,
    ),
    info(
        "max_replies_per_connection",
        LimitUnit::Count,
        Some(128),
        INT,
    ),
    info("reply_timeout", LimitUnit::Milliseconds, None, INT),
    info("max_containers", LimitUnit::Count, Some(512), INT),
    info("max_containers_per_user", LimitUnit::Count, Some(16), INT),
    info(
        "max_container_metadata_bytes",
        LimitUnit::Bytes,
        Some(4096),
        INT,
    ),
    info(
        "max_connections_per_container",
        LimitUnit::Count,
        Some(8),
        INT,
    ),
];

impl Default for Limits {
    /// dbus-daemon's built-in values, for every limit a configuration does not set.
    fn default() -> Limits {
        let mut limits = Limits {
            max_incoming_bytes: 0,
            max_incoming_unix_fds: 0,
            max_outgoing_bytes: 0,
            max_outgoing_unix_fds: 0,
            max_message_size: 0,
            max_message_unix_fds: 0,
            service_start_timeout: Duration::ZERO,
            auth_timeout: Duration::ZERO,
            pending_fd_timeout: Duration::ZERO,
            max_completed_connections: 0,
            max_incomplete_connections: 0,
            max_connections_per_user: 0,
            max_pending_service_starts: 0,
            max_names_per_connection: 0,
            max_match_rules_per_connection: 0,
            max_replies_per_connection: 0,
            reply_timeout: None,
            max_containers: 0,
            max_containers_per_user: 0,
            max_container_metadata_bytes: 0,
            max_connections_per_container: 0,
        };
        for l in &LIMITS {
            if let Some(v) = l.default {
                limits.set(l.name, v);
            }
        }
        limits
    }
}

impl Limits {
    /// The value of the limit called `name`, in its unit (milliseconds for timeouts); `None` for
    /// an unknown name or a `reply_timeout` of "never".
    pub fn get(&self, name: &str) -> Option<u64> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Some(match name {
            "max_incoming_bytes" => self.max_incoming_bytes,
            "max_incoming_unix_fds" => self.max_incoming_unix_fds,
            "max_outgoing_bytes" => self.max_outgoing_bytes,
            "max_outgoing_unix_fds" => self.max_outgoing_unix_fds,
            "max_message_size" => self.max_message_size,
            "max_message_unix_fds" => self.max_message_unix_fds,
            "service_start_timeout" => ms(self.service_start_timeout),
            "auth_timeout" => ms(self.auth_timeout),
            "pending_fd_timeout" => ms(self.pending_fd_timeout),
            "max_completed_connections" => self.max_completed_connections,
            "max_incomplete_connections" => self.max_incomplete_connections,
            "max_connections_per_user" => self.max_connections_per_user,
            "max_pending_service_starts" => self.max_pending_service_starts,
            "max_names_per_connection" => self.max_names_per_connection,
            "max_match_rules_per_connection" => self.max_match_rules_per_connection,
            "max_replies_per_connection" => self.max_replies_per_connection,
            "reply_timeout" => ms(self.reply_timeout?),
            "max_containers" => self.max_containers,
            "max_containers_per_user" => self.max_containers_per_user,
            "max_container_metadata_bytes" => self.max_container_metadata_bytes,
            "max_connections_per_container" => self.max_connections_per_container,
            _ => return None,
        })
    }

    /// Sets the limit called `name` to `value` (in its unit); `false` for an unknown name.
    pub(crate) fn set(&mut self, name: &str, value: u64) -> bool {
        let ms = Duration::from_millis(value);
        match name {
            "max_incoming_bytes" => self.max_incoming_bytes = value,
            "max_incoming_unix_fds" => self.max_incoming_unix_fds = value,
            "max_outgoing_bytes" => self.max_outgoing_bytes = value,
            "max_outgoing_unix_fds" => self.max_outgoing_unix_fds = value,
            "max_message_size" => self.max_message_size = value,
            "max_message_unix_fds" => self.max_message_unix_fds = value,
            "service_start_timeout" => self.service_start_timeout = ms,
            "auth_timeout" => self.auth_timeout = ms,
            "pending_fd_timeout" => self.pending_fd_timeout = ms,
            "max_completed_connections" => self.max_completed_connections = value,
            "max_incomplete_connections" => self.max_incomplete_connections = value,
            "max_connections_per_user" => self.max_connections_per_user = value,
            "max_pending_service_starts" => self.max_pending_service_starts = value,
            "max_names_per_connection" => self.max_names_per_connection = value,
            "max_match_rules_per_connection" => self.max_match_rules_per_connection = value,
            "max_replies_per_connection" => self.max_replies_per_connection = value,
            "reply_timeout" => self.reply_timeout = Some(ms),
            "max_containers" => self.max_containers = value,
            "max_containers_per_user" => self.max_containers_per_user = value,
            "max_container_metadata_bytes" => self.max_container_metadata_bytes = value,
            "max_connections_per_container" => self.max_connections_per_container = value,
            _ => return false,
        }
        true
    }
}

/// The description of the limit called `name`.
pub fn limit_info(name: &str) -> Option<&'static LimitInfo> {
    LIMITS.iter().find(|l| l.name == name)
}

/// Parses a `<limit>` value as dbus-daemon does (C `strtol` with base 0: leading blanks, a sign,
/// `0x` hex or `0` octal, and anything after the number ignored) and checks its range.
pub(crate) fn parse_limit(info: &LimitInfo, text: &str) -> Result<u64, String> {
    let name = info.name;
    let invalid = || {
        format!("<limit name=\"{name}\"> element has invalid value (could not parse as integer)")
    };
    let (negative, magnitude) = parse_c_integer(text).ok_or_else(invalid)?;
    let value = i64::try_from(magnitude).map_err(|_| invalid())?;
    if negative && value != 0 {
        return Err(format!("<limit name=\"{name}\"> must be a positive number"));
    }
    let value = value.unsigned_abs();
    if value > info.max {
        return Err(format!("<limit name=\"{name}\"> value is too large"));
    }
    Ok(value)
}

/// Parses an integer like C's `strtoul(text, &end, 0)`: returns the sign and magnitude of the
/// longest prefix that is a number, or `None` when there is no number or it overflows `u64`.
pub(crate) fn parse_c_integer(text: &str) -> Option<(bool, u64)> {
    let s = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let bytes = s.as_bytes();
    let (radix, digits) = match bytes {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, s.get(2..)?),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    let len = digits
        .bytes()
        .take_while(|b| char::from(*b).is_digit(radix))
        .count();
    if len == 0 {
        return None;
    }
    let value = u64::from_str_radix(digits.get(..len)?, radix).ok()?;
    Some((negative, value))
}

const fn info(name: &'static str, unit: LimitUnit, default: Option<u64>, max: u64) -> LimitInfo {
    LimitInfo {
        name,
        unit,
        default,
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_round_trips() {
        let defaults = Limits::default();
        for l in &LIMITS {
            assert_eq!(defaults.get(l.name), l.default, "{}", l.name);
            let mut limits = Limits::default();
            assert!(limits.set(l.name, 12345), "{}", l.name);
            assert_eq!(limits.get(l.name), Some(12345), "{}", l.name);
            assert_ne!(limits, defaults, "{}", l.name);
        }
        assert!(!Limits::default().set("max_nonsense", 1));
        assert_eq!(Limits::default().get("max_nonsense"), None);
        assert_eq!(defaults.auth_timeout, Duration::from_secs(30));
        assert_eq!(defaults.max_message_size, 33_554_432);
        assert_eq!(defaults.max_incoming_bytes, 133_169_152);
    }

    /// Confirmed against dbus-daemon 1.14: " 5 ", "5abc" and "0" were accepted, "0x2" allowed
    /// one well-known name besides the unique name and "03" two, "abc" and "" were refused,
    /// "-5" was not positive, 2147483648 was too large for all but the byte and fd limits, and
    /// 99999999999999999999 could not be parsed.
    #[test]
    fn values() {
        let size = limit_info("max_message_size")
            .copied()
            .unwrap_or_else(|| unreachable!());
        let names = limit_info("max_names_per_connection")
            .copied()
            .unwrap_or_else(|| unreachable!());
        let cases: &[(&LimitInfo, &str, Result<u64, &str>)] = &[
            (&size, "5", Ok(5)),
            (&size, " 5 ", Ok(5)),
            (&size, "5abc", Ok(5)),
            (&size, "0", Ok(0)),
            (&size, "-0", Ok(0)),
            (&size, "+7", Ok(7)),
            (&names, "0x2", Ok(2)),
            (&names, "010", Ok(8)),
            (&names, "0x", Ok(0)),
            (&size, "abc", Err("could not parse as integer")),
            (&size, "", Err("could not parse as integer")),
            (&size, "-", Err("could not parse as integer")),
            (&size, "-5", Err("must be a positive number")),
            (&size, "99999999999", Ok(99_999_999_999)),
            (&size, "9223372036854775807", Ok(9_223_372_036_854_775_807)),
            (
                &size,
                "9223372036854775808",
                Err("could not parse as integer"),
            ),
            (
                &size,
                "99999999999999999999",
                Err("could not parse as integer"),
            ),
            (&names, "2147483647", Ok(2_147_483_647)),
            (&names, "2147483648", Err("value is too large")),
        ];
        for &(info, text, want) in cases {
            match (parse_limit(info, text), want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w, "{text:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{text:?}: {e}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
