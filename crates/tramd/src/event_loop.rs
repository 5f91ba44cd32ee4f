//! The event loop: one thread, one epoll set, every socket non-blocking.
//!
//! The epoll set holds the signalfd, the listeners and every connection, level-triggered.
//! Each turn waits until the earliest of the bus's timer, the oldest connection deadline and a
//! paused accept is due, then handles the ready sources:
//!
//! * a listener accepts until it would block (at most [`ACCEPT_BUDGET`] per turn), takes each
//!   connection's credentials, and starts its authentication. As in dbus-daemon, a connection
//!   is *incomplete* until the bus gave it a unique name (Hello): it must get there within
//!   `auth_timeout`, and beyond `max_incomplete_connections` the oldest incomplete one is
//!   dropped;
//! * a connection reads at most [`READ_BUDGET`] times per turn; while it authenticates the bytes
//!   feed its SASL state machine, afterwards they are cut into messages handed to the bus one
//!   by one;
//! * after every input to the bus the loop drains [`Bus::poll_action`] (closing the peers the
//!   bus dropped) and collects [`Bus::take_dirty`]; at the end of the turn every dirty peer is
//!   flushed, so a peer receiving many messages in one turn gets them in few `sendmsg` calls.
//!
//! Write interest is registered only while a connection has bytes it could not write, and is
//! recomputed from that state after every flush. A connection closed during a turn is removed
//! at once; its slot's generation changes, so a stale event for it in the same batch is ignored.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use rustix::time::Timespec;
use tram_bus::{Action, Bus, Credentials, PeerId};
use tram_wire::Message;

use crate::config::Limits;
use crate::connection::{Connection, Flushed, Received, Scratch};
use crate::creds;
use crate::listener::Listener;
use crate::log::{self, Level, PeerLabel};
use crate::sasl::{Outcome, Progress, Sasl, SaslServer};
use crate::signals::Signals;

/// The most connections one listener accepts per turn.
pub(crate) const ACCEPT_BUDGET: usize = 64;
/// The most reads from one connection per turn.
pub(crate) const READ_BUDGET: usize = 16;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How many epoll events one wait returns at most.
const EVENTS_PER_WAIT: usize = 256;

/// The daemon's event loop and everything it owns.
pub(crate) struct EventLoop {
    epoll: OwnedFd,
    signals: Signals,
    listeners: Vec<Listener>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Indexed by [`PeerId::index`]: the peer and its connection slot.
    peers: Vec<Option<(PeerId, u32)>>,
    /// Deadlines of incomplete connections in accept order (so in deadline order); entries of
    /// connections that completed or closed are skipped when they come up.
    deadlines: VecDeque<(Instant, u32, u32)>,
    /// Connections without a unique name yet: authenticating, or authenticated before Hello.
    incomplete: usize,
    /// Authenticated connections (peers of the bus).
    authenticated: usize,
    accept_paused_until: Option<Instant>,
    bus: Bus,
    sasl: SaslServer,
    limits: Limits,
    scratch: Scratch,
    inbox: Vec<Message>,
    dirty: Vec<PeerId>,
}

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// SIGTERM or SIGINT.
    Signal(i32),
}

impl EventLoop {
    /// Sets up the epoll set for `listeners` and `signals`.
    ///
    /// # Errors
    /// Creating the epoll set or registering a source failed.
    pub(crate) fn new(
        bus: Bus,
        listeners: Vec<Listener>,
        signals: Signals,
        sasl: SaslServer,
        limits: Limits,
    ) -> io::Result<EventLoop> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &signals,
            EventData::new_u64(Token::Signals.encode()),
            EventFlags::IN,
        )?;
        for (i, listener) in listeners.iter().enumerate() {
            let token = Token::Listener(u32::try_from(i).unwrap_or(u32::MAX)).encode();
            epoll::add(&epoll, listener, EventData::new_u64(token), EventFlags::IN)?;
        }
        Ok(EventLoop {
            epoll,
            signals,
            listeners,
            slots: Vec::new(),
            free_slots: Vec::new(),
            peers: Vec::new(),
            deadlines: VecDeque::new(),
            incomplete: 0,
            authenticated: 0,
            accept_paused_until: None,
            bus,
            sasl,
            limits,
            scratch: Scratch::new(),
            inbox: Vec::new(),
            dirty: Vec::new(),
        })
    }

    /// Runs until SIGTERM or SIGINT.
    ///
    /// # Errors
    /// `epoll_wait` or the signalfd failed.
    pub(crate) fn run(&mut self) -> io::Result<Exit> {
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            let timeout = self.next_deadline().map(|deadline| {
                let wait = deadline.saturating_duration_since(Instant::now());
                Timespec::try_from(wait).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                })
            });
            events.clear();
            match epoll::wait(&self.epoll, spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            for event in &events {
                let (flags, data) = (event.flags, event.data);
                match Token::decode(data.u64()) {
                    Some(Token::Signals) => {
                        if let Some(exit) = self.handle_signals()? {
                            return Ok(exit);
                        }
                    }
                    Some(Token::Listener(index)) => self.accept(index, now),
                    Some(Token::Connection { slot, generation }) => {
                        self.connection_event(slot, generation, flags, now);
                    }
                    None => {}
                }
            }
            self.handle_timers(now);
            self.flush_dirty(now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.bus.poll_timeout(),
            self.deadlines.front().map(|&(deadline, ..)| deadline),
            self.accept_paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_signals(&mut self) -> io::Result<Option<Exit>> {
        while let Some(signal) = self.signals.next()? {
            if signal == libc::SIGHUP {
                log::warning!("configuration reload is not supported yet; ignoring SIGHUP");
            } else {
                log::debug!("exiting on signal {signal}");
                return Ok(Some(Exit::Signal(signal)));
            }
        }
        Ok(None)
    }

    fn accept(&mut self, index: u32, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get(index as usize) else {
                return;
            };
            match rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(fd) => self.add_connection(fd, now),
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR | Errno::CONNABORTED | Errno::PROTO) => {}
                Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)) => {
                    log::warning!(
                        "cannot accept connections on {}: {}; pausing",
                        listener.address(),
                        io::Error::from(e)
                    );
                    self.pause_accepting(now);
                    return;
                }
                Err(e) => {
                    log::warning!(
                        "accepting on {} failed: {}",
                        listener.address(),
                        io::Error::from(e)
                    );
                    return;
                }
            }
        }
    }

    fn pause_accepting(&mut self, now: Instant) {
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
        self.set_listener_interest(EventFlags::empty());
    }

    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        self.set_listener_interest(EventFlags::IN);
    }

    fn set_listener_interest(&self, interest: EventFlags) {
        for (i, listener) in self.listeners.iter().enumerate() {
            let token = Token::Listener(u32::try_from(i).unwrap_or(u32::MAX)).encode();
            if let Err(e) =
                epoll::modify(&self.epoll, listener, EventData::new_u64(token), interest)
            {
                log::warning!("cannot update epoll interest: {}", io::Error::from(e));
            }
        }
    }

    fn add_connection(&mut self, fd: OwnedFd, now: Instant) {
        let creds = match creds::peer_credentials(fd.as_fd()) {
            Ok(creds) => creds,
            Err(e) => {
                log::warning!("dropping a new connection: cannot read its credentials: {e}");
                return;
            }
        };
        if self.incomplete >= self.limits.max_incomplete_connections {
            self.drop_oldest_incomplete(now);
        }
        let deadline = now + self.limits.auth_timeout;
        let (pid, uid) = (creds.pid, creds.uid);
        let conn = Conn {
            io: Connection::new(fd),
            phase: Phase::Auth(Box::new(Auth {
                sasl: Sasl::new(creds.uid, true),
                creds,
            })),
            interest: EventFlags::IN,
            pid,
            uid,
            name: None,
        };
        let (slot, generation) = self.insert(conn);
        let token = Token::Connection { slot, generation }.encode();
        let registered = match self.conn(slot) {
            Some(conn) => epoll::add(
                &self.epoll,
                &conn.io,
                EventData::new_u64(token),
                EventFlags::IN,
            ),
            None => return,
        };
        if let Err(e) = registered {
            log::warning!("dropping a new connection: {}", io::Error::from(e));
            self.remove(slot);
            return;
        }
        self.incomplete += 1;
        self.deadlines.push_back((deadline, slot, generation));
        if let Some(conn) = self.conn(slot) {
            log::debug!("new {}", conn.label(None));
        }
    }

    fn drop_oldest_incomplete(&mut self, now: Instant) {
        while let Some((_, slot, generation)) = self.deadlines.pop_front() {
            if self.is_incomplete(slot, generation) {
                let reason = format!(
                    "too many incomplete connections (max_incomplete_connections={}), \
                     this is the oldest",
                    self.limits.max_incomplete_connections
                );
                self.close(slot, now, Level::Warning, &reason);
                return;
            }
        }
    }

    fn connection_event(&mut self, slot: u32, generation: u32, flags: EventFlags, now: Instant) {
        if !self.is_live(slot, generation) {
            return;
        }
        if flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR) {
            self.readable(slot, now);
        }
        if flags.contains(EventFlags::OUT) && self.is_live(slot, generation) {
            self.flush(slot, now);
        }
    }

    fn readable(&mut self, slot: u32, now: Instant) {
        match self.conn(slot).map(|c| c.peer()) {
            Some(None) => self.read_authenticating(slot, now),
            Some(Some(peer)) => self.read_peer(slot, peer, now),
            None => {}
        }
    }

    fn read_authenticating(&mut self, slot: u32, now: Instant) {
        for _ in 0..READ_BUDGET {
            let Some(conn) = slot_conn(&mut self.slots, slot) else {
                return;
            };
            let more_likely = match conn.io.receive_raw(&mut self.scratch) {
                Ok(Received::Data { more_likely }) => more_likely,
                Ok(Received::WouldBlock) => return,
                Ok(Received::Eof) => {
                    log::debug!("{} closed during authentication", conn.label(None));
                    self.remove(slot);
                    return;
                }
                Err(e) => {
                    log::debug!("{} failed during authentication: {e}", conn.label(None));
                    self.remove(slot);
                    return;
                }
            };
            let Phase::Auth(auth) = &mut conn.phase else {
                return;
            };
            let (input, output) = conn.io.auth_io();
            let progress = auth.sasl.feed(&self.sasl, input, output);
            match progress {
                Progress::Continue { consumed } => {
                    conn.io.consume(consumed);
                    self.flush(slot, now);
                    // A client that does not read its replies is not read from either.
                    if !self
                        .conn(slot)
                        .is_some_and(|c| c.interest.contains(EventFlags::IN))
                    {
                        return;
                    }
                }
                Progress::Authenticated { consumed, outcome } => {
                    conn.io.consume(consumed);
                    self.complete_authentication(slot, outcome, now);
                    if let Some(Some(peer)) = self.conn(slot).map(|c| c.peer()) {
                        self.read_peer(slot, peer, now);
                    }
                    return;
                }
                Progress::Failed(failure) => {
                    // Best effort: the last reply (e.g. REJECTED) before closing.
                    let _ = conn.io.flush(None);
                    log::warning!("refusing {}: {failure}", conn.label(None));
                    self.remove(slot);
                    return;
                }
            }
            if !more_likely {
                return;
            }
        }
    }

    fn complete_authentication(&mut self, slot: u32, outcome: Outcome, now: Instant) {
        if self.authenticated >= self.limits.max_completed_connections {
            if let Some(conn) = self.conn(slot) {
                log::warning!(
                    "refusing {}: too many connections (max_completed_connections={})",
                    conn.label(None),
                    self.limits.max_completed_connections
                );
            }
            self.remove(slot);
            return;
        }
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let mut creds = match &mut conn.phase {
            Phase::Auth(auth) => std::mem::take(&mut auth.creds),
            Phase::Peer(_) => return,
        };
        creds.anonymous = outcome.anonymous;
        if let Err(e) = conn.io.set_unix_fds(outcome.unix_fds) {
            log::warning!("disconnecting {}: {e}", conn.label(None));
            self.remove(slot);
            return;
        }
        if outcome.anonymous {
            log::debug!("{} authenticated anonymously", conn.label(None));
        }
        let peer = self.bus.connect(now, creds, outcome.unix_fds);
        let index = peer.index() as usize;
        if self.peers.len() <= index {
            self.peers.resize(index + 1, None);
        }
        if let Some(entry) = self.peers.get_mut(index) {
            *entry = Some((peer, slot));
        }
        if let Some(conn) = self.conn_mut(slot) {
            conn.phase = Phase::Peer(peer);
        }
        self.authenticated += 1;
        self.remember_name(slot, peer);
        self.drain_bus();
        // The last authentication replies, unless the bus already dropped the peer.
        self.flush(slot, now);
        // Messages that came with the handshake.
        let result = match slot_conn(&mut self.slots, slot) {
            Some(conn) => conn.io.process_buffered(&mut self.inbox),
            None => return,
        };
        if self.deliver(slot, peer, now) {
            if let Err(e) = result {
                self.close(slot, now, Level::Warning, &e);
            }
        }
    }

    fn read_peer(&mut self, slot: u32, peer: PeerId, now: Instant) {
        for _ in 0..READ_BUDGET {
            let Some(conn) = slot_conn(&mut self.slots, slot) else {
                return;
            };
            let result = conn.io.receive(&mut self.scratch, &mut self.inbox);
            // Messages read before an error are valid and delivered first.
            if !self.deliver(slot, peer, now) {
                return;
            }
            match result {
                Ok(Received::Data { more_likely: true }) => {}
                Ok(Received::Data { more_likely: false } | Received::WouldBlock) => return,
                Ok(Received::Eof) => {
                    self.close(slot, now, Level::Debug, &"hung up");
                    return;
                }
                Err(e @ crate::connection::ConnError::Io(_)) => {
                    self.close(slot, now, Level::Debug, &e);
                    return;
                }
                Err(e) => {
                    self.close(slot, now, Level::Warning, &e);
                    return;
                }
            }
        }
    }

    /// Hands the messages in the inbox to the bus; false if the peer is gone afterwards.
    fn deliver(&mut self, slot: u32, peer: PeerId, now: Instant) -> bool {
        let mut inbox = std::mem::take(&mut self.inbox);
        let mut alive = true;
        for msg in inbox.drain(..) {
            if !alive {
                continue;
            }
            self.bus.handle_message(now, peer, msg);
            self.drain_bus();
            alive = self.peer_slot(peer) == Some(slot);
            if alive {
                self.remember_name(slot, peer);
            }
        }
        self.inbox = inbox;
        alive && self.peer_slot(peer) == Some(slot)
    }

    /// Records the peer's unique name once it has one: the connection is then complete.
    fn remember_name(&mut self, slot: u32, peer: PeerId) {
        if self.conn(slot).is_some_and(|c| c.name.is_none()) {
            let Some(name) = self.bus.unique_name(peer).map(Box::<str>::from) else {
                return;
            };
            if let Some(conn) = slot_conn(&mut self.slots, slot) {
                conn.name = Some(name);
                self.incomplete -= 1;
            }
        }
    }

    /// Drains the bus's actions and collects its dirty peers (after every input).
    fn drain_bus(&mut self) {
        while let Some(action) = self.bus.poll_action() {
            match action {
                Action::Disconnect { peer, reason } => {
                    if let Some(slot) = self.peer_slot(peer) {
                        if let Some(conn) = self.conn(slot) {
                            log::warning!("disconnecting {}: {reason}", conn.label(None));
                        }
                        self.remove(slot);
                    }
                }
                Action::Reload(token) => {
                    // Built-in defaults are all tramd reads so far: reloading keeps them.
                    let config = self.bus.config().clone();
                    self.bus.finish_reload(token, Ok(config));
                }
                other => log::warning!("ignoring unsupported bus action {other:?}"),
            }
        }
        self.bus.take_dirty(&mut self.dirty);
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        while !dirty.is_empty() {
            for peer in dirty.drain(..) {
                if let Some(slot) = self.peer_slot(peer) {
                    self.flush(slot, now);
                }
            }
            // Disconnects while flushing may have queued more.
            std::mem::swap(&mut dirty, &mut self.dirty);
        }
        self.dirty = dirty;
    }

    /// Writes what `slot` has pending and sets its epoll interest accordingly: write interest
    /// while bytes are left; while authenticating, no read interest until the replies are out.
    fn flush(&mut self, slot: u32, now: Instant) {
        let Some(conn) = slot_conn(&mut self.slots, slot) else {
            return;
        };
        let (queue, blocked) = match conn.phase {
            Phase::Peer(peer) => (self.bus.tx_queue(peer), EventFlags::IN | EventFlags::OUT),
            Phase::Auth(_) => (None, EventFlags::OUT),
        };
        match conn.io.flush(queue) {
            Ok(Flushed::Done) => self.set_interest(slot, EventFlags::IN),
            Ok(Flushed::Blocked) => self.set_interest(slot, blocked),
            Err(e) => self.close(slot, now, Level::Debug, &e),
        }
    }

    fn set_interest(&mut self, slot: u32, interest: EventFlags) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let generation = s.generation;
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        if conn.interest == interest {
            return;
        }
        let token = Token::Connection { slot, generation }.encode();
        match epoll::modify(&self.epoll, &conn.io, EventData::new_u64(token), interest) {
            Ok(()) => conn.interest = interest,
            Err(e) => log::warning!("cannot update epoll interest: {}", io::Error::from(e)),
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        if self.bus.poll_timeout().is_some_and(|t| t <= now) {
            self.bus.handle_timeout(now);
            self.drain_bus();
        }
        while let Some(&(deadline, slot, generation)) = self.deadlines.front() {
            if self.is_incomplete(slot, generation) {
                if deadline > now {
                    break;
                }
                let reason = format!(
                    "no Hello within {} s of connecting (auth_timeout)",
                    self.limits.auth_timeout.as_secs()
                );
                self.close(slot, now, Level::Warning, &reason);
            }
            self.deadlines.pop_front();
        }
        // Entries of connections that completed are dropped when they reach the front; keep
        // the queue from growing far beyond the live ones in the meantime.
        if self.deadlines.len() > 2 * self.incomplete + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|&(_, slot, generation)| {
                slots.get(slot as usize).is_some_and(|s| {
                    s.generation == generation && s.conn.as_ref().is_some_and(|c| c.name.is_none())
                })
            });
        }
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.resume_accepting();
        }
    }

    /// Closes a connection for `reason` (logged at `level`), telling the bus if it is a peer.
    fn close(&mut self, slot: u32, now: Instant, level: Level, reason: &dyn fmt::Display) {
        let Some(conn) = self.conn(slot) else {
            return;
        };
        let peer = conn.peer();
        let label = conn.label(self.name_of(peer));
        let what = if level == Level::Debug {
            "closing"
        } else {
            "disconnecting"
        };
        log::write(level, format_args!("{what} {label}: {reason}"));
        self.remove(slot);
        if let Some(peer) = peer {
            self.bus.disconnect(now, peer);
            self.drain_bus();
        }
    }

    fn name_of(&self, peer: Option<PeerId>) -> Option<&str> {
        peer.and_then(|p| self.bus.unique_name(p))
    }

    fn insert(&mut self, conn: Conn) -> (u32, u32) {
        if let Some(slot) = self.free_slots.pop() {
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.conn = Some(conn);
                return (slot, s.generation);
            }
        }
        let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            conn: Some(conn),
        });
        (slot, 0)
    }

    /// Forgets a connection and closes its socket. The bus is not told.
    fn remove(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(conn) = s.conn.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1) & Token::GENERATION_MASK;
        self.free_slots.push(slot);
        if conn.name.is_none() {
            self.incomplete -= 1;
        }
        if let Phase::Peer(peer) = conn.phase {
            if let Some(entry) = self.peers.get_mut(peer.index() as usize) {
                *entry = None;
            }
            self.authenticated -= 1;
        }
        let _ = epoll::delete(&self.epoll, &conn.io);
    }

    fn conn(&self, slot: u32) -> Option<&Conn> {
        self.slots.get(slot as usize)?.conn.as_ref()
    }

    fn conn_mut(&mut self, slot: u32) -> Option<&mut Conn> {
        self.slots.get_mut(slot as usize)?.conn.as_mut()
    }

    fn is_live(&self, slot: u32, generation: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.generation == generation && s.conn.is_some())
    }

    /// Whether the connection is live and has no unique name yet.
    fn is_incomplete(&self, slot: u32, generation: u32) -> bool {
        self.is_live(slot, generation) && self.conn(slot).is_some_and(|c| c.name.is_none())
    }

    fn peer_slot(&self, peer: PeerId) -> Option<u32> {
        match self.peers.get(peer.index() as usize) {
            Some(Some((p, slot))) if *p == peer => Some(*slot),
            _ => None,
        }
    }
}

/// One slab entry; the generation changes whenever the slot is freed.
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// A connection and where it is in its life.
struct Conn {
    io: Connection,
    phase: Phase,
    /// The epoll interest currently registered.
    interest: EventFlags,
    pid: Option<u32>,
    uid: u32,
    /// The unique name, once the bus assigned one (for logs after the bus forgot the peer).
    name: Option<Box<str>>,
}

enum Phase {
    Auth(Box<Auth>),
    Peer(PeerId),
}

struct Auth {
    sasl: Sasl,
    creds: Credentials,
}

impl Conn {
    fn peer(&self) -> Option<PeerId> {
        match self.phase {
            Phase::Peer(peer) => Some(peer),
            Phase::Auth(_) => None,
        }
    }

    fn label<'a>(&'a self, name: Option<&'a str>) -> PeerLabel<'a> {
        PeerLabel {
            name: name.or(self.name.as_deref()),
            pid: self.pid,
            uid: self.uid,
        }
    }
}

/// What an epoll event is about, packed in its 64-bit user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Signals,
    Listener(u32),
    Connection { slot: u32, generation: u32 },
}

impl Token {
    const KIND_SHIFT: u32 = 62;
    const GENERATION_MASK: u32 = (1 << 30) - 1;

    fn encode(self) -> u64 {
        match self {
            Token::Signals => 0,
            Token::Listener(index) => 1 << Self::KIND_SHIFT | u64::from(index),
            Token::Connection { slot, generation } => {
                2 << Self::KIND_SHIFT
                    | u64::from(generation & Self::GENERATION_MASK) << 32
                    | u64::from(slot)
            }
        }
    }

    fn decode(data: u64) -> Option<Token> {
        let low = (data & u64::from(u32::MAX)) as u32;
        match data >> Self::KIND_SHIFT {
            0 => Some(Token::Signals),
            1 => Some(Token::Listener(low)),
            2 => Some(Token::Connection {
                slot: low,
                generation: ((data >> 32) as u32) & Self::GENERATION_MASK,
            }),
            _ => None,
        }
    }
}

/// The connection in `slot`, borrowing only the slab (so other fields stay usable).
fn slot_conn(slots: &mut [Slot], slot: u32) -> Option<&mut Conn> {
    slots.get_mut(slot as usize)?.conn.as_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let tokens = [
            Token::Signals,
            Token::Listener(0),
            Token::Listener(u32::MAX),
            Token::Connection {
                slot: 0,
                generation: 0,
            },
            Token::Connection {
                slot: u32::MAX,
                generation: Token::GENERATION_MASK,
            },
            Token::Connection {
                slot: 7,
                generation: 12345,
            },
        ];
        for token in tokens {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
        assert_eq!(Token::decode(3 << 62), None);
    }
}
