//! Small files of the administrator that a delivery reads (the relay
//! secrets, BATV keys) but that only the vsendmail group may open: the
//! set-gid process reads them *before* it gives up the group
//! (`deliver::privsep`), keeping in memory only what this delivery needs
//! ([`keep`], e.g. the secrets lines of its own relay); the delivery process
//! without the group is then served from memory ([`read`]). A file not kept
//! is read from disk as usual (root's runs, `-bi`, `--doctor`).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A small file's text and mode bits.
#[derive(Clone)]
pub struct Content {
    pub mode: u32,
    pub text: String,
}

/// Why a kept file could not be read (kind, errno, text), to rebuild the error.
type Failure = (std::io::ErrorKind, Option<i32>, String);

static HELD: Mutex<Vec<(PathBuf, Result<Content, Failure>)>> = Mutex::new(Vec::new());

/// The text and mode of `path` (at most `limit` bytes): as kept, or from disk.
pub fn read(path: &Path, limit: u64) -> std::io::Result<Content> {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = held.iter().find(|(p, _)| p == path) {
        return r.clone().map_err(|(kind, errno, text)| match errno {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::new(kind, text),
        });
    }
    drop(held);
    from_disk(path, limit)
}

/// Read `path` now and keep `only(text)` of it in memory for [`read`]
/// (a failure is kept too, so that the later read reports it).
pub fn keep(path: &Path, limit: u64, only: impl Fn(&str) -> String) {
    let r = from_disk(path, limit)
        .map(|c| Content {
            mode: c.mode,
            text: only(&c.text),
        })
        .map_err(|e| (e.kind(), e.raw_os_error(), e.to_string()));
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.retain(|(p, _)| p != path);
    held.push((path.to_path_buf(), r));
}

fn from_disk(path: &Path, limit: u64) -> std::io::Result<Content> {
    let f = std::fs::File::open(path)?;
    let mode = f.metadata()?.mode();
    let mut text = String::new();
    f.take(limit).read_to_string(&mut text)?;
    Ok(Content { mode, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_text_outlives_the_file_and_failures_are_kept_too() {
        let dir = std::env::temp_dir().join(format!(
            "vs-held-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("keys");
        std::fs::write(&p, "a\nb\n").unwrap();
        keep(&p, 1024, |t| t.lines().filter(|l| *l == "b").collect());
        std::fs::remove_file(&p).unwrap();
        assert_eq!(read(&p, 1024).unwrap().text, "b");
        let absent = dir.join("absent");
        keep(&absent, 1024, str::to_string);
        std::fs::write(&absent, "x").unwrap();
        assert_eq!(
            read(&absent, 1024).err().unwrap().kind(),
            std::io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
