//! Direct activation: running a service's `Exec` line as a child of the bus.
//!
//! [`Launcher::spawn`] starts one service and remembers its pid; [`Launcher::reap`], called
//! when SIGCHLD arrives, collects the services that exited, so the bus can fail the activation
//! of one that died before owning its name ([`exit_error`] words the error as dbus-daemon does).
//! A service that exits with status 0 is not a failure: it may have handed over to another
//! process, and the activation timeout decides.
//!
//! What the child gets, as with dbus-daemon:
//!
//! * argv from the `Exec` line ([`tram_config::service::split_exec`]); the program is executed
//!   as written, without a `PATH` search (dbus-daemon uses `execv`), so service files name it by
//!   absolute path;
//! * in [`LaunchMode::Direct`] the bus's environment without the variables systemd gave the
//!   bus itself (`NOTIFY_SOCKET`, `LISTEN_*`, `WATCHDOG_*`); in [`LaunchMode::AsUser`] an empty
//!   one, as dbus-daemon's setuid launch helper clears it;
//! * then the activation environment (`UpdateActivationEnvironment`);
//! * then, overriding both, `DBUS_STARTER_ADDRESS`, `DBUS_STARTER_BUS_TYPE` and, on a bus of
//!   type `session` or `system`, `DBUS_SESSION_BUS_ADDRESS` or `DBUS_SYSTEM_BUS_ADDRESS`.
//!
//! Between `fork` and `exec` the child also gets what a service expects of a fresh process:
//! every signal back to its default action and none blocked (the bus blocks the ones its
//! signalfd reads, and a blocked mask survives `exec`), a session and process group of its
//! own, standard input from `/dev/null` (output and errors go where the bus's go), every
//! descriptor above 2 closed on exec, and optionally the soft open-file limit the bus started
//! with (it raises its own).
//!
//! [`LaunchMode::AsUser`] is dbus-daemon's launch helper's job: the service runs as its `User=`
//! (required), with that user's groups from `/etc/group`, set with `setgroups`, `setgid`,
//! `setuid` in the child. A bus running as root does that in process. A bus that dropped root
//! to its `<user>` hands every such start to the launch helper it forked while still root
//! ([`crate::launch_helper`], given with [`Launcher::set_helper`]): [`Launcher::spawn`] then
//! only sends the service's name and returns [`Start::Requested`], and the outcome arrives
//! later as [`Event`]s from [`Launcher::helper_replies`]. The helper reads the service file
//! itself and gives the service no activation environment, only the `DBUS_STARTER_*`
//! variables (with a `<servicehelper>` the bus refuses UpdateActivationEnvironment, as
//! dbus-daemon does, so either way an AsUser service gets none). A bus that dropped root
//! without a helper can only start services as its own user, and refuses others
//! ([`LaunchError::NotPermitted`]).
//!
//! Whichever way a service was started, its exit comes back as an [`Event::Exited`]: from
//! [`Launcher::reap`] for the bus's own children, from [`Launcher::helper_replies`] for the
//! helper's.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use rustix::process::{Pid, WaitOptions};
use tram_config::UserTable;
use tram_config::service::{ExecError, split_exec};

use crate::launch_helper::Helper;

/// How services are started and as whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaunchMode {
    /// As the bus's own user, with the bus's environment; `User=` is ignored. dbus-daemon's
    /// behaviour without a `<servicehelper>` (the session bus).
    Direct,
    /// As the service's `User=`, with a clean environment. dbus-daemon's behaviour with a
    /// `<servicehelper>` (the stock system bus).
    AsUser,
}

/// What to start: the parts of a service file the launcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaunchSpec<'a> {
    /// The bus name the service provides, for errors.
    pub(crate) name: &'a str,
    /// The `Exec` line, unescaped.
    pub(crate) exec: Option<&'a str>,
    /// The `User` line.
    pub(crate) user: Option<&'a str>,
}

/// Starts services and collects their exit statuses.
#[derive(Debug)]
pub(crate) struct Launcher {
    mode: LaunchMode,
    child_nofile: Option<u64>,
    passwd: PathBuf,
    group: PathBuf,
    /// Running children: pid → the name they were started for.
    children: HashMap<u32, String>,
    /// The launch helper that starts [`LaunchMode::AsUser`] services, when the bus has one.
    helper: Option<Helper>,
}

/// How a start went: running at once, or asked of the launch helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The service runs with this pid.
    Running(u32),
    /// The launch helper was asked (request id); an [`Event::Started`] or [`Event::Failed`]
    /// with that id follows.
    Requested(u32),
}

/// What became of started services since the last call.
#[derive(Debug)]
pub(crate) enum Event {
    /// A start the launch helper was asked for runs.
    Started {
        /// The request id [`Start::Requested`] gave.
        request: u32,
        /// The bus name it was started for.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// A start the launch helper was asked for failed (or the helper is gone).
    Failed {
        /// The request id [`Start::Requested`] gave.
        request: u32,
        /// The bus name it was to be started for.
        name: String,
        /// Why.
        error: LaunchError,
    },
    /// A started service exited.
    Exited(Exited),
}

/// A child that exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exited {
    /// Its pid.
    pub(crate) pid: u32,
    /// The bus name it was started for.
    pub(crate) name: String,
    /// How it ended.
    pub(crate) status: ExitStatus,
}

/// Why a service could not be started.
#[derive(Debug)]
pub(crate) enum LaunchError {
    /// The `Exec` line is missing or cannot be split.
    Exec {
        /// The service's bus name.
        name: String,
        /// What is wrong with the line.
        error: ExecError,
    },
    /// [`LaunchMode::AsUser`] and the service file has no `User`.
    NoUser {
        /// The service's bus name.
        name: String,
    },
    /// The `User` does not exist in `/etc/passwd`.
    UnknownUser {
        /// The service's bus name.
        name: String,
        /// The user as written.
        user: String,
    },
    /// The bus does not run as root and the service wants another user.
    NotPermitted {
        /// The service's bus name.
        name: String,
        /// The user as written.
        user: String,
    },
    /// `fork` or `exec` failed.
    Spawn {
        /// The service's bus name.
        name: String,
        /// The error.
        error: io::Error,
    },
    /// No `NAME.service` file in the launch helper's directories provides the name.
    NotProvided {
        /// The service's bus name.
        name: String,
    },
    /// The launch helper could not start the service.
    Helper {
        /// Which D-Bus error it is.
        kind: FailureKind,
        /// The helper's words.
        text: String,
    },
    /// The launch helper is not running.
    HelperGone {
        /// The service's bus name.
        name: String,
        /// What happened to the helper.
        reason: String,
    },
}

/// The D-Bus errors a failed start is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// `org.freedesktop.DBus.Error.InvalidArgs`: the `Exec` line cannot be split.
    InvalidArgs,
    /// `org.freedesktop.DBus.Error.Spawn.FileInvalid`: the service file cannot be used.
    FileInvalid,
    /// `org.freedesktop.DBus.Error.Spawn.ServiceNotFound`: no service file provides the name.
    ServiceNotFound,
    /// `org.freedesktop.DBus.Error.Spawn.PermissionsInvalid`: not allowed to change user.
    PermissionsInvalid,
    /// `org.freedesktop.DBus.Error.Spawn.ExecFailed`: `fork` or `exec` failed.
    ExecFailed,
    /// `org.freedesktop.DBus.Error.Spawn.Failed`: anything else.
    Failed,
}

/// The variables systemd hands the bus that must not reach the services it starts.
const BUS_ONLY_VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
];

impl Launcher {
    /// A launcher in `mode`. `child_nofile` is the soft open-file limit to give children (the
    /// bus's limit before it raised it), or `None` to leave theirs as the bus's.
    pub(crate) fn new(mode: LaunchMode, child_nofile: Option<u64>) -> Launcher {
        Launcher {
            mode,
            child_nofile,
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
            children: HashMap::new(),
            helper: None,
        }
    }

    /// Hands [`LaunchMode::AsUser`] starts to `helper` from now on.
    pub(crate) fn set_helper(&mut self, helper: Helper) {
        self.helper = Some(helper);
    }

    /// Starts `spec` for a bus listening on `address` (the full address, with its `guid`),
    /// whose configured `<type>` is `bus_type`, with the activation environment `activation`.
    /// Entries of `activation` whose name is empty or holds `=` or NUL, or whose value holds
    /// NUL, are skipped.
    ///
    /// Returns [`Start::Running`] with the child's pid once the program is executing; `exec`
    /// failures are reported here, not through [`Launcher::reap`]. With a launch helper, a
    /// [`LaunchMode::AsUser`] start only sends the name and returns [`Start::Requested`]; the
    /// helper decides the rest, and its answer comes from [`Launcher::helper_replies`].
    ///
    /// # Errors
    ///
    /// See [`LaunchError`]; [`LaunchError::dbus_error`] gives the error to send.
    pub(crate) fn spawn(
        &mut self,
        spec: &LaunchSpec<'_>,
        activation: &BTreeMap<String, String>,
        address: &str,
        bus_type: Option<&str>,
    ) -> Result<Start, LaunchError> {
        if let (LaunchMode::AsUser, Some(helper)) = (self.mode, &mut self.helper) {
            return helper.request(spec.name).map(Start::Requested);
        }
        let name = spec.name.to_owned();
        let argv = spec
            .exec
            .ok_or(ExecError::Missing)
            .and_then(split_exec)
            .map_err(|error| LaunchError::Exec {
                name: name.clone(),
                error,
            })?;
        let identity = match self.mode {
            LaunchMode::Direct => None,
            LaunchMode::AsUser => self.identity(spec)?,
        };
        let (program, args) = match argv.split_first() {
            Some(split) => split,
            None => {
                return Err(LaunchError::Exec {
                    name,
                    error: ExecError::Empty,
                });
            }
        };

        // Without a slash, execvp would search PATH; execv, as dbus-daemon uses, would not.
        let path = if program.contains('/') {
            PathBuf::from(program)
        } else {
            Path::new(".").join(program)
        };
        let mut command = Command::new(path);
        command.arg0(program).args(args).stdin(Stdio::null());
        command.env_clear().envs(child_env(
            self.mode,
            std::env::vars_os(),
            activation,
            address,
            bus_type,
        ));
        let setup = ChildSetup::new(identity, self.child_nofile);
        // SAFETY: `ChildSetup::run` only makes async-signal-safe system calls on data
        // prepared before the fork (see there), as a pre_exec closure must.
        unsafe {
            command.pre_exec(move || setup.run());
        }
        let child = command.spawn().map_err(|error| LaunchError::Spawn {
            name: name.clone(),
            error,
        })?;
        // The `Child` is dropped without waiting: `reap` collects it by pid.
        let pid = child.id();
        self.children.insert(pid, name);
        Ok(Start::Running(pid))
    }

    /// Collects every started child that has exited, and the launch helper if it did; call it
    /// when SIGCHLD arrives (one SIGCHLD may stand for several exits). Children the launcher
    /// did not start are left alone.
    pub(crate) fn reap(&mut self) -> Vec<Event> {
        let mut exited = Vec::new();
        if let Some(helper) = &mut self.helper {
            exited = helper.reap();
        }
        self.children.retain(|&pid, name| {
            let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
                return false;
            };
            match rustix::process::waitpid(Some(raw), WaitOptions::NOHANG) {
                Ok(None) => true,
                Ok(Some((_, status))) => {
                    exited.push(Event::Exited(Exited {
                        pid,
                        name: std::mem::take(name),
                        status: ExitStatus::from_raw(status.as_raw()),
                    }));
                    false
                }
                Err(rustix::io::Errno::INTR) => true,
                // ECHILD: not ours any more; nothing to wait for.
                Err(_) => false,
            }
        });
        exited
    }

    /// Starts later services in `mode` (after a reload); running ones are not affected.
    pub(crate) fn set_mode(&mut self, mode: LaunchMode) {
        self.mode = mode;
    }

    /// The launch helper's socket, for the event loop to watch; `None` without a helper or
    /// once it is gone.
    pub(crate) fn helper_fd(&self) -> Option<BorrowedFd<'_>> {
        self.helper.as_ref().and_then(Helper::fd)
    }

    /// Whether requests wait for room in the launch helper's socket.
    pub(crate) fn helper_wants_write(&self) -> bool {
        self.helper.as_ref().is_some_and(Helper::wants_write)
    }

    /// Sends the launch helper the requests that wait; call it when its socket is writable.
    pub(crate) fn flush_helper(&mut self) {
        if let Some(helper) = &mut self.helper {
            helper.flush();
        }
    }

    /// Reads the launch helper's answers; call it when its socket is readable or hung up.
    pub(crate) fn helper_replies(&mut self) -> Vec<Event> {
        self.helper
            .as_mut()
            .map(Helper::receive)
            .unwrap_or_default()
    }

    /// How many started children are still running (the launch helper's included).
    pub(crate) fn running(&self) -> usize {
        self.children.len() + self.helper.as_ref().map_or(0, Helper::running)
    }

    /// The ids to switch to for `spec`, or `None` when the bus already runs as that user.
    fn identity(&self, spec: &LaunchSpec<'_>) -> Result<Option<Identity>, LaunchError> {
        let name = spec.name;
        let user = spec.user.ok_or_else(|| LaunchError::NoUser {
            name: name.to_owned(),
        })?;
        // Read afresh each time: a package may have added the user since the bus started.
        let group_text = std::fs::read_to_string(&self.group).unwrap_or_default();
        let passwd_text = std::fs::read_to_string(&self.passwd).unwrap_or_default();
        let entry = UserTable::parse(&passwd_text, &group_text)
            .user(user)
            .ok_or_else(|| LaunchError::UnknownUser {
                name: name.to_owned(),
                user: user.to_owned(),
            })?;
        let euid = rustix::process::geteuid().as_raw();
        if euid != 0 {
            let egid = rustix::process::getegid().as_raw();
            if entry.uid == euid && entry.gid == egid {
                return Ok(None);
            }
            return Err(LaunchError::NotPermitted {
                name: name.to_owned(),
                user: user.to_owned(),
            });
        }
        let login = login_name(&passwd_text, user, entry.uid);
        Ok(Some(Identity {
            uid: entry.uid,
            gid: entry.gid,
            groups: crate::process::supplementary_groups(&group_text, login, entry.gid),
        }))
    }
}

impl LaunchError {
    /// The D-Bus error for the callers waiting on the activation, as dbus-daemon words it.
    pub(crate) fn dbus_error(&self) -> (&'static str, String) {
        (self.kind().dbus_name(), self.to_string())
    }

    /// Which D-Bus error this is.
    pub(crate) fn kind(&self) -> FailureKind {
        match self {
            LaunchError::Exec {
                error: ExecError::UnclosedQuote | ExecError::TrailingBackslash,
                ..
            } => FailureKind::InvalidArgs,
            LaunchError::Exec { .. }
            | LaunchError::NoUser { .. }
            | LaunchError::UnknownUser { .. } => FailureKind::FileInvalid,
            LaunchError::NotProvided { .. } => FailureKind::ServiceNotFound,
            LaunchError::NotPermitted { .. } => FailureKind::PermissionsInvalid,
            LaunchError::Spawn { .. } => FailureKind::ExecFailed,
            LaunchError::Helper { kind, .. } => *kind,
            LaunchError::HelperGone { .. } => FailureKind::Failed,
        }
    }
}

impl FailureKind {
    /// The error's name on the bus.
    pub(crate) fn dbus_name(self) -> &'static str {
        match self {
            FailureKind::InvalidArgs => "org.freedesktop.DBus.Error.InvalidArgs",
            FailureKind::FileInvalid => "org.freedesktop.DBus.Error.Spawn.FileInvalid",
            FailureKind::ServiceNotFound => "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
            FailureKind::PermissionsInvalid => {
                "org.freedesktop.DBus.Error.Spawn.PermissionsInvalid"
            }
            FailureKind::ExecFailed => "org.freedesktop.DBus.Error.Spawn.ExecFailed",
            FailureKind::Failed => "org.freedesktop.DBus.Error.Spawn.Failed",
        }
    }
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Exec { name, error } => {
                write!(f, "Cannot start {name}: {error}")
            }
            LaunchError::NoUser { name } => {
                write!(f, "The service file for {name} does not name a User")
            }
            LaunchError::UnknownUser { name, user } => {
                write!(f, "Cannot start {name}: user \"{user}\" does not exist")
            }
            LaunchError::NotPermitted { name, user } => write!(
                f,
                "Cannot start {name} as user \"{user}\": the bus does not run as root"
            ),
            LaunchError::Spawn { name, error } => {
                // std's message ends with " (os error N)"; dbus-daemon's does not.
                let text = error.to_string();
                let reason = text.split(" (os error").next().unwrap_or_default();
                write!(f, "Failed to execute program {name}: {reason}")
            }
            LaunchError::NotProvided { name } => {
                write!(f, "The name {name} was not provided by any .service files")
            }
            LaunchError::Helper { text, .. } => f.write_str(text),
            LaunchError::HelperGone { name, reason } => write!(
                f,
                "Cannot start {name}: the launch helper is not running ({reason})"
            ),
        }
    }
}

impl std::error::Error for LaunchError {}

/// The error for the callers waiting on `name` when its process ended with `status` before
/// owning the name, as dbus-daemon words it; `None` for a clean exit, which is not a failure
/// (the service may live on in another process; the activation timeout decides).
pub(crate) fn exit_error(name: &str, status: ExitStatus) -> Option<(&'static str, String)> {
    if let Some(signal) = status.signal() {
        return Some((
            "org.freedesktop.DBus.Error.Spawn.ChildSignaled",
            format!("Process {name} received signal {signal}"),
        ));
    }
    match status.code() {
        Some(0) | None => None,
        Some(code) => Some((
            "org.freedesktop.DBus.Error.Spawn.ChildExited",
            format!("Process {name} exited with status {code}"),
        )),
    }
}

/// The ids a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uid: u32,
    gid: u32,
    /// Supplementary groups, the primary group included.
    groups: Vec<libc::gid_t>,
}

/// Everything the child does between `fork` and `exec`, prepared before the fork so that the
/// child only makes system calls.
struct ChildSetup {
    identity: Option<Identity>,
    nofile: Option<libc::rlimit>,
    empty_mask: libc::sigset_t,
}

impl ChildSetup {
    fn new(identity: Option<Identity>, child_nofile: Option<u64>) -> ChildSetup {
        let nofile = child_nofile.and_then(|soft| {
            let current = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let hard = current.maximum.unwrap_or(libc::RLIM_INFINITY);
            (current.current != Some(soft)).then_some(libc::rlimit {
                rlim_cur: soft.min(hard),
                rlim_max: hard,
            })
        });
        let mut empty_mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the set it is given; it cannot fail for a valid
        // pointer.
        let empty_mask = unsafe {
            libc::sigemptyset(empty_mask.as_mut_ptr());
            empty_mask.assume_init()
        };
        ChildSetup {
            identity,
            nofile,
            empty_mask,
        }
    }

    /// Runs in the child. Every call here is async-signal-safe (`sigaction` through `signal`,
    /// `sigprocmask`, `setsid`, `setrlimit`, `close_range`, `setgroups`, `setgid`, `setuid`),
    /// nothing allocates, and errors are built from errno alone.
    fn run(&self) -> io::Result<()> {
        for signal in 1..SIGNAL_LIMIT {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                // SAFETY: restoring the default action is valid for every signal. glibc refuses
                // (EINVAL) the two real-time signals it keeps for itself; they stay as they are.
                unsafe { libc::signal(signal, libc::SIG_DFL) };
            }
        }
        // SAFETY: `empty_mask` was initialized by sigemptyset; a null old-set is allowed.
        if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, std::ptr::null_mut()) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain system call; the child of a fork is never a process group leader.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(limit) = &self.nofile {
            // SAFETY: `limit` is a valid rlimit; lowering the soft limit is always allowed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Descriptors the bus opened without close-on-exec must not leak into services. Old
        // kernels lack close_range or its CLOEXEC flag (ENOSYS, EINVAL): every descriptor tramd
        // opens is close-on-exec already, so that is not an error.
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if let Some(id) = &self.identity {
            // SAFETY: `groups` is a live vector of `groups.len()` gids.
            if unsafe { libc::setgroups(id.groups.len(), id.groups.as_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain system calls; group before user, while still privileged.
            if unsafe { libc::setgid(id.gid) } != 0 || unsafe { libc::setuid(id.uid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// One past the highest signal number (Linux's `_NSIG`).
const SIGNAL_LIMIT: libc::c_int = 65;

/// The environment of a child: see the module documentation for the layers.
fn child_env(
    mode: LaunchMode,
    bus_env: impl Iterator<Item = (OsString, OsString)>,
    activation: &BTreeMap<String, String>,
    address: &str,
    bus_type: Option<&str>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = match mode {
        LaunchMode::Direct => bus_env
            .filter(|(k, _)| !BUS_ONLY_VARIABLES.iter().any(|v| OsStr::new(v) == k))
            .collect(),
        LaunchMode::AsUser => BTreeMap::new(),
    };
    for (key, value) in activation {
        let valid_key = !key.is_empty() && !key.contains(['=', '\0']);
        if valid_key && !value.contains('\0') {
            env.insert(key.into(), value.into());
        }
    }
    env.insert("DBUS_STARTER_ADDRESS".into(), address.into());
    if let Some(kind) = bus_type {
        env.insert("DBUS_STARTER_BUS_TYPE".into(), kind.into());
        match kind {
            "session" => {
                env.insert("DBUS_SESSION_BUS_ADDRESS".into(), address.into());
            }
            "system" => {
                env.insert("DBUS_SYSTEM_BUS_ADDRESS".into(), address.into());
            }
            _ => {}
        }
    }
    env
}

/// The login name whose groups `user` gets: `user` itself when `passwd(5)` has an account of
/// that name, else (a `User=` given as a number) the first account with `uid`.
fn login_name<'a>(passwd_text: &'a str, user: &'a str, uid: u32) -> &'a str {
    let accounts = passwd_text.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        Some((name, id))
    });
    let mut by_uid = None;
    for (name, id) in accounts {
        if name == user {
            return user;
        }
        if id == uid && by_uid.is_none() && !name.is_empty() {
            by_uid = Some(name);
        }
    }
    by_uid.unwrap_or(user)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_util::TempDir;

    /// Reaps until `pid` exits, for at most ten seconds.
    fn wait_for(launcher: &mut Launcher, pid: u32) -> Exited {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = launcher.reap().into_iter().find_map(|e| match e {
                Event::Exited(e) if e.pid == pid => Some(e),
                _ => None,
            });
            if let Some(e) = exited {
                return e;
            }
            assert!(Instant::now() < deadline, "pid {pid} did not exit");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The pid of a start that runs at once.
    fn running(start: Result<Start, LaunchError>) -> u32 {
        match start {
            Ok(Start::Running(pid)) => pid,
            other => panic!("not started at once: {other:?}"),
        }
    }

    fn spec<'a>(exec: &'a str, user: Option<&'a str>) -> LaunchSpec<'a> {
        LaunchSpec {
            name: "org.example.Test",
            exec: Some(exec),
            user,
        }
    }

    /// A shell script that writes what a service sees of its process to `$1`. Its own status
    /// is read with builtins: while the shell runs a command its mask is briefly full.
    const PROBE: &str = "'\
        { echo \"argv=$0|$1|$2|\"; env; \
          while read -r l; do case \"$l\" in SigBlk:*|SigIgn:*|Uid:*|Gid:*|Groups:*) \
            echo \"$l\";; esac; done < /proc/$$/status; \
          echo \"stat=$(cut -d\" \" -f5,6 /proc/$$/stat)\"; echo \"pid=$$\"; \
          echo \"stdin=$(readlink /proc/$$/fd/0)\"; \
          echo \"fds=$(ls /proc/$$/fd | tr \"\\n\" \" \")\"; \
          echo \"nofile=$(ulimit -n)\"; \
        } > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"'";

    fn probe(
        launcher: &mut Launcher,
        out: &Path,
        user: Option<&str>,
        activation: &BTreeMap<String, String>,
        bus_type: Option<&str>,
    ) -> String {
        let exec = format!("/bin/sh -c {PROBE} probe {} \"two words\"", out.display());
        let pid = running(launcher.spawn(
            &spec(&exec, user),
            activation,
            "unix:path=/x,guid=0",
            bus_type,
        ));
        let exited = wait_for(launcher, pid);
        assert_eq!(exited.status.code(), Some(0), "{exited:?}");
        assert_eq!(exited.name, "org.example.Test");
        std::fs::read_to_string(out).unwrap()
    }

    fn field<'a>(report: &'a str, prefix: &str) -> &'a str {
        report
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {report}"))
            .trim()
    }

    #[test]
    fn child_starts_clean() {
        let tmp = TempDir::new("launcher-clean");
        let out = tmp.0.join("report");
        // What the bus does to itself, which the child must not inherit: handled signals
        // blocked (on this thread; fork copies the calling thread's mask), a signal ignored,
        // a descriptor without close-on-exec.
        let blocked = handled_mask();
        let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: both sets are valid; `previous` is written by the call.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, previous.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: SIG_IGN is a valid disposition; no test relies on SIGUSR2.
        let usr2 = unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        // Numbered high, away from the descriptors the probe's shell opens for itself.
        let null = std::fs::File::open("/dev/null").unwrap();
        let leaked = rustix::io::fcntl_dupfd_cloexec(&null, 300).unwrap();
        rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();

        let mut launcher = Launcher::new(LaunchMode::Direct, Some(512));
        let activation = BTreeMap::from([("TRAM_TEST_ACTIVATION".to_owned(), "yes".to_owned())]);
        let report = probe(&mut launcher, &out, None, &activation, Some("session"));

        // SAFETY: `previous` was initialized by the call above.
        let rc = unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, previous.as_ptr(), std::ptr::null_mut())
        };
        assert_eq!(rc, 0);
        // SAFETY: restores the disposition saved above.
        unsafe { libc::signal(libc::SIGUSR2, usr2) };
        let leaked_fd = leaked.as_raw_fd().to_string();
        drop(leaked);

        assert_eq!(
            field(&report, "argv="),
            format!("probe|{}|two words|", out.display())
        );
        assert_eq!(field(&report, "SigBlk:"), "0000000000000000");
        // glibc keeps signals 32 and 33 for itself and refuses to change them.
        let ignored = u64::from_str_radix(field(&report, "SigIgn:"), 16).unwrap();
        assert_eq!(ignored & !(0b11 << 31), 0, "ignored signals: {ignored:x}");
        let pid = field(&report, "pid=");
        assert_eq!(
            field(&report, "stat="),
            format!("{pid} {pid}"),
            "own process group and session"
        );
        assert_eq!(field(&report, "stdin="), "/dev/null");
        let fds: Vec<&str> = field(&report, "fds=").split_whitespace().collect();
        assert!(
            !fds.contains(&leaked_fd.as_str()),
            "fd {leaked_fd} leaked: {fds:?}"
        );
        assert_eq!(field(&report, "nofile="), "512");
        assert_eq!(field(&report, "TRAM_TEST_ACTIVATION="), "yes");
        assert_eq!(
            field(&report, "DBUS_STARTER_ADDRESS="),
            "unix:path=/x,guid=0"
        );
        assert_eq!(field(&report, "DBUS_STARTER_BUS_TYPE="), "session");
        assert_eq!(
            field(&report, "DBUS_SESSION_BUS_ADDRESS="),
            "unix:path=/x,guid=0"
        );
        assert_eq!(launcher.running(), 0);
    }

    #[test]
    fn environment_layers() {
        let bus = [
            ("PATH", "/usr/bin"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "1"),
            ("WATCHDOG_USEC", "1"),
            ("DBUS_STARTER_ADDRESS", "stale"),
            ("KEEP", "bus"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let activation = BTreeMap::from(
            [
                ("KEEP", "activation"),
                ("DBUS_STARTER_ADDRESS", "spoofed"),
                ("DBUS_SESSION_BUS_ADDRESS", "spoofed"),
                ("", "empty"),
                ("A=B", "c"),
                ("NUL", "a\0b"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let render = |env: BTreeMap<OsString, OsString>| -> Vec<String> {
            env.into_iter()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect()
        };

        let direct = child_env(
            LaunchMode::Direct,
            bus.clone().into_iter(),
            &activation,
            "unix:path=/b",
            Some("session"),
        );
        assert_eq!(
            render(direct),
            [
                "DBUS_SESSION_BUS_ADDRESS=unix:path=/b",
                "DBUS_STARTER_ADDRESS=unix:path=/b",
                "DBUS_STARTER_BUS_TYPE=session",
                "KEEP=activation",
                "PATH=/usr/bin",
            ]
        );

        let as_user = child_env(
            LaunchMode::AsUser,
            bus.clone().into_iter(),
            &BTreeMap::new(),
            "unix:path=/s",
            Some("system"),
        );
        assert_eq!(
            render(as_user),
            [
                "DBUS_STARTER_ADDRESS=unix:path=/s",
                "DBUS_STARTER_BUS_TYPE=system",
                "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/s",
            ]
        );

        let custom = child_env(
            LaunchMode::Direct,
            std::iter::empty(),
            &BTreeMap::new(),
            "a",
            None,
        );
        assert_eq!(render(custom), ["DBUS_STARTER_ADDRESS=a"]);
    }

    #[test]
    fn exit_statuses() {
        let mut launcher = Launcher::new(LaunchMode::Direct, None);
        let none = BTreeMap::new();
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("/bin/sh -c 'exit 0'", None),
            (
                "/bin/sh -c 'exit 3'",
                Some((
                    "org.freedesktop.DBus.Error.Spawn.ChildExited",
                    "Process org.example.Test exited with status 3",
                )),
            ),
            (
                "/bin/sh -c 'kill -9 $$'",
                Some((
                    "org.freedesktop.DBus.Error.Spawn.ChildSignaled",
                    "Process org.example.Test received signal 9",
                )),
            ),
        ];
        for (exec, want) in cases {
            let pid = running(launcher.spawn(&spec(exec, None), &none, "a", None));
            let exited = wait_for(&mut launcher, pid);
            let got = exit_error(&exited.name, exited.status);
            assert_eq!(got.as_ref().map(|(n, m)| (*n, m.as_str())), *want, "{exec}");
        }
    }

    #[test]
    fn spawn_errors() {
        let mut launcher = Launcher::new(LaunchMode::Direct, None);
        let none = BTreeMap::new();
        let cases: &[(Option<&str>, &str, &str)] = &[
            (
                Some("/nonexistent/program"),
                "org.freedesktop.DBus.Error.Spawn.ExecFailed",
                "Failed to execute program org.example.Test: No such file or directory",
            ),
            // No PATH search, as dbus-daemon: "sh" is looked for in the working directory.
            (
                Some("sh -c true"),
                "org.freedesktop.DBus.Error.Spawn.ExecFailed",
                "Failed to execute program org.example.Test: No such file or directory",
            ),
            (
                Some("/bin/true 'unclosed"),
                "org.freedesktop.DBus.Error.InvalidArgs",
                "Cannot start org.example.Test: unclosed quotes in the Exec line",
            ),
            (
                Some("   "),
                "org.freedesktop.DBus.Error.Spawn.FileInvalid",
                "Cannot start org.example.Test: the Exec line is empty",
            ),
            (
                None,
                "org.freedesktop.DBus.Error.Spawn.FileInvalid",
                "Cannot start org.example.Test: the service file has no Exec line",
            ),
        ];
        for (exec, error, message) in cases {
            let spec = LaunchSpec {
                name: "org.example.Test",
                exec: *exec,
                user: None,
            };
            let e = launcher.spawn(&spec, &none, "a", None).unwrap_err();
            let (got_error, got_message) = e.dbus_error();
            assert_eq!(
                (got_error, got_message.as_str()),
                (*error, *message),
                "{exec:?}"
            );
        }
        assert_eq!(launcher.running(), 0);
    }

    #[test]
    fn as_user() {
        let tmp = TempDir::new("launcher-user");
        let mut launcher = Launcher::new(LaunchMode::AsUser, None);
        launcher.passwd = tmp.0.join("passwd");
        launcher.group = tmp.0.join("group");
        let me = rustix::process::geteuid().as_raw();
        let my_gid = rustix::process::getegid().as_raw();
        std::fs::write(
            &launcher.passwd,
            format!("svc:x:4242:4343::/:/bin/false\nself:x:{me}:{my_gid}::/:/bin/false\n"),
        )
        .unwrap();
        std::fs::write(
            &launcher.group,
            "svcgrp:x:4343:\nextra:x:4444:other,svc\nunrelated:x:4545:other\n",
        )
        .unwrap();
        let none = BTreeMap::new();

        let e = launcher
            .spawn(&spec("/bin/true", None), &none, "a", Some("system"))
            .unwrap_err();
        assert!(matches!(e, LaunchError::NoUser { .. }), "{e}");
        let e = launcher
            .spawn(&spec("/bin/true", Some("nobody-here")), &none, "a", None)
            .unwrap_err();
        assert!(matches!(e, LaunchError::UnknownUser { .. }), "{e}");

        // The bus's own user needs no privilege.
        let out = tmp.0.join("self");
        let report = probe(&mut launcher, &out, Some("self"), &none, Some("system"));
        assert!(field(&report, "Uid:").starts_with(&me.to_string()));
        assert!(
            !report.contains("PATH="),
            "the environment is clean: {report}"
        );
        assert_eq!(
            field(&report, "DBUS_SYSTEM_BUS_ADDRESS="),
            "unix:path=/x,guid=0"
        );

        if me == 0 {
            let out = tmp.0.join("svc");
            // The probe's output directory must be writable by the service's user.
            std::fs::set_permissions(&tmp.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
            let report = probe(&mut launcher, &out, Some("svc"), &none, Some("system"));
            assert_eq!(
                field(&report, "Uid:").split_whitespace().next(),
                Some("4242")
            );
            assert_eq!(
                field(&report, "Gid:").split_whitespace().next(),
                Some("4343")
            );
            let mut groups: Vec<&str> = field(&report, "Groups:").split_whitespace().collect();
            groups.sort_unstable();
            assert_eq!(groups, ["4343", "4444"]);
        } else {
            let e = launcher
                .spawn(&spec("/bin/true", Some("svc")), &none, "a", None)
                .unwrap_err();
            assert!(matches!(e, LaunchError::NotPermitted { .. }), "{e}");
            assert_eq!(
                e.dbus_error().0,
                "org.freedesktop.DBus.Error.Spawn.PermissionsInvalid"
            );
        }
    }

    #[test]
    fn group_membership() {
        let text = "root:x:0:\nwheel:x:10:alice,bob\nbad\naudio:x:29:bob\nnope:x:zz:bob\n\
                    dup:x:10:bob\n";
        let groups = crate::process::supplementary_groups;
        assert_eq!(groups(text, "bob", 100), [100, 10, 29]);
        assert_eq!(groups(text, "alice", 10), [10]);
        assert_eq!(groups(text, "carol", 7), [7]);
        let passwd = "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n\
                      robert:x:1000:1000::/home/bob:/bin/sh\n";
        assert_eq!(login_name(passwd, "robert", 1000), "robert");
        assert_eq!(login_name(passwd, "1000", 1000), "bob");
        assert_eq!(login_name(passwd, "5", 5), "5");
    }

    fn handled_mask() -> libc::sigset_t {
        let mut mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the set; sigaddset takes valid signal numbers.
        unsafe {
            libc::sigemptyset(mask.as_mut_ptr());
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
                libc::sigaddset(mask.as_mut_ptr(), signal);
            }
            mask.assume_init()
        }
    }
}
