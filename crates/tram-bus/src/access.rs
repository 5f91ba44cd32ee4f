//! Policy at the points where the bus routes: who may send what to whom, and who may receive it.
//!
//! The rules and their evaluation are `policy.rs`; this module supplies what they ask about —
//! the names a connection holds, the message's header fields — and turns a denial into the
//! text of the AccessDenied error, in dbus-daemon's words. Messages from the bus driver are not
//! subject to send rules; messages to the driver are not subject to receive rules.

use tram_wire::Message;

use crate::PeerId;
use crate::bus::{Bus, DRIVER_NAME, Peer};
use crate::policy::{
    MessageKind, NameHolder, ReceiveCheck, RejectionKind, RejectionText, SendCheck,
};

/// The names a peer holds for policy: its unique name and every name it owns or queues for.
pub(crate) struct Held<'a>(pub(crate) &'a Peer);

impl NameHolder for Held<'_> {
    fn holds(&self, name: &str) -> bool {
        self.0.unique.as_deref() == Some(name) || self.0.names.iter().any(|n| &**n == name)
    }

    fn holds_in_namespace(&self, prefix: &str) -> bool {
        let inside = |n: &str| {
            n.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        self.0.unique.as_deref().is_some_and(inside) || self.0.names.iter().any(|n| inside(n))
    }
}

const DRIVER_HOLDS: [&str; 1] = [DRIVER_NAME];

impl Bus {
    /// Checks the sender's send rules and the receiver's receive rules for one delivery of
    /// `msg` (`from`/`to` `None`: the bus driver). `Err` carries the AccessDenied text.
    pub(crate) fn access(
        &self,
        from: Option<PeerId>,
        to: Option<PeerId>,
        msg: &Message,
        requested_reply: bool,
        eavesdropping: bool,
    ) -> Result<(), String> {
        let Some(kind) = MessageKind::from_wire(msg.message_type()) else {
            return Ok(());
        };
        let sender = from.and_then(|id| self.peers.get(id));
        let receiver = to.and_then(|id| self.peers.get(id));
        // The common case, an open policy, without reading the message.
        let is_reply = kind.is_reply();
        let sends = sender.is_none_or(|p| p.policy.sends_anything(is_reply, requested_reply));
        let receives = receiver.is_none_or(|p| {
            p.policy
                .receives_anything(is_reply, requested_reply, eavesdropping)
        });
        if sends && receives {
            return Ok(());
        }
        let sender_names: &dyn NameHolder = match sender {
            Some(p) => &Held(p),
            None => &DRIVER_HOLDS,
        };
        let receiver_names: &dyn NameHolder = match receiver {
            Some(p) => &Held(p),
            None => &DRIVER_HOLDS,
        };
        if let Some(p) = sender.filter(|_| !sends) {
            let check = SendCheck {
                message_type: kind,
                path: msg.path(),
                interface: msg.interface(),
                member: msg.member(),
                error_name: msg.error_name(),
                has_destination: msg.destination().is_some(),
                receiver: receiver_names,
                requested_reply,
                unix_fds: msg.unix_fds(),
            };
            if !p.policy.check_send(&check).allowed {
                let matched = p.policy.send_matches(&check);
                return Err(self.rejection(
                    RejectionKind::Send,
                    matched,
                    sender,
                    receiver,
                    msg,
                    requested_reply,
                ));
            }
        }
        if let Some(p) = receiver.filter(|_| !receives) {
            let check = ReceiveCheck {
                message_type: kind,
                path: msg.path(),
                interface: msg.interface(),
                member: msg.member(),
                error_name: msg.error_name(),
                sender: sender_names,
                requested_reply,
                eavesdropping,
                unix_fds: msg.unix_fds(),
            };
            if !p.policy.check_receive(&check).allowed {
                let matched = p.policy.receive_matches(&check);
                return Err(self.rejection(
                    RejectionKind::Receive,
                    matched,
                    sender,
                    receiver,
                    msg,
                    requested_reply,
                ));
            }
        }
        Ok(())
    }

    /// The send check for a message to `name`, which nobody owns yet (it is being activated):
    /// the name alone stands for the receiver, as with dbus-daemon.
    pub(crate) fn access_to_name(
        &self,
        from: PeerId,
        name: &str,
        msg: &Message,
    ) -> Result<(), String> {
        let (Some(kind), Some(sender)) = (
            MessageKind::from_wire(msg.message_type()),
            self.peers.get(from),
        ) else {
            return Ok(());
        };
        let receiver = [name];
        let check = SendCheck {
            message_type: kind,
            path: msg.path(),
            interface: msg.interface(),
            member: msg.member(),
            error_name: msg.error_name(),
            has_destination: true,
            receiver: &receiver,
            requested_reply: false,
            unix_fds: msg.unix_fds(),
        };
        if sender.policy.check_send(&check).allowed {
            return Ok(());
        }
        let matched = sender.policy.send_matches(&check);
        Err(self.rejection(RejectionKind::Send, matched, Some(sender), None, msg, false))
    }

    fn rejection(
        &self,
        kind: RejectionKind,
        matched_rules: u32,
        sender: Option<&Peer>,
        receiver: Option<&Peer>,
        msg: &Message,
        requested_reply: bool,
    ) -> String {
        let describe = |p: Option<&Peer>, driver: &str| match p {
            Some(p) => match p.creds.pid {
                Some(pid) => format!("uid={} pid={pid}", p.creds.uid),
                None => format!("uid={}", p.creds.uid),
            },
            None => driver.to_owned(),
        };
        let text = RejectionText {
            kind,
            matched_rules,
            message_type: MessageKind::from_wire(msg.message_type()).unwrap_or(MessageKind::Signal),
            sender: sender.and_then(|p| p.unique.as_deref()),
            sender_info: &describe(sender, "(bus)"),
            interface: msg.interface(),
            member: msg.member(),
            error_name: msg.error_name(),
            requested_reply,
            destination: msg.destination(),
            receiver_info: &describe(receiver, "bus"),
        };
        text.to_string()
    }
}
