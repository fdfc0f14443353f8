//! `warren restore --at` and `warren backup drill` end to end: a server
//! archiving its event log to the backup target, backups taken between
//! batches of events, person merges and entity changes, and restores to
//! moments between them that give back exactly what had been received by
//! then; moments the backups cannot reach are refused with the ones they can.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warren_testkit::{require, TestServer, API_KEY, TOKEN};

use crate::backup::{
    answers, backup_create, backup_list, create_entities, json_of, s3_target, send_pageviews, warren,
    warren_ok,
};
use crate::dashboard::monitored;
use crate::durability::job_detail;
use crate::query::{send_insight_events, wait_for_events};
use crate::sdk::python;
use crate::{http, BIN};

/// Now, as `--at` takes it, after a pause on each side so that no event
/// is received within a second of it.
async fn a_quiet_moment() -> String {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    at
}

/// Waits until the target's archive covers `at` from some backup.
fn wait_for_archive(to: &str, at: &str, env: &[(&str, &str)]) {
    let at_ms = chrono::DateTime::parse_from_rfc3339(at).expect("moment").timestamp_millis();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = backup_list(to, env);
        let reached = listed["reach"].as_array().expect("reach").iter().any(|reach| {
            reach["from_ms"].as_i64().expect("from") <= at_ms
                && at_ms <= reach["until_ms"].as_i64().expect("until")
        });
        if reached {
            return;
        }
        assert!(Instant::now() < deadline, "the archive never reached {at}: {listed}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Merges the person of `anonymous` into the one of `user`, as an
/// SDK's `identify` does.
async fn identify(server: &TestServer, user: &str, anonymous: &str) {
    let event =
        json!({"event": "$identify", "distinct_id": user, "properties": {"$anon_distinct_id": anonymous}});
    let response = http()
        .post(format!("{}/batch/", server.url))
        .json(&json!({"api_key": TOKEN, "batch": [event]}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

async fn create_annotation(server: &TestServer, content: &str) {
    let response = http()
        .post(format!("{}/api/projects/1/annotations/", server.url))
        .bearer_auth(API_KEY)
        .json(&json!({"content": content, "date_marker": "2026-01-01T00:00:00Z", "scope": "project"}))
        .send()
        .await
        .expect("create");
    assert!(response.status().is_success(), "creating an annotation: {}", response.status());
}

fn restore_at(to: &str, at: &str, env: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    warren_ok(&["restore", "--at", at, "--from", to, "--data-dir", dir.path().to_str().expect("utf-8")], env);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_moment_gives_back_what_was_received_by_then() {
    let backups = tempfile::tempdir().expect("dir");
    restores_to_moments(backups.path().to_str().expect("utf-8"), &[], &[]).await;
}

/// The same with the backups on S3 (Garage) and the meta store on
/// PostgreSQL, whose snapshot is taken in one repeatable-read transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_moment_works_from_s3_and_postgresql() {
    let Some(garage) = warren_testkit::services::GarageServer::shared() else { return };
    let Some(postgres) = warren_testkit::services::PostgresServer::shared() else { return };
    let meta_url = postgres.fresh_database();
    let (to, s3) = s3_target(garage);
    let mut source = s3.clone();
    source.push(("WARREN_META_URL", meta_url.as_str()));
    restores_to_moments(&to, &source, &s3).await;
}

/// Events, merges and entity changes between two backups, and restores to
/// moments between them. `source` configures the server and the backups
/// taken of it; `target` is what reading the backups needs.
async fn restores_to_moments(to: &str, source: &[(&str, &str)], target: &[(&str, &str)]) {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    // The log is archived every second; no scheduled backups, so the test
    // decides when they are taken.
    let mut env = source.to_vec();
    env.extend([
        ("WARREN_BACKUP__URL", to),
        ("WARREN_BACKUP__ARCHIVE_INTERVAL_SECS", "1"),
        ("WARREN_BACKUP__INTERVAL_MINS", "0"),
    ]);
    let server = TestServer::start_with_env(BIN, &env);
    let before_any_backup = a_quiet_moment().await;
    let mut sent = send_insight_events(&python, &server, true);
    create_entities(&server).await;
    wait_for_events(&server, sent).await;
    let full = backup_create(server.data_dir(), to, "--full", source);

    // After the full backup: new events, and a merge still to come.
    send_pageviews(&server, "anonymous-visitor", 30).await;
    sent += 30;
    wait_for_events(&server, sent).await;
    let first_moment = a_quiet_moment().await;
    let at_first_moment = answers(&server).await;

    // After the first moment: the visitor is identified (their person
    // merges), an entity is added, and an incremental backup taken.
    identify(&server, "visitor@example.com", "anonymous-visitor").await;
    send_pageviews(&server, "visitor@example.com", 20).await;
    sent += 21;
    wait_for_events(&server, sent).await;
    create_annotation(&server, "between the backups").await;
    let incremental = backup_create(server.data_dir(), to, "--incremental", source);
    assert_eq!(incremental["parent"], full["id"]);
    send_pageviews(&server, "after-the-incremental", 15).await;
    sent += 15;
    wait_for_events(&server, sent).await;
    let second_moment = a_quiet_moment().await;
    let at_second_moment = answers(&server).await;
    send_pageviews(&server, "after-the-second-moment", 10).await;
    wait_for_events(&server, sent + 10).await;
    wait_for_archive(to, &second_moment, target);

    // The first moment: the full backup and the 30 events after it, the
    // visitor not merged yet; entities as the full backup holds them.
    let restored = TestServer::start_in(BIN, restore_at(to, &first_moment, target), &[]);
    assert_eq!(answers(&restored).await, at_first_moment, "restored to {first_moment}");
    drop(restored);

    // The second moment: the incremental backup and the events after it,
    // the merge and the new annotation included.
    // The restored deployment archives to the same target, as a
    // replacement keeping its configuration would.
    let mut restored_env = target.to_vec();
    restored_env.extend([
        ("WARREN_BACKUP__URL", to),
        ("WARREN_BACKUP__ARCHIVE_INTERVAL_SECS", "1"),
        ("WARREN_BACKUP__INTERVAL_MINS", "0"),
    ]);
    let restored = TestServer::start_in(BIN, restore_at(to, &second_moment, target), &restored_env);
    let restored_answers = answers(&restored).await;
    assert_eq!(restored_answers, at_second_moment, "restored to {second_moment}");
    assert_ne!(restored_answers["persons"], at_first_moment["persons"], "the merge is replayed");
    // Ingest goes on after the replayed events, and they are archived
    // apart from the source's log, whose offsets they reuse.
    send_pageviews(&restored, "after-the-restore", 5).await;
    wait_for_events(&restored, sent + 5).await;
    let archived_after = a_quiet_moment().await;
    wait_for_archive(to, &archived_after, target);
    drop(restored);
    let again = TestServer::start_in(BIN, restore_at(to, &first_moment, target), &[]);
    assert_eq!(
        answers(&again).await,
        at_first_moment,
        "the source's archive is untouched by the restored log's"
    );
    drop(again);

    // Before the first backup nothing can be restored: refused, with the
    // moments that can.
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = dir.path().to_str().expect("utf-8");
    let refused =
        warren(&["restore", "--at", &before_any_backup, "--from", to, "--data-dir", data_dir], target);
    assert!(!refused.status.success(), "a moment before every backup is refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot restore") && stderr.contains(" to "),
        "the reachable window is printed: {stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing is written when refused");

    // The drill restores the newest backup taken with checks and compares
    // it with what was recorded when it was taken.
    let drilled = json_of(&warren_ok(&["backup", "drill", "--to", to, "--json"], target));
    assert_eq!(drilled["backup"], incremental["id"], "{drilled}");
    assert!(drilled["answers"].as_u64().expect("answers") >= 3, "{drilled}");
    assert_eq!(drilled["events"], incremental["events"], "{drilled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_when_the_restore_answers_differently() {
    let server = TestServer::start(BIN);
    send_pageviews(&server, "drilled", 25).await;
    wait_for_events(&server, 25).await;
    let backups = tempfile::tempdir().expect("dir");
    let to = backups.path().to_str().expect("utf-8");
    let full = backup_create(server.data_dir(), to, "--full", &[]);
    let id = full["id"].as_str().expect("id");
    warren_ok(&["backup", "drill", id, "--to", to], &[]);

    // A manifest whose recorded answers no longer match what its files
    // hold (as a restore that quietly lost or changed events would give).
    let path = backups.path().join(id).join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
    let day = manifest["days"].as_object().expect("days").keys().next().expect("a day").clone();
    manifest["days"][&day]["checksum"] = json!("0000000000000000");
    std::fs::write(&path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let failed = warren(&["backup", "drill", id, "--to", to], &[]);
    assert!(!failed.status.success(), "a drill that finds a different day fails");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains(&day), "the day is named: {stderr}");
}

/// `warren serve` with a backup target takes a full backup when it starts
/// (with the drill's checks), drills it and archives its log, each a job
/// on the System page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_serve_takes_backups_and_archives_its_log_by_itself() {
    let backups = tempfile::tempdir().expect("dir");
    let to = backups.path().to_str().expect("utf-8");
    let server = monitored(&[("WARREN_BACKUP__URL", to), ("WARREN_BACKUP__ARCHIVE_INTERVAL_SECS", "1")]);
    send_pageviews(&server, "scheduled", 12).await;
    let created = job_detail(&server, "backup.create", |summary| summary["last"]["outcome"] == "ok").await;
    let detail = created["last"]["detail"].as_str().expect("detail");
    assert!(detail.contains("(Full)"), "the first scheduled backup is a full one: {detail}");
    // The full backup was drilled: the System page shows it restores.
    let drill = job_detail(&server, "backup.drill", |summary| summary["runs"].as_u64() >= Some(1)).await;
    assert_eq!(drill["last"]["outcome"], "ok", "{drill}");
    job_detail(&server, "backup.archive", |summary| {
        summary["last"]["detail"].as_str().is_some_and(|detail| detail.starts_with("archived"))
    })
    .await;
    let listed = backup_list(to, &[]);
    assert_eq!(listed["backups"].as_array().expect("backups").len(), 1, "{listed}");
    assert_eq!(listed["backups"][0]["kind"], "full");
    let drilled = json_of(&warren_ok(&["backup", "drill", "--to", to, "--json"], &[]));
    assert_eq!(drilled["backup"], listed["backups"][0]["id"], "{drilled}");
}
