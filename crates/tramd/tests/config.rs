//! Starting the bus the way harnesses and init systems start dbus-daemon: `--config-file` with
//! session-like, system-like, policy-heavy and limit-setting files, `--print-address` and
//! `--print-pid` to standard output or another descriptor, `--fork`, `--introspect` and
//! `--version`; and the stock `session.conf` and `system.conf` with their include directories.
//!
//! Each test runs the bus `TRAM_TEST_BUS` selects (tramd by default); the ones that compare
//! output run dbus-daemon as well.

mod common;

use common::daemon::{
    DAEMON, Daemon, EchoService, Launch, NOBODY, busconfig, open_config, program, settle,
};
use common::*;

const PRIMARY_OWNER: u32 = 1;

fn under_test() -> BusKind {
    BusKind::from_env()
}

/// The uid of `user` from /etc/passwd.
fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut parts = l.split(':');
        (parts.next() == Some(user))
            .then(|| parts.nth(1).and_then(|u| u.parse().ok()))
            .flatten()
    })
}

/// The effective uid of process `pid`, from /proc.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
}

/// GetId through a registered raw client: the bus answers.
fn answers(bus: &Daemon) -> String {
    let mut c = bus.raw();
    let id = c.bus_ok("GetId", vec![]);
    id.first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn session_like_configuration_file() {
    let bus = Launch::new(under_test())
        .config(&busconfig(
            "<type>session</type>\n\
             <listen>unix:path=@DIR@/bus</listen>\n\
             <auth>EXTERNAL</auth>\n\
             <policy context=\"default\">\n\
               <allow send_destination=\"*\" eavesdrop=\"true\"/>\n\
               <allow eavesdrop=\"true\"/>\n\
               <allow own=\"*\"/>\n\
             </policy>",
        ))
        .start();
    let expected = format!("unix:path={}/bus,guid=", bus.dir().display());
    assert!(
        bus.address().starts_with(&expected),
        "printed address {:?}, expected {expected:?}…",
        bus.address()
    );
    let id = answers(&bus);
    assert_eq!(id.len(), 32, "GetId {id:?}");
    // A client of the same user owns names and calls another; dbus-send works.
    let svc = EchoService::spawn(&bus, Some("com.example.Svc"));
    let out = bus.tool(
        "dbus-send",
        &[
            &format!("--bus={}", bus.address()),
            "--print-reply",
            "--dest=com.example.Svc",
            "/",
            "com.example.Test.Echo",
            "string:hi",
        ],
    );
    assert!(out.ok().contains("\"hi\""), "{out:#?}");
    drop(svc);
}

#[test]
fn system_like_configuration_on_a_private_path() {
    // The shape of system.conf: everyone may connect, method calls and owning names are denied
    // unless a rule opens them, signals and requested replies pass.
    let bus = Launch::new(under_test())
        .config(&busconfig(
            "<type>system</type>\n\
             <listen>unix:path=@DIR@/system_bus_socket</listen>\n\
             <auth>EXTERNAL</auth>\n\
             <policy context=\"default\">\n\
               <allow user=\"*\"/>\n\
               <deny own=\"*\"/>\n\
               <deny send_type=\"method_call\"/>\n\
               <allow send_type=\"signal\"/>\n\
               <allow send_requested_reply=\"true\" send_type=\"method_return\"/>\n\
               <allow send_requested_reply=\"true\" send_type=\"error\"/>\n\
               <allow receive_type=\"method_call\"/>\n\
               <allow receive_type=\"method_return\"/>\n\
               <allow receive_type=\"error\"/>\n\
               <allow receive_type=\"signal\"/>\n\
               <allow send_destination=\"org.freedesktop.DBus\" \
                      send_interface=\"org.freedesktop.DBus\"/>\n\
               <allow send_destination=\"org.freedesktop.DBus\" \
                      send_interface=\"org.freedesktop.DBus.Introspectable\"/>\n\
               <allow send_destination=\"com.example.Open\"/>\n\
             </policy>\n\
             <policy user=\"root\">\n\
               <allow own=\"com.example.Open\"/>\n\
             </policy>",
        ))
        .start();
    assert!(
        bus.socket_path().ends_with("system_bus_socket"),
        "{}",
        bus.address()
    );
    let mut root = bus.raw();
    assert_eq!(root.request_name("com.example.Open", 4), PRIMARY_OWNER);
    root.call_bus(
        "RequestName",
        vec![Value::str("com.example.Closed"), Value::U32(4)],
    )
    .expect_error(err::ACCESS_DENIED);
    let mut nobody = bus.raw_as(NOBODY);
    let call = |dest: &str| RawMessage::call(Some(dest), "/", Some("com.example.I"), "M");
    // Open: the call arrives and the reply comes back.
    let serial = nobody.send(&call("com.example.Open"));
    let got = root.wait_for(|m| m.mtype == METHOD_CALL);
    root.send(&RawMessage::reply_to(&got, None));
    assert!(nobody.wait_reply(serial).is_return());
    // send_destination opens the owner, not only the name: root's unique name may be called
    // too, since root owns com.example.Open.
    let me = root.unique_name.clone();
    let serial = nobody.send(&call(&me));
    let got = root.wait_for(|m| m.mtype == METHOD_CALL);
    root.send(&RawMessage::reply_to(&got, None));
    assert!(nobody.wait_reply(serial).is_return());
    // A connection with no opened name cannot be called.
    let other = bus.raw();
    nobody
        .call(call(&other.unique_name.clone()))
        .expect_error(err::ACCESS_DENIED);
    // Driver calls are open.
    nobody.bus_ok("ListNames", vec![]);
}

#[test]
fn print_pid_and_address_to_standard_output() {
    let mut bus = Launch::new(under_test())
        .config(&open_config(""))
        .arg("--print-pid=1")
        .start();
    let pid = bus.next_line().unwrap_or_else(|| panic!("no pid line"));
    assert_eq!(pid.trim(), bus.pid().to_string(), "--print-pid");
    answers(&bus);
}

#[test]
fn print_address_and_pid_to_other_descriptors() {
    // The shell opens descriptor 3 on the pipe the test reads and sends standard output away,
    // so the lines arrive only if the bus writes them to descriptor 3. Descriptor 4 gets the
    // pid, written to a file.
    let kind = under_test();
    let script = "exec \"$0\" \"$@\" 3>&1 1>/dev/null 4>\"$TRAM_PID_FILE\"";
    let dir = common::daemon::WorkDir::new();
    let pid_file = dir.path().join("pid");
    let config = dir.write(
        "bus.conf",
        &open_config("").replace("@DIR@", &dir.path().display().to_string()),
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", script, program(kind)])
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address=3", "--print-pid=4"])
        .env("TRAM_PID_FILE", &pid_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning the bus through sh");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(DEADLINE);
    // The pid may be written just after the address.
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut pid_text = String::new();
    while !pid_text.ends_with('\n') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        pid_text = std::fs::read_to_string(&pid_file).unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_else(|_| panic!("{kind:?} printed nothing on descriptor 3"));
    let expected = format!("unix:path={}/bus,guid=", dir.path().display());
    assert!(line.starts_with(&expected), "descriptor 3 got {line:?}");
    assert_eq!(
        pid_text.trim(),
        child.id().to_string(),
        "descriptor 4 got {pid_text:?}"
    );
}

#[test]
fn fork_returns_once_the_bus_is_listening() {
    let kind = under_test();
    let exited = Launch::new(kind)
        .config(&open_config(""))
        .bare()
        .arg("--fork")
        .arg("--print-address=1")
        .arg("--print-pid=1")
        .run();
    assert!(exited.status.success(), "{kind:?} --fork: {exited:#?}");
    let lines: Vec<&str> = exited.stdout.lines().collect();
    let [address, pid] = lines.as_slice() else {
        panic!("--fork --print-address=1 --print-pid=1 printed {lines:?}");
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid line {pid:?}"));
    let address = address.to_string();
    let mut bus = Daemon::adopt(kind, exited, pid, &address);
    // No retry: the parent returned only after the socket was listening.
    let mut c = bus.raw();
    c.bus_ok("GetId", vec![]);
    // The daemon is not the parent that exited, and it keeps running.
    assert!(bus.is_running(), "the forked bus is gone");
    assert_eq!(
        c.bus_ok("GetConnectionUnixProcessID", vec![Value::str(BUS)]),
        [Value::U32(pid)],
        "the printed pid is the bus's"
    );
}

/// `--introspect` output reduced to its declarations, sorted.
fn introspect_outline(kind: BusKind) -> Vec<String> {
    let out = Launch::new(kind).bare().arg("--introspect").run();
    assert!(out.status.success(), "{kind:?} --introspect: {out:#?}");
    check_balanced(&out.stdout);
    let mut outline: Vec<String> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| {
            ["<interface ", "<method ", "<signal ", "<property ", "<arg "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| {
            // Attribute order is the writer's choice; compare attributes as a sorted set.
            let inner = l.trim_start_matches('<').trim_end_matches('>');
            let inner = inner.trim_end_matches('/').trim();
            let mut parts = inner.split_whitespace();
            let tag = parts.next().unwrap_or_default().to_owned();
            let mut attrs: Vec<&str> = parts.collect();
            attrs.sort_unstable();
            format!("{tag} {}", attrs.join(" "))
        })
        .collect();
    // Keep each interface's members together but the interfaces in any order: prefix each line
    // with its interface.
    let mut current = String::new();
    let mut keyed: Vec<String> = Vec::new();
    let mut member = String::new();
    for line in outline.drain(..) {
        if line.starts_with("interface ") {
            current = line.clone();
            member.clear();
        } else if !line.starts_with("arg ") {
            member = line.clone();
        }
        keyed.push(format!("{current} | {member} | {line}"));
    }
    // Arguments keep their order within a member; members and interfaces are sorted.
    keyed.sort();
    keyed
}

/// Asserts that the XML's elements nest properly.
fn check_balanced(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            panic!("unterminated tag in --introspect output");
        };
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') || tag.ends_with('/') {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or_default();
        match name.strip_prefix('/') {
            Some(closing) => {
                let open = stack.pop();
                assert_eq!(open.as_deref(), Some(closing), "--introspect: </{closing}>");
            }
            None => stack.push(name.to_owned()),
        }
    }
    assert!(stack.is_empty(), "--introspect: unclosed {stack:?}");
}

#[test]
fn introspect_prints_the_driver_interfaces_as_dbus_daemon_does() {
    let reference = introspect_outline(BusKind::DbusDaemon);
    let tested = introspect_outline(under_test());
    let missing: Vec<&String> = reference.iter().filter(|l| !tested.contains(l)).collect();
    let extra: Vec<&String> = tested.iter().filter(|l| !reference.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "--introspect differs from dbus-daemon's:\nmissing {missing:#?}\nextra {extra:#?}"
    );
}

#[test]
fn introspect_output_matches_what_the_running_bus_answers() {
    let kind = under_test();
    let printed = Launch::new(kind).bare().arg("--introspect").run();
    assert!(printed.status.success(), "{printed:#?}");
    let bus = Launch::new(kind).config(&open_config("")).start();
    let mut c = bus.raw();
    let reply = c.call(RawMessage::call(
        Some(BUS),
        BUS_PATH,
        Some("org.freedesktop.DBus.Introspectable"),
        "Introspect",
    ));
    let answered = reply.ok()[0].as_str().unwrap_or_default().to_owned();
    let interfaces = |xml: &str| {
        let mut v: Vec<String> = xml
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("<interface ") || l.starts_with("<method "))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let printed_set = interfaces(&printed.stdout);
    for line in interfaces(&answered) {
        assert!(
            printed_set.contains(&line),
            "{line} is answered by Introspect but not printed by --introspect"
        );
    }
}

#[test]
fn version_prints_a_version_and_exits() {
    let kind = under_test();
    let out = Launch::new(kind).bare().arg("--version").run();
    assert!(out.status.success(), "{kind:?} --version: {out:#?}");
    let first = out.stdout.lines().next().unwrap_or_default();
    let has_version = first.split_whitespace().any(|w| {
        let mut parts = w.split('.');
        parts.clone().count() >= 2
            && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    assert!(has_version, "--version printed {:?}", out.stdout);
}

#[test]
fn policy_heavy_configuration_file() {
    // Every kind of rule in one file, with users and groups by name and number, mandatory
    // policies and includes: the bus starts and its policy is in force.
    let bus = Launch::new(under_test())
        .config(&busconfig(
            "<type>custom</type>\n\
             <listen>unix:path=@DIR@/bus</listen>\n\
             <policy context=\"default\">\n\
               <allow user=\"*\"/>\n\
               <allow own=\"*\"/>\n\
               <allow send_destination=\"*\"/>\n\
               <allow receive_sender=\"*\"/>\n\
               <deny own_prefix=\"com.example.Reserved\"/>\n\
               <deny send_destination_prefix=\"com.example.Private\"/>\n\
               <deny send_interface=\"com.example.Secret\" send_destination=\"*\"/>\n\
               <deny send_member=\"Forbidden\" send_path=\"/\"/>\n\
               <deny send_error=\"com.example.Error.Hidden\" send_type=\"error\"/>\n\
               <deny send_path=\"/com/example/hidden\"/>\n\
               <deny send_type=\"method_call\" send_broadcast=\"true\"/>\n\
               <deny receive_interface=\"com.example.Unwanted\" receive_type=\"signal\"/>\n\
               <deny receive_sender=\"com.example.Noisy\"/>\n\
               <deny receive_member=\"Hush\" receive_path=\"/\"/>\n\
               <deny receive_error=\"com.example.Error.Private\" receive_type=\"error\"/>\n\
               <allow send_requested_reply=\"false\" send_type=\"method_return\"/>\n\
               <deny receive_requested_reply=\"false\" receive_type=\"error\"/>\n\
               <deny eavesdrop=\"true\" receive_type=\"method_call\"/>\n\
               <deny send_interface=\"com.example.Fds\" min_fds=\"3\"/>\n\
               <allow send_destination=\"*\" max_fds=\"0\" send_interface=\"com.example.Fds\"/>\n\
             </policy>\n\
             <policy user=\"root\">\n\
               <allow own=\"com.example.Reserved.Root\"/>\n\
             </policy>\n\
             <policy user=\"0\">\n\
               <allow send_destination=\"com.example.Private.Root\"/>\n\
             </policy>\n\
             <policy group=\"root\">\n\
               <allow send_member=\"Forbidden\" send_interface=\"com.example.Group\"/>\n\
             </policy>\n\
             <policy group=\"0\"/>\n\
             <policy at_console=\"true\">\n\
               <allow own=\"com.example.Console\"/>\n\
             </policy>\n\
             <policy at_console=\"false\">\n\
               <allow own=\"com.example.NotConsole\"/>\n\
             </policy>\n\
             <policy context=\"mandatory\">\n\
               <deny own=\"com.example.Mandatory\"/>\n\
             </policy>\n\
             <include ignore_missing=\"yes\">@DIR@/missing.conf</include>\n\
             <include>extra.conf</include>\n\
             <includedir>bus.d</includedir>\n\
             <includedir>@DIR@/no-such.d</includedir>",
        ))
        .file(
            "extra.conf",
            &busconfig("<policy context=\"default\"><deny own=\"com.example.Extra\"/></policy>"),
        )
        .file(
            "bus.d/a.conf",
            &busconfig("<policy user=\"root\"><deny own=\"com.example.FromDir\"/></policy>"),
        )
        .file("bus.d/ignored.txt", "not a configuration file")
        .start();
    let mut c = bus.raw();
    let denied = [
        "com.example.Reserved",
        "com.example.Reserved.X",
        "com.example.Mandatory",
        "com.example.Extra",
        "com.example.FromDir",
    ];
    for name in denied {
        c.call_bus("RequestName", vec![Value::str(name), Value::U32(4)])
            .expect_error(err::ACCESS_DENIED);
    }
    for name in [
        "com.example.Reserved.Root",
        "com.example.ReservedX",
        "com.example.NotConsole",
        "com.example.Console",
    ] {
        assert_eq!(c.request_name(name, 4), PRIMARY_OWNER, "{name}");
    }
}

#[test]
fn limit_setting_configuration_file() {
    // Every limit dbus-daemon knows, in its units; the bus starts and the limits are in force.
    let limits = [
        ("max_incoming_bytes", "1000000"),
        ("max_incoming_unix_fds", "64"),
        ("max_outgoing_bytes", "1000000"),
        ("max_outgoing_unix_fds", "64"),
        ("max_message_size", "100000"),
        ("max_message_unix_fds", "16"),
        ("service_start_timeout", "25000"),
        ("auth_timeout", "30000"),
        ("pending_fd_timeout", "150000"),
        ("max_completed_connections", "100"),
        ("max_incomplete_connections", "10"),
        ("max_connections_per_user", "50"),
        ("max_pending_service_starts", "10"),
        ("max_names_per_connection", "3"),
        ("max_match_rules_per_connection", "4"),
        ("max_replies_per_connection", "5"),
        ("reply_timeout", "60000"),
    ];
    let lines: String = limits
        .iter()
        .map(|(name, value)| format!("<limit name=\"{name}\">{value}</limit>\n"))
        .collect();
    let bus = Launch::new(under_test())
        .config(&open_config(&lines))
        .start();
    let mut c = bus.raw();
    // max_names_per_connection counts the unique name too.
    for i in 0..2 {
        assert_eq!(
            c.request_name(&format!("com.example.N{i}"), 4),
            PRIMARY_OWNER
        );
    }
    c.call_bus(
        "RequestName",
        vec![Value::str("com.example.N2"), Value::U32(4)],
    )
    .expect_error("org.freedesktop.DBus.Error.LimitsExceeded");
}

#[test]
fn stock_session_conf_with_a_private_address() {
    let kind = under_test();
    for config in ["--config-file=/usr/share/dbus-1/session.conf", "--session"] {
        let bus = Launch::new(kind)
            .arg(config)
            .arg("--address=unix:path=@DIR@/bus")
            .start();
        let expected = format!("unix:path={}/bus,", bus.dir().display());
        assert!(
            bus.address().starts_with(&expected),
            "{config}: {}",
            bus.address()
        );
        let mut a = bus.raw();
        assert_eq!(a.request_name("com.example.Session", 4), PRIMARY_OWNER);
        let svc = EchoService::spawn(&bus, Some("com.example.Svc"));
        let reply = a.call(
            RawMessage::call(
                Some("com.example.Svc"),
                "/",
                Some("com.example.Test"),
                "Echo",
            )
            .args(vec![Value::U32(7)]),
        );
        assert_eq!(reply.ok(), [Value::U32(7)], "{config}");
        // Eavesdropping is allowed on the session bus.
        a.add_match("eavesdrop='true',type='method_call',interface='com.example.Test'");
        drop(svc);
        // Another user may not connect: the session bus admits its own user only.
        let refused = bus.try_raw_as(NOBODY);
        assert!(
            refused.is_err(),
            "{config}: a session bus admitted uid 65534"
        );
    }
}

/// The stock system bus on a private socket: `--nopidfile` keeps it from writing
/// /run/dbus/pid, and `<user>messagebus</user>` makes it drop privileges after listening.
fn stock_system_bus() -> Daemon {
    Launch::new(under_test())
        .arg("--config-file=/usr/share/dbus-1/system.conf")
        .arg("--address=unix:path=@DIR@/system_bus_socket")
        .arg("--nopidfile")
        .start()
}

#[test]
fn stock_system_conf_drops_privileges_and_admits_everyone() {
    let bus = stock_system_bus();
    // The bus changes user once initialised: after it has answered a client.
    answers(&bus);
    if let Some(messagebus) = uid_of("messagebus") {
        assert_eq!(
            process_uid(bus.pid()),
            Some(messagebus),
            "the system bus runs as messagebus"
        );
    }
    for user in [NOBODY, DAEMON] {
        let mut c = bus.raw_as(user);
        let uid = c.bus_ok(
            "GetConnectionUnixUser",
            vec![Value::str(&c.unique_name.clone())],
        );
        assert_eq!(uid, [Value::U32(user.0)]);
        c.bus_ok("ListNames", vec![]);
        c.bus_ok("GetId", vec![]);
        c.call(RawMessage::call(
            Some(BUS),
            BUS_PATH,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
        ))
        .ok();
        // Denied by the stock policy even though the driver interface is open.
        c.call_bus(
            "UpdateActivationEnvironment",
            vec![Value::Array("{ss}".into(), vec![])],
        )
        .expect_error(err::ACCESS_DENIED);
        c.call(RawMessage::call(
            Some(BUS),
            BUS_PATH,
            Some("org.freedesktop.DBus.Debug.Stats"),
            "GetStats",
        ))
        .expect_error(err::ACCESS_DENIED);
        c.call(
            RawMessage::call(
                Some(BUS),
                BUS_PATH,
                Some("org.freedesktop.DBus.Monitoring"),
                "BecomeMonitor",
            )
            .args(vec![Value::str_array(&[]), Value::U32(0)]),
        )
        .expect_error(err::ACCESS_DENIED);
    }
}

#[test]
fn stock_system_conf_ownership_follows_the_policy_files() {
    let bus = stock_system_bus();
    let mut root = bus.raw();
    let mut nobody = bus.raw_as(NOBODY);
    // system.d/org.freedesktop.hostname1.conf lets root own hostname1.
    assert_eq!(
        root.request_name("org.freedesktop.hostname1", 4),
        PRIMARY_OWNER
    );
    // Nobody opens these for anyone.
    for name in ["com.example.Unlisted", "org.freedesktop.hostname1.Sub"] {
        root.call_bus("RequestName", vec![Value::str(name), Value::U32(4)])
            .expect_error(err::ACCESS_DENIED);
    }
    // hostname1 may only be owned by root.
    nobody
        .call_bus(
            "RequestName",
            vec![Value::str("org.freedesktop.timedate1"), Value::U32(4)],
        )
        .expect_error(err::ACCESS_DENIED);
    // Releasing a name one does not own is not a policy matter.
    let released = nobody.bus_ok("ReleaseName", vec![Value::str("org.freedesktop.hostname1")]);
    assert_eq!(released, [Value::U32(3)], "NOT_OWNER");
}

#[test]
fn stock_system_conf_calls_signals_and_replies() {
    let bus = stock_system_bus();
    let mut root = bus.raw();
    assert_eq!(
        root.request_name("org.freedesktop.hostname1", 4),
        PRIMARY_OWNER
    );
    let service = root.unique_name.clone();
    let mut plain = bus.raw();
    let plain_name = plain.unique_name.clone();
    let mut nobody = bus.raw_as(NOBODY);
    let call = |dest: &str, iface: &str| RawMessage::call(Some(dest), "/", Some(iface), "Get");

    // The opened service: the call arrives and the requested reply comes back.
    let serial = nobody.send(&call(
        "org.freedesktop.hostname1",
        "org.freedesktop.hostname1",
    ));
    let got = root.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!(got.member.as_deref(), Some("Get"));
    root.send(&RawMessage::reply_to(&got, None).args(vec![Value::str("host")]));
    assert_eq!(nobody.wait_reply(serial).ok(), [Value::str("host")]);
    // An error reply passes too.
    let serial = nobody.send(&call(
        "org.freedesktop.hostname1",
        "org.freedesktop.hostname1",
    ));
    let got = root.wait_for(|m| m.mtype == METHOD_CALL);
    root.send(&RawMessage::reply_to(&got, Some("com.example.Error.Nope")));
    nobody
        .wait_reply(serial)
        .expect_error("com.example.Error.Nope");

    // A service no policy file opens: denied for a non-root client and for root alike.
    nobody
        .call(call(&plain_name, "com.example.I"))
        .expect_error(err::ACCESS_DENIED);
    root.call(call(&plain_name, "com.example.I"))
        .expect_error(err::ACCESS_DENIED);
    // The service saw nothing.
    let seen = settle(&mut plain);
    assert!(
        seen.iter().all(|m| m.mtype != METHOD_CALL),
        "a denied call was delivered: {:?}",
        seen.iter().map(Msg::describe).collect::<Vec<_>>()
    );

    // Signals: broadcast and unicast are allowed by default.
    nobody.add_match("type='signal',interface='com.example.Sig'");
    root.send(&RawMessage::signal("/", "com.example.Sig", "Changed"));
    let got = nobody.wait_for(|m| m.is_signal("com.example.Sig", "Changed"));
    assert_eq!(got.sender.as_deref(), Some(service.as_str()));
    let me = nobody.unique_name.clone();
    root.send(&RawMessage::signal("/", "com.example.Sig", "Direct").destination(&me));
    nobody.wait_for(|m| m.is_signal("com.example.Sig", "Direct"));

    // A reply nobody asked for is refused, and the sender is told.
    root.call(RawMessage::method_return(&me, 4242))
        .expect_error(err::ACCESS_DENIED);
    let seen = settle(&mut nobody);
    assert!(
        seen.iter().all(|m| m.reply_serial != Some(4242)),
        "an unrequested reply was delivered"
    );
}

#[test]
fn stock_system_conf_with_command_line_clients_as_another_user() {
    let bus = stock_system_bus();
    let addr = format!("--address={}", bus.address());
    let busctl = bus.tool_as(
        NOBODY,
        "busctl",
        &[&addr, "--no-pager", "list", "--no-legend"],
    );
    assert!(busctl.ok().contains("org.freedesktop.DBus"), "{busctl:#?}");
    let sent = bus.tool_as(
        NOBODY,
        "dbus-send",
        &[
            &format!("--bus={}", bus.address()),
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixUser",
            "string:org.freedesktop.DBus",
        ],
    );
    sent.ok();
    let denied = bus.tool_as(
        NOBODY,
        "dbus-send",
        &[
            &format!("--bus={}", bus.address()),
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.UpdateActivationEnvironment",
            "dict:string:string:A,B",
        ],
    );
    assert!(denied.failed().contains(err::ACCESS_DENIED), "{denied:#?}");
}

/// A configuration whose `<busconfig>` holds `head` and an open default policy.
fn open_with(head: &str) -> String {
    busconfig(&format!(
        "{head}\n<policy context=\"default\">\n<allow send_destination=\"*\"/>\n\
         <allow receive_sender=\"*\"/>\n<allow own=\"*\"/>\n</policy>"
    ))
}

#[test]
fn listen_on_a_directory_makes_a_socket_inside_it() {
    for kind in [BusKind::DbusDaemon, under_test()] {
        for listen in ["unix:dir=@DIR@/sockets", "unix:tmpdir=@DIR@/sockets"] {
            let bus = Launch::new(kind)
                .config(&open_with(&format!("<listen>{listen}</listen>")))
                .file("sockets/.keep", "")
                .start();
            let inside = format!("unix:path={}/sockets/", bus.dir().display());
            assert!(
                bus.address().starts_with(&inside) && bus.address().contains(",guid="),
                "{kind:?} {listen}: printed {:?}",
                bus.address()
            );
            answers(&bus);
        }
    }
}

#[test]
fn several_listen_addresses_are_all_printed_and_served() {
    let kind = under_test();
    let bus = Launch::new(kind)
        .config(&open_with(
            "<listen>unix:path=@DIR@/first</listen>\n<listen>unix:path=@DIR@/second</listen>",
        ))
        .start();
    let mut paths: Vec<String> = bus
        .address()
        .split(';')
        .filter_map(|a| a.strip_prefix("unix:path="))
        .filter_map(|a| a.split(',').next())
        .map(str::to_owned)
        .collect();
    paths.sort();
    let dir = bus.dir().display().to_string();
    assert_eq!(
        paths,
        [format!("{dir}/first"), format!("{dir}/second")],
        "{kind:?} printed {:?}",
        bus.address()
    );
    // Both sockets lead to the same bus.
    let mut ids = Vec::new();
    for path in &paths {
        let mut c = RawClient::connect(std::path::Path::new(path), None);
        c.authenticate(true);
        c.hello();
        ids.push(c.bus_ok("GetId", vec![]));
    }
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn address_option_replaces_the_configured_listen_addresses() {
    let kind = under_test();
    let bus = Launch::new(kind)
        .config(&open_with("<listen>unix:path=@DIR@/configured</listen>"))
        .arg("--address=unix:path=@DIR@/given")
        .start();
    let given = format!("unix:path={}/given,", bus.dir().display());
    assert!(
        bus.address().starts_with(&given),
        "{kind:?}: {}",
        bus.address()
    );
    assert!(
        !bus.address().contains(';'),
        "{kind:?} also listens elsewhere: {}",
        bus.address()
    );
    answers(&bus);
    assert!(
        !bus.dir().join("configured").exists(),
        "{kind:?} created the configured socket too"
    );
}

#[test]
fn pidfile_is_written_unless_nopidfile() {
    let kind = under_test();
    let config =
        open_with("<listen>unix:path=@DIR@/bus</listen>\n<pidfile>@DIR@/bus.pid</pidfile>");
    let bus = Launch::new(kind).config(&config).start();
    answers(&bus);
    let pid = std::fs::read_to_string(bus.dir().join("bus.pid")).unwrap_or_default();
    assert_eq!(
        pid.trim(),
        bus.pid().to_string(),
        "{kind:?}: pid file {pid:?}"
    );
    let bus = Launch::new(kind).config(&config).arg("--nopidfile").start();
    answers(&bus);
    assert!(
        !bus.dir().join("bus.pid").exists(),
        "{kind:?} wrote a pid file despite --nopidfile"
    );
}
