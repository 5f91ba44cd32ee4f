//! A raw-socket D-Bus client for benchmarks: messages are built once and patched (serials),
//! so the client spends its time in `read`/`write`, not in a client library.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use tram_wire::{BodyReader, Message, MessageBuilder, frame_len};

/// One authenticated connection that said Hello.
pub(crate) struct Client {
    stream: UnixStream,
    rx: Vec<u8>,
    start: usize,
    end: usize,
    serial: u32,
    /// The unique name the bus gave us.
    pub(crate) name: String,
}

impl Client {
    /// Connects to a `unix:path=` or `unix:abstract=` address, authenticates and says Hello.
    pub(crate) fn connect(address: &str) -> io::Result<Client> {
        let stream = connect_address(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut c = Client {
            stream,
            rx: vec![0; 1 << 20],
            start: 0,
            end: 0,
            serial: 0,
            name: String::new(),
        };
        let uid = rustix_uid();
        let hex: String = uid
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        c.stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = c.read_line()?;
        if !line.starts_with("OK ") {
            return Err(io::Error::other(format!("authentication refused: {line}")));
        }
        c.stream.write_all(b"BEGIN\r\n")?;
        let hello = MessageBuilder::method_call("/org/freedesktop/DBus", Some(DRIVER), "Hello")
            .destination(DRIVER);
        let reply = c.call(hello)?;
        c.name = BodyReader::new(&reply)
            .read_str()
            .map_err(|e| io::Error::other(e.to_string()))?
            .to_owned();
        Ok(c)
    }

    /// The next serial.
    pub(crate) fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    /// Sends `msg` and waits for its reply, skipping anything else.
    pub(crate) fn call(&mut self, msg: MessageBuilder) -> io::Result<Message> {
        let serial = self.next_serial();
        let msg = msg.build(serial);
        self.stream.write_all(msg.as_bytes())?;
        loop {
            let m = self.read_message()?;
            if m.reply_serial() == Some(serial) {
                return Ok(m);
            }
        }
    }

    /// Writes raw bytes.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one whole message (validated).
    pub(crate) fn read_message(&mut self) -> io::Result<Message> {
        let len = self.next_frame()?;
        let bytes: Arc<[u8]> = Arc::from(&self.rx[self.start..self.start + len]);
        self.start += len;
        Message::parse(bytes, Vec::new()).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Reads one whole message and returns its bytes without validating them (the hot path of
    /// the benchmark clients), valid until the next read.
    pub(crate) fn read_raw(&mut self) -> io::Result<&[u8]> {
        let len = self.next_frame()?;
        let at = self.start;
        self.start += len;
        Ok(&self.rx[at..at + len])
    }

    /// Whether a whole message is already buffered (so a read would not block).
    pub(crate) fn has_buffered_message(&self) -> bool {
        let avail = &self.rx[self.start..self.end];
        matches!(frame_len(avail), Ok(Some(len)) if avail.len() >= len)
    }

    fn next_frame(&mut self) -> io::Result<usize> {
        loop {
            let avail = &self.rx[self.start..self.end];
            if let Some(len) = frame_len(avail).map_err(|e| io::Error::other(e.to_string()))? {
                if avail.len() >= len {
                    return Ok(len);
                }
                if len > self.rx.len() {
                    self.rx.resize(len, 0);
                }
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && (self.end == self.rx.len() || self.start == self.end) {
            self.rx.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.rx.len() {
            let n = self.rx.len();
            self.rx.resize(n * 2, 0);
        }
        let n = self.stream.read(&mut self.rx[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bus closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            if self.stream.read(&mut byte)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during auth",
                ));
            }
            line.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
    }
}

/// The bus driver's name.
pub(crate) const DRIVER: &str = "org.freedesktop.DBus";

/// A message built once whose serial (and reply serial) can be rewritten in place.
pub(crate) struct Template {
    bytes: Vec<u8>,
    reply_serial_at: Option<usize>,
}

/// A placeholder reply serial that is easy to find in a built header.
const MARK: u32 = 0x5a5a_a5a5;

impl Template {
    /// A template from a builder. For replies, build with `reply_serial` = [`Template::MARK`].
    pub(crate) fn new(msg: MessageBuilder) -> Template {
        let bytes = msg.build(1).as_bytes().to_vec();
        let mark = MARK.to_ne_bytes();
        let reply_serial_at = bytes.windows(4).position(|w| w == mark);
        Template {
            bytes,
            reply_serial_at,
        }
    }

    /// The placeholder to build replies with.
    pub(crate) const MARK: u32 = MARK;

    /// The message with `serial` (and `reply_serial`, for replies).
    pub(crate) fn stamp(&mut self, serial: u32, reply_serial: u32) -> &[u8] {
        self.bytes[8..12].copy_from_slice(&serial.to_ne_bytes());
        if let Some(at) = self.reply_serial_at {
            self.bytes[at..at + 4].copy_from_slice(&reply_serial.to_ne_bytes());
        }
        &self.bytes
    }
}

/// The serial of a raw message in native byte order (the benchmark only sends native order).
pub(crate) fn raw_serial(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
}

/// The message type byte of a raw message.
pub(crate) fn raw_type(bytes: &[u8]) -> u8 {
    bytes[1]
}

fn connect_address(address: &str) -> io::Result<UnixStream> {
    let first = address.split(';').next().unwrap_or_default();
    let params = first
        .strip_prefix("unix:")
        .ok_or_else(|| io::Error::other(format!("unsupported address {address}")))?;
    for kv in params.split(',') {
        if let Some(path) = kv.strip_prefix("path=") {
            return UnixStream::connect(unescape(path));
        }
        if let Some(name) = kv.strip_prefix("abstract=") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(unescape(name))?;
            return UnixStream::connect_addr(&addr);
        }
    }
    Err(io::Error::other(format!("no path in {address}")))
}

fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rustix_uid() -> u32 {
    // The effective uid, from /proc, to avoid a libc dependency in the benchmark.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
