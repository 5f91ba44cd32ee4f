//! Service description files (`.service`): which program provides a bus name on demand.
//!
//! The D-Bus specification's "Message Bus Starting Services (Activation)" section defines the
//! files loosely, as "similar to desktop entries"; what is accepted here was settled by feeding
//! dbus-daemon 1.14 test files and reading `ListActivatableNames`:
//!
//! * The file is UTF-8 throughout (comments included) and contains no NUL byte. Lines end at
//!   `\n`, `\r` or `\r\n`.
//! * A line that is empty or only spaces and tabs is skipped; a line whose first character is `#`
//!   is a comment. Anything else, including a `#` after leading spaces, is a group header or an
//!   entry.
//! * A group header is `[NAME]` with nothing after the `]`; `NAME` is not empty and contains no
//!   `[`, `]` or control character. Group names are case-sensitive.
//! * An entry is `KEY=VALUE` inside a group. `KEY` is made of ASCII letters, digits and `-`,
//!   optionally followed by a `[locale]` suffix (such keys are never the ones read here); spaces
//!   may surround the `=`, tabs may not. The value runs to the end of the line, trailing spaces
//!   included, and may use the escapes `\s`, `\t`, `\n`, `\r` and `\\` (any other escape is an
//!   error, in every group).
//! * The first `[D-BUS Service]` group counts and, within it, the first occurrence of a key;
//!   later duplicates are accepted and ignored. Unknown groups and keys are ignored.
//! * `Name` is required. tram also requires it to be a valid well-known bus name (dbus-daemon
//!   lists any string, although no connection could ever own it).
//! * dbus-daemon requires `Exec`; tram accepts a file without `Exec` when it names a
//!   `SystemdService`, which is then the only way to start it (as dbus-broker does).
//!
//! [`scan`] reads every configured directory the way dbus-daemon does: only names ending in
//! `.service`, missing directories silently skipped, the first directory providing a name
//! winning. `Exec` is split into a command line only when the service is started
//! ([`ServiceFile::argv`], [`split_exec`]), so a bad `Exec` fails that start, not the scan.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::ServiceDir;

/// The group that describes the service.
pub const SERVICE_GROUP: &str = "D-BUS Service";

/// The largest service file read; a longer file is refused rather than read into memory.
pub const MAX_SERVICE_FILE_SIZE: u64 = 1024 * 1024;

/// A parsed `.service` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFile {
    /// `Name=`: the well-known bus name the service provides.
    pub name: String,
    /// `Exec=`: the command line, unescaped but not yet split (see [`ServiceFile::argv`]).
    pub exec: Option<String>,
    /// `User=`: the user to run the service as (system bus), a name as written.
    pub user: Option<String>,
    /// `SystemdService=`: the systemd unit that provides the name.
    pub systemd_service: Option<String>,
    /// `AssumedAppArmorLabel=`: the AppArmor label the service will run under.
    pub assumed_apparmor_label: Option<String>,
    /// The file it was read from.
    pub path: PathBuf,
}

/// Why a service file was not loaded.
///
/// `Display` writes `file:line: reason`, or `file: reason` when no line applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceError {
    /// The file (or directory) the error is about.
    pub path: PathBuf,
    /// The 1-based line, when the error is about a place in the file.
    pub line: Option<u32>,
    /// What kind of error it is.
    pub kind: ServiceErrorKind,
    /// What is wrong.
    pub reason: String,
}

/// The kinds of [`ServiceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceErrorKind {
    /// The file or directory could not be read, or the file is too large.
    Io,
    /// The file breaks the desktop-entry syntax.
    Syntax,
    /// The syntax is fine but the service is not usable: no `[D-BUS Service]` group, no
    /// `Name`, an invalid name, neither `Exec` nor `SystemdService`.
    Invalid,
    /// In a directory with strict naming, the file is not called `NAME.service`.
    Misnamed,
    /// Another file in the same directory already provides the name.
    Duplicate,
}

/// Why an `Exec` line could not be split into a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecError {
    /// The service file has no `Exec` line.
    Missing,
    /// The line holds no word at all.
    Empty,
    /// A `'` or `"` is not closed.
    UnclosedQuote,
    /// The line ends with a lone `\`.
    TrailingBackslash,
}

impl ServiceFile {
    /// Parses the contents of a service file; `path` is recorded and named in errors.
    ///
    /// # Errors
    ///
    /// The first syntax error, with its line; or a missing group or key.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<ServiceFile, ServiceError> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let line = line_of(bytes, e.valid_up_to());
                return Err(ServiceError::syntax(path, line, "invalid UTF-8".into()));
            }
        };
        if let Some(at) = text.find('\0') {
            let line = line_of(bytes, at);
            return Err(ServiceError::syntax(
                path,
                line,
                "contains a NUL byte".into(),
            ));
        }
        let entries = service_group(text, path)?;
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let invalid = |reason: String| ServiceError {
            path: path.to_path_buf(),
            line: None,
            kind: ServiceErrorKind::Invalid,
            reason,
        };
        let name = get("Name")
            .ok_or_else(|| invalid(format!("the [{SERVICE_GROUP}] group has no \"Name\" key")))?;
        if !is_well_known_name(&name) {
            return Err(invalid(format!(
                "Name=\"{}\" is not a valid well-known bus name",
                name.escape_debug()
            )));
        }
        let service = ServiceFile {
            name,
            exec: get("Exec"),
            user: get("User"),
            systemd_service: get("SystemdService"),
            assumed_apparmor_label: get("AssumedAppArmorLabel"),
            path: path.to_path_buf(),
        };
        if service.exec.is_none() && service.systemd_service.is_none() {
            return Err(invalid(format!(
                "the [{SERVICE_GROUP}] group has neither an \"Exec\" nor a \"SystemdService\" key"
            )));
        }
        Ok(service)
    }

    /// Reads and parses the service file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is larger than [`MAX_SERVICE_FILE_SIZE`]; or as
    /// [`ServiceFile::parse`].
    pub fn load(path: &Path) -> Result<ServiceFile, ServiceError> {
        let io = |e: std::io::Error| ServiceError::io(path, e.to_string());
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_SERVICE_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_SERVICE_FILE_SIZE {
            return Err(ServiceError::io(
                path,
                format!("larger than {MAX_SERVICE_FILE_SIZE} bytes"),
            ));
        }
        ServiceFile::parse(&bytes, path)
    }

    /// The command line to run: `Exec` split by [`split_exec`].
    ///
    /// # Errors
    ///
    /// [`ExecError::Missing`] without `Exec`; otherwise as [`split_exec`].
    pub fn argv(&self) -> Result<Vec<String>, ExecError> {
        split_exec(self.exec.as_deref().ok_or(ExecError::Missing)?)
    }
}

/// Splits an (already unescaped) `Exec` value into words with the shell's quoting rules, as
/// dbus-daemon does, without any expansion:
///
/// * words are separated by spaces, tabs and newlines;
/// * outside quotes, `\` takes the next character literally, and `\` before a newline joins
///   the lines;
/// * `'…'` is literal;
/// * in `"…"`, `\` takes a following `$`, `` ` ``, `"`, `\` literally and joins lines before a
///   newline; before anything else it stays a backslash;
/// * `""` and `''` make an empty word;
/// * `#` at the start of a word starts a comment that runs to the end of the line.
///
/// dbus-daemon's splitter differs on comments: it also takes a `#` inside a word as a comment
/// (`a#b` gives `a`) and adds an empty word for a comment after a space. tram follows the shell.
///
/// # Errors
///
/// An unclosed quote, a trailing lone backslash, or no word at all.
pub fn split_exec(command: &str) -> Result<Vec<String>, ExecError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    word.push(c);
                    in_word = true;
                }
                None => return Err(ExecError::TrailingBackslash),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ExecError::UnclosedQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('$' | '`' | '"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(ExecError::UnclosedQuote),
                        },
                        Some(c) => word.push(c),
                        None => return Err(ExecError::UnclosedQuote),
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(ExecError::Empty);
    }
    Ok(words)
}

/// Reads the service files of `dirs`, searched in order, and returns one [`ServiceFile`] per
/// name with the problems found along the way.
///
/// Only files whose name ends in `.service` are read, in byte order of their names; a missing
/// directory is skipped without an error, as are entries that are not regular files. A name
/// provided by an earlier directory hides the later ones silently (that is how local files
/// override packaged ones). Within one directory, a second file for a name is reported as
/// [`ServiceErrorKind::Duplicate`] and dropped; the file called `NAME.service` is preferred.
/// In a directory with [`ServiceDir::strict_naming`] a file not called `NAME.service` is
/// reported as [`ServiceErrorKind::Misnamed`] and dropped.
///
/// On the system bus every directory should be strict (the specification requires the file
/// name to match there): set [`ServiceDir::strict_naming`] on each before calling.
///
/// The services come in search order: by directory, then by file name.
pub fn scan(dirs: &[ServiceDir]) -> (Vec<ServiceFile>, Vec<ServiceError>) {
    let mut services: Vec<ServiceFile> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut errors = Vec::new();
    for dir in dirs {
        for service in scan_dir(dir, &mut errors) {
            if seen.insert(service.name.clone()) {
                services.push(service);
            }
        }
    }
    (services, errors)
}

impl ServiceError {
    fn syntax(path: &Path, line: u32, reason: String) -> ServiceError {
        ServiceError {
            path: path.to_path_buf(),
            line: Some(line),
            kind: ServiceErrorKind::Syntax,
            reason,
        }
    }

    fn io(path: &Path, reason: String) -> ServiceError {
        ServiceError {
            path: path.to_path_buf(),
            line: None,
            kind: ServiceErrorKind::Io,
            reason,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for ServiceError {}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecError::Missing => "the service file has no Exec line",
            ExecError::Empty => "the Exec line is empty",
            ExecError::UnclosedQuote => "unclosed quotes in the Exec line",
            ExecError::TrailingBackslash => "the Exec line ends with a lone backslash",
        })
    }
}

impl std::error::Error for ExecError {}

/// The suffix of the files [`scan`] reads.
const SUFFIX: &[u8] = b".service";

/// The services of one directory, one per name, in file name order.
fn scan_dir(dir: &ServiceDir, errors: &mut Vec<ServiceError>) -> Vec<ServiceFile> {
    let entries = match std::fs::read_dir(&dir.path) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Vec::new(),
        Err(e) => {
            errors.push(ServiceError::io(&dir.path, e.to_string()));
            return Vec::new();
        }
    };
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                let bytes = name.as_bytes();
                if bytes.len() > SUFFIX.len() && bytes.ends_with(SUFFIX) {
                    names.push(name);
                }
            }
            Err(e) => errors.push(ServiceError::io(&dir.path, e.to_string())),
        }
    }
    names.sort();

    let mut found: Vec<ServiceFile> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for file_name in names {
        let path = dir.path.join(&file_name);
        // Follows symbolic links: a link to a service file is a service file.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => continue,
            Err(e) if is_absent(&e) => continue,
            Err(e) => {
                errors.push(ServiceError::io(&path, e.to_string()));
                continue;
            }
        }
        let service = match ServiceFile::load(&path) {
            Ok(service) => service,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let well_named = is_named_for(&file_name, &service.name);
        if dir.strict_naming && !well_named {
            errors.push(ServiceError {
                reason: format!(
                    "service file should have been named \"{}.service\": not loading it",
                    service.name
                ),
                path,
                line: None,
                kind: ServiceErrorKind::Misnamed,
            });
            continue;
        }
        match by_name.entry(service.name.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(found.len());
                found.push(service);
            }
            Entry::Occupied(slot) => {
                let Some(kept) = found.get_mut(*slot.get()) else {
                    continue;
                };
                // The file called NAME.service wins; otherwise the first one in name order.
                let dropped = if well_named {
                    std::mem::replace(kept, service)
                } else {
                    service
                };
                errors.push(ServiceError {
                    reason: format!(
                        "provides {}, as {} does: ignoring it",
                        dropped.name,
                        kept.path.display()
                    ),
                    path: dropped.path,
                    line: None,
                    kind: ServiceErrorKind::Duplicate,
                });
            }
        }
    }
    found
}

/// Checks the syntax of the whole file and returns the entries of the first
/// `[D-BUS Service]` group, unescaped, in file order.
fn service_group<'t>(text: &'t str, path: &Path) -> Result<Vec<(&'t str, String)>, ServiceError> {
    #[derive(PartialEq)]
    enum Group {
        None,
        Service,
        Other,
    }
    let mut group = Group::None;
    let mut seen_service = false;
    let mut entries = Vec::new();
    for (number, line) in lines(text) {
        if line.chars().all(|c| c == ' ' || c == '\t') || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .filter(|n| !n.is_empty() && !n.contains(['[', ']']))
                .filter(|n| !n.chars().any(char::is_control))
                .ok_or_else(|| ServiceError::syntax(path, number, "invalid group header".into()))?;
            group = if name == SERVICE_GROUP && !seen_service {
                seen_service = true;
                Group::Service
            } else {
                Group::Other
            };
            continue;
        }
        let (key, raw) = entry(line).ok_or_else(|| {
            ServiceError::syntax(path, number, "expected a group header or KEY=VALUE".into())
        })?;
        if group == Group::None {
            return Err(ServiceError::syntax(
                path,
                number,
                format!("\"{key}\" is outside any group"),
            ));
        }
        let value = unescape(raw)
            .ok_or_else(|| ServiceError::syntax(path, number, "invalid escape".into()))?;
        if group == Group::Service && !entries.iter().any(|(k, _)| *k == key) {
            entries.push((key, value));
        }
    }
    if !seen_service {
        return Err(ServiceError {
            path: path.to_path_buf(),
            line: None,
            kind: ServiceErrorKind::Invalid,
            reason: format!("no [{SERVICE_GROUP}] group"),
        });
    }
    Ok(entries)
}

/// The lines of `text` with their 1-based numbers; `\r\n`, `\n` and `\r` all end a line.
fn lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    let mut rest = Some(text).filter(|t| !t.is_empty());
    let mut number = 0u32;
    std::iter::from_fn(move || {
        let current = rest?;
        number = number.saturating_add(1);
        let (line, next) = match current.find(['\r', '\n']) {
            Some(at) => {
                let after = current.get(at..).unwrap_or_default();
                let skip = if after.starts_with("\r\n") { 2 } else { 1 };
                (current.get(..at).unwrap_or_default(), after.get(skip..))
            }
            None => (current, None),
        };
        rest = next.filter(|n| !n.is_empty());
        Some((number, line))
    })
}

/// Splits `KEY=VALUE` (the value still escaped); `None` when the line is not an entry.
fn entry(line: &str) -> Option<(&str, &str)> {
    let key_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(line.len());
    if key_len == 0 {
        return None;
    }
    let rest = line.get(key_len..)?;
    let rest = if rest.starts_with('[') {
        // A locale suffix: dbus-daemon takes anything up to the `=`.
        let eq = rest.find('=')?;
        rest.get(eq..)?
    } else {
        rest.trim_start_matches(' ')
    };
    let value = rest.strip_prefix('=')?.trim_start_matches(' ');
    let key = line.get(..line.len() - rest.len())?.trim_end_matches(' ');
    Some((key, value))
}

/// Resolves the desktop-entry escapes; `None` for an unknown or incomplete escape.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            's' => ' ',
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            '\\' => '\\',
            _ => return None,
        });
    }
    Some(out)
}

/// The 1-based line of byte offset `at`, counting line ends as [`lines`] does.
fn line_of(bytes: &[u8], at: usize) -> u32 {
    let before = bytes.get(..at).unwrap_or(bytes);
    let mut line = 1u32;
    let mut previous = 0u8;
    for &b in before {
        if (b == b'\n' && previous != b'\r') || b == b'\r' {
            line = line.saturating_add(1);
        }
        previous = b;
    }
    line
}

/// Whether `file_name` is `name` followed by `.service`.
fn is_named_for(file_name: &OsStr, name: &str) -> bool {
    file_name
        .as_bytes()
        .strip_suffix(SUFFIX)
        .is_some_and(|stem| stem == name.as_bytes())
}

/// A directory that is not there: skipped without complaint, as dbus-daemon does.
fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// The specification's well-known bus name syntax: at most 255 bytes, two or more non-empty
/// elements separated by `.`, each of `[A-Za-z0-9_-]` and not starting with a digit.
fn is_well_known_name(name: &str) -> bool {
    name.len() <= 255
        && name.contains('.')
        && name.split('.').all(|element| {
            element
                .bytes()
                .next()
                .is_some_and(|first| !first.is_ascii_digit())
                && element
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceFile, ServiceError> {
        ServiceFile::parse(text.as_bytes(), Path::new("/s/x.service"))
    }

    const OK: &str = "[D-BUS Service]\nName=a.b\nExec=/bin/true\n";

    #[test]
    fn keys() {
        let s = parse(
            "# sample\n[D-BUS Service]\nName=org.example.Svc1\nExec=/usr/bin/svc --flag\n\
             User=svc\nSystemdService=dbus-org.example.Svc1.service\n\
             AssumedAppArmorLabel=/usr/bin/svc\nX-Unknown=1\n",
        )
        .unwrap();
        assert_eq!(s.name, "org.example.Svc1");
        assert_eq!(s.exec.as_deref(), Some("/usr/bin/svc --flag"));
        assert_eq!(s.user.as_deref(), Some("svc"));
        assert_eq!(
            s.systemd_service.as_deref(),
            Some("dbus-org.example.Svc1.service")
        );
        assert_eq!(s.assumed_apparmor_label.as_deref(), Some("/usr/bin/svc"));
        assert_eq!(s.path, Path::new("/s/x.service"));
        let bare = parse(OK).unwrap();
        assert_eq!((bare.user, bare.systemd_service), (None, None));
    }

    /// A valid start that the table rows below extend.
    const HEAD: &str = "[D-BUS Service]\nName=a.b\nExec=x\n";

    /// Lines after [`HEAD`] that dbus-daemon 1.14 accepts and ignores.
    #[test]
    fn ignored_like_dbus_daemon() {
        let tails = [
            "",
            "# comment\n",
            "X-Unknown=1\n",
            "Name=c.d\nExec=y\n",
            "[D-BUS Service]\nName=c.d\nExec=y\n",
            "K[de_DE@euro]=1\nK[]=1\nK[de=1\nK[d e]x y  =1\n",
            "[Foo Bar-1.x\\s]\nK=1\n",
            "\n \n\t\n",
            "K=1\rL=2",
        ];
        for tail in tails {
            let s = parse(&format!("{HEAD}{tail}")).unwrap_or_else(|e| panic!("{tail:?}: {e}"));
            assert_eq!(
                (s.name.as_str(), s.exec.as_deref()),
                ("a.b", Some("x")),
                "{tail:?}"
            );
        }
    }

    /// Files dbus-daemon 1.14 accepts, with the Exec value it reads from them.
    #[test]
    fn values_like_dbus_daemon() {
        let cases = [
            ("[D-BUS Service]\nName=a.b\nExec=x", "x"),
            ("[D-BUS Service]\r\nName=a.b\r\nExec=x\r\n", "x"),
            ("\n[D-BUS Service]\nName = a.b\nExec =x\n", "x"),
            ("[D-BUS Service]\nName=a.b\nExec=  x  \n", "x  "),
            ("[D-BUS Service]\nName=a.b\nExec=\tx\n", "\tx"),
            ("[D-BUS Service]\nName=a.b\nExec=x#y\n", "x#y"),
            (
                "[D-BUS Service]\nName=a.b\nExec=\\sx\\t\\n\\r\\\\ \\s\n",
                " x\t\n\r\\  ",
            ),
            (
                "[Other]\nName=c.d\n[D-BUS Service]\nName=a.b\nExec=x\n",
                "x",
            ),
            ("[D-BUS Service]\nName[de]=c.d\nName=a.b\nExec=x\n", "x"),
            ("[D-BUS Service]\nName=a.b\nExec=\n", ""),
        ];
        for (text, exec) in cases {
            let s = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                (s.name.as_str(), s.exec.as_deref()),
                ("a.b", Some(exec)),
                "{text:?}"
            );
        }
    }

    /// Lines after [`HEAD`] that make dbus-daemon 1.14 refuse the file; the error is on the
    /// line given relative to the first of them.
    #[test]
    fn syntax_refused_like_dbus_daemon() {
        let tails: &[(&[u8], u32)] = &[
            (b"  # comment\n", 0),
            (b"  K=1\n", 0),
            (b" [G]\n", 0),
            (b"K\t=1\n", 0),
            (b"K x=1\n", 0),
            (b"K]=1\n", 0),
            (b"X_y=1\n", 0),
            (b"K.x=1\n", 0),
            (b"=1\n", 0),
            (b"junk\n", 0),
            (b"K=a\rb\n", 1),
            (b"\r\n\r\nK\n", 2),
            (b"K\xc3\xa9=1\n", 0),
            (b"[G\n", 0),
            (b"[G] \n", 0),
            (b"[G]#c\n", 0),
            (b"[]\n", 0),
            (b"[a[b]\n", 0),
            (b"[G\tH]\n", 0),
            (b"[G]x\n", 0),
            (b"K=a\\q\n", 0),
            (b"K=a\\\n", 0),
            (b"[G]\nK=\\;\n", 1),
            (b"# \xff\n", 0),
            (b"\nK=\xe9\n", 1),
            (b"K=a\x00b\n", 0),
        ];
        for (tail, offset) in tails {
            let text = [HEAD.as_bytes(), tail].concat();
            let e = ServiceFile::parse(&text, Path::new("/s/x.service"))
                .expect_err(&String::from_utf8_lossy(tail));
            let want = (Some(4 + offset), ServiceErrorKind::Syntax);
            assert_eq!(
                (e.line, e.kind),
                want,
                "{:?}: {e}",
                String::from_utf8_lossy(tail)
            );
        }
    }

    /// Whole files dbus-daemon 1.14 refuses.
    #[test]
    fn refused_like_dbus_daemon() {
        let cases: &[(&[u8], Option<u32>)] = &[
            (b"Name=a.b\n[D-BUS Service]\nName=a.b\nExec=x\n", Some(1)),
            (b"\xef\xbb\xbf[D-BUS Service]\nName=a.b\nExec=x\n", Some(1)),
            (b"[D-BUS Service]\n  Name=a.b\nExec=x\n", Some(2)),
            (b"[d-bus service]\nName=a.b\nExec=x\n", None),
            (b"", None),
            (b"[D-BUS Service]\nname=a.b\nExec=x\n", None),
            (b"[D-BUS Service]\nExec=x\n", None),
            (b"[D-BUS Service]\nName=a.b\n", None),
            (
                b"[D-BUS Service]\nName=a.b\n[D-BUS Service]\nExec=x\n",
                None,
            ),
        ];
        for (text, line) in cases {
            let e = ServiceFile::parse(text, Path::new("/s/x.service"))
                .expect_err(&String::from_utf8_lossy(text));
            let kind = match line {
                Some(_) => ServiceErrorKind::Syntax,
                None => ServiceErrorKind::Invalid,
            };
            assert_eq!(
                (e.line, e.kind),
                (*line, kind),
                "{:?}: {e}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn names_are_checked() {
        for name in ["a.b", "org.example.Svc_1", "a-b.c-d", "_a._b"] {
            let text = format!("[D-BUS Service]\nName={name}\nExec=x\n");
            assert!(parse(&text).is_ok(), "{name}");
        }
        let long = format!("a.{}", "b".repeat(254));
        for name in [
            "ab",
            ":1.5",
            "a..b",
            ".a.b",
            "a.b.",
            "a.1b",
            "a.b c",
            "a.é",
            long.as_str(),
        ] {
            let text = format!("[D-BUS Service]\nName={name}\nExec=x\n");
            let e = parse(&text).expect_err(name);
            assert_eq!(e.kind, ServiceErrorKind::Invalid, "{name}");
        }
    }

    #[test]
    fn systemd_service_without_exec() {
        let s = parse("[D-BUS Service]\nName=a.b\nSystemdService=b.service\n").unwrap();
        assert_eq!(s.exec, None);
        assert_eq!(s.argv(), Err(ExecError::Missing));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("[D-BUS Service]\nName=a.b\nExec=x\nbad\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/s/x.service:4: expected a group header or KEY=VALUE"
        );
        let e = parse("[D-BUS Service]\nExec=x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/s/x.service: the [D-BUS Service] group has no \"Name\" key"
        );
    }

    #[test]
    fn line_numbers() {
        let text = "a\r\nb\rc\n\nd";
        let got: Vec<_> = lines(text).collect();
        assert_eq!(got, [(1, "a"), (2, "b"), (3, "c"), (4, ""), (5, "d")]);
        assert_eq!(line_of(text.as_bytes(), text.len() - 1), 5);
        assert_eq!(lines("").count(), 0);
    }

    /// Exec lines as dbus-daemon 1.14 passed them to a test program, after the
    /// desktop-entry unescaping.
    fn words(argv: &[&str]) -> Vec<String> {
        argv.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn split_like_dbus_daemon() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"p a "b c" 'd e' f\ g "h\"i" 'j\k' "l\m" "n\\o" p"q"r"#,
                &[
                    "p", "a", "b c", "d e", "f g", "h\"i", "j\\k", "l\\m", "n\\o", "pqr",
                ],
            ),
            ("p a\nb\tc", &["p", "a", "b", "c"]),
            (
                "p \"a\\$b\" \"c\\`d\" \"e$HOME\" \"f\\\ng\"",
                &["p", "a$b", "c`d", "e$HOME", "fg"],
            ),
            ("p 'a'\"b\"c\\\\d", &["p", "abc\\d"]),
            ("p \"\" ''", &["p", "", ""]),
            ("p a\\\nb c", &["p", "ab", "c"]),
            ("  p   a  ", &["p", "a"]),
            ("p 'a\"b' \"c'd\"", &["p", "a\"b", "c'd"]),
        ];
        for (line, argv) in cases {
            assert_eq!(split_exec(line), Ok(words(argv)), "{line:?}");
        }
    }

    #[test]
    fn split_comments_follow_the_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("p a #b c", &["p", "a"]),
            ("p a#b c", &["p", "a#b", "c"]),
            ("p #x\nq", &["p", "q"]),
            ("p '#a' \\#b", &["p", "#a", "#b"]),
        ];
        for (line, argv) in cases {
            assert_eq!(split_exec(line), Ok(words(argv)), "{line:?}");
        }
    }

    #[test]
    fn split_errors() {
        let cases: &[(&str, ExecError)] = &[
            ("", ExecError::Empty),
            (" \t\n", ExecError::Empty),
            ("# nothing", ExecError::Empty),
            ("p \"a", ExecError::UnclosedQuote),
            ("p 'a", ExecError::UnclosedQuote),
            ("p \"a\\", ExecError::UnclosedQuote),
            ("p a\\", ExecError::TrailingBackslash),
        ];
        for (line, error) in cases {
            assert_eq!(split_exec(line), Err(*error), "{line:?}");
        }
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let path = std::env::temp_dir()
                .join(format!("tram-config-service-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn dir(&self, name: &str, strict_naming: bool) -> ServiceDir {
            let path = self.0.join(name);
            std::fs::create_dir_all(&path).unwrap();
            ServiceDir {
                path,
                strict_naming,
                watch: true,
            }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write(dir: &ServiceDir, file: &str, name: &str, exec: &str) {
        let text = format!("[D-BUS Service]\nName={name}\nExec={exec}\n");
        std::fs::write(dir.path.join(file), text).unwrap();
    }

    fn summary(services: &[ServiceFile]) -> Vec<(String, String)> {
        services
            .iter()
            .map(|s| (s.name.clone(), s.exec.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn scan_priority_and_errors() {
        let tmp = TempDir::new("scan");
        let first = tmp.dir("first", false);
        let second = tmp.dir("second", false);
        write(&first, "a.b.service", "a.b", "first");
        write(&first, "legacy.service", "c.d", "legacy");
        write(&first, "ignored.conf", "e.f", "not a service file");
        write(&first, ".service", "e.f", "no stem");
        std::fs::create_dir(first.path.join("dir.service")).unwrap();
        std::fs::write(first.path.join("broken.service"), "junk\n").unwrap();
        write(&second, "a.b.service", "a.b", "second");
        write(&second, "g.h.service", "g.h", "second");
        let missing = ServiceDir {
            path: tmp.0.join("missing"),
            strict_naming: false,
            watch: true,
        };

        let (services, errors) = scan(&[first.clone(), missing, second]);
        assert_eq!(
            summary(&services),
            [
                ("a.b".into(), "first".into()),
                ("c.d".into(), "legacy".into()),
                ("g.h".into(), "second".into()),
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, first.path.join("broken.service"));
        assert_eq!(errors[0].kind, ServiceErrorKind::Syntax);
    }

    #[test]
    fn scan_strict_naming() {
        let tmp = TempDir::new("strict");
        let strict = tmp.dir("strict", true);
        write(&strict, "a.b.service", "a.b", "x");
        write(&strict, "misnamed.service", "c.d", "x");
        write(&strict, "e.f.service.service", "e.f", "x");
        let (services, errors) = scan(&[strict]);
        assert_eq!(summary(&services), [("a.b".into(), "x".into())]);
        let mut misnamed: Vec<_> = errors
            .iter()
            .map(|e| (e.kind, e.path.file_name().unwrap().to_owned()))
            .collect();
        misnamed.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            misnamed,
            [
                (ServiceErrorKind::Misnamed, "e.f.service.service".into()),
                (ServiceErrorKind::Misnamed, "misnamed.service".into()),
            ]
        );
        assert!(errors[0].to_string().contains("should have been named"));
    }

    #[test]
    fn scan_duplicates_in_one_directory() {
        let tmp = TempDir::new("dup");
        let dir = tmp.dir("d", false);
        // "0first" sorts before "a.b.service", which still wins because it is well named.
        write(&dir, "0first.service", "a.b", "first");
        write(&dir, "a.b.service", "a.b", "well named");
        write(&dir, "1other.service", "c.d", "other");
        write(&dir, "2other.service", "c.d", "later");
        let (services, errors) = scan(&[dir]);
        assert_eq!(
            summary(&services),
            [
                ("a.b".into(), "well named".into()),
                ("c.d".into(), "other".into()),
            ]
        );
        let mut dropped: Vec<_> = errors
            .iter()
            .map(|e| (e.kind, e.path.file_name().unwrap().to_owned()))
            .collect();
        dropped.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            dropped,
            [
                (ServiceErrorKind::Duplicate, "0first.service".into()),
                (ServiceErrorKind::Duplicate, "2other.service".into()),
            ]
        );
    }

    #[test]
    fn load_refuses_huge_files() {
        let tmp = TempDir::new("huge");
        let path = tmp.0.join("huge.service");
        let mut text = OK.to_owned();
        text.push_str(&"#".repeat(MAX_SERVICE_FILE_SIZE as usize));
        std::fs::write(&path, text).unwrap();
        let e = ServiceFile::load(&path).unwrap_err();
        assert_eq!(e.kind, ServiceErrorKind::Io);
        let e = ServiceFile::load(&tmp.0.join("absent.service")).unwrap_err();
        assert_eq!((e.kind, e.line), (ServiceErrorKind::Io, None));
    }
}
