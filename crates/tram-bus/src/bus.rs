//! The bus: the events it takes and the decisions it hands back.

use std::time::Instant;

use tram_wire::Message;

use crate::peer::{Credentials, PeerId, TxQueue};

/// What the bus is told at start-up (and, later, on reload).
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// The server GUID, 32 lowercase hex digits (GetId answers it).
    pub guid: String,
    /// The machine id, 32 lowercase hex digits (Peer.GetMachineId answers it).
    pub machine_id: String,
    /// `"session"`, `"system"` or a custom type from the configuration.
    pub bus_type: String,
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
}

/// The bus. See the crate documentation for the event/output protocol.
#[derive(Debug)]
pub struct Bus {
    _config: BusConfig,
}

impl Bus {
    /// A bus with no peers.
    pub fn new(config: BusConfig) -> Bus {
        Bus { _config: config }
    }

    /// A connection finished authentication. `unix_fds` says whether it negotiated fd passing.
    pub fn connect(&mut self, now: Instant, creds: Credentials, unix_fds: bool) -> PeerId {
        let _ = (now, creds, unix_fds);
        todo!()
    }

    /// A validated message arrived from `peer`.
    pub fn handle_message(&mut self, now: Instant, peer: PeerId, msg: Message) {
        let _ = (now, peer, msg);
        todo!()
    }

    /// `peer`'s connection is gone (hung up, or sent something invalid).
    pub fn disconnect(&mut self, now: Instant, peer: PeerId) {
        let _ = (now, peer);
        todo!()
    }

    /// The time returned by [`Bus::poll_timeout`] has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When the bus next needs [`Bus::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next action for the I/O layer.
    pub fn poll_action(&mut self) -> Option<Action> {
        todo!()
    }

    /// Appends to `out` every peer whose transmit queue gained messages since the last call.
    pub fn take_dirty(&mut self, out: &mut Vec<PeerId>) {
        let _ = out;
        todo!()
    }

    /// `peer`'s transmit queue, or `None` if the peer is gone.
    pub fn tx_queue(&mut self, peer: PeerId) -> Option<&mut TxQueue> {
        let _ = peer;
        todo!()
    }

    /// `peer`'s unique name, for logs.
    pub fn unique_name(&self, peer: PeerId) -> Option<&str> {
        let _ = peer;
        todo!()
    }
}
