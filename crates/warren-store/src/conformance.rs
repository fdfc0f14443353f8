//! The conformance suite every [`EventStore`] adapter must pass.
//!
//! An adapter's tests implement [`StoreFactory`] and invoke
//! [`event_store_conformance!`](crate::event_store_conformance), which
//! expands to one `#[tokio::test]` per property: every field round-trips,
//! offsets commit with their rows, everything survives a reopen, upkeep
//! loses nothing, concurrent appends all land, deleting a project's old
//! rows touches nothing else, and rows read back by key are the stored
//! ones. [`blob_store_conformance`] is the suite of the recordings' blob
//! store, whatever holds it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;
use warren_core::person::PersonMode;

use crate::{EventKey, EventRow, EventStore};

/// Opens stores of one adapter on storage the factory owns.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    type Store: EventStore;

    /// A new, empty store.
    async fn create(&self) -> Self::Store;

    /// Drops `store` and opens the same storage again.
    async fn reopen(&self, store: Self::Store) -> Self::Store;

    /// Every stored row, in any order.
    async fn rows(&self, store: &Self::Store) -> Vec<EventRow>;
}

/// Expands to the whole suite for an expression giving `Option<factory>`;
/// `None` (a peer missing on a developer machine, already reported loudly)
/// makes every test return early.
#[macro_export]
macro_rules! event_store_conformance {
    ($factory:expr) => {
        $crate::event_store_conformance!(@tests $factory;
            rows_round_trip,
            offsets_commit_with_their_rows,
            durable_across_reopen,
            maintenance_keeps_every_row,
            concurrent_appends_all_land,
            delete_events_removes_one_project_rows_in_range,
            read_events_answers_the_rows_asked_for
        );
    };
    (@tests $factory:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(factory) = $factory else { return };
                $crate::conformance::$name(&factory).await;
            }
        )*
    };
}

const DAY_US: i64 = 86_400_000_000;
/// 2026-11-26T12:00:00Z.
const NOON_US: i64 = 1_795_694_400_000_000;

/// A row with every field distinct, derived from `n`.
pub fn sample_row(n: u64) -> EventRow {
    let mut groups: [String; 5] = Default::default();
    groups[(n % 5) as usize] = format!("group-{n}");
    EventRow {
        uuid: Uuid::from_u128(u128::from(n) + 1),
        event: ["$pageview", "signed up", "ünïcødé ✓"][(n % 3) as usize].to_string(),
        properties: format!(r#"{{"n":{n},"text":"a \"quoted\" value"}}"#),
        // Spread over three days (three partitions).
        timestamp_us: NOON_US + (n as i64 % 3) * DAY_US + n as i64,
        team_id: 1 + (n % 2) as i64,
        distinct_id: format!("user-{}", n % 7),
        elements_chain: if n.is_multiple_of(4) { "a:nth-child=\"1\"".into() } else { String::new() },
        created_at_us: NOON_US + n as i64 * 1000,
        person_id: Uuid::from_u128(u128::from(n % 7) + 1000),
        person_properties: format!(r#"{{"email":"user{}@example.com"}}"#, n % 7),
        person_created_at_us: NOON_US - DAY_US,
        person_mode: [PersonMode::Full, PersonMode::Propertyless, PersonMode::ForceUpgrade][(n % 3) as usize],
        session_id: format!("session-{}", n / 10),
        window_id: if n.is_multiple_of(2) { format!("window-{n}") } else { String::new() },
        groups,
    }
}

fn by_uuid(rows: Vec<EventRow>) -> HashMap<Uuid, EventRow> {
    rows.into_iter().map(|row| (row.uuid, row)).collect()
}

async fn assert_rows<F: StoreFactory>(factory: &F, store: &F::Store, expected: &[EventRow]) {
    let stored = factory.rows(store).await;
    assert_eq!(stored.len(), expected.len(), "row count");
    let stored = by_uuid(stored);
    assert_eq!(stored.len(), expected.len(), "no uuid is stored twice");
    for row in expected {
        assert_eq!(stored.get(&row.uuid), Some(row), "row {} round-trips", row.uuid);
    }
}

pub async fn rows_round_trip(factory: &impl StoreFactory) {
    let store = factory.create().await;
    let rows: Vec<EventRow> = (0..30).map(sample_row).collect();
    store.append("ingest", rows.clone(), &[(0, 30)]).await.expect("append");
    assert_rows(factory, &store, &rows).await;
}

pub async fn offsets_commit_with_their_rows(factory: &impl StoreFactory) {
    let store = factory.create().await;
    assert!(store.offsets("ingest", 4).await.expect("offsets").is_empty(), "a new store has no offsets");
    store.append("ingest", vec![sample_row(1)], &[(0, 10), (2, 5)]).await.expect("append");
    store.append("ingest", vec![sample_row(2)], &[(0, 12)]).await.expect("append");
    // A batch whose events were all dropped still moves the offsets.
    store.append("ingest", Vec::new(), &[(3, 7)]).await.expect("empty append");
    store.append("replay", Vec::new(), &[(0, 1)]).await.expect("other writer");
    let offsets = store.offsets("ingest", 4).await.expect("offsets");
    assert_eq!(offsets, HashMap::from([(0, 12), (2, 5), (3, 7)]));
    assert_eq!(store.offsets("replay", 4).await.expect("offsets"), HashMap::from([(0, 1)]));
    assert_rows(factory, &store, &[sample_row(1), sample_row(2)]).await;
}

pub async fn durable_across_reopen(factory: &impl StoreFactory) {
    let store = factory.create().await;
    let rows: Vec<EventRow> = (0..10).map(sample_row).collect();
    store.append("ingest", rows.clone(), &[(1, 10)]).await.expect("append");
    let store = factory.reopen(store).await;
    assert_eq!(store.offsets("ingest", 2).await.expect("offsets"), HashMap::from([(1, 10)]));
    assert_rows(factory, &store, &rows).await;
    store.append("ingest", vec![sample_row(10)], &[(1, 11)]).await.expect("append after reopen");
    assert_eq!(factory.rows(&store).await.len(), 11);
}

pub async fn maintenance_keeps_every_row(factory: &impl StoreFactory) {
    let store = factory.create().await;
    let mut expected = Vec::new();
    for batch in 0..20u64 {
        let rows: Vec<EventRow> = (batch * 3..batch * 3 + 3).map(sample_row).collect();
        expected.extend(rows.clone());
        store.append("ingest", rows, &[(0, (batch + 1) * 3)]).await.expect("append");
    }
    // How much is merged depends on the engine (ClickHouse also merges on
    // its own); that nothing grows and nothing is lost does not.
    let report = store.maintain().await.expect("maintain");
    assert!(report.files_compacted >= report.files_written, "merging never adds files: {report:?}");
    assert_rows(factory, &store, &expected).await;
    assert_eq!(store.offsets("ingest", 1).await.expect("offsets"), HashMap::from([(0, 60)]));
    let again = store.maintain().await.expect("maintain again");
    assert_eq!(again.files_compacted, 0, "nothing left to compact: {again:?}");
    let store = factory.reopen(store).await;
    assert_rows(factory, &store, &expected).await;
}

pub async fn concurrent_appends_all_land<F: StoreFactory>(factory: &F)
where
    F::Store: 'static,
{
    let store = Arc::new(factory.create().await);
    let tasks: Vec<_> = (0..4u32)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..5u64 {
                    let n = u64::from(writer) * 100 + i;
                    store.append("ingest", vec![sample_row(n)], &[(writer, i + 1)]).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    let expected: Vec<EventRow> =
        (0..4u64).flat_map(|writer| (0..5u64).map(move |i| sample_row(writer * 100 + i))).collect();
    assert_rows(factory, &store, &expected).await;
    let offsets = store.offsets("ingest", 4).await.expect("offsets");
    assert_eq!(offsets, (0..4).map(|p| (p, 5)).collect::<HashMap<_, _>>());
}

pub async fn delete_events_removes_one_project_rows_in_range(factory: &impl StoreFactory) {
    let store = factory.create().await;
    let rows: Vec<EventRow> = (0..60).map(sample_row).collect();
    store.append("ingest", rows.clone(), &[(0, 60)]).await.expect("append");
    // Project 2's rows of the first day and the first hours of the second.
    let cutoff = NOON_US + DAY_US + 30;
    let gone = |row: &EventRow| row.team_id == 2 && row.timestamp_us < cutoff;
    let expected_gone = rows.iter().filter(|row| gone(row)).count() as u64;
    assert!(expected_gone > 0);
    let deleted = store.delete_events(2, i64::MIN..cutoff).await.expect("delete");
    assert_eq!(deleted, expected_gone, "rows deleted");
    let mut kept: Vec<EventRow> = rows.into_iter().filter(|row| !gone(row)).collect();
    assert_rows(factory, &store, &kept).await;
    assert_eq!(store.delete_events(2, i64::MIN..cutoff).await.expect("delete again"), 0, "nothing left");
    // A bounded range: project 2's rows of the third day only.
    let third_day = NOON_US + 2 * DAY_US - 12 * 3_600_000_000..NOON_US + 3 * DAY_US;
    let in_third = |row: &EventRow| row.team_id == 2 && third_day.contains(&row.timestamp_us);
    let expected = kept.iter().filter(|row| in_third(row)).count() as u64;
    assert!(expected > 0);
    assert_eq!(store.delete_events(2, third_day.clone()).await.expect("delete"), expected);
    kept.retain(|row| !in_third(row));
    assert_rows(factory, &store, &kept).await;
    assert_eq!(store.offsets("ingest", 1).await.expect("offsets"), HashMap::from([(0, 60)]), "offsets stay");
    let store = factory.reopen(store).await;
    assert_rows(factory, &store, &kept).await;
}

pub async fn read_events_answers_the_rows_asked_for(factory: &impl StoreFactory) {
    let store = factory.create().await;
    let rows: Vec<EventRow> = (0..60).map(sample_row).collect();
    store.append("ingest", rows.clone(), &[(0, 60)]).await.expect("append");
    let wanted: Vec<EventRow> = rows.iter().filter(|row| row.uuid.as_u128() % 4 == 1).cloned().collect();
    let mut keys: Vec<EventKey> = wanted.iter().map(EventRow::key).collect();
    // Absent: an unknown uuid, and a stored uuid under another project.
    keys.push(EventKey { uuid: Uuid::from_u128(999_999), ..rows[0].key() });
    keys.push(EventKey { team_id: 77, ..rows[1].key() });
    let read = by_uuid(store.read_events(&keys).await.expect("read events"));
    assert_eq!(read, by_uuid(wanted), "exactly the stored rows asked for");
    assert!(store.read_events(&[]).await.expect("read nothing").is_empty());
}

/// The properties every [`warren_core::ports::BlobStore`] has: what is put
/// is read back whole, a put replaces, missing keys read as `None` and
/// delete quietly, and a delete touches its key alone.
pub async fn blob_store_conformance(blobs: &dyn warren_core::ports::BlobStore) {
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    blobs.put("recordings/1/s1/a.jsonl.gz", big.clone()).await.expect("put");
    blobs.put("recordings/1/s1/b.jsonl.gz", b"first".to_vec()).await.expect("put");
    blobs.put("recordings/1/s1/b.jsonl.gz", b"second".to_vec()).await.expect("put again");
    blobs.put("recordings/2/s1/a.jsonl.gz", b"other project".to_vec()).await.expect("put");
    assert_eq!(blobs.get("recordings/1/s1/a.jsonl.gz").await.expect("get"), Some(big));
    assert_eq!(blobs.get("recordings/1/s1/b.jsonl.gz").await.expect("get"), Some(b"second".to_vec()));
    assert_eq!(blobs.get("recordings/1/s1/c.jsonl.gz").await.expect("get"), None);
    blobs.delete("recordings/1/s1/a.jsonl.gz").await.expect("delete");
    blobs.delete("recordings/1/s1/a.jsonl.gz").await.expect("delete what is gone");
    assert_eq!(blobs.get("recordings/1/s1/a.jsonl.gz").await.expect("get"), None);
    assert_eq!(blobs.get("recordings/1/s1/b.jsonl.gz").await.expect("get"), Some(b"second".to_vec()));
    assert_eq!(blobs.get("recordings/2/s1/a.jsonl.gz").await.expect("get"), Some(b"other project".to_vec()));
}
