//! Queries against real stores: the golden cases (`golden`) and the
//! isolation suite (`isolation`), each on DataFusion over a Delta table
//! and on the ClickHouse cluster the test kit starts.
//!
//! Every dataset is loaded twice over: once for the project the queries
//! ask as, and once, as a twin with marked ids and properties, for
//! another project whose rows no answer may count or show.

mod golden;
mod isolation;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;
use warren_core::config::{ClickHouseConfig, EventStoreConfig};
use warren_core::person::{Group, Person, PersonChanges, PersonMode, PersonOverride};
use warren_meta::{IngestCommit, IngestCommits, MetaSchema, MetaStore, SqlMeta};
use warren_query::{ClickHouseBackend, DataFusionBackend, ProjectContext, QueryLimits};
use warren_store::{
    ClickHouseStore, ClickHouseStoreOptions, DeltaStore, DeltaStoreOptions, EventRow, EventStore, LiveCluster,
};
use warren_testkit::clickhouse::ClickHouseCluster;

#[derive(Deserialize)]
struct GoldenFile {
    project: ProjectSpec,
    events: Vec<EventSpec>,
    #[serde(default)]
    overrides: Vec<(String, String)>,
    #[serde(default)]
    groups: Vec<GroupSpec>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct ProjectSpec {
    #[serde(default = "utc")]
    timezone: String,
    now: String,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Deserialize)]
struct EventSpec {
    event: String,
    /// The person, by name; the distinct id defaults to it.
    person: String,
    #[serde(default)]
    distinct_id: Option<String>,
    timestamp: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
    #[serde(default)]
    person_properties: serde_json::Map<String, Value>,
    /// When the person was created; defaults to the event's time.
    #[serde(default)]
    person_created_at: Option<String>,
    #[serde(default)]
    personless: bool,
    #[serde(default)]
    groups: BTreeMap<usize, String>,
}

#[derive(Deserialize)]
struct GroupSpec {
    index: i32,
    key: String,
    properties: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    query: Value,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<String>,
}

/// The project every query asks as.
const TEAM: i64 = 1;
/// The project whose twin rows no answer may count or show.
const OTHER_TEAM: i64 = 2;
/// In every id, name and property value of the other project's rows.
const MARKER: &str = "zz-other-project";

fn person_uuid(name: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad timestamp {text:?}: {e}"))
        .timestamp_micros()
}

struct Loaded {
    datafusion: DataFusionBackend,
    /// The same data on the cluster, when the test asks for it.
    clickhouse: Option<ClickHouseBackend>,
    /// The cluster's database of this data (`warren` when there is none).
    database: String,
    project: ProjectContext,
    _dir: tempfile::TempDir,
}

/// Each file loads into a database of its own on the shared cluster.
static DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// How `team` spells a name of the file: as written for [`TEAM`], marked
/// for [`OTHER_TEAM`].
fn spelled(team: i64, name: &str) -> String {
    if team == TEAM {
        name.to_string()
    } else {
        format!("{MARKER}-{name}")
    }
}

/// `properties`, with the marker among them for [`OTHER_TEAM`].
fn marked(team: i64, properties: &serde_json::Map<String, Value>) -> String {
    let mut properties = properties.clone();
    if team != TEAM {
        properties.insert("secret".into(), Value::String(MARKER.into()));
    }
    Value::Object(properties).to_string()
}

fn rows_of(file: &GoldenFile, team: i64) -> Vec<EventRow> {
    let mut first_seen: BTreeMap<String, i64> = BTreeMap::new();
    for e in &file.events {
        let at = micros(&e.timestamp);
        let entry = first_seen.entry(e.person.clone()).or_insert(at);
        *entry = (*entry).min(at);
    }
    file.events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut groups: [String; 5] = Default::default();
            for (slot, key) in &e.groups {
                groups[*slot] = spelled(team, key);
            }
            EventRow {
                uuid: Uuid::from_u128(((team as u128) << 64) + i as u128 + 1),
                event: e.event.clone(),
                properties: marked(team, &e.properties),
                timestamp_us: micros(&e.timestamp),
                team_id: team,
                distinct_id: spelled(team, e.distinct_id.as_deref().unwrap_or(&e.person)),
                elements_chain: String::new(),
                created_at_us: micros(&e.timestamp),
                person_id: person_uuid(&spelled(team, &e.person)),
                person_properties: marked(team, &e.person_properties),
                person_created_at_us: e
                    .person_created_at
                    .as_deref()
                    .map(micros)
                    .unwrap_or_else(|| first_seen[&e.person]),
                person_mode: if e.personless { PersonMode::Propertyless } else { PersonMode::Full },
                session_id: e.properties.get("$session_id").and_then(Value::as_str).unwrap_or("").to_string(),
                window_id: String::new(),
                groups,
            }
        })
        .collect()
}

/// The meta store's side of `team`'s rows: its persons (with their last
/// event's properties), overrides and groups.
fn commit_of(file: &GoldenFile, team: i64, commit: &mut IngestCommit) {
    let mut persons: BTreeMap<&str, &EventSpec> = BTreeMap::new();
    for e in file.events.iter().filter(|e| !e.personless) {
        persons.insert(&e.person, e);
    }
    commit.persons.extend(persons.into_iter().map(|(name, e)| {
        let properties = match serde_json::from_str(&marked(team, &e.person_properties)) {
            Ok(Value::Object(properties)) => properties,
            _ => serde_json::Map::new(),
        };
        Person {
            uuid: person_uuid(&spelled(team, name)),
            team_id: team,
            properties,
            created_at_us: micros(&e.timestamp),
            is_identified: true,
            version: 1,
            created_by_event: None,
        }
    }));
    commit.overrides.extend(file.overrides.iter().map(|(old, new)| PersonOverride {
        team_id: team,
        old_person_id: person_uuid(&spelled(team, old)),
        override_person_id: person_uuid(&spelled(team, new)),
        version: 1,
    }));
    commit.groups.extend(file.groups.iter().map(|g| {
        let mut properties = g.properties.clone();
        if team != TEAM {
            properties.insert("secret".into(), Value::String(MARKER.into()));
        }
        Group {
            team_id: team,
            group_type_index: g.index,
            group_key: spelled(team, &g.key),
            properties,
            created_at_us: 0,
            version: 1,
        }
    }));
}

async fn load(file: &GoldenFile, cluster: Option<&ClickHouseCluster>) -> Loaded {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta =
        SqlMeta::connect(&format!("sqlite://{}", dir.path().join("meta.db").display())).await.expect("meta");
    meta.migrate().await.expect("migrate");
    let options = DeltaStoreOptions::from_config(&EventStoreConfig::default(), dir.path()).expect("options");
    let store = Arc::new(DeltaStore::open(options).await.expect("delta"));
    let rows: Vec<EventRow> = [TEAM, OTHER_TEAM].iter().flat_map(|&team| rows_of(file, team)).collect();
    let offsets = [(0, rows.len() as u64)];
    store.append("golden", rows.clone(), &offsets).await.expect("append");
    let mut commit =
        IngestCommit { consumer: "golden".into(), offsets: offsets.to_vec(), ..IngestCommit::default() };
    for team in [TEAM, OTHER_TEAM] {
        commit_of(file, team, &mut commit);
    }
    meta.commit_ingest(&commit).await.expect("commit");
    let now =
        chrono::DateTime::parse_from_rfc3339(&file.project.now).expect("now").with_timezone(&chrono::Utc);
    let project = ProjectContext::new(TEAM, &file.project.timezone, now).expect("project");
    let meta: Arc<dyn MetaStore> = Arc::new(meta);
    let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let database = match cluster {
        Some(_) => format!("golden_{}_{n}", std::process::id()),
        None => "warren".to_string(),
    };
    let clickhouse = match cluster {
        Some(cluster) => {
            let url = cluster.url(&database);
            let config = ClickHouseConfig { url: Some(url), ..ClickHouseConfig::default() };
            let options = ClickHouseStoreOptions::from_config(&config).expect("options").expect("a cluster");
            let store =
                ClickHouseStore::open(options.clone(), meta.clone()).await.expect("open the cluster's store");
            let count = rows.len();
            let changes = PersonChanges {
                persons: &commit.persons,
                distinct_ids: &commit.distinct_ids,
                overrides: &commit.overrides,
                ..PersonChanges::default()
            };
            store.write_persons(&changes).await.expect("persons to the cluster");
            store.append("golden", rows, &offsets).await.expect("append to the cluster");
            let stored = store.read_rows(None).await.expect("read the cluster");
            assert_eq!(stored.len(), count, "the cluster holds every golden event of both projects");
            let live = LiveCluster::open(options, meta.clone()).await.expect("open the cluster");
            Some(ClickHouseBackend::new(Arc::new(live), meta.clone(), QueryLimits::default()))
        }
        None => None,
    };
    let datafusion = DataFusionBackend::new(store, meta, QueryLimits::default()).expect("backend");
    Loaded { datafusion, clickhouse, database, project, _dir: dir }
}
