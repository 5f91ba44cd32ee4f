//! Start-up and shutdown: from parsed options to a running bus and back.
//!
//! [`run`] follows dbus-daemon's order, so that whatever fails is reported by the process the
//! caller started, with exit status 1:
//!
//! 1. claim the `--print-address`/`--print-pid` descriptors, raise the fd limit;
//! 2. load the configuration (`file:line: reason` on error) and print its warnings; choose the
//!    log sinks (`--syslog`, `--syslog-only`, `--nosyslog`, else `<syslog/>`);
//! 3. resolve `<user>` (from `/etc/passwd`), refuse to start when the `<pidfile>` exists;
//! 4. create the GUID, read the machine id, listen on every address (`--address` replaces the
//!    `<listen>` elements);
//! 5. fork when asked (`--fork`, or `<fork/>` without `--nofork`): the parent waits until the
//!    child is ready;
//! 6. write the pid file (unless `--nopidfile`); when the bus runs as root, changes to a
//!    `<user>` other than root and starts services as their `User=` (`<servicehelper>`), fork
//!    the launch helper that keeps root for that ([`crate::launch_helper`]); print the pid and
//!    the address: the address lists the last `<listen>` first, as dbus-daemon does;
//! 7. change to `<user>`, so sockets and the pid file were made with the original privileges
//!    but no client is read before the change;
//! 8. run the event loop until SIGTERM or SIGINT, telling systemd `READY=1` first when it
//!    started the bus with `NOTIFY_SOCKET` (and `STOPPING=1` at the end). SIGHUP and
//!    ReloadConfig re-read the same configuration (listen addresses, `<user>`, `<auth>`,
//!    `<type>` and the rest of the start-up settings keep their first values, as with
//!    dbus-daemon; the policy, the limits and the service directories are taken again).
//!
//! Returning drops the listeners, which removes their socket files, and the pid file.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::process::{Resource, getrlimit, setrlimit};
use tram_bus::{Bus, BusConfig};
use tram_config::UserEntry;
use tram_sasl::{CookieAuthority, SaslServer};

use crate::cli::{ConfigSource, Options, PrintTarget, SyslogMode};
use crate::config::{self, LoadError, Loaded};
use crate::event_loop::{Boot, EventLoop, Reloader, SaslServers, Settings};
use crate::ids::{self, MachineIdSource};
use crate::keyring::Keyrings;
use crate::launch_helper::{Helper, HelperConfig};
use crate::launcher::LaunchMode;
use crate::listener::{ListenError, Listener, PassedSockets};
use crate::log;
use crate::notify::{self, Notifier};
use crate::process::{self, Forked, PidFile, PidFileError};
use crate::signals::Signals;

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug)]
pub(crate) enum DaemonError {
    /// `--print-address=FD` or `--print-pid=FD` names a descriptor that is not open.
    BadPrintFd(i32, io::Error),
    /// The configuration could not be loaded.
    Config(LoadError),
    /// `<user>` names no known user.
    UnknownUser(String),
    /// Changing to `<user>` failed.
    ChangeUser(String, io::Error),
    /// The pid file exists or cannot be written.
    PidFile(PidFileError),
    /// An address could not be listened on.
    Listen(ListenError),
    /// A system call failed at start-up or in the loop.
    Io(&'static str, io::Error),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::BadPrintFd(fd, e) => {
                write!(f, "cannot print to file descriptor {fd}: {e}")
            }
            DaemonError::Config(e) => e.fmt(f),
            DaemonError::UnknownUser(name) => {
                write!(
                    f,
                    "cannot run as user {name:?}: no such user in /etc/passwd"
                )
            }
            DaemonError::ChangeUser(name, e) => write!(f, "cannot run as user {name:?}: {e}"),
            DaemonError::PidFile(e) => e.fmt(f),
            DaemonError::Listen(e) => e.fmt(f),
            DaemonError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// Runs the bus described by `options` until it is told to stop. The parent of `--fork` does
/// not return: it exits once the daemon is ready (0) or gone (1).
///
/// # Errors
/// Any failure to start; a failure of the event loop itself.
pub(crate) fn run(options: Options, mut passed: PassedSockets) -> Result<(), DaemonError> {
    // Claim the descriptors first, so nothing opened below can take their numbers.
    let outputs = Outputs::claim(options.print_address, options.print_pid)?;
    let child_nofile = raise_fd_limit();
    let source = absolute_source(&options.config);
    let loaded = config::load(&source).map_err(DaemonError::Config)?;
    for warning in &loaded.warnings {
        log::warning!("{warning}");
    }
    let (log_stderr, log_syslog) = log_sinks(options.syslog, loaded.config.syslog);
    if !log::configure(log_stderr, log_syslog) {
        log::warning!("cannot reach the system log at /dev/log; logging to standard error");
    }
    let mut listen = loaded.config.listen.clone();
    if let Some(address) = &options.address {
        listen = vec![address.clone()];
    }
    let user = match &loaded.config.user {
        Some(name) => Some((name.clone(), resolve_user(name)?)),
        None => None,
    };
    let pidfile = match (&loaded.config.pidfile, options.no_pidfile) {
        (Some(path), false) => Some(absolute(path)),
        _ => None,
    };
    if let Some(path) = &pidfile {
        PidFile::check_absent(path).map_err(DaemonError::PidFile)?;
    }
    let guid = ids::random_guid().map_err(|e| DaemonError::Io("cannot create the bus GUID", e))?;
    let (machine_id, source_of_id) =
        ids::machine_id().map_err(|e| DaemonError::Io("cannot create a machine id", e))?;
    if source_of_id == MachineIdSource::Generated {
        log::warning!(
            "no machine id in {}; using {machine_id} for this run",
            ids::MACHINE_ID_PATHS.join(" or ")
        );
    }
    if listen.is_empty() {
        return Err(DaemonError::Listen(ListenError {
            address: String::new(),
            reasons: vec!["the configuration has no <listen> address".to_owned()],
        }));
    }
    let groups = listen
        .iter()
        .map(|address| Listener::bind(address, &mut passed))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DaemonError::Listen)?;
    match passed.leftover() {
        (_, Some(e)) => log::warning!("ignoring the sockets systemd passed: {e}"),
        (0, None) => {}
        (n, None) => {
            log::warning!("{n} sockets passed by systemd are not used: no systemd: address")
        }
    }
    drop(passed);
    let address = printed_address(&groups, &guid);
    let listeners: Vec<Listener> = groups.into_iter().flatten().collect();

    let detach = options.fork.unwrap_or(loaded.config.fork);
    let ready = if detach {
        match process::fork(loaded.config.keep_umask)
            .map_err(|e| DaemonError::Io("cannot fork", e))?
        {
            // The sockets and files now belong to the child: exit without dropping them.
            Forked::Parent(status) => std::process::exit(i32::from(status)),
            Forked::Child(ready) => Some(ready),
        }
    } else {
        None
    };
    let signals = Signals::new().map_err(|e| DaemonError::Io("cannot set up signals", e))?;
    let pid = std::process::id();
    let _pidfile = match &pidfile {
        Some(path) => Some(PidFile::create(path, pid).map_err(DaemonError::PidFile)?),
        None => None,
    };
    let helper = match &user {
        Some((_, account))
            if account.uid != 0
                && rustix::process::geteuid().is_root()
                && loaded.config.launch_mode == LaunchMode::AsUser =>
        {
            let config = HelperConfig {
                service_dirs: loaded.config.service_dirs.clone(),
                address: address.clone(),
                bus_type: Some(loaded.config.bus_type.clone()).filter(|t| !t.is_empty()),
                child_nofile,
                detach,
                log_stderr,
                log_syslog,
            };
            let helper = Helper::spawn(&config)
                .map_err(|e| DaemonError::Io("cannot start the launch helper", e))?;
            Some(helper)
        }
        _ => None,
    };
    outputs.print(&address, pid)?;
    let bus_uid = match &user {
        Some((name, account)) => {
            process::change_user(name, *account)
                .map_err(|e| DaemonError::ChangeUser(name.clone(), e))?;
            account.uid
        }
        None => rustix::process::getuid().as_raw(),
    };

    let bus = Bus::new(BusConfig {
        guid: guid.clone(),
        machine_id,
        bus_type: loaded.config.bus_type.clone(),
        bus_uid,
        bus_pid: pid,
        policy: loaded.policy.clone(),
        systemd_activation: options.systemd_activation,
        service_helper: loaded.config.launch_mode == LaunchMode::AsUser,
        limits: loaded.bus_limits.clone(),
    });
    let cookies: Arc<dyn CookieAuthority> =
        Arc::new(Keyrings::system(rustix::process::geteuid().as_raw()));
    let sasl = SaslServers {
        unix: SaslServer::new(&guid, &loaded.config.offered_mechanisms(true))
            .with_cookies(Arc::clone(&cookies)),
        tcp: SaslServer::new(&guid, &loaded.config.offered_mechanisms(false)).with_cookies(cookies),
    };
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        log::warning!("cannot notify the service manager: {e}");
        Notifier::disabled()
    });
    let watchdog = notifier
        .is_enabled()
        .then(notify::watchdog_interval)
        .flatten();
    let boot = Boot {
        address: address.clone(),
        child_nofile,
        notifier,
        watchdog,
        helper,
    };
    let mut event_loop = EventLoop::new(
        bus,
        listeners,
        signals,
        sasl,
        settings(&loaded),
        reloader(source),
        boot,
    )
    .map_err(|e| DaemonError::Io("cannot set up the event loop", e))?;
    log::debug!("{} bus listening on {address}", loaded.config.bus_type);
    if let Some(ready) = ready {
        ready
            .notify()
            .map_err(|e| DaemonError::Io("cannot detach from the terminal", e))?;
    }
    event_loop
        .run()
        .map_err(|e| DaemonError::Io("event loop failed", e))?;
    Ok(())
}

/// The address to print and to give the services the bus starts: the last `<listen>` first, so
/// clients try it first, and each `<listen>` as dbus-daemon prints a server's address — its
/// sockets' addresses (several only for `systemd:`) separated by `;`, then the GUID.
fn printed_address(groups: &[Vec<Listener>], guid: &str) -> String {
    let mut printed = Vec::with_capacity(groups.len());
    for group in groups.iter().rev() {
        let mut entries: Vec<&str> = Vec::with_capacity(group.len());
        for listener in group {
            // TCP listeners of one address (one per resolved IP) print it once.
            if !entries.contains(&listener.address()) {
                entries.push(listener.address());
            }
        }
        if !entries.is_empty() {
            printed.push(format!("{},guid={guid}", entries.join(";")));
        }
    }
    printed.join(";")
}

/// The loop's share of a loaded configuration.
fn settings(loaded: &Loaded) -> Settings {
    Settings {
        limits: loaded.config.limits.clone(),
        allow_anonymous: loaded.config.allow_anonymous,
        service_dirs: loaded.config.service_dirs.clone(),
        launch_mode: loaded.config.launch_mode,
    }
}

/// Re-reads `source` for SIGHUP and ReloadConfig: the new policy and limits, everything else
/// of the bus configuration as it is.
fn reloader(source: ConfigSource) -> Reloader {
    Box::new(move |current: &BusConfig| {
        let loaded = config::load(&source).map_err(|e| e.to_string())?;
        for warning in &loaded.warnings {
            log::warning!("{warning}");
        }
        let config = BusConfig {
            policy: loaded.policy.clone(),
            limits: loaded.bus_limits.clone(),
            ..current.clone()
        };
        Ok((config, settings(&loaded)))
    })
}

/// The configuration source with an absolute path, so reloading after `--fork` changed the
/// working directory reads the same file.
fn absolute_source(source: &ConfigSource) -> ConfigSource {
    match source {
        ConfigSource::File(path) => ConfigSource::File(absolute(path)),
        other => other.clone(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Where to log, standard error and the system log: `--syslog`, `--syslog-only` and
/// `--nosyslog` override `<syslog/>`.
fn log_sinks(mode: Option<SyslogMode>, config_syslog: bool) -> (bool, bool) {
    match mode {
        Some(SyslogMode::Both) => (true, true),
        Some(SyslogMode::Only) => (false, true),
        Some(SyslogMode::Never) => (true, false),
        None => (true, config_syslog),
    }
}

fn resolve_user(name: &str) -> Result<UserEntry, DaemonError> {
    tram_config::SystemUsers::new()
        .table()
        .user(name)
        .ok_or_else(|| DaemonError::UnknownUser(name.to_owned()))
}

/// Where `--print-address` and `--print-pid` go.
struct Outputs {
    address: Option<Output>,
    pid: Option<Output>,
    /// Both go to the same place: one write, address first.
    same: bool,
}

enum Output {
    Stdout,
    Fd(OwnedFd),
}

impl Outputs {
    fn claim(
        address: Option<PrintTarget>,
        pid: Option<PrintTarget>,
    ) -> Result<Outputs, DaemonError> {
        let same = address.is_some() && address == pid;
        Ok(Outputs {
            address: address.map(Output::claim).transpose()?,
            pid: if same {
                None
            } else {
                pid.map(Output::claim).transpose()?
            },
            same,
        })
    }

    /// Prints what was asked. To different places the pid goes first, so whoever waits for
    /// the address finds the pid there already; to one place, the address comes first.
    fn print(self, address: &str, pid: u32) -> Result<(), DaemonError> {
        let address_line = format!("{address}\n");
        let pid_line = format!("{pid}\n");
        if self.same {
            if let Some(out) = self.address {
                out.write(&format!("{address_line}{pid_line}"))?;
            }
            return Ok(());
        }
        if let Some(out) = self.pid {
            out.write(&pid_line)?;
        }
        if let Some(out) = self.address {
            out.write(&address_line)?;
        }
        Ok(())
    }
}

impl Output {
    fn claim(target: PrintTarget) -> Result<Output, DaemonError> {
        match target {
            PrintTarget::Stdout => Ok(Output::Stdout),
            PrintTarget::Fd(fd @ (0 | 2)) => Err(DaemonError::BadPrintFd(
                fd,
                io::Error::new(io::ErrorKind::InvalidInput, "not an output"),
            )),
            PrintTarget::Fd(fd) => process::claim_fd(fd)
                .map(Output::Fd)
                .map_err(|e| DaemonError::BadPrintFd(fd, e)),
        }
    }

    /// Writes `text`; a descriptor other than stdout is closed after.
    fn write(self, text: &str) -> Result<(), DaemonError> {
        let written = match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Output::Fd(fd) => std::fs::File::from(fd).write_all(text.as_bytes()),
        };
        written.map_err(|e| DaemonError::Io("cannot print the address or pid", e))
    }
}

/// The open-file limit a bus running as root sets for itself, as dbus-daemon does: enough for a
/// system bus's connections (each costs tramd its socket, plus one pidfd per client process).
const ROOT_NOFILE: u64 = 65_536;

/// Raises the soft limit on open files to the hard limit, as dbus-daemon does; a bus running as
/// root raises both to at least [`ROOT_NOFILE`] (falling back to the hard limit where it may
/// not, e.g. without CAP_SYS_RESOURCE in a container). Returns the soft limit it replaced, for
/// the services the bus starts, or `None` when it did not change it.
fn raise_fd_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let mut targets = Vec::with_capacity(2);
    let below_root_figure = limit.maximum.is_some_and(|max| max < ROOT_NOFILE);
    if below_root_figure && rustix::process::geteuid().is_root() {
        targets.push(Some(ROOT_NOFILE));
    }
    targets.push(limit.maximum);
    let mut last_error = None;
    for target in targets {
        if limit.current == target {
            return None;
        }
        let raised = rustix::process::Rlimit {
            current: target,
            maximum: target.max(limit.maximum),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.current,
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(e) = last_error {
        log::warning!("cannot raise the open file limit: {}", io::Error::from(e));
    }
    None
}
