//! A raw-socket D-Bus client for benchmarks: messages are built once and patched (serials),
//! so the client spends its time in `read`/`write`, not in a client library.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use tram_wire::{BodyReader, Message, MessageBuilder, frame_len};

/// The bus driver's name.
pub(crate) const DRIVER: &str = "org.freedesktop.DBus";

/// Message type codes on the wire.
pub(crate) const METHOD_CALL: u8 = 1;
/// A method return.
pub(crate) const METHOD_RETURN: u8 = 2;
/// An error reply.
pub(crate) const ERROR: u8 = 3;
/// A signal.
pub(crate) const SIGNAL: u8 = 4;

/// How long any single read may block before the workload is declared stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The receive buffer of a connection: large enough for many messages per read. Its pages are
/// only touched as data arrives, so idle connections cost the harness little.
const INITIAL_BUFFER: usize = 1 << 20;

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
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut c = Client {
            stream,
            rx: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            serial: 0,
            name: String::new(),
        };
        let uid = rustix::process::geteuid().as_raw();
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
            .map_err(|e| io::Error::other(format!("Hello reply: {e}")))?
            .to_owned();
        Ok(c)
    }

    /// The next serial.
    pub(crate) fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.serial
    }

    /// Sends `msg` and waits for its reply, skipping anything else; an error reply is an error.
    pub(crate) fn call(&mut self, msg: MessageBuilder) -> io::Result<Message> {
        let serial = self.next_serial();
        let msg = msg.build(serial);
        self.stream.write_all(msg.as_bytes())?;
        loop {
            let m = self.read_message()?;
            if m.reply_serial() == Some(serial) {
                if let Some(e) = m.error_name() {
                    return Err(io::Error::other(format!("error reply: {e}")));
                }
                return Ok(m);
            }
        }
    }

    /// Writes raw bytes.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes all of `bufs`, in order, with as few system calls as the socket allows.
    pub(crate) fn write_all_vectored(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            match self.stream.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads one whole message (validated).
    pub(crate) fn read_message(&mut self) -> io::Result<Message> {
        let len = self.next_frame()?;
        let frame = self
            .rx
            .get(self.start..self.start + len)
            .ok_or_else(|| io::Error::other("frame outside the buffer"))?;
        let bytes: Arc<[u8]> = Arc::from(frame);
        self.start += len;
        Message::parse(bytes, Vec::new()).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Reads one whole message and returns its bytes without validating them (the hot path of
    /// the benchmark clients), valid until the next read.
    pub(crate) fn read_raw(&mut self) -> io::Result<Raw<'_>> {
        let len = self.next_frame()?;
        let at = self.start;
        self.start += len;
        self.rx
            .get(at..at + len)
            .map(Raw)
            .ok_or_else(|| io::Error::other("frame outside the buffer"))
    }

    /// Whether a whole message is already buffered (so a read would not block).
    pub(crate) fn has_buffered_message(&self) -> bool {
        let avail = self.rx.get(self.start..self.end).unwrap_or_default();
        matches!(frame_len(avail), Ok(Some(len)) if avail.len() >= len)
    }

    /// A handle that can shut the connection down from another thread, which makes a reader
    /// blocked on it return end-of-file.
    pub(crate) fn closer(&self) -> io::Result<Closer> {
        Ok(Closer(self.stream.try_clone()?))
    }

    fn next_frame(&mut self) -> io::Result<usize> {
        loop {
            let avail = self.rx.get(self.start..self.end).unwrap_or_default();
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
        let room = self.rx.get_mut(self.end..).unwrap_or_default();
        let n = self.stream.read(room)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bus closed the connection",
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
                    "the bus closed the connection during authentication",
                ));
            }
            line.extend_from_slice(&byte);
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
    }
}

/// Shuts a [`Client`]'s connection down from another thread.
pub(crate) struct Closer(UnixStream);

impl Closer {
    /// Shuts both directions down; a thread blocked reading the connection sees end-of-file.
    pub(crate) fn close(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// The bytes of one framed message as the bus sent them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw<'a>(&'a [u8]);

impl Raw<'_> {
    /// The message type code.
    pub(crate) fn kind(self) -> u8 {
        self.0.get(1).copied().unwrap_or(0)
    }

    /// The serial, in the message's own byte order.
    pub(crate) fn serial(self) -> u32 {
        let b: [u8; 4] = self
            .0
            .get(8..12)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        if self.0.first() == Some(&b'B') {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// A message built once whose serial (and reply serial) can be rewritten in place.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    bytes: Vec<u8>,
    reply_serial_at: Option<usize>,
}

/// A placeholder reply serial that is easy to find in a built header.
const MARK: u32 = 0x5a5a_a5a5;

impl Template {
    /// The placeholder to build replies with: `MessageBuilder::method_return(Template::MARK)`.
    pub(crate) const MARK: u32 = MARK;

    /// A template from a builder (built in native byte order, like every benchmark message).
    pub(crate) fn new(msg: MessageBuilder) -> Template {
        let bytes = msg.build(1).as_bytes().to_vec();
        let mark = MARK.to_ne_bytes();
        let reply_serial_at = bytes.windows(4).position(|w| w == mark);
        Template {
            bytes,
            reply_serial_at,
        }
    }

    /// The message as last stamped.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The message with `serial` (and `reply_serial`, for replies).
    pub(crate) fn stamp(&mut self, serial: u32, reply_serial: u32) -> &[u8] {
        if let Some(s) = self.bytes.get_mut(8..12) {
            s.copy_from_slice(&serial.to_ne_bytes());
        }
        if let Some(s) = self
            .reply_serial_at
            .and_then(|at| self.bytes.get_mut(at..at + 4))
        {
            s.copy_from_slice(&reply_serial.to_ne_bytes());
        }
        &self.bytes
    }
}

fn connect_address(address: &str) -> io::Result<UnixStream> {
    let first = address.split(';').next().unwrap_or_default();
    let params = first
        .strip_prefix("unix:")
        .ok_or_else(|| io::Error::other(format!("unsupported address {address}")))?;
    for kv in params.split(',') {
        if let Some(path) = kv.strip_prefix("path=") {
            use std::os::unix::ffi::OsStrExt;
            return UnixStream::connect(std::ffi::OsStr::from_bytes(&unescape(path)));
        }
        if let Some(name) = kv.strip_prefix("abstract=") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(unescape(name))?;
            return UnixStream::connect_addr(&addr);
        }
    }
    Err(io::Error::other(format!("no path in {address}")))
}

/// Undoes the `%xx` escaping of D-Bus address values.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                rest = tail.get(2..).unwrap_or_default();
                continue;
            }
        }
        out.push(b);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_unescaping() {
        let cases: &[(&str, &[u8])] = &[
            ("/tmp/bus", b"/tmp/bus"),
            ("/tmp/a%20b", b"/tmp/a b"),
            ("%2ftmp%2Fx", b"/tmp/x"),
            ("50%", b"50%"),
            ("%zz", b"%zz"),
            ("%4", b"%4"),
        ];
        for (input, want) in cases {
            assert_eq!(unescape(input), *want, "{input}");
        }
    }

    #[test]
    fn templates_are_stamped_in_place() {
        let mut t =
            Template::new(MessageBuilder::method_return(Template::MARK).destination(":1.7"));
        let bytes = t.stamp(42, 41).to_vec();
        let m = Message::parse(Arc::from(bytes.as_slice()), Vec::new()).unwrap();
        assert_eq!(m.serial(), 42);
        assert_eq!(m.reply_serial(), Some(41));
        let raw = Raw(&bytes);
        assert_eq!(raw.kind(), METHOD_RETURN);
        assert_eq!(raw.serial(), 42);
    }

    #[test]
    fn raw_reads_both_byte_orders() {
        let little = [b'l', SIGNAL, 0, 1, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        let big = [b'B', ERROR, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0];
        assert_eq!((Raw(&little).kind(), Raw(&little).serial()), (SIGNAL, 7));
        assert_eq!((Raw(&big).kind(), Raw(&big).serial()), (ERROR, 7));
        assert_eq!((Raw(&[]).kind(), Raw(&[]).serial()), (0, 0));
    }
}
