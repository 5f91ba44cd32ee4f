//! tramd: the D-Bus message bus daemon.

fn main() {}
