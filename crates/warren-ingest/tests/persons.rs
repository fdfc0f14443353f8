//! Person semantics as a table of event sequences and the persons, groups,
//! warnings and rows they must produce, run through the real ingest loop
//! (segment log → ingest → Delta table) on both meta-store dialects.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;
use warren_core::config::{EventLogConfig, EventStoreConfig, IngestConfig};
use warren_core::person::{person_id_for_distinct_id, Person, PersonMode};
use warren_core::{event::partition_key, CapturedEvent};
use warren_ingest::Ingester;
use warren_log::{AppendRecord, EventLog, SegmentLog, SegmentLogOptions};
use warren_meta::{BootstrapRequest, SqlMeta};
use warren_meta::{MetaSchema, PersonStore, Tenancy};
use warren_store::{DeltaStore, DeltaStoreOptions, EventRow};

const TOKEN: &str = "phc_person_semantics";
const TEAM: i64 = 1;
/// 2026-11-26T10:00:00Z in microseconds.
const T0_US: i64 = 1_795_687_200_000_000;

struct Harness {
    _dir: tempfile::TempDir,
    log: Arc<SegmentLog>,
    meta: Arc<SqlMeta>,
    store: Arc<DeltaStore>,
    sent: usize,
}

impl Harness {
    async fn new(meta_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_options = SegmentLogOptions::from_config(dir.path().join("log"), &EventLogConfig::default());
        let log = Arc::new(SegmentLog::open(log_options).expect("open log"));
        let url = meta_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("meta.db").display()));
        let meta = Arc::new(SqlMeta::connect(&url).await.expect("meta"));
        meta.migrate().await.expect("migrate");
        let request = BootstrapRequest { project_token: Some(TOKEN.into()), ..BootstrapRequest::default() };
        meta.bootstrap(request).await.expect("bootstrap");
        let options =
            DeltaStoreOptions::from_config(&EventStoreConfig::default(), dir.path()).expect("options");
        let store = Arc::new(DeltaStore::open(options).await.expect("store"));
        Self { _dir: dir, log, meta, store, sent: 0 }
    }

    /// Appends events (`{"event", "distinct_id", ...rest of the payload}`)
    /// one second apart, then ingests them.
    async fn ingest(&mut self, events: &[Value]) {
        let mut records = Vec::new();
        for payload in events {
            let distinct_id = payload["distinct_id"].as_str().expect("distinct_id").to_string();
            let uuid = payload
                .get("uuid")
                .and_then(Value::as_str)
                .map(|u| Uuid::parse_str(u).expect("uuid"))
                .unwrap_or_else(|| Uuid::from_u128(self.sent as u128 + 1));
            let at = chrono::DateTime::from_timestamp_micros(T0_US + self.sent as i64 * 1_000_000)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let captured = CapturedEvent {
                uuid,
                distinct_id: distinct_id.clone(),
                ip: "127.0.0.1".into(),
                data: payload.to_string(),
                now: at.clone(),
                sent_at: None,
                token: TOKEN.into(),
                event: payload["event"].as_str().expect("event").into(),
                timestamp: at,
                historical_migration: false,
            };
            records.push(AppendRecord {
                key: partition_key(TOKEN, &distinct_id).into_bytes(),
                value: serde_json::to_vec(&captured).expect("encode"),
                timestamp_ms: T0_US / 1000 + self.sent as i64,
            });
            self.sent += 1;
        }
        self.log.append(records).await.expect("append");
        let config = IngestConfig { batch_max_wait_ms: 0, ..IngestConfig::default() };
        let ingester = Ingester::new(self.log.clone(), self.meta.clone(), self.store.clone(), config);
        ingester.catch_up().await.expect("ingest");
    }

    async fn person(&self, distinct_id: &str) -> Option<Person> {
        warren_meta::person_by_distinct_id(self.meta.as_ref(), TEAM, distinct_id).await.expect("lookup")
    }

    async fn persons(&self) -> Vec<Person> {
        self.meta.persons(TEAM, None, 1000).await.expect("persons")
    }

    async fn rows(&self) -> Vec<EventRow> {
        self.store.read_rows(None).await.expect("rows")
    }

    async fn warnings(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .meta
            .ingestion_warnings(TEAM, 100)
            .await
            .expect("warnings")
            .into_iter()
            .map(|w| w.kind)
            .collect();
        kinds.sort();
        kinds
    }

    /// Each row's person id after overrides.
    async fn resolved_person_ids(&self) -> Vec<(String, Uuid)> {
        let overrides: HashMap<Uuid, Uuid> = self
            .meta
            .person_overrides(TEAM)
            .await
            .expect("overrides")
            .into_iter()
            .map(|o| (o.old_person_id, o.override_person_id))
            .collect();
        self.rows()
            .await
            .into_iter()
            .map(|row| (row.distinct_id, overrides.get(&row.person_id).copied().unwrap_or(row.person_id)))
            .collect()
    }
}

fn event(name: &str, distinct_id: &str, properties: Value) -> Value {
    json!({"event": name, "distinct_id": distinct_id, "properties": properties})
}

/// One person: its distinct ids, properties and whether it is identified.
struct Expected {
    ids: &'static [&'static str],
    properties: Value,
    identified: bool,
}

struct Case {
    name: &'static str,
    events: Vec<Value>,
    persons: Vec<Expected>,
    warnings: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "set_once then set then unset, in that order",
            events: vec![
                event("e", "u", json!({"$set_once": {"a": 1, "c": 1}, "$set": {"b": 1}})),
                event("e", "u", json!({"$set_once": {"a": 2, "d": 4}, "$set": {"b": 2, "a": 3}})),
                event("e", "u", json!({"$unset": ["c", "missing"]})),
            ],
            persons: vec![Expected {
                ids: &["u"],
                properties: json!({"a": 3, "b": 2, "d": 4}),
                identified: false,
            }],
            warnings: &[],
        },
        Case {
            name: "the creating event's $unset does not apply to the new person",
            events: vec![
                event("e", "u", json!({"$set": {"a": 1}, "$unset": ["a"]})),
                event("e", "v", json!({"$set": {"b": 1}})),
                event("e", "v", json!({"$set": {"c": 1}, "$unset": ["b"]})),
            ],
            persons: vec![
                Expected { ids: &["u"], properties: json!({"a": 1}), identified: false },
                Expected { ids: &["v"], properties: json!({"c": 1}), identified: false },
            ],
            warnings: &[],
        },
        Case {
            name: "numeric ids merge as their text",
            events: vec![
                event("e", "42", json!({"$set": {"a": 1}})),
                event("$identify", "user", json!({"$anon_distinct_id": 42})),
            ],
            persons: vec![Expected { ids: &["42", "user"], properties: json!({"a": 1}), identified: true }],
            warnings: &[],
        },
        Case {
            name: "a new person starts as set_once overlaid by set; top-level $set wins",
            events: vec![json!({"event": "e", "distinct_id": "u", "$set": {"x": "top"},
                "properties": {"$set_once": {"x": 1, "y": 1}, "$set": {"x": 2}}})],
            persons: vec![Expected {
                ids: &["u"],
                properties: json!({"x": "top", "y": 1}),
                identified: false,
            }],
            warnings: &[],
        },
        Case {
            name: "identify attaches the user id to the anonymous person",
            events: vec![
                event("$pageview", "anon", json!({"$set": {"seen": true}})),
                event("$identify", "user", json!({"$anon_distinct_id": "anon", "$set": {"email": "u@x.io"}})),
            ],
            persons: vec![Expected {
                ids: &["anon", "user"],
                properties: json!({"seen": true, "email": "u@x.io"}),
                identified: true,
            }],
            warnings: &[],
        },
        Case {
            name: "identify with neither id known creates one person with both",
            events: vec![event("$identify", "user", json!({"$anon_distinct_id": "anon", "$set": {"a": 1}}))],
            persons: vec![Expected { ids: &["anon", "user"], properties: json!({"a": 1}), identified: true }],
            warnings: &[],
        },
        Case {
            name: "alias attaches the alias to the user's person",
            events: vec![
                event("e", "user", json!({"$set": {"a": 1}})),
                event("$create_alias", "user", json!({"alias": "alias-1"})),
            ],
            persons: vec![Expected {
                ids: &["alias-1", "user"],
                properties: json!({"a": 1}),
                identified: true,
            }],
            warnings: &[],
        },
        Case {
            name: "identify merges an unidentified person; the target's properties win",
            events: vec![
                event("e", "a", json!({"$set": {"p": "a", "q": "a"}})),
                event("e", "b", json!({"$set": {"p": "b"}})),
                event("$identify", "b", json!({"$anon_distinct_id": "a", "$set": {"r": "event"}})),
            ],
            persons: vec![Expected {
                ids: &["a", "b"],
                properties: json!({"p": "b", "q": "a", "r": "event"}),
                identified: true,
            }],
            warnings: &[],
        },
        Case {
            name: "merging an identified person is refused",
            events: vec![
                event("$identify", "u1", json!({"$anon_distinct_id": "x1"})),
                event("$identify", "u2", json!({"$anon_distinct_id": "x2"})),
                event("$identify", "u2", json!({"$anon_distinct_id": "u1", "$set": {"kept": true}})),
            ],
            persons: vec![
                Expected { ids: &["u1", "x1"], properties: json!({}), identified: true },
                Expected { ids: &["u2", "x2"], properties: json!({"kept": true}), identified: true },
            ],
            warnings: &["cannot_merge_already_identified"],
        },
        Case {
            name: "merge_dangerously merges identified persons",
            events: vec![
                event("$identify", "u1", json!({"$anon_distinct_id": "x1", "$set": {"one": 1}})),
                event("$identify", "u2", json!({"$anon_distinct_id": "x2", "$set": {"two": 2}})),
                event("$merge_dangerously", "u2", json!({"alias": "u1"})),
            ],
            persons: vec![Expected {
                ids: &["u1", "u2", "x1", "x2"],
                properties: json!({"one": 1, "two": 2}),
                identified: true,
            }],
            warnings: &[],
        },
        Case {
            name: "illegal ids never merge, case-insensitively or exactly",
            events: vec![
                event("$identify", "user", json!({"$anon_distinct_id": "Anonymous"})),
                event("$identify", "user", json!({"$anon_distinct_id": "null"})),
                event("$create_alias", "user", json!({"alias": "[object Object]"})),
                event("$identify", "other", json!({"$anon_distinct_id": "NULL"})),
            ],
            persons: vec![
                Expected { ids: &["user"], properties: json!({}), identified: false },
                Expected { ids: &["NULL", "other"], properties: json!({}), identified: true },
            ],
            warnings: &[
                "cannot_merge_with_illegal_distinct_id",
                "cannot_merge_with_illegal_distinct_id",
                "cannot_merge_with_illegal_distinct_id",
            ],
        },
        Case {
            name: "personless events create and change no person",
            events: vec![
                event("e", "ghost", json!({"$process_person_profile": false, "$set": {"a": 1}})),
                event("e", "real", json!({"$set": {"b": 1}})),
                event("e", "real", json!({"$process_person_profile": false, "$set": {"b": 2}})),
            ],
            persons: vec![Expected { ids: &["real"], properties: json!({"b": 1}), identified: false }],
            warnings: &[],
        },
        Case {
            name: "initial properties are set once, current ones follow the latest event",
            events: vec![
                event("$pageview", "u", json!({"$browser": "Firefox", "utm_source": "ads"})),
                event("$pageview", "u", json!({"$browser": "Chrome"})),
            ],
            persons: vec![Expected {
                ids: &["u"],
                properties: json!({"$browser": "Chrome", "$initial_browser": "Firefox",
                    "utm_source": "ads", "$initial_utm_source": "ads"}),
                identified: false,
            }],
            warnings: &[],
        },
        Case {
            name: "a $set that would make the properties too large is dropped; the event is kept",
            events: vec![
                event("e", "u", json!({"$set": {"name": "a"}})),
                event("e", "u", json!({"$set": {"blob": "x".repeat(700 * 1024)}})),
                event("e", "u", json!({"$set": {"plan": "pro"}})),
            ],
            persons: vec![Expected {
                ids: &["u"],
                properties: json!({"name": "a", "plan": "pro"}),
                identified: false,
            }],
            warnings: &["person_properties_size_violation"],
        },
        Case {
            name: "a sixth group type is refused with a warning",
            events: vec![event(
                "e",
                "u",
                json!({"$groups": {"t1": "k", "t2": "k", "t3": "k", "t4": "k", "t5": "k", "t6": "k"}}),
            )],
            persons: vec![Expected { ids: &["u"], properties: json!({}), identified: false }],
            warnings: &["group_type_limit_reached"],
        },
    ]
}

async fn check_case(case: Case, meta_url: Option<String>) {
    let mut harness = Harness::new(meta_url).await;
    harness.ingest(&case.events).await;
    let name = case.name;
    let persons = harness.persons().await;
    assert_eq!(persons.len(), case.persons.len(), "{name}: number of persons: {persons:?}");
    for expected in &case.persons {
        let person = harness.person(expected.ids[0]).await.unwrap_or_else(|| panic!("{name}: no person"));
        let ids = harness.meta.distinct_ids_of(TEAM, &[person.uuid]).await.expect("ids").remove(&person.uuid);
        let ids = ids.unwrap_or_default();
        let expected_ids: Vec<String> = expected.ids.iter().map(|id| id.to_string()).collect();
        assert_eq!(ids, expected_ids, "{name}: distinct ids");
        let properties = Value::Object(person.properties.clone());
        let mut without_ip = properties.clone();
        without_ip.as_object_mut().map(|p| p.remove("$ip"));
        assert_eq!(without_ip, expected.properties, "{name}: properties");
        assert_eq!(person.is_identified, expected.identified, "{name}: identified");
    }
    assert_eq!(harness.warnings().await, case.warnings, "{name}: warnings");
    let rows = harness.rows().await;
    assert_eq!(rows.len(), case.events.len(), "{name}: every event is stored once");
    // After overrides, every full event names its distinct id's person now.
    for (distinct_id, person_id) in harness.resolved_person_ids().await {
        if let Some(person) = harness.person(&distinct_id).await {
            assert_eq!(person_id, person.uuid, "{name}: row of {distinct_id} resolves to its person");
        }
    }
}

async fn all_cases(meta_url: impl Fn() -> Option<String>) {
    for case in cases() {
        check_case(case, meta_url()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_semantics_on_sqlite() {
    all_cases(|| None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_semantics_on_postgres() {
    let Some(server) = warren_testkit::services::PostgresServer::shared() else { return };
    all_cases(|| Some(server.fresh_database())).await;
}

/// Rows carry what PostHog's persons-on-events columns carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_carry_person_mode_groups_and_overrides() {
    let mut harness = Harness::new(None).await;
    harness
        .ingest(&[
            event("e", "ghost", json!({"$process_person_profile": false})),
            event("$pageview", "anon", json!({"$session_id": "s1", "$window_id": "w1"})),
            event(
                "$groupidentify",
                "anon",
                json!({"$group_type": "company", "$group_key": "acme",
                "$group_set": {"name": "Acme"}}),
            ),
            event("e", "anon", json!({"$groups": {"project": "p1", "company": "acme"}})),
            event("e", "user", json!({"$set": {"email": "u@x.io"}})),
            event("$identify", "user", json!({"$anon_distinct_id": "anon"})),
            json!({"event": "dup", "distinct_id": "user", "uuid": "00000000-0000-0000-0000-0000000000aa"}),
            json!({"event": "dup", "distinct_id": "user", "uuid": "00000000-0000-0000-0000-0000000000aa"}),
        ])
        .await;
    let rows = harness.rows().await;
    assert_eq!(rows.len(), 7, "the duplicate uuid is stored once");
    let ghost = &rows[0];
    assert_eq!(ghost.person_mode, PersonMode::Propertyless);
    assert_eq!(ghost.person_id, person_id_for_distinct_id(TEAM, "ghost"));
    assert_eq!(ghost.person_created_at_us, 5_000_000, "1970-01-01T00:00:05Z");
    assert_eq!(ghost.person_properties, "{}");
    assert!(harness.person("ghost").await.is_none());

    let pageview = &rows[1];
    assert_eq!((pageview.session_id.as_str(), pageview.window_id.as_str()), ("s1", "w1"));
    assert_eq!(pageview.person_mode, PersonMode::Full);
    assert_eq!(pageview.person_created_at_us, T0_US + 1_000_000);
    let groups = &rows[3].groups;
    assert_eq!(groups[0], "acme", "company took slot 0 at $groupidentify");
    assert_eq!(groups[1], "p1");
    let stored_groups = harness.meta.groups(TEAM).await.expect("groups");
    assert_eq!(stored_groups.len(), 1);
    assert_eq!(stored_groups[0].properties["name"], "Acme");

    // anon's person merged into user's: old rows keep the old id, and an
    // override sends it to the survivor.
    let user = harness.person("user").await.expect("user");
    assert_eq!(user.created_by_event, Some(Uuid::from_u128(5)), "the event that created the person");
    assert_eq!(harness.person("anon").await.map(|p| p.uuid), Some(user.uuid));
    assert_ne!(pageview.person_id, user.uuid, "stored rows are not rewritten");
    let overrides = harness.meta.person_overrides(TEAM).await.expect("overrides");
    assert!(overrides
        .iter()
        .any(|o| o.old_person_id == pageview.person_id && o.override_person_id == user.uuid));
    let resolved: BTreeSet<Uuid> = harness
        .resolved_person_ids()
        .await
        .into_iter()
        .filter(|(id, _)| id != "ghost")
        .map(|(_, person)| person)
        .collect();
    assert_eq!(resolved, BTreeSet::from([user.uuid]));

    // The query session: events beside persons, overrides and groups.
    let ctx = warren_store::datafusion::prelude::SessionContext::new();
    harness.store.register(&ctx, "events").await.expect("register events");
    let persons = harness.persons().await;
    warren_store::register_person_tables(&ctx, &persons, &overrides, &stored_groups).expect("register");
    let one = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
            let column = batches[0].column(0);
            warren_store::arrow::compute::cast(column, &warren_store::arrow::datatypes::DataType::Int64)
                .expect("cast")
                .as_any()
                .downcast_ref::<warren_store::arrow::array::Int64Array>()
                .expect("int64")
                .value(0)
        }
    };
    let resolved_people =
        one("SELECT count(DISTINCT coalesce(o.override_person_id, e.person_id)) FROM events e
         LEFT JOIN person_overrides o ON o.team_id = e.team_id AND o.old_person_id = e.person_id
         WHERE e.person_mode = 'full'")
        .await;
    assert_eq!(resolved_people, 1, "through the overrides every full event is the one person");
    assert_eq!(one("SELECT count(*) FROM persons WHERE is_identified").await, 1);
    assert_eq!(one("SELECT count(*) FROM groups WHERE group_key = 'acme'").await, 1);

    let identify = rows.iter().find(|row| row.event == "$identify").expect("identify row");
    let properties: Value = serde_json::from_str(&identify.person_properties).expect("json");
    assert_eq!(properties["email"], "u@x.io", "person_properties are the person after the event");
}

/// However a sender grows a person — many `$set`s, an `$identify` carrying
/// a megabyte, a merge of two large persons — its properties stay within
/// `[ingest] max_person_properties_bytes`, and so does every row carrying
/// them; each dropped update is a warning and each event is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_cannot_make_later_rows_carry_megabytes() {
    let limit = IngestConfig::default().max_person_properties_bytes;
    assert_eq!(limit, 640 * 1024, "PostHog's limit");
    let big = |kib: usize| "x".repeat(kib * 1024);
    let mut harness = Harness::new(None).await;
    let events = [
        event("e", "u", json!({"$set": {"a": big(250)}})),
        event("e", "u", json!({"$set": {"b": big(250)}})),
        event("e", "u", json!({"$set": {"c": big(250)}})),
        event("e", "anon", json!({"$set": {"d": big(400)}})),
        event("$identify", "u", json!({"$anon_distinct_id": "anon"})),
        event("$identify", "u", json!({"$anon_distinct_id": "anon-2", "$set": {"e": big(1024)}})),
        event("e", "u", json!({"$unset": ["a"]})),
        event("e", "u", json!({"$set": {"f": "small"}})),
    ];
    harness.ingest(&events).await;

    let rows = harness.rows().await;
    assert_eq!(rows.len(), events.len(), "every event is stored");
    for row in &rows {
        assert!(row.person_properties.len() <= limit, "a row carries {} bytes", row.person_properties.len());
    }
    let person = harness.person("u").await.expect("person");
    let mut keys: Vec<&str> = person.properties.keys().map(String::as_str).filter(|k| *k != "$ip").collect();
    keys.sort_unstable();
    assert_eq!(keys, ["b", "f"], "the third $set, anon's properties and the identify's $set were dropped");
    assert_eq!(harness.person("anon").await.map(|p| p.uuid), Some(person.uuid), "the merge itself happened");
    assert_eq!(harness.warnings().await, vec!["person_properties_size_violation"; 3]);
    let details = harness.meta.ingestion_warnings(TEAM, 10).await.expect("warnings");
    assert!(details.iter().all(|w| w.details["limitBytes"] == limit && w.details["distinctId"] == "u"));
}

async fn stored(harness: &Harness) -> warren_core::person::Properties {
    harness.person("u").await.expect("person").properties
}

/// PostHog's rule for properties that follow every page view: a new value
/// of one the person already has is carried by the events but does not
/// rewrite the stored person; anything else does, and takes those values
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_properties_alone_do_not_rewrite_a_stored_person() {
    let mut harness = Harness::new(None).await;
    let page = |url: &str, extra: Value| {
        let mut properties = json!({"$current_url": url, "$browser": "Firefox"});
        properties.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
        event("$pageview", "u", properties)
    };
    harness.ingest(&[page("https://a.example/1", json!({}))]).await;
    assert_eq!(
        stored(&harness).await["$current_url"],
        "https://a.example/1",
        "a new person is written whole"
    );

    // Only quiet values change: the row carries them, the person stays.
    harness.ingest(&[page("https://a.example/2", json!({"$browser": "Chrome"}))]).await;
    assert_eq!(stored(&harness).await["$current_url"], "https://a.example/1");
    assert_eq!(stored(&harness).await["$browser"], "Firefox");
    let rows = harness.rows().await;
    let latest = rows.iter().max_by_key(|row| row.timestamp_us).expect("rows");
    let carried: Value = serde_json::from_str(&latest.person_properties).expect("JSON");
    assert_eq!(carried["$current_url"], "https://a.example/2", "the event carries the new value");
    assert_eq!(carried["$browser"], "Chrome");

    // A property the person did not have is stored, the quiet ones with it.
    harness.ingest(&[page("https://a.example/3", json!({"$set": {"plan": "pro"}}))]).await;
    let person = stored(&harness).await;
    assert_eq!(person["plan"], "pro");
    assert_eq!(person["$current_url"], "https://a.example/3");

    // A `$set` event is always written.
    harness.ingest(&[event("$set", "u", json!({"$set": {"$current_url": "https://a.example/4"}}))]).await;
    assert_eq!(stored(&harness).await["$current_url"], "https://a.example/4");

    // So is an `$identify`, even one that changes nothing else.
    let identify =
        |url: &str| event("$identify", "u", json!({"$anon_distinct_id": "v", "$current_url": url}));
    harness.ingest(&[identify("https://a.example/5")]).await;
    harness.ingest(&[identify("https://a.example/6")]).await;
    assert_eq!(stored(&harness).await["$current_url"], "https://a.example/6");
}
