//! The house rules of `src/`, read from the code's own `crate::`, `super::`
//! and `self::` paths (the module graph): no circle, each stage imports only
//! from the stages before it (in the order `src/lib.rs` lists them), nothing
//! imports the entry point, and every folder's `mod.rs` is a map (its opening
//! comment and `mod` lines), not code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`deliver::smtp::session`) -> its file, for every file in src/.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The code of a file without comments and without its `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    // Drop each `#[cfg(test)] mod x { ... }` by matching braces.
    while let Some(at) = out
        .find("#[cfg(test)]\nmod ")
        .or_else(|| out.find("#[cfg(test)]\npub(crate) mod "))
    {
        let open = match out[at..].find('{') {
            Some(o) => at + o,
            None => break,
        };
        let mut depth = 0usize;
        let mut end = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

/// The longest existing module that a path names.
fn resolve(path: &str, here: &str, mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if here.is_empty() {
        Vec::new()
    } else {
        here.split("::").collect()
    };
    match segs[0] {
        "crate" => {
            base.clear();
            segs.remove(0);
        }
        "super" | "self" => {
            while let Some(s) = segs.first().copied() {
                match s {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segs.remove(0);
            }
        }
        _ => return None,
    }
    let full: Vec<&str> = base.into_iter().chain(segs).collect();
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

/// Each module's imports (module paths), from its code.
fn graph(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g = BTreeMap::new();
    for (m, f) in mods {
        let text = code(&std::fs::read_to_string(f).unwrap());
        let mut deps = BTreeSet::new();
        let mut add = |p: String| {
            if let Some(t) = resolve(&p, m, mods)
                && t != *m
                && !t.is_empty()
            {
                deps.insert(t);
            }
        };
        let b = text.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut i = 0;
        while i < b.len() {
            let starts = ["crate::", "super::", "self::"]
                .into_iter()
                .find(|k| b[i..].starts_with(k.as_bytes()) && (i == 0 || !word(b[i - 1])));
            let Some(_) = starts else {
                i += 1;
                continue;
            };
            let mut j = i;
            while j < b.len() && (word(b[j]) || b[j] == b':') {
                j += 1;
            }
            let path = text[i..j].trim_end_matches(':').to_string();
            if b.get(j) == Some(&b'{') {
                // A group: `crate::a::{b, c::d}`, one level.
                let close = text[j..].find('}').map(|c| j + c).unwrap_or(j);
                for item in text[j + 1..close].split(',') {
                    let item = item.split(" as ").next().unwrap().trim();
                    if !item.is_empty() && item != "self" {
                        add(format!("{path}::{item}"));
                    }
                }
                add(path);
                i = close;
            } else {
                add(path);
                i = j;
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The stages as `lib.rs` declares them, in order.
fn stages() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))?;
            Some(l.trim_end_matches(';').to_string())
        })
        .collect()
}

fn stage_of(m: &str) -> &str {
    m.split("::").next().unwrap_or("")
}

/// A circle of the graph, as the path that closes it, if there is one.
fn find_circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search; an edge back into the current path closes a circle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == d).unwrap();
                    let mut c = path[at..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(d, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(m, g, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn layout_module_graph_has_no_circle() {
    let mods = modules(&src());
    let g = graph(&mods);
    assert!(g.len() > 40, "read {} modules", g.len());
    if let Some(c) = find_circle(&g) {
        panic!("circle in src/: {}", c.join(" -> "));
    }
}

#[test]
fn layout_stages_import_only_the_stages_before_them() {
    let order = stages();
    for must in [
        "base", "cli", "config", "identity", "spool", "deliver", "exit", "commands", "app",
    ] {
        assert!(
            order.iter().any(|s| s == must),
            "lib.rs lists no stage {must}: {order:?}"
        );
    }
    let rank = |s: &str| order.iter().position(|o| o == s);
    let mods = modules(&src());
    let mut bad = Vec::new();
    for (m, deps) in graph(&mods) {
        let Some(from) = rank(stage_of(&m)) else {
            continue; // lib.rs itself
        };
        for d in deps {
            let to = rank(stage_of(&d)).unwrap_or_else(|| panic!("{d} is no stage"));
            if to > from {
                bad.push(format!("{m} -> {d}"));
            }
            if d == "app" {
                bad.push(format!("{m} -> app (nothing imports the entry point)"));
            }
        }
    }
    assert!(bad.is_empty(), "imports against the flow: {bad:#?}");
}

#[test]
fn layout_mod_rs_files_are_maps() {
    let mods = modules(&src());
    for f in mods.values().filter(|f| f.ends_with("mod.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.starts_with("//! "),
            "{}: a folder's mod.rs opens with what the stage does",
            f.display()
        );
        for line in text.lines() {
            let t = line.trim();
            let ok = t.is_empty()
                || t.starts_with("//")
                || t.starts_with("pub mod ")
                || t.starts_with("pub(crate) mod ");
            assert!(ok, "{}: only docs and mod lines, found {t:?}", f.display());
        }
    }
}

#[test]
fn layout_the_checker_sees_a_circle() {
    // The reader itself must be able to fail: a made-up pair that imports
    // each other is a circle, and a super:: path resolves to the parent.
    let mut mods = BTreeMap::new();
    mods.insert("a".to_string(), PathBuf::new());
    mods.insert("a::b".to_string(), PathBuf::new());
    assert_eq!(resolve("super::X", "a::b", &mods).as_deref(), Some("a"));
    assert_eq!(
        resolve("crate::a::b::Y", "a", &mods).as_deref(),
        Some("a::b")
    );
    assert_eq!(resolve("self::b::Z", "a", &mods).as_deref(), Some("a::b"));
    assert_eq!(
        code("use x;\n// crate::y\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\nfn f() {}\n"),
        "use x;\n\nfn f() {}\n"
    );
    let edge = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    let dag = BTreeMap::from([edge("x", "y"), edge("y", "z")]);
    assert_eq!(find_circle(&dag), None);
    let circle = BTreeMap::from([edge("x", "y"), edge("y", "z"), edge("z", "x")]);
    assert_eq!(
        find_circle(&circle).map(|c| c.join(" -> ")).as_deref(),
        Some("x -> y -> z -> x")
    );
}
