//! Syntax of bus names, interface names, member names, error names and object paths, as the
//! specification's [valid names](https://dbus.freedesktop.org/doc/dbus-specification.html#message-protocol-names)
//! section defines them.

/// A unique (`:1.42`) or well-known (`org.example.Name`) bus name.
pub fn is_valid_bus_name(s: &str) -> bool {
    let _ = s;
    todo!()
}
/// A unique connection name (starts with `:`).
pub fn is_valid_unique_name(s: &str) -> bool {
    s.starts_with(':') && is_valid_bus_name(s)
}
/// A well-known bus name (valid, not unique).
pub fn is_valid_well_known_name(s: &str) -> bool {
    !s.starts_with(':') && is_valid_bus_name(s)
}
/// An interface name.
pub fn is_valid_interface(s: &str) -> bool {
    let _ = s;
    todo!()
}
/// An error name (same syntax as an interface name).
pub fn is_valid_error_name(s: &str) -> bool {
    is_valid_interface(s)
}
/// A member name.
pub fn is_valid_member(s: &str) -> bool {
    let _ = s;
    todo!()
}
/// An object path.
pub fn is_valid_object_path(s: &str) -> bool {
    let _ = s;
    todo!()
}
