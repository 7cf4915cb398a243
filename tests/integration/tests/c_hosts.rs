//! Third-party hosts of the C API (issue #6): the C host in `tests/c-host/host.c`, compiled
//! with the system C compiler against `include/mantle_provider.h`, against the local server.
//! (The Python `ctypes` host is `hosts/python`, run by `python_host.rs`.) In CI (`MANTLE_REQUIRE_VALGRIND=1`) the C host
//! also runs under valgrind and must report no errors and no definite or indirect leaks.

mod common;

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use common::*;
use mantle_mock_server::{testkit::isolate_aws_command, MockMantle};

fn c_host_dir() -> PathBuf {
    workspace_root().join("tests/c-host")
}

/// Compiles the C host with `$CC` (default `cc`), warnings as errors.
fn compile_c_host() -> PathBuf {
    let out = tempdir().join("mantle-c-host");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(workspace_root().join("include"))
        .arg(c_host_dir().join("host.c"))
        .arg("-o")
        .arg(&out)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "the C host failed to compile");
    out
}

fn run(command: &mut Command) -> Output {
    isolate_aws_command(command).output().expect("run host")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines every host prints when all its checks pass.
fn assert_host_passed(out: &Output, language: &str) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "{language} host failed:\n{stdout}\n{stderr}"
    );
    for route in ["openai-completions", "anthropic-messages"] {
        assert!(
            stdout.contains(&format!(
                "{route}: echo: hello from {language} over {route}"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("batch: echo: hello from C in batches"),
        "{stdout}"
    );
    assert!(
        stdout.contains("without json: echo: hello from C without JSON"),
        "{stdout}"
    );
    assert!(stdout.contains("error paths: ok"), "{stdout}");
    assert!(stdout.trim_end().ends_with("all checks passed"), "{stdout}");
}

fn args(server: &MockMantle) -> [String; 3] {
    [
        plugin_path().display().to_string(),
        server.base_url(),
        "c-host-key".into(),
    ]
}

#[test]
fn c_host_lists_models_and_streams_both_routes() {
    let host = compile_c_host();
    let server = MockMantle::start(Some("c-host-key")).unwrap();
    let out = run(Command::new(&host).args(args(&server)));
    assert_host_passed(&out, "C");
    // Bearer auth on both routes, and a catalog request, seen by the server.
    assert_eq!(server.requests_to("/v1/models").len(), 1);
    assert!(!server.requests_to("/anthropic/v1/messages").is_empty());
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn c_host_is_clean_under_valgrind() {
    if !valgrind_available() {
        assert!(
            std::env::var_os("MANTLE_REQUIRE_VALGRIND").is_none(),
            "MANTLE_REQUIRE_VALGRIND is set but valgrind is not installed"
        );
        eprintln!("valgrind not installed: skipping the valgrind run (CI requires it)");
        return;
    }
    let host = compile_c_host();
    let server = MockMantle::start(Some("c-host-key")).unwrap();
    let out = run(Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            // Static hash tables (hashbrown keeps interior pointers) show as "possibly lost"
            // and long-lived statics as "still reachable"; neither is a leak.
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
        ])
        .arg(&host)
        .args(args(&server)));
    let report = text(&out.stderr);
    assert_host_passed(&out, "C");
    assert!(
        report.contains("ERROR SUMMARY: 0 errors"),
        "valgrind reported errors:\n{report}"
    );
    assert!(
        report.contains("definitely lost: 0 bytes")
            || report.contains("All heap blocks were freed"),
        "{report}"
    );
    assert!(
        report.contains("indirectly lost: 0 bytes")
            || report.contains("All heap blocks were freed"),
        "{report}"
    );
}
