//! Fixtures for the match rule tests: peers, a name registry and messages.

use tram_wire::{BodyWriter, Message, MessageBuilder};

use super::NameOwners;
use crate::PeerId;

/// The peer in slab slot `index`.
pub(super) fn peer(index: u32) -> PeerId {
    PeerId::for_test(index)
}

/// A fixed name registry: `(name, primary owner)` pairs, unique names included.
#[derive(Debug, Default)]
pub(super) struct Names(pub(super) Vec<(String, PeerId)>);

impl Names {
    /// Peers 1..=n with unique names `:1.1` .. `:1.n`, plus the given well-known names.
    pub(super) fn new(peers: u32, well_known: &[(&str, u32)]) -> Names {
        let mut v: Vec<(String, PeerId)> =
            (1..=peers).map(|i| (format!(":1.{i}"), peer(i))).collect();
        v.extend(well_known.iter().map(|&(n, i)| (n.to_owned(), peer(i))));
        Names(v)
    }
}

impl NameOwners for Names {
    fn primary_owner(&self, name: &str) -> Option<PeerId> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, p)| p)
    }
    fn for_each_owned_name(&self, peer: PeerId, f: &mut dyn FnMut(&str)) {
        for (n, p) in &self.0 {
            if *p == peer {
                f(n);
            }
        }
    }
}

/// A message under construction, in the terms the tables use.
pub(super) struct Msg {
    builder: MessageBuilder,
}

impl Msg {
    /// A signal.
    pub(super) fn signal(path: &str, interface: &str, member: &str) -> Msg {
        Msg {
            builder: MessageBuilder::signal(path, interface, member),
        }
    }
    /// A method call.
    pub(super) fn call(path: &str, interface: Option<&str>, member: &str) -> Msg {
        Msg {
            builder: MessageBuilder::method_call(path, interface, member),
        }
    }
    /// A method return.
    pub(super) fn ret() -> Msg {
        Msg {
            builder: MessageBuilder::method_return(1),
        }
    }
    /// An error.
    pub(super) fn error() -> Msg {
        Msg {
            builder: MessageBuilder::error(1, "org.example.Error.Failed"),
        }
    }
    /// Sets DESTINATION.
    pub(super) fn to(self, destination: &str) -> Msg {
        Msg {
            builder: self.builder.destination(destination),
        }
    }
    /// Sets the body.
    pub(super) fn body(self, signature: &str, write: impl FnOnce(&mut BodyWriter)) -> Msg {
        Msg {
            builder: self.builder.body(signature, write),
        }
    }
    /// A body of strings.
    pub(super) fn strs(self, args: &[&str]) -> Msg {
        let sig = "s".repeat(args.len());
        self.body(&sig, |w| args.iter().for_each(|a| w.string(a)))
    }
    /// The message.
    pub(super) fn build(self) -> Message {
        self.builder.build(7)
    }
}
