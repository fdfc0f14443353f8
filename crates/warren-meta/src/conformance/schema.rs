//! [`MetaSchema`]'s properties: migrating is idempotent, data survives a
//! reconnect, and the status lists every migration of this build.

use serde_json::json;

use super::{assign, commit, owner, person, MetaFactory};
use crate::{BootstrapRequest, IngestCommits, MetaSchema, Tenancy};
use warren_core::person::Person;
use warren_core::ports::ConsumerOffsets;

/// A bootstrapped store holding one person, Alice (distinct id `alice`),
/// committed by ingest up to offsets 7 and 3 of partitions 0 and 1.
async fn store_with_alice<F: MetaFactory>(factory: &F) -> (F::Store, Person) {
    let store = factory.create().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let alice = person(1, json!({"name": "Alice"}));
    let mut batch = commit();
    batch.persons.push(alice.clone());
    batch.distinct_ids.push(assign("alice", &alice));
    batch.offsets = vec![(0, 7), (1, 3)];
    store.commit_ingest(&batch).await.expect("commit");
    (store, alice)
}

pub async fn migrations_are_idempotent_and_data_survives_reconnect(factory: &impl MetaFactory) {
    let (store, alice) = store_with_alice(factory).await;
    let store = factory.reconnect(store).await;
    store.migrate().await.expect("migrating twice changes nothing");
    assert!(store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap").is_none());
    assert_eq!(owner(&store, "alice").await, Some(alice.uuid), "persons survive a reconnect");
}

pub async fn migration_status_lists_every_migration(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let statuses = store.migration_status().await.expect("status");
    assert!(statuses.len() >= 7, "every migration of this build: {statuses:?}");
    for (i, status) in statuses.iter().enumerate() {
        assert_eq!(status.version, i as i64 + 1, "in version order");
        assert_eq!(status.state, crate::MigrationState::Applied, "{status:?}");
        assert!(status.applied_at.is_some() && !status.description.is_empty(), "{status:?}");
    }
}

/// A snapshot (what a backup holds) is a SQLite store of its own, with
/// the same persons, ingest offsets and entities, and ids that deleted
/// rows had are not handed out again; it never overwrites a file.
pub async fn a_snapshot_holds_the_whole_store(factory: &impl MetaFactory) {
    use crate::entities::{EntityKind, EntityWrite};
    use crate::Entities;
    let (store, alice) = store_with_alice(factory).await;
    let project = 1;
    let write = |name: &str| EntityWrite {
        project_id: project,
        kind: EntityKind::Dashboard,
        unique_key: None,
        body: json!({"name": name}),
        created_by: None,
    };
    let kept = store.create_entity(write("kept")).await.expect("create");
    let deleted = store.create_entity(write("deleted")).await.expect("create");
    assert!(store.delete_entity(project, EntityKind::Dashboard, deleted.id).await.expect("delete"));
    let path = std::env::temp_dir().join(format!("warren-meta-snapshot-{}.db", uuid::Uuid::new_v4()));
    store.snapshot_into(&path).await.expect("snapshot");
    let snapshot = crate::SqlMeta::connect(&format!("sqlite://{}", path.display())).await.expect("open");
    assert_eq!(owner(&snapshot, "alice").await, Some(alice.uuid), "persons are in the snapshot");
    assert_eq!(
        snapshot.ingest_offsets(warren_core::INGEST_CONSUMER).await.expect("offsets"),
        store.ingest_offsets(warren_core::INGEST_CONSUMER).await.expect("offsets"),
        "so are ingest's offsets"
    );
    let dashboards = snapshot.entities(project, EntityKind::Dashboard).await.expect("entities");
    assert_eq!(dashboards.iter().map(|e| e.id).collect::<Vec<_>>(), vec![kept.id], "and entities");
    let next = snapshot.create_entity(write("new")).await.expect("create");
    assert!(
        next.id > deleted.id,
        "a deleted entity's id is not handed out again: {} after {}",
        next.id,
        deleted.id
    );
    assert!(store.snapshot_into(&path).await.is_err(), "an existing file is never overwritten");
    snapshot.close().await;

    // As a backup keeps it: dumped as rows and loaded into a new file,
    // the same store.
    let mut dump = Vec::new();
    let dumped = crate::dump_sqlite(&path, &mut dump).await.expect("dump");
    let loaded_path = path.with_extension("loaded.db");
    let loaded = crate::load_sqlite(dump.as_slice(), &loaded_path).await.expect("load");
    assert_eq!(dumped, loaded);
    assert!(loaded.rows > 0 && loaded.tables > 5, "{loaded:?}");
    let cut = &dump[..dump.len() - 20];
    let refused = crate::load_sqlite(cut, &path.with_extension("cut.db")).await;
    assert!(refused.is_err(), "a dump cut short never loads");
    let reloaded =
        crate::SqlMeta::connect(&format!("sqlite://{}", loaded_path.display())).await.expect("open");
    assert_eq!(owner(&reloaded, "alice").await, Some(alice.uuid));
    assert_eq!(
        reloaded.ingest_offsets(warren_core::INGEST_CONSUMER).await.expect("offsets"),
        store.ingest_offsets(warren_core::INGEST_CONSUMER).await.expect("offsets"),
    );
    let statuses = reloaded.migration_status().await.expect("status");
    assert!(statuses.iter().all(|s| s.state == crate::MigrationState::Applied), "{statuses:?}");
    let dashboards = reloaded.entities(project, EntityKind::Dashboard).await.expect("entities");
    assert_eq!(dashboards.iter().map(|e| e.id).collect::<Vec<_>>(), vec![kept.id, next.id]);
    let after = reloaded.create_entity(write("after")).await.expect("create");
    assert!(after.id > next.id, "sequences come along: {} after {}", after.id, next.id);
    reloaded.close().await;
    for file in [path, loaded_path] {
        let _ = std::fs::remove_file(&file);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
}
