//! Tenant isolation of users' SQL: hostile statements, written and
//! generated, asked as one project of a store that also holds another
//! project's marked twin rows. Every answer must be a refusal (400, with a
//! message) or rows in which nothing of the other project shows; a few
//! counts must be exactly the asking project's.

use std::path::Path;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use warren_query::{ProjectContext, Query, QueryBackend, QueryError};
use warren_testkit::clickhouse::ClickHouseCluster;

use crate::{load, GoldenFile, Loaded, MARKER, OTHER_TEAM};

/// Statements an attacker would try (`{db}` is the cluster's database): quote and backslash tricks, comments
/// of every kind, look-alike names, nested subqueries, CTEs that hide or
/// reach tables, set operations with other tables, settings and output
/// clauses, table functions, functions that read elsewhere, and casts of
/// `team_id`.
const HOSTILE: &[&str] = &[
    r"SELECT 'x\', ' AS a, * FROM {db}.events WHERE team_id = 2 FORMAT JSONCompact -- ' FROM events",
    r"SELECT 'x\', ' AS a, distinct_id FROM events WHERE team_id = 2 -- ' FROM events",
    r"SELECT distinct_id, 'a\' OR 1 = 1 --' AS b FROM events",
    r"SELECT 'a\\' AS a, 'it''s' AS b, distinct_id FROM events",
    r"SELECT distinct_id FROM events WHERE event = E'\'' OR team_id = 2",
    r"SELECT distinct_id FROM events WHERE event = X'41'",
    r"SELECT distinct_id FROM events WHERE event = U&'\0061'",
    r"SELECT distinct_id FROM events WHERE event = $1",
    r#"SELECT "a\" FROM events"#,
    r"SELECT `x\` FROM events",
    "SELECT distinct_id FROM events WHERE team_id = 2",
    "SELECT distinct_id FROM events WHERE team_id = 2 OR 1 = 1",
    "SELECT distinct_id FROM events WHERE toInt64(team_id) = 2 OR CAST(team_id AS VARCHAR) = '2'",
    "SELECT distinct_id, properties FROM events /* WHERE team_id = 1 */ -- trailing",
    "SELECT distinct_id FROM events # a comment where ClickHouse may see one\n WHERE 1 = 1",
    "SELECT distinct_id FROM events -- comment\n UNION ALL SELECT distinct_id FROM sharded_events",
    "SELECT distinct_id FROM ｅvents",
    "SELECT distinct_id FROM \"events \"",
    "SELECT distinct_id FROM {db}.events",
    "SELECT distinct_id FROM default.events",
    "SELECT * FROM system.tables",
    "SELECT distinct_id FROM events UNION ALL SELECT name FROM system.tables",
    "SELECT distinct_id FROM events UNION ALL SELECT distinct_id FROM sharded_events",
    "SELECT distinct_id FROM events UNION ALL SELECT distinct_id FROM {db}.sharded_events",
    "SELECT distinct_id FROM {db}.events WHERE 1 = 1 UNION ALL SELECT distinct_id FROM events",
    "SELECT 'events' AS t, distinct_id FROM events WHERE event = ' FROM events'",
    "SELECT distinct_id FROM events EXCEPT SELECT distinct_id FROM events WHERE team_id = 1",
    "SELECT distinct_id FROM events INTERSECT SELECT toString(id) FROM persons",
    "SELECT distinct_id FROM (SELECT * FROM (SELECT * FROM events WHERE team_id = 2 OR 1 = 1))",
    "SELECT distinct_id FROM events WHERE distinct_id IN (SELECT distinct_id FROM sharded_events)",
    "SELECT distinct_id FROM events WHERE 1 IN (sharded_events)",
    "SELECT distinct_id FROM events WHERE 1 IN (({db}.sharded_events))",
    "SELECT distinct_id FROM events AS sharded_events",
    "WITH events AS (SELECT * FROM persons) SELECT * FROM events",
    "WITH persons AS (SELECT 1) SELECT distinct_id FROM events",
    "WITH x AS (SELECT distinct_id FROM sharded_events) SELECT * FROM x",
    "WITH a AS (SELECT * FROM b), b AS (SELECT distinct_id FROM events) SELECT * FROM a",
    "WITH RECURSIVE a AS (SELECT distinct_id FROM events) SELECT * FROM a",
    "WITH t AS (SELECT distinct_id, team_id FROM events) SELECT * FROM t WHERE team_id = 2",
    "SELECT distinct_id FROM events SETTINGS max_execution_time = 0",
    "SELECT distinct_id FROM events SETTINGS readonly = 0",
    "SELECT distinct_id FROM events FORMAT JSON",
    "SELECT distinct_id FROM events INTO OUTFILE '/tmp/warren-out'",
    "SELECT distinct_id INTO leaked FROM events",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM numbers(10)",
    "SELECT * FROM file('/etc/passwd', 'TSV', 'a String')",
    "SELECT distinct_id FROM events, url('http://127.0.0.1/', 'TSV', 'a String')",
    "SELECT dictGetString('d', 'x', toUInt64(1))",
    "SELECT joinGet('t', 'x', 1)",
    "SELECT globalIn(1, sharded_events)",
    "SELECT in(1, sharded_events)",
    "SELECT hasColumnInTable('warren', 'sharded_events', 'uuid')",
    "SELECT getSetting('max_execution_time')",
    "SELECT file('/etc/passwd')",
    "SELECT system.foo(1)",
    "SELECT distinct_id FROM events PREWHERE team_id = 2",
    "SELECT distinct_id FROM events FINAL",
    "SELECT distinct_id FROM events SAMPLE 1",
    "SELECT distinct_id FROM events GLOBAL JOIN sharded_events USING (uuid)",
    "SELECT e.distinct_id FROM events e JOIN persons p ON toString(p.id) = e.person_id WHERE e.team_id = 2",
    "SELECT properties, id FROM persons WHERE team_id = 2 OR 1 = 1",
    "SELECT group_key, properties FROM groups WHERE team_id = 2 OR 1 = 1",
    "SELECT * FROM person_overrides",
    "SELECT distinct_id FROM events; SELECT * FROM system.one",
    "DELETE FROM events WHERE team_id = 1",
    "SELECT distinct_id FROM events FOR UPDATE",
];

/// The dataset: persons, merges and groups, so every table has rows.
const DATASET: &str = "sql_and_persons.json";

async fn loaded(cluster: Option<&ClickHouseCluster>) -> (Loaded, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(DATASET);
    let text = std::fs::read_to_string(&path).expect("read the dataset");
    let file: GoldenFile = serde_json::from_str(&text).expect("parse the dataset");
    let events = file.events.len();
    (load(&file, cluster).await, events)
}

async fn sql(sql: &str, project: &ProjectContext, backend: &dyn QueryBackend) -> Result<Value, QueryError> {
    let query: Query = serde_json::from_value(json!({"kind": "HogQLQuery", "query": sql})).expect("a query");
    warren_query::run(&query, project, backend).await
}

/// What is wrong with `backend`'s answer to `text`, if anything.
async fn leak(
    text: &str,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
    name: &str,
) -> Option<String> {
    match sql(text, project, backend).await {
        Err(QueryError::Invalid(message)) if !message.trim().is_empty() => None,
        Err(other) => Some(format!("{name}: {text:?} failed without a 400: {other}")),
        Ok(answer) => {
            let shown = answer["results"].to_string();
            // Every text of the other project carries the marker; its
            // number shows in a `team_id` column.
            let team_column =
                answer["columns"].as_array().and_then(|c| c.iter().position(|c| c == "team_id"));
            let other_team = team_column.is_some_and(|at| {
                answer["results"].as_array().into_iter().flatten().any(|row| row[at] == json!(OTHER_TEAM))
            });
            (shown.contains(MARKER) || other_team)
                .then(|| format!("{name}: {text:?} showed the other project: {shown}"))
        }
    }
}

/// The backends a test asks: DataFusion, and the cluster when it runs.
fn backends(loaded: &Loaded) -> Vec<(&'static str, &dyn QueryBackend)> {
    let mut backends: Vec<(&'static str, &dyn QueryBackend)> = vec![("DataFusion", &loaded.datafusion)];
    if let Some(clickhouse) = &loaded.clickhouse {
        backends.push(("ClickHouse", clickhouse));
    }
    backends
}

async fn hostile_statements(cluster: Option<&ClickHouseCluster>) {
    assert!(HOSTILE.len() >= 40, "the table keeps at least 40 statements");
    let (loaded, events) = loaded(cluster).await;
    let mut failures = Vec::new();
    for (name, backend) in backends(&loaded) {
        for text in HOSTILE {
            let text = text.replace("{db}", &loaded.database);
            failures.extend(leak(&text, &loaded.project, backend, name).await);
        }
        // Counts show what no marker can: every table counts the asking
        // project's rows only, whatever the statement says of team_id.
        for (text, expected) in [
            ("SELECT count() FROM events", events),
            ("SELECT count() FROM events WHERE team_id = 2 OR team_id = 1", events),
            ("SELECT count() FROM events WHERE team_id = 2", 0),
            ("SELECT count() FROM (SELECT distinct_id FROM events UNION ALL SELECT distinct_id FROM events)", 2 * events),
        ] {
            match sql(text, &loaded.project, backend).await {
                Ok(answer) if answer["results"] == json!([[expected]]) => {}
                other => failures.push(format!("{name}: {text:?} should count {expected}, got {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} leak(s) or wrong answers:\n{}", failures.len(), failures.join("\n"));
}

/// Pieces a generated statement is made of: the tricks of the table above
/// cut into fragments that combine into new ones.
const FRAGMENTS: &[&str] = &[
    "'",
    "''",
    "\\",
    "\\'",
    "\"",
    "`",
    "--",
    "#",
    "/*",
    "*/",
    ";",
    "\n",
    " ",
    ",",
    "(",
    ")",
    "1",
    "2",
    "team_id",
    "team_id = 2",
    "OR 1 = 1",
    "OR team_id = 2",
    "FORMAT JSONCompact",
    "SETTINGS readonly = 0",
    "UNION ALL SELECT distinct_id FROM sharded_events",
    "FROM {db}.events",
    "FROM system.tables",
    "IN (sharded_events)",
    "distinct_id",
    "properties",
    "events",
    "persons",
    "groups",
    "AS",
    "WHERE",
    "SELECT",
    "FROM",
    "toString(team_id)",
    "CAST(team_id AS VARCHAR)",
    "ｅvents",
    "person.properties.secret",
    "properties.secret",
];

fn generated() -> impl Strategy<Value = String> {
    let pieces = || proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..6);
    (pieces(), pieces(), pieces()).prop_map(|(select, from, after)| {
        format!(
            "SELECT distinct_id, {} FROM events {} WHERE 1 = 1 {}",
            select.join(" "),
            from.join(" "),
            after.join(" ")
        )
    })
}

async fn generated_statements(cluster: Option<&ClickHouseCluster>) {
    let (loaded, _) = loaded(cluster).await;
    let mut runner = TestRunner::new(Config { cases: 128, ..Config::default() });
    let strategy = generated();
    let mut failures = Vec::new();
    for _ in 0..128 {
        let text =
            strategy.new_tree(&mut runner).expect("a statement").current().replace("{db}", &loaded.database);
        for (name, backend) in backends(&loaded) {
            failures.extend(leak(&text, &loaded.project, backend, name).await);
        }
    }
    assert!(failures.is_empty(), "{} leak(s):\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_stays_in_its_project_on_datafusion() {
    hostile_statements(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_stays_in_its_project_on_clickhouse() {
    let Some(cluster) = ClickHouseCluster::shared() else { return };
    hostile_statements(Some(cluster)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_sql_never_shows_the_other_project() {
    generated_statements(ClickHouseCluster::shared()).await;
}
