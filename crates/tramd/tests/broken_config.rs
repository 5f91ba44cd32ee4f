//! Configuration files the bus must refuse to start with. Each one makes dbus-daemon exit with
//! an error (checked first, so the table only holds files the reference refuses), and the bus
//! under test (`TRAM_TEST_BUS`, tramd by default) must refuse it too. tramd's message must say
//! where the problem is, as `FILE:LINE`.

mod common;

use common::daemon::{Launch, busconfig};
use common::*;

/// A broken file: the body of `<busconfig>` (its first line is the file's line 3, after the
/// doctype and the root element), other files it includes, and the file and line tramd's message
/// must name (`None` for the line when the XML parser decides where it noticed).
struct Broken {
    name: &'static str,
    body: &'static str,
    files: &'static [(&'static str, &'static str)],
    at: (&'static str, Option<u32>),
}

const LISTEN: &str = "<listen>unix:path=@DIR@/bus</listen>";

const BROKEN: &[Broken] = &[
    Broken {
        name: "unknown element",
        body: "@LISTEN@\n<bogus/>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "element in the wrong place",
        body: "@LISTEN@\n<auth>EXTERNAL</auth>\n<allow own=\"x\"/>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "nested policy",
        body: "@LISTEN@\n<policy context=\"default\">\n<policy context=\"default\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "send and receive attributes in one rule",
        body: "@LISTEN@\n<policy context=\"default\">\n\
               <allow send_destination=\"a.b\" receive_sender=\"c.d\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "own with user",
        body: "@LISTEN@\n<policy context=\"default\">\n<allow own=\"a.b\" user=\"root\"/>\n\
               </policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "own with own_prefix",
        body: "@LISTEN@\n<policy context=\"default\">\n\n<allow own=\"*\" own_prefix=\"a\"/>\n\
               </policy>",
        files: &[],
        at: ("bus.conf", Some(6)),
    },
    Broken {
        name: "send_destination with send_destination_prefix",
        body: "@LISTEN@\n<policy context=\"default\">\n\
               <allow send_destination=\"a.b\" send_destination_prefix=\"a\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "rule without attributes",
        body: "@LISTEN@\n<policy context=\"default\">\n<deny/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "unknown attribute",
        body: "@LISTEN@\n<policy context=\"default\">\n<allow frobnicate=\"x\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "bad message type",
        body: "@LISTEN@\n<policy context=\"default\">\n<allow send_type=\"foo\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "bad boolean",
        body: "@LISTEN@\n<policy context=\"default\">\n<allow eavesdrop=\"maybe\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "bad fd count",
        body: "@LISTEN@\n<policy context=\"default\">\n\
               <allow send_interface=\"a.b\" min_fds=\"x\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "member without interface or path",
        body: "@LISTEN@\n<policy context=\"default\">\n<deny send_member=\"M\"/>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "policy without a context",
        body: "@LISTEN@\n<policy>\n</policy>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "unknown policy context",
        body: "@LISTEN@\n<policy context=\"foo\">\n</policy>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "unknown limit",
        body: "@LISTEN@\n<limit name=\"max_foo\">1</limit>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "limit that is not a number",
        body: "@LISTEN@\n\n<limit name=\"max_message_size\">abc</limit>",
        files: &[],
        at: ("bus.conf", Some(5)),
    },
    Broken {
        name: "negative limit",
        body: "@LISTEN@\n<limit name=\"max_message_size\">-5</limit>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "limit without a name",
        body: "@LISTEN@\n<limit>5</limit>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "text inside an empty element",
        body: "@LISTEN@\n<fork>yes</fork>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "empty servicedir",
        body: "@LISTEN@\n<servicedir/>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "missing include",
        body: "@LISTEN@\n<include>missing.conf</include>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "include of itself",
        body: "@LISTEN@\n<include>bus.conf</include>",
        files: &[],
        at: ("bus.conf", Some(4)),
    },
    Broken {
        name: "error in an included file",
        body: "@LISTEN@\n<include>extra.conf</include>",
        files: &[(
            "extra.conf",
            "<busconfig>\n<policy context=\"default\">\n<allow send_type=\"bogus\"/>\n\
             </policy>\n</busconfig>\n",
        )],
        at: ("extra.conf", Some(3)),
    },
    Broken {
        name: "mismatched tag",
        body: "@LISTEN@\n<policy context=\"default\">\n</busconfig>",
        files: &[],
        at: ("bus.conf", None),
    },
    Broken {
        name: "wrong root element",
        body: "",
        files: &[],
        at: ("bus.conf", Some(2)),
    },
];

fn text(b: &Broken) -> String {
    if b.name == "wrong root element" {
        return "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                <notbusconfig>\n</notbusconfig>\n"
            .to_owned();
    }
    busconfig(&b.body.replace("@LISTEN@", LISTEN))
}

fn launch(kind: BusKind, b: &Broken) -> Launch {
    b.files
        .iter()
        .fold(Launch::new(kind).config(&text(b)), |l, (name, body)| {
            l.file(name, body)
        })
}

/// Whether `message` names `file` (by its full path) and, when given, `line`, as `FILE:LINE`.
fn names_place(message: &str, dir: &std::path::Path, (file, line): (&str, Option<u32>)) -> bool {
    let path = dir.join(file).display().to_string();
    match line {
        Some(line) => message.contains(&format!("{path}:{line}")),
        None => message.match_indices(&format!("{path}:")).any(|(at, m)| {
            message[at + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        }),
    }
}

#[test]
fn dbus_daemon_refuses_every_broken_file() {
    assert!(BROKEN.len() >= 10);
    for b in BROKEN {
        let out = launch(BusKind::DbusDaemon, b).run();
        assert!(
            !out.status.success() && out.stderr.contains("Failed to start message bus"),
            "dbus-daemon accepted {:?}: {out:#?}",
            b.name
        );
    }
}

#[test]
fn the_bus_refuses_every_broken_file_naming_file_and_line() {
    let kind = BusKind::from_env();
    let mut failures = Vec::new();
    for b in BROKEN {
        let out = launch(kind, b).run();
        if out.status.success() {
            failures.push(format!("{}: accepted (stdout {:?})", b.name, out.stdout));
            continue;
        }
        if !out.stdout.is_empty() {
            failures.push(format!(
                "{}: printed {:?} before failing",
                b.name, out.stdout
            ));
        }
        if kind == BusKind::Tramd && !names_place(&out.stderr, out.dir.path(), b.at) {
            failures.push(format!(
                "{}: the message does not name {}:{}: {:?}",
                b.name,
                b.at.0,
                b.at.1.map_or("LINE".to_owned(), |l| l.to_string()),
                out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{kind:?} and broken configuration files:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_missing_configuration_file_is_refused() {
    let kind = BusKind::from_env();
    let out = Launch::new(kind)
        .arg("--config-file=@DIR@/does-not-exist.conf")
        .run();
    assert!(!out.status.success(), "{kind:?}: {out:#?}");
    assert!(
        out.stderr.contains("does-not-exist.conf"),
        "{kind:?} does not name the file: {:?}",
        out.stderr
    );
}

#[test]
fn configuration_dbus_daemon_only_warns_about_is_accepted() {
    // Unknown users and groups drop their policies or rules with a warning; an unreadable
    // <includedir> is skipped; unknown limits values that are merely large are clamped.
    let body = format!(
        "{LISTEN}\n<policy context=\"default\">\n<allow user=\"*\"/>\n<allow own=\"*\"/>\n\
         <allow send_destination=\"*\"/>\n<allow receive_sender=\"*\"/>\n\
         <allow user=\"nosuchuserxyz\"/>\n<deny group=\"nosuchgroupxyz\"/>\n</policy>\n\
         <policy user=\"nosuchuserxyz\">\n<deny own=\"*\"/>\n</policy>\n\
         <policy group=\"nosuchgroupxyz\">\n<deny own=\"*\"/>\n</policy>\n\
         <includedir>@DIR@/no-such-dir.d</includedir>\n\
         <allow_anonymous/>\n<keep_umask/>\n<syslog/>\n"
    );
    for kind in [BusKind::DbusDaemon, BusKind::from_env()] {
        let bus = Launch::new(kind)
            .config(&busconfig(&body))
            .arg("--nosyslog")
            .start();
        let mut c = bus.raw();
        assert_eq!(c.request_name("com.example.Fine", 4), 1, "{kind:?}");
    }
}
