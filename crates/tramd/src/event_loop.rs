//! The event loop: one thread, one epoll set, every socket non-blocking.
//!
//! The epoll set holds the signalfd, the listeners and every connection, level-triggered.
//! Each turn waits until the earliest of the bus's timer, the oldest connection deadline and a
//! paused accept is due, then handles the ready sources:
//!
//! * a listener accepts one connection, and more only while a poll shows them waiting (at
//!   most [`ACCEPT_BUDGET`] per turn; an accept that finds none costs as much as one that
//!   does), takes each unix connection's credentials (TCP has none), reads what it already
//!   sent, and starts its authentication. As in dbus-daemon, a connection is *incomplete*
//!   until the bus gave it a unique name (Hello): it must get there within `auth_timeout`, and
//!   beyond `max_incomplete_connections` the oldest incomplete one is dropped;
//! * a connection reads at most [`READ_BUDGET`] times and [`TURN_BYTES`] bytes per turn, so
//!   that one sending as fast as it can does not hold up the others. One that used its share
//!   with more waiting is *backlogged*. While a connection's messages go to the bus, every
//!   [`CHECK_INTERVAL`] the loop looks for connections that became ready meanwhile and are not
//!   backlogged, serves them at once and flushes what they caused, so a quiet client's call
//!   waits for a slice of a flooder's work rather than a whole turn; on a `nonce-tcp:`
//!   listener the first 16 bytes must be the nonce, or the connection is dropped; while it
//!   authenticates the bytes feed its SASL state machine, afterwards they are cut into messages
//!   handed to the bus one by one;
//! * at `BEGIN` the connection is admitted as dbus-daemon admits it: an ANONYMOUS client only
//!   with `<allow_anonymous/>`, anyone else only if [`Bus::admits`] its user (the policy's
//!   `user`/`group` rules); a refused client, which saw `OK`, is disconnected before anything
//!   it sent is read;
//! * a Hello beyond `max_completed_connections`, or beyond `max_connections_per_user` for its
//!   uid, is answered with `LimitsExceeded` and logged, as dbus-daemon does; the connection
//!   stays incomplete (and so goes at `auth_timeout`);
//! * fds that arrive ahead of the rest of their message may wait `pending_fd_timeout`; after
//!   that their connection is dropped;
//! * SIGHUP, or a peer's ReloadConfig ([`Action::Reload`]), reloads the configuration through
//!   the daemon's [`Reloader`]: on success the bus and the loop take the new policy and limits
//!   together and the service directories are read again, on failure nothing changes and the
//!   error is logged (and answered to the peer). The service manager is told `RELOADING=1`
//!   before and `READY=1` after, either way;
//! * the service directories are watched ([`DirWatcher`]): a change in one reads them all again
//!   and hands the bus the new set of services ([`Bus::set_services`]);
//! * [`Action::Activate`] starts a service with the [`Launcher`]; a program that cannot be
//!   executed fails the activation at once. SIGCHLD reaps the services that exited: one that
//!   ended with an error or a signal while its name was still being activated fails the
//!   activation with `Spawn.ChildExited` or `Spawn.ChildSignaled`, as dbus-daemon does (a clean
//!   exit leaves the decision to `service_start_timeout`). With a launch helper (a system bus
//!   that dropped root) the helper's socket is in the epoll set too: a start handed to it is
//!   answered later, and its failures and its services' exits fail the activation the same way;
////! * under systemd ([`Notifier`]) the loop reports `READY=1` when it starts, `STATUS=` lines,
//!   `STOPPING=1` when it stops, and `WATCHDOG=1` at half the watchdog timeout;
//! * after every input to the bus the loop drains [`Bus::poll_action`] (closing the peers the
//!   bus dropped); at the end of the turn it takes the peers with something to write
//!   ([`Bus::take_dirty`]) and flushes each once, so a peer receiving many messages in one turn
//!   gets them in few `sendmsg` calls (a mid-turn check flushes only what the quiet connections
//!   it served queued for peers that are not backlogged).
//!
//! Write interest is registered only while a connection has bytes it could not write, and is
//! recomputed from that state after every flush. A connection closed during a turn is removed
//! at once; its slot's generation changes, so a stale event for it in the same batch is ignored.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use rustix::time::Timespec;
use tram_bus::{Action, ActivationRequest, Bus, BusConfig, Credentials, PeerId, ReloadToken};
use tram_config::ServiceDir;
use tram_sasl::{Outcome, Progress, Sasl, SaslServer};
use tram_wire::{Message, MessageBuilder, MessageType};

use crate::config::Limits;
use crate::connection::{Connection, Flushed, Received, RecvLimits, Scratch};
use crate::creds;
use crate::inotify::DirWatcher;
use crate::launch_helper::Helper;
use crate::launcher::{self, Event, LaunchMode, LaunchSpec, Launcher, Start};
use crate::listener::{Listener, NONCE_LEN, NonceFile, Transport};
use crate::log::{self, Level, PeerLabel};
use crate::notify::Notifier;
use crate::services;
use crate::signals::Signals;

/// The most connections one listener accepts per turn.
pub(crate) const ACCEPT_BUDGET: usize = 64;
/// The most reads from one connection per turn.
pub(crate) const READ_BUDGET: usize = 16;
/// After reading this many bytes from one connection in a turn, the loop reads no more from it
/// until the next turn: a connection sending as fast as it can delays the others' messages by
/// no more than the time the bus takes to handle this much.
pub(crate) const TURN_BYTES: usize = 16 * 1024;
/// How often, at most, a busy connection's messages pause for the quiet connections that
/// became ready meanwhile ([`EventLoop::check_waiting`]).
const CHECK_INTERVAL: Duration = Duration::from_micros(20);
/// Messages handed to the bus between two looks at the clock for [`CHECK_INTERVAL`].
const CHECK_EVERY: usize = 8;
/// Rejections logged at most per [`DENIAL_WINDOW`]; the others are counted.
const DENIALS_PER_WINDOW: u32 = 20;
/// See [`DENIALS_PER_WINDOW`].
const DENIAL_WINDOW: Duration = Duration::from_secs(10);
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How many epoll events one wait returns at most.
const EVENTS_PER_WAIT: usize = 256;
/// The uid recorded for a connection whose transport carries no credentials (TCP), until an
/// authentication mechanism proves one; dbus-daemon's "unset" uid.
const UNKNOWN_ID: u32 = u32::MAX;
/// The bus driver's name, the sender of the errors the loop answers Hello with.
const DRIVER: &str = "org.freedesktop.DBus";

/// What the loop takes from the configuration, and takes again on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The connection limits.
    pub(crate) limits: Limits,
    /// `<allow_anonymous/>`.
    pub(crate) allow_anonymous: bool,
    /// Where `.service` files are searched, in order.
    pub(crate) service_dirs: Vec<ServiceDir>,
    /// How activated services are started.
    pub(crate) launch_mode: LaunchMode,
}

/// What the loop is handed at start-up besides its sockets and configuration.
#[derive(Debug)]
pub(crate) struct Boot {
    /// The bus's address, as printed: what the services it starts are told.
    pub(crate) address: String,
    /// The soft open-file limit to give started services (the bus's before it raised its own),
    /// or `None` to give them the bus's.
    pub(crate) child_nofile: Option<u64>,
    /// The service manager to report to.
    pub(crate) notifier: Notifier,
    /// How often to send `WATCHDOG=1`, when the service manager asks for it.
    pub(crate) watchdog: Option<Duration>,
    /// The launch helper forked before the bus dropped root, if any.
    pub(crate) helper: Option<Helper>,
}

/// The authentication servers: one for unix sockets, one for TCP (which offers no EXTERNAL).
#[derive(Debug, Clone)]
pub(crate) struct SaslServers {
    /// For unix sockets.
    pub(crate) unix: SaslServer,
    /// For TCP.
    pub(crate) tcp: SaslServer,
}

/// Reads the configuration again: given the bus configuration in force, the new one and the
/// loop's new settings, or the error (`file:line: reason`) that keeps the current ones.
pub(crate) type Reloader = Box<dyn FnMut(&BusConfig) -> Result<(BusConfig, Settings), String>>;

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
    /// Connections with a unique name, by uid (anonymous ones are not counted).
    completed_by_uid: HashMap<u32, usize>,
    /// Connections with a unique name.
    completed: usize,
    /// When connections with fds waiting for their message must have received it.
    fd_deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    accept_paused_until: Option<Instant>,
    bus: Bus,
    sasl: SaslServers,
    settings: Settings,
    reloader: Reloader,
    /// Starts activated services and reaps them.
    launcher: Launcher,
    /// The start of each name being activated directly, by name: its process, whose exit (and
    /// no older one's) can fail the activation, or the launch helper's request, whose failure
    /// can.
    activating: HashMap<String, Start>,
    /// Whether the launch helper's socket is watched for room to write.
    helper_writing: bool,
    /// Watches the service directories; `None` when inotify is unavailable.
    watcher: Option<DirWatcher>,
    /// The bus's address, for the services it starts.
    address: String,
    notifier: Notifier,
    /// The watchdog interval and when `WATCHDOG=1` is next due.
    watchdog: Option<(Duration, Instant)>,
    scratch: Scratch,
    /// Events of the mid-turn check ([`EventLoop::check_waiting`]).
    waiting: Vec<epoll::Event>,
    /// When the turn started or the last mid-turn check ended.
    last_check: Instant,
    /// A mid-turn check is running: the connections it serves do not start another.
    checking: bool,
    inbox: Vec<Message>,
    dirty: Vec<PeerId>,
    /// Backlogged peers a mid-turn check left for the end of the turn to flush.
    deferred: Vec<PeerId>,
    /// Messages the policy refused, logged at a bounded rate.
    denials: DenialLog,
    /// Serial numbers of the errors the loop sends in the driver's name.
    serial: u32,
}

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// SIGTERM or SIGINT.
    Signal(i32),
}

impl EventLoop {
    /// Sets up the epoll set for `listeners`, `signals` and the service directories, and reads
    /// the services into the bus.
    ///
    /// # Errors
    /// Creating the epoll set or registering a source failed.
    pub(crate) fn new(
        bus: Bus,
        listeners: Vec<Listener>,
        signals: Signals,
        sasl: SaslServers,
        settings: Settings,
        reloader: Reloader,
        boot: Boot,
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
        let watcher = match DirWatcher::new() {
            Ok(watcher) => {
                let token = EventData::new_u64(Token::Watcher.encode());
                epoll::add(&epoll, &watcher, token, EventFlags::IN)?;
                Some(watcher)
            }
            Err(e) => {
                log::warning!(
                    "cannot watch the service directories ({e}); changes take effect on reload"
                );
                None
            }
        };
        let mut launcher = Launcher::new(settings.launch_mode, boot.child_nofile);
        if let Some(helper) = boot.helper {
            launcher.set_helper(helper);
        }
        if let Some(fd) = launcher.helper_fd() {
            let token = EventData::new_u64(Token::Helper.encode());
            epoll::add(&epoll, fd, token, EventFlags::IN)?;
        }
        let now = Instant::now();
        let mut event_loop = EventLoop {
            epoll,
            signals,
            listeners,
            slots: Vec::new(),
            free_slots: Vec::new(),
            peers: Vec::new(),
            deadlines: VecDeque::new(),
            incomplete: 0,
            authenticated: 0,
            completed_by_uid: HashMap::new(),
            completed: 0,
            fd_deadlines: BinaryHeap::new(),
            accept_paused_until: None,
            bus,
            sasl,
            settings,
            reloader,
            launcher,
            activating: HashMap::new(),
            helper_writing: false,
            watcher,
            address: boot.address,
            notifier: boot.notifier,
            watchdog: boot.watchdog.map(|interval| (interval, now + interval)),
            scratch: Scratch::new(),
            waiting: Vec::with_capacity(EVENTS_PER_WAIT),
            last_check: Instant::now(),
            checking: false,
            inbox: Vec::new(),
            dirty: Vec::new(),
            deferred: Vec::new(),
            denials: DenialLog::default(),
            serial: 0,
        };
        event_loop.watch_service_dirs();
        event_loop.read_services();
        Ok(event_loop)
    }

    /// Tells the service manager the bus is ready, then runs until SIGTERM or SIGINT, and
    /// tells it the bus is stopping.
    ///
    /// # Errors
    /// `epoll_wait` or the signalfd failed.
    pub(crate) fn run(&mut self) -> io::Result<Exit> {
        let result = self.notifier.ready();
        self.notified("READY=1", result);
        self.status(&format!("Listening on {}", self.address));
        let exit = self.serve();
        self.status("Stopping");
        let result = self.notifier.stopping();
        self.notified("STOPPING=1", result);
        exit
    }

    fn serve(&mut self) -> io::Result<Exit> {
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        // The clock is read once per turn, after waiting. The next wait is measured from that
        // reading, so a timer fires up to one turn's work late.
        let mut now = Instant::now();
        loop {
            let timeout = self.next_deadline().map(|deadline| {
                let wait = deadline.saturating_duration_since(now);
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
            now = Instant::now();
            self.last_check = now;
            // Service directories first: a client that changed one and then asks for the name
            // finds it, when both arrive in one turn.
            let watcher_token = Token::Watcher.encode();
            if events.iter().any(|e| e.data.u64() == watcher_token) {
                self.service_dirs_changed();
            }
            for event in &events {
                let (flags, data) = (event.flags, event.data);
                match Token::decode(data.u64()) {
                    Some(Token::Signals) => {
                        if let Some(exit) = self.handle_signals()? {
                            return Ok(exit);
                        }
                    }
                    Some(Token::Watcher) => {}
                    Some(Token::Helper) => self.helper_ready(flags),
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

    /// While `busy`'s messages are being handed to the bus, every [`CHECK_INTERVAL`]: serves
    /// the connections that became ready meanwhile and are not backlogged themselves, and
    /// flushes what they sent. A call from a quiet client then waits for a slice of one busy
    /// connection's work, not for the whole turn, and its reply goes out at once. Everything
    /// else the check finds (backlogged connections, listeners, signals) stays ready for the
    /// next turn: the set is level-triggered.
    fn check_waiting(&mut self, busy: u32, now: Instant) {
        if self.checking {
            return;
        }
        let clock = Instant::now();
        if clock.duration_since(self.last_check) < CHECK_INTERVAL {
            return;
        }
        self.checking = true;
        // What is queued so far goes out at the end of the turn, as usual.
        self.bus.take_dirty(&mut self.deferred);
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.clear();
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut served = false;
        if epoll::wait(&self.epoll, spare_capacity(&mut waiting), Some(&zero)).is_ok() {
            for event in &waiting {
                if let Some(Token::Connection { slot, generation }) =
                    Token::decode(event.data.u64())
                    && slot != busy
                    && self.is_live(slot, generation)
                    && !self.conn(slot).is_some_and(|c| c.backlogged)
                {
                    self.connection_event(slot, generation, event.flags, now);
                    served = true;
                }
            }
        }
        if served {
            self.flush_quiet(now);
        }
        self.waiting = waiting;
        self.checking = false;
        self.last_check = Instant::now();
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.bus.poll_timeout(),
            self.deadlines.front().map(|&(deadline, ..)| deadline),
            self.fd_deadlines
                .peek()
                .map(|Reverse((deadline, ..))| *deadline),
            self.accept_paused_until,
            self.watchdog.map(|(_, due)| due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_signals(&mut self) -> io::Result<Option<Exit>> {
        while let Some(signal) = self.signals.next()? {
            if signal == libc::SIGHUP {
                self.reload(None);
                self.drain_bus();
            } else if signal == libc::SIGCHLD {
                self.reap_services();
            } else {
                log::debug!("exiting on signal {signal}");
                return Ok(Some(Exit::Signal(signal)));
            }
        }
        Ok(None)
    }

    fn accept(&mut self, index: u32, now: Instant) {
        // A lone connection is not followed by an accept that finds the backlog empty: accept4
        // makes the new socket before it looks, which costs about as much as accepting one,
        // while a poll costs a fraction. Once the poll finds more, it is a burst, and accepting
        // goes on until the backlog is empty (or the budget is spent).
        let mut burst = false;
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get(index as usize) else {
                return;
            };
            match rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(fd) => {
                    let transport = listener.transport().clone();
                    self.add_connection(fd, transport, now);
                    if !burst {
                        let more = self
                            .listeners
                            .get(index as usize)
                            .is_some_and(Listener::has_pending);
                        if !more {
                            return;
                        }
                        burst = true;
                    }
                }
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

    fn add_connection(&mut self, fd: OwnedFd, transport: Transport, now: Instant) {
        let (creds, nonce) = match transport {
            Transport::Unix => match creds::peer_credentials(fd.as_fd()) {
                Ok(creds) => (Some(creds), None),
                Err(e) => {
                    log::warning!("dropping a new connection: cannot read its credentials: {e}");
                    return;
                }
            },
            Transport::Tcp { nonce } => (None, nonce),
        };
        if self.incomplete >= self.settings.limits.max_incomplete_connections {
            self.drop_oldest_incomplete(now);
        }
        let deadline = now + self.settings.limits.auth_timeout;
        let tcp = creds.is_none();
        let (pid, uid) = (
            creds.as_ref().and_then(|c| c.pid),
            creds.as_ref().map(|c| c.uid),
        );
        let creds = creds.unwrap_or_else(|| Credentials {
            uid: UNKNOWN_ID,
            gid: UNKNOWN_ID,
            ..Credentials::default()
        });
        let conn = Conn {
            io: Connection::new(fd),
            phase: Phase::Auth(Box::new(Auth {
                sasl: Sasl::new(uid, !tcp),
                creds,
                tcp,
                nonce: nonce.map(|file| NonceCheck { file, matched: 0 }),
            })),
            interest: EventFlags::IN,
            pid,
            uid,
            name: None,
            fds_since: None,
            backlogged: false,
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
        self.bus.set_incomplete_connections(self.incomplete);
        self.deadlines.push_back((deadline, slot, generation));
        if let Some(conn) = self.conn(slot) {
            log::debug!("new {}", conn.label(None));
        }
        // Clients speak first, and most already have: the nul byte and AUTH follow connect()
        // at once. Reading now answers them without a trip through epoll_wait; a client that
        // has not written yet costs one read that would block.
        self.read_authenticating(slot, now);
    }

    fn drop_oldest_incomplete(&mut self, now: Instant) {
        while let Some((_, slot, generation)) = self.deadlines.pop_front() {
            if self.is_incomplete(slot, generation) {
                let reason = format!(
                    "too many incomplete connections (max_incomplete_connections={}), \
                     this is the oldest",
                    self.settings.limits.max_incomplete_connections
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
                Ok(Received::Data { more_likely, .. }) => more_likely,
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
            if let Some(check) = &mut auth.nonce {
                let (input, _) = conn.io.auth_io();
                let Some(taken) = check.take(input) else {
                    log::warning!("refusing {}: wrong nonce", conn.label(None));
                    self.remove(slot);
                    return;
                };
                conn.io.consume(taken);
                if check.matched < NONCE_LEN {
                    if !more_likely {
                        return;
                    }
                    continue;
                }
                auth.nonce = None;
            }
            let server = if auth.tcp {
                &self.sasl.tcp
            } else {
                &self.sasl.unix
            };
            let (input, output) = conn.io.auth_io();
            let progress = auth.sasl.feed(server, input, output);
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
                    // What came with BEGIN is handled; read on only if the read was full (the
                    // epoll set is level-triggered: anything later shows up next turn).
                    if more_likely && let Some(Some(peer)) = self.conn(slot).map(|c| c.peer()) {
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
        let allow_anonymous = self.settings.allow_anonymous;
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let mut creds = match &mut conn.phase {
            Phase::Auth(auth) => std::mem::take(&mut auth.creds),
            Phase::Peer(_) => return,
        };
        creds.anonymous = outcome.anonymous;
        if let Some(identity) = outcome.identity {
            // DBUS_COOKIE_SHA1 proved a user: the connection is that user's. The kernel's
            // groups belong to whoever connected; the proven user gets its primary group.
            if creds.uid != identity.uid {
                creds.uid = identity.uid;
                creds.gid = identity.gid;
                creds.groups = vec![identity.gid];
            }
        }
        conn.uid = (!creds.anonymous && creds.uid != UNKNOWN_ID).then_some(creds.uid);
        let refusal = if creds.anonymous && !allow_anonymous {
            Some("authenticated anonymously, and <allow_anonymous/> is not set".to_owned())
        } else if !self.bus.admits(&creds) {
            Some(format!(
                "uid {} may not connect (the policy's user and group rules)",
                creds.uid
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            if let Some(conn) = self.conn(slot) {
                log::warning!("refusing {}: {reason}", conn.label(None));
            }
            self.remove(slot);
            return;
        }
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
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
        let limits = self.recv_limits();
        let result = match slot_conn(&mut self.slots, slot) {
            Some(conn) => conn.io.process_buffered(
                &mut self.scratch,
                &mut self.inbox,
                &limits,
                conn.name.as_deref(),
            ),
            None => return,
        };
        if self.deliver(slot, peer, now) {
            match result {
                Ok(()) => self.track_pending_fds(slot, now),
                Err(e) => self.close(slot, now, Level::Warning, &e),
            }
        }
    }

    fn read_peer(&mut self, slot: u32, peer: PeerId, now: Instant) {
        let mut limits = self.recv_limits();
        let mut budget = TURN_BYTES;
        for _ in 0..READ_BUDGET {
            let Some(conn) = slot_conn(&mut self.slots, slot) else {
                return;
            };
            limits.chunk = budget;
            let result = conn.io.receive(
                &mut self.scratch,
                &mut self.inbox,
                &limits,
                conn.name.as_deref(),
            );
            // Messages read before an error are valid and delivered first.
            if !self.deliver(slot, peer, now) {
                return;
            }
            if result.is_ok() {
                self.track_pending_fds(slot, now);
            }
            match result {
                Ok(Received::Data {
                    bytes,
                    more_likely: true,
                }) if bytes < budget => budget -= bytes,
                // The rest waits for the next turn, after every other connection's.
                Ok(Received::Data {
                    more_likely: true, ..
                }) => {
                    self.set_backlogged(slot, true);
                    return;
                }
                Ok(Received::Data { .. } | Received::WouldBlock) => {
                    self.set_backlogged(slot, false);
                    return;
                }
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
        // READ_BUDGET reads, each with more to come.
        self.set_backlogged(slot, true);
    }

    fn set_backlogged(&mut self, slot: u32, backlogged: bool) {
        if let Some(conn) = self.conn_mut(slot) {
            conn.backlogged = backlogged;
        }
    }

    /// Hands the messages in the inbox to the bus; false if the peer is gone afterwards.
    fn deliver(&mut self, slot: u32, peer: PeerId, now: Instant) -> bool {
        let mut inbox = std::mem::take(&mut self.inbox);
        let mut alive = true;
        let mut named = self.conn(slot).is_some_and(|c| c.name.is_some());
        let mut handled = 0usize;
        for msg in inbox.drain(..) {
            if !alive {
                continue;
            }
            if !named && is_hello(&msg) {
                if let Some((text, limit)) = self.connection_limit_reached(slot) {
                    self.refuse_hello(slot, &msg, &text, limit, now);
                    continue;
                }
            }
            self.bus.handle_message(now, peer, msg);
            self.drain_bus();
            handled += 1;
            if handled % CHECK_EVERY == 0 {
                self.check_waiting(slot, now);
            }
            alive = self.peer_slot(peer) == Some(slot);
            if alive && !named {
                self.remember_name(slot, peer);
                named = self.conn(slot).is_some_and(|c| c.name.is_some());
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
                self.bus.set_incomplete_connections(self.incomplete);
                self.completed += 1;
                if let Some(uid) = conn.uid {
                    *self.completed_by_uid.entry(uid).or_insert(0) += 1;
                }
            }
        }
    }

    /// Whether a Hello from `slot` would exceed a connection limit: the error text and the
    /// limit's name and value for the log.
    fn connection_limit_reached(&self, slot: u32) -> Option<(String, String)> {
        let limits = &self.settings.limits;
        if self.completed >= limits.max_completed_connections {
            return Some((
                "The maximum number of active connections has been reached".to_owned(),
                format!(
                    "max_completed_connections={}",
                    limits.max_completed_connections
                ),
            ));
        }
        let uid = self.conn(slot)?.uid?;
        let count = self.completed_by_uid.get(&uid).copied().unwrap_or(0);
        (count >= limits.max_connections_per_user).then(|| {
            (
                format!("The maximum number of active connections for UID {uid} has been reached"),
                format!(
                    "max_connections_per_user={}",
                    limits.max_connections_per_user
                ),
            )
        })
    }

    /// Answers a Hello the connection limits refuse with `LimitsExceeded`, as dbus-daemon does
    /// (to the name dbus-daemon uses for a connection without one), and logs it.
    fn refuse_hello(
        &mut self,
        slot: u32,
        hello: &Message,
        text: &str,
        limit: String,
        now: Instant,
    ) {
        self.serial = self.serial.wrapping_add(1).max(1);
        let error =
            MessageBuilder::error(hello.serial(), "org.freedesktop.DBus.Error.LimitsExceeded")
                .destination(":not.active.yet")
                .sender(DRIVER)
                .body("s", |w| w.string(text))
                .build(self.serial);
        let Some(conn) = slot_conn(&mut self.slots, slot) else {
            return;
        };
        log::warning!("{text} ({limit}); refused Hello from {}", conn.label(None));
        conn.io.queue_raw(error.as_bytes());
        self.flush(slot, now);
    }

    /// Starts or stops the `pending_fd_timeout` clock of `slot` after a read.
    fn track_pending_fds(&mut self, slot: u32, now: Instant) {
        let timeout = self.settings.limits.pending_fd_timeout;
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let generation = s.generation;
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        if !conn.io.has_pending_fds() {
            conn.fds_since = None;
        } else if conn.fds_since.is_none() {
            conn.fds_since = Some(now);
            self.fd_deadlines
                .push(Reverse((now + timeout, slot, generation)));
        }
    }

    /// The limits connections read under.
    fn recv_limits(&self) -> RecvLimits {
        let limits = &self.settings.limits;
        RecvLimits {
            max_message_size: limits.max_message_size,
            max_message_unix_fds: limits.max_message_unix_fds,
            max_read: limits.max_incoming_bytes,
            chunk: TURN_BYTES,
        }
    }

    /// Reads the configuration again and applies it whole, or changes nothing: for SIGHUP, or
    /// for the ReloadConfig call `token` stands for (which is answered either way).
    fn reload(&mut self, token: Option<ReloadToken>) {
        let result = self.notifier.reloading();
        self.notified("RELOADING=1", result);
        let how = if token.is_some() {
            " (ReloadConfig)"
        } else {
            ""
        };
        match (self.reloader)(self.bus.config()) {
            Ok((config, settings)) => {
                match token {
                    Some(token) => self.bus.finish_reload(token, Ok(config)),
                    None => self.bus.reload(config),
                }
                let dirs_changed = settings.service_dirs != self.settings.service_dirs;
                self.launcher.set_mode(settings.launch_mode);
                self.settings = settings;
                if dirs_changed {
                    self.watch_service_dirs();
                }
                self.read_services();
                log::info!("reloaded the configuration{how}");
                self.status(&format!("Listening on {}", self.address));
            }
            Err(e) => {
                log::warning!("cannot reload the configuration{how}, keeping the current one: {e}");
                self.status(&format!("Running with the previous configuration: {e}"));
                if let Some(token) = token {
                    self.bus.finish_reload(token, Err(e));
                }
            }
        }
        let result = self.notifier.ready();
        self.notified("READY=1", result);
    }

    /// Watches the directories of the settings in force that are to be watched.
    fn watch_service_dirs(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let dirs = self.settings.service_dirs.iter().filter(|d| d.watch);
        for (dir, e) in watcher.set_dirs(dirs.map(|d| &d.path)) {
            log::warning!(
                "cannot watch the service directory {}: {e}; changes there take effect on reload",
                dir.display()
            );
        }
    }

    /// Reads the service directories and hands the services to the bus.
    fn read_services(&mut self) {
        let services = services::read(&self.settings.service_dirs);
        self.bus.set_services(services);
    }

    /// The watcher's descriptor is readable: read the directories again if anything changed.
    fn service_dirs_changed(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        match watcher.changed() {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) => {
                log::warning!(
                    "cannot read service directory changes ({e}); they take effect on reload"
                );
                if let Some(watcher) = self.watcher.take() {
                    let _ = epoll::delete(&self.epoll, &watcher);
                }
            }
        }
        self.read_services();
        self.drain_bus();
    }

    /// Starts the service the bus asked for; a failure to start answers the waiting callers.
    fn activate(&mut self, request: ActivationRequest) {
        let service = &request.service;
        log::info!("activating service name='{}'", service.name);
        let spec = LaunchSpec {
            name: &service.name,
            exec: service.exec.as_deref(),
            user: service.user.as_deref(),
        };
        let bus_type = Some(self.bus.config().bus_type.as_str()).filter(|t| !t.is_empty());
        match self
            .launcher
            .spawn(&spec, &request.environment, &self.address, bus_type)
        {
            Ok(start) => {
                match start {
                    Start::Running(pid) => log::debug!("started {} as pid {pid}", service.name),
                    Start::Requested(id) => log::debug!(
                        "asked the launch helper to start {} (request {id})",
                        service.name
                    ),
                }
                self.activating.insert(service.name.clone(), start);
            }
            Err(e) => {
                let (error, text) = e.dbus_error();
                log::warning!("activated service '{}' failed: {text}", service.name);
                self.bus.activation_failed(&service.name, error, &text);
            }
        }
        self.watch_helper();
    }

    /// Collects the services that exited (SIGCHLD), and the launch helper if it did.
    fn reap_services(&mut self) {
        let events = self.launcher.reap();
        self.launch_events(events);
    }

    /// The launch helper's socket is ready: send the requests that wait, read its answers.
    fn helper_ready(&mut self, flags: EventFlags) {
        if flags.contains(EventFlags::OUT) {
            self.launcher.flush_helper();
        }
        let events = self.launcher.helper_replies();
        self.launch_events(events);
        self.watch_helper();
    }

    /// Watches the launch helper's socket for room to write while requests wait for it.
    fn watch_helper(&mut self) {
        let wants = self.launcher.helper_wants_write();
        if wants == self.helper_writing {
            return;
        }
        let Some(fd) = self.launcher.helper_fd() else {
            self.helper_writing = false;
            return;
        };
        let interest = if wants {
            EventFlags::IN | EventFlags::OUT
        } else {
            EventFlags::IN
        };
        let token = EventData::new_u64(Token::Helper.encode());
        match epoll::modify(&self.epoll, fd, token, interest) {
            Ok(()) => self.helper_writing = wants,
            Err(e) => log::warning!("cannot watch the launch helper: {}", io::Error::from(e)),
        }
    }

    /// Applies what became of started services. A service that failed before owning its name
    /// fails its activation; the bus ignores names no longer being activated.
    fn launch_events(&mut self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Started { request, name, pid } => {
                    log::debug!("the launch helper started {name} as pid {pid}");
                    if let Some(start) = self.activating.get_mut(&name) {
                        if *start == Start::Requested(request) {
                            *start = Start::Running(pid);
                        }
                    }
                }
                Event::Failed {
                    request,
                    name,
                    error,
                } => {
                    let (error, text) = error.dbus_error();
                    if self.activating.get(&name) == Some(&Start::Requested(request)) {
                        self.activating.remove(&name);
                        log::warning!("activated service '{name}' failed: {text}");
                        self.bus.activation_failed(&name, error, &text);
                    } else {
                        log::debug!("an earlier start of {name} failed: {text}");
                    }
                }
                Event::Exited(exited) => {
                    let current =
                        self.activating.get(&exited.name) == Some(&Start::Running(exited.pid));
                    if current {
                        self.activating.remove(&exited.name);
                    }
                    match launcher::exit_error(&exited.name, exited.status) {
                        Some((error, text)) if current => {
                            log::warning!("activated service '{}' failed: {text}", exited.name);
                            self.bus.activation_failed(&exited.name, error, &text);
                        }
                        _ => log::debug!(
                            "service {} (pid {}) exited: {}; {} started services running",
                            exited.name,
                            exited.pid,
                            exited.status,
                            self.launcher.running()
                        ),
                    }
                }
            }
        }
        self.drain_bus();
    }

    /// Logs a failed notification of the service manager.
    fn notified(&self, what: &str, result: io::Result<()>) {
        if let Err(e) = result {
            log::warning!("cannot tell the service manager {what}: {e}");
        }
    }

    /// Sends the service manager a `STATUS=` line.
    fn status(&self, text: &str) {
        let result = self.notifier.status(text);
        self.notified("STATUS", result);
    }

    /// Drains the bus's actions (after every input).
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
                Action::Reload(token) => self.reload(Some(token)),
                Action::Activate(request) => self.activate(request),
                Action::Denied(text) => self.denials.log(Instant::now(), &text),
                other => log::warning!("ignoring unsupported bus action {other:?}"),
            }
        }
    }

    /// Flushes every peer the bus queued messages for, each once (the bus lists a peer once
    /// until it is taken), and those a mid-turn check left for now.
    fn flush_dirty(&mut self, now: Instant) {
        let mut deferred = std::mem::take(&mut self.deferred);
        self.dirty.append(&mut deferred);
        self.deferred = deferred;
        self.flush_listed(now, false);
    }

    /// [`EventLoop::flush_dirty`] in the middle of a turn: the peers that are not backlogged
    /// now, the others at the end of the turn (a busy sender's replies go out in few writes).
    fn flush_quiet(&mut self, now: Instant) {
        self.flush_listed(now, true);
    }

    /// Flushes the peers in `self.dirty` and those the bus lists, until it lists none (closing
    /// a peer while flushing may queue more); with `defer_backlogged`, backlogged peers go to
    /// `self.deferred` instead.
    fn flush_listed(&mut self, now: Instant, defer_backlogged: bool) {
        let mut dirty = std::mem::take(&mut self.dirty);
        loop {
            self.bus.take_dirty(&mut dirty);
            if dirty.is_empty() {
                break;
            }
            for peer in dirty.drain(..) {
                let Some(slot) = self.peer_slot(peer) else {
                    continue;
                };
                if defer_backlogged && self.conn(slot).is_some_and(|c| c.backlogged) {
                    self.deferred.push(peer);
                } else {
                    self.flush(slot, now);
                }
            }
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
        if let Some((interval, due)) = self.watchdog {
            if due <= now {
                let result = self.notifier.watchdog();
                self.notified("WATCHDOG=1", result);
                self.watchdog = Some((interval, now + interval));
            }
        }
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
                    "no Hello within {} ms of connecting (auth_timeout)",
                    self.settings.limits.auth_timeout.as_millis()
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
        while let Some(&Reverse((deadline, slot, generation))) = self.fd_deadlines.peek() {
            if deadline > now {
                break;
            }
            self.fd_deadlines.pop();
            let timeout = self.settings.limits.pending_fd_timeout;
            let since = match self.slots.get(slot as usize) {
                Some(s) if s.generation == generation => s.conn.as_ref().and_then(|c| c.fds_since),
                _ => None,
            };
            let Some(since) = since else {
                continue;
            };
            if since + timeout <= now {
                let reason = format!(
                    "file descriptors waited longer than pending_fd_timeout ({} ms) for their \
                     message",
                    timeout.as_millis()
                );
                self.close(slot, now, Level::Warning, &reason);
            } else if since + timeout > deadline {
                // The timeout grew with a reload: look again then.
                self.fd_deadlines
                    .push(Reverse((since + timeout, slot, generation)));
            }
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
            self.bus.set_incomplete_connections(self.incomplete);
        } else {
            self.completed -= 1;
            if let Some(uid) = conn.uid {
                if let Some(count) = self.completed_by_uid.get_mut(&uid) {
                    *count -= 1;
                    if *count == 0 {
                        self.completed_by_uid.remove(&uid);
                    }
                }
            }
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
    /// The user, once known: from the kernel, or proven by authentication; `None` for TCP
    /// before authentication and for anonymous connections.
    uid: Option<u32>,
    /// The unique name, once the bus assigned one (for logs after the bus forgot the peer).
    name: Option<Box<str>>,
    /// Since when fds have been waiting for the rest of their message.
    fds_since: Option<Instant>,
    /// The last read ended with its share of the turn used up and more input waiting.
    backlogged: bool,
}

/// The log of messages the policy refused ([`Action::Denied`]), as dbus-daemon logs them, but
/// at most [`DENIALS_PER_WINDOW`] lines per [`DENIAL_WINDOW`]: a client sending what the
/// policy refuses as fast as it can does not fill the journal. What was left out is counted,
/// and the count logged with the first rejection of a later window.
#[derive(Debug, Default)]
struct DenialLog {
    window_start: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl DenialLog {
    fn log(&mut self, now: Instant, text: &str) {
        let new_window = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= DENIAL_WINDOW);
        if new_window {
            if self.left_out > 0 {
                log::warning!(
                    "{} more messages refused by the policy were not logged",
                    self.left_out
                );
            }
            *self = DenialLog {
                window_start: Some(now),
                logged: 0,
                left_out: 0,
            };
        }
        if self.logged < DENIALS_PER_WINDOW {
            self.logged += 1;
            log::warning!("{text}");
        } else {
            self.left_out += 1;
        }
    }
}

enum Phase {
    Auth(Box<Auth>),
    Peer(PeerId),
}

struct Auth {
    sasl: Sasl,
    creds: Credentials,
    /// The connection came in over TCP.
    tcp: bool,
    /// The nonce still to be received (`nonce-tcp:`).
    nonce: Option<NonceCheck>,
}

/// How much of the nonce a `nonce-tcp:` client has sent.
struct NonceCheck {
    file: Arc<NonceFile>,
    matched: usize,
}

impl NonceCheck {
    /// Compares the front of `input` with the rest of the nonce: how many bytes matched, or
    /// `None` on a mismatch.
    fn take(&mut self, input: &[u8]) -> Option<usize> {
        let expected = self.file.nonce().get(self.matched..).unwrap_or_default();
        let n = expected.len().min(input.len());
        if input.get(..n)? != expected.get(..n)? {
            return None;
        }
        self.matched += n;
        Some(n)
    }
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
    Watcher,
    Helper,
    Listener(u32),
    Connection { slot: u32, generation: u32 },
}

impl Token {
    const KIND_SHIFT: u32 = 62;
    const GENERATION_MASK: u32 = (1 << 30) - 1;

    fn encode(self) -> u64 {
        match self {
            Token::Signals => 0,
            Token::Watcher => 1,
            Token::Helper => 2,
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
            0 if data == 0 => Some(Token::Signals),
            0 if data == 1 => Some(Token::Watcher),
            0 if data == 2 => Some(Token::Helper),
            0 => None,
            1 => Some(Token::Listener(low)),
            2 => Some(Token::Connection {
                slot: low,
                generation: ((data >> 32) as u32) & Self::GENERATION_MASK,
            }),
            _ => None,
        }
    }
}

/// Whether `msg` is a call of the driver's Hello.
fn is_hello(msg: &Message) -> bool {
    msg.message_type() == MessageType::MethodCall
        && msg.destination() == Some(DRIVER)
        && msg.member() == Some("Hello")
        && matches!(msg.interface(), None | Some(DRIVER))
}

/// The connection in `slot`, borrowing only the slab (so other fields stay usable).
fn slot_conn(slots: &mut [Slot], slot: u32) -> Option<&mut Conn> {
    slots.get_mut(slot as usize)?.conn.as_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_logged_at_a_bounded_rate() {
        let start = Instant::now();
        let mut log = DenialLog::default();
        for _ in 0..25 {
            log.log(start, "Rejected send message, 1 matched rules; …");
        }
        assert_eq!((log.logged, log.left_out), (DENIALS_PER_WINDOW, 5));
        // Still the same window just before it ends.
        log.log(start + DENIAL_WINDOW - Duration::from_millis(1), "…");
        assert_eq!((log.logged, log.left_out), (DENIALS_PER_WINDOW, 6));
        // A new one: the count of what was left out is logged, and lines go out again.
        log.log(start + DENIAL_WINDOW, "…");
        assert_eq!((log.logged, log.left_out), (1, 0));
        assert_eq!(log.window_start, Some(start + DENIAL_WINDOW));
    }

    #[test]
    fn tokens_round_trip() {
        let tokens = [
            Token::Signals,
            Token::Watcher,
            Token::Helper,
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
        assert_eq!(Token::decode(3), None);
    }
}
