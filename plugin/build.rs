//! Link flags for the cdylib.
//!
//! `-z nodelete` marks the library as never unloadable: `dlclose` becomes a no-op. The plugin
//! runs a tokio runtime and keeps thread-local destructors; unmapping its code while a thread
//! could still run one of them would crash the host. Hosts may call `dlclose` freely.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "freebsd" || target_os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MANTLE_BUILD_TAG");
}
