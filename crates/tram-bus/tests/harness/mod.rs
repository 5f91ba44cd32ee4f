//! A simulated bus with scripted clients and no sockets: what the bus queues for a peer is
//! re-parsed into messages the test reads in order.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tram_bus::{Action, Bus, BusConfig, Credentials, PeerId};
use tram_wire::{BodyReader, BodyWriter, Message, MessageBuilder, MessageType};

pub const DRIVER: &str = "org.freedesktop.DBus";
pub const DRIVER_PATH: &str = "/org/freedesktop/DBus";

/// The bus under test and what each simulated client has received.
pub struct Harness {
    pub bus: Bus,
    pub now: Instant,
    inboxes: HashMap<PeerId, VecDeque<Message>>,
    serials: HashMap<PeerId, u32>,
    pub disconnected: Vec<(PeerId, String)>,
    /// What the bus asked to start, oldest first.
    pub activations: Vec<tram_bus::ActivationRequest>,
    /// Peers that never read: what the bus queues for them stays queued.
    stalled: Vec<PeerId>,
    /// The rejections the bus asked to log, oldest first.
    pub denied: Vec<String>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(
            tram_bus::policy::Policy::session(),
            tram_bus::Limits::session(),
        )
    }

    /// A bus with this policy and these limits.
    pub fn with(policy: tram_bus::policy::Policy, limits: tram_bus::Limits) -> Harness {
        let config = BusConfig {
            guid: "0123456789abcdef0123456789abcdef".into(),
            machine_id: "fedcba9876543210fedcba9876543210".into(),
            bus_type: "session".into(),
            bus_uid: 1000,
            bus_pid: 1,
            policy,
            systemd_activation: false,
            service_helper: false,
            limits,
        };
        Harness {
            bus: Bus::new(config),
            now: Instant::now(),
            inboxes: HashMap::new(),
            serials: HashMap::new(),
            disconnected: Vec::new(),
            activations: Vec::new(),
            stalled: Vec::new(),
            denied: Vec::new(),
        }
    }

    /// A connection that authenticated but has not said Hello.
    pub fn connect(&mut self) -> PeerId {
        let creds = Credentials {
            uid: 1000,
            gid: 1000,
            pid: Some(4242),
            groups: vec![1000, 27],
            ..Default::default()
        };
        let id = self.bus.connect(self.now, creds, true);
        self.inboxes.insert(id, VecDeque::new());
        id
    }

    /// A connection that said Hello; returns it and its unique name, with its inbox emptied.
    pub fn client(&mut self) -> (PeerId, String) {
        self.client_as(1000)
    }

    /// [`Harness::client`] for user `uid`.
    pub fn client_as(&mut self, uid: u32) -> (PeerId, String) {
        let creds = Credentials {
            uid,
            gid: uid,
            pid: Some(4242),
            groups: vec![uid],
            ..Default::default()
        };
        let id = self.bus.connect(self.now, creds, true);
        self.inboxes.insert(id, VecDeque::new());
        let serial = self.send(id, call(DRIVER, DRIVER_PATH, Some(DRIVER), "Hello"));
        let reply = self.reply_to(id, serial);
        let unique = BodyReader::new(&reply).read_str().unwrap().to_owned();
        self.inboxes.get_mut(&id).unwrap().clear();
        (id, unique)
    }

    /// Sends a message built by `builder` from `from` with the next serial; returns the serial.
    pub fn send(&mut self, from: PeerId, builder: MessageBuilder) -> u32 {
        let serial = self.serials.entry(from).or_insert(0);
        *serial += 1;
        let serial = *serial;
        let msg = builder.build(serial);
        self.bus.handle_message(self.now, from, msg);
        self.drain();
        serial
    }

    /// Calls a driver method.
    pub fn driver(
        &mut self,
        from: PeerId,
        member: &str,
        sig: &str,
        body: impl FnOnce(&mut BodyWriter),
    ) -> Message {
        let mut b = call(DRIVER, DRIVER_PATH, Some(DRIVER), member);
        if !sig.is_empty() {
            b = b.body(sig, body);
        }
        let serial = self.send(from, b);
        self.reply_to(from, serial)
    }

    /// Removes and returns the reply to `serial` from `peer`'s inbox, keeping the rest.
    pub fn reply_to(&mut self, peer: PeerId, serial: u32) -> Message {
        let inbox = self.inboxes.get_mut(&peer).expect("known peer");
        let i = inbox
            .iter()
            .position(|m| m.reply_serial() == Some(serial))
            .unwrap_or_else(|| {
                panic!(
                    "no reply to serial {serial}; inbox: {:?}",
                    describe_all(inbox)
                )
            });
        inbox.remove(i).unwrap()
    }

    /// Everything `peer` received since the last call, oldest first.
    pub fn take(&mut self, peer: PeerId) -> Vec<Message> {
        self.inboxes
            .get_mut(&peer)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// A short text for each message `peer` received, oldest first (and clears the inbox).
    pub fn take_described(&mut self, peer: PeerId) -> Vec<String> {
        self.take(peer).iter().map(describe).collect()
    }

    /// From now on `peer` reads nothing: its queue only grows.
    pub fn ignore(&mut self, peer: PeerId) {
        self.stalled.push(peer);
    }

    pub fn disconnect(&mut self, peer: PeerId) {
        self.bus.disconnect(self.now, peer);
        self.inboxes.remove(&peer);
        self.drain();
    }

    /// Moves everything the bus queued into the inboxes, and records disconnections.
    pub fn drain(&mut self) {
        while let Some(action) = self.bus.poll_action() {
            match action {
                Action::Disconnect { peer, reason } => {
                    self.inboxes.remove(&peer);
                    self.disconnected.push((peer, reason));
                }
                Action::Activate(request) => self.activations.push(request),
                Action::Denied(text) => self.denied.push(text),
                Action::Reload(token) => {
                    let config = self.bus.config().clone();
                    self.bus.finish_reload(token, Ok(config));
                }
                _ => panic!("unexpected action"),
            }
        }
        let mut dirty = Vec::new();
        self.bus.take_dirty(&mut dirty);
        for peer in dirty {
            if self.stalled.contains(&peer) {
                continue;
            }
            let Some(q) = self.bus.tx_queue(peer) else {
                continue;
            };
            let mut received = Vec::new();
            for out in q.iter() {
                let mut bytes = Vec::with_capacity(out.len());
                for part in out.parts() {
                    bytes.extend_from_slice(part);
                }
                let fds = out.fds().iter().map(|f| f.try_clone().unwrap()).collect();
                received
                    .push(Message::parse(Arc::from(bytes), fds).expect("bus sent a valid message"));
            }
            let n = q.bytes();
            q.consume(n);
            assert!(q.is_empty());
            if let Some(inbox) = self.inboxes.get_mut(&peer) {
                inbox.extend(received);
            }
        }
    }
}

/// A method call.
pub fn call(dest: &str, path: &str, iface: Option<&str>, member: &str) -> MessageBuilder {
    MessageBuilder::method_call(path, iface, member).destination(dest)
}

/// A broadcast signal.
pub fn signal(path: &str, iface: &str, member: &str) -> MessageBuilder {
    MessageBuilder::signal(path, iface, member)
}

/// `type member(args) sender→dest` for assertions that read like a trace.
pub fn describe(m: &Message) -> String {
    let kind = match m.message_type() {
        MessageType::MethodCall => "call",
        MessageType::MethodReturn => "return",
        MessageType::Error => "error",
        MessageType::Signal => "signal",
        MessageType::Unknown(_) => "unknown",
    };
    let what = m.error_name().or(m.member()).unwrap_or("");
    let mut args = Vec::new();
    let mut r = BodyReader::new(m);
    for a in m.args(8) {
        match a {
            tram_wire::Arg::Str(s) | tram_wire::Arg::ObjectPath(s) => args.push(format!("{s:?}")),
            _ => {
                args.push("_".into());
            }
        }
    }
    let _ = r.skip();
    if m.signature() == "u" {
        args = vec![BodyReader::new(m).read_u32().unwrap().to_string()];
    }
    format!("{kind} {what}({})", args.join(","))
}

fn describe_all(q: &VecDeque<Message>) -> Vec<String> {
    q.iter().map(describe).collect()
}

/// The `u` in a reply.
pub fn u32_of(m: &Message) -> u32 {
    assert_eq!(
        m.message_type(),
        MessageType::MethodReturn,
        "{}",
        describe(m)
    );
    BodyReader::new(m).read_u32().unwrap()
}

/// The error name of a message, or "" if it is not an error.
pub fn error_of(m: &Message) -> &str {
    m.error_name().unwrap_or("")
}
