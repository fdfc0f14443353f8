//! Golden cases: small datasets with hand-computed answers, kept as data
//! files in `tests/golden/` so every backend runs the very same cases.
//!
//! A file holds a project (time zone, "now"), events, person-id overrides
//! and groups, and cases: a query and the expected answer. The expected
//! answer is matched as a subset — objects compare the keys they list,
//! arrays compare element by element and length — so a case states only
//! what it is about. `expect_error` instead names a substring of the 400
//! message. Each file's twin in another project must change no answer.
//!
//! The same cases run on the ClickHouse cluster the test kit starts, where
//! each answer must also equal DataFusion's in full.

use std::path::Path;

use serde_json::Value;
use warren_query::{ProjectContext, Query, QueryBackend, QueryError};
use warren_testkit::clickhouse::ClickHouseCluster;

use crate::{load, Case, GoldenFile};

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
