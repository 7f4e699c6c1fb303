//! `/etc/virtusers`: the identity table. One identity per line:
//! `login|%group|*  sender|@domain  addr[,addr]|host|-  [key=value ...]`.
//!
//! Owns the file format: parsing one line strictly (errors carry file:line) and
//! finding the line that applies to a login. A normal run parses only the lines
//! that can match (the login's own line, `%group` lines, `*` lines), found with a
//! memchr scan of the file, so a 100,000-line table costs well under a
//! millisecond; `-bi` parses and reports every line (`check_all`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VirtusersError {
    #[error("{path}: cannot read: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Line {
        path: String,
        line: usize,
        msg: String,
    },
}

/// Who a line applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    User(String),
    Group(String),
    Any,
}

/// The identity's default sender: an address, or `@domain` (login@domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderSpec {
    Address(String),
    AtDomain(String),
}

/// Field 3: the source addresses to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// `-`: the kernel chooses; no binding.
    Kernel,
    /// IPv4 and/or IPv6 literals, in the order given.
    Addrs(Vec<IpAddr>),
    /// A host name resolved at send time.
    Host(String),
}

/// One parsed line.
#[derive(Debug, Clone)]
pub struct Entry {
    pub who: Who,
    pub sender: SenderSpec,
    pub sources: Sources,
    /// (PRIVATE, PUBLIC) of sources written `PRIVATE=PUBLIC` (1:1 NAT).
    pub public: Vec<(IpAddr, IpAddr)>,
    pub helo: Option<String>,
    /// `relay=URL|URL`: a failover list.
    pub relay: Option<crate::base::relay::Relays>,
    pub from: Vec<String>,
    pub rate: Option<crate::base::limit::Rate>,
    /// `rcpt_rate=`: recipients (not messages) per window.
    pub rcpt_rate: Option<crate::base::limit::Rate>,
    /// `group_rate=` / `group_rcpt_rate=` of a `%group` line: every member together.
    pub group_rate: Option<crate::base::limit::Rate>,
    pub group_rcpt_rate: Option<crate::base::limit::Rate>,
    pub dkim: Option<(String, PathBuf)>,
    /// `dkim=DOMAIN=SELECTOR:PATH` entries: (domain, selector, key) for
    /// messages whose From: is at that domain (addon domains).
    pub dkim_domains: Vec<(String, String, PathBuf)>,
    pub batv: Option<PathBuf>,
    pub path: PathBuf,
    pub line: usize,
}

impl Entry {
    pub fn location(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }
}

/// Parse one non-comment line. `Ok(None)` for blank and comment lines.
pub fn parse_line(text: &str, path: &Path, line: usize) -> Result<Option<Entry>, VirtusersError> {
    let err = |msg: String| VirtusersError::Line {
        path: path.display().to_string(),
        line,
        msg,
    };
    // A key path is read by the set-gid binary: relative, it would be
    // looked up in the caller's working directory, which the user chooses.
    let relative = |key: &str, p: &str| {
        err(format!(
            "{key}=: key path `{p}` is relative; write the absolute path (e.g. /etc/vsendmail/keys/...)"
        ))
    };
    let content = match text.find('#') {
        Some(i) => &text[..i],
        None => text,
    };
    let content = content.trim_end_matches(['\r', '\n']);
    if content.trim().is_empty() {
        return Ok(None);
    }
    if content.starts_with([' ', '\t']) {
        return Err(err(
            "line starts with white space; the login must start the line".into(),
        ));
    }
    let fields: Vec<&str> = content.split_ascii_whitespace().collect();
    if fields.len() < 3 {
        return Err(err(format!(
            "expected `login sender source [options]`, found {} field(s); use - as the source for the kernel's choice",
            fields.len()
        )));
    }
    let who = match fields[0] {
        "*" => Who::Any,
        g if g.starts_with('%') => {
            if g.len() == 1 {
                return Err(err("`%` needs a group name".into()));
            }
            Who::Group(g[1..].to_string())
        }
        u => {
            if u.chars().any(|c| c.is_control() || c == '@') {
                return Err(err(format!("`{u}` is not a login name")));
            }
            Who::User(u.to_string())
        }
    };
    let sender = if let Some(d) = fields[1].strip_prefix('@') {
        crate::base::address::validate(&format!("x@{d}"), "sender")
            .map_err(|e| err(format!("sender `{}`: {e}", fields[1])))?;
        SenderSpec::AtDomain(d.to_ascii_lowercase())
    } else {
        let a =
            crate::base::address::validate(fields[1], "sender").map_err(|e| err(e.to_string()))?;
        if a.is_empty() || crate::base::address::domain(&a).is_none() {
            return Err(err(format!(
                "sender `{}` must be an address with a domain or `@domain`",
                fields[1]
            )));
        }
        SenderSpec::Address(a)
    };
    let (sources, public) = parse_sources(fields[2]).map_err(err)?;
    let mut e = Entry {
        who,
        sender,
        sources,
        public,
        helo: None,
        relay: None,
        from: Vec::new(),
        rate: None,
        rcpt_rate: None,
        group_rate: None,
        group_rcpt_rate: None,
        dkim: None,
        dkim_domains: Vec::new(),
        batv: None,
        path: path.to_path_buf(),
        line,
    };
    for opt in &fields[3..] {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| err(format!("option `{opt}` is not key=value")))?;
        if v.is_empty() {
            return Err(err(format!("option `{k}=` has no value")));
        }
        match k {
            "helo" => {
                if v.starts_with('-')
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_[]:".contains(c))
                {
                    return Err(err(format!("helo=`{v}` is not a host name")));
                }
                e.helo = Some(v.to_string());
            }
            "relay" => {
                e.relay = Some(
                    crate::base::relay::Relays::parse(v)
                        .map_err(|m| err(format!("relay=`{v}`: {m}")))?,
                );
            }
            "from" => {
                for p in v.split(',') {
                    if p.is_empty() || p.chars().any(|c| c.is_control() || c == ' ') {
                        return Err(err(format!("from=: bad pattern `{p}`")));
                    }
                    e.from.push(p.to_string());
                }
            }
            "rate" | "rcpt_rate" | "group_rate" | "group_rcpt_rate" => {
                let r = crate::base::limit::Rate::parse(v)
                    .map_err(|m| err(format!("{k}=`{v}`: {m}")))?;
                if k.starts_with("group_") && !matches!(e.who, Who::Group(_)) {
                    return Err(err(format!(
                        "{k}= belongs on a %group line (it counts every member together)"
                    )));
                }
                let slot = match k {
                    "rate" => &mut e.rate,
                    "rcpt_rate" => &mut e.rcpt_rate,
                    "group_rate" => &mut e.group_rate,
                    _ => &mut e.group_rcpt_rate,
                };
                *slot = Some(r);
            }
            "dkim" => {
                // SELECTOR:PATH (the identity's own domain) and/or
                // DOMAIN=SELECTOR:PATH entries, comma-separated.
                let bad = || {
                    err(format!(
                        "dkim=`{v}`: expected SELECTOR:PATH or DOMAIN=SELECTOR:PATH entries, comma-separated"
                    ))
                };
                for part in v.split(',') {
                    let (sel, p) = part.split_once(':').ok_or_else(bad)?;
                    let (dom, sel) = match sel.split_once('=') {
                        Some((d, s)) => (Some(d.to_ascii_lowercase()), s),
                        None => (None, sel),
                    };
                    if sel.is_empty() || p.is_empty() || dom.as_deref() == Some("") {
                        return Err(bad());
                    }
                    if !Path::new(p).is_absolute() {
                        return Err(relative("dkim", p));
                    }
                    match dom {
                        None if e.dkim.is_some() => {
                            return Err(err(format!(
                                "dkim=`{v}`: more than one SELECTOR:PATH for the identity's own domain"
                            )));
                        }
                        None => e.dkim = Some((sel.to_string(), PathBuf::from(p))),
                        Some(d) if e.dkim_domains.iter().any(|x| x.0 == d) => {
                            return Err(err(format!("dkim=`{v}`: domain {d} is listed twice")));
                        }
                        Some(d) => e.dkim_domains.push((d, sel.to_string(), PathBuf::from(p))),
                    }
                }
            }
            "batv" if !Path::new(v).is_absolute() => return Err(relative("batv", v)),
            "batv" => e.batv = Some(PathBuf::from(v)),
            _ => {
                return Err(err(format!(
                    "unknown option `{k}` (known: helo, relay, from, rate, rcpt_rate, group_rate, group_rcpt_rate, dkim, batv)"
                )));
            }
        }
    }
    Ok(Some(e))
}

/// Field 3, and the public addresses of `PRIVATE=PUBLIC` sources.
fn parse_sources(f: &str) -> Result<(Sources, Vec<(IpAddr, IpAddr)>), String> {
    if f == "-" {
        return Ok((Sources::Kernel, Vec::new()));
    }
    let parts: Vec<&str> = f.split(',').collect();
    if parts
        .iter()
        .any(|p| p.parse::<IpAddr>().is_ok() || p.contains(':') || p.contains('='))
    {
        let ip_of = |p: &str| -> Result<IpAddr, String> {
            p.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("source `{p}` is not an IPv4 or IPv6 address"))
        };
        let mut v = Vec::new();
        let mut public = Vec::new();
        for p in parts {
            let (private, shown) = match p.split_once('=') {
                Some((a, b)) => (a, Some(b)),
                None => (p, None),
            };
            let ip = ip_of(private)?;
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(format!("source `{p}` cannot be bound as a sender address"));
            }
            if let Some(b) = shown {
                let pubip = ip_of(b).map_err(|_| {
                    format!("source `{p}`: the public address `{b}` after = is not an IPv4 or IPv6 address (write PRIVATE=PUBLIC)")
                })?;
                if pubip.is_ipv4() != ip.is_ipv4() || pubip.is_unspecified() || pubip.is_multicast()
                {
                    return Err(format!(
                        "source `{p}`: PRIVATE=PUBLIC needs two unicast addresses of one family"
                    ));
                }
                public.push((ip, pubip));
            }
            v.push(ip);
        }
        return Ok((Sources::Addrs(v), public));
    }
    if parts.len() > 1 {
        return Err(format!("source `{f}`: give IP addresses, or one host name"));
    }
    if f.split('.')
        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && !f.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        Ok((Sources::Host(f.to_ascii_lowercase()), Vec::new()))
    } else {
        Err(format!(
            "source `{f}` is not an IP address, a host name or -"
        ))
    }
}

/// The line that starts at `offset`, without its newline.
fn line_at(data: &[u8], offset: usize) -> &[u8] {
    let rest = &data[offset..];
    &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())]
}

/// The table as read from disk, with its path.
pub struct Table {
    pub path: PathBuf,
    data: Data,
    /// The file's metadata as read (for `-bi` to stamp an index).
    meta: Option<std::fs::Metadata>,
    /// A matching `<file>.idx`, when `-bi` wrote one.
    index: Option<crate::config::virtusers_index::Index>,
}

/// The file's bytes: mapped (no copy: a 100,000-line table costs page-cache
/// lookups, not an 8 MB read), or owned for tests and empty files.
enum Data {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Owned(v) => v,
        }
    }
}

impl Table {
    /// Read the file. A missing file is an empty table (everyone sends as the host).
    pub fn read(path: &Path) -> Result<Table, VirtusersError> {
        let err = |err| VirtusersError::Read {
            path: path.display().to_string(),
            err,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Table {
                    path: path.to_path_buf(),
                    data: Data::Owned(Vec::new()),
                    meta: None,
                    index: None,
                });
            }
            Err(e) => return Err(err(e)),
        };
        let meta = file.metadata().map_err(err)?;
        let len = meta.len();
        let data = if len == 0 {
            Data::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and private; a concurrent truncation
            // by an editor could fault (SIGBUS) and end this run before anything
            // was accepted, which the caller sees as a failure. Tools that
            // replace the file (rename) do not affect an existing map.
            match unsafe { memmap2::Mmap::map(&file) } {
                Ok(m) => Data::Mapped(m),
                Err(_) => Data::Owned(std::fs::read(path).map_err(err)?),
            }
        };
        let index = crate::config::virtusers_index::Index::open(path, &meta);
        Ok(Table {
            path: path.to_path_buf(),
            data,
            meta: Some(meta),
            index,
        })
    }

    /// Write `<file>.idx` for this table (by `-bi`).
    pub fn write_index(&self) -> std::io::Result<Option<PathBuf>> {
        match &self.meta {
            Some(m) => crate::config::virtusers_index::write(&self.path, &self.data, m).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a matching index was found.
    pub fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Parse the line at `offset` (line number `line`) if its first field
    /// satisfies `accept`.
    fn entry_at(
        &self,
        offset: usize,
        line: usize,
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Option<Entry>, VirtusersError> {
        if offset >= self.data.len() {
            return Ok(None);
        }
        let l = line_at(&self.data, offset);
        if !accept(crate::config::virtusers_index::first_field(l)) {
            return Ok(None);
        }
        parse_line(&String::from_utf8_lossy(l), &self.path, line)
    }

    fn lookup_indexed(
        &self,
        ix: &crate::config::virtusers_index::Index,
        login: &str,
        groups: impl FnOnce() -> Vec<String>,
    ) -> Result<Option<Entry>, VirtusersError> {
        for (o, l) in ix.users(login.as_bytes()) {
            if let Some(e) = self.entry_at(o, l, &|w| w == login.as_bytes())? {
                return Ok(Some(e));
            }
        }
        let glines = ix.groups();
        if !glines.is_empty() {
            let groups = groups();
            for (o, l) in glines {
                let accept = |w: &[u8]| {
                    groups
                        .iter()
                        .any(|g| w.len() == g.len() + 1 && &w[1..] == g.as_bytes())
                };
                if let Some(e) = self.entry_at(o, l, &accept)? {
                    return Ok(Some(e));
                }
            }
        }
        match ix.star() {
            Some((o, l)) => self.entry_at(o, l, &|w| w == b"*"),
            None => Ok(None),
        }
    }

    pub fn from_text(path: &Path, text: &str) -> Table {
        Table {
            path: path.to_path_buf(),
            data: Data::Owned(text.as_bytes().to_vec()),
            meta: None,
            index: None,
        }
    }

    /// The line that applies to `login` with supplementary `groups`: the first
    /// user line, else the first matching `%group` line, else the first `*` line.
    pub fn lookup(&self, login: &str, groups: &[String]) -> Result<Option<Entry>, VirtusersError> {
        self.lookup_with(login, || groups.to_vec())
    }

    /// As [`Table::lookup`], asking for the groups only when a `%group` line exists.
    pub fn lookup_with(
        &self,
        login: &str,
        groups: impl FnOnce() -> Vec<String>,
    ) -> Result<Option<Entry>, VirtusersError> {
        if let Some(ix) = &self.index {
            return self.lookup_indexed(ix, login, groups);
        }
        if let Some(e) = self.first_with_prefix(login.as_bytes(), |w| w == login.as_bytes())? {
            return Ok(Some(e));
        }
        let has_group_lines =
            self.data.starts_with(b"%") || memchr::memmem::find(&self.data, b"\n%").is_some();
        let groups = if has_group_lines {
            groups()
        } else {
            Vec::new()
        };
        if let Some(e) = self.first_with_prefix(b"%", |w| {
            groups
                .iter()
                .any(|g| w.len() == g.len() + 1 && &w[1..] == g.as_bytes())
        })? {
            return Ok(Some(e));
        }
        self.first_with_prefix(b"*", |w| w == b"*")
    }

    /// Scan for lines starting with `prefix` (memmem over "\n"+prefix), and
    /// parse the first whose first field satisfies `accept`.
    fn first_with_prefix(
        &self,
        prefix: &[u8],
        accept: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Entry>, VirtusersError> {
        let data = &self.data;
        let mut needle = Vec::with_capacity(prefix.len() + 1);
        needle.push(b'\n');
        needle.extend_from_slice(prefix);
        let finder = memchr::memmem::Finder::new(&needle);
        let starts = data
            .starts_with(prefix)
            .then_some(0)
            .into_iter()
            .chain(finder.find_iter(data).map(|i| i + 1));
        for start in starts {
            if !accept(crate::config::virtusers_index::first_field(line_at(
                data, start,
            ))) {
                continue;
            }
            let lineno = memchr::memchr_iter(b'\n', &data[..start]).count() + 1;
            if let Some(e) = self.entry_at(start, lineno, &accept)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Parse every line: all entries, and every problem as `file:line: ...`.
    pub fn check_all(&self) -> (Vec<Entry>, Vec<VirtusersError>) {
        let text = String::from_utf8_lossy(&self.data);
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        for (i, l) in text.lines().enumerate() {
            match parse_line(l, &self.path, i + 1) {
                Ok(Some(e)) => {
                    let key = format!("{:?}", e.who);
                    if let Some(first) = seen.get(&key) {
                        errors.push(VirtusersError::Line {
                            path: self.path.display().to_string(),
                            line: i + 1,
                            msg: format!(
                                "duplicate entry for `{}`; line {first} already applies, this one is never used",
                                l.split_ascii_whitespace().next().unwrap_or("")
                            ),
                        });
                    } else {
                        seen.insert(key, i + 1);
                    }
                    entries.push(e)
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        (entries, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(t: &str) -> Table {
        Table::from_text(Path::new("/etc/virtusers"), t)
    }

    const SAMPLE: &str = "# comment\n\
alice          alice@shop.example      192.0.2.10                helo=mail.shop.example\n\
www-blog       noreply@blog.example    192.0.2.11,2001:db8::11\n\
%hosting       @customers.example      192.0.2.12                relay=smtps://relay.example.net:465\n\
*              @host.example           -\n";

    #[test]
    fn user_then_group_then_star() {
        let t = table(SAMPLE);
        let a = t.lookup("alice", &[]).unwrap().unwrap();
        assert_eq!(a.sender, SenderSpec::Address("alice@shop.example".into()));
        assert_eq!(a.helo.as_deref(), Some("mail.shop.example"));
        assert_eq!(a.line, 2);
        let g = t.lookup("carol", &["hosting".into()]).unwrap().unwrap();
        assert_eq!(g.who, Who::Group("hosting".into()));
        let s = t.lookup("dave", &["users".into()]).unwrap().unwrap();
        assert_eq!(s.who, Who::Any);
        assert_eq!(s.sources, Sources::Kernel);
        let b = t.lookup("www-blog", &[]).unwrap().unwrap();
        assert_eq!(
            b.sources,
            Sources::Addrs(vec![
                "192.0.2.11".parse().unwrap(),
                "2001:db8::11".parse().unwrap()
            ])
        );
    }

    #[test]
    fn prefix_of_login_does_not_match() {
        let t = table("alicex a@x.example 127.0.0.2\nalice b@x.example 127.0.0.3\n");
        let e = t.lookup("alice", &[]).unwrap().unwrap();
        assert_eq!(e.line, 2);
        assert!(t.lookup("alic", &[]).unwrap().is_none());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let t = table("alice a@x.example 127.0.0.2 colour=blue\n");
        let e = t.lookup("alice", &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "/etc/virtusers:1: unknown option `colour` (known: helo, relay, from, rate, rcpt_rate, group_rate, group_rcpt_rate, dkim, batv)"
        );
        let (_, errs) =
            table("ok a@x.example -\nbad a@x.example 999.1.1.1\nbad2 nodomain -\n").check_all();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("/etc/virtusers:2:"), "{msgs:?}");
        assert!(msgs[1].starts_with("/etc/virtusers:3:"), "{msgs:?}");
    }

    #[test]
    fn host_name_source() {
        let t = table("u @x.example mail.x.example\n");
        assert_eq!(
            t.lookup("u", &[]).unwrap().unwrap().sources,
            Sources::Host("mail.x.example".into())
        );
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    #[test]
    fn index_gives_the_same_answers_as_the_scan_and_goes_stale() {
        let dir = std::env::temp_dir().join(format!("vs-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("virtusers");
        let mut text = String::new();
        for i in 0..500 {
            text.push_str(&format!("user{i} u{i}@x{i}.example 127.0.0.2\n"));
        }
        text.push_str("# c\n%staff @staff.example 127.0.0.3\n*  @host.example -\nalice a@shop.example 127.0.0.4\nalice dup@shop.example -\n");
        std::fs::write(&p, &text).unwrap();
        let scan = Table::read(&p).unwrap();
        assert!(!scan.indexed());
        scan.write_index().unwrap();
        let ix = Table::read(&p).unwrap();
        assert!(ix.indexed());
        for (login, groups) in [
            ("alice", vec![]),
            ("user250", vec![]),
            ("bob", vec!["staff".to_string()]),
            ("carol", vec![]),
        ] {
            let a = scan
                .lookup(login, &groups)
                .unwrap()
                .map(|e| (e.line, e.sender));
            let b = ix
                .lookup(login, &groups)
                .unwrap()
                .map(|e| (e.line, e.sender));
            assert_eq!(a, b, "{login}");
        }
        assert_eq!(ix.lookup("alice", &[]).unwrap().unwrap().line, 504);
        // Edited afterwards: the index no longer matches and is ignored.
        std::fs::write(&p, "alice other@shop.example -\n").unwrap();
        let t = Table::read(&p).unwrap();
        assert!(!t.indexed());
        assert_eq!(
            t.lookup("alice", &[]).unwrap().unwrap().sender,
            SenderSpec::Address("other@shop.example".into())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
