//! Reading the daily JSON-lines files (the audit trail, the per-recipient
//! log) fast: large blocks, a SIMD byte search for what every wanted line
//! must contain, and only those lines handed on. `--who`, `--log` and
//! `--stats` read through it.

use std::io::Read;
use std::path::Path;

/// Read `path` in large blocks and call `hit` with each whole line (without
/// its newline) that contains the finder's needle. Lines without it are
/// never looked at again, let alone parsed.
pub fn scan_file(
    path: &Path,
    finder: &memchr::memmem::Finder,
    mut hit: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    const BLOCK: usize = 4 << 20;
    let mut f = std::fs::File::open(path)?;
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK * 2);
    loop {
        let start = buf.len();
        buf.resize(start + BLOCK, 0);
        let n = loop {
            match f.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        buf.truncate(start + n);
        let eof = n == 0;
        // Search only up to the last complete line; keep the rest for later.
        let end = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(p) => p + 1,
                None => continue,
            }
        };
        let mut pos = 0;
        while let Some(i) = finder.find(&buf[pos..end]) {
            let at = pos + i;
            let ls = memchr::memrchr(b'\n', &buf[..at]).map_or(0, |p| p + 1);
            let le = memchr::memchr(b'\n', &buf[at..end]).map_or(end, |p| at + p);
            hit(&buf[ls..le]);
            pos = (le + 1).min(end);
            if pos >= end {
                break;
            }
        }
        if eof {
            return Ok(());
        }
        buf.drain(..end);
    }
}
