//! Service activation: starting the owner of a name when a message needs it.
//!
//! The I/O layer tells the bus which services exist ([`Bus::set_services`], from `.service`
//! files). A message for an unowned name that a service provides — unless it carries
//! NO_AUTO_START — and a `StartServiceByName` call wait here, in arrival order, while the bus asks
//! for the service to start:
//!
//! * by **systemd** when the bus runs with systemd activation and the service names a
//!   `SystemdService`: an `ActivationRequest` signal to `org.freedesktop.systemd1` (held until
//!   systemd is on the bus), whose `ActivationFailure` answer fails the activation;
//! * otherwise **directly**: [`Action::Activate`] asks the I/O layer to run the service's `Exec`,
//!   which reports a failure with [`Bus::activation_failed`].
//!
//! When the name gets an owner, the waiting messages are routed in order and the waiting
//! `StartServiceByName` calls answered. When `service_start_timeout` passes first, or the start
//! fails, every waiting caller gets an error at once: never a silent drop.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tram_wire::{BodyReader, Message, MessageBuilder};

use crate::PeerId;
use crate::bus::{Action, Bus, DRIVER_NAME, DRIVER_PATH, error};

/// The name systemd owns on the bus.
pub(crate) const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";
/// The interface of systemd's activation signals.
pub(crate) const SYSTEMD_ACTIVATOR: &str = "org.freedesktop.systemd1.Activator";

/// A service the bus can start, from a `.service` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The bus name it provides (`Name=`).
    pub name: String,
    /// The command line (`Exec=`), if any.
    pub exec: Option<String>,
    /// The user to run it as (`User=`, system bus).
    pub user: Option<String>,
    /// The systemd unit that provides it (`SystemdService=`).
    pub systemd_service: Option<String>,
}

/// What the bus asks the I/O layer to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRequest {
    /// The service.
    pub service: Service,
    /// The activation environment (UpdateActivationEnvironment), to add to the bus's own.
    pub environment: BTreeMap<String, String>,
}

/// The activation state: known services and names being started.
#[derive(Debug, Default)]
pub(crate) struct Activations {
    services: HashMap<Box<str>, Service>,
    pending: HashMap<Box<str>, Pending>,
    /// Units to ask systemd for once it is on the bus.
    systemd_backlog: Vec<String>,
}

#[derive(Debug)]
struct Pending {
    deadline: Instant,
    waiting: Vec<Waiter>,
}

#[derive(Debug)]
enum Waiter {
    /// A message for the name, to route once it has an owner.
    Message { from: PeerId, msg: Message },
    /// A StartServiceByName call to answer.
    Start { from: PeerId, serial: u32 },
}

impl Activations {
    /// Whether a service provides `name`. A unique name never is: most messages are addressed
    /// to one, and go by without hashing the name.
    pub(crate) fn provides(&self, name: &str) -> bool {
        !name.starts_with(':') && self.services.contains_key(name)
    }

    /// Every activatable name.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(|k| &**k)
    }

    /// The earliest start deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

impl Bus {
    /// Replaces the set of activatable services (at start-up, and whenever the service
    /// directories change). Emits `ActivatableServicesChanged` when the set of names changed.
    pub fn set_services(&mut self, services: Vec<Service>) {
        let mut map: HashMap<Box<str>, Service> = HashMap::new();
        for s in services {
            // The first directory that provides a name wins, as the caller lists them.
            map.entry(s.name.as_str().into()).or_insert(s);
        }
        let changed = map.len() != self.activations.services.len()
            || map
                .keys()
                .any(|k| !self.activations.services.contains_key(k));
        self.activations.services = map;
        if changed {
            let serial = self.next_serial();
            let msg =
                MessageBuilder::signal(DRIVER_PATH, DRIVER_NAME, "ActivatableServicesChanged")
                    .sender(DRIVER_NAME)
                    .build(serial);
            self.broadcast_from_driver(&msg);
        }
    }

    /// Starting the service for `name` failed (it could not be executed, or exited before
    /// owning its name): every waiting caller gets `error_name` with `text`, for example
    /// `org.freedesktop.DBus.Error.Spawn.ChildExited`.
    pub fn activation_failed(&mut self, name: &str, error_name: &str, text: &str) {
        let Some(pending) = self.activations.pending.remove(name) else {
            return;
        };
        for waiter in pending.waiting {
            match waiter {
                Waiter::Message { from, msg } => self.refuse(from, &msg, error_name, text),
                Waiter::Start { from, serial } => {
                    self.answer_start(from, serial, Err((error_name, text)))
                }
            }
        }
    }

    /// Queues a message for `name`, which is unowned but activatable, and starts the service if
    /// it is not starting already.
    pub(crate) fn activate_for_message(&mut self, from: PeerId, name: &str, msg: Message) {
        if self.begin_activation(name).is_err() {
            let text = format!(
                "The maximum number of pending activations has been reached, activation of \
                 {name} failed"
            );
            return self.refuse(from, &msg, error::LIMITS_EXCEEDED, &text);
        }
        if let Some(p) = self.activations.pending.get_mut(name) {
            p.waiting.push(Waiter::Message { from, msg });
        }
    }

    /// StartServiceByName for an activatable name: answered once the name has an owner.
    pub(crate) fn activate_for_start(
        &mut self,
        from: PeerId,
        name: &str,
        serial: u32,
    ) -> Result<(), (&'static str, String)> {
        if self.begin_activation(name).is_err() {
            let text = format!(
                "The maximum number of pending activations has been reached, activation of \
                 {name} failed"
            );
            return Err((error::LIMITS_EXCEEDED, text));
        }
        if let Some(p) = self.activations.pending.get_mut(name) {
            p.waiting.push(Waiter::Start { from, serial });
        }
        Ok(())
    }

    /// `name` got an owner: if it was being activated, route what waited for it, in order.
    pub(crate) fn activation_done(&mut self, name: &str) {
        if name == SYSTEMD_NAME && !self.activations.systemd_backlog.is_empty() {
            for unit in std::mem::take(&mut self.activations.systemd_backlog) {
                self.request_from_systemd(&unit);
            }
        }
        let Some(pending) = self.activations.pending.remove(name) else {
            return;
        };
        let now = self.now;
        for waiter in pending.waiting {
            match waiter {
                Waiter::Message { from, msg } => {
                    if self.peers.get(from).is_some() {
                        self.unicast(now, from, msg);
                    }
                }
                // DBUS_START_REPLY_SUCCESS
                Waiter::Start { from, serial } => self.answer_start(from, serial, Ok(1)),
            }
        }
    }

    /// Fails every activation whose deadline has passed.
    pub(crate) fn expire_activations(&mut self, now: Instant) {
        let late: Vec<Box<str>> = self
            .activations
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let timeout = self.config.limits.service_start_timeout.as_millis();
        for name in late {
            let text = format!(
                "Failed to activate service '{name}': timed out \
                 (service_start_timeout={timeout}ms)"
            );
            self.activation_failed(&name, error::TIMED_OUT, &text);
        }
    }

    /// A signal for the driver from systemd: ActivationFailure(unit, error name, message).
    pub(crate) fn systemd_signal(&mut self, from: PeerId, msg: &Message) {
        if msg.interface() != Some(SYSTEMD_ACTIVATOR)
            || msg.member() != Some("ActivationFailure")
            || msg.signature() != "sss"
            || self.resolve(SYSTEMD_NAME) != Some(from)
        {
            return;
        }
        let mut args = BodyReader::new(msg);
        let (Ok(unit), Ok(error_name), Ok(text)) =
            (args.read_str(), args.read_str(), args.read_str())
        else {
            return;
        };
        let failed: Vec<String> = self
            .activations
            .pending
            .keys()
            .filter(|n| {
                self.activations
                    .services
                    .get(&***n)
                    .and_then(|s| s.systemd_service.as_deref())
                    == Some(unit)
            })
            .map(|n| n.to_string())
            .collect();
        let error_name = if tram_wire::names::is_valid_error_name(error_name) {
            error_name.to_owned()
        } else {
            error::FAILED.to_owned()
        };
        for name in failed {
            self.activation_failed(&name, &error_name, text);
        }
    }

    /// Starts activating `name` unless it is already starting. `Err` when too many are.
    fn begin_activation(&mut self, name: &str) -> Result<(), ()> {
        if self.activations.pending.contains_key(name) {
            return Ok(());
        }
        if self.activations.pending.len() as u64 >= self.config.limits.max_pending_service_starts {
            return Err(());
        }
        let Some(service) = self.activations.services.get(name).cloned() else {
            return Err(());
        };
        let deadline = self.now + self.config.limits.service_start_timeout;
        self.activations.pending.insert(
            name.into(),
            Pending {
                deadline,
                waiting: Vec::new(),
            },
        );
        match service.systemd_service.clone() {
            Some(unit) if self.config.systemd_activation => {
                if self.resolve(SYSTEMD_NAME).is_some() {
                    self.request_from_systemd(&unit);
                } else {
                    self.activations.systemd_backlog.push(unit);
                }
            }
            _ if self.config.systemd_activation && name == SYSTEMD_NAME => {
                // systemd itself is starting: it will take its name on its own.
            }
            _ => {
                let environment = self.activation_env.clone();
                self.act(Action::Activate(ActivationRequest {
                    service,
                    environment,
                }));
            }
        }
        Ok(())
    }

    /// Sends systemd an ActivationRequest for `unit`.
    fn request_from_systemd(&mut self, unit: &str) {
        let Some(systemd) = self.resolve(SYSTEMD_NAME) else {
            self.activations.systemd_backlog.push(unit.to_owned());
            return;
        };
        let signal = MessageBuilder::signal(DRIVER_PATH, SYSTEMD_ACTIVATOR, "ActivationRequest")
            .destination(SYSTEMD_NAME)
            .body("s", |w| w.string(unit));
        self.send_driver(systemd, signal);
    }

    fn answer_start(&mut self, to: PeerId, serial: u32, result: Result<u32, (&str, &str)>) {
        let Some(unique) = self.peers.get(to).and_then(|p| p.unique.clone()) else {
            return;
        };
        let reply = match result {
            Ok(code) => MessageBuilder::method_return(serial).body("u", |w| w.u32(code)),
            Err((name, text)) => MessageBuilder::error(serial, name).body("s", |w| w.string(text)),
        };
        self.send_driver(to, reply.destination(&unique));
    }
}
