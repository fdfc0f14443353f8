//! [`MetaSchema`]'s properties: migrating is idempotent, data survives a
//! reconnect, and the status lists every migration of this build.

use serde_json::json;

use super::{assign, commit, owner, person, MetaFactory};
use crate::{BootstrapRequest, IngestCommits, MetaSchema, Tenancy};

pub async fn migrations_are_idempotent_and_data_survives_reconnect(factory: &impl MetaFactory) {
    let store = factory.create().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let alice = person(1, json!({"name": "Alice"}));
    let mut batch = commit();
    batch.persons.push(alice.clone());
    batch.distinct_ids.push(assign("alice", &alice));
    store.commit_ingest(&batch).await.expect("commit");
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
