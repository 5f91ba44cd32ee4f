//! A D-Bus client over a plain `UnixStream`, byte for byte under the test's control.
//!
//! [`RawMessage`] describes an outgoing message field by field, so a test can build any message,
//! valid or not; [`Msg`] is an incoming message decoded by the tests' own codec; [`RawClient`]
//! performs the SASL handshake and exchanges messages (and fds) with a deadline on every wait.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::value::{Dec, Enc, Value, decode_body, encode_body};

/// How long any single wait for the bus may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Message types.
pub const METHOD_CALL: u8 = 1;
/// A method return.
pub const METHOD_RETURN: u8 = 2;
/// An error.
pub const ERROR: u8 = 3;
/// A signal.
pub const SIGNAL: u8 = 4;

/// Header flag: no reply expected.
pub const NO_REPLY_EXPECTED: u8 = 0x1;
/// Header flag: do not auto-start the destination.
pub const NO_AUTO_START: u8 = 0x2;

/// Header field codes.
pub mod field {
    /// PATH (`o`)
    pub const PATH: u8 = 1;
    /// INTERFACE (`s`)
    pub const INTERFACE: u8 = 2;
    /// MEMBER (`s`)
    pub const MEMBER: u8 = 3;
    /// ERROR_NAME (`s`)
    pub const ERROR_NAME: u8 = 4;
    /// REPLY_SERIAL (`u`)
    pub const REPLY_SERIAL: u8 = 5;
    /// DESTINATION (`s`)
    pub const DESTINATION: u8 = 6;
    /// SENDER (`s`)
    pub const SENDER: u8 = 7;
    /// SIGNATURE (`g`)
    pub const SIGNATURE: u8 = 8;
    /// UNIX_FDS (`u`)
    pub const UNIX_FDS: u8 = 9;
}

/// The bus driver's name, path and interface.
pub const BUS: &str = "org.freedesktop.DBus";
/// The bus driver's object path.
pub const BUS_PATH: &str = "/org/freedesktop/DBus";

/// An outgoing message, every part of it under the test's control.
#[derive(Clone, Debug)]
pub struct RawMessage {
    /// Big-endian (`B`) instead of little-endian (`l`).
    pub big_endian: bool,
    /// The endianness byte actually written, when it should be something else than `l`/`B`.
    pub endian_byte: Option<u8>,
    /// Message type.
    pub mtype: u8,
    /// Header flags.
    pub flags: u8,
    /// Protocol version (1).
    pub version: u8,
    /// Header fields in order. A SIGNATURE field is added from `body` unless one is here.
    pub fields: Vec<(u8, Value)>,
    /// Body arguments.
    pub body: Vec<Value>,
    /// Raw body bytes used instead of marshalling `body` (the SIGNATURE still comes from
    /// `body` or `fields`).
    pub raw_body: Option<Vec<u8>>,
    /// The serial to write instead of the client's next one (e.g. 0).
    pub serial: Option<u32>,
}

impl RawMessage {
    fn new(mtype: u8) -> RawMessage {
        RawMessage {
            big_endian: cfg!(target_endian = "big"),
            endian_byte: None,
            mtype,
            flags: 0,
            version: 1,
            fields: Vec::new(),
            body: Vec::new(),
            raw_body: None,
            serial: None,
        }
    }

    /// A method call; `destination` and `interface` are optional as in the specification.
    pub fn call(
        destination: Option<&str>,
        path: &str,
        interface: Option<&str>,
        member: &str,
    ) -> RawMessage {
        let mut m = RawMessage::new(METHOD_CALL).field(field::PATH, Value::path(path));
        if let Some(i) = interface {
            m = m.field(field::INTERFACE, Value::str(i));
        }
        m = m.field(field::MEMBER, Value::str(member));
        if let Some(d) = destination {
            m = m.field(field::DESTINATION, Value::str(d));
        }
        m
    }

    /// A call to the bus driver's `org.freedesktop.DBus` interface.
    pub fn bus_call(member: &str, args: Vec<Value>) -> RawMessage {
        RawMessage::call(Some(BUS), BUS_PATH, Some(BUS), member).args(args)
    }

    /// A signal; `destination` unset (a broadcast).
    pub fn signal(path: &str, interface: &str, member: &str) -> RawMessage {
        RawMessage::new(SIGNAL)
            .field(field::PATH, Value::path(path))
            .field(field::INTERFACE, Value::str(interface))
            .field(field::MEMBER, Value::str(member))
    }

    /// A method return to `destination` answering `reply_serial`.
    pub fn method_return(destination: &str, reply_serial: u32) -> RawMessage {
        RawMessage::new(METHOD_RETURN)
            .field(field::REPLY_SERIAL, Value::U32(reply_serial))
            .field(field::DESTINATION, Value::str(destination))
    }

    /// An error `name` to `destination` answering `reply_serial`.
    pub fn error(destination: &str, reply_serial: u32, name: &str) -> RawMessage {
        RawMessage::new(ERROR)
            .field(field::ERROR_NAME, Value::str(name))
            .field(field::REPLY_SERIAL, Value::U32(reply_serial))
            .field(field::DESTINATION, Value::str(destination))
    }

    /// The reply that answers `call`: a return, or an error when `error` is given.
    pub fn reply_to(call: &Msg, error: Option<&str>) -> RawMessage {
        let dest = call.sender.as_deref().unwrap_or_default();
        match error {
            Some(name) => RawMessage::error(dest, call.serial, name),
            None => RawMessage::method_return(dest, call.serial),
        }
    }

    /// Appends a header field.
    pub fn field(mut self, code: u8, value: Value) -> RawMessage {
        self.fields.push((code, value));
        self
    }

    /// Removes every header field `code`.
    pub fn without_field(mut self, code: u8) -> RawMessage {
        self.fields.retain(|(c, _)| *c != code);
        self
    }

    /// Sets DESTINATION (replacing any).
    pub fn destination(self, name: &str) -> RawMessage {
        self.without_field(field::DESTINATION)
            .field(field::DESTINATION, Value::str(name))
    }

    /// Sets the body arguments.
    pub fn args(mut self, args: Vec<Value>) -> RawMessage {
        self.body = args;
        self
    }

    /// Sets the header flags.
    pub fn flags(mut self, flags: u8) -> RawMessage {
        self.flags = flags;
        self
    }

    /// Sets UNIX_FDS.
    pub fn unix_fds(self, n: u32) -> RawMessage {
        self.without_field(field::UNIX_FDS)
            .field(field::UNIX_FDS, Value::U32(n))
    }

    /// Marshals the message with `serial` (unless [`RawMessage::serial`] overrides it).
    pub fn encode(&self, serial: u32) -> Vec<u8> {
        let body = match &self.raw_body {
            Some(b) => b.clone(),
            None => encode_body(&self.body, self.big_endian),
        };
        let mut fields = self.fields.clone();
        if !self.body.is_empty() && !fields.iter().any(|(c, _)| *c == field::SIGNATURE) {
            let sig: String = self.body.iter().map(Value::signature).collect();
            fields.push((field::SIGNATURE, Value::Sig(sig)));
        }
        let mut enc = Enc::new(self.big_endian);
        let endian = self
            .endian_byte
            .unwrap_or(if self.big_endian { b'B' } else { b'l' });
        enc.buf
            .extend_from_slice(&[endian, self.mtype, self.flags, self.version]);
        enc.u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
        enc.u32(self.serial.unwrap_or(serial));
        let fields = fields
            .into_iter()
            .map(|(code, v)| Value::Struct(vec![Value::Byte(code), Value::variant(v)]))
            .collect();
        enc.value(&Value::Array("(yv)".into(), fields));
        enc.pad(8);
        enc.buf.extend_from_slice(&body);
        enc.buf
    }
}

/// A message received from the bus, decoded.
#[derive(Debug)]
pub struct Msg {
    /// Big-endian.
    pub big_endian: bool,
    /// Message type.
    pub mtype: u8,
    /// Header flags.
    pub flags: u8,
    /// The serial.
    pub serial: u32,
    /// PATH.
    pub path: Option<String>,
    /// INTERFACE.
    pub interface: Option<String>,
    /// MEMBER.
    pub member: Option<String>,
    /// ERROR_NAME.
    pub error_name: Option<String>,
    /// REPLY_SERIAL.
    pub reply_serial: Option<u32>,
    /// DESTINATION.
    pub destination: Option<String>,
    /// SENDER.
    pub sender: Option<String>,
    /// SIGNATURE, `""` when absent.
    pub signature: String,
    /// UNIX_FDS.
    pub unix_fds: Option<u32>,
    /// Header field codes in the order they appeared.
    pub field_codes: Vec<u8>,
    /// The body.
    pub body: Vec<Value>,
    /// The fds that arrived with the message.
    pub fds: Vec<OwnedFd>,
}

impl Msg {
    /// Decodes one complete message.
    ///
    /// # Errors
    /// The bytes are not a well-formed message.
    pub fn decode(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<Msg, String> {
        let big = match bytes.first() {
            Some(b'l') => false,
            Some(b'B') => true,
            other => return Err(format!("bad endianness byte {other:?}")),
        };
        let mut dec = Dec::new(bytes, 0, big);
        let fixed = dec.value("(yyyyuu)")?;
        let Value::Struct(fixed) = fixed else {
            unreachable!()
        };
        let (mtype, flags, body_len, serial) = match fixed.as_slice() {
            [
                _,
                Value::Byte(t),
                Value::Byte(f),
                Value::Byte(1),
                Value::U32(l),
                Value::U32(s),
            ] => (*t, *f, *l as usize, *s),
            other => return Err(format!("bad fixed header {other:?}")),
        };
        let Value::Array(_, fields) = dec.value("a(yv)")? else {
            unreachable!()
        };
        let header_end = (dec.pos + 7) & !7;
        if bytes
            .get(dec.pos..header_end)
            .is_none_or(|pad| pad.iter().any(|b| *b != 0))
        {
            return Err("bad header padding".into());
        }
        let mut m = Msg {
            big_endian: big,
            mtype,
            flags,
            serial,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            reply_serial: None,
            destination: None,
            sender: None,
            signature: String::new(),
            unix_fds: None,
            field_codes: Vec::new(),
            body: Vec::new(),
            fds,
        };
        for f in fields {
            let Value::Struct(parts) = f else {
                unreachable!()
            };
            let [Value::Byte(code), Value::Variant(v)] = parts.as_slice() else {
                unreachable!()
            };
            m.field_codes.push(*code);
            let s = v.as_str().map(str::to_owned);
            match *code {
                field::PATH => m.path = s,
                field::INTERFACE => m.interface = s,
                field::MEMBER => m.member = s,
                field::ERROR_NAME => m.error_name = s,
                field::REPLY_SERIAL => m.reply_serial = v.as_u32(),
                field::DESTINATION => m.destination = s,
                field::SENDER => m.sender = s,
                field::SIGNATURE => m.signature = s.unwrap_or_default(),
                field::UNIX_FDS => m.unix_fds = v.as_u32(),
                _ => {}
            }
        }
        let body = bytes
            .get(header_end..header_end + body_len)
            .ok_or("body shorter than declared")?;
        if header_end + body_len != bytes.len() {
            return Err("trailing bytes after the body".into());
        }
        m.body = decode_body(&m.signature, body, big)?;
        Ok(m)
    }

    /// Whether this is a method return.
    pub fn is_return(&self) -> bool {
        self.mtype == METHOD_RETURN
    }

    /// Whether this is an error named `name`.
    pub fn is_error(&self, name: &str) -> bool {
        self.mtype == ERROR && self.error_name.as_deref() == Some(name)
    }

    /// Whether this is the signal `interface.member`.
    pub fn is_signal(&self, interface: &str, member: &str) -> bool {
        self.mtype == SIGNAL
            && self.interface.as_deref() == Some(interface)
            && self.member.as_deref() == Some(member)
    }

    /// Whether this is the bus driver's signal `member`.
    pub fn is_bus_signal(&self, member: &str) -> bool {
        self.is_signal(BUS, member) && self.sender.as_deref() == Some(BUS)
    }

    /// String argument `i`.
    pub fn str_arg(&self, i: usize) -> Option<&str> {
        self.body.get(i).and_then(Value::as_str)
    }

    /// `u` argument `i`.
    pub fn u32_arg(&self, i: usize) -> Option<u32> {
        self.body.get(i).and_then(Value::as_u32)
    }

    /// Asserts this is a method return and gives its body.
    ///
    /// # Panics
    /// It is anything else.
    #[track_caller]
    pub fn ok(self) -> Vec<Value> {
        assert!(
            self.is_return(),
            "expected a method return, got {}",
            self.describe()
        );
        self.body
    }

    /// Asserts this is the error `name`.
    ///
    /// # Panics
    /// It is anything else.
    #[track_caller]
    pub fn expect_error(&self, name: &str) {
        assert!(
            self.is_error(name),
            "expected error {name}, got {}",
            self.describe()
        );
    }

    /// A short form for comparing sequences: `return(uint32 1)`, `error NAME`,
    /// `NameLost("a.b")`, `call Member(…)`; string arguments equal to a unique name in `labels`
    /// are replaced by its label.
    pub fn summary(&self, labels: &[(&str, &str)]) -> String {
        let args: Vec<String> = self
            .body
            .iter()
            .map(|v| {
                match v
                    .as_str()
                    .and_then(|s| labels.iter().find(|(n, _)| *n == s))
                {
                    Some((_, label)) => (*label).to_owned(),
                    None => v.to_string(),
                }
            })
            .collect();
        let args = args.join(", ");
        match self.mtype {
            METHOD_RETURN => format!("return({args})"),
            ERROR => format!("error {}", self.error_name.as_deref().unwrap_or("?")),
            SIGNAL => format!("{}({args})", self.member.as_deref().unwrap_or("?")),
            METHOD_CALL => format!("call {}({args})", self.member.as_deref().unwrap_or("?")),
            t => format!("type {t}"),
        }
    }

    /// One line describing the message, for failure output.
    pub fn describe(&self) -> String {
        let kind = match self.mtype {
            METHOD_CALL => "call",
            METHOD_RETURN => "return",
            ERROR => "error",
            SIGNAL => "signal",
            _ => "unknown",
        };
        let mut s = format!("{kind} #{}", self.serial);
        let mut add = |label: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!(" {label}={v}"));
            }
        };
        add("sender", &self.sender);
        add("dest", &self.destination);
        add("path", &self.path);
        add("iface", &self.interface);
        add("member", &self.member);
        add("error", &self.error_name);
        if let Some(r) = self.reply_serial {
            s.push_str(&format!(" reply_to=#{r}"));
        }
        let args: Vec<String> = self.body.iter().map(ToString::to_string).collect();
        s.push_str(&format!(" ({})", args.join(", ")));
        s
    }
}

/// What a bounded read found.
#[derive(Debug)]
pub enum Recv {
    /// A message.
    Msg(Box<Msg>),
    /// The deadline passed with no complete message.
    Timeout,
    /// The bus closed the connection (or reset it).
    Closed,
}

/// A raw client connection to a bus.
pub struct RawClient {
    sock: UnixStream,
    inbuf: Vec<u8>,
    infds: VecDeque<OwnedFd>,
    pending: VecDeque<Msg>,
    serial: u32,
    /// The unique name from Hello.
    pub unique_name: String,
    /// The GUID from the server's `OK`.
    pub guid: String,
    bus_stderr: Option<Arc<Mutex<Vec<u8>>>>,
}

impl RawClient {
    /// Connects to the socket at `path`, sending nothing.
    ///
    /// # Panics
    /// The socket does not accept the connection.
    pub fn connect(path: &Path, bus_stderr: Option<Arc<Mutex<Vec<u8>>>>) -> RawClient {
        let sock = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
        RawClient {
            sock,
            inbuf: Vec::new(),
            infds: VecDeque::new(),
            pending: VecDeque::new(),
            serial: 0,
            unique_name: String::new(),
            guid: String::new(),
            bus_stderr,
        }
    }

    /// The `\0AUTH EXTERNAL <hex uid>\r\n` opening of the handshake.
    pub fn auth_line() -> String {
        let uid = rustix::process::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        format!("\0AUTH EXTERNAL {hex}\r\n")
    }

    /// Performs the SASL handshake in one write (AUTH, NEGOTIATE_UNIX_FD when `fds`, BEGIN)
    /// and checks the answers.
    ///
    /// # Panics
    /// The server does not answer `OK <guid>` (and `AGREE_UNIX_FD`).
    pub fn authenticate(&mut self, fds: bool) {
        let mut hs = Self::auth_line();
        if fds {
            hs.push_str("NEGOTIATE_UNIX_FD\r\n");
        }
        hs.push_str("BEGIN\r\n");
        self.write_all(hs.as_bytes());
        let ok = self.read_line();
        let guid = ok
            .strip_prefix("OK ")
            .unwrap_or_else(|| self.fail(&format!("SASL: {ok:?}")));
        self.guid = guid.to_owned();
        if fds {
            let agree = self.read_line();
            assert_eq!(agree, "AGREE_UNIX_FD", "SASL answer to NEGOTIATE_UNIX_FD");
        }
    }

    /// Sends Hello and waits for its reply and the NameAcquired signal for the unique name.
    ///
    /// # Panics
    /// Either does not arrive.
    pub fn hello(&mut self) -> String {
        let reply = self.call(RawMessage::bus_call("Hello", vec![]));
        let body = reply.ok();
        let name = body
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        assert!(name.starts_with(':'), "Hello returned {name:?}");
        self.unique_name = name.clone();
        self.wait_for(|m| m.is_bus_signal("NameAcquired") && m.str_arg(0) == Some(&name));
        name
    }

    /// The next serial this client will use.
    pub fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    /// Writes raw bytes.
    ///
    /// # Panics
    /// The write fails.
    pub fn write_all(&mut self, bytes: &[u8]) {
        if let Err(e) = self.sock.write_all(bytes) {
            self.fail(&format!("write: {e}"));
        }
    }

    /// Writes raw bytes, reporting failure instead of panicking (the bus may already have
    /// closed the connection).
    ///
    /// # Errors
    /// The write fails.
    pub fn try_write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Sends `msg` with the next serial; returns that serial.
    pub fn send(&mut self, msg: &RawMessage) -> u32 {
        let serial = self.next_serial();
        let bytes = msg.encode(serial);
        self.write_all(&bytes);
        serial
    }

    /// Sends `msg` with `fds` attached to its first byte; returns the serial.
    ///
    /// # Panics
    /// The send fails.
    pub fn send_with_fds(&mut self, msg: &RawMessage, fds: &[BorrowedFd<'_>]) -> u32 {
        let serial = self.next_serial();
        let bytes = msg.encode(serial);
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        let sent = rustix::net::sendmsg(
            self.sock.as_fd(),
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap_or_else(|e| self.fail(&format!("sendmsg: {e}")));
        if sent < bytes.len() {
            self.write_all(&bytes[sent..]);
        }
        serial
    }

    /// Sends a call and waits for its reply (return or error); other messages are kept for
    /// later `recv`s.
    pub fn call(&mut self, msg: RawMessage) -> Msg {
        let serial = self.send(&msg);
        self.wait_reply(serial)
    }

    /// Calls a bus driver method.
    pub fn call_bus(&mut self, member: &str, args: Vec<Value>) -> Msg {
        self.call(RawMessage::bus_call(member, args))
    }

    /// Calls a bus driver method that must succeed; gives the reply body.
    #[track_caller]
    pub fn bus_ok(&mut self, member: &str, args: Vec<Value>) -> Vec<Value> {
        let reply = self.call_bus(member, args);
        assert!(reply.is_return(), "{member} failed: {}", reply.describe());
        reply.body
    }

    /// RequestName; gives the result code.
    #[track_caller]
    pub fn request_name(&mut self, name: &str, flags: u32) -> u32 {
        let body = self.bus_ok("RequestName", vec![Value::str(name), Value::U32(flags)]);
        body.first().and_then(Value::as_u32).unwrap_or(0)
    }

    /// ReleaseName; gives the result code.
    #[track_caller]
    pub fn release_name(&mut self, name: &str) -> u32 {
        let body = self.bus_ok("ReleaseName", vec![Value::str(name)]);
        body.first().and_then(Value::as_u32).unwrap_or(0)
    }

    /// AddMatch that must succeed.
    #[track_caller]
    pub fn add_match(&mut self, rule: &str) {
        self.bus_ok("AddMatch", vec![Value::str(rule)]);
    }

    /// Waits for the reply to `serial`, keeping anything else.
    pub fn wait_reply(&mut self, serial: u32) -> Msg {
        self.wait_for(|m| {
            (m.mtype == METHOD_RETURN || m.mtype == ERROR) && m.reply_serial == Some(serial)
        })
    }

    /// Waits for a message satisfying `pred`, keeping the others (in order) for later.
    ///
    /// # Panics
    /// None arrives before the deadline.
    pub fn wait_for(&mut self, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i).expect("index is in range");
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.read_message(deadline) {
                Recv::Msg(m) if pred(&m) => return *m,
                Recv::Msg(m) => self.pending.push_back(*m),
                Recv::Timeout => self.fail("timed out waiting for a message"),
                Recv::Closed => self.fail("the bus closed the connection"),
            }
        }
    }

    /// The next message, in arrival order.
    ///
    /// # Panics
    /// None arrives before the deadline.
    pub fn recv(&mut self) -> Msg {
        match self.recv_timeout(DEADLINE) {
            Recv::Msg(m) => *m,
            Recv::Timeout => self.fail("timed out waiting for a message"),
            Recv::Closed => self.fail("the bus closed the connection"),
        }
    }

    /// The next message, or what happened instead within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Recv {
        if let Some(m) = self.pending.pop_front() {
            return Recv::Msg(Box::new(m));
        }
        self.read_message(Instant::now() + timeout)
    }

    /// Makes a round trip to the bus driver (Peer.Ping) and gives every message that arrived
    /// before its reply, including those kept earlier. Everything the bus routed to this client
    /// before it answered the ping is among them, as a connection's messages are delivered in
    /// order.
    pub fn sync(&mut self) -> Vec<Msg> {
        let serial = self.send(&RawMessage::call(
            Some(BUS),
            "/",
            Some("org.freedesktop.DBus.Peer"),
            "Ping",
        ));
        let reply = self.wait_reply(serial);
        assert!(reply.is_return(), "Ping failed: {}", reply.describe());
        self.pending.drain(..).collect()
    }

    /// Like [`RawClient::sync`], but tolerates the bus closing the connection: `None` then.
    pub fn try_sync(&mut self) -> Option<Vec<Msg>> {
        let serial = self.next_serial();
        let ping = RawMessage::call(Some(BUS), "/", Some("org.freedesktop.DBus.Peer"), "Ping");
        self.try_write_all(&ping.encode(serial)).ok()?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.read_message(deadline) {
                Recv::Msg(m) if m.reply_serial == Some(serial) => {
                    return Some(self.pending.drain(..).collect());
                }
                Recv::Msg(m) => self.pending.push_back(*m),
                Recv::Closed => return None,
                Recv::Timeout => self.fail("timed out waiting for the Ping reply"),
            }
        }
    }

    /// Fds that arrived but belong to no message read so far.
    pub fn unclaimed_fds(&self) -> usize {
        self.infds.len()
    }

    /// Waits for the bus to close the connection; a message answering `probe_serial` (a call
    /// sent after whatever should have been refused) means the bus kept the connection, which is
    /// reported at once rather than after the deadline.
    ///
    /// # Errors
    /// The connection stayed open: what arrived instead.
    pub fn wait_closed(&mut self, probe_serial: Option<u32>) -> Result<(), String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let next = match self.pending.pop_front() {
                Some(m) => Recv::Msg(Box::new(m)),
                None => self.read_message(deadline),
            };
            match next {
                Recv::Closed => return Ok(()),
                Recv::Msg(m) if probe_serial.is_some() && m.reply_serial == probe_serial => {
                    seen.push(m.describe());
                    return Err(format!(
                        "the bus kept the connection and answered: {seen:#?}"
                    ));
                }
                Recv::Msg(m) => seen.push(m.describe()),
                Recv::Timeout => {
                    return Err(format!("still connected after {DEADLINE:?}; got {seen:#?}"));
                }
            }
        }
    }

    /// Asserts that the bus closes the connection before the deadline (messages sent before
    /// the close are skipped).
    ///
    /// # Panics
    /// The connection stays open.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        self.pending.clear();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.read_message(deadline) {
                Recv::Closed => return,
                Recv::Msg(_) => {}
                Recv::Timeout => self.fail("expected the bus to close the connection"),
            }
        }
    }

    /// Shuts the socket down in both directions (the peer sees a disconnect).
    pub fn disconnect(self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// The socket, for tests that need it directly.
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Reads one `\r\n`-terminated SASL line from the server (without the terminator).
    ///
    /// # Panics
    /// None arrives before the deadline.
    pub fn read_line(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = self.inbuf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.inbuf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => self.fail("the bus closed the connection during SASL"),
                Err(e) => self.fail(&format!("SASL read: {e}")),
            }
        }
    }

    fn read_message(&mut self, deadline: Instant) -> Recv {
        loop {
            if let Some(len) = self.frame_len() {
                if self.inbuf.len() >= len {
                    let bytes: Vec<u8> = self.inbuf.drain(..len).collect();
                    // A message's fds arrive with its first byte; the bus sends every message
                    // with fds in its own sendmsg, so all queued fds belong to the messages read
                    // so far. Give each message as many as it declares.
                    let mut msg = Msg::decode(&bytes, Vec::new())
                        .unwrap_or_else(|e| self.fail(&format!("undecodable message: {e}")));
                    let n = msg.unix_fds.unwrap_or(0) as usize;
                    msg.fds = self.infds.drain(..n.min(self.infds.len())).collect();
                    return Recv::Msg(Box::new(msg));
                }
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Recv::Closed,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Recv::Closed,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Recv::Timeout;
                }
                Err(e) => self.fail(&format!("read: {e}")),
            }
        }
    }

    fn frame_len(&self) -> Option<usize> {
        let head = self.inbuf.get(..16)?;
        let big = head[0] == b'B';
        let word = |i: usize| {
            let b = [head[i], head[i + 1], head[i + 2], head[i + 3]];
            (if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }) as usize
        };
        let fields = (word(12) + 7) & !7;
        Some(16 + fields + word(4))
    }

    /// Reads more bytes; `Ok(false)` on end of stream.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(64))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            self.sock.as_fd(),
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                self.infds.extend(fds);
            }
        }
        self.inbuf.extend_from_slice(&buf[..got.bytes]);
        Ok(got.bytes > 0)
    }

    fn fail(&self, what: &str) -> ! {
        let stderr = self
            .bus_stderr
            .as_ref()
            .map(|s| {
                String::from_utf8_lossy(&s.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
            })
            .unwrap_or_default();
        let pending: Vec<String> = self.pending.iter().map(Msg::describe).collect();
        panic!(
            "{what} (client {}; kept messages: {pending:#?}; bus stderr:\n{stderr})",
            self.unique_name
        );
    }
}
