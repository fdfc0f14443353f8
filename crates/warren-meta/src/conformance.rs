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
use warren_core::ports::{ConsumerOffsets, MigrationLedger};

use crate::accounts::{NewApiKey, NewProject, NewUser, ProjectUpdate, Role};
use crate::audit::{AuditEntry, AuditFilter};
use crate::entities::{EntityKind, EntityWrite, EventDefinition, PropertyDefinition, PropertyKind};
use crate::{
    Accounts, AuditLog, BootstrapRequest, DistinctIdAssignment, Entities, IngestCommit, IngestCommits,
    MetaError, MetaSchema, MetaStore, PersonMerge, PersonStore, Tenancy,
};

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
            batches_larger_than_one_statement,
            users_organizations_and_sessions,
            api_keys_are_scoped_revocable_and_hashed,
            projects_are_created_and_updated,
            audit_log_filters_and_pages,
            entities_round_trip_with_unique_keys,
            deleted_entity_ids_are_never_given_again,
            static_cohorts_and_definitions,
            persons_are_searched_newest_first,
            migration_status_lists_every_migration,
            internal_project_is_made_once,
            store_migrations_keep_their_operations_and_one_lock_holder
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
    let organization =
        store.api_key_by_secret(&first.api_key).await.expect("lookup").map(|key| key.organization_id);
    assert_eq!(organization, Some(first.project.organization_id));
    assert_eq!(store.api_key_by_secret("phx_wrong_wrong_wrong").await.expect("lookup"), None);
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
    assert!(store.api_key_by_secret("phx_fixed_api_key_0123456789").await.expect("lookup").is_some());
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

    let owned = store.distinct_ids_of(TEAM, &[alice.uuid, bob.uuid, Uuid::from_u128(99)]).await.expect("ids");
    assert_eq!(owned[&alice.uuid], vec!["alice".to_string(), "alice@example.com".to_string()]);
    assert_eq!(owned[&bob.uuid], vec!["bob".to_string()]);
    assert!(owned[&Uuid::from_u128(99)].is_empty(), "an unknown person has none");
    let known = store.existing_persons(TEAM, &[alice.uuid, Uuid::from_u128(99)]).await.expect("persons");
    assert_eq!(known, std::collections::HashSet::from([alice.uuid]));
    assert!(store.existing_persons(TEAM + 1, &[alice.uuid]).await.expect("persons").is_empty());
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

pub async fn persons_are_searched_newest_first(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let old = person(1, json!({"email": "Ada@Example.com"}));
    let mid = person(2, json!({"email": "grace@example.org", "name": "Grace Hopper", "note": "ada"}));
    let new = person(3, json!({"name": "100%_sure", "email": 7}));
    let mut batch = commit();
    batch.persons = vec![old.clone(), mid.clone(), new.clone()];
    batch.distinct_ids = vec![assign("ada-1", &old), assign("device-XYZ", &new), assign("grace", &mid)];
    store.commit_ingest(&batch).await.expect("commit");

    let uuids = |persons: Vec<Person>| persons.into_iter().map(|p| p.uuid).collect::<Vec<_>>();
    let all = store.search_persons(TEAM, None, 10, 0).await.expect("list");
    assert_eq!(uuids(all), vec![new.uuid, mid.uuid, old.uuid], "newest first");
    let paged = store.search_persons(TEAM, Some("  "), 1, 1).await.expect("page");
    assert_eq!(uuids(paged), vec![mid.uuid], "blank search lists all; offset pages");
    for (text, expected, why) in [
        ("ada@EXAMPLE", vec![old.uuid], "an email prefix, in any case"),
        ("grace h", vec![mid.uuid], "a name prefix"),
        ("ada", vec![old.uuid], "email and distinct id match once; other properties do not"),
        ("device-X", vec![new.uuid], "a distinct id prefix"),
        ("device-x", vec![], "distinct ids keep their case"),
        ("XYZ", vec![], "a prefix, not a substring"),
        ("100%_", vec![new.uuid], "% and _ are literal"),
        ("100%x", vec![], "% is no wildcard"),
        ("note=ada", vec![mid.uuid], "one property's exact value"),
        ("note = ada ", vec![mid.uuid], "key and value are trimmed"),
        ("note=Ada", vec![], "a property's value keeps its case"),
        ("email=7", vec![new.uuid], "a number as written"),
        ("name=100%_sure", vec![new.uuid], "a value with % and _"),
        ("=ada", vec![], "no key, no property test"),
    ] {
        let found = store.search_persons(TEAM, Some(text), 10, 0).await.expect("search");
        assert_eq!(uuids(found), expected, "{text:?}: {why}");
    }
    let by_uuid = store.search_persons(TEAM, Some(&mid.uuid.to_string()), 10, 0).await.expect("search");
    assert_eq!(uuids(by_uuid), vec![mid.uuid]);
    assert!(store.search_persons(TEAM + 1, Some("ada"), 10, 0).await.expect("search").is_empty());

    assert_eq!(store.count_persons(TEAM).await.expect("count"), 3);
    assert_eq!(store.count_persons(TEAM + 1).await.expect("count"), 0);
    assert_eq!(store.person(TEAM, mid.uuid).await.expect("person"), Some(mid.clone()));
    assert_eq!(store.person(TEAM + 1, mid.uuid).await.expect("person"), None);
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

pub async fn internal_project_is_made_once(factory: &impl MetaFactory) {
    let store = factory.create().await;
    assert!(store.ensure_internal_project("Warren").await.is_err(), "needs a bootstrapped deployment");
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let default = store.project(1).await.expect("project").expect("project 1");
    assert!(!default.internal);
    // Processes starting at once all end up with the same one.
    let name = "Warren (internal)";
    let (a, b, c) = tokio::join!(
        store.ensure_internal_project(name),
        store.ensure_internal_project(name),
        store.ensure_internal_project(name)
    );
    let internal = a.expect("internal");
    assert_eq!(b.expect("internal"), internal);
    assert_eq!(c.expect("internal"), internal);
    assert!(internal.internal);
    assert_eq!(internal.organization_id, default.organization_id);
    assert_eq!(internal.name, name);
    let again = store.ensure_internal_project("another name").await.expect("internal");
    assert_eq!(again, internal, "made once");
    let found = store.project_by_token(&internal.api_token).await.expect("by token");
    assert_eq!(found, Some(internal));
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
    let into_c = store.overrides_into(TEAM, &[c.uuid, Uuid::from_u128(99)]).await.expect("into c");
    assert_eq!(into_c, overrides, "both overrides point at c");
    assert!(store.overrides_into(TEAM, &[a.uuid]).await.expect("into a").is_empty());
    assert!(store.overrides_into(TEAM + 1, &[c.uuid]).await.expect("other team").is_empty());
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
    // The port alone moves one consumer's offsets and nothing else.
    store.commit_offsets("replica", &[(1, 4), (2, 8)]).await.expect("commit offsets");
    store.commit_offsets("replica", &[(1, 6)]).await.expect("commit offsets");
    let replica = store.ingest_offsets("replica").await.expect("offsets");
    assert_eq!(replica, std::collections::HashMap::from([(1, 6), (2, 8)]));
    assert_eq!(store.ingest_offsets("ingest").await.expect("offsets").len(), 2);
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
    let uuids: Vec<Uuid> = (0..count + 50).map(|i| Uuid::from_u128(i + 1)).collect();
    assert_eq!(store.existing_persons(TEAM, &uuids).await.expect("persons").len(), count as usize);
}

fn new_user(email: &str) -> NewUser {
    NewUser { email: email.into(), name: "Ada".into(), password: "correct horse battery".into() }
}

pub async fn users_organizations_and_sessions(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let ada = store.create_user(new_user(" Ada@Example.com ")).await.expect("user");
    assert_eq!(ada.email, "ada@example.com", "emails are trimmed and lower-cased");
    let again = store.create_user(new_user("ada@example.com")).await;
    assert!(matches!(again, Err(MetaError::Conflict { .. })), "{again:?}");
    for bad in [NewUser { password: "short".into(), ..new_user("b@example.com") }, new_user("not-an-email")] {
        assert!(matches!(store.create_user(bad).await, Err(MetaError::Invalid { .. })));
    }
    assert_eq!(
        store.verify_login("ADA@example.com", "correct horse battery").await.expect("login"),
        Some(ada.clone())
    );
    assert_eq!(store.verify_login("ada@example.com", "wrong horse battery").await.expect("login"), None);
    assert_eq!(store.verify_login("nobody@example.com", "correct horse battery").await.expect("login"), None);

    assert!(!store.any_organization().await.expect("organizations"), "a new store has none");
    let org = store.create_organization("Acme", ada.id).await.expect("organization");
    assert_eq!(store.role(org.id, ada.id).await.expect("role"), Some(Role::Owner));
    assert!(store.any_organization().await.expect("organizations"));
    let bob = store.create_user(new_user("bob@example.com")).await.expect("user");
    assert_eq!(store.role(org.id, bob.id).await.expect("role"), None);
    store.set_role(org.id, bob.id, Some(Role::Member)).await.expect("add");
    store.set_role(org.id, bob.id, Some(Role::Admin)).await.expect("promote");
    let members = store.members(org.id).await.expect("members");
    assert_eq!(
        members.iter().map(|m| (m.user.email.as_str(), m.role)).collect::<Vec<_>>(),
        [("ada@example.com", Role::Owner), ("bob@example.com", Role::Admin)]
    );
    assert_eq!(store.memberships(bob.id).await.expect("memberships")[0].organization, org);
    let orphaning = store.set_role(org.id, ada.id, Some(Role::Member)).await;
    assert!(matches!(orphaning, Err(MetaError::Invalid { .. })), "the last owner stays: {orphaning:?}");
    assert!(matches!(store.set_role(org.id, ada.id, None).await, Err(MetaError::Invalid { .. })));
    assert_eq!(
        store.role(org.id, ada.id).await.expect("role"),
        Some(Role::Owner),
        "the refused change left nothing"
    );
    store.set_role(org.id, bob.id, None).await.expect("remove");
    assert!(store.memberships(bob.id).await.expect("memberships").is_empty());
    assert_eq!(store.user_by_email("BOB@example.com").await.expect("lookup"), Some(bob.clone()));

    let now = 1_800_000_000_000_000;
    let token = store.create_login_session(ada.id, now, 3_600_000_000).await.expect("session");
    assert_eq!(store.user_for_session(&token, now + 1).await.expect("session"), Some(ada.clone()));
    assert_eq!(store.user_for_session(&token, now + 3_600_000_001).await.expect("session"), None, "expired");
    assert_eq!(store.user_for_session("forged", now).await.expect("session"), None);
    store.delete_login_session(&token).await.expect("logout");
    assert_eq!(store.user_for_session(&token, now + 1).await.expect("session"), None, "logged out");

    let token = store.create_login_session(ada.id, now, 3_600_000_000).await.expect("session");
    assert!(store.set_password(ada.id, "short").await.is_err());
    store.set_password(ada.id, "a brand new password").await.expect("new password");
    assert_eq!(store.user_for_session(&token, now + 1).await.expect("session"), None, "sessions end");
    assert_eq!(store.verify_login("ada@example.com", "correct horse battery").await.expect("login"), None);
    assert_eq!(
        store.verify_login("ada@example.com", "a brand new password").await.expect("login"),
        Some(ada.clone())
    );
}

pub async fn api_keys_are_scoped_revocable_and_hashed(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let ada = store.create_user(new_user("ada@example.com")).await.expect("user");
    let org = store.create_organization("Acme", ada.id).await.expect("organization");
    let made = store
        .create_api_key(NewApiKey {
            organization_id: org.id,
            user_id: Some(ada.id),
            label: "ci".into(),
            scopes: vec!["insight:read".into(), "feature_flag:write".into()],
            project_ids: vec![7],
        })
        .await
        .expect("key");
    assert!(made.secret.starts_with("phx_"));
    assert!(!made.key.mask.contains(&made.secret[8..made.secret.len() - 4]), "the mask hides the middle");
    let found = store.api_key_by_secret(&made.secret).await.expect("lookup").expect("found");
    assert_eq!((found.scopes.len(), found.project_ids.as_slice()), (2, &[7][..]));
    assert!(
        found.last_used_at.is_some()
            || store.api_key_by_secret(&made.secret).await.expect("lookup").is_some()
    );
    let listed = store.api_keys(org.id).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some(), "use is recorded");
    assert!(
        !store.revoke_api_key(org.id + 1, made.key.id).await.expect("revoke"),
        "another organization's key"
    );
    assert!(store.revoke_api_key(org.id, made.key.id).await.expect("revoke"));
    let revoked = store.api_key_by_secret(&made.secret).await.expect("lookup").expect("still found");
    assert!(revoked.revoked_at.is_some());
}

pub async fn projects_are_created_and_updated(factory: &impl MetaFactory) {
    let store = factory.create().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let ada = store.create_user(new_user("ada@example.com")).await.expect("user");
    let org = store.create_organization("Acme", ada.id).await.expect("organization");
    let project = store
        .create_project(NewProject {
            organization_id: org.id,
            name: "Web".into(),
            timezone: Some("Asia/Tokyo".into()),
        })
        .await
        .expect("project");
    assert!(project.id > 1, "after the bootstrap project");
    assert_eq!(store.project_by_token(&project.api_token).await.expect("lookup"), Some(project.clone()));
    let bad = NewProject { organization_id: org.id, name: "x".into(), timezone: Some("Nowhere/City".into()) };
    assert!(store.create_project(bad).await.is_err());
    let updated = store
        .update_project(
            project.id,
            ProjectUpdate {
                week_start_day: Some(1),
                name: Some("Web app".into()),
                ..ProjectUpdate::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.week_start_day, updated.timezone.as_str()),
        ("Web app", 1, "Asia/Tokyo")
    );
    assert!(store
        .update_project(project.id, ProjectUpdate { week_start_day: Some(5), ..ProjectUpdate::default() })
        .await
        .is_err());
    assert_eq!(store.projects(org.id).await.expect("list"), vec![updated]);
    assert_eq!(store.update_project(9_999, ProjectUpdate::default()).await.expect("update"), None);
}

fn audit(org: Option<i64>, action: &str, at_us: i64, outcome: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_us,
        organization_id: org,
        project_id: None,
        user_id: Some(1),
        api_key_id: None,
        actor: "ada@example.com".into(),
        credential: "session".into(),
        action: action.into(),
        method: "POST".into(),
        route: "/api/x".into(),
        resource: None,
        source: "127.0.0.1".into(),
        status: 200,
        outcome: outcome.into(),
    }
}

pub async fn audit_log_filters_and_pages(factory: &impl MetaFactory) {
    let store = factory.create().await;
    for i in 0..10 {
        let action = if i % 2 == 0 { "insight.create" } else { "insight.read" };
        store.record_audit(&audit(Some(1), action, 1_000 + i, "ok")).await.expect("record");
    }
    store.record_audit(&audit(Some(2), "insight.create", 5_000, "ok")).await.expect("record");
    store.record_audit(&audit(Some(1), "login.failed", 6_000, "invalid_credentials")).await.expect("record");
    let all = store.audit_log(1, &AuditFilter { limit: 100, ..AuditFilter::default() }).await.expect("list");
    assert_eq!(all.len(), 11, "other organizations' entries are not listed");
    assert_eq!(all[0].action, "login.failed", "newest first");
    let creates = AuditFilter { action: Some("insight.create".into()), limit: 100, ..AuditFilter::default() };
    assert_eq!(store.audit_log(1, &creates).await.expect("list").len(), 5);
    let window =
        AuditFilter { since_us: Some(1_002), until_us: Some(1_005), limit: 100, ..AuditFilter::default() };
    assert_eq!(
        store.audit_log(1, &window).await.expect("list").iter().map(|e| e.at_us).collect::<Vec<_>>(),
        [1_004, 1_003, 1_002]
    );
    let first_page =
        store.audit_log(1, &AuditFilter { limit: 4, ..AuditFilter::default() }).await.expect("list");
    let next = AuditFilter { before_id: first_page.last().map(|e| e.id), limit: 4, ..AuditFilter::default() };
    let second_page = store.audit_log(1, &next).await.expect("list");
    assert_eq!(second_page.len(), 4);
    assert!(second_page[0].id < first_page[3].id);
    let failed =
        AuditFilter { outcome: Some("invalid_credentials".into()), limit: 10, ..AuditFilter::default() };
    assert_eq!(store.audit_log(1, &failed).await.expect("list").len(), 1);
    assert_eq!(store.prune_audit_log(1_005).await.expect("prune"), 5);
    let left = store.audit_log(1, &AuditFilter { limit: 100, ..AuditFilter::default() }).await.expect("list");
    assert_eq!(left.len(), 6);
    // Readers page by id, so ids go on even after retention empties the log.
    assert_eq!(store.prune_audit_log(i64::MAX).await.expect("prune"), 7);
    store.record_audit(&audit(Some(1), "insight.read", 7_000, "ok")).await.expect("record");
    let after = store.audit_log(1, &AuditFilter { limit: 1, ..AuditFilter::default() }).await.expect("list");
    assert!(after[0].id > left[0].id, "an emptied log gave id {} again", after[0].id);
}

fn flag(project_id: i64, key: &str) -> EntityWrite {
    EntityWrite {
        project_id,
        kind: EntityKind::FeatureFlag,
        unique_key: Some(key.into()),
        body: json!({"key": key, "filters": {"groups": [{"rollout_percentage": 50}]}}),
        created_by: None,
    }
}

pub async fn entities_round_trip_with_unique_keys(factory: &impl MetaFactory) {
    let store = factory.create().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let beta = store.create_entity(flag(1, "beta")).await.expect("create");
    assert_eq!(beta.body["filters"]["groups"][0]["rollout_percentage"], 50);
    let duplicate = store.create_entity(flag(1, "beta")).await;
    assert!(matches!(duplicate, Err(MetaError::Conflict { .. })), "{duplicate:?}");
    let gamma = store.create_entity(flag(1, "gamma")).await.expect("create");
    let action = EntityWrite {
        kind: EntityKind::Action,
        unique_key: None,
        body: json!({"name": "signed up"}),
        ..flag(1, "")
    };
    let action = store.create_entity(action.clone()).await.expect("action");
    store.create_entity(EntityWrite { unique_key: None, ..flag(1, "x") }).await.expect("keys may be empty");
    assert_eq!(store.entities(1, EntityKind::FeatureFlag).await.expect("list").len(), 3);
    assert_eq!(
        store.entity(1, EntityKind::Action, action.id).await.expect("get").map(|e| e.body),
        Some(json!({"name": "signed up"}))
    );
    assert_eq!(
        store.entity(1, EntityKind::FeatureFlag, action.id).await.expect("get"),
        None,
        "kinds do not mix"
    );
    assert_eq!(
        store.entity(2, EntityKind::Action, action.id).await.expect("get"),
        None,
        "projects do not mix"
    );
    let renamed = store.replace_entity(gamma.id, flag(1, "beta")).await;
    assert!(matches!(renamed, Err(MetaError::Conflict { .. })), "a replace cannot take a used key");
    let replaced = store.replace_entity(gamma.id, flag(1, "delta")).await.expect("replace").expect("exists");
    assert_eq!(
        (replaced.unique_key.as_deref(), replaced.created_at.as_str()),
        (Some("delta"), gamma.created_at.as_str())
    );
    assert_eq!(
        store.replace_entity(gamma.id, flag(2, "delta")).await.expect("replace"),
        None,
        "other project"
    );
    assert!(store.delete_entity(1, EntityKind::FeatureFlag, beta.id).await.expect("delete"));
    assert!(!store.delete_entity(1, EntityKind::FeatureFlag, beta.id).await.expect("delete"));
    store.create_entity(flag(1, "beta")).await.expect("a deleted flag's key is free again");
}

/// Flag conditions, dashboard tiles and audit entries name entities by id:
/// an id handed out again would make them name an unrelated new entity.
pub async fn deleted_entity_ids_are_never_given_again(factory: &impl MetaFactory) {
    let store = factory.create().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let cohort = |name: &str| EntityWrite {
        kind: EntityKind::Cohort,
        unique_key: None,
        body: json!({"name": name, "is_static": true}),
        ..flag(1, "")
    };
    let first = store.create_entity(cohort("first")).await.expect("create");
    let newest = store.create_entity(cohort("newest")).await.expect("create");
    assert!(store.delete_entity(1, EntityKind::Cohort, newest.id).await.expect("delete"));
    let next = store.create_entity(cohort("next")).await.expect("create");
    assert!(next.id > newest.id, "the newest entity's id {} was given again", newest.id);
    for entity in [&first, &next] {
        assert!(store.delete_entity(1, EntityKind::Cohort, entity.id).await.expect("delete"));
    }
    // Across reconnects, and when no entity is left to take the highest id.
    let store = factory.reconnect(store).await;
    let after_all = store.create_entity(cohort("after all")).await.expect("create");
    assert!(after_all.id > next.id, "an emptied table gave id {} again", after_all.id);
}

pub async fn static_cohorts_and_definitions(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let people: Vec<Uuid> = (0..3_000u128).map(Uuid::from_u128).collect();
    store.set_cohort_people(1, 5, &people).await.expect("members");
    store.set_cohort_people(1, 5, &people[..2]).await.expect("replace members");
    assert_eq!(store.cohort_people(1, 5).await.expect("members"), people[..2].to_vec());
    assert!(store.cohort_people(1, 6).await.expect("members").is_empty());
    assert!(store.in_static_cohort(1, 5, people[1]).await.expect("member"));
    assert!(!store.in_static_cohort(1, 5, people[2]).await.expect("member"));

    let event = |name: &str, first, last| EventDefinition {
        team_id: TEAM,
        name: name.into(),
        first_seen_us: first,
        last_seen_us: last,
    };
    let property = |name: &str, kind, kind_type: &str| PropertyDefinition {
        team_id: TEAM,
        kind,
        group_type_index: -1,
        name: name.into(),
        property_type: Some(kind_type.into()),
        first_seen_us: 10,
    };
    let first = IngestCommit {
        event_definitions: vec![event("$pageview", 100, 200)],
        property_definitions: vec![
            property("$browser", PropertyKind::Event, "String"),
            property("plan", PropertyKind::Person, "String"),
        ],
        ..commit()
    };
    store.commit_ingest(&first).await.expect("commit");
    let second = IngestCommit {
        event_definitions: vec![event("$pageview", 50, 150), event("signed up", 300, 300)],
        property_definitions: vec![property("$browser", PropertyKind::Event, "Numeric")],
        ..commit()
    };
    store.commit_ingest(&second).await.expect("commit");
    assert_eq!(
        store.event_definitions(TEAM).await.expect("events"),
        [event("$pageview", 50, 200), event("signed up", 300, 300)]
    );
    let properties = store.property_definitions(TEAM).await.expect("properties");
    assert_eq!(properties.len(), 2);
    assert_eq!(properties[0].property_type.as_deref(), Some("String"), "the first type seen stays");
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
