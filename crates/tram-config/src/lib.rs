//! dbus-daemon's XML configuration language, parsed into typed configuration.
//!
//! [`Config::load`] reads a configuration file the way dbus-daemon 1.14 does — includes,
//! `<includedir>`s, limits, listen addresses, authentication, service directories and policy —
//! and returns a [`Config`] whose [`Config::policy`] is a ready [`tram_bus::policy::Policy`]
//! with users and groups resolved to numeric ids. [`Config::session_default`] is the stock
//! `session.conf` without reading any file, and [`Config::load_standard`] finds the file behind
//! `--session`/`--system`.
//!
//! Every [`ConfigError`] names the file and line it is about. What dbus-daemon merely warns about
//! (unknown users and groups, broken `<includedir>` entries) lands in [`Config::warnings`] and
//! loading goes on, so a configuration dbus-daemon accepts is accepted here too.
//!
//! The language is described in the CONFIGURATION FILE section of `dbus-daemon(1)`. Behaviour the
//! manual leaves open was settled by running dbus-daemon 1.14 on test files; the modules say where.
#![warn(missing_docs, unreachable_pub)]

mod error;
mod limits;
mod parse;
mod rule;
pub mod service;
mod servicedirs;
mod users;

use std::path::{Path, PathBuf};

use tram_bus::policy::Policy;

pub use error::{ConfigError, ConfigWarning, ErrorKind};
pub use limits::{LIMITS, LimitInfo, LimitUnit, Limits, limit_info};
pub use service::{ServiceError, ServiceErrorKind, ServiceFile};
pub use servicedirs::{ServiceDir, ServiceDirSpec, XdgDirs};
pub use users::{SystemUsers, UserDb, UserEntry, UserTable};

/// A loaded bus configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `<type>`: `session`, `system` or a custom type; the last one wins.
    pub bus_type: Option<String>,
    /// `<user>`: the user to run as, a name or a uid, not resolved (see [`UserTable::user`]).
    pub user: Option<String>,
    /// `<fork/>`.
    pub fork: bool,
    /// `<keep_umask/>`.
    pub keep_umask: bool,
    /// `<syslog/>`.
    pub syslog: bool,
    /// `<pidfile>`, as written (a relative path is relative to the working directory, as with
    /// dbus-daemon).
    pub pidfile: Option<PathBuf>,
    /// `<listen>` addresses, in file order.
    pub listen: Vec<String>,
    /// `<auth>` mechanisms, in file order; empty means every mechanism.
    pub auth: Vec<String>,
    /// `<allow_anonymous/>`.
    pub allow_anonymous: bool,
    /// `<servicedir>` and the standard sets, in file order; see [`Config::service_dirs`].
    pub service_dirs: Vec<ServiceDirSpec>,
    /// `<servicehelper>`.
    pub servicehelper: Option<PathBuf>,
    /// `<limit>`s over dbus-daemon's defaults.
    pub limits: Limits,
    /// Every `<policy>` rule.
    pub policy: Policy,
    /// `<selinux><associate/></selinux>`, in file order (a later one for the same name wins).
    pub selinux: Vec<SelinuxAssociation>,
    /// `<apparmor mode=…/>`; the last one wins.
    pub apparmor: AppArmorMode,
    /// Every file read, in order, for watching.
    pub files: Vec<PathBuf>,
    /// Every `<includedir>`, existing or not, for watching.
    pub include_dirs: Vec<PathBuf>,
    /// What dbus-daemon would have warned about while loading.
    pub warnings: Vec<ConfigWarning>,
}

/// `<associate own="…" context="…"/>`: the SELinux context of a bus name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelinuxAssociation {
    /// The bus name.
    pub name: String,
    /// Its security context.
    pub context: String,
}

/// `<apparmor mode="…"/>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AppArmorMode {
    /// Mediate when the kernel supports AppArmor (the default).
    #[default]
    Enabled,
    /// Never mediate.
    Disabled,
    /// Mediate, and refuse to start without AppArmor.
    Required,
}

/// The two well-known buses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// `--session`.
    Session,
    /// `--system`.
    System,
}

/// The SELinux facts `<include if_selinux_enabled="yes" selinux_root_relative="yes">` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selinux {
    /// Whether SELinux is enabled.
    pub enabled: bool,
    /// The policy root, such as `/etc/selinux/targeted`.
    pub policy_root: PathBuf,
}

/// Loads configurations with a given user database and SELinux state (for tests, or to share one
/// [`SystemUsers`] between loads).
pub struct Loader<'a> {
    users: &'a dyn UserDb,
    selinux: Selinux,
}

impl Config {
    /// Loads the configuration file at `path` and everything it includes, resolving users and
    /// groups from `/etc/passwd` and `/etc/group`.
    ///
    /// # Errors
    ///
    /// The first problem dbus-daemon would refuse to start over, with its file and line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let users = SystemUsers::new();
        Loader::new(&users, Selinux::detect()).load(path)
    }

    /// Parses `text` as if it were the contents of the file `origin`: includes are relative to
    /// its directory, and errors name it.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let users = SystemUsers::new();
        Loader::new(&users, Selinux::detect()).load_str(text, origin)
    }

    /// The configuration of dbus-daemon's stock `session.conf`, without its includes: listen on
    /// `unix:tmpdir=/tmp`, EXTERNAL authentication, the standard session service directories,
    /// send, receive and eavesdrop on anything, own any name, and the session's high limits.
    pub fn session_default() -> Config {
        let mut limits = Limits::default();
        for (name, value) in SESSION_LIMITS {
            limits.set(name, value);
        }
        Config {
            bus_type: Some("session".to_owned()),
            keep_umask: true,
            listen: vec!["unix:tmpdir=/tmp".to_owned()],
            auth: vec!["EXTERNAL".to_owned()],
            service_dirs: vec![ServiceDirSpec::StandardSession],
            limits,
            policy: Policy::session(),
            ..Config::empty()
        }
    }

    /// The file dbus-daemon reads for `--session` or `--system`: `/usr/share/dbus-1/KIND.conf`
    /// (which includes `/etc/dbus-1/KIND.conf` and `KIND-local.conf` itself), or, on systems
    /// laid out before dbus 1.10 that lack it, `/etc/dbus-1/KIND.conf`.
    pub fn standard_path(kind: BusKind) -> PathBuf {
        let file = match kind {
            BusKind::Session => "session.conf",
            BusKind::System => "system.conf",
        };
        let primary = Path::new("/usr/share/dbus-1").join(file);
        let legacy = Path::new("/etc/dbus-1").join(file);
        if !primary.exists() && legacy.exists() {
            legacy
        } else {
            primary
        }
    }

    /// Loads [`Config::standard_path`].
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_standard(kind: BusKind) -> Result<Config, ConfigError> {
        Config::load(&Config::standard_path(kind))
    }

    /// The service directories to search, in order, with the standard sets expanded.
    pub fn service_dirs(&self, xdg: &XdgDirs) -> Vec<ServiceDir> {
        servicedirs::expand(&self.service_dirs, xdg)
    }

    /// The SELinux context `<associate>` gives the bus name `name`.
    pub fn selinux_context(&self, name: &str) -> Option<&str> {
        self.selinux
            .iter()
            .rev()
            .find(|a| a.name == name)
            .map(|a| a.context.as_str())
    }

    fn empty() -> Config {
        Config {
            bus_type: None,
            user: None,
            fork: false,
            keep_umask: false,
            syslog: false,
            pidfile: None,
            listen: Vec::new(),
            auth: Vec::new(),
            allow_anonymous: false,
            service_dirs: Vec::new(),
            servicehelper: None,
            limits: Limits::default(),
            policy: Policy::default(),
            selinux: Vec::new(),
            apparmor: AppArmorMode::default(),
            files: Vec::new(),
            include_dirs: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Selinux {
    /// SELinux as this machine has it: enabled when selinuxfs is mounted, with the policy root
    /// named by `SELINUXTYPE=` in `/etc/selinux/config` (`targeted` when unset, as libselinux
    /// and dbus-daemon assume).
    pub fn detect() -> Selinux {
        let kind = std::fs::read_to_string("/etc/selinux/config")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let value = l.trim().strip_prefix("SELINUXTYPE=")?.trim();
                    (!value.is_empty() && !value.contains('/')).then(|| value.to_owned())
                })
            })
            .unwrap_or_else(|| "targeted".to_owned());
        Selinux {
            enabled: Path::new("/sys/fs/selinux/enforce").exists(),
            policy_root: Path::new("/etc/selinux").join(kind),
        }
    }

    /// SELinux off: `if_selinux_enabled` includes are skipped.
    pub fn disabled() -> Selinux {
        Selinux {
            enabled: false,
            policy_root: PathBuf::from("/etc/selinux/targeted"),
        }
    }
}

impl<'a> Loader<'a> {
    /// A loader resolving users and groups with `users`.
    pub fn new(users: &'a dyn UserDb, selinux: Selinux) -> Loader<'a> {
        Loader { users, selinux }
    }

    /// As [`Config::load`].
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load(&self, path: &Path) -> Result<Config, ConfigError> {
        let mut walker = parse::Walker::new(self.users, &self.selinux);
        let partial = walker.file(path, None)?;
        Ok(assemble(partial, walker))
    }

    /// As [`Config::from_str`].
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_str(&self, text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut walker = parse::Walker::new(self.users, &self.selinux);
        let partial = walker.text(text, origin)?;
        Ok(assemble(partial, walker))
    }
}

/// The limits of the stock `session.conf`.
const SESSION_LIMITS: [(&str, u64); 15] = [
    ("max_incoming_bytes", 1_000_000_000),
    ("max_incoming_unix_fds", 250_000_000),
    ("max_outgoing_bytes", 1_000_000_000),
    ("max_outgoing_unix_fds", 250_000_000),
    ("max_message_size", 1_000_000_000),
    ("service_start_timeout", 120_000),
    ("auth_timeout", 240_000),
    ("pending_fd_timeout", 150_000),
    ("max_completed_connections", 100_000),
    ("max_incomplete_connections", 10_000),
    ("max_connections_per_user", 100_000),
    ("max_pending_service_starts", 10_000),
    ("max_names_per_connection", 50_000),
    ("max_match_rules_per_connection", 50_000),
    ("max_replies_per_connection", 50_000),
];

fn assemble(p: parse::Partial, walker: parse::Walker<'_>) -> Config {
    let mut limits = Limits::default();
    for (name, value) in p.limits {
        limits.set(name, value);
    }
    Config {
        bus_type: p.bus_type,
        user: p.user,
        fork: p.fork,
        keep_umask: p.keep_umask,
        syslog: p.syslog,
        pidfile: p.pidfile,
        listen: p.listen,
        auth: p.auth,
        allow_anonymous: p.allow_anonymous,
        service_dirs: p.service_dirs,
        servicehelper: p.servicehelper,
        limits,
        policy: Policy::new(p.rules),
        selinux: p.selinux,
        apparmor: p.apparmor.unwrap_or_default(),
        files: walker.files,
        include_dirs: walker.include_dirs,
        warnings: walker.warnings,
    }
}

#[cfg(test)]
mod tests;
