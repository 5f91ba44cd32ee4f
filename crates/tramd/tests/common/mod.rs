//! The harness shared by tramd's integration tests.
//!
//! [`TestBus::start`] runs the bus under test on a socket in a fresh temporary directory:
//! tramd by default, or dbus-daemon when `TRAM_TEST_BUS=dbus-daemon` (to check the tests
//! themselves against the reference implementation). [`TestBus::tramd`] and
//! [`TestBus::dbus_daemon`] pick one explicitly, for differential tests.
//!
//! Clients: [`RawClient`] (byte-level, via [`TestBus::raw`]), zbus ([`TestBus::zbus`] with
//! [`run`] for a deadline), and the command-line tools `dbus-send`, `gdbus`, `busctl` and Debian's
//! `/usr/bin/python3` with python3-dbus ([`TestBus::python`]). Every wait has a deadline; the bus
//! is killed and reaped on drop, and its stderr is included in failure messages.
// Each test binary uses a different part of the harness, and its items are `pub` for the test
// files rather than for any crate.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub mod boot;
pub mod built;
pub mod daemon;
pub mod raw;
pub mod service;
pub mod value;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use raw::{
    BUS, BUS_PATH, DEADLINE, ERROR, METHOD_CALL, METHOD_RETURN, Msg, NO_AUTO_START,
    NO_REPLY_EXPECTED, RawClient, RawMessage, Recv, SIGNAL, field,
};
pub use service::{Seen, Service};
pub use value::Value;

/// How long an external client program may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Debian's python, which has python3-dbus (the `python3` on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// Well-known error names.
pub mod err {
    /// org.freedesktop.DBus.Error.ServiceUnknown
    pub const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
    /// org.freedesktop.DBus.Error.NameHasNoOwner
    pub const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
    /// org.freedesktop.DBus.Error.NoReply
    pub const NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";
    /// org.freedesktop.DBus.Error.InvalidArgs
    pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
    /// org.freedesktop.DBus.Error.UnknownMethod
    pub const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
    /// org.freedesktop.DBus.Error.UnknownInterface
    pub const UNKNOWN_INTERFACE: &str = "org.freedesktop.DBus.Error.UnknownInterface";
    /// org.freedesktop.DBus.Error.UnknownProperty
    pub const UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";
    /// org.freedesktop.DBus.Error.PropertyReadOnly
    pub const PROPERTY_READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
    /// org.freedesktop.DBus.Error.MatchRuleInvalid
    pub const MATCH_RULE_INVALID: &str = "org.freedesktop.DBus.Error.MatchRuleInvalid";
    /// org.freedesktop.DBus.Error.MatchRuleNotFound
    pub const MATCH_RULE_NOT_FOUND: &str = "org.freedesktop.DBus.Error.MatchRuleNotFound";
    /// org.freedesktop.DBus.Error.AccessDenied
    pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
    /// org.freedesktop.DBus.Error.NotSupported
    pub const NOT_SUPPORTED: &str = "org.freedesktop.DBus.Error.NotSupported";
    /// org.freedesktop.DBus.Error.Failed
    pub const FAILED: &str = "org.freedesktop.DBus.Error.Failed";
}

/// Which bus implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// tramd, the bus under test.
    Tramd,
    /// dbus-daemon, the reference.
    DbusDaemon,
}

impl BusKind {
    /// What this bus should answer, from a table entry written `REFERENCE` or
    /// `REFERENCE | tram: TRAM`: the second form marks a deliberate difference of tramd from
    /// dbus-daemon (tramd never delivers a reply nobody is waiting for, whatever the policy).
    pub fn expected(self, entry: &str) -> String {
        match (self, entry.split_once(" | tram: ")) {
            (BusKind::Tramd, Some((_, tram))) => tram.to_owned(),
            (_, Some((reference, _))) => reference.to_owned(),
            (_, None) => entry.to_owned(),
        }
    }

    /// The kind `TRAM_TEST_BUS` selects (`tramd`, the default, or `dbus-daemon`).
    ///
    /// # Panics
    /// The variable holds anything else.
    pub fn from_env() -> BusKind {
        match std::env::var("TRAM_TEST_BUS").as_deref() {
            Err(_) | Ok("") | Ok("tramd") => BusKind::Tramd,
            Ok("dbus-daemon") => BusKind::DbusDaemon,
            Ok(other) => panic!("TRAM_TEST_BUS={other:?}: expected `tramd` or `dbus-daemon`"),
        }
    }

    fn program(self) -> &'static str {
        match self {
            BusKind::Tramd => env!("CARGO_BIN_EXE_tramd"),
            BusKind::DbusDaemon => "dbus-daemon",
        }
    }
}

/// A running bus on a private socket; killed and cleaned up on drop.
pub struct TestBus {
    kind: BusKind,
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    address: String,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl TestBus {
    /// Starts the bus `TRAM_TEST_BUS` selects.
    pub fn start() -> TestBus {
        TestBus::start_kind(BusKind::from_env())
    }

    /// Starts tramd.
    pub fn tramd() -> TestBus {
        TestBus::start_kind(BusKind::Tramd)
    }

    /// Starts dbus-daemon.
    pub fn dbus_daemon() -> TestBus {
        TestBus::start_kind(BusKind::DbusDaemon)
    }

    /// Starts `kind` as a session bus listening on `unix:path=DIR/bus`, and waits (with a
    /// deadline) for the address it prints.
    ///
    /// # Panics
    /// The bus does not start or print its address in time.
    pub fn start_kind(kind: BusKind) -> TestBus {
        TestBus::launch(kind, None)
    }

    /// Starts `kind` with the configuration file `config` (XML text, written next to the
    /// socket) instead of `--session`.
    pub fn with_config(kind: BusKind, config: &str) -> TestBus {
        TestBus::launch(kind, Some(config))
    }

    fn launch(kind: BusKind, config: Option<&str>) -> TestBus {
        let dir = fresh_dir();
        let socket = dir.join("bus");
        let mut command = Command::new(kind.program());
        match config {
            Some(xml) => {
                let file = dir.join("bus.conf");
                std::fs::write(&file, xml)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
                command.arg(format!("--config-file={}", file.display()))
            }
            None => command.arg("--session"),
        };
        command
            .arg("--nofork")
            .arg("--print-address=1")
            .arg(format!("--address=unix:path={}", socket.display()));
        let Piped {
            child,
            lines,
            stderr,
        } = spawn_piped(&mut command);
        let mut bus = TestBus {
            kind,
            child,
            dir,
            socket,
            address: String::new(),
            stderr,
        };
        match lines.recv_timeout(DEADLINE) {
            Ok(line) => bus.address = line.trim().to_owned(),
            other => panic!(
                "{:?} printed no address ({other:?}); exit: {:?}; stderr:\n{}",
                kind,
                bus.child.try_wait(),
                bus.stderr()
            ),
        }
        let expected = format!("unix:path={}", bus.socket.display());
        assert!(
            bus.address.starts_with(&expected),
            "{kind:?} printed address {:?}, expected it to start with {expected:?}",
            bus.address
        );
        bus
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

    /// The bus process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the bus wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// Whether the bus process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

    /// A zbus connection (Hello done), with a 5-second method timeout.
    ///
    /// # Panics
    /// The connection cannot be made.
    pub fn zbus(&self) -> zbus::Connection {
        let address = self.address.clone();
        run(async move {
            zbus::connection::Builder::address(address.as_str())
                .method_timeout(DEADLINE)
                .build()
                .await
        })
        .unwrap_or_else(|e| panic!("zbus connection: {e}; bus stderr:\n{}", self.stderr()))
    }

    /// Runs `dbus-send --bus=ADDR ARGS…` (`--bus` registers with Hello; dbus-send's
    /// `--address` is `--peer`, which does not).
    pub fn dbus_send(&self, args: &[&str]) -> ToolOutput {
        let addr = format!("--bus={}", self.address);
        run_tool("dbus-send", &[&[addr.as_str()], args].concat(), &self.env())
    }

    /// Runs `gdbus COMMAND --session ARGS…` with `DBUS_SESSION_BUS_ADDRESS` set to this bus.
    /// (`gdbus --address` makes a peer connection: `gdbus emit` then sends its signal before
    /// Hello, which a bus refuses.)
    pub fn gdbus(&self, command: &str, args: &[&str]) -> ToolOutput {
        run_tool(
            "gdbus",
            &[&[command, "--session"], args].concat(),
            &self.env(),
        )
    }

    /// Runs `busctl --address=ADDR ARGS…`.
    pub fn busctl(&self, args: &[&str]) -> ToolOutput {
        let addr = format!("--address={}", self.address);
        run_tool(
            "busctl",
            &[&[addr.as_str(), "--no-pager"], args].concat(),
            &self.env(),
        )
    }

    /// Runs a python3-dbus snippet. The prelude imports `dbus`, `os`, `sys` and binds `bus` to a
    /// `dbus.bus.BusConnection` on this bus; the address is also in `TRAM_BUS`.
    pub fn python(&self, script: &str) -> ToolOutput {
        let full = format!(
            "import dbus, os, sys\nbus = dbus.bus.BusConnection(os.environ['TRAM_BUS'])\n{script}"
        );
        run_tool(PYTHON, &["-c", &full], &self.env())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TRAM_BUS", self.address.clone()),
            ("DBUS_SESSION_BUS_ADDRESS", self.address.clone()),
            ("DBUS_SYSTEM_BUS_ADDRESS", self.address.clone()),
        ]
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The outcome of an external client program.
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ToolOutput {
    /// Asserts success and gives stdout.
    ///
    /// # Panics
    /// The program failed.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "{} failed: {self:#?}", self.command);
        &self.stdout
    }

    /// Asserts failure and gives stderr.
    ///
    /// # Panics
    /// The program succeeded.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert!(
            !self.status.success(),
            "{} unexpectedly succeeded: {self:#?}",
            self.command
        );
        &self.stderr
    }
}

/// Runs `program` with `args` and extra `env`, killing it after [`TOOL_TIMEOUT`].
///
/// # Panics
/// The program cannot start or does not finish in time.
pub fn run_tool(program: &str, args: &[&str], env: &[(&str, String)]) -> ToolOutput {
    let command = format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TOOL_TIMEOUT) {
        Ok(out) => out,
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(-1)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let partial = rx.recv_timeout(DEADLINE);
            panic!("{command} did not finish within {TOOL_TIMEOUT:?}: {partial:?}");
        }
    };
    let out = out.unwrap_or_else(|e| panic!("waiting for {command}: {e}"));
    ToolOutput {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a future to completion with zbus's executor on a helper thread, failing the test if it
/// takes longer than [`DEADLINE`].
///
/// # Panics
/// The deadline passes.
pub fn run<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(zbus::block_on(fut));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("zbus operation timed out"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("zbus operation panicked"),
    }
}

/// The name of the D-Bus error in a zbus error, if it is one.
pub fn zbus_error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        zbus::Error::FDO(fdo) => Some(zbus::DBusError::name(fdo.as_ref()).to_string()),
        _ => None,
    }
}

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "tramd-test-{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Locks `m`, through a poisoning panic of another test thread.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process whose output the test reads: standard output line by line, standard error
/// collected whole (for failure messages).
pub struct Piped {
    /// The process.
    pub child: Child,
    /// Its standard output, a line at a time.
    pub lines: mpsc::Receiver<String>,
    /// Everything it wrote to standard error so far.
    pub stderr: Arc<Mutex<Vec<u8>>>,
}

/// Starts `command` with standard input from `/dev/null` and both outputs read by threads.
/// Output is drained even when nobody reads `lines` any more, so the child never blocks on a
/// full pipe.
///
/// # Panics
/// It cannot be started.
pub fn spawn_piped(command: &mut Command) -> Piped {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut err) = child.stderr.take() {
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                lock(&sink).extend_from_slice(&buf[..n]);
            }
        });
    }
    let (tx, lines) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
    }
    Piped {
        child,
        lines,
        stderr,
    }
}
