//! The Python host and the official SDKs as judges (issue #14): runs `hosts/python/tests` with
//! pytest in `target/python-venv` (pinned packages from `hosts/python/requirements.txt`):
//! the pure-ctypes module against the local server, the `openai` and `anthropic` SDKs against
//! `mantle serve --listen` and against the local server's own streams, and a hot-swap and
//! rollback under 32 streaming SDK clients.

mod common;

use std::process::Command;

use common::{external, *};
use mantle_mock_server::testkit::isolate_aws_command;

#[test]
fn python_host_and_sdk_judges_pass_under_pytest() {
    let python = match external::python_venv() {
        Ok(p) => p,
        Err(why) => return external::cannot_run("the Python host tests", &why),
    };
    let plugin = plugin_path();
    let v1 = build_tagged_plugin("v1");
    let v2 = build_tagged_plugin("v2");
    let mantle = build_bin("mantle-host-shim", "mantle");
    let mock = build_bin("mantle-mock-server", "mantle-mock-server");
    let out = isolate_aws_command(
        Command::new(python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"])
            .arg(workspace_root().join("hosts/python/tests"))
            .env("MANTLE_PLUGIN", &plugin)
            .env("MANTLE_PLUGIN_V1", &v1)
            .env("MANTLE_PLUGIN_V2", &v2)
            .env("MANTLE_BIN", &mantle)
            .env("MANTLE_MOCK_SERVER", &mock),
    )
    .output()
    .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    // Every test ran: none skipped, none deselected.
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped") && !summary.contains("failed"),
        "{stdout}"
    );
}
