//! `tram_sasl::Sasl::feed` on arbitrary client byte streams.
//!
//! The input is three bytes of settings and a client script:
//!
//! * byte 0, flags: bit 0 offers the mechanisms in reverse order; bit 1 gives the peer kernel
//!   credentials (uid 1000); bit 2 lets the transport pass fds; bit 3 gives the server a
//!   keyring; bit 4 makes that keyring's random source fail; bits 5 to 7 pick the offered
//!   mechanisms (one bit each for EXTERNAL, DBUS_COOKIE_SHA1 and ANONYMOUS);
//! * bytes 1 and 2: where the stream is split into chunks (a seed, and the largest chunk);
//! * the rest: the bytes the client sends, except that `@` becomes the hex of a correct
//!   DBUS_COOKIE_SHA1 proof for the last challenge the server sent (so `DATA @` passes), and
//!   `0xff n` becomes `(n + 1) * 128` bytes of `a` (to reach the line length limit cheaply).
//!   The script ends where the stream reaches 64 KiB; an `@` after the 32nd is sent as it is.
//!
//! Each input runs against the one set of offered mechanisms its flags pick (the fuzzer varies
//! the flags like any other byte; running all eight sets per input made every execution eight
//! times dearer for no coverage the flags do not reach). The stream is fed three ways — in
//! pieces ending at each `@` (as the client writes it), whole, and in the chunks bytes 1 and 2
//! pick — each time the way tramd does: unconsumed bytes are kept and passed again with the next
//! chunk. Properties:
//!
//! * nothing panics; `consumed` never exceeds the input; every call appends whole `\r\n` lines;
//! * the three feedings give the same replies and the same end at the same stream offset;
//! * after `Authenticated` or `Failed`, feeding more consumes nothing, replies nothing and gives
//!   the same result;
//! * each reply is one the protocol allows in this configuration (`OK <guid>`, `REJECTED` with
//!   exactly the offered mechanisms, `DATA` with a well-formed cookie challenge, `ERROR`,
//!   `AGREE_UNIX_FD` only where fds can pass); one reply per line consumed (none for `BEGIN`);
//! * the lines are those an independent splitter finds: a line longer than `MAX_LINE` ends the
//!   conversation with `LineTooLong` exactly when it is reached, `BEGIN` before `OK` with
//!   `BeginBeforeOk`, a missing nul byte with `MissingNulByte`; at most `MAX_REJECTIONS`
//!   `REJECTED`s, and `TooManyRejections` exactly at the last;
//! * authentication ends right after a `BEGIN` line, while an `OK` stands; ANONYMOUS only if
//!   offered, EXTERNAL only with kernel credentials, a cookie identity only from the keyring;
//!   fd passing exactly when `AGREE_UNIX_FD` was sent since that `OK`;
//! * a correct proof (`DATA @` right after a challenge) is answered `OK`.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};
use tram_sasl::{
    CONTEXT, Cookie, CookieAuthority, Failure, Identity, MAX_LINE, MAX_REJECTIONS, Mechanism,
    Outcome, Progress, Sasl, SaslServer,
};

const GUID: &str = "0123456789abcdef0123456789abcdef";
const OK: &[u8] = b"OK 0123456789abcdef0123456789abcdef";
/// The uid the kernel reports for the peer, when it reports one.
const PEER_UID: u32 = 1000;
/// In the script: the hex of a correct proof for the last challenge.
const PROOF: u8 = b'@';
/// In the script: followed by a count byte `n`, `(n + 1) * FILL_UNIT` bytes of `a`.
const FILL: u8 = 0xff;
const FILL_UNIT: usize = 128;
/// The script is cut where the stream reaches this length.
const MAX_STREAM: usize = 4 * MAX_LINE;
/// Proof markers after this many are sent as they are, keeping slow inputs rare.
const MAX_PROOFS: usize = 32;
/// The client's half of the proof.
const CLIENT_CHALLENGE: &str = "6675a7a7";
/// The fake keyring's one cookie.
const COOKIE_ID: u32 = 42;
const SECRET: &str = "0badc0ffee5ec2e7";
const ALICE: Identity = Identity {
    uid: 1000,
    gid: 100,
};
const ROOT: Identity = Identity { uid: 0, gid: 0 };
/// Largest chunk, picked by the low bits of the split setting.
const CHUNK_LIMITS: [usize; 8] = [1, 2, 3, 5, 16, 64, 512, 4096];

fuzz_target!(|data: &[u8]| {
    let [flags, split_lo, split_hi, script @ ..] = data else {
        return;
    };
    let split = u16::from_le_bytes([*split_lo, *split_hi]);
    {
        let offered = flags >> 5;
        let mut mechanisms: Vec<Mechanism> = Mechanism::ALL
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| offered & (1 << i) != 0)
            .map(|(_, m)| m)
            .collect();
        if flags & 1 != 0 {
            mechanisms.reverse();
        }
        let setup = Setup {
            mechanisms,
            peer_uid: (flags & 2 != 0).then_some(PEER_UID),
            fd_passing: flags & 4 != 0,
            keyring: flags & 8 != 0,
            random_fails: flags & 16 != 0,
        };
        run(&setup, script, split);
    }
});

/// One configuration of the server and the peer's transport.
#[derive(Debug)]
struct Setup {
    mechanisms: Vec<Mechanism>,
    peer_uid: Option<u32>,
    fd_passing: bool,
    keyring: bool,
    random_fails: bool,
}

impl Setup {
    /// A server with a fresh keyring: challenges repeat from one feeding to the next.
    fn server(&self) -> SaslServer {
        let server = SaslServer::new(GUID, &self.mechanisms);
        if !self.keyring {
            return server;
        }
        server.with_cookies(Arc::new(FakeKeyring {
            calls: AtomicU8::new(0),
            fails: self.random_fails,
        }))
    }

    fn offers(&self, m: Mechanism) -> bool {
        self.mechanisms.contains(&m)
    }

    /// Whether DBUS_COOKIE_SHA1 can get as far as a challenge.
    fn can_challenge(&self) -> bool {
        self.offers(Mechanism::CookieSha1) && self.keyring && !self.random_fails
    }
}

fn run(setup: &Setup, script: &[u8], split: u16) {
    let (stream, scripted, proofs) = write_stream(setup, script);
    let whole = feed(setup, &stream, &[stream.len()]);
    assert_eq!(whole, scripted, "fed whole vs as written");
    let chunked = feed(setup, &stream, &chunk_lengths(split, stream.len()));
    assert_eq!(chunked, scripted, "fed in chunks vs as written");
    check(setup, &stream, &scripted, &proofs);
}

/// What a feeding produced.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    replies: Vec<u8>,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still authenticating; the stream was consumed up to this offset.
    Continue(usize),
    /// `BEGIN` ended at this offset of the stream.
    Authenticated(usize, Outcome),
    Failed(Failure),
}

/// Feeds a stream the way tramd does: unconsumed bytes are kept and passed again, followed by
/// the next chunk.
struct Client {
    server: SaslServer,
    sasl: Sasl,
    pending: Vec<u8>,
    consumed: usize,
    replies: Vec<u8>,
    end: Option<End>,
}

impl Client {
    fn new(setup: &Setup) -> Client {
        Client {
            server: setup.server(),
            sasl: Sasl::new(setup.peer_uid, setup.fd_passing),
            pending: Vec::new(),
            consumed: 0,
            replies: Vec::new(),
            end: None,
        }
    }

    fn send(&mut self, chunk: &[u8]) {
        let before = self.replies.len();
        if let Some(end) = self.end {
            let again = self.sasl.feed(&self.server, chunk, &mut self.replies);
            assert_eq!(self.replies.len(), before, "reply after the end");
            match (end, again) {
                (
                    End::Authenticated(_, outcome),
                    Progress::Authenticated {
                        consumed: 0,
                        outcome: again,
                    },
                ) if again == outcome => {}
                (End::Failed(failure), Progress::Failed(again)) if again == failure => {}
                (end, again) => panic!("{again:?} after {end:?}"),
            }
            return;
        }
        self.pending.extend_from_slice(chunk);
        let progress = self
            .sasl
            .feed(&self.server, &self.pending, &mut self.replies);
        let appended = self.replies.get(before..).unwrap_or_default();
        assert!(
            appended.is_empty() || appended.ends_with(b"\r\n"),
            "partial reply {appended:?}"
        );
        for line in lines(appended) {
            assert!(
                !line.contains(&b'\r') && !line.contains(&b'\n'),
                "stray line break in reply {line:?}"
            );
        }
        let available = self.pending.len();
        match progress {
            Progress::Continue { consumed } => {
                assert!(consumed <= available, "consumed {consumed} of {available}");
                self.pending.drain(..consumed);
                self.consumed += consumed;
            }
            Progress::Authenticated { consumed, outcome } => {
                assert!(consumed <= available, "consumed {consumed} of {available}");
                self.end = Some(End::Authenticated(self.consumed + consumed, outcome));
            }
            Progress::Failed(failure) => self.end = Some(End::Failed(failure)),
        }
    }

    fn finish(mut self) -> Transcript {
        if self.end.is_some() {
            // Whatever comes next, the conversation is over.
            self.send(b"\0AUTH ANONYMOUS\r\nBEGIN\r\n");
        }
        Transcript {
            replies: self.replies,
            end: self.end.unwrap_or(End::Continue(self.consumed)),
        }
    }
}

/// Turns the script into the stream, sending it as it is written: each part up to a proof
/// marker before the proof is computed from the replies so far. Returns the stream, what the
/// server said, and the replies that must be `OK` because they answer a correct proof.
fn write_stream(setup: &Setup, script: &[u8]) -> (Vec<u8>, Transcript, Vec<usize>) {
    let mut client = Client::new(setup);
    let mut stream = Vec::new();
    let mut sent = 0;
    let mut proofs = Vec::new();
    let mut proofs_written = 0;
    let mut bytes = script.iter().enumerate();
    while let Some((i, &b)) = bytes.next() {
        if stream.len() >= MAX_STREAM {
            break;
        }
        match b {
            PROOF if proofs_written < MAX_PROOFS => {
                proofs_written += 1;
                client.send(stream.get(sent..).unwrap_or_default());
                sent = stream.len();
                let challenge = lines(&client.replies).last().and_then(challenge);
                let answered = challenge.is_some()
                    && client.end.is_none()
                    && client.pending == b"DATA "
                    && script.get(i + 1..).is_some_and(|s| s.starts_with(b"\r\n"));
                let reply_at = lines(&client.replies).count();
                let server_challenge = challenge.unwrap_or_default();
                stream.extend_from_slice(hex(proof(&server_challenge).as_bytes()).as_bytes());
                // Only a proof line the stream ends (its `\r\n` within MAX_STREAM) is answered.
                if answered && stream.len() + 2 <= MAX_STREAM {
                    proofs.push(reply_at);
                }
            }
            FILL => {
                let n = bytes.next().map_or(0, |(_, &n)| usize::from(n));
                let len = (stream.len() + (n + 1) * FILL_UNIT).min(MAX_STREAM);
                stream.resize(len, b'a');
            }
            b => stream.push(b),
        }
    }
    client.send(stream.get(sent..).unwrap_or_default());
    assert_eq!(stream.len(), stream_len(script), "stream_len is wrong");
    (stream, client.finish(), proofs)
}

/// The length of the stream `write_stream` makes of `script`, whatever the setup.
fn stream_len(script: &[u8]) -> usize {
    let mut len = 0;
    let mut proofs = 0;
    let mut bytes = script.iter();
    while let Some(&b) = bytes.next() {
        if len >= MAX_STREAM {
            break;
        }
        match b {
            PROOF if proofs < MAX_PROOFS => {
                proofs += 1;
                len += 2 * proof("").len();
            }
            FILL => {
                let n = bytes.next().map_or(0, |&n| usize::from(n));
                len = (len + (n + 1) * FILL_UNIT).min(MAX_STREAM);
            }
            _ => len += 1,
        }
    }
    len
}

fn feed(setup: &Setup, stream: &[u8], chunks: &[usize]) -> Transcript {
    let mut client = Client::new(setup);
    let mut rest = stream;
    for &len in chunks {
        let (chunk, after) = rest.split_at(len.min(rest.len()));
        client.send(chunk);
        rest = after;
    }
    assert!(rest.is_empty(), "chunks do not cover the stream");
    client.finish()
}

/// Chunk lengths covering `len` bytes, from a small generator seeded by the input.
fn chunk_lengths(split: u16, len: usize) -> Vec<usize> {
    let limit = CHUNK_LIMITS[usize::from(split & 7)];
    // Long streams in few enough pieces that the run stays fast.
    let limit = limit.max(len / 8).max(1);
    let mut state = u64::from(split) | 1 << 32;
    let mut chunks = Vec::new();
    let mut left = len;
    while left > 0 {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let n = (z % limit as u64) as usize + 1;
        let n = n.min(left);
        chunks.push(n);
        left -= n;
    }
    // An empty chunk too: it must change nothing.
    chunks.insert(chunks.len() / 2, 0);
    chunks
}

/// The properties of one conversation, against an independent reading of the stream.
fn check(setup: &Setup, stream: &[u8], t: &Transcript, proofs: &[usize]) {
    let replies: Vec<&[u8]> = lines(&t.replies).collect();
    let rejected = rejected_line(setup);
    for &reply in &replies {
        check_reply(setup, reply, &rejected);
    }
    let rejections = replies.iter().filter(|&&r| r == rejected).count();
    assert!(
        rejections <= MAX_REJECTIONS as usize,
        "{rejections} rejections"
    );
    assert_eq!(
        rejections == MAX_REJECTIONS as usize,
        t.end == End::Failed(Failure::TooManyRejections),
        "{rejections} rejections, {:?}",
        t.end
    );

    let Some((&first, body)) = stream.split_first() else {
        assert_eq!(t.end, End::Continue(0));
        assert!(replies.is_empty());
        return;
    };
    if first != 0 {
        assert_eq!(t.end, End::Failed(Failure::MissingNulByte));
        assert!(replies.is_empty());
        return;
    }
    let split = split_lines(body);
    let line_end = |i: usize| 1 + split.ends.get(i).copied().unwrap_or(0);
    let n = replies.len();
    match t.end {
        End::Continue(offset) => {
            assert_eq!(split.too_long, None, "an overlong line was not refused");
            assert_eq!(n, split.ends.len(), "one reply per line");
            let all = if n == 0 { 1 } else { line_end(n - 1) };
            assert_eq!(offset, all, "complete lines left unconsumed");
        }
        End::Failed(Failure::LineTooLong) => {
            assert_eq!(
                split.too_long,
                Some(n),
                "refused the wrong line as too long"
            );
        }
        End::Authenticated(offset, outcome) => {
            assert!(n < split.ends.len(), "authenticated without a BEGIN line");
            assert!(
                is_begin(split.line(body, n)),
                "authenticated by a line that is not BEGIN"
            );
            assert_eq!(
                offset,
                line_end(n),
                "BEGIN does not end where the line ends"
            );
            let last_ok = last_state(&replies).filter(|&i| replies.get(i) == Some(&OK));
            let Some(ok) = last_ok else {
                panic!("authenticated without an OK standing");
            };
            let agreed = replies
                .get(ok..)
                .unwrap_or_default()
                .iter()
                .any(|&r| r == b"AGREE_UNIX_FD");
            assert_eq!(
                outcome.unix_fds, agreed,
                "fd passing without AGREE_UNIX_FD, or back"
            );
            check_outcome(setup, outcome);
        }
        End::Failed(Failure::BeginBeforeOk) => {
            assert!(n < split.ends.len(), "BeginBeforeOk without a BEGIN line");
            assert!(
                is_begin(split.line(body, n)),
                "BeginBeforeOk on a line that is not BEGIN"
            );
            let ok_standing = last_state(&replies).is_some_and(|i| replies.get(i) == Some(&OK));
            assert!(!ok_standing, "BEGIN refused after OK");
        }
        End::Failed(Failure::TooManyRejections) => {
            assert!(n <= split.ends.len(), "more replies than lines");
            assert_eq!(replies.last(), Some(&rejected.as_slice()));
        }
        End::Failed(failure @ Failure::MissingNulByte) => panic!("{failure:?} after a nul byte"),
    }
    for &i in proofs {
        assert_eq!(
            replies.get(i),
            Some(&OK),
            "correct proof not accepted: {:?}",
            String::from_utf8_lossy(&t.replies)
        );
    }
}

fn check_reply(setup: &Setup, reply: &[u8], rejected: &[u8]) {
    let text = String::from_utf8_lossy(reply);
    assert!(reply.is_ascii(), "non-ASCII reply {text:?}");
    if reply == OK {
        let can_pass = (setup.offers(Mechanism::External) && setup.peer_uid.is_some())
            || setup.offers(Mechanism::Anonymous)
            || setup.can_challenge();
        assert!(can_pass, "OK though nothing offered can succeed: {setup:?}");
    } else if reply == rejected {
    } else if reply == b"DATA" {
        assert!(
            setup.offers(Mechanism::External) || setup.offers(Mechanism::CookieSha1),
            "DATA for a mechanism not offered: {setup:?}"
        );
    } else if reply.starts_with(b"DATA ") {
        assert!(
            setup.can_challenge(),
            "challenge without a keyring: {setup:?}"
        );
        assert!(challenge(reply).is_some(), "malformed challenge {text:?}");
    } else if reply == b"AGREE_UNIX_FD" {
        assert!(setup.fd_passing, "AGREE_UNIX_FD without fd passing");
    } else {
        let quoted = reply
            .strip_prefix(b"ERROR \"")
            .and_then(|r| r.strip_suffix(b"\""));
        assert!(
            quoted.is_some_and(|q| !q.is_empty() && !q.contains(&b'"')),
            "unexpected reply {text:?}"
        );
    }
}

fn check_outcome(setup: &Setup, outcome: Outcome) {
    if outcome.anonymous {
        assert!(setup.offers(Mechanism::Anonymous), "ANONYMOUS not offered");
        assert_eq!(outcome.identity, None, "anonymous with an identity");
    } else if let Some(identity) = outcome.identity {
        assert!(setup.can_challenge(), "cookie identity without a keyring");
        assert!(identity == ALICE || identity == ROOT, "{identity:?}");
    } else {
        assert!(
            setup.offers(Mechanism::External) && setup.peer_uid.is_some(),
            "EXTERNAL without it or without kernel credentials: {setup:?}"
        );
    }
    assert!(
        !outcome.unix_fds || setup.fd_passing,
        "fds on a transport without"
    );
}

/// The index of the last reply that sets the server's state (`OK`, `REJECTED`, `DATA`);
/// `ERROR` and `AGREE_UNIX_FD` leave it as it was.
fn last_state(replies: &[&[u8]]) -> Option<usize> {
    replies
        .iter()
        .rposition(|r| !r.starts_with(b"ERROR") && *r != b"AGREE_UNIX_FD")
}

fn rejected_line(setup: &Setup) -> Vec<u8> {
    let mut line = b"REJECTED".to_vec();
    for m in &setup.mechanisms {
        line.push(b' ');
        line.extend_from_slice(m.name().as_bytes());
    }
    line
}

/// The lines of `bytes`, each without its `\r\n`; a part after the last one is left out.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let (line, after) = rest.split_at(end);
        rest = after.get(2..).unwrap_or_default();
        Some(line)
    })
}

/// The client's lines after the nul byte, as the protocol delimits them.
struct Split {
    /// Where each complete line that fits ends, `\r\n` included.
    ends: Vec<usize>,
    /// The index of the first line that does not fit, if one is reached.
    too_long: Option<usize>,
}

impl Split {
    /// Line `i`, without its `\r\n`.
    fn line<'a>(&self, body: &'a [u8], i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let end = self.ends.get(i).map_or(body.len(), |&e| e - 2);
        body.get(start..end).unwrap_or_default()
    }
}

fn split_lines(body: &[u8]) -> Split {
    let mut ends = Vec::new();
    let mut start = 0;
    loop {
        let rest = &body[start..];
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) if i + 2 <= MAX_LINE => {
                start += i + 2;
                ends.push(start);
            }
            Some(_) => {
                return Split {
                    too_long: Some(ends.len()),
                    ends,
                };
            }
            None => {
                let too_long = (rest.len() >= MAX_LINE).then_some(ends.len());
                return Split { ends, too_long };
            }
        }
    }
}

/// A `BEGIN` command: the word, then nothing or a space or tab.
fn is_begin(line: &[u8]) -> bool {
    line.strip_prefix(b"BEGIN")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b" ") || rest.starts_with(b"\t"))
}

/// The server's challenge in a DBUS_COOKIE_SHA1 challenge reply,
/// `DATA <hex of "CONTEXT id challenge">`; `None` for any other line.
fn challenge(reply: &[u8]) -> Option<String> {
    let payload = reply.strip_prefix(b"DATA ")?;
    let is_lower_hex = |s: &[u8]| {
        !s.is_empty()
            && s.len().is_multiple_of(2)
            && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !is_lower_hex(payload) {
        return None;
    }
    let text = String::from_utf8(unhex(payload)?).ok()?;
    let mut words = text.split(' ');
    let (Some(context), Some(id), Some(server_challenge), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    let id: u32 = id.parse().ok()?;
    let well_formed =
        context == CONTEXT && id == COOKIE_ID && is_lower_hex(server_challenge.as_bytes());
    well_formed.then(|| server_challenge.to_owned())
}

/// The client's answer to `server_challenge`: its own challenge and the hex SHA-1 of
/// `server challenge:client challenge:secret`.
fn proof(server_challenge: &str) -> String {
    let digest = Sha1::digest(format!("{server_challenge}:{CLIENT_CHALLENGE}:{SECRET}"));
    format!("{CLIENT_CHALLENGE} {}", hex(&digest))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    s.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// A keyring with one cookie for alice (1000) and root (0), and a random source that gives
/// different bytes on each call, the same sequence for every server.
#[derive(Debug)]
struct FakeKeyring {
    calls: AtomicU8,
    fails: bool,
}

impl CookieAuthority for FakeKeyring {
    fn challenge(&self, claimed: &str) -> Result<(Identity, Cookie), String> {
        let identity = match claimed {
            "alice" | "1000" => ALICE,
            "root" | "0" => ROOT,
            _ => return Err(format!("no user {claimed:?}")),
        };
        let cookie = Cookie {
            id: COOKIE_ID,
            created: 0,
            secret: SECRET.to_owned(),
        };
        Ok((identity, cookie))
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        if self.fails {
            return false;
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = call ^ (i as u8).wrapping_mul(37);
        }
        true
    }
}
