//! The official SDKs, pinned in tests/sdk, send to a real `warren serve`.

use std::path::PathBuf;
use std::process::Command;

use warren_testkit::{require, TestServer, TOKEN};

use crate::expect::{assert_log_matches, parse_lines};
use crate::{repo_root, BIN};

pub(crate) fn python() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import posthog, deltalake, duckdb"])
        .output()
        .is_ok_and(|out| out.status.success());
    ready.then_some(python)
}

fn node_ready() -> bool {
    let has_node = Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success());
    let modules = repo_root().join("tests/sdk/node_modules");
    has_node && ["posthog-node", "lz-string", "fflate"].iter().all(|name| modules.join(name).exists())
}

/// Runs a sender script against a fresh server and checks the log.
fn run_sender(program: PathBuf, script: &str) {
    let mut server = TestServer::start(BIN);
    let output = Command::new(program)
        .arg(repo_root().join("tests/sdk").join(script))
        .args([&server.url, TOKEN])
        .current_dir(repo_root().join("tests/sdk"))
        .output()
        .expect("running the sender");
    assert!(output.status.success(), "{script} failed: {}", String::from_utf8_lossy(&output.stderr));
    let expected = parse_lines(&output.stdout);
    assert!(expected.len() > 5, "{script} reported what it sent");
    server.stop();
    assert_log_matches(&expected, &server.read_log());
}

#[test]
fn posthog_python_events_land_in_the_log_exactly() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    run_sender(python, "python_sdk.py");
}

#[test]
fn posthog_node_events_land_in_the_log_exactly() {
    if !require(node_ready(), "node with posthog-node in tests/sdk/node_modules") {
        return;
    }
    run_sender(PathBuf::from("node"), "node_sdk.mjs");
}

#[test]
fn posthog_js_encodings_land_in_the_log_exactly() {
    if !require(node_ready(), "node with lz-string and fflate in tests/sdk/node_modules") {
        return;
    }
    run_sender(PathBuf::from("node"), "js_encoders.mjs");
}
