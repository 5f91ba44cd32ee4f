//! Reading configuration files: the XML walk, includes, and every element but the rules.
//!
//! dbus-daemon reads a file with a streaming parser and stops at the first error; this walk
//! visits elements in document order and stops at the first error too, so the same file reports
//! the same fault. Each file (the main one, an `<include>`, an `<includedir>` entry) is read into
//! its own [`Partial`] and merged into the including file's at the place of the include, which is
//! how dbus-daemon merges, and what lets a broken `<includedir>` file be skipped whole.
//!
//! Behaviour confirmed against dbus-daemon 1.14, beyond its manual:
//!
//! * element text is taken verbatim, surrounding blanks included (`<listen> x</listen>` is the
//!   address " x"); empty text is an error for elements that take text;
//! * `<include>`'s missing file is an error unless `ignore_missing="yes"`, but a file that exists
//!   and is broken is an error either way; including a directory is an error;
//! * a missing `<includedir>` is ignored, one that is not a directory is an error, and an entry
//!   that fails to load is skipped with a warning while the rest of the configuration loads;
//! * `if_selinux_enabled="yes"` skips the include when SELinux is off, without looking for it;
//! * limits set in included files apply, the last value wins;
//! * an unknown user or group in `<policy user|group="…">` drops that policy with a warning.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roxmltree::{Document, Node, NodeType, ParsingOptions};
use tram_bus::policy::{Context, Rule, RuleKind};

use crate::error::{ConfigError, ConfigWarning, ErrorKind};
use crate::limits::{limit_info, parse_limit};
use crate::rule::{Parsed, parse_rule};
use crate::servicedirs::ServiceDirSpec;
use crate::users::UserDb;
use crate::{AppArmorMode, Selinux, SelinuxAssociation};

/// The SASL mechanisms dbus-daemon accepts in `<auth>`.
const MECHANISMS: [&str; 3] = ["EXTERNAL", "DBUS_COOKIE_SHA1", "ANONYMOUS"];

/// Reads files into [`Partial`]s; collects warnings and the names of what it read.
pub(crate) struct Walker<'a> {
    users: &'a dyn UserDb,
    selinux: &'a Selinux,
    /// Canonical paths of the files being read, outermost first: an include of one of them is a
    /// cycle.
    stack: Vec<PathBuf>,
    pub(crate) warnings: Vec<ConfigWarning>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) include_dirs: Vec<PathBuf>,
}

/// What one file (with everything it includes) configures.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    pub(crate) bus_type: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) fork: bool,
    pub(crate) keep_umask: bool,
    pub(crate) syslog: bool,
    pub(crate) allow_anonymous: bool,
    pub(crate) pidfile: Option<PathBuf>,
    pub(crate) servicehelper: Option<PathBuf>,
    pub(crate) listen: Vec<String>,
    pub(crate) auth: Vec<String>,
    pub(crate) service_dirs: Vec<ServiceDirSpec>,
    /// In file order; applied in order, so the last value wins.
    pub(crate) limits: Vec<(&'static str, u64)>,
    pub(crate) rules: Vec<(Context, Rule)>,
    pub(crate) selinux: Vec<SelinuxAssociation>,
    pub(crate) apparmor: Option<AppArmorMode>,
}

/// The file being walked.
struct File<'d, 'i> {
    doc: &'d Document<'i>,
    path: &'d Path,
    /// The path as rules record it.
    name: Arc<str>,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(users: &'a dyn UserDb, selinux: &'a Selinux) -> Self {
        Walker {
            users,
            selinux,
            stack: Vec::new(),
            warnings: Vec::new(),
            files: Vec::new(),
            include_dirs: Vec::new(),
        }
    }

    /// Reads the file at `path`; `site` is the `<include>` that asks for it, if any.
    pub(crate) fn file(
        &mut self,
        path: &Path,
        site: Option<&Site>,
    ) -> Result<Partial, ConfigError> {
        let key = canonical(path);
        let located = |kind, reason| match site {
            Some(site) => site.error(kind, reason),
            None => ConfigError::new(path, None, kind, reason),
        };
        if self.stack.contains(&key) {
            let reason = format!("Circular inclusion of file '{}'", path.display());
            return Err(located(ErrorKind::IncludeCycle, reason));
        }
        let text = fs::read_to_string(path).map_err(|e| {
            let reason = format!("Failed to open \"{}\": {}", path.display(), os_message(&e));
            located(ErrorKind::Io, reason)
        })?;
        self.files.push(path.to_path_buf());
        self.text(&text, path)
    }

    /// Reads `text` as the contents of the file at `path`.
    pub(crate) fn text(&mut self, text: &str, path: &Path) -> Result<Partial, ConfigError> {
        self.stack.push(canonical(path));
        let result = self.document(text, path);
        self.stack.pop();
        result
    }

    fn document(&mut self, text: &str, path: &Path) -> Result<Partial, ConfigError> {
        let options = ParsingOptions {
            allow_dtd: true,
            ..ParsingOptions::default()
        };
        let doc = Document::parse_with_options(text, options).map_err(|e| {
            let line = match e {
                roxmltree::Error::UnexpectedEndOfStream
                | roxmltree::Error::UnclosedRootNode
                | roxmltree::Error::NoRootNode => text.matches('\n').count() + 1,
                _ => usize::try_from(e.pos().row).unwrap_or(usize::MAX),
            };
            let line = u32::try_from(line).unwrap_or(u32::MAX);
            ConfigError::new(path, Some(line), ErrorKind::Xml, format!("XML error: {e}"))
        })?;
        let file = File {
            doc: &doc,
            path,
            name: Arc::from(path.display().to_string()),
        };
        let root = doc.root_element();
        if element_name(root) != "busconfig" {
            return Err(file.invalid(
                root,
                format!(
                    "Unknown element <{}> at root of configuration file",
                    element_name(root)
                ),
            ));
        }
        check_attributes(&file, root, &[])?;
        let mut p = Partial::default();
        for child in root.children() {
            match child.node_type() {
                NodeType::Element => self.busconfig_child(&file, child, &mut p)?,
                NodeType::Text => expect_blank(&file, root, child)?,
                _ => {}
            }
        }
        Ok(p)
    }

    fn busconfig_child(
        &mut self,
        file: &File<'_, '_>,
        node: Node<'_, '_>,
        p: &mut Partial,
    ) -> Result<(), ConfigError> {
        let name = element_name(node);
        match name {
            "user" | "type" | "listen" | "pidfile" | "auth" | "servicedir" | "servicehelper"
            | "includedir" => {
                check_attributes(file, node, &[])?;
                let text = text_content(file, node)?;
                match name {
                    "user" => p.user = Some(text),
                    "type" => p.bus_type = Some(text),
                    "listen" => p.listen.push(text),
                    "pidfile" => p.pidfile = Some(PathBuf::from(text)),
                    "servicehelper" => p.servicehelper = Some(PathBuf::from(text)),
                    "servicedir" => p
                        .service_dirs
                        .push(ServiceDirSpec::Dir(file.resolve(&text))),
                    "auth" => {
                        if !MECHANISMS.contains(&text.as_str()) {
                            return Err(file.invalid(
                                node,
                                format!(
                                    "Unsupported auth mechanism \"{text}\" in bus config file \
                                     detected. Supported mechanisms are \"{}\".",
                                    MECHANISMS.join(", ")
                                ),
                            ));
                        }
                        p.auth.push(text);
                    }
                    _ => self.includedir(file, node, &file.resolve(&text), p)?,
                }
            }
            "fork"
            | "keep_umask"
            | "syslog"
            | "allow_anonymous"
            | "standard_session_servicedirs"
            | "standard_system_servicedirs" => {
                check_attributes(file, node, &[])?;
                expect_empty(file, node)?;
                match name {
                    "fork" => p.fork = true,
                    "keep_umask" => p.keep_umask = true,
                    "syslog" => p.syslog = true,
                    "allow_anonymous" => p.allow_anonymous = true,
                    "standard_session_servicedirs" => {
                        p.service_dirs.push(ServiceDirSpec::StandardSession)
                    }
                    _ => p.service_dirs.push(ServiceDirSpec::StandardSystem),
                }
            }
            "include" => self.include(file, node, p)?,
            "limit" => limit(file, node, p)?,
            "policy" => self.policy(file, node, p)?,
            "selinux" => selinux(file, node, p)?,
            "apparmor" => {
                check_attributes(file, node, &["mode"])?;
                if let Some(mode) = node.attribute("mode") {
                    p.apparmor = Some(match mode {
                        "enabled" => AppArmorMode::Enabled,
                        "disabled" => AppArmorMode::Disabled,
                        "required" => AppArmorMode::Required,
                        _ => {
                            return Err(file.invalid(
                                node,
                                format!(
                                    "Mode attribute on <apparmor> must have value \"required\", \
                                     \"enabled\" or \"disabled\", not \"{mode}\""
                                ),
                            ));
                        }
                    });
                }
                expect_empty(file, node)?;
            }
            _ => {
                return Err(file.invalid(
                    node,
                    format!(
                        "Element <{name}> not allowed inside <busconfig> in configuration file"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        file: &File<'_, '_>,
        node: Node<'_, '_>,
        p: &mut Partial,
    ) -> Result<(), ConfigError> {
        check_attributes(
            file,
            node,
            &[
                "ignore_missing",
                "if_selinux_enabled",
                "selinux_root_relative",
            ],
        )?;
        let yes_no = |attr: &str| match node.attribute(attr) {
            None | Some("no") => Ok(false),
            Some("yes") => Ok(true),
            Some(_) => Err(file.invalid(
                node,
                format!("{attr} attribute must have value \"yes\" or \"no\""),
            )),
        };
        let ignore_missing = yes_no("ignore_missing")?;
        let if_selinux_enabled = yes_no("if_selinux_enabled")?;
        let selinux_root_relative = yes_no("selinux_root_relative")?;
        let text = text_content(file, node)?;
        if if_selinux_enabled && !self.selinux.enabled {
            return Ok(());
        }
        let path = if selinux_root_relative {
            self.selinux.policy_root.join(&text)
        } else {
            file.resolve(&text)
        };
        let site = file.site(node);
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && ignore_missing => return Ok(()),
            Err(e) => {
                let reason = format!("Failed to open \"{}\": {}", path.display(), os_message(&e));
                return Err(site.error(ErrorKind::Io, reason));
            }
            Ok(m) if !m.is_file() => {
                let reason = format!("\"{}\" is not a regular file", path.display());
                return Err(site.error(ErrorKind::Io, reason));
            }
            Ok(_) => {}
        }
        let included = self.file(&path, Some(&site))?;
        p.merge(included);
        Ok(())
    }

    fn includedir(
        &mut self,
        file: &File<'_, '_>,
        node: Node<'_, '_>,
        dir: &Path,
        p: &mut Partial,
    ) -> Result<(), ConfigError> {
        self.include_dirs.push(dir.to_path_buf());
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let reason = format!(
                    "Failed to read directory \"{}\": {}",
                    dir.display(),
                    os_message(&e)
                );
                return Err(file.site(node).error(ErrorKind::Io, reason));
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.as_encoded_bytes().ends_with(b".conf"))
            })
            .collect();
        paths.sort();
        let site = file.site(node);
        for path in paths {
            match self.file(&path, Some(&site)) {
                Ok(included) => p.merge(included),
                Err(e) => self.warnings.push(ConfigWarning {
                    file: e.file.clone(),
                    line: e.line,
                    message: format!(
                        "Encountered error '{}' while parsing '{}'; file skipped",
                        e.reason,
                        path.display()
                    ),
                }),
            }
        }
        Ok(())
    }

    fn policy(
        &mut self,
        file: &File<'_, '_>,
        node: Node<'_, '_>,
        p: &mut Partial,
    ) -> Result<(), ConfigError> {
        const ATTRS: [&str; 4] = ["context", "user", "group", "at_console"];
        check_attributes(file, node, &ATTRS)?;
        let given: Vec<(&str, &str)> = ATTRS
            .iter()
            .filter_map(|&a| node.attribute(a).map(|v| (a, v)))
            .collect();
        let [(attr, value)] = given[..] else {
            return Err(file.invalid(
                node,
                "<policy> element must have exactly one of (context|user|group|at_console) \
                 attributes"
                    .to_owned(),
            ));
        };
        // `None`: a policy for an unknown user or group, read for errors and then dropped.
        let context = match (attr, value) {
            ("context", "default") => Some(Context::Default),
            ("context", "mandatory") => Some(Context::Mandatory),
            ("context", v) => {
                return Err(file.invalid(
                    node,
                    format!(
                        "context attribute on <policy> must have the value \"default\" or \
                         \"mandatory\", not \"{v}\""
                    ),
                ));
            }
            ("at_console", "true") => Some(Context::AtConsole(true)),
            ("at_console", "false") => Some(Context::AtConsole(false)),
            ("at_console", v) => {
                return Err(file.invalid(
                    node,
                    format!(
                        "Unknown value \"{v}\" for at_console in message bus configuration file"
                    ),
                ));
            }
            ("user", v) => self.users.uid(v).map(Context::User).or_else(|| {
                self.warn(
                    file,
                    node,
                    format!("Unknown username \"{v}\" in message bus configuration file"),
                );
                None
            }),
            (_, v) => self.users.gid(v).map(Context::Group).or_else(|| {
                self.warn(
                    file,
                    node,
                    format!("Unknown group \"{v}\" in message bus configuration file"),
                );
                None
            }),
        };
        for child in node.children() {
            match child.node_type() {
                NodeType::Element => {}
                NodeType::Text => {
                    expect_blank(file, node, child)?;
                    continue;
                }
                _ => continue,
            }
            let element = element_name(child);
            let allow = match element {
                "allow" => true,
                "deny" => false,
                _ => {
                    return Err(file.invalid(
                        child,
                        format!(
                            "Element <{element}> not allowed inside <policy> in configuration file"
                        ),
                    ));
                }
            };
            let line = file.line(child);
            let attributes = child.attributes().map(|a| (a.name(), a.value()));
            let parsed = parse_rule(element, allow, attributes, self.users, (&file.name, line))
                .map_err(|reason| file.invalid(child, reason))?;
            match parsed {
                Parsed::Rule(rule) => {
                    let per_user = matches!(context, Some(Context::User(_) | Context::Group(_)));
                    if per_user && matches!(rule.kind, RuleKind::User(_) | RuleKind::Group(_)) {
                        return Err(file.invalid(
                            child,
                            format!(
                                "<{element}> rule cannot be per-user because it has bus-global \
                                 semantics"
                            ),
                        ));
                    }
                    if let Some(context) = context {
                        p.rules.push((context, rule));
                    }
                }
                Parsed::Dropped(warning) => self.warn(file, child, warning),
            }
            expect_empty(file, child)?;
        }
        Ok(())
    }

    fn warn(&mut self, file: &File<'_, '_>, node: Node<'_, '_>, message: String) {
        self.warnings.push(ConfigWarning {
            file: file.path.to_path_buf(),
            line: Some(file.line(node)),
            message,
        });
    }
}

impl Partial {
    /// Merges what an included file configures, at the place of the include.
    pub(crate) fn merge(&mut self, other: Partial) {
        fn replace<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        replace(&mut self.bus_type, other.bus_type);
        replace(&mut self.user, other.user);
        replace(&mut self.pidfile, other.pidfile);
        replace(&mut self.servicehelper, other.servicehelper);
        replace(&mut self.apparmor, other.apparmor);
        self.fork |= other.fork;
        self.keep_umask |= other.keep_umask;
        self.syslog |= other.syslog;
        self.allow_anonymous |= other.allow_anonymous;
        self.listen.extend(other.listen);
        self.auth.extend(other.auth);
        self.service_dirs.extend(other.service_dirs);
        self.limits.extend(other.limits);
        self.rules.extend(other.rules);
        self.selinux.extend(other.selinux);
    }
}

/// Where an `<include>` or `<includedir>` stands, for errors about what it names.
pub(crate) struct Site {
    path: PathBuf,
    line: u32,
}

impl Site {
    fn error(&self, kind: ErrorKind, reason: String) -> ConfigError {
        ConfigError::new(&self.path, Some(self.line), kind, reason)
    }
}

impl File<'_, '_> {
    fn line(&self, node: Node<'_, '_>) -> u32 {
        self.doc.text_pos_at(node.range().start).row
    }

    fn invalid(&self, node: Node<'_, '_>, reason: String) -> ConfigError {
        ConfigError::new(self.path, Some(self.line(node)), ErrorKind::Invalid, reason)
    }

    fn site(&self, node: Node<'_, '_>) -> Site {
        Site {
            path: self.path.to_path_buf(),
            line: self.line(node),
        }
    }

    /// A path from the file, relative to the file's directory.
    fn resolve(&self, text: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) => dir.join(text),
            None => PathBuf::from(text),
        }
    }
}

fn limit(file: &File<'_, '_>, node: Node<'_, '_>, p: &mut Partial) -> Result<(), ConfigError> {
    check_attributes(file, node, &["name"])?;
    let Some(name) = node.attribute("name") else {
        return Err(file.invalid(
            node,
            "<limit> element must have a \"name\" attribute".to_owned(),
        ));
    };
    let text = text_content(file, node)?;
    let Some(info) = limit_info(name) else {
        return Err(file.invalid(node, format!("There is no limit called \"{name}\"")));
    };
    let value = parse_limit(info, &text).map_err(|reason| file.invalid(node, reason))?;
    p.limits.push((info.name, value));
    Ok(())
}

fn selinux(file: &File<'_, '_>, node: Node<'_, '_>, p: &mut Partial) -> Result<(), ConfigError> {
    check_attributes(file, node, &[])?;
    for child in node.children() {
        match child.node_type() {
            NodeType::Element if element_name(child) == "associate" => {
                check_attributes(file, child, &["own", "context"])?;
                let (Some(name), Some(context)) =
                    (child.attribute("own"), child.attribute("context"))
                else {
                    return Err(file.invalid(
                        child,
                        "Element <associate> must have attributes own=\"<servicename>\" and \
                         context=\"<selinux context>\""
                            .to_owned(),
                    ));
                };
                p.selinux.push(SelinuxAssociation {
                    name: name.to_owned(),
                    context: context.to_owned(),
                });
                expect_empty(file, child)?;
            }
            NodeType::Element => {
                return Err(file.invalid(
                    child,
                    format!(
                        "Element <{}> not allowed inside <selinux> in configuration file",
                        element_name(child)
                    ),
                ));
            }
            NodeType::Text => expect_blank(file, node, child)?,
            _ => {}
        }
    }
    Ok(())
}

/// The first attribute not in `allowed` is an error.
fn check_attributes(
    file: &File<'_, '_>,
    node: Node<'_, '_>,
    allowed: &[&str],
) -> Result<(), ConfigError> {
    for attr in node.attributes() {
        if attr.namespace().is_some() || !allowed.contains(&attr.name()) {
            let line = file.doc.text_pos_at(attr.range().start).row;
            return Err(ConfigError::new(
                file.path,
                Some(line),
                ErrorKind::Invalid,
                format!(
                    "Attribute \"{}\" is invalid on <{}> element in this context",
                    attr.name(),
                    element_name(node)
                ),
            ));
        }
    }
    Ok(())
}

/// The text of an element that takes text: verbatim, and not empty.
fn text_content(file: &File<'_, '_>, node: Node<'_, '_>) -> Result<String, ConfigError> {
    let mut text = String::new();
    for child in node.children() {
        match child.node_type() {
            NodeType::Element => return Err(not_in_context(file, child)),
            NodeType::Text => text.push_str(child.text().unwrap_or_default()),
            _ => {}
        }
    }
    if text.is_empty() {
        return Err(file.invalid(
            node,
            format!(
                "XML element <{}> was expected to have content inside it",
                element_name(node)
            ),
        ));
    }
    Ok(text)
}

/// An element that takes neither elements nor text.
fn expect_empty(file: &File<'_, '_>, node: Node<'_, '_>) -> Result<(), ConfigError> {
    for child in node.children() {
        match child.node_type() {
            NodeType::Element => return Err(not_in_context(file, child)),
            NodeType::Text => expect_blank(file, node, child)?,
            _ => {}
        }
    }
    Ok(())
}

/// Text inside `parent`, which takes none: only blanks are allowed.
fn expect_blank(
    file: &File<'_, '_>,
    parent: Node<'_, '_>,
    text: Node<'_, '_>,
) -> Result<(), ConfigError> {
    let content = text.text().unwrap_or_default();
    if content.bytes().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    // Point at the first non-blank character, not at the blanks before it.
    let range = text.range();
    let raw = file.doc.input_text().get(range.clone()).unwrap_or_default();
    let skip = raw.len()
        - raw
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .len();
    let line = file.doc.text_pos_at(range.start + skip).row;
    Err(ConfigError::new(
        file.path,
        Some(line),
        ErrorKind::Invalid,
        format!(
            "No text content expected inside XML element {} in configuration file",
            element_name(parent)
        ),
    ))
}

fn not_in_context(file: &File<'_, '_>, node: Node<'_, '_>) -> ConfigError {
    file.invalid(
        node,
        format!(
            "Element <{}> is not allowed in this context",
            element_name(node)
        ),
    )
}

/// The element's name; an element in a namespace gets its prefix back, so it never passes for a
/// configuration element.
fn element_name<'a>(node: Node<'a, '_>) -> &'a str {
    let name = node.tag_name().name();
    match node.tag_name().namespace() {
        None => name,
        Some(_) => {
            let range = node.range();
            let raw = node
                .document()
                .input_text()
                .get(range.start + 1..range.end)
                .unwrap_or(name);
            raw.split(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
                .next()
                .unwrap_or(name)
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The system's text for an I/O error, without Rust's " (os error N)" suffix.
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ").and_then(|i| text.get(..i)) {
        Some(message) => message.to_owned(),
        None => text,
    }
}
