//! Intake: read a message from a stream into a spool draft.
//!
//! One pass, bounded memory: the header block is held (at most
//! `max_header_size`), the body is streamed line by line. Line ends become
//! CRLF whatever the input used; without `-i` a lone `.` ends the message and
//! a leading `..` becomes `.` (sendmail 8; `.x` stays `.x`, but in `-bs` SMTP
//! DATA every leading dot is a stuffed one); a leading mbox `From ` line is
//! dropped. Headers: our `Received:` first, `Bcc:` removed, `Date:`,
//! `Message-ID:`, `From:` added when missing, bare local names in
//! From/To/Cc qualified with the identity's domain. Dot-stuffing is the SMTP
//! writer's job, not ours: the spool holds the message unstuffed.

use super::headers::{self, Field};
use super::lines::{Line, next_line};
use super::mailbox;
use crate::config::conf::FromPolicy;
use crate::identity::profile::{Identity, PolicyError};
use crate::spool::store::{Draft, SpoolError};
use std::io::{BufRead, BufWriter, Write};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("reading the message: {0}")]
    Io(std::io::Error),
    #[error("writing the message to the spool: {0}; the message was NOT accepted")]
    Spool(#[from] SpoolError),
    #[error(
        "line {line} of the message is longer than {max} octets; wrap it or encode the body (quoted-printable or base64)"
    )]
    LineTooLong { line: usize, max: usize },
    #[error("the message header is larger than {max} bytes")]
    HeaderTooBig { max: usize },
    #[error("the message is larger than the limit of {max} bytes (max_message_size)")]
    TooBig { max: u64 },
    #[error(
        "the SMTP client closed the connection before the end of the message (no \".\" line); nothing was accepted"
    )]
    Truncated,
    #[error("message contains a NUL byte on line {line}")]
    Nul { line: usize },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "the {field}: field \"{shown}\" {why}; write exactly one address there, as `Name <user@example.org>`; the message was NOT accepted"
    )]
    NotOneMailbox {
        field: &'static str,
        shown: String,
        why: &'static str,
    },
    #[error(
        "the message has {count} {field}: fields; keep exactly one; the message was NOT accepted"
    )]
    RepeatedField { field: &'static str, count: usize },
}

/// The fields that name the message's author or sender: each must be exactly
/// one mailbox, From: and Sender: at most once, and `from_policy` applies to
/// each (RFC 5322 allows lists there; receivers and DMARC read only one).
const AUTHOR_FIELDS: [&str; 4] = ["From", "Sender", "Resent-From", "Resent-Sender"];

/// Check every author field and apply `from_policy` to its parsed mailbox:
/// a rewrite rebuilds the field as `Display <identity>` (never a textual
/// replace, which a quoted display name or a comment would defeat).
fn author_fields(fields: &mut [Field], o: &IntakeOptions) -> Result<(), IntakeError> {
    for field in ["From", "Sender"] {
        let count = fields.iter().filter(|f| f.is(field)).count();
        if count > 1 {
            return Err(IntakeError::RepeatedField { field, count });
        }
    }
    for f in fields.iter_mut() {
        let Some(&field) = AUTHOR_FIELDS.iter().find(|n| f.is(n)) else {
            continue;
        };
        let value = f.value();
        let mb = mailbox::parse(&value).map_err(|why| IntakeError::NotOneMailbox {
            field,
            shown: crate::base::address::printable(value.trim()),
            why,
        })?;
        if let Some(new) = o
            .identity
            .check_from(field, &mb.addr, o.trusted, o.from_policy)?
        {
            // Unfolded, a long display name could pass the line limit: then
            // the address alone.
            let mut v = mb.with_addr(&new);
            if field.len() + 2 + v.len() > 998 {
                v = new;
            }
            *f = Field::new(field, &v);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_header_size: usize,
    pub max_line_length: usize,
}

impl Limits {
    /// The limits the configuration sets.
    pub fn of(cfg: &crate::config::conf::Loaded) -> Limits {
        Limits {
            max_message_size: cfg.cfg.max_message_size,
            max_header_size: cfg.cfg.max_header_size,
            max_line_length: cfg.cfg.max_line_length,
        }
    }
}

pub struct IntakeOptions<'a> {
    pub ignore_dots: bool,
    /// SMTP DATA (-bs): only a `.` line ends the message; end of input before
    /// it means the client went away, and the message is not taken.
    pub require_dot: bool,
    /// `-t`: collect recipients from To/Cc/Bcc (Resent-* when present).
    pub read_recipients: bool,
    pub identity: &'a Identity,
    pub full_name: Option<&'a str>,
    pub hostname: &'a str,
    /// The X-Authentication-Warning text when `-f` was rewritten.
    pub auth_warning: Option<&'a str>,
    pub from_policy: FromPolicy,
    pub trusted: bool,
    pub limits: Limits,
    pub now: i64,
    /// `keep_php_header`: leave `X-PHP-Originating-Script:` in the message.
    pub keep_php_header: bool,
    /// `identity_header`: a header naming the identity, replacing any copy.
    pub identity_header: Option<&'a str>,
}

/// What the intake learned about the message.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    /// Addresses from To/Cc/Bcc (with `-t`), in order, as written.
    pub header_recipients: Vec<String>,
    pub size: u64,
    pub message_id: String,
    /// Some byte has the high bit set (8BITMIME needed).
    pub eightbit: bool,
    /// 8-bit bytes appear in the header (SMTPUTF8 wanted).
    pub utf8_headers: bool,
    /// The message was ended by end of input (false: by a "." line).
    pub ended_by_eof: bool,
    /// The domain of the (first) From: address as sent, lower case: whose
    /// DKIM key signs it.
    pub from_domain: Option<String>,
    /// `X-PHP-Originating-Script:` (`UID:FILE`), printable and bounded.
    pub script: String,
}

fn io(e: std::io::Error) -> IntakeError {
    IntakeError::Io(e)
}

/// Read the message from `r` into `draft`.
pub fn take<R: BufRead>(
    r: &mut R,
    draft: &mut Draft,
    o: &IntakeOptions,
) -> Result<Taken, IntakeError> {
    let limits = o.limits;
    let mut t = Taken::default();
    let mut line = Vec::with_capacity(1024);
    let mut lineno = 0usize;
    let mut header_bytes = 0usize;
    let mut fields: Vec<Field> = Vec::new();
    let mut first_body_line: Option<Vec<u8>> = None;
    let mut ended = false;

    // Header block.
    loop {
        lineno += 1;
        if !read_line(r, &mut line, lineno, limits.max_line_length)? {
            ended = true;
            t.ended_by_eof = true;
            break;
        }
        match dot_line(&line, o) {
            Dot::End => {
                ended = true;
                break;
            }
            Dot::Unstuff => {
                line.remove(0);
            }
            Dot::Keep => {}
        }
        if line.contains(&0) {
            return Err(IntakeError::Nul { line: lineno });
        }
        header_bytes += line.len() + 2;
        if header_bytes > limits.max_header_size {
            return Err(IntakeError::HeaderTooBig {
                max: limits.max_header_size,
            });
        }
        if lineno == 1 && line.starts_with(b"From ") {
            continue; // mbox separator
        }
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') && !fields.is_empty() {
            fields
                .last_mut()
                .expect("non-empty")
                .lines
                .push(line.clone());
            continue;
        }
        if headers::is_field_start(&line) {
            fields.push(Field {
                lines: vec![line.clone()],
            });
            continue;
        }
        // Not a header: the body starts here (no blank line given).
        first_body_line = Some(line.clone());
        break;
    }

    t.utf8_headers = fields.iter().any(|f| f.lines.iter().any(|l| !l.is_ascii()));
    t.eightbit = t.utf8_headers;

    // Recipients for -t, before Bcc goes.
    if o.read_recipients {
        let resent = fields
            .iter()
            .any(|f| f.name().to_ascii_lowercase().starts_with("resent-"));
        let names: &[&str] = if resent {
            &["Resent-To", "Resent-Cc", "Resent-Bcc"]
        } else {
            &["To", "Cc", "Bcc"]
        };
        for f in &fields {
            if names.iter().any(|n| f.is(n)) {
                t.header_recipients.extend(f.addresses());
            }
        }
    }
    fields.retain(|f| !f.is("Bcc") && !f.is("Resent-Bcc"));
    // Attribution from PHP's mail.add_x_header (the first one: PHP writes it
    // first), removed unless keep_php_header: it names a file of the site.
    if let Some(f) = fields.iter().find(|f| f.is("X-PHP-Originating-Script")) {
        t.script = crate::base::attribution::clean(f.value().trim());
    }
    if !o.keep_php_header {
        fields.retain(|f| !f.is("X-PHP-Originating-Script"));
    }
    // No user forges another's identity header: every copy goes, ours is added.
    if let Some(h) = o.identity_header {
        fields.retain(|f| !f.is(h));
    }

    let domain = o.identity.domain();
    for f in fields.iter_mut() {
        let qualified = [
            "From",
            "To",
            "Cc",
            "Reply-To",
            "Sender",
            "Resent-From",
            "Resent-Sender",
        ];
        if qualified.iter().any(|n| f.is(n))
            && let Some(v) = headers::qualify_value(&f.raw_value(), &domain)
        {
            *f = Field::new(&f.name(), &v);
        }
    }
    author_fields(&mut fields, o)?;

    let has = |n: &str| fields.iter().any(|f| f.is(n));
    let mut added = Vec::new();
    if !has("Date") {
        added.push(Field::new("Date", &crate::base::clock::rfc5322_date(o.now)));
    }
    t.message_id = match fields.iter().find(|f| f.is("Message-ID")) {
        // Kept for the envelope, the logs and the trail: bounded (a user's
        // 180 KB folded Message-ID would be copied into every record).
        Some(f) => {
            crate::base::syslog::cut(f.value().trim(), crate::base::syslog::MAX_VALUE).into_owned()
        }
        None => {
            let id = format!("<{}.{:x}@{}>", draft.id, rand::random::<u32>(), domain);
            added.push(Field::new("Message-ID", &id));
            id
        }
    };
    if let Some(h) = o.identity_header {
        added.push(Field::new(h, &o.identity.sender));
    }
    if !has("From") {
        let v = match o.full_name {
            Some(n) => format!("{} <{}>", display_name(n), o.identity.sender),
            None => o.identity.sender.clone(),
        };
        added.push(Field::new("From", &v));
    }
    t.from_domain = fields
        .iter()
        .chain(added.iter())
        .find(|f| f.is("From"))
        .and_then(|f| f.addresses().into_iter().next())
        .and_then(|a| crate::base::address::domain(&a))
        .map(|d| d.to_ascii_lowercase());

    // Write: Received, warning, original fields, added fields, blank line.
    let id = draft.id.clone();
    let mut w = Out {
        w: BufWriter::with_capacity(64 * 1024, draft.file()),
        size: 0,
        max: limits.max_message_size,
    };
    let received = format!(
        "Received: (from uid {} user {} identity {})\r\n\tby {} (vsendmail) id {};\r\n\t{}\r\n",
        o.identity.uid,
        o.identity.login,
        o.identity.sender,
        o.hostname,
        id,
        crate::base::clock::rfc5322_date(o.now)
    );
    w.put(received.as_bytes())?;
    if let Some(warn) = o.auth_warning {
        let f = Field::new(
            "X-Authentication-Warning",
            &format!("{}: {warn}", o.hostname),
        );
        w.put(&f.bytes())?;
    }
    for f in fields.iter().chain(added.iter()) {
        w.put(&f.bytes())?;
    }
    w.put(b"\r\n")?;

    // Body.
    if let Some(l) = first_body_line {
        t.eightbit |= !l.is_ascii();
        w.put(&l)?;
        w.put(b"\r\n")?;
    }
    if !ended {
        loop {
            lineno += 1;
            if !read_line(r, &mut line, lineno, limits.max_line_length)? {
                t.ended_by_eof = true;
                break;
            }
            let l: &[u8] = match dot_line(&line, o) {
                Dot::End => break,
                Dot::Unstuff => &line[1..],
                Dot::Keep => &line,
            };
            if !t.eightbit && !l.is_ascii() {
                t.eightbit = true;
            }
            if memchr::memchr(0, l).is_some() {
                return Err(IntakeError::Nul { line: lineno });
            }
            w.put(l)?;
            w.put(b"\r\n")?;
        }
    }
    if o.require_dot && t.ended_by_eof {
        return Err(IntakeError::Truncated);
    }
    w.w.flush().map_err(|e| IntakeError::Spool(spool_io(e)))?;
    t.size = w.size;
    Ok(t)
}

/// What a line means for the dot rule.
#[derive(Debug, PartialEq)]
enum Dot {
    /// A lone `.`: the end of the message.
    End,
    /// Its first dot goes.
    Unstuff,
    /// Taken as it is.
    Keep,
}

/// The dot rule (DESIGN.md, `-i`). With `-i` every line is text. Without it a
/// lone `.` ends the message; in SMTP DATA (`-bs`, RFC 5321 4.5.2) every
/// other line that starts with a dot loses that dot; on stdin, as in
/// sendmail 8, only a leading `..` loses one and `.x` stays `.x`.
fn dot_line(line: &[u8], o: &IntakeOptions) -> Dot {
    if o.ignore_dots || line.first() != Some(&b'.') {
        Dot::Keep
    } else if line.len() == 1 {
        Dot::End
    } else if o.require_dot || line[1] == b'.' {
        Dot::Unstuff
    } else {
        Dot::Keep
    }
}

/// Read line `lineno` into `line`; `Ok(false)` at end of input; a line
/// longer than `max` octets is an error.
fn read_line<R: BufRead>(
    r: &mut R,
    line: &mut Vec<u8>,
    lineno: usize,
    max: usize,
) -> Result<bool, IntakeError> {
    match next_line(r, line, max + 1).map_err(io)? {
        Line::Eof => Ok(false),
        Line::TooLong => Err(IntakeError::LineTooLong { line: lineno, max }),
        Line::Text { .. } if line.len() > max => {
            Err(IntakeError::LineTooLong { line: lineno, max })
        }
        Line::Text { .. } => Ok(true),
    }
}

/// The spool writer with the size limit.
struct Out<'a> {
    w: BufWriter<&'a mut std::fs::File>,
    size: u64,
    max: u64,
}

impl Out<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), IntakeError> {
        self.size += b.len() as u64;
        if self.size > self.max {
            return Err(IntakeError::TooBig { max: self.max });
        }
        self.w
            .write_all(b)
            .map_err(|e| IntakeError::Spool(spool_io(e)))
    }
}

fn spool_io(err: std::io::Error) -> SpoolError {
    SpoolError::Io {
        what: "cannot write",
        path: "the spool file".into(),
        err,
    }
}

/// A display name, quoted when it has specials.
fn display_name(n: &str) -> String {
    if n.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '_' || c == '.')
    {
        if n.contains('.') {
            format!("\"{n}\"")
        } else {
            n.to_string()
        }
    } else if n.is_ascii() {
        format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        // RFC 2047 encoded word for non-ASCII names.
        use base64::Engine;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(n)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::store::Spool;
    use std::io::{Read, Seek};

    struct Run {
        dir: std::path::PathBuf,
        identity: Identity,
        policy: FromPolicy,
    }

    impl Run {
        fn new() -> Run {
            // Tests run in parallel threads: one directory each.
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "vs-intake-{}-{}-{}",
                std::process::id(),
                crate::base::clock::unix_ms(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let mut identity = Identity::resolve(None, "alice", 1001, "host.test");
            identity.sender = "alice@shop.test".into();
            Run {
                dir,
                identity,
                policy: FromPolicy::Keep,
            }
        }

        /// Take `input` as argv mode would (`-t` when `t`); the spooled bytes.
        fn take(&self, input: &[u8], t: bool) -> Result<(Taken, String), IntakeError> {
            self.take_dots(input, t, false, false)
        }

        /// As `take`, with `-i` (`ignore_dots`) or as `-bs` DATA (`require_dot`).
        fn take_dots(
            &self,
            input: &[u8],
            t: bool,
            ignore_dots: bool,
            require_dot: bool,
        ) -> Result<(Taken, String), IntakeError> {
            let spool = Spool::open(&self.dir).unwrap();
            let mut d = spool.draft().unwrap();
            let taken = take(
                &mut &input[..],
                &mut d,
                &IntakeOptions {
                    ignore_dots,
                    require_dot,
                    read_recipients: t,
                    identity: &self.identity,
                    full_name: None,
                    hostname: "host.test",
                    auth_warning: None,
                    from_policy: self.policy,
                    trusted: false,
                    limits: Limits {
                        max_message_size: 1 << 20,
                        max_header_size: 64 * 1024,
                        max_line_length: 998,
                    },
                    now: 1_795_435_384,
                    keep_php_header: false,
                    identity_header: None,
                },
            )?;
            let f = d.file();
            f.rewind().unwrap();
            let mut out = String::new();
            f.read_to_string(&mut out).unwrap();
            Ok((taken, out))
        }
    }

    impl Drop for Run {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn crlf_everywhere_headers_added_bcc_removed() {
        let r = Run::new();
        let (t, out) = r
            .take(
                b"To: bob@x.test\nBcc: carol@y.test\r\nSubject: hi\n\nline one\rline two\n",
                true,
            )
            .unwrap();
        assert_eq!(t.header_recipients, ["bob@x.test", "carol@y.test"]);
        assert!(!out.contains("Bcc:"), "{out}");
        assert!(
            !out.replace("\r\n", "").contains(['\r', '\n']),
            "bare line ends: {out:?}"
        );
        assert!(out.contains("From: alice@shop.test\r\n"), "{out}");
        assert!(out.contains("\r\nDate: "), "{out}");
        assert!(
            out.contains(&format!("Message-ID: {}\r\n", t.message_id)),
            "{out}"
        );
        assert!(t.message_id.ends_with("@shop.test>"), "{}", t.message_id);
        assert!(out.ends_with("\r\n\r\nline one\r\nline two\r\n"), "{out:?}");
        assert_eq!(t.size, out.len() as u64);
        assert!(!t.eightbit && t.ended_by_eof);
    }

    #[test]
    fn a_dot_line_ends_the_message_without_i() {
        let r = Run::new();
        let (t, out) = r.take(b"Subject: x\n\nbefore\n.\nafter\n", false).unwrap();
        assert!(out.ends_with("\r\nbefore\r\n"), "{out:?}");
        assert!(!t.ended_by_eof);
    }

    #[test]
    fn without_i_only_a_double_dot_loses_a_dot() {
        let r = Run::new();
        let (_, out) = r.take(b"Subject: x\n\n.x\n..y\n...\n.\n", false).unwrap();
        assert!(out.ends_with("\r\n\r\n.x\r\n.y\r\n..\r\n"), "{out:?}");
        // The same rule in the header block.
        let (_, out) = r.take(b"..Subject: x\n\nbody\n", false).unwrap();
        assert!(out.contains("\r\n.Subject: x\r\n"), "{out:?}");
    }

    #[test]
    fn with_i_every_dot_stays_and_a_dot_line_is_text() {
        let r = Run::new();
        let (t, out) = r
            .take_dots(b"Subject: x\n\n.x\n..y\n.\nafter\n", false, true, false)
            .unwrap();
        assert!(
            out.ends_with("\r\n\r\n.x\r\n..y\r\n.\r\nafter\r\n"),
            "{out:?}"
        );
        assert!(t.ended_by_eof);
    }

    #[test]
    fn smtp_data_loses_every_first_dot() {
        let r = Run::new();
        let (t, out) = r
            .take_dots(b"Subject: x\n\n.x\n..y\n.\n", false, false, true)
            .unwrap();
        assert!(out.ends_with("\r\n\r\nx\r\n.y\r\n"), "{out:?}");
        assert!(!t.ended_by_eof);
    }

    #[test]
    fn limits_and_nul_are_refused_with_the_line() {
        let r = Run::new();
        let long = format!("Subject: x\n\n{}\n", "a".repeat(1200));
        match r.take(long.as_bytes(), false) {
            Err(IntakeError::LineTooLong { line: 3, max: 998 }) => {}
            other => panic!("{other:?}"),
        }
        match r.take(b"Subject: x\n\nok\nnul \0 here\n", false) {
            Err(IntakeError::Nul { line: 4 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eight_bit_is_noticed_in_body_and_header() {
        let r = Run::new();
        let (t, _) = r
            .take("Subject: x\n\ncaf\u{e9}\n".as_bytes(), false)
            .unwrap();
        assert!(t.eightbit && !t.utf8_headers);
        let (t, _) = r
            .take("Subject: caf\u{e9}\n\nx\n".as_bytes(), false)
            .unwrap();
        assert!(t.eightbit && t.utf8_headers);
    }

    /// The header block as spooled, after our Received: line.
    fn field(out: &str, name: &str) -> Option<String> {
        out.split("\r\n\r\n")
            .next()
            .unwrap()
            .split("\r\n")
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(": "))
                    .map(str::to_string)
            })
    }

    #[test]
    fn rewrite_rebuilds_each_author_field_from_its_parsed_mailbox() {
        let mut r = Run::new();
        r.policy = FromPolicy::Rewrite;
        for (from, want) in [
            ("\"b@b.test\" <b@b.test>", "alice@shop.test"),
            ("Bob <b@b.test>", "Bob <alice@shop.test>"),
            ("b@b.test (Bob)", "alice@shop.test"),
            (
                "(x) \"Big Boss\" <b (c) @ b . test>",
                "\"Big Boss\" <alice@shop.test>",
            ),
            ("Bob\n <b@b.test>", "Bob <alice@shop.test>"),
            ("Sales <sales@shop.test>", "Sales <alice@shop.test>"),
            ("Me <alice@shop.test>", "Me <alice@shop.test>"),
        ] {
            let msg = format!("From: {from}\nSender: {from}\nResent-From: {from}\n\nx\n");
            let (_, out) = r.take(msg.as_bytes(), false).unwrap();
            for f in ["From", "Sender", "Resent-From"] {
                assert_eq!(
                    field(&out, f).as_deref(),
                    Some(want),
                    "{f}: {from:?}\n{out}"
                );
            }
            assert!(!out.contains("b.test>"), "{out}");
        }
    }

    #[test]
    fn reject_judges_the_parsed_mailbox_of_every_author_field() {
        let mut r = Run::new();
        r.policy = FromPolicy::Reject;
        for bad in [
            "From: \"alice@shop.test\" <b@b.test>",
            "From: (alice@shop.test) b@b.test",
            "Sender: b@b.test",
            "Resent-From: Bob <b@b.test>",
            "Resent-Sender: b@b.test",
        ] {
            match r.take(format!("{bad}\n\nx\n").as_bytes(), false) {
                Err(IntakeError::Policy(PolicyError::From { requested, .. })) => {
                    assert_eq!(requested, "b@b.test", "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let ok = "From: \"b@b.test\" <alice@shop.test>\nSender: alice@shop.test\n\nx\n";
        assert!(r.take(ok.as_bytes(), false).is_ok());
    }

    #[test]
    fn an_author_field_that_is_not_one_mailbox_is_refused_whatever_the_policy() {
        let r = Run::new();
        for bad in [
            "From: <alice@shop.test> <b@b.test>\n",
            "From: alice@shop.test, b@b.test\n",
            "From: Team: alice@shop.test;\n",
            "Sender: a@b.test, c@d.test\n",
            "Resent-From: <a@b.test> <c@d.test>\n",
        ] {
            match r.take(format!("{bad}\nx\n").as_bytes(), false) {
                Err(IntakeError::NotOneMailbox { .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        match r.take(b"From: alice@shop.test\nFrom: b@b.test\n\nx\n", false) {
            Err(IntakeError::RepeatedField {
                field: "From",
                count: 2,
            }) => {}
            other => panic!("{other:?}"),
        }
        // Cron's shape stays fine.
        let (_, out) = r.take(b"From: root (Cron Daemon)\n\nx\n", false).unwrap();
        assert_eq!(
            field(&out, "From").as_deref(),
            Some("root@shop.test (Cron Daemon)")
        );
    }
}
