//! Service activation end to end: `.service` files in a directory of the bus's own, services
//! that the bus starts (a Python script speaking the protocol on the socket, see
//! `common::boot`), and the errors callers get when a start fails.
//!
//! Every observable behaviour is checked on dbus-daemon first and then on the bus under test
//! (`TRAM_TEST_BUS`, tramd by default), with the same expectations: error names, error texts
//! (but for the time-out's wording), which calls are delivered and in what order. What only
//! tramd can show (services run as another user without dbus-daemon's setuid helper: in
//! process while the bus is root, through its launch helper once it dropped root) runs on tramd
//! alone.

mod common;

use std::time::{Duration, Instant};

use common::boot::{self, SERVICE_PY, SERVICE_SCRIPT};
use common::daemon::{Daemon, EchoService, Launch, busconfig, open_config};
use common::*;

/// `service_start_timeout` of the test buses: short, so the time-out case is quick, and long
/// enough that every other case is answered well before it.
const START_TIMEOUT: Duration = Duration::from_millis(1500);

const SPAWN_CHILD_EXITED: &str = "org.freedesktop.DBus.Error.Spawn.ChildExited";
const SPAWN_CHILD_SIGNALED: &str = "org.freedesktop.DBus.Error.Spawn.ChildSignaled";
const SPAWN_EXEC_FAILED: &str = "org.freedesktop.DBus.Error.Spawn.ExecFailed";
const SPAWN_FILE_INVALID: &str = "org.freedesktop.DBus.Error.Spawn.FileInvalid";
const SPAWN_FAILED: &str = "org.freedesktop.DBus.Error.Spawn.Failed";
const TIMED_OUT: &str = "org.freedesktop.DBus.Error.TimedOut";
const ACTIVATABLE_CHANGED: &str =
    "type='signal',interface='org.freedesktop.DBus',member='ActivatableServicesChanged'";

fn kinds() -> [BusKind; 2] {
    [BusKind::DbusDaemon, BusKind::from_env()]
}

/// A session bus on `@DIR@/bus` whose services are in `@DIR@/services`, with the service script
/// in `@DIR@`, the given service files (name, text) and extra arguments.
fn start(kind: BusKind, services: &[(&str, String)], args: &[&str]) -> Daemon {
    let config = open_config(&format!(
        "<servicedir>@DIR@/services</servicedir>\n\
         <limit name=\"service_start_timeout\">{}</limit>",
        START_TIMEOUT.as_millis()
    ));
    let mut launch = Launch::new(kind)
        .config(&config)
        .file(SERVICE_SCRIPT, SERVICE_PY);
    for (name, text) in services {
        launch = launch.file(&format!("services/{name}"), text);
    }
    for arg in args {
        launch = launch.arg(arg);
    }
    launch.start()
}

fn call(destination: &str, member: &str, args: Vec<Value>) -> RawMessage {
    RawMessage::call(Some(destination), "/", Some("org.example.Test"), member).args(args)
}

/// The string a service answered, or the error, described.
fn answer(m: &Msg) -> Result<String, String> {
    if m.is_return() {
        return Ok(m.str_arg(0).unwrap_or_default().to_owned());
    }
    Err(m.describe())
}

#[test]
fn a_started_service_receives_the_waiting_calls_in_order() {
    for kind in kinds() {
        let services = [(
            "echo.service",
            boot::service_file(
                "org.example.Echo",
                &boot::serve_exec("@DIR@", "org.example.Echo"),
            ),
        )];
        let bus = start(kind, &services, &[]);
        let mut c = bus.raw();
        let first = c.send(&call("org.example.Echo", "Ping", vec![]));
        let second = c.send(&call(
            "org.example.Echo",
            "Env",
            vec![Value::str("DBUS_STARTER_BUS_TYPE")],
        ));
        // Nothing but the two replies is addressed to this client, so they are its next
        // messages, in the order of the calls.
        let replies = [c.recv(), c.recv()];
        assert_eq!(
            replies.each_ref().map(|m| m.reply_serial),
            [Some(first), Some(second)],
            "{kind:?}: {:?}",
            replies.each_ref().map(Msg::describe)
        );
        assert_eq!(answer(&replies[0]), Ok("pong".to_owned()), "{kind:?}");
        assert_eq!(answer(&replies[1]), Ok("session".to_owned()), "{kind:?}");
        // Running now: DBUS_START_REPLY_ALREADY_RUNNING.
        let started = c.bus_ok(
            "StartServiceByName",
            vec![Value::str("org.example.Echo"), Value::U32(0)],
        );
        assert_eq!(started, [Value::U32(2)], "{kind:?}");
    }
}

/// One way of failing to start: the service's `Exec`, and what every waiting caller gets.
struct Failure {
    name: &'static str,
    exec: String,
    error: &'static str,
    /// The error's text; `None` where tramd words it differently (the time-out).
    text: Option<&'static str>,
    /// The answer comes from the time-out, not from the process.
    timed_out: bool,
}

#[test]
fn failed_starts_answer_every_waiting_caller_with_their_error() {
    let failures = [
        Failure {
            name: "org.example.Exits",
            exec: "/bin/sh -c 'exit 3'".to_owned(),
            error: SPAWN_CHILD_EXITED,
            text: Some("Process org.example.Exits exited with status 3"),
            timed_out: false,
        },
        Failure {
            name: "org.example.Killed",
            exec: "/bin/sh -c 'kill -9 $$'".to_owned(),
            error: SPAWN_CHILD_SIGNALED,
            text: Some("Process org.example.Killed received signal 9"),
            timed_out: false,
        },
        Failure {
            name: "org.example.Missing",
            exec: "@DIR@/no-such-program --flag".to_owned(),
            error: SPAWN_EXEC_FAILED,
            text: Some("Failed to execute program org.example.Missing: No such file or directory"),
            timed_out: false,
        },
        Failure {
            name: "org.example.Idle",
            exec: boot::idle_exec("@DIR@"),
            error: TIMED_OUT,
            text: None,
            timed_out: true,
        },
        // A clean exit is not a failure: the service may live on in another process, and the
        // time-out decides.
        Failure {
            name: "org.example.Quits",
            exec: "/bin/true".to_owned(),
            error: TIMED_OUT,
            text: None,
            timed_out: true,
        },
    ];
    let services: Vec<(String, String)> = failures
        .iter()
        .map(|f| {
            (
                format!("{}.service", f.name),
                boot::service_file(f.name, &f.exec),
            )
        })
        .collect();
    let services: Vec<(&str, String)> = services
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    for kind in kinds() {
        let bus = start(kind, &services, &[]);
        let mut caller = bus.raw();
        let mut starter = bus.raw();
        for f in &failures {
            let begun = Instant::now();
            // Two callers wait on one start: a message for the name and StartServiceByName.
            let call_serial = caller.send(&call(f.name, "Ping", vec![]));
            let start_serial = starter.send(&RawMessage::bus_call(
                "StartServiceByName",
                vec![Value::str(f.name), Value::U32(0)],
            ));
            let replies = [
                caller.wait_reply(call_serial),
                starter.wait_reply(start_serial),
            ];
            let elapsed = begun.elapsed();
            for reply in &replies {
                assert!(
                    reply.is_error(f.error),
                    "{kind:?} {}: {}",
                    f.name,
                    reply.describe()
                );
                if let Some(text) = f.text {
                    assert_eq!(reply.str_arg(0), Some(text), "{kind:?} {}", f.name);
                }
            }
            if f.timed_out {
                assert!(
                    elapsed >= START_TIMEOUT - Duration::from_millis(50),
                    "{kind:?} {}: answered after {elapsed:?}, before the time-out",
                    f.name
                );
            } else {
                assert!(
                    elapsed < START_TIMEOUT,
                    "{kind:?} {}: answered after {elapsed:?}, not at once",
                    f.name
                );
            }
        }
        // The bus is none the worse.
        assert!(caller.bus_ok("GetId", vec![]).len() == 1);
    }
}

#[test]
fn the_activation_environment_reaches_started_services() {
    for kind in kinds() {
        let services = [(
            "env.service",
            boot::service_file(
                "org.example.Env",
                &boot::serve_exec("@DIR@", "org.example.Env"),
            ),
        )];
        let bus = start(kind, &services, &[]);
        let mut c = bus.raw();
        let env = Value::Array(
            "{ss}".into(),
            vec![Value::Entry(
                Box::new(Value::str("TRAM_TEST_VALUE")),
                Box::new(Value::str("from the bus")),
            )],
        );
        c.bus_ok("UpdateActivationEnvironment", vec![env]);
        let mut var = |name: &str| {
            let reply = c.call(call("org.example.Env", "Env", vec![Value::str(name)]));
            answer(&reply).unwrap_or_else(|e| panic!("{kind:?} Env({name}): {e}"))
        };
        assert_eq!(var("TRAM_TEST_VALUE"), "from the bus", "{kind:?}");
        assert_eq!(var("DBUS_STARTER_ADDRESS"), bus.address(), "{kind:?}");
        assert_eq!(var("DBUS_SESSION_BUS_ADDRESS"), bus.address(), "{kind:?}");
        assert_eq!(var("DBUS_STARTER_BUS_TYPE"), "session", "{kind:?}");
    }
}

#[test]
fn a_bus_with_a_service_helper_keeps_its_activation_environment() {
    // Services started through a <servicehelper> run as another user, started by root: a
    // client must not choose their environment, whatever the bus type.
    for kind in kinds() {
        let config = open_config(
            "<servicehelper>/usr/lib/dbus-1.0/dbus-daemon-launch-helper</servicehelper>",
        );
        let bus = Launch::new(kind).config(&config).start();
        let mut c = bus.raw();
        let env = Value::Array(
            "{ss}".into(),
            vec![Value::Entry(
                Box::new(Value::str("LD_PRELOAD")),
                Box::new(Value::str("/tmp/x.so")),
            )],
        );
        c.call_bus("UpdateActivationEnvironment", vec![env])
            .expect_error(err::ACCESS_DENIED);
    }
}

#[test]
fn service_files_added_and_removed_are_noticed() {
    for kind in kinds() {
        // The directory exists from the start (dbus-daemon watches only existing ones).
        let bus = start(kind, &[("README", "no services yet".to_owned())], &[]);
        let mut c = bus.raw();
        c.add_match(ACTIVATABLE_CHANGED);
        let activatable = |c: &mut RawClient| -> Vec<String> {
            let body = c.bus_ok("ListActivatableNames", vec![]);
            match body.first() {
                Some(Value::Array(_, names)) => names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect(),
                other => panic!("ListActivatableNames answered {other:?}"),
            }
        };
        assert!(!activatable(&mut c).iter().any(|n| n == "org.example.Added"));

        // Written elsewhere and moved in whole, as package managers do.
        let file = bus.dir().join("services/org.example.Added.service");
        let staged = bus.dir().join("staged");
        let dir = bus.dir().display().to_string();
        let text = boot::service_file(
            "org.example.Added",
            &boot::serve_exec(&dir, "org.example.Added"),
        );
        std::fs::write(&staged, text).expect("staging the service file");
        std::fs::rename(&staged, &file).expect("moving the service file in");
        c.wait_for(|m| m.is_bus_signal("ActivatableServicesChanged"));
        assert!(
            activatable(&mut c).iter().any(|n| n == "org.example.Added"),
            "{kind:?}"
        );
        let reply = c.call(call("org.example.Added", "Ping", vec![]));
        assert_eq!(answer(&reply), Ok("pong".to_owned()), "{kind:?}");

        std::fs::remove_file(&file).expect("removing the service file");
        c.wait_for(|m| m.is_bus_signal("ActivatableServicesChanged"));
        assert!(
            !activatable(&mut c).iter().any(|n| n == "org.example.Added"),
            "{kind:?}"
        );
    }
}

#[test]
fn a_service_directory_created_after_start_is_watched() {
    // dbus-daemon 1.14 only watches directories that exist when it reads them.
    let bus = start(BusKind::Tramd, &[], &[]);
    let mut c = bus.raw();
    c.add_match(ACTIVATABLE_CHANGED);
    let dir = bus.dir().join("services");
    assert!(!dir.exists());
    std::fs::create_dir(&dir).expect("creating the services directory");
    let text = boot::service_file("org.example.Later", "/bin/true");
    let staged = bus.dir().join("staged");
    std::fs::write(&staged, text).expect("staging the service file");
    std::fs::rename(&staged, dir.join("later.service")).expect("moving the service file in");
    c.wait_for(|m| m.is_bus_signal("ActivatableServicesChanged"));
    let body = c.bus_ok("ListActivatableNames", vec![]);
    assert!(
        matches!(body.first(), Some(Value::Array(_, names))
            if names.iter().any(|n| n.as_str() == Some("org.example.Later"))),
        "{body:?}"
    );
}

/// The unit the test services name, and what the stand-in for systemd answers.
const UNIT: &str = "tram-test-unit.service";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const SYSTEMD: &str = "org.freedesktop.systemd1";
const ACTIVATOR: &str = "org.freedesktop.systemd1.Activator";

/// Waits for the bus's ActivationRequest on the stand-in for systemd; gives the unit.
fn activation_request(systemd: &mut RawClient) -> String {
    let request = systemd.wait_for(|m| m.is_signal(ACTIVATOR, "ActivationRequest"));
    assert_eq!(
        request.sender.as_deref(),
        Some(BUS),
        "{}",
        request.describe()
    );
    assert_eq!(
        request.destination.as_deref(),
        Some(SYSTEMD),
        "{}",
        request.describe()
    );
    assert_eq!(
        request.path.as_deref(),
        Some(BUS_PATH),
        "{}",
        request.describe()
    );
    request.str_arg(0).unwrap_or_default().to_owned()
}

fn activation_failure(systemd: &mut RawClient, unit: &str, error: &str, text: &str) {
    systemd.send(
        &RawMessage::signal(BUS_PATH, ACTIVATOR, "ActivationFailure")
            .destination(BUS)
            .args(vec![Value::str(unit), Value::str(error), Value::str(text)]),
    );
}

#[test]
fn systemd_activation_asks_systemd_and_relays_its_failure() {
    let service =
        format!("[D-BUS Service]\nName=org.example.Unit\nExec=/bin/false\nSystemdService={UNIT}\n");
    for kind in kinds() {
        let services = [("org.example.Unit.service", service.clone())];
        let bus = start(kind, &services, &["--systemd-activation"]);
        let mut systemd = bus.raw();
        assert_eq!(systemd.request_name(SYSTEMD, 4), 1);
        let mut caller = bus.raw();

        // A failure systemd reports reaches the caller as systemd worded it.
        let serial = caller.send(&call("org.example.Unit", "Ping", vec![]));
        assert_eq!(activation_request(&mut systemd), UNIT, "{kind:?}");
        let text = format!("Unit {UNIT} not found.");
        activation_failure(&mut systemd, UNIT, NO_SUCH_UNIT, &text);
        let reply = caller.wait_reply(serial);
        assert!(
            reply.is_error(NO_SUCH_UNIT),
            "{kind:?}: {}",
            reply.describe()
        );
        assert_eq!(reply.str_arg(0), Some(text.as_str()), "{kind:?}");

        // A unit that starts: the service takes its name, and the waiting call reaches it.
        let serial = caller.send(&call("org.example.Unit", "Echo", vec![Value::str("hi")]));
        assert_eq!(activation_request(&mut systemd), UNIT, "{kind:?}");
        let _service = EchoService::spawn(&bus, Some("org.example.Unit"));
        let reply = caller.wait_reply(serial);
        assert_eq!(reply.ok(), [Value::str("hi")], "{kind:?}");
    }
}

#[test]
fn failures_from_anyone_but_systemd_are_ignored() {
    let service =
        format!("[D-BUS Service]\nName=org.example.Unit\nExec=/bin/false\nSystemdService={UNIT}\n");
    for kind in kinds() {
        let services = [("org.example.Unit.service", service.clone())];
        let bus = start(kind, &services, &["--systemd-activation"]);
        let mut systemd = bus.raw();
        assert_eq!(systemd.request_name(SYSTEMD, 4), 1);
        let mut impostor = bus.raw();
        let mut caller = bus.raw();
        let serial = caller.send(&call("org.example.Unit", "Ping", vec![]));
        assert_eq!(activation_request(&mut systemd), UNIT);
        activation_failure(&mut impostor, UNIT, NO_SUCH_UNIT, "forged");
        // A round trip through the impostor's connection: its signal has been handled.
        impostor.bus_ok("GetId", vec![]);
        activation_failure(&mut systemd, UNIT, NO_SUCH_UNIT, "real");
        let reply = caller.wait_reply(serial);
        assert_eq!(
            reply.str_arg(0),
            Some("real"),
            "{kind:?}: {}",
            reply.describe()
        );
    }
}

#[test]
fn a_service_with_a_user_runs_as_that_user() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: starting a service as another user needs root");
        return;
    }
    // A system bus as the stock system.conf sets one up: services run as their User=, which
    // dbus-daemon delegates to its setuid helper and tramd does itself. Only tramd can be
    // pointed at a test directory, so this runs on tramd alone.
    let config = busconfig(
        "<type>system</type>\n<listen>unix:path=@DIR@/bus</listen>\n<auth>EXTERNAL</auth>\n\
         <servicehelper>/usr/lib/dbus-1.0/dbus-daemon-launch-helper</servicehelper>\n\
         <servicedir>@DIR@/services</servicedir>\n\
         <policy context=\"default\">\n<allow user=\"*\"/>\n<allow own=\"*\"/>\n\
         <allow send_destination=\"*\" eavesdrop=\"true\"/>\n<allow eavesdrop=\"true\"/>\n</policy>",
    );
    let serve = boot::serve_exec("@DIR@", "org.example.AsNobody");
    let bus = Launch::new(BusKind::Tramd)
        .config(&config)
        .file(SERVICE_SCRIPT, SERVICE_PY)
        .file(
            "services/org.example.AsNobody.service",
            &format!(
                "{}User=nobody\n",
                boot::service_file("org.example.AsNobody", &serve)
            ),
        )
        // On the system bus only NAME.service provides NAME.
        .file(
            "services/misnamed.service",
            &format!(
                "{}User=nobody\n",
                boot::service_file("org.example.Misnamed", &serve)
            ),
        )
        .start();
    let mut c = bus.raw();
    let mut ask = |member: &str, args: Vec<Value>| {
        let reply = c.call(call("org.example.AsNobody", member, args));
        answer(&reply).unwrap_or_else(|e| panic!("{member}: {e}; bus stderr:\n{}", bus.stderr()))
    };
    assert_eq!(ask("Uid", vec![]), "65534");
    // A clean environment, as dbus-daemon's helper gives: no PATH, the bus's address.
    assert_eq!(ask("Env", vec![Value::str("PATH")]), "");
    assert_eq!(
        ask("Env", vec![Value::str("DBUS_STARTER_BUS_TYPE")]),
        "system"
    );
    assert_eq!(
        ask("Env", vec![Value::str("DBUS_SYSTEM_BUS_ADDRESS")]),
        bus.address()
    );
    let uid = c.bus_ok(
        "GetConnectionUnixUser",
        vec![Value::str("org.example.AsNobody")],
    );
    assert_eq!(uid, [Value::U32(daemon::NOBODY.0)]);
    let body = c.bus_ok("ListActivatableNames", vec![]);
    let Some(Value::Array(_, names)) = body.first() else {
        panic!("ListActivatableNames answered {body:?}");
    };
    assert!(
        !names
            .iter()
            .any(|n| n.as_str() == Some("org.example.Misnamed")),
        "{names:?}"
    );
}

#[test]
fn systemd_activation_waits_for_systemd_to_connect() {
    let service =
        format!("[D-BUS Service]\nName=org.example.Unit\nExec=/bin/false\nSystemdService={UNIT}\n");
    for kind in kinds() {
        let services = [("org.example.Unit.service", service.clone())];
        let bus = start(kind, &services, &["--systemd-activation"]);
        let mut caller = bus.raw();
        let serial = caller.send(&call("org.example.Unit", "Ping", vec![]));
        caller.bus_ok("GetId", vec![]);
        let mut systemd = bus.raw();
        assert_eq!(systemd.request_name(SYSTEMD, 4), 1);
        assert_eq!(activation_request(&mut systemd), UNIT, "{kind:?}");
        activation_failure(&mut systemd, UNIT, NO_SUCH_UNIT, "not found");
        let reply = caller.wait_reply(serial);
        assert!(
            reply.is_error(NO_SUCH_UNIT),
            "{kind:?}: {}",
            reply.describe()
        );
    }
}

/// An account: its name and uid.
type Account = (&'static str, u32);

/// The accounts a system bus that drops root is tested with: the bus's `<user>` (`messagebus`,
/// or `nobody` where there is none) and another one for its services (`daemon`); `None` (the
/// test is skipped, saying why) when not root or an account is missing.
fn accounts_for_dropping_root() -> Option<(Account, Account)> {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: a bus that drops root must start as root");
        return None;
    }
    let bus = ["messagebus", "nobody"]
        .into_iter()
        .find_map(|name| Some((name, uid_of(name)?)));
    let service = ["daemon", "nobody"]
        .into_iter()
        .find_map(|name| Some((name, uid_of(name)?)))
        .filter(|service| Some(service.0) != bus.map(|b| b.0));
    match (bus, service) {
        (Some(bus), Some(service)) => Some((bus, service)),
        _ => {
            eprintln!("skipped: /etc/passwd lacks messagebus or nobody, and daemon");
            None
        }
    }
}

/// The uid of the account `name` in `/etc/passwd`.
fn uid_of(name: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// A system bus as the stock system.conf sets one up on a machine: started as root, it drops to
/// `bus_user` and starts services as their `User=` (`<servicehelper>`), so through its launch
/// helper; the services are `(file name, text)` in `@DIR@/services`.
fn system_bus_dropping_root(bus_user: &str, services: &[(String, String)]) -> Daemon {
    let config = busconfig(&format!(
        "<type>system</type>\n<user>{bus_user}</user>\n<listen>unix:path=@DIR@/bus</listen>\n\
         <auth>EXTERNAL</auth>\n\
         <servicehelper>/usr/lib/dbus-1.0/dbus-daemon-launch-helper</servicehelper>\n\
         <servicedir>@DIR@/services</servicedir>\n\
         <limit name=\"service_start_timeout\">{}</limit>\n\
         <policy context=\"default\">\n<allow user=\"*\"/>\n<allow own=\"*\"/>\n\
         <allow send_destination=\"*\" eavesdrop=\"true\"/>\n<allow eavesdrop=\"true\"/>\n</policy>",
        START_TIMEOUT.as_millis()
    ));
    let mut launch = Launch::new(BusKind::Tramd)
        .config(&config)
        .file(SERVICE_SCRIPT, SERVICE_PY);
    for (name, text) in services {
        launch = launch.file(&format!("services/{name}"), text);
    }
    launch.start()
}

/// The service file `NAME.service` for `name` running `exec`, with `User=user` when given.
/// [`system_bus_dropping_root`] with one service, `name`, run as `service_user` by the test
/// service script.
fn serving_as(bus_user: &str, name: &str, service_user: &str) -> Daemon {
    let services = [user_service(
        name,
        &boot::serve_exec("@DIR@", name),
        Some(service_user),
    )];
    system_bus_dropping_root(bus_user, &services)
}

fn user_service(name: &str, exec: &str, user: Option<&str>) -> (String, String) {
    let user = user.map(|u| format!("User={u}\n")).unwrap_or_default();
    (
        format!("{name}.service"),
        format!("{}{user}", boot::service_file(name, exec)),
    )
}

/// The processes whose parent is `parent`: (pid, command name).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid …; comm may hold spaces and parentheses.
            let (head, tail) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_owned();
            let ppid: u32 = tail.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some((pid, comm))
        })
        .collect()
}

/// The real uid of process `pid`, from `/proc`.
fn uid_of_process(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The bus's launch helper: its pid, checked to be its only child named so, and root. (It
/// takes its name once set up, which may be after the bus printed its address.)
fn launch_helper_of(bus: &Daemon) -> u32 {
    let helpers = || -> Vec<u32> {
        children_of(bus.pid())
            .into_iter()
            .filter(|(_, comm)| comm == "tramd-launcher")
            .map(|(pid, _)| pid)
            .collect()
    };
    boot::wait_until(DEADLINE, || !helpers().is_empty());
    let [helper] = helpers()[..] else {
        panic!(
            "one launch helper expected among the bus's children: {:?}",
            children_of(bus.pid())
        );
    };
    assert_eq!(
        uid_of_process(helper),
        Some(0),
        "the launch helper keeps root"
    );
    helper
}

#[test]
fn a_bus_that_dropped_root_starts_user_services_through_its_helper() {
    let Some(((bus_user, bus_uid), (service_user, service_uid))) = accounts_for_dropping_root()
    else {
        return;
    };
    let name = "org.example.AsOther";
    let bus = serving_as(bus_user, name, service_user);
    let mut c = bus.raw();
    // The bus itself runs as its <user> (it serves clients only once it changed); only the
    // helper keeps root.
    c.bus_ok("GetId", vec![]);
    assert_eq!(uid_of_process(bus.pid()), Some(bus_uid), "{}", bus.stderr());
    launch_helper_of(&bus);
    let driver_uid = c.bus_ok("GetConnectionUnixUser", vec![Value::str(BUS)]);
    assert_eq!(driver_uid, [Value::U32(bus_uid)]);

    let mut ask = |member: &str, args: Vec<Value>| {
        let reply = c.call(call(name, member, args));
        answer(&reply).unwrap_or_else(|e| panic!("{member}: {e}; bus stderr:\n{}", bus.stderr()))
    };
    assert_eq!(ask("Uid", vec![]), service_uid.to_string());
    // Nothing of the bus's environment: only what the helper was forked with.
    assert_eq!(ask("Env", vec![Value::str("PATH")]), "");
    assert_eq!(
        ask("Env", vec![Value::str("DBUS_STARTER_BUS_TYPE")]),
        "system"
    );
    assert_eq!(
        ask("Env", vec![Value::str("DBUS_SYSTEM_BUS_ADDRESS")]),
        bus.address()
    );
    assert_eq!(
        ask("Env", vec![Value::str("DBUS_STARTER_ADDRESS")]),
        bus.address()
    );
    let uid = c.bus_ok("GetConnectionUnixUser", vec![Value::str(name)]);
    assert_eq!(uid, [Value::U32(service_uid)]);
    let started = c.bus_ok("StartServiceByName", vec![Value::str(name), Value::U32(0)]);
    assert_eq!(started, [Value::U32(2)], "already running");
}

#[test]
fn failed_starts_through_the_helper_answer_with_their_cause() {
    let Some(((bus_user, _), (service_user, _))) = accounts_for_dropping_root() else {
        return;
    };
    let failures = [
        (
            user_service(
                "org.example.NoSuchUser",
                "/bin/true",
                Some("tram-no-such-user"),
            ),
            SPAWN_FILE_INVALID,
            "Cannot start org.example.NoSuchUser: user \"tram-no-such-user\" does not exist",
        ),
        (
            user_service("org.example.NoUser", "/bin/true", None),
            SPAWN_FILE_INVALID,
            "The service file for org.example.NoUser does not name a User",
        ),
        (
            user_service(
                "org.example.Exits",
                "/bin/sh -c 'exit 3'",
                Some(service_user),
            ),
            SPAWN_CHILD_EXITED,
            "Process org.example.Exits exited with status 3",
        ),
        (
            user_service(
                "org.example.Missing",
                "@DIR@/no-such-program",
                Some(service_user),
            ),
            SPAWN_EXEC_FAILED,
            "Failed to execute program org.example.Missing: No such file or directory",
        ),
    ];
    let services: Vec<(String, String)> = failures.iter().map(|(s, ..)| s.clone()).collect();
    let bus = system_bus_dropping_root(bus_user, &services);
    let mut caller = bus.raw();
    let mut starter = bus.raw();
    for ((file, _), error, text) in &failures {
        let name = file.trim_end_matches(".service");
        let begun = Instant::now();
        // Two callers wait on one start: a message for the name and StartServiceByName.
        let call_serial = caller.send(&call(name, "Ping", vec![]));
        let start_serial = starter.send(&RawMessage::bus_call(
            "StartServiceByName",
            vec![Value::str(name), Value::U32(0)],
        ));
        for reply in [
            caller.wait_reply(call_serial),
            starter.wait_reply(start_serial),
        ] {
            assert!(
                reply.is_error(error),
                "{name}: {}; bus stderr:\n{}",
                reply.describe(),
                bus.stderr()
            );
            assert_eq!(reply.str_arg(0), Some(*text), "{name}");
        }
        assert!(
            begun.elapsed() < START_TIMEOUT,
            "{name}: answered after {:?}, not at once",
            begun.elapsed()
        );
    }
    launch_helper_of(&bus);
}

#[test]
fn a_stopping_bus_reaps_its_helper() {
    let Some(((bus_user, _), _)) = accounts_for_dropping_root() else {
        return;
    };
    let mut bus = system_bus_dropping_root(bus_user, &[]);
    let helper = launch_helper_of(&bus);
    bus.sigterm();
    assert!(
        bus.wait_exit(DEADLINE).is_some(),
        "the bus did not stop; stderr:\n{}",
        bus.stderr()
    );
    // Reaped by the bus before it exited: neither running nor a zombie left to init.
    assert!(
        !std::path::Path::new(&format!("/proc/{helper}")).exists(),
        "the launch helper outlived the bus"
    );
}

#[test]
fn a_bus_whose_helper_died_fails_user_services() {
    let Some(((bus_user, _), (service_user, _))) = accounts_for_dropping_root() else {
        return;
    };
    let name = "org.example.AfterHelper";
    let bus = serving_as(bus_user, name, service_user);
    let helper = launch_helper_of(&bus);
    let pid = rustix::process::Pid::from_raw(helper as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("killing the helper");
    // Gone from /proc once the bus has reaped it.
    assert!(
        boot::wait_until(DEADLINE, || !std::path::Path::new(&format!(
            "/proc/{helper}"
        ))
        .exists()),
        "the bus did not reap its launch helper"
    );
    let mut c = bus.raw();
    for _ in 0..2 {
        let reply = c.call(call(name, "Ping", vec![]));
        assert!(reply.is_error(SPAWN_FAILED), "{}", reply.describe());
        let text = reply.str_arg(0).unwrap_or_default();
        assert!(
            text.starts_with(&format!(
                "Cannot start {name}: the launch helper is not running ("
            )),
            "{text}"
        );
    }
    // Said once in the log, and the bus serves on.
    assert_eq!(
        bus.stderr().matches("the launch helper stopped").count(),
        1,
        "{}",
        bus.stderr()
    );
    assert_eq!(c.bus_ok("GetId", vec![]).len(), 1);
}
