//! [`ConsumerOffsets`]', [`MigrationLedger`]'s and [`OperationJournal`]'s
//! properties: offsets per consumer, other stores' migration operations,
//! one lock holder at a time, and one journal document per operation.

use warren_core::ports::{ConsumerOffsets, MigrationLedger, OperationJournal};

use super::{commit, MetaFactory};
use crate::{IngestCommit, IngestCommits};

pub async fn ingest_offsets_are_per_consumer(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let mut batch = commit();
    batch.offsets = vec![(0, 5), (3, 7)];
    store.commit_ingest(&batch).await.expect("commit");
    batch.offsets = vec![(0, 9)];
    store.commit_ingest(&batch).await.expect("commit");
    let other = IngestCommit { consumer: "replay".into(), offsets: vec![(0, 1)], ..IngestCommit::default() };
    store.commit_ingest(&other).await.expect("commit");
    let offsets = store.ingest_offsets("ingest").await.expect("offsets");
    assert_eq!(offsets.get(&0), Some(&9));
    assert_eq!(offsets.get(&3), Some(&7));
    assert_eq!(offsets.len(), 2);
    assert_eq!(store.ingest_offsets("replay").await.expect("offsets").get(&0), Some(&1));
    assert!(store.ingest_offsets("nobody").await.expect("offsets").is_empty());
    // The port alone moves one consumer's offsets and nothing else.
    store.commit_offsets("replica", &[(1, 4), (2, 8)]).await.expect("commit offsets");
    store.commit_offsets("replica", &[(1, 6)]).await.expect("commit offsets");
    let replica = store.ingest_offsets("replica").await.expect("offsets");
    assert_eq!(replica, std::collections::HashMap::from([(1, 6), (2, 8)]));
    assert_eq!(store.ingest_offsets("ingest").await.expect("offsets").len(), 2);
}

pub async fn store_migrations_keep_their_operations_and_one_lock_holder(factory: &impl MetaFactory) {
    use crate::OperationState::{Completed, Errored, Running};
    let store = factory.create().await;
    assert!(store.migration_operations("clickhouse/a").await.expect("read").is_empty());
    store.record_operation("clickhouse/a", 1, 0, Running, None).await.expect("record");
    store.record_operation("clickhouse/a", 1, 0, Completed, None).await.expect("record");
    store.record_operation("clickhouse/a", 2, 1, Errored, Some("it broke")).await.expect("record");
    store.record_operation("clickhouse/a", 1, 1, Running, None).await.expect("record");
    store.record_operation("clickhouse/b", 1, 0, Running, None).await.expect("record");
    let a = store.migration_operations("clickhouse/a").await.expect("read");
    let seen: Vec<_> = a.iter().map(|o| (o.version, o.operation, o.state, o.error.as_deref())).collect();
    assert_eq!(seen, vec![(1, 0, Completed, None), (1, 1, Running, None), (2, 1, Errored, Some("it broke"))]);

    // One holder at a time; the holder renews; a lapsed lease is taken over.
    store.acquire_lock("migrate", "runner-1", 60_000).await.expect("lock").expect("free lock");
    let refused = store.acquire_lock("migrate", "runner-2", 60_000).await.expect("lock");
    assert!(refused.as_ref().is_err_and(|who| who.contains("runner-1")), "{refused:?}");
    store.acquire_lock("migrate", "runner-1", 60_000).await.expect("lock").expect("renewed");
    store.release_lock("migrate", "runner-2").await.expect("release");
    assert!(
        store.acquire_lock("migrate", "runner-2", 60_000).await.expect("lock").is_err(),
        "not runner-2's to release"
    );
    store.release_lock("migrate", "runner-1").await.expect("release");
    store.acquire_lock("migrate", "runner-2", 1).await.expect("lock").expect("free again");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store
        .acquire_lock("migrate", "runner-3", 60_000)
        .await
        .expect("lock")
        .expect("a lapsed lease is taken over");
    let (first, second) = tokio::join!(
        store.acquire_lock("other", "racer-1", 60_000),
        store.acquire_lock("other", "racer-2", 60_000)
    );
    let winners = [first.expect("lock"), second.expect("lock")].iter().filter(|won| won.is_ok()).count();
    assert_eq!(winners, 1, "exactly one racer holds the lock");
}

pub async fn operation_journals_keep_the_last_document_per_name(factory: &impl MetaFactory) {
    let store = factory.create().await;
    assert_eq!(store.read_journal("reshard").await.expect("read"), None);
    let first = serde_json::json!({"phase": "copying", "days": {"2024-03-01": {"rows": 3}}});
    store.write_journal("reshard", &first).await.expect("write");
    store.write_journal("other", &serde_json::json!([1, "two"])).await.expect("write");
    assert_eq!(store.read_journal("reshard").await.expect("read"), Some(first));
    let second = serde_json::json!({"phase": "switched", "text": "quotes ' and \" kept"});
    store.write_journal("reshard", &second).await.expect("replace");
    assert_eq!(store.read_journal("reshard").await.expect("read"), Some(second));
    assert_eq!(store.read_journal("other").await.expect("read"), Some(serde_json::json!([1, "two"])));
}
