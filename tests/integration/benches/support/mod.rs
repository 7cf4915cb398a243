//! Shared by the benches: release builds of the plugin.

use std::{path::PathBuf, process::Command};

/// Builds the plugin in the release profile (with `MANTLE_BUILD_TAG=tag` when given), copies
/// it to `target/tagged-plugins-release/<tag or "untagged">/` and returns the copy.
pub fn release_plugin(tag: Option<&str>) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    match tag {
        Some(tag) => command.env("MANTLE_BUILD_TAG", tag),
        None => command.env_remove("MANTLE_BUILD_TAG"),
    };
    let status = command
        .args(["build", "--quiet", "--release", "-p", "mantle-provider"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build --release -p mantle-provider");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let name = format!(
        "{}mantle_provider{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let dir = target
        .join("tagged-plugins-release")
        .join(tag.unwrap_or("untagged"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(target.join("release").join(&name), dir.join(&name)).unwrap();
    dir.join(name)
}
