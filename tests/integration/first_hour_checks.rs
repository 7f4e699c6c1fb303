//! Issue 14: what a mail administrator trips over in the first hour, and the
//! checks (`-bi`, `-bv`, `--doctor`, `-bp`) that said ok when it was not.

use crate::support::vs::Env;

/// Every path under `dir`, sorted: what a command left behind.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            out.extend(tree(&e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_commands_never_create_the_spool() {
    let env = Env::new();
    let spool = env.dir().join("nospool");
    env.conf(&format!("spool = \"{}\"", spool.display()));
    env.virtusers("root root@shop.test -\n");
    let o = env.run(&["-bp"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, "Mail queue is empty\n", "{o}");
    for args in [
        &["-bp"][..],
        &["-bi"],
        &["-bv", "bob@example.org"],
        &["--who", "192.0.2.10"],
        &["--doctor"],
    ] {
        let o = env.run(args, b"");
        assert!(
            !spool.exists(),
            "{args:?} created {}:\n{o}",
            spool.display()
        );
    }
    // A spool root without queue/ (as make install leaves it before the
    // first run) is listed as empty too, and stays as it was.
    let spool = env.spool();
    let before = tree(&spool);
    env.conf(&format!("spool = \"{}\"", spool.display()));
    let o = env.run(&["-bp"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, "Mail queue is empty\n", "{o}");
    assert_eq!(tree(&spool), before, "-bp changed the spool");
}
