//! `vsendmail`: see `vsendmail(8)`. All the work is in the library; this only
//! hands argv over and exits with the code it gets back.

fn main() {
    // SIGXFSZ is ignored in app::main. The default panic hook ignores write
    // errors, and so does the line below: a closed stderr never turns a
    // panic into a second one.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match std::panic::catch_unwind(|| vsendmail::app::main(argv)) {
        Ok(c) => c,
        Err(_) => {
            vsendmail::base::stderr::line(
                "vsendmail: internal error (a bug); nothing was sent that was not reported; please report it",
            );
            vsendmail::exit::SOFTWARE
        }
    };
    std::process::exit(code);
}
