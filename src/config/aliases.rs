//! `/etc/aliases`: local names (`root`, `postmaster`) -> real addresses.
//! Only address targets are used: vsendmail delivers nothing locally, so
//! `|command`, `/file` and `:include:` targets are ignored (and `-bi` says so).
//! Expansion is recursive with a depth bound; a name that maps to itself stops.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Default)]
pub struct Aliases {
    map: HashMap<String, Vec<String>>,
}

#[derive(Debug)]
pub struct AliasProblem {
    pub line: usize,
    pub msg: String,
}

impl Aliases {
    pub fn load(path: &Path) -> (Aliases, Vec<AliasProblem>) {
        match std::fs::read_to_string(path) {
            Ok(t) => Self::parse(&t),
            Err(_) => (Aliases::default(), Vec::new()),
        }
    }

    pub fn parse(text: &str) -> (Aliases, Vec<AliasProblem>) {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let mut problems = Vec::new();
        let mut current: Option<(String, String, usize)> = None;
        let mut entries: Vec<(String, String, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(c) = current.as_mut() {
                    c.1.push(' ');
                    c.1.push_str(line.trim());
                }
                continue;
            }
            if let Some(c) = current.take() {
                entries.push(c);
            }
            match line.split_once(':') {
                Some((name, rest)) if !name.trim().is_empty() => {
                    current = Some((name.trim().to_ascii_lowercase(), rest.to_string(), i + 1))
                }
                _ => problems.push(AliasProblem {
                    line: i + 1,
                    msg: "expected `name: address, ...`".into(),
                }),
            }
        }
        if let Some(c) = current.take() {
            entries.push(c);
        }
        for (name, targets, line) in entries {
            let mut v = Vec::new();
            for t in targets.split(',') {
                let t = t.trim().trim_matches('"');
                if t.is_empty() {
                    continue;
                }
                if t.starts_with('|') || t.starts_with('/') || t.starts_with(":include:") {
                    problems.push(AliasProblem {
                        line,
                        msg: format!("target `{t}` ignored: vsendmail delivers only to addresses"),
                    });
                    continue;
                }
                match crate::base::address::validate(t, "alias target") {
                    Ok(a) if !a.is_empty() => v.push(a),
                    Ok(_) => {}
                    Err(e) => problems.push(AliasProblem {
                        line,
                        msg: e.to_string(),
                    }),
                }
            }
            map.insert(name, v);
        }
        (Aliases { map }, problems)
    }

    /// Expand a bare local name; qualified addresses are returned unchanged.
    pub fn expand(&self, addr: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.expand_into(addr, 0, &mut out);
        out.dedup();
        out
    }

    fn expand_into(&self, addr: &str, depth: usize, out: &mut Vec<String>) {
        if addr.contains('@') || depth > 10 {
            out.push(addr.to_string());
            return;
        }
        match self.map.get(&addr.to_ascii_lowercase()) {
            Some(targets) if !targets.is_empty() => {
                for t in targets {
                    if t.eq_ignore_ascii_case(addr) {
                        out.push(t.clone());
                    } else {
                        self.expand_into(t, depth + 1, out);
                    }
                }
            }
            _ => out.push(addr.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_recursively() {
        let (a, p) = Aliases::parse(
            "root: admin\nadmin: ops@x.example,\n  boss@y.example\npostmaster: root\nweird: |/bin/sh\n",
        );
        assert_eq!(
            a.expand("postmaster"),
            vec!["ops@x.example", "boss@y.example"]
        );
        assert_eq!(a.expand("bob"), vec!["bob"]);
        assert_eq!(a.expand("x@y"), vec!["x@y"]);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn self_loop_stops() {
        let (a, _) = Aliases::parse("a: b\nb: a\n");
        assert_eq!(a.expand("a").len(), 1);
    }
}
