//! D-Bus server addresses: parsing, unescaping and escaping.
//!
//! Implements the "Server Addresses" section of the D-Bus specification: an address string is a
//! `;`-separated list of entries, each `transport:key=value,key=value`, with every value
//! %-escaped. Parsing is strict as the specification asks: a `%` must be followed by two hex
//! digits and bytes outside the optionally-escaped set `[-0-9A-Za-z_/.\*]` must be escaped.
//!
//! [`ListenAddress`] is the typed form of one entry the daemon can listen on: `unix:` (path,
//! abstract, dir, tmpdir, runtime), `tcp:` and `nonce-tcp:` (host, bind, port, family; a
//! `noncefile` is accepted and ignored, since a listening server always makes a new one).
//! Other transports parse as [`Address`] but are refused with a clear error by
//! [`ListenAddress::from_address`].

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One parsed address entry: a transport and its key/value pairs, values unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// The transport name, e.g. `unix`.
    pub(crate) transport: String,
    /// Key/value pairs in the order given; values are raw bytes after unescaping.
    pub(crate) pairs: Vec<(String, Vec<u8>)>,
}

/// An address entry the daemon knows how to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAddress {
    /// `unix:path=PATH`: a socket file at PATH.
    Path(PathBuf),
    /// `unix:abstract=NAME`: a Linux abstract socket.
    Abstract(Vec<u8>),
    /// `unix:dir=DIR`: a socket file with a random name in DIR.
    Dir(PathBuf),
    /// `unix:tmpdir=DIR`: like `dir` (dbus-daemon 1.14 creates a path socket here too).
    Tmpdir(PathBuf),
    /// `unix:runtime=yes`: `$XDG_RUNTIME_DIR/bus`.
    Runtime,
    /// `tcp:` or `nonce-tcp:`.
    Tcp(TcpAddress),
    /// `systemd:`: the sockets systemd passed (`LISTEN_FDS`).
    Systemd,
}

/// A `tcp:` or `nonce-tcp:` listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpAddress {
    /// `host`: the name clients connect to, printed in the bus address (`localhost` when not
    /// given).
    pub(crate) host: String,
    /// `bind`: where to listen, when not `host`; `*` for every interface.
    pub(crate) bind: Option<String>,
    /// `port`; 0 lets the kernel choose.
    pub(crate) port: u16,
    /// `family`: restricts the resolved addresses.
    pub(crate) family: Option<Family>,
    /// `nonce-tcp:`: clients must first send the nonce from the nonce file.
    pub(crate) nonce: bool,
}

/// An IP address family (`family=ipv4` or `family=ipv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `ipv4`.
    Ipv4,
    /// `ipv6`.
    Ipv6,
}

impl Family {
    /// The name used in addresses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddressError {
    /// The whole string (or one `;`-separated entry) is empty.
    Empty,
    /// An entry has no `:` after its transport name.
    MissingColon(String),
    /// A `key=value` pair lacks the `=` or has an empty key.
    BadPair(String),
    /// A `%` not followed by two hex digits.
    BadEscape(String),
    /// A byte that must be escaped appears unescaped.
    UnescapedByte(u8),
    /// The same key appears twice in one entry.
    DuplicateKey(String),
    /// A transport tramd does not listen on.
    UnsupportedTransport(String),
    /// A unix entry without exactly one of path, abstract, dir, tmpdir, runtime.
    UnixNeedsOneKey,
    /// A key the transport does not know.
    UnknownKey {
        /// The transport.
        transport: String,
        /// The key.
        key: String,
    },
    /// A value that is not valid for its key.
    BadValue {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Empty => f.write_str("empty address"),
            AddressError::MissingColon(e) => write!(f, "address entry {e:?} lacks a ':'"),
            AddressError::BadPair(p) => write!(f, "{p:?} is not a key=value pair"),
            AddressError::BadEscape(v) => {
                write!(f, "in {v:?}: '%' must be followed by two hex digits")
            }
            AddressError::UnescapedByte(b) => {
                write!(f, "byte 0x{b:02x} ({:?}) must be %-escaped", char::from(*b))
            }
            AddressError::DuplicateKey(k) => write!(f, "key {k:?} given twice"),
            AddressError::UnsupportedTransport(t) => write!(
                f,
                "transport {t:?} is not supported (only unix:, tcp:, nonce-tcp: and systemd: are)"
            ),
            AddressError::UnixNeedsOneKey => f.write_str(
                "a unix: address needs exactly one of path, abstract, dir, tmpdir or runtime",
            ),
            AddressError::UnknownKey { transport, key } => {
                write!(f, "unknown key {key:?} for transport {transport:?}")
            }
            AddressError::BadValue { key, reason } => write!(f, "bad value for {key:?}: {reason}"),
        }
    }
}

impl std::error::Error for AddressError {}

/// Parses an address string into its `;`-separated entries.
///
/// Empty entries between separators are skipped, as libdbus does; a string with no entry at
/// all is an error.
///
/// # Errors
/// Any syntax error in any entry.
pub(crate) fn parse_list(s: &str) -> Result<Vec<Address>, AddressError> {
    let entries = s
        .split(';')
        .filter(|e| !e.is_empty())
        .map(parse_entry)
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Err(AddressError::Empty);
    }
    Ok(entries)
}

/// %-escapes `value` for use in an address: bytes outside `[-0-9A-Za-z_/.\*]` become `%xx`.
pub(crate) fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if is_optionally_escaped(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

impl ListenAddress {
    /// The typed listen address for `addr`.
    ///
    /// # Errors
    /// Unsupported transports, unknown keys, bad values, or for `unix` not exactly one socket
    /// key.
    pub(crate) fn from_address(addr: &Address) -> Result<ListenAddress, AddressError> {
        match addr.transport.as_str() {
            "unix" => unix_address(addr),
            "tcp" => tcp_address(addr, false),
            "nonce-tcp" => tcp_address(addr, true),
            "systemd" => systemd_address(addr),
            _ => Err(AddressError::UnsupportedTransport(addr.transport.clone())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.transport)?;
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={}", escape(v))?;
        }
        Ok(())
    }
}

fn tcp_address(addr: &Address, nonce: bool) -> Result<ListenAddress, AddressError> {
    let mut tcp = TcpAddress {
        host: "localhost".to_owned(),
        bind: None,
        port: 0,
        family: None,
        nonce,
    };
    for (key, value) in &addr.pairs {
        let text = || {
            std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| bad_value(key, "must be non-empty UTF-8"))
        };
        match key.as_str() {
            "host" => tcp.host = text()?,
            "bind" => tcp.bind = Some(text()?),
            "port" => {
                tcp.port = text()?
                    .parse()
                    .map_err(|_| bad_value(key, "must be a number from 0 to 65535"))?;
            }
            "family" => {
                tcp.family = Some(match value.as_slice() {
                    b"ipv4" => Family::Ipv4,
                    b"ipv6" => Family::Ipv6,
                    _ => return Err(bad_value(key, "must be \"ipv4\" or \"ipv6\"")),
                });
            }
            // A server makes its own nonce file; a GUID may accompany any address.
            "noncefile" if nonce => {}
            "guid" => {}
            _ => {
                return Err(AddressError::UnknownKey {
                    transport: addr.transport.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    Ok(ListenAddress::Tcp(tcp))
}

/// `systemd:` takes no key but the GUID any address may carry.
fn systemd_address(addr: &Address) -> Result<ListenAddress, AddressError> {
    match addr.pairs.iter().find(|(key, _)| key != "guid") {
        Some((key, _)) => Err(AddressError::UnknownKey {
            transport: addr.transport.clone(),
            key: key.clone(),
        }),
        None => Ok(ListenAddress::Systemd),
    }
}

fn unix_address(addr: &Address) -> Result<ListenAddress, AddressError> {
    let mut found = None;
    for (key, value) in &addr.pairs {
        let kind = match key.as_str() {
            "path" => ListenAddress::Path(non_empty_path(key, value)?),
            "abstract" => {
                if value.is_empty() {
                    return Err(bad_value(key, "must not be empty"));
                }
                ListenAddress::Abstract(value.clone())
            }
            "dir" => ListenAddress::Dir(non_empty_path(key, value)?),
            "tmpdir" => ListenAddress::Tmpdir(non_empty_path(key, value)?),
            "runtime" => {
                if value != b"yes" {
                    return Err(bad_value(key, "must be \"yes\""));
                }
                ListenAddress::Runtime
            }
            // A GUID may accompany any address; the daemon uses its own.
            "guid" => continue,
            _ => {
                return Err(AddressError::UnknownKey {
                    transport: addr.transport.clone(),
                    key: key.clone(),
                });
            }
        };
        if found.replace(kind).is_some() {
            return Err(AddressError::UnixNeedsOneKey);
        }
    }
    found.ok_or(AddressError::UnixNeedsOneKey)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn parse_entry(entry: &str) -> Result<Address, AddressError> {
    let (transport, rest) = entry
        .split_once(':')
        .ok_or_else(|| AddressError::MissingColon(entry.to_owned()))?;
    if transport.is_empty() {
        return Err(AddressError::MissingColon(entry.to_owned()));
    }
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for pair in rest.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| AddressError::BadPair(pair.to_owned()))?;
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(AddressError::DuplicateKey(key.to_owned()));
        }
        pairs.push((key.to_owned(), unescape(value)?));
    }
    Ok(Address {
        transport: transport.to_owned(),
        pairs,
    })
}

fn unescape(value: &str) -> Result<Vec<u8>, AddressError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&c| hex_digit(c));
            let lo = bytes.get(i + 2).and_then(|&c| hex_digit(c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(AddressError::BadEscape(value.to_owned())),
            }
            i += 3;
        } else if is_optionally_escaped(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(AddressError::UnescapedByte(b));
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_optionally_escaped(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.' | b'\\' | b'*')
}

fn non_empty_path(key: &str, value: &[u8]) -> Result<PathBuf, AddressError> {
    if value.is_empty() {
        return Err(bad_value(key, "must not be empty"));
    }
    if value.contains(&0) {
        return Err(bad_value(key, "must not contain a nul byte"));
    }
    Ok(PathBuf::from(OsStr::from_bytes(value)))
}

fn bad_value(key: &str, reason: &'static str) -> AddressError {
    AddressError::BadValue {
        key: key.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn parses_entries_and_pairs() {
        let cases: &[(&str, Vec<Address>)] = &[
            (
                "unix:path=/tmp/dbus-test",
                vec![Address {
                    transport: "unix".into(),
                    pairs: pairs(&[("path", b"/tmp/dbus-test")]),
                }],
            ),
            (
                "unix:path=/tmp/a;unix:abstract=/tmp/b,guid=0123",
                vec![
                    Address {
                        transport: "unix".into(),
                        pairs: pairs(&[("path", b"/tmp/a")]),
                    },
                    Address {
                        transport: "unix".into(),
                        pairs: pairs(&[("abstract", b"/tmp/b"), ("guid", b"0123")]),
                    },
                ],
            ),
            (
                ";unix:runtime=yes;;",
                vec![Address {
                    transport: "unix".into(),
                    pairs: pairs(&[("runtime", b"yes")]),
                }],
            ),
            (
                "unix:path=/tmp/with%20space%2c%3B%25",
                vec![Address {
                    transport: "unix".into(),
                    pairs: pairs(&[("path", b"/tmp/with space,;%")]),
                }],
            ),
            (
                "tcp:",
                vec![Address {
                    transport: "tcp".into(),
                    pairs: vec![],
                }],
            ),
            (
                "unix:path=%ff%00%41",
                vec![Address {
                    transport: "unix".into(),
                    pairs: pairs(&[("path", b"\xff\x00A")]),
                }],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_list(input).as_ref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        let cases: &[(&str, AddressError)] = &[
            ("", AddressError::Empty),
            (";;", AddressError::Empty),
            ("unix", AddressError::MissingColon("unix".into())),
            (":path=/x", AddressError::MissingColon(":path=/x".into())),
            ("unix:path", AddressError::BadPair("path".into())),
            ("unix:=x", AddressError::BadPair("=x".into())),
            ("unix:path=/a%2", AddressError::BadEscape("/a%2".into())),
            ("unix:path=/a%zz", AddressError::BadEscape("/a%zz".into())),
            ("unix:path=/a b", AddressError::UnescapedByte(b' ')),
            ("unix:path=/a=b", AddressError::UnescapedByte(b'=')),
            ("unix:path=/é", AddressError::UnescapedByte(0xc3)),
            (
                "unix:path=/a,path=/b",
                AddressError::DuplicateKey("path".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_list(input).as_ref(), Err(want), "{input}");
        }
    }

    #[test]
    fn escape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let escaped = escape(&all);
        assert!(escaped.is_ascii());
        assert_eq!(unescape(&escaped), Ok(all));
        assert_eq!(escape(b"/tmp/dbus-AbC_9.x*\\"), "/tmp/dbus-AbC_9.x*\\");
        assert_eq!(escape(b"/tmp/a b,c"), "/tmp/a%20b%2cc");
    }

    #[test]
    fn displays_escaped() {
        let addr = Address {
            transport: "unix".into(),
            pairs: pairs(&[("path", b"/tmp/a b"), ("guid", b"00ff")]),
        };
        assert_eq!(addr.to_string(), "unix:path=/tmp/a%20b,guid=00ff");
    }

    #[test]
    fn listen_addresses() {
        let ok: &[(&str, ListenAddress)] = &[
            ("unix:path=/run/x", ListenAddress::Path("/run/x".into())),
            (
                "unix:abstract=/tmp/x",
                ListenAddress::Abstract(b"/tmp/x".to_vec()),
            ),
            ("unix:dir=/tmp", ListenAddress::Dir("/tmp".into())),
            ("unix:tmpdir=/tmp", ListenAddress::Tmpdir("/tmp".into())),
            ("unix:runtime=yes", ListenAddress::Runtime),
            ("unix:guid=0123,path=/x", ListenAddress::Path("/x".into())),
            ("systemd:", ListenAddress::Systemd),
            ("systemd:guid=0123", ListenAddress::Systemd),
        ];
        for (input, want) in ok {
            let addr = &parse_list(input).unwrap()[0];
            assert_eq!(
                ListenAddress::from_address(addr).as_ref(),
                Ok(want),
                "{input}"
            );
        }
        let bad: &[(&str, AddressError)] = &[
            ("unix:", AddressError::UnixNeedsOneKey),
            ("unix:guid=00", AddressError::UnixNeedsOneKey),
            ("unix:path=/a,abstract=b", AddressError::UnixNeedsOneKey),
            (
                "udp:host=localhost",
                AddressError::UnsupportedTransport("udp".into()),
            ),
            (
                "systemd:path=/a",
                AddressError::UnknownKey {
                    transport: "systemd".into(),
                    key: "path".into(),
                },
            ),
            (
                "unix:runtime=no",
                AddressError::BadValue {
                    key: "runtime".into(),
                    reason: "must be \"yes\"",
                },
            ),
            (
                "unix:path=",
                AddressError::BadValue {
                    key: "path".into(),
                    reason: "must not be empty",
                },
            ),
            (
                "unix:path=/a%00b",
                AddressError::BadValue {
                    key: "path".into(),
                    reason: "must not contain a nul byte",
                },
            ),
            (
                "unix:port=1",
                AddressError::UnknownKey {
                    transport: "unix".into(),
                    key: "port".into(),
                },
            ),
        ];
        for (input, want) in bad {
            let addr = &parse_list(input).unwrap()[0];
            assert_eq!(
                ListenAddress::from_address(addr).as_ref(),
                Err(want),
                "{input}"
            );
        }
    }

    #[test]
    fn tcp_listen_addresses() {
        let tcp = |host: &str, bind: Option<&str>, port, family, nonce| {
            ListenAddress::Tcp(TcpAddress {
                host: host.into(),
                bind: bind.map(Into::into),
                port,
                family,
                nonce,
            })
        };
        let ok: &[(&str, ListenAddress)] = &[
            ("tcp:", tcp("localhost", None, 0, None, false)),
            (
                "tcp:host=localhost,port=1234",
                tcp("localhost", None, 1234, None, false),
            ),
            (
                "tcp:host=127.0.0.1,port=0,family=ipv4",
                tcp("127.0.0.1", None, 0, Some(Family::Ipv4), false),
            ),
            (
                "tcp:host=%3a%3a1,family=ipv6",
                tcp("::1", None, 0, Some(Family::Ipv6), false),
            ),
            (
                "tcp:bind=127.0.0.1,port=65535",
                tcp("localhost", Some("127.0.0.1"), 65535, None, false),
            ),
            (
                "tcp:host=localhost,bind=*,port=0",
                tcp("localhost", Some("*"), 0, None, false),
            ),
            (
                "tcp:host=localhost,guid=0123456789abcdef0123456789abcdef",
                tcp("localhost", None, 0, None, false),
            ),
            ("nonce-tcp:", tcp("localhost", None, 0, None, true)),
            (
                "nonce-tcp:host=127.0.0.1,port=0,noncefile=/tmp/n",
                tcp("127.0.0.1", None, 0, None, true),
            ),
        ];
        for (input, want) in ok {
            let addr = &parse_list(input).unwrap()[0];
            assert_eq!(
                ListenAddress::from_address(addr).as_ref(),
                Ok(want),
                "{input}"
            );
        }
        let bad_port = "must be a number from 0 to 65535";
        let bad: &[(&str, AddressError)] = &[
            ("tcp:port=65536", bad_value("port", bad_port)),
            ("tcp:port=-1", bad_value("port", bad_port)),
            ("tcp:port=http", bad_value("port", bad_port)),
            ("tcp:port=", bad_value("port", "must be non-empty UTF-8")),
            ("tcp:host=", bad_value("host", "must be non-empty UTF-8")),
            ("tcp:host=%ff", bad_value("host", "must be non-empty UTF-8")),
            (
                "tcp:family=ipx",
                bad_value("family", "must be \"ipv4\" or \"ipv6\""),
            ),
            (
                "tcp:noncefile=/tmp/n",
                AddressError::UnknownKey {
                    transport: "tcp".into(),
                    key: "noncefile".into(),
                },
            ),
            (
                "tcp:path=/x",
                AddressError::UnknownKey {
                    transport: "tcp".into(),
                    key: "path".into(),
                },
            ),
        ];
        for (input, want) in bad {
            let addr = &parse_list(input).unwrap()[0];
            assert_eq!(
                ListenAddress::from_address(addr).as_ref(),
                Err(want),
                "{input}"
            );
        }
        assert_eq!(Family::Ipv4.name(), "ipv4");
        assert_eq!(Family::Ipv6.name(), "ipv6");
    }
}
