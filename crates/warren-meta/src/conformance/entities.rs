//! [`Entities`]' properties: entities with unique keys, ids never given
//! again, static cohorts' people, and the definitions ingest collects.

use serde_json::json;
use uuid::Uuid;

use super::{commit, MetaFactory, TEAM};
use crate::entities::{EntityKind, EntityWrite, EventDefinition, PropertyDefinition, PropertyKind};
use crate::{BootstrapRequest, Entities, IngestCommit, IngestCommits, MetaError, Tenancy};

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
