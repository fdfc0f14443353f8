//! `warren doctor`, each check tested by breaking what it checks: a full
//! disk (a small tmpfs, filled), a stopped PostgreSQL, a pending and an
//! unknown migration, a process whose clock is wrong (libfaketime), a
//! partition count the log cannot take. The checks of settings, lag,
//! limits and versions are broken in `warren_ops::doctor`'s unit tests;
//! stores that do not answer, in the support bundle's test.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use warren_testkit::services::PostgresServer;
use warren_testkit::TestServer;

use crate::BIN;

/// Runs `warren doctor --json`; its exit status and report.
fn doctor(data_dir: &Path, urls: &[&str], env: &[(&str, &str)]) -> (bool, Value) {
    let mut command = Command::new(BIN);
    command.args(["doctor", "--json", "--timeout-secs", "5", "--data-dir"]).arg(data_dir);
    for url in urls {
        command.args(["--url", url]);
    }
    // Without a URL the doctor tries the configured address: make it one
    // where nothing can answer, whatever else runs on this machine.
    command.env("WARREN_LISTEN", "127.0.0.1:1");
    command.envs(env.iter().copied());
    report_of(command)
}

/// Runs a command that prints a report as JSON; its exit status and report.
pub fn report_of(mut command: Command) -> (bool, Value) {
    let output = command.output().expect("run warren");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the report's JSON: {e}\n{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), report)
}

pub fn finding<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .and_then(|findings| findings.iter().find(|f| f["check"] == check))
        .unwrap_or_else(|| panic!("no {check} finding in {report:#}"))
}

/// No critical finding but of the disk, which is the machine's whatever
/// the test does.
fn nothing_critical_but_the_disk(report: &Value) {
    let critical: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["severity"] == "critical" && !f["check"].as_str().is_some_and(|c| c.starts_with("disk."))
        })
        .collect();
    assert!(critical.is_empty(), "{critical:#?}");
}

fn severity<'a>(report: &'a Value, check: &str) -> &'a str {
    finding(report, check)["severity"].as_str().expect("severity")
}

#[test]
fn a_healthy_deployment_has_nothing_critical() {
    let server = TestServer::start(BIN);
    let (_, report) = doctor(server.data_dir(), &[&server.url], &[]);
    nothing_critical_but_the_disk(&report);
    // The disk's figures are the machine's: only that they were measured.
    for check in ["meta.reachable", "meta.schema", "process.reachable", "clock.skew", "version.skew"] {
        assert_eq!(severity(&report, check), "ok", "{check}: {report:#}");
    }
    assert!(finding(&report, "disk.fsync")["summary"].as_str().is_some_and(|s| s.contains("median")));
    assert_eq!(severity(&report, "event_log.meta"), "ok");

    // A partition count the existing log cannot take.
    let (_, report) = doctor(server.data_dir(), &[&server.url], &[("WARREN_EVENT_LOG__PARTITIONS", "7")]);
    assert_eq!(severity(&report, "event_log.meta"), "warning", "{report:#}");
}

/// A tmpfs mounted for the test, unmounted however the test ends.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        warren_testkit::require(mounted, "mounting a tmpfs (root)").then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_critical() {
    let Some(disk) = SmallDisk::mount("8m") else { return };
    let data_dir = disk.0.path().join("data");
    std::fs::create_dir(&data_dir).expect("data dir");
    // Fill it to the last block.
    let filled = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", disk.0.path().join("filler").display()))
        .output()
        .expect("dd");
    assert!(!filled.status.success(), "dd stops when the disk is full");
    let (success, report) = doctor(&data_dir, &[], &[]);
    assert!(!success, "a full disk fails the doctor: {report:#}");
    assert_eq!(severity(&report, "disk.space"), "critical");
    assert!(finding(&report, "disk.space")["summary"]
        .as_str()
        .is_some_and(|s| s.contains("free of 8.0 MiB")));
    // fsync cannot even be measured without room to write.
    assert_eq!(severity(&report, "disk.fsync"), "critical");
}

#[test]
fn a_stopped_postgresql_is_critical() {
    let Some(postgres) = PostgresServer::own() else { return };
    let url = postgres.fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("WARREN_META_URL", url.as_str())];
    let migrated = Command::new(BIN).args(["migrate", "up", "--data-dir"]).arg(dir.path()).envs(env).output();
    assert!(migrated.expect("run").status.success());
    let (_, report) = doctor(dir.path(), &[], &env);
    nothing_critical_but_the_disk(&report);
    assert_eq!(severity(&report, "meta.schema"), "ok");

    postgres.stop();
    let (success, report) = doctor(dir.path(), &[], &env);
    assert!(!success, "a meta store that does not answer fails the doctor");
    assert_eq!(severity(&report, "meta.reachable"), "critical");
    let summary = finding(&report, "meta.reachable")["summary"].as_str().expect("summary").to_string();
    // Refused at once, or still refused when the pool gives up.
    assert!(summary.contains("does not answer") || summary.contains("did not answer"), "{summary}");
}

/// Runs SQL on the data dir's SQLite meta store (Python's sqlite3, so the
/// test changes the file the way an older or newer build would).
pub fn sqlite(data_dir: &Path, sql: &str) {
    let script = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute({sql:?}); c.commit()",
        data_dir.join("meta.db")
    );
    let status = Command::new("python3").args(["-c", &script]).status().expect("python3");
    assert!(status.success(), "{sql}");
}

#[test]
fn a_pending_migration_warns_and_an_unknown_one_is_critical() {
    let mut server = TestServer::start(BIN);
    server.stop();
    let dir = server.data_dir().to_path_buf();
    let newest = warren_meta::Dialect::Sqlite.schema_version();
    // As if this build were an upgrade over the one that made the store.
    sqlite(&dir, &format!("DELETE FROM _sqlx_migrations WHERE version = {newest}"));
    let (_, report) = doctor(&dir, &[], &[]);
    // Pending migrations are applied by the next start: not critical.
    nothing_critical_but_the_disk(&report);
    assert_eq!(severity(&report, "meta.schema"), "warning");
    assert!(finding(&report, "meta.schema")["summary"]
        .as_str()
        .is_some_and(|s| s.contains(&format!("{newest} "))));

    // As if a newer build had run on this store.
    let future = newest + 90;
    sqlite(
        &dir,
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES ({future}, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)"
        ),
    );
    let (success, report) = doctor(&dir, &[], &[]);
    assert!(!success);
    assert_eq!(severity(&report, "meta.schema"), "critical");
    assert!(finding(&report, "meta.schema")["summary"]
        .as_str()
        .is_some_and(|s| s.contains("from the future")));
}

#[test]
fn a_process_with_a_wrong_clock_is_critical() {
    // Debian puts it under the machine's multiarch folder.
    let library = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists());
    let Some(library) = library else {
        warren_testkit::require(false, "libfaketime (Debian package faketime)");
        return;
    };
    let library = library.to_str().expect("UTF-8 path");
    // Two hours ahead; timers keep the real monotonic clock.
    let server = TestServer::start_with_env(
        BIN,
        &[("LD_PRELOAD", library), ("FAKETIME", "+2h"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")],
    );
    let (success, report) = doctor(server.data_dir(), &[&server.url], &[]);
    assert!(!success, "{report:#}");
    assert_eq!(severity(&report, "clock.skew"), "critical");
    let summary = finding(&report, "clock.skew")["summary"].as_str().expect("summary").to_string();
    let skew: f64 = summary
        .split("clock is ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .expect("the skew in seconds");
    assert!((skew - 7200.0).abs() < 60.0, "{summary}");
}
