//! Early boot: the bus under a service manager and as a wrapper.
//!
//! * Socket activation: `systemd-socket-activate` holds the listening sockets and starts the bus
//!   on the first connection with `LISTEN_FDS`; the bus serves that connection and prints the
//!   sockets' addresses as dbus-daemon does.
//! * Readiness: with `NOTIFY_SOCKET` the bus reports `READY=1` once it accepts connections,
//!   `RELOADING=1` and `READY=1` around a reload, and `STOPPING=1` when it exits.
//! * `tramd run-session`, against `dbus-run-session`: the program gets a bus of its own, the run
//!   ends with the program's status, and the bus is gone afterwards.
//! * Dependencies: the tramd executable needs nothing but the C library (`ldd`).
//!
//! Each comparable behaviour is checked on dbus-daemon (or dbus-run-session) first and then on
//! the bus under test (`TRAM_TEST_BUS`, tramd by default).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::boot::{NotifySocket, Spawned, wait_until};
use common::daemon::{self, Launch, WorkDir, busconfig, open_config};
use common::*;
use rustix::process::Signal;

const TRAMD: &str = env!("CARGO_BIN_EXE_tramd");

fn kinds() -> [BusKind; 2] {
    [BusKind::DbusDaemon, BusKind::from_env()]
}

/// A permissive session configuration listening on `listen`, written to `dir/bus.conf`.
fn write_config(dir: &WorkDir, listen: &str) -> String {
    let policy = "<policy context=\"default\">\n<allow user=\"*\"/>\n\
                  <allow send_destination=\"*\" eavesdrop=\"true\"/>\n<allow eavesdrop=\"true\"/>\n\
                  <allow own=\"*\"/>\n</policy>";
    let text = busconfig(&format!(
        "<type>session</type>\n<listen>{listen}</listen>\n<auth>EXTERNAL</auth>\n{policy}"
    ));
    dir.write("bus.conf", &text).display().to_string()
}

/// A registered raw client on `socket`.
fn client(socket: &Path) -> RawClient {
    let mut c = RawClient::connect(socket, None);
    c.authenticate(true);
    c.hello();
    c
}

/// Whether `address` is `prefix` followed by a GUID (32 hex digits) and nothing else.
fn has_guid(address: &str, prefix: &str) -> bool {
    address
        .strip_prefix(prefix)
        .is_some_and(|guid| guid.len() == 32 && guid.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn tramd_links_only_the_c_library() {
    let output = Command::new("ldd").arg(TRAMD).output().expect("run ldd");
    assert!(output.status.success(), "ldd {TRAMD}: {output:?}");
    let listing = String::from_utf8_lossy(&output.stdout);
    let libraries: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        libraries.iter().any(|lib| lib.starts_with("libc.so")),
        "{listing}"
    );
    let unexpected: Vec<&&str> = libraries
        .iter()
        .filter(|lib| {
            !(lib.starts_with("libc.so")
                || lib.starts_with("linux-vdso.so")
                || lib.contains("/ld-linux")
                || lib.starts_with("ld-linux"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "tramd links more than libc: {unexpected:?}\n{listing}"
    );
}

#[test]
fn socket_activation_serves_the_passed_sockets() {
    for kind in kinds() {
        // `systemd:` on the command line, then as the configuration's <listen>.
        for (n, in_config) in [false, true].into_iter().enumerate() {
            let dir = WorkDir::new();
            let socket = dir.path().join("bus");
            let config = if in_config {
                write_config(&dir, "systemd:")
            } else {
                write_config(&dir, &format!("unix:path={}/unused", dir.path().display()))
            };
            let second_socket = dir.path().join("bus2");
            let mut command = Command::new("systemd-socket-activate");
            command.arg("-l").arg(&socket).arg("-l").arg(&second_socket);
            let mut expected = format!(
                "unix:path={};unix:path={}",
                socket.display(),
                second_socket.display()
            );
            // dbus-daemon 1.14 prints an abstract socket's name with whatever follows it in
            // the address buffer; tramd prints the name.
            if kind == BusKind::Tramd {
                let name = format!("tramd-test-{}-{n}", std::process::id());
                command.arg("-l").arg(format!("@{name}"));
                expected.push_str(&format!(";unix:abstract={name}"));
            }
            command
                .arg(daemon::program(kind))
                .arg(format!("--config-file={config}"))
                .args(["--nofork", "--print-address=1"]);
            if !in_config {
                command.arg("--address=systemd:");
            }
            let sockets = if kind == BusKind::Tramd { 3 } else { 2 };
            let mut wrapper = Spawned::start(command);
            // systemd-socket-activate reports each socket once it listens (the file exists
            // from bind, a moment earlier).
            assert!(
                wait_until(DEADLINE, || {
                    wrapper.stderr().matches("Listening on ").count() == sockets
                }),
                "{kind:?}: systemd-socket-activate did not listen: {}",
                wrapper.stderr()
            );
            // The first connection starts the bus, which then serves it.
            let mut c = client(&socket);
            let address = wrapper
                .next_line()
                .unwrap_or_else(|| panic!("{kind:?}: no address; {}", wrapper.stderr()));
            let prefix = format!("{expected},guid=");
            assert!(has_guid(&address, &prefix), "{kind:?} printed {address:?}");
            assert_eq!(c.bus_ok("GetId", vec![]).len(), 1);
            // The bus holds every socket: more clients are served on each.
            let mut second = client(&second_socket);
            assert_eq!(second.bus_ok("GetId", vec![]), c.bus_ok("GetId", vec![]));
        }
    }
}

#[test]
fn the_systemd_address_without_passed_sockets_is_refused() {
    for kind in kinds() {
        let out = Launch::new(kind)
            .config(&open_config(""))
            .arg("--address=systemd:")
            .run();
        assert!(!out.status.success(), "{kind:?}: {out:#?}");
        assert_eq!(out.stdout, "", "{kind:?} printed an address");
        assert!(!out.stderr.is_empty(), "{kind:?} said nothing");
    }
}

/// Starts `kind` with `NOTIFY_SOCKET` (and `extra` variables) and a configuration listening on
/// `dir/bus`.
fn notified_bus(
    kind: BusKind,
    dir: &WorkDir,
    notify: &NotifySocket,
    extra: &[(&str, &str)],
) -> Spawned {
    let socket = dir.path().join("bus");
    let config = write_config(dir, &format!("unix:path={}", socket.display()));
    let mut command = Command::new(daemon::program(kind));
    command
        .arg(format!("--config-file={config}"))
        .arg("--nofork")
        .env("NOTIFY_SOCKET", notify.path())
        .envs(extra.iter().copied());
    Spawned::start(command)
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    for kind in kinds() {
        let dir = WorkDir::new();
        let notify = NotifySocket::bind(dir.path());
        let mut bus = notified_bus(kind, &dir, &notify, &[]);
        assert_eq!(notify.next_state(), "READY=1", "{kind:?}: {}", bus.stderr());
        // Ready means ready: a client connects at once.
        let mut c = client(&dir.path().join("bus"));

        bus.signal(Signal::HUP);
        let reloading = notify.next_state();
        assert_eq!(reloading.lines().next(), Some("RELOADING=1"), "{kind:?}");
        assert_eq!(notify.next_state(), "READY=1", "{kind:?}");
        assert_eq!(c.bus_ok("GetId", vec![]).len(), 1);

        bus.signal(Signal::TERM);
        assert_eq!(notify.next_state(), "STOPPING=1", "{kind:?}");
        let status = bus.wait_exit(DEADLINE);
        assert!(status.is_some_and(|s| s.success()), "{kind:?}: {status:?}");
    }
}

#[test]
fn status_lines_watchdog_and_reload_config() {
    // dbus-daemon sends no STATUS= lines, keeps no watchdog, and reports no ReloadConfig.
    let dir = WorkDir::new();
    let notify = NotifySocket::bind(dir.path());
    let socket = dir.path().join("bus");
    let bus = notified_bus(
        BusKind::Tramd,
        &dir,
        &notify,
        &[("WATCHDOG_USEC", "200000")],
    );
    let mut seen = Vec::new();
    let mut watchdogs = 0;
    let complete = wait_until(DEADLINE, || {
        if let Some(message) = notify.recv_within(Duration::from_millis(50)) {
            watchdogs += usize::from(message == "WATCHDOG=1");
            seen.push(message);
        }
        watchdogs >= 3
    });
    assert!(complete, "{seen:?}; {}", bus.stderr());
    assert_eq!(
        seen.first().map(String::as_str),
        Some("READY=1"),
        "{seen:?}"
    );
    let listening = format!("STATUS=Listening on unix:path={}", socket.display());
    assert!(seen.iter().any(|m| m.starts_with(&listening)), "{seen:?}");

    // ReloadConfig is reported like SIGHUP, and so is a reload that fails.
    let mut c = client(&socket);
    c.bus_ok("ReloadConfig", vec![]);
    assert_eq!(notify.next_state().lines().next(), Some("RELOADING=1"));
    assert_eq!(notify.next_state(), "READY=1");
    dir.write("bus.conf", "<busconfig><bogus/></busconfig>");
    let reply = c.call_bus("ReloadConfig", vec![]);
    assert!(reply.is_error(err::FAILED), "{}", reply.describe());
    let mut statuses = Vec::new();
    let reloading = loop {
        match notify.recv_within(DEADLINE) {
            Some(m) if m.starts_with("STATUS=") => statuses.push(m),
            Some(m) if m == "WATCHDOG=1" => {}
            other => break other,
        }
    };
    assert_eq!(
        reloading.as_deref().and_then(|r| r.lines().next()),
        Some("RELOADING=1")
    );
    let ready = loop {
        match notify.recv_within(DEADLINE) {
            Some(m) if m.starts_with("STATUS=") => statuses.push(m),
            Some(m) if m == "WATCHDOG=1" => {}
            other => break other,
        }
    };
    assert_eq!(ready.as_deref(), Some("READY=1"));
    assert!(
        statuses
            .iter()
            .any(|s| s.contains("previous configuration")),
        "{statuses:?}"
    );
}

/// `dbus-run-session` or `tramd run-session`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runner {
    Reference,
    Tramd,
}

impl Runner {
    fn all() -> [Runner; 2] {
        [Runner::Reference, Runner::Tramd]
    }

    fn run(self, args: &[&str], env: &[(&str, String)]) -> ToolOutput {
        match self {
            Runner::Reference => run_tool("dbus-run-session", args, env),
            Runner::Tramd => run_tool(TRAMD, &[&["run-session"], args].concat(), env),
        }
    }
}

/// The script run-session runs: what it sees of its bus, then exit 7.
const SCRIPT: &str = "echo \"address=$DBUS_SESSION_BUS_ADDRESS\"; \
                      echo \"starter=$DBUS_STARTER_ADDRESS\"; \
                      dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus \
                      /org/freedesktop/DBus org.freedesktop.DBus.GetConnectionUnixProcessID \
                      string:org.freedesktop.DBus | sed 's/^ *uint32 */pid=/'; exit 7";

#[test]
fn run_session_gives_the_program_a_bus_of_its_own() {
    for runner in Runner::all() {
        let dir = WorkDir::new();
        let socket = dir.path().join("bus");
        let config = write_config(&dir, &format!("unix:path={}", socket.display()));
        let stale = [
            ("DBUS_STARTER_ADDRESS", "unix:path=/nonexistent".to_owned()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent".to_owned(),
            ),
        ];
        let out = runner.run(
            &[&format!("--config-file={config}"), "--", "sh", "-c", SCRIPT],
            &stale,
        );
        assert_eq!(out.status.code(), Some(7), "{runner:?}: {out:#?}");
        let field = |name: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{runner:?}: no {name} in {out:#?}"))
                .trim()
                .to_owned()
        };
        let prefix = format!("unix:path={},guid=", socket.display());
        assert!(
            has_guid(&field("address="), &prefix),
            "{runner:?}: {out:#?}"
        );
        assert_eq!(field("starter="), "", "{runner:?}");
        let pid: u32 = field("pid=")
            .parse()
            .unwrap_or_else(|e| panic!("{runner:?}: {e}: {out:#?}"));
        if runner == Runner::Tramd {
            // The bus is stopped and reaped before run-session returns, its socket removed
            // (dbus-run-session only sends SIGTERM).
            assert!(!socket.exists(), "the bus's socket is still there");
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "bus {pid} is still there"
            );
        }
    }
}

#[test]
fn run_session_exit_statuses_are_dbus_run_sessions() {
    for runner in Runner::all() {
        let dir = WorkDir::new();
        let socket = dir.path().join("bus");
        let config = format!(
            "--config-file={}",
            write_config(&dir, &format!("unix:path={}", socket.display()))
        );
        let missing = dir.path().join("no-such-program").display().to_string();
        let cases: &[(&[&str], i32)] = &[
            (&[&config, "--", "true"], 0),
            (&[&config, "sh", "-c", "exit 3"], 3),
            (&[&config, "--", "sh", "-c", "kill -TERM $$"], 128 + 15),
            (&[&config, "--", &missing], 1),
            (&[], 127),
            (&["--bogus", "--", "true"], 127),
            (&["--dbus-daemon=/bin/false", "--", "true"], 127),
        ];
        for (args, want) in cases {
            let out = runner.run(args, &[]);
            assert_eq!(
                out.status.code(),
                Some(*want),
                "{runner:?} {args:?}: {out:#?}"
            );
            // dbus-run-session may signal dbus-daemon before it handles SIGTERM, which then
            // leaves its socket behind; tramd handles SIGTERM before it prints its address.
            if runner == Runner::Tramd {
                assert!(
                    !socket.exists(),
                    "{args:?}: the bus's socket is still there"
                );
            }
        }
    }
}

#[test]
fn run_session_can_run_dbus_daemon() {
    let dir = WorkDir::new();
    let socket = dir.path().join("bus");
    let config = write_config(&dir, &format!("unix:path={}", socket.display()));
    let out = run_tool(
        TRAMD,
        &[
            "run-session",
            "--dbus-daemon=dbus-daemon",
            &format!("--config-file={config}"),
            "--",
            "sh",
            "-c",
            "dbus-send --session --print-reply --dest=org.freedesktop.DBus \
             /org/freedesktop/DBus org.freedesktop.DBus.GetId",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("string \""), "{out:#?}");
    assert!(wait_until(DEADLINE, || !socket.exists()));
}
