//! The conformance suite every [`MetaStore`] adapter must pass.
//!
//! An adapter's tests implement [`MetaFactory`] and invoke
//! [`meta_store_conformance!`](crate::meta_store_conformance), which expands
//! to one `#[tokio::test]` per property: bootstrap, migrations across
//! reconnects, persons and distinct ids, merges and overrides, atomic ingest
//! commits, offsets, groups, warnings, and batches larger than one
//! statement can carry.

use async_trait::async_trait;
use serde_json::json;
use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person, Properties};

use crate::{BootstrapRequest, DistinctIdAssignment, IngestCommit, MetaStore, PersonMerge};

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
/// makes every test return early.
#[macro_export]
macro_rules! meta_store_conformance {
    ($factory:expr) => {
        $crate::meta_store_conformance!(@tests $factory;
            bootstrap_creates_project_one_once,
            bootstrap_takes_fixed_secrets_and_validates_them,
            migrations_are_idempotent_and_data_survives_reconnect,
            persons_round_trip,
            merges_move_ids_and_keep_overrides_one_hop,
            ingest_commit_is_all_or_nothing,
            ingest_offsets_are_per_consumer,
            groups_and_group_types,
            warnings_newest_first,
            batches_larger_than_one_statement
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

async fn owner(store: &impl MetaStore, distinct_id: &str) -> Option<Uuid> {
    let lookup = store.persons_by_distinct_ids(TEAM, &[distinct_id.to_string()]).await.expect("lookup");
    lookup.distinct_ids.get(distinct_id).copied()
}

pub async fn bootstrap_creates_project_one_once(factory: &impl MetaFactory) {
    let store = factory.create().await;
    store.ping().await.expect("a connected store answers");
    let first = store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let first = first.expect("a fresh store is bootstrapped");
    assert_eq!(first.project.id, 1);
    assert!(first.project.api_token.starts_with("phc_"));
    assert!(first.api_key.starts_with("phx_"));
    let again = store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    assert!(again.is_none(), "a second bootstrap changes nothing");

    let found = store.project_by_token(&first.project.api_token).await.expect("lookup");
    assert_eq!(found, Some(first.project.clone()));
    assert_eq!(store.project(1).await.expect("lookup"), Some(first.project.clone()));
    assert_eq!(store.project(2).await.expect("lookup"), None);
    assert_eq!((first.project.timezone.as_str(), first.project.week_start_day), ("UTC", 0));
    assert_eq!(first.project.test_account_filters, "[]");
    assert_eq!(store.project_by_token("phc_unknown").await.expect("lookup"), None);
    let organization = store.organization_for_api_key(&first.api_key).await.expect("lookup");
    assert_eq!(organization, Some(first.project.organization_id));
    assert_eq!(store.organization_for_api_key("phx_wrong_wrong_wrong").await.expect("lookup"), None);
}

pub async fn bootstrap_takes_fixed_secrets_and_validates_them(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let bad = BootstrapRequest { project_token: Some("phx_personal".into()), ..BootstrapRequest::default() };
    assert!(store.bootstrap(bad).await.is_err(), "a phx_ token is refused");
    let bad_zone = BootstrapRequest { timezone: Some("Mars/Olympus".into()), ..BootstrapRequest::default() };
    assert!(store.bootstrap(bad_zone).await.is_err(), "an unknown time zone is refused");
    let fixed = BootstrapRequest {
        project_token: Some("phc_fixed_token".into()),
        api_key: Some("phx_fixed_api_key_0123456789".into()),
        timezone: Some("Europe/Berlin".into()),
    };
    let made = store.bootstrap(fixed).await.expect("bootstrap").expect("created");
    assert_eq!(made.project.api_token, "phc_fixed_token");
    assert_eq!(store.project(1).await.expect("lookup").map(|p| p.timezone).as_deref(), Some("Europe/Berlin"));
    let later =
        BootstrapRequest { project_token: Some("phx_ignored_now".into()), ..BootstrapRequest::default() };
    assert!(store.bootstrap(later).await.expect("ignored").is_none(), "settings only matter once");
    assert!(store.organization_for_api_key("phx_fixed_api_key_0123456789").await.expect("lookup").is_some());
}

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

pub async fn persons_round_trip(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let mut alice = person(1, json!({"name": "Zoë ✓", "plan": {"tier": 2, "tags": ["a", null]}, "n": 1.5}));
    alice.is_identified = true;
    alice.version = 3;
    let bob = person(2, json!({}));
    let mut batch = commit();
    batch.persons = vec![alice.clone(), bob.clone()];
    batch.distinct_ids =
        vec![assign("alice", &alice), assign("alice@example.com", &alice), assign("bob", &bob)];
    store.commit_ingest(&batch).await.expect("commit");

    let ids = ["alice", "alice@example.com", "bob", "nobody"].map(String::from);
    let lookup = store.persons_by_distinct_ids(TEAM, &ids).await.expect("lookup");
    assert_eq!(lookup.distinct_ids.len(), 3, "ids without a person are absent");
    assert_eq!(lookup.persons.get(&alice.uuid), Some(&alice), "every field round-trips");
    assert_eq!(lookup.persons.get(&bob.uuid), Some(&bob));
    assert_eq!(crate::person_by_distinct_id(&store, TEAM, "bob").await.expect("lookup"), Some(bob.clone()));
    let other_team = store.persons_by_distinct_ids(TEAM + 1, &ids).await.expect("lookup");
    assert!(other_team.distinct_ids.is_empty(), "projects do not see each other's persons");

    assert_eq!(
        store.distinct_ids_of(TEAM, alice.uuid).await.expect("ids"),
        vec!["alice".to_string(), "alice@example.com".to_string()]
    );
    let page = store.persons(TEAM, None, 1).await.expect("page");
    assert_eq!(page, vec![alice.clone()]);
    let next = store.persons(TEAM, Some(alice.uuid), 10).await.expect("page");
    assert_eq!(next, vec![bob.clone()]);

    // An update replaces the row; a distinct id can move.
    alice.properties.insert("name".into(), json!("Alice"));
    alice.version = 4;
    let mut batch = commit();
    batch.persons = vec![alice.clone()];
    batch.distinct_ids = vec![assign("bob", &alice)];
    store.commit_ingest(&batch).await.expect("commit");
    let lookup = store.persons_by_distinct_ids(TEAM, &ids).await.expect("lookup");
    assert_eq!(lookup.persons.get(&alice.uuid), Some(&alice));
    assert_eq!(lookup.distinct_ids.get("bob"), Some(&alice.uuid));
}

pub async fn merges_move_ids_and_keep_overrides_one_hop(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let (a, b, c) = (person(1, json!({"a": 1})), person(2, json!({"b": 2})), person(3, json!({"c": 3})));
    let mut batch = commit();
    batch.persons = vec![a.clone(), b.clone(), c.clone()];
    batch.distinct_ids = vec![assign("a1", &a), assign("a2", &a), assign("b1", &b), assign("c1", &c)];
    store.commit_ingest(&batch).await.expect("commit");

    let mut batch = commit();
    batch.merges.push(PersonMerge { team_id: TEAM, old: a.uuid, into: b.uuid });
    store.commit_ingest(&batch).await.expect("merge a into b");
    let mut batch = commit();
    batch.merges.push(PersonMerge { team_id: TEAM, old: b.uuid, into: c.uuid });
    store.commit_ingest(&batch).await.expect("merge b into c");

    for id in ["a1", "a2", "b1", "c1"] {
        assert_eq!(owner(&store, id).await, Some(c.uuid), "{id} ends with the survivor");
    }
    let persons = store.persons(TEAM, None, 10).await.expect("persons");
    assert_eq!(
        persons.iter().map(|p| p.uuid).collect::<Vec<_>>(),
        vec![c.uuid],
        "merged persons are deleted"
    );
    let overrides = store.person_overrides(TEAM).await.expect("overrides");
    let pairs: Vec<_> = overrides.iter().map(|o| (o.old_person_id, o.override_person_id)).collect();
    assert_eq!(pairs, vec![(a.uuid, c.uuid), (b.uuid, c.uuid)], "overrides point at the survivor directly");
    assert!(overrides.iter().all(|o| o.version >= 1));
    let a_override = overrides.iter().find(|o| o.old_person_id == a.uuid).expect("a's override");
    assert!(a_override.version >= 2, "a re-pointed override gets a new version");
}

pub async fn ingest_commit_is_all_or_nothing(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let alice = person(1, json!({"name": "Alice"}));
    let mut batch = commit();
    batch.persons.push(alice.clone());
    batch.distinct_ids.push(assign("alice", &alice));
    batch.offsets = vec![(0, 10), (1, u64::MAX)];
    assert!(store.commit_ingest(&batch).await.is_err(), "an offset beyond i64 is refused");
    assert_eq!(owner(&store, "alice").await, None, "nothing of a failed commit is applied");
    assert!(store.persons(TEAM, None, 10).await.expect("persons").is_empty());
    assert!(store.ingest_offsets("ingest").await.expect("offsets").is_empty());
}

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
}

pub async fn groups_and_group_types(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let company = GroupType { team_id: TEAM, group_type: "company".into(), group_type_index: 0 };
    let project = GroupType { team_id: TEAM, group_type: "project".into(), group_type_index: 1 };
    let acme = Group {
        team_id: TEAM,
        group_type_index: 0,
        group_key: "acme".into(),
        properties: props(json!({"name": "Acme", "seats": 5})),
        created_at_us: 1,
        version: 1,
    };
    let mut batch = commit();
    batch.group_types = vec![company.clone(), project.clone()];
    batch.groups = vec![acme.clone()];
    store.commit_ingest(&batch).await.expect("commit");
    // Declaring a known type again changes nothing.
    let mut batch = commit();
    batch.group_types = vec![company.clone()];
    let acme2 = Group { properties: props(json!({"name": "Acme Inc"})), version: 2, ..acme.clone() };
    batch.groups = vec![acme2.clone()];
    store.commit_ingest(&batch).await.expect("commit");

    assert_eq!(store.group_types(TEAM).await.expect("types"), vec![company, project]);
    let found =
        store.groups_by_keys(TEAM, &[(0, "acme".into()), (0, "nope".into()), (1, "acme".into())]).await;
    assert_eq!(found.expect("groups"), vec![acme2.clone()]);
    assert_eq!(store.groups(TEAM).await.expect("groups"), vec![acme2]);
    assert!(store.group_types(TEAM + 1).await.expect("types").is_empty());
}

pub async fn warnings_newest_first(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let warning = |kind: &str, at: i64| IngestionWarning {
        team_id: TEAM,
        kind: kind.into(),
        event_uuid: Some(Uuid::from_u128(at as u128)),
        details: json!({"at": at}),
        timestamp_us: at,
    };
    let mut batch = commit();
    batch.warnings = vec![warning("first", 1), warning("third", 3), warning("second", 2)];
    batch.warnings.push(IngestionWarning { event_uuid: None, ..warning("none", 0) });
    store.commit_ingest(&batch).await.expect("commit");
    let found = store.ingestion_warnings(TEAM, 2).await.expect("warnings");
    assert_eq!(found, vec![warning("third", 3), warning("second", 2)]);
    let all = store.ingestion_warnings(TEAM, 10).await.expect("warnings");
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].event_uuid, None);
    assert!(store.ingestion_warnings(TEAM + 1, 10).await.expect("warnings").is_empty());
}

pub async fn batches_larger_than_one_statement(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let count = 12_000u128;
    let persons: Vec<Person> = (0..count).map(|i| person(i + 1, json!({"i": i as u64}))).collect();
    let mut batch = commit();
    batch.distinct_ids = persons.iter().map(|p| assign(&format!("user-{}", p.uuid.as_u128()), p)).collect();
    batch.persons = persons;
    store.commit_ingest(&batch).await.expect("commit");
    let ids: Vec<String> = (0..count + 50).map(|i| format!("user-{}", i + 1)).collect();
    let lookup = store.persons_by_distinct_ids(TEAM, &ids).await.expect("lookup");
    assert_eq!(lookup.distinct_ids.len(), count as usize);
    assert_eq!(lookup.persons.len(), count as usize);
    assert_eq!(lookup.persons[&Uuid::from_u128(77)].properties["i"], json!(76));
}
