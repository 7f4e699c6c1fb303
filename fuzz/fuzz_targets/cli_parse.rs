//! Fuzz target: the sendmail argv grammar (`cli::parse`) and the envelope
//! address check (`address::validate`), over any argv. The input is split at
//! NUL bytes into arguments (invalid UTF-8 replaced, as `main` does); its
//! first byte picks the program name. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsendmail::cli::invocation::ProgName;
use vsendmail::cli::parse as cli;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let prog = match first % 3 {
        0 => ProgName::Sendmail,
        1 => ProgName::Mailq,
        _ => ProgName::Newaliases,
    };
    let args: Vec<String> = rest
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if let Ok(inv) = cli::parse(prog, &args) {
        // What the parser accepted as addresses must pass the check again.
        for r in &inv.recipients {
            assert!(!r.starts_with('-'), "recipient {r:?} looks like an option");
            vsendmail::base::address::validate(r, "recipient").expect("accepted recipient revalidates");
        }
        if let Some(s) = &inv.sender {
            assert!(!s.starts_with('-'), "sender {s:?} looks like an option");
        }
    }
    for a in &args {
        if let Ok(v) = vsendmail::base::address::validate(a, "recipient") {
            assert!(
                !v.starts_with('-') && !v.chars().any(|c| c.is_control()),
                "{v:?}"
            );
            let _ = vsendmail::base::address::domain(&v);
            let _ = vsendmail::base::address::qualify(&v, "fuzz.example");
        }
        let _ = cli::prog_name(a);
    }
});
