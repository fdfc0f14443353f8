//! Golden cases: small datasets with hand-computed answers, kept as data
//! files in `tests/golden/` so every backend runs the very same cases.
//!
//! A file holds a project (time zone, "now"), events, person-id overrides
//! and groups, and cases: a query and the expected answer. The expected
//! answer is matched as a subset — objects compare the keys they list,
//! arrays compare element by element and length — so a case states only
//! what it is about. `expect_error` instead names a substring of the 400
//! message.
//!
//! The same cases run on the ClickHouse cluster the test kit starts, where
//! each answer must also equal DataFusion's in full.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;
use warren_core::config::{ClickHouseConfig, EventStoreConfig};
use warren_core::person::{Group, PersonMode, PersonOverride};
use warren_meta::{IngestCommit, MetaStore, SqlMeta};
use warren_query::{
    ClickHouseBackend, DataFusionBackend, ProjectContext, Query, QueryBackend, QueryError, QueryLimits,
};
use warren_store::{
    ClickHouseStore, ClickHouseStoreOptions, DeltaStore, DeltaStoreOptions, EventRow, EventStore,
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

const TEAM: i64 = 1;

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
    project: ProjectContext,
    _dir: tempfile::TempDir,
}

/// Each file loads into a database of its own on the shared cluster.
static DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn load(file: &GoldenFile, cluster: Option<&ClickHouseCluster>) -> Loaded {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta =
        SqlMeta::connect(&format!("sqlite://{}", dir.path().join("meta.db").display())).await.expect("meta");
    meta.migrate().await.expect("migrate");
    let options = DeltaStoreOptions::from_config(&EventStoreConfig::default(), dir.path()).expect("options");
    let store = Arc::new(DeltaStore::open(options).await.expect("delta"));
    let mut first_seen: BTreeMap<String, i64> = BTreeMap::new();
    for e in &file.events {
        let at = micros(&e.timestamp);
        let entry = first_seen.entry(e.person.clone()).or_insert(at);
        *entry = (*entry).min(at);
    }
    let rows: Vec<EventRow> = file
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut groups: [String; 5] = Default::default();
            for (slot, key) in &e.groups {
                groups[*slot] = key.clone();
            }
            EventRow {
                uuid: Uuid::from_u128(i as u128 + 1),
                event: e.event.clone(),
                properties: Value::Object(e.properties.clone()).to_string(),
                timestamp_us: micros(&e.timestamp),
                team_id: TEAM,
                distinct_id: e.distinct_id.clone().unwrap_or_else(|| e.person.clone()),
                elements_chain: String::new(),
                created_at_us: micros(&e.timestamp),
                person_id: person_uuid(&e.person),
                person_properties: Value::Object(e.person_properties.clone()).to_string(),
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
        .collect();
    let offsets = [(0, file.events.len() as u64)];
    store.append("golden", rows.clone(), &offsets).await.expect("append");
    let commit = IngestCommit {
        consumer: "golden".into(),
        offsets: vec![(0, file.events.len() as u64)],
        overrides: file
            .overrides
            .iter()
            .map(|(old, new)| PersonOverride {
                team_id: TEAM,
                old_person_id: person_uuid(old),
                override_person_id: person_uuid(new),
                version: 1,
            })
            .collect(),
        groups: file
            .groups
            .iter()
            .map(|g| Group {
                team_id: TEAM,
                group_type_index: g.index,
                group_key: g.key.clone(),
                properties: g.properties.clone(),
                created_at_us: 0,
                version: 1,
            })
            .collect(),
        ..IngestCommit::default()
    };
    meta.commit_ingest(&commit).await.expect("commit");
    let now =
        chrono::DateTime::parse_from_rfc3339(&file.project.now).expect("now").with_timezone(&chrono::Utc);
    let project = ProjectContext::new(TEAM, &file.project.timezone, now).expect("project");
    let meta: Arc<dyn MetaStore> = Arc::new(meta);
    let clickhouse = match cluster {
        Some(cluster) => {
            let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = cluster.url(&format!("golden_{}_{n}", std::process::id()));
            let config = ClickHouseConfig { url: Some(url), ..ClickHouseConfig::default() };
            let options = ClickHouseStoreOptions::from_config(&config).expect("options").expect("a cluster");
            let store = ClickHouseStore::open(options, meta.clone()).await.expect("open the cluster's store");
            let count = rows.len();
            store.write_persons(&commit).await.expect("persons to the cluster");
            store.append("golden", rows, &offsets).await.expect("append to the cluster");
            let stored = store.read_rows(Some(TEAM)).await.expect("read the cluster");
            assert_eq!(stored.len(), count, "the cluster holds every golden event");
            Some(ClickHouseBackend::new(Arc::new(store), meta.clone(), QueryLimits::default()))
        }
        None => None,
    };
    let datafusion = DataFusionBackend::new(store, meta, QueryLimits::default()).expect("backend");
    Loaded { datafusion, clickhouse, project, _dir: dir }
}

/// Where `actual` differs from `expected` read as a subset, if anywhere.
fn mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, v)| match a.get(k) {
            Some(av) => mismatch(v, av, &format!("{path}.{k}")),
            None => Some(format!("{path}.{k}: missing")),
        }),
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{path}: expected {} items, got {}: {actual}", e.len(), a.len()));
            }
            e.iter().zip(a).enumerate().find_map(|(i, (ev, av))| mismatch(ev, av, &format!("{path}[{i}]")))
        }
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            ((e - a).abs() > 1e-6 * e.abs().max(1.0)).then(|| format!("{path}: expected {e}, got {a}"))
        }
        _ => (expected != actual).then(|| format!("{path}: expected {expected}, got {actual}")),
    }
}

async fn run_file(path: &Path, cluster: Option<&ClickHouseCluster>) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read golden file");
    let file: GoldenFile = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let loaded = load(&file, cluster).await;
    let mut failures = Vec::new();
    for case in &file.cases {
        let label = format!("{} / {}", path.file_name().and_then(|n| n.to_str()).unwrap_or("?"), case.name);
        let datafusion = ask(&case.query, &loaded.project, &loaded.datafusion).await;
        match &loaded.clickhouse {
            None => failures.extend(verdict(&label, datafusion, case)),
            Some(clickhouse) => {
                let label = format!("{label} (ClickHouse)");
                let answer = ask(&case.query, &loaded.project, clickhouse).await;
                if let (Ok(theirs), Ok(ours)) = (&datafusion, &answer) {
                    if let Some(problem) = mismatch(&theirs["results"], &ours["results"], "results") {
                        failures.push(format!("{label}: differs from DataFusion: {problem}"));
                    }
                }
                failures.extend(verdict(&label, answer, case));
            }
        }
    }
    failures
}

async fn ask(
    query: &Value,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    match serde_json::from_value::<Query>(query.clone()) {
        Ok(query) => warren_query::run(&query, project, backend).await,
        Err(e) => Err(QueryError::Invalid(e.to_string())),
    }
}

/// What is wrong with a backend's answer to `case`, if anything.
fn verdict(label: &str, result: Result<Value, QueryError>, case: &Case) -> Option<String> {
    match (result, &case.expect, &case.expect_error) {
        (Ok(actual), Some(expected), _) => {
            mismatch(expected, &actual["results"], "results").map(|problem| format!("{label}: {problem}"))
        }
        (Err(QueryError::Invalid(message)), _, Some(wanted)) => (!message.contains(wanted.as_str()))
            .then(|| format!("{label}: error {message:?} does not mention {wanted:?}")),
        (Ok(actual), None, Some(wanted)) => {
            Some(format!("{label}: expected an error about {wanted:?}, got {actual}"))
        }
        (Err(e), _, _) => Some(format!("{label}: {e}")),
        (Ok(_), None, None) => Some(format!("{label}: case states no expectation")),
    }
}

async fn run_all(cluster: Option<&ClickHouseCluster>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        failures.extend(run_file(file, cluster).await);
    }
    assert!(failures.is_empty(), "{} golden case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_cases_hold_on_datafusion() {
    run_all(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_cases_hold_on_clickhouse_as_on_datafusion() {
    let Some(cluster) = ClickHouseCluster::shared() else { return };
    run_all(Some(cluster)).await;
}
