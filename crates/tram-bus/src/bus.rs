//! The bus: the events it takes, how one message is routed, and the decisions it hands back.
//!
//! Routing a message from a peer (see the specification's "Message Bus Message Routing"):
//!
//! 1. A peer must say Hello first: other driver calls before it are refused with AccessDenied,
//!    and any message for someone else disconnects the peer (as with dbus-daemon).
//! 2. Messages using the reserved `org.freedesktop.DBus.Local` path or interface disconnect their
//!    sender; messages of unknown type are ignored, as the specification asks.
//! 3. A message to `org.freedesktop.DBus` goes to the driver (`driver.rs`).
//! 4. A message with another destination is unicast: the name is resolved (unique name, or the
//!    primary owner of a well-known name); replies must close an open reply slot
//!    (`replies.rs`); fds need a receiver that negotiated them. Refusals are answered with an
//!    error naming why, even to a sender that asked for no reply (as dbus-daemon does).
//! 5. A signal without destination is broadcast to every peer with a matching rule, once each.
//!    A method call without destination is for the bus itself (the specification's example is
//!    `Peer.Ping`); other messages without destination answer nothing and are dropped.
//!
//! Every forwarded message is stamped with its sender's unique name once, and the same buffer is
//! queued for every receiver.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tram_wire::{MAX_MESSAGE_LEN, Message, MessageBuilder, MessageType, Outgoing};

use crate::activation::{ActivationRequest, Activations};
use crate::match_rule::{MatchIndex, MatchRule, NameOwners};
use crate::names::{NameRegistry, OwnerChange};
use crate::peer::{Credentials, PeerId, TxQueue};
use crate::policy::{ConnectionPolicy, Policy};
use crate::replies::{Departure, Replies};
use crate::users::{self, Object, Users};

/// The driver's well-known name.
pub(crate) const DRIVER_NAME: &str = "org.freedesktop.DBus";
/// The driver's object path.
pub(crate) const DRIVER_PATH: &str = "/org/freedesktop/DBus";
/// The driver's main interface.
pub(crate) const DRIVER_INTERFACE: &str = "org.freedesktop.DBus";
const LOCAL_PATH: &str = "/org/freedesktop/DBus/Local";
const LOCAL_INTERFACE: &str = "org.freedesktop.DBus.Local";

/// Error names the bus itself sends.
pub(crate) mod error {
    pub(crate) const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
    pub(crate) const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
    pub(crate) const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
    pub(crate) const NOT_SUPPORTED: &str = "org.freedesktop.DBus.Error.NotSupported";
    pub(crate) const NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";
    pub(crate) const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
    pub(crate) const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
    pub(crate) const UNKNOWN_INTERFACE: &str = "org.freedesktop.DBus.Error.UnknownInterface";
    pub(crate) const UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";
    pub(crate) const PROPERTY_READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
    pub(crate) const MATCH_RULE_NOT_FOUND: &str = "org.freedesktop.DBus.Error.MatchRuleNotFound";
    pub(crate) const TIMED_OUT: &str = "org.freedesktop.DBus.Error.TimedOut";
    pub(crate) const LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";
    pub(crate) const FAILED: &str = "org.freedesktop.DBus.Error.Failed";
    pub(crate) const UNIX_PROCESS_ID_UNKNOWN: &str =
        "org.freedesktop.DBus.Error.UnixProcessIdUnknown";
    pub(crate) const SELINUX_CONTEXT_UNKNOWN: &str =
        "org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown";
    pub(crate) const ADT_AUDIT_DATA_UNKNOWN: &str =
        "org.freedesktop.DBus.Error.AdtAuditDataUnknown";
}

/// What the bus is told at start-up (and, later, on reload).
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// The server GUID, 32 lowercase hex digits (GetId answers it).
    pub guid: String,
    /// The machine id, 32 lowercase hex digits (Peer.GetMachineId answers it).
    pub machine_id: String,
    /// `"session"`, `"system"` or a custom type from the configuration.
    pub bus_type: String,
    /// The bus process's own uid, reported for the name `org.freedesktop.DBus`.
    pub bus_uid: u32,
    /// The bus process's own pid, reported for the name `org.freedesktop.DBus`.
    pub bus_pid: u32,
    /// Who may connect, send, receive and own what.
    pub policy: Policy,
    /// Start services through systemd where their service file names a unit
    /// (`--systemd-activation`).
    pub systemd_activation: bool,
    /// Services are started as their `User=` through a `<servicehelper>`. As with
    /// dbus-daemon, the activation environment then cannot be changed: a service started by
    /// root on the bus's behalf must not take its environment from a client.
    pub service_helper: bool,
    /// Per-connection limits the bus enforces.
    pub limits: Limits,
}

/// The limits of dbus-daemon's configuration that the bus core enforces; the I/O layer
/// enforces the rest (incoming bytes, connection counts, timeouts of authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes queued for one connection before a message to it is refused.
    pub max_outgoing_bytes: u64,
    /// Fds queued for one connection before a message to it is refused.
    pub max_outgoing_unix_fds: u64,
    /// The largest message accepted.
    pub max_message_size: u64,
    /// The most fds one message may carry.
    pub max_message_unix_fds: u64,
    /// Well-known names one connection may own or queue for.
    pub max_names_per_connection: u64,
    /// Match rules one connection may hold.
    pub max_match_rules_per_connection: u64,
    /// Calls one connection may have waiting for replies.
    pub max_replies_per_connection: u64,
    /// How long a call waits for its reply before the bus answers NoReply (`None`: forever).
    pub reply_timeout: Option<Duration>,
    /// How long a service may take to own its name once asked to start.
    pub service_start_timeout: Duration,
    /// How many services may be starting at once.
    pub max_pending_service_starts: u64,
    /// Authenticated connections the bus serves. With the per-connection limits it sizes the
    /// bus-wide pools of names, match rules and pending replies that users share fairly
    /// (`docs/ACCOUNTING.md`).
    pub max_completed_connections: u64,
}

impl Default for Limits {
    /// dbus-daemon's built-in defaults.
    fn default() -> Limits {
        Limits {
            max_outgoing_bytes: 127 << 20,
            max_outgoing_unix_fds: 64,
            max_message_size: 32 << 20,
            max_message_unix_fds: 16,
            max_names_per_connection: 512,
            max_match_rules_per_connection: 512,
            max_replies_per_connection: 128,
            reply_timeout: None,
            service_start_timeout: Duration::from_secs(25),
            max_pending_service_starts: 512,
            max_completed_connections: 2048,
        }
    }
}

impl Limits {
    /// The limits of the stock `session.conf`, which raises several defaults (and leaves
    /// `max_message_unix_fds` and `reply_timeout` at theirs). The configuration crate reads
    /// the same figures from the file; these serve the built-in defaults and tests.
    pub fn session() -> Limits {
        Limits {
            max_outgoing_bytes: 1_000_000_000,
            max_outgoing_unix_fds: 250_000_000,
            max_message_size: 1_000_000_000,
            max_message_unix_fds: 16,
            max_names_per_connection: 50_000,
            max_match_rules_per_connection: 50_000,
            max_replies_per_connection: 50_000,
            reply_timeout: None,
            service_start_timeout: Duration::from_secs(120),
            max_pending_service_starts: 10_000,
            max_completed_connections: 100_000,
        }
    }
}

/// Something the I/O layer must do for the bus.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Close this peer's connection. The bus has already forgotten it (its names released, its
    /// callers answered); the I/O layer must not call [`Bus::disconnect`] for it.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why, for the log.
        reason: String,
    },
    /// A peer called ReloadConfig: read the configuration again and answer with
    /// [`Bus::finish_reload`], passing this token back.
    Reload(ReloadToken),
    /// Start a service directly (run its `Exec`); report failure with
    /// [`Bus::activation_failed`]. Success shows as the service owning its name.
    Activate(ActivationRequest),
    /// The policy refused a message addressed to one receiver: log this line (dbus-daemon's
    /// "Rejected send message, N matched rules; …" or "Rejected receive message, …"). Its
    /// sender was answered AccessDenied, unless the sender is the bus itself.
    Denied(String),
}

/// Identifies the ReloadConfig call a reload answers.
#[derive(Debug)]
pub struct ReloadToken {
    pub(crate) peer: PeerId,
    pub(crate) serial: u32,
    pub(crate) no_reply: bool,
}

/// The bus. See the crate documentation for the event/output protocol.
#[derive(Debug)]
pub struct Bus {
    pub(crate) config: BusConfig,
    pub(crate) peers: Peers,
    pub(crate) names: NameRegistry,
    pub(crate) matches: MatchIndex,
    /// Connections without a unique name yet, as the I/O layer last reported.
    pub(crate) incomplete_connections: u32,
    /// What UpdateActivationEnvironment set, for the services the bus will start.
    pub(crate) activation_env: BTreeMap<String, String>,
    replies: Replies,
    /// What each user holds, across its connections.
    pub(crate) users: Users,
    /// The rules of monitor connections (BecomeMonitor), all eavesdropping.
    monitors: MatchIndex,
    /// Services the bus can start, and names being started.
    pub(crate) activations: Activations,
    /// The time of the event being handled.
    pub(crate) now: Instant,
    /// High-water marks for Debug.Stats.
    pub(crate) peaks: Peaks,
    actions: VecDeque<Action>,
    /// Peers whose queue overflowed, to disconnect.
    stalled: Vec<PeerId>,
    dirty: Vec<PeerId>,
    serial: u32,
    /// Reused for each broadcast's receiver set.
    receivers: Vec<PeerId>,
}

/// Every connected peer, in a slab indexed by [`PeerId`].
#[derive(Debug, Default)]
pub(crate) struct Peers {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_unique: HashMap<u64, PeerId, BuildHasherDefault<SerialHasher>>,
    next_unique: u64,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    peer: Option<Peer>,
}

/// One connection, as the bus sees it.
#[derive(Debug)]
pub(crate) struct Peer {
    /// `:1.N`, once Hello was handled.
    pub(crate) unique: Option<Box<str>>,
    unique_id: u64,
    pub(crate) creds: Credentials,
    /// The index of the peer's user in [`Bus::users`].
    pub(crate) user: u32,
    pub(crate) unix_fds: bool,
    tx: TxQueue,
    dirty: bool,
    /// Going away: nothing more is queued for it.
    leaving: bool,
    /// Its queue overflowed; it is disconnected at the next `poll_action`.
    stalled: bool,
    /// Every well-known name in whose queue this peer stands, oldest first.
    pub(crate) names: Vec<Box<str>>,
    /// The policy rules that apply to this connection, built when it connected.
    pub(crate) policy: ConnectionPolicy,
    /// Became a monitor: receives copies of traffic, may send nothing.
    pub(crate) monitor: bool,
    /// Messages received from this peer and queued for it, for Debug.Stats.
    pub(crate) stats: PeerStats,
}

/// Bus-wide high-water marks for `GetStats`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Peaks {
    pub(crate) match_rules: u32,
    pub(crate) match_rules_per_connection: u32,
    pub(crate) bus_names: u32,
    pub(crate) bus_names_per_connection: u32,
}

/// Counters for `GetConnectionStats`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeerStats {
    pub(crate) peak_match_rules: u32,
    pub(crate) peak_bus_names: u32,
    pub(crate) incoming_messages: u64,
    pub(crate) incoming_bytes: u64,
    pub(crate) outgoing_messages: u64,
    pub(crate) outgoing_bytes: u64,
}

impl Bus {
    /// A bus with no peers.
    pub fn new(config: BusConfig) -> Bus {
        Bus {
            config,
            peers: Peers::default(),
            names: NameRegistry::default(),
            matches: MatchIndex::default(),
            incomplete_connections: 0,
            activation_env: BTreeMap::new(),
            replies: Replies::default(),
            users: Users::default(),
            monitors: MatchIndex::default(),
            activations: Activations::default(),
            now: Instant::now(),
            peaks: Peaks::default(),
            actions: VecDeque::new(),
            stalled: Vec::new(),
            dirty: Vec::new(),
            serial: 0,
            receivers: Vec::new(),
        }
    }

    /// A connection finished authentication. `unix_fds` says whether it negotiated fd passing.
    pub fn connect(&mut self, now: Instant, creds: Credentials, unix_fds: bool) -> PeerId {
        self.now = now;
        let policy = self.connection_policy(&creds);
        let user = self.users.attach(creds.uid);
        self.peers.insert(Peer {
            policy,
            user,
            monitor: false,
            stats: PeerStats::default(),
            unique: None,
            unique_id: 0,
            creds,
            unix_fds,
            tx: TxQueue::default(),
            dirty: false,
            leaving: false,
            stalled: false,
            names: Vec::new(),
        })
    }

    /// A validated message arrived from `peer`.
    pub fn handle_message(&mut self, now: Instant, from: PeerId, msg: Message) {
        self.now = now;
        let Some(peer) = self.peers.get_mut(from) else {
            return;
        };
        peer.stats.incoming_messages += 1;
        peer.stats.incoming_bytes += msg.as_bytes().len() as u64;
        if peer.monitor {
            self.kick(from, "a monitor connection sent a message".into());
            return;
        }
        if peer.unique.is_none() {
            if is_hello(&msg) {
                self.hello(from, &msg);
            } else if msg.destination() != Some(DRIVER_NAME) {
                self.kick(from, "sent a message to a peer before Hello".into());
            } else {
                let text = "Client tried to send a message other than Hello without being \
                            registered";
                self.refuse(from, &msg, error::ACCESS_DENIED, text);
            }
            return;
        }
        if msg.has_path(LOCAL_PATH) || msg.has_interface(LOCAL_INTERFACE) {
            self.kick(
                from,
                format!("used the reserved {LOCAL_INTERFACE} interface or path"),
            );
            return;
        }
        if let MessageType::Unknown(_) = msg.message_type() {
            return;
        }
        if !self.monitors.is_empty() {
            if let Some(out) = self.stamp(from, &msg) {
                self.capture(Some(from), &msg, &out);
            }
        }
        match msg.destination() {
            Some(DRIVER_NAME) => {
                if let Err(text) = self.access(Some(from), None, &msg, false, false) {
                    return self.deny(from, &msg, text);
                }
                // The call takes effect first: an AddMatch that makes its sender an
                // eavesdropper lets it see that very call, as with dbus-daemon.
                self.driver_call(now, from, &msg);
                if self.matches.has_eavesdroppers() {
                    if let Some(out) = self.stamp(from, &msg) {
                        self.eavesdrop(Some(from), &msg, None, &out);
                    }
                }
            }
            Some(_) => self.unicast(now, from, msg),
            None => match msg.message_type() {
                MessageType::Signal => {
                    if let Some(out) = self.stamp(from, &msg) {
                        self.broadcast(Some(from), &msg, &out);
                    }
                }
                MethodCall => self.undirected_call(from, &msg),
                // Only signals are broadcast; a reply without destination answers nothing.
                _ => {}
            },
        }
    }

    /// `peer`'s connection is gone (hung up, or sent something invalid).
    pub fn disconnect(&mut self, now: Instant, peer: PeerId) {
        self.now = now;
        self.remove_peer(peer);
    }

    /// The time returned by [`Bus::poll_timeout`] has come: calls whose reply_timeout passed
    /// are answered with NoReply.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.expire_activations(now);
        for (caller, serial) in self.replies.expire(now) {
            self.release(caller, Object::Reply, 1);
            self.no_reply(
                caller,
                serial,
                "Did not receive a reply. Possible causes include: the remote application did \
                 not send a reply, the message bus security policy blocked the reply, the reply \
                 timeout expired, or the network connection was broken.",
            );
        }
    }

    /// When the bus next needs [`Bus::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (
            self.replies.next_deadline(),
            self.activations.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next action for the I/O layer.
    pub fn poll_action(&mut self) -> Option<Action> {
        while self.actions.is_empty() {
            let Some(peer) = self.stalled.pop() else {
                break;
            };
            let l = &self.config.limits;
            let reason = format!(
                "it does not read its messages: its queue would exceed max_outgoing_bytes \
                 ({}) or max_outgoing_unix_fds ({})",
                l.max_outgoing_bytes, l.max_outgoing_unix_fds
            );
            self.kick(peer, reason);
        }
        self.actions.pop_front()
    }

    /// Appends to `out` every peer whose transmit queue gained messages since the last call.
    pub fn take_dirty(&mut self, out: &mut Vec<PeerId>) {
        for id in self.dirty.drain(..) {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.dirty = false;
                out.push(id);
            }
        }
    }

    /// `peer`'s transmit queue, or `None` if the peer is gone.
    pub fn tx_queue(&mut self, peer: PeerId) -> Option<&mut TxQueue> {
        self.peers.get_mut(peer).map(|p| &mut p.tx)
    }

    /// `peer`'s unique name, for logs.
    pub fn unique_name(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(peer).and_then(|p| p.unique.as_deref())
    }

    /// Whether a connection with these credentials may connect at all (the policy's `user`
    /// and `group` rules; by default only the bus's own user and root). Ask during
    /// authentication: a refused connection is rejected before BEGIN.
    pub fn admits(&self, creds: &Credentials) -> bool {
        if creds.anonymous {
            return true;
        }
        self.config
            .policy
            .allows_user(creds.uid, &creds.groups, self.config.bus_uid)
    }

    /// The configuration in force.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// Replaces the configuration (policy and limits) atomically: from the next event on,
    /// every connection is judged by the new one.
    pub fn reload(&mut self, config: BusConfig) {
        self.config = config;
        let ids: Vec<PeerId> = self.peers.all().collect();
        for id in ids {
            let policy = match self.peers.get(id) {
                Some(p) => self.connection_policy(&p.creds),
                None => continue,
            };
            if let Some(p) = self.peers.get_mut(id) {
                p.policy = policy;
            }
        }
    }

    fn connection_policy(&self, creds: &Credentials) -> ConnectionPolicy {
        let uid = (!creds.anonymous).then_some(creds.uid);
        self.config.policy.for_connection(uid, &creds.groups, false)
    }

    /// Ends a reload the bus asked for with [`Action::Reload`]: on success the new
    /// configuration takes effect and the caller gets an empty reply; on failure the old one
    /// stays and the caller gets `org.freedesktop.DBus.Error.Failed` with `error` (which
    /// should name file and line).
    pub fn finish_reload(&mut self, token: ReloadToken, result: Result<BusConfig, String>) {
        let reply = match result {
            Ok(config) => {
                self.reload(config);
                MessageBuilder::method_return(token.serial)
            }
            Err(text) => {
                MessageBuilder::error(token.serial, error::FAILED).body("s", |w| w.string(&text))
            }
        };
        if token.no_reply {
            return;
        }
        let Some(unique) = self.peers.get(token.peer).and_then(|p| p.unique.clone()) else {
            return;
        };
        self.send_driver(token.peer, reply.destination(&unique));
    }

    /// Queues an action for the I/O layer.
    pub(crate) fn act(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Tells the bus how many connections have no unique name yet, authenticating ones
    /// included (they live in the I/O layer), for GetStats.
    pub fn set_incomplete_connections(&mut self, n: usize) {
        self.incomplete_connections = u32::try_from(n).unwrap_or(u32::MAX);
    }

    /// The environment UpdateActivationEnvironment built up, for starting services.
    pub fn activation_environment(&self) -> &BTreeMap<String, String> {
        &self.activation_env
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    // --- routing -----------------------------------------------------------------------------

    fn hello(&mut self, from: PeerId, msg: &Message) {
        let unique = self.peers.assign_unique(from);
        if !self.monitors.is_empty() {
            if let Some(out) = self.stamp(from, msg) {
                self.capture(Some(from), msg, &out);
            }
        }
        if msg.expects_reply() {
            let reply = MessageBuilder::method_return(msg.serial())
                .destination(&unique)
                .body("s", |w| w.string(&unique));
            self.send_driver(from, reply);
        }
        self.note_peaks(from);
        self.name_owner_changed(&unique, "", &unique);
        self.driver_signal_to(from, "NameAcquired", &unique);
    }

    /// Delivers `msg` to its DESTINATION (starting the service first when it is activatable and
    /// not running), or refuses it to `from` with the reason.
    pub(crate) fn unicast(&mut self, now: Instant, from: PeerId, msg: Message) {
        let Some(dest) = msg.destination() else {
            return;
        };
        let auto_start = !msg.flags().no_auto_start();
        if auto_start && self.activations.provides(dest) && self.resolve(dest).is_none() {
            if let Err(text) = self.access_to_name(from, dest, &msg) {
                return self.deny(from, &msg, text);
            }
            let dest = dest.to_owned();
            return self.activate_for_message(from, &dest, msg);
        }
        let Some(to) = self.resolve(dest) else {
            // As dbus-daemon: the auto-start flag alone decides, whatever the message type.
            if !msg.flags().no_auto_start() {
                let text = format!("The name {dest} was not provided by any .service files");
                self.refuse(from, &msg, error::SERVICE_UNKNOWN, &text);
            } else {
                let text = format!("Name \"{dest}\" does not exist");
                self.refuse(from, &msg, error::NAME_HAS_NO_OWNER, &text);
            }
            return;
        };
        let Some(receiver) = self.peers.get(to) else {
            return;
        };
        if msg.unix_fds() > 0 && !receiver.unix_fds {
            let text = "Tried to send message with Unix file descriptors to a client that doesn't \
                        support that.";
            self.refuse(from, &msg, error::NOT_SUPPORTED, text);
            return;
        }
        let is_reply = matches!(msg.message_type(), MethodReturn | MessageType::Error);
        let reply_serial = msg.reply_serial().unwrap_or(0);
        // Unlike dbus-daemon, whose policy may let them through, unrequested replies are never
        // delivered: a reply must answer a call its receiver is still waiting for.
        if is_reply && !self.replies.is_owed(to, reply_serial, from) {
            let text = format!(
                "Rejected send message: {} is not a reply to a call {dest} is waiting for \
                 (reply_serial={reply_serial}, requested_reply=0)",
                type_name(msg.message_type()),
            );
            self.deny(from, &msg, text);
            return;
        }
        if let Err(text) = self.access(Some(from), Some(to), &msg, is_reply, false) {
            self.deny(from, &msg, text);
            return;
        }
        let Some(out) = self.stamp(from, &msg) else {
            return;
        };
        // A full queue refuses calls and signals; a reply goes through `push`, which
        // disconnects a caller that does not read its replies.
        let account = self.account_of(Some(from));
        if !is_reply {
            if let Err(text) = self.queue_admits(to, account, &out) {
                let text = format!("The message queue of {dest} {text}");
                self.refuse(from, &msg, error::LIMITS_EXCEEDED, &text);
                return;
            }
        }
        if is_reply {
            if self.replies.take(to, reply_serial, from) {
                self.release(to, Object::Reply, 1);
            }
        } else if msg.expects_reply() {
            let limit = self.config.limits.max_replies_per_connection;
            if u64::from(self.replies.count_for(from)) >= limit {
                let name = self.sender_name(from);
                let text = format!(
                    "The maximum number of pending replies for \"{name}\" ({limit}) has been \
                     reached (increase limits in configuration file if required; \
                     max_replies_per_connection={limit})"
                );
                self.refuse(from, &msg, error::LIMITS_EXCEEDED, &text);
                return;
            }
            if let Err(text) = self.may_take(from, Object::Reply) {
                self.refuse(from, &msg, error::LIMITS_EXCEEDED, &text);
                return;
            }
            let deadline = self.config.limits.reply_timeout.map(|t| now + t);
            if self.replies.expect(from, msg.serial(), to, deadline) {
                self.charge(from, Object::Reply, 1);
            }
        }
        self.eavesdrop(Some(from), &msg, Some(to), &out);
        self.push(to, out, account);
    }

    /// The forwarded form of `msg`: SENDER stamped with `from`'s unique name. A message that
    /// the stamp would take past the 128 MiB limit is refused instead.
    fn stamp(&mut self, from: PeerId, msg: &Message) -> Option<Arc<Outgoing>> {
        let sender = self.peers.get(from).and_then(|p| p.unique.as_deref());
        let out = msg.stamp_sender(sender.unwrap_or_default());
        if out.len() > MAX_MESSAGE_LEN {
            let text = format!(
                "Message of {} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit once the bus adds \
                 its sender",
                out.len()
            );
            self.refuse(from, msg, error::LIMITS_EXCEEDED, &text);
            return None;
        }
        Some(Arc::new(out))
    }

    /// Queues `out` (the forwarded form of `msg`) for every peer whose rules match it.
    pub(crate) fn broadcast(&mut self, from: Option<PeerId>, msg: &Message, out: &Arc<Outgoing>) {
        self.deliver_to_matching(from, msg, None, out);
    }

    /// Queues a copy of an addressed message for every peer eavesdropping on it.
    fn eavesdrop(
        &mut self,
        from: Option<PeerId>,
        msg: &Message,
        addressed: Option<PeerId>,
        out: &Arc<Outgoing>,
    ) {
        if self.matches.has_eavesdroppers() {
            self.deliver_to_matching(from, msg, addressed, out);
        }
    }

    fn deliver_to_matching(
        &mut self,
        from: Option<PeerId>,
        msg: &Message,
        addressed: Option<PeerId>,
        out: &Arc<Outgoing>,
    ) {
        let mut receivers = std::mem::take(&mut self.receivers);
        receivers.clear();
        let lookup = Lookup {
            peers: &self.peers,
            names: &self.names,
        };
        self.matches
            .receivers(msg, &lookup, from, addressed, &mut receivers);
        let has_fds = msg.unix_fds() > 0;
        let account = self.account_of(from);
        // Addressed copies are eavesdropped: never as requested replies.
        let eavesdropping = addressed.is_some() || msg.destination().is_some();
        let requested = from.is_none() && !eavesdropping;
        for &to in &receivers {
            let deliverable = match self.peers.get(to) {
                Some(p) => p.unique.is_some() && !p.monitor && (!has_fds || p.unix_fds),
                None => false,
            };
            // A broadcast or eavesdropped copy that policy refuses is simply not delivered.
            if deliverable
                && self
                    .access(from, Some(to), msg, requested, eavesdropping)
                    .is_ok()
            {
                self.push(to, out.clone(), account);
            }
        }
        self.receivers = receivers;
    }

    // --- the bus's own messages ----------------------------------------------------------------

    /// Answers `msg` from `to` with an error. As dbus-daemon does, the bus tells the sender why
    /// its message went nowhere even when it asked for no reply: nothing else would.
    pub(crate) fn refuse(&mut self, to: PeerId, msg: &Message, name: &str, text: &str) {
        let mut reply = MessageBuilder::error(msg.serial(), name);
        if let Some(unique) = self.peers.get(to).and_then(|p| p.unique.as_deref()) {
            reply = reply.destination(unique);
        }
        self.send_driver(to, reply.body("s", |w| w.string(text)));
    }

    /// Refuses `msg` to `from` with AccessDenied saying `text` (a rejection by the policy, or of
    /// a reply nobody asked for), and has the rejection logged.
    pub(crate) fn deny(&mut self, from: PeerId, msg: &Message, text: String) {
        self.refuse(from, msg, error::ACCESS_DENIED, &text);
        self.act(Action::Denied(text));
    }

    /// Sends a message from the driver to one peer.
    pub(crate) fn send_driver(&mut self, to: PeerId, msg: MessageBuilder) {
        self.send_driver_with_fds(to, msg, Vec::new());
    }

    /// Sends a message from the driver, carrying `fds`, to one peer.
    pub(crate) fn send_driver_with_fds(
        &mut self,
        to: PeerId,
        msg: MessageBuilder,
        fds: Vec<std::os::fd::OwnedFd>,
    ) {
        let serial = self.next_serial();
        let msg = msg.sender(DRIVER_NAME).build_with_fds(serial, fds);
        let out = Arc::new(msg.to_outgoing());
        self.capture(None, &msg, &out);
        // The receiver's receive rules apply to the driver's messages too; the driver's
        // replies count as requested.
        let requested = msg.reply_serial().is_some();
        match self.access(None, Some(to), &msg, requested, false) {
            Ok(()) => self.push(to, out.clone(), None),
            Err(text) => self.act(Action::Denied(text)),
        }
        self.eavesdrop(None, &msg, Some(to), &out);
    }

    /// Sends NameAcquired or NameLost for `name` to `to`.
    fn driver_signal_to(&mut self, to: PeerId, member: &str, name: &str) {
        let Some(unique) = self.peers.get(to).and_then(|p| p.unique.clone()) else {
            return;
        };
        let signal = MessageBuilder::signal(DRIVER_PATH, DRIVER_INTERFACE, member)
            .destination(&unique)
            .body("s", |w| w.string(name));
        self.send_driver(to, signal);
    }

    /// Broadcasts NameOwnerChanged.
    fn name_owner_changed(&mut self, name: &str, old: &str, new: &str) {
        let serial = self.next_serial();
        let msg = MessageBuilder::signal(DRIVER_PATH, DRIVER_INTERFACE, "NameOwnerChanged")
            .sender(DRIVER_NAME)
            .body("sss", |w| {
                w.string(name);
                w.string(old);
                w.string(new);
            })
            .build(serial);
        self.broadcast_from_driver(&msg);
    }

    /// Broadcasts a signal the driver built (monitors see it once).
    pub(crate) fn broadcast_from_driver(&mut self, msg: &Message) {
        let out = Arc::new(msg.to_outgoing());
        self.capture(None, msg, &out);
        self.broadcast(None, msg, &out);
    }

    /// Turns an ownership change into signals, in dbus-daemon's order: NameLost to the old
    /// owner, NameOwnerChanged to everyone interested, NameAcquired to the new owner.
    pub(crate) fn announce(&mut self, change: &OwnerChange) {
        let name_of = |id: Option<PeerId>| -> String {
            id.and_then(|id| self.peers.get(id))
                .and_then(|p| p.unique.as_deref())
                .unwrap_or("")
                .to_owned()
        };
        let (old, new) = (name_of(change.old), name_of(change.new));
        if let Some(old) = change.old {
            self.driver_signal_to(old, "NameLost", &change.name);
        }
        self.name_owner_changed(&change.name, &old, &new);
        if let Some(new) = change.new {
            self.driver_signal_to(new, "NameAcquired", &change.name);
            self.activation_done(&change.name);
        }
    }

    /// The account a message from `from` is charged to: its user (`None`: the bus).
    fn account_of(&self, from: Option<PeerId>) -> Option<u32> {
        from.and_then(|id| self.peers.get(id)).map(|p| p.creds.uid)
    }

    /// Whether `account` may queue `out` for `to`; `Err` ends the sentence "The message queue
    /// of DEST …". A user may hold at most as much of a receiver's queue, in bytes and in fds,
    /// as would remain free for everyone else after the message, except that a user with
    /// nothing queued may always queue one message; and the queue's totals stay within
    /// `max_outgoing_bytes` and `max_outgoing_unix_fds`. One flooding user thus gets at most
    /// about half of a slow receiver's queue, and every other user keeps room of its own.
    fn queue_admits(&self, to: PeerId, account: Option<u32>, out: &Outgoing) -> Result<(), String> {
        let Some(peer) = self.peers.get(to) else {
            return Ok(());
        };
        let l = &self.config.limits;
        let mine = peer.tx.charged(account);
        let (bytes, fds) = (out.len() as u64, out.fds().len() as u64);
        let share = |mine: usize, total: usize, pool: u64, n: u64| {
            mine == 0 || users::fair_share(mine as u64, total as u64, pool, n)
        };
        if !share(mine.bytes, peer.tx.bytes(), l.max_outgoing_bytes, bytes) {
            return Err(format!(
                "holds as much from this user as it may: the receiver is not reading fast \
                 enough (max_outgoing_bytes={})",
                l.max_outgoing_bytes
            ));
        }
        if peer.tx.bytes() as u64 + bytes > l.max_outgoing_bytes {
            return Err(format!(
                "is full (max_outgoing_bytes={}): it is not reading its messages",
                l.max_outgoing_bytes
            ));
        }
        if fds > 0 && !share(mine.fds, peer.tx.fds(), l.max_outgoing_unix_fds, fds) {
            return Err(format!(
                "holds as many file descriptors from this user as it may: the receiver is not \
                 reading fast enough (max_outgoing_unix_fds={})",
                l.max_outgoing_unix_fds
            ));
        }
        if peer.tx.fds() as u64 + fds > l.max_outgoing_unix_fds {
            return Err(format!(
                "holds too many file descriptors (max_outgoing_unix_fds={}): it is not reading \
                 its messages",
                l.max_outgoing_unix_fds
            ));
        }
        Ok(())
    }

    /// Answers `caller`'s call `serial` with NoReply.
    fn no_reply(&mut self, caller: PeerId, serial: u32, text: &str) {
        let Some(dest) = self.peers.get(caller).and_then(|p| p.unique.clone()) else {
            return;
        };
        let reply = MessageBuilder::error(serial, error::NO_REPLY)
            .destination(&dest)
            .body("s", |w| w.string(text));
        self.send_driver(caller, reply);
    }

    /// Gives every monitor whose rules match a copy of `msg` (from `from`, `None`: the driver),
    /// once, as the bus handles it.
    fn capture(&mut self, from: Option<PeerId>, msg: &Message, out: &Arc<Outgoing>) {
        if self.monitors.is_empty() {
            return;
        }
        let mut receivers = std::mem::take(&mut self.receivers);
        receivers.clear();
        let lookup = Lookup {
            peers: &self.peers,
            names: &self.names,
        };
        self.monitors
            .receivers(msg, &lookup, from, None, &mut receivers);
        // A monitor asked for its copies: they are the bus's, not the sender's.
        for &to in &receivers {
            self.push(to, out.clone(), None);
        }
        self.receivers = receivers;
    }

    /// Turns `id` into a monitor with `rules` (empty: everything): it loses its names, its
    /// unique name included, and its match rules; the bus then copies it the traffic its rules
    /// match. The caller has checked privileges and parsed the rules.
    pub(crate) fn become_monitor(&mut self, id: PeerId, rules: Vec<MatchRule>) {
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        let names = std::mem::take(&mut peer.names);
        let unique = peer.unique.clone().unwrap_or_default();
        self.release(id, Object::Name, names.len() as u64);
        // As dbus-daemon: the unique name goes first, then the others in the order acquired.
        self.driver_signal_to(id, "NameLost", &unique);
        self.name_owner_changed(&unique, &unique, "");
        for name in &names {
            let (_, change) = self.names.release(name, id);
            if let Some(change) = change {
                self.announce(&change);
            }
        }
        let departure = self.replies.remove_peer(id);
        self.settle_replies(id, departure);
        self.release(id, Object::MatchRule, self.matches.count(id) as u64);
        self.matches.remove_peer(id);
        self.peers.unregister(id);
        if let Some(peer) = self.peers.get_mut(id) {
            peer.monitor = true;
        }
        if rules.is_empty() {
            self.monitors.add(id, MatchRule::default().eavesdropping());
        }
        for rule in rules {
            self.monitors.add(id, rule.eavesdropping());
        }
    }

    /// Bus names: every unique name plus every well-known name with an owner.
    pub(crate) fn bus_name_count(&self) -> u32 {
        (self.peers.registered().count() + self.names.count()) as u32
    }

    /// Raises the Debug.Stats high-water marks after `id` gained a name or a match rule.
    pub(crate) fn note_peaks(&mut self, id: PeerId) {
        let rules = self.matches.count(id) as u32;
        let total_rules = self.matches.len() as u32;
        let bus_names = self.bus_name_count();
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        let names = peer.names.len() as u32 + 1;
        let stats = &mut peer.stats;
        stats.peak_match_rules = stats.peak_match_rules.max(rules);
        stats.peak_bus_names = stats.peak_bus_names.max(names);
        let p = &mut self.peaks;
        p.match_rules = p.match_rules.max(total_rules);
        p.match_rules_per_connection = p.match_rules_per_connection.max(rules);
        p.bus_names = p.bus_names.max(bus_names);
        p.bus_names_per_connection = p.bus_names_per_connection.max(names);
    }

    /// The driver's last serial (for Debug.Stats).
    pub(crate) fn serial_counter(&self) -> u32 {
        self.serial
    }

    pub(crate) fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.checked_add(1).unwrap_or(1);
        self.serial
    }

    /// Queues `out` for `to`, charged to `account` (a uid; `None`: the bus).
    pub(crate) fn push(&mut self, to: PeerId, out: Arc<Outgoing>, account: Option<u32>) {
        let Some(peer) = self.peers.get_mut(to) else {
            return;
        };
        if peer.leaving || peer.stalled {
            return;
        }
        let limits = &self.config.limits;
        if (peer.tx.bytes() + out.len()) as u64 > limits.max_outgoing_bytes
            || (peer.tx.fds() + out.fds().len()) as u64 > limits.max_outgoing_unix_fds
        {
            // A receiver that does not read is disconnected rather than let the bus grow: the
            // message is not queued, and the peer goes at the next `poll_action`.
            peer.stalled = true;
            self.stalled.push(to);
            return;
        }
        peer.stats.outgoing_messages += 1;
        peer.stats.outgoing_bytes += out.len() as u64;
        peer.tx.push(out, account);
        if !peer.dirty {
            peer.dirty = true;
            self.dirty.push(to);
        }
    }

    // --- peers ---------------------------------------------------------------------------------

    /// The peer a bus name designates: its unique name, or the primary owner of a well-known name.
    pub(crate) fn resolve(&self, name: &str) -> Option<PeerId> {
        if name.starts_with(':') {
            self.peers.by_unique_name(name)
        } else {
            self.names.primary_owner(name)
        }
    }

    fn sender_name(&self, from: PeerId) -> Box<str> {
        self.peers
            .get(from)
            .and_then(|p| p.unique.clone())
            .unwrap_or_default()
    }

    /// Disconnects a peer for a protocol violation.
    pub(crate) fn kick(&mut self, peer: PeerId, reason: String) {
        if self.remove_peer(peer) {
            self.actions.push_back(Action::Disconnect { peer, reason });
        }
    }

    /// Forgets a peer: its well-known names (newest first, then its unique name) pass on with
    /// their signals, the calls it owed are answered with NoReply, its rules and slots vanish.
    fn remove_peer(&mut self, id: PeerId) -> bool {
        let Some(peer) = self.peers.get_mut(id) else {
            return false;
        };
        peer.leaving = true;
        let names = std::mem::take(&mut peer.names);
        // A monitor gave up its unique name when it became one.
        let unique = peer.unique.clone().filter(|_| !peer.monitor);
        self.release(id, Object::Name, names.len() as u64);
        self.release(id, Object::MatchRule, self.matches.count(id) as u64);
        self.matches.remove_peer(id);
        self.monitors.remove_peer(id);
        for name in names.iter().rev() {
            let (_, change) = self.names.release(name, id);
            if let Some(change) = change {
                self.announce(&change);
            }
        }
        if let Some(unique) = &unique {
            // Only monitors see this NameLost: the peer itself is gone.
            self.driver_signal_to(id, "NameLost", unique);
            self.name_owner_changed(unique, unique, "");
        }
        let departure = self.replies.remove_peer(id);
        self.settle_replies(id, departure);
        if let Some(peer) = self.peers.get(id) {
            let user = peer.user;
            self.users.detach(user);
        }
        self.peers.remove(id);
        true
    }

    /// Releases what a departing peer held in the reply table and answers the callers it owed
    /// with NoReply.
    fn settle_replies(&mut self, id: PeerId, departure: Departure) {
        self.release(id, Object::Reply, u64::from(departure.waiting));
        for (caller, serial) in departure.owed {
            self.release(caller, Object::Reply, 1);
            let text = "Message recipient disconnected from message bus without replying";
            self.no_reply(caller, serial, text);
        }
    }

    // --- per-user accounting -------------------------------------------------------------------

    /// Whether `id`'s user may take one more `object`: its fair share of the bus-wide pool
    /// (see `users.rs`). `Err` is the LimitsExceeded text.
    pub(crate) fn may_take(&self, id: PeerId, object: Object) -> Result<(), String> {
        let Some(peer) = self.peers.get(id) else {
            return Ok(());
        };
        let l = &self.config.limits;
        let (per_connection, what, limit_name) = match object {
            Object::Name => (
                l.max_names_per_connection,
                "names",
                "max_names_per_connection",
            ),
            Object::MatchRule => (
                l.max_match_rules_per_connection,
                "match rules",
                "max_match_rules_per_connection",
            ),
            Object::Reply => (
                l.max_replies_per_connection,
                "pending replies",
                "max_replies_per_connection",
            ),
        };
        let pool = per_connection.saturating_mul(l.max_completed_connections);
        if self.users.may_take(peer.user, object, pool) {
            return Ok(());
        }
        let held = self.users.usage(peer.user).get(object);
        Err(format!(
            "User {} holds {held} {what} across its connections, its fair share of the bus's \
             {pool} ({limit_name} × max_completed_connections): other users need the rest",
            peer.creds.uid
        ))
    }

    /// Calls waiting for a reply, bus-wide.
    pub(crate) fn replies_pending(&self) -> usize {
        self.replies.len()
    }

    /// Charges `n` `object`s to `id`'s user.
    pub(crate) fn charge(&mut self, id: PeerId, object: Object, n: u64) {
        if let Some(peer) = self.peers.get(id) {
            self.users.charge(peer.user, object, n);
        }
    }

    /// Gives back `n` `object`s of `id`'s user.
    pub(crate) fn release(&mut self, id: PeerId, object: Object, n: u64) {
        if n > 0 {
            if let Some(peer) = self.peers.get(id) {
                self.users.release(peer.user, object, n);
            }
        }
    }
}

use MessageType::{MethodCall, MethodReturn};

fn is_hello(msg: &Message) -> bool {
    msg.message_type() == MethodCall
        && msg.destination() == Some(DRIVER_NAME)
        && msg.member() == Some("Hello")
        && matches!(msg.interface(), None | Some(DRIVER_INTERFACE))
}

fn type_name(t: MessageType) -> &'static str {
    match t {
        MethodCall => "method_call",
        MethodReturn => "method_return",
        MessageType::Error => "error",
        MessageType::Signal => "signal",
        MessageType::Unknown(_) => "unknown",
    }
}

/// Hashes the bus's own sequential unique-name numbers: a multiplication spreads consecutive
/// numbers over the table, and no client chooses them.
#[derive(Default)]
struct SerialHasher(u64);

impl Hasher for SerialHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Name lookups for match rules.
struct Lookup<'a> {
    peers: &'a Peers,
    names: &'a NameRegistry,
}

impl NameOwners for Lookup<'_> {
    fn primary_owner(&self, name: &str) -> Option<PeerId> {
        if name.starts_with(':') {
            self.peers.by_unique_name(name)
        } else {
            self.names.primary_owner(name)
        }
    }

    fn for_each_owned_name(&self, peer: PeerId, f: &mut dyn FnMut(&str)) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        if let Some(unique) = &p.unique {
            f(unique);
        }
        for name in &p.names {
            if self.names.primary_owner(name) == Some(peer) {
                f(name);
            }
        }
    }
}

impl Peers {
    pub(crate) fn get(&self, id: PeerId) -> Option<&Peer> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.peer.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.peer.as_mut()
    }

    /// Every connected peer that said Hello.
    pub(crate) fn registered(&self) -> impl Iterator<Item = (PeerId, &Peer)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let p = s
                .peer
                .as_ref()
                .filter(|p| p.unique.is_some() && !p.leaving)?;
            Some((
                PeerId {
                    index: i as u32,
                    generation: s.generation,
                },
                p,
            ))
        })
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Every connected peer.
    fn all(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.peer.as_ref()?;
            Some(PeerId {
                index: i as u32,
                generation: s.generation,
            })
        })
    }

    /// Takes away `id`'s unique name as a destination (it became a monitor).
    fn unregister(&mut self, id: PeerId) {
        if let Some(peer) = self.get(id) {
            let n = peer.unique_id;
            if self.by_unique.get(&n) == Some(&id) {
                self.by_unique.remove(&n);
            }
        }
    }

    fn insert(&mut self, peer: Peer) -> PeerId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.peer = Some(peer);
        PeerId {
            index,
            generation: slot.generation,
        }
    }

    fn remove(&mut self, id: PeerId) {
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        if let Some(peer) = slot.peer.take() {
            if peer.unique.is_some() {
                self.by_unique.remove(&peer.unique_id);
            }
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(id.index);
        }
    }

    /// Gives `id` its unique name `:1.N` and returns it.
    fn assign_unique(&mut self, id: PeerId) -> Box<str> {
        let n = self.next_unique;
        self.next_unique += 1;
        let name: Box<str> = format!(":1.{n}").into();
        if let Some(peer) = self.get_mut(id) {
            peer.unique = Some(name.clone());
            peer.unique_id = n;
            self.by_unique.insert(n, id);
        }
        name
    }

    fn by_unique_name(&self, name: &str) -> Option<PeerId> {
        let digits = name.strip_prefix(":1.")?;
        if digits.is_empty()
            || (digits.len() > 1 && digits.starts_with('0'))
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        self.by_unique.get(&n).copied()
    }
}
