//! The EventStore conformance suite, run against the Delta adapter on a
//! local directory and on a real S3-compatible server (Garage) started by
//! the test kit; and the blob store's suite on both.

use std::collections::BTreeMap;

use async_trait::async_trait;
use warren_core::config::EventStoreConfig;
use warren_store::conformance::StoreFactory;
use warren_store::{DeltaStore, DeltaStoreOptions, EventRow, ObjectBlobStore};

struct DeltaFactory {
    /// Holds local tables (and the data dir of S3 ones).
    dir: tempfile::TempDir,
    config: EventStoreConfig,
}

impl DeltaFactory {
    fn local() -> Self {
        Self::with_url(None, BTreeMap::new())
    }

    fn with_url(url: Option<String>, storage_options: BTreeMap<String, String>) -> Self {
        let config = EventStoreConfig { url, storage_options, ..EventStoreConfig::default() };
        Self { dir: tempfile::tempdir().expect("temp dir"), config }
    }

    /// A table under a fresh prefix of the shared Garage bucket.
    fn s3() -> Option<Self> {
        let (url, options) = garage_prefix("events")?;
        Some(Self::with_url(Some(url), options))
    }

    async fn open(&self) -> DeltaStore {
        let options = DeltaStoreOptions::from_config(&self.config, self.dir.path()).expect("options");
        DeltaStore::open(options).await.expect("open the events table")
    }
}

/// A fresh prefix of the shared Garage bucket, and the options to reach it.
fn garage_prefix(name: &str) -> Option<(String, BTreeMap<String, String>)> {
    let garage = warren_testkit::services::GarageServer::shared()?;
    let options = BTreeMap::from([
        ("aws_endpoint".to_string(), garage.endpoint.clone()),
        ("aws_region".to_string(), garage.region.clone()),
        ("aws_access_key_id".to_string(), garage.access_key_id.clone()),
        ("aws_secret_access_key".to_string(), garage.secret_access_key.clone()),
        ("aws_allow_http".to_string(), "true".to_string()),
        ("aws_virtual_hosted_style_request".to_string(), "false".to_string()),
    ]);
    let url = format!("s3://{}/{}/{name}", garage.bucket, uuid::Uuid::new_v4());
    Some((url, options))
}

#[async_trait]
impl StoreFactory for DeltaFactory {
    type Store = DeltaStore;

    async fn create(&self) -> DeltaStore {
        self.open().await
    }

    async fn reopen(&self, store: DeltaStore) -> DeltaStore {
        drop(store);
        self.open().await
    }

    async fn rows(&self, store: &DeltaStore) -> Vec<EventRow> {
        store.read_rows(None).await.expect("read rows")
    }
}

mod local {
    use super::*;
    warren_store::event_store_conformance!(Some(DeltaFactory::local()));
}

mod s3 {
    use super::*;
    warren_store::event_store_conformance!(DeltaFactory::s3());
}

#[tokio::test]
async fn blob_store_on_a_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = ObjectBlobStore::open(&dir.path().display().to_string(), &BTreeMap::new()).expect("open");
    warren_store::conformance::blob_store_conformance(&blobs).await;
    assert!(dir.path().join("recordings/1/s1/b.jsonl.gz").exists(), "kept as files under the directory");
}

#[tokio::test]
async fn blob_store_on_s3() {
    let Some((url, options)) = garage_prefix("recordings") else { return };
    let blobs = ObjectBlobStore::open(&url, &options).expect("open");
    warren_store::conformance::blob_store_conformance(&blobs).await;
}

#[tokio::test]
async fn refuses_unknown_schemes_and_zero_vacuum_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EventStoreConfig { url: Some("ftp://host/events".into()), ..EventStoreConfig::default() };
    let error = DeltaStoreOptions::from_config(&config, dir.path()).expect_err("ftp is refused");
    assert!(error.to_string().contains("file:// or s3://"), "{error}");
    let config = EventStoreConfig { vacuum_retention_hours: 0, ..EventStoreConfig::default() };
    assert!(DeltaStoreOptions::from_config(&config, dir.path()).is_err());
}

#[tokio::test]
async fn a_table_with_other_columns_is_refused() {
    let factory = DeltaFactory::local();
    let store = factory.open().await;
    drop(store);
    // Rewrite the first commit's schema as another program might have.
    let log = factory.dir.path().join("events/_delta_log/00000000000000000000.json");
    let text = std::fs::read_to_string(&log).expect("read commit");
    std::fs::write(&log, text.replace("elements_chain", "elements")).expect("write commit");
    let options = DeltaStoreOptions::from_config(&factory.config, factory.dir.path()).expect("options");
    let error = DeltaStore::open(options).await.expect_err("foreign schema");
    assert!(error.to_string().contains("has columns"), "{error}");
}

#[tokio::test]
async fn small_files_are_compacted() {
    use warren_store::EventStore;
    let factory = DeltaFactory::local();
    let store = factory.open().await;
    for batch in 0..20u64 {
        let rows: Vec<EventRow> =
            (batch * 3..batch * 3 + 3).map(warren_store::conformance::sample_row).collect();
        store.append("ingest", rows, &[(0, (batch + 1) * 3)]).await.expect("append");
    }
    let report = store.maintain().await.expect("maintain");
    assert!(report.files_compacted > report.files_written, "small files were compacted: {report:?}");
    assert_eq!(factory.rows(&store).await.len(), 60);
}

/// Rows per day come from the table log's statistics; they must agree with
/// a scan of the data files after appends, compaction and deletes.
#[tokio::test]
async fn rows_per_day_from_the_log_agree_with_a_scan() {
    use warren_store::EventStore;
    let factory = DeltaFactory::local();
    let store = factory.open().await;
    for batch in 0..10u64 {
        let rows: Vec<EventRow> =
            (batch * 6..batch * 6 + 6).map(warren_store::conformance::sample_row).collect();
        store.append("ingest", rows, &[(0, (batch + 1) * 6)]).await.expect("append");
    }
    let scanned = |summaries: Vec<warren_store::DaySummary>| -> Vec<(chrono::NaiveDate, u64)> {
        summaries.into_iter().map(|day| (day.day, day.rows)).collect()
    };
    let listed = store.rows_per_day().await.expect("rows per day");
    assert_eq!(listed.iter().map(|(_, rows)| rows).sum::<u64>(), 60);
    assert_eq!(listed, scanned(store.day_summaries().await.expect("scan")));
    store.maintain().await.expect("maintain");
    assert_eq!(store.rows_per_day().await.expect("after compaction"), listed);
    assert_eq!(store.delete_events(2, i64::MAX - 1..i64::MAX).await.expect("delete nothing"), 0);
    assert_eq!(store.delete_events(2, i64::MIN..i64::MIN + 1).await.expect("delete nothing"), 0);
    // All time: every event of project 2.
    let deleted = store.delete_events(2, i64::MIN..i64::MAX).await.expect("delete");
    assert_eq!(deleted, 30);
    let after = store.rows_per_day().await.expect("after the delete");
    assert_eq!(after.iter().map(|(_, rows)| rows).sum::<u64>(), 30);
    assert_eq!(after, scanned(store.day_summaries().await.expect("scan")));
}
