//! `warren bench`: load generators that print Warren's figures next to a
//! reference measured in the same run, so results are ratios that survive
//! a noisy machine.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};

mod backup;
mod ingest;
mod query;
mod reshard;
mod ui;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Drive the capture API with concurrent clients sending PostHog batches.
    Capture(CaptureBench),
    /// Measure ingest: log → persons → Delta throughput, and freshness.
    Ingest(ingest::IngestBench),
    /// Time the benchmark insights beside DuckDB and ClickHouse on the same events.
    Query(query::QueryBench),
    /// Time what each dashboard page asks the server for, on the query benchmark's events.
    Ui(ui::UiBench),
    /// Time a full backup and its restore beside tar, and size an incremental one.
    Backup(backup::BackupBench),
    /// Time `warren clickhouse reshard` beside a raw INSERT … SELECT FROM remote() of the same rows.
    Reshard(reshard::ReshardBench),
}

#[derive(Debug, clap::Args)]
pub struct CaptureBench {
    /// A running Warren; when absent, the bench starts its own on a temp dir.
    #[arg(long)]
    url: Option<String>,
    /// Project token of that Warren.
    #[arg(long, default_value = "phc_bench_token")]
    token: String,
    /// Pid of that Warren, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Measured seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Skip the reference run against a server that discards the requests.
    #[arg(long)]
    no_reference: bool,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Capture(options) => capture(options).await,
        BenchCommand::Ingest(options) => ingest::run(options).await,
        BenchCommand::Query(options) => query::run(options).await,
        BenchCommand::Ui(options) => ui::run(options).await,
        BenchCommand::Backup(options) => backup::run(options).await,
        BenchCommand::Reshard(options) => reshard::run(options).await,
    }
}

/// A Warren the bench started itself, stopped when dropped.
struct OwnServer {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start_own_server(token: &str) -> anyhow::Result<OwnServer> {
    let dir = tempfile::tempdir()?;
    let (child, url) = start_server(dir.path(), token, &[], &[]).await?;
    Ok(OwnServer { child, url, _dir: dir })
}

/// `warren serve` on `dir` with extra arguments; returns once it listens.
async fn start_server(
    dir: &std::path::Path,
    token: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(tokio::process::Child, String)> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--bootstrap-project-token", token])
        .args(args)
        .env("WARREN_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting warren serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(url) = line.strip_prefix(warren_core::LISTENING_LINE) {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, url.to_string()));
        }
    }
    bail!("warren serve exited before listening")
}

/// A realistic event: about 30 properties, about 1 KB of JSON.
fn event(rng: &mut impl Rng, distinct_ids: u32) -> serde_json::Value {
    let user = rng.random_range(0..distinct_ids);
    event_of(rng, &format!("user-{user}"), user)
}

fn event_of(rng: &mut impl Rng, distinct_id: &str, user: u32) -> serde_json::Value {
    let paths = ["/", "/pricing", "/docs/getting-started", "/blog/launch", "/app/dashboard"];
    let path = paths[rng.random_range(0..paths.len())];
    serde_json::json!({
        "event": if rng.random_bool(0.7) { "$pageview" } else { "button_clicked" },
        "distinct_id": distinct_id,
        "timestamp": "2026-11-26T10:00:00.000Z",
        "properties": {
            "$current_url": format!("https://example.com{path}?utm_source=newsletter"),
            "$host": "example.com", "$pathname": path,
            "$browser": "Chrome", "$browser_version": 131, "$os": "Mac OS X", "$os_version": "14.6.1",
            "$device_type": "Desktop", "$screen_height": 1117, "$screen_width": 1728,
            "$viewport_height": 992, "$viewport_width": 1728, "$lib": "web", "$lib_version": "1.200.0",
            "$insert_id": uuid::Uuid::new_v4().to_string(), "$time": 1_795_000_000.123,
            "$referrer": "https://www.google.com/", "$referring_domain": "www.google.com",
            "$session_id": uuid::Uuid::now_v7().to_string(), "$window_id": uuid::Uuid::now_v7().to_string(),
            "$pageview_id": uuid::Uuid::now_v7().to_string(),
            "$device_id": format!("device-{user}"), "utm_source": "newsletter", "utm_medium": "email",
            "utm_campaign": "winter-launch", "plan": "team", "seats": rng.random_range(1..200),
            "is_trial": rng.random_bool(0.2), "$browser_language": "en-US", "$timezone": "Europe/Berlin",
        },
    })
}

fn batch_bodies(token: &str, batch_size: usize, count: usize) -> Vec<bytes::Bytes> {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let events: Vec<_> = (0..batch_size).map(|_| event(&mut rng, 10_000)).collect();
            let body = serde_json::json!({
                "api_key": token,
                "sent_at": "2026-11-26T10:00:00.100Z",
                "batch": events,
            });
            bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
        })
        .collect()
}

#[derive(Debug, Default)]
struct RunStats {
    ok_requests: u64,
    status_503: u64,
    other_failures: u64,
    latencies_us: Vec<u64>,
    body_bytes: u64,
    elapsed: Duration,
}

impl RunStats {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let at = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[at] as f64 / 1000.0
    }
}

async fn drive(
    url: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<RunStats> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let endpoint = format!("{url}/batch/");
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let client = client.clone();
        let endpoint = endpoint.clone();
        let bodies = bodies.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = RunStats::default();
            let mut next = client_index;
            while !stop.load(Ordering::Relaxed) {
                let body = bodies[next % bodies.len()].clone();
                next += clients;
                let size = body.len() as u64;
                let started = Instant::now();
                let result =
                    client.post(&endpoint).header("content-type", "application/json").body(body).send().await;
                let status = match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => {
                        // Back off instead of spinning on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        None
                    }
                };
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match status {
                    Some(200) => {
                        stats.ok_requests += 1;
                        stats.body_bytes += size;
                        stats.latencies_us.push(started.elapsed().as_micros() as u64);
                    }
                    Some(503) => stats.status_503 += 1,
                    _ => stats.other_failures += 1,
                }
            }
            stats
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = RunStats { elapsed, ..RunStats::default() };
    for task in tasks {
        let stats = task.await?;
        total.ok_requests += stats.ok_requests;
        total.status_503 += stats.status_503;
        total.other_failures += stats.other_failures;
        total.body_bytes += stats.body_bytes;
        total.latencies_us.extend(stats.latencies_us);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// A server that reads each request body and answers 200: the ceiling the
/// load generator and loopback allow on this machine.
async fn start_reference_server() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new()
        .route(
            "/batch/",
            axum::routing::post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body.len());
                r#"{"status":1}"#
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(20 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, handle))
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status"))).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn report(name: &str, stats: &RunStats, batch_size: usize) -> f64 {
    let seconds = stats.elapsed.as_secs_f64();
    let events_per_sec = stats.ok_requests as f64 * batch_size as f64 / seconds;
    println!(
        "{name:<10} {:>10.0} events/s {:>8.1} MB/s  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>7.1} ms  ok {} 503 {} failed {}",
        events_per_sec,
        stats.body_bytes as f64 / seconds / 1e6,
        stats.percentile_ms(0.50),
        stats.percentile_ms(0.99),
        stats.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0,
        stats.ok_requests,
        stats.status_503,
        stats.other_failures,
    );
    events_per_sec
}

async fn capture(options: CaptureBench) -> anyhow::Result<()> {
    let bodies = Arc::new(batch_bodies(&options.token, options.batch_size, 64));
    let mean_event = bodies.iter().map(|b| b.len()).sum::<usize>() as f64 / (64 * options.batch_size) as f64;
    println!(
        "capture bench: {} clients, batches of {}, ~{:.0} bytes/event, {} s measured",
        options.clients, options.batch_size, mean_event, options.seconds
    );

    let own = match &options.url {
        Some(_) => None,
        None => Some(start_own_server(&options.token).await?),
    };
    let url = options.url.clone().or_else(|| own.as_ref().map(|s| s.url.clone())).context("no server")?;
    let pid = options.server_pid.or_else(|| own.as_ref().and_then(|s| s.child.id()));
    let stats = drive(&url, bodies.clone(), options.clients, options.seconds).await?;
    let warren = report("warren", &stats, options.batch_size);

    // The reference runs second, so nothing it leaves behind weighs on Warren.
    if !options.no_reference {
        let (url, handle) = start_reference_server().await?;
        let stats = drive(&url, bodies, options.clients, options.seconds).await?;
        handle.abort();
        let reference = report("reference", &stats, options.batch_size);
        println!("ratio      warren / reference = {:.3}", warren / reference);
    }
    match pid.and_then(peak_rss_mib) {
        Some(rss) => println!("peak RSS   {rss:.0} MiB (server)"),
        None => println!("peak RSS   unknown: pass --server-pid"),
    }
    drop(own);
    Ok(())
}
