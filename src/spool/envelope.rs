//! The envelope file `queue/ID.env`: one JSON object, version 1.
//!
//! ```json
//! {"version":1,"id":"…","created":1764392707,"identity":{…},"sender":"alice@shop.example",
//!  "recipients":[{"addr":"bob@example.org","state":"pending","reply":null,"tries":0}],
//!  "size":1234,"message_id":"<…>","eightbit":false,"smtputf8":false,"dsn":{…},
//!  "errors":"Print","attempts":0,"next_try":0,"held":false,"rate_held":false,"warned":false,
//!  "prepend":""}
//! ```
//! `identity` is the identity as resolved at submission; a queue run that
//! finds the owner's identity removed or changed since holds the message
//! (`"held_by":"identity-removed"` / `"identity-changed"`) instead of sending
//! it from the old one, and `--hold` by an administrator sets
//! `"held_by":"admin"`; absent for the owner's own hold. `prepend` holds header lines sent before the
//! message file (the DKIM-Signature). Each `reply` is the first line of the
//! last reply or reason, at most 512 bytes (see [`Envelope::encode`]); the
//! Message-ID at most 256. A file is complete when it parses;
//! unknown versions are refused, not guessed at.

use crate::base::dsn::{Dsn, ErrorMode};
use crate::identity::profile::Identity;
use serde::{Deserialize, Serialize};

pub const ENVELOPE_VERSION: u32 = 1;

/// Past this size the replies in an envelope are cut further (every `-bp`,
/// `--hold ALL` and `-q` of every user re-reads every envelope).
pub const MAX_ENVELOPE: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    Pending,
    Sent,
    Failed,
}

/// Why a message is held when its owner did not hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldBy {
    /// `--hold` by root or a trusted user.
    Admin,
    /// The owner's virtusers line was removed after the message was queued
    /// (or the user no longer exists): it is not sent from the old identity.
    IdentityRemoved,
    /// The owner's identity (sender, sources, HELO, route, keys) changed
    /// after the message was queued.
    IdentityChanged,
}

impl HeldBy {
    /// How `-bp` names it: `held (identity removed)`.
    pub fn text(self) -> &'static str {
        match self {
            HeldBy::Admin => "by the administrator",
            HeldBy::IdentityRemoved => "identity removed",
            HeldBy::IdentityChanged => "identity changed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub addr: String,
    /// The address as given before alias expansion (for ORCPT and bounces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig: Option<String>,
    pub state: RcptState,
    /// The last reply or reason.
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub tries: u32,
}

impl Recipient {
    pub fn new(addr: String, orig: Option<String>) -> Self {
        Recipient {
            addr,
            orig,
            state: RcptState::Pending,
            reply: None,
            tries: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub id: String,
    /// Arrival time, Unix seconds.
    pub created: u64,
    /// Arrival time in Unix milliseconds (for the log's delay=); 0 when unknown.
    #[serde(default)]
    pub arrival_ms: u64,
    pub identity: Identity,
    /// The envelope sender ("" for <>), before any BATV tag.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// Size of the message file in bytes.
    pub size: u64,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub eightbit: bool,
    #[serde(default)]
    pub smtputf8: bool,
    /// 8-bit text in the header block: SMTPUTF8 is asked for when offered.
    #[serde(default)]
    pub utf8_headers: bool,
    #[serde(default)]
    pub dsn: Dsn,
    #[serde(default)]
    pub errors: ErrorMode,
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next try; 0 = due now.
    #[serde(default)]
    pub next_try: u64,
    #[serde(default)]
    pub last_try: u64,
    /// Held by an administrator (`--hold`).
    #[serde(default)]
    pub held: bool,
    /// Who or what set `held` when it was not the message's owner: such a
    /// hold binds the owner (only root or a trusted user lifts it, or
    /// deletes the message). `None`: the owner's own hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<HeldBy>,
    /// Held because the identity was over its rate (released by queue runs).
    #[serde(default)]
    pub rate_held: bool,
    /// A delay warning was sent.
    #[serde(default)]
    pub warned: bool,
    /// Header lines (CRLF-terminated) sent before the message file.
    #[serde(default)]
    pub prepend: String,
    /// The message is a bounce we generated (never bounce a bounce).
    #[serde(default)]
    pub is_bounce: bool,
    /// Held because its user was suspended with `--action hold`.
    #[serde(default)]
    pub suspended: bool,
    /// Where the caller says it came from (cwd, argv, caller, script).
    #[serde(default)]
    pub attribution: crate::base::attribution::Attribution,
}

impl Envelope {
    /// The file's bytes. Replies are kept bounded whatever wrote them (an
    /// envelope of an earlier release too): each its first line, at most
    /// `MAX_REPLY` bytes; past [`MAX_ENVELOPE`] bytes in all, 64 each.
    pub fn encode(&self) -> Vec<u8> {
        use crate::base::syslog::{MAX_REPLY, text};
        let over = |e: &Envelope, max: usize| {
            e.recipients
                .iter()
                .any(|r| r.reply.as_ref().is_some_and(|x| x.len() > max))
        };
        let mut v = if over(self, MAX_REPLY) {
            let mut e = self.clone();
            for r in &mut e.recipients {
                r.reply = r.reply.as_deref().map(|x| text(x, MAX_REPLY));
            }
            serde_json::to_vec(&e)
        } else {
            serde_json::to_vec(self)
        }
        .expect("envelope serialises");
        if v.len() > MAX_ENVELOPE {
            let mut e = self.clone();
            for r in &mut e.recipients {
                r.reply = r.reply.as_deref().map(|x| text(x, 64));
            }
            v = serde_json::to_vec(&e).expect("envelope serialises");
        }
        v.push(b'\n');
        v
    }

    pub fn decode(data: &[u8]) -> Result<Envelope, String> {
        #[derive(Deserialize)]
        struct V {
            version: u32,
        }
        let v: V = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        if v.version != ENVELOPE_VERSION {
            return Err(format!(
                "envelope version {} is not {ENVELOPE_VERSION}; was it written by another vsendmail release?",
                v.version
            ));
        }
        serde_json::from_slice(data).map_err(|e| e.to_string())
    }

    /// Whether the message may no longer be sent from the identity recorded
    /// at submission, given the owner's identity today (`None`: the login is
    /// gone): its virtusers line is gone, or what it sends as (sender,
    /// sources, HELO, route, keys, from=) changed. Where the line sits in the
    /// file, and its `rate=` (a raised or lifted rate applies to what is
    /// held), do not matter.
    pub fn identity_hold(&self, now: Option<&Identity>) -> Option<HeldBy> {
        let Some(now) = now else {
            return Some(HeldBy::IdentityRemoved);
        };
        if self.identity.location.is_some() && now.location.is_none() {
            return Some(HeldBy::IdentityRemoved);
        }
        let strip = |i: &Identity| Identity {
            location: None,
            rate: None,
            ..i.clone()
        };
        (strip(&self.identity) != strip(now)).then_some(HeldBy::IdentityChanged)
    }

    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
    }

    pub fn has_pending(&self) -> bool {
        self.pending().next().is_some()
    }

    /// A new envelope arriving now: nothing tried, nothing held; the
    /// caller sets what its kind of message needs (DSN, flags, prepend).
    pub fn new(
        id: String,
        identity: Identity,
        sender: String,
        recipients: Vec<Recipient>,
        size: u64,
    ) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            id,
            created: crate::base::clock::unix_now(),
            arrival_ms: crate::base::clock::unix_ms(),
            identity,
            sender,
            recipients,
            size,
            message_id: None,
            eightbit: false,
            smtputf8: false,
            utf8_headers: false,
            dsn: Dsn::default(),
            errors: ErrorMode::Print,
            attempts: 0,
            next_try: 0,
            last_try: 0,
            held: false,
            held_by: None,
            rate_held: false,
            warned: false,
            prepend: String::new(),
            is_bounce: false,
            suspended: false,
            attribution: Default::default(),
        }
    }

    #[doc(hidden)]
    pub fn new_for_test(id: &str) -> Envelope {
        let mut e = Envelope::new(
            id.into(),
            Identity::resolve(None, "root", 0, "host.test"),
            "root@host.test".into(),
            vec![Recipient::new("a@x.test".into(), None)],
            0,
        );
        e.created = 0;
        e.arrival_ms = 0;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let mut e = Envelope::new_for_test("ABC123");
        e.identity.relay = Some(crate::base::relay::Relays::parse("smtp://u@[::1]:2525").unwrap());
        e.identity.rate = Some(crate::base::limit::Rate::parse("3/10s").unwrap());
        e.recipients[0].orig = Some("root".into());
        e.recipients.push(Recipient::new("b@y.test".into(), None));
        e.recipients[1].state = RcptState::Failed;
        e.recipients[1].reply = Some("550 no".into());
        e.dsn.notify = Some("FAILURE".into());
        e.errors = ErrorMode::Mail;
        e.held = true;
        e.held_by = Some(HeldBy::IdentityChanged);
        e.prepend = "DKIM-Signature: x\r\n".into();
        let back = Envelope::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert!(back.has_pending());
    }

    #[test]
    fn removed_or_changed_identities_hold_and_a_moved_line_does_not() {
        let e = Envelope::new_for_test("ABC");
        let mut lined = e.clone();
        lined.identity.location = Some("/etc/virtusers:3".into());
        let mut moved = lined.identity.clone();
        moved.location = Some("/etc/virtusers:9".into());
        moved.rate = Some(crate::base::limit::Rate::parse("9/h").unwrap());
        assert_eq!(lined.identity_hold(Some(&moved)), None);
        assert_eq!(e.identity_hold(Some(&e.identity)), None);
        assert_eq!(e.identity_hold(None), Some(HeldBy::IdentityRemoved));
        let host = Identity {
            location: None,
            ..lined.identity.clone()
        };
        assert_eq!(
            lined.identity_hold(Some(&host)),
            Some(HeldBy::IdentityRemoved)
        );
        let mut other = moved.clone();
        other.sources = vec!["127.0.0.9".parse().unwrap()];
        assert_eq!(
            lined.identity_hold(Some(&other)),
            Some(HeldBy::IdentityChanged)
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let mut e = Envelope::new_for_test("ABC123");
        e.version = 2;
        let err = Envelope::decode(&e.encode()).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
        assert!(Envelope::decode(b"{\"version\":1,\"id\":").is_err());
    }
}
