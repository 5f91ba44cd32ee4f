//! The daemon's configuration: what it is loaded from and what it holds.
//!
//! [`load`] reads the configuration the command line chose with `tram_config` (dbus-daemon's
//! XML language) and splits it in two: the [`Config`] the daemon itself acts on (where to
//! listen, how to authenticate, the connection limits it enforces, how to run), and the
//! policy and limits of the bus core ([`Loaded::policy`], [`Loaded::bus_limits`]).
//!
//! * `--config-file=FILE` loads FILE; `--system` loads the standard system file and fails
//!   without it;
//! * `--session` loads the standard session file, and without one runs on built-in defaults:
//!   the stock `session.conf` with admission opened to every local user (the stock file admits
//!   the bus's own user only).
//!
//! Every error names the file and line it is about (`file:line: reason`); what dbus-daemon only
//! warns about is passed on in [`Loaded::warnings`]. Loading is pure apart from reading the
//! files: reloading builds a complete new [`Loaded`] and the caller swaps it in whole.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tram_bus::policy::{Context, IdMatch, Policy, Rule, RuleKind};
use tram_config::{BusKind, ServiceDir, XdgDirs};
use tram_sasl::Mechanism;

use crate::cli::ConfigSource;
use crate::launcher::LaunchMode;
use crate::services;

/// Connection limits enforced by the daemon (the bus core enforces the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// How long a connection may take to authenticate and say Hello (`auth_timeout`).
    pub(crate) auth_timeout: Duration,
    /// Connections that have not said Hello yet (`max_incomplete_connections`); when a new one
    /// would exceed it, the oldest is dropped.
    pub(crate) max_incomplete_connections: usize,
    /// Connections with a unique name (`max_completed_connections`); beyond it Hello fails.
    pub(crate) max_completed_connections: usize,
    /// Connections with a unique name of one uid (`max_connections_per_user`).
    pub(crate) max_connections_per_user: usize,
    /// Bytes of complete messages read from one connection and not yet handed to the bus
    /// (`max_incoming_bytes`): bounds one read.
    pub(crate) max_incoming_bytes: usize,
    /// Fds of messages read from one connection and not yet handed to the bus
    /// (`max_incoming_unix_fds`).
    pub(crate) max_incoming_unix_fds: usize,
    /// The largest message (`max_message_size`); a larger one disconnects its sender.
    pub(crate) max_message_size: usize,
    /// The most fds in one message (`max_message_unix_fds`); more disconnect the sender.
    pub(crate) max_message_unix_fds: usize,
    /// How long fds may wait for the rest of their message (`pending_fd_timeout`).
    pub(crate) pending_fd_timeout: Duration,
}

impl Default for Limits {
    /// dbus-daemon's built-in values, used for limits a configuration does not set.
    fn default() -> Limits {
        Limits::from_config(&tram_config::Limits::default())
    }
}

impl Limits {
    /// The daemon's share of a configuration's limits.
    pub(crate) fn from_config(l: &tram_config::Limits) -> Limits {
        Limits {
            auth_timeout: l.auth_timeout,
            max_incomplete_connections: size(l.max_incomplete_connections),
            max_completed_connections: size(l.max_completed_connections),
            max_connections_per_user: size(l.max_connections_per_user),
            max_incoming_bytes: size(l.max_incoming_bytes),
            max_incoming_unix_fds: size(l.max_incoming_unix_fds),
            max_message_size: size(l.max_message_size),
            max_message_unix_fds: size(l.max_message_unix_fds),
            pending_fd_timeout: l.pending_fd_timeout,
        }
    }
}

/// Everything the daemon needs to start a bus, besides the bus core's policy and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// `<type>`: `"session"`, `"system"`, a custom type, or empty when none is given.
    pub(crate) bus_type: String,
    /// Addresses to listen on (one per `<listen>` element). Each is a full address string whose
    /// `;`-separated entries are alternatives: the first that works is used.
    pub(crate) listen: Vec<String>,
    /// The mechanisms allowed (the `<auth>` elements); `None` (no `<auth>`) allows every one.
    pub(crate) auth_mechanisms: Option<Vec<Mechanism>>,
    /// Whether clients that authenticated with ANONYMOUS may stay (`<allow_anonymous/>`).
    pub(crate) allow_anonymous: bool,
    /// Connection limits.
    pub(crate) limits: Limits,
    /// `<user>`: the account to run as once listening, not resolved yet.
    pub(crate) user: Option<String>,
    /// `<fork/>`.
    pub(crate) fork: bool,
    /// `<keep_umask/>`: keep the umask when forking (otherwise it becomes 022).
    pub(crate) keep_umask: bool,
    /// `<syslog/>`.
    pub(crate) syslog: bool,
    /// `<pidfile>`.
    pub(crate) pidfile: Option<PathBuf>,
    /// The directories searched for `.service` files, in order (the standard sets expanded
    /// from this process's XDG variables).
    pub(crate) service_dirs: Vec<ServiceDir>,
    /// How activated services are started: as their `User=` when a `<servicehelper>` is
    /// configured (the system bus), else as the bus's own user.
    pub(crate) launch_mode: LaunchMode,
}

/// A loaded configuration: the daemon's part and the bus core's part.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// What the daemon acts on.
    pub(crate) config: Config,
    /// The bus's policy.
    pub(crate) policy: Policy,
    /// The limits the bus core enforces.
    pub(crate) bus_limits: tram_bus::Limits,
    /// What dbus-daemon would warn about, each `file:line: message`.
    pub(crate) warnings: Vec<String>,
    /// The built-in defaults were used: `--session` found no configuration file.
    pub(crate) builtin: bool,
}

/// Why a configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

impl From<tram_config::ConfigError> for LoadError {
    fn from(e: tram_config::ConfigError) -> LoadError {
        LoadError(e.to_string())
    }
}

/// Loads the configuration `source` names.
///
/// # Errors
/// The file cannot be read or is not a valid configuration (`file:line: reason`).
pub(crate) fn load(source: &ConfigSource) -> Result<Loaded, LoadError> {
    let config = match source {
        ConfigSource::File(path) => tram_config::Config::load(path)?,
        ConfigSource::System => tram_config::Config::load_standard(BusKind::System)?,
        ConfigSource::Session => {
            let path = tram_config::Config::standard_path(BusKind::Session);
            if !path.exists() {
                return Ok(Loaded::builtin_session());
            }
            tram_config::Config::load(&path)?
        }
    };
    Ok(Loaded::from_config(config))
}

impl Loaded {
    /// Splits a parsed configuration into the daemon's and the bus core's parts.
    pub(crate) fn from_config(c: tram_config::Config) -> Loaded {
        let mut warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        let mut auth_mechanisms = Vec::new();
        for name in &c.auth {
            match Mechanism::from_name(name) {
                Some(m) if !auth_mechanisms.contains(&m) => auth_mechanisms.push(m),
                Some(_) => {}
                None => warnings.push(format!(
                    "unknown authentication mechanism {name:?} in <auth>, ignored"
                )),
            }
        }
        let bus_limits = bus_limits(&c.limits);
        let service_dirs = services::directories(&c, &XdgDirs::from_env());
        let launch_mode = if c.servicehelper.is_some() {
            LaunchMode::AsUser
        } else {
            LaunchMode::Direct
        };
        Loaded {
            config: Config {
                bus_type: c.bus_type.clone().unwrap_or_default(),
                listen: c.listen.clone(),
                // Only unknown mechanisms listed: none is allowed, not all.
                auth_mechanisms: (!c.auth.is_empty()).then_some(auth_mechanisms),
                allow_anonymous: c.allow_anonymous,
                limits: Limits::from_config(&c.limits),
                user: c.user.clone(),
                fork: c.fork,
                keep_umask: c.keep_umask,
                syslog: c.syslog,
                pidfile: c.pidfile.clone(),
                service_dirs,
                launch_mode,
            },
            policy: c.policy,
            bus_limits,
            warnings,
            builtin: false,
        }
    }

    /// The built-in session configuration: the stock `session.conf`, every local user admitted.
    pub(crate) fn builtin_session() -> Loaded {
        let mut loaded = Loaded::from_config(tram_config::Config::session_default());
        let everyone = Rule {
            allow: true,
            kind: RuleKind::User(IdMatch::Any),
            log: false,
            origin: None,
        };
        let rules = loaded
            .policy
            .rules()
            .map(|(_, context, rule)| (context, rule.clone()))
            .chain([(Context::Default, everyone)])
            .collect::<Vec<_>>();
        loaded.policy = Policy::new(rules);
        loaded.builtin = true;
        loaded
    }
}

impl Config {
    /// The mechanisms offered on a transport, in dbus-daemon's order: the allowed ones, minus
    /// EXTERNAL where the transport carries no credentials (TCP). ANONYMOUS is offered when
    /// allowed, as dbus-daemon does; `<allow_anonymous/>` decides whether such a client stays.
    pub(crate) fn offered_mechanisms(&self, credentials_passing: bool) -> Vec<Mechanism> {
        let allowed: &[Mechanism] = self.auth_mechanisms.as_deref().unwrap_or(&Mechanism::ALL);
        Mechanism::ALL
            .into_iter()
            .filter(|m| allowed.contains(m))
            .filter(|&m| m != Mechanism::External || credentials_passing)
            .collect()
    }
}

/// The bus core's share of a configuration's limits.
fn bus_limits(l: &tram_config::Limits) -> tram_bus::Limits {
    tram_bus::Limits {
        max_outgoing_bytes: l.max_outgoing_bytes,
        max_outgoing_unix_fds: l.max_outgoing_unix_fds,
        max_message_size: l.max_message_size,
        max_message_unix_fds: l.max_message_unix_fds,
        max_names_per_connection: l.max_names_per_connection,
        max_match_rules_per_connection: l.max_match_rules_per_connection,
        max_replies_per_connection: l.max_replies_per_connection,
        reply_timeout: l.reply_timeout,
        service_start_timeout: l.service_start_timeout,
        max_pending_service_starts: l.max_pending_service_starts,
        max_completed_connections: l.max_completed_connections,
    }
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tram_bus::Credentials;
    use tram_config::{Loader, Selinux, UserTable};

    use super::*;

    const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nmessagebus:x:100:102::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nmessagebus:x:102:\n";

    fn parse(body: &str) -> Loaded {
        let users = UserTable::parse(PASSWD, GROUP);
        let text = format!("<busconfig>{body}</busconfig>");
        let config = Loader::new(&users, Selinux::disabled())
            .load_str(&text, Path::new("/test/bus.conf"))
            .unwrap();
        Loaded::from_config(config)
    }

    fn creds(uid: u32) -> Credentials {
        Credentials {
            uid,
            gid: uid,
            groups: vec![uid],
            ..Credentials::default()
        }
    }

    #[test]
    fn maps_daemon_settings() {
        let l = parse(
            "<type>system</type>\
             <user>messagebus</user>\
             <fork/><keep_umask/><syslog/>\
             <pidfile>/run/tram.pid</pidfile>\
             <listen>unix:path=/a</listen><listen>tcp:host=localhost,port=0</listen>\
             <auth>EXTERNAL</auth><auth>ANONYMOUS</auth><auth>EXTERNAL</auth>\
             <allow_anonymous/>",
        );
        let c = &l.config;
        assert_eq!(c.bus_type, "system");
        assert_eq!(c.user.as_deref(), Some("messagebus"));
        assert!(c.fork && c.keep_umask && c.syslog && c.allow_anonymous);
        assert_eq!(c.pidfile.as_deref(), Some(Path::new("/run/tram.pid")));
        assert_eq!(c.listen, ["unix:path=/a", "tcp:host=localhost,port=0"]);
        assert_eq!(c.launch_mode, LaunchMode::Direct);
        assert_eq!(
            c.auth_mechanisms.as_deref(),
            Some(&[Mechanism::External, Mechanism::Anonymous][..])
        );
        assert!(!l.builtin);
    }

    #[test]
    fn maps_limits_to_daemon_and_bus() {
        let l = parse(
            "<limit name=\"max_incoming_bytes\">1000</limit>\
             <limit name=\"max_incoming_unix_fds\">3</limit>\
             <limit name=\"max_outgoing_bytes\">2000</limit>\
             <limit name=\"max_outgoing_unix_fds\">4</limit>\
             <limit name=\"max_message_size\">500</limit>\
             <limit name=\"max_message_unix_fds\">2</limit>\
             <limit name=\"auth_timeout\">1500</limit>\
             <limit name=\"pending_fd_timeout\">2500</limit>\
             <limit name=\"max_completed_connections\">7</limit>\
             <limit name=\"max_incomplete_connections\">8</limit>\
             <limit name=\"max_connections_per_user\">9</limit>\
             <limit name=\"max_names_per_connection\">10</limit>\
             <limit name=\"max_match_rules_per_connection\">11</limit>\
             <limit name=\"max_replies_per_connection\">12</limit>\
             <limit name=\"reply_timeout\">13000</limit>",
        );
        assert_eq!(
            l.config.limits,
            Limits {
                auth_timeout: Duration::from_millis(1500),
                max_incomplete_connections: 8,
                max_completed_connections: 7,
                max_connections_per_user: 9,
                max_incoming_bytes: 1000,
                max_incoming_unix_fds: 3,
                max_message_size: 500,
                max_message_unix_fds: 2,
                pending_fd_timeout: Duration::from_millis(2500),
            }
        );
        assert_eq!(
            l.bus_limits,
            tram_bus::Limits {
                max_outgoing_bytes: 2000,
                max_outgoing_unix_fds: 4,
                max_message_size: 500,
                max_message_unix_fds: 2,
                max_names_per_connection: 10,
                max_match_rules_per_connection: 11,
                max_replies_per_connection: 12,
                reply_timeout: Some(Duration::from_secs(13)),
                service_start_timeout: Duration::from_secs(25),
                max_pending_service_starts: 512,
                max_completed_connections: 7,
            }
        );
    }

    #[test]
    fn defaults_are_dbus_daemons() {
        let l = parse("");
        assert_eq!(l.config.limits.auth_timeout, Duration::from_secs(30));
        assert_eq!(l.config.limits.max_incomplete_connections, 64);
        assert_eq!(l.config.limits.max_completed_connections, 2048);
        assert_eq!(l.config.limits.max_message_unix_fds, 16);
        assert_eq!(l.bus_limits.max_outgoing_bytes, 127 << 20);
        assert_eq!(l.bus_limits.max_message_size, 32 << 20);
        assert_eq!(l.bus_limits.max_names_per_connection, 512);
        assert_eq!(l.bus_limits.max_replies_per_connection, 128);
        assert_eq!(l.config.bus_type, "");
        assert_eq!(l.config.auth_mechanisms, None);
        assert!(!l.config.fork && !l.config.keep_umask && l.config.pidfile.is_none());
        assert!(l.config.service_dirs.is_empty());
    }

    #[test]
    fn service_directories_and_launch_mode() {
        let l = parse(
            "<type>system</type>\
             <servicehelper>/usr/lib/dbus-1.0/dbus-daemon-launch-helper</servicehelper>\
             <servicedir>/srv/services</servicedir>",
        );
        assert_eq!(l.config.launch_mode, LaunchMode::AsUser);
        let dirs: Vec<_> = l
            .config
            .service_dirs
            .iter()
            .map(|d| (d.path.as_path(), d.strict_naming))
            .collect();
        assert_eq!(dirs, [(Path::new("/srv/services"), true)]);
    }

    #[test]
    fn policy_admission_comes_through() {
        let bus_uid = 0;
        let open = parse("<policy context=\"default\"><allow user=\"*\"/></policy>");
        assert!(open.policy.allows_user(65534, &[65534], bus_uid));
        let closed = parse("<policy context=\"default\"><allow own=\"*\"/></policy>");
        assert!(!closed.policy.allows_user(65534, &[65534], bus_uid));
        assert!(closed.policy.allows_user(0, &[0], bus_uid));
        let by_group = parse("<policy context=\"default\"><allow group=\"messagebus\"/></policy>");
        let member = creds(1000);
        assert!(
            !by_group
                .policy
                .allows_user(member.uid, &member.groups, bus_uid)
        );
        assert!(by_group.policy.allows_user(1000, &[1000, 102], bus_uid));
    }

    #[test]
    fn builtin_session_admits_every_user() {
        let l = Loaded::builtin_session();
        assert!(l.builtin);
        assert_eq!(l.config.bus_type, "session");
        assert_eq!(l.config.listen, ["unix:tmpdir=/tmp"]);
        assert_eq!(l.config.offered_mechanisms(true), [Mechanism::External]);
        assert_eq!(l.config.limits.auth_timeout, Duration::from_secs(240));
        assert_eq!(l.bus_limits.max_outgoing_bytes, 1_000_000_000);
        assert_eq!(l.bus_limits.max_names_per_connection, 50_000);
        assert_eq!(l.bus_limits.reply_timeout, None);
        assert!(l.policy.allows_user(65534, &[65534], 1000));
        // The stock file's policy without the added rule admits the owner only.
        let stock = tram_config::Config::session_default().policy;
        assert!(!stock.allows_user(65534, &[65534], 1000));
        assert_eq!(l.policy.rules().count(), stock.rules().count() + 1);
    }

    #[test]
    fn offered_mechanisms() {
        use Mechanism::*;
        type Case<'a> = (Option<&'a [Mechanism]>, bool, &'a [Mechanism]);
        let cases: &[Case<'_>] = &[
            (None, true, &[External, CookieSha1, Anonymous]),
            (None, false, &[CookieSha1, Anonymous]),
            (Some(&[External]), true, &[External]),
            (Some(&[External]), false, &[]),
            (Some(&[Anonymous, External]), true, &[External, Anonymous]),
            (Some(&[]), true, &[]),
        ];
        for &(allowed, creds, want) in cases {
            let c = Config {
                auth_mechanisms: allowed.map(<[Mechanism]>::to_vec),
                ..Loaded::builtin_session().config
            };
            assert_eq!(c.offered_mechanisms(creds), want, "{allowed:?} {creds}");
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let users = UserTable::parse(PASSWD, GROUP);
        let err = Loader::new(&users, Selinux::disabled())
            .load_str(
                "<busconfig>\n<limit name=\"nope\">1</limit>\n</busconfig>",
                Path::new("/test/bus.conf"),
            )
            .unwrap_err();
        let text = LoadError::from(err).to_string();
        assert!(text.starts_with("/test/bus.conf:2: "), "{text}");
        let missing = load(&ConfigSource::File("/nonexistent/tramd.conf".into())).unwrap_err();
        assert!(
            missing.to_string().starts_with("/nonexistent/tramd.conf"),
            "{missing}"
        );
    }
}
