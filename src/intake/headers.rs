//! The header block of a message: fields kept as raw bytes (so nothing we do
//! not touch changes), address extraction for `-t` (groups, comments, quoted
//! local parts, encoded words; hand-written, see [`address_list`]),
//! qualification of bare local names in address headers, and the RFC 5322
//! date.

/// One header field, raw: `Name: value` with its folded continuation lines,
/// each line without its terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub lines: Vec<Vec<u8>>,
}

impl Field {
    pub fn new(name: &str, value: &str) -> Field {
        Field {
            lines: value
                .split("\r\n")
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        format!("{name}: {l}").into_bytes()
                    } else {
                        l.as_bytes().to_vec()
                    }
                })
                .collect(),
        }
    }

    pub fn name(&self) -> String {
        let first = &self.lines[0];
        let end = first.iter().position(|&b| b == b':').unwrap_or(first.len());
        String::from_utf8_lossy(&first[..end]).trim().to_string()
    }

    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name)
    }

    /// The raw value after the colon, continuation lines joined with CRLF.
    pub fn raw_value(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            let t = String::from_utf8_lossy(l);
            if i == 0 {
                let v = t.split_once(':').map(|x| x.1).unwrap_or("");
                s.push_str(v.strip_prefix(' ').unwrap_or(v));
            } else {
                s.push_str("\r\n");
                s.push_str(&t);
            }
        }
        s
    }

    /// The value unfolded (CRLF + WSP -> WSP).
    pub fn value(&self) -> String {
        self.raw_value().replace("\r\n", "")
    }

    /// Parse as an address list: every addr-spec it names (group members included).
    pub fn addresses(&self) -> Vec<String> {
        address_list(&self.value())
    }

    /// The field as bytes with CRLF line ends, final CRLF included.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for l in &self.lines {
            v.extend_from_slice(l);
            v.extend_from_slice(b"\r\n");
        }
        v
    }
}

/// The addr-specs of an RFC 5322 address list: `Name <a@b>`, `a@b (comment)`,
/// `"quoted local"@b`, groups `team: a@b, c@d;`, bare local names (`root`, as
/// cron writes them), encoded-word display names. Hand-written because
/// mailparse 0.18 rejects bare local names and quoted local parts, and
/// mis-splits an address that follows a group.
pub fn address_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mailbox in split_top_level(value) {
        let m = mailbox.trim();
        if m.is_empty() {
            continue;
        }
        let addr = if let (Some(lt), Some(gt)) = (top_level_find(m, '<'), top_level_find(m, '>')) {
            if gt <= lt {
                continue;
            }
            strip_comments(&m[lt + 1..gt])
        } else {
            strip_comments(m)
        };
        // Drop a source route (@a,@b:user@host) and surrounding space.
        let addr = match addr.rfind(':') {
            Some(i) if addr.starts_with('@') => addr[i + 1..].to_string(),
            _ => addr,
        };
        let addr: String = collapse_ws(&addr);
        if !addr.is_empty() {
            out.push(addr);
        }
    }
    out
}

/// Split an address list into mailboxes at top-level `,`, entering groups
/// (`name:` starts members, `;` ends them).
fn split_top_level(v: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut in_q = false;
    let mut in_angle = false;
    let mut esc = false;
    for c in v.chars() {
        if esc {
            cur.push(c);
            esc = false;
            continue;
        }
        if in_q {
            cur.push(c);
            match c {
                '\\' => esc = true,
                '"' => in_q = false,
                _ => {}
            }
            continue;
        }
        if depth > 0 {
            cur.push(c);
            match c {
                '\\' => esc = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_q = true;
                cur.push(c);
            }
            '(' => {
                depth = 1;
                cur.push(c);
            }
            '<' => {
                in_angle = true;
                cur.push(c);
            }
            '>' => {
                in_angle = false;
                cur.push(c);
            }
            ':' if !in_angle => cur.clear(), // group display name
            ',' | ';' if !in_angle => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut in_q = false;
    let mut esc = false;
    for c in s.chars() {
        if esc {
            if depth == 0 {
                out.push(c);
            }
            esc = false;
            continue;
        }
        if in_q {
            out.push(c);
            match c {
                '\\' => esc = true,
                '"' => in_q = false,
                _ => {}
            }
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            '\\' if depth > 0 => esc = true,
            '"' if depth == 0 => {
                in_q = true;
                out.push(c);
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Remove folding white space outside quoted strings.
fn collapse_ws(s: &str) -> String {
    let mut out = String::new();
    let mut in_q = false;
    for c in s.chars() {
        if c == '"' {
            in_q = !in_q;
        }
        if c.is_whitespace() && !in_q {
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether a line can start a header field (`name:` with printable name).
pub fn is_field_start(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|&b| (33..=126).contains(&b) && b != b':')
}

/// Add `@domain` to bare local names in an address-list header value
/// (`root (Cron Daemon)`, `Cron Daemon <root>`, `alice, bob@x`). Returns the
/// new value, or `None` when nothing needed qualifying. Quoted strings,
/// comments and groups are respected; everything else is left byte for byte.
pub fn qualify_value(value: &str, domain: &str) -> Option<String> {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut changed = false;
    // Per mailbox: track where the addr-spec ends and whether it had '@'.
    let mut i = 0;
    let mut out_start = 0;
    let flush = |out: &mut String, seg_start: usize, changed: &mut bool| {
        let seg: String = out[seg_start..].to_string();
        if let Some(q) = qualify_mailbox(&seg, domain) {
            out.truncate(seg_start);
            out.push_str(&q);
            *changed = true;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        out.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    if chars[i] == '"' {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            '(' => {
                let mut depth = 0;
                while i < chars.len() {
                    let ch = chars[i];
                    out.push(ch);
                    i += 1;
                    if ch == '\\' && i < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                        continue;
                    }
                    if ch == '(' {
                        depth += 1;
                    } else if ch == ')' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
                continue;
            }
            ',' | ';' => {
                flush(&mut out, out_start, &mut changed);
                out.push(c);
                out_start = out.len();
            }
            ':' => {
                // A group's display name ends here; its members follow.
                out.push(c);
                out_start = out.len();
            }
            _ => out.push(c),
        }
        i += 1;
    }
    flush(&mut out, out_start, &mut changed);
    changed.then_some(out)
}

/// One mailbox's text: qualify its addr-spec if it lacks a domain.
fn qualify_mailbox(seg: &str, domain: &str) -> Option<String> {
    if seg.trim().is_empty() {
        return None;
    }
    // Angle-addr form: the addr is inside <>.
    if let (Some(lt), Some(gt)) = (top_level_find(seg, '<'), top_level_find(seg, '>')) {
        if gt > lt {
            let inner = &seg[lt + 1..gt];
            if inner.trim().is_empty() || inner.contains('@') {
                return None;
            }
            return Some(format!(
                "{}{}@{domain}{}",
                &seg[..lt + 1],
                inner.trim(),
                &seg[gt..]
            ));
        }
        return None;
    }
    // Bare addr-spec, possibly with comments: find the last non-comment token.
    let mut end = None;
    let mut start = None;
    let mut depth = 0;
    let mut in_q = false;
    let b: Vec<(usize, char)> = seg.char_indices().collect();
    for &(idx, c) in &b {
        if in_q {
            if c == '"' {
                in_q = false;
                end = Some(idx + 1);
            }
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '"' if depth == 0 => {
                in_q = true;
                start.get_or_insert(idx);
            }
            c if depth == 0 && !c.is_whitespace() => {
                start.get_or_insert(idx);
                end = Some(idx + c.len_utf8());
            }
            _ => {}
        }
    }
    let (s, e) = (start?, end?);
    let addr = &seg[s..e];
    if addr.contains('@') || addr.contains(' ') || addr.starts_with('=') {
        return None;
    }
    Some(format!("{}@{domain}{}", &seg[..e], &seg[e..]))
}

fn top_level_find(s: &str, target: char) -> Option<usize> {
    let mut depth = 0;
    let mut in_q = false;
    for (i, c) in s.char_indices() {
        if in_q {
            if c == '"' {
                in_q = false;
            }
            continue;
        }
        match c {
            '"' if depth == 0 => in_q = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c == target && depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_cron_shapes() {
        assert_eq!(
            qualify_value("root (Cron Daemon)", "h.example").unwrap(),
            "root@h.example (Cron Daemon)"
        );
        assert_eq!(
            qualify_value("Cron Daemon <root>", "h.example").unwrap(),
            "Cron Daemon <root@h.example>"
        );
        assert_eq!(
            qualify_value("alice, bob@x.example", "h.example").unwrap(),
            "alice@h.example, bob@x.example"
        );
        assert_eq!(qualify_value("\"Doe, J\" <j@x.example>", "h"), None);
        assert_eq!(qualify_value("undisclosed-recipients:;", "h"), None);
        assert_eq!(
            qualify_value("team: a, b@x;", "h").unwrap(),
            "team: a@h, b@x;"
        );
    }

    #[test]
    fn addresses_of_groups_comments_encoded_words() {
        let f = Field {
            lines: vec![
                b"To: =?UTF-8?Q?J=C3=B6rg?= <jorg@x.example>, team: a@x.example,".to_vec(),
                b" \"quoted local\"@y.example;, bob@z.example (Bob)".to_vec(),
            ],
        };
        let a = f.addresses();
        assert!(a.contains(&"jorg@x.example".to_string()), "{a:?}");
        assert!(a.contains(&"a@x.example".to_string()), "{a:?}");
        assert!(a.contains(&"bob@z.example".to_string()), "{a:?}");
        assert_eq!(a.len(), 4, "{a:?}");
    }

    #[test]
    fn field_names() {
        assert!(is_field_start(b"Subject: x"));
        assert!(!is_field_start(b"not a header"));
        assert!(!is_field_start(b": x"));
        let f = Field::new("X-Test", "v");
        assert_eq!(f.bytes(), b"X-Test: v\r\n");
        assert_eq!(f.value(), "v");
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn address_list_shapes() {
        assert_eq!(address_list("root (Cron Daemon)"), vec!["root"]);
        assert_eq!(
            address_list("\"Doe, J\" <j@x.example>, k@y"),
            vec!["j@x.example", "k@y"]
        );
        assert_eq!(
            address_list("team: a@x, b@y;, c@z"),
            vec!["a@x", "b@y", "c@z"]
        );
        assert_eq!(
            address_list("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
        assert_eq!(
            address_list("\"quoted local\"@y.example"),
            vec!["\"quoted local\"@y.example"]
        );
        assert_eq!(address_list("<@relay:bob@x>"), vec!["bob@x"]);
    }
}
