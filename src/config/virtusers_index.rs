//! `<virtusers>.idx`: an optional index of the identity table, written by
//! `-bi` (newaliases), so that a run finds its line with a binary search
//! instead of scanning the file (100,000 lines: a few page reads, not 8 MB).
//!
//! Format, little-endian, version in the magic:
//! ```text
//! "VSIDX001"                          magic
//! u64 size, i64 mtime_sec, i64 mtime_nsec, u64 inode, u64 dev   of the table it indexes
//! u64 n_users, u64 n_groups, u64 star_offset, u64 star_line     (u64::MAX: no `*` line)
//! n_groups x (u64 offset, u64 line)                             `%group` lines in file order
//! n_users  x (u64 fnv1a(login), u64 offset, u64 line)           first line of each login, sorted by hash
//! ```
//! An index whose recorded size, mtime, inode or device differ from the
//! table's is ignored (the table is scanned), so a stale index is slow, never
//! wrong.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"VSIDX001";
const HEADER: usize = 8 + 5 * 8 + 4 * 8;
const NONE: u64 = u64::MAX;

/// Where the index of `table` lives.
pub fn path_for(table: &Path) -> PathBuf {
    let mut p = table.as_os_str().to_owned();
    p.push(".idx");
    PathBuf::from(p)
}

pub fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn stamp(meta: &std::fs::Metadata) -> [u64; 5] {
    [
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ino(),
        meta.dev(),
    ]
}

/// Build the index for `data` (the table's bytes, as read under `meta`).
pub fn build(data: &[u8], meta: &std::fs::Metadata) -> Vec<u8> {
    let mut users: Vec<(u64, u64, u64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut groups: Vec<(u64, u64)> = Vec::new();
    let mut star = (NONE, NONE);
    let mut offset = 0usize;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let start = offset;
        offset += line.len() + 1;
        let word = first_field(line);
        if word.is_empty() {
            continue;
        }
        let lineno = (i + 1) as u64;
        match word[0] {
            b'%' => groups.push((start as u64, lineno)),
            b'*' if word == b"*" => {
                if star.0 == NONE {
                    star = (start as u64, lineno);
                }
            }
            _ => {
                if seen.insert(word.to_vec()) {
                    users.push((fnv1a(word), start as u64, lineno));
                }
            }
        }
    }
    users.sort();
    let mut out = Vec::with_capacity(HEADER + groups.len() * 16 + users.len() * 24);
    out.extend_from_slice(MAGIC);
    for v in stamp(meta) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [users.len() as u64, groups.len() as u64, star.0, star.1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (o, l) in &groups {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
    }
    for (h, o, l) in &users {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
    }
    out
}

/// Write the index next to the table (temporary file, then rename).
pub fn write(table: &Path, data: &[u8], meta: &std::fs::Metadata) -> std::io::Result<PathBuf> {
    let dest = path_for(table);
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    let res = f
        .write_all(&build(data, meta))
        .and_then(|_| f.sync_data())
        .and_then(|_| std::fs::rename(&tmp, &dest));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|_| dest)
}

/// An index that matches its table.
pub struct Index {
    map: memmap2::Mmap,
    n_users: usize,
    n_groups: usize,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Index {
    /// Open the index of `table` if it exists and matches `meta`.
    pub fn open(table: &Path, meta: &std::fs::Metadata) -> Option<Index> {
        let f = std::fs::File::open(path_for(table)).ok()?;
        // SAFETY: read-only private map of a file only root writes (by rename).
        let map = unsafe { memmap2::Mmap::map(&f) }.ok()?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return None;
        }
        let st = stamp(meta);
        if (0..5).any(|i| u64_at(&map, 8 + i * 8) != st[i]) {
            return None;
        }
        let n_users = u64_at(&map, 48) as usize;
        let n_groups = u64_at(&map, 56) as usize;
        let need = HEADER
            .checked_add(n_groups.checked_mul(16)?)?
            .checked_add(n_users.checked_mul(24)?)?;
        if map.len() != need {
            return None;
        }
        Some(Index {
            map,
            n_users,
            n_groups,
        })
    }

    /// (offset, line) of the first line whose login hashes like `login`
    /// (callers check the line's first field: hashes can collide).
    pub fn users(&self, login: &[u8]) -> Vec<(usize, usize)> {
        let h = fnv1a(login);
        let base = HEADER + self.n_groups * 16;
        let rec = |i: usize| {
            let at = base + i * 24;
            (
                u64_at(&self.map, at),
                u64_at(&self.map, at + 8),
                u64_at(&self.map, at + 16),
            )
        };
        let (mut lo, mut hi) = (0usize, self.n_users);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if rec(mid).0 < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        while lo < self.n_users && rec(lo).0 == h {
            let (_, o, l) = rec(lo);
            out.push((o as usize, l as usize));
            lo += 1;
        }
        out
    }

    /// (offset, line) of every `%group` line, in file order.
    pub fn groups(&self) -> Vec<(usize, usize)> {
        (0..self.n_groups)
            .map(|i| {
                let at = HEADER + i * 16;
                (
                    u64_at(&self.map, at) as usize,
                    u64_at(&self.map, at + 8) as usize,
                )
            })
            .collect()
    }

    /// (offset, line) of the first `*` line.
    pub fn star(&self) -> Option<(usize, usize)> {
        let o = u64_at(&self.map, 64);
        (o != NONE).then(|| (o as usize, u64_at(&self.map, 72) as usize))
    }
}

/// A line's first field (login, `%group` or `*`): up to white space or `#`.
pub fn first_field(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'#')
        .unwrap_or(line.len());
    &line[..end]
}
