//! The byte and fd streams of one client connection.
//!
//! A [`Connection`] owns the socket and what is in flight on it; it knows nothing about the
//! bus. What it guarantees:
//!
//! * **Reading.** Every `recvmsg` uses `MSG_CMSG_CLOEXEC`; fds that arrive (SCM_RIGHTS) join a
//!   per-connection queue, and a message takes as many from the front as its `UNIX_FDS` header
//!   field declares. Fds on a connection that did not negotiate fd passing, truncated control
//!   data, or more than [`MAX_QUEUED_FDS`] waiting fds are errors.
//! * **Framing.** Complete messages are cut with [`tram_wire::frame_len`], validated where they
//!   are by [`Message::receive`] and copied once into a buffer of their own, followed by the
//!   header the bus will forward them with (the connection's unique name as SENDER), so that
//!   forwarding allocates nothing more. A message declaring more than [`MAX_MESSAGE_LEN`] bytes,
//!   or more than the configured `max_message_size`, is an error before any of its body is
//!   buffered, and so is a message carrying more fds than `max_message_unix_fds` (or fds
//!   waiting for a message beyond that number).
//! * **Large messages are not copied.** A message of at least [`LARGE_MESSAGE`] bytes (and at
//!   most [`MAX_READ`]) is read straight into a buffer of its own as soon as its fixed header
//!   is there; after one, the next fixed header is read on its own, so that a stream of large
//!   messages never passes through the shared buffer. Their buffers are reused once nothing
//!   refers to them any more (up to [`MAX_READ`] bytes of them are kept).
//! * **Incoming limits.** One read takes at most `max_incoming_bytes` (and never less than a
//!   fixed header), and every complete message is handed on before the next read, so no more
//!   than that much of complete messages waits undispatched: what dbus-daemon's
//!   `max_incoming_bytes` bounds. The fds of a message in progress wait in the queue only until
//!   its last byte arrives; the event loop bounds how long (`pending_fd_timeout`).
//! * **Idle connections are cheap.** Reads land in a scratch buffer shared by all connections;
//!   a connection keeps bytes only while a message is incomplete, and its receive buffer is
//!   freed as soon as it is empty again. A connection holds at most [`MAX_READ`] bytes, or
//!   twice what it sent, for a message it has not finished sending.
//! * **Writing.** Raw bytes (authentication replies) go first, then the bus's transmit queue,
//!   many messages per vectored `sendmsg` with `MSG_NOSIGNAL`. A message with fds starts its
//!   own `sendmsg`, its fds attached to its first byte. A partial write is resumed later from
//!   where it stopped.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tram_bus::TxQueue;
use tram_wire::{FIXED_HEADER_LEN, MAX_MESSAGE_LEN, Message, WireError};

/// The most fds a connection may have waiting for their message.
pub(crate) const MAX_QUEUED_FDS: usize = 1024;

/// The most fds the kernel passes in one `recvmsg` (SCM_MAX_FD).
const MAX_FDS_PER_RECV: usize = 253;
/// The size of the shared read buffer.
const SCRATCH_LEN: usize = 64 * 1024;
/// The least a read into a connection's own buffer asks for.
const MIN_READ: usize = 4096;
/// The most a read into a connection's own buffer asks for.
const MAX_READ: usize = 1024 * 1024;
/// Messages from this length up to [`MAX_READ`] are read into a buffer of their own.
pub(crate) const LARGE_MESSAGE: usize = 16 * 1024;
/// The most bytes the buffers kept for large messages take together.
const POOL_BYTES: usize = MAX_READ;
/// A receive buffer larger than this is shrunk once it is mostly empty.
const SHRINK_ABOVE: usize = 2 * MAX_READ;
/// How many iovecs one `sendmsg` carries (two per message at most).
const MAX_IOVECS: usize = 64;

/// Buffers shared by every connection of the event loop.
pub(crate) struct Scratch {
    data: Vec<u8>,
    control: Vec<MaybeUninit<u8>>,
    /// Buffers of large messages, so that a stream of them costs neither zeroing nor fresh
    /// pages.
    pool: BufferPool,
    /// Buffers of small messages, so that most cost no allocation.
    small: SmallPool,
}

/// The configured limits that apply while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvLimits {
    /// The largest message accepted.
    pub(crate) max_message_size: usize,
    /// The most fds one message may carry.
    pub(crate) max_message_unix_fds: usize,
    /// The most bytes one read takes (`max_incoming_bytes`).
    pub(crate) max_read: usize,
    /// The most bytes one read of small messages takes: what is left of the connection's
    /// share of the turn. A large message read in place is not cut by it.
    pub(crate) chunk: usize,
}

/// One client connection: its socket and the bytes and fds in flight.
#[derive(Debug)]
pub(crate) struct Connection {
    fd: OwnedFd,
    rx: RxBuf,
    /// A large message being read into its own buffer.
    large: Option<LargeRx>,
    /// The last message was large: read the next fixed header on its own.
    header_first: bool,
    rx_fds: VecDeque<OwnedFd>,
    tx_raw: Vec<u8>,
    unix_fds: bool,
}

/// A message read straight into its own buffer: `filled` of its `len` bytes are there.
#[derive(Debug)]
struct LargeRx {
    buf: Arc<[u8]>,
    len: usize,
    filled: usize,
}

/// What one [`Connection::receive`] call saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Bytes arrived. `more_likely` is false when the read did not fill its buffer, so the
    /// socket is probably drained.
    Data {
        /// How many.
        bytes: usize,
        /// Whether another read would probably find more.
        more_likely: bool,
    },
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed its end.
    Eof,
}

/// Whether a flush wrote everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Nothing is left to write.
    Done,
    /// The socket is full; wait for it to become writable.
    Blocked,
}

/// Why a connection must be closed.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// A socket call failed.
    Io(io::Error),
    /// The peer sent an invalid message.
    Wire(WireError),
    /// The peer sent fds without negotiating fd passing.
    FdsNotNegotiated,
    /// The peer sent more fds than [`MAX_QUEUED_FDS`] ahead of their messages.
    TooManyFds,
    /// The kernel truncated the control data (fds were lost).
    ControlTruncated,
    /// A message larger than `max_message_size`.
    MessageTooLarge {
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message with more fds than `max_message_unix_fds`.
    MessageTooManyFds {
        /// The fds it carries (or that wait for it).
        fds: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "socket error: {e}"),
            ConnError::Wire(e) => write!(f, "invalid message: {e}"),
            ConnError::FdsNotNegotiated => {
                f.write_str("sent file descriptors without negotiating fd passing")
            }
            ConnError::TooManyFds => {
                write!(
                    f,
                    "sent more than {MAX_QUEUED_FDS} file descriptors ahead of messages"
                )
            }
            ConnError::ControlTruncated => f.write_str("control data truncated, fds lost"),
            ConnError::MessageTooLarge { len, max } => write!(
                f,
                "sent a message of {len} bytes, more than max_message_size={max}"
            ),
            ConnError::MessageTooManyFds { fds, max } => write!(
                f,
                "sent a message with {fds} file descriptors, more than max_message_unix_fds={max}"
            ),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> ConnError {
        ConnError::Io(e)
    }
}

impl From<Errno> for ConnError {
    fn from(e: Errno) -> ConnError {
        ConnError::Io(e.into())
    }
}

impl From<WireError> for ConnError {
    fn from(e: WireError) -> ConnError {
        ConnError::Wire(e)
    }
}

impl Scratch {
    /// Allocates the shared buffers.
    pub(crate) fn new() -> Scratch {
        Scratch {
            data: vec![0; SCRATCH_LEN],
            control: vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_RECV))],
            pool: BufferPool::default(),
            small: SmallPool::default(),
        }
    }
}

/// Buffers of large messages, reused once nothing refers to them any more.
#[derive(Default)]
struct BufferPool {
    /// At most [`POOL_BYTES`] in all.
    bufs: Vec<Arc<[u8]>>,
}

impl BufferPool {
    /// A buffer of at least `len` bytes that nothing else refers to: a kept one of up to twice
    /// that length, or a new one. Its bytes may be those of an earlier message.
    fn take(&mut self, len: usize) -> Arc<[u8]> {
        let free = |b: &Arc<[u8]>| {
            (len..=2 * len).contains(&b.len())
                && Arc::strong_count(b) == 1
                && Arc::weak_count(b) == 0
        };
        match self.bufs.iter().position(free) {
            Some(i) => self.bufs.swap_remove(i),
            None => std::iter::repeat_n(0, len).collect(),
        }
    }

    /// Keeps `buf` (a large message's) for reuse, if there is room, making room by dropping
    /// kept buffers nothing refers to any more.
    fn keep(&mut self, buf: &Arc<[u8]>) {
        if buf.len() > POOL_BYTES {
            return;
        }
        while self.bufs.iter().map(|b| b.len()).sum::<usize>() + buf.len() > POOL_BYTES {
            match self.bufs.iter().position(|b| Arc::strong_count(b) == 1) {
                Some(i) => drop(self.bufs.swap_remove(i)),
                None => return,
            }
        }
        self.bufs.push(Arc::clone(buf));
    }
}

/// Buffers of small messages in size classes of [`SMALL_MIN`] to [`LARGE_MESSAGE`] bytes
/// (powers of two), each class handed out again in the order it was kept. A message's buffer
/// is free again once its last receiver wrote it out: with messages forwarded in the order they
/// arrive, the oldest kept buffer is the one most likely free, so taking one looks only there.
/// A class keeps at most [`SMALL_CLASS_BYTES`]; a buffer held long (by a receiver that does not
/// read) is let go as newer ones are kept.
#[derive(Default)]
struct SmallPool {
    classes: [VecDeque<Arc<[u8]>>; SMALL_CLASSES],
}

/// The smallest size class of [`SmallPool`].
const SMALL_MIN: usize = 256;
/// How many size classes [`SmallPool`] has: 256 B to 16 KiB.
const SMALL_CLASSES: usize = 7;
/// The most bytes one class of [`SmallPool`] keeps.
const SMALL_CLASS_BYTES: usize = 64 * 1024;

impl SmallPool {
    /// A buffer of at least `len` bytes that nothing else refers to, its bytes those of an
    /// earlier message, or new and zeroed.
    fn take(&mut self, len: usize) -> Arc<[u8]> {
        let Some(class) = small_class(len) else {
            return std::iter::repeat_n(0, len).collect();
        };
        if let Some(kept) = self.classes.get_mut(class)
            && kept
                .front()
                .is_some_and(|b| Arc::strong_count(b) == 1 && Arc::weak_count(b) == 0)
            && let Some(buf) = kept.pop_front()
        {
            return buf;
        }
        std::iter::repeat_n(0, SMALL_MIN << class).collect()
    }

    /// Keeps `buf` (a small message's, from [`SmallPool::take`]) to hand out again once it is
    /// free.
    fn keep(&mut self, buf: &Arc<[u8]>) {
        let len = buf.len();
        let Some(class) = small_class(len).filter(|&c| SMALL_MIN << c == len) else {
            return;
        };
        let Some(kept) = self.classes.get_mut(class) else {
            return;
        };
        if kept.len() >= (SMALL_CLASS_BYTES / len).max(1) {
            kept.pop_front();
        }
        kept.push_back(Arc::clone(buf));
    }
}

/// The [`SmallPool`] class for `len` bytes, if it has one.
fn small_class(len: usize) -> Option<usize> {
    let size = len.max(SMALL_MIN).checked_next_power_of_two()?;
    let class = (size.trailing_zeros() - SMALL_MIN.trailing_zeros()) as usize;
    (class < SMALL_CLASSES).then_some(class)
}

impl Connection {
    /// Wraps an accepted, non-blocking socket.
    pub(crate) fn new(fd: OwnedFd) -> Connection {
        Connection {
            fd,
            rx: RxBuf::default(),
            large: None,
            header_first: false,
            rx_fds: VecDeque::new(),
            tx_raw: Vec::new(),
            unix_fds: false,
        }
    }

    /// Allows (or not) fds on this connection, once authentication negotiated it.
    ///
    /// # Errors
    /// [`ConnError::FdsNotNegotiated`] if fds are already queued and `enabled` is false.
    pub(crate) fn set_unix_fds(&mut self, enabled: bool) -> Result<(), ConnError> {
        self.unix_fds = enabled;
        if !enabled && !self.rx_fds.is_empty() {
            return Err(ConnError::FdsNotNegotiated);
        }
        Ok(())
    }

    /// Reads once into this connection's buffer, for the authentication phase, where bytes
    /// are not messages yet. Fds are queued without checks until [`Connection::set_unix_fds`].
    ///
    /// # Errors
    /// Socket errors and fd queue overflow.
    pub(crate) fn receive_raw(&mut self, scratch: &mut Scratch) -> Result<Received, ConnError> {
        let (n, full) = recv(
            self.fd.as_fd(),
            &mut scratch.data,
            &mut scratch.control,
            &mut self.rx_fds,
        )?;
        if self.rx_fds.len() > MAX_QUEUED_FDS {
            return Err(ConnError::TooManyFds);
        }
        if let Some(n) = n {
            self.rx.append(scratch.data.get(..n).unwrap_or_default());
        }
        Ok(received(n, full))
    }

    /// The received bytes and the raw output buffer, for the authentication conversation.
    pub(crate) fn auth_io(&mut self) -> (&[u8], &mut Vec<u8>) {
        (self.rx.data(), &mut self.tx_raw)
    }

    /// Drops `n` bytes from the front of the received bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.rx.consume(n);
    }

    /// Queues raw bytes to be written before anything else.
    pub(crate) fn queue_raw(&mut self, bytes: &[u8]) {
        self.tx_raw.extend_from_slice(bytes);
    }

    /// Whether fds arrived that wait for the rest of their message.
    pub(crate) fn has_pending_fds(&self) -> bool {
        !self.rx_fds.is_empty()
    }

    /// Reads once and appends every complete message to `out`. `sender` is the connection's
    /// unique name, once it has one: the name the bus forwards its messages with.
    ///
    /// # Errors
    /// Socket errors, invalid messages, fd misuse: the connection must be closed.
    pub(crate) fn receive(
        &mut self,
        scratch: &mut Scratch,
        out: &mut Vec<Message>,
        limits: &RecvLimits,
        sender: Option<&str>,
    ) -> Result<Received, ConnError> {
        let max_read = limits.max_read.max(FIXED_HEADER_LEN);
        if let Some(large) = &mut self.large {
            let end = large.len.min(large.filled + max_read);
            let Some(buf) = Arc::get_mut(&mut large.buf).and_then(|b| b.get_mut(large.filled..end))
            else {
                // Not reached: the buffer is shared only once the message is complete.
                return Err(ConnError::Io(io::Error::other("receive buffer is shared")));
            };
            let (n, full) = recv(self.fd.as_fd(), buf, &mut scratch.control, &mut self.rx_fds)?;
            large.filled += n.unwrap_or(0);
            let complete = large.filled == large.len;
            self.check_fds()?;
            if let Some(large) = self.large.take_if(|_| complete) {
                let msg =
                    Message::receive_in_place(large.buf, large.len, &mut self.rx_fds, sender)?;
                scratch.pool.keep(msg.buffer());
                push_message(msg, out, limits)?;
                self.header_first = true;
            }
            self.check_pending_fds(limits)?;
            return Ok(received(n, full));
        }
        if self.rx.is_empty() {
            let len = if self.header_first {
                FIXED_HEADER_LEN
            } else {
                scratch.data.len().min(max_read).min(limits.chunk.max(1024))
            };
            let data = scratch.data.get_mut(..len).unwrap_or_default();
            let (n, full) = recv(
                self.fd.as_fd(),
                data,
                &mut scratch.control,
                &mut self.rx_fds,
            )?;
            self.check_fds()?;
            if let Some(n) = n {
                let data = scratch.data.get(..n).unwrap_or_default();
                let used = split_messages(
                    data,
                    &mut self.rx_fds,
                    out,
                    limits,
                    sender,
                    &mut scratch.small,
                )?;
                let rest = data.get(used..).unwrap_or_default();
                self.large = start_large(rest, limits, sender, &mut scratch.pool)?;
                self.header_first = self.large.is_some();
                if self.large.is_none() && !rest.is_empty() {
                    self.rx.append(rest);
                }
                self.check_pending_fds(limits)?;
            }
            return Ok(received(n, full));
        }
        let want = match message_len(self.rx.data(), limits)? {
            Some(total) => total.saturating_sub(self.rx.data().len()),
            None => FIXED_HEADER_LEN.saturating_sub(self.rx.data().len()),
        };
        let read = want.clamp(MIN_READ, MAX_READ).min(max_read);
        let buf = self.rx.spare(read, want);
        let buf_len = buf.len().min(max_read);
        let buf = buf.get_mut(..buf_len).unwrap_or_default();
        let (n, full) = recv(self.fd.as_fd(), buf, &mut scratch.control, &mut self.rx_fds)?;
        self.check_fds()?;
        if let Some(n) = n {
            self.rx.commit(n);
        }
        self.process_buffered(scratch, out, limits, sender)?;
        Ok(received(n, full))
    }

    /// Turns the complete messages already buffered into [`Message`]s (after authentication,
    /// for bytes that came with the handshake).
    ///
    /// # Errors
    /// Invalid messages, messages over the limits, and fd misuse.
    pub(crate) fn process_buffered(
        &mut self,
        scratch: &mut Scratch,
        out: &mut Vec<Message>,
        limits: &RecvLimits,
        sender: Option<&str>,
    ) -> Result<(), ConnError> {
        self.check_fds()?;
        let used = split_messages(
            self.rx.data(),
            &mut self.rx_fds,
            out,
            limits,
            sender,
            &mut scratch.small,
        )?;
        self.rx.consume(used);
        if self.large.is_none() {
            self.large = start_large(self.rx.data(), limits, sender, &mut scratch.pool)?;
            if self.large.is_some() {
                self.header_first = true;
                self.rx.consume(self.rx.data().len());
            }
        }
        self.check_pending_fds(limits)?;
        if self.rx_fds.is_empty() && self.rx_fds.capacity() > 16 {
            self.rx_fds = VecDeque::new();
        }
        Ok(())
    }

    /// Writes the raw bytes, then as much of `queue` as the socket takes.
    ///
    /// # Errors
    /// Socket errors other than "would block".
    pub(crate) fn flush(&mut self, queue: Option<&mut TxQueue>) -> Result<Flushed, ConnError> {
        while !self.tx_raw.is_empty() {
            match rustix::net::send(&self.fd, &self.tx_raw, send_flags()) {
                Ok(n) => {
                    self.tx_raw.drain(..n.min(self.tx_raw.len()));
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(Flushed::Blocked),
                Err(e) => return Err(e.into()),
            }
        }
        self.tx_raw = Vec::new();
        let Some(queue) = queue else {
            return Ok(Flushed::Done);
        };
        while !queue.is_empty() {
            match send_batch(self.fd.as_fd(), queue) {
                Ok(0) => {
                    return Err(ConnError::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "transmit queue holds an empty message",
                    )));
                }
                Ok(n) => queue.consume(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(Flushed::Blocked),
                Err(e) => return Err(e.into()),
            }
        }
        queue.shrink();
        Ok(Flushed::Done)
    }

    /// Fds waiting for a message in progress: more than one message may carry is an error.
    fn check_pending_fds(&self, limits: &RecvLimits) -> Result<(), ConnError> {
        if self.rx_fds.len() > limits.max_message_unix_fds {
            return Err(ConnError::MessageTooManyFds {
                fds: self.rx_fds.len(),
                max: limits.max_message_unix_fds,
            });
        }
        Ok(())
    }

    fn check_fds(&self) -> Result<(), ConnError> {
        if self.rx_fds.is_empty() {
            Ok(())
        } else if !self.unix_fds {
            Err(ConnError::FdsNotNegotiated)
        } else if self.rx_fds.len() > MAX_QUEUED_FDS {
            Err(ConnError::TooManyFds)
        } else {
            Ok(())
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A receive buffer holding at most the tail of the stream that is not a complete message.
///
/// `buf[start..end]` holds the bytes; `buf` is fully initialized so reads can go straight
/// into its spare part, and it is freed whenever it becomes empty.
#[derive(Debug, Default)]
struct RxBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RxBuf {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn data(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    fn append(&mut self, bytes: &[u8]) {
        let spare = self.spare(bytes.len(), 0);
        if let Some(dst) = spare.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.end += bytes.len();
        }
    }

    /// At least `min` writable bytes after the data; compacts or grows as needed.
    ///
    /// `expected` is how many more bytes are known to be coming (the rest of a message): growth
    /// then doubles the buffer, up to that, so a large message costs O(n) copying, while the
    /// memory held never exceeds twice what the peer actually sent.
    fn spare(&mut self, min: usize, expected: usize) -> &mut [u8] {
        if self.buf.len() - self.end < min && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            let grow = min.max(expected.min(self.buf.len()));
            self.buf.resize(self.end + grow, 0);
        }
        self.buf.get_mut(self.end..).unwrap_or_default()
    }

    fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Drops `n` bytes from the front. An empty buffer is freed; a large one holding little
    /// after a burst is shrunk to fit.
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        let len = self.end - self.start;
        if len == 0 {
            *self = RxBuf::default();
        } else if self.buf.len() > SHRINK_ABOVE && len < self.buf.len() / 4 {
            let kept = self.data().to_vec();
            *self = RxBuf {
                buf: kept,
                start: 0,
                end: len,
            };
        }
    }
}

/// Cuts the complete messages off the front of `data`; returns the bytes used.
fn split_messages(
    data: &[u8],
    fds: &mut VecDeque<OwnedFd>,
    out: &mut Vec<Message>,
    limits: &RecvLimits,
    sender: Option<&str>,
    pool: &mut SmallPool,
) -> Result<usize, ConnError> {
    let mut used = 0;
    loop {
        let rest = data.get(used..).unwrap_or_default();
        let Some(len) = message_len(rest, limits)? else {
            return Ok(used);
        };
        let Some(frame) = rest.get(..len) else {
            return Ok(used);
        };
        let msg = Message::receive_with(frame, fds, sender, |n| pool.take(n))?;
        pool.keep(msg.buffer());
        push_message(msg, out, limits)?;
        used += len;
    }
}

/// Hands on a received message, unless it carries more fds than a message may.
fn push_message(
    msg: Message,
    out: &mut Vec<Message>,
    limits: &RecvLimits,
) -> Result<(), ConnError> {
    let n_fds = msg.unix_fds() as usize;
    if n_fds > limits.max_message_unix_fds {
        return Err(ConnError::MessageTooManyFds {
            fds: n_fds,
            max: limits.max_message_unix_fds,
        });
    }
    out.push(msg);
    Ok(())
}

/// When `rest`, the start of an incomplete message, shows a message of [`LARGE_MESSAGE`] to
/// [`MAX_READ`] bytes (and no more than one read may take), a buffer of its own holding
/// `rest`, to read the rest into.
fn start_large(
    rest: &[u8],
    limits: &RecvLimits,
    sender: Option<&str>,
    pool: &mut BufferPool,
) -> Result<Option<LargeRx>, ConnError> {
    let Some(len) = message_len(rest, limits)? else {
        return Ok(None);
    };
    let most = MAX_READ.min(limits.max_read);
    if !(LARGE_MESSAGE..=most).contains(&len) || rest.len() >= len {
        return Ok(None);
    }
    let room = tram_wire::receive_buffer_len(rest, sender)?.unwrap_or(len);
    let mut buf = pool.take(room.max(len));
    match Arc::get_mut(&mut buf).and_then(|b| b.get_mut(..rest.len())) {
        Some(start) => start.copy_from_slice(rest),
        // Not reached: the pool hands out buffers nothing else refers to.
        None => return Ok(None),
    }
    Ok(Some(LargeRx {
        buf,
        len,
        filled: rest.len(),
    }))
}

/// The total length of the message starting `prefix`, once its fixed header is there.
fn message_len(prefix: &[u8], limits: &RecvLimits) -> Result<Option<usize>, ConnError> {
    let len = tram_wire::frame_len(prefix)?;
    if let Some(len) = len {
        if len > MAX_MESSAGE_LEN {
            return Err(WireError::TooLong(len as u64).into());
        }
        if len < FIXED_HEADER_LEN {
            return Err(WireError::Truncated.into());
        }
        if len > limits.max_message_size {
            return Err(ConnError::MessageTooLarge {
                len,
                max: limits.max_message_size,
            });
        }
    }
    Ok(len)
}

fn received(n: Option<usize>, full: bool) -> Received {
    match n {
        None => Received::WouldBlock,
        Some(0) => Received::Eof,
        Some(bytes) => Received::Data {
            bytes,
            more_likely: full,
        },
    }
}

/// One `recvmsg` into `buf`, queueing any fds. Returns the byte count (`None` when it would
/// block) and whether the buffer was filled.
fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control: &mut [MaybeUninit<u8>],
    fds: &mut VecDeque<OwnedFd>,
) -> Result<(Option<usize>, bool), ConnError> {
    let len = buf.len();
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = RecvAncillaryBuffer::new(control);
    let msg = loop {
        match rustix::net::recvmsg(
            fd,
            &mut iov,
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok((None, false)),
            Err(e) => return Err(e.into()),
        }
    };
    for message in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(ConnError::ControlTruncated);
    }
    Ok((Some(msg.bytes), msg.bytes == len))
}

/// One `sendmsg` carrying messages from the front of `queue`: up to the next message with fds,
/// or a message with fds (attached) and those after it up to the next one with fds.
fn send_batch(fd: BorrowedFd<'_>, queue: &TxQueue) -> Result<usize, Errno> {
    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
    let mut n_iov = 0;
    let mut fds: &[OwnedFd] = &[];
    let mut skip = queue.head_written;
    'messages: for (i, msg) in queue.iter().enumerate() {
        if !msg.fds().is_empty() {
            if i > 0 {
                break;
            }
            if skip == 0 {
                fds = msg.fds();
            }
        }
        if n_iov + 2 > MAX_IOVECS {
            break;
        }
        for part in msg.parts() {
            let part = match part.get(skip..) {
                Some(p) => {
                    skip = 0;
                    p
                }
                None => {
                    skip -= part.len();
                    continue;
                }
            };
            if part.is_empty() {
                continue;
            }
            let Some(slot) = iov.get_mut(n_iov) else {
                break 'messages;
            };
            *slot = IoSlice::new(part);
            n_iov += 1;
        }
    }
    let iov = iov.get(..n_iov).unwrap_or_default();
    if iov.is_empty() {
        // Only possible with an empty message, which the bus never queues.
        return Ok(0);
    }
    if fds.is_empty() {
        return rustix::net::sendmsg(fd, iov, &mut SendAncillaryBuffer::default(), send_flags());
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let rights = SendAncillaryMessage::ScmRights(&borrowed);
    let mut space = vec![MaybeUninit::uninit(); rights.size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(rights) {
        return Err(Errno::NOBUFS);
    }
    rustix::net::sendmsg(fd, iov, &mut control, send_flags())
}

fn send_flags() -> SendFlags {
    SendFlags::NOSIGNAL | SendFlags::DONTWAIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_buffer_grows_compacts_and_frees() {
        let mut rx = RxBuf::default();
        assert!(rx.is_empty());
        assert_eq!(rx.buf.capacity(), 0);
        rx.append(b"hello");
        assert_eq!(rx.data(), b"hello");
        rx.consume(2);
        assert_eq!(rx.data(), b"llo");
        // Asking for more room than is left compacts first.
        let len = rx.buf.len();
        rx.spare(len, 0);
        assert_eq!((rx.start, rx.data()), (0, &b"llo"[..]));
        let spare = rx.spare(4, 0);
        spare[..4].copy_from_slice(b", wo");
        rx.commit(4);
        assert_eq!(rx.data(), b"llo, wo");
        rx.consume(7);
        assert!(rx.is_empty());
        assert_eq!(rx.buf.capacity(), 0, "an empty buffer holds no memory");
    }

    #[test]
    fn rx_buffer_shrinks_after_a_burst() {
        let mut rx = RxBuf::default();
        rx.append(&vec![1; 4 * MAX_READ]);
        rx.consume(4 * MAX_READ - 10);
        assert_eq!(rx.data(), &[1; 10]);
        assert_eq!(rx.buf.len(), 10);
        // Most of a small buffer consumed: kept as it is.
        rx.append(&[2; 100]);
        let len = rx.buf.len();
        rx.consume(90);
        assert_eq!(rx.buf.len(), len);
        assert_eq!(rx.data().len(), 20);
    }

    #[test]
    fn rx_buffer_doubles_towards_expected_size() {
        let mut rx = RxBuf::default();
        rx.append(&[7; 16]);
        assert_eq!(rx.buf.len(), 16);
        let mut reallocations = 0;
        let expected = 1 << 20;
        while rx.data().len() < expected {
            let before = rx.buf.len();
            let want = expected - rx.data().len();
            let got = rx
                .spare(want.clamp(MIN_READ, MAX_READ), want)
                .len()
                .min(MIN_READ);
            rx.commit(got);
            if rx.buf.len() != before {
                reallocations += 1;
                let bound = (2 * before).max(before + MAX_READ);
                assert!(
                    rx.buf.len() <= bound,
                    "grows by one read or twofold at most"
                );
            }
        }
        assert!(reallocations < 12, "{reallocations} reallocations");
        assert!(rx.buf.len() <= expected + MAX_READ);
        // Committing more than the buffer holds is clamped.
        rx.commit(usize::MAX / 2);
        assert_eq!(rx.end, rx.buf.len());
    }

    #[test]
    fn received_classification() {
        assert_eq!(received(None, false), Received::WouldBlock);
        assert_eq!(received(Some(0), false), Received::Eof);
        assert_eq!(
            received(Some(3), true),
            Received::Data {
                bytes: 3,
                more_likely: true
            }
        );
    }

    /// A signal with a `body`-byte array, declaring `fds` unix fds.
    fn signal(body: usize, fds: u32) -> Vec<u8> {
        tram_wire::MessageBuilder::signal("/a", "a.b", "C")
            .body("ay", |w| w.byte_array(&vec![7; body]))
            .unix_fds(fds)
            .build(1)
            .as_bytes()
            .to_vec()
    }

    fn pair() -> (std::os::unix::net::UnixStream, Connection) {
        let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, Connection::new(OwnedFd::from(server)))
    }

    const LIMITS: RecvLimits = RecvLimits {
        max_message_size: 1 << 20,
        max_message_unix_fds: 4,
        max_read: 1 << 20,
        chunk: 1 << 20,
    };

    #[test]
    fn messages_at_and_over_max_message_size() {
        use std::io::Write;
        let bytes = signal(100, 0);
        let limits = |max| RecvLimits {
            max_message_size: max,
            ..LIMITS
        };
        let (mut client, mut conn) = pair();
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        client.write_all(&bytes).unwrap();
        conn.receive(&mut scratch, &mut out, &limits(bytes.len()), None)
            .unwrap();
        assert_eq!(out.len(), 1, "a message of exactly the limit passes");
        // One byte over: refused from its fixed header, before the body is buffered.
        let (mut client, mut conn) = pair();
        client.write_all(&bytes[..FIXED_HEADER_LEN]).unwrap();
        let err = conn
            .receive(&mut scratch, &mut out, &limits(bytes.len() - 1), None)
            .unwrap_err();
        assert!(
            matches!(err, ConnError::MessageTooLarge { len, max } if len == bytes.len() && max == bytes.len() - 1),
            "{err}"
        );
    }

    #[test]
    fn reads_are_bounded_by_max_incoming_bytes() {
        use std::io::Write;
        let bytes = signal(64, 0);
        let (mut client, mut conn) = pair();
        client.write_all(&bytes.repeat(4)).unwrap();
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        let limits = RecvLimits {
            max_read: bytes.len(),
            ..LIMITS
        };
        // Each read takes one message's worth, so at most that much waits undispatched.
        for n in 1..=4 {
            conn.receive(&mut scratch, &mut out, &limits, None).unwrap();
            assert_eq!(out.len(), n);
        }
        assert_eq!(
            conn.receive(&mut scratch, &mut out, &limits, None).unwrap(),
            Received::WouldBlock
        );
    }

    #[test]
    fn fds_over_max_message_unix_fds() {
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let send = |client: &std::os::unix::net::UnixStream, bytes: &[u8], n: usize| {
            let fds: Vec<BorrowedFd<'_>> = (0..n).map(|_| devnull.as_fd()).collect();
            let rights = SendAncillaryMessage::ScmRights(&fds);
            let mut space = vec![MaybeUninit::uninit(); rights.size()];
            let mut control = SendAncillaryBuffer::new(&mut space);
            assert!(control.push(rights));
            rustix::net::sendmsg(
                client,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::empty(),
            )
            .unwrap();
        };
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        // Four fds: the limit.
        let (client, mut conn) = pair();
        conn.set_unix_fds(true).unwrap();
        send(&client, &signal(8, 4), 4);
        conn.receive(&mut scratch, &mut out, &LIMITS, None).unwrap();
        assert_eq!((out.len(), out[0].fds().len()), (1, 4));
        // Five: refused, whole or with its body still to come.
        for partial in [false, true] {
            let (client, mut conn) = pair();
            conn.set_unix_fds(true).unwrap();
            let bytes = signal(8, 5);
            let bytes = if partial { &bytes[..20] } else { &bytes[..] };
            send(&client, bytes, 5);
            let err = conn
                .receive(&mut scratch, &mut out, &LIMITS, None)
                .unwrap_err();
            assert!(
                matches!(err, ConnError::MessageTooManyFds { fds: 5, max: 4 }),
                "{err}"
            );
        }
        // Fds waiting for their message are reported, for pending_fd_timeout.
        let (client, mut conn) = pair();
        conn.set_unix_fds(true).unwrap();
        let bytes = signal(8, 1);
        send(&client, &bytes[..20], 1);
        conn.receive(&mut scratch, &mut out, &LIMITS, None).unwrap();
        assert!(conn.has_pending_fds());
        std::io::Write::write_all(&mut &client, &bytes[20..]).unwrap();
        conn.receive(&mut scratch, &mut out, &LIMITS, None).unwrap();
        assert!(!conn.has_pending_fds());
    }

    /// Receives until `n` messages arrived (waiting for the socket with `poll`), and returns
    /// the byte counts of the reads.
    fn receive_n(
        conn: &mut Connection,
        out: &mut Vec<Message>,
        n: usize,
        sender: Option<&str>,
    ) -> Vec<usize> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut scratch = Scratch::new();
        let mut reads = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while out.len() < n {
            assert!(std::time::Instant::now() < deadline, "{} of {n}", out.len());
            match conn.receive(&mut scratch, out, &LIMITS, sender).unwrap() {
                Received::Data { bytes, .. } => reads.push(bytes),
                Received::WouldBlock => {
                    let mut fds = [PollFd::new(conn, PollFlags::IN)];
                    let timeout = Timespec {
                        tv_sec: 1,
                        tv_nsec: 0,
                    };
                    poll(&mut fds, Some(&timeout)).unwrap();
                }
                Received::Eof => panic!("end of file after {} messages", out.len()),
            }
        }
        reads
    }

    #[test]
    fn large_messages_are_read_into_their_own_buffers() {
        let sizes = [100, 40_000, 70_000, 50, 20, 300_000, LARGE_MESSAGE, 10];
        let messages: Vec<Vec<u8>> = sizes.iter().map(|&n| signal(n, 0)).collect();
        let stream = messages.concat();
        let (client, mut conn) = pair();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            (&client).write_all(&stream).unwrap();
            client
        });
        let mut out = Vec::new();
        let reads = receive_n(&mut conn, &mut out, messages.len(), Some(":1.5"));
        let _client = writer.join().unwrap();
        for (msg, bytes) in out.iter().zip(&messages) {
            assert_eq!(msg.as_bytes(), &bytes[..]);
            let forwarded = msg.stamp_sender(":1.5").parts().concat();
            let again = Message::parse(forwarded.into(), Vec::new()).unwrap();
            assert_eq!(again.sender(), Some(":1.5"));
            assert_eq!(again.body(), msg.body());
        }
        // After a large message, the next fixed header is read on its own (or what there is
        // of it, when the writer is behind).
        let headers = reads.iter().filter(|&&n| n <= FIXED_HEADER_LEN).count();
        assert!(headers >= 3, "{reads:?}");
        assert!(conn.large.is_none() && conn.rx.is_empty());
        // No read took more than the large messages' own lengths plus what the shared buffer
        // holds: they were not gathered in the connection's buffer.
        assert!(reads.iter().all(|&n| n <= 300_100), "{reads:?}");
    }

    #[test]
    fn large_messages_arriving_in_pieces_with_fds() {
        use std::io::Write;
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let bytes = signal(50_000, 1);
        let (client, mut conn) = pair();
        conn.set_unix_fds(true).unwrap();
        // The fds come with the second piece, in the middle of the message.
        client
            .try_clone()
            .unwrap()
            .write_all(&bytes[..100])
            .unwrap();
        let fds = [devnull.as_fd()];
        let rights = SendAncillaryMessage::ScmRights(&fds);
        let mut space = vec![MaybeUninit::uninit(); rights.size()];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(rights));
        rustix::net::sendmsg(
            &client,
            &[IoSlice::new(&bytes[100..30_000])],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        while conn.large.is_none() || !conn.has_pending_fds() {
            conn.receive(&mut scratch, &mut out, &LIMITS, None).unwrap();
        }
        assert!(out.is_empty());
        let writer = std::thread::spawn(move || {
            (&client).write_all(&bytes[30_000..]).unwrap();
            (client, bytes)
        });
        receive_n(&mut conn, &mut out, 1, None);
        let (_client, bytes) = writer.join().unwrap();
        assert_eq!(out[0].as_bytes(), &bytes[..]);
        assert_eq!(out[0].fds().len(), 1);
        assert!(!conn.has_pending_fds());
    }

    #[test]
    fn large_buffers_are_reused_once_free() {
        let mut pool = BufferPool::default();
        let a = pool.take(100_000);
        assert_eq!(a.len(), 100_000);
        pool.keep(&a);
        // In use: not handed out again.
        let b = pool.take(100_000);
        assert!(!Arc::ptr_eq(&a, &b));
        pool.keep(&b);
        let a_ptr = Arc::as_ptr(&a);
        drop(a);
        // Free, and of a fitting size: reused, taken out of the pool.
        let c = pool.take(60_000);
        assert_eq!(Arc::as_ptr(&c), a_ptr);
        assert_eq!(pool.bufs.len(), 1);
        // Too large for the message (more than twice its length): a new one.
        let small = pool.take(1_000);
        assert_eq!(small.len(), 1_000);
        // Never more than POOL_BYTES kept: free buffers make room, busy ones do not.
        drop(b);
        for _ in 0..20 {
            let big = pool.take(300_000);
            pool.keep(&big);
        }
        let kept: usize = pool.bufs.iter().map(|b| b.len()).sum();
        assert!(kept <= POOL_BYTES, "{kept}");
        let busy: Vec<_> = (0..4).map(|_| pool.take(300_000)).collect();
        for b in &busy {
            pool.keep(b);
        }
        let kept: usize = pool.bufs.iter().map(|b| b.len()).sum();
        assert!(kept <= POOL_BYTES, "{kept}");
        let huge = pool.take(POOL_BYTES + 1);
        pool.keep(&huge);
        assert!(!pool.bufs.iter().any(|b| Arc::ptr_eq(b, &huge)));
        drop(c);
    }

    #[test]
    fn small_buffers_are_reused_oldest_first_once_free() {
        assert_eq!(small_class(0), Some(0));
        assert_eq!(small_class(256), Some(0));
        assert_eq!(small_class(257), Some(1));
        assert_eq!(small_class(LARGE_MESSAGE), Some(SMALL_CLASSES - 1));
        assert_eq!(small_class(LARGE_MESSAGE + 1), None);
        assert_eq!(small_class(usize::MAX), None);

        let mut pool = SmallPool::default();
        let a = pool.take(100);
        assert_eq!(a.len(), SMALL_MIN);
        pool.keep(&a);
        let b = pool.take(200);
        pool.keep(&b);
        // The oldest is still in use: a new buffer.
        let c = pool.take(200);
        assert!(!Arc::ptr_eq(&a, &c) && !Arc::ptr_eq(&b, &c));
        // Free again: handed out, and no longer kept until kept again.
        let a_ptr = Arc::as_ptr(&a);
        drop(a);
        let d = pool.take(150);
        assert_eq!(Arc::as_ptr(&d), a_ptr);
        assert_eq!(pool.classes[0].len(), 1);
        // Too large for any class: exactly the length asked, never kept.
        let big = pool.take(LARGE_MESSAGE + 1);
        assert_eq!(big.len(), LARGE_MESSAGE + 1);
        pool.keep(&big);
        assert!(
            pool.classes
                .iter()
                .all(|c| c.iter().all(|b| b.len() != big.len()))
        );
        // A class keeps at most SMALL_CLASS_BYTES, letting the oldest go.
        let held: Vec<_> = (0..100)
            .map(|_| {
                let buf = pool.take(4000);
                pool.keep(&buf);
                buf
            })
            .collect();
        assert_eq!(held.len(), 100);
        assert_eq!(pool.classes[4].len(), SMALL_CLASS_BYTES / 4096);
        // Freed buffers come back one at a time, oldest first.
        drop(held);
        let reused = pool.take(4000);
        assert_eq!(pool.classes[4].len(), SMALL_CLASS_BYTES / 4096 - 1);
        assert_eq!(reused.len(), 4096);
    }
}
