//! [`PersonStore`]'s and [`IngestCommits`]' properties: persons and their
//! distinct ids, search, merges and overrides, groups and warnings, as ingest
//! commits them: all or nothing, in batches of any size.

use serde_json::json;
use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person};
use warren_core::ports::ConsumerOffsets;

use super::{assign, commit, owner, person, props, MetaFactory, TEAM};
use crate::{IngestCommits, PersonMerge, PersonStore};

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
