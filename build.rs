//! Link-time layout only: on x86_64 Linux (where rustc links with lld), the
//! functions a plain send runs are placed together at the start of `.text`
//! in the order of `bench/hot-functions.txt`, so that one send faults in a
//! few contiguous pages of code instead of most of the binary (issue 14
//! point 15: peak RSS). Names missing from the build (the list is older than
//! the code) are ignored; regenerate it with `scripts/hot-functions.sh`.

fn main() {
    let list = std::path::Path::new("bench/hot-functions.txt");
    println!("cargo:rerun-if-changed=bench/hot-functions.txt");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && list.exists() {
        let abs = std::fs::canonicalize(list).expect("bench/hot-functions.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            abs.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
