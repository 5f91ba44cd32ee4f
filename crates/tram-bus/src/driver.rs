//! The driver: the bus's own object, `org.freedesktop.DBus` at `/org/freedesktop/DBus`.
//!
//! One table, [`METHODS`], lists every method with its interface and argument signatures. It
//! drives dispatch (an unknown interface gives UnknownInterface, an unknown member UnknownMethod,
//! wrong arguments InvalidArgs naming the expected signature) and generates the introspection
//! XML, so the two cannot disagree.
//!
//! As with dbus-daemon, the `org.freedesktop.DBus`, `Introspectable` and `Peer` interfaces answer
//! on any object path; `Properties` only on the canonical path. A reply is sent unless the call
//! carried NO_REPLY_EXPECTED; the call's effects happen either way. Signals the call causes
//! (NameOwnerChanged, NameLost, NameAcquired) are queued before its reply.

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::time::Instant;

use tram_wire::{BodyReader, BodyWriter, Message, MessageBuilder, MessageType, names};

use crate::bus::{Action, Bus, DRIVER_INTERFACE, DRIVER_NAME, DRIVER_PATH, ReloadToken, error};
use crate::match_rule::MatchRule;
use crate::names::{ReleaseReply, RequestReply};
use crate::peer::PeerId;
use crate::policy::own_denied_text;
use crate::users::Object;

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
const PEER: &str = "org.freedesktop.DBus.Peer";
const MONITORING: &str = "org.freedesktop.DBus.Monitoring";
const STATS: &str = "org.freedesktop.DBus.Debug.Stats";

/// What `Features` lists.
const FEATURES: &[&str] = &["ActivatableServicesChanged", "HeaderFiltering"];
/// Optional interfaces the driver implements beyond the core one (`Interfaces` property).
const EXTRA_INTERFACES: &[&str] = &[MONITORING, STATS];

/// One driver method.
struct Method {
    interface: &'static str,
    name: &'static str,
    input: &'static str,
    output: &'static str,
}

const fn m(
    interface: &'static str,
    name: &'static str,
    input: &'static str,
    output: &'static str,
) -> Method {
    Method {
        interface,
        name,
        input,
        output,
    }
}

/// Every method, in introspection order.
const METHODS: &[Method] = &[
    m(DRIVER_INTERFACE, "Hello", "", "s"),
    m(DRIVER_INTERFACE, "RequestName", "su", "u"),
    m(DRIVER_INTERFACE, "ReleaseName", "s", "u"),
    m(DRIVER_INTERFACE, "StartServiceByName", "su", "u"),
    m(DRIVER_INTERFACE, "UpdateActivationEnvironment", "a{ss}", ""),
    m(DRIVER_INTERFACE, "NameHasOwner", "s", "b"),
    m(DRIVER_INTERFACE, "ListNames", "", "as"),
    m(DRIVER_INTERFACE, "ListActivatableNames", "", "as"),
    m(DRIVER_INTERFACE, "AddMatch", "s", ""),
    m(DRIVER_INTERFACE, "RemoveMatch", "s", ""),
    m(DRIVER_INTERFACE, "GetNameOwner", "s", "s"),
    m(DRIVER_INTERFACE, "ListQueuedOwners", "s", "as"),
    m(DRIVER_INTERFACE, "GetConnectionUnixUser", "s", "u"),
    m(DRIVER_INTERFACE, "GetConnectionUnixProcessID", "s", "u"),
    m(DRIVER_INTERFACE, "GetAdtAuditSessionData", "s", "ay"),
    m(
        DRIVER_INTERFACE,
        "GetConnectionSELinuxSecurityContext",
        "s",
        "ay",
    ),
    m(DRIVER_INTERFACE, "ReloadConfig", "", ""),
    m(DRIVER_INTERFACE, "GetId", "", "s"),
    m(DRIVER_INTERFACE, "GetConnectionCredentials", "s", "a{sv}"),
    m(PROPERTIES, "Get", "ss", "v"),
    m(PROPERTIES, "GetAll", "s", "a{sv}"),
    m(PROPERTIES, "Set", "ssv", ""),
    m(INTROSPECTABLE, "Introspect", "", "s"),
    m(MONITORING, "BecomeMonitor", "asu", ""),
    m(STATS, "GetStats", "", "a{sv}"),
    m(STATS, "GetConnectionStats", "s", "a{sv}"),
    m(STATS, "GetAllMatchRules", "", "a{sas}"),
    m(PEER, "GetMachineId", "", "s"),
    m(PEER, "Ping", "", ""),
];

/// Interfaces in introspection order.
const INTERFACES: &[&str] = &[
    DRIVER_INTERFACE,
    PROPERTIES,
    INTROSPECTABLE,
    MONITORING,
    STATS,
    PEER,
];

/// Whether `interface` answers on object paths other than the canonical one.
fn answers_anywhere(interface: &str) -> bool {
    !matches!(interface, PROPERTIES | MONITORING | STATS)
}

/// A refusal: error name and text.
type Refusal = (&'static str, String);

/// A method's reply and the fds it carries.
struct Reply {
    msg: MessageBuilder,
    fds: Vec<OwnedFd>,
}

impl From<MessageBuilder> for Reply {
    fn from(msg: MessageBuilder) -> Reply {
        Reply {
            msg,
            fds: Vec::new(),
        }
    }
}

impl Bus {
    /// Handles a message addressed to `org.freedesktop.DBus`.
    pub(crate) fn driver_call(&mut self, _now: Instant, from: PeerId, msg: &Message) {
        if msg.message_type() == MessageType::Signal {
            return self.systemd_signal(from, msg);
        }
        if msg.message_type() != MessageType::MethodCall {
            return;
        }
        let member = msg.member().unwrap_or_default();
        let canonical = msg.path() == Some(DRIVER_PATH);
        let available = |i: &str| canonical || answers_anywhere(i);
        let method = match msg.interface() {
            Some(iface) if !INTERFACES.contains(&iface) || !available(iface) => {
                let text = format!("{DRIVER_NAME} does not understand message {member}");
                return self.refuse(from, msg, error::UNKNOWN_INTERFACE, &text);
            }
            Some(iface) => METHODS
                .iter()
                .find(|m| m.interface == iface && m.name == member),
            None => METHODS
                .iter()
                .find(|m| m.name == member && available(m.interface)),
        };
        let Some(method) = method else {
            let text = format!("{DRIVER_NAME} does not understand message {member}");
            return self.refuse(from, msg, error::UNKNOWN_METHOD, &text);
        };
        if msg.signature() != method.input {
            let text = format!(
                "Call to {member} has wrong args ({}, expected {})",
                msg.signature(),
                method.input
            );
            return self.refuse(from, msg, error::INVALID_ARGS, &text);
        }
        let result = self.run(from, msg, method);
        match result {
            Ok(Some(Reply { msg: reply, fds })) => {
                if !msg.flags().no_reply_expected() {
                    let reply = match self.peers.get(from).and_then(|p| p.unique.clone()) {
                        Some(unique) => reply.destination(&unique),
                        None => reply,
                    };
                    self.send_driver_with_fds(from, reply, fds);
                }
            }
            Ok(None) => {}
            Err((name, text)) => self.refuse(from, msg, name, &text),
        }
    }

    /// Handles a method call without destination: the bus answers the `Peer` interface itself
    /// and, as dbus-daemon does, anything else with UnknownMethod (such calls are not the
    /// driver's, and nobody else sees them).
    pub(crate) fn undirected_call(&mut self, from: PeerId, msg: &Message) {
        let member = msg.member().unwrap_or_default();
        let peer_method = matches!(msg.interface(), None | Some(PEER))
            && msg.signature().is_empty()
            && matches!(member, "Ping" | "GetMachineId");
        if !peer_method {
            let text = format!(
                "Method \"{member}\" with signature \"{}\" on interface \"{}\" doesn't exist\n",
                msg.signature(),
                msg.interface().unwrap_or("(null)")
            );
            return self.refuse(from, msg, error::UNKNOWN_METHOD, &text);
        }
        if let Some(method) = METHODS
            .iter()
            .find(|m| m.interface == PEER && m.name == member)
        {
            if let Ok(Some(reply)) = self.run(from, msg, method) {
                if !msg.flags().no_reply_expected() {
                    let unique = self.peers.get(from).and_then(|p| p.unique.clone());
                    let reply = match unique {
                        Some(unique) => reply.msg.destination(&unique),
                        None => reply.msg,
                    };
                    self.send_driver(from, reply);
                }
            }
        }
    }

    /// Runs a method whose arguments match its signature. `Ok(None)`: no reply at all.
    fn run(
        &mut self,
        from: PeerId,
        msg: &Message,
        method: &Method,
    ) -> Result<Option<Reply>, Refusal> {
        let serial = msg.serial();
        let mut args = BodyReader::new(msg);
        let reply = MessageBuilder::method_return(serial);
        let empty = Ok(Some(MessageBuilder::method_return(serial).into()));
        match (method.interface, method.name) {
            (DRIVER_INTERFACE, "Hello") => {
                Err((error::FAILED, "Already handled an Hello message".into()))
            }
            (DRIVER_INTERFACE, "RequestName") => {
                let name = arg_str(&mut args)?;
                let flags = args.read_u32().map_err(bad_args)?;
                let result = self.request_name(from, name, flags)? as u32;
                Ok(Some(reply.body("u", |w| w.u32(result)).into()))
            }
            (DRIVER_INTERFACE, "ReleaseName") => {
                let name = arg_str(&mut args)?;
                let result = self.release_name(from, name)? as u32;
                Ok(Some(reply.body("u", |w| w.u32(result)).into()))
            }
            (DRIVER_INTERFACE, "StartServiceByName") => {
                // As with dbus-daemon, a name no service file provides is unknown even while
                // it has an owner.
                let name = arg_str(&mut args)?;
                if !self.activations.provides(name) {
                    return Err(service_unknown(name));
                }
                if self.resolve(name).is_some() {
                    // DBUS_START_REPLY_ALREADY_RUNNING
                    return Ok(Some(reply.body("u", |w| w.u32(2)).into()));
                }
                self.activate_for_start(from, name, serial)?;
                Ok(None)
            }
            (DRIVER_INTERFACE, "UpdateActivationEnvironment") => {
                if msg.path() != Some(DRIVER_PATH) {
                    let text = "Cannot call UpdateActivationEnvironment at a non-canonical path";
                    return Err((error::ACCESS_DENIED, text.into()));
                }
                if self.config.bus_type == "system" || self.config.service_helper {
                    let text = "Cannot change activation environment on a system bus.";
                    return Err((error::ACCESS_DENIED, text.into()));
                }
                let uid = self.peers.get(from).map(|p| p.creds.uid);
                if uid != Some(0) && uid != Some(self.config.bus_uid) {
                    let text = "Only the bus's own user may change its activation environment";
                    return Err((error::ACCESS_DENIED, text.into()));
                }
                let vars = args.read_str_dict().map_err(bad_args)?;
                for (key, value) in vars {
                    self.activation_env.insert(key.to_owned(), value.to_owned());
                }
                empty
            }
            // The I/O layer reads the files and answers through `Bus::finish_reload`.
            (DRIVER_INTERFACE, "ReloadConfig") => {
                let no_reply = msg.flags().no_reply_expected();
                self.act(Action::Reload(ReloadToken {
                    peer: from,
                    serial,
                    no_reply,
                }));
                Ok(None)
            }
            (DRIVER_INTERFACE, "NameHasOwner") => {
                let name = arg_str(&mut args)?;
                let owned = name == DRIVER_NAME || self.resolve(name).is_some();
                Ok(Some(reply.body("b", |w| w.bool(owned)).into()))
            }
            (DRIVER_INTERFACE, "ListNames") => {
                let mut list = vec![DRIVER_NAME.to_owned()];
                list.extend(
                    self.peers
                        .registered()
                        .filter_map(|(_, p)| p.unique.as_deref().map(str::to_owned)),
                );
                list.extend(self.names.names().map(str::to_owned));
                Ok(Some(reply.body("as", |w| string_array(w, &list)).into()))
            }
            (DRIVER_INTERFACE, "ListActivatableNames") => {
                let mut list = vec![DRIVER_NAME.to_owned()];
                list.extend(self.activations.names().map(str::to_owned));
                Ok(Some(reply.body("as", |w| string_array(w, &list)).into()))
            }
            (DRIVER_INTERFACE, "AddMatch") => {
                let text = arg_str(&mut args)?;
                let rule = MatchRule::parse(text).map_err(|e| (e.error_name(), e.to_string()))?;
                let limit = self.config.limits.max_match_rules_per_connection;
                if self.matches.count(from) as u64 >= limit {
                    let text = format!(
                        "Connection \"{}\" is not allowed to add more match rules (increase \
                         limits in configuration file if required; \
                         max_match_rules_per_connection={limit})",
                        self.unique_or_empty(from)
                    );
                    return Err((error::LIMITS_EXCEEDED, text));
                }
                self.may_take(from, Object::MatchRule)
                    .map_err(|text| (error::LIMITS_EXCEEDED, text))?;
                self.matches.add(from, rule);
                self.charge(from, Object::MatchRule, 1);
                self.note_peaks(from);
                empty
            }
            (DRIVER_INTERFACE, "RemoveMatch") => {
                let text = arg_str(&mut args)?;
                let rule = MatchRule::parse(text).map_err(|e| (e.error_name(), e.to_string()))?;
                if !self.matches.remove(from, &rule) {
                    let text = "The given match rule wasn't found and can't be removed";
                    return Err((error::MATCH_RULE_NOT_FOUND, text.into()));
                }
                self.release(from, Object::MatchRule, 1);
                empty
            }
            (DRIVER_INTERFACE, "GetNameOwner") => {
                let name = arg_str(&mut args)?;
                let owner = if name == DRIVER_NAME {
                    DRIVER_NAME.to_owned()
                } else {
                    self.unique_of(name).ok_or_else(|| {
                        let text = format!("Could not get owner of name '{name}': no such name");
                        (error::NAME_HAS_NO_OWNER, text)
                    })?
                };
                Ok(Some(reply.body("s", |w| w.string(&owner)).into()))
            }
            (DRIVER_INTERFACE, "ListQueuedOwners") => {
                let name = arg_str(&mut args)?;
                let no_owner = || {
                    let text = format!("Could not get owners of name '{name}': no such name");
                    (error::NAME_HAS_NO_OWNER, text)
                };
                let list: Vec<String> = if name == DRIVER_NAME {
                    vec![DRIVER_NAME.to_owned()]
                } else if name.starts_with(':') {
                    vec![self.unique_of(name).ok_or_else(no_owner)?]
                } else {
                    let queue = self.names.queue(name).ok_or_else(no_owner)?;
                    queue
                        .filter_map(|id| self.peers.get(id).and_then(|p| p.unique.as_deref()))
                        .map(str::to_owned)
                        .collect()
                };
                Ok(Some(reply.body("as", |w| string_array(w, &list)).into()))
            }
            (DRIVER_INTERFACE, "GetConnectionUnixUser") => {
                let name = arg_str(&mut args)?;
                let uid = match self.connection(name, "UID")? {
                    None => Some(self.config.bus_uid),
                    // An anonymous connection (ANONYMOUS, or TCP) has no user.
                    Some(id) => self
                        .peers
                        .get(id)
                        .filter(|p| !p.creds.anonymous)
                        .map(|p| p.creds.uid),
                };
                let uid = uid.ok_or_else(|| {
                    (
                        error::FAILED,
                        format!("Could not determine UID for '{name}'"),
                    )
                })?;
                Ok(Some(reply.body("u", |w| w.u32(uid)).into()))
            }
            (DRIVER_INTERFACE, "GetConnectionUnixProcessID") => {
                let name = arg_str(&mut args)?;
                let pid = match self.connection(name, "PID")? {
                    None => Some(self.config.bus_pid),
                    Some(id) => self.peers.get(id).and_then(|p| p.creds.pid),
                };
                let pid = pid.ok_or_else(|| {
                    let text = format!("Could not determine PID for '{name}'");
                    (error::UNIX_PROCESS_ID_UNKNOWN, text)
                })?;
                Ok(Some(reply.body("u", |w| w.u32(pid)).into()))
            }
            (DRIVER_INTERFACE, "GetAdtAuditSessionData") => {
                let name = arg_str(&mut args)?;
                self.connection(name, "audit session data")?;
                let text = format!("Could not determine audit session data for '{name}'");
                Err((error::ADT_AUDIT_DATA_UNKNOWN, text))
            }
            (DRIVER_INTERFACE, "GetConnectionSELinuxSecurityContext") => {
                let name = arg_str(&mut args)?;
                let label = self
                    .connection(name, "security context")?
                    .and_then(|id| self.peers.get(id))
                    .and_then(|p| p.creds.security_label.clone());
                let label = label.ok_or_else(|| {
                    let text = format!("Could not determine security context for '{name}'");
                    (error::SELINUX_CONTEXT_UNKNOWN, text)
                })?;
                Ok(Some(reply.body("ay", |w| w.byte_array(&label)).into()))
            }
            (DRIVER_INTERFACE, "GetId") => {
                let guid = self.config.guid.clone();
                Ok(Some(reply.body("s", |w| w.string(&guid)).into()))
            }
            (DRIVER_INTERFACE, "GetConnectionCredentials") => {
                let name = arg_str(&mut args)?;
                let target = self.connection(name, "credentials")?;
                let caller_fds = self.peers.get(from).is_some_and(|p| p.unix_fds);
                Ok(Some(self.credentials_reply(serial, target, caller_fds)))
            }
            (PROPERTIES, "Get") => {
                let iface = arg_str(&mut args)?;
                let prop = arg_str(&mut args)?;
                let value = property(iface, prop)?;
                Ok(Some(
                    reply
                        .body("v", |w| w.variant("as", |w| string_array(w, value)))
                        .into(),
                ))
            }
            (PROPERTIES, "GetAll") => {
                let iface = arg_str(&mut args)?;
                if iface != DRIVER_INTERFACE {
                    return Err(unknown_interface(iface));
                }
                Ok(Some(
                    reply
                        .body("a{sv}", |w| {
                            w.array("{sv}", |w| {
                                for (name, value) in
                                    [("Features", FEATURES), ("Interfaces", EXTRA_INTERFACES)]
                                {
                                    w.dict_entry(|w| {
                                        w.string(name);
                                        w.variant("as", |w| string_array(w, value));
                                    });
                                }
                            })
                        })
                        .into(),
                ))
            }
            (PROPERTIES, "Set") => {
                let iface = arg_str(&mut args)?;
                let prop = arg_str(&mut args)?;
                property(iface, prop)?;
                let text = format!("Property '{iface}.{prop}' cannot be set");
                Err((error::PROPERTY_READ_ONLY, text))
            }
            (INTROSPECTABLE, "Introspect") => {
                let xml = introspect(msg.path().unwrap_or("/"));
                Ok(Some(reply.body("s", |w| w.string(&xml)).into()))
            }
            (PEER, "GetMachineId") => {
                let id = self.config.machine_id.clone();
                Ok(Some(reply.body("s", |w| w.string(&id)).into()))
            }
            (PEER, "Ping") => empty,
            (MONITORING, "BecomeMonitor") => {
                self.privileged(from, "BecomeMonitor")?;
                let texts = args.read_str_array().map_err(bad_args)?;
                if args.read_u32().map_err(bad_args)? != 0 {
                    let text = "BecomeMonitor does not support any flags yet";
                    return Err((error::INVALID_ARGS, text.into()));
                }
                let rules = texts
                    .iter()
                    .map(|t| MatchRule::parse(t))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| (e.error_name(), e.to_string()))?;
                if !msg.flags().no_reply_expected() {
                    let unique = self.unique_or_empty(from).to_owned();
                    self.send_driver(from, reply.destination(&unique));
                }
                self.become_monitor(from, rules);
                Ok(None)
            }
            (STATS, "GetStats") => {
                let serial_now = self.serial_counter();
                let p = self.peaks;
                let counts = [
                    ("ActiveConnections", self.peers.registered().count() as u32),
                    ("IncompleteConnections", self.incomplete_connections),
                    ("MatchRules", self.matches.len() as u32),
                    ("PeakMatchRules", p.match_rules),
                    ("PeakMatchRulesPerConnection", p.match_rules_per_connection),
                    ("BusNames", self.bus_name_count()),
                    ("PeakBusNames", p.bus_names),
                    ("PeakBusNamesPerConnection", p.bus_names_per_connection),
                ];
                Ok(Some(
                    reply
                        .body("a{sv}", |w| {
                            w.array("{sv}", |w| {
                                entry(w, "Serial", "u", |w| w.u32(serial_now));
                                for (key, v) in counts {
                                    entry(w, key, "u", |w| w.u32(v));
                                }
                                entry(w, "PendingReplies", "u", |w| {
                                    w.u32(self.replies_pending() as u32);
                                });
                                // What each user holds across its connections:
                                // (uid, connections, names, match rules, pending replies).
                                entry(w, "Users", "a(uuuuu)", |w| {
                                    w.array("(uuuuu)", |w| {
                                        for (uid, u) in self.users.all() {
                                            w.structure(|w| {
                                                w.u32(uid);
                                                for n in [
                                                    u.connections,
                                                    u.names,
                                                    u.match_rules,
                                                    u.replies,
                                                ] {
                                                    w.u32(u32::try_from(n).unwrap_or(u32::MAX));
                                                }
                                            });
                                        }
                                    });
                                });
                            })
                        })
                        .into(),
                ))
            }
            (STATS, "GetConnectionStats") => {
                let name = arg_str(&mut args)?;
                let Some(target) = self.connection(name, "statistics")? else {
                    let text = format!("{DRIVER_NAME} does not have connection statistics");
                    return Err((error::INVALID_ARGS, text));
                };
                let Some(p) = self.peers.get(target) else {
                    return Err(no_such_name(name, "statistics"));
                };
                let unique = p.unique.clone().unwrap_or_default();
                let st = p.stats;
                let names = p.names.len() as u32 + 1;
                let rules = self.matches.count(target) as u32;
                let serial_now = self.serial_counter();
                Ok(Some(
                    reply
                        .body("a{sv}", |w| {
                            w.array("{sv}", |w| {
                                entry(w, "Serial", "u", |w| w.u32(serial_now));
                                entry(w, "UniqueName", "s", |w| w.string(&unique));
                                let counters = [
                                    ("MatchRules", u64::from(rules)),
                                    ("PeakMatchRules", u64::from(st.peak_match_rules)),
                                    ("BusNames", u64::from(names)),
                                    ("PeakBusNames", u64::from(st.peak_bus_names)),
                                    ("IncomingMessages", st.incoming_messages),
                                    ("IncomingBytes", st.incoming_bytes),
                                    ("OutgoingMessages", st.outgoing_messages),
                                    ("OutgoingBytes", st.outgoing_bytes),
                                ];
                                for (key, v) in counters {
                                    let v = u32::try_from(v).unwrap_or(u32::MAX);
                                    entry(w, key, "u", |w| w.u32(v));
                                }
                            })
                        })
                        .into(),
                ))
            }
            (STATS, "GetAllMatchRules") => {
                let mut all: Vec<(String, Vec<String>)> = self
                    .peers
                    .registered()
                    .filter_map(|(id, p)| {
                        let rules: Vec<String> =
                            self.matches.rules(id).map(ToString::to_string).collect();
                        let unique = p.unique.as_deref()?.to_owned();
                        (!rules.is_empty()).then_some((unique, rules))
                    })
                    .collect();
                all.sort();
                Ok(Some(
                    reply
                        .body("a{sas}", |w| {
                            w.array("{sas}", |w| {
                                for (unique, rules) in &all {
                                    w.dict_entry(|w| {
                                        w.string(unique);
                                        string_array(w, rules);
                                    });
                                }
                            })
                        })
                        .into(),
                ))
            }
            _ => {
                let text = format!("{DRIVER_NAME} does not understand message {}", method.name);
                Err((error::UNKNOWN_METHOD, text))
            }
        }
    }

    /// RequestName, after argument checks: the registry decides, the bus announces.
    fn request_name(
        &mut self,
        from: PeerId,
        name: &str,
        flags: u32,
    ) -> Result<RequestReply, Refusal> {
        if !names::is_valid_bus_name(name) {
            let text = format!("Requested bus name \"{name}\" is not valid");
            return Err((error::INVALID_ARGS, text));
        }
        if name.starts_with(':') {
            let text = format!("Cannot acquire a service starting with ':' such as \"{name}\"");
            return Err((error::INVALID_ARGS, text));
        }
        if name == DRIVER_NAME {
            let unique = self
                .peers
                .get(from)
                .and_then(|p| p.unique.as_deref())
                .unwrap_or("");
            let text = format!(
                "Connection \"{unique}\" is not allowed to own the service \"{DRIVER_NAME}\" \
                 because it is reserved for D-Bus' use only"
            );
            return Err((error::INVALID_ARGS, text));
        }
        let Some(peer) = self.peers.get(from) else {
            return Err((error::FAILED, "The caller is gone".into()));
        };
        let unique = peer.unique.as_deref().unwrap_or("");
        if !peer.policy.check_own(name).allowed {
            return Err((error::ACCESS_DENIED, own_denied_text(unique, name)));
        }
        // As dbus-daemon: the unique name counts, and the limit is checked before noticing
        // that the caller may hold this name already.
        let limit = self.config.limits.max_names_per_connection;
        if peer.names.len() as u64 + 1 >= limit {
            let text = format!(
                "Connection \"{unique}\" is not allowed to own more services (increase limits \
                 in configuration file if required; max_names_per_connection={limit})"
            );
            return Err((error::LIMITS_EXCEEDED, text));
        }
        if !peer.names.iter().any(|n| &**n == name) {
            self.may_take(from, Object::Name)
                .map_err(|text| (error::LIMITS_EXCEEDED, text))?;
        }
        let (result, change) = self.names.request(name, from, flags);
        self.sync_membership(from, name);
        self.note_peaks(from);
        if let Some(change) = change {
            if let Some(old) = change.old {
                self.sync_membership(old, name);
            }
            self.announce(&change);
        }
        Ok(result)
    }

    /// ReleaseName, after argument checks.
    fn release_name(&mut self, from: PeerId, name: &str) -> Result<ReleaseReply, Refusal> {
        if !names::is_valid_bus_name(name) {
            let text = format!("Given bus name \"{name}\" is not valid");
            return Err((error::INVALID_ARGS, text));
        }
        if name.starts_with(':') {
            let text = format!("Cannot release a service starting with ':' such as \"{name}\"");
            return Err((error::INVALID_ARGS, text));
        }
        if name == DRIVER_NAME {
            let text = format!(
                "Cannot release the service \"{DRIVER_NAME}\" because it is owned by the bus"
            );
            return Err((error::INVALID_ARGS, text));
        }
        let (result, change) = self.names.release(name, from);
        self.sync_membership(from, name);
        if let Some(change) = change {
            self.announce(&change);
        }
        Ok(result)
    }

    /// Keeps `peer`'s list of names in step with whether it stands in `name`'s queue.
    fn sync_membership(&mut self, peer: PeerId, name: &str) {
        let queued = self
            .names
            .queue(name)
            .is_some_and(|mut q| q.any(|p| p == peer));
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let position = p.names.iter().position(|n| &**n == name);
        match (queued, position) {
            (true, None) => {
                p.names.push(name.into());
                self.charge(peer, Object::Name, 1);
            }
            (false, Some(i)) => {
                p.names.remove(i);
                self.release(peer, Object::Name, 1);
            }
            _ => {}
        }
    }

    /// The caller's unique name ("" if it has none).
    fn unique_or_empty(&self, id: PeerId) -> &str {
        self.peers
            .get(id)
            .and_then(|p| p.unique.as_deref())
            .unwrap_or("")
    }

    /// Only root and the bus's own user may call `method`.
    fn privileged(&self, from: PeerId, method: &str) -> Result<(), Refusal> {
        let uid = self.peers.get(from).map(|p| p.creds.uid);
        if uid == Some(0) || uid == Some(self.config.bus_uid) {
            return Ok(());
        }
        let text = format!("The caller of {method} is not privileged on this bus");
        Err((error::ACCESS_DENIED, text))
    }

    /// The unique name a bus name resolves to.
    fn unique_of(&self, name: &str) -> Option<String> {
        let id = self.resolve(name)?;
        self.peers.get(id)?.unique.as_deref().map(str::to_owned)
    }

    /// The connection a GetConnection* argument names: `Ok(None)` for the driver itself.
    fn connection(&self, name: &str, what: &str) -> Result<Option<PeerId>, Refusal> {
        if name == DRIVER_NAME {
            return Ok(None);
        }
        match self.resolve(name) {
            Some(id) => Ok(Some(id)),
            None => Err(no_such_name(name, what)),
        }
    }

    /// The reply of GetConnectionCredentials for `target` (`None`: the bus itself).
    fn credentials_reply(&self, serial: u32, target: Option<PeerId>, caller_fds: bool) -> Reply {
        let (uid, pid, groups, label, pidfd) = match target.and_then(|id| self.peers.get(id)) {
            Some(p) => {
                let c = &p.creds;
                let pidfd = if caller_fds {
                    c.pidfd.as_ref().and_then(|f| f.try_clone().ok())
                } else {
                    None
                };
                (
                    (!c.anonymous).then_some(c.uid),
                    c.pid,
                    (!c.anonymous).then(|| c.groups.clone()),
                    c.security_label.clone(),
                    pidfd,
                )
            }
            None => (
                Some(self.config.bus_uid),
                Some(self.config.bus_pid),
                None,
                None,
                None,
            ),
        };
        let fds: Vec<_> = pidfd.into_iter().collect();
        let has_fd = !fds.is_empty();
        let msg = MessageBuilder::method_return(serial)
            .unix_fds(fds.len() as u32)
            .body("a{sv}", |w| {
                w.array("{sv}", |w| {
                    if let Some(uid) = uid {
                        entry(w, "UnixUserID", "u", |w| w.u32(uid));
                    }
                    if let Some(groups) = &groups {
                        entry(w, "UnixGroupIDs", "au", |w| {
                            w.array("u", |w| groups.iter().for_each(|&g| w.u32(g)))
                        });
                    }
                    if let Some(pid) = pid {
                        entry(w, "ProcessID", "u", |w| w.u32(pid));
                    }
                    if has_fd {
                        entry(w, "ProcessFD", "h", |w| w.unix_fd(0));
                    }
                    if let Some(label) = &label {
                        let mut bytes = label.clone();
                        bytes.push(0);
                        entry(w, "LinuxSecurityLabel", "ay", |w| w.byte_array(&bytes));
                    }
                })
            });
        Reply { msg, fds }
    }
}

/// The introspection XML of the driver at `path` (what `tramd --introspect` prints for
/// `/org/freedesktop/DBus`).
pub fn introspect(path: &str) -> String {
    let canonical = path == DRIVER_PATH;
    let mut xml = String::from(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n\
         \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
    );
    for &iface in INTERFACES
        .iter()
        .filter(|i| canonical || answers_anywhere(i))
    {
        let _ = writeln!(xml, "  <interface name=\"{iface}\">");
        for method in METHODS.iter().filter(|m| m.interface == iface) {
            let _ = writeln!(xml, "    <method name=\"{}\">", method.name);
            for (dir, sig) in [("in", method.input), ("out", method.output)] {
                for ty in split_types(sig) {
                    let _ = writeln!(xml, "      <arg direction=\"{dir}\" type=\"{ty}\"/>");
                }
            }
            xml.push_str("    </method>\n");
        }
        match iface {
            DRIVER_INTERFACE => {
                for prop in ["Features", "Interfaces"] {
                    let _ = writeln!(
                        xml,
                        "    <property name=\"{prop}\" type=\"as\" access=\"read\">\n      \
                         <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" \
                         value=\"const\"/>\n    </property>"
                    );
                }
                for (signal, args) in [
                    ("NameOwnerChanged", 3),
                    ("NameLost", 1),
                    ("NameAcquired", 1),
                    ("ActivatableServicesChanged", 0),
                ] {
                    let _ = writeln!(xml, "    <signal name=\"{signal}\">");
                    for _ in 0..args {
                        xml.push_str("      <arg type=\"s\"/>\n");
                    }
                    xml.push_str("    </signal>\n");
                }
            }
            PROPERTIES => xml.push_str(
                "    <signal name=\"PropertiesChanged\">\n      \
                 <arg type=\"s\" name=\"interface_name\"/>\n      \
                 <arg type=\"a{sv}\" name=\"changed_properties\"/>\n      \
                 <arg type=\"as\" name=\"invalidated_properties\"/>\n    </signal>\n",
            ),
            _ => {}
        }
        xml.push_str("  </interface>\n");
    }
    // The driver is the only object; show the way to it from its ancestors.
    if let Some(rest) = DRIVER_PATH.strip_prefix(path).filter(|_| !canonical) {
        let child = rest.trim_start_matches('/');
        if path == "/" || rest.starts_with('/') {
            let _ = writeln!(xml, "  <node name=\"{child}\"/>");
        }
    }
    xml.push_str("</node>\n");
    xml
}

/// The single complete types of a signature made of simple types and `a{..}`/`a.` arrays.
fn split_types(sig: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = sig.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        let mut depth = 0i32;
        loop {
            match bytes[end] {
                b'a' => {}
                b'{' | b'(' => depth += 1,
                b'}' | b')' => depth -= 1,
                _ => {}
            }
            let is_array_prefix = bytes[end] == b'a';
            end += 1;
            if depth == 0 && !is_array_prefix || end >= bytes.len() {
                break;
            }
        }
        out.push(&sig[start..end]);
        start = end;
    }
    out
}

fn property(iface: &str, prop: &str) -> Result<&'static [&'static str], Refusal> {
    if iface != DRIVER_INTERFACE {
        return Err(unknown_interface(iface));
    }
    match prop {
        "Features" => Ok(FEATURES),
        "Interfaces" => Ok(EXTRA_INTERFACES),
        _ => Err((
            error::UNKNOWN_PROPERTY,
            format!("Property \"{iface}.{prop}\" not found"),
        )),
    }
}

fn no_such_name(name: &str, what: &str) -> Refusal {
    let text = format!("Could not get {what} of name '{name}': no such name");
    (error::NAME_HAS_NO_OWNER, text)
}

fn unknown_interface(iface: &str) -> Refusal {
    (
        error::UNKNOWN_INTERFACE,
        format!("Interface \"{iface}\" not found"),
    )
}

fn service_unknown(name: &str) -> Refusal {
    let text = format!("The name {name} was not provided by any .service files");
    (error::SERVICE_UNKNOWN, text)
}

fn arg_str<'a>(args: &mut BodyReader<'a>) -> Result<&'a str, Refusal> {
    args.read_str().map_err(bad_args)
}

fn bad_args(e: tram_wire::WireError) -> Refusal {
    (error::INVALID_ARGS, e.to_string())
}

fn string_array<S: AsRef<str>>(w: &mut BodyWriter, items: &[S]) {
    w.array("s", |w| items.iter().for_each(|s| w.string(s.as_ref())));
}

fn entry(w: &mut BodyWriter, key: &str, sig: &str, value: impl FnOnce(&mut BodyWriter)) {
    w.dict_entry(|w| {
        w.string(key);
        w.variant(sig, value);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_types_handles_containers() {
        assert_eq!(split_types("su"), ["s", "u"]);
        assert_eq!(split_types("a{ss}"), ["a{ss}"]);
        assert_eq!(split_types("asu"), ["as", "u"]);
        assert_eq!(split_types("a{sv}as"), ["a{sv}", "as"]);
        assert_eq!(split_types(""), Vec::<&str>::new());
    }

    #[test]
    fn introspection_lists_each_method_once_and_children_on_ancestors() {
        let xml = introspect(DRIVER_PATH);
        assert_eq!(xml.matches("<method name=\"RequestName\">").count(), 1);
        assert!(xml.contains("<interface name=\"org.freedesktop.DBus.Properties\">"));
        assert!(!xml.contains("<node name="));
        let root = introspect("/");
        assert!(root.contains("<node name=\"org/freedesktop/DBus\"/>"));
        assert!(!root.contains("org.freedesktop.DBus.Properties\">"));
        assert!(introspect("/org").contains("<node name=\"freedesktop/DBus\"/>"));
        assert!(!introspect("/other").contains("<node name="));
    }
}
