//! Unix fd passing through the bus: fds arrive usable and in order, broadcasts carry them to
//! every capable receiver, peers that did not negotiate fd passing are protected, and misuse
//! disconnects the sender.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use common::*;

const NAME: &str = "com.example.Fds";
const PATH: &str = "/com/example/Test";
const IFACE: &str = "com.example.Test";

fn pipe_with(text: &str) -> OwnedFd {
    let (r, w) = rustix::pipe::pipe().expect("pipe");
    File::from(w)
        .write_all(text.as_bytes())
        .expect("writing the pipe");
    r
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    File::from(fd)
        .read_to_string(&mut s)
        .expect("reading a passed fd");
    s
}

fn call_with_fds(dest: &str, n: u32) -> RawMessage {
    let args = (0..n).map(Value::Fd).collect();
    RawMessage::call(Some(dest), PATH, Some(IFACE), "Take")
        .args(args)
        .unix_fds(n)
}

/// A client that authenticated without NEGOTIATE_UNIX_FD.
fn client_without_fds(bus: &TestBus) -> RawClient {
    let mut c = bus.raw_unauthenticated();
    c.authenticate(false);
    c.hello();
    c
}

#[test]
fn a_pipe_passed_between_raw_clients_is_usable() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let fd = pipe_with("through the bus");
    a.send_with_fds(&call_with_fds(&bn, 1), &[fd.as_fd()]);
    drop(fd);
    let mut got = b.wait_for(|m| m.mtype == METHOD_CALL);
    assert_eq!(got.unix_fds, Some(1), "{}", got.describe());
    assert_eq!(got.signature, "h");
    assert_eq!(got.body, [Value::Fd(0)]);
    assert_eq!(got.fds.len(), 1, "the fd did not arrive");
    assert_eq!(read_all(got.fds.remove(0)), "through the bus");
}

#[test]
fn several_fds_keep_their_order() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let fds: Vec<OwnedFd> = ["zero", "one", "two"]
        .iter()
        .map(|t| pipe_with(t))
        .collect();
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    a.send_with_fds(&call_with_fds(&bn, 3), &borrowed);
    drop(borrowed);
    drop(fds);
    let got = b.wait_for(|m| m.mtype == METHOD_CALL);
    let texts: Vec<String> = got.fds.into_iter().map(read_all).collect();
    assert_eq!(texts, ["zero", "one", "two"]);
}

#[test]
fn python_dbus_passes_an_fd() {
    let bus = TestBus::start();
    let svc = Service::spawn(&bus, Some(NAME));
    let out = bus.python(&format!(
        "r, w = os.pipe()\n\
         os.write(w, b'from python')\n\
         os.close(w)\n\
         o = bus.get_object('{NAME}', '{PATH}', introspect=False)\n\
         print(o.ReadFd(dbus.types.UnixFd(r), dbus_interface='{IFACE}'))\n"
    ));
    assert_eq!(out.ok(), "from python\n", "{out:#?}");
    let calls = svc.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].fds, 1);
    assert_eq!(calls[0].body, [Value::Fd(0)]);
}

#[test]
fn zbus_sends_and_receives_fds() {
    let bus = TestBus::start();
    let _svc = Service::spawn(&bus, Some(NAME));
    let z = bus.zbus();
    let text = run({
        let z = z.clone();
        async move {
            let fd = pipe_with("from zbus");
            let reply = z
                .call_method(
                    Some(NAME),
                    PATH,
                    Some(IFACE),
                    "ReadFd",
                    &(zbus::Fd::from(&fd),),
                )
                .await?;
            reply.body().deserialize::<String>()
        }
    });
    assert_eq!(text.ok().as_deref(), Some("from zbus"));

    // Echo hands the fd back: zbus receives a working duplicate.
    let (r, w) = rustix::pipe::pipe().expect("pipe");
    let echoed = run({
        let z = z.clone();
        async move {
            let reply = z
                .call_method(
                    Some(NAME),
                    PATH,
                    Some(IFACE),
                    "Echo",
                    &(zbus::Fd::from(&r),),
                )
                .await?;
            let fd: zbus::OwnedFd = reply.body().deserialize()?;
            Ok::<OwnedFd, zbus::Error>(fd.into())
        }
    })
    .unwrap_or_else(|e| panic!("zbus Echo with an fd: {e}"));
    File::from(w)
        .write_all(b"round trip")
        .expect("writing the pipe");
    assert_eq!(read_all(echoed), "round trip");
}

#[test]
fn broadcast_fds_reach_every_capable_receiver() {
    let bus = TestBus::start();
    let mut receivers: Vec<RawClient> = (0..2).map(|_| bus.raw()).collect();
    let mut no_fds = client_without_fds(&bus);
    for r in receivers.iter_mut().chain([&mut no_fds]) {
        r.add_match("type='signal',interface='com.example.Test'");
    }
    let mut e = bus.raw();
    let en = e.unique_name.clone();
    let (r, w) = rustix::pipe::pipe().expect("pipe");
    let signal = RawMessage::signal(PATH, IFACE, "Fd")
        .args(vec![Value::Fd(0)])
        .unix_fds(1);
    e.send_with_fds(&signal, &[r.as_fd()]);
    drop(r);
    let plain = e.send(&RawMessage::signal(PATH, IFACE, "Plain"));
    e.sync();
    let mut got_fds = Vec::new();
    for c in &mut receivers {
        let mut m =
            c.wait_for(|m| m.sender.as_deref() == Some(&en) && m.member.as_deref() == Some("Fd"));
        assert_eq!(m.fds.len(), 1, "{}", m.describe());
        got_fds.push(m.fds.remove(0));
    }
    let mut w = File::from(w);
    w.write_all(b"shared").expect("writing the pipe");
    drop(w);
    // Both receivers hold the same pipe: between them they read the text once.
    let texts: String = got_fds.into_iter().map(read_all).collect();
    assert_eq!(texts, "shared");
    // The receiver that cannot take fds is skipped, but still gets the plain signal after it.
    let seen: Vec<(String, u32)> = no_fds
        .sync()
        .iter()
        .filter(|m| m.sender.as_deref() == Some(&en))
        .map(|m| (m.member.clone().unwrap_or_default(), m.serial))
        .collect();
    assert_eq!(seen, [("Plain".to_owned(), plain)]);
}

#[test]
fn fds_to_a_peer_without_fd_support_are_refused() {
    let bus = TestBus::start();
    let mut a = bus.raw();
    let mut target = client_without_fds(&bus);
    let tn = target.unique_name.clone();
    let fd = pipe_with("nope");
    let serial = a.send_with_fds(&call_with_fds(&tn, 1), &[fd.as_fd()]);
    let reply = a.wait_reply(serial);
    reply.expect_error(err::NOT_SUPPORTED);
    assert_eq!(reply.sender.as_deref(), Some(BUS));
    let seen = target.sync();
    assert!(
        seen.iter().all(|m| m.mtype != METHOD_CALL),
        "delivered anyway: {seen:#?}"
    );
    // The sender is still connected, and calls without fds still reach the target.
    let serial = a.send(&RawMessage::call(Some(&tn), PATH, Some(IFACE), "Plain"));
    let call = target.wait_for(|m| m.mtype == METHOD_CALL);
    target.send(&RawMessage::reply_to(&call, None));
    assert!(a.wait_reply(serial).is_return());
}

#[test]
fn fd_misuse_disconnects_the_sender() {
    let bus = TestBus::start();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let fd = pipe_with("x");

    // UNIX_FDS says one, none came.
    let mut a = bus.raw();
    a.send(&call_with_fds(&bn, 1));
    a.expect_closed();

    // Fds from a connection that did not negotiate them.
    let mut a = client_without_fds(&bus);
    a.send_with_fds(&call_with_fds(&bn, 1), &[fd.as_fd()]);
    a.expect_closed();

    // UNIX_FDS on a connection that did not negotiate fds.
    let mut a = client_without_fds(&bus);
    a.send(&call_with_fds(&bn, 1));
    a.expect_closed();

    // None of it reached B, which still works.
    let seen = b.sync();
    assert!(seen.iter().all(|m| m.mtype != METHOD_CALL), "{seen:#?}");
}

#[test]
fn surplus_fds_are_never_passed_on() {
    let bus = TestBus::start();
    let mut b = bus.raw();
    let bn = b.unique_name.clone();
    let fd = pipe_with("x");
    // One fd more than UNIX_FDS declares, and an fd with no UNIX_FDS at all. The bus may drop
    // the surplus or the sender; it must not hand the receiver more than was declared.
    let mut a = bus.raw();
    a.send_with_fds(&call_with_fds(&bn, 1), &[fd.as_fd(), fd.as_fd()]);
    let _ = a.try_sync();
    let mut a2 = bus.raw();
    a2.send_with_fds(
        &RawMessage::call(Some(&bn), PATH, Some(IFACE), "NoFds"),
        &[fd.as_fd()],
    );
    let _ = a2.try_sync();
    for m in b.sync() {
        if m.mtype == METHOD_CALL {
            let declared = m.unix_fds.unwrap_or(0) as usize;
            assert!(
                m.fds.len() <= declared,
                "{} carried {} fds",
                m.describe(),
                m.fds.len()
            );
        }
    }
    assert_eq!(b.unclaimed_fds(), 0, "fds arrived that no message declared");
}
