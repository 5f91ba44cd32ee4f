//! The conversation with one client: lines in, replies out.
//!
//! One [`SaslServer`] per listener holds what every conversation shares; one [`Sasl`] per
//! connection walks the specification's [server states] (`WaitingForAuth`, `WaitingForData`,
//! `WaitingForBegin`), consuming complete lines only.
//!
//! [server states]: https://dbus.freedesktop.org/doc/dbus-specification.html#auth-states-server

use std::fmt;
use std::sync::Arc;

use crate::cookie::{CookieAuthority, CookieChallenge, Identity};
use crate::hex;
use crate::mechanism::Mechanism;

/// The longest line accepted, `\r\n` included. dbus-daemon refuses lines of a little over
/// 16 KiB; no legitimate command comes close.
pub const MAX_LINE: usize = 16 * 1024;

/// How many `REJECTED` replies a client gets before it is disconnected (as dbus-daemon).
pub const MAX_REJECTIONS: u32 = 6;

/// What every connection of one listener shares: the GUID, the offered mechanisms, and where
/// DBUS_COOKIE_SHA1 cookies come from.
#[derive(Debug, Clone)]
pub struct SaslServer {
    ok_line: Vec<u8>,
    rejected_line: Vec<u8>,
    mechanisms: Vec<Mechanism>,
    cookies: Option<Arc<dyn CookieAuthority>>,
}

/// The authentication state of one connection.
#[derive(Debug)]
pub struct Sasl {
    state: State,
    peer_uid: Option<u32>,
    fd_passing_possible: bool,
    unix_fds: bool,
    rejections: u32,
    /// How many bytes at the front of the kept input (what the last call did not consume) hold
    /// no line end, so the next call's search starts there: a client writing a long line one
    /// byte at a time costs linear, not quadratic, time.
    searched: usize,
}

/// What [`Sasl::feed`] made of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More input is needed. `consumed` bytes were used; keep the rest for the next call.
    Continue {
        /// Bytes consumed from the front of the input.
        consumed: usize,
    },
    /// The client sent `BEGIN`: bytes after `consumed` belong to the message stream.
    Authenticated {
        /// Bytes consumed from the front of the input, `BEGIN\r\n` included.
        consumed: usize,
        /// How the client authenticated.
        outcome: Outcome,
    },
    /// The client must be disconnected (after sending what was appended to the output).
    Failed(Failure),
}

/// The result of a successful authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the client negotiated unix fd passing.
    pub unix_fds: bool,
    /// Whether the client authenticated with ANONYMOUS.
    pub anonymous: bool,
    /// The user DBUS_COOKIE_SHA1 proved; `None` for the kernel's credentials (EXTERNAL) or no
    /// user (ANONYMOUS).
    pub identity: Option<Identity>,
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The first byte was not the credentials nul byte.
    MissingNulByte,
    /// A line exceeded [`MAX_LINE`].
    LineTooLong,
    /// The client was rejected [`MAX_REJECTIONS`] times.
    TooManyRejections,
    /// `BEGIN` before the client was authenticated.
    BeginBeforeOk,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::MissingNulByte => "authentication did not start with a nul byte",
            Failure::LineTooLong => "authentication line too long",
            Failure::TooManyRejections => "too many failed authentication attempts",
            Failure::BeginBeforeOk => "sent BEGIN before authenticating",
        })
    }
}

impl SaslServer {
    /// A server answering `OK <guid>` and offering `mechanisms` (in that order).
    pub fn new(guid: &str, mechanisms: &[Mechanism]) -> SaslServer {
        let mut rejected_line = b"REJECTED".to_vec();
        for m in mechanisms {
            rejected_line.push(b' ');
            rejected_line.extend_from_slice(m.name().as_bytes());
        }
        rejected_line.extend_from_slice(b"\r\n");
        SaslServer {
            ok_line: format!("OK {guid}\r\n").into_bytes(),
            rejected_line,
            mechanisms: mechanisms.to_vec(),
            cookies: None,
        }
    }

    /// The same server, with DBUS_COOKIE_SHA1 cookies from `cookies` (without, that mechanism
    /// rejects every client).
    pub fn with_cookies(mut self, cookies: Arc<dyn CookieAuthority>) -> SaslServer {
        self.cookies = Some(cookies);
        self
    }

    fn offers(&self, name: &[u8]) -> Option<Mechanism> {
        self.mechanisms
            .iter()
            .copied()
            .find(|m| m.name().as_bytes() == name)
    }
}

impl Sasl {
    /// A new conversation with a peer whose kernel credentials say `peer_uid` (`None` on a
    /// transport without credentials). `fd_passing_possible` says whether the transport can
    /// carry fds (unix sockets can).
    pub fn new(peer_uid: Option<u32>, fd_passing_possible: bool) -> Sasl {
        Sasl {
            state: State::ExpectNul,
            peer_uid,
            fd_passing_possible,
            unix_fds: false,
            rejections: 0,
            searched: 0,
        }
    }

    /// Processes the complete lines at the front of `input`, appending replies to `out`.
    ///
    /// The caller keeps the bytes after `consumed` and passes them again, followed by whatever
    /// the client sends next; how the client's bytes are split between calls makes no
    /// difference. Once the result is [`Progress::Authenticated`] or [`Progress::Failed`], later
    /// calls consume nothing, append nothing and return that result again (with `consumed` 0).
    pub fn feed(&mut self, server: &SaslServer, input: &[u8], out: &mut Vec<u8>) -> Progress {
        if let State::Finished(end) = self.state {
            return match end {
                End::Authenticated(outcome) => Progress::Authenticated {
                    consumed: 0,
                    outcome,
                },
                End::Failed(failure) => Progress::Failed(failure),
            };
        }
        let progress = self.lines(server, input, out);
        match progress {
            Progress::Continue { .. } => {}
            Progress::Authenticated { outcome, .. } => {
                self.state = State::Finished(End::Authenticated(outcome));
            }
            Progress::Failed(failure) => self.state = State::Finished(End::Failed(failure)),
        }
        progress
    }

    /// [`Sasl::feed`] while the conversation goes on.
    fn lines(&mut self, server: &SaslServer, input: &[u8], out: &mut Vec<u8>) -> Progress {
        let mut consumed = 0;
        if self.state == State::ExpectNul {
            match input.first() {
                None => return Progress::Continue { consumed },
                Some(0) => {
                    consumed = 1;
                    self.state = State::WaitingForAuth;
                }
                Some(_) => return Progress::Failed(Failure::MissingNulByte),
            }
        }
        // Bytes already searched by the previous call (the kept input comes first again); a
        // caller that passes less than it kept simply searches from the start.
        let mut skip = if self.searched <= input.len().saturating_sub(consumed) {
            self.searched
        } else {
            0
        };
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            // A line that fits ends within the first MAX_LINE bytes: look no further.
            let window = rest.get(..MAX_LINE).unwrap_or(rest);
            let Some(end) = find_line_end(window, skip) else {
                if rest.len() >= MAX_LINE {
                    return Progress::Failed(Failure::LineTooLong);
                }
                self.searched = rest.len();
                return Progress::Continue { consumed };
            };
            skip = 0;
            self.searched = 0;
            let line = rest.get(..end).unwrap_or_default();
            consumed += end + 2;
            match self.line(server, line, out) {
                Step::Continue => {}
                Step::Begin(outcome) => return Progress::Authenticated { consumed, outcome },
                Step::Fail(failure) => return Progress::Failed(failure),
            }
        }
    }

    fn line(&mut self, server: &SaslServer, line: &[u8], out: &mut Vec<u8>) -> Step {
        if line.iter().any(|&b| b == 0 || !b.is_ascii()) {
            return error(out, "Command contained non-ASCII");
        }
        // The command starts the line: leading whitespace makes it unknown, as in dbus-daemon.
        let (command, args) = split_word(line);
        match (command, &self.state) {
            (b"AUTH", State::WaitingForAuth) => self.auth(server, args, out),
            (b"AUTH", State::WaitingForData(_)) => {
                error(out, "Sent AUTH while another AUTH in progress")
            }
            (b"AUTH", _) => error(out, "Sent AUTH while expecting BEGIN"),
            (b"DATA", State::WaitingForData(_)) => match hex::decode(skip_space(args)) {
                Some(response) => self.data(server, &response, out),
                None => error(out, "Invalid hex encoding"),
            },
            (b"DATA", State::WaitingForBegin { .. }) => {
                error(out, "Sent DATA while expecting BEGIN")
            }
            (b"DATA", _) | (b"CANCEL", State::WaitingForAuth) => {
                error(out, "Not currently in an auth conversation")
            }
            (b"CANCEL" | b"ERROR", _) => self.reject(server, out),
            (
                b"BEGIN",
                &State::WaitingForBegin {
                    anonymous,
                    identity,
                },
            ) => Step::Begin(Outcome {
                unix_fds: self.unix_fds,
                anonymous,
                identity,
            }),
            (b"BEGIN", _) => Step::Fail(Failure::BeginBeforeOk),
            (b"NEGOTIATE_UNIX_FD", State::WaitingForBegin { .. }) => {
                if self.fd_passing_possible {
                    self.unix_fds = true;
                    out.extend_from_slice(b"AGREE_UNIX_FD\r\n");
                    Step::Continue
                } else {
                    error(out, "Unix fd passing is not supported on this transport")
                }
            }
            (b"NEGOTIATE_UNIX_FD", _) => error(out, "Need to authenticate first"),
            _ => error(out, "Unknown command"),
        }
    }

    /// `AUTH [mechanism [initial-response]]` while waiting for one.
    fn auth(&mut self, server: &SaslServer, args: &[u8], out: &mut Vec<u8>) -> Step {
        let (name, response) = split_word(skip_space(args));
        let Some(mechanism) = server.offers(name) else {
            return self.reject(server, out);
        };
        let response = skip_space(response);
        match (mechanism, response.is_empty()) {
            // These need a response: ask for it.
            (Mechanism::External | Mechanism::CookieSha1, true) => {
                self.state = State::WaitingForData(match mechanism {
                    Mechanism::External => Pending::External,
                    _ => Pending::CookieUser,
                });
                out.extend_from_slice(b"DATA\r\n");
                Step::Continue
            }
            (_, true) => self.first_response(server, mechanism, b"", out),
            (_, false) => match hex::decode(response) {
                Some(decoded) => self.first_response(server, mechanism, &decoded, out),
                None => error(out, "Invalid hex encoding"),
            },
        }
    }

    /// `DATA` with a decoded response, in the middle of an exchange.
    fn data(&mut self, server: &SaslServer, response: &[u8], out: &mut Vec<u8>) -> Step {
        match std::mem::replace(&mut self.state, State::WaitingForAuth) {
            State::WaitingForData(Pending::External) => {
                self.first_response(server, Mechanism::External, response, out)
            }
            State::WaitingForData(Pending::CookieUser) => {
                self.first_response(server, Mechanism::CookieSha1, response, out)
            }
            State::WaitingForData(Pending::CookieProof(challenge)) => {
                match challenge.verify(response) {
                    Some(identity) => self.accept(server, false, Some(identity), out),
                    None => self.reject(server, out),
                }
            }
            other => {
                // Not reached: the caller checked the state.
                self.state = other;
                error(out, "Not currently in an auth conversation")
            }
        }
    }

    /// The first response to `mechanism`: EXTERNAL and ANONYMOUS finish here, DBUS_COOKIE_SHA1
    /// answers with its challenge.
    fn first_response(
        &mut self,
        server: &SaslServer,
        mechanism: Mechanism,
        response: &[u8],
        out: &mut Vec<u8>,
    ) -> Step {
        match mechanism {
            Mechanism::External => {
                let accepted = self
                    .peer_uid
                    .is_some_and(|uid| response.is_empty() || parse_uid(response) == Some(uid));
                if accepted {
                    self.accept(server, false, None, out)
                } else {
                    self.reject(server, out)
                }
            }
            // The response is an optional trace string, which must be UTF-8.
            Mechanism::Anonymous => match std::str::from_utf8(response) {
                Ok(_) => self.accept(server, true, None, out),
                Err(_) => self.reject(server, out),
            },
            Mechanism::CookieSha1 => match server
                .cookies
                .as_deref()
                .and_then(|cookies| CookieChallenge::start(cookies, response))
            {
                Some(challenge) => {
                    out.extend_from_slice(b"DATA ");
                    out.extend_from_slice(hex::encode(challenge.text().as_bytes()).as_bytes());
                    out.extend_from_slice(b"\r\n");
                    self.state = State::WaitingForData(Pending::CookieProof(Box::new(challenge)));
                    Step::Continue
                }
                None => self.reject(server, out),
            },
        }
    }

    fn accept(
        &mut self,
        server: &SaslServer,
        anonymous: bool,
        identity: Option<Identity>,
        out: &mut Vec<u8>,
    ) -> Step {
        self.state = State::WaitingForBegin {
            anonymous,
            identity,
        };
        out.extend_from_slice(&server.ok_line);
        Step::Continue
    }

    fn reject(&mut self, server: &SaslServer, out: &mut Vec<u8>) -> Step {
        self.state = State::WaitingForAuth;
        self.unix_fds = false;
        self.rejections += 1;
        out.extend_from_slice(&server.rejected_line);
        if self.rejections >= MAX_REJECTIONS {
            Step::Fail(Failure::TooManyRejections)
        } else {
            Step::Continue
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    ExpectNul,
    WaitingForAuth,
    WaitingForData(Pending),
    WaitingForBegin {
        anonymous: bool,
        identity: Option<Identity>,
    },
    /// [`Sasl::feed`] returned a final result; nothing happens any more.
    Finished(End),
}

/// How a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Authenticated(Outcome),
    Failed(Failure),
}

/// What a mechanism waits for in `DATA`.
#[derive(Debug, PartialEq, Eq)]
enum Pending {
    /// EXTERNAL's authorization identity.
    External,
    /// DBUS_COOKIE_SHA1's user name.
    CookieUser,
    /// DBUS_COOKIE_SHA1's answer to the challenge.
    CookieProof(Box<CookieChallenge>),
}

enum Step {
    Continue,
    Begin(Outcome),
    Fail(Failure),
}

fn error(out: &mut Vec<u8>, text: &str) -> Step {
    out.extend_from_slice(b"ERROR \"");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\"\r\n");
    Step::Continue
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// Splits `s` at its first space or tab: the rest starts at the separator (or is empty).
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| is_space(b)).unwrap_or(s.len());
    s.split_at(end)
}

/// An authorization identity made only of ASCII decimal digits, as a uid.
fn parse_uid(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Where the first `\r\n` in `bytes` starts, given that none ends within the first `searched`
/// bytes (a `\r` there may still pair with the `\n` after it).
fn find_line_end(bytes: &[u8], searched: usize) -> Option<usize> {
    let from = searched.min(bytes.len());
    let mut at = from;
    while let Some(n) = bytes.get(at..)?.iter().position(|&b| b == b'\n') {
        let nl = at + n;
        if nl > 0 && bytes.get(nl - 1) == Some(&b'\r') {
            return Some(nl - 1);
        }
        at = nl + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::{CHALLENGE_BYTES, Cookie};
    use crate::sha1;

    const GUID: &str = "0123456789abcdef0123456789abcdef";
    const OK: &str = "OK 0123456789abcdef0123456789abcdef\r\n";
    const UID: u32 = 1000;
    /// "1000" in hex.
    const UID_HEX: &str = "31303030";

    fn server(mechanisms: &[Mechanism]) -> SaslServer {
        SaslServer::new(GUID, mechanisms)
    }

    /// Feeds `lines` one at a time (after the nul byte) and returns each reply.
    fn converse(server: &SaslServer, lines: &[&str]) -> (Vec<String>, Option<Progress>) {
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        assert_eq!(
            sasl.feed(server, b"\0", &mut out),
            Progress::Continue { consumed: 1 }
        );
        let mut replies = Vec::new();
        for line in lines {
            out.clear();
            let progress = sasl.feed(server, line.as_bytes(), &mut out);
            replies.push(String::from_utf8(out.clone()).unwrap());
            match progress {
                Progress::Continue { consumed } => assert_eq!(consumed, line.len(), "{line:?}"),
                other => return (replies, Some(other)),
            }
        }
        (replies, None)
    }

    #[test]
    fn replies_like_dbus_daemon() {
        let ext = server(&[Mechanism::External]);
        let uid_line = format!("AUTH EXTERNAL {UID_HEX}\r\n");
        let cases: &[(&[&str], &[&str])] = &[
            (&["AUTH\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&["AUTH \r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&[&uid_line], &[OK]),
            (&["AUTH  EXTERNAL\t 31303030\r\n"], &[OK]),
            (&["AUTH EXTERNAL 3130\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&["AUTH EXTERNAL 303031303030\r\n"], &[OK]),
            (&["AUTH EXTERNAL 2d31\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (
                &["AUTH EXTERNAL zz\r\n"],
                &["ERROR \"Invalid hex encoding\"\r\n"],
            ),
            (
                &["AUTH EXTERNAL 313\r\n"],
                &["ERROR \"Invalid hex encoding\"\r\n"],
            ),
            (
                &["AUTH EXTERNAL 31 \r\n"],
                &["ERROR \"Invalid hex encoding\"\r\n"],
            ),
            (
                &["AUTH EXTERNAL 31 32\r\n"],
                &["ERROR \"Invalid hex encoding\"\r\n"],
            ),
            (&["AUTH EXTERNAL\r\n", "DATA\r\n"], &["DATA\r\n", OK]),
            (&["AUTH EXTERNAL \r\n", "DATA \r\n"], &["DATA\r\n", OK]),
            (
                &["AUTH EXTERNAL\r\n", "DATA 31303030\r\n"],
                &["DATA\r\n", OK],
            ),
            (
                &["AUTH EXTERNAL\r\n", "DATA  3130\r\n"],
                &["DATA\r\n", "REJECTED EXTERNAL\r\n"],
            ),
            (
                &["AUTH EXTERNAL\r\n", "DATA zz\r\n", "DATA\r\n"],
                &["DATA\r\n", "ERROR \"Invalid hex encoding\"\r\n", OK],
            ),
            (
                &["AUTH EXTERNAL\r\n", "AUTH EXTERNAL\r\n"],
                &[
                    "DATA\r\n",
                    "ERROR \"Sent AUTH while another AUTH in progress\"\r\n",
                ],
            ),
            (
                &["AUTH EXTERNAL\r\n", "CANCEL\r\n"],
                &["DATA\r\n", "REJECTED EXTERNAL\r\n"],
            ),
            (
                &["AUTH EXTERNAL\r\n", "ERROR\r\n"],
                &["DATA\r\n", "REJECTED EXTERNAL\r\n"],
            ),
            (
                &["AUTH EXTERNAL\r\n", "NEGOTIATE_UNIX_FD\r\n"],
                &["DATA\r\n", "ERROR \"Need to authenticate first\"\r\n"],
            ),
            (
                &["AUTH EXTERNAL\r\n", "FOO\r\n"],
                &["DATA\r\n", "ERROR \"Unknown command\"\r\n"],
            ),
            (&["AUTH FOO\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&["AUTH ANONYMOUS\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&["AUTH external\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&["auth EXTERNAL\r\n"], &["ERROR \"Unknown command\"\r\n"]),
            (&[" AUTH\r\n"], &["ERROR \"Unknown command\"\r\n"]),
            (&["AUTH\tEXTERNAL\r\n"], &["DATA\r\n"]),
            (&["AUTHX\r\n"], &["ERROR \"Unknown command\"\r\n"]),
            (&["\r\n"], &["ERROR \"Unknown command\"\r\n"]),
            (&["FOO\r\n"], &["ERROR \"Unknown command\"\r\n"]),
            (&["OK\r\n"], &["ERROR \"Unknown command\"\r\n"]),
            (&["AUTH EXTERNAL\x7f\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (
                &["AUTH\0\r\n"],
                &["ERROR \"Command contained non-ASCII\"\r\n"],
            ),
            (
                &["AUTH é\r\n"],
                &["ERROR \"Command contained non-ASCII\"\r\n"],
            ),
            (&["AUTH EXTERNAL\r\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (
                &["CANCEL\r\n"],
                &["ERROR \"Not currently in an auth conversation\"\r\n"],
            ),
            (
                &["DATA\r\n"],
                &["ERROR \"Not currently in an auth conversation\"\r\n"],
            ),
            (&["ERROR\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (&["ERROR something odd\r\n"], &["REJECTED EXTERNAL\r\n"]),
            (
                &["NEGOTIATE_UNIX_FD\r\n"],
                &["ERROR \"Need to authenticate first\"\r\n"],
            ),
            (
                &[&uid_line, "NEGOTIATE_UNIX_FD\r\n"],
                &[OK, "AGREE_UNIX_FD\r\n"],
            ),
            (
                &[&uid_line, "NEGOTIATE_UNIX_FD x\r\n"],
                &[OK, "AGREE_UNIX_FD\r\n"],
            ),
            (
                &[&uid_line, "AUTH EXTERNAL\r\n"],
                &[OK, "ERROR \"Sent AUTH while expecting BEGIN\"\r\n"],
            ),
            (
                &[&uid_line, "DATA\r\n"],
                &[OK, "ERROR \"Sent DATA while expecting BEGIN\"\r\n"],
            ),
            (&[&uid_line, "CANCEL\r\n"], &[OK, "REJECTED EXTERNAL\r\n"]),
            (&[&uid_line, "ERROR\r\n"], &[OK, "REJECTED EXTERNAL\r\n"]),
            (
                &[&uid_line, "BEGINX\r\n"],
                &[OK, "ERROR \"Unknown command\"\r\n"],
            ),
            (
                &[&uid_line, "CANCEL\r\n", "AUTH EXTERNAL\r\n", "DATA\r\n"],
                &[OK, "REJECTED EXTERNAL\r\n", "DATA\r\n", OK],
            ),
        ];
        for (lines, want) in cases {
            let (replies, end) = converse(&ext, lines);
            assert_eq!(end, None, "{lines:?}");
            assert_eq!(replies, *want, "{lines:?}");
        }
    }

    #[test]
    fn begin() {
        let ext = server(&[Mechanism::External]);
        let uid_line = format!("AUTH EXTERNAL {UID_HEX}\r\n");
        let cases: &[(&[&str], Progress)] = &[
            (
                &[&uid_line, "BEGIN\r\n"],
                Progress::Authenticated {
                    consumed: 7,
                    outcome: Outcome {
                        unix_fds: false,
                        anonymous: false,
                        identity: None,
                    },
                },
            ),
            (
                &[&uid_line, "NEGOTIATE_UNIX_FD\r\n", "BEGIN x\r\n"],
                Progress::Authenticated {
                    consumed: 9,
                    outcome: Outcome {
                        unix_fds: true,
                        anonymous: false,
                        identity: None,
                    },
                },
            ),
            (
                &[
                    &uid_line,
                    "NEGOTIATE_UNIX_FD\r\n",
                    "CANCEL\r\n",
                    &uid_line,
                    "BEGIN\r\n",
                ],
                Progress::Authenticated {
                    consumed: 7,
                    outcome: Outcome {
                        unix_fds: false,
                        anonymous: false,
                        identity: None,
                    },
                },
            ),
            (&["BEGIN\r\n"], Progress::Failed(Failure::BeginBeforeOk)),
            (
                &["AUTH EXTERNAL\r\n", "BEGIN\r\n"],
                Progress::Failed(Failure::BeginBeforeOk),
            ),
        ];
        for (lines, want) in cases {
            let (_, end) = converse(&ext, lines);
            assert_eq!(end.as_ref(), Some(want), "{lines:?}");
        }
    }

    #[test]
    fn whole_handshake_and_messages_in_one_write() {
        let ext = server(&[Mechanism::External]);
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        let handshake = format!("\0AUTH EXTERNAL {UID_HEX}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
        let mut input = handshake.clone().into_bytes();
        input.extend_from_slice(b"l\x01\x00\x01rest of the message stream\r\nBEGIN\r\n");
        let progress = sasl.feed(&ext, &input, &mut out);
        assert_eq!(
            progress,
            Progress::Authenticated {
                consumed: handshake.len(),
                outcome: Outcome {
                    unix_fds: true,
                    anonymous: false,
                    identity: None,
                }
            }
        );
        assert_eq!(out, format!("{OK}AGREE_UNIX_FD\r\n").into_bytes());
    }

    #[test]
    fn byte_at_a_time() {
        let ext = server(&[Mechanism::External]);
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        let input = b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\nl";
        let mut buffered = Vec::new();
        let mut result = None;
        for &b in input {
            buffered.push(b);
            match sasl.feed(&ext, &buffered, &mut out) {
                Progress::Continue { consumed } => {
                    buffered.drain(..consumed);
                }
                other => {
                    result = Some(other);
                    break;
                }
            }
        }
        assert!(matches!(result, Some(Progress::Authenticated { .. })));
        assert_eq!(out, format!("DATA\r\n{OK}").into_bytes());
    }

    #[test]
    fn long_line_in_pieces_ends_at_the_first_crlf() {
        let ext = server(&[Mechanism::External]);
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        // Bare \r and \n bytes do not end the line; pieces of 3 split some `\r\n`s.
        let mut line = b"\0AUTH ".to_vec();
        for _ in 0..500 {
            line.extend_from_slice(b"x\rx\n\n\r");
        }
        line.extend_from_slice(b"\r\nAUTH\r\n");
        let mut kept = Vec::new();
        let mut total = 0;
        for piece in line.chunks(3) {
            kept.extend_from_slice(piece);
            let Progress::Continue { consumed } = sasl.feed(&ext, &kept, &mut out) else {
                panic!("conversation ended");
            };
            kept.drain(..consumed);
            total += consumed;
        }
        assert_eq!(total, line.len());
        assert_eq!(out, b"REJECTED EXTERNAL\r\nREJECTED EXTERNAL\r\n");
        // Passing less than was kept searches again from the start.
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        let _ = sasl.feed(&ext, b"\0AUTH EXTERNAL", &mut out);
        assert_eq!(
            sasl.feed(&ext, b"AUTH\r\n", &mut out),
            Progress::Continue { consumed: 6 }
        );
    }

    #[test]
    fn partial_line_is_not_consumed() {
        let ext = server(&[Mechanism::External]);
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        assert_eq!(
            sasl.feed(&ext, b"\0AUTH\r\nAUTH EXT", &mut out),
            Progress::Continue { consumed: 7 }
        );
        assert_eq!(out, b"REJECTED EXTERNAL\r\n");
        // A lone \n does not end a line.
        assert_eq!(
            sasl.feed(&ext, b"AUTH EXTERNAL\n", &mut out),
            Progress::Continue { consumed: 0 }
        );
    }

    #[test]
    fn nul_byte_required() {
        let ext = server(&[Mechanism::External]);
        let mut out = Vec::new();
        let mut sasl = Sasl::new(Some(UID), true);
        assert_eq!(
            sasl.feed(&ext, b"", &mut out),
            Progress::Continue { consumed: 0 }
        );
        assert_eq!(
            sasl.feed(&ext, b"AUTH\r\n", &mut out),
            Progress::Failed(Failure::MissingNulByte)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn too_many_rejections() {
        let ext = server(&[Mechanism::External]);
        let lines = ["AUTH\r\n"; MAX_REJECTIONS as usize];
        let (replies, end) = converse(&ext, &lines);
        assert_eq!(end, Some(Progress::Failed(Failure::TooManyRejections)));
        assert_eq!(replies.len(), MAX_REJECTIONS as usize);
        assert!(replies.iter().all(|r| r == "REJECTED EXTERNAL\r\n"));
        // Errors that are not rejections do not count.
        let lines = ["FOO\r\n"; 2 * MAX_REJECTIONS as usize];
        assert_eq!(converse(&ext, &lines).1, None);
    }

    #[test]
    fn line_length_limit() {
        let ext = server(&[Mechanism::External]);
        // A line of exactly MAX_LINE bytes with its terminator is fine.
        let mut line = b"AUTH ".to_vec();
        line.resize(MAX_LINE - 2, b'A');
        line.extend_from_slice(b"\r\n");
        let (replies, end) = converse(&ext, &[std::str::from_utf8(&line).unwrap()]);
        assert_eq!((replies[0].as_str(), end), ("REJECTED EXTERNAL\r\n", None));
        // One more byte is not; without its terminator, a line is refused once it cannot fit.
        let mut terminated = b"AUTH ".to_vec();
        terminated.resize(MAX_LINE - 1, b'A');
        terminated.extend_from_slice(b"\r\n");
        let mut unterminated = b"AUTH ".to_vec();
        unterminated.resize(MAX_LINE, b'A');
        let mut far_terminator = terminated.clone();
        far_terminator.truncate(MAX_LINE - 1);
        far_terminator.resize(4 * MAX_LINE, b'A');
        far_terminator.extend_from_slice(b"\r\n");
        for input in [terminated, unterminated, far_terminator] {
            let mut sasl = Sasl::new(Some(UID), true);
            let mut out = Vec::new();
            sasl.feed(&ext, b"\0", &mut out);
            assert_eq!(
                sasl.feed(&ext, &input, &mut out),
                Progress::Failed(Failure::LineTooLong)
            );
            assert!(out.is_empty());
        }
        // The longest line, then another, in one buffer.
        let mut input = b"\0".to_vec();
        input.extend_from_slice(&line);
        input.extend_from_slice(b"AUTH\r\nAUTH");
        let mut sasl = Sasl::new(Some(UID), true);
        let mut out = Vec::new();
        assert_eq!(
            sasl.feed(&ext, &input, &mut out),
            Progress::Continue {
                consumed: input.len() - 4
            }
        );
        assert_eq!(out, b"REJECTED EXTERNAL\r\nREJECTED EXTERNAL\r\n");
    }

    #[test]
    fn a_finished_conversation_stays_finished() {
        let ext = server(&[Mechanism::External]);
        let outcome = Outcome {
            unix_fds: false,
            anonymous: false,
            identity: None,
        };
        let rejections = "\0".to_owned() + &"AUTH\r\n".repeat(MAX_REJECTIONS as usize);
        let cases: &[(&str, Progress)] = &[
            (
                "\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n",
                Progress::Authenticated {
                    consumed: 0,
                    outcome,
                },
            ),
            ("AUTH\r\n", Progress::Failed(Failure::MissingNulByte)),
            ("\0BEGIN\r\n", Progress::Failed(Failure::BeginBeforeOk)),
            (&rejections, Progress::Failed(Failure::TooManyRejections)),
        ];
        for (input, again) in cases {
            let mut sasl = Sasl::new(Some(UID), true);
            let mut out = Vec::new();
            let first = sasl.feed(&ext, input.as_bytes(), &mut out);
            assert!(!matches!(first, Progress::Continue { .. }), "{input:?}");
            out.clear();
            for more in ["", "\0", "AUTH EXTERNAL\r\nDATA\r\n", "BEGIN\r\n", input] {
                assert_eq!(
                    &sasl.feed(&ext, more.as_bytes(), &mut out),
                    again,
                    "{input:?}"
                );
                assert!(out.is_empty(), "{input:?} then {more:?}");
            }
        }
    }

    #[test]
    fn anonymous() {
        let both = server(&[Mechanism::External, Mechanism::Anonymous]);
        let anonymous_begin = Progress::Authenticated {
            consumed: 7,
            outcome: Outcome {
                unix_fds: false,
                anonymous: true,
                identity: None,
            },
        };
        let cases: &[(&[&str], &[&str])] = &[
            (&["AUTH\r\n"], &["REJECTED EXTERNAL ANONYMOUS\r\n"]),
            (&["AUTH ANONYMOUS\r\n"], &[OK]),
            (&["AUTH ANONYMOUS 74657374\r\n"], &[OK]),
            (
                &["AUTH ANONYMOUS ff\r\n"],
                &["REJECTED EXTERNAL ANONYMOUS\r\n"],
            ),
            (
                &["AUTH ANONYMOUS zz\r\n"],
                &["ERROR \"Invalid hex encoding\"\r\n"],
            ),
            (
                &["AUTH EXTERNAL 31\r\n"],
                &["REJECTED EXTERNAL ANONYMOUS\r\n"],
            ),
            (
                &["AUTH ANONYMOUS\r\n", "DATA\r\n"],
                &[OK, "ERROR \"Sent DATA while expecting BEGIN\"\r\n"],
            ),
        ];
        for (lines, want) in cases {
            let (replies, end) = converse(&both, lines);
            assert_eq!(end, None, "{lines:?}");
            assert_eq!(replies, *want, "{lines:?}");
        }
        let (_, end) = converse(&both, &["AUTH ANONYMOUS\r\n", "BEGIN\r\n"]);
        assert_eq!(end, Some(anonymous_begin));
    }

    #[test]
    fn no_fd_passing_on_transport() {
        let ext = server(&[Mechanism::External]);
        let mut sasl = Sasl::new(Some(UID), false);
        let mut out = Vec::new();
        let input = "\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
        let progress = sasl.feed(&ext, input.as_bytes(), &mut out);
        assert_eq!(
            progress,
            Progress::Authenticated {
                consumed: input.len(),
                outcome: Outcome {
                    unix_fds: false,
                    anonymous: false,
                    identity: None,
                }
            }
        );
        assert!(out.ends_with(b"ERROR \"Unix fd passing is not supported on this transport\"\r\n"));
    }

    #[test]
    fn uid_parsing() {
        assert_eq!(parse_uid(b"0"), Some(0));
        assert_eq!(parse_uid(b"001000"), Some(1000));
        assert_eq!(parse_uid(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_uid(b"4294967296"), None);
        assert_eq!(parse_uid(b"+1"), None);
        assert_eq!(parse_uid(b""), None);
        assert_eq!(parse_uid(b"root"), None);
    }

    #[derive(Debug)]
    struct FakeKeyring;

    const ALICE: Identity = Identity {
        uid: 1000,
        gid: 100,
    };

    impl CookieAuthority for FakeKeyring {
        fn challenge(&self, claimed: &str) -> Result<(Identity, Cookie), String> {
            match claimed {
                "alice" | "1000" => Ok((
                    ALICE,
                    Cookie {
                        id: 7,
                        created: 0,
                        secret: "00112233".into(),
                    },
                )),
                _ => Err(format!("no user {claimed}")),
            }
        }

        fn random(&self, buf: &mut [u8]) -> bool {
            buf.fill(0xab);
            true
        }
    }

    fn cookie_server() -> SaslServer {
        server(&[Mechanism::CookieSha1]).with_cookies(Arc::new(FakeKeyring))
    }

    fn hex_line(command: &str, text: &str) -> String {
        format!("{command} {}\r\n", hex::encode(text.as_bytes()))
    }

    /// The client's proof for the fake keyring's cookie and challenge.
    fn proof(client_challenge: &str) -> String {
        let server_challenge = "ab".repeat(CHALLENGE_BYTES);
        let digest =
            sha1::digest(format!("{server_challenge}:{client_challenge}:00112233").as_bytes());
        format!("{client_challenge} {}", hex::encode(&digest))
    }

    #[test]
    fn cookie_sha1() {
        let s = cookie_server();
        let challenge = hex_line(
            "DATA",
            &format!("org_freedesktop_general 7 {}", "ab".repeat(CHALLENGE_BYTES)),
        );
        let rejected = "REJECTED DBUS_COOKIE_SHA1\r\n";
        let auth_alice = hex_line("AUTH DBUS_COOKIE_SHA1", "alice");
        let good = hex_line("DATA", &proof("c0ffee"));
        let bad = hex_line("DATA", &proof("c0ffee").replace("c0ffee ", "c0ffef "));
        let uppercase = hex_line(
            "DATA",
            &proof("c0ffee").to_uppercase().replace("C0FFEE", "c0ffee"),
        );
        let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
            (vec![auth_alice.clone()], vec![&challenge]),
            (vec![auth_alice.clone(), good.clone()], vec![&challenge, OK]),
            (
                vec![hex_line("AUTH DBUS_COOKIE_SHA1", "1000"), good.clone()],
                vec![&challenge, OK],
            ),
            (
                vec![
                    "AUTH DBUS_COOKIE_SHA1\r\n".into(),
                    hex_line("DATA", "alice"),
                    good.clone(),
                ],
                vec!["DATA\r\n", &challenge, OK],
            ),
            (vec![auth_alice.clone(), bad], vec![&challenge, rejected]),
            (
                vec![auth_alice.clone(), uppercase],
                vec![&challenge, rejected],
            ),
            (
                vec![auth_alice.clone(), hex_line("DATA", "nospace")],
                vec![&challenge, rejected],
            ),
            (
                vec![auth_alice.clone(), hex_line("DATA", &proof(""))],
                vec![&challenge, rejected],
            ),
            (
                vec![hex_line("AUTH DBUS_COOKIE_SHA1", "bob")],
                vec![rejected],
            ),
            (
                vec!["AUTH DBUS_COOKIE_SHA1\r\n".into(), "DATA\r\n".into()],
                vec!["DATA\r\n", rejected],
            ),
            (vec!["AUTH DBUS_COOKIE_SHA1 ff\r\n".into()], vec![rejected]),
            (
                vec![auth_alice.clone(), "CANCEL\r\n".into()],
                vec![&challenge, rejected],
            ),
            (
                vec![auth_alice.clone(), auth_alice.clone()],
                vec![
                    &challenge,
                    "ERROR \"Sent AUTH while another AUTH in progress\"\r\n",
                ],
            ),
        ];
        for (lines, want) in cases {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let (replies, end) = converse(&s, &lines);
            assert_eq!(end, None, "{lines:?}");
            assert_eq!(replies, want, "{lines:?}");
        }
        let (_, end) = converse(&s, &[&auth_alice, &good, "BEGIN\r\n"]);
        assert_eq!(
            end,
            Some(Progress::Authenticated {
                consumed: 7,
                outcome: Outcome {
                    unix_fds: false,
                    anonymous: false,
                    identity: Some(ALICE),
                },
            })
        );
        // Without a keyring every client is rejected.
        let bare = server(&[Mechanism::CookieSha1]);
        let (replies, _) = converse(&bare, &[&auth_alice]);
        assert_eq!(replies, [rejected]);
    }

    #[test]
    fn external_without_kernel_credentials() {
        let ext = server(&[Mechanism::External]);
        let mut sasl = Sasl::new(None, false);
        let mut out = Vec::new();
        let input = "\0AUTH EXTERNAL\r\nDATA\r\nAUTH EXTERNAL 30\r\n";
        assert!(matches!(
            sasl.feed(&ext, input.as_bytes(), &mut out),
            Progress::Continue { .. }
        ));
        assert_eq!(out, b"DATA\r\nREJECTED EXTERNAL\r\nREJECTED EXTERNAL\r\n");
    }
}
