//! Envelope addresses: validation (the argv-injection guard), splitting, and
//! qualification of bare local names. Header address lists are parsed in
//! `intake::headers`; this module sees single addr-specs only.

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("{role} address \"{shown}\" {why}")]
    Invalid {
        role: &'static str,
        shown: String,
        why: &'static str,
    },
}

/// Longest address we accept (RFC 5321: 64 local + @ + 255 domain).
const MAX_LEN: usize = 320;

/// Check one envelope address as typed (recipient or `-f` sender) and return it
/// without surrounding `<>`. Refuses what could turn into options or smuggle
/// protocol: a leading `-`, spaces, control characters, unbalanced quotes or
/// brackets. `<>` (empty) is returned as "" and is the caller's to allow.
pub fn validate(raw: &str, role: &'static str) -> Result<String, AddressError> {
    let err = |why| AddressError::Invalid {
        role,
        shown: printable(raw),
        why,
    };
    let mut a = raw;
    if let Some(inner) = a.strip_prefix('<') {
        a = inner
            .strip_suffix('>')
            .ok_or_else(|| err("has an unbalanced '<'"))?;
    } else if a.ends_with('>') {
        return Err(err("has an unbalanced '>'"));
    }
    if a.is_empty() {
        return Ok(String::new());
    }
    if a.starts_with('-') {
        return Err(err("starts with '-' (it would be read as an option)"));
    }
    if a.len() > MAX_LEN {
        return Err(err("is longer than 320 characters"));
    }
    if a.contains('\u{FFFD}') {
        // main() turns bytes that are not UTF-8 into U+FFFD: refuse them here.
        return Err(err("is not valid UTF-8"));
    }
    let (local, domain) = split_raw(a);
    // The local part may be quoted ("john doe"@x); inside quotes a space is fine,
    // control characters never are.
    let mut in_quote = false;
    let mut escaped = false;
    let mut prev = '"';
    for (i, c) in local.char_indices() {
        if c.is_control() {
            return Err(err("contains a control character"));
        }
        // A space is legal inside quotes ("john doe"@x), but a word there that
        // starts with '-' is the PHPMailer CVE-2016-10033 shape: the address
        // becomes options as soon as anything splits it at spaces.
        if in_quote && c == '-' && prev == ' ' {
            return Err(err(
                "has an option-shaped word (\" -...\") inside its quotes",
            ));
        }
        prev = c;
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => {
                if in_quote && i + 1 != local.len() {
                    return Err(err("has text after its closing quote"));
                }
                if !in_quote && i != 0 {
                    return Err(err("has a quote inside its local part"));
                }
                in_quote = !in_quote;
            }
            ' ' | '\t' if !in_quote => return Err(err("contains a space")),
            // Outside quotes only atext and dots (RFC 5322), or UTF-8 (RFC 6531).
            '<' | '>' | '(' | ')' | ',' | ';' | ':' | '[' | ']' | '@' | '\\' if !in_quote => {
                return Err(err("contains a character not allowed in an address"));
            }
            _ => {}
        }
    }
    if in_quote {
        return Err(err("has an unbalanced quote"));
    }
    if local.is_empty() {
        return Err(err("has an empty local part"));
    }
    if let Some(d) = domain {
        if d.is_empty() {
            return Err(err("has an empty domain"));
        }
        if let Some(lit) = d.strip_prefix('[') {
            let inner = lit.strip_suffix(']').unwrap_or("");
            let ok = match inner.strip_prefix("IPv6:") {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => inner.parse::<std::net::IpAddr>().is_ok(),
            };
            if !ok {
                return Err(err("has a malformed address literal"));
            }
        } else {
            for label in d.split('.') {
                if label.is_empty() {
                    return Err(err("has an empty label in its domain"));
                }
                if label.starts_with('-') || label.ends_with('-') {
                    return Err(err("has a domain label that starts or ends with '-'"));
                }
                // Letters, digits, '-' (and '_', seen in the wild), or UTF-8
                // for internationalised names: nothing a shell, a template
                // (`${run{...}}`) or a protocol line could read.
                let allowed = |c: char| {
                    let utf8 = !c.is_ascii() && !c.is_whitespace() && !c.is_control();
                    c.is_ascii_alphanumeric() || c == '-' || c == '_' || utf8
                };
                if !label.chars().all(allowed) {
                    return Err(err("contains a character not allowed in a domain"));
                }
            }
        }
    }
    Ok(a.to_string())
}

/// Split at the last `@` outside quotes.
fn split_raw(a: &str) -> (&str, Option<&str>) {
    let mut in_quote = false;
    let mut at = None;
    let mut escaped = false;
    for (i, c) in a.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '@' if !in_quote => at = Some(i),
            _ => {}
        }
    }
    match at {
        Some(i) => (&a[..i], Some(&a[i + 1..])),
        None => (a, None),
    }
}

/// The local part of an address.
pub fn local_part(a: &str) -> &str {
    split_raw(a).0
}

/// The domain of an address, lower-cased; `None` for a bare local name.
pub fn domain(a: &str) -> Option<String> {
    split_raw(a).1.map(|d| d.to_ascii_lowercase())
}

/// `bob` -> `bob@domain`; qualified addresses unchanged.
pub fn qualify(a: &str, domain: &str) -> String {
    if a.is_empty() || split_raw(a).1.is_some() {
        a.to_string()
    } else {
        format!("{a}@{domain}")
    }
}

/// Whether the address needs SMTPUTF8.
pub fn needs_utf8(a: &str) -> bool {
    !a.is_ascii()
}

/// Show untrusted text safely in one line of an error message.
pub fn printable(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(200) {
        if c.is_control() {
            out.push_str(&c.escape_default().to_string());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Shell-style wildcard match (`*` any job, `?` one character), case-insensitive,
/// as used by `from=` patterns.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_quoted() {
        assert_eq!(
            validate("bob@x.example", "recipient").unwrap(),
            "bob@x.example"
        );
        assert_eq!(
            validate("<bob@x.example>", "recipient").unwrap(),
            "bob@x.example"
        );
        assert!(validate("\"john doe\"@x.example", "recipient").is_ok());
        assert_eq!(validate("<>", "sender").unwrap(), "");
        assert!(validate("root", "recipient").is_ok());
        assert!(validate("\"a\\\"b\"@x.example", "recipient").is_ok());
        assert!(validate("o'brien+tag@x.example", "recipient").is_ok());
        assert!(validate("a@[192.0.2.1]", "recipient").is_ok());
        assert!(validate("a@[IPv6:2001:db8::1]", "recipient").is_ok());
        assert!(validate("j\u{f6}rg@b\u{fc}cher.example", "recipient").is_ok());
        assert!(validate("a@_dmarc.x.example", "recipient").is_ok());
    }

    #[test]
    fn refuses_injection_shapes() {
        for bad in [
            "-oQ/tmp/ -X/var/www/x.php",
            "a b@x",
            "bob@x\r\nRCPT TO:<e@v>",
            "\"unbalanced@x",
            "bob@x>",
            "<bob@x",
            "-bob@x",
            "a\"b\"@x",
            "bob@",
            "bob@-x.example",
            "bob@x..example",
            "attacker\\@x.example",
            "a@${run{/usr/bin/id}}",
            "a@x/../../etc",
            "a@[IPv6:$(id)]",
            "a@[1.2.3]",
            "\u{FFFD}@x.example",
        ] {
            assert!(validate(bad, "recipient").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn wildcard_patterns() {
        assert!(wildcard("*@shop.example", "Sales@Shop.example"));
        assert!(!wildcard("*@shop.example", "a@shop.example.evil"));
        assert!(wildcard("a?c@x", "abc@x"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn qualifies_local_names() {
        assert_eq!(qualify("root", "h.example"), "root@h.example");
        assert_eq!(qualify("a@b", "h.example"), "a@b");
        assert_eq!(domain("a@B.Example").as_deref(), Some("b.example"));
    }
}
