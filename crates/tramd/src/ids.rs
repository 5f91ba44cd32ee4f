//! The bus GUID and the machine id.
//!
//! Both are 32 lowercase hex digits ("UUIDs" in the D-Bus specification). The GUID is random,
//! fresh for every run. The machine id is read from `/etc/machine-id`, then
//! `/var/lib/dbus/machine-id`; when neither holds a valid id a random one is used and the
//! caller is told, so it can log a warning.

use std::io;
use std::path::Path;

use rustix::rand::{GetRandomFlags, getrandom};

/// Where the machine id is looked for, in order.
pub(crate) const MACHINE_ID_PATHS: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// Where the machine id came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MachineIdSource {
    /// Read from this file.
    File(&'static str),
    /// No file held a valid id: generated for this run.
    Generated,
}

/// A fresh random GUID.
///
/// # Errors
/// The kernel's random source failed.
pub(crate) fn random_guid() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(hex(&bytes))
}

/// Fills `buf` from the kernel's random source.
///
/// # Errors
/// The kernel's random source failed.
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        match getrandom(rest, GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The machine id, and where it came from.
///
/// # Errors
/// Only when an id has to be generated and the random source fails.
pub(crate) fn machine_id() -> io::Result<(String, MachineIdSource)> {
    for path in MACHINE_ID_PATHS {
        if let Some(id) = read_machine_id(Path::new(path)) {
            return Ok((id, MachineIdSource::File(path)));
        }
    }
    Ok((random_guid()?, MachineIdSource::Generated))
}

/// Whether `s` is 32 lowercase hex digits.
pub(crate) fn is_valid_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn read_machine_id(path: &Path) -> Option<String> {
    let content = std::fs::read_to_string(path).ok()?;
    let id = content.trim_end();
    is_valid_id(id).then(|| id.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_valid_and_fresh() {
        let a = random_guid().unwrap();
        let b = random_guid().unwrap();
        assert!(is_valid_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn id_validation() {
        assert!(is_valid_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_valid_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_valid_id("0123456789abcdef0123456789abcde"));
        assert!(!is_valid_id("0123456789abcdef0123456789abcdeg"));
    }

    #[test]
    fn reads_machine_id_file() {
        let dir = std::env::temp_dir().join(format!("tramd-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("0123456789abcdef0123456789abcdef\n", true),
            ("0123456789abcdef0123456789abcdef", true),
            ("not an id\n", false),
            ("", false),
        ];
        for (content, valid) in cases {
            let path = dir.join("machine-id");
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_machine_id(&path).is_some(), valid, "{content:?}");
        }
        assert_eq!(read_machine_id(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
