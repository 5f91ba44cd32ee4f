//! tram-config's loader on arbitrary text.
//!
//! The text is loaded as the file `/nonexistent-tram-fuzz/fuzz.conf`, with a fixed user
//! database and SELinux off. Loading must never panic; an error must name that file and a line
//! within the text; an accepted configuration's policy must answer questions.
//!
//! tram-config has no loader without a filesystem, so `<include>` and `<includedir>` would read
//! real files. Inputs whose includes name anything that exists (resolved as the loader resolves
//! them) are skipped; includes of missing files are still exercised.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use roxmltree::{Document, ParsingOptions};
use tram_bus::policy::{MessageKind, ReceiveCheck, SendCheck};
use tram_config::{Loader, Selinux, UserTable};

const ORIGIN: &str = "/nonexistent-tram-fuzz/fuzz.conf";

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
messagebus:x:100:102::/nonexistent:/usr/sbin/nologin
user:x:1000:1000::/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

const GROUP: &str = "\
root:x:0:
wheel:x:10:user
messagebus:x:102:
user:x:1000:
nogroup:x:65534:
";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if includes_existing_path(text) {
        return;
    }
    static USERS: OnceLock<UserTable> = OnceLock::new();
    let users = USERS.get_or_init(|| UserTable::parse(PASSWD, GROUP));
    let loader = Loader::new(users, Selinux::disabled());
    let lines = u32::try_from(text.matches('\n').count() + 1).unwrap_or(u32::MAX);
    match loader.load_str(text, Path::new(ORIGIN)) {
        Ok(config) => {
            assert!(
                config.files.is_empty(),
                "a file was read: {:?}",
                config.files
            );
            for w in &config.warnings {
                assert!(!w.to_string().is_empty());
            }
            exercise_policy(&config);
        }
        Err(e) => {
            assert_eq!(e.file, Path::new(ORIGIN), "error in another file: {e}");
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
            assert!(e.to_string().starts_with(ORIGIN), "{e}");
        }
    }
});

fn exercise_policy(config: &tram_config::Config) {
    let policy = &config.policy;
    let _ = policy.allows_user(1000, &[1000, 10], 0);
    for (uid, groups, console) in [(Some(1000), &[1000, 10][..], false), (None, &[][..], true)] {
        let cp = policy.for_connection(uid, groups, console);
        let receiver = [":1.7", "org.example.Name"];
        let send = SendCheck {
            message_type: MessageKind::MethodCall,
            path: Some("/org/example"),
            interface: Some("org.example.I"),
            member: Some("M"),
            error_name: None,
            has_destination: true,
            receiver: &receiver,
            requested_reply: false,
            unix_fds: 0,
        };
        let _ = cp.check_send(&send);
        let receive = ReceiveCheck {
            message_type: MessageKind::Signal,
            path: Some("/org/example"),
            interface: Some("org.example.I"),
            member: Some("S"),
            error_name: None,
            sender: &receiver,
            requested_reply: false,
            eavesdropping: false,
            unix_fds: 0,
        };
        let _ = cp.check_receive(&receive);
        let _ = cp.check_own("org.example.Name");
    }
}

/// Whether an `<include>` or `<includedir>` (by local name, whatever its namespace) could name
/// something that exists: its text, whole or per text node, trimmed or not, resolved against the
/// origin's directory or the SELinux policy root.
fn includes_existing_path(text: &str) -> bool {
    let options = ParsingOptions {
        allow_dtd: true,
        ..ParsingOptions::default()
    };
    let Ok(doc) = Document::parse_with_options(text, options) else {
        return false;
    };
    let dir = Path::new(ORIGIN).parent().unwrap_or(Path::new("/"));
    let roots = [dir, Selinux::disabled().policy_root.as_path()].map(Path::to_path_buf);
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name().starts_with("include"))
        .any(|n| {
            let mut candidates: Vec<String> = n
                .descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text().map(str::to_owned))
                .collect();
            candidates.push(candidates.concat());
            candidates.iter().any(|c| {
                [c.as_str(), c.trim()].into_iter().any(|c| {
                    roots.iter().any(|root| {
                        root.join(c).symlink_metadata().is_ok() || root.join(c).exists()
                    })
                })
            })
        })
}
