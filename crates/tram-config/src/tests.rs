//! Loading whole configurations: includes, precedence, errors with their places, the stock files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tram_bus::policy::{
    Context, IdMatch, MessageKind, NameHolder, NameMatch, ReceiveCheck, Rule, RuleKind, SendCheck,
};

use super::*;

/// A directory of test files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tram-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test directory");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create test subdirectory");
        }
        std::fs::write(&path, text).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const DOCTYPE: &str = "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n";

fn users() -> UserTable {
    UserTable::parse(
        "root:x:0:0::/root:/bin/sh\nmessagebus:x:100:102::/:/bin/false\nalice:x:1000:1000::/:/bin/sh\n",
        "root:x:0:\nmessagebus:x:102:\nwheel:x:10:alice\nalice:x:1000:\n",
    )
}

fn load_with(path: &Path, selinux: Selinux) -> Result<Config, ConfigError> {
    let users = users();
    Loader::new(&users, selinux).load(path)
}

fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, Selinux::disabled())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let users = users();
    Loader::new(&users, Selinux::disabled()).load_str(text, Path::new("/nonexistent/test.conf"))
}

/// (file name, contents) pairs; the first is the one loaded.
type Files<'a> = &'a [(&'a str, &'a str)];

/// Every broken configuration fails with the file and line of its fault and a reason that reads
/// like dbus-daemon's (each reason was compared with dbus-daemon 1.14 on the same file).
#[test]
fn broken_configurations() {
    // (files, file named by the error, line, reason contains)
    let cases: &[(Files, &str, u32, &str)] = &[
        (
            &[(
                "main.conf",
                "<busconfig>\n  <listen>unix:tmpdir=/tmp</listen>\n  <fork>\n</busconfig>\n",
            )],
            "main.conf",
            4,
            "XML error",
        ),
        (&[("main.conf", "")], "main.conf", 1, "XML error"),
        (
            // Like dbus-daemon, the end of the text: the line after the last newline.
            &[("main.conf", "<busconfig>\n<listen>x</listen>\n")],
            "main.conf",
            3,
            "XML error",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\"><allow own=\"*\" own=\"*\"/></policy>\n</busconfig>",
            )],
            "main.conf",
            2,
            "XML error",
        ),
        (
            &[("main.conf", "<notbusconfig/>\n")],
            "main.conf",
            1,
            "Unknown element <notbusconfig> at root of configuration file",
        ),
        (
            &[("main.conf", "<busconfig>\n\n  <foo/>\n</busconfig>")],
            "main.conf",
            3,
            "Element <foo> not allowed inside <busconfig> in configuration file",
        ),
        (
            &[(
                "main.conf",
                "<busconfig xmlns:x=\"urn:x\">\n<x:listen>a:</x:listen>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Element <x:listen> not allowed inside <busconfig>",
        ),
        (
            &[("main.conf", "<busconfig foo=\"x\"/>")],
            "main.conf",
            1,
            "Attribute \"foo\" is invalid on <busconfig> element in this context",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n <fork\n   foo=\"x\"/>\n</busconfig>",
            )],
            "main.conf",
            3,
            "Attribute \"foo\" is invalid on <fork> element in this context",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<listen>unix:tmpdir=/tmp</listen>\n text\n</busconfig>",
            )],
            "main.conf",
            3,
            "No text content expected inside XML element busconfig in configuration file",
        ),
        (
            &[("main.conf", "<busconfig>\n<listen></listen>\n</busconfig>")],
            "main.conf",
            2,
            "XML element <listen> was expected to have content inside it",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<listen>a:<b/></listen>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Element <b> is not allowed in this context",
        ),
        (
            &[("main.conf", "<busconfig>\n<auth>FOO</auth>\n</busconfig>")],
            "main.conf",
            2,
            "Unsupported auth mechanism \"FOO\" in bus config file detected",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<limit name=\"max_message_size\">abc</limit>\n</busconfig>",
            )],
            "main.conf",
            2,
            "<limit name=\"max_message_size\"> element has invalid value (could not parse as integer)",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<limit name=\"max_message_size\">-5</limit>\n</busconfig>",
            )],
            "main.conf",
            2,
            "<limit name=\"max_message_size\"> must be a positive number",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<limit name=\"auth_timeout\">2147483648</limit>\n</busconfig>",
            )],
            "main.conf",
            2,
            "<limit name=\"auth_timeout\"> value is too large",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<limit name=\"nosuch\">5</limit>\n</busconfig>",
            )],
            "main.conf",
            2,
            "There is no limit called \"nosuch\"",
        ),
        (
            &[("main.conf", "<busconfig>\n<limit>5</limit>\n</busconfig>")],
            "main.conf",
            2,
            "<limit> element must have a \"name\" attribute",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<include>missing.conf</include>\n</busconfig>",
            )],
            "main.conf",
            2,
            "missing.conf\": No such file or directory",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<include ignore_missing=\"maybe\">x.conf</include>\n</busconfig>",
            )],
            "main.conf",
            2,
            "ignore_missing attribute must have value \"yes\" or \"no\"",
        ),
        (
            &[
                (
                    "main.conf",
                    "<busconfig>\n<include>sub</include>\n</busconfig>",
                ),
                ("sub/x.conf", "<busconfig/>"),
            ],
            "main.conf",
            2,
            "sub\" is not a regular file",
        ),
        (
            &[
                (
                    "main.conf",
                    "<busconfig>\n<include>a.conf</include>\n</busconfig>",
                ),
                (
                    "a.conf",
                    "<busconfig>\n\n<include>main.conf</include>\n</busconfig>",
                ),
            ],
            "a.conf",
            3,
            "Circular inclusion of file '",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<include>./main.conf</include>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Circular inclusion of file '",
        ),
        (
            &[
                (
                    "main.conf",
                    "<busconfig>\n<include ignore_missing=\"yes\">b.conf</include>\n</busconfig>",
                ),
                (
                    "b.conf",
                    "<busconfig>\n<type>x</type>\n<bogus/>\n</busconfig>",
                ),
            ],
            "b.conf",
            3,
            "Element <bogus> not allowed inside <busconfig>",
        ),
        (
            &[
                (
                    "main.conf",
                    "<busconfig>\n<includedir>file.conf</includedir>\n</busconfig>",
                ),
                ("file.conf", ""),
            ],
            "main.conf",
            2,
            "Failed to read directory",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\">\n  <allow send_type=\"signal\" receive_type=\"signal\"/>\n</policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "Invalid combination of attributes on element <allow>: send and receive attributes cannot be combined",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\">\n  <deny own=\"a.b\" own_prefix=\"a\"/>\n</policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "Invalid combination of attributes on element <deny>: own, own_prefix, user, group",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\">\n  <allow own=\"*\"\n         bogus=\"1\"/>\n</policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "Attribute \"bogus\" is invalid on <allow> element in this context",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\">\n  <allow send_member=\"M\"/>\n</policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "if you specify a member you must specify an interface or a path",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\"><allow send_type=\"sig\"/></policy>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Bad message type \"sig\"",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\"><allow/></policy>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Element <allow> must have one or more attributes",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"foo\"/>\n</busconfig>",
            )],
            "main.conf",
            2,
            "context attribute on <policy> must have the value \"default\" or \"mandatory\", not \"foo\"",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\" user=\"root\"/>\n</busconfig>",
            )],
            "main.conf",
            2,
            "<policy> element must have exactly one of (context|user|group|at_console) attributes",
        ),
        (
            &[("main.conf", "<busconfig>\n<policy/>\n</busconfig>")],
            "main.conf",
            2,
            "<policy> element must have exactly one of",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy at_console=\"yes\"/>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Unknown value \"yes\" for at_console in message bus configuration file",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy user=\"root\">\n<allow user=\"*\"/></policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "<allow> rule cannot be per-user because it has bus-global semantics",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\">\n<allow own=\"*\">x</allow></policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "No text content expected inside XML element allow in configuration file",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<policy context=\"default\">\n<listen>x:</listen></policy>\n</busconfig>",
            )],
            "main.conf",
            3,
            "Element <listen> not allowed inside <policy> in configuration file",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<apparmor mode=\"foo\"/>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Mode attribute on <apparmor> must have value \"required\", \"enabled\" or \"disabled\", not \"foo\"",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<selinux>\n<associate own=\"a.b\"/></selinux>\n</busconfig>",
            )],
            "main.conf",
            3,
            "Element <associate> must have attributes own=\"<servicename>\" and context=\"<selinux context>\"",
        ),
        (
            &[(
                "main.conf",
                "<busconfig>\n<associate own=\"a\" context=\"b\"/>\n</busconfig>",
            )],
            "main.conf",
            2,
            "Element <associate> not allowed inside <busconfig>",
        ),
    ];
    assert!(cases.len() >= 15);
    for &(files, file, line, reason) in cases {
        let dir = TempDir::new();
        let mut paths = files.iter().map(|(name, text)| dir.write(name, text));
        let main = paths.next().expect("a main file");
        paths.for_each(drop);
        let err = match load(&main) {
            Err(e) => e,
            Ok(_) => panic!("{files:?} loaded"),
        };
        let text = err.to_string();
        assert_eq!(err.file, dir.0.join(file), "{text}");
        assert_eq!(err.line, Some(line), "{text}");
        assert!(err.reason.contains(reason), "{text}");
        assert!(
            text.starts_with(&format!("{}:{line}: ", dir.0.join(file).display())),
            "{text}"
        );
    }
}

#[test]
fn unreadable_top_level_file() {
    let err = load(Path::new("/nonexistent/tram.conf")).expect_err("an error");
    assert_eq!(err.kind, ErrorKind::Io);
    assert_eq!(err.line, None);
    assert_eq!(
        err.to_string(),
        "/nonexistent/tram.conf: Failed to open \"/nonexistent/tram.conf\": No such file or directory"
    );
}

#[test]
fn everything_but_policy() {
    let c = parse(&format!(
        "<?xml version=\"1.0\"?>\n{DOCTYPE}<!-- comment -->\n<busconfig>\n\
         <type>system</type><type>custom</type>\n\
         <user>messagebus</user>\n\
         <fork/><keep_umask/><syslog/><allow_anonymous/>\n\
         <pidfile>run/pid</pidfile>\n\
         <listen>unix:path=/run/a</listen>\n\
         <listen>tcp:host=localhost,port=0</listen>\n\
         <listen> unix:path=/x&amp;y </listen>\n\
         <auth>EXTERNAL</auth><auth>ANONYMOUS</auth>\n\
         <servicedir>svc</servicedir><standard_session_servicedirs/>\n\
         <servicedir>/abs/svc</servicedir><standard_system_servicedirs/>\n\
         <servicehelper>/usr/lib/helper</servicehelper>\n\
         <limit name=\"max_names_per_connection\">2</limit>\n\
         <limit name=\"max_names_per_connection\">0x10</limit>\n\
         <limit name=\"reply_timeout\">5000</limit>\n\
         <selinux><associate own=\"a.b\" context=\"x_t\"/><associate own=\"a.b\" context=\"y_t\"/></selinux>\n\
         <apparmor mode=\"required\"/><apparmor/>\n\
         <?some processing instruction?>\n\
         </busconfig>\n"
    ))
    .expect("valid");
    assert_eq!(c.bus_type.as_deref(), Some("custom"));
    assert_eq!(c.user.as_deref(), Some("messagebus"));
    assert!(c.fork && c.keep_umask && c.syslog && c.allow_anonymous);
    assert_eq!(c.pidfile, Some(PathBuf::from("run/pid")));
    assert_eq!(
        c.listen,
        [
            "unix:path=/run/a",
            "tcp:host=localhost,port=0",
            " unix:path=/x&y "
        ]
    );
    assert_eq!(c.auth, ["EXTERNAL", "ANONYMOUS"]);
    assert_eq!(
        c.service_dirs,
        [
            ServiceDirSpec::Dir("/nonexistent/svc".into()),
            ServiceDirSpec::StandardSession,
            ServiceDirSpec::Dir("/abs/svc".into()),
            ServiceDirSpec::StandardSystem,
        ]
    );
    assert_eq!(c.servicehelper, Some(PathBuf::from("/usr/lib/helper")));
    assert_eq!(c.limits.max_names_per_connection, 16);
    assert_eq!(c.limits.reply_timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        c.limits.max_message_size,
        Limits::default().max_message_size
    );
    assert_eq!(c.selinux_context("a.b"), Some("y_t"));
    assert_eq!(c.selinux_context("a.c"), None);
    assert_eq!(c.apparmor, AppArmorMode::Required);
    assert_eq!(c.policy.rules().count(), 0);
    assert!(c.warnings.is_empty());
    let dirs = c.service_dirs(&XdgDirs::default());
    assert_eq!(
        dirs.first().map(|d| d.path.as_path()),
        Some(Path::new("/nonexistent/svc"))
    );
}

#[test]
fn defaults_without_elements() {
    let c = parse("<busconfig/>").expect("valid");
    assert_eq!(c.bus_type, None);
    assert!(!c.fork && !c.syslog && !c.keep_umask && !c.allow_anonymous);
    assert!(c.listen.is_empty() && c.auth.is_empty() && c.service_dirs.is_empty());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.apparmor, AppArmorMode::Enabled);
    // No rules: the bus owner may connect and do nothing.
    let p = c.policy.for_connection(Some(0), &[0], false);
    assert!(!p.check_own("a.b").allowed);
    assert!(c.policy.allows_user(0, &[], 0));
}

#[test]
fn policy_contexts_and_warnings() {
    let c = parse(
        "<busconfig>\n\
         <policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/></policy>\n\
         <policy user=\"alice\"><deny own=\"a.b\"/></policy>\n\
         <policy user=\"1000\"><deny own=\"a.c\"/></policy>\n\
         <policy group=\"wheel\"><deny own=\"a.d\"/></policy>\n\
         <policy at_console=\"true\"><deny own=\"a.e\"/></policy>\n\
         <policy at_console=\"false\"><deny own=\"a.f\" log=\"true\"/></policy>\n\
         <policy context=\"mandatory\"><deny own=\"a.g\"/><deny group=\"*\"/></policy>\n\
         <policy user=\"nosuch\"><deny own=\"*\"/><allow user=\"*\"/></policy>\n\
         <policy group=\"nosuch\"><deny own=\"*\"/></policy>\n\
         <policy context=\"default\">\n  <deny user=\"nosuch\"/>\n  <deny group=\"54321\"/>\n</policy>\n\
         </busconfig>",
    )
    .expect("valid");
    let contexts: Vec<Context> = c.policy.rules().map(|(_, ctx, _)| ctx).collect();
    assert_eq!(
        contexts,
        [
            Context::Default,
            Context::Default,
            Context::User(1000),
            Context::User(1000),
            Context::Group(10),
            Context::AtConsole(true),
            Context::AtConsole(false),
            Context::Mandatory,
            Context::Mandatory,
        ]
    );
    let rules: Vec<&Rule> = c.policy.rules().map(|(_, _, r)| r).collect();
    assert_eq!(rules[0].kind, RuleKind::User(IdMatch::Any));
    assert_eq!(
        rules[2].kind,
        RuleKind::Own(Some(NameMatch::Exact("a.b".into())))
    );
    assert!(rules[6].log && !rules[6].allow);
    assert_eq!(
        rules[2].origin.as_ref().map(ToString::to_string).as_deref(),
        Some("/nonexistent/test.conf:3")
    );
    let warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "/nonexistent/test.conf:9: Unknown username \"nosuch\" in message bus configuration file",
            "/nonexistent/test.conf:10: Unknown group \"nosuch\" in message bus configuration file",
            "/nonexistent/test.conf:12: Unknown username \"nosuch\" on element <deny>",
            "/nonexistent/test.conf:13: Unknown group \"54321\" on element <deny>",
        ]
    );
    // Admission: everyone by default, nobody by the mandatory group deny.
    assert!(!c.policy.allows_user(1000, &[1000], 0));
    let alice = c.policy.for_connection(Some(1000), &[1000, 10], false);
    for (name, want) in [
        ("a.a", true),
        ("a.b", false),
        ("a.c", false),
        ("a.d", false),
        ("a.e", true),
        ("a.f", false),
        ("a.g", false),
    ] {
        assert_eq!(alice.check_own(name).allowed, want, "{name}");
    }
}

#[test]
fn includes_merge_in_place() {
    let dir = TempDir::new();
    dir.write(
        "etc/main.conf",
        "<busconfig>\n\
         <type>system</type>\n\
         <listen>unix:path=/one</listen>\n\
         <limit name=\"max_names_per_connection\">5</limit>\n\
         <policy context=\"default\"><deny own=\"*\"/></policy>\n\
         <include>sub/inc.conf</include>\n\
         <include ignore_missing=\"yes\">sub/absent.conf</include>\n\
         <includedir>conf.d</includedir>\n\
         <includedir>absent.d</includedir>\n\
         <listen>unix:path=/four</listen>\n\
         </busconfig>",
    );
    dir.write(
        "etc/sub/inc.conf",
        "<busconfig>\n\
         <type>session</type>\n\
         <listen>unix:path=/two</listen>\n\
         <limit name=\"max_names_per_connection\">6</limit>\n\
         <limit name=\"max_match_rules_per_connection\">7</limit>\n\
         <servicedir>services</servicedir>\n\
         <include>nested.conf</include>\n\
         </busconfig>",
    );
    dir.write(
        "etc/sub/nested.conf",
        "<busconfig><policy context=\"default\"><allow own=\"a.b\"/></policy><fork/></busconfig>",
    );
    dir.write(
        "etc/conf.d/20-second.conf",
        "<busconfig><policy context=\"default\"><allow own=\"a.c\"/></policy>\
         <limit name=\"max_names_per_connection\">8</limit></busconfig>",
    );
    dir.write(
        "etc/conf.d/10-first.conf",
        "<busconfig><listen>unix:path=/three</listen></busconfig>",
    );
    dir.write(
        "etc/conf.d/15-broken.conf",
        "<busconfig>\n<bogus/>\n</busconfig>",
    );
    dir.write(
        "etc/conf.d/30-truncated.conf",
        "<busconfig>\n<type>x</type>\n",
    );
    dir.write("etc/conf.d/ignored.txt", "not xml");
    let c = load(&dir.0.join("etc/main.conf")).expect("valid");
    assert_eq!(c.bus_type.as_deref(), Some("session"));
    assert_eq!(
        c.listen,
        [
            "unix:path=/one",
            "unix:path=/two",
            "unix:path=/three",
            "unix:path=/four"
        ]
    );
    assert!(c.fork);
    assert_eq!(c.limits.max_names_per_connection, 8);
    assert_eq!(c.limits.max_match_rules_per_connection, 7);
    assert_eq!(
        c.service_dirs,
        [ServiceDirSpec::Dir(dir.0.join("etc/sub/services"))]
    );
    let owns: Vec<String> = c
        .policy
        .rules()
        .map(|(_, _, r)| match &r.kind {
            RuleKind::Own(Some(NameMatch::Exact(n))) => n.to_string(),
            RuleKind::Own(None) => "*".to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(owns, ["*", "a.b", "a.c"]);
    let p = c.policy.for_connection(Some(0), &[], false);
    assert!(p.check_own("a.b").allowed && p.check_own("a.c").allowed);
    assert!(!p.check_own("a.d").allowed);
    // The broken includedir entries were skipped with a warning naming their fault.
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].file, dir.0.join("etc/conf.d/15-broken.conf"));
    assert_eq!(c.warnings[0].line, Some(2));
    assert!(
        c.warnings[0]
            .message
            .contains("Element <bogus> not allowed")
    );
    assert_eq!(
        c.warnings[1].file,
        dir.0.join("etc/conf.d/30-truncated.conf")
    );
    let read: Vec<&Path> = c
        .files
        .iter()
        .map(|p| p.strip_prefix(&dir.0).unwrap_or(p))
        .collect();
    assert_eq!(
        read,
        [
            Path::new("etc/main.conf"),
            Path::new("etc/sub/inc.conf"),
            Path::new("etc/sub/nested.conf"),
            Path::new("etc/conf.d/10-first.conf"),
            Path::new("etc/conf.d/15-broken.conf"),
            Path::new("etc/conf.d/20-second.conf"),
            Path::new("etc/conf.d/30-truncated.conf"),
        ]
    );
    assert_eq!(
        c.include_dirs,
        [dir.0.join("etc/conf.d"), dir.0.join("etc/absent.d")]
    );
}

#[test]
fn same_file_twice_is_not_a_cycle() {
    let dir = TempDir::new();
    dir.write("inc.conf", "<busconfig><listen>a:</listen></busconfig>");
    let main = dir.write(
        "main.conf",
        "<busconfig><include>inc.conf</include><include>inc.conf</include></busconfig>",
    );
    assert_eq!(load(&main).expect("valid").listen, ["a:", "a:"]);
}

#[test]
fn selinux_includes() {
    let dir = TempDir::new();
    dir.write(
        "policy/contexts/dbus_contexts",
        "<busconfig><selinux><associate own=\"a.b\" context=\"c_t\"/></selinux></busconfig>",
    );
    let main = dir.write(
        "main.conf",
        "<busconfig>\n<include if_selinux_enabled=\"yes\" selinux_root_relative=\"yes\">contexts/dbus_contexts</include>\n</busconfig>",
    );
    let off = load_with(&main, Selinux::disabled()).expect("skipped");
    assert!(off.selinux.is_empty());
    let on = Selinux {
        enabled: true,
        policy_root: dir.0.join("policy"),
    };
    let c = load_with(&main, on.clone()).expect("valid");
    assert_eq!(c.selinux_context("a.b"), Some("c_t"));
    std::fs::remove_file(dir.0.join("policy/contexts/dbus_contexts")).expect("remove");
    let err = load_with(&main, on).expect_err("missing");
    assert_eq!((err.line, err.kind), (Some(2), ErrorKind::Io));
}

/// The stock session configuration of this machine, with whatever it includes.
#[test]
fn stock_session_conf() {
    let path = Path::new("/usr/share/dbus-1/session.conf");
    if !path.exists() {
        eprintln!("skipped: {} is not installed", path.display());
        return;
    }
    let c = Config::load(path).expect("stock session.conf loads");
    assert_eq!(c.bus_type.as_deref(), Some("session"));
    assert!(c.keep_umask && !c.fork);
    assert_eq!(
        c.listen.first().map(String::as_str),
        Some("unix:tmpdir=/tmp")
    );
    assert_eq!(c.auth.first().map(String::as_str), Some("EXTERNAL"));
    assert!(c.service_dirs.contains(&ServiceDirSpec::StandardSession));
    assert_eq!(c.limits.max_message_size, 1_000_000_000);
    assert_eq!(c.limits.auth_timeout, Duration::from_secs(240));
    assert_eq!(c.limits.max_message_unix_fds, 16);
    assert!(
        c.include_dirs
            .contains(&PathBuf::from("/usr/share/dbus-1/session.d"))
    );
    let p = c.policy.for_connection(Some(1000), &[1000], false);
    assert!(p.check_own("org.example.Anything").allowed);
    let m = SendCheck {
        message_type: MessageKind::MethodReturn,
        path: None,
        interface: None,
        member: None,
        error_name: None,
        has_destination: true,
        receiver: &[":1.1"],
        requested_reply: false,
        unix_fds: 3,
    };
    assert!(p.check_send(&m).allowed);
    let r = ReceiveCheck {
        message_type: MessageKind::MethodCall,
        path: Some("/"),
        interface: Some("a.I"),
        member: Some("M"),
        error_name: None,
        sender: &[":1.2"],
        requested_reply: false,
        eavesdropping: true,
        unix_fds: 0,
    };
    assert!(p.check_receive(&r).allowed);
    // Only the bus owner may connect.
    assert!(c.policy.allows_user(1000, &[], 1000));
    assert!(!c.policy.allows_user(1001, &[], 1000));
}

/// The stock system configuration of this machine, with whatever it includes.
#[test]
fn stock_system_conf() {
    let path = Path::new("/usr/share/dbus-1/system.conf");
    if !path.exists() {
        eprintln!("skipped: {} is not installed", path.display());
        return;
    }
    let c = Config::load(path).expect("stock system.conf loads");
    assert_eq!(c.bus_type.as_deref(), Some("system"));
    assert_eq!(c.user.as_deref(), Some("messagebus"));
    assert!(c.fork && c.syslog);
    assert_eq!(c.pidfile, Some(PathBuf::from("/run/dbus/pid")));
    assert_eq!(
        c.listen.first().map(String::as_str),
        Some("unix:path=/run/dbus/system_bus_socket")
    );
    assert_eq!(c.auth.first().map(String::as_str), Some("EXTERNAL"));
    assert!(c.service_dirs.contains(&ServiceDirSpec::StandardSystem));
    assert_eq!(
        c.servicehelper,
        Some(PathBuf::from("/usr/lib/dbus-1.0/dbus-daemon-launch-helper"))
    );
    // system.conf leaves every limit at the built-in default.
    if !Path::new("/etc/dbus-1/system-local.conf").exists() {
        assert_eq!(c.limits, Limits::default());
    }
    assert!(
        c.include_dirs
            .contains(&PathBuf::from("/usr/share/dbus-1/system.d"))
    );
    assert!(
        c.include_dirs
            .contains(&PathBuf::from("/etc/dbus-1/system.d"))
    );

    let nobody = 65534;
    assert!(c.policy.allows_user(nobody, &[nobody], 100));
    let user = c.policy.for_connection(Some(nobody), &[nobody], false);
    let root = c.policy.for_connection(Some(0), &[0], false);
    assert!(!user.check_own("org.example.Service").allowed);
    let send = |p: &tram_bus::policy::ConnectionPolicy,
                kind: MessageKind,
                interface: Option<&str>,
                member: Option<&str>,
                receiver: &dyn NameHolder,
                requested_reply: bool| {
        p.check_send(&SendCheck {
            message_type: kind,
            path: Some("/"),
            interface,
            member,
            error_name: None,
            has_destination: true,
            receiver,
            requested_reply,
            unix_fds: 0,
        })
        .allowed
    };
    let bus = ["org.freedesktop.DBus"];
    let dbus = Some("org.freedesktop.DBus");
    let monitoring = Some("org.freedesktop.DBus.Monitoring");
    let call = MessageKind::MethodCall;
    let ret = MessageKind::MethodReturn;
    assert!(!send(
        &user,
        call,
        Some("org.example.I"),
        Some("M"),
        &[":1.5"],
        false
    ));
    assert!(send(
        &user,
        MessageKind::Signal,
        Some("org.example.I"),
        Some("S"),
        &[":1.5"],
        false
    ));
    assert!(send(&user, ret, None, None, &[":1.5"], true));
    assert!(!send(&user, ret, None, None, &[":1.5"], false));
    assert!(!send(
        &user,
        MessageKind::Error,
        None,
        None,
        &[":1.5"],
        false
    ));
    assert!(send(&user, call, dbus, Some("Hello"), &bus, false));
    assert!(send(&user, call, dbus, Some("ListNames"), &bus, false));
    assert!(!send(
        &user,
        call,
        dbus,
        Some("UpdateActivationEnvironment"),
        &bus,
        false
    ));
    assert!(!send(
        &user,
        call,
        monitoring,
        Some("BecomeMonitor"),
        &bus,
        false
    ));
    assert!(send(
        &root,
        call,
        monitoring,
        Some("BecomeMonitor"),
        &bus,
        false
    ));
    let receive = ReceiveCheck {
        message_type: MessageKind::Signal,
        path: Some("/"),
        interface: Some("org.example.I"),
        member: Some("S"),
        error_name: None,
        sender: &[":1.5"],
        requested_reply: false,
        eavesdropping: false,
        unix_fds: 0,
    };
    assert!(user.check_receive(&receive).allowed);
    let eavesdrop = ReceiveCheck {
        eavesdropping: true,
        ..receive
    };
    assert!(!user.check_receive(&eavesdrop).allowed);
    // A service from system.d, where systemd installed one.
    if Path::new("/usr/share/dbus-1/system.d/org.freedesktop.hostname1.conf").exists() {
        assert!(root.check_own("org.freedesktop.hostname1").allowed);
        assert!(!user.check_own("org.freedesktop.hostname1").allowed);
        let hostname = [":1.9", "org.freedesktop.hostname1"];
        assert!(send(
            &user,
            call,
            Some("org.example.I"),
            Some("M"),
            &hostname,
            false
        ));
    }
    // Every rule remembers where it was written.
    assert!(c.policy.rules().all(|(_, _, r)| r.origin.is_some()));
}

/// `Config::session_default` is what the stock session.conf says, minus its includes.
#[test]
fn session_default_matches_stock_text() {
    let stock = parse(STOCK_SESSION_CONF).expect("stock text parses");
    let built_in = Config::session_default();
    assert_eq!(built_in.bus_type, stock.bus_type);
    assert_eq!(built_in.keep_umask, stock.keep_umask);
    assert_eq!(built_in.listen, stock.listen);
    assert_eq!(built_in.auth, stock.auth);
    assert_eq!(built_in.service_dirs, stock.service_dirs);
    assert_eq!(built_in.limits, stock.limits);
    assert_eq!((built_in.fork, built_in.syslog), (stock.fork, stock.syslog));
    let kinds = |c: &Config| -> Vec<(Context, bool, RuleKind)> {
        c.policy
            .rules()
            .map(|(_, ctx, r)| (ctx, r.allow, r.kind.clone()))
            .collect()
    };
    assert_eq!(kinds(&built_in), kinds(&stock));
}

#[test]
fn standard_paths() {
    let session = Config::standard_path(BusKind::Session);
    let system = Config::standard_path(BusKind::System);
    assert!(session.ends_with("session.conf") && system.ends_with("system.conf"));
    if Path::new("/usr/share/dbus-1/system.conf").exists() {
        assert_eq!(system, Path::new("/usr/share/dbus-1/system.conf"));
    }
}

/// dbus-daemon 1.14's `session.conf` as shipped, with its includes removed.
const STOCK_SESSION_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <standard_session_servicedirs />
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="service_start_timeout">120000</limit>
  <limit name="auth_timeout">240000</limit>
  <limit name="pending_fd_timeout">150000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_pending_service_starts">10000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"#;
