//! dbus-daemon's XML configuration language, parsed into typed configuration.
