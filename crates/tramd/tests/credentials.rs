//! Peer credentials through the driver: GetConnectionUnixUser, GetConnectionUnixProcessID,
//! GetConnectionCredentials, and busctl's views built on them.

mod common;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;

use common::*;

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The groups a peer of this process has: its gid and supplementary groups.
fn groups() -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = rustix::process::getgroups()
        .expect("getgroups")
        .iter()
        .map(|g| g.as_raw())
        .collect();
    set.insert(rustix::process::getgid().as_raw());
    set
}

/// The pid a pidfd refers to, from /proc/self/fdinfo.
fn pidfd_pid(fd: &impl AsRawFd) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
}

fn credentials(c: &mut RawClient, name: &str) -> Msg {
    let reply = c.call_bus("GetConnectionCredentials", vec![Value::str(name)]);
    assert!(
        reply.is_return(),
        "GetConnectionCredentials({name}): {}",
        reply.describe()
    );
    assert_eq!(reply.signature, "a{sv}");
    reply
}

#[test]
fn unix_user_and_process_id_by_unique_and_well_known_name() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let me = a.unique_name.clone();
    assert_eq!(a.request_name("com.example.Cred", 0), 1);
    for name in [me.as_str(), "com.example.Cred"] {
        let user = a.bus_ok("GetConnectionUnixUser", vec![Value::str(name)]);
        assert_eq!(user, [Value::U32(uid())], "{name}");
        let pid = a.bus_ok("GetConnectionUnixProcessID", vec![Value::str(name)]);
        assert_eq!(pid, [Value::U32(std::process::id())], "{name}");
    }
    // The driver answers for itself with the bus process.
    assert_eq!(
        a.bus_ok("GetConnectionUnixUser", vec![Value::str(BUS)]),
        [Value::U32(uid())]
    );
    assert_eq!(
        a.bus_ok("GetConnectionUnixProcessID", vec![Value::str(BUS)]),
        [Value::U32(bus.pid())]
    );
}

#[test]
fn credentials_of_missing_names_are_name_has_no_owner() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let methods = [
        "GetConnectionUnixUser",
        "GetConnectionUnixProcessID",
        "GetConnectionCredentials",
        "GetAdtAuditSessionData",
        "GetConnectionSELinuxSecurityContext",
    ];
    for method in methods {
        for name in [":1.9999", "com.example.Nobody", "bad..name"] {
            a.call_bus(method, vec![Value::str(name)])
                .expect_error(err::NAME_HAS_NO_OWNER);
        }
        a.call_bus(method, vec![]).expect_error(err::INVALID_ARGS);
    }
}

#[test]
fn audit_and_selinux_data_are_unknown_here() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let me = a.unique_name.clone();
    a.call_bus("GetAdtAuditSessionData", vec![Value::str(&me)])
        .expect_error("org.freedesktop.DBus.Error.AdtAuditDataUnknown");
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        a.call_bus("GetConnectionSELinuxSecurityContext", vec![Value::str(&me)])
            .expect_error("org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown");
    }
}

#[test]
fn get_connection_credentials_describes_the_peer() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let me = a.unique_name.clone();
    let mut reply = credentials(&mut a, &me);
    let creds = reply.body[0].clone();
    assert_eq!(
        creds.dict_get("UnixUserID"),
        Some(&Value::U32(uid())),
        "{creds}"
    );
    assert_eq!(
        creds.dict_get("ProcessID"),
        Some(&Value::U32(std::process::id())),
        "{creds}"
    );
    let gids: Option<BTreeSet<u32>> = match creds.dict_get("UnixGroupIDs") {
        Some(Value::Array(elem, items)) if elem == "u" => items.iter().map(Value::as_u32).collect(),
        other => panic!("UnixGroupIDs is {other:?} in {creds}"),
    };
    assert_eq!(gids, Some(groups()), "{creds}");
    // ProcessFD is newer than dbus-daemon 1.14; when present it is a pidfd for this process,
    // passed as the message's fd.
    match creds.dict_get("ProcessFD") {
        None => assert_eq!(reply.fds.len(), 0),
        Some(Value::Fd(i)) => {
            assert_eq!(reply.unix_fds, Some(1));
            let fd = reply.fds.remove(*i as usize);
            assert_eq!(
                pidfd_pid(&fd),
                Some(std::process::id()),
                "ProcessFD is not our pidfd"
            );
        }
        Some(other) => panic!("ProcessFD is {other}"),
    }
    let known = [
        "UnixUserID",
        "UnixGroupIDs",
        "ProcessID",
        "ProcessFD",
        "LinuxSecurityLabel",
    ];
    if let Value::Array(_, entries) = &creds {
        for e in entries {
            if let Value::Entry(k, _) = e {
                let k = k.as_str().unwrap_or_default();
                assert!(known.contains(&k), "unexpected credential {k} in {creds}");
            }
        }
    }
}

#[test]
fn no_process_fd_for_a_caller_without_fd_passing() {
    let bus = TestBus::start();
    let mut c = bus.raw_unauthenticated();
    c.authenticate(false);
    let me = c.hello();
    let reply = credentials(&mut c, &me);
    assert!(
        reply.body[0].dict_get("ProcessFD").is_none(),
        "{}",
        reply.describe()
    );
    assert_eq!(reply.unix_fds.unwrap_or(0), 0);
    assert_eq!(
        reply.body[0].dict_get("ProcessID"),
        Some(&Value::U32(std::process::id()))
    );
}

#[test]
fn credentials_of_the_driver_are_the_bus_process() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let reply = credentials(&mut a, BUS);
    let creds = &reply.body[0];
    assert_eq!(
        creds.dict_get("ProcessID"),
        Some(&Value::U32(bus.pid())),
        "{creds}"
    );
    assert_eq!(
        creds.dict_get("UnixUserID"),
        Some(&Value::U32(uid())),
        "{creds}"
    );
}

#[test]
fn other_clients_see_the_same_credentials() {
    let bus = TestBus::start();
    let out = bus.python(
        "print(os.getpid())\n\
         me = bus.get_unique_name()\n\
         d = dbus.Interface(bus.get_object('org.freedesktop.DBus', '/org/freedesktop/DBus'), \
         'org.freedesktop.DBus')\n\
         print(d.GetConnectionUnixProcessID(me))\n\
         print(bus.get_unix_user(me))\n\
         c = d.GetConnectionCredentials(me)\n\
         print(c['ProcessID'], c['UnixUserID'])\n",
    );
    let lines: Vec<&str> = out.ok().lines().collect();
    let pid = lines.first().copied().unwrap_or_default();
    assert_eq!(
        lines[1..],
        [pid, &uid().to_string(), &format!("{pid} {}", uid())]
    );

    let z = bus.zbus();
    let creds = run({
        let z = z.clone();
        async move {
            let proxy = zbus::fdo::DBusProxy::new(&z).await?;
            let me = z.unique_name().cloned().ok_or(zbus::Error::MissingField)?;
            Ok::<_, zbus::Error>(proxy.get_connection_credentials(me.into()).await?)
        }
    })
    .unwrap_or_else(|e| panic!("zbus GetConnectionCredentials: {e}"));
    assert_eq!(creds.process_id(), Some(std::process::id()));
    assert_eq!(creds.unix_user_id(), Some(uid()));
    if let Some(fd) = creds.process_fd() {
        assert_eq!(pidfd_pid(fd), Some(std::process::id()));
    }
}

#[test]
fn busctl_status_and_list() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let me = a.unique_name.clone();
    assert_eq!(a.request_name("com.example.Listed", 0), 1);
    let pid = std::process::id().to_string();

    let status = bus.busctl(&["status", &me]);
    let text = status.ok();
    assert!(text.lines().any(|l| l == format!("PID={pid}")), "{text}");
    assert!(
        text.lines().any(|l| l == format!("UID={}", uid())),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == format!("UniqueName={me}")),
        "{text}"
    );

    // busctl shows the server GUID (from the address and the SASL OK), which in dbus-daemon
    // is not the GetId bus ID.
    let status = bus.busctl(&["status"]);
    let text = status.ok();
    assert!(
        text.lines().any(|l| l == format!("BusID={}", a.guid)),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == format!("PID={}", bus.pid())),
        "{text}"
    );

    let list = bus.busctl(&["list", "--no-legend"]);
    let rows: Vec<Vec<&str>> = list
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |name: &str| rows.iter().find(|r| r.first() == Some(&name)).cloned();
    let listed = row("com.example.Listed").unwrap_or_else(|| panic!("{list:#?}"));
    assert_eq!(listed.get(1), Some(&pid.as_str()), "{listed:?}");
    assert!(listed.contains(&me.as_str()), "{listed:?}");
    let driver = row(BUS).unwrap_or_else(|| panic!("{list:#?}"));
    assert_eq!(
        driver.get(1),
        Some(&bus.pid().to_string().as_str()),
        "{driver:?}"
    );
    assert!(row(&me).is_some(), "{list:#?}");
}

#[test]
fn cookie_authentication_works_with_real_clients() {
    // DBUS_COOKIE_SHA1 alone: libdbus and GDBus read the cookie the bus keeps in the user's
    // keyring (~/.dbus-keyrings) and prove they know it.
    let config = common::daemon::open_config("")
        .replace("<auth>EXTERNAL</auth>", "<auth>DBUS_COOKIE_SHA1</auth>");
    for kind in [BusKind::Tramd, BusKind::DbusDaemon] {
        let bus = common::daemon::Launch::new(kind).config(&config).start();
        let id = bus
            .tool(
                "dbus-send",
                &[
                    "--session",
                    "--print-reply=literal",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.GetId",
                ],
            )
            .ok()
            .trim()
            .to_owned();
        assert_eq!(id.len(), 32, "{kind:?}: GetId gave {id:?}");
        let via_gdbus = bus
            .tool(
                "gdbus",
                &[
                    "call",
                    "--session",
                    "--dest",
                    "org.freedesktop.DBus",
                    "--object-path",
                    "/org/freedesktop/DBus",
                    "--method",
                    "org.freedesktop.DBus.GetId",
                ],
            )
            .ok()
            .to_owned();
        assert!(
            via_gdbus.contains(&id),
            "{kind:?}: gdbus gave {via_gdbus:?}"
        );
        // EXTERNAL is not offered: a client that knows only EXTERNAL gets nowhere.
        let busctl = bus.tool(
            "busctl",
            &[
                &format!("--address={}", bus.address()),
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetId",
            ],
        );
        busctl.failed();
    }
}
