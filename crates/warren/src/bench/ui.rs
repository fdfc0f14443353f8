//! `warren bench ui`: how long the server takes to answer what each
//! dashboard page asks for when it opens, on the query benchmark's
//! dataset (about ten million events, 200,000 persons). It starts a Warren
//! of its own on that data dir (the query role), signs in, and times every request of a
//! page (the page's HTML, then its API calls) over loopback; a page's
//! figure is the sum, as if the browser made its requests one after the
//! other. The events list and a person's events — the two pages that scan
//! events — are also run in DuckDB over the same Parquet files, as the
//! peer. Insight and dashboard tiles run insight queries, whose speed
//! `warren bench query` measures; here they are timed too but reported
//! apart.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::query::{ensure_dataset, median, repo_root};
use super::start_server;

#[derive(Debug, clap::Args)]
pub struct UiBench {
    /// The query benchmark's data dir; generated there when it has no events.
    #[arg(long, default_value = "warren-bench-query")]
    data_dir: PathBuf,
    /// People to generate when the data dir is empty.
    #[arg(long, default_value_t = 200_000)]
    users: usize,
    /// Timed runs of each page, after one warm-up run.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Python with duckdb and deltalake (`scripts/setup-test-deps` makes it).
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long)]
    skip_duckdb: bool,
}

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench password 1234";
/// The dataset's last day: the events page looks at the 24 hours before it.
const LAST_DAY: &str = "2024-02-29";
const TOKEN: &str = "phc_bench_token";

/// One request a page makes.
#[derive(Debug, Clone)]
enum Call {
    Get(String),
    /// A GET without the session, as a stranger makes it.
    Anonymous(String),
    Query(Value),
}

struct Session {
    client: reqwest::Client,
    url: String,
    cookie: String,
}

impl Session {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let response = client
            .post(format!("{url}/api/login/"))
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("signing in as {EMAIL}: {}", response.status());
        }
        let cookie = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("no session cookie")?
            .to_string();
        Ok(Self { client, url: url.to_string(), cookie })
    }

    /// Makes the call; answers its body and the seconds it took.
    async fn call(&self, call: &Call) -> anyhow::Result<(Value, f64)> {
        let request = match call {
            Call::Get(path) => self.client.get(format!("{}{path}", self.url)).header("cookie", &self.cookie),
            Call::Anonymous(path) => self.client.get(format!("{}{path}", self.url)),
            Call::Query(query) => self
                .client
                .post(format!("{}/api/projects/1/query/", self.url))
                .header("cookie", &self.cookie)
                .json(&json!({"query": query})),
        };
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let took = started.elapsed().as_secs_f64();
        if !status.is_success() {
            bail!("{call:?}: {status} {text}");
        }
        Ok((serde_json::from_str(&text).unwrap_or(Value::Null), took))
    }
}

fn events_query(extra: Value) -> Value {
    let mut query = json!({"kind": "EventsQuery", "select": ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties"], "limit": 100});
    if let (Some(query), Some(extra)) = (query.as_object_mut(), extra.as_object()) {
        query.extend(extra.clone());
    }
    query
}

pub async fn run(options: UiBench) -> anyhow::Result<()> {
    ensure_dataset(&options.data_dir, options.users).await?;
    // The query role alone, without self-monitoring: the shared dataset
    // stays as `warren bench query` made it (no upkeep rewrites its files,
    // no internal project joins it).
    let env = [
        ("WARREN_BOOTSTRAP__ADMIN_EMAIL", EMAIL),
        ("WARREN_BOOTSTRAP__ADMIN_PASSWORD", PASSWORD),
        ("WARREN_SELF_MONITORING__ENABLED", "false"),
    ];
    let (_server, url) = start_server(&options.data_dir, TOKEN, &["--role", "query"], &env).await?;
    let session = Session::open(&url).await?;

    // A person with many events, found as the persons page would.
    let busiest = session
        .call(&Call::Query(json!({"kind": "HogQLQuery", "query":
            "SELECT distinct_id, count() AS n FROM events WHERE distinct_id LIKE 'user-%' GROUP BY 1 ORDER BY 2 DESC LIMIT 1"})))
        .await?
        .0;
    let distinct_id =
        busiest["results"][0][0].as_str().context("no identified person in the dataset")?.to_string();
    let encoded: String = form_urlencoded::byte_serialize(distinct_id.as_bytes()).collect();
    let found = session.call(&Call::Get(format!("/api/projects/1/persons/?distinct_id={encoded}"))).await?.0;
    let person = found["results"][0]["id"].as_str().context("the busiest person was not found")?.to_string();
    let count = session
        .call(&Call::Query(json!({"kind": "HogQLQuery", "query": "SELECT count() FROM events"})))
        .await?
        .0;
    println!(
        "dataset: {} events in {}; person {distinct_id} ({} events)",
        count["results"][0][0],
        options.data_dir.display(),
        busiest["results"][0][1]
    );
    let after = format!("{LAST_DAY}T00:00:00Z");
    let pages: Vec<(&str, Vec<Call>)> = vec![
        ("login", vec![Call::Anonymous("/login".into())]),
        (
            "overview",
            vec![
                Call::Get("/".into()),
                Call::Get("/api/users/@me/".into()),
                Call::Get("/api/instance/health/".into()),
                Call::Get("/api/projects/1/persons/?limit=1".into()),
                Call::Get("/api/projects/1/ingestion_warnings/?limit=10".into()),
            ],
        ),
        (
            "events (last 24 h of data)",
            vec![
                Call::Get("/events".into()),
                Call::Get("/api/projects/1/event_definitions/".into()),
                Call::Get("/api/projects/1/property_definitions/?type=event".into()),
                Call::Query(events_query(json!({"after": after}))),
            ],
        ),
        (
            "events of one name, filtered by a property",
            vec![Call::Query(events_query(json!({"after": after, "event": "$pageview",
                "properties": [{"key": "$browser", "value": "Firefox", "operator": "exact", "type": "event"}]})))],
        ),
        (
            "persons",
            vec![Call::Get("/persons".into()), Call::Get("/api/projects/1/persons/?limit=50".into())],
        ),
        ("persons search", vec![Call::Get(format!("/api/projects/1/persons/?search={encoded}&limit=50"))]),
        (
            "persons search by a property (plan=paid)",
            vec![Call::Get("/api/projects/1/persons/?search=plan%3Dpaid&limit=50".into())],
        ),
        (
            "person",
            vec![
                Call::Get(format!("/persons/{person}")),
                Call::Get(format!("/api/projects/1/persons/{person}/")),
                Call::Query(events_query(json!({"personId": person, "after": "2024-01-01"}))),
            ],
        ),
        ("insights list", vec![Call::Get("/insights".into()), Call::Get("/api/projects/1/insights/".into())]),
        ("system", vec![Call::Get("/system".into()), Call::Get("/api/instance/system/".into())]),
    ];
    let insight = json!({"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}],
        "interval": "day", "dateRange": {"date_from": "2024-02-01", "date_to": LAST_DAY}});

    let mut rows = Vec::new();
    for (name, calls) in &pages {
        let mut totals = Vec::new();
        let mut slowest = Vec::new();
        for run in 0..=options.runs {
            let mut total = 0.0;
            let mut worst: f64 = 0.0;
            for call in calls {
                let (_, took) = session.call(call).await.with_context(|| format!("page {name}"))?;
                total += took;
                worst = worst.max(took);
            }
            if run > 0 {
                totals.push(total);
                slowest.push(worst);
            }
        }
        rows.push((*name, calls.len(), median(totals), median(slowest)));
    }
    let mut insight_times = Vec::new();
    for run in 0..=options.runs.min(3) {
        let (_, took) = session.call(&Call::Query(insight.clone())).await?;
        if run > 0 {
            insight_times.push(took);
        }
    }

    let duckdb = if options.skip_duckdb { None } else { Some(run_duckdb(&options, &person, &after)?) };
    println!();
    println!("| page | requests | Warren server time (median) | slowest request | DuckDB, same scan | under 200 ms |");
    println!("|---|---|---|---|---|---|");
    for (name, requests, total, worst) in &rows {
        let peer = duckdb.as_ref().and_then(|d| {
            let key = if name.starts_with("events (") {
                "events_24h"
            } else if name.starts_with("events of") {
                "events_filtered"
            } else if *name == "person" {
                "person_events"
            } else {
                return None;
            };
            d[key].as_f64()
        });
        println!(
            "| {name} | {requests} | {:.1} ms | {:.1} ms | {} | {} |",
            total * 1000.0,
            worst * 1000.0,
            peer.map_or("–".into(), |s| format!("{:.1} ms", s * 1000.0)),
            if *total < 0.2 { "yes" } else { "no" }
        );
    }
    println!(
        "\ninsight tile (trends, pageviews per day over 29 days): {:.0} ms median; see `warren bench query`",
        median(insight_times) * 1000.0
    );
    Ok(())
}

fn run_duckdb(options: &UiBench, person: &str, after: &str) -> anyhow::Result<Value> {
    eprintln!("running DuckDB");
    let python = options.python.clone().unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let output = Command::new(python)
        .arg(repo_root().join("scripts/bench/duckdb_ui_queries.py"))
        .arg(options.data_dir.join("events"))
        .arg(options.runs.to_string())
        .arg(person)
        .arg(after)
        .output()
        .context("running scripts/bench/duckdb_ui_queries.py (run scripts/setup-test-deps first)")?;
    if !output.status.success() {
        bail!("DuckDB bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
