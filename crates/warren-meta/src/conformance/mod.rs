//! The conformance suite every [`MetaStore`] adapter must pass.
//!
//! An adapter's tests implement [`MetaFactory`] and invoke
//! [`meta_store_conformance!`](crate::meta_store_conformance), which expands
//! to one `#[tokio::test]` per property. Each role trait of [`MetaStore`] has
//! its own module of properties: [`schema`], [`tenancy`], [`accounts`],
//! [`audit`], [`entities`], [`persons`] (with ingest commits), [`recordings`] and [`ledger`]
//! (core's consumer offsets and migration ledger). Each module imports only
//! the role traits it calls, so it shows what an adapter of that role needs.

use async_trait::async_trait;
use uuid::Uuid;
use warren_core::person::{Person, Properties};

use crate::accounts::NewUser;
use crate::{DistinctIdAssignment, IngestCommit, MetaStore, PersonStore};

pub mod accounts;
pub mod audit;
pub mod entities;
pub mod ledger;
pub mod persons;
pub mod recordings;
pub mod schema;
pub mod tenancy;

/// Opens stores of one adapter on storage the factory owns.
#[async_trait]
pub trait MetaFactory: Send + Sync {
    type Store: MetaStore;

    /// A new, empty, migrated store.
    async fn create(&self) -> Self::Store;

    /// Drops `store` and connects to the same storage again (migrating).
    async fn reconnect(&self, store: Self::Store) -> Self::Store;
}

/// Expands to the whole suite for an expression giving `Option<factory>`;
/// `None` (a peer missing on a developer machine, already reported loudly)
/// makes every test return early. Tests are listed under the role module
/// they live in.
#[macro_export]
macro_rules! meta_store_conformance {
    ($factory:expr) => {
        $crate::meta_store_conformance!(@tests $factory;
            schema:
                migrations_are_idempotent_and_data_survives_reconnect,
                migration_status_lists_every_migration,
                a_snapshot_holds_the_whole_store;
            tenancy:
                bootstrap_creates_project_one_once,
                bootstrap_takes_fixed_secrets_and_validates_them,
                internal_project_is_made_once,
                projects_are_created_and_updated;
            accounts:
                users_organizations_and_sessions,
                api_keys_are_scoped_revocable_and_hashed;
            audit:
                audit_log_filters_and_pages;
            entities:
                entities_round_trip_with_unique_keys,
                deleted_entity_ids_are_never_given_again,
                static_cohorts_and_definitions;
            persons:
                persons_round_trip,
                persons_are_searched_newest_first,
                merges_move_ids_and_keep_overrides_one_hop,
                ingest_commit_is_all_or_nothing,
                groups_and_group_types,
                warnings_newest_first,
                batches_larger_than_one_statement;
            recordings:
                recordings_are_listed_per_project_and_person,
                a_replayed_chunk_replaces_its_row_and_retention_finds_old_ones;
            ledger:
                ingest_offsets_are_per_consumer,
                store_migrations_keep_their_operations_and_one_lock_holder,
                operation_journals_keep_the_last_document_per_name;
        );
    };
    (@tests $factory:expr; $($role:ident: $($name:ident),+;)+) => {
        $($(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(factory) = $factory else { return };
                $crate::conformance::$role::$name(&factory).await;
            }
        )+)+
    };
}

const TEAM: i64 = 1;

fn props(value: serde_json::Value) -> Properties {
    value.as_object().cloned().unwrap_or_default()
}

fn person(seed: u128, properties: serde_json::Value) -> Person {
    Person {
        uuid: Uuid::from_u128(seed),
        team_id: TEAM,
        properties: props(properties),
        created_at_us: 1_700_000_000_000_000 + seed as i64,
        is_identified: false,
        version: 0,
        created_by_event: seed.is_multiple_of(2).then(|| Uuid::from_u128(seed + 100)),
    }
}

fn assign(distinct_id: &str, person: &Person) -> DistinctIdAssignment {
    DistinctIdAssignment { team_id: TEAM, distinct_id: distinct_id.to_string(), person_uuid: person.uuid }
}

fn commit() -> IngestCommit {
    IngestCommit { consumer: "ingest".into(), ..IngestCommit::default() }
}

async fn owner(store: &impl PersonStore, distinct_id: &str) -> Option<Uuid> {
    let lookup = store.persons_by_distinct_ids(TEAM, &[distinct_id.to_string()]).await.expect("lookup");
    lookup.distinct_ids.get(distinct_id).copied()
}

fn new_user(email: &str) -> NewUser {
    NewUser { email: email.into(), name: "Ada".into(), password: "correct horse battery".into() }
}
