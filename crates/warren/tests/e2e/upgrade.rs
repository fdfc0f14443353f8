//! `warren upgrade check` on a deployment made by this build, then changed
//! as an older or newer build would have left it: a migration still to
//! run, a removed configuration key, a migration only a newer build knows.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use warren_testkit::TestServer;

use crate::doctor::{finding, report_of, sqlite};
use crate::BIN;

fn upgrade_check(data_dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> (bool, Value) {
    let mut command = Command::new(BIN);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(["upgrade", "check", "--json", "--timeout-secs", "5", "--data-dir"]).arg(data_dir);
    command.env("WARREN_LISTEN", "127.0.0.1:1").envs(env.iter().copied());
    report_of(command)
}

#[test]
fn upgrade_check_says_what_runs_and_refuses_what_is_unsafe() {
    let mut server = TestServer::start(BIN);
    server.stop();
    let dir = server.data_dir().to_path_buf();
    let backups = tempfile::tempdir().expect("temp dir");
    let backup_url = backups.path().to_str().expect("UTF-8 path");
    let env = [("WARREN_BACKUP__URL", backup_url)];

    // No backup yet: a warning, not a refusal.
    let (safe, report) = upgrade_check(&dir, None, &env);
    assert!(safe, "{report:#}");
    assert_eq!(finding(&report, "upgrade.meta")["severity"], "ok");
    assert_eq!(finding(&report, "backup.fresh")["severity"], "warning");

    let created = Command::new(BIN).args(["backup", "create", "--data-dir"]).arg(&dir).envs(env).output();
    assert!(created.expect("run").status.success(), "a backup of the stopped deployment");
    let newest = warren_meta::Dialect::Sqlite.schema_version();
    sqlite(&dir, &format!("DELETE FROM _sqlx_migrations WHERE version = {newest}"));
    let (safe, report) = upgrade_check(&dir, None, &env);
    assert!(safe, "{report:#}");
    assert_eq!(finding(&report, "backup.fresh")["severity"], "ok");
    let meta = finding(&report, "upgrade.meta");
    assert_eq!(meta["severity"], "info");
    assert!(meta["summary"].as_str().is_some_and(|s| s.contains(&format!("{newest} "))), "{meta}");

    // A key an older build had.
    let config = dir.join("old.toml");
    std::fs::write(&config, "[event_log]\nsegment_size = 1048576\n").expect("write");
    let (safe, report) = upgrade_check(&dir, Some(&config), &env);
    assert!(!safe, "serve would refuse this configuration");
    let key = finding(&report, "upgrade.config");
    assert_eq!(key["severity"], "critical");
    assert!(key["fix"].as_str().is_some_and(|fix| fix.contains("event_log.segment_bytes")), "{key}");

    // A migration only a newer build knows: this one would be a downgrade.
    sqlite(
        &dir,
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES ({}, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
            newest + 90
        ),
    );
    let (safe, report) = upgrade_check(&dir, None, &env);
    assert!(!safe);
    let meta = finding(&report, "upgrade.meta");
    assert_eq!(meta["severity"], "critical");
    assert!(meta["summary"].as_str().is_some_and(|s| s.contains("refusing a downgrade")), "{meta}");
}
