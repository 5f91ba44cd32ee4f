//! Resolving user and group names, the one place the configuration consults the user database.
//!
//! Policies and rules name users and groups (`user="messagebus"`, `group="wheel"`); the bus
//! works with numeric ids only, so names are resolved once, when the configuration is loaded.
//! dbus-daemon accepts a name, or a number that is the id of an existing user or group; anything
//! else is an unknown user (a warning: the rule or policy is dropped).
//!
//! [`SystemUsers`] reads `/etc/passwd` and `/etc/group` directly instead of going through NSS.
//! That keeps the bus free of NSS modules (which may talk to daemons that need the bus, a
//! deadlock at early boot) and of libc's non-reentrant lookups. Users and groups that exist only
//! in other NSS sources (LDAP, SSSD, systemd-homed, systemd's dynamic users) are therefore
//! unknown to policy rules; name such accounts by numeric id only if they are also in the files.
//! Tests inject their own [`UserDb`], such as a [`UserTable`] built from text.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// A source of user and group ids.
pub trait UserDb {
    /// The uid of the user called `name`; a decimal number is taken as a uid when such a user
    /// exists.
    fn uid(&self, name: &str) -> Option<u32>;

    /// The gid of the group called `name`; a decimal number is taken as a gid when such a group
    /// exists.
    fn gid(&self, name: &str) -> Option<u32>;
}

/// One account of a [`UserTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEntry {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

/// Users and groups parsed from `passwd(5)` and `group(5)` text.
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    users: HashMap<String, UserEntry>,
    uids: HashMap<u32, UserEntry>,
    groups: HashMap<String, u32>,
    gids: HashMap<u32, ()>,
}

/// The system's `/etc/passwd` and `/etc/group`, read on first use.
#[derive(Debug, Default)]
pub struct SystemUsers {
    table: OnceLock<UserTable>,
}

impl UserTable {
    /// Parses `passwd` and `group` file contents. Malformed lines, comments and NIS `+`/`-`
    /// entries are skipped.
    pub fn parse(passwd: &str, group: &str) -> UserTable {
        let mut table = UserTable::default();
        for fields in records(passwd) {
            if let (Some(name), Some(uid), Some(gid)) = (
                fields.first(),
                fields.get(2).and_then(|f| f.parse().ok()),
                fields.get(3).and_then(|f| f.parse().ok()),
            ) {
                let entry = UserEntry { uid, gid };
                table.users.entry((*name).to_owned()).or_insert(entry);
                table.uids.entry(uid).or_insert(entry);
            }
        }
        for fields in records(group) {
            if let (Some(name), Some(gid)) =
                (fields.first(), fields.get(2).and_then(|f| f.parse().ok()))
            {
                table.groups.entry((*name).to_owned()).or_insert(gid);
                table.gids.insert(gid, ());
            }
        }
        table
    }

    /// Reads and parses the two files; a file that cannot be read counts as empty.
    pub fn read(passwd: &Path, group: &Path) -> UserTable {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        UserTable::parse(&read(passwd), &read(group))
    }

    /// The account called `name`, or with the uid `name` spells; for `<user>`.
    pub fn user(&self, name: &str) -> Option<UserEntry> {
        self.users
            .get(name)
            .or_else(|| name.parse().ok().and_then(|uid| self.uids.get(&uid)))
            .copied()
    }
}

impl UserDb for UserTable {
    fn uid(&self, name: &str) -> Option<u32> {
        self.user(name).map(|e| e.uid)
    }

    fn gid(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied().or_else(|| {
            let gid = name.parse().ok()?;
            self.gids.contains_key(&gid).then_some(gid)
        })
    }
}

impl SystemUsers {
    /// A database that reads `/etc/passwd` and `/etc/group` the first time it is asked.
    pub fn new() -> SystemUsers {
        SystemUsers::default()
    }

    /// The parsed files.
    pub fn table(&self) -> &UserTable {
        self.table
            .get_or_init(|| UserTable::read(Path::new("/etc/passwd"), Path::new("/etc/group")))
    }
}

impl UserDb for SystemUsers {
    fn uid(&self, name: &str) -> Option<u32> {
        self.table().uid(name)
    }

    fn gid(&self, name: &str) -> Option<u32> {
        self.table().gid(name)
    }
}

/// The colon-separated fields of each meaningful line.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(['+', '-']))
        .map(|l| l.split(':').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
messagebus:x:100:102::/nonexistent:/usr/sbin/nologin
broken line
+nisuser::::::
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
1234:x:5000:5000::/:/bin/false
";
    const GROUP: &str = "\
root:x:0:
messagebus:x:102:
wheel:x:10:alice,bob
nogroup:x:65534:
bad:x:notanumber:
";

    #[test]
    fn names_and_numbers() {
        let t = UserTable::parse(PASSWD, GROUP);
        let cases: &[(&str, Option<u32>)] = &[
            ("root", Some(0)),
            ("messagebus", Some(100)),
            ("nobody", Some(65534)),
            ("0", Some(0)),
            ("100", Some(100)),
            // A user whose name is a number is found by name first.
            ("1234", Some(5000)),
            // dbus-daemon refuses numeric ids of users that do not exist.
            ("54321", None),
            ("nisuser", None),
            ("", None),
            ("broken line", None),
        ];
        for &(name, want) in cases {
            assert_eq!(t.uid(name), want, "{name}");
        }
        let cases: &[(&str, Option<u32>)] = &[
            ("wheel", Some(10)),
            ("nogroup", Some(65534)),
            ("102", Some(102)),
            ("103", None),
            ("bad", None),
        ];
        for &(name, want) in cases {
            assert_eq!(t.gid(name), want, "{name}");
        }
        assert_eq!(t.user("messagebus"), Some(UserEntry { uid: 100, gid: 102 }));
    }

    #[test]
    fn system_users_have_root() {
        assert_eq!(SystemUsers::new().uid("root"), Some(0));
        assert_eq!(SystemUsers::new().gid("0"), Some(0));
    }
}
