//! The command line, with dbus-daemon's meaning for every option it shares.
//!
//! Parsing is pure: [`parse`] turns the arguments into a [`Command`] or a [`CliError`] whose
//! text says what was wrong. Options that take a value accept both `--opt=VALUE` and
//! `--opt VALUE`; for `--print-address`, whose value is optional, the next argument is taken
//! as the descriptor only when it is a number, as dbus-daemon does. dbus-daemon options tramd
//! does not implement yet are refused with a "not supported yet" error rather than ignored.

use std::ffi::OsString;
use std::fmt;

/// The usage text, printed by `--help` and after usage errors.
pub(crate) const USAGE: &str = "\
Usage: tramd [OPTION]...
A D-Bus message bus daemon, compatible with dbus-daemon.

  --session                 run a session bus (built-in session configuration)
  --address=ADDRESS         listen on ADDRESS instead of the configured addresses
  --print-address[=FD]      print the bus address to FD (default: standard output)
  --nofork                  stay in the foreground (the default)
  --nopidfile               write no pid file (the default)
  --nosyslog                log to standard error only (the default)
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
}

/// Options for running the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Which built-in configuration to use.
    pub(crate) bus: BusKind,
    /// `--address`: replaces the configured listen addresses.
    pub(crate) address: Option<String>,
    /// `--print-address`: where to print the address once listening.
    pub(crate) print_address: Option<PrintTarget>,
}

/// The bus configuration chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BusKind {
    /// `--session`.
    Session,
}

/// Where `--print-address` writes.
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
    /// A dbus-daemon option tramd does not implement yet.
    Unsupported(String),
    /// An option that takes a value was given none.
    MissingValue(&'static str),
    /// An option that takes no value was given one.
    UnexpectedValue(String),
    /// `--print-address=FD` with something that is not a descriptor number.
    BadDescriptor(String),
    /// A positional argument.
    UnexpectedArgument(String),
    /// An argument that is not valid UTF-8.
    NotUtf8(OsString),
    /// No bus configuration was chosen.
    NoConfiguration,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownOption(o) => write!(f, "unknown option {o:?}"),
            CliError::Unsupported(o) => write!(f, "option {o} is not supported yet"),
            CliError::MissingValue(o) => write!(f, "option {o} needs a value"),
            CliError::UnexpectedValue(o) => write!(f, "option {o} takes no value"),
            CliError::BadDescriptor(v) => write!(f, "invalid file descriptor: {v:?}"),
            CliError::UnexpectedArgument(a) => write!(f, "unexpected argument {a:?}"),
            CliError::NotUtf8(a) => write!(f, "argument {a:?} is not valid UTF-8"),
            CliError::NoConfiguration => f.write_str("no bus configuration given: use --session"),
        }
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments after the program name.
///
/// # Errors
/// Unknown or unsupported options, missing or malformed values, no `--session`.
pub(crate) fn parse<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = OsString>,
{
    let args = args
        .into_iter()
        .map(|a| a.into_string().map_err(CliError::NotUtf8))
        .collect::<Result<Vec<String>, _>>()?;
    let mut bus = None;
    let mut address = None;
    let mut print_address = None;
    let mut help = false;
    let mut version = false;
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
        match name.as_str() {
            "--session" => {
                no_value("--session")?;
                bus = Some(BusKind::Session);
            }
            "--address" => {
                let value = match value {
                    Some(v) => v,
                    None => iter.next().ok_or(CliError::MissingValue("--address"))?,
                };
                if value.is_empty() {
                    return Err(CliError::MissingValue("--address"));
                }
                address = Some(value);
            }
            "--print-address" => {
                let value = match value {
                    Some(v) => Some(v),
                    None => iter.next_if(|next| is_descriptor(next)),
                };
                print_address = Some(match value {
                    Some(v) => parse_descriptor(&v)?,
                    None => PrintTarget::Stdout,
                });
            }
            // tramd never forks, writes no pid file and logs to stderr only.
            "--nofork" | "--nopidfile" | "--nosyslog" => no_value(&name)?,
            "--version" => {
                no_value("--version")?;
                version = true;
            }
            "--help" => {
                no_value("--help")?;
                help = true;
            }
            "--system"
            | "--config-file"
            | "--fork"
            | "--print-pid"
            | "--introspect"
            | "--syslog"
            | "--syslog-only"
            | "--systemd-activation"
            | "--ready-event-handle" => {
                return Err(CliError::Unsupported(name));
            }
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
    let bus = bus.ok_or(CliError::NoConfiguration)?;
    Ok(Command::Run(Options {
        bus,
        address,
        print_address,
    }))
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

    fn session(address: Option<&str>, print_address: Option<PrintTarget>) -> Command {
        Command::Run(Options {
            bus: BusKind::Session,
            address: address.map(str::to_owned),
            print_address,
        })
    }

    #[test]
    fn accepted_command_lines() {
        use PrintTarget::*;
        let cases: &[(&[&str], Command)] = &[
            (&["--session"], session(None, None)),
            (&["--session", "--nofork"], session(None, None)),
            (
                &["--nofork", "--nopidfile", "--nosyslog", "--session"],
                session(None, None),
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
                session(None, Some(Stdout)),
            ),
            (
                &["--session", "--print-address=3", "--print-address"],
                session(None, Some(Stdout)),
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
            (&["--help"], Command::Help),
            (&["--session", "--help"], Command::Help),
            (&["--version"], Command::Version),
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
                &["--session", "--print-address=-1"],
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
            (
                &["--session=yes"],
                CliError::UnexpectedValue("--session".into()),
            ),
            (
                &["--session", "--nofork=1"],
                CliError::UnexpectedValue("--nofork".into()),
            ),
            (&["--system"], CliError::Unsupported("--system".into())),
            (
                &["--session", "--fork"],
                CliError::Unsupported("--fork".into()),
            ),
            (
                &["--config-file=/etc/x.conf"],
                CliError::Unsupported("--config-file".into()),
            ),
            (
                &["--session", "--print-pid"],
                CliError::Unsupported("--print-pid".into()),
            ),
            (
                &["--session", "--systemd-activation"],
                CliError::Unsupported("--systemd-activation".into()),
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
            CliError::Unsupported("--system".into()).to_string(),
            "option --system is not supported yet"
        );
        assert_eq!(
            CliError::UnknownOption("--bogus".into()).to_string(),
            "unknown option \"--bogus\""
        );
    }
}
