//! Fuzz target: the /etc/vsendmail.conf parser (`config::parse`: TOML, then
//! every key's own checks: durations, relay URLs, nameservers, policies).
//! Nothing may panic; a refusal is a ConfigError naming the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = vsendmail::config::conf::parse(&text, Path::new("/etc/vsendmail.conf")) {
        assert!(e.to_string().contains("/etc/vsendmail.conf"), "{e}");
    }
});
