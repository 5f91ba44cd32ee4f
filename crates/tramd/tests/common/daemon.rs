//! A bus started the way a harness or an init system starts dbus-daemon: from a configuration
//! file, with any command line, and clients that connect as other users.
//!
//! [`Launch`] builds the command line (`--config-file=DIR/bus.conf --nofork --print-address=1`
//! by default) for either implementation; every `@DIR@` in the configuration text and the extra
//! files becomes the launch's private directory, so configuration files can name their own
//! socket and include files. [`Launch::start`] waits for the printed address; [`Launch::fail`]
//! expects the bus to refuse to start and gives its output.
//!
//! [`Daemon::connect_as`] opens a connection whose peer credentials are another user's: the
//! connecting thread alone takes that uid and gid for the `connect(2)` (the kernel records the
//! peer credentials then), so the test process itself stays root.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::raw::{DEADLINE, RawClient, RawMessage, Recv};
use super::{BusKind, Piped, ToolOutput, lock, run_tool, spawn_piped};

/// The uid and gid of `nobody`.
pub const NOBODY: (u32, u32) = (65534, 65534);
/// The uid and gid of `daemon`.
pub const DAEMON: (u32, u32) = (1, 1);

/// The program that runs `kind`.
pub fn program(kind: BusKind) -> &'static str {
    match kind {
        BusKind::Tramd => env!("CARGO_BIN_EXE_tramd"),
        BusKind::DbusDaemon => "dbus-daemon",
    }
}

/// A configuration file: the doctype dbus-daemon expects, then `<busconfig>body</busconfig>`.
/// The doctype is on line 1 and the root element opens on line 2, so `body`'s first line is the
/// file's line 3.
pub fn busconfig(body: &str) -> String {
    format!(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
         \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n{body}\n\
         </busconfig>\n"
    )
}

/// A session-like configuration listening on `@DIR@/bus` with the given policy rules added to a
/// permissive default policy (`<allow … />` lines and whole `<policy>` elements both fit, as
/// `extra` goes after the default policy).
pub fn open_config(extra: &str) -> String {
    busconfig(&format!(
        "<type>session</type>\n<listen>unix:path=@DIR@/bus</listen>\n<auth>EXTERNAL</auth>\n\
         <policy context=\"default\">\n<allow user=\"*\"/>\n<allow send_destination=\"*\" \
         eavesdrop=\"true\"/>\n<allow eavesdrop=\"true\"/>\n<allow own=\"*\"/>\n</policy>\n{extra}"
    ))
}

/// How a bus is to be started.
#[derive(Clone)]
pub struct Launch {
    kind: BusKind,
    config: Option<String>,
    files: Vec<(String, String)>,
    args: Vec<String>,
    defaults: bool,
}

impl Launch {
    /// `kind` with no configuration yet.
    pub fn new(kind: BusKind) -> Launch {
        Launch {
            kind,
            config: None,
            files: Vec::new(),
            args: Vec::new(),
            defaults: true,
        }
    }

    /// The configuration text, written to `@DIR@/bus.conf` and passed as `--config-file`.
    pub fn config(mut self, xml: &str) -> Launch {
        self.config = Some(xml.to_owned());
        self
    }

    /// Another file in the private directory (`name` may contain `/`; directories are made).
    pub fn file(mut self, name: &str, text: &str) -> Launch {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    /// An extra argument (`@DIR@` is replaced).
    pub fn arg(mut self, arg: &str) -> Launch {
        self.args.push(arg.to_owned());
        self
    }

    /// Only the arguments given with [`Launch::arg`] (and `--config-file` when a configuration
    /// was given): no `--nofork --print-address=1`.
    pub fn bare(mut self) -> Launch {
        self.defaults = false;
        self
    }

    /// Which implementation this launches.
    pub fn kind(&self) -> BusKind {
        self.kind
    }

    /// Starts the bus and waits for the address on its standard output. The socket is taken
    /// from the address (`unix:path=…`).
    ///
    /// # Panics
    /// No address is printed before the deadline.
    pub fn start(&self) -> Daemon {
        let (dir, command) = self.prepare();
        let mut daemon = Daemon::spawn(self.kind, dir, command);
        let line = daemon.next_line().unwrap_or_else(|| {
            panic!(
                "{:?} printed no address; exit: {:?}; stderr:\n{}",
                self.kind,
                daemon.child.as_mut().map(Child::try_wait),
                daemon.stderr()
            )
        });
        daemon.set_address(&line);
        daemon
    }

    /// Runs the bus expecting it to exit by itself (a refused configuration, `--version`,
    /// `--introspect`, a `--fork` parent) within the deadline.
    ///
    /// # Panics
    /// It is still running after the deadline (it is killed first).
    pub fn run(&self) -> Exited {
        let (dir, mut command) = self.prepare();
        let what = format!("{command:?}");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(DEADLINE * 2) {
            Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
            Err(_) => {
                kill(pid);
                panic!("{what} did not exit within {:?}", DEADLINE * 2);
            }
        };
        Exited {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir,
        }
    }

    /// Runs the bus expecting it to refuse to start; gives its standard error.
    ///
    /// # Panics
    /// It starts (prints an address and keeps running) or exits successfully.
    pub fn fail(&self) -> String {
        let out = self.run();
        assert!(
            !out.status.success(),
            "{:?} accepted the configuration: {out:#?}",
            self.kind
        );
        out.stderr
    }

    fn prepare(&self) -> (WorkDir, Command) {
        let dir = WorkDir::new();
        let fill = |s: &str| s.replace("@DIR@", &dir.path().display().to_string());
        for (name, text) in &self.files {
            dir.write(name, &fill(text));
        }
        let mut command = Command::new(program(self.kind));
        if let Some(xml) = &self.config {
            let file = dir.write("bus.conf", &fill(xml));
            command.arg(format!("--config-file={}", file.display()));
        }
        if self.defaults {
            command.args(["--nofork", "--print-address=1"]);
        }
        command.args(self.args.iter().map(|a| fill(a)));
        (dir, command)
    }
}

/// A bus that exited by itself.
#[derive(Debug)]
pub struct Exited {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The private directory, kept until this is dropped.
    pub dir: WorkDir,
}

/// A running bus; killed (and its directory removed) on drop.
pub struct Daemon {
    kind: BusKind,
    child: Option<Child>,
    pid: u32,
    dir: WorkDir,
    socket: PathBuf,
    address: String,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Daemon {
    fn spawn(kind: BusKind, dir: WorkDir, mut command: Command) -> Daemon {
        let Piped {
            child,
            lines,
            stderr,
        } = spawn_piped(&mut command);
        Daemon {
            kind,
            pid: child.id(),
            child: Some(child),
            dir,
            socket: PathBuf::new(),
            address: String::new(),
            lines,
            stderr,
        }
    }

    /// Takes over a bus that a `--fork` run left behind: `pid` is the daemon's, `address` what
    /// it printed. It is killed on drop like any other.
    pub fn adopt(kind: BusKind, exited: Exited, pid: u32, address: &str) -> Daemon {
        let (_tx, lines) = mpsc::channel();
        let mut daemon = Daemon {
            kind,
            child: None,
            pid,
            dir: exited.dir,
            socket: PathBuf::new(),
            address: String::new(),
            lines,
            stderr: Arc::new(Mutex::new(exited.stderr.into_bytes())),
        };
        daemon.set_address(address);
        daemon
    }

    fn set_address(&mut self, line: &str) {
        self.address = line.trim().to_owned();
        let path = self
            .address
            .strip_prefix("unix:path=")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("{:?} printed address {:?}", self.kind, self.address));
        self.socket = PathBuf::from(path);
    }

    /// The next line the bus prints on standard output, waiting up to the deadline.
    pub fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(DEADLINE).ok()
    }

    /// Which implementation this is.
    pub fn kind(&self) -> BusKind {
        self.kind
    }

    /// The address the bus printed.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The private directory (`@DIR@`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bus process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the bus wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// Whether the bus process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => rustix::process::Pid::from_raw(self.pid as i32)
                .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok()),
        }
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        signal(self.pid, rustix::process::Signal::HUP);
    }

    /// Sends SIGTERM (stop).
    pub fn sigterm(&self) {
        signal(self.pid, rustix::process::Signal::TERM);
    }

    /// Rewrites a file in the private directory (`@DIR@` replaced), e.g. `bus.conf` before a
    /// reload.
    pub fn rewrite(&self, name: &str, text: &str) {
        let text = text.replace("@DIR@", &self.dir().display().to_string());
        self.dir.write(name, &text);
    }

    /// A raw client: connected, authenticated (with fd passing) and registered with Hello.
    pub fn raw(&self) -> RawClient {
        let mut c = self.raw_unauthenticated();
        c.authenticate(true);
        c.hello();
        c
    }

    /// A raw client that has only connected.
    pub fn raw_unauthenticated(&self) -> RawClient {
        RawClient::connect(&self.socket, Some(Arc::clone(&self.stderr)))
    }

    /// A registered raw client whose peer credentials are `(uid, gid)` with no supplementary
    /// groups.
    ///
    /// # Panics
    /// The bus refuses the connection.
    pub fn raw_as(&self, (uid, gid): (u32, u32)) -> RawClient {
        match self.try_raw_as((uid, gid)) {
            Ok(c) => c,
            Err(e) => panic!(
                "connecting as {uid}:{gid}: {e}; bus stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Like [`Daemon::raw_as`], reporting how the bus refused instead of panicking.
    ///
    /// # Errors
    /// The handshake or Hello failed: what happened.
    pub fn try_raw_as(&self, ids: (u32, u32)) -> Result<RawClient, String> {
        let mut c = connect_as(&self.socket, ids, Some(Arc::clone(&self.stderr)))?;
        handshake(&mut c, ids.0)?;
        try_hello(&mut c)?;
        Ok(c)
    }

    /// Like [`Daemon::raw`], reporting how the bus refused instead of panicking.
    ///
    /// # Errors
    /// The handshake or Hello failed: what happened.
    pub fn try_raw(&self) -> Result<RawClient, String> {
        let mut c = self.raw_unauthenticated();
        handshake(&mut c, rustix::process::getuid().as_raw())?;
        try_hello(&mut c)?;
        Ok(c)
    }

    /// A connection as `ids` that has only connected.
    ///
    /// # Errors
    /// `connect(2)` failed.
    pub fn connect_as(&self, ids: (u32, u32)) -> Result<RawClient, String> {
        connect_as(&self.socket, ids, Some(Arc::clone(&self.stderr)))
    }

    /// Runs `program args…` with the bus address in `DBUS_SESSION_BUS_ADDRESS`,
    /// `DBUS_SYSTEM_BUS_ADDRESS` and `TRAM_BUS`.
    pub fn tool(&self, program: &str, args: &[&str]) -> ToolOutput {
        run_tool(program, args, &self.env())
    }

    /// Runs `program args…` as `ids` (through `setpriv`), with the bus address in the
    /// environment as for [`Daemon::tool`].
    pub fn tool_as(&self, (uid, gid): (u32, u32), program: &str, args: &[&str]) -> ToolOutput {
        let reuid = format!("--reuid={uid}");
        let regid = format!("--regid={gid}");
        let mut full = vec![reuid.as_str(), regid.as_str(), "--clear-groups", program];
        full.extend_from_slice(args);
        run_tool("setpriv", &full, &self.env())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TRAM_BUS", self.address.clone()),
            ("DBUS_SESSION_BUS_ADDRESS", self.address.clone()),
            ("DBUS_SYSTEM_BUS_ADDRESS", self.address.clone()),
        ]
    }

    /// Waits for the bus to exit by itself; its status, or `None` after the deadline.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        match &mut self.child {
            Some(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => kill(self.pid),
        }
    }
}

/// A fresh directory under the temporary directory, readable and searchable by every user (so
/// that clients running as other users reach the socket); removed on drop.
#[derive(Debug)]
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// Makes the directory.
    ///
    /// # Panics
    /// It cannot be made.
    pub fn new() -> WorkDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "tramd-conf-{}-{}-{nanos:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        WorkDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (making its parent directories) and gives its path.
    ///
    /// # Panics
    /// The file cannot be written.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let file = self.0.join(name);
        if let Some(parent) = file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        file
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects to `socket` from a thread that has taken `uid` and `gid` (and no supplementary
/// groups), so that the bus sees those peer credentials.
///
/// # Errors
/// The credentials cannot be taken or `connect(2)` fails.
pub fn connect_as(
    socket: &Path,
    (uid, gid): (u32, u32),
    bus_stderr: Option<Arc<Mutex<Vec<u8>>>>,
) -> Result<RawClient, String> {
    let socket = socket.to_owned();
    let worker = thread::spawn(move || -> Result<RawClient, String> {
        drop_thread_credentials(uid, gid)?;
        Ok(RawClient::connect(&socket, bus_stderr))
    });
    worker
        .join()
        .map_err(|_| format!("connecting as {uid}:{gid} failed (see the panic above)"))?
}

/// Changes the calling thread's (and only that thread's) credentials. The raw system calls act
/// on the thread alone, unlike libc's wrappers, which change every thread of the process.
fn drop_thread_credentials(uid: u32, gid: u32) -> Result<(), String> {
    let check = |what: &str, r: libc::c_long| {
        if r == 0 {
            Ok(())
        } else {
            Err(format!("{what}: {}", std::io::Error::last_os_error()))
        }
    };
    // SAFETY: setgroups with a count of zero reads no memory; the call only changes the
    // credentials of this thread, which is about to end.
    check("setgroups", unsafe {
        libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>())
    })?;
    // SAFETY: setresgid takes three integers and changes only this thread's credentials.
    check("setresgid", unsafe {
        libc::syscall(libc::SYS_setresgid, gid, gid, gid)
    })?;
    // SAFETY: setresuid takes three integers and changes only this thread's credentials.
    check("setresuid", unsafe {
        libc::syscall(libc::SYS_setresuid, uid, uid, uid)
    })
}

/// The SASL handshake as `uid` (EXTERNAL, unix fds, BEGIN), reporting a refusal as an error.
///
/// # Errors
/// The bus did not answer `OK` and `AGREE_UNIX_FD`.
pub fn handshake(c: &mut RawClient, uid: u32) -> Result<(), String> {
    let hex: String = uid
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hs = format!("\0AUTH EXTERNAL {hex}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
    c.try_write_all(hs.as_bytes())
        .map_err(|e| format!("writing the handshake: {e}"))?;
    let ok = read_sasl_line(c)?;
    let guid = ok
        .strip_prefix("OK ")
        .ok_or_else(|| format!("SASL answer {ok:?}"))?;
    c.guid = guid.to_owned();
    let agree = read_sasl_line(c)?;
    if agree != "AGREE_UNIX_FD" {
        return Err(format!("SASL answer to NEGOTIATE_UNIX_FD: {agree:?}"));
    }
    Ok(())
}

/// Sends Hello and waits for the reply and the NameAcquired that follows.
///
/// # Errors
/// The bus closed the connection or answered with an error.
pub fn try_hello(c: &mut RawClient) -> Result<String, String> {
    let serial = c.next_serial();
    c.try_write_all(&RawMessage::bus_call("Hello", vec![]).encode(serial))
        .map_err(|e| format!("sending Hello: {e}"))?;
    let deadline = Instant::now() + DEADLINE;
    let mut name = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_timeout(left) {
            Recv::Msg(m) if m.reply_serial == Some(serial) => {
                if !m.is_return() {
                    return Err(format!("Hello: {}", m.describe()));
                }
                let n = m.str_arg(0).unwrap_or_default().to_owned();
                c.unique_name = n.clone();
                name = Some(n);
            }
            Recv::Msg(m)
                if m.is_bus_signal("NameAcquired")
                    && name.is_some()
                    && m.str_arg(0) == name.as_deref() =>
            {
                return Ok(name.unwrap_or_default());
            }
            Recv::Msg(_) => {}
            Recv::Closed => return Err("the bus closed the connection".into()),
            Recv::Timeout => return Err("no answer to Hello".into()),
        }
    }
}

/// Reads one SASL line byte by byte, so nothing after it is taken from the socket.
fn read_sasl_line(c: &mut RawClient) -> Result<String, String> {
    let mut sock = c.socket();
    let deadline = Instant::now() + DEADLINE;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no SASL answer (so far {:?})",
                String::from_utf8_lossy(&line)
            ));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut byte = [0u8];
        match sock.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "the bus closed the connection during SASL (after {:?})",
                    String::from_utf8_lossy(&line)
                ));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err("the bus reset the connection during SASL".into());
            }
            Err(e) => return Err(format!("SASL read: {e}")),
        }
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(-1)) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn kill(pid: u32) {
    signal(pid, rustix::process::Signal::KILL);
}

/// A service on its own thread answering `Echo` (any path and interface) with its arguments and
/// anything else with UnknownMethod; stopped on drop.
pub struct EchoService {
    /// The service connection's unique name.
    pub unique_name: String,
    sock: std::os::unix::net::UnixStream,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoService {
    /// Starts serving on `client`, which already owns whatever names it should.
    ///
    /// # Panics
    /// The socket cannot be cloned.
    pub fn serve(mut client: RawClient) -> EchoService {
        let sock = client
            .socket()
            .try_clone()
            .expect("cloning the service socket");
        let unique_name = client.unique_name.clone();
        let thread = thread::spawn(move || {
            loop {
                let call = match client.recv_timeout(Duration::from_secs(120)) {
                    Recv::Msg(m) if m.mtype == super::raw::METHOD_CALL => *m,
                    Recv::Msg(_) => continue,
                    Recv::Timeout | Recv::Closed => return,
                };
                if call.flags & super::raw::NO_REPLY_EXPECTED != 0 {
                    continue;
                }
                let reply = if call.member.as_deref() == Some("Echo") {
                    RawMessage::reply_to(&call, None).args(call.body.clone())
                } else {
                    RawMessage::reply_to(&call, Some("org.freedesktop.DBus.Error.UnknownMethod"))
                };
                let serial = client.next_serial();
                if client.try_write_all(&reply.encode(serial)).is_err() {
                    return;
                }
            }
        });
        EchoService {
            unique_name,
            sock,
            thread: Some(thread),
        }
    }

    /// Connects to `bus`, takes `name` if given, and serves.
    ///
    /// # Panics
    /// The name cannot be taken.
    pub fn spawn(bus: &Daemon, name: Option<&str>) -> EchoService {
        let mut client = bus.raw();
        if let Some(name) = name {
            assert_eq!(
                client.request_name(name, 4),
                1,
                "the service could not own {name}"
            );
        }
        EchoService::serve(client)
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Like [`RawClient::sync`], with a round trip through `GetId` instead of `Peer.Ping` (which
/// the stock system policy does not open): every message that arrived before the reply.
pub fn settle(c: &mut RawClient) -> Vec<super::raw::Msg> {
    let serial = c.send(&RawMessage::bus_call("GetId", vec![]));
    let mut seen = Vec::new();
    loop {
        let m = c.recv();
        if m.reply_serial == Some(serial) {
            assert!(m.is_return(), "GetId failed: {}", m.describe());
            return seen;
        }
        seen.push(m);
    }
}
