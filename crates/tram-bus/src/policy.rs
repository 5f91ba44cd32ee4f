//! Message bus policy: dbus-daemon's <policy> rules and their evaluation.
