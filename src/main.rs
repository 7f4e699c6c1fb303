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

// The only two functions of libm.so the binary imports (hickory's server
// statistics call `exp`, tokio's scheduler statistics `pow`; neither runs
// in a plain send). Defined here from the `libm` crate (the Rust port of
// musl's), the dynamic linker never maps libm.so: about 300 KB less RSS and
// one library fewer to relocate per run. Not written by hand.
#[unsafe(no_mangle)]
pub extern "C" fn exp(x: f64) -> f64 {
    libm::exp(x)
}

#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_and_pow_are_libm_s() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert!((super::exp(1.0) - std::f64::consts::E).abs() < 1e-15);
    }
}
