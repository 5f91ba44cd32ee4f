//! Reading a rule's text, the way dbus-daemon 1.14 reads it.
//!
//! Where the specification is silent (whitespace, empty keys, how `N` in `argN` is read, how a
//! backslash outside quotes pairs with the next character) the behaviour follows dbus-daemon, as
//! observed through `AddMatch`; the tests record each such case.

use tram_wire::names::{is_valid_interface, is_valid_member, is_valid_object_path};

use super::{ArgKind, ArgMatch, MAX_ARGS, MAX_RULE_LEN, MatchRule, MatchRuleError};

/// The longest bus name or namespace, in bytes.
const MAX_NAME_LEN: usize = 255;

/// See [`MatchRule::parse`].
pub(super) fn parse(text: &str) -> Result<MatchRule, MatchRuleError> {
    if text.len() > MAX_RULE_LEN {
        return Err(MatchRuleError::TooLong { len: text.len() });
    }
    let mut rule = Draft::default();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_space);
        let key_len = rest.find(|c| c == '=' || is_space(c)).unwrap_or(rest.len());
        let (key, after_key) = rest.split_at(key_len);
        if key.is_empty() {
            // The end of the text, or `=` with no key: either way dbus-daemon stops reading here
            // and keeps what it has.
            break;
        }
        let Some(after_eq) = after_key.trim_start_matches(is_space).strip_prefix('=') else {
            return Err(invalid(
                "Match rule has a key with no subsequent '=' character".into(),
            ));
        };
        let (value, next) = read_value(after_eq)?;
        rule.set(key, value)?;
        rest = next;
    }
    Ok(rule.finish())
}

/// Whether `s` is a valid `arg0namespace` value: a bus name, except that a well-known one needs
/// no `.` (so `com` is a namespace).
///
/// As dbus-daemon does for bus names, a name starting with `:` is read leniently: after the
/// colon, any run of name characters in which every `.` is followed by a name character.
pub(super) fn is_valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    if let Some(unique) = s.strip_prefix(':') {
        return name_elements_ok(unique, |_| true);
    }
    name_elements_ok(s, |c| !c.is_ascii_digit()) && !s.starts_with('.')
}

/// Whether `s` is a bus name as dbus-daemon accepts it in a rule's `sender` or `destination`: a
/// unique name read leniently (see [`is_valid_namespace`]), or a well-known name.
fn is_valid_bus_name(s: &str) -> bool {
    is_valid_namespace(s) && (s.starts_with(':') || s.contains('.'))
}

/// Checks the `.`-separated elements of a bus name body: each character a name character, every
/// `.` followed by one that `first_ok` accepts, and the first character accepted by `first_ok`
/// unless it is a `.` (which only a unique name's body may start with).
fn name_elements_ok(s: &str, first_ok: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let name_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    if let Some(&c) = b.first() {
        if c != b'.' && !(name_char(c) && first_ok(c)) {
            return false;
        }
    }
    b.iter().enumerate().all(|(i, &c)| {
        if c == b'.' {
            b.get(i + 1).is_some_and(|&n| name_char(n) && first_ok(n))
        } else {
            name_char(c)
        }
    })
}

/// The whitespace dbus-daemon skips around keys.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn invalid(reason: String) -> MatchRuleError {
    MatchRuleError::Invalid(reason)
}

/// Reads one value up to the next comma outside quotes; returns it and the text after the comma.
///
/// Inside single quotes everything is literal up to the closing quote. Outside, a backslash
/// takes the next character with it: `\'` is an apostrophe, `\` before anything else is kept
/// along with that character (so `\,` does not end the value, and `\\'` opens a quote). The
/// specification says that a backslash not followed by an apostrophe "represents itself", which
/// would let `\,` end the value; dbus-daemon does not, and clients are written against it.
fn read_value(s: &str) -> Result<(String, &str), MatchRuleError> {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Quoted,
        Escaped,
    }
    let mut value = String::new();
    let mut state = State::Plain;
    for (i, c) in s.char_indices() {
        match state {
            State::Escaped => {
                if c != '\'' {
                    value.push('\\');
                }
                value.push(c);
                state = State::Plain;
            }
            State::Quoted if c == '\'' => state = State::Plain,
            State::Quoted => value.push(c),
            State::Plain => match c {
                ',' => return Ok((value, s.get(i + 1..).unwrap_or(""))),
                '\\' => state = State::Escaped,
                '\'' => state = State::Quoted,
                _ => value.push(c),
            },
        }
    }
    match state {
        State::Quoted => Err(invalid("Unbalanced quotation marks in match rule".into())),
        State::Escaped => {
            value.push('\\');
            Ok((value, ""))
        }
        State::Plain => Ok((value, "")),
    }
}

/// A rule being parsed: the rule plus what is needed to refuse repeated keys.
#[derive(Default)]
struct Draft {
    rule: MatchRule,
    args: Vec<ArgMatch>,
}

impl Draft {
    /// Applies one `key=value` pair.
    fn set(&mut self, key: &str, value: String) -> Result<(), MatchRuleError> {
        let rule = &mut self.rule;
        match key {
            "type" => {
                once(rule.msg_type.is_none(), key)?;
                rule.msg_type = Some(match value.as_str() {
                    "method_call" => 1,
                    "method_return" => 2,
                    "error" => 3,
                    "signal" => 4,
                    _ => {
                        return Err(invalid(format!(
                            "Invalid message type ({value}) in match rule"
                        )));
                    }
                });
            }
            "sender" => {
                once(rule.sender.is_none(), key)?;
                check(is_valid_bus_name(&value), || {
                    format!("Sender name '{value}' is invalid")
                })?;
                rule.sender = Some(value.into());
            }
            "destination" => {
                once(rule.destination.is_none(), key)?;
                check(is_valid_bus_name(&value), || {
                    format!("Destination name '{value}' is invalid")
                })?;
                rule.destination = Some(value.into());
            }
            "interface" => {
                once(rule.interface.is_none(), key)?;
                check(is_valid_interface(&value), || {
                    format!("Interface name '{value}' is invalid")
                })?;
                rule.interface = Some(value.into());
            }
            "member" => {
                once(rule.member.is_none(), key)?;
                check(is_valid_member(&value), || {
                    format!("Member name '{value}' is invalid")
                })?;
                rule.member = Some(value.into());
            }
            "path" | "path_namespace" => {
                if rule.path.is_some() {
                    return Err(invalid(
                        "path or path_namespace specified twice in match rule".into(),
                    ));
                }
                check(is_valid_object_path(&value), || {
                    format!("Path '{value}' is invalid")
                })?;
                rule.path = Some(value.into());
                rule.path_is_namespace = key == "path_namespace";
            }
            // Repeating `eavesdrop` is allowed; the last one counts.
            "eavesdrop" => {
                rule.eavesdrop = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(invalid(format!(
                            "eavesdrop='{value}' is invalid, it should be 'true' or 'false'"
                        )));
                    }
                };
            }
            _ if key.starts_with("arg") => self.set_arg(key, value)?,
            _ => return Err(invalid(format!("Unknown key \"{key}\" in match rule"))),
        }
        Ok(())
    }

    /// Applies `argN`, `argNpath` or `arg0namespace`.
    fn set_arg(&mut self, key: &str, value: String) -> Result<(), MatchRuleError> {
        let (index, kind) = if key == "arg0namespace" {
            (0, ArgKind::Namespace)
        } else {
            let digits = key.get(3..).unwrap_or("");
            if digits.is_empty() {
                return Err(invalid(format!(
                    "Key '{key}' in match rule starts with 'arg' but lacks an arg number. \
                     Should be 'arg0' or 'arg7' for example."
                )));
            }
            let (number, used) = strtoul(digits);
            let Some(number) = number.filter(|_| used > 0) else {
                return Err(invalid(format!(
                    "Key '{key}' in match rule starts with 'arg' but could not parse arg \
                     number. Should be 'arg0' or 'arg7' for example."
                )));
            };
            let kind = match digits.get(used..) {
                Some("") => ArgKind::Str,
                Some("path") => ArgKind::Path,
                _ => {
                    return Err(invalid(format!(
                        "Key '{key}' in match rule contains junk after argument number \
                         ({number}). Only 'arg{number}path' (for example) or 'arg0namespace' \
                         are valid"
                    )));
                }
            };
            match u8::try_from(number) {
                Ok(index) if usize::from(index) < MAX_ARGS => (index, kind),
                _ => {
                    return Err(invalid(format!(
                        "Key '{key}' in match rule has arg number {number} but the maximum is {}.",
                        MAX_ARGS - 1
                    )));
                }
            }
        };
        if self.args.iter().any(|a| a.index == index) {
            return Err(invalid(format!(
                "Argument {key} matched more than once in match rule"
            )));
        }
        if kind == ArgKind::Namespace {
            check(is_valid_namespace(&value), || {
                format!("arg0namespace='{value}' is not a valid prefix of a bus name")
            })?;
        }
        self.args.push(ArgMatch {
            index,
            kind,
            value: value.into(),
        });
        Ok(())
    }

    fn finish(mut self) -> MatchRule {
        self.args.sort_unstable_by_key(|a| a.index);
        self.rule.args = self.args.into_boxed_slice();
        self.rule
    }
}

/// Refuses a key given twice.
fn once(first: bool, key: &str) -> Result<(), MatchRuleError> {
    check(first, || format!("Key {key} specified twice in match rule"))
}

fn check(ok: bool, reason: impl FnOnce() -> String) -> Result<(), MatchRuleError> {
    if ok { Ok(()) } else { Err(invalid(reason())) }
}

/// Reads an unsigned number the way C's `strtoul(s, &end, 0)` does, which is how dbus-daemon
/// reads the `N` of `argN`: an optional sign, then `0x` and hex digits, `0` and octal digits, or
/// decimal digits; a minus sign negates modulo 2^64.
///
/// Returns the number (`None` on overflow) and how many bytes were used (0: no number).
fn strtoul(s: &str) -> (Option<u64>, usize) {
    let b = s.as_bytes();
    let (negative, sign_len) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let body = b.get(sign_len..).unwrap_or(&[]);
    let hex = matches!(body, [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit());
    let (radix, skip) = match body {
        _ if hex => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let digits = body.get(skip..).unwrap_or(&[]);
    let count = digits
        .iter()
        .take_while(|&&d| char::from(d).is_digit(radix))
        .count();
    if count == 0 {
        return (Some(0), 0);
    }
    let mut value = Some(0u64);
    for &d in digits.iter().take(count) {
        let digit = char::from(d).to_digit(radix).map(u64::from);
        value = value
            .and_then(|v| v.checked_mul(u64::from(radix)))
            .zip(digit)
            .and_then(|(v, d)| v.checked_add(d));
    }
    let value = value.map(|v| if negative { v.wrapping_neg() } else { v });
    (value, sign_len + skip + count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(canonical text)` or `Err(error text)`.
    type Expect = Result<&'static str, &'static str>;

    /// Each row was checked against dbus-daemon 1.14.10 with `AddMatch` (accepted or refused,
    /// and with the same error text); canonical forms against `GetAllMatchRules`.
    const TABLE: &[(&str, Expect)] = &[
        // The empty rule matches everything.
        ("", Ok("")),
        ("   ", Ok("")),
        ("\t", Ok("")),
        ("type='signal'", Ok("type='signal'")),
        ("type=signal", Ok("type='signal'")),
        ("type='method_call'", Ok("type='method_call'")),
        ("type=method_return", Ok("type='method_return'")),
        ("type=error", Ok("type='error'")),
        (
            "type=Signal",
            Err("Invalid message type (Signal) in match rule"),
        ),
        (
            "type='foo'",
            Err("Invalid message type (foo) in match rule"),
        ),
        ("type=''", Err("Invalid message type () in match rule")),
        ("type=", Err("Invalid message type () in match rule")),
        // Whitespace before a key and between key and `=` is skipped...
        (" type='signal'", Ok("type='signal'")),
        ("\ttype='signal'", Ok("type='signal'")),
        ("\n\rtype\n='signal'", Ok("type='signal'")),
        ("type ='signal'", Ok("type='signal'")),
        ("eavesdrop =true", Ok("eavesdrop='true'")),
        (
            "type='signal', member='Foo'",
            Ok("type='signal',member='Foo'"),
        ),
        (
            "type='signal',\tmember='Foo'",
            Ok("type='signal',member='Foo'"),
        ),
        // ...but whitespace after `=` or after a value belongs to the value.
        (
            "type = 'signal'",
            Err("Invalid message type ( signal) in match rule"),
        ),
        (
            "type= 'signal'",
            Err("Invalid message type ( signal) in match rule"),
        ),
        (
            "type='signal' ",
            Err("Invalid message type (signal ) in match rule"),
        ),
        (
            "type='signal' ,member='Foo'",
            Err("Invalid message type (signal ) in match rule"),
        ),
        (
            "eavesdrop= true",
            Err("eavesdrop=' true' is invalid, it should be 'true' or 'false'"),
        ),
        ("arg0= a b ", Ok("arg0=' a b '")),
        // Vertical tab and form feed are not whitespace to dbus-daemon.
        (
            "\x0btype='signal'",
            Err("Unknown key \"\x0btype\" in match rule"),
        ),
        // A trailing comma is fine; a leading or doubled one becomes part of a key.
        ("type='signal',", Ok("type='signal'")),
        ("type='signal', ", Ok("type='signal'")),
        ("type='signal',\n", Ok("type='signal'")),
        (",type='signal'", Err("Unknown key \",type\" in match rule")),
        (
            "type='signal',,member='Foo'",
            Err("Unknown key \",member\" in match rule"),
        ),
        (
            "arg0='a',,",
            Err("Match rule has a key with no subsequent '=' character"),
        ),
        (
            "type='signal',  ,",
            Err("Match rule has a key with no subsequent '=' character"),
        ),
        // A missing `=`.
        (
            "type",
            Err("Match rule has a key with no subsequent '=' character"),
        ),
        (
            "type x='signal'",
            Err("Match rule has a key with no subsequent '=' character"),
        ),
        (
            "arg0=a,b",
            Err("Match rule has a key with no subsequent '=' character"),
        ),
        // An empty key ends the rule; whatever follows is ignored, even if it is malformed.
        ("=signal", Ok("")),
        ("=", Ok("")),
        ("==", Ok("")),
        ("='", Ok("")),
        ("=signal,type='foo'", Ok("")),
        ("type='error',=,type='signal'", Ok("type='error'")),
        ("type='signal',='", Ok("type='signal'")),
        // `=` inside a value is literal.
        (
            "type==signal",
            Err("Invalid message type (=signal) in match rule"),
        ),
        ("arg0=a=b", Ok("arg0='a=b'")),
        // Quoting: quoted and unquoted runs concatenate.
        ("type='sig'nal", Ok("type='signal'")),
        ("type='sig''nal'", Ok("type='signal'")),
        ("type=''signal", Ok("type='signal'")),
        ("type=signal''", Ok("type='signal'")),
        ("arg0=a'b,c'd", Ok("arg0='ab,cd'")),
        ("arg0='a,b'c,arg1=d", Ok("arg0='a,bc',arg1='d'")),
        ("arg0=','", Ok("arg0=','")),
        ("arg0=''''", Ok("arg0=''")),
        ("arg0='',", Ok("arg0=''")),
        ("arg0=", Ok("arg0=''")),
        (
            "type='signal",
            Err("Unbalanced quotation marks in match rule"),
        ),
        ("arg0=',", Err("Unbalanced quotation marks in match rule")),
        // The specification's first example means four arguments: `'`, `\`, `,` and `\\`.
        (
            "arg0=''\\''',arg1='\\',arg2=',',arg3='\\\\'",
            Ok(SPEC_EXAMPLE),
        ),
        // Its second example is said to mean the same, but dbus-daemon reads `\,` as two
        // characters that do not end the value, so arg1 swallows arg2. tram follows dbus-daemon.
        (
            "arg0=\\',arg1=\\,arg2=',',arg3=\\\\",
            Ok("arg0=''\\''',arg1='\\,arg2=,',arg3='\\\\'"),
        ),
        // Outside quotes a backslash pairs with the next character: `\'` is an apostrophe,
        // anything else keeps its backslash and does not act (a comma does not end the value).
        (
            "type=sig\\'nal",
            Err("Invalid message type (sig'nal) in match rule"),
        ),
        ("arg0=\\'a\\'", Ok("arg0=''\\''a'\\'''")),
        ("arg0=a\\,b", Ok("arg0='a\\,b'")),
        ("arg0=a\\", Ok("arg0='a\\'")),
        ("arg0='a\\'", Ok("arg0='a\\'")),
        ("arg0='a\\',arg1='b'", Ok("arg0='a\\',arg1='b'")),
        (
            "arg0=\\\\'",
            Err("Unbalanced quotation marks in match rule"),
        ),
        (
            "arg0='\\''",
            Err("Unbalanced quotation marks in match rule"),
        ),
        (
            "type='sig'\\'nal'",
            Err("Unbalanced quotation marks in match rule"),
        ),
        ("arg0='it'\\''s'", Ok("arg0='it'\\''s'")),
        ("arg0=\u{e9}t\u{e9}", Ok("arg0='\u{e9}t\u{e9}'")),
        // Keys are case-sensitive; unknown keys are refused.
        ("TYPE='signal'", Err("Unknown key \"TYPE\" in match rule")),
        ("Arg0='x'", Err("Unknown key \"Arg0\" in match rule")),
        ("bogus='x'", Err("Unknown key \"bogus\" in match rule")),
        ("typex='signal'", Err("Unknown key \"typex\" in match rule")),
        // Repeated keys.
        (
            "type='signal',type='signal'",
            Err("Key type specified twice in match rule"),
        ),
        (
            "type='signal',type='error'",
            Err("Key type specified twice in match rule"),
        ),
        (
            "member='Foo',member='Foo'",
            Err("Key member specified twice in match rule"),
        ),
        (
            "interface='a.b',interface='a.b'",
            Err("Key interface specified twice in match rule"),
        ),
        (
            "sender=':1.1',sender=':1.1'",
            Err("Key sender specified twice in match rule"),
        ),
        (
            "destination=':1.1',destination=':1.1'",
            Err("Key destination specified twice in match rule"),
        ),
        (
            "path='/a',path='/a'",
            Err("path or path_namespace specified twice in match rule"),
        ),
        (
            "path='/a',path_namespace='/a'",
            Err("path or path_namespace specified twice in match rule"),
        ),
        (
            "arg0='x',arg0='x'",
            Err("Argument arg0 matched more than once in match rule"),
        ),
        (
            "arg0='x',arg00='x'",
            Err("Argument arg00 matched more than once in match rule"),
        ),
        (
            "arg1='x',arg01='y'",
            Err("Argument arg01 matched more than once in match rule"),
        ),
        (
            "arg0='x',arg0path='/x'",
            Err("Argument arg0path matched more than once in match rule"),
        ),
        (
            "arg0path='/x',arg0='x'",
            Err("Argument arg0 matched more than once in match rule"),
        ),
        (
            "arg0='x',arg0namespace='com'",
            Err("Argument arg0namespace matched more than once in match rule"),
        ),
        // `eavesdrop` may repeat; the last one counts.
        ("eavesdrop=false,eavesdrop=true", Ok("eavesdrop='true'")),
        (
            "type='signal',eavesdrop='true',eavesdrop='false'",
            Ok("type='signal'"),
        ),
        ("eavesdrop='false'", Ok("")),
        (
            "eavesdrop=TRUE",
            Err("eavesdrop='TRUE' is invalid, it should be 'true' or 'false'"),
        ),
        (
            "eavesdrop=1",
            Err("eavesdrop='1' is invalid, it should be 'true' or 'false'"),
        ),
        (
            "eavesdrop=",
            Err("eavesdrop='' is invalid, it should be 'true' or 'false'"),
        ),
        // Bus names: unique names are read leniently (`:1`, `:` and `:-` pass), well-known
        // names need a `.` and no element starting with a digit.
        (
            "sender='org.freedesktop.DBus'",
            Ok("sender='org.freedesktop.DBus'"),
        ),
        ("sender=':1.0'", Ok("sender=':1.0'")),
        ("sender=':1'", Ok("sender=':1'")),
        ("sender=':'", Ok("sender=':'")),
        ("sender=':-'", Ok("sender=':-'")),
        ("sender=':.a'", Ok("sender=':.a'")),
        ("sender=':a'", Ok("sender=':a'")),
        ("sender='-a.b'", Ok("sender='-a.b'")),
        ("sender='a.-b'", Ok("sender='a.-b'")),
        ("sender='a-b.c'", Ok("sender='a-b.c'")),
        ("sender=':a..b'", Err("Sender name ':a..b' is invalid")),
        ("sender=':1.'", Err("Sender name ':1.' is invalid")),
        ("sender=':.'", Err("Sender name ':.' is invalid")),
        ("sender='foo'", Err("Sender name 'foo' is invalid")),
        (
            "sender='1foo.bar'",
            Err("Sender name '1foo.bar' is invalid"),
        ),
        ("sender='a.1b'", Err("Sender name 'a.1b' is invalid")),
        ("sender=''", Err("Sender name '' is invalid")),
        ("sender='a.b.'", Err("Sender name 'a.b.' is invalid")),
        ("sender=' :1.1'", Err("Sender name ' :1.1' is invalid")),
        ("destination=':1.0'", Ok("destination=':1.0'")),
        ("destination=':'", Ok("destination=':'")),
        (
            "destination='org.example.Foo'",
            Ok("destination='org.example.Foo'"),
        ),
        (
            "destination='foo'",
            Err("Destination name 'foo' is invalid"),
        ),
        (
            "interface='org.freedesktop.DBus'",
            Ok("interface='org.freedesktop.DBus'"),
        ),
        ("interface='_a._b'", Ok("interface='_a._b'")),
        ("interface='foo'", Err("Interface name 'foo' is invalid")),
        ("interface='a.1b'", Err("Interface name 'a.1b' is invalid")),
        (
            "interface='a.b-c'",
            Err("Interface name 'a.b-c' is invalid"),
        ),
        ("interface=''", Err("Interface name '' is invalid")),
        ("member='Foo'", Ok("member='Foo'")),
        ("member='_'", Ok("member='_'")),
        ("member='a9'", Ok("member='a9'")),
        ("member='1Foo'", Err("Member name '1Foo' is invalid")),
        ("member='Foo.Bar'", Err("Member name 'Foo.Bar' is invalid")),
        ("member='Foo-Bar'", Err("Member name 'Foo-Bar' is invalid")),
        ("member=''", Err("Member name '' is invalid")),
        ("path='/'", Ok("path='/'")),
        ("path='/a/_b/C9'", Ok("path='/a/_b/C9'")),
        ("path='/a/b/'", Err("Path '/a/b/' is invalid")),
        ("path='a'", Err("Path 'a' is invalid")),
        ("path=''", Err("Path '' is invalid")),
        ("path='/a//b'", Err("Path '/a//b' is invalid")),
        ("path='/a/b-c'", Err("Path '/a/b-c' is invalid")),
        ("path_namespace='/'", Ok("path_namespace='/'")),
        ("path_namespace='/a'", Ok("path_namespace='/a'")),
        ("path_namespace='/a/'", Err("Path '/a/' is invalid")),
        ("path_namespace='a'", Err("Path 'a' is invalid")),
        // Argument keys: `N` is read like C's strtoul with base 0.
        ("arg63='x'", Ok("arg63='x'")),
        ("arg00='x'", Ok("arg0='x'")),
        ("arg01='x'", Ok("arg1='x'")),
        ("arg010='x'", Ok("arg8='x'")),
        ("arg0x1='x'", Ok("arg1='x'")),
        ("arg0X1='x'", Ok("arg1='x'")),
        ("arg0x3f='x'", Ok("arg63='x'")),
        ("arg077path='x'", Ok("arg63path='x'")),
        ("arg0xfpath='x'", Ok("arg15path='x'")),
        ("arg+2='x'", Ok("arg2='x'")),
        ("arg+0x1path='x'", Ok("arg1path='x'")),
        ("arg-0='x'", Ok("arg0='x'")),
        (
            "arg64='x'",
            Err("Key 'arg64' in match rule has arg number 64 but the maximum is 63."),
        ),
        (
            "arg0x40='x'",
            Err("Key 'arg0x40' in match rule has arg number 64 but the maximum is 63."),
        ),
        (
            "arg64path='/a'",
            Err("Key 'arg64path' in match rule has arg number 64 but the maximum is 63."),
        ),
        (
            "arg-1='x'",
            Err(
                "Key 'arg-1' in match rule has arg number 18446744073709551615 but the maximum \
                 is 63.",
            ),
        ),
        (
            "arg4294967296='x'",
            Err(
                "Key 'arg4294967296' in match rule has arg number 4294967296 but the maximum \
                 is 63.",
            ),
        ),
        (
            "arg99999999999999999999='x'",
            Err(
                "Key 'arg99999999999999999999' in match rule starts with 'arg' but could not \
                 parse arg number. Should be 'arg0' or 'arg7' for example.",
            ),
        ),
        (
            "arg='x'",
            Err(
                "Key 'arg' in match rule starts with 'arg' but lacks an arg number. Should be \
                 'arg0' or 'arg7' for example.",
            ),
        ),
        (
            "argpath='x'",
            Err(
                "Key 'argpath' in match rule starts with 'arg' but could not parse arg number. \
                 Should be 'arg0' or 'arg7' for example.",
            ),
        ),
        (
            "arg+='x'",
            Err(
                "Key 'arg+' in match rule starts with 'arg' but could not parse arg number. \
                 Should be 'arg0' or 'arg7' for example.",
            ),
        ),
        (
            "arg08='x'",
            Err(
                "Key 'arg08' in match rule contains junk after argument number (0). Only \
                 'arg0path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        (
            "arg0xpath='x'",
            Err(
                "Key 'arg0xpath' in match rule contains junk after argument number (0). Only \
                 'arg0path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        (
            "arg1e1='x'",
            Err(
                "Key 'arg1e1' in match rule contains junk after argument number (1). Only \
                 'arg1path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        (
            "arg0Path='x'",
            Err(
                "Key 'arg0Path' in match rule contains junk after argument number (0). Only \
                 'arg0path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        // `namespace` is only ever `arg0namespace`, spelled exactly so.
        (
            "arg1namespace='com'",
            Err(
                "Key 'arg1namespace' in match rule contains junk after argument number (1). \
                 Only 'arg1path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        (
            "arg00namespace='a'",
            Err(
                "Key 'arg00namespace' in match rule contains junk after argument number (0). \
                 Only 'arg0path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        (
            "arg64namespace='a'",
            Err(
                "Key 'arg64namespace' in match rule contains junk after argument number (64). \
                 Only 'arg64path' (for example) or 'arg0namespace' are valid",
            ),
        ),
        // Argument values: anything, except that a namespace must look like a bus name prefix.
        ("arg0path='/a/'", Ok("arg0path='/a/'")),
        ("arg0path='x'", Ok("arg0path='x'")),
        ("arg0path=''", Ok("arg0path=''")),
        (
            "arg0namespace='com.example'",
            Ok("arg0namespace='com.example'"),
        ),
        ("arg0namespace=com", Ok("arg0namespace='com'")),
        ("arg0namespace='_a'", Ok("arg0namespace='_a'")),
        ("arg0namespace='-a'", Ok("arg0namespace='-a'")),
        ("arg0namespace='a.b-'", Ok("arg0namespace='a.b-'")),
        ("arg0namespace=':1.2'", Ok("arg0namespace=':1.2'")),
        ("arg0namespace=':1'", Ok("arg0namespace=':1'")),
        ("arg0namespace=':'", Ok("arg0namespace=':'")),
        ("arg0namespace=':1.1b'", Ok("arg0namespace=':1.1b'")),
        (
            "arg0namespace='com.'",
            Err("arg0namespace='com.' is not a valid prefix of a bus name"),
        ),
        (
            "arg0namespace=''",
            Err("arg0namespace='' is not a valid prefix of a bus name"),
        ),
        (
            "arg0namespace='1a'",
            Err("arg0namespace='1a' is not a valid prefix of a bus name"),
        ),
        (
            "arg0namespace='a..b'",
            Err("arg0namespace='a..b' is not a valid prefix of a bus name"),
        ),
        (
            "arg0namespace='.a'",
            Err("arg0namespace='.a' is not a valid prefix of a bus name"),
        ),
        (
            "arg0namespace='com.1foo'",
            Err("arg0namespace='com.1foo' is not a valid prefix of a bus name"),
        ),
        (
            "arg0namespace='com.ex ample'",
            Err("arg0namespace='com.ex ample' is not a valid prefix of a bus name"),
        ),
        // A full rule comes out in canonical key order.
        (
            "arg2path='/z',type='signal',sender='org.freedesktop.DBus',\
             interface='org.freedesktop.DBus',member='NameOwnerChanged',\
             path='/org/freedesktop/DBus',destination=':1.5',arg0=a\\'b,arg1path='/x/', \
             eavesdrop=true",
            Ok(
                "type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',\
                path='/org/freedesktop/DBus',sender='org.freedesktop.DBus',destination=':1.5',\
                eavesdrop='true',arg0='a'\\''b',arg1path='/x/',arg2path='/z'",
            ),
        ),
        (
            "destination=':1.1',sender=':1.1',path_namespace='/a',member='M',\
             arg0namespace='a.b',eavesdrop=true,type=error",
            Ok(
                "type='error',member='M',path_namespace='/a',sender=':1.1',destination=':1.1',\
                eavesdrop='true',arg0namespace='a.b'",
            ),
        ),
    ];

    const SPEC_EXAMPLE: &str = "arg0=''\\''',arg1='\\',arg2=',',arg3='\\\\'";

    #[test]
    fn parse_table() {
        let mut failures = Vec::new();
        for &(text, expect) in TABLE {
            let got = MatchRule::parse(text)
                .map(|r| r.to_string())
                .map_err(|e| e.to_string());
            let want = expect.map(str::to_owned).map_err(str::to_owned);
            if got != want {
                failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_rule() {
        for &(text, expect) in TABLE {
            if expect.is_err() {
                continue;
            }
            let Ok(rule) = MatchRule::parse(text) else {
                panic!("{text:?} should parse");
            };
            let again = MatchRule::parse(&rule.to_string());
            assert_eq!(again.as_ref(), Ok(&rule), "{text:?}");
        }
    }

    #[test]
    fn spec_example_values() {
        let Ok(rule) = MatchRule::parse(SPEC_EXAMPLE) else {
            panic!("the specification's example should parse");
        };
        let values: Vec<&str> = rule.args().iter().map(ArgMatch::value).collect();
        assert_eq!(values, ["'", "\\", ",", "\\\\"]);
    }

    #[test]
    fn length_limit() {
        // dbus-daemon: 1024 bytes pass, 1025 are refused with LimitsExceeded.
        let rule = |len: usize| format!("arg0='{}'", "x".repeat(len - 7));
        assert!(MatchRule::parse(&rule(MAX_RULE_LEN)).is_ok());
        let err = MatchRule::parse(&rule(MAX_RULE_LEN + 1));
        assert_eq!(err, Err(MatchRuleError::TooLong { len: 1025 }));
        let err = err.err().unwrap_or(MatchRuleError::Invalid(String::new()));
        assert_eq!(
            err.error_name(),
            "org.freedesktop.DBus.Error.LimitsExceeded"
        );
        assert_eq!(
            err.to_string(),
            "Match rule text is 1025 bytes, maximum is 1024"
        );
        // The limit counts bytes, not characters.
        assert!(MatchRule::parse(&format!("arg0='{}'", "\u{e9}".repeat(600))).is_err());
        let invalid = MatchRule::parse("bogus=1").err();
        assert_eq!(
            invalid.map(|e| e.error_name()),
            Some("org.freedesktop.DBus.Error.MatchRuleInvalid")
        );
    }

    #[test]
    fn name_length_limits() {
        // dbus-daemon: 255 bytes pass, 256 do not.
        let long = |n: usize| "a".repeat(n);
        assert!(is_valid_namespace(&long(255)));
        assert!(!is_valid_namespace(&long(256)));
        assert!(is_valid_bus_name(&format!("{}a", "a.".repeat(127))));
        assert!(!is_valid_bus_name(&format!("{}ab", "a.".repeat(127))));
        assert!(is_valid_bus_name(&format!(":1.{}", "2".repeat(252))));
        assert!(!is_valid_bus_name(&format!(":1.{}", "2".repeat(253))));
    }

    #[test]
    fn equality_ignores_order_quoting_and_default_eavesdrop() {
        // dbus-daemon's RemoveMatch removes a rule given with any of these spellings.
        let same = [
            ("type='signal',member='X'", "member=X,type=signal"),
            ("type='signal',eavesdrop='false'", "type='signal'"),
            ("arg01='x'", "arg1='x'"),
            ("arg0x1='x'", "arg1='x'"),
            ("arg0='x',arg2='y'", "arg2='y',arg0='x'"),
            ("type='error',=,type='signal'", "type='error'"),
        ];
        for (a, b) in same {
            assert_eq!(
                MatchRule::parse(a).ok(),
                MatchRule::parse(b).ok(),
                "{a} vs {b}"
            );
            assert!(MatchRule::parse(a).is_ok(), "{a}");
        }
        // ...and does not remove these.
        let different = [
            ("type='signal',eavesdrop='true'", "type='signal'"),
            ("arg0='/a'", "arg0path='/a'"),
            ("path='/a'", "path_namespace='/a'"),
            ("arg1='x'", "arg1='x',arg0=''"),
            ("arg010='x'", "arg10='x'"),
        ];
        for (a, b) in different {
            assert_ne!(
                MatchRule::parse(a).ok(),
                MatchRule::parse(b).ok(),
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn hash_follows_equality() {
        use std::collections::HashSet;
        let set: HashSet<MatchRule> = ["member=X,type=signal", "type='signal',member='X'"]
            .iter()
            .filter_map(|t| MatchRule::parse(t).ok())
            .collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn accessors() {
        let Ok(rule) = MatchRule::parse(
            "type=signal,sender=a.b,interface=c.d,member=E,path_namespace=/f,destination=:1.2,\
             eavesdrop=true,arg3path=/g/,arg0namespace=h",
        ) else {
            panic!("rule should parse");
        };
        assert_eq!(rule.message_type(), Some(tram_wire::MessageType::Signal));
        assert_eq!(rule.sender(), Some("a.b"));
        assert_eq!(rule.interface(), Some("c.d"));
        assert_eq!(rule.member(), Some("E"));
        assert_eq!(rule.path(), None);
        assert_eq!(rule.path_namespace(), Some("/f"));
        assert_eq!(rule.destination(), Some(":1.2"));
        assert!(rule.eavesdrop());
        let args: Vec<_> = rule
            .args()
            .iter()
            .map(|a| (a.index(), a.kind(), a.value()))
            .collect();
        assert_eq!(
            args,
            [(0, ArgKind::Namespace, "h"), (3, ArgKind::Path, "/g/")]
        );
    }

    #[test]
    fn strtoul_like_c() {
        let cases: &[(&str, (Option<u64>, usize))] = &[
            ("", (Some(0), 0)),
            ("path", (Some(0), 0)),
            ("0", (Some(0), 1)),
            ("12path", (Some(12), 2)),
            ("0x1f", (Some(31), 4)),
            ("0xg", (Some(0), 1)),
            ("017", (Some(15), 3)),
            ("08", (Some(0), 1)),
            ("-1", (Some(u64::MAX), 2)),
            ("+7", (Some(7), 2)),
            ("-", (Some(0), 0)),
            ("18446744073709551615", (Some(u64::MAX), 20)),
            ("18446744073709551616", (None, 20)),
        ];
        for &(s, want) in cases {
            assert_eq!(strtoul(s), want, "{s:?}");
        }
    }
}
