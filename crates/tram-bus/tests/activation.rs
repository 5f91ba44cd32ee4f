//! Service activation through the bus core: waiting messages, StartServiceByName, failures,
//! timeouts and systemd.

mod harness;

use std::time::Duration;

use harness::*;
use tram_bus::policy::Policy;
use tram_bus::{Limits, Service};
use tram_wire::Flags;

fn service(name: &str, unit: Option<&str>) -> Service {
    Service {
        name: name.into(),
        exec: Some(format!("/usr/libexec/{name}")),
        user: None,
        systemd_service: unit.map(Into::into),
    }
}

fn request_name(h: &mut Harness, peer: tram_bus::PeerId, name: &str) -> u32 {
    u32_of(&h.driver(peer, "RequestName", "su", |w| {
        w.string(name);
        w.u32(0);
    }))
}

#[test]
fn messages_wait_in_order_until_the_service_owns_its_name() {
    let mut h = Harness::new();
    h.bus.set_services(vec![service("org.example.Svc", None)]);
    let (a, a_name) = h.client();
    let s1 = h.send(a, call("org.example.Svc", "/", None, "First"));
    let s2 = h.send(a, call("org.example.Svc", "/", None, "Second"));
    assert_eq!(h.activations.len(), 1, "one start for both messages");
    assert_eq!(h.activations[0].service.name, "org.example.Svc");
    assert!(h.take(a).is_empty(), "nothing answered yet");
    let (svc, _) = h.client();
    assert_eq!(request_name(&mut h, svc, "org.example.Svc"), 1);
    let got: Vec<_> = h
        .take(svc)
        .into_iter()
        .filter(|m| m.sender() == Some(a_name.as_str()))
        .map(|m| (m.member().unwrap_or("").to_owned(), m.serial()))
        .collect();
    assert_eq!(got, [("First".to_owned(), s1), ("Second".to_owned(), s2)]);
}

#[test]
fn a_failed_start_answers_every_waiting_caller() {
    let mut h = Harness::new();
    h.bus
        .set_services(vec![service("org.example.Broken", None)]);
    let (a, _) = h.client();
    let (b, _) = h.client();
    let s1 = h.send(a, call("org.example.Broken", "/", None, "M"));
    let s2 = h.send(
        b,
        call(DRIVER, DRIVER_PATH, Some(DRIVER), "StartServiceByName").body("su", |w| {
            w.string("org.example.Broken");
            w.u32(0);
        }),
    );
    h.bus.activation_failed(
        "org.example.Broken",
        "org.freedesktop.DBus.Error.Spawn.ChildExited",
        "Process org.example.Broken exited with status 1",
    );
    h.drain();
    let spawn = "org.freedesktop.DBus.Error.Spawn.ChildExited";
    assert_eq!(error_of(&h.reply_to(a, s1)), spawn);
    assert_eq!(error_of(&h.reply_to(b, s2)), spawn);
}

#[test]
fn start_service_by_name_succeeds_when_owned_and_times_out_otherwise() {
    let limits = Limits {
        service_start_timeout: Duration::from_secs(5),
        ..Limits::session()
    };
    let mut h = Harness::with(Policy::session(), limits);
    h.bus.set_services(vec![
        service("org.example.Svc", None),
        service("org.example.Slow", None),
    ]);
    let (a, _) = h.client();
    let start = |name: &'static str| {
        call(DRIVER, DRIVER_PATH, Some(DRIVER), "StartServiceByName").body("su", move |w| {
            w.string(name);
            w.u32(0);
        })
    };
    let s = h.send(a, start("org.example.Svc"));
    let (svc, _) = h.client();
    request_name(&mut h, svc, "org.example.Svc");
    assert_eq!(u32_of(&h.reply_to(a, s)), 1, "DBUS_START_REPLY_SUCCESS");
    let s = h.send(a, start("org.example.Svc"));
    assert_eq!(
        u32_of(&h.reply_to(a, s)),
        2,
        "DBUS_START_REPLY_ALREADY_RUNNING"
    );
    let s = h.send(a, start("org.example.Slow"));
    let deadline = h.bus.poll_timeout().expect("a start deadline");
    h.now = deadline;
    h.bus.handle_timeout(h.now);
    h.drain();
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.TimedOut"
    );
}

#[test]
fn no_auto_start_and_unknown_names_do_not_activate() {
    let mut h = Harness::new();
    h.bus.set_services(vec![service("org.example.Svc", None)]);
    let (a, _) = h.client();
    let s = h.send(
        a,
        call("org.example.Svc", "/", None, "M").flags(Flags(Flags::NO_AUTO_START)),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.DBus.Error.NameHasNoOwner"
    );
    assert!(h.activations.is_empty());
    let names = h.driver(a, "ListActivatableNames", "", |_| {});
    let list = tram_wire::BodyReader::new(&names).read_str_array().unwrap();
    assert_eq!(list, ["org.freedesktop.DBus", "org.example.Svc"]);
}

#[test]
fn systemd_activation_asks_systemd_and_hears_its_failures() {
    let mut h = Harness::new();
    let mut config = h.bus.config().clone();
    config.systemd_activation = true;
    h.bus.reload(config);
    h.bus
        .set_services(vec![service("org.example.Unit", Some("example.service"))]);
    let (a, _) = h.client();
    let s = h.send(a, call("org.example.Unit", "/", None, "M"));
    assert!(
        h.activations.is_empty(),
        "no direct start under systemd activation"
    );
    // systemd arrives later and is then asked.
    let (systemd, _) = h.client();
    request_name(&mut h, systemd, "org.freedesktop.systemd1");
    let asked = h.take_described(systemd);
    assert!(
        asked.contains(&"signal ActivationRequest(\"example.service\")".to_owned()),
        "{asked:?}"
    );
    h.send(
        systemd,
        signal(
            DRIVER_PATH,
            "org.freedesktop.systemd1.Activator",
            "ActivationFailure",
        )
        .destination(DRIVER)
        .body("sss", |w| {
            w.string("example.service");
            w.string("org.freedesktop.systemd1.NoSuchUnit");
            w.string("Unit example.service not found.");
        }),
    );
    assert_eq!(
        error_of(&h.reply_to(a, s)),
        "org.freedesktop.systemd1.NoSuchUnit"
    );
}

#[test]
fn changed_services_are_announced() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let rule = "type='signal',member='ActivatableServicesChanged'";
    assert_eq!(
        error_of(&h.driver(a, "AddMatch", "s", |w| w.string(rule))),
        ""
    );
    h.bus.set_services(vec![service("org.example.New", None)]);
    h.drain();
    assert_eq!(h.take_described(a), ["signal ActivatableServicesChanged()"]);
    h.bus.set_services(vec![service("org.example.New", None)]);
    h.drain();
    assert!(h.take(a).is_empty(), "no change, no signal");
}
