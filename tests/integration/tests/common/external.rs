//! Hosts in other languages (Python, Node.js): their pinned packages are installed under
//! `target/` by the test itself. Where an install cannot run (no interpreter, no registry), the
//! test is skipped locally and fails in CI, where `MANTLE_REQUIRE_HOST_TESTS=1` is set (as the
//! valgrind run works).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::workspace_root;

/// The target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Reports a host test that cannot run here: a skip locally, a failure in CI.
pub fn cannot_run(what: &str, why: &str) {
    assert!(
        std::env::var_os("MANTLE_REQUIRE_HOST_TESTS").is_none(),
        "MANTLE_REQUIRE_HOST_TESTS is set but {what} cannot run: {why}"
    );
    eprintln!("skipping {what}: {why} (CI requires it)");
}

/// Runs a command to completion; `Err` with its output when it fails.
pub fn run_quiet(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A stamp of a lock file: its content (an install is redone when the lock changes).
fn stamp_of(lock: &Path) -> String {
    std::fs::read_to_string(lock).unwrap_or_default()
}

/// True when `dir` was installed from this `lock` content.
fn installed_from(dir: &Path, lock: &Path) -> bool {
    std::fs::read_to_string(dir.join(".mantle-installed")).ok() == Some(stamp_of(lock))
}

fn mark_installed(dir: &Path, lock: &Path) {
    let _ = std::fs::write(dir.join(".mantle-installed"), stamp_of(lock));
}

/// The Python interpreter of `target/python-venv`, with `hosts/python/requirements.txt`
/// installed (pinned, the whole closure).
pub fn python_venv() -> Result<PathBuf, String> {
    let venv = target_dir().join("python-venv");
    let lock = workspace_root().join("hosts/python/requirements.txt");
    let python = venv.join("bin/python");
    if python.is_file() && installed_from(&venv, &lock) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run_quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_quiet(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(&lock),
    )?;
    mark_installed(&venv, &lock);
    Ok(python)
}

/// `hosts/node/node_modules` installed with `npm ci` from its lock file; returns the `node`
/// executable.
pub fn node_modules() -> Result<PathBuf, String> {
    let dir = workspace_root().join("hosts/node");
    let lock = dir.join("package-lock.json");
    run_quiet(Command::new("node").arg("--version"))?;
    if !installed_from(&dir.join("node_modules"), &lock) {
        run_quiet(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
        )?;
        mark_installed(&dir.join("node_modules"), &lock);
    }
    Ok(PathBuf::from("node"))
}
