//! The launch helper: the one process of a system bus that stays root after the bus drops to
//! its `<user>`, so that services can still run as their `User=`. It does the job of
//! dbus-daemon's setuid `dbus-daemon-launch-helper`, without a setuid binary.
//!
//! # Audit statement
//!
//! **What runs as root.** When tramd starts as root with a `<user>` other than root to switch
//! to, and its configuration has a `<servicehelper>` (services run as their `User=`), it forks
//! this helper after listening and before it reads any client or drops root
//! ([`Helper::spawn`]). The helper keeps root; the bus keeps the other end of a
//! `SOCK_SEQPACKET` socket pair. Before serving, the helper closes every other descriptor (the
//! bus's sockets, its pid file pipe, its syslog socket), points standard input at `/dev/null`
//! (and standard output and error too when the bus detaches with `--fork`), blocks SIGTERM,
//! SIGINT and SIGHUP and reads SIGCHLD through a signalfd, and names itself `tramd-launcher`.
//! It never touches bus state: all it holds is what it was forked with ([`HelperConfig`]).
//!
//! **What it accepts.** One kind of request, one packet each: *start the service called
//! NAME*, with a request id. A packet longer than [`MAX_REQUEST`] bytes, of another kind, or
//! whose name is not a valid well-known bus name (at most 255 bytes of `[A-Za-z0-9_-]`
//! elements joined by `.`: no `/`, no empty element, so no `..`) is malformed: the helper logs
//! it and exits, and the bus fails every later start that needs it. Descriptors sent along
//! with a packet are discarded by the kernel (no control buffer is offered).
//!
//! **What it checks and does.** For a valid NAME it looks for `NAME.service` in the service
//! directories of the configuration the bus was started with, in their order; a reload does
//! not change them for the helper. The first file that is a regular file (opened without
//! blocking, so a FIFO cannot stall it; at most [`MAX_SERVICE_FILE_SIZE`] bytes), parses, and
//! whose `Name=` is NAME is used; others are logged and skipped, and without one the start
//! fails with `Spawn.ServiceNotFound`. The file must have an `Exec` line and a `User=`; the user
//! is looked up in `/etc/passwd` and its groups in `/etc/group` (no NSS). The service is then
//! started as the in-process [`LaunchMode::AsUser`] launcher starts one: `setgroups`, `setgid`,
//! `setuid` to that user, signals reset, a session of its own, standard input from
//! `/dev/null`, every other descriptor closed on exec, and an environment holding only
//! `DBUS_STARTER_ADDRESS`, `DBUS_STARTER_BUS_TYPE` and `DBUS_SYSTEM_BUS_ADDRESS` with the values
//! the helper was forked with. It answers *started* (the pid) or *failed* (the D-Bus error and
//! its text), and reports *exited* (pid and wait status) for the services it started.
//!
//! **Why a compromised bus cannot abuse it.** The bus process, which reads untrusted clients,
//! can only name a service. The program, its arguments and the user come from a file in a
//! directory root chose when the bus started, never from the request; the environment is not
//! the bus's to set (on a root service, `LD_PRELOAD` alone would be a way to root, which is
//! why dbus-daemon's helper clears the environment too; with a `<servicehelper>` the bus
//! refuses UpdateActivationEnvironment, so the in-process launcher of a bus that stays root
//! has no activation environment to pass on either). So a compromised bus can start, as their own users,
//! only the services an administrator installed, which any client of the bus can already
//! have started by activation. It cannot make the helper run anything else, become another
//! user, read other files, or keep a descriptor: the helper reads only fixed-size packets and
//! the files named above.
//!
//! **Protocol.** Every message is one packet, integers little-endian. Bus → helper:
//! `'S' id:u32 name` (the name is the rest of the packet). Helper → bus: `'R' id:u32 pid:u32`
//! (started), `'F' id:u32 kind:u8 text` (failed; `kind` indexes [`KINDS`], `text` is UTF-8 of
//! at most [`MAX_TEXT`] bytes), `'X' pid:u32 status:i32` (a service it started exited; the
//! status as `waitpid` gives it). The bus treats a malformed reply, an answer to a request it
//! did not make, or an exit of a pid the helper did not report started, as the helper failing:
//! it logs that once, closes the socket (so the helper exits) and fails the starts waiting on
//! it and all later ones with `Spawn.Failed`. Its end of the socket is non-blocking: requests
//! the socket has no room for wait in [`Helper`] until it is writable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::process::{Pid, WaitOptions};
use rustix::time::Timespec;
use tram_config::ServiceDir;
use tram_config::service::{MAX_SERVICE_FILE_SIZE, ServiceFile};
use tram_wire::names::{MAX_NAME_LEN, is_valid_well_known_name};

use crate::launcher::{
    Event, Exited, FailureKind, LaunchError, LaunchMode, LaunchSpec, Launcher, Start,
};
use crate::log;
use crate::signals::Signals;

/// What the helper is forked with; nothing the bus sends later changes it.
#[derive(Debug, Clone)]
pub(crate) struct HelperConfig {
    /// The service directories of the start-up configuration, in search order.
    pub(crate) service_dirs: Vec<ServiceDir>,
    /// The bus's address, for `DBUS_STARTER_ADDRESS`.
    pub(crate) address: String,
    /// The bus's `<type>`, for `DBUS_STARTER_BUS_TYPE`, when it has one.
    pub(crate) bus_type: Option<String>,
    /// The soft open-file limit to give services, as [`Launcher::new`] takes it.
    pub(crate) child_nofile: Option<u64>,
    /// The bus detaches (`--fork`): standard output and error go to `/dev/null`, as the bus's
    /// own do once it is ready.
    pub(crate) detach: bool,
    /// Log to standard error.
    pub(crate) log_stderr: bool,
    /// Log to the system log.
    pub(crate) log_syslog: bool,
}

/// The bus's end of the launch helper: requests waiting to be sent or answered, and the
/// services the helper reported running.
#[derive(Debug)]
pub(crate) struct Helper {
    /// The socket, until the helper is gone.
    socket: Option<OwnedFd>,
    /// The helper's pid, until it is reaped.
    pid: Option<Pid>,
    next_request: u32,
    /// Requests sent or queued and not answered yet: id → bus name.
    pending: HashMap<u32, String>,
    /// Services the helper reported started and not yet exited: pid → bus name.
    children: HashMap<u32, String>,
    /// Encoded requests the socket had no room for yet.
    outbox: VecDeque<Vec<u8>>,
    /// Why the helper is gone, once it is.
    gone: Option<String>,
}

/// The longest request: a tag, an id and a bus name.
pub(crate) const MAX_REQUEST: usize = 1 + 4 + MAX_NAME_LEN;
/// The longest error text in a reply; the helper cuts longer ones.
pub(crate) const MAX_TEXT: usize = 1024;
/// The longest reply.
const MAX_REPLY: usize = 1 + 4 + 1 + MAX_TEXT;
/// How many replies the bus reads in one call, so a busy helper does not hold up the loop.
const REPLY_BUDGET: usize = 64;
/// The failure kinds, by their code in a reply.
pub(crate) const KINDS: [FailureKind; 6] = [
    FailureKind::InvalidArgs,
    FailureKind::FileInvalid,
    FailureKind::ServiceNotFound,
    FailureKind::PermissionsInvalid,
    FailureKind::ExecFailed,
    FailureKind::Failed,
];

/// Packet tags.
const START: u8 = b'S';
const STARTED: u8 = b'R';
const FAILED: u8 = b'F';
const EXITED: u8 = b'X';

/// How long the bus, stopping, waits for its launch helper to end.
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// A stopping bus closes the helper's socket, on which the helper ends, and reaps it (waiting
/// at most [`EXIT_WAIT`]), so that no helper outlives the bus as an orphan or a zombie.
impl Drop for Helper {
    fn drop(&mut self) {
        self.socket = None;
        let Some(pid) = self.pid.take() else {
            return;
        };
        if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            let timeout = Timespec::try_from(EXIT_WAIT).ok();
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            let _ = poll(&mut fds, timeout.as_ref());
        }
        if let Err(e) = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            log::debug!("launch helper: not reaped: {}", io::Error::from(e));
        }
    }
}

impl Helper {
    /// Forks the helper, which serves until the returned end of its socket is closed.
    ///
    /// Call it while the process is root and single-threaded, before it reads any client.
    ///
    /// # Errors
    /// The socket pair or the fork failed.
    pub(crate) fn spawn(config: &HelperConfig) -> io::Result<Helper> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // SAFETY: the daemon is single-threaded when it forks (no thread has been started),
        // so the child may go on running ordinary Rust code. The child never returns from
        // `helper_main`, so no destructor of the caller's frames runs in it.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            drop(ours);
            helper_main(theirs, config);
        }
        drop(theirs);
        Helper::over(ours, Pid::from_raw(pid))
    }

    /// The bus's end of a helper on `socket`, whose process is `pid`.
    fn over(socket: OwnedFd, pid: Option<Pid>) -> io::Result<Helper> {
        rustix::io::ioctl_fionbio(&socket, true)?;
        Ok(Helper {
            socket: Some(socket),
            pid,
            next_request: 1,
            pending: HashMap::new(),
            children: HashMap::new(),
            outbox: VecDeque::new(),
            gone: None,
        })
    }

    /// The socket to watch; `None` once the helper is gone.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.socket.as_ref().map(AsFd::as_fd)
    }

    /// Whether requests wait for room in the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.socket.is_some() && !self.outbox.is_empty()
    }

    /// How many services the helper reported running.
    pub(crate) fn running(&self) -> usize {
        self.children.len()
    }

    /// Asks the helper to start the service called `name`; gives the request id its answer
    /// will carry.
    ///
    /// # Errors
    /// The helper is gone ([`LaunchError::HelperGone`]), or `name` cannot be a service's
    /// ([`LaunchError::NotProvided`], without asking).
    pub(crate) fn request(&mut self, name: &str) -> Result<u32, LaunchError> {
        if let Some(reason) = &self.gone {
            return Err(LaunchError::HelperGone {
                name: name.to_owned(),
                reason: reason.clone(),
            });
        }
        if !is_valid_well_known_name(name) {
            return Err(LaunchError::NotProvided {
                name: name.to_owned(),
            });
        }
        let id = self.next_request;
        self.next_request = id.wrapping_add(1);
        let request = Request {
            id,
            name: name.to_owned(),
        };
        self.outbox.push_back(request.encode());
        self.pending.insert(id, request.name);
        self.flush();
        Ok(id)
    }

    /// Sends the queued requests the socket has room for.
    pub(crate) fn flush(&mut self) {
        let Some(socket) = &self.socket else {
            return;
        };
        while let Some(packet) = self.outbox.front() {
            match rustix::net::send(socket, packet, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
                Ok(_) => {
                    self.outbox.pop_front();
                }
                Err(Errno::INTR) => {}
                // Full: the loop calls again when the socket is writable. Any other error means
                // the helper is gone, which reading the socket finds out.
                Err(_) => break,
            }
        }
    }

    /// Reads the helper's replies (up to a budget); on a malformed one or the end of the
    /// socket, the helper is gone and every waiting start fails.
    pub(crate) fn receive(&mut self) -> Vec<Event> {
        let (mut events, fatal) = self.read(REPLY_BUDGET);
        if let Some(reason) = fatal {
            events.extend(self.lose(&reason));
        }
        events
    }

    /// Reaps the helper's process if it exited (call it on SIGCHLD): its last replies are
    /// read, then every waiting start fails.
    pub(crate) fn reap(&mut self) -> Vec<Event> {
        let Some(pid) = self.pid else {
            return Vec::new();
        };
        let status = match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => ExitStatus::from_raw(status.as_raw()),
            Ok(None) | Err(Errno::INTR) => return Vec::new(),
            Err(_) => {
                self.pid = None;
                return Vec::new();
            }
        };
        self.pid = None;
        let (mut events, fatal) = self.read(usize::MAX);
        let reason = match fatal {
            Some(reason) if reason != CLOSED => reason,
            _ => match (status.code(), status.signal()) {
                (_, Some(signal)) => format!("it was killed by signal {signal}"),
                (code, None) => format!("it exited with status {}", code.unwrap_or_default()),
            },
        };
        events.extend(self.lose(&reason));
        events
    }

    /// Reads up to `budget` replies; the second value says why the helper must be given up.
    fn read(&mut self, budget: usize) -> (Vec<Event>, Option<String>) {
        let mut events = Vec::new();
        let mut buf = [0u8; MAX_REPLY];
        let mut count = 0;
        while count < budget {
            let Some(socket) = &self.socket else {
                break;
            };
            let flags = RecvFlags::TRUNC | RecvFlags::DONTWAIT;
            let reply = match rustix::net::recv(socket, &mut buf[..], flags) {
                Ok((_, 0)) => Err(CLOSED.to_owned()),
                Ok((read, len)) if len > read => Err(format!("it sent a reply of {len} bytes")),
                Ok((read, _)) => Reply::decode(buf.get(..read).unwrap_or_default())
                    .map_err(|e| format!("it sent a malformed reply: {e}")),
                // A helper that ended with requests unread leaves this error first, once; its
                // last replies and the end of the socket follow.
                Err(Errno::INTR | Errno::CONNRESET) => continue,
                Err(Errno::AGAIN) => break,
                Err(e) => Err(format!("reading its socket failed: {}", io::Error::from(e))),
            };
            count += 1;
            match reply.and_then(|reply| self.event(reply)) {
                Ok(event) => events.push(event),
                Err(reason) => return (events, Some(reason)),
            }
        }
        (events, None)
    }

    /// What a well-formed reply means to the launcher.
    fn event(&mut self, reply: Reply) -> Result<Event, String> {
        let unasked = |id| format!("it answered request {id}, which was not made");
        match reply {
            Reply::Started { id, pid } => {
                let name = self.pending.remove(&id).ok_or_else(|| unasked(id))?;
                self.children.insert(pid, name.clone());
                Ok(Event::Started {
                    request: id,
                    name,
                    pid,
                })
            }
            Reply::Failed { id, kind, text } => {
                let name = self.pending.remove(&id).ok_or_else(|| unasked(id))?;
                Ok(Event::Failed {
                    request: id,
                    name,
                    error: LaunchError::Helper { kind, text },
                })
            }
            Reply::Exited { pid, status } => {
                let name = self.children.remove(&pid).ok_or_else(|| {
                    format!("it reported pid {pid} exited, which it did not start")
                })?;
                Ok(Event::Exited(Exited {
                    pid,
                    name,
                    status: ExitStatus::from_raw(status),
                }))
            }
        }
    }

    /// Gives the helper up (once): logs why, closes the socket (which takes it out of the
    /// event loop's epoll set and makes a live helper exit) and fails the waiting starts.
    fn lose(&mut self, reason: &str) -> Vec<Event> {
        if self.gone.is_some() {
            return Vec::new();
        }
        log::error!(
            "the launch helper stopped: {reason}; services with a User= cannot be started \
             until the bus restarts"
        );
        self.gone = Some(reason.to_owned());
        self.socket = None;
        self.outbox.clear();
        // The services it started live on, but nobody reports their exits any more.
        self.children.clear();
        let mut pending: Vec<(u32, String)> = self.pending.drain().collect();
        pending.sort_unstable();
        pending
            .into_iter()
            .map(|(request, name)| Event::Failed {
                request,
                error: LaunchError::HelperGone {
                    name: name.clone(),
                    reason: reason.to_owned(),
                },
                name,
            })
            .collect()
    }
}

/// The reason given when the helper closed its socket.
const CLOSED: &str = "it closed its socket";

/// A request: start the service that provides `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    id: u32,
    name: String,
}

/// A reply of the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// Request `id` runs as `pid`.
    Started { id: u32, pid: u32 },
    /// Request `id` failed.
    Failed {
        id: u32,
        kind: FailureKind,
        text: String,
    },
    /// The service running as `pid` exited with the wait status `status`.
    Exited { pid: u32, status: i32 },
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Request {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.name.len());
        out.push(START);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out
    }

    fn decode(packet: &[u8]) -> Result<Request, Malformed> {
        if packet.len() > MAX_REQUEST {
            return Err(Malformed("too long"));
        }
        let mut r = Reader(packet);
        if r.u8()? != START {
            return Err(Malformed("unknown request"));
        }
        let id = r.u32()?;
        let name = std::str::from_utf8(r.rest()).map_err(|_| Malformed("name not UTF-8"))?;
        if !is_valid_well_known_name(name) {
            return Err(Malformed("not a well-known bus name"));
        }
        Ok(Request {
            id,
            name: name.to_owned(),
        })
    }
}

impl Reply {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        match self {
            Reply::Started { id, pid } => {
                out.push(STARTED);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Reply::Failed { id, kind, text } => {
                out.push(FAILED);
                out.extend_from_slice(&id.to_le_bytes());
                let code = KINDS
                    .iter()
                    .position(|k| k == kind)
                    .unwrap_or(KINDS.len() - 1);
                out.push(u8::try_from(code).unwrap_or(u8::MAX));
                out.extend_from_slice(clip(text).as_bytes());
            }
            Reply::Exited { pid, status } => {
                out.push(EXITED);
                out.extend_from_slice(&pid.to_le_bytes());
                out.extend_from_slice(&status.to_le_bytes());
            }
        }
        out
    }

    fn decode(packet: &[u8]) -> Result<Reply, Malformed> {
        let mut r = Reader(packet);
        let reply = match r.u8()? {
            STARTED => Reply::Started {
                id: r.u32()?,
                pid: r.pid()?,
            },
            FAILED => {
                let id = r.u32()?;
                let kind = *KINDS
                    .get(usize::from(r.u8()?))
                    .ok_or(Malformed("unknown failure kind"))?;
                let text = r.rest();
                if text.len() > MAX_TEXT {
                    return Err(Malformed("text too long"));
                }
                let text = std::str::from_utf8(text).map_err(|_| Malformed("text not UTF-8"))?;
                Reply::Failed {
                    id,
                    kind,
                    text: text.to_owned(),
                }
            }
            EXITED => Reply::Exited {
                pid: r.pid()?,
                status: i32::from_le_bytes(r.array()?),
            },
            _ => return Err(Malformed("unknown reply")),
        };
        r.end()?;
        Ok(reply)
    }
}

/// A bounds-checked reader over a packet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(Malformed("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        self.array().map(u32::from_le_bytes)
    }

    /// A process id: positive and within `pid_t`.
    fn pid(&mut self) -> Result<u32, Malformed> {
        let pid = self.u32()?;
        if pid == 0 || i32::try_from(pid).is_err() {
            return Err(Malformed("not a pid"));
        }
        Ok(pid)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

/// `text` cut to at most [`MAX_TEXT`] bytes, at a character boundary.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The helper process. It never returns: returning (or unwinding) into the bus's frames would
/// run their destructors, which remove the bus's socket files and pid file.
fn helper_main(socket: OwnedFd, config: &HelperConfig) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(socket, config)))
        .unwrap_or(1);
    std::process::exit(code)
}

/// Sets the helper up and serves requests until the bus closes its end; gives the exit status.
fn serve(socket: OwnedFd, config: &HelperConfig) -> i32 {
    let socket = match isolate(socket, config) {
        Ok(socket) => socket,
        Err(e) => {
            log::error!("launch helper: cannot set up: {e}");
            return 1;
        }
    };
    let signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            log::error!("launch helper: cannot set up signals: {e}");
            return 1;
        }
    };
    let mut launcher = Launcher::new(LaunchMode::AsUser, config.child_nofile);
    let mut buf = [0u8; MAX_REQUEST];
    loop {
        let mut fds = [
            PollFd::new(&socket, PollFlags::IN),
            PollFd::new(&signals, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                log::error!("launch helper: poll failed: {}", io::Error::from(e));
                return 1;
            }
        }
        let [request_ready, signal_ready] = fds.map(|fd| !fd.revents().is_empty());
        if signal_ready && !report_exits(&socket, &signals, &mut launcher) {
            return 0;
        }
        if !request_ready {
            continue;
        }
        let request = match rustix::net::recv(&socket, &mut buf[..], RecvFlags::TRUNC) {
            // The bus is gone.
            Ok((_, 0)) | Err(Errno::CONNRESET) => return 0,
            Ok((read, len)) if len > read => Err(Malformed("too long")),
            Ok((read, _)) => Request::decode(buf.get(..read).unwrap_or_default()),
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(e) => {
                log::error!(
                    "launch helper: reading requests failed: {}",
                    io::Error::from(e)
                );
                return 1;
            }
        };
        let reply = match request {
            Ok(request) => start(&mut launcher, config, &request),
            Err(e) => {
                log::error!("launch helper: malformed request ({e}); stopping");
                return 1;
            }
        };
        if !send(&socket, &reply) {
            return 0;
        }
    }
}

/// Reads the pending signals (SIGCHLD matters; SIGTERM, SIGINT and SIGHUP are ignored: the
/// helper ends with the bus) and reports the services that exited. False when the bus is gone.
fn report_exits(socket: &OwnedFd, signals: &Signals, launcher: &mut Launcher) -> bool {
    while let Ok(Some(_)) = signals.next() {}
    for event in launcher.reap() {
        if let Event::Exited(exited) = event {
            let reply = Reply::Exited {
                pid: exited.pid,
                status: exited.status.into_raw(),
            };
            if !send(socket, &reply) {
                return false;
            }
        }
    }
    true
}

/// Starts the service `request` names, and says how that went.
fn start(launcher: &mut Launcher, config: &HelperConfig, request: &Request) -> Reply {
    let name = request.name.as_str();
    let started = find_service(&config.service_dirs, name).and_then(|file| {
        let spec = LaunchSpec {
            name,
            exec: file.exec.as_deref(),
            user: file.user.as_deref(),
        };
        let env = BTreeMap::new();
        launcher.spawn(&spec, &env, &config.address, config.bus_type.as_deref())
    });
    let error = match started {
        Ok(Start::Running(pid)) => {
            return Reply::Started {
                id: request.id,
                pid,
            };
        }
        // The helper's own launcher has no helper; this cannot happen.
        Ok(Start::Requested(_)) => LaunchError::HelperGone {
            name: name.to_owned(),
            reason: "the helper has no launcher".to_owned(),
        },
        Err(e) => e,
    };
    log::warning!("launch helper: {error}");
    Reply::Failed {
        id: request.id,
        kind: error.kind(),
        text: clip(&error.to_string()).to_owned(),
    }
}

/// Sends `reply` (blocking: the helper has nothing else to do). False when the bus is gone.
fn send(socket: &OwnedFd, reply: &Reply) -> bool {
    let packet = reply.encode();
    loop {
        match rustix::net::send(socket, &packet, SendFlags::NOSIGNAL) {
            Ok(_) => return true,
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}

/// The service file for `name`: `NAME.service` in the first of `dirs` holding a usable one,
/// as dbus-daemon's helper looks it up. Files that cannot be used are logged and skipped.
///
/// # Errors
/// [`LaunchError::NotProvided`] when no directory has one.
fn find_service(dirs: &[ServiceDir], name: &str) -> Result<ServiceFile, LaunchError> {
    let not_provided = || LaunchError::NotProvided {
        name: name.to_owned(),
    };
    // Checked when the request was decoded; the file name below must stay in its directory.
    if !is_valid_well_known_name(name) {
        return Err(not_provided());
    }
    let file_name = format!("{name}.service");
    for dir in dirs {
        let path = dir.path.join(&file_name);
        match load(&path) {
            Ok(Some(file)) if file.name == name => return Ok(file),
            Ok(Some(file)) => log::warning!(
                "launch helper: ignoring {}: it provides {}, not {name}",
                path.display(),
                file.name
            ),
            Ok(None) => {}
            Err(e) => log::warning!("launch helper: ignoring a service file: {e}"),
        }
    }
    Err(not_provided())
}

/// Reads and parses the service file at `path`: `None` when there is none or it is not a
/// regular file. It is opened without blocking (a FIFO must not stall the helper) and read up
/// to [`MAX_SERVICE_FILE_SIZE`].
///
/// # Errors
/// It cannot be read, is too large, or does not parse (`path[:line]: reason`).
fn load(path: &Path) -> Result<Option<ServiceFile>, String> {
    let failed = |e: &dyn fmt::Display| format!("{}: {e}", path.display());
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Ok(None);
        }
        Err(e) => return Err(failed(&e)),
    };
    if !file.metadata().map_err(|e| failed(&e))?.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(MAX_SERVICE_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(&e))?;
    if bytes.len() as u64 > MAX_SERVICE_FILE_SIZE {
        return Err(failed(&format!(
            "larger than {MAX_SERVICE_FILE_SIZE} bytes"
        )));
    }
    ServiceFile::parse(&bytes, path)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Makes the forked process the helper: only `socket` (above the standard descriptors) and
/// standard input, output and error left open, standard input (and with `detach` output and
/// error) from `/dev/null`, the log reopened, the name `tramd-launcher`. Gives the socket.
fn isolate(socket: OwnedFd, config: &HelperConfig) -> io::Result<OwnedFd> {
    // The standard descriptors are about to be replaced; keep the socket clear of them.
    let socket = if socket.as_raw_fd() <= 2 {
        rustix::io::fcntl_dupfd_cloexec(&socket, 3)?
    } else {
        socket
    };
    close_other_fds(socket.as_raw_fd())?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let targets: &[RawFd] = if config.detach { &[0, 1, 2] } else { &[0] };
    for &target in targets {
        // SAFETY: `null` is open; dup2 atomically replaces a standard descriptor, which the
        // process owns and nothing holds as an `OwnedFd`.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    drop(null);
    log::configure(config.log_stderr, config.log_syslog);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which this is.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"tramd-launcher".as_ptr(), 0, 0, 0) };
    Ok(socket)
}

/// Closes every descriptor above 2 but `keep`.
fn close_other_fds(keep: RawFd) -> io::Result<()> {
    let keep =
        libc::c_uint::try_from(keep).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let ranges = [
        (3, keep.saturating_sub(1)),
        (keep.saturating_add(1), libc::c_uint::MAX),
    ];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range only closes descriptors. Those in range belong to objects in the
        // bus's frames, which this process never returns to, so none is used again.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
        if rc != 0 {
            return close_listed(keep);
        }
    }
    Ok(())
}

/// [`close_other_fds`] for kernels without `close_range`: closes what `/proc/self/fd` lists.
fn close_listed(keep: libc::c_uint) -> io::Result<()> {
    let fds: Vec<libc::c_int> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &libc::c_int| fd > 2 && libc::c_uint::try_from(fd) != Ok(keep))
        .collect();
    for fd in fds {
        // SAFETY: as in `close_other_fds`; the directory's own descriptor is closed already
        // (EBADF, ignored).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_util::TempDir;

    #[test]
    fn requests_round_trip_and_refuse_garbage() {
        let request = Request {
            id: 0xdead_beef,
            name: "org.example.Service".to_owned(),
        };
        let packet = request.encode();
        assert_eq!(&packet[..5], &[b'S', 0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(Request::decode(&packet), Ok(request));
        let longest = format!("a.{}", "b".repeat(MAX_NAME_LEN - 2));
        let at_limit = Request {
            id: 1,
            name: longest.clone(),
        }
        .encode();
        assert_eq!(at_limit.len(), MAX_REQUEST);
        assert!(Request::decode(&at_limit).is_ok());

        let with_name = |name: &[u8]| [&[START, 1, 0, 0, 0][..], name].concat();
        let cases: &[(&[u8], &str)] = &[
            (b"", "truncated"),
            (b"S", "truncated"),
            (b"S\x01\x00\x00", "truncated"),
            (b"S\x01\x00\x00\x00", "not a well-known bus name"),
            (b"Q\x01\x00\x00\x00org.example.A", "unknown request"),
            (&with_name(b"org/example.A"), "not a well-known bus name"),
            (&with_name(b"../../etc/passwd"), "not a well-known bus name"),
            (&with_name(b"org..example"), "not a well-known bus name"),
            (&with_name(b":1.42"), "not a well-known bus name"),
            (&with_name(b"single"), "not a well-known bus name"),
            (&with_name(b"org.example.A\0"), "not a well-known bus name"),
            (&with_name(b"org.example.\xff"), "name not UTF-8"),
            (&with_name(format!("{longest}b").as_bytes()), "too long"),
        ];
        for (packet, why) in cases {
            assert_eq!(
                Request::decode(packet),
                Err(Malformed(why)),
                "{:?}",
                String::from_utf8_lossy(packet)
            );
        }
    }

    #[test]
    fn replies_round_trip_and_refuse_garbage() {
        let replies = [
            Reply::Started { id: 7, pid: 4242 },
            Reply::Failed {
                id: 8,
                kind: FailureKind::ServiceNotFound,
                text: "The name a.b was not provided by any .service files".to_owned(),
            },
            Reply::Failed {
                id: 9,
                kind: FailureKind::Failed,
                text: String::new(),
            },
            Reply::Exited {
                pid: 4242,
                status: 3 << 8,
            },
            Reply::Exited {
                pid: i32::MAX as u32,
                status: -1,
            },
        ];
        for reply in &replies {
            let packet = reply.encode();
            assert_eq!(Reply::decode(&packet).as_ref(), Ok(reply));
            // Every strict prefix of a fixed-size reply is refused, and so is anything after.
            if !matches!(reply, Reply::Failed { .. }) {
                for len in 0..packet.len() {
                    assert!(
                        Reply::decode(&packet[..len]).is_err(),
                        "{reply:?} cut at {len}"
                    );
                }
                let longer = [&packet[..], b"x"].concat();
                assert_eq!(Reply::decode(&longer), Err(Malformed("trailing bytes")));
            }
        }
        for (code, kind) in KINDS.iter().enumerate() {
            let packet = [FAILED, 1, 0, 0, 0, code as u8];
            let decoded = Reply::decode(&packet);
            assert!(
                matches!(decoded, Ok(Reply::Failed { kind: k, .. }) if k == *kind),
                "{decoded:?}"
            );
        }
        let too_long = [&[FAILED, 1, 0, 0, 0, 0][..], &[b'x'; MAX_TEXT + 1]].concat();
        let cases: &[(&[u8], &str)] = &[
            (b"", "truncated"),
            (b"Z\x01\x00\x00\x00", "unknown reply"),
            (b"R\x01\x00\x00\x00\x00\x00\x00\x00", "not a pid"),
            (b"R\x01\x00\x00\x00\xff\xff\xff\xff", "not a pid"),
            (b"X\x00\x00\x00\x80\x00\x00\x00\x00", "not a pid"),
            (b"F\x01\x00\x00\x00", "truncated"),
            (b"F\x01\x00\x00\x00\x06", "unknown failure kind"),
            (b"F\x01\x00\x00\x00\x00\xc3", "text not UTF-8"),
            (&too_long, "text too long"),
        ];
        for (packet, why) in cases {
            assert_eq!(Reply::decode(packet), Err(Malformed(why)), "{packet:?}");
        }
    }

    #[test]
    fn long_texts_are_clipped_at_a_character() {
        let text = "é".repeat(MAX_TEXT);
        let clipped = clip(&text);
        assert_eq!(clipped.len(), MAX_TEXT);
        assert_eq!(clip(&format!("x{text}")).len(), MAX_TEXT - 1);
        assert_eq!(clip("short"), "short");
        let reply = Reply::Failed {
            id: 1,
            kind: FailureKind::ExecFailed,
            text: format!("x{text}"),
        };
        assert!(Reply::decode(&reply.encode()).is_ok());
    }

    /// `name` under `tmp`, as a service directory.
    fn service_dir(tmp: &TempDir, name: &str) -> ServiceDir {
        let path = tmp.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        ServiceDir {
            path,
            strict_naming: true,
            watch: false,
        }
    }

    fn write(dir: &ServiceDir, file: &str, text: &str) {
        std::fs::write(dir.path.join(file), text).unwrap();
    }

    fn service(name: &str, exec: &str, user: Option<&str>) -> String {
        let user = user.map(|u| format!("User={u}\n")).unwrap_or_default();
        format!("[D-BUS Service]\nName={name}\nExec={exec}\n{user}")
    }

    #[test]
    fn services_are_looked_up_by_file_name_in_order() {
        let tmp = TempDir::new("launch-helper-lookup");
        let first = service_dir(&tmp, "first");
        let second = service_dir(&tmp, "second");
        let dirs = [first.clone(), second.clone()];
        // Found in the second directory only.
        write(
            &second,
            "org.example.A.service",
            &service("org.example.A", "/a2", None),
        );
        // The first directory wins.
        write(
            &first,
            "org.example.B.service",
            &service("org.example.B", "/b1", None),
        );
        write(
            &second,
            "org.example.B.service",
            &service("org.example.B", "/b2", None),
        );
        // Unusable in the first directory: a syntax error, a file for another name, a FIFO
        // (which must not be opened for reading, or the lookup would block), a directory.
        write(
            &first,
            "org.example.C.service",
            "[D-BUS Service]\nName=org.example.C\nExec=\\q\n",
        );
        write(
            &second,
            "org.example.C.service",
            &service("org.example.C", "/c2", None),
        );
        write(
            &first,
            "org.example.D.service",
            &service("org.example.Other", "/d1", None),
        );
        write(
            &second,
            "org.example.D.service",
            &service("org.example.D", "/d2", None),
        );
        rustix::fs::mknodat(
            rustix::fs::CWD,
            first.path.join("org.example.F.service"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        write(
            &second,
            "org.example.F.service",
            &service("org.example.F", "/f2", None),
        );
        std::fs::create_dir(first.path.join("org.example.G.service")).unwrap();
        write(
            &second,
            "org.example.G.service",
            &service("org.example.G", "/g2", None),
        );
        // Only NAME.service provides NAME.
        write(
            &first,
            "other.service",
            &service("org.example.H", "/h1", None),
        );

        let cases = [
            ("org.example.A", Some("/a2")),
            ("org.example.B", Some("/b1")),
            ("org.example.C", Some("/c2")),
            ("org.example.D", Some("/d2")),
            ("org.example.F", Some("/f2")),
            ("org.example.G", Some("/g2")),
            ("org.example.H", None),
            ("org.example.Missing", None),
            ("../second/org.example.A", None),
        ];
        for (name, exec) in cases {
            match (find_service(&dirs, name), exec) {
                (Ok(file), Some(exec)) => assert_eq!(file.exec.as_deref(), Some(exec), "{name}"),
                (Err(e), None) => {
                    assert!(matches!(e, LaunchError::NotProvided { .. }), "{name}: {e}");
                    let (error, text) = e.dbus_error();
                    assert_eq!(error, "org.freedesktop.DBus.Error.Spawn.ServiceNotFound");
                    assert_eq!(
                        text,
                        format!("The name {name} was not provided by any .service files")
                    );
                }
                (got, want) => panic!("{name}: {got:?}, want {want:?}"),
            }
        }
    }

    /// The name of the account the test runs as, from `/etc/passwd`.
    fn my_account() -> Option<String> {
        let me = rustix::process::geteuid().as_raw().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&me.as_str())).then(|| fields[0].to_owned())
        })
    }

    #[test]
    fn start_answers_each_request() {
        let Some(me) = my_account() else {
            eprintln!("skipped: the test's uid has no /etc/passwd entry");
            return;
        };
        let tmp = TempDir::new("launch-helper-start");
        let dir = service_dir(&tmp, "services");
        write(
            &dir,
            "org.example.Exits.service",
            &service("org.example.Exits", "/bin/sh -c 'exit 7'", Some(&me)),
        );
        write(
            &dir,
            "org.example.NoUser.service",
            &service("org.example.NoUser", "/bin/true", None),
        );
        write(
            &dir,
            "org.example.Unknown.service",
            &service(
                "org.example.Unknown",
                "/bin/true",
                Some("tram-no-such-user"),
            ),
        );
        write(
            &dir,
            "org.example.Missing.service",
            &service("org.example.Missing", "/nonexistent/program", Some(&me)),
        );
        let config = HelperConfig {
            service_dirs: vec![dir],
            address: "unix:path=/x,guid=0".to_owned(),
            bus_type: Some("system".to_owned()),
            child_nofile: None,
            detach: false,
            log_stderr: true,
            log_syslog: false,
        };
        let mut launcher = Launcher::new(LaunchMode::AsUser, None);
        let request = |id, name: &str| Request {
            id,
            name: name.to_owned(),
        };

        let reply = start(&mut launcher, &config, &request(1, "org.example.Exits"));
        let Reply::Started { id: 1, pid } = reply else {
            panic!("{reply:?}");
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let exited = loop {
            let found = launcher.reap().into_iter().find_map(|e| match e {
                Event::Exited(e) if e.pid == pid => Some(e),
                _ => None,
            });
            if let Some(e) = found {
                break e;
            }
            assert!(Instant::now() < deadline, "pid {pid} did not exit");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(exited.status.code(), Some(7));

        let failures = [
            (
                "org.example.NoUser",
                FailureKind::FileInvalid,
                "The service file for org.example.NoUser does not name a User".to_owned(),
            ),
            (
                "org.example.Unknown",
                FailureKind::FileInvalid,
                "Cannot start org.example.Unknown: user \"tram-no-such-user\" does not exist"
                    .to_owned(),
            ),
            (
                "org.example.Missing",
                FailureKind::ExecFailed,
                "Failed to execute program org.example.Missing: No such file or directory"
                    .to_owned(),
            ),
            (
                "org.example.Absent",
                FailureKind::ServiceNotFound,
                "The name org.example.Absent was not provided by any .service files".to_owned(),
            ),
        ];
        for (id, (name, kind, text)) in (2..).zip(failures) {
            assert_eq!(
                start(&mut launcher, &config, &request(id, name)),
                Reply::Failed { id, kind, text },
            );
        }
    }

    /// A helper end driven by the test: the bus's [`Helper`] and the other end of its socket.
    fn pair() -> (Helper, OwnedFd) {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        (Helper::over(ours, None).unwrap(), theirs)
    }

    fn next_request(theirs: &OwnedFd) -> Request {
        let mut buf = [0u8; MAX_REQUEST];
        let (read, _) = rustix::net::recv(theirs, &mut buf[..], RecvFlags::DONTWAIT).unwrap();
        Request::decode(&buf[..read]).unwrap()
    }

    fn answer(theirs: &OwnedFd, packet: &[u8]) {
        rustix::net::send(theirs, packet, SendFlags::NOSIGNAL).unwrap();
    }

    #[test]
    fn the_bus_turns_replies_into_events() {
        let (mut helper, theirs) = pair();
        let a = helper.request("org.example.A").unwrap();
        let b = helper.request("org.example.B").unwrap();
        assert_ne!(a, b);
        assert!(!helper.wants_write());
        assert_eq!(next_request(&theirs).name, "org.example.A");
        assert_eq!(next_request(&theirs).name, "org.example.B");
        assert!(helper.receive().is_empty(), "nothing answered yet");

        answer(&theirs, &Reply::Started { id: a, pid: 100 }.encode());
        let failure = Reply::Failed {
            id: b,
            kind: FailureKind::FileInvalid,
            text: "no User".to_owned(),
        };
        answer(&theirs, &failure.encode());
        answer(
            &theirs,
            &Reply::Exited {
                pid: 100,
                status: 3 << 8,
            }
            .encode(),
        );
        let events = helper.receive();
        let [
            Event::Started {
                request,
                name,
                pid: 100,
            },
            Event::Failed {
                request: failed,
                name: failed_name,
                error,
            },
            Event::Exited(exited),
        ] = &events[..]
        else {
            panic!("{events:?}");
        };
        assert_eq!((*request, name.as_str()), (a, "org.example.A"));
        assert_eq!((*failed, failed_name.as_str()), (b, "org.example.B"));
        assert_eq!(
            error.dbus_error(),
            (
                "org.freedesktop.DBus.Error.Spawn.FileInvalid",
                "no User".to_owned()
            )
        );
        assert_eq!((exited.pid, exited.name.as_str()), (100, "org.example.A"));
        assert_eq!(exited.status.code(), Some(3));
        assert_eq!(helper.running(), 0);
        assert!(helper.fd().is_some());
    }

    #[test]
    fn a_bad_reply_gives_the_helper_up() {
        let bad_replies: [(&[u8], &str); 4] = [
            (b"garbage", "it sent a malformed reply: unknown reply"),
            (
                &[STARTED, 99, 0, 0, 0, 1, 0, 0, 0],
                "it answered request 99, which was not made",
            ),
            (
                &[EXITED, 5, 0, 0, 0, 0, 0, 0, 0],
                "it reported pid 5 exited, which it did not start",
            ),
            (&[FAILED; MAX_REPLY + 1], "it sent a reply of 1031 bytes"),
        ];
        for (packet, reason) in bad_replies {
            let (mut helper, theirs) = pair();
            let id = helper.request("org.example.Waiting").unwrap();
            answer(&theirs, packet);
            let events = helper.receive();
            let [
                Event::Failed {
                    request,
                    name,
                    error,
                },
            ] = &events[..]
            else {
                panic!("{reason}: {events:?}");
            };
            assert_eq!((*request, name.as_str()), (id, "org.example.Waiting"));
            assert_eq!(
                error.dbus_error(),
                (
                    "org.freedesktop.DBus.Error.Spawn.Failed",
                    format!(
                        "Cannot start org.example.Waiting: the launch helper is not running \
                         ({reason})"
                    )
                )
            );
            assert!(helper.fd().is_none(), "the socket is closed");
            // The helper reads what was sent, then sees its end closed.
            assert_eq!(next_request(&theirs).id, id);
            let mut buf = [0u8; MAX_REQUEST];
            let end = rustix::net::recv(&theirs, &mut buf[..], RecvFlags::DONTWAIT).unwrap();
            assert_eq!(end.1, 0);
            // Later starts fail at once, without another log line.
            let later = helper.request("org.example.Later").unwrap_err();
            assert!(matches!(later, LaunchError::HelperGone { .. }), "{later}");
            assert!(helper.receive().is_empty());
        }
    }

    #[test]
    fn a_closed_helper_fails_the_waiting_starts() {
        let (mut helper, theirs) = pair();
        let first = helper.request("org.example.A").unwrap();
        let second = helper.request("org.example.B").unwrap();
        answer(&theirs, &Reply::Started { id: first, pid: 10 }.encode());
        drop(theirs);
        let events = helper.receive();
        assert!(
            matches!(&events[..], [
                Event::Started { pid: 10, .. },
                Event::Failed { request, error: LaunchError::HelperGone { reason, .. }, .. },
            ] if *request == second && reason == CLOSED),
            "{events:?}"
        );
        assert_eq!(
            helper.running(),
            0,
            "its services are not followed any more"
        );
    }

    #[test]
    fn requests_wait_for_room_in_the_socket() {
        let (mut helper, theirs) = pair();
        let name = format!("a.{}", "b".repeat(MAX_NAME_LEN - 2));
        let mut sent: u32 = 0;
        while !helper.wants_write() {
            helper.request(&name).unwrap();
            sent += 1;
            assert!(sent < 100_000, "the socket never filled");
        }
        let queued = helper.outbox.len();
        assert_eq!(queued, 1);
        helper.request(&name).unwrap();
        let mut received = 0;
        let mut buf = [0u8; MAX_REQUEST];
        while helper.wants_write() || received < sent + 1 {
            match rustix::net::recv(&theirs, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((read, _)) => {
                    assert_eq!(Request::decode(&buf[..read]).unwrap().id, received + 1);
                    received += 1;
                }
                Err(Errno::AGAIN) => helper.flush(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(received, sent + 1);
        assert_eq!(helper.pending.len(), received as usize);
    }
}
