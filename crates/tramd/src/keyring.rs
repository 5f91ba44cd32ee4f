//! DBUS_COOKIE_SHA1 keyrings: secret cookies in `~/.dbus-keyrings`.
//!
//! Implements the server's side of the keyring described in the D-Bus specification's
//! "DBUS_COOKIE_SHA1" section, for the context `org_freedesktop_general`:
//!
//! * the keyring directory must belong to the user being authenticated and be inaccessible to
//!   others, and the cookie file must be a regular file of that user; anything else is ignored
//!   (authentication fails);
//! * only a daemon running as that very user writes the keyring: it takes the lock file
//!   (`O_CREAT | O_EXCL`, a few short retries, a lock older than [`STALE_LOCK`] is broken),
//!   drops cookies created more than 7 minutes ago or more than 5 minutes in the future, adds a
//!   new cookie (24 random bytes) when none is younger than 5 minutes, saves the file
//!   atomically (temporary file, then `rename`), and removes the lock;
//! * a daemon running as another user (root serving a system bus) only reads: it uses a cookie
//!   younger than 5 minutes if the user's own programs left one, and fails otherwise; it never
//!   creates files in someone else's home directory.
//!
//! The [`Cookie`]s handed out here are what DBUS_COOKIE_SHA1 in `tram_sasl` challenges clients
//! with, through its `CookieAuthority`.
//!
//! Home directories come from `/etc/passwd`, read directly (no NSS), as everywhere in tramd.
//! Taking the lock may block the event loop for up to [`LOCK_WAIT`] when another process holds
//! it, which only happens while that process rewrites the file.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tram_sasl::{CONTEXT, Cookie, CookieAuthority, Identity};

use crate::ids;

/// A lock file older than this is taken to be left behind by a crashed process.
pub(crate) const STALE_LOCK: Duration = Duration::from_secs(30);
/// How long taking the lock waits for another process at most.
pub(crate) const LOCK_WAIT: Duration = Duration::from_millis(100);

/// Cookies older than this (seconds) are deleted.
const MAX_AGE: i64 = 7 * 60;
/// Cookies dated further in the future than this (seconds) are deleted.
const MAX_FUTURE: i64 = 5 * 60;
/// Only cookies younger than this (seconds) are used for new authentications.
const USABLE_AGE: i64 = 5 * 60;
/// Random bytes in a new cookie.
const COOKIE_BYTES: usize = 24;
/// The most of a cookie file read.
const MAX_FILE: u64 = 64 * 1024;

/// A user account as the keyring needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// The user id.
    pub(crate) uid: u32,
    /// The primary group id.
    pub(crate) gid: u32,
    /// The home directory.
    pub(crate) home: PathBuf,
}

/// Why no cookie could be had.
#[derive(Debug)]
pub(crate) enum KeyringError {
    /// The keyring directory or file is missing, or not safe to use.
    Unusable(PathBuf, &'static str),
    /// No recent cookie, and the daemon may not create one.
    NoCookie(PathBuf),
    /// The lock could not be taken in time.
    Locked(PathBuf),
    /// A file operation failed.
    Io(PathBuf, io::Error),
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::Unusable(p, why) => write!(f, "{}: {why}", p.display()),
            KeyringError::NoCookie(p) => write!(
                f,
                "{}: no recent cookie, and only its owner may create one",
                p.display()
            ),
            KeyringError::Locked(p) => write!(f, "{}: locked by another process", p.display()),
            KeyringError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for KeyringError {}

/// Finds accounts and hands out cookies.
#[derive(Debug, Clone)]
pub(crate) struct Keyrings {
    accounts: Vec<(String, Account)>,
    /// The uid the daemon runs as: it writes the keyring of this user only.
    own_uid: u32,
}

impl Keyrings {
    /// Accounts from `/etc/passwd`, for a daemon running as `own_uid`.
    pub(crate) fn system(own_uid: u32) -> Keyrings {
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        Keyrings::from_passwd(&passwd, own_uid)
    }

    /// Accounts from `passwd(5)` text.
    pub(crate) fn from_passwd(passwd: &str, own_uid: u32) -> Keyrings {
        let accounts = passwd
            .lines()
            .filter(|l| !l.starts_with(['#', '+', '-']))
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let (name, uid, gid, home) = (
                    fields.first()?,
                    fields.get(2)?,
                    fields.get(3)?,
                    fields.get(5)?,
                );
                let account = Account {
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                    home: PathBuf::from(home),
                };
                (!name.is_empty()).then(|| ((*name).to_owned(), account))
            })
            .collect();
        Keyrings { accounts, own_uid }
    }

    /// The account a client names: a user name, or a uid in decimal (as libdbus sends).
    pub(crate) fn account(&self, identity: &str) -> Option<&Account> {
        let by_name = self.accounts.iter().find(|(n, _)| n == identity);
        let by_uid = || {
            let uid: u32 = identity.parse().ok()?;
            self.accounts.iter().find(|(_, a)| a.uid == uid)
        };
        by_name.or_else(by_uid).map(|(_, a)| a)
    }

    /// A cookie to challenge `account` with, at time `now`.
    ///
    /// # Errors
    /// The keyring is unsafe or unreadable, locked, or holds no usable cookie that the daemon
    /// may add to.
    pub(crate) fn cookie(
        &self,
        account: &Account,
        now: SystemTime,
    ) -> Result<Cookie, KeyringError> {
        let now = unix_seconds(now);
        let dir = account.home.join(".dbus-keyrings");
        let file = dir.join(CONTEXT);
        let writable = account.uid == self.own_uid;
        check_dir(&dir, account.uid, writable)?;
        if !writable {
            let cookies = read_cookies(&file, account.uid)?;
            return usable(&cookies, now).ok_or(KeyringError::NoCookie(file));
        }
        let _lock = Lock::acquire(&file)?;
        let mut cookies = read_cookies(&file, account.uid)?;
        let before = cookies.len();
        cookies.retain(|c| c.created >= now - MAX_AGE && c.created <= now + MAX_FUTURE);
        if let Some(cookie) = usable(&cookies, now) {
            if cookies.len() != before {
                save(&file, &cookies)?;
            }
            return Ok(cookie);
        }
        let cookie = new_cookie(&cookies, now).map_err(|e| KeyringError::Io(file.clone(), e))?;
        cookies.push(cookie.clone());
        save(&file, &cookies)?;
        Ok(cookie)
    }
}

/// Parses a cookie file: `id created secret` per line; malformed lines are skipped.
pub(crate) fn parse_cookies(text: &str) -> Vec<Cookie> {
    let mut cookies: Vec<Cookie> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(id), Some(created), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(id), Ok(created)) = (id.parse::<u32>(), created.parse::<i64>()) else {
            continue;
        };
        let valid_hex = !secret.is_empty()
            && secret.len() % 2 == 0
            && secret.bytes().all(|b| b.is_ascii_hexdigit());
        if id > i32::MAX as u32 || !valid_hex || cookies.iter().any(|c| c.id == id) {
            continue;
        }
        cookies.push(Cookie {
            id,
            created,
            secret: secret.to_ascii_lowercase(),
        });
    }
    cookies
}

/// Writes cookies in the file format.
pub(crate) fn format_cookies(cookies: &[Cookie]) -> String {
    cookies
        .iter()
        .map(|c| format!("{} {} {}\n", c.id, c.created, c.secret))
        .collect()
}

/// The newest cookie that may start an authentication at `now`.
fn usable(cookies: &[Cookie], now: i64) -> Option<Cookie> {
    cookies
        .iter()
        .filter(|c| c.created > now - USABLE_AGE && c.created <= now + MAX_FUTURE)
        .max_by_key(|c| c.created)
        .cloned()
}

fn new_cookie(existing: &[Cookie], now: i64) -> io::Result<Cookie> {
    let mut secret = [0u8; COOKIE_BYTES];
    ids::fill_random(&mut secret)?;
    let mut id = [0u8; 4];
    loop {
        ids::fill_random(&mut id)?;
        let candidate = u32::from_ne_bytes(id) & 0x7fff_ffff;
        if !existing.iter().any(|c| c.id == candidate) {
            return Ok(Cookie {
                id: candidate,
                created: now,
                secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
    }
}

/// Checks that `dir` is a directory of `uid` that nobody else can use; creates it when the
/// daemon may write the keyring and it is missing.
fn check_dir(dir: &Path, uid: u32, writable: bool) -> Result<(), KeyringError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound && writable => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| KeyringError::Io(dir.to_owned(), e))?;
            fs::metadata(dir).map_err(|e| KeyringError::Io(dir.to_owned(), e))?
        }
        Err(e) => return Err(KeyringError::Io(dir.to_owned(), e)),
    };
    if !meta.is_dir() {
        return Err(KeyringError::Unusable(dir.to_owned(), "not a directory"));
    }
    if meta.uid() != uid {
        return Err(KeyringError::Unusable(
            dir.to_owned(),
            "not owned by the user being authenticated",
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(KeyringError::Unusable(
            dir.to_owned(),
            "accessible to other users",
        ));
    }
    Ok(())
}

/// Reads the cookie file; a missing file holds no cookies.
fn read_cookies(file: &Path, uid: u32) -> Result<Vec<Cookie>, KeyringError> {
    let handle = match fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KeyringError::Io(file.to_owned(), e)),
    };
    let meta = handle
        .metadata()
        .map_err(|e| KeyringError::Io(file.to_owned(), e))?;
    if !meta.is_file() || meta.uid() != uid {
        return Err(KeyringError::Unusable(
            file.to_owned(),
            "not a regular file of the user being authenticated",
        ));
    }
    let mut text = String::new();
    handle
        .take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| KeyringError::Io(file.to_owned(), e))?;
    Ok(parse_cookies(&text))
}

/// Replaces the cookie file atomically.
fn save(file: &Path, cookies: &[Cookie]) -> Result<(), KeyringError> {
    let io_err = |e| KeyringError::Io(file.to_owned(), e);
    let mut suffix = [0u8; 6];
    ids::fill_random(&mut suffix).map_err(io_err)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let temp = file.with_file_name(format!("{CONTEXT}.{suffix}.tmp"));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| {
            f.write_all(format_cookies(cookies).as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&temp, file));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_err(e));
    }
    Ok(())
}

/// The keyring lock: a file created exclusively, removed on drop.
struct Lock(PathBuf);

impl Lock {
    fn acquire(file: &Path) -> Result<Lock, KeyringError> {
        let path = file.with_file_name(format!("{CONTEXT}.lock"));
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut broke_stale = false;
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(Lock(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(KeyringError::Io(path, e)),
            }
            if !broke_stale && is_stale(&path) {
                broke_stale = true;
                let _ = fs::remove_file(&path);
                continue;
            }
            if std::time::Instant::now() >= deadline {
                return Err(KeyringError::Locked(path));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn is_stale(lock: &Path) -> bool {
    fs::metadata(lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_LOCK)
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// DBUS_COOKIE_SHA1 for the SASL servers: cookies from the claimed account's keyring.
impl CookieAuthority for Keyrings {
    fn challenge(&self, claimed: &str) -> Result<(Identity, Cookie), String> {
        let account = self
            .account(claimed)
            .ok_or_else(|| format!("no user {claimed:?}"))?;
        let cookie = self
            .cookie(account, SystemTime::now())
            .map_err(|e| e.to_string())?;
        let identity = Identity {
            uid: account.uid,
            gid: account.gid,
        };
        Ok((identity, cookie))
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        ids::fill_random(buf).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Home(PathBuf);

    impl Home {
        fn new(tag: &str) -> Home {
            let dir = std::env::temp_dir().join(format!(
                "tramd-keyring-{tag}-{}-{}",
                std::process::id(),
                ids::random_guid().unwrap()
            ));
            fs::create_dir(&dir).unwrap();
            Home(dir)
        }

        fn account(&self) -> Account {
            Account {
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
                home: self.0.clone(),
            }
        }

        fn file(&self) -> PathBuf {
            self.0.join(".dbus-keyrings").join(CONTEXT)
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn accounts_by_name_or_uid() {
        let k = Keyrings::from_passwd(
            "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1000:100::/home/alice:/bin/sh\n\
             broken\n42:x:5000:5000::/h:/bin/sh\n",
            0,
        );
        assert_eq!(k.account("root").map(|a| a.uid), Some(0));
        assert_eq!(
            k.account("1000").map(|a| a.home.clone()),
            Some("/home/alice".into())
        );
        assert_eq!(k.account("alice").map(|a| a.gid), Some(100));
        // A name that is a number is found by name first.
        assert_eq!(k.account("42").map(|a| a.uid), Some(5000));
        assert_eq!(k.account("5000").map(|a| a.uid), Some(5000));
        assert_eq!(k.account("bob"), None);
        assert_eq!(k.account("1001"), None);
        assert_eq!(k.account(""), None);
    }

    #[test]
    fn cookie_file_format() {
        let text = "1 100 00ff\n\
                    2 200 ABCD\n\
                    bad line\n\
                    3 300 xyz\n\
                    4 400 abc\n\
                    1 500 1234\n\
                    -5 600 12\n\
                    3000000000 700 12\n\
                    6 800 12 extra\n\
                    7 -900 aa\n";
        let cookies = parse_cookies(text);
        let got: Vec<(u32, i64, &str)> = cookies
            .iter()
            .map(|c| (c.id, c.created, c.secret.as_str()))
            .collect();
        assert_eq!(got, [(1, 100, "00ff"), (2, 200, "abcd"), (7, -900, "aa")]);
        assert_eq!(
            format_cookies(&cookies),
            "1 100 00ff\n2 200 abcd\n7 -900 aa\n"
        );
    }

    #[test]
    fn creates_reuses_and_expires_cookies() {
        let home = Home::new("own");
        let account = home.account();
        let k = Keyrings::from_passwd("", account.uid);
        let t0 = 1_000_000;
        let first = k.cookie(&account, at(t0)).unwrap();
        assert_eq!(first.created, t0 as i64);
        assert_eq!(first.secret.len(), 2 * COOKIE_BYTES);
        let dir = home.0.join(".dbus-keyrings");
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(home.file()).unwrap().mode() & 0o777, 0o600);
        assert!(
            !dir.join(format!("{CONTEXT}.lock")).exists(),
            "lock removed"
        );
        // Within five minutes the same cookie is used.
        assert_eq!(k.cookie(&account, at(t0 + 299)).unwrap(), first);
        // After that a new one is added, the old one kept until seven minutes.
        let second = k.cookie(&account, at(t0 + 300)).unwrap();
        assert_ne!(second.id, first.id);
        let ids: Vec<u32> = parse_cookies(&fs::read_to_string(home.file()).unwrap())
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [first.id, second.id]);
        // Past seven minutes the first is deleted.
        assert_eq!(k.cookie(&account, at(t0 + 421)).unwrap(), second);
        let left = parse_cookies(&fs::read_to_string(home.file()).unwrap());
        assert_eq!(left, std::slice::from_ref(&second));
        // Cookies far in the future are deleted too.
        fs::write(home.file(), format!("9 {} aa\n", t0 + 10_000)).unwrap();
        let third = k.cookie(&account, at(t0 + 422)).unwrap();
        assert_ne!(third.id, 9);
        assert_eq!(
            parse_cookies(&fs::read_to_string(home.file()).unwrap()),
            [third]
        );
    }

    #[test]
    fn another_users_keyring_is_only_read() {
        let home = Home::new("other");
        let account = home.account();
        // The daemon runs as someone else.
        let k = Keyrings::from_passwd("", account.uid.wrapping_add(1));
        let missing = k.cookie(&account, at(1_000)).unwrap_err();
        assert!(matches!(missing, KeyringError::Io(..)), "{missing}");
        assert!(!home.0.join(".dbus-keyrings").exists(), "nothing created");
        let dir = home.0.join(".dbus-keyrings");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::write(home.file(), "5 900 abcdef\n").unwrap();
        assert_eq!(k.cookie(&account, at(1_000)).unwrap().id, 5);
        let stale = k.cookie(&account, at(1_300)).unwrap_err();
        assert!(matches!(stale, KeyringError::NoCookie(_)), "{stale}");
        assert_eq!(fs::read_to_string(home.file()).unwrap(), "5 900 abcdef\n");
    }

    #[test]
    fn unsafe_directories_are_refused() {
        let home = Home::new("unsafe");
        let account = home.account();
        let k = Keyrings::from_passwd("", account.uid);
        let dir = home.0.join(".dbus-keyrings");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let err = k.cookie(&account, at(1_000)).unwrap_err();
        assert!(
            err.to_string().contains("accessible to other users"),
            "{err}"
        );
        assert!(!home.file().exists());
        let wrong_owner = Account {
            uid: account.uid.wrapping_add(1),
            ..account.clone()
        };
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let err = k.cookie(&wrong_owner, at(1_000)).unwrap_err();
        assert!(err.to_string().contains("not owned"), "{err}");
    }

    #[test]
    fn stale_lock_is_broken_live_one_waited_for() {
        let home = Home::new("lock");
        let account = home.account();
        let k = Keyrings::from_passwd("", account.uid);
        let dir = home.0.join(".dbus-keyrings");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let lock = dir.join(format!("{CONTEXT}.lock"));
        fs::write(&lock, "").unwrap();
        let err = k.cookie(&account, at(1_000)).unwrap_err();
        assert!(matches!(err, KeyringError::Locked(_)), "{err}");
        let old = fs::File::options().write(true).open(&lock).unwrap();
        old.set_modified(SystemTime::now() - 2 * STALE_LOCK)
            .unwrap();
        k.cookie(&account, at(1_000)).unwrap();
        assert!(!lock.exists());
    }
}
