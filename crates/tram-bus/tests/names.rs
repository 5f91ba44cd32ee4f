//! Name ownership through the driver: RequestName, ReleaseName, queues, and the signals.

mod harness;

use harness::*;

fn request(h: &mut Harness, peer: tram_bus::PeerId, name: &str, flags: u32) -> u32 {
    u32_of(&h.driver(peer, "RequestName", "su", |w| {
        w.string(name);
        w.u32(flags);
    }))
}

fn release(h: &mut Harness, peer: tram_bus::PeerId, name: &str) -> u32 {
    u32_of(&h.driver(peer, "ReleaseName", "s", |w| w.string(name)))
}

fn watch_owner_changes(h: &mut Harness, peer: tram_bus::PeerId) {
    let reply = h.driver(peer, "AddMatch", "s", |w| {
        w.string("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'")
    });
    assert_eq!(error_of(&reply), "");
}

#[test]
fn hello_reply_comes_before_name_acquired() {
    let mut h = Harness::new();
    let id = h.connect();
    h.send(id, call(DRIVER, DRIVER_PATH, Some(DRIVER), "Hello"));
    let got = h.take_described(id);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("return (\":1."), "{got:?}");
    assert!(got[1].starts_with("signal NameAcquired(\":1."), "{got:?}");
}

#[test]
fn anything_before_hello_is_refused() {
    let mut h = Harness::new();
    let id = h.connect();
    let s = h.send(id, call(DRIVER, DRIVER_PATH, Some(DRIVER), "ListNames"));
    assert_eq!(
        error_of(&h.reply_to(id, s)),
        "org.freedesktop.DBus.Error.AccessDenied"
    );
    assert!(h.disconnected.is_empty());
    let s = h.send(id, call(DRIVER, DRIVER_PATH, Some(DRIVER), "Hello"));
    assert_eq!(h.reply_to(id, s).signature(), "s");
    // A message for anyone else before Hello is a protocol violation.
    let early = h.connect();
    h.send(early, signal("/a", "org.example.I", "S"));
    assert_eq!(h.disconnected.len(), 1);
    assert_eq!(h.disconnected[0].0, early);
}

#[test]
fn request_name_results_and_signal_order() {
    let mut h = Harness::new();
    let (a, a_name) = h.client();
    let (b, _) = h.client();
    let (watcher, _) = h.client();
    watch_owner_changes(&mut h, watcher);

    assert_eq!(request(&mut h, a, "org.example.Name", 0), 1);
    assert_eq!(
        h.take_described(a),
        ["signal NameAcquired(\"org.example.Name\")"]
    );
    assert_eq!(
        h.take_described(watcher),
        [format!(
            "signal NameOwnerChanged(\"org.example.Name\",\"\",\"{a_name}\")"
        )]
    );
    assert_eq!(
        request(&mut h, a, "org.example.Name", 0),
        4,
        "already owner"
    );
    assert_eq!(
        request(&mut h, b, "org.example.Name", 4),
        3,
        "exists, not queued"
    );
    assert_eq!(request(&mut h, b, "org.example.Name", 0), 2, "queued");
    assert!(h.take(b).is_empty());
}

#[test]
fn replacement_moves_ownership_and_queues_the_old_owner() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let (b, b_name) = h.client();
    assert_eq!(request(&mut h, a, "org.example.Name", 1), 1);
    h.take(a);
    assert_eq!(request(&mut h, b, "org.example.Name", 2), 1);
    assert_eq!(
        h.take_described(a),
        ["signal NameLost(\"org.example.Name\")"]
    );
    assert_eq!(
        h.take_described(b),
        ["signal NameAcquired(\"org.example.Name\")"]
    );
    let owners = h.driver(a, "ListQueuedOwners", "s", |w| w.string("org.example.Name"));
    let list = tram_wire::BodyReader::new(&owners)
        .read_str_array()
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], b_name);
    // The new owner leaves: the old one gets the name back.
    h.disconnect(b);
    assert_eq!(
        h.take_described(a),
        ["signal NameAcquired(\"org.example.Name\")"]
    );
}

#[test]
fn release_name_results() {
    let mut h = Harness::new();
    let (a, _) = h.client();
    let (b, _) = h.client();
    assert_eq!(release(&mut h, a, "org.example.Nobody"), 2);
    request(&mut h, a, "org.example.Name", 0);
    assert_eq!(release(&mut h, b, "org.example.Name"), 3);
    request(&mut h, b, "org.example.Name", 0);
    h.take(b);
    assert_eq!(release(&mut h, a, "org.example.Name"), 1);
    assert_eq!(
        h.take_described(b),
        ["signal NameAcquired(\"org.example.Name\")"]
    );
    let owner = h.driver(a, "GetNameOwner", "s", |w| w.string("org.example.Name"));
    assert_eq!(owner.signature(), "s");
}

#[test]
fn invalid_and_reserved_names_are_refused() {
    let mut h = Harness::new();
    let (a, a_name) = h.client();
    for name in [
        ":1.77",
        "org.freedesktop.DBus",
        "nodots",
        "org..example",
        "org.1ex",
    ] {
        let reply = h.driver(a, "RequestName", "su", |w| {
            w.string(name);
            w.u32(0);
        });
        assert_eq!(
            error_of(&reply),
            "org.freedesktop.DBus.Error.InvalidArgs",
            "{name}"
        );
    }
    let reply = h.driver(a, "ReleaseName", "s", |w| w.string(&a_name));
    assert_eq!(error_of(&reply), "org.freedesktop.DBus.Error.InvalidArgs");
}

#[test]
fn disconnect_releases_names_then_the_unique_name() {
    let mut h = Harness::new();
    let (a, a_name) = h.client();
    let (watcher, _) = h.client();
    request(&mut h, a, "org.example.One", 0);
    request(&mut h, a, "org.example.Two", 0);
    watch_owner_changes(&mut h, watcher);
    h.disconnect(a);
    assert_eq!(
        h.take_described(watcher),
        [
            format!("signal NameOwnerChanged(\"org.example.Two\",\"{a_name}\",\"\")"),
            format!("signal NameOwnerChanged(\"org.example.One\",\"{a_name}\",\"\")"),
            format!("signal NameOwnerChanged(\"{a_name}\",\"{a_name}\",\"\")"),
        ]
    );
    let reply = h.driver(watcher, "NameHasOwner", "s", |w| {
        w.string("org.example.One")
    });
    assert_eq!(reply.signature(), "b");
    assert_eq!(reply.body()[0], 0);
}
