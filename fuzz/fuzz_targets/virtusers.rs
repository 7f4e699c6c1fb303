//! Fuzz target: the /etc/virtusers parser, line by line (`parse_line`) and as
//! a table (`Table::from_text`, `check_all`, `lookup` of a user, a group
//! member and a stranger). Nothing may panic; errors carry file:line.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vsendmail::config::virtusers::{self, Table};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/virtusers");
    for (i, line) in text.lines().enumerate() {
        if let Err(e) = virtusers::parse_line(line, path, i + 1) {
            assert!(e.to_string().contains("/etc/virtusers:"), "{e}");
        }
    }
    let table = Table::from_text(path, &text);
    let _ = table.check_all();
    let _ = table.lookup("alice", &["alice".to_string(), "hosting".to_string()]);
    let _ = table.lookup("nobody-listed", &[]);
    if let Some(login) = text.split_whitespace().next() {
        let _ = table.lookup(login, &[login.trim_start_matches('%').to_string()]);
    }
});
