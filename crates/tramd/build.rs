//! Links the unwinder statically, so that tramd needs nothing but the C library at run time.
//!
//! On `*-linux-gnu`, Rust's standard library links `libgcc_s.so.1` for `_Unwind_*` (used by
//! panics and backtraces). A bus that starts early in boot should depend on as little as
//! possible, so this script puts a linker script named `libgcc_s.so` first on the library
//! search path: it sends the linker to `libgcc_eh.a`, the static unwinder every GCC installation
//! ships beside `libgcc_s`. `ldd tramd` then lists only libc (with the vDSO and the dynamic
//! loader). Unwinding works as before: tramd loads no other shared object that would need the
//! shared unwinder.
//!
//! Set `TRAMD_SHARED_LIBGCC=1` to keep the default (shared) linking.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TRAMD_SHARED_LIBGCC");
    let gnu_linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !gnu_linux || env::var_os("TRAMD_SHARED_LIBGCC").is_some_and(|v| v != "0") {
        return;
    }
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out_dir.join("static-libgcc");
    let script = dir.join("libgcc_s.so");
    if let Err(e) = fs::create_dir_all(&dir).and_then(|()| fs::write(&script, "INPUT(-lgcc_eh)\n"))
    {
        println!(
            "cargo:warning=linking libgcc_s dynamically: {}: {e}",
            script.display()
        );
        return;
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}
