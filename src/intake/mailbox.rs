//! One RFC 5322 `mailbox` (`Display <local@domain>` or `local@domain`),
//! parsed strictly: what the sender policy judges in From:, Sender:,
//! Resent-From: and Resent-Sender:, and what a rewrite rebuilds them from.
//!
//! Hand-written because no maintained crate parses a header value into one
//! mailbox while telling a list, a group, or two angle-addrs apart from it
//! (mailparse, removed, took the first angle-addr of `<a@a> <b@b>`). The
//! lenient address-list reader for `-t` stays in `headers` (it must accept
//! what cron and PHP write); this one refuses whatever is not exactly one
//! mailbox, so that no comment, quoted display name, fold or space can make
//! the policy look at another address than the one receivers will show.

/// A parsed mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name as written (words and quoted strings joined by one
    /// space, comments dropped); `None` without one.
    pub display: Option<String>,
    /// The addr-spec, white space and comments removed (`local@domain`).
    pub addr: String,
}

impl Mailbox {
    /// The field value rebuilt around another address: `Display <addr>`, or
    /// `addr` alone. A display name that holds an `@` is dropped, so that
    /// no address the user may not use is shown in its place.
    pub fn with_addr(&self, addr: &str) -> String {
        match &self.display {
            Some(d) if !d.contains('@') => format!("{d} <{addr}>"),
            _ => addr.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom (dots included: dot-atoms and obs-phrase `J. Doe`).
    Word(String),
    /// A quoted string, with its quotes.
    Quoted(String),
    /// A domain literal, with its brackets.
    Literal(String),
    /// One of `< > @ , ; :`.
    Special(char),
}

/// Split a header value into tokens, dropping white space and comments.
fn tokens(v: &str) -> Result<Vec<Tok>, &'static str> {
    let mut out = Vec::new();
    let mut it = v.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => {
                let mut depth = 1;
                loop {
                    match it.next() {
                        None => return Err("has an unclosed comment"),
                        Some('\\') => {
                            it.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
            '"' => {
                let mut q = String::from('"');
                loop {
                    match it.next() {
                        None => return Err("has an unclosed quote"),
                        Some('\\') => {
                            q.push('\\');
                            q.push(it.next().ok_or("has an unclosed quote")?);
                        }
                        Some('"') => break,
                        Some(c) => q.push(c),
                    }
                }
                q.push('"');
                out.push(Tok::Quoted(q));
            }
            '[' => {
                let mut l = String::from('[');
                loop {
                    match it.next() {
                        None => return Err("has an unclosed ["),
                        Some(']') => break,
                        Some('[' | '\\') => return Err("has a malformed [address literal]"),
                        Some(c) => l.push(c),
                    }
                }
                l.push(']');
                out.push(Tok::Literal(l));
            }
            '<' | '>' | '@' | ',' | ';' | ':' => out.push(Tok::Special(c)),
            ')' | ']' | '\\' => return Err("has a stray ), ] or \\"),
            c => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || "()<>[]:;@\\,\"".contains(n) {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

/// Parse `value` (unfolded) as exactly one mailbox. `Err` says why it is
/// not one, as the end of a sentence ("the From: field ... {why}").
pub fn parse(value: &str) -> Result<Mailbox, &'static str> {
    let toks = tokens(value)?;
    if toks.is_empty() {
        return Err("is empty");
    }
    let lt: Vec<usize> = positions(&toks, '<');
    let gt: Vec<usize> = positions(&toks, '>');
    if lt.len() > 1 || gt.len() > 1 {
        return Err("has more than one <address>");
    }
    let (display, inner) = match (lt.first(), gt.first()) {
        (None, None) => (None, &toks[..]),
        (Some(&l), Some(&g)) if l < g && g == toks.len() - 1 => {
            let mut words = Vec::new();
            for t in &toks[..l] {
                match t {
                    Tok::Word(w) | Tok::Quoted(w) => words.push(w.as_str()),
                    Tok::Special(',') => return Err("lists more than one address"),
                    Tok::Special(':' | ';') => return Err("is a group, not one address"),
                    _ => return Err("has a display name that is not words or a quoted string"),
                }
            }
            let display = (!words.is_empty()).then(|| words.join(" "));
            (display, strip_route(&toks[l + 1..g])?)
        }
        (Some(_), Some(_)) => return Err("has text after its <address>"),
        _ => return Err("has an unbalanced < or >"),
    };
    if inner.contains(&Tok::Special(',')) {
        return Err("lists more than one address");
    }
    if inner.iter().any(|t| matches!(t, Tok::Special(':' | ';'))) {
        return Err("is a group, not one address");
    }
    Ok(Mailbox {
        display,
        addr: addr_spec(inner)?,
    })
}

fn positions(toks: &[Tok], c: char) -> Vec<usize> {
    toks.iter()
        .enumerate()
        .filter(|(_, t)| **t == Tok::Special(c))
        .map(|(i, _)| i)
        .collect()
}

/// Drop an obsolete source route (`<@relay,@relay2:user@host>`).
fn strip_route(inner: &[Tok]) -> Result<&[Tok], &'static str> {
    if inner.first() != Some(&Tok::Special('@')) {
        return Ok(inner);
    }
    match inner.iter().position(|t| *t == Tok::Special(':')) {
        Some(i) => Ok(&inner[i + 1..]),
        None => Err("has a malformed <address>"),
    }
}

/// `local@domain` from its tokens: words or quoted strings joined by dots,
/// `@`, then dot-joined words or one literal.
fn addr_spec(toks: &[Tok]) -> Result<String, &'static str> {
    let at: Vec<usize> = positions(toks, '@');
    let [at] = at[..] else {
        return Err(if at.is_empty() {
            "has no address (local@domain)"
        } else {
            "is not one address (more than one @)"
        });
    };
    let local = dotted(&toks[..at], true).ok_or("has a malformed local part")?;
    let domain = match &toks[at + 1..] {
        [Tok::Literal(l)] => l.clone(),
        d => dotted(d, false).ok_or("has a malformed domain")?,
    };
    Ok(format!("{local}@{domain}"))
}

/// Words (and quoted strings, in a local part) joined by dots into one
/// text; `None` when empty or when two words meet without a dot.
fn dotted(toks: &[Tok], quoted_ok: bool) -> Option<String> {
    let mut s = String::new();
    for t in toks {
        let w = match t {
            Tok::Word(w) => w,
            Tok::Quoted(q) if quoted_ok => q,
            _ => return None,
        };
        if !s.is_empty() && !s.ends_with('.') && !w.starts_with('.') {
            return None;
        }
        s.push_str(w);
    }
    (!s.is_empty() && !s.starts_with('.') && !s.ends_with('.') && !s.contains("..")).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(v: &str) -> String {
        parse(v).unwrap_or_else(|e| panic!("{v:?}: {e}")).addr
    }

    #[test]
    fn one_mailbox_in_every_spelling() {
        assert_eq!(addr("a@a.example"), "a@a.example");
        assert_eq!(addr("Alice <a@a.example>"), "a@a.example");
        assert_eq!(addr("\"b@b.example\" <a@a.example>"), "a@a.example");
        assert_eq!(addr("a@a.example (b@b.example)"), "a@a.example");
        assert_eq!(addr("(b@b.example) <a (x) @ a . example>"), "a@a.example");
        assert_eq!(addr("Name < a@a.example >"), "a@a.example");
        assert_eq!(addr("<a@a.example>"), "a@a.example");
        assert_eq!(addr("\"john doe\"@a.example"), "\"john doe\"@a.example");
        assert_eq!(addr("J. Doe <j.doe@a.example>"), "j.doe@a.example");
        assert_eq!(addr("<@relay.example:a@a.example>"), "a@a.example");
        assert_eq!(addr("a@[192.0.2.1]"), "a@[192.0.2.1]");
        assert_eq!(addr("=?UTF-8?Q?J=C3=B6rg?= <j@a.example>"), "j@a.example");
        let m = parse("\"Doe, J\" (boss) <j@a.example>").unwrap();
        assert_eq!(m.display.as_deref(), Some("\"Doe, J\""));
    }

    #[test]
    fn anything_but_one_mailbox_is_refused() {
        for bad in [
            "",
            "  (only a comment) ",
            "<a@a.example> <b@b.example>",
            "a@a.example, b@b.example",
            "Team: a@a.example;",
            "undisclosed-recipients:;",
            "b@b.example <a@a.example>",
            "<a@a.example> b@b.example",
            "a@a.example b@b.example",
            "john doe@a.example",
            "<a@a.example",
            "a@a.example>",
            "a@b@c.example",
            "\"unclosed <a@a.example>",
            "a@a.example (unclosed",
            "root",
            "a@",
            "@a.example",
            "a..b@a.example",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was taken as one mailbox");
        }
    }

    #[test]
    fn rebuilt_around_another_address() {
        let m = parse("\"Shop Team\" (x) <b@b.example>").unwrap();
        assert_eq!(m.with_addr("a@a.example"), "\"Shop Team\" <a@a.example>");
        let m = parse("\"b@b.example\" <b@b.example>").unwrap();
        assert_eq!(m.with_addr("a@a.example"), "a@a.example");
        let m = parse("b@b.example (Bob)").unwrap();
        assert_eq!(m.with_addr("a@a.example"), "a@a.example");
    }
}
