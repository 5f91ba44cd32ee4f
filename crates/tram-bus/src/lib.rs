//! The D-Bus message bus as a pure state machine.
//!
//! [`Bus`] holds everything a bus knows — peers, names and their queues, match rules, pending
//! replies — and changes only when the caller feeds it an event:
//!
//! * [`Bus::connect`] when a connection has authenticated,
//! * [`Bus::handle_message`] for every validated message a peer sent,
//! * [`Bus::disconnect`] when a peer's socket is gone,
//! * [`Bus::handle_timeout`] when the time from [`Bus::poll_timeout`] has come.
//!
//! After each event the caller drains what the bus decided, in this order:
//!
//! 1. [`Bus::poll_action`] until `None`: peers to disconnect (protocol violations), and later
//!    activations and agent requests;
//! 2. [`Bus::take_dirty`]: peers whose transmit queue gained messages; write them from
//!    [`Bus::tx_queue`].
//!
//! The bus never does I/O and never reads the clock: time comes in as an argument, so tests
//! drive it deterministically without sockets (see the `harness` module in the tests).
#![warn(missing_docs)]

mod access;
mod activation;
mod bus;
mod driver;
pub mod match_rule;
mod names;
mod peer;
pub mod policy;
mod replies;
mod users;

pub use activation::{ActivationRequest, Service};
pub use bus::{Action, Bus, BusConfig, Limits, ReloadToken};
pub use driver::introspect;
pub use peer::{Credentials, PeerId, TxQueue};
