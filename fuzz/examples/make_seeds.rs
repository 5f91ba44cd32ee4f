//! Writes the seed corpora in `fuzz/corpus/TARGET/`.
//!
//! Run from the `fuzz` directory: `cargo run --example make_seeds`. The seeds are small valid
//! inputs: messages built with `MessageBuilder` in both byte orders (plus a message of an unknown
//! type and one with an unknown header field, which the specification accepts), real match
//! rules, the stock dbus-daemon configuration files (their includes pointed at a directory that
//! does not exist, so the `config` target does not skip them), and for the structured targets a
//! few pseudo-random byte strings. Existing files of the same name are overwritten; nothing
//! else is removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tram_wire::{BodyWriter, Endian, Flags, Message, MessageBuilder};

fn main() -> io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let messages = messages();

    let mut parse = Seeds::new(&root, "wire_parse")?;
    let mut vs_zbus = Seeds::new(&root, "wire_vs_zbus")?;
    for (name, bytes) in &messages {
        parse.write(name, bytes)?;
        // Mode byte 0: the rest is the message itself.
        let mut raw = vec![0];
        raw.extend_from_slice(bytes);
        vs_zbus.write(name, &raw)?;
    }
    // Mode byte 1: a generated message (from the bytes that follow) with a few edits.
    for i in 0..4 {
        let mut bytes = vec![1];
        bytes.extend(pseudo_random(i, 200));
        vs_zbus.write(&format!("generated-{i}"), &bytes)?;
    }

    let mut roundtrip = Seeds::new(&root, "wire_roundtrip")?;
    let mut policy = Seeds::new(&root, "policy")?;
    for i in 0..6 {
        roundtrip.write(
            &format!("random-{i}"),
            &pseudo_random(100 + i, 64 << (i % 3)),
        )?;
        policy.write(
            &format!("random-{i}"),
            &pseudo_random(200 + i, 64 << (i % 3)),
        )?;
    }

    let mut rules = Seeds::new(&root, "match_rule")?;
    for (i, rule) in MATCH_RULES.iter().enumerate() {
        rules.write(&format!("rule-{i}"), rule.as_bytes())?;
    }

    let mut config = Seeds::new(&root, "config")?;
    for file in STOCK_CONFIGS {
        let path = Path::new(file);
        let Ok(text) = fs::read_to_string(path) else {
            eprintln!("skipping {file}: not readable");
            continue;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("stock");
        config.write(name, away_from_real_files(&text).as_bytes())?;
    }
    for (i, text) in CONFIGS.iter().enumerate() {
        config.write(&format!("config-{i}"), text.as_bytes())?;
    }
    Ok(())
}

/// A target's seed directory.
struct Seeds {
    dir: PathBuf,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> io::Result<Seeds> {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        Ok(Seeds { dir })
    }

    fn write(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        fs::write(self.dir.join(format!("seed-{name}")), bytes)
    }
}

/// Valid messages, each in both byte orders.
fn messages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for endian in [Endian::Little, Endian::Big] {
        let tag = match endian {
            Endian::Little => "le",
            Endian::Big => "be",
        };
        let mut add = |name: &str, msg: Message| {
            out.push((format!("{name}-{tag}"), msg.as_bytes().to_vec()));
        };
        add(
            "hello",
            MessageBuilder::method_call(
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "Hello",
            )
            .endian(endian)
            .destination("org.freedesktop.DBus")
            .build(1),
        );
        add(
            "name-owner-changed",
            MessageBuilder::signal(
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameOwnerChanged",
            )
            .endian(endian)
            .sender("org.freedesktop.DBus")
            .body("sss", |w| {
                w.string("org.example.Name");
                w.string("");
                w.string(":1.7");
            })
            .build(7),
        );
        add(
            "get-all-reply",
            MessageBuilder::method_return(3)
                .endian(endian)
                .destination(":1.7")
                .sender(":1.1")
                .body("a{sv}", |w| {
                    w.array("{sv}", |w| {
                        w.dict_entry(|w| {
                            w.string("Version");
                            w.variant("u", |w| w.u32(14));
                        });
                        w.dict_entry(|w| {
                            w.string("Features");
                            w.variant("as", |w| {
                                w.array("s", |w| {
                                    w.string("AppArmor");
                                    w.string("SystemdActivation");
                                });
                            });
                        });
                    });
                })
                .build(9),
        );
        add(
            "error",
            MessageBuilder::error(5, "org.freedesktop.DBus.Error.ServiceUnknown")
                .endian(endian)
                .destination(":1.7")
                .body("s", |w| w.string("The name is not activatable"))
                .build(10),
        );
        add(
            "everything",
            MessageBuilder::method_call("/org/example/Object", Some("org.example.Iface"), "Do")
                .endian(endian)
                .flags(Flags(Flags::NO_AUTO_START))
                .destination("org.example.Service")
                .unix_fds(1)
                .body("ybnqiuxtdsogh(ai)a{yv}vay", everything)
                .build(11),
        );
        add(
            "no-reply",
            MessageBuilder::method_call("/", None, "Ping")
                .endian(endian)
                .flags(Flags(Flags::NO_REPLY_EXPECTED))
                .build(12),
        );
        // At the specification's depth limits: 32 nested arrays, 32 nested structs, both
        // together (64 containers), and variants nested until 64 containers.
        add(
            "deep-arrays",
            MessageBuilder::signal("/", "org.example.I", "Deep")
                .endian(endian)
                .body(&format!("{}y", "a".repeat(32)), |w| nested_arrays(w, 32))
                .build(15),
        );
        add(
            "deep-structs",
            MessageBuilder::signal("/", "org.example.I", "Deep")
                .endian(endian)
                .body(&format!("{}y{}", "(".repeat(32), ")".repeat(32)), |w| {
                    nested_structs(w, 32, &mut |w| w.u8(1))
                })
                .build(16),
        );
        add(
            "deep-both",
            MessageBuilder::signal("/", "org.example.I", "Deep")
                .endian(endian)
                .body(
                    &format!("{}{}y{}", "a".repeat(32), "(".repeat(32), ")".repeat(32)),
                    |w| nested_arrays_of_structs(w, 32, 32),
                )
                .build(17),
        );
        add(
            "deep-variants",
            MessageBuilder::signal("/", "org.example.I", "Deep")
                .endian(endian)
                .body("v", |w| nested_variants(w, 64))
                .build(18),
        );
        let unknown_type = {
            let mut bytes = MessageBuilder::method_return(1)
                .endian(endian)
                .build(13)
                .as_bytes()
                .to_vec();
            bytes[1] = 5;
            bytes
        };
        out.push((format!("unknown-type-{tag}"), unknown_type));
        let hello = MessageBuilder::method_call("/", Some("org.example.I"), "M")
            .endian(endian)
            .body("s", |w| w.string("x"))
            .build(14);
        out.push((format!("unknown-field-{tag}"), with_unknown_field(&hello)));
    }
    out
}

/// One value of each basic type, a struct of an array, a dict of variants, a variant holding a
/// struct, and a byte array.
fn everything(w: &mut BodyWriter) {
    w.u8(0xff);
    w.bool(true);
    w.i16(-2);
    w.u16(3);
    w.i32(-4);
    w.u32(5);
    w.i64(-6);
    w.u64(7);
    w.f64(0.5);
    w.string("héllo");
    w.object_path("/a/b");
    w.signature("a{sv}");
    w.unix_fd(0);
    w.structure(|w| {
        w.array("i", |w| {
            w.i32(1);
            w.i32(2);
        });
    });
    w.array("{yv}", |w| {
        w.dict_entry(|w| {
            w.u8(1);
            w.variant("s", |w| w.string("one"));
        });
        w.dict_entry(|w| {
            w.u8(2);
            w.variant("v", |w| w.variant("t", |w| w.u64(2)));
        });
    });
    w.variant("(sai)", |w| {
        w.structure(|w| {
            w.string("nested");
            w.array("i", |_| {});
        });
    });
    w.byte_array(b"\x00\x01\x02");
}

/// `depth` nested arrays, each holding one element, around a byte.
fn nested_arrays(w: &mut BodyWriter, depth: usize) {
    if depth == 0 {
        w.u8(7);
        return;
    }
    let element = format!("{}y", "a".repeat(depth - 1));
    w.array(&element, |w| nested_arrays(w, depth - 1));
}

/// `depth` nested structs around what `inner` writes.
fn nested_structs(w: &mut BodyWriter, depth: usize, inner: &mut dyn FnMut(&mut BodyWriter)) {
    if depth == 0 {
        inner(w);
        return;
    }
    w.structure(|w| nested_structs(w, depth - 1, inner));
}

/// `arrays` nested arrays of one element each, around `structs` nested structs around a byte.
fn nested_arrays_of_structs(w: &mut BodyWriter, arrays: usize, structs: usize) {
    if arrays == 0 {
        nested_structs(w, structs, &mut |w| w.u8(9));
        return;
    }
    let element = format!(
        "{}{}y{}",
        "a".repeat(arrays - 1),
        "(".repeat(structs),
        ")".repeat(structs)
    );
    w.array(&element, |w| {
        nested_arrays_of_structs(w, arrays - 1, structs)
    });
}

/// `depth` variants, each holding the next, around a byte.
fn nested_variants(w: &mut BodyWriter, depth: usize) {
    if depth == 1 {
        w.variant("y", |w| w.u8(3));
        return;
    }
    w.variant("v", |w| nested_variants(w, depth - 1));
}

/// `msg` with header field 10 (unknown to the specification) appended: `(10, <u32 42>)`.
fn with_unknown_field(msg: &Message) -> Vec<u8> {
    let bytes = msg.as_bytes();
    let big = msg.endian() == Endian::Big;
    let word = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let fields_len = {
        let b: [u8; 4] = bytes[12..16].try_into().expect("4 bytes");
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    } as usize;
    let mut out = bytes[..16 + fields_len].to_vec();
    out.resize(out.len().next_multiple_of(8), 0);
    out.extend_from_slice(&[10, 1, b'u', 0]);
    out.extend_from_slice(&word(42));
    let new_len = out.len() - 16;
    out[12..16].copy_from_slice(&word(new_len as u32));
    out.resize(out.len().next_multiple_of(8), 0);
    out.extend_from_slice(msg.body());
    out
}

/// Deterministic bytes (xorshift), so that regenerating the seeds changes nothing.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Points absolute include paths at a directory that does not exist.
fn away_from_real_files(text: &str) -> String {
    text.replace(">/etc/", ">/nonexistent-tram-fuzz/etc/")
        .replace(">/usr/", ">/nonexistent-tram-fuzz/usr/")
}

const MATCH_RULES: &[&str] = &[
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
     member='NameOwnerChanged',arg0='org.example.Name'",
    "type='signal',path_namespace='/org/gnome'",
    "type='method_call',interface='org.freedesktop.DBus.Properties',member='Get',eavesdrop=true",
    "arg0namespace='org.freedesktop',type='signal'",
    "arg1path='/a/b/',arg3='it'\\''s'",
    "sender=':1.42',destination=':1.7',path='/org/example'",
    " type = 'error' , eavesdrop='false',arg0x1='hex index'",
    "interface=org.example.I,member=Changed,arg63=last",
    "",
];

const STOCK_CONFIGS: &[&str] = &[
    "/usr/share/dbus-1/session.conf",
    "/usr/share/dbus-1/system.conf",
    "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf",
    "/usr/share/dbus-1/system.d/org.freedesktop.hostname1.conf",
];

const CONFIGS: &[&str] = &[
    r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=/tmp/tram-fuzz.sock</listen>
  <auth>EXTERNAL</auth>
  <allow_anonymous/>
  <limit name="max_message_size">1000000</limit>
  <limit name="max_match_rules_per_connection">512</limit>
  <policy context="default">
    <allow user="*"/>
    <deny send_destination="org.example.Secret" send_interface="org.example.I"/>
    <allow send_type="method_call" send_requested_reply="false" log="true"/>
    <allow receive_sender="org.example" eavesdrop="true" max_fds="0"/>
    <allow own_prefix="org.example"/>
  </policy>
  <policy group="wheel"><allow send_destination_prefix="org.example.Admin"/></policy>
  <policy user="messagebus"><allow own="org.freedesktop.DBus"/></policy>
  <policy at_console="true"><allow send_broadcast="true"/></policy>
  <policy context="mandatory"><deny send_path="/org/example/Forbidden" min_fds="1"/></policy>
  <include ignore_missing="yes">missing.conf</include>
  <includedir>missing.d</includedir>
  <apparmor mode="disabled"/>
  <selinux><associate own="org.example.Name" context="system_u:object_r:example_t"/></selinux>
</busconfig>
"#,
    r#"<busconfig>
  <user>1000</user>
  <fork/><keep_umask/><syslog/>
  <pidfile>/run/tram-fuzz.pid</pidfile>
  <servicedir>services</servicedir>
  <standard_session_servicedirs/>
  <servicehelper>/usr/lib/dbus-1.0/dbus-daemon-launch-helper</servicehelper>
  <policy context="default"><allow send_error="org.example.Error" receive_member="Ping"/></policy>
</busconfig>
"#,
];
