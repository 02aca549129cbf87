//! Generates bindings to the system DPDK and compiles the inline-function shim.
//!
//! DPDK is found with pkg-config (`libdpdk`, 22.11 or newer). When it or
//! libclang is missing the build stops with the Debian packages to install.
use std::env;
use std::path::PathBuf;

const INSTALL_HINT: &str =
    "install them with: apt-get install -y dpdk dpdk-dev libdpdk-dev libclang-dev pkg-config";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!(
                "\nerror: farmlb needs the DPDK development files (libdpdk >= 22.11, found with pkg-config).\n  \
                 pkg-config said: {e}\n  {INSTALL_HINT}\n"
            );
            std::process::exit(1);
        }
    };

    // pkg-config's cflags carry `-include rte_config.h` and `-march=...`;
    // hand them all to both cc and clang.
    let cflags: Vec<String> = pkg_config::get_variable("libdpdk", "cflags")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_else(|| {
            let out = std::process::Command::new("pkg-config")
                .args(["--cflags", "libdpdk"])
                .output()
                .expect("pkg-config runs");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        });

    let mut build = cc::Build::new();
    build.file("shim.c").opt_level(3).warnings(false);
    for path in &dpdk.include_paths {
        build.include(path);
    }
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("farmlb_dpdk_shim");

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("rte_.*")
        .allowlist_function("farmlb_.*")
        .allowlist_type("rte_.*")
        .allowlist_type("farmlb_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("FARMLB_.*")
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .opaque_type("rte_ring")
        .opaque_type("rte_.*_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in &dpdk.include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    for flag in &cflags {
        builder = builder.clang_arg(flag.clone());
    }
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    let bindings = match generated {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("\nerror: bindgen could not read the DPDK headers: {e}\n  {INSTALL_HINT}\n");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!(
                "\nerror: bindgen could not load libclang.\n  {INSTALL_HINT}\n  \
                 (or point LIBCLANG_PATH at a libclang.so)\n"
            );
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
