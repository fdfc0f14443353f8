//! `warren support bundle`: what it holds, and that no secret of the
//! configuration survives into it — from the configuration itself, from
//! error messages that quote a URL, or from a log that printed one.

use std::path::Path;
use std::process::Command;

use warren_testkit::services::PostgresServer;
use warren_testkit::TestServer;

use crate::BIN;

/// Every file of the bundle at `archive`, by path inside it.
fn unpack(archive: &Path) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let status =
        Command::new("tar").arg("-xzf").arg(archive).arg("-C").arg(dir.path()).status().expect("tar");
    assert!(status.success(), "the bundle is a tar.gz archive");
    let mut files = Vec::new();
    let mut pending = vec![dir.path().to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir.path()).expect("inside").display().to_string();
                files.push((name, std::fs::read_to_string(&path).expect("text")));
            }
        }
    }
    files.sort();
    files
}

fn bundle(args: &[&str], out: &Path) -> std::process::Output {
    let output = Command::new(BIN)
        .args(["support", "bundle", "--timeout-secs", "3", "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("run warren support bundle");
    assert!(output.status.success(), "bundle failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Every secret-bearing setting holds a value marked `SECRET`; the stores
/// they name do not answer, so their errors (which quote URLs) land in the
/// doctor's report too.
#[test]
fn no_secret_of_the_configuration_reaches_the_bundle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = "http://127.0.0.1:1";
    let s3 = |store: &str| {
        format!(
            "[{store}.storage_options]\n\
             aws_access_key_id = \"SECRET-{store}-akid\"\n\
             aws_secret_access_key = \"SECRET-{store}-sak\"\n\
             aws_session_token = \"SECRET-{store}-st\"\n\
             aws_endpoint = \"{dead}\"\n\
             aws_allow_http = \"true\"\n\
             aws_region = \"garage\"\n"
        )
    };
    // PostgreSQL trusts the test's connections, so the meta store answers
    // with a password in its URL; the ClickHouse check needs it as ledger.
    let Some(postgres) = PostgresServer::shared() else { return };
    let meta_url = postgres.fresh_database().replacen("://warren@", "://warren:SECRET-meta-pw@", 1);
    let config = format!(
        "meta_url = \"{meta_url}\"\n\
         [event_store]\nurl = \"s3://events/warren?password=SECRET-query-pw\"\n{}\
         [recordings]\nurl = \"s3://recordings/warren\"\n{}\
         [backup]\nurl = \"s3://backups/warren\"\n{}\
         [clickhouse]\nurl = \"clickhouse://default:SECRET-ch-pw@127.0.0.1:1/warren?cluster=warren\"\n\
         [bootstrap]\nproject_token = \"phc_SECRETtoken\"\napi_key = \"phx_SECRETapikey1234\"\n\
         admin_password = \"SECRET-admin-pw\"\n",
        s3("event_store"),
        s3("recordings"),
        s3("backup"),
    );
    let config_file = dir.path().join("warren.toml");
    std::fs::write(&config_file, config).expect("write config");
    // A log that printed secrets: from the configuration, and others.
    let log = dir.path().join("warren.log");
    std::fs::write(
        &log,
        "{\"level\":\"INFO\",\"message\":\"started\"}\n\
         opening postgres://warren:SECRET-meta-pw@127.0.0.1:1/warren\n\
         storage option SECRET-backup-sak refused\n\
         a key someone pasted: phx_NOTINCONFIG0123456\n\
         mirror at https://robot:SECRET-other-pw@mirror.example/x\n",
    )
    .expect("write log");

    let out = dir.path().join("bundle.tar.gz");
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).expect("data dir");
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    bundle(&["--config", &path(&config_file), "--log", &path(&log), "--data-dir", &path(&data_dir)], &out);
    let files = unpack(&out);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    for expected in
        ["doctor.json", "version.json", "config.json", "schema.json", "store-sizes.json", "logs/0-warren.log"]
    {
        assert!(
            names.contains(&format!("warren-support/{expected}").as_str()),
            "{expected} missing: {names:?}"
        );
    }
    for (name, text) in &files {
        assert!(!text.contains("SECRET"), "{name} holds a secret:\n{text}");
        assert!(!text.contains("phx_NOTINCONFIG"), "{name} holds an API key:\n{text}");
    }
    let (_, config) = files.iter().find(|(name, _)| name.ends_with("config.json")).expect("config.json");
    let config: serde_json::Value = serde_json::from_str(config).expect("JSON");
    assert_eq!(config["backup"]["storage_options"]["aws_secret_access_key"], "********");
    assert_eq!(config["event_store"]["storage_options"]["aws_region"], "garage", "only secrets are hidden");
    // The stores named do not answer, and the report says so (quoting
    // their URLs in its errors).
    let (_, report) = files.iter().find(|(name, _)| name.ends_with("doctor.json")).expect("doctor.json");
    let report: serde_json::Value = serde_json::from_str(report).expect("JSON");
    for check in ["event_store.reachable", "backup.fresh", "clickhouse.schema"] {
        let severity = report["findings"]
            .as_array()
            .and_then(|findings| findings.iter().find(|f| f["check"] == check))
            .map(|f| f["severity"].clone());
        assert_eq!(severity, Some(serde_json::json!("critical")), "{check}: {report:#}");
    }
    let (_, log) = files.iter().find(|(name, _)| name.ends_with("warren.log")).expect("the log");
    assert!(
        log.contains("\"message\":\"started\"") && log.contains("robot:********@mirror.example"),
        "{log}"
    );
}

#[test]
fn a_running_deployments_bundle_holds_its_metrics_and_health() {
    let server = TestServer::start(BIN);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("bundle.tar.gz");
    let data_dir = server.data_dir().to_str().expect("path").to_string();
    bundle(&["--url", &server.url, "--data-dir", &data_dir], &out);
    let files = unpack(&out);
    let text = |suffix: &str| {
        files.iter().find(|(name, _)| name.ends_with(suffix)).map(|(_, text)| text.clone()).expect(suffix)
    };
    assert!(text("metrics/0.prom").contains("warren_build_info{"), "the process's metrics");
    let report: serde_json::Value = serde_json::from_str(&text("doctor.json")).expect("JSON");
    let ready = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["check"] == "process.reachable" && f["severity"] == "ok");
    assert!(ready, "{report:#}");
    let sizes: serde_json::Value = serde_json::from_str(&text("store-sizes.json")).expect("JSON");
    assert!(sizes["log"].as_u64().is_some() && sizes["meta.db"].as_u64().is_some_and(|b| b > 0), "{sizes}");
    let schema = text("schema.json");
    assert!(schema.contains("Applied"), "{schema}");
}
