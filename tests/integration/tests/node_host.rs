//! The Node.js host (issue #14, point 1): `hosts/node`, koffi over the C header, run with
//! node's built-in test runner against the local server, and its `.d.ts` type-checked with
//! TypeScript against the README's example. Packages come from `hosts/node/package-lock.json`
//! (`npm ci`).

mod common;

use std::process::Command;

use common::{external, *};
use mantle_mock_server::testkit::isolate_aws_command;

fn node_dir() -> std::path::PathBuf {
    workspace_root().join("hosts/node")
}

fn assert_ran(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn node_host_passes_its_tests_and_type_checks() {
    let node = match external::node_modules() {
        Ok(node) => node,
        Err(why) => return external::cannot_run("the Node.js host tests", &why),
    };
    let plugin = plugin_path();
    let mock = build_bin("mantle-mock-server", "mantle-mock-server");
    let out = isolate_aws_command(
        Command::new(&node)
            .args(["--test", "test/"])
            .current_dir(node_dir())
            .env("MANTLE_PLUGIN", &plugin)
            .env("MANTLE_MOCK_SERVER", &mock),
    )
    .output()
    .expect("run node --test");
    let stdout = assert_ran(&out, "node --test");
    let count = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {label} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no `# {label}` line in:\n{stdout}"))
    };
    assert!(count("tests") > 0, "{stdout}");
    assert_eq!(count("pass"), count("tests"), "{stdout}");
    assert_eq!(count("fail"), 0, "{stdout}");
    assert_eq!(count("skipped"), 0, "{stdout}");
    assert_eq!(count("cancelled"), 0, "{stdout}");

    let tsc = node_dir().join("node_modules/.bin/tsc");
    let out = Command::new(node)
        .arg(tsc)
        .args(["-p", "."])
        .current_dir(node_dir())
        .output()
        .expect("run tsc");
    assert_ran(&out, "tsc -p hosts/node (index.d.ts + example.ts)");
}
