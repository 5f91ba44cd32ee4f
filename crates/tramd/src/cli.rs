//! The command line, with dbus-daemon's meaning for every option it shares.
//!
//! Parsing is pure: [`parse`] turns the arguments into a [`Command`] or a [`CliError`] whose
//! text says what was wrong. Options that take a value accept both `--opt=VALUE` and
//! `--opt VALUE`; for `--print-address` and `--print-pid`, whose value is optional, the next
//! argument is taken as the descriptor only when it is a number. As with dbus-daemon, a second
//! configuration (`--session`, `--system`, `--config-file`) is refused, and so are `--fork`
//! together with `--nofork`; of `--syslog`, `--syslog-only` and `--nosyslog` the last wins.
//!
//! `tramd run-session` takes dbus-run-session's command line instead ([`RunSession`]): its
//! options, then the program and its arguments, which need not be UTF-8.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// The usage text, printed by `--help` and after usage errors.
pub(crate) const USAGE: &str = "\
Usage: tramd [OPTION]...
       tramd run-session [OPTION]... [--] PROGRAM [ARGUMENT]...
A D-Bus message bus daemon, compatible with dbus-daemon.

  --session                 use the standard session bus configuration
  --system                  use the standard system bus configuration
  --config-file=FILE        use the configuration file FILE
  --address=ADDRESS         listen on ADDRESS instead of the configured addresses
  --print-address[=FD]      print the bus address to FD (default: standard output)
  --print-pid[=FD]          print the process id to FD (default: standard output)
  --fork                    run in the background once listening
  --nofork                  stay in the foreground, whatever the configuration says
  --nopidfile               write no pid file, whatever the configuration says
  --systemd-activation      let systemd start activatable services
  --syslog                  log to the system log as well as standard error
  --syslog-only             log to the system log only
  --nosyslog                log to standard error only
  --introspect              print the bus driver's introspection data and exit
  --version                 print the version and exit
  --help                    print this help and exit

tramd run-session runs PROGRAM with a session bus of its own; see tramd run-session --help.
";

/// The usage text of `tramd run-session --help`.
pub(crate) const RUN_SESSION_USAGE: &str = "\
Usage: tramd run-session [OPTION]... [--] PROGRAM [ARGUMENT]...
Start a session bus on a private address, run PROGRAM with DBUS_SESSION_BUS_ADDRESS naming it,
stop the bus when PROGRAM exits, and exit with PROGRAM's status (128+N if signal N killed it,
127 for an error of run-session itself), as dbus-run-session does.

  --config-file=FILE        start the bus with --config-file=FILE instead of --session
  --dbus-daemon=PROGRAM     run PROGRAM as the bus instead of this tramd (searched in PATH
                            unless it contains a /)
  --version                 print the version and exit
  --help                    print this help and exit
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run the bus.
    Run(Options),
    /// Print [`USAGE`] and exit successfully.
    Help,
    /// Print the version and exit successfully.
    Version,
    /// Print the driver's introspection data and exit successfully.
    Introspect,
    /// `tramd run-session`: run a program with a session bus of its own.
    RunSession(RunSession),
    /// Print [`RUN_SESSION_USAGE`] and exit successfully.
    RunSessionHelp,
}

/// What `tramd run-session` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSession {
    /// `--config-file`: the bus's configuration instead of `--session`.
    pub(crate) config_file: Option<PathBuf>,
    /// `--dbus-daemon`: the bus program instead of this executable.
    pub(crate) daemon: Option<OsString>,
    /// The program and its arguments; never empty.
    pub(crate) command: Vec<OsString>,
}

/// Options for running the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Which configuration to load.
    pub(crate) config: ConfigSource,
    /// `--address`: replaces the configured listen addresses.
    pub(crate) address: Option<String>,
    /// `--print-address`: where to print the address once listening.
    pub(crate) print_address: Option<PrintTarget>,
    /// `--print-pid`: where to print the process id once listening.
    pub(crate) print_pid: Option<PrintTarget>,
    /// `--fork` (`Some(true)`) or `--nofork` (`Some(false)`); `None` follows `<fork/>`.
    pub(crate) fork: Option<bool>,
    /// `--nopidfile`: ignore `<pidfile>`.
    pub(crate) no_pidfile: bool,
    /// `--systemd-activation`.
    pub(crate) systemd_activation: bool,
    /// `--syslog`, `--syslog-only` or `--nosyslog`; `None` follows `<syslog/>`.
    pub(crate) syslog: Option<SyslogMode>,
}

/// The configuration chosen on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    /// `--session`: the standard session configuration, or built-in defaults without one.
    Session,
    /// `--system`: the standard system configuration.
    System,
    /// `--config-file=FILE`.
    File(PathBuf),
}

/// Where log lines go, as the command line forces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyslogMode {
    /// `--syslog`: the system log and standard error.
    Both,
    /// `--syslog-only`: the system log only.
    Only,
    /// `--nosyslog`: standard error only.
    Never,
}

/// Where `--print-address` or `--print-pid` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrintTarget {
    /// Standard output.
    Stdout,
    /// A file descriptor inherited from the caller.
    Fd(i32),
}

/// A command line tramd cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CliError {
    /// An option tramd does not know.
    UnknownOption(String),
    /// A dbus-daemon option tramd does not implement.
    Unsupported(String),
    /// An option that takes a value was given none.
    MissingValue(&'static str),
    /// An option that takes no value was given one.
    UnexpectedValue(String),
    /// `--print-address=FD` or `--print-pid=FD` with something that is not a descriptor.
    BadDescriptor(String),
    /// A positional argument.
    UnexpectedArgument(String),
    /// An argument that is not valid UTF-8.
    NotUtf8(OsString),
    /// No bus configuration was chosen.
    NoConfiguration,
    /// Two configurations were chosen (the second one is named).
    TwoConfigurations(String),
    /// `--fork` and `--nofork` together.
    ForkAndNofork,
    /// `run-session` without a program to run.
    NoProgram,
    /// A mistake in a `run-session` command line.
    RunSession(Box<CliError>),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownOption(o) => write!(f, "unknown option {o:?}"),
            CliError::Unsupported(o) => write!(f, "option {o} is not supported"),
            CliError::MissingValue(o) => write!(f, "option {o} needs a value"),
            CliError::UnexpectedValue(o) => write!(f, "option {o} takes no value"),
            CliError::BadDescriptor(v) => write!(f, "invalid file descriptor: {v:?}"),
            CliError::UnexpectedArgument(a) => write!(f, "unexpected argument {a:?}"),
            CliError::NotUtf8(a) => write!(f, "argument {a:?} is not valid UTF-8"),
            CliError::NoConfiguration => f.write_str(
                "no configuration file specified: use --session, --system or --config-file",
            ),
            CliError::TwoConfigurations(o) => {
                write!(f, "{o} given, but a configuration was already chosen")
            }
            CliError::ForkAndNofork => f.write_str("--fork and --nofork may not both be given"),
            CliError::NoProgram => f.write_str("a program to run is required"),
            CliError::RunSession(e) => write!(f, "run-session: {e}"),
        }
    }
}

impl CliError {
    /// The exit status for this mistake: 127 for `run-session`, as dbus-run-session uses, else
    /// 1, as dbus-daemon uses.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            CliError::RunSession(_) => 127,
            _ => 1,
        }
    }

    /// How to get help for the command that was mistyped.
    pub(crate) fn help_hint(&self) -> &'static str {
        match self {
            CliError::RunSession(_) => "Try 'tramd run-session --help' for more information.",
            _ => "Try 'tramd --help' for more information.",
        }
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments after the program name.
///
/// # Errors
/// Unknown or unsupported options, missing or malformed values, no configuration or two.
pub(crate) fn parse<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter().peekable();
    if args.next_if(|a| a == "run-session").is_some() {
        return parse_run_session(args).map_err(|e| CliError::RunSession(Box::new(e)));
    }
    let args = args
        .map(|a| a.into_string().map_err(CliError::NotUtf8))
        .collect::<Result<Vec<String>, _>>()?;
    let mut config = None;
    let mut options = Options {
        config: ConfigSource::Session,
        address: None,
        print_address: None,
        print_pid: None,
        fork: None,
        no_pidfile: false,
        systemd_activation: false,
        syslog: None,
    };
    let mut help = false;
    let mut version = false;
    let mut introspect = false;
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let no_value = |option: &str| match value {
            Some(_) => Err(CliError::UnexpectedValue(option.to_owned())),
            None => Ok(()),
        };
        let mut choose = |source: ConfigSource| match config.replace(source) {
            Some(_) => Err(CliError::TwoConfigurations(name.clone())),
            None => Ok(()),
        };
        match name.as_str() {
            "--session" => {
                no_value(&name)?;
                choose(ConfigSource::Session)?;
            }
            "--system" => {
                no_value(&name)?;
                choose(ConfigSource::System)?;
            }
            "--config-file" => {
                let file = required(value, &mut iter, "--config-file")?;
                choose(ConfigSource::File(PathBuf::from(file)))?;
            }
            "--address" => options.address = Some(required(value, &mut iter, "--address")?),
            "--print-address" => options.print_address = Some(print_target(value, &mut iter)?),
            "--print-pid" => options.print_pid = Some(print_target(value, &mut iter)?),
            "--fork" | "--nofork" => {
                no_value(&name)?;
                let fork = name == "--fork";
                if options.fork.is_some_and(|f| f != fork) {
                    return Err(CliError::ForkAndNofork);
                }
                options.fork = Some(fork);
            }
            "--nopidfile" => {
                no_value(&name)?;
                options.no_pidfile = true;
            }
            "--systemd-activation" => {
                no_value(&name)?;
                options.systemd_activation = true;
            }
            "--syslog" | "--syslog-only" | "--nosyslog" => {
                no_value(&name)?;
                options.syslog = Some(match name.as_str() {
                    "--syslog" => SyslogMode::Both,
                    "--syslog-only" => SyslogMode::Only,
                    _ => SyslogMode::Never,
                });
            }
            "--introspect" => {
                no_value(&name)?;
                introspect = true;
            }
            "--version" => {
                no_value(&name)?;
                version = true;
            }
            "--help" => {
                no_value(&name)?;
                help = true;
            }
            "--ready-event-handle" => return Err(CliError::Unsupported(name)),
            _ if name.starts_with('-') => return Err(CliError::UnknownOption(arg)),
            _ => return Err(CliError::UnexpectedArgument(arg)),
        }
    }
    if help {
        return Ok(Command::Help);
    }
    if version {
        return Ok(Command::Version);
    }
    if introspect {
        return Ok(Command::Introspect);
    }
    options.config = config.ok_or(CliError::NoConfiguration)?;
    Ok(Command::Run(options))
}

/// Parses the arguments after `run-session`: dbus-run-session's options up to `--` or the first
/// argument that is not an option, which is the program.
fn parse_run_session<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let mut options = RunSession {
        config_file: None,
        daemon: None,
        command: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let text = arg.to_str();
        let (name, value) = match text.and_then(|t| t.split_once('=')) {
            Some((n, v)) if n.starts_with("--") => (n, Some(OsString::from(v))),
            _ => (text.unwrap_or_default(), None),
        };
        let mut take = |option: &'static str| -> Result<OsString, CliError> {
            match value.clone().or_else(|| args.next()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(CliError::MissingValue(option)),
            }
        };
        match name {
            "--config-file" => options.config_file = Some(PathBuf::from(take("--config-file")?)),
            "--dbus-daemon" => options.daemon = Some(take("--dbus-daemon")?),
            "--help" => return Ok(Command::RunSessionHelp),
            "--version" => return Ok(Command::Version),
            "--" => {
                options.command.extend(args.by_ref());
                break;
            }
            _ if arg.as_encoded_bytes().starts_with(b"-") => {
                return Err(CliError::UnknownOption(arg.to_string_lossy().into_owned()));
            }
            _ => {
                options.command.push(arg);
                options.command.extend(args.by_ref());
                break;
            }
        }
    }
    if options.command.is_empty() {
        return Err(CliError::NoProgram);
    }
    Ok(Command::RunSession(options))
}

/// The value of an option that needs one: after `=`, or the next argument.
fn required<I>(
    value: Option<String>,
    iter: &mut I,
    option: &'static str,
) -> Result<String, CliError>
where
    I: Iterator<Item = String>,
{
    let value = match value {
        Some(v) => v,
        None => iter.next().ok_or(CliError::MissingValue(option))?,
    };
    if value.is_empty() {
        return Err(CliError::MissingValue(option));
    }
    Ok(value)
}

/// The descriptor of `--print-address`/`--print-pid`: after `=`, or the next argument when it
/// is a number; standard output otherwise.
fn print_target<I>(
    value: Option<String>,
    iter: &mut std::iter::Peekable<I>,
) -> Result<PrintTarget, CliError>
where
    I: Iterator<Item = String>,
{
    let value = match value {
        Some(v) => Some(v),
        None => iter.next_if(|next| is_descriptor(next)),
    };
    match value {
        Some(v) => parse_descriptor(&v),
        None => Ok(PrintTarget::Stdout),
    }
}

fn is_descriptor(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_descriptor(s: &str) -> Result<PrintTarget, CliError> {
    if s.is_empty() {
        return Ok(PrintTarget::Stdout);
    }
    let fd = s
        .parse::<i32>()
        .ok()
        .filter(|_| is_descriptor(s))
        .ok_or_else(|| CliError::BadDescriptor(s.to_owned()))?;
    Ok(if fd == 1 {
        PrintTarget::Stdout
    } else {
        PrintTarget::Fd(fd)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, CliError> {
        parse(args.iter().map(OsString::from))
    }

    fn options(config: ConfigSource) -> Options {
        Options {
            config,
            address: None,
            print_address: None,
            print_pid: None,
            fork: None,
            no_pidfile: false,
            systemd_activation: false,
            syslog: None,
        }
    }

    fn session(address: Option<&str>, print_address: Option<PrintTarget>) -> Command {
        Command::Run(Options {
            address: address.map(str::to_owned),
            print_address,
            ..options(ConfigSource::Session)
        })
    }

    #[test]
    fn accepted_command_lines() {
        use PrintTarget::*;
        let file = |p: &str| ConfigSource::File(PathBuf::from(p));
        let cases: &[(&[&str], Command)] = &[
            (&["--session"], session(None, None)),
            (
                &["--session", "--nofork"],
                Command::Run(Options {
                    fork: Some(false),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--session", "--nofork", "--nofork"],
                Command::Run(Options {
                    fork: Some(false),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--system", "--fork", "--nopidfile", "--systemd-activation"],
                Command::Run(Options {
                    fork: Some(true),
                    no_pidfile: true,
                    systemd_activation: true,
                    ..options(ConfigSource::System)
                }),
            ),
            (
                &["--config-file=/etc/x.conf"],
                Command::Run(options(file("/etc/x.conf"))),
            ),
            (
                &["--config-file", "rel.conf"],
                Command::Run(options(file("rel.conf"))),
            ),
            (
                &["--session", "--print-address"],
                session(None, Some(Stdout)),
            ),
            (
                &["--session", "--print-address="],
                session(None, Some(Stdout)),
            ),
            (
                &["--session", "--print-address=1"],
                session(None, Some(Stdout)),
            ),
            (
                &["--session", "--print-address=5"],
                session(None, Some(Fd(5))),
            ),
            (
                &["--session", "--print-address", "7"],
                session(None, Some(Fd(7))),
            ),
            (
                &["--print-address", "--session", "--nofork"],
                Command::Run(Options {
                    print_address: Some(Stdout),
                    fork: Some(false),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--session", "--print-address=3", "--print-address"],
                session(None, Some(Stdout)),
            ),
            (
                &["--session", "--print-pid", "--print-address", "4"],
                Command::Run(Options {
                    print_pid: Some(Stdout),
                    print_address: Some(Fd(4)),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--session", "--print-pid=9"],
                Command::Run(Options {
                    print_pid: Some(Fd(9)),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--session", "--address=unix:path=/tmp/x"],
                session(Some("unix:path=/tmp/x"), None),
            ),
            (
                &["--session", "--address", "unix:path=/tmp/x"],
                session(Some("unix:path=/tmp/x"), None),
            ),
            (
                &["--address=unix:path=/a=b", "--session"],
                session(Some("unix:path=/a=b"), None),
            ),
            (
                &["--session", "--syslog", "--nosyslog"],
                Command::Run(Options {
                    syslog: Some(SyslogMode::Never),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--session", "--syslog-only"],
                Command::Run(Options {
                    syslog: Some(SyslogMode::Only),
                    ..options(ConfigSource::Session)
                }),
            ),
            (
                &["--session", "--syslog"],
                Command::Run(Options {
                    syslog: Some(SyslogMode::Both),
                    ..options(ConfigSource::Session)
                }),
            ),
            (&["--help"], Command::Help),
            (&["--session", "--help"], Command::Help),
            (&["--version"], Command::Version),
            (&["--introspect"], Command::Introspect),
            (&["--session", "--introspect"], Command::Introspect),
        ];
        for (args, want) in cases {
            assert_eq!(run(args).as_ref(), Ok(want), "{args:?}");
        }
    }

    #[test]
    fn refused_command_lines() {
        let cases: &[(&[&str], CliError)] = &[
            (&[], CliError::NoConfiguration),
            (&["--nofork"], CliError::NoConfiguration),
            (
                &["--session", "--bogus"],
                CliError::UnknownOption("--bogus".into()),
            ),
            (&["--session", "-x"], CliError::UnknownOption("-x".into())),
            (
                &["--session", "--bogus=1"],
                CliError::UnknownOption("--bogus=1".into()),
            ),
            (
                &["--session", "extra"],
                CliError::UnexpectedArgument("extra".into()),
            ),
            (
                &["--session", "--print-address", "x"],
                CliError::UnexpectedArgument("x".into()),
            ),
            (
                &["--session", "--print-address=abc"],
                CliError::BadDescriptor("abc".into()),
            ),
            (
                &["--session", "--print-pid=-1"],
                CliError::BadDescriptor("-1".into()),
            ),
            (
                &["--session", "--print-address=99999999999"],
                CliError::BadDescriptor("99999999999".into()),
            ),
            (
                &["--session", "--address"],
                CliError::MissingValue("--address"),
            ),
            (
                &["--session", "--address="],
                CliError::MissingValue("--address"),
            ),
            (&["--config-file"], CliError::MissingValue("--config-file")),
            (&["--config-file="], CliError::MissingValue("--config-file")),
            (
                &["--session=yes"],
                CliError::UnexpectedValue("--session".into()),
            ),
            (
                &["--session", "--nofork=1"],
                CliError::UnexpectedValue("--nofork".into()),
            ),
            (
                &["--session", "--system"],
                CliError::TwoConfigurations("--system".into()),
            ),
            (
                &["--config-file=/a", "--session"],
                CliError::TwoConfigurations("--session".into()),
            ),
            (
                &["--session", "--session"],
                CliError::TwoConfigurations("--session".into()),
            ),
            (
                &["--session", "--fork", "--nofork"],
                CliError::ForkAndNofork,
            ),
            (
                &["--session", "--ready-event-handle=0x1"],
                CliError::Unsupported("--ready-event-handle".into()),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(run(args).as_ref(), Err(want), "{args:?}");
        }
    }

    #[test]
    fn non_utf8_argument() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', b'-', 0xff]);
        assert_eq!(
            parse([OsString::from("--session"), bad.clone()]),
            Err(CliError::NotUtf8(bad))
        );
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            CliError::TwoConfigurations("--system".into()).to_string(),
            "--system given, but a configuration was already chosen"
        );
        assert_eq!(
            CliError::UnknownOption("--bogus".into()).to_string(),
            "unknown option \"--bogus\""
        );
    }

    #[test]
    fn run_session_command_lines() {
        let session = |config: Option<&str>, daemon: Option<&str>, command: &[&str]| {
            Ok(Command::RunSession(RunSession {
                config_file: config.map(PathBuf::from),
                daemon: daemon.map(OsString::from),
                command: command.iter().map(OsString::from).collect(),
            }))
        };
        let missing = |option| {
            Err(CliError::RunSession(Box::new(CliError::MissingValue(
                option,
            ))))
        };
        let cases: &[(&[&str], Result<Command, CliError>)] = &[
            (&["run-session", "--", "sh"], session(None, None, &["sh"])),
            (
                &["run-session", "sh", "-c", "--help"],
                session(None, None, &["sh", "-c", "--help"]),
            ),
            (
                &["run-session", "--", "--odd", "--"],
                session(None, None, &["--odd", "--"]),
            ),
            (
                &[
                    "run-session",
                    "--config-file=/c",
                    "--dbus-daemon",
                    "dd",
                    "x",
                ],
                session(Some("/c"), Some("dd"), &["x"]),
            ),
            (
                &[
                    "run-session",
                    "--config-file",
                    "/c",
                    "--dbus-daemon=/d",
                    "--",
                    "x",
                ],
                session(Some("/c"), Some("/d"), &["x"]),
            ),
            (&["run-session", "--help", "x"], Ok(Command::RunSessionHelp)),
            (&["run-session", "--version"], Ok(Command::Version)),
            (
                &["run-session"],
                Err(CliError::RunSession(Box::new(CliError::NoProgram))),
            ),
            (
                &["run-session", "--"],
                Err(CliError::RunSession(Box::new(CliError::NoProgram))),
            ),
            (&["run-session", "--config-file"], missing("--config-file")),
            (
                &["run-session", "--dbus-daemon=", "x"],
                missing("--dbus-daemon"),
            ),
            (
                &["run-session", "--bogus", "--", "x"],
                Err(CliError::RunSession(Box::new(CliError::UnknownOption(
                    "--bogus".into(),
                )))),
            ),
            // Only the first word selects run-session.
            (
                &["--session", "run-session"],
                Err(CliError::UnexpectedArgument("run-session".into())),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(&run(args), want, "{args:?}");
        }
        assert_eq!(
            run(&["run-session", "--bogus"]).unwrap_err().exit_status(),
            127
        );
        assert_eq!(run(&["--bogus"]).unwrap_err().exit_status(), 1);
        assert_eq!(
            run(&["run-session"]).unwrap_err().to_string(),
            "run-session: a program to run is required"
        );
    }

    #[test]
    fn run_session_program_need_not_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'/', b'x', 0xff]);
        let got = parse([OsString::from("run-session"), odd.clone(), odd.clone()]);
        assert_eq!(
            got,
            Ok(Command::RunSession(RunSession {
                config_file: None,
                daemon: None,
                command: vec![odd.clone(), odd],
            }))
        );
    }
}
