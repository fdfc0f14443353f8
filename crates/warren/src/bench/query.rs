//! `warren bench query`: the benchmark insights over a generated dataset
//! (by default 200,000 people, about ten million events), timed in Warren's
//! embedded engine and, in the same run on the same events, in DuckDB
//! (equivalent SQL over the Delta table's Parquet files) and in a
//! ClickHouse server (the events loaded into a MergeTree table, queried as
//! a PostHog-style deployment would: windowFunnel, uniqExact, JSON
//! property extraction). With `--backend delta,clickhouse` Warren's own
//! queries also run on a ClickHouse cluster (`--clickhouse-url`), loaded
//! from the Delta table by the rebuild. Every engine gets one warm-up
//! run, then the median of `--runs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::NaiveDate;
use serde_json::{json, Value};
use warren_core::config::WarrenConfig;
use warren_meta::MetaStore;
use warren_ops::clickhouse::rebuild::{load_persons, rebuild_days, PersonsLoad};
use warren_query::{ClickHouseBackend, DataFusionBackend, ProjectContext, Query, QueryBackend, QueryLimits};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, Cut, DeltaStore, LiveCluster};

#[derive(Debug, clap::Args)]
pub struct QueryBench {
    /// People in the generated story (about 50 events each).
    #[arg(long, default_value_t = 200_000)]
    users: usize,
    /// Timed runs per query and engine, after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the dataset lives; generated there when it has no events.
    #[arg(long, default_value = "warren-bench-query")]
    data_dir: PathBuf,
    /// Python with duckdb and deltalake (`scripts/setup-test-deps` makes it).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The ClickHouse server binary.
    #[arg(long, default_value = "clickhouse-server")]
    clickhouse: String,
    #[arg(long)]
    skip_duckdb: bool,
    #[arg(long)]
    skip_clickhouse: bool,
    /// Warren's backends to time, beside each other in the same run:
    /// `delta` (DataFusion over the Delta table) and `clickhouse` (the
    /// cluster of `--clickhouse-url`, loaded from the Delta table first).
    #[arg(long, value_delimiter = ',', default_value = "delta")]
    backend: Vec<BenchBackend>,
    /// The cluster for `--backend clickhouse`, as `[clickhouse] url`;
    /// `cargo run -p warren-testkit --bin clickhouse-cluster` starts one.
    #[arg(long, env = "WARREN_CLICKHOUSE__URL")]
    clickhouse_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    Delta,
    Clickhouse,
}

pub(super) const DAYS: u32 = 60;
pub(super) const START: &str = "2024-01-01";

/// (name, Warren query, ClickHouse SQL)
fn queries() -> Vec<(&'static str, Value, &'static str)> {
    let pageview = json!({"kind": "EventsNode", "event": "$pageview"});
    vec![
        (
            "trends_dau_by_browser",
            json!({"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}],
                   "interval": "day", "dateRange": {"date_from": "2024-01-31", "date_to": "2024-02-29"},
                   "breakdownFilter": {"breakdown": "$browser", "breakdown_limit": 25}}),
            "SELECT toStartOfDay(timestamp) AS day, visitParamExtractString(properties, '$browser') AS browser, uniqExact(person_id)
             FROM events WHERE team_id = 1 AND event = '$pageview'
               AND timestamp >= toDateTime('2024-01-31 00:00:00') AND timestamp < toDateTime('2024-03-01 00:00:00')
             GROUP BY day, browser",
        ),
        (
            "funnel_3_steps_14d",
            json!({"kind": "FunnelsQuery", "series": [pageview, {"kind": "EventsNode", "event": "signed_up"}, {"kind": "EventsNode", "event": "purchase"}],
                   "dateRange": {"date_from": "2024-01-01", "date_to": "2024-02-29"},
                   "funnelsFilter": {"funnelWindowInterval": 14, "funnelWindowIntervalUnit": "day"}}),
            "SELECT countIf(level >= 1), countIf(level >= 2), countIf(level >= 3) FROM (
               SELECT person_id, windowFunnel(1209600)(timestamp, event = '$pageview', event = 'signed_up', event = 'purchase') AS level
               FROM events WHERE team_id = 1 AND event IN ('$pageview', 'signed_up', 'purchase')
                 AND timestamp >= toDateTime('2024-01-01 00:00:00') AND timestamp < toDateTime('2024-03-01 00:00:00')
               GROUP BY person_id)",
        ),
        (
            "retention_weekly_8",
            json!({"kind": "RetentionQuery", "dateRange": {"date_to": "2024-02-29"},
                   "retentionFilter": {"period": "Week", "totalIntervals": 8, "retentionType": "retention_recurring",
                                       "targetEntity": {"id": "$pageview", "type": "events"}, "returningEntity": {"id": "$pageview", "type": "events"}}}),
            "SELECT start, back, uniqExact(person_id) FROM (
               SELECT DISTINCT person_id, toMonday(toDate(timestamp) + 1) - 1 AS start FROM events
               WHERE team_id = 1 AND event = '$pageview'
                 AND timestamp >= toDateTime('2024-01-07 00:00:00') AND timestamp < toDateTime('2024-03-03 00:00:00'))
             ALL INNER JOIN (
               SELECT DISTINCT person_id, toMonday(toDate(timestamp) + 1) - 1 AS back FROM events
               WHERE team_id = 1 AND event = '$pageview'
                 AND timestamp >= toDateTime('2024-01-07 00:00:00') AND timestamp < toDateTime('2024-03-03 00:00:00'))
             USING person_id WHERE back >= start GROUP BY start, back",
        ),
        (
            "lifecycle_daily",
            json!({"kind": "LifecycleQuery", "series": [pageview], "dateRange": {"date_from": "2024-01-31", "date_to": "2024-02-29"}}),
            "SELECT day, status, count() FROM (
               SELECT active_day AS day, if(active_day = created_day, 'new', if(has(days, active_day - 86400), 'returning', 'resurrecting')) AS status
               FROM (SELECT person_id, groupUniqArray(day) AS days, min(created) AS created_day FROM (
                       SELECT person_id, toStartOfDay(timestamp) AS day, toStartOfDay(person_created_at) AS created FROM events
                       WHERE team_id = 1 AND event = '$pageview'
                         AND timestamp >= toDateTime('2024-01-30 00:00:00') AND timestamp < toDateTime('2024-03-01 00:00:00'))
                     GROUP BY person_id)
               ARRAY JOIN days AS active_day
               UNION ALL
               SELECT active_day + 86400 AS day, 'dormant' AS status
               FROM (SELECT person_id, groupUniqArray(day) AS days FROM (
                       SELECT person_id, toStartOfDay(timestamp) AS day FROM events
                       WHERE team_id = 1 AND event = '$pageview'
                         AND timestamp >= toDateTime('2024-01-30 00:00:00') AND timestamp < toDateTime('2024-03-01 00:00:00'))
                     GROUP BY person_id)
               ARRAY JOIN days AS active_day WHERE NOT has(days, active_day + 86400))
             GROUP BY day, status",
        ),
    ]
}

pub(super) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(super) fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

/// Resets the process's peak RSS so the next reading covers one query.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Debug, Default, Clone)]
struct Timing {
    median_s: Option<f64>,
    memory_mb: Option<f64>,
}

/// Generates the benchmark's story into `data_dir` unless its events
/// table exists already; shared with `warren bench ui`.
pub(super) async fn ensure_dataset(data_dir: &Path, users: usize) -> anyhow::Result<()> {
    if data_dir.join("events/_delta_log").exists() {
        return Ok(());
    }
    let config = WarrenConfig { data_dir: data_dir.to_path_buf(), ..WarrenConfig::default() };
    eprintln!("generating {users} people over {DAYS} days into {} (once)", data_dir.display());
    let story = crate::generate::Story {
        seed: 1,
        users,
        days: DAYS,
        start: NaiveDate::parse_from_str(START, "%Y-%m-%d")?,
        signup_rate: 0.4,
        purchase_rate: 0.3,
    };
    crate::generate::write_direct(&story, &config).await.map(drop)
}

pub async fn run(options: QueryBench) -> anyhow::Result<()> {
    let config = WarrenConfig { data_dir: options.data_dir.clone(), ..WarrenConfig::default() };
    let table = options.data_dir.join("events");
    ensure_dataset(&options.data_dir, options.users).await?;
    let meta = warren_node::adapters::open_meta(&config).await?;
    let store = warren_node::adapters::open_event_store(&config, &Default::default()).await?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limits = QueryLimits { target_partitions: cores, ..QueryLimits::default() };
    let project = ProjectContext::new(1, "UTC", chrono::Utc::now())?;
    let mut backends: Vec<(&str, Box<dyn QueryBackend>)> = Vec::new();
    if options.backend.contains(&BenchBackend::Delta) {
        backends.push((
            "DataFusion",
            Box::new(DataFusionBackend::new(store.clone(), meta.clone(), limits.clone())?),
        ));
    }
    if options.backend.contains(&BenchBackend::Clickhouse) {
        let url = options.clickhouse_url.clone().context("--backend clickhouse needs --clickhouse-url")?;
        let cluster = load_cluster(&url, &store, meta.clone()).await?;
        backends
            .push(("ClickHouse cluster", Box::new(ClickHouseBackend::new(cluster, meta.clone(), limits))));
    }
    let Some((_, first)) = backends.first() else { bail!("no --backend to time") };
    let count = warren_query::run(
        &serde_json::from_value(json!({"kind": "HogQLQuery", "query": "SELECT count() FROM events"}))?,
        &project,
        first.as_ref(),
    )
    .await?;
    println!("dataset: {} events, {} people, {} cores", count["results"][0][0], options.users, cores);

    // Per backend, the timing of each query.
    let mut warren: Vec<Vec<(&str, Timing)>> = Vec::new();
    for (label, backend) in &backends {
        let mut rows = Vec::new();
        for (name, query, _) in queries() {
            let query: Query = serde_json::from_value(query)?;
            let mut times = Vec::new();
            reset_peak_rss();
            let mut answer = Value::Null;
            for run in 0..=options.runs {
                let started = Instant::now();
                answer = warren_query::run(&query, &project, backend.as_ref())
                    .await
                    .with_context(|| format!("{name} in Warren on {label}"))?;
                if run > 0 {
                    times.push(started.elapsed().as_secs_f64());
                }
            }
            if name == "funnel_3_steps_14d" {
                let counts: Vec<&Value> = answer["results"]
                    .as_array()
                    .map(|s| s.iter().map(|s| &s["count"]).collect())
                    .unwrap_or_default();
                println!("  Warren on {label} funnel steps: {counts:?}");
            }
            // The process's memory says nothing of a query run elsewhere.
            let memory = (*label == "DataFusion").then(peak_rss_mb);
            rows.push((name, Timing { median_s: Some(median(times)), memory_mb: memory }));
        }
        warren.push(rows);
    }

    let duckdb = if options.skip_duckdb { None } else { Some(run_duckdb(&options, &table)?) };
    let clickhouse =
        if options.skip_clickhouse { None } else { Some(run_clickhouse(&options, &table).await?) };

    println!();
    let labels: Vec<String> = backends.iter().map(|(label, _)| format!("Warren ({label})")).collect();
    let ratios: Vec<String> = backends.iter().map(|(label, _)| format!("{label} ÷ faster peer")).collect();
    println!("| query | {} | DuckDB | ClickHouse | {} |", labels.join(" | "), ratios.join(" | "));
    println!("|---|{}---|---|{}", "---|".repeat(labels.len()), "---|".repeat(ratios.len()));
    let peer = |timings: &Option<Vec<(String, Timing)>>, name: &str| {
        timings
            .as_ref()
            .and_then(|t| t.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()))
            .unwrap_or_default()
    };
    let cell = |t: &Timing| match (t.median_s, t.memory_mb) {
        (Some(s), Some(m)) => format!("{s:.3} s, {m:.0} MiB"),
        (Some(s), None) => format!("{s:.3} s"),
        _ => "–".into(),
    };
    for (i, (name, _, _)) in queries().iter().enumerate() {
        let (d, c) = (peer(&duckdb, name), peer(&clickhouse, name));
        let fastest = [d.median_s, c.median_s].into_iter().flatten().fold(f64::INFINITY, f64::min);
        let ours: Vec<&Timing> = warren.iter().map(|rows| &rows[i].1).collect();
        let ratios: Vec<String> = ours
            .iter()
            .map(|t| match t.median_s {
                Some(w) if fastest.is_finite() => format!("{:.2}", w / fastest),
                _ => "–".into(),
            })
            .collect();
        let cells: Vec<String> = ours.iter().map(|t| cell(t)).collect();
        println!("| {name} | {} | {} | {} | {} |", cells.join(" | "), cell(&d), cell(&c), ratios.join(" | "));
    }
    println!(
        "\nWarren memory: peak RSS of the bench process during the query's runs (dataset metadata included)."
    );
    println!("DuckDB memory: peak RSS of its process over all queries. ClickHouse memory: the query's peak from system.query_log.");
    Ok(())
}

/// The cluster at `url`, holding the Delta table and the persons: what is
/// missing is loaded first, and the events' insert rate printed.
async fn load_cluster(
    url: &str,
    store: &DeltaStore,
    meta: Arc<dyn MetaStore>,
) -> anyhow::Result<Arc<LiveCluster>> {
    let config = warren_core::config::ClickHouseConfig { url: Some(url.to_string()), ..Default::default() };
    let options = ClickHouseStoreOptions::from_config(&config)?.context("a cluster URL")?;
    let cluster =
        ClickHouseStore::open(options.clone(), meta.clone()).await.context("opening the cluster")?;
    eprintln!("loading the cluster from the Delta table (days already there are skipped)");
    let started = Instant::now();
    let days = rebuild_days(store, &cluster, Cut::All, |_, _, _| {}).await.context("loading the cluster")?;
    let loaded: u64 = days.iter().filter(|d| d.loaded).map(|d| d.digest.rows).sum();
    if loaded > 0 {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "ClickHouse cluster insert: {loaded} rows in {seconds:.1} s = {:.0} rows/s",
            loaded as f64 / seconds
        );
    }
    load_persons(store, meta.as_ref(), &cluster, PersonsLoad::BelowIngest, |_, _| {})
        .await
        .context("loading persons into the cluster")?;
    Ok(Arc::new(LiveCluster::open(options, meta).await.context("opening the cluster")?))
}

fn python(options: &QueryBench) -> PathBuf {
    options.python.clone().unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

fn run_duckdb(options: &QueryBench, table: &Path) -> anyhow::Result<Vec<(String, Timing)>> {
    eprintln!("running DuckDB");
    let output = Command::new(python(options))
        .arg(repo_root().join("scripts/bench/duckdb_queries.py"))
        .arg(table)
        .arg(options.runs.to_string())
        .output()
        .context("running scripts/bench/duckdb_queries.py (run scripts/setup-test-deps first)")?;
    if !output.status.success() {
        bail!("DuckDB bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let answer: Value = serde_json::from_slice(&output.stdout)?;
    let peak = answer["peak_rss_mb"].as_f64();
    Ok(answer["queries"]
        .as_object()
        .map(|q| {
            q.iter()
                .map(|(name, t)| (name.clone(), Timing { median_s: t["median_s"].as_f64(), memory_mb: peak }))
                .collect()
        })
        .unwrap_or_default())
}

struct ClickHouse {
    child: Child,
    http: String,
    dir: tempfile::TempDir,
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ClickHouse {
    /// A server of its own on free loopback ports, with the packaged
    /// configuration and a temporary data path.
    async fn start(binary: &str) -> anyhow::Result<(Self, u16)> {
        let dir = tempfile::tempdir()?;
        let (http_port, tcp_port, interserver) = (free_port()?, free_port()?, free_port()?);
        let path = |name: &str| format!("{}/{name}/", dir.path().display());
        let child = Command::new(binary)
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg(format!("--path={}", path("data")))
            .arg(format!("--tmp_path={}", path("tmp")))
            .arg(format!("--user_files_path={}", path("user_files")))
            .arg(format!("--format_schema_path={}", path("format_schemas")))
            .arg(format!("--logger.log={}", dir.path().join("server.log").display()))
            .arg(format!("--logger.errorlog={}", dir.path().join("error.log").display()))
            .arg(format!("--http_port={http_port}"))
            .arg(format!("--tcp_port={tcp_port}"))
            .arg(format!("--interserver_http_port={interserver}"))
            .arg("--listen_host=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary} (Debian's clickhouse-server package)"))?;
        let server = Self { child, http: format!("http://127.0.0.1:{http_port}/"), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.sql("SELECT 1", None).await.is_err() {
            if Instant::now() > deadline {
                bail!("ClickHouse did not answer on port {http_port}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok((server, tcp_port))
    }

    async fn sql(&self, sql: &str, query_id: Option<&str>) -> anyhow::Result<String> {
        let mut url = format!("{}?log_queries=1", self.http);
        if let Some(id) = query_id {
            url.push_str(&format!("&query_id={id}"));
        }
        let response = reqwest::Client::new().post(&url).body(sql.to_string()).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("ClickHouse: {text}");
        }
        Ok(text)
    }
}

async fn run_clickhouse(options: &QueryBench, table: &Path) -> anyhow::Result<Vec<(String, Timing)>> {
    eprintln!("starting ClickHouse and loading the events");
    let (server, tcp_port) = ClickHouse::start(&options.clickhouse).await?;
    let version = server.sql("SELECT version()", None).await?;
    server
        .sql(
            "CREATE TABLE events (uuid String, event String, properties String, timestamp DateTime, team_id Int64,
                distinct_id String, person_id String, person_created_at DateTime)
             ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp)
             ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))",
            None,
        )
        .await?;
    let tsv = server.dir.path().join("events.tsv");
    let export = Command::new(python(options))
        .arg(repo_root().join("scripts/bench/duckdb_queries.py"))
        .arg(table)
        .arg("0")
        .arg(&tsv)
        .output()
        .context("exporting the events for ClickHouse")?;
    if !export.status.success() {
        bail!("export failed: {}", String::from_utf8_lossy(&export.stderr));
    }
    let load = Command::new("clickhouse-client")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &tcp_port.to_string(),
            "--query",
            "INSERT INTO events FORMAT TabSeparated",
        ])
        .stdin(std::fs::File::open(&tsv)?)
        .output()
        .context("loading with clickhouse-client")?;
    if !load.status.success() {
        bail!("loading into ClickHouse failed: {}", String::from_utf8_lossy(&load.stderr));
    }
    let _ = std::fs::remove_file(&tsv);
    server.sql("OPTIMIZE TABLE events FINAL", None).await?;
    let loaded = server.sql("SELECT count() FROM events", None).await?;
    eprintln!("ClickHouse {} holds {} events", version.trim(), loaded.trim());

    let mut timings = Vec::new();
    for (name, _, sql) in queries() {
        let mut times = Vec::new();
        for run in 0..=options.runs {
            let started = Instant::now();
            let answer = server.sql(sql, Some(&format!("{name}-{run}"))).await?;
            if run > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
            if name == "funnel_3_steps_14d" && run == 0 {
                println!("  ClickHouse funnel steps: {}", answer.trim());
            }
        }
        timings.push((name.to_string(), Timing { median_s: Some(median(times)), memory_mb: None }));
    }
    server.sql("SYSTEM FLUSH LOGS", None).await?;
    for (name, timing) in &mut timings {
        let peak = server
            .sql(
                &format!("SELECT max(memory_usage) FROM system.query_log WHERE type = 2 AND query_id LIKE '{name}-%'"),
                None,
            )
            .await?;
        timing.memory_mb = peak.trim().parse::<f64>().ok().map(|bytes| bytes / (1 << 20) as f64);
    }
    Ok(timings)
}
