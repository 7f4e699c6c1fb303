//! Fuzz target: `message::take`, the whole intake of a message from stdin
//! into a spool draft (line splitting, dot handling, header parsing and
//! rewriting, limits), over any bytes. The first byte picks the options
//! (-i, -t, from_policy, -F). The spool is a private directory under /tmp;
//! each draft is dropped (removed) after the run. Nothing may panic, and what
//! is written must have canonical CRLF line ends.
#![no_main]

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vsendmail::config::conf::FromPolicy;
use vsendmail::identity::profile::Identity;
use vsendmail::intake::message::{IntakeOptions, Limits, take};
use vsendmail::spool::store::Spool;

fn spool() -> &'static Spool {
    static S: OnceLock<Spool> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vsendmail-fuzz-{}", std::process::id()));
        Spool::open(&dir).expect("fuzz spool")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, input)) = data.split_first() else {
        return;
    };
    let identity = Identity::resolve(None, "fuzz", 1000, "host.example");
    let o = IntakeOptions {
        ignore_dots: opts & 1 != 0,
        require_dot: false,
        read_recipients: opts & 2 != 0,
        identity: &identity,
        full_name: (opts & 4 != 0).then_some("Fuzz \"Name\" é"),
        hostname: "host.example",
        auth_warning: (opts & 8 != 0).then_some("fuzz set sender to x@y using -f"),
        from_policy: match (opts >> 4) % 3 {
            0 => FromPolicy::Keep,
            1 => FromPolicy::Rewrite,
            _ => FromPolicy::Reject,
        },
        trusted: opts & 64 != 0,
        keep_php_header: opts & 128 != 0,
        identity_header: (opts & 64 != 0).then_some("X-AuthUser"),
        limits: Limits {
            max_message_size: 256 * 1024,
            max_header_size: 16 * 1024,
            max_line_length: 998,
        },
        now: 1_800_000_000,
    };
    let mut draft = spool().draft().expect("draft");
    // A small buffer so that line ends fall across buffer refills.
    let mut r = BufReader::with_capacity(7, input);
    if let Ok(t) = take(&mut r, &mut draft, &o) {
        let f = draft.file();
        f.seek(SeekFrom::Start(0)).expect("seek");
        let mut written = Vec::new();
        f.read_to_end(&mut written).expect("read back");
        assert_eq!(written.len() as u64, t.size);
        for (i, &b) in written.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(written.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
                b'\n' => assert!(i > 0 && written[i - 1] == b'\r', "bare LF at {i}"),
                _ => {}
            }
        }
        for a in &t.header_recipients {
            let _ = vsendmail::base::address::validate(a, "recipient");
        }
    }
    drop(draft);
});
