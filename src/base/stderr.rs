//! Writing to stderr without ever failing. A caller may close the pipe or
//! point it at a full device (PHP and cron throw stderr away; a hostile user
//! closes it mid-transaction to make `eprintln!` panic before the audit
//! record is written): each line here is written once, and an error
//! (`EPIPE`, `ENOSPC`, `EFBIG`) is ignored. Every message of the send path,
//! the `-v` transcript and the panic handler go through [`line`].

use std::io::Write;

/// Write `text` and a newline to stderr; errors are ignored.
pub fn line(text: &str) {
    let mut b = Vec::with_capacity(text.len() + 1);
    b.extend_from_slice(text.as_bytes());
    b.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&b);
}

/// Ignore `SIGXFSZ`: a write past the caller's `ulimit -f` then fails with
/// `EFBIG` (and is handled) instead of killing the process between the
/// transaction and its record. Called first thing at start-up.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
