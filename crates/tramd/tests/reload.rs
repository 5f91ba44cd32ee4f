//! Reloading the configuration with the driver's ReloadConfig and with SIGHUP: a valid change
//! takes effect for new and existing connections; a broken file leaves the old configuration in
//! force, and ReloadConfig answers with an error (naming file and line, on tramd).
//!
//! Each test runs on dbus-daemon and on the bus under test (`TRAM_TEST_BUS`, tramd by default).

mod common;

use std::time::Instant;

use common::daemon::{Daemon, Launch, busconfig};
use common::*;

const OPEN: &str = "<listen>unix:path=@DIR@/bus</listen>\n\
                    <policy context=\"default\">\n\
                    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n\
                    <allow eavesdrop=\"true\"/>\n\
                    <allow own=\"*\"/>\n</policy>";

/// OPEN with ownership of `com.example.Denied` and the driver's ListNames denied; the deny rules
/// are on lines 8 and 9.
const CLOSED: &str = "<listen>unix:path=@DIR@/bus</listen>\n\
                      <policy context=\"default\">\n\
                      <allow send_destination=\"*\" eavesdrop=\"true\"/>\n\
                      <allow eavesdrop=\"true\"/>\n\
                      <allow own=\"*\"/>\n\
                      <deny own=\"com.example.Denied\"/>\n\
                      <deny send_destination=\"org.freedesktop.DBus\" \
                      send_interface=\"org.freedesktop.DBus\" send_member=\"ListNames\"/>\n\
                      </policy>";

/// A policy with an unknown element on line 6.
const BROKEN: &str = "<listen>unix:path=@DIR@/bus</listen>\n<policy context=\"default\">\n\
                      <allow own=\"*\"/>\n<bogus/>\n</policy>";

fn kinds() -> [BusKind; 2] {
    [BusKind::DbusDaemon, BusKind::from_env()]
}

fn start(kind: BusKind, body: &str) -> Daemon {
    Launch::new(kind).config(&busconfig(body)).start()
}

fn reload(c: &mut RawClient) -> Msg {
    c.call_bus("ReloadConfig", vec![])
}

fn owns(c: &mut RawClient, name: &str) -> Result<u32, String> {
    let reply = c.call_bus("RequestName", vec![Value::str(name), Value::U32(4)]);
    match reply.mtype {
        ERROR => Err(reply.error_name.unwrap_or_default()),
        _ => Ok(reply.u32_arg(0).unwrap_or(0)),
    }
}

fn list_names_denied(c: &mut RawClient) -> bool {
    c.call_bus("ListNames", vec![]).is_error(err::ACCESS_DENIED)
}

/// Asserts the CLOSED policy is in force for `c`.
#[track_caller]
fn closed_policy_holds(kind: BusKind, c: &mut RawClient) {
    assert_eq!(
        owns(c, "com.example.Denied"),
        Err(err::ACCESS_DENIED.to_owned()),
        "{kind:?}"
    );
    assert!(list_names_denied(c), "{kind:?}: ListNames allowed");
    // Allowed: the primary owner, or the name exists already (another client took it).
    let allowed = owns(c, "com.example.Allowed");
    assert!(matches!(allowed, Ok(1 | 3 | 4)), "{kind:?}: {allowed:?}");
}

#[test]
fn reload_config_applies_a_changed_policy_to_new_and_existing_connections() {
    for kind in kinds() {
        let bus = start(kind, OPEN);
        let mut old = bus.raw();
        assert_eq!(owns(&mut old, "com.example.Denied"), Ok(1), "{kind:?}");
        assert!(old.release_name("com.example.Denied") == 1);
        bus.rewrite("bus.conf", &busconfig(CLOSED));
        let reply = reload(&mut old);
        assert!(
            reply.is_return(),
            "{kind:?}: ReloadConfig {}",
            reply.describe()
        );
        closed_policy_holds(kind, &mut old);
        let mut new = bus.raw();
        closed_policy_holds(kind, &mut new);
    }
}

#[test]
fn sighup_applies_a_changed_policy() {
    for kind in kinds() {
        let bus = start(kind, OPEN);
        let mut c = bus.raw();
        assert!(!list_names_denied(&mut c), "{kind:?}");
        bus.rewrite("bus.conf", &busconfig(CLOSED));
        bus.sighup();
        // The reload happens in the bus's own time: probe until the new policy shows.
        let deadline = Instant::now() + DEADLINE;
        while !list_names_denied(&mut c) {
            assert!(
                Instant::now() < deadline,
                "{kind:?}: the policy did not change after SIGHUP; stderr:\n{}",
                bus.stderr()
            );
        }
        closed_policy_holds(kind, &mut c);
        closed_policy_holds(kind, &mut bus.raw());
    }
}

#[test]
fn a_broken_file_leaves_the_old_configuration_and_reload_config_fails() {
    for kind in kinds() {
        let mut bus = start(kind, CLOSED);
        let mut c = bus.raw();
        bus.rewrite("bus.conf", &busconfig(BROKEN));
        let reply = reload(&mut c);
        reply.expect_error(err::FAILED);
        if kind == BusKind::Tramd {
            let text = reply.str_arg(0).unwrap_or_default();
            let place = format!("{}:6", bus.dir().join("bus.conf").display());
            assert!(
                text.contains(&place),
                "ReloadConfig's error {text:?} does not name {place}"
            );
        }
        assert!(bus.is_running(), "{kind:?} exited");
        closed_policy_holds(kind, &mut c);
        closed_policy_holds(kind, &mut bus.raw());
        // A fixed file loads again.
        bus.rewrite("bus.conf", &busconfig(OPEN));
        assert!(reload(&mut c).is_return(), "{kind:?}");
        assert!(!list_names_denied(&mut c), "{kind:?}");
    }
}

#[test]
fn a_broken_file_on_sighup_is_reported_and_the_bus_goes_on() {
    for kind in kinds() {
        let mut bus = start(kind, CLOSED);
        let mut c = bus.raw();
        bus.rewrite("bus.conf", &busconfig(BROKEN));
        let before = bus.stderr().len();
        bus.sighup();
        // The bus reports the failure on stderr; tramd names the place.
        let place = format!("{}:6", bus.dir().join("bus.conf").display());
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stderr = bus.stderr();
            let new = stderr.get(before..).unwrap_or_default();
            let reported = match kind {
                BusKind::DbusDaemon => new.contains("Unable to reload configuration"),
                BusKind::Tramd => new.contains(&place),
            };
            if reported {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?} did not report the broken file ({place}); stderr since SIGHUP:\n{new}"
            );
            // Each round trip gives the bus a chance to have handled the signal.
            c.bus_ok("GetId", vec![]);
        }
        assert!(bus.is_running(), "{kind:?} exited");
        closed_policy_holds(kind, &mut c);
    }
}

#[test]
fn reload_keeps_names_matches_and_pending_calls() {
    for kind in kinds() {
        let bus = start(kind, OPEN);
        let mut a = bus.raw();
        let mut b = bus.raw();
        assert_eq!(owns(&mut b, "com.example.Kept"), Ok(1));
        a.add_match("type='signal',interface='com.example.Sig'");
        let serial = a.send(&RawMessage::call(
            Some("com.example.Kept"),
            "/",
            Some("com.example.I"),
            "M",
        ));
        let call = b.wait_for(|m| m.mtype == METHOD_CALL);
        bus.rewrite("bus.conf", &busconfig(CLOSED));
        assert!(reload(&mut a).is_return(), "{kind:?}");
        // The pending call is still answered; the name is still owned; the match still works.
        b.send(&RawMessage::reply_to(&call, None));
        assert!(a.wait_reply(serial).is_return(), "{kind:?}");
        let owner = a.bus_ok("GetNameOwner", vec![Value::str("com.example.Kept")]);
        assert_eq!(owner, [Value::str(&b.unique_name.clone())]);
        b.send(&RawMessage::signal("/", "com.example.Sig", "S"));
        a.wait_for(|m| m.is_signal("com.example.Sig", "S"));
    }
}
