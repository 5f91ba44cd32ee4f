//! Configuration errors and warnings, each naming the file and line it is about.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
///
/// `Display` writes `file:line: reason` (or `file: reason` when no line applies, as for a
/// top-level file that cannot be read). Errors inside an included file name that file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// The 1-based line, when the error is about a place in the file.
    pub line: Option<u32>,
    /// What kind of error it is.
    pub kind: ErrorKind,
    /// What is wrong, worded like dbus-daemon's message where it has one.
    pub reason: String,
}

/// The kinds of [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or directory could not be read (including a missing `<include>`).
    Io,
    /// The text is not well-formed XML.
    Xml,
    /// Well-formed XML that is not a valid configuration: unknown element or attribute, bad
    /// value, invalid rule.
    Invalid,
    /// An `<include>` leads back to a file that is being read.
    IncludeCycle,
}

/// Something dbus-daemon reports but does not refuse to start over: an unknown user or group
/// (the rule or policy is dropped), or an `<includedir>` file that failed to load (the file is
/// skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file the warning is about.
    pub file: PathBuf,
    /// The 1-based line, when the warning is about a place in the file.
    pub line: Option<u32>,
    /// What happened.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, line: Option<u32>, kind: ErrorKind, reason: String) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            kind,
            reason,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.file, self.line, &self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.file, self.line, &self.message)
    }
}

fn write_located(
    f: &mut fmt::Formatter<'_>,
    file: &Path,
    line: Option<u32>,
    text: &str,
) -> fmt::Result {
    match line {
        Some(line) => write!(f, "{}:{line}: {text}", file.display()),
        None => write!(f, "{}: {text}", file.display()),
    }
}
