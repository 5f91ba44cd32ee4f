//! Starting each bus fresh on a private socket, reading its CPU time and memory, and leaving
//! nothing behind.
//!
//! Every bus runs in a process group of its own, with `PR_SET_PDEATHSIG` so that it dies with
//! the harness even when the harness is killed; dropping a [`RunningBus`] kills the whole group
//! and reaps it. dbus-broker is started the way a systemd user session starts it — its launcher
//! under socket activation — so the process measured is the launcher's child `dbus-broker`, which
//! the harness adopts (it is a child subreaper) and reaps as well.

use std::io::{self, Read};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::cleanup::{self, Item, Registered};
use crate::client::Client;

/// How long a bus may take to become ready before the harness gives up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the systemd journal listens; dbus-broker's launcher refuses to start without it.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// A bus implementation the harness knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BusKind {
    /// This project's bus.
    Tramd,
    /// Another build of tramd to compare with (`--baseline`), such as the last release.
    TramdBaseline,
    /// The reference implementation.
    DbusDaemon,
    /// The bus of systemd-based distributions, started through its launcher.
    DbusBroker,
    /// The Rust bus from the zbus project.
    Busd,
}

impl BusKind {
    /// Every kind, tramd first.
    pub(crate) const ALL: &'static [BusKind] = &[
        BusKind::Tramd,
        BusKind::TramdBaseline,
        BusKind::DbusDaemon,
        BusKind::DbusBroker,
        BusKind::Busd,
    ];

    /// Its name on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BusKind::Tramd => "tramd",
            BusKind::TramdBaseline => "tramd-base",
            BusKind::DbusDaemon => "dbus-daemon",
            BusKind::DbusBroker => "dbus-broker",
            BusKind::Busd => "busd",
        }
    }

    /// The kind called `name` on the command line.
    pub(crate) fn from_name(name: &str) -> Option<BusKind> {
        BusKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Whether it is one of the other buses (not a build of tramd).
    pub(crate) fn is_peer(self) -> bool {
        !matches!(self, BusKind::Tramd | BusKind::TramdBaseline)
    }

    /// Whether the bus prints its address once it listens (dbus-broker's socket is bound by
    /// its activator before the bus runs, so it has no such moment).
    pub(crate) fn prints_address(self) -> bool {
        self != BusKind::DbusBroker
    }
}

/// The programs found for one bus kind.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The bus itself (dbus-broker's launcher, for dbus-broker).
    program: PathBuf,
    /// `systemd-socket-activate`, for dbus-broker.
    activator: Option<PathBuf>,
    /// The `dbus-broker` binary, to ask its version.
    broker: Option<PathBuf>,
}

/// What the harness set up once for all buses: the binaries found and, for dbus-broker, a
/// journal socket stand-in. Dropping it removes the stand-in.
pub(crate) struct Setup {
    found: Vec<(BusKind, Binaries)>,
    /// Kept for its drop, which removes the socket; it outlives every bus.
    _journal: Option<JournalStandIn>,
    subreaper: bool,
    serial: AtomicU32,
}

impl Setup {
    /// Looks for the buses in `wanted`, reporting on stderr those that are missing, and prepares
    /// the process environment (file limit, child subreaper, journal socket). `baseline` is the
    /// tramd binary that [`BusKind::TramdBaseline`] runs.
    pub(crate) fn new(wanted: &[BusKind], baseline: Option<&Path>) -> Setup {
        raise_file_limit();
        let subreaper = rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .inspect_err(|e| eprintln!("tram-bench: cannot become a child subreaper: {e}"))
            .is_ok();
        let mut found = Vec::new();
        let mut journal = None;
        for &kind in wanted {
            match binaries(kind, baseline) {
                Ok(b) => {
                    if kind == BusKind::DbusBroker && journal.is_none() {
                        match JournalStandIn::ensure() {
                            Ok(j) => journal = Some(j),
                            Err(e) => {
                                eprintln!(
                                    "tram-bench: dbus-broker skipped: no journal socket at \
                                     {JOURNAL_SOCKET} and none can be made: {e}"
                                );
                                continue;
                            }
                        }
                    }
                    found.push((kind, b));
                }
                Err(why) => eprintln!("tram-bench: {} skipped: {why}", kind.name()),
            }
        }
        Setup {
            found,
            _journal: journal,
            subreaper,
            serial: AtomicU32::new(0),
        }
    }

    /// The buses that can be run, in [`BusKind::ALL`] order.
    pub(crate) fn buses(&self) -> Vec<BusKind> {
        self.found.iter().map(|(k, _)| *k).collect()
    }

    /// The first line of `--version` of a bus, for the record.
    pub(crate) fn version(&self, kind: BusKind) -> Option<String> {
        let b = self.binaries(kind).ok()?;
        let program = b.broker.as_ref().unwrap_or(&b.program);
        let out = Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())?
            .trim()
            .to_owned();
        Some(line)
    }

    fn binaries(&self, kind: BusKind) -> io::Result<&Binaries> {
        self.found
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b)
            .ok_or_else(|| io::Error::other(format!("{} is not available", kind.name())))
    }

    /// A fresh, empty private directory for one bus instance.
    fn private_dir(&self, kind: BusKind) -> io::Result<PathBuf> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "{}{}-{}-{n}",
            cleanup::DIR_PREFIX,
            std::process::id(),
            kind.name()
        ));
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// A running bus, its process group killed and reaped on drop.
pub(crate) struct RunningBus {
    child: Child,
    /// The process whose CPU time and memory are the bus's (the broker, for dbus-broker).
    measured: Pid,
    /// dbus-broker's broker process, a grandchild the harness has adopted.
    adopted: Option<Pid>,
    subreaper: bool,
    dir: PathBuf,
    /// Keeps the process group, the directory and the adopted broker registered for cleanup on
    /// an interruption; dropped after `drop` has cleaned them up.
    registered: Vec<Registered>,
    /// The address clients connect to.
    pub(crate) address: String,
    /// From exec to the address printed, for buses that print one.
    pub(crate) address_after: Option<Duration>,
    /// From exec to the first Hello answered.
    pub(crate) hello_after: Duration,
}

/// How to start a bus: normally, or under a wrapper such as valgrind.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wrapper {
    /// The wrapper program and its arguments, placed before the bus's own command line.
    pub(crate) command: Vec<String>,
}

impl RunningBus {
    /// Starts `kind` on a fresh socket, waits until it answers Hello, and returns it.
    pub(crate) fn start(setup: &Setup, kind: BusKind) -> io::Result<RunningBus> {
        RunningBus::start_wrapped(setup, kind, &Wrapper::default())
    }

    /// Like [`RunningBus::start`], with the bus's command line prefixed by `wrapper`.
    pub(crate) fn start_wrapped(
        setup: &Setup,
        kind: BusKind,
        wrapper: &Wrapper,
    ) -> io::Result<RunningBus> {
        let bins = setup.binaries(kind)?;
        let dir = setup.private_dir(kind)?;
        let dir_registered = Registered::new(Item::Dir(dir.clone()));
        let socket = dir.join("bus");
        let address = format!("unix:path={}", socket.display());
        let mut argv: Vec<String> = wrapper.command.clone();
        let mut cmd_env: Vec<(&str, String)> = Vec::new();
        match kind {
            BusKind::Tramd | BusKind::TramdBaseline | BusKind::DbusDaemon => {
                argv.push(bins.program.display().to_string());
                argv.extend(
                    ["--session", "--nofork", "--print-address=1"]
                        .iter()
                        .map(|s| s.to_string()),
                );
                argv.push(format!("--address={address}"));
            }
            BusKind::Busd => {
                argv.push(bins.program.display().to_string());
                argv.extend(["--print-address".to_owned(), "--address".to_owned()]);
                argv.push(address.clone());
            }
            BusKind::DbusBroker => {
                let activator = bins
                    .activator
                    .as_ref()
                    .ok_or_else(|| io::Error::other("systemd-socket-activate not found"))?;
                argv.push(activator.display().to_string());
                argv.extend([
                    "-E".to_owned(),
                    "XDG_RUNTIME_DIR".to_owned(),
                    "-l".to_owned(),
                ]);
                argv.push(socket.display().to_string());
                argv.push(bins.program.display().to_string());
                argv.extend(["--scope".to_owned(), "user".to_owned()]);
                // The launcher connects to the user bus at $XDG_RUNTIME_DIR/bus: to itself.
                cmd_env.push(("XDG_RUNTIME_DIR", dir.display().to_string()));
            }
        }
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::other("empty command line"))?;
        let mut cmd = Command::new(program);
        // Only the address is read from standard output; a bus that prints none gets no pipe
        // it could fill.
        let stdout = if kind.prints_address() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.args(args)
            .envs(cmd_env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only makes system calls
        // that are async-signal-safe (prctl, sigprocmask); it touches no memory shared with the
        // parent.
        unsafe {
            cmd.pre_exec(|| {
                cleanup::unblock_signals()?;
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(io::Error::from)
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(io::Error::new(e.kind(), format!("starting {program}: {e}")));
            }
        };
        // `spawn` returns once the exec has replaced the child (it waits for the close-on-exec
        // pipe that reports exec failures): the clock starts at exec, and the harness's own
        // fork does not count against the bus.
        let exec_at = Instant::now();
        let measured = Pid::from_child(&child);
        let group_registered = Registered::new(Item::Group(measured));
        // From here on, dropping `bus` cleans up whatever happens next.
        let mut bus = RunningBus {
            child,
            measured,
            adopted: None,
            subreaper: setup.subreaper,
            dir,
            registered: vec![dir_registered, group_registered],
            address,
            address_after: None,
            hello_after: Duration::ZERO,
        };
        let deadline = exec_at + READY_TIMEOUT;
        if kind.prints_address() {
            let stdout = bus
                .child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?;
            let line = read_line_until(stdout, deadline)?;
            bus.address_after = Some(exec_at.elapsed());
            if line.trim().is_empty() {
                return Err(io::Error::other("the bus printed no address"));
            }
            bus.address = line.trim().to_owned();
        } else {
            wait_for_path(&socket, deadline)?;
        }
        first_hello(&bus.address, deadline)?;
        bus.hello_after = exec_at.elapsed();
        if kind == BusKind::DbusBroker {
            let broker = find_child(bus.measured, "dbus-broker", deadline)?;
            bus.measured = broker;
            bus.adopted = Some(broker);
            bus.registered.push(Registered::new(Item::Process(broker)));
        }
        Ok(bus)
    }

    /// Nanoseconds the bus process (all its threads) has spent on a CPU so far.
    pub(crate) fn cpu_ns(&self) -> u64 {
        process_cpu_ns(self.measured)
    }

    /// The bus process's resident set, in KiB.
    pub(crate) fn rss_kib(&self) -> io::Result<u64> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.measured.as_raw_nonzero()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }

    /// Asks the bus to exit (SIGTERM) and waits for it, so that tools wrapping it (valgrind)
    /// can write their results; kills it if it has not exited by `timeout`.
    pub(crate) fn terminate(mut self, timeout: Duration) -> io::Result<()> {
        let pid = Pid::from_child(&self.child);
        rustix::process::kill_process(pid, Signal::TERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other("the bus did not exit on SIGTERM"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningBus {
    fn drop(&mut self) {
        let group = Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.adopted {
            // Outside the launcher's group or not, it goes now; it is ours to reap once its
            // parent has gone (we are a child subreaper).
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            if self.subreaper {
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Nanoseconds `pid` (all its threads) has spent on a CPU, from `/proc/PID/task/*/schedstat`;
/// 0 if the process is gone.
pub(crate) fn process_cpu_ns(pid: Pid) -> u64 {
    let tasks = format!("/proc/{}/task", pid.as_raw_nonzero());
    let Ok(dir) = std::fs::read_dir(tasks) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// A datagram socket at the journal's path that swallows whatever is sent to it, made only when
/// no journal listens there; the socket file is removed on drop.
struct JournalStandIn {
    made: Option<(PathBuf, u64, Registered)>,
}

impl JournalStandIn {
    fn ensure() -> io::Result<JournalStandIn> {
        let path = Path::new(JOURNAL_SOCKET);
        let probe = UnixDatagram::unbound()?;
        match probe.connect(path) {
            Ok(()) => return Ok(JournalStandIn { made: None }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // A socket file nobody listens on: left over, replace it.
                std::fs::remove_file(path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let socket = UnixDatagram::bind(path)?;
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path)?);
        thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while socket.recv(&mut buf).is_ok() {}
            })?;
        let registered = Registered::new(Item::File(path.to_owned(), inode));
        Ok(JournalStandIn {
            made: Some((path.to_owned(), inode, registered)),
        })
    }
}

impl Drop for JournalStandIn {
    fn drop(&mut self) {
        if let Some((path, inode, _registered)) = &self.made {
            // Only if it is still ours: someone may have replaced it meanwhile.
            cleanup::remove_if_same(path, *inode);
        }
    }
}

fn binaries(kind: BusKind, baseline: Option<&Path>) -> Result<Binaries, String> {
    let need = |name: &str| find_in_path(name).ok_or_else(|| format!("{name} not found in PATH"));
    Ok(match kind {
        BusKind::Tramd => Binaries {
            program: build_tramd_under_cargo().and_then(|()| {
                tramd_binary().ok_or_else(|| {
                    "tramd not found beside tram-bench (cargo build --release -p tramd) nor in \
                     $TRAMD"
                        .to_owned()
                })
            })?,
            activator: None,
            broker: None,
        },
        BusKind::TramdBaseline => Binaries {
            program: baseline
                .filter(|p| p.is_file())
                .map(Path::to_owned)
                .ok_or("no baseline tramd given (--baseline PATH)")?,
            activator: None,
            broker: None,
        },
        BusKind::DbusDaemon => Binaries {
            program: need("dbus-daemon")?,
            activator: None,
            broker: None,
        },
        BusKind::DbusBroker => Binaries {
            program: need("dbus-broker-launch")?,
            activator: Some(need("systemd-socket-activate")?),
            broker: Some(need("dbus-broker")?),
        },
        BusKind::Busd => Binaries {
            program: std::env::var_os("BUSD")
                .map(PathBuf::from)
                .or_else(|| find_in_path("busd"))
                .or_else(|| {
                    let p = PathBuf::from("/opt/busd/bin/busd");
                    p.exists().then_some(p)
                })
                .ok_or("busd not found in $BUSD, PATH or /opt/busd/bin")?,
            activator: None,
            broker: None,
        },
    })
}

/// When the harness runs under `cargo run` (which sets `$CARGO`), builds tramd first with the
/// harness's own profile into the same target directory, so that `cargo run --release -p
/// tram-bench` alone never measures a missing or stale tramd. `$TRAMD` turns this off.
fn build_tramd_under_cargo() -> Result<(), String> {
    if std::env::var_os("TRAMD").is_some() {
        return Ok(());
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (Some(profile_dir), Some(target_dir)) = (exe.parent(), exe.parent().and_then(Path::parent))
    else {
        return Err(format!(
            "cannot tell the target directory from {}",
            exe.display()
        ));
    };
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => return Err(format!("odd target directory {}", profile_dir.display())),
    };
    if profile == "dev" {
        eprintln!("tram-bench: a debug build measures nothing useful; use --release");
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    eprintln!("tram-bench: building tramd ({profile})");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "tramd", "--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building tramd failed ({status})"))
    }
}

fn tramd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TRAMD") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("tramd");
    p.exists().then_some(p)
}

/// The first `name` in `$PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Raises the soft limit on open files to the hard one: 1,000 idle connections need 1,000
/// descriptors here and as many in the bus, which inherits the limit.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("tram-bench: cannot raise the open file limit: {e}");
        }
    }
}

/// Reads the first line a bus prints, giving up at `deadline`.
fn read_line_until(mut stdout: ChildStdout, deadline: Instant) -> io::Result<String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the bus printed no address in time",
            ));
        }
        let timeout = Timespec::try_from(left).map_err(|_| io::Error::other("bad timeout"))?;
        let mut fds = [PollFd::new(&stdout, PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&timeout))? == 0 {
            continue;
        }
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other(
                "the bus exited before printing its address",
            ));
        }
        line.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    line.truncate(end);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Says Hello on a first connection. The socket may exist a moment before it listens
/// (dbus-broker's activator binds, then listens), so a refused connection is tried again until
/// `deadline`.
fn first_hello(address: &str, deadline: Instant) -> io::Result<()> {
    loop {
        match Client::connect(address) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits for a socket file to appear (dbus-broker's activator binds it).
fn wait_for_path(path: &Path, deadline: Instant) -> io::Result<()> {
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not appear", path.display()),
            ));
        }
        thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Finds the child of `parent` whose command name is `comm`.
fn find_child(parent: Pid, comm: &str, deadline: Instant) -> io::Result<Pid> {
    loop {
        for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((name, ppid)) = parse_stat(&stat) {
                if name == comm && ppid == parent.as_raw_nonzero().get() {
                    return Pid::from_raw(pid).ok_or_else(|| io::Error::other("pid 0"));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "no {comm} process under the launcher"
            )));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The command name and parent pid from a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, i32)> {
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so take the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((name, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let cases: &[(&str, Option<(&str, i32)>)] = &[
            (
                "29070 (dbus-broker) S 29050 29048 ...",
                Some(("dbus-broker", 29050)),
            ),
            ("7 (a (b) c) R 1 7 7", Some(("a (b) c", 1))),
            ("7 (x) S", None),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat(line), *want, "{line}");
        }
    }

    #[test]
    fn names_round_trip() {
        for &k in BusKind::ALL {
            assert_eq!(BusKind::from_name(k.name()), Some(k));
        }
        assert_eq!(BusKind::from_name("dbus"), None);
    }

    #[test]
    fn own_cpu_time_is_read() {
        let me = rustix::process::getpid();
        let before = process_cpu_ns(me);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(process_cpu_ns(me) > before, "{x}");
    }
}
